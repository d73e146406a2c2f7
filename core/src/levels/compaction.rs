//! Compaction: merges the files of level N-1 that level N lacks into one
//! file at level N (local L0 files preferred over downloads), and checks a
//! level's TXIDs are contiguous.

use std::path::Path;

use futures::TryStreamExt;
use jiff::Timestamp;

use crate::client::retry::pump_range;
use crate::client::{FileInfo, LtxBody, ReplicaClient, list_all};
use crate::compact;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::txid::TxId;

use super::Maintainer;
use super::state::max_of;

impl Maintainer {
    /// Merges the files of level `level - 1` that level `level` lacks into
    /// one file at `level`.
    pub async fn compact(&self, level: u32) -> Result<Option<FileInfo>> {
        let src = level - 1;
        let (dst_max, src_files) = {
            let s = self.st();
            let dst_max = max_of(&s.newest[level as usize]);
            let l0: Vec<FileInfo> =
                s.l0.iter()
                    .filter(|f| f.max_txid > dst_max)
                    .cloned()
                    .collect();
            (dst_max, (src == 0).then_some(l0))
        };
        let inputs = match src_files {
            Some(f) => f,
            None => {
                self.client
                    .ltx_files(src, dst_max.next(), false)
                    .await?
                    .try_collect::<Vec<_>>()
                    .await?
            }
        };
        let mut inputs = chain(inputs, dst_max);
        if src == 0
            && dst_max > TxId::ZERO
            && inputs.first().is_some_and(|f| f.min_txid > dst_max.next())
        {
            // Our own L0 files always continue L1, so the remembered list
            // lacks one: relearn it from a listing rather than leave a
            // TXID gap at L1 (which L0 retention would later make final).
            let listed = list_all(self.client.as_ref(), 0, false).await?;
            tracing::warn!(
                db = %self.name, after = %dst_max,
                "remembered L0 files do not continue L1; relearned them from a listing"
            );
            let l0: Vec<FileInfo> = {
                let mut s = self.st();
                for f in listed {
                    if !s
                        .l0
                        .iter()
                        .any(|k| k.min_txid == f.min_txid && k.max_txid == f.max_txid)
                    {
                        s.add(&f);
                    }
                }
                s.l0.sort_by_key(|f| (f.min_txid, f.max_txid));
                s.l0.iter()
                    .filter(|f| f.max_txid > dst_max)
                    .cloned()
                    .collect()
            };
            inputs = chain(l0, dst_max);
        }
        if inputs.is_empty() {
            return Ok(None);
        }
        // An L0 snapshot among the inputs holds every page: the files
        // before it add nothing to the merge (and may be gone locally).
        let from_full = if src == 0 {
            let full = self.st().full_l0;
            full.and_then(|k| inputs.iter().rposition(|f| f.max_txid == k))
                .filter(|&i| i > 0)
        } else {
            None
        };
        let reading = &inputs[from_full.unwrap_or(0)..];
        let dir = self.meta.scratch_dir(level);
        fsutil::create_dir_all(&dir)?;
        let mut paths = Vec::with_capacity(reading.len());
        let mut downloaded = Vec::new();
        let result = async {
            for f in reading {
                let local = self.meta.l0_dir().join(f.file_name());
                if src == 0 && local.exists() {
                    paths.push(local);
                    continue;
                }
                let p = dir.join(format!("input-{src}-{}", f.file_name()));
                downloaded.push(p.clone());
                download(self.client.as_ref(), f, &p).await?;
                paths.push(p);
            }
            let min = inputs[0].min_txid;
            let max = inputs[inputs.len() - 1].max_txid;
            let out = dir.join(crate::txid::ltx_file_name(min, max));
            downloaded.push(out.clone());
            let (ins, o) = (paths.clone(), out.clone());
            let merged = tokio::task::spawn_blocking(move || match from_full {
                Some(_) => compact::merge_files_from_full(&ins, &o, min),
                None => compact::merge_files(&ins, &o),
            })
            .await
            .map_err(|e| Error::io("compaction task", std::io::Error::other(e.to_string())))??;
            let info = self
                .client
                .write_ltx_file(level, min, max, LtxBody::File(out))
                .await?;
            crate::crashpoint::here("compacted");
            tracing::info!(
                db = %self.name, level, min = %min, max = %max, inputs = inputs.len(),
                read = reading.len(), size = merged.size, "compaction complete"
            );
            Ok::<FileInfo, Error>(info)
        }
        .await;
        for p in &downloaded {
            let _ = std::fs::remove_file(p); // scratch files; a leftover is removed at the next start
        }
        let info = result?;
        {
            let mut s = self.st();
            s.newest[level as usize] = Some(info.clone());
            // What the source level gained meanwhile waits for the next
            // boundary.
            s.pending_since[src as usize] = if max_of(&s.newest[src as usize]) <= info.max_txid {
                None
            } else if src == 0 {
                s.l0.iter()
                    .find(|f| f.max_txid > info.max_txid)
                    .map(|f| f.created_at)
                    .or(Some(Timestamp::now()))
            } else {
                Some(Timestamp::now())
            };
            if s.pending_since[level as usize].is_none() {
                s.pending_since[level as usize] = Some(info.created_at);
            }
        }
        if self.cfg.verify_compaction
            && let Err(e) = self.verify_level(level).await
        {
            tracing::warn!(db = %self.name, level, error = %e, "post-compaction verification failed");
            self.metrics
                .get()
                .cloned()
                .unwrap_or_default()
                .compaction_verify_error();
        }
        Ok(Some(info))
    }

    /// Checks that the files of `level` have contiguous TXIDs.
    pub async fn verify_level(&self, level: u32) -> Result<()> {
        verify_level(self.client.as_ref(), level).await
    }
}

/// Checks that a replica's files at `level` follow one another: each
/// starts one TXID past the end of the one before (no gap, no overlap).
/// Litestream's `ValidateLevel`.
pub async fn verify_level(client: &dyn ReplicaClient, level: u32) -> Result<()> {
    let files = list_all(client, level, false).await?;
    for w in files.windows(2) {
        if w[1].min_txid != w[0].max_txid.next() {
            let what = if w[1].min_txid > w[0].max_txid.next() {
                "gap"
            } else {
                "overlap"
            };
            return Err(Error::corrupt(
                format!("{} level {level}", client.location()),
                format!(
                    "TXID {what}: {} then {}",
                    w[0].file_name(),
                    w[1].file_name()
                ),
            ));
        }
    }
    Ok(())
}

/// Litestream's periodic validation of one replica (`validation.interval`):
/// every level up to `top_level` checked with [`verify_level`], each fault
/// logged as Litestream logs it. Returns how many levels are faulty.
pub async fn validate_replica(client: &dyn ReplicaClient, db: &Path, top_level: u32) -> usize {
    let mut faulty = 0;
    for level in 0..=top_level {
        if let Err(e) = verify_level(client, level).await {
            tracing::warn!(db = %db.display(), level, error = %e, "validation error detected");
            faulty += 1;
        }
    }
    faulty
}

/// The contiguous run of `files` that continues `from` furthest at each
/// step (or, past a gap, starts at the lowest TXID left), ascending.
pub(super) fn chain(mut files: Vec<FileInfo>, from: TxId) -> Vec<FileInfo> {
    files.sort_by_key(|f| (f.min_txid, std::cmp::Reverse(f.max_txid)));
    let mut out: Vec<FileInfo> = Vec::new();
    let mut cur = from;
    loop {
        let next = files
            .iter()
            .filter(|f| f.min_txid.0 <= cur.0 + 1 && f.max_txid > cur)
            .max_by_key(|f| f.max_txid)
            .or_else(|| {
                if out.is_empty() {
                    files.iter().find(|f| f.max_txid > cur)
                } else {
                    None
                }
            });
        let Some(f) = next.cloned() else { break };
        cur = f.max_txid;
        out.push(f);
    }
    out
}

/// Downloads a replica file to `path` (resuming cut streams).
async fn download(client: &dyn ReplicaClient, info: &FileInfo, path: &Path) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut f = tokio::fs::File::create(path)
        .await
        .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let pump = pump_range(client, info, 0, info.size, tx);
    let write = async {
        while let Some(chunk) = rx.recv().await {
            let chunk = chunk?;
            f.write_all(&chunk)
                .await
                .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        }
        f.flush()
            .await
            .map_err(|e| Error::io(format!("write {}", path.display()), e))
    };
    let ((), r) = tokio::join!(pump, write);
    r?;
    let got = tokio::fs::metadata(path)
        .await
        .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
        .len();
    if got != info.size {
        return Err(Error::corrupt(
            crate::client::describe_file(client, info),
            format!("downloaded {got} of {} bytes", info.size),
        ));
    }
    Ok(())
}
