//! What the API sends and answers, with its field names (frontends/agent/openapi.json,
//! docs/agent.md). Unknown fields in answers are ignored, so a newer node's additions do not
//! break an older client.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a queue, mailbox or topic keeps its messages, chosen when it is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// In the node's memory: gone after a restart.
    Memory,
    /// Segment files on the node's disk.
    Local,
    /// Straight on object storage.
    Object,
}

/// A message's urgency when it is sent: a fetch hands out `High` first, `Low` last.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Level 0.
    High,
    /// Level 1, the default.
    #[default]
    Normal,
    /// Level 2.
    Low,
}

impl Priority {
    /// The priority of level `level` (a fetched [`Message::priority`]); `None` past 2.
    pub fn from_level(level: u8) -> Option<Priority> {
        match level {
            0 => Some(Priority::High),
            1 => Some(Priority::Normal),
            2 => Some(Priority::Low),
            _ => None,
        }
    }
}

/// What a create (`PUT /v1/queues/{q}`, `PUT /v1/topics/{t}`) answered.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Created {
    /// The queue's or topic's name.
    pub name: String,
    /// Its storage class.
    pub storage: Option<Storage>,
    /// Whether this call created it (201); `false` when it existed in that class (200).
    #[serde(skip)]
    pub created: bool,
}

/// How to send a message: all optional.
#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    pub(crate) priority: Option<Priority>,
    pub(crate) key: Option<String>,
    pub(crate) tags: Vec<String>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) delay: Option<Duration>,
    pub(crate) idempotency_key: Option<String>,
}

impl SendOptions {
    /// The defaults: normal priority, no key, tags, expiry or delay.
    pub fn new() -> Self {
        Self::default()
    }

    /// Its priority (`priority`).
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Its key (`key`, at most 256 bytes).
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// One more tag (`tags`, at most 16 of 64 bytes).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Not delivered after this long (`ttl_ms`); its sender then hears of it on topic
    /// `_failed-<queue>`.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Not delivered before this long (`delay_ms`, at most 7 days).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// The `Idempotency-Key` header: a send with a key seen in the last five minutes stores
    /// nothing and answers the first send's id.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// The body of a send.
#[derive(Serialize)]
pub(crate) struct SendBody<'a, B: ?Sized> {
    pub body: &'a B,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub tags: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<i64>,
}

/// What a send answered.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SendResult {
    /// The message's id (`<priority level>-<offset>`).
    pub id: String,
    /// Whether its idempotency key had stored it already (nothing was stored).
    pub duplicate: bool,
}

/// How to fetch: at most `max` messages, leased for `lease`, waiting up to `wait`.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub(crate) max: usize,
    pub(crate) lease: Option<Duration>,
    pub(crate) wait: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            max: 1,
            lease: None,
            wait: Duration::ZERO,
        }
    }
}

impl FetchOptions {
    /// One message, on the node's default lease (30 s), not waiting.
    pub fn new() -> Self {
        Self::default()
    }

    /// At most this many messages (`max`, 1 to 100).
    pub fn max(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// How long the lease lasts unless extended (`lease_ms`, 100 ms to 12 h).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// How long to wait for a message when none is ready (`wait_ms`, at most 50 s).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }
}

/// A message handed out on a lease.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Message {
    /// Its id (`<priority level>-<offset>`).
    pub id: String,
    /// The lease: what acks, nacks or extends it.
    pub lease: String,
    /// When the lease lapses, milliseconds since the epoch.
    pub lease_until_ms: i64,
    /// How many times it has been handed out, this one included.
    pub attempt: u32,
    /// Its priority level: 0 (high), 1 (normal) or 2 (low); see [`Priority::from_level`].
    pub priority: u8,
    /// Its key, if it has one.
    #[serde(default)]
    pub key: Option<String>,
    /// What was sent.
    pub body: Value,
    /// Its tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// When it was sent, milliseconds since the epoch.
    pub sent_ms: i64,
    /// When it expires unread, if it does.
    #[serde(default)]
    pub expires_ms: Option<i64>,
    /// Not delivered before this time (a delayed send), if set.
    #[serde(default)]
    pub not_before_ms: Option<i64>,
    /// Where a large body was kept on its own (claim-check); [`Queue::fetch`] reads it
    /// into `body`.
    ///
    /// [`Queue::fetch`]: crate::Queue::fetch
    #[serde(default)]
    pub claim: Option<Claim>,
}

/// Where a large message body is kept (claim-check).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Claim {
    /// Its id, for `GET /v1/blobs/{id}`.
    pub id: String,
    /// Its size, in bytes of JSON.
    pub bytes: u64,
}

impl Message {
    /// The body as a `T`.
    pub fn body_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.body)
    }
}

/// What an ack of many leases answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AckMany {
    /// The messages done.
    #[serde(default)]
    pub ids: Vec<String>,
    /// The leases that were not (unknown, lapsed or settled already).
    #[serde(default)]
    pub unknown: Vec<String>,
}

/// A queue or mailbox and how many messages it holds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct QueueInfo {
    /// The queue's name, or the mailbox's agent.
    #[serde(alias = "agent")]
    pub name: String,
    /// Its storage class (none for a mailbox not made yet).
    #[serde(default)]
    pub storage: Option<Storage>,
    /// Messages not done.
    pub depth: u64,
    /// Messages out on a lease.
    pub in_flight: u64,
}

/// A message stored in a queue's dead-letter queue.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DeadLetter {
    /// The queue it failed in.
    pub queue: String,
    /// Its id there.
    pub id: String,
    /// Its priority level.
    pub priority: u8,
    /// Its key, if it had one.
    #[serde(default)]
    pub key: Option<String>,
    /// Why: `max_deliveries`.
    pub reason: String,
    /// How many deliveries it had.
    pub deliveries: u32,
    /// The message as sent.
    pub message: DeadMessage,
}

/// A dead-lettered message as it was stored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DeadMessage {
    /// What was sent.
    pub body: Value,
    /// Its tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// When it was sent, milliseconds since the epoch.
    pub sent_ms: i64,
    /// When it would have expired, if it would.
    #[serde(default)]
    pub expires_ms: Option<i64>,
    /// Its delivery time, if it was delayed.
    #[serde(default)]
    pub not_before_ms: Option<i64>,
    /// Where its body is kept when it was claim-checked (`body` is then null; read it
    /// with [`Client::blob`]).
    ///
    /// [`Client::blob`]: crate::Client::blob
    #[serde(default)]
    pub claim: Option<Claim>,
}

/// A topic and the ids it holds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TopicInfo {
    /// Its name.
    pub name: String,
    /// Its storage class.
    #[serde(default)]
    pub storage: Option<Storage>,
    /// The oldest event kept.
    pub first: u64,
    /// The id the next event will have.
    pub next: u64,
}

/// An event of a topic.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Event {
    /// Its id: its offset in the topic.
    pub id: u64,
    /// Its type, if its publisher named one (JSON `type`).
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// What was published.
    pub data: Value,
    /// When, milliseconds since the epoch.
    pub sent_ms: i64,
}

/// Events read from a topic.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EventPage {
    /// The events, in order.
    pub events: Vec<Event>,
    /// Where the next read starts.
    pub next: u64,
}

/// A skill an agent offers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skill {
    /// Its id, unique on the card (what `GET /v1/agents?skill=` matches).
    pub id: String,
    /// A name for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tags, for search.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl Skill {
    /// A skill with this id.
    pub fn new(id: impl Into<String>) -> Self {
        Skill {
            id: id.into(),
            ..Self::default()
        }
    }
}

/// What an agent says of itself (an A2A agent card's essentials).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentCard {
    /// Its name: 1 to 100 characters of `[A-Za-z0-9_-]`, unique on the node.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What it can do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skills: Vec<Skill>,
    /// Tags, for search.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Where it can be reached directly, if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

impl AgentCard {
    /// A card with this name and nothing else.
    pub fn new(name: impl Into<String>) -> Self {
        AgentCard {
            name: name.into(),
            ..Self::default()
        }
    }

    /// With this description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// With one more skill.
    pub fn skill(mut self, skill: Skill) -> Self {
        self.skills.push(skill);
        self
    }

    /// With one more tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }
}

/// How to register: both optional.
#[derive(Debug, Clone, Default)]
pub struct RegisterOptions {
    pub(crate) lease: Option<Duration>,
    pub(crate) storage: Option<Storage>,
}

impl RegisterOptions {
    /// The defaults: online for 30 s after each heartbeat, the mailbox made by its first
    /// use in the node's default class.
    pub fn new() -> Self {
        Self::default()
    }

    /// Online this long after each heartbeat (`lease_ms`, 1 s to 24 h).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// The mailbox made at once in this class (`storage`).
    pub fn storage(mut self, storage: Storage) -> Self {
        self.storage = Some(storage);
        self
    }
}

/// What a registration answered.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Registration {
    /// The agent's name.
    pub name: String,
    /// The agent's own token, given once, on its first registration (an update answers
    /// none): what [`Client::with_agent_token`](crate::Client::with_agent_token) takes.
    #[serde(default)]
    pub token: Option<String>,
}

/// A registered agent: its card, and whether it is online.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AgentInfo {
    /// Its card.
    #[serde(flatten)]
    pub card: AgentCard,
    /// Whether its last heartbeat is within its lease.
    pub online: bool,
    /// Its last heartbeat (or registration), milliseconds since the epoch.
    pub seen_ms: i64,
}

/// What a search of the registry asks for (`GET /v1/agents`).
#[derive(Debug, Clone, Default)]
pub struct AgentQuery {
    pub(crate) skill: Option<String>,
    pub(crate) tag: Option<String>,
    pub(crate) online: bool,
    pub(crate) max: Option<usize>,
}

impl AgentQuery {
    /// Every agent (the first 100 by name).
    pub fn new() -> Self {
        Self::default()
    }

    /// Agents offering the skill with this id.
    pub fn skill(mut self, skill: impl Into<String>) -> Self {
        self.skill = Some(skill.into());
        self
    }

    /// Agents with this tag, on the card or one of its skills.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }

    /// Online agents only.
    pub fn online(mut self) -> Self {
        self.online = true;
        self
    }

    /// At most this many (1 to 1000; 100 by default).
    pub fn max(mut self, max: usize) -> Self {
        self.max = Some(max);
        self
    }
}

/// A task's state, as A2A names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskState {
    /// Created, not picked up yet.
    Submitted,
    /// Being worked on.
    Working,
    /// Waiting for the requester's answer ([`Client::respond`](crate::Client::respond)).
    InputRequired,
    /// Done (final).
    Completed,
    /// Given up by its agent (final).
    Failed,
    /// Stopped by its requester (final).
    Canceled,
}

impl TaskState {
    /// Whether nothing more happens to a task in this state.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Completed | TaskState::Failed | TaskState::Canceled
        )
    }
}

/// A task: a request to an agent, its state, and the ids of its events.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Task {
    /// Its id.
    pub id: String,
    /// The agent it is for.
    pub agent: String,
    /// Where it is.
    pub state: TaskState,
    /// When it was created, milliseconds since the epoch.
    pub created_ms: i64,
    /// When it last changed.
    pub updated_ms: i64,
    /// Its events' ids, in order.
    #[serde(default)]
    pub events: Vec<u64>,
}

/// What a task event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskEventKind {
    /// A change of state ([`TaskEvent::state`]).
    Status,
    /// A result.
    Artifact,
    /// A message between the agent and its requester.
    Message,
}

/// One event of a task.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TaskEvent {
    /// Its id: its offset in the node's tasks stream.
    pub id: u64,
    /// The task.
    #[serde(default)]
    pub task: String,
    /// What it is.
    pub kind: TaskEventKind,
    /// The state it set, for a status.
    #[serde(default)]
    pub state: Option<TaskState>,
    /// Who appended it: `requester`, `agent` or `node`.
    pub by: String,
    /// What it carries.
    #[serde(default)]
    pub data: Value,
    /// When, milliseconds since the epoch.
    pub at_ms: i64,
}

/// A task's state and events read after a given event.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TaskEvents {
    /// The task's state.
    pub state: TaskState,
    /// The events, in order.
    pub events: Vec<TaskEvent>,
}

/// The body of a task event an agent appends.
#[derive(Serialize)]
pub(crate) struct Report<'a> {
    pub kind: TaskEventKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<TaskState>,
    pub data: &'a Value,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn answers_decode_with_the_apis_names() {
        let m: Message = serde_json::from_str(
            r#"{"id":"0-3","lease":"ab","lease_until_ms":5,"attempt":1,"priority":0,
                "key":"k","body":{"n":1},"tags":["t"],"sent_ms":2,"expires_ms":9}"#,
        )
        .unwrap();
        assert_eq!((m.priority, m.key.as_deref()), (0, Some("k")));
        assert_eq!(m.body_as::<serde_json::Map<_, _>>().unwrap()["n"], 1);
        let a: AgentInfo = serde_json::from_str(
            r#"{"name":"adder","skills":[{"id":"add"}],"online":true,"seen_ms":7}"#,
        )
        .unwrap();
        assert_eq!(a.card.skills, vec![Skill::new("add")]);
        let t: Task = serde_json::from_str(
            r#"{"id":"t","agent":"a","agent_incarnation":"x","state":"input-required",
                "created_ms":1,"updated_ms":2,"events":[4]}"#,
        )
        .unwrap();
        assert_eq!(t.state, TaskState::InputRequired);
        assert!(!t.state.is_final());
        let e: Event =
            serde_json::from_str(r#"{"id":3,"type":"x","data":null,"sent_ms":1}"#).unwrap();
        assert_eq!(e.kind.as_deref(), Some("x"));
        let q: QueueInfo =
            serde_json::from_str(r#"{"agent":"a","storage":null,"depth":0,"in_flight":0}"#)
                .unwrap();
        assert_eq!((q.name.as_str(), q.storage), ("a", None));
    }

    #[test]
    fn a_send_body_leaves_out_what_is_not_set() {
        let body = SendBody {
            body: &serde_json::json!({"a": 1}),
            priority: None,
            key: None,
            tags: &[],
            ttl_ms: None,
            delay_ms: Some(5),
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"body": {"a": 1}, "delay_ms": 5})
        );
    }
}
