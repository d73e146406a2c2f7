//! A `dbs` entry of `litestream.yml`: one database (`path`) or a
//! directory of them (`dir`, Litestream's directory replication), with the
//! per-database keys both take.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use litestreampp_core::levels::LevelsConfig;
use litestreampp_core::meta_dir::{MetaDir, MetaRoot};
use litestreampp_core::replicator::ReplicatorOptions;
use serde_json::Value;

use super::config::{apply_snapshot, parse_replica, str_key};
use super::replica::ReplicaConfig;
use super::values::{expand_path, parse_duration_value};

/// How one database is synced and checkpointed: the per-database keys of
/// a `dbs` entry (for a directory entry, of every database under it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DbTuning {
    pub meta_path: Option<PathBuf>,
    pub monitor_interval: Option<Duration>,
    pub checkpoint_interval: Option<Duration>,
    pub busy_timeout: Option<Duration>,
    pub min_checkpoint_page_count: Option<u32>,
    pub truncate_page_n: Option<u32>,
    pub max_sync_wal_bytes: Option<u64>,
    /// The replica's `max-sync-ltx-files`: L0 files uploaded per sync.
    pub max_sync_ltx_files: Option<usize>,
    /// The replica's `auto-recover`.
    pub auto_recover: Option<bool>,
    /// Compaction levels, snapshots and retention: the top-level settings
    /// with this entry's `snapshot` overrides.
    pub levels: LevelsConfig,
}

impl DbTuning {
    /// Defaults, with the file's compaction levels.
    pub fn with_levels(levels: LevelsConfig) -> DbTuning {
        DbTuning {
            levels,
            ..DbTuning::default()
        }
    }

    /// `o` with these settings applied over its defaults.
    pub fn apply(&self, o: &mut ReplicatorOptions) {
        o.levels = self.levels.clone();
        if let Some(p) = &self.meta_path {
            o.db.meta_dir = Some(p.clone());
        }
        if let Some(v) = self.monitor_interval {
            o.monitor_interval = v;
        }
        if let Some(v) = self.checkpoint_interval {
            o.db.checkpoint_interval = v;
        }
        if let Some(v) = self.busy_timeout {
            o.db.busy_timeout = v;
        }
        if let Some(v) = self.min_checkpoint_page_count {
            o.db.min_checkpoint_page_count = v;
        }
        if let Some(v) = self.truncate_page_n {
            o.db.truncate_page_count = v;
        }
        if let Some(v) = self.max_sync_wal_bytes {
            o.db.max_sync_wal_bytes = v;
        }
        if let Some(v) = self.max_sync_ltx_files {
            o.max_sync_ltx_files = v;
        }
        if let Some(v) = self.auto_recover {
            o.auto_recover = v;
        }
    }
}

/// One entry of `dbs`.
#[derive(Debug, Clone)]
pub struct DbConfig {
    pub path: PathBuf,
    pub replica: Option<ReplicaConfig>,
    pub tuning: DbTuning,
    /// Restore from the replica before replicating if the file is missing.
    pub restore_if_db_not_exists: bool,
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
    /// Where its databases' meta directories live (`meta-dir`, `meta-path`).
    pub meta: MetaRoot,
    pub tuning: DbTuning,
    /// Restore the databases its replica holds that are missing here
    /// before the fleet starts.
    pub restore_if_db_not_exists: bool,
}

impl DirConfig {
    /// The meta directory of its database at `db`, relative path `rel`.
    pub fn meta_dir(&self, db: &Path, rel: &str) -> MetaDir {
        self.meta.meta_dir(db, Path::new(rel))
    }

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

pub(super) fn parse_db(
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
    let restore_if_db_not_exists = match m.get("restore-if-db-not-exists") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            bail!("config {at}: restore-if-db-not-exists: expected true or false, got {other}")
        }
    };
    let mut tuning = parse_tuning(m, levels, at)?;
    if let Some(r) = &replica {
        tuning.max_sync_ltx_files = max_sync_ltx_files(r, at)?;
        tuning.auto_recover = auto_recover(r, at)?;
    }
    Ok(DbConfig {
        path,
        replica,
        tuning,
        restore_if_db_not_exists,
    })
}

/// A replica's `max-sync-ltx-files` (its own or the top-level default):
/// a non-negative count, `0` for no limit.
fn max_sync_ltx_files(r: &super::replica::ReplicaConfig, at: &str) -> Result<Option<usize>> {
    match r.settings.get("max-sync-ltx-files") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                anyhow!("config {at}: max-sync-ltx-files: expected a non-negative integer, got {v}")
            }),
    }
}

/// A replica's `auto-recover` (its own or the top-level default).
fn auto_recover(r: &super::replica::ReplicaConfig, at: &str) -> Result<Option<bool>> {
    match r.settings.get("auto-recover") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => bail!("config {at}: auto-recover: expected true or false, got {v}"),
    }
}

/// The per-database keys of a `dbs` entry.
fn parse_tuning(
    m: &serde_json::Map<String, Value>,
    levels: &LevelsConfig,
    at: &str,
) -> Result<DbTuning> {
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
    Ok(DbTuning {
        meta_path,
        monitor_interval: dur("monitor-interval")?,
        checkpoint_interval: dur("checkpoint-interval")?,
        busy_timeout: dur("busy-timeout")?,
        min_checkpoint_page_count: u32_of("min-checkpoint-page-count")?,
        truncate_page_n: u32_of("truncate-page-n")?,
        max_sync_wal_bytes: num("max-sync-wal-bytes")?,
        // Replica keys, set by the caller.
        max_sync_ltx_files: None,
        auto_recover: None,
        levels,
    })
}

/// A directory entry: its databases are the fleet of `litestreampp run`.
pub(super) fn parse_dir(
    m: &serde_json::Map<String, Value>,
    defaults: &BTreeMap<String, Value>,
    levels: &LevelsConfig,
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
    let restore_if_db_not_exists = flag("restore-if-db-not-exists")?;
    // The fleet always watches its directories: `watch: false` (Go:
    // replicate the databases found at start only) still replicates a
    // database created later, which is what the user of a fleet wants.
    flag("watch")?;
    let replica = match (m.get("replica"), m.get("replicas")) {
        (Some(r), None) => parse_replica(r, defaults, &format!("{at}.replica"))?,
        (None, Some(Value::Array(list))) if list.len() == 1 => {
            parse_replica(&list[0], defaults, &format!("{at}.replicas[0]"))?
        }
        (None, None) => bail!("config {at}: replica required"),
        _ => bail!("config {at}: exactly one replica per directory entry"),
    };
    let mut tuning = parse_tuning(m, levels, at)?;
    tuning.max_sync_ltx_files = max_sync_ltx_files(&replica, at)?;
    tuning.auto_recover = auto_recover(&replica, at)?;
    // Every database gets a meta directory of its own under the base
    // (Litestream's derivation), never the base itself.
    let meta_dir = str_key(m, "meta-dir", at)?
        .map(|p| expand_path(&p))
        .transpose()
        .with_context(|| format!("config {at}: meta-dir"))?;
    let meta = match (meta_dir, tuning.meta_path.take()) {
        (Some(_), Some(_)) => {
            bail!("config {at}: cannot specify both 'meta-path' and 'meta-dir'")
        }
        (Some(base), None) => MetaRoot::Dir(base),
        (None, Some(base)) => MetaRoot::Mirror(base),
        (None, None) => MetaRoot::Beside,
    };
    Ok(DirConfig {
        dir,
        pattern,
        recursive,
        replica,
        meta,
        tuning,
        restore_if_db_not_exists,
    })
}
