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
/// still holds. `open` gives the client that reaches the server through
/// the proxy's port.
pub fn conformance_through_faults(
    server_port: u16,
    seed: u64,
    open: impl FnOnce(u16) -> std::sync::Arc<dyn litestreampp_core::client::ReplicaClient>,
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
}
