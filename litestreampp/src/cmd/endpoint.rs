//! The HTTP endpoint of `replicate` and `run` (`addr`, `--addr`): hyper's
//! HTTP/1.1 on TCP. `/metrics` and `/healthz` always, the fleet's
//! `/status`, and for the fleet the control socket's routes (`GET /info`,
//! `/list`, `/txid`; `POST /sync` and the rest), answered exactly as on
//! the socket.
//!
//! The control routes change what is replicated, so on an address other
//! than loopback they need `Authorization: Bearer TOKEN` (the token from
//! `fleet.token` or `LITESTREAMPP_TOKEN`); with no token configured they
//! are refused there (403), and served on loopback only.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::control::server::{ControlRoutes, Reply, http1, refusal};
use crate::fleet::FleetView;
use crate::fleet::http::{answer, keep_up};

/// What the endpoint serves besides metrics and health.
#[derive(Debug, Default, Clone)]
pub struct Served {
    /// The fleet, once it runs (`/status`, and 503 on `/healthz` before).
    pub fleet: Option<Arc<OnceLock<FleetView>>>,
    /// The control routes, once there is something to control.
    pub control: Option<Arc<OnceLock<ControlRoutes>>>,
    /// What a control request must bear when the endpoint is not on
    /// loopback.
    pub token: Option<litestreampp_core::redact::Secret>,
}

/// Binds `addr` and serves until the runtime stops; returns the address
/// bound.
pub async fn serve(
    addr: SocketAddr,
    metrics: PrometheusHandle,
    served: Served,
) -> Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind the metrics endpoint {addr}"))?;
    let bound = listener.local_addr()?;
    keep_up(metrics.clone());
    let served = Arc::new((served, metrics, bound.ip().is_loopback()));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let served = served.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let served = served.clone();
                    async move {
                        let (s, metrics, loopback) = &*served;
                        Ok::<_, Infallible>(reply(s, metrics, *loopback, req).await)
                    }
                });
                // A client that hangs up is not our error.
                let _ = http1()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

async fn reply(
    s: &Served,
    metrics: &PrometheusHandle,
    loopback: bool,
    req: Request<Incoming>,
) -> Reply {
    let path = req.uri().path().to_string();
    if ControlRoutes::handles(&path)
        && let Some(slot) = &s.control
    {
        if let Err(why) = authorized(s.token.as_ref().map(|t| t.expose()), loopback, &req) {
            return refusal(403, why);
        }
        return match slot.get() {
            Some(routes) => routes.answer(req).await,
            None => refusal(503, "starting"),
        };
    }
    if req.method() != Method::GET {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match answer(&path, metrics, s.fleet.as_deref()) {
        Some((code, ctype, body)) => text(
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            ctype,
            body,
        ),
        None => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// Whether `req` may use the control routes (or the MCP server) here.
pub(super) fn authorized(
    token: Option<&str>,
    loopback: bool,
    req: &Request<Incoming>,
) -> Result<(), &'static str> {
    let bearer = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match (token, bearer) {
        (Some(want), Some(got)) if same(want.as_bytes(), got.as_bytes()) => Ok(()),
        (Some(_), _) => Err("control requests need Authorization: Bearer <fleet.token>"),
        (None, _) if loopback => Ok(()),
        (None, _) => Err(
            "control requests on an address other than loopback need a token: set fleet.token (or LITESTREAMPP_TOKEN), or use the control socket",
        ),
    }
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn text(status: StatusCode, ctype: &'static str, body: String) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(ctype),
    );
    r
}
