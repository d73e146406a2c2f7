//! `litestreampp restore-pattern`: restores every database that matches a
//! pattern, many at once (see [`crate::restore_fleet`]). The databases come
//! from a config file (each from its configured replica; directory entries
//! by listing their replica) or from the replicas found under a URL such as
//! `s3://bkt/backups/**/*.db`.

use std::process::ExitCode;

use anyhow::{Result, bail};
use litestreampp_core::client::ClientPool;
use litestreampp_core::redact::redact_url;
use litestreampp_core::restore::IntegrityCheck;

use super::{init_logging, runtime};
use crate::flags::RestorePatternArgs;
use crate::restore_fleet::{self, RestoreFleetOptions};
use crate::settings::{self, config_jobs, restore_target, url_jobs};

/// Warnings about files in no replica layout, at most this many.
const UNRECOGNISED_SHOWN: usize = 20;

pub fn run(args: RestorePatternArgs) -> Result<ExitCode> {
    init_logging(args.log_level.as_deref());
    let target = restore_target(args.txid.as_deref(), args.timestamp.as_deref())?;
    let integrity_check: IntegrityCheck = args.integrity_check.parse()?;
    if args.workers == 0 {
        bail!("--workers must be at least 1");
    }
    let is_url = settings::is_url(&args.pattern);
    if is_url && args.config.config.is_some() {
        bail!("cannot use a replica URL pattern together with --config");
    }
    if is_url && args.output_dir.is_none() {
        bail!("--output-dir is required when restoring from a replica URL pattern");
    }
    let rt = runtime()?;
    rt.block_on(async move {
        let pool = ClientPool::default();
        let (jobs, listing, out_root) = if is_url {
            let out = args.output_dir.clone().unwrap_or_default();
            let (jobs, listing) = url_jobs(&args.pattern, &out, &pool).await?;
            (jobs, listing, out)
        } else {
            let cfg =
                settings::load_config(args.config.config.as_deref(), !args.config.no_expand_env)?;
            config_jobs(&cfg, &args.pattern, args.output_dir.as_deref(), &pool).await?
        };
        for u in listing.unrecognised.iter().take(UNRECOGNISED_SHOWN) {
            eprintln!("warning: not a recognised replica layout, not restored: {u}");
        }
        if listing.unrecognised.len() > UNRECOGNISED_SHOWN {
            eprintln!(
                "warning: {} more files in no recognised replica layout",
                listing.unrecognised.len() - UNRECOGNISED_SHOWN
            );
        }
        // Paths from listings are checked before anything is written.
        let (jobs, refused) = restore_fleet::check_paths(jobs);
        if jobs.is_empty() && refused.is_empty() {
            bail!(
                "no replica matches {} ({} found, {} did not match)",
                redact_url(&args.pattern),
                listing.replicas,
                listing.unmatched
            );
        }
        let opts = RestoreFleetOptions {
            out_root,
            target,
            integrity_check,
            parallelism: args.parallelism,
            workers: args.workers,
            force: args.force,
            if_db_not_exists: args.if_db_not_exists,
            retries: args.retries,
            dry_run: args.dry_run,
        };
        let done = restore_fleet::run(jobs, refused, &opts, pool, super::shutdown_signal()).await?;
        if let Some(path) = &args.report {
            restore_fleet::write_report(path, &done.outcomes)?;
        }
        restore_fleet::summarize(
            &done.outcomes,
            done.total,
            done.elapsed,
            args.dry_run,
            &listing,
        );
        Ok(if done.failed() || done.interrupted {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    })
}
