//! `lsbench fleet`: the fleet figures of issue 5, with Go Litestream's
//! directory mode (`dir` + `pattern` + `recursive` + `watch`) on the same
//! fleet size where it copes.
//!
//! Each tool gets its own copy of the fleet (both keep meta directories
//! next to the databases) and a file replica; an optional S3 phase counts
//! the requests an idle fleet sends to a local moto server.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::Rng;
use rand::seq::SliceRandom;
use rusqlite::Connection;

use super::{Bench, fresh_dir, median, percentile, proc_cpu_secs};

/// What one `lsbench fleet` run does.
#[derive(clap::Args)]
pub struct FleetArgs {
    #[arg(long, default_value_t = 100_000)]
    pub count: usize,
    #[arg(long, default_value_t = 100)]
    pub shards: usize,
    /// Hot databases under load (each written once a second).
    #[arg(long, default_value_t = 1000)]
    pub hot: usize,
    /// Of the hot databases, this many measure write -> replica lag.
    #[arg(long, default_value_t = 50)]
    pub probes: usize,
    /// Writes to idle databases (promotion latency samples).
    #[arg(long, default_value_t = 100)]
    pub promotions: usize,
    #[arg(long, default_value_t = 60)]
    pub load_seconds: u64,
    #[arg(long, default_value_t = 60)]
    pub idle_seconds: u64,
    /// Go Litestream (and litestreampp again) on a fleet of this size; 0
    /// skips Go. Go keeps every database open (several files each): at
    /// 10,000 it stalls at this machine's limit of 20,000 open files.
    #[arg(long, default_value_t = 2_000)]
    pub go_count: usize,
    /// Count the S3 requests of an idle fleet of this size on moto; 0 skips.
    #[arg(long, default_value_t = 2_000)]
    pub s3_count: usize,
    #[arg(long, default_value = "target/release/lsdemo")]
    pub lsdemo: PathBuf,
}

/// A running tool.
struct Running {
    child: Child,
    /// stderr lines (ours: the startup line).
    lines: mpsc::Receiver<String>,
    port: Option<u16>,
}

impl Running {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn rss_mb(&self) -> f64 {
        proc_status_kb(self.pid(), "VmRSS:") as f64 / 1024.0
    }

    fn cpu_secs(&self) -> f64 {
        proc_cpu_secs(self.pid())
    }

    /// Private (anonymous) memory, MB: heap, stacks, task memory.
    fn anon_mb(&self) -> f64 {
        smaps_kb(self.pid(), "smaps_rollup", |_| true, "Anonymous:") as f64 / 1024.0
    }

    /// Resident pages of SQLite's `-shm` (WAL index) mappings, MB: file
    /// pages shared with every process that has the database open.
    fn shm_mb(&self) -> f64 {
        smaps_kb(self.pid(), "smaps", |m| m.ends_with("-shm"), "Rss:") as f64 / 1024.0
    }

    fn metrics(&self) -> Result<String> {
        get(self.port.context("no metrics port")?, "/metrics")
    }

    fn stop(mut self) -> Result<()> {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        let t0 = Instant::now();
        loop {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            if t0.elapsed() > Duration::from_secs(120) {
                let _ = self.child.kill(); // a benchmark must end
                bail!("did not stop within 120 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn proc_status_kb(pid: i32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Sum of `field` over the mappings of `/proc/PID/<file>` whose name
/// passes `pick` (KB).
fn smaps_kb(pid: i32, file: &str, pick: impl Fn(&str) -> bool, field: &str) -> u64 {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/{file}")) else {
        return 0;
    };
    let mut on = false;
    let mut kb = 0;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            // A mapping's header: range, perms, offset, dev, inode, name.
            on = pick(words.nth(4).unwrap_or(""));
        } else if on && first == field {
            kb += words
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    kb
}

/// GET from 127.0.0.1; the body.
fn get(port: u16, path: &str) -> Result<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    Ok(buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}

/// The value of an unlabelled (or exactly labelled) series.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn rel(i: usize, shards: usize) -> String {
    format!("shard-{:03}/tenant-{i:06}.db", i % shards.max(1))
}

/// The highest commit (database size in pages) among the replica's L0
/// files not seen before, with when they were first seen.
fn scan_l0(dir: &Path, known: &mut std::collections::HashSet<std::ffi::OsString>) -> Option<u32> {
    let mut best = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().ends_with(".ltx") || known.contains(&name) {
            continue;
        }
        if let Ok(b) = std::fs::read(e.path())
            && b.len() >= 100
        {
            let commit = u32::from_be_bytes([b[12], b[13], b[14], b[15]]);
            best = best.max(Some(commit));
            known.insert(name);
        }
    }
    best
}

impl Bench {
    fn build_fleet(&self, a: &FleetArgs, dir: &Path, count: usize) -> Result<f64> {
        let _ = std::fs::remove_dir_all(dir);
        let out = Command::new(&a.lsdemo)
            .args(["fleet-build", "--count", &count.to_string()])
            .args(["--shards", &a.shards.to_string(), "--dir"])
            .arg(dir)
            .output()
            .context("run lsdemo fleet-build (cargo build --release first)")?;
        if !out.status.success() {
            bail!("fleet-build: {}", String::from_utf8_lossy(&out.stderr));
        }
        // "built N databases in Xs (R databases/s) under DIR"
        let text = String::from_utf8_lossy(&out.stdout);
        let rate = text
            .split('(')
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN);
        Ok(rate)
    }

    fn start_ours(&self, data: &Path, replica: &str, extra: &[&str]) -> Result<Running> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut c = self.ours();
        c.args(["run", "--pattern", &format!("{}/**/*.db", data.display())])
            .args(["--replica", replica])
            .args([
                "--addr",
                &format!("127.0.0.1:{port}"),
                "--log-level",
                "warn",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = c.spawn()?;
        let lines = forward_lines(child.stderr.take());
        Ok(Running {
            child,
            lines,
            port: Some(port),
        })
    }

    fn start_go(&self, data: &Path, replica: &str, dir: &Path) -> Result<Running> {
        let yaml = format!(
            "dbs:\n  - dir: {}\n    pattern: \"*.db\"\n    recursive: true\n    watch: true\n    replica:\n{replica}",
            data.display()
        );
        let mut child = self
            .go_replicate(&dir.join("go-fleet.yml"), &yaml)?
            .stderr(Stdio::piped())
            .spawn()?;
        let lines = forward_lines(child.stderr.take());
        Ok(Running {
            child,
            lines,
            port: None,
        })
    }

    /// The whole fleet benchmark; prints Markdown, a section at a time.
    pub fn fleet(&self, a: &FleetArgs) -> Result<()> {
        let root = self.work.join("fleet");
        fresh_dir(&root)?;
        let mut md = String::new();
        let ours = self.fleet_ours(a, &root, a.count)?;
        md.push_str(&format!(
            "### litestreampp, {} databases ({} directories), file replica\n\n{}\n",
            a.count,
            a.shards,
            ours.table(None)
        ));
        // Each section as soon as it is measured: a later phase that fails
        // must not lose the earlier ones.
        println!("{md}");
        if a.go_count > 0 {
            let ours_small = if a.go_count == a.count {
                ours.clone()
            } else {
                self.fleet_ours(a, &root, a.go_count)?
            };
            let go = self.fleet_go(a, &root, a.go_count)?;
            md.clear();
            md.push_str(&format!(
                "### Side by side, {} databases, file replica\n\nGo Litestream 0.5.17 in directory mode (`dir`, `pattern: \"*.db\"`, `recursive: true`, `watch: true`) on its own copy of the same fleet.\n\n{}\n",
                a.go_count,
                ours_small.table(Some(&go))
            ));
        }
        if a.go_count > 0 {
            println!("{md}");
        }
        if a.s3_count > 0 {
            println!("{}", self.fleet_s3_idle(a, &root)?);
        }
        Ok(())
    }

    fn fleet_ours(&self, a: &FleetArgs, root: &Path, count: usize) -> Result<FleetFigures> {
        let data = root.join(format!("ours-{count}"));
        let rep = root.join(format!("ours-{count}-replica"));
        let _ = std::fs::remove_dir_all(&rep);
        eprintln!("fleet: building {count} databases for litestreampp...");
        let build_rate = self.build_fleet(a, &data, count)?;
        let template = format!("file://{}/{{path}}", rep.display());
        let hot_cap = (a.hot + a.promotions + 100).to_string();
        let args = ["--backlog-rate", "1000000", "--max-hot", hot_cap.as_str()];
        nix::unistd::sync();
        let t0 = Instant::now();
        let r = self.start_ours(&data, &template, &args)?;
        let startup = startup_seconds(&r, t0)?;
        eprintln!("fleet: discovery and registration {startup:.2}s; waiting for the backlog...");
        wait_backlog(&r, count, t0, Duration::from_secs(3600))?;
        let backlog = t0.elapsed().as_secs_f64();
        eprintln!("fleet: backlog done in {backlog:.1}s; idle phase...");
        let (idle_rss, idle_cpu) = settle_and_sample_idle(&r, a.idle_seconds);
        let idle_anon = r.anon_mb();
        r.stop()?;
        // Restart: every database is cold in the state file.
        let t1 = Instant::now();
        let r = self.start_ours(&data, &template, &args)?;
        let restart = startup_seconds(&r, t1)?;
        wait_backlog(&r, count, t1, Duration::from_secs(600))?;
        std::thread::sleep(Duration::from_secs(2));
        let restart_rss = r.rss_mb();
        eprintln!("fleet: restart {restart:.2}s; promotions...");
        let (promo, cold_write, load) = self.writes(&r, &data, &rep, a, count)?;
        r.stop()?;
        Ok(FleetFigures {
            count,
            build_rate,
            startup,
            backlog,
            idle_rss,
            idle_anon,
            idle_cpu,
            restart: Some(restart),
            restart_rss: Some(restart_rss),
            promotion: Some(promo),
            cold_write,
            load,
        })
    }

    fn fleet_go(&self, a: &FleetArgs, root: &Path, count: usize) -> Result<FleetFigures> {
        let data = root.join(format!("go-{count}"));
        let rep = root.join(format!("go-{count}-replica"));
        let _ = std::fs::remove_dir_all(&rep);
        eprintln!("fleet: building {count} databases for Go Litestream...");
        let build_rate = self.build_fleet(a, &data, count)?;
        nix::unistd::sync();
        let t0 = Instant::now();
        let r = self.start_go(
            &data,
            &format!("      type: file\n      path: {}\n", rep.display()),
            root,
        )?;
        // Go reports no totals: count replicas with an L0 file.
        let startup = f64::NAN;
        let mut done = 0;
        let mut progress = (0, Instant::now());
        while done < count {
            if progress.1.elapsed() > Duration::from_secs(120) {
                let fds =
                    std::fs::read_dir(format!("/proc/{}/fd", r.pid())).map_or(0, |d| d.count());
                let _ = r.stop();
                bail!(
                    "Go: stuck at {done} of {count} databases replicated for 2 minutes ({fds} open files)"
                );
            }
            std::thread::sleep(Duration::from_secs(2));
            done = (0..count)
                .filter(|i| {
                    std::fs::read_dir(rep.join(rel(*i, a.shards)).join("ltx/0"))
                        .is_ok_and(|mut d| d.next().is_some())
                })
                .count();
            if done > progress.0 {
                progress = (done, Instant::now());
            }
        }
        let backlog = t0.elapsed().as_secs_f64();
        eprintln!("fleet: Go backlog done in {backlog:.1}s; idle phase...");
        let (idle_rss, idle_cpu) = settle_and_sample_idle(&r, a.idle_seconds);
        let idle_anon = r.anon_mb();
        let (_, cold_write, load) = self.writes(&r, &data, &rep, a, count)?;
        r.stop()?;
        Ok(FleetFigures {
            count,
            build_rate,
            startup,
            backlog,
            idle_rss,
            idle_anon,
            idle_cpu,
            restart: None,
            restart_rss: None,
            promotion: None,
            cold_write,
            load,
        })
    }

    /// The written phases, on random databases: writes to idle ones
    /// (promotion and write -> replica), then `a.hot` under load.
    fn writes(
        &self,
        r: &Running,
        data: &Path,
        rep: &Path,
        a: &FleetArgs,
        count: usize,
    ) -> Result<(Vec<f64>, Vec<f64>, LoadFigures)> {
        let mut pick: Vec<usize> = (0..count).collect();
        pick.shuffle(&mut rand::rng());
        let idle = &pick[..a.promotions.min(count / 2)];
        let (promo, cold_write) = self.promotions(r, data, rep, a.shards, idle)?;
        eprintln!("fleet: {} hot databases under load...", a.hot);
        let hot_set = &pick[count / 2..(count / 2 + a.hot).min(count)];
        let load = self.hot_load(r, data, rep, a, hot_set)?;
        Ok((promo, cold_write, load))
    }

    /// Writes once to each database in `dbs` (idle ones), one after the
    /// other: milliseconds to promotion (ours: the promotions counter
    /// moves) and to the replica holding the write.
    fn promotions(
        &self,
        r: &Running,
        data: &Path,
        rep: &Path,
        shards: usize,
        dbs: &[usize],
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        let mut promo = Vec::new();
        let mut replica = Vec::new();
        let counter = |r: &Running| {
            r.metrics()
                .ok()
                .and_then(|m| metric(&m, "litestreampp_promotions_total"))
        };
        for &i in dbs {
            let rel = rel(i, shards);
            let l0 = rep.join(&rel).join("ltx/0");
            let mut known = std::collections::HashSet::new();
            scan_l0(&l0, &mut known);
            let before = if r.port.is_some() {
                counter(r).unwrap_or(0.0)
            } else {
                0.0
            };
            let c = Connection::open(data.join(&rel))?;
            c.execute(
                "INSERT INTO orders(customer, amount_cents) VALUES ('bench', 1)",
                [],
            )?;
            let t = Instant::now();
            let pages: u32 = c.query_row("PRAGMA page_count", [], |row| row.get(0))?;
            let (mut p, mut w) = (r.port.is_none(), false);
            while !(p && w) {
                if t.elapsed() > Duration::from_secs(30) {
                    bail!("{rel}: write not replicated within 30 s");
                }
                if !p && counter(r).is_some_and(|v| v > before) {
                    promo.push(t.elapsed().as_secs_f64() * 1000.0);
                    p = true;
                }
                if !w && scan_l0(&l0, &mut known).is_some_and(|c| c >= pages) {
                    replica.push(t.elapsed().as_secs_f64() * 1000.0);
                    w = true;
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            drop(c);
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok((promo, replica))
    }

    /// `a.hot` databases written once a second each; `a.probes` of them
    /// are written by a prober that measures write → replica lag.
    fn hot_load(
        &self,
        r: &Running,
        data: &Path,
        rep: &Path,
        a: &FleetArgs,
        dbs: &[usize],
    ) -> Result<LoadFigures> {
        let probes = a.probes.min(dbs.len());
        let (probe_dbs, load_dbs) = dbs.split_at(probes);
        nix::unistd::sync();
        // Memory of hot databases between writes: one write each (all
        // promoted), then a quiet pause well inside the idle timeout.
        for i in dbs {
            let c = Connection::open(data.join(rel(*i, a.shards)))?;
            c.busy_timeout(Duration::from_secs(5))?;
            c.execute(
                "INSERT INTO orders(customer, amount_cents) VALUES ('promote', 1)",
                [],
            )?;
        }
        std::thread::sleep(Duration::from_secs(8));
        let quiet_rss = r.rss_mb();
        let quiet_anon = r.anon_mb();
        let quiet_shm = r.shm_mb();
        // Databases promoted by the promotions phase may still be hot:
        // count what is hot now (Go keeps every database open).
        let hot_now = || {
            r.metrics()
                .ok()
                .and_then(|m| metric(&m, "litestreampp_databases{tier=\"hot\"}"))
                .unwrap_or(dbs.len() as f64)
        };
        let quiet_hot = hot_now() as usize;
        let mut hot_samples = Vec::new();
        let stop = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut threads = Vec::new();
        let writers = 4;
        for w in 0..writers {
            let mine: Vec<PathBuf> = load_dbs
                .iter()
                .skip(w)
                .step_by(writers)
                .map(|i| data.join(rel(*i, a.shards)))
                .collect();
            let (stop, writes) = (stop.clone(), writes.clone());
            threads.push(std::thread::spawn(move || -> Result<()> {
                let conns: Vec<Connection> = mine
                    .iter()
                    .map(|p| {
                        let c = Connection::open(p)?;
                        c.busy_timeout(Duration::from_secs(5))?;
                        Ok(c)
                    })
                    .collect::<Result<_>>()?;
                let mut rng = rand::rng();
                let mut next = Instant::now() + Duration::from_millis(rng.random_range(0..1000));
                let step = Duration::from_secs_f64(1.0 / conns.len().max(1) as f64);
                while !stop.load(Ordering::Relaxed) {
                    for c in &conns {
                        std::thread::sleep(next.saturating_duration_since(Instant::now()));
                        // Random phases: writes land anywhere in a sync window.
                        next += step.mul_f64(rng.random_range(0.0..2.0));
                        c.execute(
                            "INSERT INTO orders(customer, amount_cents) VALUES ('load', 1)",
                            [],
                        )?;
                        writes.fetch_add(1, Ordering::Relaxed);
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                }
                Ok(())
            }));
        }
        // Observer of the probe databases' replicas: inotify on their L0
        // directories (a file replica renames each finished file into
        // place), so observing costs no CPU the fleet would miss.
        let seen: Arc<Mutex<Vec<(usize, u32, Instant)>>> = Arc::default();
        let observer = {
            use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
            let dirs: Vec<PathBuf> = probe_dbs
                .iter()
                .map(|i| rep.join(rel(*i, a.shards)).join("ltx/0"))
                .collect();
            let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
            let mut watches = std::collections::HashMap::new();
            for (j, d) in dirs.iter().enumerate() {
                std::fs::create_dir_all(d)?;
                let wd = ino.add_watch(
                    d.as_path(),
                    AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CLOSE_WRITE,
                )?;
                watches.insert(wd, j);
            }
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || {
                use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
                use std::os::fd::AsFd;
                while !stop.load(Ordering::Relaxed) {
                    let mut fds = [PollFd::new(ino.as_fd(), PollFlags::POLLIN)];
                    if poll(&mut fds, PollTimeout::from(100u16)).unwrap_or(0) == 0 {
                        continue;
                    }
                    let now = Instant::now();
                    for ev in ino.read_events().unwrap_or_default() {
                        let (Some(&j), Some(name)) = (watches.get(&ev.wd), ev.name) else {
                            continue;
                        };
                        if !name.to_string_lossy().ends_with(".ltx") {
                            continue;
                        }
                        if let Ok(b) = std::fs::read(dirs[j].join(&name))
                            && b.len() >= 100
                        {
                            let commit = u32::from_be_bytes([b[12], b[13], b[14], b[15]]);
                            seen.lock().unwrap().push((j, commit, now));
                        }
                    }
                }
            })
        };
        let probe_conns: Vec<Connection> = probe_dbs
            .iter()
            .map(|i| Connection::open(data.join(rel(*i, a.shards))))
            .collect::<rusqlite::Result<_>>()?;
        // Warm-up: every database promoted and replicating.
        let warm = Duration::from_secs(15);
        let t0 = Instant::now();
        let cpu0 = r.cpu_secs();
        let mut sent: Vec<(usize, u32, Instant)> = Vec::new();
        let mut rss = Vec::new();
        let total = warm + Duration::from_secs(a.load_seconds);
        let step = Duration::from_secs_f64(1.0 / probe_conns.len().max(1) as f64);
        let mut next = Instant::now();
        let mut cpu_measured = None;
        let mut rng = rand::rng();
        'outer: loop {
            for (j, c) in probe_conns.iter().enumerate() {
                if t0.elapsed() >= total {
                    break 'outer;
                }
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
                // Each probe written about once a second, at a random
                // phase of its sync window.
                next += step.mul_f64(rng.random_range(0.0..2.0));
                c.execute(
                    "INSERT INTO orders(customer, amount_cents) VALUES ('probe', zeroblob(3000))",
                    [],
                )?;
                let t = Instant::now();
                let pages: u32 = c.query_row("PRAGMA page_count", [], |row| row.get(0))?;
                if t0.elapsed() >= warm {
                    if cpu_measured.is_none() {
                        cpu_measured = Some((r.cpu_secs(), Instant::now()));
                    }
                    sent.push((j, pages, t));
                    if sent.len().is_multiple_of(probe_conns.len()) {
                        rss.push(r.rss_mb());
                        hot_samples.push(hot_now());
                    }
                }
            }
        }
        let (cpu_a, ta) = cpu_measured.unwrap_or((cpu0, t0));
        let cpu = (r.cpu_secs() - cpu_a) / ta.elapsed().as_secs_f64() * 100.0;
        let hist = r.metrics().ok();
        std::thread::sleep(Duration::from_secs(5));
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
        }
        observer.join().ok();
        let seen = seen.lock().unwrap().clone();
        let mut lags = Vec::new();
        let mut missing = 0;
        for (j, pages, t) in sent {
            match seen
                .iter()
                .filter(|(k, c, when)| *k == j && *c >= pages && *when >= t)
                .map(|(_, _, when)| *when)
                .min()
            {
                Some(when) => lags.push(when.duration_since(t).as_secs_f64() * 1000.0),
                None => missing += 1,
            }
        }
        Ok(LoadFigures {
            hot: dbs.len(),
            writes_per_sec: writes.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64(),
            lags,
            missing,
            rss: median(rss),
            load_hot: median(hot_samples),
            quiet_rss,
            quiet_anon,
            quiet_shm,
            quiet_hot,
            cpu,
            metrics_lag_p99: hist.as_deref().and_then(histogram_p99),
        })
    }

    /// Counts S3 requests (moto's request log) while a fleet on S3 is idle.
    fn fleet_s3_idle(&self, a: &FleetArgs, root: &Path) -> Result<String> {
        let count = a.s3_count;
        let data = root.join(format!("s3-{count}"));
        eprintln!("fleet: {count} databases on S3 (moto)...");
        self.build_fleet(a, &data, count)?;
        let log = root.join("moto.log");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut moto = Command::new(".venv/bin/moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("start moto (run tests/setup.sh first)")?;
        let requests = || -> usize {
            std::fs::read_to_string(&log)
                .map(|s| s.lines().filter(|l| l.contains(" HTTP/1.1\" ")).count())
                .unwrap_or(0)
        };
        let result = (|| -> Result<String> {
            let t0 = Instant::now();
            while super::http(port, "PUT", "/fleet")
                .map(|c| c != 200)
                .unwrap_or(true)
            {
                if t0.elapsed() > Duration::from_secs(30) {
                    bail!("moto did not start");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let template = format!(
                "s3://fleet/{{path}}?endpoint=http://127.0.0.1:{port}&region=us-east-1&forcePathStyle=true"
            );
            let base = requests();
            let t0 = Instant::now();
            let r = self.start_ours(&data, &template, &["--backlog-rate", "1000000"])?;
            startup_seconds(&r, t0)?;
            wait_backlog(&r, count, t0, Duration::from_secs(3600))?;
            let backlog = t0.elapsed().as_secs_f64();
            let after_backlog = requests();
            std::thread::sleep(Duration::from_secs(5));
            let idle0 = requests();
            std::thread::sleep(Duration::from_secs(a.idle_seconds));
            let idle = requests() - idle0;
            r.stop()?;
            Ok(format!(
                "### An idle fleet on S3 (moto), {count} databases\n\n\
                 | | litestreampp |\n|---|---|\n\
                 | initial backlog | {backlog:.1} s ({:.0} databases/s) |\n\
                 | S3 requests per new database (backlog) | {:.1} |\n\
                 | S3 requests while idle, {} s | **{idle}** (goal 0) |\n",
                count as f64 / backlog,
                (after_backlog - base) as f64 / count as f64,
                a.idle_seconds,
            ))
        })();
        let _ = moto.kill(); // the phase is over
        let _ = moto.wait();
        result
    }
}

/// Forwards a child's stderr lines to a channel (and drains it).
fn forward_lines(stderr: Option<std::process::ChildStderr>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(e) = stderr {
        std::thread::spawn(move || {
            for line in BufReader::new(e).lines().map_while(Result::ok) {
                let _ = tx.send(line); // the reader may be gone
            }
        });
    }
    rx
}

/// Seconds to "fleet: N databases (...) in X s"; our own figure.
fn startup_seconds(r: &Running, t0: Instant) -> Result<f64> {
    loop {
        let line = r
            .lines
            .recv_timeout(Duration::from_secs(120))
            .context("no startup line from litestreampp run")?;
        if let Some(rest) = line.strip_prefix("fleet: ") {
            let secs = rest
                .split(" in ")
                .nth(1)
                .and_then(|s| s.split('s').next())
                .and_then(|v| v.parse().ok());
            return Ok(secs.unwrap_or_else(|| t0.elapsed().as_secs_f64()));
        }
        if line.starts_with("error") {
            bail!("litestreampp run: {line}");
        }
    }
}

/// Waits until every database is cold (backed up and sealed).
fn wait_backlog(r: &Running, count: usize, t0: Instant, limit: Duration) -> Result<()> {
    loop {
        std::thread::sleep(Duration::from_millis(250));
        if let Ok(m) = r.metrics() {
            let cold = metric(&m, "litestreampp_databases{tier=\"cold\"}").unwrap_or(0.0);
            if cold as usize >= count {
                return Ok(());
            }
        }
        if t0.elapsed() > limit {
            bail!("backlog not done after {:?}", limit);
        }
    }
}

/// After the backlog: its dirty pages written back, 35 s for the fleet to
/// settle (its memory trim), then [`idle_sample`].
fn settle_and_sample_idle(r: &Running, secs: u64) -> (f64, f64) {
    nix::unistd::sync();
    std::thread::sleep(Duration::from_secs(35));
    idle_sample(r, secs)
}

/// Median RSS (MB) and CPU (% of a core) over `secs` of idleness.
fn idle_sample(r: &Running, secs: u64) -> (f64, f64) {
    let cpu0 = r.cpu_secs();
    let t0 = Instant::now();
    let mut rss = Vec::new();
    while t0.elapsed() < Duration::from_secs(secs) {
        rss.push(r.rss_mb());
        std::thread::sleep(Duration::from_secs(1));
    }
    let cpu = (r.cpu_secs() - cpu0) / t0.elapsed().as_secs_f64() * 100.0;
    (median(rss), cpu)
}

/// p99 of `litestreampp_replication_lag_seconds` from its buckets (upper
/// bound of the bucket), in ms.
fn histogram_p99(m: &str) -> Option<f64> {
    let name = "litestreampp_replication_lag_seconds";
    let total = metric(m, &format!("{name}_count"))?;
    if total == 0.0 {
        return None;
    }
    for l in m.lines() {
        let Some(rest) = l.strip_prefix(&format!("{name}_bucket{{le=\"")) else {
            continue;
        };
        let (le, v) = rest.split_once("\"} ")?;
        let v: f64 = v.parse().ok()?;
        if v >= total * 0.99 {
            return if le == "+Inf" {
                Some(f64::INFINITY)
            } else {
                le.parse::<f64>().ok().map(|s| s * 1000.0)
            };
        }
    }
    None
}

#[derive(Clone)]
struct LoadFigures {
    hot: usize,
    writes_per_sec: f64,
    lags: Vec<f64>,
    missing: usize,
    rss: f64,
    /// Databases hot while `rss` was sampled (median).
    load_hot: f64,
    /// RSS with every hot database promoted and quiet.
    quiet_rss: f64,
    /// Anonymous memory and `-shm` mappings at that moment (MB).
    quiet_anon: f64,
    quiet_shm: f64,
    /// Databases hot at that moment.
    quiet_hot: usize,
    cpu: f64,
    metrics_lag_p99: Option<f64>,
}

#[derive(Clone)]
struct FleetFigures {
    count: usize,
    build_rate: f64,
    startup: f64,
    backlog: f64,
    idle_rss: f64,
    /// Anonymous memory at the end of the idle phase (MB).
    idle_anon: f64,
    idle_cpu: f64,
    restart: Option<f64>,
    restart_rss: Option<f64>,
    promotion: Option<Vec<f64>>,
    cold_write: Vec<f64>,
    load: LoadFigures,
}

impl FleetFigures {
    fn rows(&self) -> Vec<(&'static str, String)> {
        let ms = |v: &Vec<f64>, p: f64| format!("{:.0} ms", percentile(v.clone(), p));
        let opt = |v: Option<String>| v.unwrap_or_else(|| "n/a".into());
        let l = &self.load;
        vec![
            (
                "demo fleet built (lsdemo fleet-build)",
                format!("{:.0} databases/s", self.build_rate),
            ),
            (
                "discovery and registration at start",
                if self.startup.is_nan() {
                    "n/a".into()
                } else {
                    format!("{:.2} s", self.startup)
                },
            ),
            (
                "initial backlog (every database backed up)",
                format!(
                    "{:.1} s ({:.0} databases/s)",
                    self.backlog,
                    self.count as f64 / self.backlog
                ),
            ),
            (
                "RSS, idle after the backlog",
                format!("{:.1} MB", self.idle_rss),
            ),
            ("CPU, idle", format!("{:.2}% of a core", self.idle_cpu)),
            (
                "restart with every database known (to watching)",
                opt(self.restart.map(|s| format!("{s:.2} s"))),
            ),
            (
                "RSS after the restart",
                opt(self.restart_rss.map(|s| format!("{s:.1} MB"))),
            ),
            (
                "write → promotion, p50 / p99",
                opt(self
                    .promotion
                    .as_ref()
                    .map(|v| format!("{} / {}", ms(v, 50.0), ms(v, 99.0)))),
            ),
            (
                "write to an idle database → replica, p50 / p99",
                format!(
                    "{} / {}",
                    ms(&self.cold_write, 50.0),
                    ms(&self.cold_write, 99.0)
                ),
            ),
            (
                "hot databases under load (writes/s)",
                format!("{} ({:.0} writes/s)", l.hot, l.writes_per_sec),
            ),
            (
                "lag under load, p50 / p99 / max",
                format!(
                    "{} / {} / {:.0} ms ({} samples{})",
                    ms(&l.lags, 50.0),
                    ms(&l.lags, 99.0),
                    l.lags.iter().cloned().fold(0.0, f64::max),
                    l.lags.len(),
                    if l.missing > 0 {
                        format!(", {} not seen", l.missing)
                    } else {
                        String::new()
                    }
                ),
            ),
            (
                "lag p99 from our own histogram (bucket bound)",
                opt(l.metrics_lag_p99.map(|v| format!("≤ {v:.0} ms"))),
            ),
            (
                "RSS, every hot database promoted and between writes",
                format!("{:.1} MB", l.quiet_rss),
            ),
            ("databases hot at that moment", l.quiet_hot.to_string()),
            (
                "memory per hot database ((that − idle) / hot)",
                format!(
                    "{:.0} KB",
                    (l.quiet_rss - self.idle_rss) * 1024.0 / l.quiet_hot.max(1) as f64
                ),
            ),
            (
                "of which private (anonymous) memory",
                format!(
                    "{:.0} KB",
                    (l.quiet_anon - self.idle_anon) * 1024.0 / l.quiet_hot.max(1) as f64
                ),
            ),
            (
                "of which SQLite's WAL index (`-shm` pages, shared with the application)",
                format!("{:.0} KB", l.quiet_shm * 1024.0 / l.quiet_hot.max(1) as f64),
            ),
            ("RSS under load", format!("{:.1} MB", l.rss)),
            (
                "working set per hot database under load ((load − idle) / hot)",
                format!(
                    "{:.0} KB",
                    (l.rss - self.idle_rss) * 1024.0 / l.load_hot.max(1.0)
                ),
            ),
            ("CPU under load", format!("{:.0}% of a core", l.cpu)),
        ]
    }

    fn table(&self, go: Option<&FleetFigures>) -> String {
        let mine = self.rows();
        match go {
            None => {
                let mut s = String::from("| | litestreampp |\n|---|---|\n");
                for (k, v) in mine {
                    s.push_str(&format!("| {k} | {v} |\n"));
                }
                s
            }
            Some(g) => {
                let mut s =
                    String::from("| | Go Litestream 0.5.17 | litestreampp |\n|---|---|---|\n");
                for ((k, v), (_, gv)) in mine.into_iter().zip(g.rows()) {
                    s.push_str(&format!("| {k} | {gv} | {v} |\n"));
                }
                s
            }
        }
    }
}
