//! `litestreampp restore`.

use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use litestreampp_core::restore::{
    IntegrityCheck, RestoreOptions, RestoreTarget, follow, plan_restore, restore_with_plan,
};
use litestreampp_core::v3::{self, V3Target};

use super::table::Table;
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
    if args.follow_interval.is_some() && !args.follow {
        bail!("-follow-interval applies to follow mode: add -f");
    }
    if args.if_db_not_exists && std::fs::symlink_metadata(&output).is_ok() {
        eprintln!("database already exists, skipping: {}", output.display());
        return Ok(ExitCode::SUCCESS);
    }
    if args.follow {
        if args.txid.is_some() {
            bail!("cannot use follow mode with -txid");
        }
        if args.timestamp.is_some() {
            bail!("cannot use follow mode with -timestamp");
        }
        if args.dry_run {
            bail!("cannot use -dry-run with -f");
        }
        if v3_only {
            bail!(
                "follow mode reads LTX replicas (Litestream 0.5); -generation and -index are for Litestream 0.3 replicas"
            );
        }
        if args.force {
            bail!(
                "cannot use -force with -f: follow mode resumes an existing output at the TXID in its -txid file; delete the output to restore it again"
            );
        }
        let interval = match &args.follow_interval {
            Some(s) => crate::settings::parse_go_duration(s)
                .with_context(|| format!("-follow-interval {s:?}"))?,
            None => follow::DEFAULT_FOLLOW_INTERVAL,
        };
        if interval.is_zero() {
            bail!("-follow-interval must be greater than zero");
        }
        let opts = follow::FollowOptions {
            output,
            interval,
            parallelism: args.parallelism,
            integrity_check,
        };
        return runtime()?.block_on(follow_replica(client, opts, &args));
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
            print_plan(&plan, &args.target, &output, client.kind(), args.json)?;
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
                if args.json {
                    // Litestream's summary fields, then ours.
                    let v = serde_json::json!({
                        "db_path": s.output.display().to_string(),
                        "replica": client.kind(),
                        "txid": s.txid.to_string(),
                        "duration_ms": s.elapsed.as_millis() as u64,
                        "integrity_check": args.integrity_check,
                        "files": s.files,
                        "bytes_read": s.bytes_read,
                    });
                    println!("{}", serde_json::to_string_pretty(&v)?);
                }
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

/// `restore -f`: restore (or resume), then apply new files until a
/// signal.
async fn follow_replica(
    client: std::sync::Arc<dyn litestreampp_core::client::ReplicaClient>,
    opts: follow::FollowOptions,
    args: &RestoreArgs,
) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let txid = match follow::follow(client.clone(), &opts, super::shutdown_signal()).await {
        Ok(t) => t,
        Err(e) if args.if_replica_exists && e.is_not_found() => {
            eprintln!("no backups found, skipping: {}", client.location());
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => {
            return Err(anyhow!(e).context(format!(
                "follow {} from {}",
                opts.output.display(),
                client.location()
            )));
        }
    };
    if args.json {
        let v = serde_json::json!({
            "db_path": opts.output.display().to_string(),
            "replica": client.kind(),
            "txid": txid.to_string(),
            "duration_ms": started.elapsed().as_millis() as u64,
            "integrity_check": args.integrity_check,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(ExitCode::SUCCESS)
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

/// The dry run's plan, in Litestream's shape (text and JSON fields), with
/// our `txid` and `total_bytes` added to the JSON.
fn print_plan(
    plan: &litestreampp_core::restore::RestorePlan,
    source: &str,
    output: &std::path::Path,
    replica: &str,
    json: bool,
) -> Result<()> {
    let (min, max) = match (plan.files.first(), plan.files.last()) {
        (Some(a), Some(b)) => (a.min_txid.to_string(), b.max_txid.to_string()),
        _ => (String::new(), String::new()),
    };
    if json {
        let files: Vec<serde_json::Value> = plan
            .files
            .iter()
            .map(|f| {
                serde_json::json!({
                    "level": f.level,
                    "name": f.file_name(),
                    "min_txid": f.min_txid.to_string(),
                    "max_txid": f.max_txid.to_string(),
                    "size": f.size,
                    "timestamp": super::timestamp(f),
                })
            })
            .collect();
        let v = serde_json::json!({
            "source": source,
            "target_path": output.display().to_string(),
            "replica": replica,
            "min_txid": min,
            "max_txid": max,
            "files": files,
            "txid": plan.txid.to_string(),
            "total_bytes": plan.total_bytes(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("Restore plan:");
    println!("  source: {source}");
    println!("  target: {}", output.display());
    println!("  replica: {replica}");
    println!("  txid range: {min} - {max}");
    println!();
    println!("Files to fetch:");
    let mut t = Table::new(&["level", "file", "min_txid", "max_txid", "size", "timestamp"]);
    for f in &plan.files {
        t.row(vec![
            f.level.to_string(),
            f.file_name(),
            f.min_txid.to_string(),
            f.max_txid.to_string(),
            f.size.to_string(),
            super::timestamp(f),
        ]);
    }
    t.print();
    Ok(())
}
