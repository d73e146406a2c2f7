//! The `gs` backend (Google Cloud Storage) on OpenDAL's JSON-API client,
//! with Litestream 0.5.17's layout and metadata: keys
//! `<path>/ltx/<level>/<min>-<max>.ltx`, user metadata
//! `litestream-timestamp` (format spec §2).
//!
//! Credentials as Go's client finds them: `GOOGLE_APPLICATION_CREDENTIALS`
//! (a service account or authorized-user file), then the VM metadata
//! server. `STORAGE_EMULATOR_HOST` points at an emulator (fake-gcs-server)
//! over plain HTTP without credentials, as Go's client does.

use std::fmt;

use crate::error::{Error, Result};

/// Metadata key holding the LTX header timestamp (Go: `litestream-timestamp`).
pub const METADATA_TIMESTAMP: &str = "litestream-timestamp";

/// One bucket and path, as `gs://bucket/path` or the config's `bucket`
/// and `path` describe it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct GcsSettings {
    pub bucket: String,
    /// Key prefix; `""` or `"."` is the bucket's root.
    pub path: String,
    /// `STORAGE_EMULATOR_HOST` when set: an emulator over HTTP, unsigned.
    pub emulator_host: Option<String>,
}

impl fmt::Debug for GcsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcsSettings")
            .field("bucket", &self.bucket)
            .field("path", &self.path)
            .field("emulator_host", &self.emulator_host)
            .finish()
    }
}

impl GcsSettings {
    /// `gs://bucket/path` (the path cleaned, its leading slash dropped, as
    /// Litestream does), with `STORAGE_EMULATOR_HOST` from the environment.
    pub fn from_url(url: &str) -> Result<GcsSettings> {
        let (host, path) = super::split_bucket_url(url, "gs")?;
        Ok(GcsSettings::new(host, path))
    }

    /// Settings for `bucket` and `path`, with `STORAGE_EMULATOR_HOST` from
    /// the environment.
    pub fn new(bucket: String, path: String) -> GcsSettings {
        GcsSettings {
            bucket,
            path,
            emulator_host: std::env::var("STORAGE_EMULATOR_HOST")
                .ok()
                .filter(|h| !h.is_empty()),
        }
    }

    /// `gs://bucket/path`, for messages.
    pub fn location(&self) -> String {
        format!("gs://{}/{}", self.bucket, self.path.trim_matches('/'))
    }

    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<()> {
        if self.bucket.is_empty() {
            return Err(Error::InvalidInput("gs replica: bucket required".into()));
        }
        Ok(())
    }

    #[cfg_attr(not(feature = "gcs"), allow(dead_code))]
    /// The emulator's base URL: Go's client takes `host:port` and speaks
    /// HTTP to it; a value with a scheme is used as it is.
    fn emulator_endpoint(&self) -> Option<String> {
        self.emulator_host.as_ref().map(|h| {
            if h.contains("://") {
                h.trim_end_matches('/').to_string()
            } else {
                format!("http://{}", h.trim_end_matches('/'))
            }
        })
    }
}

/// What decides the operator: replicas with the same key share one
/// (one HTTP client and its connections); the path is per request.
#[cfg_attr(not(feature = "gcs"), allow(dead_code))]
pub(crate) fn operator_key(settings: &GcsSettings) -> String {
    format!("gs\0{}\0{:?}", settings.bucket, settings.emulator_host)
}

/// The operator for `settings`' bucket.
#[cfg(feature = "gcs")]
pub(crate) fn operator(settings: &GcsSettings) -> Result<opendal::Operator> {
    use opendal::services::Gcs;
    settings.validate()?;
    let mut b = Gcs::default().bucket(&settings.bucket).root("/");
    if let Some(e) = settings.emulator_endpoint() {
        b = b
            .endpoint(&e)
            .skip_signature()
            .disable_vm_metadata()
            .disable_config_load();
    }
    super::operator::build(b, &settings.location())
}

/// A client for `settings` on `op` (see [`operator`]), without the retry
/// layer (see [`super::from_url`]).
#[cfg(feature = "gcs")]
pub(crate) fn client_on(
    op: opendal::Operator,
    settings: &GcsSettings,
) -> super::operator::OperatorClient {
    super::operator::OperatorClient::new(
        op,
        "gs",
        settings.location(),
        &settings.path,
        Some(METADATA_TIMESTAMP),
        super::operator::Upload::Compose,
        super::operator::Listing::Prefixes,
    )
}

/// Without the `gcs` feature: an error naming the replica.
#[cfg(not(feature = "gcs"))]
pub(crate) fn operator(settings: &GcsSettings) -> Result<std::convert::Infallible> {
    Err(Error::InvalidInput(format!(
        "{}: this build has no Google Cloud Storage support (feature \"gcs\")",
        settings.location()
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_as_litestream_reads_them() {
        let s = GcsSettings::from_url("gs://bkt/some/../db/").unwrap();
        assert_eq!((s.bucket.as_str(), s.path.as_str()), ("bkt", "db"));
        assert_eq!(GcsSettings::from_url("gs://bkt").unwrap().path, ".");
        assert!(GcsSettings::from_url("gs:///db").is_err());
        assert!(GcsSettings::from_url("s3://bkt/db").is_err());
        let mut e = GcsSettings::new("b".into(), "p".into());
        e.emulator_host = Some("127.0.0.1:4443".into());
        assert_eq!(
            e.emulator_endpoint().as_deref(),
            Some("http://127.0.0.1:4443")
        );
        e.emulator_host = Some("https://gcs.local/".into());
        assert_eq!(e.emulator_endpoint().as_deref(), Some("https://gcs.local"));
    }
}
