//! One conformance suite for every [`ReplicaClient`] backend: run it against
//! a fresh, empty replica. It panics with a description on the first
//! broken rule, so it is meant to be called from tests.

use bytes::Bytes;
use futures::TryStreamExt;
use tokio::io::AsyncReadExt;

use super::{FileInfo, LtxBody, ReplicaClient, SNAPSHOT_LEVEL, list_all, read_range};
use crate::ltx::{Encoder, Header};
use crate::txid::TxId;

/// Builds a small valid LTX file.
pub fn sample_ltx(min: u64, max: u64, timestamp_ms: i64, pages: u32) -> Bytes {
    let commit = pages.max(1);
    let h = Header::new(512, commit, TxId(min), TxId(max), timestamp_ms);
    let mut enc = match Encoder::new(Vec::new(), h, "sample") {
        Ok(e) => e,
        Err(e) => panic!("sample header: {e}"),
    };
    let first = if min == 1 { 1 } else { commit };
    for p in first..=commit {
        let page: Vec<u8> = (0..512u32)
            .map(|i| (i as u8) ^ (p as u8) ^ (max as u8))
            .collect();
        if let Err(e) = enc.encode_page(p, &page) {
            panic!("sample page: {e}");
        }
    }
    match enc.finish() {
        Ok(f) => Bytes::from(f.writer),
        Err(e) => panic!("sample finish: {e}"),
    }
}

/// An LTX file of about `bytes` bytes of random (incompressible) pages.
pub fn large_ltx(min: u64, max: u64, timestamp_ms: i64, bytes: usize) -> Bytes {
    use rand::RngCore;
    let ps = 4096usize;
    let pages = (bytes / ps).max(1) as u32;
    let h = Header::new(ps as u32, pages, TxId(min), TxId(max), timestamp_ms);
    let mut enc = match Encoder::new(Vec::new(), h, "large") {
        Ok(e) => e,
        Err(e) => panic!("large header: {e}"),
    };
    let mut page = vec![0u8; ps];
    let mut rng = rand::rng();
    for p in 1..=pages {
        rng.fill_bytes(&mut page);
        if let Err(e) = enc.encode_page(p, &page) {
            panic!("large page: {e}");
        }
    }
    match enc.finish() {
        Ok(f) => Bytes::from(f.writer),
        Err(e) => panic!("large finish: {e}"),
    }
}

async fn read_all(
    c: &dyn ReplicaClient,
    level: u32,
    min: u64,
    max: u64,
    off: u64,
    size: u64,
) -> Vec<u8> {
    let mut r = match c
        .open_ltx_file(level, TxId(min), TxId(max), off, size)
        .await
    {
        Ok(r) => r,
        Err(e) => panic!("{}: open level {level} {min}-{max}: {e}", c.location()),
    };
    let mut v = Vec::new();
    if let Err(e) = r.read_to_end(&mut v).await {
        panic!("{}: read: {e}", c.location());
    }
    v
}

fn ok<T>(r: crate::Result<T>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("conformance: {what}: {e}"),
    }
}

/// Runs every rule against `client`, which must start empty.
pub async fn run(client: &dyn ReplicaClient) {
    let c = client;
    let loc = c.location();

    // An empty replica lists nothing and opens nothing.
    for level in [0, 1, SNAPSHOT_LEVEL] {
        assert!(
            ok(list_all(c, level, false).await, "list empty").is_empty(),
            "{loc}: empty level {level} listed files"
        );
    }
    let err = c.open_ltx_file(0, TxId(1), TxId(1), 0, 0).await.err();
    assert!(
        matches!(err, Some(ref e) if e.is_not_found()),
        "{loc}: open of a missing file gave {err:?}"
    );

    // Writes return the header timestamp as creation time.
    let ts = 1_700_000_000_123i64;
    let snap = sample_ltx(1, 5, ts, 4);
    let info = ok(
        c.write_ltx_file(
            SNAPSHOT_LEVEL,
            TxId(1),
            TxId(5),
            LtxBody::Bytes(snap.clone()),
        )
        .await,
        "write snapshot",
    );
    assert_eq!(
        (info.level, info.min_txid, info.max_txid, info.size),
        (SNAPSHOT_LEVEL, TxId(1), TxId(5), snap.len() as u64),
        "{loc}: write info"
    );
    assert_eq!(
        info.created_at.as_millisecond(),
        ts,
        "{loc}: created_at must be the LTX header timestamp"
    );

    // A header that does not match the name is refused.
    let wrong = sample_ltx(2, 2, ts, 1);
    assert!(
        c.write_ltx_file(0, TxId(3), TxId(3), LtxBody::Bytes(wrong))
            .await
            .is_err(),
        "{loc}: mismatched header accepted"
    );

    // Level 0: many files, listed in TXID order, seek filters by min TXID.
    let n = 1_050u64; // more than one S3 page of 1,000 keys
    let mut written = Vec::new();
    for t in (6..6 + n).rev() {
        let body = sample_ltx(t, t, ts + t as i64, 1);
        written.push(ok(
            c.write_ltx_file(0, TxId(t), TxId(t), LtxBody::Bytes(body))
                .await,
            "write L0",
        ));
    }
    let listed = ok(list_all(c, 0, false).await, "list L0");
    assert_eq!(listed.len() as u64, n, "{loc}: L0 count");
    assert!(
        listed.windows(2).all(|w| w[0].min_txid < w[1].min_txid),
        "{loc}: listing not ordered by TXID"
    );
    let seeked: Vec<FileInfo> = ok(
        ok(c.ltx_files(0, TxId(1000), false).await, "seek")
            .try_collect()
            .await,
        "seek list",
    );
    assert_eq!(
        seeked.first().map(|f| f.min_txid),
        Some(TxId(1000)),
        "{loc}: seek start"
    );
    assert_eq!(seeked.len() as u64, 6 + n - 1000, "{loc}: seek count");
    // All levels at once: the same files as level by level.
    let all = ok(c.all_ltx_files().await, "list all levels");
    let mut by_level = Vec::new();
    for level in 0..=SNAPSHOT_LEVEL {
        by_level.extend(ok(list_all(c, level, false).await, "list a level"));
    }
    let key = |f: &FileInfo| (f.level, f.min_txid, f.max_txid, f.size);
    assert_eq!(
        all.iter().map(key).collect::<Vec<_>>(),
        by_level.iter().map(key).collect::<Vec<_>>(),
        "{loc}: all_ltx_files"
    );
    let with_meta = ok(list_all(c, 0, true).await, "list with metadata");
    assert!(
        with_meta
            .iter()
            .all(|f| f.created_at.as_millisecond() == ts + f.min_txid.0 as i64),
        "{loc}: exact timestamps with use_metadata"
    );

    // Reads: whole file and ranges.
    assert_eq!(
        read_all(c, SNAPSHOT_LEVEL, 1, 5, 0, 0).await,
        snap.to_vec(),
        "{loc}: full read"
    );
    assert_eq!(
        read_all(c, SNAPSHOT_LEVEL, 1, 5, 10, 50).await,
        snap[10..60].to_vec(),
        "{loc}: range read"
    );
    let tail = read_all(c, SNAPSHOT_LEVEL, 1, 5, snap.len() as u64 - 16, 0).await;
    assert_eq!(
        tail,
        snap[snap.len() - 16..].to_vec(),
        "{loc}: read from offset to end"
    );
    assert_eq!(
        ok(read_range(c, &info, 100, 6).await, "read_range"),
        snap[100..106].to_vec()
    );
    let rest = ok(
        c.read_ltx_range(SNAPSHOT_LEVEL, TxId(1), TxId(5), 10, 0)
            .await,
        "read_ltx_range to the end",
    );
    assert_eq!(
        rest,
        snap[10..].to_vec(),
        "{loc}: read_ltx_range to the end"
    );
    let err = c
        .read_ltx_range(0, TxId(5_000_000), TxId(5_000_000), 0, 10)
        .await
        .err();
    assert!(
        matches!(err, Some(ref e) if e.is_not_found()),
        "{loc}: read_ltx_range of a missing file gave {err:?}"
    );

    // Rewriting a file replaces it.
    let snap2 = sample_ltx(1, 5, ts + 1, 3);
    ok(
        c.write_ltx_file(
            SNAPSHOT_LEVEL,
            TxId(1),
            TxId(5),
            LtxBody::Bytes(snap2.clone()),
        )
        .await,
        "rewrite",
    );
    assert_eq!(
        read_all(c, SNAPSHOT_LEVEL, 1, 5, 0, 0).await,
        snap2.to_vec(),
        "{loc}: rewrite content"
    );

    // A file large enough for multipart uploads (12 MiB of incompressible
    // pages), from disk, read back whole and by range.
    let dir = ok(tempfile_dir(), "tempdir");
    let big = large_ltx(3, 3, ts, 12 << 20);
    let bp = dir.join("big.ltx");
    ok(
        std::fs::write(&bp, &big).map_err(|e| crate::Error::io("write", e)),
        "write local large",
    );
    let info_big = ok(
        c.write_ltx_file(2, TxId(3), TxId(3), LtxBody::File(bp))
            .await,
        "write large file",
    );
    assert_eq!(info_big.size, big.len() as u64, "{loc}: large file size");
    assert!(
        read_all(c, 2, 3, 3, 0, 0).await == big.to_vec(),
        "{loc}: large file content"
    );
    let mid = (big.len() / 2) as u64;
    assert_eq!(
        ok(read_range(c, &info_big, mid, 1 << 20).await, "large range"),
        big[mid as usize..mid as usize + (1 << 20)].to_vec(),
        "{loc}: large file range"
    );

    // Uploads from a local file.
    let p = dir.join("f.ltx");
    let body = sample_ltx(2, 7, ts, 2);
    ok(
        std::fs::write(&p, &body).map_err(|e| crate::Error::io("write", e)),
        "write local",
    );
    ok(
        c.write_ltx_file(1, TxId(2), TxId(7), LtxBody::File(p))
            .await,
        "write from file",
    );
    assert_eq!(
        read_all(c, 1, 2, 7, 0, 0).await,
        body.to_vec(),
        "{loc}: file upload content"
    );
    let _ = std::fs::remove_dir_all(&dir);

    // Deletes: present and missing files, in one batch larger than 1,000.
    let mut batch = written.clone();
    batch.push(FileInfo {
        min_txid: TxId(99_999),
        max_txid: TxId(99_999),
        ..written[0].clone()
    });
    ok(c.delete_ltx_files(&batch).await, "delete");
    assert!(
        ok(list_all(c, 0, false).await, "list after delete").is_empty(),
        "{loc}: files left after delete"
    );
    let err = c.open_ltx_file(0, TxId(6), TxId(6), 0, 0).await.err();
    assert!(
        matches!(err, Some(ref e) if e.is_not_found()),
        "{loc}: deleted file still opens"
    );

    // Delete all.
    ok(c.delete_all().await, "delete all");
    for level in [0, 1, SNAPSHOT_LEVEL] {
        assert!(
            ok(list_all(c, level, false).await, "list").is_empty(),
            "{loc}: level {level} not empty after delete_all"
        );
    }
}

fn tempfile_dir() -> crate::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!(
        "lspp-conformance-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&d).map_err(|e| crate::Error::io("create temp dir", e))?;
    Ok(d)
}
