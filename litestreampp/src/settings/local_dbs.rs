//! The databases a config file stands for on this host: its `path`
//! entries, and the SQLite files found under its `dir` entries, each with
//! the replica it goes to (for a directory entry: the entry's replica plus
//! the database's path relative to `dir`, Litestream's layout).

use std::path::PathBuf;

use anyhow::Result;

use super::config::Config;
use super::replica::ReplicaConfig;
use super::values::expand_path;
use crate::fleet::patterns::Patterns;
use crate::restore_fleet::compile;

/// One database of the config.
#[derive(Debug, Clone)]
pub struct LocalDb {
    pub path: PathBuf,
    pub replica: Option<ReplicaConfig>,
    /// Its meta directory when not beside it: a path entry's `meta-path`,
    /// or where a directory entry's `meta-dir`/`meta-path` puts it.
    pub meta_path: Option<PathBuf>,
}

/// The `path` entries, and with `dirs` the databases found on disk under
/// the directory entries (walked, so only when asked for), whose path
/// matches `only` when given.
pub fn local_databases(cfg: &Config, dirs: bool, only: Option<&str>) -> Result<Vec<LocalDb>> {
    let only = only
        .map(|g| compile(&expand_path(g)?.to_string_lossy()))
        .transpose()?;
    let wanted = |p: &std::path::Path| only.as_ref().is_none_or(|g| g.is_match(p));
    let mut out: Vec<LocalDb> = cfg
        .dbs
        .iter()
        .filter(|d| wanted(&d.path))
        .map(|d| LocalDb {
            path: d.path.clone(),
            replica: d.replica.clone(),
            meta_path: d.tuning.meta_path.clone(),
        })
        .collect();
    if !dirs {
        return Ok(out);
    }
    for d in &cfg.dirs {
        if !d.dir.is_dir() {
            continue;
        }
        for found in Patterns::new(&[d.glob()], &[])?.discover()? {
            if !wanted(&found.path) {
                continue;
            }
            let Ok(rel) = found.path.strip_prefix(&d.dir) else {
                continue;
            };
            let rel = rel.to_string_lossy();
            out.push(LocalDb {
                replica: Some(d.replica.with_relative_path(&rel)?),
                meta_path: Some(d.meta_dir(&found.path, &rel).path().to_path_buf()),
                path: found.path,
            });
        }
    }
    Ok(out)
}
