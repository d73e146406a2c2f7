//! The state file: the signature of every cold database, so a restart
//! compares two `stat`s per database instead of opening it, and what the
//! control socket changed, so it outlasts a restart. One line per
//! database under a version header: `<signature hex> <absolute path>`,
//! `stopped <path>`, `unregistered <path>`, `registered <url> <path>`
//! (a reader of the first version skips the last three: their first word
//! is not hex).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::registry::{Registry, Tier};

/// The file's name in the state directory.
pub(super) const STATE_FILE: &str = "fleet-state";

const HEADER: &str = "litestreampp fleet state v1";

/// What the state file holds.
#[derive(Debug, Default)]
pub(super) struct Saved {
    /// Cold databases' signatures.
    pub cold: HashMap<PathBuf, u64>,
    pub stopped: HashSet<PathBuf>,
    pub unregistered: HashSet<PathBuf>,
    /// Databases added through the socket, with their replica URLs.
    pub registered: Vec<(PathBuf, String)>,
}

/// Reads the state file. A missing or damaged file means "nothing known":
/// every database is queued.
pub(super) fn load(path: &Path) -> Saved {
    let mut out = Saved::default();
    let Ok(text) = std::fs::read_to_string(path) else {
        return out;
    };
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        tracing::warn!(file = %path.display(), "unknown state file format; every database is checked again");
        return out;
    }
    for line in lines {
        let Some((first, rest)) = line.split_once(' ') else {
            continue;
        };
        match first {
            "stopped" => {
                out.stopped.insert(PathBuf::from(rest));
            }
            "unregistered" => {
                out.unregistered.insert(PathBuf::from(rest));
            }
            "registered" => {
                if let Some((url, p)) = rest.split_once(' ') {
                    out.registered.push((PathBuf::from(p), url.to_string()));
                }
            }
            sig => {
                if let Ok(sig) = u64::from_str_radix(sig, 16) {
                    out.cold.insert(PathBuf::from(rest), sig);
                }
            }
        }
    }
    out
}

/// The file's text, built in one buffer: no allocation per database,
/// which would fragment the heap of a large fleet at every save.
pub(super) fn text(registry: &Registry) -> String {
    use std::fmt::Write;
    let root = registry.root().to_string_lossy();
    let sep = if root.ends_with('/') { "" } else { "/" };
    let mut out = String::with_capacity(64 + registry.dbs.len() * (root.len() + 48));
    let _ = writeln!(out, "{HEADER}"); // writing to a String cannot fail
    for e in &registry.dbs {
        // A path with a newline cannot be recorded; it is simply checked
        // again at the next start.
        let k = e.key();
        if k.contains('\n') {
            continue;
        }
        // A key outside the root is the absolute path itself.
        let (root, sep) = if k.starts_with('/') {
            ("", "")
        } else {
            (&*root, sep)
        };
        match e.tier {
            Tier::Cold if e.sig != 0 => {
                let _ = writeln!(out, "{:016x} {root}{sep}{k}", e.sig);
            }
            Tier::Stopped => {
                let _ = writeln!(out, "stopped {root}{sep}{k}");
            }
            _ => {}
        }
    }
    for p in registry.unregistered.iter() {
        let _ = writeln!(out, "unregistered {}", p.display());
    }
    for r in registry.registered.iter() {
        let _ = writeln!(out, "registered {} {}", r.value(), r.key().display());
    }
    out
}

/// Writes the file atomically.
pub(super) fn save(path: &Path, text: &str) -> litestreampp_core::Result<()> {
    use std::io::Write;
    litestreampp_core::fsutil::write_atomic(path, |w| w.write_all(text.as_bytes()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fleet::patterns::Patterns;
    use crate::fleet::registry::Entry;

    #[test]
    fn cold_signatures_survive_a_save_and_a_load() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        let patterns = Patterns::new(&[format!("{}/**/*.db", root.display())], &[]).unwrap();
        let registry = Registry::new(patterns);
        let cold = Entry {
            tier: Tier::Cold,
            sig: 0xabc,
        };
        registry.insert(&root.join("a/x.db"), cold).unwrap();
        registry
            .insert(&root.join("q.db"), Entry::queued())
            .unwrap();
        let stopped = Entry {
            tier: Tier::Stopped,
            sig: 0,
        };
        registry.insert(&root.join("s.db"), stopped).unwrap();
        registry.unregistered.insert(root.join("u.db"));
        let outside = PathBuf::from("/elsewhere/r.db");
        registry
            .registered
            .insert(outside.clone(), "file:///backups/r".into());
        registry.insert(&outside, Entry::queued()).unwrap();
        let path = dir.path().join(STATE_FILE);
        save(&path, &text(&registry)).unwrap();
        let loaded = load(&path);
        assert_eq!(loaded.cold.len(), 1);
        assert_eq!(loaded.cold[&root.join("a/x.db")], 0xabc);
        assert_eq!(loaded.stopped, HashSet::from([root.join("s.db")]));
        assert_eq!(loaded.unregistered, HashSet::from([root.join("u.db")]));
        assert_eq!(
            loaded.registered,
            [(outside, "file:///backups/r".to_string())]
        );

        std::fs::write(&path, "something else\n0000000000000abc /x.db\n").unwrap();
        assert!(
            load(&path).cold.is_empty(),
            "an unknown header means nothing known"
        );
    }
}
