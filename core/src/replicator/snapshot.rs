//! Level snapshots: encoded from the database beside the writers, then
//! uploaded (possibly while the next syncs run) and recorded.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::{Replicator, ReplicatorStatus};
use crate::client::{FileInfo, LtxBody, SNAPSHOT_LEVEL};
use crate::error::{Error, Result};
use crate::levels::Maintainer;

impl Replicator {
    /// Writes a snapshot of the database at its current position to the
    /// snapshot level, unless one already covers it: syncs and uploads
    /// first, then encodes from the database and WAL without blocking
    /// writers, uploads, and records the file.
    pub async fn snapshot(&mut self) -> Result<Option<FileInfo>> {
        match self.encode_snapshot().await? {
            Some(job) => job.upload().await,
            None => Ok(None),
        }
    }

    /// Deletes snapshots older than the snapshot retention (never the
    /// newest) and the files only they needed, now (Litestream's
    /// `replicate -once -enforce-retention`). Without an attached
    /// maintainer the replica's levels are listed first.
    pub async fn enforce_retention(&mut self) -> Result<()> {
        if !self.opts.levels.retention_enabled {
            tracing::warn!(db = %self.db_path().display(), "retention is disabled: nothing deleted");
            return Ok(());
        }
        let m = match &self.maint {
            Some(m) => m.clone(),
            None => {
                let client = self.replica.client().clone();
                let state = crate::levels::LevelState::load(client.as_ref()).await?;
                Maintainer::new(
                    self.db_path().display().to_string(),
                    client,
                    self.opts.levels.clone(),
                    self.meta.clone(),
                    state,
                )
            }
        };
        m.enforce_snapshot_retention().await
    }

    /// The part of a snapshot that needs the database: sync, upload the L0
    /// files, encode the snapshot locally. `None` if there is nothing to
    /// snapshot or the snapshot level already covers the position.
    /// Ends the snapshot in the maintainer unless an upload follows.
    pub(super) async fn encode_snapshot(&mut self) -> Result<Option<SnapshotUpload>> {
        if let Some(m) = &self.maint {
            m.begin_snapshot();
        }
        let r = self.encode_snapshot_inner().await;
        if let Some(m) = &self.maint {
            match &r {
                Ok(Some(_)) => {} // the upload ends it
                Ok(None) => m.end_snapshot(None, false),
                Err(_) => m.end_snapshot(None, true),
            }
        }
        r
    }

    async fn encode_snapshot_inner(&mut self) -> Result<Option<SnapshotUpload>> {
        // Within max-sync-ltx-files like every sync of a running
        // replicator: a longer backlog makes the check below fail, and
        // the snapshot waits for the passes that ship it.
        let rep = self.sync_pass(self.opts.max_sync_ltx_files).await?;
        super::log_report(&self.db_path(), &rep);
        let local = self.db_mut()?.position().ok().flatten().map(|p| p.txid);
        if local.is_some() && local != self.replica.position() {
            return Err(Error::Backend {
                context: format!("snapshot {}", self.db_path().display()),
                message: "the replica lags the database; retried after the next upload".into(),
                transient: true,
            });
        }
        let dir = self.meta.scratch_dir(SNAPSHOT_LEVEL);
        let written = self
            .on_blocking_pool("snapshot task", move |db| db.write_level_snapshot(&dir))
            .await?;
        let Some((path, h)) = written else {
            return Ok(None);
        };
        let covered = self.maint.as_ref().is_some_and(|m| {
            m.state().newest[SNAPSHOT_LEVEL as usize]
                .as_ref()
                .is_some_and(|f| f.max_txid >= h.max_txid)
        });
        if covered {
            let _ = std::fs::remove_file(&path); // scratch copy of a snapshot already in the replica
            return Ok(None);
        }
        Ok(Some(SnapshotUpload {
            client: self.replica.client().clone(),
            maint: self.maint.clone(),
            status: self.status.clone(),
            db: self.db_path(),
            path,
            header: h,
        }))
    }
}

/// A snapshot encoded locally, waiting to be uploaded.
pub(super) struct SnapshotUpload {
    client: Arc<dyn crate::client::ReplicaClient>,
    maint: Option<Arc<Maintainer>>,
    status: Arc<Mutex<ReplicatorStatus>>,
    db: PathBuf,
    path: PathBuf,
    header: crate::ltx::Header,
}

impl SnapshotUpload {
    /// Uploads, records the file (or the failure) and removes the local
    /// copy.
    pub(super) async fn upload(self) -> Result<Option<FileInfo>> {
        let h = self.header;
        let r = self
            .client
            .write_ltx_file(
                SNAPSHOT_LEVEL,
                h.min_txid,
                h.max_txid,
                LtxBody::File(self.path.clone()),
            )
            .await;
        let _ = std::fs::remove_file(&self.path); // uploaded or not, the local copy is scratch
        match r {
            Ok(info) => {
                crate::crashpoint::here("snapshot-uploaded");
                tracing::info!(db = %self.db.display(), txid = %info.max_txid, size = info.size, "snapshot complete");
                if let Some(m) = &self.maint {
                    m.end_snapshot(Some(&info), false);
                }
                let now = jiff::Timestamp::now();
                metrics::gauge!("litestreampp_last_snapshot_timestamp_seconds")
                    .set(now.as_millisecond() as f64 / 1000.0);
                if let Ok(mut s) = self.status.lock() {
                    s.level_snapshots += 1;
                    s.last_snapshot_at = Some(now);
                }
                Ok(Some(info))
            }
            Err(e) => {
                tracing::error!(db = %self.db.display(), error = %e, "snapshot upload failed");
                if let Some(m) = &self.maint {
                    m.end_snapshot(None, true);
                }
                if let Ok(mut s) = self.status.lock() {
                    s.errors += 1;
                    s.last_error = Some(e.to_string());
                }
                Err(e)
            }
        }
    }
}
