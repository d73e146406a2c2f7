//! `heartbeat-url` / `heartbeat-interval`: Litestream's dead man's switch
//! (the healthchecks.io convention). A GET to the URL at most once per
//! interval, and only while replication is healthy, so a monitor that
//! stops hearing from us raises the alarm. The pings run on their own
//! task with a timeout: a slow or dead endpoint never delays a sync.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use litestreampp_core::redact::redact_url;

use super::Background;

/// How often health is checked for a due ping (Litestream's
/// `DefaultHeartbeatCheckInterval`).
const CHECK_EVERY: Duration = Duration::from_secs(15);
/// A ping that takes longer is abandoned (Litestream's default).
const PING_TIMEOUT: Duration = Duration::from_secs(30);

/// The endpoint and how often to ping it.
#[derive(Debug)]
pub struct Heartbeat {
    url: http::Uri,
    interval: Duration,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl Heartbeat {
    /// A heartbeat to `url` (http or https; checked by the settings layer).
    pub fn new(url: &str, interval: Duration) -> Result<Heartbeat> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| anyhow!("heartbeat-url {}: {e}", redact_url(url)))?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .context("heartbeat-url: load the system's root certificates")?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Heartbeat {
            url: uri,
            interval,
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// Pings on a task of its own until the returned guard is dropped.
    pub fn spawn(self, healthy: impl Fn(Duration) -> bool + Send + 'static) -> Background {
        Background::spawn(self.run(healthy))
    }

    /// Pings while `healthy(interval)` holds, at most once per interval
    /// (a failed ping counts: the endpoint is not hammered).
    async fn run(self, healthy: impl Fn(Duration) -> bool + Send) {
        let shown = redact_url(&self.url.to_string());
        tracing::info!(url = %shown, interval = ?self.interval, "heartbeat: pinging while replication is healthy");
        let mut last: Option<Instant> = None;
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate: let the first sync happen
        loop {
            tick.tick().await;
            if last.is_some_and(|t| t.elapsed() < self.interval) || !healthy(self.interval) {
                continue;
            }
            last = Some(Instant::now());
            match self.ping().await {
                Ok(()) => tracing::debug!(url = %shown, "heartbeat ping sent"),
                Err(e) => tracing::error!(url = %shown, error = %e, "heartbeat ping failed"),
            }
        }
    }

    async fn ping(&self) -> Result<()> {
        let req = http::Request::get(self.url.clone())
            .header(
                http::header::USER_AGENT,
                concat!("litestreampp/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .context("build request")?;
        let resp = tokio::time::timeout(PING_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| anyhow!("no answer in {PING_TIMEOUT:?}"))?
            .context("http request")?;
        let status = resp.status();
        if !status.is_success() {
            bail!("unexpected status code: {}", status.as_u16());
        }
        Ok(())
    }
}
