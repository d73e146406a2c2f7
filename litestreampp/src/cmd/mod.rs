//! One module per subcommand, plus what they share.

pub mod databases;
pub mod ltx;
pub mod replicate;
pub mod restore;
pub mod restore_pattern;
pub mod run;
pub mod status;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use litestreampp_core::client::ReplicaClient;

use crate::cli::ConfigArgs;
use crate::config::{self, Config, ReplicaConfig};

/// Sets up logging to stderr. `level` wins over `LITESTREAM_LOG_LEVEL`
/// and `RUST_LOG`; the default is `info`.
pub fn init_logging(level: Option<&str>) {
    // A plain level applies to litestreampp; the HTTP and AWS layers stay at
    // warn (their debug output includes request headers). RUST_LOG, a full
    // filter, is taken as written.
    const QUIET: &str = "aws_config=warn,aws_smithy_runtime=warn,aws_smithy_runtime_api=warn,aws_sigv4=warn,aws_smithy_http_client=warn,aws_sdk_s3=warn,hyper=warn,hyper_util=warn,rustls=warn,h2=warn";
    let filter = level
        .map(str::to_string)
        .or_else(|| std::env::var("LITESTREAM_LOG_LEVEL").ok())
        .map(|l| format!("{},{QUIET}", l.to_lowercase()))
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| format!("info,{QUIET}"));
    let filter = tracing_subscriber::EnvFilter::try_new(filter.to_lowercase())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init(); // already initialised in tests: keep the first
}

/// A multi-threaded runtime for a command.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start async runtime")
}

/// The fleet's runtime: a bounded blocking pool (every sync, seal and
/// snapshot runs there; more threads than this only add memory and
/// contention), idle threads exit after 10 s.
pub fn fleet_runtime(blocking_threads: usize) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(blocking_threads.max(1))
        .thread_keep_alive(std::time::Duration::from_secs(10))
        .build()
        .context("start async runtime")
}

/// Reads the config named by the flags (or the default path).
pub fn load_config(args: &ConfigArgs) -> Result<Config> {
    let path = args
        .config
        .clone()
        .unwrap_or_else(config::default_config_path);
    config::read_config(&path, !args.no_expand_env)
}

/// True for `scheme://...` arguments.
pub fn is_url(s: &str) -> bool {
    s.contains("://")
}

/// Resolves a `DB_PATH | REPLICA_URL` argument to a replica client and,
/// for a database path, that path.
pub fn resolve_target(
    target: &str,
    args: &ConfigArgs,
) -> Result<(Arc<dyn ReplicaClient>, Option<PathBuf>)> {
    if is_url(target) {
        if args.config.is_some() {
            bail!("cannot use a replica URL together with -config");
        }
        return Ok((ReplicaConfig::from_url(target).client()?, None));
    }
    let cfg = load_config(args)?;
    let path = config::expand_path(target)?;
    let db = cfg.db(&path).ok_or_else(|| {
        anyhow!(
            "database not found in config {}: {}",
            cfg.path.display(),
            path.display()
        )
    })?;
    let replica = db.replica.as_ref().ok_or_else(|| {
        anyhow!(
            "database {} has no replica in {}",
            path.display(),
            cfg.path.display()
        )
    })?;
    Ok((replica.client()?, Some(db.path.clone())))
}

/// Resolves when Ctrl-C or SIGTERM arrives.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
    tracing::info!("signal received, finishing the current sync");
}

/// One replica file as JSON, in the shape of Litestream's `ltx -json`.
pub fn file_info_json(f: &litestreampp_core::client::FileInfo) -> serde_json::Value {
    serde_json::json!({
        "level": f.level,
        "min_txid": f.min_txid.to_string(),
        "max_txid": f.max_txid.to_string(),
        "size": f.size,
        "timestamp": f.created_at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    })
}
