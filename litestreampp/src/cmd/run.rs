//! `litestreampp run`: the fleet. Finds every database matching the
//! patterns and gives each a replica from the template, then keeps them
//! replicated with hot and cold tiers ([`crate::fleet`]) until
//! SIGTERM or Ctrl-C. `--once` backs every database up once and exits.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use litestreampp_core::client::ClientPool;
use litestreampp_core::replica::Replica;
use litestreampp_core::replicator::{Replicator, ReplicatorOptions};

use super::heartbeat::Heartbeat;
use super::{init_logging_with, runtime, shutdown_signal};
use crate::control::server::{ControlRoutes, ControlSocket};
use crate::flags::RunArgs;
use crate::fleet::patterns::Patterns;
use crate::fleet::{self, FleetOptions, ReplicaTemplate, http};
use crate::restore_fleet::{self, RestoreFleetOptions};
use crate::settings::{Config, Template, UrlOpener, config_jobs, parse_go_duration};
use litestreampp_core::restore::{IntegrityCheck, RestoreTarget};

const NEEDS_CONFIG: &str = "--restore-if-db-not-exists needs a config file's directory entries (their replicas are listed to find the databases); with --pattern, run `litestreampp restore-pattern --if-db-not-exists` first";

/// Patterns, one replica template per pattern, and the config file (if
/// one was read).
struct Sources {
    patterns: Patterns,
    /// In the patterns' order: the path entries' first, then the globs'.
    templates: Vec<Template>,
    config: Option<Config>,
}

/// `--pattern`/`--replica` from the command line, and the config file's
/// entries when `--config` is given or no `--pattern` is: each directory
/// entry is a pattern, each path entry a database of its own.
fn sources(args: &RunArgs) -> Result<Sources> {
    let mut globs = Vec::new();
    let mut glob_templates = Vec::new();
    if let Some(r) = &args.replica {
        let t = Template::parse(r)?;
        for p in &args.pattern {
            globs.push(p.clone());
            glob_templates.push(t.clone());
        }
    }
    let mut files = Vec::new();
    let mut templates = Vec::new();
    let config = if args.config.is_some() || args.pattern.is_empty() {
        let path = args
            .config
            .clone()
            .unwrap_or_else(crate::settings::default_config_path);
        let cfg = crate::settings::read_config(&path, !args.no_expand_env).with_context(|| {
            if args.config.is_none() {
                "no --pattern given, so the databases come from the config file".to_string()
            } else {
                "--config".to_string()
            }
        })?;
        for d in &cfg.dbs {
            files.push(d.path.clone());
            templates.push(Template::for_db(d).map_err(|e| {
                anyhow::Error::new(crate::settings::ConfigError(format!(
                    "config {}: {e:#}",
                    path.display()
                )))
            })?);
        }
        for d in &cfg.dirs {
            globs.push(d.glob());
            glob_templates.push(Template::for_dir(d));
        }
        if globs.is_empty() && files.is_empty() {
            bail!(
                "{}: no databases (dbs: - path: ... or - dir: ... pattern: ...); give them, or --pattern and --replica",
                path.display()
            );
        }
        Some(cfg)
    } else {
        None
    };
    templates.extend(glob_templates);
    let mut excludes = args.exclude.clone();
    if let Some(c) = &config {
        excludes.extend(c.fleet.exclude.iter().cloned());
    }
    Ok(Sources {
        patterns: Patterns::with_files(&files, &globs, &excludes)?,
        templates,
        config,
    })
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    let src = sources(&args)?;
    let logging = src
        .config
        .as_ref()
        .map(|c| c.logging.clone())
        .unwrap_or_default();
    init_logging_with(args.log_level.as_deref(), &logging);
    if args.once && src.config.as_ref().is_some_and(|c| c.exec.is_some()) {
        return Err(anyhow::Error::new(crate::settings::ConfigError(
            "cannot use --once with exec (the config's exec key): --once exits after one backup"
                .into(),
        )));
    }
    if !args.once {
        return run_fleet(args, src);
    }
    let Sources {
        patterns,
        templates,
        config,
    } = src;
    let mut opts = ReplicatorOptions::default();
    if let Some(c) = &config {
        let (tuning, _) = c.fleet_tuning()?;
        tuning.apply(&mut opts);
    }
    let rt = runtime()?;
    // Missing databases first, as the fleet does: restored ones are then
    // backed up like the rest.
    match &config {
        Some(c) => rt.block_on(restore_missing(c, args.restore_if_db_not_exists))?,
        None if args.restore_if_db_not_exists => bail!(NEEDS_CONFIG),
        None => {}
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
                let template = &templates[f.source];
                let pool = &pool;
                let opts = &opts;
                async move {
                    let r = async {
                        let client = template.open(pool, &f.rel)?;
                        let mut opts = opts.clone();
                        opts.db.meta_dir =
                            Some(template.meta_dir(&f.path, &f.rel).path().to_path_buf());
                        let mut r = Replicator::new(&f.path, Replica::new(client), opts);
                        let rep = r.sync_once().await;
                        let closed = r.close();
                        let rep = rep?;
                        closed?;
                        Ok::<_, anyhow::Error>(rep)
                    }
                    .await;
                    match r {
                        Ok(rep) => {
                            bytes.fetch_add(rep.upload.bytes, Ordering::Relaxed);
                            files.fetch_add(rep.upload.files.len() as u64, Ordering::Relaxed);
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(db = %f.path.display(), error = %format!("{e:#}"), "backup failed");
                            eprintln!("error: {}: {e:#}", f.path.display());
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

/// How often a hot database's WAL is looked at without a change notice:
/// the directory entries' `monitor-interval` (Litestream polls every
/// database at it; the fleet's cold databases are watched by
/// notification, or `poll-interval`), else only as a safety net, since
/// the write detector drives syncs.
fn hot_poll_interval(monitor_interval: Option<Duration>, hot_idle_timeout: Duration) -> Duration {
    monitor_interval.unwrap_or_else(|| hot_idle_timeout.max(Duration::from_secs(1)))
}

/// Threads for the fleet's blocking work (syncs, seals, snapshots).
const FLEET_BLOCKING_THREADS: usize = 32;

/// The continuous fleet: hot and cold tiers until a signal.
fn run_fleet(args: RunArgs, src: Sources) -> Result<ExitCode> {
    let Sources {
        patterns,
        templates,
        config,
    } = src;
    let fc = config.as_ref().map(|c| c.fleet.clone()).unwrap_or_default();
    let state_dir = args
        .state_dir
        .clone()
        .or(fc.state_dir.clone())
        .unwrap_or_else(|| patterns.first_root().join(".litestreampp-fleet"));
    let duration = |flag: &Option<String>, name: &str, from_config: Option<Duration>| match flag {
        Some(v) => parse_go_duration(v)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("--{name}: {e}")),
        None => Ok(from_config),
    };
    let mut opts = FleetOptions::new(state_dir);
    opts.validation_interval = config.as_ref().and_then(|c| c.validation_interval);
    // The final sync's retries at stop: the config's, else Litestream's.
    (
        opts.replicator.shutdown_sync_timeout,
        opts.replicator.shutdown_sync_interval,
    ) = config
        .as_ref()
        .map_or(crate::settings::SHUTDOWN_SYNC_DEFAULT, |c| c.shutdown_sync);
    let mut monitor_interval = None;
    if let Some(c) = &config {
        // Compaction levels, snapshots, retention and the per-database
        // keys of the directory entries.
        let (tuning, sync_interval) = c.fleet_tuning()?;
        tuning.apply(&mut opts.replicator);
        monitor_interval = tuning.monitor_interval;
        if let Some(d) = sync_interval {
            opts.replicator.sync_interval = d;
        }
    }
    if let Some(d) = duration(
        &args.hot_idle_timeout,
        "hot-idle-timeout",
        fc.hot_idle_timeout,
    )? {
        opts.hot_idle_timeout = d;
    }
    if let Some(d) = duration(&args.sync_interval, "sync-interval", fc.sync_interval)? {
        opts.replicator.sync_interval = d;
    }
    opts.poll_interval = duration(&args.poll_interval, "poll-interval", fc.poll_interval)?;
    if let Some(d) = duration(
        &args.outage_report_interval,
        "outage-report-interval",
        fc.outage_report_interval,
    )? {
        opts.outage_report_interval = d.max(Duration::from_secs(1));
    }
    opts.leave_rollback_journal = match &args.rollback_journal {
        Some(v) => crate::settings::parse_rollback_journal(v)
            .map_err(|e| anyhow::anyhow!("--rollback-journal {e:#}"))?,
        None => fc.leave_rollback_journal.unwrap_or(false),
    };
    let pick = |flag: Option<usize>, file: Option<usize>, default: usize| {
        flag.or(file).unwrap_or(default).max(1)
    };
    opts.max_hot = pick(args.max_hot, fc.max_hot, opts.max_hot);
    opts.backlog_workers = pick(
        args.backlog_workers,
        fc.backlog_workers,
        opts.backlog_workers,
    );
    opts.max_uploads = pick(args.max_uploads, fc.max_uploads, opts.max_uploads);
    opts.backlog_rate = args
        .backlog_rate
        .or(fc.backlog_rate)
        .unwrap_or(opts.backlog_rate)
        .max(1);
    opts.replicator.monitor_interval = hot_poll_interval(monitor_interval, opts.hot_idle_timeout);
    // --addr, else the config's `addr` (Litestream's ":9090" means every
    // interface, as there), else 127.0.0.1:9090.
    let addr = match (&args.addr, config.as_ref().and_then(|c| c.addr.clone())) {
        (Some(a), _) => a.clone(),
        (None, Some(a)) if a.starts_with(':') => format!("0.0.0.0{a}"),
        (None, Some(a)) => a,
        (None, None) => "127.0.0.1:9090".to_string(),
    };
    let restore_all = args.restore_if_db_not_exists;
    if restore_all && config.is_none() {
        bail!(NEEDS_CONFIG);
    }
    let exec = args
        .exec
        .clone()
        .or_else(|| config.as_ref().and_then(|c| c.exec.clone()))
        .map(|e| super::exec::split(&e))
        .transpose()?;
    crate::fleet::memory::tune_allocator();
    let rt = super::fleet_runtime(FLEET_BLOCKING_THREADS)?;
    let app_ended = Arc::new(std::sync::OnceLock::new());
    let heartbeat = config
        .as_ref()
        .and_then(|c| c.heartbeat.as_ref())
        .map(|h| Heartbeat::new(&h.url, h.interval))
        .transpose()?;
    let socket = config.as_ref().and_then(|c| c.socket.clone());
    let status = rt.block_on(async {
        // Bound before the fleet starts (a live socket of another process
        // stops us here), served once it runs, removed when it stops.
        let control = match &socket {
            Some(s) => Some(ControlSocket::bind(&s.path, s.permissions).await?),
            None => None,
        };
        let serving = Arc::new(std::sync::OnceLock::new());
        // The pings live as long as the fleet runs.
        let pinging = Arc::new(std::sync::OnceLock::new());
        let view_slot = Arc::new(std::sync::OnceLock::new());
        let control_slot = Arc::new(std::sync::OnceLock::new());
        if addr != "off" {
            let addr: std::net::SocketAddr = addr
                .parse()
                .map_err(|e| anyhow::anyhow!("--addr {addr:?}: {e}"))?;
            let handle = http::install_recorder()?;
            let served = super::endpoint::Served {
                fleet: Some(view_slot.clone()),
                control: Some(control_slot.clone()),
                token: super::control_token(&fc),
            };
            let bound = super::endpoint::serve(addr, handle, served).await?;
            tracing::info!(addr = %bound, "metrics on /metrics, health on /healthz, status on /status, control on /list, /sync, ...");
        }
        if let Some(c) = &config {
            super::serve_mcp(c).await?;
        }
        let slot = view_slot.clone();
        let templates = templates
            .into_iter()
            .map(|t| Box::new(t) as Box<dyn ReplicaTemplate>)
            .collect();
        if let Some(c) = &config {
            restore_missing(c, restore_all).await?;
        }
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let shutdown = until_stopped(exec, ready_rx, app_ended.clone());
        let pings = pinging.clone();
        let served = serving.clone();
        let routes_slot = control_slot.clone();
        let opener: Arc<dyn fleet::ReplicaOpener> = Arc::new(UrlOpener);
        let status = fleet::run(patterns, templates, Some(opener), opts, shutdown, move |view| {
            let target = Arc::new(super::fleet_control::FleetControl(view.clone()));
            let routes = ControlRoutes::new(target, super::control::socket_version());
            if let Some(socket) = control {
                let _ = served.set(socket.serve(routes.clone()));
            }
            let _ = routes_slot.set(routes); // set once
            if let Some(beat) = heartbeat {
                let v = view.clone();
                let _ = pings.set(beat.spawn(move |within| fleet_healthy(&v, within)));
            }
            let _ = ready_tx.send(view.clone()); // nobody waits without exec
            let _ = slot.set(view); // set once
        })
        .await;
        drop(pinging);
        drop(serving);
        status
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
    // exit code reports whether every hot database got its final sync,
    // then the exec command's.
    if status.shutdown_errors > 0 {
        eprintln!("error: {} final syncs failed", status.shutdown_errors);
        return Ok(ExitCode::FAILURE);
    }
    match app_ended.get() {
        Some(Ok(app)) => Ok(app.exit_code()),
        Some(Err(e)) => Err(anyhow::anyhow!("{e}")),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// `restore-if-db-not-exists` (on every entry with the flag): a path
/// entry's missing database, and every database a directory entry's
/// replica holds that is missing here, are restored before the fleet
/// starts, as `restore-pattern --if-db-not-exists` would. An empty
/// replica is a first start.
async fn restore_missing(cfg: &Config, all: bool) -> Result<()> {
    for d in cfg.dbs.iter().filter(|d| all || d.restore_if_db_not_exists) {
        let Some(replica) = &d.replica else { continue };
        let client = replica
            .open(&ClientPool::default())
            .with_context(|| format!("database {}", d.path.display()))?;
        super::replicate::restore_if_missing(client, &d.path).await?;
    }
    for d in cfg
        .dirs
        .iter()
        .filter(|d| all || d.restore_if_db_not_exists)
    {
        let pool = ClientPool::default();
        let (jobs, _, out_root) = config_jobs(cfg, &d.glob(), None, &pool).await?;
        let (jobs, refused) = restore_fleet::check_paths(jobs);
        if jobs.is_empty() && refused.is_empty() {
            continue;
        }
        let opts = RestoreFleetOptions {
            out_root: out_root.clone(),
            target: RestoreTarget::Latest,
            integrity_check: IntegrityCheck::None,
            parallelism: 8,
            workers: 8,
            force: false,
            if_db_not_exists: true,
            retries: 3,
            dry_run: false,
        };
        let done = restore_fleet::run(jobs, refused, &opts, pool, shutdown_signal()).await?;
        if done.failed() || done.interrupted {
            restore_fleet::summarize(
                &done.outcomes,
                done.total,
                done.elapsed,
                false,
                &Default::default(),
            );
            bail!(
                "{}: restoring the missing databases before replicating failed",
                d.dir.display()
            );
        }
        // Its journal served this run only: a database deleted later must
        // be restored again at the next start, not skipped as done.
        let journal = out_root.join(restore_fleet::JOURNAL_NAME);
        if let Err(e) = std::fs::remove_file(&journal)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(anyhow::anyhow!("remove {}: {e}", journal.display()));
        }
        tracing::info!(dir = %d.dir.display(), databases = done.total, "restored missing databases before replicating");
    }
    Ok(())
}

/// The whole fleet healthy, for the heartbeat: every database found has
/// its first backup (nothing queued), none has failed, no write has
/// waited longer than `within` to reach its replica, and no sync failed
/// within it.
fn fleet_healthy(view: &fleet::FleetView, within: Duration) -> bool {
    let s = view.status();
    let since = jiff::Timestamp::now() - within;
    s.databases > 0
        && s.queued == 0
        && s.failed == 0
        && s.most_lagging
            .first()
            .is_none_or(|h| h.lag_seconds < within.as_secs_f64())
        && s.recent_errors
            .iter()
            .all(|e| e.at.parse::<jiff::Timestamp>().is_ok_and(|at| at < since))
}

/// Resolves when the fleet should stop: on SIGINT or SIGTERM; with `exec`,
/// when the application exits (the signals go to it). The application
/// starts once the fleet is up and every database found has its first
/// backup in its replica (the backlog is empty); a signal before that
/// stops the fleet without starting it.
async fn until_stopped(
    exec: Option<Vec<String>>,
    ready: tokio::sync::oneshot::Receiver<fleet::FleetView>,
    ended: Arc<std::sync::OnceLock<Result<super::exec::Ended, String>>>,
) {
    let Some(argv) = exec else {
        return shutdown_signal().await;
    };
    let backed_up = async {
        let Ok(view) = ready.await else { return };
        loop {
            if view.status().queued == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    tokio::select! {
        _ = backed_up => {}
        _ = shutdown_signal() => return,
    }
    let r = match super::exec::Application::start(&argv) {
        Ok(mut app) => app.wait().await.map_err(|e| format!("{e:#}")),
        Err(e) => Err(format!("{e:#}")),
    };
    let _ = ended.set(r); // set once
}
