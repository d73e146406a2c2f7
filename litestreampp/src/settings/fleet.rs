//! The `fleet:` section of a config file (`litestreampp run`): the
//! fleet's tuning, each key also a flag of `run` that wins over it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use super::config::{check_keys, str_key};
use super::values::{expand_path, parse_duration_value};

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
    /// What control requests to the HTTP endpoint must bear when it is not
    /// on loopback (`fleet.token`, else `LITESTREAMPP_TOKEN`).
    pub token: Option<litestreampp_core::redact::Secret>,
    /// `rollback-journal: leave`: rollback-journal databases are left
    /// alone and reported; `convert` (the default, Litestream's way)
    /// switches them to WAL mode.
    pub leave_rollback_journal: Option<bool>,
    /// How often an outage (replicas unreachable) is logged.
    pub outage_report_interval: Option<Duration>,
}

const FLEET_KEYS: &[&str] = &[
    "rollback-journal",
    "outage-report-interval",
    "hot-idle-timeout",
    "max-hot",
    "backlog-rate",
    "backlog-workers",
    "max-uploads",
    "sync-interval",
    "poll-interval",
    "state-dir",
    "exclude",
    "token",
];

/// `convert` (false) or `leave` (true).
pub fn parse_rollback_journal(v: &str) -> Result<bool> {
    match v {
        "convert" => Ok(false),
        "leave" => Ok(true),
        other => bail!("{other:?}: expected convert (switch to WAL mode, as Litestream) or leave"),
    }
}

pub(super) fn parse_fleet(v: Option<&Value>, at: &str) -> Result<FleetConfig> {
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
    f.outage_report_interval = dur("outage-report-interval")?;
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
    f.leave_rollback_journal = str_key(m, "rollback-journal", &at)?
        .map(|v| parse_rollback_journal(&v))
        .transpose()
        .with_context(|| format!("config {at}.rollback-journal"))?;
    f.token = str_key(m, "token", &at)?
        .filter(|t| !t.is_empty())
        .map(litestreampp_core::redact::Secret::new);
    Ok(f)
}
