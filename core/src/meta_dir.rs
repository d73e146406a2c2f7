//! A database's meta directory (Litestream's layout, spec §3):
//! `<dir>/.<name>-litestream/` holding the local L0 files in `ltx/0/`,
//! scratch space for snapshots and compaction in `ltx/<level>/`, our
//! seal record `seal.json`, and `lock`, which one engine holds while it
//! writes there ([`MetaLock`]).
//!
//! Only this module knows those names. [`Db`](crate::db::Db) writes L0
//! files into it, [`Replica`](crate::replica::Replica) reads them from it,
//! the [`Maintainer`](crate::levels::Maintainer) uses its scratch space.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::ltx::Header;
use crate::txid::{TxId, ltx_file_name, parse_ltx_file_name};

const PREFIX: &str = ".";
const SUFFIX: &str = "-litestream";

/// The meta directory of one database. Cheap to clone (two paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaDir {
    root: PathBuf,
    l0: PathBuf,
}

impl MetaDir {
    /// The meta directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> MetaDir {
        let root = root.into();
        MetaDir {
            l0: root.join("ltx").join("0"),
            root,
        }
    }

    /// Litestream's meta directory for `db`: `<dir>/.<name>-litestream`.
    pub fn for_db(db: &Path) -> MetaDir {
        MetaDir::new(default_meta_dir(db))
    }

    /// True for a directory name that is a meta directory beside its
    /// database (`.NAME-litestream`). Those under a `meta-dir` have no dot
    /// and are not told apart from a user's directory by name.
    pub fn is_meta_dir_name(name: &str) -> bool {
        name.starts_with(PREFIX) && name.ends_with(SUFFIX)
    }

    /// True if the directory's name is one Litestream's rules make
    /// (`…-litestream`, beside the database or under a `meta-dir`), not a
    /// `meta-path` a user named, which may hold more than ours.
    pub fn has_litestream_name(&self) -> bool {
        self.root
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(SUFFIX))
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The directory of local L0 files.
    pub fn l0_dir(&self) -> &Path {
        &self.l0
    }

    /// Path of the local L0 file covering `min..=max`.
    pub fn l0_path(&self, min: TxId, max: TxId) -> PathBuf {
        self.l0.join(ltx_file_name(min, max))
    }

    /// Scratch directory for files of `level` made locally before upload
    /// (snapshots, compaction outputs and inputs).
    pub fn scratch_dir(&self, level: u32) -> PathBuf {
        self.root.join("ltx").join(level.to_string())
    }

    /// Where [`Db::seal`](crate::db::Db::seal) records a sealed database.
    pub(crate) fn seal_path(&self) -> PathBuf {
        self.root.join("seal.json")
    }

    /// The directory of local LTX files, every level.
    pub fn ltx_dir(&self) -> PathBuf {
        self.root.join("ltx")
    }

    /// Forgets where replication stands (Litestream's `reset`): removes the
    /// local LTX files and the seal record, so the next sync starts from a
    /// fresh snapshot. The database file is not touched.
    pub fn reset(&self) -> Result<()> {
        let ltx = self.ltx_dir();
        match fs::remove_dir_all(&ltx) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("remove {}", ltx.display()), e)),
        }
        let seal = self.seal_path();
        match fs::remove_file(&seal) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("remove {}", seal.display()), e)),
        }
        fsutil::fsync_dir(&self.root)
    }

    /// Takes the directory for one engine, `db` naming its database in
    /// the error when another holds it. Two engines writing L0 files into
    /// one directory would each number files from its own position, and
    /// the second file of a TXID would never be shipped.
    pub fn lock(&self, db: &str) -> Result<MetaLock> {
        use std::io::Write;
        fsutil::create_dir_all(&self.root)?;
        let path = self.root.join("lock");
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .ctx(|| format!("open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&path)
                    .ok()
                    .and_then(|s| s.trim().parse::<u32>().ok())
                    .map_or_else(
                        || "another process".to_string(),
                        |pid| format!("process {pid}"),
                    );
                return Err(Error::InvalidInput(format!(
                    "{db}: {holder} is replicating this database (it holds {}); run one replicator per database",
                    path.display()
                )));
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(Error::io(format!("lock {}", path.display()), e));
            }
        }
        // The holder's process ID, for the message above; only a hint, so
        // not fsynced.
        file.set_len(0)
            .and_then(|()| file.write_all_at(std::process::id().to_string().as_bytes(), 0))
            .and_then(|()| file.flush())
            .ctx(|| format!("write {}", path.display()))?;
        Ok(MetaLock { _file: file })
    }

    /// Creates the L0 directory (and its parents, fsynced).
    pub fn create(&self) -> Result<()> {
        fsutil::create_dir_all(&self.l0)
    }

    /// Local L0 files as `(min, max)`, ascending by max TXID.
    pub fn l0_files(&self) -> Result<Vec<(TxId, TxId)>> {
        let rd = match fs::read_dir(&self.l0) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("list {}", self.l0.display()), e)),
        };
        let mut out = Vec::new();
        for e in rd {
            let e = e.ctx(|| format!("list {}", self.l0.display()))?;
            if let Some((min, max)) = e.file_name().to_str().and_then(parse_ltx_file_name) {
                out.push((min, max));
            }
        }
        out.sort_by_key(|&(min, max)| (max, min));
        Ok(out)
    }

    /// The header of the newest local L0 file: where replication stands.
    pub fn newest_l0_header(&self) -> Result<Option<Header>> {
        let Some(&(min, max)) = self.l0_files()?.last() else {
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
        Header::decode(&b, &path.display().to_string()).map(Some)
    }

    /// Removes temporary files an interrupted write left in the L0
    /// directory.
    pub fn remove_stale_tmp_files(&self) -> Result<()> {
        let rd = fs::read_dir(&self.l0).ctx(|| format!("list {}", self.l0.display()))?;
        for e in rd {
            let e = e.ctx(|| format!("list {}", self.l0.display()))?;
            if e.file_name().to_string_lossy().ends_with(".tmp") {
                fs::remove_file(e.path()).ctx(|| format!("remove {}", e.path().display()))?;
            }
        }
        Ok(())
    }

    /// Deletes local L0 files up to `through` that are older than
    /// `min_age`, always keeping the newest (it holds the position).
    pub fn prune_l0(&self, through: TxId, min_age: Duration) -> Result<usize> {
        let files = self.l0_files()?;
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
            fsutil::fsync_dir(&self.l0)?;
        }
        Ok(removed)
    }
}

/// A meta directory held by one engine ([`MetaDir::lock`]): an exclusive
/// `flock` on its `lock` file, released when this is dropped or the
/// process ends however it ends, so a crash leaves nothing to clear.
/// Costs one descriptor while the database is open, none while it is not.
#[derive(Debug)]
pub struct MetaLock {
    _file: File,
}

/// Where the meta directories of a directory entry's databases live:
/// Litestream's `meta-dir` and `meta-path` on a `dir` entry, with its
/// rules for giving every database a directory of its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum MetaRoot {
    /// Beside each database: `<dir>/.<name>-litestream`.
    #[default]
    Beside,
    /// `meta-dir: BASE`: `BASE/<relative path>-litestream`.
    Dir(PathBuf),
    /// `meta-path: BASE`: `BASE/<relative dir>/.<name>-litestream`.
    Mirror(PathBuf),
}

impl MetaRoot {
    /// The meta directory of the database at `db`, whose path relative to
    /// the entry's directory is `rel`.
    pub fn meta_dir(&self, db: &Path, rel: &Path) -> MetaDir {
        match self {
            MetaRoot::Beside => MetaDir::for_db(db),
            MetaRoot::Dir(base) => {
                let mut name = rel.as_os_str().to_os_string();
                name.push(SUFFIX);
                MetaDir::new(base.join(name))
            }
            MetaRoot::Mirror(base) => MetaDir::new(base.join(default_meta_dir(rel))),
        }
    }
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
        .join(format!("{PREFIX}{name}{SUFFIX}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn one_engine_holds_a_meta_directory() {
        let dir = tempfile::tempdir().unwrap();
        let m = MetaDir::for_db(&dir.path().join("a.db"));
        let held = m.lock("a.db").unwrap();
        // Another open file description is refused, also in this process.
        let e = m.lock("a.db").unwrap_err().to_string();
        let pid = std::process::id();
        assert!(
            e.contains(&format!("a.db: process {pid} is replicating this database"))
                && e.contains(&m.path().join("lock").display().to_string()),
            "{e}"
        );
        drop(held);
        let _again = m.lock("a.db").unwrap();
    }

    #[test]
    fn layout() {
        let m = MetaDir::for_db(Path::new("/data/a.db"));
        assert_eq!(m.path(), Path::new("/data/.a.db-litestream"));
        assert_eq!(m.l0_dir(), Path::new("/data/.a.db-litestream/ltx/0"));
        assert_eq!(m.scratch_dir(9), Path::new("/data/.a.db-litestream/ltx/9"));
        assert!(MetaDir::is_meta_dir_name(".a.db-litestream"));
        assert!(!MetaDir::is_meta_dir_name("a.db-litestream"));
    }

    #[test]
    fn directory_entry_roots_are_litestreams() {
        let db = Path::new("/data/t/a/x.db");
        let rel = Path::new("a/x.db");
        let at = |r: MetaRoot| r.meta_dir(db, rel).path().to_path_buf();
        assert_eq!(
            at(MetaRoot::Beside),
            Path::new("/data/t/a/.x.db-litestream")
        );
        assert_eq!(
            at(MetaRoot::Dir("/meta".into())),
            Path::new("/meta/a/x.db-litestream")
        );
        assert_eq!(
            at(MetaRoot::Mirror("/meta".into())),
            Path::new("/meta/a/.x.db-litestream")
        );
        let top =
            MetaRoot::Mirror("/meta".into()).meta_dir(Path::new("/d/y.db"), Path::new("y.db"));
        assert_eq!(top.path(), Path::new("/meta/.y.db-litestream"));
        // Every one of them is named by Litestream's rules (a fleet may
        // remove it with its database); a `meta-path` of the user's is not.
        for r in [
            MetaRoot::Beside,
            MetaRoot::Dir("/meta".into()),
            MetaRoot::Mirror("/meta".into()),
        ] {
            assert!(r.meta_dir(db, rel).has_litestream_name());
        }
        assert!(!MetaDir::new("/var/lib/app-meta").has_litestream_name());
    }
}
