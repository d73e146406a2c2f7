//! Restore (spec §4): plan the chain of LTX files for "latest", a TXID or a
//! timestamp, fetch them with range reads in parallel, verify every file's
//! checksum, and write the database to a temporary file that is fsynced and
//! renamed into place. Nothing is ever left at the output path unless the
//! whole restore succeeded.
//!
//! The merge writes each page once: page indexes (read from the files'
//! tails) tell which file holds the newest version of every page; all
//! frames of all files are still decoded, so every file checksum is
//! verified, as Litestream's compactor does.

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};

use crate::client::retry::{RetryPolicy, pump_range};
use crate::client::{FileInfo, ReadPattern, ReplicaClient, SNAPSHOT_LEVEL, list_all, read_range};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{self, AlignedBuf};
use crate::ltx::checksum::{RunningCrc, combine, shift_operator};
use crate::ltx::{
    HEADER_SIZE, Header, IndexEntry, PAGE_HEADER_SIZE, PageIndex, decode_frame, lock_pgno,
};
use crate::txid::TxId;

/// What to restore to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestoreTarget {
    /// The newest state in the replica.
    #[default]
    Latest,
    /// Exactly this TXID.
    TxId(TxId),
    /// The newest state whose files were created strictly before this time.
    Timestamp(jiff::Timestamp),
}

/// `-integrity-check` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IntegrityCheck {
    #[default]
    None,
    Quick,
    Full,
}

impl std::str::FromStr for IntegrityCheck {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(IntegrityCheck::None),
            "quick" => Ok(IntegrityCheck::Quick),
            "full" => Ok(IntegrityCheck::Full),
            _ => Err(Error::InvalidInput(format!(
                "integrity check {s:?}: expected none, quick or full"
            ))),
        }
    }
}

/// Restore settings.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub output: PathBuf,
    pub target: RestoreTarget,
    /// Replace an existing output file.
    pub overwrite: bool,
    pub integrity_check: IntegrityCheck,
    /// Range reads in flight at once.
    pub parallelism: usize,
}

impl RestoreOptions {
    /// Latest state to `output`, no overwrite, no integrity check.
    pub fn new(output: impl Into<PathBuf>) -> Self {
        RestoreOptions {
            output: output.into(),
            target: RestoreTarget::Latest,
            overwrite: false,
            integrity_check: IntegrityCheck::None,
            parallelism: 8,
        }
    }
}

/// The files a restore will read, in order.
#[derive(Debug, Clone)]
pub struct RestorePlan {
    pub files: Vec<FileInfo>,
    /// The TXID the restored database will be at.
    pub txid: TxId,
}

impl RestorePlan {
    /// Bytes to fetch.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreSummary {
    pub output: PathBuf,
    pub txid: TxId,
    pub files: usize,
    pub bytes_read: u64,
    pub page_size: u32,
    /// Database size in pages.
    pub pages: u32,
    pub elapsed: std::time::Duration,
}

/// Restore candidate order: highest max TXID, then lowest min, then higher
/// level, then older (Litestream's `restoreCandidateBetter`).
fn better(cur: &FileInfo, next: &FileInfo) -> bool {
    if next.max_txid != cur.max_txid {
        return next.max_txid > cur.max_txid;
    }
    if next.min_txid != cur.min_txid {
        return next.min_txid < cur.min_txid;
    }
    if next.level != cur.level {
        return next.level > cur.level;
    }
    next.created_at < cur.created_at
}

/// Plans the chain of files for `target` (spec §4, steps 1–3).
pub async fn plan_restore(
    client: &dyn ReplicaClient,
    target: RestoreTarget,
) -> Result<RestorePlan> {
    let use_metadata = matches!(target, RestoreTarget::Timestamp(_));
    let loc = client.location();
    let snapshots = list_all(client, SNAPSHOT_LEVEL, use_metadata).await?;
    let mut levels = Vec::new();
    for level in (0..SNAPSHOT_LEVEL).rev() {
        levels.push(list_all(client, level, use_metadata).await?);
    }
    plan_listed(&loc, snapshots, levels, target)
}

/// Plans a restore from files already listed (every level, as from
/// [`ReplicaClient::all_ltx_files`] or a listing of many replicas at once):
/// no request is made. `created_at` must be exact for
/// [`RestoreTarget::Timestamp`] (S3 listings give the upload time; use
/// [`plan_restore`] there).
pub fn plan_from_files(
    location: &str,
    files: Vec<FileInfo>,
    target: RestoreTarget,
) -> Result<RestorePlan> {
    let mut snapshots = Vec::new();
    let mut levels: Vec<Vec<FileInfo>> = vec![Vec::new(); SNAPSHOT_LEVEL as usize];
    for f in files {
        match f.level {
            SNAPSHOT_LEVEL => snapshots.push(f),
            // Highest level first, as plan_restore lists them.
            l if l < SNAPSHOT_LEVEL => levels[(SNAPSHOT_LEVEL - 1 - l) as usize].push(f),
            _ => {}
        }
    }
    for l in &mut levels {
        l.sort_by_key(|f| (f.min_txid, f.max_txid));
    }
    plan_listed(location, snapshots, levels, target)
}

/// Steps 1–3 of the plan over listed files: `levels` holds levels 8 down
/// to 0.
fn plan_listed(
    loc: &str,
    snapshots: Vec<FileInfo>,
    levels: Vec<Vec<FileInfo>>,
    target: RestoreTarget,
) -> Result<RestorePlan> {
    let fits = |f: &FileInfo| match target {
        RestoreTarget::Latest => true,
        RestoreTarget::TxId(t) => f.max_txid <= t,
        RestoreTarget::Timestamp(ts) => f.created_at < ts,
    };
    let mut files = Vec::new();
    if let Some(s) = snapshots.iter().filter(|f| fits(f)).max_by(|a, b| {
        a.max_txid
            .cmp(&b.max_txid)
            .then(a.created_at.cmp(&b.created_at))
    }) {
        files.push(s.clone());
    }
    let mut cur = files.last().map(|f| f.max_txid).unwrap_or(TxId::ZERO);
    let any_files = !snapshots.is_empty() || levels.iter().any(|l| !l.is_empty());
    if !any_files {
        return Err(Error::NotFound {
            what: format!("replica {loc}: no backup files"),
        });
    }
    let done = |cur: TxId| matches!(target, RestoreTarget::TxId(t) if cur >= t);
    while !done(cur) {
        let mut best: Option<&FileInfo> = None;
        for f in levels.iter().flatten() {
            if f.min_txid.0 <= cur.0 + 1
                && f.max_txid > cur
                && fits(f)
                && best.is_none_or(|b| better(b, f))
            {
                best = Some(f);
            }
        }
        let Some(b) = best else { break };
        cur = b.max_txid;
        files.push(b.clone());
    }
    if files.is_empty() {
        return Err(Error::TxNotAvailable {
            what: format!("replica {loc}: no snapshot or file starting at TXID 1 fits the target"),
        });
    }
    match target {
        RestoreTarget::TxId(t) if cur != t => {
            return Err(Error::TxNotAvailable {
                what: format!("replica {loc}: TXID {t} (files reach {cur})"),
            });
        }
        RestoreTarget::Latest => {
            if let Some(gap) = levels.iter().flatten().find(|f| f.min_txid.0 > cur.0 + 1) {
                return Err(Error::corrupt(
                    format!("replica {loc}"),
                    format!(
                        "TXID gap: files reach {cur} but level {} has {} starting at {}",
                        gap.level,
                        gap.file_name(),
                        gap.min_txid
                    ),
                ));
            }
        }
        _ => {}
    }
    Ok(RestorePlan { files, txid: cur })
}

/// Files at most this large are fetched whole in one request.
const WHOLE_FILE_BYTES: u64 = 1 << 20;
/// Frame bytes per range read of a large file.
const UNIT_BYTES: u64 = 4 << 20;
/// Target size of one stream when a backend prefers few long reads.
const SEGMENT_BYTES: u64 = 64 << 20;
/// At most this many parallel streams per file (as rclone's default): each
/// stream of an object store is a connection with its own throughput, and
/// every request has a cost.
const MAX_STREAMS_PER_FILE: usize = 4;
/// Largest single write of consecutive pages.
const RUN_BYTES: usize = 8 << 20;
/// Whole small files are kept in memory up to this total.
const MEMORY_BUDGET: u64 = 256 << 20;

struct PlannedFile {
    info: FileInfo,
    key: String,
    index: PageIndex,
    header_bytes: Vec<u8>,
    bytes: Option<Arc<Vec<u8>>>,
}

/// A contiguous run of page frames of one file.
#[derive(Clone)]
struct Unit {
    file: usize,
    seq: usize,
    start: u64,
    /// End of the frames; the last unit also checks the 6-byte terminator.
    end: u64,
    last: bool,
    /// Read as a stream (decoded as bytes arrive) rather than into memory.
    streamed: bool,
    entries: Vec<IndexEntry>,
}

fn key_of(client: &dyn ReplicaClient, f: &FileInfo) -> String {
    format!("{} level {} {}", client.location(), f.level, f.file_name())
}

async fn load_file(
    client: &dyn ReplicaClient,
    info: &FileInfo,
    keep_bytes: bool,
) -> Result<PlannedFile> {
    let key = key_of(client, info);
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
fn units_of(file: usize, f: &PlannedFile, pattern: ReadPattern, par: usize) -> Vec<Unit> {
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
enum UnitInput {
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
    fn get(&mut self, offset: u64, len: usize, key: &str) -> Result<&[u8]> {
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

/// Decodes one unit's frames from `data` (bytes `unit.start..` of the
/// file), writes the pages this file wins, and returns the CRC and length of
/// the bytes the file checksum covers.
fn decode_unit(
    unit: &Unit,
    input: &mut UnitInput,
    key: &str,
    page_size: u32,
    winners: &[u32],
    out: &OutFile,
) -> Result<(u64, u64)> {
    let ps = page_size as usize;
    let mut scratch = vec![0u8; ps];
    // Consecutive winning pages are decoded straight into one (aligned)
    // buffer and written with one call: per-page writes contend on the
    // file's lock, and aligned runs can bypass the page cache.
    let mut run = AlignedBuf::new(RUN_BYTES.min(unit.entries.len() * ps).max(ps));
    let mut run_start = 0u32;
    let flush = |run: &mut AlignedBuf, start: u32| -> Result<()> {
        if !run.is_empty() {
            out.write_at(run.as_slice(), u64::from(start - 1) * u64::from(page_size))?;
            run.clear();
        }
        Ok(())
    };
    let mut crc = 0u64;
    let mut len = 0u64;
    let mut op_cache = (0u64, 0u64);
    for e in &unit.entries {
        let frame = input.get(e.offset, e.size as usize, key)?;
        let wins = winners.get(e.pgno as usize).copied() == Some(unit.file as u32 + 1);
        let (pgno, seg_crc, seg_len) = if wins {
            let contiguous = !run.is_empty()
                && e.pgno == run_start + (run.len() / ps) as u32
                && run.len() + ps <= run.capacity();
            if !contiguous {
                flush(&mut run, run_start)?;
                run_start = e.pgno;
            }
            decode_frame(frame, run.extend(ps), key)?
        } else {
            decode_frame(frame, &mut scratch, key)?
        };
        if pgno != e.pgno {
            return Err(Error::corrupt(
                key,
                format!(
                    "page index says page {} at offset {}, the frame holds page {pgno}",
                    e.pgno, e.offset
                ),
            ));
        }
        if op_cache.0 != seg_len {
            op_cache = (seg_len, shift_operator(seg_len));
        }
        crc = crate::ltx::checksum::combine_with(crc, seg_crc, op_cache.1);
        len += seg_len;
    }
    flush(&mut run, run_start)?;
    if unit.last {
        let term = input.get(unit.end, PAGE_HEADER_SIZE, key)?;
        if term != [0u8; PAGE_HEADER_SIZE] {
            return Err(Error::corrupt(key, "missing page frame terminator"));
        }
    }
    Ok((crc, len))
}

/// The restore's output file: `O_DIRECT` for large databases whose pages
/// are aligned, with a page-cache handle as fallback if a direct write is
/// refused.
struct OutFile {
    file: File,
    direct: bool,
    fallback: std::sync::OnceLock<std::io::Result<File>>,
    path: PathBuf,
}

impl OutFile {
    fn create(path: &Path, size: u64, page_size: u32) -> Result<OutFile> {
        let want_direct =
            size >= fsutil::DIRECT_MIN_BYTES && page_size as usize % fsutil::DIRECT_ALIGN == 0;
        let (file, direct) = fsutil::create_for_write(path, want_direct)?;
        file.set_len(size)
            .ctx(|| format!("size {}", path.display()))?;
        Ok(OutFile {
            file,
            direct,
            fallback: std::sync::OnceLock::new(),
            path: path.to_path_buf(),
        })
    }

    fn write_at(&self, data: &[u8], offset: u64) -> Result<()> {
        let name = || format!("write {}", self.path.display());
        if let Some(Ok(f)) = self.fallback.get() {
            return f.write_all_at(data, offset).ctx(name);
        }
        match self.file.write_all_at(data, offset) {
            Ok(()) => Ok(()),
            Err(e) if self.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                let f = self
                    .fallback
                    .get_or_init(|| fs::OpenOptions::new().write(true).open(&self.path))
                    .as_ref()
                    .map_err(|e| {
                        Error::io(
                            format!("open {}", self.path.display()),
                            std::io::Error::new(e.kind(), e.to_string()),
                        )
                    })?;
                f.write_all_at(data, offset).ctx(name)
            }
            Err(e) => Err(Error::io(name(), e)),
        }
    }

    fn sync(self) -> Result<()> {
        if let Some(Ok(f)) = self.fallback.get() {
            f.sync_all()
                .ctx(|| format!("fsync {}", self.path.display()))?;
        }
        self.file
            .sync_all()
            .ctx(|| format!("fsync {}", self.path.display()))
    }
}

/// Restores `client`'s database to `opts.output`.
pub async fn restore(
    client: Arc<dyn ReplicaClient>,
    opts: &RestoreOptions,
) -> Result<RestoreSummary> {
    restore_with_plan(client, opts, None).await
}

/// [`restore`] starting from a plan already made for `opts.target` (the
/// replica is listed again only if a planned file has disappeared).
pub async fn restore_with_plan(
    client: Arc<dyn ReplicaClient>,
    opts: &RestoreOptions,
    mut plan: Option<RestorePlan>,
) -> Result<RestoreSummary> {
    let started = Instant::now();
    let out_path = opts.output.clone();
    let out_name = out_path.display().to_string();
    if !opts.overwrite && fs::symlink_metadata(&out_path).is_ok() {
        return Err(Error::InvalidInput(format!(
            "cannot restore: output path already exists: {out_name} (use -force to replace it)"
        )));
    }
    // Retention may delete a planned file while the restore runs (a newer
    // file then covers it): plan again.
    let mut attempt = 0;
    loop {
        let plan = match plan.take() {
            Some(p) => p,
            None => plan_restore(client.as_ref(), opts.target).await?,
        };
        match restore_plan(client.clone(), opts, &plan, started).await {
            Err(e) if e.is_not_found() && attempt < 3 => {
                attempt += 1;
                tracing::warn!(error = %e, "a planned file disappeared (retention); planning again");
            }
            r => return r,
        }
    }
}

async fn restore_plan(
    client: Arc<dyn ReplicaClient>,
    opts: &RestoreOptions,
    plan: &RestorePlan,
    started: Instant,
) -> Result<RestoreSummary> {
    let out_path = opts.output.clone();
    let par = opts.parallelism.max(1);

    // Headers and page indexes of every file.
    let mut budget = MEMORY_BUDGET;
    let keeps: Vec<bool> = plan
        .files
        .iter()
        .map(|f| {
            let keep = f.size <= WHOLE_FILE_BYTES && f.size <= budget;
            if keep {
                budget -= f.size;
            }
            keep
        })
        .collect();
    // Owned inputs: a future that borrows from the iterator would not be
    // `Send` for every lifetime, and callers spawn restores.
    let files: Vec<PlannedFile> = futures::stream::iter(plan.files.clone().into_iter().zip(keeps))
        .map(|(f, keep)| {
            let c = client.clone();
            async move { load_file(c.as_ref(), &f, keep).await }
        })
        .buffered(par)
        .try_collect()
        .await?;

    let last = &files[files.len() - 1].index.header;
    let (page_size, commit) = (last.page_size, last.commit);
    for f in &files {
        if f.index.header.page_size != page_size {
            return Err(Error::corrupt(
                f.key.clone(),
                format!(
                    "page size {} differs from the restore's {page_size}",
                    f.index.header.page_size
                ),
            ));
        }
    }
    if !files[0].index.header.is_snapshot() {
        return Err(Error::corrupt(
            files[0].key.clone(),
            "the restore chain does not start with a snapshot",
        ));
    }
    // The newest file holding each page wins.
    let mut winners = vec![0u32; commit as usize + 1];
    for (i, f) in files.iter().enumerate() {
        for e in &f.index.entries {
            if e.pgno <= commit {
                winners[e.pgno as usize] = i as u32 + 1;
            }
        }
    }
    let lock = lock_pgno(page_size);
    if let Some(p) = (1..=commit).find(|&p| p != lock && winners[p as usize] == 0) {
        return Err(Error::corrupt(
            format!("replica {}", client.location()),
            format!("no file in the restore chain holds page {p}"),
        ));
    }

    if let Some(parent) = out_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fsutil::create_dir_all(parent)?;
    }
    let tmp = fsutil::tmp_path(&out_path);
    let result = write_database(
        client.clone(),
        &files,
        &winners,
        page_size,
        commit,
        &tmp,
        par,
        opts,
        &out_path,
    )
    .await;
    if result.is_err() {
        let _ = fs::remove_file(&tmp); // never leave a partial output; the error says why
        remove_sidecars(&tmp);
    }
    result?;
    Ok(RestoreSummary {
        output: out_path,
        txid: plan.txid,
        files: files.len(),
        bytes_read: plan.total_bytes(),
        page_size,
        pages: commit,
        elapsed: started.elapsed(),
    })
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

fn remove_sidecars(path: &Path) {
    for suffix in ["-wal", "-shm"] {
        let _ = fs::remove_file(sidecar(path, suffix)); // may not exist
    }
}

#[allow(clippy::too_many_arguments)]
async fn write_database(
    client: Arc<dyn ReplicaClient>,
    files: &[PlannedFile],
    winners: &[u32],
    page_size: u32,
    commit: u32,
    tmp: &Path,
    par: usize,
    opts: &RestoreOptions,
    out_path: &Path,
) -> Result<()> {
    let tmp_name = tmp.display().to_string();
    let out = Arc::new(OutFile::create(
        tmp,
        u64::from(commit) * u64::from(page_size),
        page_size,
    )?);
    let winners: Arc<Vec<u32>> = Arc::new(winners.to_vec());
    let pattern = client.read_pattern();
    let units: Vec<Unit> = files
        .iter()
        .enumerate()
        .flat_map(|(i, f)| units_of(i, f, pattern, par))
        .collect();
    let keys: Arc<Vec<String>> = Arc::new(files.iter().map(|f| f.key.clone()).collect());
    let results: Vec<(usize, usize, u64, u64)> = futures::stream::iter(units)
        .map(|u| {
            let client = client.clone();
            let info = files[u.file].info.clone();
            let mem = files[u.file].bytes.clone();
            let (out, winners, keys) = (out.clone(), winners.clone(), keys.clone());
            async move {
                let fetch_end = if u.last {
                    u.end + PAGE_HEADER_SIZE as u64
                } else {
                    u.end
                };
                let mut input = match mem {
                    Some(data) => UnitInput::Memory { data, base: 0 },
                    None if u.streamed => {
                        let (tx, rx) = tokio::sync::mpsc::channel(16);
                        let (c, i, start) = (client.clone(), info.clone(), u.start);
                        tokio::spawn(async move {
                            pump_range(
                                c.as_ref(),
                                &i,
                                start,
                                fetch_end,
                                RetryPolicy::default(),
                                tx,
                            )
                            .await;
                        });
                        UnitInput::Stream {
                            rx,
                            buf: Vec::new(),
                            buf_start: u.start,
                        }
                    }
                    None => UnitInput::Memory {
                        data: Arc::new(
                            read_range(client.as_ref(), &info, u.start, fetch_end - u.start)
                                .await?,
                        ),
                        base: u.start,
                    },
                };
                tokio::task::spawn_blocking(move || {
                    decode_unit(&u, &mut input, &keys[u.file], page_size, &winners, &out)
                        .map(|(c, l)| (u.file, u.seq, c, l))
                })
                .await
                .map_err(|e| Error::io("restore worker", std::io::Error::other(e.to_string())))?
            }
        })
        .buffer_unordered(par)
        .try_collect()
        .await?;

    // Assemble and check each file's checksum from its parts.
    let mut parts: HashMap<usize, Vec<(usize, u64, u64)>> = HashMap::new();
    for (file, seq, crc, len) in results {
        parts.entry(file).or_default().push((seq, crc, len));
    }
    for (i, f) in files.iter().enumerate() {
        let mut p = parts.remove(&i).unwrap_or_default();
        p.sort_by_key(|x| x.0);
        let mut crc = RunningCrc::default();
        crc.update(&f.header_bytes);
        let mut total = crc.value();
        for (_, c, l) in p {
            total = combine(total, c, l);
        }
        let tail = f.index.tail_crc();
        let tail_len = (PAGE_HEADER_SIZE + f.index.index_bytes.len() + 8) as u64;
        total = combine(total, tail.value(), tail_len);
        f.index.check_file_checksum(total, &f.key)?;
    }

    let out = Arc::try_unwrap(out).map_err(|_| {
        Error::io(
            format!("close {tmp_name}"),
            std::io::Error::other("still shared"),
        )
    })?;
    out.sync()?;
    if opts.integrity_check != IntegrityCheck::None {
        check_integrity(tmp, opts.integrity_check)?;
    }
    if opts.overwrite {
        // A stale WAL next to the old database would be applied to the new one.
        for suffix in ["-wal", "-shm"] {
            let p = sidecar(out_path, suffix);
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("remove {}", p.display()), e)),
            }
        }
    }
    fs::rename(tmp, out_path).ctx(|| format!("rename {tmp_name} to {}", out_path.display()))?;
    fsutil::fsync_dir(
        out_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )
}

/// Runs `PRAGMA quick_check` or `integrity_check` on a restored file.
pub fn check_integrity(path: &Path, mode: IntegrityCheck) -> Result<()> {
    let pragma = match mode {
        IntegrityCheck::None => return Ok(()),
        IntegrityCheck::Quick => "quick_check",
        IntegrityCheck::Full => "integrity_check",
    };
    let name = path.display().to_string();
    let r = (|| {
        let conn = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE,
        )
        .map_err(|e| Error::sqlite(format!("open {name} for {pragma}"), e))?;
        let rows: Vec<String> = {
            let mut st = conn
                .prepare(&format!("PRAGMA {pragma}"))
                .map_err(|e| Error::sqlite(format!("{name}: {pragma}"), e))?;
            st.query_map([], |r| r.get::<_, String>(0))
                .and_then(|m| m.collect())
                .map_err(|e| Error::sqlite(format!("{name}: {pragma}"), e))?
        };
        drop(conn);
        if rows != ["ok"] {
            return Err(Error::corrupt(
                name.clone(),
                format!("{pragma} failed: {}", rows.join("; ")),
            ));
        }
        Ok(())
    })();
    remove_sidecars(path);
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Restores can be spawned (fleet restores and embedding applications
    /// run them on tokio tasks).
    #[test]
    fn restore_futures_are_send() {
        fn assert_send<T: Send>(_: &T) {}
        let client: Arc<dyn ReplicaClient> =
            Arc::new(crate::client::file::FileReplicaClient::new("/nonexistent"));
        let opts = RestoreOptions::new("/nonexistent/out.db");
        let f = restore_with_plan(client.clone(), &opts, None);
        assert_send(&f);
        let p = plan_restore(client.as_ref(), RestoreTarget::Latest);
        assert_send(&p);
    }

    #[test]
    fn plans_from_listed_files() {
        let f = |level, min, max| FileInfo {
            level,
            min_txid: TxId(min),
            max_txid: TxId(max),
            size: 100,
            created_at: jiff::Timestamp::UNIX_EPOCH,
        };
        let files = vec![f(0, 4, 4), f(9, 1, 3), f(0, 5, 5), f(1, 1, 2), f(0, 3, 3)];
        let p = plan_from_files("r", files.clone(), RestoreTarget::Latest).unwrap();
        let got: Vec<(u32, u64)> = p.files.iter().map(|f| (f.level, f.max_txid.0)).collect();
        assert_eq!(got, [(9, 3), (0, 4), (0, 5)]);
        assert_eq!(p.txid, TxId(5));
        let p = plan_from_files("r", files, RestoreTarget::TxId(TxId(4))).unwrap();
        assert_eq!(p.txid, TxId(4));
        let e = plan_from_files("r", vec![f(0, 2, 2)], RestoreTarget::Latest).unwrap_err();
        assert!(matches!(e, Error::TxNotAvailable { .. }), "{e}");
        let e = plan_from_files("r", vec![], RestoreTarget::Latest).unwrap_err();
        assert!(e.is_not_found(), "{e}");
    }
}
