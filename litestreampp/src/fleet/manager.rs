//! The running fleet: a registry of every discovered database, a write
//! detector, and the hot and cold tiers.
//!
//! - **Cold** databases are registry entries and nothing else: a path, a
//!   tier and a 64-bit signature of the database and WAL files as they were
//!   left (size, mtime, inode). No task, timer, file handle or request.
//! - The **write detector** (inotify through `notify`, one watch per
//!   directory) looks a changed `x.db-wal` or `x.db` up in the registry. A
//!   hot database gets a nudge for its next sync; a cold one whose files no
//!   longer match its signature (our own checkpoint's events do match) is
//!   sent to the manager to be promoted.
//! - **Hot** databases run a [`Replicator`] with a shared upload limit and
//!   compaction scheduler. After `hot_idle_timeout` without writes, or when
//!   the hot set is over `max_hot` (least recently written first), one is
//!   demoted: final sync, upload, and a seal (checkpoint so the WAL is
//!   empty, and a record that lets the next promotion continue without a
//!   snapshot). A demotion that could not seal keeps the database hot.
//! - The **backlog** gives every database that is not known to be backed
//!   up (new, or changed while we were not running) one sync, upload and
//!   seal, at most `backlog_rate` per second and `backlog_workers` at once.
//! - A **state file** records the signature of each cold database, so a
//!   restart compares two `stat`s per database instead of opening it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use dashmap::DashMap;
use litestreampp_core::client::ClientPool;
use litestreampp_core::client::limit::UploadLimited;
use litestreampp_core::dbfile::{self, FileSig};
use litestreampp_core::replica::Replica;
use litestreampp_core::replicator::{Replicator, ReplicatorOptions, ReplicatorStatus};
use litestreampp_core::scheduler::Scheduler;
use notify::{EventKind, RecursiveMode, Watcher};
use serde::Serialize;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinSet;

use super::discover::{Patterns, is_sqlite};
use super::template::Template;

/// Tuning of the fleet.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// A hot database without writes for this long is demoted.
    pub hot_idle_timeout: Duration,
    /// At most this many hot databases (each holds a SQLite connection).
    pub max_hot: usize,
    /// Backlog syncs started per second.
    pub backlog_rate: u32,
    /// Backlog syncs running at once.
    pub backlog_workers: usize,
    /// Uploads in flight at once, over all databases.
    pub max_uploads: usize,
    /// Compaction jobs running at once, over all databases.
    pub compaction_workers: usize,
    /// Poll every registered database's files at this interval instead of
    /// (or when inotify is unavailable, in addition to) change
    /// notification.
    pub poll_interval: Option<Duration>,
    /// Walk the pattern roots again and compare every signature at this
    /// interval: a safety net for missed events.
    pub rescan_interval: Duration,
    /// Where the state file lives.
    pub state_dir: PathBuf,
    pub replicator: ReplicatorOptions,
}

impl FleetOptions {
    pub fn new(state_dir: PathBuf) -> Self {
        FleetOptions {
            hot_idle_timeout: Duration::from_secs(30),
            max_hot: 1000,
            backlog_rate: 500,
            backlog_workers: 8,
            max_uploads: 64,
            compaction_workers: 4,
            poll_interval: None,
            rescan_interval: Duration::from_secs(600),
            state_dir,
            replicator: ReplicatorOptions::default(),
        }
    }
}

/// Where a database is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Backed up and sealed; nothing runs for it.
    Cold,
    /// Waiting in the backlog for its first (or a catch-up) sync.
    Queued,
    /// A replicator runs for it.
    Hot,
    /// Its last attempt failed; retried on the next write or rescan.
    Failed,
}

/// A hot database's handle, shared with the write detector.
#[derive(Debug)]
struct Hot {
    changed: Arc<Notify>,
    stop: Arc<Notify>,
    /// Milliseconds since the fleet's epoch of the last write seen.
    last_write: AtomicU64,
    status: Arc<Mutex<ReplicatorStatus>>,
    backlog: bool,
    stopping: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
struct Entry {
    tier: Tier,
    /// Files as we left them (see [`FileSig::digest`]); 0 = unknown.
    sig: u64,
    hot: Option<Arc<Hot>>,
}

enum Ev {
    /// A cold database's files changed.
    Write(PathBuf),
    /// A file appeared (or was renamed into place).
    Created(PathBuf),
    /// A file or directory went away.
    Removed(PathBuf),
    /// A directory appeared: watch it and look inside.
    NewDir(PathBuf),
    /// Events were lost: compare every database's files.
    Rescan,
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

/// A hot database in the status report.
#[derive(Debug, Clone, Serialize)]
pub struct HotStatus {
    pub path: String,
    pub local_txid: String,
    pub replica_txid: String,
    /// Seconds since the last write seen.
    pub idle_seconds: f64,
    /// Seconds since a write was first seen that is not in the replica yet.
    pub lag_seconds: f64,
    pub last_error: Option<String>,
}

/// What `litestreampp status` shows.
#[derive(Debug, Clone, Serialize, Default)]
pub struct FleetStatus {
    pub databases: usize,
    pub hot: usize,
    pub cold: usize,
    pub queued: usize,
    pub failed: usize,
    pub promotions: u64,
    pub demotions: u64,
    pub backlog_done: u64,
    pub errors: u64,
    pub retired: u64,
    pub watching: bool,
    pub uptime_seconds: f64,
    /// Hot databases whose final sync failed at shutdown.
    pub shutdown_errors: u64,
    /// Hot databases, most lagging first (at most 20).
    pub most_lagging: Vec<HotStatus>,
    /// The most recent errors (at most 50), newest first.
    pub recent_errors: Vec<FleetError>,
}

/// State shared by the manager, the write detector and status readers.
#[derive(Debug)]
pub struct Shared {
    /// The registry, keyed by the path relative to `root`: short paths
    /// (up to 24 bytes) are stored inline, so 100,000 cold databases are
    /// one hash table and no other allocation.
    dbs: DashMap<Key, Entry>,
    /// The directory every pattern's root is under.
    root: PathBuf,
    patterns: Patterns,
    epoch: Instant,
    pub counters: Counters,
    errors: Mutex<VecDeque<FleetError>>,
    watching: std::sync::atomic::AtomicBool,
}

/// A registry key: a database's path relative to [`Shared::root`].
type Key = compact_str::CompactString;

/// A FIFO of registry keys in one buffer (NUL-separated; paths never hold
/// NUL). Retired databases are not removed: popping checks the registry.
#[derive(Debug, Default)]
struct KeyQueue {
    buf: String,
    head: usize,
    len: usize,
}

impl KeyQueue {
    fn push(&mut self, k: &str) {
        self.buf.push_str(k);
        self.buf.push('\0');
        self.len += 1;
    }

    fn pop(&mut self) -> Option<Key> {
        let rest = &self.buf[self.head..];
        let end = rest.find('\0')?;
        let k = Key::from(&rest[..end]);
        self.head += end + 1;
        self.len -= 1;
        if self.head == self.buf.len() {
            self.buf.clear();
            self.head = 0;
        } else if self.head > 1 << 16 && self.head > self.buf.len() / 2 {
            self.buf.drain(..self.head);
            self.head = 0;
        }
        Some(k)
    }

    fn len(&self) -> usize {
        self.len
    }

    fn shrink_to_fit(&mut self) {
        self.buf.shrink_to_fit();
    }
}

impl Shared {
    /// The registry key of `p` (None outside the root, or not UTF-8).
    fn key(&self, p: &Path) -> Option<Key> {
        self.key_str(p).map(Key::from)
    }

    fn key_str<'a>(&self, p: &'a Path) -> Option<&'a str> {
        p.strip_prefix(&self.root).ok()?.to_str()
    }

    /// The path of a registry key.
    fn path(&self, k: &str) -> PathBuf {
        self.root.join(k)
    }

    fn get(&self, p: &Path) -> Option<dashmap::mapref::one::Ref<'_, Key, Entry>> {
        self.dbs.get(&self.key(p)?)
    }

    fn get_mut(&self, p: &Path) -> Option<dashmap::mapref::one::RefMut<'_, Key, Entry>> {
        self.dbs.get_mut(&self.key(p)?)
    }

    fn contains(&self, p: &Path) -> bool {
        self.key(p).is_some_and(|k| self.dbs.contains_key(&k))
    }

    /// Registers `p`; false if it cannot be (a name that is not UTF-8).
    fn insert(&self, p: &Path, e: Entry) -> bool {
        match self.key(p) {
            Some(k) => {
                self.dbs.insert(k, e);
                true
            }
            None => {
                tracing::warn!(db = %p.display(), "skipping a database whose path is not UTF-8");
                false
            }
        }
    }

    /// The state file's text, `<sig hex> <path>` per cold database, built
    /// in one buffer: no allocation per database (at 100,000 databases,
    /// per-entry paths left megabytes of freed memory behind each save).
    fn state_text(&self) -> String {
        use std::fmt::Write;
        let root = self.root.to_string_lossy();
        let sep = if root.ends_with('/') { "" } else { "/" };
        let mut out = String::with_capacity(64 + self.dbs.len() * (root.len() + 48));
        let _ = writeln!(out, "{STATE_HEADER}"); // writing to a String cannot fail
        for e in &self.dbs {
            // Paths with a newline cannot be recorded; they are simply
            // checked again at the next start.
            if e.tier == Tier::Cold && e.sig != 0 && !e.key().contains('\n') {
                let _ = writeln!(out, "{:016x} {root}{sep}{}", e.sig, e.key());
            }
        }
        out
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn record_error(&self, path: &Path, error: &str) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("litestreampp_fleet_errors_total").increment(1);
        tracing::error!(db = %path.display(), error, "database error");
        let mut q = self
            .errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if q.len() >= 50 {
            q.pop_back();
        }
        q.push_front(FleetError {
            path: path.display().to_string(),
            error: error.to_string(),
            at: jiff::Timestamp::now().to_string(),
        });
    }

    /// The fleet as it is now.
    pub fn status(&self) -> FleetStatus {
        let mut st = FleetStatus {
            databases: self.dbs.len(),
            ..FleetStatus::default()
        };
        let now = self.now_ms();
        let mut hot = Vec::new();
        for e in &self.dbs {
            match e.tier {
                Tier::Cold => st.cold += 1,
                Tier::Queued => st.queued += 1,
                Tier::Failed => st.failed += 1,
                Tier::Hot => {
                    st.hot += 1;
                    if let Some(h) = &e.hot {
                        let s = h.status.lock().map(|s| s.clone()).unwrap_or_default();
                        let lag = s
                            .pending_since
                            .map(|t| t.elapsed().as_secs_f64())
                            .unwrap_or(0.0);
                        hot.push(HotStatus {
                            path: self.path(e.key()).display().to_string(),
                            local_txid: s.local_txid.to_string(),
                            replica_txid: s.replica_txid.to_string(),
                            idle_seconds: now.saturating_sub(h.last_write.load(Ordering::Relaxed))
                                as f64
                                / 1000.0,
                            lag_seconds: lag,
                            last_error: s.last_error,
                        });
                    }
                }
            }
        }
        hot.sort_by(|a, b| b.lag_seconds.total_cmp(&a.lag_seconds));
        hot.truncate(20);
        st.most_lagging = hot;
        let c = &self.counters;
        st.promotions = c.promotions.load(Ordering::Relaxed);
        st.demotions = c.demotions.load(Ordering::Relaxed);
        st.backlog_done = c.backlog_done.load(Ordering::Relaxed);
        st.errors = c.errors.load(Ordering::Relaxed);
        st.retired = c.retired.load(Ordering::Relaxed);
        st.watching = self.watching.load(Ordering::Relaxed);
        st.uptime_seconds = self.epoch.elapsed().as_secs_f64();
        st.recent_errors = self
            .errors
            .lock()
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default();
        st
    }
}

/// The database a changed file belongs to: `x.db-wal` → `x.db`.
fn db_of(p: &Path) -> Option<PathBuf> {
    let name = p.file_name()?.to_str()?;
    dbfile::written_db_name(name).map(|db| p.with_file_name(db))
}

/// Paths the write detector ignores (meta directories, temporary files).
fn skipped(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(super::discover::skip_name)
}

/// The write detector's callback: runs on notify's thread.
fn on_event(shared: &Shared, tx: &mpsc::UnboundedSender<Ev>, res: notify::Result<notify::Event>) {
    let ev = match res {
        Ok(ev) => ev,
        Err(e) => {
            tracing::warn!(error = %e, "change notification error; rescanning");
            let _ = tx.send(Ev::Rescan); // the manager is gone only at shutdown
            return;
        }
    };
    if ev.need_rescan() {
        let _ = tx.send(Ev::Rescan); // queue overflow: events were dropped
        return;
    }
    match ev.kind {
        EventKind::Access(_) => {}
        EventKind::Create(notify::event::CreateKind::Folder) => {
            for p in ev.paths {
                if !skipped(&p) {
                    let _ = tx.send(Ev::NewDir(p));
                }
            }
        }
        EventKind::Remove(_) => {
            // A WAL, shm or journal going away is SQLite closing; the
            // database's own removal is what retires it.
            for p in ev.paths {
                if db_of(&p).is_some_and(|db| db == p) {
                    let _ = tx.send(Ev::Removed(p));
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
                    Ev::Removed(p)
                } else if p.is_dir() {
                    Ev::NewDir(p)
                } else {
                    Ev::Created(p)
                });
            }
        }
        _ => {
            for p in &ev.paths {
                let Some(db) = db_of(p) else { continue };
                match shared.get(&db) {
                    Some(e) => match (&e.hot, e.tier) {
                        (Some(h), _) => {
                            h.last_write.store(shared.now_ms(), Ordering::Relaxed);
                            h.changed.notify_one();
                        }
                        (None, Tier::Cold | Tier::Failed) => {
                            // Our own seal's events arrive after the fact:
                            // only a real change moves the signature.
                            let sig = FileSig::of(&db).digest();
                            if sig != e.sig {
                                drop(e);
                                let _ = tx.send(Ev::Write(db));
                            }
                        }
                        (None, _) => {}
                    },
                    None if matches!(ev.kind, EventKind::Create(_) | EventKind::Modify(_)) => {
                        let _ = tx.send(Ev::Created(db));
                    }
                    None => {}
                }
            }
        }
    }
}

/// What a replicator task returns: its database, its handle, how it ended.
type Finished = (
    PathBuf,
    Arc<Hot>,
    litestreampp_core::Result<ReplicatorStatus>,
);
type Done = std::result::Result<Finished, tokio::task::JoinError>;

/// Everything the manager task owns.
struct Manager {
    shared: Arc<Shared>,
    /// One per pattern, in order.
    templates: Vec<Template>,
    opts: FleetOptions,
    pool: ClientPool,
    uploads: Arc<Semaphore>,
    scheduler: Scheduler,
    tasks: JoinSet<Finished>,
    hot: HashMap<PathBuf, Arc<Hot>>,
    /// Registry keys of databases waiting for their first backup.
    backlog: KeyQueue,
    backlog_running: usize,
    /// Hot databases outside the backlog (each holds a connection).
    live_hot: usize,
    /// Written cold databases waiting for a slot under `max_hot`.
    waiting: VecDeque<PathBuf>,
    waiting_set: HashSet<PathBuf>,
    backlog_tokens: f64,
    watcher: Option<notify::RecommendedWatcher>,
    watched: HashSet<PathBuf>,
    polling: bool,
    state_dirty: bool,
    /// Replicators finished since memory was last trimmed.
    trim_due: bool,
    last_finished: Instant,
}

/// Runs the fleet until `shutdown` completes; then every hot database
/// gets its final sync and seal, and the state file is written.
pub async fn run(
    patterns: Patterns,
    templates: Vec<Template>,
    opts: FleetOptions,
    shutdown: impl std::future::Future<Output = ()>,
    started: impl FnOnce(Arc<Shared>),
) -> Result<FleetStatus> {
    let shared = Arc::new(Shared {
        dbs: DashMap::new(),
        root: patterns.common_root(),
        patterns,
        epoch: Instant::now(),
        counters: Counters::default(),
        errors: Mutex::new(VecDeque::new()),
        watching: std::sync::atomic::AtomicBool::new(false),
    });
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut m = Manager {
        shared: shared.clone(),
        templates,
        uploads: Arc::new(Semaphore::new(opts.max_uploads.max(1))),
        scheduler: Scheduler::start(opts.compaction_workers),
        opts,
        pool: ClientPool::default(),
        tasks: JoinSet::new(),
        hot: HashMap::new(),
        backlog: KeyQueue::default(),
        backlog_running: 0,
        live_hot: 0,
        waiting: VecDeque::new(),
        waiting_set: HashSet::new(),
        backlog_tokens: 0.0,
        watcher: None,
        watched: HashSet::new(),
        polling: false,
        state_dirty: false,
        trim_due: false,
        last_finished: Instant::now(),
    };
    fsutil_create_dir(&m.opts.state_dir)?;
    let t0 = Instant::now();
    m.start_watcher(tx.clone());
    let dirs = m.initial_scan().await?;
    m.watch_dirs(dirs);
    let st = m.shared.status();
    tracing::info!(
        databases = st.databases,
        cold = st.cold,
        queued = st.queued,
        watching = st.watching,
        seconds = t0.elapsed().as_secs_f64(),
        "fleet started"
    );
    eprintln!(
        "fleet: {} databases ({} backed up, {} to back up) in {:.2}s; {}",
        st.databases,
        st.cold,
        st.queued,
        t0.elapsed().as_secs_f64(),
        if st.watching {
            "watching for writes"
        } else {
            "polling for writes"
        }
    );
    started(shared.clone());
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_poll = Instant::now();
    let mut last_rescan = Instant::now();
    let mut last_save = Instant::now();
    let mut last_trim = Instant::now();
    super::memory::trim(); // discovery's temporary memory
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(ev) = rx.recv() => m.handle(ev).await,
            Some(done) = m.tasks.join_next(), if !m.tasks.is_empty() => {
                m.finished(done);
                m.start_waiting();
                m.start_backlog();
            }
            _ = tick.tick() => {
                m.demote_idle();
                m.run_backlog();
                let poll_every = m.opts.poll_interval.or(if m.polling { Some(Duration::from_secs(5)) } else { None });
                if poll_every.is_some_and(|p| last_poll.elapsed() >= p) {
                    last_poll = Instant::now();
                    m.compare_signatures().await;
                }
                if last_rescan.elapsed() >= m.opts.rescan_interval {
                    last_rescan = Instant::now();
                    m.rescan().await;
                }
                if m.state_dirty && last_save.elapsed() >= Duration::from_secs(10) {
                    last_save = Instant::now();
                    m.save_state().await;
                }
                // Bursts of syncs leave free memory in malloc's arenas:
                // give it back once things settle (5 s without a replicator
                // finishing), or every 5 minutes under constant churn.
                let settled = m.last_finished.elapsed() >= Duration::from_secs(5)
                    && last_trim.elapsed() >= Duration::from_secs(30);
                if m.trim_due && (settled || last_trim.elapsed() >= Duration::from_secs(300)) {
                    last_trim = Instant::now();
                    m.trim_due = false;
                    m.backlog.shrink_to_fit();
                    super::memory::trim();
                }
                m.publish_gauges();
            }
        }
    }
    // Final sync and seal for every hot database.
    tracing::info!(
        hot = m.hot.len(),
        "shutting down: final sync of hot databases"
    );
    m.watcher = None;
    for h in m.hot.values() {
        h.stopping.store(true, Ordering::Relaxed);
        h.stop.notify_one();
    }
    let before = m.shared.counters.errors.load(Ordering::Relaxed);
    while let Some(done) = m.tasks.join_next().await {
        m.finished_at_shutdown(done);
    }
    m.save_state().await;
    m.scheduler.close();
    m.publish_gauges();
    let mut st = m.shared.status();
    st.shutdown_errors = st.errors - before;
    Ok(st)
}

fn fsutil_create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("create state directory {}", dir.display()))
}

const STATE_FILE: &str = "fleet-state";

impl Manager {
    fn state_path(&self) -> PathBuf {
        self.opts.state_dir.join(STATE_FILE)
    }

    /// Discovers every database, registers it cold (its files match the
    /// state file) or queued, and returns the directories to watch.
    async fn initial_scan(&mut self) -> Result<Vec<PathBuf>> {
        let patterns = self.shared.patterns.clone();
        let state_path = self.state_path();
        let (found, dirs, saved) = tokio::task::spawn_blocking(move || {
            let (found, dirs) = patterns.discover_with_dirs()?;
            let saved = load_state(&state_path);
            Ok::<_, anyhow::Error>((found, dirs, saved))
        })
        .await??;
        let shared = self.shared.clone();
        let queued = tokio::task::spawn_blocking(move || {
            use rayon::prelude::*;
            let queued: Vec<bool> = found
                .par_iter()
                .map(|f| {
                    let sig = FileSig::of(&f.path).digest();
                    let cold = saved.get(&f.path).is_some_and(|s| *s == sig && sig != 0);
                    let tier = if cold { Tier::Cold } else { Tier::Queued };
                    let entry = Entry {
                        tier,
                        sig: if cold { sig } else { 0 },
                        hot: None,
                    };
                    shared.insert(&f.path, entry) && !cold
                })
                .collect();
            // The queue is one buffer: no allocation per queued database
            // next to the registry's keys (freed piecemeal as the backlog
            // drains, they would leave its memory fragmented).
            let mut q = KeyQueue::default();
            for (f, _) in found.iter().zip(queued).filter(|(_, q)| *q) {
                if let Some(k) = shared.key_str(&f.path) {
                    q.push(k);
                }
            }
            q
        })
        .await?;
        self.backlog = queued;
        Ok(dirs)
    }

    fn start_watcher(&mut self, tx: mpsc::UnboundedSender<Ev>) {
        if self.opts.poll_interval.is_some() {
            self.polling = true;
            return;
        }
        let shared = self.shared.clone();
        match notify::recommended_watcher(move |res| on_event(&shared, &tx, res)) {
            Ok(w) => {
                self.watcher = Some(w);
                self.shared.watching.store(true, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start change notification; polling every 5s instead");
                self.polling = true;
            }
        }
    }

    fn watch_dirs(&mut self, dirs: Vec<PathBuf>) {
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        for d in dirs {
            if self.watched.contains(&d) {
                continue;
            }
            match w.watch(&d, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(d);
                }
                Err(e) => {
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
                    self.shared.watching.store(false, Ordering::Relaxed);
                    return;
                }
            }
        }
    }

    async fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Write(p) => self.promote(&p, false),
            Ev::Created(p) => self.register(p),
            Ev::Removed(p) => self.removed(&p),
            Ev::NewDir(d) => {
                let patterns = self.shared.patterns.clone();
                let dir = d.clone();
                let r = tokio::task::spawn_blocking(move || patterns.discover_under(&dir)).await;
                if let Ok((found, dirs)) = r {
                    let mut all = vec![d];
                    all.extend(dirs);
                    self.watch_dirs(all);
                    for f in found {
                        self.register(f.path);
                    }
                }
            }
            Ev::Rescan => self.rescan().await,
        }
    }

    /// A new file: registered and queued if it is a database of ours.
    fn register(&mut self, p: PathBuf) {
        if self.shared.contains(&p) {
            // Written to (or replaced) while registered.
            let changed = self
                .shared
                .get(&p)
                .is_some_and(|e| e.hot.is_none() && FileSig::of(&p).digest() != e.sig);
            if changed {
                self.promote(&p, false);
            }
            return;
        }
        if self.shared.patterns.matches(&p).is_none() || !p.is_file() || !is_sqlite(&p) {
            return; // not ours, or not a database yet (SQLite writes the header later)
        }
        if crate::fleet::discover::is_empty_file(&p) {
            return; // created but not written yet: its first write registers it
        }
        let entry = Entry {
            tier: Tier::Queued,
            sig: 0,
            hot: None,
        };
        if let Some(k) = self
            .shared
            .key(&p)
            .filter(|_| self.shared.insert(&p, entry))
        {
            tracing::info!(db = %p.display(), "new database");
            self.backlog.push(&k);
        }
    }

    fn removed(&mut self, p: &Path) {
        // A removed directory takes its databases with it.
        let gone: Vec<PathBuf> = if self.shared.contains(p) {
            vec![p.to_path_buf()]
        } else if !self.watched.contains(p) {
            return; // neither a database nor a directory of ours
        } else {
            self.watched.retain(|d| !d.starts_with(p));
            self.shared
                .dbs
                .iter()
                .map(|e| self.shared.path(e.key()))
                .filter(|path| path.starts_with(p))
                .collect()
        };
        for db in gone {
            if db.exists() {
                continue; // replaced in place (renamed over): still ours
            }
            if let Some(h) = self.hot.get(&db) {
                // Its replicator stops and reports the missing file.
                h.stopping.store(true, Ordering::Relaxed);
                h.stop.notify_one();
                continue;
            }
            self.retire(&db);
        }
    }

    fn retire(&mut self, db: &Path) {
        let Some(key) = self.shared.key(db) else {
            return;
        };
        if self.shared.dbs.remove(&key).is_some() {
            tracing::info!(db = %db.display(), "database removed; retired");
            self.shared.counters.retired.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("litestreampp_databases_retired_total").increment(1);
            if self.waiting_set.remove(db) {
                self.waiting.retain(|b| b != db);
            }
            self.state_dirty = true;
        }
    }

    /// Makes `p` hot: a replicator with its own change signal. With
    /// `backlog`, it is asked to stop at once: one sync, upload and seal.
    fn promote(&mut self, p: &Path, backlog: bool) {
        let Some(mut e) = self.shared.get_mut(p) else {
            return;
        };
        if let Some(h) = &e.hot {
            h.last_write.store(self.shared.now_ms(), Ordering::Relaxed);
            h.changed.notify_one();
            return;
        }
        if !backlog && self.live_hot >= self.opts.max_hot {
            // No free connection slot: wait for one, and demote the least
            // recently written to make it.
            drop(e);
            if self.waiting_set.insert(p.to_path_buf()) {
                self.waiting.push_back(p.to_path_buf());
            }
            self.demote_idle();
            return;
        }
        let Some((source, rel)) = self.shared.patterns.matches_at(p) else {
            return;
        };
        let Some(template) = self.templates.get(source) else {
            return;
        };
        let client = match template.open(&self.pool, &rel) {
            Ok(c) => c,
            Err(err) => {
                e.tier = Tier::Failed;
                drop(e);
                self.shared.record_error(p, &format!("{err:#}"));
                return;
            }
        };
        let client = Arc::new(UploadLimited::new(client, self.uploads.clone()));
        let mut r = Replicator::new(p, Replica::new(client), self.opts.replicator.clone());
        if !backlog {
            r = r.with_scheduler(self.scheduler.clone());
        }
        let changed = Arc::new(Notify::new());
        r.set_change_signal(changed.clone());
        r.set_seal_on_stop(true);
        let hot = Arc::new(Hot {
            changed,
            stop: Arc::new(Notify::new()),
            last_write: AtomicU64::new(self.shared.now_ms()),
            status: r.status_handle(),
            backlog,
            stopping: std::sync::atomic::AtomicBool::new(backlog),
        });
        if backlog {
            hot.stop.notify_one();
            self.backlog_running += 1;
        } else {
            self.live_hot += 1;
            self.shared
                .counters
                .promotions
                .fetch_add(1, Ordering::Relaxed);
            metrics::counter!("litestreampp_promotions_total").increment(1);
        }
        e.tier = Tier::Hot;
        e.hot = Some(hot.clone());
        drop(e);
        self.hot.insert(p.to_path_buf(), hot.clone());
        let stop = hot.stop.clone();
        let path = p.to_path_buf();
        // Boxed, so the task holds the replicator's future once (a future
        // captured by an async block and awaited in it is stored twice).
        let run = Box::pin(r.run(async move { stop.notified().await }));
        self.tasks.spawn(async move { (path, hot, run.await) });
    }

    /// A replicator stopped: the database goes cold if it was sealed and
    /// nothing was written since, else it is promoted again.
    fn finished(&mut self, done: Done) {
        let (path, hot, r) = match done {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "replicator task failed");
                return;
            }
        };
        self.hot.remove(&path);
        self.trim_due = true;
        self.last_finished = Instant::now();
        if hot.backlog {
            self.backlog_running -= 1;
            self.shared
                .counters
                .backlog_done
                .fetch_add(1, Ordering::Relaxed);
        } else {
            self.live_hot -= 1;
            self.shared
                .counters
                .demotions
                .fetch_add(1, Ordering::Relaxed);
            metrics::counter!("litestreampp_demotions_total").increment(1);
        }
        match r {
            Ok(st) => {
                let now = FileSig::of(&path);
                let sealed = st.sealed.is_some_and(|s| s == now);
                let registered = match self.shared.get_mut(&path) {
                    Some(mut e) => {
                        e.hot = None;
                        e.tier = if sealed { Tier::Cold } else { Tier::Queued };
                        e.sig = if sealed { now.digest() } else { 0 };
                        true
                    }
                    None => false,
                };
                if sealed {
                    self.state_dirty = true;
                } else if registered {
                    // Written after the seal, or the seal was refused (a
                    // reader pins the WAL): hot again, and another try
                    // after the next idle period.
                    tracing::debug!(db = %path.display(), "not sealed; promoted again");
                    self.promote(&path, false);
                }
            }
            Err(err) => {
                if !path.exists() {
                    self.retire(&path);
                    return;
                }
                if let Some(mut e) = self.shared.get_mut(&path) {
                    e.hot = None;
                    e.tier = Tier::Failed;
                    e.sig = FileSig::of(&path).digest();
                }
                self.shared.record_error(&path, &err.to_string());
            }
        }
    }

    fn finished_at_shutdown(&mut self, done: Done) {
        let Ok((path, _hot, r)) = done else { return };
        self.hot.remove(&path);
        let Some(mut e) = self.shared.get_mut(&path) else {
            return;
        };
        e.hot = None;
        match r {
            Ok(st) if st.sealed.is_some_and(|s| s == FileSig::of(&path)) => {
                e.tier = Tier::Cold;
                e.sig = FileSig::of(&path).digest();
            }
            Ok(_) => {
                e.tier = Tier::Queued;
                e.sig = 0;
            }
            Err(err) => {
                e.tier = Tier::Failed;
                e.sig = 0;
                drop(e);
                self.shared.record_error(&path, &err.to_string());
            }
        }
        self.state_dirty = true;
    }

    /// Demotes hot databases idle for `hot_idle_timeout`, and the least
    /// recently written while over `max_hot`.
    fn demote_idle(&mut self) {
        let now = self.shared.now_ms();
        let idle_ms = self.opts.hot_idle_timeout.as_millis() as u64;
        let mut active: Vec<(u64, &Arc<Hot>)> = Vec::new();
        for h in self.hot.values() {
            if h.stopping.load(Ordering::Relaxed) {
                continue;
            }
            let last = h.last_write.load(Ordering::Relaxed);
            if now.saturating_sub(last) >= idle_ms {
                h.stopping.store(true, Ordering::Relaxed);
                h.stop.notify_one();
            } else {
                active.push((last, h));
            }
        }
        // Databases waiting for a slot count as active: the least
        // recently written make room for them.
        let demand = active.len() + self.waiting.len();
        if demand > self.opts.max_hot {
            active.sort_by_key(|(last, _)| *last);
            let over = demand - self.opts.max_hot;
            for (_, h) in active.into_iter().take(over) {
                h.stopping.store(true, Ordering::Relaxed);
                h.stop.notify_one();
            }
        }
    }

    /// Promotes databases that waited for a slot, while slots are free.
    fn start_waiting(&mut self) {
        while self.live_hot < self.opts.max_hot {
            let Some(p) = self.waiting.pop_front() else {
                break;
            };
            self.waiting_set.remove(&p);
            self.promote(&p, false);
        }
    }

    /// Refills the backlog's rate budget (every tick) and starts what it
    /// allows.
    fn run_backlog(&mut self) {
        let rate = f64::from(self.opts.backlog_rate.max(1));
        self.backlog_tokens = (self.backlog_tokens + rate / 10.0).min((rate / 10.0).max(1.0));
        self.start_backlog();
    }

    /// Starts backlog syncs within the rate and worker limits.
    fn start_backlog(&mut self) {
        while self.backlog_tokens >= 1.0 && self.backlog_running < self.opts.backlog_workers {
            let Some(k) = self.backlog.pop() else {
                break;
            };
            let queued = self
                .shared
                .dbs
                .get(&k)
                .is_some_and(|e| e.tier == Tier::Queued && e.hot.is_none());
            if !queued {
                continue;
            }
            self.backlog_tokens -= 1.0;
            let p = self.shared.path(&k);
            self.promote(&p, true);
        }
    }

    /// Compares every cold database's files with its signature and
    /// promotes the changed ones (polling mode, and after lost events).
    async fn compare_signatures(&mut self) {
        let shared = self.shared.clone();
        let changed = tokio::task::spawn_blocking(move || {
            // One path at a time: a list of every cold database's path
            // first would be 100,000 allocations freed together, memory
            // the process then keeps.
            shared
                .dbs
                .iter()
                .filter(|e| e.hot.is_none() && matches!(e.tier, Tier::Cold | Tier::Failed))
                .filter_map(|e| {
                    let p = shared.path(e.key());
                    (FileSig::of(&p).digest() != e.sig).then_some(p)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for p in changed {
            if p.exists() {
                self.promote(&p, false);
            } else {
                self.retire(&p);
            }
        }
    }

    /// Walks the roots again: new databases are registered, vanished ones
    /// retired, changed ones promoted.
    async fn rescan(&mut self) {
        let patterns = self.shared.patterns.clone();
        let Ok(Ok((found, dirs))) =
            tokio::task::spawn_blocking(move || patterns.discover_with_dirs()).await
        else {
            return;
        };
        self.watch_dirs(dirs);
        let present: HashSet<PathBuf> = found.iter().map(|f| f.path.clone()).collect();
        let vanished: Vec<PathBuf> = self
            .shared
            .dbs
            .iter()
            .filter(|e| e.hot.is_none())
            .map(|e| self.shared.path(e.key()))
            .filter(|p| !present.contains(p))
            .collect();
        for p in vanished {
            self.retire(&p);
        }
        for f in found {
            self.register(f.path);
        }
        self.compare_signatures().await;
        self.trim_due = true; // the walk's memory
    }

    /// Writes the signature of every cold database (atomically).
    async fn save_state(&mut self) {
        self.state_dirty = false;
        let shared = self.shared.clone();
        let path = self.state_path();
        let r = tokio::task::spawn_blocking(move || save_state(&path, &shared.state_text())).await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.state_dirty = true;
                tracing::error!(error = %e, "cannot write the fleet state file");
            }
            Err(e) => tracing::error!(error = %e, "state file task failed"),
        }
    }

    fn publish_gauges(&self) {
        let (mut cold, mut queued, mut failed) = (0usize, 0usize, 0usize);
        // Counting cold entries walks the registry; at 100,000 entries
        // that is a few milliseconds, so it runs once a second at most.
        static LAST: AtomicU64 = AtomicU64::new(0);
        let now = self.shared.now_ms();
        if now.saturating_sub(LAST.load(Ordering::Relaxed)) < 1000 {
            return;
        }
        LAST.store(now, Ordering::Relaxed);
        for e in &self.shared.dbs {
            match e.tier {
                Tier::Cold => cold += 1,
                Tier::Queued => queued += 1,
                Tier::Failed => failed += 1,
                Tier::Hot => {}
            }
        }
        metrics::gauge!("litestreampp_databases", "tier" => "hot").set(self.hot.len() as f64);
        metrics::gauge!("litestreampp_databases", "tier" => "cold").set(cold as f64);
        metrics::gauge!("litestreampp_databases", "tier" => "queued").set(queued as f64);
        metrics::gauge!("litestreampp_databases", "tier" => "failed").set(failed as f64);
        metrics::gauge!("litestreampp_databases_total").set(self.shared.dbs.len() as f64);
        metrics::gauge!("litestreampp_backlog_length").set(self.backlog.len() as f64);
    }
}

/// Reads the state file: `<sig hex> <path>` per line. A missing or
/// damaged file means "nothing known": every database is queued.
fn load_state(path: &Path) -> HashMap<PathBuf, u64> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    let mut out = HashMap::new();
    let mut lines = text.lines();
    if lines.next() != Some(STATE_HEADER) {
        tracing::warn!(file = %path.display(), "unknown state file format; every database is checked again");
        return out;
    }
    for line in lines {
        let Some((sig, p)) = line.split_once(' ') else {
            continue;
        };
        if let Ok(sig) = u64::from_str_radix(sig, 16) {
            out.insert(PathBuf::from(p), sig);
        }
    }
    out
}

const STATE_HEADER: &str = "litestreampp fleet state v1";

fn save_state(path: &Path, text: &str) -> litestreampp_core::Result<()> {
    use std::io::Write;
    litestreampp_core::fsutil::write_atomic(path, |w| w.write_all(text.as_bytes()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn key_queue_is_a_fifo_in_one_buffer() {
        let mut q = KeyQueue::default();
        assert!(q.pop().is_none());
        for i in 0..20_000 {
            q.push(&format!("shard-{:03}/tenant-{i:06}.db", i % 100));
        }
        assert_eq!(q.len(), 20_000);
        for i in 0..15_000 {
            let k = q.pop().unwrap();
            assert_eq!(k, format!("shard-{:03}/tenant-{i:06}.db", i % 100));
        }
        // Compacted as it drains.
        assert!(q.head < q.buf.len() && q.buf.len() <= 10_000 * 27);
        q.push("last.db");
        let rest: Vec<Key> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(rest.len(), 5_001);
        assert_eq!(rest.last().unwrap(), "last.db");
        assert_eq!((q.len(), q.buf.len(), q.head), (0, 0, 0));
    }
}
