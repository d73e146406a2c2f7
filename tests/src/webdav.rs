//! A real WebDAV server for tests: `rclone serve webdav` (Debian's rclone,
//! unpacked by `tests/setup.sh` into `.tools/deb/rclone`) over a temporary
//! directory, on a free port on 127.0.0.1, with a user and password;
//! stopped when dropped. What it stores is read straight from its
//! directory.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::moto::free_port;
use crate::repo_root;

pub const USER: &str = "litestream";
pub const PASSWORD: &str = "dav-S3cret";

/// A running `rclone serve webdav`.
#[derive(Debug)]
pub struct Rclone {
    child: Child,
    pub port: u16,
    root: tempfile::TempDir,
}

impl Rclone {
    /// Serves a new empty directory.
    pub fn start() -> Rclone {
        let bin = repo_root().join(".tools/deb/rclone/usr/bin/rclone");
        assert!(
            bin.exists(),
            "rclone not found at {}: run the tests with tests/run.sh",
            bin.display()
        );
        let root = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let child = Command::new(bin)
            .args(["serve", "webdav"])
            .arg(root.path())
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .args(["--user", USER, "--pass", PASSWORD])
            .args(["--config", "/dev/null", "--log-level", "ERROR"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rclone");
        let r = Rclone { child, port, root };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "rclone did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    /// `http://127.0.0.1:PORT`, the replica's `webdav-url`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `webdav://USER:PASSWORD@127.0.0.1:PORT/<path>`.
    pub fn replica_url(&self, path: &str) -> String {
        format!("webdav://{USER}:{PASSWORD}@127.0.0.1:{}/{path}", self.port)
    }

    /// The directory it serves.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Every file it holds, relative to its root, with its size.
    pub fn files(&self) -> Vec<(String, u64)> {
        crate::files_under(self.root())
    }
}

impl Drop for Rclone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
