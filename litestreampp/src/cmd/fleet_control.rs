//! The control socket of a running fleet: `info`, `list` (a page at a
//! time, filtered by glob: a fleet has 100,000 databases), `sync [-wait]`
//! (a cold database is promoted, synced and uploaded), `stop`/`start`
//! (kept across restarts), `register` (a database outside the patterns,
//! with its own replica) and `unregister` (its files and replica left as
//! they are).

use std::path::{Path, PathBuf};

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::control::protocol::{
    DatabaseSummary, ListQuery, ListResponse, RegisterResponse, StartStopResponse, SyncResponse,
    UnregisterResponse,
};
use crate::control::{ControlTarget, Refusal};
use crate::fleet::{FleetView, Outcome, Refused, Tier};

/// The fleet, as the control socket sees it.
pub struct FleetControl(pub FleetView);

/// A refusal as Litestream answers it: an unknown database is 500 in
/// `start`/`stop` (404 in `sync`).
fn refusal(path: &Path, r: Refused, unknown_status: u16) -> Refusal {
    match r {
        Refused::NotFound => Refusal::new(
            unknown_status,
            format!("database not found: {}", path.display()),
        ),
        Refused::Stopped => Refusal::new(409, format!("database not open: {}", path.display())),
        Refused::Invalid(m) => Refusal::new(400, m),
        Refused::Failed(m) => Refusal::new(500, m),
    }
}

/// The status word and TXID of an outcome.
fn said(o: Outcome, done: &str, already: &str) -> (String, u64) {
    match o {
        Outcome::Done(t) => (done.into(), t.0),
        Outcome::Already => (already.into(), 0),
    }
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
                    Tier::Unshipped => "unshipped",
                    Tier::Stopped => "stopped",
                };
                let status = match db.tier {
                    Tier::Failed | Tier::Stopped | Tier::Unshipped => tier,
                    _ => "replicating",
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

    fn start(&self, path: PathBuf) -> BoxFuture<'static, Result<StartStopResponse, Refusal>> {
        let view = self.0.clone();
        async move {
            let o = view
                .start_replicating(&path)
                .await
                .map_err(|r| refusal(&path, r, 500))?;
            let (status, txid) = said(o, "started", "already_running");
            Ok(StartStopResponse {
                status,
                txid,
                path: path.display().to_string(),
            })
        }
        .boxed()
    }

    fn stop(&self, path: PathBuf) -> BoxFuture<'static, Result<StartStopResponse, Refusal>> {
        let view = self.0.clone();
        async move {
            let o = view
                .stop_replicating(&path)
                .await
                .map_err(|r| refusal(&path, r, 500))?;
            let (status, txid) = said(o, "stopped", "already_stopped");
            Ok(StartStopResponse {
                status,
                txid,
                path: path.display().to_string(),
            })
        }
        .boxed()
    }

    fn sync(&self, path: PathBuf, wait: bool) -> BoxFuture<'static, Result<SyncResponse, Refusal>> {
        let view = self.0.clone();
        async move {
            let done = view.sync_now(&path).await.map_err(|e| match e {
                Refused::Failed(m) => Refusal::new(500, format!("sync database: {m}")),
                r => refusal(&path, r, 404),
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
        path: PathBuf,
        replica_url: String,
    ) -> BoxFuture<'static, Result<RegisterResponse, Refusal>> {
        let view = self.0.clone();
        async move {
            let o = view
                .register(&path, &replica_url)
                .await
                .map_err(|r| refusal(&path, r, 404))?;
            Ok(RegisterResponse {
                status: said(o, "registered", "already_registered").0,
                path: path.display().to_string(),
            })
        }
        .boxed()
    }

    fn unregister(&self, path: PathBuf) -> BoxFuture<'static, Result<UnregisterResponse, Refusal>> {
        let view = self.0.clone();
        async move {
            let o = view
                .unregister(&path)
                .await
                .map_err(|r| refusal(&path, r, 404))?;
            let (status, txid) = said(o, "unregistered", "already_unregistered");
            Ok(UnregisterResponse {
                status,
                path: path.display().to_string(),
                txid,
            })
        }
        .boxed()
    }
}
