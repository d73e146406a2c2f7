//! `litestreampp run`: the fleet. Finds every database matching the
//! patterns and gives each a replica from the template.
//!
//! Built so far: `--once`, which backs every database up once (one sync
//! and upload each, a bounded number at a time), so every database of the
//! fleet is restorable. Continuous replication with hot and cold tiers is
//! the next step.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Result, bail};
use futures::StreamExt;
use litestreampp_core::client::ClientPool;
use litestreampp_core::replica::Replica;
use litestreampp_core::replicator::{Replicator, ReplicatorOptions};

use super::{init_logging, runtime};
use crate::cli::RunArgs;
use crate::fleet::discover::Patterns;
use crate::fleet::template::Template;

pub fn run(args: RunArgs) -> Result<ExitCode> {
    init_logging(args.log_level.as_deref());
    let patterns = Patterns::new(&args.pattern, &args.exclude)?;
    let template = Template::parse(&args.replica)?;
    if !args.once {
        bail!(
            "continuous fleet replication (hot and cold tiers) is not built yet: \
             `litestreampp run --once` backs every database up once; `replicate` keeps single databases replicated"
        );
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
