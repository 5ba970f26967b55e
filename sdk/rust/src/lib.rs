//! A client of Strata's agent API (HTTP/JSON, `docs/agent.md`): work queues and mailboxes
//! with automatic lease extension, topics with subscriptions that resume by themselves,
//! tasks, and the agents registry.
//!
//! ```no_run
//! # use futures_util::StreamExt;
//! # use serde_json::json;
//! # use strata_agent_sdk::{Client, Error, FetchOptions, Start};
//! # async fn run() -> Result<(), Error> {
//! let client = Client::new("http://127.0.0.1:8090").with_token("deployment-token");
//! client.queue("jobs").send(&json!({"resize": "cat.png"})).await?;
//! client.queue("jobs").process(&FetchOptions::new(), async |m| Ok::<_, Error>(println!("{}", m.body))).await?;
//! let mut news = client.topic("news").subscribe(Start::Beginning).await?;
//! while let Some(event) = news.next().await { println!("{:?}", event?); }
//! # Ok(()) }
//! ```
//!
//! (The example of `sdk/rust/README.md`: send a job, process it with its lease kept alive,
//! follow a topic from its beginning.)
//!
//! Every call needs a tokio runtime. A [`Client`] is cheap to clone (its connections are
//! shared); [`Queue`] and [`Topic`] are handles on one queue or topic.

#![warn(missing_docs)]

mod error;
mod follow;
mod lease;
mod models;
mod sse;

use std::time::{Duration, Instant};

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use error::Error;
pub use follow::{Start, Subscription};
pub use lease::Leased;
pub use models::{
    AckMany, AgentCard, AgentInfo, AgentQuery, Claim, Created, DeadLetter, DeadMessage, Event,
    EventPage, FetchOptions, Message, Priority, QueueInfo, RegisterOptions, Registration,
    SendOptions, SendResult, Skill, Storage, Task, TaskEvent, TaskEventKind, TaskEvents, TaskState,
    TopicInfo,
};

use follow::Source;
use models::{Report, SendBody};

/// How long a call may take: more than the longest long poll (50 s).
const TIMEOUT: Duration = Duration::from_secs(65);
/// The longest wait one long poll asks for (the node allows 50 s).
const LONGEST_POLL: Duration = Duration::from_secs(45);
/// The lease [`Queue::fetch_leased`] asks for when its options name none (the node's own
/// default, `default_lease_ms`, may be another).
const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// A client of one node's agent API.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    agent_token: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("agent_token", &self.agent_token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl Client {
    /// A client of the node at `base_url` (`http://127.0.0.1:8090`, say), with no token.
    pub fn new(base_url: impl Into<String>) -> Self {
        let base: String = base_url.into();
        Client {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_string(),
            token: None,
            agent_token: None,
            timeout: TIMEOUT,
        }
    }

    /// With the deployment's token, sent as `Authorization: Bearer <token>` on every call.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Acting as the agent whose token this is (`X-Agent-Token`, what
    /// [`Client::register`] answers): reading its mailbox, reporting on its tasks,
    /// heartbeats, updating or removing its registration.
    pub fn with_agent_token(mut self, token: impl Into<String>) -> Self {
        self.agent_token = Some(token.into());
        self
    }

    /// With this HTTP client (proxies, TLS roots, connection limits).
    pub fn with_http_client(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    /// With this bound on each call (65 s by default; streams are not bounded).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The node's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The agent token this client acts with, if any.
    pub fn agent_token(&self) -> Option<&str> {
        self.agent_token.as_deref()
    }

    /// A request to `path`, with the deployment's token and, `as_agent`, the agent's.
    fn request(&self, method: Method, path: &str, as_agent: bool) -> RequestBuilder {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let (true, Some(token)) = (as_agent, &self.agent_token) {
            request = request.header("X-Agent-Token", token);
        }
        request
    }

    fn get(&self, path: &str, as_agent: bool) -> RequestBuilder {
        self.request(Method::GET, path, as_agent)
    }

    fn post(&self, path: &str, as_agent: bool) -> RequestBuilder {
        self.request(Method::POST, path, as_agent)
    }

    /// Sends `request` (with `body` as JSON) and reads the answer, an error status as
    /// [`Error`].
    async fn send(
        &self,
        request: RequestBuilder,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<Response, Error> {
        let mut request = request.timeout(self.timeout);
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(body)?);
        }
        let response = request.send().await?;
        if response.status().is_client_error() || response.status().is_server_error() {
            return Err(Error::from_response(response).await);
        }
        Ok(response)
    }

    /// [`Client::send`], the answer decoded as a `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, Error> {
        let response = self.send(request, body).await?;
        Ok(serde_json::from_slice(&response.bytes().await?)?)
    }

    /// A large message body kept on its own (claim-check), by its claim's id.
    pub async fn blob(&self, id: &str) -> Result<Value, Error> {
        let request = self.get(&format!("/v1/blobs/{}", segment(id)), false);
        self.call(request, None::<&()>).await
    }

    /// Work queue `name` (created by its first send, or by [`Client::create_queue`]).
    pub fn queue(&self, name: &str) -> Queue {
        Queue {
            client: self.clone(),
            base: format!("/v1/queues/{}", segment(name)),
            mailbox: false,
        }
    }

    /// Agent `agent`'s mailbox: anyone sends to it; fetching, acking, nacking and
    /// extending need the agent's token ([`Client::with_agent_token`]).
    pub fn mailbox(&self, agent: &str) -> Queue {
        Queue {
            client: self.clone(),
            base: format!("/v1/agents/{}/mailbox", segment(agent)),
            mailbox: true,
        }
    }

    /// Topic `name` (created by its first publish, or by [`Client::create_topic`]).
    pub fn topic(&self, name: &str) -> Topic {
        Topic {
            client: self.clone(),
            name: name.to_string(),
        }
    }

    /// Creates queue `name` in class `storage` (the node's default when none), unless it
    /// exists in it; 409 `storage_conflict` when it exists in another.
    pub async fn create_queue(
        &self,
        name: &str,
        storage: Option<Storage>,
    ) -> Result<Created, Error> {
        self.create(&format!("/v1/queues/{}", segment(name)), storage)
            .await
    }

    /// Creates topic `name` in class `storage` (the node's default when none), unless it
    /// exists in it; 409 `storage_conflict` when it exists in another.
    pub async fn create_topic(
        &self,
        name: &str,
        storage: Option<Storage>,
    ) -> Result<Created, Error> {
        self.create(&format!("/v1/topics/{}", segment(name)), storage)
            .await
    }

    async fn create(&self, path: &str, storage: Option<Storage>) -> Result<Created, Error> {
        let body = match storage {
            Some(storage) => serde_json::json!({ "storage": storage }),
            None => serde_json::json!({}),
        };
        let response = self
            .send(self.request(Method::PUT, path, false), Some(&body))
            .await?;
        let status = response.status();
        let mut created: Created = serde_json::from_slice(&response.bytes().await?)?;
        created.created = status == StatusCode::CREATED;
        Ok(created)
    }

    // The agents registry.

    /// Registers an agent: its token is in the answer, shown once. With this client's
    /// agent token, updates that agent's card instead (answering no token).
    pub async fn register(
        &self,
        card: &AgentCard,
        options: &RegisterOptions,
    ) -> Result<Registration, Error> {
        #[derive(Serialize)]
        struct Body<'a> {
            card: &'a AgentCard,
            #[serde(skip_serializing_if = "Option::is_none")]
            lease_ms: Option<i64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            storage: Option<Storage>,
        }
        let body = Body {
            card,
            lease_ms: options.lease.map(millis),
            storage: options.storage,
        };
        self.call(self.post("/v1/agents", true), Some(&body)).await
    }

    /// Tells the node agent `name` is alive (with its token): online until the answered
    /// time, milliseconds since the epoch.
    pub async fn heartbeat(&self, name: &str) -> Result<i64, Error> {
        #[derive(serde::Deserialize)]
        struct Answer {
            online_until_ms: i64,
        }
        let path = format!("/v1/agents/{}/heartbeat", segment(name));
        let a: Answer = self.call(self.post(&path, true), None::<&()>).await?;
        Ok(a.online_until_ms)
    }

    /// The registered agents that match `query`, by name.
    pub async fn agents(&self, query: &AgentQuery) -> Result<Vec<AgentInfo>, Error> {
        #[derive(serde::Deserialize)]
        struct Answer {
            agents: Vec<AgentInfo>,
        }
        let mut params = Vec::new();
        if let Some(skill) = &query.skill {
            params.push(format!("skill={}", segment(skill)));
        }
        if let Some(tag) = &query.tag {
            params.push(format!("tag={}", segment(tag)));
        }
        if query.online {
            params.push("online=true".to_string());
        }
        if let Some(max) = query.max {
            params.push(format!("max={max}"));
        }
        let path = format!("/v1/agents?{}", params.join("&"));
        let a: Answer = self.call(self.get(&path, false), None::<&()>).await?;
        Ok(a.agents)
    }

    /// Agent `name`: 404 `unknown_agent` when none is registered.
    pub async fn agent(&self, name: &str) -> Result<AgentInfo, Error> {
        let path = format!("/v1/agents/{}", segment(name));
        self.call(self.get(&path, false), None::<&()>).await
    }

    /// Removes agent `name` (with its token). A name registered again is another agent.
    pub async fn deregister(&self, name: &str) -> Result<(), Error> {
        let path = format!("/v1/agents/{}", segment(name));
        self.send(self.request(Method::DELETE, &path, true), None::<&()>)
            .await
            .map(|_| ())
    }

    // Tasks.

    /// Creates a task for agent `agent` with `input`: it lands in the agent's mailbox as
    /// `{"task": <id>, "input": ...}`.
    pub async fn create_task(
        &self,
        agent: &str,
        input: &(impl Serialize + ?Sized),
    ) -> Result<Task, Error> {
        #[derive(Serialize)]
        struct Body<'a, I: ?Sized> {
            agent: &'a str,
            input: &'a I,
        }
        self.call(self.post("/v1/tasks", false), Some(&Body { agent, input }))
            .await
    }

    /// Task `id`.
    pub async fn task(&self, id: &str) -> Result<Task, Error> {
        let path = format!("/v1/tasks/{}", segment(id));
        self.call(self.get(&path, false), None::<&()>).await
    }

    /// Task `id` once it is final or needs input, or as it is after `timeout` (long polls
    /// of at most 45 s each).
    pub async fn wait_task(&self, id: &str, timeout: Duration) -> Result<Task, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let path = format!(
                "/v1/tasks/{}/wait?wait_ms={}",
                segment(id),
                millis(left.min(LONGEST_POLL))
            );
            let task: Task = self.call(self.get(&path, false), None::<&()>).await?;
            if task.state.is_final()
                || task.state == TaskState::InputRequired
                || Instant::now() >= deadline
            {
                return Ok(task);
            }
        }
    }

    /// Task `id`'s events after event `after` (all when none), waiting up to `wait` (at
    /// most 50 s) for one, and its state.
    pub async fn task_events(
        &self,
        id: &str,
        after: Option<u64>,
        wait: Duration,
    ) -> Result<TaskEvents, Error> {
        let mut path = format!("/v1/tasks/{}/events?wait_ms={}", segment(id), millis(wait));
        if let Some(after) = after {
            path.push_str(&format!("&after={after}"));
        }
        self.call(self.get(&path, false), None::<&()>).await
    }

    /// Every event of task `id` after event `after` (all when none) as it comes, over
    /// Server-Sent Events, resuming after a dropped connection or a node restart; the
    /// stream ends once the task is final and every event is yielded.
    ///
    /// Returns once the stream is open (an error when it cannot be: the task does not
    /// exist, the node does not answer).
    pub async fn stream_task(
        &self,
        id: &str,
        after: Option<u64>,
    ) -> Result<Subscription<TaskEvent>, Error> {
        follow::follow(self.clone(), Source::Task { id: id.to_string() }, after).await
    }

    /// Appends an event to task `id`, as its agent (with its token).
    async fn report(
        &self,
        id: &str,
        kind: TaskEventKind,
        state: Option<TaskState>,
        data: &Value,
    ) -> Result<Task, Error> {
        let path = format!("/v1/tasks/{}/events", segment(id));
        let body = Report { kind, state, data };
        self.call(self.post(&path, true), Some(&body)).await
    }

    /// Moves task `id` to `state`, with `data` (a question for `input-required`, a reason
    /// for `failed`; `Value::Null` for none), as its agent.
    pub async fn update_task(
        &self,
        id: &str,
        state: TaskState,
        data: &Value,
    ) -> Result<Task, Error> {
        self.report(id, TaskEventKind::Status, Some(state), data)
            .await
    }

    /// Appends artifact `data` (a result) to task `id`, as its agent.
    pub async fn add_artifact(&self, id: &str, data: &Value) -> Result<Task, Error> {
        self.report(id, TaskEventKind::Artifact, None, data).await
    }

    /// Appends message `data` to task `id`, as its agent.
    pub async fn add_message(&self, id: &str, data: &Value) -> Result<Task, Error> {
        self.report(id, TaskEventKind::Message, None, data).await
    }

    /// Answers task `id`, which waits for input: the answer is a `message` event, and the
    /// task is working again (409 `no_input_required` unless it waited).
    pub async fn respond(&self, id: &str, data: &Value) -> Result<Task, Error> {
        let path = format!("/v1/tasks/{}/respond", segment(id));
        self.call(
            self.post(&path, false),
            Some(&serde_json::json!({"data": data})),
        )
        .await
    }

    /// Cancels task `id`.
    pub async fn cancel_task(&self, id: &str) -> Result<Task, Error> {
        let path = format!("/v1/tasks/{}/cancel", segment(id));
        self.call(self.post(&path, false), None::<&()>).await
    }
}

/// A work queue, or an agent's mailbox (see [`Client::queue`], [`Client::mailbox`]).
#[derive(Debug, Clone)]
pub struct Queue {
    client: Client,
    /// `/v1/queues/{q}` or `/v1/agents/{name}/mailbox`.
    base: String,
    /// A mailbox: reading it needs the agent's token.
    mailbox: bool,
}

impl Queue {
    async fn call<T: DeserializeOwned>(
        &self,
        op: &str,
        as_agent: bool,
        body: &(impl Serialize + ?Sized),
    ) -> Result<T, Error> {
        let path = format!("{}/{op}", self.base);
        let request = self.client.post(&path, as_agent && self.mailbox);
        self.client.call(request, Some(body)).await
    }

    /// Sends `body` (anything serde serializes to JSON) with the default options.
    pub async fn send(&self, body: &(impl Serialize + ?Sized)) -> Result<SendResult, Error> {
        self.send_with(body, &SendOptions::default()).await
    }

    /// Sends `body` with `options` (priority, key, tags, expiry, delay, idempotency key).
    pub async fn send_with(
        &self,
        body: &(impl Serialize + ?Sized),
        options: &SendOptions,
    ) -> Result<SendResult, Error> {
        let send = SendBody {
            body,
            priority: options.priority,
            key: options.key.as_deref(),
            tags: &options.tags,
            ttl_ms: options.ttl.map(millis),
            delay_ms: options.delay.map(millis),
        };
        let mut request = self.client.post(&format!("{}/messages", self.base), false);
        if let Some(key) = &options.idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        self.client.call(request, Some(&send)).await
    }

    /// Up to `options.max` messages on leases (none when none came within the wait); each
    /// must be acked, nacked or extended before its lease lapses.
    pub async fn fetch(&self, options: &FetchOptions) -> Result<Vec<Message>, Error> {
        #[derive(Serialize)]
        struct Body {
            max: usize,
            #[serde(skip_serializing_if = "Option::is_none")]
            lease_ms: Option<i64>,
            wait_ms: i64,
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            messages: Vec<Message>,
        }
        let body = Body {
            max: options.max,
            lease_ms: options.lease.map(millis),
            wait_ms: millis(options.wait),
        };
        let mut a: Answer = self.call("fetch", true, &body).await?;
        for m in &mut a.messages {
            // A body that cannot be read (gone with the blobs' retention) stays null, its
            // claim kept: the other messages of the fetch are not held up by it.
            if let Some(claim) = &m.claim
                && let Ok(body) = self.client.blob(&claim.id).await
            {
                m.body = body;
            }
        }
        Ok(a.messages)
    }

    /// [`Queue::fetch`], each message's lease (`options.lease`, 30 s when unset) extended
    /// in the background until it is settled or dropped (see [`Leased`]).
    pub async fn fetch_leased(&self, options: &FetchOptions) -> Result<Vec<Leased>, Error> {
        let lease = options.lease.unwrap_or(DEFAULT_LEASE);
        let messages = self.fetch(&options.clone().lease(lease)).await?;
        Ok(messages
            .into_iter()
            .map(|m| Leased::start(self.clone(), m, lease))
            .collect())
    }

    /// Fetches one message (`options.max` is ignored) and runs `handler` on it, its lease
    /// extended meanwhile: acks it when the handler returns `Ok`, nacks it (deliverable
    /// again at once) when it returns `Err`. `None` when no message came within the wait;
    /// else what the handler returned. An `Err` of the call itself is the API's (the
    /// fetch, the ack or the nack failed).
    pub async fn process<T, E>(
        &self,
        options: &FetchOptions,
        handler: impl AsyncFnOnce(&Message) -> Result<T, E>,
    ) -> Result<Option<Result<T, E>>, Error> {
        let one = FetchOptions {
            max: 1,
            ..options.clone()
        };
        let Some(leased) = self.fetch_leased(&one).await?.into_iter().next() else {
            return Ok(None);
        };
        let outcome = handler(leased.message()).await;
        match &outcome {
            Ok(_) => leased.ack().await?,
            Err(_) => leased.nack(Duration::ZERO).await?,
        };
        Ok(Some(outcome))
    }

    /// Acknowledges the message on `lease`: it is done. Its id.
    pub async fn ack(&self, lease: &str) -> Result<String, Error> {
        let a: IdAnswer = self
            .call("ack", true, &serde_json::json!({"lease": lease}))
            .await?;
        Ok(a.id)
    }

    /// Acknowledges the messages on `leases` (1 to 100) at once: those done, and the
    /// leases that were not (unknown, lapsed or settled already).
    pub async fn ack_many<S: AsRef<str>>(
        &self,
        leases: impl IntoIterator<Item = S>,
    ) -> Result<AckMany, Error> {
        let leases: Vec<String> = leases.into_iter().map(|l| l.as_ref().to_string()).collect();
        self.call("ack", true, &serde_json::json!({"leases": leases}))
            .await
    }

    /// Gives the message on `lease` back, deliverable again after `delay` (at most 12 h).
    /// Its id.
    pub async fn nack(&self, lease: &str, delay: Duration) -> Result<String, Error> {
        let body = serde_json::json!({"lease": lease, "delay_ms": millis(delay)});
        let a: IdAnswer = self.call("nack", true, &body).await?;
        Ok(a.id)
    }

    /// Extends `lease` to `lease_len` from now: when it lapses now, milliseconds since the
    /// epoch.
    pub async fn extend(&self, lease: &str, lease_len: Duration) -> Result<i64, Error> {
        #[derive(serde::Deserialize)]
        struct Answer {
            lease_until_ms: i64,
        }
        let body = serde_json::json!({"lease": lease, "lease_ms": millis(lease_len)});
        let a: Answer = self.call("extend", true, &body).await?;
        Ok(a.lease_until_ms)
    }

    /// The queue's storage class and how many messages it holds.
    pub async fn describe(&self) -> Result<QueueInfo, Error> {
        let request = self.client.get(&self.base, self.mailbox);
        self.client.call(request, None::<&()>).await
    }

    /// Up to `max` (1 to 100) messages waiting in the queue's dead-letter queue, left
    /// there. Queues only: a mailbox has none over the API.
    pub async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, Error> {
        #[derive(serde::Deserialize)]
        struct Answer {
            messages: Vec<DeadLetter>,
        }
        let path = format!("{}/dead-letters?max={max}", self.base);
        let a: Answer = self
            .client
            .call(self.client.get(&path, false), None::<&()>)
            .await?;
        Ok(a.messages)
    }

    /// Sends up to `max` (1 to 100) messages of the dead-letter queue back to the queue,
    /// delivered afresh: how many. Queues only.
    pub async fn redrive(&self, max: usize) -> Result<usize, Error> {
        #[derive(serde::Deserialize)]
        struct Answer {
            redriven: usize,
        }
        let path = format!("{}/dead-letters/redrive", self.base);
        let a: Answer = self
            .client
            .call(
                self.client.post(&path, false),
                Some(&serde_json::json!({"max": max})),
            )
            .await?;
        Ok(a.redriven)
    }
}

#[derive(serde::Deserialize)]
struct IdAnswer {
    id: String,
}

/// A topic: an ordered log of events every reader reads in full (see [`Client::topic`]).
#[derive(Debug, Clone)]
pub struct Topic {
    client: Client,
    name: String,
}

impl Topic {
    fn path(&self) -> String {
        format!("/v1/topics/{}", segment(&self.name))
    }

    /// Publishes `data`: the event's id.
    pub async fn publish(&self, data: &(impl Serialize + ?Sized)) -> Result<u64, Error> {
        self.publish_event(None, data).await
    }

    /// Publishes `data` with type `kind` (1 to 64 characters of `[A-Za-z0-9._-]`, the
    /// SSE `event:` field): the event's id.
    pub async fn publish_typed(
        &self,
        kind: &str,
        data: &(impl Serialize + ?Sized),
    ) -> Result<u64, Error> {
        self.publish_event(Some(kind), data).await
    }

    async fn publish_event(
        &self,
        kind: Option<&str>,
        data: &(impl Serialize + ?Sized),
    ) -> Result<u64, Error> {
        #[derive(Serialize)]
        struct Body<'a, D: ?Sized> {
            data: &'a D,
            #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
            kind: Option<&'a str>,
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            id: u64,
        }
        let path = format!("{}/events", self.path());
        let a: Answer = self
            .client
            .call(self.client.post(&path, false), Some(&Body { data, kind }))
            .await?;
        Ok(a.id)
    }

    /// Up to `max` (1 to 1000) stored events from id `from` (the oldest kept when none),
    /// waiting up to `wait` (at most 50 s) for one.
    pub async fn read(
        &self,
        from: Option<u64>,
        max: usize,
        wait: Duration,
    ) -> Result<EventPage, Error> {
        let mut path = format!("{}/events?max={max}&wait_ms={}", self.path(), millis(wait));
        if let Some(from) = from {
            path.push_str(&format!("&from={from}"));
        }
        self.client
            .call(self.client.get(&path, false), None::<&()>)
            .await
    }

    /// Every event from `start` on, as it is published, over Server-Sent Events: after a
    /// dropped connection or a node restart the stream connects again and resumes with the
    /// last id it yielded (`Last-Event-ID`), so no event is missed or repeated.
    ///
    /// Returns once the stream is open, its position taken (an error when it cannot be:
    /// the topic does not exist, the position is no longer kept, the node does not
    /// answer).
    pub async fn subscribe(&self, start: Start) -> Result<Subscription<Event>, Error> {
        let last = match start {
            Start::After(id) => Some(id),
            _ => None,
        };
        let source = Source::Topic {
            name: self.name.clone(),
            start,
        };
        follow::follow(self.client.clone(), source, last).await
    }

    /// The topic's storage class and the ids it holds.
    pub async fn describe(&self) -> Result<TopicInfo, Error> {
        self.client
            .call(self.client.get(&self.path(), false), None::<&()>)
            .await
    }
}

/// `d` in whole milliseconds, as the API counts them.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `s` escaped for a URL path segment or a query value: every byte but the unreserved
/// ones (`A-Z a-z 0-9 - . _ ~`) percent-encoded.
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_in_paths() {
        assert_eq!(segment("jobs_1-a"), "jobs_1-a");
        assert_eq!(segment("a b/c?é"), "a%20b%2Fc%3F%C3%A9");
        assert_eq!(Client::new("http://h:1/").base_url(), "http://h:1");
        assert_eq!(Client::new("http://h").queue("q").base, "/v1/queues/q");
    }

    #[test]
    fn tokens_stay_out_of_debug() {
        let c = Client::new("http://h")
            .with_token("secret")
            .with_agent_token("agent");
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("secret") && !shown.contains("agent\""),
            "{shown}"
        );
    }
}
