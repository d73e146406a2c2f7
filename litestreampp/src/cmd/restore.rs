//! `litestreampp restore`.

use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use litestreampp_core::restore::{
    IntegrityCheck, RestoreOptions, RestoreTarget, plan_restore, restore_with_plan,
};
use litestreampp_core::v3::{self, V3Target};

use super::{init_logging, runtime};
use crate::flags::RestoreArgs;
use crate::settings::{resolve_target, restore_target};

pub fn run(args: RestoreArgs) -> Result<ExitCode> {
    init_logging(args.log_level.as_deref());
    let (client, db_path) = resolve_target(
        &args.target,
        args.config.config.as_deref(),
        !args.config.no_expand_env,
    )?;
    let output = match (&args.output, db_path) {
        (Some(o), _) => crate::settings::expand_path(&o.display().to_string())?,
        (None, Some(p)) => p,
        (None, None) => bail!("output path required: -o PATH"),
    };
    let target = restore_target(args.txid.as_deref(), args.timestamp.as_deref())?;
    let index = args
        .index
        .as_deref()
        .map(|i| {
            u32::from_str_radix(i.trim_start_matches("0x"), 16)
                .map_err(|_| anyhow!("-index {i:?}: expected a hex WAL index, e.g. 0000002a"))
        })
        .transpose()?;
    // Flags that only mean something for a Litestream 0.3 replica.
    let v3_only = args.generation.is_some() || index.is_some();
    if v3_only && args.txid.is_some() {
        bail!("-txid applies to LTX replicas; -generation/-index to Litestream 0.3 replicas");
    }
    let v3_target = V3Target {
        generation: args.generation.clone(),
        index,
        timestamp: match target {
            RestoreTarget::Timestamp(t) => Some(t),
            _ => None,
        },
    };
    let integrity_check: IntegrityCheck = args.integrity_check.parse()?;
    if args.if_db_not_exists && std::fs::symlink_metadata(&output).is_ok() {
        eprintln!("database already exists, skipping: {}", output.display());
        return Ok(ExitCode::SUCCESS);
    }
    let rt = runtime()?;
    rt.block_on(async move {
        // A Litestream 0.3 replica (generations/ layout) is read when asked
        // for, or when there is no LTX backup that fits, as Litestream 0.5
        // does.
        // The LTX plan is made once: it decides the format and is the
        // restore's first plan.
        let planned = if v3_only {
            None
        } else {
            Some(plan_restore(client.as_ref(), target).await)
        };
        let fallback = match &planned {
            Some(Err(e))
                if e.is_not_found()
                    || matches!(e, litestreampp_core::Error::TxNotAvailable { .. }) =>
            {
                !v3::generations(client.as_ref())
                    .await
                    .unwrap_or_default()
                    .is_empty()
            }
            _ => false,
        };
        let planned = match planned {
            Some(p) if !fallback => p,
            _ => return restore_v3(client, &output, &v3_target, &args, integrity_check).await,
        };
        if args.dry_run {
            let plan = match planned {
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
        let result = match planned {
            Ok(plan) => restore_with_plan(client.clone(), &opts, Some(plan)).await,
            Err(e) => Err(e),
        };
        match result {
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

async fn restore_v3(
    client: std::sync::Arc<dyn litestreampp_core::client::ReplicaClient>,
    output: &std::path::Path,
    target: &V3Target,
    args: &RestoreArgs,
    integrity_check: IntegrityCheck,
) -> Result<ExitCode> {
    if args.dry_run {
        let plan = v3::plan(client.as_ref(), target)
            .await
            .with_context(|| format!("plan restore from {}", client.location()))?;
        let files: Vec<serde_json::Value> = std::iter::once(&plan.snapshot)
            .chain(&plan.segments)
            .map(|f| {
                serde_json::json!({
                    "generation": f.generation,
                    "index": format!("{:08x}", f.index),
                    "offset": f.offset,
                    "size": f.size,
                    "kind": if std::ptr::eq(f, &plan.snapshot) { "snapshot" } else { "wal" },
                    "timestamp": f.created_at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                })
            })
            .collect();
        if args.json {
            let v = serde_json::json!({
                "output": output.display().to_string(),
                "format": "litestream-0.3",
                "files": files,
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            println!(
                "restore to {} from Litestream 0.3 generation {}: snapshot {:08x} and {} WAL segments",
                output.display(),
                plan.snapshot.generation,
                plan.snapshot.index,
                plan.segments.len()
            );
            for f in &plan.segments {
                println!("wal {:08x} offset {} size {}", f.index, f.offset, f.size);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let opts = RestoreOptions {
        output: output.to_path_buf(),
        target: RestoreTarget::Latest,
        overwrite: args.force,
        integrity_check,
        parallelism: args.parallelism,
    };
    let s = v3::restore(client.clone(), &opts, target)
        .await
        .with_context(|| format!("restore {} from {}", output.display(), client.location()))?;
    eprintln!(
        "restored {} from a Litestream 0.3 replica ({} files, {} bytes) in {:.3}s",
        s.output.display(),
        s.files,
        s.bytes_read,
        s.elapsed.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
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
