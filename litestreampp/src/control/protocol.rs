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

/// One database in `/list`: `replicating` or `stopped` (for a fleet's
/// database also `cold`, `queued`, `failed`, with its tier fields).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseSummary {
    pub path: String,
    pub status: String,
    /// The last successful sync into the replica (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_at: Option<String>,
}

/// The reply to `/list`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListResponse {
    pub databases: Vec<DatabaseSummary>,
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
