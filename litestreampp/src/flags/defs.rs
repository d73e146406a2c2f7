//! Every subcommand's arguments, each flag defined once.

use std::path::PathBuf;

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
    #[arg(long, conflicts_with = "exec")]
    pub once: bool,
    /// Run this command once replication is running (split like a shell
    /// command line); SIGINT and SIGTERM are passed on to it, and when it
    /// exits a final sync runs and litestreampp exits with its code.
    #[arg(long, value_name = "CMD")]
    pub exec: Option<String>,
    /// With -once: also write a snapshot.
    #[arg(long, requires = "once")]
    pub force_snapshot: bool,
    /// With -once: also delete snapshots past their retention.
    #[arg(long, requires = "once")]
    pub enforce_retention: bool,
    /// Restore each database from its replica first if it does not exist
    /// (an empty replica starts fresh).
    #[arg(long)]
    pub restore_if_db_not_exists: bool,
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
    /// Print JSON: the plan with --dry-run, else a summary of the restore
    /// (logs go to stderr).
    #[arg(long)]
    pub json: bool,
    /// Follow mode: after the restore, keep applying new files from the
    /// replica until stopped (Ctrl-C, SIGTERM), so the output is a read
    /// replica; an existing output resumes at the TXID in OUTPUT-txid.
    #[arg(short = 'f')]
    pub follow: bool,
    /// How often follow mode polls the replica (Go duration, e.g. 1s).
    #[arg(long, value_name = "DURATION")]
    pub follow_interval: Option<String>,
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
    #[arg(long, conflicts_with = "exec")]
    pub once: bool,
    /// Before starting, restore every database the config's directory
    /// entries' replicas hold that is missing here.
    #[arg(long)]
    pub restore_if_db_not_exists: bool,
    /// Run this command once the fleet is up and every database found is
    /// backed up (split like a shell command line); SIGINT and SIGTERM are
    /// passed on to it, and when it exits the fleet stops (final syncs) and
    /// litestreampp exits with its code.
    #[arg(long, value_name = "CMD")]
    pub exec: Option<String>,
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
    /// Databases in rollback-journal mode: convert (switch them to WAL
    /// mode, as Litestream does) or leave (leave them alone and report
    /// them as skipped) [default: convert].
    #[arg(long, value_name = "convert|leave")]
    pub rollback_journal: Option<String>,
    /// While replicas cannot be reached, log the outage (since when, how
    /// many databases and bytes wait) once per interval [default: 1m].
    #[arg(long, value_name = "DURATION")]
    pub outage_report_interval: Option<String>,
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
    /// Config file: show its databases' local state (Litestream's status).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Do not expand $VARIABLES in the config file.
    #[arg(long)]
    pub no_expand_env: bool,
    /// Address of a running fleet's endpoint: show the fleet view
    /// (default 127.0.0.1:9090 when no config file is found).
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["config", "db_path"])]
    pub addr: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Only this database of the config (Litestream's status).
    pub db_path: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct DatabasesArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Only databases whose path matches this glob; directory entries are
    /// listed database by database (the files found under `dir`).
    pub glob: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ResetArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Print what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The database whose local state to reset.
    pub db_path: String,
}

#[derive(Debug, clap::Args)]
pub struct VersionArgs {
    /// Also print the build's details.
    #[arg(long)]
    pub verbose: bool,
}

#[derive(Debug, clap::Args)]
pub struct LtxArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Level to list: 0-9 or all (default 0, as Litestream).
    #[arg(long, default_value = "0")]
    pub level: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Database path (from the config) or replica URL.
    pub target: String,
}

/// Where a control command finds the running replicator.
#[derive(Debug, clap::Args)]
pub struct SocketArgs {
    /// Path to the control socket.
    #[arg(long, value_name = "PATH", default_value = "/var/run/litestream.sock")]
    pub socket: PathBuf,
    /// Print the reply as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Seconds to wait for the reply.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub timeout: i64,
    /// Only databases whose path matches ('/data/tenants/a*/**').
    #[arg(long, value_name = "GLOB")]
    pub glob: Option<String>,
    /// Skip this many databases (sorted by path).
    #[arg(long, value_name = "N")]
    pub offset: Option<usize>,
    /// At most this many databases.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Seconds to wait for the reply.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub timeout: i64,
}

#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Seconds to wait for the reply.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub timeout: i64,
    /// Return once the replica holds everything committed before the call.
    #[arg(long)]
    pub wait: bool,
    /// The database.
    pub db_path: String,
}

/// `start` and `stop`.
#[derive(Debug, clap::Args)]
pub struct StartStopArgs {
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Seconds to wait for the reply.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub timeout: i64,
    /// The database.
    pub db_path: String,
}

#[derive(Debug, clap::Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Seconds to wait for the reply.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub timeout: i64,
    /// Replica URL (s3://bucket/prefix, file:///backup/path).
    #[arg(long, value_name = "URL")]
    pub replica: String,
    /// The database.
    pub db_path: String,
}

#[derive(Debug, clap::Args)]
pub struct UnregisterArgs {
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Seconds to wait for the reply.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub timeout: i64,
    /// Print what would be unregistered; send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The database.
    pub db_path: String,
}
