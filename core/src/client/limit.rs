//! A cap on concurrent uploads shared by many replicas: every database of a
//! fleet uploads through its own client, and all of them take a permit from
//! one semaphore first, so a burst of syncs cannot open thousands of uploads
//! at once.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Semaphore;

use super::{ByteReader, FileInfo, FileStream, LtxBody, RawEntry, ReadPattern, ReplicaClient};
use crate::error::{Error, Result};
use crate::txid::TxId;

/// Wraps a client so its uploads share `permits` with every other client
/// wrapped with the same semaphore. Reads, lists and deletes are not
/// limited.
#[derive(Debug)]
pub struct UploadLimited {
    inner: Arc<dyn ReplicaClient>,
    permits: Arc<Semaphore>,
}

impl UploadLimited {
    /// `inner`, with uploads limited by `permits`.
    pub fn new(inner: Arc<dyn ReplicaClient>, permits: Arc<Semaphore>) -> Self {
        UploadLimited { inner, permits }
    }
}

#[async_trait]
impl ReplicaClient for UploadLimited {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    fn read_pattern(&self) -> ReadPattern {
        self.inner.read_pattern()
    }

    fn files_per_delete(&self) -> usize {
        self.inner.files_per_delete()
    }

    async fn ltx_files(&self, level: u32, seek: TxId, use_metadata: bool) -> Result<FileStream> {
        self.inner.ltx_files(level, seek, use_metadata).await
    }

    async fn all_ltx_files(&self) -> Result<Vec<FileInfo>> {
        self.inner.all_ltx_files().await
    }

    async fn open_ltx_file(
        &self,
        level: u32,
        min: TxId,
        max: TxId,
        offset: u64,
        size: u64,
    ) -> Result<ByteReader> {
        self.inner
            .open_ltx_file(level, min, max, offset, size)
            .await
    }

    async fn write_ltx_file(
        &self,
        level: u32,
        min: TxId,
        max: TxId,
        body: LtxBody,
    ) -> Result<FileInfo> {
        let _permit = self.permits.acquire().await.map_err(|_| Error::Backend {
            context: self.inner.location(),
            message: "upload limiter closed".into(),
            transient: false,
        })?;
        self.inner.write_ltx_file(level, min, max, body).await
    }

    async fn read_ltx_range(
        &self,
        level: u32,
        min: TxId,
        max: TxId,
        offset: u64,
        size: u64,
    ) -> Result<Vec<u8>> {
        self.inner
            .read_ltx_range(level, min, max, offset, size)
            .await
    }

    async fn delete_ltx_files(&self, files: &[FileInfo]) -> Result<()> {
        self.inner.delete_ltx_files(files).await
    }

    async fn delete_all(&self) -> Result<()> {
        self.inner.delete_all().await
    }

    async fn list_raw(&self, dir: &str) -> Result<Vec<RawEntry>> {
        self.inner.list_raw(dir).await
    }

    async fn list_tree(&self) -> Result<Vec<RawEntry>> {
        self.inner.list_tree().await
    }

    async fn open_raw(&self, path: &str) -> Result<ByteReader> {
        self.inner.open_raw(path).await
    }
}
