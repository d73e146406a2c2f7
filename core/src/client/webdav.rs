//! The `webdav` backend on OpenDAL's WebDAV client, with Litestream
//! 0.5.17's layout: files `<path>/ltx/<level>/<min>-<max>.ltx` under the
//! server URL. WebDAV keeps no metadata that Go reads: a listing gives the
//! modification time, as in Go; where the exact time matters (restores to
//! a timestamp) it is read from each file's LTX header.
//!
//! Uploads differ from Go's on purpose: Go PUTs to the final name, which
//! a reader (or a crash) can see half-written. Here a file goes up under a
//! temporary name (`<name>.tmp-<tag>`, which never parses as an LTX name)
//! and is MOVEd into place, so the replica only ever shows whole files. The
//! PUT streams the file from disk ([`DavWriter`]): OpenDAL's WebDAV writer
//! would hold the whole file in memory, and a snapshot can be large. The
//! PUT and the MOVE are our two requests; OpenDAL's rename would add two
//! PROPFINDs to every upload. Listings, reads and deletes are OpenDAL's.

use std::fmt;

use crate::error::{Error, Result};
use crate::redact::{Secret, redact_url};

/// One server and path, as `webdav[s]://[user[:password]@]host/path` or
/// the config's `webdav-url`, `webdav-username`, `webdav-password` and
/// `path` describe it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct WebdavSettings {
    /// `http[s]://host[:port][/base]`.
    pub url: String,
    /// The replica's directory under `url`.
    pub path: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

impl fmt::Debug for WebdavSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebdavSettings")
            .field("url", &redact_url(&self.url))
            .field("path", &self.path)
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

impl WebdavSettings {
    /// `webdav://…` (HTTP) or `webdavs://…` (HTTPS), as Go reads it: the
    /// host makes the server URL, the URL's path is the replica's path.
    pub fn from_url(url: &str) -> Result<WebdavSettings> {
        let bad =
            |why: &str| Error::InvalidInput(format!("replica URL {}: {why}", redact_url(url)));
        let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        let scheme = match parsed.scheme() {
            "webdav" => "http",
            "webdavs" => "https",
            _ => return Err(bad("not a webdav:// or webdavs:// URL")),
        };
        let host = parsed.host_str().unwrap_or_default();
        if host.is_empty() {
            return Err(bad("host required"));
        }
        if parsed.query().is_some() {
            return Err(bad(
                "webdav URLs take no query (webdav-username and webdav-password go in the config or the URL's user info)",
            ));
        }
        let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
        let decode = |s: &str| super::s3::percent_decode(s);
        Ok(WebdavSettings {
            url: format!("{scheme}://{host}{port}"),
            path: decode(parsed.path()),
            username: Some(decode(parsed.username())).filter(|u| !u.is_empty()),
            password: parsed.password().map(|p| Secret::new(decode(p))),
        })
    }

    /// `webdav[s]://host/path`, for messages (never the credentials).
    pub fn location(&self) -> String {
        let (scheme, rest) = self.url.split_once("://").unwrap_or(("http", &self.url));
        let scheme = if scheme == "https" {
            "webdavs"
        } else {
            "webdav"
        };
        let rest = redact_url(rest);
        format!(
            "{scheme}://{}/{}",
            rest.trim_end_matches('/'),
            self.path.trim_matches('/')
        )
    }

    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<()> {
        if self.url.is_empty() {
            return Err(Error::InvalidInput(
                "webdav replica: webdav-url required".into(),
            ));
        }
        match url::Url::parse(&self.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(()),
            _ => Err(Error::InvalidInput(format!(
                "webdav replica: webdav-url {} is not an http:// or https:// URL",
                redact_url(&self.url)
            ))),
        }
    }
}

/// What decides the operator: replicas on the same server with the same
/// credentials share one; the path is per request.
#[cfg_attr(not(feature = "webdav"), allow(dead_code))]
pub(crate) fn operator_key(settings: &WebdavSettings) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    settings.password.as_ref().map(Secret::expose).hash(&mut h);
    format!(
        "webdav\0{}\0{:?}\0{:x}",
        settings.url,
        settings.username,
        h.finish()
    )
}

#[cfg(feature = "webdav")]
pub(crate) use enabled::{DavError, DavWriter, client_on, operator};

#[cfg(feature = "webdav")]
mod enabled {
    use super::WebdavSettings;
    use crate::client::LtxBody;
    use crate::client::operator::{Listing, OperatorClient, Upload};
    use crate::error::{Error, Result};
    use crate::redact::Secret;

    /// The operator for `settings`' server.
    pub(crate) fn operator(settings: &WebdavSettings) -> Result<opendal::Operator> {
        settings.validate()?;
        let mut b = opendal::services::Webdav::default()
            .endpoint(&settings.url)
            .root("/");
        if let Some(u) = &settings.username {
            b = b.username(u);
        }
        if let Some(p) = &settings.password {
            b = b.password(p.expose());
        }
        crate::client::operator::build(b, &settings.location())
    }

    /// A client for `settings` on `op` (see [`operator`]), without the
    /// retry layer.
    pub(crate) fn client_on(
        op: opendal::Operator,
        settings: &WebdavSettings,
    ) -> Result<OperatorClient> {
        Ok(OperatorClient::new(
            op,
            "webdav",
            settings.location(),
            &settings.path,
            None,
            Upload::Rename(DavWriter::new(settings)?),
            Listing::Collections,
        ))
    }

    /// Writes files: a PUT streamed from disk, a MOVE into place. One
    /// HTTP client (and connection pool) serves every replica.
    #[derive(Clone)]
    pub(crate) struct DavWriter {
        http: reqwest::Client,
        /// The server URL, ending in `/`.
        base: url::Url,
        username: Option<String>,
        password: Option<Secret>,
        /// Directories this replica created or wrote into: no MKCOL
        /// before their next upload.
        dirs: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    }

    impl std::fmt::Debug for DavWriter {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("DavWriter").finish_non_exhaustive()
        }
    }

    /// Why a request failed: its parent directory is missing (the caller
    /// creates it and tries again), or anything else.
    #[derive(Debug)]
    pub(crate) enum DavError {
        NoParent,
        Failed(Error),
    }

    impl DavWriter {
        fn new(settings: &WebdavSettings) -> Result<DavWriter> {
            let mut base = url::Url::parse(&settings.url).map_err(|e| {
                Error::InvalidInput(format!("{}: webdav-url: {e}", settings.location()))
            })?;
            if !base.path().ends_with('/') {
                base.set_path(&format!("{}/", base.path()));
            }
            static HTTP: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
            let http = match HTTP.get() {
                Some(c) => c.clone(),
                None => {
                    // Bounds as on OpenDAL's requests (operator::timeouts):
                    // nothing idle for 30 s. A large file may take more
                    // than a minute in all, so no bound on the whole.
                    let c = reqwest::Client::builder()
                        .connect_timeout(std::time::Duration::from_secs(30))
                        .read_timeout(std::time::Duration::from_secs(30))
                        .build()
                        .map_err(|e| {
                            Error::InvalidInput(format!("{}: {e}", settings.location()))
                        })?;
                    HTTP.get_or_init(|| c).clone()
                }
            };
            Ok(DavWriter {
                http,
                base,
                username: settings.username.clone(),
                password: settings.password.clone(),
                dirs: Default::default(),
            })
        }

        fn dirs(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
            self.dirs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }

        /// Whether `dir` is known to exist.
        pub(crate) fn knows_dir(&self, dir: &str) -> bool {
            self.dirs().contains(dir)
        }

        pub(crate) fn add_dir(&self, dir: &str) {
            self.dirs().insert(dir.to_string());
        }

        pub(crate) fn forget_dir(&self, dir: &str) {
            self.dirs().remove(dir);
        }

        /// The URL of `key` (a path under the server URL).
        fn url_of(&self, key: &str, what: &str) -> Result<url::Url> {
            let mut url = self.base.clone();
            url.path_segments_mut()
                .map_err(|_| Error::InvalidInput(format!("{what}: bad server URL")))?
                .pop_if_empty()
                .extend(key.split('/'));
            Ok(url)
        }

        fn authorized(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
            match &self.username {
                Some(u) => req.basic_auth(u, self.password.as_ref().map(Secret::expose)),
                None => req,
            }
        }

        /// Sends `req`; a 404 or 409 answer is [`DavError::NoParent`].
        async fn send(
            &self,
            req: reqwest::RequestBuilder,
            op: &str,
            what: &str,
        ) -> std::result::Result<(), DavError> {
            let failed = |message: String, transient: bool| {
                DavError::Failed(Error::Backend {
                    context: format!("{op} {what}"),
                    message,
                    transient,
                })
            };
            let resp = self.authorized(req).send().await.map_err(|e| {
                // Anything on the wire (refused, reset, closed early, timed
                // out) is worth another try; a request we could not build
                // is not.
                failed(
                    crate::redact::redact_text(&error_chain(&e)),
                    !e.is_builder(),
                )
            })?;
            let status = resp.status();
            match status.as_u16() {
                _ if status.is_success() => Ok(()),
                404 | 409 => Err(DavError::NoParent),
                code => Err(failed(
                    format!("HTTP {status}"),
                    code == 408 || code == 429 || code >= 500,
                )),
            }
        }

        /// PUTs `body` (`size` bytes) at `key`, streamed from disk.
        pub(crate) async fn put(
            &self,
            key: &str,
            body: &LtxBody,
            size: u64,
            what: &str,
        ) -> std::result::Result<(), DavError> {
            let url = self.url_of(key, what).map_err(DavError::Failed)?;
            let payload = match body {
                LtxBody::Bytes(b) => reqwest::Body::from(b.clone()),
                LtxBody::File(p) => {
                    let f = tokio::fs::File::open(p).await.map_err(|e| {
                        DavError::Failed(Error::io(format!("open {}", p.display()), e))
                    })?;
                    reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
                        f,
                        256 << 10,
                    ))
                }
            };
            let req = self
                .http
                .put(url)
                .header(reqwest::header::CONTENT_LENGTH, size)
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(payload);
            self.send(req, "put", what).await
        }

        /// MOVEs `from` to `to`, replacing what is there.
        pub(crate) async fn rename(&self, from: &str, to: &str, what: &str) -> Result<()> {
            let src = self.url_of(from, what)?;
            let dst = self.url_of(to, what)?;
            let method = reqwest::Method::from_bytes(b"MOVE")
                .map_err(|e| Error::InvalidInput(e.to_string()))?;
            let req = self
                .http
                .request(method, src)
                .header("Destination", dst.as_str())
                .header("Overwrite", "T");
            match self.send(req, "move", what).await {
                Ok(()) => Ok(()),
                Err(DavError::Failed(e)) => Err(e),
                Err(DavError::NoParent) => Err(Error::Backend {
                    context: format!("move {what}"),
                    message: "the uploaded file or its directory is gone".into(),
                    transient: true,
                }),
            }
        }
    }

    /// An error and its causes, on one line.
    fn error_chain(e: &dyn std::error::Error) -> String {
        let mut parts = vec![e.to_string()];
        parts.extend(crate::error::causes(e));
        parts.join(": ")
    }
}

/// Without the `webdav` feature: an error naming the replica.
#[cfg(not(feature = "webdav"))]
pub(crate) fn operator(settings: &WebdavSettings) -> Result<std::convert::Infallible> {
    Err(Error::InvalidInput(format!(
        "{}: this build has no WebDAV support (feature \"webdav\")",
        settings.location()
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_as_litestream_reads_them() {
        let s =
            WebdavSettings::from_url("webdav://u:p%40ss@dav.local:8080/backups/app.db").unwrap();
        assert_eq!(s.url, "http://dav.local:8080");
        assert_eq!(s.path, "/backups/app.db");
        assert_eq!(s.username.as_deref(), Some("u"));
        assert_eq!(s.password.as_ref().map(Secret::expose), Some("p@ss"));
        assert_eq!(s.location(), "webdav://dav.local:8080/backups/app.db");
        s.validate().unwrap();
        let s = WebdavSettings::from_url("webdavs://dav.local/x").unwrap();
        assert_eq!(s.url, "https://dav.local");
        assert_eq!(s.location(), "webdavs://dav.local/x");
        assert!(WebdavSettings::from_url("webdav:///x").is_err());
        assert!(WebdavSettings::from_url("webdav://h/x?password=p").is_err());
        assert!(WebdavSettings::from_url("s3://h/x").is_err());
        let bad = WebdavSettings {
            url: "ftp://h".into(),
            ..WebdavSettings::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn secrets_stay_out_of_debug_locations_and_keys() {
        let s = WebdavSettings::from_url("webdav://u:S3CR3T@h/p").unwrap();
        let shown = format!("{s:?}{}{}", s.location(), operator_key(&s));
        assert!(!shown.contains("S3CR3T"), "{shown}");
    }
}
