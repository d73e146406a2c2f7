//! The MCP server (`mcp-addr`), as Litestream 0.5.17 has it: Streamable
//! HTTP with the tools `litestream_databases`, `litestream_info`,
//! `litestream_status`, `litestream_ltx`, `litestream_version`, and, only
//! with `mcp-write-tools: true`, `litestream_restore` and
//! `litestream_reset`. Tool names, arguments and text outputs are Go's, so
//! an agent set up for Litestream works unchanged.
//!
//! Each tool runs this binary's own command (Go runs whatever `litestream`
//! is on `PATH`), so a tool is exactly the command an operator would type,
//! and a tool that fails cannot disturb replication. Differences from Go,
//! on purpose:
//! - `:3001` binds loopback (Go: every interface). An address other than
//!   loopback needs a token (`fleet.token` or `LITESTREAMPP_TOKEN`); every
//!   request must then bear `Authorization: Bearer TOKEN`.
//! - A tool's `config` argument may only name the running config file (Go
//!   reads whatever file it is given).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rmcp::ErrorData;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};

use litestreampp_core::redact::Secret;

/// A tool's command runs at most this long.
const TOOL_TIMEOUT: Duration = Duration::from_secs(600);
/// `litestream_info` lists the LTX files of at most this many databases (a
/// fleet has 100,000).
const INFO_LTX_DATABASES: usize = 20;

/// How the server is set up.
#[derive(Debug, Clone)]
pub struct McpSettings {
    /// `mcp-addr` as written.
    pub addr: String,
    pub write_tools: bool,
    /// The running config file: the tools' default and only `config`.
    pub config: PathBuf,
    pub token: Option<Secret>,
}

/// Where `mcp-addr` binds: a host-less `:PORT` is loopback.
pub fn bind_addr(addr: &str) -> Result<SocketAddr> {
    let a = addr.trim();
    let full = if let Some(port) = a.strip_prefix(':') {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = a.strip_prefix("localhost:") {
        format!("127.0.0.1:{port}")
    } else {
        a.to_string()
    };
    full.parse()
        .with_context(|| format!("mcp-addr {addr:?}: expected HOST:PORT or :PORT"))
}

/// Starts the MCP server; it runs until the runtime stops. Returns the
/// address bound.
pub async fn serve(s: McpSettings) -> Result<SocketAddr> {
    let addr = bind_addr(&s.addr)?;
    if !addr.ip().is_loopback() && s.token.is_none() {
        bail!(
            "mcp-addr {}: an address other than loopback needs a token: set fleet.token or LITESTREAMPP_TOKEN",
            s.addr
        );
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind the MCP server {addr}"))?;
    let bound = listener.local_addr()?;
    let exe = std::env::current_exe().context("find this program for the MCP tools")?;
    let tools = Tools {
        exe,
        config: s.config.clone(),
        write_tools: s.write_tools,
    };
    // rmcp checks Host against loopback names by default (DNS rebinding);
    // an exposed server is reached by other names and guarded by its token.
    let config = if bound.ip().is_loopback() {
        StreamableHttpServerConfig::default()
    } else {
        StreamableHttpServerConfig::default().disable_allowed_hosts()
    };
    let service = StreamableHttpService::new(
        move || Ok(tools.clone()),
        LocalSessionManager::default().into(),
        config,
    );
    let token = s.token.clone();
    let loopback = bound.ip().is_loopback();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (service, token) = (service.clone(), token.clone());
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (service, token) = (service.clone(), token.clone());
                        async move {
                            let allowed = super::endpoint::authorized(
                                token.as_ref().map(|t| t.expose()),
                                loopback,
                                &req,
                            );
                            Ok::<_, std::convert::Infallible>(match allowed {
                                Ok(()) => service.handle(req).await,
                                Err(why) => forbidden(why),
                            })
                        }
                    });
                // A client that hangs up is not our error.
                let _ = crate::control::server::http1()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    tracing::info!(addr = %bound, write_tools = s.write_tools, "MCP server listening");
    Ok(bound)
}

fn forbidden(
    why: &str,
) -> http::Response<http_body_util::combinators::BoxBody<bytes::Bytes, std::convert::Infallible>> {
    use http_body_util::BodyExt;
    let mut r = http::Response::new(
        http_body_util::Full::new(bytes::Bytes::from(format!("{why}\n"))).boxed(),
    );
    *r.status_mut() = http::StatusCode::FORBIDDEN;
    r
}

/// The tools, each a command of this program.
#[derive(Debug, Clone)]
struct Tools {
    exe: PathBuf,
    config: PathBuf,
    write_tools: bool,
}

/// Litestream's tools: name, description, arguments (name, type,
/// description), required arguments, whether it writes.
struct ToolDef {
    name: &'static str,
    description: &'static str,
    args: &'static [(&'static str, &'static str, &'static str)],
    required: &'static [&'static str],
    writes: bool,
}

const CONFIG_ARG: (&str, &str, &str) = (
    "config",
    "string",
    "Path to the Litestream config file. Optional.",
);

const TOOLS: &[ToolDef] = &[
    ToolDef {
        name: "litestream_databases",
        description: "List databases and their replicas as defined in the Litestream config file.",
        args: &[CONFIG_ARG],
        required: &[],
        writes: false,
    },
    ToolDef {
        name: "litestream_info",
        description: "Get a comprehensive summary of Litestream's current status including databases, LTX files, and version information.",
        args: &[CONFIG_ARG],
        required: &[],
        writes: false,
    },
    ToolDef {
        name: "litestream_status",
        description: "Display replication status including database path, status, local transaction ID, and WAL size.",
        args: &[
            CONFIG_ARG,
            (
                "path",
                "string",
                "Filter to a specific database path. Optional.",
            ),
        ],
        required: &[],
        writes: false,
    },
    ToolDef {
        name: "litestream_ltx",
        description: "List all LTX files for a database or replica URL.",
        args: &[
            ("path", "string", "Database path or replica URL."),
            CONFIG_ARG,
        ],
        required: &["path"],
        writes: false,
    },
    ToolDef {
        name: "litestream_version",
        description: "Print the Litestream binary version.",
        args: &[],
        required: &[],
        writes: false,
    },
    ToolDef {
        name: "litestream_restore",
        description: "Restore a database from a Litestream replica.",
        args: &[
            ("path", "string", "Database path or replica URL."),
            (
                "o",
                "string",
                "Output path for the restored database. Optional.",
            ),
            CONFIG_ARG,
            (
                "txid",
                "string",
                "Restore up to a specific transaction ID. Optional.",
            ),
            (
                "timestamp",
                "string",
                "Restore to a specific point-in-time (RFC3339). Optional.",
            ),
            (
                "parallelism",
                "string",
                "Number of files to download in parallel. Optional.",
            ),
            (
                "if_db_not_exists",
                "boolean",
                "Return 0 if the database already exists. Optional.",
            ),
            (
                "if_replica_exists",
                "boolean",
                "Return 0 if no backups found. Optional.",
            ),
        ],
        required: &["path"],
        writes: true,
    },
    ToolDef {
        name: "litestream_reset",
        description: "Clear local Litestream state for a database. Removes local LTX files, forcing fresh snapshot on next sync. Database file is not modified.",
        args: &[("path", "string", "Database path to reset."), CONFIG_ARG],
        required: &["path"],
        writes: true,
    },
];

impl ToolDef {
    fn tool(&self) -> Tool {
        let mut props = serde_json::Map::new();
        for (name, ty, description) in self.args {
            props.insert(
                (*name).to_string(),
                json!({"type": ty, "description": description}),
            );
        }
        let schema = json!({
            "type": "object",
            "properties": props,
            "required": self.required,
        });
        let schema: JsonObject = match schema {
            Value::Object(m) => m,
            _ => JsonObject::new(), // unreachable: built as an object above
        };
        Tool::new(self.name, self.description, Arc::new(schema))
    }
}

/// A tool call's arguments, checked against the tool's definition.
struct Args<'a> {
    def: &'a ToolDef,
    given: JsonObject,
}

impl Args<'_> {
    fn string(&self, name: &str) -> Result<Option<String>, String> {
        match self.given.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(Value::String(_)) => Ok(None),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(format!("argument {name}: expected a string, got {other}")),
        }
    }

    fn flag(&self, name: &str) -> Result<bool, String> {
        match self.given.get(name) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(format!(
                "argument {name}: expected true or false, got {other}"
            )),
        }
    }

    /// Unknown arguments are refused by name, never ignored.
    fn check_known(&self) -> Result<(), String> {
        match self
            .given
            .keys()
            .find(|k| !self.def.args.iter().any(|(n, _, _)| n == k))
        {
            Some(k) => Err(format!("{}: unknown argument {k:?}", self.def.name)),
            None => Ok(()),
        }
    }
}

impl Tools {
    fn enabled(&self) -> impl Iterator<Item = &'static ToolDef> + '_ {
        TOOLS.iter().filter(|t| !t.writes || self.write_tools)
    }

    /// The `-config` to pass: the running config file; a `config`
    /// argument naming another file is refused.
    fn config_arg(&self, args: &Args<'_>) -> Result<PathBuf, String> {
        match args.string("config")? {
            None => Ok(self.config.clone()),
            Some(c) if same_file(Path::new(&c), &self.config) => Ok(self.config.clone()),
            Some(c) => Err(format!(
                "config {c:?}: this MCP server answers for {} only",
                self.config.display()
            )),
        }
    }

    /// The command line for a tool other than `litestream_info`.
    fn command_line(&self, args: &Args<'_>) -> Result<Vec<String>, String> {
        let config = || -> Result<Vec<String>, String> {
            Ok(vec![
                "-config".into(),
                self.config_arg(args)?.display().to_string(),
            ])
        };
        let path = args.string("path")?;
        let is_url = path.as_deref().is_some_and(|p| p.contains("://"));
        let mut cmd: Vec<String> = Vec::new();
        match args.def.name {
            "litestream_databases" => {
                cmd.push("databases".into());
                cmd.extend(config()?);
            }
            "litestream_status" => {
                cmd.push("status".into());
                cmd.extend(config()?);
            }
            "litestream_ltx" => {
                cmd.push("ltx".into());
                if !is_url {
                    cmd.extend(config()?);
                }
            }
            "litestream_version" => cmd.push("version".into()),
            "litestream_reset" => {
                cmd.push("reset".into());
                cmd.extend(config()?);
            }
            "litestream_restore" => {
                cmd.push("restore".into());
                if let Some(o) = args.string("o")? {
                    cmd.extend(["-o".into(), o]);
                }
                if !is_url {
                    cmd.extend(config()?);
                }
                for (arg, flag) in [
                    ("txid", "-txid"),
                    ("timestamp", "-timestamp"),
                    ("parallelism", "-parallelism"),
                ] {
                    if let Some(v) = args.string(arg)? {
                        cmd.extend([flag.into(), v]);
                    }
                }
                if args.flag("if_db_not_exists")? {
                    cmd.push("-if-db-not-exists".into());
                }
                if args.flag("if_replica_exists")? {
                    cmd.push("-if-replica-exists".into());
                }
            }
            other => return Err(format!("unknown tool {other}")),
        }
        if let Some(p) = path {
            // After `--`: a path is never read as a flag.
            cmd.extend(["--".into(), p]);
        }
        Ok(cmd)
    }

    /// Runs this program with `args`; its output, or the error Go gives
    /// (`OUTPUT: exit status N`).
    async fn run(&self, args: &[String]) -> Result<String, String> {
        let mut c = tokio::process::Command::new(&self.exe);
        c.args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(TOOL_TIMEOUT, c.output())
            .await
            .map_err(|_| format!("{} did not finish within {TOOL_TIMEOUT:?}", args[0]))?
            .map_err(|e| format!("run {}: {e}", self.exe.display()))?;
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!(
                "{}: exit status {}",
                text.trim(),
                out.status.code().unwrap_or(-1)
            ))
        }
    }

    /// `litestream_info`: version, config path, databases, and the LTX
    /// files of the first databases, as Go's report.
    async fn info(&self, args: &Args<'_>) -> Result<String, String> {
        let config = self.config_arg(args)?.display().to_string();
        let mut out = String::from("=== Litestream Status Report ===\n\n");
        let version = self
            .run(&["version".into()])
            .await
            .map_err(|e| format!("Failed to get version info: {e}"))?;
        out.push_str(&format!("Version Information:\n{version}\n"));
        out.push_str(&format!("Current Config Path:\n{config}\n\n"));
        let dbs = self
            .run(&["databases".into(), "-config".into(), config.clone()])
            .await
            .map_err(|e| format!("Failed to get databases info: {e}"))?;
        out.push_str(&format!("Databases:\n{dbs}\n"));
        out.push_str("LTX Files:\n");
        let paths: Vec<&str> = dbs
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        for p in paths.iter().take(INFO_LTX_DATABASES) {
            let cmd = vec![
                "ltx".into(),
                "-config".into(),
                config.clone(),
                "--".into(),
                p.to_string(),
            ];
            match self.run(&cmd).await {
                Ok(ltx) => out.push_str(&format!("Database: {p}\n{ltx}\n")),
                Err(e) => out.push_str(&format!("Failed to get LTX files for {p}: {e}\n")),
            }
        }
        if paths.len() > INFO_LTX_DATABASES {
            out.push_str(&format!(
                "... and {} more databases (litestream_ltx lists one)\n",
                paths.len() - INFO_LTX_DATABASES
            ));
        }
        Ok(out)
    }
}

/// True if `a` and `b` name the same file (or the same path).
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

fn text_result(r: Result<String, String>) -> CallToolResult {
    match r {
        Ok(t) => CallToolResult::success(vec![ContentBlock::text(t)]),
        Err(e) => CallToolResult::error(vec![ContentBlock::text(e)]),
    }
}

impl rmcp::ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(ServerCapabilities::builder().enable_tools().build());
        info.server_info = Implementation::new(
            "Litestream MCP Server (litestreampp)",
            env!("CARGO_PKG_VERSION"),
        );
        info
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(
            self.enabled().map(ToolDef::tool).collect(),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(def) = TOOLS.iter().find(|t| t.name == request.name) else {
            return Err(ErrorData::invalid_params(
                format!("unknown tool {}", request.name),
                None,
            ));
        };
        if def.writes && !self.write_tools {
            return Ok(text_result(Err(format!(
                "{} is disabled: set mcp-write-tools: true in the config to allow it",
                def.name
            )))
            .into());
        }
        let args = Args {
            def,
            given: request.arguments.unwrap_or_default(),
        };
        if let Err(e) = args.check_known() {
            return Ok(text_result(Err(e)).into());
        }
        if let Some(missing) = def
            .required
            .iter()
            .find(|r| args.string(r).ok().flatten().is_none())
        {
            return Ok(text_result(Err(format!("{}: {missing} is required", def.name))).into());
        }
        let result = if def.name == "litestream_info" {
            self.info(&args).await
        } else {
            match self.command_line(&args) {
                Ok(cmd) => self.run(&cmd).await,
                Err(e) => Err(e),
            }
        };
        Ok(text_result(result).into())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn host_less_addresses_bind_loopback() {
        assert_eq!(bind_addr(":3001").unwrap().to_string(), "127.0.0.1:3001");
        assert_eq!(
            bind_addr("localhost:3001").unwrap().to_string(),
            "127.0.0.1:3001"
        );
        assert_eq!(
            bind_addr("0.0.0.0:3001").unwrap().to_string(),
            "0.0.0.0:3001"
        );
        assert!(bind_addr("nonsense").is_err());
    }

    #[test]
    fn tool_calls_become_command_lines() {
        let tools = Tools {
            exe: PathBuf::from("/x"),
            config: PathBuf::from("/etc/litestream.yml"),
            write_tools: true,
        };
        let def = |n: &str| TOOLS.iter().find(|t| t.name == n).unwrap();
        let args = |n: &str, v: Value| Args {
            def: def(n),
            given: v.as_object().unwrap().clone(),
        };
        let a = args(
            "litestream_restore",
            json!({"path": "s3://b/db", "o": "/tmp/x.db", "txid": "0000000000000003", "if_db_not_exists": true}),
        );
        assert_eq!(
            tools.command_line(&a).unwrap(),
            [
                "restore",
                "-o",
                "/tmp/x.db",
                "-txid",
                "0000000000000003",
                "-if-db-not-exists",
                "--",
                "s3://b/db"
            ]
        );
        let a = args("litestream_ltx", json!({"path": "/data/app.db"}));
        assert_eq!(
            tools.command_line(&a).unwrap(),
            [
                "ltx",
                "-config",
                "/etc/litestream.yml",
                "--",
                "/data/app.db"
            ]
        );
        let a = args("litestream_status", json!({"config": "/elsewhere.yml"}));
        assert!(tools.command_line(&a).unwrap_err().contains("answers for"));
        let a = args("litestream_version", json!({"verbose": true}));
        assert!(a.check_known().unwrap_err().contains("verbose"));
    }
}
