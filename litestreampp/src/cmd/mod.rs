//! One module per subcommand, plus what they share.

mod control;
pub mod databases;
mod endpoint;
mod exec;
mod fleet_control;
mod heartbeat;
mod logging;
pub mod ltx;
mod mcp;
pub mod replicate;
mod replicated_dbs;
pub mod reset;
pub mod restore;
pub mod restore_pattern;
pub mod run;
pub mod status;
mod table;
mod validation;
mod version;

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::flags::{self, Command};
pub use logging::{init_logging, init_logging_with};

/// Parses `args` (with the program name first) and runs the command.
pub fn run(args: Vec<OsString>) -> Result<ExitCode> {
    let cli = match flags::parse(args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print(); // nothing better to do if the terminal is gone
            return Ok(ExitCode::from(code));
        }
    };
    match cli.command {
        Command::Replicate(a) => replicate::run(a),
        Command::Restore(a) => restore::run(a),
        Command::RestorePattern(a) => restore_pattern::run(a),
        Command::Ltx(a) => ltx::run(a),
        Command::Wal(a) => {
            eprintln!("Warning: 'wal' command is deprecated, please use 'ltx' instead");
            ltx::run(a)
        }
        Command::Reset(a) => reset::run(a),
        Command::Run(a) => run::run(a),
        Command::Databases(a) => databases::run(a),
        Command::Status(a) => status::run(a),
        Command::Version(a) => version::run(a),
        Command::List(a) => control::list(a),
        Command::Info(a) => control::info(a),
        Command::Sync(a) => control::sync(a),
        Command::Start(a) => control::start_stop(a, true),
        Command::Stop(a) => control::start_stop(a, false),
        Command::Register(a) => control::register(a),
        Command::Unregister(a) => control::unregister(a),
    }
}

/// A task that runs beside replication (heartbeat, validation) and ends
/// with it: dropping this aborts the task.
#[derive(Debug)]
pub struct Background(tokio::task::JoinHandle<()>);

impl Background {
    pub fn spawn(task: impl std::future::Future<Output = ()> + Send + 'static) -> Background {
        Background(tokio::spawn(task))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A multi-threaded runtime for a command.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start async runtime")
}

/// The fleet's runtime: a bounded blocking pool (every sync, seal and
/// snapshot runs there; more threads than this only add memory and
/// contention), idle threads exit after 10 s.
pub fn fleet_runtime(blocking_threads: usize) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(blocking_threads.max(1))
        .thread_keep_alive(std::time::Duration::from_secs(10))
        .build()
        .context("start async runtime")
}

/// What a control request (or an MCP request) must bear on an address
/// other than loopback: `fleet.token`, else `LITESTREAMPP_TOKEN`.
pub(crate) fn control_token(
    fleet: &crate::settings::FleetConfig,
) -> Option<litestreampp_core::redact::Secret> {
    fleet.token.clone().or_else(|| {
        std::env::var("LITESTREAMPP_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .map(litestreampp_core::redact::Secret::new)
    })
}

/// Starts the MCP server of `config` if it has `mcp-addr`.
pub(crate) async fn serve_mcp(config: &crate::settings::Config) -> Result<()> {
    if let Some(m) = &config.mcp {
        mcp::serve(mcp::McpSettings {
            addr: m.addr.clone(),
            write_tools: m.write_tools,
            config: config.path.clone(),
            token: control_token(&config.fleet),
        })
        .await?;
    }
    Ok(())
}

/// Resolves when Ctrl-C or SIGTERM arrives.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
    tracing::info!("signal received, finishing the current sync");
}

/// One replica file as JSON, in the shape of Litestream's `ltx -json`.
pub fn file_info_json(f: &litestreampp_core::client::FileInfo) -> serde_json::Value {
    serde_json::json!({
        "level": f.level,
        "min_txid": f.min_txid.to_string(),
        "max_txid": f.max_txid.to_string(),
        "size": f.size,
        "timestamp": timestamp(f),
    })
}

/// A replica file's creation time as Litestream prints it (RFC 3339, UTC,
/// whole seconds).
pub fn timestamp(f: &litestreampp_core::client::FileInfo) -> String {
    f.created_at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}
