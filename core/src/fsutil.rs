//! Local file helpers. Every local file is written to a temporary name,
//! fsynced, renamed into place, and its directory fsynced, so a crash leaves
//! either the old state or the complete new file, never a partial one.

use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// The temporary name used while writing `path`: `<path>.tmp`.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".tmp");
    PathBuf::from(s)
}

/// fsyncs a directory so a rename or unlink in it is durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).ctx(|| format!("open directory {}", dir.display()))?;
    d.sync_all()
        .ctx(|| format!("fsync directory {}", dir.display()))
}

/// Creates a directory and its parents, fsyncing each parent it created.
pub fn create_dir_all(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut cur = dir;
    while !cur.as_os_str().is_empty() && !cur.exists() {
        missing.push(cur.to_path_buf());
        match cur.parent() {
            Some(p) => cur = p,
            None => break,
        }
    }
    fs::create_dir_all(dir).ctx(|| format!("create directory {}", dir.display()))?;
    for m in missing.iter().rev() {
        if let Some(parent) = m.parent().filter(|p| !p.as_os_str().is_empty()) {
            fsync_dir(parent)?;
        }
    }
    Ok(())
}

/// Writes `path` atomically through `fill`, which gets a buffered writer.
pub fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> Result<()> {
    let tmp = tmp_path(path);
    let name = path.display().to_string();
    let result = (|| {
        let f = File::create(&tmp).ctx(|| format!("create {}", tmp.display()))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        fill(&mut w).ctx(|| format!("write {}", tmp.display()))?;
        let f = w
            .into_inner()
            .map_err(|e| Error::io(format!("write {}", tmp.display()), e.into_error()))?;
        f.sync_all().ctx(|| format!("fsync {}", tmp.display()))?;
        drop(f);
        fs::rename(&tmp, path).ctx(|| format!("rename {} to {name}", tmp.display()))?;
        fsync_dir(path.parent().unwrap_or(Path::new(".")))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp); // best effort: the error below is what matters
    }
    result
}

/// Finishes a file written at `tmp` into `path`: fsync, rename, fsync dir.
/// Removes `tmp` on failure.
pub fn commit_tmp(tmp: &Path, file: File, path: &Path) -> Result<()> {
    let result = (|| {
        file.sync_all().ctx(|| format!("fsync {}", tmp.display()))?;
        drop(file);
        fs::rename(tmp, path).ctx(|| format!("rename {} to {}", tmp.display(), path.display()))?;
        fsync_dir(path.parent().unwrap_or(Path::new(".")))
    })();
    if result.is_err() {
        let _ = fs::remove_file(tmp); // best effort; the returned error says what failed
    }
    result
}

/// Copies `src` to `dst` atomically (kernel copy where possible); returns
/// the size.
pub fn copy_atomic(src: &Path, dst: &Path) -> Result<u64> {
    let tmp = tmp_path(dst);
    let n = match fs::copy(src, &tmp) {
        Ok(n) => n,
        Err(e) => {
            let _ = fs::remove_file(&tmp); // best effort cleanup of a partial copy
            return Err(Error::io(
                format!("copy {} to {}", src.display(), tmp.display()),
                e,
            ));
        }
    };
    let f = File::options()
        .write(true)
        .open(&tmp)
        .ctx(|| format!("open {}", tmp.display()))?;
    commit_tmp(&tmp, f, dst)?;
    Ok(n)
}
