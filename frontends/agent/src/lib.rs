//! Strata's agent frontend: durable messaging for AI agents over HTTP/JSON, stored in
//! journal streams: work queues (competing consumers with leases, priorities, idempotent
//! sends, delayed delivery, redelivery and dead-letter queues), topics with resumable
//! streams, the agents registry, mailboxes and tasks, with an MCP endpoint and an A2A
//! gateway over them.

pub mod a2a;
pub mod admin_api;
pub mod blobs;
pub mod error;
pub mod http;
pub mod linked;
pub mod listener;
pub mod mcp;
pub mod metrics;
pub mod owner;
pub mod queue;
pub mod queues;
pub mod registry;
pub mod space;
pub mod storage;
pub mod tasks;
pub mod topics;

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use strata_frontend::accept::Acceptor;
use strata_frontend::admission::{ConnectionGate, ConnectionLimits};
use strata_frontend::{Frontend, FrontendError, NodeContext, Shutdown};

/// A task stopped when this is dropped: the sweeper ends with the frontend, even when the
/// node gives up waiting for it and drops its future.
pub struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The error code a refused connection is counted under (a fixed set).
fn connection_refusal(why: &str) -> &'static str {
    match why {
        "banned" => "connection_banned",
        "accept" => "connection_accept_failed",
        "connection_rate" => "connection_rate",
        "max_connections_per_ip" => "connection_max_per_ip",
        _ => "connection_max",
    }
}

use crate::queues::{QueueLimits, Queues};
use crate::storage::{Classes, StorageClass};
use crate::topics::{TopicLimits, Topics};

/// The state space the frontend keeps its queues' marks and idempotency keys, its agents'
/// cards and its tasks in.
const SPACE: &str = "agent";

/// The `[agent]` section of the node configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Run the agent frontend on this node.
    pub enabled: bool,
    /// HTTP listener.
    pub listen: SocketAddr,
    /// Bearer token every request must carry (`Authorization: Bearer ...`); unset: none.
    pub token: Option<String>,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Connections open at once; past it a new one is closed at once (counted).
    pub max_connections: usize,
    /// Connections open at once from one address (0: no bound but `max_connections`).
    pub max_connections_per_ip: usize,
    /// New connections a second from one address (0: no bound).
    pub max_connection_rate_per_ip: f64,
    /// Burst of new connections from one address (0: the rate).
    pub connection_burst_per_ip: f64,
    /// A connection without a byte either way for this long is closed, in milliseconds
    /// (more than `max_wait_ms`: a long poll answers within it).
    pub idle_timeout_ms: u64,
    /// Longest time a request body may take to arrive, in milliseconds (408 past it).
    pub body_timeout_ms: u64,
    /// Queues one node keeps open.
    pub max_queues: usize,
    /// Messages not done in one queue; a send past it answers 429 with Retry-After.
    pub max_queue_depth: u64,
    /// Deliveries after which a message is dead-lettered.
    pub max_deliveries: u32,
    /// Lease of a fetch that names none, in milliseconds.
    pub default_lease_ms: i64,
    /// Longest long-poll of a fetch, in milliseconds.
    pub max_wait_ms: i64,
    /// How long an idempotency key is remembered, in milliseconds.
    pub dedup_window_ms: i64,
    /// Topics one node keeps open.
    pub max_topics: usize,
    /// Streaming (SSE) readers at once; past it 429.
    pub max_sse_clients: usize,
    /// Agents registered on one node.
    pub max_agents: usize,
    /// Tasks one node keeps.
    pub max_tasks: usize,
    /// How long a finished task (completed, failed, canceled) is kept before it is
    /// deleted, in milliseconds.
    pub task_retention_ms: i64,
    /// Where a queue, mailbox or topic created without a class keeps its messages:
    /// `memory`, `local` or `object`. `object` needs `[journal.object_store]`; a node
    /// without one uses `local` instead (and says so at start).
    pub storage: StorageClass,
    /// The classes clients may ask for when they create a queue, topic or mailbox.
    pub storage_classes: Vec<StorageClass>,
    /// Queues, mailboxes and topics of class `memory` one node keeps (each partition of
    /// one holds at most the journal's `memory_max_bytes`).
    pub max_memory_objects: usize,
    /// Origins (`scheme://host[:port]`) whose web pages may call the API, besides pages of
    /// this machine; other pages are refused (403 `bad_origin`).
    pub allowed_origins: Vec<String>,
    /// MQTT topic prefix the public queues appear under (`queues/`: an MQTT publish to
    /// `queues/jobs` is a send to queue `jobs`, a subscription to `queues/jobs` or
    /// `$share/<group>/queues/jobs` a consumer of it); unset: queues are not on MQTT.
    pub mqtt_prefix: Option<String>,
    /// A message body larger than this (bytes of JSON) is stored once on its own, in the
    /// node's default storage class, and the message carries a claim to it; 0: never.
    pub claim_check_bytes: usize,
    /// The largest message body a send may carry when it is claim-checked.
    pub max_claim_bytes: usize,
    /// Sends larger than `max_body_bytes` under way at once (each may hold up to
    /// `max_claim_bytes` in memory); past it 429 `claim_sends_busy`.
    pub max_claim_sends: usize,
}

impl Default for AgentConfig {
    fn default() -> Self {
        let limits = QueueLimits::default();
        AgentConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            token: None,
            max_body_bytes: 256 * 1024,
            max_connections: 10_000,
            max_connections_per_ip: 0,
            max_connection_rate_per_ip: 0.0,
            connection_burst_per_ip: 0.0,
            idle_timeout_ms: 120_000,
            body_timeout_ms: 30_000,
            max_queues: limits.max_queues,
            max_queue_depth: limits.max_depth,
            max_deliveries: limits.max_deliveries,
            default_lease_ms: limits.default_lease_ms,
            max_wait_ms: limits.max_wait_ms,
            dedup_window_ms: limits.dedup_window_ms,
            max_topics: TopicLimits::default().max_topics,
            max_sse_clients: TopicLimits::default().max_streams,
            max_agents: 100_000,
            max_tasks: 100_000,
            task_retention_ms: 7 * 24 * 3600 * 1000,
            storage: StorageClass::Object,
            storage_classes: vec![
                StorageClass::Memory,
                StorageClass::Local,
                StorageClass::Object,
            ],
            max_memory_objects: 16,
            allowed_origins: Vec::new(),
            mqtt_prefix: None,
            claim_check_bytes: 64 * 1024,
            max_claim_bytes: 8 * 1024 * 1024,
            max_claim_sends: 4,
        }
    }
}

impl AgentConfig {
    fn limits(&self) -> QueueLimits {
        QueueLimits {
            max_queues: self.max_queues,
            max_depth: self.max_queue_depth,
            max_deliveries: self.max_deliveries.max(1),
            default_lease_ms: self.default_lease_ms.max(1),
            max_wait_ms: self.max_wait_ms.max(0),
            dedup_window_ms: self.dedup_window_ms.max(0),
            ..QueueLimits::default()
        }
    }
}

/// The agent frontend.
#[derive(Debug)]
pub struct AgentFrontend {
    config: AgentConfig,
    object_storage: bool,
    clustered: bool,
    admin: admin_api::AgentAdmin,
}

impl AgentFrontend {
    /// A frontend with these settings, on a node without object storage.
    pub fn new(config: AgentConfig) -> Self {
        AgentFrontend {
            config,
            object_storage: false,
            clustered: false,
            admin: admin_api::AgentAdmin::default(),
        }
    }

    /// The same frontend on a node of a cluster (or not): one node serves the agent API,
    /// its state replicated ([`owner`]).
    pub fn in_cluster(mut self, clustered: bool) -> Self {
        self.clustered = clustered;
        self
    }

    /// The same frontend on a node that has object storage (or not).
    pub fn with_object_storage(mut self, present: bool) -> Self {
        self.object_storage = present;
        self
    }

    /// The classes this node offers, its default resolved.
    fn classes(&self) -> Classes {
        let mut default = self.config.storage;
        if default == StorageClass::Object && !self.object_storage {
            tracing::warn!(
                "agent: no object storage ([journal.object_store]): new agent objects are stored \
                 locally (storage = \"local\")"
            );
            default = StorageClass::Local;
        }
        Classes {
            default,
            clustered: self.clustered,
            object: self.object_storage,
            allowed: self.config.storage_classes.clone(),
            max_memory: self.config.max_memory_objects,
        }
    }
}

#[async_trait]
impl Frontend for AgentFrontend {
    fn name(&self) -> &'static str {
        "agent"
    }

    fn claim_streams(&self, owned: &strata_frontend::owned::OwnedStreams) {
        // The agent state: no other protocol reads or writes it.
        owned.claim(
            space::STATE_STREAM,
            "agent",
            strata_frontend::owned::Ownership::Internal,
        );
    }

    fn admin_api(&self, _ctx: &NodeContext) -> Option<strata_frontend::admin::http::AdminApi> {
        Some(admin_api::api(self.admin.clone()))
    }

    async fn serve(
        self: Box<Self>,
        ctx: NodeContext,
        mut shutdown: Shutdown,
    ) -> Result<(), FrontendError> {
        let listener = ctx.bind("agent", self.config.listen).await?;
        let metrics = metrics::AgentMetrics::new(&ctx.registry);
        let classes = self.classes();
        let topics = Arc::new(Topics::new(
            ctx.storage.clone(),
            TopicLimits {
                max_topics: self.config.max_topics,
                max_streams: self.config.max_sse_clients,
            },
            metrics.clone(),
            classes.clone(),
        ));
        let parts = Parts {
            config: self.config.clone(),
            storage: ctx.storage.clone(),
            classes,
            topics,
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
        };
        // Alone, the node serves the API over its own state store; in a cluster, the
        // owner of the replicated state does, and the other nodes forward to it.
        let mut background = Vec::new();
        let app = if self.clustered {
            let admin = self.admin.clone();
            let owner = Arc::new(owner::Owner::new(
                ctx.storage.clone(),
                Box::new(move |space| {
                    let api = parts.api(space)?;
                    admin.attach(api.clone());
                    let sweeper = sweeper(api.clone(), parts.config.task_retention_ms);
                    Ok((http::router(api), vec![sweeper]))
                }),
                metrics.clone(),
                std::time::Duration::from_millis(
                    u64::try_from(self.config.max_wait_ms).unwrap_or(0) + 15_000,
                ),
                self.admin.clone(),
            ));
            let (watching, stop) = (owner.clone(), shutdown.clone());
            background.push(AbortOnDrop(tokio::spawn(async move {
                watching.watch(stop).await;
            })));
            owner::router(owner)
        } else {
            let space = space::Space::Node(
                ctx.storage
                    .state
                    .space(SPACE)
                    .map_err(|e| FrontendError::Failed(e.to_string()))?,
            );
            let api = parts
                .api(space)
                .map_err(|e| FrontendError::Failed(format!("agent: {}", e.message)))?;
            self.admin.attach(api.clone());
            if ctx.queues.prefix().is_some() {
                ctx.queues
                    .attach(Arc::new(linked::LinkedQueues::new(api.clone())));
            }
            background.push(sweeper(api.clone(), self.config.task_retention_ms));
            http::router(api)
        };
        ctx.ready();
        // Admitted as every frontend's sockets are (with TCP_NODELAY: answers go out as
        // soon as written), closed when idle too long.
        let local = listener
            .local_addr()
            .map_err(|e| FrontendError::Failed(e.to_string()))?;
        let gate = ConnectionGate::new(ConnectionLimits::new(
            self.config.max_connections,
            self.config.max_connections_per_ip,
            self.config.max_connection_rate_per_ip,
            self.config.connection_burst_per_ip,
        ));
        let errors = metrics.errors.clone();
        let acceptor = Acceptor::start(
            vec![((), listener)],
            gate,
            ctx.security.clone(),
            move |why| {
                errors.with_label_values(&[connection_refusal(why)]).inc();
            },
        );
        let idle = self.config.idle_timeout_ms.max(
            u64::try_from(self.config.max_wait_ms)
                .unwrap_or(0)
                .max(15_000)
                + 5_000,
        );
        let listener =
            listener::Gated::new(acceptor, local, std::time::Duration::from_millis(idle));
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await
            .map_err(|e| FrontendError::Failed(format!("agent: {e}")));
        drop(background);
        served
    }
}

/// What the API is built from, whichever state it serves.
struct Parts {
    config: AgentConfig,
    storage: strata_frontend::seams::Storage,
    classes: Classes,
    topics: Arc<Topics>,
    metrics: metrics::AgentMetrics,
    shutdown: Shutdown,
}

impl Parts {
    /// The API over `space`.
    fn api(&self, space: space::Space) -> Result<Arc<http::Api>, error::AgentError> {
        let storage = &self.storage;
        let tasks = tasks::Tasks::new(
            storage.clone(),
            space.clone(),
            self.config.max_tasks,
            self.classes.default,
        );
        let registry = registry::Registry::open(space.clone(), self.config.max_agents)?;
        Ok(Arc::new(http::Api {
            queues: Queues::new(
                storage.clone(),
                space,
                self.config.limits(),
                self.metrics.clone(),
                self.topics.clone(),
                self.classes.clone(),
            ),
            topics: self.topics.clone(),
            registry,
            tasks,
            token: self.config.token.clone(),
            allowed_origins: self.config.allowed_origins.clone(),
            max_body_bytes: self.config.max_body_bytes,
            body_timeout: std::time::Duration::from_millis(self.config.body_timeout_ms.max(1)),
            blobs: blobs::Blobs::new(
                storage.clone(),
                self.classes.default,
                self.config.claim_check_bytes,
                self.config.max_claim_bytes,
            ),
            claim_sends: tokio::sync::Semaphore::new(self.config.max_claim_sends),
            loopback_only: self.config.listen.ip().is_loopback(),
            metrics: self.metrics.clone(),
            shutdown: self.shutdown.clone(),
        }))
    }
}

/// Lapsed leases end even on a queue nobody asks anything of: their messages are
/// redelivered to waiting consumers or dead-lettered. Finished tasks past their
/// retention go every 10 seconds.
fn sweeper(api: Arc<http::Api>, retention_ms: i64) -> AbortOnDrop {
    let retention_ms = retention_ms.max(0);
    AbortOnDrop(tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_millis(500));
        for tick in 0u64.. {
            every.tick().await;
            api.queues.sweep().await;
            api.queues.drain_dead().await;
            if tick % 20 == 0 {
                match api
                    .tasks
                    .expire_finished(strata_batch::now_ms(), retention_ms)
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(tasks = n, "finished tasks deleted"),
                    Err(e) => tracing::warn!(error = %e.message, "finished tasks not deleted"),
                }
            }
        }
    }))
}
