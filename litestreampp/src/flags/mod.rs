//! Command-line definitions, and nothing else: no I/O, no dispatch. Each
//! flag is defined once ([`defs`]); that one definition drives parsing and
//! `--help`. Litestream's users type Go-style single-dash long flags
//! (`-config x.yml`), so those are rewritten to `--config` before parsing,
//! using the same definitions.
//!
//! The layering: `flags` → `settings` → {`fleet`, `restore_fleet`} → core;
//! `cmd` wires them together.

mod defs;

pub use defs::*;

use std::ffi::OsString;

use clap::{CommandFactory, Parser, Subcommand};

/// Replicate SQLite databases to object storage and restore them;
/// Litestream 0.5-compatible.
#[derive(Debug, Parser)]
#[command(name = "litestreampp", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replicate one database (DB_PATH REPLICA_URL) or every database of a config file.
    Replicate(ReplicateArgs),
    /// Restore a database from its replica.
    Restore(RestoreArgs),
    /// Restore every database matching a pattern, in parallel: the
    /// databases of a config file, or the replicas under a URL
    /// (s3://bucket/backups/**/*.db, file:///backups/**/*.db).
    RestorePattern(RestorePatternArgs),
    /// List the LTX files of a replica.
    Ltx(LtxArgs),
    /// Deprecated name of `ltx` (as in Litestream).
    #[command(hide = true)]
    Wal(LtxArgs),
    /// Remove a database's local replication state (its meta directory);
    /// the next sync takes a fresh snapshot.
    Reset(ResetArgs),
    /// The fleet: every database matching --pattern (or the config's
    /// directory entries), each replicated to its own replica.
    Run(RunArgs),
    /// List the databases of a config file (with a glob: the databases
    /// found under its directory entries too).
    Databases(DatabasesArgs),
    /// With -config or a database: the local replication state of the
    /// config's databases (Litestream's status). Otherwise: a running
    /// fleet's databases per tier, the most lagging, errors.
    Status(StatusArgs),
    /// Print the version.
    Version(VersionArgs),
    /// A running replicator's databases and their state (control socket).
    List(ListArgs),
    /// A running replicator's version, PID, uptime (control socket).
    Info(InfoArgs),
    /// Sync a database of a running replicator now (control socket).
    Sync(SyncArgs),
    /// Resume a stopped database's replication (control socket).
    Start(StartStopArgs),
    /// Stop a database's replication after a final sync (control socket).
    Stop(StartStopArgs),
    /// Add a database to a running replicator (control socket).
    Register(RegisterArgs),
    /// Remove a database from a running replicator (control socket).
    Unregister(UnregisterArgs),
}

/// Rewrites Go-style `-name[=value]` into `--name[=value]` when `name` is a
/// long flag of the subcommand being run.
pub fn normalize_args(args: Vec<OsString>) -> Vec<OsString> {
    let root = Cli::command();
    let mut out = Vec::with_capacity(args.len());
    let mut sub: Option<clap::Command> = None;
    let mut rest_is_positional = false;
    for (i, a) in args.into_iter().enumerate() {
        if i == 0 || rest_is_positional {
            out.push(a);
            continue;
        }
        let Some(s) = a.to_str() else {
            out.push(a);
            continue;
        };
        if s == "--" {
            rest_is_positional = true;
            out.push(a);
            continue;
        }
        if sub.is_none() && !s.starts_with('-') {
            sub = root.find_subcommand(s).cloned();
            out.push(a);
            continue;
        }
        if s.len() > 2 && s.starts_with('-') && !s.starts_with("--") {
            let name = s[1..].split('=').next().unwrap_or("");
            let cmd = sub.as_ref().unwrap_or(&root);
            let known = cmd.get_arguments().any(|arg| arg.get_long() == Some(name))
                || matches!(name, "help" | "version");
            if known {
                out.push(OsString::from(format!("-{s}")));
                continue;
            }
        }
        out.push(a);
    }
    out
}

/// Parses `args` (with the program name first), Go-style flags included.
pub fn parse(args: Vec<OsString>) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(normalize_args(args))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn norm(v: &[&str]) -> Vec<String> {
        normalize_args(v.iter().map(OsString::from).collect())
            .into_iter()
            .map(|s| s.into_string().unwrap_or_default())
            .collect()
    }

    #[test]
    fn go_style_flags() {
        assert_eq!(
            norm(&[
                "x",
                "restore",
                "-o",
                "out.db",
                "-txid",
                "0000000000000005",
                "-if-db-not-exists",
                "file:///r"
            ]),
            [
                "x",
                "restore",
                "-o",
                "out.db",
                "--txid",
                "0000000000000005",
                "--if-db-not-exists",
                "file:///r"
            ]
        );
        assert_eq!(
            norm(&["x", "replicate", "-config=/a.yml", "-once"]),
            ["x", "replicate", "--config=/a.yml", "--once"]
        );
        // Unknown names and positionals after -- are left alone.
        assert_eq!(
            norm(&["x", "ltx", "-bogus", "--", "-json"]),
            ["x", "ltx", "-bogus", "--", "-json"]
        );
    }
}
