//! How each database ended, the JSON report and the closing summary.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::jobs::{Job, Listing};
use super::progress::human_bytes;

/// How one database ended; written to the report in lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Restored,
    Skipped,
    Failed,
    /// A dry run's plan.
    Planned,
}

/// How one database ended.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub source: String,
    pub output: String,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub txid: Option<String>,
    pub files: usize,
    pub bytes: u64,
    pub attempts: u32,
    pub duration_ms: u64,
}

impl Outcome {
    pub fn new(job: &Job, status: Status) -> Outcome {
        Outcome::of(job.source.clone(), &job.output, status)
    }

    pub fn of(source: String, output: &Path, status: Status) -> Outcome {
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

/// Writes the outcomes as JSON (atomically).
pub fn write(path: &Path, outcomes: &[Outcome]) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    let body = serde_json::to_string_pretty(outcomes)?;
    litestreampp_core::fsutil::write_atomic(path, |w| w.write_all(body.as_bytes()))
        .with_context(|| format!("write report {}", path.display()))
}

/// Prints the plan (dry run), the failures and the totals.
pub fn summarize(
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
