//! One request to a control socket (ours or Litestream's), as the commands
//! send it: HTTP/1.1 over the Unix socket, the whole exchange within the
//! command's timeout.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

use super::protocol::ErrorResponse;

/// Sends `method path` with `body` (JSON) to the socket at `socket`; the
/// reply's body decoded as `T` when the status is 200, else the server's
/// error as `"<what> failed: <error>"` (Litestream's wording).
pub async fn call<T: DeserializeOwned>(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
    timeout: Duration,
    what: &str,
) -> Result<T> {
    let (status, bytes) = tokio::time::timeout(timeout, exchange(socket, method, path, body))
        .await
        .map_err(|_| anyhow!("{what} failed: no reply within {}s", timeout.as_secs()))??;
    if status != StatusCode::OK {
        return Err(match serde_json::from_slice::<ErrorResponse>(&bytes) {
            Ok(e) if !e.error.is_empty() => anyhow!("{what} failed: {}", e.error),
            _ => anyhow!("{what} failed: {}", String::from_utf8_lossy(&bytes).trim()),
        });
    }
    serde_json::from_slice(&bytes).context("failed to parse response")
}

async fn exchange(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<(StatusCode, Bytes)> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .with_context(|| format!("failed to connect to control socket {}", socket.display()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("failed to connect to control socket")?;
    let driving = tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, "localhost");
    if body.is_some() {
        req = req.header(http::header::CONTENT_TYPE, "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .context("build the request")?;
    let resp = sender
        .send_request(req)
        .await
        .context("control socket request")?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .context("failed to read response")?
        .to_bytes();
    driving.abort();
    Ok((status, bytes))
}
