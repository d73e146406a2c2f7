//! The hot set: the databases a replicator runs for, and which of them
//! hold one of the `max_hot` slots.
//!
//! The slots are a `moka` cache with a least-recently-used policy: capacity
//! `max_hot`, time-to-idle `hot_idle_timeout`, and an eviction listener
//! that asks the evicted database's replicator to stop (final sync, upload,
//! seal). A write touches its database's slot. A written cold database
//! claims a slot at once (evicting the least recently written) but waits
//! for its connection until a demoted replicator has finished: the number
//! of running hot replicators never exceeds `max_hot`.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use litestreampp_core::replicator::{FlushHandle, ReplicatorStatus};
use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use tokio::sync::Notify;

use super::registry::Key;

/// Why a replicator runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Duty {
    /// Written lately: it holds a slot until idle or evicted.
    Hot,
    /// The backlog's one sync, upload and seal; holds no slot.
    Backlog,
}

/// A running replicator's handle, shared with the write detector.
#[derive(Debug)]
pub(super) struct Hot {
    pub duty: Duty,
    /// Wakes the replicator for a sync.
    changed: Arc<Notify>,
    stop: Arc<Notify>,
    stopping: AtomicBool,
    /// How long the final sync may be retried, in milliseconds: zero for
    /// a demotion (what it cannot ship waits locally), the configured
    /// `shutdown-sync-timeout` when the fleet shuts down.
    patience_ms: Arc<AtomicU64>,
    /// Milliseconds since the fleet started of the last write seen.
    last_write: AtomicU64,
    pub status: Arc<std::sync::Mutex<ReplicatorStatus>>,
    /// Asks the replicator to sync now (the control socket's `sync`).
    pub flush: FlushHandle,
}

impl Hot {
    pub fn new(
        duty: Duty,
        changed: Arc<Notify>,
        status: Arc<std::sync::Mutex<ReplicatorStatus>>,
        flush: FlushHandle,
        now_ms: u64,
    ) -> Hot {
        let hot = Hot {
            duty,
            flush,
            changed,
            stop: Arc::new(Notify::new()),
            stopping: AtomicBool::new(false),
            patience_ms: Arc::new(AtomicU64::new(0)),
            last_write: AtomicU64::new(now_ms),
            status,
        };
        if duty == Duty::Backlog {
            hot.stop();
        }
        hot
    }

    /// Asks the replicator to finish: final sync, upload and seal; a
    /// failed final sync is not retried.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.stop.notify_one();
    }

    /// [`stop`](Self::stop), retrying a failed final sync for `patience`
    /// (shutdown).
    pub fn stop_patiently(&self, patience: Duration) {
        self.patience_ms
            .store(patience.as_millis() as u64, Ordering::Relaxed);
        self.stop();
    }

    /// True once asked to stop.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Resolves when [`stop`](Self::stop) was called (before or after),
    /// with the final sync's patience.
    pub fn stopped(&self) -> impl Future<Output = Duration> + Send + 'static {
        let (stop, patience) = (self.stop.clone(), self.patience_ms.clone());
        async move {
            stop.notified().await;
            Duration::from_millis(patience.load(Ordering::Relaxed))
        }
    }

    /// A write was seen: sync soon.
    pub fn wrote(&self, now_ms: u64) {
        self.last_write.store(now_ms, Ordering::Relaxed);
        self.changed.notify_one();
    }

    pub fn last_write_ms(&self) -> u64 {
        self.last_write.load(Ordering::Relaxed)
    }
}

/// What the write detector and status readers see of the hot set.
#[derive(Clone, Debug)]
pub(super) struct HotView {
    running: Arc<DashMap<Key, Arc<Hot>>>,
    slots: moka::sync::Cache<Key, ()>,
}

impl HotView {
    /// Tells a running replicator about a write; false if none runs.
    pub fn wrote(&self, k: &str, now_ms: u64) -> bool {
        // Cloned out: no registry shard stays locked while the cache's
        // housekeeping (which may run the eviction listener) runs.
        let Some(hot) = self.running.get(k).map(|h| h.clone()) else {
            return false;
        };
        hot.wrote(now_ms);
        let _ = self.slots.get(k); // touch: least recently written goes first
        true
    }

    pub fn get(&self, k: &str) -> Option<Arc<Hot>> {
        self.running.get(k).map(|h| h.clone())
    }

    /// Every running replicator, with its key.
    pub fn each(&self, mut f: impl FnMut(&str, &Hot)) {
        for e in self.running.iter() {
            f(e.key(), e.value());
        }
    }

    pub fn len(&self) -> usize {
        self.running.len()
    }
}

/// The hot set, owned by the fleet's loop.
pub(super) struct HotSet {
    view: HotView,
    max_hot: usize,
    /// Running replicators on duty [`Duty::Hot`] (stopping ones included:
    /// they hold a connection until they finish).
    live: usize,
    /// Written databases that claimed a slot and wait for a connection.
    waiting: VecDeque<Key>,
    waiting_set: HashSet<Key>,
}

impl HotSet {
    pub fn new(max_hot: usize, idle: Duration) -> HotSet {
        let running: Arc<DashMap<Key, Arc<Hot>>> = Arc::default();
        let evicted = running.clone();
        let slots = moka::sync::Cache::builder()
            .max_capacity(max_hot as u64)
            .eviction_policy(EvictionPolicy::lru())
            .time_to_idle(idle)
            .eviction_listener(move |k: Arc<Key>, (), cause: RemovalCause| {
                // Idle, or the least recently written when a slot is
                // claimed: demote. A database still waiting for its
                // connection keeps its place in the queue.
                if cause.was_evicted()
                    && let Some(h) = evicted.get(k.as_str()).map(|h| h.clone())
                {
                    h.stop();
                }
            })
            .build();
        HotSet {
            view: HotView { running, slots },
            max_hot,
            live: 0,
            waiting: VecDeque::new(),
            waiting_set: HashSet::new(),
        }
    }

    pub fn view(&self) -> HotView {
        self.view.clone()
    }

    pub fn get(&self, k: &str) -> Option<Arc<Hot>> {
        self.view.get(k)
    }

    /// Tells a running replicator about a write; false if none runs.
    pub fn wrote(&self, k: &str, now_ms: u64) -> bool {
        self.view.wrote(k, now_ms)
    }

    pub fn len(&self) -> usize {
        self.view.len()
    }

    /// True when a hot replicator may start now.
    pub fn has_free_slot(&self) -> bool {
        self.live < self.max_hot
    }

    /// A written database claims a slot and waits for a connection: the
    /// least recently written hot database is demoted to make room.
    pub fn wait_for_slot(&mut self, k: &Key) {
        if self.waiting_set.insert(k.clone()) {
            self.waiting.push_back(k.clone());
        }
        self.view.slots.insert(k.clone(), ());
        self.view.slots.run_pending_tasks();
    }

    /// The next database waiting for a connection, if one is free.
    pub fn next_waiting(&mut self) -> Option<Key> {
        if !self.has_free_slot() {
            return None;
        }
        let k = self.waiting.pop_front()?;
        self.waiting_set.remove(&k);
        Some(k)
    }

    /// A replicator started for `k`.
    pub fn insert(&mut self, k: Key, hot: Arc<Hot>) {
        if hot.duty == Duty::Hot {
            self.live += 1;
            self.view.slots.insert(k.clone(), ());
        }
        self.view.running.insert(k, hot);
        // Applied now: the cache applies a batch's reads before its
        // writes, so a write seen soon after would otherwise count as
        // older than this promotion.
        self.view.slots.run_pending_tasks();
    }

    /// `k`'s replicator finished: its handle, and its slot freed.
    pub fn remove(&mut self, k: &str) -> Option<Arc<Hot>> {
        let hot = self.view.running.remove(k).map(|(_, h)| h)?;
        if hot.duty == Duty::Hot {
            self.live -= 1;
            self.view.slots.invalidate(k);
        }
        Some(hot)
    }

    /// Forgets a database that is not running (retired, or its replica
    /// cannot be opened): its claim and its place in the queue.
    pub fn forget(&mut self, k: &str) {
        if self.waiting_set.remove(k) {
            self.waiting.retain(|w| w != k);
        }
        self.view.slots.invalidate(k);
    }

    /// Demotes the idle and the over-capacity (the cache's housekeeping;
    /// run on the fleet's tick).
    pub fn demote_idle(&self) {
        self.view.slots.run_pending_tasks();
    }

    /// Asks every running replicator to finish (shutdown), retrying a
    /// failed final sync for `patience`.
    pub fn stop_all(&self, patience: Duration) {
        self.view.each(|_, h| h.stop_patiently(patience));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A flush handle of a replicator that never runs.
    fn flush() -> FlushHandle {
        use litestreampp_core::client::file::FileReplicaClient;
        use litestreampp_core::replica::Replica;
        use litestreampp_core::replicator::Replicator;
        let client = Arc::new(FileReplicaClient::new("/nonexistent"));
        Replicator::new("/nonexistent.db", Replica::new(client), Default::default()).flush_handle()
    }

    fn hot(set: &mut HotSet, k: &str) -> Arc<Hot> {
        let h = Arc::new(Hot::new(
            Duty::Hot,
            Arc::default(),
            Arc::default(),
            flush(),
            0,
        ));
        set.insert(Key::from(k), h.clone());
        h
    }

    fn stopping(h: &Hot) -> bool {
        h.stopping.load(Ordering::Relaxed)
    }

    #[test]
    fn a_claimed_slot_demotes_the_least_recently_written() {
        let mut set = HotSet::new(2, Duration::from_secs(3600));
        let (a, b) = (hot(&mut set, "a"), hot(&mut set, "b"));
        assert!(set.view().wrote("a", 1)); // b is now the least recently written
        assert!(!set.has_free_slot());
        set.wait_for_slot(&Key::from("c"));
        assert!(stopping(&b) && !stopping(&a));
        assert_eq!(set.next_waiting(), None, "b still holds its connection");
        set.remove("b");
        assert_eq!(set.next_waiting().as_deref(), Some("c"));
    }

    #[test]
    fn an_idle_database_is_demoted() {
        let mut set = HotSet::new(10, Duration::from_millis(50));
        let (a, b) = (hot(&mut set, "a"), hot(&mut set, "b"));
        for _ in 0..6 {
            std::thread::sleep(Duration::from_millis(20));
            set.view().wrote("a", 1);
            set.demote_idle();
        }
        assert!(stopping(&b) && !stopping(&a));
    }

    #[test]
    fn backlog_duty_holds_no_slot_and_stops_at_once() {
        let mut set = HotSet::new(1, Duration::from_secs(3600));
        let h = Arc::new(Hot::new(
            Duty::Backlog,
            Arc::default(),
            Arc::default(),
            flush(),
            0,
        ));
        set.insert(Key::from("q"), h.clone());
        assert!(stopping(&h) && set.has_free_slot());
        let a = hot(&mut set, "a");
        assert!(!stopping(&a) && !set.has_free_slot());
        assert_eq!(set.len(), 2);
        set.remove("a");
        assert!(set.has_free_slot());
    }
}
