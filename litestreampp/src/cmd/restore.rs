//! `litestreampp restore`.

use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use litestreampp_core::TxId;
use litestreampp_core::restore::{
    IntegrityCheck, RestoreOptions, RestoreTarget, plan_restore, restore,
};

use super::{init_logging, resolve_target, runtime};
use crate::cli::RestoreArgs;

pub fn run(args: RestoreArgs) -> Result<ExitCode> {
    init_logging(args.log_level.as_deref());
    let (client, db_path) = resolve_target(&args.target, &args.config)?;
    let output = match (&args.output, db_path) {
        (Some(o), _) => crate::config::expand_path(&o.display().to_string())?,
        (None, Some(p)) => p,
        (None, None) => bail!("output path required: -o PATH"),
    };
    let target = match (&args.txid, &args.timestamp) {
        (Some(_), Some(_)) => bail!("cannot specify both -txid and -timestamp"),
        (Some(t), None) => {
            RestoreTarget::TxId(t.parse::<TxId>().map_err(|e| anyhow!("-txid: {e}"))?)
        }
        (None, Some(ts)) => {
            RestoreTarget::Timestamp(ts.parse::<jiff::Timestamp>().map_err(|e| {
                anyhow!("-timestamp {ts:?}: expected RFC 3339, e.g. 2026-01-02T15:04:05Z: {e}")
            })?)
        }
        (None, None) => RestoreTarget::Latest,
    };
    let integrity_check: IntegrityCheck = args.integrity_check.parse()?;
    if args.if_db_not_exists && std::fs::symlink_metadata(&output).is_ok() {
        eprintln!("database already exists, skipping: {}", output.display());
        return Ok(ExitCode::SUCCESS);
    }
    let rt = runtime()?;
    rt.block_on(async move {
        if args.dry_run {
            let plan = match plan_restore(client.as_ref(), target).await {
                Err(e) if args.if_replica_exists && e.is_not_found() => {
                    eprintln!("no backups found, skipping: {}", client.location());
                    return Ok(ExitCode::SUCCESS);
                }
                r => r.with_context(|| format!("plan restore from {}", client.location()))?,
            };
            print_plan(&plan, &output, args.json);
            return Ok(ExitCode::SUCCESS);
        }
        let opts = RestoreOptions {
            output: output.clone(),
            target,
            overwrite: args.force,
            integrity_check,
            parallelism: args.parallelism,
        };
        match restore(client.clone(), &opts).await {
            Ok(s) => {
                eprintln!(
                    "restored {} at TXID {} from {} files ({} bytes) in {:.3}s",
                    s.output.display(),
                    s.txid,
                    s.files,
                    s.bytes_read,
                    s.elapsed.as_secs_f64()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) if args.if_replica_exists && e.is_not_found() => {
                eprintln!("no backups found, skipping: {}", client.location());
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Err(anyhow!(e).context(format!(
                "restore {} from {}",
                output.display(),
                client.location()
            ))),
        }
    })
}

fn print_plan(
    plan: &litestreampp_core::restore::RestorePlan,
    output: &std::path::Path,
    json: bool,
) {
    if json {
        let files: Vec<serde_json::Value> = plan.files.iter().map(super::file_info_json).collect();
        let v = serde_json::json!({
            "output": output.display().to_string(),
            "txid": plan.txid.to_string(),
            "files": files,
            "total_bytes": plan.total_bytes(),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return;
    }
    println!(
        "restore to {} at TXID {}: {} files, {} bytes",
        output.display(),
        plan.txid,
        plan.files.len(),
        plan.total_bytes()
    );
    println!("level  min_txid          max_txid          size");
    for f in &plan.files {
        println!("{:<6} {} {} {}", f.level, f.min_txid, f.max_txid, f.size);
    }
}
