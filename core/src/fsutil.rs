//! Local file helpers. Every local file is written to a temporary name,
//! fsynced, renamed into place, and its directory fsynced, so a crash leaves
//! either the old state or the complete new file, never a partial one.

use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// The temporary name used while writing `path`: `<path>.tmp`.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".tmp");
    PathBuf::from(s)
}

/// `<path>.<pid>.tmp`: a temporary name no other process writing the same
/// file uses (a `replicate -once` beside a running replicator of the same
/// database must not write over, or rename away, the other's file).
pub fn process_tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(format!(".{}.tmp", std::process::id()));
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
        fsync_dir(
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        )
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

/// Alignment of buffers, offsets and lengths for `O_DIRECT` I/O.
pub const DIRECT_ALIGN: usize = 4096;
/// Files at least this large bypass the page cache: streaming gigabytes of
/// snapshot or restore data through it would evict the application's own
/// hot pages (and costs a memory copy per byte).
pub const DIRECT_MIN_BYTES: u64 = 8 << 20;

/// A heap buffer whose usable part starts on a [`DIRECT_ALIGN`] boundary.
#[derive(Debug)]
pub struct AlignedBuf {
    raw: Vec<u8>,
    off: usize,
    cap: usize,
    len: usize,
}

impl AlignedBuf {
    /// A buffer of `cap` bytes (rounded up to the alignment).
    pub fn new(cap: usize) -> Self {
        let cap = cap.div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN;
        let raw = vec![0u8; cap + DIRECT_ALIGN];
        let off = raw.as_ptr().align_offset(DIRECT_ALIGN).min(DIRECT_ALIGN);
        AlignedBuf {
            raw,
            off,
            cap,
            len: 0,
        }
    }

    /// Bytes in use.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Capacity.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The bytes in use.
    pub fn as_slice(&self) -> &[u8] {
        &self.raw[self.off..self.off + self.len]
    }

    /// Grows the used part by `n` bytes (zeroed) and returns them.
    pub fn extend(&mut self, n: usize) -> &mut [u8] {
        let at = self.len;
        assert!(at + n <= self.cap, "AlignedBuf overflow");
        self.len += n;
        let s = &mut self.raw[self.off + at..self.off + at + n];
        s.fill(0);
        s
    }

    /// The whole capacity, for reads; set the used length with `set_len`.
    pub fn spare(&mut self) -> &mut [u8] {
        &mut self.raw[self.off..self.off + self.cap]
    }

    /// Sets the used length (at most the capacity).
    pub fn set_len(&mut self, len: usize) {
        self.len = len.min(self.cap);
    }

    /// Empties the buffer.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

fn is_unsupported(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL) || e.kind() == io::ErrorKind::Unsupported
}

/// Creates (truncating) `path` for writing, with `O_DIRECT` when `direct`
/// and the filesystem allows it. Returns the file and whether it is direct.
pub fn create_for_write(path: &Path, direct: bool) -> Result<(File, bool)> {
    use std::os::unix::fs::OpenOptionsExt;
    if direct {
        match fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
        {
            Ok(f) => return Ok((f, true)),
            Err(e) if is_unsupported(&e) => {}
            Err(e) => return Err(Error::io(format!("create {}", path.display()), e)),
        }
    }
    let f = File::create(path).ctx(|| format!("create {}", path.display()))?;
    Ok((f, false))
}

/// A sequential writer that bypasses the page cache with `O_DIRECT` when it
/// can (aligned blocks; the tail is padded and the file truncated to its
/// exact length) and otherwise writes normally. Call [`finish`](Self::finish).
#[derive(Debug)]
pub struct SeqWriter {
    file: File,
    path: PathBuf,
    direct: bool,
    buf: AlignedBuf,
    pos: u64,
}

impl SeqWriter {
    /// Creates `path`; `direct` asks for `O_DIRECT` (large files).
    pub fn create(path: &Path, direct: bool) -> Result<Self> {
        let (file, direct) = create_for_write(path, direct)?;
        Ok(SeqWriter {
            file,
            path: path.to_path_buf(),
            direct,
            buf: AlignedBuf::new(if direct { 4 << 20 } else { 1 << 20 }),
            pos: 0,
        })
    }

    fn write_block(&mut self, len: usize) -> io::Result<()> {
        let data = &self.buf.as_slice()[..len];
        match self.file.write_all_at(data, self.pos) {
            Ok(()) => {}
            Err(e) if self.direct && is_unsupported(&e) => {
                // The filesystem refused O_DIRECT for this write: go on
                // through the page cache.
                self.file = fs::OpenOptions::new().write(true).open(&self.path)?;
                self.direct = false;
                self.file.write_all_at(data, self.pos)?;
            }
            Err(e) => return Err(e),
        }
        self.pos += len as u64;
        Ok(())
    }

    /// Writes what is buffered and returns the file, its length exact. The
    /// caller fsyncs it (see [`commit_tmp`]).
    pub fn finish(mut self) -> Result<File> {
        let len = self.buf.len();
        let name = self.path.display().to_string();
        if len > 0 {
            let padded = if self.direct {
                len.div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN
            } else {
                len
            };
            if padded > len {
                self.buf.extend(padded - len);
            }
            self.write_block(padded).ctx(|| format!("write {name}"))?;
            let exact = self.pos - (padded - len) as u64;
            if padded > len {
                self.file
                    .set_len(exact)
                    .ctx(|| format!("truncate {name}"))?;
            }
        }
        Ok(self.file)
    }
}

impl io::Write for SeqWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            let room = self.buf.capacity() - self.buf.len();
            let n = room.min(rest.len());
            self.buf.extend(n).copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            if self.buf.len() == self.buf.capacity() {
                let cap = self.buf.capacity();
                self.write_block(cap)?;
                self.buf.clear();
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(()) // blocks are written when full and at finish()
    }
}

/// Copies `src` to `dst` atomically, bypassing the page cache for large
/// files; returns the size.
pub fn copy_atomic_direct(src: &Path, dst: &Path) -> Result<u64> {
    use std::os::unix::fs::OpenOptionsExt;
    let size = fs::metadata(src)
        .ctx(|| format!("stat {}", src.display()))?
        .len();
    if size < DIRECT_MIN_BYTES {
        return copy_atomic(src, dst);
    }
    let tmp = tmp_path(dst);
    let result = (|| {
        let (input, direct_in) = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(src)
        {
            Ok(f) => (f, true),
            Err(e) if is_unsupported(&e) => (
                File::open(src).ctx(|| format!("open {}", src.display()))?,
                false,
            ),
            Err(e) => return Err(Error::io(format!("open {}", src.display()), e)),
        };
        let mut out = SeqWriter::create(&tmp, true)?;
        let mut buf = AlignedBuf::new(8 << 20);
        let mut off = 0u64;
        let mut direct_in = direct_in;
        let mut input = input;
        while off < size {
            let n = match read_some_at(&input, buf.spare(), off) {
                Ok(n) => n,
                Err(e) if direct_in && is_unsupported(&e) => {
                    input = File::open(src).ctx(|| format!("open {}", src.display()))?;
                    direct_in = false;
                    continue;
                }
                Err(e) => return Err(Error::io(format!("read {}", src.display()), e)),
            };
            if n == 0 {
                break;
            }
            buf.set_len(n);
            io::Write::write_all(&mut out, buf.as_slice())
                .ctx(|| format!("write {}", tmp.display()))?;
            off += n as u64;
        }
        if off != size {
            return Err(Error::io(
                format!("copy {}", src.display()),
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("read {off} of {size} bytes"),
                ),
            ));
        }
        let f = out.finish()?;
        commit_tmp(&tmp, f, dst)?;
        Ok(size)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp); // best effort; the error says what failed
    }
    result
}

/// Reads up to `buf.len()` bytes at `offset` (fewer only at the end).
fn read_some_at(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => {
                n += k;
                // O_DIRECT reads come in aligned pieces; a short one is the end.
                if n % DIRECT_ALIGN != 0 {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
