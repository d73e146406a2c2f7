//! What the replica holds, as far as scheduling needs to know: learned by
//! one listing when replication starts, then kept current by every
//! upload, compaction and deletion this process makes.

use jiff::Timestamp;

use crate::client::{FileInfo, ReplicaClient, SNAPSHOT_LEVEL};
use crate::error::Result;
use crate::txid::TxId;

/// What the replica holds, as far as scheduling needs to know.
#[derive(Debug, Clone, Default)]
pub struct LevelState {
    /// Newest file (highest max TXID) of each level 0..=9.
    pub newest: [Option<FileInfo>; 10],
    /// The remote L0 files, ascending.
    pub l0: Vec<FileInfo>,
    /// The snapshots, ascending.
    pub snapshots: Vec<FileInfo>,
    /// Since when each level holds files the next level lacks.
    pub pending_since: [Option<Timestamp>; 10],
    /// Levels to run once at startup (as Litestream does).
    pub startup: [bool; 10],
    /// When each level's task last ran: at most once per boundary, as
    /// Litestream's tickers run.
    pub last_run: [Option<Timestamp>; 10],
    /// A failed snapshot is not asked for again before this.
    pub snapshot_not_before: Option<Timestamp>,
    /// The newest L0 file known to hold every page of the database (a
    /// snapshot the database wrote as L0), by its max TXID: L1 reads no
    /// file before it. Known only to the process that wrote it.
    pub full_l0: Option<TxId>,
}

pub(super) fn max_of(f: &Option<FileInfo>) -> TxId {
    f.as_ref().map_or(TxId::ZERO, |f| f.max_txid)
}

impl LevelState {
    /// The highest TXID at any level. The replica's position while the
    /// database runs is [`Replica`](crate::replica::Replica)'s; this is
    /// what a listing found, to seed it.
    pub fn position(&self) -> TxId {
        self.newest.iter().map(max_of).max().unwrap_or(TxId::ZERO)
    }

    /// Lists every level once.
    pub async fn load(client: &dyn ReplicaClient) -> Result<LevelState> {
        let mut s = LevelState::default();
        let mut by_level: [Vec<FileInfo>; SNAPSHOT_LEVEL as usize + 1] = Default::default();
        for f in client.all_ltx_files().await? {
            if let Some(v) = by_level.get_mut(f.level as usize) {
                v.push(f);
            }
        }
        for level in 0..=SNAPSHOT_LEVEL {
            let files = std::mem::take(&mut by_level[level as usize]);
            let newest = files.iter().max_by_key(|f| f.max_txid).cloned();
            if let Some(n) = &newest {
                s.pending_since[level as usize] = Some(n.created_at);
            }
            s.newest[level as usize] = newest;
            match level {
                0 => s.l0 = files,
                SNAPSHOT_LEVEL => s.snapshots = files,
                _ => {}
            }
        }
        // L1 is due 30 s after the oldest L0 file it lacks, not the
        // newest: a database written again and again would otherwise push
        // it back at every start.
        let l1 = max_of(&s.newest[1]);
        s.pending_since[0] =
            s.l0.iter()
                .filter(|f| f.max_txid > l1)
                .map(|f| f.created_at)
                .min();
        s.startup = [true; 10];
        Ok(s)
    }

    /// Drops the start-up runs of the levels that already hold files:
    /// they run when their intervals say, overdue ones at once. Empty
    /// levels still run once, so a new replica gets its levels and its
    /// first snapshot. For replicators started again and again (a fleet
    /// promotes a database at each write after a rest).
    pub fn run_on_schedule(&mut self) {
        for level in 1..=SNAPSHOT_LEVEL as usize {
            if self.newest[level].is_some() {
                self.startup[level] = false;
            }
        }
    }

    pub(super) fn add(&mut self, f: &FileInfo) {
        let l = f.level as usize;
        if f.max_txid > max_of(&self.newest[l]) {
            self.newest[l] = Some(f.clone());
        }
        if self.pending_since[l].is_none() {
            self.pending_since[l] = Some(f.created_at);
        }
        match f.level {
            0 => self.l0.push(f.clone()),
            SNAPSHOT_LEVEL => self.snapshots.push(f.clone()),
            _ => {}
        }
    }
}
