//! The `litestreampp` binary: run, map the error chain to an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    match litestreampp::cmd::run(std::env::args_os().collect()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            // A config file that cannot be used as written is bad input,
            // like a bad flag: 2. Everything else: 1.
            if e.chain()
                .any(|c| c.is::<litestreampp::settings::ConfigError>())
            {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
