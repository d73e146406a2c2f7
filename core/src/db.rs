//! The per-database engine (spec §3): turns committed WAL frames into L0 LTX
//! files in the database's meta directory, and checkpoints the WAL.
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

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, IoContext, Result, SqlContext};
use crate::fsutil;
use crate::ltx::{Encoder, Header, lock_pgno};
use crate::txid::{TxId, ltx_file_name, parse_ltx_file_name};
use crate::wal::{self, Checksum, StopReason, WAL_HEADER_SIZE, WalHeader, WalReader, WalSegment};

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
        }
    }
}

/// Where replication stands: taken from the header of the newest L0 file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub txid: TxId,
    pub salt1: u32,
    pub salt2: u32,
    /// WAL offset just past the last synced commit frame.
    pub wal_offset: u64,
    /// Database size in pages at that point.
    pub commit: u32,
    pub page_size: u32,
}

impl Position {
    fn from_header(h: &Header) -> Position {
        Position {
            txid: h.max_txid,
            salt1: h.wal_salt1,
            salt2: h.wal_salt2,
            wal_offset: (h.wal_offset + h.wal_size) as u64,
            commit: h.commit,
            page_size: h.page_size,
        }
    }

    fn salts(&self) -> (u32, u32) {
        (self.salt1, self.salt2)
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

/// What we know about the WAL beyond the newest L0 header, valid only while
/// the read transaction has been held without a break since it was learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Continuity {
    /// The generation with `salts` ended at `offset`, everything up to it
    /// synced and checkpointed: the next generation holds all later changes.
    Sealed { salts: (u32, u32), offset: u64 },
    /// The last sync found no WAL and read the database file alone: any
    /// generation that appears holds all later changes.
    NoWal,
    /// The database file holds exactly our position (it matched the seal
    /// record when the read transaction was taken): any WAL generation
    /// present holds all later changes.
    DbFile,
}

enum Plan {
    Nothing,
    Snapshot(String),
    Incremental {
        header: WalHeader,
        offset: u64,
        seed: Checksum,
    },
    /// Salts changed after exactly one restart: read the rest of the old
    /// generation, then the new one, under the write lock.
    OldTailThenNew {
        header: WalHeader,
    },
}

/// The wal-index header fields we compare against.
#[derive(Debug, Clone, Copy)]
struct WalIndex {
    max_frame: u32,
    salts: (u32, u32),
}

/// The WAL file pages are read from, and its header when their frames were
/// located (`None`: no page comes from the WAL).
#[derive(Clone, Copy)]
struct WalSrc<'a> {
    file: &'a File,
    header: Option<WalHeader>,
}

/// Where the bytes of a page come from.
#[derive(Debug, Clone, Copy)]
enum PageSrc {
    Wal(u64),
    Db,
}

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// Pages gathered per encode batch.
const BATCH_PAGES: usize = 512;

/// One database under replication.
#[derive(Debug)]
pub struct Db {
    path: PathBuf,
    wal_path: PathBuf,
    name: String,
    meta_dir: PathBuf,
    l0_dir: PathBuf,
    opts: DbOptions,
    conn: Option<Connection>,
    lock_conn: Option<Connection>,
    in_read_tx: bool,
    write_locked: bool,
    /// Kept open as long as the connection: closing any descriptor of the
    /// database file would drop this process's POSIX locks on it.
    db_file: Option<File>,
    /// The wal-index (`-shm`), held open for the same reason.
    shm_file: Option<File>,
    page_size: u32,
    pos: Option<Position>,
    continuity: Option<Continuity>,
    force_snapshot: Option<String>,
    snapshot_min: Option<TxId>,
    txid_floor: TxId,
    synced_since_checkpoint: bool,
    last_checkpoint: Instant,
}

/// Reads the pages of `chunk` into `buf`, coalescing runs of consecutive
/// database-file pages into one read. Pages past the end of the database
/// file read as zeros, as SQLite reads them.
fn fill_pages(
    ps: usize,
    names: (&str, &str),
    chunk: &[(u32, PageSrc)],
    buf: &mut [u8],
    wal_file: &File,
    db_file: &File,
) -> Result<()> {
    let (db_name, wal_name) = names;
    let mut i = 0;
    while i < chunk.len() {
        match chunk[i].1 {
            PageSrc::Wal(off) => {
                wal::read_page(wal_file, wal_name, off, &mut buf[i * ps..(i + 1) * ps])?;
                i += 1;
            }
            PageSrc::Db => {
                let mut j = i + 1;
                while j < chunk.len()
                    && matches!(chunk[j].1, PageSrc::Db)
                    && chunk[j].0 == chunk[j - 1].0 + 1
                {
                    j += 1;
                }
                let dst = &mut buf[i * ps..j * ps];
                let off = u64::from(chunk[i].0 - 1) * ps as u64;
                let n = wal::read_full_at(db_file, dst, off).ctx(|| format!("read {db_name}"))?;
                dst[n..].fill(0);
                i = j;
            }
        }
    }
    Ok(())
}

/// The meta directory Litestream uses for `db_path`: `<dir>/.<name>-litestream`.
pub fn default_meta_dir(db_path: &Path) -> PathBuf {
    let name = db_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    db_path
        .parent()
        .unwrap_or(Path::new("."))
        .join(format!(".{name}-litestream"))
}

/// Checks the 16-byte SQLite header of a file (an empty file is an empty
/// database).
pub fn check_sqlite_header(path: &Path) -> Result<()> {
    let f = File::open(path).ctx(|| format!("open database {}", path.display()))?;
    let mut b = [0u8; 16];
    let n = wal::read_full_at(&f, &mut b, 0).ctx(|| format!("read {}", path.display()))?;
    if n == 0 {
        return Ok(());
    }
    if n < 16 || &b != SQLITE_MAGIC {
        return Err(Error::InvalidInput(format!(
            "{}: not a SQLite database",
            path.display()
        )));
    }
    Ok(())
}

/// Whether the database file's header marks it as being in WAL mode (file
/// format read and write versions 2), as SQLite itself decides on open.
fn header_says_wal(f: &File) -> bool {
    let mut b = [0u8; 2];
    matches!(wal::read_full_at(f, &mut b, 18), Ok(2)) && b == [2, 2]
}

/// The identity and shape of a database file and its WAL on disk (size,
/// modification time, inode). The fleet compares it to know a cold
/// database was not written; [`Db::seal`] records the database part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct FileSig {
    pub db_size: u64,
    pub db_mtime_ns: i128,
    pub db_ino: u64,
    pub wal_size: u64,
    pub wal_mtime_ns: i128,
}

impl FileSig {
    /// The files of the database at `db` now; missing files read as zeros.
    pub fn of(db: &Path) -> FileSig {
        use std::os::unix::fs::MetadataExt;
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        let ns =
            |m: &fs::Metadata| i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
        let mut sig = FileSig::default();
        if let Ok(m) = fs::metadata(db) {
            sig.db_size = m.size();
            sig.db_mtime_ns = ns(&m);
            sig.db_ino = m.ino();
        }
        // An empty WAL and no WAL are the same state (SQLite deletes an
        // empty WAL when its last connection closes).
        if let Ok(m) = fs::metadata(PathBuf::from(wal))
            && m.size() > 0
        {
            sig.wal_size = m.size();
            sig.wal_mtime_ns = ns(&m);
        }
        sig
    }

    /// True if the database file parts are equal.
    pub fn same_db(&self, other: &FileSig) -> bool {
        (self.db_size, self.db_mtime_ns, self.db_ino)
            == (other.db_size, other.db_mtime_ns, other.db_ino)
    }

    /// A 64-bit digest (FNV-1a, stable across builds), never 0.
    pub fn digest(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |b: &[u8]| {
            for x in b {
                h ^= u64::from(*x);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        eat(&self.db_size.to_le_bytes());
        eat(&self.db_mtime_ns.to_le_bytes());
        eat(&self.db_ino.to_le_bytes());
        eat(&self.wal_size.to_le_bytes());
        eat(&self.wal_mtime_ns.to_le_bytes());
        h.max(1)
    }
}

/// What [`Db::seal`] records in the meta directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct SealRecord {
    txid: String,
    salt1: u32,
    salt2: u32,
    wal_offset: u64,
    db_size: u64,
    db_mtime_ns: i128,
    db_ino: u64,
}

impl SealRecord {
    fn new(pos: &Position, sig: &FileSig) -> SealRecord {
        SealRecord {
            txid: pos.txid.to_string(),
            salt1: pos.salt1,
            salt2: pos.salt2,
            wal_offset: pos.wal_offset,
            db_size: sig.db_size,
            db_mtime_ns: sig.db_mtime_ns,
            db_ino: sig.db_ino,
        }
    }
}

/// How long the database file's mtime must lie in the past before a seal
/// is recorded: filesystems stamp times at a coarse clock tick, and a
/// later write must get a later mtime.
const SEAL_MTIME_MARGIN: Duration = Duration::from_millis(20);

impl Db {
    /// Prepares the engine for the database at `path`. Nothing is opened
    /// until the first [`sync`](Self::sync) or [`open`](Self::open).
    pub fn new(path: impl Into<PathBuf>, opts: DbOptions) -> Db {
        let path: PathBuf = path.into();
        let meta_dir = opts
            .meta_dir
            .clone()
            .unwrap_or_else(|| default_meta_dir(&path));
        let mut wal_path = path.clone().into_os_string();
        wal_path.push("-wal");
        Db {
            name: path.display().to_string(),
            wal_path: PathBuf::from(wal_path),
            l0_dir: meta_dir.join("ltx").join("0"),
            meta_dir,
            path,
            opts,
            conn: None,
            lock_conn: None,
            in_read_tx: false,
            write_locked: false,
            db_file: None,
            shm_file: None,
            page_size: 0,
            pos: None,
            continuity: None,
            force_snapshot: None,
            snapshot_min: None,
            txid_floor: TxId::ZERO,
            synced_since_checkpoint: false,
            last_checkpoint: Instant::now(),
        }
    }

    /// The database path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The meta directory.
    pub fn meta_dir(&self) -> &Path {
        &self.meta_dir
    }

    /// The directory of local L0 files.
    pub fn l0_dir(&self) -> &Path {
        &self.l0_dir
    }

    /// Path of the local L0 file covering `min..=max`.
    pub fn l0_path(&self, min: TxId, max: TxId) -> PathBuf {
        self.l0_dir.join(ltx_file_name(min, max))
    }

    /// The page size (after open).
    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    /// True while the connection and read transaction are held.
    pub fn is_open(&self) -> bool {
        self.conn.is_some()
    }

    /// The current position (newest local L0), reading it from disk once.
    pub fn position(&mut self) -> Result<Option<Position>> {
        if self.pos.is_none() {
            self.pos = self.load_position()?;
        }
        Ok(self.pos)
    }

    /// Local L0 files as `(min, max)`, ascending by max TXID.
    pub fn local_l0_files(&self) -> Result<Vec<(TxId, TxId)>> {
        let rd = match fs::read_dir(&self.l0_dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("list {}", self.l0_dir.display()), e)),
        };
        let mut out = Vec::new();
        for e in rd {
            let e = e.ctx(|| format!("list {}", self.l0_dir.display()))?;
            if let Some((min, max)) = e.file_name().to_str().and_then(parse_ltx_file_name) {
                out.push((min, max));
            }
        }
        out.sort_by_key(|&(min, max)| (max, min));
        Ok(out)
    }

    fn load_position(&self) -> Result<Option<Position>> {
        let Some(&(min, max)) = self.local_l0_files()?.last() else {
            return Ok(None);
        };
        let path = self.l0_path(min, max);
        let f = File::open(&path).ctx(|| format!("open {}", path.display()))?;
        let mut b = [0u8; crate::ltx::HEADER_SIZE];
        f.read_exact_at(&mut b, 0).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::corrupt(path.display().to_string(), "truncated LTX header")
            } else {
                Error::io(format!("read {}", path.display()), e)
            }
        })?;
        let h = Header::decode(&b, &path.display().to_string())?;
        Ok(Some(Position::from_header(&h)))
    }

    /// Tells the engine the replica already holds TXIDs up to `txid` (for
    /// example after a restore, or when the local meta directory was lost):
    /// the next file will be a snapshot with a higher TXID, so nothing in
    /// the replica is ever overwritten.
    pub fn set_txid_floor(&mut self, txid: TxId) {
        self.txid_floor = self.txid_floor.max(txid);
    }

    /// Asks for the next file to be a snapshot covering TXIDs from `min`:
    /// used when the replica lacks TXIDs the local L0 files no longer hold
    /// (min 1 starts the replica afresh).
    pub fn require_snapshot_from(&mut self, min: TxId, reason: &str) {
        self.snapshot_min = Some(self.snapshot_min.map_or(min, |m| m.min(min)));
        self.force_snapshot = Some(reason.to_string());
    }

    /// Opens the connection, switches the database to WAL mode, and takes
    /// the read transaction. Idempotent.
    pub fn open(&mut self) -> Result<()> {
        if self.conn.is_some() {
            // A failed attempt may have left the read transaction released:
            // never sync without the WAL pinned.
            return self.begin_read_tx();
        }
        let name = self.name.clone();
        check_sqlite_header(&self.path)?;
        let db_file = File::open(&self.path).ctx(|| format!("open database {name}"))?;
        let conn = self.open_connection()?;
        // The journal_mode pragma loads the schema, which then stays in
        // memory as long as the connection (1–2 KB a hot database in a
        // fleet); a database already in WAL mode says so in its header.
        if !header_says_wal(&db_file) {
            let mode: String = conn
                .query_row("PRAGMA journal_mode=wal", [], |r| r.get(0))
                .sql_ctx(|| format!("{name}: enable WAL mode"))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(Error::InvalidInput(format!(
                    "{name}: cannot switch to WAL mode (journal_mode is {mode:?})"
                )));
            }
        }
        let page_size: u32 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .sql_ctx(|| format!("{name}: read page size"))?;
        fsutil::create_dir_all(&self.l0_dir)?;
        self.remove_stale_tmp_files()?;
        self.conn = Some(conn);
        self.db_file = Some(db_file);
        self.page_size = page_size;
        self.continuity = None;
        self.begin_read_tx()?;
        let mut shm = self.path.clone().into_os_string();
        shm.push("-shm");
        // Present once SQLite has opened the database in WAL mode; without
        // it the damaged-WAL check below is skipped, nothing else.
        self.shm_file = File::open(PathBuf::from(shm)).ok();
        self.pos = self.load_position()?;
        if let Some(pos) = self.pos
            && let Some(rec) = self.read_seal_record()
            && rec == SealRecord::new(&pos, &FileSig::of(&self.path))
        {
            // Checked while our read transaction pins the WAL.
            self.continuity = Some(Continuity::DbFile);
        }
        Ok(())
    }

    fn seal_path(&self) -> PathBuf {
        self.meta_dir.join("seal.json")
    }

    /// The seal record, if present and readable (anything else means
    /// "not sealed": the next sync proves continuity the usual way).
    fn read_seal_record(&self) -> Option<SealRecord> {
        let b = fs::read(self.seal_path()).ok()?;
        serde_json::from_slice(&b).ok()
    }

    /// SQLite's own idea of the WAL: committed frame count and salts from
    /// the wal-index header, if it is readable and stable.
    fn wal_index(&self) -> Option<WalIndex> {
        let f = self.shm_file.as_ref()?;
        let mut b = [0u8; 96];
        if wal::read_full_at(f, &mut b, 0).ok()? != 96 || b[..48] != b[48..] {
            return None; // absent, or being updated right now
        }
        let ne = |o: usize| u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        if ne(0) != 3_007_000 || b[12] != 1 {
            return None;
        }
        let mut salts = [0u8; 8];
        salts.copy_from_slice(&b[32..40]);
        Some(WalIndex {
            max_frame: ne(16),
            salts: (
                u32::from_be_bytes([salts[0], salts[1], salts[2], salts[3]]),
                u32::from_be_bytes([salts[4], salts[5], salts[6], salts[7]]),
            ),
        })
    }

    /// A WAL whose checksum chain breaks before the last frame SQLite
    /// considers committed has been damaged on disk: replicating it would
    /// silently stop short, so it is an error.
    fn check_chain(
        &self,
        index: Option<WalIndex>,
        header: &WalHeader,
        seg: &WalSegment,
    ) -> Result<()> {
        let Some(ix) = index else { return Ok(()) };
        if seg.stop == StopReason::Limit || ix.salts != header.salts() {
            return Ok(());
        }
        let fs = header.frame_size();
        let committed_end = WAL_HEADER_SIZE + u64::from(ix.max_frame) * fs;
        if committed_end > seg.valid_end {
            let frame = (seg.valid_end - WAL_HEADER_SIZE) / fs + 1;
            return Err(Error::corrupt(
                self.wal_path.display().to_string(),
                format!(
                    "frame {frame} at offset {} breaks the WAL checksum chain, but SQLite's WAL index holds {} committed frames: the WAL file is damaged",
                    seg.valid_end, ix.max_frame
                ),
            ));
        }
        Ok(())
    }

    fn open_connection(&self) -> Result<Connection> {
        let name = &self.name;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&self.path, flags)
            .sql_ctx(|| format!("open database {name}"))?;
        conn.busy_timeout(self.opts.busy_timeout)
            .sql_ctx(|| format!("{name}: set busy timeout"))?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .sql_ctx(|| format!("{name}: disable auto-checkpoint"))?;
        // Our connection closing must never checkpoint or delete the WAL:
        // the frames we have not shipped yet live there.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )
        .sql_ctx(|| format!("{name}: disable checkpoint on close"))?;
        let mut persist: std::ffi::c_int = 1;
        conn.file_control(
            rusqlite::DEFAULT_NAME,
            rusqlite::FileControl::PersistWal(&mut persist),
        )
        .sql_ctx(|| format!("{name}: set PERSIST_WAL"))?;
        Ok(conn)
    }

    fn remove_stale_tmp_files(&self) -> Result<()> {
        let rd = fs::read_dir(&self.l0_dir).ctx(|| format!("list {}", self.l0_dir.display()))?;
        for e in rd {
            let e = e.ctx(|| format!("list {}", self.l0_dir.display()))?;
            if e.file_name().to_string_lossy().ends_with(".tmp") {
                fs::remove_file(e.path()).ctx(|| format!("remove {}", e.path().display()))?;
            }
        }
        Ok(())
    }

    fn conn(&self) -> Result<&Connection> {
        self.conn
            .as_ref()
            .ok_or_else(|| Error::InvalidInput(format!("{}: database not open", self.name)))
    }

    fn begin_read_tx(&mut self) -> Result<()> {
        if self.in_read_tx {
            return Ok(());
        }
        let name = self.name.clone();
        let conn = self.conn()?;
        conn.execute_batch("BEGIN DEFERRED")
            .sql_ctx(|| format!("{name}: begin read transaction"))?;
        // Reading the schema cookie starts the read transaction (and reads
        // page 1, so a file that is not a database fails here) without
        // parsing the schema into memory.
        let r: rusqlite::Result<i64> = conn.query_row("PRAGMA schema_version", [], |r| r.get(0));
        if let Err(e) = r {
            let _ = conn.execute_batch("ROLLBACK"); // the read error is what we report
            return Err(Error::sqlite(format!("{name}: take read lock"), e));
        }
        self.in_read_tx = true;
        Ok(())
    }

    fn end_read_tx(&mut self) -> Result<()> {
        if !self.in_read_tx {
            return Ok(());
        }
        let name = self.name.clone();
        self.in_read_tx = false;
        // What we knew about the WAL held only while the WAL was pinned.
        self.continuity = None;
        self.conn()?
            .execute_batch("ROLLBACK")
            .sql_ctx(|| format!("{name}: release read lock"))
    }

    /// Takes SQLite's write lock (`BEGIN IMMEDIATE` on a second connection
    /// that never writes). Returns false if the database stayed busy.
    fn acquire_write_lock(&mut self) -> Result<bool> {
        if self.write_locked {
            return Ok(true);
        }
        if self.lock_conn.is_none() {
            self.lock_conn = Some(self.open_connection()?);
        }
        let name = self.name.clone();
        let Some(lc) = self.lock_conn.as_ref() else {
            return Ok(false);
        };
        match lc.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => {
                self.write_locked = true;
                Ok(true)
            }
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(Error::sqlite(format!("{name}: take write lock"), e)),
        }
    }

    fn release_write_lock(&mut self) -> Result<()> {
        if !self.write_locked {
            return Ok(());
        }
        self.write_locked = false;
        let name = self.name.clone();
        // The lock connection is closed until the next checkpoint: a fleet
        // holds hundreds of hot databases, and checkpoints are rare.
        match self.lock_conn.take() {
            Some(lc) => lc
                .execute_batch("ROLLBACK")
                .sql_ctx(|| format!("{name}: release write lock")),
            None => Ok(()),
        }
    }

    /// Syncs new committed WAL frames into L0 files, then checkpoints if a
    /// threshold is reached.
    pub fn sync(&mut self) -> Result<SyncOutcome> {
        self.open()?;
        let mut out = SyncOutcome::default();
        let r = self
            .sync_to_end(&mut out)
            .and_then(|()| self.maybe_checkpoint(&mut out));
        if r.is_err() {
            // Leave no write lock behind; the error is what we report.
            let _ = self.release_write_lock();
        }
        r.map(|()| out)
    }

    /// Syncs until the WAL holds no unsynced committed frames.
    fn sync_to_end(&mut self, out: &mut SyncOutcome) -> Result<()> {
        loop {
            let before = out.files.len();
            let limited = self.sync_once(out)?;
            if !limited || out.files.len() == before {
                return Ok(());
            }
        }
    }

    /// One pass; returns true when it stopped at the byte limit.
    fn sync_once(&mut self, out: &mut SyncOutcome) -> Result<bool> {
        // Read before the WAL: frames up to this count were written before it.
        let index = self.wal_index();
        let wal_file = match File::open(&self.wal_path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(format!("open {}", self.wal_path.display()), e)),
        };
        let wal_name = self.wal_path.display().to_string();
        let header = match &wal_file {
            Some(f) => WalHeader::read(f, &wal_name)?,
            None => None,
        };
        match self.plan(wal_file.as_ref(), header)? {
            Plan::Nothing => Ok(false),
            Plan::Snapshot(reason) => {
                self.write_snapshot(wal_file.as_ref(), header, &reason, index, out)?;
                Ok(false)
            }
            Plan::Incremental {
                header,
                offset,
                seed,
            } => {
                let Some(f) = wal_file.as_ref() else {
                    return Ok(false);
                };
                let seg = WalReader::resume(f, &wal_name, header, offset, seed)
                    .read_transactions(self.opts.max_sync_wal_bytes)?;
                self.check_chain(index, &header, &seg)?;
                if seg.is_empty() {
                    return Ok(false);
                }
                self.write_incremental(f, &header, &header, &seg, out)?;
                Ok(seg.stop == StopReason::Limit)
            }
            Plan::OldTailThenNew { header } => {
                let Some(f) = wal_file.as_ref() else {
                    return Ok(false);
                };
                self.sync_across_restart(f, header, out)?;
                Ok(false)
            }
        }
    }

    fn plan(&mut self, wal_file: Option<&File>, header: Option<WalHeader>) -> Result<Plan> {
        let Some(pos) = self.position()? else {
            return Ok(Plan::Snapshot("first sync".into()));
        };
        // Cleared only once a snapshot is written, so a failed attempt is
        // retried.
        if let Some(reason) = self.force_snapshot.clone() {
            return Ok(Plan::Snapshot(reason));
        }
        if pos.txid < self.txid_floor {
            return Ok(Plan::Snapshot(format!(
                "replica holds TXID {} beyond local position {}",
                self.txid_floor, pos.txid
            )));
        }
        if pos.page_size != self.page_size {
            return Ok(Plan::Snapshot("page size changed".into()));
        }
        let (Some(h), Some(f)) = (header, wal_file) else {
            return Ok(match self.continuity {
                Some(Continuity::NoWal | Continuity::DbFile) => Plan::Nothing,
                Some(Continuity::Sealed { salts, offset })
                    if salts == pos.salts() && offset == pos.wal_offset =>
                {
                    Plan::Nothing
                }
                _ => Plan::Snapshot("WAL missing or empty and continuity unknown".into()),
            });
        };
        if h.page_size != self.page_size {
            return Ok(Plan::Snapshot(
                "WAL page size differs from the database".into(),
            ));
        }
        if h.salts() == pos.salts() {
            let len = f
                .metadata()
                .ctx(|| format!("stat {}", self.wal_path.display()))?
                .len();
            if pos.wal_offset > len {
                return Ok(Plan::Snapshot(
                    "WAL shrank below the last synced offset".into(),
                ));
            }
            return Ok(
                match WalReader::seed_at(f, &self.name, &h, pos.wal_offset)? {
                    Some(seed) => Plan::Incremental {
                        header: h,
                        offset: pos.wal_offset,
                        seed,
                    },
                    None => Plan::Snapshot("the last synced WAL frame was overwritten".into()),
                },
            );
        }
        match self.continuity {
            Some(Continuity::Sealed { salts, offset })
                if salts == pos.salts()
                    && offset == pos.wal_offset
                    && h.salt1 == salts.0.wrapping_add(1) =>
            {
                Ok(Plan::Incremental {
                    header: h,
                    offset: WAL_HEADER_SIZE,
                    seed: h.checksum,
                })
            }
            Some(Continuity::DbFile) => Ok(Plan::Incremental {
                header: h,
                offset: WAL_HEADER_SIZE,
                seed: h.checksum,
            }),
            Some(Continuity::NoWal) if pos.salts() == (0, 0) => Ok(Plan::Incremental {
                header: h,
                offset: WAL_HEADER_SIZE,
                seed: h.checksum,
            }),
            _ if pos.salts() != (0, 0)
                && h.salt1 == pos.salt1.wrapping_add(1)
                && pos.wal_offset > WAL_HEADER_SIZE =>
            {
                Ok(Plan::OldTailThenNew { header: h })
            }
            _ => Ok(Plan::Snapshot(format!(
                "WAL restarted and continuity cannot be proven (synced to offset {} of salt1 {:08x}, WAL now has salt1 {:08x})",
                pos.wal_offset, pos.salt1, h.salt1
            ))),
        }
    }

    /// The WAL restarted once since our last sync. Under the write lock (so
    /// the new generation cannot grow over the old frames), read the old
    /// generation onward from our offset, ship what it committed, then the
    /// new generation from its start.
    fn sync_across_restart(
        &mut self,
        f: &File,
        header: WalHeader,
        out: &mut SyncOutcome,
    ) -> Result<()> {
        let acquired_here = !self.write_locked;
        if !self.acquire_write_lock()? {
            return Err(Error::Backend {
                context: self.name.clone(),
                message:
                    "database busy: could not take the write lock to read across a WAL restart"
                        .into(),
                transient: true,
            });
        }
        let r = self.sync_across_restart_locked(f, header, out);
        if acquired_here {
            let released = self.release_write_lock();
            return r.and(released);
        }
        r
    }

    fn sync_across_restart_locked(
        &mut self,
        f: &File,
        header: WalHeader,
        out: &mut SyncOutcome,
    ) -> Result<()> {
        let wal_name = self.wal_path.display().to_string();
        let Some(pos) = self.pos else {
            return self.write_snapshot(Some(f), Some(header), "no position", None, out);
        };
        // The header may have moved on before we got the lock.
        let now = WalHeader::read(f, &wal_name)?;
        if now != Some(header) {
            return self.write_snapshot(
                Some(f),
                now,
                "WAL restarted again while syncing",
                None,
                out,
            );
        }
        let old = WalHeader {
            salt1: pos.salt1,
            salt2: pos.salt2,
            ..header
        };
        let Some(seed) = WalReader::seed_at(f, &wal_name, &old, pos.wal_offset)? else {
            return self.write_snapshot(
                Some(f),
                Some(header),
                "WAL restarted and its new generation overwrote the last synced frame",
                None,
                out,
            );
        };
        let tail =
            WalReader::resume(f, &wal_name, old, pos.wal_offset, seed).read_transactions(0)?;
        if tail.stop == StopReason::PartialFrame {
            return self.write_snapshot(
                Some(f),
                Some(header),
                "old WAL generation was truncated",
                None,
                out,
            );
        }
        if !tail.is_empty() {
            self.write_incremental(f, &header, &old, &tail, out)?;
        }
        let seg = WalReader::new(f, &wal_name, header).read_transactions(0)?;
        if !seg.is_empty() {
            self.write_incremental(f, &header, &header, &seg, out)?;
        } else if tail.is_empty() {
            // Nothing committed anywhere yet; keep the old position.
        }
        Ok(())
    }

    fn next_txid(&self) -> TxId {
        let cur = self.pos.map(|p| p.txid).unwrap_or(TxId::ZERO);
        cur.max(self.txid_floor).next()
    }

    fn now_ms() -> i64 {
        jiff::Timestamp::now().as_millisecond()
    }

    /// Writes an L0 file with the committed pages of `seg` plus any growth
    /// pages not in the WAL (read from the database file).
    /// `file_header` is the WAL file's header when `seg` was read; `header`
    /// the generation `seg` belongs to (the old one, across a restart).
    fn write_incremental(
        &mut self,
        wal_file: &File,
        file_header: &WalHeader,
        header: &WalHeader,
        seg: &WalSegment,
        out: &mut SyncOutcome,
    ) -> Result<()> {
        let prev_commit = self.pos.map(|p| p.commit).unwrap_or(0);
        let lock = lock_pgno(self.page_size);
        let mut pages: BTreeMap<u32, PageSrc> = seg
            .pages
            .iter()
            .map(|(p, o)| (*p, PageSrc::Wal(*o)))
            .collect();
        for pgno in prev_commit.saturating_add(1)..=seg.commit {
            if pgno != lock {
                pages.entry(pgno).or_insert(PageSrc::Db);
            }
        }
        pages.remove(&lock);
        let txid = self.next_txid();
        let mut h = Header::new(self.page_size, seg.commit, txid, txid, Self::now_ms());
        h.wal_offset = seg.start as i64;
        h.wal_size = (seg.end - seg.start) as i64;
        h.wal_salt1 = header.salt1;
        h.wal_salt2 = header.salt2;
        let wal = WalSrc {
            file: wal_file,
            header: Some(*file_header),
        };
        let file = self.write_l0(h, wal, &pages, false)?;
        out.files.push(L0File {
            wal_bytes: seg.end - seg.start,
            ..file
        });
        self.after_write(&h);
        Ok(())
    }

    /// Writes every page of the database as an L0 file: from the WAL where
    /// the current generation has a committed version, else from the
    /// database file. Safe without the write lock: our read transaction
    /// keeps checkpoints from writing any page we read from the file.
    fn write_snapshot(
        &mut self,
        wal_file: Option<&File>,
        header: Option<WalHeader>,
        reason: &str,
        index: Option<WalIndex>,
        out: &mut SyncOutcome,
    ) -> Result<()> {
        let wal_name = self.wal_path.display().to_string();
        let seg = match (wal_file, header) {
            (Some(f), Some(h)) => {
                let seg = WalReader::new(f, &wal_name, h).read_transactions(0)?;
                self.check_chain(index, &h, &seg)?;
                Some(seg)
            }
            _ => None,
        };
        let db_pages = {
            let f = self
                .db_file
                .as_ref()
                .ok_or_else(|| Error::InvalidInput(format!("{}: not open", self.name)))?;
            f.metadata().ctx(|| format!("stat {}", self.name))?.len() / u64::from(self.page_size)
        };
        let commit = match &seg {
            Some(s) if s.commit > 0 => s.commit,
            _ => u32::try_from(db_pages)
                .map_err(|_| Error::corrupt(self.name.clone(), "database too large"))?,
        };
        if commit == 0 {
            return Ok(()); // an empty database: nothing to replicate yet
        }
        let lock = lock_pgno(self.page_size);
        let mut pages: BTreeMap<u32, PageSrc> = (1..=commit)
            .filter(|p| *p != lock)
            .map(|p| (p, PageSrc::Db))
            .collect();
        if let Some(s) = &seg {
            for (p, o) in &s.pages {
                if let Some(src) = pages.get_mut(p) {
                    *src = PageSrc::Wal(*o);
                }
            }
        }
        let txid = self.next_txid();
        let min = self.snapshot_min.map_or(txid, |m| m.min(txid));
        let mut h = Header::new(self.page_size, commit, min, txid, Self::now_ms());
        if let (Some(hd), Some(s)) = (header, &seg) {
            let fs = hd.frame_size();
            let (off, size) = if s.end > WAL_HEADER_SIZE {
                (s.end - fs, fs)
            } else {
                (WAL_HEADER_SIZE, 0)
            };
            h.wal_offset = off as i64;
            h.wal_size = size as i64;
            h.wal_salt1 = hd.salt1;
            h.wal_salt2 = hd.salt2;
        } else {
            h.wal_offset = WAL_HEADER_SIZE as i64;
        }
        let dummy;
        let wf = match wal_file {
            Some(f) => f,
            None => {
                dummy = self
                    .db_file
                    .as_ref()
                    .ok_or_else(|| Error::InvalidInput(format!("{}: not open", self.name)))?;
                dummy
            }
        };
        let wal = WalSrc {
            file: wf,
            header: header.filter(|_| seg.is_some()),
        };
        let file = self.write_l0(h, wal, &pages, true)?;
        tracing::info!(db = %self.name, txid = %txid, pages = file.pages, reason, "snapshot");
        out.files.push(file);
        out.snapshot_reason
            .get_or_insert_with(|| reason.to_string());
        self.after_write(&h);
        self.force_snapshot = None;
        self.snapshot_min = None;
        self.continuity = if header.is_none() {
            Some(Continuity::NoWal)
        } else {
            None
        };
        Ok(())
    }

    fn after_write(&mut self, h: &Header) {
        self.pos = Some(Position::from_header(h));
        self.continuity = None;
        self.synced_since_checkpoint = true;
    }

    /// Encodes pages into `<l0>/<min>-<max>.ltx` atomically.
    fn write_l0(
        &self,
        h: Header,
        wal: WalSrc<'_>,
        pages: &BTreeMap<u32, PageSrc>,
        snapshot: bool,
    ) -> Result<L0File> {
        self.write_ltx_at(
            self.l0_path(h.min_txid, h.max_txid),
            h,
            wal,
            pages,
            snapshot,
        )
    }

    /// Writes a full snapshot of the database at its position (TXIDs 1 to
    /// the newest L0 file's) into `dir`, for the snapshot level. Pages come
    /// from the WAL up to the last synced commit, else from the database
    /// file. Only our read transaction is held: writers go on during the
    /// encode, and it keeps checkpoints from copying any later frame into
    /// the pages read from the file. Returns `None` before the first sync.
    pub fn write_level_snapshot(&mut self, dir: &Path) -> Result<Option<(PathBuf, Header)>> {
        self.open()?;
        let Some(pos) = self.position()? else {
            return Ok(None);
        };
        if pos.commit == 0 {
            return Ok(None);
        }
        let wal_name = self.wal_path.display().to_string();
        let wal_file = match File::open(&self.wal_path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(format!("open {wal_name}"), e)),
        };
        let header = match &wal_file {
            Some(f) => WalHeader::read(f, &wal_name)?,
            None => None,
        };
        let sealed_at_pos = self.continuity
            == Some(Continuity::Sealed {
                salts: pos.salts(),
                offset: pos.wal_offset,
            });
        // The WAL frames that make up the position, if any.
        let seg = match (&wal_file, header) {
            (Some(f), Some(h)) if pos.wal_offset > WAL_HEADER_SIZE && !sealed_at_pos => {
                if h.salts() != pos.salts() {
                    return Err(Error::Backend {
                        context: format!("{}: snapshot", self.name),
                        message: "the WAL restarted since the last sync; retried after the next"
                            .into(),
                        transient: true,
                    });
                }
                let seg = WalReader::new(f, &wal_name, h)
                    .read_transactions(pos.wal_offset - WAL_HEADER_SIZE)?;
                if seg.end != pos.wal_offset {
                    return Err(Error::corrupt(
                        wal_name,
                        format!(
                            "committed frames end at offset {}, the last sync ended at {}",
                            seg.end, pos.wal_offset
                        ),
                    ));
                }
                Some((h, seg))
            }
            _ => None,
        };
        let lock = lock_pgno(self.page_size);
        let mut pages: BTreeMap<u32, PageSrc> = (1..=pos.commit)
            .filter(|p| *p != lock)
            .map(|p| (p, PageSrc::Db))
            .collect();
        let mut h = Header::new(
            self.page_size,
            pos.commit,
            TxId(1),
            pos.txid,
            Self::now_ms(),
        );
        h.wal_offset = WAL_HEADER_SIZE as i64;
        if let Some(hd) = header {
            h.wal_salt1 = hd.salt1;
            h.wal_salt2 = hd.salt2;
        }
        if let Some((hd, seg)) = &seg {
            for (p, o) in &seg.pages {
                if let Some(src) = pages.get_mut(p) {
                    *src = PageSrc::Wal(*o);
                }
            }
            let fs = hd.frame_size();
            if seg.end > WAL_HEADER_SIZE {
                h.wal_offset = (seg.end - fs) as i64;
                h.wal_size = fs as i64;
            }
        }
        fsutil::create_dir_all(dir)?;
        let path = dir.join(ltx_file_name(h.min_txid, h.max_txid));
        let db_file = self
            .db_file
            .as_ref()
            .ok_or_else(|| Error::InvalidInput(format!("{}: not open", self.name)))?;
        let wf = wal_file.as_ref().unwrap_or(db_file);
        let wal = WalSrc {
            file: wf,
            header: seg.as_ref().map(|(hd, _)| *hd),
        };
        let f = self.write_ltx_at(path, h, wal, &pages, true)?;
        tracing::debug!(db = %self.name, txid = %pos.txid, pages = f.pages, size = f.size, "snapshot encoded");
        Ok(Some((f.path, h)))
    }

    /// Frames are located by reading the WAL, their pages read afterwards.
    /// Our read transaction keeps checkpoints from restarting a WAL whose
    /// frames it uses, but not one it does not (a read transaction that
    /// began when the WAL was fully checkpointed reads only the database
    /// file): a writer may then restart the WAL and write the new
    /// generation over the frames located. A restart rewrites the header
    /// before any frame, so a header unchanged after the pages were read
    /// proves they are the frames located.
    fn check_wal_unchanged(&self, wal: &WalSrc<'_>) -> Result<()> {
        let Some(expected) = wal.header else {
            return Ok(());
        };
        let wal_name = self.wal_path.display().to_string();
        if WalHeader::read(wal.file, &wal_name)? == Some(expected) {
            return Ok(());
        }
        Err(Error::Backend {
            context: format!("{}: sync", self.name),
            message: format!(
                "{wal_name} restarted while its frames were read (a writer checkpointed and restarted it); nothing was written, the sync is retried"
            ),
            transient: true,
        })
    }

    /// Encodes pages into `path` atomically.
    fn write_ltx_at(
        &self,
        path: PathBuf,
        h: Header,
        wal: WalSrc<'_>,
        pages: &BTreeMap<u32, PageSrc>,
        snapshot: bool,
    ) -> Result<L0File> {
        let db_file = self
            .db_file
            .as_ref()
            .ok_or_else(|| Error::InvalidInput(format!("{}: not open", self.name)))?;
        crate::crashpoint::pause("frames-located");
        let tmp = fsutil::tmp_path(&path);
        let tmp_name = tmp.display().to_string();
        let result = (|| {
            let big = pages.len() as u64 * u64::from(self.page_size) >= fsutil::DIRECT_MIN_BYTES;
            let enc = Encoder::new(fsutil::SeqWriter::create(&tmp, big)?, h, tmp_name.clone())?;
            let entries: Vec<(u32, PageSrc)> = pages.iter().map(|(p, s)| (*p, *s)).collect();
            let enc = self.encode_pipelined(enc, &entries, wal.file, db_file)?;
            if pages.values().any(|s| matches!(s, PageSrc::Wal(_))) {
                self.check_wal_unchanged(&wal)?;
            }
            let done = enc.finish()?;
            let f = done.writer.finish()?;
            fsutil::commit_tmp(&tmp, f, &path)?;
            crate::crashpoint::here("l0-written");
            Ok(L0File {
                min_txid: h.min_txid,
                txid: h.max_txid,
                path: path.clone(),
                size: done.size,
                pages: done.page_count,
                snapshot,
                wal_bytes: 0,
            })
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp); // no partial file is left behind; the error says why
        }
        result
    }

    /// Three stages on their own threads, so reading pages, compressing them
    /// (on all cores) and writing the file overlap: a reader fills batches,
    /// this thread compresses them, a writer appends them in order.
    fn encode_pipelined<W: std::io::Write + Send>(
        &self,
        mut enc: Encoder<W>,
        entries: &[(u32, PageSrc)],
        wal_file: &File,
        db_file: &File,
    ) -> Result<Encoder<W>> {
        use std::sync::mpsc::sync_channel;
        let ps = self.page_size as usize;
        let wal_name = self.wal_path.display().to_string();
        let names = (self.name.as_str(), wal_name.as_str());
        if entries.len() <= BATCH_PAGES {
            // One batch (every ordinary sync, and small databases'
            // snapshots): no threads, one buffer of the size needed.
            let mut buf = vec![0u8; entries.len() * ps];
            fill_pages(ps, names, entries, &mut buf, wal_file, db_file)?;
            let batch: Vec<(u32, &[u8])> = entries
                .iter()
                .zip(buf.chunks_exact(ps))
                .map(|((p, _), data)| (*p, data))
                .collect();
            if batch.len() <= 16 {
                for (p, data) in batch {
                    enc.encode_page(p, data)?;
                }
            } else {
                enc.encode_pages(&batch)?;
            }
            return Ok(enc);
        }
        std::thread::scope(|s| {
            let (read_tx, read_rx) = sync_channel::<Result<(usize, Vec<u8>)>>(2);
            let (free_tx, free_rx) = sync_channel::<Vec<u8>>(4);
            let (write_tx, write_rx) = sync_channel::<Vec<crate::ltx::CompressedPage>>(2);
            for _ in 0..3 {
                let _ = free_tx.send(vec![0u8; BATCH_PAGES * ps]); // capacity 4: cannot block
            }
            s.spawn(move || {
                for (i, chunk) in entries.chunks(BATCH_PAGES).enumerate() {
                    let Ok(mut buf) = free_rx.recv() else { return };
                    let r = fill_pages(
                        ps,
                        names,
                        chunk,
                        &mut buf[..chunk.len() * ps],
                        wal_file,
                        db_file,
                    );
                    let failed = r.is_err();
                    if read_tx.send(r.map(|()| (i, buf))).is_err() || failed {
                        return;
                    }
                }
            });
            let writer = s.spawn(move || -> Result<Encoder<W>> {
                for batch in write_rx {
                    enc.write_compressed_pages(batch)?;
                }
                Ok(enc)
            });
            let mut result = Ok(());
            for msg in read_rx {
                let (i, buf) = match msg {
                    Ok(v) => v,
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                };
                let chunk =
                    &entries[i * BATCH_PAGES..(i * BATCH_PAGES + BATCH_PAGES).min(entries.len())];
                let batch: Vec<(u32, &[u8])> = chunk
                    .iter()
                    .enumerate()
                    .map(|(j, (p, _))| (*p, &buf[j * ps..(j + 1) * ps]))
                    .collect();
                let compressed = Encoder::<W>::compress_pages(&batch);
                drop(batch);
                let _ = free_tx.send(buf); // the reader may have finished
                if write_tx.send(compressed).is_err() {
                    break; // the writer failed; its error is reported below
                }
            }
            drop(write_tx);
            let enc = writer.join().map_err(|_| {
                Error::io(
                    format!("encode {}", names.0),
                    std::io::Error::other("writer thread panicked"),
                )
            })??;
            result.map(|()| enc)
        })
    }

    fn maybe_checkpoint(&mut self, out: &mut SyncOutcome) -> Result<()> {
        let Some(pos) = self.pos else {
            return Ok(());
        };
        if matches!(self.continuity, Some(Continuity::Sealed { salts, offset }) if salts == pos.salts() && offset == pos.wal_offset)
        {
            return Ok(()); // already checkpointed to our position; the next write restarts the WAL
        }
        let fs = u64::from(self.page_size) + wal::FRAME_HEADER_SIZE;
        let pages_in_wal = pos.wal_offset.saturating_sub(WAL_HEADER_SIZE) / fs;
        let o = &self.opts;
        let by_size = o.min_checkpoint_page_count > 0
            && pages_in_wal >= u64::from(o.min_checkpoint_page_count);
        let by_time = !o.checkpoint_interval.is_zero()
            && self.last_checkpoint.elapsed() >= o.checkpoint_interval
            && self.synced_since_checkpoint
            && pages_in_wal > 1;
        let mode = if o.truncate_page_count > 0 && pages_in_wal >= u64::from(o.truncate_page_count)
        {
            Some(CheckpointMode::Truncate)
        } else if by_size || by_time {
            Some(CheckpointMode::Passive)
        } else {
            None
        };
        if let Some(m) = mode {
            self.checkpoint_inner(m, out)?;
        }
        Ok(())
    }

    /// Runs a checkpoint now (syncing first so no frame is checkpointed
    /// unseen).
    pub fn checkpoint(&mut self, mode: CheckpointMode) -> Result<SyncOutcome> {
        self.open()?;
        let mut out = SyncOutcome::default();
        let r = self.checkpoint_inner(mode, &mut out);
        if r.is_err() {
            let _ = self.release_write_lock(); // the checkpoint error is what we report
        }
        r.map(|()| out)
    }

    fn checkpoint_inner(&mut self, mode: CheckpointMode, out: &mut SyncOutcome) -> Result<()> {
        if mode == CheckpointMode::Truncate {
            // Try the cheap way first; TRUNCATE only if the WAL is still large.
            self.checkpoint_passive(out)?;
            let fs = u64::from(self.page_size) + wal::FRAME_HEADER_SIZE;
            let still_large = self.pos.is_some_and(|p| {
                p.wal_offset.saturating_sub(WAL_HEADER_SIZE) / fs
                    >= u64::from(self.opts.truncate_page_count)
            });
            if still_large && self.continuity.is_none() {
                self.checkpoint_truncate(out)?;
            }
            return Ok(());
        }
        self.checkpoint_passive(out)
    }

    /// PASSIVE checkpoint behind a write-lock barrier: sync to the very end
    /// of the WAL, checkpoint, and take the read transaction again before
    /// any writer can append. If every frame was checkpointed, the
    /// generation is sealed at our position.
    fn checkpoint_passive(&mut self, out: &mut SyncOutcome) -> Result<()> {
        self.checkpoint_ahead()?;
        if !self.acquire_write_lock()? {
            self.lock_conn = None; // opened for this checkpoint only
            tracing::debug!(db = %self.name, "checkpoint skipped: database busy");
            return Ok(());
        }
        let locked = Instant::now();
        let r = (|| {
            self.sync_to_end(out)?;
            let (log, done) = self.passive_checkpoint(out)?;
            crate::crashpoint::here("checkpointed");
            let fs = u64::from(self.page_size) + wal::FRAME_HEADER_SIZE;
            if let Some(p) = self.pos
                && log >= 0
                && log == done
                && p.wal_offset == WAL_HEADER_SIZE + log as u64 * fs
                && self.current_wal_salts()? == Some(p.salts())
            {
                self.continuity = Some(Continuity::Sealed {
                    salts: p.salts(),
                    offset: p.wal_offset,
                });
            }
            Ok(())
        })();
        let released = self.release_write_lock();
        tracing::debug!(db = %self.name, held = ?locked.elapsed(), "passive checkpoint: write lock released");
        r.and(released)
    }

    /// The bulk of a PASSIVE checkpoint, without the barrier: our pin moves
    /// up to the end of the WAL (we have just synced to it), and a PASSIVE
    /// checkpoint on the second connection copies the frames before the
    /// pin into the database file and syncs it, while writers go on (a
    /// checkpoint never passes a reader's snapshot, and with our read
    /// transaction held the WAL cannot restart). The barrier then only has
    /// what was appended meanwhile. Moving the pin forgets what we knew
    /// about continuity, so this runs only when the next sync can prove it
    /// from the WAL itself: the generation we synced in is still current.
    fn checkpoint_ahead(&mut self) -> Result<()> {
        let Some(pos) = self.pos else {
            return Ok(());
        };
        if self.continuity.is_some() || self.current_wal_salts()? != Some(pos.salts()) {
            return Ok(());
        }
        self.end_read_tx()?;
        self.begin_read_tx()?;
        if self.lock_conn.is_none() {
            self.lock_conn = Some(self.open_connection()?);
        }
        let Some(lc) = self.lock_conn.as_ref() else {
            return Ok(());
        };
        // A fresh connection knows the database is in WAL mode only once it
        // has read it; before that a checkpoint does nothing.
        lc.query_row("PRAGMA schema_version", [], |r| r.get::<_, i64>(0))
            .sql_ctx(|| format!("{}: read the schema cookie", self.name))?;
        match lc.wal_checkpoint_v2(
            rusqlite::DEFAULT_NAME,
            rusqlite::wal::CheckpointMode::PASSIVE,
        ) {
            Ok(_) => Ok(()),
            // Another checkpoint is running: the barrier's does the work.
            Err(e) if is_busy(&e) => Ok(()),
            Err(e) => Err(Error::sqlite(format!("{}: checkpoint", self.name), e)),
        }
    }

    /// Runs a PASSIVE checkpoint between releasing and retaking our read
    /// transaction (the caller holds the write lock, so no frame can
    /// appear meanwhile). Returns SQLite's (WAL frames, frames
    /// checkpointed), `(-1, -1)` if the database was busy.
    fn passive_checkpoint(&mut self, out: &mut SyncOutcome) -> Result<(i32, i32)> {
        self.end_read_tx()?;
        let ck = self.conn()?.wal_checkpoint_v2(
            rusqlite::DEFAULT_NAME,
            rusqlite::wal::CheckpointMode::PASSIVE,
        );
        self.begin_read_tx()?;
        let r = match ck {
            Ok(v) => v,
            Err(e) if is_busy(&e) => (-1, -1),
            Err(e) => return Err(Error::sqlite(format!("{}: checkpoint", self.name), e)),
        };
        self.last_checkpoint = Instant::now();
        self.synced_since_checkpoint = false;
        out.checkpoint = Some(CheckpointMode::Passive);
        Ok(r)
    }

    /// TRUNCATE checkpoint. It needs writers and readers out, so it cannot
    /// run behind our barrier; frames committed between our last sync and
    /// the truncation would be lost from view, so a snapshot follows.
    fn checkpoint_truncate(&mut self, out: &mut SyncOutcome) -> Result<()> {
        self.sync_to_end(out)?;
        self.end_read_tx()?;
        let ck = self.conn()?.wal_checkpoint_v2(
            rusqlite::DEFAULT_NAME,
            rusqlite::wal::CheckpointMode::TRUNCATE,
        );
        self.begin_read_tx()?;
        match ck {
            Ok(_) => {
                crate::crashpoint::here("truncated");
                self.last_checkpoint = Instant::now();
                self.synced_since_checkpoint = false;
                out.checkpoint = Some(CheckpointMode::Truncate);
                self.force_snapshot = Some("after TRUNCATE checkpoint".into());
                self.sync_to_end(out)
            }
            Err(e) if is_busy(&e) => Ok(()),
            Err(e) => Err(Error::sqlite(
                format!("{}: TRUNCATE checkpoint", self.name),
                e,
            )),
        }
    }

    fn current_wal_salts(&self) -> Result<Option<(u32, u32)>> {
        match File::open(&self.wal_path) {
            Ok(f) => {
                Ok(WalHeader::read(&f, &self.wal_path.display().to_string())?.map(|h| h.salts()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("open {}", self.wal_path.display()), e)),
        }
    }

    /// Prepares the database to go cold: under the write lock, syncs to
    /// the end of the WAL and checkpoints every frame; then empties the
    /// WAL (TRUNCATE) and records the database file in `seal.json`, so the
    /// next open can continue without a snapshot. Returns the L0 files
    /// written and the files' signature once sealed, or `None` if sealing
    /// was not possible now (the database is busy, a reader pins frames,
    /// or a write slipped in before the WAL was emptied).
    pub fn seal(&mut self) -> Result<(SyncOutcome, Option<FileSig>)> {
        self.open()?;
        let mut out = SyncOutcome::default();
        if !self.acquire_write_lock()? {
            return Ok((out, None));
        }
        let r = self.seal_locked(&mut out);
        let released = self.release_write_lock();
        let sealed = r?;
        released?;
        let (Some(at_seal), Some(pos)) = (sealed, self.pos) else {
            return Ok((out, None));
        };
        // Every frame of the WAL is in the database file: empty it.
        self.end_read_tx()?;
        let ck = self.conn()?.wal_checkpoint_v2(
            rusqlite::DEFAULT_NAME,
            rusqlite::wal::CheckpointMode::TRUNCATE,
        );
        self.begin_read_tx()?;
        match ck {
            Ok(_) => {
                crate::crashpoint::here("truncated");
            }
            Err(e) if is_busy(&e) => {} // a reader is active; the WAL stays, already checkpointed
            Err(e) => {
                return Err(Error::sqlite(
                    format!("{}: TRUNCATE checkpoint", self.name),
                    e,
                ));
            }
        }
        let sig = FileSig::of(&self.path);
        if !sig.same_db(&at_seal) {
            // A write slipped in between the barrier and the truncation:
            // its frames are in the database file only now. The read
            // transaction was released, so the next sync snapshots.
            return Ok((out, None));
        }
        let rec = SealRecord::new(&pos, &sig);
        let path = self.seal_path();
        fsutil::write_atomic(&path, |w| {
            serde_json::to_writer(&mut *w, &rec).map_err(std::io::Error::other)
        })?;
        self.continuity = Some(Continuity::DbFile);
        // Sealed only with an empty WAL: a busy truncation (an open read
        // transaction) may have let a writer append frames we have not
        // synced. The record stays valid either way.
        Ok((out, (sig.wal_size == 0).then_some(sig)))
    }

    /// The part of [`seal`](Self::seal) under the write lock: returns the
    /// files' signature if every frame up to our position is checkpointed.
    fn seal_locked(&mut self, out: &mut SyncOutcome) -> Result<Option<FileSig>> {
        self.sync_to_end(out)?;
        let Some(pos) = self.pos else {
            return Ok(None);
        };
        let (log, done) = self.passive_checkpoint(out)?;
        let fs = u64::from(self.page_size) + wal::FRAME_HEADER_SIZE;
        // With the write lock held, an empty WAL index means the database
        // file is the whole state; otherwise every frame through our
        // position must be in it.
        let full = log >= 0
            && log == done
            && (log == 0
                || (pos.wal_offset == WAL_HEADER_SIZE + log as u64 * fs
                    && self.current_wal_salts()? == Some(pos.salts())));
        if !full {
            return Ok(None);
        }
        let sig = FileSig::of(&self.path);
        let age = std::time::UNIX_EPOCH
            .elapsed()
            .map(|d| d.as_nanos() as i128 - sig.db_mtime_ns)
            .unwrap_or(0);
        let margin = SEAL_MTIME_MARGIN.as_nanos() as i128;
        if age < margin {
            std::thread::sleep(Duration::from_nanos((margin - age.max(0)) as u64));
        }
        Ok(Some(sig))
    }

    /// Deletes local L0 files up to `through` that are older than
    /// `min_age`, always keeping the newest (it holds the position).
    pub fn prune_local_l0(&mut self, through: TxId, min_age: Duration) -> Result<usize> {
        let files = self.local_l0_files()?;
        let Some(&newest) = files.last() else {
            return Ok(0);
        };
        let mut removed = 0;
        for (min, max) in files {
            if max > through || (min, max) == newest {
                break;
            }
            let p = self.l0_path(min, max);
            let age = fs::metadata(&p)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| m.elapsed().ok())
                .unwrap_or_default();
            if age < min_age {
                break;
            }
            match fs::remove_file(&p) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("remove {}", p.display()), e)),
            }
        }
        if removed > 0 {
            fsutil::fsync_dir(&self.l0_dir)?;
        }
        Ok(removed)
    }

    /// Releases the read transaction and closes the connections. The WAL
    /// is left as it is (no checkpoint on close).
    pub fn close(&mut self) -> Result<()> {
        let r1 = self.release_write_lock();
        let r2 = if self.conn.is_some() {
            self.end_read_tx()
        } else {
            Ok(())
        };
        let mut r3 = Ok(());
        for c in [self.lock_conn.take(), self.conn.take()]
            .into_iter()
            .flatten()
        {
            if let Err((_, e)) = c.close() {
                r3 = Err(Error::sqlite(format!("{}: close", self.name), e));
            }
        }
        // Only now that SQLite has let go may our descriptors close.
        self.db_file = None;
        self.shm_file = None;
        self.continuity = None;
        r1.and(r2).and(r3)
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = self.close(); // explicit close() reports errors; Drop cannot
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}
