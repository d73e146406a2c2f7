//! A replica as the user wrote it ([`ReplicaConfig`], from a config file
//! or a URL on the command line), where it is ([`ReplicaLocation`]), and
//! the one place a replica client is opened from either.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use litestreampp_core::client::azure::AzureSettings;
use litestreampp_core::client::file::FileReplicaClient;
use litestreampp_core::client::gcs::GcsSettings;
use litestreampp_core::client::nats::NatsSettings;
use litestreampp_core::client::oss;
use litestreampp_core::client::s3::S3Settings;
use litestreampp_core::client::sftp::SftpSettings;
use litestreampp_core::client::webdav::WebdavSettings;
use litestreampp_core::client::{ClientPool, ReplicaClient};
use litestreampp_core::redact::{Secret, redact_url};
use serde_json::Value;

use super::values::{expand_path, parse_duration_value};

/// Where a replica lives, resolved from a URL or a config entry.
#[derive(Debug, Clone)]
pub enum ReplicaLocation {
    /// A directory (the `file` backend).
    File(PathBuf),
    /// A prefix of an S3 bucket (or an OSS one, through its S3 API), with
    /// its connection settings.
    S3(Box<S3Settings>),
    /// A prefix of a Google Cloud Storage bucket.
    Gcs(GcsSettings),
    /// A prefix of an Azure Blob Storage container, with its credentials.
    Azure(Box<AzureSettings>),
    /// A directory on a WebDAV server, with its credentials.
    Webdav(Box<WebdavSettings>),
    /// A NATS object-store bucket (and a prefix in it), with the
    /// connection's settings.
    Nats(Box<NatsSettings>),
    /// A directory on an SSH server, with the login's settings.
    Sftp(Box<SftpSettings>),
}

impl ReplicaLocation {
    /// Opens the replica's client: the one place the binary opens one. S3
    /// replicas share `pool`'s SDK clients (one per endpoint, region and
    /// credentials); remote backends come wrapped in the retry layer.
    pub fn open(&self, pool: &ClientPool) -> Result<Arc<dyn ReplicaClient>> {
        match self {
            ReplicaLocation::File(dir) => Ok(pool.limit(Arc::new(FileReplicaClient::new(dir)))),
            ReplicaLocation::S3(s) => pool.open_s3(s.as_ref().clone()).map_err(|e| anyhow!(e)),
            ReplicaLocation::Gcs(s) => pool.open_gcs(s).map_err(|e| anyhow!(e)),
            ReplicaLocation::Azure(s) => pool.open_azure(s).map_err(|e| anyhow!(e)),
            ReplicaLocation::Webdav(s) => pool.open_webdav(s).map_err(|e| anyhow!(e)),
            ReplicaLocation::Nats(s) => pool.open_nats(s.as_ref().clone()).map_err(|e| anyhow!(e)),
            ReplicaLocation::Sftp(s) => pool.open_sftp(s.as_ref().clone()).map_err(|e| anyhow!(e)),
        }
    }
}

/// A replica definition after defaults are applied.
#[derive(Debug, Clone, Default)]
pub struct ReplicaConfig {
    /// `file`, `s3`, ... (inferred from the URL scheme when unset).
    pub kind: String,
    pub url: Option<String>,
    pub path: Option<String>,
    /// Every other key, as written.
    pub settings: BTreeMap<String, Value>,
}

impl ReplicaConfig {
    /// A replica from a URL given on the command line.
    pub fn from_url(url: &str) -> ReplicaConfig {
        ReplicaConfig {
            kind: scheme_of(url).unwrap_or("file").to_string(),
            url: Some(url.to_string()),
            ..Default::default()
        }
    }

    /// A duration setting such as `sync-interval`.
    pub fn duration(&self, key: &str) -> Result<Option<Duration>> {
        self.settings
            .get(key)
            .map(|v| parse_duration_value(v).with_context(|| format!("replica {key}")))
            .transpose()
    }

    /// Where the replica lives, for messages (never includes credentials).
    pub fn describe(&self) -> String {
        let bucket = self.settings.get("bucket").and_then(|v| v.as_str());
        match (&self.url, &self.path, bucket) {
            (Some(u), _, _) => redact_url(u),
            (None, p, Some(b)) => format!("{}://{b}/{}", self.kind, p.as_deref().unwrap_or("")),
            (None, Some(p), None) => format!("{}://{p}", self.kind),
            _ => self.kind.clone(),
        }
    }

    /// This replica with `rel` (a database's path relative to a directory
    /// entry's `dir`) appended to its path, as Litestream does for
    /// directory replication.
    pub fn with_relative_path(&self, rel: &str) -> Result<ReplicaConfig> {
        let rel = rel.trim_start_matches('/');
        let mut r = self.clone();
        if let Some(u) = &self.url {
            let mut parsed =
                url::Url::parse(u).with_context(|| format!("replica url {}", redact_url(u)))?;
            let joined = format!("{}/{rel}", parsed.path().trim_end_matches('/'));
            parsed.set_path(&joined);
            r.url = Some(parsed.to_string());
        } else {
            r.path = Some(match &self.path {
                Some(p) if !p.is_empty() => format!("{}/{rel}", p.trim_end_matches('/')),
                _ => rel.to_string(),
            });
        }
        Ok(r)
    }

    /// Where the replica lives.
    pub fn location(&self) -> Result<ReplicaLocation> {
        match self.kind.as_str() {
            "file" => match (&self.url, &self.path) {
                (Some(u), _) => file_url_path(u).map(ReplicaLocation::File),
                (None, Some(p)) => Ok(ReplicaLocation::File(expand_path(p)?)),
                (None, None) => bail!("file replica needs a path or url"),
            },
            "s3" => Ok(ReplicaLocation::S3(Box::new(self.s3_settings()?))),
            "gs" => Ok(ReplicaLocation::Gcs(self.gcs_settings()?)),
            "abs" => Ok(ReplicaLocation::Azure(Box::new(self.azure_settings()?))),
            "webdav" => Ok(ReplicaLocation::Webdav(Box::new(self.webdav_settings()?))),
            "oss" => Ok(ReplicaLocation::S3(Box::new(self.oss_settings()?))),
            "nats" => Ok(ReplicaLocation::Nats(Box::new(self.nats_settings()?))),
            "sftp" => Ok(ReplicaLocation::Sftp(Box::new(self.sftp_settings()?))),
            other => bail!(
                "replica type {other:?} ({}) is not supported by this build (supported: file, s3, gs, abs, webdav, oss, nats, sftp)",
                self.describe()
            ),
        }
    }

    /// Opens the replica's client (see [`ReplicaLocation::open`]).
    pub fn open(&self, pool: &ClientPool) -> Result<Arc<dyn ReplicaClient>> {
        self.location()?.open(pool)
    }

    /// GCS settings: the URL's, or the `bucket` and `path` keys.
    pub fn gcs_settings(&self) -> Result<GcsSettings> {
        let s = match &self.url {
            Some(u) => GcsSettings::from_url(u).map_err(|e| anyhow!(e))?,
            None => {
                let bucket = match self.settings.get("bucket") {
                    Some(Value::String(b)) if !b.is_empty() => b.clone(),
                    _ => bail!("gs replica: bucket required"),
                };
                GcsSettings::new(bucket, self.path.clone().unwrap_or_default())
            }
        };
        s.validate().map_err(|e| anyhow!(e))?;
        Ok(s)
    }

    /// Azure settings: the URL's, then the YAML keys on top (Litestream's
    /// precedence), then the credentials Go takes from the environment.
    pub fn azure_settings(&self) -> Result<AzureSettings> {
        let mut s = match &self.url {
            Some(u) => AzureSettings::from_url(u).map_err(|e| anyhow!(e))?,
            None => AzureSettings {
                path: self.path.clone().unwrap_or_default(),
                ..AzureSettings::default()
            },
        };
        if let Some(b) = self.text("bucket")? {
            s.container = b;
        }
        if let Some(a) = self.text("account-name")? {
            s.account_name = Some(a);
        }
        if let Some(k) = self.text("account-key")? {
            s.account_key = Some(Secret::new(k));
        }
        if let Some(t) = self.text("sas-token")? {
            s.sas_token = Some(Secret::new(t));
        }
        if let Some(e) = self.text("endpoint")? {
            s.endpoint = Some(e);
        }
        let s = s.with_env_credentials();
        s.validate().map_err(|e| anyhow!(e))?;
        Ok(s)
    }

    /// WebDAV settings: the URL's (`webdav[s]://user:password@host/path`),
    /// then the YAML keys on top (Litestream's precedence).
    pub fn webdav_settings(&self) -> Result<WebdavSettings> {
        let from_keys = self.text("webdav-url")?;
        let mut s = match (&self.url, &from_keys) {
            (Some(_), Some(_)) => bail!(
                "webdav replica {}: url and webdav-url are mutually exclusive",
                self.describe()
            ),
            (Some(u), None) => WebdavSettings::from_url(u).map_err(|e| anyhow!(e))?,
            (None, _) => WebdavSettings {
                url: from_keys.unwrap_or_default(),
                path: self.path.clone().unwrap_or_default(),
                ..WebdavSettings::default()
            },
        };
        if let Some(u) = self.text("webdav-username")? {
            s.username = Some(u);
        }
        if let Some(p) = self.text("webdav-password")? {
            s.password = Some(Secret::new(p));
        }
        s.validate().map_err(|e| anyhow!(e))?;
        Ok(s)
    }

    /// NATS settings: the URL's (`nats://[user:pass@]host/bucket[/path]`)
    /// or the `bucket` and `path` keys, then Go's connection keys.
    pub fn nats_settings(&self) -> Result<NatsSettings> {
        let mut s = match &self.url {
            Some(u) => NatsSettings::from_url(u).map_err(|e| anyhow!(e))?,
            None => NatsSettings {
                path: self.path.clone().unwrap_or_default(),
                ..NatsSettings::default()
            },
        };
        if let Some(b) = self.text("bucket")? {
            s.bucket = b;
        }
        let secret = |k: &str| -> Result<Option<Secret>> { Ok(self.text(k)?.map(Secret::new)) };
        let file = |k: &str| -> Result<Option<PathBuf>> {
            self.text(k)?.map(|p| expand_path(&p)).transpose()
        };
        s.username = self.text("username")?.or(s.username);
        s.password = secret("password")?.or(s.password);
        s.token = secret("token")?;
        s.creds = file("creds")?;
        s.jwt = secret("jwt")?;
        s.seed = secret("seed")?;
        s.nkey = secret("nkey")?;
        s.client_cert = file("client-cert")?;
        s.client_key = file("client-key")?;
        s.tls = match self.settings.get("tls") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => bail!("replica tls: expected true or false, got {other}"),
        };
        s.root_cas = match self.settings.get("root-cas") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| match v.as_str() {
                    Some(p) => expand_path(p),
                    None => bail!("replica root-cas: expected a list of file paths, got {v}"),
                })
                .collect::<Result<_>>()?,
            Some(other) => bail!("replica root-cas: expected a list of file paths, got {other}"),
        };
        s.max_reconnects = match self.settings.get("max-reconnects") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_i64()
                    .ok_or_else(|| anyhow!("replica max-reconnects: expected a number, got {v}"))?,
            ),
        };
        s.reconnect_wait = self.duration("reconnect-wait")?;
        s.timeout = self.duration("timeout")?;
        s.validate().map_err(|e| anyhow!(e))?;
        Ok(s)
    }

    /// SFTP settings: the URL's (`sftp://user[:password]@host[:port]/path`)
    /// or the `host` and `path` keys (not both, as in Go), with `user` and
    /// `password` winning over the URL's, then Go's other keys.
    pub fn sftp_settings(&self) -> Result<SftpSettings> {
        let host = self.text("host")?;
        let mut s = match &self.url {
            Some(_) if self.path.is_some() => {
                bail!(
                    "cannot specify url & path for sftp replica ({})",
                    self.describe()
                )
            }
            Some(_) if host.is_some() => {
                bail!(
                    "cannot specify url & host for sftp replica ({})",
                    self.describe()
                )
            }
            Some(u) => {
                // The URL may leave the user to the `user` key.
                let mut parsed =
                    url::Url::parse(u).with_context(|| format!("replica URL {}", redact_url(u)))?;
                if parsed.username().is_empty()
                    && let Some(user) = self.text("user")?
                {
                    let _ = parsed.set_username(&user);
                }
                SftpSettings::from_url(parsed.as_str()).map_err(|e| anyhow!(e))?
            }
            None => SftpSettings {
                host: host.unwrap_or_default(),
                path: self.path.clone().unwrap_or_default(),
                ..SftpSettings::default()
            },
        };
        if let Some(u) = self.text("user")? {
            s.user = u;
        }
        if let Some(p) = self.text("password")? {
            s.password = Some(Secret::new(p));
        }
        // The keys win over the URL's query (our extension, see
        // `SftpSettings::from_url`); a key path from either is expanded.
        let key_path = match self.text("key-path")? {
            Some(p) => Some(p),
            None => s.key_path.take().map(|p| p.to_string_lossy().into_owned()),
        };
        s.key_path = key_path.map(|p| expand_path(&p)).transpose()?;
        if let Some(h) = self.text("host-key")? {
            s.host_key = Some(h);
        }
        s.concurrent_writes = match self.settings.get("concurrent-writes") {
            None | Some(Value::Null) => s.concurrent_writes,
            Some(Value::Bool(b)) => *b,
            Some(other) => bail!("replica concurrent-writes: expected true or false, got {other}"),
        };
        s.validate().map_err(|e| anyhow!(e))?;
        Ok(s)
    }

    /// A string-valued key (numbers and booleans as written); `None` when
    /// unset or empty.
    fn text(&self, k: &str) -> Result<Option<String>> {
        match self.settings.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(v)) if v.is_empty() => Ok(None),
            Some(Value::String(v)) => Ok(Some(v.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(other) => bail!("replica {k}: expected a value, got {other}"),
        }
    }

    /// S3 settings: the URL's, then the YAML keys on top (Litestream's
    /// precedence).
    pub fn s3_settings(&self) -> Result<S3Settings> {
        let s = match &self.url {
            Some(u) => S3Settings::from_url(u).map_err(|e| anyhow!(e))?,
            None => S3Settings {
                path: self.path.clone().unwrap_or_default(),
                ..S3Settings::default()
            },
        };
        self.with_s3_keys(s)
    }

    /// OSS settings (the S3 client on OSS's S3-compatible API): the URL's,
    /// then the YAML keys on top, then OSS's defaults and environment.
    pub fn oss_settings(&self) -> Result<S3Settings> {
        let s = match &self.url {
            Some(u) => oss::from_url(u).map_err(|e| anyhow!(e))?,
            None => S3Settings {
                path: self.path.clone().unwrap_or_default(),
                ..S3Settings::default()
            },
        };
        Ok(oss::complete_from_env(self.with_s3_keys(s)?))
    }

    /// `s` with this replica's S3 keys applied (those a replica of its
    /// type may hold: `keys::BACKEND_KEYS`).
    fn with_s3_keys(&self, mut s: S3Settings) -> Result<S3Settings> {
        let text = |k: &str| self.text(k);
        let flag = |k: &str| -> Result<Option<bool>> {
            match self.settings.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Bool(b)) => Ok(Some(*b)),
                Some(Value::String(v)) if v == "true" || v == "false" => Ok(Some(v == "true")),
                Some(other) => bail!("replica {k}: expected true or false, got {other}"),
            }
        };
        if let Some(b) = text("bucket")? {
            s.bucket = b;
        }
        if let Some(r) = text("region")? {
            s.region = Some(r);
        }
        if let Some(e) = text("endpoint")? {
            s.endpoint = Some(if e.contains("://") {
                e
            } else {
                format!("https://{e}")
            });
        }
        if let Some(v) = flag("force-path-style")? {
            s.force_path_style = Some(v);
        }
        if let Some(v) = text("access-key-id")? {
            s.access_key_id = Some(v);
        }
        if let Some(v) = text("secret-access-key")? {
            s.secret_access_key = Some(v);
        }
        if let Some(v) = text("part-size")? {
            s.part_size =
                Some(litestreampp_core::client::s3::parse_byte_size(&v).map_err(|e| anyhow!(e))?);
        }
        if let Some(v) = text("concurrency")? {
            s.concurrency = Some(
                v.parse()
                    .map_err(|_| anyhow!("replica concurrency: {v:?} is not a number"))?,
            );
        }
        if let Some(v) = flag("sign-payload")? {
            s.sign_payload = Some(v);
        }
        if let Some(v) = flag("require-content-md5")? {
            s.require_content_md5 = Some(v);
        }
        if let Some(v) = flag("skip-verify")? {
            s.skip_verify = v;
        }
        s.storage_class = text("storage-class")?.or(s.storage_class);
        s.sse_customer_algorithm = text("sse-customer-algorithm")?.or(s.sse_customer_algorithm);
        s.sse_customer_key = text("sse-customer-key")?.or(s.sse_customer_key);
        s.sse_customer_key_path = text("sse-customer-key-path")?
            .map(PathBuf::from)
            .or(s.sse_customer_key_path);
        s.sse_kms_key_id = text("sse-kms-key-id")?.or(s.sse_kms_key_id);
        if s.bucket.is_empty() {
            bail!("{} replica: bucket required", self.kind);
        }
        Ok(s)
    }
}

/// The replica type a URL names: its scheme, but `webdavs` is a `webdav`
/// replica (as in Go).
pub(super) fn scheme_of(url: &str) -> Option<&str> {
    url.split_once("://")
        .map(|(s, _)| if s == "webdavs" { "webdav" } else { s })
}

/// The directory of a `file` replica URL: `file:///absolute/path`, or a
/// plain path.
fn file_url_path(url: &str) -> Result<PathBuf> {
    if !url.starts_with("file:") {
        if let Some((scheme, _)) = url.split_once("://") {
            bail!(
                "replica URL {}: unsupported scheme {scheme:?} (supported: file, s3, gs, abs, webdav, webdavs, oss, nats, sftp)",
                redact_url(url)
            );
        }
        return Ok(PathBuf::from(url));
    }
    let parsed =
        url::Url::parse(url).with_context(|| format!("replica URL {}", redact_url(url)))?;
    parsed.to_file_path().map_err(|_| {
        anyhow!(
            "replica URL {}: expected file:///absolute/path",
            redact_url(url)
        )
    })
}
