//! The write detector: inotify through `notify`, one watch per directory.
//! A changed `x.db-wal` or `x.db` is looked up in the registry: a hot
//! database's replicator is nudged for its next sync; a cold one whose
//! files no longer match its signature (our own seal's events do match)
//! is sent to the fleet's loop to be promoted. When watching is not
//! possible (no inotify, or out of watches) the loop polls instead.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use litestreampp_core::dbfile::{self, FileSig};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::hot_set::HotView;
use super::patterns;
use super::registry::{Registry, Tier};

/// What the detector tells the fleet's loop.
pub(super) enum Change {
    /// A cold database's files changed.
    Written(PathBuf),
    /// A file appeared (or was renamed into place).
    Created(PathBuf),
    /// A file or directory went away.
    Removed(PathBuf),
    /// A directory appeared: watch it and look inside.
    NewDir(PathBuf),
    /// Events were lost: compare every database's files.
    Rescan,
}

/// The watches, owned by the fleet's loop.
pub(super) struct Detector {
    watcher: Option<notify::RecommendedWatcher>,
    watched: HashSet<PathBuf>,
    /// Polling instead of (or, after running out of watches, besides)
    /// change notification.
    polling: bool,
    registry: Arc<Registry>,
}

impl Detector {
    /// Starts change notification, unless `poll` asks for polling only.
    pub fn start(
        registry: Arc<Registry>,
        hot: HotView,
        tx: mpsc::UnboundedSender<Change>,
        poll: bool,
    ) -> Detector {
        let mut d = Detector {
            watcher: None,
            watched: HashSet::new(),
            polling: poll,
            registry: registry.clone(),
        };
        if poll {
            return d;
        }
        match notify::recommended_watcher(move |res| on_event(&registry, &hot, &tx, res)) {
            Ok(w) => {
                d.watcher = Some(w);
                d.registry.watching.store(true, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start change notification; polling every 5s instead");
                d.polling = true;
            }
        }
        d
    }

    pub fn polling(&self) -> bool {
        self.polling
    }

    pub fn is_watched(&self, dir: &Path) -> bool {
        self.watched.contains(dir)
    }

    /// A directory went away: it and everything under it are unwatched.
    pub fn forget_under(&mut self, dir: &Path) {
        self.watched.retain(|d| !d.starts_with(dir));
    }

    /// Stops change notification (shutdown).
    pub fn stop(&mut self) {
        self.watcher = None;
    }

    /// Watches each directory not watched yet. Out of watches, the fleet
    /// falls back to polling and says how to raise the limit.
    pub fn watch(&mut self, dirs: Vec<PathBuf>) {
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        for d in dirs {
            if self.watched.contains(&d) {
                continue;
            }
            if let Err(e) = w.watch(&d, RecursiveMode::NonRecursive) {
                let limit = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| "?".into());
                tracing::error!(
                    dir = %d.display(),
                    error = %e,
                    watches = self.watched.len(),
                    max_user_watches = %limit,
                    "cannot watch directory (raise fs.inotify.max_user_watches); falling back to polling every 5s"
                );
                eprintln!(
                    "warning: cannot watch {} ({e}); {} directories watched, fs.inotify.max_user_watches = {limit}; polling every 5s instead",
                    d.display(),
                    self.watched.len()
                );
                self.polling = true;
                self.registry.watching.store(false, Ordering::Relaxed);
                return;
            }
            self.watched.insert(d);
        }
    }
}

/// The database a changed file belongs to: `x.db-wal` → `x.db`.
fn db_of(p: &Path) -> Option<PathBuf> {
    let name = p.file_name()?.to_str()?;
    dbfile::written_db_name(name).map(|db| p.with_file_name(db))
}

/// Paths the detector ignores (meta directories, temporary files).
fn skipped(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(patterns::skip_name)
}

/// The detector's callback: runs on notify's thread. A send fails only
/// when the fleet's loop is gone, at shutdown.
fn on_event(
    registry: &Registry,
    hot: &HotView,
    tx: &mpsc::UnboundedSender<Change>,
    res: notify::Result<notify::Event>,
) {
    let ev = match res {
        Ok(ev) => ev,
        Err(e) => {
            tracing::warn!(error = %e, "change notification error; rescanning");
            let _ = tx.send(Change::Rescan);
            return;
        }
    };
    if ev.need_rescan() {
        let _ = tx.send(Change::Rescan); // queue overflow: events were dropped
        return;
    }
    match ev.kind {
        EventKind::Access(_) => {}
        EventKind::Create(notify::event::CreateKind::Folder) => {
            for p in ev.paths {
                if !skipped(&p) {
                    let _ = tx.send(Change::NewDir(p));
                }
            }
        }
        EventKind::Remove(_) => {
            // A WAL, shm or journal going away is SQLite closing; the
            // database's own removal is what retires it.
            for p in ev.paths {
                if db_of(&p).is_some_and(|db| db == p) {
                    let _ = tx.send(Change::Removed(p));
                }
            }
        }
        EventKind::Modify(notify::event::ModifyKind::Name(mode)) => {
            use notify::event::RenameMode;
            for (i, p) in ev.paths.into_iter().enumerate() {
                let from = matches!(mode, RenameMode::From) || (mode == RenameMode::Both && i == 0);
                if !from && skipped(&p) {
                    continue; // our own meta directories and temporary files
                }
                let _ = tx.send(if from {
                    Change::Removed(p)
                } else if p.is_dir() {
                    Change::NewDir(p)
                } else {
                    Change::Created(p)
                });
            }
        }
        _ => {
            for p in &ev.paths {
                let Some(db) = db_of(p) else { continue };
                let Some(k) = registry.key_str(&db) else {
                    continue;
                };
                if hot.wrote(k, registry.now_ms()) {
                    continue;
                }
                match registry.entry(k) {
                    // Our own seal's events arrive after the fact: only a
                    // real change moves the signature.
                    Some(e)
                        if matches!(e.tier, Tier::Cold | Tier::Failed | Tier::Unshipped)
                            && FileSig::of(&db).digest() != e.sig =>
                    {
                        let _ = tx.send(Change::Written(db));
                    }
                    Some(_) => {}
                    None if matches!(ev.kind, EventKind::Create(_) | EventKind::Modify(_)) => {
                        let _ = tx.send(Change::Created(db));
                    }
                    None => {}
                }
            }
        }
    }
}
