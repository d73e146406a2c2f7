//! The watch on a database's directory: writes to the database or its WAL
//! wake the replicator.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::{RecursiveMode, Watcher};
use tokio::sync::Notify;

use super::Replicator;
use crate::dbfile;

impl Replicator {
    /// Watches the database's directory for changes to the database or its
    /// WAL. Returns `None` (polling only) if the watcher cannot start.
    pub(super) fn watch(&self, changed: Arc<Notify>) -> Option<DirWatch> {
        let db = &self.db_path;
        let dir = db
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let name = db.file_name()?.to_os_string();
        let wal = dbfile::wal_path(Path::new(&name)).into_os_string();
        let handler = move |res: notify::Result<notify::Event>| {
            let Ok(ev) = res else {
                changed.notify_one(); // an error (e.g. queue overflow): sync to be safe
                return;
            };
            if ev.kind.is_access() {
                return;
            }
            if ev
                .paths
                .iter()
                .any(|p| p.file_name().is_some_and(|n| n == name || n == wal))
            {
                changed.notify_one();
            }
        };
        match notify::recommended_watcher(handler)
            .and_then(|mut w| w.watch(&dir, RecursiveMode::NonRecursive).map(|()| w))
        {
            Ok(watcher) => Some(DirWatch {
                watcher,
                dir,
                paused: false,
            }),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch for changes; polling only");
                None
            }
        }
    }
}

/// The watch on a database's directory, paused between a change notice
/// and the sync that answers it.
pub(super) struct DirWatch {
    watcher: notify::RecommendedWatcher,
    dir: PathBuf,
    paused: bool,
}

impl DirWatch {
    pub(super) fn pause(&mut self) {
        if !self.paused {
            // Failing to stop watching costs only wake-ups.
            self.paused = self.watcher.unwatch(&self.dir).is_ok();
        }
    }

    /// Watches again; `false` if that failed (the caller polls instead).
    pub(super) fn resume(&mut self) -> bool {
        if !self.paused {
            return true;
        }
        match self.watcher.watch(&self.dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                self.paused = false;
                true
            }
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot watch for changes again; polling only");
                false
            }
        }
    }
}
