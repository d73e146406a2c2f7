//! Replica templates: one URL pattern gives every database of the fleet its
//! own replica. `{path}` is the database's path relative to the root of the
//! pattern that found it, `{dir}` that path's directory (empty at the root),
//! `{name}` the file name.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, bail};
use litestreampp_core::client::{ClientPool, ReplicaClient};
use litestreampp_core::meta_dir::{MetaDir, MetaRoot};
use litestreampp_core::redact::redact_url;

use super::{DbConfig, DirConfig, ReplicaConfig};
use crate::fleet::{ReplicaOpener, ReplicaTemplate};

/// How each database of a pattern gets its replica.
#[derive(Debug, Clone)]
pub enum Template {
    /// `--replica` URL template with `{path}`, `{dir}`, `{name}`.
    Url(String),
    /// A config file's directory entry: its replica, with the database's
    /// relative path appended to the replica's path (Litestream's rule),
    /// and where its meta directories live.
    Replica(Box<ReplicaConfig>, MetaRoot),
    /// A config file's path entry: one database, its replica as written,
    /// its `meta-path` if it sets one.
    Database(Box<ReplicaConfig>, Option<PathBuf>),
}

impl Template {
    /// A directory entry's replica and meta directories.
    pub fn for_dir(d: &DirConfig) -> Template {
        Template::Replica(Box::new(d.replica.clone()), d.meta.clone())
    }

    /// A path entry's replica and meta directory.
    pub fn for_db(d: &DbConfig) -> Result<Template> {
        let Some(r) = &d.replica else {
            bail!("database {}: no replica configured", d.path.display());
        };
        Ok(Template::Database(
            Box::new(r.clone()),
            d.tuning.meta_path.clone(),
        ))
    }

    /// Where the database at `rel` is replicated, for messages (no
    /// credentials).
    pub fn describe(&self, rel: &str) -> String {
        match self {
            Template::Url(_) => redact_url(&self.expand(rel)),
            Template::Replica(r, _) => r
                .with_relative_path(rel)
                .map_or_else(|_| r.describe(), |r| r.describe()),
            Template::Database(r, _) => r.describe(),
        }
    }

    /// Checks that the template names each database apart (`{path}`, or
    /// `{dir}` with `{name}`) and uses no unknown placeholder.
    pub fn parse(s: &str) -> Result<Template> {
        let mut rest = s;
        while let Some(i) = rest.find('{') {
            let Some(j) = rest[i..].find('}') else {
                bail!("replica template {s:?}: unclosed '{{'");
            };
            let key = &rest[i + 1..i + j];
            if !matches!(key, "path" | "dir" | "name") {
                bail!(
                    "replica template {s:?}: unknown placeholder {{{key}}} (use {{path}}, {{dir}}, {{name}})"
                );
            }
            rest = &rest[i + j + 1..];
        }
        let unique = s.contains("{path}") || (s.contains("{dir}") && s.contains("{name}"));
        if !unique {
            bail!(
                "replica template {s:?}: must contain {{path}} (or {{dir}} and {{name}}) so each database gets its own replica"
            );
        }
        Ok(Template::Url(s.to_string()))
    }

    /// The replica URL of the database at `rel` (relative to its pattern's
    /// root, `/`-separated).
    pub fn expand(&self, rel: &str) -> String {
        let t = match self {
            Template::Url(t) => t,
            Template::Replica(..) | Template::Database(..) => return self.describe(rel),
        };
        let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let s = t
            .replace("{path}", rel)
            .replace("{dir}", dir)
            .replace("{name}", name);
        // An empty {dir} must not leave "//" in the path (the query, with
        // its endpoint URL, stays as it is).
        let (url, query) = match s.split_once('?') {
            Some((u, q)) => (u, Some(q)),
            None => (s.as_str(), None),
        };
        let (scheme, tail) = match url.split_once("://") {
            Some((sc, t)) => (Some(sc), t),
            None => (None, url),
        };
        let mut out = String::with_capacity(s.len());
        if let Some(sc) = scheme {
            out.push_str(sc);
            out.push_str("://");
        }
        let mut prev_slash = false;
        for c in tail.chars() {
            if c == '/' && prev_slash {
                continue;
            }
            prev_slash = c == '/';
            out.push(c);
        }
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        out
    }
}

/// Opens the replica of a database registered while the fleet runs
/// (`register -replica URL DB`), as `replicate` opens a URL; the URL is
/// checked when it is registered.
#[derive(Debug)]
pub struct UrlOpener;

impl ReplicaOpener for UrlOpener {
    fn template_for(&self, url: &str) -> Result<Box<dyn ReplicaTemplate>> {
        let r = ReplicaConfig::from_url(url);
        r.open(&ClientPool::default())?;
        Ok(Box::new(Template::Database(Box::new(r), None)))
    }
}

impl ReplicaTemplate for Template {
    fn open(&self, pool: &ClientPool, rel: &str) -> Result<Arc<dyn ReplicaClient>> {
        match self {
            Template::Url(_) => ReplicaConfig::from_url(&self.expand(rel)).open(pool),
            Template::Replica(r, _) => r.with_relative_path(rel)?.open(pool),
            Template::Database(r, _) => r.open(pool),
        }
    }

    fn meta_dir(&self, db: &Path, rel: &str) -> MetaDir {
        match self {
            Template::Url(_) => MetaDir::for_db(db),
            Template::Replica(_, meta) => meta.meta_dir(db, Path::new(rel)),
            Template::Database(_, Some(meta)) => MetaDir::new(meta),
            Template::Database(_, None) => MetaDir::for_db(db),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn expands_and_checks() {
        let t = Template::parse("s3://bkt/backups/{path}?endpoint=http://x:1").unwrap();
        assert_eq!(
            t.expand("t1/app.db"),
            "s3://bkt/backups/t1/app.db?endpoint=http://x:1"
        );
        let t = Template::parse("file:///r/{dir}/{name}-replica").unwrap();
        assert_eq!(t.expand("a/b/x.db"), "file:///r/a/b/x.db-replica");
        assert_eq!(t.expand("x.db"), "file:///r/x.db-replica");
        assert!(Template::parse("file:///r/one").is_err());
        assert!(Template::parse("file:///r/{name}").is_err());
        assert!(Template::parse("file:///r/{tenant}/{path}").is_err());
        assert!(Template::parse("file:///r/{path").is_err());
    }

    #[test]
    fn directory_entries_append_the_relative_path() {
        let file = ReplicaConfig {
            kind: "file".into(),
            path: Some("/backups/tenants/".into()),
            ..Default::default()
        };
        let t = Template::Replica(Box::new(file), MetaRoot::Beside);
        assert_eq!(t.describe("a/x.db"), "file:///backups/tenants/a/x.db");
        let url = ReplicaConfig::from_url("s3://bkt/pre?endpoint=http://127.0.0.1:9&region=r");
        let r = url.with_relative_path("a/x.db").unwrap();
        assert_eq!(
            r.url.as_deref(),
            Some("s3://bkt/pre/a/x.db?endpoint=http://127.0.0.1:9&region=r")
        );
        let bare = ReplicaConfig {
            kind: "s3".into(),
            ..Default::default()
        };
        assert_eq!(
            bare.with_relative_path("x.db").unwrap().path.as_deref(),
            Some("x.db")
        );
    }
}
