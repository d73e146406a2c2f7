//! Every key Go Litestream 0.5.17 reads from `litestream.yml`, where it may
//! appear, and the keys we refuse. Nothing is accepted and ignored: a key
//! is either implemented with Go's meaning (the parser in `config.rs` reads
//! it) or refused at start by [`refusal`] with what to do instead. Keys Go
//! does not read are errors too, so a typo is never silently dropped.

use serde_json::Value;

/// Settings a replica section (or the top level, as defaults for every
/// replica) may hold.
pub(super) const REPLICA_SETTING_KEYS: &[&str] = &[
    "sync-interval",
    "validation-interval",
    "max-sync-ltx-files",
    "auto-recover",
    "age",
];

/// Keys of one backend; on a replica of another type they are refused.
pub(super) const BACKEND_KEYS: &[(&str, &[&str])] = &[
    (
        "s3",
        &[
            "access-key-id",
            "secret-access-key",
            "region",
            "bucket",
            "endpoint",
            "force-path-style",
            "sign-payload",
            "require-content-md5",
            "skip-verify",
            "storage-class",
            "part-size",
            "concurrency",
            "sse-customer-algorithm",
            "sse-customer-key",
            "sse-customer-key-path",
            "sse-kms-key-id",
        ],
    ),
    // Go's gs client reads only the bucket and path; credentials come
    // from the environment.
    ("gs", &["bucket"]),
    (
        "abs",
        &[
            "bucket",
            "endpoint",
            "account-name",
            "account-key",
            "sas-token",
        ],
    ),
    // Go's OSS client reads these generic keys; force-path-style is ours
    // (for S3-compatible test servers; OSS itself is virtual-hosted).
    (
        "oss",
        &[
            "bucket",
            "region",
            "endpoint",
            "access-key-id",
            "secret-access-key",
            "part-size",
            "concurrency",
            "force-path-style",
        ],
    ),
    (
        "sftp",
        &[
            "host",
            "user",
            "password",
            "key-path",
            "concurrent-writes",
            "host-key",
        ],
    ),
    (
        "webdav",
        &["webdav-url", "webdav-username", "webdav-password"],
    ),
    (
        "nats",
        &[
            "bucket",
            "password",
            "jwt",
            "seed",
            "creds",
            "nkey",
            "username",
            "token",
            "tls",
            "root-cas",
            "client-cert",
            "client-key",
            "max-reconnects",
            "reconnect-wait",
            "timeout",
        ],
    ),
];

/// The replica types this build can open.
pub(super) const SUPPORTED_TYPES: &[&str] = &[
    "file",
    "s3",
    #[cfg(feature = "gcs")]
    "gs",
    #[cfg(feature = "azure")]
    "abs",
    #[cfg(feature = "webdav")]
    "webdav",
    "oss",
    #[cfg(feature = "nats")]
    "nats",
    #[cfg(feature = "sftp")]
    "sftp",
];

/// Keys that say which replica: not settings.
pub(super) const REPLICA_KEYS: &[&str] = &["type", "name", "path", "url"];

/// Keys of a `dbs` entry, for one database (`path`) or a directory (`dir`).
pub(super) const DB_KEYS: &[&str] = &[
    "path",
    "dir",
    "pattern",
    "recursive",
    "watch",
    "snapshot",
    "meta-path",
    "meta-dir",
    "monitor-interval",
    "checkpoint-interval",
    "busy-timeout",
    "min-checkpoint-page-count",
    "truncate-page-n",
    "max-sync-wal-bytes",
    "restore-if-db-not-exists",
    "replica",
    "replicas",
];

/// Top-level keys (besides replica settings, which set defaults).
pub(super) const TOP_KEYS: &[&str] = &[
    "dbs",
    "addr",
    "socket",
    "levels",
    "snapshot",
    "validation",
    "l0-retention",
    "l0-retention-check-interval",
    "verify-compaction",
    "retention",
    "heartbeat-url",
    "heartbeat-interval",
    "exec",
    "logging",
    "mcp-addr",
    "mcp-write-tools",
    "shutdown-sync-timeout",
    "shutdown-sync-interval",
    "fleet",
];

pub(super) const LOGGING_KEYS: &[&str] = &["level", "type", "stderr", "source"];
pub(super) const SOCKET_KEYS: &[&str] = &["enabled", "path", "permissions"];

/// Every backend-specific key.
pub(super) fn is_backend_key(k: &str) -> bool {
    BACKEND_KEYS.iter().any(|(_, keys)| keys.contains(&k))
}

/// True if `k` means something on a replica of type `kind`: a key of
/// every replica, or one of that backend's.
pub(super) fn applies_to(k: &str, kind: &str) -> bool {
    let owners = backends_of(k);
    owners.is_empty() || owners.contains(&kind)
}

/// The backends a backend-specific key belongs to (`bucket` is several
/// backends'); empty for a key of every replica.
pub(super) fn backends_of(k: &str) -> Vec<&'static str> {
    BACKEND_KEYS
        .iter()
        .filter(|(_, keys)| keys.contains(&k))
        .map(|(b, _)| *b)
        .collect()
}

/// Why `key` (at `scope`, holding `value`) is refused, and what to do
/// instead; `None` when it is implemented. Scopes: `top`, `db`, `dir`,
/// `replica`.
pub(super) fn refusal(scope: &str, key: &str, value: &Value) -> Option<String> {
    let set = !matches!(value, Value::Null);
    let why = match (scope, key) {
        (_, "age") if set => {
            "age encryption is not currently supported, if you need encryption please revert back to Litestream v0.3.x (Litestream 0.5.17 refuses it too: the replica would be written in plain text)"
        }
        ("replica" | "top", "validation-interval") if set => {
            "Litestream 0.5.17 reads validation-interval but never uses it; remove it and set validation.interval at the top level (each replica's levels are checked for TXID gaps and overlaps)"
        }
        ("replica" | "top", "skip-verify") if value.as_bool() == Some(true) => {
            "skip-verify is not supported; trust the server's certificate instead by pointing AWS_CA_BUNDLE at its CA"
        }
        ("db", "meta-dir") => "meta-dir can only be used with a directory (dir); use meta-path",
        ("db", "watch") if value.as_bool() == Some(true) => {
            "watch can only be enabled with a directory (dir)"
        }
        _ => return None,
    };
    Some(why.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "keys_tests.rs"]
mod tests;
