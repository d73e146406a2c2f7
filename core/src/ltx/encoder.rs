//! Streaming LTX encoder. Writes files exactly as Litestream 0.5.17 does:
//! LZ4-block pages (page flag 0x1), NoChecksum header flag, zero
//! pre/post-apply checksums. Pages can be compressed on all cores with
//! [`Encoder::encode_pages`]; the file checksum is combined in page order.

use std::io::Write;

use rayon::prelude::*;

use super::checksum::{CHECKSUM_FLAG, RunningCrc, crc64, shift_operator};
use super::index::IndexEntry;
use super::{
    HEADER_SIZE, Header, PAGE_FLAG_SIZE, PAGE_HEADER_SIZE, Trailer, lock_pgno, put_uvarint,
};
use crate::error::{Error, IoContext, Result};

/// The result of a finished encoding.
#[derive(Debug)]
pub struct EncodedFile<W> {
    pub writer: W,
    pub header: Header,
    pub trailer: Trailer,
    /// Bytes written.
    pub size: u64,
    /// Pages written.
    pub page_count: u32,
}

/// Writes one LTX file to `W` page by page, never holding the file in
/// memory.
#[derive(Debug)]
pub struct Encoder<W: Write> {
    w: W,
    name: String,
    header: Header,
    crc: RunningCrc,
    n: u64,
    index: Vec<IndexEntry>,
    prev_pgno: u32,
    lock: u32,
    /// Shift operator for one page segment (6 + 4 + page size bytes).
    page_op: u64,
    cbuf: Vec<u8>,
}

/// A page compressed (and checksummed) ahead of writing, possibly on
/// another thread: see [`Encoder::compress_pages`].
#[derive(Debug)]
pub struct CompressedPage {
    pgno: u32,
    len: usize,
    block: Vec<u8>,
    segment_crc: u64,
}

fn compress(pgno: u32, data: &[u8], out: &mut Vec<u8>) -> u64 {
    out.clear();
    out.resize(lz4_flex::block::get_maximum_output_size(data.len()), 0);
    // The output buffer is sized by the LZ4 bound, so compression cannot fail.
    let n = lz4_flex::block::compress_into(data, out).unwrap_or(0);
    out.truncate(n);
    let mut head = [0u8; 10];
    head[0..4].copy_from_slice(&pgno.to_be_bytes());
    head[4..6].copy_from_slice(&PAGE_FLAG_SIZE.to_be_bytes());
    head[6..10].copy_from_slice(&(n as u32).to_be_bytes());
    let mut d = super::checksum::Crc64Digest::default();
    d.update(&head);
    d.update(data);
    d.finalize()
}

impl<W: Write> Encoder<W> {
    /// Validates `header` and writes it. `name` (a path or key) is used in
    /// error messages.
    pub fn new(mut w: W, header: Header, name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        header
            .validate()
            .map_err(|r| Error::InvalidInput(format!("{name}: invalid LTX header: {r}")))?;
        let b = header.encode();
        w.write_all(&b).ctx(|| format!("write {name}"))?;
        let mut crc = RunningCrc::default();
        crc.update(&b);
        Ok(Encoder {
            w,
            name,
            lock: lock_pgno(header.page_size),
            page_op: shift_operator(10 + u64::from(header.page_size)),
            header,
            crc,
            n: HEADER_SIZE as u64,
            index: Vec::new(),
            prev_pgno: 0,
            cbuf: Vec::new(),
        })
    }

    /// The header being written.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.n
    }

    fn check_next(&self, prev: u32, pgno: u32, len: usize) -> Result<()> {
        let bad = |r: String| Err(Error::InvalidInput(format!("{}: {r}", self.name)));
        if len != self.header.page_size as usize {
            return bad(format!(
                "page {pgno} is {len} bytes, page size is {}",
                self.header.page_size
            ));
        }
        if pgno == 0 || pgno > self.header.commit {
            return bad(format!("page {pgno} outside 1..={}", self.header.commit));
        }
        if pgno == self.lock {
            return bad(format!("page {pgno} is the lock page"));
        }
        if self.header.is_snapshot() {
            let expect = super::next_snapshot_pgno(prev, self.lock);
            if pgno != expect {
                return bad(format!(
                    "snapshot pages must be contiguous: page {pgno} after {prev}"
                ));
            }
        } else if pgno <= prev {
            return bad(format!("pages out of order: {pgno} after {prev}"));
        }
        Ok(())
    }

    fn write_compressed(&mut self, pgno: u32, block: &[u8], segment_crc: u64) -> Result<()> {
        let mut head = [0u8; 10];
        head[0..4].copy_from_slice(&pgno.to_be_bytes());
        head[4..6].copy_from_slice(&PAGE_FLAG_SIZE.to_be_bytes());
        head[6..10].copy_from_slice(&(block.len() as u32).to_be_bytes());
        let name = &self.name;
        self.w.write_all(&head).ctx(|| format!("write {name}"))?;
        self.w.write_all(block).ctx(|| format!("write {name}"))?;
        let size = 10 + block.len() as u64;
        self.index.push(IndexEntry {
            pgno,
            offset: self.n,
            size,
        });
        self.n += size;
        self.crc.append(segment_crc, self.page_op);
        self.prev_pgno = pgno;
        Ok(())
    }

    /// Encodes one page. Pages must come in ascending order.
    pub fn encode_page(&mut self, pgno: u32, data: &[u8]) -> Result<()> {
        self.check_next(self.prev_pgno, pgno, data.len())?;
        let mut buf = std::mem::take(&mut self.cbuf);
        let segment_crc = compress(pgno, data, &mut buf);
        let r = self.write_compressed(pgno, &buf, segment_crc);
        self.cbuf = buf;
        r
    }

    /// Writes a page whose LZ4 block is already known (copied from another
    /// LTX file, see [`Decoder::last_block`](super::Decoder::last_block)):
    /// the block is written as it is, `data` (the page) feeds the checksum.
    pub fn write_page_block(&mut self, pgno: u32, data: &[u8], block: &[u8]) -> Result<()> {
        self.check_next(self.prev_pgno, pgno, data.len())?;
        let mut head = [0u8; 10];
        head[0..4].copy_from_slice(&pgno.to_be_bytes());
        head[4..6].copy_from_slice(&PAGE_FLAG_SIZE.to_be_bytes());
        head[6..10].copy_from_slice(&(block.len() as u32).to_be_bytes());
        let mut d = super::checksum::Crc64Digest::default();
        d.update(&head);
        d.update(data);
        self.write_compressed(pgno, block, d.finalize())
    }

    /// Encodes a batch of pages (ascending), compressing and checksumming
    /// them on all cores. The bytes written are the same as page by page.
    pub fn encode_pages(&mut self, pages: &[(u32, &[u8])]) -> Result<()> {
        let mut prev = self.prev_pgno;
        for (pgno, data) in pages {
            self.check_next(prev, *pgno, data.len())?;
            prev = *pgno;
        }
        self.write_compressed_pages(Self::compress_pages(pages))
    }

    /// Compresses and checksums pages on all cores, without an encoder, so
    /// compression can overlap writing ([`write_compressed_pages`](Self::write_compressed_pages)).
    pub fn compress_pages(pages: &[(u32, &[u8])]) -> Vec<CompressedPage> {
        pages
            .par_iter()
            .map_init(Vec::new, |buf, (pgno, data)| {
                let segment_crc = compress(*pgno, data, buf);
                CompressedPage {
                    pgno: *pgno,
                    len: data.len(),
                    block: buf.clone(),
                    segment_crc,
                }
            })
            .collect()
    }

    /// Writes pages compressed by [`compress_pages`](Self::compress_pages),
    /// with the same checks as [`encode_page`](Self::encode_page).
    pub fn write_compressed_pages(&mut self, pages: Vec<CompressedPage>) -> Result<()> {
        for c in pages {
            self.check_next(self.prev_pgno, c.pgno, c.len)?;
            self.write_compressed(c.pgno, &c.block, c.segment_crc)?;
        }
        Ok(())
    }

    /// Writes the terminator, page index and trailer (post-apply checksum
    /// 0, as NoChecksum requires) and returns the writer.
    pub fn finish(self) -> Result<EncodedFile<W>> {
        self.finish_with_post_apply(0)
    }

    /// Like [`finish`](Self::finish) with an explicit post-apply checksum
    /// (only for files without the NoChecksum flag).
    pub fn finish_with_post_apply(mut self, post_apply_checksum: u64) -> Result<EncodedFile<W>> {
        let name = self.name.clone();
        if self.header.is_snapshot() && self.header.commit > 0 {
            let last = if self.header.commit == self.lock {
                self.lock - 1
            } else {
                self.header.commit
            };
            if self.prev_pgno != last {
                return Err(Error::InvalidInput(format!(
                    "{name}: snapshot ends at page {} but commit is {}",
                    self.prev_pgno, self.header.commit
                )));
            }
        }
        let mut tail = vec![0u8; PAGE_HEADER_SIZE];
        let index_start = tail.len();
        for e in &self.index {
            put_uvarint(&mut tail, u64::from(e.pgno));
            put_uvarint(&mut tail, e.offset);
            put_uvarint(&mut tail, e.size);
        }
        put_uvarint(&mut tail, 0);
        let index_len = (tail.len() - index_start) as u64;
        tail.extend_from_slice(&index_len.to_be_bytes());
        tail.extend_from_slice(&post_apply_checksum.to_be_bytes());
        let mut crc = self.crc;
        crc.append(crc64(&tail), shift_operator(tail.len() as u64));
        let trailer = Trailer {
            post_apply_checksum,
            file_checksum: CHECKSUM_FLAG | crc.value(),
        };
        trailer
            .validate(&self.header)
            .map_err(|r| Error::InvalidInput(format!("{name}: {r}")))?;
        tail.extend_from_slice(&trailer.file_checksum.to_be_bytes());
        self.w.write_all(&tail).ctx(|| format!("write {name}"))?;
        self.w.flush().ctx(|| format!("write {name}"))?;
        Ok(EncodedFile {
            size: self.n + tail.len() as u64,
            page_count: self.index.len() as u32,
            writer: self.w,
            header: self.header,
            trailer,
        })
    }
}
