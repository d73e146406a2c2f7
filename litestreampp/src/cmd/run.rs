//! `litestreampp run`: the fleet. Finds every database matching the
//! patterns and gives each a replica from the template, then keeps them
//! replicated with hot and cold tiers ([`crate::fleet::manager`]) until
//! SIGTERM or Ctrl-C. `--once` backs every database up once and exits.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Result;
use futures::StreamExt;
use litestreampp_core::client::ClientPool;
use litestreampp_core::replica::Replica;
use litestreampp_core::replicator::{Replicator, ReplicatorOptions};

use super::{init_logging, runtime, shutdown_signal};
use crate::cli::RunArgs;
use crate::config::parse_go_duration;
use crate::fleet::discover::Patterns;
use crate::fleet::http;
use crate::fleet::manager::{self, FleetOptions};
use crate::fleet::template::Template;

pub fn run(args: RunArgs) -> Result<ExitCode> {
    init_logging(args.log_level.as_deref());
    let patterns = Patterns::new(&args.pattern, &args.exclude)?;
    let template = Template::parse(&args.replica)?;
    if !args.once {
        return run_fleet(args, patterns, template);
    }
    let t0 = Instant::now();
    let found = patterns.discover()?;
    let discovered_in = t0.elapsed();
    eprintln!(
        "found {} databases in {:.2}s",
        found.len(),
        discovered_in.as_secs_f64()
    );
    let workers = args.workers.max(1);
    let rt = runtime()?;
    // One S3 client (and connection pool) per endpoint and credentials,
    // shared by every database's replica.
    let pool = ClientPool::default();
    let failed = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let files = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        futures::stream::iter(found)
            .for_each_concurrent(workers, |f| {
                let (failed, bytes, files) = (failed.clone(), bytes.clone(), files.clone());
                let url = template.expand(&f.rel);
                let pool = &pool;
                async move {
                    let r = async {
                        let client = pool.open(&url)?;
                        let mut r = Replicator::new(
                            &f.path,
                            Replica::new(client),
                            ReplicatorOptions::default(),
                        );
                        let rep = r.sync_once().await;
                        let closed = r.close();
                        let rep = rep?;
                        closed?;
                        Ok::<_, litestreampp_core::Error>(rep)
                    }
                    .await;
                    match r {
                        Ok(rep) => {
                            bytes.fetch_add(rep.upload.bytes, Ordering::Relaxed);
                            files.fetch_add(rep.upload.files.len() as u64, Ordering::Relaxed);
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(db = %f.path.display(), error = %e, "backup failed");
                            eprintln!("error: {}: {e}", f.path.display());
                        }
                    }
                }
            })
            .await;
    });
    let failed = failed.load(Ordering::Relaxed);
    eprintln!(
        "backed up in {:.2}s: {} files, {} bytes uploaded; {failed} failed",
        t0.elapsed().as_secs_f64(),
        files.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed)
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Threads for the fleet's blocking work (syncs, seals, snapshots).
const FLEET_BLOCKING_THREADS: usize = 64;

/// The continuous fleet: hot and cold tiers until a signal.
fn run_fleet(args: RunArgs, patterns: Patterns, template: Template) -> Result<ExitCode> {
    let state_dir = match &args.state_dir {
        Some(d) => d.clone(),
        None => patterns.first_root().join(".litestreampp-fleet"),
    };
    let mut opts = FleetOptions::new(state_dir);
    opts.hot_idle_timeout = parse_go_duration(&args.hot_idle_timeout)
        .map_err(|e| anyhow::anyhow!("--hot-idle-timeout: {e}"))?;
    opts.max_hot = args.max_hot.max(1);
    opts.backlog_rate = args.backlog_rate.max(1);
    opts.backlog_workers = args.backlog_workers.max(1);
    opts.max_uploads = args.max_uploads.max(1);
    opts.replicator.sync_interval = parse_go_duration(&args.sync_interval)
        .map_err(|e| anyhow::anyhow!("--sync-interval: {e}"))?;
    // The write detector drives syncs; the replicator's own poll is only a
    // safety net.
    opts.replicator.monitor_interval = opts.hot_idle_timeout.max(std::time::Duration::from_secs(1));
    if let Some(p) = &args.poll_interval {
        opts.poll_interval =
            Some(parse_go_duration(p).map_err(|e| anyhow::anyhow!("--poll-interval: {e}"))?);
    }
    crate::fleet::memory::limit_arenas();
    let rt = super::fleet_runtime(FLEET_BLOCKING_THREADS)?;
    let status = rt.block_on(async {
        let shared_slot = Arc::new(std::sync::OnceLock::new());
        if args.addr != "off" {
            let addr: std::net::SocketAddr = args
                .addr
                .parse()
                .map_err(|e| anyhow::anyhow!("--addr {:?}: {e}", args.addr))?;
            let handle = http::install_recorder()?;
            let bound = http::serve(addr, handle, shared_slot.clone()).await?;
            tracing::info!(addr = %bound, "metrics on /metrics, health on /healthz, status on /status");
        }
        let slot = shared_slot.clone();
        manager::run(patterns, template, opts, shutdown_signal(), move |shared| {
            let _ = slot.set(shared); // set once
        })
        .await
    })?;
    eprintln!(
        "stopped: {} databases ({} cold, {} queued, {} failed); {} promotions, {} demotions, {} errors",
        status.databases,
        status.cold,
        status.queued,
        status.failed,
        status.promotions,
        status.demotions,
        status.errors
    );
    // Databases that failed were logged and counted while running; the
    // exit code reports whether every hot database got its final sync.
    Ok(if status.shutdown_errors == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: {} final syncs failed", status.shutdown_errors);
        ExitCode::FAILURE
    })
}
