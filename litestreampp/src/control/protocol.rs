//! The control socket's messages, field for field Litestream 0.5.17's
//! (`server.go`): JSON bodies over HTTP/1.1, so Go's `litestream list
//! -socket PATH` reads our replies and ours reads Go's.

use serde::{Deserialize, Serialize};

/// `POST /start`, `POST /stop`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PathRequest {
    #[serde(default)]
    pub path: String,
    /// Seconds; zero or absent: the server's default.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
}

/// The reply to `/start` and `/stop`: `started`, `already_running`,
/// `stopped`, `already_stopped`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartStopResponse {
    pub status: String,
    pub path: String,
    pub txid: u64,
}

/// `POST /sync`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncRequest {
    #[serde(default)]
    pub path: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wait: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
}

/// The reply to `/sync`: `synced` (with wait), `synced_local`, `no_change`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncResponse {
    pub status: String,
    pub path: String,
    pub txid: u64,
    pub replicated_txid: u64,
}

impl SyncResponse {
    /// Go's reply to a sync of `path` that moved its local TXID from
    /// `before` to `after`, the replica then holding `replicated`.
    pub fn new(
        path: &std::path::Path,
        wait: bool,
        before: u64,
        after: u64,
        replicated: u64,
    ) -> SyncResponse {
        let status = match (after > before, wait) {
            (false, _) => "no_change",
            (true, true) => "synced",
            (true, false) => "synced_local",
        };
        SyncResponse {
            status: status.into(),
            path: path.display().to_string(),
            txid: after,
            replicated_txid: replicated,
        }
    }
}

/// `POST /register`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterRequest {
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub replica_url: String,
}

/// The reply to `/register`: `registered`, `already_registered`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterResponse {
    pub status: String,
    pub path: String,
}

/// The reply to `/unregister`: `unregistered`, `already_unregistered`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnregisterResponse {
    pub status: String,
    pub path: String,
    pub txid: u64,
}

/// One database in `/list`: `replicating` or `stopped` (a fleet's failed
/// database: `failed`). The fields after Go's are ours (Go's client
/// ignores them): a fleet's tier, TXIDs, lag and last error.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DatabaseSummary {
    pub path: String,
    pub status: String,
    /// The last successful sync into the replica (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_at: Option<String>,
    /// `hot`, `cold`, `queued`, `failed` (the fleet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txid: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_txid: Option<u64>,
    /// Seconds a write has waited to reach the replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The reply to `/list`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListResponse {
    pub databases: Vec<DatabaseSummary>,
    /// How many databases matched, when the list is one page of them
    /// (ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<usize>,
}

/// `/list?glob=&offset=&limit=` (ours: a fleet has 100,000 databases;
/// without them, every database as Go lists them).
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only the databases whose path matches (`*` within a directory,
    /// `**` across).
    pub glob: Option<globset::GlobMatcher>,
    pub offset: usize,
    pub limit: Option<usize>,
}

impl ListQuery {
    /// Parses the query string of a `/list` request.
    pub fn parse(query: &str) -> Result<ListQuery, String> {
        let mut q = ListQuery::default();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let number = |v: &str| {
                v.parse::<usize>()
                    .map_err(|_| format!("{k}: expected a non-negative integer, got {v:?}"))
            };
            match &*k {
                "glob" => {
                    let g = globset::GlobBuilder::new(&v)
                        .literal_separator(true)
                        .build()
                        .map_err(|e| format!("glob {v:?}: {e}"))?;
                    q.glob = Some(g.compile_matcher());
                }
                "offset" => q.offset = number(&v)?,
                "limit" => q.limit = Some(number(&v)?),
                _ => return Err(format!("unknown parameter {k:?} (glob, offset, limit)")),
            }
        }
        Ok(q)
    }

    /// True when `path` is one the query asks for.
    pub fn wants(&self, path: &std::path::Path) -> bool {
        self.glob.as_ref().is_none_or(|g| g.is_match(path))
    }

    /// Whether this is one page rather than everything.
    pub fn is_paged(&self) -> bool {
        self.offset > 0 || self.limit.is_some()
    }

    /// The page of `sorted` (already filtered) the query asks for.
    pub fn page<T>(&self, sorted: Vec<T>) -> Vec<T> {
        let limit = self.limit.unwrap_or(usize::MAX);
        sorted.into_iter().skip(self.offset).take(limit).collect()
    }
}

/// The reply to `/info`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InfoResponse {
    pub version: String,
    pub pid: u32,
    pub uptime_seconds: i64,
    /// RFC 3339.
    pub started_at: String,
    pub database_count: usize,
}

/// The reply to `/txid`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TxidResponse {
    pub txid: u64,
}

/// Any failed request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}
