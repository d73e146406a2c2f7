//! Prometheus metrics under Go Litestream 0.5.17's names and labels, so a
//! Litestream dashboard or alert works unchanged. Every metric the engine
//! records goes through here.
//!
//! One replicator per database (`replicate`) labels each database's series
//! `db="<path>"` as Go does ([`DbMetrics::PerDb`]). The fleet, with up to
//! 100,000 databases, uses [`DbMetrics::Aggregate`]: the same counters
//! without the `db` label, summed over the fleet, and no per-database
//! gauges (a label per database would be 100,000 series).

use std::path::Path;
use std::sync::Arc;

use crate::error::Error;

/// How a database's series are labelled.
#[derive(Debug, Clone, Default)]
pub enum DbMetrics {
    /// Summed over every database, without a `db` label.
    #[default]
    Aggregate,
    /// Labelled `db` with this path, as Go labels them.
    PerDb(Arc<str>),
}

impl DbMetrics {
    /// Per-database series for the database at `path`.
    pub fn per_db(path: &Path) -> DbMetrics {
        DbMetrics::PerDb(path.display().to_string().into())
    }

    fn counter(&self, name: &'static str) -> metrics::Counter {
        match self {
            DbMetrics::Aggregate => metrics::counter!(name),
            DbMetrics::PerDb(db) => metrics::counter!(name, "db" => db.to_string()),
        }
    }

    /// A seconds total. Go's is a float counter; the `metrics` crate's
    /// counters are integers, so it is a gauge that only ever grows (the
    /// `# TYPE` line says gauge; `rate()` and `increase()` work the same).
    fn seconds(&self, name: &'static str) -> metrics::Gauge {
        match self {
            DbMetrics::Aggregate => metrics::gauge!(name),
            DbMetrics::PerDb(db) => metrics::gauge!(name, "db" => db.to_string()),
        }
    }

    /// Creates this database's series at zero, as Go does when it opens a
    /// database: an alert on a series that appears only after the first
    /// error would miss that error.
    pub fn register(&self) {
        if let DbMetrics::PerDb(db) = self {
            for name in [
                "litestream_sync_count",
                "litestream_sync_error_count",
                "litestream_total_wal_bytes",
                "litestream_compaction_verify_error_count",
            ] {
                self.counter(name).increment(0);
            }
            self.seconds("litestream_sync_seconds").increment(0.0);
            for name in [
                "litestream_txid",
                "litestream_db_size",
                "litestream_wal_size",
                "litestream_disk_full",
            ] {
                metrics::gauge!(name, "db" => db.to_string()).set(0.0);
            }
            self.l0_retention(0, 0, 0);
        }
    }

    /// One sync: `litestream_sync_count`, `_error_count`, `_seconds`, and
    /// `litestream_disk_full` (1 while syncs fail for lack of space).
    pub fn sync(&self, secs: f64, error: Option<&Error>) {
        self.counter("litestream_sync_count").increment(1);
        self.seconds("litestream_sync_seconds").increment(secs);
        if error.is_some() {
            self.counter("litestream_sync_error_count").increment(1);
        }
        if let DbMetrics::PerDb(db) = self {
            let full = error.is_some_and(is_disk_full);
            metrics::gauge!("litestream_disk_full", "db" => db.to_string())
                .set(f64::from(u8::from(full)));
        }
    }

    /// WAL bytes copied into L0 files: `litestream_total_wal_bytes`.
    pub fn wal_bytes(&self, bytes: u64) {
        if bytes > 0 {
            self.counter("litestream_total_wal_bytes").increment(bytes);
        }
    }

    /// The database's position after a sync: `litestream_txid`,
    /// `litestream_db_size`, `litestream_wal_size` (per database only).
    pub fn position(&self, txid: u64, db_size: u64, wal_size: u64) {
        if let DbMetrics::PerDb(db) = self {
            metrics::gauge!("litestream_txid", "db" => db.to_string()).set(txid as f64);
            metrics::gauge!("litestream_db_size", "db" => db.to_string()).set(db_size as f64);
            metrics::gauge!("litestream_wal_size", "db" => db.to_string()).set(wal_size as f64);
        }
    }

    /// One checkpoint: `litestream_checkpoint_count`, `_error_count`,
    /// `_seconds`, labelled `mode` as SQLite names it (`PASSIVE`,
    /// `TRUNCATE`).
    pub fn checkpoint(&self, mode: &'static str, secs: f64, failed: bool) {
        let c = |name: &'static str| match self {
            DbMetrics::Aggregate => metrics::counter!(name, "mode" => mode),
            DbMetrics::PerDb(db) => metrics::counter!(name, "db" => db.to_string(), "mode" => mode),
        };
        c("litestream_checkpoint_count").increment(1);
        match self {
            DbMetrics::Aggregate => metrics::gauge!("litestream_checkpoint_seconds", "mode" => mode),
            DbMetrics::PerDb(db) => {
                metrics::gauge!("litestream_checkpoint_seconds", "db" => db.to_string(), "mode" => mode)
            }
        }
        .increment(secs);
        if failed {
            c("litestream_checkpoint_error_count").increment(1);
        }
    }

    /// A compaction whose output failed verification.
    /// `litestream_l0_retention_files_total{db,status}` after an L0
    /// retention pass (per database only, as `litestream_txid`): files
    /// deleted (`eligible`), old enough but not yet in L1
    /// (`not_compacted`), and kept as too recent (`too_recent`).
    pub fn l0_retention(&self, eligible: usize, not_compacted: usize, too_recent: usize) {
        if let DbMetrics::PerDb(db) = self {
            for (status, n) in [
                ("eligible", eligible),
                ("not_compacted", not_compacted),
                ("too_recent", too_recent),
            ] {
                metrics::gauge!("litestream_l0_retention_files_total", "db" => db.to_string(), "status" => status)
                    .set(n as f64);
            }
        }
    }

    pub fn compaction_verify_error(&self) {
        self.counter("litestream_compaction_verify_error_count")
            .increment(1);
    }
}

fn is_disk_full(e: &Error) -> bool {
    match e {
        Error::Io { source, .. } => {
            source.kind() == std::io::ErrorKind::StorageFull
                || source.raw_os_error() == Some(libc_enospc())
        }
        _ => false,
    }
}

const fn libc_enospc() -> i32 {
    28 // ENOSPC on Linux and macOS
}

/// A request to a replica backend acting on `count` objects:
/// `litestream_replica_operation_total`, `_bytes`, `_duration_seconds`
/// and, when it failed, `litestream_replica_operation_errors_total` with a
/// `code`. Labelled `replica_type` and `operation` (`GET`, `PUT`, `DELETE`,
/// `LIST`).
pub fn replica_operation(
    replica_type: &'static str,
    operation: &'static str,
    bytes: u64,
    count: u64,
    secs: f64,
    error: Option<&Error>,
) {
    let labels = [("replica_type", replica_type), ("operation", operation)];
    metrics::counter!("litestream_replica_operation_total", &labels).increment(count);
    if bytes > 0 {
        metrics::counter!("litestream_replica_operation_bytes", &labels).increment(bytes);
    }
    metrics::histogram!("litestream_replica_operation_duration_seconds", &labels).record(secs);
    if let Some(e) = error {
        let code = error_code(e);
        metrics::counter!(
            "litestream_replica_operation_errors_total",
            "replica_type" => replica_type,
            "operation" => operation,
            "code" => code
        )
        .increment(1);
    }
}

/// A short, bounded name for an error (a label value).
fn error_code(e: &Error) -> &'static str {
    match e {
        Error::NotFound { .. } => "NotFound",
        Error::PreconditionFailed { .. } => "PreconditionFailed",
        Error::Backend {
            transient: true, ..
        } => "Transient",
        Error::Backend { .. } => "Backend",
        Error::Io { .. } => "IO",
        Error::Cancelled => "Cancelled",
        _ => "Other",
    }
}

/// The buckets of `litestream_replica_operation_duration_seconds`, as Go's.
pub const OPERATION_SECONDS_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0];

/// The name of that histogram, for a recorder's bucket settings.
pub const OPERATION_SECONDS: &str = "litestream_replica_operation_duration_seconds";
