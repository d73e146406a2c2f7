//! `litestream.yml`: Litestream 0.5.17's configuration file (format spec
//! §5), read the same way: `$VAR` / `${VAR}` expansion, global replica
//! defaults, `dbs` with one `replica` each. Unknown keys are errors that
//! name the key, so a typo is never silently ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use litestreampp_core::levels::LevelsConfig;
use litestreampp_core::replicator::ReplicatorOptions;
use serde_json::Value;

use super::entries::{DbConfig, DbTuning, DirConfig, parse_db, parse_dir};
use super::fleet::{FleetConfig, parse_fleet};
use super::keys::{
    DB_KEYS, LOGGING_KEYS, REPLICA_KEYS, REPLICA_SETTING_KEYS, SOCKET_KEYS, SUPPORTED_TYPES,
    TOP_KEYS, applies_to, backends_of, is_backend_key, refusal,
};
use super::replica::{ReplicaConfig, scheme_of};
use super::values::{expand_env_vars, expand_path, parse_duration_value};

/// `socket:` when enabled: Litestream's control socket.
#[derive(Debug, Clone, PartialEq)]
pub struct SocketConfig {
    pub path: PathBuf,
    /// File mode (Go's default 0600).
    pub permissions: u32,
}

/// `logging:` (Go's keys and meanings).
#[derive(Debug, Clone, Default)]
pub struct LoggingConfig {
    pub level: Option<String>,
    /// `type: json`: one JSON object per line (`time`, `level`, `msg`).
    pub json: bool,
    /// `stderr`: as written; unset keeps our default (stderr).
    pub stderr: Option<bool>,
    /// `source`: each line names the source file and line.
    pub source: bool,
}

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
    pub logging: LoggingConfig,
    /// `exec`: the application to start once replication runs.
    pub exec: Option<String>,
    /// `heartbeat-url` and `heartbeat-interval`.
    pub heartbeat: Option<HeartbeatConfig>,
    /// `shutdown-sync-timeout` and `shutdown-sync-interval`: how long a
    /// failed final sync is retried at stop, and how often.
    pub shutdown_sync: (Duration, Duration),
    /// `validation.interval`: check every level of each replica for TXID
    /// gaps and overlaps this often.
    pub validation_interval: Option<Duration>,
    /// The control socket, when `socket.enabled`.
    pub socket: Option<SocketConfig>,
    /// The MCP server, when `mcp-addr` is set.
    pub mcp: Option<McpConfig>,
}

/// `mcp-addr` (Litestream's) and `mcp-write-tools` (ours).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpConfig {
    /// As written: `:3001` (loopback here), `127.0.0.1:3001`, `0.0.0.0:3001`.
    pub addr: String,
    /// Offer `litestream_restore` and `litestream_reset` too.
    pub write_tools: bool,
}

/// Litestream's defaults for the final sync's retries.
pub const SHUTDOWN_SYNC_DEFAULT: (Duration, Duration) =
    (Duration::from_secs(30), Duration::from_millis(500));

/// Where and how often to ping while replication is healthy.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatConfig {
    pub url: String,
    pub interval: Duration,
}

/// Litestream's default and smallest heartbeat intervals.
const HEARTBEAT_DEFAULT: Duration = Duration::from_secs(5 * 60);
const HEARTBEAT_MIN: Duration = Duration::from_secs(60);

impl Config {
    /// The per-database settings of the entries the fleet replicates
    /// (directory entries, and path entries beside them), and their
    /// replicas' `sync-interval`: the fleet applies one set to all its
    /// databases, so entries that differ are refused rather than one of
    /// them silently winning. Meta directories are per entry, not here.
    pub fn fleet_tuning(&self) -> Result<(DbTuning, Option<Duration>)> {
        let mut entries = Vec::new();
        for d in &self.dirs {
            entries.push((d.dir.clone(), d.tuning.clone(), Some(&d.replica)));
        }
        for d in &self.dbs {
            let tuning = DbTuning {
                meta_path: None,
                ..d.tuning.clone()
            };
            entries.push((d.path.clone(), tuning, d.replica.as_ref()));
        }
        let mut out: Option<(PathBuf, DbTuning, Option<Duration>)> = None;
        for (at, tuning, replica) in entries {
            let sync = match replica {
                Some(r) => r.duration("sync-interval")?,
                None => None,
            };
            match &out {
                None => out = Some((at, tuning, sync)),
                Some((first, t, s)) if *t != tuning || *s != sync => {
                    return Err(anyhow::Error::new(ConfigError(format!(
                        "config {}: entries {} and {} have different per-database settings (sync-interval, checkpoint, snapshot, monitor or busy-timeout keys); the fleet applies one set to every database: give both the same values",
                        self.path.display(),
                        first.display(),
                        at.display()
                    ))));
                }
                Some(_) => {}
            }
        }
        Ok(out.map_or_else(
            || (DbTuning::with_levels(self.levels.clone()), None),
            |(_, t, s)| (t, s),
        ))
    }

    /// The final-sync retries applied to a replicator's options.
    pub fn apply_shutdown_sync(&self, o: &mut ReplicatorOptions) {
        (o.shutdown_sync_timeout, o.shutdown_sync_interval) = self.shutdown_sync;
    }

    /// The database configured at `path` (compared as absolute paths).
    pub fn db(&self, path: &Path) -> Option<&DbConfig> {
        let want = expand_path(&path.display().to_string()).ok()?;
        self.dbs.iter().find(|d| d.path == want)
    }

    /// The directory entry `path` falls under (its glob matches), and the
    /// database's path relative to the entry's `dir`: the replica of that
    /// database is the entry's replica with this path appended.
    pub fn dir_db(&self, path: &Path) -> Option<(&DirConfig, String)> {
        let want = expand_path(&path.display().to_string()).ok()?;
        self.dirs.iter().find_map(|d| {
            let rel = want.strip_prefix(&d.dir).ok()?;
            crate::restore_fleet::compile(&d.glob())
                .ok()?
                .is_match(&want)
                .then(|| (d, rel.to_string_lossy().into_owned()))
        })
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

/// A config file that cannot be used as written: a syntax error, a wrong
/// value, an unknown or refused key. Commands exit with code 2 on it, as on
/// a bad flag.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Parses config text; `path` is used in messages.
pub fn parse_config(text: &str, path: &Path, expand_env: bool) -> Result<Config> {
    parse(text, path, expand_env).map_err(|e| anyhow::Error::new(ConfigError(format!("{e:#}"))))
}

fn parse(text: &str, path: &Path, expand_env: bool) -> Result<Config> {
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
    for k in top.keys() {
        let known = TOP_KEYS.contains(&k.as_str())
            || REPLICA_SETTING_KEYS.contains(&k.as_str())
            || is_backend_key(k);
        if !known {
            bail!("config {where_}: unknown key {k:?}");
        }
    }
    check_refusals(top, "top", &where_)?;
    let defaults: BTreeMap<String, Value> = top
        .iter()
        .filter(|(k, _)| REPLICA_SETTING_KEYS.contains(&k.as_str()) || is_backend_key(k))
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
                check_refusals(m, "dir", &at)?;
                dirs.push(parse_dir(m, &defaults, &levels, &at)?);
            } else {
                check_refusals(m, "db", &at)?;
                dbs.push(parse_db(m, &defaults, &levels, &at)?);
            }
        }
    }
    // A default for a backend no replica in the file uses would be
    // dropped: say so instead.
    for k in defaults.keys() {
        let owners = backends_of(k);
        if !owners.is_empty() {
            let used = dbs
                .iter()
                .filter_map(|d| d.replica.as_ref())
                .chain(dirs.iter().map(|d| &d.replica))
                .any(|r| owners.contains(&r.kind.as_str()));
            if !used {
                let b = owners.join("/");
                bail!(
                    "config {where_}: {k} is a setting of {b} replicas and no {b} replica is configured; remove it"
                );
            }
        }
    }
    let fleet = parse_fleet(top.get("fleet"), &where_)?;
    let addr = str_key(top, "addr", &where_)?;
    if let Some(v) = top.get("l0-retention-check-interval") {
        // L0 files are deleted at each one's own deadline, so any interval
        // is met; the value is still checked as Go checks it.
        let d = parse_duration_value(v)
            .with_context(|| format!("config {where_}: l0-retention-check-interval"))?;
        if d.is_zero() {
            bail!("config {where_}: l0-retention-check-interval must be greater than 0");
        }
    }
    let socket = parse_socket(top.get("socket"), &where_)?;
    let mcp = parse_mcp(top, &where_)?;
    let mut validation_interval = None;
    if let Some(v) = top.get("validation") {
        let m = v
            .as_object()
            .ok_or_else(|| anyhow!("config {where_}: validation: expected a mapping"))?;
        check_keys(m, &[&["interval"]], &format!("{where_}: validation"))?;
        validation_interval = m
            .get("interval")
            .filter(|v| !v.is_null())
            .map(|v| {
                parse_duration_value(v)
                    .with_context(|| format!("config {where_}: validation.interval"))
            })
            .transpose()?
            .filter(|d| !d.is_zero());
    }
    let logging = parse_logging(top.get("logging"), &where_)?;
    let exec = str_key(top, "exec", &where_)?.filter(|e| !e.trim().is_empty());
    let heartbeat = parse_heartbeat(top, &where_)?;
    let duration_key = |k: &str| {
        top.get(k)
            .filter(|v| !v.is_null())
            .map(|v| parse_duration_value(v).with_context(|| format!("config {where_}: {k}")))
            .transpose()
    };
    let shutdown_sync = (
        duration_key("shutdown-sync-timeout")?.unwrap_or(SHUTDOWN_SYNC_DEFAULT.0),
        duration_key("shutdown-sync-interval")?.unwrap_or(SHUTDOWN_SYNC_DEFAULT.1),
    );
    if shutdown_sync.1.is_zero() {
        bail!(
            "config {where_}: shutdown-sync-interval: shutdown sync interval must be greater than 0"
        );
    }
    Ok(Config {
        validation_interval,
        socket,
        mcp,
        shutdown_sync,
        exec,
        heartbeat,
        path: path.to_path_buf(),
        dbs,
        dirs,
        fleet,
        addr,
        levels,
        logging,
    })
}

/// `mcp-addr` and `mcp-write-tools`; write tools without a server are
/// refused, not ignored.
fn parse_mcp(top: &serde_json::Map<String, Value>, at: &str) -> Result<Option<McpConfig>> {
    let addr = str_key(top, "mcp-addr", at)?.filter(|a| !a.trim().is_empty());
    let write_tools = match top.get("mcp-write-tools") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => bail!("config {at}: mcp-write-tools: expected true or false, got {other}"),
    };
    match addr {
        Some(addr) => Ok(Some(McpConfig { addr, write_tools })),
        None if write_tools => {
            bail!(
                "config {at}: mcp-write-tools is set but mcp-addr is not; set mcp-addr or remove it"
            )
        }
        None => Ok(None),
    }
}

/// `socket:` (Go's keys, defaults and octal `permissions`); `None` unless
/// enabled.
fn parse_socket(v: Option<&Value>, at: &str) -> Result<Option<SocketConfig>> {
    let Some(v) = v else { return Ok(None) };
    let m = v
        .as_object()
        .ok_or_else(|| anyhow!("config {at}: socket: expected a mapping"))?;
    check_keys(m, &[SOCKET_KEYS], &format!("{at}: socket"))?;
    match m.get("enabled") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => return Ok(None),
        Some(Value::Bool(true)) => {}
        Some(other) => bail!("config {at}: socket.enabled: expected true or false, got {other}"),
    }
    let path = match str_key(m, "path", &format!("{at}: socket"))? {
        Some(p) if !p.is_empty() => expand_path(&p)?,
        _ => PathBuf::from(crate::control::DEFAULT_SOCKET),
    };
    let permissions = match m.get("permissions") {
        None | Some(Value::Null) => 0o600,
        Some(v) => socket_mode(v).ok_or_else(|| {
            anyhow!("config {at}: socket.permissions: expected a file mode such as 0600, got {v}")
        })?,
    };
    Ok(Some(SocketConfig { path, permissions }))
}

/// A file mode as Go's YAML reads it: `0600` is octal (our YAML parser
/// reads that leading zero as a decimal number, so its digits are taken
/// as octal), `0o600` and `384` are what they say.
fn socket_mode(v: &Value) -> Option<u32> {
    let octal = |digits: &str| u32::from_str_radix(digits, 8).ok();
    let mode = match v {
        Value::Number(n) if n.is_u64() => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::Number(n) => n
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1e9)
            .and_then(|f| octal(&format!("{f:.0}"))),
        Value::String(s) => octal(s.trim_start_matches("0o")),
        _ => None,
    }?;
    (mode <= 0o777).then_some(mode)
}

/// `heartbeat-url` (http or https) and `heartbeat-interval` (at least a
/// minute, default five), checked as Litestream checks them.
fn parse_heartbeat(
    top: &serde_json::Map<String, Value>,
    at: &str,
) -> Result<Option<HeartbeatConfig>> {
    let interval = top
        .get("heartbeat-interval")
        .filter(|v| !v.is_null())
        .map(|v| {
            parse_duration_value(v).with_context(|| format!("config {at}: heartbeat-interval"))
        })
        .transpose()?;
    if let Some(i) = interval
        && i < HEARTBEAT_MIN
    {
        bail!(
            "config {at}: heartbeat-interval: heartbeat interval must be at least 1 minute (got {i:?})"
        );
    }
    let Some(url) = str_key(top, "heartbeat-url", at)?.filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let ok = url::Url::parse(&url)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if !ok {
        bail!(
            "config {at}: heartbeat-url: heartbeat URL must be a valid HTTP or HTTPS URL (got {})",
            litestreampp_core::redact::redact_url(&url)
        );
    }
    Ok(Some(HeartbeatConfig {
        url,
        interval: interval.unwrap_or(HEARTBEAT_DEFAULT),
    }))
}

/// Refuses every key of `m` that [`refusal`] names.
fn check_refusals(m: &serde_json::Map<String, Value>, scope: &str, at: &str) -> Result<()> {
    for (k, v) in m {
        if let Some(why) = refusal(scope, k, v) {
            bail!("config {at}: {k}: {why}");
        }
    }
    Ok(())
}

fn parse_logging(v: Option<&Value>, at: &str) -> Result<LoggingConfig> {
    let mut l = LoggingConfig::default();
    let Some(v) = v else { return Ok(l) };
    let at = format!("{at}: logging");
    let m = v
        .as_object()
        .ok_or_else(|| anyhow!("config {at}: expected a mapping"))?;
    check_keys(m, &[LOGGING_KEYS], &at)?;
    l.level = str_key(m, "level", &at)?;
    if let Some(level) = &l.level
        && !matches!(
            level.to_lowercase().as_str(),
            "trace" | "debug" | "info" | "warn" | "warning" | "error"
        )
    {
        bail!("config {at}.level: {level:?} is not one of trace, debug, info, warn, error");
    }
    l.json = match str_key(m, "type", &at)?.as_deref() {
        None | Some("") | Some("text") | Some("pretty") => false,
        Some("json") => true,
        Some(other) => bail!("config {at}.type: {other:?} is not text, pretty or json"),
    };
    let flag = |k: &str| -> Result<Option<bool>> {
        match m.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => bail!("config {at}.{k}: expected true or false, got {other}"),
        }
    };
    l.stderr = flag("stderr")?;
    l.source = flag("source")?.unwrap_or(false);
    Ok(l)
}

pub(super) fn check_keys(
    m: &serde_json::Map<String, Value>,
    allowed: &[&[&str]],
    at: &str,
) -> Result<()> {
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
    if let Some(r) = top.get("retention")
        && let Some(e) = r.get("enabled")
    {
        c.retention_enabled = e
            .as_bool()
            .ok_or_else(|| anyhow!("config {at}: retention.enabled: expected true or false"))?;
    }
    c.validate().map_err(|e| anyhow!("config {at}: {e}"))?;
    Ok(c)
}

pub(super) fn apply_snapshot(c: &mut LevelsConfig, v: Option<&Value>, at: &str) -> Result<()> {
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

pub(super) fn parse_replica(
    v: &Value,
    defaults: &BTreeMap<String, Value>,
    at: &str,
) -> Result<ReplicaConfig> {
    let m = v
        .as_object()
        .ok_or_else(|| anyhow!("config {at}: expected a mapping"))?;
    for k in m.keys() {
        let known = REPLICA_KEYS.contains(&k.as_str())
            || REPLICA_SETTING_KEYS.contains(&k.as_str())
            || is_backend_key(k);
        if !known {
            bail!("config {at}: unknown key {k:?}");
        }
    }
    check_refusals(m, "replica", at)?;
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
    if !SUPPORTED_TYPES.contains(&kind.as_str()) {
        bail!(
            "config {at}: replica type {kind:?} is not supported by this build (supported: {})",
            SUPPORTED_TYPES.join(", ")
        );
    }
    // A key of another backend, written on this replica, would do nothing.
    for k in m.keys() {
        if !applies_to(k, &kind) {
            let b = backends_of(k).join("/");
            bail!("config {at}: {k} is a setting of {b} replicas, and this replica is {kind}");
        }
    }
    let mut settings: BTreeMap<String, Value> = defaults
        .iter()
        .filter(|(k, _)| applies_to(k, &kind))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in m {
        if !REPLICA_KEYS.contains(&k.as_str()) {
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

pub(super) fn str_key(
    m: &serde_json::Map<String, Value>,
    k: &str,
    at: &str,
) -> Result<Option<String>> {
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
