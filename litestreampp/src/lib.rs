//! `litestreampp`: the command-line tool and the fleet layer on top of
//! `litestreampp-core`.
//!
//! Layered as `flags` → `settings` → `fleet` → `litestreampp_core`, never
//! the other way; `cmd` wires the layers together for each subcommand.
//!
//! - [`flags`]: argument definitions (Go-style `-flag` accepted), no I/O.
//! - [`settings`]: the `litestream.yml` file and flags as option structs;
//!   the one place replica clients are opened.
//! - [`fleet`]: many databases by pattern, each with a replica from a template.
//! - [`cmd`]: dispatch, and one module per subcommand.

pub mod cmd;
pub mod control;
pub mod flags;
pub mod fleet;
pub mod restore_fleet;
pub mod settings;
