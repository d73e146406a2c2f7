//! Finds the fleet's databases: every file under a pattern's root that
//! matches one of the patterns (globset, `**` crosses directories), none of
//! the excludes, and starts with SQLite's 16-byte header. Directories are
//! walked in parallel; `-wal`, `-shm` and meta directories are skipped.
//! A single file (a config's path entry) is a pattern of its own that
//! walks nothing: only its directory is watched.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use litestreampp_core::dbfile;
use litestreampp_core::meta_dir::MetaDir;
use rayon::prelude::*;

use super::skipped::{Examined, SkipReason, examine};

/// One discovered database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: PathBuf,
    /// Path relative to the root of the pattern that found it,
    /// `/`-separated: what `{path}` expands to.
    pub rel: String,
    /// Which pattern found it (index into the patterns given).
    pub source: usize,
    /// Its header says rollback-journal mode (not WAL).
    pub rollback: bool,
}

/// What a walk found: the databases, every directory walked (what the
/// write detector watches), and the matching files that are not
/// databases we can read.
#[derive(Debug, Default)]
pub struct Discovered {
    pub found: Vec<Found>,
    pub dirs: Vec<PathBuf>,
    pub skipped: Vec<(PathBuf, SkipReason)>,
}

/// Patterns and excludes, compiled.
#[derive(Debug, Clone)]
pub struct Patterns {
    roots: Vec<Root>,
    exclude: GlobSet,
}

/// One pattern: the directory it is under and what it matches there.
#[derive(Debug, Clone)]
struct Root {
    dir: PathBuf,
    set: GlobSet,
    /// A single database (its directory is not walked).
    file: Option<PathBuf>,
}

/// The directory part of a pattern before its first glob metacharacter.
pub fn literal_root(pattern: &str) -> PathBuf {
    let first_meta = pattern.find(['*', '?', '[', '{']).unwrap_or(pattern.len());
    let lit = &pattern[..first_meta];
    let dir = match lit.rfind('/') {
        Some(0) => "/",
        Some(i) => &lit[..i],
        None => ".",
    };
    PathBuf::from(dir)
}

impl Patterns {
    /// Compiles absolute patterns such as `/data/**/*.db`.
    pub fn new(patterns: &[String], excludes: &[String]) -> Result<Patterns> {
        Patterns::with_files(&[], patterns, excludes)
    }

    /// Single database files (absolute paths, matched before any
    /// pattern), then patterns. A found database's `source` counts files
    /// first.
    pub fn with_files(
        files: &[PathBuf],
        patterns: &[String],
        excludes: &[String],
    ) -> Result<Patterns> {
        if patterns.is_empty() && files.is_empty() {
            bail!("at least one --pattern is required");
        }
        let mut roots = Vec::new();
        for f in files {
            let (Some(dir), Some(_)) = (f.parent(), f.file_name()) else {
                bail!("database path {}: not a file path", f.display());
            };
            if !f.is_absolute() {
                bail!("database path {}: must be absolute", f.display());
            }
            let g = GlobBuilder::new(&globset::escape(&f.to_string_lossy()))
                .literal_separator(true)
                .build()
                .with_context(|| format!("database path {}", f.display()))?;
            roots.push(Root {
                dir: dir.to_path_buf(),
                set: GlobSetBuilder::new().add(g).build()?,
                file: Some(f.clone()),
            });
        }
        for p in patterns {
            if !p.starts_with('/') {
                bail!("--pattern {p:?}: must be an absolute path");
            }
            // `*` stays within a directory; `**` crosses directories.
            let g = GlobBuilder::new(p)
                .literal_separator(true)
                .build()
                .with_context(|| format!("--pattern {p:?}"))?;
            roots.push(Root {
                dir: literal_root(p),
                set: GlobSetBuilder::new().add(g).build()?,
                file: None,
            });
        }
        let mut ex = GlobSetBuilder::new();
        for e in excludes {
            ex.add(Glob::new(e).with_context(|| format!("--exclude {e:?}"))?);
        }
        Ok(Patterns {
            roots,
            exclude: ex.build()?,
        })
    }

    /// The root of the first pattern (of the first file's directory when
    /// there are only files).
    pub fn first_root(&self) -> PathBuf {
        self.roots
            .iter()
            .find(|r| r.file.is_none())
            .or(self.roots.first())
            .map(|r| r.dir.clone())
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// True when a pattern's walk covers `dir` (a directory made under
    /// the directory of a single file is none of the fleet's business).
    pub fn walks(&self, dir: &Path) -> bool {
        self.roots
            .iter()
            .any(|r| r.file.is_none() && dir.starts_with(&r.dir))
    }

    /// The deepest directory every pattern's root is under (`/` at worst).
    pub fn common_root(&self) -> PathBuf {
        let mut roots = self.roots.iter().map(|r| r.dir.as_path());
        let Some(first) = roots.next() else {
            return PathBuf::from("/");
        };
        let mut common = first.to_path_buf();
        for r in roots {
            while !r.starts_with(&common) {
                if !common.pop() {
                    return PathBuf::from("/");
                }
            }
        }
        common
    }

    /// The path relative to the root of the pattern that matches `path`,
    /// if one does.
    pub fn matches(&self, path: &Path) -> Option<String> {
        self.matches_at(path).map(|(_, rel)| rel)
    }

    /// Which pattern (the first) matches `path`, and the path relative to
    /// its root.
    pub fn matches_at(&self, path: &Path) -> Option<(usize, String)> {
        if self.exclude.is_match(path) {
            return None;
        }
        self.roots.iter().enumerate().find_map(|(i, root)| {
            if !root.set.is_match(path) {
                return None;
            }
            let rel = path.strip_prefix(&root.dir).ok()?;
            Some((i, rel.to_string_lossy().into_owned()))
        })
    }

    /// Walks every root in parallel. Unreadable directories are reported
    /// and skipped: one bad tenant directory must not hide the others.
    pub fn discover(&self) -> Result<Vec<Found>> {
        Ok(self.discover_with_dirs()?.found)
    }

    /// [`discover`](Self::discover), plus every directory walked (what the
    /// write detector watches).
    pub fn discover_with_dirs(&self) -> Result<Discovered> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        let mut dirs = Vec::new();
        let mut skipped = Vec::new();
        for (i, root) in self.roots.iter().enumerate() {
            if !root.dir.is_dir() {
                match &root.file {
                    Some(f) => bail!(
                        "database {}: its directory {} does not exist",
                        f.display(),
                        root.dir.display()
                    ),
                    None => bail!("pattern root {} is not a directory", root.dir.display()),
                }
            }
            dirs.push(root.dir.clone());
            if let Some(file) = &root.file {
                // Registered once it is a database; until then its
                // directory's events tell when it appears.
                if self.matches_at(file).is_none_or(|(at, _)| at != i) {
                    continue;
                }
                match examine(file) {
                    Examined::Database { rollback } => {
                        let rel = file.file_name().unwrap_or_default();
                        let found = Found {
                            path: file.clone(),
                            rel: rel.to_string_lossy().into_owned(),
                            source: i,
                            rollback,
                        };
                        if seen.insert(found.path.clone()) {
                            out.push(found);
                        }
                    }
                    Examined::Skip(why) => skipped.push((file.clone(), why)),
                    Examined::NotYet => {}
                }
                continue;
            }
            let d = self.discover_under(&root.dir);
            dirs.extend(d.dirs);
            skipped.extend(d.skipped);
            for f in d.found {
                if seen.insert(f.path.clone()) {
                    out.push(f);
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Discovered {
            found: out,
            dirs,
            skipped,
        })
    }

    /// The databases under `dir` (a directory inside a root) and its
    /// subdirectories.
    pub fn discover_under(&self, dir: &Path) -> Discovered {
        let mut w = Walked::default();
        walk(dir, &mut w);
        let examined: Vec<(Found, Examined)> = w
            .files
            .into_par_iter()
            .filter_map(|f| {
                let (source, rel) = self.matches_at(&f)?;
                let e = examine(&f);
                let rollback = matches!(e, Examined::Database { rollback: true });
                Some((
                    Found {
                        path: f,
                        rel,
                        source,
                        rollback,
                    },
                    e,
                ))
            })
            .collect();
        let mut d = Discovered {
            dirs: w.dirs,
            ..Discovered::default()
        };
        for (f, e) in examined {
            match e {
                Examined::Database { .. } => d.found.push(f),
                Examined::Skip(why) => d.skipped.push((f.path, why)),
                Examined::NotYet => {}
            }
        }
        d
    }
}

/// Files and subdirectories found by a walk.
#[derive(Debug, Default)]
struct Walked {
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

/// Names the walk and the write detector leave alone: SQLite's side
/// files, temporary files, and replication meta directories.
pub fn skip_name(name: &str) -> bool {
    dbfile::is_side_file_name(name)
        || name.ends_with(".tmp")
        || MetaDir::is_meta_dir_name(name)
        || name.starts_with(".litestreampp")
}

/// Collects the files and directories under `dir`, subdirectories in
/// parallel.
fn walk(dir: &Path, out: &mut Walked) {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot list directory; skipped");
            return;
        }
    };
    let mut subdirs = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if skip_name(&name) {
            continue;
        }
        match e.file_type() {
            Ok(t) if t.is_dir() => subdirs.push(e.path()),
            Ok(t) if t.is_file() => out.files.push(e.path()),
            _ => {}
        }
    }
    let nested: Vec<Walked> = subdirs
        .par_iter()
        .map(|d| {
            let mut v = Walked::default();
            walk(d, &mut v);
            v
        })
        .collect();
    out.dirs.extend(subdirs);
    for v in nested {
        out.files.extend(v.files);
        out.dirs.extend(v.dirs);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn roots_and_matching() {
        assert_eq!(literal_root("/data/**/*.db"), PathBuf::from("/data"));
        assert_eq!(literal_root("/data/t1/app.db"), PathBuf::from("/data/t1"));
        assert_eq!(literal_root("/*.db"), PathBuf::from("/"));
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for p in ["a/x.db", "a/b/y.db", "c/z.db", "c/skip.db", "a/notes.txt"] {
            let f = root.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            let mut header = b"SQLite format 3\0".to_vec();
            header.resize(100, 0);
            std::fs::write(&f, header).unwrap();
        }
        std::fs::write(root.join("a/fake.db"), b"not a database").unwrap();
        std::fs::write(root.join("a/x.db-wal"), b"SQLite format 3\0").unwrap();
        let pats = Patterns::new(
            &[format!("{}/**/*.db", root.display())],
            &["**/skip.db".to_string()],
        )
        .unwrap();
        let found: Vec<String> = pats
            .discover()
            .unwrap()
            .into_iter()
            .map(|f| f.rel)
            .collect();
        assert_eq!(found, ["a/b/y.db", "a/x.db", "c/z.db"]);
        // `*` stays within one directory.
        let flat = Patterns::new(&[format!("{}/a/*.db", root.display())], &[]).unwrap();
        let found: Vec<String> = flat
            .discover()
            .unwrap()
            .into_iter()
            .map(|f| f.rel)
            .collect();
        assert_eq!(found, ["x.db"]);
        assert!(Patterns::new(&["data/*.db".into()], &[]).is_err());
        assert!(Patterns::new(&[], &[]).is_err());
    }

    #[test]
    fn single_files_match_first_and_walk_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for p in ["t/a.db", "t/b.db", "app [1].db", "other/deep/x.db"] {
            let f = root.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            let mut header = b"SQLite format 3\0".to_vec();
            header.resize(100, 0);
            std::fs::write(&f, header).unwrap();
        }
        let pats = Patterns::with_files(
            &[
                root.join("app [1].db"),
                root.join("t/a.db"),
                root.join("missing.db"),
            ],
            &[format!("{}/t/*.db", root.display())],
            &[],
        )
        .unwrap();
        let found: Vec<(String, usize)> = pats
            .discover()
            .unwrap()
            .into_iter()
            .map(|f| (f.rel, f.source))
            .collect();
        // t/a.db is the path entry's (source 1), not the pattern's (3);
        // nothing under other/ is walked or matched.
        assert_eq!(
            found,
            [
                ("app [1].db".into(), 0),
                ("a.db".into(), 1),
                ("b.db".into(), 3)
            ]
        );
        assert!(pats.matches(&root.join("app 1.db")).is_none());
        assert!(pats.walks(&root.join("t/new")));
        assert!(!pats.walks(&root.join("other")));
        assert_eq!(pats.first_root(), root.join("t"));
    }

    #[test]
    fn common_root_of_patterns() {
        let root = |ps: &[&str]| {
            let ps: Vec<String> = ps.iter().map(|p| p.to_string()).collect();
            Patterns::new(&ps, &[]).unwrap().common_root()
        };
        assert_eq!(root(&["/data/**/*.db"]), PathBuf::from("/data"));
        assert_eq!(
            root(&["/data/a/**/*.db", "/data/b/*.db"]),
            PathBuf::from("/data")
        );
        assert_eq!(root(&["/data/**/*.db", "/srv/*.db"]), PathBuf::from("/"));
        assert_eq!(
            root(&["/data/a/*.db", "/data/a/b/**/*.db"]),
            PathBuf::from("/data/a")
        );
    }
}
