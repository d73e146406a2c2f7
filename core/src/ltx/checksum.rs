//! LTX checksums (format spec §1.5): CRC-64/ISO as Go's `hash/crc64`
//! computes it (`CRC_64_GO_ISO`), with bit 63 forced on every stored value.
//! The CRC itself comes from `crc-fast` (carry-less multiplication, about
//! 6× the table-driven `crc` crate here); a test checks it against `crc`.
//!
//! Besides the plain CRC this module can *combine* two CRCs
//! (`crc(A ‖ B)` from `crc(A)`, `crc(B)` and `len(B)`), which lets the
//! encoder and the restore path checksum pages on several cores and still
//! produce the one file checksum the format defines.

/// Bit 63: set on every stored checksum; a stored 0 means "absent".
pub const CHECKSUM_FLAG: u64 = 1 << 63;

/// Reflected polynomial of CRC-64/ISO.
const POLY_REFLECTED: u64 = 0xD800_0000_0000_0000;

/// CRC-64/GO-ISO of `data`.
pub fn crc64(data: &[u8]) -> u64 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64GoIso, data)
}

/// A streaming CRC-64/GO-ISO.
#[derive(Clone)]
pub struct Crc64Digest(crc_fast::Digest);

impl std::fmt::Debug for Crc64Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Crc64Digest")
    }
}

impl Default for Crc64Digest {
    fn default() -> Self {
        Crc64Digest(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64GoIso))
    }
}

impl Crc64Digest {
    /// Appends bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The CRC of everything appended.
    pub fn finalize(&self) -> u64 {
        self.0.finalize()
    }
}

/// Multiplies two polynomials modulo the CRC polynomial (reflected form;
/// bit 63 is x^0).
fn mult_mod_p(a: u64, mut b: u64) -> u64 {
    let mut m = 1u64 << 63;
    let mut p = 0u64;
    loop {
        if a & m != 0 {
            p ^= b;
            if a & (m - 1) == 0 {
                break;
            }
        }
        m >>= 1;
        b = if b & 1 != 0 {
            (b >> 1) ^ POLY_REFLECTED
        } else {
            b >> 1
        };
    }
    p
}

/// `X2N[k]` = x^(2^k) mod p.
fn x2n_table() -> &'static [u64; 64] {
    static TABLE: std::sync::OnceLock<[u64; 64]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [0u64; 64];
        let mut p = 1u64 << 62; // x^1
        for slot in t.iter_mut() {
            *slot = p;
            p = mult_mod_p(p, p);
        }
        t
    })
}

/// The operator that shifts a CRC over `len` zero bytes: x^(8·len) mod p.
pub fn shift_operator(len: u64) -> u64 {
    let table = x2n_table();
    let mut p = 1u64 << 63; // x^0
    let mut n = len;
    let mut k = 3usize; // 8 bits per byte = 2^3
    while n != 0 {
        if n & 1 != 0 {
            p = mult_mod_p(table[k & 63], p);
        }
        n >>= 1;
        k += 1;
    }
    p
}

/// `crc(A ‖ B)` from `crc(A)`, `crc(B)` and the operator for `len(B)`
/// (see [`shift_operator`]).
pub fn combine_with(crc_a: u64, crc_b: u64, op_len_b: u64) -> u64 {
    mult_mod_p(op_len_b, crc_a) ^ crc_b
}

/// `crc(A ‖ B)` from `crc(A)`, `crc(B)` and `len(B)`.
pub fn combine(crc_a: u64, crc_b: u64, len_b: u64) -> u64 {
    combine_with(crc_a, crc_b, shift_operator(len_b))
}

/// A running CRC over a sequence of segments, each either hashed here or
/// hashed elsewhere (another thread) and combined in order.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunningCrc {
    value: u64,
}

impl RunningCrc {
    /// Appends bytes hashed here.
    pub fn update(&mut self, data: &[u8]) {
        self.value = combine(self.value, crc64(data), data.len() as u64);
    }

    /// Appends a segment whose CRC was computed elsewhere; `op` is
    /// `shift_operator(segment_len)`.
    pub fn append(&mut self, segment_crc: u64, op: u64) {
        self.value = combine_with(self.value, segment_crc, op);
    }

    /// The CRC of everything appended so far.
    pub fn value(&self) -> u64 {
        self.value
    }
}

/// Page checksum: `FLAG | CRC64(BE32(pgno) ‖ page)`.
pub fn page_checksum(pgno: u32, page: &[u8]) -> u64 {
    let mut d = Crc64Digest::default();
    d.update(&pgno.to_be_bytes());
    d.update(page);
    CHECKSUM_FLAG | d.finalize()
}

/// The rolling database checksum over pages `1..=commit`, skipping the lock
/// page: start at FLAG, then `c = FLAG | (c ^ page_checksum)` per page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatabaseChecksum(pub u64);

impl Default for DatabaseChecksum {
    fn default() -> Self {
        DatabaseChecksum(CHECKSUM_FLAG)
    }
}

impl DatabaseChecksum {
    /// Folds one page in (or out: XOR is its own inverse).
    pub fn toggle(&mut self, page_checksum: u64) {
        self.0 = CHECKSUM_FLAG | (self.0 ^ page_checksum);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn check_value() {
        assert_eq!(crc64(b"123456789"), 0xB909_56C7_75A4_1001);
    }

    #[test]
    fn matches_the_crc_crate() {
        let reference = crc::Crc::<u64>::new(&crc::CRC_64_GO_ISO);
        let data: Vec<u8> = (0..100_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in [0usize, 1, 7, 15, 16, 17, 63, 64, 65, 4096, 4106, 100_000] {
            assert_eq!(
                crc64(&data[..len]),
                reference.checksum(&data[..len]),
                "len {len}"
            );
            let mut d = Crc64Digest::default();
            for part in data[..len].chunks(33) {
                d.update(part);
            }
            assert_eq!(
                d.finalize(),
                reference.checksum(&data[..len]),
                "streamed len {len}"
            );
        }
    }

    #[test]
    fn rolling_checksum_vector() {
        // Spec §1.5: 3 × 512-byte pages of 0x01, 0x02, 0x03.
        let mut c = DatabaseChecksum::default();
        for (i, b) in [1u8, 2, 3].into_iter().enumerate() {
            c.toggle(page_checksum(i as u32 + 1, &[b; 512]));
        }
        assert_eq!(c.0, 0xEFFF_FFFF_ECD9_9000);
    }

    #[test]
    fn combine_matches_direct() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for split in [0usize, 1, 7, 100, 4096, 9_999, 10_000] {
            let (a, b) = data.split_at(split);
            assert_eq!(
                combine(crc64(a), crc64(b), b.len() as u64),
                crc64(&data),
                "split {split}"
            );
        }
        let mut r = RunningCrc::default();
        for chunk in data.chunks(333) {
            r.update(chunk);
        }
        assert_eq!(r.value(), crc64(&data));
    }
}
