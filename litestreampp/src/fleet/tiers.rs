//! The fleet's loop: the one task that moves databases between tiers. It
//! owns the hot set, the backlog and the watches; it alone changes a
//! database's tier in the registry.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use litestreampp_core::client::{ClientPool, ReplicaClient};
use litestreampp_core::dbfile::FileSig;
use litestreampp_core::replica::Replica;
use litestreampp_core::replicator::{Replicator, ReplicatorStatus};
use litestreampp_core::scheduler::Scheduler;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinSet;

use super::backlog::{Backlog, KeyQueue};
use super::detector::{Change, Detector};
use super::hot_set::{Duty, Hot, HotSet};
use super::outage::Outage;
use super::patterns::Patterns;
use super::registry::{Entry, Key, Registry, Tier};
use super::requests::{FlushWaiters, Pending, Refused};
use super::skipped::{self, Examined, SkipReason, examine};
use super::state_file;
use super::status::{FleetStatus, FleetView};
use super::validation::Validation;
use super::{FleetOptions, ReplicaOpener, ReplicaTemplate};

/// Polling interval when change notification is unavailable.
const FALLBACK_POLL: Duration = Duration::from_secs(5);

/// What a replicator task returns: its database and how the run ended.
type Finished = (Key, litestreampp_core::Result<ReplicatorStatus>);

/// How a finished replicator left its database.
enum Settled {
    /// Sealed: cold, recorded in the state file.
    Sealed,
    /// Written after the seal, or the seal was refused (a reader pins the
    /// WAL): it needs another run.
    Unsealed,
    /// The run failed; retried on the next write or rescan.
    Failed,
    /// The database is gone: retired.
    Gone,
}

/// Everything the fleet's loop owns.
pub(super) struct Fleet {
    pub(super) registry: Arc<Registry>,
    /// One per pattern, in order.
    templates: Arc<[Box<dyn ReplicaTemplate>]>,
    /// Databases registered through the control socket, with their own
    /// replicas, and how to open one from a URL.
    pub(super) extras: std::collections::HashMap<Key, Arc<dyn ReplicaTemplate>>,
    pub(super) opener: Option<Arc<dyn ReplicaOpener>>,
    pub(super) opts: FleetOptions,
    pool: Arc<ClientPool>,
    scheduler: Scheduler,
    tasks: JoinSet<Finished>,
    pub(super) hot: HotSet,
    pub(super) backlog: Backlog,
    pub(super) detector: Detector,
    validation: Option<Validation>,
    /// Sync requests waiting for their database's replicator to start.
    pub(super) waiters: FlushWaiters,
    /// Stops and unregisters waiting for a replicator's final sync.
    pub(super) pending: std::collections::HashMap<Key, Pending>,
    /// Answers to send once the state file holds what they changed.
    pub(super) acks: Vec<(super::requests::Answer, Result<super::Outcome, Refused>)>,
    pub(super) state_dirty: bool,
    /// Replicators finished since memory was last trimmed.
    pub(super) trim_due: bool,
    /// Databases whose replica cannot be reached, and what waits.
    pub(super) outage: Outage,
    last_finished: Instant,
}

/// Runs the fleet until `shutdown` completes; then every hot database
/// gets its final sync and seal, and the state file is written. `started`
/// receives the view status readers use, once the initial scan is done.
pub async fn run(
    patterns: Patterns,
    templates: Vec<Box<dyn ReplicaTemplate>>,
    opener: Option<Arc<dyn ReplicaOpener>>,
    opts: FleetOptions,
    shutdown: impl std::future::Future<Output = ()>,
    started: impl FnOnce(FleetView),
) -> Result<FleetStatus> {
    litestreampp_core::fsutil::create_dir_all(&opts.state_dir)
        .with_context(|| format!("create state directory {}", opts.state_dir.display()))?;
    let registry = Arc::new(Registry::new(patterns));
    let hot = HotSet::new(opts.max_hot, opts.hot_idle_timeout);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let detector = Detector::start(
        registry.clone(),
        hot.view(),
        tx,
        opts.poll_interval.is_some(),
    );
    let uploads = Arc::new(Semaphore::new(opts.max_uploads.max(1)));
    let mut f = Fleet {
        registry: registry.clone(),
        templates: templates.into(),
        extras: Default::default(),
        opener,
        pending: Default::default(),
        acks: Vec::new(),
        scheduler: Scheduler::start(opts.compaction_workers),
        backlog: Backlog::new(opts.backlog_rate, opts.backlog_workers),
        waiters: FlushWaiters::default(),
        outage: Outage::new(opts.outage_report_interval),
        validation: opts
            .validation_interval
            .map(|i| Validation::new(i, opts.replicator.levels.max_level())),
        opts,
        pool: Arc::new(ClientPool::with_upload_limit(uploads.clone())),
        tasks: JoinSet::new(),
        hot,
        detector,
        state_dirty: false,
        trim_due: false,
        last_finished: Instant::now(),
    };
    let (requests, mut requested) = mpsc::unbounded_channel();
    let view = FleetView {
        registry,
        hot: f.hot.view(),
        requests,
    };
    let t0 = Instant::now();
    let dirs = f.initial_scan().await?;
    f.detector.watch(dirs);
    // A write between the scan's signatures and the watches is seen by
    // neither: compare once more now that writes are watched (one stat
    // per cold database; found by tests/soak.rs, a write landing as the
    // fleet restarted stayed unshipped until the database's next write).
    f.compare_signatures().await;
    let st = view.status();
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
    started(view.clone());
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_poll = Instant::now();
    let mut last_rescan = Instant::now();
    let mut last_save = Instant::now();
    let mut last_trim = Instant::now();
    let mut last_gauges: Option<Instant> = None;
    super::memory::trim(); // discovery's temporary memory
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(change) = rx.recv() => f.handle(change).await,
            Some(req) = requested.recv() => {
                f.request(req);
                f.send_acks().await;
            }
            Some(done) = f.tasks.join_next(), if !f.tasks.is_empty() => {
                f.finished(done);
                f.send_acks().await;
                f.start_waiting();
                f.start_backlog();
            }
            _ = tick.tick() => {
                f.hot.demote_idle();
                if let Some(v) = &mut f.validation {
                    let (registry, templates, pool) =
                        (f.registry.clone(), f.templates.clone(), f.pool.clone());
                    let hot = &f.hot;
                    v.tick(
                        move |k| replica_of(&registry, &templates, &pool, k),
                        |k| hot.get(k).is_some(),
                    );
                }
                f.backlog.tick();
                f.start_backlog();
                let poll_every = f.opts.poll_interval.or(f.detector.polling().then_some(FALLBACK_POLL));
                if poll_every.is_some_and(|p| last_poll.elapsed() >= p) {
                    last_poll = Instant::now();
                    f.compare_signatures().await;
                }
                if last_rescan.elapsed() >= f.opts.rescan_interval {
                    last_rescan = Instant::now();
                    f.rescan().await;
                }
                if f.state_dirty && last_save.elapsed() >= Duration::from_secs(10) {
                    last_save = Instant::now();
                    f.save_state().await;
                }
                // Bursts of syncs leave free memory in malloc's arenas:
                // give it back once things settle (5 s without a replicator
                // finishing), or every 5 minutes under constant churn.
                let settled = f.last_finished.elapsed() >= Duration::from_secs(5)
                    && last_trim.elapsed() >= Duration::from_secs(30);
                if f.trim_due && (settled || last_trim.elapsed() >= Duration::from_secs(300)) {
                    last_trim = Instant::now();
                    f.trim_due = false;
                    f.backlog.shrink_to_fit();
                    super::memory::trim();
                }
                if last_gauges.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    last_gauges = Some(Instant::now());
                    f.outage_tick();
                    view.publish_gauges(f.backlog.len());
                }
            }
        }
    }
    tracing::info!(
        hot = f.hot.len(),
        "shutting down: final sync of hot databases"
    );
    f.detector.stop();
    if let Some(v) = &mut f.validation {
        v.stop();
    }
    f.hot.stop_all(f.opts.replicator.shutdown_sync_timeout);
    let before = f.registry.counters.errors.load(Ordering::Relaxed);
    while let Some(done) = f.tasks.join_next().await {
        if let Some((key, hot, result)) = f.release(done) {
            f.settle(&key, &hot, result);
            f.conclude(&key, &hot);
        }
    }
    f.save_state().await;
    f.send_acks().await;
    f.scheduler.close();
    view.publish_gauges(f.backlog.len());
    let mut st = view.status();
    st.shutdown_errors = st.errors - before;
    Ok(st)
}

/// The replica client of `k` (as its replicator opens it, without the
/// upload limit), and its path.
fn replica_of(
    registry: &Registry,
    templates: &[Box<dyn ReplicaTemplate>],
    pool: &ClientPool,
    k: &Key,
) -> Option<(PathBuf, Arc<dyn ReplicaClient>)> {
    let path = registry.path(k);
    let (pattern, rel) = registry.patterns.matches_at(&path)?;
    let client = templates.get(pattern)?.open(pool, &rel).ok()?;
    Some((path, client))
}

impl Fleet {
    fn state_path(&self) -> PathBuf {
        self.opts.state_dir.join(state_file::STATE_FILE)
    }

    /// Discovers every database, registers it cold (its files match the
    /// state file) or queued, and returns the directories to watch.
    async fn initial_scan(&mut self) -> Result<Vec<PathBuf>> {
        let patterns = self.registry.patterns.clone();
        let state_path = self.state_path();
        let (discovered, saved) = tokio::task::spawn_blocking(move || {
            let discovered = patterns.discover_with_dirs()?;
            let saved = state_file::load(&state_path);
            Ok::<_, anyhow::Error>((discovered, saved))
        })
        .await??;
        let (found, dirs, _) = self.left_alone(discovered);
        for p in &saved.unregistered {
            self.registry.unregistered.insert(p.clone());
        }
        let extra_dirs = self.adopt_registered(&saved.registered);
        let mut found: Vec<PathBuf> = found
            .into_iter()
            .map(|f| f.path)
            .filter(|p| !self.registry.passes_by(p))
            .collect();
        found.extend(
            saved
                .registered
                .iter()
                .filter(|(p, _)| self.registry.registered.contains_key(p) && p.is_file())
                .map(|(p, _)| p.clone()),
        );
        let registry = self.registry.clone();
        let queue = tokio::task::spawn_blocking(move || {
            use rayon::prelude::*;
            let queued: Vec<bool> = found
                .par_iter()
                .map(|f| {
                    let sig = FileSig::of(f).digest();
                    let cold = saved.cold.get(f).is_some_and(|s| *s == sig && sig != 0);
                    let entry = if saved.stopped.contains(f) {
                        Entry {
                            tier: Tier::Stopped,
                            sig,
                        }
                    } else if cold {
                        Entry {
                            tier: Tier::Cold,
                            sig,
                        }
                    } else {
                        Entry::queued()
                    };
                    let queued = entry.tier == Tier::Queued;
                    registry.insert(f, entry).is_some() && queued
                })
                .collect();
            let mut q = KeyQueue::default();
            for (f, _) in found.iter().zip(queued).filter(|(_, q)| *q) {
                if let Some(k) = registry.key_str(f) {
                    q.push(k);
                }
            }
            q
        })
        .await?;
        self.backlog.set_queue(queue);
        let mut dirs = dirs;
        dirs.extend(extra_dirs);
        Ok(dirs)
    }

    async fn handle(&mut self, change: Change) {
        match change {
            Change::Written(p) => self.promote(&p),
            Change::Created(p) => self.register(p),
            Change::Removed(p) => self.removed(&p),
            Change::NewDir(d) if self.registry.patterns.walks(&d) => {
                let patterns = self.registry.patterns.clone();
                let dir = d.clone();
                let r = tokio::task::spawn_blocking(move || patterns.discover_under(&dir)).await;
                if let Ok(discovered) = r {
                    let (found, dirs, _) = self.left_alone(discovered);
                    let mut all = vec![d];
                    all.extend(dirs);
                    self.detector.watch(all);
                    for f in found {
                        self.register(f.path);
                    }
                }
            }
            Change::NewDir(_) => {}
            Change::Rescan => self.rescan().await,
        }
    }

    /// A file appeared: registered and queued if it is a database of ours;
    /// promoted if it is registered and was written (or replaced).
    pub(super) fn register(&mut self, p: PathBuf) {
        self.admit(p, false);
    }

    /// [`register`](Self::register); with `retry`, also a database left
    /// alone for what only opening it tells (a rescan tries it again).
    pub(super) fn admit(&mut self, p: PathBuf, retry: bool) {
        if let Some(e) = self
            .registry
            .key_str(&p)
            .and_then(|k| self.registry.entry(k))
        {
            if e.tier != Tier::Hot && FileSig::of(&p).digest() != e.sig {
                self.promote(&p);
            }
            return;
        }
        if self.registry.patterns.matches(&p).is_none()
            || self.registry.passes_by(&p)
            || !p.is_file()
        {
            return; // not ours
        }
        // Left alone until a rescan: what only opening it can tell (a lock,
        // a read-only filesystem) is not tried again at every write.
        let opened_before = self
            .registry
            .skipped
            .get(&p)
            .is_some_and(|r| r.value().known_only_by_opening());
        if opened_before && !retry {
            return;
        }
        match examine(&p) {
            // Created but not written yet: its first write registers it.
            Examined::NotYet => return,
            Examined::Skip(why) => return self.registry.skip(&p, why),
            Examined::Database { rollback: true } if self.opts.leave_rollback_journal => {
                return self.registry.skip(&p, SkipReason::RollbackJournal);
            }
            Examined::Database { .. } => {}
        }
        if !opened_before {
            // A skipped file that became a database; one being retried
            // stays listed until its first sync.
            self.registry.skipped.remove(&p);
        }
        if let Some(k) = self.registry.insert(&p, Entry::queued()) {
            tracing::info!(db = %p.display(), "new database");
            self.backlog.push(&k);
        }
    }

    /// A registered database was written: its replicator is told, or it
    /// is made hot (when a connection is free; else it claims a slot and
    /// waits for one).
    pub(super) fn promote(&mut self, p: &Path) {
        let Some(k) = self.registry.key(p) else {
            return;
        };
        if self
            .registry
            .entry(&k)
            .is_none_or(|e| e.tier == Tier::Stopped)
        {
            return;
        }
        if self.hot.wrote(&k, self.registry.now_ms()) {
            return;
        }
        if !self.hot.has_free_slot() {
            self.hot.wait_for_slot(&k);
            return;
        }
        self.start(k, Duty::Hot);
    }

    /// The replica template `k` (at `path`) replicates with, and its path
    /// relative to the template's root.
    pub(super) fn template_of(
        &self,
        k: &str,
        path: &Path,
    ) -> Option<(&dyn ReplicaTemplate, String)> {
        if let Some(t) = self.extras.get(k) {
            return Some((t.as_ref(), String::new()));
        }
        let (pattern, rel) = self.registry.patterns.matches_at(path)?;
        Some((self.templates.get(pattern)?.as_ref(), rel))
    }

    /// Starts a replicator for `k`: a hot one with its own change signal,
    /// or the backlog's, asked to stop at once (one sync, upload and seal).
    pub(super) fn start(&mut self, k: Key, duty: Duty) {
        let path = self.registry.path(&k);
        let Some((template, rel)) = self.template_of(&k, &path) else {
            return;
        };
        let meta_dir = template.meta_dir(&path, &rel).path().to_path_buf();
        let client = match template.open(&self.pool, &rel) {
            Ok(c) => c,
            Err(err) => {
                self.registry.set_tier(&k, Tier::Failed);
                self.hot.forget(&k);
                let msg = format!("{err:#}");
                self.waiters
                    .answer(&k, || Err(Refused::Failed(msg.clone())));
                self.registry.record_error(&path, &msg);
                return;
            }
        };
        if let Some(v) = &mut self.validation {
            v.touched(&k);
        }
        let mut opts = self.opts.replicator.clone();
        opts.db.meta_dir = Some(meta_dir);
        // The outage's one line a minute speaks for replica failures.
        opts.quiet_replica_failures = true;
        // Promoted again and again: no compaction of every level and no
        // snapshot at each promotion.
        opts.levels_on_schedule = true;
        self.outage.resume(&k);
        let mut r = Replicator::new(&path, Replica::new(client), opts);
        if duty == Duty::Hot {
            r = r.with_scheduler(self.scheduler.clone());
        }
        let changed = Arc::new(Notify::new());
        r.set_change_signal(changed.clone());
        r.set_seal_on_stop(true);
        let hot = Arc::new(Hot::new(
            duty,
            changed,
            r.status_handle(),
            r.flush_handle(),
            self.registry.now_ms(),
        ));
        self.waiters
            .answer(&k, || Ok((hot.flush.clone(), hot.status.clone())));
        match duty {
            Duty::Backlog => self.backlog.started(),
            Duty::Hot => {
                self.registry
                    .counters
                    .promotions
                    .fetch_add(1, Ordering::Relaxed);
                metrics::counter!("litestreampp_promotions_total").increment(1);
            }
        }
        self.registry.set_tier(&k, Tier::Hot);
        let stopped = hot.stopped();
        self.hot.insert(k.clone(), hot);
        // Boxed, so the task holds the replicator's future once (a future
        // captured by an async block and awaited in it is stored twice).
        let run = Box::pin(r.run_until(stopped));
        self.tasks.spawn(async move { (k, run.await) });
    }

    /// Takes a finished replicator out of the hot set.
    fn release(
        &mut self,
        done: std::result::Result<Finished, tokio::task::JoinError>,
    ) -> Option<(Key, Arc<Hot>, litestreampp_core::Result<ReplicatorStatus>)> {
        let (k, result) = match done {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "replicator task failed");
                return None;
            }
        };
        let hot = self.hot.remove(&k)?;
        if hot.duty == Duty::Backlog {
            self.backlog.finished();
        }
        Some((k, hot, result))
    }

    /// Records how a finished replicator left its database: cold if it was
    /// sealed and nothing was written since.
    fn settle(
        &mut self,
        k: &Key,
        hot: &Hot,
        result: litestreampp_core::Result<ReplicatorStatus>,
    ) -> Settled {
        let path = self.registry.path(k);
        match result {
            Ok(st) => {
                if !self.registry.skipped.is_empty() {
                    self.registry.skipped.remove(&path);
                }
                self.outage.reached();
                let now = FileSig::of(&path);
                if st.sealed.is_some_and(|s| s == now) {
                    self.registry.set(k, Tier::Cold, now.digest());
                    self.state_dirty = true;
                    Settled::Sealed
                } else {
                    self.registry.set(k, Tier::Queued, 0);
                    Settled::Unsealed
                }
            }
            Err(_) if !path.exists() => {
                self.retire(k);
                Settled::Gone
            }
            Err(err) => {
                let (never_synced, down_since, unshipped) = hot
                    .status
                    .lock()
                    .map(|s| (s.last_sync_at.is_none(), s.replica_down_since, s.unshipped))
                    .unwrap_or_default();
                if let Some(since) = down_since {
                    // Its history waits in its meta directory for the
                    // replica (`outage.rs`).
                    self.registry
                        .set(k, Tier::Unshipped, FileSig::of(&path).digest());
                    tracing::info!(
                        db = %path.display(),
                        unshipped_files = unshipped.files,
                        unshipped_bytes = unshipped.bytes,
                        "stopped without reaching its replica; its history is kept until the replica returns"
                    );
                    self.outage.wait(k, unshipped, err.to_string(), since);
                    return Settled::Failed;
                }
                if let Some(why) = skipped::reason_of_failure(&err, &path, never_synced) {
                    // Not ours to change: out of the registry, reported once.
                    self.forget(k);
                    self.registry.skip(&path, why);
                    return Settled::Failed;
                }
                self.registry
                    .set(k, Tier::Failed, FileSig::of(&path).digest());
                self.registry.record_error(&path, &err.to_string());
                Settled::Failed
            }
        }
    }

    /// A replicator stopped while running: counted, and its database
    /// promoted again if it is not sealed.
    fn finished(&mut self, done: std::result::Result<Finished, tokio::task::JoinError>) {
        let Some((k, hot, result)) = self.release(done) else {
            return;
        };
        if self.pending.contains_key(&k) {
            self.settle(&k, &hot, result);
            self.conclude(&k, &hot);
            return;
        }
        self.trim_due = true;
        self.last_finished = Instant::now();
        let c = &self.registry.counters;
        match hot.duty {
            Duty::Backlog => {
                c.backlog_done.fetch_add(1, Ordering::Relaxed);
            }
            Duty::Hot => {
                c.demotions.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("litestreampp_demotions_total").increment(1);
            }
        }
        match self.settle(&k, &hot, result) {
            Settled::Unsealed => {
                // Hot again, and another try after the next idle period.
                tracing::debug!(db = %self.registry.path(&k).display(), "not sealed; promoted again");
                let p = self.registry.path(&k);
                self.promote(&p);
            }
            // A sync request came while it was stopping: start it again.
            Settled::Sealed | Settled::Failed if self.waiters.is_waiting(&k) => {
                let p = self.registry.path(&k);
                self.promote(&p);
            }
            _ => {}
        }
    }

    /// Starts databases that waited for a connection, while some are free.
    fn start_waiting(&mut self) {
        while let Some(k) = self.hot.next_waiting() {
            if self
                .registry
                .entry(&k)
                .is_some_and(|e| !matches!(e.tier, Tier::Hot | Tier::Stopped))
            {
                self.start(k, Duty::Hot);
            }
        }
    }

    /// Starts backlog syncs within the rate and worker limits.
    fn start_backlog(&mut self) {
        while let Some(k) = self.backlog.next() {
            if self
                .registry
                .entry(&k)
                .is_some_and(|e| e.tier == Tier::Queued)
            {
                self.start(k, Duty::Backlog);
            }
        }
    }

    /// Writes the signature of every cold database (atomically).
    pub(super) async fn save_state(&mut self) {
        self.state_dirty = false;
        let registry = self.registry.clone();
        let path = self.state_path();
        let r = tokio::task::spawn_blocking(move || {
            state_file::save(&path, &state_file::text(&registry))
        })
        .await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.state_dirty = true;
                tracing::error!(error = %e, "cannot write the fleet state file");
            }
            Err(e) => tracing::error!(error = %e, "state file task failed"),
        }
    }
}
