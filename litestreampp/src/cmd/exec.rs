//! `exec`: the application Litestream starts and lives with (the usual
//! container setup). It starts once replication is running, SIGINT and
//! SIGTERM are passed on to it, and when it exits replication finishes
//! with a final sync and the process exits with the application's code.

use std::process::{ExitCode, ExitStatus};

use anyhow::{Context, Result, anyhow, bail};
use tokio::process::Child;
use tokio::signal::unix::{SignalKind, signal};

/// The command line, split as a POSIX shell splits words (quotes and
/// backslashes; no variables, globs or pipes), as Go's shellwords does.
pub fn split(cmdline: &str) -> Result<Vec<String>> {
    let argv = shlex::split(cmdline)
        .ok_or_else(|| anyhow!("exec {cmdline:?}: cannot parse the command (unclosed quote?)"))?;
    if argv.is_empty() {
        bail!("exec: empty command");
    }
    Ok(argv)
}

/// The running application.
#[derive(Debug)]
pub struct Application {
    child: Child,
    name: String,
}

/// How the application ended.
#[derive(Debug, Clone, Copy)]
pub struct Ended {
    status: ExitStatus,
    /// A signal we passed on ended it: that is a clean stop.
    forwarded: Option<i32>,
}

impl Ended {
    /// The code this process exits with: the application's; 0 if the
    /// signal we passed on stopped it (as Go); 128 + N for another signal.
    pub fn exit_code(&self) -> ExitCode {
        use std::os::unix::process::ExitStatusExt;
        match (self.status.code(), self.status.signal()) {
            (Some(c), _) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
            (None, Some(s)) if Some(s) == self.forwarded => ExitCode::SUCCESS,
            (None, Some(s)) => ExitCode::from(u8::try_from(128 + s).unwrap_or(1)),
            (None, None) => ExitCode::FAILURE,
        }
    }
}

impl Application {
    /// Starts `argv` with this process's environment, stdin, stdout and
    /// stderr.
    pub fn start(argv: &[String]) -> Result<Application> {
        let child = tokio::process::Command::new(&argv[0])
            .args(&argv[1..])
            .kill_on_drop(false)
            .spawn()
            .with_context(|| format!("exec: cannot start {:?}", argv[0]))?;
        tracing::info!(command = %argv[0], pid = child.id().unwrap_or(0), "started exec command");
        Ok(Application {
            child,
            name: argv[0].clone(),
        })
    }

    /// Waits for the application to exit, passing SIGINT and SIGTERM that
    /// arrive meanwhile on to it.
    pub async fn wait(&mut self) -> Result<Ended> {
        let mut int = signal(SignalKind::interrupt()).context("listen for SIGINT")?;
        let mut term = signal(SignalKind::terminate()).context("listen for SIGTERM")?;
        let mut forwarded = None;
        loop {
            let sig = tokio::select! {
                status = self.child.wait() => {
                    let status = status.with_context(|| format!("exec: wait for {:?}", self.name))?;
                    tracing::info!(command = %self.name, %status, "exec command exited, litestreampp shutting down");
                    return Ok(Ended { status, forwarded });
                }
                _ = int.recv() => rustix::process::Signal::INT,
                _ = term.recv() => rustix::process::Signal::TERM,
            };
            let Some(pid) = self
                .child
                .id()
                .and_then(|id| rustix::process::Pid::from_raw(id as i32))
            else {
                continue; // already reaped: the next wait returns
            };
            tracing::info!(command = %self.name, signal = sig.as_raw(), "passing the signal on to the exec command");
            forwarded = Some(sig.as_raw());
            if let Err(e) = rustix::process::kill_process(pid, sig) {
                tracing::warn!(command = %self.name, error = %e, "cannot signal the exec command");
            }
        }
    }
}
