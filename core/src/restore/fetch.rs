//! Reading the planned files: headers and page indexes from each file's
//! two ends, then the pages in units of range reads (several streams per
//! large file), each frame decoded and every file's checksum verified.

use std::sync::Arc;

use crate::client::{FileInfo, ReadPattern, ReplicaClient, read_range};
use crate::error::{Error, Result};
use crate::ltx::{HEADER_SIZE, Header, IndexEntry, PAGE_HEADER_SIZE, PageIndex};

/// Files at most this large are fetched whole in one request.
pub(super) const WHOLE_FILE_BYTES: u64 = 1 << 20;
/// Frame bytes per range read of a large file.
pub(super) const UNIT_BYTES: u64 = 4 << 20;
/// Target size of one stream when a backend prefers few long reads.
pub(super) const SEGMENT_BYTES: u64 = 64 << 20;
/// At most this many parallel streams per file (as rclone's default): each
/// stream of an object store is a connection with its own throughput, and
/// every request has a cost.
pub(super) const MAX_STREAMS_PER_FILE: usize = 4;
/// Largest single write of consecutive pages.
pub(super) const RUN_BYTES: usize = 8 << 20;
/// Whole small files are kept in memory up to this total.
pub(super) const MEMORY_BUDGET: u64 = 256 << 20;

pub(super) struct PlannedFile {
    pub(super) info: FileInfo,
    pub(super) key: String,
    pub(super) index: PageIndex,
    pub(super) header_bytes: Vec<u8>,
    pub(super) bytes: Option<Arc<Vec<u8>>>,
}

/// A contiguous run of page frames of one file.
#[derive(Clone)]
pub(super) struct Unit {
    pub(super) file: usize,
    pub(super) seq: usize,
    pub(super) start: u64,
    /// End of the frames; the last unit also checks the 6-byte terminator.
    pub(super) end: u64,
    pub(super) last: bool,
    /// Read as a stream (decoded as bytes arrive) rather than into memory.
    pub(super) streamed: bool,
    pub(super) entries: Vec<IndexEntry>,
}

pub(super) async fn load_file(
    client: &dyn ReplicaClient,
    info: &FileInfo,
    keep_bytes: bool,
) -> Result<PlannedFile> {
    let key = crate::client::describe_file(client, info);
    if info.size < (HEADER_SIZE + PAGE_HEADER_SIZE + 1 + 8 + 16) as u64 {
        return Err(Error::corrupt(
            key,
            format!("{} bytes is too short for an LTX file", info.size),
        ));
    }
    if info.size <= WHOLE_FILE_BYTES {
        let bytes = read_range(client, info, 0, info.size).await?;
        let header = Header::decode(&bytes[..HEADER_SIZE], &key)?;
        check_header(&header, info, &key)?;
        let need = PageIndex::tail_len(&bytes[bytes.len() - 24..], info.size, &key)? as usize;
        let index = PageIndex::parse(header, &bytes[bytes.len() - need..], info.size, &key)?;
        let header_bytes = bytes[..HEADER_SIZE].to_vec();
        return Ok(PlannedFile {
            info: info.clone(),
            key,
            index,
            header_bytes,
            bytes: keep_bytes.then(|| Arc::new(bytes)),
        });
    }
    let header_bytes = read_range(client, info, 0, HEADER_SIZE as u64).await?;
    let header = Header::decode(&header_bytes, &key)?;
    check_header(&header, info, &key)?;
    let guess = (64u64 << 10).min(info.size - HEADER_SIZE as u64);
    let mut tail = read_range(client, info, info.size - guess, guess).await?;
    let need = PageIndex::tail_len(&tail[tail.len() - 24..], info.size, &key)?;
    if need > guess {
        tail = read_range(client, info, info.size - need, need).await?;
    } else {
        tail.drain(..(guess - need) as usize);
    }
    let index = PageIndex::parse(header, &tail, info.size, &key)?;
    Ok(PlannedFile {
        info: info.clone(),
        key,
        index,
        header_bytes,
        bytes: None,
    })
}

fn check_header(h: &Header, info: &FileInfo, key: &str) -> Result<()> {
    if h.min_txid != info.min_txid || h.max_txid != info.max_txid {
        return Err(Error::corrupt(
            key,
            format!(
                "header covers TXIDs {}-{}, the file name says {}-{}",
                h.min_txid, h.max_txid, info.min_txid, info.max_txid
            ),
        ));
    }
    Ok(())
}

/// Splits a file's frames into units: the whole file when it is in
/// memory; else pieces of about [`UNIT_BYTES`] read into memory
/// (random-access backends), or up to `par` streams of about
/// [`SEGMENT_BYTES`] (object stores, where each request costs).
pub(super) fn units_of(
    file: usize,
    f: &PlannedFile,
    pattern: ReadPattern,
    par: usize,
) -> Vec<Unit> {
    let whole = f.bytes.is_some();
    let frames = f.index.frames_end - HEADER_SIZE as u64;
    let (target, streamed) = match pattern {
        _ if whole => (u64::MAX, false),
        ReadPattern::RandomAccess => (UNIT_BYTES, false),
        ReadPattern::Streams => {
            let n = frames
                .div_ceil(SEGMENT_BYTES)
                .clamp(1, par.clamp(1, MAX_STREAMS_PER_FILE) as u64);
            (frames.div_ceil(n).max(1), true)
        }
    };
    let mut units = Vec::new();
    let mut cur: Vec<IndexEntry> = Vec::new();
    let mut start = HEADER_SIZE as u64;
    for e in &f.index.entries {
        if !cur.is_empty() && e.offset + e.size - start > target {
            units.push(Unit {
                file,
                seq: units.len(),
                start,
                end: e.offset,
                last: false,
                streamed,
                entries: std::mem::take(&mut cur),
            });
            start = e.offset;
        }
        cur.push(*e);
    }
    units.push(Unit {
        file,
        seq: units.len(),
        start,
        end: f.index.frames_end,
        last: true,
        streamed,
        entries: cur,
    });
    units
}

/// The bytes of a unit: in memory, or arriving in chunks from a stream.
pub(super) enum UnitInput {
    /// `data` holds the file from offset `base`.
    Memory { data: Arc<Vec<u8>>, base: u64 },
    Stream {
        rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>>>,
        buf: Vec<u8>,
        /// File offset of `buf[0]`.
        buf_start: u64,
    },
}

impl UnitInput {
    /// Bytes `offset..offset+len` of the file (blocking on the stream).
    pub(super) fn get(&mut self, offset: u64, len: usize, key: &str) -> Result<&[u8]> {
        let truncated =
            || Error::corrupt(key, format!("truncated: no bytes at offset {offset}+{len}"));
        match self {
            UnitInput::Memory { data, base } => {
                let rel = offset.checked_sub(*base).ok_or_else(truncated)? as usize;
                data.get(rel..rel + len).ok_or_else(truncated)
            }
            UnitInput::Stream { rx, buf, buf_start } => {
                // Drop what was consumed, in large steps (amortized).
                if offset >= *buf_start + (1 << 20) {
                    let drop = ((offset - *buf_start) as usize).min(buf.len());
                    buf.drain(..drop);
                    *buf_start += drop as u64;
                }
                while (*buf_start + buf.len() as u64) < offset + len as u64 {
                    match rx.blocking_recv() {
                        Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                        Some(Err(e)) => return Err(e),
                        None => return Err(truncated()),
                    }
                }
                let rel = (offset - *buf_start) as usize;
                Ok(&buf[rel..rel + len])
            }
        }
    }
}
