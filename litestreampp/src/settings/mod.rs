//! The settings layer: turns the config file and flags into plain option
//! structs, and is the one place a replica client is opened from a URL or
//! a config entry ([`ReplicaLocation::open`]).

mod config;
mod entries;
mod fleet;
mod keys;
mod local_dbs;
mod replica;
mod restore_jobs;
mod template;
mod values;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, anyhow, bail};
use litestreampp_core::client::{ClientPool, ReplicaClient};

pub use config::{
    Config, ConfigError, HeartbeatConfig, LoggingConfig, McpConfig, SHUTDOWN_SYNC_DEFAULT,
    SocketConfig, default_config_path, parse_config, read_config,
};
pub use entries::{DbConfig, DbTuning, DirConfig};
pub use fleet::{FleetConfig, parse_rollback_journal};
pub use local_dbs::{LocalDb, local_databases};
pub use replica::{ReplicaConfig, ReplicaLocation};
pub use restore_jobs::{config_jobs, url_jobs};
pub use template::{Template, UrlOpener};
pub use values::{expand_env_vars, expand_path, parse_go_duration};
pub use values::{parse_timestamp, restore_target};

/// Reads the config at `path`, or at the default path.
pub fn load_config(path: Option<&Path>, expand_env: bool) -> Result<Config> {
    let path = path.map_or_else(default_config_path, Path::to_path_buf);
    read_config(&path, expand_env)
}

/// True for `scheme://...` arguments.
pub fn is_url(s: &str) -> bool {
    s.contains("://")
}

/// Resolves a `DB_PATH | REPLICA_URL` argument to a replica client and,
/// for a database path, that path.
pub fn resolve_target(
    target: &str,
    config: Option<&Path>,
    expand_env: bool,
) -> Result<(Arc<dyn ReplicaClient>, Option<PathBuf>)> {
    if is_url(target) {
        if config.is_some() {
            bail!("cannot use a replica URL together with -config");
        }
        return Ok((
            ReplicaConfig::from_url(target).open(&ClientPool::default())?,
            None,
        ));
    }
    let cfg = load_config(config, expand_env)?;
    let path = expand_path(target)?;
    let Some(db) = cfg.db(&path) else {
        // A database under a directory entry: its replica follows the
        // entry's layout (the entry's replica plus the relative path).
        if let Some((dir, rel)) = cfg.dir_db(&path) {
            let replica = dir.replica.with_relative_path(&rel)?;
            return Ok((replica.open(&ClientPool::default())?, Some(path)));
        }
        bail!(
            "database not found in config {}: {} (neither a `path` entry nor under a `dir` entry whose pattern matches it)",
            cfg.path.display(),
            path.display()
        );
    };
    let replica = db.replica.as_ref().ok_or_else(|| {
        anyhow!(
            "database {} has no replica in {}",
            path.display(),
            cfg.path.display()
        )
    })?;
    Ok((replica.open(&ClientPool::default())?, Some(db.path.clone())))
}
