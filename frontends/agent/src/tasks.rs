//! Tasks (request/reply, A2A-shaped): a requester creates a task for an agent, which
//! lands in that agent's mailbox; the agent appends status updates, artifacts and
//! messages to the task's events; the requester waits for it, or streams its events with
//! resume, and answers it when it asks for input.
//!
//! Every task's events are records of one journal stream, `agent.tasks`, keyed by the
//! task's id; an event's id is its offset there, so ids grow and a reader resumes after
//! the last one it saw. A task's state and the offsets of its events are kept in the
//! node's state store, written before the answer: a restart loses nothing.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use strata_batch::BatchBuilder;
use strata_frontend::seams::{Partition, StateOp, Storage};
use tokio::sync::Notify;

use crate::error::AgentError;
use crate::space::Space;
use crate::storage::{StorageClass, ensure_stream};

/// The stream every task's events are in.
pub const TASKS_STREAM: &str = "agent.tasks";

/// A task's state, as A2A names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Created, not picked up yet.
    Submitted,
    /// Being worked on.
    Working,
    /// Waiting for the requester's answer.
    InputRequired,
    /// Done.
    Completed,
    /// Given up by its agent.
    Failed,
    /// Stopped by its requester.
    Canceled,
}

impl State {
    /// Whether nothing more happens to a task in this state.
    pub fn is_final(self) -> bool {
        matches!(self, State::Completed | State::Failed | State::Canceled)
    }
}

/// A task as kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Task {
    /// Its id.
    pub id: String,
    /// The agent it is for.
    pub agent: String,
    /// The registration of that agent it is for.
    #[serde(default)]
    pub agent_incarnation: String,
    /// Where it is.
    pub state: State,
    /// When it was created, milliseconds since the epoch.
    pub created_ms: i64,
    /// When it last changed.
    pub updated_ms: i64,
    /// The ids (offsets in [`TASKS_STREAM`]) of its events, in order.
    #[serde(default)]
    pub events: Vec<u64>,
}

impl Task {
    /// The task as the API answers it: the registration it is for stays inside.
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "agent": self.agent,
            "state": self.state,
            "created_ms": self.created_ms,
            "updated_ms": self.updated_ms,
            "events": self.events,
        })
    }
}

/// One event of a task, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskEvent {
    /// The task.
    pub task: String,
    /// `status`, `artifact` or `message`.
    pub kind: String,
    /// The state it set, for a status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
    /// Who appended it: `requester` or `agent`.
    pub by: String,
    /// What it carries.
    #[serde(default)]
    pub data: serde_json::Value,
    /// When, milliseconds since the epoch.
    pub at_ms: i64,
}

/// An event read back, with its id.
#[derive(Debug, Clone, Serialize)]
pub struct Numbered {
    /// Its id: its offset in [`TASKS_STREAM`].
    pub id: u64,
    /// The event.
    #[serde(flatten)]
    pub event: TaskEvent,
}

fn key(id: &str) -> Vec<u8> {
    format!("t/{id}").into_bytes()
}

/// The tasks of a node.
#[derive(Debug)]
pub struct Tasks {
    storage: Storage,
    space: Space,
    events: tokio::sync::OnceCell<Arc<dyn Partition>>,
    /// Tasks read since the start, by id (the store has them all).
    cache: Mutex<HashMap<String, Task>>,
    /// One lock for changes, so two appends to one task keep its events in order.
    changing: tokio::sync::Mutex<()>,
    /// Woken on every change of any task.
    changed: Notify,
    max_tasks: usize,
    max_events: usize,
    count: Mutex<Option<usize>>,
    /// Finished tasks by when they finished (built on the first sweep).
    finished: Mutex<Option<std::collections::BTreeSet<(i64, String)>>>,
    /// The class of the tasks' event stream.
    class: StorageClass,
}

/// Most finished tasks one sweep deletes.
const EXPIRED_PER_SWEEP: usize = 1000;

/// Most events one task keeps.
pub const MAX_EVENTS: usize = 10_000;

impl Tasks {
    /// Tasks in `storage` and `space`, at most `max_tasks` of them, their events in a
    /// stream of class `class` (`local` for `memory`: a task's state outlives a restart,
    /// so its events must too).
    pub fn new(storage: Storage, space: Space, max_tasks: usize, class: StorageClass) -> Self {
        let class = match class {
            StorageClass::Memory => StorageClass::Local,
            other => other,
        };
        Tasks {
            storage,
            space,
            events: tokio::sync::OnceCell::new(),
            cache: Mutex::new(HashMap::new()),
            changing: tokio::sync::Mutex::new(()),
            changed: Notify::new(),
            max_tasks,
            max_events: MAX_EVENTS,
            count: Mutex::new(None),
            finished: Mutex::new(None),
            class,
        }
    }

    async fn partition(&self) -> Result<Arc<dyn Partition>, AgentError> {
        self.events
            .get_or_try_init(|| async {
                ensure_stream(&self.storage, TASKS_STREAM, 1, self.class).await?;
                self.storage
                    .partition(TASKS_STREAM, 0)
                    .await
                    .map_err(AgentError::from)
            })
            .await
            .cloned()
    }

    /// Tasks kept on this node whose id comes after `after`, by id, at most `max`, those
    /// `keep` accepts.
    pub fn list(
        &self,
        after: Option<&str>,
        max: usize,
        keep: impl Fn(&Task) -> bool,
    ) -> Result<Vec<Task>, AgentError> {
        let pairs = self.space.scan_prefix(b"t/")?;
        Ok(pairs
            .iter()
            .filter_map(|(_, v)| serde_json::from_slice::<Task>(v).ok())
            .filter(|t| after.is_none_or(|a| t.id.as_str() > a))
            .filter(|t| keep(t))
            .take(max)
            .collect())
    }

    /// Task `id`.
    pub fn get(&self, id: &str) -> Result<Task, AgentError> {
        if let Some(t) = self.cache.lock().get(id) {
            return Ok(t.clone());
        }
        let bytes = self
            .space
            .get(&key(id))?
            .ok_or_else(|| AgentError::not_found("unknown_task", format!("no task {id}")))?;
        let task: Task = serde_json::from_slice(&bytes)
            .map_err(|e| AgentError::unavailable(format!("task {id} is unreadable: {e}")))?;
        self.cache.lock().insert(id.to_string(), task.clone());
        Ok(task)
    }

    async fn keep(&self, task: &Task) -> Result<(), AgentError> {
        let bytes = serde_json::to_vec(task).unwrap_or_default();
        self.space.put(key(&task.id), bytes).await?;
        self.cache.lock().insert(task.id.clone(), task.clone());
        if task.state.is_final()
            && let Some(finished) = self.finished.lock().as_mut()
        {
            finished.insert((task.updated_ms, task.id.clone()));
        }
        Ok(())
    }

    /// Deletes the tasks that finished more than `retention_ms` before `now_ms` (their
    /// state; their events stay in the stream for its retention): how many.
    pub async fn expire_finished(
        &self,
        now_ms: i64,
        retention_ms: i64,
    ) -> Result<usize, AgentError> {
        let expired = self.due_to_expire(now_ms, retention_ms)?;
        if expired.is_empty() {
            return Ok(0);
        }
        let ops: Vec<StateOp> = expired
            .iter()
            .map(|(_, id)| StateOp::Delete(key(id)))
            .collect();
        if let Err(e) = self.space.write(ops).await {
            // Kept for the next sweep.
            if let Some(finished) = self.finished.lock().as_mut() {
                finished.extend(expired);
            }
            return Err(e);
        }
        let mut cache = self.cache.lock();
        for (_, id) in &expired {
            cache.remove(id);
        }
        drop(cache);
        if let Some(n) = self.count.lock().as_mut() {
            *n = n.saturating_sub(expired.len());
        }
        Ok(expired.len())
    }

    /// The finished tasks past their retention, at most [`EXPIRED_PER_SWEEP`], taken off
    /// the list of finished ones.
    fn due_to_expire(
        &self,
        now_ms: i64,
        retention_ms: i64,
    ) -> Result<Vec<(i64, String)>, AgentError> {
        let mut finished = self.finished.lock();
        if finished.is_none() {
            // Built once from the store, then kept up to date as tasks finish.
            let pairs = self.space.scan_prefix(b"t/")?;
            *finished = Some(
                pairs
                    .iter()
                    .filter_map(|(_, v)| serde_json::from_slice::<Task>(v).ok())
                    .filter(|t| t.state.is_final())
                    .map(|t| (t.updated_ms, t.id))
                    .collect(),
            );
        }
        let Some(finished) = finished.as_mut() else {
            return Ok(Vec::new());
        };
        // At most this many a sweep, in one write: a backlog (a node upgraded with many
        // old tasks) goes over several sweeps instead of holding the runtime up.
        let mut expired = Vec::new();
        while expired.len() < EXPIRED_PER_SWEEP
            && let Some(first) = finished.first()
            && first.0.saturating_add(retention_ms) <= now_ms
        {
            expired.extend(finished.pop_first());
        }
        Ok(expired)
    }

    /// How many tasks the store holds (counted once, then kept up to date).
    fn count(&self) -> Result<usize, AgentError> {
        let mut count = self.count.lock();
        if let Some(n) = *count {
            return Ok(n);
        }
        let n = self.space.scan_prefix(b"t/")?.len();
        *count = Some(n);
        Ok(n)
    }

    async fn append(&self, event: &TaskEvent) -> Result<u64, AgentError> {
        let value = serde_json::to_vec(event)
            .map_err(|e| AgentError::bad_request("bad_body", e.to_string()))?;
        let mut batch = BatchBuilder::new();
        batch.push(event.at_ms, Some(event.task.as_bytes()), Some(&value), &[]);
        let batch = batch
            .build()
            .map_err(|e| AgentError::bad_request("bad_body", e.to_string()))?;
        let appended = self.partition().await?.append(batch).await?;
        Ok(appended.base_offset)
    }

    /// Creates a task for `agent` with `input`: the task (its first event, `submitted`,
    /// carries the input). The caller puts it in the agent's mailbox.
    pub async fn create(
        &self,
        agent: &str,
        agent_incarnation: &str,
        input: serde_json::Value,
        now_ms: i64,
    ) -> Result<Task, AgentError> {
        let _one = self.changing.lock().await;
        if self.count()? >= self.max_tasks {
            return Err(AgentError::full(
                "max_tasks",
                format!("this node keeps at most {} tasks", self.max_tasks),
            ));
        }
        let id = format!("{:032x}", rand::random::<u128>());
        let event = TaskEvent {
            task: id.clone(),
            kind: "status".into(),
            state: Some(State::Submitted),
            by: "requester".into(),
            data: input,
            at_ms: now_ms,
        };
        let offset = self.append(&event).await?;
        let task = Task {
            id,
            agent: agent.to_string(),
            agent_incarnation: agent_incarnation.to_string(),
            state: State::Submitted,
            created_ms: now_ms,
            updated_ms: now_ms,
            events: vec![offset],
        };
        self.keep(&task).await?;
        if let Some(n) = self.count.lock().as_mut() {
            *n += 1;
        }
        self.changed.notify_waiters();
        Ok(task)
    }

    /// Appends an event to task `id`: by its agent (`by_agent`) any kind, by its
    /// requester a `message` (its answer when input is required, which sets the task
    /// working again) or a cancel (`status` `canceled`). The task after it.
    pub async fn add(
        &self,
        id: &str,
        kind: &str,
        state: Option<State>,
        data: serde_json::Value,
        by_agent: bool,
        now_ms: i64,
    ) -> Result<Task, AgentError> {
        let _one = self.changing.lock().await;
        let mut task = self.get(id)?;
        if task.state.is_final() {
            return Err(AgentError {
                status: axum::http::StatusCode::CONFLICT,
                code: "task_finished",
                message: format!("task {id} is {:?} already", task.state),
                retry_after: None,
            });
        }
        if task.events.len() >= self.max_events {
            return Err(AgentError::full(
                "max_task_events",
                format!("a task keeps at most {} events", self.max_events),
            ));
        }
        let next = match (kind, state, by_agent) {
            ("status", Some(s), true) if s != State::Submitted => s,
            ("status", Some(State::Canceled), false) => State::Canceled,
            ("artifact" | "message", None, true) => task.state.max_working(),
            ("message", None, false) if task.state == State::InputRequired => State::Working,
            ("message", None, false) => {
                return Err(AgentError {
                    status: axum::http::StatusCode::CONFLICT,
                    code: "no_input_required",
                    message: format!("task {id} does not wait for input"),
                    retry_after: None,
                });
            }
            _ => {
                return Err(AgentError::bad_request(
                    "bad_event",
                    "an agent appends a status (with a state), an artifact or a message; a \
                     requester a message or a cancel",
                ));
            }
        };
        let event = TaskEvent {
            task: id.to_string(),
            kind: kind.to_string(),
            state,
            by: if by_agent { "agent" } else { "requester" }.into(),
            data,
            at_ms: now_ms,
        };
        let offset = self.append(&event).await?;
        task.events.push(offset);
        task.state = next;
        task.updated_ms = now_ms;
        self.keep(&task).await?;
        self.changed.notify_waiters();
        Ok(task)
    }

    /// Fails task `id` on the node's behalf (it could not be delivered): `why` is the
    /// failing status's data.
    pub async fn abandon(
        &self,
        id: &str,
        why: serde_json::Value,
        now_ms: i64,
    ) -> Result<Task, AgentError> {
        let _one = self.changing.lock().await;
        let mut task = self.get(id)?;
        if task.state.is_final() {
            // Canceled (or otherwise ended) meanwhile: it stays as it ended.
            return Ok(task);
        }
        let event = TaskEvent {
            task: id.to_string(),
            kind: "status".into(),
            state: Some(State::Failed),
            by: "node".into(),
            data: why,
            at_ms: now_ms,
        };
        let offset = self.append(&event).await?;
        task.events.push(offset);
        task.state = State::Failed;
        task.updated_ms = now_ms;
        self.keep(&task).await?;
        self.changed.notify_waiters();
        Ok(task)
    }

    /// Events of task `id` after event `after` (all with `None`), at most `max`.
    pub async fn events(
        &self,
        id: &str,
        after: Option<u64>,
        max: usize,
    ) -> Result<(Task, Vec<Numbered>), AgentError> {
        let task = self.get(id)?;
        let mut out = Vec::new();
        for &offset in task
            .events
            .iter()
            .filter(|&&o| after.is_none_or(|a| o > a))
            .take(max)
        {
            out.extend(self.event_at(offset).await?);
        }
        Ok((task, out))
    }

    /// The event at `offset` of the tasks' stream (`None`: not a task event, or gone).
    pub async fn event_at(&self, offset: u64) -> Result<Option<Numbered>, AgentError> {
        let batches = self.partition().await?.read(offset, 64 * 1024).await?;
        Ok(batches
            .iter()
            .filter_map(|b| b.records().ok())
            .flatten()
            .filter_map(Result::ok)
            .find(|r| r.offset == offset)
            .and_then(|r| serde_json::from_slice::<TaskEvent>(r.value.as_deref()?).ok())
            .map(|event| Numbered { id: offset, event }))
    }

    /// Waits until `ready` holds for task `id`, at most `wait`: the task then.
    pub async fn wait(
        &self,
        id: &str,
        wait: std::time::Duration,
        ready: impl Fn(&Task) -> bool,
    ) -> Result<Task, AgentError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let woken = self.changed.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let task = self.get(id)?;
            if ready(&task) || tokio::time::Instant::now() >= deadline {
                return Ok(task);
            }
            tokio::select! {
                _ = &mut woken => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

impl State {
    /// The state an artifact or message from the agent leaves the task in: working,
    /// unless it was waiting for input (which stays until answered).
    fn max_working(self) -> State {
        match self {
            State::Submitted => State::Working,
            s => s,
        }
    }
}
