//! A fault-injecting HTTP proxy between a client and a real S3 server:
//! with a given probability per request it answers 500 or 503 SlowDown
//! itself, resets the connection, forwards the request but truncates the
//! response body, or stalls before answering, or (WebDAV) answers a
//! directory listing 404; during an outage it resets every connection at
//! once. Every connection carries one
//! request (`Connection: close`), which keeps the proxy simple and exact.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rand::{Rng, SeedableRng};

/// What went wrong, per kind.
#[derive(Debug, Default)]
pub struct FaultStats {
    pub requests: AtomicU64,
    pub errors_500: AtomicU64,
    pub slowdowns: AtomicU64,
    pub resets: AtomicU64,
    pub truncated: AtomicU64,
    pub stalls: AtomicU64,
    /// WebDAV listings (PROPFIND) answered 404.
    pub lost_listings: AtomicU64,
    /// Connections reset during an outage.
    pub outage_resets: AtomicU64,
    /// PUT requests being forwarded now, and the most there ever were at
    /// once (what a client's upload cap allows).
    pub puts_in_flight: AtomicU64,
    pub max_puts_in_flight: AtomicU64,
}

/// Counts one PUT in flight while it lives.
struct PutInFlight<'a>(&'a FaultStats);

impl<'a> PutInFlight<'a> {
    fn new(st: &'a FaultStats) -> Self {
        let now = st.puts_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        st.max_puts_in_flight.fetch_max(now, Ordering::SeqCst);
        PutInFlight(st)
    }
}

impl Drop for PutInFlight<'_> {
    fn drop(&mut self) {
        self.0.puts_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FaultStats {
    /// Faults injected in all.
    pub fn faults(&self) -> u64 {
        [
            &self.errors_500,
            &self.slowdowns,
            &self.resets,
            &self.truncated,
            &self.stalls,
            &self.lost_listings,
        ]
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .sum()
    }

    /// One line for test output.
    pub fn summary(&self) -> String {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "{} requests, {} faults: {} HTTP 500, {} SlowDown, {} resets, {} truncated bodies, {} stalls, {} listings lost; {} requests refused during outages",
            l(&self.requests),
            self.faults(),
            l(&self.errors_500),
            l(&self.slowdowns),
            l(&self.resets),
            l(&self.truncated),
            l(&self.stalls),
            l(&self.lost_listings),
            l(&self.outage_resets)
        )
    }
}

/// Which faults to inject.
#[derive(Debug, Clone, Copy)]
pub struct FaultMix {
    pub errors: bool,
    pub resets: bool,
    pub truncate: bool,
    pub stalls: bool,
    pub stall: Duration,
    /// Truncate only response bodies of at least this many bytes (others
    /// pass untouched even when picked for a fault).
    pub truncate_min_body: usize,
    /// A WebDAV listing (PROPFIND at depth 1) picked for a fault is
    /// answered 404, as if its directory did not exist: a server that
    /// stumbles under load. Other requests picked for a fault pass, stats
    /// (depth 0) among them: what a client cannot tell from a directory
    /// that is really missing is two wrong answers in a row.
    pub lose_listings: bool,
}

impl FaultMix {
    /// Everything.
    pub fn all() -> Self {
        FaultMix {
            errors: true,
            resets: true,
            truncate: true,
            stalls: true,
            stall: Duration::from_millis(1500),
            truncate_min_body: 0,
            lose_listings: false,
        }
    }

    /// Only truncated response bodies (cut streams).
    pub fn truncate_only() -> Self {
        FaultMix {
            errors: false,
            resets: false,
            truncate: true,
            stalls: false,
            stall: Duration::ZERO,
            truncate_min_body: 0,
            lose_listings: false,
        }
    }

    /// Only WebDAV listings answered 404.
    pub fn lost_listings() -> Self {
        FaultMix {
            truncate: false,
            lose_listings: true,
            ..Self::truncate_only()
        }
    }

    /// Only truncated bodies of at least `min` bytes: streams cut midway
    /// while listings and small reads pass.
    pub fn cut_large_bodies(min: usize) -> Self {
        FaultMix {
            truncate_min_body: min,
            ..Self::truncate_only()
        }
    }
}

/// The proxy; stops accepting when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    pub port: u16,
    pub stats: Arc<FaultStats>,
    rate_ppm: Arc<AtomicU64>,
    outage: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    /// Proxies to `upstream_port` on 127.0.0.1, injecting faults into a
    /// `rate` (0..=1) share of requests once enabled with [`set_rate`].
    pub fn start(upstream_port: u16, mix: FaultMix, seed: u64) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let stats = Arc::new(FaultStats::default());
        let rate_ppm = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let outage = Arc::new(AtomicBool::new(false));
        let (st, rp, sp, out) = (
            stats.clone(),
            rate_ppm.clone(),
            stop.clone(),
            outage.clone(),
        );
        std::thread::spawn(move || {
            let mut n = 0u64;
            for conn in listener.incoming() {
                if sp.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                if out.load(Ordering::Relaxed) {
                    st.outage_resets.fetch_add(1, Ordering::Relaxed);
                    let _ = conn.shutdown(Shutdown::Both);
                    continue;
                }
                n += 1;
                let (st, rp) = (st.clone(), rp.clone());
                let rng =
                    rand::rngs::StdRng::seed_from_u64(seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                std::thread::spawn(move || handle(conn, upstream_port, mix, rng, &st, &rp));
            }
        });
        FaultProxy {
            port,
            stats,
            rate_ppm,
            outage,
            stop,
        }
    }

    /// Starts (`true`) or ends an outage: meanwhile every connection is
    /// reset before a byte of it is read.
    pub fn set_outage(&self, on: bool) {
        self.outage.store(on, Ordering::Relaxed);
    }

    /// Sets the share of requests that get a fault.
    pub fn set_rate(&self, rate: f64) {
        self.rate_ppm
            .store((rate.clamp(0.0, 1.0) * 1e6) as u64, Ordering::Relaxed);
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wakes the accept loop
    }
}

/// Reads one HTTP request (head and body) from the client.
fn read_request(c: &mut TcpStream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = c.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = buf[..head_end].to_vec();
    let mut body = buf[head_end..].to_vec();
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let len: usize = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    if text.contains("transfer-encoding: chunked") {
        while !body.ends_with(b"0\r\n\r\n") {
            let n = c.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        while body.len() < len {
            let n = c.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    Some((head, body))
}

/// Rewrites the request head so the upstream closes after answering.
fn close_after(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    for line in text.split("\r\n") {
        if line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        if line.is_empty() {
            break;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

/// A WebDAV PROPFIND of a directory's members (`Depth: 1`).
fn is_listing(head: &[u8]) -> bool {
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    head.starts_with("propfind ") && head.lines().any(|l| l.trim() == "depth: 1")
}

fn respond(c: &mut TcpStream, status: &str, code: &str) {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected by the fault proxy</Message></Error>"
    );
    let _ = write!(
        c,
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn handle(
    mut c: TcpStream,
    upstream: u16,
    mix: FaultMix,
    mut rng: rand::rngs::StdRng,
    st: &FaultStats,
    rate: &AtomicU64,
) {
    let Some((head, body)) = read_request(&mut c) else {
        return;
    };
    st.requests.fetch_add(1, Ordering::Relaxed);
    let _put = head.starts_with(b"PUT ").then(|| PutInFlight::new(st));
    let is_head = head.starts_with(b"HEAD ");
    let fault = rng.random_range(0..1_000_000) < rate.load(Ordering::Relaxed);
    let kinds: Vec<u8> = [
        (mix.errors, 0u8),
        (mix.errors, 1),
        (mix.resets, 2),
        (mix.truncate, 3),
        (mix.stalls, 4),
        (mix.lose_listings, 5),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, k)| k)
    .collect();
    let kind = if fault && !kinds.is_empty() {
        Some(kinds[rng.random_range(0..kinds.len())])
    } else {
        None
    };
    match kind {
        Some(0) => {
            st.errors_500.fetch_add(1, Ordering::Relaxed);
            respond(&mut c, "500 Internal Server Error", "InternalError");
            return;
        }
        Some(1) => {
            st.slowdowns.fetch_add(1, Ordering::Relaxed);
            respond(&mut c, "503 Slow Down", "SlowDown");
            return;
        }
        Some(2) => {
            st.resets.fetch_add(1, Ordering::Relaxed);
            let _ = c.shutdown(Shutdown::Both);
            return;
        }
        Some(4) => {
            st.stalls.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(mix.stall);
        }
        Some(5) if is_listing(&head) => {
            st.lost_listings.fetch_add(1, Ordering::Relaxed);
            respond(&mut c, "404 Not Found", "NotFound");
            return;
        }
        _ => {}
    }
    let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
        let _ = c.shutdown(Shutdown::Both);
        return;
    };
    if up
        .write_all(&close_after(&head))
        .and_then(|()| up.write_all(&body))
        .is_err()
    {
        return;
    }
    let mut resp = Vec::new();
    if up.read_to_end(&mut resp).is_err() {
        return;
    }
    if kind == Some(3)
        && let Some(i) = resp.windows(4).position(|w| w == b"\r\n\r\n")
        && resp.len() - (i + 4) >= mix.truncate_min_body
    {
        // Cut the body in half; a response without a body is cut inside
        // its headers instead.
        let body_len = resp.len() - (i + 4);
        let cut = if body_len > 1 && !is_head {
            i + 4 + body_len / 2
        } else {
            i / 2
        };
        st.truncated.fetch_add(1, Ordering::Relaxed);
        let _ = c.write_all(&resp[..cut]);
        let _ = c.shutdown(Shutdown::Both);
        return;
    }
    let _ = c.write_all(&resp);
    let _ = c.shutdown(Shutdown::Write);
}
