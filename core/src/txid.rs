//! Transaction IDs and LTX file names (format spec §1.6).

use std::fmt;
use std::str::FromStr;

/// A replication transaction ID: one per sync, counted from 1.
///
/// Printed as 16 lowercase hex digits, as in LTX file names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TxId(pub u64);

impl TxId {
    /// The "no transaction" value; the first real TXID is 1.
    pub const ZERO: TxId = TxId(0);

    /// The next TXID.
    pub fn next(self) -> TxId {
        TxId(self.0 + 1)
    }
}

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Error for a TXID that is not 16 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid TXID {0:?}: expected 16 hex digits")]
pub struct ParseTxIdError(pub String);

impl FromStr for TxId {
    type Err = ParseTxIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseTxIdError(s.to_string()));
        }
        u64::from_str_radix(s, 16)
            .map(TxId)
            .map_err(|_| ParseTxIdError(s.to_string()))
    }
}

/// The file name of an LTX file covering `min..=max`: `<min>-<max>.ltx`.
pub fn ltx_file_name(min: TxId, max: TxId) -> String {
    format!("{min}-{max}.ltx")
}

/// Parses `<16 hex>-<16 hex>.ltx` (lowercase only, as Litestream writes).
pub fn parse_ltx_file_name(name: &str) -> Option<(TxId, TxId)> {
    let stem = name.strip_suffix(".ltx")?;
    if stem.len() != 33 || stem.as_bytes()[16] != b'-' {
        return None;
    }
    let lower_hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let (a, b) = (&stem[..16], &stem[17..]);
    if !lower_hex(a) || !lower_hex(b) {
        return None;
    }
    let min = u64::from_str_radix(a, 16).ok()?;
    let max = u64::from_str_radix(b, 16).ok()?;
    Some((TxId(min), TxId(max)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let n = ltx_file_name(TxId(1), TxId(0xabc));
        assert_eq!(n, "0000000000000001-0000000000000abc.ltx");
        assert_eq!(parse_ltx_file_name(&n), Some((TxId(1), TxId(0xabc))));
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "0000000000000001-0000000000000ABC.ltx",
            "0000000000000001-000000000000abc.ltx",
            "0000000000000001_0000000000000abc.ltx",
            "0000000000000001-0000000000000abc.ltx.tmp",
            "x.ltx",
        ] {
            assert_eq!(parse_ltx_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn parses_txid() {
        assert_eq!("00000000000000ff".parse::<TxId>(), Ok(TxId(255)));
        assert!("ff".parse::<TxId>().is_err());
        assert!("+0000000000000ff".parse::<TxId>().is_err());
    }
}
