//! The `litestreampp` binary: run, map the error chain to an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    match litestreampp::cmd::run(std::env::args_os().collect()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
