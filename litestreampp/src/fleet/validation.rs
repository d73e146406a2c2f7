//! `validation.interval` for the fleet. Litestream lists every database's
//! replica at each interval; a fleet checks the replicas that can have
//! changed since its last check: those of databases hot or backed up in
//! the interval. A cold database's replica is as it was at its seal (we
//! are its only writer), so it costs no request; a database synced once
//! is checked once, a hot one at every interval while it stays hot.
//! Each is checked as `replicate` checks it ([`validate_replica`]).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use litestreampp_core::client::ReplicaClient;
use litestreampp_core::levels::validate_replica;
use tokio::task::JoinHandle;

use super::registry::Key;

/// Replicas checked at once.
const CONCURRENCY: usize = 8;

/// The replicas due for a check, and the check in progress.
pub(super) struct Validation {
    interval: Duration,
    top_level: u32,
    last: Instant,
    /// Written since the last check began (keys only: during a backlog of
    /// 100,000 databases this holds every one of them).
    due: HashSet<Key>,
    running: Option<JoinHandle<()>>,
}

impl Validation {
    pub(super) fn new(interval: Duration, top_level: u32) -> Validation {
        tracing::info!(interval = ?interval, "starting validation monitor");
        Validation {
            interval,
            top_level,
            last: Instant::now(),
            due: HashSet::new(),
            running: None,
        }
    }

    /// A replicator started for `k`: its replica is due at the next check.
    pub(super) fn touched(&mut self, k: &Key) {
        self.due.insert(k.clone());
    }

    /// At the fleet's tick: once the interval is over (and the previous
    /// check has finished), checks the replicas due on a task of its own,
    /// each opened by `open` only when its turn comes; those for which
    /// `still_hot` holds stay due for the next check.
    pub(super) fn tick(
        &mut self,
        open: impl Fn(&Key) -> Option<(PathBuf, Arc<dyn ReplicaClient>)> + Send + Sync + 'static,
        still_hot: impl Fn(&Key) -> bool,
    ) {
        if self.last.elapsed() < self.interval
            || self.running.as_ref().is_some_and(|r| !r.is_finished())
        {
            return;
        }
        self.last = Instant::now();
        let due: Vec<Key> = self.due.iter().cloned().collect();
        self.due.retain(|k| still_hot(k));
        if due.is_empty() {
            return;
        }
        let top_level = self.top_level;
        self.running = Some(tokio::spawn(async move {
            futures::stream::iter(due)
                .filter_map(|k| std::future::ready(open(&k)))
                .for_each_concurrent(CONCURRENCY, |(path, client)| async move {
                    validate_replica(client.as_ref(), &path, top_level).await;
                })
                .await;
        }));
    }

    /// Stops a check in progress (at shutdown).
    pub(super) fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.abort();
        }
    }
}
