//! The replica storage contract (Litestream's `ReplicaClient`) and its
//! backends, one module each. Cross-cutting behaviour (retries, fault
//! injection, rate limits) wraps a client rather than living inside one.

pub mod azure;
#[doc(hidden)]
pub mod conformance;
pub mod file;
pub mod gcs;
pub mod limit;
pub mod metered;
pub mod nats;
#[cfg(feature = "opendal")]
pub(crate) mod operator;
pub mod oss;
pub mod retry;
pub mod s3;
pub mod sftp;
pub mod webdav;

use std::fmt::Debug;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use tokio::io::AsyncRead;

use crate::error::{Error, Result};
use crate::redact::redact_url;
use crate::txid::TxId;

/// The snapshot level.
pub const SNAPSHOT_LEVEL: u32 = 9;

/// One LTX file in a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    pub level: u32,
    pub min_txid: TxId,
    pub max_txid: TxId,
    pub size: u64,
    /// When the file's data was created: the LTX header timestamp where
    /// the backend preserves it (file mtime, S3 metadata), otherwise the
    /// upload time.
    pub created_at: jiff::Timestamp,
}

impl FileInfo {
    /// `<min>-<max>.ltx`.
    pub fn file_name(&self) -> String {
        crate::txid::ltx_file_name(self.min_txid, self.max_txid)
    }
}

/// A lazily produced listing, ordered by min TXID.
pub type FileStream = BoxStream<'static, Result<FileInfo>>;

/// A byte stream read from a replica.
pub type ByteReader = Pin<Box<dyn AsyncRead + Send>>;

/// The bytes of an LTX file to upload.
#[derive(Debug, Clone)]
pub enum LtxBody {
    /// A complete local file (an L0 file or a compaction output).
    File(PathBuf),
    /// A complete file in memory.
    Bytes(Bytes),
}

impl LtxBody {
    /// What an upload under `min`-`max` at `level` stores: its info (the
    /// size, the header's time as the creation time) and the header time
    /// as Go formats it for metadata. Errors when the header covers
    /// another range; `what` names the object.
    #[cfg_attr(
        not(any(
            feature = "s3",
            feature = "opendal",
            feature = "nats",
            feature = "sftp"
        )),
        allow(dead_code)
    )] // remote backends only
    pub(crate) fn upload_info(
        &self,
        level: u32,
        min: TxId,
        max: TxId,
        what: &str,
    ) -> Result<(FileInfo, String)> {
        let header = crate::ltx::Header::decode(&self.header_bytes()?, what)?;
        if header.min_txid != min || header.max_txid != max {
            return Err(Error::InvalidInput(format!(
                "{what}: LTX header covers {}-{}, not {min}-{max}",
                header.min_txid, header.max_txid
            )));
        }
        let size = match self {
            LtxBody::Bytes(b) => b.len() as u64,
            LtxBody::File(p) => std::fs::metadata(p)
                .map_err(|e| Error::io(format!("stat {}", p.display()), e))?
                .len(),
        };
        let info = FileInfo {
            level,
            min_txid: min,
            max_txid: max,
            size,
            created_at: jiff::Timestamp::from_millisecond(header.timestamp_ms)
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        };
        Ok((info, s3::format_timestamp(header.timestamp_ms)))
    }

    /// `len` bytes at `off` (a part of an upload).
    #[cfg_attr(not(any(feature = "s3", feature = "opendal")), allow(dead_code))] // remote backends only
    pub(crate) async fn read_at(&self, off: u64, len: u64) -> Result<Bytes> {
        match self {
            LtxBody::Bytes(b) => Ok(b.slice(off as usize..(off + len) as usize)),
            LtxBody::File(p) => {
                let p = p.clone();
                tokio::task::spawn_blocking(move || {
                    use std::os::unix::fs::FileExt;
                    let f = std::fs::File::open(&p)
                        .map_err(|e| Error::io(format!("open {}", p.display()), e))?;
                    let mut buf = vec![0u8; len as usize];
                    f.read_exact_at(&mut buf, off)
                        .map_err(|e| Error::io(format!("read {}", p.display()), e))?;
                    Ok(Bytes::from(buf))
                })
                .await
                .map_err(|e| Error::io("read part", std::io::Error::other(e.to_string())))?
            }
        }
    }

    /// The first 100 bytes, to read the header timestamp.
    pub(crate) fn header_bytes(&self) -> Result<Vec<u8>> {
        match self {
            LtxBody::Bytes(b) => Ok(b.slice(..b.len().min(100)).to_vec()),
            LtxBody::File(p) => {
                use std::io::Read;
                let mut f = std::fs::File::open(p)
                    .map_err(|e| Error::io(format!("open {}", p.display()), e))?;
                let mut buf = vec![0u8; 100];
                let mut n = 0;
                while n < 100 {
                    match f.read(&mut buf[n..]) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(Error::io(format!("read {}", p.display()), e)),
                    }
                }
                buf.truncate(n);
                Ok(buf)
            }
        }
    }
}

/// How a restore should read large files from a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPattern {
    /// Many small range reads into memory: random access is free (local
    /// files).
    RandomAccess,
    /// A few long streams per file, decoded as bytes arrive: every request
    /// has a cost (object stores).
    Streams,
}

/// Storage for one database's replica: the contract every backend keeps
/// (format spec §2).
#[async_trait]
pub trait ReplicaClient: Send + Sync + Debug {
    /// Backend type: `"file"`, `"s3"`, ...
    fn kind(&self) -> &'static str;

    /// Where the replica lives, for messages (never holds credentials).
    fn location(&self) -> String;

    /// How restores should read large files.
    fn read_pattern(&self) -> ReadPattern {
        ReadPattern::Streams
    }

    /// How many files one request of [`delete_ltx_files`](Self::delete_ltx_files)
    /// deletes: the retry layer retries deletions in batches of this size,
    /// so a long deletion makes progress through transient failures.
    fn files_per_delete(&self) -> usize {
        usize::MAX
    }

    /// Files of `level` whose min TXID is at least `seek`, ordered by min
    /// TXID, produced lazily (paginated). With `use_metadata` the creation
    /// time comes from the exact timestamp the backend stored (slower on
    /// object stores; needed for point-in-time restore).
    async fn ltx_files(&self, level: u32, seek: TxId, use_metadata: bool) -> Result<FileStream>;

    /// Every file of every level (0-9), each level ordered by min TXID, in
    /// as few requests as the backend allows (S3: one listing instead of
    /// ten; what a fleet's new database costs at startup).
    async fn all_ltx_files(&self) -> Result<Vec<FileInfo>> {
        use futures::TryStreamExt;
        let mut out = Vec::new();
        for level in 0..=SNAPSHOT_LEVEL {
            let mut files = self.ltx_files(level, TxId(0), false).await?;
            while let Some(f) = files.try_next().await? {
                out.push(f);
            }
        }
        Ok(out)
    }

    /// Opens a file for reading from `offset`; `size` 0 reads to the end.
    /// Missing files give [`Error::NotFound`].
    async fn open_ltx_file(
        &self,
        level: u32,
        min: TxId,
        max: TxId,
        offset: u64,
        size: u64,
    ) -> Result<ByteReader>;

    /// Stores a complete LTX file atomically and returns its info, with the
    /// creation time taken from the LTX header timestamp.
    async fn write_ltx_file(
        &self,
        level: u32,
        min: TxId,
        max: TxId,
        body: LtxBody,
    ) -> Result<FileInfo>;

    /// Reads `size` bytes at `offset` of a file into memory (`size` 0: to
    /// the end). Backends override this when they can do better than
    /// streaming through [`open_ltx_file`](Self::open_ltx_file).
    async fn read_ltx_range(
        &self,
        level: u32,
        min: TxId,
        max: TxId,
        offset: u64,
        size: u64,
    ) -> Result<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        let mut r = self.open_ltx_file(level, min, max, offset, size).await?;
        let mut buf = Vec::with_capacity(size as usize);
        r.read_to_end(&mut buf).await.map_err(|e| {
            Error::io(
                format!(
                    "read {} level {level} {}",
                    self.location(),
                    crate::txid::ltx_file_name(min, max)
                ),
                e,
            )
        })?;
        Ok(buf)
    }

    /// Deletes files; missing files are not an error.
    async fn delete_ltx_files(&self, files: &[FileInfo]) -> Result<()>;

    /// Deletes the whole replica.
    async fn delete_all(&self) -> Result<()>;

    /// Lists `dir` (relative to the replica root, `/`-separated) outside
    /// the LTX layout: used to read Litestream 0.3 replicas. A missing
    /// directory lists as empty.
    async fn list_raw(&self, dir: &str) -> Result<Vec<RawEntry>> {
        Err(Error::InvalidInput(format!(
            "{}: listing {dir} is not supported by the {} backend",
            self.location(),
            self.kind()
        )))
    }

    /// Every file under the replica root, in any layout, named by its path
    /// relative to the root (`/`-separated): how `restore-pattern` finds the
    /// replicas under a prefix. S3: one paginated listing without a
    /// delimiter. A missing root lists as empty.
    async fn list_tree(&self) -> Result<Vec<RawEntry>> {
        Err(Error::InvalidInput(format!(
            "{}: listing a tree is not supported by the {} backend",
            self.location(),
            self.kind()
        )))
    }

    /// Opens `path` (relative to the replica root) outside the LTX layout.
    async fn open_raw(&self, path: &str) -> Result<ByteReader> {
        Err(Error::InvalidInput(format!(
            "{}: reading {path} is not supported by the {} backend",
            self.location(),
            self.kind()
        )))
    }
}

/// An entry of [`ReplicaClient::list_raw`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
    pub modified: jiff::Timestamp,
}

/// Metadata requests in flight when a listing reads exact timestamps.
#[cfg_attr(
    not(any(feature = "s3", feature = "opendal", feature = "sftp")),
    allow(dead_code)
)] // remote backends only
const EXACT_TIME_CONCURRENCY: usize = 32;

/// `listing` with each file's creation time replaced by the exact one
/// `lookup` reads for it (the backend's stored LTX timestamp; a request
/// per file, several in flight, in listing order). `None` keeps the
/// listed time.
#[cfg_attr(
    not(any(feature = "s3", feature = "opendal", feature = "sftp")),
    allow(dead_code)
)] // remote backends only
pub(crate) fn with_exact_times<F, Fut>(listing: FileStream, lookup: F) -> FileStream
where
    F: Fn(&FileInfo) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Option<jiff::Timestamp>>> + Send + 'static,
{
    use futures::StreamExt;
    Box::pin(
        listing
            .map(move |r| {
                let pending = r.map(|f| (lookup(&f), f));
                async move {
                    let (ts, mut f) = pending?;
                    if let Some(ts) = ts.await? {
                        f.created_at = ts;
                    }
                    Ok(f)
                }
            })
            .buffered(EXACT_TIME_CONCURRENCY),
    )
}

/// Reads a whole range of a replica file into memory.
pub async fn read_range(
    client: &dyn ReplicaClient,
    info: &FileInfo,
    offset: u64,
    size: u64,
) -> Result<Vec<u8>> {
    let buf = client
        .read_ltx_range(info.level, info.min_txid, info.max_txid, offset, size)
        .await?;
    if size > 0 && buf.len() as u64 != size {
        return Err(Error::corrupt(
            describe_file(client, info),
            format!(
                "range read at {offset} returned {} of {size} bytes",
                buf.len()
            ),
        ));
    }
    Ok(buf)
}

/// Collects a listing.
pub async fn list_all(
    client: &dyn ReplicaClient,
    level: u32,
    use_metadata: bool,
) -> Result<Vec<FileInfo>> {
    use futures::TryStreamExt;
    client
        .ltx_files(level, TxId(0), use_metadata)
        .await?
        .try_collect()
        .await
}

/// The newest file of a level (highest max TXID), if any.
pub async fn max_file(client: &dyn ReplicaClient, level: u32) -> Result<Option<FileInfo>> {
    use futures::TryStreamExt;
    let mut s = client.ltx_files(level, TxId(0), false).await?;
    let mut best: Option<FileInfo> = None;
    while let Some(f) = s.try_next().await? {
        if best.as_ref().is_none_or(|b| f.max_txid > b.max_txid) {
            best = Some(f);
        }
    }
    Ok(best)
}

/// Opens a replica client from a URL: `file:///path` or a plain path.
pub fn from_url(url: &str) -> Result<Arc<dyn ReplicaClient>> {
    if url.starts_with("file:") {
        let parsed = url::Url::parse(url)
            .map_err(|e| Error::InvalidInput(format!("replica URL {}: {e}", redact_url(url))))?;
        let path = parsed.to_file_path().map_err(|_| {
            Error::InvalidInput(format!(
                "replica URL {}: expected file:///absolute/path",
                redact_url(url)
            ))
        })?;
        return Ok(Arc::new(file::FileReplicaClient::new(path)));
    }
    if url.starts_with("s3://") {
        return s3_client(s3::S3Settings::from_url(url)?);
    }
    if url.starts_with("oss://") {
        return s3_client(oss::complete_from_env(oss::from_url(url)?));
    }
    if url.starts_with("nats://") {
        return nats_client(nats::NatsSettings::from_url(url)?);
    }
    if url.starts_with("gs://") {
        return gcs_client(&gcs::GcsSettings::from_url(url)?);
    }
    if url.starts_with("abs://") {
        return azure_client(&azure::AzureSettings::from_url(url)?.with_env_credentials());
    }
    if url.starts_with("webdav://") || url.starts_with("webdavs://") {
        return webdav_client(&webdav::WebdavSettings::from_url(url)?);
    }
    if url.starts_with("sftp://") {
        return sftp_client(sftp::SftpSettings::from_url(url)?);
    }
    if let Some((scheme, _)) = url.split_once("://") {
        return Err(Error::InvalidInput(format!(
            "replica URL {}: unsupported scheme {scheme:?} (supported: file, s3, gs, abs, webdav, webdavs, oss, nats, sftp)",
            crate::redact::redact_url(url)
        )));
    }
    Ok(Arc::new(file::FileReplicaClient::new(url)))
}

/// The bucket and path of `<scheme>://bucket/path`, as Litestream reads
/// them: the path cleaned (`path.Clean`), its leading slash dropped, `.`
/// for none.
pub(crate) fn split_bucket_url(url: &str, scheme: &str) -> Result<(String, String)> {
    let parsed = url::Url::parse(url)
        .map_err(|e| Error::InvalidInput(format!("replica URL {}: {e}", redact_url(url))))?;
    if parsed.scheme() != scheme {
        return Err(Error::InvalidInput(format!(
            "replica URL {}: not a {scheme}:// URL",
            redact_url(url)
        )));
    }
    let host = parsed.host_str().unwrap_or_default().to_string();
    if host.is_empty() {
        return Err(Error::InvalidInput(format!(
            "replica URL {}: bucket required",
            redact_url(url)
        )));
    }
    let path = s3::clean_path(&s3::percent_decode(parsed.path()));
    let path = match path.trim_start_matches('/') {
        "" => ".".to_string(),
        p => p.to_string(),
    };
    Ok((host, path))
}

/// The key prefix of a replica path: Go joins `path` and `ltx` with
/// `path.Join`, so `""`, `"."` and `"/"` are the root.
#[cfg_attr(not(any(feature = "opendal", feature = "nats")), allow(dead_code))]
pub(crate) fn root_prefix(path: &str) -> String {
    match path.trim_matches('/') {
        "" | "." => String::new(),
        p => format!("{p}/"),
    }
}

/// A replica file as errors and logs name it: `<replica> level <n> <file>`.
pub fn describe_file(client: &dyn ReplicaClient, f: &FileInfo) -> String {
    format!("{} level {} {}", client.location(), f.level, f.file_name())
}

/// Opens replica clients from URLs for many databases: S3 replicas with the
/// same endpoint, region and credentials share one SDK client and its
/// connection pool, whatever their bucket or prefix.
#[derive(Debug, Default)]
pub struct ClientPool {
    #[cfg(feature = "s3")]
    s3: std::sync::Mutex<std::collections::HashMap<u64, Arc<s3::S3Connection>>>,
    /// OpenDAL operators by backend, bucket and credentials (see
    /// `gcs::operator_key`, `azure::operator_key`).
    #[cfg(feature = "opendal")]
    operators: std::sync::Mutex<std::collections::HashMap<String, opendal::Operator>>,
    /// NATS connections by server and credentials (see
    /// `nats::connection_key`), each opened at its first request.
    #[cfg(feature = "nats")]
    nats: std::sync::Mutex<std::collections::HashMap<String, nats::Connection>>,
    /// SSH connections by server, user and credentials (see
    /// `sftp::connection_key`), each opened at its first request.
    #[cfg(feature = "sftp")]
    sftp: std::sync::Mutex<std::collections::HashMap<String, sftp::Connection>>,
    /// Uploads of every client opened here share these permits.
    uploads: Option<Arc<tokio::sync::Semaphore>>,
}

impl ClientPool {
    /// A pool whose clients' uploads share `permits` ([`limit::UploadLimited`]).
    /// A remote client takes a permit per attempt, inside its retries, so
    /// a replica that is down does not hold the cap through its backoff.
    pub fn with_upload_limit(permits: Arc<tokio::sync::Semaphore>) -> ClientPool {
        ClientPool {
            uploads: Some(permits),
            ..ClientPool::default()
        }
    }

    /// `client` under this pool's upload limit, if it has one (for
    /// clients without a retry layer, such as the file backend).
    pub fn limit(&self, client: Arc<dyn ReplicaClient>) -> Arc<dyn ReplicaClient> {
        match &self.uploads {
            Some(p) => Arc::new(limit::UploadLimited::new(client, p.clone())),
            None => client,
        }
    }

    /// A client for `url` (see [`from_url`]).
    pub fn open(&self, url: &str) -> Result<Arc<dyn ReplicaClient>> {
        if url.starts_with("gs://") {
            return self.open_gcs(&gcs::GcsSettings::from_url(url)?);
        }
        if url.starts_with("abs://") {
            return self.open_azure(&azure::AzureSettings::from_url(url)?.with_env_credentials());
        }
        if url.starts_with("webdav://") || url.starts_with("webdavs://") {
            return self.open_webdav(&webdav::WebdavSettings::from_url(url)?);
        }
        if url.starts_with("oss://") {
            return self.open_s3(oss::complete_from_env(oss::from_url(url)?));
        }
        if url.starts_with("nats://") {
            return self.open_nats(nats::NatsSettings::from_url(url)?);
        }
        if url.starts_with("sftp://") {
            return self.open_sftp(sftp::SftpSettings::from_url(url)?);
        }
        if !url.starts_with("s3://") {
            return from_url(url).map(|c| self.limit(c));
        }
        self.open_s3(s3::S3Settings::from_url(url)?)
    }

    /// The operator stored under `key`, built by `build` the first time.
    #[cfg(feature = "opendal")]
    fn shared_operator(
        &self,
        key: String,
        build: impl FnOnce() -> Result<opendal::Operator>,
    ) -> Result<opendal::Operator> {
        let mut m = self
            .operators
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(op) = m.get(&key) {
            return Ok(op.clone());
        }
        let op = build()?;
        m.insert(key, op.clone());
        Ok(op)
    }

    /// A GCS client for `settings`, sharing the operator (HTTP client) of
    /// any earlier one on the same bucket.
    #[cfg(feature = "gcs")]
    pub fn open_gcs(&self, settings: &gcs::GcsSettings) -> Result<Arc<dyn ReplicaClient>> {
        let op = self.shared_operator(gcs::operator_key(settings), || gcs::operator(settings))?;
        Ok(self.remote(gcs::client_on(op, settings)))
    }

    /// Without the `gcs` feature: an error naming the replica.
    #[cfg(not(feature = "gcs"))]
    pub fn open_gcs(&self, settings: &gcs::GcsSettings) -> Result<Arc<dyn ReplicaClient>> {
        gcs_client(settings)
    }

    /// An Azure Blob client for `settings` (credentials from the
    /// environment already applied: [`azure::AzureSettings::with_env_credentials`]),
    /// sharing the operator of any earlier one on the same container with
    /// the same credentials.
    #[cfg(feature = "azure")]
    pub fn open_azure(&self, settings: &azure::AzureSettings) -> Result<Arc<dyn ReplicaClient>> {
        let op =
            self.shared_operator(azure::operator_key(settings), || azure::operator(settings))?;
        Ok(self.remote(azure::client_on(op, settings)))
    }

    /// Without the `azure` feature: an error naming the replica.
    #[cfg(not(feature = "azure"))]
    pub fn open_azure(&self, settings: &azure::AzureSettings) -> Result<Arc<dyn ReplicaClient>> {
        azure_client(settings)
    }

    /// A WebDAV client for `settings`, sharing the operator of any earlier
    /// one on the same server with the same credentials.
    #[cfg(feature = "webdav")]
    pub fn open_webdav(&self, settings: &webdav::WebdavSettings) -> Result<Arc<dyn ReplicaClient>> {
        let op = self.shared_operator(webdav::operator_key(settings), || {
            webdav::operator(settings)
        })?;
        Ok(self.remote(webdav::client_on(op, settings)?))
    }

    /// A NATS object-store client for `settings`, sharing the connection
    /// of any earlier one to the same server with the same credentials.
    #[cfg(feature = "nats")]
    pub fn open_nats(&self, settings: nats::NatsSettings) -> Result<Arc<dyn ReplicaClient>> {
        let conn = self
            .nats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(nats::connection_key(&settings))
            .or_default()
            .clone();
        Ok(self.remote(nats::NatsReplicaClient::new(settings, conn)?))
    }

    /// Without the `nats` feature: an error naming the replica.
    #[cfg(not(feature = "nats"))]
    pub fn open_nats(&self, settings: nats::NatsSettings) -> Result<Arc<dyn ReplicaClient>> {
        nats_client(settings)
    }

    /// An SFTP client for `settings`, sharing the SSH connection of any
    /// earlier one to the same server as the same user and credentials.
    #[cfg(feature = "sftp")]
    pub fn open_sftp(&self, settings: sftp::SftpSettings) -> Result<Arc<dyn ReplicaClient>> {
        let conn = self
            .sftp
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(sftp::connection_key(&settings))
            .or_default()
            .clone();
        Ok(self.remote(sftp::SftpReplicaClient::new(settings, conn)?))
    }

    /// Without the `sftp` feature: an error naming the replica.
    #[cfg(not(feature = "sftp"))]
    pub fn open_sftp(&self, settings: sftp::SftpSettings) -> Result<Arc<dyn ReplicaClient>> {
        sftp_client(settings)
    }

    /// Without the `webdav` feature: an error naming the replica.
    #[cfg(not(feature = "webdav"))]
    pub fn open_webdav(&self, settings: &webdav::WebdavSettings) -> Result<Arc<dyn ReplicaClient>> {
        webdav_client(settings)
    }

    /// A remote client as the pool hands it out: counted, under the
    /// upload limit per attempt, inside the one retry layer.
    #[cfg(any(
        feature = "s3",
        feature = "opendal",
        feature = "nats",
        feature = "sftp"
    ))]
    fn remote(&self, c: impl ReplicaClient + 'static) -> Arc<dyn ReplicaClient> {
        match &self.uploads {
            Some(p) => Arc::new(retry::RetryingClient::new(
                limit::UploadLimited::new(Arc::new(metered::MeteredClient::new(c)), p.clone()),
                retry::RetryPolicy::default(),
            )),
            None => remote(c),
        }
    }

    /// An S3 client for `settings`, sharing the SDK client of any earlier
    /// one with the same endpoint, region and credentials.
    #[cfg(feature = "s3")]
    pub fn open_s3(&self, settings: s3::S3Settings) -> Result<Arc<dyn ReplicaClient>> {
        let key = settings.connection_key();
        let conn = {
            let mut m = self
                .s3
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match m.get(&key) {
                Some(c) => c.derive(settings)?,
                None => {
                    let c = s3::S3Connection::new(settings)?;
                    m.insert(key, c.clone());
                    c
                }
            }
        };
        // The permit is taken per attempt, inside the retries.
        Ok(self.remote(s3::S3ReplicaClient::with_connection(conn)?))
    }

    /// Without the `s3` feature: an error naming the replica.
    #[cfg(not(feature = "s3"))]
    pub fn open_s3(&self, settings: s3::S3Settings) -> Result<Arc<dyn ReplicaClient>> {
        s3_client(settings)
    }

    /// Distinct S3 connections (SDK clients) opened so far.
    #[cfg(feature = "s3")]
    pub fn s3_connections(&self) -> usize {
        self.s3
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

/// An S3 replica client with the standard retry policy.
#[cfg(feature = "s3")]
pub fn s3_client(settings: s3::S3Settings) -> Result<Arc<dyn ReplicaClient>> {
    Ok(remote(s3::S3ReplicaClient::new(settings)?))
}

/// A GCS replica client with the standard retry policy.
#[cfg(feature = "gcs")]
pub fn gcs_client(settings: &gcs::GcsSettings) -> Result<Arc<dyn ReplicaClient>> {
    Ok(remote(gcs::client_on(gcs::operator(settings)?, settings)))
}

/// Without the `gcs` feature: an error naming the replica.
#[cfg(not(feature = "gcs"))]
pub fn gcs_client(settings: &gcs::GcsSettings) -> Result<Arc<dyn ReplicaClient>> {
    match gcs::operator(settings)? {}
}

/// An Azure Blob replica client with the standard retry policy.
#[cfg(feature = "azure")]
pub fn azure_client(settings: &azure::AzureSettings) -> Result<Arc<dyn ReplicaClient>> {
    Ok(remote(azure::client_on(
        azure::operator(settings)?,
        settings,
    )))
}

/// Without the `azure` feature: an error naming the replica.
#[cfg(not(feature = "azure"))]
pub fn azure_client(settings: &azure::AzureSettings) -> Result<Arc<dyn ReplicaClient>> {
    match azure::operator(settings)? {}
}

/// A WebDAV replica client with the standard retry policy.
#[cfg(feature = "webdav")]
pub fn webdav_client(settings: &webdav::WebdavSettings) -> Result<Arc<dyn ReplicaClient>> {
    Ok(remote(webdav::client_on(
        webdav::operator(settings)?,
        settings,
    )?))
}

/// Without the `webdav` feature: an error naming the replica.
#[cfg(not(feature = "webdav"))]
pub fn webdav_client(settings: &webdav::WebdavSettings) -> Result<Arc<dyn ReplicaClient>> {
    match webdav::operator(settings)? {}
}

/// A NATS object-store replica client with the standard retry policy.
#[cfg(feature = "nats")]
pub fn nats_client(settings: nats::NatsSettings) -> Result<Arc<dyn ReplicaClient>> {
    Ok(remote(nats::NatsReplicaClient::new(
        settings,
        nats::Connection::default(),
    )?))
}

/// Without the `nats` feature: an error naming the replica.
#[cfg(not(feature = "nats"))]
pub fn nats_client(settings: nats::NatsSettings) -> Result<Arc<dyn ReplicaClient>> {
    Err(Error::InvalidInput(format!(
        "{}: this build has no NATS support (feature \"nats\")",
        settings.location()
    )))
}

/// An SFTP replica client with the standard retry policy.
#[cfg(feature = "sftp")]
pub fn sftp_client(settings: sftp::SftpSettings) -> Result<Arc<dyn ReplicaClient>> {
    Ok(remote(sftp::SftpReplicaClient::new(
        settings,
        sftp::Connection::default(),
    )?))
}

/// Without the `sftp` feature: an error naming the replica.
#[cfg(not(feature = "sftp"))]
pub fn sftp_client(settings: sftp::SftpSettings) -> Result<Arc<dyn ReplicaClient>> {
    Err(Error::InvalidInput(format!(
        "{}: this build has no SFTP support (feature \"sftp\")",
        settings.location()
    )))
}

/// A remote backend's client as every caller gets it: each request
/// counted, inside the one retry layer (backoff with jitter, resumable
/// reads).
#[cfg(any(
    feature = "s3",
    feature = "opendal",
    feature = "nats",
    feature = "sftp"
))]
fn remote(c: impl ReplicaClient + 'static) -> Arc<dyn ReplicaClient> {
    Arc::new(retry::RetryingClient::new(
        metered::MeteredClient::new(c),
        retry::RetryPolicy::default(),
    ))
}

/// Without the `s3` feature (a build for fuzzing): an error naming the
/// replica.
#[cfg(not(feature = "s3"))]
pub fn s3_client(settings: s3::S3Settings) -> Result<Arc<dyn ReplicaClient>> {
    Err(Error::InvalidInput(format!(
        "{}: this build has no S3 support (feature \"s3\")",
        settings.location()
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn pool_shares_one_s3_connection_per_endpoint() {
        let pool = ClientPool::default();
        let q = "?endpoint=http://127.0.0.1:9&region=us-east-1&forcePathStyle=true";
        let a = pool.open(&format!("s3://b/t1/a.db{q}")).unwrap();
        let b = pool.open(&format!("s3://b/t2/b.db{q}")).unwrap();
        let c = pool.open(&format!("s3://other/t3{q}")).unwrap();
        assert_eq!(pool.s3_connections(), 1);
        assert_ne!(a.location(), b.location());
        assert!(c.location().contains("other"));
        pool.open("s3://b/x?endpoint=http://127.0.0.1:10").unwrap();
        assert_eq!(pool.s3_connections(), 2);
        pool.open("file:///tmp/x").unwrap();
        assert_eq!(pool.s3_connections(), 2);
    }
}
