//! The MCP server (`mcp-addr`): Litestream 0.5.17's tools over Streamable
//! HTTP, spoken to by a plain JSON-RPC client over TCP; the tool list
//! compared with Go's own server; write tools only when configured; a
//! token on any address but loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use litestreampp_e2e::*;
use serde_json::{Value, json};

/// A minimal MCP client: one session on 127.0.0.1:`port`.
struct Mcp {
    port: u16,
    session: Option<String>,
    auth: Option<String>,
    next_id: u64,
}

/// An HTTP answer: status, headers (lowercased names), body (de-chunked).
fn post(port: u16, headers: &str, body: &str) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf); // the server closes after the answer
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, mut rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let head = head.to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut body = String::new();
    if head.contains("transfer-encoding: chunked") {
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || after.len() < n {
                break;
            }
            body.push_str(&after[..n]);
            rest = after[n..].trim_start_matches("\r\n");
        }
    } else {
        body = rest.to_string();
    }
    (status, head, body)
}

/// The JSON-RPC message in a reply: the body itself, or an SSE event's
/// `data:` line.
fn message(body: &str) -> Value {
    if let Ok(v) = serde_json::from_str(body) {
        return v;
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|v| v.get("id").is_some())
        .unwrap_or_else(|| panic!("no JSON-RPC reply in {body:?}"))
}

impl Mcp {
    fn connect(port: u16, auth: Option<&str>) -> Mcp {
        let mut m = Mcp {
            port,
            session: None,
            auth: auth.map(str::to_string),
            next_id: 1,
        };
        let (status, head, body) = m.send(&json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}
        }));
        assert_eq!(status, 200, "{head}\n{body}");
        m.session = head
            .lines()
            .find_map(|l| l.strip_prefix("mcp-session-id:"))
            .map(|s| s.trim().to_string());
        let (status, _, _) =
            m.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        assert!(status == 202 || status == 200, "initialized: {status}");
        m
    }

    fn send(&self, msg: &Value) -> (u16, String, String) {
        let mut headers = String::new();
        if let Some(s) = &self.session {
            headers.push_str(&format!(
                "Mcp-Session-Id: {s}\r\nMcp-Protocol-Version: 2025-03-26\r\n"
            ));
        }
        if let Some(a) = &self.auth {
            headers.push_str(&format!("Authorization: Bearer {a}\r\n"));
        }
        post(self.port, &headers, &msg.to_string())
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let (status, head, body) = self.send(&json!({
            "jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params
        }));
        assert_eq!(status, 200, "{method}: {head}\n{body}");
        message(&body)
    }

    /// Tool name → its argument names, sorted.
    fn tools(&mut self) -> Vec<(String, Vec<String>)> {
        let v = self.call("tools/list", json!({}));
        let mut out: Vec<(String, Vec<String>)> = v["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let mut args: Vec<String> = t["inputSchema"]["properties"]
                    .as_object()
                    .map(|p| p.keys().cloned().collect())
                    .unwrap_or_default();
                args.sort();
                (t["name"].as_str().unwrap().to_string(), args)
            })
            .collect();
        out.sort();
        out
    }

    /// A tool's text, and whether it is an error.
    fn tool(&mut self, name: &str, args: Value) -> (String, bool) {
        let v = self.call("tools/call", json!({"name": name, "arguments": args}));
        let r = &v["result"];
        let text = r["content"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: {v}"))
            .iter()
            .filter_map(|c| c["text"].as_str())
            .collect::<String>();
        (text, r["isError"].as_bool().unwrap_or(false))
    }
}

fn config(dir: &Path, name: &str, db: &Path, extra: &str) -> std::path::PathBuf {
    let cfg = dir.join(format!("{name}.yml"));
    std::fs::write(
        &cfg,
        format!(
            "{extra}dbs:\n  - path: {}\n    replica:\n      path: {}\n",
            db.display(),
            dir.join(format!("{name}-replica")).display()
        ),
    )
    .unwrap();
    cfg
}

fn replicate(c: std::process::Command, cfg: &Path, log: &Path) -> std::process::Child {
    let mut c = c;
    c.args(["replicate", "-config"]).arg(cfg);
    spawn_logged(c, log)
}

fn wait_listening(port: u16) {
    wait_for("the MCP server", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

#[test]
fn mcp_tools_match_gos_and_write_tools_need_configuring() {
    let dir = Scratch::new();
    let w = Workload::new(91);
    let dbs: Vec<_> = ["ours", "go", "writes"]
        .iter()
        .map(|n| {
            let db = dir.path().join(format!("{n}.db"));
            let conn = open_app(&db, None);
            w.setup(&conn);
            w.step(&conn, 1, false);
            db
        })
        .collect();
    let (p_ours, p_go, p_writes) = (moto::free_port(), moto::free_port(), moto::free_port());
    let ours_cfg = config(
        dir.path(),
        "ours",
        &dbs[0],
        &format!("mcp-addr: \":{p_ours}\"\n"),
    );
    let go_cfg = config(
        dir.path(),
        "go",
        &dbs[1],
        &format!("mcp-addr: \"127.0.0.1:{p_go}\"\n"),
    );
    let writes_cfg = config(
        dir.path(),
        "writes",
        &dbs[2],
        &format!("mcp-addr: \"127.0.0.1:{p_writes}\"\nmcp-write-tools: true\n"),
    );
    let ours_r = replicate(ours(), &ours_cfg, &dir.path().join("ours.log"));
    let go_r = replicate(go(), &go_cfg, &dir.path().join("go.log"));
    let writes_r = replicate(ours(), &writes_cfg, &dir.path().join("writes.log"));
    for p in [p_ours, p_go, p_writes] {
        wait_listening(p);
    }

    // The same tools and arguments as Go's; restore and reset only when
    // configured.
    let go_tools = Mcp::connect(p_go, None).tools();
    assert_eq!(go_tools.len(), 7, "{go_tools:?}");
    let mut writer = Mcp::connect(p_writes, None);
    assert_eq!(writer.tools(), go_tools);
    let mut reader = Mcp::connect(p_ours, None);
    let read_only: Vec<_> = go_tools
        .iter()
        .filter(|(n, _)| n != "litestream_restore" && n != "litestream_reset")
        .cloned()
        .collect();
    assert_eq!(reader.tools(), read_only);

    // Read-only tools answer as the commands do.
    let (v, err) = reader.tool("litestream_version", json!({}));
    assert!(!err && v.contains("litestreampp"), "{v}");
    let db = dbs[0].display().to_string();
    let (v, err) = reader.tool("litestream_databases", json!({}));
    assert!(!err && v.contains(&db), "{v}");
    wait_for("the first sync", Duration::from_secs(30), || {
        !replica_txids(&dir.path().join("ours-replica"), 0).is_empty()
    });
    let (v, err) = reader.tool("litestream_ltx", json!({"path": db}));
    assert!(!err && v.contains("min_txid"), "{v}");
    let (v, err) = reader.tool("litestream_status", json!({"path": db}));
    assert!(!err && v.contains(&db), "{v}");
    let (v, err) = reader.tool("litestream_info", json!({}));
    assert!(!err, "{v}");
    for part in [
        "=== Litestream Status Report ===",
        "Databases:",
        "LTX Files:",
        &db,
    ] {
        assert!(v.contains(part), "{part}: {v}");
    }
    // Refused, by name: write tools here, another config file, unknown
    // arguments, a missing path.
    let (v, err) = reader.tool("litestream_restore", json!({"path": db, "o": "/tmp/x.db"}));
    assert!(err && v.contains("mcp-write-tools"), "{v}");
    let (v, err) = reader.tool("litestream_databases", json!({"config": "/etc/passwd"}));
    assert!(err && v.contains("answers for"), "{v}");
    let (v, err) = reader.tool("litestream_ltx", json!({"path": db, "level": 1}));
    assert!(err && v.contains("\"level\""), "{v}");
    let (v, err) = reader.tool("litestream_ltx", json!({}));
    assert!(err && v.contains("path is required"), "{v}");
    // A malformed request is answered and the server goes on.
    let (status, _, _) = post(p_ours, "", "{not json");
    assert!((400..500).contains(&status), "{status}");
    assert!(!reader.tool("litestream_version", json!({})).1);

    // With write tools: restore (into a new file only) and reset.
    wait_for("the first sync", Duration::from_secs(30), || {
        !replica_txids(&dir.path().join("writes-replica"), 0).is_empty()
    });
    let out = dir.path().join("restored.db");
    let wdb = dbs[2].display().to_string();
    let (v, err) = writer.tool(
        "litestream_restore",
        json!({"path": wdb, "o": out.display().to_string()}),
    );
    assert!(!err, "{v}");
    assert_eq!(verify_restore(&out, &w), 1);
    let (v, err) = writer.tool(
        "litestream_restore",
        json!({"path": wdb, "o": out.display().to_string()}),
    );
    assert!(err && v.contains("already exists"), "{v}");
    let (v, err) = writer.tool("litestream_reset", json!({"path": wdb}));
    assert!(!err, "{v}");

    for c in [ours_r, go_r, writes_r] {
        assert_eq!(terminate(c, Duration::from_secs(30)), 0);
    }
}

#[test]
fn mcp_off_loopback_needs_a_token() {
    let dir = Scratch::new();
    let db = dir.path().join("app.db");
    Workload::new(92).setup(&open_app(&db, None));
    let port = moto::free_port();
    let cfg = config(
        dir.path(),
        "open",
        &db,
        &format!("mcp-addr: \"0.0.0.0:{port}\"\n"),
    );
    // No token: refused at start, naming what to set.
    let mut c = ours();
    c.args(["replicate", "-config"])
        .arg(&cfg)
        .env_remove("LITESTREAMPP_TOKEN");
    let (code, err) = run_err(c);
    assert_ne!(code, 0);
    assert!(err.contains("LITESTREAMPP_TOKEN"), "{err}");
    // With one: every request must bear it.
    let mut c = ours();
    c.args(["replicate", "-config"])
        .arg(&cfg)
        .env("LITESTREAMPP_TOKEN", "s3cr3t");
    let child = spawn_logged(c, &dir.path().join("open.log"));
    wait_listening(port);
    let init = json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    })
    .to_string();
    assert_eq!(post(port, "", &init).0, 403);
    assert_eq!(post(port, "Authorization: Bearer nope\r\n", &init).0, 403);
    let mut m = Mcp::connect(port, Some("s3cr3t"));
    assert!(!m.tool("litestream_version", json!({})).1);
    assert_eq!(terminate(child, Duration::from_secs(30)), 0);
    let log = std::fs::read_to_string(dir.path().join("open.log")).unwrap();
    assert!(!log.contains("s3cr3t"), "the token reached the log");
}

/// The fleet (`run`, and `replicate` of directory entries) serves the same
/// tools.
#[test]
fn the_fleet_serves_mcp_too() {
    let dir = Scratch::new();
    let tenants = dir.path().join("tenants");
    std::fs::create_dir_all(&tenants).unwrap();
    let w = Workload::new(93);
    for i in 0..20 {
        let conn = open_app(&tenants.join(format!("t{i}.db")), None);
        w.setup(&conn);
        w.step(&conn, 1, false);
    }
    let port = moto::free_port();
    let cfg = dir.path().join("fleet.yml");
    std::fs::write(
        &cfg,
        format!(
            "mcp-addr: \"127.0.0.1:{port}\"\ndbs:\n  - dir: {}\n    pattern: \"*.db\"\n    replica:\n      path: {}\n",
            tenants.display(),
            dir.path().join("replicas").display()
        ),
    )
    .unwrap();
    let child = replicate(ours(), &cfg, &dir.path().join("fleet.log"));
    wait_listening(port);
    let mut m = Mcp::connect(port, None);
    let (v, err) = m.tool("litestream_databases", json!({}));
    assert!(!err && v.contains(&tenants.display().to_string()), "{v}");
    let t3 = tenants.join("t3.db").display().to_string();
    wait_for("t3 backed up", Duration::from_secs(60), || {
        !m.tool("litestream_ltx", json!({"path": t3})).1
    });
    let (v, err) = m.tool("litestream_status", json!({"path": t3}));
    assert!(!err && v.contains(&t3), "{v}");
    assert_eq!(terminate(child, Duration::from_secs(60)), 0);
}
