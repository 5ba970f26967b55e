//! The MCP endpoint (`POST /mcp`, Streamable HTTP, stateless): the agent API as a small set
//! of tools, for model-driven agents.
//!
//! Both eras of the protocol are served: the current revision (2026-07-28: `server/discover`,
//! no handshake, no session) and the handshake era (`initialize`, 2024-11-05 to 2025-11-25).
//! Every answer is one JSON-RPC response as `application/json`; there is no server-to-client
//! stream (GET and DELETE answer 405). A tool call is carried out by the agent API's own
//! routes, as an HTTP request with the caller's `Authorization` and `X-Agent-Token`: the
//! same checks, limits, errors and metrics as the REST API. An answer of 4xx/5xx is the
//! tool's error (`isError`), with the API's error body as its structured content.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::error::ErrorCode;
use crate::metrics::AgentMetrics;

/// The current revision.
pub const MODERN: &str = "2026-07-28";
/// The handshake-era revisions, oldest first.
/// (2025-03-26 is not among them: it asks servers to take batches, which this one refuses.)
pub const HANDSHAKE: [&str; 3] = ["2024-11-05", "2025-06-18", "2025-11-25"];

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const UNSUPPORTED_VERSION: i64 = -32022;

/// What the endpoint needs: the agent API's routes (tools are carried out through them),
/// the largest request and the metrics.
#[derive(Clone)]
pub struct Mcp {
    api: Router,
    max_body_bytes: usize,
    body_timeout: std::time::Duration,
    max_answer: usize,
    metrics: AgentMetrics,
}

/// The `/mcp` route over `api`, the agent API's guarded routes: requests of at most
/// `max_body_bytes`, tool answers as large as the largest the API gives (a fetch of 100
/// messages of `max_message_bytes`).
pub fn router(
    api: Router,
    max_body_bytes: usize,
    max_message_bytes: usize,
    body_timeout: std::time::Duration,
    metrics: AgentMetrics,
) -> Router {
    let mcp = Mcp {
        api,
        max_body_bytes,
        body_timeout,
        max_answer: max_message_bytes.saturating_mul(101).max(1 << 20),
        metrics,
    };
    Router::new()
        .route("/mcp", post(endpoint).get(no_stream).delete(no_stream))
        .with_state(Arc::new(mcp))
}

/// No server-to-client stream and no session to end.
async fn no_stream() -> Response {
    let mut r = StatusCode::METHOD_NOT_ALLOWED.into_response();
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    r
}

/// A JSON-RPC error, with the code the agent API's error metric counts it under.
#[derive(Debug)]
pub struct RpcError {
    code: i64,
    message: String,
    data: Option<Value>,
    counted: &'static str,
}

impl RpcError {
    /// Its JSON-RPC code.
    pub fn code(&self) -> i64 {
        self.code
    }

    /// What went wrong, for a person.
    pub fn message(&self) -> &str {
        &self.message
    }

    fn new(code: i64, counted: &'static str, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
            counted,
        }
    }

    fn params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, "mcp_bad_params", message)
    }
}

/// One JSON-RPC answer as `application/json`.
fn answer(status: StatusCode, id: &Value, outcome: Result<Value, RpcError>) -> Response {
    let (body, counted) = match outcome {
        Ok(result) => (json!({"jsonrpc": "2.0", "id": id, "result": result}), None),
        Err(e) => {
            let mut error = json!({"code": e.code, "message": e.message});
            if let Some(data) = e.data {
                error["data"] = data;
            }
            (
                json!({"jsonrpc": "2.0", "id": id, "error": error}),
                Some(e.counted),
            )
        }
    };
    let mut r = (status, axum::Json(body)).into_response();
    if let Some(code) = counted {
        r.extensions_mut().insert(ErrorCode(code));
    }
    r
}

/// What one POST to `/mcp` asks.
#[derive(Debug)]
pub enum Decoded {
    /// A notification, or a client's response to a request (the server sends none): 202.
    Notification,
    /// A request, to answer.
    Request {
        /// Its id, echoed in the answer.
        id: Value,
        /// Its method.
        method: String,
        /// Its parameters (`{}` when absent).
        params: Value,
        /// Whether it speaks the current revision.
        modern: bool,
    },
}

/// A message that cannot be answered as asked: the status, the id to answer with (null
/// when none was read) and the error.
pub type Refused = (StatusCode, Value, RpcError);

/// Decodes one message posted with `version` in its `MCP-Protocol-Version` header.
pub fn decode(bytes: &[u8], version: Option<&str>) -> Result<Decoded, Refused> {
    let message: Value = serde_json::from_slice(bytes).map_err(|e| {
        let e = RpcError::new(PARSE_ERROR, "mcp_parse_error", format!("not JSON: {e}"));
        (StatusCode::BAD_REQUEST, Value::Null, e)
    })?;
    let Value::Object(mut message) = message else {
        let e = RpcError::new(
            INVALID_REQUEST,
            "mcp_invalid_request",
            "one JSON-RPC message per request (no batches)",
        );
        return Err((StatusCode::BAD_REQUEST, Value::Null, e));
    };
    let method = match message.remove("method") {
        Some(Value::String(m)) => m,
        // A client's answer to a request (the server sends none).
        _ => return Ok(Decoded::Notification),
    };
    let id = match message.remove("id") {
        None => return Ok(Decoded::Notification),
        Some(id) if id.is_string() || id.is_number() => id,
        Some(_) => {
            let e = RpcError::new(
                INVALID_REQUEST,
                "mcp_invalid_request",
                "a request's id is a string or a number",
            );
            return Err((StatusCode::BAD_REQUEST, Value::Null, e));
        }
    };
    if let Some(v) = version
        && v != MODERN
        && !HANDSHAKE.contains(&v)
    {
        let mut e = RpcError::new(
            UNSUPPORTED_VERSION,
            "mcp_bad_version",
            format!("protocol version {v} is not supported"),
        );
        e.data = Some(json!({"supported": supported(), "requested": v}));
        return Err((StatusCode::BAD_REQUEST, id, e));
    }
    let modern = method == "server/discover" || version == Some(MODERN);
    let params = message.remove("params").unwrap_or(json!({}));
    Ok(Decoded::Request {
        id,
        method,
        params,
        modern,
    })
}

async fn endpoint(State(mcp): State<Arc<Mcp>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = match crate::http::read_body(body, mcp.max_body_bytes, mcp.body_timeout).await {
        Ok(bytes) => bytes,
        Err(e) => return e.into_response(),
    };
    let version = parts
        .headers
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok());
    let (id, method, params, modern) = match decode(&bytes, version) {
        Ok(Decoded::Request {
            id,
            method,
            params,
            modern,
        }) => (id, method, params, modern),
        Ok(Decoded::Notification) => {
            mcp.count("notification");
            return StatusCode::ACCEPTED.into_response();
        }
        Err((status, id, e)) => {
            mcp.count("other");
            return answer(status, &id, Err(e));
        }
    };
    mcp.count(&method);
    let (id, method) = (&id, method.as_str());
    let outcome = match method {
        "server/discover" => Ok(json!({
            "supportedVersions": supported(),
            "capabilities": {"tools": {}},
            "instructions": INSTRUCTIONS,
            "_meta": {"io.modelcontextprotocol/serverInfo": server_info()},
        })),
        "initialize" => {
            let asked = params.get("protocolVersion").and_then(Value::as_str);
            let version = asked
                .filter(|v| HANDSHAKE.contains(v))
                .unwrap_or(HANDSHAKE[HANDSHAKE.len() - 1]);
            Ok(json!({
                "protocolVersion": version,
                "capabilities": {"tools": {}},
                "serverInfo": server_info(),
                "instructions": INSTRUCTIONS,
            }))
        }
        "ping" => Ok(json!({})),
        "tools/list" => Ok(json!({"tools": tools()})),
        "tools/call" => mcp.call(&parts.headers, params).await,
        other => Err(RpcError::new(
            METHOD_NOT_FOUND,
            "mcp_unknown_method",
            format!("no method {other}"),
        )),
    };
    let outcome = outcome.map(|mut result| {
        if modern {
            // Every result of the current revision says it is complete; listings say how
            // long they may be cached (not at all: tools do not change, but a node's
            // version might).
            result["resultType"] = json!("complete");
            if method == "tools/list" || method == "server/discover" {
                result["ttlMs"] = json!(0);
                result["cacheScope"] = json!("private");
            }
        }
        result
    });
    answer(StatusCode::OK, id, outcome)
}

fn supported() -> Vec<&'static str> {
    let mut all = vec![MODERN];
    all.extend(HANDSHAKE.iter().rev());
    all
}

fn server_info() -> Value {
    json!({"name": "strata", "version": env!("CARGO_PKG_VERSION")})
}

const INSTRUCTIONS: &str = "Messaging between agents: work queues with leases (send, \
fetch, ack), agents' mailboxes, tasks (create_task, wait_task, respond) and topics \
(history). Messages are kept in their queue's storage class (memory, local or object); a \
fetched message not acked before its lease lapses is delivered again.";

impl Mcp {
    fn count(&self, method: &str) {
        let method = match method {
            "server/discover" | "initialize" | "ping" | "tools/list" | "tools/call"
            | "notification" => method,
            _ => "other",
        };
        self.metrics.mcp_requests.with_label_values(&[method]).inc();
    }

    /// Carries out a `tools/call`.
    async fn call(&self, headers: &HeaderMap, params: Value) -> Result<Value, RpcError> {
        let planned = plan(params)?;
        let mut extra = HeaderMap::new();
        if let Some(key) = planned.idempotency_key {
            extra.insert("idempotency-key", key);
        }
        self.carry_out(headers, extra, planned.method, &planned.path, planned.body)
            .await
    }

    /// Asks the agent API `method path` with `body`, as the caller (its `Authorization`
    /// and `X-Agent-Token`): the tool's result.
    async fn carry_out(
        &self,
        caller: &HeaderMap,
        extra: HeaderMap,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, RpcError> {
        // A path the URI type refuses (too long, say) is the caller's arguments' fault.
        let uri: axum::http::Uri = path
            .parse()
            .map_err(|e| RpcError::params(format!("cannot make the request: {e}")))?;
        let mut request = Request::builder().method(method).uri(uri);
        let Some(headers) = request.headers_mut() else {
            return Err(RpcError::params("cannot make the request"));
        };
        for name in [
            header::AUTHORIZATION,
            "x-agent-token".parse().expect("a name"),
        ] {
            if let Some(v) = caller.get(&name) {
                headers.insert(name, v.clone());
            }
        }
        headers.extend(extra);
        let body = match body {
            Some(b) => {
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Body::from(serde_json::to_vec(&b).unwrap_or_default())
            }
            None => Body::empty(),
        };
        let request = request
            .body(body)
            .map_err(|e| RpcError::params(format!("cannot make the request: {e}")))?;
        let response = match self.api.clone().oneshot(request).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = response.status();
        let answer = axum::body::to_bytes(response.into_body(), self.max_answer).await;
        let Ok(bytes) = answer else {
            let error = json!({"error": {"code": "answer_too_large",
                "message": "the answer was too large to pass on"}});
            return Ok(json!({
                "content": [{"type": "text", "text": error.to_string()}],
                "structuredContent": error,
                "isError": true,
            }));
        };
        let structured: Value = serde_json::from_slice(&bytes).unwrap_or_else(
            |_| json!({"error": {"code": "not_json", "message": String::from_utf8_lossy(&bytes)}}),
        );
        let structured = match structured {
            Value::Object(_) => structured,
            other => json!({"result": other}),
        };
        Ok(json!({
            "content": [{"type": "text", "text": structured.to_string()}],
            "structuredContent": structured,
            "isError": !status.is_success(),
        }))
    }
}

/// A tool call as a request of the agent API.
#[derive(Debug)]
pub struct Planned {
    /// The request's method.
    pub method: Method,
    /// Its path and query, every name in it percent-encoded.
    pub path: String,
    /// Its JSON body.
    pub body: Option<Value>,
    /// Its `Idempotency-Key` (a send's).
    pub idempotency_key: Option<HeaderValue>,
}

/// Plans a `tools/call` with `params`: which request of the agent API carries it out.
pub fn plan(params: Value) -> Result<Planned, RpcError> {
    let call: ToolCall = parse(params)?;
    let args = call.arguments.unwrap_or(json!({}));
    let (method, path, body) = match call.name.as_str() {
        "discover_agents" => {
            let a: Discover = parse(args)?;
            let mut query = Vec::new();
            if let Some(s) = &a.skill {
                query.push(format!("skill={}", encode(s)));
            }
            if let Some(t) = &a.tag {
                query.push(format!("tag={}", encode(t)));
            }
            if let Some(o) = a.online {
                query.push(format!("online={o}"));
            }
            if let Some(m) = a.max {
                query.push(format!("max={m}"));
            }
            (Method::GET, with_query("/v1/agents", &query), None)
        }
        "send" => {
            let a: Send = parse(args)?;
            let mut body = json!({"body": a.body});
            for (k, v) in [
                ("priority", a.priority.map(Value::from)),
                ("key", a.key.map(Value::from)),
                ("tags", a.tags.map(Value::from)),
                ("ttl_ms", a.ttl_ms.map(Value::from)),
                ("delay_ms", a.delay_ms.map(Value::from)),
            ] {
                if let Some(v) = v {
                    body[k] = v;
                }
            }
            let path = format!("{}/messages", target(&a.queue, &a.agent)?);
            let key = a
                .idempotency_key
                .map(|k| {
                    HeaderValue::from_str(&k).map_err(|_| {
                        RpcError::params("idempotency_key must be visible ASCII characters")
                    })
                })
                .transpose()?;
            return Ok(Planned {
                method: Method::POST,
                path,
                body: Some(body),
                idempotency_key: key,
            });
        }
        "fetch" => {
            let a: Fetch = parse(args)?;
            let mut body = json!({});
            for (k, v) in [
                ("max", a.max),
                ("lease_ms", a.lease_ms),
                ("wait_ms", a.wait_ms),
            ] {
                if let Some(v) = v {
                    body[k] = json!(v);
                }
            }
            let path = format!("{}/fetch", target(&a.queue, &a.agent)?);
            (Method::POST, path, Some(body))
        }
        "ack" => {
            let a: Ack = parse(args)?;
            let body = json!({"lease": a.lease});
            let path = format!("{}/ack", target(&a.queue, &a.agent)?);
            (Method::POST, path, Some(body))
        }
        "create_task" => {
            let a: CreateTask = parse(args)?;
            let body = json!({"agent": a.agent, "input": a.input});
            (Method::POST, "/v1/tasks".to_string(), Some(body))
        }
        "wait_task" => {
            let a: WaitTask = parse(args)?;
            let query: Vec<String> = a
                .wait_ms
                .map(|w| format!("wait_ms={w}"))
                .into_iter()
                .collect();
            let path = format!("/v1/tasks/{}/wait", encode(&a.id));
            (Method::GET, with_query(&path, &query), None)
        }
        "respond" => {
            let a: Respond = parse(args)?;
            let path = format!("/v1/tasks/{}/respond", encode(&a.id));
            (Method::POST, path, Some(json!({"data": a.data})))
        }
        "history" => {
            let a: History = parse(args)?;
            let mut query = Vec::new();
            if let Some(f) = a.from {
                query.push(format!("from={f}"));
            }
            if let Some(m) = a.max {
                query.push(format!("max={m}"));
            }
            let path = format!("/v1/topics/{}/events", encode(&a.topic));
            (Method::GET, with_query(&path, &query), None)
        }
        other => return Err(RpcError::params(format!("no tool {other}"))),
    };
    Ok(Planned {
        method,
        path,
        body,
        idempotency_key: None,
    })
}

fn parse<T: DeserializeOwned>(value: Value) -> Result<T, RpcError> {
    serde_json::from_value(value).map_err(|e| RpcError::params(e.to_string()))
}

fn with_query(path: &str, query: &[String]) -> String {
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

/// `s` percent-encoded but for letters, digits, `-`, `_` and `~`: one path segment or query
/// value, never a `.` or `..` segment.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A `tools/call`'s parameters (`_meta` and what later revisions add are not read).
#[derive(Deserialize)]
struct ToolCall {
    name: String,
    #[serde(default)]
    arguments: Option<Value>,
}

/// The path of a queue, or of an agent's mailbox: exactly one of them is named.
fn target(queue: &Option<String>, agent: &Option<String>) -> Result<String, RpcError> {
    match (queue, agent) {
        (Some(q), None) => Ok(format!("/v1/queues/{}", encode(q))),
        (None, Some(a)) => Ok(format!("/v1/agents/{}/mailbox", encode(a))),
        _ => Err(RpcError::params("name either a queue or an agent")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Discover {
    #[serde(default)]
    skill: Option<String>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    online: Option<bool>,
    #[serde(default)]
    max: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Send {
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    agent: Option<String>,
    body: Value,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    ttl_ms: Option<i64>,
    #[serde(default)]
    delay_ms: Option<i64>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fetch {
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    max: Option<i64>,
    #[serde(default)]
    lease_ms: Option<i64>,
    #[serde(default)]
    wait_ms: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Ack {
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    agent: Option<String>,
    lease: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTask {
    agent: String,
    #[serde(default)]
    input: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitTask {
    id: String,
    #[serde(default)]
    wait_ms: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Respond {
    id: String,
    #[serde(default)]
    data: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct History {
    topic: String,
    #[serde(default)]
    from: Option<u64>,
    #[serde(default)]
    max: Option<u32>,
}

/// The tools, with their input schemas.
fn tools() -> Value {
    let target = json!({
        "queue": {"type": "string", "description": "A work queue's name"},
        "agent": {"type": "string", "description": "An agent's name: its mailbox (reading it needs the agent's X-Agent-Token)"},
    });
    let with_target = |extra: Value, required: &[&str]| {
        let mut properties = target.clone();
        if let (Value::Object(p), Value::Object(e)) = (&mut properties, extra) {
            p.extend(e);
        }
        json!({"type": "object", "properties": properties, "required": required,
               "additionalProperties": false})
    };
    let schema = |properties: Value, required: &[&str]| {
        json!({"type": "object", "properties": properties, "required": required,
               "additionalProperties": false})
    };
    json!([
        {
            "name": "discover_agents",
            "description": "Lists registered agents (their cards), filtered by skill, tag or whether they are online.",
            "inputSchema": schema(json!({
                "skill": {"type": "string"}, "tag": {"type": "string"},
                "online": {"type": "boolean"}, "max": {"type": "integer", "minimum": 1, "maximum": 1000},
            }), &[]),
            "annotations": {"readOnlyHint": true},
        },
        {
            "name": "send",
            "description": "Stores a message in a work queue or an agent's mailbox. With idempotency_key, a retried send is stored once.",
            "inputSchema": with_target(json!({
                "body": {"description": "The message: any JSON value"},
                "priority": {"type": "string", "enum": ["high", "normal", "low"]},
                "key": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}},
                "ttl_ms": {"type": "integer"}, "delay_ms": {"type": "integer"},
                "idempotency_key": {"type": "string"},
            }), &["body"]),
        },
        {
            "name": "fetch",
            "description": "Takes up to max messages from a queue or a mailbox on a lease, waiting up to wait_ms for one. Ack each before its lease lapses, or it is delivered again.",
            "inputSchema": with_target(json!({
                "max": {"type": "integer", "minimum": 1, "maximum": 100},
                "lease_ms": {"type": "integer"}, "wait_ms": {"type": "integer", "maximum": 50000},
            }), &[]),
        },
        {
            "name": "ack",
            "description": "Marks a fetched message done, by the lease its fetch gave.",
            "inputSchema": with_target(json!({"lease": {"type": "string"}}), &["lease"]),
        },
        {
            "name": "create_task",
            "description": "Creates a task for a registered agent; it lands in the agent's mailbox. Returns the task with its id.",
            "inputSchema": schema(json!({
                "agent": {"type": "string"}, "input": {"description": "Any JSON value"},
            }), &["agent"]),
        },
        {
            "name": "wait_task",
            "description": "Returns a task once it is final or needs input, or after wait_ms.",
            "inputSchema": schema(json!({
                "id": {"type": "string"}, "wait_ms": {"type": "integer", "maximum": 50000},
            }), &["id"]),
            "annotations": {"readOnlyHint": true},
        },
        {
            "name": "respond",
            "description": "Answers a task that waits for input (input-required).",
            "inputSchema": schema(json!({
                "id": {"type": "string"}, "data": {"description": "The answer: any JSON value"},
            }), &["id"]),
        },
        {
            "name": "history",
            "description": "Reads a topic's stored events from id `from` (its first kept one when absent), at most max.",
            "inputSchema": schema(json!({
                "topic": {"type": "string"}, "from": {"type": "integer", "minimum": 0},
                "max": {"type": "integer", "minimum": 1, "maximum": 1000},
            }), &["topic"]),
            "annotations": {"readOnlyHint": true},
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(tool: &str, arguments: Value) -> Result<Planned, i64> {
        plan(json!({"name": tool, "arguments": arguments})).map_err(|e| e.code())
    }

    #[test]
    fn names_cannot_leave_their_path_segment() {
        let p = planned("send", json!({"queue": "a/../b?x=1#y", "body": 1})).expect("decoded");
        assert_eq!(p.path, "/v1/queues/a%2F%2E%2E%2Fb%3Fx%3D1%23y/messages");
        let p = planned("wait_task", json!({"id": "../../agents", "wait_ms": 5})).expect("decoded");
        assert_eq!(p.path, "/v1/tasks/%2E%2E%2F%2E%2E%2Fagents/wait?wait_ms=5");
        let p = planned("discover_agents", json!({"tag": "a&online=false"})).expect("decoded");
        assert_eq!(p.path, "/v1/agents?tag=a%26online%3Dfalse");
    }

    #[test]
    fn wrong_arguments_are_invalid_params() {
        assert_eq!(
            planned("send", json!({"body": 1})).expect_err("refused"),
            INVALID_PARAMS
        );
        let both = json!({"queue": "q", "agent": "a", "body": 1});
        assert_eq!(planned("send", both).expect_err("refused"), INVALID_PARAMS);
        let unknown = json!({"queue": "q", "body": 1, "colour": "red"});
        assert_eq!(
            planned("send", unknown).expect_err("refused"),
            INVALID_PARAMS
        );
        assert_eq!(
            planned("rm_rf", json!({})).expect_err("refused"),
            INVALID_PARAMS
        );
        let key = json!({"queue": "q", "body": 1, "idempotency_key": "a\nb"});
        assert_eq!(planned("send", key).expect_err("refused"), INVALID_PARAMS);
    }

    #[test]
    fn messages_decode_by_era() {
        let call = br#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#;
        match decode(call, Some(MODERN)).expect("decoded") {
            Decoded::Request { id, modern, .. } => assert!(id == json!(7) && modern),
            other => panic!("{other:?}"),
        }
        match decode(call, None).expect("decoded") {
            Decoded::Request { modern, .. } => assert!(!modern),
            other => panic!("{other:?}"),
        }
        let refused = |bytes: &[u8], version| decode(bytes, version).expect_err("refused").2.code();
        assert_eq!(refused(call, Some("1999-01-01")), UNSUPPORTED_VERSION);
        assert_eq!(refused(b"[1]", None), INVALID_REQUEST);
        assert_eq!(refused(b"{", None), PARSE_ERROR);
        let note = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        assert!(matches!(decode(note, None), Ok(Decoded::Notification)));
    }
}
