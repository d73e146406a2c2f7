//! A [`ReplicaClient`] over an OpenDAL [`Operator`], for the backends that
//! keep Litestream's `file` layout, `<path>/ltx/<level>/<min>-<max>.ltx`
//! (format spec §2): Google Cloud Storage and Azure Blob Storage. A
//! backend module builds the operator, names the metadata key that keeps
//! the LTX timestamp and how a large file goes up ([`Upload`]); everything
//! else (keys, listing, ranges, errors) is here, once.
//!
//! Uploads: a file up to [`PART`] is one request. A larger one goes up in
//! parts of [`PART`] that become the object only when the last is in, so
//! a replica never shows part of a file (see [`Upload`]).
//!
//! OpenDAL's own retry and logging layers are not used: one retry layer
//! ([`super::retry`]) wraps every remote backend, and errors are returned,
//! not logged.

use std::collections::HashMap;
use std::fmt;

use async_trait::async_trait;
use futures::StreamExt;
use opendal::{EntryMode, ErrorKind, Operator, options};

use super::{
    ByteReader, FileInfo, FileStream, LtxBody, RawEntry, ReplicaClient, SNAPSHOT_LEVEL, root_prefix,
};
use crate::error::{Error, Result};
use crate::redact::redact_text;
use crate::txid::{TxId, parse_ltx_file_name};

/// Largest single-request upload, and the part size of composed uploads:
/// as S3's part size (memory per upload in flight).
#[cfg(any(feature = "gcs", feature = "azure"))]
const PART: u64 = 16 << 20;
/// Parts in flight per upload.
#[cfg(any(feature = "gcs", feature = "azure"))]
const CONCURRENT_PARTS: usize = 4;

/// Installs OpenDAL's process-wide HTTP transport (reqwest, created at
/// the first request) before the first operator is built; OpenDAL's
/// constructor that would do it before `main` is not compiled in.
fn install_transport() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(opendal::install_default);
}

/// The operator of a backend's `builder`, under [`timeouts`]; a setting
/// the builder refuses is an error naming the replica at `location`.
pub(crate) fn build(builder: impl opendal::Builder, location: &str) -> Result<Operator> {
    install_transport();
    Operator::new(builder)
        .map(|op| op.layer(timeouts()))
        .map_err(|e| Error::InvalidInput(format!("{location}: {}", message(&e))))
}

/// Bounds on one request, so that a stalled server fails the attempt
/// (transiently) and the retry layer tries again: a whole request within a
/// minute, and no read or write of its body idle for 30 s.
fn timeouts() -> opendal::layers::TimeoutLayer {
    opendal::layers::TimeoutLayer::new()
        .with_timeout(std::time::Duration::from_secs(60))
        .with_io_timeout(std::time::Duration::from_secs(30))
}

/// How a file goes up: in one request up to [`PART`], then as below.
#[derive(Clone, Debug)]
pub(crate) enum Upload {
    /// Parts under temporary names, composed into the object (which
    /// appears whole) and then deleted. GCS: its resumable uploads are not
    /// open to OpenDAL's plain writes, its XML multipart API is not in the
    /// emulators, and compose is.
    #[cfg(feature = "gcs")]
    Compose,
    /// OpenDAL's chunked writer: Azure's Put Block per part, and the blob
    /// appears at Put Block List, with its metadata. Blocks never
    /// committed are dropped by the service.
    #[cfg(feature = "azure")]
    Blocks,
    /// Every file, whatever its size: streamed to a temporary name, then
    /// renamed into place (WebDAV: PUT, then MOVE).
    #[cfg(feature = "webdav")]
    Rename(super::webdav::DavWriter),
}

/// One replica (a database's `<path>`) on an OpenDAL backend.
#[derive(Clone)]
pub(crate) struct OperatorClient {
    op: Operator,
    kind: &'static str,
    location: String,
    /// `""` (the bucket's root) or `"a/b/"`.
    root: String,
    /// The user-metadata key holding the LTX header timestamp (GCS
    /// `litestream-timestamp`, Azure `litestreamtimestamp`), as Go's RFC
    /// 3339; read back by a stat per file when a listing asks for exact
    /// times. `None` (WebDAV): listings give the modification time, as
    /// in Go, and exact times come from each file's LTX header.
    timestamp_key: Option<&'static str>,
    upload: Upload,
    listing: Listing,
}

/// What a directory is on a backend, and so how a listing that finds
/// nothing is told from one that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Listing {
    /// A key prefix (object stores): a listing of a prefix nothing is
    /// under is empty, and a recursive listing is one flat request.
    Prefixes,
    /// A real directory (WebDAV collections): a listing names the
    /// directory itself. OpenDAL reads a 404 as an empty listing and, when
    /// recursive, skips a subdirectory that answers 404 or 403 without a
    /// word, so that a server that stumbles would make a replica look
    /// empty (a restore finds nothing; a first sync starts over). So
    /// directories are walked one listing at a time here, and a listing
    /// without its own entry is a 404, believed only if a stat agrees.
    #[cfg(feature = "webdav")]
    Collections,
}

impl fmt::Debug for OperatorClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OperatorClient")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// `<root>ltx/<level>/<min>-<max>.ltx`.
fn ltx_key(root: &str, level: u32, min: TxId, max: TxId) -> String {
    format!("{root}ltx/{level}/{}", crate::txid::ltx_file_name(min, max))
}

impl OperatorClient {
    pub(crate) fn new(
        op: Operator,
        kind: &'static str,
        location: String,
        path: &str,
        timestamp_key: Option<&'static str>,
        upload: Upload,
        listing: Listing,
    ) -> OperatorClient {
        OperatorClient {
            op,
            kind,
            location,
            root: root_prefix(path),
            timestamp_key,
            upload,
            listing,
        }
    }

    fn level_dir(&self, level: u32) -> String {
        format!("{}ltx/{level}/", self.root)
    }

    /// The key of one LTX file.
    pub(crate) fn key(&self, level: u32, min: TxId, max: TxId) -> String {
        ltx_key(&self.root, level, min, max)
    }

    fn describe(&self, key: &str) -> String {
        let rel = key.strip_prefix(&self.root).unwrap_or(key);
        format!("{} {rel}", self.location)
    }

    fn err(&self, e: opendal::Error, op: &str, key: &str) -> Error {
        let what = format!("{op} {}", self.describe(key));
        if e.kind() == ErrorKind::NotFound && matches!(op, "put" | "compose") {
            // A write finds nothing missing but where it writes to.
            let holder = if self.kind == "abs" {
                "container"
            } else {
                "bucket"
            };
            return Error::Backend {
                context: what,
                message: format!("{}: the {holder} does not exist", message(&e)),
                transient: false,
            };
        }
        map_err(e, &what)
    }

    /// Every entry under `dir` (a `/`-terminated prefix, or `""`): its
    /// files and sub-directories, or with `recursive` everything below it
    /// (callers keep the kinds they want). A missing directory lists as
    /// empty.
    async fn entries(&self, dir: &str, recursive: bool) -> Result<Vec<opendal::Entry>> {
        match self.listing {
            Listing::Prefixes => {}
            #[cfg(feature = "webdav")]
            Listing::Collections => return self.walk(dir, recursive).await,
        }
        let listed = self
            .op
            .list_options(
                dir,
                options::ListOptions {
                    recursive,
                    ..Default::default()
                },
            )
            .await;
        match listed {
            Ok(v) => Ok(v),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(self.err(e, "list", dir)),
        }
    }

    /// [`entries`](Self::entries) of [`Listing::Collections`]: one
    /// listing per directory, each as [`members`](Self::members) finds it.
    #[cfg(feature = "webdav")]
    async fn walk(&self, dir: &str, recursive: bool) -> Result<Vec<opendal::Entry>> {
        let mut out = Vec::new();
        let mut pending = vec![dir.to_string()];
        while let Some(d) = pending.pop() {
            for e in self.members(&d).await? {
                if recursive && e.metadata().mode() == EntryMode::DIR {
                    pending.push(e.path().to_string());
                }
                out.push(e);
            }
        }
        Ok(out)
    }

    /// The entries of directory `d`, without `d` itself. A listing that
    /// lacks `d`'s own entry was answered with a 404: `d` has no members
    /// if a stat finds it missing too (it does not exist yet, or was
    /// removed during a walk); if the stat finds it, the listing is asked
    /// again, a few times, then it is a transient error for the retry
    /// layer. Per directory, because a walk of a fleet's tree is
    /// thousands of listings, too many to restart as one.
    #[cfg(feature = "webdav")]
    async fn members(&self, d: &str) -> Result<Vec<opendal::Entry>> {
        const LISTINGS: u32 = 4;
        let same = |a: &str| a.trim_start_matches('/') == d.trim_start_matches('/');
        for _ in 0..LISTINGS {
            let listed = match self.op.list(d).await {
                Ok(v) => v,
                Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(self.err(e, "list", d)),
            };
            if listed.iter().any(|e| same(e.path())) {
                return Ok(listed.into_iter().filter(|e| !same(e.path())).collect());
            }
            match self.op.stat(d).await {
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(self.err(e, "stat", d)),
                Ok(_) => {} // it exists: list again
            }
        }
        Err(Error::Backend {
            context: format!("list {}", self.describe(d)),
            message: format!(
                "the server answered {LISTINGS} times that the directory does not exist, \
                 and each time after that that it does"
            ),
            transient: true,
        })
    }

    /// The exact timestamp of `key`: from its metadata, if it has one;
    /// without a metadata key (WebDAV), from the LTX header, one ranged
    /// read (Go takes the modification time, which is the upload's).
    async fn stored_timestamp(&self, key: &str) -> Result<Option<jiff::Timestamp>> {
        let Some(tk) = self.timestamp_key else {
            let what = self.describe(key);
            let head = self
                .op
                .read_options(
                    key,
                    options::ReadOptions {
                        range: (0..crate::ltx::HEADER_SIZE as u64).into(),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| self.err(e, "get", key))?
                .to_vec();
            let header = crate::ltx::Header::decode(&head, &what)?;
            return Ok(jiff::Timestamp::from_millisecond(header.timestamp_ms).ok());
        };
        let meta = self
            .op
            .stat(key)
            .await
            .map_err(|e| self.err(e, "stat", key))?;
        Ok(meta
            .user_metadata()
            .and_then(|m| m.get(tk))
            .and_then(|v| v.parse::<jiff::Timestamp>().ok()))
    }

    /// A stream of `key` from `offset` (`size` 0: to the end). The first
    /// chunk is awaited here, so a missing file is [`Error::NotFound`]
    /// from the call rather than from the first read.
    async fn stream(&self, key: &str, offset: u64, size: u64) -> Result<ByteReader> {
        let what = self.describe(key);
        let reader = self
            .op
            .reader(key)
            .await
            .map_err(|e| self.err(e, "get", key))?;
        let range: opendal::BytesRange = if size > 0 {
            (offset..offset + size).into()
        } else {
            (offset..).into()
        };
        let mut s = reader
            .into_bytes_stream(range)
            .await
            .map_err(|e| self.err(e, "get", key))?;
        let first = match s.next().await {
            None => None,
            Some(Ok(b)) => Some(b),
            Some(Err(e)) => {
                return Err(match e.kind() {
                    std::io::ErrorKind::NotFound => Error::NotFound { what },
                    _ => Error::Backend {
                        context: format!("get {what}"),
                        message: redact_text(&e.to_string()),
                        transient: true,
                    },
                });
            }
        };
        let rest = futures::stream::iter(first.map(Ok)).chain(s);
        Ok(Box::pin(tokio_util::io::StreamReader::new(rest)))
    }

    fn user_metadata(&self, timestamp: &str) -> Option<HashMap<String, String>> {
        self.timestamp_key
            .map(|k| HashMap::from([(k.to_string(), timestamp.to_string())]))
    }

    /// Streams `body` to a temporary name beside `key` and renames it into
    /// place. The level's directory is created before the first upload
    /// into it (a server may answer a PUT into a missing directory before
    /// reading the body, and a proxy between may then drop the answer),
    /// and again if the server says it has gone. The temporary file is
    /// deleted if the rename fails (best effort: its name never parses as
    /// an LTX name, and `delete_all` removes it with the rest).
    #[cfg(feature = "webdav")]
    async fn put_renamed(
        &self,
        dav: &super::webdav::DavWriter,
        key: &str,
        body: &LtxBody,
        size: u64,
    ) -> Result<()> {
        use super::webdav::DavError;
        let tmp = format!("{key}.tmp-{:016x}", rand::random::<u64>());
        let what = self.describe(key);
        let dir = match key.rsplit_once('/') {
            Some((d, _)) => format!("{d}/"),
            None => String::new(),
        };
        let mut created = false;
        loop {
            if !created && !dav.knows_dir(&dir) {
                self.op
                    .create_dir(&dir)
                    .await
                    .map_err(|e| self.err(e, "mkdir", &dir))?;
                dav.add_dir(&dir);
                created = true;
            }
            match dav.put(&tmp, body, size, &what).await {
                Ok(()) => break,
                Err(DavError::NoParent) if !created => dav.forget_dir(&dir),
                Err(DavError::NoParent) => {
                    return Err(Error::Backend {
                        context: format!("put {what}"),
                        message: "the server says the directory is missing after creating it"
                            .into(),
                        transient: true,
                    });
                }
                Err(DavError::Failed(e)) => return Err(e),
            }
        }
        if let Err(e) = dav.rename(&tmp, key, &what).await {
            let _ = self.op.delete(&tmp).await;
            return Err(e);
        }
        Ok(())
    }

    /// Uploads `body` as parts of up to [`PART`] bytes under temporary
    /// names and composes them into `key`; the parts are deleted after, or
    /// on failure (best effort: a leftover part never parses as an LTX
    /// name, and `delete_all` removes it with the rest).
    #[cfg(feature = "gcs")]
    async fn put_composed(
        &self,
        key: &str,
        body: &LtxBody,
        size: u64,
        timestamp: &str,
    ) -> Result<()> {
        let tag = rand::random::<u64>();
        let parts: Vec<(String, u64)> = (0..size.div_ceil(PART))
            .map(|n| (format!("{key}.part-{tag:016x}-{n:05}"), n * PART))
            .collect();
        let uploaded = futures::stream::iter(parts.iter().cloned())
            .map(|(part, offset)| async move {
                let data = body.read_at(offset, PART.min(size - offset)).await?;
                self.op
                    .write_options(
                        &part,
                        data,
                        options::WriteOptions {
                            content_type: Some("application/octet-stream".into()),
                            ..Default::default()
                        },
                    )
                    .await
                    .map_err(|e| self.err(e, "put", &part))?;
                Ok::<(), Error>(())
            })
            .buffer_unordered(CONCURRENT_PARTS)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<()>>>();
        let composed = match uploaded {
            Ok(_) => self
                .op
                .compose_options(
                    parts.iter().map(|(p, _)| p.clone()),
                    key,
                    options::ComposeOptions {
                        content_type: Some("application/octet-stream".into()),
                        user_metadata: self.user_metadata(timestamp),
                        concurrent: CONCURRENT_PARTS,
                        ..Default::default()
                    },
                )
                .await
                .map(|_| ())
                .map_err(|e| self.err(e, "compose", key)),
            Err(e) => Err(e),
        };
        for (p, _) in &parts {
            let _ = self.op.delete(p).await;
        }
        composed
    }
}

impl OperatorClient {
    /// Uploads `body` in one request.
    async fn put_whole(&self, key: &str, body: &LtxBody, size: u64, timestamp: &str) -> Result<()> {
        self.op
            .write_options(
                key,
                body.read_at(0, size).await?,
                options::WriteOptions {
                    content_type: Some("application/octet-stream".into()),
                    user_metadata: self.user_metadata(timestamp),
                    ..Default::default()
                },
            )
            .await
            .map(|_| ())
            .map_err(|e| self.err(e, "put", key))
    }

    /// Uploads `body` through OpenDAL's chunked writer, parts of [`PART`]
    /// read one at a time and sent up to [`CONCURRENT_PARTS`] at once; the
    /// object appears when the writer closes. On failure the writer is
    /// aborted (best effort: uncommitted blocks expire by themselves).
    #[cfg(feature = "azure")]
    async fn put_blocks(
        &self,
        key: &str,
        body: &LtxBody,
        size: u64,
        timestamp: &str,
    ) -> Result<()> {
        let mut w = self
            .op
            .writer_options(
                key,
                options::WriteOptions {
                    content_type: Some("application/octet-stream".into()),
                    user_metadata: self.user_metadata(timestamp),
                    chunk: Some(PART as usize),
                    concurrent: CONCURRENT_PARTS,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| self.err(e, "put", key))?;
        let mut offset = 0;
        let written = async {
            while offset < size {
                let data = body.read_at(offset, PART.min(size - offset)).await?;
                offset += data.len() as u64;
                w.write(data).await.map_err(|e| self.err(e, "put", key))?;
            }
            w.close().await.map_err(|e| self.err(e, "put", key))?;
            Ok::<(), Error>(())
        }
        .await;
        if written.is_err() {
            let _ = w.abort().await;
        }
        written
    }
}

/// Maps an OpenDAL error: missing objects are [`Error::NotFound`]; the
/// rest are backend errors, transient when OpenDAL says a retry may
/// succeed (5xx, throttling, connection failures). Messages are redacted:
/// an Azure SAS token travels in request URLs.
pub(crate) fn map_err(e: opendal::Error, what: &str) -> Error {
    match e.kind() {
        ErrorKind::NotFound => Error::NotFound {
            what: what.to_string(),
        },
        ErrorKind::ConditionNotMatch => Error::PreconditionFailed {
            what: what.to_string(),
        },
        kind => Error::Backend {
            context: what.to_string(),
            message: message(&e),
            transient: e.is_temporary() || kind == ErrorKind::RateLimited,
        },
    }
}

/// An OpenDAL error as one line: its kind, message and causes, redacted.
/// Not its `Display`, which lists the request's URL and every response
/// header.
pub(crate) fn message(e: &opendal::Error) -> String {
    let mut parts = vec![format!("{}: {}", e.kind(), e.message())];
    parts.extend(crate::error::causes(e));
    redact_text(&parts.join(": "))
}

fn timestamp_of(m: &opendal::Metadata) -> jiff::Timestamp {
    m.last_modified()
        .map(Into::into)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

fn file_info(level: u32, name: &str, m: &opendal::Metadata) -> Option<FileInfo> {
    let (min, max) = parse_ltx_file_name(name)?;
    Some(FileInfo {
        level,
        min_txid: min,
        max_txid: max,
        size: m.content_length(),
        created_at: timestamp_of(m),
    })
}

fn raw_entry(name: &str, e: &opendal::Entry) -> RawEntry {
    let m = e.metadata();
    RawEntry {
        name: name.trim_end_matches('/').to_string(),
        is_dir: m.mode() == EntryMode::DIR,
        size: m.content_length(),
        modified: timestamp_of(m),
    }
}

#[async_trait]
impl ReplicaClient for OperatorClient {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn files_per_delete(&self) -> usize {
        1
    }

    async fn all_ltx_files(&self) -> Result<Vec<FileInfo>> {
        // One recursive listing of `<path>/ltx/`.
        let dir = format!("{}ltx/", self.root);
        let mut out = Vec::new();
        for e in self.entries(&dir, true).await? {
            let Some((level, name)) = e
                .path()
                .strip_prefix(&dir)
                .and_then(|rest| rest.split_once('/'))
            else {
                continue;
            };
            let Ok(level) = level.parse::<u32>() else {
                continue;
            };
            if level <= SNAPSHOT_LEVEL
                && !name.contains('/')
                && let Some(f) = file_info(level, name, e.metadata())
            {
                out.push(f);
            }
        }
        out.sort_by_key(|f| (f.level, f.min_txid, f.max_txid));
        Ok(out)
    }

    async fn ltx_files(&self, level: u32, seek: TxId, use_metadata: bool) -> Result<FileStream> {
        let dir = self.level_dir(level);
        let mut files: Vec<FileInfo> = self
            .entries(&dir, false)
            .await?
            .iter()
            .filter(|e| e.metadata().mode() == EntryMode::FILE)
            .filter_map(|e| file_info(level, e.name(), e.metadata()))
            .filter(|f| f.min_txid >= seek)
            .collect();
        files.sort_by_key(|f| (f.min_txid, f.max_txid));
        let listing = futures::stream::iter(files.into_iter().map(Ok));
        if !use_metadata {
            return Ok(Box::pin(listing));
        }
        let me = self.clone();
        Ok(super::with_exact_times(Box::pin(listing), move |f| {
            let me = me.clone();
            let key = me.key(f.level, f.min_txid, f.max_txid);
            async move { me.stored_timestamp(&key).await }
        }))
    }

    async fn open_ltx_file(
        &self,
        level: u32,
        min: TxId,
        max: TxId,
        offset: u64,
        size: u64,
    ) -> Result<ByteReader> {
        self.stream(&self.key(level, min, max), offset, size).await
    }

    async fn read_ltx_range(
        &self,
        level: u32,
        min: TxId,
        max: TxId,
        offset: u64,
        size: u64,
    ) -> Result<Vec<u8>> {
        let key = self.key(level, min, max);
        let range: opendal::BytesRange = if size > 0 {
            (offset..offset + size).into()
        } else {
            (offset..).into()
        };
        let buf = self
            .op
            .read_options(
                &key,
                options::ReadOptions {
                    range,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| self.err(e, "get", &key))?;
        Ok(buf.to_vec())
    }

    async fn write_ltx_file(
        &self,
        level: u32,
        min: TxId,
        max: TxId,
        body: LtxBody,
    ) -> Result<FileInfo> {
        let key = self.key(level, min, max);
        let (info, ts) = body.upload_info(level, min, max, &self.describe(&key))?;
        match &self.upload {
            #[cfg(feature = "webdav")]
            Upload::Rename(dav) => self.put_renamed(dav, &key, &body, info.size).await?,
            #[cfg(feature = "gcs")]
            Upload::Compose if info.size > PART => {
                self.put_composed(&key, &body, info.size, &ts).await?
            }
            #[cfg(feature = "azure")]
            Upload::Blocks if info.size > PART => {
                self.put_blocks(&key, &body, info.size, &ts).await?
            }
            // Only a webdav-only build has no other upload kind.
            #[allow(unreachable_patterns)]
            _ => self.put_whole(&key, &body, info.size, &ts).await?,
        }
        Ok(info)
    }

    async fn delete_ltx_files(&self, files: &[FileInfo]) -> Result<()> {
        for f in files {
            let key = self.key(f.level, f.min_txid, f.max_txid);
            match self.op.delete(&key).await {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(self.err(e, "delete", &key)),
            }
        }
        Ok(())
    }

    async fn delete_all(&self) -> Result<()> {
        // Only the LTX layout (at a bucket's root, `path` is everything),
        // one delete per file as Litestream does: batch deletes are not in
        // every server (the GCS emulators lack them).
        let dir = format!("{}ltx/", self.root);
        for e in self.entries(&dir, true).await? {
            if e.metadata().mode() != EntryMode::FILE {
                continue;
            }
            match self.op.delete(e.path()).await {
                Ok(()) => {}
                Err(err) if err.kind() == ErrorKind::NotFound => {}
                Err(err) => return Err(self.err(err, "delete", e.path())),
            }
        }
        Ok(())
    }

    async fn list_raw(&self, dir: &str) -> Result<Vec<RawEntry>> {
        let prefix = format!("{}{}/", self.root, dir.trim_matches('/'));
        let mut out: Vec<RawEntry> = self
            .entries(&prefix, false)
            .await?
            .iter()
            .filter_map(|e| {
                let name = e.path().strip_prefix(&prefix)?;
                (!name.trim_end_matches('/').is_empty()).then(|| raw_entry(name, e))
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn list_tree(&self) -> Result<Vec<RawEntry>> {
        Ok(self
            .entries(&self.root, true)
            .await?
            .iter()
            .filter(|e| e.metadata().mode() == EntryMode::FILE)
            .filter_map(|e| {
                let name = e.path().strip_prefix(&self.root)?;
                (!name.is_empty()).then(|| raw_entry(name, e))
            })
            .collect())
    }

    async fn open_raw(&self, path: &str) -> Result<ByteReader> {
        let key = format!("{}{}", self.root, path.trim_matches('/'));
        self.stream(&key, 0, 0).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_go_path_join() {
        assert_eq!(root_prefix(""), "");
        assert_eq!(root_prefix("."), "");
        assert_eq!(root_prefix("/"), "");
        assert_eq!(root_prefix("some/db/"), "some/db/");
        assert_eq!(
            ltx_key(&root_prefix("some/db"), 9, TxId(1), TxId(0x1a)),
            "some/db/ltx/9/0000000000000001-000000000000001a.ltx"
        );
        assert_eq!(
            ltx_key(&root_prefix("."), 0, TxId(2), TxId(2)),
            "ltx/0/0000000000000002-0000000000000002.ltx"
        );
    }
}
