//! The `s3` backend on aws-sdk-s3, with Litestream 0.5.17's layout: keys
//! `<path>/<level as %04x>/<min>-<max>.ltx` (no `ltx/` segment), user
//! metadata `litestream-timestamp` (the LTX header time, RFC 3339 with
//! milliseconds) on every upload (spec §2).
//!
//! Settings that S3-compatible services need are the defaults: request
//! checksums only when an operation requires them (no aws-chunked
//! encoding), Content-MD5 on uploads and batch deletes, path-style
//! addressing for custom endpoints. The SDK's own retries are off: one
//! retry layer ([`super::retry`]) wraps every remote backend.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::redact::redact_url;

#[cfg(feature = "s3")]
mod connection;
#[cfg(feature = "s3")]
mod errors;
#[cfg(feature = "s3")]
mod sdk;
#[cfg(feature = "s3")]
mod upload;
#[cfg(feature = "s3")]
pub use connection::S3Connection;
#[cfg(feature = "s3")]
pub(crate) use errors::map_err;
#[cfg(feature = "s3")]
pub use sdk::S3ReplicaClient;

/// Metadata key holding the LTX header timestamp.
pub const METADATA_TIMESTAMP: &str = "litestream-timestamp";
/// Keys per DeleteObjects request.
pub const MAX_KEYS: usize = 1000;
/// Smallest part S3 accepts (except the last).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// Default multipart part size (objects below it use one PutObject):
/// 16 MiB, within AWS's advice of 8–16 MB parts (Litestream: 5 MiB).
pub const DEFAULT_PART_SIZE: u64 = 16 << 20;
/// Default parts in flight per upload.
pub const DEFAULT_CONCURRENCY: usize = 5;

/// Whose S3 API a replica speaks: Amazon's and its compatibles', or
/// Alibaba Cloud OSS's (`oss://`, see [`super::oss`]). It names the
/// replica in messages and metrics; requests are the same.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Service {
    #[default]
    S3,
    Oss,
}

impl Service {
    /// The URL scheme and replica type.
    pub fn scheme(self) -> &'static str {
        match self {
            Service::S3 => "s3",
            Service::Oss => "oss",
        }
    }
}

/// Everything needed to reach one bucket and prefix, as Litestream's URL
/// and YAML keys describe it. `Debug` never prints secrets.
#[derive(Clone, Default)]
pub struct S3Settings {
    pub service: Service,
    pub bucket: String,
    /// Key prefix, used verbatim (Litestream: `s3://b/a/b` → `a/b`, bare
    /// `s3://b` → `.`).
    pub path: String,
    pub region: Option<String>,
    /// Custom endpoint (MinIO, R2, B2, Tigris, moto, ...).
    pub endpoint: Option<String>,
    /// Path-style addressing; defaults to true when an endpoint is set.
    pub force_path_style: Option<bool>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub part_size: Option<u64>,
    pub concurrency: Option<usize>,
    pub sign_payload: Option<bool>,
    pub require_content_md5: Option<bool>,
    pub skip_verify: bool,
    pub storage_class: Option<String>,
    pub sse_customer_algorithm: Option<String>,
    pub sse_customer_key: Option<String>,
    pub sse_customer_key_path: Option<PathBuf>,
    pub sse_kms_key_id: Option<String>,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |o: &Option<String>| o.as_ref().map(|_| "<redacted>");
        f.debug_struct("S3Settings")
            .field("service", &self.service)
            .field("bucket", &self.bucket)
            .field("path", &self.path)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("force_path_style", &self.force_path_style)
            .field("access_key_id", &redacted(&self.access_key_id))
            .field("secret_access_key", &redacted(&self.secret_access_key))
            .field("part_size", &self.part_size)
            .field("concurrency", &self.concurrency)
            .field("sign_payload", &self.sign_payload)
            .field("require_content_md5", &self.require_content_md5)
            .field("storage_class", &self.storage_class)
            .field("sse_customer_key", &redacted(&self.sse_customer_key))
            .field("sse_kms_key_id", &self.sse_kms_key_id)
            .finish()
    }
}

pub(crate) fn bool_query(q: &HashMap<String, String>, names: &[&str]) -> Result<Option<bool>> {
    for n in names {
        if let Some(v) = q.get(*n) {
            return match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "" => Ok(Some(true)),
                "false" | "0" | "no" => Ok(Some(false)),
                other => Err(Error::InvalidInput(format!(
                    "replica URL: {n}={other:?} is not a boolean"
                ))),
            };
        }
    }
    Ok(None)
}

pub(crate) fn str_query(q: &HashMap<String, String>, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| q.get(*n).filter(|v| !v.is_empty()).cloned())
}

/// Adds `https://` to an endpoint without a scheme.
pub(crate) fn with_scheme(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("https://{endpoint}")
    }
}

impl S3Settings {
    /// What decides the SDK client: endpoint, region, addressing,
    /// credentials and request signing. Settings with the same key can
    /// share one client (bucket, prefix and upload options are per
    /// request). A hash: credentials never leave this function.
    pub fn connection_key(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (
            &self.region,
            &self.endpoint,
            self.force_path_style,
            &self.access_key_id,
            &self.secret_access_key,
            self.sign_payload,
            self.require_content_md5,
            self.skip_verify,
        )
            .hash(&mut h);
        h.finish()
    }

    /// Parses `s3://bucket/path?endpoint=…&region=…&forcePathStyle=true`
    /// (query keys in camelCase or kebab-case, as Litestream accepts).
    pub fn from_url(url: &str) -> Result<S3Settings> {
        let (host, path) = super::split_bucket_url(url, "s3")?;
        let parsed = url::Url::parse(url)
            .map_err(|e| Error::InvalidInput(format!("replica URL {}: {e}", redact_url(url))))?;
        let q: HashMap<String, String> = parsed
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let mut s = S3Settings {
            path,
            ..S3Settings::default()
        };
        // Virtual-hosted AWS names: <bucket>.s3[.<region>|-<region>].amazonaws.com
        if let Some(rest) = host.strip_suffix(".amazonaws.com")
            && let Some(idx) = rest.find(".s3")
        {
            s.bucket = rest[..idx].to_string();
            let region = rest[idx + 3..].trim_start_matches(['.', '-']);
            if !region.is_empty() {
                s.region = Some(region.to_string());
            }
        } else {
            s.bucket = host;
        }
        if let Some(e) = str_query(&q, &["endpoint"]) {
            s.endpoint = Some(with_scheme(&e));
        }
        s.region = str_query(&q, &["region"]).or(s.region);
        s.force_path_style = bool_query(&q, &["forcePathStyle", "force-path-style"])?;
        s.skip_verify = bool_query(&q, &["skipVerify", "skip-verify"])?.unwrap_or(false);
        s.sign_payload = bool_query(&q, &["signPayload", "sign-payload"])?;
        s.require_content_md5 = bool_query(&q, &["requireContentMD5", "require-content-md5"])?;
        if let Some(c) = str_query(&q, &["concurrency"]) {
            s.concurrency = Some(c.parse().map_err(|_| {
                Error::InvalidInput(format!("replica URL: concurrency={c:?} is not a number"))
            })?);
        }
        if let Some(p) = str_query(&q, &["partSize", "part-size"]) {
            s.part_size = Some(parse_byte_size(&p)?);
        }
        s.storage_class = str_query(&q, &["storageClass", "storage-class"]);
        s.sse_customer_algorithm =
            str_query(&q, &["sseCustomerAlgorithm", "sse-customer-algorithm"]);
        s.sse_customer_key = str_query(&q, &["sseCustomerKey", "sse-customer-key"]);
        s.sse_kms_key_id = str_query(&q, &["sseKmsKeyId", "sse-kms-key-id"]);
        if s.endpoint.is_none()
            && let Ok(e) = std::env::var("LITESTREAM_S3_ENDPOINT")
            && !e.is_empty()
        {
            s.endpoint = Some(with_scheme(&e));
        }
        Ok(s)
    }

    /// `s3://bucket/path` (`oss://…` for OSS), for messages.
    pub fn location(&self) -> String {
        format!("{}://{}/{}", self.service.scheme(), self.bucket, self.path)
    }

    fn part_size(&self) -> u64 {
        self.part_size.unwrap_or(DEFAULT_PART_SIZE)
    }

    #[cfg_attr(not(feature = "s3"), allow(dead_code))]
    fn concurrency(&self) -> usize {
        self.concurrency.unwrap_or(DEFAULT_CONCURRENCY).max(1)
    }

    /// Checks the settings that can be checked without the network.
    pub fn validate(&self) -> Result<()> {
        let loc = self.location();
        if self.bucket.is_empty() {
            return Err(Error::InvalidInput(format!(
                "{} replica: bucket required",
                self.service.scheme()
            )));
        }
        if self.part_size() < MIN_PART_SIZE {
            return Err(Error::InvalidInput(format!(
                "{loc}: part size {} is below S3's minimum of {MIN_PART_SIZE} bytes",
                self.part_size()
            )));
        }
        if self.skip_verify {
            return Err(Error::InvalidInput(format!(
                "{loc}: skip-verify is not supported; trust the server's certificate instead by pointing AWS_CA_BUNDLE at its CA"
            )));
        }
        if self.sse_customer_key.is_some() && self.sse_customer_key_path.is_some() {
            return Err(Error::InvalidInput(format!(
                "{loc}: sse-customer-key and sse-customer-key-path are mutually exclusive"
            )));
        }
        if (self.sse_customer_key.is_some() || self.sse_customer_key_path.is_some())
            && self.sse_kms_key_id.is_some()
        {
            return Err(Error::InvalidInput(format!(
                "{loc}: SSE-C and SSE-KMS cannot be combined"
            )));
        }
        if let Some(a) = &self.sse_customer_algorithm
            && a != "AES256"
        {
            return Err(Error::InvalidInput(format!(
                "{loc}: sse-customer-algorithm must be AES256"
            )));
        }
        Ok(())
    }
}

/// Parses `5MB`, `16MiB`, `10485760`.
pub fn parse_byte_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..digits].parse().map_err(|_| {
        Error::InvalidInput(format!(
            "size {s:?}: expected a number of bytes such as 5MB"
        ))
    })?;
    let mult: u64 = match t[digits..].trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" => 1000,
        "KIB" | "K" => 1024,
        "MB" => 1000 * 1000,
        "MIB" | "M" => 1024 * 1024,
        "GB" => 1000 * 1000 * 1000,
        "GIB" | "G" => 1024 * 1024 * 1024,
        u => {
            return Err(Error::InvalidInput(format!(
                "size {s:?}: unknown unit {u:?}"
            )));
        }
    };
    Ok(n * mult)
}

pub(crate) fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// `path.Clean` of Go for slash-separated paths.
pub(crate) fn clean_path(p: &str) -> String {
    let abs = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|s| *s != "..") {
                    out.pop();
                } else if !abs {
                    out.push("..");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    if abs {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".into()
    } else {
        joined
    }
}

/// Go's RFC3339Nano for a millisecond timestamp: trailing zeros trimmed.
pub fn format_timestamp(ms: i64) -> String {
    let ts = jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let base = ts.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    let frac = ms.rem_euclid(1000);
    if frac == 0 {
        format!("{base}Z")
    } else {
        let f = format!("{frac:03}");
        format!("{base}.{}Z", f.trim_end_matches('0'))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::TxId;

    #[test]
    fn urls() {
        let s = S3Settings::from_url(
            "s3://bkt/a/b/?endpoint=127.0.0.1:9000&region=eu-west-1&forcePathStyle=true",
        )
        .unwrap();
        assert_eq!((s.bucket.as_str(), s.path.as_str()), ("bkt", "a/b"));
        assert_eq!(s.endpoint.as_deref(), Some("https://127.0.0.1:9000"));
        assert_eq!(s.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s.force_path_style, Some(true));
        assert_eq!(S3Settings::from_url("s3://bkt").unwrap().path, ".");
        assert_eq!(S3Settings::from_url("s3://bkt/x/../y").unwrap().path, "y");
        let aws = S3Settings::from_url("s3://mybucket.s3.us-west-2.amazonaws.com/db").unwrap();
        assert_eq!(
            (aws.bucket.as_str(), aws.region.as_deref()),
            ("mybucket", Some("us-west-2"))
        );
        let q = S3Settings::from_url(
            "s3://b/p?part-size=16MiB&concurrency=8&require-content-md5=false&sign-payload=false",
        )
        .unwrap();
        assert_eq!(q.part_size, Some(16 << 20));
        assert_eq!(q.concurrency, Some(8));
        assert_eq!(q.require_content_md5, Some(false));
        assert!(S3Settings::from_url("s3://b/p?forcePathStyle=maybe").is_err());
        assert!(S3Settings::from_url("s3:///p").is_err());
    }

    #[test]
    fn keys_match_litestream() {
        let c = S3ReplicaClient::new(S3Settings::from_url("s3://b/db").unwrap()).unwrap();
        assert_eq!(
            c.key(9, TxId(1), TxId(0x1a)),
            "db/0009/0000000000000001-000000000000001a.ltx"
        );
        let bare = S3ReplicaClient::new(S3Settings::from_url("s3://b").unwrap()).unwrap();
        assert_eq!(
            bare.key(0, TxId(2), TxId(2)),
            "./0000/0000000000000002-0000000000000002.ltx"
        );
    }

    #[test]
    fn timestamps_as_go_formats_them() {
        assert_eq!(
            format_timestamp(1_795_000_000_153),
            "2026-11-18T11:06:40.153Z"
        );
        assert_eq!(
            format_timestamp(1_795_000_000_150),
            "2026-11-18T11:06:40.15Z"
        );
        assert_eq!(format_timestamp(1_795_000_000_000), "2026-11-18T11:06:40Z");
    }

    #[test]
    fn debug_hides_secrets() {
        let s = S3Settings {
            bucket: "b".into(),
            access_key_id: Some("AKIDSECRETLOOKING".into()),
            secret_access_key: Some("very-secret-value".into()),
            sse_customer_key: Some("k".repeat(32)),
            ..Default::default()
        };
        let d = format!("{s:?}");
        assert!(
            !d.contains("very-secret-value")
                && !d.contains("AKIDSECRETLOOKING")
                && !d.contains(&"k".repeat(32)),
            "{d}"
        );
        assert!(!redact_url("s3://b/p?secret-access-key=abc&region=x").contains("abc"));
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("5MB").unwrap(), 5_000_000);
        assert_eq!(parse_byte_size("16MiB").unwrap(), 16 << 20);
        assert_eq!(parse_byte_size("1024").unwrap(), 1024);
        assert!(parse_byte_size("lots").is_err());
    }
}
