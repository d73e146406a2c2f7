//! `embedded-server`: a small REST server over one table of a SQLite
//! database, made durable by `litestreampp-core` from inside its own
//! process (no sidecar). With replication enabled it
//!
//! 1. restores the database from the replica before it opens it, when the
//!    database is missing or behind (beyond `--replication-restore-lag`),
//!    and refuses to start when the replica cannot be reached unless
//!    `--replication-allow-degraded`;
//! 2. opens it with the same SQLite library as the replicator (this crate
//!    depends on the workspace's `rusqlite`), binds the listener only then,
//!    and replicates in the background while it serves;
//! 3. on SIGTERM or SIGINT stops accepting, answers the requests in flight,
//!    then ships what is pending to the replica within
//!    `--replication-shutdown-timeout`.
//!
//! Every option has an environment variable (`SQLITEREST_*`) for
//! containers. See `docs/embedding.md`.

mod rest;
mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::builder::BoolishValueParser;
use clap::{Args, Parser};
use litestreampp_core::embed::{Replication, RestoreOutcome};
use tokio::net::TcpListener;

use crate::rest::AppState;
use crate::store::Store;

#[derive(Parser, Debug)]
#[command(
    name = "embedded-server",
    about = "A REST server over one SQLite table, replicated by litestreampp-core from inside the process",
    version
)]
struct Cli {
    /// The SQLite database to serve (created if missing and not restored).
    #[arg(long, env = "SQLITEREST_DB")]
    db: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "SQLITEREST_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The table served at `/<table>` (letters, digits and `_`): it needs
    /// an INTEGER PRIMARY KEY column, which addresses its rows. Created
    /// when missing as
    /// `(id INTEGER PRIMARY KEY, name TEXT NOT NULL, value TEXT, updated_at TEXT)`.
    #[arg(long, env = "SQLITEREST_TABLE", default_value = "items")]
    table: String,
    /// Read-only connections for GET requests (writes share one connection).
    #[arg(long, env = "SQLITEREST_READERS", default_value_t = 4)]
    readers: usize,
    #[command(flatten)]
    replication: ReplicationArgs,
}

#[derive(Args, Debug)]
struct ReplicationArgs {
    /// Replicate the database (and restore it before serving).
    #[arg(
        long = "replication-enabled",
        env = "SQLITEREST_REPLICATION_ENABLED",
        value_parser = BoolishValueParser::new(),
        num_args = 0..=1,
        default_value = "false",
        default_missing_value = "true"
    )]
    enabled: bool,
    /// The replica: `s3://bucket/path` (credentials from the AWS
    /// environment; `?endpoint=` for an S3-compatible server) or
    /// `file:///dir`.
    #[arg(
        long = "replication-replica-url",
        env = "SQLITEREST_REPLICATION_REPLICA_URL"
    )]
    replica_url: Option<String>,
    /// Restore from this replica instead of `--replication-replica-url`
    /// (seeding a new server from another one's replica).
    #[arg(
        long = "replication-restore-from",
        env = "SQLITEREST_REPLICATION_RESTORE_FROM"
    )]
    restore_from: Option<String>,
    /// How far behind the replica a local database may be and still be
    /// kept at start instead of restored over (0: not at all).
    #[arg(
        long = "replication-restore-lag",
        env = "SQLITEREST_REPLICATION_RESTORE_LAG",
        default_value = "0s"
    )]
    restore_lag: humantime::Duration,
    /// Start even when the replica cannot be reached at start (the data
    /// is then only as durable as this disk until it comes back).
    #[arg(
        long = "replication-allow-degraded",
        env = "SQLITEREST_REPLICATION_ALLOW_DEGRADED",
        value_parser = BoolishValueParser::new(),
        num_args = 0..=1,
        default_value = "false",
        default_missing_value = "true"
    )]
    allow_degraded: bool,
    /// Each write is answered only once it is in the replica (slower
    /// writes; an acknowledged write survives the loss of this machine).
    #[arg(
        long = "replication-sync-writes",
        env = "SQLITEREST_REPLICATION_SYNC_WRITES",
        value_parser = BoolishValueParser::new(),
        num_args = 0..=1,
        default_value = "false",
        default_missing_value = "true"
    )]
    sync_writes: bool,
    /// Longest a committed write waits before it is shipped.
    #[arg(
        long = "replication-sync-interval",
        env = "SQLITEREST_REPLICATION_SYNC_INTERVAL",
        default_value = "1s"
    )]
    sync_interval: humantime::Duration,
    /// How often a full snapshot is written to the replica.
    #[arg(
        long = "replication-snapshot-interval",
        env = "SQLITEREST_REPLICATION_SNAPSHOT_INTERVAL"
    )]
    snapshot_interval: Option<humantime::Duration>,
    /// How long snapshots (and so point-in-time restore) are kept.
    #[arg(
        long = "replication-retention",
        env = "SQLITEREST_REPLICATION_RETENTION"
    )]
    retention: Option<humantime::Duration>,
    /// How long the replica may take to answer at start before it counts
    /// as unreachable.
    #[arg(
        long = "replication-startup-timeout",
        env = "SQLITEREST_REPLICATION_STARTUP_TIMEOUT",
        default_value = "10s"
    )]
    startup_timeout: humantime::Duration,
    /// On SIGTERM, how long the final sync may take.
    #[arg(
        long = "replication-shutdown-timeout",
        env = "SQLITEREST_REPLICATION_SHUTDOWN_TIMEOUT",
        default_value = "10s"
    )]
    shutdown_timeout: humantime::Duration,
    /// Replication is required: once it has been failing for this long,
    /// the server stops (exit status 1) instead of serving writes that are
    /// not replicated.
    #[arg(
        long = "replication-required-after",
        env = "SQLITEREST_REPLICATION_REQUIRED_AFTER"
    )]
    required_after: Option<humantime::Duration>,
}

fn main() {
    let cli = Cli::parse();
    init_logging();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("embedded-server: start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(cli)) {
        eprintln!("embedded-server: {e:#}");
        std::process::exit(1);
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    const QUIET: &str = "aws_config=warn,aws_smithy_runtime=warn,aws_smithy_runtime_api=warn,aws_sigv4=warn,aws_smithy_http_client=warn,aws_sdk_s3=warn,hyper=warn,hyper_util=warn,rustls=warn";
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("info,{QUIET}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

async fn run(cli: Cli) -> Result<()> {
    let metrics = rest::install_metrics()?;
    let mut repl = replication(&cli)?;
    if let Some(r) = &repl {
        // Before the database is opened: a restore replaces the file.
        let outcome = r
            .restore_if_needed()
            .await
            .with_context(|| format!("restore {}", cli.db.display()))?;
        match &outcome {
            RestoreOutcome::Degraded { error } => {
                tracing::warn!(%error, "starting degraded: the replica is unreachable")
            }
            other => tracing::info!(outcome = ?other, "restore check done"),
        }
    }
    let store = Arc::new(Store::open(&cli.db, &cli.table, cli.readers)?);
    if let Some(r) = &mut repl {
        r.start()?;
    }
    let repl = repl.map(Arc::new);
    // Bound only now: nothing is served before the restore above.
    let listener = TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("listen on {}", cli.listen))?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, db = %cli.db.display(), table = %cli.table, replication = repl.is_some(), "serving");

    let state = AppState {
        store: store.clone(),
        repl: repl.clone(),
        sync_writes: cli.replication.sync_writes,
        metrics,
    };
    let (failed_tx, mut failed_rx) = tokio::sync::watch::channel(None::<String>);
    // Resolves only with --replication-required-after, once replication
    // has been failing that long.
    let watcher = repl.clone().map(|r| {
        tokio::spawn(async move {
            let e = r.failed().await;
            let _ = failed_tx.send(Some(e));
        })
    });
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("handle SIGINT")?;
    let mut failed_wait = failed_rx.clone();
    let stop = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: answering the requests in flight, then a final sync"),
            _ = int.recv() => tracing::info!("SIGINT: answering the requests in flight, then a final sync"),
            // Err: replication is off (no watcher); the branch is disabled.
            Ok(_) = failed_wait.wait_for(Option::is_some) => tracing::error!("replication is required and has failed: stopping"),
        }
    };
    axum::serve(listener, rest::router(state))
        .with_graceful_shutdown(stop)
        .await
        .context("serve")?;
    if let Some(w) = watcher {
        w.abort();
        let _ = w.await; // cancelled: it let go of the replication
    }

    // The router and its connections are gone: the application's
    // connections close first, then the final sync ships what they wrote.
    drop(store);
    let result = match repl {
        Some(r) => finish_replication(r, cli.replication.shutdown_timeout.into()).await,
        None => Ok(()),
    };
    if let Some(e) = failed_rx.borrow_and_update().clone() {
        bail!("replication required: {e}");
    }
    result
}

/// The replication the flags ask for, or `None` when it is off.
fn replication(cli: &Cli) -> Result<Option<Replication>> {
    let a = &cli.replication;
    if !a.enabled {
        if a.replica_url.is_some() || a.restore_from.is_some() {
            tracing::warn!(
                "a replica is configured but --replication-enabled is not set: not replicating"
            );
        }
        return Ok(None);
    }
    let Some(url) = &a.replica_url else {
        bail!(
            "--replication-enabled needs --replication-replica-url (or SQLITEREST_REPLICATION_REPLICA_URL)"
        );
    };
    let mut b = Replication::builder(&cli.db)
        .replica_url(url)
        .sync_interval(a.sync_interval.into())
        .restore_lag(a.restore_lag.into())
        .allow_degraded(a.allow_degraded)
        .startup_timeout(a.startup_timeout.into());
    if let Some(from) = &a.restore_from {
        b = b.restore_from_url(from);
    }
    if let Some(d) = a.snapshot_interval {
        b = b.snapshot_interval(d.into());
    }
    if let Some(d) = a.retention {
        b = b.retention(d.into());
    }
    if let Some(d) = a.required_after {
        b = b.replication_required(d.into());
    }
    Ok(Some(b.build().context("replication options")?))
}

/// Stops replication with its final sync, once the handlers have let go
/// of it.
async fn finish_replication(r: Arc<Replication>, timeout: Duration) -> Result<()> {
    let mut r = r;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let repl = loop {
        match Arc::try_unwrap(r) {
            Ok(repl) => break repl,
            Err(again) if tokio::time::Instant::now() < deadline => {
                r = again;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(_) => {
                bail!("replication still in use after the server stopped: final sync not made")
            }
        }
    };
    let status = repl
        .shutdown(timeout)
        .await
        .context("final sync to the replica")?;
    tracing::info!(replica_txid = %status.replica_txid, "stopped; the replica holds everything written");
    Ok(())
}
