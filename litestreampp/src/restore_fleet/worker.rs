//! One database's restore: the attempt (plan, restore to a staging name,
//! journal, rename into place) and the retries around it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use litestreampp_core::client::{ClientPool, FileInfo, ReplicaClient};
use litestreampp_core::restore::{
    IntegrityCheck, RestoreOptions, RestoreTarget, plan_from_files, plan_restore, restore_with_plan,
};
use litestreampp_core::v3::{self, V3Target};

use super::jobs::Job;
use super::journal::{self, Journal, JournalEntry};
use super::output::prepare_output;
use super::progress::Progress;
use super::report::{Outcome, Status};

/// A failure of one attempt, and whether another attempt may succeed.
struct Failure {
    error: anyhow::Error,
    retry: bool,
}

impl Failure {
    fn permanent(error: anyhow::Error) -> Failure {
        Failure {
            error,
            retry: false,
        }
    }
}

impl From<litestreampp_core::Error> for Failure {
    fn from(e: litestreampp_core::Error) -> Failure {
        use litestreampp_core::Error as E;
        let retry = !matches!(
            e,
            E::InvalidInput(_) | E::NotFound { .. } | E::TxNotAvailable { .. } | E::Cancelled
        );
        Failure {
            error: anyhow!(e),
            retry,
        }
    }
}

/// What every job of a run shares.
pub struct RestoreRun {
    pub pool: ClientPool,
    pub out_root: PathBuf,
    pub target: RestoreTarget,
    pub target_key: String,
    pub integrity_check: IntegrityCheck,
    pub parallelism: usize,
    pub force: bool,
    pub if_db_not_exists: bool,
    pub retries: u32,
    pub journal: Option<Journal>,
    pub done_before: HashMap<String, JournalEntry>,
    pub stop: AtomicBool,
    pub progress: Arc<Progress>,
}

impl RestoreRun {
    fn client(&self, job: &Job) -> Result<Arc<dyn ReplicaClient>> {
        job.replica.open(&self.pool)
    }
}

/// What a restore (or its plan) found.
struct Restored {
    txid: String,
    files: usize,
    bytes: u64,
}

/// Restores one database, retrying with exponential backoff.
pub async fn run_job(job: Job, ctx: Arc<RestoreRun>, dry_run: bool) -> Outcome {
    let started = Instant::now();
    let rel_key = job.rel.to_string_lossy().to_string();
    let mut out = Outcome::new(&job, Status::Restored);
    let finish = |mut out: Outcome| {
        out.duration_ms = started.elapsed().as_millis() as u64;
        ctx.progress.done.fetch_add(1, Ordering::Relaxed);
        ctx.progress.bytes.fetch_add(out.bytes, Ordering::Relaxed);
        if out.status == Status::Failed {
            ctx.progress.failed.fetch_add(1, Ordering::Relaxed);
        }
        out
    };
    // --force restores everything again; otherwise the journal says what
    // an earlier run already finished.
    if !ctx.force && journal::journaled(&ctx.done_before, &rel_key, &job.output, &ctx.target_key) {
        out.status = Status::Skipped;
        out.reason = Some("already restored (journal)".into());
        out.txid = ctx.done_before.get(&rel_key).map(|e| e.txid.clone());
        return finish(out);
    }
    let mut delay = Duration::from_millis(250);
    loop {
        out.attempts += 1;
        let r = if dry_run {
            plan_job(&job, &ctx).await
        } else {
            restore_job(&job, &ctx).await
        };
        match r {
            Ok(Some(r)) => {
                out.status = if dry_run {
                    Status::Planned
                } else {
                    Status::Restored
                };
                out.txid = Some(r.txid);
                out.files = r.files;
                out.bytes = r.bytes;
                return finish(out);
            }
            Ok(None) => {
                out.status = Status::Skipped;
                out.reason = Some("output exists (--if-db-not-exists)".into());
                return finish(out);
            }
            Err(f) => {
                let last =
                    !f.retry || out.attempts > ctx.retries || ctx.stop.load(Ordering::Relaxed);
                if last {
                    out.status = Status::Failed;
                    out.error = Some(format!("{:#}", f.error));
                    tracing::error!(db = %job.source, output = %job.output.display(), error = %format!("{:#}", f.error), "restore failed");
                    return finish(out);
                }
                tracing::warn!(db = %job.source, attempt = out.attempts, error = %format!("{:#}", f.error), "restore failed; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(8));
            }
        }
    }
}

/// The LTX files of a job: from the listing, else one listing now.
async fn job_files(job: &Job, client: &dyn ReplicaClient) -> Result<Vec<FileInfo>, Failure> {
    match &job.files {
        Some(f) => Ok(f.clone()),
        None => Ok(client.all_ltx_files().await?),
    }
}

/// The plan of an LTX replica (None when the replica has only a
/// Litestream 0.3 tree, or nothing that fits and a 0.3 tree).
async fn ltx_plan(
    job: &Job,
    ctx: &RestoreRun,
    client: &dyn ReplicaClient,
) -> Result<Option<litestreampp_core::restore::RestorePlan>, Failure> {
    let files = job_files(job, client).await?;
    let planned = if files.is_empty() {
        Err(litestreampp_core::Error::NotFound {
            what: format!("replica {}: no backup files", client.location()),
        })
    } else if matches!(ctx.target, RestoreTarget::Timestamp(_)) {
        // Listings give upload times; the plan needs exact ones.
        plan_restore(client, ctx.target).await
    } else {
        plan_from_files(&client.location(), files, ctx.target)
    };
    let e = match planned {
        Ok(p) => return Ok(Some(p)),
        Err(e) => e,
    };
    let nothing_fits =
        e.is_not_found() || matches!(e, litestreampp_core::Error::TxNotAvailable { .. });
    if nothing_fits && job.v3 {
        let generations = v3::generations(client).await.unwrap_or_default();
        if !generations.is_empty() {
            return Ok(None);
        }
    }
    Err(e.into())
}

fn v3_target(target: RestoreTarget) -> V3Target {
    V3Target {
        timestamp: match target {
            RestoreTarget::Timestamp(t) => Some(t),
            _ => None,
        },
        ..V3Target::default()
    }
}

async fn plan_job(job: &Job, ctx: &RestoreRun) -> Result<Option<Restored>, Failure> {
    if output_taken(ctx, &ctx.out_root.join(&job.rel))? {
        return Ok(None);
    }
    let client = ctx.client(job).map_err(Failure::permanent)?;
    match ltx_plan(job, ctx, client.as_ref()).await? {
        Some(p) => Ok(Some(Restored {
            txid: p.txid.to_string(),
            files: p.files.len(),
            bytes: p.total_bytes(),
        })),
        None => {
            let p = v3::plan(client.as_ref(), &v3_target(ctx.target)).await?;
            Ok(Some(Restored {
                txid: format!(
                    "generation {} index {:08x}",
                    p.snapshot.generation,
                    p.segments.last().map_or(p.snapshot.index, |s| s.index)
                ),
                files: 1 + p.segments.len(),
                bytes: p.snapshot.size + p.segments.iter().map(|s| s.size).sum::<u64>(),
            }))
        }
    }
}

/// True if `output` exists and is to be skipped (`--if-db-not-exists`);
/// an error if it exists and may not be replaced (no `--force`).
fn output_taken(ctx: &RestoreRun, output: &Path) -> Result<bool, Failure> {
    if std::fs::symlink_metadata(output).is_err() {
        return Ok(false);
    }
    if ctx.if_db_not_exists {
        return Ok(true);
    }
    if !ctx.force {
        return Err(Failure::permanent(anyhow!(
            "output already exists: {} (use --force to replace it, --if-db-not-exists to skip it)",
            output.display()
        )));
    }
    Ok(false)
}

/// One attempt: restore to a staging name, journal, rename into place.
async fn restore_job(job: &Job, ctx: &RestoreRun) -> Result<Option<Restored>, Failure> {
    let output = prepare_output(&ctx.out_root, &job.rel).map_err(Failure::permanent)?;
    if output_taken(ctx, &output)? {
        return Ok(None);
    }
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let staging = output.with_file_name(format!(".{name}.restoring"));
    let opts = RestoreOptions {
        output: staging.clone(),
        target: ctx.target,
        overwrite: true,
        integrity_check: ctx.integrity_check,
        parallelism: ctx.parallelism,
    };
    let client = ctx.client(job).map_err(Failure::permanent)?;
    let restored = match ltx_plan(job, ctx, client.as_ref()).await? {
        Some(plan) => {
            let s = restore_with_plan(client.clone(), &opts, Some(plan)).await?;
            Restored {
                txid: s.txid.to_string(),
                files: s.files,
                bytes: s.bytes_read,
            }
        }
        None => {
            let s = v3::restore(client.clone(), &opts, &v3_target(ctx.target)).await?;
            Restored {
                txid: String::new(),
                files: s.files,
                bytes: s.bytes_read,
            }
        }
    };
    let md = std::fs::metadata(&staging)
        .with_context(|| format!("stat {}", staging.display()))
        .map_err(Failure::permanent)?;
    if let Some(j) = &ctx.journal {
        j.append(&JournalEntry {
            path: job.rel.to_string_lossy().to_string(),
            target: ctx.target_key.clone(),
            txid: restored.txid.clone(),
            size: md.len(),
            mtime_ns: journal::mtime_ns(&md),
        })
        .await
        .map_err(Failure::permanent)?;
    }
    std::fs::rename(&staging, &output)
        .with_context(|| format!("rename {} to {}", staging.display(), output.display()))
        .map_err(Failure::permanent)?;
    if let Some(dir) = output.parent() {
        litestreampp_core::fsutil::fsync_dir(dir)?;
    }
    Ok(Some(restored))
}
