//! The layering `docs/ARCHITECTURE.md` states, checked on the sources:
//! no import circle between the top-level modules of either crate; the
//! fleet and the fleet restore import nothing from flags, settings or
//! commands (nor from each other); settings nothing from flags or
//! commands; one URL redactor; one place in the binary that opens a
//! replica client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read source directory") {
            let p = e.expect("directory entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A file's code: comments and the test module left out.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read source");
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The crate's top-level module a file belongs to (`None` for the crate
/// root).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs");
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// Top-level module → the top-level modules its code names (`crate::x`).
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in sources(src) {
        let Some(m) = module_of(src, &f) else {
            continue;
        };
        let text = code(&f);
        let deps = graph.entry(m.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            // `litestreampp_core::x` is another crate, not `crate::x`.
            let before = text[..i].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let name: String = text[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != m {
                deps.insert(name);
            }
        }
    }
    graph
}

fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_string()];
    while let Some(n) = stack.pop() {
        if n == to {
            return true;
        }
        if seen.insert(n.clone()) {
            stack.extend(graph.get(&n).into_iter().flatten().cloned());
        }
    }
    false
}

fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut out = Vec::new();
    for (a, deps) in graph {
        for b in deps {
            if reaches(graph, b, a) {
                out.push(format!("{a} -> {b} -> ... -> {a}"));
            }
        }
    }
    out
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

#[test]
fn no_import_circle_in_either_crate() {
    for krate in ["core/src", "litestreampp/src"] {
        let graph = imports(&root().join(krate));
        assert!(graph.len() >= 5, "{krate}: modules found: {graph:?}");
        let found = circles(&graph);
        assert!(found.is_empty(), "{krate}: import circles: {found:#?}");
    }
}

#[test]
fn the_binary_keeps_its_layers() {
    let graph = imports(&root().join("litestreampp/src"));
    let forbidden: [(&str, &[&str]); 5] = [
        ("fleet", &["flags", "settings", "cmd", "restore_fleet"]),
        (
            "control",
            &["flags", "settings", "cmd", "fleet", "restore_fleet"],
        ),
        ("restore_fleet", &["flags", "settings", "cmd", "fleet"]),
        ("settings", &["flags", "cmd"]),
        ("flags", &["cmd", "fleet", "restore_fleet"]),
    ];
    for (module, never) in forbidden {
        let deps = graph.get(module).cloned().unwrap_or_default();
        for n in never {
            assert!(
                !deps.contains(*n),
                "{module} imports {n}; ARCHITECTURE.md's layering forbids it"
            );
        }
    }
}

#[test]
fn one_redactor_and_one_place_that_opens_a_client() {
    let mut redactors = Vec::new();
    let mut openers = Vec::new();
    for krate in ["core/src", "litestreampp/src"] {
        let src = root().join(krate);
        for f in sources(&src) {
            let text = code(&f);
            let rel = f.strip_prefix(root()).unwrap_or(&f).display().to_string();
            if text.contains("fn redact") {
                redactors.push(rel.clone());
            }
            let opens = ["FileReplicaClient::new(", ".open_s3(", "client::from_url("]
                .iter()
                .any(|o| text.contains(o));
            if krate.starts_with("litestreampp") && opens {
                openers.push(rel);
            }
        }
    }
    assert_eq!(redactors, ["core/src/redact.rs"]);
    assert_eq!(openers, ["litestreampp/src/settings/replica.rs"]);
}
