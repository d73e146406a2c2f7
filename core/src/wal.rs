//! SQLite WAL reader. Only this module knows the WAL byte layout
//! (<https://www.sqlite.org/fileformat2.html#walformat>; spec §3).
//!
//! A WAL is a 32-byte header and frames of 24 + page-size bytes. A frame
//! is valid only if its salts equal the header's and its checksum continues
//! the running checksum chain; reading stops at the first invalid frame,
//! as SQLite's own recovery does. Only committed transactions (ending with a
//! frame whose commit field is non-zero) are ever yielded.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::error::{Error, IoContext, Result};

/// Size of the WAL header.
pub const WAL_HEADER_SIZE: u64 = 32;
/// Size of a frame header.
pub const FRAME_HEADER_SIZE: u64 = 24;
const MAGIC_LE: u32 = 0x377f_0682;
const MAGIC_BE: u32 = 0x377f_0683;
const VERSION: u32 = 3_007_000;

/// The running checksum (two u32 words).
pub type Checksum = (u32, u32);

/// Parsed WAL header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalHeader {
    /// True when checksums use big-endian words (magic 0x377f0683).
    pub big_endian: bool,
    pub page_size: u32,
    /// Checkpoint sequence number: grows by one each time the WAL restarts.
    pub checkpoint_seq: u32,
    pub salt1: u32,
    pub salt2: u32,
    /// The header checksum, which seeds the first frame's checksum.
    pub checksum: Checksum,
}

impl WalHeader {
    /// Parses and verifies the 32 header bytes.
    pub fn parse(b: &[u8], name: &str) -> Result<WalHeader> {
        let corrupt = |r: String| Error::corrupt(name, r);
        if b.len() < WAL_HEADER_SIZE as usize {
            return Err(corrupt("WAL header truncated".into()));
        }
        let be = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let big_endian = match be(0) {
            MAGIC_LE => false,
            MAGIC_BE => true,
            m => return Err(corrupt(format!("not a WAL file (magic 0x{m:08x})"))),
        };
        if be(4) != VERSION {
            return Err(corrupt(format!("unsupported WAL version {}", be(4))));
        }
        let page_size = be(8);
        if !crate::ltx::is_valid_page_size(page_size) {
            return Err(corrupt(format!("invalid WAL page size {page_size}")));
        }
        let want = checksum(big_endian, (0, 0), &b[0..24]);
        let stored = (be(24), be(28));
        if want != stored {
            return Err(corrupt("WAL header checksum mismatch".into()));
        }
        Ok(WalHeader {
            big_endian,
            page_size,
            checkpoint_seq: be(12),
            salt1: be(16),
            salt2: be(20),
            checksum: stored,
        })
    }

    /// Reads the header of the WAL at `file`; `Ok(None)` when the file is
    /// shorter than a header (no WAL yet, or truncated by a checkpoint).
    pub fn read(file: &File, name: &str) -> Result<Option<WalHeader>> {
        let mut b = [0u8; WAL_HEADER_SIZE as usize];
        match read_full_at(file, &mut b, 0).ctx(|| format!("read {name}"))? {
            n if n < b.len() => Ok(None),
            _ => WalHeader::parse(&b, name).map(Some),
        }
    }

    /// Bytes per frame.
    pub fn frame_size(&self) -> u64 {
        FRAME_HEADER_SIZE + u64::from(self.page_size)
    }

    /// The salts as a pair.
    pub fn salts(&self) -> (u32, u32) {
        (self.salt1, self.salt2)
    }
}

/// The fields of SQLite's wal-index header we compare against: the first
/// 96 bytes of `-shm` hold two copies of a 48-byte header (native byte
/// order), which differ only while SQLite updates them
/// (<https://www.sqlite.org/walformat.html#the_wal_index_header>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalIndexHeader {
    /// Frames SQLite considers valid (committed) in the WAL.
    pub max_frame: u32,
    /// The WAL generation's salts.
    pub salts: (u32, u32),
}

impl WalIndexHeader {
    /// Reads the header from the `-shm` file, if it is readable and
    /// stable (`None`: absent, or being updated right now).
    pub fn read(shm: &File) -> Option<WalIndexHeader> {
        let mut b = [0u8; 96];
        if read_full_at(shm, &mut b, 0).ok()? != 96 || b[..48] != b[48..] {
            return None;
        }
        let ne = |o: usize| u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        // iVersion, then isInit at byte 12.
        if ne(0) != VERSION || b[12] != 1 {
            return None;
        }
        let be = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        Some(WalIndexHeader {
            max_frame: ne(16),
            salts: (be(32), be(36)),
        })
    }
}

/// SQLite's WAL checksum over `data` (a multiple of 8 bytes), continuing
/// from `s`.
pub fn checksum(big_endian: bool, s: Checksum, data: &[u8]) -> Checksum {
    let (mut s1, mut s2) = s;
    for w in data.chunks_exact(8) {
        let (x0, x1) = if big_endian {
            (
                u32::from_be_bytes([w[0], w[1], w[2], w[3]]),
                u32::from_be_bytes([w[4], w[5], w[6], w[7]]),
            )
        } else {
            (
                u32::from_le_bytes([w[0], w[1], w[2], w[3]]),
                u32::from_le_bytes([w[4], w[5], w[6], w[7]]),
            )
        };
        s1 = s1.wrapping_add(x0).wrapping_add(s2);
        s2 = s2.wrapping_add(x1).wrapping_add(s1);
    }
    (s1, s2)
}

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub pgno: u32,
    /// Database size in pages after this frame's transaction, on the last
    /// frame of a transaction; 0 otherwise.
    pub commit: u32,
    pub salt1: u32,
    pub salt2: u32,
    pub checksum: Checksum,
}

impl FrameHeader {
    fn parse(b: &[u8]) -> FrameHeader {
        let be = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        FrameHeader {
            pgno: be(0),
            commit: be(4),
            salt1: be(8),
            salt2: be(12),
            checksum: (be(16), be(20)),
        }
    }
}

/// Reads the frame header at `offset`, unverified (used to seed the
/// checksum chain when resuming, and for salt checks).
pub fn read_frame_header(file: &File, offset: u64, name: &str) -> Result<Option<FrameHeader>> {
    let mut b = [0u8; FRAME_HEADER_SIZE as usize];
    let n = read_full_at(file, &mut b, offset).ctx(|| format!("read {name}"))?;
    Ok((n == b.len()).then(|| FrameHeader::parse(&b)))
}

/// Why a read of the WAL stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The file ended exactly at a frame boundary.
    Eof,
    /// The file ended inside a frame.
    PartialFrame,
    /// A frame carried other salts (a frame of an earlier WAL generation).
    SaltMismatch,
    /// A frame with the right salts failed the checksum chain.
    ChecksumMismatch,
    /// The byte limit was reached at a commit boundary.
    Limit,
}

/// The committed transactions found in one pass over the WAL.
#[derive(Debug, Clone)]
pub struct WalSegment {
    /// Offset where the pass started.
    pub start: u64,
    /// Offset just past the last commit frame (== `start` if none).
    pub end: u64,
    /// Database size in pages at the last commit (0 if none).
    pub commit: u32,
    /// Latest committed frame offset of each page, pages above `commit`
    /// dropped.
    pub pages: BTreeMap<u32, u64>,
    /// Checksum chain value at `end`.
    pub end_checksum: Checksum,
    /// Why reading stopped.
    pub stop: StopReason,
    /// Offset where the chain stopped (end of the last valid frame).
    pub valid_end: u64,
    /// Number of committed transactions.
    pub transactions: u64,
}

impl WalSegment {
    /// True if any transaction was committed.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// Reads frames of one WAL generation starting at an offset.
#[derive(Debug)]
pub struct WalReader<'f> {
    file: &'f File,
    name: String,
    header: WalHeader,
    offset: u64,
    chk: Checksum,
}

/// How many frames to read per system call.
const FRAMES_PER_READ: u64 = 64;

impl<'f> WalReader<'f> {
    /// A reader at the first frame.
    pub fn new(file: &'f File, name: &str, header: WalHeader) -> Self {
        WalReader {
            file,
            name: name.to_string(),
            header,
            offset: WAL_HEADER_SIZE,
            chk: header.checksum,
        }
    }

    /// A reader resuming at `offset` (a frame boundary after the header)
    /// with the chain value `seed` of the frame before it.
    pub fn resume(
        file: &'f File,
        name: &str,
        header: WalHeader,
        offset: u64,
        seed: Checksum,
    ) -> Self {
        WalReader {
            file,
            name: name.to_string(),
            header,
            offset,
            chk: seed,
        }
    }

    /// The seed for resuming at `offset`: the header checksum at the first
    /// frame, otherwise the stored checksum of the frame before `offset`,
    /// which must carry this generation's salts. `None` if that frame is
    /// missing or belongs to another generation.
    pub fn seed_at(
        file: &File,
        name: &str,
        header: &WalHeader,
        offset: u64,
    ) -> Result<Option<Checksum>> {
        if offset == WAL_HEADER_SIZE {
            return Ok(Some(header.checksum));
        }
        let fs = header.frame_size();
        if offset < WAL_HEADER_SIZE + fs || !(offset - WAL_HEADER_SIZE).is_multiple_of(fs) {
            return Ok(None);
        }
        Ok(read_frame_header(file, offset - fs, name)?
            .filter(|f| f.salt1 == header.salt1 && f.salt2 == header.salt2)
            .map(|f| f.checksum))
    }

    /// Reads committed transactions from the current offset until the chain
    /// ends, or until the first commit boundary at or past `max_bytes`
    /// (0 = no limit). Advances the reader to the end of the last commit.
    pub fn read_transactions(&mut self, max_bytes: u64) -> Result<WalSegment> {
        let fs = self.header.frame_size();
        let ps = self.header.page_size as usize;
        let start = self.offset;
        let mut seg = WalSegment {
            start,
            end: start,
            commit: 0,
            pages: BTreeMap::new(),
            end_checksum: self.chk,
            stop: StopReason::Eof,
            valid_end: start,
            transactions: 0,
        };
        // Pages of the transaction in progress (not yet committed).
        let mut pending: Vec<(u32, u64)> = Vec::new();
        let mut buf = vec![0u8; (fs * FRAMES_PER_READ) as usize];
        let mut off = start;
        let mut chk = self.chk;
        'outer: loop {
            let n = read_full_at(self.file, &mut buf, off).ctx(|| format!("read {}", self.name))?;
            let whole = n as u64 / fs;
            for i in 0..whole {
                let fb = &buf[(i * fs) as usize..((i + 1) * fs) as usize];
                let fh = FrameHeader::parse(fb);
                if fh.salt1 != self.header.salt1 || fh.salt2 != self.header.salt2 {
                    seg.stop = StopReason::SaltMismatch;
                    break 'outer;
                }
                let c = checksum(self.header.big_endian, chk, &fb[0..8]);
                let c = checksum(self.header.big_endian, c, &fb[24..24 + ps]);
                if c != fh.checksum || fh.pgno == 0 {
                    seg.stop = StopReason::ChecksumMismatch;
                    break 'outer;
                }
                chk = c;
                let frame_off = off + i * fs;
                pending.push((fh.pgno, frame_off));
                seg.valid_end = frame_off + fs;
                if fh.commit != 0 {
                    for (p, o) in pending.drain(..) {
                        seg.pages.insert(p, o);
                    }
                    seg.commit = fh.commit;
                    seg.end = frame_off + fs;
                    seg.end_checksum = chk;
                    seg.transactions += 1;
                    if max_bytes > 0 && seg.end - start >= max_bytes {
                        seg.stop = StopReason::Limit;
                        break 'outer;
                    }
                }
            }
            if (n as u64) < buf.len() as u64 {
                seg.stop = if (n as u64).is_multiple_of(fs) {
                    StopReason::Eof
                } else {
                    StopReason::PartialFrame
                };
                break;
            }
            off += whole * fs;
        }
        // Pages beyond the final database size are not part of the database.
        let commit = seg.commit;
        seg.pages.retain(|p, _| *p <= commit);
        self.offset = seg.end;
        self.chk = seg.end_checksum;
        Ok(seg)
    }

    /// Reads the page stored in the frame at `frame_offset`.
    pub fn read_page(&self, frame_offset: u64, out: &mut [u8]) -> Result<()> {
        read_page(self.file, &self.name, frame_offset, out)
    }
}

/// Reads the page stored in the frame at `frame_offset` of a WAL file.
pub fn read_page(file: &File, name: &str, frame_offset: u64, out: &mut [u8]) -> Result<()> {
    let n =
        read_full_at(file, out, frame_offset + FRAME_HEADER_SIZE).ctx(|| format!("read {name}"))?;
    if n != out.len() {
        return Err(Error::corrupt(
            name,
            format!("WAL frame at offset {frame_offset} is truncated"),
        ));
    }
    Ok(())
}

/// `pread` until `buf` is full or the file ends; returns bytes read.
pub(crate) fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
