//! The `abs` backend (Azure Blob Storage) on OpenDAL's azblob client, with
//! Litestream 0.5.17's layout and metadata: blobs
//! `<path>/ltx/<level>/<min>-<max>.ltx` in a container, user metadata
//! `litestreamtimestamp` (Azure metadata names cannot hold a hyphen).
//!
//! Credentials in Go's order: a SAS token (`sas-token`, else
//! `LITESTREAM_AZURE_SAS_TOKEN`), then a shared key (`account-key`, else
//! `LITESTREAM_AZURE_ACCOUNT_KEY`, with the account name), then the
//! environment's default Azure credentials. The endpoint is
//! `https://<account>.blob.core.windows.net` unless `endpoint` names one
//! (Azurite: `http://127.0.0.1:10000/devstoreaccount1`).

use std::fmt;

use crate::error::{Error, Result};
use crate::redact::{Secret, redact_url};

/// Metadata key holding the LTX header timestamp (Go: `litestreamtimestamp`).
pub const METADATA_TIMESTAMP: &str = "litestreamtimestamp";

/// One container and path, as `abs://[account@]container/path` or the
/// config's `bucket`, `path`, `account-name`, `account-key`, `sas-token`
/// and `endpoint` describe it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AzureSettings {
    /// The container (Go's `bucket`).
    pub container: String,
    /// Blob name prefix; `""` or `"."` is the container's root.
    pub path: String,
    pub account_name: Option<String>,
    pub account_key: Option<Secret>,
    pub sas_token: Option<Secret>,
    /// The service URL; `None`: the account's public endpoint.
    pub endpoint: Option<String>,
}

impl fmt::Debug for AzureSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureSettings")
            .field("container", &self.container)
            .field("path", &self.path)
            .field("account_name", &self.account_name)
            .field("account_key", &self.account_key)
            .field("sas_token", &self.sas_token)
            .field("endpoint", &self.endpoint.as_deref().map(redact_url))
            .finish()
    }
}

impl AzureSettings {
    /// `abs://[account@]container/path`, the path cleaned as Litestream
    /// does. Go reads nothing else from the URL; we also take
    /// `?endpoint=URL`, so that a command line can reach an emulator or a
    /// sovereign cloud without a config file.
    pub fn from_url(url: &str) -> Result<AzureSettings> {
        let (container, path) = super::split_bucket_url(url, "abs")?;
        let parsed = url::Url::parse(url)
            .map_err(|e| Error::InvalidInput(format!("replica URL {}: {e}", redact_url(url))))?;
        let mut s = AzureSettings {
            container,
            path,
            account_name: Some(parsed.username().to_string()).filter(|a| !a.is_empty()),
            ..AzureSettings::default()
        };
        for (k, v) in parsed.query_pairs() {
            match k.as_ref() {
                "endpoint" => s.endpoint = Some(v.into_owned()),
                other => {
                    return Err(Error::InvalidInput(format!(
                        "replica URL {}: unknown query parameter {other:?} (abs:// URLs take only endpoint; credentials come from the config or LITESTREAM_AZURE_ACCOUNT_KEY / LITESTREAM_AZURE_SAS_TOKEN)",
                        redact_url(url)
                    )));
                }
            }
        }
        Ok(s)
    }

    /// `abs://[account@]container/path`, for messages.
    pub fn location(&self) -> String {
        let account = self
            .account_name
            .as_deref()
            .map(|a| format!("{a}@"))
            .unwrap_or_default();
        format!(
            "abs://{account}{}/{}",
            self.container,
            self.path.trim_matches('/')
        )
    }

    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<()> {
        if self.container.is_empty() {
            return Err(Error::InvalidInput(
                "abs replica: bucket (the container) required".into(),
            ));
        }
        if self.endpoint.is_none() && self.account_name.is_none() {
            return Err(Error::InvalidInput(format!(
                "{}: account-name required when endpoint is not set (abs://ACCOUNT@CONTAINER/PATH)",
                self.location()
            )));
        }
        Ok(())
    }

    /// The service URL: `endpoint` (`https://` when it has no scheme),
    /// else the account's public one.
    pub fn service_url(&self) -> String {
        match &self.endpoint {
            Some(e) if e.contains("://") => e.trim_end_matches('/').to_string(),
            Some(e) => format!("https://{}", e.trim_end_matches('/')),
            None => format!(
                "https://{}.blob.core.windows.net",
                self.account_name.as_deref().unwrap_or_default()
            ),
        }
    }

    /// These settings with the credentials Go takes from the environment
    /// when the config has none (`LITESTREAM_AZURE_SAS_TOKEN`,
    /// `LITESTREAM_AZURE_ACCOUNT_KEY`).
    pub fn with_env_credentials(mut self) -> AzureSettings {
        let env = |k: &str| {
            std::env::var(k)
                .ok()
                .filter(|v| !v.is_empty())
                .map(Secret::new)
        };
        if self.sas_token.is_none() {
            self.sas_token = env("LITESTREAM_AZURE_SAS_TOKEN");
        }
        if self.account_key.is_none() {
            self.account_key = env("LITESTREAM_AZURE_ACCOUNT_KEY");
        }
        self
    }
}

/// What decides the operator: replicas with the same key share one
/// (one HTTP client and its connections); the path is per request. The
/// credentials are part of it, hashed so the key holds no secret.
#[cfg_attr(not(feature = "azure"), allow(dead_code))]
pub(crate) fn operator_key(settings: &AzureSettings) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    settings
        .account_key
        .as_ref()
        .map(Secret::expose)
        .hash(&mut h);
    settings.sas_token.as_ref().map(Secret::expose).hash(&mut h);
    format!(
        "abs\0{}\0{}\0{:?}\0{:x}",
        settings.container,
        settings.service_url(),
        settings.account_name,
        h.finish()
    )
}

/// The operator for `settings`' container; `settings` as
/// [`AzureSettings::with_env_credentials`] returns them.
#[cfg(feature = "azure")]
pub(crate) fn operator(settings: &AzureSettings) -> Result<opendal::Operator> {
    use opendal::services::Azblob;
    settings.validate()?;
    let mut b = Azblob::default()
        .container(&settings.container)
        .root("/")
        .endpoint(&settings.service_url());
    if let Some(a) = &settings.account_name {
        b = b.account_name(a);
    }
    // Go's precedence: a SAS token wins over a shared key.
    if let Some(t) = &settings.sas_token {
        b = b.sas_token(t.expose().trim_start_matches('?'));
    } else if let Some(k) = &settings.account_key {
        b = b.account_key(k.expose());
    }
    super::operator::build(b, &settings.location())
}

/// A client for `settings` on `op` (see [`operator`]), without the retry
/// layer (see [`super::from_url`]).
#[cfg(feature = "azure")]
pub(crate) fn client_on(
    op: opendal::Operator,
    settings: &AzureSettings,
) -> super::operator::OperatorClient {
    super::operator::OperatorClient::new(
        op,
        "abs",
        settings.location(),
        &settings.path,
        Some(METADATA_TIMESTAMP),
        super::operator::Upload::Blocks,
        super::operator::Listing::Prefixes,
    )
}

/// Without the `azure` feature: an error naming the replica.
#[cfg(not(feature = "azure"))]
pub(crate) fn operator(settings: &AzureSettings) -> Result<std::convert::Infallible> {
    Err(Error::InvalidInput(format!(
        "{}: this build has no Azure Blob Storage support (feature \"azure\")",
        settings.location()
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_as_litestream_reads_them() {
        let s = AzureSettings::from_url("abs://acct@ctr/some/../db/").unwrap();
        assert_eq!(
            (
                s.container.as_str(),
                s.path.as_str(),
                s.account_name.as_deref()
            ),
            ("ctr", "db", Some("acct"))
        );
        assert_eq!(s.service_url(), "https://acct.blob.core.windows.net");
        assert_eq!(s.location(), "abs://acct@ctr/db");
        s.validate().unwrap();
        let e = AzureSettings::from_url(
            "abs://ctr/db?endpoint=http://127.0.0.1:10000/devstoreaccount1",
        )
        .unwrap();
        assert_eq!(e.service_url(), "http://127.0.0.1:10000/devstoreaccount1");
        e.validate().unwrap();
        assert!(
            AzureSettings::from_url("abs://ctr/db")
                .unwrap()
                .validate()
                .is_err()
        );
        assert!(AzureSettings::from_url("abs://a@ctr/db?sig=x").is_err());
        assert!(AzureSettings::from_url("gs://ctr/db").is_err());
    }

    #[test]
    fn secrets_stay_out_of_debug_and_keys() {
        let s = AzureSettings {
            container: "c".into(),
            account_name: Some("a".into()),
            account_key: Some(Secret::new("S3CR3TKEY")),
            sas_token: Some(Secret::new("sv=1&sig=S3CR3TSIG")),
            ..AzureSettings::default()
        };
        let shown = format!("{s:?}{}", operator_key(&s));
        assert!(!shown.contains("S3CR3T"), "{shown}");
        let other = AzureSettings {
            account_key: Some(Secret::new("other")),
            ..s.clone()
        };
        assert_ne!(operator_key(&s), operator_key(&other));
    }
}
