//! The tenants of a fleet as the soak plays them (`tests/soak.rs`): a
//! steady mix of small transactions on a busy few, bursts, large
//! transactions, VACUUM, checkpoints while the fleet holds the database
//! cold, and tenants created, deleted and replaced, all from one thread.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rusqlite::Connection;

use crate::open_app;

/// The workload's rhythm: how often each kind of event happens.
const BURST_EVERY: Duration = Duration::from_secs(5);
const LARGE_EVERY: Duration = Duration::from_secs(20);
const COLD_CHECKPOINT_EVERY: Duration = Duration::from_secs(10);
const VACUUM_EVERY: Duration = Duration::from_secs(15);
const NEW_EVERY: Duration = Duration::from_secs(20);
const DELETE_EVERY: Duration = Duration::from_secs(20);
const REPLACE_EVERY: Duration = Duration::from_secs(30);
/// Small transactions per second, most of them on a busy few.
const SMALL_PER_SEC: u64 = 40;
/// Longer than the soak fleet's idle timeout (3 s) plus a demotion: the
/// database is cold.
const COLD_AFTER: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Tenant {
    pub path: PathBuf,
    touched: Instant,
}

/// What the workload did, for the report.
#[derive(Debug, Default)]
pub struct Tally {
    pub small: u64,
    pub bursts: u64,
    pub large: u64,
    pub cold_checkpoints: u64,
    pub vacuums: u64,
    pub created: u64,
    pub deleted: u64,
    pub replaced: u64,
}

/// The tenants' databases and everything done to them. One thread does
/// it all, so no two of its operations race each other; they race the
/// fleet.
#[derive(Debug)]
pub struct Tenants {
    data: PathBuf,
    pub live: Vec<Tenant>,
    next: usize,
    rng: StdRng,
    large: usize,
    pub tally: Tally,
}

fn sidecar(db: &Path, suffix: &str) -> PathBuf {
    let mut p = db.as_os_str().to_os_string();
    p.push(suffix);
    PathBuf::from(p)
}

fn create_db(path: &Path, tenant: usize, flavour: &str) {
    let c = open_app(path, None);
    c.execute_batch(
        "CREATE TABLE meta(id INTEGER PRIMARY KEY, step INTEGER);
         CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
         INSERT INTO meta VALUES (1, 0);",
    )
    .unwrap();
    c.execute(
        "INSERT INTO t(id, v) VALUES (1, ?1)",
        [format!("{flavour} tenant {tenant}")],
    )
    .unwrap();
}

impl Tenants {
    /// `n` tenants under `data`; a large transaction writes `large` bytes.
    pub fn create(data: &Path, n: usize, large: usize) -> Tenants {
        let mut t = Tenants {
            data: data.to_path_buf(),
            live: Vec::with_capacity(n),
            next: 0,
            rng: StdRng::seed_from_u64(4),
            large,
            tally: Tally::default(),
        };
        for _ in 0..n {
            t.add("first");
        }
        t
    }

    fn add(&mut self, flavour: &str) {
        let i = self.next;
        self.next += 1;
        let dir = self.data.join(format!("g{}", i % 100));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("t{i}.db"));
        create_db(&path, i, flavour);
        self.live.push(Tenant {
            path,
            touched: Instant::now(),
        });
    }

    /// A tenant: 80 % of the time one of the busy few (the first 2 %,
    /// at least 8), else any.
    fn pick(&mut self) -> usize {
        let busy = (self.live.len() / 50).max(8).min(self.live.len());
        if self.rng.random_bool(0.8) {
            self.rng.random_range(0..busy)
        } else {
            self.rng.random_range(0..self.live.len())
        }
    }

    /// A tenant nobody wrote for [`COLD_AFTER`] (cold in the fleet).
    fn pick_cold(&mut self) -> Option<usize> {
        (0..32)
            .map(|_| self.rng.random_range(0..self.live.len()))
            .find(|&i| self.live[i].touched.elapsed() > COLD_AFTER)
    }

    fn open(&mut self, i: usize) -> Connection {
        self.live[i].touched = Instant::now();
        open_app(&self.live[i].path, None)
    }

    fn small(&mut self, i: usize) {
        let c = self.open(i);
        let id = 2 + self.rng.random_range(0..50i64);
        let tx = c.unchecked_transaction().unwrap();
        tx.execute(
            "INSERT OR REPLACE INTO t(id, v) VALUES (?1, randomblob(200))",
            [id],
        )
        .unwrap();
        tx.execute("UPDATE meta SET step = step + 1 WHERE id = 1", [])
            .unwrap();
        tx.commit().unwrap();
        self.tally.small += 1;
    }

    fn burst(&mut self) {
        let i = self.pick();
        for _ in 0..30 {
            self.small(i);
        }
        self.tally.bursts += 1;
    }

    /// One transaction of `large` bytes in 64 KiB rows; the rows' ids
    /// are fixed, so a database grows by it once.
    fn large(&mut self) {
        let i = self.pick();
        let c = self.open(i);
        let tx = c.unchecked_transaction().unwrap();
        for k in 0..(self.large >> 16).max(1) {
            tx.execute(
                "INSERT OR REPLACE INTO t(id, v) VALUES (?1, randomblob(65536))",
                [1000 + k as i64],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        self.tally.large += 1;
    }

    /// A write, then a checkpoint of the whole WAL into the database file,
    /// to a database the fleet holds no connection to.
    fn cold_checkpoint(&mut self) {
        let Some(i) = self.pick_cold() else { return };
        self.small(i);
        let c = self.open(i);
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        self.tally.cold_checkpoints += 1;
    }

    fn vacuum(&mut self) {
        let i = self.pick();
        let c = self.open(i);
        c.execute_batch("DELETE FROM t WHERE id >= 1000; VACUUM;")
            .unwrap();
        self.tally.vacuums += 1;
    }

    /// Deletes a tenant that is not one of the busy few, as an operator
    /// would: the database and its WAL and shared memory.
    fn delete(&mut self) {
        if self.live.len() < 16 {
            return;
        }
        let busy = (self.live.len() / 50).max(8);
        let i = self.rng.random_range(busy..self.live.len());
        let t = self.live.swap_remove(i);
        for p in [
            t.path.clone(),
            sidecar(&t.path, "-wal"),
            sidecar(&t.path, "-shm"),
        ] {
            let _ = std::fs::remove_file(p);
        }
        self.tally.deleted += 1;
    }

    /// Replaces a tenant's database with another one (a tenant moved in
    /// from elsewhere): built beside it under a name outside the pattern,
    /// the old WAL checkpointed, then renamed over it, the old WAL and
    /// shared memory removed.
    fn replace(&mut self) {
        let i = self.pick();
        let path = self.live[i].path.clone();
        let fresh = sidecar(&path, ".incoming");
        create_db(&fresh, self.next + 1_000_000, "replaced");
        {
            let c = open_app(&fresh, None);
            c.execute("INSERT INTO t(id, v) VALUES (2, randomblob(3000))", [])
                .unwrap();
        }
        let _ = std::fs::remove_file(sidecar(&fresh, "-wal"));
        let _ = std::fs::remove_file(sidecar(&fresh, "-shm"));
        let c = self.open(i);
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        drop(c);
        // The old WAL goes before the new file arrives: a WAL is not tied
        // to its database file, and SQLite opening the new file beside the
        // old WAL would replay the old frames into it. (The checkpoint
        // above is busy while the fleet pins the WAL, so it may hold
        // frames.)
        let _ = std::fs::remove_file(sidecar(&path, "-wal"));
        let _ = std::fs::remove_file(sidecar(&path, "-shm"));
        std::fs::rename(&fresh, &path).unwrap();
        self.live[i].touched = Instant::now();
        self.tally.replaced += 1;
    }

    /// Runs the mix until `stop`.
    pub fn run(mut self, stop: &AtomicBool) -> Tenants {
        let start = Instant::now();
        let mut due = [Duration::ZERO; 7];
        let every = [
            BURST_EVERY,
            LARGE_EVERY,
            COLD_CHECKPOINT_EVERY,
            VACUUM_EVERY,
            NEW_EVERY,
            DELETE_EVERY,
            REPLACE_EVERY,
        ];
        for (k, d) in due.iter_mut().enumerate() {
            *d = every[k] / 2 + Duration::from_millis(300 * k as u64);
        }
        let tick = Duration::from_millis(1000 / SMALL_PER_SEC);
        while !stop.load(Ordering::Relaxed) {
            let i = self.pick();
            self.small(i);
            let now = start.elapsed();
            for k in 0..due.len() {
                if now < due[k] {
                    continue;
                }
                due[k] += every[k];
                match k {
                    0 => self.burst(),
                    1 => self.large(),
                    2 => self.cold_checkpoint(),
                    3 => self.vacuum(),
                    4 => self.add("new"),
                    5 => self.delete(),
                    _ => self.replace(),
                }
                if k == 4 {
                    self.tally.created += 1;
                }
            }
            std::thread::sleep(tick);
        }
        self
    }
}
