//! The files of one SQLite database on disk, as SQLite names them: the
//! database, its `-wal` and `-shm` side files, and the identity of both
//! files ([`FileSig`]) that tells whether anyone wrote them.
//!
//! Every other module builds side-file names through here, so the naming
//! rule lives in one place.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// Suffix of the write-ahead log next to a database.
pub const WAL_SUFFIX: &str = "-wal";
/// Suffix of the wal-index (shared memory) file next to a database.
pub const SHM_SUFFIX: &str = "-shm";
/// Suffix of a rollback journal (never ours; SQLite's own).
pub const JOURNAL_SUFFIX: &str = "-journal";

/// The first 16 bytes of every SQLite database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

fn with_suffix(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// `<db>-wal`.
pub fn wal_path(db: &Path) -> PathBuf {
    with_suffix(db, WAL_SUFFIX)
}

/// `<db>-shm`.
pub fn shm_path(db: &Path) -> PathBuf {
    with_suffix(db, SHM_SUFFIX)
}

/// Removes the `-wal` and `-shm` files of `db` where present. A database
/// put in place of another must not meet the old one's WAL: SQLite would
/// apply it.
pub fn remove_side_files(db: &Path) -> Result<()> {
    for p in [wal_path(db), shm_path(db)] {
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("remove {}", p.display()), e)),
        }
    }
    Ok(())
}

/// True for the name of a file SQLite keeps beside a database (`-wal`,
/// `-shm`, `-journal`).
pub fn is_side_file_name(name: &str) -> bool {
    name.ends_with(WAL_SUFFIX) || name.ends_with(SHM_SUFFIX) || name.ends_with(JOURNAL_SUFFIX)
}

/// The database a write to `name` changes: `x.db-wal` → `x.db`, `x.db` →
/// `x.db`; `None` for `-shm` (readers touch it) and rollback journals.
pub fn written_db_name(name: &str) -> Option<&str> {
    if name.ends_with(SHM_SUFFIX) || name.ends_with(JOURNAL_SUFFIX) {
        return None;
    }
    Some(name.strip_suffix(WAL_SUFFIX).unwrap_or(name))
}

/// Checks the 16-byte SQLite header of a file (an empty file is an empty
/// database).
pub fn check_sqlite_header(path: &Path) -> Result<()> {
    let f = File::open(path).ctx(|| format!("open database {}", path.display()))?;
    let mut b = [0u8; 16];
    let n = crate::wal::read_full_at(&f, &mut b, 0).ctx(|| format!("read {}", path.display()))?;
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
pub(crate) fn header_says_wal(f: &File) -> bool {
    let mut b = [0u8; 2];
    matches!(crate::wal::read_full_at(f, &mut b, 18), Ok(2)) && b == [2, 2]
}

/// The identity and shape of a database file and its WAL on disk (size,
/// modification time, inode). The fleet compares it to know a cold
/// database was not written; [`Db::seal`](crate::db::Db::seal) records the
/// database part.
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
        if let Ok(m) = fs::metadata(wal_path(db))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_file_names() {
        assert_eq!(wal_path(Path::new("/d/x.db")), Path::new("/d/x.db-wal"));
        assert_eq!(shm_path(Path::new("x.db")), Path::new("x.db-shm"));
        assert_eq!(written_db_name("x.db-wal"), Some("x.db"));
        assert_eq!(written_db_name("x.db"), Some("x.db"));
        assert_eq!(written_db_name("x.db-shm"), None);
        assert_eq!(written_db_name("x.db-journal"), None);
        assert!(is_side_file_name("a-journal") && !is_side_file_name("a.db"));
    }
}
