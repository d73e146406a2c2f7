//! Files that hold every page of the database: the L0 snapshot a sync
//! takes when continuity cannot be proven, and the snapshot-level file
//! (TXIDs 1 to the position) the maintainer asks for.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::ltx::{Header, lock_pgno};
use crate::txid::{TxId, ltx_file_name};
use crate::wal::{WAL_HEADER_SIZE, WalHeader, WalIndexHeader, WalReader};

use super::continuity::Continuity;
use super::writer::{PageSrc, WalSrc};
use super::{Db, SyncOutcome};

impl Db {
    /// Writes every page of the database as an L0 file: from the WAL where
    /// the current generation has a committed version, else from the
    /// database file. Safe without the write lock: our read transaction
    /// keeps checkpoints from writing any page we read from the file.
    pub(super) fn write_snapshot(
        &mut self,
        wal_file: Option<&File>,
        header: Option<WalHeader>,
        reason: &str,
        index: Option<WalIndexHeader>,
        out: &mut SyncOutcome,
    ) -> Result<()> {
        let wal_name = self.wal_path.display().to_string();
        let seg = match (wal_file, header) {
            (Some(f), Some(h)) => {
                let seg = WalReader::new(f, &wal_name, h).read_transactions(0)?;
                self.check_chain(index, &h, &seg)?;
                Some(seg)
            }
            _ => None,
        };
        let db_pages = {
            let f = self.session()?.db_file();
            f.metadata().ctx(|| format!("stat {}", self.name))?.len() / u64::from(self.page_size)
        };
        let commit = match &seg {
            Some(s) if s.commit > 0 => s.commit,
            _ => u32::try_from(db_pages)
                .map_err(|_| Error::corrupt(self.name.clone(), "database too large"))?,
        };
        if commit == 0 {
            return Ok(()); // an empty database: nothing to replicate yet
        }
        let lock = lock_pgno(self.page_size);
        let mut pages: BTreeMap<u32, PageSrc> = (1..=commit)
            .filter(|p| *p != lock)
            .map(|p| (p, PageSrc::Db))
            .collect();
        if let Some(s) = &seg {
            for (p, o) in &s.pages {
                if let Some(src) = pages.get_mut(p) {
                    *src = PageSrc::Wal(*o);
                }
            }
        }
        let txid = self.next_txid();
        let min = self.snapshot_demand.min.map_or(txid, |m| m.min(txid));
        let mut h = Header::new(self.page_size, commit, min, txid, Self::now_ms());
        if let (Some(hd), Some(s)) = (header, &seg) {
            let fs = hd.frame_size();
            let (off, size) = if s.end > WAL_HEADER_SIZE {
                (s.end - fs, fs)
            } else {
                (WAL_HEADER_SIZE, 0)
            };
            h.wal_offset = off as i64;
            h.wal_size = size as i64;
            h.wal_salt1 = hd.salt1;
            h.wal_salt2 = hd.salt2;
        } else {
            h.wal_offset = WAL_HEADER_SIZE as i64;
        }
        // Without a WAL no page comes from it; the database file stands in.
        let wf = match wal_file {
            Some(f) => f,
            None => self.session()?.db_file(),
        };
        let wal = WalSrc {
            file: wf,
            header: header.filter(|_| seg.is_some()),
        };
        let file = self.write_l0(h, wal, &pages, true)?;
        tracing::info!(db = %self.name, txid = %txid, pages = file.pages, reason, "snapshot");
        out.files.push(file);
        out.snapshot_reason
            .get_or_insert_with(|| reason.to_string());
        self.after_write(&h);
        self.full_state_l0 = Some(h.max_txid);
        self.snapshot_demand.satisfied();
        self.continuity = if header.is_none() {
            Some(Continuity::NoWal)
        } else {
            None
        };
        Ok(())
    }

    /// Writes a full snapshot of the database at its position (TXIDs 1 to
    /// the newest L0 file's) into `dir`, for the snapshot level. Pages come
    /// from the WAL up to the last synced commit, else from the database
    /// file. Only our read transaction is held: writers go on during the
    /// encode, and it keeps checkpoints from copying any later frame into
    /// the pages read from the file. Returns `None` before the first sync.
    pub fn write_level_snapshot(&mut self, dir: &Path) -> Result<Option<(PathBuf, Header)>> {
        self.open()?;
        let Some(pos) = self.position()? else {
            return Ok(None);
        };
        if pos.commit == 0 {
            return Ok(None);
        }
        let wal_name = self.wal_path.display().to_string();
        let wal_file = match File::open(&self.wal_path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(format!("open {wal_name}"), e)),
        };
        let header = match &wal_file {
            Some(f) => WalHeader::read(f, &wal_name)?,
            None => None,
        };
        let sealed_at_pos = Continuity::sealed_at(self.continuity, &pos);
        // The WAL frames that make up the position, if any.
        let seg = match (&wal_file, header) {
            (Some(f), Some(h)) if pos.wal_offset > WAL_HEADER_SIZE && !sealed_at_pos => {
                if h.salts() != pos.salts() {
                    return Err(Error::Backend {
                        context: format!("{}: snapshot", self.name),
                        message: "the WAL restarted since the last sync; retried after the next"
                            .into(),
                        transient: true,
                    });
                }
                let seg = WalReader::new(f, &wal_name, h)
                    .read_transactions(pos.wal_offset - WAL_HEADER_SIZE)?;
                if seg.end != pos.wal_offset {
                    return Err(Error::corrupt(
                        wal_name,
                        format!(
                            "committed frames end at offset {}, the last sync ended at {}",
                            seg.end, pos.wal_offset
                        ),
                    ));
                }
                Some((h, seg))
            }
            _ => None,
        };
        let lock = lock_pgno(self.page_size);
        let mut pages: BTreeMap<u32, PageSrc> = (1..=pos.commit)
            .filter(|p| *p != lock)
            .map(|p| (p, PageSrc::Db))
            .collect();
        let mut h = Header::new(
            self.page_size,
            pos.commit,
            TxId(1),
            pos.txid,
            Self::now_ms(),
        );
        h.wal_offset = WAL_HEADER_SIZE as i64;
        if let Some(hd) = header {
            h.wal_salt1 = hd.salt1;
            h.wal_salt2 = hd.salt2;
        }
        if let Some((hd, seg)) = &seg {
            for (p, o) in &seg.pages {
                if let Some(src) = pages.get_mut(p) {
                    *src = PageSrc::Wal(*o);
                }
            }
            let fs = hd.frame_size();
            if seg.end > WAL_HEADER_SIZE {
                h.wal_offset = (seg.end - fs) as i64;
                h.wal_size = fs as i64;
            }
        }
        fsutil::create_dir_all(dir)?;
        let path = dir.join(ltx_file_name(h.min_txid, h.max_txid));
        let db_file = self.session()?.db_file();
        let wf = wal_file.as_ref().unwrap_or(db_file);
        let wal = WalSrc {
            file: wf,
            header: seg.as_ref().map(|(hd, _)| *hd),
        };
        let f = self.write_ltx_at(path, h, wal, &pages, true)?;
        tracing::debug!(db = %self.name, txid = %pos.txid, pages = f.pages, size = f.size, "snapshot encoded");
        Ok(Some((f.path, h)))
    }
}
