//! What the end-to-end file of every remote backend runs the same way
//! (`tests/s3.rs`, `tests/gcs.rs`, `tests/azure.rs`): a workload written
//! in bursts while a replicator ships it, and a fleet backed up to the
//! backend and brought back by `restore-pattern`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rusqlite::Connection;

use crate::{Workload, run_ok};

/// Steps `1..=steps` of `w`, one transaction each, with a pause of
/// `pause` after every hundred so that syncs land between bursts.
pub fn write_in_bursts(w: &Workload, conn: &Connection, steps: u64, pause: Duration) {
    for n in 1..=steps {
        w.step(conn, n, true);
        if n % 100 == 0 {
            std::thread::sleep(pause);
        }
    }
}

/// Sixty tenant databases under `dir/data/g<0-5>/t<i>.db`, each with a
/// few rows of its own; their paths.
pub fn tenant_databases(dir: &Path) -> Vec<PathBuf> {
    let data = dir.join("data");
    let mut paths = Vec::new();
    for i in 0..60 {
        let d = data.join(format!("g{}", i % 6));
        std::fs::create_dir_all(&d).expect("tenant directory");
        let p = d.join(format!("t{i}.db"));
        let c = Connection::open(&p).expect("open tenant");
        c.execute_batch("PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
            .expect("create tenant");
        for j in 0..=(i % 4) {
            c.execute(
                "INSERT INTO t(v) VALUES (?1)",
                [format!("tenant {i} row {j}")],
            )
            .expect("insert");
        }
        paths.push(p);
    }
    paths
}

/// A fleet backs up [`tenant_databases`] to `replica` (a URL with
/// `{path}`), and `restore-pattern` of `pattern` brings every one back
/// from one listing, equal row for row. `cmd` is our binary with the
/// backend's environment.
pub fn fleet_round_trip(dir: &Path, replica: &str, pattern: &str, cmd: impl Fn() -> Command) {
    let paths = tenant_databases(dir);
    let data = dir.join("data");
    run_ok({
        let mut c = cmd();
        c.args(["run", "--once", "--pattern"])
            .arg(format!("{}/**/*.db", data.display()))
            .args(["--replica", replica]);
        c
    });
    let out = dir.join("restored");
    run_ok({
        let mut c = cmd();
        c.args(["restore-pattern", "-workers", "8", "-output-dir"])
            .arg(&out)
            .arg(pattern);
        c
    });
    let rows = |p: &Path| -> String {
        Connection::open(p)
            .expect("open")
            .query_row("SELECT group_concat(v, ',') FROM t", [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    for p in &paths {
        let rel = p.strip_prefix(&data).expect("under data");
        assert_eq!(rows(&out.join(rel)), rows(p), "{}", rel.display());
    }
}

/// The key and timestamp [`large_file_round_trip`] writes.
pub const LARGE_FILE_KEY: &str = "db/ltx/9/0000000000000001-0000000000000007.ltx";
pub const LARGE_FILE_TIMESTAMP: &str = "2026-11-18T11:06:40.153Z";

/// Writes a 40 MiB LTX file (level 9, TXIDs 1-7, [`LARGE_FILE_TIMESTAMP`])
/// from disk through `client` (a replica at path `db`), past any
/// single-request size, and reads it back whole; its size.
pub fn large_file_round_trip(client: &dyn litestreampp_core::client::ReplicaClient) -> u64 {
    use litestreampp_core::TxId;
    use litestreampp_core::client::{LtxBody, conformance, read_range};
    let ltx = conformance::large_ltx(1, 7, 1_795_000_000_153, 40 << 20);
    let dir = tempfile::tempdir().expect("tempdir");
    let local = dir.path().join("big.ltx");
    std::fs::write(&local, &ltx).expect("write the file");
    crate::runtime().block_on(async {
        let info = client
            .write_ltx_file(9, TxId(1), TxId(7), LtxBody::File(local.clone()))
            .await
            .expect("upload");
        assert_eq!(info.size, ltx.len() as u64);
        let back = read_range(client, &info, 0, 0).await.expect("read back");
        assert!(back == ltx, "the stored file differs from the one sent");
    });
    ltx.len() as u64
}

/// The conformance suite with one request in twenty failing (500s,
/// resets, truncated bodies, stalls) through a fault proxy in front of the
/// server on `server_port`: the retry layer rides it out and every rule
/// still holds. Then nine in ten large bodies cut in half: every way of
/// reading a file (a stream, a range of it, into memory) resumes where
/// its body was cut. `open` gives the client that reaches the server on
/// the port it is given.
pub fn conformance_through_faults(
    server_port: u16,
    seed: u64,
    open: impl Fn(u16) -> std::sync::Arc<dyn litestreampp_core::client::ReplicaClient>,
) {
    use crate::faultproxy::{FaultMix, FaultProxy};
    // A stall far below the clients' 30 s idle bound only delays the
    // request; a short one exercises the same path at a fraction of the
    // suite's time (it runs thousands of requests, one at a time).
    let mix = FaultMix {
        stall: std::time::Duration::from_millis(200),
        ..FaultMix::all()
    };
    let proxy = FaultProxy::start(server_port, mix, seed);
    proxy.set_rate(0.05);
    let client = open(proxy.port);
    crate::runtime().block_on(litestreampp_core::client::conformance::run(client.as_ref()));
    eprintln!("fault proxy: {}", proxy.stats.summary());
    assert!(
        proxy.stats.faults() >= 3,
        "too few faults injected: {}",
        proxy.stats.summary()
    );

    let direct = open(server_port);
    let cut = FaultProxy::start(server_port, FaultMix::cut_large_bodies(64 << 10), seed);
    cut.set_rate(0.9);
    let through = open(cut.port);
    crate::runtime().block_on(reads_resume(direct.as_ref(), through.as_ref()));
    eprintln!("cutting proxy: {}", cut.stats.summary());
    assert!(
        cut.stats
            .truncated
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3,
        "too few bodies cut: {}",
        cut.stats.summary()
    );
}

/// Compaction to two levels, snapshots and retention every few seconds:
/// a replicator that lists, reads, writes and deletes all the time.
const BUSY_LEVELS: &str = "levels:\n  - interval: 1s\n  - interval: 3s\nsnapshot:\n  interval: 4s\n  retention: 4s\nl0-retention: 2s\n";

/// Replication with one request in ten failing (500s, resets, truncated
/// bodies, short stalls, WebDAV listings answered 404) through a fault proxy in front of the server on
/// `server_port`, while compaction, snapshots and retention run every few
/// seconds: the replicator rides it out, and a restore straight from the
/// server, its integrity checked in full, holds every commit. `config`
/// writes the `dbs:` part of a config file for the database, the server
/// at the port it is given (the proxy's, then the server's own), and
/// `cmd` our binary with the backend's environment for that port;
/// `shipped` sees the first upload.
pub fn replication_through_faults(
    server_port: u16,
    seed: u64,
    config: impl Fn(&Path, u16) -> String,
    cmd: impl Fn(u16) -> Command,
    shipped: impl FnMut() -> bool,
) {
    use crate::faultproxy::{FaultMix, FaultProxy};
    let proxy = FaultProxy::start(
        server_port,
        FaultMix {
            stall: Duration::from_millis(500),
            lose_listings: true,
            ..FaultMix::all()
        },
        seed,
    );
    proxy.set_rate(0.10);
    let steps = 1500;
    let r = replicate_by_config(
        |db| format!("{BUSY_LEVELS}{}", config(db, proxy.port)),
        shipped,
        cmd(proxy.port),
        seed,
        steps,
    );
    let direct = r.dir.path().join("direct.yml");
    std::fs::write(
        &direct,
        format!("{BUSY_LEVELS}{}", config(&r.db, server_port)),
    )
    .expect("write config");
    let out = r.dir.path().join("restored.db");
    run_ok({
        let mut c = cmd(server_port);
        c.args(["restore", "-config"])
            .arg(&direct)
            .args(["-integrity-check", "full", "-o"])
            .arg(&out)
            .arg(&r.db);
        c
    });
    assert_eq!(crate::verify_restore(&out, &r.workload), steps);
    eprintln!("replication through faults: {}", proxy.stats.summary());
    assert!(
        proxy.stats.faults() >= 5,
        "too few faults injected: {}",
        proxy.stats.summary()
    );
}

/// A 4 MiB file written through `direct` reads back whole through
/// `through` (whose large bodies are cut): streamed, as a range from an
/// offset, and into memory.
async fn reads_resume(
    direct: &dyn litestreampp_core::client::ReplicaClient,
    through: &dyn litestreampp_core::client::ReplicaClient,
) {
    use litestreampp_core::TxId;
    use litestreampp_core::client::{LtxBody, conformance};
    use tokio::io::AsyncReadExt;
    let ltx = conformance::large_ltx(1, 7, 1_795_000_000_153, 4 << 20);
    direct
        .write_ltx_file(9, TxId(1), TxId(7), LtxBody::Bytes(ltx.clone()))
        .await
        .expect("upload");
    let (off, len) = (1000u64, 3u64 << 20);
    let mut streamed = Vec::new();
    let mut r = through
        .open_ltx_file(9, TxId(1), TxId(7), 0, 0)
        .await
        .expect("open");
    r.read_to_end(&mut streamed).await.expect("stream");
    assert!(streamed == ltx, "the streamed file differs");
    let mut ranged = Vec::new();
    let mut r = through
        .open_ltx_file(9, TxId(1), TxId(7), off, len)
        .await
        .expect("open a range");
    r.read_to_end(&mut ranged).await.expect("stream a range");
    assert!(
        ranged == ltx[off as usize..(off + len) as usize],
        "the streamed range differs"
    );
    let read = through
        .read_ltx_range(9, TxId(1), TxId(7), 0, 0)
        .await
        .expect("read");
    assert!(read == ltx, "the file read into memory differs");
    direct.delete_all().await.expect("clean up");
}

/// A database replicated through a config file (by Go or by us), shipped
/// and stopped: what the compatibility tests restore from.
#[derive(Debug)]
pub struct Replicated {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub cfg: PathBuf,
    pub workload: Workload,
}

/// `cmd` (Go or us, with the backend's environment) replicates `steps`
/// transactions (seed `seed`) by the config file `config` writes for the
/// database's path, until `shipped` sees the first upload and every step
/// is written; then it is stopped.
pub fn replicate_by_config(
    config: impl Fn(&Path) -> String,
    shipped: impl FnMut() -> bool,
    mut cmd: Command,
    seed: u64,
    steps: u64,
) -> Replicated {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let cfg = dir.path().join("litestream.yml");
    std::fs::write(&cfg, config(&db)).expect("write config");
    let workload = Workload::new(seed);
    let conn = crate::open_app(&db, None);
    workload.setup(&conn);
    cmd.args(["replicate", "-config"]).arg(&cfg);
    let child = crate::spawn_logged(cmd, &dir.path().join("replicate.log"));
    crate::wait_for("the first upload", Duration::from_secs(30), shipped);
    write_in_bursts(&workload, &conn, steps, Duration::from_millis(150));
    // Time for the last sync to land before the stop.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(crate::terminate(child, Duration::from_secs(30)), 0);
    Replicated {
        dir,
        db,
        cfg,
        workload,
    }
}

impl Replicated {
    /// Restores by `cmd` (Go or us) from the config file, at `txid` if
    /// given, to `name` in the directory; its path.
    pub fn restore(&self, mut cmd: Command, name: &str, txid: Option<&str>) -> PathBuf {
        let out = self.dir.path().join(name);
        cmd.args(["restore", "-config"]).arg(&self.cfg);
        if let Some(t) = txid {
            cmd.args(["-txid", t]);
        }
        cmd.arg("-o").arg(&out).arg(&self.db);
        run_ok(cmd);
        out
    }

    /// Go restores every commit; our restores at half of `max_txid` and
    /// at it equal Go's, byte for byte. `go` and `ours` give the commands
    /// with the backend's environment.
    pub fn go_restores_and_we_match(
        &self,
        steps: u64,
        max_txid: u64,
        go: impl Fn() -> Command,
        ours: impl Fn() -> Command,
    ) {
        let go_out = self.restore(go(), "go.db", None);
        assert_eq!(
            crate::verify_restore(&go_out, &self.workload),
            steps,
            "Go's restore"
        );
        for txid in [max_txid / 2, max_txid] {
            let t = format!("{txid:016x}");
            let a = self.restore(ours(), &format!("ours-{t}.db"), Some(&t));
            let b = self.restore(go(), &format!("go-{t}.db"), Some(&t));
            assert!(
                crate::same_bytes(&a, &b),
                "TXID {t}: our restore differs from Go's"
            );
        }
    }

    /// We restore the same bytes Go restores, and every commit.
    pub fn we_restore_as_go(&self, steps: u64, go: Command, ours: Command) -> PathBuf {
        let go_out = self.restore(go, "go.db", None);
        let our_out = self.restore(ours, "ours.db", None);
        assert!(
            crate::same_bytes(&go_out, &our_out),
            "our restore differs from Go's"
        );
        assert_eq!(crate::verify_restore(&our_out, &self.workload), steps);
        go_out
    }
}
