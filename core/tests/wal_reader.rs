//! WAL reader: against WALs written by real SQLite and against synthetic
//! WALs (both checksum byte orders) built frame by frame.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::fs::File;

use litestreampp_core::wal::{StopReason, WalHeader, WalReader, checksum, read_page};
use proptest::prelude::*;

/// Builds a WAL the way SQLite does.
struct WalBuilder {
    bytes: Vec<u8>,
    be: bool,
    ps: u32,
    salts: (u32, u32),
    chk: (u32, u32),
}

impl WalBuilder {
    fn new(be: bool, ps: u32, salts: (u32, u32)) -> Self {
        let mut h = Vec::new();
        h.extend_from_slice(&(if be { 0x377f0683u32 } else { 0x377f0682 }).to_be_bytes());
        h.extend_from_slice(&3_007_000u32.to_be_bytes());
        h.extend_from_slice(&ps.to_be_bytes());
        h.extend_from_slice(&7u32.to_be_bytes());
        h.extend_from_slice(&salts.0.to_be_bytes());
        h.extend_from_slice(&salts.1.to_be_bytes());
        let chk = checksum(be, (0, 0), &h);
        h.extend_from_slice(&chk.0.to_be_bytes());
        h.extend_from_slice(&chk.1.to_be_bytes());
        WalBuilder {
            bytes: h,
            be,
            ps,
            salts,
            chk,
        }
    }

    fn frame(&mut self, pgno: u32, commit: u32, fill: u8) {
        let mut f = Vec::new();
        f.extend_from_slice(&pgno.to_be_bytes());
        f.extend_from_slice(&commit.to_be_bytes());
        let page = vec![fill; self.ps as usize];
        let c = checksum(self.be, self.chk, &f);
        let c = checksum(self.be, c, &page);
        self.chk = c;
        f.extend_from_slice(&self.salts.0.to_be_bytes());
        f.extend_from_slice(&self.salts.1.to_be_bytes());
        f.extend_from_slice(&c.0.to_be_bytes());
        f.extend_from_slice(&c.1.to_be_bytes());
        f.extend_from_slice(&page);
        self.bytes.extend_from_slice(&f);
    }
}

fn write_tmp(bytes: &[u8]) -> (tempfile::TempDir, File) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.db-wal");
    std::fs::write(&p, bytes).unwrap();
    let f = File::open(&p).unwrap();
    (dir, f)
}

/// A transaction: pages (pgno, fill) and the commit size.
type Tx = (Vec<(u32, u8)>, u32);

fn arb_txs() -> impl Strategy<Value = (Vec<Tx>, Vec<(u32, u8)>)> {
    let tx = (
        prop::collection::vec((1u32..30, any::<u8>()), 1..6),
        1u32..30,
    );
    (
        prop::collection::vec(tx, 0..12),
        prop::collection::vec((1u32..30, any::<u8>()), 0..4),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The reader yields exactly the committed transactions, last version of
    /// each page, pages above the final commit dropped; the uncommitted
    /// tail is ignored; resuming mid-way gives the same pages.
    #[test]
    fn matches_model((txs, tail) in arb_txs(), be in any::<bool>(), split in any::<prop::sample::Index>()) {
        let ps = 512;
        let mut w = WalBuilder::new(be, ps, (0x1234, 0xabcd));
        let mut model: BTreeMap<u32, u8> = BTreeMap::new();
        let mut commit = 0;
        let mut ends = vec![32u64];
        for (pages, c) in &txs {
            for (i, (p, fill)) in pages.iter().enumerate() {
                w.frame(*p, if i + 1 == pages.len() { *c } else { 0 }, *fill);
                model.insert(*p, *fill);
            }
            commit = *c;
            ends.push(w.bytes.len() as u64);
        }
        for (p, fill) in &tail {
            w.frame(*p, 0, *fill);
        }
        model.retain(|p, _| *p <= commit);
        let (_d, f) = write_tmp(&w.bytes);
        let hdr = WalHeader::read(&f, "x.db-wal").unwrap().unwrap();
        prop_assert_eq!(hdr.big_endian, be);
        let seg = WalReader::new(&f, "x.db-wal", hdr).read_transactions(0).unwrap();
        prop_assert_eq!(seg.end, *ends.last().unwrap());
        prop_assert_eq!(seg.commit, commit);
        prop_assert_eq!(seg.transactions, txs.len() as u64);
        let mut page = vec![0u8; ps as usize];
        let mut got = BTreeMap::new();
        for (p, off) in &seg.pages {
            read_page(&f, "x", *off, &mut page).unwrap();
            got.insert(*p, page[0]);
        }
        prop_assert_eq!(got, model);

        // Resume at a commit boundary: the two halves cover the same frames.
        let mid = ends[split.index(ends.len())];
        let seed = WalReader::seed_at(&f, "x", &hdr, mid).unwrap().unwrap();
        let mut r1 = WalReader::new(&f, "x", hdr);
        let first = r1.read_transactions(0).unwrap();
        let second = WalReader::resume(&f, "x", hdr, mid, seed).read_transactions(0).unwrap();
        prop_assert_eq!(second.end, first.end);
        prop_assert_eq!(second.end_checksum, first.end_checksum);
    }
}

#[test]
fn stops_at_broken_chain_and_foreign_salts() {
    let mut w = WalBuilder::new(false, 512, (1, 2));
    w.frame(1, 1, 1);
    let after_first = w.bytes.len();
    w.frame(2, 2, 2);
    w.frame(3, 3, 3);
    // Damage the page of the second frame: the chain breaks there.
    let mut damaged = w.bytes.clone();
    damaged[after_first + 24 + 10] ^= 0xff;
    let (_d, f) = write_tmp(&damaged);
    let h = WalHeader::read(&f, "x").unwrap().unwrap();
    let seg = WalReader::new(&f, "x", h).read_transactions(0).unwrap();
    assert_eq!(seg.end, after_first as u64);
    assert_eq!(seg.stop, StopReason::ChecksumMismatch);

    // A frame of another generation (old salts) ends the WAL too.
    let mut old = WalBuilder::new(false, 512, (9, 9));
    old.frame(5, 5, 5);
    old.frame(6, 6, 6);
    let mut mixed = old.bytes.clone();
    let mut new = WalBuilder::new(false, 512, (10, 3));
    new.frame(1, 1, 1);
    mixed[..new.bytes.len()].copy_from_slice(&new.bytes);
    let (_d, f) = write_tmp(&mixed);
    let h = WalHeader::read(&f, "x").unwrap().unwrap();
    let seg = WalReader::new(&f, "x", h).read_transactions(0).unwrap();
    assert_eq!(seg.stop, StopReason::SaltMismatch);
    assert_eq!(seg.commit, 1);

    // A partial frame at the end.
    let (_d, f) = write_tmp(&w.bytes[..w.bytes.len() - 100]);
    let h = WalHeader::read(&f, "x").unwrap().unwrap();
    let seg = WalReader::new(&f, "x", h).read_transactions(0).unwrap();
    assert_eq!(seg.stop, StopReason::PartialFrame);
    assert_eq!(seg.commit, 2);
}

#[test]
fn limit_stops_at_commit_boundary() {
    let mut w = WalBuilder::new(true, 512, (1, 2));
    for i in 1..=10 {
        w.frame(i, 0, i as u8);
        w.frame(i + 10, i + 10, i as u8);
    }
    let (_d, f) = write_tmp(&w.bytes);
    let h = WalHeader::read(&f, "x").unwrap().unwrap();
    let mut r = WalReader::new(&f, "x", h);
    let fs = 24 + 512u64;
    let a = r.read_transactions(3 * fs).unwrap();
    assert_eq!(a.stop, StopReason::Limit);
    assert_eq!(
        a.end,
        32 + 4 * fs,
        "first commit boundary at or past the limit"
    );
    let b = r.read_transactions(0).unwrap();
    assert_eq!(b.start, a.end);
    assert_eq!(b.end, 32 + 20 * fs);
}

#[test]
fn bad_headers() {
    let w = WalBuilder::new(false, 4096, (1, 2));
    let mut b = w.bytes.clone();
    b[0] = 0;
    assert!(
        WalHeader::parse(&b, "x.db-wal")
            .unwrap_err()
            .to_string()
            .contains("x.db-wal: corrupt: not a WAL")
    );
    let mut b = w.bytes.clone();
    b[19] ^= 1;
    assert!(
        WalHeader::parse(&b, "x")
            .unwrap_err()
            .to_string()
            .contains("checksum")
    );
    let (_d, f) = write_tmp(&w.bytes[..20]);
    assert!(WalHeader::read(&f, "x").unwrap().is_none());
}

/// Real SQLite: applying the reader's pages to the database file gives the
/// same bytes as SQLite's own checkpoint.
#[test]
fn real_sqlite_wal_matches_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=wal; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(x, y);",
    )
    .unwrap();
    conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")
        .unwrap();
    for i in 0..200 {
        conn.execute("INSERT INTO t VALUES (?1, randomblob(300))", [i])
            .unwrap();
    }
    conn.execute("DELETE FROM t WHERE x % 3 = 0", []).unwrap();
    // Copy the database and WAL while the connection keeps the WAL alive.
    let base = std::fs::read(&db).unwrap();
    let wal = std::fs::read(dir.path().join("a.db-wal")).unwrap();
    let (_d2, f) = write_tmp(&wal);
    let h = WalHeader::read(&f, "x").unwrap().unwrap();
    let seg = WalReader::new(&f, "x", h).read_transactions(0).unwrap();
    assert_eq!(seg.end, wal.len() as u64);
    let ps = h.page_size as usize;
    let mut out = base.clone();
    out.resize(seg.commit as usize * ps, 0);
    let mut page = vec![0u8; ps];
    for (p, off) in &seg.pages {
        read_page(&f, "x", *off, &mut page).unwrap();
        out[(*p as usize - 1) * ps..*p as usize * ps].copy_from_slice(&page);
    }
    conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")
        .unwrap();
    drop(conn);
    assert_eq!(out, std::fs::read(&db).unwrap());
}
