//! `/api/v1/agent/...`, the agent frontend's part of the node's admin API: agents with
//! their mailboxes, queues (mailboxes and dead-letter queues included) and tasks. Read
//! only; behind the admin API's own token, not the agent API's.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use strata_batch::now_ms;
use strata_frontend::admin::extract::{ApiPath, ApiQuery};
use strata_frontend::admin::http::{AdminApi, ApiError, ApiResult, ErrorBody};
use strata_frontend::admin::{DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::error::AgentError;
use crate::http::Api;
use crate::registry::Search;

/// A cloneable handle on the running agent frontend for the admin API: the API this node
/// serves (in a cluster, while it serves it).
#[derive(Debug, Clone, Default)]
pub struct AgentAdmin {
    api: Arc<parking_lot::RwLock<Option<Arc<Api>>>>,
    clustered: Arc<std::sync::atomic::AtomicBool>,
}

impl AgentAdmin {
    /// Connects the handle to the API this node serves.
    pub fn attach(&self, api: Arc<Api>) {
        *self.api.write() = Some(api);
    }

    /// The node is in a cluster: another node may serve the agent API.
    pub(crate) fn clustered(&self) {
        self.clustered
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// This node no longer serves the API (another node of the cluster does).
    pub(crate) fn detach(&self) {
        *self.api.write() = None;
    }

    fn api(&self) -> Result<Arc<Api>, ApiError> {
        self.api.read().clone().ok_or_else(|| {
            let why = if self.clustered.load(std::sync::atomic::Ordering::Relaxed) {
                "this node does not serve the agent API now: ask the node leading agent.state \
                 (GET /api/v1/cluster/leaders)"
            } else {
                "the agent frontend is still starting"
            };
            ApiError::from(strata_frontend::admin::AdminError::Unavailable(why.into()))
        })
    }
}

/// An agent, with its mailbox.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentRow {
    /// Its name.
    pub name: String,
    /// Whether its last heartbeat is within its lease.
    pub online: bool,
    /// Its last heartbeat, milliseconds since the epoch.
    pub seen_ms: i64,
    /// The ids of its skills.
    pub skills: Vec<String>,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its mailbox's queue.
    pub mailbox: Option<String>,
    /// Messages not done in its mailbox, when the mailbox is open on this node.
    pub mailbox_depth: Option<u64>,
}

/// A queue: a public queue, a mailbox or a dead-letter queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueRow {
    /// Its name (`_mbx-<agent>-<registration>` for a mailbox, `_dlq-<queue>` for a
    /// dead-letter queue).
    pub name: String,
    /// `queue`, `mailbox` or `dead-letter`.
    pub kind: String,
    /// Its storage class.
    pub storage: Option<String>,
    /// Whether it is open on this node (its depth is known).
    pub open: bool,
    /// Messages not done, when open.
    pub depth: Option<u64>,
    /// Messages on a lease, when open.
    pub in_flight: Option<usize>,
}

/// A task.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskRow {
    /// Its id.
    pub id: String,
    /// The agent it is for.
    pub agent: String,
    /// Its state.
    pub state: String,
    /// When it was created, milliseconds since the epoch.
    pub created_ms: i64,
    /// When it last changed.
    pub updated_ms: i64,
    /// How many events it has.
    pub events: usize,
}

/// A page of rows and the cursor of the next one.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    /// The rows.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// Filters and paging of the agents.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AgentQuery {
    /// Only names starting with this.
    pub prefix: Option<String>,
    /// Only agents online (true) or offline (false).
    pub online: Option<bool>,
    /// Most rows (100, at most 1000).
    pub limit: Option<usize>,
    /// The name after which to go on.
    pub cursor: Option<String>,
}

/// Filters and paging of the queues.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueueQuery {
    /// Only names starting with this.
    pub prefix: Option<String>,
    /// Only `queue`, `mailbox` or `dead-letter`.
    pub kind: Option<String>,
    /// Most rows (100, at most 1000).
    pub limit: Option<usize>,
    /// The name after which to go on.
    pub cursor: Option<String>,
}

/// Filters and paging of the tasks.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskQuery {
    /// Only tasks in this state.
    pub state: Option<String>,
    /// Only tasks for this agent.
    pub agent: Option<String>,
    /// Most rows (100, at most 1000).
    pub limit: Option<usize>,
    /// The id after which to go on.
    pub cursor: Option<String>,
}

fn limit(asked: Option<usize>) -> Result<usize, ApiError> {
    match asked {
        None => Ok(DEFAULT_PAGE_LIMIT),
        Some(n) if (1..=MAX_PAGE_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::bad_request(format!(
            "limit is 1 to {MAX_PAGE_LIMIT}"
        ))),
    }
}

fn agent_error(e: AgentError) -> ApiError {
    ApiError::new(e.status, e.code, e.message)
}

/// The rows past `cursor`, at most `limit`, and the next cursor.
fn page<T>(rows: Vec<T>, limit: usize, key: impl Fn(&T) -> String) -> Page<T> {
    let more = rows.len() > limit;
    let items: Vec<T> = rows.into_iter().take(limit).collect();
    let next_cursor = more.then(|| items.last().map(&key)).flatten();
    Page { items, next_cursor }
}

fn kind_of(name: &str) -> &'static str {
    if name.starts_with("_mbx-") {
        "mailbox"
    } else if name.starts_with("_dlq-") {
        "dead-letter"
    } else {
        "queue"
    }
}

#[derive(OpenApi)]
#[openapi(
    paths(agents, agent, queues, queue, tasks, task),
    components(schemas(AgentRow, QueueRow, TaskRow)),
    tags((name = "agent", description = "The agent frontend"))
)]
struct Doc;

/// The routes under `/api/v1/agent` and their document.
pub fn api(admin: AgentAdmin) -> AdminApi {
    let router = Router::new()
        .route("/agents", get(agents))
        .route("/agents/{name}", get(agent))
        .route("/queues", get(queues))
        .route("/queues/{name}", get(queue))
        .route("/tasks", get(tasks))
        .route("/tasks/{id}", get(task))
        .with_state(admin);
    AdminApi {
        router,
        openapi: Doc::openapi(),
    }
}

async fn agent_row(api: &Api, listed: crate::registry::Listed) -> AgentRow {
    let mailbox = api
        .registry
        .incarnation(&listed.card.name)
        .map(|inc| format!("_mbx-{}-{inc}", listed.card.name));
    let mailbox_depth = match &mailbox {
        Some(q) if api.queues.is_open(q) => api.queues.depth(q).await.ok().map(|(d, _)| d),
        _ => None,
    };
    AgentRow {
        skills: listed.card.skills.iter().map(|s| s.id.clone()).collect(),
        tags: listed.card.tags.clone(),
        name: listed.card.name,
        online: listed.online,
        seen_ms: listed.seen_ms,
        mailbox,
        mailbox_depth,
    }
}

/// Registered agents, by name, with their mailboxes.
#[utoipa::path(get, path = "/api/v1/agent/agents", tag = "agent", params(AgentQuery),
    responses(
        (status = 200, description = "A page of agents", body = Page<AgentRow>),
        (status = 400, description = "Bad limit", body = ErrorBody),
        (status = 404, description = "The agent frontend is not enabled", body = ErrorBody),
        (status = 503, description = "The agent frontend is still starting", body = ErrorBody)))]
async fn agents(
    State(s): State<AgentAdmin>,
    ApiQuery(q): ApiQuery<AgentQuery>,
) -> ApiResult<Page<AgentRow>> {
    let api = &*s.api()?;
    let limit = limit(q.limit)?;
    let search = Search {
        online: q.online == Some(true),
        ..Search::default()
    };
    let mut rows = Vec::new();
    for listed in api.registry.search(&search, now_ms(), usize::MAX) {
        let name = &listed.card.name;
        if q.prefix
            .as_ref()
            .is_some_and(|p| !name.starts_with(p.as_str()))
            || q.cursor
                .as_ref()
                .is_some_and(|c| name.as_str() <= c.as_str())
            || (q.online == Some(false) && listed.online)
        {
            continue;
        }
        rows.push(agent_row(api, listed).await);
        if rows.len() > limit {
            break;
        }
    }
    Ok(Json(page(rows, limit, |r| r.name.clone())))
}

/// One agent, with its mailbox.
#[utoipa::path(get, path = "/api/v1/agent/agents/{name}", tag = "agent",
    params(("name" = String, Path, description = "Agent name")),
    responses(
        (status = 200, description = "The agent", body = AgentRow),
        (status = 404, description = "No such agent", body = ErrorBody),
        (status = 503, description = "The agent frontend is still starting", body = ErrorBody)))]
async fn agent(State(s): State<AgentAdmin>, ApiPath(name): ApiPath<String>) -> ApiResult<AgentRow> {
    let api = &*s.api()?;
    let listed = api.registry.get(&name, now_ms()).map_err(agent_error)?;
    Ok(Json(agent_row(api, listed).await))
}

async fn queue_row(api: &Api, name: String, storage: Option<String>) -> QueueRow {
    let open = api.queues.is_open(&name);
    let depth = match open {
        true => api.queues.depth(&name).await.ok(),
        false => None,
    };
    QueueRow {
        kind: kind_of(&name).to_string(),
        storage,
        open,
        depth: depth.map(|(d, _)| d),
        in_flight: depth.map(|(_, f)| f),
        name,
    }
}

/// Queues, mailboxes and dead-letter queues, by name.
#[utoipa::path(get, path = "/api/v1/agent/queues", tag = "agent", params(QueueQuery),
    responses(
        (status = 200, description = "A page of queues", body = Page<QueueRow>),
        (status = 400, description = "Bad limit", body = ErrorBody),
        (status = 404, description = "The agent frontend is not enabled", body = ErrorBody),
        (status = 503, description = "The agent frontend is still starting", body = ErrorBody)))]
async fn queues(
    State(s): State<AgentAdmin>,
    ApiQuery(q): ApiQuery<QueueQuery>,
) -> ApiResult<Page<QueueRow>> {
    let api = &*s.api()?;
    let limit = limit(q.limit)?;
    let mut named: Vec<(String, Option<String>)> = api
        .queues
        .catalog_queues()
        .into_iter()
        .filter(|(name, _)| {
            q.prefix
                .as_ref()
                .is_none_or(|p| name.starts_with(p.as_str()))
                && q.kind.as_ref().is_none_or(|k| kind_of(name) == k)
                && q.cursor.as_ref().is_none_or(|c| name.as_str() > c.as_str())
        })
        .collect();
    named.sort();
    named.truncate(limit + 1);
    let mut rows = Vec::with_capacity(named.len());
    for (name, storage) in named {
        rows.push(queue_row(api, name, storage).await);
    }
    Ok(Json(page(rows, limit, |r| r.name.clone())))
}

/// One queue.
#[utoipa::path(get, path = "/api/v1/agent/queues/{name}", tag = "agent",
    params(("name" = String, Path, description = "Queue name")),
    responses(
        (status = 200, description = "The queue", body = QueueRow),
        (status = 404, description = "No such queue", body = ErrorBody),
        (status = 503, description = "The agent frontend is still starting", body = ErrorBody)))]
async fn queue(State(s): State<AgentAdmin>, ApiPath(name): ApiPath<String>) -> ApiResult<QueueRow> {
    let api = &*s.api()?;
    let info = api
        .queues
        .catalog_queues()
        .into_iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| ApiError::not_found(format!("no queue {name}")))?;
    Ok(Json(queue_row(api, info.0, info.1).await))
}

fn task_row(t: crate::tasks::Task) -> TaskRow {
    TaskRow {
        state: serde_json::to_value(t.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        events: t.events.len(),
        id: t.id,
        agent: t.agent,
        created_ms: t.created_ms,
        updated_ms: t.updated_ms,
    }
}

/// Tasks, by id.
#[utoipa::path(get, path = "/api/v1/agent/tasks", tag = "agent", params(TaskQuery),
    responses(
        (status = 200, description = "A page of tasks", body = Page<TaskRow>),
        (status = 400, description = "Bad limit", body = ErrorBody),
        (status = 404, description = "The agent frontend is not enabled", body = ErrorBody),
        (status = 503, description = "The agent frontend is still starting", body = ErrorBody)))]
async fn tasks(
    State(s): State<AgentAdmin>,
    ApiQuery(q): ApiQuery<TaskQuery>,
) -> ApiResult<Page<TaskRow>> {
    let api = &*s.api()?;
    let limit = limit(q.limit)?;
    let listed = api
        .tasks
        .list(q.cursor.as_deref(), limit + 1, |t| {
            q.agent.as_ref().is_none_or(|a| t.agent == *a)
                && q.state.as_ref().is_none_or(|st| {
                    serde_json::to_value(t.state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        == Some(st.clone())
                })
        })
        .map_err(agent_error)?;
    let rows = listed.into_iter().map(task_row).collect();
    Ok(Json(page(rows, limit, |r| r.id.clone())))
}

/// One task.
#[utoipa::path(get, path = "/api/v1/agent/tasks/{id}", tag = "agent",
    params(("id" = String, Path, description = "Task id")),
    responses(
        (status = 200, description = "The task", body = TaskRow),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 503, description = "The agent frontend is still starting", body = ErrorBody)))]
async fn task(State(s): State<AgentAdmin>, ApiPath(id): ApiPath<String>) -> ApiResult<TaskRow> {
    let api = &*s.api()?;
    Ok(Json(task_row(api.tasks.get(&id).map_err(agent_error)?)))
}
