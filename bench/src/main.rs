//! `lsbench`: litestreampp side by side with Go Litestream 0.5.17 on the
//! same machine, the same data and the same run. Benchmarks, not tests:
//! they print figures (medians of several runs, and ratios) as Markdown for
//! `docs/benchmarks.md` and never fail on timing.
//!
//! `lsbench all` runs everything; see `lsbench --help`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark harness: a panic is the report

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use nix::sys::resource::{UsageWho, getrusage};
use rand::Rng;
use rusqlite::Connection;

mod backends;
mod embedded;
mod fleet;
mod restore_pattern;

#[derive(Parser)]
#[command(name = "lsbench", about = "litestreampp vs Go Litestream benchmarks")]
struct Cli {
    /// Working directory for databases and replicas (needs ~6x the database size free).
    #[arg(long, default_value = "target/bench")]
    work: PathBuf,
    /// Go Litestream binary.
    #[arg(long, default_value = ".venv/bin/litestream")]
    go: PathBuf,
    /// litestreampp binary.
    #[arg(long, default_value = "target/release/litestreampp")]
    ours: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Replication (snapshot of a large database) and restore throughput.
    Throughput {
        #[arg(long, default_value_t = 1024)]
        size_mb: u64,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Replicate to S3 instead of a file replica: `moto` (started for
        /// the run) or `localstack` (already running on 127.0.0.1:4566,
        /// see localstack/localstack.sh).
        #[arg(long)]
        s3: Option<String>,
    },
    /// Write-to-replica lag for single commits.
    Lag {
        /// Milliseconds between writes.
        #[arg(long, default_value_t = 1200)]
        interval_ms: u64,
        #[arg(long, default_value_t = 50)]
        samples: usize,
        /// sync-interval for both tools (and Go's monitor-interval); default: each tool's default.
        #[arg(long)]
        sync_interval: Option<String>,
    },
    /// A day of simulated history (every interval divided by --speed):
    /// files per level and the restore of each tool's replica.
    History {
        #[arg(long, default_value_t = 256)]
        size_mb: u64,
        /// Simulated seconds per real second.
        #[arg(long, default_value_t = 720)]
        speed: u32,
        #[arg(long, default_value_t = 20)]
        writes_per_sec: u32,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// The fleet (litestreampp run): backlog, idle memory and CPU,
    /// restart, write -> promotion, lag with many hot databases; Go
    /// Litestream's directory mode on a fleet of --go-count.
    Fleet(fleet::FleetArgs),
    /// A fleet restored from moto by restore-pattern, against a loop of Go
    /// `litestream restore`; then a mix with a few large databases.
    RestorePattern(restore_pattern::RestorePatternArgs),
    /// Every remote backend on its local test server (Azurite,
    /// fake-gcs-server, sshd, rclone webdav, nats-server): a large
    /// database replicated and restored, a fleet by restore-pattern.
    Backends(backends::BackendsArgs),
    /// The demo REST server (demos/embedded-server) under load on
    /// loopback: replication off, embedded, embedded with sync writes, and
    /// a Go Litestream sidecar.
    Embedded(embedded::EmbeddedArgs),
    /// Everything, as recorded in docs/benchmarks.md.
    All {
        #[arg(long, default_value_t = 1024)]
        size_mb: u64,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
}

/// Wall and CPU time of a finished child.
#[derive(Debug, Clone, Copy)]
struct Measured {
    wall: f64,
    cpu: f64,
}

/// User + system CPU seconds of a running process.
fn proc_cpu_secs(pid: i32) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    (ticks(11) + ticks(12)) / hz
}

fn children_cpu() -> f64 {
    let u = getrusage(UsageWho::RUSAGE_CHILDREN).expect("getrusage");
    let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    t(u.user_time()) + t(u.system_time())
}

/// Runs a command to completion, measuring wall and CPU seconds (children's
/// rusage before and after: commands run one at a time).
fn measure(mut c: Command) -> Result<Measured> {
    // Start from a quiet disk: earlier runs' dirty pages must not be
    // written back on this run's time.
    nix::unistd::sync();
    std::thread::sleep(Duration::from_millis(500));
    let cpu0 = children_cpu();
    let t0 = Instant::now();
    let out = c
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("spawn")?;
    let wall = t0.elapsed().as_secs_f64();
    if let Some(log) = std::env::var_os("LSBENCH_STDERR") {
        // What each measured command said, to read after the run.
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("open {}", Path::new(&log).display()))?;
        writeln!(f, "=== {c:?} ({wall:.1} s)")
            .and_then(|()| f.write_all(&out.stderr))
            .with_context(|| format!("write {}", Path::new(&log).display()))?;
    }
    if !out.status.success() {
        bail!("{c:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(Measured {
        wall,
        cpu: children_cpu() - cpu0,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[idx.min(v.len() - 1)]
}

/// A database of about `size_mb` MiB with 4 KiB pages and content that
/// compresses about 2:1 (text from a small vocabulary next to random bytes).
fn generate_db(path: &Path, size_mb: u64) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    let tmp = path.with_extension("gen");
    let _ = std::fs::remove_file(&tmp);
    let c = Connection::open(&tmp)?;
    c.execute_batch(
        "PRAGMA page_size=4096; PRAGMA journal_mode=wal; PRAGMA synchronous=OFF;
         CREATE TABLE events(id INTEGER PRIMARY KEY, kind TEXT, body TEXT, payload BLOB);",
    )?;
    let words = [
        "order",
        "created",
        "shipped",
        "customer",
        "invoice",
        "paid",
        "refund",
        "item",
        "warehouse",
        "delivered",
    ];
    let mut rng = rand::rng();
    let target = size_mb << 20;
    loop {
        let tx = c.unchecked_transaction()?;
        {
            let mut st =
                tx.prepare_cached("INSERT INTO events(kind, body, payload) VALUES (?1, ?2, ?3)")?;
            for _ in 0..20_000 {
                let body: String = (0..60)
                    .map(|_| words[rng.random_range(0..words.len())])
                    .collect::<Vec<_>>()
                    .join(" ");
                let payload: Vec<u8> = (0..300).map(|_| rng.random()).collect();
                st.execute(rusqlite::params![
                    words[rng.random_range(0..words.len())],
                    body,
                    payload
                ])?;
            }
        }
        tx.commit()?;
        c.pragma_update(None, "wal_checkpoint", "TRUNCATE")?;
        if std::fs::metadata(&tmp)?.len() >= target {
            break;
        }
    }
    drop(c);
    std::fs::rename(&tmp, path)?;
    for s in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{s}", tmp.display()));
    }
    Ok(())
}

/// Credentials for the local S3 (any are accepted).
fn creds(c: &mut Command) {
    c.env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_REGION", "us-east-1");
}

fn fresh_dir(p: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(p);
    std::fs::create_dir_all(p)?;
    Ok(())
}

/// Where the replicas go.
#[derive(Clone)]
enum Target {
    File,
    /// An S3 server on 127.0.0.1: moto (started for the run, reset between
    /// runs) or LocalStack.
    S3 {
        port: u16,
        moto: bool,
    },
    /// Another backend's local server, the one its tests use.
    Remote(std::rc::Rc<backends::Remote>),
}

const BUCKET: &str = "bench";

/// Starts moto on a free port and waits for it.
fn start_moto() -> Result<(Child, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new(".venv/bin/moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start moto (run tests/setup.sh first)")?;
    let t0 = Instant::now();
    while http(port, "GET", "/moto-api/")
        .map(|c| c != 200)
        .unwrap_or(true)
    {
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("moto did not start");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((child, port))
}

/// One raw HTTP request to 127.0.0.1; returns the status.
fn http(port: u16, method: &str, path: &str) -> std::io::Result<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}

/// Counts runs, so that runs never share objects.
static RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A prefix unique to this process and run.
fn run_id() -> String {
    format!("{}-{}", std::process::id(), RUN.load(Ordering::Relaxed))
}

/// Empties moto (its objects live in memory) and recreates the bucket.
fn reset_moto(port: u16) -> Result<()> {
    http(port, "POST", "/moto-api/reset")?;
    if http(port, "PUT", &format!("/{BUCKET}"))? != 200 {
        bail!("create bucket");
    }
    Ok(())
}

impl Target {
    /// The replica URL for `name` (a directory under `dir`, or a prefix).
    fn url(&self, dir: &Path, name: &str) -> String {
        match self {
            Target::File => format!("file://{}", dir.join(name).display()),
            Target::S3 { port, .. } => format!(
                "s3://{BUCKET}/{name}-{}?endpoint=http://127.0.0.1:{port}&region=us-east-1&forcePathStyle=true",
                run_id()
            ),
            Target::Remote(r) => r.url(&format!("{name}-{}", run_id())),
        }
    }

    /// Go's config for `db` replicating to `name`.
    fn go_config(
        &self,
        dir: &Path,
        db: &Path,
        name: &str,
        interval: Option<&str>,
    ) -> Result<PathBuf> {
        let cfg = dir.join("litestream.yml");
        let mut y = format!("dbs:\n  - path: {}\n", db.display());
        if let Some(i) = interval {
            y.push_str(&format!("    monitor-interval: {i}\n"));
        }
        match self {
            Target::File => y.push_str(&format!("    replica:\n      type: file\n      path: {}\n", dir.join(name).display())),
            Target::S3 { port, .. } => y.push_str(&format!(
                "    replica:\n      type: s3\n      bucket: {BUCKET}\n      path: {name}-{}\n      endpoint: http://127.0.0.1:{port}\n      region: us-east-1\n      force-path-style: true\n",
                run_id()
            )),
            Target::Remote(r) => y.push_str(&format!(
                "    replica:\n{}",
                r.go_replica(&format!("{name}-{}", run_id()), "      ")
                    .context("Go cannot reach this server")?
            )),
        }
        if let Some(i) = interval {
            y.push_str(&format!("      sync-interval: {i}\n"));
        }
        std::fs::write(&cfg, y)?;
        Ok(cfg)
    }

    /// What Go's `restore` takes to find the replica `name` of `db` (in
    /// `dir`): its URL, or a config file where no URL reaches the server.
    fn go_restore_args(
        &self,
        dir: &Path,
        db: &Path,
        name: &str,
    ) -> Result<Vec<std::ffi::OsString>> {
        Ok(match self {
            Target::Remote(_) => {
                let cfg = self.go_config(dir, db, name, None)?;
                vec!["-config".into(), cfg.into(), db.into()]
            }
            _ => vec![self.url(dir, name).into()],
        })
    }

    /// The server's environment (emulator host, account key) on `c`.
    fn env(&self, c: &mut Command) {
        if let Target::Remote(r) = self {
            r.env(c);
        }
    }
}

struct Bench {
    work: PathBuf,
    go: PathBuf,
    ours: PathBuf,
}

impl Bench {
    fn go(&self) -> Command {
        let mut c = Command::new(&self.go);
        c.env_remove("AWS_CA_BUNDLE");
        creds(&mut c);
        c
    }

    /// `litestream replicate -config CFG` with `yaml` written to `cfg`
    /// (stdout discarded; the caller decides where stderr goes).
    fn go_replicate(&self, cfg: &Path, yaml: &str) -> Result<Command> {
        std::fs::write(cfg, yaml).with_context(|| format!("write {}", cfg.display()))?;
        let mut c = self.go();
        c.args(["replicate", "-config"])
            .arg(cfg)
            .stdout(Stdio::null());
        Ok(c)
    }

    fn ours(&self) -> Command {
        let mut c = Command::new(&self.ours);
        creds(&mut c);
        c
    }

    /// Replication of a large database from scratch (`replicate -once`:
    /// snapshot into an L0 file and upload it), then restore of it.
    fn throughput(&self, size_mb: u64, runs: usize, target: &Target) -> Result<String> {
        let src = self.work.join(format!("source-{size_mb}m.db"));
        eprintln!("generating {} ({size_mb} MiB)...", src.display());
        generate_db(&src, size_mb)?;
        let db_bytes = std::fs::metadata(&src)?.len();
        let mb = db_bytes as f64 / 1e6;
        let mut rep = (Vec::new(), Vec::new(), Vec::new(), Vec::new()); // ours wall, ours cpu, go wall, go cpu
        let mut res = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for run in 0..runs {
            RUN.fetch_add(1, Ordering::Relaxed);
            match target {
                Target::S3 { port, moto: true } => reset_moto(*port)?,
                Target::S3 { port, moto: false } => {
                    // LocalStack: a fresh bucket per run.
                    let _ = http(*port, "PUT", &format!("/{BUCKET}"))?;
                }
                Target::File => {}
                // A fresh server each run: Azurite keeps every blob in memory.
                Target::Remote(r) => r.restart()?,
            }
            let mut replicas = Vec::new();
            for tool in ["go", "ours"] {
                let dir = self.work.join(format!("tp-{tool}"));
                fresh_dir(&dir)?;
                let db = dir.join("db.sqlite");
                std::fs::copy(&src, &db)?;
                let url = target.url(&dir, &format!("replica-{tool}"));
                let m = if tool == "go" {
                    let cfg = target.go_config(&dir, &db, &format!("replica-{tool}"), None)?;
                    let mut c = self.go();
                    target.env(&mut c);
                    c.args(["replicate", "-once", "-config"]).arg(&cfg);
                    measure(c)?
                } else {
                    let mut c = self.ours();
                    target.env(&mut c);
                    c.args(["replicate", "-once"]).arg(&db).arg(&url);
                    measure(c)?
                };
                eprintln!(
                    "run {run} replicate {tool}: {:.2}s wall {:.2}s cpu",
                    m.wall, m.cpu
                );
                if tool == "go" {
                    rep.2.push(m.wall);
                    rep.3.push(m.cpu);
                } else {
                    rep.0.push(m.wall);
                    rep.1.push(m.cpu);
                }
                std::fs::remove_file(&db)?;
                let go_args = target.go_restore_args(&dir, &db, &format!("replica-{tool}"))?;
                replicas.push((url, go_args));
            }
            // Both tools restore the same replica: the one Go wrote.
            let mut outs = Vec::new();
            for tool in ["go", "ours"] {
                let out = self.work.join(format!("restored-{tool}.db"));
                let _ = std::fs::remove_file(&out);
                let mut c = if tool == "go" { self.go() } else { self.ours() };
                target.env(&mut c);
                c.args(["restore", "-o"]).arg(&out);
                if tool == "go" {
                    c.args(&replicas[0].1);
                } else {
                    c.arg(&replicas[0].0);
                }
                let r = measure(c)?;
                eprintln!(
                    "run {run} restore {tool}: {:.2}s wall ({:.0} MB/s) {:.2}s cpu",
                    r.wall,
                    mb / r.wall,
                    r.cpu
                );
                if tool == "go" {
                    res.2.push(r.wall);
                    res.3.push(r.cpu);
                } else {
                    res.0.push(r.wall);
                    res.1.push(r.cpu);
                }
                outs.push(out);
            }
            if std::fs::read(&outs[0])? != std::fs::read(&outs[1])? {
                bail!("our restore of Go's replica differs from Go's");
            }
            if run == 0 {
                // And Go restores our replica to the same bytes.
                let cross = self.work.join("restored-cross.db");
                let _ = std::fs::remove_file(&cross);
                let mut c = self.go();
                target.env(&mut c);
                c.args(["restore", "-o"]).arg(&cross).args(&replicas[1].1);
                measure(c)?;
                // Our replica is of an untouched copy (Go adds its tables to the
                // database it replicates), so it must restore to the source.
                if std::fs::read(&cross)? != std::fs::read(&src)? {
                    bail!("Go's restore of our replica differs from the source");
                }
                std::fs::remove_file(&cross)?;
            }
            for o in outs {
                std::fs::remove_file(o)?;
            }
        }
        let (ow, oc, gw, gc) = (median(rep.0), median(rep.1), median(rep.2), median(rep.3));
        let (rw, rc, grw, grc) = (median(res.0), median(res.1), median(res.2), median(res.3));
        let where_ = match target {
            Target::File => "a `file` replica",
            Target::S3 { moto: true, .. } => "S3 (a moto server on 127.0.0.1)",
            Target::S3 { moto: false, .. } => "S3 (LocalStack in host mode on 127.0.0.1)",
            Target::Remote(r) => r.label(),
        };
        Ok(format!(
            "Database: {mb:.0} MB ({size_mb} MiB target), 4 KiB pages, content compressing about 2:1. \
             Replicate: `replicate -once` from scratch (snapshot to a local L0 file, upload to {where_}), each tool on its own copy. \
             Restore: both tools restore the same replica (written by Go), outputs compared byte for byte. Medians of {runs} runs.\n\n\
             | | Go Litestream 0.5.17 | litestreampp | ratio |\n|---|---|---|---|\n\
             | replicate from scratch, wall | {gw:.2} s ({:.0} MB/s) | {ow:.2} s ({:.0} MB/s) | **{:.1}×** |\n\
             | replicate from scratch, CPU | {gc:.2} s | {oc:.2} s | {:.1}× less |\n\
             | restore, wall | {grw:.2} s ({:.0} MB/s) | {rw:.2} s ({:.0} MB/s) | **{:.1}×** |\n\
             | restore, CPU | {grc:.2} s | {rc:.2} s | {:.1}× less |\n",
            mb / gw,
            mb / ow,
            gw / ow,
            gc / oc,
            mb / grw,
            mb / rw,
            grw / rw,
            grc / rc,
        ))
    }

    /// A day of history at `speed` simulated seconds per second: both tools
    /// replicate identical copies of a database under the same write load
    /// with every interval (compaction levels, snapshots, retention) divided
    /// by `speed`; then each replica is restored by both tools.
    fn history(
        &self,
        size_mb: u64,
        speed: u32,
        writes_per_sec: u32,
        runs: usize,
    ) -> Result<String> {
        let src = self.work.join(format!("source-{size_mb}m.db"));
        eprintln!("generating {} ({size_mb} MiB)...", src.display());
        generate_db(&src, size_mb)?;
        let scaled = |secs: f64| {
            format!(
                "{}ms",
                ((secs * 1000.0) / f64::from(speed)).round().max(1.0) as u64
            )
        };
        let day = Duration::from_secs_f64(86_400.0 / f64::from(speed));
        let dir = self.work.join("history");
        fresh_dir(&dir)?;
        let mut children = Vec::new();
        let mut dbs = Vec::new();
        for tool in ["go", "ours"] {
            let db = dir.join(format!("{tool}.db"));
            std::fs::copy(&src, &db)?;
            let replica = dir.join(format!("replica-{tool}"));
            let cfg = dir.join(format!("{tool}.yml"));
            std::fs::write(
                &cfg,
                format!(
                    "levels:\n  - interval: {}\n  - interval: {}\n  - interval: {}\n\
                     snapshot:\n  interval: {}\n  retention: {}\n\
                     l0-retention: {}\nl0-retention-check-interval: {}\n\
                     dbs:\n  - path: {}\n    monitor-interval: 100ms\n    replica:\n      type: file\n      path: {}\n      sync-interval: 100ms\n",
                    scaled(30.0),
                    scaled(300.0),
                    scaled(3600.0),
                    scaled(86_400.0),
                    scaled(86_400.0),
                    scaled(300.0),
                    scaled(15.0),
                    db.display(),
                    replica.display()
                ),
            )?;
            let mut c = if tool == "go" { self.go() } else { self.ours() };
            c.args(["replicate", "-config"])
                .arg(&cfg)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join(format!("{tool}.log")))?);
            children.push(c.spawn()?);
            dbs.push((tool, db, replica));
        }
        eprintln!(
            "simulating a day: {:.0} s of writes at {writes_per_sec}/s per database...",
            day.as_secs_f64()
        );
        // The same writes to both databases: updates of random rows.
        let conns: Vec<Connection> = dbs
            .iter()
            .map(|(_, db, _)| {
                let c = Connection::open(db)?;
                c.busy_timeout(Duration::from_secs(10))?;
                Ok(c)
            })
            .collect::<Result<_>>()?;
        let rows: i64 = conns[0].query_row("SELECT max(id) FROM events", [], |r| r.get(0))?;
        let mut rng = rand::rng();
        let t0 = Instant::now();
        let mut n = 0u64;
        while t0.elapsed() < day {
            let id = rng.random_range(1..=rows);
            let payload: Vec<u8> = (0..300).map(|_| rng.random()).collect();
            for c in &conns {
                c.execute(
                    "UPDATE events SET payload = ?1 WHERE id = ?2",
                    rusqlite::params![payload, id],
                )?;
            }
            n += 1;
            let due = t0 + Duration::from_secs_f64(n as f64 / f64::from(writes_per_sec));
            if let Some(d) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
        }
        drop(conns);
        std::thread::sleep(Duration::from_secs(2));
        for mut child in children {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            )?;
            child.wait()?;
        }
        let mut rows_md = String::new();
        let mut outputs = Vec::new();
        for (tool, _, replica) in &dbs {
            let url = format!("file://{}", replica.display());
            let counts: Vec<String> = [0u32, 1, 2, 3, 9]
                .iter()
                .map(|l| {
                    let n = std::fs::read_dir(replica.join(format!("ltx/{l}")))
                        .map(|rd| rd.count())
                        .unwrap_or(0);
                    format!("L{l} {n}")
                })
                .collect();
            // The plan (Litestream's algorithm, both tools use it).
            let mut c = self.ours();
            c.args(["restore", "-dry-run", "-json", "-o"])
                .arg(dir.join("plan.db"))
                .arg(&url);
            let out = c.output()?;
            if !out.status.success() {
                bail!("plan {url}: {}", String::from_utf8_lossy(&out.stderr));
            }
            let plan: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            let files = plan["files"].as_array().map_or(0, |a| a.len());
            let bytes = plan["total_bytes"].as_u64().unwrap_or(0);
            let mut walls = (Vec::new(), Vec::new());
            for run in 0..runs {
                for who in ["go", "ours"] {
                    let o = dir.join(format!("restored-{tool}-by-{who}.db"));
                    let _ = std::fs::remove_file(&o);
                    let mut c = if who == "go" { self.go() } else { self.ours() };
                    c.args(["restore", "-o"]).arg(&o).arg(&url);
                    let m = measure(c)?;
                    eprintln!(
                        "run {run}: {who} restores the {tool} replica in {:.2}s",
                        m.wall
                    );
                    if who == "go" {
                        walls.0.push(m.wall)
                    } else {
                        walls.1.push(m.wall)
                    }
                    if run + 1 == runs {
                        outputs.push(o)
                    } else {
                        std::fs::remove_file(&o)?
                    }
                }
            }
            let (g, o) = (median(walls.0), median(walls.1));
            let writer = if *tool == "go" {
                "Go Litestream 0.5.17"
            } else {
                "litestreampp"
            };
            rows_md.push_str(&format!(
                "| {writer} | {} | {files} files, {:.1} MB | {g:.2} s | {o:.2} s | **{:.1}×** |\n",
                counts.join(", "),
                bytes as f64 / 1e6,
                g / o
            ));
        }
        for pair in outputs.chunks(2) {
            if std::fs::read(&pair[0])? != std::fs::read(&pair[1])? {
                bail!(
                    "restores of the same replica differ: {} {}",
                    pair[0].display(),
                    pair[1].display()
                );
            }
        }
        Ok(format!(
            "A {size_mb} MiB database, {n} single-row updates over one simulated day ({writes_per_sec}/s for {:.0} s, every interval divided by {speed}: \
             L1 {}, L2 {}, L3 {}, snapshots every {} kept {}, L0 retention {}), replicated by each tool to its own `file` replica at the same time. \
             Then each replica is restored by both tools (outputs compared byte for byte; medians of {runs} runs).\n\n\
             | replica written by | files per level at the end | restore plan | Go restore | litestreampp restore | ratio |\n|---|---|---|---|---|---|\n{rows_md}",
            day.as_secs_f64(),
            scaled(30.0),
            scaled(300.0),
            scaled(3600.0),
            scaled(86_400.0),
            scaled(86_400.0),
            scaled(300.0),
        ))
    }

    /// Lag from commit to the replica holding it. Each write grows the
    /// database by a page, so the replica file whose header `commit` (database
    /// size in pages) reaches the size after a write holds that write.
    fn lag(
        &self,
        tool: &str,
        interval: Duration,
        samples: usize,
        sync_interval: Option<&str>,
    ) -> Result<Vec<f64>> {
        let dir = self.work.join(format!("lag-{tool}"));
        fresh_dir(&dir)?;
        let db = dir.join("lag.db");
        let replica = dir.join("replica");
        let app = Connection::open(&db)?;
        app.execute_batch("PRAGMA journal_mode=wal; PRAGMA synchronous=NORMAL; CREATE TABLE w(id INTEGER PRIMARY KEY, t INTEGER, pad BLOB);")?;
        let mut child: Child = if tool == "go" {
            let cfg = Target::File.go_config(&dir, &db, "replica", sync_interval)?;
            let mut c = self.go();
            c.args(["replicate", "-config"]).arg(&cfg);
            c.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?
        } else {
            let mut c = self.ours();
            c.arg("replicate");
            if let Some(i) = sync_interval {
                c.args(["-sync-interval", i]);
            }
            c.arg(&db).arg(format!("file://{}", replica.display()));
            c.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?
        };
        // Observer: the highest commit size seen in the replica, with time.
        let seen: Arc<Mutex<Vec<(u32, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let l0 = replica.join("ltx/0");
        let obs = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut known = std::collections::HashSet::new();
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(rd) = std::fs::read_dir(&l0) {
                        for e in rd.flatten() {
                            let name = e.file_name();
                            if !name.to_string_lossy().ends_with(".ltx") || known.contains(&name) {
                                continue;
                            }
                            let now = Instant::now();
                            if let Ok(b) = std::fs::read(e.path())
                                && b.len() >= 100
                            {
                                let commit = u32::from_be_bytes([b[12], b[13], b[14], b[15]]);
                                seen.lock().unwrap().push((commit, now));
                                known.insert(name);
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        // Wait for the first snapshot.
        let t0 = Instant::now();
        while seen.lock().unwrap().is_empty() {
            if t0.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                bail!("{tool}: no replica file within 30 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(1500));
        let mut writes: Vec<(u32, Instant)> = Vec::new();
        let mut next = Instant::now();
        for _ in 0..samples {
            next += interval;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
            app.execute("INSERT INTO w(t, pad) VALUES (0, zeroblob(4000))", [])?;
            let t = Instant::now();
            let pages: u32 = app.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            writes.push((pages, t));
        }
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::Relaxed);
        obs.join().ok();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        let _ = child.wait();
        let seen = seen.lock().unwrap().clone();
        let mut lags = Vec::new();
        for (pages, t) in writes {
            let hit = seen
                .iter()
                .filter(|(c, when)| *c >= pages && *when >= t)
                .map(|(_, when)| *when)
                .min();
            match hit {
                Some(when) => lags.push(when.duration_since(t).as_secs_f64() * 1000.0),
                None => bail!("{tool}: a write of {pages} pages never reached the replica"),
            }
        }
        Ok(lags)
    }

    fn lag_report(
        &self,
        interval_ms: u64,
        samples: usize,
        sync_interval: Option<&str>,
    ) -> Result<String> {
        let iv = Duration::from_millis(interval_ms);
        let go = self.lag("go", iv, samples, sync_interval)?;
        let ours = self.lag("ours", iv, samples, sync_interval)?;
        let row = |name: &str, v: &Vec<f64>| {
            format!(
                "| {name} | {:.0} ms | {:.0} ms | {:.0} ms |\n",
                percentile(v.clone(), 50.0),
                percentile(v.clone(), 99.0),
                v.iter().cloned().fold(0.0, f64::max)
            )
        };
        let settings = sync_interval.map_or(
            "each tool's defaults (sync-interval 1s; Go monitor-interval 1s)".to_string(),
            |s| format!("sync-interval {s} for both (and Go monitor-interval {s})"),
        );
        Ok(format!(
            "One commit every {interval_ms} ms, {samples} samples, {settings}.\n\n| | p50 | p99 | max |\n|---|---|---|---|\n{}{}\n\
             p99 ratio: **{:.1}×** lower.\n",
            row("Go Litestream 0.5.17", &go),
            row("litestreampp", &ours),
            percentile(go.clone(), 99.0) / percentile(ours.clone(), 99.0)
        ))
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    std::fs::create_dir_all(&cli.work)?;
    let b = Bench {
        work: std::fs::canonicalize(&cli.work)?,
        go: cli.go.clone(),
        ours: cli.ours.clone(),
    };
    for p in [&b.go, &b.ours] {
        if !p.exists() {
            bail!(
                "{} not found (run tests/setup.sh and cargo build --release first)",
                p.display()
            );
        }
    }
    match cli.cmd {
        Cmd::Throughput { size_mb, runs, s3 } => match s3.as_deref() {
            None => println!("{}", b.throughput(size_mb, runs, &Target::File)?),
            Some("moto") => {
                let (mut moto, port) = start_moto()?;
                let r = b.throughput(size_mb, runs, &Target::S3 { port, moto: true });
                let _ = moto.kill(); // the run is over
                println!("{}", r?);
            }
            Some("localstack") => println!(
                "{}",
                b.throughput(
                    size_mb,
                    runs,
                    &Target::S3 {
                        port: 4566,
                        moto: false
                    }
                )?
            ),
            Some(other) => bail!("--s3 {other:?}: expected moto or localstack"),
        },
        Cmd::Lag {
            interval_ms,
            samples,
            sync_interval,
        } => println!(
            "{}",
            b.lag_report(interval_ms, samples, sync_interval.as_deref())?
        ),
        Cmd::History {
            size_mb,
            speed,
            writes_per_sec,
            runs,
        } => println!("{}", b.history(size_mb, speed, writes_per_sec, runs)?),
        Cmd::Fleet(args) => b.fleet(&args)?,
        Cmd::RestorePattern(args) => b.restore_pattern(&args)?,
        Cmd::Embedded(args) => b.embedded(&args)?,
        Cmd::Backends(args) => b.backends(&args)?,
        Cmd::All { size_mb, runs } => {
            println!(
                "### Replication and restore of a {size_mb} MiB database, file replica\n\n{}",
                b.throughput(size_mb, runs, &Target::File)?
            );
            let (mut moto, port) = start_moto()?;
            let r = b.throughput(size_mb, runs, &Target::S3 { port, moto: true });
            let _ = moto.kill(); // the run is over
            println!(
                "### Replication and restore of a {size_mb} MiB database, S3 (moto)\n\n{}",
                r?
            );
            println!(
                "### Lag, sparse writes, defaults\n\n{}",
                b.lag_report(1200, 50, None)?
            );
            println!(
                "### Lag, a write every 100 ms, sync-interval 100ms\n\n{}",
                b.lag_report(100, 300, Some("100ms"))?
            );
            println!(
                "### Lag, a write every 100 ms, defaults\n\n{}",
                b.lag_report(100, 100, None)?
            );
            println!(
                "### Restore after a day of simulated history\n\n{}",
                b.history(256, 720, 20, runs)?
            );
        }
    }
    Ok(())
}
