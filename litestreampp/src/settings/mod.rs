//! The settings layer: turns the config file and flags into plain option
//! structs, and is the one place a replica client is opened from a URL or
//! a config entry ([`ReplicaLocation::open`]).

mod config;
mod replica;
mod template;
mod values;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Result, anyhow, bail};
use litestreampp_core::client::{ClientPool, ReplicaClient};

pub use config::{
    Config, DbConfig, DirConfig, FleetConfig, default_config_path, parse_config, read_config,
};
pub use replica::{ReplicaConfig, ReplicaLocation};
pub use template::Template;
pub use values::{expand_env_vars, expand_path, parse_go_duration};

use crate::flags::ConfigArgs;

/// Reads the config named by the flags (or the default path).
pub fn load_config(args: &ConfigArgs) -> Result<Config> {
    let path = args.config.clone().unwrap_or_else(default_config_path);
    read_config(&path, !args.no_expand_env)
}

/// True for `scheme://...` arguments.
pub fn is_url(s: &str) -> bool {
    s.contains("://")
}

/// Resolves a `DB_PATH | REPLICA_URL` argument to a replica client and,
/// for a database path, that path.
pub fn resolve_target(
    target: &str,
    args: &ConfigArgs,
) -> Result<(Arc<dyn ReplicaClient>, Option<PathBuf>)> {
    if is_url(target) {
        if args.config.is_some() {
            bail!("cannot use a replica URL together with -config");
        }
        return Ok((
            ReplicaConfig::from_url(target).open(&ClientPool::default())?,
            None,
        ));
    }
    let cfg = load_config(args)?;
    let path = expand_path(target)?;
    let db = cfg.db(&path).ok_or_else(|| {
        anyhow!(
            "database not found in config {}: {}",
            cfg.path.display(),
            path.display()
        )
    })?;
    let replica = db.replica.as_ref().ok_or_else(|| {
        anyhow!(
            "database {} has no replica in {}",
            path.display(),
            cfg.path.display()
        )
    })?;
    Ok((replica.open(&ClientPool::default())?, Some(db.path.clone())))
}
