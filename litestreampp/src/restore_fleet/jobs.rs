//! The databases to restore: one [`Job`] each, and the checks every path
//! from a listing or a config passes before anything is written.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use globset::{GlobBuilder, GlobMatcher};
use litestreampp_core::client::{ClientPool, FileInfo, ReplicaClient};
use litestreampp_core::discover::{Found, FoundReplica, Layout, find_replicas};
use litestreampp_core::redact::redact_url;

/// Where one database's replica is: the settings layer opens it (a config
/// entry, or a replica found under a URL pattern).
pub trait ReplicaSource: std::fmt::Debug + Send + Sync {
    fn open(&self, pool: &ClientPool) -> Result<Arc<dyn ReplicaClient>>;
}

/// One database to restore.
#[derive(Debug, Clone)]
pub struct Job {
    /// The replica, for messages and the report (no credentials).
    pub source: String,
    /// The output path relative to the output root: the journal's key.
    pub rel: PathBuf,
    pub output: PathBuf,
    pub replica: Arc<dyn ReplicaSource>,
    /// Its LTX files, when a listing found them (else listed at restore).
    pub files: Option<Vec<FileInfo>>,
    /// It has a Litestream 0.3 tree (or may have: unknown until listed).
    pub v3: bool,
}

impl Job {
    /// A job for a replica a listing found at `rel` under the output root.
    pub fn found(
        source: String,
        rel: &str,
        out: &Path,
        replica: Arc<dyn ReplicaSource>,
        r: FoundReplica,
    ) -> Job {
        Job {
            source,
            rel: PathBuf::from(rel),
            output: out.join(rel),
            replica,
            files: Some(r.files),
            v3: r.v3,
        }
    }
}

/// Splits jobs into those whose paths stay inside the output directory
/// and those refused, with the reason.
pub fn check_paths(jobs: Vec<Job>) -> (Vec<Job>, Vec<(Job, anyhow::Error)>) {
    let mut refused = Vec::new();
    let mut checked = Vec::new();
    for j in jobs {
        match safe_rel(&j.rel.to_string_lossy()) {
            Ok(_) => checked.push(j),
            Err(e) => refused.push((j, e)),
        }
    }
    (checked, refused)
}

/// `rel` (from a replica listing or a config) as a relative path of plain
/// components: no `..`, no root, nothing empty.
pub fn safe_rel(rel: &str) -> Result<PathBuf> {
    let bad = rel.is_empty()
        || rel.starts_with('/')
        || rel.contains('\0')
        || rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    let p = PathBuf::from(rel);
    if bad || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        bail!(
            "refusing replica path {rel:?}: it must stay inside the output directory (no '..', no absolute path)"
        );
    }
    Ok(p)
}

/// The matcher of a pattern's path part (`*` stays within a directory).
pub fn compile(pattern: &str) -> Result<GlobMatcher> {
    Ok(GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .with_context(|| format!("pattern {pattern:?}"))?
        .compile_matcher())
}

/// Splits `s3://bkt/a/**/*.db?query` / `file:///a/**/*.db` into scheme,
/// bucket, path and query.
pub fn split_url(url: &str) -> Result<(&str, &str, &str, &str)> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        anyhow!(
            "{}: expected SCHEME://BUCKET/GLOB (s3, oss, gs, abs, webdav; nats://HOST/BUCKET/GLOB; sftp://USER@HOST/ABSOLUTE/GLOB) or file:///GLOB",
            redact_url(url)
        )
    })?;
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    Ok((scheme, host, path, query))
}

/// `root/rel`, either of which may be empty.
pub fn join(root: &str, rel: &str) -> String {
    match (root.is_empty(), rel.is_empty()) {
        (true, _) => rel.to_string(),
        (false, true) => root.to_string(),
        (false, false) => format!("{root}/{rel}"),
    }
}

/// The output name of a replica at `path` under `root`: the path, or the
/// root's last component when the root itself is the replica.
pub fn rel_name(path: &str, root: &str) -> String {
    if path.is_empty() {
        root.rsplit('/').next().unwrap_or("").to_string()
    } else {
        path.to_string()
    }
}

/// What a listing found besides the jobs.
#[derive(Debug, Default)]
pub struct Listing {
    pub replicas: usize,
    pub unmatched: usize,
    pub unrecognised: Vec<String>,
}

impl Listing {
    pub fn new(found: &Found) -> Listing {
        Listing {
            replicas: found.replicas.len(),
            unmatched: 0,
            unrecognised: found.unrecognised.clone(),
        }
    }
}

/// One listing of a replica root, sorted into replicas.
pub async fn list(client: &dyn ReplicaClient, layout: Layout) -> Result<Found> {
    let entries = client
        .list_tree()
        .await
        .with_context(|| format!("list {}", client.location()))?;
    Ok(find_replicas(&entries, layout))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_stay_inside() {
        assert!(safe_rel("t1/app.db").is_ok());
        for bad in [
            "../x.db",
            "/etc/x.db",
            "a/../../x.db",
            "a//b.db",
            "",
            "./a.db",
            "a/.",
        ] {
            let e = safe_rel(bad).unwrap_err().to_string();
            assert!(e.contains("refusing"), "{bad}: {e}");
        }
    }

    #[test]
    fn urls_split_into_parts() {
        assert_eq!(
            split_url("s3://bkt/a/**/*.db?endpoint=http://x").unwrap(),
            ("s3", "bkt", "a/**/*.db", "endpoint=http://x")
        );
        assert_eq!(
            split_url("file:///r/**/*.db").unwrap(),
            ("file", "", "r/**/*.db", "")
        );
        assert_eq!(rel_name("", "backups/one.db"), "one.db");
        assert_eq!(rel_name("t/a.db", "backups"), "t/a.db");
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("r", ""), "r");
    }
}
