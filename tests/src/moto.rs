//! A real S3 server for tests: moto, started on a free port on 127.0.0.1
//! by the test that needs it and stopped when dropped.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::repo_root;

/// Credentials every test uses (moto accepts any unless auth is on).
pub const ACCESS_KEY: &str = "AKIALITESTREAMPPTEST";
pub const SECRET_KEY: &str = "litestreampp-test-secret-key";

/// A running moto server.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    pub port: u16,
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// One raw HTTP/1.1 request; returns (status, body).
pub fn http(port: u16, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    crate::http_request(port, method, path, "").map(|(status, _, body)| (status, body))
}

impl Moto {
    /// Starts moto; `auth` turns on its credential checks.
    pub fn start_with(auth: bool) -> Moto {
        let bin = repo_root().join(".venv/bin/moto_server");
        assert!(
            bin.exists(),
            "moto not found at {}: run the tests with tests/run.sh",
            bin.display()
        );
        let port = free_port();
        let mut c = Command::new(bin);
        c.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if auth {
            c.env("INITIAL_NO_AUTH_ACTION_COUNT", "0");
        }
        let child = c.spawn().expect("spawn moto");
        let m = Moto { child, port };
        let start = Instant::now();
        while http(port, "GET", "/moto-api/").map(|r| r.0).ok() != Some(200) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "moto did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        m
    }

    /// Starts moto without credential checks.
    pub fn start() -> Moto {
        Self::start_with(false)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (unsigned, as moto allows without auth).
    pub fn create_bucket(&self, name: &str) {
        let (status, body) = http(self.port, "PUT", &format!("/{name}")).expect("create bucket");
        assert_eq!(status, 200, "create bucket {name}: {body}");
    }

    /// A Litestream replica URL for `bucket/path` on this server.
    pub fn url(&self, bucket: &str, path: &str) -> String {
        url_for(&self.endpoint(), bucket, path)
    }

    /// Every key in a bucket.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!("/{bucket}?list-type=2");
            if let Some(t) = &token {
                path.push_str(&format!("&continuation-token={}", percent(t)));
            }
            let (_, body) = http(self.port, "GET", &path).expect("list");
            for part in body.split("<Key>").skip(1) {
                if let Some((k, _)) = part.split_once("</Key>") {
                    keys.push(k.to_string());
                }
            }
            token = body
                .split("<NextContinuationToken>")
                .nth(1)
                .and_then(|p| p.split_once("</NextContinuationToken>"))
                .map(|(t, _)| t.to_string());
            if token.is_none() {
                return keys;
            }
        }
    }
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A replica URL for a bucket and path at an endpoint.
pub fn url_for(endpoint: &str, bucket: &str, path: &str) -> String {
    format!("s3://{bucket}/{path}?endpoint={endpoint}&region=us-east-1&forcePathStyle=true")
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill(); // the test is over; nothing to report
        let _ = self.child.wait();
    }
}

/// S3 settings for `url` with the test credentials (in the settings, not
/// the process environment).
pub fn settings(url: &str) -> litestreampp_core::client::s3::S3Settings {
    let mut s = litestreampp_core::client::s3::S3Settings::from_url(url).expect("S3 URL");
    s.access_key_id = Some(ACCESS_KEY.into());
    s.secret_access_key = Some(SECRET_KEY.into());
    s
}

/// Sets the test credentials on a command (ours or Go's).
pub fn with_credentials(c: &mut Command) -> &mut Command {
    c.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
}

/// Asserts that every level but the snapshots' (9) of every replica in
/// `bucket` is a contiguous TXID sequence; returns the number of LTX files.
pub fn assert_levels_contiguous(moto: &Moto, bucket: &str) -> usize {
    let mut by_level = std::collections::BTreeMap::<String, Vec<(u64, u64)>>::new();
    for k in moto.keys(bucket) {
        let mut parts = k.rsplitn(3, '/');
        let (Some(name), Some(level)) = (parts.next(), parts.next()) else {
            continue;
        };
        let replica = parts.next().unwrap_or("");
        if let Some((a, b)) = litestreampp_core::txid::parse_ltx_file_name(name) {
            by_level
                .entry(format!("{replica}/{level}"))
                .or_default()
                .push((a.0, b.0));
        }
    }
    let mut files = 0;
    for (level, mut v) in by_level {
        files += v.len();
        if level.ends_with("/0009") {
            continue;
        }
        v.sort();
        for w in v.windows(2) {
            assert_eq!(
                w[1].0,
                w[0].1 + 1,
                "level {level}: TXID gap or overlap between {:?} and {:?}",
                w[0],
                w[1]
            );
        }
    }
    files
}
