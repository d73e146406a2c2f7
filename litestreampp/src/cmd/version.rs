//! `litestreampp version [-verbose]`.

use std::process::ExitCode;

use anyhow::Result;

use crate::flags::VersionArgs;

pub fn run(args: VersionArgs) -> Result<ExitCode> {
    let version = env!("CARGO_PKG_VERSION");
    if !args.verbose {
        println!("litestreampp {version} (replicas compatible with Litestream 0.5.17)");
        return Ok(ExitCode::SUCCESS);
    }
    // Litestream's labels and alignment; the Go-specific lines (Go version,
    // commit) have no counterpart in a cargo build without a build script.
    println!("Version:     litestreampp {version}");
    println!("Compatible:  Litestream 0.5.17 (LTX replicas, config, commands)");
    println!("OS/Arch:     {}/{}", std::env::consts::OS, go_arch());
    Ok(ExitCode::SUCCESS)
}

/// The architecture under Go's name, as Litestream prints it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}
