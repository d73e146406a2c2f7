//! A real SSH server for tests: OpenSSH's `sshd` from Debian's package
//! (unpacked by `tests/setup.sh` into `.tools/deb/openssh-server`, with
//! `libwrap0` beside it), on a free port on 127.0.0.1 with a host key and
//! an authorized user key made for the test, serving SFTP in-process
//! (`internal-sftp`); stopped when dropped.
//!
//! It runs unprivileged: as the user running the tests, or as `nobody`
//! when that is root (a root `sshd` wants a privilege-separation user the
//! machine does not have). An unprivileged `sshd` cannot check passwords,
//! so tests authenticate by key; a password is only shown to be refused.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::moto::free_port;
use crate::repo_root;

/// `nobody`, the user `sshd` runs as when the tests run as root.
const NOBODY: u32 = 65534;

/// A running `sshd`.
#[derive(Debug)]
pub struct SshServer {
    child: Child,
    pub port: u16,
    /// The user to log in as.
    pub user: String,
    /// The private key of [`Self::user`] (OpenSSH format).
    pub key_path: PathBuf,
    /// The server's public key, `authorized_keys` form (Go's `host-key`).
    pub host_key: String,
    /// A directory the server's user may write, for replicas.
    pub data: PathBuf,
    dir: tempfile::TempDir,
}

fn keygen(path: &Path) {
    let status = Command::new(tool("openssh-client", "usr/bin/ssh-keygen"))
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(path)
        .status()
        .expect("run ssh-keygen");
    assert!(status.success(), "ssh-keygen {}", path.display());
}

fn tool(package: &str, file: &str) -> PathBuf {
    let p = repo_root().join(".tools/deb").join(package).join(file);
    assert!(
        p.exists(),
        "{} not found: run the tests with tests/run.sh",
        p.display()
    );
    p
}

impl SshServer {
    pub fn start() -> SshServer {
        let sshd = tool("openssh-server", "usr/sbin/sshd");
        let libs = tool("libwrap0", "usr/lib/x86_64-linux-gnu");
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        // `/proc/self` belongs to the process's effective user.
        let as_root = std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(1)
            == 0;
        let user = if as_root {
            "nobody".to_string()
        } else {
            std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .expect("USER")
        };
        keygen(&root.join("host_key"));
        keygen(&root.join("user_key"));
        std::fs::copy(root.join("user_key.pub"), root.join("authorized_keys")).unwrap();
        let data = root.join("data");
        std::fs::create_dir(&data).unwrap();
        let port = free_port();
        let config = root.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile none\n\
                 AuthorizedKeysFile {auth}\nStrictModes no\nUsePAM yes\n\
                 PasswordAuthentication yes\nKbdInteractiveAuthentication no\n\
                 Subsystem sftp internal-sftp\nLogLevel ERROR\nMaxStartups 100\n",
                host = root.join("host_key").display(),
                auth = root.join("authorized_keys").display(),
            ),
        )
        .unwrap();
        if as_root {
            // sshd reads its host key only when its own user owns it.
            for p in [&root, &data, &root.join("host_key"), &config] {
                std::os::unix::fs::chown(p, Some(NOBODY), None).unwrap();
            }
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let host_key = std::fs::read_to_string(root.join("host_key.pub"))
            .unwrap()
            .trim()
            .to_string();
        let mut cmd = Command::new(&sshd);
        cmd.args(["-D", "-e", "-f"])
            .arg(&config)
            .env("LD_LIBRARY_PATH", &libs)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if as_root {
            cmd.uid(NOBODY).gid(NOBODY);
        }
        let child = cmd.spawn().expect("spawn sshd");
        let s = SshServer {
            child,
            port,
            user,
            key_path: root.join("user_key"),
            host_key,
            data,
            dir,
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "sshd did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    /// `sftp://USER@127.0.0.1:PORT<data>/<rest>`.
    pub fn url(&self, rest: &str) -> String {
        format!(
            "sftp://{}@127.0.0.1:{}{}/{rest}",
            self.user,
            self.port,
            self.data.display()
        )
    }

    /// `sftp://USER@127.0.0.1:PORT<data>/<rest>?key-path=…&host-key=…`:
    /// a replica URL that logs in by key and checks the host key.
    pub fn keyed_url(&self, rest: &str) -> String {
        format!(
            "{}?key-path={}&host-key={}",
            self.url(rest),
            encode(&self.key_path.to_string_lossy()),
            encode(&self.host_key)
        )
    }

    /// The config lines of a replica at `<data>/<rest>` (Go's keys).
    pub fn replica_keys(&self, rest: &str, indent: &str) -> String {
        format!(
            "{indent}type: sftp\n{indent}host: 127.0.0.1:{port}\n{indent}user: {user}\n{indent}path: {path}/{rest}\n{indent}key-path: {key}\n{indent}host-key: {hk}\n",
            port = self.port,
            user = self.user,
            path = self.data.display(),
            key = self.key_path.display(),
            hk = self.host_key,
        )
    }

    /// Every file under [`Self::data`], relative to it, with its size.
    pub fn files(&self) -> Vec<(String, u64)> {
        crate::files_under(&self.data)
    }

    /// The temporary directory holding the server's files.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

/// Percent-encodes everything but unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
