//! Restoring a fleet (`litestreampp restore-pattern`): many databases at
//! once, each from its own replica.
//!
//! Each database is restored to a staging name next to its output, its
//! entry appended (fsynced) to the journal in the output directory, then
//! renamed into place: a run started again skips what the journal and the
//! files agree on, and no output path ever holds a partial database.
//!
//! - `jobs`: [`Job`], one database to restore, and the path checks every
//!   job passes before anything is written. The settings layer builds the
//!   jobs from a config file or a replica URL pattern.
//! - `journal`: the fsynced, group-committed record of finished restores.
//! - `output`: where a restored database may be written.
//! - `worker`: one database's attempts, with retries.
//! - `progress`, `report`: what the operator sees while and after.

mod jobs;
mod journal;
mod output;
mod progress;
mod report;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use litestreampp_core::client::ClientPool;
use litestreampp_core::restore::{IntegrityCheck, RestoreTarget};

pub use jobs::{
    Job, Listing, ReplicaSource, check_paths, compile, join, list, rel_name, safe_rel, split_url,
};
pub use journal::JOURNAL_NAME;
pub use report::{Outcome, Status, summarize, write as write_report};

/// How to restore a fleet.
#[derive(Debug, Clone)]
pub struct RestoreFleetOptions {
    /// Where the journal lives; every output is under it.
    pub out_root: PathBuf,
    pub target: RestoreTarget,
    pub integrity_check: IntegrityCheck,
    /// Downloads at once within one database's restore.
    pub parallelism: usize,
    /// Databases restored at once.
    pub workers: usize,
    /// Replace existing outputs (and ignore the journal).
    pub force: bool,
    /// Skip databases whose output exists.
    pub if_db_not_exists: bool,
    /// Attempts after the first, for failures that may pass.
    pub retries: u32,
    /// Plan only: nothing is written.
    pub dry_run: bool,
}

/// How a fleet restore ended.
#[derive(Debug)]
pub struct Finished {
    /// One per job, refused ones included, sorted by output path.
    pub outcomes: Vec<Outcome>,
    /// Jobs that were run (refused ones not counted).
    pub total: usize,
    pub elapsed: Duration,
    /// Stopped by `interrupt`: the restores under way were finished, the
    /// rest not started.
    pub interrupted: bool,
}

impl Finished {
    pub fn failed(&self) -> bool {
        self.outcomes.iter().any(|o| o.status == Status::Failed)
    }
}

/// Restores `jobs`, `workers` at a time, until done or `interrupt`
/// completes; `refused` jobs (paths that would leave the output
/// directory) are reported as failed.
pub async fn run(
    jobs: Vec<Job>,
    refused: Vec<(Job, anyhow::Error)>,
    opts: &RestoreFleetOptions,
    pool: ClientPool,
    interrupt: impl Future<Output = ()>,
) -> Result<Finished> {
    let journal_path = opts.out_root.join(JOURNAL_NAME);
    let (journal, done_before) = if opts.dry_run {
        (None, journal::read(&journal_path))
    } else {
        litestreampp_core::fsutil::create_dir_all(&opts.out_root)?;
        (
            Some(journal::Journal::open(&journal_path)?),
            journal::read(&journal_path),
        )
    };
    let progress = Arc::new(progress::Progress::default());
    let ctx = Arc::new(worker::RestoreRun {
        pool,
        out_root: opts.out_root.clone(),
        target: opts.target,
        target_key: journal::target_key(opts.target),
        integrity_check: opts.integrity_check,
        parallelism: opts.parallelism.max(1),
        force: opts.force,
        if_db_not_exists: opts.if_db_not_exists,
        retries: opts.retries,
        journal,
        done_before,
        stop: AtomicBool::new(false),
        progress: progress.clone(),
    });
    let total = jobs.len();
    let started = Instant::now();
    let stop_progress = Arc::new(tokio::sync::Notify::new());
    let shown = tokio::spawn(progress::show(
        progress,
        total,
        Duration::from_secs(5),
        stop_progress.clone(),
    ));
    let mut outcomes: Vec<Outcome> = refused
        .into_iter()
        .map(|(j, e)| {
            let mut o = Outcome::new(&j, Status::Failed);
            o.error = Some(format!("{e:#}"));
            eprintln!("error: {}: {e:#}", j.source);
            o
        })
        .collect();
    let work = {
        use futures::StreamExt;
        let ctx = ctx.clone();
        let dry_run = opts.dry_run;
        futures::stream::iter(jobs)
            .map(move |j| {
                let ctx = ctx.clone();
                async move {
                    if ctx.stop.load(Ordering::Relaxed) {
                        return None;
                    }
                    let (source, output) = (j.source.clone(), j.output.clone());
                    match tokio::spawn(worker::run_job(j, ctx.clone(), dry_run)).await {
                        Ok(o) => Some(o),
                        // A panic is this database's failure, not the run's.
                        Err(e) => {
                            ctx.progress.failed.fetch_add(1, Ordering::Relaxed);
                            let mut o = Outcome::of(source, &output, Status::Failed);
                            o.error = Some(format!("restore task failed: {e}"));
                            o.attempts = 1;
                            Some(o)
                        }
                    }
                }
            })
            .buffer_unordered(opts.workers.max(1))
            .filter_map(|o| async move { o })
            .collect::<Vec<Outcome>>()
    };
    tokio::pin!(work);
    tokio::pin!(interrupt);
    let interrupted = tokio::select! {
        done = &mut work => { outcomes.extend(done); false }
        _ = &mut interrupt => {
            ctx.stop.store(true, Ordering::Relaxed);
            eprintln!("interrupted: finishing the restores under way; run again to resume");
            outcomes.extend(work.await);
            true
        }
    };
    stop_progress.notify_one();
    let _ = shown.await;
    outcomes.sort_by(|a, b| a.output.cmp(&b.output));
    Ok(Finished {
        outcomes,
        total,
        elapsed: started.elapsed(),
        interrupted,
    })
}
