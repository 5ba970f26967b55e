//! The object store against a real S3-compatible server on loopback: `s3s-fs`, installed
//! by `scripts/install-deps.sh` under `~/.cache/strata/tools/bin` (or named by
//! `STRATA_S3S_FS`). Each test starts its own server on a free port with its own data
//! directory.

use bytes::Bytes;
use strata_tiered::testing::S3Server;
use strata_tiered::{ObjectError, ObjectStore};

fn start(bucket: &str) -> S3Server {
    S3Server::start(bucket)
}

fn config(server: &S3Server, bucket: &str, prefix: &str) -> strata_tiered::ObjectStoreConfig {
    server.config(bucket, prefix)
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
    if let strata_tiered::ObjectStoreConfig::S3 {
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
