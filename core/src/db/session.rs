//! The SQLite side of one [`Db`](super::Db): its connection, the read
//! transaction that pins the WAL, the write-lock barrier taken on a second
//! connection, and the descriptors of the database file and its `-shm`.
//!
//! Invariants:
//! - The database file and `-shm` descriptors close only after SQLite's
//!   connections: closing any descriptor of a file drops this process's
//!   POSIX locks on it, SQLite's included. Fields drop in declaration
//!   order, so the connections are declared first.
//! - Our connections never checkpoint on close and set `PERSIST_WAL`: the
//!   frames not yet shipped live in the WAL.
//! - We never write to the user's database: the read transaction reads the
//!   schema cookie, the barrier is `BEGIN IMMEDIATE` on a connection that
//!   never writes.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::dbfile;
use crate::error::{Error, IoContext, Result, SqlContext};

/// One open database: connections, locks and pinned files.
#[derive(Debug)]
pub(super) struct Session {
    conn: Connection,
    /// Open only while the write lock is held or a checkpoint runs on it:
    /// a fleet holds hundreds of hot databases, and checkpoints are rare.
    lock_conn: Option<Connection>,
    in_read_tx: bool,
    write_locked: bool,
    /// Kept open as long as the connection (see the module invariants).
    db_file: File,
    /// The wal-index, held open for the same reason; present once SQLite
    /// has opened the database in WAL mode.
    shm_file: Option<File>,
    path: PathBuf,
    name: String,
    busy_timeout: Duration,
}

impl Session {
    /// Opens the database at `path` and switches it to WAL mode. Returns
    /// the session (no read transaction yet) and the page size.
    pub(super) fn open(path: &Path, name: &str, busy_timeout: Duration) -> Result<(Session, u32)> {
        dbfile::check_sqlite_header(path)?;
        let db_file = File::open(path).ctx(|| format!("open database {name}"))?;
        let conn = open_connection(path, name, busy_timeout)?;
        // The journal_mode pragma loads the schema, which then stays in
        // memory as long as the connection; a database already in WAL mode
        // says so in its header.
        if !dbfile::header_says_wal(&db_file) {
            let mode: String = conn
                .query_row("PRAGMA journal_mode=wal", [], |r| r.get(0))
                .sql_ctx(|| format!("{name}: enable WAL mode"))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(Error::InvalidInput(format!(
                    "{name}: cannot switch to WAL mode (journal_mode is {mode:?})"
                )));
            }
            // Litestream does the same, silently; the change is the
            // application's database, so it is said.
            tracing::info!(db = %name, "switched a rollback-journal database to WAL mode");
        }
        let page_size: u32 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .sql_ctx(|| format!("{name}: read page size"))?;
        let session = Session {
            conn,
            lock_conn: None,
            in_read_tx: false,
            write_locked: false,
            db_file,
            shm_file: None,
            path: path.to_path_buf(),
            name: name.to_string(),
            busy_timeout,
        };
        Ok((session, page_size))
    }

    /// Opens `-shm` once the read transaction made SQLite create it;
    /// without it the damaged-WAL check is skipped, nothing else.
    pub(super) fn open_shm(&mut self) {
        self.shm_file = File::open(dbfile::shm_path(&self.path)).ok();
    }

    pub(super) fn db_file(&self) -> &File {
        &self.db_file
    }

    pub(super) fn shm_file(&self) -> Option<&File> {
        self.shm_file.as_ref()
    }

    pub(super) fn is_reading(&self) -> bool {
        self.in_read_tx
    }

    pub(super) fn is_write_locked(&self) -> bool {
        self.write_locked
    }

    /// Takes the read transaction that pins the WAL. Idempotent.
    pub(super) fn begin_read(&mut self) -> Result<()> {
        if self.in_read_tx {
            return Ok(());
        }
        let name = &self.name;
        self.conn
            .execute_batch("BEGIN DEFERRED")
            .sql_ctx(|| format!("{name}: begin read transaction"))?;
        // Reading the schema cookie starts the read transaction (and reads
        // page 1, so a file that is not a database fails here) without
        // parsing the schema into memory.
        let r: rusqlite::Result<i64> = self
            .conn
            .query_row("PRAGMA schema_version", [], |r| r.get(0));
        if let Err(e) = r {
            let _ = self.conn.execute_batch("ROLLBACK"); // the read error is what we report
            return Err(Error::sqlite(format!("{name}: take read lock"), e));
        }
        self.in_read_tx = true;
        Ok(())
    }

    /// Releases the read transaction. Idempotent.
    pub(super) fn end_read(&mut self) -> Result<()> {
        if !self.in_read_tx {
            return Ok(());
        }
        self.in_read_tx = false;
        let name = &self.name;
        self.conn
            .execute_batch("ROLLBACK")
            .sql_ctx(|| format!("{name}: release read lock"))
    }

    /// Takes SQLite's write lock (`BEGIN IMMEDIATE` on the second
    /// connection). Returns false if the database stayed busy.
    pub(super) fn acquire_write_lock(&mut self) -> Result<bool> {
        if self.write_locked {
            return Ok(true);
        }
        let name = self.name.clone();
        let lc = self.lock_conn()?;
        match lc.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => {
                self.write_locked = true;
                Ok(true)
            }
            Err(e) if is_busy(&e) => Ok(false),
            Err(e) => Err(Error::sqlite(format!("{name}: take write lock"), e)),
        }
    }

    /// Releases the write lock and closes the second connection.
    pub(super) fn release_write_lock(&mut self) -> Result<()> {
        if !self.write_locked {
            return Ok(());
        }
        self.write_locked = false;
        let name = &self.name;
        match self.lock_conn.take() {
            Some(lc) => lc
                .execute_batch("ROLLBACK")
                .sql_ctx(|| format!("{name}: release write lock")),
            None => Ok(()),
        }
    }

    /// Closes the second connection if it was opened for a checkpoint
    /// that did not take the write lock.
    pub(super) fn close_lock_conn(&mut self) {
        if !self.write_locked {
            self.lock_conn = None;
        }
    }

    /// A checkpoint on our own connection (the caller has released the
    /// read transaction). SQLite's (WAL frames, frames checkpointed), or
    /// `None` if the database was busy.
    pub(super) fn checkpoint(
        &self,
        mode: rusqlite::wal::CheckpointMode,
    ) -> Result<Option<(i32, i32)>> {
        let what = match mode {
            rusqlite::wal::CheckpointMode::TRUNCATE => "TRUNCATE checkpoint",
            _ => "checkpoint",
        };
        match self.conn.wal_checkpoint_v2(rusqlite::DEFAULT_NAME, mode) {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_busy(&e) => Ok(None),
            Err(e) => Err(Error::sqlite(format!("{}: {what}", self.name), e)),
        }
    }

    /// A PASSIVE checkpoint on the second connection, beside our read
    /// transaction (which it never passes). Busy counts as done: another
    /// checkpoint is running.
    pub(super) fn passive_checkpoint_beside(&mut self) -> Result<()> {
        let name = self.name.clone();
        let lc = self.lock_conn()?;
        // A fresh connection knows the database is in WAL mode only once it
        // has read it; before that a checkpoint does nothing.
        lc.query_row("PRAGMA schema_version", [], |r| r.get::<_, i64>(0))
            .sql_ctx(|| format!("{name}: read the schema cookie"))?;
        match lc.wal_checkpoint_v2(
            rusqlite::DEFAULT_NAME,
            rusqlite::wal::CheckpointMode::PASSIVE,
        ) {
            Ok(_) => Ok(()),
            Err(e) if is_busy(&e) => Ok(()),
            Err(e) => Err(Error::sqlite(format!("{name}: checkpoint"), e)),
        }
    }

    fn lock_conn(&mut self) -> Result<&Connection> {
        let lc = match self.lock_conn.take() {
            Some(lc) => lc,
            None => open_connection(&self.path, &self.name, self.busy_timeout)?,
        };
        Ok(self.lock_conn.insert(lc))
    }

    /// Releases the locks and closes the connections, then the files. The
    /// WAL is left as it is (no checkpoint on close).
    pub(super) fn close(mut self) -> Result<()> {
        let r1 = self.release_write_lock();
        let r2 = self.end_read();
        let mut r3 = Ok(());
        let Session {
            conn,
            lock_conn,
            db_file,
            shm_file,
            name,
            ..
        } = self;
        for c in [lock_conn, Some(conn)].into_iter().flatten() {
            if let Err((_, e)) = c.close() {
                r3 = Err(Error::sqlite(format!("{name}: close"), e));
            }
        }
        // Only now that SQLite has let go may our descriptors close.
        drop(db_file);
        drop(shm_file);
        r1.and(r2).and(r3)
    }
}

fn open_connection(path: &Path, name: &str, busy_timeout: Duration) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn =
        Connection::open_with_flags(path, flags).sql_ctx(|| format!("open database {name}"))?;
    conn.busy_timeout(busy_timeout)
        .sql_ctx(|| format!("{name}: set busy timeout"))?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .sql_ctx(|| format!("{name}: disable auto-checkpoint"))?;
    // Our connection closing must never checkpoint or delete the WAL: the
    // frames we have not shipped yet live there.
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

pub(super) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}
