//! The SDK half of the `s3` backend (feature `s3`): connections, the
//! replica client and error mapping on aws-sdk-s3.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use tokio::sync::OnceCell;

use super::super::{
    ByteReader, FileInfo, FileStream, LtxBody, RawEntry, ReplicaClient, SNAPSHOT_LEVEL,
};
use crate::error::{Error, Result};
use crate::ltx::Header;
use crate::txid::{TxId, ltx_file_name, parse_ltx_file_name};

use super::*;

/// Concurrent HeadObject calls when exact timestamps are listed.
const METADATA_CONCURRENCY: usize = 32;

/// One SDK client (one connection pool) for a set of settings; replicas of
/// many databases in the same bucket share it.
#[derive(Debug)]
pub struct S3Connection {
    settings: S3Settings,
    /// Shared by connections derived for other prefixes.
    client: Arc<OnceCell<aws_sdk_s3::Client>>,
}

impl S3Connection {
    /// A connection, opened on first use.
    pub fn new(settings: S3Settings) -> Result<Arc<S3Connection>> {
        settings.validate()?;
        Ok(Arc::new(S3Connection {
            settings,
            client: Arc::new(OnceCell::new()),
        }))
    }

    /// A connection for other settings (another bucket or prefix) on the
    /// same SDK client and connection pool. The settings must have the same
    /// [`connection_key`](S3Settings::connection_key).
    pub fn derive(&self, settings: S3Settings) -> Result<Arc<S3Connection>> {
        settings.validate()?;
        if settings.connection_key() != self.settings.connection_key() {
            return Err(Error::InvalidInput(format!(
                "{}: cannot share a connection made for other endpoint, region or credentials",
                settings.location()
            )));
        }
        Ok(Arc::new(S3Connection {
            settings,
            client: self.client.clone(),
        }))
    }

    /// True if both use the same SDK client.
    pub fn shares_client_with(&self, other: &S3Connection) -> bool {
        Arc::ptr_eq(&self.client, &other.client)
    }

    /// The settings.
    pub fn settings(&self) -> &S3Settings {
        &self.settings
    }

    /// The SDK client.
    pub async fn client(&self) -> Result<&aws_sdk_s3::Client> {
        self.client
            .get_or_try_init(|| build_client(&self.settings))
            .await
    }
}

/// Trust store: the platform's roots plus `AWS_CA_BUNDLE` when it names a
/// PEM file (as the other AWS SDKs honour it).
fn http_client() -> Result<aws_sdk_s3::config::SharedHttpClient> {
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
    let mut trust = TrustStore::default();
    if let Ok(path) = std::env::var("AWS_CA_BUNDLE")
        && !path.is_empty()
    {
        let pem =
            std::fs::read(&path).map_err(|e| Error::io(format!("read AWS_CA_BUNDLE {path}"), e))?;
        trust = trust.with_pem_certificate(pem);
    }
    let ctx = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| Error::InvalidInput(format!("TLS settings: {e}")))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(ctx)
        .build_https())
}

async fn build_client(s: &S3Settings) -> Result<aws_sdk_s3::Client> {
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http_client()?);
    let region = s
        .region
        .clone()
        .or_else(|| std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()))
        .or_else(|| {
            std::env::var("AWS_DEFAULT_REGION")
                .ok()
                .filter(|r| !r.is_empty())
        });
    // A custom endpoint needs some region to sign with; AWS itself gets the
    // profile's or us-east-1.
    loader = loader.region(Region::new(
        region.unwrap_or_else(|| "us-east-1".to_string()),
    ));
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let static_keys = match (&s.access_key_id, &s.secret_access_key) {
        (Some(a), Some(b)) => Some((a.clone(), b.clone())),
        _ => match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            (Some(a), Some(b)) => Some((a, b)),
            _ => match (
                env("LITESTREAM_ACCESS_KEY_ID"),
                env("LITESTREAM_SECRET_ACCESS_KEY"),
            ) {
                (Some(a), Some(b)) => Some((a, b)),
                _ => None,
            },
        },
    };
    if let Some((a, b)) = static_keys {
        let session = env("AWS_SESSION_TOKEN");
        loader = loader.credentials_provider(Credentials::new(a, b, session, None, "litestreampp"));
    }
    if let Some(e) = &s.endpoint {
        loader = loader.endpoint_url(e);
    }
    let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .build();
    loader = loader
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .timeout_config(timeouts);
    let sdk = loader.load().await;
    let mut b = aws_sdk_s3::config::Builder::from(&sdk)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    let path_style = s.force_path_style.unwrap_or(s.endpoint.is_some());
    b = b.force_path_style(path_style);
    Ok(aws_sdk_s3::Client::from_conf(b.build()))
}

/// A replica under one prefix of an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3ReplicaClient {
    conn: Arc<S3Connection>,
    sse_key: Option<SseCustomerKey>,
}

#[derive(Clone)]
struct SseCustomerKey {
    key_b64: String,
    md5_b64: String,
}

impl fmt::Debug for SseCustomerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SseCustomerKey(<redacted>)")
    }
}

impl S3ReplicaClient {
    /// A replica client from settings (its own connection).
    pub fn new(settings: S3Settings) -> Result<Self> {
        Self::with_connection(S3Connection::new(settings)?)
    }

    /// A replica client on a shared connection.
    pub fn with_connection(conn: Arc<S3Connection>) -> Result<Self> {
        let s = conn.settings();
        let raw_key = match (&s.sse_customer_key, &s.sse_customer_key_path) {
            (Some(k), _) => Some(k.clone().into_bytes()),
            (None, Some(p)) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| {
                        Error::io(format!("read sse-customer-key-path {}", p.display()), e)
                    })?
                    .trim()
                    .as_bytes()
                    .to_vec(),
            ),
            _ => None,
        };
        let sse_key = raw_key.map(|k| {
            let b64 = base64::engine::general_purpose::STANDARD;
            // The key may be given raw (32 bytes) or base64-encoded.
            let key = match b64.decode(&k) {
                Ok(d) if d.len() == 32 => d,
                _ => k,
            };
            SseCustomerKey {
                key_b64: b64.encode(&key),
                md5_b64: b64.encode(Md5::digest(&key)),
            }
        });
        Ok(S3ReplicaClient { conn, sse_key })
    }

    fn settings(&self) -> &S3Settings {
        self.conn.settings()
    }

    /// `<path>/<level %04x>/`.
    pub fn level_prefix(&self, level: u32) -> String {
        format!("{}/{level:04x}/", self.settings().path)
    }

    /// The object key of a file.
    pub fn key(&self, level: u32, min: TxId, max: TxId) -> String {
        format!("{}{}", self.level_prefix(level), ltx_file_name(min, max))
    }

    /// Every object whose key starts with `prefix` (paginated, no
    /// delimiter).
    async fn objects_under(&self, prefix: &str) -> Result<Vec<aws_sdk_s3::types::Object>> {
        let client = self.conn.client().await?;
        let what = format!("list {}", self.describe(prefix));
        let mut pages = client
            .list_objects_v2()
            .bucket(&self.settings().bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| map_err(e, &what))?;
            out.extend(page.contents().iter().cloned());
        }
        Ok(out)
    }

    fn describe(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.settings().bucket)
    }

    /// A GetObject stream of `key` (a byte range of it, if given).
    async fn get(&self, key: &str, range: Option<String>) -> Result<ByteReader> {
        let client = self.conn.client().await?;
        let mut req = client
            .get_object()
            .bucket(&self.settings().bucket)
            .key(key)
            .set_range(range);
        if let Some(k) = &self.sse_key {
            req = req
                .sse_customer_algorithm("AES256")
                .sse_customer_key(&k.key_b64)
                .sse_customer_key_md5(&k.md5_b64);
        }
        let out = req
            .send()
            .await
            .map_err(|e| map_err(e, &format!("get {}", self.describe(key))))?;
        Ok(Box::pin(out.body.into_async_read()))
    }

    async fn head_timestamp(&self, key: &str) -> Result<Option<jiff::Timestamp>> {
        let client = self.conn.client().await?;
        let mut req = client
            .head_object()
            .bucket(&self.settings().bucket)
            .key(key);
        if let Some(k) = &self.sse_key {
            req = req
                .sse_customer_algorithm("AES256")
                .sse_customer_key(&k.key_b64)
                .sse_customer_key_md5(&k.md5_b64);
        }
        let out = req
            .send()
            .await
            .map_err(|e| map_err(e, &format!("head {}", self.describe(key))))?;
        Ok(out
            .metadata()
            .and_then(|m| m.get(METADATA_TIMESTAMP))
            .and_then(|v| v.parse::<jiff::Timestamp>().ok()))
    }

    fn md5_header(&self, data: &[u8]) -> Option<String> {
        self.settings()
            .require_content_md5
            .unwrap_or(true)
            .then(|| base64::engine::general_purpose::STANDARD.encode(Md5::digest(data)))
    }

    async fn put_small(&self, key: &str, data: bytes::Bytes, ts: &str) -> Result<()> {
        let client = self.conn.client().await?;
        let s = self.settings();
        let mut req = client
            .put_object()
            .bucket(&s.bucket)
            .key(key)
            .metadata(METADATA_TIMESTAMP, ts)
            .content_length(data.len() as i64);
        if let Some(m) = self.md5_header(&data) {
            req = req.content_md5(m);
        }
        if let Some(c) = &s.storage_class {
            req = req.storage_class(c.as_str().into());
        }
        if let Some(k) = &self.sse_key {
            req = req
                .sse_customer_algorithm("AES256")
                .sse_customer_key(&k.key_b64)
                .sse_customer_key_md5(&k.md5_b64);
        }
        if let Some(id) = &s.sse_kms_key_id {
            req = req
                .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
                .ssekms_key_id(id);
        }
        let req = req.body(ByteStream::from(data));
        let r = if s.sign_payload == Some(false) {
            req.customize().disable_payload_signing().send().await
        } else {
            req.send().await
        };
        r.map_err(|e| map_err(e, &format!("put {}", self.describe(key))))?;
        Ok(())
    }

    async fn put_multipart(&self, key: &str, body: &LtxBody, size: u64, ts: &str) -> Result<()> {
        let client = self.conn.client().await?;
        let s = self.settings();
        let what = self.describe(key);
        let mut req = client
            .create_multipart_upload()
            .bucket(&s.bucket)
            .key(key)
            .metadata(METADATA_TIMESTAMP, ts);
        if let Some(c) = &s.storage_class {
            req = req.storage_class(c.as_str().into());
        }
        if let Some(k) = &self.sse_key {
            req = req
                .sse_customer_algorithm("AES256")
                .sse_customer_key(&k.key_b64)
                .sse_customer_key_md5(&k.md5_b64);
        }
        if let Some(id) = &s.sse_kms_key_id {
            req = req
                .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
                .ssekms_key_id(id);
        }
        let created = req
            .send()
            .await
            .map_err(|e| map_err(e, &format!("start multipart upload {what}")))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| backend(&what, "multipart upload without an upload ID", false))?
            .to_string();
        let part_size = s.part_size();
        let parts = size.div_ceil(part_size);
        let result: Result<Vec<CompletedPart>> = futures::stream::iter(0..parts)
            .map(|i| {
                let upload_id = upload_id.clone();
                let what = what.clone();
                async move {
                    let off = i * part_size;
                    let len = part_size.min(size - off);
                    let data = read_part(body, off, len).await?;
                    let mut req = client
                        .upload_part()
                        .bucket(&s.bucket)
                        .key(key)
                        .upload_id(&upload_id)
                        .part_number((i + 1) as i32)
                        .content_length(len as i64);
                    if let Some(m) = self.md5_header(&data) {
                        req = req.content_md5(m);
                    }
                    if let Some(k) = &self.sse_key {
                        req = req
                            .sse_customer_algorithm("AES256")
                            .sse_customer_key(&k.key_b64)
                            .sse_customer_key_md5(&k.md5_b64);
                    }
                    let req = req.body(ByteStream::from(data));
                    let out = if s.sign_payload == Some(false) {
                        req.customize().disable_payload_signing().send().await
                    } else {
                        req.send().await
                    }
                    .map_err(|e| map_err(e, &format!("upload part {} of {what}", i + 1)))?;
                    Ok(CompletedPart::builder()
                        .set_e_tag(out.e_tag().map(str::to_string))
                        .part_number((i + 1) as i32)
                        .build())
                }
            })
            .buffer_unordered(s.concurrency())
            .try_collect()
            .await;
        let mut done = match result {
            Ok(p) => p,
            Err(e) => {
                // Leave no orphan parts; the upload error is what we report.
                let _ = client
                    .abort_multipart_upload()
                    .bucket(&s.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                return Err(e);
            }
        };
        done.sort_by_key(|p| p.part_number());
        let r = client
            .complete_multipart_upload()
            .bucket(&s.bucket)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(done))
                    .build(),
            )
            .send()
            .await;
        if let Err(e) = r {
            let _ = client
                .abort_multipart_upload()
                .bucket(&s.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
            return Err(map_err(e, &format!("complete multipart upload {what}")));
        }
        Ok(())
    }

    /// Deletes keys in batches of 1,000 (DeleteObjects), checking each
    /// key's result.
    async fn delete_keys(&self, keys: Vec<String>) -> Result<()> {
        let client = self.conn.client().await?;
        let s = self.settings();
        let want_md5 = s.require_content_md5.unwrap_or(true);
        for batch in keys.chunks(MAX_KEYS) {
            let objects: Vec<ObjectIdentifier> = batch
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| Error::InvalidInput(format!("delete: {e}")))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| Error::InvalidInput(format!("delete: {e}")))?;
            let mut req = client
                .delete_objects()
                .bucket(&s.bucket)
                .delete(delete)
                .customize();
            if want_md5 {
                // Some S3-compatible services insist on Content-MD5 here.
                req = req.mutate_request(|r| {
                    if let Some(body) = r.body().bytes() {
                        let m = base64::engine::general_purpose::STANDARD.encode(Md5::digest(body));
                        r.headers_mut().insert("Content-MD5", m);
                    }
                });
            }
            let out = req.send().await.map_err(|e| {
                map_err(
                    e,
                    &format!("delete {} objects in s3://{}", batch.len(), s.bucket),
                )
            })?;
            if let Some(err) = out.errors().first() {
                return Err(backend(
                    &format!("s3://{}/{}", s.bucket, err.key().unwrap_or("?")),
                    &format!(
                        "delete failed: {} {}",
                        err.code().unwrap_or(""),
                        err.message().unwrap_or("")
                    ),
                    false,
                ));
            }
        }
        Ok(())
    }
}

async fn read_part(body: &LtxBody, off: u64, len: u64) -> Result<bytes::Bytes> {
    match body {
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
                Ok(bytes::Bytes::from(buf))
            })
            .await
            .map_err(|e| Error::io("read part", std::io::Error::other(e.to_string())))?
        }
    }
}

fn backend(context: &str, message: &str, transient: bool) -> Error {
    Error::Backend {
        context: context.to_string(),
        message: message.to_string(),
        transient,
    }
}

/// Maps an SDK error to the core's kinds: missing objects and buckets,
/// failed preconditions, transient failures (throttling, 5xx, timeouts,
/// connection errors) and the rest. Messages never include credentials.
pub(crate) fn map_err<E>(
    e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    context: &str,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &e {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("").to_string();
            let msg = se.err().message().unwrap_or("").to_string();
            let status = se.raw().status().as_u16();
            let text = if msg.is_empty() {
                code.clone()
            } else {
                format!("{code}: {msg}")
            };
            match (code.as_str(), status) {
                ("NoSuchKey" | "NotFound", _) | (_, 404) if code != "NoSuchBucket" => {
                    Error::NotFound {
                        what: context.to_string(),
                    }
                }
                ("PreconditionFailed" | "ConditionalRequestConflict", _) | (_, 412) => {
                    Error::PreconditionFailed {
                        what: context.to_string(),
                    }
                }
                (
                    "SlowDown"
                    | "Throttling"
                    | "ThrottlingException"
                    | "RequestTimeout"
                    | "InternalError"
                    | "ServiceUnavailable",
                    _,
                ) => backend(context, &text, true),
                (_, s) if s >= 500 || s == 429 => {
                    backend(context, &format!("HTTP {s} {text}"), true)
                }
                _ => backend(
                    context,
                    if text.is_empty() {
                        "request failed"
                    } else {
                        &text
                    },
                    false,
                ),
            }
        }
        SdkError::TimeoutError(_) => backend(context, "timed out", true),
        SdkError::DispatchFailure(d) => {
            let why = if d.is_timeout() {
                "timed out"
            } else if d.is_io() {
                "connection failed"
            } else {
                "request could not be sent"
            };
            backend(context, &format!("{why}: {}", source_chain(&e)), true)
        }
        SdkError::ResponseError(_) => backend(
            context,
            &format!("bad response: {}", source_chain(&e)),
            true,
        ),
        SdkError::ConstructionFailure(_) => backend(
            context,
            &format!("invalid request: {}", source_chain(&e)),
            false,
        ),
        _ => backend(context, &source_chain(&e), true),
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

/// A listed object's size and last-modified time.
fn size_and_time(o: &aws_sdk_s3::types::Object) -> (u64, jiff::Timestamp) {
    let size = o.size().unwrap_or(0).max(0) as u64;
    let time = o
        .last_modified()
        .map(to_timestamp)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    (size, time)
}

/// A listed object as a [`RawEntry`] named `name`.
fn raw_entry(name: &str, o: &aws_sdk_s3::types::Object) -> RawEntry {
    let (size, modified) = size_and_time(o);
    RawEntry {
        name: name.to_string(),
        is_dir: false,
        size,
        modified,
    }
}

/// A listed object named like an LTX file, as a file of `level`.
fn object_file_info(level: u32, name: &str, o: &aws_sdk_s3::types::Object) -> Option<FileInfo> {
    let (min, max) = parse_ltx_file_name(name)?;
    let (size, created_at) = size_and_time(o);
    Some(FileInfo {
        level,
        min_txid: min,
        max_txid: max,
        size,
        created_at,
    })
}

fn to_timestamp(d: &aws_sdk_s3::primitives::DateTime) -> jiff::Timestamp {
    jiff::Timestamp::new(d.secs(), d.subsec_nanos() as i32).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

#[async_trait]
impl ReplicaClient for S3ReplicaClient {
    fn kind(&self) -> &'static str {
        "s3"
    }

    fn location(&self) -> String {
        self.settings().location()
    }

    async fn all_ltx_files(&self) -> Result<Vec<FileInfo>> {
        // One listing of `<path>/`: keys `<path>/<level:04x>/<ltx name>`;
        // anything else under the prefix is not ours and is skipped.
        let prefix = format!("{}/", self.settings().path);
        let mut out = Vec::new();
        for o in self.objects_under(&prefix).await? {
            let Some((level, name)) = o
                .key()
                .and_then(|k| k.strip_prefix(&prefix))
                .and_then(|rest| rest.split_once('/'))
            else {
                continue;
            };
            let level = match u32::from_str_radix(level, 16) {
                Ok(l) if level.len() == 4 && l <= SNAPSHOT_LEVEL => l,
                _ => continue,
            };
            if let Some(f) = object_file_info(level, name, &o) {
                out.push(f);
            }
        }
        Ok(out)
    }

    async fn ltx_files(&self, level: u32, seek: TxId, use_metadata: bool) -> Result<FileStream> {
        let client = self.conn.client().await?.clone();
        let prefix = self.level_prefix(level);
        let mut req = client
            .list_objects_v2()
            .bucket(&self.settings().bucket)
            .prefix(&prefix);
        if seek.0 > 0 {
            // Keys sort by min TXID: start after "<prefix><seek-1>" + '~'.
            req = req.start_after(format!("{prefix}{:016x}~", seek.0 - 1));
        }
        let what = format!("list s3://{}/{prefix}", self.settings().bucket);
        let pages = req.into_paginator().send();
        let listing = futures::stream::unfold((pages, what), move |(mut pages, what)| async move {
            match pages.next().await {
                None => None,
                Some(Err(e)) => Some((Err(map_err(e, &what)), (pages, what))),
                Some(Ok(page)) => {
                    let infos: Vec<FileInfo> = page
                        .contents()
                        .iter()
                        .filter_map(|o| {
                            let name = o.key()?.rsplit('/').next()?;
                            object_file_info(level, name, o)
                        })
                        .filter(|f| f.min_txid >= seek)
                        .collect();
                    Some((Ok(infos), (pages, what)))
                }
            }
        })
        .map_ok(|v| futures::stream::iter(v.into_iter().map(Ok)))
        .try_flatten();
        if !use_metadata {
            return Ok(Box::pin(listing));
        }
        let me = self.clone();
        Ok(Box::pin(
            listing
                .map(move |r| {
                    let me = me.clone();
                    async move {
                        let mut f = r?;
                        let key = me.key(f.level, f.min_txid, f.max_txid);
                        if let Some(ts) = me.head_timestamp(&key).await? {
                            f.created_at = ts;
                        }
                        Ok(f)
                    }
                })
                .buffered(METADATA_CONCURRENCY),
        ))
    }

    async fn open_ltx_file(
        &self,
        level: u32,
        min: TxId,
        max: TxId,
        offset: u64,
        size: u64,
    ) -> Result<ByteReader> {
        let range = if size > 0 {
            format!("bytes={offset}-{}", offset + size - 1)
        } else {
            format!("bytes={offset}-")
        };
        self.get(&self.key(level, min, max), Some(range)).await
    }

    async fn read_ltx_range(
        &self,
        level: u32,
        min: TxId,
        max: TxId,
        offset: u64,
        size: u64,
    ) -> Result<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        let key = self.key(level, min, max);
        let mut r = self.open_ltx_file(level, min, max, offset, size).await?;
        let mut buf = Vec::with_capacity(size as usize);
        r.read_to_end(&mut buf).await.map_err(|e| {
            backend(
                &format!("get {}", self.describe(&key)),
                &format!("body: {e}"),
                true,
            )
        })?;
        Ok(buf)
    }

    async fn write_ltx_file(
        &self,
        level: u32,
        min: TxId,
        max: TxId,
        body: LtxBody,
    ) -> Result<FileInfo> {
        let key = self.key(level, min, max);
        let what = self.describe(&key);
        let head = body.header_bytes()?;
        let header = Header::decode(&head, &what)?;
        if header.min_txid != min || header.max_txid != max {
            return Err(Error::InvalidInput(format!(
                "{what}: LTX header covers {}-{}, not {min}-{max}",
                header.min_txid, header.max_txid
            )));
        }
        let size = match &body {
            LtxBody::Bytes(b) => b.len() as u64,
            LtxBody::File(p) => std::fs::metadata(p)
                .map_err(|e| Error::io(format!("stat {}", p.display()), e))?
                .len(),
        };
        let ts = format_timestamp(header.timestamp_ms);
        if size < self.settings().part_size() {
            let data = match &body {
                LtxBody::Bytes(b) => b.clone(),
                LtxBody::File(_) => read_part(&body, 0, size).await?,
            };
            self.put_small(&key, data, &ts).await?;
        } else {
            self.put_multipart(&key, &body, size, &ts).await?;
        }
        Ok(FileInfo {
            level,
            min_txid: min,
            max_txid: max,
            size,
            created_at: jiff::Timestamp::from_millisecond(header.timestamp_ms)
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        })
    }

    async fn delete_ltx_files(&self, files: &[FileInfo]) -> Result<()> {
        let keys = files
            .iter()
            .map(|f| self.key(f.level, f.min_txid, f.max_txid))
            .collect();
        self.delete_keys(keys).await
    }

    async fn list_raw(&self, dir: &str) -> Result<Vec<RawEntry>> {
        let client = self.conn.client().await?;
        let prefix = format!("{}/{}/", self.settings().path, dir.trim_matches('/'));
        let what = format!("list {}", self.describe(&prefix));
        let mut pages = client
            .list_objects_v2()
            .bucket(&self.settings().bucket)
            .prefix(&prefix)
            .delimiter("/")
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| map_err(e, &what))?;
            for p in page.common_prefixes() {
                if let Some(name) = p
                    .prefix()
                    .and_then(|k| k.strip_prefix(&prefix))
                    .map(|k| k.trim_end_matches('/'))
                    .filter(|k| !k.is_empty())
                {
                    out.push(RawEntry {
                        name: name.to_string(),
                        is_dir: true,
                        size: 0,
                        modified: jiff::Timestamp::UNIX_EPOCH,
                    });
                }
            }
            for o in page.contents() {
                if let Some(name) = o
                    .key()
                    .and_then(|k| k.strip_prefix(&prefix))
                    .filter(|k| !k.is_empty() && !k.contains('/'))
                {
                    out.push(raw_entry(name, o));
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn list_tree(&self) -> Result<Vec<RawEntry>> {
        // An empty path is the whole bucket (restore-pattern's root).
        let prefix = match self.settings().path.trim_end_matches('/') {
            "" => String::new(),
            p => format!("{p}/"),
        };
        Ok(self
            .objects_under(&prefix)
            .await?
            .iter()
            .filter_map(|o| {
                let name = o.key()?.strip_prefix(&prefix)?;
                (!name.is_empty()).then(|| raw_entry(name, o))
            })
            .collect())
    }

    async fn open_raw(&self, path: &str) -> Result<ByteReader> {
        let key = format!("{}/{}", self.settings().path, path.trim_matches('/'));
        self.get(&key, None).await
    }

    async fn delete_all(&self) -> Result<()> {
        let client = self.conn.client().await?;
        let s = self.settings();
        let prefix = format!("{}/", s.path);
        let what = format!("list s3://{}/{prefix}", s.bucket);
        let mut pages = client
            .list_objects_v2()
            .bucket(&s.bucket)
            .prefix(&prefix)
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| map_err(e, &what))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
        }
        self.delete_keys(keys).await
    }
}
