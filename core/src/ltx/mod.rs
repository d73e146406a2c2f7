//! The LTX file format, version 3 ("LTX1"), byte-compatible with
//! `superfly/ltx` v0.5.2 as used by Litestream 0.5.17.
//!
//! Only this module knows the LTX byte layout. A file is a 100-byte
//! [`Header`], page frames (each page its own LZ4 block), a 6-byte
//! terminator, a page index and a 16-byte [`Trailer`]. All integers are
//! big-endian. See `ltx-and-replica-format.md` §1.

pub mod checksum;
mod decoder;
mod encoder;
mod index;
mod lz4frame;

pub use decoder::{Decoder, PageFrame};
pub use encoder::{CompressedPage, EncodedFile, Encoder};
pub use index::{IndexEntry, PageIndex, decode_frame, read_page_at};

use crate::error::{Error, Result};
use crate::txid::TxId;

/// Size of the file header.
pub const HEADER_SIZE: usize = 100;
/// Size of a page frame header (`pgno u32`, `flags u16`).
pub const PAGE_HEADER_SIZE: usize = 6;
/// Size of the trailer (post-apply checksum, file checksum).
pub const TRAILER_SIZE: usize = 16;
/// The magic at offset 0.
pub const MAGIC: &[u8; 4] = b"LTX1";
/// Header flag: the file carries no pre/post-apply database checksums.
/// The only legal header flag, and the one Litestream always sets.
pub const FLAG_NO_CHECKSUM: u32 = 0x2;
/// Page flag: a `u32` length and one raw LZ4 block follow the page header.
/// Without it (legacy ltx 0.5.0/0.5.1) a standalone LZ4 frame follows.
pub const PAGE_FLAG_SIZE: u16 = 0x1;
/// Largest legal page size.
pub const MAX_PAGE_SIZE: u32 = 65536;

/// The lock page (`0x40000000 / page_size + 1`), which never appears in an
/// LTX file and is zero-filled on restore.
pub fn lock_pgno(page_size: u32) -> u32 {
    0x4000_0000 / page_size + 1
}

/// The page a snapshot must hold after `prev`: the next one, skipping the
/// lock page (spec §1.2).
pub fn next_snapshot_pgno(prev: u32, lock: u32) -> u32 {
    if prev + 1 == lock { prev + 2 } else { prev + 1 }
}

/// True for powers of two from 512 to 65536.
pub fn is_valid_page_size(page_size: u32) -> bool {
    (512..=MAX_PAGE_SIZE).contains(&page_size) && page_size.is_power_of_two()
}

/// The LTX header (spec §1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub flags: u32,
    pub page_size: u32,
    /// Database size in pages after this file is applied.
    pub commit: u32,
    pub min_txid: TxId,
    pub max_txid: TxId,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    pub pre_apply_checksum: u64,
    pub wal_offset: i64,
    pub wal_size: i64,
    pub wal_salt1: u32,
    pub wal_salt2: u32,
    pub node_id: u64,
}

impl Header {
    /// A header as Litestream writes it: NoChecksum, zero checksums and
    /// node ID, no WAL range.
    pub fn new(
        page_size: u32,
        commit: u32,
        min_txid: TxId,
        max_txid: TxId,
        timestamp_ms: i64,
    ) -> Header {
        Header {
            flags: FLAG_NO_CHECKSUM,
            page_size,
            commit,
            min_txid,
            max_txid,
            timestamp_ms,
            pre_apply_checksum: 0,
            wal_offset: 0,
            wal_size: 0,
            wal_salt1: 0,
            wal_salt2: 0,
            node_id: 0,
        }
    }

    /// A snapshot holds every page of the database (`min TXID == 1`).
    pub fn is_snapshot(&self) -> bool {
        self.min_txid == TxId(1)
    }

    /// True when the NoChecksum flag is set.
    pub fn no_checksum(&self) -> bool {
        self.flags & FLAG_NO_CHECKSUM != 0
    }

    /// The 100 header bytes.
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..4].copy_from_slice(MAGIC);
        b[4..8].copy_from_slice(&self.flags.to_be_bytes());
        b[8..12].copy_from_slice(&self.page_size.to_be_bytes());
        b[12..16].copy_from_slice(&self.commit.to_be_bytes());
        b[16..24].copy_from_slice(&self.min_txid.0.to_be_bytes());
        b[24..32].copy_from_slice(&self.max_txid.0.to_be_bytes());
        b[32..40].copy_from_slice(&self.timestamp_ms.to_be_bytes());
        b[40..48].copy_from_slice(&self.pre_apply_checksum.to_be_bytes());
        b[48..56].copy_from_slice(&self.wal_offset.to_be_bytes());
        b[56..64].copy_from_slice(&self.wal_size.to_be_bytes());
        b[64..68].copy_from_slice(&self.wal_salt1.to_be_bytes());
        b[68..72].copy_from_slice(&self.wal_salt2.to_be_bytes());
        b[72..80].copy_from_slice(&self.node_id.to_be_bytes());
        b
    }

    /// Parses and validates 100 header bytes; `file` names the file in errors.
    pub fn decode(b: &[u8], file: &str) -> Result<Header> {
        if b.len() < HEADER_SIZE {
            return Err(Error::corrupt(
                file,
                format!("header is {} bytes, expected {HEADER_SIZE}", b.len()),
            ));
        }
        if &b[0..4] != MAGIC {
            return Err(Error::corrupt(file, "not an LTX file (bad magic)"));
        }
        let u32_at = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            u64::from_be_bytes(a)
        };
        let h = Header {
            flags: u32_at(4),
            page_size: u32_at(8),
            commit: u32_at(12),
            min_txid: TxId(u64_at(16)),
            max_txid: TxId(u64_at(24)),
            timestamp_ms: u64_at(32) as i64,
            pre_apply_checksum: u64_at(40),
            wal_offset: u64_at(48) as i64,
            wal_size: u64_at(56) as i64,
            wal_salt1: u32_at(64),
            wal_salt2: u32_at(68),
            node_id: u64_at(72),
        };
        h.validate()
            .map_err(|reason| Error::corrupt(file, format!("invalid header: {reason}")))?;
        Ok(h)
    }

    /// The validation rules of spec §1.1.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.flags & !FLAG_NO_CHECKSUM != 0 {
            return Err(format!("invalid flags 0x{:08x}", self.flags));
        }
        if !is_valid_page_size(self.page_size) {
            return Err(format!("invalid page size {}", self.page_size));
        }
        if self.min_txid.0 == 0 || self.max_txid.0 == 0 {
            return Err("min and max TXID must be at least 1".into());
        }
        if self.min_txid > self.max_txid {
            return Err(format!(
                "min TXID {} above max TXID {}",
                self.min_txid, self.max_txid
            ));
        }
        if self.wal_offset < 0 || self.wal_size < 0 {
            return Err("negative WAL offset or size".into());
        }
        if (self.wal_salt1 != 0 || self.wal_salt2 != 0) && self.wal_offset == 0 {
            return Err("WAL salt without a WAL offset".into());
        }
        if self.wal_offset == 0 && self.wal_size != 0 {
            return Err("WAL size without a WAL offset".into());
        }
        if self.is_snapshot() || self.no_checksum() {
            if self.pre_apply_checksum != 0 {
                return Err(
                    "pre-apply checksum must be zero on a snapshot or NoChecksum file".into(),
                );
            }
        } else if self.pre_apply_checksum & checksum::CHECKSUM_FLAG == 0 {
            return Err("pre-apply checksum required and must have bit 63 set".into());
        }
        Ok(())
    }
}

/// The trailer (spec §1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Trailer {
    pub post_apply_checksum: u64,
    pub file_checksum: u64,
}

impl Trailer {
    fn validate(&self, h: &Header) -> std::result::Result<(), String> {
        if h.no_checksum() {
            if self.post_apply_checksum != 0 {
                return Err("post-apply checksum not allowed with NoChecksum".into());
            }
        } else if self.post_apply_checksum & checksum::CHECKSUM_FLAG == 0 {
            return Err("post-apply checksum required and must have bit 63 set".into());
        }
        if self.file_checksum & checksum::CHECKSUM_FLAG == 0 {
            return Err("file checksum missing or without bit 63".into());
        }
        Ok(())
    }
}

/// Appends a Go/LEB128 uvarint.
pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a uvarint from `b` at `*pos`; `None` if truncated or over 64 bits.
pub(crate) fn get_uvarint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    let mut shift = 0u32;
    for i in 0..10 {
        let byte = *b.get(*pos)?;
        *pos += 1;
        if i == 9 && byte > 1 {
            return None;
        }
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
        shift += 7;
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Found by fuzzing (tests/fuzz/regressions/ltx_decode): an index
    /// length near 2^64 overflowed the bounds check, so a damaged file
    /// asked for an allocation of that size instead of being refused.
    #[test]
    fn index_length_near_the_u64_limit_is_refused() {
        let mut last = [0u8; 24];
        last[0..8].copy_from_slice(&(u64::MAX - 30).to_be_bytes());
        let e = PageIndex::tail_len(&last, 733, "x.ltx").unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
        last[0..8].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(PageIndex::tail_len(&last, 733, "x.ltx").is_err());
    }

    /// Found by fuzzing: an index entry whose size nears 2^64 wrapped the
    /// bounds check and reached a read of that many bytes.
    #[test]
    fn index_entry_size_near_the_u64_limit_is_refused() {
        let h = Header::new(4096, 1, TxId(1), TxId(1), 0);
        let mut tail = Vec::new();
        put_uvarint(&mut tail, 1);
        put_uvarint(&mut tail, HEADER_SIZE as u64);
        put_uvarint(&mut tail, u64::MAX - 50);
        put_uvarint(&mut tail, 0);
        let len = tail.len() as u64;
        tail.extend_from_slice(&len.to_be_bytes());
        tail.extend_from_slice(&[0u8; TRAILER_SIZE]);
        let size = (HEADER_SIZE + 200 + PAGE_HEADER_SIZE + tail.len()) as u64;
        let e = PageIndex::parse(h, &tail, size, "x.ltx").unwrap_err();
        assert!(
            e.to_string().contains("does not match the page frames"),
            "{e}"
        );
    }

    #[test]
    fn header_round_trip() {
        let mut h = Header::new(4096, 10, TxId(2), TxId(5), 1_700_000_000_123);
        h.wal_offset = 32;
        h.wal_size = 4120 * 3;
        h.wal_salt1 = 0xdead;
        h.wal_salt2 = 0xbeef;
        let b = h.encode();
        assert_eq!(Header::decode(&b, "x").ok(), Some(h));
        assert_eq!(&b[80..100], &[0u8; 20]);
    }

    #[test]
    fn header_rules() {
        let ok = Header::new(4096, 1, TxId(1), TxId(1), 0);
        let cases: Vec<(Header, &str)> = vec![
            (Header { flags: 1, ..ok }, "flags"),
            (
                Header {
                    page_size: 1000,
                    ..ok
                },
                "page size",
            ),
            (
                Header {
                    page_size: 256,
                    ..ok
                },
                "page size",
            ),
            (
                Header {
                    min_txid: TxId(0),
                    ..ok
                },
                "at least 1",
            ),
            (
                Header {
                    min_txid: TxId(3),
                    max_txid: TxId(2),
                    ..ok
                },
                "above",
            ),
            (
                Header {
                    wal_offset: -1,
                    ..ok
                },
                "negative",
            ),
            (Header { wal_salt1: 1, ..ok }, "salt"),
            (Header { wal_size: 1, ..ok }, "WAL size"),
            (
                Header {
                    pre_apply_checksum: 5,
                    ..ok
                },
                "pre-apply",
            ),
            (
                Header {
                    flags: 0,
                    min_txid: TxId(2),
                    max_txid: TxId(2),
                    ..ok
                },
                "pre-apply",
            ),
        ];
        for (h, want) in cases {
            let err = h.validate().expect_err(want);
            assert!(err.contains(want), "{err} should mention {want}");
        }
        assert!(ok.validate().is_ok());
    }

    #[test]
    fn uvarint_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_uvarint(&mut b, v);
            let mut p = 0;
            assert_eq!(get_uvarint(&b, &mut p), Some(v));
            assert_eq!(p, b.len());
        }
    }

    #[test]
    fn lock_page() {
        assert_eq!(lock_pgno(4096), 262_145);
        assert_eq!(lock_pgno(65536), 16_385);
    }
}
