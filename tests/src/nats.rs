//! A real NATS server for tests: `nats-server` with JetStream (Debian's
//! package, unpacked by `tests/setup.sh` into `.tools/deb/nats-server`),
//! on a free port on 127.0.0.1 with a user and password, storing in a
//! temporary directory; stopped when dropped. Buckets are created as an
//! operator would (`nats object add`), through async-nats.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::moto::free_port;
use crate::repo_root;

pub const USER: &str = "litestream";
pub const PASSWORD: &str = "nats-S3cret";

/// A running `nats-server -js`.
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    pub port: u16,
    _store: tempfile::TempDir,
}

impl NatsServer {
    pub fn start() -> NatsServer {
        let bin = repo_root().join(".tools/deb/nats-server/usr/sbin/nats-server");
        assert!(
            bin.exists(),
            "nats-server not found at {}: run the tests with tests/run.sh",
            bin.display()
        );
        let store = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let child = Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string()])
            .arg("-sd")
            .arg(store.path())
            .args(["--user", USER, "--pass", PASSWORD])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        let n = NatsServer {
            child,
            port,
            _store: store,
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "nats-server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        n
    }

    /// `nats://USER:PASSWORD@127.0.0.1:PORT/<bucket and path>`.
    pub fn url(&self, rest: &str) -> String {
        format!("nats://{USER}:{PASSWORD}@127.0.0.1:{}/{rest}", self.port)
    }

    async fn jetstream(&self) -> async_nats::jetstream::Context {
        let client = async_nats::ConnectOptions::with_user_and_password(
            USER.to_string(),
            PASSWORD.to_string(),
        )
        .connect(format!("127.0.0.1:{}", self.port))
        .await
        .expect("connect to nats-server");
        async_nats::jetstream::new(client)
    }

    /// Creates an object store bucket.
    pub fn create_bucket(&self, name: &str) {
        crate::runtime().block_on(async {
            self.jetstream()
                .await
                .create_object_store(async_nats::jetstream::object_store::Config {
                    bucket: name.to_string(),
                    ..Default::default()
                })
                .await
                .expect("create object store");
        });
    }

    /// Every object in a bucket: (name, size, `Litestream-Timestamp`).
    /// By async-nats's own listing, which can lose the server's first
    /// messages and then wait for ever (docs/benchmarks.md, NATS): a
    /// listing that stalls for 5 s is made again.
    pub fn objects(&self, bucket: &str) -> Vec<(String, u64, Option<String>)> {
        use futures::StreamExt;
        crate::runtime().block_on(async {
            let store = self
                .jetstream()
                .await
                .get_object_store(bucket)
                .await
                .expect("open object store");
            for _ in 0..20 {
                let mut list = store.list().await.expect("list");
                let mut out = Vec::new();
                loop {
                    match tokio::time::timeout(std::time::Duration::from_secs(5), list.next()).await
                    {
                        Ok(Some(o)) => {
                            let o = o.expect("list entry");
                            let ts = o
                                .headers
                                .as_ref()
                                .and_then(|h| h.get("Litestream-Timestamp"))
                                .map(|v| v.as_str().to_string());
                            out.push((o.name, o.size as u64, ts));
                        }
                        Ok(None) => {
                            out.sort();
                            return out;
                        }
                        Err(_) => break, // stalled: list again
                    }
                }
            }
            panic!("every listing of bucket {bucket} stalled");
        })
    }
}

impl NatsServer {
    /// Publishes `name`'s info again with `size` for its size, as a
    /// damaged or half-replaced object would read.
    pub fn misstate_size(&self, bucket: &str, name: &str, size: usize) {
        use base64::Engine;
        crate::runtime().block_on(async {
            let js = self.jetstream().await;
            let store = js
                .get_object_store(bucket)
                .await
                .expect("open object store");
            let mut info = store.info(name).await.expect("object info");
            info.size = size;
            let subject = format!(
                "$O.{bucket}.M.{}",
                base64::engine::general_purpose::URL_SAFE.encode(name)
            );
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Rollup", "sub");
            js.publish_with_headers(
                subject,
                headers,
                serde_json::to_vec(&info).expect("info as JSON").into(),
            )
            .await
            .expect("publish")
            .await
            .expect("stored");
        });
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
