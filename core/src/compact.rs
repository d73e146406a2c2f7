//! Merging LTX files into one (Litestream's compactor): the newest version
//! of every page wins and pages past the final commit are dropped.
//!
//! Inputs are read front to back at the same time (a k-way merge by page
//! number), so memory is one page per input whatever the file sizes. Every
//! input is decoded completely and its file checksum verified before the
//! output is committed; a page's LZ4 block is copied as it is, never
//! compressed again.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::ltx::{Decoder, Encoder, Header};

/// What a merge wrote.
#[derive(Debug, Clone)]
pub struct Merged {
    pub header: Header,
    pub size: u64,
    pub pages: u32,
}

struct Input<R: Read> {
    dec: Decoder<R>,
    page: Vec<u8>,
    block: Vec<u8>,
    /// Page number of the buffered page; 0 once the input is exhausted.
    pgno: u32,
    /// Pages read so far.
    pages: u32,
}

impl<R: Read> Input<R> {
    fn advance(&mut self) -> Result<()> {
        match self.dec.next_page(&mut self.page)? {
            Some(f) => {
                self.pgno = f.pgno;
                self.pages += 1;
                self.block.clear();
                if let Some(b) = self.dec.last_block() {
                    self.block.extend_from_slice(b);
                }
            }
            None => self.pgno = 0,
        }
        Ok(())
    }
}

/// True if a file `min..=max` continues a chain that reached `prev_max`
/// (ltx's `IsContiguous`).
pub fn is_contiguous(prev_max: crate::TxId, min: crate::TxId, max: crate::TxId) -> bool {
    min.0 <= prev_max.0 + 1 && max > prev_max
}

/// Merges `inputs` (readers with names for messages, ascending by TXID and
/// contiguous) into an LTX file written atomically at `out`. The header is
/// Litestream's: TXIDs from the first to the last input, the last input's
/// commit and timestamp, NoChecksum.
pub fn merge_to_file<R: Read>(inputs: Vec<(R, String)>, out: &Path) -> Result<Merged> {
    merge(inputs, out, false, None)
}

/// Merges `inputs` as [`merge_to_file`] does, for one database's L0
/// files: `keep_wal_range` copies the last input's WAL range (offset,
/// size, salts) into the header, where the next sync finds its position.
/// `from` labels the output from an earlier TXID than the first input's:
/// allowed only when the first input holds every page of its database (a
/// snapshot written as L0), which makes the files before it redundant;
/// checked as it is read.
fn merge<R: Read>(
    inputs: Vec<(R, String)>,
    out: &Path,
    keep_wal_range: bool,
    from: Option<crate::TxId>,
) -> Result<Merged> {
    if inputs.is_empty() {
        return Err(Error::InvalidInput(format!(
            "merge into {}: no input files",
            out.display()
        )));
    }
    let mut ins = Vec::with_capacity(inputs.len());
    for (r, name) in inputs {
        let dec = Decoder::new(r, name)?;
        let ps = dec.header().page_size as usize;
        ins.push(Input {
            dec,
            page: vec![0u8; ps],
            block: Vec::new(),
            pgno: 0,
            pages: 0,
        });
    }
    for w in ins.windows(2) {
        let (a, b) = (w[0].dec.header(), w[1].dec.header());
        if a.page_size != b.page_size {
            return Err(Error::corrupt(
                w[1].dec.name(),
                format!(
                    "page size {} differs from {} in {}",
                    b.page_size,
                    a.page_size,
                    w[0].dec.name()
                ),
            ));
        }
        if !is_contiguous(a.max_txid, b.min_txid, b.max_txid) {
            return Err(Error::corrupt(
                w[1].dec.name(),
                format!(
                    "TXIDs {}-{} do not continue {} (which ends at {})",
                    b.min_txid,
                    b.max_txid,
                    w[0].dec.name(),
                    a.max_txid
                ),
            ));
        }
    }
    let first = *ins[0].dec.header();
    let last = *ins[ins.len() - 1].dec.header();
    let mut header = Header::new(
        first.page_size,
        last.commit,
        from.map_or(first.min_txid, |f| f.min(first.min_txid)),
        last.max_txid,
        last.timestamp_ms,
    );
    if keep_wal_range {
        header.wal_offset = last.wal_offset;
        header.wal_size = last.wal_size;
        header.wal_salt1 = last.wal_salt1;
        header.wal_salt2 = last.wal_salt2;
    }
    let tmp = fsutil::tmp_path(out);
    let tmp_name = tmp.display().to_string();
    let result = (|| {
        let big = ins
            .iter()
            .map(|i| u64::from(i.dec.header().commit))
            .max()
            .unwrap_or(0)
            * u64::from(header.page_size)
            >= fsutil::DIRECT_MIN_BYTES;
        let mut enc = Encoder::new(fsutil::SeqWriter::create(&tmp, big)?, header, &tmp_name)?;
        for i in ins.iter_mut() {
            i.advance()?;
        }
        while let Some(pgno) = ins.iter().map(|i| i.pgno).filter(|p| *p != 0).min() {
            // The newest input holding the page wins; every input holding
            // it moves on.
            let mut written = false;
            for i in ins.iter_mut().rev() {
                if i.pgno != pgno {
                    continue;
                }
                if !written && pgno <= header.commit {
                    if i.block.is_empty() {
                        // A legacy page frame: compress it now.
                        enc.encode_page(pgno, &i.page)?;
                    } else {
                        enc.write_page_block(pgno, &i.page, &i.block)?;
                    }
                }
                written = true;
                i.advance()?;
            }
        }
        if from.is_some_and(|f| f < first.min_txid) {
            let lock = crate::ltx::lock_pgno(first.page_size);
            let all = first.commit - u32::from(lock <= first.commit);
            if ins[0].pages != all {
                return Err(Error::corrupt(
                    ins[0].dec.name(),
                    format!(
                        "holds {} of the {all} pages of its database: the files before it are needed",
                        ins[0].pages
                    ),
                ));
            }
        }
        // Every input's checksum is verified before the output exists.
        for i in ins {
            i.dec.finish()?;
        }
        let done = enc.finish()?;
        let f = done.writer.finish()?;
        fsutil::commit_tmp(&tmp, f, out)?;
        Ok(Merged {
            header,
            size: done.size,
            pages: done.page_count,
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp); // nothing partial stays; the error says why
    }
    result
}

/// [`merge_to_file`] over local files.
pub fn merge_files(inputs: &[PathBuf], out: &Path) -> Result<Merged> {
    merge(open_all(inputs, 256 << 10)?, out, false, None)
}

/// [`merge_files`] whose first input holds every page of the database (an
/// L0 snapshot): the output covers TXIDs from `from`, the files between
/// `from` and the first input adding nothing it does not replace. An
/// error if the first input lacks a page.
pub fn merge_files_from_full(inputs: &[PathBuf], out: &Path, from: crate::TxId) -> Result<Merged> {
    merge(open_all(inputs, 256 << 10)?, out, false, Some(from))
}

/// Merges a database's consecutive local L0 files into one L0 file that
/// ends where the last one does, WAL range included, so the database's
/// position is unchanged.
pub fn merge_l0_files(inputs: &[PathBuf], out: &Path) -> Result<Merged> {
    // Small buffers: L0 files are one sync each, and many databases may
    // merge at once.
    merge(open_all(inputs, 64 << 10)?, out, true, None)
}

fn open_all(inputs: &[PathBuf], buffer: usize) -> Result<Vec<(BufReader<File>, String)>> {
    let mut readers = Vec::with_capacity(inputs.len());
    for p in inputs {
        let f = File::open(p).ctx(|| format!("open {}", p.display()))?;
        readers.push((BufReader::with_capacity(buffer, f), p.display().to_string()));
    }
    Ok(readers)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::TxId;

    const PS: usize = 512;

    fn write(dir: &Path, min: u64, max: u64, commit: u32, pages: &[(u32, u8)], ts: i64) -> PathBuf {
        let p = dir.join(crate::txid::ltx_file_name(TxId(min), TxId(max)));
        let h = Header::new(PS as u32, commit, TxId(min), TxId(max), ts);
        let mut enc = Encoder::new(Vec::new(), h, "t").unwrap();
        for (pgno, fill) in pages {
            enc.encode_page(*pgno, &[*fill; PS]).unwrap();
        }
        std::fs::write(&p, enc.finish().unwrap().writer).unwrap();
        p
    }

    fn pages_of(p: &Path) -> (Header, BTreeMap<u32, u8>) {
        let mut d = Decoder::new(File::open(p).unwrap(), "out").unwrap();
        let h = *d.header();
        let mut buf = vec![0u8; PS];
        let mut m = BTreeMap::new();
        while let Some(f) = d.next_page(&mut buf).unwrap() {
            assert!(buf.iter().all(|b| *b == buf[0]));
            m.insert(f.pgno, buf[0]);
        }
        d.finish().unwrap();
        (h, m)
    }

    #[test]
    fn newest_page_wins_and_pages_past_commit_drop() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), 1, 1, 4, &[(1, 1), (2, 1), (3, 1), (4, 1)], 100);
        let b = write(dir.path(), 2, 3, 5, &[(2, 2), (5, 2)], 200);
        let c = write(dir.path(), 4, 4, 3, &[(1, 3)], 300); // shrinks to 3 pages
        let out = dir.path().join("out.ltx");
        let m = merge_files(&[a, b, c], &out).unwrap();
        let (h, pages) = pages_of(&out);
        assert_eq!((h.min_txid, h.max_txid, h.commit), (TxId(1), TxId(4), 3));
        assert_eq!(h.timestamp_ms, 300, "the last input's timestamp");
        assert_eq!(h.flags, crate::ltx::FLAG_NO_CHECKSUM);
        assert_eq!(pages, BTreeMap::from([(1, 3), (2, 2), (3, 1)]));
        assert_eq!(m.pages, 3);
        assert_eq!(m.size, std::fs::metadata(&out).unwrap().len());
    }

    #[test]
    fn gaps_and_corruption_are_errors_and_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), 1, 2, 2, &[(1, 1), (2, 1)], 1);
        let b = write(dir.path(), 4, 4, 2, &[(2, 2)], 2);
        let out = dir.path().join("out.ltx");
        let e = merge_files(&[a.clone(), b], &out).unwrap_err().to_string();
        assert!(e.contains("do not continue"), "{e}");
        assert!(!out.exists() && !fsutil::tmp_path(&out).exists());

        let c = write(dir.path(), 3, 3, 2, &[(2, 7)], 3);
        let mut bytes = std::fs::read(&c).unwrap();
        let n = bytes.len();
        bytes[n - 30] ^= 0xff; // inside the page index
        std::fs::write(&c, bytes).unwrap();
        let e = merge_files(&[a, c.clone()], &out).unwrap_err().to_string();
        assert!(e.contains(&c.display().to_string()), "{e}");
        assert!(!out.exists() && !fsutil::tmp_path(&out).exists());
    }

    #[test]
    fn a_full_first_input_stands_for_the_files_before_it() {
        let dir = tempfile::tempdir().unwrap();
        // TXIDs 5-7 are not read: 8 holds every page.
        let full = write(dir.path(), 8, 8, 3, &[(1, 8), (2, 8), (3, 8)], 800);
        let next = write(dir.path(), 9, 9, 4, &[(2, 9), (4, 9)], 900);
        let out = dir.path().join("out.ltx");
        merge_files_from_full(&[full, next], &out, TxId(5)).unwrap();
        let (h, pages) = pages_of(&out);
        assert_eq!((h.min_txid, h.max_txid, h.commit), (TxId(5), TxId(9), 4));
        assert_eq!(pages, BTreeMap::from([(1, 8), (2, 9), (3, 8), (4, 9)]));

        // A first input lacking a page cannot stand for what came before.
        let partial = write(dir.path(), 10, 10, 3, &[(1, 10), (3, 10)], 1000);
        let e = merge_files_from_full(std::slice::from_ref(&partial), &out, TxId(5))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&partial.display().to_string()) && e.contains("2 of the 3 pages"),
            "{e}"
        );
        assert!(!fsutil::tmp_path(&out).exists());
    }
}
