//! Databases leaving the fleet: a file or directory removed (its
//! databases retired), and any database taken out (unregistered, or left
//! alone after all) with its hot slot, its registration and the requests
//! waiting for it.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::requests::Refused;
use super::tiers::Fleet;

impl Fleet {
    pub(super) fn removed(&mut self, p: &Path) {
        if !self.registry.skipped.is_empty() {
            self.registry.skipped.retain(|s, _| !s.starts_with(p));
        }
        // A removed directory takes its databases with it.
        let gone: Vec<PathBuf> = if self
            .registry
            .key(p)
            .and_then(|k| self.registry.entry(&k))
            .is_some()
        {
            vec![p.to_path_buf()]
        } else if !self.detector.is_watched(p) {
            return; // neither a database nor a directory of ours
        } else {
            self.detector.forget_under(p);
            self.registry
                .dbs
                .iter()
                .map(|e| self.registry.path(e.key()))
                .filter(|path| path.starts_with(p))
                .collect()
        };
        for db in gone {
            if db.exists() {
                continue; // replaced in place (renamed over): still ours
            }
            let Some(k) = self.registry.key(&db) else {
                continue;
            };
            match self.hot.get(&k) {
                // Its replicator stops and reports the missing file.
                Some(h) => h.stop(),
                None => self.retire(&k),
            }
        }
    }

    /// Retires a database whose file is gone: out of the fleet, and its
    /// meta directory removed if Litestream's rules named it (its local
    /// L0 files and seal mean nothing
    /// without the database; the replica keeps its history). Litestream
    /// leaves the directory behind: a fleet whose tenants come and go
    /// would keep one per tenant it ever had.
    pub(super) fn retire(&mut self, k: &str) {
        let path = self.registry.path(k);
        let meta = self
            .template_of(k, &path)
            .map(|(t, rel)| t.meta_dir(&path, &rel));
        if self.forget(k) {
            match meta {
                // Not if recreated meanwhile (the new database may use
                // it), nor a `meta-path` the user named.
                Some(meta) if !path.exists() && meta.has_litestream_name() => {
                    remove_meta_dir(&path, meta.path())
                }
                _ => {}
            }
            tracing::info!(db = %path.display(), "database removed; retired");
            self.registry
                .counters
                .retired
                .fetch_add(1, Ordering::Relaxed);
            metrics::counter!("litestreampp_databases_retired_total").increment(1);
        }
    }

    /// Takes `k` out of the fleet (retired, unregistered or left alone):
    /// its entry, its hot slot, its registration through the socket; sync
    /// requests waiting for it are refused. True if it was registered.
    pub(super) fn forget(&mut self, k: &str) -> bool {
        self.waiters.answer(k, || Err(Refused::NotFound));
        if self.extras.remove(k).is_some() {
            self.registry.registered.remove(&self.registry.path(k));
        }
        let was = self.registry.dbs.remove(k).is_some();
        if was {
            self.hot.forget(k);
            self.outage.resume(k);
            self.state_dirty = true;
        }
        was
    }
}

/// Removes a retired database's meta directory. A failure is logged with
/// both paths and does not stop the fleet: the directory is only disk
/// space.
fn remove_meta_dir(db: &Path, meta: &Path) {
    match std::fs::remove_dir_all(meta) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(
            db = %db.display(),
            meta_dir = %meta.display(),
            error = %e,
            "could not remove the meta directory of a removed database"
        ),
    }
}
