//! The SDK half of the `s3` backend (feature `s3`): connections, the
//! replica client and error mapping on aws-sdk-s3.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use futures::TryStreamExt;
use md5::{Digest, Md5};

use super::super::{
    ByteReader, FileInfo, FileStream, LtxBody, RawEntry, ReplicaClient, SNAPSHOT_LEVEL,
};
use crate::error::{Error, Result};
use crate::txid::{TxId, ltx_file_name, parse_ltx_file_name};

use super::errors::{backend, map_err};
use super::*;

/// A replica under one prefix of an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3ReplicaClient {
    pub(super) conn: Arc<S3Connection>,
    pub(super) sse_key: Option<SseCustomerKey>,
}

#[derive(Clone)]
pub(super) struct SseCustomerKey {
    pub(super) key_b64: String,
    pub(super) md5_b64: String,
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

    pub(super) fn settings(&self) -> &S3Settings {
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

    pub(super) fn describe(&self, key: &str) -> String {
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
        self.settings().service.scheme()
    }

    fn location(&self) -> String {
        self.settings().location()
    }

    fn files_per_delete(&self) -> usize {
        super::MAX_KEYS
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
        Ok(super::super::with_exact_times(
            Box::pin(listing),
            move |f| {
                let me = me.clone();
                let key = me.key(f.level, f.min_txid, f.max_txid);
                async move { me.head_timestamp(&key).await }
            },
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
        let (info, ts) = body.upload_info(level, min, max, &self.describe(&key))?;
        let size = info.size;
        if size < self.settings().part_size() {
            let data = match &body {
                LtxBody::Bytes(b) => b.clone(),
                LtxBody::File(_) => body.read_at(0, size).await?,
            };
            self.put_small(&key, data, &ts).await?;
        } else {
            self.put_multipart(&key, &body, size, &ts).await?;
        }
        Ok(info)
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
