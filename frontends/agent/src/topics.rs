//! Topics (fan-out) with resumable streaming: topic `t` is journal stream
//! `agent.topic.t` with one partition (one order for every reader), one record per event,
//! and an event's id is its offset. A reader names where it starts (`from=`, or
//! `Last-Event-ID`: the id of the last event it saw) and gets every event from there in
//! order, none twice, across reconnects and node restarts: the journal is the cursor.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use strata_batch::BatchBuilder;
use strata_frontend::Shutdown;
use strata_frontend::seams::{Partition, Storage, StoreError};

use crate::error::AgentError;
use crate::metrics::AgentMetrics;
use crate::storage::{Classes, StorageClass, conflict};

/// Limits of the topics of a node.
#[derive(Debug, Clone)]
pub struct TopicLimits {
    /// Most topics a node keeps open.
    pub max_topics: usize,
    /// Most streaming (SSE) readers at once.
    pub max_streams: usize,
}

impl Default for TopicLimits {
    fn default() -> Self {
        TopicLimits {
            max_topics: 10_000,
            max_streams: 10_000,
        }
    }
}

/// An event as stored: the record's value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// The event's type, if the publisher named one (the SSE `event:` field).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// What the publisher sent.
    pub data: serde_json::Value,
    /// When it was published, milliseconds since the epoch.
    pub sent_ms: i64,
}

/// An event read back, with its id.
#[derive(Debug, Clone, Serialize)]
pub struct Stored {
    /// The event's id: its offset in the topic.
    pub id: u64,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
}

/// The stream of topic `name`.
pub fn stream_name(name: &str) -> String {
    format!("agent.topic.{name}")
}

/// Bytes of records one read of a topic asks for.
const READ_BYTES: usize = 256 * 1024;
/// How often an idle stream sends a comment, so proxies and clients see it alive.
const KEEPALIVE: Duration = Duration::from_secs(15);

fn bad_name() -> AgentError {
    AgentError::bad_request(
        "bad_name",
        "a topic name is 1 to 128 characters of [A-Za-z0-9_-]",
    )
}

/// The topics of a node.
#[derive(Debug)]
pub struct Topics {
    storage: Storage,
    limits: TopicLimits,
    open: Mutex<HashMap<String, Arc<dyn Partition>>>,
    opening: tokio::sync::Mutex<()>,
    streams: Arc<AtomicUsize>,
    metrics: AgentMetrics,
    /// The storage classes new topics may be created in.
    classes: Classes,
}

/// A streaming reader's place among the [`TopicLimits::max_streams`]; given back when
/// dropped (the client went away or the stream ended).
#[derive(Debug)]
pub struct StreamSlot {
    streams: Arc<AtomicUsize>,
    metrics: AgentMetrics,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.streams.fetch_sub(1, Ordering::AcqRel);
        self.metrics.sse_clients.dec();
    }
}

impl Topics {
    /// Topics in `storage`, new ones created in one of `classes`.
    pub fn new(
        storage: Storage,
        limits: TopicLimits,
        metrics: AgentMetrics,
        classes: Classes,
    ) -> Self {
        Topics {
            storage,
            limits,
            open: Mutex::new(HashMap::new()),
            opening: tokio::sync::Mutex::new(()),
            streams: Arc::new(AtomicUsize::new(0)),
            metrics,
            classes,
        }
    }

    /// Creates topic `name` in `class` (the node's default when none) unless it exists:
    /// whether this call created it. A topic that exists in another class than the one
    /// asked for answers 409 `storage_conflict`.
    pub async fn create(
        &self,
        name: &str,
        class: Option<StorageClass>,
    ) -> Result<bool, AgentError> {
        if !crate::queues::valid_name(name) {
            return Err(bad_name());
        }
        let picked = self.classes.pick(class)?;
        let existed = self.storage.catalog.stream(&stream_name(name)).is_some();
        // Opened (the node's bound on topics checked) before anything is created.
        self.topic(name, Some(picked)).await?;
        match self.class(name) {
            Some(kept) if class.is_some() && kept != picked => Err(conflict(kept.name())),
            _ => Ok(!existed),
        }
    }

    /// The storage class topic `name` keeps its events in (`None`: no such topic).
    pub fn class(&self, name: &str) -> Option<StorageClass> {
        let info = self.storage.catalog.stream(&stream_name(name))?;
        StorageClass::of(&info)
    }

    /// Topic `name`'s partition; its stream is created (in class `create`) only when
    /// `create` is set (a publish): reading a topic that does not exist answers 404.
    pub async fn topic(
        &self,
        name: &str,
        create: Option<StorageClass>,
    ) -> Result<Arc<dyn Partition>, AgentError> {
        if !crate::queues::valid_name(name) {
            return Err(bad_name());
        }
        if let Some(p) = self.open.lock().get(name) {
            return Ok(p.clone());
        }
        let _one = self.opening.lock().await;
        if let Some(p) = self.open.lock().get(name) {
            return Ok(p.clone());
        }
        if self.open.lock().len() >= self.limits.max_topics {
            return Err(AgentError::full(
                "max_topics",
                format!("this node keeps at most {} topics", self.limits.max_topics),
            ));
        }
        let stream = stream_name(name);
        if create.is_none() && self.storage.catalog.stream(&stream).is_none() {
            return Err(AgentError::not_found(
                "unknown_topic",
                format!("no topic {name}: a publish creates it"),
            ));
        }
        if let Some(class) = create {
            self.classes
                .ensure(&self.storage, &stream, 1, class)
                .await?;
        }
        if let Some(class) = self.class(name) {
            self.classes.usable(class)?;
        }
        let p = self.storage.partition(&stream, 0).await?;
        self.open.lock().insert(name.to_string(), p.clone());
        Ok(p)
    }

    /// Appends `event` to topic `name` (created in the node's default class when
    /// missing): its id.
    pub async fn publish(&self, name: &str, event: &Event) -> Result<u64, AgentError> {
        self.publish_in(name, event, None).await
    }

    /// Appends `event` to topic `name`, created in `class` when missing: its id.
    pub async fn publish_in(
        &self,
        name: &str,
        event: &Event,
        class: Option<StorageClass>,
    ) -> Result<u64, AgentError> {
        let class = match class {
            Some(c) => self.classes.usable(c).map(|()| c)?,
            None => self.classes.pick(None)?,
        };
        let p = self.topic(name, Some(class)).await?;
        let value = serde_json::to_vec(event)
            .map_err(|e| AgentError::bad_request("bad_body", e.to_string()))?;
        let mut batch = BatchBuilder::new();
        batch.push(event.sent_ms, None, Some(&value), &[]);
        let batch = batch
            .build()
            .map_err(|e| AgentError::bad_request("bad_body", e.to_string()))?;
        let appended = p.append(batch).await?;
        self.metrics.events_published.inc();
        Ok(appended.base_offset)
    }

    /// Where a reader of `p` asking for `from` starts: `from` itself when stored; the end
    /// when `None` (new events only). An id past the end is refused; one below what the
    /// topic still keeps answers 410 (those events are gone with retention).
    pub async fn start(&self, p: &dyn Partition, from: Option<u64>) -> Result<u64, AgentError> {
        let offsets = p.offsets().await?;
        match from {
            None => Ok(offsets.end),
            Some(from) if from > offsets.end => Err(AgentError::bad_request(
                "bad_position",
                format!(
                    "the topic's next event is {}; {from} is past it",
                    offsets.end
                ),
            )),
            Some(from) if from < offsets.log_start => Err(AgentError {
                status: axum::http::StatusCode::GONE,
                code: "gone",
                message: format!(
                    "events before {} are no longer kept; {from} was asked for",
                    offsets.log_start
                ),
                retry_after: None,
            }),
            Some(from) => Ok(from),
        }
    }

    /// Up to about [`READ_BYTES`] of events of `p` from `from`, in order: the events and
    /// the next id to read. Records that are not events are skipped.
    pub async fn read(
        &self,
        p: &dyn Partition,
        from: u64,
    ) -> Result<(Vec<Stored>, u64), AgentError> {
        let batches = p.read(from, READ_BYTES).await.map_err(|e| match e {
            StoreError::OffsetOutOfRange { .. } => AgentError {
                status: axum::http::StatusCode::GONE,
                code: "gone",
                message: format!("event {from} is no longer kept"),
                retry_after: None,
            },
            e => AgentError::from(e),
        })?;
        let mut next = from;
        let mut out = Vec::new();
        for batch in &batches {
            next = next.max(batch.last_offset() + 1);
            let Ok(records) = batch.records() else {
                continue;
            };
            for record in records.flatten() {
                if record.offset < from {
                    continue;
                }
                let Some(event) = record
                    .value
                    .as_deref()
                    .and_then(|v| serde_json::from_slice::<Event>(v).ok())
                else {
                    continue;
                };
                out.push(Stored {
                    id: record.offset,
                    event,
                });
            }
        }
        Ok((out, next))
    }

    /// A place for one more streaming reader, or 429 at [`TopicLimits::max_streams`].
    pub fn stream_slot(&self) -> Result<StreamSlot, AgentError> {
        let taken = self.streams.fetch_add(1, Ordering::AcqRel);
        let slot = StreamSlot {
            streams: self.streams.clone(),
            metrics: self.metrics.clone(),
        };
        self.metrics.sse_clients.inc();
        if taken >= self.limits.max_streams {
            return Err(AgentError::too_many(
                "max_streams",
                format!(
                    "this node serves at most {} event streams at once",
                    self.limits.max_streams
                ),
            ));
        }
        Ok(slot)
    }
}

/// One event in Server-Sent Events form: `id`, `event` (its type, when it has one) and
/// `data` (the event as JSON, on one line).
pub fn sse_frame(e: &Stored) -> Bytes {
    let mut out = format!("id: {}\n", e.id);
    // Records written by other protocols did not pass the publish check: a type that is
    // not a plain word (a line break would start a forged field) is left out.
    if let Some(kind) = e.event.kind.as_deref().filter(|k| valid_type(k)) {
        out.push_str(&format!("event: {kind}\n"));
    }
    let data = serde_json::to_string(e).unwrap_or_default();
    out.push_str(&format!("data: {data}\n\n"));
    Bytes::from(out)
}

/// Whether `kind` may be an event's type: 1 to 64 characters of `[A-Za-z0-9._-]`.
pub fn valid_type(kind: &str) -> bool {
    (1..=64).contains(&kind.len())
        && kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// What a streaming reader holds between two chunks.
struct Reader {
    topics: Arc<Topics>,
    partition: Arc<dyn Partition>,
    next: u64,
    pending: VecDeque<Bytes>,
    shutdown: Shutdown,
    done: bool,
    _slot: StreamSlot,
}

/// The chunks of a Server-Sent Events stream of `partition` from `from`: every event in
/// order, a comment every [`KEEPALIVE`] while none comes, until the client goes away or
/// the node stops (or storage fails: an `error` event ends it).
pub fn sse_stream(
    topics: Arc<Topics>,
    partition: Arc<dyn Partition>,
    from: u64,
    shutdown: Shutdown,
    slot: StreamSlot,
) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
    let reader = Reader {
        topics,
        partition,
        next: from,
        // A first comment, so the client sees the stream open at once.
        pending: VecDeque::from([Bytes::from_static(b": open\n\n")]),
        shutdown,
        done: false,
        _slot: slot,
    };
    futures_util::stream::unfold(reader, |mut r| async move {
        loop {
            if let Some(chunk) = r.pending.pop_front() {
                return Some((Ok(chunk), r));
            }
            if r.done || r.shutdown.is_set() {
                return None;
            }
            match r.topics.read(r.partition.as_ref(), r.next).await {
                Ok((events, next)) if next > r.next => {
                    r.next = next;
                    r.topics.metrics.events_streamed.inc_by(events.len() as u64);
                    r.pending.extend(events.iter().map(sse_frame));
                }
                Ok(_) => {
                    let mut stop = r.shutdown.clone();
                    tokio::select! {
                        waited = r.partition.wait_for(r.next) => {
                            if let Err(e) = waited {
                                r.pending.push_back(error_frame(&AgentError::from(e)));
                                r.done = true;
                            }
                        }
                        _ = tokio::time::sleep(KEEPALIVE) => {
                            r.pending.push_back(Bytes::from_static(b": keepalive\n\n"));
                        }
                        _ = stop.wait() => return None,
                    }
                }
                Err(e) => {
                    r.pending.push_back(error_frame(&e));
                    r.done = true;
                }
            }
        }
    })
}

/// A response streaming `stream` as Server-Sent Events.
pub fn sse_response(
    stream: impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static,
) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    use axum::response::IntoResponse;
    let mut response = axum::body::Body::from_stream(stream).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn error_frame(e: &AgentError) -> Bytes {
    let data = serde_json::json!({"code": e.code, "message": e.message});
    Bytes::from(format!("event: error\ndata: {data}\n\n"))
}
