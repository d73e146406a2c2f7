//! Litestream's control socket: a running `replicate` or fleet answers
//! `info`, `list`, `sync`, `start`, `stop`, `register` and `unregister`
//! over HTTP/1.1 with JSON on a Unix socket, with Go 0.5.17's paths,
//! fields and status codes ([`protocol`]), so Go's client works against
//! our socket and ours against Go's.
//!
//! - [`server`]: the socket (created with its permissions; a live socket
//!   of another process is refused, a stale one replaced), requests
//!   bounded in size and time, each routed to a [`ControlTarget`].
//! - [`client`]: one request to a socket, for the commands.
//!
//! What a request does is the target's business: `cmd` implements
//! [`ControlTarget`] for `replicate`'s databases and for the fleet. This
//! module knows neither.

pub mod client;
pub mod protocol;
pub mod server;

use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;

use protocol::{
    ListQuery, ListResponse, RegisterResponse, StartStopResponse, SyncResponse, UnregisterResponse,
};

/// Where Litestream puts the socket unless `socket.path` says otherwise.
pub const DEFAULT_SOCKET: &str = "/var/run/litestream.sock";

/// A request the target cannot carry out: the HTTP status and message
/// Litestream replies with in the same case.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
    /// What exactly was wrong (a JSON decoder's error).
    pub details: Option<String>,
}

impl Refusal {
    pub fn new(status: u16, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
            details: None,
        }
    }

    /// 404 `database not found: PATH`.
    pub fn not_found(path: &std::path::Path) -> Refusal {
        Refusal::new(404, format!("database not found: {}", path.display()))
    }
}

/// What the socket controls. Paths arrive with `~` expanded.
pub trait ControlTarget: Send + Sync + 'static {
    /// How many databases are replicated (or registered, for a fleet).
    fn database_count(&self) -> usize;
    /// The databases the query asks for and their state, by path.
    fn list(&self, query: &ListQuery) -> ListResponse;
    /// The database's local TXID.
    fn txid(&self, path: PathBuf) -> Result<u64, Refusal>;
    /// Resumes a stopped database's replication.
    fn start(&self, path: PathBuf) -> BoxFuture<'static, Result<StartStopResponse, Refusal>>;
    /// Stops a database's replication after a final sync; its files and
    /// replica are left as they are.
    fn stop(&self, path: PathBuf) -> BoxFuture<'static, Result<StartStopResponse, Refusal>>;
    /// Syncs now; with `wait`, answers once the replica holds everything
    /// committed before the request.
    fn sync(&self, path: PathBuf, wait: bool) -> BoxFuture<'static, Result<SyncResponse, Refusal>>;
    /// Starts replicating a database to `replica_url`.
    fn register(
        &self,
        path: PathBuf,
        replica_url: String,
    ) -> BoxFuture<'static, Result<RegisterResponse, Refusal>>;
    /// Stops replicating a database (final sync) and forgets it.
    fn unregister(&self, path: PathBuf) -> BoxFuture<'static, Result<UnregisterResponse, Refusal>>;
}

/// A request's own timeout in seconds, else `default`, at most an hour.
pub fn request_timeout(seconds: i64, default: Duration) -> Duration {
    if seconds > 0 {
        Duration::from_secs(seconds.unsigned_abs()).min(Duration::from_secs(3600))
    } else {
        default
    }
}
