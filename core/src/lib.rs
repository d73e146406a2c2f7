//! `litestreampp-core`: one SQLite database's replication engine,
//! byte-compatible with Litestream 0.5.17.
//!
//! - [`ltx`]: the LTX file format (encoder, decoder, page index).
//! - [`wal`]: the SQLite WAL reader.
//! - [`db`]: the per-database engine that turns committed WAL frames into
//!   L0 LTX files and checkpoints.
//! - [`client`]: the [`ReplicaClient`](client::ReplicaClient) trait and its
//!   backends.
//! - [`replica`]: ships local L0 files to a replica.
//! - [`unshipped`]: what the replica lacks of them, bounded by merging
//!   while it cannot be reached.
//! - [`compact`]: merges LTX files (compaction).
//! - [`levels`]: compaction levels, snapshots and retention of a replica.
//! - [`scheduler`]: one timer queue and worker pool for that work.
//! - [`restore`]: plans and performs (point-in-time) restores.
//! - [`v3`]: restores Litestream 0.3 replicas (generations layout).
//! - [`discover`]: finds the replicas under a root (fleet restores).
//! - [`embed`]: replication embedded in an application: restore before
//!   serving, replicate alongside, flush on shutdown.
//! - [`meta_dir`], [`dbfile`]: the names of a database's files on disk;
//!   [`redact`]: the one URL redactor.
//!
//! No CLI, no config files, no fleet: those live in the `litestreampp` crate.
//!
//! Not part of the API an application uses, and hidden from its docs:
//! `fsutil` (atomic local writes, shared with the binary), `crashpoint`
//! (the crash campaign's kill points) and `client::conformance` (the suite
//! every backend runs in tests).

pub mod client;
pub mod compact;
#[doc(hidden)]
pub mod crashpoint;
pub mod db;
pub mod dbfile;
pub mod discover;
pub mod embed;
pub mod error;
#[doc(hidden)]
pub mod fsutil;
#[cfg(feature = "s3")]
pub mod lease;
pub mod levels;
pub mod ltx;
pub mod meta_dir;
pub mod metrics;
pub mod redact;
pub mod replica;
pub mod replicator;
pub mod restore;
pub mod scheduler;
pub mod txid;
pub mod unshipped;
pub mod v3;
pub mod wal;

pub use error::{Error, Result};
pub use txid::TxId;
