//! The object store against a real S3-compatible server on loopback: `s3s-fs`, installed
//! by `scripts/install-deps.sh` under `~/.cache/strata/tools/bin` (or named by
//! `STRATA_S3S_FS`). Each test starts its own server on a free port with its own data
//! directory.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_tiered::{ObjectError, ObjectStore, ObjectStoreConfig};

struct S3Server {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s3s_fs() -> PathBuf {
    if let Some(p) = std::env::var_os("STRATA_S3S_FS") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache/strata/tools/bin/s3s-fs")
}

fn start(bucket: &str) -> S3Server {
    let dir = tempfile::tempdir().expect("temp dir");
    // A bucket of s3s-fs is a directory of its data directory.
    std::fs::create_dir(dir.path().join(bucket)).expect("bucket directory");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let bin = s3s_fs();
    let child = Command::new(&bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", "AK", "--secret-key", "SK"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} (run scripts/install-deps.sh): {e}",
                bin.display()
            )
        });
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "s3s-fs did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
    S3Server {
        child,
        addr,
        _dir: dir,
    }
}

fn config(server: &S3Server, bucket: &str, prefix: &str) -> ObjectStoreConfig {
    ObjectStoreConfig::S3 {
        endpoint: format!("http://{}", server.addr),
        bucket: bucket.to_string(),
        region: "us-east-1".to_string(),
        access_key_id: "AK".to_string(),
        secret_access_key: "SK".to_string(),
        path_style: true,
        prefix: prefix.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_round_trip_through_a_real_s3_server() -> Result<(), ObjectError> {
    let server = start("strata");
    let store = ObjectStore::open(&config(&server, "strata", "node-1"))?;
    let body = Bytes::from((0..=255u8).cycle().take(3 << 20).collect::<Vec<u8>>());
    store
        .put("segments/p0/00000000000000000000", body.clone())
        .await?;
    store
        .put(
            "segments/p0/00000000000000004096",
            Bytes::from_static(b"second"),
        )
        .await?;
    assert_eq!(store.get("segments/p0/00000000000000000000").await?, body);
    let range = (1 << 20) + 17..(2 << 20) + 3;
    assert_eq!(
        store
            .get_range("segments/p0/00000000000000000000", range.clone())
            .await?,
        body.slice(range.start as usize..range.end as usize)
    );
    assert_eq!(
        store.size("segments/p0/00000000000000000000").await?,
        3 << 20
    );
    assert_eq!(
        store.list("segments/p0/").await?,
        vec![
            "segments/p0/00000000000000000000",
            "segments/p0/00000000000000004096"
        ]
    );
    store.delete("segments/p0/00000000000000004096").await?;
    assert!(matches!(
        store.get("segments/p0/00000000000000004096").await,
        Err(ObjectError::NotFound(_))
    ));
    // The prefix keeps nodes apart in one bucket.
    let other = ObjectStore::open(&config(&server, "strata", "node-2"))?;
    assert!(other.list("segments/").await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_an_error_not_a_hang() {
    let server = start("strata");
    let mut c = config(&server, "strata", "");
    if let ObjectStoreConfig::S3 {
        secret_access_key, ..
    } = &mut c
    {
        *secret_access_key = "wrong".to_string();
    }
    let store = ObjectStore::open(&c).expect("config is valid");
    let put = store.put("k", Bytes::from_static(b"v")).await;
    assert!(
        matches!(put, Err(ObjectError::Io { .. })),
        "wrong secret must fail: {put:?}"
    );
}
