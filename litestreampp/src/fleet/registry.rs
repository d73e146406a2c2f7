//! The registry: every database of the fleet, its tier and the signature of
//! its files as we left them. A cold database is one entry here and nothing
//! else.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use dashmap::{DashMap, DashSet};
use serde::Serialize;

use super::outage::OutageStatus;
use super::patterns::Patterns;
use super::skipped::SkipReason;

/// A registry key: a database's path relative to [`Registry::root`]. Paths
/// of up to 24 bytes are stored inline, so a registry of short paths is one
/// hash table and no other allocation.
pub(super) type Key = compact_str::CompactString;

/// Where a database is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Backed up and sealed; nothing runs for it.
    Cold,
    /// Waiting in the backlog for its first (or a catch-up) sync.
    Queued,
    /// A replicator runs for it (it is in the hot set).
    Hot,
    /// Its last attempt failed; retried on the next write or rescan.
    Failed,
    /// Stopped while its replica could not be reached: nothing runs for
    /// it; the history the replica lacks waits in its meta directory and
    /// ships once the replica answers again (`outage.rs`).
    Unshipped,
    /// Paused by the operator (`stop`): nothing runs for it and writes are
    /// not followed until `start`; kept in the state file.
    Stopped,
}

/// One database.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub tier: Tier,
    /// Files as we left them (see [`FileSig::digest`]); 0 = unknown.
    ///
    /// [`FileSig::digest`]: litestreampp_core::dbfile::FileSig::digest
    pub sig: u64,
}

impl Entry {
    pub fn queued() -> Entry {
        Entry {
            tier: Tier::Queued,
            sig: 0,
        }
    }
}

/// Counters shared with metrics and status.
#[derive(Debug, Default)]
pub struct Counters {
    pub promotions: AtomicU64,
    pub demotions: AtomicU64,
    pub backlog_done: AtomicU64,
    pub errors: AtomicU64,
    pub retired: AtomicU64,
}

/// One recent error, for `status`.
#[derive(Debug, Clone, Serialize)]
pub struct FleetError {
    pub path: String,
    pub error: String,
    pub at: String,
}

/// The most recent errors kept for `status`.
const RECENT_ERRORS: usize = 50;

/// Every database of the fleet; shared by the fleet's loop (the only
/// writer of tiers), the write detector and status readers.
#[derive(Debug)]
pub struct Registry {
    pub(super) dbs: DashMap<Key, Entry>,
    /// The directory every pattern's root is under.
    root: PathBuf,
    pub(super) patterns: Patterns,
    epoch: Instant,
    pub counters: Counters,
    errors: Mutex<VecDeque<FleetError>>,
    pub(super) watching: AtomicBool,
    /// Databases added through the control socket (`register`), with
    /// their replica URLs. One outside the patterns' root is keyed by its
    /// absolute path.
    pub(super) registered: DashMap<PathBuf, String>,
    /// Databases of the patterns taken out of replication (`unregister`):
    /// discovery passes them by.
    pub(super) unregistered: DashSet<PathBuf>,
    /// Matching files left alone, and why (`skipped.rs`).
    pub(super) skipped: DashMap<PathBuf, SkipReason>,
    /// The outage in progress, as the fleet's loop last summed it up.
    pub(super) outage: Mutex<Option<OutageStatus>>,
}

impl Registry {
    pub(super) fn new(patterns: Patterns) -> Registry {
        Registry {
            dbs: DashMap::new(),
            root: patterns.common_root(),
            patterns,
            epoch: Instant::now(),
            counters: Counters::default(),
            errors: Mutex::new(VecDeque::new()),
            watching: AtomicBool::new(false),
            registered: DashMap::new(),
            unregistered: DashSet::new(),
            skipped: DashMap::new(),
            outage: Mutex::new(None),
        }
    }

    /// The registry key of `p` (None outside the root, or not UTF-8).
    pub(super) fn key(&self, p: &Path) -> Option<Key> {
        self.key_str(p).map(Key::from)
    }

    pub(super) fn key_str<'a>(&self, p: &'a Path) -> Option<&'a str> {
        match p.strip_prefix(&self.root) {
            Ok(rel) => rel.to_str(),
            Err(_) if !self.registered.is_empty() && self.registered.contains_key(p) => p.to_str(),
            Err(_) => None,
        }
    }

    /// Leaves `p` alone for `why`, saying so once (again only if the reason
    /// changes).
    pub(super) fn skip(&self, p: &Path, why: SkipReason) {
        if self.skipped.insert(p.to_path_buf(), why) != Some(why) {
            tracing::warn!(file = %p.display(), reason = why.as_str(), "leaving a file alone: {}", why.explain());
        }
    }

    /// True if discovery must pass `p` by (unregistered).
    pub(super) fn passes_by(&self, p: &Path) -> bool {
        !self.unregistered.is_empty() && self.unregistered.contains(p)
    }

    /// The path of a registry key (an absolute key is its own path).
    pub(super) fn path(&self, k: &str) -> PathBuf {
        self.root.join(k)
    }

    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    pub(super) fn entry(&self, k: &str) -> Option<Entry> {
        self.dbs.get(k).map(|e| *e)
    }

    /// Sets a registered database's tier and signature; false if it is not
    /// registered (retired meanwhile).
    pub(super) fn set(&self, k: &str, tier: Tier, sig: u64) -> bool {
        match self.dbs.get_mut(k) {
            Some(mut e) => {
                *e = Entry { tier, sig };
                true
            }
            None => false,
        }
    }

    /// Sets a registered database's tier, keeping its signature.
    pub(super) fn set_tier(&self, k: &str, tier: Tier) {
        if let Some(mut e) = self.dbs.get_mut(k) {
            e.tier = tier;
        }
    }

    /// Registers `p`; its key, or None if it cannot be registered (a name
    /// that is not UTF-8).
    pub(super) fn insert(&self, p: &Path, e: Entry) -> Option<Key> {
        match self.key(p) {
            Some(k) => {
                self.dbs.insert(k.clone(), e);
                Some(k)
            }
            None => {
                tracing::warn!(db = %p.display(), "skipping a database whose path is not UTF-8");
                None
            }
        }
    }

    /// Milliseconds since the fleet started: the clock of write times.
    pub(super) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub(super) fn uptime_seconds(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    pub(super) fn record_error(&self, path: &Path, error: &str) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("litestreampp_fleet_errors_total").increment(1);
        tracing::error!(db = %path.display(), error, "database error");
        let mut q = self
            .errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if q.len() >= RECENT_ERRORS {
            q.pop_back();
        }
        q.push_front(FleetError {
            path: path.display().to_string(),
            error: error.to_string(),
            at: jiff::Timestamp::now().to_string(),
        });
    }

    /// The most recent errors, newest first.
    pub(super) fn recent_errors(&self) -> Vec<FleetError> {
        self.errors
            .lock()
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }
}
