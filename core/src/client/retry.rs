//! Retries, written once for every remote backend: a [`RetryingClient`]
//! wraps any [`ReplicaClient`] and retries transient failures (throttling,
//! 5xx, connection resets, timeouts) with exponential backoff and full
//! jitter. Reads are resumable: a stream that breaks, stalls or ends early
//! is reopened at the offset it reached, a bounded number of times, so a
//! long restore survives dropped connections.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use rand::Rng;
use tokio::io::AsyncReadExt;

use super::{ByteReader, FileInfo, FileStream, LtxBody, ReplicaClient};
use crate::error::{Error, Result};
use crate::txid::{TxId, ltx_file_name};

/// How hard to try.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per operation, the first included.
    pub max_attempts: u32,
    /// First backoff; doubles each attempt.
    pub base_delay: Duration,
    /// Largest backoff.
    pub max_delay: Duration,
    /// A read that delivers nothing for this long is treated as broken.
    pub read_stall: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            read_stall: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Full-jitter backoff before attempt `attempt` (1 = first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(1u32 << attempt.min(16));
        let cap = exp.min(self.max_delay);
        let ms =
            rand::rng().random_range(cap.as_millis() as u64 / 2..=cap.as_millis().max(1) as u64);
        Duration::from_millis(ms)
    }
}

/// A [`ReplicaClient`] that retries transient failures of `inner`.
#[derive(Debug)]
pub struct RetryingClient<C> {
    inner: std::sync::Arc<C>,
    policy: RetryPolicy,
}

impl<C: ReplicaClient> RetryingClient<C> {
    /// Wraps `inner`.
    pub fn new(inner: C, policy: RetryPolicy) -> Self {
        RetryingClient {
            inner: std::sync::Arc::new(inner),
            policy,
        }
    }

    /// The wrapped client.
    pub fn inner(&self) -> &C {
        &self.inner
    }

    async fn retry<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() && attempt + 1 < self.policy.max_attempts => {
                    attempt += 1;
                    let d = self.policy.delay(attempt);
                    // Debug: the caller reports the error if the retries
                    // run out (a fleet, once a minute for all databases).
                    tracing::debug!(op = what, error = %e, attempt, retry_in = ?d, "transient replica error; retrying");
                    tokio::time::sleep(d).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Where a resumable read of one file stands.
struct Resume<C> {
    inner: std::sync::Arc<C>,
    policy: RetryPolicy,
    level: u32,
    min: TxId,
    max: TxId,
    /// The next byte to deliver.
    pos: u64,
    /// One past the last byte asked for; `None`: to the end of the file.
    end: Option<u64>,
    /// The open stream; `None` after it broke.
    reader: Option<ByteReader>,
    /// Failures since the last byte delivered.
    failures: u32,
    done: bool,
}

impl<C: ReplicaClient> Resume<C> {
    fn what(&self) -> String {
        format!(
            "read {} level {} {}",
            self.inner.location(),
            self.level,
            ltx_file_name(self.min, self.max)
        )
    }

    /// The next chunk: from the open stream, or from one reopened at
    /// `pos` after a break, a stall or (with a known end) an early end,
    /// until `policy.max_attempts` failures in a row.
    async fn next_chunk(&mut self) -> Option<std::io::Result<bytes::Bytes>> {
        loop {
            if self.done || self.end.is_some_and(|end| self.pos >= end) {
                return None;
            }
            let err = match self.reader.as_mut() {
                None => {
                    let left = self.end.map_or(0, |end| end - self.pos);
                    match (self.inner)
                        .open_ltx_file(self.level, self.min, self.max, self.pos, left)
                        .await
                    {
                        Ok(r) => {
                            self.reader = Some(r);
                            continue;
                        }
                        Err(e) if e.is_transient() => e,
                        Err(e) => {
                            self.done = true;
                            return Some(Err(std::io::Error::other(e)));
                        }
                    }
                }
                Some(r) => {
                    let mut chunk = vec![0u8; 256 << 10];
                    let broke = match tokio::time::timeout(
                        self.policy.read_stall,
                        r.read(&mut chunk),
                    )
                    .await
                    {
                        Ok(Ok(0)) if self.end.is_none() => return None,
                        Ok(Ok(n)) if n > 0 => {
                            chunk.truncate(n);
                            self.pos += n as u64;
                            self.failures = 0;
                            return Some(Ok(chunk.into()));
                        }
                        Ok(Ok(_)) => std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!("stream ended at {} of {}", self.pos, self.end.unwrap_or(0)),
                        ),
                        // Bytes the backend found wrong (an object whose
                        // parts do not add up) read the same again.
                        Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                            self.done = true;
                            return Some(Err(std::io::Error::other(Error::corrupt(
                                self.what(),
                                e.to_string(),
                            ))));
                        }
                        Ok(Err(e)) => {
                            std::io::Error::new(std::io::ErrorKind::ConnectionReset, e.to_string())
                        }
                        Err(_) => std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("no data for {:?}", self.policy.read_stall),
                        ),
                    };
                    Error::io(self.what(), broke)
                }
            };
            self.reader = None;
            self.failures += 1;
            if self.failures >= self.policy.max_attempts {
                self.done = true;
                return Some(Err(std::io::Error::other(Error::Backend {
                    context: self.what(),
                    message: format!(
                        "gave up after {} attempts at offset {}: {err}",
                        self.failures, self.pos
                    ),
                    transient: true,
                })));
            }
            let d = self.policy.delay(self.failures);
            tracing::warn!(file = %self.what(), at = self.pos, error = %err, retry_in = ?d, "read broke; resuming");
            tokio::time::sleep(d).await;
        }
    }
}

/// A reader of `st`'s range that resumes where it broke. An error that
/// ends the read is an [`Error`] inside the `io::Error` ([`from_read`]
/// takes it out).
fn resumable<C: ReplicaClient + 'static>(st: Resume<C>) -> ByteReader {
    let chunks = futures::stream::unfold(st, |mut st| async move {
        let chunk = st.next_chunk().await?;
        Some((chunk, st))
    });
    Box::pin(tokio_util::io::StreamReader::new(chunks))
}

/// The error that ended a read of `what`: the [`Error`] a
/// [`resumable`] reader carries, or the I/O error of any other reader.
fn from_read(e: std::io::Error, what: String) -> Error {
    match e.downcast::<Error>() {
        Ok(inner) => inner,
        Err(e) => Error::io(what, e),
    }
}

#[async_trait]
impl<C: ReplicaClient + 'static> ReplicaClient for RetryingClient<C> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    fn read_pattern(&self) -> super::ReadPattern {
        self.inner.read_pattern()
    }

    fn files_per_delete(&self) -> usize {
        self.inner.files_per_delete()
    }

    /// Lazy; a listing that fails midway restarts after the last file it
    /// had produced.
    async fn all_ltx_files(&self) -> Result<Vec<FileInfo>> {
        self.retry("list", || self.inner.all_ltx_files()).await
    }

    async fn ltx_files(&self, level: u32, seek: TxId, use_metadata: bool) -> Result<FileStream> {
        let first = self
            .retry("list", || self.inner.ltx_files(level, seek, use_metadata))
            .await?;
        struct State<C> {
            inner: std::sync::Arc<C>,
            policy: RetryPolicy,
            stream: FileStream,
            last: Option<(TxId, TxId)>,
            failures: u32,
            level: u32,
            seek: TxId,
            use_metadata: bool,
            done: bool,
        }
        let state = State {
            inner: self.inner.clone(),
            policy: self.policy,
            stream: first,
            last: None,
            failures: 0,
            level,
            seek,
            use_metadata,
            done: false,
        };
        Ok(Box::pin(futures::stream::unfold(
            state,
            |mut st| async move {
                if st.done {
                    return None;
                }
                loop {
                    match st.stream.next().await {
                        None => return None,
                        Some(Ok(f)) => {
                            if st.last.is_some_and(|l| (f.min_txid, f.max_txid) <= l) {
                                continue; // produced before a restart
                            }
                            st.last = Some((f.min_txid, f.max_txid));
                            // The budget is for failures in a row: a long
                            // listing that keeps making progress (a stat
                            // per file for exact times) is not given up.
                            st.failures = 0;
                            return Some((Ok(f), st));
                        }
                        Some(Err(e))
                            if e.is_transient() && st.failures + 1 < st.policy.max_attempts =>
                        {
                            st.failures += 1;
                            let d = st.policy.delay(st.failures);
                            tracing::warn!(error = %e, retry_in = ?d, "listing broke; restarting after the last file");
                            tokio::time::sleep(d).await;
                            let from = st.last.map_or(st.seek, |(min, _)| min);
                            match st.inner.ltx_files(st.level, from, st.use_metadata).await {
                                Ok(s) => st.stream = s,
                                // Counted as a failure on the next turn of the loop.
                                Err(e) if e.is_transient() => {
                                    st.stream = Box::pin(futures::stream::iter([Err(e)]))
                                }
                                Err(e) => {
                                    st.done = true;
                                    return Some((Err(e), st));
                                }
                            }
                        }
                        Some(Err(e)) => {
                            st.done = true;
                            return Some((Err(e), st));
                        }
                    }
                }
            },
        )))
    }

    /// Resumable: the stream reopens at the offset reached when it
    /// breaks, stalls or ends early.
    async fn open_ltx_file(
        &self,
        level: u32,
        min: TxId,
        max: TxId,
        offset: u64,
        size: u64,
    ) -> Result<ByteReader> {
        let first = self
            .retry("open", || {
                self.inner.open_ltx_file(level, min, max, offset, size)
            })
            .await?;
        Ok(resumable(Resume {
            inner: self.inner.clone(),
            policy: self.policy,
            level,
            min,
            max,
            pos: offset,
            end: (size > 0).then(|| offset + size),
            reader: Some(first),
            failures: 0,
            done: false,
        }))
    }

    /// Resumable, as [`open_ltx_file`](Self::open_ltx_file).
    async fn read_ltx_range(
        &self,
        level: u32,
        min: TxId,
        max: TxId,
        offset: u64,
        size: u64,
    ) -> Result<Vec<u8>> {
        let mut r = self.open_ltx_file(level, min, max, offset, size).await?;
        let mut buf = Vec::with_capacity(size as usize);
        r.read_to_end(&mut buf).await.map_err(|e| {
            from_read(
                e,
                format!(
                    "read {} level {level} {}",
                    self.inner.location(),
                    ltx_file_name(min, max)
                ),
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
        // Idempotent: the same key gets the same bytes.
        self.retry("write", || {
            self.inner.write_ltx_file(level, min, max, body.clone())
        })
        .await
    }

    async fn delete_ltx_files(&self, files: &[FileInfo]) -> Result<()> {
        for batch in files.chunks(self.inner.files_per_delete().max(1)) {
            self.retry("delete", || self.inner.delete_ltx_files(batch))
                .await?;
        }
        Ok(())
    }

    async fn delete_all(&self) -> Result<()> {
        // The LTX files in retried batches first (a backend that deletes
        // one file per request would otherwise need every request of one
        // attempt to succeed), then whatever else the backend removes.
        let files = self.all_ltx_files().await?;
        self.delete_ltx_files(&files).await?;
        self.retry("delete all", || self.inner.delete_all()).await
    }

    async fn list_raw(&self, dir: &str) -> Result<Vec<super::RawEntry>> {
        self.retry("list", || self.inner.list_raw(dir)).await
    }

    async fn list_tree(&self) -> Result<Vec<super::RawEntry>> {
        self.retry("list", || self.inner.list_tree()).await
    }

    async fn open_raw(&self, path: &str) -> Result<ByteReader> {
        self.retry("open", || self.inner.open_raw(path)).await
    }
}

/// Streams bytes `start..end` of a file into `tx` in chunks; a stream
/// that ends early is an error. Resuming a broken stream is the retry
/// layer's: a remote client's [`RetryingClient`] reader reopens at the
/// offset reached. Stops quietly when the receiver is gone.
pub async fn pump_range(
    client: &dyn ReplicaClient,
    info: &FileInfo,
    start: u64,
    end: u64,
    tx: tokio::sync::mpsc::Sender<Result<Vec<u8>>>,
) {
    let what = || format!("read {}", super::describe_file(client, info));
    let mut r = match client
        .open_ltx_file(info.level, info.min_txid, info.max_txid, start, end - start)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            let _ = tx.send(Err(e)).await; // the receiver may be gone: nothing more to do
            return;
        }
    };
    let mut pos = start;
    while pos < end {
        let mut chunk = vec![0u8; 512 << 10];
        let sent = match r.read(&mut chunk).await {
            Ok(0) => Err(Error::io(
                what(),
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("stream ended at {pos} of {end}"),
                ),
            )),
            Ok(n) => {
                chunk.truncate(n);
                pos += n as u64;
                Ok(chunk)
            }
            Err(e) => Err(from_read(e, what())),
        };
        let failed = sent.is_err();
        if tx.send(sent).await.is_err() || failed {
            return;
        }
    }
}
