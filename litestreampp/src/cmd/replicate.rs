//! `litestreampp replicate`: keep databases replicated until stopped.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use litestreampp_core::client::ClientPool;
use litestreampp_core::client::ReplicaClient;
use litestreampp_core::metrics::DbMetrics;
use litestreampp_core::replica::Replica;
use litestreampp_core::replicator::{FlushHandle, Replicator, ReplicatorOptions, ReplicatorStatus};
use litestreampp_core::restore::{self, IfMissing};
use litestreampp_core::scheduler::Scheduler;
use std::path::Path;
use std::sync::Arc;

use super::heartbeat::Heartbeat;
use super::replicated_dbs::ReplicatedDbs;
use super::{exec, init_logging_with, runtime, shutdown_signal};
use crate::control::server::{ControlRoutes, ControlSocket};
use crate::flags::ReplicateArgs;
use crate::settings::{self, DbConfig, DbTuning, ReplicaConfig, load_config, parse_go_duration};

/// Compactions and snapshot uploads run at once, across all databases.
const COMPACTION_WORKERS: usize = 4;

fn options(
    db: &DbConfig,
    replica: &ReplicaConfig,
    sync_interval: Option<Duration>,
) -> Result<ReplicatorOptions> {
    let mut o = ReplicatorOptions::default();
    db.tuning.apply(&mut o);
    // One replicator per database: each database's series carry its path,
    // as Go labels them.
    o.db.metrics = DbMetrics::per_db(&db.path);
    if let Some(v) = replica.duration("sync-interval")? {
        o.sync_interval = v;
    }
    if let Some(v) = sync_interval {
        o.sync_interval = v;
    }
    Ok(o)
}

pub fn run(args: ReplicateArgs) -> Result<ExitCode> {
    let sync_interval = args
        .sync_interval
        .as_deref()
        .map(parse_go_duration)
        .transpose()
        .context("-sync-interval")?;
    let cfg = match (&args.db_path, &args.replica_url) {
        (Some(db), Some(url)) => {
            if args.config.config.is_some() {
                bail!("cannot use -config together with DB_PATH REPLICA_URL");
            }
            // Litestream's defaults for everything the command line does
            // not say.
            let mut cfg = settings::parse_config("", Path::new("(command line)"), false)?;
            cfg.dbs.push(DbConfig {
                path: settings::expand_path(db)?,
                replica: Some(ReplicaConfig::from_url(url)),
                tuning: DbTuning::default(),
                restore_if_db_not_exists: false,
            });
            cfg
        }
        (Some(_), None) => {
            bail!("replica URL required: litestreampp replicate DB_PATH REPLICA_URL")
        }
        _ => {
            let cfg = load_config(args.config.config.as_deref(), !args.config.no_expand_env)?;
            if !cfg.dirs.is_empty() {
                // Directory entries are the fleet's: the same command
                // line keeps working, replicated by `run`.
                return super::run::run(fleet_args(&args, &cfg)?);
            }
            cfg
        }
    };
    let validation = cfg.validation_interval.map(|i| (i, cfg.levels.max_level()));
    let mcp_of = cfg.clone();
    let settings::Config {
        dbs,
        logging,
        addr,
        exec,
        heartbeat,
        shutdown_sync,
        socket,
        levels,
        ..
    } = cfg;
    init_logging_with(args.log_level.as_deref(), &logging);
    // -exec wins over the config's exec.
    let exec = args
        .exec
        .clone()
        .or(exec)
        .map(|e| exec::split(&e))
        .transpose()?;
    if args.once && exec.is_some() {
        return Err(anyhow::Error::new(settings::ConfigError(
            "cannot use -once with exec (the config's exec key): -once exits after one sync".into(),
        )));
    }
    if dbs.is_empty() {
        bail!("no databases specified in configuration");
    }
    let mut specs = Vec::new();
    let pool = Arc::new(ClientPool::default());
    let rt = runtime()?;
    for db in &dbs {
        let replica = db
            .replica
            .as_ref()
            .ok_or_else(|| anyhow!("database {}: no replica configured", db.path.display()))?;
        let client = replica
            .open(&pool)
            .with_context(|| format!("database {}", db.path.display()))?;
        if db.restore_if_db_not_exists || args.restore_if_db_not_exists {
            rt.block_on(restore_if_missing(client.clone(), &db.path))?;
        }
        let mut opts = options(db, replica, sync_interval)?;
        (opts.shutdown_sync_timeout, opts.shutdown_sync_interval) = shutdown_sync;
        if !opts.levels.retention_enabled {
            tracing::warn!(db = %db.path.display(), "retention disabled: old replica files are never deleted; configure lifecycle rules on the bucket");
        }
        tracing::info!(db = %db.path.display(), replica = %replica.describe(), "replicating");
        specs.push((db.path.clone(), client, opts));
    }
    if args.once {
        return rt.block_on(async move {
            let mut failed = 0;
            for (path, client, opts) in specs {
                let mut r = Replicator::new(&path, Replica::new(client), opts);
                if let Err(e) = once(&mut r, args.force_snapshot, args.enforce_retention).await {
                    eprintln!("error: {}: {e:#}", path.display());
                    failed += 1;
                }
                r.close()
                    .with_context(|| format!("close {}", path.display()))?;
            }
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        });
    }
    rt.block_on(async move {
        // One queue and worker pool for the compaction, snapshots and
        // retention of every database.
        let scheduler = Scheduler::start(COMPACTION_WORKERS);
        if let Some(addr) = &addr {
            serve_metrics(addr).await?;
        }
        super::serve_mcp(&mcp_of).await?;
        // A database registered through the socket gets the file's
        // settings and Litestream's defaults.
        let mut defaults = ReplicatorOptions::default();
        DbTuning::with_levels(levels).apply(&mut defaults);
        (
            defaults.shutdown_sync_timeout,
            defaults.shutdown_sync_interval,
        ) = shutdown_sync;
        let set = ReplicatedDbs::new(Some(scheduler), pool.clone(), defaults);
        let _control = match &socket {
            Some(s) => {
                let bound = ControlSocket::bind(&s.path, s.permissions).await?;
                let routes =
                    ControlRoutes::new(Arc::new(set.clone()), super::control::socket_version());
                Some(bound.serve(routes))
            }
            None => None,
        };
        for (path, client, opts) in specs {
            set.add(path, client, opts);
        }
        let _validating = validation.map(|(interval, top_level)| {
            let set = set.clone();
            super::validation::spawn(move || set.replicas(), top_level, interval)
        });
        let _pinging = match &heartbeat {
            Some(h) => {
                let beat = Heartbeat::new(&h.url, h.interval)?;
                let set = set.clone();
                Some(beat.spawn(move |within| all_healthy(&set.statuses(), within)))
            }
            None => None,
        };
        let mut app_ended = None;
        match &exec {
            None => shutdown_signal().await,
            Some(argv) => {
                // The application starts once every database's first sync
                // is in its replica; a signal before that stops us without
                // starting it.
                let flushes = set.flushes();
                let first_syncs = async {
                    for f in &flushes {
                        first_sync(f).await?;
                    }
                    Ok::<_, anyhow::Error>(())
                };
                let ready = tokio::select! {
                    r = first_syncs => Some(r),
                    _ = shutdown_signal() => None,
                };
                match ready {
                    Some(Ok(())) => {
                        let mut app = exec::Application::start(argv)?;
                        app_ended = Some(app.wait().await?);
                    }
                    Some(Err(e)) => {
                        let _ = set.stop_all().await; // the error below is the one to report
                        return Err(e.context("replication did not start, so exec was not started"));
                    }
                    None => {}
                }
            }
        }
        // A second signal cuts the final syncs' retries short, as in
        // Litestream (shutdown-sync-timeout bounds them otherwise).
        let finished = tokio::select! {
            r = set.stop_all() => r,
            _ = shutdown_signal() => {
                eprintln!("error: final sync interrupted by a second signal");
                return Ok(ExitCode::FAILURE);
            }
        };
        let mut failed = false;
        for (path, res) in finished {
            match res {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    eprintln!("error: {}: final sync: {e}", path.display());
                    failed = true;
                }
                Err(e) => {
                    eprintln!("error: replicator task: {e}");
                    failed = true;
                }
            }
        }
        Ok(match (app_ended, failed) {
            (_, true) => ExitCode::FAILURE,
            (Some(app), false) => app.exit_code(),
            (None, false) => ExitCode::SUCCESS,
        })
    })
}

/// `replicate -config` on a config with directory entries: the fleet
/// (`run --config`) with the same flags, which replicates the file's path
/// entries too.
fn fleet_args(args: &ReplicateArgs, cfg: &settings::Config) -> Result<crate::flags::RunArgs> {
    let refuse = |msg: String| Err(anyhow::Error::new(settings::ConfigError(msg)));
    if args.force_snapshot || args.enforce_retention {
        return refuse(format!(
            "config {}: -force-snapshot and -enforce-retention apply to a config of path entries only; one with directory entries is replicated by the fleet, which snapshots on its schedule",
            cfg.path.display()
        ));
    }
    let mut argv: Vec<std::ffi::OsString> = vec!["litestreampp".into(), "run".into()];
    argv.extend(["--config".into(), cfg.path.clone().into_os_string()]);
    if args.config.no_expand_env {
        argv.push("--no-expand-env".into());
    }
    // As Go's replicate: no endpoint unless the config's `addr` asks.
    if cfg.addr.is_none() {
        argv.extend(["--addr".into(), "off".into()]);
    }
    for (flag, on) in [
        ("--once", args.once),
        ("--restore-if-db-not-exists", args.restore_if_db_not_exists),
    ] {
        if on {
            argv.push(flag.into());
        }
    }
    for (flag, v) in [
        ("--exec", &args.exec),
        ("--log-level", &args.log_level),
        ("--sync-interval", &args.sync_interval),
    ] {
        if let Some(v) = v {
            argv.extend([flag.into(), v.into()]);
        }
    }
    match crate::flags::parse(argv).map(|c| c.command) {
        Ok(crate::flags::Command::Run(a)) => Ok(a),
        Ok(_) => bail!("internal: replicate of directory entries did not become run"),
        Err(e) => Err(anyhow!("{e}")),
    }
}

/// Every database healthy, for the heartbeat: it has synced into its
/// replica since we started, its last sync succeeded, and no write has
/// waited longer than `within` to reach the replica. (Litestream asks
/// for a successful sync within the interval; ours syncs only when there
/// is something to ship, so an idle database counts as healthy.)
fn all_healthy(statuses: &[Arc<std::sync::Mutex<ReplicatorStatus>>], within: Duration) -> bool {
    !statuses.is_empty()
        && statuses.iter().all(|s| {
            s.lock().is_ok_and(|s| {
                s.last_sync_at.is_some()
                    && s.last_error.is_none()
                    && s.pending_since.is_none_or(|t| t.elapsed() < within)
            })
        })
}

/// `-once`: sync and upload; with `-force-snapshot` a snapshot, with
/// `-enforce-retention` the snapshot retention, as Go's one-shot run.
async fn once(r: &mut Replicator, force_snapshot: bool, enforce_retention: bool) -> Result<()> {
    let rep = r.sync_once().await.context("sync")?;
    tracing::info!(
        db = %r.db_path().display(),
        files = rep.sync.files.len(),
        uploaded = rep.upload.files.len(),
        "synced"
    );
    if force_snapshot {
        let snap = r.snapshot().await.context("snapshot")?;
        tracing::info!(db = %r.db_path().display(), written = snap.is_some(), "snapshot");
    }
    if enforce_retention {
        r.enforce_retention().await.context("enforce retention")?;
        tracing::info!(db = %r.db_path().display(), "retention enforced");
    }
    Ok(())
}

/// `restore-if-db-not-exists`: the database is restored from its replica
/// before replication starts if it does not exist (an empty replica is a
/// first start).
pub(super) async fn restore_if_missing(client: Arc<dyn ReplicaClient>, path: &Path) -> Result<()> {
    match restore::restore_if_missing(client.clone(), path)
        .await
        .with_context(|| {
            format!(
                "restore {} from {} before replicating",
                path.display(),
                client.location()
            )
        })? {
        IfMissing::Exists => {
            tracing::info!(path = %path.display(), "database exists, skipping restore")
        }
        IfMissing::NoBackup => {
            tracing::info!(path = %path.display(), "no backup found, starting fresh")
        }
        IfMissing::Restored(s) => {
            tracing::info!(path = %path.display(), txid = %s.txid, "restored before replicating")
        }
    }
    Ok(())
}

/// Waits until the replicator behind `f` has synced once into its replica,
/// retrying while syncs fail (each failure is logged by the replicator).
async fn first_sync(f: &FlushHandle) -> Result<()> {
    loop {
        match f.flush().await {
            Ok(_) => return Ok(()),
            Err(litestreampp_core::Error::InvalidInput(stopped)) => bail!(stopped),
            Err(e) => {
                tracing::warn!(error = %e, "waiting for the first sync before starting exec");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// `/metrics` (Go's names, each database labelled `db`) and `/healthz` on
/// `addr`, as Go's `addr` key: `:9090` listens on every interface, as
/// there; `127.0.0.1:9090` on loopback only.
async fn serve_metrics(addr: &str) -> Result<()> {
    let bind = if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_string()
    };
    let sock = std::net::ToSocketAddrs::to_socket_addrs(&bind)
        .map_err(|e| anyhow!("addr {addr:?}: must be HOST:PORT or :PORT ({e})"))?
        .next()
        .ok_or_else(|| anyhow!("addr {addr:?}: resolves to no address"))?;
    let handle = crate::fleet::http::install_recorder()?;
    let bound = super::endpoint::serve(sock, handle, super::endpoint::Served::default()).await?;
    tracing::info!(url = %format!("http://{bound}/metrics"), "serving metrics");
    Ok(())
}
