//! `litestream.yml`: Litestream 0.5.17's configuration file (format spec
//! §5), read the same way: `$VAR` / `${VAR}` expansion, global replica
//! defaults, `dbs` with one `replica` each. Unknown keys are errors that
//! name the key, so a typo is never silently ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use litestreampp_core::client::s3::S3Settings;
use litestreampp_core::levels::LevelsConfig;
use litestreampp_core::redact::redact_url;
use serde_json::Value;

/// Keys a replica section (or the top level, as defaults) may hold.
const REPLICA_SETTING_KEYS: &[&str] = &[
    "sync-interval",
    "validation-interval",
    "max-sync-ltx-files",
    "auto-recover",
    "access-key-id",
    "secret-access-key",
    "region",
    "bucket",
    "endpoint",
    "force-path-style",
    "sign-payload",
    "require-content-md5",
    "skip-verify",
    "storage-class",
    "part-size",
    "concurrency",
    "sse-customer-algorithm",
    "sse-customer-key",
    "sse-customer-key-path",
    "sse-kms-key-id",
    "account-name",
    "account-key",
    "sas-token",
    "host",
    "user",
    "password",
    "key-path",
    "concurrent-writes",
    "host-key",
    "webdav-url",
    "webdav-username",
    "webdav-password",
    "jwt",
    "seed",
    "creds",
    "nkey",
    "username",
    "token",
    "tls",
    "root-cas",
    "client-cert",
    "client-key",
    "max-reconnects",
    "reconnect-wait",
    "timeout",
    "age",
];
const REPLICA_KEYS: &[&str] = &["type", "name", "path", "url"];
const DB_KEYS: &[&str] = &[
    "path",
    "dir",
    "pattern",
    "recursive",
    "watch",
    "snapshot",
    "meta-path",
    "meta-dir",
    "monitor-interval",
    "checkpoint-interval",
    "busy-timeout",
    "min-checkpoint-page-count",
    "truncate-page-n",
    "max-sync-wal-bytes",
    "restore-if-db-not-exists",
    "replica",
    "replicas",
];
const TOP_KEYS: &[&str] = &[
    "dbs",
    "addr",
    "socket",
    "levels",
    "snapshot",
    "validation",
    "l0-retention",
    "l0-retention-check-interval",
    "verify-compaction",
    "retention",
    "heartbeat-url",
    "heartbeat-interval",
    "exec",
    "logging",
    "mcp-addr",
    "shutdown-sync-timeout",
    "shutdown-sync-interval",
    "fleet",
];

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

    /// Opens the storage client, S3 through `pool` (one SDK client per
    /// endpoint and credentials).
    pub fn client_in(
        &self,
        pool: &litestreampp_core::client::ClientPool,
    ) -> Result<std::sync::Arc<dyn litestreampp_core::client::ReplicaClient>> {
        if self.kind == "s3" {
            return pool.open_s3(self.s3_settings()?).map_err(|e| anyhow!(e));
        }
        self.client()
    }

    /// Opens the storage client.
    pub fn client(&self) -> Result<std::sync::Arc<dyn litestreampp_core::client::ReplicaClient>> {
        match self.kind.as_str() {
            "file" => {
                let target = match (&self.url, &self.path) {
                    (Some(u), _) => u.clone(),
                    (None, Some(p)) => expand_path(p)?.display().to_string(),
                    (None, None) => bail!("file replica needs a path or url"),
                };
                litestreampp_core::client::from_url(&target).map_err(|e| anyhow!(e))
            }
            "s3" => {
                let settings = self.s3_settings()?;
                litestreampp_core::client::s3_client(settings).map_err(|e| anyhow!(e))
            }
            other => bail!(
                "replica type {other:?} ({}) is not supported by this build (supported: file, s3)",
                self.describe()
            ),
        }
    }

    /// S3 settings: the URL's, then the YAML keys on top (Litestream's
    /// precedence).
    pub fn s3_settings(&self) -> Result<S3Settings> {
        let mut s = match &self.url {
            Some(u) => S3Settings::from_url(u).map_err(|e| anyhow!(e))?,
            None => S3Settings {
                path: self.path.clone().unwrap_or_default(),
                ..S3Settings::default()
            },
        };
        let text = |k: &str| -> Result<Option<String>> {
            match self.settings.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(v)) => Ok(Some(v.clone())),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(Value::Bool(b)) => Ok(Some(b.to_string())),
                Some(other) => bail!("replica {k}: expected a value, got {other}"),
            }
        };
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
            bail!("s3 replica: bucket required");
        }
        Ok(s)
    }
}

/// One entry of `dbs`.
#[derive(Debug, Clone)]
pub struct DbConfig {
    pub path: PathBuf,
    pub replica: Option<ReplicaConfig>,
    pub meta_path: Option<PathBuf>,
    pub monitor_interval: Option<Duration>,
    pub checkpoint_interval: Option<Duration>,
    pub busy_timeout: Option<Duration>,
    pub min_checkpoint_page_count: Option<u32>,
    pub truncate_page_n: Option<u32>,
    pub max_sync_wal_bytes: Option<u64>,
    /// Compaction levels, snapshots and retention: the top-level settings
    /// with this database's `snapshot` overrides.
    pub levels: LevelsConfig,
}

/// A `dbs` entry with `dir` (Litestream's directory replication): every
/// SQLite file under `dir` whose name matches `pattern` (in subdirectories
/// too with `recursive`), each replicated to the replica's path plus the
/// database's path relative to `dir`.
#[derive(Debug, Clone)]
pub struct DirConfig {
    pub dir: PathBuf,
    pub pattern: String,
    pub recursive: bool,
    pub replica: ReplicaConfig,
}

impl DirConfig {
    /// The absolute glob this entry stands for.
    pub fn glob(&self) -> String {
        let dir = self.dir.display().to_string();
        let dir = dir.trim_end_matches('/');
        if self.recursive {
            format!("{dir}/**/{}", self.pattern)
        } else {
            format!("{dir}/{}", self.pattern)
        }
    }
}

/// The `fleet:` section (`litestreampp run`); every key is optional and a
/// command-line flag wins over it.
#[derive(Debug, Clone, Default)]
pub struct FleetConfig {
    pub hot_idle_timeout: Option<Duration>,
    pub max_hot: Option<usize>,
    pub backlog_rate: Option<u32>,
    pub backlog_workers: Option<usize>,
    pub max_uploads: Option<usize>,
    pub sync_interval: Option<Duration>,
    pub poll_interval: Option<Duration>,
    pub state_dir: Option<PathBuf>,
    pub exclude: Vec<String>,
}

const FLEET_KEYS: &[&str] = &[
    "hot-idle-timeout",
    "max-hot",
    "backlog-rate",
    "backlog-workers",
    "max-uploads",
    "sync-interval",
    "poll-interval",
    "state-dir",
    "exclude",
];

/// The whole file.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub dbs: Vec<DbConfig>,
    /// `dbs` entries with `dir` (replicated by `litestreampp run`).
    pub dirs: Vec<DirConfig>,
    pub fleet: FleetConfig,
    /// Top-level `addr` (metrics endpoint), as written.
    pub addr: Option<String>,
    pub levels: LevelsConfig,
    pub log_level: Option<String>,
}

impl Config {
    /// The database configured at `path` (compared as absolute paths).
    pub fn db(&self, path: &Path) -> Option<&DbConfig> {
        let want = expand_path(&path.display().to_string()).ok()?;
        self.dbs.iter().find(|d| d.path == want)
    }
}

/// `$LITESTREAM_CONFIG`, else `/etc/litestream.yml`.
pub fn default_config_path() -> PathBuf {
    std::env::var_os("LITESTREAM_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/litestream.yml"))
}

/// Reads and validates a config file.
pub fn read_config(path: &Path, expand_env: bool) -> Result<Config> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("read config {}", path.display()))?;
    parse_config(&text, path, expand_env)
}

/// Parses config text; `path` is used in messages.
pub fn parse_config(text: &str, path: &Path, expand_env: bool) -> Result<Config> {
    let where_ = path.display().to_string();
    let text = if expand_env {
        expand_env_vars(text)
    } else {
        text.to_string()
    };
    let root: Value = if text.trim().is_empty() {
        Value::Object(Default::default())
    } else {
        serde_saphyr::from_str(&text).map_err(|e| anyhow!("config {where_}: {e}"))?
    };
    let top = root
        .as_object()
        .ok_or_else(|| anyhow!("config {where_}: expected a mapping at the top level"))?;
    check_keys(top, &[TOP_KEYS, REPLICA_SETTING_KEYS], &where_)?;
    let defaults: BTreeMap<String, Value> = top
        .iter()
        .filter(|(k, _)| REPLICA_SETTING_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();

    let levels = parse_levels(top, &where_)?;
    let mut dbs = Vec::new();
    let mut dirs = Vec::new();
    if let Some(list) = top.get("dbs") {
        let list = list
            .as_array()
            .ok_or_else(|| anyhow!("config {where_}: dbs: expected a list"))?;
        for (i, d) in list.iter().enumerate() {
            let at = format!("{where_}: dbs[{i}]");
            let m = d
                .as_object()
                .ok_or_else(|| anyhow!("config {at}: expected a mapping"))?;
            check_keys(m, &[DB_KEYS], &at)?;
            if m.contains_key("dir") || m.contains_key("pattern") {
                dirs.push(parse_dir(m, &defaults, &at)?);
            } else {
                dbs.push(parse_db(m, &defaults, &levels, &at)?);
            }
        }
    }
    let fleet = parse_fleet(top.get("fleet"), &where_)?;
    let addr = str_key(top, "addr", &where_)?;
    let log_level = top
        .get("logging")
        .and_then(|l| l.get("level"))
        .and_then(|v| v.as_str())
        .map(str::to_string);
    Ok(Config {
        path: path.to_path_buf(),
        dbs,
        dirs,
        fleet,
        addr,
        levels,
        log_level,
    })
}

fn check_keys(m: &serde_json::Map<String, Value>, allowed: &[&[&str]], at: &str) -> Result<()> {
    for k in m.keys() {
        if !allowed.iter().any(|set| set.contains(&k.as_str())) {
            bail!("config {at}: unknown key {k:?}");
        }
    }
    Ok(())
}

/// `levels`, `snapshot`, `l0-retention`, `retention.enabled` and
/// `verify-compaction` (Litestream's defaults where absent).
fn parse_levels(top: &serde_json::Map<String, Value>, at: &str) -> Result<LevelsConfig> {
    let mut c = LevelsConfig::default();
    let dur = |v: &Value, k: &str| -> Result<Duration> {
        parse_duration_value(v).with_context(|| format!("config {at}: {k}"))
    };
    if let Some(v) = top.get("levels") {
        let list = v
            .as_array()
            .ok_or_else(|| anyhow!("config {at}: levels: expected a list of {{interval: ...}}"))?;
        c.intervals = list
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let iv = l
                    .get("interval")
                    .ok_or_else(|| anyhow!("config {at}: levels[{i}].interval required"))?;
                let d = dur(iv, &format!("levels[{i}].interval"))?;
                if d.is_zero() {
                    bail!("config {at}: levels[{i}].interval must be positive");
                }
                Ok(d)
            })
            .collect::<Result<_>>()?;
    }
    apply_snapshot(&mut c, top.get("snapshot"), at)?;
    if let Some(v) = top.get("l0-retention") {
        c.l0_retention = dur(v, "l0-retention")?;
    }
    if let Some(v) = top.get("verify-compaction") {
        c.verify_compaction = v
            .as_bool()
            .ok_or_else(|| anyhow!("config {at}: verify-compaction: expected true or false"))?;
    }
    if let Some(r) = top.get("retention") {
        if let Some(e) = r.get("enabled") {
            c.retention_enabled = e
                .as_bool()
                .ok_or_else(|| anyhow!("config {at}: retention.enabled: expected true or false"))?;
        }
    }
    c.validate().map_err(|e| anyhow!("config {at}: {e}"))?;
    Ok(c)
}

fn apply_snapshot(c: &mut LevelsConfig, v: Option<&Value>, at: &str) -> Result<()> {
    let Some(v) = v else { return Ok(()) };
    let m = v
        .as_object()
        .ok_or_else(|| anyhow!("config {at}: snapshot: expected {{interval, retention}}"))?;
    check_keys(m, &[&["interval", "retention"]], &format!("{at}: snapshot"))?;
    if let Some(i) = m.get("interval") {
        c.snapshot_interval =
            parse_duration_value(i).with_context(|| format!("config {at}: snapshot.interval"))?;
        if c.snapshot_interval.is_zero() {
            bail!("config {at}: snapshot.interval must be positive");
        }
    }
    if let Some(r) = m.get("retention") {
        c.snapshot_retention =
            parse_duration_value(r).with_context(|| format!("config {at}: snapshot.retention"))?;
    }
    Ok(())
}

fn parse_db(
    m: &serde_json::Map<String, Value>,
    defaults: &BTreeMap<String, Value>,
    levels: &LevelsConfig,
    at: &str,
) -> Result<DbConfig> {
    let path = str_key(m, "path", at)?.ok_or_else(|| anyhow!("config {at}: path required"))?;
    let path = expand_path(&path).with_context(|| format!("config {at}: path"))?;
    let replica = match (m.get("replica"), m.get("replicas")) {
        (Some(_), Some(_)) => bail!("config {at}: use replica or replicas, not both"),
        (Some(r), None) => Some(parse_replica(r, defaults, &format!("{at}.replica"))?),
        (None, Some(list)) => {
            let list = list
                .as_array()
                .ok_or_else(|| anyhow!("config {at}: replicas: expected a list"))?;
            match list.len() {
                0 => None,
                1 => Some(parse_replica(
                    &list[0],
                    defaults,
                    &format!("{at}.replicas[0]"),
                )?),
                n => bail!(
                    "config {at}: replicas: at most one replica per database is supported (found {n})"
                ),
            }
        }
        (None, None) => None,
    };
    let dur = |k: &str| -> Result<Option<Duration>> {
        m.get(k)
            .map(|v| parse_duration_value(v).with_context(|| format!("config {at}: {k}")))
            .transpose()
    };
    let num = |k: &str| -> Result<Option<u64>> {
        m.get(k)
            .map(|v| {
                v.as_u64()
                    .ok_or_else(|| anyhow!("config {at}: {k}: expected a non-negative integer"))
            })
            .transpose()
    };
    let u32_of = |k: &str| -> Result<Option<u32>> {
        num(k)?
            .map(|v| u32::try_from(v).map_err(|_| anyhow!("config {at}: {k}: too large")))
            .transpose()
    };
    let meta_path = str_key(m, "meta-path", at)?
        .map(|p| expand_path(&p))
        .transpose()?;
    let mut levels = levels.clone();
    apply_snapshot(&mut levels, m.get("snapshot"), at)?;
    Ok(DbConfig {
        path,
        replica,
        meta_path,
        monitor_interval: dur("monitor-interval")?,
        checkpoint_interval: dur("checkpoint-interval")?,
        busy_timeout: dur("busy-timeout")?,
        min_checkpoint_page_count: u32_of("min-checkpoint-page-count")?,
        truncate_page_n: u32_of("truncate-page-n")?,
        max_sync_wal_bytes: num("max-sync-wal-bytes")?,
        levels,
    })
}

/// A directory entry. Per-database tuning keys are accepted as in
/// Litestream but the fleet uses its own (`fleet:`) settings.
fn parse_dir(
    m: &serde_json::Map<String, Value>,
    defaults: &BTreeMap<String, Value>,
    at: &str,
) -> Result<DirConfig> {
    if m.contains_key("path") {
        bail!("config {at}: use path (one database) or dir (a directory), not both");
    }
    let dir = str_key(m, "dir", at)?.ok_or_else(|| anyhow!("config {at}: dir required"))?;
    let dir = expand_path(&dir).with_context(|| format!("config {at}: dir"))?;
    let pattern = str_key(m, "pattern", at)?
        .ok_or_else(|| anyhow!("config {at}: pattern required for directory replication"))?;
    if pattern.contains('/') {
        bail!("config {at}: pattern {pattern:?} matches file names and cannot contain '/'");
    }
    let flag = |k: &str| -> Result<bool> {
        match m.get(k) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => bail!("config {at}: {k}: expected true or false, got {other}"),
        }
    };
    let recursive = flag("recursive")?;
    flag("watch")?; // the fleet always watches
    let replica = match (m.get("replica"), m.get("replicas")) {
        (Some(r), None) => parse_replica(r, defaults, &format!("{at}.replica"))?,
        (None, Some(Value::Array(list))) if list.len() == 1 => {
            parse_replica(&list[0], defaults, &format!("{at}.replicas[0]"))?
        }
        (None, None) => bail!("config {at}: replica required"),
        _ => bail!("config {at}: exactly one replica per directory entry"),
    };
    Ok(DirConfig {
        dir,
        pattern,
        recursive,
        replica,
    })
}

fn parse_fleet(v: Option<&Value>, at: &str) -> Result<FleetConfig> {
    let mut f = FleetConfig::default();
    let Some(v) = v else { return Ok(f) };
    let at = format!("{at}: fleet");
    let m = v
        .as_object()
        .ok_or_else(|| anyhow!("config {at}: expected a mapping"))?;
    check_keys(m, &[FLEET_KEYS], &at)?;
    let dur = |k: &str| -> Result<Option<Duration>> {
        m.get(k)
            .map(|v| parse_duration_value(v).with_context(|| format!("config {at}.{k}")))
            .transpose()
    };
    let num = |k: &str| -> Result<Option<u64>> {
        m.get(k)
            .map(|v| {
                v.as_u64()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| anyhow!("config {at}.{k}: expected a positive integer"))
            })
            .transpose()
    };
    f.hot_idle_timeout = dur("hot-idle-timeout")?;
    f.sync_interval = dur("sync-interval")?;
    f.poll_interval = dur("poll-interval")?;
    f.max_hot = num("max-hot")?.map(|n| n as usize);
    f.backlog_workers = num("backlog-workers")?.map(|n| n as usize);
    f.max_uploads = num("max-uploads")?.map(|n| n as usize);
    f.backlog_rate = num("backlog-rate")?
        .map(|n| u32::try_from(n).map_err(|_| anyhow!("config {at}.backlog-rate: too large")))
        .transpose()?;
    f.state_dir = str_key(m, "state-dir", &at)?
        .map(|p| expand_path(&p))
        .transpose()?;
    if let Some(v) = m.get("exclude") {
        let list = v
            .as_array()
            .ok_or_else(|| anyhow!("config {at}.exclude: expected a list of globs"))?;
        for e in list {
            let s = e
                .as_str()
                .ok_or_else(|| anyhow!("config {at}.exclude: expected a list of globs"))?;
            f.exclude.push(s.to_string());
        }
    }
    Ok(f)
}

fn parse_replica(v: &Value, defaults: &BTreeMap<String, Value>, at: &str) -> Result<ReplicaConfig> {
    let m = v
        .as_object()
        .ok_or_else(|| anyhow!("config {at}: expected a mapping"))?;
    check_keys(m, &[REPLICA_KEYS, REPLICA_SETTING_KEYS], at)?;
    let url = str_key(m, "url", at)?;
    let path = str_key(m, "path", at)?;
    if url.is_some() && path.is_some() {
        bail!("config {at}: url and path are mutually exclusive");
    }
    if url.is_some() && m.contains_key("bucket") {
        bail!("config {at}: url and bucket are mutually exclusive");
    }
    let kind = match (str_key(m, "type", at)?, &url) {
        (Some(t), _) => t,
        (None, Some(u)) => scheme_of(u).unwrap_or("file").to_string(),
        (None, None) => "file".to_string(),
    };
    let mut settings = defaults.clone();
    for (k, v) in m {
        if REPLICA_SETTING_KEYS.contains(&k.as_str()) {
            settings.insert(k.clone(), v.clone());
        }
    }
    Ok(ReplicaConfig {
        kind,
        url,
        path,
        settings,
    })
}

fn str_key(m: &serde_json::Map<String, Value>, k: &str, at: &str) -> Result<Option<String>> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => bail!("config {at}: {k}: expected a string, got {other}"),
    }
}

fn scheme_of(url: &str) -> Option<&str> {
    url.split_once("://").map(|(s, _)| s)
}

/// `$VAR` and `${VAR}` expansion as Go's `os.ExpandEnv` does (unset
/// variables expand to nothing).
pub fn expand_env_vars(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'{' {
                if let Some(end) = s[i + 2..].find('}') {
                    let name = &s[i + 2..i + 2 + end];
                    out.push_str(&std::env::var(name).unwrap_or_default());
                    i += 3 + end;
                    continue;
                }
            } else if b[i + 1] == b'_' || b[i + 1].is_ascii_alphabetic() {
                let mut j = i + 1;
                while j < b.len() && (b[j] == b'_' || b[j].is_ascii_alphanumeric()) {
                    j += 1;
                }
                out.push_str(&std::env::var(&s[i + 1..j]).unwrap_or_default());
                i = j;
                continue;
            }
        }
        let ch = s[i..].chars().next().unwrap_or('\0');
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    out
}

/// An absolute path: `~` expanded, relative paths joined to the current
/// directory, `sqlite://` prefixes removed (as Litestream does).
pub fn expand_path(s: &str) -> Result<PathBuf> {
    let s = s
        .strip_prefix("sqlite3://")
        .or_else(|| s.strip_prefix("sqlite://"))
        .unwrap_or(s);
    let p = if s == "~" || s.starts_with("~/") {
        let home =
            std::env::var_os("HOME").ok_or_else(|| anyhow!("cannot expand ~: HOME is not set"))?;
        PathBuf::from(home).join(s.trim_start_matches('~').trim_start_matches('/'))
    } else {
        PathBuf::from(s)
    };
    if p.is_absolute() {
        Ok(p)
    } else {
        Ok(std::env::current_dir()
            .context("current directory")?
            .join(p))
    }
}

fn parse_duration_value(v: &Value) -> Result<Duration> {
    match v {
        Value::String(s) => parse_go_duration(s),
        Value::Number(n) if n.as_u64() == Some(0) => Ok(Duration::ZERO),
        other => bail!("expected a duration such as \"1s\" or \"500ms\", got {other}"),
    }
}

/// Parses a Go duration: `300ms`, `1.5h`, `1h30m`, `2s`.
pub fn parse_go_duration(s: &str) -> Result<Duration> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = t;
    let mut total = 0f64;
    if rest.is_empty() {
        bail!("empty duration");
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            bail!("invalid duration {s:?}");
        }
        let n: f64 = rest[..num_end]
            .parse()
            .map_err(|_| anyhow!("invalid duration {s:?}"))?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            u => bail!("invalid duration {s:?}: unknown unit {u:?}"),
        };
        total += n * secs;
        rest = &rest[unit_end..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| anyhow!("duration {s:?} is out of range"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Found by fuzzing (tests/fuzz/regressions/config_parse): a huge
    /// duration in a config panicked instead of being refused.
    #[test]
    fn durations_out_of_range_are_refused() {
        let e = parse_go_duration("99999999999999999999h").unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
        assert!(parse_go_duration("1000000000000000000000000000000h").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_go_duration("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(
            parse_go_duration("1h30m").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_go_duration("250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            parse_go_duration("1.5h").unwrap(),
            Duration::from_secs(5400)
        );
        assert!(parse_go_duration("5 minutes").is_err());
        assert!(parse_go_duration("").is_err());
    }

    #[test]
    fn env_expansion() {
        let home = std::env::var("HOME").unwrap_or_default();
        assert_eq!(
            expand_env_vars("x: $HOME/${HOME}"),
            format!("x: {home}/{home}")
        );
        assert_eq!(expand_env_vars("cost: $5 and $"), "cost: $5 and $");
        assert_eq!(expand_env_vars("v: $LSPP_TEST_UNSET_VAR."), "v: .");
    }

    #[test]
    fn parses_levels_snapshots_and_retention() {
        let c = parse_config(
            "levels:\n  - interval: 10s\n  - interval: 2m\nsnapshot:\n  interval: 12h\n  retention: 48h\nl0-retention: 1m\nl0-retention-check-interval: 5s\nretention:\n  enabled: false\nverify-compaction: true\ndbs:\n  - path: /data/a.db\n    replica:\n      url: file:///b/a\n  - path: /data/b.db\n    snapshot:\n      interval: 1h\n    replica:\n      url: file:///b/b\n",
            Path::new("test.yml"),
            true,
        )
        .unwrap();
        let a = &c.dbs[0].levels;
        assert_eq!(
            a.intervals,
            [Duration::from_secs(10), Duration::from_secs(120)]
        );
        assert_eq!(a.snapshot_interval, Duration::from_secs(12 * 3600));
        assert_eq!(a.snapshot_retention, Duration::from_secs(48 * 3600));
        assert_eq!(a.l0_retention, Duration::from_secs(60));
        assert!(!a.retention_enabled && a.verify_compaction);
        // A database's own snapshot settings override the top level's.
        let b = &c.dbs[1].levels;
        assert_eq!(b.snapshot_interval, Duration::from_secs(3600));
        assert_eq!(b.snapshot_retention, Duration::from_secs(48 * 3600));
        // Defaults are Litestream's.
        let d = parse_config("dbs: []\n", Path::new("t.yml"), true).unwrap();
        assert_eq!(d.levels, LevelsConfig::default());
        for (bad, key) in [
            ("levels:\n  - interval: 0s\n", "levels[0]"),
            ("levels:\n  - {}\n", "levels[0].interval"),
            ("snapshot:\n  interval: 0s\n", "snapshot.interval"),
            ("snapshot:\n  every: 1h\n", "every"),
            ("retention:\n  enabled: maybe\n", "retention.enabled"),
        ] {
            let e = format!(
                "{:#}",
                parse_config(bad, Path::new("t.yml"), true).unwrap_err()
            );
            assert!(e.contains(key), "{bad:?}: {e}");
        }
    }

    #[test]
    fn parses_litestream_config() {
        let c = parse_config(
            "sync-interval: 2s\ndbs:\n  - path: /data/a.db\n    monitor-interval: 100ms\n    replica:\n      url: file:///backups/a\n  - path: /data/b.db\n    replicas:\n      - type: file\n        path: /backups/b\n        sync-interval: 5s\n",
            Path::new("test.yml"),
            true,
        )
        .unwrap();
        assert_eq!(c.dbs.len(), 2);
        let a = c.db(Path::new("/data/a.db")).unwrap();
        assert_eq!(a.monitor_interval, Some(Duration::from_millis(100)));
        let r = a.replica.as_ref().unwrap();
        assert_eq!(r.kind, "file");
        assert_eq!(
            r.duration("sync-interval").unwrap(),
            Some(Duration::from_secs(2))
        );
        let rb = c.dbs[1].replica.as_ref().unwrap();
        assert_eq!(
            rb.duration("sync-interval").unwrap(),
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        for (text, want) in [
            (
                "dbs:\n  - path: /a.db\n    replica:\n      bukcet: x\n",
                "unknown key \"bukcet\"",
            ),
            ("dbz: []\n", "unknown key \"dbz\""),
            ("dbs:\n  - replica: {url: 'file:///x'}\n", "path required"),
            (
                "dbs:\n  - path: /a\n    replica: {url: 'file:///x', path: /y}\n",
                "mutually exclusive",
            ),
            (
                "dbs:\n  - path: /a\n    monitor-interval: soon\n",
                "monitor-interval",
            ),
            ("dbs: [", "config t.yml"),
        ] {
            let err = format!(
                "{:#}",
                parse_config(text, Path::new("t.yml"), false).unwrap_err()
            );
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn parses_directory_entries_and_the_fleet_section() {
        let c = parse_config(
            "addr: \":9090\"\ndbs:\n  - path: /one.db\n    replica: {url: 'file:///b/one'}\n  - dir: /data/tenants/\n    pattern: \"*.db\"\n    recursive: true\n    watch: true\n    replica:\n      type: s3\n      bucket: bkt\n      path: tenants\n      region: eu-west-1\n  - dir: /data/flat\n    pattern: \"t-*.sqlite\"\n    replica: {url: 'file:///b/flat'}\nfleet:\n  hot-idle-timeout: 10s\n  max-hot: 50\n  backlog-rate: 20\n  exclude: ['**/tmp/*.db']\n",
            Path::new("t.yml"),
            false,
        )
        .unwrap();
        assert_eq!(c.dbs.len(), 1);
        assert_eq!(c.dirs.len(), 2);
        assert_eq!(c.dirs[0].glob(), "/data/tenants/**/*.db");
        assert_eq!(c.dirs[1].glob(), "/data/flat/t-*.sqlite");
        let r = c.dirs[0].replica.with_relative_path("a/x.db").unwrap();
        let s = r.s3_settings().unwrap();
        assert_eq!(
            (s.bucket.as_str(), s.path.as_str()),
            ("bkt", "tenants/a/x.db")
        );
        assert_eq!(c.fleet.hot_idle_timeout, Some(Duration::from_secs(10)));
        assert_eq!(c.fleet.max_hot, Some(50));
        assert_eq!(c.fleet.backlog_rate, Some(20));
        assert_eq!(c.fleet.exclude, ["**/tmp/*.db"]);
        assert_eq!(c.addr.as_deref(), Some(":9090"));
        for (text, want) in [
            (
                "dbs:\n  - dir: /d\n    replica: {url: 'file:///x'}\n",
                "pattern required",
            ),
            (
                "dbs:\n  - dir: /d\n    pattern: '*.db'\n",
                "replica required",
            ),
            (
                "dbs:\n  - dir: /d\n    pattern: 'a/*.db'\n    replica: {url: 'file:///x'}\n",
                "file names",
            ),
            ("fleet:\n  max-hot: 0\n", "max-hot"),
            ("fleet:\n  hot-timeout: 1s\n", "unknown key \"hot-timeout\""),
        ] {
            let err = format!(
                "{:#}",
                parse_config(text, Path::new("t.yml"), false).unwrap_err()
            );
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
