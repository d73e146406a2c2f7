//! The fleet's HTTP endpoint (127.0.0.1:9090 unless configured):
//! `/metrics` (Prometheus text), `/healthz`, and `/status` (the JSON that
//! `litestreampp status` prints). `replicate` serves the same without
//! `/status`. A deliberately small HTTP/1.1 server: GET only, one request
//! per connection.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::status::FleetView;

/// Installs the Prometheus recorder for this process (once) and returns
/// its handle.
pub fn install_recorder() -> Result<PrometheusHandle> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(
                litestreampp_core::metrics::OPERATION_SECONDS.into(),
            ),
            litestreampp_core::metrics::OPERATION_SECONDS_BUCKETS,
        )
        .context("metrics buckets")?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
            &[
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ],
        )
        .context("metrics buckets")?
        .install_recorder()
        .context("install the metrics recorder")?;
    Ok(handle)
}

/// Binds `addr` and serves until the runtime stops; without a `fleet`,
/// metrics and health only.
pub async fn serve(
    addr: SocketAddr,
    metrics: PrometheusHandle,
    fleet: Option<Arc<std::sync::OnceLock<FleetView>>>,
) -> Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind the metrics endpoint {addr}"))?;
    let bound = listener.local_addr()?;
    // Histogram samples are buffered until drained: without a scrape they
    // would pile up (a sample per sync), so drain them every few seconds.
    let upkeep = metrics.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            let (metrics, fleet) = (metrics.clone(), fleet.clone());
            tokio::spawn(async move {
                let _ = answer(sock, &metrics, fleet.as_deref()).await; // a client that hangs up is not our error
            });
        }
    });
    Ok(bound)
}

async fn answer(
    mut sock: TcpStream,
    metrics: &PrometheusHandle,
    fleet: Option<&std::sync::OnceLock<FleetView>>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 4096];
    let mut n = 0;
    // Read the request head (we need only its first line).
    loop {
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(5), sock.read(&mut buf[n..]))
                .await
                .map_err(|_| std::io::Error::other("request timed out"))??;
        if read == 0 {
            break;
        }
        n += read;
        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") || n == buf.len() {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = if method != "GET" {
        (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_string(),
        )
    } else {
        match path {
            "/metrics" => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
            "/healthz" => match fleet.map(|f| f.get()) {
                None | Some(Some(_)) => ("200 OK", "text/plain", "ok\n".to_string()),
                Some(None) => (
                    "503 Service Unavailable",
                    "text/plain",
                    "starting\n".to_string(),
                ),
            },
            "/status" if fleet.is_some() => match fleet.and_then(|f| f.get()) {
                Some(s) => (
                    "200 OK",
                    "application/json",
                    serde_json::to_string_pretty(&s.status()).unwrap_or_default(),
                ),
                None => (
                    "503 Service Unavailable",
                    "text/plain",
                    "starting\n".to_string(),
                ),
            },
            _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
        }
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(resp.as_bytes()).await?;
    sock.shutdown().await
}

/// `GET http://addr/path` with a plain TCP connection (for `status`).
pub fn get(addr: &str, path: &str) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)
        .with_context(|| format!("connect to {addr} (is `litestreampp run` running?)"))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .with_context(|| format!("read the answer of {addr}"))?;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, body.to_string()))
}
