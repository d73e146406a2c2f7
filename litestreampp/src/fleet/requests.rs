//! Requests to the fleet's loop from outside it (the control socket):
//! "sync this database now". A hot database's replicator is asked at once;
//! a cold, queued or failed one is promoted first, and the request waits
//! for its replicator to start.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use litestreampp_core::replicator::{FlushHandle, ReplicatorStatus};
use litestreampp_core::txid::TxId;
use tokio::sync::{mpsc, oneshot};

use super::registry::Key;
use super::status::FleetView;

/// A running replicator's flush handle and status.
pub(super) type Flushable = (FlushHandle, Arc<Mutex<ReplicatorStatus>>);

/// Why a sync request was not carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncRefused {
    /// No such database in the fleet.
    NotFound,
    /// The sync failed, or the fleet is stopping.
    Failed(String),
}

/// What a sync did.
#[derive(Debug, Clone, Copy)]
pub struct Synced {
    /// The local TXID before and after.
    pub before: TxId,
    pub after: TxId,
    /// What the replica holds.
    pub replica: TxId,
}

pub(super) enum Request {
    Flush {
        path: PathBuf,
        reply: oneshot::Sender<Result<Flushable, SyncRefused>>,
    },
}

pub(super) type Requests = mpsc::UnboundedSender<Request>;

/// Requests waiting for their database's replicator to start.
#[derive(Default)]
pub(super) struct FlushWaiters(HashMap<Key, Vec<oneshot::Sender<Result<Flushable, SyncRefused>>>>);

impl FlushWaiters {
    pub fn wait(&mut self, k: &Key, reply: oneshot::Sender<Result<Flushable, SyncRefused>>) {
        self.0.entry(k.clone()).or_default().push(reply);
    }

    pub fn is_waiting(&self, k: &str) -> bool {
        self.0.contains_key(k)
    }

    /// Answers everyone waiting for `k`.
    pub fn answer(&mut self, k: &str, with: impl Fn() -> Result<Flushable, SyncRefused>) {
        for w in self.0.remove(k).unwrap_or_default() {
            let _ = w.send(with()); // the requester may have timed out
        }
    }
}

impl FleetView {
    /// Syncs `path` now and returns once the replica holds everything
    /// committed before the call; a cold database is promoted first.
    pub async fn sync_now(&self, path: &Path) -> Result<Synced, SyncRefused> {
        let stopping = || SyncRefused::Failed("the fleet is stopping".into());
        // A replicator that stops between our asking and its sync (an idle
        // demotion) drops the request: ask again.
        let mut last = String::new();
        for _ in 0..3 {
            let (reply, answer) = oneshot::channel();
            self.requests
                .send(Request::Flush {
                    path: path.to_path_buf(),
                    reply,
                })
                .map_err(|_| stopping())?;
            let (flush, status) = answer.await.map_err(|_| stopping())??;
            let local = || status.lock().map(|s| s.local_txid).unwrap_or_default();
            let before = local();
            match flush.flush().await {
                Ok(replica) => {
                    return Ok(Synced {
                        before,
                        after: local(),
                        replica,
                    });
                }
                Err(e) if e.to_string().ends_with("replication stopped") => last = e.to_string(),
                Err(e) => return Err(SyncRefused::Failed(e.to_string())),
            }
        }
        Err(SyncRefused::Failed(last))
    }
}
