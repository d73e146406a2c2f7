//! The `file` backend: Litestream's layout `<root>/ltx/<level>/<min>-<max>.ltx`
//! (spec §2). Files are written to `<name>.tmp`, fsynced, renamed, the
//! directory fsynced, and the mtime set to the LTX header timestamp, which
//! is the file's creation time when listed.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::stream;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{ByteReader, FileInfo, FileStream, LtxBody, RawEntry, ReplicaClient};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::ltx::Header;
use crate::txid::{TxId, ltx_file_name, parse_ltx_file_name};

/// A replica in a local (or mounted) directory.
#[derive(Debug, Clone)]
pub struct FileReplicaClient {
    root: PathBuf,
}

impl FileReplicaClient {
    /// A client for the replica rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FileReplicaClient { root: root.into() }
    }

    /// The replica root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/ltx/<level>`.
    pub fn level_dir(&self, level: u32) -> PathBuf {
        self.root.join("ltx").join(level.to_string())
    }

    /// `<root>/ltx/<level>/<min>-<max>.ltx`.
    pub fn file_path(&self, level: u32, min: TxId, max: TxId) -> PathBuf {
        self.level_dir(level).join(ltx_file_name(min, max))
    }
}

fn to_timestamp(t: SystemTime) -> jiff::Timestamp {
    jiff::Timestamp::try_from(t).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

fn list_level(dir: &Path, level: u32, seek: TxId) -> Result<Vec<FileInfo>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("list {}", dir.display()), e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.ctx(|| format!("list {}", dir.display()))?;
        let name = entry.file_name();
        let Some((min, max)) = name.to_str().and_then(parse_ltx_file_name) else {
            continue;
        };
        if min < seek {
            continue;
        }
        let md = match entry.metadata() {
            Ok(m) => m,
            // Deleted between readdir and stat (retention): not listed.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("stat {}", entry.path().display()), e)),
        };
        if !md.is_file() {
            continue;
        }
        out.push(FileInfo {
            level,
            min_txid: min,
            max_txid: max,
            size: md.len(),
            created_at: to_timestamp(
                md.modified()
                    .ctx(|| format!("stat {}", entry.path().display()))?,
            ),
        });
    }
    out.sort_by_key(|f| (f.min_txid, f.max_txid));
    Ok(out)
}

fn write_file(path: &Path, level: u32, min: TxId, max: TxId, body: &LtxBody) -> Result<FileInfo> {
    let name = path.display().to_string();
    let head = body.header_bytes()?;
    let header = Header::decode(&head, &name)?;
    if header.min_txid != min || header.max_txid != max {
        return Err(Error::InvalidInput(format!(
            "{name}: LTX header covers {}-{}, not {min}-{max}",
            header.min_txid, header.max_txid
        )));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    fsutil::create_dir_all(dir)?;
    let size = match body {
        LtxBody::Bytes(b) => {
            fsutil::write_atomic(path, |f| {
                use std::io::Write;
                f.write_all(b)
            })?;
            b.len() as u64
        }
        LtxBody::File(src) => fsutil::copy_atomic_direct(src, path)?,
    };
    let ts = SystemTime::UNIX_EPOCH + Duration::from_millis(header.timestamp_ms.max(0) as u64);
    let f = fs::File::options()
        .write(true)
        .open(path)
        .ctx(|| format!("open {name}"))?;
    f.set_modified(ts).ctx(|| format!("set mtime of {name}"))?;
    Ok(FileInfo {
        level,
        min_txid: min,
        max_txid: max,
        size,
        created_at: to_timestamp(ts),
    })
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Io {
            context: "file replica task".into(),
            source: std::io::Error::other(e.to_string()),
        })?
}

#[async_trait]
impl ReplicaClient for FileReplicaClient {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn location(&self) -> String {
        format!("file://{}", self.root.display())
    }

    fn read_pattern(&self) -> super::ReadPattern {
        super::ReadPattern::RandomAccess
    }

    async fn ltx_files(&self, level: u32, seek: TxId, _use_metadata: bool) -> Result<FileStream> {
        let dir = self.level_dir(level);
        let files = blocking(move || list_level(&dir, level, seek)).await?;
        Ok(Box::pin(stream::iter(files.into_iter().map(Ok))))
    }

    async fn open_ltx_file(
        &self,
        level: u32,
        min: TxId,
        max: TxId,
        offset: u64,
        size: u64,
    ) -> Result<ByteReader> {
        let path = self.file_path(level, min, max);
        let name = path.display().to_string();
        let mut f = tokio::fs::File::open(&path)
            .await
            .map_err(|e| Error::io(format!("open {name}"), e))?;
        if offset > 0 {
            f.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(|e| Error::io(format!("seek {name}"), e))?;
        }
        if size > 0 {
            Ok(Box::pin(f.take(size)))
        } else {
            Ok(Box::pin(f))
        }
    }

    async fn write_ltx_file(
        &self,
        level: u32,
        min: TxId,
        max: TxId,
        body: LtxBody,
    ) -> Result<FileInfo> {
        let path = self.file_path(level, min, max);
        blocking(move || write_file(&path, level, min, max, &body)).await
    }

    async fn delete_ltx_files(&self, files: &[FileInfo]) -> Result<()> {
        let paths: Vec<PathBuf> = files
            .iter()
            .map(|f| self.file_path(f.level, f.min_txid, f.max_txid))
            .collect();
        blocking(move || {
            let mut dirs = std::collections::BTreeSet::new();
            for p in &paths {
                match fs::remove_file(p) {
                    Ok(()) => {
                        if let Some(d) = p.parent() {
                            dirs.insert(d.to_path_buf());
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(format!("delete {}", p.display()), e)),
                }
            }
            for d in dirs {
                fsutil::fsync_dir(&d)?;
            }
            Ok(())
        })
        .await
    }

    async fn delete_all(&self) -> Result<()> {
        let root = self.root.clone();
        blocking(move || match fs::remove_dir_all(&root) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("delete {}", root.display()), e)),
        })
        .await
    }

    async fn list_raw(&self, dir: &str) -> Result<Vec<RawEntry>> {
        let dir = self.raw_path(dir)?;
        blocking(move || {
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(Error::io(format!("list {}", dir.display()), e)),
            };
            let mut out = Vec::new();
            for e in rd {
                let e = e.ctx(|| format!("list {}", dir.display()))?;
                let Ok(md) = e.metadata() else { continue }; // deleted meanwhile
                out.push(RawEntry {
                    name: e.file_name().to_string_lossy().into_owned(),
                    is_dir: md.is_dir(),
                    size: md.len(),
                    modified: md
                        .modified()
                        .map(to_timestamp)
                        .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
                });
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
        .await
    }

    async fn list_tree(&self) -> Result<Vec<RawEntry>> {
        let root = self.root.clone();
        blocking(move || {
            let mut out = Vec::new();
            walk_tree(&root, "", &mut out)?;
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
        .await
    }

    async fn open_raw(&self, path: &str) -> Result<ByteReader> {
        let path = self.raw_path(path)?;
        let f = tokio::fs::File::open(&path)
            .await
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        Ok(Box::pin(f))
    }
}

/// Adds the files under `dir` to `out`, named `<prefix><name>`. Symbolic
/// links are not followed (a link could lead outside the replica); names
/// that are not UTF-8 are skipped with a warning.
fn walk_tree(dir: &Path, prefix: &str, out: &mut Vec<RawEntry>) -> Result<()> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound && prefix.is_empty() => return Ok(()),
        Err(e) => return Err(Error::io(format!("list {}", dir.display()), e)),
    };
    for e in rd {
        let e = e.ctx(|| format!("list {}", dir.display()))?;
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            tracing::warn!(path = %e.path().display(), "skipping a name that is not UTF-8");
            continue;
        };
        let Ok(ft) = e.file_type() else { continue }; // deleted meanwhile
        if ft.is_dir() {
            walk_tree(&e.path(), &format!("{prefix}{name}/"), out)?;
        } else if ft.is_file() {
            let Ok(md) = e.metadata() else { continue };
            out.push(RawEntry {
                name: format!("{prefix}{name}"),
                is_dir: false,
                size: md.len(),
                modified: md
                    .modified()
                    .map(to_timestamp)
                    .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            });
        }
    }
    Ok(())
}

impl FileReplicaClient {
    /// `rel` under the root; never outside it.
    fn raw_path(&self, rel: &str) -> Result<PathBuf> {
        let ok = rel
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
        if !ok {
            return Err(Error::InvalidInput(format!(
                "{}: invalid replica path {rel:?}",
                self.root.display()
            )));
        }
        Ok(self.root.join(rel))
    }
}
