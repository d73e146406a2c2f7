//! Command-line definitions. Each flag is defined once here; that one
//! definition drives parsing and `--help`. Litestream's users type Go-style
//! single-dash long flags (`-config x.yml`), so those are rewritten to
//! `--config` before parsing, using the same definitions.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};

use crate::cmd;

/// Replicate SQLite databases to object storage and restore them;
/// Litestream 0.5-compatible.
#[derive(Debug, Parser)]
#[command(name = "litestreampp", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replicate one database (DB_PATH REPLICA_URL) or every database of a config file.
    Replicate(ReplicateArgs),
    /// Restore a database from its replica.
    Restore(RestoreArgs),
    /// Restore every database matching a pattern, in parallel: the
    /// databases of a config file, or the replicas under a URL
    /// (s3://bucket/backups/**/*.db, file:///backups/**/*.db).
    RestorePattern(RestorePatternArgs),
    /// List the LTX files of a replica.
    Ltx(LtxArgs),
    /// The fleet: every database matching --pattern (or the config's
    /// directory entries), each replicated to its own replica.
    Run(RunArgs),
    /// List the databases of a config file.
    Databases(ConfigArgs),
    /// Show a running fleet: databases per tier, the most lagging, errors.
    Status(StatusArgs),
    /// Print the version.
    Version,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// Config file (default: $LITESTREAM_CONFIG or /etc/litestream.yml).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Do not expand $VARIABLES in the config file.
    #[arg(long)]
    pub no_expand_env: bool,
}

#[derive(Debug, clap::Args)]
pub struct ReplicateArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Sync once, upload, and exit.
    #[arg(long)]
    pub once: bool,
    /// Log level: trace, debug, info, warn, error.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Coalescing window between syncs (Go duration, e.g. 1s, 100ms).
    #[arg(long, value_name = "DURATION")]
    pub sync_interval: Option<String>,
    /// Database to replicate (instead of a config file).
    pub db_path: Option<String>,
    /// Replica URL, e.g. file:///backups/db.
    pub replica_url: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Output path (default: the database path from the config).
    #[arg(short = 'o', value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Restore to this transaction ID (16 hex digits).
    #[arg(long, value_name = "TXID")]
    pub txid: Option<String>,
    /// Restore to the state at this time: RFC 3339 (2026-01-02T15:04:05Z)
    /// or a duration before now (-5m, -1h30m).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub timestamp: Option<String>,
    /// Litestream 0.3 replicas: restore from this generation.
    #[arg(long, value_name = "ID")]
    pub generation: Option<String>,
    /// Litestream 0.3 replicas: apply WAL files up to this index (hex,
    /// inclusive; needs -generation).
    #[arg(long, value_name = "INDEX")]
    pub index: Option<String>,
    /// Range reads in flight at once.
    #[arg(long, default_value_t = 8)]
    pub parallelism: usize,
    /// Exit successfully without restoring if the output already exists.
    #[arg(long)]
    pub if_db_not_exists: bool,
    /// Exit successfully without restoring if the replica has no backup.
    #[arg(long)]
    pub if_replica_exists: bool,
    /// Replace an existing output database.
    #[arg(long)]
    pub force: bool,
    /// Check the restored database: none, quick or full.
    #[arg(long, default_value = "none", value_name = "MODE")]
    pub integrity_check: String,
    /// Print the files the restore would read, and read nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: print JSON.
    #[arg(long)]
    pub json: bool,
    /// Log level: trace, debug, info, warn, error.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Database path (from the config) or replica URL.
    pub target: String,
}

#[derive(Debug, clap::Args)]
pub struct RestorePatternArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Databases restored at once.
    #[arg(long, default_value_t = 10)]
    pub workers: usize,
    /// Restore under this directory, mirroring each database's path
    /// relative to the pattern's root (required for a URL pattern; with a
    /// config file the default is each database's own path).
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Skip databases whose output already exists.
    #[arg(long)]
    pub if_db_not_exists: bool,
    /// Replace existing outputs.
    #[arg(long)]
    pub force: bool,
    /// Restore every database to this transaction ID (16 hex digits).
    #[arg(long, value_name = "TXID")]
    pub txid: Option<String>,
    /// Restore every database to its state at this time: RFC 3339 or a
    /// duration before now (-5m).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub timestamp: Option<String>,
    /// Check each restored database: none, quick or full.
    #[arg(long, default_value = "none", value_name = "MODE")]
    pub integrity_check: String,
    /// Range reads in flight per restore.
    #[arg(long, default_value_t = 8)]
    pub parallelism: usize,
    /// Attempts after the first for a database that fails (exponential
    /// backoff from 250 ms).
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
    /// Print what would be restored, where, how many files and bytes;
    /// write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Write a JSON report (one object per database) to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Log level: trace, debug, info, warn, error.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// A glob over database paths (with a config file) or a replica URL
    /// with a glob (s3://bucket/prefix/**/*.db, file:///dir/**/*.db).
    pub pattern: String,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Databases to replicate: an absolute glob (`*` within a directory,
    /// `**` across directories), e.g. '/data/**/*.db'. Repeatable. Without
    /// it, the config file's `dbs` entries with `dir` are the fleet.
    #[arg(long, value_name = "GLOB", requires = "replica")]
    pub pattern: Vec<String>,
    /// Files to leave out (glob). Repeatable.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Replica URL template: {path} is the database's path under its
    /// pattern's root, {dir} its directory, {name} its file name.
    #[arg(long, value_name = "TEMPLATE", requires = "pattern")]
    pub replica: Option<String>,
    /// Config file with `dbs` directory entries (`dir`, `pattern`,
    /// `recursive`, `replica`) and a `fleet:` section; read when no
    /// --pattern is given (default: $LITESTREAM_CONFIG or
    /// /etc/litestream.yml).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Do not expand $VARIABLES in the config file.
    #[arg(long)]
    pub no_expand_env: bool,
    /// Back every database up once (a sync and upload each) and exit.
    #[arg(long)]
    pub once: bool,
    /// With --once: databases backed up at once.
    #[arg(long, default_value_t = 16)]
    pub workers: usize,
    /// A hot database without writes for this long is demoted (final sync,
    /// checkpoint, released) [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub hot_idle_timeout: Option<String>,
    /// At most this many hot databases (each holds a SQLite connection); a
    /// write to a cold database waits for a slot, the least recently
    /// written hot database is demoted to make one [default: 1000].
    #[arg(long)]
    pub max_hot: Option<usize>,
    /// Backlog (databases not yet backed up): syncs started per second
    /// [default: 500].
    #[arg(long)]
    pub backlog_rate: Option<u32>,
    /// Backlog syncs running at once [default: 8].
    #[arg(long)]
    pub backlog_workers: Option<usize>,
    /// Uploads in flight at once, over all databases [default: 64].
    #[arg(long)]
    pub max_uploads: Option<usize>,
    /// Coalescing window between syncs of a hot database [default: 1s].
    #[arg(long, value_name = "DURATION")]
    pub sync_interval: Option<String>,
    /// Poll the files at this interval instead of inotify (for
    /// filesystems without change notification).
    #[arg(long, value_name = "DURATION")]
    pub poll_interval: Option<String>,
    /// Where the fleet state file lives (default: .litestreampp-fleet in
    /// the first pattern's root).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Metrics, health and status endpoint; "off" disables it (default:
    /// the config's `addr`, else 127.0.0.1:9090).
    #[arg(long, value_name = "ADDR")]
    pub addr: Option<String>,
    /// Log level: trace, debug, info, warn, error.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Address of the running fleet's endpoint.
    #[arg(long, default_value = "127.0.0.1:9090", value_name = "ADDR")]
    pub addr: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct LtxArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Level to list: 0-9 or all.
    #[arg(long, default_value = "all")]
    pub level: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Database path (from the config) or replica URL.
    pub target: String,
}

/// Rewrites Go-style `-name[=value]` into `--name[=value]` when `name` is a
/// long flag of the subcommand being run.
pub fn normalize_args(args: Vec<OsString>) -> Vec<OsString> {
    let root = Cli::command();
    let mut out = Vec::with_capacity(args.len());
    let mut sub: Option<clap::Command> = None;
    let mut rest_is_positional = false;
    for (i, a) in args.into_iter().enumerate() {
        if i == 0 || rest_is_positional {
            out.push(a);
            continue;
        }
        let Some(s) = a.to_str() else {
            out.push(a);
            continue;
        };
        if s == "--" {
            rest_is_positional = true;
            out.push(a);
            continue;
        }
        if sub.is_none() && !s.starts_with('-') {
            sub = root.find_subcommand(s).cloned();
            out.push(a);
            continue;
        }
        if s.len() > 2 && s.starts_with('-') && !s.starts_with("--") {
            let name = s[1..].split('=').next().unwrap_or("");
            let cmd = sub.as_ref().unwrap_or(&root);
            let known = cmd.get_arguments().any(|arg| arg.get_long() == Some(name))
                || matches!(name, "help" | "version");
            if known {
                out.push(OsString::from(format!("-{s}")));
                continue;
            }
        }
        out.push(a);
    }
    out
}

/// Parses `args` (with the program name first) and runs the command.
pub fn run(args: Vec<OsString>) -> Result<ExitCode> {
    let cli = match Cli::try_parse_from(normalize_args(args)) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print(); // nothing better to do if the terminal is gone
            return Ok(ExitCode::from(code));
        }
    };
    match cli.command {
        Command::Replicate(a) => cmd::replicate::run(a),
        Command::Restore(a) => cmd::restore::run(a),
        Command::RestorePattern(a) => cmd::restore_pattern::run(a),
        Command::Ltx(a) => cmd::ltx::run(a),
        Command::Run(a) => cmd::run::run(a),
        Command::Databases(a) => cmd::databases::run(a),
        Command::Status(a) => cmd::status::run(a),
        Command::Version => {
            println!(
                "litestreampp {} (replicas compatible with Litestream 0.5.17)",
                env!("CARGO_PKG_VERSION")
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn norm(v: &[&str]) -> Vec<String> {
        normalize_args(v.iter().map(OsString::from).collect())
            .into_iter()
            .map(|s| s.into_string().unwrap_or_default())
            .collect()
    }

    #[test]
    fn go_style_flags() {
        assert_eq!(
            norm(&[
                "x",
                "restore",
                "-o",
                "out.db",
                "-txid",
                "0000000000000005",
                "-if-db-not-exists",
                "file:///r"
            ]),
            [
                "x",
                "restore",
                "-o",
                "out.db",
                "--txid",
                "0000000000000005",
                "--if-db-not-exists",
                "file:///r"
            ]
        );
        assert_eq!(
            norm(&["x", "replicate", "-config=/a.yml", "-once"]),
            ["x", "replicate", "--config=/a.yml", "--once"]
        );
        // Unknown names and positionals after -- are left alone.
        assert_eq!(
            norm(&["x", "ltx", "-bogus", "--", "-json"]),
            ["x", "ltx", "-bogus", "--", "-json"]
        );
    }
}
