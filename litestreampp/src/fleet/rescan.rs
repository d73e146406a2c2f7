//! Catching up with the files when events may have been missed: comparing
//! every cold database's files with its signature (polling mode, and after
//! a lost event), and walking the roots again (every `rescan_interval`, and
//! after an inotify queue overflow).

use std::collections::HashSet;
use std::path::PathBuf;

use litestreampp_core::dbfile::FileSig;

use super::registry::{Key, Tier};
use super::tiers::Fleet;

impl Fleet {
    /// Compares every cold database's files with its signature and
    /// promotes the changed ones (polling mode, after lost events, and at
    /// startup once the watches are set).
    pub(super) async fn compare_signatures(&mut self) {
        let registry = self.registry.clone();
        let changed = tokio::task::spawn_blocking(move || {
            // One path at a time, not a list of every path first: 100,000
            // allocations freed together are memory the process keeps.
            registry
                .dbs
                .iter()
                .filter(|e| matches!(e.tier, Tier::Cold | Tier::Failed | Tier::Unshipped))
                .filter_map(|e| {
                    let p = registry.path(e.key());
                    (FileSig::of(&p).digest() != e.sig).then_some(p)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for p in changed {
            if p.exists() {
                self.promote(&p);
            } else if let Some(k) = self.registry.key(&p) {
                self.retire(&k);
            }
        }
    }

    /// Walks the roots again: new databases are registered, vanished ones
    /// retired, changed ones promoted.
    pub(super) async fn rescan(&mut self) {
        let patterns = self.registry.patterns.clone();
        let Ok(Ok(discovered)) =
            tokio::task::spawn_blocking(move || patterns.discover_with_dirs()).await
        else {
            return;
        };
        // What discovery still reports is recorded again (reported only if
        // new or changed); what it no longer reports is forgotten, except a
        // database left alone for what only opening it tells, tried again
        // below while it is there.
        let (found, dirs, skipped) = self.left_alone(discovered);
        let reported: HashSet<PathBuf> = skipped.into_iter().collect();
        let present: HashSet<PathBuf> = found.iter().map(|f| f.path.clone()).collect();
        self.registry.skipped.retain(|p, why| {
            reported.contains(p) || (why.known_only_by_opening() && present.contains(p))
        });
        self.detector.watch(dirs);
        let vanished: Vec<Key> = self
            .registry
            .dbs
            .iter()
            .filter(|e| {
                e.tier != Tier::Hot
                    && !self.extras.contains_key(e.key())
                    && !present.contains(&self.registry.path(e.key()))
            })
            .map(|e| e.key().clone())
            .collect();
        for k in vanished {
            self.retire(&k);
        }
        for f in found {
            self.admit(f.path, true);
        }
        self.compare_signatures().await;
        self.trim_due = true; // the walk's memory
    }
}
