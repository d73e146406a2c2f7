//! The restore journal: one fsynced line per database restored and
//! renamed into place, so a run started again skips what the journal and
//! the files agree on.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use litestreampp_core::restore::RestoreTarget;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

/// The journal's file name in the output directory.
pub const JOURNAL_NAME: &str = ".litestreampp-restore.journal";

/// A journal line: one database restored and renamed into place.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JournalEntry {
    pub path: String,
    pub target: String,
    pub txid: String,
    pub size: u64,
    pub mtime_ns: i128,
}

/// Appends journal lines, fsyncing once per batch of waiting writers.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::UnboundedSender<(String, oneshot::Sender<std::io::Result<()>>)>,
}

impl Journal {
    pub fn open(path: &Path) -> Result<Journal> {
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
    pub async fn append(&self, e: &JournalEntry) -> Result<()> {
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

/// How the journal names a restore target: a restore for another target
/// is not the one recorded.
pub fn target_key(target: RestoreTarget) -> String {
    match target {
        RestoreTarget::Latest => "latest".to_string(),
        RestoreTarget::TxId(t) => format!("txid:{t}"),
        RestoreTarget::Timestamp(t) => format!("timestamp:{t}"),
    }
}

/// Reads a journal: the last entry per path. Lines that do not parse (a
/// write cut by a crash) are ignored.
pub fn read(path: &Path) -> HashMap<String, JournalEntry> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<JournalEntry>(l).ok())
        .map(|e| (e.path.clone(), e))
        .collect()
}

pub fn mtime_ns(md: &std::fs::Metadata) -> i128 {
    use std::os::unix::fs::MetadataExt;
    i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec())
}

/// True if the journal says `rel` was restored for `target` and the file
/// there is still the one it wrote.
pub fn journaled(
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

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
