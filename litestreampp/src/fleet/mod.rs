//! The fleet: many databases found by glob patterns, each replicated to a
//! replica built from one template.
//!
//! - [`discover`]: finds the databases (parallel walk, glob match, SQLite
//!   header check).
//! - [`template`]: expands `{path}`, `{dir}`, `{name}` into a replica URL.
//!
//! Today the fleet backs every database up once (`litestreampp run
//! --once`); continuous replication with hot and cold tiers is being built.

pub mod discover;
pub mod template;
