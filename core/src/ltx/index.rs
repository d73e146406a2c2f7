//! The page index (spec §1.3) and random access to single pages through it.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::checksum::{CHECKSUM_FLAG, RunningCrc};
use super::{
    HEADER_SIZE, Header, PAGE_FLAG_SIZE, PAGE_HEADER_SIZE, TRAILER_SIZE, Trailer, get_uvarint,
    lz4frame,
};
use crate::error::{Error, IoContext, Result};

/// One page index entry: where a page frame sits in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub pgno: u32,
    /// File offset of the page frame header.
    pub offset: u64,
    /// Whole frame on disk: 6 + 4 + compressed length.
    pub size: u64,
}

/// An LTX file's header, page index and trailer, read from its two ends
/// without reading the page frames.
#[derive(Debug, Clone)]
pub struct PageIndex {
    pub header: Header,
    pub entries: Vec<IndexEntry>,
    pub trailer: Trailer,
    /// Byte offset where the terminator starts (end of the page frames).
    pub frames_end: u64,
    /// The index bytes (entries, end marker and length field), needed to
    /// recompute the file checksum when pages are verified in parallel.
    pub index_bytes: Vec<u8>,
}

impl PageIndex {
    /// The number of bytes to read from the end of the file to get the
    /// index, given the last 24 bytes (index length field + trailer).
    pub fn tail_len(last24: &[u8], file_size: u64, name: &str) -> Result<u64> {
        if last24.len() != 24 {
            return Err(Error::corrupt(
                name,
                "file too short for an index length and trailer",
            ));
        }
        let mut a = [0u8; 8];
        a.copy_from_slice(&last24[0..8]);
        let index_len = u64::from_be_bytes(a);
        let need = index_len
            .checked_add(8 + TRAILER_SIZE as u64)
            .filter(|n| {
                n.checked_add(HEADER_SIZE as u64 + 6)
                    .is_some_and(|end| end <= file_size)
            })
            .ok_or_else(|| {
                Error::corrupt(
                    name,
                    format!(
                        "page index length {index_len} does not fit in a {file_size}-byte file"
                    ),
                )
            })?;
        Ok(need)
    }

    /// Parses the index from `tail` (the last [`tail_len`](Self::tail_len)
    /// bytes of a `file_size`-byte file) for a file whose header is `header`.
    pub fn parse(header: Header, tail: &[u8], file_size: u64, name: &str) -> Result<PageIndex> {
        let corrupt = |r: String| Error::corrupt(name, r);
        if tail.len() < 8 + TRAILER_SIZE {
            return Err(corrupt("truncated page index".into()));
        }
        let index_len = tail.len() - 8 - TRAILER_SIZE;
        let entries_bytes = &tail[..index_len];
        let mut pos = 0usize;
        let mut entries = Vec::new();
        let frames_end = file_size
            .checked_sub(tail.len() as u64 + PAGE_HEADER_SIZE as u64)
            .filter(|e| *e >= HEADER_SIZE as u64)
            .ok_or_else(|| {
                corrupt(format!(
                    "page index of {} bytes does not fit in a {file_size}-byte file",
                    tail.len()
                ))
            })?;
        let lock = super::lock_pgno(header.page_size);
        let mut prev_pgno = 0u32;
        let mut next_offset = HEADER_SIZE as u64;
        loop {
            let pgno = get_uvarint(entries_bytes, &mut pos)
                .ok_or_else(|| corrupt("truncated page index entry".into()))?;
            if pgno == 0 {
                break;
            }
            let offset = get_uvarint(entries_bytes, &mut pos)
                .ok_or_else(|| corrupt("truncated page index entry".into()))?;
            let size = get_uvarint(entries_bytes, &mut pos)
                .ok_or_else(|| corrupt("truncated page index entry".into()))?;
            let pgno = u32::try_from(pgno)
                .map_err(|_| corrupt(format!("page index entry with page number {pgno}")))?;
            if pgno <= prev_pgno || pgno > header.commit {
                return Err(corrupt(format!(
                    "page index entry for page {pgno} out of order or above commit {}",
                    header.commit
                )));
            }
            if pgno == lock {
                return Err(corrupt(format!("page index lists the lock page {pgno}")));
            }
            if header.is_snapshot() {
                let expect = super::next_snapshot_pgno(prev_pgno, lock);
                if pgno != expect {
                    return Err(corrupt(format!(
                        "snapshot page {pgno} after {prev_pgno}: pages must be contiguous from 1"
                    )));
                }
            }
            if offset != next_offset
                || size < PAGE_HEADER_SIZE as u64
                || offset.checked_add(size).is_none_or(|end| end > frames_end)
            {
                return Err(corrupt(format!(
                    "page index entry for page {pgno} at offset {offset} size {size} does not match the page frames"
                )));
            }
            next_offset = offset + size;
            prev_pgno = pgno;
            entries.push(IndexEntry { pgno, offset, size });
        }
        if header.is_snapshot() && header.commit > 0 {
            let last = if header.commit == lock {
                lock - 1
            } else {
                header.commit
            };
            if prev_pgno != last {
                return Err(corrupt(format!(
                    "snapshot ends at page {prev_pgno} but commit is {}",
                    header.commit
                )));
            }
        }
        if pos != index_len {
            return Err(corrupt(format!(
                "page index length field says {index_len} bytes but entries end at {pos}"
            )));
        }
        if next_offset != frames_end {
            return Err(corrupt("page index does not cover every page frame".into()));
        }
        let t = &tail[index_len + 8..];
        let mut a = [0u8; 8];
        a.copy_from_slice(&t[0..8]);
        let post = u64::from_be_bytes(a);
        a.copy_from_slice(&t[8..16]);
        let trailer = Trailer {
            post_apply_checksum: post,
            file_checksum: u64::from_be_bytes(a),
        };
        trailer
            .validate(&header)
            .map_err(|r| corrupt(format!("invalid trailer: {r}")))?;
        Ok(PageIndex {
            header,
            entries,
            trailer,
            frames_end,
            index_bytes: tail[..index_len + 8].to_vec(),
        })
    }

    /// Reads the header and index of a local file.
    pub fn read(file: &File, name: &str) -> Result<PageIndex> {
        let size = file.metadata().ctx(|| format!("stat {name}"))?.len();
        if size < (HEADER_SIZE + 6 + 1 + 8 + TRAILER_SIZE) as u64 {
            return Err(Error::corrupt(
                name,
                format!("file of {size} bytes is too short for an LTX file"),
            ));
        }
        let mut hb = [0u8; HEADER_SIZE];
        file.read_exact_at(&mut hb, 0)
            .ctx(|| format!("read {name}"))?;
        let header = Header::decode(&hb, name)?;
        let mut last = [0u8; 24];
        file.read_exact_at(&mut last, size - 24)
            .ctx(|| format!("read {name}"))?;
        let need = Self::tail_len(&last, size, name)?;
        let mut tail = vec![0u8; need as usize];
        file.read_exact_at(&mut tail, size - need)
            .ctx(|| format!("read {name}"))?;
        Self::parse(header, &tail, size, name)
    }

    /// The CRC of the bytes after the page frames that the file checksum
    /// covers: terminator, index, length field, post-apply checksum.
    pub fn tail_crc(&self) -> RunningCrc {
        let mut c = RunningCrc::default();
        c.update(&[0u8; PAGE_HEADER_SIZE]);
        c.update(&self.index_bytes);
        c.update(&self.trailer.post_apply_checksum.to_be_bytes());
        c
    }

    /// Checks a file checksum computed from parts against the trailer.
    pub fn check_file_checksum(&self, crc: u64, name: &str) -> Result<()> {
        if CHECKSUM_FLAG | crc != self.trailer.file_checksum {
            return Err(Error::corrupt(
                name,
                format!(
                    "file checksum mismatch: trailer says {:016x}, content gives {:016x}",
                    self.trailer.file_checksum,
                    CHECKSUM_FLAG | crc
                ),
            ));
        }
        Ok(())
    }
}

/// Decodes one page frame held in `frame` into `out` (one page). Returns
/// the page number, the CRC of the bytes the file checksum covers for this
/// frame and their length.
pub fn decode_frame(frame: &[u8], out: &mut [u8], name: &str) -> Result<(u32, u64, u64)> {
    let corrupt = |r: String| Error::corrupt(name, r);
    if frame.len() < PAGE_HEADER_SIZE {
        return Err(corrupt("truncated page frame".into()));
    }
    let pgno = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
    let flags = u16::from_be_bytes([frame[4], frame[5]]);
    if pgno == 0 {
        return Err(corrupt("page frame with page number 0".into()));
    }
    let mut crc = super::checksum::Crc64Digest::default();
    if flags == PAGE_FLAG_SIZE {
        if frame.len() < PAGE_HEADER_SIZE + 4 {
            return Err(corrupt(format!("truncated page frame for page {pgno}")));
        }
        let n = u32::from_be_bytes([frame[6], frame[7], frame[8], frame[9]]) as usize;
        if frame.len() != 10 + n {
            return Err(corrupt(format!(
                "page {pgno}: frame of {} bytes holds {n} compressed bytes",
                frame.len()
            )));
        }
        let data = &frame[10..];
        decompress_page(data, out, pgno, name)?;
        crc.update(&frame[..10]);
        crc.update(out);
        Ok((pgno, crc.finalize(), 10 + out.len() as u64))
    } else if flags == 0 {
        let mut r = &frame[PAGE_HEADER_SIZE..];
        lz4frame::read_frame(&mut r, out).map_err(|e| corrupt(format!("page {pgno}: {e}")))?;
        if !r.is_empty() {
            return Err(corrupt(format!(
                "page {pgno}: {} stray bytes after its LZ4 frame",
                r.len()
            )));
        }
        crc.update(&frame[..PAGE_HEADER_SIZE]);
        crc.update(out);
        Ok((pgno, crc.finalize(), (PAGE_HEADER_SIZE + out.len()) as u64))
    } else {
        Err(corrupt(format!(
            "page {pgno} has invalid page flags 0x{flags:04x}"
        )))
    }
}

/// Decompresses one LZ4 block that must yield exactly one page.
pub(crate) fn decompress_page(data: &[u8], out: &mut [u8], pgno: u32, name: &str) -> Result<()> {
    match lz4_flex::block::decompress_into(data, out) {
        Ok(n) if n == out.len() => Ok(()),
        Ok(n) => Err(Error::corrupt(
            name,
            format!(
                "page {pgno} decompresses to {n} bytes, expected {}",
                out.len()
            ),
        )),
        Err(e) => Err(Error::corrupt(name, format!("page {pgno}: LZ4 block: {e}"))),
    }
}

/// Reads and decodes the page described by `entry` from a local file.
pub fn read_page_at(file: &File, entry: &IndexEntry, out: &mut [u8], name: &str) -> Result<()> {
    let mut frame = vec![0u8; entry.size as usize];
    file.read_exact_at(&mut frame, entry.offset)
        .ctx(|| format!("read {name}"))?;
    let (pgno, _, _) = decode_frame(&frame, out, name)?;
    if pgno != entry.pgno {
        return Err(Error::corrupt(
            name,
            format!(
                "page index says page {} at offset {} but the frame holds page {pgno}",
                entry.pgno, entry.offset
            ),
        ));
    }
    Ok(())
}
