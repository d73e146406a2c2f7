//! Continuity: where replication stands ([`Position`]), what is known
//! beyond it ([`Continuity`]), and the plan for the next L0 file: continue
//! the WAL from our offset, read across exactly one restart, or take a
//! snapshot. The rules are the module docs of [`db`](super).

use std::fs::File;

use crate::error::{Error, IoContext, Result};
use crate::ltx::Header;
use crate::txid::TxId;
use crate::wal::{
    Checksum, StopReason, WAL_HEADER_SIZE, WalHeader, WalIndexHeader, WalReader, WalSegment,
};

use super::Db;

/// Where replication stands: taken from the header of the newest L0 file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub txid: TxId,
    pub salt1: u32,
    pub salt2: u32,
    /// WAL offset just past the last synced commit frame.
    pub wal_offset: u64,
    /// Database size in pages at that point.
    pub commit: u32,
    pub page_size: u32,
}

impl Position {
    pub(super) fn from_header(h: &Header) -> Position {
        Position {
            txid: h.max_txid,
            salt1: h.wal_salt1,
            salt2: h.wal_salt2,
            wal_offset: (h.wal_offset + h.wal_size) as u64,
            commit: h.commit,
            page_size: h.page_size,
        }
    }

    pub(super) fn salts(&self) -> (u32, u32) {
        (self.salt1, self.salt2)
    }
}

/// What we know about the WAL beyond the newest L0 header, valid only while
/// the read transaction has been held without a break since it was learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Continuity {
    /// The generation with `salts` ended at `offset`, everything up to it
    /// synced and checkpointed: the next generation holds all later changes.
    Sealed { salts: (u32, u32), offset: u64 },
    /// The last sync found no WAL and read the database file alone: any
    /// generation that appears holds all later changes.
    NoWal,
    /// The database file holds exactly our position (it matched the seal
    /// record when the read transaction was taken): any WAL generation
    /// present holds all later changes.
    DbFile,
}

impl Continuity {
    /// True if the generation we synced in was sealed exactly at `pos`.
    pub(super) fn sealed_at(this: Option<Continuity>, pos: &Position) -> bool {
        this == Some(Continuity::Sealed {
            salts: pos.salts(),
            offset: pos.wal_offset,
        })
    }
}

/// Why the next file must be a snapshot, when something outside the WAL
/// says so. Cleared only once a snapshot is written, so a failed attempt is
/// retried.
#[derive(Debug, Default)]
pub(super) struct SnapshotDemand {
    pub(super) reason: Option<String>,
    /// The snapshot covers TXIDs from here (bridging what the replica
    /// lacks).
    pub(super) min: Option<TxId>,
    /// The replica holds TXIDs up to here: the next TXID is above it.
    pub(super) txid_floor: TxId,
}

impl SnapshotDemand {
    pub(super) fn raise_floor(&mut self, txid: TxId) {
        self.txid_floor = self.txid_floor.max(txid);
    }

    pub(super) fn require_from(&mut self, min: TxId, reason: &str) {
        self.min = Some(self.min.map_or(min, |m| m.min(min)));
        self.reason = Some(reason.to_string());
    }

    pub(super) fn require(&mut self, reason: &str) {
        self.reason = Some(reason.to_string());
    }

    pub(super) fn satisfied(&mut self) {
        self.reason = None;
        self.min = None;
    }
}

/// The next file.
pub(super) enum Plan {
    Nothing,
    Snapshot(String),
    Incremental {
        header: WalHeader,
        offset: u64,
        seed: Checksum,
    },
    /// Salts changed after exactly one restart: read the rest of the old
    /// generation, then the new one, under the write lock.
    OldTailThenNew {
        header: WalHeader,
    },
}

impl Db {
    pub(super) fn plan(
        &mut self,
        wal_file: Option<&File>,
        header: Option<WalHeader>,
    ) -> Result<Plan> {
        let Some(pos) = self.position()? else {
            return Ok(Plan::Snapshot("first sync".into()));
        };
        // Cleared only once a snapshot is written, so a failed attempt is
        // retried.
        if let Some(reason) = self.snapshot_demand.reason.clone() {
            return Ok(Plan::Snapshot(reason));
        }
        if pos.txid < self.snapshot_demand.txid_floor {
            return Ok(Plan::Snapshot(format!(
                "replica holds TXID {} beyond local position {}",
                self.snapshot_demand.txid_floor, pos.txid
            )));
        }
        if pos.page_size != self.page_size {
            return Ok(Plan::Snapshot("page size changed".into()));
        }
        let (Some(h), Some(f)) = (header, wal_file) else {
            return Ok(match self.continuity {
                Some(Continuity::NoWal | Continuity::DbFile) => Plan::Nothing,
                Some(Continuity::Sealed { salts, offset })
                    if salts == pos.salts() && offset == pos.wal_offset =>
                {
                    Plan::Nothing
                }
                _ => Plan::Snapshot("WAL missing or empty and continuity unknown".into()),
            });
        };
        if h.page_size != self.page_size {
            return Ok(Plan::Snapshot(
                "WAL page size differs from the database".into(),
            ));
        }
        if h.salts() == pos.salts() {
            let len = f
                .metadata()
                .ctx(|| format!("stat {}", self.wal_path.display()))?
                .len();
            if pos.wal_offset > len {
                return Ok(Plan::Snapshot(
                    "WAL shrank below the last synced offset".into(),
                ));
            }
            return Ok(
                match WalReader::seed_at(f, &self.name, &h, pos.wal_offset)? {
                    Some(seed) => Plan::Incremental {
                        header: h,
                        offset: pos.wal_offset,
                        seed,
                    },
                    None => Plan::Snapshot("the last synced WAL frame was overwritten".into()),
                },
            );
        }
        match self.continuity {
            Some(Continuity::Sealed { salts, offset })
                if salts == pos.salts()
                    && offset == pos.wal_offset
                    && h.salt1 == salts.0.wrapping_add(1) =>
            {
                Ok(Plan::Incremental {
                    header: h,
                    offset: WAL_HEADER_SIZE,
                    seed: h.checksum,
                })
            }
            Some(Continuity::DbFile) => Ok(Plan::Incremental {
                header: h,
                offset: WAL_HEADER_SIZE,
                seed: h.checksum,
            }),
            Some(Continuity::NoWal) if pos.salts() == (0, 0) => Ok(Plan::Incremental {
                header: h,
                offset: WAL_HEADER_SIZE,
                seed: h.checksum,
            }),
            _ if pos.salts() != (0, 0)
                && h.salt1 == pos.salt1.wrapping_add(1)
                && pos.wal_offset > WAL_HEADER_SIZE =>
            {
                Ok(Plan::OldTailThenNew { header: h })
            }
            _ => Ok(Plan::Snapshot(format!(
                "WAL restarted and continuity cannot be proven (synced to offset {} of salt1 {:08x}, WAL now has salt1 {:08x})",
                pos.wal_offset, pos.salt1, h.salt1
            ))),
        }
    }

    /// SQLite's own idea of the WAL, from the wal-index header.
    pub(super) fn wal_index(&self) -> Option<WalIndexHeader> {
        WalIndexHeader::read(self.session.as_ref()?.shm_file()?)
    }

    /// A WAL whose checksum chain breaks before the last frame SQLite
    /// considers committed has been damaged on disk: replicating it would
    /// silently stop short, so it is an error.
    pub(super) fn check_chain(
        &self,
        index: Option<WalIndexHeader>,
        header: &WalHeader,
        seg: &WalSegment,
    ) -> Result<()> {
        let Some(ix) = index else { return Ok(()) };
        if seg.stop == StopReason::Limit || ix.salts != header.salts() {
            return Ok(());
        }
        let fs = header.frame_size();
        let committed_end = WAL_HEADER_SIZE + u64::from(ix.max_frame) * fs;
        if committed_end > seg.valid_end {
            let frame = (seg.valid_end - WAL_HEADER_SIZE) / fs + 1;
            return Err(Error::corrupt(
                self.wal_path.display().to_string(),
                format!(
                    "frame {frame} at offset {} breaks the WAL checksum chain, but SQLite's WAL index holds {} committed frames: the WAL file is damaged",
                    seg.valid_end, ix.max_frame
                ),
            ));
        }
        Ok(())
    }
}
