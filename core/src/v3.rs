//! Restore from Litestream 0.3 replicas, as Litestream 0.5 does, so users
//! of the old format can migrate: `generations/<16 hex>/snapshots/
//! <index>.snapshot.lz4` (the database file, LZ4-framed) and
//! `generations/<16 hex>/wal/<index>_<offset>.wal.lz4` (WAL bytes of WAL
//! file `index` starting at `offset`, LZ4-framed).
//!
//! A restore takes the chosen snapshot, rebuilds each following WAL file
//! from its segments (which must be contiguous) and lets SQLite recover and
//! checkpoint it, so SQLite's own checksums decide what was committed. Like
//! every restore it writes to `<out>.tmp` and renames only on success.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio::io::AsyncWriteExt;

use crate::client::{RawEntry, ReplicaClient};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::restore::{RestoreOptions, RestoreSummary, check_integrity};
use crate::txid::TxId;

/// What to restore from a 0.3 replica.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V3Target {
    /// Restrict to this generation (default: the one of the chosen
    /// snapshot).
    pub generation: Option<String>,
    /// Apply WAL files up to this index, inclusive (needs `generation`).
    pub index: Option<u32>,
    /// The state at this time: the newest snapshot and WAL segments
    /// created at or before it.
    pub timestamp: Option<jiff::Timestamp>,
}

/// A snapshot or WAL segment of a 0.3 replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V3File {
    pub generation: String,
    pub index: u32,
    /// Byte offset in the WAL file (0 for snapshots).
    pub offset: u64,
    pub size: u64,
    pub created_at: jiff::Timestamp,
}

/// The files a 0.3 restore reads.
#[derive(Debug, Clone)]
pub struct V3Plan {
    pub snapshot: V3File,
    pub segments: Vec<V3File>,
}

fn is_generation(s: &str) -> bool {
    s.len() == 16
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn parse_hex(s: &str) -> Option<u64> {
    (!s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(s, 16).ok())
        .flatten()
}

fn snapshot_of(generation: &str, e: &RawEntry) -> Option<V3File> {
    let idx = e.name.strip_suffix(".snapshot.lz4")?;
    (idx.len() == 8).then_some(())?;
    Some(V3File {
        generation: generation.to_string(),
        index: u32::try_from(parse_hex(idx)?).ok()?,
        offset: 0,
        size: e.size,
        created_at: e.modified,
    })
}

fn segment_of(generation: &str, e: &RawEntry) -> Option<V3File> {
    let stem = e.name.strip_suffix(".wal.lz4")?;
    let (idx, off) = stem.split_once('_')?;
    (idx.len() == 8 && off.len() >= 8).then_some(())?;
    Some(V3File {
        generation: generation.to_string(),
        index: u32::try_from(parse_hex(idx)?).ok()?,
        offset: parse_hex(off)?,
        size: e.size,
        created_at: e.modified,
    })
}

/// The replica's 0.3 generations, ascending.
pub async fn generations(client: &dyn ReplicaClient) -> Result<Vec<String>> {
    Ok(client
        .list_raw("generations")
        .await?
        .into_iter()
        .filter(|e| e.is_dir && is_generation(&e.name))
        .map(|e| e.name)
        .collect())
}

async fn snapshots(client: &dyn ReplicaClient, generation: &str) -> Result<Vec<V3File>> {
    let mut v: Vec<V3File> = client
        .list_raw(&format!("generations/{generation}/snapshots"))
        .await?
        .iter()
        .filter_map(|e| snapshot_of(generation, e))
        .collect();
    v.sort_by_key(|f| f.index);
    Ok(v)
}

async fn segments(client: &dyn ReplicaClient, generation: &str) -> Result<Vec<V3File>> {
    let mut v: Vec<V3File> = client
        .list_raw(&format!("generations/{generation}/wal"))
        .await?
        .iter()
        .filter_map(|e| segment_of(generation, e))
        .collect();
    v.sort_by_key(|f| (f.index, f.offset));
    Ok(v)
}

/// Chooses the snapshot and WAL segments for `target`.
pub async fn plan(client: &dyn ReplicaClient, target: &V3Target) -> Result<V3Plan> {
    let loc = client.location();
    if target.index.is_some() && target.generation.is_none() {
        return Err(Error::InvalidInput(
            "-index needs -generation (a Litestream 0.3 WAL index is per generation)".into(),
        ));
    }
    let gens = match &target.generation {
        Some(g) => {
            if !is_generation(g) {
                return Err(Error::InvalidInput(format!(
                    "-generation {g:?}: expected 16 lowercase hex digits"
                )));
            }
            vec![g.clone()]
        }
        None => generations(client).await?,
    };
    let mut all = Vec::new();
    for g in &gens {
        all.extend(snapshots(client, g).await?);
    }
    if all.is_empty() {
        return Err(Error::NotFound {
            what: format!("replica {loc}: no Litestream 0.3 snapshots"),
        });
    }
    all.sort_by_key(|f| (f.created_at, f.index));
    let snapshot = all
        .iter()
        .rev()
        .find(|s| {
            target.timestamp.is_none_or(|t| s.created_at <= t)
                && target.index.is_none_or(|i| s.index <= i)
        })
        .cloned()
        .ok_or_else(|| Error::TxNotAvailable {
            what: format!("replica {loc}: no Litestream 0.3 snapshot fits the target"),
        })?;
    let segs: Vec<V3File> = segments(client, &snapshot.generation)
        .await?
        .into_iter()
        .filter(|s| {
            s.index >= snapshot.index
                && target.timestamp.is_none_or(|t| s.created_at <= t)
                && target.index.is_none_or(|i| s.index <= i)
        })
        .collect();
    // WAL files must follow one another from the snapshot's index, each
    // starting at offset 0; offsets within a file are checked while
    // applying (they count uncompressed bytes).
    let mut next_index = snapshot.index;
    for s in &segs {
        let ok = if s.offset == 0 {
            s.index == next_index
        } else {
            s.index + 1 == next_index
        };
        if !ok {
            return Err(Error::corrupt(
                format!("replica {loc} generation {}", snapshot.generation),
                format!(
                    "missing WAL data before {:08x}_{:08x} (expected WAL index {next_index:08x})",
                    s.index, s.offset
                ),
            ));
        }
        if s.offset == 0 {
            next_index += 1;
        }
    }
    if let Some(i) = target.index
        && i >= snapshot.index
        && !segs.iter().any(|s| s.index == i)
        && i != snapshot.index
    {
        return Err(Error::TxNotAvailable {
            what: format!(
                "replica {loc} generation {}: WAL index {i:08x}",
                snapshot.generation
            ),
        });
    }
    Ok(V3Plan {
        snapshot,
        segments: segs,
    })
}

fn snapshot_path(f: &V3File) -> String {
    format!(
        "generations/{}/snapshots/{:08x}.snapshot.lz4",
        f.generation, f.index
    )
}

fn segment_path(f: &V3File) -> String {
    format!(
        "generations/{}/wal/{:08x}_{:08x}.wal.lz4",
        f.generation, f.index, f.offset
    )
}

/// Downloads `path` to a local file.
async fn download(client: &dyn ReplicaClient, path: &str, dst: &Path) -> Result<()> {
    let mut r = client.open_raw(path).await?;
    let mut f = tokio::fs::File::create(dst)
        .await
        .map_err(|e| Error::io(format!("create {}", dst.display()), e))?;
    tokio::io::copy(&mut r, &mut f)
        .await
        .map_err(|e| Error::io(format!("read {} {path}", client.location()), e))?;
    f.flush()
        .await
        .map_err(|e| Error::io(format!("write {}", dst.display()), e))
}

/// Decompresses an LZ4 frame file, appending to `out`; returns the bytes
/// written.
fn unlz4(src: &Path, name: &str, out: &mut fs::File) -> Result<u64> {
    let f = fs::File::open(src).ctx(|| format!("open {}", src.display()))?;
    let mut dec = lz4_flex::frame::FrameDecoder::new(std::io::BufReader::new(f));
    std::io::copy(&mut dec, out).map_err(|e| {
        if e.kind() == std::io::ErrorKind::InvalidData
            || e.kind() == std::io::ErrorKind::UnexpectedEof
        {
            Error::corrupt(name, format!("bad LZ4 frame: {e}"))
        } else {
            Error::io(format!("decompress {name}"), e)
        }
    })
}

/// Restores a 0.3 replica to `opts.output` (the target in `opts` is
/// ignored; `target` says what to restore).
pub async fn restore(
    client: Arc<dyn ReplicaClient>,
    opts: &RestoreOptions,
    target: &V3Target,
) -> Result<RestoreSummary> {
    let started = Instant::now();
    let out = opts.output.clone();
    let out_name = out.display().to_string();
    if !opts.overwrite && fs::symlink_metadata(&out).is_ok() {
        return Err(Error::InvalidInput(format!(
            "cannot restore: output path already exists: {out_name} (use -force to replace it)"
        )));
    }
    let plan = plan(client.as_ref(), target).await?;
    let loc = client.location();
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        fsutil::create_dir_all(parent)?;
    }
    let tmp = fsutil::tmp_path(&out);
    let scratch = PathBuf::from(format!("{}.v3-download", tmp.display()));
    let wal = PathBuf::from(format!("{}-wal", tmp.display()));
    let shm = PathBuf::from(format!("{}-shm", tmp.display()));
    let cleanup = || {
        for p in [&tmp, &scratch, &wal, &shm] {
            let _ = fs::remove_file(p); // scratch files; absence is fine
        }
    };
    cleanup();
    let result = async {
        let mut bytes_read = plan.snapshot.size;
        download(client.as_ref(), &snapshot_path(&plan.snapshot), &scratch).await?;
        let name = format!("{loc} {}", snapshot_path(&plan.snapshot));
        let (s2, t2, n2) = (scratch.clone(), tmp.clone(), name.clone());
        tokio::task::spawn_blocking(move || {
            let mut f = fs::File::create(&t2).ctx(|| format!("create {}", t2.display()))?;
            unlz4(&s2, &n2, &mut f)?;
            f.sync_all().ctx(|| format!("fsync {}", t2.display()))
        })
        .await
        .map_err(|e| Error::io("restore task", std::io::Error::other(e.to_string())))??;
        crate::dbfile::check_sqlite_header(&tmp)
            .map_err(|e| Error::corrupt(name.clone(), format!("not a database snapshot: {e}")))?;
        // One WAL file at a time: rebuild it from its segments, then let
        // SQLite recover and checkpoint it into the database.
        let mut i = 0;
        while i < plan.segments.len() {
            let index = plan.segments[i].index;
            let mut wal_file = fs::File::create(&wal).ctx(|| format!("create {}", wal.display()))?;
            let mut size = 0u64;
            while i < plan.segments.len() && plan.segments[i].index == index {
                let s = &plan.segments[i];
                let name = format!("{loc} {}", segment_path(s));
                if s.offset != size {
                    return Err(Error::corrupt(
                        format!("replica {loc} generation {}", s.generation),
                        format!(
                            "WAL {index:08x}: segment at offset {} but the segments before end at {size}",
                            s.offset
                        ),
                    ));
                }
                download(client.as_ref(), &segment_path(s), &scratch).await?;
                size += unlz4(&scratch, &name, &mut wal_file)?;
                bytes_read += s.size;
                i += 1;
            }
            wal_file
                .sync_all()
                .ctx(|| format!("fsync {}", wal.display()))?;
            drop(wal_file);
            let t2 = tmp.clone();
            tokio::task::spawn_blocking(move || checkpoint(&t2, index))
                .await
                .map_err(|e| Error::io("restore task", std::io::Error::other(e.to_string())))??;
        }
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&tmp)
            .ctx(|| format!("open {}", tmp.display()))?;
        f.sync_all().ctx(|| format!("fsync {}", tmp.display()))?;
        let len = f.metadata().ctx(|| format!("stat {}", tmp.display()))?.len();
        drop(f);
        check_integrity(&tmp, opts.integrity_check)?;
        Ok::<_, Error>((bytes_read, len))
    }
    .await;
    let _ = fs::remove_file(&scratch); // scratch download
    let (bytes_read, len) = match result {
        Ok(v) => v,
        Err(e) => {
            cleanup();
            return Err(e);
        }
    };
    for p in [&wal, &shm] {
        let _ = fs::remove_file(p); // emptied by the TRUNCATE checkpoint
    }
    if opts.overwrite {
        // Stale files of the replaced database; best effort, as before.
        let _ = crate::dbfile::remove_side_files(&out);
    }
    fs::rename(&tmp, &out).ctx(|| format!("rename {} to {out_name}", tmp.display()))?;
    fsutil::fsync_dir(
        out.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )?;
    let page_size = read_page_size(&out).unwrap_or(4096);
    Ok(RestoreSummary {
        output: out,
        txid: TxId(0),
        files: 1 + plan.segments.len(),
        bytes_read,
        page_size,
        pages: (len / u64::from(page_size.max(512))) as u32,
        elapsed: started.elapsed(),
    })
}

fn read_page_size(p: &Path) -> Option<u32> {
    use std::os::unix::fs::FileExt;
    let f = fs::File::open(p).ok()?;
    let mut b = [0u8; 2];
    f.read_exact_at(&mut b, 16).ok()?;
    let v = u32::from(u16::from_be_bytes(b));
    Some(if v == 1 { 65536 } else { v })
}

/// Recovers the WAL next to `db` and checkpoints it (TRUNCATE).
fn checkpoint(db: &Path, index: u32) -> Result<()> {
    let name = db.display().to_string();
    let conn =
        rusqlite::Connection::open(db).map_err(|e| Error::sqlite(format!("open {name}"), e))?;
    let (busy, log, done): (i64, i64, i64) = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .map_err(|e| Error::sqlite(format!("{name}: apply WAL {index:08x}"), e))?;
    if busy != 0 || log != done {
        return Err(Error::io(
            format!("{name}: apply WAL {index:08x}"),
            std::io::Error::other(format!("checkpoint incomplete ({done} of {log} frames)")),
        ));
    }
    conn.close()
        .map_err(|(_, e)| Error::sqlite(format!("close {name}"), e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn e(name: &str) -> RawEntry {
        RawEntry {
            name: name.into(),
            is_dir: false,
            size: 7,
            modified: jiff::Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn names() {
        assert!(is_generation("0123456789abcdef"));
        assert!(!is_generation("0123456789ABCDEF") && !is_generation("0123"));
        assert_eq!(
            snapshot_of("g", &e("0000000a.snapshot.lz4")).unwrap().index,
            10
        );
        assert!(snapshot_of("g", &e("a.snapshot.lz4")).is_none());
        let s = segment_of("g", &e("00000002_00001020.wal.lz4")).unwrap();
        assert_eq!((s.index, s.offset), (2, 0x1020));
        assert!(segment_of("g", &e("00000002.wal.lz4")).is_none());
        assert!(segment_of("g", &e("00000002_zz.wal.lz4")).is_none());
    }
}
