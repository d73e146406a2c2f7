//! The `webdav` backend against a real WebDAV server (`rclone serve
//! webdav`, started per test on a free port with a user and password): the
//! conformance suite, straight and through the fault proxy; compatibility
//! with Go Litestream 0.5.17 in both directions on one config file; large
//! files streamed and moved into place; a fleet replicating to
//! `webdav://…/{path}` and `restore-pattern` from one listing; the
//! password kept out of every message.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::process::Command;

use litestreampp_core::client::webdav::WebdavSettings;
use litestreampp_core::client::{ClientPool, conformance, webdav_client};
use litestreampp_core::redact::Secret;
use litestreampp_e2e::backends::{
    self, LARGE_FILE_KEY, Replicated, fleet_round_trip, large_file_round_trip, replicate_by_config,
};
use litestreampp_e2e::webdav::{PASSWORD, Rclone, USER};
use litestreampp_e2e::*;

fn settings(url: &str, path: &str) -> WebdavSettings {
    WebdavSettings {
        url: url.into(),
        path: path.into(),
        username: Some(USER.into()),
        password: Some(Secret::new(PASSWORD)),
    }
}

/// `cmd` (Go or us) replicates `steps` transactions to `path` on the
/// server by a config file with Go's keys.
fn replicate(dav: &Rclone, path: &str, cmd: Command, seed: u64, steps: u64) -> Replicated {
    let url = dav.url();
    replicate_by_config(
        |db| {
            format!(
                "dbs:\n  - path: {}\n    replica:\n      type: webdav\n      webdav-url: {url}\n      webdav-username: {USER}\n      webdav-password: {PASSWORD}\n      path: {path}\n      sync-interval: 100ms\n",
                db.display()
            )
        },
        || !dav.files().is_empty(),
        cmd,
        seed,
        steps,
    )
}

#[test]
fn conformance_against_rclone() {
    let dav = Rclone::start();
    runtime().block_on(async {
        let c = webdav_client(&settings(&dav.url(), "/raw/db")).unwrap();
        conformance::run(c.as_ref()).await;
        // At the server's root.
        let c = ClientPool::default()
            .open_webdav(&settings(&dav.url(), ""))
            .unwrap();
        conformance::run(c.as_ref()).await;
    });
    let left: Vec<_> = dav
        .files()
        .into_iter()
        .filter(|(f, _)| f.contains("ltx"))
        .collect();
    assert!(left.is_empty(), "delete_all left files behind: {left:?}");
}

/// One in twenty requests fails (500s, resets, truncated bodies, stalls):
/// the retry layer rides it out and every rule of the suite still holds.
#[test]
fn conformance_through_faults() {
    let dav = Rclone::start();
    backends::conformance_through_faults(dav.port, 31, |port| {
        webdav_client(&settings(&format!("http://127.0.0.1:{port}"), "db")).unwrap()
    });
}

/// Three in ten directory listings answered 404 (through the fault proxy)
/// while the directories exist: retried, never read as an empty replica.
/// Every listing (all files, one level, the whole tree) equals the
/// server's, every time; a replica that does not exist still lists as
/// empty.
#[test]
fn listings_answered_404_are_not_an_empty_replica() {
    use futures::StreamExt;
    use litestreampp_core::TxId;
    use litestreampp_core::client::{FileInfo, LtxBody};
    use litestreampp_e2e::faultproxy::{FaultMix, FaultProxy};
    let dav = Rclone::start();
    let proxy = FaultProxy::start(dav.port, FaultMix::lost_listings(), 41);
    proxy.set_rate(0.3);
    let via_proxy = format!("http://127.0.0.1:{}", proxy.port);
    let direct = webdav_client(&settings(&dav.url(), "tenant/db")).unwrap();
    let through = webdav_client(&settings(&via_proxy, "tenant/db")).unwrap();
    let missing = webdav_client(&settings(&via_proxy, "no/such/db")).unwrap();
    let ids = |v: &[FileInfo]| -> Vec<(u32, TxId, TxId)> {
        v.iter()
            .map(|f| (f.level, f.min_txid, f.max_txid))
            .collect()
    };
    runtime().block_on(async {
        for (level, min, max) in [(0, 1, 1), (0, 2, 2), (1, 1, 2), (9, 1, 2)] {
            let ltx = conformance::large_ltx(min, max, 1_795_000_000_000, 4096);
            direct
                .write_ltx_file(level, TxId(min), TxId(max), LtxBody::Bytes(ltx))
                .await
                .unwrap();
        }
        let all = ids(&direct.all_ltx_files().await.unwrap());
        let tree = direct.list_tree().await.unwrap().len();
        assert_eq!(all.len(), 4);
        for _ in 0..20 {
            assert_eq!(ids(&through.all_ltx_files().await.unwrap()), all);
            let level0: Vec<_> = through
                .ltx_files(0, TxId(0), false)
                .await
                .unwrap()
                .collect()
                .await;
            assert_eq!(level0.len(), 2, "level 0 listed as {level0:?}");
            assert_eq!(through.list_tree().await.unwrap().len(), tree);
            assert!(missing.all_ltx_files().await.unwrap().is_empty());
        }
    });
    eprintln!("fault proxy: {}", proxy.stats.summary());
    assert!(
        proxy
            .stats
            .lost_listings
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 20,
        "too few listings lost: {}",
        proxy.stats.summary()
    );
}

/// Replication through one request in ten failing, with compaction and
/// retention running: a restore straight from rclone holds every commit.
#[test]
fn replication_through_faults() {
    let dav = Rclone::start();
    backends::replication_through_faults(
        dav.port,
        47,
        |db, port| {
            format!(
                "dbs:\n  - path: {}\n    checkpoint-interval: 1s\n    replica:\n      type: webdav\n      webdav-url: http://127.0.0.1:{port}\n      webdav-username: {USER}\n      webdav-password: {PASSWORD}\n      path: faulty/db\n      sync-interval: 50ms\n",
                db.display()
            )
        },
        |_| ours(),
        || !dav.files().is_empty(),
    );
}

/// Go replicates to WebDAV; we restore the same bytes Go restores, from
/// the same config file and from the URL form.
#[test]
fn go_replicates_to_webdav_we_restore() {
    let dav = Rclone::start();
    let steps = 600;
    let r = replicate(&dav, "apps/one", go(), 81, steps);
    for (f, _) in dav.files() {
        assert!(f.starts_with("apps/one/ltx/"), "Go wrote {f}");
    }
    let go_out = r.we_restore_as_go(steps, go(), ours());
    let url_out = r.dir.path().join("url.db");
    run_ok({
        let mut c = ours();
        c.args(["restore", "-o"])
            .arg(&url_out)
            .arg(dav.replica_url("apps/one"));
        c
    });
    assert!(same_bytes(&go_out, &url_out), "restore by URL differs");
}

/// We replicate to WebDAV with Go's layout, leaving no temporary file; Go
/// restores every commit, and our restores at TXIDs equal Go's.
#[test]
fn we_replicate_to_webdav_go_restores() {
    let dav = Rclone::start();
    let steps = 800;
    let r = replicate(&dav, "tenant/a.db", ours(), 82, steps);
    let mut max = 0;
    for (f, _) in dav.files() {
        let name = f
            .strip_prefix("tenant/a.db/ltx/")
            .and_then(|r| r.split_once('/'))
            .map(|(_, n)| n)
            .unwrap_or_else(|| panic!("{f} is not in Go's layout"));
        let (_, m) = litestreampp_core::txid::parse_ltx_file_name(name)
            .unwrap_or_else(|| panic!("{f} is not an LTX file (a temporary left behind?)"));
        max = max.max(m.0);
    }
    r.go_restores_and_we_match(steps, max, go, ours);
}

/// A file far over any single-request size is streamed from disk to a
/// temporary name and moved into place: it reads back whole, and only the
/// final file is on the server.
#[test]
fn large_files_are_streamed_and_moved_into_place() {
    let dav = Rclone::start();
    let c = webdav_client(&settings(&dav.url(), "db")).unwrap();
    let size = large_file_round_trip(c.as_ref());
    assert_eq!(dav.files(), vec![(LARGE_FILE_KEY.to_string(), size)]);
}

/// A fleet backs up to `webdav://…/{path}` and `restore-pattern` brings
/// every database back from one listing of the prefix.
#[test]
fn fleet_backs_up_to_webdav_and_restore_pattern_brings_it_back() {
    let dav = Rclone::start();
    let dir = tempfile::tempdir().unwrap();
    fleet_round_trip(
        dir.path(),
        &dav.replica_url("backups/{path}"),
        &dav.replica_url("backups/**/*.db"),
        ours,
    );
}

/// A wrong password is a clear, prompt error naming the replica; neither
/// password appears in any output, nor in the fleet's log lines.
#[test]
fn passwords_never_reach_the_output() {
    let dav = Rclone::start();
    let dir = tempfile::tempdir().unwrap();
    let wrong = "N0tThePassw0rd";
    let url = format!("webdav://{USER}:{wrong}@127.0.0.1:{}/db", dav.port);
    let (code, out) = run_err({
        let mut c = ours();
        c.args(["restore", "-o"])
            .arg(dir.path().join("x.db"))
            .arg(&url);
        c
    });
    assert_ne!(code, 0);
    assert!(
        out.contains("webdav://"),
        "error does not name the replica: {out}"
    );
    assert!(!out.contains(wrong), "the password was printed: {out}");
    let db = dir.path().join("a.db");
    open_app(&db, None)
        .execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    let o = ours()
        .args(["replicate", "-once"])
        .arg(&db)
        .arg(dav.replica_url("ok"))
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "replicate -once failed: {all}");
    assert!(
        all.contains("webdav://"),
        "no log line names the replica: {all}"
    );
    assert!(!all.contains(PASSWORD), "the password was printed: {all}");
}
