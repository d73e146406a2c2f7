//! Retention: deletes only files newer files cover. L0 files once L1
//! reaches them and `l0-retention` passed; snapshots past
//! `snapshot.retention`, never the newest; L1+ files below the newest
//! deleted snapshot; always one file per level.

use crate::client::{FileInfo, SNAPSHOT_LEVEL, list_all};
use crate::error::Result;
use crate::txid::TxId;

use super::state::max_of;
use super::{Maintainer, sub};

use jiff::Timestamp;

impl Maintainer {
    async fn delete(&self, level: u32, files: &[FileInfo]) -> Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        if !self.cfg.retention_enabled {
            tracing::debug!(db = %self.name, level, count = files.len(), "retention disabled: remote files left in place");
            return Ok(());
        }
        self.client.delete_ltx_files(files).await?;
        crate::crashpoint::here("retention-deleted");
        tracing::debug!(db = %self.name, level, count = files.len(), "deleted by retention");
        Ok(())
    }

    /// Deletes L0 files that L1 covers once they are older than the L0
    /// retention, oldest first, stopping at the first one too recent.
    pub async fn enforce_l0_retention(&self) -> Result<()> {
        let threshold = sub(Timestamp::now(), self.cfg.l0_retention);
        let (doomed, not_compacted, too_recent) = {
            let s = self.st();
            let l1 = max_of(&s.newest[1]);
            let mut out = Vec::new();
            let mut not_compacted = 0;
            let mut too_recent = 0;
            for f in &s.l0 {
                if too_recent > 0 || f.created_at > threshold {
                    too_recent += 1; // and every file after it
                } else if f.max_txid <= l1 {
                    out.push(f.clone());
                } else {
                    not_compacted += 1;
                }
            }
            if too_recent == 0 && out.last() == s.l0.last() {
                out.pop(); // the newest L0 file always stays
            }
            (out, not_compacted, too_recent)
        };
        if let Some(m) = self.metrics.get() {
            m.l0_retention(doomed.len(), not_compacted, too_recent);
        }
        self.delete(0, &doomed).await?;
        let mut s = self.st();
        s.l0.retain(|f| !doomed.contains(f));
        Ok(())
    }

    /// Deletes snapshots older than the snapshot retention (never the
    /// newest), then the L1+ files that only a deleted snapshot's history
    /// needed.
    pub async fn enforce_snapshot_retention(&self) -> Result<()> {
        let cutoff = sub(Timestamp::now(), self.cfg.snapshot_retention);
        let (doomed, floor) = {
            let s = self.st();
            let snaps = &s.snapshots;
            let mut doomed: Vec<FileInfo> = snaps
                .iter()
                .filter(|f| f.created_at < cutoff)
                .cloned()
                .collect();
            if doomed.last() == snaps.last() {
                doomed.pop();
            }
            // The floor is the newest deleted snapshot before the first kept
            // one, so files an in-flight restore from it planned survive.
            let mut floor = TxId::ZERO;
            for (i, f) in snaps.iter().enumerate() {
                if doomed.contains(f) {
                    continue;
                }
                if i > 0 {
                    floor = snaps[i - 1].max_txid;
                }
                break;
            }
            (doomed, floor)
        };
        self.delete(SNAPSHOT_LEVEL, &doomed).await?;
        self.st().snapshots.retain(|f| !doomed.contains(f));
        if floor > TxId::ZERO {
            for level in 1..=self.cfg.max_level() {
                let files = list_all(self.client.as_ref(), level, false).await?;
                let mut old: Vec<FileInfo> = files
                    .iter()
                    .filter(|f| f.max_txid < floor)
                    .cloned()
                    .collect();
                if old.last() == files.last() {
                    old.pop(); // at least one file per level stays
                }
                self.delete(level, &old).await?;
            }
        }
        Ok(())
    }
}
