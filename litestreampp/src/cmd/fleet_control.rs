//! The control socket of a running fleet: `info`, `list` (a page at a
//! time, filtered by glob: a fleet has 100,000 databases) and `sync
//! [-wait]` (a cold database is promoted, synced and uploaded). `start`,
//! `stop`, `register` and `unregister` are refused for now, by name.

use std::path::PathBuf;

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::control::protocol::{
    DatabaseSummary, ListQuery, ListResponse, RegisterResponse, StartStopResponse, SyncResponse,
    UnregisterResponse,
};
use crate::control::{ControlTarget, Refusal};
use crate::fleet::{FleetView, SyncRefused, Tier};

/// The fleet, as the control socket sees it.
pub struct FleetControl(pub FleetView);

fn not_yet<T>(what: &str) -> BoxFuture<'static, Result<T, Refusal>> {
    let msg = format!(
        "{what} is not available for a fleet yet: databases come and go with the patterns (exclude one with fleet.exclude)"
    );
    async move { Err(Refusal::new(501, msg)) }.boxed()
}

impl ControlTarget for FleetControl {
    fn database_count(&self) -> usize {
        self.0.database_count()
    }

    fn list(&self, query: &ListQuery) -> ListResponse {
        let (total, page) = self.0.databases(
            |p| query.wants(p),
            query.offset,
            query.limit.unwrap_or(usize::MAX),
        );
        let databases = page
            .into_iter()
            .map(|db| {
                let tier = match db.tier {
                    Tier::Hot => "hot",
                    Tier::Cold => "cold",
                    Tier::Queued => "queued",
                    Tier::Failed => "failed",
                };
                let status = if db.tier == Tier::Failed {
                    "failed"
                } else {
                    "replicating"
                };
                let run = db.running.as_ref();
                DatabaseSummary {
                    path: db.path.display().to_string(),
                    status: status.into(),
                    last_sync_at: run.and_then(|r| r.last_sync_at).map(|t| t.to_string()),
                    tier: Some(tier.into()),
                    txid: run.map(|r| r.local_txid.0),
                    replica_txid: run.map(|r| r.replica_txid.0),
                    lag_seconds: run.map(|r| r.lag_seconds),
                    last_error: db.last_error,
                }
            })
            .collect();
        ListResponse {
            databases,
            total: query.is_paged().then_some(total),
        }
    }

    fn txid(&self, path: PathBuf) -> Result<u64, Refusal> {
        let db = self
            .0
            .database(&path)
            .ok_or_else(|| Refusal::not_found(&path))?;
        Ok(db.running.as_ref().map_or(0, |r| r.local_txid.0))
    }

    fn start(&self, _path: PathBuf) -> BoxFuture<'static, Result<StartStopResponse, Refusal>> {
        not_yet("start")
    }

    fn stop(&self, _path: PathBuf) -> BoxFuture<'static, Result<StartStopResponse, Refusal>> {
        not_yet("stop")
    }

    fn sync(&self, path: PathBuf, wait: bool) -> BoxFuture<'static, Result<SyncResponse, Refusal>> {
        let view = self.0.clone();
        async move {
            let done = view.sync_now(&path).await.map_err(|e| match e {
                SyncRefused::NotFound => Refusal::not_found(&path),
                SyncRefused::Failed(m) => Refusal::new(500, format!("sync database: {m}")),
            })?;
            Ok(SyncResponse::new(
                &path,
                wait,
                done.before.0,
                done.after.0,
                done.replica.0,
            ))
        }
        .boxed()
    }

    fn register(
        &self,
        _path: PathBuf,
        _replica_url: String,
    ) -> BoxFuture<'static, Result<RegisterResponse, Refusal>> {
        not_yet("register")
    }

    fn unregister(
        &self,
        _path: PathBuf,
    ) -> BoxFuture<'static, Result<UnregisterResponse, Refusal>> {
        not_yet("unregister")
    }
}
