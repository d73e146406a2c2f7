//! The databases a running `replicate` keeps replicated, each on a task of
//! its own, and what its control socket does to them: stop one (after a
//! final sync) and start it again, sync one now, register a new one,
//! unregister one. Its files and replica are never touched by these.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;
use litestreampp_core::client::{ClientPool, ReplicaClient};
use litestreampp_core::metrics::DbMetrics;
use litestreampp_core::replica::Replica;
use litestreampp_core::replicator::{FlushHandle, Replicator, ReplicatorOptions, ReplicatorStatus};
use litestreampp_core::scheduler::Scheduler;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::control::protocol::{
    DatabaseSummary, ListQuery, ListResponse, RegisterResponse, StartStopResponse, SyncResponse,
    UnregisterResponse,
};
use crate::control::{ControlTarget, Refusal};
use crate::settings::ReplicaConfig;

/// How a replicator's run ended.
pub type Ended = litestreampp_core::Result<ReplicatorStatus>;

/// The set, shared by `replicate`'s main task and its control socket.
#[derive(Clone)]
pub struct ReplicatedDbs {
    inner: Arc<Inner>,
}

struct Inner {
    dbs: Mutex<BTreeMap<PathBuf, Slot>>,
    scheduler: Option<Scheduler>,
    pool: Arc<ClientPool>,
    /// Options of a database registered through the socket.
    defaults: ReplicatorOptions,
}

/// One database: what it takes to (re)start it, and its run if running.
struct Slot {
    client: Arc<dyn ReplicaClient>,
    opts: ReplicatorOptions,
    running: Option<Running>,
    /// The status of its last run, once stopped.
    last: ReplicatorStatus,
}

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Ended>,
    flush: FlushHandle,
    status: Arc<Mutex<ReplicatorStatus>>,
}

impl Running {
    fn status(&self) -> ReplicatorStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl ReplicatedDbs {
    pub fn new(
        scheduler: Option<Scheduler>,
        pool: Arc<ClientPool>,
        defaults: ReplicatorOptions,
    ) -> ReplicatedDbs {
        ReplicatedDbs {
            inner: Arc::new(Inner {
                dbs: Mutex::new(BTreeMap::new()),
                scheduler,
                pool,
                defaults,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<PathBuf, Slot>> {
        // A panic while holding the lock leaves the map itself intact.
        self.inner.dbs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `path` and starts replicating it (a path already there is left
    /// as it is: false).
    pub fn add(
        &self,
        path: PathBuf,
        client: Arc<dyn ReplicaClient>,
        opts: ReplicatorOptions,
    ) -> bool {
        let mut dbs = self.lock();
        if dbs.contains_key(&path) {
            return false;
        }
        let running = self.spawn(&path, &client, &opts);
        dbs.insert(
            path,
            Slot {
                client,
                opts,
                running: Some(running),
                last: ReplicatorStatus::default(),
            },
        );
        true
    }

    fn spawn(
        &self,
        path: &std::path::Path,
        client: &Arc<dyn ReplicaClient>,
        opts: &ReplicatorOptions,
    ) -> Running {
        let mut r = Replicator::new(path, Replica::new(client.clone()), opts.clone());
        if let Some(s) = &self.inner.scheduler {
            r = r.with_scheduler(s.clone());
        }
        let flush = r.flush_handle();
        let status = r.status_handle();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(r.run(async move {
            let _ = stopped.await; // a dropped sender also means stop
        }));
        Running {
            stop,
            task,
            flush,
            status,
        }
    }

    /// The running databases' flush handles (for `exec`'s first sync).
    pub fn flushes(&self) -> Vec<FlushHandle> {
        self.lock()
            .values()
            .filter_map(|s| s.running.as_ref().map(|r| r.flush.clone()))
            .collect()
    }

    /// The running databases' statuses (for the heartbeat).
    pub fn statuses(&self) -> Vec<Arc<Mutex<ReplicatorStatus>>> {
        self.lock()
            .values()
            .filter_map(|s| s.running.as_ref().map(|r| r.status.clone()))
            .collect()
    }

    /// Every database with its replica client (for validation).
    pub fn replicas(&self) -> Vec<(PathBuf, Arc<dyn ReplicaClient>)> {
        self.lock()
            .iter()
            .map(|(p, s)| (p.clone(), s.client.clone()))
            .collect()
    }

    /// Stops every running database (final syncs at once) and returns how
    /// each run ended.
    pub async fn stop_all(&self) -> Vec<(PathBuf, Result<Ended, tokio::task::JoinError>)> {
        let runs: Vec<(PathBuf, Running)> = self
            .lock()
            .iter_mut()
            .filter_map(|(p, s)| s.running.take().map(|r| (p.clone(), r)))
            .collect();
        let mut waits = Vec::new();
        for (path, r) in runs {
            let _ = r.stop.send(()); // a finished run has dropped its receiver
            waits.push(async move { (path, r.task.await) });
        }
        futures::future::join_all(waits).await
    }

    /// Stops `path`'s run and waits for its final sync.
    async fn halt(&self, path: &std::path::Path) -> Result<Option<ReplicatorStatus>, Refusal> {
        let run = {
            let mut dbs = self.lock();
            let slot = dbs.get_mut(path).ok_or_else(|| unknown(path))?;
            slot.running.take()
        };
        let Some(run) = run else { return Ok(None) };
        let _ = run.stop.send(());
        let ended = run.task.await;
        let status = match ended {
            Ok(Ok(st)) => st,
            Ok(Err(e)) => {
                tracing::error!(db = %path.display(), error = %e, "final sync failed");
                run.status.lock().map(|s| s.clone()).unwrap_or_default()
            }
            Err(e) => return Err(Refusal::new(500, format!("replicator task: {e}"))),
        };
        if let Some(slot) = self.lock().get_mut(path) {
            slot.last = status.clone();
        }
        Ok(Some(status))
    }
}

/// An unknown database in `start` and `stop`: Litestream answers 500 there
/// (404 in `sync`).
fn unknown(path: &std::path::Path) -> Refusal {
    Refusal::new(500, format!("database not found: {}", path.display()))
}

impl ControlTarget for ReplicatedDbs {
    fn database_count(&self) -> usize {
        self.lock().len()
    }

    fn list(&self, query: &ListQuery) -> ListResponse {
        let all: Vec<DatabaseSummary> = self
            .lock()
            .iter()
            .filter(|(path, _)| query.wants(path))
            .map(|(path, slot)| {
                let (status, st) = match &slot.running {
                    Some(r) if !r.task.is_finished() => ("replicating", r.status()),
                    Some(r) => ("stopped", r.status()),
                    None => ("stopped", slot.last.clone()),
                };
                DatabaseSummary {
                    path: path.display().to_string(),
                    status: status.into(),
                    last_sync_at: st.last_sync_at.map(|t| t.to_string()),
                    ..DatabaseSummary::default()
                }
            })
            .collect();
        ListResponse {
            total: query.is_paged().then_some(all.len()),
            databases: query.page(all),
        }
    }

    fn txid(&self, path: PathBuf) -> Result<u64, Refusal> {
        let dbs = self.lock();
        let slot = dbs.get(&path).ok_or_else(|| Refusal::not_found(&path))?;
        Ok(slot
            .running
            .as_ref()
            .map_or_else(|| slot.last.clone(), Running::status)
            .local_txid
            .0)
    }

    fn start(&self, path: PathBuf) -> BoxFuture<'static, Result<StartStopResponse, Refusal>> {
        let this = self.clone();
        async move {
            let mut dbs = this.lock();
            let slot = dbs.get_mut(&path).ok_or_else(|| unknown(&path))?;
            let status = match &slot.running {
                Some(r) if !r.task.is_finished() => "already_running",
                _ => {
                    slot.running = Some(this.spawn(&path, &slot.client, &slot.opts));
                    tracing::info!(db = %path.display(), "replication started");
                    "started"
                }
            };
            Ok(StartStopResponse {
                status: status.into(),
                txid: slot.last.local_txid.0,
                path: path.display().to_string(),
            })
        }
        .boxed()
    }

    fn stop(&self, path: PathBuf) -> BoxFuture<'static, Result<StartStopResponse, Refusal>> {
        let this = self.clone();
        async move {
            let (status, st) = match this.halt(&path).await? {
                Some(st) => {
                    tracing::info!(db = %path.display(), "replication stopped");
                    ("stopped", st)
                }
                None => (
                    "already_stopped",
                    this.lock()
                        .get(&path)
                        .map(|s| s.last.clone())
                        .unwrap_or_default(),
                ),
            };
            Ok(StartStopResponse {
                status: status.into(),
                txid: st.local_txid.0,
                path: path.display().to_string(),
            })
        }
        .boxed()
    }

    fn sync(&self, path: PathBuf, wait: bool) -> BoxFuture<'static, Result<SyncResponse, Refusal>> {
        let this = self.clone();
        async move {
            let (flush, status) = {
                let dbs = this.lock();
                let slot = dbs.get(&path).ok_or_else(|| Refusal::not_found(&path))?;
                match &slot.running {
                    Some(r) if !r.task.is_finished() => (r.flush.clone(), r.status.clone()),
                    _ => {
                        return Err(Refusal::new(
                            409,
                            format!("database not open: {}", path.display()),
                        ));
                    }
                }
            };
            let txid = |s: &Arc<Mutex<ReplicatorStatus>>| {
                s.lock()
                    .map(|s| (s.local_txid.0, s.replica_txid.0))
                    .unwrap_or_default()
            };
            let (before, _) = txid(&status);
            // Our sync and upload are one pass: without `wait` the reply
            // also comes once the replica has it (Litestream answers after
            // the local part).
            flush
                .flush()
                .await
                .map_err(|e| Refusal::new(500, format!("sync database: {e}")))?;
            let (after, replicated) = txid(&status);
            Ok(SyncResponse::new(&path, wait, before, after, replicated))
        }
        .boxed()
    }

    fn register(
        &self,
        path: PathBuf,
        replica_url: String,
    ) -> BoxFuture<'static, Result<RegisterResponse, Refusal>> {
        let this = self.clone();
        async move {
            let reply = |status: &str| RegisterResponse {
                status: status.into(),
                path: path.display().to_string(),
            };
            if this.lock().contains_key(&path) {
                return Ok(reply("already_registered"));
            }
            let client = ReplicaConfig::from_url(&replica_url)
                .open(&this.inner.pool)
                .map_err(|e| Refusal::new(400, format!("invalid replica url: {e:#}")))?;
            let mut opts = this.inner.defaults.clone();
            opts.db.metrics = DbMetrics::per_db(&path);
            if !this.add(path.clone(), client, opts) {
                return Ok(reply("already_registered"));
            }
            tracing::info!(db = %path.display(), replica = %litestreampp_core::redact::redact_url(&replica_url), "registered");
            Ok(reply("registered"))
        }
        .boxed()
    }

    fn unregister(&self, path: PathBuf) -> BoxFuture<'static, Result<UnregisterResponse, Refusal>> {
        let this = self.clone();
        async move {
            if !this.lock().contains_key(&path) {
                return Ok(UnregisterResponse {
                    status: "already_unregistered".into(),
                    path: path.display().to_string(),
                    txid: 0,
                });
            }
            let txid = match this.halt(&path).await? {
                Some(st) => st.local_txid.0,
                None => this.lock().get(&path).map_or(0, |s| s.last.local_txid.0),
            };
            this.lock().remove(&path);
            tracing::info!(db = %path.display(), "unregistered");
            Ok(UnregisterResponse {
                status: "unregistered".into(),
                path: path.display().to_string(),
                txid,
            })
        }
        .boxed()
    }
}
