//! The state file: the signature of every cold database, so a restart
//! compares two `stat`s per database instead of opening it. One line per
//! database, `<signature hex> <absolute path>`, under a version header.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::registry::{Registry, Tier};

/// The file's name in the state directory.
pub(super) const STATE_FILE: &str = "fleet-state";

const HEADER: &str = "litestreampp fleet state v1";

/// Reads the state file. A missing or damaged file means "nothing known":
/// every database is queued.
pub(super) fn load(path: &Path) -> HashMap<PathBuf, u64> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    let mut out = HashMap::new();
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        tracing::warn!(file = %path.display(), "unknown state file format; every database is checked again");
        return out;
    }
    for line in lines {
        let Some((sig, p)) = line.split_once(' ') else {
            continue;
        };
        if let Ok(sig) = u64::from_str_radix(sig, 16) {
            out.insert(PathBuf::from(p), sig);
        }
    }
    out
}

/// The file's text for every cold database, built in one buffer: no
/// allocation per database, which would fragment the heap of a large
/// fleet at every save.
pub(super) fn text(registry: &Registry) -> String {
    use std::fmt::Write;
    let root = registry.root().to_string_lossy();
    let sep = if root.ends_with('/') { "" } else { "/" };
    let mut out = String::with_capacity(64 + registry.dbs.len() * (root.len() + 48));
    let _ = writeln!(out, "{HEADER}"); // writing to a String cannot fail
    for e in &registry.dbs {
        // A path with a newline cannot be recorded; it is simply checked
        // again at the next start.
        if e.tier == Tier::Cold && e.sig != 0 && !e.key().contains('\n') {
            let _ = writeln!(out, "{:016x} {root}{sep}{}", e.sig, e.key());
        }
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
        let path = dir.path().join(STATE_FILE);
        save(&path, &text(&registry)).unwrap();
        let loaded = load(&path);
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[&root.join("a/x.db")], 0xabc);

        std::fs::write(&path, "something else\n0000000000000abc /x.db\n").unwrap();
        assert!(
            load(&path).is_empty(),
            "an unknown header means nothing known"
        );
    }
}
