//! Restore (spec §4): plan the chain of LTX files for "latest", a TXID or a
//! timestamp, fetch them with range reads in parallel, verify every file's
//! checksum, and write the database to a temporary file that is fsynced and
//! renamed into place. Nothing is ever left at the output path unless the
//! whole restore succeeded.
//!
//! The merge writes each page once: page indexes (read from the files'
//! tails) tell which file holds the newest version of every page; all
//! frames of all files are still decoded, so every file checksum is
//! verified, as Litestream's compactor does.
//!
//! Its rooms: `plan` (which files), `fetch` (reading and verifying them),
//! `output` (writing the database), [`follow`] (applying new files to a
//! restored database, `restore -f`).

mod fetch;
pub mod follow;
mod output;
mod plan;

pub use plan::{plan_from_files, plan_restore};

use fetch::{MEMORY_BUDGET, PlannedFile, WHOLE_FILE_BYTES, load_file};
use output::write_database;

use std::fs::{self};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};

use crate::client::{FileInfo, ReplicaClient};
use crate::dbfile;
use crate::error::{Error, Result};
use crate::fsutil::{self};
use crate::ltx::lock_pgno;
use crate::txid::TxId;

/// What to restore to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestoreTarget {
    /// The newest state in the replica.
    #[default]
    Latest,
    /// Exactly this TXID.
    TxId(TxId),
    /// The newest state whose files were created strictly before this time.
    Timestamp(jiff::Timestamp),
}

/// `-integrity-check` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IntegrityCheck {
    #[default]
    None,
    Quick,
    Full,
}

impl std::str::FromStr for IntegrityCheck {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(IntegrityCheck::None),
            "quick" => Ok(IntegrityCheck::Quick),
            "full" => Ok(IntegrityCheck::Full),
            _ => Err(Error::InvalidInput(format!(
                "integrity check {s:?}: expected none, quick or full"
            ))),
        }
    }
}

/// Restore settings.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub output: PathBuf,
    pub target: RestoreTarget,
    /// Replace an existing output file.
    pub overwrite: bool,
    pub integrity_check: IntegrityCheck,
    /// Range reads in flight at once.
    pub parallelism: usize,
}

impl RestoreOptions {
    /// Latest state to `output`, no overwrite, no integrity check.
    pub fn new(output: impl Into<PathBuf>) -> Self {
        RestoreOptions {
            output: output.into(),
            target: RestoreTarget::Latest,
            overwrite: false,
            integrity_check: IntegrityCheck::None,
            parallelism: 8,
        }
    }
}

/// The files a restore will read, in order.
#[derive(Debug, Clone)]
pub struct RestorePlan {
    pub files: Vec<FileInfo>,
    /// The TXID the restored database will be at.
    pub txid: TxId,
}

impl RestorePlan {
    /// Bytes to fetch.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreSummary {
    pub output: PathBuf,
    pub txid: TxId,
    pub files: usize,
    pub bytes_read: u64,
    pub page_size: u32,
    /// Database size in pages.
    pub pages: u32,
    pub elapsed: std::time::Duration,
}

/// Restores `client`'s database to `opts.output`.
pub async fn restore(
    client: Arc<dyn ReplicaClient>,
    opts: &RestoreOptions,
) -> Result<RestoreSummary> {
    restore_with_plan(client, opts, None).await
}

/// What [`restore_if_missing`] did.
#[derive(Debug, Clone)]
pub enum IfMissing {
    /// The database exists: left alone.
    Exists,
    /// The replica holds no backup (a first start): nothing restored.
    NoBackup,
    Restored(RestoreSummary),
}

/// Restores the latest state of `client`'s database to `path` if nothing
/// is there (Litestream's `restore-if-db-not-exists`): an existing file,
/// even an empty one, is left alone, and an empty replica is a first
/// start, not an error.
pub async fn restore_if_missing(client: Arc<dyn ReplicaClient>, path: &Path) -> Result<IfMissing> {
    if std::fs::symlink_metadata(path).is_ok() {
        return Ok(IfMissing::Exists);
    }
    match restore(client, &RestoreOptions::new(path)).await {
        Ok(s) => Ok(IfMissing::Restored(s)),
        Err(e) if e.is_not_found() || matches!(e, Error::TxNotAvailable { .. }) => {
            Ok(IfMissing::NoBackup)
        }
        Err(e) => Err(e),
    }
}

/// [`restore`] starting from a plan already made for `opts.target` (the
/// replica is listed again only if a planned file has disappeared).
pub async fn restore_with_plan(
    client: Arc<dyn ReplicaClient>,
    opts: &RestoreOptions,
    mut plan: Option<RestorePlan>,
) -> Result<RestoreSummary> {
    let started = Instant::now();
    let out_path = opts.output.clone();
    let out_name = out_path.display().to_string();
    if !opts.overwrite && fs::symlink_metadata(&out_path).is_ok() {
        return Err(Error::InvalidInput(format!(
            "cannot restore: output path already exists: {out_name} (use -force to replace it)"
        )));
    }
    // Retention may delete a planned file while the restore runs (a newer
    // file then covers it): plan again.
    let mut attempt = 0;
    loop {
        let plan = match plan.take() {
            Some(p) => p,
            None => plan_restore(client.as_ref(), opts.target).await?,
        };
        match restore_plan(client.clone(), opts, &plan, started).await {
            Err(e) if e.is_not_found() && attempt < 3 => {
                attempt += 1;
                tracing::warn!(error = %e, "a planned file disappeared (retention); planning again");
            }
            r => return r,
        }
    }
}

async fn restore_plan(
    client: Arc<dyn ReplicaClient>,
    opts: &RestoreOptions,
    plan: &RestorePlan,
    started: Instant,
) -> Result<RestoreSummary> {
    let out_path = opts.output.clone();
    let par = opts.parallelism.max(1);

    // Headers and page indexes of every file.
    let mut budget = MEMORY_BUDGET;
    let keeps: Vec<bool> = plan
        .files
        .iter()
        .map(|f| {
            let keep = f.size <= WHOLE_FILE_BYTES && f.size <= budget;
            if keep {
                budget -= f.size;
            }
            keep
        })
        .collect();
    // Owned inputs: a future that borrows from the iterator would not be
    // `Send` for every lifetime, and callers spawn restores.
    let files: Vec<PlannedFile> = futures::stream::iter(plan.files.clone().into_iter().zip(keeps))
        .map(|(f, keep)| {
            let c = client.clone();
            async move { load_file(c.as_ref(), &f, keep).await }
        })
        .buffered(par)
        .try_collect()
        .await?;

    let last = &files[files.len() - 1].index.header;
    let (page_size, commit) = (last.page_size, last.commit);
    for f in &files {
        if f.index.header.page_size != page_size {
            return Err(Error::corrupt(
                f.key.clone(),
                format!(
                    "page size {} differs from the restore's {page_size}",
                    f.index.header.page_size
                ),
            ));
        }
    }
    if !files[0].index.header.is_snapshot() {
        return Err(Error::corrupt(
            files[0].key.clone(),
            "the restore chain does not start with a snapshot",
        ));
    }
    // The newest file holding each page wins.
    let mut winners = vec![0u32; commit as usize + 1];
    for (i, f) in files.iter().enumerate() {
        for e in &f.index.entries {
            if e.pgno <= commit {
                winners[e.pgno as usize] = i as u32 + 1;
            }
        }
    }
    let lock = lock_pgno(page_size);
    if let Some(p) = (1..=commit).find(|&p| p != lock && winners[p as usize] == 0) {
        return Err(Error::corrupt(
            format!("replica {}", client.location()),
            format!("no file in the restore chain holds page {p}"),
        ));
    }

    if let Some(parent) = out_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fsutil::create_dir_all(parent)?;
    }
    let tmp = fsutil::tmp_path(&out_path);
    let result = write_database(
        client.clone(),
        &files,
        &winners,
        page_size,
        commit,
        &tmp,
        par,
        opts,
        &out_path,
    )
    .await;
    if result.is_err() {
        let _ = fs::remove_file(&tmp); // never leave a partial output; the error says why
        let _ = dbfile::remove_side_files(&tmp); // SQLite's, from the integrity check, if any
    }
    result?;
    Ok(RestoreSummary {
        output: out_path,
        txid: plan.txid,
        files: files.len(),
        bytes_read: plan.total_bytes(),
        page_size,
        pages: commit,
        elapsed: started.elapsed(),
    })
}

/// Runs `PRAGMA quick_check` or `integrity_check` on a restored file.
pub fn check_integrity(path: &Path, mode: IntegrityCheck) -> Result<()> {
    let pragma = match mode {
        IntegrityCheck::None => return Ok(()),
        IntegrityCheck::Quick => "quick_check",
        IntegrityCheck::Full => "integrity_check",
    };
    let name = path.display().to_string();
    let r = (|| {
        let conn = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE,
        )
        .map_err(|e| Error::sqlite(format!("open {name} for {pragma}"), e))?;
        let rows: Vec<String> = {
            let mut st = conn
                .prepare(&format!("PRAGMA {pragma}"))
                .map_err(|e| Error::sqlite(format!("{name}: {pragma}"), e))?;
            st.query_map([], |r| r.get::<_, String>(0))
                .and_then(|m| m.collect())
                .map_err(|e| Error::sqlite(format!("{name}: {pragma}"), e))?
        };
        drop(conn);
        if rows != ["ok"] {
            return Err(Error::corrupt(
                name.clone(),
                format!("{pragma} failed: {}", rows.join("; ")),
            ));
        }
        Ok(())
    })();
    // SQLite's side files of the checked copy; best effort, the check's
    // result is what counts.
    let _ = dbfile::remove_side_files(path);
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Restores can be spawned (fleet restores and embedding applications
    /// run them on tokio tasks).
    #[test]
    fn restore_futures_are_send() {
        fn assert_send<T: Send>(_: &T) {}
        let client: Arc<dyn ReplicaClient> =
            Arc::new(crate::client::file::FileReplicaClient::new("/nonexistent"));
        let opts = RestoreOptions::new("/nonexistent/out.db");
        let f = restore_with_plan(client.clone(), &opts, None);
        assert_send(&f);
        let p = plan_restore(client.as_ref(), RestoreTarget::Latest);
        assert_send(&p);
    }

    #[test]
    fn plans_from_listed_files() {
        let f = |level, min, max| FileInfo {
            level,
            min_txid: TxId(min),
            max_txid: TxId(max),
            size: 100,
            created_at: jiff::Timestamp::UNIX_EPOCH,
        };
        let files = vec![f(0, 4, 4), f(9, 1, 3), f(0, 5, 5), f(1, 1, 2), f(0, 3, 3)];
        let p = plan_from_files("r", files.clone(), RestoreTarget::Latest).unwrap();
        let got: Vec<(u32, u64)> = p.files.iter().map(|f| (f.level, f.max_txid.0)).collect();
        assert_eq!(got, [(9, 3), (0, 4), (0, 5)]);
        assert_eq!(p.txid, TxId(5));
        let p = plan_from_files("r", files, RestoreTarget::TxId(TxId(4))).unwrap();
        assert_eq!(p.txid, TxId(4));
        let e = plan_from_files("r", vec![f(0, 2, 2)], RestoreTarget::Latest).unwrap_err();
        assert!(matches!(e, Error::TxNotAvailable { .. }), "{e}");
        let e = plan_from_files("r", vec![], RestoreTarget::Latest).unwrap_err();
        assert!(e.is_not_found(), "{e}");
    }
}
