//! The object-store client on async-nats: one connection per server and
//! credentials ([`Connection`], shared by a [`super::super::ClientPool`]),
//! opened at the first request, so that a replica costs nothing until it
//! is used.

use std::sync::Arc;

use async_nats::jetstream::object_store::{
    DeleteErrorKind, InfoErrorKind, ObjectInfo, ObjectMetadata, ObjectStore,
};
use async_trait::async_trait;
use futures::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::sync::OnceCell;

use super::{HEADER_TIMESTAMP, NatsSettings};
use crate::client::{
    ByteReader, FileInfo, FileStream, LtxBody, RawEntry, ReplicaClient, SNAPSHOT_LEVEL,
};
use crate::error::{Error, Result};
use crate::redact::{Secret, redact_text};
use crate::txid::{TxId, ltx_file_name, parse_ltx_file_name};

/// How long a listing may wait for its next object, or a read for its
/// next chunk.
const IDLE: std::time::Duration = std::time::Duration::from_secs(5);
/// Chunks a read asks the server for at a time.
const CHUNKS_IN_FLIGHT: i64 = 32;

/// A connection to one server with one set of credentials, opened once at
/// the first request of any replica that shares it.
#[derive(Clone, Default)]
pub(crate) struct Connection(Arc<OnceCell<async_nats::jetstream::Context>>);

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("open", &self.0.initialized())
            .finish()
    }
}

impl Connection {
    async fn jetstream(&self, s: &NatsSettings) -> Result<&async_nats::jetstream::Context> {
        self.0
            .get_or_try_init(|| async {
                let client =
                    options(s)
                        .await?
                        .connect(s.server())
                        .await
                        .map_err(|e| Error::Backend {
                            context: format!("connect to {}", s.location()),
                            message: redact_text(&e.to_string()),
                            transient: true,
                        })?;
                Ok::<_, Error>(async_nats::jetstream::new(client))
            })
            .await
    }
}

/// Go's connection options: its authentication order (JWT and seed, a
/// credentials file, an NKey, user and password, a token), TLS and the
/// reconnection settings.
async fn options(s: &NatsSettings) -> Result<async_nats::ConnectOptions> {
    let loc = s.location();
    let mut o = async_nats::ConnectOptions::new().name("litestreampp");
    let expose = |x: &Option<Secret>| x.as_ref().map(|v| v.expose().to_string());
    if let (Some(jwt), Some(seed)) = (expose(&s.jwt), expose(&s.seed)) {
        // The credentials file format, from the two parts.
        let creds = format!(
            "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        );
        o = o
            .credentials(&creds)
            .map_err(|e| Error::InvalidInput(format!("{loc}: jwt and seed: {e}")))?;
    } else if let Some(path) = &s.creds {
        o = o.credentials_file(path).await.map_err(|e| {
            Error::InvalidInput(format!("{loc}: creds file {}: {e}", path.display()))
        })?;
    } else if let Some(seed) = expose(&s.nkey) {
        o = o.nkey(seed);
    } else if let (Some(user), Some(pass)) = (&s.username, expose(&s.password)) {
        o = o.user_and_password(user.clone(), pass);
    } else if let Some(token) = expose(&s.token) {
        o = o.token(token);
    }
    if s.tls {
        o = o.require_tls(true);
    }
    for ca in &s.root_cas {
        o = o.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&s.client_cert, &s.client_key) {
        o = o.add_client_certificate(cert.clone(), key.clone());
    }
    if let Some(n) = s.max_reconnects {
        o = o.max_reconnects(usize::try_from(n).ok());
    }
    if let Some(wait) = s.reconnect_wait {
        o = o.reconnect_delay_callback(move |_| wait);
    }
    if let Some(t) = s.timeout {
        o = o.connection_timeout(t);
    }
    Ok(o)
}

/// One replica: a bucket and a prefix inside it.
#[derive(Clone)]
pub(crate) struct NatsReplicaClient {
    settings: Arc<NatsSettings>,
    connection: Connection,
    store: Arc<OnceCell<ObjectStore>>,
    /// `""` (the bucket's root, as Go) or `"a/b/"`.
    root: String,
}

impl std::fmt::Debug for NatsReplicaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsReplicaClient")
            .field("location", &self.settings.location())
            .finish_non_exhaustive()
    }
}

impl NatsReplicaClient {
    pub(crate) fn new(settings: NatsSettings, connection: Connection) -> Result<Self> {
        settings.validate()?;
        let root = crate::client::root_prefix(&settings.path);
        Ok(NatsReplicaClient {
            settings: Arc::new(settings),
            connection,
            store: Arc::default(),
            root,
        })
    }

    /// The bucket, looked up at the first request; it must exist.
    async fn store(&self) -> Result<&ObjectStore> {
        self.store
            .get_or_try_init(|| async {
                let js = self.connection.jetstream(&self.settings).await?;
                js.get_object_store(&self.settings.bucket)
                    .await
                    .map_err(|e| Error::Backend {
                        context: format!("open {}", self.settings.location()),
                        message: format!(
                            "{}: object store bucket {:?} cannot be used (it must be created beforehand: nats object add {})",
                            redact_text(&e.to_string()),
                            self.settings.bucket,
                            self.settings.bucket
                        ),
                        transient: false,
                    })
            })
            .await
    }

    fn key(&self, level: u32, min: TxId, max: TxId) -> String {
        format!("{}ltx/{level}/{}", self.root, ltx_file_name(min, max))
    }

    fn describe(&self, key: &str) -> String {
        let rel = key.strip_prefix(&self.root).unwrap_or(key);
        format!("{} {rel}", self.settings.location())
    }

    fn failed(&self, op: &str, key: &str, e: impl std::fmt::Display, transient: bool) -> Error {
        Error::Backend {
            context: format!("{op} {}", self.describe(key)),
            message: redact_text(&e.to_string()),
            transient,
        }
    }

    /// Every object under this replica's root: the last message of each
    /// of the bucket's metadata subjects is an object's info. Read by an
    /// ordered pull consumer, not async-nats's `list`, whose push consumer
    /// loses what the server pushes before its subscription is in place: a
    /// listing made while other replicas upload to the bucket then waited
    /// for a message that never came (each of a fleet's first listings
    /// stalled for [`IDLE`]).
    async fn objects(&self) -> Result<Vec<ObjectInfo>> {
        use async_nats::jetstream::consumer::{DeliverPolicy, pull};
        let failed = |e: &dyn std::fmt::Display| self.failed("list", &self.root, e, true);
        self.store().await?; // a missing bucket: the clear error
        let js = self.connection.jetstream(&self.settings).await?;
        let stream = js
            .get_stream_no_info(format!("OBJ_{}", self.settings.bucket))
            .await
            .map_err(|e| failed(&e))?;
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: format!("$O.{}.M.>", self.settings.bucket),
                deliver_policy: DeliverPolicy::LastPerSubject,
                description: Some("litestreampp listing".to_string()),
                ..Default::default()
            })
            .await
            .map_err(|e| failed(&e))?;
        let mut out = Vec::new();
        if consumer.cached_info().num_pending == 0 {
            return Ok(out);
        }
        let mut messages = consumer.messages().await.map_err(|e| failed(&e))?;
        loop {
            // The listing ends at the message the server says is the last;
            // if that one is rolled up (an object replaced or deleted
            // meanwhile), no message ends it: a stall is a transient
            // failure, and the listing is tried again.
            let message = match tokio::time::timeout(IDLE, messages.next()).await {
                Ok(Some(Ok(m))) => m,
                Ok(Some(Err(e))) => return Err(failed(&e)),
                Ok(None) => return Err(failed(&"the listing ended before its last object")),
                Err(_) => {
                    return Err(failed(&format!(
                        "no answer for {IDLE:?} (an object replaced during the listing)"
                    )));
                }
            };
            let pending = message.info().map_err(|e| failed(&e))?.pending;
            let info: ObjectInfo =
                serde_json::from_slice(&message.payload).map_err(|e| Error::Corrupt {
                    file: format!("{} object info", self.settings.location()),
                    reason: e.to_string(),
                })?;
            if !info.deleted && info.name.starts_with(&self.root) {
                out.push(info);
            }
            if pending == 0 {
                return Ok(out);
            }
        }
    }

    /// The file an object is, if it is one of this replica's LTX files.
    fn file_info(&self, o: &ObjectInfo) -> Option<FileInfo> {
        let rest = o.name.strip_prefix(&self.root)?.strip_prefix("ltx/")?;
        let (level, name) = rest.split_once('/')?;
        let level: u32 = level.parse().ok()?;
        if level > SNAPSHOT_LEVEL || name.contains('/') {
            return None;
        }
        let (min, max) = parse_ltx_file_name(name)?;
        Some(FileInfo {
            level,
            min_txid: min,
            max_txid: max,
            size: o.size as u64,
            created_at: timestamp(o),
        })
    }

    /// An object's bytes, read from its chunks' subject with an ordered
    /// pull consumer. Not through async-nats's `get`: that one hashes the
    /// whole object (SHA-256, about half of a restore's CPU) and copies
    /// every byte through a queue, where each chunk's payload can be
    /// handed on as it is. The LTX checksums verify the file end to end;
    /// here the chunk count and the size must match the object's info.
    async fn get(&self, key: &str, offset: u64, size: u64) -> Result<ByteReader> {
        use async_nats::jetstream::consumer::pull;
        let store = self.store().await?;
        let info = store.info(key).await.map_err(|e| match e.kind() {
            InfoErrorKind::NotFound => Error::NotFound {
                what: self.describe(key),
            },
            InfoErrorKind::InvalidName => self.failed("get", key, &e, false),
            _ => self.failed("get", key, &e, true),
        })?;
        if info.deleted {
            return Err(Error::NotFound {
                what: self.describe(key),
            });
        }
        if info.options.as_ref().is_some_and(|o| o.link.is_some()) {
            // Litestream never writes links.
            return Err(self.failed("get", key, "a link to another object, not a file", false));
        }
        let mut chunks: ByteReader = if info.chunks == 0 {
            if info.size != 0 {
                return Err(Error::corrupt(
                    self.describe(key),
                    format!("no chunks, where its info says {} bytes", info.size),
                ));
            }
            Box::pin(tokio::io::empty())
        } else {
            let js = self.connection.jetstream(&self.settings).await?;
            let stream = js
                .get_stream_no_info(format!("OBJ_{}", self.settings.bucket))
                .await
                .map_err(|e| self.failed("get", key, &e, true))?;
            let consumer = stream
                .create_consumer(pull::OrderedConfig {
                    filter_subject: format!("$O.{}.C.{}", self.settings.bucket, info.nuid),
                    // Chunks in flight per read (128 KiB each as Litestream
                    // writes them): a restore reads many files at once.
                    max_batch: CHUNKS_IN_FLIGHT,
                    ..Default::default()
                })
                .await
                .map_err(|e| self.failed("get", key, &e, true))?;
            let messages = consumer
                .messages()
                .await
                .map_err(|e| self.failed("get", key, &e, true))?;
            Box::pin(tokio_util::io::StreamReader::new(chunk_payloads(
                messages,
                info.chunks,
                info.size as u64,
            )))
        };
        // No ranged reads in an object store: skip to the offset.
        if offset > 0 {
            let skipped = tokio::io::copy(&mut (&mut chunks).take(offset), &mut tokio::io::sink())
                .await
                .map_err(|e| self.failed("get", key, e, true))?;
            if skipped < offset {
                return Ok(Box::pin(tokio::io::empty()));
            }
        }
        Ok(if size > 0 {
            Box::pin(chunks.take(size))
        } else {
            chunks
        })
    }
}

/// The payloads of an object's `chunks` chunk messages, ending with an
/// error unless they add up to `size` bytes. A stall (the object replaced
/// and its chunks purged meanwhile) is an error too, which the retry
/// layer resumes from.
fn chunk_payloads(
    messages: async_nats::jetstream::consumer::pull::Ordered,
    chunks: usize,
    size: u64,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send {
    futures::stream::try_unfold(
        (messages, chunks, 0u64),
        move |(mut messages, left, read)| async move {
            if left == 0 {
                if read != size {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("its chunks hold {read} bytes, its info says {size}"),
                    ));
                }
                return Ok(None);
            }
            let message = match tokio::time::timeout(IDLE, messages.next()).await {
                Ok(Some(Ok(m))) => m,
                Ok(Some(Err(e))) => return Err(std::io::Error::other(e)),
                Ok(None) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("its chunks ended {left} short"),
                    ));
                }
                Err(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no chunk for {IDLE:?} with {left} to come"),
                    ));
                }
            };
            let payload = message.message.payload;
            let read = read + payload.len() as u64;
            Ok(Some((payload, (messages, left - 1, read))))
        },
    )
}

/// The header's timestamp, else the object's modification time.
fn timestamp(o: &ObjectInfo) -> jiff::Timestamp {
    o.headers
        .as_ref()
        .and_then(|h| h.get(HEADER_TIMESTAMP))
        .and_then(|v| v.as_str().parse::<jiff::Timestamp>().ok())
        .or_else(|| {
            o.modified
                .and_then(|m| jiff::Timestamp::from_nanosecond(m.unix_timestamp_nanos()).ok())
        })
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

#[async_trait]
impl ReplicaClient for NatsReplicaClient {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn location(&self) -> String {
        self.settings.location()
    }

    fn files_per_delete(&self) -> usize {
        1
    }

    async fn all_ltx_files(&self) -> Result<Vec<FileInfo>> {
        let mut out: Vec<FileInfo> = self
            .objects()
            .await?
            .iter()
            .filter_map(|o| self.file_info(o))
            .collect();
        out.sort_by_key(|f| (f.level, f.min_txid, f.max_txid));
        Ok(out)
    }

    async fn ltx_files(&self, level: u32, seek: TxId, _use_metadata: bool) -> Result<FileStream> {
        // The listing carries the headers: exact times at no cost.
        let files: Vec<FileInfo> = self
            .all_ltx_files()
            .await?
            .into_iter()
            .filter(|f| f.level == level && f.min_txid >= seek)
            .collect();
        Ok(Box::pin(futures::stream::iter(files.into_iter().map(Ok))))
    }

    async fn open_ltx_file(
        &self,
        level: u32,
        min: TxId,
        max: TxId,
        offset: u64,
        size: u64,
    ) -> Result<ByteReader> {
        self.get(&self.key(level, min, max), offset, size).await
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
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(HEADER_TIMESTAMP, ts.as_str());
        let meta = ObjectMetadata {
            name: key.clone(),
            headers: Some(headers),
            ..ObjectMetadata::default()
        };
        let store = self.store().await?;
        let put = match &body {
            LtxBody::Bytes(b) => store.put(meta, &mut b.as_ref()).await,
            LtxBody::File(p) => {
                let mut f = tokio::fs::File::open(p)
                    .await
                    .map_err(|e| Error::io(format!("open {}", p.display()), e))?;
                store.put(meta, &mut f).await
            }
        };
        put.map_err(|e| self.failed("put", &key, e, true))?;
        Ok(info)
    }

    async fn delete_ltx_files(&self, files: &[FileInfo]) -> Result<()> {
        let store = self.store().await?;
        for f in files {
            let key = self.key(f.level, f.min_txid, f.max_txid);
            match store.delete(&key).await {
                Ok(()) => {}
                Err(e) if e.kind() == DeleteErrorKind::NotFound => {}
                Err(e) => return Err(self.failed("delete", &key, e, true)),
            }
        }
        Ok(())
    }

    async fn delete_all(&self) -> Result<()> {
        let store = self.store().await?;
        for o in self.objects().await? {
            if !o.name[self.root.len()..].starts_with("ltx/") {
                continue;
            }
            match store.delete(&o.name).await {
                Ok(()) => {}
                Err(e) if e.kind() == DeleteErrorKind::NotFound => {}
                Err(e) => return Err(self.failed("delete", &o.name, e, true)),
            }
        }
        Ok(())
    }

    async fn list_raw(&self, dir: &str) -> Result<Vec<RawEntry>> {
        let prefix = format!("{}{}/", self.root, dir.trim_matches('/'));
        let mut out: Vec<RawEntry> = Vec::new();
        for o in self.objects().await? {
            let Some(rest) = o.name.strip_prefix(&prefix) else {
                continue;
            };
            match rest.split_once('/') {
                Some((d, _)) => {
                    if !out.iter().any(|e| e.is_dir && e.name == d) {
                        out.push(RawEntry {
                            name: d.to_string(),
                            is_dir: true,
                            size: 0,
                            modified: jiff::Timestamp::UNIX_EPOCH,
                        });
                    }
                }
                None => out.push(RawEntry {
                    name: rest.to_string(),
                    is_dir: false,
                    size: o.size as u64,
                    modified: timestamp(&o),
                }),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn list_tree(&self) -> Result<Vec<RawEntry>> {
        Ok(self
            .objects()
            .await?
            .iter()
            .map(|o| RawEntry {
                name: o.name[self.root.len()..].to_string(),
                is_dir: false,
                size: o.size as u64,
                modified: timestamp(o),
            })
            .collect())
    }

    async fn open_raw(&self, path: &str) -> Result<ByteReader> {
        self.get(&format!("{}{}", self.root, path.trim_matches('/')), 0, 0)
            .await
    }
}
