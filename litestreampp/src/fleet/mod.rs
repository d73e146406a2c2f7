//! The fleet: many databases found by glob patterns, each replicated to a
//! replica built from one template.
//!
//! - [`discover`]: finds the databases (parallel walk, glob match, SQLite
//!   header check).
//! - [`template`]: expands `{path}`, `{dir}`, `{name}` into a replica URL.
//!
//! - [`manager`]: the running fleet: registry, write detector, hot and
//!   cold tiers, backlog, state file.
//! - [`http`]: `/metrics`, `/healthz` and `/status` on 127.0.0.1:9090.
//! - [`memory`]: malloc arena cap and trimming for a small idle process.

pub mod discover;
pub mod http;
pub mod manager;
pub mod memory;
pub mod template;
