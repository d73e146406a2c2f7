//! `lsbench backends`: every remote backend on the local server its tests
//! use (Azurite, fake-gcs-server, OpenSSH's sshd, `rclone serve webdav`,
//! `nats-server -js`, all started by the test harness on 127.0.0.1): the
//! replicate/restore of a large database and a `restore-pattern` of a
//! fleet of small ones, side by side with Go Litestream wherever Go can be
//! pointed at the same server.
//!
//! Each figure is bounded by a local emulator, not by a cloud service:
//! the ratio between the tools is the finding, the absolute rate says what
//! the emulator serves.

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::rc::Rc;

use anyhow::{Context, Result, bail};
use litestreampp_e2e::azure::{ACCOUNT, ACCOUNT_KEY, Azurite};
use litestreampp_e2e::gcs::FakeGcs;
use litestreampp_e2e::nats::NatsServer;
use litestreampp_e2e::sftp::SshServer;
use litestreampp_e2e::webdav::Rclone;

use super::restore_pattern::{check_restored, databases};
use super::{BUCKET, Bench, Target, fresh_dir, measure, median};

/// What one `lsbench backends` run does.
#[derive(clap::Args)]
pub struct BackendsArgs {
    /// Backends to run, comma-separated: azure, gcs, sftp, webdav, nats.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "azure,gcs,sftp,webdav,nats"
    )]
    pub only: Vec<Kind>,
    /// The large database.
    #[arg(long, default_value_t = 1024)]
    pub size_mb: u64,
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Small databases restored by restore-pattern.
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Go `litestream restore` runs, one database each, one after another.
    #[arg(long, default_value_t = 100)]
    pub go_count: usize,
    #[arg(long, default_value_t = 10)]
    pub workers: usize,
    #[arg(long, default_value = "target/release/lsdemo")]
    pub lsdemo: std::path::PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Azure,
    Gcs,
    Sftp,
    Webdav,
    Nats,
}

enum Server {
    Azure(Azurite),
    Gcs(FakeGcs),
    Sftp(SshServer),
    Webdav(Rclone),
    Nats(NatsServer),
}

impl Server {
    /// A fresh server with the bucket `bench` (where buckets are made
    /// ahead: Azure's container, GCS's bucket).
    fn start(kind: Kind) -> Server {
        match kind {
            Kind::Azure => {
                let a = Azurite::start();
                a.create_container(BUCKET);
                Server::Azure(a)
            }
            Kind::Gcs => {
                let g = FakeGcs::start();
                g.create_bucket(BUCKET);
                Server::Gcs(g)
            }
            Kind::Sftp => Server::Sftp(SshServer::start()),
            Kind::Webdav => Server::Webdav(Rclone::start()),
            Kind::Nats => Server::Nats(NatsServer::start()),
        }
    }
}

/// One backend's server, restarted between runs so that no run pays for
/// what an earlier one stored.
pub struct Remote {
    kind: Kind,
    server: RefCell<Option<Server>>,
    /// NATS object stores made so far on this server.
    nats_buckets: RefCell<HashSet<String>>,
}

impl Remote {
    pub fn start(kind: Kind) -> Remote {
        Remote {
            kind,
            server: RefCell::new(Some(Server::start(kind))),
            nats_buckets: RefCell::default(),
        }
    }

    /// Stops the server and starts an empty one.
    pub fn restart(&self) -> Result<()> {
        drop(self.server.borrow_mut().take());
        *self.server.borrow_mut() = Some(Server::start(self.kind));
        self.nats_buckets.borrow_mut().clear();
        Ok(())
    }

    fn with<T>(&self, f: impl FnOnce(&Server) -> T) -> T {
        f(self.server.borrow().as_ref().expect("a running server"))
    }

    pub fn label(&self) -> &'static str {
        match self.kind {
            Kind::Azure => "Azure Blob (Azurite on 127.0.0.1)",
            Kind::Gcs => "GCS (fake-gcs-server on 127.0.0.1)",
            Kind::Sftp => "SFTP (OpenSSH sshd on 127.0.0.1)",
            Kind::Webdav => "WebDAV (rclone serve webdav on 127.0.0.1)",
            Kind::Nats => "a NATS object store (nats-server -js on 127.0.0.1)",
        }
    }

    /// A NATS replica's bucket is the first segment of its path; made on
    /// first use, as an operator makes it with `nats object add`.
    fn nats_bucket(&self, n: &NatsServer, path: &str) -> String {
        let bucket = path.split('/').next().unwrap_or(path).to_string();
        if self.nats_buckets.borrow_mut().insert(bucket.clone()) {
            n.create_bucket(&bucket);
        }
        bucket
    }

    /// Our replica URL for `path` (which may hold `{path}` or a glob).
    pub fn url(&self, path: &str) -> String {
        self.with(|s| match s {
            Server::Azure(a) => {
                format!("abs://{ACCOUNT}@{BUCKET}/{path}?endpoint={}", a.endpoint())
            }
            Server::Gcs(_) => format!("gs://{BUCKET}/{path}"),
            Server::Sftp(s) => s.keyed_url(path),
            Server::Webdav(r) => r.replica_url(path),
            Server::Nats(n) => {
                self.nats_bucket(n, path);
                n.url(path)
            }
        })
    }

    /// Go's config keys for a replica at `path`, each line indented by
    /// `indent`; `None` where Go cannot store at such a path (its NATS
    /// replica is a whole bucket, with no path inside it).
    pub fn go_replica(&self, path: &str, indent: &str) -> Option<String> {
        let i = indent;
        self.with(|s| match s {
            Server::Azure(a) => Some(format!(
                "{i}type: abs\n{i}bucket: {BUCKET}\n{i}path: {path}\n{i}account-name: {ACCOUNT}\n{i}endpoint: {}\n",
                a.endpoint()
            )),
            Server::Gcs(_) => Some(format!("{i}type: gs\n{i}bucket: {BUCKET}\n{i}path: {path}\n")),
            Server::Sftp(s) => Some(s.replica_keys(path, indent)),
            Server::Webdav(r) => Some(format!(
                "{i}type: webdav\n{i}webdav-url: {}\n{i}webdav-username: {}\n{i}webdav-password: {}\n{i}path: {path}\n",
                r.url(),
                litestreampp_e2e::webdav::USER,
                litestreampp_e2e::webdav::PASSWORD,
            )),
            Server::Nats(n) if !path.contains('/') => {
                let bucket = self.nats_bucket(n, path);
                Some(format!(
                    "{i}type: nats\n{i}url: nats://127.0.0.1:{}/{bucket}\n{i}username: {}\n{i}password: {}\n",
                    n.port,
                    litestreampp_e2e::nats::USER,
                    litestreampp_e2e::nats::PASSWORD,
                ))
            }
            Server::Nats(_) => None,
        })
    }

    /// Where both tools look for the server and its credentials.
    pub fn env(&self, c: &mut Command) {
        self.with(|s| match s {
            Server::Azure(_) => {
                c.env("LITESTREAM_AZURE_ACCOUNT_KEY", ACCOUNT_KEY)
                    .env_remove("LITESTREAM_AZURE_SAS_TOKEN");
            }
            Server::Gcs(g) => {
                c.env("STORAGE_EMULATOR_HOST", g.host())
                    .env_remove("GOOGLE_APPLICATION_CREDENTIALS");
            }
            Server::Sftp(_) | Server::Webdav(_) | Server::Nats(_) => {}
        });
    }
}

/// One backend's restore-pattern figures.
struct FleetRow {
    label: &'static str,
    backup: f64,
    ours: f64,
    /// Seconds for Go's loop and how many databases it restored.
    go: Option<(f64, usize)>,
}

impl FleetRow {
    /// The row of the restore-pattern table.
    fn markdown(&self, count: usize) -> String {
        let rate = count as f64 / self.ours;
        let (go, ratio) = match self.go {
            Some((secs, n)) => {
                let go_rate = n as f64 / secs;
                (
                    format!("{go_rate:.1} databases/s"),
                    format!("**{:.0}×**", rate / go_rate),
                )
            }
            None => (
                "— (Go's NATS replica is a whole bucket: no path per database)".into(),
                "—".into(),
            ),
        };
        format!(
            "| {} | {:.1} s | **{rate:.0} databases/s** ({:.1} s) | {go} | {ratio} |",
            self.label, self.backup, self.ours
        )
    }
}

impl Bench {
    /// The whole benchmark; prints Markdown.
    pub fn backends(&self, a: &BackendsArgs) -> Result<()> {
        let small = self.work.join("backends/small");
        self.lsdemo_build(&a.lsdemo, &small, a.count)?;
        let mut rows = Vec::new();
        for &kind in &a.only {
            let remote = Rc::new(Remote::start(kind));
            eprintln!("backends: {}, {} MiB...", remote.label(), a.size_mb);
            let t = self.throughput(a.size_mb, a.runs, &Target::Remote(remote.clone()))?;
            println!(
                "### Replication and restore of a {} MiB database, {}\n\n{t}",
                a.size_mb,
                remote.label()
            );
            eprintln!("backends: {}, restore-pattern...", remote.label());
            let row = self.fleet_on(a, &remote, &small)?;
            // Shown at once too, so that a later backend's failure keeps it.
            eprintln!("{}", row.markdown(a.count));
            rows.push(row);
        }
        println!(
            "### restore-pattern of {} small databases, {} workers\n\n\
             Backed up by `litestreampp run --once`; restored by `restore-pattern` (median of {}) and by a loop of \
             Go `litestream restore -config`, one process per database, on {} of them.\n\n\
             | backend | back up | litestreampp restore-pattern | Go, one process per database | ratio |\n|---|---|---|---|---|",
            a.count, a.workers, a.runs, a.go_count
        );
        for r in rows {
            println!("{}", r.markdown(a.count));
        }
        Ok(())
    }

    /// Backs up the fleet under `small` to a fresh server and restores it
    /// with both tools.
    fn fleet_on(&self, a: &BackendsArgs, remote: &Remote, small: &Path) -> Result<FleetRow> {
        remote.restart()?;
        let with_env = |mut c: Command| {
            remote.env(&mut c);
            c
        };
        let mut c = with_env(self.ours());
        c.args(["run", "--once", "--workers", "16", "--pattern"])
            .arg(format!("{}/**/*.db", small.display()))
            .args(["--replica", &remote.url("rp/{path}")]);
        let backup = measure(c)?.wall;
        let out = self.work.join("backends/out-ours");
        let mut walls = Vec::new();
        for _ in 0..a.runs {
            fresh_dir(&out)?;
            let mut c = with_env(self.ours());
            c.args(["restore-pattern", "--workers", &a.workers.to_string()])
                .arg("--output-dir")
                .arg(&out)
                .arg(remote.url("rp/**/*.db"));
            walls.push(measure(c)?.wall);
            check_restored(small, &out)?;
        }
        let dbs = databases(small)?;
        let go_dbs = &dbs[..a.go_count.min(dbs.len())];
        let go = if remote.go_replica("rp/x", "").is_some() {
            Some((self.go_loop(remote, small, go_dbs)?, go_dbs.len()))
        } else {
            None
        };
        Ok(FleetRow {
            label: remote.label(),
            backup,
            ours: median(walls),
            go,
        })
    }

    /// Seconds for Go to restore `dbs` (relative to `small`) one
    /// `litestream restore -config` at a time; outputs checked.
    fn go_loop(&self, remote: &Remote, small: &Path, dbs: &[std::path::PathBuf]) -> Result<f64> {
        let dir = self.work.join("backends/go");
        fresh_dir(&dir)?;
        let mut yaml = String::from("dbs:\n");
        for rel in dbs {
            let keys = remote
                .go_replica(&format!("rp/{}", rel.display()), "      ")
                .context("Go cannot reach this server")?;
            yaml.push_str(&format!(
                "  - path: {}\n    replica:\n{keys}",
                small.join(rel).display()
            ));
        }
        let cfg = dir.join("litestream.yml");
        std::fs::write(&cfg, yaml)?;
        let out = dir.join("out");
        let secs = self.time_go_restores(dbs, &out, |rel, o| {
            let mut c = self.go();
            remote.env(&mut c);
            c.args(["restore", "-config"])
                .arg(&cfg)
                .arg("-o")
                .arg(o)
                .arg(small.join(rel));
            c
        })?;
        for rel in dbs {
            if !out.join(rel).exists() {
                bail!("Go did not restore {}", rel.display());
            }
        }
        Ok(secs)
    }
}
