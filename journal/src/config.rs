//! Stream definitions and journal-wide defaults: storage class, fsync policy, segment
//! sizing and retention. Serializable so that definitions persist and configs parse.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{JournalError, Result};
pub use strata_tiered::ObjectStoreConfig;
pub use strata_tiered::cache::CacheConfig;

/// When appended bytes are forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum FsyncPolicy {
    /// Every append waits for an fsync; concurrent appends share one (group commit).
    Always,
    /// A background task fsyncs dirty partitions every `n` milliseconds.
    Interval(u64),
    /// Never fsync explicitly; the OS writes back when it chooses.
    Never,
}

impl Default for FsyncPolicy {
    fn default() -> Self {
        FsyncPolicy::Interval(100)
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsyncPolicy::Always => f.write_str("always"),
            FsyncPolicy::Interval(ms) => write!(f, "interval:{ms}"),
            FsyncPolicy::Never => f.write_str("never"),
        }
    }
}

impl FromStr for FsyncPolicy {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            "interval" => Ok(FsyncPolicy::default()),
            _ => s
                .strip_prefix("interval:")
                .and_then(|ms| ms.trim_end_matches("ms").parse::<u64>().ok())
                .filter(|&ms| ms > 0)
                .map(FsyncPolicy::Interval)
                .ok_or_else(|| {
                    format!("expected \"always\", \"never\" or \"interval:<ms>\", found {s:?}")
                }),
        }
    }
}

impl TryFrom<String> for FsyncPolicy {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

impl From<FsyncPolicy> for String {
    fn from(p: FsyncPolicy) -> String {
        p.to_string()
    }
}

/// Where a stream's partitions keep their data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageClass {
    /// Bounded in-memory log; lost on restart (the definition persists).
    Memory,
    /// Segment files, one directory per partition.
    #[default]
    Segment,
    /// One shared RocksDB instance; for many small partitions.
    Rocksdb,
    /// Written straight to object storage: appends are gathered into objects of a bounded
    /// size or age, staged in local files until uploaded.
    Object,
}

impl fmt::Display for StorageClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StorageClass::Memory => "memory",
            StorageClass::Segment => "segment",
            StorageClass::Rocksdb => "rocksdb",
            StorageClass::Object => "object",
        })
    }
}

/// How much history a partition keeps. Whole segments (or batches, for classes without
/// segments) are removed once they are entirely outside the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Keep at most this many bytes per partition (`None`: no size bound).
    pub max_bytes: Option<u64>,
    /// Drop data whose newest record is older than this many milliseconds.
    pub max_age_ms: Option<u64>,
}

/// Segment sizing for the `segment` class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SegmentSettings {
    /// Roll to a new segment once the active one reaches this size.
    pub segment_bytes: u64,
    /// Roll to a new segment once the active one is this old (ms since its first append).
    pub segment_ms: u64,
    /// Bytes of batches between two offset-index (and time-index) entries.
    pub index_interval_bytes: u32,
}

impl Default for SegmentSettings {
    fn default() -> Self {
        SegmentSettings {
            segment_bytes: 256 * 1024 * 1024,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
        }
    }
}

/// Offload of a `segment`-class partition's sealed segments to object storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OffloadSettings {
    /// Keep an uploaded segment's local copy this long after it was sealed (ms).
    pub local_retention_ms: u64,
    /// Keep at most this many bytes of uploaded sealed segments locally (none: no bound).
    pub local_retention_bytes: Option<u64>,
}

impl Default for OffloadSettings {
    fn default() -> Self {
        OffloadSettings {
            local_retention_ms: 3600 * 1000,
            local_retention_bytes: None,
        }
    }
}

/// When an `object`-class append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectAck {
    /// Once the object holding it is stored (and recorded in the manifest).
    #[default]
    Object,
    /// Once it is in the local staging log (per the stream's fsync policy); uploaded later.
    Local,
}

/// Batching of the `object` class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectSettings {
    /// An object is uploaded once this many bytes are gathered.
    pub batch_bytes: u64,
    /// ... or once its first append is this old (ms).
    pub batch_ms: u64,
    /// When appends are acknowledged.
    pub ack: ObjectAck,
}

impl Default for ObjectSettings {
    fn default() -> Self {
        ObjectSettings {
            batch_bytes: 4 * 1024 * 1024,
            batch_ms: 50,
            ack: ObjectAck::Object,
        }
    }
}

impl StreamConfig {
    /// Whether sealed segments go to object storage.
    pub fn offloads(&self) -> bool {
        self.class == StorageClass::Object
            || (self.class == StorageClass::Segment && self.offload.is_some())
    }

    /// Whether appends wait for their object to be stored.
    pub fn acks_on_object(&self) -> bool {
        self.class == StorageClass::Object && self.object.ack == ObjectAck::Object
    }

    /// The segment sizing actually used: an `object`-class partition rolls a staging
    /// segment per object.
    pub fn effective_segment(&self) -> SegmentSettings {
        if self.class == StorageClass::Object {
            SegmentSettings {
                segment_bytes: self.object.batch_bytes,
                segment_ms: self.object.batch_ms,
                index_interval_bytes: self.segment.index_interval_bytes,
            }
        } else {
            self.segment
        }
    }

    /// How long uploaded local copies are kept.
    pub fn effective_offload(&self) -> OffloadSettings {
        if self.class == StorageClass::Object {
            OffloadSettings {
                local_retention_ms: 0,
                local_retention_bytes: Some(0),
            }
        } else {
            self.offload.unwrap_or_default()
        }
    }
}

/// The persistent definition of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// Stream name: 1-200 characters of `[A-Za-z0-9._-]`, not starting with a dot.
    pub name: String,
    /// Number of partitions (at least one).
    pub partitions: u32,
    /// Storage class of every partition.
    #[serde(default)]
    pub class: StorageClass,
    /// Durability of appends.
    #[serde(default)]
    pub fsync: FsyncPolicy,
    /// History bound.
    #[serde(default)]
    pub retention: Retention,
    /// Segment sizing (`segment` class).
    #[serde(default)]
    pub segment: SegmentSettings,
    /// Byte bound per partition for the `memory` class.
    #[serde(default = "default_memory_max_bytes")]
    pub memory_max_bytes: u64,
    /// Offload of sealed segments (`segment` class; none: segments stay local).
    #[serde(default)]
    pub offload: Option<OffloadSettings>,
    /// Batching and acknowledgement of the `object` class.
    #[serde(default)]
    pub object: ObjectSettings,
}

fn default_memory_max_bytes() -> u64 {
    64 * 1024 * 1024
}

impl StreamConfig {
    /// A definition with the journal's defaults for everything but name and partitions.
    pub fn new(name: impl Into<String>, partitions: u32, defaults: &JournalConfig) -> Self {
        StreamConfig {
            name: name.into(),
            partitions,
            class: defaults.class,
            fsync: defaults.fsync,
            retention: Retention {
                max_bytes: defaults.retention_bytes,
                max_age_ms: defaults.retention_ms,
            },
            segment: SegmentSettings {
                segment_bytes: defaults.segment_bytes,
                segment_ms: defaults.segment_ms,
                index_interval_bytes: defaults.index_interval_bytes,
            },
            memory_max_bytes: defaults.memory_max_bytes,
            offload: defaults.offload,
            object: defaults.object,
        }
    }

    /// Checks the definition, naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        validate_name(&self.name)?;
        let bad = |m: String| Err(JournalError::InvalidConfig(m));
        if self.partitions == 0 || self.partitions > 1 << 16 {
            return bad(format!(
                "partitions must be 1..=65536, got {}",
                self.partitions
            ));
        }
        if self.segment.segment_bytes < 4096 || self.segment.segment_bytes > u32::MAX as u64 {
            return bad(format!(
                "segment_bytes must be 4096..=4294967295, got {}",
                self.segment.segment_bytes
            ));
        }
        if self.segment.index_interval_bytes == 0 {
            return bad("index_interval_bytes must be positive".into());
        }
        if self.segment.segment_ms == 0 {
            return bad("segment_ms must be positive".into());
        }
        if self.class == StorageClass::Object {
            if self.object.batch_bytes < 4096 || self.object.batch_bytes > u32::MAX as u64 {
                return bad(format!(
                    "object.batch_bytes must be 4096..=4294967295, got {}",
                    self.object.batch_bytes
                ));
            }
            if self.object.batch_ms == 0 {
                return bad("object.batch_ms must be positive".into());
            }
        }
        Ok(())
    }
}

/// Checks that `name` is usable as a stream name (and as a directory name).
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(JournalError::InvalidConfig(format!(
            "stream name {name:?} must be 1-200 characters of [A-Za-z0-9._-] and not start with '.'"
        )))
    }
}

/// Journal-wide settings: defaults for new streams and caches. This is the `[journal]`
/// section of the node's configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// Default storage class of new streams.
    pub class: StorageClass,
    /// Default fsync policy of new streams.
    pub fsync: FsyncPolicy,
    /// Default segment size in bytes.
    pub segment_bytes: u64,
    /// Default segment age before a roll, in ms.
    pub segment_ms: u64,
    /// Bytes between index entries.
    pub index_interval_bytes: u32,
    /// Default size bound per partition (none when absent).
    pub retention_bytes: Option<u64>,
    /// Default age bound in ms (7 days; none when absent).
    pub retention_ms: Option<u64>,
    /// Default byte bound of a `memory`-class partition.
    pub memory_max_bytes: u64,
    /// Recently appended bytes per partition kept in memory for tail readers.
    pub tail_cache_bytes: u64,
    /// How often retention and age-based rolls are checked, in ms.
    pub maintenance_interval_ms: u64,
    /// Object storage for offloaded segments and the `object` class (none: neither is
    /// available).
    pub object_store: Option<ObjectStoreConfig>,
    /// The block cache in front of object storage.
    pub cache: CacheConfig,
    /// Offload given to new `segment`-class streams (none: they stay local).
    pub offload: Option<OffloadSettings>,
    /// Batching given to new `object`-class streams.
    pub object: ObjectSettings,
}

impl Default for JournalConfig {
    fn default() -> Self {
        let seg = SegmentSettings::default();
        JournalConfig {
            class: StorageClass::default(),
            fsync: FsyncPolicy::default(),
            segment_bytes: seg.segment_bytes,
            segment_ms: seg.segment_ms,
            index_interval_bytes: seg.index_interval_bytes,
            retention_bytes: None,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            memory_max_bytes: default_memory_max_bytes(),
            tail_cache_bytes: 1024 * 1024,
            maintenance_interval_ms: 10_000,
            object_store: None,
            cache: CacheConfig::default(),
            offload: None,
            object: ObjectSettings::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn fsync_policy_parses_and_prints() {
        for s in ["always", "never", "interval:250"] {
            assert_eq!(s.parse::<FsyncPolicy>().unwrap().to_string(), s);
        }
        assert_eq!(
            "interval".parse::<FsyncPolicy>().unwrap(),
            FsyncPolicy::Interval(100)
        );
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
        assert!("interval:0".parse::<FsyncPolicy>().is_err());
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("orders.v1_eu-west").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", &"x".repeat(201)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
