//! `litestream.yml`: Litestream 0.5.17's configuration file (format spec
//! §5), read the same way: `$VAR` / `${VAR}` expansion, global replica
//! defaults, `dbs` with one `replica` each. Unknown keys are errors that
//! name the key, so a typo is never silently ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use litestreampp_core::levels::LevelsConfig;
use serde_json::Value;

use super::replica::{ReplicaConfig, scheme_of};
use super::values::{expand_env_vars, expand_path, parse_duration_value};

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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "config_tests.rs"]
mod tests;
