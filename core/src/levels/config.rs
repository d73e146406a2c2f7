//! Level and retention settings, and the interval boundaries tasks run
//! at (aligned as Go's `Time.Truncate` aligns them).

use std::time::Duration;

use jiff::Timestamp;

use crate::client::SNAPSHOT_LEVEL;
use crate::error::{Error, Result};

/// Level and retention settings (Litestream's `levels`, `snapshot`,
/// `l0-retention`, `retention`, `verify-compaction`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelsConfig {
    /// Compaction interval of L1, L2, ... (at most 8 levels).
    pub intervals: Vec<Duration>,
    pub snapshot_interval: Duration,
    pub snapshot_retention: Duration,
    /// L0 files are kept this long after L1 covers them.
    pub l0_retention: Duration,
    /// False: never delete remote files (bucket lifecycle rules do it).
    pub retention_enabled: bool,
    /// After each compaction, list the level and check its TXIDs are
    /// contiguous.
    pub verify_compaction: bool,
}

impl Default for LevelsConfig {
    fn default() -> Self {
        LevelsConfig {
            intervals: vec![
                Duration::from_secs(30),
                Duration::from_secs(5 * 60),
                Duration::from_secs(3600),
            ],
            snapshot_interval: Duration::from_secs(24 * 3600),
            snapshot_retention: Duration::from_secs(24 * 3600),
            l0_retention: Duration::from_secs(5 * 60),
            retention_enabled: true,
            verify_compaction: false,
        }
    }
}

impl LevelsConfig {
    /// The highest compaction level below the snapshots.
    pub fn max_level(&self) -> u32 {
        self.intervals.len() as u32
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.intervals.len() > (SNAPSHOT_LEVEL - 1) as usize {
            return Err(Error::InvalidInput(format!(
                "levels: at most {} compaction levels",
                SNAPSHOT_LEVEL - 1
            )));
        }
        for (i, d) in self.intervals.iter().enumerate() {
            if d.is_zero() {
                return Err(Error::InvalidInput(format!(
                    "levels[{i}]: interval required for level {}",
                    i + 1
                )));
            }
        }
        if self.snapshot_interval.is_zero() {
            return Err(Error::InvalidInput(
                "snapshot.interval must be positive".into(),
            ));
        }
        Ok(())
    }

    /// The shortest pause between two runs of one database's tasks.
    pub(super) fn min_gap(&self) -> Duration {
        self.intervals
            .iter()
            .copied()
            .chain([self.snapshot_interval, Duration::from_secs(1)])
            .min()
            .unwrap_or(Duration::from_secs(1))
    }

    pub(super) fn interval(&self, level: u32) -> Duration {
        if level == SNAPSHOT_LEVEL {
            self.snapshot_interval
        } else {
            self.intervals[level as usize - 1]
        }
    }
}

/// Nanoseconds from Go's zero time (0001-01-01 UTC) to the Unix epoch: Go
/// aligns `Truncate` to the former.
const GO_ZERO_OFFSET_NS: i128 = 62_135_596_800 * 1_000_000_000;

/// The first boundary of `interval` at or after `t`.
pub fn ceil_boundary(t: Timestamp, interval: Duration) -> Timestamp {
    let d = interval.as_nanos() as i128;
    if d == 0 {
        return t;
    }
    let abs = t.as_nanosecond() + GO_ZERO_OFFSET_NS;
    let floor = abs - abs.rem_euclid(d);
    let b = if floor == abs { abs } else { floor + d };
    Timestamp::from_nanosecond(b - GO_ZERO_OFFSET_NS).unwrap_or(t)
}
