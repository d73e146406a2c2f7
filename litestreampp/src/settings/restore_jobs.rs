//! The jobs of a fleet restore, from a replica URL pattern (one listing
//! of the pattern's literal prefix) or a config file (path entries, and
//! directory entries by listing their replica).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, anyhow, bail};
use litestreampp_core::client::azure::AzureSettings;
use litestreampp_core::client::gcs::GcsSettings;
use litestreampp_core::client::nats::NatsSettings;
use litestreampp_core::client::oss;
use litestreampp_core::client::s3::S3Settings;
use litestreampp_core::client::sftp::SftpSettings;
use litestreampp_core::client::webdav::WebdavSettings;
use litestreampp_core::client::{ClientPool, ReplicaClient};
use litestreampp_core::discover::Layout;
use litestreampp_core::redact::redact_url;

use super::{Config, ReplicaConfig, ReplicaLocation, expand_path};
use crate::fleet::patterns::literal_root;
use crate::restore_fleet::{Job, Listing, ReplicaSource, compile, join, list, rel_name, split_url};

impl ReplicaSource for ReplicaConfig {
    fn open(&self, pool: &ClientPool) -> Result<Arc<dyn ReplicaClient>> {
        ReplicaConfig::open(self, pool)
    }
}

impl ReplicaSource for ReplicaLocation {
    fn open(&self, pool: &ClientPool) -> Result<Arc<dyn ReplicaClient>> {
        ReplicaLocation::open(self, pool)
    }
}

/// Jobs for the replicas under a URL pattern.
pub async fn url_jobs(url: &str, out: &Path, pool: &ClientPool) -> Result<(Vec<Job>, Listing)> {
    let (scheme, bucket, path, query) = split_url(url)?;
    let redacted = redact_url(url);
    match scheme {
        "s3" | "oss" | "gs" | "abs" | "webdav" | "webdavs" | "nats" | "sftp" => {
            // A NATS URL names the server, then the bucket: the bucket is
            // where the others have theirs, the rest is the path in it.
            let nats_bucket;
            let (bucket, path) = if scheme == "nats" {
                let (b, p) = path.split_once('/').unwrap_or((path, ""));
                nats_bucket = format!("{bucket}/{b}");
                (nats_bucket.as_str(), p)
            } else {
                (bucket, path)
            };
            if bucket.is_empty() {
                bail!("{redacted}: bucket required");
            }
            let glob = compile(path.trim_start_matches('/'))?;
            let root = literal_root(&format!("/{}", path.trim_start_matches('/')));
            let root = root.to_string_lossy().trim_start_matches('/').to_string();
            let base = if query.is_empty() {
                format!("{scheme}://{bucket}")
            } else {
                format!("{scheme}://{bucket}?{query}")
            };
            // The location of the replica at `path` in the bucket.
            let at = |path: &str| -> Result<ReplicaLocation> {
                Ok(match scheme {
                    "s3" => {
                        let mut s = S3Settings::from_url(&base).map_err(|e| anyhow!(e))?;
                        s.path = path.to_string();
                        ReplicaLocation::S3(Box::new(s))
                    }
                    "oss" => {
                        let mut s =
                            oss::complete_from_env(oss::from_url(&base).map_err(|e| anyhow!(e))?);
                        s.path = path.to_string();
                        ReplicaLocation::S3(Box::new(s))
                    }
                    "abs" => {
                        let mut s = AzureSettings::from_url(&base)
                            .map_err(|e| anyhow!(e))?
                            .with_env_credentials();
                        s.path = path.to_string();
                        ReplicaLocation::Azure(Box::new(s))
                    }
                    "nats" => {
                        let mut s = NatsSettings::from_url(&base).map_err(|e| anyhow!(e))?;
                        s.path = path.to_string();
                        ReplicaLocation::Nats(Box::new(s))
                    }
                    "webdav" | "webdavs" => {
                        let mut s = WebdavSettings::from_url(&base).map_err(|e| anyhow!(e))?;
                        s.path = path.to_string();
                        ReplicaLocation::Webdav(Box::new(s))
                    }
                    // The URL's path is absolute on the server, as in Go.
                    "sftp" => {
                        let mut s = SftpSettings::from_url(&base).map_err(|e| anyhow!(e))?;
                        s.path = format!("/{path}");
                        ReplicaLocation::Sftp(Box::new(s))
                    }
                    _ => {
                        if !query.is_empty() {
                            bail!(
                                "{redacted}: gs:// URLs take no query (STORAGE_EMULATOR_HOST and GOOGLE_APPLICATION_CREDENTIALS come from the environment)"
                            );
                        }
                        ReplicaLocation::Gcs(GcsSettings::new(bucket.to_string(), path.to_string()))
                    }
                })
            };
            let layout = if scheme == "s3" || scheme == "oss" {
                Layout::LevelHex
            } else {
                Layout::LtxDir
            };
            let client = at(&root)?.open(pool)?;
            let found = list(client.as_ref(), layout).await?;
            let mut jobs = Vec::new();
            let mut listing = Listing::new(&found);
            for r in found.replicas {
                let full = join(&root, &r.path);
                if !glob.is_match(&full) {
                    listing.unmatched += 1;
                    continue;
                }
                let rel = rel_name(&r.path, &root);
                jobs.push(Job::found(
                    redact_url(&format!("{scheme}://{bucket}/{full}")),
                    &rel,
                    out,
                    Arc::new(at(&full)?),
                    r,
                ));
            }
            Ok((jobs, listing))
        }
        "file" => {
            if !bucket.is_empty() && bucket != "localhost" {
                bail!("{redacted}: expected file:///absolute/glob");
            }
            let pattern = format!("/{}", path.trim_start_matches('/'));
            let glob = compile(&pattern)?;
            let root = literal_root(&pattern);
            let client = ReplicaLocation::File(root.clone()).open(pool)?;
            let found = list(client.as_ref(), Layout::LtxDir).await?;
            let mut jobs = Vec::new();
            let mut listing = Listing::new(&found);
            let root_s = root.to_string_lossy().to_string();
            for r in found.replicas {
                let full = root.join(&r.path);
                if !glob.is_match(&full) {
                    listing.unmatched += 1;
                    continue;
                }
                let rel = rel_name(&r.path, &root_s);
                jobs.push(Job::found(
                    format!("file://{}", full.display()),
                    &rel,
                    out,
                    Arc::new(ReplicaLocation::File(full)),
                    r,
                ));
            }
            Ok((jobs, listing))
        }
        other => bail!(
            "{redacted}: unsupported scheme {other:?} (supported: s3, oss, gs, abs, webdav, webdavs, nats, sftp, file)"
        ),
    }
}

/// Jobs for the databases of a config file whose paths match `pattern`.
/// Jobs go to `output_dir`, else to each database's own path; the
/// output root is `output_dir`, else the pattern's literal directory.
pub async fn config_jobs(
    cfg: &Config,
    pattern: &str,
    output_dir: Option<&Path>,
    pool: &ClientPool,
) -> Result<(Vec<Job>, Listing, PathBuf)> {
    let pattern = expand_path(pattern)?.to_string_lossy().to_string();
    let glob = compile(&pattern)?;
    let root = literal_root(&pattern);
    let out_root = output_dir.map_or_else(|| root.clone(), Path::to_path_buf);
    let mut jobs = Vec::new();
    let mut listing = Listing::default();
    let rel_of = |p: &Path| -> Result<PathBuf> {
        Ok(p.strip_prefix(&root)
            .map_err(|_| anyhow!("{} is not under {}", p.display(), root.display()))?
            .to_path_buf())
    };
    for db in &cfg.dbs {
        let Some(replica) = &db.replica else { continue };
        listing.replicas += 1;
        if !glob.is_match(&db.path) {
            listing.unmatched += 1;
            continue;
        }
        let rel = rel_of(&db.path)?;
        jobs.push(Job {
            source: replica.describe(),
            output: match output_dir {
                Some(o) => o.join(&rel),
                None => db.path.clone(),
            },
            rel,
            replica: Arc::new(replica.clone()),
            files: None,
            v3: true,
        });
    }
    for dir in &cfg.dirs {
        let client = dir.replica.open(pool)?;
        let layout = if matches!(dir.replica.kind.as_str(), "s3" | "oss") {
            Layout::LevelHex
        } else {
            Layout::LtxDir
        };
        let found = list(client.as_ref(), layout).await?;
        listing.replicas += found.replicas.len();
        listing
            .unrecognised
            .extend(found.unrecognised.iter().cloned());
        for r in found.replicas {
            let local = match crate::restore_fleet::safe_rel(&r.path) {
                Ok(sub) => dir.dir.join(sub),
                Err(_) => {
                    // Refused with the others before anything is written.
                    jobs.push(Job {
                        source: format!("{} ({})", r.path, dir.replica.describe()),
                        rel: PathBuf::from(&r.path),
                        output: out_root.join(&r.path),
                        replica: Arc::new(dir.replica.clone()),
                        files: None,
                        v3: false,
                    });
                    continue;
                }
            };
            if !glob.is_match(&local) {
                listing.unmatched += 1;
                continue;
            }
            let replica = dir.replica.with_relative_path(&r.path)?;
            let rel = rel_of(&local)?;
            jobs.push(Job {
                source: replica.describe(),
                output: match output_dir {
                    Some(o) => o.join(&rel),
                    None => local,
                },
                rel,
                replica: Arc::new(replica),
                files: Some(r.files),
                v3: r.v3,
            });
        }
    }
    Ok((jobs, listing, out_root))
}
