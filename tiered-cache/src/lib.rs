//! Strata's object storage tier: immutable objects on an S3-compatible server (MinIO, AWS
//! S3...) or on a local filesystem, through opendal. Sealed journal segments are offloaded
//! here and `object`-class partitions live here; this crate is the one place that talks
//! to object storage, with retries, timeouts and one error type.

pub mod cache;
pub mod manifest;
pub mod metrics;
pub mod testing;

pub use cache::{BlockCache, CacheConfig};
pub use metrics::TierMetrics;

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::{ErrorKind, Operator, services};
use serde::{Deserialize, Serialize};

/// Where objects live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum ObjectStoreConfig {
    /// An S3-compatible server.
    S3 {
        /// Endpoint URL, e.g. `http://127.0.0.1:9000`.
        endpoint: String,
        /// Bucket (must exist).
        bucket: String,
        /// Region (`us-east-1` for most S3-compatible servers).
        #[serde(default = "default_region")]
        region: String,
        /// Access key id.
        access_key_id: String,
        /// Secret access key.
        secret_access_key: String,
        /// Address the bucket in the path (`endpoint/bucket/key`), as MinIO and most
        /// self-hosted servers want; false for virtual-host style (`bucket.endpoint/key`).
        #[serde(default = "yes")]
        path_style: bool,
        /// Key prefix inside the bucket, so several nodes or clusters can share one.
        #[serde(default)]
        prefix: String,
    },
    /// A directory on a local filesystem (tests, single-machine setups).
    Fs {
        /// The directory.
        root: PathBuf,
    },
}

fn default_region() -> String {
    "us-east-1".to_string()
}

fn yes() -> bool {
    true
}

/// A failed object storage operation.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The object does not exist.
    #[error("object {0} not found")]
    NotFound(String),
    /// The configuration cannot be used.
    #[error("object storage configuration: {0}")]
    Config(String),
    /// The block cache failed (or a GET it made did).
    #[error("block cache: {0}")]
    Cache(String),
    /// The server or filesystem failed (after retries); worth retrying later.
    #[error("object storage {op} {key}: {source}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The object.
        key: String,
        /// The cause (boxed: opendal's error is large and this is the cold path).
        #[source]
        source: Box<opendal::Error>,
    },
}

/// Objects by key; cheap to clone.
#[derive(Debug, Clone)]
pub struct ObjectStore {
    op: Operator,
}

/// How long one request may take before it is abandoned (and retried).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts of a failed request that may succeed when tried again.
const RETRIES: usize = 4;
/// First wait before a retry (doubling up to the maximum): an outage fails a request in
/// about a second, and the caller's own backoff takes over from there.
const RETRY_MIN_DELAY: Duration = Duration::from_millis(50);
const RETRY_MAX_DELAY: Duration = Duration::from_secs(1);

impl ObjectStore {
    /// Connects to the store `config` describes (no request is made yet).
    pub fn open(config: &ObjectStoreConfig) -> Result<Self, ObjectError> {
        // The process-wide HTTP transport (reqwest with rustls); installing it again is a
        // no-op.
        opendal::install_default();
        let op = match config {
            ObjectStoreConfig::S3 {
                endpoint,
                bucket,
                region,
                access_key_id,
                secret_access_key,
                path_style,
                prefix,
            } => {
                let mut b = services::S3::default()
                    .endpoint(endpoint)
                    .bucket(bucket)
                    .region(region)
                    .access_key_id(access_key_id)
                    .secret_access_key(secret_access_key)
                    .root(&format!("/{}", prefix.trim_matches('/')))
                    // Only what the configuration says: no credentials from the
                    // environment or an instance metadata service.
                    .disable_config_load()
                    .disable_ec2_metadata();
                if !path_style {
                    b = b.enable_virtual_host_style();
                }
                Operator::new(b)
            }
            ObjectStoreConfig::Fs { root } => {
                let root = root.to_str().ok_or_else(|| {
                    ObjectError::Config(format!("{} is not UTF-8", root.display()))
                })?;
                Operator::new(services::Fs::default().root(root))
            }
        }
        .map_err(|e| ObjectError::Config(e.to_string()))?
        .layer(TimeoutLayer::new().with_timeout(REQUEST_TIMEOUT))
        .layer(
            RetryLayer::new()
                .with_max_times(RETRIES)
                .with_min_delay(RETRY_MIN_DELAY)
                .with_max_delay(RETRY_MAX_DELAY)
                .with_jitter(),
        );
        Ok(ObjectStore { op })
    }

    fn io<'a>(op: &'static str, key: &'a str) -> impl FnOnce(opendal::Error) -> ObjectError + 'a {
        move |source| {
            if source.kind() == ErrorKind::NotFound {
                ObjectError::NotFound(key.to_string())
            } else {
                ObjectError::Io {
                    op,
                    key: key.to_string(),
                    source: Box::new(source),
                }
            }
        }
    }

    /// Stores `bytes` as object `key`, replacing any object of that key. Returns once the
    /// store has confirmed the write.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), ObjectError> {
        self.op
            .write(key, bytes)
            .await
            .map(|_| ())
            .map_err(Self::io("put", key))
    }

    /// Stores the first `len` bytes of the local file `path` followed by `trailer` as
    /// object `key`, streaming the file in parts (a multipart upload when it is large).
    /// Returns the object's size once the store has confirmed the write.
    pub async fn put_file(
        &self,
        key: &str,
        path: &std::path::Path,
        len: u64,
        trailer: Bytes,
    ) -> Result<u64, ObjectError> {
        const PART: u64 = 16 * 1024 * 1024;
        let read_err = |e: std::io::Error| ObjectError::Io {
            op: "put",
            key: key.to_string(),
            source: Box::new(opendal::Error::new(ErrorKind::Unexpected, e.to_string())),
        };
        let file = std::sync::Arc::new(std::fs::File::open(path).map_err(read_err)?);
        let mut w = self
            .op
            .writer_with(key)
            .chunk(PART as usize)
            .await
            .map_err(Self::io("put", key))?;
        let mut pos = 0;
        while pos < len {
            let n = PART.min(len - pos);
            let f = file.clone();
            let part = tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::FileExt;
                let mut buf = vec![0u8; n as usize];
                f.read_exact_at(&mut buf, pos).map(|()| Bytes::from(buf))
            })
            .await
            .map_err(|e| read_err(std::io::Error::other(e.to_string())))?
            .map_err(read_err)?;
            w.write(part).await.map_err(Self::io("put", key))?;
            pos += n;
        }
        let size = len + trailer.len() as u64;
        if !trailer.is_empty() {
            w.write(trailer).await.map_err(Self::io("put", key))?;
        }
        w.close().await.map_err(Self::io("put", key))?;
        Ok(size)
    }

    /// The whole object `key`.
    pub async fn get(&self, key: &str) -> Result<Bytes, ObjectError> {
        self.op
            .read(key)
            .await
            .map(|b| b.to_bytes())
            .map_err(Self::io("get", key))
    }

    /// Bytes `range` of object `key` (one ranged GET).
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, ObjectError> {
        self.op
            .read_with(key)
            .range(range)
            .await
            .map(|b| b.to_bytes())
            .map_err(Self::io("get", key))
    }

    /// Size of object `key` in bytes.
    pub async fn size(&self, key: &str) -> Result<u64, ObjectError> {
        self.op
            .stat(key)
            .await
            .map(|m| m.content_length())
            .map_err(Self::io("stat", key))
    }

    /// Removes object `key`; removing a missing object is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), ObjectError> {
        self.op.delete(key).await.map_err(Self::io("delete", key))
    }

    /// Keys of every object under `prefix` (a "directory" ending in `/`), sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, ObjectError> {
        let entries = self
            .op
            .list_with(prefix)
            .recursive(true)
            .await
            .map_err(Self::io("list", prefix))?;
        let mut keys: Vec<String> = entries
            .into_iter()
            .filter(|e| !e.metadata().is_dir())
            .map(|e| e.path().to_string())
            .collect();
        keys.sort();
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs_store() -> (tempfile::TempDir, ObjectStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = ObjectStore::open(&ObjectStoreConfig::Fs {
            root: dir.path().to_path_buf(),
        })
        .expect("fs store");
        (dir, store)
    }

    #[tokio::test]
    async fn put_get_range_list_delete() -> Result<(), ObjectError> {
        let (_dir, store) = fs_store();
        let body = Bytes::from((0..=255u8).cycle().take(10_000).collect::<Vec<u8>>());
        store
            .put("p/0/00000000000000000000.seg", body.clone())
            .await?;
        store
            .put("p/0/00000000000000001000.seg", Bytes::from_static(b"x"))
            .await?;
        store
            .put("p/1/00000000000000000000.seg", Bytes::from_static(b"y"))
            .await?;
        assert_eq!(store.get("p/0/00000000000000000000.seg").await?, body);
        assert_eq!(
            store
                .get_range("p/0/00000000000000000000.seg", 300..310)
                .await?,
            body.slice(300..310)
        );
        assert_eq!(store.size("p/0/00000000000000000000.seg").await?, 10_000);
        assert_eq!(
            store.list("p/0/").await?,
            vec![
                "p/0/00000000000000000000.seg",
                "p/0/00000000000000001000.seg"
            ]
        );
        store.delete("p/0/00000000000000001000.seg").await?;
        store.delete("p/0/never-existed").await?;
        assert!(matches!(
            store.get("p/0/00000000000000001000.seg").await,
            Err(ObjectError::NotFound(_))
        ));
        assert_eq!(store.list("p/").await?.len(), 2);
        Ok(())
    }

    #[test]
    fn s3_config_parses_with_defaults() {
        let c: ObjectStoreConfig = serde_json::from_str(
            r#"{"backend":"s3","endpoint":"http://127.0.0.1:9000","bucket":"b",
                "access_key_id":"ak","secret_access_key":"sk"}"#,
        )
        .expect("parses");
        let ObjectStoreConfig::S3 {
            region, path_style, ..
        } = &c
        else {
            panic!("not s3");
        };
        assert_eq!((region.as_str(), *path_style), ("us-east-1", true));
        assert!(ObjectStore::open(&c).is_ok());
    }
}
