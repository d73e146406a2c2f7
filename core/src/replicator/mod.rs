//! Keeps one database replicated: syncs the WAL into L0 files when it
//! changes and uploads them, until shut down.
//!
//! Syncs are event-driven. A file watcher on the database's directory
//! reports writes to the WAL (or the database file); the first change after
//! a quiet period is synced at once, and further changes within
//! `sync_interval` of the last sync are coalesced into the next one. So a
//! sparse write reaches the replica in milliseconds while a busy database
//! costs at most one upload per `sync_interval`. The watch rests between a
//! change notice and the sync that answers it, so a database committing
//! thousands of transactions a second wakes the watcher about once per
//! sync, not once per WAL write. A slow poll
//! (`monitor_interval`) backs the watcher up on filesystems without change
//! notification.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, oneshot};

use crate::db::{Db, DbOptions, SyncOutcome};
use crate::dbfile::FileSig;
use crate::error::{Error, Result};
use crate::levels::{LevelsConfig, Maintainer};
use crate::meta_dir::MetaDir;
use crate::replica::{Replica, UploadReport};
use crate::scheduler::Scheduler;
use crate::txid::TxId;
use crate::unshipped::Unshipped;

mod reach;
mod snapshot;
mod watch;

/// Settings of a replicator.
#[derive(Debug, Clone)]
pub struct ReplicatorOptions {
    /// Coalescing window: at most one sync per interval while writes keep
    /// coming; the first write after a quiet period syncs at once.
    pub sync_interval: Duration,
    /// Poll interval used in addition to change notification; zero polls
    /// never (Litestream's `monitor-interval: 0` turns its monitor off).
    pub monitor_interval: Duration,
    /// Compaction levels, snapshots and retention (used when a scheduler
    /// is attached with [`Replicator::with_scheduler`]). Local L0 files
    /// are kept `levels.l0_retention` after upload.
    pub levels: LevelsConfig,
    pub db: DbOptions,
    /// How long a failed final sync (at stop) is retried; zero tries once
    /// (Litestream's `shutdown-sync-timeout`).
    pub shutdown_sync_timeout: Duration,
    /// The pause between those attempts (`shutdown-sync-interval`).
    pub shutdown_sync_interval: Duration,
    /// On a corrupt or missing local LTX file, remove the local state and
    /// carry on from a snapshot (Litestream's `auto-recover`); otherwise
    /// the sync fails until someone runs `reset`.
    pub auto_recover: bool,
    /// At most this many L0 files uploaded per sync, the rest at the next
    /// one, which follows at once (`0`: no limit). Litestream's
    /// `max-sync-ltx-files`, default 256.
    pub max_sync_ltx_files: usize,
    /// Syncs that failed to reach the replica are logged at debug level
    /// only: the caller reports them (a fleet sums an outage of many
    /// databases up in one line a minute). Other failures are logged as
    /// errors all the same.
    pub quiet_replica_failures: bool,
    /// Levels that already hold files run on their schedule, not once at
    /// every start as at a process start (Litestream's behaviour, kept
    /// for `replicate`). A fleet starts a database's replicator at every
    /// promotion: a compaction of every level and a snapshot each time
    /// would be most of its work.
    pub levels_on_schedule: bool,
}

impl Default for ReplicatorOptions {
    fn default() -> Self {
        ReplicatorOptions {
            sync_interval: Duration::from_secs(1),
            monitor_interval: Duration::from_secs(1),
            levels: LevelsConfig::default(),
            db: DbOptions::default(),
            shutdown_sync_timeout: Duration::ZERO,
            shutdown_sync_interval: Duration::from_millis(500),
            max_sync_ltx_files: 256,
            auto_recover: false,
            quiet_replica_failures: false,
            levels_on_schedule: false,
        }
    }
}

/// What the replicator last did, for status reporting.
#[derive(Debug, Clone, Default)]
pub struct ReplicatorStatus {
    /// Local position (newest L0 TXID).
    pub local_txid: TxId,
    /// Replica position.
    pub replica_txid: TxId,
    pub syncs: u64,
    pub files_uploaded: u64,
    pub bytes_uploaded: u64,
    pub snapshots: u64,
    pub checkpoints: u64,
    /// Snapshots written to the snapshot level.
    pub level_snapshots: u64,
    /// When the last of those was uploaded.
    pub last_snapshot_at: Option<jiff::Timestamp>,
    pub errors: u64,
    pub last_error: Option<String>,
    pub last_sync_at: Option<jiff::Timestamp>,
    /// When a change was first seen that the replica does not hold yet.
    pub pending_since: Option<Instant>,
    /// Since when every attempt to reach the replica (learning its
    /// position or uploading) has failed; cleared by an upload pass that
    /// works.
    pub replica_down_since: Option<jiff::Timestamp>,
    /// The local L0 files the replica lacks, as of the last sync.
    pub unshipped: Unshipped,
    /// Set when the run ended with a seal ([`Replicator::set_seal_on_stop`]):
    /// the files as the seal left them, everything uploaded.
    pub sealed: Option<FileSig>,
}

/// The result of one sync-and-upload pass.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    pub sync: SyncOutcome,
    pub upload: UploadReport,
}

/// One database and its replica.
#[derive(Debug)]
pub struct Replicator {
    /// Taken while a sync, seal or snapshot runs on the blocking pool.
    db: Option<Db>,
    db_path: PathBuf,
    /// The database's local L0 files, which the replica uploads.
    meta: MetaDir,
    replica: Replica,
    opts: ReplicatorOptions,
    status: Arc<Mutex<ReplicatorStatus>>,
    positioned: bool,
    scheduler: Option<Scheduler>,
    maint: Option<Arc<Maintainer>>,
    /// Change signal from outside (the fleet's write detector) instead of
    /// a watcher of our own.
    changed: Option<Arc<Notify>>,
    seal_on_stop: bool,
    /// Requests to sync now and report the replica's position.
    flush_rx: Option<mpsc::UnboundedReceiver<FlushRequest>>,
    /// While the replica's position is unknown (it could not be reached
    /// yet): the local position this run started from. Files above it
    /// were written by this run and never uploaded.
    local_floor: Option<TxId>,
}

/// A waiter for the next sync: answered with the replica's TXID after it.
type FlushRequest = oneshot::Sender<Result<TxId>>;

/// Asks a running [`Replicator`] to sync now (see
/// [`Replicator::flush_handle`]).
#[derive(Debug, Clone)]
pub struct FlushHandle {
    tx: mpsc::UnboundedSender<FlushRequest>,
    db: PathBuf,
}

impl FlushHandle {
    /// Syncs now; returns once every transaction committed before the call
    /// is in the replica, with the replica's TXID.
    pub async fn flush(&self) -> Result<TxId> {
        let (tx, rx) = oneshot::channel();
        let stopped = || Error::InvalidInput(format!("{}: replication stopped", self.db.display()));
        self.tx.send(tx).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

impl Replicator {
    /// A replicator for the database at `db_path`.
    pub fn new(db_path: impl Into<PathBuf>, replica: Replica, opts: ReplicatorOptions) -> Self {
        let db_path: PathBuf = db_path.into();
        Replicator {
            meta: opts.db.meta_dir_of(&db_path),
            db: Some(Db::new(&db_path, opts.db.clone())),
            db_path,
            replica,
            opts,
            status: Arc::new(Mutex::new(ReplicatorStatus::default())),
            positioned: false,
            scheduler: None,
            maint: None,
            changed: None,
            seal_on_stop: false,
            flush_rx: None,
            local_floor: None,
        }
    }

    /// A handle that makes the running replicator sync at once, skipping
    /// the sync interval, and reports when the replica holds everything
    /// committed before the request. Take it before [`run`](Self::run).
    pub fn flush_handle(&mut self) -> FlushHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        self.flush_rx = Some(rx);
        FlushHandle {
            tx,
            db: self.db_path(),
        }
    }

    /// Syncs when `changed` is notified (and on the poll interval) instead
    /// of watching the database's directory itself: the fleet runs one
    /// write detector for every database.
    pub fn set_change_signal(&mut self, changed: Arc<Notify>) {
        self.changed = Some(changed);
    }

    /// Ends [`run`](Self::run) with a seal ([`Db::seal`]) after the final
    /// sync: the database can then go cold and come back without a
    /// snapshot. The status reports whether it was sealed.
    pub fn set_seal_on_stop(&mut self, seal: bool) {
        self.seal_on_stop = seal;
    }

    /// Runs compaction, snapshots and retention for this database on
    /// `scheduler` (shared by every database of the process).
    pub fn with_scheduler(mut self, scheduler: Scheduler) -> Self {
        self.scheduler = Some(scheduler);
        self
    }

    /// The level maintainer, once replication has started with a
    /// scheduler.
    pub fn maintainer(&self) -> Option<&Arc<Maintainer>> {
        self.maint.as_ref()
    }

    /// The replica's storage client.
    pub fn replica_client(&self) -> Arc<dyn crate::client::ReplicaClient> {
        self.replica.client().clone()
    }

    /// A handle on the status, readable while [`run`](Self::run) goes on.
    pub fn status_handle(&self) -> Arc<Mutex<ReplicatorStatus>> {
        self.status.clone()
    }

    /// The database path.
    pub fn db_path(&self) -> PathBuf {
        self.db_path.clone()
    }

    fn db_mut(&mut self) -> Result<&mut Db> {
        self.db
            .as_mut()
            .ok_or_else(|| Error::InvalidInput("replicator closed".into()))
    }

    /// Runs `f` on the database on the blocking pool (it reads and writes
    /// files and waits on SQLite locks), then puts the database back.
    async fn on_blocking_pool<T: Send + 'static>(
        &mut self,
        what: &'static str,
        f: impl FnOnce(&mut Db) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let mut db = self
            .db
            .take()
            .ok_or_else(|| Error::InvalidInput("replicator closed".into()))?;
        let (db, r) = tokio::task::spawn_blocking(move || {
            let r = f(&mut db);
            (db, r)
        })
        .await
        .map_err(|e| Error::io(what, std::io::Error::other(e.to_string())))?;
        self.db = Some(db);
        r
    }

    fn with_status(&self, f: impl FnOnce(&mut ReplicatorStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    /// Syncs the WAL into L0 files and uploads everything the replica
    /// lacks.
    pub async fn sync_once(&mut self) -> Result<SyncReport> {
        self.sync_pass(0).await
    }

    /// [`sync_once`](Self::sync_once) uploading at most `limit` files
    /// (`0`: all); `report.upload.limited` says whether some are left.
    async fn sync_pass(&mut self, limit: usize) -> Result<SyncReport> {
        let began = Instant::now();
        let r = self.sync_once_inner(limit).await;
        if let Err(e) = &r
            && self.opts.auto_recover
            && e.is_local_state_fault(self.meta.path())
        {
            self.recover_local_state(e);
        }
        let m = &self.opts.db.metrics;
        m.sync(began.elapsed().as_secs_f64(), r.as_ref().err());
        if let Ok(rep) = &r {
            m.wal_bytes(rep.sync.files.iter().map(|f| f.wal_bytes).sum());
            if let crate::metrics::DbMetrics::PerDb(_) = m {
                self.record_position();
            }
        }
        match &r {
            Ok(rep) => {
                metrics::counter!("litestreampp_syncs_total").increment(1);
                if !rep.upload.files.is_empty() {
                    metrics::counter!("litestreampp_uploaded_files_total")
                        .increment(rep.upload.files.len() as u64);
                    metrics::counter!("litestreampp_uploaded_bytes_total")
                        .increment(rep.upload.bytes);
                }
                let wal: u64 = rep.sync.files.iter().map(|f| f.wal_bytes).sum();
                if wal > 0 {
                    metrics::counter!("litestreampp_wal_bytes_total").increment(wal);
                }
                if rep.sync.checkpoint.is_some() {
                    metrics::counter!("litestreampp_checkpoints_total").increment(1);
                }
            }
            Err(_) => metrics::counter!("litestreampp_sync_errors_total").increment(1),
        }
        match &r {
            Ok(rep) => self.with_status(|s| {
                s.syncs += 1;
                s.files_uploaded += rep.upload.files.len() as u64;
                s.bytes_uploaded += rep.upload.bytes;
                s.snapshots += rep.sync.files.iter().filter(|f| f.snapshot).count() as u64;
                s.checkpoints += u64::from(rep.sync.checkpoint.is_some());
                s.last_error = None;
                s.last_sync_at = Some(jiff::Timestamp::now());
            }),
            Err(e) => {
                let msg = e.to_string();
                self.with_status(|s| {
                    s.errors += 1;
                    s.last_error = Some(msg);
                });
            }
        }
        r
    }

    /// The per-database gauges: TXID, database and WAL size.
    fn record_position(&mut self) {
        let Some(db) = self.db.as_mut() else { return };
        let (txid, wal) = match db.position() {
            Ok(Some(p)) => (p.txid.0, p.wal_offset),
            _ => return,
        };
        let size = std::fs::metadata(&self.db_path).map_or(0, |m| m.len());
        self.opts.db.metrics.position(txid, size, wal);
    }

    /// Runs until `shutdown` completes, then finishes with a last sync and
    /// closes the database. Errors of individual syncs are logged and
    /// retried with backoff; they are visible in the status.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<ReplicatorStatus> {
        let patience = self.opts.shutdown_sync_timeout;
        self.run_until(async move {
            shutdown.await;
            patience
        })
        .await
    }

    /// [`run`](Self::run), where the stop says how long a failed final
    /// sync may be retried instead of `shutdown_sync_timeout` (a fleet's
    /// demotion keeps what it could not ship locally, and need not wait).
    pub async fn run_until(
        mut self,
        shutdown: impl Future<Output = Duration>,
    ) -> Result<ReplicatorStatus> {
        let mut patience = Duration::ZERO;
        self.opts.db.metrics.register();
        let (changed, mut watcher) = match &self.changed {
            Some(c) => (c.clone(), None),
            None => {
                let c = Arc::new(Notify::new());
                let w = self.watch(c.clone());
                (c, w)
            }
        };
        tokio::pin!(shutdown);
        let mut flush_rx = self.flush_rx.take();
        // Flush requests the next sync answers.
        let mut waiting: Vec<FlushRequest> = Vec::new();
        let window = self.opts.sync_interval;
        // The window counts from the last sync that shipped something: polls
        // that found nothing new must not delay the next write.
        let mut last_shipped: Option<Instant> = None;
        let mut started = false;
        let mut backoff = Duration::ZERO;
        // After a failed sync, the next attempt waits out the backoff
        // whatever changes meanwhile (a busy database would otherwise
        // retry, and log, at every write).
        let mut retry_at: Option<Instant> = None;
        // The last upload stopped at `max_sync_ltx_files`: the next sync
        // follows at once (also when stopping: nothing is left behind).
        let mut more_to_ship = false;
        let mut stopping = false;
        // The first failure of the current streak of failed syncs.
        let mut failing_since: Option<Instant> = None;
        // Failed syncs are retried with backoff up to ten sync intervals,
        // between 1 and 10 seconds: a replica that is down for long costs
        // one request per database every 10 s at the default interval.
        let retry_max = (window * 10).clamp(Duration::from_secs(1), Duration::from_secs(10));
        let mut upload: Option<tokio::task::JoinHandle<()>> = None;
        loop {
            // A finished upload's task is freed with its handle (a hot
            // database in a fleet waits for hours between snapshots).
            if upload.as_ref().is_some_and(|u| u.is_finished()) {
                upload = None;
            }
            // Once stopping, `shutdown` has completed and is not polled
            // again: only final sync attempts remain.
            if started && !stopping && !more_to_ship {
                // Zero: no poll, and no retry pending either.
                let wait = if self.opts.monitor_interval.is_zero() {
                    backoff
                } else {
                    self.opts.monitor_interval.max(backoff)
                };
                let poll = async move {
                    if wait.is_zero() {
                        std::future::pending().await
                    } else {
                        tokio::time::sleep(wait).await
                    }
                };
                let maint = self.maint.clone();
                let snapshot_wanted = async move {
                    match maint {
                        Some(m) => m.snapshot_requested().await,
                        None => std::future::pending().await,
                    }
                };
                let mut snap = false;
                // Biased: a requested snapshot is never starved by a
                // database that changes all the time.
                tokio::select! {
                    biased;
                    p = &mut shutdown => {
                        stopping = true;
                        patience = p;
                    }
                    _ = snapshot_wanted => snap = true,
                    _ = changed.notified() => {
                        self.with_status(|s| {
                            s.pending_since.get_or_insert_with(Instant::now);
                        });
                        // One notice is all the next sync needs: the
                        // watch rests until then (a busy database writes
                        // its WAL thousands of times a second, and each
                        // write would wake the watcher's thread).
                        if let Some(w) = &mut watcher {
                            w.pause();
                        }
                    }
                    Some(req) = next_flush(&mut flush_rx) => waiting.push(req),
                    _ = poll => {},
                }
                if snap && !stopping {
                    // Encode here (it needs the database), upload in the
                    // background so syncs go on meanwhile.
                    match Box::pin(self.encode_snapshot()).await {
                        Ok(Some(job)) => {
                            if let Some(prev) = upload.take() {
                                let _ = prev.await; // at most one in flight; it reports its own errors
                            }
                            upload = Some(tokio::spawn(async move {
                                let _ = job.upload().await; // logged and recorded by upload()
                            }));
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::error!(db = %self.db_path().display(), error = %e, "snapshot failed");
                        }
                    }
                    continue;
                }
            }
            started = true;
            // Requests queued before this sync are answered by it.
            while let Some(req) = flush_rx.as_mut().and_then(|rx| rx.try_recv().ok()) {
                waiting.push(req);
            }
            // Coalesce: at most one shipping sync per window while writes
            // keep coming, and none before a failed one's backoff is over
            // (a flush request does not wait).
            let due = [last_shipped.map(|t| t + window), retry_at]
                .into_iter()
                .flatten()
                .max();
            if !stopping
                && !more_to_ship
                && waiting.is_empty()
                && let Some(due) = due
                && due > Instant::now()
            {
                tokio::select! {
                    p = &mut shutdown => {
                        stopping = true;
                        patience = p;
                    }
                    // A flush request cuts the wait short.
                    Some(req) = next_flush(&mut flush_rx) => waiting.push(req),
                    _ = tokio::time::sleep_until(due.into()) => {},
                }
            }
            // Watching again before the sync reads the WAL: a write after
            // this point is either read by this sync or noticed.
            if let Some(w) = &mut watcher
                && !w.resume()
            {
                watcher = None; // polling every monitor_interval from now on
            }
            let began = Instant::now();
            let synced = Box::pin(self.sync_pass(self.opts.max_sync_ltx_files)).await;
            // Flush requests wait for a pass that shipped everything.
            let limited = matches!(&synced, Ok(r) if r.upload.limited);
            let answered = if limited {
                Vec::new()
            } else {
                std::mem::take(&mut waiting)
            };
            for req in answered {
                let answer = match &synced {
                    Ok(_) => Ok(self.replica.position().unwrap_or(TxId::ZERO)),
                    Err(e) => Err(Error::Backend {
                        context: format!("{}: sync", self.db_path().display()),
                        message: e.to_string(),
                        transient: true,
                    }),
                };
                let _ = req.send(answer); // the waiter may have given up
            }
            match synced {
                Ok(rep) => {
                    backoff = Duration::ZERO;
                    retry_at = None;
                    failing_since = None;
                    more_to_ship = rep.upload.limited;
                    if !rep.sync.files.is_empty() {
                        last_shipped = Some(began);
                    }
                    log_report(&self.db_path(), &rep);
                }
                Err(e) => {
                    more_to_ship = false;
                    let failing_since = *failing_since.get_or_insert_with(Instant::now);
                    backoff = (backoff * 2).clamp(Duration::from_secs(1), retry_max);
                    retry_at = Some(Instant::now() + backoff);
                    let quiet = self.opts.quiet_replica_failures
                        && self
                            .status
                            .lock()
                            .is_ok_and(|s| s.replica_down_since.is_some());
                    if stopping {
                        // The final sync gets its patience from the first
                        // failure of the streak: a replica down for longer
                        // already had its chance.
                        let deadline = failing_since + patience;
                        let pause = self.opts.shutdown_sync_interval;
                        if Instant::now() + pause < deadline {
                            if quiet {
                                tracing::debug!(db = %self.db_path().display(), error = %e, retry_in = ?pause, "final sync failed, retrying");
                            } else {
                                tracing::warn!(db = %self.db_path().display(), error = %e, retry_in = ?pause, "final sync failed, retrying");
                            }
                            tokio::time::sleep(pause).await;
                            continue;
                        }
                    }
                    if quiet {
                        tracing::debug!(db = %self.db_path().display(), error = %e, retry_in = ?backoff, "sync failed");
                    } else {
                        tracing::error!(db = %self.db_path().display(), error = %e, retry_in = ?backoff, "sync failed");
                    }
                    if stopping {
                        if let Some(u) = upload.take() {
                            let _ = u.await; // it reports its own errors
                        }
                        self.seal_unshipped().await;
                        self.leave_scheduler().await;
                        self.close()?;
                        return Err(e);
                    }
                }
            }
            if stopping && !more_to_ship {
                break;
            }
        }
        // A snapshot upload in flight completes (or fails) before we stop.
        if let Some(u) = upload.take() {
            let _ = u.await; // it reports its own errors
        }
        if self.seal_on_stop {
            let sealed = Box::pin(self.seal()).await;
            if let Err(e) = &sealed {
                let replica_down = self
                    .status
                    .lock()
                    .is_ok_and(|s| s.replica_down_since.is_some());
                if self.opts.quiet_replica_failures && replica_down {
                    tracing::debug!(db = %self.db_path().display(), error = %e, "seal failed");
                } else {
                    tracing::warn!(db = %self.db_path().display(), error = %e, "seal failed");
                }
            }
            self.leave_scheduler().await;
            let closed = self.close();
            let sealed = sealed?;
            closed?;
            self.with_status(|s| s.sealed = sealed);
            return Ok(self.status.lock().map(|s| s.clone()).unwrap_or_default());
        }
        self.leave_scheduler().await;
        self.close()?;
        Ok(self.status.lock().map(|s| s.clone()).unwrap_or_default())
    }

    /// Seals the database ([`Db::seal`]) and uploads what the seal synced.
    /// Returns the files' signature if it sealed and the replica holds
    /// everything.
    pub async fn seal(&mut self) -> Result<Option<FileSig>> {
        let (_, sig) = self.on_blocking_pool("seal task", Db::seal).await?;
        crate::crashpoint::here("sealed");
        let attempt = jiff::Timestamp::now();
        let uploaded = self.upload(0).await;
        // The seal stands locally; what it could not ship waits there.
        self.replica_failed(uploaded.is_err(), attempt);
        if uploaded.is_err()
            && let Some(above) = self.replica.position()
            && let Err(e) = self.bound_unshipped(above).await
        {
            tracing::warn!(db = %self.db_path.display(), error = %e, "cannot bound the unshipped L0 files");
        }
        let local = self.db_mut()?.position().ok().flatten().map(|p| p.txid);
        uploaded?;
        // A sealed database runs no retention until it is written again,
        // which may be never: the L0 files L1 covers go now, not after
        // `l0-retention` (that keeps them for a running database's
        // compactions; the replica's own L0 files keep theirs).
        self.prune_shipped(Duration::ZERO)?;
        let through = self.replica.position();
        Ok(sig.filter(|_| local.is_none() || local == through))
    }

    /// Leaves the scheduler and waits for a compaction or retention run
    /// in flight. The next replicator of this database (a fleet promotes
    /// it again, maybe seconds later) cleans the scratch space at its
    /// start, and would remove the output that run is still uploading:
    /// under churn, L1 then never completed and the local L0 files it
    /// did not cover were never pruned (found by `tests/soak.rs`).
    async fn leave_scheduler(&mut self) {
        if let Some(m) = self.maint.clone() {
            m.detach_and_settle().await;
        }
    }

    /// Releases the database and leaves the scheduler.
    pub fn close(&mut self) -> Result<()> {
        if let Some(m) = &self.maint {
            m.detach();
        }
        match self.db.as_mut() {
            Some(db) => db.close(),
            None => Ok(()),
        }
    }
}

fn log_report(db: &Path, rep: &SyncReport) {
    for f in &rep.sync.files {
        tracing::debug!(db = %db.display(), txid = %f.txid, pages = f.pages, size = f.size, snapshot = f.snapshot, "wrote L0");
    }
    if !rep.upload.files.is_empty() {
        tracing::debug!(db = %db.display(), files = rep.upload.files.len(), bytes = rep.upload.bytes, "uploaded");
    }
    if rep.upload.limited {
        tracing::debug!(db = %db.display(), "replica sync limited (max-sync-ltx-files), the next sync follows at once");
    }
}

/// The next flush request, or never when there is no channel (or it closed).
async fn next_flush(
    rx: &mut Option<mpsc::UnboundedReceiver<FlushRequest>>,
) -> Option<FlushRequest> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
