//! Ships a database's local L0 files to its replica, in TXID order, and
//! tracks the replica's position: the one record of how far the replica
//! reaches, for the database's whole run.

use std::path::Path;
use std::sync::Arc;

use crate::client::{FileInfo, LtxBody, ReplicaClient};
use crate::error::Result;
use crate::ltx::PageIndex;
use crate::meta_dir::MetaDir;
use crate::txid::TxId;

/// One database's replica.
#[derive(Debug, Clone)]
pub struct Replica {
    client: Arc<dyn ReplicaClient>,
    /// Highest TXID the replica holds, once known.
    pos: Option<TxId>,
}

/// What an upload pass did.
#[derive(Debug, Clone, Default)]
pub struct UploadReport {
    pub files: Vec<FileInfo>,
    pub bytes: u64,
    /// The local files cannot continue the replica's TXID sequence: the
    /// database must write a snapshot covering TXIDs from here
    /// ([`Db::require_snapshot_from`](crate::db::Db::require_snapshot_from))
    /// rather than leave a gap.
    pub gap_from: Option<TxId>,
    /// The pass stopped at its file limit with files left to upload.
    pub limited: bool,
}

impl Replica {
    /// A replica stored through `client`.
    pub fn new(client: Arc<dyn ReplicaClient>) -> Self {
        Replica { client, pos: None }
    }

    /// The storage client.
    pub fn client(&self) -> &Arc<dyn ReplicaClient> {
        &self.client
    }

    /// The replica's position, if known.
    pub fn position(&self) -> Option<TxId> {
        self.pos
    }

    /// Sets the replica's position when it was learned elsewhere.
    pub fn set_position(&mut self, pos: TxId) {
        self.pos = Some(pos);
    }

    /// Learns the replica's position: the highest TXID at any level. One
    /// listing of every level (S3: one request for a new replica), done
    /// once; afterwards uploads keep it current.
    pub async fn fetch_position(&mut self) -> Result<TxId> {
        let best = self
            .client
            .all_ltx_files()
            .await?
            .iter()
            .map(|f| f.max_txid)
            .max()
            .unwrap_or(TxId::ZERO);
        self.pos = Some(best);
        Ok(best)
    }

    /// Uploads the L0 files of `local` the replica lacks, in order, adding
    /// each to `report` as it lands: when a later file fails, `report`
    /// still says which reached the replica. If the local files cannot
    /// continue the replica's TXID sequence, `report.gap_from` says where
    /// the bridging snapshot must start. At most `limit` files go up in
    /// one pass (`0`: no limit; Litestream's `max-sync-ltx-files`), so a
    /// long backlog does not hold the database's next sync back; then
    /// `report.limited` is set.
    pub async fn upload(
        &mut self,
        local: &MetaDir,
        limit: usize,
        report: &mut UploadReport,
    ) -> Result<()> {
        let remote = match self.pos {
            Some(p) => p,
            None => self.fetch_position().await?,
        };
        let files = local.l0_files()?;
        let mut cur = remote;
        loop {
            // The file that extends the replica furthest.
            let next = files
                .iter()
                .filter(|(min, max)| min.0 <= cur.0 + 1 && *max > cur)
                .max_by_key(|(_, max)| *max)
                .copied();
            let Some((min, max)) = next else { break };
            if limit > 0 && report.files.len() >= limit {
                report.limited = true;
                return Ok(());
            }
            let path = local.l0_path(min, max);
            check_complete(&path)?;
            let info = self
                .client
                .write_ltx_file(0, min, max, LtxBody::File(path))
                .await?;
            crate::crashpoint::here("uploaded");
            report.bytes += info.size;
            report.files.push(info);
            cur = max;
            self.pos = Some(cur);
        }
        if files.last().is_some_and(|(_, max)| *max > cur) {
            report.gap_from = Some(cur.next());
        }
        Ok(())
    }
}

/// A cheap structural check before upload: the file's index and trailer
/// parse, so a truncated file is never shipped.
fn check_complete(path: &Path) -> Result<()> {
    let f = std::fs::File::open(path)
        .map_err(|e| crate::Error::io(format!("open {}", path.display()), e))?;
    PageIndex::read(&f, &path.display().to_string()).map(|_| ())
}
