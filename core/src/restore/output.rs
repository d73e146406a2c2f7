//! Writing the restored database: each page once, from the newest file
//! holding it, into a temporary file (`O_DIRECT` where it can be) that is
//! checked, fsynced, renamed into place and its directory fsynced.

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};

use crate::client::retry::pump_range;
use crate::client::{ReplicaClient, read_range};
use crate::dbfile;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{self, AlignedBuf};
use crate::ltx::checksum::{RunningCrc, combine, shift_operator};
use crate::ltx::{PAGE_HEADER_SIZE, decode_frame};

use super::fetch::{PlannedFile, RUN_BYTES, Unit, UnitInput, units_of};
use super::{IntegrityCheck, RestoreOptions, check_integrity};

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
        let want_direct = size >= fsutil::DIRECT_MIN_BYTES
            && (page_size as usize).is_multiple_of(fsutil::DIRECT_ALIGN);
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

#[allow(clippy::too_many_arguments)]
pub(super) async fn write_database(
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
                            pump_range(c.as_ref(), &i, start, fetch_end, tx).await;
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
        dbfile::remove_side_files(out_path)?;
    }
    fs::rename(tmp, out_path).ctx(|| format!("rename {tmp_name} to {}", out_path.display()))?;
    fsutil::fsync_dir(
        out_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )
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
