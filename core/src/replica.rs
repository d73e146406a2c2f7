//! Ships a database's local L0 files to its replica, in TXID order, and
//! tracks the replica's position.

use std::path::Path;
use std::sync::Arc;

use crate::client::{FileInfo, LtxBody, ReplicaClient};
use crate::db::Db;
use crate::error::Result;
use crate::ltx::PageIndex;
use crate::txid::{TxId, ltx_file_name};

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
    /// The local files do not reach the replica's position: a snapshot was
    /// requested from the database.
    pub gap: bool,
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

    /// Uploads the local L0 files the replica lacks, in order, adding each
    /// to `report` as it lands: when a later file fails, `report` still
    /// says which reached the replica. If the local files cannot continue
    /// the replica's TXID sequence, asks `db` for a snapshot that bridges
    /// the gap instead of leaving one.
    pub async fn upload(&mut self, db: &mut Db, report: &mut UploadReport) -> Result<()> {
        let remote = match self.pos {
            Some(p) => p,
            None => self.fetch_position().await?,
        };
        let local = db.local_l0_files()?;
        let mut cur = remote;
        loop {
            // The file that extends the replica furthest.
            let next = local
                .iter()
                .filter(|(min, max)| min.0 <= cur.0 + 1 && *max > cur)
                .max_by_key(|(_, max)| *max)
                .copied();
            let Some((min, max)) = next else { break };
            let path = db.l0_dir().join(ltx_file_name(min, max));
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
        if local.last().is_some_and(|(_, max)| *max > cur) {
            report.gap = true;
            db.require_snapshot_from(
                cur.next(),
                &format!(
                    "local L0 files do not continue the replica at TXID {}",
                    cur.next()
                ),
            );
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
