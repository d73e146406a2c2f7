//! The `sftp` backend: a directory on an SSH server, with Litestream
//! 0.5.17's layout (`<path>/ltx/<level>/<min>-<max>.ltx`) and its keys
//! (`host`, `user`, `password`, `key-path`, `host-key`,
//! `concurrent-writes`).
//!
//! As in Go, a file is written to a temporary name beside its final one,
//! its modification time set to the LTX header's (SFTP keeps whole
//! seconds), then renamed into place, so a replica never shows part of a
//! file. Unlike Go, the data is flushed to the server's disk
//! (`fsync@openssh.com`) before the rename, and the rename replaces an
//! existing file atomically (`posix-rename@openssh.com`): Go's plain
//! rename fails on OpenSSH when a retried upload finds its file already
//! there. Restores to a timestamp read each file's LTX header, so they
//! are exact to the millisecond where Go's are to the second.

use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::redact::{Secret, redact_url};

/// The SSH port when the host names none.
pub const DEFAULT_PORT: u16 = 22;

/// One directory on one server, with the connection's settings: Go's
/// `sftp://[user[:password]@]host[:port]/path` and its keys.
#[derive(Clone, PartialEq, Eq)]
pub struct SftpSettings {
    /// `host` or `host:port`.
    pub host: String,
    pub user: String,
    pub password: Option<Secret>,
    /// The replica's directory: absolute (`/backups/db`), or relative to
    /// the user's login directory.
    pub path: String,
    /// A private key file (OpenSSH or PEM format, not passphrase-protected).
    pub key_path: Option<PathBuf>,
    /// The server's public key in `authorized_keys` form
    /// (`ssh-ed25519 AAAA…`); without it the host key is not verified, as
    /// in Go, and a warning says so.
    pub host_key: Option<String>,
    /// Several writes of one upload in flight (Go's default: on).
    pub concurrent_writes: bool,
}

impl Default for SftpSettings {
    fn default() -> Self {
        SftpSettings {
            host: String::new(),
            user: String::new(),
            password: None,
            path: String::new(),
            key_path: None,
            host_key: None,
            concurrent_writes: true,
        }
    }
}

impl fmt::Debug for SftpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SftpSettings")
            .field("host", &self.host)
            .field("user", &self.user)
            .field("password", &self.password)
            .field("path", &self.path)
            .field("key_path", &self.key_path)
            .field("host_key", &self.host_key)
            .field("concurrent_writes", &self.concurrent_writes)
            .finish()
    }
}

impl SftpSettings {
    /// `sftp://[user[:password]@]host[:port]/path`, as Go reads it, with
    /// the config's `key-path`, `host-key` and `concurrent-writes` as
    /// optional query parameters.
    pub fn from_url(url: &str) -> Result<SftpSettings> {
        let bad =
            |why: &str| Error::InvalidInput(format!("replica URL {}: {why}", redact_url(url)));
        let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if parsed.scheme() != "sftp" {
            return Err(bad("not an sftp:// URL"));
        }
        let decode = super::s3::percent_decode;
        let host = parsed.host_str().unwrap_or_default();
        let mut s = SftpSettings {
            host: match parsed.port() {
                Some(p) => format!("{host}:{p}"),
                None => host.to_string(),
            },
            user: decode(parsed.username()),
            password: parsed.password().map(|p| Secret::new(decode(p))),
            path: decode(parsed.path()),
            ..SftpSettings::default()
        };
        if s.host.is_empty() {
            return Err(bad("host required for sftp replica URL"));
        }
        if s.user.is_empty() {
            return Err(bad("user required for sftp replica URL"));
        }
        // Go ignores an sftp URL's query; we read the config's keys there,
        // so a URL alone (`run --replica`, `restore-pattern`) can name a
        // key, and refuse any other.
        for (k, v) in parsed.query_pairs() {
            match k.as_ref() {
                "key-path" => s.key_path = Some(PathBuf::from(v.as_ref())),
                "host-key" => s.host_key = Some(v.trim().to_string()),
                "concurrent-writes" => {
                    s.concurrent_writes = match v.as_ref() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad("concurrent-writes: expected true or false")),
                    }
                }
                other => {
                    return Err(bad(&format!(
                        "unknown query parameter {other:?} (sftp URLs take key-path, host-key and concurrent-writes)"
                    )));
                }
            }
        }
        Ok(s)
    }

    /// `(host, port)` to dial.
    pub fn address(&self) -> (String, u16) {
        // `[v6]:port`, `host:port` or a bare host (v6 included).
        if let Some(rest) = self.host.strip_prefix('[') {
            if let Some((h, p)) = rest.split_once("]:")
                && let Ok(port) = p.parse()
            {
                return (h.to_string(), port);
            }
            return (rest.trim_end_matches(']').to_string(), DEFAULT_PORT);
        }
        match self.host.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => match p.parse() {
                Ok(port) => (h.to_string(), port),
                Err(_) => (self.host.clone(), DEFAULT_PORT),
            },
            _ => (self.host.clone(), DEFAULT_PORT),
        }
    }

    /// `sftp://user@host[:port]/path`, for messages (never the password).
    pub fn location(&self) -> String {
        let path = if self.path.is_empty() || self.path.starts_with('/') {
            self.path.clone()
        } else {
            format!("/~/{}", self.path)
        };
        format!("sftp://{}@{}{path}", self.user, self.host)
    }

    /// Checks what can be checked without the network (Go's messages).
    pub fn validate(&self) -> Result<()> {
        if self.host.is_empty() {
            return Err(Error::InvalidInput("host required for sftp replica".into()));
        }
        if self.user.is_empty() {
            return Err(Error::InvalidInput(format!(
                "{}: user required for sftp replica",
                self.location()
            )));
        }
        if self.password.is_none() && self.key_path.is_none() {
            return Err(Error::InvalidInput(format!(
                "{}: no credentials: set password or key-path",
                self.location()
            )));
        }
        Ok(())
    }
}

/// What decides the connection: replicas on the same server as the same
/// user with the same credentials and host key share one; the path is
/// per replica. Credentials are hashed, so the key holds no secret.
#[cfg_attr(not(feature = "sftp"), allow(dead_code))]
pub(crate) fn connection_key(s: &SftpSettings) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        s.password.as_ref().map(Secret::expose),
        &s.key_path,
        &s.host_key,
        s.concurrent_writes,
    )
        .hash(&mut h);
    format!("sftp\0{}\0{}\0{:x}", s.host, s.user, h.finish())
}

#[cfg(feature = "sftp")]
mod client;
#[cfg(feature = "sftp")]
pub(crate) use client::{Connection, SftpReplicaClient};

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_as_litestream_reads_them() {
        let s = SftpSettings::from_url("sftp://bob:S3CR3T@files.local:2222/backups/a.db").unwrap();
        assert_eq!(
            (s.host.as_str(), s.user.as_str()),
            ("files.local:2222", "bob")
        );
        assert_eq!(s.address(), ("files.local".to_string(), 2222));
        assert_eq!(s.path, "/backups/a.db");
        assert_eq!(s.password.as_ref().map(Secret::expose), Some("S3CR3T"));
        assert_eq!(s.location(), "sftp://bob@files.local:2222/backups/a.db");
        let s = SftpSettings::from_url("sftp://bob:pw@h/x").unwrap();
        assert_eq!(s.address(), ("h".to_string(), DEFAULT_PORT));
        assert!(s.concurrent_writes);
        let v6 = SftpSettings {
            host: "[::1]:2200".into(),
            ..s.clone()
        };
        assert_eq!(v6.address(), ("::1".to_string(), 2200));
        // Go: a user is required.
        assert!(SftpSettings::from_url("sftp://h/x").is_err());
        // The config's keys in the query; any other refused.
        let q = SftpSettings::from_url(
            "sftp://bob@h/x?key-path=/k/id&host-key=ssh-ed25519%20AAAA&concurrent-writes=false",
        )
        .unwrap();
        assert_eq!(q.key_path, Some(PathBuf::from("/k/id")));
        assert_eq!(q.host_key.as_deref(), Some("ssh-ed25519 AAAA"));
        assert!(!q.concurrent_writes);
        let e = SftpSettings::from_url("sftp://bob:pw@h/x?region=x").unwrap_err();
        assert!(e.to_string().contains("region"), "{e}");
        assert!(!e.to_string().contains("pw"), "{e}");
        assert!(SftpSettings::from_url("sftp://bob@h/x?concurrent-writes=yes").is_err());
        // Neither a password nor a key: refused before dialling.
        let keyless = SftpSettings::from_url("sftp://bob@h/x").unwrap();
        assert!(keyless.validate().is_err());
        let keyed = SftpSettings {
            key_path: Some("/k".into()),
            ..keyless
        };
        keyed.validate().unwrap();
        let shown = format!(
            "{:?}{}{}",
            SftpSettings::from_url("sftp://bob:S3CR3T@h/x").unwrap(),
            SftpSettings::from_url("sftp://bob:S3CR3T@h/x")
                .unwrap()
                .location(),
            connection_key(&SftpSettings::from_url("sftp://bob:S3CR3T@h/x").unwrap())
        );
        assert!(!shown.contains("S3CR3T"), "{shown}");
        let relative = SftpSettings {
            path: "backups".into(),
            ..s
        };
        assert_eq!(relative.location(), "sftp://bob@h/~/backups");
    }
}
