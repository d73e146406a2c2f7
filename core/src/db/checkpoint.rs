//! Checkpoints: when one is due (Litestream's page-count and interval
//! thresholds), the PASSIVE checkpoint behind a write-lock barrier that
//! seals the generation at our position, and TRUNCATE for a WAL that
//! PASSIVE cannot bring down.

use std::fs::File;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::wal::{self, WAL_HEADER_SIZE, WalHeader};

use super::continuity::Continuity;
use super::{CheckpointMode, Db, SyncOutcome};

/// When the last checkpoint ran, and whether data was synced since (the
/// interval checkpoint runs only then).
#[derive(Debug)]
pub(super) struct CheckpointClock {
    pub(super) last: Instant,
    pub(super) synced_since: bool,
}

impl CheckpointClock {
    pub(super) fn new() -> CheckpointClock {
        CheckpointClock {
            last: Instant::now(),
            synced_since: false,
        }
    }

    pub(super) fn synced(&mut self) {
        self.synced_since = true;
    }

    pub(super) fn checkpointed(&mut self) {
        self.last = Instant::now();
        self.synced_since = false;
    }
}

impl Db {
    pub(super) fn maybe_checkpoint(&mut self, out: &mut SyncOutcome) -> Result<()> {
        let Some(pos) = self.pos else {
            return Ok(());
        };
        if Continuity::sealed_at(self.continuity, &pos) {
            return Ok(()); // already checkpointed to our position; the next write restarts the WAL
        }
        let fs = u64::from(self.page_size) + wal::FRAME_HEADER_SIZE;
        let pages_in_wal = pos.wal_offset.saturating_sub(WAL_HEADER_SIZE) / fs;
        let o = &self.opts;
        let by_size = o.min_checkpoint_page_count > 0
            && pages_in_wal >= u64::from(o.min_checkpoint_page_count);
        let by_time = !o.checkpoint_interval.is_zero()
            && self.checkpoints.last.elapsed() >= o.checkpoint_interval
            && self.checkpoints.synced_since
            && pages_in_wal > 1;
        let mode = if o.truncate_page_count > 0 && pages_in_wal >= u64::from(o.truncate_page_count)
        {
            Some(CheckpointMode::Truncate)
        } else if by_size || by_time {
            Some(CheckpointMode::Passive)
        } else {
            None
        };
        if let Some(m) = mode {
            self.checkpoint_inner(m, out)?;
        }
        Ok(())
    }

    /// Runs a checkpoint now (syncing first so no frame is checkpointed
    /// unseen).
    pub fn checkpoint(&mut self, mode: CheckpointMode) -> Result<SyncOutcome> {
        self.open()?;
        let mut out = SyncOutcome::default();
        let r = self.checkpoint_inner(mode, &mut out);
        if r.is_err() {
            let _ = self.release_write_lock(); // the checkpoint error is what we report
        }
        r.map(|()| out)
    }

    fn checkpoint_inner(&mut self, mode: CheckpointMode, out: &mut SyncOutcome) -> Result<()> {
        if mode == CheckpointMode::Truncate {
            // Try the cheap way first; TRUNCATE only if the WAL is still large.
            self.checkpoint_passive(out)?;
            let fs = u64::from(self.page_size) + wal::FRAME_HEADER_SIZE;
            let still_large = self.pos.is_some_and(|p| {
                p.wal_offset.saturating_sub(WAL_HEADER_SIZE) / fs
                    >= u64::from(self.opts.truncate_page_count)
            });
            if still_large && self.continuity.is_none() {
                self.checkpoint_truncate(out)?;
            }
            return Ok(());
        }
        self.checkpoint_passive(out)
    }

    /// PASSIVE checkpoint behind a write-lock barrier: sync to the very end
    /// of the WAL, checkpoint, and take the read transaction again before
    /// any writer can append. If every frame was checkpointed, the
    /// generation is sealed at our position.
    fn checkpoint_passive(&mut self, out: &mut SyncOutcome) -> Result<()> {
        let began = Instant::now();
        let r = self.checkpoint_passive_inner(out);
        self.opts
            .metrics
            .checkpoint("PASSIVE", began.elapsed().as_secs_f64(), r.is_err());
        r
    }

    fn checkpoint_passive_inner(&mut self, out: &mut SyncOutcome) -> Result<()> {
        self.checkpoint_ahead()?;
        if !self.acquire_write_lock()? {
            self.session_mut()?.close_lock_conn(); // opened for this checkpoint only
            tracing::debug!(db = %self.name, "checkpoint skipped: database busy");
            return Ok(());
        }
        let locked = Instant::now();
        let r = (|| {
            self.sync_to_end(out)?;
            let (log, done) = self.passive_checkpoint(out)?;
            crate::crashpoint::here("checkpointed");
            let fs = u64::from(self.page_size) + wal::FRAME_HEADER_SIZE;
            if let Some(p) = self.pos
                && log >= 0
                && log == done
                && p.wal_offset == WAL_HEADER_SIZE + log as u64 * fs
                && self.current_wal_salts()? == Some(p.salts())
            {
                self.continuity = Some(Continuity::Sealed {
                    salts: p.salts(),
                    offset: p.wal_offset,
                });
            }
            Ok(())
        })();
        let released = self.release_write_lock();
        tracing::debug!(db = %self.name, held = ?locked.elapsed(), "passive checkpoint: write lock released");
        r.and(released)
    }

    /// The bulk of a PASSIVE checkpoint, without the barrier: our pin moves
    /// up to the end of the WAL (we have just synced to it), and a PASSIVE
    /// checkpoint on the second connection copies the frames before the
    /// pin into the database file and syncs it, while writers go on (a
    /// checkpoint never passes a reader's snapshot, and with our read
    /// transaction held the WAL cannot restart). The barrier then only has
    /// what was appended meanwhile. Moving the pin forgets what we knew
    /// about continuity, so this runs only when the next sync can prove it
    /// from the WAL itself: the generation we synced in is still current.
    fn checkpoint_ahead(&mut self) -> Result<()> {
        let Some(pos) = self.pos else {
            return Ok(());
        };
        if self.continuity.is_some() || self.current_wal_salts()? != Some(pos.salts()) {
            return Ok(());
        }
        self.end_read_tx()?;
        self.begin_read_tx()?;
        // Busy means another checkpoint is running: the barrier's does the
        // work.
        self.session_mut()?.passive_checkpoint_beside()
    }

    /// Runs a PASSIVE checkpoint between releasing and retaking our read
    /// transaction (the caller holds the write lock, so no frame can
    /// appear meanwhile). Returns SQLite's (WAL frames, frames
    /// checkpointed), `(-1, -1)` if the database was busy.
    pub(super) fn passive_checkpoint(&mut self, out: &mut SyncOutcome) -> Result<(i32, i32)> {
        self.end_read_tx()?;
        let ck = self
            .session()?
            .checkpoint(rusqlite::wal::CheckpointMode::PASSIVE);
        self.begin_read_tx()?;
        let r = ck?.unwrap_or((-1, -1));
        self.checkpoints.checkpointed();
        out.checkpoint = Some(CheckpointMode::Passive);
        Ok(r)
    }

    /// TRUNCATE checkpoint. It needs writers and readers out, so it cannot
    /// run behind our barrier; frames committed between our last sync and
    /// the truncation would be lost from view, so a snapshot follows.
    fn checkpoint_truncate(&mut self, out: &mut SyncOutcome) -> Result<()> {
        self.sync_to_end(out)?;
        self.end_read_tx()?;
        let began = Instant::now();
        let ck = self
            .session()?
            .checkpoint(rusqlite::wal::CheckpointMode::TRUNCATE);
        self.opts
            .metrics
            .checkpoint("TRUNCATE", began.elapsed().as_secs_f64(), ck.is_err());
        self.begin_read_tx()?;
        match ck? {
            Some(_) => {
                crate::crashpoint::here("truncated");
                self.checkpoints.checkpointed();
                out.checkpoint = Some(CheckpointMode::Truncate);
                self.snapshot_demand.require("after TRUNCATE checkpoint");
                self.sync_to_end(out)
            }
            None => Ok(()),
        }
    }

    pub(super) fn current_wal_salts(&self) -> Result<Option<(u32, u32)>> {
        match File::open(&self.wal_path) {
            Ok(f) => {
                Ok(WalHeader::read(&f, &self.wal_path.display().to_string())?.map(|h| h.salts()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("open {}", self.wal_path.display()), e)),
        }
    }
}
