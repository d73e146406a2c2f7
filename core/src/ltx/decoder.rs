//! Streaming LTX decoder: reads a file front to back, one page at a time,
//! applies every validation rule of spec §1 and verifies the file checksum
//! at the end. Never holds more than one page and the page index.

use std::io::{ErrorKind, Read};

use super::checksum::{CHECKSUM_FLAG, Crc64Digest, DatabaseChecksum, page_checksum};
use super::index::{IndexEntry, decompress_page};
use super::{
    HEADER_SIZE, Header, PAGE_FLAG_SIZE, PAGE_HEADER_SIZE, Trailer, get_uvarint, lock_pgno,
    lz4frame,
};
use crate::error::{Error, Result};

/// What [`Decoder::next_page`] yields besides the page bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageFrame {
    pub pgno: u32,
}

/// Reads one LTX file from `R`.
#[derive(Debug)]
pub struct Decoder<R: Read> {
    r: R,
    name: String,
    header: Header,
    crc: Crc64Digest,
    n: u64,
    seen: Vec<IndexEntry>,
    prev_pgno: u32,
    lock: u32,
    pages_done: bool,
    cbuf: Vec<u8>,
    /// The last page came as an LZ4 block (now in `cbuf`).
    last_block: bool,
    /// Rolling checksum of a snapshot that carries checksums.
    db_checksum: Option<DatabaseChecksum>,
}

impl<R: Read> Decoder<R> {
    /// Reads and validates the header. `name` (a path or key) is used in
    /// every error.
    pub fn new(mut r: R, name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let mut hb = [0u8; HEADER_SIZE];
        read_exact(&mut r, &mut hb, &name, "header")?;
        let header = Header::decode(&hb, &name)?;
        let mut crc = Crc64Digest::default();
        crc.update(&hb);
        Ok(Decoder {
            r,
            lock: lock_pgno(header.page_size),
            db_checksum: (header.is_snapshot() && !header.no_checksum())
                .then(DatabaseChecksum::default),
            header,
            name,
            crc,
            n: HEADER_SIZE as u64,
            seen: Vec::new(),
            prev_pgno: 0,
            pages_done: false,
            cbuf: Vec::new(),
            last_block: false,
        })
    }

    /// The file's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The name used in errors.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn corrupt(&self, reason: impl Into<String>) -> Error {
        Error::corrupt(self.name.clone(), reason)
    }

    /// Decodes the next page into `buf` (one page long). Returns `None` at
    /// the terminator.
    pub fn next_page(&mut self, buf: &mut [u8]) -> Result<Option<PageFrame>> {
        if self.pages_done {
            return Ok(None);
        }
        if buf.len() != self.header.page_size as usize {
            return Err(Error::InvalidInput(format!(
                "{}: page buffer of {} bytes",
                self.name,
                buf.len()
            )));
        }
        let offset = self.n;
        let mut ph = [0u8; PAGE_HEADER_SIZE];
        read_exact(&mut self.r, &mut ph, &self.name, "page header")?;
        self.n += PAGE_HEADER_SIZE as u64;
        let pgno = u32::from_be_bytes([ph[0], ph[1], ph[2], ph[3]]);
        let flags = u16::from_be_bytes([ph[4], ph[5]]);
        if pgno == 0 && flags == 0 {
            self.crc.update(&ph);
            self.pages_done = true;
            self.check_snapshot_complete()?;
            return Ok(None);
        }
        self.check_pgno(pgno)?;
        if flags == PAGE_FLAG_SIZE {
            let mut sz = [0u8; 4];
            read_exact(&mut self.r, &mut sz, &self.name, "page size field")?;
            let len = u32::from_be_bytes(sz) as usize;
            let bound = lz4_flex::block::get_maximum_output_size(buf.len());
            if len > bound {
                return Err(self.corrupt(format!(
                    "page {pgno}: compressed length {len} exceeds the LZ4 bound {bound}"
                )));
            }
            self.cbuf.resize(len, 0);
            read_exact(&mut self.r, &mut self.cbuf, &self.name, "page data")?;
            decompress_page(&self.cbuf, buf, pgno, &self.name)?;
            self.last_block = true;
            self.n += 4 + len as u64;
            self.crc.update(&ph);
            self.crc.update(&sz);
        } else if flags == 0 {
            let mut counting = CountingReader {
                r: &mut self.r,
                n: 0,
            };
            lz4frame::read_frame(&mut counting, buf)
                .map_err(|e| Error::corrupt(self.name.clone(), format!("page {pgno}: {e}")))?;
            self.last_block = false;
            self.n += counting.n;
            self.crc.update(&ph);
        } else {
            return Err(self.corrupt(format!("page {pgno} has invalid page flags 0x{flags:04x}")));
        }
        self.crc.update(buf);
        if let Some(c) = self.db_checksum.as_mut() {
            c.toggle(page_checksum(pgno, buf));
        }
        self.seen.push(IndexEntry {
            pgno,
            offset,
            size: self.n - offset,
        });
        self.prev_pgno = pgno;
        Ok(Some(PageFrame { pgno }))
    }

    /// The LZ4 block the last page was stored as, so it can be copied to
    /// another file without compressing it again (`None` for the legacy
    /// per-page frame form). Valid until the next call to `next_page`.
    pub fn last_block(&self) -> Option<&[u8]> {
        self.last_block.then_some(self.cbuf.as_slice())
    }

    fn check_pgno(&self, pgno: u32) -> Result<()> {
        let prev = self.prev_pgno;
        if pgno == self.lock {
            return Err(self.corrupt(format!("file contains the lock page {pgno}")));
        }
        if pgno > self.header.commit {
            return Err(self.corrupt(format!("page {pgno} above commit {}", self.header.commit)));
        }
        if self.header.is_snapshot() {
            let expect = super::next_snapshot_pgno(prev, self.lock);
            if pgno != expect {
                return Err(self.corrupt(format!(
                    "snapshot page {pgno} after {prev}: pages must be contiguous from 1"
                )));
            }
        } else if pgno <= prev {
            return Err(self.corrupt(format!("page {pgno} after {prev}: pages must ascend")));
        }
        Ok(())
    }

    fn check_snapshot_complete(&self) -> Result<()> {
        if self.header.is_snapshot() && self.header.commit > 0 {
            let last = if self.header.commit == self.lock {
                self.lock - 1
            } else {
                self.header.commit
            };
            if self.prev_pgno != last {
                return Err(self.corrupt(format!(
                    "snapshot ends at page {} but commit is {}",
                    self.prev_pgno, self.header.commit
                )));
            }
        }
        Ok(())
    }

    /// Skips the remaining pages (still checksumming them).
    pub fn skip_pages(&mut self) -> Result<()> {
        let mut buf = vec![0u8; self.header.page_size as usize];
        while self.next_page(&mut buf)?.is_some() {}
        Ok(())
    }

    /// Reads the page index and trailer, checks that the index matches the
    /// page frames, that nothing follows the trailer, and verifies the file
    /// checksum. Must follow the last page.
    pub fn finish(mut self) -> Result<Trailer> {
        if !self.pages_done {
            self.skip_pages()?;
        }
        // Page index: uvarint triples until a 0 pgno, then a u64 length.
        let mut raw = Vec::with_capacity(self.seen.len() * 8 + 16);
        let mut entries = Vec::with_capacity(self.seen.len());
        loop {
            let pgno = self.read_uvarint(&mut raw)?;
            if pgno == 0 {
                break;
            }
            let offset = self.read_uvarint(&mut raw)?;
            let size = self.read_uvarint(&mut raw)?;
            entries.push((pgno, offset, size));
            if entries.len() > self.seen.len() {
                return Err(self.corrupt("page index lists more pages than the file holds"));
            }
        }
        let mut lenb = [0u8; 8];
        read_exact(&mut self.r, &mut lenb, &self.name, "page index length")?;
        if u64::from_be_bytes(lenb) != raw.len() as u64 {
            return Err(self.corrupt(format!(
                "page index length field says {} bytes, index has {}",
                u64::from_be_bytes(lenb),
                raw.len()
            )));
        }
        let matches = entries.len() == self.seen.len()
            && entries
                .iter()
                .zip(&self.seen)
                .all(|(&(p, o, s), e)| p == u64::from(e.pgno) && o == e.offset && s == e.size);
        if !matches {
            return Err(self.corrupt("page index does not match the page frames"));
        }
        let mut tb = [0u8; 16];
        read_exact(&mut self.r, &mut tb, &self.name, "trailer")?;
        self.crc.update(&raw);
        self.crc.update(&lenb);
        self.crc.update(&tb[0..8]);
        let mut a = [0u8; 8];
        a.copy_from_slice(&tb[0..8]);
        let post = u64::from_be_bytes(a);
        a.copy_from_slice(&tb[8..16]);
        let trailer = Trailer {
            post_apply_checksum: post,
            file_checksum: u64::from_be_bytes(a),
        };
        trailer
            .validate(&self.header)
            .map_err(|r| self.corrupt(format!("invalid trailer: {r}")))?;
        let mut extra = [0u8; 1];
        loop {
            match self.r.read(&mut extra) {
                Ok(0) => break,
                Ok(_) => return Err(self.corrupt("unexpected bytes after the trailer")),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(format!("read {}", self.name), e)),
            }
        }
        let computed = CHECKSUM_FLAG | self.crc.finalize();
        if computed != trailer.file_checksum {
            return Err(self.corrupt(format!(
                "file checksum mismatch: trailer says {:016x}, content gives {computed:016x}",
                trailer.file_checksum
            )));
        }
        if let Some(c) = self.db_checksum
            && c.0 != trailer.post_apply_checksum
        {
            return Err(self.corrupt(format!(
                "post-apply checksum {:016x} does not match the snapshot's pages ({:016x})",
                trailer.post_apply_checksum, c.0
            )));
        }
        Ok(trailer)
    }

    fn read_uvarint(&mut self, raw: &mut Vec<u8>) -> Result<u64> {
        let start = raw.len();
        for _ in 0..10 {
            let mut b = [0u8; 1];
            read_exact(&mut self.r, &mut b, &self.name, "page index")?;
            raw.push(b[0]);
            if b[0] < 0x80 {
                let mut pos = start;
                return get_uvarint(raw, &mut pos)
                    .ok_or_else(|| self.corrupt("malformed page index varint"));
            }
        }
        Err(self.corrupt("malformed page index varint"))
    }

    /// Decodes a whole file, checking everything; returns header and trailer.
    pub fn verify(r: R, name: impl Into<String>) -> Result<(Header, Trailer)> {
        let mut d = Decoder::new(r, name)?;
        d.skip_pages()?;
        let h = d.header;
        let t = d.finish()?;
        Ok((h, t))
    }
}

struct CountingReader<'a, R: Read> {
    r: &'a mut R,
    n: u64,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.r.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

fn read_exact<R: Read>(r: &mut R, buf: &mut [u8], name: &str, what: &str) -> Result<()> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == ErrorKind::UnexpectedEof {
            Error::corrupt(name, format!("truncated in the {what}"))
        } else {
            Error::io(format!("read {name}"), e)
        }
    })
}
