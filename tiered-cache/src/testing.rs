//! A real S3-compatible server for tests: `s3s-fs`, installed by `scripts/install-deps.sh`
//! under `~/.cache/strata/tools/bin` (or named by `STRATA_S3S_FS`), started on a free
//! loopback port with its own data directory. It can be stopped and started again on the
//! same port and data, to test outages.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ObjectStoreConfig;

/// Access key of the test server.
pub const ACCESS_KEY: &str = "AK";
/// Secret key of the test server.
pub const SECRET_KEY: &str = "SK";

/// A running (or stopped) `s3s-fs` server; killed when dropped.
#[derive(Debug)]
pub struct S3Server {
    child: Option<Child>,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

/// The `s3s-fs` binary.
pub fn s3s_fs() -> PathBuf {
    if let Some(p) = std::env::var_os("STRATA_S3S_FS") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache/strata/tools/bin/s3s-fs")
}

impl S3Server {
    /// Starts a server holding one empty bucket. Panics when it cannot (a test fixture).
    pub fn start(bucket: &str) -> S3Server {
        let dir = tempfile::tempdir().expect("temp dir");
        // A bucket of s3s-fs is a directory of its data directory.
        std::fs::create_dir(dir.path().join(bucket)).expect("bucket directory");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut s = S3Server {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        s.resume();
        s
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its data directory (a bucket is a directory in it).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A store configuration for `bucket` under `prefix`.
    pub fn config(&self, bucket: &str, prefix: &str) -> ObjectStoreConfig {
        ObjectStoreConfig::S3 {
            endpoint: format!("http://{}", self.addr),
            bucket: bucket.to_string(),
            region: "us-east-1".to_string(),
            access_key_id: ACCESS_KEY.to_string(),
            secret_access_key: SECRET_KEY.to_string(),
            path_style: true,
            prefix: prefix.to_string(),
        }
    }

    /// Kills the server (an outage); its data stays.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and data, waiting until it listens.
    pub fn resume(&mut self) {
        if self.child.is_some() {
            return;
        }
        let bin = s3s_fs();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let child = Command::new(&bin)
                .args([
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &self.addr.port().to_string(),
                ])
                .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
                .arg(self.dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot start {} (run scripts/install-deps.sh): {e}",
                        bin.display()
                    )
                });
            self.child = Some(child);
            while Instant::now() < deadline {
                if TcpStream::connect(self.addr).is_ok() {
                    return;
                }
                // A restart may find the port still held for a moment: start it again.
                if let Some(c) = &mut self.child
                    && let Ok(Some(_)) = c.try_wait()
                {
                    self.child = None;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(
                Instant::now() < deadline,
                "s3s-fs did not listen on {}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
