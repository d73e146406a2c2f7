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
//! - [`restore`]: plans and performs (point-in-time) restores.
//!
//! No CLI, no config files, no fleet: those live in the `litestreampp` crate.

pub mod client;
pub mod db;
pub mod error;
pub mod fsutil;
pub mod lease;
pub mod ltx;
pub mod replica;
pub mod replicator;
pub mod restore;
pub mod txid;
pub mod wal;

pub use error::{Error, Result};
pub use txid::TxId;
