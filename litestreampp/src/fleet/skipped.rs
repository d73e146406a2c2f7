//! Files the patterns match that the fleet leaves alone, and why: not a
//! database, unreadable, a rollback-journal database the operator asked us
//! not to switch to WAL mode (`fleet.rollback-journal: leave`), one held
//! under SQLite's exclusive locking mode, one on a read-only filesystem.
//! Each is reported once (a log line when it is first seen or its reason
//! changes), listed in `/status` and counted in
//! `litestreampp_skipped_files{reason}`; the fleet never opens it for
//! writing. A skipped file is examined again when it is written or at a
//! rescan.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::patterns::{Discovered, Found};

/// Why a matching file is left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SkipReason {
    /// It does not start with SQLite's header.
    NotADatabase,
    /// We may not read (or write) it.
    PermissionDenied,
    /// A rollback-journal database, left so by `fleet.rollback-journal: leave`.
    RollbackJournal,
    /// Another process holds it locked past our busy timeout (SQLite's
    /// exclusive locking mode).
    ExclusiveLocking,
    /// It lives on a read-only filesystem.
    ReadOnlyFilesystem,
}

impl SkipReason {
    pub const ALL: [SkipReason; 5] = [
        SkipReason::NotADatabase,
        SkipReason::PermissionDenied,
        SkipReason::RollbackJournal,
        SkipReason::ExclusiveLocking,
        SkipReason::ReadOnlyFilesystem,
    ];

    /// Reasons only opening the database tells: tried again at a rescan,
    /// not at every write.
    pub fn known_only_by_opening(self) -> bool {
        matches!(
            self,
            SkipReason::ExclusiveLocking | SkipReason::ReadOnlyFilesystem
        )
    }

    /// The metric label and `/status` word.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NotADatabase => "not-a-database",
            SkipReason::PermissionDenied => "permission-denied",
            SkipReason::RollbackJournal => "rollback-journal",
            SkipReason::ExclusiveLocking => "exclusive-locking",
            SkipReason::ReadOnlyFilesystem => "read-only-filesystem",
        }
    }

    /// What the log line says.
    pub fn explain(self) -> &'static str {
        match self {
            SkipReason::NotADatabase => "not a SQLite database",
            SkipReason::PermissionDenied => "permission denied",
            SkipReason::RollbackJournal => {
                "a rollback-journal database, left as it is (fleet.rollback-journal: leave)"
            }
            SkipReason::ExclusiveLocking => {
                "locked by another process past the busy timeout (SQLite's exclusive locking mode)"
            }
            SkipReason::ReadOnlyFilesystem => "on a read-only filesystem",
        }
    }
}

/// What a file the patterns match is, from its first 100 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Examined {
    /// A SQLite database; `rollback` when its header says rollback-journal
    /// mode rather than WAL.
    Database {
        rollback: bool,
    },
    /// Empty (just created: its first write tells) or gone.
    NotYet,
    Skip(SkipReason),
}

/// Reads `path`'s header.
pub fn examine(path: &Path) -> Examined {
    use std::io::Read;
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            return Examined::Skip(SkipReason::PermissionDenied);
        }
        Err(_) => return Examined::NotYet,
    };
    let mut h = [0u8; 100];
    let mut n = 0;
    while n < h.len() {
        match f.read(&mut h[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Examined::Skip(SkipReason::PermissionDenied),
        }
    }
    if n == 0 {
        return Examined::NotYet;
    }
    if n < 16 || &h[..16] != b"SQLite format 3\0" {
        return Examined::Skip(SkipReason::NotADatabase);
    }
    if n < 100 {
        return Examined::NotYet; // its header is being written
    }
    // Bytes 18 and 19: file format write/read versions, 1 = legacy
    // (rollback journal), 2 = WAL.
    Examined::Database {
        rollback: h[18] == 1 || h[19] == 1,
    }
}

/// Why a database whose replicator failed before its first sync is to be
/// left alone rather than retried as a failure: held under exclusive
/// locking, or not writable here. `None` for a real failure.
pub fn reason_of_failure(
    err: &litestreampp_core::Error,
    path: &Path,
    never_synced: bool,
) -> Option<SkipReason> {
    if !never_synced {
        return None;
    }
    if let litestreampp_core::Error::Sqlite { source, .. } = err
        && matches!(
            source.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    {
        return Some(SkipReason::ExclusiveLocking);
    }
    // Opening for writing changes nothing and says what the filesystem
    // allows us.
    match std::fs::OpenOptions::new().write(true).open(path) {
        Err(e) if e.kind() == ErrorKind::ReadOnlyFilesystem => Some(SkipReason::ReadOnlyFilesystem),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => Some(SkipReason::PermissionDenied),
        _ => None,
    }
}

impl super::tiers::Fleet {
    /// Records the files a walk found that we leave alone (and the
    /// rollback-journal databases, when asked to), and returns the
    /// databases to replicate and the directories to watch.
    pub(super) fn left_alone(&self, d: Discovered) -> (Vec<Found>, Vec<PathBuf>, Vec<PathBuf>) {
        let mut skipped = Vec::with_capacity(d.skipped.len());
        for (p, why) in d.skipped {
            self.registry.skip(&p, why);
            skipped.push(p);
        }
        let leave = self.opts.leave_rollback_journal;
        let mut found = Vec::with_capacity(d.found.len());
        for f in d.found {
            if leave && f.rollback {
                self.registry.skip(&f.path, SkipReason::RollbackJournal);
                skipped.push(f.path);
            } else {
                found.push(f);
            }
        }
        (found, d.dirs, skipped)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn headers_tell_databases_from_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        std::fs::write(p("empty.db"), b"").unwrap();
        assert_eq!(examine(&p("empty.db")), Examined::NotYet);
        assert_eq!(examine(&p("missing.db")), Examined::NotYet);
        std::fs::write(p("text.db"), vec![b'x'; 200]).unwrap();
        assert_eq!(
            examine(&p("text.db")),
            Examined::Skip(SkipReason::NotADatabase)
        );
        let c = rusqlite::Connection::open(p("rollback.db")).unwrap();
        c.execute_batch("CREATE TABLE t(x)").unwrap();
        drop(c);
        assert_eq!(
            examine(&p("rollback.db")),
            Examined::Database { rollback: true }
        );
        let c = rusqlite::Connection::open(p("wal.db")).unwrap();
        c.execute_batch("PRAGMA journal_mode=wal; CREATE TABLE t(x)")
            .unwrap();
        drop(c);
        assert_eq!(
            examine(&p("wal.db")),
            Examined::Database { rollback: false }
        );
    }
}
