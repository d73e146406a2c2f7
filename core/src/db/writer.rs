//! The L0 encoding pipeline: the pages a file takes, read from the WAL or
//! the database file, compressed on all cores and written to a temporary
//! file that is fsynced and renamed into place (spec §1 for the bytes,
//! which only [`ltx`](crate::ltx) knows).
//!
//! Invariant: a file whose pages came from the WAL is committed only if the
//! WAL header is unchanged after they were read (see
//! [`Db::check_wal_unchanged`]).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::PathBuf;

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::ltx::{Encoder, Header};
use crate::txid::TxId;
use crate::wal::{self, WalHeader};

use super::{Db, L0File};

/// The WAL file pages are read from, and its header when their frames were
/// located (`None`: no page comes from the WAL).
#[derive(Clone, Copy)]
pub(super) struct WalSrc<'a> {
    pub(super) file: &'a File,
    pub(super) header: Option<WalHeader>,
}

/// Where the bytes of a page come from.
#[derive(Debug, Clone, Copy)]
pub(super) enum PageSrc {
    Wal(u64),
    Db,
}

/// Pages gathered per encode batch.
const BATCH_PAGES: usize = 512;

/// Reads the pages of `chunk` into `buf`, coalescing runs of consecutive
/// database-file pages into one read. Pages past the end of the database
/// file read as zeros, as SQLite reads them.
fn fill_pages(
    ps: usize,
    names: (&str, &str),
    chunk: &[(u32, PageSrc)],
    buf: &mut [u8],
    wal_file: &File,
    db_file: &File,
) -> Result<()> {
    let (db_name, wal_name) = names;
    let mut i = 0;
    while i < chunk.len() {
        match chunk[i].1 {
            PageSrc::Wal(off) => {
                wal::read_page(wal_file, wal_name, off, &mut buf[i * ps..(i + 1) * ps])?;
                i += 1;
            }
            PageSrc::Db => {
                let mut j = i + 1;
                while j < chunk.len()
                    && matches!(chunk[j].1, PageSrc::Db)
                    && chunk[j].0 == chunk[j - 1].0 + 1
                {
                    j += 1;
                }
                let dst = &mut buf[i * ps..j * ps];
                let off = u64::from(chunk[i].0 - 1) * ps as u64;
                let n = wal::read_full_at(db_file, dst, off).ctx(|| format!("read {db_name}"))?;
                dst[n..].fill(0);
                i = j;
            }
        }
    }
    Ok(())
}

impl Db {
    pub(super) fn next_txid(&self) -> TxId {
        let cur = self.pos.map(|p| p.txid).unwrap_or(TxId::ZERO);
        cur.max(self.snapshot_demand.txid_floor).next()
    }

    pub(super) fn now_ms() -> i64 {
        jiff::Timestamp::now().as_millisecond()
    }

    /// Encodes pages into `<l0>/<min>-<max>.ltx` atomically.
    pub(super) fn write_l0(
        &self,
        h: Header,
        wal: WalSrc<'_>,
        pages: &BTreeMap<u32, PageSrc>,
        snapshot: bool,
    ) -> Result<L0File> {
        self.write_ltx_at(
            self.meta.l0_path(h.min_txid, h.max_txid),
            h,
            wal,
            pages,
            snapshot,
        )
    }

    /// Frames are located by reading the WAL, their pages read afterwards.
    /// Our read transaction keeps checkpoints from restarting a WAL whose
    /// frames it uses, but not one it does not (a read transaction that
    /// began when the WAL was fully checkpointed reads only the database
    /// file): a writer may then restart the WAL and write the new
    /// generation over the frames located. A restart rewrites the header
    /// before any frame, so a header unchanged after the pages were read
    /// proves they are the frames located.
    fn check_wal_unchanged(&self, wal: &WalSrc<'_>) -> Result<()> {
        let Some(expected) = wal.header else {
            return Ok(());
        };
        let wal_name = self.wal_path.display().to_string();
        if WalHeader::read(wal.file, &wal_name)? == Some(expected) {
            return Ok(());
        }
        Err(Error::Backend {
            context: format!("{}: sync", self.name),
            message: format!(
                "{wal_name} restarted while its frames were read (a writer checkpointed and restarted it); nothing was written, the sync is retried"
            ),
            transient: true,
        })
    }

    /// Encodes pages into `path` atomically.
    pub(super) fn write_ltx_at(
        &self,
        path: PathBuf,
        h: Header,
        wal: WalSrc<'_>,
        pages: &BTreeMap<u32, PageSrc>,
        snapshot: bool,
    ) -> Result<L0File> {
        let db_file = self.session()?.db_file();
        crate::crashpoint::pause("frames-located");
        let tmp = fsutil::process_tmp_path(&path);
        let tmp_name = tmp.display().to_string();
        let result = (|| {
            let big = pages.len() as u64 * u64::from(self.page_size) >= fsutil::DIRECT_MIN_BYTES;
            let enc = Encoder::new(fsutil::SeqWriter::create(&tmp, big)?, h, tmp_name.clone())?;
            let entries: Vec<(u32, PageSrc)> = pages.iter().map(|(p, s)| (*p, *s)).collect();
            let enc = self.encode_pipelined(enc, &entries, wal.file, db_file)?;
            if pages.values().any(|s| matches!(s, PageSrc::Wal(_))) {
                self.check_wal_unchanged(&wal)?;
            }
            let done = enc.finish()?;
            let f = done.writer.finish()?;
            fsutil::commit_tmp(&tmp, f, &path)?;
            crate::crashpoint::here("l0-written");
            Ok(L0File {
                min_txid: h.min_txid,
                txid: h.max_txid,
                path: path.clone(),
                size: done.size,
                pages: done.page_count,
                snapshot,
                wal_bytes: 0,
            })
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp); // no partial file is left behind; the error says why
        }
        result
    }

    /// Three stages on their own threads, so reading pages, compressing them
    /// (on all cores) and writing the file overlap: a reader fills batches,
    /// this thread compresses them, a writer appends them in order.
    fn encode_pipelined<W: std::io::Write + Send>(
        &self,
        mut enc: Encoder<W>,
        entries: &[(u32, PageSrc)],
        wal_file: &File,
        db_file: &File,
    ) -> Result<Encoder<W>> {
        use std::sync::mpsc::sync_channel;
        let ps = self.page_size as usize;
        let wal_name = self.wal_path.display().to_string();
        let names = (self.name.as_str(), wal_name.as_str());
        if entries.len() <= BATCH_PAGES {
            // One batch (every ordinary sync, and small databases'
            // snapshots): no threads, one buffer of the size needed.
            let mut buf = vec![0u8; entries.len() * ps];
            fill_pages(ps, names, entries, &mut buf, wal_file, db_file)?;
            let batch: Vec<(u32, &[u8])> = entries
                .iter()
                .zip(buf.chunks_exact(ps))
                .map(|((p, _), data)| (*p, data))
                .collect();
            if batch.len() <= 16 {
                for (p, data) in batch {
                    enc.encode_page(p, data)?;
                }
            } else {
                enc.encode_pages(&batch)?;
            }
            return Ok(enc);
        }
        std::thread::scope(|s| {
            let (read_tx, read_rx) = sync_channel::<Result<(usize, Vec<u8>)>>(2);
            let (free_tx, free_rx) = sync_channel::<Vec<u8>>(4);
            let (write_tx, write_rx) = sync_channel::<Vec<crate::ltx::CompressedPage>>(2);
            for _ in 0..3 {
                let _ = free_tx.send(vec![0u8; BATCH_PAGES * ps]); // capacity 4: cannot block
            }
            s.spawn(move || {
                for (i, chunk) in entries.chunks(BATCH_PAGES).enumerate() {
                    let Ok(mut buf) = free_rx.recv() else { return };
                    let r = fill_pages(
                        ps,
                        names,
                        chunk,
                        &mut buf[..chunk.len() * ps],
                        wal_file,
                        db_file,
                    );
                    let failed = r.is_err();
                    if read_tx.send(r.map(|()| (i, buf))).is_err() || failed {
                        return;
                    }
                }
            });
            let writer = s.spawn(move || -> Result<Encoder<W>> {
                for batch in write_rx {
                    enc.write_compressed_pages(batch)?;
                }
                Ok(enc)
            });
            let mut result = Ok(());
            for msg in read_rx {
                let (i, buf) = match msg {
                    Ok(v) => v,
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                };
                let chunk =
                    &entries[i * BATCH_PAGES..(i * BATCH_PAGES + BATCH_PAGES).min(entries.len())];
                let batch: Vec<(u32, &[u8])> = chunk
                    .iter()
                    .enumerate()
                    .map(|(j, (p, _))| (*p, &buf[j * ps..(j + 1) * ps]))
                    .collect();
                let compressed = Encoder::<W>::compress_pages(&batch);
                drop(batch);
                let _ = free_tx.send(buf); // the reader may have finished
                if write_tx.send(compressed).is_err() {
                    break; // the writer failed; its error is reported below
                }
            }
            drop(write_tx);
            let enc = writer.join().map_err(|_| {
                Error::io(
                    format!("encode {}", names.0),
                    std::io::Error::other("writer thread panicked"),
                )
            })??;
            result.map(|()| enc)
        })
    }
}
