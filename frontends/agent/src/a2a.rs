//! The A2A gateway (`/a2a/{agent}`): an Agent2Agent protocol 1.0 client (JSON-RPC binding)
//! talks to an agent registered here as if it were an A2A server. Its messages become the
//! agent's tasks (in its mailbox, as any task), its task's events come back as A2A task
//! snapshots and streamed updates.
//!
//! - `GET /a2a/{agent}/.well-known/agent-card.json`: the agent's card in A2A form.
//! - `POST /a2a/{agent}`: `SendMessage` (waits, bounded, until the task ends or needs
//!   input, unless `configuration.returnImmediately`), `SendStreamingMessage`, `GetTask`,
//!   `CancelTask` and `SubscribeToTask`.
//!
//! Streams go further than A2A: every update carries its event id (its offset in the
//! tasks' stream) as the SSE `id`, and `SubscribeToTask` with `Last-Event-ID` sends every
//! update after it again, after the snapshot, so a client that reconnects (after a network
//! failure or a node restart) misses none.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Value, json};
use strata_batch::{now_ms, rfc3339_ms};

use crate::error::{AgentError, ErrorCode};
use crate::http::Api;
use crate::tasks::{Numbered, State as TaskState, Task};
use crate::topics::StreamSlot;

/// The protocol version served.
pub const VERSION: &str = "1.0";

/// How often an idle stream sends a comment.
const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(15);
/// Keepalives after which a stream with no update ends (5 minutes): the client resumes
/// with `Last-Event-ID`, and a task nobody finishes holds no stream for ever.
const IDLE_KEEPALIVES: u32 = 20;
/// Most bytes of artifacts and history one task snapshot carries (the newest first).
const SNAPSHOT_BYTES: usize = 4 << 20;
/// Most history messages one snapshot carries when the request names no `historyLength`.
const HISTORY: usize = 100;
/// Task events one stream reads at a time.
const STREAM_BATCH: usize = 10;

/// The gateway's routes (behind the agent API's guard).
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/a2a/{agent}", post(rpc))
        .route("/a2a/{agent}/.well-known/agent-card.json", get(card))
}

/// A JSON-RPC error of the A2A binding, counted under `counted`.
#[derive(Debug)]
pub struct A2aError {
    code: i64,
    reason: &'static str,
    message: String,
    counted: &'static str,
}

impl A2aError {
    fn new(code: i64, reason: &'static str, counted: &'static str, message: String) -> Self {
        A2aError {
            code,
            reason,
            message,
            counted,
        }
    }

    fn params(message: impl Into<String>) -> Self {
        Self::new(-32602, "INVALID_PARAMS", "a2a_bad_params", message.into())
    }

    fn unsupported(counted: &'static str, message: String) -> Self {
        Self::new(-32004, "UNSUPPORTED_OPERATION", counted, message)
    }

    fn not_found(id: &str) -> Self {
        Self::new(
            -32001,
            "TASK_NOT_FOUND",
            "unknown_task",
            format!("no task {id} for this agent"),
        )
    }

    /// The answer, as HTTP 200 with a JSON-RPC error (what A2A clients expect).
    fn answer(self, id: &Value) -> Response {
        let body = json!({"jsonrpc": "2.0", "id": id, "error": {
            "code": self.code, "message": self.message,
            "data": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                      "reason": self.reason, "domain": "a2a-protocol.org", "metadata": {}}],
        }});
        let mut r = (StatusCode::OK, axum::Json(body)).into_response();
        r.extensions_mut().insert(ErrorCode(self.counted));
        r
    }
}

impl From<AgentError> for A2aError {
    fn from(e: AgentError) -> Self {
        let (code, reason) = match e.code {
            "unknown_task" => (-32001, "TASK_NOT_FOUND"),
            "task_finished" | "no_input_required" => (-32004, "UNSUPPORTED_OPERATION"),
            _ if e.status.is_server_error() || e.status == StatusCode::TOO_MANY_REQUESTS => {
                (-32603, "INTERNAL_ERROR")
            }
            _ => (-32602, "INVALID_PARAMS"),
        };
        A2aError::new(code, reason, e.code, format!("{} ({})", e.message, e.code))
    }
}

fn ok(id: &Value, result: Value) -> Response {
    axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

/// Whether `host` can stand in a URL as it is: a host name or address and a port.
fn plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

async fn card(
    State(api): State<Arc<Api>>,
    Path(agent): Path<String>,
    headers: HeaderMap,
) -> Result<Response, AgentError> {
    let listed = api.registry.get(&agent, now_ms())?;
    let card = listed.card;
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| plain_host(h))
        .unwrap_or("127.0.0.1:8090");
    let skills: Vec<Value> = card
        .skills
        .iter()
        .map(|s| {
            let name = s.name.clone().unwrap_or_else(|| s.id.clone());
            json!({"id": s.id, "name": name, "description": name, "tags": s.tags})
        })
        .collect();
    let body = json!({
        "name": card.name,
        "description": card.description.unwrap_or_default(),
        "version": env!("CARGO_PKG_VERSION"),
        "supportedInterfaces": [{
            "url": format!("http://{host}/a2a/{}", card.name),
            "protocolBinding": "JSONRPC",
            "protocolVersion": VERSION,
        }],
        "capabilities": {"streaming": true, "pushNotifications": false},
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": ["text/plain", "application/json"],
        "skills": skills,
    });
    let mut body = body;
    if api.token.is_some() {
        body["securitySchemes"] =
            json!({"bearer": {"httpAuthSecurityScheme": {"scheme": "Bearer"}}});
        body["securityRequirements"] = json!([{"schemes": {"bearer": {"list": []}}}]);
    }
    let mut r = axum::Json(body).into_response();
    // Built from the request's Host: not for a shared cache to keep.
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(r)
}

async fn rpc(
    State(api): State<Arc<Api>>,
    Path(agent): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let bytes = match crate::http::read_body(body, api.max_body_bytes, api.body_timeout).await {
        Ok(bytes) => bytes,
        Err(e) => return e.into_response(),
    };
    // The JSON-RPC envelope as the MCP endpoint reads it; a notification (no id) is not an
    // A2A request.
    let (id, method, params) = match crate::mcp::decode(&bytes, None) {
        Ok(crate::mcp::Decoded::Request {
            id, method, params, ..
        }) => (id, method, params),
        Ok(crate::mcp::Decoded::Notification) => {
            let e = A2aError::new(
                -32600,
                "INVALID_REQUEST",
                "a2a_invalid_request",
                "a request has an id and a method".into(),
            );
            return e.answer(&Value::Null);
        }
        Err((_, id, e)) => {
            let (reason, counted) = if e.code() == -32700 {
                ("PARSE_ERROR", "a2a_parse_error")
            } else {
                ("INVALID_REQUEST", "a2a_invalid_request")
            };
            let e = A2aError::new(e.code(), reason, counted, e.message().to_string());
            return e.answer(&id);
        }
    };
    let method = method.as_str();
    let done = match method {
        "SendMessage" => send(&api, &agent, &params)
            .await
            .map(|task| ok(&id, json!({"task": task}))),
        "SendStreamingMessage" => match start(&api, &agent, &params).await {
            Ok(task) => follow(&api, task, &id, None).await,
            Err(e) => Err(e),
        },
        "GetTask" => match owned(&api, &agent, &params) {
            Ok(task) => snapshot(&api, &task, history_length(&params, "/historyLength"))
                .await
                .map(|t| ok(&id, t)),
            Err(e) => Err(e),
        },
        "CancelTask" => cancel(&api, &agent, &params)
            .await
            .map(|task| ok(&id, task)),
        "SubscribeToTask" => match owned(&api, &agent, &params) {
            Ok(task) if task.state.is_final() => Err(A2aError::unsupported(
                "task_finished",
                format!("task {} is in a terminal state", task.id),
            )),
            Ok(task) => follow(&api, task, &id, last_event_id(&headers)).await,
            Err(e) => Err(e),
        },
        other => Err(A2aError::new(
            -32601,
            "METHOD_NOT_FOUND",
            "a2a_unknown_method",
            format!("no method {other}"),
        )),
    };
    done.unwrap_or_else(|e| e.answer(&id))
}

fn last_event_id(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Task `params.id`, when it is `agent`'s.
fn owned(api: &Api, agent: &str, params: &Value) -> Result<Task, A2aError> {
    let id = params
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| A2aError::params("params.id names the task"))?;
    // The agent's current registration only: a name registered again is another agent.
    let current = api.registry.incarnation(agent);
    match api.tasks.get(id) {
        Ok(task) if task.agent == agent && current.as_deref() == Some(&task.agent_incarnation) => {
            Ok(task)
        }
        Ok(_) | Err(_) => Err(A2aError::not_found(id)),
    }
}

/// Starts what a message asks: a new task for `agent`, or the answer to the task it
/// names (which must wait for input).
async fn start(api: &Api, agent: &str, params: &Value) -> Result<Task, A2aError> {
    let message = params
        .get("message")
        .filter(|m| m.is_object())
        .ok_or_else(|| A2aError::params("params.message is the message to send"))?;
    if !message
        .get("parts")
        .and_then(Value::as_array)
        .is_some_and(|p| p.iter().all(Value::is_object))
    {
        return Err(A2aError::params("message.parts is a list of parts"));
    }
    for field in ["taskId", "contextId"] {
        if message.get(field).is_some_and(|v| !v.is_string()) {
            return Err(A2aError::params(format!("message.{field} is a string")));
        }
    }
    match message.get("taskId").and_then(Value::as_str) {
        Some(id) => {
            let task = owned(api, agent, &json!({"id": id}))?;
            if task.state.is_final() {
                return Err(A2aError::unsupported(
                    "task_finished",
                    format!("task {id} is in a terminal state"),
                ));
            }
            Ok(api
                .tasks
                .add(id, "message", None, message.clone(), false, now_ms())
                .await?)
        }
        None => Ok(api.create_task(agent, message.clone()).await?),
    }
}

/// `SendMessage`: the task once it ends or needs input (or when the longest wait passed),
/// at once with `configuration.returnImmediately`.
async fn send(api: &Api, agent: &str, params: &Value) -> Result<Value, A2aError> {
    let task = start(api, agent, params).await?;
    let at_once = params
        .pointer("/configuration/returnImmediately")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let task = if at_once {
        task
    } else {
        let longest = api.queues.limits().max_wait_ms.max(0) as u64;
        api.tasks
            .wait(
                &task.id,
                std::time::Duration::from_millis(longest),
                interrupted,
            )
            .await?
    };
    let history = history_length(params, "/configuration/historyLength");
    snapshot(api, &task, history).await
}

/// The `historyLength` a request asks for at `pointer`.
fn history_length(params: &Value, pointer: &str) -> Option<usize> {
    params
        .pointer(pointer)
        .and_then(Value::as_u64)
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// Whether a stream of the task ends here: it ended or waits for input.
fn interrupted(task: &Task) -> bool {
    task.state.is_final() || task.state == TaskState::InputRequired
}

async fn cancel(api: &Api, agent: &str, params: &Value) -> Result<Value, A2aError> {
    let task = owned(api, agent, params)?;
    if task.state.is_final() {
        return Err(A2aError::new(
            -32002,
            "TASK_NOT_CANCELABLE",
            "task_finished",
            format!("task {} is in a terminal state", task.id),
        ));
    }
    let task = api
        .tasks
        .add(
            &task.id,
            "status",
            Some(TaskState::Canceled),
            Value::Null,
            false,
            now_ms(),
        )
        .await?;
    snapshot(api, &task, None).await
}

fn state_name(s: TaskState) -> &'static str {
    match s {
        TaskState::Submitted => "TASK_STATE_SUBMITTED",
        TaskState::Working => "TASK_STATE_WORKING",
        TaskState::InputRequired => "TASK_STATE_INPUT_REQUIRED",
        TaskState::Completed => "TASK_STATE_COMPLETED",
        TaskState::Failed => "TASK_STATE_FAILED",
        TaskState::Canceled => "TASK_STATE_CANCELED",
    }
}

/// The parts of what an event carries: an A2A message's own, a text, or JSON data.
fn parts(data: &Value) -> Value {
    match data {
        Value::Object(o) if o.get("parts").is_some_and(Value::is_array) => Value::Array(
            o["parts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(part)
                .collect(),
        ),
        Value::String(s) => json!([{"text": s}]),
        Value::Null => json!([]),
        other => json!([{"data": other}]),
    }
}

/// A part as A2A has them (exactly one of `text`, `raw`, `url`, `data`, with `metadata`,
/// `filename` and `mediaType` beside it); anything else is carried as data, so no writer
/// can make a task unreadable to a strict client.
fn part(p: &Value) -> Value {
    let Value::Object(o) = p else {
        return json!({"data": p});
    };
    let kinds = ["text", "raw", "url", "data"]
        .iter()
        .filter(|k| o.contains_key(**k))
        .count();
    let known = o.keys().all(|k| {
        [
            "text",
            "raw",
            "url",
            "data",
            "metadata",
            "filename",
            "mediaType",
        ]
        .contains(&k.as_str())
    });
    let typed = o.get("text").is_none_or(Value::is_string)
        && o.get("raw").is_none_or(Value::is_string)
        && o.get("url").is_none_or(Value::is_string);
    if kinds == 1 && known && typed {
        p.clone()
    } else {
        json!({"data": p})
    }
}

/// The context of a task: its request's `contextId`, or the task's id.
fn context_of(events: &[Numbered], task: &str) -> String {
    events
        .first()
        .and_then(|e| e.event.data.get("contextId"))
        .and_then(Value::as_str)
        .map_or_else(|| task.to_string(), str::to_string)
}

/// A task event as an A2A message (from the agent, or from the requester).
fn message(e: &Numbered, task: &str, context: &str) -> Value {
    let id = e
        .event
        .data
        .get("messageId")
        .and_then(Value::as_str)
        .map_or_else(|| format!("{task}-{}", e.id), str::to_string);
    let role = if e.event.by == "requester" {
        "ROLE_USER"
    } else {
        "ROLE_AGENT"
    };
    json!({"messageId": id, "role": role, "parts": parts(&e.event.data),
           "taskId": task, "contextId": context})
}

fn artifact(e: &Numbered) -> Value {
    json!({"artifactId": format!("a{}", e.id), "parts": parts(&e.event.data)})
}

fn status(state: TaskState, at_ms: i64, message: Option<Value>) -> Value {
    let mut s = json!({"state": state_name(state), "timestamp": rfc3339_ms(at_ms)});
    if let Some(m) = message {
        s["message"] = m;
    }
    s
}

/// The state a task is in after `e`, from `before`.
fn state_after(before: TaskState, e: &Numbered) -> TaskState {
    match (e.event.kind.as_str(), e.event.state, e.event.by.as_str()) {
        ("status", Some(s), _) => s,
        ("message", _, "requester") => TaskState::Working,
        ("artifact" | "message", _, _) if before == TaskState::Submitted => TaskState::Working,
        _ => before,
    }
}

/// The state task `task` was in right after its event `at`: from the last status at or
/// before it, the events after that status replayed.
async fn state_at(api: &Api, task: &Task, at: u64) -> Result<TaskState, A2aError> {
    let mut since = Vec::new();
    for &offset in task.events.iter().rev().filter(|&&o| o <= at) {
        let Some(e) = api.tasks.event_at(offset).await? else {
            continue;
        };
        let status = e.event.kind == "status" && e.event.state.is_some();
        since.push(e);
        if status {
            break;
        }
    }
    Ok(since.iter().rev().fold(TaskState::Submitted, state_after))
}

/// The A2A task of `task`: its newest artifacts and history within [`SNAPSHOT_BYTES`]
/// (and `history` messages, [`HISTORY`] when the request names none), read newest first;
/// `metadata.truncated` says older ones were left out.
async fn snapshot(api: &Api, task: &Task, history: Option<usize>) -> Result<Value, A2aError> {
    let first = match task.events.first() {
        Some(&o) => api.tasks.event_at(o).await?,
        None => None,
    };
    let context = context_of(first.as_slice(), &task.id);
    let max_history = history.unwrap_or(HISTORY);
    let (mut artifacts, mut messages, mut said) = (Vec::new(), Vec::new(), None);
    let (mut budget, mut truncated) = (SNAPSHOT_BYTES, false);
    for (i, &offset) in task.events.iter().enumerate().rev() {
        if budget == 0 {
            truncated = true;
            break;
        }
        let Some(e) = api.tasks.event_at(offset).await? else {
            continue;
        };
        let size = e.event.data.to_string().len();
        let (item, into_history) = match e.event.kind.as_str() {
            "artifact" => (artifact(&e), false),
            "message" => (message(&e, &task.id, &context), true),
            // The request: the task's first event.
            "status" if i == 0 && e.event.data.get("parts").is_some() => {
                (message(&e, &task.id, &context), true)
            }
            // A status that says something: the status's message, and part of the history.
            "status" if !e.event.data.is_null() && i > 0 => {
                let m = message(&e, &task.id, &context);
                if said.is_none() {
                    said = Some(m.clone());
                }
                (m, true)
            }
            _ => continue,
        };
        if size > budget || (into_history && messages.len() >= max_history) {
            truncated = true;
            continue;
        }
        budget -= size;
        if into_history {
            messages.push(item);
        } else {
            artifacts.push(item);
        }
    }
    artifacts.reverse();
    messages.reverse();
    Ok(json!({
        "id": task.id, "contextId": context,
        "status": status(task.state, task.updated_ms, said),
        "artifacts": artifacts, "history": messages,
        "metadata": {"agent": task.agent, "truncated": truncated},
    }))
}

/// An event of a task as an A2A stream update, in the state it left the task in.
fn update(e: &Numbered, state: TaskState, task: &str, context: &str) -> Value {
    match e.event.kind.as_str() {
        "artifact" => json!({"artifactUpdate": {
            "taskId": task, "contextId": context, "artifact": artifact(e),
            "append": false, "lastChunk": true,
        }}),
        kind => {
            let said =
                (kind == "message" || !e.event.data.is_null()).then(|| message(e, task, context));
            json!({"statusUpdate": {
                "taskId": task, "contextId": context,
                "status": status(state, e.event.at_ms, said),
            }})
        }
    }
}

fn frame(rpc: &Value, id: Option<u64>, result: Value) -> Bytes {
    let data = json!({"jsonrpc": "2.0", "id": rpc, "result": result});
    let id = id.map(|i| format!("id: {i}\n")).unwrap_or_default();
    Bytes::from(format!("{id}data: {data}\n\n"))
}

/// A stream of `task` (SSE): its snapshot then every update after it; or, resumed after
/// event `resume` (one of the task's), every update after that one. It ends once the task
/// ends or needs input, or after a while without an update (see [`task_stream`]).
async fn follow(
    api: &Arc<Api>,
    task: Task,
    rpc: &Value,
    resume: Option<u64>,
) -> Result<Response, A2aError> {
    let slot = api.topics.stream_slot()?;
    let first = match task.events.first() {
        Some(&o) => api.tasks.event_at(o).await?,
        None => None,
    };
    let context = context_of(first.as_slice(), &task.id);
    let (after, mut state, pending) = match resume {
        Some(r) => {
            if !task.events.contains(&r) {
                return Err(A2aError::params(format!(
                    "Last-Event-ID {r} is not an event of task {}",
                    task.id
                )));
            }
            (Some(r), state_at(api, &task, r).await?, VecDeque::new())
        }
        None => {
            // Updates after the events the snapshot was made of follow it.
            let now = api.tasks.get(&task.id)?;
            let body = snapshot(api, &now, None).await?;
            (
                now.events.last().copied(),
                now.state,
                VecDeque::from([frame(rpc, None, json!({"task": body}))]),
            )
        }
    };
    let (id, rpc) = (task.id.clone(), rpc.clone());
    let render = move |e: &Numbered| {
        state = state_after(state, e);
        frame(&rpc, Some(e.id), update(e, state, &id, &context))
    };
    let stream = task_stream(
        api.clone(),
        task.id,
        after,
        pending,
        interrupted,
        render,
        slot,
    );
    Ok(crate::topics::sse_response(stream))
}

/// What a task stream holds between two chunks.
struct Follow<R> {
    api: Arc<Api>,
    task: String,
    after: Option<u64>,
    pending: VecDeque<Bytes>,
    ends: fn(&Task) -> bool,
    render: R,
    done: bool,
    /// Keepalives sent since the last update.
    idle: u32,
    _slot: StreamSlot,
}

/// The chunks of a Server-Sent Events stream of task `task`: `pending` first, then each
/// event after `after` as `render` makes it, a comment every 15 s while none comes; it ends
/// once `ends` holds for the task and every event is sent, after 5 minutes without an
/// event (the client resumes), or when the node stops.
pub(crate) fn task_stream<R>(
    api: Arc<Api>,
    task: String,
    after: Option<u64>,
    pending: VecDeque<Bytes>,
    ends: fn(&Task) -> bool,
    render: R,
    slot: StreamSlot,
) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static
where
    R: FnMut(&Numbered) -> Bytes + Send + 'static,
{
    let follow = Follow {
        api,
        task,
        after,
        pending,
        ends,
        render,
        done: false,
        idle: 0,
        _slot: slot,
    };
    futures_util::stream::unfold(follow, |mut f| async move {
        loop {
            if let Some(chunk) = f.pending.pop_front() {
                return Some((Ok(chunk), f));
            }
            if f.done || f.api.shutdown.is_set() {
                return None;
            }
            let (after, ends) = (f.after, f.ends);
            let fresh = |t: &Task| {
                ends(t)
                    || t.events
                        .last()
                        .is_some_and(|&o| after.is_none_or(|a| o > a))
            };
            let task = match f.api.tasks.wait(&f.task, KEEPALIVE, fresh).await {
                Ok(t) => t,
                Err(_) => return None,
            };
            let Ok((_, events)) = f.api.tasks.events(&f.task, after, STREAM_BATCH).await else {
                return None;
            };
            if events.is_empty() {
                f.idle += 1;
                if ends(&task) || f.idle > IDLE_KEEPALIVES {
                    f.done = true;
                } else {
                    f.pending.push_back(Bytes::from_static(b": keepalive\n\n"));
                }
                continue;
            }
            f.idle = 0;
            f.api.metrics.events_streamed.inc_by(events.len() as u64);
            for e in &events {
                let chunk = (f.render)(e);
                f.pending.push_back(chunk);
                f.after = Some(e.id);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: u64, kind: &str, state: Option<TaskState>, by: &str) -> Numbered {
        Numbered {
            id,
            event: crate::tasks::TaskEvent {
                task: "t".into(),
                kind: kind.into(),
                state,
                by: by.into(),
                data: Value::Null,
                at_ms: 0,
            },
        }
    }

    #[test]
    fn states_replay_as_the_tasks_do() {
        let events = [
            event(1, "status", Some(TaskState::Submitted), "requester"),
            event(2, "artifact", None, "agent"),
            event(3, "status", Some(TaskState::InputRequired), "agent"),
            event(4, "message", None, "agent"),
            event(5, "message", None, "requester"),
            event(6, "status", Some(TaskState::Completed), "agent"),
        ];
        let mut states = Vec::new();
        events.iter().fold(TaskState::Submitted, |s, e| {
            let next = state_after(s, e);
            states.push(next);
            next
        });
        use TaskState::*;
        assert_eq!(
            states,
            [
                Submitted,
                Working,
                InputRequired,
                InputRequired,
                Working,
                Completed
            ]
        );
    }

    #[test]
    fn parts_keep_what_they_carry() {
        assert_eq!(parts(&json!("hi")), json!([{"text": "hi"}]));
        assert_eq!(parts(&json!({"n": 1})), json!([{"data": {"n": 1}}]));
        let m = json!({"messageId": "m", "parts": [{"text": "a"}]});
        assert_eq!(parts(&m), json!([{"text": "a"}]));
        // What is not an A2A part is carried as data.
        let odd = json!({"parts": [{"foo": 1}, 2, {"text": 3}, {"text": "t", "data": 1}]});
        assert_eq!(
            parts(&odd),
            json!([{"data": {"foo": 1}}, {"data": 2}, {"data": {"text": 3}},
                   {"data": {"text": "t", "data": 1}}])
        );
        assert!(plain_host("127.0.0.1:8090") && plain_host("[::1]:80"));
        assert!(!plain_host("evil.com/x?") && !plain_host(""));
    }
}
