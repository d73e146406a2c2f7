//! The `oss` backend (Alibaba Cloud Object Storage Service) through OSS's
//! S3-compatible API, on the S3 client: Litestream 0.5.17's OSS layout is
//! the S3 one (`<path>/<level %04x>/<min>-<max>.ltx`, metadata
//! `litestream-timestamp`), so only the settings differ: the URL
//! `oss://bucket[.oss-<region>.aliyuncs.com]/path`, the region
//! (`cn-hangzhou` by default, as in Go), the endpoint
//! `https://s3.oss-<region>.aliyuncs.com` (Alibaba's S3-compatible one),
//! virtual-hosted addressing (OSS has no path style), and the credentials
//! Go's OSS client reads from the environment (`OSS_ACCESS_KEY_ID`,
//! `OSS_ACCESS_KEY_SECRET`).

use std::collections::HashMap;

use super::s3::{S3Settings, Service, bool_query, str_query, with_scheme};
use crate::error::{Error, Result};
use crate::redact::redact_url;

/// The region when none is given (Go's `oss.DefaultRegion`).
pub const DEFAULT_REGION: &str = "cn-hangzhou";

/// `oss://bucket[.oss-<region>.aliyuncs.com]/path`, as Go reads it. Go
/// reads nothing else from the URL; we also take `endpoint`, `region` and
/// `forcePathStyle`, as `s3://` URLs do, so that a command line can reach
/// another endpoint without a config file. Defaults are applied by
/// [`complete`].
pub fn from_url(url: &str) -> Result<S3Settings> {
    let (host, path) = super::split_bucket_url(url, "oss")?;
    let parsed = url::Url::parse(url)
        .map_err(|e| Error::InvalidInput(format!("replica URL {}: {e}", redact_url(url))))?;
    let q: HashMap<String, String> = parsed
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    for k in q.keys() {
        if !matches!(
            k.as_str(),
            "endpoint" | "region" | "forcePathStyle" | "force-path-style"
        ) {
            return Err(Error::InvalidInput(format!(
                "replica URL {}: unknown query parameter {k:?} (oss:// URLs take endpoint, region and forcePathStyle; credentials come from the config or OSS_ACCESS_KEY_ID / OSS_ACCESS_KEY_SECRET)",
                redact_url(url)
            )));
        }
    }
    let (bucket, region) = split_host(&host);
    Ok(S3Settings {
        service: Service::Oss,
        bucket,
        path,
        region: str_query(&q, &["region"]).or(region),
        endpoint: str_query(&q, &["endpoint"]).map(|e| with_scheme(&e)),
        force_path_style: bool_query(&q, &["forcePathStyle", "force-path-style"])?,
        ..S3Settings::default()
    })
}

/// The bucket and region of a URL's host: `bucket.oss-<region>.aliyuncs.com`
/// names both (`-internal` endpoints too), anything else is the bucket.
fn split_host(host: &str) -> (String, Option<String>) {
    if let Some((bucket, rest)) = host.split_once(".oss-")
        && let Some(region) = rest.strip_suffix(".aliyuncs.com")
    {
        let region = region.trim_end_matches("-internal");
        return (bucket.to_string(), Some(region.to_string()));
    }
    (host.to_string(), None)
}

/// `s` with OSS's defaults where nothing was given: the region, Alibaba's
/// S3-compatible endpoint for it, virtual-hosted addressing, and the
/// credentials `env` holds (the process environment in use; a parameter
/// so tests need not change it).
pub fn complete(mut s: S3Settings, env: impl Fn(&str) -> Option<String>) -> S3Settings {
    s.service = Service::Oss;
    let region = s
        .region
        .clone()
        .unwrap_or_else(|| DEFAULT_REGION.to_string());
    if s.endpoint.is_none() {
        s.endpoint = Some(format!("https://s3.oss-{region}.aliyuncs.com"));
    }
    // OSS serves virtual-hosted requests only (the S3 client's default
    // with an endpoint is path style).
    s.force_path_style = Some(s.force_path_style.unwrap_or(false));
    s.region = Some(region);
    if s.access_key_id.is_none() && s.secret_access_key.is_none() {
        s.access_key_id = env("OSS_ACCESS_KEY_ID").filter(|v| !v.is_empty());
        s.secret_access_key = env("OSS_ACCESS_KEY_SECRET").filter(|v| !v.is_empty());
    }
    s
}

/// [`complete`] with the process environment.
pub fn complete_from_env(s: S3Settings) -> S3Settings {
    complete(s, |k| std::env::var(k).ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_defaults_as_litestream_reads_them() {
        let s = from_url("oss://bkt.oss-cn-shanghai.aliyuncs.com/a/../db").unwrap();
        assert_eq!(
            (s.bucket.as_str(), s.path.as_str(), s.region.as_deref()),
            ("bkt", "db", Some("cn-shanghai"))
        );
        let s = complete(s, |_| None);
        assert_eq!(
            s.endpoint.as_deref(),
            Some("https://s3.oss-cn-shanghai.aliyuncs.com")
        );
        assert_eq!(s.force_path_style, Some(false));
        assert_eq!(s.location(), "oss://bkt/db");
        let s = complete(from_url("oss://bkt/db").unwrap(), |k| {
            Some(format!("env-{k}"))
        });
        assert_eq!(s.region.as_deref(), Some(DEFAULT_REGION));
        assert_eq!(
            s.endpoint.as_deref(),
            Some("https://s3.oss-cn-hangzhou.aliyuncs.com")
        );
        assert_eq!(s.access_key_id.as_deref(), Some("env-OSS_ACCESS_KEY_ID"));
        assert_eq!(
            s.secret_access_key.as_deref(),
            Some("env-OSS_ACCESS_KEY_SECRET")
        );
        let s = from_url("oss://bkt.oss-cn-beijing-internal.aliyuncs.com/db?endpoint=127.0.0.1:9&forcePathStyle=true")
            .unwrap();
        assert_eq!(s.region.as_deref(), Some("cn-beijing"));
        assert_eq!(s.endpoint.as_deref(), Some("https://127.0.0.1:9"));
        assert_eq!(s.force_path_style, Some(true));
        assert!(from_url("oss://bkt/db?accessKeyId=x").is_err());
        assert!(from_url("s3://bkt/db").is_err());
    }
}
