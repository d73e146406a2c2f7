//! A sync: carries out the [`Plan`](super::continuity::Plan) for the next
//! L0 file until the WAL holds no unsynced committed frame, then
//! checkpoints if a threshold is reached.

use std::collections::BTreeMap;
use std::fs::File;

use crate::error::{Error, Result};
use crate::ltx::{Header, lock_pgno};
use crate::wal::{StopReason, WalHeader, WalReader, WalSegment};

use super::continuity::{Plan, Position};
use super::writer::{PageSrc, WalSrc};
use super::{Db, L0File, SyncOutcome};

impl Db {
    /// Syncs new committed WAL frames into L0 files, then checkpoints if a
    /// threshold is reached.
    pub fn sync(&mut self) -> Result<SyncOutcome> {
        self.open()?;
        let mut out = SyncOutcome::default();
        let r = self
            .sync_to_end(&mut out)
            .and_then(|()| self.maybe_checkpoint(&mut out));
        if r.is_err() {
            // Leave no write lock behind; the error is what we report.
            let _ = self.release_write_lock();
        }
        r.map(|()| out)
    }

    /// Syncs until the WAL holds no unsynced committed frames.
    pub(super) fn sync_to_end(&mut self, out: &mut SyncOutcome) -> Result<()> {
        loop {
            let before = out.files.len();
            let limited = self.sync_once(out)?;
            if !limited || out.files.len() == before {
                return Ok(());
            }
        }
    }

    /// One pass; returns true when it stopped at the byte limit.
    fn sync_once(&mut self, out: &mut SyncOutcome) -> Result<bool> {
        // Read before the WAL: frames up to this count were written before it.
        let index = self.wal_index();
        let wal_file = match File::open(&self.wal_path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(format!("open {}", self.wal_path.display()), e)),
        };
        if self.replaced() {
            // The WAL just opened may be a new file's, read against the
            // old one's pages: write nothing; the next open starts over.
            return Ok(false);
        }
        let wal_name = self.wal_path.display().to_string();
        let header = match &wal_file {
            Some(f) => WalHeader::read(f, &wal_name)?,
            None => None,
        };
        match self.plan(wal_file.as_ref(), header)? {
            Plan::Nothing => Ok(false),
            Plan::Snapshot(reason) => {
                self.write_snapshot(wal_file.as_ref(), header, &reason, index, out)?;
                Ok(false)
            }
            Plan::Incremental {
                header,
                offset,
                seed,
            } => {
                let Some(f) = wal_file.as_ref() else {
                    return Ok(false);
                };
                let seg = WalReader::resume(f, &wal_name, header, offset, seed)
                    .read_transactions(self.opts.max_sync_wal_bytes)?;
                self.check_chain(index, &header, &seg)?;
                if seg.is_empty() {
                    return Ok(false);
                }
                self.write_incremental(f, &header, &header, &seg, out)?;
                Ok(seg.stop == StopReason::Limit)
            }
            Plan::OldTailThenNew { header } => {
                let Some(f) = wal_file.as_ref() else {
                    return Ok(false);
                };
                self.sync_across_restart(f, header, out)?;
                Ok(false)
            }
        }
    }

    /// The WAL restarted once since our last sync. Under the write lock (so
    /// the new generation cannot grow over the old frames), read the old
    /// generation onward from our offset, ship what it committed, then the
    /// new generation from its start.
    fn sync_across_restart(
        &mut self,
        f: &File,
        header: WalHeader,
        out: &mut SyncOutcome,
    ) -> Result<()> {
        let acquired_here = !self.is_write_locked();
        if !self.acquire_write_lock()? {
            return Err(Error::Backend {
                context: self.name.clone(),
                message:
                    "database busy: could not take the write lock to read across a WAL restart"
                        .into(),
                transient: true,
            });
        }
        let r = self.sync_across_restart_locked(f, header, out);
        if acquired_here {
            let released = self.release_write_lock();
            return r.and(released);
        }
        r
    }

    fn sync_across_restart_locked(
        &mut self,
        f: &File,
        header: WalHeader,
        out: &mut SyncOutcome,
    ) -> Result<()> {
        let wal_name = self.wal_path.display().to_string();
        let Some(pos) = self.pos else {
            return self.write_snapshot(Some(f), Some(header), "no position", None, out);
        };
        // The header may have moved on before we got the lock.
        let now = WalHeader::read(f, &wal_name)?;
        if now != Some(header) {
            return self.write_snapshot(
                Some(f),
                now,
                "WAL restarted again while syncing",
                None,
                out,
            );
        }
        let old = WalHeader {
            salt1: pos.salt1,
            salt2: pos.salt2,
            ..header
        };
        let Some(seed) = WalReader::seed_at(f, &wal_name, &old, pos.wal_offset)? else {
            return self.write_snapshot(
                Some(f),
                Some(header),
                "WAL restarted and its new generation overwrote the last synced frame",
                None,
                out,
            );
        };
        let tail =
            WalReader::resume(f, &wal_name, old, pos.wal_offset, seed).read_transactions(0)?;
        if tail.stop == StopReason::PartialFrame {
            return self.write_snapshot(
                Some(f),
                Some(header),
                "old WAL generation was truncated",
                None,
                out,
            );
        }
        if !tail.is_empty() {
            self.write_incremental(f, &header, &old, &tail, out)?;
        }
        let seg = WalReader::new(f, &wal_name, header).read_transactions(0)?;
        if !seg.is_empty() {
            self.write_incremental(f, &header, &header, &seg, out)?;
        } else if tail.is_empty() {
            // Nothing committed anywhere yet; keep the old position.
        }
        Ok(())
    }

    /// Writes an L0 file with the committed pages of `seg` plus any growth
    /// pages not in the WAL (read from the database file).
    /// `file_header` is the WAL file's header when `seg` was read; `header`
    /// the generation `seg` belongs to (the old one, across a restart).
    fn write_incremental(
        &mut self,
        wal_file: &File,
        file_header: &WalHeader,
        header: &WalHeader,
        seg: &WalSegment,
        out: &mut SyncOutcome,
    ) -> Result<()> {
        let prev_commit = self.pos.map(|p| p.commit).unwrap_or(0);
        let lock = lock_pgno(self.page_size);
        let mut pages: BTreeMap<u32, PageSrc> = seg
            .pages
            .iter()
            .map(|(p, o)| (*p, PageSrc::Wal(*o)))
            .collect();
        for pgno in prev_commit.saturating_add(1)..=seg.commit {
            if pgno != lock {
                pages.entry(pgno).or_insert(PageSrc::Db);
            }
        }
        pages.remove(&lock);
        let txid = self.next_txid();
        let mut h = Header::new(self.page_size, seg.commit, txid, txid, Self::now_ms());
        h.wal_offset = seg.start as i64;
        h.wal_size = (seg.end - seg.start) as i64;
        h.wal_salt1 = header.salt1;
        h.wal_salt2 = header.salt2;
        let wal = WalSrc {
            file: wal_file,
            header: Some(*file_header),
        };
        let file = self.write_l0(h, wal, &pages, false)?;
        out.files.push(L0File {
            wal_bytes: seg.end - seg.start,
            ..file
        });
        self.after_write(&h);
        Ok(())
    }

    pub(super) fn after_write(&mut self, h: &Header) {
        self.pos = Some(Position::from_header(h));
        self.continuity = None;
        self.checkpoints.synced();
    }
}
