//! `litestreampp`: the command-line tool and the fleet layer on top of
//! `litestreampp-core`.
//!
//! - [`cli`]: argument parsing (Go-style `-flag` accepted) and dispatch.
//! - [`config`]: the `litestream.yml` file.
//! - [`cmd`]: one module per subcommand.
//! - [`fleet`]: many databases by pattern, each with a replica from a template.

pub mod cli;
pub mod cmd;
pub mod config;
pub mod fleet;
