//! Reaching the replica: learning its position once, uploading what it
//! lacks, and while it cannot be reached, syncing on into the local L0
//! files, keeping them bounded (`core::unshipped`) and sealing locally at
//! a stop, so nothing written meanwhile is lost or needs a snapshot.

use std::time::{Duration, Instant};

use crate::db::Db;
use crate::error::{Error, Result};
use crate::levels::{LevelState, Maintainer};
use crate::replica::UploadReport;
use crate::txid::TxId;
use crate::unshipped::{self, Unshipped};

use super::{Replicator, SyncReport};

impl Replicator {
    /// Uploads what the replica lacks, at most `limit` files (`0`: all),
    /// and tells the maintainer what landed, also when a later file
    /// failed: those are in the replica, and compaction and retention must
    /// know them. A gap in the TXID sequence becomes a snapshot request to
    /// the database.
    pub(super) async fn upload(&mut self, limit: usize) -> Result<UploadReport> {
        let mut report = UploadReport::default();
        let uploaded = self.replica.upload(&self.meta, limit, &mut report).await;
        if let Some(m) = &self.maint {
            m.note_uploaded(&report.files);
        }
        if let Some(from) = report.gap_from {
            self.db_mut()?.require_snapshot_from(
                from,
                &format!("local L0 files do not continue the replica at TXID {from}"),
            );
        }
        uploaded.map(|()| report)
    }

    /// `auto-recover`: drops the local LTX files after `cause` showed one
    /// damaged or missing; the next sync writes a snapshot above what the
    /// replica holds. This sync still reports its error.
    pub(super) fn recover_local_state(&mut self, cause: &Error) {
        let db = self.db_path();
        tracing::warn!(db = %db.display(), error = %cause, "auto-recovery enabled, resetting local state");
        let floor = self.replica.position().unwrap_or(TxId::ZERO);
        let reset = self
            .meta
            .reset()
            .and_then(|()| self.db_mut()?.forget_position(floor));
        match reset {
            Ok(()) => {
                tracing::info!(db = %db.display(), "auto-recovery complete, resuming replication")
            }
            Err(e) => tracing::error!(db = %db.display(), error = %e, "auto-recovery failed"),
        }
    }

    /// Learns where the replica stands, once: the replica may already hold
    /// TXIDs this host has no local record of (restored database, lost
    /// meta directory), which must never be reused.
    pub(super) async fn position(&mut self) -> Result<()> {
        let remote = match &self.scheduler {
            Some(sched) => {
                let mut state = LevelState::load(self.replica.client().as_ref()).await?;
                if self.opts.levels_on_schedule {
                    state.run_on_schedule();
                }
                let pos = state.position();
                self.replica.set_position(pos);
                let m = Maintainer::new(
                    self.db_path.display().to_string(),
                    self.replica.client().clone(),
                    self.opts.levels.clone(),
                    self.meta.clone(),
                    state,
                );
                m.set_metrics(self.opts.db.metrics.clone());
                m.clean_work_dir()?;
                m.attach(sched);
                self.maint = Some(m);
                pos
            }
            None => self.replica.fetch_position().await?,
        };
        self.db_mut()?.set_txid_floor(remote);
        self.positioned = true;
        self.local_floor = None;
        Ok(())
    }

    /// Notes a failure to reach the replica in an attempt that began at
    /// `began` (the client's retries may have taken a while), or an
    /// upload pass that worked.
    pub(super) fn replica_failed(&self, failed: bool, began: jiff::Timestamp) {
        self.with_status(|s| {
            if failed {
                s.replica_down_since.get_or_insert(began);
            } else {
                s.replica_down_since = None;
            }
        });
    }

    /// Keeps the unshipped files above `above` within their bound (see
    /// [`unshipped`]) and records what is waiting.
    pub(super) async fn bound_unshipped(&mut self, above: TxId) -> Result<()> {
        let db_bytes = match self.db_mut()?.position() {
            Ok(Some(p)) => u64::from(p.commit) * u64::from(p.page_size),
            _ => 0,
        };
        let meta = self.meta.clone();
        let (waiting, merged) =
            tokio::task::spawn_blocking(move || unshipped::bound(&meta, above, db_bytes))
                .await
                .map_err(|e| Error::io("merge task", std::io::Error::other(e.to_string())))??;
        if let Some(m) = &merged {
            tracing::debug!(db = %self.db_path.display(), min = %m.header.min_txid, max = %m.header.max_txid, size = m.size, "merged unshipped L0 files");
            metrics::counter!("litestreampp_unshipped_merges_total").increment(1);
        }
        self.with_status(|s| s.unshipped = waiting);
        Ok(())
    }

    /// At a stop whose final sync could not reach the replica: seals the
    /// database locally all the same (when asked to seal), so its next
    /// run continues from the local L0 files without a snapshot. The
    /// unshipped files stay for that run; nothing says the replica holds
    /// them.
    pub(super) async fn seal_unshipped(&mut self) {
        let replica_down = self
            .status
            .lock()
            .is_ok_and(|s| s.replica_down_since.is_some());
        if !self.seal_on_stop || !replica_down || self.db.is_none() {
            return;
        }
        let sealed = self.on_blocking_pool("seal task", Db::seal).await;
        let floor = self.local_floor.or(self.replica.position());
        match sealed {
            Ok(_) => {
                if let Some(above) = floor
                    && let Err(e) = self.bound_unshipped(above).await
                {
                    tracing::warn!(db = %self.db_path.display(), error = %e, "cannot bound the unshipped L0 files");
                }
            }
            Err(e) => {
                tracing::debug!(db = %self.db_path.display(), error = %e, "local seal failed")
            }
        }
    }

    /// Removes the local L0 files the replica holds, once `min_age` old;
    /// with compaction on, only those L1 covers (L1 reads the local L0
    /// files it lacks). The newest file always stays: it records where
    /// the database stands.
    ///
    /// With compaction on, the files before a shipped L0 snapshot go too,
    /// whatever their age: L1 starts reading at the snapshot. (A tenant
    /// written while cold by an application that closes its last
    /// connection gets a snapshot at every promotion; keeping what came
    /// before each until L1 covered it filled the soak's meta directories.)
    pub(super) fn prune_shipped(&self, min_age: Duration) -> Result<usize> {
        let shipped = self.replica.position().unwrap_or_default();
        let Some(m) = &self.maint else {
            return self.meta.prune_l0(shipped, min_age);
        };
        let mut removed = self.meta.prune_l0(shipped.min(m.l1_max()), min_age)?;
        let Some(full) = self.db.as_ref().and_then(Db::full_state_l0) else {
            return Ok(removed);
        };
        m.note_full_state_l0(full);
        if full <= shipped
            && let Some(_idle) = m.try_idle()
        {
            removed += self
                .meta
                .prune_l0(TxId(full.0.saturating_sub(1)), Duration::ZERO)?;
        }
        Ok(removed)
    }

    /// One sync and upload (see [`Replicator::sync_once`]).
    pub(super) async fn sync_once_inner(&mut self, limit: usize) -> Result<SyncReport> {
        let attempt = jiff::Timestamp::now();
        if !self.positioned
            && let Err(e) = Box::pin(self.position()).await
        {
            self.replica_failed(true, attempt);
            // Our own L0 files say where we stand: sync into them, so the
            // WAL's history is kept (and bounded) until the replica can
            // be reached. Without them there is nothing to continue.
            let Some(local) = self.db_mut()?.position().ok().flatten() else {
                return Err(e);
            };
            let floor = *self.local_floor.get_or_insert(local.txid);
            self.on_blocking_pool("sync task", Db::sync).await?;
            self.bound_unshipped(floor).await?;
            return Err(e);
        }
        let sync = self.on_blocking_pool("sync task", Db::sync).await?;
        let began = Instant::now();
        let uploaded = self.upload(limit).await;
        self.replica_failed(uploaded.is_err(), attempt);
        if uploaded.as_ref().is_ok_and(|u| !u.files.is_empty()) {
            metrics::histogram!("litestreampp_upload_seconds")
                .record(began.elapsed().as_secs_f64());
        }
        let through = self.replica.position().unwrap_or_default();
        let local_txid = self
            .db_mut()?
            .position()
            .ok()
            .flatten()
            .map(|p| p.txid)
            .unwrap_or_default();
        let pruned = self.prune_shipped(self.opts.levels.l0_retention);
        let bounded = match &uploaded {
            Err(_) => self.bound_unshipped(through).await,
            Ok(u) if u.limited => unshipped::measure(&self.meta, through)
                .map(|w| self.with_status(|s| s.unshipped = w)),
            Ok(_) => {
                self.with_status(|s| s.unshipped = Unshipped::default());
                Ok(())
            }
        };
        let upload = uploaded?;
        pruned?;
        bounded?;
        let shipped = !upload.files.is_empty();
        self.with_status(|s| {
            s.local_txid = local_txid;
            s.replica_txid = through;
            if local_txid <= through
                && let Some(t) = s.pending_since.take()
                && shipped
            {
                // A change notice that arrives after the sync that shipped
                // its write finds nothing new: it is cleared, not counted.
                metrics::histogram!("litestreampp_replication_lag_seconds")
                    .record(t.elapsed().as_secs_f64());
            }
        });
        Ok(SyncReport { sync, upload })
    }
}
