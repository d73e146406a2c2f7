//! The `sftp` backend against a real SSH server (OpenSSH's `sshd`, run
//! unprivileged per test on a free port, serving `internal-sftp`): the
//! conformance suite at a directory and at the top of the server's
//! writable tree; compatibility with Go Litestream 0.5.17 in both
//! directions on one config file with Go's keys (`host`, `user`, `path`,
//! `key-path`, `host-key`); large files streamed and renamed into place; a
//! fleet replicating to `sftp://…/{path}` and `restore-pattern` from one
//! listing; a wrong host key refused; a password kept out of every
//! message.
//!
//! Not here: SFTP through the fault proxy, which speaks HTTP only; the
//! retry layer over SFTP is the one every backend shares.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::Command;

use litestreampp_core::client::sftp::SftpSettings;
use litestreampp_core::client::{ClientPool, conformance, sftp_client};
use litestreampp_e2e::backends::{
    LARGE_FILE_KEY, Replicated, fleet_round_trip, large_file_round_trip, replicate_by_config,
};
use litestreampp_e2e::sftp::SshServer;
use litestreampp_e2e::*;

fn settings(ssh: &SshServer, path: &Path) -> SftpSettings {
    SftpSettings {
        host: format!("127.0.0.1:{}", ssh.port),
        user: ssh.user.clone(),
        path: path.to_string_lossy().into_owned(),
        key_path: Some(ssh.key_path.clone()),
        host_key: Some(ssh.host_key.clone()),
        ..SftpSettings::default()
    }
}

/// `cmd` (Go or us) replicates `steps` transactions to `<data>/<rest>` on
/// the server by a config file with Go's keys.
fn replicate(ssh: &SshServer, rest: &str, cmd: Command, seed: u64, steps: u64) -> Replicated {
    replicate_by_config(
        |db| {
            format!(
                "dbs:\n  - path: {}\n    replica:\n{}      sync-interval: 100ms\n",
                db.display(),
                ssh.replica_keys(rest, "      ")
            )
        },
        || !ssh.files().is_empty(),
        cmd,
        seed,
        steps,
    )
}

#[test]
fn conformance_against_sshd() {
    let ssh = SshServer::start();
    runtime().block_on(async {
        let c = sftp_client(settings(&ssh, &ssh.data.join("raw/db"))).unwrap();
        conformance::run(c.as_ref()).await;
        // At the top of the server's writable tree, through the pool.
        let c = ClientPool::default()
            .open_sftp(settings(&ssh, &ssh.data))
            .unwrap();
        conformance::run(c.as_ref()).await;
    });
    let left = ssh.files();
    assert!(left.is_empty(), "delete_all left files behind: {left:?}");
}

/// Go replicates over SFTP; we restore the same bytes Go restores, from
/// the same config file and from the URL form.
#[test]
fn go_replicates_to_sftp_we_restore() {
    let ssh = SshServer::start();
    let steps = 400;
    let r = replicate(&ssh, "apps/one", go(), 91, steps);
    for (f, _) in ssh.files() {
        assert!(f.starts_with("apps/one/ltx/"), "Go wrote {f}");
    }
    let go_out = r.we_restore_as_go(steps, go(), ours());
    let url_out = r.dir.path().join("url.db");
    run_ok({
        let mut c = ours();
        c.args(["restore", "-o"])
            .arg(&url_out)
            .arg(ssh.keyed_url("apps/one"));
        c
    });
    assert!(same_bytes(&go_out, &url_out), "restore by URL differs");
}

/// We replicate over SFTP with Go's layout, leaving no temporary file; Go
/// restores every commit, and our restores at TXIDs equal Go's.
#[test]
fn we_replicate_to_sftp_go_restores() {
    let ssh = SshServer::start();
    let steps = 600;
    let r = replicate(&ssh, "tenant/a.db", ours(), 92, steps);
    let mut max = 0;
    for (f, _) in ssh.files() {
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

/// A file far over any single write is streamed from disk to a temporary
/// name and renamed into place: it reads back whole, and only the final
/// file is on the server.
#[test]
fn large_files_are_streamed_and_renamed_into_place() {
    let ssh = SshServer::start();
    let c = sftp_client(settings(&ssh, &ssh.data.join("db"))).unwrap();
    let size = large_file_round_trip(c.as_ref());
    assert_eq!(ssh.files(), vec![(LARGE_FILE_KEY.to_string(), size)]);
}

/// A fleet backs up to `sftp://…/{path}` (the key and host key in the
/// URL's query) and `restore-pattern` brings every database back from one
/// listing of the prefix.
#[test]
fn fleet_backs_up_over_sftp_and_restore_pattern_brings_it_back() {
    let ssh = SshServer::start();
    let dir = tempfile::tempdir().unwrap();
    fleet_round_trip(
        dir.path(),
        &ssh.keyed_url("backups/{path}"),
        &ssh.keyed_url("backups/**/*.db"),
        ours,
    );
}

/// A server whose host key is not the configured one is refused before
/// anything is sent, with an error naming the replica and both keys'
/// fingerprints.
#[test]
fn a_wrong_host_key_is_refused() {
    let ssh = SshServer::start();
    let other = SshServer::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    open_app(&db, None)
        .execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    let cfg = dir.path().join("litestream.yml");
    let keys = ssh.replica_keys("db", "      ");
    let wrong = keys.replace(&ssh.host_key, &other.host_key);
    std::fs::write(
        &cfg,
        format!("dbs:\n  - path: {}\n    replica:\n{wrong}", db.display()),
    )
    .unwrap();
    let (code, out) = run_err({
        let mut c = ours();
        c.args(["replicate", "-once", "-config"]).arg(&cfg);
        c
    });
    assert_ne!(code, 0, "a wrong host key was accepted: {out}");
    assert!(
        out.contains("sftp://"),
        "error does not name the replica: {out}"
    );
    assert!(out.contains("host key"), "error does not say why: {out}");
    assert!(ssh.files().is_empty(), "something was written: {out}");
}

/// A password is refused by this server (unprivileged, it cannot check
/// one): the error is clear and names the replica, and the password
/// appears in no output.
#[test]
fn passwords_never_reach_the_output() {
    let ssh = SshServer::start();
    let dir = tempfile::tempdir().unwrap();
    let secret = "N0tThePassw0rd";
    let url = format!(
        "sftp://{}:{secret}@127.0.0.1:{}{}/db",
        ssh.user,
        ssh.port,
        ssh.data.display()
    );
    let (code, out) = run_err({
        let mut c = ours();
        c.args(["restore", "-o"])
            .arg(dir.path().join("x.db"))
            .arg(&url);
        c
    });
    assert_ne!(code, 0);
    assert!(
        out.contains("sftp://"),
        "error does not name the replica: {out}"
    );
    assert!(!out.contains(secret), "the password was printed: {out}");
    assert!(!dir.path().join("x.db").exists(), "a restore was written");
}

/// Keys a Go config may hold that SFTP does not take are refused by name.
#[test]
fn keys_of_other_backends_are_refused() {
    let ssh = SshServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg: PathBuf = dir.path().join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    replica:\n{}      region: us-east-1\n",
            dir.path().join("a.db").display(),
            ssh.replica_keys("db", "      ")
        ),
    )
    .unwrap();
    let (code, out) = run_err({
        let mut c = ours();
        c.args(["replicate", "-once", "-config"]).arg(&cfg);
        c
    });
    assert_ne!(code, 0);
    assert!(out.contains("region"), "the key is not named: {out}");
}
