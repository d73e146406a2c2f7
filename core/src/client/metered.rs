//! A [`MeteredClient`] counts every request to a backend under Go
//! Litestream's replica operation metrics (see [`crate::metrics`]). It sits
//! inside the retry layer, so each attempt is one operation, as Go counts
//! its requests.

use std::time::Instant;

use async_trait::async_trait;

use super::{ByteReader, FileInfo, FileStream, LtxBody, RawEntry, ReadPattern, ReplicaClient};
use crate::error::Result;
use crate::metrics::replica_operation;
use crate::txid::TxId;

/// `inner`, with its requests counted.
#[derive(Debug)]
pub struct MeteredClient<C> {
    inner: C,
}

impl<C: ReplicaClient> MeteredClient<C> {
    pub fn new(inner: C) -> Self {
        MeteredClient { inner }
    }

    fn record<T>(
        &self,
        op: &'static str,
        began: Instant,
        r: &Result<T>,
        bytes: impl Fn(&T) -> u64,
    ) {
        replica_operation(
            self.inner.kind(),
            op,
            r.as_ref().map_or(0, &bytes),
            1,
            began.elapsed().as_secs_f64(),
            r.as_ref().err(),
        );
    }
}

#[async_trait]
impl<C: ReplicaClient> ReplicaClient for MeteredClient<C> {
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
        let began = Instant::now();
        let r = self.inner.ltx_files(level, seek, use_metadata).await;
        self.record("LIST", began, &r, |_| 0);
        r
    }

    async fn all_ltx_files(&self) -> Result<Vec<FileInfo>> {
        let began = Instant::now();
        let r = self.inner.all_ltx_files().await;
        self.record("LIST", began, &r, |_| 0);
        r
    }

    async fn open_ltx_file(
        &self,
        level: u32,
        min: TxId,
        max: TxId,
        offset: u64,
        size: u64,
    ) -> Result<ByteReader> {
        let began = Instant::now();
        let r = self
            .inner
            .open_ltx_file(level, min, max, offset, size)
            .await;
        self.record("GET", began, &r, |_| size);
        r
    }

    async fn write_ltx_file(
        &self,
        level: u32,
        min: TxId,
        max: TxId,
        body: LtxBody,
    ) -> Result<FileInfo> {
        let began = Instant::now();
        let r = self.inner.write_ltx_file(level, min, max, body).await;
        self.record("PUT", began, &r, |f| f.size);
        r
    }

    async fn read_ltx_range(
        &self,
        level: u32,
        min: TxId,
        max: TxId,
        offset: u64,
        size: u64,
    ) -> Result<Vec<u8>> {
        let began = Instant::now();
        let r = self
            .inner
            .read_ltx_range(level, min, max, offset, size)
            .await;
        self.record("GET", began, &r, |b| b.len() as u64);
        r
    }

    async fn delete_ltx_files(&self, files: &[FileInfo]) -> Result<()> {
        let began = Instant::now();
        let r = self.inner.delete_ltx_files(files).await;
        replica_operation(
            self.inner.kind(),
            "DELETE",
            0,
            files.len() as u64,
            began.elapsed().as_secs_f64(),
            r.as_ref().err(),
        );
        r
    }

    async fn delete_all(&self) -> Result<()> {
        let began = Instant::now();
        let r = self.inner.delete_all().await;
        self.record("DELETE", began, &r, |_| 0);
        r
    }

    async fn list_raw(&self, dir: &str) -> Result<Vec<RawEntry>> {
        let began = Instant::now();
        let r = self.inner.list_raw(dir).await;
        self.record("LIST", began, &r, |_| 0);
        r
    }

    async fn list_tree(&self) -> Result<Vec<RawEntry>> {
        let began = Instant::now();
        let r = self.inner.list_tree().await;
        self.record("LIST", began, &r, |_| 0);
        r
    }

    async fn open_raw(&self, path: &str) -> Result<ByteReader> {
        let began = Instant::now();
        let r = self.inner.open_raw(path).await;
        self.record("GET", began, &r, |_| 0);
        r
    }
}
