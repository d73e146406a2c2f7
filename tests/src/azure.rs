//! A real Azure Blob server for tests: Azurite (from npm, installed by
//! `tests/setup.sh` into `.tools/azurite`), started on a free port on
//! 127.0.0.1 with its well-known development account, in memory, and
//! stopped when dropped. The harness signs its own few requests (create a
//! container, list blobs with metadata) with the account's shared key.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};

use crate::moto::free_port;
use crate::repo_root;

/// Azurite's development account, public and the same in every copy.
pub const ACCOUNT: &str = "devstoreaccount1";
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const VERSION: &str = "2021-08-06";

/// A running Azurite blob service.
#[derive(Debug)]
pub struct Azurite {
    child: Child,
    pub port: u16,
}

/// One blob as a listing shows it.
#[derive(Debug, Clone)]
pub struct Blob {
    pub name: String,
    pub size: u64,
    /// The `litestreamtimestamp` metadata value, if the blob has one.
    pub timestamp: Option<String>,
}

impl Azurite {
    /// Starts the blob service, in memory.
    pub fn start() -> Azurite {
        let bin = repo_root().join(".tools/azurite/node_modules/.bin/azurite-blob");
        assert!(
            bin.exists(),
            "azurite-blob not found at {}: run the tests with tests/run.sh",
            bin.display()
        );
        let port = free_port();
        let child = Command::new(bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args(["--inMemoryPersistence", "--skipApiVersionCheck", "--silent"])
            // Tests talk to 127.0.0.1 only: no telemetry upload.
            .arg("--disableTelemetry")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn azurite-blob");
        let a = Azurite { child, port };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "azurite did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        a
    }

    /// The service URL, the replica's `endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// Creates a container.
    pub fn create_container(&self, name: &str) {
        let (status, body) = self.request("PUT", name, &[("restype", "container")]);
        assert_eq!(status, 201, "create container {name}: {body}");
    }

    /// Every blob in a container, with its timestamp metadata.
    pub fn blobs(&self, container: &str) -> Vec<Blob> {
        let mut out = Vec::new();
        let mut marker = String::new();
        loop {
            let mut q = vec![
                ("comp", "list"),
                ("include", "metadata"),
                ("restype", "container"),
            ];
            if !marker.is_empty() {
                q.push(("marker", &marker));
            }
            let (status, body) = self.request("GET", container, &q);
            assert_eq!(status, 200, "list {container}: {body}");
            for b in body.split("<Blob>").skip(1) {
                out.push(Blob {
                    name: xml_text(b, "Name").unwrap_or_default(),
                    size: xml_text(b, "Content-Length")
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0),
                    timestamp: xml_text(b, "litestreamtimestamp"),
                });
            }
            marker = xml_text(&body, "NextMarker").unwrap_or_default();
            if marker.is_empty() {
                return out;
            }
        }
    }

    /// Every blob name in a container.
    pub fn names(&self, container: &str) -> Vec<String> {
        self.blobs(container).into_iter().map(|b| b.name).collect()
    }

    /// One signed request without a body to `/<account>/<path>?<query>`:
    /// (status, body).
    fn request(&self, method: &str, path: &str, query: &[(&str, &str)]) -> (u16, String) {
        let date = jiff::Timestamp::now()
            .strftime("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let mut sorted = query.to_vec();
        sorted.sort();
        let canonical_query: String = sorted.iter().map(|(k, v)| format!("\n{k}:{v}")).collect();
        // Shared Key: the verb, eleven empty standard headers, the x-ms-
        // headers, then the resource (emulator URLs repeat the account).
        let to_sign = format!(
            "{method}\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{VERSION}\n/{ACCOUNT}/{ACCOUNT}/{path}{canonical_query}"
        );
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&B64.decode(ACCOUNT_KEY).unwrap())
            .expect("HMAC key");
        mac.update(to_sign.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        let qs: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "{method} /{ACCOUNT}/{path}?{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nx-ms-date: {date}\r\nx-ms-version: {VERSION}\r\nAuthorization: SharedKey {ACCOUNT}:{sig}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            qs.join("&"),
            self.port
        )
        .expect("send");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).expect("read answer");
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            crate::dechunk(body)
        } else {
            body.to_string()
        };
        (status, body)
    }
}

/// The text of the first `<tag>…</tag>` in `xml`.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(xml[start..end].to_string())
}

/// Percent-encodes a query value (markers hold `/` and `=`).
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
