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

/// Reads until `buf` holds `want` bytes (0: to the end), giving up on a
/// read that stalls. Returns the error that stopped it, if any.
async fn read_into(
    r: &mut ByteReader,
    buf: &mut Vec<u8>,
    want: u64,
    stall: Duration,
) -> Option<Error> {
    let mut chunk = vec![0u8; 256 << 10];
    loop {
        if want > 0 && buf.len() as u64 >= want {
            return None;
        }
        match tokio::time::timeout(stall, r.read(&mut chunk)).await {
            Err(_) => {
                return Some(Error::io(
                    "read",
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no data for {stall:?}"),
                    ),
                ));
            }
            Ok(Err(e)) => {
                return Some(Error::io(
                    "read",
                    std::io::Error::new(std::io::ErrorKind::ConnectionReset, e.to_string()),
                ));
            }
            Ok(Ok(0)) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
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

    async fn open_ltx_file(
        &self,
        level: u32,
        min: TxId,
        max: TxId,
        offset: u64,
        size: u64,
    ) -> Result<ByteReader> {
        self.retry("open", || {
            self.inner.open_ltx_file(level, min, max, offset, size)
        })
        .await
    }

    /// Resumable: on a broken, stalled or short stream, reopens at the
    /// offset reached.
    async fn read_ltx_range(
        &self,
        level: u32,
        min: TxId,
        max: TxId,
        offset: u64,
        size: u64,
    ) -> Result<Vec<u8>> {
        let what = format!(
            "{} level {level} {}",
            self.inner.location(),
            ltx_file_name(min, max)
        );
        let mut buf = Vec::with_capacity(size as usize);
        let mut failures = 0u32;
        loop {
            let got = buf.len() as u64;
            let remaining = if size > 0 { size - got } else { 0 };
            let err = match self
                .inner
                .open_ltx_file(level, min, max, offset + got, remaining)
                .await
            {
                Ok(mut r) => {
                    match read_into(&mut r, &mut buf, size, self.policy.read_stall).await {
                        None if size == 0 || buf.len() as u64 == size => return Ok(buf),
                        None => Error::io(
                            format!("read {what}"),
                            std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                format!("stream ended at {} of {size} bytes", buf.len()),
                            ),
                        ),
                        Some(e) => e,
                    }
                }
                Err(e) if e.is_transient() => e,
                Err(e) => return Err(e),
            };
            failures += 1;
            if failures >= self.policy.max_attempts {
                return Err(Error::Backend {
                    context: format!("read {what}"),
                    message: format!(
                        "gave up after {failures} attempts at offset {}: {err}",
                        offset + buf.len() as u64
                    ),
                    transient: true,
                });
            }
            let d = self.policy.delay(failures);
            tracing::warn!(file = %what, at = offset + buf.len() as u64, error = %err, retry_in = ?d, "read broke; resuming");
            tokio::time::sleep(d).await;
        }
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

/// Streams bytes `start..end` of a file into `tx` in chunks, reopening the
/// stream at the offset reached when it breaks, stalls or ends early (at
/// most `policy.max_attempts` times without progress). Stops quietly when
/// the receiver is gone.
pub async fn pump_range(
    client: &dyn ReplicaClient,
    info: &FileInfo,
    start: u64,
    end: u64,
    policy: RetryPolicy,
    tx: tokio::sync::mpsc::Sender<Result<Vec<u8>>>,
) {
    let what = super::describe_file(client, info);
    let mut pos = start;
    let mut failures = 0u32;
    while pos < end {
        let err = match client
            .open_ltx_file(info.level, info.min_txid, info.max_txid, pos, end - pos)
            .await
        {
            Ok(mut r) => loop {
                let mut chunk = vec![0u8; 512 << 10];
                match tokio::time::timeout(policy.read_stall, r.read(&mut chunk)).await {
                    Ok(Ok(0)) => {
                        break Error::io(
                            format!("read {what}"),
                            std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                format!("stream ended at {pos} of {end}"),
                            ),
                        );
                    }
                    Ok(Ok(n)) => {
                        chunk.truncate(n);
                        pos += n as u64;
                        failures = 0;
                        if tx.send(Ok(chunk)).await.is_err() {
                            return;
                        }
                        if pos >= end {
                            return;
                        }
                    }
                    Ok(Err(e)) => {
                        break Error::io(
                            format!("read {what}"),
                            std::io::Error::new(std::io::ErrorKind::ConnectionReset, e.to_string()),
                        );
                    }
                    Err(_) => {
                        break Error::io(
                            format!("read {what}"),
                            std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                format!("no data for {:?}", policy.read_stall),
                            ),
                        );
                    }
                }
            },
            Err(e) if e.is_transient() => e,
            Err(e) => {
                let _ = tx.send(Err(e)).await; // the receiver may be gone: nothing more to do
                return;
            }
        };
        failures += 1;
        if failures >= policy.max_attempts {
            let _ = tx
                .send(Err(Error::Backend {
                    context: format!("read {what}"),
                    message: format!("gave up after {failures} attempts at offset {pos}: {err}"),
                    transient: true,
                }))
                .await;
            return;
        }
        let d = policy.delay(failures);
        tracing::warn!(file = %what, at = pos, error = %err, retry_in = ?d, "read broke; resuming");
        tokio::time::sleep(d).await;
    }
}
