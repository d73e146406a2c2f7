//! `litestreampp restore-pattern`: restores every database that matches a
//! pattern, many at once. The databases come from a config file (each from
//! its configured replica; directory entries by listing their replica) or
//! from the replicas found under a URL such as `s3://bkt/backups/**/*.db`.
//!
//! Each database is restored to a staging name next to its output, its
//! entry appended (fsynced) to the journal in the output directory, then
//! renamed into place: a run started again skips what the journal and the
//! files agree on, and no output path ever holds a partial database.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use globset::{GlobBuilder, GlobMatcher};
use litestreampp_core::client::s3::S3Settings;
use litestreampp_core::client::{ClientPool, FileInfo, ReplicaClient};
use litestreampp_core::discover::{FoundReplica, Layout, find_replicas};
use litestreampp_core::redact::redact_url;
use litestreampp_core::restore::{
    IntegrityCheck, RestoreOptions, RestoreTarget, plan_from_files, plan_restore, restore_with_plan,
};
use litestreampp_core::v3::{self, V3Target};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::{init_logging, runtime};
use crate::flags::RestorePatternArgs;
use crate::fleet::patterns::literal_root;
use crate::settings::load_config;
use crate::settings::{ReplicaConfig, ReplicaLocation};

/// The journal's file name in the output directory.
pub const JOURNAL_NAME: &str = ".litestreampp-restore.journal";

/// Where one database's replica is.
#[derive(Debug, Clone)]
enum Source {
    /// A config file's entry.
    Config(Box<ReplicaConfig>),
    /// Found under a replica URL's prefix.
    Found(ReplicaLocation),
}

/// One database to restore.
#[derive(Debug, Clone)]
struct Job {
    /// The replica, for messages and the report (no credentials).
    source: String,
    /// The output path relative to the output root: the journal's key.
    rel: PathBuf,
    output: PathBuf,
    replica: Source,
    /// Its LTX files, when a listing found them (else listed at restore).
    files: Option<Vec<FileInfo>>,
    /// It has a Litestream 0.3 tree (or may have: unknown until listed).
    v3: bool,
}

/// How one database ended; written to the report in lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Restored,
    Skipped,
    Failed,
    /// A dry run's plan.
    Planned,
}

/// How one database ended.
#[derive(Debug, Clone, Serialize)]
struct Outcome {
    source: String,
    output: String,
    status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    txid: Option<String>,
    files: usize,
    bytes: u64,
    attempts: u32,
    duration_ms: u64,
}

impl Outcome {
    fn new(job: &Job, status: Status) -> Outcome {
        Outcome::of(job.source.clone(), &job.output, status)
    }

    fn of(source: String, output: &Path, status: Status) -> Outcome {
        Outcome {
            source,
            output: output.display().to_string(),
            status,
            reason: None,
            error: None,
            txid: None,
            files: 0,
            bytes: 0,
            attempts: 0,
            duration_ms: 0,
        }
    }
}

/// A failure of one attempt, and whether another attempt may succeed.
struct Failure {
    error: anyhow::Error,
    retry: bool,
}

impl Failure {
    fn permanent(error: anyhow::Error) -> Failure {
        Failure {
            error,
            retry: false,
        }
    }
}

impl From<litestreampp_core::Error> for Failure {
    fn from(e: litestreampp_core::Error) -> Failure {
        use litestreampp_core::Error as E;
        let retry = !matches!(
            e,
            E::InvalidInput(_) | E::NotFound { .. } | E::TxNotAvailable { .. } | E::Cancelled
        );
        Failure {
            error: anyhow!(e),
            retry,
        }
    }
}

/// A journal line: one database restored and renamed into place.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct JournalEntry {
    path: String,
    target: String,
    txid: String,
    size: u64,
    mtime_ns: i128,
}

/// Appends journal lines, fsyncing once per batch of waiting writers.
#[derive(Clone)]
struct Journal {
    tx: mpsc::UnboundedSender<(String, oneshot::Sender<std::io::Result<()>>)>,
}

impl Journal {
    fn open(path: &Path) -> Result<Journal> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("open the journal {}", path.display()))?;
        // A new journal's name must survive a crash with the outputs it
        // will describe.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            litestreampp_core::fsutil::fsync_dir(dir)?;
        }
        let (tx, mut rx) =
            mpsc::unbounded_channel::<(String, oneshot::Sender<std::io::Result<()>>)>();
        let file = Arc::new(file); // one writer task: no lock needed
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while rx.recv_many(&mut batch, 256).await > 0 {
                let lines: String = batch.iter().map(|(l, _)| l.as_str()).collect();
                let f = file.clone();
                let r = tokio::task::spawn_blocking(move || {
                    (&*f).write_all(lines.as_bytes())?;
                    f.sync_data()
                })
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
                for (_, ack) in batch.drain(..) {
                    let _ = ack.send(match &r {
                        Ok(()) => Ok(()),
                        Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
                    });
                }
            }
        });
        Ok(Journal { tx })
    }

    /// Appends `e`; returns once it is on disk.
    async fn append(&self, e: &JournalEntry) -> Result<()> {
        let mut line = serde_json::to_string(e)?;
        line.push('\n');
        let (ack, done) = oneshot::channel();
        self.tx
            .send((line, ack))
            .map_err(|_| anyhow!("the journal writer stopped"))?;
        done.await
            .map_err(|_| anyhow!("the journal writer stopped"))?
            .context("append to the restore journal")
    }
}

/// Reads a journal: the last entry per path. Lines that do not parse (a
/// write cut by a crash) are ignored.
fn read_journal(path: &Path) -> HashMap<String, JournalEntry> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<JournalEntry>(l).ok())
        .map(|e| (e.path.clone(), e))
        .collect()
}

fn mtime_ns(md: &std::fs::Metadata) -> i128 {
    use std::os::unix::fs::MetadataExt;
    i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec())
}

/// True if the journal says `rel` was restored for `target` and the file
/// there is still the one it wrote.
fn journaled(
    journal: &HashMap<String, JournalEntry>,
    rel: &str,
    output: &Path,
    target: &str,
) -> bool {
    let Some(e) = journal.get(rel) else {
        return false;
    };
    let Ok(md) = std::fs::symlink_metadata(output) else {
        return false;
    };
    e.target == target && md.is_file() && md.len() == e.size && mtime_ns(&md) == e.mtime_ns
}

/// `rel` (from a replica listing or a config) as a relative path of plain
/// components: no `..`, no root, nothing empty.
fn safe_rel(rel: &str) -> Result<PathBuf> {
    let bad = rel.is_empty()
        || rel.starts_with('/')
        || rel.contains('\0')
        || rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    let p = PathBuf::from(rel);
    if bad || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        bail!(
            "refusing replica path {rel:?}: it must stay inside the output directory (no '..', no absolute path)"
        );
    }
    Ok(p)
}

/// Creates the parents of `root/rel`, refusing any symbolic link on the way
/// (or at the output itself) that leads outside `root`; returns the output
/// path.
fn prepare_output(root: &Path, rel: &Path) -> Result<PathBuf> {
    litestreampp_core::fsutil::create_dir_all(root)?;
    let canon_root = root
        .canonicalize()
        .with_context(|| format!("resolve output directory {}", root.display()))?;
    let mut cur = root.to_path_buf();
    let n = rel.components().count();
    for (i, c) in rel.components().enumerate() {
        cur.push(c);
        let md = match std::fs::symlink_metadata(&cur) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if i + 1 < n {
                    litestreampp_core::fsutil::create_dir_all(&cur)?;
                }
                continue;
            }
            Err(e) => return Err(anyhow!(e).context(format!("inspect {}", cur.display()))),
        };
        if md.file_type().is_symlink() {
            let target = cur.canonicalize().ok();
            if !target.as_ref().is_some_and(|t| t.starts_with(&canon_root)) {
                bail!(
                    "refusing to restore through {}: a symbolic link that points outside the output directory {}",
                    cur.display(),
                    root.display()
                );
            }
        } else if i + 1 < n && !md.is_dir() {
            bail!("cannot restore under {}: not a directory", cur.display());
        }
    }
    Ok(cur)
}

/// The literal directory and the matcher of a pattern's path part.
fn compile(pattern: &str) -> Result<GlobMatcher> {
    Ok(GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .with_context(|| format!("pattern {pattern:?}"))?
        .compile_matcher())
}

/// Splits `s3://bkt/a/**/*.db?query` / `file:///a/**/*.db` into scheme,
/// bucket, path and query.
fn split_url(url: &str) -> Result<(&str, &str, &str, &str)> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        anyhow!(
            "{}: expected s3://BUCKET/GLOB or file:///GLOB",
            redact_url(url)
        )
    })?;
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    Ok((scheme, host, path, query))
}

/// Jobs for the replicas under a URL pattern.
async fn url_jobs(url: &str, out: &Path, pool: &ClientPool) -> Result<(Vec<Job>, Listing)> {
    let (scheme, bucket, path, query) = split_url(url)?;
    let redacted = redact_url(url);
    match scheme {
        "s3" => {
            if bucket.is_empty() {
                bail!("{redacted}: bucket required");
            }
            let glob = compile(path.trim_start_matches('/'))?;
            let root = literal_root(&format!("/{}", path.trim_start_matches('/')));
            let root = root.to_string_lossy().trim_start_matches('/').to_string();
            let base = if query.is_empty() {
                format!("s3://{bucket}")
            } else {
                format!("s3://{bucket}?{query}")
            };
            let mut settings = S3Settings::from_url(&base).map_err(|e| anyhow!(e))?;
            settings.path = root.clone();
            let client = ReplicaLocation::S3(Box::new(settings.clone())).open(pool)?;
            let found = list(client.as_ref(), Layout::LevelHex).await?;
            let mut jobs = Vec::new();
            let mut listing = Listing::new(&found);
            for r in found.replicas {
                let full = join(&root, &r.path);
                if !glob.is_match(&full) {
                    listing.unmatched += 1;
                    continue;
                }
                let rel = rel_name(&r.path, &root);
                let mut s = settings.clone();
                s.path = full.clone();
                jobs.push(job(
                    format!("s3://{bucket}/{full}"),
                    &rel,
                    out,
                    Source::Found(ReplicaLocation::S3(Box::new(s))),
                    r,
                ));
            }
            Ok((jobs, listing))
        }
        "file" => {
            if !bucket.is_empty() && bucket != "localhost" {
                bail!("{redacted}: expected file:///absolute/glob");
            }
            let pattern = format!("/{}", path.trim_start_matches('/'));
            let glob = compile(&pattern)?;
            let root = literal_root(&pattern);
            let client = ReplicaLocation::File(root.clone()).open(pool)?;
            let found = list(client.as_ref(), Layout::LtxDir).await?;
            let mut jobs = Vec::new();
            let mut listing = Listing::new(&found);
            let root_s = root.to_string_lossy().to_string();
            for r in found.replicas {
                let full = root.join(&r.path);
                if !glob.is_match(&full) {
                    listing.unmatched += 1;
                    continue;
                }
                let rel = rel_name(&r.path, &root_s);
                jobs.push(job(
                    format!("file://{}", full.display()),
                    &rel,
                    out,
                    Source::Found(ReplicaLocation::File(full)),
                    r,
                ));
            }
            Ok((jobs, listing))
        }
        other => bail!("{redacted}: unsupported scheme {other:?} (supported: s3, file)"),
    }
}

fn join(root: &str, rel: &str) -> String {
    match (root.is_empty(), rel.is_empty()) {
        (true, _) => rel.to_string(),
        (false, true) => root.to_string(),
        (false, false) => format!("{root}/{rel}"),
    }
}

/// The output name of a replica at `path` under `root`: the path, or the
/// root's last component when the root itself is the replica.
fn rel_name(path: &str, root: &str) -> String {
    if path.is_empty() {
        root.rsplit('/').next().unwrap_or("").to_string()
    } else {
        path.to_string()
    }
}

fn job(source: String, rel: &str, out: &Path, replica: Source, r: FoundReplica) -> Job {
    Job {
        source,
        rel: PathBuf::from(rel),
        output: out.join(rel),
        replica,
        files: Some(r.files),
        v3: r.v3,
    }
}

/// What a listing found besides the jobs.
#[derive(Debug, Default)]
struct Listing {
    replicas: usize,
    unmatched: usize,
    unrecognised: Vec<String>,
}

impl Listing {
    fn new(found: &litestreampp_core::discover::Found) -> Listing {
        Listing {
            replicas: found.replicas.len(),
            unmatched: 0,
            unrecognised: found.unrecognised.clone(),
        }
    }
}

async fn list(
    client: &dyn ReplicaClient,
    layout: Layout,
) -> Result<litestreampp_core::discover::Found> {
    let entries = client
        .list_tree()
        .await
        .with_context(|| format!("list {}", client.location()))?;
    Ok(find_replicas(&entries, layout))
}

/// Jobs for the databases of a config file whose paths match `pattern`.
async fn config_jobs(
    args: &RestorePatternArgs,
    pool: &ClientPool,
) -> Result<(Vec<Job>, Listing, PathBuf)> {
    let cfg = load_config(&args.config)?;
    let pattern = crate::settings::expand_path(&args.pattern)?
        .to_string_lossy()
        .to_string();
    let glob = compile(&pattern)?;
    let root = literal_root(&pattern);
    let out_root = args.output_dir.clone().unwrap_or_else(|| root.clone());
    let mut jobs = Vec::new();
    let mut listing = Listing::default();
    let rel_of = |p: &Path| -> Result<PathBuf> {
        Ok(p.strip_prefix(&root)
            .map_err(|_| anyhow!("{} is not under {}", p.display(), root.display()))?
            .to_path_buf())
    };
    for db in &cfg.dbs {
        let Some(replica) = &db.replica else { continue };
        listing.replicas += 1;
        if !glob.is_match(&db.path) {
            listing.unmatched += 1;
            continue;
        }
        let rel = rel_of(&db.path)?;
        jobs.push(Job {
            source: replica.describe(),
            output: match &args.output_dir {
                Some(o) => o.join(&rel),
                None => db.path.clone(),
            },
            rel,
            replica: Source::Config(Box::new(replica.clone())),
            files: None,
            v3: true,
        });
    }
    for dir in &cfg.dirs {
        let client = dir.replica.open(pool)?;
        let layout = if dir.replica.kind == "s3" {
            Layout::LevelHex
        } else {
            Layout::LtxDir
        };
        let found = list(client.as_ref(), layout).await?;
        listing.replicas += found.replicas.len();
        listing
            .unrecognised
            .extend(found.unrecognised.iter().cloned());
        for r in found.replicas {
            let local = match safe_rel(&r.path) {
                Ok(sub) => dir.dir.join(sub),
                Err(_) => {
                    // Refused with the others before anything is written.
                    jobs.push(Job {
                        source: format!("{} ({})", r.path, dir.replica.describe()),
                        rel: PathBuf::from(&r.path),
                        output: out_root.join(&r.path),
                        replica: Source::Config(Box::new(dir.replica.clone())),
                        files: None,
                        v3: false,
                    });
                    continue;
                }
            };
            if !glob.is_match(&local) {
                listing.unmatched += 1;
                continue;
            }
            let replica = dir.replica.with_relative_path(&r.path)?;
            let rel = rel_of(&local)?;
            jobs.push(Job {
                source: replica.describe(),
                output: match &args.output_dir {
                    Some(o) => o.join(&rel),
                    None => local,
                },
                rel,
                replica: Source::Config(Box::new(replica)),
                files: Some(r.files),
                v3: r.v3,
            });
        }
    }
    Ok((jobs, listing, out_root))
}

/// What every job shares.
struct Ctx {
    pool: ClientPool,
    out_root: PathBuf,
    target: RestoreTarget,
    target_key: String,
    integrity_check: IntegrityCheck,
    parallelism: usize,
    force: bool,
    if_db_not_exists: bool,
    retries: u32,
    journal: Option<Journal>,
    done_before: HashMap<String, JournalEntry>,
    stop: AtomicBool,
    progress: Progress,
}

impl Ctx {
    fn client(&self, job: &Job) -> Result<Arc<dyn ReplicaClient>> {
        match &job.replica {
            Source::Config(r) => r.open(&self.pool),
            Source::Found(l) => l.open(&self.pool),
        }
    }
}

/// Counters for the progress display.
#[derive(Default)]
struct Progress {
    done: AtomicUsize,
    failed: AtomicUsize,
    bytes: AtomicU64,
}

/// What a restore (or its plan) found.
struct Restored {
    txid: String,
    files: usize,
    bytes: u64,
}

/// Restores one database, retrying with exponential backoff.
async fn run_job(job: Job, ctx: Arc<Ctx>, dry_run: bool) -> Outcome {
    let started = Instant::now();
    let rel_key = job.rel.to_string_lossy().to_string();
    let mut out = Outcome::new(&job, Status::Restored);
    let finish = |mut out: Outcome| {
        out.duration_ms = started.elapsed().as_millis() as u64;
        ctx.progress.done.fetch_add(1, Ordering::Relaxed);
        ctx.progress.bytes.fetch_add(out.bytes, Ordering::Relaxed);
        if out.status == Status::Failed {
            ctx.progress.failed.fetch_add(1, Ordering::Relaxed);
        }
        out
    };
    // --force restores everything again; otherwise the journal says what
    // an earlier run already finished.
    if !ctx.force && journaled(&ctx.done_before, &rel_key, &job.output, &ctx.target_key) {
        out.status = Status::Skipped;
        out.reason = Some("already restored (journal)".into());
        out.txid = ctx.done_before.get(&rel_key).map(|e| e.txid.clone());
        return finish(out);
    }
    let mut delay = Duration::from_millis(250);
    loop {
        out.attempts += 1;
        let r = if dry_run {
            plan_job(&job, &ctx).await
        } else {
            restore_job(&job, &ctx).await
        };
        match r {
            Ok(Some(r)) => {
                out.status = if dry_run {
                    Status::Planned
                } else {
                    Status::Restored
                };
                out.txid = Some(r.txid);
                out.files = r.files;
                out.bytes = r.bytes;
                return finish(out);
            }
            Ok(None) => {
                out.status = Status::Skipped;
                out.reason = Some("output exists (--if-db-not-exists)".into());
                return finish(out);
            }
            Err(f) => {
                let last =
                    !f.retry || out.attempts > ctx.retries || ctx.stop.load(Ordering::Relaxed);
                if last {
                    out.status = Status::Failed;
                    out.error = Some(format!("{:#}", f.error));
                    tracing::error!(db = %job.source, output = %job.output.display(), error = %format!("{:#}", f.error), "restore failed");
                    return finish(out);
                }
                tracing::warn!(db = %job.source, attempt = out.attempts, error = %format!("{:#}", f.error), "restore failed; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(8));
            }
        }
    }
}

/// The LTX files of a job: from the listing, else one listing now.
async fn job_files(job: &Job, client: &dyn ReplicaClient) -> Result<Vec<FileInfo>, Failure> {
    match &job.files {
        Some(f) => Ok(f.clone()),
        None => Ok(client.all_ltx_files().await?),
    }
}

/// The plan of an LTX replica (None when the replica has only a
/// Litestream 0.3 tree, or nothing that fits and a 0.3 tree).
async fn ltx_plan(
    job: &Job,
    ctx: &Ctx,
    client: &dyn ReplicaClient,
) -> Result<Option<litestreampp_core::restore::RestorePlan>, Failure> {
    let files = job_files(job, client).await?;
    let planned = if files.is_empty() {
        Err(litestreampp_core::Error::NotFound {
            what: format!("replica {}: no backup files", client.location()),
        })
    } else if matches!(ctx.target, RestoreTarget::Timestamp(_)) {
        // Listings give upload times; the plan needs exact ones.
        plan_restore(client, ctx.target).await
    } else {
        plan_from_files(&client.location(), files, ctx.target)
    };
    let e = match planned {
        Ok(p) => return Ok(Some(p)),
        Err(e) => e,
    };
    let nothing_fits =
        e.is_not_found() || matches!(e, litestreampp_core::Error::TxNotAvailable { .. });
    if nothing_fits && job.v3 {
        let generations = v3::generations(client).await.unwrap_or_default();
        if !generations.is_empty() {
            return Ok(None);
        }
    }
    Err(e.into())
}

fn v3_target(target: RestoreTarget) -> V3Target {
    V3Target {
        timestamp: match target {
            RestoreTarget::Timestamp(t) => Some(t),
            _ => None,
        },
        ..V3Target::default()
    }
}

async fn plan_job(job: &Job, ctx: &Ctx) -> Result<Option<Restored>, Failure> {
    if output_taken(ctx, &ctx.out_root.join(&job.rel))? {
        return Ok(None);
    }
    let client = ctx.client(job).map_err(Failure::permanent)?;
    match ltx_plan(job, ctx, client.as_ref()).await? {
        Some(p) => Ok(Some(Restored {
            txid: p.txid.to_string(),
            files: p.files.len(),
            bytes: p.total_bytes(),
        })),
        None => {
            let p = v3::plan(client.as_ref(), &v3_target(ctx.target)).await?;
            Ok(Some(Restored {
                txid: format!(
                    "generation {} index {:08x}",
                    p.snapshot.generation,
                    p.segments.last().map_or(p.snapshot.index, |s| s.index)
                ),
                files: 1 + p.segments.len(),
                bytes: p.snapshot.size + p.segments.iter().map(|s| s.size).sum::<u64>(),
            }))
        }
    }
}

/// True if `output` exists and is to be skipped (`--if-db-not-exists`);
/// an error if it exists and may not be replaced (no `--force`).
fn output_taken(ctx: &Ctx, output: &Path) -> Result<bool, Failure> {
    if std::fs::symlink_metadata(output).is_err() {
        return Ok(false);
    }
    if ctx.if_db_not_exists {
        return Ok(true);
    }
    if !ctx.force {
        return Err(Failure::permanent(anyhow!(
            "output already exists: {} (use --force to replace it, --if-db-not-exists to skip it)",
            output.display()
        )));
    }
    Ok(false)
}

/// One attempt: restore to a staging name, journal, rename into place.
async fn restore_job(job: &Job, ctx: &Ctx) -> Result<Option<Restored>, Failure> {
    let output = prepare_output(&ctx.out_root, &job.rel).map_err(Failure::permanent)?;
    if output_taken(ctx, &output)? {
        return Ok(None);
    }
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let staging = output.with_file_name(format!(".{name}.restoring"));
    let opts = RestoreOptions {
        output: staging.clone(),
        target: ctx.target,
        overwrite: true,
        integrity_check: ctx.integrity_check,
        parallelism: ctx.parallelism,
    };
    let client = ctx.client(job).map_err(Failure::permanent)?;
    let restored = match ltx_plan(job, ctx, client.as_ref()).await? {
        Some(plan) => {
            let s = restore_with_plan(client.clone(), &opts, Some(plan)).await?;
            Restored {
                txid: s.txid.to_string(),
                files: s.files,
                bytes: s.bytes_read,
            }
        }
        None => {
            let s = v3::restore(client.clone(), &opts, &v3_target(ctx.target)).await?;
            Restored {
                txid: String::new(),
                files: s.files,
                bytes: s.bytes_read,
            }
        }
    };
    let md = std::fs::metadata(&staging)
        .with_context(|| format!("stat {}", staging.display()))
        .map_err(Failure::permanent)?;
    if let Some(j) = &ctx.journal {
        j.append(&JournalEntry {
            path: job.rel.to_string_lossy().to_string(),
            target: ctx.target_key.clone(),
            txid: restored.txid.clone(),
            size: md.len(),
            mtime_ns: mtime_ns(&md),
        })
        .await
        .map_err(Failure::permanent)?;
    }
    std::fs::rename(&staging, &output)
        .with_context(|| format!("rename {} to {}", staging.display(), output.display()))
        .map_err(Failure::permanent)?;
    if let Some(dir) = output.parent() {
        litestreampp_core::fsutil::fsync_dir(dir)?;
    }
    Ok(Some(restored))
}

/// `12.3 MB`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Shows progress until `stop`: a bar on a terminal, else a line every
/// `every`.
async fn show_progress(
    ctx: Arc<Ctx>,
    total: usize,
    every: Duration,
    stop: Arc<tokio::sync::Notify>,
) {
    let started = Instant::now();
    let line = |ctx: &Ctx| {
        let done = ctx.progress.done.load(Ordering::Relaxed);
        let failed = ctx.progress.failed.load(Ordering::Relaxed);
        let bytes = ctx.progress.bytes.load(Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64().max(0.001);
        let rate = done as f64 / secs;
        let eta = if rate > 0.0 {
            format!("{:.0}s", (total - done.min(total)) as f64 / rate)
        } else {
            "?".into()
        };
        (
            done,
            format!(
                "{failed} failed, {}, {rate:.0} databases/s, ETA {eta}",
                human_bytes(bytes)
            ),
        )
    };
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(total as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{wide_bar}] {pos}/{len} databases, {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        loop {
            let (done, msg) = line(&ctx);
            bar.set_position(done as u64);
            bar.set_message(msg);
            tokio::select! {
                _ = stop.notified() => break,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        bar.finish_and_clear();
        return;
    }
    loop {
        tokio::select! {
            _ = stop.notified() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let (done, msg) = line(&ctx);
        eprintln!("restore-pattern: {done}/{total} databases, {msg}");
    }
}

pub fn run(args: RestorePatternArgs) -> Result<ExitCode> {
    init_logging(args.log_level.as_deref());
    let target = match (&args.txid, &args.timestamp) {
        (Some(_), Some(_)) => bail!("cannot specify both --txid and --timestamp"),
        (Some(t), None) => RestoreTarget::TxId(
            t.parse::<litestreampp_core::TxId>()
                .map_err(|e| anyhow!("--txid: {e}"))?,
        ),
        (None, Some(ts)) => {
            RestoreTarget::Timestamp(super::restore::parse_timestamp(ts, jiff::Timestamp::now())?)
        }
        (None, None) => RestoreTarget::Latest,
    };
    let target_key = match target {
        RestoreTarget::Latest => "latest".to_string(),
        RestoreTarget::TxId(t) => format!("txid:{t}"),
        RestoreTarget::Timestamp(t) => format!("timestamp:{t}"),
    };
    let integrity_check: IntegrityCheck = args.integrity_check.parse()?;
    if args.workers == 0 {
        bail!("--workers must be at least 1");
    }
    let is_url = crate::settings::is_url(&args.pattern);
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
            config_jobs(&args, &pool).await?
        };
        for u in listing.unrecognised.iter().take(20) {
            eprintln!("warning: not a recognised replica layout, not restored: {u}");
        }
        if listing.unrecognised.len() > 20 {
            eprintln!(
                "warning: {} more files in no recognised replica layout",
                listing.unrecognised.len() - 20
            );
        }
        // Paths from listings are checked before anything is written.
        let mut refused = Vec::new();
        let mut checked = Vec::new();
        for j in jobs {
            match safe_rel(&j.rel.to_string_lossy()) {
                Ok(_) => checked.push(j),
                Err(e) => refused.push((j, e)),
            }
        }
        let jobs = checked;
        if jobs.is_empty() && refused.is_empty() {
            bail!(
                "no replica matches {} ({} found, {} did not match)",
                redact_url(&args.pattern),
                listing.replicas,
                listing.unmatched
            );
        }
        let journal_path = out_root.join(JOURNAL_NAME);
        let (journal, done_before) = if args.dry_run {
            (None, read_journal(&journal_path))
        } else {
            litestreampp_core::fsutil::create_dir_all(&out_root)?;
            (
                Some(Journal::open(&journal_path)?),
                read_journal(&journal_path),
            )
        };
        let ctx = Arc::new(Ctx {
            pool,
            out_root,
            target,
            target_key,
            integrity_check,
            parallelism: args.parallelism.max(1),
            force: args.force,
            if_db_not_exists: args.if_db_not_exists,
            retries: args.retries,
            journal,
            done_before,
            stop: AtomicBool::new(false),
            progress: Progress::default(),
        });
        let total = jobs.len();
        let started = Instant::now();
        let stop_progress = Arc::new(tokio::sync::Notify::new());
        let progress = tokio::spawn(show_progress(
            ctx.clone(),
            total,
            Duration::from_secs(5),
            stop_progress.clone(),
        ));
        let mut outcomes: Vec<Outcome> = refused
            .into_iter()
            .map(|(j, e)| {
                let mut o = Outcome::new(&j, Status::Failed);
                o.error = Some(format!("{e:#}"));
                eprintln!("error: {}: {e:#}", j.source);
                o
            })
            .collect();
        let work = {
            use futures::StreamExt;
            let ctx = ctx.clone();
            let dry_run = args.dry_run;
            futures::stream::iter(jobs)
                .map(move |j| {
                    let ctx = ctx.clone();
                    async move {
                        if ctx.stop.load(Ordering::Relaxed) {
                            return None;
                        }
                        let (source, output) = (j.source.clone(), j.output.clone());
                        match tokio::spawn(run_job(j, ctx.clone(), dry_run)).await {
                            Ok(o) => Some(o),
                            // A panic is this database's failure, not the run's.
                            Err(e) => {
                                ctx.progress.failed.fetch_add(1, Ordering::Relaxed);
                                let mut o = Outcome::of(source, &output, Status::Failed);
                                o.error = Some(format!("restore task failed: {e}"));
                                o.attempts = 1;
                                Some(o)
                            }
                        }
                    }
                })
                .buffer_unordered(args.workers)
                .filter_map(|o| async move { o })
                .collect::<Vec<Outcome>>()
        };
        tokio::pin!(work);
        let interrupted = tokio::select! {
            done = &mut work => { outcomes.extend(done); false }
            _ = super::shutdown_signal() => {
                ctx.stop.store(true, Ordering::Relaxed);
                eprintln!("interrupted: finishing the restores under way; run again to resume");
                outcomes.extend(work.await);
                true
            }
        };
        stop_progress.notify_one();
        let _ = progress.await;
        outcomes.sort_by(|a, b| a.output.cmp(&b.output));
        let elapsed = started.elapsed();
        if let Some(path) = &args.report {
            let body = serde_json::to_string_pretty(&outcomes)?;
            litestreampp_core::fsutil::write_atomic(path, |w| w.write_all(body.as_bytes()))
                .with_context(|| format!("write report {}", path.display()))?;
        }
        summarize(&outcomes, total, elapsed, args.dry_run, &listing);
        let failed = outcomes.iter().any(|o| o.status == Status::Failed);
        Ok(if failed || interrupted {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    })
}

fn summarize(
    outcomes: &[Outcome],
    total: usize,
    elapsed: Duration,
    dry_run: bool,
    listing: &Listing,
) {
    let count = |s: Status| outcomes.iter().filter(|o| o.status == s).count();
    let bytes: u64 = outcomes.iter().map(|o| o.bytes).sum();
    if dry_run {
        for o in outcomes.iter().filter(|o| o.status == Status::Planned) {
            println!(
                "{} -> {}: {} files, {} bytes, TXID {}",
                o.source,
                o.output,
                o.files,
                o.bytes,
                o.txid.as_deref().unwrap_or("-")
            );
        }
        for o in outcomes.iter().filter(|o| o.status == Status::Skipped) {
            println!(
                "{} -> {}: skipped ({})",
                o.source,
                o.output,
                o.reason.as_deref().unwrap_or("")
            );
        }
        println!(
            "dry run: {} databases would be restored ({} files, {}), {} skipped, {} failed; {} replicas found, {} did not match",
            count(Status::Planned),
            outcomes.iter().map(|o| o.files).sum::<usize>(),
            human_bytes(bytes),
            count(Status::Skipped),
            count(Status::Failed),
            listing.replicas,
            listing.unmatched
        );
    }
    let failed: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.status == Status::Failed)
        .collect();
    for o in failed.iter().take(20) {
        eprintln!(
            "failed: {} -> {}: {}",
            o.source,
            o.output,
            o.error.as_deref().unwrap_or("")
        );
    }
    if failed.len() > 20 {
        eprintln!("... and {} more failures (see --report)", failed.len() - 20);
    }
    if !dry_run {
        let secs = elapsed.as_secs_f64().max(0.001);
        eprintln!(
            "restore-pattern: {} restored, {} skipped, {} failed of {total} databases; {} in {secs:.1}s ({:.0} databases/s)",
            count(Status::Restored),
            count(Status::Skipped),
            failed.len(),
            human_bytes(bytes),
            count(Status::Restored) as f64 / secs
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_stay_inside() {
        assert!(safe_rel("t1/app.db").is_ok());
        for bad in [
            "../x.db",
            "/etc/x.db",
            "a/../../x.db",
            "a//b.db",
            "",
            "./a.db",
            "a/.",
        ] {
            let e = safe_rel(bad).unwrap_err().to_string();
            assert!(e.contains("refusing"), "{bad}: {e}");
        }
    }

    #[test]
    fn symlinks_out_of_the_output_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        let outside = d.path().join("outside");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, out.join("evil")).unwrap();
        std::fs::create_dir_all(out.join("real")).unwrap();
        std::os::unix::fs::symlink(out.join("real"), out.join("fine")).unwrap();
        let e = prepare_output(&out, Path::new("evil/x.db")).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(prepare_output(&out, Path::new("fine/x.db")).is_ok());
        let p = prepare_output(&out, Path::new("new/dir/x.db")).unwrap();
        assert_eq!(p, out.join("new/dir/x.db"));
        assert!(out.join("new/dir").is_dir());
        std::os::unix::fs::symlink(outside.join("x.db"), out.join("link.db")).unwrap();
        assert!(prepare_output(&out, Path::new("link.db")).is_err());
    }

    #[test]
    fn urls_split_into_parts() {
        assert_eq!(
            split_url("s3://bkt/a/**/*.db?endpoint=http://x").unwrap(),
            ("s3", "bkt", "a/**/*.db", "endpoint=http://x")
        );
        assert_eq!(
            split_url("file:///r/**/*.db").unwrap(),
            ("file", "", "r/**/*.db", "")
        );
        assert_eq!(rel_name("", "backups/one.db"), "one.db");
        assert_eq!(rel_name("t/a.db", "backups"), "t/a.db");
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("r", ""), "r");
    }

    #[test]
    fn journal_entries_must_match_the_file() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.db");
        std::fs::write(&f, b"data").unwrap();
        let md = std::fs::metadata(&f).unwrap();
        let mut j = HashMap::new();
        j.insert(
            "a.db".to_string(),
            JournalEntry {
                path: "a.db".into(),
                target: "latest".into(),
                txid: "1".into(),
                size: md.len(),
                mtime_ns: mtime_ns(&md),
            },
        );
        assert!(journaled(&j, "a.db", &f, "latest"));
        assert!(!journaled(&j, "a.db", &f, "txid:0000000000000002"));
        std::fs::write(&f, b"other data").unwrap();
        assert!(!journaled(&j, "a.db", &f, "latest"));
        assert!(!journaled(&j, "b.db", &f, "latest"));
    }
}
