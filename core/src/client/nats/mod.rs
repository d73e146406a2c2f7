//! The `nats` backend: a NATS JetStream object store, with Litestream
//! 0.5.17's object names (`ltx/<level>/<min>-<max>.ltx`) and header
//! `Litestream-Timestamp`. As in Go, the bucket must exist (created with
//! `nats object add`); it is never created here.
//!
//! Go keeps one database per bucket, at the bucket's root. We also read a
//! path after the bucket (`nats://host/bucket/some/db`), a prefix inside
//! it, so that a fleet can share one bucket; Go would take `bucket/some/db`
//! as the bucket's name, which NATS refuses, so no Go setting means
//! anything else here.
//!
//! An object appears when its metadata is published after its last chunk,
//! so a replica never shows part of a file. The object store has no
//! ranged reads: a read from an offset skips to it, as Go does.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::redact::{Secret, redact_url};

/// Header holding the LTX header timestamp (Go: `Litestream-Timestamp`).
pub const HEADER_TIMESTAMP: &str = "Litestream-Timestamp";
/// The server when none is named (Go: `nats.DefaultURL`).
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

/// One object store bucket and path, with the connection's settings: Go's
/// `nats://[user:password@]host[:port]/bucket` and its keys.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NatsSettings {
    /// `nats://host:port` (or `tls://…`); empty: [`DEFAULT_URL`].
    pub url: String,
    pub bucket: String,
    /// A prefix inside the bucket (ours; Go: always the root).
    pub path: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub token: Option<Secret>,
    /// A credentials file (JWT and seed).
    pub creds: Option<PathBuf>,
    /// A user JWT, signed with `seed`.
    pub jwt: Option<Secret>,
    pub seed: Option<Secret>,
    /// An NKey seed (`SU…`).
    pub nkey: Option<Secret>,
    pub tls: bool,
    pub root_cas: Vec<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Reconnection attempts; negative: unlimited (Go's -1).
    pub max_reconnects: Option<i64>,
    pub reconnect_wait: Option<Duration>,
    pub timeout: Option<Duration>,
}

impl fmt::Debug for NatsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSettings")
            .field("url", &redact_url(&self.url))
            .field("bucket", &self.bucket)
            .field("path", &self.path)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("token", &self.token)
            .field("creds", &self.creds)
            .field("jwt", &self.jwt)
            .field("seed", &self.seed)
            .field("nkey", &self.nkey)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl NatsSettings {
    /// `nats://[user:password@]host[:port]/bucket[/path]`, as Go reads it
    /// (the path after the bucket is ours).
    pub fn from_url(url: &str) -> Result<NatsSettings> {
        let bad =
            |why: &str| Error::InvalidInput(format!("replica URL {}: {why}", redact_url(url)));
        let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if parsed.scheme() != "nats" {
            return Err(bad("not a nats:// URL"));
        }
        if parsed.query().is_some() {
            return Err(bad(
                "nats URLs take no query (credentials and TLS go in the config's keys)",
            ));
        }
        let decode = super::s3::percent_decode;
        let path = decode(parsed.path());
        let path = path.trim_matches('/');
        let (bucket, rest) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            return Err(bad("bucket required (nats://host/BUCKET)"));
        }
        let host = parsed.host_str().unwrap_or_default();
        let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
        Ok(NatsSettings {
            url: if host.is_empty() {
                String::new()
            } else {
                format!("nats://{host}{port}")
            },
            bucket: bucket.to_string(),
            path: rest.to_string(),
            username: Some(decode(parsed.username())).filter(|u| !u.is_empty()),
            password: parsed.password().map(|p| Secret::new(decode(p))),
            ..NatsSettings::default()
        })
    }

    /// The server URL in use.
    pub fn server(&self) -> &str {
        if self.url.is_empty() {
            DEFAULT_URL
        } else {
            &self.url
        }
    }

    /// `nats://host/bucket[/path]`, for messages (never the credentials).
    pub fn location(&self) -> String {
        let server = redact_url(self.server());
        let path = self.path.trim_matches('/');
        if path.is_empty() {
            format!("{}/{}", server.trim_end_matches('/'), self.bucket)
        } else {
            format!("{}/{}/{path}", server.trim_end_matches('/'), self.bucket)
        }
    }

    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<()> {
        let loc = self.location();
        if self.bucket.is_empty() {
            return Err(Error::InvalidInput("nats replica: bucket required".into()));
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err(Error::InvalidInput(format!(
                "{loc}: client-cert and client-key must both be specified for mutual TLS authentication"
            )));
        }
        if self.jwt.is_some() != self.seed.is_some() {
            return Err(Error::InvalidInput(format!(
                "{loc}: jwt and seed must both be specified"
            )));
        }
        Ok(())
    }
}

/// What decides the connection: replicas with the same server and
/// credentials share one; bucket and path are per replica. Credentials
/// are hashed, so the key holds no secret.
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
pub(crate) fn connection_key(s: &NatsSettings) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let secret = |o: &Option<Secret>| o.as_ref().map(|x| x.expose().to_string());
    (
        &s.username,
        secret(&s.password),
        secret(&s.token),
        &s.creds,
        secret(&s.jwt),
        secret(&s.seed),
        secret(&s.nkey),
    )
        .hash(&mut h);
    (
        s.tls,
        &s.root_cas,
        &s.client_cert,
        &s.client_key,
        s.max_reconnects,
        s.reconnect_wait,
        s.timeout,
    )
        .hash(&mut h);
    format!("nats\0{}\0{:x}", s.server(), h.finish())
}

#[cfg(feature = "nats")]
mod client;
#[cfg(feature = "nats")]
pub(crate) use client::{Connection, NatsReplicaClient};

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_as_litestream_reads_them() {
        let s = NatsSettings::from_url("nats://u:S3CR3T@nats.local:4223/backups").unwrap();
        assert_eq!(s.url, "nats://nats.local:4223");
        assert_eq!((s.bucket.as_str(), s.path.as_str()), ("backups", ""));
        assert_eq!(s.username.as_deref(), Some("u"));
        assert_eq!(s.location(), "nats://nats.local:4223/backups");
        let s = NatsSettings::from_url("nats://h/bkt/tenants/a.db").unwrap();
        assert_eq!(
            (s.bucket.as_str(), s.path.as_str()),
            ("bkt", "tenants/a.db")
        );
        assert_eq!(s.location(), "nats://h/bkt/tenants/a.db");
        assert!(NatsSettings::from_url("nats://h/").is_err());
        assert!(NatsSettings::from_url("nats://h/b?token=x").is_err());
        let s = NatsSettings::from_url("nats:///b").unwrap();
        assert_eq!(s.server(), DEFAULT_URL);
        let shown = format!(
            "{:?}{}{}",
            NatsSettings::from_url("nats://u:S3CR3T@h/b").unwrap(),
            NatsSettings::from_url("nats://u:S3CR3T@h/b")
                .unwrap()
                .location(),
            connection_key(&NatsSettings::from_url("nats://u:S3CR3T@h/b").unwrap())
        );
        assert!(!shown.contains("S3CR3T"), "{shown}");
        let half = NatsSettings {
            client_cert: Some("c.pem".into()),
            ..NatsSettings::from_url("nats://h/b").unwrap()
        };
        assert!(half.validate().is_err());
    }
}
