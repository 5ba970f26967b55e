//! The agent API over HTTP/JSON (axum): queues, mailboxes, topics, agents and tasks.
//!
//! Every request body is JSON read with unknown fields refused; every request passes
//! [`guard`] (the deployment's token) and every error is `{"error": {"code", "message"}}`
//! with its status, counted by code there.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use strata_batch::now_ms;

use crate::error::{AgentError, ErrorCode};
use crate::metrics::AgentMetrics;
use crate::queue::LEVELS;
use crate::queues::{Envelope, Queues};
use crate::registry::{Card, REGISTRY_TOPIC, Registry, Search};
use crate::storage::StorageClass;
use crate::tasks::{State as TaskState, Tasks};
use crate::topics::{Event, Topics};

/// Longest idempotency key, in bytes.
pub(crate) const MAX_IDEMPOTENCY_KEY: usize = 128;
/// Longest message key, in bytes.
const MAX_KEY: usize = 256;
/// Most tags on a message, and the longest one.
const MAX_TAGS: usize = 16;
const MAX_TAG: usize = 64;
/// Most messages one fetch asks for.
const MAX_FETCH: usize = 100;
/// Longest delayed delivery: seven days.
const MAX_DELAY_MS: i64 = 7 * 24 * 3600 * 1000;

/// What the handlers share.
#[derive(Debug)]
pub struct Api {
    /// The node's queues.
    pub queues: Queues,
    /// The node's topics.
    pub topics: Arc<Topics>,
    /// The agents registered on the node.
    pub registry: Registry,
    /// The node's tasks.
    pub tasks: Tasks,
    /// Set when the node stops: streams end.
    pub shutdown: strata_frontend::Shutdown,
    /// The bearer token every request must carry, when set.
    pub token: Option<String>,
    /// Origins (`scheme://host[:port]`) whose pages may call the API besides this machine's.
    pub allowed_origins: Vec<String>,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Longest time a request body may take to arrive.
    pub body_timeout: std::time::Duration,
    /// The frontend's metrics.
    pub metrics: AgentMetrics,
    /// Large bodies, claim-checked.
    pub blobs: crate::blobs::Blobs,
    /// Whether the API listens on a loopback address only (then, without a token, only
    /// requests naming this machine are answered).
    pub loopback_only: bool,
    /// Places for large sends under way at once.
    pub claim_sends: tokio::sync::Semaphore,
}

/// The host part of a `Host` header or an origin's authority (`[::1]:8090` → `[::1]`).
fn host_of(authority: &str) -> &str {
    authority
        .rsplit_once(':')
        .filter(|(h, port)| port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':'))
        .map_or(authority, |(host, _)| host)
}

impl Api {
    /// On a node without a token listening on loopback only, refuses a request naming
    /// another host (`Host`): a page of another site that made its name resolve to this
    /// machine (DNS rebinding) sends its own name there, and no `Origin` on a GET.
    fn host(&self, headers: &HeaderMap) -> Result<(), AgentError> {
        if self.token.is_some() || !self.loopback_only {
            return Ok(());
        }
        let Some(host) = headers.get(header::HOST) else {
            return Ok(());
        };
        let host = host_of(host.to_str().unwrap_or_default());
        let allowed = matches!(host, "localhost" | "127.0.0.1" | "[::1]")
            || self
                .allowed_origins
                .iter()
                .any(|o| o.split_once("://").is_some_and(|(_, a)| host_of(a) == host));
        if allowed {
            return Ok(());
        }
        Err(AgentError {
            status: StatusCode::FORBIDDEN,
            code: "bad_host",
            message: format!(
                "this node has no token and answers only requests to this machine, not to {host}"
            ),
            retry_after: None,
        })
    }

    /// Refuses a request a web page made from another site (a browser sends its `Origin`):
    /// only pages of this machine (`localhost`, `127.0.0.1`, `[::1]`) and the configured
    /// `allowed_origins` may call the API. Clients that are not browsers send none.
    fn origin(&self, headers: &HeaderMap) -> Result<(), AgentError> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().unwrap_or_default();
        let host = origin
            .split_once("://")
            .map_or("", |(_, rest)| rest)
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or_else(
                || origin.split_once("://").map_or("", |(_, rest)| rest),
                |(host, _)| host,
            );
        let local = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
        if local || self.allowed_origins.iter().any(|o| o == origin) {
            Ok(())
        } else {
            Err(AgentError {
                status: StatusCode::FORBIDDEN,
                code: "bad_origin",
                message: format!("requests from pages of {origin} are refused"),
                retry_after: None,
            })
        }
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), AgentError> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let (a, b) = (given.as_bytes(), token.as_bytes());
        let same =
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
        if same {
            Ok(())
        } else {
            Err(AgentError::unauthorized())
        }
    }

    /// Reads a JSON body of at most `max_body_bytes`, unknown fields refused.
    async fn body<T: DeserializeOwned>(&self, body: Body) -> Result<T, AgentError> {
        self.body_up_to(body, self.max_body_bytes).await
    }

    /// The request body (at most `limit` bytes) as JSON.
    async fn body_up_to<T: DeserializeOwned>(
        &self,
        body: Body,
        limit: usize,
    ) -> Result<T, AgentError> {
        let bytes = read_body(body, limit, self.body_timeout).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| AgentError::bad_request("bad_json", e.to_string()))
    }
}

/// A request body of at most `limit` bytes, arrived within `timeout`: 413 `too_large`
/// or 408 `body_timeout` otherwise.
pub(crate) async fn read_body(
    body: Body,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<bytes::Bytes, AgentError> {
    tokio::time::timeout(timeout, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| AgentError {
            status: StatusCode::REQUEST_TIMEOUT,
            code: "body_timeout",
            message: format!(
                "the request body did not arrive within {} ms",
                timeout.as_millis()
            ),
            retry_after: None,
        })?
        .map_err(|_| too_large(limit))
}

/// 413: the body is over `max` bytes.
pub(crate) fn too_large(max: usize) -> AgentError {
    AgentError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        code: "too_large",
        message: format!("a request body is at most {max} bytes"),
        retry_after: None,
    }
}

/// A message's urgency: its queue's level.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Priority {
    High,
    #[default]
    Normal,
    Low,
}

impl Priority {
    fn level(self) -> u8 {
        match self {
            Priority::High => 0,
            Priority::Normal => 1,
            Priority::Low => 2,
        }
    }
}

const _: () = assert!(LEVELS == 3);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendRequest {
    // Kept as sent: a large one is stored as it is (claim-check), never parsed into a tree.
    body: Box<serde_json::value::RawValue>,
    #[serde(default)]
    priority: Priority,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    ttl_ms: Option<i64>,
    #[serde(default)]
    delay_ms: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FetchRequest {
    #[serde(default = "one")]
    max: usize,
    #[serde(default)]
    lease_ms: Option<i64>,
    #[serde(default)]
    wait_ms: i64,
}

fn one() -> usize {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AckRequest {
    #[serde(default)]
    lease: Option<String>,
    /// Many leases at once (at most [`MAX_FETCH`]).
    #[serde(default)]
    leases: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NackRequest {
    lease: String,
    #[serde(default)]
    delay_ms: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtendRequest {
    lease: String,
    lease_ms: i64,
}

/// `name` when clients may use it directly: names starting with `_` are the frontend's
/// own (mailboxes, the registry's topic).
pub(crate) fn public(name: &str) -> Result<&str, AgentError> {
    if name.len() > 128 {
        return Err(AgentError::bad_request(
            "bad_name",
            "a name is 1 to 128 characters of [A-Za-z0-9_-]",
        ));
    }
    if name.starts_with('_') {
        return Err(AgentError::bad_request(
            "bad_name",
            "names starting with _ are reserved",
        ));
    }
    Ok(name)
}

/// 200 with `value` as JSON.
fn ok(value: &impl serde::Serialize) -> Result<Response, AgentError> {
    Ok(json(
        StatusCode::OK,
        serde_json::to_value(value).unwrap_or_default(),
    ))
}

/// Whether topic `name` may be read over the API: a public one, the registry's, or the
/// `delivery_failed` topic of a public queue (not of a mailbox: its messages are its
/// agent's alone).
fn readable(name: &str) -> Result<(), AgentError> {
    if name == REGISTRY_TOPIC {
        return Ok(());
    }
    match name.strip_prefix("_failed-") {
        Some(queue) => public(queue).map(|_| ()),
        None => public(name).map(|_| ()),
    }
}

fn json(status: StatusCode, value: serde_json::Value) -> Response {
    (status, axum::Json(value)).into_response()
}

/// What a send stores, its key, tags, time to live and delay checked.
pub(crate) fn envelope(
    body: serde_json::Value,
    key: Option<&str>,
    tags: Vec<String>,
    ttl_ms: Option<i64>,
    delay_ms: Option<i64>,
) -> Result<Envelope, AgentError> {
    if key.is_some_and(|k| k.len() > MAX_KEY) {
        return Err(AgentError::bad_request(
            "bad_key",
            format!("a key is at most {MAX_KEY} bytes"),
        ));
    }
    if tags.len() > MAX_TAGS || tags.iter().any(|t| t.is_empty() || t.len() > MAX_TAG) {
        return Err(AgentError::bad_request(
            "bad_tags",
            format!("at most {MAX_TAGS} tags of 1 to {MAX_TAG} bytes"),
        ));
    }
    if ttl_ms.is_some_and(|t| t <= 0) {
        return Err(AgentError::bad_request("bad_ttl", "ttl_ms is positive"));
    }
    if delay_ms.is_some_and(|d| !(0..=MAX_DELAY_MS).contains(&d)) {
        return Err(AgentError::bad_request(
            "bad_delay",
            format!("delay_ms is 0 to {MAX_DELAY_MS} (7 days)"),
        ));
    }
    let sent_ms = now_ms();
    Ok(Envelope {
        body,
        tags,
        sent_ms,
        expires_ms: ttl_ms.map(|t| sent_ms.saturating_add(t)),
        not_before_ms: delay_ms.map(|d| sent_ms.saturating_add(d)),
        claim: None,
    })
}

async fn send_to(
    api: &Api,
    queue: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, AgentError> {
    let idempotency = match headers.get("idempotency-key") {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
                    .ok_or_else(|| {
                        AgentError::bad_request(
                            "bad_idempotency_key",
                            format!("an Idempotency-Key is 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
                        )
                    })?,
            ),
        };
    // A body over the claim-check threshold may be larger than other requests: such a
    // request (by its Content-Length) takes one of `max_claim_sends` places first, so the
    // memory large bodies take at once is bounded.
    let claims = api.blobs.threshold > 0;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let (limit, _place) = match declared {
        Some(n) if claims && n > api.max_body_bytes => {
            let place = api.claim_sends.try_acquire().map_err(|_| {
                AgentError::too_many(
                    "claim_sends_busy",
                    "as many large sends as this node takes at once are under way",
                )
            })?;
            (api.blobs.max_bytes.saturating_add(64 * 1024), Some(place))
        }
        _ => (api.max_body_bytes, None),
    };
    let r: SendRequest = api.body_up_to(body, limit).await?;
    let text = r.body.get();
    let large = claims && text.len() > api.blobs.threshold;
    if large && text.len() > api.blobs.max_bytes {
        return Err(too_large(api.blobs.max_bytes));
    }
    let value = match large {
        // Kept once on its own, after the queue takes the message; the message carries
        // where.
        true => serde_json::Value::Null,
        false => serde_json::from_str(text)
            .map_err(|e| AgentError::bad_request("bad_json", e.to_string()))?,
    };
    let envelope = envelope(value, r.key.as_deref(), r.tags, r.ttl_ms, r.delay_ms)?;
    let (id, duplicate) = api
        .queues
        .send_large(
            queue,
            r.priority.level(),
            r.key.as_deref(),
            envelope,
            idempotency,
            large.then_some((&api.blobs, text.as_bytes())),
        )
        .await?;
    let status = if duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(json(
        status,
        serde_json::json!({"id": id, "duplicate": duplicate}),
    ))
}

async fn fetch_to(api: &Api, queue: &str, body: Body) -> Result<Response, AgentError> {
    let r: FetchRequest = api.body(body).await?;
    if r.max == 0 || r.max > MAX_FETCH {
        return Err(AgentError::bad_request(
            "bad_max",
            format!("max is 1 to {MAX_FETCH}"),
        ));
    }
    if r.lease_ms.is_some_and(|l| l <= 0) || r.wait_ms < 0 {
        return Err(AgentError::bad_request(
            "bad_lease",
            "lease_ms is positive and wait_ms not negative",
        ));
    }
    // A long poll ends early when the node stops, so it never holds up a shutdown.
    let mut stop = api.shutdown.clone();
    let messages = tokio::select! {
        fetched = api.queues.fetch(queue, r.max, r.lease_ms, r.wait_ms) => fetched?,
        () = stop.wait() => Vec::new(),
    };
    Ok(json(
        StatusCode::OK,
        serde_json::json!({"messages": messages}),
    ))
}

async fn ack_to(api: &Api, queue: &str, body: Body) -> Result<Response, AgentError> {
    let r: AckRequest = api.body(body).await?;
    match (r.lease, r.leases) {
        (Some(lease), None) => {
            let id = api.queues.settle(queue, &lease, None).await?;
            Ok(json(StatusCode::OK, serde_json::json!({"id": id})))
        }
        (None, Some(leases)) if (1..=MAX_FETCH).contains(&leases.len()) => {
            let (ids, unknown) = api.queues.ack_many(queue, &leases).await?;
            Ok(json(
                StatusCode::OK,
                serde_json::json!({"ids": ids, "unknown": unknown}),
            ))
        }
        _ => Err(AgentError::bad_request(
            "bad_lease",
            format!("an ack names one lease, or 1 to {MAX_FETCH} leases"),
        )),
    }
}

async fn nack_to(api: &Api, queue: &str, body: Body) -> Result<Response, AgentError> {
    let r: NackRequest = api.body(body).await?;
    let longest = api.queues.limits().max_lease_ms;
    if !(0..=longest).contains(&r.delay_ms) {
        return Err(AgentError::bad_request(
            "bad_delay",
            format!("delay_ms is 0 to {longest}"),
        ));
    }
    let id = api.queues.settle(queue, &r.lease, Some(r.delay_ms)).await?;
    Ok(json(StatusCode::OK, serde_json::json!({"id": id})))
}

async fn extend_to(api: &Api, queue: &str, body: Body) -> Result<Response, AgentError> {
    let r: ExtendRequest = api.body(body).await?;
    if r.lease_ms <= 0 {
        return Err(AgentError::bad_request("bad_lease", "lease_ms is positive"));
    }
    let until = api.queues.extend(queue, &r.lease, r.lease_ms).await?;
    Ok(json(
        StatusCode::OK,
        serde_json::json!({"lease_until_ms": until}),
    ))
}

async fn describe(
    State(api): State<Arc<Api>>,
    Path(queue): Path<String>,
) -> Result<Response, AgentError> {
    let (depth, in_flight) = api.queues.depth(public(&queue)?).await?;
    let storage = api.queues.class(&queue).map(StorageClass::name);
    Ok(json(
        StatusCode::OK,
        serde_json::json!({
            "name": queue, "storage": storage, "depth": depth, "in_flight": in_flight,
        }),
    ))
}

/// The body of a create (`PUT`): the storage class, the node's default when absent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    #[serde(default)]
    storage: Option<StorageClass>,
}

impl Api {
    /// A create's body; an empty one asks for the defaults.
    async fn create_request(&self, body: Body) -> Result<CreateRequest, AgentError> {
        let bytes = read_body(body, self.max_body_bytes, self.body_timeout).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(CreateRequest::default());
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| AgentError::bad_request("bad_json", e.to_string()))
    }
}

/// 201 with what was created, or 200 when it existed (in the class asked for).
fn created(created: bool, name: &str, storage: Option<StorageClass>) -> Response {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    json(
        status,
        serde_json::json!({"name": name, "storage": storage.map(StorageClass::name)}),
    )
}

async fn create_queue(
    State(api): State<Arc<Api>>,
    Path(queue): Path<String>,
    body: Body,
) -> Result<Response, AgentError> {
    let r = api.create_request(body).await?;
    let made = api.queues.create(public(&queue)?, r.storage).await?;
    Ok(created(made, &queue, api.queues.class(&queue)))
}

async fn create_topic(
    State(api): State<Arc<Api>>,
    Path(topic): Path<String>,
    body: Body,
) -> Result<Response, AgentError> {
    let r = api.create_request(body).await?;
    let made = api.topics.create(public(&topic)?, r.storage).await?;
    Ok(created(made, &topic, api.topics.class(&topic)))
}

async fn describe_topic(
    State(api): State<Arc<Api>>,
    Path(topic): Path<String>,
) -> Result<Response, AgentError> {
    let partition = api.topics.topic(public(&topic)?, None).await?;
    let offsets = partition.offsets().await?;
    let storage = api.topics.class(&topic).map(StorageClass::name);
    Ok(json(
        StatusCode::OK,
        serde_json::json!({
            "name": topic, "storage": storage, "first": offsets.log_start, "next": offsets.end,
        }),
    ))
}

/// Longest event type, in bytes.
const MAX_EVENT_TYPE: usize = 64;
/// Most events one JSON read returns.
const MAX_READ: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishRequest {
    data: serde_json::Value,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadQuery {
    #[serde(default)]
    from: Option<u64>,
    #[serde(default)]
    max: Option<usize>,
    #[serde(default)]
    wait_ms: Option<i64>,
}

async fn publish(
    State(api): State<Arc<Api>>,
    Path(topic): Path<String>,
    body: Body,
) -> Result<Response, AgentError> {
    let topic = public(&topic)?;
    let r: PublishRequest = api.body(body).await?;
    // A type goes on an SSE `event:` line: a short word, no line breaks.
    if r.kind
        .as_deref()
        .is_some_and(|k| !crate::topics::valid_type(k))
    {
        return Err(AgentError::bad_request(
            "bad_type",
            format!("an event type is 1 to {MAX_EVENT_TYPE} characters of [A-Za-z0-9._-]"),
        ));
    }
    let event = Event {
        kind: r.kind,
        data: r.data,
        sent_ms: now_ms(),
    };
    let id = api.topics.publish(topic, &event).await?;
    Ok(json(StatusCode::CREATED, serde_json::json!({"id": id})))
}

/// Where a reader resumes: just after the `Last-Event-ID` it names, else at `from`.
fn resume_from(headers: &HeaderMap, from: Option<u64>) -> Result<Option<u64>, AgentError> {
    match headers.get("last-event-id") {
        None => Ok(from),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .and_then(|id| id.checked_add(1))
            .map(Some)
            .ok_or_else(|| AgentError::bad_request("bad_position", "Last-Event-ID is an event id")),
    }
}

async fn subscribe(
    State(api): State<Arc<Api>>,
    Path(topic): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, AgentError> {
    let q: ReadQuery = query_of(query.as_deref())?;
    let from = resume_from(&headers, q.from)?;
    readable(&topic)?;
    let partition = api.topics.topic(&topic, None).await?;
    let streaming = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/event-stream"));
    if streaming {
        let slot = api.topics.stream_slot()?;
        let start = api.topics.start(partition.as_ref(), from).await?;
        let stream = crate::topics::sse_stream(
            api.topics.clone(),
            partition,
            start,
            api.shutdown.clone(),
            slot,
        );
        return Ok(crate::topics::sse_response(stream));
    }
    let max = q.max.unwrap_or(100);
    if max == 0 || max > MAX_READ {
        return Err(AgentError::bad_request(
            "bad_max",
            format!("max is 1 to {MAX_READ}"),
        ));
    }
    let wait_ms = q
        .wait_ms
        .unwrap_or(0)
        .clamp(0, api.queues.limits().max_wait_ms);
    // From the oldest event kept when no position is given.
    let from = match from {
        Some(from) => from,
        None => partition.offsets().await?.log_start,
    };
    let start = api.topics.start(partition.as_ref(), Some(from)).await?;
    let (mut events, mut next) = api.topics.read(partition.as_ref(), start).await?;
    if events.is_empty() && wait_ms > 0 {
        let waited = tokio::time::timeout(
            std::time::Duration::from_millis(wait_ms as u64),
            partition.wait_for(start),
        )
        .await;
        if matches!(waited, Ok(Ok(_))) {
            (events, next) = api.topics.read(partition.as_ref(), start).await?;
        }
    }
    if events.len() > max {
        next = events[max].id;
        events.truncate(max);
    }
    Ok(json(
        StatusCode::OK,
        serde_json::json!({"events": events, "next": next}),
    ))
}

/// Reads a query string into `T`, unknown keys refused (numbers as numbers).
fn query_of<T: DeserializeOwned>(query: Option<&str>) -> Result<T, AgentError> {
    let pairs: serde_json::Map<String, serde_json::Value> =
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .map(|(k, v)| {
                let value = v
                    .parse::<u64>()
                    .map(serde_json::Value::from)
                    .unwrap_or_else(|_| serde_json::Value::from(v.as_ref()));
                (k.into_owned(), value)
            })
            .collect();
    serde_json::from_value(serde_json::Value::Object(pairs))
        .map_err(|e| AgentError::bad_request("bad_query", e.to_string()))
}

/// Most agents one search returns.
const MAX_LISTED: usize = 1000;

/// The queue holding the mailbox of agent `name`'s current registration (another
/// registration of the name has another mailbox).
fn mailbox(api: &Api, name: &str) -> Result<String, AgentError> {
    api.registry
        .incarnation(name)
        .map(|inc| format!("_mbx-{name}-{inc}"))
        .ok_or_else(|| AgentError::not_found("unknown_agent", format!("no agent {name}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterRequest {
    card: Card,
    #[serde(default)]
    lease_ms: Option<i64>,
    /// The mailbox's storage class (the node's default when absent).
    #[serde(default)]
    storage: Option<StorageClass>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchQuery {
    #[serde(default)]
    skill: Option<String>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    online: Option<String>,
    #[serde(default)]
    max: Option<usize>,
}

impl Api {
    /// Refuses unless the request carries agent `name`'s own token (`X-Agent-Token`).
    fn owner(&self, headers: &HeaderMap, name: &str) -> Result<(), AgentError> {
        let given = headers
            .get("x-agent-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !self.registry.exists(name) {
            return Err(AgentError::not_found(
                "unknown_agent",
                format!("no agent {name}"),
            ));
        }
        if self.registry.owns(name, given) {
            Ok(())
        } else {
            Err(AgentError {
                status: StatusCode::FORBIDDEN,
                code: "not_owner",
                message: format!("only agent {name}'s own token (X-Agent-Token) may do this"),
                retry_after: None,
            })
        }
    }

    /// Publishes a registry change; a failure is logged, the change stands.
    async fn announce(&self, kind: &str, data: serde_json::Value) {
        let event = Event {
            kind: Some(kind.to_string()),
            data,
            sent_ms: now_ms(),
        };
        if let Err(e) = self.topics.publish(REGISTRY_TOPIC, &event).await {
            tracing::warn!(error = %e.message, "registry change not published");
        }
    }
}

async fn register(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AgentError> {
    let r: RegisterRequest = api.body(body).await?;
    let lease_ms = r.lease_ms.unwrap_or(30_000);
    if !(1_000..=86_400_000).contains(&lease_ms) {
        return Err(AgentError::bad_request(
            "bad_lease",
            "lease_ms is 1 s to 24 h",
        ));
    }
    // Refused before anything changes when the node cannot offer the class, or when the
    // registration updated keeps its mailbox in another.
    api.queues.classes().pick(r.storage)?;
    let token = headers.get("x-agent-token").and_then(|v| v.to_str().ok());
    let card = r.card;
    if let (Some(asked), Some(_), Ok(queue)) = (r.storage, token, mailbox(&api, &card.name)) {
        // An update: only by the agent, and only in the class its mailbox has.
        api.owner(&headers, &card.name)?;
        match api.queues.class(&queue) {
            Some(kept) if kept != asked => return Err(crate::storage::conflict(kept.name())),
            _ => {}
        }
    }
    let (token, new) = api
        .registry
        .register(card.clone(), token, lease_ms, now_ms())
        .await?;
    // A mailbox asked for in a class is made now, in it; a registration's mailbox keeps
    // the class it was made in (asking another is 409 `storage_conflict`). Without a class
    // it is made by the first send or fetch (an idle agent costs no queue). A new
    // registration whose mailbox cannot be made is undone: its token was not told.
    let made = match (r.storage, mailbox(&api, &card.name)) {
        (None, _) => Ok(()),
        (Some(class), Ok(queue)) => api.queues.create(&queue, Some(class)).await.map(|_| ()),
        (Some(_), Err(e)) => Err(e),
    };
    if let Err(e) = made {
        if new {
            let _ = api.registry.remove(&card.name).await;
        }
        return Err(e);
    }
    let kind = if new { "registered" } else { "updated" };
    api.announce(kind, serde_json::to_value(&card).unwrap_or_default())
        .await;
    if new {
        Ok(json(
            StatusCode::CREATED,
            serde_json::json!({"name": card.name, "token": token}),
        ))
    } else {
        Ok(json(StatusCode::OK, serde_json::json!({"name": card.name})))
    }
}

async fn list_agents(
    State(api): State<Arc<Api>>,
    RawQuery(query): RawQuery,
) -> Result<Response, AgentError> {
    let q: SearchQuery = query_of(query.as_deref())?;
    let max = q.max.unwrap_or(100).clamp(1, MAX_LISTED);
    let search = Search {
        skill: q.skill,
        tag: q.tag,
        online: q.online.as_deref() == Some("true"),
    };
    let agents = api.registry.search(&search, now_ms(), max);
    Ok(json(StatusCode::OK, serde_json::json!({"agents": agents})))
}

async fn get_agent(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
) -> Result<Response, AgentError> {
    let agent = api.registry.get(&name, now_ms())?;
    ok(&agent)
}

/// Agent `name`'s mailbox: its storage class and how many messages wait in it (for the
/// agent itself: `X-Agent-Token`).
async fn describe_mailbox(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, AgentError> {
    api.owner(&headers, &name)?;
    let queue = mailbox(&api, &name)?;
    let storage = api.queues.class(&queue).map(StorageClass::name);
    let (depth, in_flight) = match storage {
        Some(_) => api.queues.depth(&queue).await?,
        None => (0, 0),
    };
    Ok(json(
        StatusCode::OK,
        serde_json::json!({
            "agent": name, "storage": storage, "depth": depth, "in_flight": in_flight,
        }),
    ))
}

async fn remove_agent(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, AgentError> {
    api.owner(&headers, &name)?;
    api.registry.remove(&name).await?;
    api.announce("removed", serde_json::json!({"name": name}))
        .await;
    Ok(json(StatusCode::OK, serde_json::json!({"name": name})))
}

async fn heartbeat(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, AgentError> {
    api.owner(&headers, &name)?;
    let until = api.registry.heartbeat(&name, now_ms()).await?;
    Ok(json(
        StatusCode::OK,
        serde_json::json!({"online_until_ms": until}),
    ))
}

/// A queue operation (`/v1/queues/{queue}/{op}`).
async fn queue_op(
    State(api): State<Arc<Api>>,
    Path((queue, op)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AgentError> {
    let queue = public(&queue)?;
    on_queue(&api, queue, &op, &headers, body).await
}

/// Operation `op` on `queue`.
async fn on_queue(
    api: &Api,
    queue: &str,
    op: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, AgentError> {
    match op {
        "messages" => send_to(api, queue, headers, body).await,
        "fetch" => fetch_to(api, queue, body).await,
        "ack" => ack_to(api, queue, body).await,
        "nack" => nack_to(api, queue, body).await,
        "extend" => extend_to(api, queue, body).await,
        _ => Err(AgentError::not_found("not_found", "no such route")),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MaxQuery {
    #[serde(default)]
    max: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedriveRequest {
    #[serde(default = "one")]
    max: usize,
}

async fn dead_letters(
    State(api): State<Arc<Api>>,
    Path(queue): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, AgentError> {
    let queue = public(&queue)?;
    let q: MaxQuery = query_of(query.as_deref())?;
    let max = q.max.unwrap_or(100).clamp(1, MAX_READ);
    let messages = api.queues.dead_letters(queue, max).await?;
    ok(&serde_json::json!({"messages": messages}))
}

async fn redrive(
    State(api): State<Arc<Api>>,
    Path(queue): Path<String>,
    body: Body,
) -> Result<Response, AgentError> {
    let queue = public(&queue)?;
    let r: RedriveRequest = api.body(body).await?;
    if r.max == 0 || r.max > MAX_FETCH {
        return Err(AgentError::bad_request(
            "bad_max",
            format!("max is 1 to {MAX_FETCH}"),
        ));
    }
    let moved = api.queues.redrive(queue, r.max).await?;
    ok(&serde_json::json!({"redriven": moved}))
}

/// A mailbox operation (`/v1/agents/{name}/mailbox/{op}`): anyone sends to it, only its
/// agent reads it.
async fn mailbox_op(
    State(api): State<Arc<Api>>,
    Path((name, op)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AgentError> {
    let queue = mailbox(&api, &name)?;
    if op != "messages" {
        api.owner(&headers, &name)?;
        api.queues.create(&queue, None).await?;
    }
    on_queue(&api, &queue, &op, &headers, body).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTask {
    agent: String,
    #[serde(default)]
    input: serde_json::Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddEvent {
    kind: String,
    #[serde(default)]
    state: Option<TaskState>,
    #[serde(default)]
    data: serde_json::Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Respond {
    #[serde(default)]
    data: serde_json::Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    #[serde(default)]
    after: Option<u64>,
    #[serde(default)]
    max: Option<usize>,
    #[serde(default)]
    wait_ms: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    #[serde(default)]
    wait_ms: Option<i64>,
}

impl Api {
    fn wait_of(&self, wait_ms: Option<i64>) -> std::time::Duration {
        let ms = wait_ms
            .unwrap_or(0)
            .clamp(0, self.queues.limits().max_wait_ms);
        std::time::Duration::from_millis(ms as u64)
    }
}

impl Api {
    /// Creates a task for agent `agent` with `input` and puts it in the agent's mailbox.
    pub(crate) async fn create_task(
        &self,
        agent: &str,
        input: serde_json::Value,
    ) -> Result<crate::tasks::Task, AgentError> {
        let queue = mailbox(self, agent)?;
        let incarnation = self.registry.incarnation(agent).unwrap_or_default();
        let task = self
            .tasks
            .create(agent, &incarnation, input.clone(), now_ms())
            .await?;
        // The agent learns of it in its mailbox.
        let envelope = Envelope {
            body: serde_json::json!({"task": task.id, "input": input}),
            tags: vec!["task".into()],
            sent_ms: task.created_ms,
            expires_ms: None,
            not_before_ms: None,
            claim: None,
        };
        // The task id is the idempotency key: a retried create cannot deliver it twice. A
        // task that cannot reach the mailbox fails at once rather than wait forever.
        if let Err(e) = self
            .queues
            .send(&queue, 1, Some(&task.id), envelope, Some(&task.id))
            .await
        {
            let why = serde_json::json!({"error": e.code, "message": e.message});
            let _ = self.tasks.abandon(&task.id, why, now_ms()).await;
            return Err(e);
        }
        Ok(task)
    }
}

async fn create_task(State(api): State<Arc<Api>>, body: Body) -> Result<Response, AgentError> {
    let r: CreateTask = api.body(body).await?;
    let task = api.create_task(&r.agent, r.input).await?;
    Ok(json(StatusCode::CREATED, task.view()))
}

async fn get_task(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
) -> Result<Response, AgentError> {
    let task = api.tasks.get(&id)?;
    ok(&task.view())
}

async fn add_task_event(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AgentError> {
    let task = api.tasks.get(&id)?;
    // Only the agent the task was created for, in the registration it was created
    // for: a name registered again is another agent.
    if api.registry.incarnation(&task.agent).as_deref() != Some(task.agent_incarnation.as_str()) {
        return Err(AgentError {
            status: StatusCode::FORBIDDEN,
            code: "not_owner",
            message: format!(
                "task {id} belongs to an earlier registration of {}",
                task.agent
            ),
            retry_after: None,
        });
    }
    api.owner(&headers, &task.agent)?;
    let r: AddEvent = api.body(body).await?;
    let task = api
        .tasks
        .add(&id, &r.kind, r.state, r.data, true, now_ms())
        .await?;
    ok(&task.view())
}

async fn respond_task(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, AgentError> {
    let r: Respond = api.body(body).await?;
    let task = api
        .tasks
        .add(&id, "message", None, r.data, false, now_ms())
        .await?;
    ok(&task.view())
}

async fn cancel_task(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
) -> Result<Response, AgentError> {
    let task = api
        .tasks
        .add(
            &id,
            "status",
            Some(TaskState::Canceled),
            serde_json::Value::Null,
            false,
            now_ms(),
        )
        .await?;
    ok(&task.view())
}

async fn task_events(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, AgentError> {
    let q: EventsQuery = query_of(query.as_deref())?;
    let max = q.max.unwrap_or(100).clamp(1, MAX_READ);
    let after = q.after;
    let streaming = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/event-stream"));
    if streaming {
        // Every event after `after` (or the Last-Event-ID the client resumes with), as it
        // comes, until the task ends.
        api.tasks.get(&id)?;
        let after = match resume_from(&headers, None)? {
            Some(next) => Some(next - 1),
            None => after,
        };
        let slot = api.topics.stream_slot()?;
        let render = |e: &crate::tasks::Numbered| {
            let data = serde_json::to_string(e).unwrap_or_default();
            bytes::Bytes::from(format!(
                "id: {}\nevent: {}\ndata: {data}\n\n",
                e.id, e.event.kind
            ))
        };
        let ends: fn(&crate::tasks::Task) -> bool = |t| t.state.is_final();
        let stream = crate::a2a::task_stream(
            api.clone(),
            id,
            after,
            std::collections::VecDeque::from([bytes::Bytes::from_static(b": open\n\n")]),
            ends,
            render,
            slot,
        );
        return Ok(crate::topics::sse_response(stream));
    }
    // Waits for an event after `after`, or for the task to end, or for the node to stop.
    let mut stop = api.shutdown.clone();
    tokio::select! {
        waited = api.tasks.wait(&id, api.wait_of(q.wait_ms), |t| {
            t.state.is_final() || t.events.iter().any(|&o| after.is_none_or(|a| o > a))
        }) => { waited?; }
        () = stop.wait() => {}
    }
    let (task, events) = api.tasks.events(&id, after, max).await?;
    Ok(json(
        StatusCode::OK,
        serde_json::json!({"state": task.state, "events": events}),
    ))
}

async fn wait_task(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, AgentError> {
    let q: WaitQuery = query_of(query.as_deref())?;
    let mut stop = api.shutdown.clone();
    let task = tokio::select! {
        waited = api.tasks.wait(&id, api.wait_of(q.wait_ms), |t| {
            t.state.is_final() || t.state == TaskState::InputRequired
        }) => waited?,
        () = stop.wait() => api.tasks.get(&id)?,
    };
    ok(&task.view())
}

/// A claim-checked body, as it was sent.
async fn get_blob(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
) -> Result<Response, AgentError> {
    let body = api.blobs.get(&id).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The API's OpenAPI document (queues, topics, agents, mailboxes, tasks).
async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../openapi.json"),
    )
        .into_response()
}

async fn not_found() -> AgentError {
    AgentError::not_found("not_found", "no such route")
}

/// Every request: refused unless it carries the deployment's token, and every error
/// answered (by a handler, or here) counted by its code.
async fn guard(State(api): State<Arc<Api>>, request: Request, next: Next) -> Response {
    let checked = api
        .host(request.headers())
        .and_then(|()| api.origin(request.headers()))
        .and_then(|()| api.authorize(request.headers()));
    let response = match checked {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    };
    if let Some(ErrorCode(code)) = response.extensions().get::<ErrorCode>() {
        api.metrics.errors.with_label_values(&[code]).inc();
    }
    response
}

/// The agent API's routes and the MCP endpoint over them, every one behind [`guard`].
pub fn router(api: Arc<Api>) -> Router {
    let rest = rest(api.clone());
    // A tool's arguments are a request body in a JSON-RPC envelope: room for the envelope.
    let mcp = crate::mcp::router(
        rest.clone(),
        api.max_body_bytes + 64 * 1024,
        api.max_body_bytes,
        api.body_timeout,
        api.metrics.clone(),
    )
    .layer(axum::middleware::from_fn_with_state(api, guard));
    rest.merge(mcp)
}

/// The agent API's REST routes.
fn rest(api: Arc<Api>) -> Router {
    Router::new()
        .route("/v1/queues/{queue}", get(describe).put(create_queue))
        .route("/v1/queues/{queue}/{op}", post(queue_op))
        .route("/v1/queues/{queue}/dead-letters", get(dead_letters))
        .route("/v1/queues/{queue}/dead-letters/redrive", post(redrive))
        .route("/v1/topics/{topic}", get(describe_topic).put(create_topic))
        .route("/v1/topics/{topic}/events", post(publish).get(subscribe))
        .route("/v1/agents", post(register).get(list_agents))
        .route("/v1/agents/{name}", get(get_agent).delete(remove_agent))
        .route("/v1/agents/{name}/heartbeat", post(heartbeat))
        .route("/v1/agents/{name}/mailbox", get(describe_mailbox))
        .route("/v1/agents/{name}/mailbox/{op}", post(mailbox_op))
        .route("/v1/tasks", post(create_task))
        .route("/v1/tasks/{id}", get(get_task))
        .route(
            "/v1/tasks/{id}/events",
            post(add_task_event).get(task_events),
        )
        .route("/v1/tasks/{id}/respond", post(respond_task))
        .route("/v1/tasks/{id}/cancel", post(cancel_task))
        .route("/v1/tasks/{id}/wait", get(wait_task))
        .route("/v1/blobs/{id}", get(get_blob))
        .route("/v1/openapi.json", get(openapi))
        .merge(crate::a2a::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(api.clone(), guard))
        .with_state(api)
}
