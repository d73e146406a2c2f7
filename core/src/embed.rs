//! Replication embedded in an application: one process serving one
//! database, durable without a sidecar.
//!
//! The lifecycle an application follows:
//!
//! 1. [`Replication::restore_if_needed`] before it opens the database: the
//!    database is restored from the replica when it is missing or behind
//!    (beyond [`Builder::restore_lag`]), and left alone otherwise.
//! 2. Open the database (in WAL mode) with the **same SQLite library** as
//!    this crate (the same `rusqlite` / `libsqlite3-sys` build in the same
//!    process). Two copies of SQLite in one process do not see each other's
//!    POSIX locks, and a checkpoint by one can then pull frames from under
//!    the other.
//! 3. [`Replication::start`] on the application's tokio runtime: every
//!    committed transaction is shipped within the sync interval.
//!    [`Replication::sync_and_wait`] returns once everything committed
//!    before the call is in the replica.
//! 4. [`Replication::shutdown`] when the application stops: a final sync of
//!    the WAL's pending frames, bounded by a timeout.
//!
//! Replication errors at run time (the replica unreachable, a full disk)
//! are retried with backoff and reported through [`Replication::status`],
//! the `metrics` facade and `tracing`; the application keeps running.
//! With [`Builder::replication_required`], [`Replication::failed`]
//! resolves once errors have persisted for the grace period, for the
//! application to stop serving.
//!
//! ```no_run
//! use std::time::Duration;
//! use litestreampp_core::embed::{Replication, RestoreOutcome};
//!
//! # async fn serve(_: rusqlite::Connection) {}
//! # async fn example() -> litestreampp_core::Result<()> {
//! let mut repl = Replication::builder("/data/app.db")
//!     .replica_url("s3://my-bucket/app")
//!     .sync_interval(Duration::from_secs(1))
//!     .build()?;
//! match repl.restore_if_needed().await? {
//!     RestoreOutcome::Restored { txid, .. } => println!("restored at TXID {txid}"),
//!     other => println!("no restore: {other:?}"),
//! }
//! let conn = rusqlite::Connection::open("/data/app.db").expect("open");
//! conn.pragma_update(None, "journal_mode", "wal").expect("wal");
//! repl.start()?;
//! serve(conn).await;
//! repl.shutdown(Duration::from_secs(10)).await?;
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::client::{self, FileInfo, ReplicaClient};
use crate::dbfile;
use crate::error::{Error, Result};
use crate::meta_dir::MetaDir;
use crate::replica::Replica;
use crate::replicator::{FlushHandle, Replicator, ReplicatorOptions, ReplicatorStatus};
use crate::restore::{RestoreOptions, RestoreTarget, plan_from_files, restore_with_plan};
use crate::scheduler::Scheduler;
use crate::txid::TxId;

/// Workers of the compaction scheduler an embedded replication starts.
const SCHEDULER_WORKERS: usize = 1;

/// Where the replica is.
#[derive(Debug, Clone)]
enum Source {
    Url(String),
    Client(Arc<dyn ReplicaClient>),
}

impl Source {
    fn open(&self) -> Result<Arc<dyn ReplicaClient>> {
        match self {
            Source::Url(u) => client::from_url(u),
            Source::Client(c) => Ok(c.clone()),
        }
    }
}

/// Configures a [`Replication`]; see [`Replication::builder`].
#[derive(Debug, Clone)]
pub struct Builder {
    db: PathBuf,
    replica: Option<Source>,
    restore_from: Option<Source>,
    opts: ReplicatorOptions,
    restore_lag: Duration,
    allow_degraded: bool,
    required: Option<Duration>,
    startup_timeout: Duration,
}

impl Builder {
    /// The replica, as a URL: `s3://bucket/path?endpoint=...`,
    /// `file:///path`, or a plain directory path.
    pub fn replica_url(mut self, url: impl Into<String>) -> Self {
        self.replica = Some(Source::Url(url.into()));
        self
    }

    /// The replica, as a client built by the application.
    pub fn replica_client(mut self, client: Arc<dyn ReplicaClient>) -> Self {
        self.replica = Some(Source::Client(client));
        self
    }

    /// Restore from another replica than the one replicated to (for
    /// example to seed a new server from production's backups).
    pub fn restore_from_url(mut self, url: impl Into<String>) -> Self {
        self.restore_from = Some(Source::Url(url.into()));
        self
    }

    /// At most one sync per interval while writes keep coming (default
    /// 1 s; the first write after a quiet period syncs at once).
    pub fn sync_interval(mut self, d: Duration) -> Self {
        self.opts.sync_interval = d;
        self
    }

    /// How often the database is polled besides file notifications
    /// (default 1 s).
    pub fn monitor_interval(mut self, d: Duration) -> Self {
        self.opts.monitor_interval = d;
        self
    }

    /// How often a full snapshot is written to the replica (default 24 h).
    pub fn snapshot_interval(mut self, d: Duration) -> Self {
        self.opts.levels.snapshot_interval = d;
        self
    }

    /// How long replica files are kept before retention removes them
    /// (default 24 h); restores can go back this far.
    pub fn retention(mut self, d: Duration) -> Self {
        self.opts.levels.snapshot_retention = d;
        self
    }

    /// All replicator settings at once (compaction levels, checkpoint
    /// thresholds, ...).
    pub fn options(mut self, opts: ReplicatorOptions) -> Self {
        self.opts = opts;
        self
    }

    /// How far behind the replica a local database may be and still be
    /// kept by [`Replication::restore_if_needed`] (default 0: restore
    /// whenever the replica holds transactions the local database lacks).
    pub fn restore_lag(mut self, d: Duration) -> Self {
        self.restore_lag = d;
        self
    }

    /// Start even when the replica cannot be reached at startup
    /// ([`RestoreOutcome::Degraded`]); the default is to fail fast, so a
    /// server never runs without the durability it was configured with.
    pub fn allow_degraded(mut self, allow: bool) -> Self {
        self.allow_degraded = allow;
        self
    }

    /// Replication is required: [`Replication::failed`] resolves once
    /// replication errors have persisted for `grace`.
    pub fn replication_required(mut self, grace: Duration) -> Self {
        self.required = Some(grace);
        self
    }

    /// Bound on reaching the replica at startup (default 10 s).
    pub fn startup_timeout(mut self, d: Duration) -> Self {
        self.startup_timeout = d;
        self
    }

    /// Checks the settings and opens the replica client (no request yet).
    pub fn build(self) -> Result<Replication> {
        let source = self.replica.ok_or_else(|| {
            Error::InvalidInput(format!(
                "{}: no replica configured (replica_url or replica_client)",
                self.db.display()
            ))
        })?;
        if self.db.as_os_str().is_empty() || self.db.file_name().is_none() {
            return Err(Error::InvalidInput(format!(
                "{:?}: not a database file path",
                self.db
            )));
        }
        let client = source.open()?;
        let restore_client = match &self.restore_from {
            Some(s) => s.open()?,
            None => client.clone(),
        };
        Ok(Replication {
            db: self.db,
            client,
            restore_client,
            opts: self.opts,
            restore_lag: self.restore_lag,
            allow_degraded: self.allow_degraded,
            required: self.required,
            startup_timeout: self.startup_timeout,
            status: Arc::new(Mutex::new(ReplicatorStatus::default())),
            running: None,
            failed: watch::channel(None).0,
        })
    }
}

/// What [`Replication::restore_if_needed`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestoreOutcome {
    /// The database was missing or behind and was restored.
    Restored {
        txid: TxId,
        files: usize,
        bytes: u64,
    },
    /// The local database holds everything the replica holds.
    UpToDate { local: TxId, replica: TxId },
    /// The local database is behind, but by less than the restore lag.
    WithinLag {
        local: TxId,
        replica: TxId,
        behind: Duration,
    },
    /// The local database exists but was never replicated from this
    /// path (no local position): it is kept, and replication continues
    /// from it.
    LocalUntracked { replica: TxId },
    /// The replica is empty: nothing to restore (a first start).
    NoReplica,
    /// The replica could not be reached and degraded starts are allowed.
    Degraded { error: String },
}

/// A point-in-time view of an embedded replication.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Status {
    /// Replication is running.
    pub running: bool,
    /// Newest transaction synced locally.
    pub local_txid: TxId,
    /// Newest transaction in the replica.
    pub replica_txid: TxId,
    /// How long committed changes have been waiting for the replica
    /// (`None` when it holds everything seen).
    pub lag: Option<Duration>,
    pub last_sync_at: Option<jiff::Timestamp>,
    /// The last sync's error, cleared by the next successful sync.
    pub last_error: Option<String>,
    pub errors: u64,
    pub syncs: u64,
    pub files_uploaded: u64,
    pub bytes_uploaded: u64,
    pub snapshots: u64,
    pub level_snapshots: u64,
    /// When the last full snapshot reached the replica's snapshot level.
    pub last_snapshot_at: Option<jiff::Timestamp>,
}

impl Status {
    fn from_replicator(s: &ReplicatorStatus, running: bool) -> Status {
        Status {
            running,
            local_txid: s.local_txid,
            replica_txid: s.replica_txid,
            lag: s.pending_since.map(|t| t.elapsed()),
            last_sync_at: s.last_sync_at,
            last_error: s.last_error.clone(),
            errors: s.errors,
            syncs: s.syncs,
            files_uploaded: s.files_uploaded,
            bytes_uploaded: s.bytes_uploaded,
            snapshots: s.snapshots,
            level_snapshots: s.level_snapshots,
            last_snapshot_at: s.last_snapshot_at,
        }
    }
}

#[derive(Debug)]
struct Running {
    stop: oneshot::Sender<()>,
    flush: FlushHandle,
    task: JoinHandle<Result<ReplicatorStatus>>,
    watchdog: Option<JoinHandle<()>>,
    /// Compaction, snapshots and retention of this database.
    scheduler: Scheduler,
}

/// One database replicated from inside the application; see the module
/// documentation for the lifecycle.
#[derive(Debug)]
pub struct Replication {
    db: PathBuf,
    client: Arc<dyn ReplicaClient>,
    restore_client: Arc<dyn ReplicaClient>,
    opts: ReplicatorOptions,
    restore_lag: Duration,
    allow_degraded: bool,
    required: Option<Duration>,
    startup_timeout: Duration,
    status: Arc<Mutex<ReplicatorStatus>>,
    running: Option<Running>,
    failed: watch::Sender<Option<String>>,
}

impl Replication {
    /// Starts configuring the replication of the database at `db`.
    pub fn builder(db: impl Into<PathBuf>) -> Builder {
        Builder {
            db: db.into(),
            replica: None,
            restore_from: None,
            opts: ReplicatorOptions::default(),
            restore_lag: Duration::ZERO,
            allow_degraded: false,
            required: None,
            startup_timeout: Duration::from_secs(10),
        }
    }

    /// The database path.
    pub fn db_path(&self) -> &Path {
        &self.db
    }

    /// Restores the database from the replica if it is missing or behind;
    /// call it before the application opens the database. Idempotent: a
    /// database that holds everything the replica holds is left alone.
    ///
    /// A replica that cannot be reached is an error naming it, unless
    /// [`Builder::allow_degraded`] was set.
    pub async fn restore_if_needed(&self) -> Result<RestoreOutcome> {
        let client = self.restore_client.clone();
        let listed = tokio::time::timeout(self.startup_timeout, client.all_ltx_files()).await;
        let files = match listed {
            Ok(Ok(f)) => f,
            Ok(Err(e)) if e.is_not_found() => Vec::new(),
            Ok(Err(e)) => return self.unreachable(e.to_string()),
            Err(_) => {
                return self.unreachable(format!("no answer within {:?}", self.startup_timeout));
            }
        };
        let Some(replica) = files.iter().map(|f| f.max_txid).max() else {
            tracing::info!(db = %self.db.display(), replica = %client.location(), "replica is empty: nothing to restore");
            return Ok(RestoreOutcome::NoReplica);
        };
        // An empty file (created by something before the restore) holds
        // nothing to keep.
        if std::fs::metadata(&self.db).is_ok_and(|m| m.len() > 0) {
            // The engine's own view (its meta directory, as configured):
            // the newest local L0 file, without opening the database.
            let local = self.meta_dir().l0_files()?.last().map(|&(_, max)| max);
            match local {
                Some(local) if local >= replica => {
                    return Ok(RestoreOutcome::UpToDate { local, replica });
                }
                Some(local) => {
                    let behind = staleness(&files, local);
                    if behind.is_some_and(|b| b <= self.restore_lag) {
                        let behind = behind.unwrap_or_default();
                        tracing::info!(db = %self.db.display(), %local, %replica, ?behind, "behind the replica within the restore lag: kept");
                        return Ok(RestoreOutcome::WithinLag {
                            local,
                            replica,
                            behind,
                        });
                    }
                    tracing::warn!(db = %self.db.display(), %local, %replica, "behind the replica: restoring over it");
                }
                None => {
                    tracing::info!(db = %self.db.display(), %replica, "database present without a local replication position (never replicated from here, or restored and not replicated since): kept; replication continues from it");
                    return Ok(RestoreOutcome::LocalUntracked { replica });
                }
            }
        }
        self.restore_latest(client, files).await
    }

    /// The database as the replicator will see it (paths only; nothing
    /// is opened).
    /// The engine's meta directory, as configured.
    fn meta_dir(&self) -> MetaDir {
        self.opts.db.meta_dir_of(&self.db)
    }

    fn unreachable(&self, error: String) -> Result<RestoreOutcome> {
        let loc = self.restore_client.location();
        if self.allow_degraded {
            tracing::warn!(db = %self.db.display(), replica = %loc, %error, "replica unreachable at startup: starting degraded");
            return Ok(RestoreOutcome::Degraded { error });
        }
        Err(Error::Backend {
            context: format!("replica {loc}"),
            message: format!(
                "unreachable at startup ({error}); not starting without it (allow_degraded starts anyway)"
            ),
            transient: true,
        })
    }

    /// Restores the newest state over the database path: the old WAL and
    /// wal-index go first (SQLite would replay them onto the restored
    /// file), then the file is replaced atomically, then the meta
    /// directory, whose position described the old file.
    async fn restore_latest(
        &self,
        client: Arc<dyn ReplicaClient>,
        files: Vec<FileInfo>,
    ) -> Result<RestoreOutcome> {
        let plan = plan_from_files(&client.location(), files, RestoreTarget::Latest)?;
        dbfile::remove_side_files(&self.db)?;
        let opts = RestoreOptions {
            overwrite: true,
            ..RestoreOptions::new(&self.db)
        };
        let s = restore_with_plan(client, &opts, Some(plan)).await?;
        let meta = self.meta_dir();
        let meta = meta.path();
        match std::fs::remove_dir_all(meta) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("remove {}", meta.display()), e)),
        }
        tracing::info!(db = %self.db.display(), txid = %s.txid, files = s.files, bytes = s.bytes_read, "restored");
        Ok(RestoreOutcome::Restored {
            txid: s.txid,
            files: s.files,
            bytes: s.bytes_read,
        })
    }

    /// Starts replicating in the background on the current tokio runtime
    /// (call it from within the runtime).
    pub fn start(&mut self) -> Result<()> {
        if self.running.is_some() {
            return Err(Error::InvalidInput(format!(
                "{}: replication already started",
                self.db.display()
            )));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::InvalidInput(format!(
                "{}: start() must be called from within a tokio runtime",
                self.db.display()
            )));
        }
        let scheduler = Scheduler::start(SCHEDULER_WORKERS);
        let mut r = Replicator::new(
            &self.db,
            Replica::new(self.client.clone()),
            self.opts.clone(),
        )
        .with_scheduler(scheduler.clone());
        let flush = r.flush_handle();
        self.status = r.status_handle();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(r.run(async move {
            let _ = stopped.await; // a dropped sender also stops
        }));
        let watchdog = self
            .required
            .map(|grace| tokio::spawn(watchdog(self.status.clone(), grace, self.failed.clone())));
        tracing::info!(db = %self.db.display(), replica = %self.client.location(), "replicating");
        self.running = Some(Running {
            stop,
            flush,
            task,
            watchdog,
            scheduler,
        });
        Ok(())
    }

    /// Syncs now and returns once every transaction committed before the
    /// call is in the replica, with the replica's TXID.
    pub async fn sync_and_wait(&self) -> Result<TxId> {
        let r = self.running.as_ref().ok_or_else(|| {
            Error::InvalidInput(format!("{}: replication not started", self.db.display()))
        })?;
        r.flush.flush().await
    }

    /// Where replication stands.
    pub fn status(&self) -> Status {
        let running = self.running.as_ref().is_some_and(|r| !r.task.is_finished());
        let s = self.status.lock().map(|s| s.clone()).unwrap_or_default();
        Status::from_replicator(&s, running)
    }

    /// Resolves with the error once replication has failed for the grace
    /// period of [`Builder::replication_required`]; never otherwise.
    pub async fn failed(&self) -> String {
        let mut rx = self.failed.subscribe();
        loop {
            if let Some(e) = rx.borrow_and_update().clone() {
                return e;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Stops replicating: a final sync ships the WAL's pending frames,
    /// then the database is released. An error if that fails or takes
    /// longer than `timeout` (what is not in the replica then is named in
    /// the error).
    pub async fn shutdown(mut self, timeout: Duration) -> Result<Status> {
        let Some(r) = self.running.take() else {
            return Ok(self.status());
        };
        if let Some(w) = r.watchdog {
            w.abort();
        }
        let _ = r.stop.send(()); // the task may have ended already
        r.scheduler.close();
        let mut task = r.task;
        let out = match tokio::time::timeout(timeout, &mut task).await {
            Ok(Ok(Ok(st))) => Ok(Status::from_replicator(&st, false)),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(join)) => Err(Error::Backend {
                context: format!("{}: replication task", self.db.display()),
                message: join.to_string(),
                transient: false,
            }),
            Err(_) => {
                task.abort();
                let st = self.status();
                Err(Error::Backend {
                    context: format!("{}: shutdown", self.db.display()),
                    message: format!(
                        "final sync did not finish within {timeout:?}; the replica holds TXID {} of local {}",
                        st.replica_txid, st.local_txid
                    ),
                    transient: true,
                })
            }
        };
        if let Err(e) = &out {
            tracing::error!(db = %self.db.display(), error = %e, "replication stopped with an error");
        } else {
            tracing::info!(db = %self.db.display(), "replication stopped");
        }
        out
    }
}

impl Drop for Replication {
    fn drop(&mut self) {
        // Not shut down: stop the task (it still makes its final sync).
        if let Some(r) = self.running.take() {
            let _ = r.stop.send(());
            r.scheduler.close();
            if let Some(w) = r.watchdog {
                w.abort();
            }
        }
    }
}

/// Signals `failed` once the replicator's last sync has been failing
/// without a success for `grace`.
async fn watchdog(
    status: Arc<Mutex<ReplicatorStatus>>,
    grace: Duration,
    failed: watch::Sender<Option<String>>,
) {
    let tick = (grace / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut failing_since: Option<Instant> = None;
    loop {
        tokio::time::sleep(tick).await;
        let err = status.lock().ok().and_then(|s| s.last_error.clone());
        match err {
            None => failing_since = None,
            Some(e) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= grace {
                    tracing::error!(error = %e, ?grace, "replication required and failing: giving up");
                    let _ = failed.send(Some(e));
                    return;
                }
            }
        }
    }
}

/// How much older the local state (`local`) is than the replica's newest
/// state, by the replica files' creation times; `None` if the replica no
/// longer holds a file at or before `local` to compare with.
fn staleness(files: &[FileInfo], local: TxId) -> Option<Duration> {
    let newest = first_reached(files.iter())?;
    let at_local = first_reached(files.iter().filter(|f| f.max_txid <= local))?;
    let d = newest.duration_since(at_local);
    Some(Duration::try_from(d).unwrap_or_default())
}

/// When the replica first held the highest TXID among `files` (a later
/// compaction of the same range does not count).
fn first_reached<'a>(files: impl Iterator<Item = &'a FileInfo>) -> Option<jiff::Timestamp> {
    files
        .min_by_key(|f| (std::cmp::Reverse(f.max_txid), f.created_at))
        .map(|f| f.created_at)
}
