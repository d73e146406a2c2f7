//! What the fleet's HTTP endpoint answers (the server is `cmd`'s
//! `endpoint`): `/metrics` (Prometheus text), `/healthz`, and `/status`
//! (the JSON that `litestreampp status` prints); and the client
//! `litestreampp status` uses.

use anyhow::{Context, Result};
use metrics_exporter_prometheus::PrometheusHandle;

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

/// Drains buffered histogram samples every few seconds: without a scrape
/// they would pile up (a sample per sync).
pub fn keep_up(metrics: PrometheusHandle) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            metrics.run_upkeep();
        }
    });
}

/// The answer to `GET path` among the fleet's own routes (`/metrics`,
/// `/healthz`, and with a `fleet` `/status`): status code, content type,
/// body; `None` for another path.
pub fn answer(
    path: &str,
    metrics: &PrometheusHandle,
    fleet: Option<&std::sync::OnceLock<FleetView>>,
) -> Option<(u16, &'static str, String)> {
    Some(match path {
        "/metrics" => (200, "text/plain; version=0.0.4", metrics.render()),
        "/healthz" => match fleet.map(|f| f.get()) {
            None | Some(Some(_)) => (200, "text/plain", "ok\n".to_string()),
            Some(None) => (503, "text/plain", "starting\n".to_string()),
        },
        "/status" if fleet.is_some() => match fleet.and_then(|f| f.get()) {
            Some(s) => (
                200,
                "application/json",
                serde_json::to_string_pretty(&s.status()).unwrap_or_default(),
            ),
            None => (503, "text/plain", "starting\n".to_string()),
        },
        _ => return None,
    })
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
