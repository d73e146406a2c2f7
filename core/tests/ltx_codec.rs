//! LTX codec: round trips, spec vectors, legacy frames, and every kind of
//! damage a file can carry.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::io::Cursor;

use litestreampp_core::ltx::checksum::{CHECKSUM_FLAG, crc64};
use litestreampp_core::ltx::{Decoder, Encoder, Header, PageIndex, lock_pgno, read_page_at};
use litestreampp_core::{Error, TxId};
use proptest::prelude::*;

fn page(ps: u32, pgno: u32, seed: u8) -> Vec<u8> {
    (0..ps)
        .map(|i| ((i / 7) as u8).wrapping_mul(seed).wrapping_add(pgno as u8))
        .collect()
}

fn encode(h: Header, pages: &[(u32, Vec<u8>)], parallel: bool) -> Vec<u8> {
    let mut enc = Encoder::new(Vec::new(), h, "test.ltx").unwrap();
    if parallel {
        let refs: Vec<(u32, &[u8])> = pages.iter().map(|(p, d)| (*p, d.as_slice())).collect();
        enc.encode_pages(&refs).unwrap();
    } else {
        for (p, d) in pages {
            enc.encode_page(*p, d).unwrap();
        }
    }
    enc.finish().unwrap().writer
}

type Pages = Vec<(u32, Vec<u8>)>;

fn decode_all(bytes: &[u8]) -> Result<(Header, Pages), Error> {
    let mut dec = Decoder::new(Cursor::new(bytes), "test.ltx")?;
    let h = *dec.header();
    let mut buf = vec![0u8; h.page_size as usize];
    let mut out = Vec::new();
    while let Some(f) = dec.next_page(&mut buf)? {
        out.push((f.pgno, buf.clone()));
    }
    dec.finish()?;
    Ok((h, out))
}

fn snapshot_header(ps: u32, commit: u32) -> Header {
    Header::new(ps, commit, TxId(1), TxId(1), 1_700_000_000_000)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip(ps_exp in 9u32..=13, pgnos in prop::collection::btree_set(1u32..200, 1..40), seed in any::<u8>(), parallel in any::<bool>()) {
        let ps = 1u32 << ps_exp;
        let commit = *pgnos.iter().max().unwrap();
        let pages: Vec<(u32, Vec<u8>)> = pgnos.iter().map(|&p| (p, page(ps, p, seed))).collect();
        let h = Header::new(ps, commit, TxId(5), TxId(9), 1_700_000_000_000);
        let bytes = encode(h, &pages, parallel);
        let (h2, got) = decode_all(&bytes).unwrap();
        prop_assert_eq!(h2, h);
        prop_assert_eq!(got, pages);
    }

    #[test]
    fn parallel_and_serial_encodings_are_identical(n in 1u32..64, seed in any::<u8>()) {
        let pages: Vec<(u32, Vec<u8>)> = (1..=n).map(|p| (p, page(4096, p, seed))).collect();
        let h = snapshot_header(4096, n);
        prop_assert_eq!(encode(h, &pages, true), encode(h, &pages, false));
    }

    #[test]
    fn random_damage_is_detected(n in 1u32..20, at in any::<prop::sample::Index>(), xor in 1u8..=255) {
        let pages: Vec<(u32, Vec<u8>)> = (1..=n).map(|p| (p, page(512, p, 3))).collect();
        let mut bytes = encode(snapshot_header(512, n), &pages, false);
        let i = at.index(bytes.len());
        bytes[i] ^= xor;
        prop_assert!(decode_all(&bytes).is_err(), "flip at {} of {} went unnoticed", i, bytes.len());
    }

    #[test]
    fn every_truncation_is_detected(n in 1u32..6, cut in any::<prop::sample::Index>()) {
        let pages: Vec<(u32, Vec<u8>)> = (1..=n).map(|p| (p, page(512, p, 9))).collect();
        let bytes = encode(snapshot_header(512, n), &pages, false);
        let len = cut.index(bytes.len());
        let err = decode_all(&bytes[..len]).unwrap_err();
        prop_assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    }
}

#[test]
fn spec_vectors() {
    assert_eq!(crc64(b"123456789"), 0xB909_56C7_75A4_1001);
}

#[test]
fn file_layout_matches_litestream() {
    let pages = vec![(1u32, vec![0u8; 4096]), (2, vec![7u8; 4096])];
    let bytes = encode(snapshot_header(4096, 2), &pages, false);
    assert_eq!(&bytes[0..4], b"LTX1");
    assert_eq!(&bytes[4..8], &[0, 0, 0, 2], "flags NoChecksum");
    assert_eq!(&bytes[40..48], &[0; 8], "pre-apply checksum zero");
    // First page frame: pgno 1, flags 0x0001, u32 length, LZ4 block.
    assert_eq!(&bytes[100..106], &[0, 0, 0, 1, 0, 1]);
    let trailer = &bytes[bytes.len() - 16..];
    assert_eq!(&trailer[0..8], &[0; 8], "post-apply checksum zero");
    assert_ne!(trailer[8] & 0x80, 0, "file checksum has bit 63");
    // The file checksum is CRC-64/ISO over everything but itself, with
    // pages hashed decompressed: recompute it from the decoded pages.
    let idx = PageIndex::parse(
        Header::decode(&bytes[..100], "x").unwrap(),
        &bytes[bytes.len() - tail(&bytes)..],
        bytes.len() as u64,
        "x",
    )
    .unwrap();
    let mut hashed = bytes[..100].to_vec();
    for e in &idx.entries {
        let f = &bytes[e.offset as usize..(e.offset + e.size) as usize];
        hashed.extend_from_slice(&f[..10]);
        hashed.extend_from_slice(&pages[(e.pgno - 1) as usize].1);
    }
    hashed.extend_from_slice(&bytes[idx.frames_end as usize..bytes.len() - 8]);
    assert_eq!(CHECKSUM_FLAG | crc64(&hashed), idx.trailer.file_checksum);
}

fn tail(bytes: &[u8]) -> usize {
    PageIndex::tail_len(&bytes[bytes.len() - 24..], bytes.len() as u64, "x").unwrap() as usize
}

#[test]
fn random_access_through_page_index() {
    let pages: Vec<(u32, Vec<u8>)> = [3u32, 10, 11, 400]
        .iter()
        .map(|&p| (p, page(1024, p, 5)))
        .collect();
    let bytes = encode(Header::new(1024, 400, TxId(2), TxId(2), 0), &pages, true);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.ltx");
    std::fs::write(&path, &bytes).unwrap();
    let f = std::fs::File::open(&path).unwrap();
    let idx = PageIndex::read(&f, "f.ltx").unwrap();
    assert_eq!(
        idx.entries.iter().map(|e| e.pgno).collect::<Vec<_>>(),
        vec![3, 10, 11, 400]
    );
    let mut buf = vec![0u8; 1024];
    for (e, (_, want)) in idx.entries.iter().zip(&pages).rev() {
        read_page_at(&f, e, &mut buf, "f.ltx").unwrap();
        assert_eq!(&buf, want);
    }
}

#[test]
fn legacy_lz4_frame_pages_decode() {
    use std::io::Write;
    // Build a file in the ltx 0.5.0/0.5.1 form: page flags 0, one LZ4
    // frame per page (FLG 0x64, BD 0x40), no size field. The checksum
    // covers the 6-byte header and the decompressed page.
    let ps = 4096u32;
    let pages: Vec<(u32, Vec<u8>)> = (1..=3).map(|p| (p, page(ps, p, 11))).collect();
    let h = snapshot_header(ps, 3);
    let mut out = h.encode().to_vec();
    let mut hashed = out.clone();
    let mut index = Vec::new();
    for (p, d) in &pages {
        let off = out.len();
        let mut fh = p.to_be_bytes().to_vec();
        fh.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&fh);
        hashed.extend_from_slice(&fh);
        hashed.extend_from_slice(d);
        let info = lz4_flex::frame::FrameInfo::new()
            .block_size(lz4_flex::frame::BlockSize::Max64KB)
            .block_mode(lz4_flex::frame::BlockMode::Independent)
            .content_checksum(true);
        let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
        enc.write_all(d).unwrap();
        let frame = enc.finish().unwrap();
        assert_eq!(&frame[4..6], &[0x64, 0x40]);
        out.extend_from_slice(&frame);
        index.push((*p, off, out.len() - off));
    }
    let mut rest = vec![0u8; 6];
    let istart = rest.len();
    for (p, o, s) in &index {
        for v in [*p as u64, *o as u64, *s as u64] {
            let mut v = v;
            while v >= 0x80 {
                rest.push(v as u8 | 0x80);
                v >>= 7;
            }
            rest.push(v as u8);
        }
    }
    rest.push(0);
    let ilen = (rest.len() - istart) as u64;
    rest.extend_from_slice(&ilen.to_be_bytes());
    rest.extend_from_slice(&[0u8; 8]);
    hashed.extend_from_slice(&rest);
    out.extend_from_slice(&rest);
    out.extend_from_slice(&(CHECKSUM_FLAG | crc64(&hashed)).to_be_bytes());
    let (_, got) = decode_all(&out).unwrap();
    assert_eq!(got, pages);
}

/// One check per damage: (what, mutate, expected words in the error).
#[test]
fn corrupt_files_name_the_problem() {
    let pages: Vec<(u32, Vec<u8>)> = (1..=4).map(|p| (p, page(512, p, 2))).collect();
    let good = encode(snapshot_header(512, 4), &pages, false);
    type Mutation = fn(&mut Vec<u8>);
    let cases: Vec<(&str, Mutation, &str)> = vec![
        ("magic", |b| b[0] = b'X', "bad magic"),
        ("flags", |b| b[7] = 1, "invalid flags"),
        ("page size", |b| b[10] = 3, "page size"),
        ("min txid 0", |b| b[16..24].fill(0), "at least 1"),
        ("min > max", |b| b[23] = 9, "above max"),
        ("salt without offset", |b| b[64] = 1, "salt"),
        ("pgno 0 frame", |b| b[100..104].fill(0), "page"),
        ("page flags", |b| b[105] = 4, "page flags"),
        (
            "trailer checksum",
            |b| {
                let n = b.len();
                b[n - 1] ^= 1
            },
            "checksum mismatch",
        ),
        (
            "post-apply set",
            |b| {
                let n = b.len();
                b[n - 16] = 0x80
            },
            "post-apply",
        ),
        ("trailing bytes", |b| b.push(0), "after the trailer"),
        ("truncated", |b| b.truncate(b.len() - 3), "truncated"),
        ("empty", |b| b.clear(), "truncated"),
    ];
    for (what, mutate, want) in cases {
        let mut b = good.clone();
        mutate(&mut b);
        let err = decode_all(&b).expect_err(what).to_string();
        assert!(
            err.contains("test.ltx") && err.contains(want),
            "{what}: {err}"
        );
    }
}

#[test]
fn encoder_refuses_bad_pages() {
    let ps = 4096;
    let mut enc = Encoder::new(Vec::new(), Header::new(ps, 10, TxId(2), TxId(2), 0), "x").unwrap();
    assert!(enc.encode_page(0, &vec![0; 4096]).is_err());
    assert!(enc.encode_page(11, &vec![0; 4096]).is_err());
    enc.encode_page(5, &vec![0; 4096]).unwrap();
    assert!(enc.encode_page(5, &vec![0; 4096]).is_err());
    assert!(enc.encode_page(6, &[0; 100]).is_err());
    // Lock page.
    let lock = lock_pgno(ps);
    let mut enc = Encoder::new(
        Vec::new(),
        Header::new(ps, lock + 1, TxId(2), TxId(2), 0),
        "x",
    )
    .unwrap();
    assert!(enc.encode_page(lock, &vec![0; 4096]).is_err());
    // Snapshots: contiguous from 1, complete.
    let mut enc = Encoder::new(Vec::new(), snapshot_header(ps, 3), "x").unwrap();
    assert!(enc.encode_page(2, &vec![0; 4096]).is_err());
    enc.encode_page(1, &vec![0; 4096]).unwrap();
    assert!(enc.finish().is_err());
}

#[test]
fn snapshot_skips_lock_page() {
    let ps = 65536u32;
    let lock = lock_pgno(ps);
    let commit = lock + 1;
    let zero = vec![0u8; ps as usize];
    let mut enc = Encoder::new(Vec::new(), snapshot_header(ps, commit), "x").unwrap();
    for p in 1..=commit {
        if p != lock {
            enc.encode_page(p, &zero).unwrap();
        }
    }
    let bytes = enc.finish().unwrap().writer;
    let (_, got) = decode_all(&bytes).unwrap();
    assert_eq!(got.len() as u32, commit - 1);
    assert!(got.iter().all(|(p, _)| *p != lock));
}
