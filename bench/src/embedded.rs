//! `lsbench embedded`: the demo REST server (`demos/embedded-server`)
//! under load on loopback, with replication off, embedded (to moto on
//! 127.0.0.1), embedded with `--replication-sync-writes`, and off with Go
//! Litestream 0.5.17 replicating the same database as a sidecar. Keep-alive
//! clients for a fixed time per run; modes alternate within a round so the
//! machine's drift spreads over all of them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::Rng;

use super::{
    BUCKET, Bench, creds, fresh_dir, median, percentile, proc_cpu_secs, reset_moto, start_moto,
};

/// What one `lsbench embedded` run does.
#[derive(clap::Args)]
pub struct EmbeddedArgs {
    /// Client connections (keep-alive, one thread each).
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Measured seconds per run (after one second of warm-up).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Rounds: each runs every mode once per mix.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Request mixes, as the percentage of writes (the rest are reads of
    /// one row by key).
    #[arg(long, value_delimiter = ',', default_value = "100,20")]
    pub write_pct: Vec<u32>,
    #[arg(long, default_value = "target/release/embedded-server")]
    pub server: PathBuf,
    /// The modes to run (all by default).
    #[arg(long, value_delimiter = ',', value_enum, default_values_t = Mode::ALL)]
    pub modes: Vec<Mode>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Mode {
    Off,
    Embedded,
    SyncWrites,
    GoSidecar,
}

impl Mode {
    const ALL: [Mode; 4] = [Mode::Off, Mode::Embedded, Mode::SyncWrites, Mode::GoSidecar];

    fn label(self) -> &'static str {
        match self {
            Mode::Off => "replication off",
            Mode::Embedded => "embedded replication (litestreampp-core)",
            Mode::SyncWrites => "embedded, `--replication-sync-writes`",
            Mode::GoSidecar => "off + Go Litestream 0.5.17 sidecar",
        }
    }
}

/// One run's figures.
#[derive(Debug, Clone, Copy)]
struct Run {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// CPU seconds of the server (and sidecar) per 1,000 requests.
    cpu_per_k: f64,
    /// SIGTERM to exit (the final sync when replicating).
    stop_s: f64,
    errors: u64,
}

/// A keep-alive HTTP/1.1 connection.
struct Client {
    r: BufReader<TcpStream>,
}

impl Client {
    fn connect(port: u16) -> Result<Client> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Client {
            r: BufReader::new(s),
        })
    }

    /// Sends a request and reads the whole answer; returns its status.
    fn request(&mut self, method: &str, path: &str, body: &str) -> Result<u16> {
        write!(
            self.r.get_mut(),
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        let mut line = String::new();
        self.r.read_line(&mut line)?;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let mut len = 0usize;
        loop {
            line.clear();
            if self.r.read_line(&mut line)? == 0 {
                bail!("connection closed in the headers");
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse()?;
            }
        }
        let mut sink = vec![0u8; len];
        self.r.read_exact(&mut sink)?;
        Ok(status)
    }
}

fn wait_ready(server: &mut Child, port: u16) -> Result<()> {
    let t0 = Instant::now();
    loop {
        if let Some(s) = server.try_wait()? {
            bail!("server exited ({s}) before serving");
        }
        if Client::connect(port)
            .and_then(|mut c| c.request("GET", "/healthz", ""))
            .is_ok_and(|s| s == 200)
        {
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("server not ready after 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stop(mut child: Child) -> Result<f64> {
    let t0 = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    let status = child.wait()?;
    if !status.success() {
        bail!("exited with {status} after SIGTERM");
    }
    Ok(t0.elapsed().as_secs_f64())
}

impl Bench {
    pub fn embedded(&self, a: &EmbeddedArgs) -> Result<()> {
        if !a.server.exists() {
            bail!(
                "{} not found (cargo build --release -p embedded-server)",
                a.server.display()
            );
        }
        let (mut moto, moto_port) = start_moto()?;
        let r = self.embedded_runs(a, moto_port);
        let _ = moto.kill(); // the run is over
        let results = r?;
        println!(
            "{} client connections (keep-alive) on loopback, {} s measured per run after 1 s of warm-up, {} rounds (modes alternate within a round); replica: moto on 127.0.0.1; medians of the rounds.\n",
            a.clients, a.seconds, a.rounds
        );
        println!(
            "| writes | mode | requests/s | p50 ms | p99 ms | throughput vs off | CPU s per 1k requests | stop (SIGTERM → exit) |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for &pct in &a.write_pct {
            let med = |m: Mode, f: fn(&Run) -> f64| {
                median(
                    results
                        .iter()
                        .filter(|(p, mm, _)| *p == pct && *mm == m)
                        .map(|(_, _, r)| f(r))
                        .collect(),
                )
            };
            let off = med(Mode::Off, |r| r.rps);
            for &m in &a.modes {
                let rps = med(m, |r| r.rps);
                println!(
                    "| {pct} % | {} | {:.0} | {:.2} | {:.2} | {:.1} % | {:.3} | {:.2} s |",
                    m.label(),
                    rps,
                    med(m, |r| r.p50_ms),
                    med(m, |r| r.p99_ms),
                    100.0 * rps / off,
                    med(m, |r| r.cpu_per_k),
                    med(m, |r| r.stop_s),
                );
            }
        }
        let errors: u64 = results.iter().map(|(_, _, r)| r.errors).sum();
        println!("\nRequests answered with an error or not at all: {errors}.");
        let ratios: Vec<String> = a
            .write_pct
            .iter()
            .map(|&pct| {
                let v: Vec<f64> = (0..a.rounds)
                    .filter_map(|round| {
                        let get = |m: Mode| {
                            results
                                .iter()
                                .filter(|(p, mm, _)| *p == pct && *mm == m)
                                .nth(round)
                                .map(|(_, _, r)| r.rps)
                        };
                        Some(get(Mode::Embedded)? / get(Mode::Off)?)
                    })
                    .collect();
                format!(
                    "{pct} % writes: {}",
                    v.iter()
                        .map(|x| format!("{:.1} %", 100.0 * x))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
            .collect();
        println!(
            "Embedded / off throughput, round by round: {}.",
            ratios.join("; ")
        );
        Ok(())
    }

    fn embedded_runs(&self, a: &EmbeddedArgs, moto_port: u16) -> Result<Vec<(u32, Mode, Run)>> {
        let mut out = Vec::new();
        for round in 0..a.rounds {
            for &pct in &a.write_pct {
                let mut modes = a.modes.clone();
                modes.rotate_left(round % a.modes.len().max(1));
                for m in modes {
                    reset_moto(moto_port)?;
                    let r = self
                        .embedded_run(a, pct, m, moto_port)
                        .with_context(|| format!("{} with {pct} % writes", m.label()))?;
                    eprintln!(
                        "round {round} {pct}% {:?}: {:.0} req/s, p99 {:.2} ms, stop {:.2} s",
                        m, r.rps, r.p99_ms, r.stop_s
                    );
                    out.push((pct, m, r));
                }
            }
        }
        Ok(out)
    }

    fn embedded_run(&self, a: &EmbeddedArgs, pct: u32, mode: Mode, moto_port: u16) -> Result<Run> {
        let dir = self.work.join("embedded");
        fresh_dir(&dir)?;
        let db = dir.join("app.db");
        let url = format!(
            "s3://{BUCKET}/app?endpoint=http://127.0.0.1:{moto_port}&region=us-east-1&forcePathStyle=true"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut c = Command::new(&a.server);
        c.arg("--db")
            .arg(&db)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(dir.join("server.log"))?));
        creds(&mut c);
        match mode {
            Mode::Embedded => {
                c.args(["--replication-enabled", "--replication-replica-url", &url]);
            }
            Mode::SyncWrites => {
                c.args([
                    "--replication-enabled",
                    "--replication-replica-url",
                    &url,
                    "--replication-sync-writes",
                ]);
            }
            Mode::Off | Mode::GoSidecar => {}
        }
        let mut server = c.spawn().context("start the server")?;
        wait_ready(&mut server, port)?;
        // Rows for the reads to find.
        let mut seed = Client::connect(port)?;
        for i in 0..1000 {
            seed.request("POST", "/items", &row(i))?;
        }
        drop(seed);
        let sidecar = if mode == Mode::GoSidecar {
            Some(self.go_sidecar(&dir, &db, moto_port)?)
        } else {
            None
        };
        let pids: Vec<u32> = std::iter::once(server.id())
            .chain(sidecar.as_ref().map(Child::id))
            .collect();
        let cpu0: f64 = pids.iter().map(|&p| proc_cpu_secs(p as i32)).sum();
        let measured = load(port, a.clients, pct, Duration::from_secs(a.seconds))?;
        let cpu = pids.iter().map(|&p| proc_cpu_secs(p as i32)).sum::<f64>() - cpu0;
        let stop_s = if let Some(go) = sidecar {
            let s = stop(server)?;
            stop(go)?;
            s
        } else {
            stop(server)?
        };
        let n = measured.latencies.len() as f64;
        Ok(Run {
            rps: n / a.seconds as f64,
            p50_ms: percentile(measured.latencies.clone(), 50.0),
            p99_ms: percentile(measured.latencies, 99.0),
            cpu_per_k: cpu / n * 1000.0,
            stop_s,
            errors: measured.errors,
        })
    }

    /// Go Litestream replicating `db` to moto, started once the database
    /// exists, given a moment for its first snapshot.
    fn go_sidecar(&self, dir: &Path, db: &Path, moto_port: u16) -> Result<Child> {
        let yaml = format!(
            "dbs:\n  - path: {}\n    replica:\n      type: s3\n      bucket: {BUCKET}\n      path: go-app\n      endpoint: http://127.0.0.1:{moto_port}\n      region: us-east-1\n      force-path-style: true\n",
            db.display()
        );
        // Go Litestream logs to stdout.
        let log = std::fs::File::create(dir.join("go.log"))?;
        let child = self
            .go_replicate(&dir.join("litestream.yml"), &yaml)?
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("start Go Litestream")?;
        std::thread::sleep(Duration::from_secs(2));
        Ok(child)
    }
}

fn row(i: u64) -> String {
    format!(
        "{{\"name\":\"item-{i}\",\"value\":\"{}\"}}",
        "x".repeat(100)
    )
}

struct Measured {
    /// Milliseconds, requests answered in the measured window.
    latencies: Vec<f64>,
    errors: u64,
}

/// `clients` threads of keep-alive requests for one warm-up second and
/// then `measure`.
fn load(port: u16, clients: usize, write_pct: u32, measure: Duration) -> Result<Measured> {
    let warmup = Duration::from_secs(1);
    let done = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|t| {
            let done = done.clone();
            std::thread::spawn(move || -> Result<Measured> {
                let mut rng = rand::rng();
                let mut c = Client::connect(port)?;
                let mut m = Measured {
                    latencies: Vec::new(),
                    errors: 0,
                };
                let mut i = (t as u64) << 40;
                while !done.load(Ordering::Relaxed) {
                    i += 1;
                    let t0 = Instant::now();
                    let status = if rng.random_range(0..100) < write_pct {
                        c.request("POST", "/items", &row(i))
                    } else {
                        let id = rng.random_range(1..=1000);
                        c.request("GET", &format!("/items/{id}"), "")
                    };
                    let at = t0.duration_since(start);
                    let ok = matches!(status, Ok(200 | 201));
                    if !ok {
                        m.errors += 1;
                        if status.is_err() {
                            c = Client::connect(port)?;
                        }
                    }
                    if ok && at >= warmup && at < warmup + measure {
                        m.latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
                    }
                }
                Ok(m)
            })
        })
        .collect();
    std::thread::sleep(warmup + measure);
    done.store(true, Ordering::Relaxed);
    let mut all = Measured {
        latencies: Vec::new(),
        errors: 0,
    };
    for t in threads {
        let m = t
            .join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
        all.latencies.extend(m.latencies);
        all.errors += m.errors;
    }
    Ok(all)
}
