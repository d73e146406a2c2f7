//! Compaction levels, snapshots and retention for one database's replica
//! (spec §2), run by the shared [`Scheduler`](crate::scheduler::Scheduler).
//!
//! What is in the replica is remembered here: the newest file of every
//! level, the L0 files and the snapshots. It is learned with one listing
//! per level when replication starts and kept current by every upload,
//! compaction and deletion this process makes, so deciding what is due
//! never lists anything. A database with no new writes has nothing due
//! once its levels have caught up, and costs no requests.
//!
//! Timing follows Litestream 0.5.17: compaction into level N runs at the
//! boundaries of its interval (aligned as Go's `Time.Truncate` aligns
//! them) once level N-1 holds newer files, and once at startup; retention
//! runs when the oldest file it may delete expires (Litestream polls).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use jiff::Timestamp;
use tokio::sync::Notify;

use crate::client::retry::{RetryPolicy, pump_range};
use crate::client::{FileInfo, LtxBody, ReplicaClient, SNAPSHOT_LEVEL, list_all};
use crate::compact;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::scheduler::{Job, Scheduler};
use crate::txid::TxId;

/// Level and retention settings (Litestream's `levels`, `snapshot`,
/// `l0-retention`, `retention`, `verify-compaction`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelsConfig {
    /// Compaction interval of L1, L2, ... (at most 8 levels).
    pub intervals: Vec<Duration>,
    pub snapshot_interval: Duration,
    pub snapshot_retention: Duration,
    /// L0 files are kept this long after L1 covers them.
    pub l0_retention: Duration,
    /// False: never delete remote files (bucket lifecycle rules do it).
    pub retention_enabled: bool,
    /// After each compaction, list the level and check its TXIDs are
    /// contiguous.
    pub verify_compaction: bool,
}

impl Default for LevelsConfig {
    fn default() -> Self {
        LevelsConfig {
            intervals: vec![
                Duration::from_secs(30),
                Duration::from_secs(5 * 60),
                Duration::from_secs(3600),
            ],
            snapshot_interval: Duration::from_secs(24 * 3600),
            snapshot_retention: Duration::from_secs(24 * 3600),
            l0_retention: Duration::from_secs(5 * 60),
            retention_enabled: true,
            verify_compaction: false,
        }
    }
}

impl LevelsConfig {
    /// The highest compaction level below the snapshots.
    pub fn max_level(&self) -> u32 {
        self.intervals.len() as u32
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.intervals.len() > (SNAPSHOT_LEVEL - 1) as usize {
            return Err(Error::InvalidInput(format!(
                "levels: at most {} compaction levels",
                SNAPSHOT_LEVEL - 1
            )));
        }
        for (i, d) in self.intervals.iter().enumerate() {
            if d.is_zero() {
                return Err(Error::InvalidInput(format!(
                    "levels[{i}]: interval required for level {}",
                    i + 1
                )));
            }
        }
        if self.snapshot_interval.is_zero() {
            return Err(Error::InvalidInput(
                "snapshot.interval must be positive".into(),
            ));
        }
        Ok(())
    }

    /// The shortest pause between two runs of one database's tasks.
    fn min_gap(&self) -> Duration {
        self.intervals
            .iter()
            .copied()
            .chain([self.snapshot_interval, Duration::from_secs(1)])
            .min()
            .unwrap_or(Duration::from_secs(1))
    }

    fn interval(&self, level: u32) -> Duration {
        if level == SNAPSHOT_LEVEL {
            self.snapshot_interval
        } else {
            self.intervals[level as usize - 1]
        }
    }
}

/// Nanoseconds from Go's zero time (0001-01-01 UTC) to the Unix epoch: Go
/// aligns `Truncate` to the former.
const GO_ZERO_OFFSET_NS: i128 = 62_135_596_800 * 1_000_000_000;

/// The first boundary of `interval` at or after `t`.
pub fn ceil_boundary(t: Timestamp, interval: Duration) -> Timestamp {
    let d = interval.as_nanos() as i128;
    if d == 0 {
        return t;
    }
    let abs = t.as_nanosecond() + GO_ZERO_OFFSET_NS;
    let floor = abs - abs.rem_euclid(d);
    let b = if floor == abs { abs } else { floor + d };
    Timestamp::from_nanosecond(b - GO_ZERO_OFFSET_NS).unwrap_or(t)
}

/// What the replica holds, as far as scheduling needs to know.
#[derive(Debug, Clone, Default)]
pub struct LevelState {
    /// Newest file (highest max TXID) of each level 0..=9.
    pub newest: [Option<FileInfo>; 10],
    /// The remote L0 files, ascending.
    pub l0: Vec<FileInfo>,
    /// The snapshots, ascending.
    pub snapshots: Vec<FileInfo>,
    /// Since when each level holds files the next level lacks.
    pub pending_since: [Option<Timestamp>; 10],
    /// Levels to run once at startup (as Litestream does).
    pub startup: [bool; 10],
    /// When each level's task last ran: at most once per boundary, as
    /// Litestream's tickers run.
    pub last_run: [Option<Timestamp>; 10],
    /// A failed snapshot is not asked for again before this.
    pub snapshot_not_before: Option<Timestamp>,
    /// Highest TXID at any level.
    pub position: TxId,
}

fn max_of(f: &Option<FileInfo>) -> TxId {
    f.as_ref().map_or(TxId::ZERO, |f| f.max_txid)
}

impl LevelState {
    /// Lists every level once.
    pub async fn load(client: &dyn ReplicaClient) -> Result<LevelState> {
        let mut s = LevelState::default();
        let mut by_level: [Vec<FileInfo>; SNAPSHOT_LEVEL as usize + 1] = Default::default();
        for f in client.all_ltx_files().await? {
            if let Some(v) = by_level.get_mut(f.level as usize) {
                v.push(f);
            }
        }
        for level in 0..=SNAPSHOT_LEVEL {
            let files = std::mem::take(&mut by_level[level as usize]);
            let newest = files.iter().max_by_key(|f| f.max_txid).cloned();
            s.position = s.position.max(max_of(&newest));
            if let Some(n) = &newest {
                s.pending_since[level as usize] = Some(n.created_at);
            }
            s.newest[level as usize] = newest;
            match level {
                0 => s.l0 = files,
                SNAPSHOT_LEVEL => s.snapshots = files,
                _ => {}
            }
        }
        s.startup = [true; 10];
        Ok(s)
    }

    fn add(&mut self, f: &FileInfo) {
        let l = f.level as usize;
        if f.max_txid > max_of(&self.newest[l]) {
            self.newest[l] = Some(f.clone());
        }
        self.position = self.position.max(f.max_txid);
        if self.pending_since[l].is_none() {
            self.pending_since[l] = Some(f.created_at);
        }
        match f.level {
            0 => self.l0.push(f.clone()),
            SNAPSHOT_LEVEL => self.snapshots.push(f.clone()),
            _ => {}
        }
    }
}

/// Work that can be due for a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    Compact(u32),
    Snapshot,
    L0Retention,
    SnapshotRetention,
}

/// The compaction and retention of one database's replica.
#[derive(Debug)]
pub struct Maintainer {
    id: u64,
    name: String,
    client: Arc<dyn ReplicaClient>,
    cfg: LevelsConfig,
    /// Local L0 files, preferred as L1 inputs.
    l0_dir: PathBuf,
    /// Scratch space for downloads and outputs.
    work_dir: PathBuf,
    state: Mutex<LevelState>,
    running: tokio::sync::Mutex<()>,
    snapshot_wanted: AtomicBool,
    /// A snapshot is being encoded or uploaded.
    snapshot_busy: AtomicBool,
    snapshot_notify: Notify,
    scheduler: Mutex<Option<Scheduler>>,
    failures: AtomicU64,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Maintainer {
    /// A maintainer for the replica behind `client`, whose local L0 files
    /// are in `l0_dir` and which may use `work_dir` for temporary files.
    pub fn new(
        name: impl Into<String>,
        client: Arc<dyn ReplicaClient>,
        cfg: LevelsConfig,
        l0_dir: PathBuf,
        work_dir: PathBuf,
        state: LevelState,
    ) -> Arc<Maintainer> {
        Arc::new(Maintainer {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            name: name.into(),
            client,
            cfg,
            l0_dir,
            work_dir,
            state: Mutex::new(state),
            running: tokio::sync::Mutex::new(()),
            snapshot_wanted: AtomicBool::new(false),
            snapshot_busy: AtomicBool::new(false),
            snapshot_notify: Notify::new(),
            scheduler: Mutex::new(None),
            failures: AtomicU64::new(0),
        })
    }

    fn st(&self) -> std::sync::MutexGuard<'_, LevelState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A copy of what is known about the replica.
    pub fn state(&self) -> LevelState {
        self.st().clone()
    }

    /// Highest TXID L1 covers: local L0 files up to it may go.
    pub fn l1_max(&self) -> TxId {
        max_of(&self.st().newest[1])
    }

    /// Compactions and retention runs that failed so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Registers with `scheduler`, which runs what is due from now on.
    pub fn attach(self: &Arc<Self>, scheduler: &Scheduler) {
        *self
            .scheduler
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(scheduler.clone());
        let at = self.next_due().map(to_instant);
        scheduler.add(Arc::new(MaintainerJob(self.clone())), at);
    }

    /// Unregisters from the scheduler.
    pub fn detach(&self) {
        if let Some(s) = self
            .scheduler
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            s.remove(self.id);
        }
    }

    fn reschedule(&self) {
        let Some(at) = self.next_due() else { return };
        if let Some(s) = self
            .scheduler
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            s.schedule(self.id, to_instant(at));
        }
    }

    /// Records files uploaded to the replica (L0).
    pub fn note_uploaded(&self, files: &[FileInfo]) {
        if files.is_empty() {
            return;
        }
        {
            let mut s = self.st();
            for f in files {
                s.add(f);
            }
        }
        self.reschedule();
    }

    /// The database's owner starts a snapshot (asked for or not): no other
    /// is asked for until [`end_snapshot`](Self::end_snapshot).
    pub fn begin_snapshot(&self) {
        self.snapshot_busy.store(true, Ordering::Release);
        self.snapshot_wanted.store(false, Ordering::Release);
    }

    /// A snapshot ended: `written` is the file now in the replica (none if
    /// nothing needed one); `failed` asks again after a backoff.
    pub fn end_snapshot(&self, written: Option<&FileInfo>, failed: bool) {
        {
            let mut s = self.st();
            if let Some(info) = written {
                s.add(info);
            }
            if failed {
                let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                s.startup[SNAPSHOT_LEVEL as usize] = true;
                s.snapshot_not_before = Some(add(Timestamp::now(), retry_delay(n)));
            }
        }
        self.snapshot_busy.store(false, Ordering::Release);
        self.reschedule();
    }

    /// Completes when a snapshot is requested.
    pub async fn snapshot_requested(&self) {
        loop {
            let n = self.snapshot_notify.notified();
            if self.snapshot_wanted.load(Ordering::Acquire) {
                return;
            }
            n.await;
        }
    }

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
                (s.position, max_of(&s.newest[SNAPSHOT_LEVEL as usize]))
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

    /// Runs every task due now. Snapshots are requested from the database's
    /// owner rather than taken here.
    pub async fn run_due(&self) -> Result<()> {
        let _one_at_a_time = self.running.lock().await;
        let now = Timestamp::now();
        let mut due: Vec<Task> = self
            .due_tasks(now)
            .into_iter()
            .filter(|(t, _)| *t <= now)
            .map(|(_, k)| k)
            .collect();
        due.sort_by_key(|k| match k {
            Task::Compact(l) => *l,
            Task::L0Retention => 100,
            Task::Snapshot => 101,
            Task::SnapshotRetention => 102,
        });
        for task in due {
            match task {
                Task::Compact(level) => {
                    self.st().last_run[level as usize] = Some(now);
                    self.compact(level).await?;
                    self.st().startup[level as usize] = false;
                }
                Task::L0Retention => self.enforce_l0_retention().await?,
                Task::Snapshot => {
                    {
                        let mut s = self.st();
                        s.startup[SNAPSHOT_LEVEL as usize] = false;
                        s.snapshot_not_before = None;
                        s.last_run[SNAPSHOT_LEVEL as usize] = Some(now);
                    }
                    self.snapshot_wanted.store(true, Ordering::Release);
                    self.snapshot_notify.notify_waiters();
                }
                Task::SnapshotRetention => self.enforce_snapshot_retention().await?,
            }
        }
        Ok(())
    }

    /// Merges the files of level `level - 1` that level `level` lacks into
    /// one file at `level`.
    pub async fn compact(&self, level: u32) -> Result<Option<FileInfo>> {
        let src = level - 1;
        let (dst_max, src_files) = {
            let s = self.st();
            let dst_max = max_of(&s.newest[level as usize]);
            let l0: Vec<FileInfo> =
                s.l0.iter()
                    .filter(|f| f.max_txid > dst_max)
                    .cloned()
                    .collect();
            (dst_max, (src == 0).then_some(l0))
        };
        let inputs = match src_files {
            Some(f) => f,
            None => {
                self.client
                    .ltx_files(src, dst_max.next(), false)
                    .await?
                    .try_collect::<Vec<_>>()
                    .await?
            }
        };
        let mut inputs = chain(inputs, dst_max);
        if src == 0
            && dst_max > TxId::ZERO
            && inputs.first().is_some_and(|f| f.min_txid > dst_max.next())
        {
            // Our own L0 files always continue L1, so the remembered list
            // lacks one: relearn it from a listing rather than leave a
            // TXID gap at L1 (which L0 retention would later make final).
            let listed = list_all(self.client.as_ref(), 0, false).await?;
            tracing::warn!(
                db = %self.name, after = %dst_max,
                "remembered L0 files do not continue L1; relearned them from a listing"
            );
            let l0: Vec<FileInfo> = {
                let mut s = self.st();
                for f in listed {
                    if !s
                        .l0
                        .iter()
                        .any(|k| k.min_txid == f.min_txid && k.max_txid == f.max_txid)
                    {
                        s.add(&f);
                    }
                }
                s.l0.sort_by_key(|f| (f.min_txid, f.max_txid));
                s.l0.iter()
                    .filter(|f| f.max_txid > dst_max)
                    .cloned()
                    .collect()
            };
            inputs = chain(l0, dst_max);
        }
        if inputs.is_empty() {
            return Ok(None);
        }
        let dir = self.work_dir.join(format!("ltx/{level}"));
        fsutil::create_dir_all(&dir)?;
        let mut paths = Vec::with_capacity(inputs.len());
        let mut downloaded = Vec::new();
        let result = async {
            for f in &inputs {
                let local = self.l0_dir.join(f.file_name());
                if src == 0 && local.exists() {
                    paths.push(local);
                    continue;
                }
                let p = dir.join(format!("input-{src}-{}", f.file_name()));
                downloaded.push(p.clone());
                download(self.client.as_ref(), f, &p).await?;
                paths.push(p);
            }
            let min = inputs[0].min_txid;
            let max = inputs[inputs.len() - 1].max_txid;
            let out = dir.join(crate::txid::ltx_file_name(min, max));
            downloaded.push(out.clone());
            let (ins, o) = (paths.clone(), out.clone());
            let merged = tokio::task::spawn_blocking(move || compact::merge_files(&ins, &o))
                .await
                .map_err(|e| {
                    Error::io("compaction task", std::io::Error::other(e.to_string()))
                })??;
            let info = self
                .client
                .write_ltx_file(level, min, max, LtxBody::File(out))
                .await?;
            crate::crashpoint::here("compacted");
            tracing::info!(
                db = %self.name, level, min = %min, max = %max, inputs = inputs.len(),
                size = merged.size, "compaction complete"
            );
            Ok::<FileInfo, Error>(info)
        }
        .await;
        for p in &downloaded {
            let _ = std::fs::remove_file(p); // scratch files; a leftover is removed at the next start
        }
        let info = result?;
        {
            let mut s = self.st();
            s.newest[level as usize] = Some(info.clone());
            // What the source level gained meanwhile waits for the next
            // boundary.
            s.pending_since[src as usize] = if max_of(&s.newest[src as usize]) <= info.max_txid {
                None
            } else if src == 0 {
                s.l0.iter()
                    .find(|f| f.max_txid > info.max_txid)
                    .map(|f| f.created_at)
                    .or(Some(Timestamp::now()))
            } else {
                Some(Timestamp::now())
            };
            if s.pending_since[level as usize].is_none() {
                s.pending_since[level as usize] = Some(info.created_at);
            }
        }
        if self.cfg.verify_compaction
            && let Err(e) = self.verify_level(level).await
        {
            tracing::warn!(db = %self.name, level, error = %e, "post-compaction verification failed");
        }
        Ok(Some(info))
    }

    /// Checks that the files of `level` have contiguous TXIDs.
    pub async fn verify_level(&self, level: u32) -> Result<()> {
        let files = list_all(self.client.as_ref(), level, false).await?;
        for w in files.windows(2) {
            if w[1].min_txid != w[0].max_txid.next() {
                let what = if w[1].min_txid > w[0].max_txid.next() {
                    "gap"
                } else {
                    "overlap"
                };
                return Err(Error::corrupt(
                    format!("{} level {level}", self.client.location()),
                    format!(
                        "TXID {what}: {} then {}",
                        w[0].file_name(),
                        w[1].file_name()
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn delete(&self, level: u32, files: &[FileInfo]) -> Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        if !self.cfg.retention_enabled {
            tracing::debug!(db = %self.name, level, count = files.len(), "retention disabled: remote files left in place");
            return Ok(());
        }
        self.client.delete_ltx_files(files).await?;
        crate::crashpoint::here("retention-deleted");
        tracing::debug!(db = %self.name, level, count = files.len(), "deleted by retention");
        Ok(())
    }

    /// Deletes L0 files that L1 covers once they are older than the L0
    /// retention, oldest first, stopping at the first one too recent.
    pub async fn enforce_l0_retention(&self) -> Result<()> {
        let threshold = sub(Timestamp::now(), self.cfg.l0_retention);
        let doomed: Vec<FileInfo> = {
            let s = self.st();
            let l1 = max_of(&s.newest[1]);
            let mut out = Vec::new();
            let mut all = true;
            for f in &s.l0 {
                if f.created_at > threshold {
                    all = false;
                    break;
                }
                if f.max_txid <= l1 {
                    out.push(f.clone());
                }
            }
            if all && out.last() == s.l0.last() {
                out.pop(); // the newest L0 file always stays
            }
            out
        };
        self.delete(0, &doomed).await?;
        let mut s = self.st();
        s.l0.retain(|f| !doomed.contains(f));
        Ok(())
    }

    /// Deletes snapshots older than the snapshot retention (never the
    /// newest), then the L1+ files that only a deleted snapshot's history
    /// needed.
    pub async fn enforce_snapshot_retention(&self) -> Result<()> {
        let cutoff = sub(Timestamp::now(), self.cfg.snapshot_retention);
        let (doomed, floor) = {
            let s = self.st();
            let snaps = &s.snapshots;
            let mut doomed: Vec<FileInfo> = snaps
                .iter()
                .filter(|f| f.created_at < cutoff)
                .cloned()
                .collect();
            if doomed.last() == snaps.last() {
                doomed.pop();
            }
            // The floor is the newest deleted snapshot before the first kept
            // one, so files an in-flight restore from it planned survive.
            let mut floor = TxId::ZERO;
            for (i, f) in snaps.iter().enumerate() {
                if doomed.contains(f) {
                    continue;
                }
                if i > 0 {
                    floor = snaps[i - 1].max_txid;
                }
                break;
            }
            (doomed, floor)
        };
        self.delete(SNAPSHOT_LEVEL, &doomed).await?;
        self.st().snapshots.retain(|f| !doomed.contains(f));
        if floor > TxId::ZERO {
            for level in 1..=self.cfg.max_level() {
                let files = list_all(self.client.as_ref(), level, false).await?;
                let mut old: Vec<FileInfo> = files
                    .iter()
                    .filter(|f| f.max_txid < floor)
                    .cloned()
                    .collect();
                if old.last() == files.last() {
                    old.pop(); // at least one file per level stays
                }
                self.delete(level, &old).await?;
            }
        }
        Ok(())
    }

    /// Removes scratch files a crashed compaction may have left.
    pub fn clean_work_dir(&self) -> Result<()> {
        for level in 1..=SNAPSHOT_LEVEL {
            let dir = self.work_dir.join(format!("ltx/{level}"));
            remove_dir_files(&dir)?;
        }
        Ok(())
    }
}

/// The contiguous run of `files` that continues `from` furthest at each
/// step (or, past a gap, starts at the lowest TXID left), ascending.
fn chain(mut files: Vec<FileInfo>, from: TxId) -> Vec<FileInfo> {
    files.sort_by_key(|f| (f.min_txid, std::cmp::Reverse(f.max_txid)));
    let mut out: Vec<FileInfo> = Vec::new();
    let mut cur = from;
    loop {
        let next = files
            .iter()
            .filter(|f| f.min_txid.0 <= cur.0 + 1 && f.max_txid > cur)
            .max_by_key(|f| f.max_txid)
            .or_else(|| {
                if out.is_empty() {
                    files.iter().find(|f| f.max_txid > cur)
                } else {
                    None
                }
            });
        let Some(f) = next.cloned() else { break };
        cur = f.max_txid;
        out.push(f);
    }
    out
}

fn remove_dir_files(dir: &Path) -> Result<()> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("list {}", dir.display()), e)),
    };
    for e in rd {
        let e = e.map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
        if e.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::remove_file(e.path())
                .map_err(|err| Error::io(format!("remove {}", e.path().display()), err))?;
        }
    }
    Ok(())
}

/// Backoff after the `n`th failure: 5 s more each time, at most a minute.
fn retry_delay(n: u64) -> Duration {
    Duration::from_secs(5 * n.min(12))
}

/// `t - d`, clamped at the earliest time (a retention of centuries keeps
/// everything rather than panicking).
fn sub(t: Timestamp, d: Duration) -> Timestamp {
    let span = jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX);
    t.checked_sub(span).unwrap_or(Timestamp::MIN)
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    let span = jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX);
    t.checked_add(span).unwrap_or(Timestamp::MAX)
}

/// The tokio instant of wall-clock time `t` (now if it has passed).
pub fn to_instant(t: Timestamp) -> tokio::time::Instant {
    let now = Timestamp::now();
    let ahead = t.duration_since(now).try_into().unwrap_or(Duration::ZERO);
    tokio::time::Instant::now() + ahead
}

/// Downloads a replica file to `path` (resuming cut streams).
async fn download(client: &dyn ReplicaClient, info: &FileInfo, path: &Path) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut f = tokio::fs::File::create(path)
        .await
        .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let pump = pump_range(client, info, 0, info.size, RetryPolicy::default(), tx);
    let write = async {
        while let Some(chunk) = rx.recv().await {
            let chunk = chunk?;
            f.write_all(&chunk)
                .await
                .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        }
        f.flush()
            .await
            .map_err(|e| Error::io(format!("write {}", path.display()), e))
    };
    let ((), r) = tokio::join!(pump, write);
    r?;
    let got = tokio::fs::metadata(path)
        .await
        .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
        .len();
    if got != info.size {
        return Err(Error::corrupt(
            format!(
                "{} level {} {}",
                client.location(),
                info.level,
                info.file_name()
            ),
            format!("downloaded {got} of {} bytes", info.size),
        ));
    }
    Ok(())
}

struct MaintainerJob(Arc<Maintainer>);

#[async_trait]
impl Job for MaintainerJob {
    fn id(&self) -> u64 {
        self.0.id
    }

    async fn run(&self) -> Option<tokio::time::Instant> {
        let m = &self.0;
        match m.run_due().await {
            // Never sooner than the shortest interval (at most a second)
            // from now, whatever the state says: no busy loop.
            Ok(()) => m
                .next_due()
                .map(|t| to_instant(t).max(tokio::time::Instant::now() + m.cfg.min_gap())),
            Err(e) => {
                let n = m.failures.fetch_add(1, Ordering::Relaxed) + 1;
                let retry = retry_delay(n);
                tracing::error!(db = %m.name, error = %e, retry_in = ?retry, "compaction or retention failed");
                Some(tokio::time::Instant::now() + retry)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn info(level: u32, min: u64, max: u64, created: &str) -> FileInfo {
        FileInfo {
            level,
            min_txid: TxId(min),
            max_txid: TxId(max),
            size: 100,
            created_at: created.parse().unwrap(),
        }
    }

    fn maintainer(state: LevelState, dir: &Path) -> Arc<Maintainer> {
        let client = Arc::new(crate::client::file::FileReplicaClient::new(dir.join("r")));
        Maintainer::new(
            "t",
            client,
            LevelsConfig::default(),
            dir.join("l0"),
            dir.join("w"),
            state,
        )
    }

    fn due_of(m: &Maintainer, now: &str, task: Task) -> Option<String> {
        m.due_tasks(now.parse().unwrap())
            .into_iter()
            .find(|(_, t)| *t == task)
            .map(|(t, _)| t.to_string())
    }

    #[test]
    fn due_times_follow_litestream_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = LevelState::default();
        for (i, t) in ["10:00:01", "10:00:12", "10:00:41"].iter().enumerate() {
            st.add(&info(
                0,
                i as u64 + 1,
                i as u64 + 1,
                &format!("2026-11-22T{t}Z"),
            ));
        }
        st.add(&info(1, 1, 1, "2026-11-22T10:00:01Z"));
        st.pending_since[0] = Some("2026-11-22T10:00:12Z".parse().unwrap());
        st.add(&info(SNAPSHOT_LEVEL, 1, 1, "2026-11-22T09:00:00Z"));
        let m = maintainer(st, dir.path());
        let now = "2026-11-22T10:00:45Z";
        // L1: the first 30 s boundary after new L0 data (already passed: due).
        assert_eq!(
            due_of(&m, now, Task::Compact(1)).as_deref(),
            Some("2026-11-22T10:00:30Z")
        );
        // L2 at the next 5-minute boundary after L1 gained its file; L3
        // has nothing to merge: not due at all.
        assert_eq!(
            due_of(&m, now, Task::Compact(2)).as_deref(),
            Some("2026-11-22T10:05:00Z")
        );
        assert_eq!(due_of(&m, now, Task::Compact(3)), None);
        // A snapshot: the first daily boundary after the last one, however
        // recent the newest L0 data.
        assert_eq!(
            due_of(&m, now, Task::Snapshot).as_deref(),
            Some("2026-11-23T00:00:00Z")
        );
        // L0 retention: 5 minutes after the oldest L0 file L1 covers.
        assert_eq!(
            due_of(&m, now, Task::L0Retention).as_deref(),
            Some("2026-11-22T10:05:01Z")
        );
        // Having run at 10:00:30, L1 waits for the next boundary even for
        // data older than that run.
        m.st().last_run[1] = Some("2026-11-22T10:00:30.002Z".parse().unwrap());
        assert_eq!(
            due_of(&m, now, Task::Compact(1)).as_deref(),
            Some("2026-11-22T10:01:00Z")
        );
        // At startup everything with work runs at once, as in Litestream.
        m.st().startup = [true; 10];
        assert_eq!(due_of(&m, now, Task::Snapshot).as_deref(), Some(now));
        // Nothing new anywhere: nothing due (an idle database costs nothing).
        let idle = maintainer(LevelState::default(), dir.path());
        assert!(idle.due_tasks(now.parse().unwrap()).is_empty());
    }

    #[test]
    fn huge_durations_clamp() {
        let now = Timestamp::now();
        let huge = Duration::from_secs(u64::MAX / 4);
        assert_eq!(sub(now, huge), Timestamp::MIN);
        assert_eq!(add(now, huge), Timestamp::MAX);
        assert!(ceil_boundary(now, huge) >= now);
    }

    #[test]
    fn boundaries_align_like_go_truncate() {
        let t: Timestamp = "2026-11-22T10:07:31.5Z".parse().unwrap();
        let c = |s| ceil_boundary(t, Duration::from_secs(s)).to_string();
        assert_eq!(c(30), "2026-11-22T10:08:00Z");
        assert_eq!(c(300), "2026-11-22T10:10:00Z");
        assert_eq!(c(3600), "2026-11-22T11:00:00Z");
        assert_eq!(c(86400), "2026-11-23T00:00:00Z");
        let on: Timestamp = "2026-11-22T10:00:00Z".parse().unwrap();
        assert_eq!(ceil_boundary(on, Duration::from_secs(300)), on);
        // Go's zero time, not the Unix epoch: 7 minutes do not divide a day.
        // 10:01 is a multiple of 7 minutes since 1970; Go's next boundary
        // (counted from 0001-01-01) is 10:07.
        let t: Timestamp = "2026-11-22T10:01:00Z".parse().unwrap();
        assert_eq!(t.as_second() % 420, 0, "fixture");
        assert_eq!(
            ceil_boundary(t, Duration::from_secs(420)).to_string(),
            "2026-11-22T10:07:00Z"
        );
    }
}
