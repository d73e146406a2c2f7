//! Unshipped history: the local L0 files a replica lacks, and the bound on
//! them while the replica cannot be reached.
//!
//! A sync writes an L0 file whether or not the upload that follows works,
//! so an unreachable replica would let a busy database's meta directory
//! grow without end. Instead, once the unshipped files pass
//! [`MERGE_AFTER_FILES`] or their bytes pass twice the database's size
//! ([`MERGE_FLOOR_BYTES`] at least), they are merged locally into one L0
//! file (the newest version of each page wins), which is never larger than
//! the database itself. So the unshipped history on disk stays below
//! `max(2 × database size, MERGE_FLOOR_BYTES)` plus two syncs' files, and
//! when the replica returns it receives a few files in TXID order instead
//! of one per sync.
//!
//! Invariants:
//! - The first unshipped file is never merged: it is the one an upload
//!   may have sent before its answer was lost, and sending it again under
//!   the same name must stay harmless. Uploads go one file at a time in
//!   TXID order, so no later file can have reached the replica.
//! - The merged file is committed (temp, fsync, rename, fsync dir) before
//!   its inputs are removed; a crash in between leaves files the merged
//!   one covers, which the upload passes over and the next merge removes.
//! - The merged file ends where the last input ends, WAL range included,
//!   so the database's position does not move.

use std::path::PathBuf;

use crate::compact::{Merged, merge_l0_files};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::meta_dir::MetaDir;
use crate::txid::TxId;

/// Unshipped files past this count are merged.
pub const MERGE_AFTER_FILES: usize = 32;
/// Unshipped bytes below this are never merged for their size alone.
pub const MERGE_FLOOR_BYTES: u64 = 1 << 20;
/// At most this many files go into one merge (each is an open file); a
/// longer run is merged over several syncs.
const MERGE_INPUTS: usize = 256;

/// The local L0 files above a replica position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unshipped {
    pub files: u64,
    pub bytes: u64,
}

/// One local L0 file.
#[derive(Debug, Clone, Copy)]
struct L0 {
    min: TxId,
    max: TxId,
    bytes: u64,
}

/// The chain of local L0 files that continues `above` (each file the one
/// reaching furthest, as the upload picks them), and the files it makes
/// redundant (covered by a merged file a crash left beside its inputs).
fn chain(meta: &MetaDir, above: TxId) -> Result<(Vec<L0>, Vec<L0>)> {
    let mut files = Vec::new();
    for (min, max) in meta.l0_files()? {
        if max <= above {
            continue;
        }
        let p = meta.l0_path(min, max);
        let bytes = match std::fs::metadata(&p) {
            Ok(m) => m.len(),
            // Pruned or merged meanwhile: not ours to count.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("stat {}", p.display()), e)),
        };
        files.push(L0 { min, max, bytes });
    }
    let mut chain: Vec<L0> = Vec::new();
    let mut cur = above;
    while let Some(next) = files
        .iter()
        .filter(|f| f.min.0 <= cur.0 + 1 && f.max > cur)
        .max_by_key(|f| f.max)
        .copied()
    {
        cur = next.max;
        chain.push(next);
    }
    let redundant = files
        .into_iter()
        .filter(|f| f.max <= cur && !chain.iter().any(|c| (c.min, c.max) == (f.min, f.max)))
        .collect();
    Ok((chain, redundant))
}

/// What the replica at `above` lacks of the local L0 files.
pub fn measure(meta: &MetaDir, above: TxId) -> Result<Unshipped> {
    let (chain, _) = chain(meta, above)?;
    Ok(Unshipped {
        files: chain.len() as u64,
        bytes: chain.iter().map(|f| f.bytes).sum(),
    })
}

/// Merges the unshipped files above `above` (all but the first) into one
/// when they pass the bound for a database of `db_bytes`; returns what is
/// unshipped afterwards and the merge, if one was made.
pub fn bound(meta: &MetaDir, above: TxId, db_bytes: u64) -> Result<(Unshipped, Option<Merged>)> {
    let (chain, redundant) = chain(meta, above)?;
    let total: u64 = chain.iter().map(|f| f.bytes).sum();
    let limit = (2 * db_bytes).max(MERGE_FLOOR_BYTES);
    let unshipped = Unshipped {
        files: chain.len() as u64,
        bytes: total,
    };
    // The first stays as it is (see the module's invariants).
    let mergeable = chain.get(1..).unwrap_or_default();
    let mergeable = &mergeable[..mergeable.len().min(MERGE_INPUTS)];
    let over = mergeable.len() > MERGE_AFTER_FILES || total > limit;
    if mergeable.len() < 2 || !over {
        remove(meta, &redundant)?;
        return Ok((unshipped, None));
    }
    let (first, last) = (mergeable[0], mergeable[mergeable.len() - 1]);
    let inputs: Vec<PathBuf> = mergeable
        .iter()
        .map(|f| meta.l0_path(f.min, f.max))
        .collect();
    let out = meta.l0_path(first.min, last.max);
    let merged = merge_l0_files(&inputs, &out)?;
    crate::crashpoint::here("l0-merged");
    let mut gone = redundant;
    gone.extend_from_slice(mergeable);
    remove(meta, &gone)?;
    let rest = &chain[1 + mergeable.len()..];
    Ok((
        Unshipped {
            files: 2 + rest.len() as u64,
            bytes: chain[0].bytes + merged.size + rest.iter().map(|f| f.bytes).sum::<u64>(),
        },
        Some(merged),
    ))
}

/// Removes local L0 files (already covered by another), then fsyncs the
/// directory once.
fn remove(meta: &MetaDir, files: &[L0]) -> Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    for f in files {
        let p = meta.l0_path(f.min, f.max);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("remove {}", p.display()), e)),
        }
    }
    fsutil::fsync_dir(meta.l0_dir())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::ltx::{Decoder, Encoder, Header};

    const PS: usize = 512;

    /// An L0 file `min..=max` of a 4-page database whose page `pgno`
    /// holds `fill` (every page, for the snapshot at TXID 1).
    fn l0(meta: &MetaDir, min: u64, max: u64, pgno: u32, fill: u8) {
        let mut h = Header::new(PS as u32, 4, TxId(min), TxId(max), min as i64);
        h.wal_offset = 32;
        h.wal_size = (min * 1000) as i64;
        h.wal_salt1 = 7;
        h.wal_salt2 = min as u32;
        let mut enc = Encoder::new(Vec::new(), h, "t").unwrap();
        if min == 1 {
            // A snapshot: every page.
            for p in 1..=4 {
                enc.encode_page(p, &[fill; PS]).unwrap();
            }
        } else {
            enc.encode_page(pgno, &[fill; PS]).unwrap();
        }
        std::fs::write(
            meta.l0_path(TxId(min), TxId(max)),
            enc.finish().unwrap().writer,
        )
        .unwrap();
    }

    fn names(meta: &MetaDir) -> Vec<(u64, u64)> {
        meta.l0_files()
            .unwrap()
            .into_iter()
            .map(|(a, b)| (a.0, b.0))
            .collect()
    }

    #[test]
    fn below_the_bound_nothing_is_merged() {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaDir::new(dir.path());
        meta.create().unwrap();
        for t in 1..=10 {
            l0(&meta, t, t, 1, t as u8);
        }
        let (u, merged) = bound(&meta, TxId(3), 4 * PS as u64).unwrap();
        assert!(merged.is_none());
        assert_eq!(u.files, 7);
        assert_eq!(measure(&meta, TxId(3)).unwrap(), u);
        assert_eq!(names(&meta).len(), 10);
    }

    #[test]
    fn past_the_count_all_but_the_first_merge_and_the_position_holds() {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaDir::new(dir.path());
        meta.create().unwrap();
        let n = MERGE_AFTER_FILES as u64 + 5;
        for t in 1..=n {
            l0(&meta, t, t, 1 + (t % 3) as u32, t as u8);
        }
        let before = meta.newest_l0_header().unwrap().unwrap();
        let (u, merged) = bound(&meta, TxId(0), 4 * PS as u64).unwrap();
        let merged = merged.expect("merged");
        assert_eq!(names(&meta), vec![(1, 1), (2, n)]);
        assert_eq!(u.files, 2);
        let after = meta.newest_l0_header().unwrap().unwrap();
        assert_eq!(after.max_txid, before.max_txid);
        assert_eq!(
            (
                after.wal_offset,
                after.wal_size,
                after.wal_salt1,
                after.wal_salt2
            ),
            (
                before.wal_offset,
                before.wal_size,
                before.wal_salt1,
                before.wal_salt2
            ),
            "the merged file ends where the last input did"
        );
        assert_eq!(merged.pages, 3);
        // The newest version of each page won.
        let f = std::fs::File::open(meta.l0_path(TxId(2), TxId(n))).unwrap();
        let mut d = Decoder::new(f, "merged").unwrap();
        let mut buf = vec![0u8; PS];
        let mut got = Vec::new();
        while let Some(p) = d.next_page(&mut buf).unwrap() {
            got.push((p.pgno, buf[0]));
        }
        d.finish().unwrap();
        let newest = |pgno: u32| {
            (2..=n)
                .filter(|t| 1 + (t % 3) as u32 == pgno)
                .max()
                .unwrap() as u8
        };
        assert_eq!(got, vec![(1, newest(1)), (2, newest(2)), (3, newest(3))]);
        // Merging again folds new files into the merged one.
        for t in n + 1..=n + MERGE_AFTER_FILES as u64 {
            l0(&meta, t, t, 4, t as u8);
        }
        let (_, again) = bound(&meta, TxId(0), 4 * PS as u64).unwrap();
        assert!(again.is_some());
        assert_eq!(
            names(&meta),
            vec![(1, 1), (2, n + MERGE_AFTER_FILES as u64)]
        );
    }

    /// An L0 file `t..=t` of 64 incompressible 4 KiB pages.
    fn big_l0(meta: &MetaDir, t: u64) {
        let h = Header::new(4096, 64, TxId(t), TxId(t), t as i64);
        let mut enc = Encoder::new(Vec::new(), h, "t").unwrap();
        let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut page = vec![0u8; 4096];
        for pgno in 1..=64 {
            for b in page.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            enc.encode_page(pgno, &page).unwrap();
        }
        std::fs::write(meta.l0_path(TxId(t), TxId(t)), enc.finish().unwrap().writer).unwrap();
    }

    #[test]
    fn past_twice_the_database_size_they_merge() {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaDir::new(dir.path());
        meta.create().unwrap();
        // 256 KiB a file: three stay under the 1 MiB floor, five pass it.
        for t in 1..=3 {
            big_l0(&meta, t);
        }
        assert!(
            bound(&meta, TxId(0), 4096).unwrap().1.is_none(),
            "under the floor"
        );
        for t in 4..=5 {
            big_l0(&meta, t);
        }
        let (u, merged) = bound(&meta, TxId(0), 4096).unwrap();
        let merged = merged.expect("merged past the floor");
        assert_eq!(u.files, 2);
        assert!(
            merged.size < 300 << 10,
            "one database's worth: {}",
            merged.size
        );
        assert_eq!(names(&meta), vec![(1, 1), (2, 5)]);
    }

    #[test]
    fn files_a_merged_file_covers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaDir::new(dir.path());
        meta.create().unwrap();
        for t in 1..=6 {
            l0(&meta, t, t, 1, t as u8);
        }
        // A crash after the merged file's rename, before its inputs went.
        let inputs: Vec<PathBuf> = (2..=5).map(|t| meta.l0_path(TxId(t), TxId(t))).collect();
        merge_l0_files(&inputs, &meta.l0_path(TxId(2), TxId(5))).unwrap();
        let (u, merged) = bound(&meta, TxId(0), 1 << 30).unwrap();
        assert!(merged.is_none());
        assert_eq!(u.files, 3);
        assert_eq!(names(&meta), vec![(1, 1), (2, 5), (6, 6)]);
    }
}
