//! The control socket's server: hyper's HTTP/1.1 on a Unix socket, with
//! Litestream's routes. A request body is at most [`MAX_BODY`] bytes, its
//! headers must arrive within [`HEADER_TIMEOUT`], and an operation runs at
//! most its request's timeout; a malformed request gets an error reply
//! and nothing else happens. Headers and body each have
//! [`HEADER_TIMEOUT`] to arrive.

use std::convert::Infallible;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use super::protocol::{
    ErrorResponse, InfoResponse, ListQuery, PathRequest, RegisterRequest, SyncRequest, TxidResponse,
};
use super::{ControlTarget, Refusal, request_timeout};

/// Largest request body accepted (Litestream's requests are a path and a
/// URL).
pub const MAX_BODY: usize = 64 * 1024;
/// Time a connection has to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 64;
/// An operation's time when its request names none (Litestream's 30 s).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A bound control socket, not yet serving.
#[derive(Debug)]
pub struct ControlSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl ControlSocket {
    /// Creates the socket at `path` with permissions `mode`. A socket
    /// another process still listens on is refused; a stale one (nobody
    /// listening) is replaced; anything else at `path` is an error. The
    /// socket is bound under a temporary name, given its permissions, then
    /// renamed into place, so it is never reachable with others.
    pub async fn bind(path: &Path, mode: u32) -> Result<ControlSocket> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => {
                if UnixStream::connect(path).await.is_ok() {
                    bail!(
                        "control socket {}: another process is listening on it; stop it or set socket.path",
                        path.display()
                    );
                }
                std::fs::remove_file(path)
                    .with_context(|| format!("remove stale control socket {}", path.display()))?;
            }
            Ok(_) => bail!(
                "control socket path {} exists and is not a socket",
                path.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("control socket {}", path.display()));
            }
        }
        let mut tmp = path.as_os_str().to_os_string();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp); // a leftover of this pid's predecessor
        let listener = UnixListener::bind(&tmp)
            .with_context(|| format!("listen on control socket {}", path.display()))?;
        let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("create control socket {}", path.display()));
        }
        Ok(ControlSocket {
            path: path.to_path_buf(),
            listener,
        })
    }

    /// Serves `routes` until the returned guard is dropped, which also
    /// removes the socket.
    pub fn serve(self, routes: ControlRoutes) -> Serving {
        tracing::info!(path = %self.path.display(), "control socket listening");
        let listener = self.listener;
        let task = tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let stream = match listener.accept().await {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "control socket: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let routes = routes.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let routes = routes.clone();
                        async move { Ok::<_, Infallible>(routes.answer(req).await) }
                    });
                    let served = http1()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "control socket: connection ended");
                    }
                    drop(permit);
                });
            }
        });
        Serving {
            path: self.path,
            task,
        }
    }
}

/// The HTTP/1.1 connection settings of our servers: headers within
/// [`HEADER_TIMEOUT`], and a client that shuts its side after the request
/// still gets its reply.
pub fn http1() -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .half_close(true);
    b
}

/// A socket being served; dropping it stops serving and removes it.
#[derive(Debug)]
pub struct Serving {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path); // gone already is fine
    }
}

/// Litestream's control routes on a target: what the socket serves, and
/// what an HTTP endpoint may serve too.
#[derive(Clone)]
pub struct ControlRoutes(Arc<Served>);

impl std::fmt::Debug for ControlRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControlRoutes")
    }
}

impl ControlRoutes {
    /// The routes on `target`; `info` reports `version` and the time from
    /// now.
    pub fn new(target: Arc<dyn ControlTarget>, version: String) -> ControlRoutes {
        ControlRoutes(Arc::new(Served {
            target,
            version,
            started: Instant::now(),
            started_at: jiff::Timestamp::now(),
        }))
    }

    /// True for a path these routes answer.
    pub fn handles(path: &str) -> bool {
        matches!(
            path,
            "/info"
                | "/list"
                | "/txid"
                | "/start"
                | "/stop"
                | "/sync"
                | "/register"
                | "/unregister"
        )
    }

    /// The reply to `req`.
    pub async fn answer(&self, req: Request<Incoming>) -> Reply {
        route(&self.0, req).await
    }
}

struct Served {
    target: Arc<dyn ControlTarget>,
    version: String,
    started: Instant,
    started_at: jiff::Timestamp,
}

/// A reply: a JSON body, or an error.
pub type Reply = Response<Full<Bytes>>;

/// A JSON error reply with `status` (for an endpoint refusing a request
/// before it reaches the routes).
pub fn refusal(status: u16, message: &str) -> Reply {
    refused(&Refusal::new(status, message))
}

async fn route(ctx: &Served, req: Request<Incoming>) -> Reply {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let t = &ctx.target;
    match (method, path.as_str()) {
        (Method::GET, "/info") => json(
            StatusCode::OK,
            &InfoResponse {
                version: ctx.version.clone(),
                pid: std::process::id(),
                uptime_seconds: i64::try_from(ctx.started.elapsed().as_secs()).unwrap_or(i64::MAX),
                started_at: ctx.started_at.to_string(),
                database_count: t.database_count(),
            },
        ),
        (Method::GET, "/list") => match ListQuery::parse(&query) {
            Ok(q) => json(StatusCode::OK, &t.list(&q)),
            Err(e) => refused(&Refusal::new(400, e)),
        },
        (Method::GET, "/txid") => {
            let path = url::form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "path")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            match db_path(&path) {
                Ok(p) => reply(t.txid(p).map(|txid| TxidResponse { txid })),
                Err(r) => refused(&r),
            }
        }
        (Method::POST, "/start" | "/stop" | "/sync" | "/register" | "/unregister") => {
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(r) => return refused(&r),
            };
            match path.as_str() {
                "/start" | "/stop" => {
                    let r: PathRequest = match decode(&body) {
                        Ok(r) => r,
                        Err(e) => return refused(&e),
                    };
                    let within = request_timeout(r.timeout, DEFAULT_TIMEOUT);
                    let p = match db_path(&r.path) {
                        Ok(p) => p,
                        Err(e) => return refused(&e),
                    };
                    let op = if path == "/start" {
                        t.start(p)
                    } else {
                        t.stop(p)
                    };
                    reply(bounded(within, op).await)
                }
                "/sync" => {
                    let r: SyncRequest = match decode(&body) {
                        Ok(r) => r,
                        Err(e) => return refused(&e),
                    };
                    let within = request_timeout(r.timeout, DEFAULT_TIMEOUT);
                    match db_path(&r.path) {
                        Ok(p) => reply(bounded(within, t.sync(p, r.wait)).await),
                        Err(e) => refused(&e),
                    }
                }
                "/register" => {
                    let r: RegisterRequest = match decode(&body) {
                        Ok(r) => r,
                        Err(e) => return refused(&e),
                    };
                    if r.replica_url.is_empty() {
                        return refused(&Refusal::new(400, "replica_url required"));
                    }
                    match db_path(&r.path) {
                        Ok(p) => {
                            reply(bounded(DEFAULT_TIMEOUT, t.register(p, r.replica_url)).await)
                        }
                        Err(e) => refused(&e),
                    }
                }
                _ => {
                    let r: PathRequest = match decode(&body) {
                        Ok(r) => r,
                        Err(e) => return refused(&e),
                    };
                    let within = request_timeout(r.timeout, DEFAULT_TIMEOUT);
                    match db_path(&r.path) {
                        Ok(p) => reply(bounded(within, t.unregister(p)).await),
                        Err(e) => refused(&e),
                    }
                }
            }
        }
        (
            _,
            "/info" | "/list" | "/txid" | "/start" | "/stop" | "/sync" | "/register"
            | "/unregister",
        ) => refused(&Refusal::new(405, "method not allowed")),
        _ => refused(&Refusal::new(404, format!("no such endpoint: {path}"))),
    }
}

/// A request's database path: required, `~` expanded.
fn db_path(p: &str) -> Result<PathBuf, Refusal> {
    if p.is_empty() {
        return Err(Refusal::new(400, "path required"));
    }
    match p.strip_prefix("~/") {
        Some(rest) => match std::env::var_os("HOME") {
            Some(home) => Ok(PathBuf::from(home).join(rest)),
            None => Err(Refusal::new(
                400,
                format!("invalid path: {p}: HOME is not set"),
            )),
        },
        None => Ok(PathBuf::from(p)),
    }
}

/// The body, whole within [`HEADER_TIMEOUT`] (a body trickling in byte by
/// byte would hold a connection slot forever).
async fn read_body(req: Request<Incoming>) -> Result<Bytes, Refusal> {
    let whole = tokio::time::timeout(
        HEADER_TIMEOUT,
        Limited::new(req.into_body(), MAX_BODY).collect(),
    )
    .await
    .map_err(|_| Refusal::new(408, "request body not received in time"))?;
    match whole {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Refusal::new(
            413,
            format!("request body larger than {MAX_BODY} bytes"),
        )),
        Err(e) => Err(Refusal::new(400, format!("invalid request body: {e}"))),
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| Refusal {
        details: Some(e.to_string()),
        ..Refusal::new(400, "invalid request body")
    })
}

async fn bounded<T>(
    within: Duration,
    op: futures::future::BoxFuture<'static, Result<T, Refusal>>,
) -> Result<T, Refusal> {
    match tokio::time::timeout(within, op).await {
        Ok(r) => r,
        Err(_) => Err(Refusal::new(
            504,
            format!("timed out after {}s", within.as_secs()),
        )),
    }
}

fn reply<T: Serialize>(r: Result<T, Refusal>) -> Reply {
    match r {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => refused(&e),
    }
}

fn refused(r: &Refusal) -> Reply {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(
        status,
        &ErrorResponse {
            error: r.message.clone(),
            details: r.details.clone().map(serde_json::Value::String),
        },
    )
}

/// A JSON reply, one line as Go's encoder writes it.
fn json<T: Serialize>(status: StatusCode, v: &T) -> Reply {
    let mut body = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    body.push(b'\n');
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}
