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

mod compaction;
mod config;
mod retention;
mod schedule;
mod state;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use tokio::sync::Notify;

use crate::client::{FileInfo, ReplicaClient, SNAPSHOT_LEVEL};
use crate::error::{Error, Result};
use crate::meta_dir::MetaDir;
use crate::scheduler::{Job, Scheduler};
use crate::txid::TxId;

pub use compaction::{validate_replica, verify_level};
pub use config::{LevelsConfig, ceil_boundary};
pub use schedule::Task;
pub use state::LevelState;

use state::max_of;

/// The compaction and retention of one database's replica.
#[derive(Debug)]
pub struct Maintainer {
    id: u64,
    name: String,
    client: Arc<dyn ReplicaClient>,
    cfg: LevelsConfig,
    /// Local L0 files, preferred as L1 inputs, and scratch space for
    /// downloads and outputs.
    meta: MetaDir,
    state: Mutex<LevelState>,
    running: tokio::sync::Mutex<()>,
    snapshot_wanted: AtomicBool,
    /// A snapshot is being encoded or uploaded.
    snapshot_busy: AtomicBool,
    snapshot_notify: Notify,
    scheduler: Mutex<Option<Scheduler>>,
    failures: AtomicU64,
    /// How compaction verification failures are counted (set once by the
    /// replicator; unset: aggregated).
    metrics: std::sync::OnceLock<crate::metrics::DbMetrics>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Maintainer {
    /// A maintainer for the replica behind `client`, whose local L0 files
    /// are in `meta`, whose scratch space it may use.
    pub fn new(
        name: impl Into<String>,
        client: Arc<dyn ReplicaClient>,
        cfg: LevelsConfig,
        meta: MetaDir,
        state: LevelState,
    ) -> Arc<Maintainer> {
        Arc::new(Maintainer {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            name: name.into(),
            client,
            cfg,
            meta,
            state: Mutex::new(state),
            running: tokio::sync::Mutex::new(()),
            snapshot_wanted: AtomicBool::new(false),
            snapshot_busy: AtomicBool::new(false),
            snapshot_notify: Notify::new(),
            scheduler: Mutex::new(None),
            failures: AtomicU64::new(0),
            metrics: std::sync::OnceLock::new(),
        })
    }

    /// Labels this database's compaction metrics (once).
    pub fn set_metrics(&self, m: crate::metrics::DbMetrics) {
        let _ = self.metrics.set(m); // a second call keeps the first labels
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

    /// [`detach`](Self::detach), then waits for a run in flight to end.
    pub async fn detach_and_settle(&self) {
        self.detach();
        let _idle = self.running.lock().await;
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

    /// Records that the L0 file ending at `txid` holds every page of the
    /// database (it need not be uploaded yet): compaction into L1 starts
    /// reading there.
    pub fn note_full_state_l0(&self, txid: TxId) {
        let mut s = self.st();
        s.full_l0 = Some(s.full_l0.map_or(txid, |k| k.max(txid)));
    }

    /// A guard if no compaction or retention run is in flight; none
    /// starts while it is held (so local L0 files no run will read may be
    /// removed).
    pub fn try_idle(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        self.running.try_lock().ok()
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

    /// Removes scratch files a crashed compaction may have left.
    pub fn clean_work_dir(&self) -> Result<()> {
        for level in 1..=SNAPSHOT_LEVEL {
            remove_dir_files(&self.meta.scratch_dir(level))?;
        }
        Ok(())
    }
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
pub(super) fn sub(t: Timestamp, d: Duration) -> Timestamp {
    let span = jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX);
    t.checked_sub(span).unwrap_or(Timestamp::MIN)
}

pub(super) fn add(t: Timestamp, d: Duration) -> Timestamp {
    let span = jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX);
    t.checked_add(span).unwrap_or(Timestamp::MAX)
}

/// The tokio instant of wall-clock time `t` (now if it has passed).
pub fn to_instant(t: Timestamp) -> tokio::time::Instant {
    let now = Timestamp::now();
    let ahead = t.duration_since(now).try_into().unwrap_or(Duration::ZERO);
    tokio::time::Instant::now() + ahead
}

/// A maintainer as the scheduler's job.
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
            MetaDir::new(dir.join("meta")),
            state,
        )
    }

    fn due_of(m: &Maintainer, now: &str, task: Task) -> Option<String> {
        m.due_tasks(now.parse().unwrap())
            .into_iter()
            .find(|(_, t)| *t == task)
            .map(|(t, _)| t.to_string())
    }

    /// A fleet's replicator, started at every promotion, runs the levels
    /// that hold files on their schedule; an empty level runs once.
    #[test]
    fn levels_on_schedule_run_only_empty_levels_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = LevelState::default();
        st.add(&info(0, 1, 1, "2026-11-22T10:00:01Z"));
        st.add(&info(0, 2, 2, "2026-11-22T10:00:12Z"));
        st.add(&info(1, 1, 1, "2026-11-22T10:00:05Z"));
        st.add(&info(SNAPSHOT_LEVEL, 1, 1, "2026-11-22T10:00:05Z"));
        st.startup = [true; 10];
        st.run_on_schedule();
        let m = maintainer(st, dir.path());
        let now = "2026-11-22T10:00:20Z";
        // L1 on its 30 s boundary, not now; L2 (empty) once, now; no
        // snapshot before its daily boundary.
        assert_eq!(
            due_of(&m, now, Task::Compact(1)).as_deref(),
            Some("2026-11-22T10:00:30Z")
        );
        assert_eq!(due_of(&m, now, Task::Compact(2)).as_deref(), Some(now));
        assert_eq!(
            due_of(&m, now, Task::Snapshot).as_deref(),
            Some("2026-11-23T00:00:00Z")
        );
    }

    /// After an L0 snapshot, L1 reads from the snapshot on: the files
    /// before it are gone here, locally and from the replica, and the L1
    /// file still covers every TXID L1 lacked, with the right pages.
    #[test]
    fn l1_reads_from_the_newest_l0_snapshot() {
        use crate::client::LtxBody;
        use crate::ltx::{Decoder, Encoder, Header};
        const PS: usize = 512;
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaDir::new(dir.path().join("meta"));
        meta.create().unwrap();
        let m = maintainer(LevelState::default(), dir.path());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // TXID: (commit, pages); 3 holds every page.
        let files: [(u64, u32, &[u32]); 4] = [
            (1, 2, &[1, 2]),
            (2, 3, &[3]),
            (3, 3, &[1, 2, 3]),
            (4, 4, &[2, 4]),
        ];
        rt.block_on(async {
            for (txid, commit, pages) in files {
                let h = Header::new(
                    PS as u32,
                    commit,
                    TxId(txid),
                    TxId(txid),
                    1_000 * txid as i64,
                );
                let mut enc = Encoder::new(Vec::new(), h, "t").unwrap();
                for p in pages {
                    enc.encode_page(*p, &[txid as u8; PS]).unwrap();
                }
                let bytes = enc.finish().unwrap().writer;
                let local = meta.l0_path(TxId(txid), TxId(txid));
                std::fs::write(&local, &bytes).unwrap();
                let info = m
                    .client
                    .write_ltx_file(0, TxId(txid), TxId(txid), LtxBody::Bytes(bytes.into()))
                    .await
                    .unwrap();
                m.note_uploaded(&[info]);
            }
            m.note_full_state_l0(TxId(3));
            for txid in [1, 2] {
                std::fs::remove_file(meta.l0_path(TxId(txid), TxId(txid))).unwrap();
            }
            m.client.delete_ltx_files(&m.state().l0[..2]).await.unwrap();
            let out = m.compact(1).await.unwrap().expect("an L1 file");
            assert_eq!((out.min_txid, out.max_txid), (TxId(1), TxId(4)));
            let bytes = m
                .client
                .read_ltx_range(1, TxId(1), TxId(4), 0, 0)
                .await
                .unwrap();
            let mut d = Decoder::new(&bytes[..], "l1").unwrap();
            assert_eq!(d.header().commit, 4);
            let mut buf = vec![0u8; PS];
            let mut got = Vec::new();
            while let Some(f) = d.next_page(&mut buf).unwrap() {
                got.push((f.pgno, buf[0]));
            }
            d.finish().unwrap();
            assert_eq!(got, [(1, 3), (2, 4), (3, 3), (4, 4)]);
        });
    }

    /// A stopping replicator waits for the run in flight: the next one
    /// cleans the scratch space that run may still be writing.
    #[test]
    fn detach_and_settle_waits_for_the_run_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let m = maintainer(LevelState::default(), dir.path());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let run = m.running.lock().await; // as run_due holds it
            let settle = {
                let m = m.clone();
                tokio::spawn(async move { m.detach_and_settle().await })
            };
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(!settle.is_finished(), "settled while a run was in flight");
            drop(run);
            tokio::time::timeout(Duration::from_secs(5), settle)
                .await
                .expect("settles once the run ends")
                .unwrap();
        });
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
