//! When each task of a database is due: compaction at its level's
//! interval boundaries once the level below holds newer files, a snapshot
//! once the position moved past the last one, retention when the oldest
//! deletable file expires. Deciding makes no request.

use std::sync::atomic::Ordering;
use std::time::Duration;

use jiff::Timestamp;

use crate::client::SNAPSHOT_LEVEL;

use super::config::ceil_boundary;
use super::state::max_of;
use super::{Maintainer, add};

/// Work that can be due for a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    Compact(u32),
    Snapshot,
    L0Retention,
    SnapshotRetention,
}

impl Maintainer {
    /// When each task is due (`now` at the earliest), if it has work.
    pub fn due_tasks(&self, now: Timestamp) -> Vec<(Timestamp, Task)> {
        let s = self.st();
        let cfg = &self.cfg;
        let mut out = Vec::new();
        let max = cfg.max_level();
        for level in (1..=max).chain(std::iter::once(SNAPSHOT_LEVEL)) {
            let src = if level == SNAPSHOT_LEVEL {
                0
            } else {
                level - 1
            };
            let (src_max, dst_max) = if level == SNAPSHOT_LEVEL {
                (s.position(), max_of(&s.newest[SNAPSHOT_LEVEL as usize]))
            } else {
                (
                    max_of(&s.newest[src as usize]),
                    max_of(&s.newest[level as usize]),
                )
            };
            if src_max <= dst_max {
                continue;
            }
            let task = if level == SNAPSHOT_LEVEL {
                Task::Snapshot
            } else {
                Task::Compact(level)
            };
            if level == SNAPSHOT_LEVEL
                && (self.snapshot_wanted.load(Ordering::Acquire)
                    || self.snapshot_busy.load(Ordering::Acquire))
            {
                continue; // asked for, or under way: the database's owner is on it
            }
            let not_before = if level == SNAPSHOT_LEVEL {
                s.snapshot_not_before
            } else {
                None
            };
            if s.startup[level as usize] {
                out.push((not_before.map_or(now, |t| t.max(now)), task));
                continue;
            }
            // New data in the source level since the last compaction; a
            // snapshot only needs the position to have moved past the last
            // one, whenever that happened.
            let since = if level == SNAPSHOT_LEVEL {
                s.newest[SNAPSHOT_LEVEL as usize]
                    .as_ref()
                    .map_or(now, |f| f.created_at)
            } else {
                s.pending_since[src as usize].unwrap_or(now)
            };
            let dst_created = s.newest[level as usize]
                .as_ref()
                .map_or(since, |f| f.created_at);
            let after_last =
                s.last_run[level as usize].map_or(since, |t| add(t, Duration::from_nanos(1)));
            let due = ceil_boundary(since.max(dst_created).max(after_last), cfg.interval(level));
            out.push((not_before.map_or(due, |t| t.max(due)), task));
        }
        let l1 = max_of(&s.newest[1]);
        if cfg.l0_retention.is_zero() {
            // Litestream: zero keeps L0 files (no L0 retention).
        } else if let Some(f) =
            s.l0.iter()
                .take(s.l0.len().saturating_sub(1))
                .find(|f| f.max_txid <= l1)
        {
            out.push((add(f.created_at, cfg.l0_retention), Task::L0Retention));
        }
        if s.snapshots.len() > 1 {
            let oldest = s
                .snapshots
                .iter()
                .take(s.snapshots.len() - 1)
                .map(|f| f.created_at)
                .min()
                .unwrap_or(now);
            out.push((add(oldest, cfg.snapshot_retention), Task::SnapshotRetention));
        }
        out
    }

    /// When the next task is due, if any.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.due_tasks(Timestamp::now())
            .into_iter()
            .map(|(t, _)| t)
            .min()
    }
}
