//! The per-database engine (spec §3): turns committed WAL frames into L0 LTX
//! files in the database's meta directory, and checkpoints the WAL.
//!
//! Its rooms: [`session`] (connections, locks, the read transaction that
//! pins the WAL), [`continuity`] (the position and the plan for the next
//! file), `sync` (carrying the plan out), [`writer`] (the L0 encoding
//! pipeline), [`checkpoint`] and [`seal`]. The meta directory's layout is
//! [`MetaDir`]'s.
//!
//! # Continuity
//!
//! Every L0 file records where in which WAL generation it ended (WAL
//! offset and size, salts). The next sync must prove that nothing was committed
//! between that point and what it reads now, or take a snapshot. The rules:
//!
//! - A long-running read transaction pins the WAL: while we hold it no other
//!   process can checkpoint past our snapshot or restart the WAL under us.
//! - Same salts as the last L0: the generation continues; frames after the
//!   last synced offset are new. The frame before that offset must still be
//!   ours (same salts) to seed the checksum chain.
//! - Other salts: a matching last page is *not* proof of continuity (that is
//!   how Litestream 0.5.17 loses data). We continue from offset 32 of the new
//!   generation only when we know the old one ended where we stopped: we
//!   sealed it ourselves in a checkpoint while holding the write lock, or,
//!   after exactly one restart (`salt1' == salt1 + 1`), we read the old
//!   generation onward from our offset with its salts and checksum chain —
//!   under the write lock, so the new generation cannot overwrite it while
//!   we read — and ship any committed frames found there first.
//! - Anything else (several restarts, an overwritten last frame, a truncated
//!   old generation, a WAL that vanished) gets a snapshot.
//! - Going cold ([`Db::seal`]): under the write lock, sync to the end and
//!   checkpoint every frame, then empty the WAL and record the database
//!   file's size, mtime and inode in `seal.json` of the meta directory.
//!   When the database is opened again and its file still matches that
//!   record (checked while our read transaction pins the WAL), the file
//!   holds exactly the sealed TXID and whatever WAL generation is present
//!   holds every later change: the next sync is incremental. If another
//!   process checkpointed in between, the file no longer matches and a
//!   snapshot is taken.
//!
//! We never create tables in the user's database: the read transaction
//! reads the schema cookie (`PRAGMA schema_version`), and the write-lock
//! barrier is `BEGIN IMMEDIATE` on a second connection that never writes.

mod checkpoint;
mod continuity;
mod seal;
mod session;
mod snapshot;
mod sync;
mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::dbfile;
use crate::error::{Error, Result};
use crate::meta_dir::{MetaDir, MetaLock};
use crate::txid::TxId;

pub use continuity::Position;

use checkpoint::CheckpointClock;
use continuity::{Continuity, SnapshotDemand};
use session::Session;

/// Tuning of one database's engine. Defaults are Litestream 0.5.17's.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// SQLite busy timeout for our connections.
    pub busy_timeout: Duration,
    /// PASSIVE checkpoint once the WAL holds this many pages (0 = never).
    pub min_checkpoint_page_count: u32,
    /// TRUNCATE checkpoint once the WAL holds this many pages (0 = never).
    pub truncate_page_count: u32,
    /// PASSIVE checkpoint after this long without one, if data was synced
    /// (zero = never).
    pub checkpoint_interval: Duration,
    /// A sync stops at the first commit at or past this many WAL bytes and
    /// continues with the next TXID (0 = no limit).
    pub max_sync_wal_bytes: u64,
    /// Where L0 files live; default `<dir>/.<name>-litestream`.
    pub meta_dir: Option<PathBuf>,
    /// How this database's metrics are labelled.
    pub metrics: crate::metrics::DbMetrics,
}

impl DbOptions {
    /// The meta directory these options give the database at `db`.
    pub fn meta_dir_of(&self, db: &Path) -> MetaDir {
        match &self.meta_dir {
            Some(dir) => MetaDir::new(dir),
            None => MetaDir::for_db(db),
        }
    }
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            busy_timeout: Duration::from_secs(1),
            min_checkpoint_page_count: 1000,
            truncate_page_count: 121_359,
            checkpoint_interval: Duration::from_secs(60),
            max_sync_wal_bytes: 64 << 20,
            meta_dir: None,
            metrics: crate::metrics::DbMetrics::Aggregate,
        }
    }
}

/// One L0 file written by a sync.
#[derive(Debug, Clone)]
pub struct L0File {
    /// First TXID covered (equal to `txid` except for a snapshot that
    /// bridges TXIDs the replica lacks).
    pub min_txid: TxId,
    pub txid: TxId,
    pub path: PathBuf,
    pub size: u64,
    pub pages: u32,
    /// Every page of the database (continuity could not be proven).
    pub snapshot: bool,
    /// WAL bytes this file covers.
    pub wal_bytes: u64,
}

/// What a sync did.
#[derive(Debug, Clone, Default)]
pub struct SyncOutcome {
    pub files: Vec<L0File>,
    /// Why a snapshot was taken, if one was.
    pub snapshot_reason: Option<String>,
    /// A checkpoint that ran after the sync.
    pub checkpoint: Option<CheckpointMode>,
}

/// Checkpoint modes we run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointMode {
    Passive,
    Truncate,
}

/// One database under replication.
#[derive(Debug)]
pub struct Db {
    path: PathBuf,
    wal_path: PathBuf,
    name: String,
    meta: MetaDir,
    opts: DbOptions,
    /// Open from the first sync (or [`open`](Db::open)) to [`close`](Db::close).
    session: Option<Session>,
    /// The meta directory, ours while the session is open.
    lock: Option<MetaLock>,
    page_size: u32,
    pos: Option<Position>,
    /// What is known beyond `pos`; valid only while the read transaction
    /// has been held without a break since it was learned.
    continuity: Option<Continuity>,
    snapshot_demand: SnapshotDemand,
    checkpoints: CheckpointClock,
    /// The inode at `path` when the session was opened (taken before it,
    /// so a file renamed over it in between reads as replaced, never the
    /// other way round). The session reads that file whatever the path
    /// names later.
    opened_ino: u64,
    /// The newest L0 file this engine wrote holding every page (a
    /// snapshot): the files before it are redundant once it is shipped.
    full_state_l0: Option<TxId>,
}

impl Db {
    /// Prepares the engine for the database at `path`. Nothing is opened
    /// until the first [`sync`](Self::sync) or [`open`](Self::open).
    pub fn new(path: impl Into<PathBuf>, opts: DbOptions) -> Db {
        let path: PathBuf = path.into();
        let meta = opts.meta_dir_of(&path);
        Db {
            name: path.display().to_string(),
            wal_path: dbfile::wal_path(&path),
            meta,
            path,
            opts,
            session: None,
            lock: None,
            page_size: 0,
            pos: None,
            continuity: None,
            snapshot_demand: SnapshotDemand::default(),
            checkpoints: CheckpointClock::new(),
            opened_ino: 0,
            full_state_l0: None,
        }
    }

    /// The newest L0 file this engine wrote that holds every page of the
    /// database (a snapshot), by TXID.
    pub fn full_state_l0(&self) -> Option<TxId> {
        self.full_state_l0
    }

    /// The database path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The meta directory (local L0 files, scratch space, seal record).
    pub fn meta(&self) -> &MetaDir {
        &self.meta
    }

    /// The meta directory's path.
    pub fn meta_dir(&self) -> &Path {
        self.meta.path()
    }

    /// The page size (after open).
    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    /// True while the connection and read transaction are held.
    pub fn is_open(&self) -> bool {
        self.session.is_some()
    }

    /// The current position (newest local L0), reading it from disk once.
    pub fn position(&mut self) -> Result<Option<Position>> {
        if self.pos.is_none() {
            self.pos = self.load_position()?;
        }
        Ok(self.pos)
    }

    fn load_position(&self) -> Result<Option<Position>> {
        Ok(self
            .meta
            .newest_l0_header()?
            .map(|h| Position::from_header(&h)))
    }

    /// Forgets the local position after the meta directory's LTX files
    /// were removed ([`MetaDir::reset`]): the next sync writes a snapshot,
    /// above `floor` (what the replica holds), so nothing there is
    /// overwritten.
    pub fn forget_position(&mut self, floor: TxId) -> Result<()> {
        self.pos = None;
        self.continuity = None;
        self.set_txid_floor(floor);
        self.meta.create()
    }

    /// Tells the engine the replica already holds TXIDs up to `txid` (for
    /// example after a restore, or when the local meta directory was lost):
    /// the next file will be a snapshot with a higher TXID, so nothing in
    /// the replica is ever overwritten.
    pub fn set_txid_floor(&mut self, txid: TxId) {
        self.snapshot_demand.raise_floor(txid);
    }

    /// Asks for the next file to be a snapshot covering TXIDs from `min`:
    /// used when the replica lacks TXIDs the local L0 files no longer hold
    /// (min 1 starts the replica afresh).
    pub fn require_snapshot_from(&mut self, min: TxId, reason: &str) {
        self.snapshot_demand.require_from(min, reason);
    }

    /// Opens the connection, switches the database to WAL mode, and takes
    /// the read transaction. Idempotent.
    pub fn open(&mut self) -> Result<()> {
        if self.session.is_some() {
            if !self.replaced() {
                // A failed attempt may have left the read transaction
                // released: never sync without the WAL pinned.
                return self.begin_read_tx();
            }
            // Another file was renamed over the database: the session
            // reads the old file while the path's WAL is the new one's.
            // Start over on the new file with a snapshot of it.
            self.close()?;
            self.snapshot_demand.require("database file replaced");
        }
        let opened_ino = dbfile::FileSig::of(&self.path).db_ino;
        let (session, page_size) = Session::open(&self.path, &self.name, self.opts.busy_timeout)?;
        // Before anything in the meta directory is read or removed (the
        // temporary files there may be another engine's writes), and only
        // for a database that opened (no meta directory beside a path
        // that is not one).
        let lock = match self.meta.lock(&self.name) {
            Ok(l) => l,
            Err(e) => {
                let _ = session.close(); // the lock's error is the one to report
                return Err(e);
            }
        };
        self.opened_ino = opened_ino;
        self.meta.create()?;
        self.meta.remove_stale_tmp_files()?;
        self.lock = Some(lock);
        self.session = Some(session);
        self.page_size = page_size;
        self.continuity = None;
        self.begin_read_tx()?;
        if let Some(s) = self.session.as_mut() {
            s.open_shm();
        }
        self.pos = self.load_position()?;
        if self.seal_matches() {
            // Checked while our read transaction pins the WAL.
            self.continuity = Some(Continuity::DbFile);
        }
        Ok(())
    }

    /// True when the file at the path is no longer the one the session
    /// opened (renamed over, or deleted and recreated). Its old inode
    /// cannot be reused while the session holds it open.
    pub(super) fn replaced(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        self.session.is_some()
            && std::fs::metadata(&self.path).is_ok_and(|m| m.ino() != self.opened_ino)
    }

    fn session(&self) -> Result<&Session> {
        self.session
            .as_ref()
            .ok_or_else(|| Error::InvalidInput(format!("{}: database not open", self.name)))
    }

    fn session_mut(&mut self) -> Result<&mut Session> {
        self.session
            .as_mut()
            .ok_or_else(|| Error::InvalidInput(format!("{}: database not open", self.name)))
    }

    fn begin_read_tx(&mut self) -> Result<()> {
        self.session_mut()?.begin_read()
    }

    fn end_read_tx(&mut self) -> Result<()> {
        let Some(s) = self.session.as_mut() else {
            return Ok(());
        };
        if s.is_reading() {
            // What we knew about the WAL held only while the WAL was pinned.
            self.continuity = None;
        }
        s.end_read()
    }

    fn acquire_write_lock(&mut self) -> Result<bool> {
        self.session_mut()?.acquire_write_lock()
    }

    fn release_write_lock(&mut self) -> Result<()> {
        match self.session.as_mut() {
            Some(s) => s.release_write_lock(),
            None => Ok(()),
        }
    }

    fn is_write_locked(&self) -> bool {
        self.session.as_ref().is_some_and(Session::is_write_locked)
    }

    /// Releases the read transaction and closes the connections. The WAL
    /// is left as it is (no checkpoint on close).
    pub fn close(&mut self) -> Result<()> {
        self.continuity = None;
        let closed = match self.session.take() {
            Some(s) => s.close(),
            None => Ok(()),
        };
        // After the connections: another engine may start once it is gone.
        self.lock = None;
        closed
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = self.close(); // explicit close() reports errors; Drop cannot
    }
}
