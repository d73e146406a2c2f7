//! Finding the replicas under a root from one listing of its files
//! ([`ReplicaClient::list_tree`](crate::client::ReplicaClient::list_tree)):
//! what `restore-pattern` restores a fleet from. Three layouts are
//! recognised (spec §2): S3's `<path>/<level %04x>/<min>-<max>.ltx`, the
//! file backend's `<root>/ltx/<level>/<min>-<max>.ltx`, and Litestream
//! 0.3's `<root>/generations/<16 hex>/...`. Files that look like replica
//! files but fit none of them are returned too, so that nothing is
//! skipped silently.

use std::collections::BTreeMap;

use crate::client::{FileInfo, RawEntry, SNAPSHOT_LEVEL};
use crate::txid::parse_ltx_file_name;

/// Which LTX layout a listing uses: the backend decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `<path>/<level %04x>/<name>` (s3).
    LevelHex,
    /// `<root>/ltx/<level>/<name>` (file).
    LtxDir,
}

/// One replica found under the root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FoundReplica {
    /// Its path relative to the listed root (`/`-separated; empty when the
    /// root itself is the replica).
    pub path: String,
    /// Its LTX files, every level.
    pub files: Vec<FileInfo>,
    /// It has a Litestream 0.3 `generations/` tree.
    pub v3: bool,
}

impl FoundReplica {
    /// Bytes of all its LTX files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// What a listing holds.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// Replicas, ordered by path.
    pub replicas: Vec<FoundReplica>,
    /// Files that look like replica files (`.ltx`, under `generations/`,
    /// or an LTX layout of the other backend) but fit no layout: their
    /// paths.
    pub unrecognised: Vec<String>,
}

/// Sorts a listing of a root into replicas.
pub fn find_replicas(entries: &[RawEntry], layout: Layout) -> Found {
    let mut replicas: BTreeMap<String, FoundReplica> = BTreeMap::new();
    let mut unrecognised = Vec::new();
    for e in entries.iter().filter(|e| !e.is_dir) {
        let parts: Vec<&str> = e.name.split('/').collect();
        if let Some((root, info)) = ltx_file(&parts, e, layout) {
            let r = replicas.entry(root.clone()).or_default();
            r.path = root;
            r.files.push(info);
        } else if let Some(root) = v3_root(&parts) {
            let r = replicas.entry(root.clone()).or_default();
            r.path = root;
            r.v3 = true;
        } else if looks_like_replica_file(&parts) {
            unrecognised.push(e.name.clone());
        }
    }
    let mut replicas: Vec<FoundReplica> = replicas.into_values().collect();
    for r in &mut replicas {
        r.files.sort_by_key(|f| (f.level, f.min_txid, f.max_txid));
    }
    Found {
        replicas,
        unrecognised,
    }
}

/// `[root.., level, name]` in `layout`: the replica root and the file.
fn ltx_file(parts: &[&str], e: &RawEntry, layout: Layout) -> Option<(String, FileInfo)> {
    let n = parts.len();
    let name = *parts.last()?;
    let (min_txid, max_txid) = parse_ltx_file_name(name)?;
    let level_part = *parts.get(n.checked_sub(2)?)?;
    let (level, root_len) = match layout {
        Layout::LevelHex => {
            if level_part.len() != 4 {
                return None;
            }
            (u32::from_str_radix(level_part, 16).ok()?, n - 2)
        }
        Layout::LtxDir => {
            if n < 3 || parts[n - 3] != "ltx" || level_part.len() != 1 {
                return None;
            }
            (level_part.parse::<u32>().ok()?, n - 3)
        }
    };
    if level > SNAPSHOT_LEVEL {
        return None;
    }
    let info = FileInfo {
        level,
        min_txid,
        max_txid,
        size: e.size,
        created_at: e.modified,
    };
    Some((parts[..root_len].join("/"), info))
}

/// `[root.., "generations", <16 hex>, ...]`: the replica root.
fn v3_root(parts: &[&str]) -> Option<String> {
    let i = parts.iter().position(|p| *p == "generations")?;
    let generation = parts.get(i + 1)?;
    let ok = generation.len() == 16 && generation.bytes().all(|b| b.is_ascii_hexdigit());
    (ok && parts.len() > i + 2).then(|| parts[..i].join("/"))
}

fn looks_like_replica_file(parts: &[&str]) -> bool {
    parts.last().is_some_and(|n| n.ends_with(".ltx")) || parts.contains(&"generations")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn entry(name: &str, size: u64) -> RawEntry {
        RawEntry {
            name: name.to_string(),
            is_dir: false,
            size,
            modified: jiff::Timestamp::UNIX_EPOCH,
        }
    }

    const A: &str = "0000000000000001-0000000000000001.ltx";
    const B: &str = "0000000000000002-0000000000000002.ltx";

    #[test]
    fn s3_layout() {
        let found = find_replicas(
            &[
                entry(&format!("t1/app.db/0000/{B}"), 20),
                entry(&format!("t1/app.db/0009/{A}"), 10),
                entry(&format!("t2/app.db/0000/{A}"), 5),
                entry(&format!("0009/{A}"), 1),
                entry("README", 3),
                entry(&format!("t3/app.db/ltx/0/{A}"), 5),
                entry(
                    "old.db/generations/0123456789abcdef/snapshots/00000000.snapshot.lz4",
                    7,
                ),
            ],
            Layout::LevelHex,
        );
        let paths: Vec<&str> = found.replicas.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["", "old.db", "t1/app.db", "t2/app.db"]);
        let t1 = &found.replicas[2];
        assert_eq!(t1.files.len(), 2);
        assert_eq!(t1.files[0].level, 0);
        assert_eq!(t1.files[1].level, SNAPSHOT_LEVEL);
        assert_eq!(t1.bytes(), 30);
        assert!(found.replicas[1].v3 && found.replicas[1].files.is_empty());
        // The file backend's layout in an S3 listing is not silently dropped.
        assert_eq!(found.unrecognised, [format!("t3/app.db/ltx/0/{A}")]);
    }

    #[test]
    fn file_layout() {
        let found = find_replicas(
            &[
                entry(&format!("a/x.db/ltx/0/{A}"), 1),
                entry(&format!("a/x.db/ltx/9/{A}"), 1),
                entry(&format!("a/y.db/0000/{A}"), 1),
                entry(&format!("a/z.db/ltx/10/{A}"), 1),
                entry("a/x.db/ltx/0/notes.txt", 1),
            ],
            Layout::LtxDir,
        );
        assert_eq!(found.replicas.len(), 1);
        assert_eq!(found.replicas[0].path, "a/x.db");
        assert_eq!(found.replicas[0].files.len(), 2);
        assert_eq!(
            found.unrecognised,
            [format!("a/y.db/0000/{A}"), format!("a/z.db/ltx/10/{A}")]
        );
    }
}
