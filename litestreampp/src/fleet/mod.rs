//! The fleet: many databases found by glob patterns, each replicated to a
//! replica built from its pattern's template, with hot and cold tiers.
//!
//! - **Cold** databases are `registry` entries and nothing else: a tier
//!   and a 64-bit signature of the database and WAL files as they were left
//!   (size, mtime, inode). No task, timer, file handle or request.
//! - The `detector` (inotify, one watch per directory) nudges a hot
//!   database's replicator, and sends a cold one whose files no longer
//!   match its signature to be promoted.
//! - The `hot_set` holds the running replicators; at most `max_hot` hot
//!   ones, each demoted after `hot_idle_timeout` without writes or when it
//!   is the least recently written and a slot is needed. Demotion is a
//!   final sync, upload and seal (checkpoint so the WAL is empty, and a
//!   record that lets the next promotion continue without a snapshot); a
//!   database that could not be sealed is promoted again.
//! - The `backlog` gives every database not known to be backed up (new,
//!   or changed while we were not running) one sync, upload and seal, at a
//!   bounded rate.
//! - The `state_file` records each cold database's signature, so a
//!   restart compares two `stat`s per database instead of opening it.
//! - `tiers`: the one task that moves databases between tiers;
//!   `status`: what `/status` and the gauges show; `http`: `/metrics`,
//!   `/healthz`, `/status`; `patterns`: finding the databases;
//!   `memory`: malloc tuning for a small idle process; `validation`:
//!   `validation.interval`, for the replicas written since the last check;
//!   `requests`: the control socket's requests into the loop; `rescan`:
//!   catching up with the files when events may have been missed.
//!
//! The fleet takes plain option structs and [`ReplicaTemplate`]s: it knows
//! nothing of flags or config files.

mod backlog;
mod detector;
mod hot_set;
pub mod http;
pub mod memory;
mod outage;
pub mod patterns;
mod registry;
mod requests;
mod rescan;
mod retire;
pub mod skipped;
mod state_file;
mod status;
mod tiers;
mod validation;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use litestreampp_core::client::{ClientPool, ReplicaClient};
use litestreampp_core::meta_dir::MetaDir;
use litestreampp_core::replicator::ReplicatorOptions;

pub use outage::OutageStatus;
pub use registry::{FleetError, Tier};
pub use requests::{Outcome, Refused, Synced};
pub use status::{DbState, FleetStatus, FleetView, HotStatus, RunningState};
pub use tiers::run;

/// How the databases of one pattern get their replicas.
pub trait ReplicaTemplate: Send + Sync {
    /// The replica client of the database at `rel` (its path relative to
    /// the pattern's root, `/`-separated); S3 replicas share `pool`'s SDK
    /// clients.
    fn open(&self, pool: &ClientPool, rel: &str) -> anyhow::Result<Arc<dyn ReplicaClient>>;

    /// Where the database at `db` (at `rel`) keeps its local L0 files
    /// until they are shipped; Litestream's place beside it unless the
    /// pattern's source says otherwise.
    fn meta_dir(&self, db: &std::path::Path, _rel: &str) -> MetaDir {
        MetaDir::for_db(db)
    }
}

/// Makes the replica template of a database registered while the fleet
/// runs (`register -replica URL DB`) from its URL.
pub trait ReplicaOpener: Send + Sync {
    fn template_for(&self, url: &str) -> anyhow::Result<Box<dyn ReplicaTemplate>>;
}

/// Tuning of the fleet.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// A hot database without writes for this long is demoted.
    pub hot_idle_timeout: Duration,
    /// At most this many hot databases (each holds a SQLite connection).
    pub max_hot: usize,
    /// Backlog syncs started per second.
    pub backlog_rate: u32,
    /// Backlog syncs running at once.
    pub backlog_workers: usize,
    /// Uploads in flight at once, over all databases.
    pub max_uploads: usize,
    /// Compaction jobs running at once, over all databases.
    pub compaction_workers: usize,
    /// Poll every registered database's files at this interval instead of
    /// change notification (which, when unavailable, falls back to polling
    /// every 5 s).
    pub poll_interval: Option<Duration>,
    /// Walk the pattern roots again and compare every signature at this
    /// interval: a safety net for missed events.
    pub rescan_interval: Duration,
    /// Where the state file lives.
    pub state_dir: PathBuf,
    /// Check the replicas written since the last check for TXID gaps and
    /// overlaps at this interval (Litestream's `validation.interval`).
    pub validation_interval: Option<Duration>,
    /// Leave rollback-journal databases as they are (reported as skipped)
    /// instead of switching them to WAL mode, as Litestream does.
    pub leave_rollback_journal: bool,
    /// While replicas cannot be reached, the outage is logged once per
    /// interval (since when, how much waits).
    pub outage_report_interval: Duration,
    pub replicator: ReplicatorOptions,
}

impl FleetOptions {
    pub fn new(state_dir: PathBuf) -> Self {
        FleetOptions {
            hot_idle_timeout: Duration::from_secs(30),
            max_hot: 1000,
            backlog_rate: 500,
            backlog_workers: 8,
            max_uploads: 64,
            compaction_workers: 4,
            poll_interval: None,
            rescan_interval: Duration::from_secs(600),
            state_dir,
            validation_interval: None,
            leave_rollback_journal: false,
            outage_report_interval: Duration::from_secs(60),
            replicator: ReplicatorOptions::default(),
        }
    }
}
