//! The HTTP interface:
//!
//! | request | answer |
//! |---|---|
//! | `GET /<table>?limit=&offset=` | the rows, by key (limit 100 by default, 1,000 at most) |
//! | `GET /<table>/<id>` | one row, or 404 |
//! | `POST /<table>` (JSON object) | 201 and the row as stored |
//! | `PATCH` or `PUT /<table>/<id>` (JSON object) | the row as updated, or 404 |
//! | `DELETE /<table>/<id>` | 204, or 404 |
//! | `GET /healthz` | 200 with the replication state (`ok`, or `degraded` while syncs fail), 503 if the replicator has stopped |
//! | `GET /metrics` | Prometheus text: HTTP requests and litestreampp's replication metrics |
//!
//! With `--replication-sync-writes` a write is answered once the replica
//! holds it (header `X-Replica-Txid`); if that fails the answer is 503 and
//! says the write is committed locally but not yet replicated.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use litestreampp_core::embed::Replication;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::store::{Refused, Store, StoreError};

#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Arc<Store>,
    pub repl: Option<Arc<Replication>>,
    pub sync_writes: bool,
    pub metrics: PrometheusHandle,
}

/// Installs the Prometheus recorder (the application's choice of
/// exporter; litestreampp-core reports through the `metrics` facade).
pub fn install_metrics() -> Result<PrometheusHandle> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ],
        )
        .context("metrics buckets")?
        .install_recorder()
        .context("install the metrics recorder")?;
    // Histogram samples are buffered until a scrape drains them: drain
    // them every few seconds when nobody scrapes.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

pub fn router(state: AppState) -> Router {
    let rows = format!("/{}", state.store.name());
    let row = format!("/{}/{{id}}", state.store.name());
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route(&rows, get(list).post(insert))
        .route(&row, get(get_one).patch(update).put(update).delete(delete))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such resource") })
        .layer(middleware::from_fn(observe))
        .with_state(state)
}

impl AppState {
    /// Runs `f` with a read connection, on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store, &rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.store.reader().await;
        blocking(self.store.clone(), conn, f).await
    }

    /// Runs `f` with the write connection, on a blocking thread.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store, &rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.store.writer().await;
        blocking(self.store.clone(), conn, f).await
    }
}

/// Counts every request by method and status class, and times it.
async fn observe(req: Request, next: Next) -> Response {
    // Known methods only: a label must not take whatever a client sends.
    let method: &'static str = match req.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        _ => "other",
    };
    let start = Instant::now();
    let resp = next.run(req).await;
    let class = match resp.status().as_u16() {
        200..=299 => "2xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    };
    metrics::counter!("http_requests_total", "method" => method, "status" => class).increment(1);
    metrics::histogram!("http_request_duration_seconds").record(start.elapsed().as_secs_f64());
    resp
}

/// An answer with a JSON `{"error": ...}` body.
fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({ "error": msg.into() }))).into_response()
}

impl IntoResponse for StoreError {
    fn into_response(self) -> Response {
        match self {
            StoreError::Refused(Refused::BadRequest(m)) => error(StatusCode::BAD_REQUEST, m),
            StoreError::Refused(Refused::Conflict(m)) => error(StatusCode::CONFLICT, m),
            StoreError::Failed(e) => {
                tracing::error!(error = %format!("{e:#}"), "database error");
                error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
            }
        }
    }
}

/// Runs `f` on a blocking thread with a connection (SQLite calls block).
async fn blocking<T: Send + 'static>(
    store: Arc<Store>,
    conn: tokio::sync::OwnedMutexGuard<rusqlite::Connection>,
    f: impl FnOnce(&Store, &rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(move || f(&store, &conn))
        .await
        .map_err(|e| StoreError::Failed(anyhow::anyhow!("database task: {e}")))?
}

#[derive(Deserialize, Debug)]
struct Page {
    limit: Option<u32>,
    offset: Option<i64>,
}

async fn list(State(state): State<AppState>, Query(page): Query<Page>) -> Response {
    let limit = page.limit.unwrap_or(100).min(1000);
    let offset = page.offset.unwrap_or(0).max(0);
    match state.read(move |s, c| s.list(c, limit, offset)).await {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn get_one(State(state): State<AppState>, Path(id): Path<i64>) -> Response {
    match state.read(move |s, c| s.get(c, id)).await {
        Ok(Some(row)) => Json(row).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no row {id}")),
        Err(e) => e.into_response(),
    }
}

async fn insert(State(state): State<AppState>, Json(body): Json<Value>) -> Response {
    match state.write(move |s, c| s.insert(c, &body)).await {
        Ok(row) => written(&state, StatusCode::CREATED, Json(row).into_response()).await,
        Err(e) => e.into_response(),
    }
}

async fn update(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Json(body): Json<Value>,
) -> Response {
    match state.write(move |s, c| s.update(c, id, &body)).await {
        Ok(Some(row)) => written(&state, StatusCode::OK, Json(row).into_response()).await,
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no row {id}")),
        Err(e) => e.into_response(),
    }
}

async fn delete(State(state): State<AppState>, Path(id): Path<i64>) -> Response {
    match state.write(move |s, c| s.delete(c, id)).await {
        Ok(true) => written(&state, StatusCode::NO_CONTENT, ().into_response()).await,
        Ok(false) => error(StatusCode::NOT_FOUND, format!("no row {id}")),
        Err(e) => e.into_response(),
    }
}

/// The answer to a committed write: with `--replication-sync-writes`,
/// only once the replica holds it.
async fn written(state: &AppState, status: StatusCode, mut resp: Response) -> Response {
    *resp.status_mut() = status;
    let Some(repl) = state.repl.as_ref().filter(|_| state.sync_writes) else {
        return resp;
    };
    match repl.sync_and_wait().await {
        Ok(txid) => {
            if let Ok(v) = HeaderValue::from_str(&txid.to_string()) {
                resp.headers_mut().insert("x-replica-txid", v);
            }
            resp
        }
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("committed locally but not confirmed by the replica: {e}"),
        ),
    }
}

async fn healthz(State(state): State<AppState>) -> Response {
    let Some(repl) = &state.repl else {
        return Json(json!({ "status": "ok", "replication": "disabled" })).into_response();
    };
    let s = repl.status();
    let body = json!({
        "status": if !s.running { "failed" } else if s.last_error.is_some() { "degraded" } else { "ok" },
        "replication": {
            "running": s.running,
            "local_txid": s.local_txid.to_string(),
            "replica_txid": s.replica_txid.to_string(),
            "lag_seconds": s.lag.map(|d| d.as_secs_f64()),
            "last_sync_at": s.last_sync_at.map(|t| t.to_string()),
            "last_snapshot_at": s.last_snapshot_at.map(|t| t.to_string()),
            "last_error": s.last_error,
            "errors": s.errors,
            "syncs": s.syncs,
            "bytes_uploaded": s.bytes_uploaded,
        }
    });
    // A stopped replicator means nothing written now reaches the replica.
    let code = if s.running {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
        .into_response()
}
