//! What a test reads of a running fleet from outside: its `/status` and
//! `/metrics` over HTTP, and its process's memory, descriptors and threads
//! from `/proc`.

use crate::moto::http;

/// The fleet's `/status` as JSON, or `Null` while it does not answer (a
/// restart, a kill).
pub fn status(port: u16) -> serde_json::Value {
    match http(port, "GET", "/status") {
        Ok((200, body)) => serde_json::from_str(&body).unwrap_or_default(),
        _ => serde_json::Value::Null,
    }
}

/// The value of the first sample of metric `name` in `/metrics`.
pub fn metric(port: u16, name: &str) -> Option<f64> {
    let (_, body) = http(port, "GET", "/metrics").ok()?;
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// One look at a process: resident memory, open descriptors, threads.
/// Zeros for a process that is gone.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    pub rss_kb: u64,
    pub fds: u64,
    pub threads: u64,
}

impl ProcSample {
    pub fn of(pid: u32) -> ProcSample {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|rd| rd.count() as u64)
            .unwrap_or(0);
        ProcSample {
            rss_kb: field("VmRSS:"),
            fds,
            threads: field("Threads:"),
        }
    }
}

/// Resident memory of `pid` in KB (0 once it is gone).
pub fn rss_kb(pid: u32) -> u64 {
    ProcSample::of(pid).rss_kb
}
