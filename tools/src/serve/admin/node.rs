//! `/api/v1/node` and `/api/v1/streams/...`: what the node runs, its effective
//! configuration, and its streams and partitions with offsets, sizes and tiers.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use strata_journal::{PartitionInfo, SegmentInfo, Stream};
use utoipa::ToSchema;

use super::{AdminState, ApiError, ApiResult, ErrorBody};
use crate::serve::metrics::VERSION;
use strata_frontend::admin::extract::ApiPath;

/// The node.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeStatus {
    /// Version of the node.
    pub version: &'static str,
    /// Seconds since it started.
    pub uptime_seconds: u64,
    /// Its process id.
    pub pid: u32,
    /// Root of its data.
    pub data_dir: String,
    /// Number of journal streams.
    pub streams: usize,
    /// Streams found at start-up that could not be opened, and are not served.
    pub failed_streams: Vec<FailedStream>,
    /// Frontends enabled (`mqtt`, `kafka`).
    pub frontends: Vec<String>,
    /// Bound listeners.
    pub listeners: Vec<Listener>,
}

/// A stream that could not be opened at start-up.
#[derive(Debug, Serialize, ToSchema)]
pub struct FailedStream {
    /// Its directory's name.
    pub name: String,
    /// Why it could not be opened.
    pub reason: String,
}

/// A bound listener.
#[derive(Debug, Serialize, ToSchema)]
pub struct Listener {
    /// `admin`, `mqtt`, `mqtt-ws`, `kafka`.
    pub name: String,
    /// Bound address.
    pub address: String,
}

/// A stream with its totals.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamView {
    /// Stream name (a Kafka topic is a stream of the same name).
    pub name: String,
    /// Storage class: `memory`, `segment`, `rocksdb` or `object`.
    pub class: String,
    /// Number of partitions.
    pub partitions: usize,
    /// Bytes stored over all partitions and tiers.
    pub size_bytes: u64,
    /// Records stored (end offset minus start offset, summed).
    pub records: u64,
    /// Its full definition (fsync, retention, segment, offload, object settings).
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
}

/// A stream with its partitions.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamDetail {
    /// The stream.
    pub stream: StreamView,
    /// Its partitions, by number.
    pub partitions: Vec<PartitionView>,
}

/// A partition: offsets, sizes and where its data lives.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartitionView {
    /// Partition number.
    pub partition: usize,
    /// First offset still stored.
    pub log_start: u64,
    /// Offset the next record will get.
    pub end_offset: u64,
    /// Bytes stored.
    pub size_bytes: u64,
    /// Segments (one unit for classes without segments).
    pub segments: usize,
    /// Segments held only on local disk.
    pub local_segments: usize,
    /// Segments held only in object storage.
    pub remote_segments: usize,
    /// Segments held in both (uploaded, local copy kept).
    pub both_segments: usize,
    /// Bytes of the segments with a local copy.
    pub local_bytes: u64,
    /// Bytes of the segments with a copy in object storage.
    pub remote_bytes: u64,
}

/// A partition with its segments.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartitionDetail {
    /// The partition.
    pub partition: PartitionView,
    /// Its segments, oldest first.
    pub segments: Vec<SegmentView>,
}

/// One segment (or unit of storage).
#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentView {
    /// Offset of its first batch.
    pub base_offset: u64,
    /// Offset after its last batch.
    pub end_offset: u64,
    /// Bytes.
    pub size_bytes: u64,
    /// Largest record timestamp (ms since the Unix epoch), if any.
    pub max_timestamp_ms: Option<i64>,
    /// `local`, `remote` or `both`.
    pub location: String,
    /// The local file or store, when there is a local copy.
    pub file: Option<String>,
    /// The object holding its copy in object storage, if uploaded.
    pub object_key: Option<String>,
}

/// The node's version, uptime, frontends and listeners.
#[utoipa::path(get, path = "/api/v1/node", tag = "node",
    responses((status = 200, description = "The node", body = NodeStatus)))]
pub async fn status(State(s): State<AdminState>) -> Json<NodeStatus> {
    let frontends = s.frontends.iter().map(|f| (*f).to_owned()).collect();
    let listeners = s
        .listeners
        .lock()
        .iter()
        .map(|(name, addr)| Listener {
            name: name.clone(),
            address: addr.to_string(),
        })
        .collect();
    let data_dir = s
        .config
        .pointer("/node/data_dir")
        .and_then(|d| d.as_str())
        .unwrap_or_default()
        .to_owned();
    Json(NodeStatus {
        version: VERSION,
        uptime_seconds: s.metrics.uptime().as_secs(),
        pid: std::process::id(),
        data_dir,
        streams: s.journal.list_streams().len(),
        failed_streams: s
            .journal
            .failed_streams()
            .into_iter()
            .map(|(name, reason)| FailedStream { name, reason })
            .collect(),
        frontends,
        listeners,
    })
}

/// The effective configuration (defaults, file and environment merged), with passwords
/// and secret keys masked.
#[utoipa::path(get, path = "/api/v1/node/config", tag = "node",
    responses((status = 200, description = "The configuration, by section", body = Object)))]
pub async fn config(State(s): State<AdminState>) -> Json<serde_json::Value> {
    Json(s.config.as_ref().clone())
}

/// Every stream with its totals, by name.
#[utoipa::path(get, path = "/api/v1/streams", tag = "streams",
    responses((status = 200, description = "The streams", body = Vec<StreamView>)))]
pub async fn streams(State(s): State<AdminState>) -> Json<Vec<StreamView>> {
    let mut names: Vec<String> = s
        .journal
        .list_streams()
        .into_iter()
        .map(|c| c.name)
        .collect();
    names.sort();
    let views = names
        .iter()
        .filter_map(|n| s.journal.stream(n).ok())
        .map(|stream| {
            let infos = describe(&stream);
            stream_view(&stream, &infos)
        })
        .collect();
    Json(views)
}

/// One stream with its partitions' offsets, sizes and tiers.
#[utoipa::path(get, path = "/api/v1/streams/{name}", tag = "streams",
    params(("name" = String, Path, description = "Stream name")),
    responses(
        (status = 200, description = "The stream", body = StreamDetail),
        (status = 404, description = "No such stream", body = ErrorBody)))]
pub async fn stream(
    State(s): State<AdminState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StreamDetail> {
    let stream = find(&s, &name)?;
    let infos = describe(&stream);
    Ok(Json(StreamDetail {
        stream: stream_view(&stream, &infos),
        partitions: infos
            .iter()
            .enumerate()
            .map(|(i, p)| partition_view(i, p))
            .collect(),
    }))
}

/// One partition with its segments and where each lives.
#[utoipa::path(get, path = "/api/v1/streams/{name}/partitions/{partition}", tag = "streams",
    params(("name" = String, Path, description = "Stream name"),
        ("partition" = u32, Path, description = "Partition number")),
    responses(
        (status = 200, description = "The partition", body = PartitionDetail),
        (status = 400, description = "Not a partition number", body = ErrorBody),
        (status = 404, description = "No such stream or partition", body = ErrorBody)))]
pub async fn partition(
    State(s): State<AdminState>,
    ApiPath((name, partition)): ApiPath<(String, u32)>,
) -> ApiResult<PartitionDetail> {
    let stream = find(&s, &name)?;
    let log = stream.partitions().get(partition as usize).ok_or_else(|| {
        ApiError::not_found(format!("stream `{name}` has no partition {partition}"))
    })?;
    let info = log.describe();
    Ok(Json(PartitionDetail {
        partition: partition_view(partition as usize, &info),
        segments: info.segments.iter().map(segment_view).collect(),
    }))
}

fn find(s: &AdminState, name: &str) -> Result<Arc<Stream>, ApiError> {
    s.journal
        .stream(name)
        .map_err(|_| ApiError::not_found(format!("no stream `{name}`")))
}

fn describe(stream: &Stream) -> Vec<PartitionInfo> {
    stream.partitions().iter().map(|p| p.describe()).collect()
}

fn stream_view(stream: &Stream, infos: &[PartitionInfo]) -> StreamView {
    let config = stream.config();
    StreamView {
        name: stream.name().to_owned(),
        class: serde_json::to_value(config.class)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        partitions: infos.len(),
        size_bytes: infos.iter().map(|p| p.size).sum(),
        records: infos
            .iter()
            .map(|p| p.offsets.end.saturating_sub(p.offsets.log_start))
            .sum(),
        config: serde_json::to_value(config).unwrap_or_default(),
    }
}

/// Where a segment lives.
fn location(seg: &SegmentInfo) -> &'static str {
    match (seg.location.as_os_str().is_empty(), seg.remote.is_some()) {
        (true, _) => "remote",
        (false, true) => "both",
        (false, false) => "local",
    }
}

fn partition_view(partition: usize, info: &PartitionInfo) -> PartitionView {
    let count = |l: &str| info.segments.iter().filter(|s| location(s) == l).count();
    let bytes = |keep: fn(&SegmentInfo) -> bool| {
        info.segments
            .iter()
            .filter(|s| keep(s))
            .map(|s| s.size)
            .sum()
    };
    PartitionView {
        partition,
        log_start: info.offsets.log_start,
        end_offset: info.offsets.end,
        size_bytes: info.size,
        segments: info.segments.len(),
        local_segments: count("local"),
        remote_segments: count("remote"),
        both_segments: count("both"),
        local_bytes: bytes(|s| !s.location.as_os_str().is_empty()),
        remote_bytes: bytes(|s| s.remote.is_some()),
    }
}

fn segment_view(seg: &SegmentInfo) -> SegmentView {
    SegmentView {
        base_offset: seg.base_offset,
        end_offset: seg.end_offset,
        size_bytes: seg.size,
        max_timestamp_ms: seg.max_timestamp,
        location: location(seg).to_owned(),
        file: (!seg.location.as_os_str().is_empty()).then(|| seg.location.display().to_string()),
        object_key: seg.remote.clone(),
    }
}
