//! The control socket's commands: `list`, `info`, `sync`, `start`, `stop`,
//! `register`, `unregister`, with Litestream 0.5.17's flags and output
//! (text and `-json`), against our socket or Go's. A relative database
//! path is made absolute here (Go sends it as typed, and the server then
//! finds nothing).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use http::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::runtime;
use crate::control::client::call;
use crate::control::protocol::{
    InfoResponse, ListResponse, PathRequest, RegisterRequest, RegisterResponse, StartStopResponse,
    SyncRequest, SyncResponse, UnregisterResponse,
};
use crate::flags::{InfoArgs, ListArgs, RegisterArgs, StartStopArgs, SyncArgs, UnregisterArgs};

/// The version our socket reports (`Litestream <version>` in Go's `info`).
pub fn socket_version() -> String {
    format!("v{}-litestreampp", env!("CARGO_PKG_VERSION"))
}

/// `GET route` on the socket; the reply decoded, or the server's error as
/// `"<command> failed: ..."` (the command named by the route).
fn get<T: DeserializeOwned>(socket: &Path, route: &str, within: Duration) -> Result<T> {
    runtime()?.block_on(call(
        socket,
        Method::GET,
        route,
        None,
        within,
        command(route),
    ))
}

/// `POST route` with `req` as its JSON body; as [`get`].
fn post<T: DeserializeOwned>(
    socket: &Path,
    route: &str,
    req: &impl Serialize,
    within: Duration,
) -> Result<T> {
    let body = serde_json::to_vec(req)?;
    runtime()?.block_on(call(
        socket,
        Method::POST,
        route,
        Some(body),
        within,
        command(route),
    ))
}

/// `list` for `/list?glob=...`.
fn command(route: &str) -> &str {
    let name = route.trim_start_matches('/');
    name.split('?').next().unwrap_or(name)
}

fn positive(timeout: i64) -> Result<Duration> {
    if timeout <= 0 {
        bail!("timeout must be greater than 0");
    }
    Ok(Duration::from_secs(timeout.unsigned_abs()))
}

/// `~/...` is left to the server; anything else relative is made absolute.
fn db_path(p: &str) -> Result<String> {
    if p.starts_with('~') || Path::new(p).is_absolute() {
        return Ok(p.to_string());
    }
    Ok(std::path::absolute(p)?.display().to_string())
}

fn print_json<T: Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Go's `time.Duration` text for whole seconds (`1h2m3s`, `45s`).
fn go_duration(secs: i64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

/// An RFC 3339 time as Go's `Format(time.RFC3339)` prints it (seconds).
fn rfc3339(t: &str) -> String {
    t.parse::<jiff::Timestamp>()
        .map(|ts| ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| t.to_string())
}

pub fn list(a: ListArgs) -> Result<ExitCode> {
    let within = positive(a.timeout)?;
    // Our paging; without it, the request is Go's.
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if let Some(g) = &a.glob {
        query.append_pair("glob", g);
    }
    if let Some(n) = a.offset {
        query.append_pair("offset", &n.to_string());
    }
    if let Some(n) = a.limit {
        query.append_pair("limit", &n.to_string());
    }
    let query = query.finish();
    let route = if query.is_empty() {
        "/list".to_string()
    } else {
        format!("/list?{query}")
    };
    let r: ListResponse = get(&a.socket.socket, &route, within)?;
    if a.socket.json {
        print_json(&r)?;
    } else if r.databases.is_empty() {
        println!("No databases configured");
    } else {
        for db in &r.databases {
            let at = db.last_sync_at.as_deref().map_or("never".into(), rfc3339);
            println!("{} [{}] (last sync: {at})", db.path, db.status);
        }
        if let Some(total) = r.total {
            eprintln!("{} of {total} databases", r.databases.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn info(a: InfoArgs) -> Result<ExitCode> {
    let within = positive(a.timeout)?;
    let r: InfoResponse = get(&a.socket.socket, "/info", within)?;
    if a.socket.json {
        print_json(&r)?;
    } else {
        println!("Litestream {}", r.version);
        println!("  PID:        {}", r.pid);
        println!("  Uptime:     {}", go_duration(r.uptime_seconds));
        println!("  Started at: {}", rfc3339(&r.started_at));
        println!("  Databases:  {}", r.database_count);
    }
    Ok(ExitCode::SUCCESS)
}

/// What `sync` prints (Go's `SyncResult`).
#[derive(Serialize)]
struct SyncResult {
    db_path: String,
    txid: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    replica_txid: Option<u64>,
    duration_ms: u128,
}

pub fn sync(a: SyncArgs) -> Result<ExitCode> {
    let within = positive(a.timeout)?;
    let body = SyncRequest {
        path: db_path(&a.db_path)?,
        wait: a.wait,
        timeout: a.timeout,
    };
    let began = Instant::now();
    let r: SyncResponse = post(&a.socket.socket, "/sync", &body, within)?;
    let out = SyncResult {
        db_path: r.path,
        txid: r.txid,
        replica_txid: a.wait.then_some(r.replicated_txid),
        duration_ms: began.elapsed().as_millis(),
    };
    if a.socket.json {
        print_json(&out)?;
    } else {
        println!("db_path: {}", out.db_path);
        println!("txid: {}", out.txid);
        if let Some(t) = out.replica_txid {
            println!("replica_txid: {t}");
        }
        println!("duration_ms: {}", out.duration_ms);
    }
    Ok(ExitCode::SUCCESS)
}

/// What `start` and `stop` print (Go's `StartStopResult`).
#[derive(Serialize)]
struct StartStopResult {
    status: String,
    db_path: String,
    state: &'static str,
    txid: u64,
    socket: PathBuf,
}

pub fn start_stop(a: StartStopArgs, start: bool) -> Result<ExitCode> {
    // Go sets no client deadline for a non-positive timeout here.
    let within = positive(a.timeout).unwrap_or(Duration::from_secs(3600));
    let body = PathRequest {
        path: db_path(&a.db_path)?,
        timeout: a.timeout,
    };
    let (route, state) = if start {
        ("/start", "running")
    } else {
        ("/stop", "stopped")
    };
    let r: StartStopResponse = post(&a.socket.socket, route, &body, within)?;
    let out = StartStopResult {
        status: r.status,
        db_path: r.path,
        state,
        txid: r.txid,
        socket: a.socket.socket,
    };
    if a.socket.json {
        print_json(&out)?;
    } else {
        println!("status: {}", out.status);
        println!("db_path: {}", out.db_path);
        println!("state: {}", out.state);
        println!("txid: {}", out.txid);
        println!("socket: {}", out.socket.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// What `register` prints (Go's `RegisterResult`).
#[derive(Serialize)]
struct RegisterResult {
    status: String,
    db_path: String,
    replica: String,
    socket: PathBuf,
}

pub fn register(a: RegisterArgs) -> Result<ExitCode> {
    let within = positive(a.timeout)?;
    if a.replica.is_empty() {
        bail!("-replica is required");
    }
    let body = RegisterRequest {
        path: db_path(&a.db_path)?,
        replica_url: a.replica.clone(),
    };
    let r: RegisterResponse = post(&a.socket.socket, "/register", &body, within)?;
    let out = RegisterResult {
        status: r.status,
        db_path: r.path,
        replica: litestreampp_core::redact::redact_url(&a.replica),
        socket: a.socket.socket,
    };
    if a.socket.json {
        print_json(&out)?;
    } else {
        let shown = if out.status == "already_registered" {
            "already registered"
        } else {
            out.status.as_str()
        };
        println!("status: {shown}");
        println!("db_path: {}", out.db_path);
        println!("replica: {}", out.replica);
        println!("socket: {}", out.socket.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// What `unregister` prints (Go's `UnregisterResult`).
#[derive(Serialize)]
struct UnregisterResult {
    status: String,
    db_path: String,
    final_txid: u64,
    socket: PathBuf,
}

pub fn unregister(a: UnregisterArgs) -> Result<ExitCode> {
    let within = positive(a.timeout)?;
    let path = db_path(&a.db_path)?;
    if a.dry_run {
        println!("Dry run: unregister request preview");
        println!("  database: {path}");
        println!("  socket: {}", a.socket.socket.display());
        println!("  replicas: daemon-managed replica for this database");
        println!(
            "  final sync: daemon close will sync the database and replica before the command completes"
        );
        println!("  timeout: {}s", a.timeout);
        println!("No unregister request was sent.");
        return Ok(ExitCode::SUCCESS);
    }
    let body = PathRequest {
        path,
        timeout: a.timeout,
    };
    let r: UnregisterResponse = post(&a.socket.socket, "/unregister", &body, within)?;
    let out = UnregisterResult {
        status: r.status,
        db_path: r.path,
        final_txid: r.txid,
        socket: a.socket.socket,
    };
    if a.socket.json {
        print_json(&out)?;
    } else {
        println!("status: {}", out.status);
        println!("db_path: {}", out.db_path);
        println!("final_txid: {}", out.final_txid);
        println!("socket: {}", out.socket.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_shapes() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(59), "59s");
        assert_eq!(go_duration(61), "1m1s");
        assert_eq!(go_duration(3600), "1h0m0s");
        assert_eq!(
            rfc3339("2026-12-05T07:03:03.123456789Z"),
            "2026-12-05T07:03:03Z"
        );
    }
}
