//! Going cold: [`Db::seal`] syncs to the end and checkpoints every frame
//! under the write lock, empties the WAL, and records the database file's
//! size, mtime and inode with the position in the meta directory's
//! `seal.json`. A later open that finds the file unchanged continues
//! without a snapshot ([`Continuity::DbFile`]).

use std::fs;
use std::time::Duration;

use crate::dbfile::FileSig;
use crate::error::Result;
use crate::fsutil;
use crate::wal::{self, WAL_HEADER_SIZE};

use super::continuity::{Continuity, Position};
use super::{Db, SyncOutcome};

/// What [`Db::seal`] records in the meta directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct SealRecord {
    txid: String,
    salt1: u32,
    salt2: u32,
    wal_offset: u64,
    db_size: u64,
    db_mtime_ns: i128,
    db_ino: u64,
}

impl SealRecord {
    fn new(pos: &Position, sig: &FileSig) -> SealRecord {
        SealRecord {
            txid: pos.txid.to_string(),
            salt1: pos.salt1,
            salt2: pos.salt2,
            wal_offset: pos.wal_offset,
            db_size: sig.db_size,
            db_mtime_ns: sig.db_mtime_ns,
            db_ino: sig.db_ino,
        }
    }
}

/// How long the database file's mtime must lie in the past before a seal
/// is recorded: filesystems stamp times at a coarse clock tick, and a
/// later write must get a later mtime.
const SEAL_MTIME_MARGIN: Duration = Duration::from_millis(20);

impl Db {
    /// Prepares the database to go cold: under the write lock, syncs to
    /// the end of the WAL and checkpoints every frame; then empties the
    /// WAL (TRUNCATE) and records the database file in `seal.json`, so the
    /// next open can continue without a snapshot. Returns the L0 files
    /// written and the files' signature once sealed, or `None` if sealing
    /// was not possible now (the database is busy, a reader pins frames,
    /// or a write slipped in before the WAL was emptied).
    pub fn seal(&mut self) -> Result<(SyncOutcome, Option<FileSig>)> {
        self.open()?;
        let mut out = SyncOutcome::default();
        if !self.acquire_write_lock()? {
            return Ok((out, None));
        }
        let r = self.seal_locked(&mut out);
        let released = self.release_write_lock();
        let sealed = r?;
        released?;
        let (Some(at_seal), Some(pos)) = (sealed, self.pos) else {
            return Ok((out, None));
        };
        // Every frame of the WAL is in the database file: empty it.
        self.end_read_tx()?;
        let ck = self
            .session()?
            .checkpoint(rusqlite::wal::CheckpointMode::TRUNCATE);
        self.begin_read_tx()?;
        // Busy: a reader is active; the WAL stays, already checkpointed.
        if ck?.is_some() {
            crate::crashpoint::here("truncated");
        }
        let sig = FileSig::of(&self.path);
        if sig.db_ino != self.opened_ino {
            // Another file was renamed over the database: what we synced
            // is the old one, and the signature would be the new one's.
            // Not sealed: the next replicator opens the new file.
            return Ok((out, None));
        }
        if !sig.same_db(&at_seal) {
            // A write slipped in between the barrier and the truncation:
            // its frames are in the database file only now. The read
            // transaction was released, so the next sync snapshots.
            return Ok((out, None));
        }
        let rec = SealRecord::new(&pos, &sig);
        let path = self.meta.seal_path();
        fsutil::write_atomic(&path, |w| {
            serde_json::to_writer(&mut *w, &rec).map_err(std::io::Error::other)
        })?;
        self.continuity = Some(Continuity::DbFile);
        // Sealed only with an empty WAL: a busy truncation (an open read
        // transaction) may have let a writer append frames we have not
        // synced. The record stays valid either way.
        Ok((out, (sig.wal_size == 0).then_some(sig)))
    }

    /// The part of [`seal`](Self::seal) under the write lock: returns the
    /// files' signature if every frame up to our position is checkpointed.
    fn seal_locked(&mut self, out: &mut SyncOutcome) -> Result<Option<FileSig>> {
        self.sync_to_end(out)?;
        let Some(pos) = self.pos else {
            return Ok(None);
        };
        let (log, done) = self.passive_checkpoint(out)?;
        let fs = u64::from(self.page_size) + wal::FRAME_HEADER_SIZE;
        // With the write lock held, an empty WAL index means the database
        // file is the whole state; otherwise every frame through our
        // position must be in it.
        let full = log >= 0
            && log == done
            && (log == 0
                || (pos.wal_offset == WAL_HEADER_SIZE + log as u64 * fs
                    && self.current_wal_salts()? == Some(pos.salts())));
        if !full {
            return Ok(None);
        }
        let sig = FileSig::of(&self.path);
        let age = std::time::UNIX_EPOCH
            .elapsed()
            .map(|d| d.as_nanos() as i128 - sig.db_mtime_ns)
            .unwrap_or(0);
        let margin = SEAL_MTIME_MARGIN.as_nanos() as i128;
        if age < margin {
            std::thread::sleep(Duration::from_nanos((margin - age.max(0)) as u64));
        }
        Ok(Some(sig))
    }

    /// True if the seal record matches our position and the database file
    /// as it is now. Meaningful only under the read transaction.
    pub(super) fn seal_matches(&self) -> bool {
        let Some(pos) = self.pos else { return false };
        // Unreadable or absent means "not sealed": the next sync proves
        // continuity the usual way.
        let Some(rec) = fs::read(self.meta.seal_path())
            .ok()
            .and_then(|b| serde_json::from_slice::<SealRecord>(&b).ok())
        else {
            return false;
        };
        rec == SealRecord::new(&pos, &FileSig::of(&self.path))
    }
}
