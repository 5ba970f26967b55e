//! The agent API in a cluster: served by one node, the leader of [`STATE_STREAM`]'s
//! partition, over state kept in that partition ([`ChangeLog`]); every other node forwards
//! the requests it gets to that node's agent listener, as they came.
//!
//! Leases, long polls and the view of the state exist once, on the owner. When the
//! partition's leadership moves (its node died, was cut off or stopped), the new leader
//! reads the state in and serves: a queue's messages not acknowledged are delivered again
//! (their leases are gone), nothing acknowledged is lost, and what the old owner answered
//! after it lost the partition was refused (its appends are fenced), never acknowledged.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use strata_frontend::seams::{NodeId, Storage, StreamSpec};
use tower::ServiceExt;

use crate::error::AgentError;
use crate::space::{ChangeLog, STATE_STREAM, Space};

/// Marks a request one node forwarded to another: it is never forwarded again.
pub const FORWARDED: &str = "x-strata-forwarded-by";

/// How often the node looks whether it should take the state over, or give it up.
const WATCH_EVERY: Duration = Duration::from_millis(250);

/// Headers of one connection, not of the request: not forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// What the owner serves: the API over the state it took over, and its background work.
pub struct Served {
    /// The partition's leader epoch it was taken over at.
    epoch: u64,
    log: Arc<ChangeLog>,
    router: Router,
    /// Stopped with it (the sweeper).
    _tasks: Vec<crate::AbortOnDrop>,
}

/// Builds what the owner serves over a state: its router and background tasks.
pub type Build =
    Box<dyn Fn(Space) -> Result<(Router, Vec<crate::AbortOnDrop>), AgentError> + Send + Sync>;

/// The agent API of one node of a cluster.
pub struct Owner {
    storage: Storage,
    node: NodeId,
    build: Build,
    served: tokio::sync::Mutex<Option<Served>>,
    client: reqwest::Client,
    metrics: crate::metrics::AgentMetrics,
    /// The admin API's handle: the API this node serves, while it does.
    admin: crate::admin_api::AgentAdmin,
}

impl std::fmt::Debug for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Owner").field("node", &self.node).finish()
    }
}

fn no_owner(why: impl Into<String>) -> AgentError {
    AgentError {
        code: "no_owner",
        ..AgentError::unavailable(why)
    }
}

impl Owner {
    /// The agent API of this node, served over state built by `build` when it leads the
    /// state partition. A forwarded request whose owner sends nothing for `silence` (more
    /// than the longest long poll, and than the event streams' keepalives) fails: an
    /// owner that hangs (paused, cut off) does not hold forwarding nodes' requests.
    pub fn new(
        storage: Storage,
        build: Build,
        metrics: crate::metrics::AgentMetrics,
        silence: Duration,
        admin: crate::admin_api::AgentAdmin,
    ) -> Self {
        admin.clustered();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .read_timeout(silence)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        Owner {
            node: storage.catalog.node_id(),
            storage,
            build,
            served: tokio::sync::Mutex::new(None),
            client,
            metrics,
            admin,
        }
    }

    /// Creates the state stream when missing: one partition in a frontend's copies (three
    /// once the cluster has three voters: refused while fewer nodes are up), every record
    /// kept until compacted. Created by the first request, so a cluster whose agent API
    /// is not used has no such stream.
    async fn ensure_state(&self) -> Result<(), AgentError> {
        // Asked on every request: the placement is a lookup, the stream's settings are not.
        if self.storage.catalog.placement(STATE_STREAM, 0).is_some() {
            return Ok(());
        }
        let spec = StreamSpec::new(STATE_STREAM, 1)
            .with_storage_class("segment")
            .keeping_all();
        self.storage
            .ensure_stream(spec)
            .await
            .map(|_| ())
            .map_err(|e| no_owner(format!("the agent state cannot be created yet: {e}")))
    }

    /// The leader of the state partition and its epoch, when it has one.
    fn leader(&self) -> Option<(NodeId, u64)> {
        let p = self.storage.catalog.placement(STATE_STREAM, 0)?;
        Some((p.leader?, p.epoch))
    }

    /// Takes the state over, or gives it up, as the partition's leadership says: run every
    /// [`WATCH_EVERY`] so that leases lapse and messages die on schedule without a request
    /// to start the owner.
    pub async fn watch(&self, mut stop: strata_frontend::Shutdown) {
        let mut every = tokio::time::interval(WATCH_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = stop.wait() => return,
            }
            match self.leader() {
                Some((leader, epoch)) if leader == self.node => {
                    if let Err(e) = self.serving(epoch).await {
                        tracing::debug!(error = %e.message, "agent state not taken over yet");
                    }
                }
                _ => self.give_up().await,
            }
        }
    }

    async fn give_up(&self) {
        // Not waited for while a take-over or another give-up runs (a forwarded request
        // must not stall behind it): the watch loop comes back every 250 ms.
        let Ok(mut served) = self.served.try_lock() else {
            return;
        };
        if let Some(old) = served.as_ref() {
            tracing::info!("agent state: another node leads it now, given up");
            self.admin.detach();
            // Closed before it is dropped: a give-up cancelled meanwhile leaves it to the
            // next one.
            old.log.close().await;
            *served = None;
        }
    }

    /// The router over the state taken over at `epoch`, taking it over when needed.
    async fn serving(&self, epoch: u64) -> Result<Router, AgentError> {
        let mut served = self.served.lock().await;
        if let Some(s) = served.as_ref()
            && s.epoch == epoch
            && s.log.still_leads().await.is_ok()
        {
            return Ok(s.router.clone());
        }
        // Given up first: requests in flight on the old state fail from here on, and its
        // last append is done before the state is read again (nothing written through it
        // can follow the new marker).
        if let Some(old) = served.as_ref() {
            self.admin.detach();
            // Kept until closed: a caller cancelled while it waits leaves the old log in
            // place for the next one to close, never a take-over beside a live writer.
            old.log.close().await;
            *served = None;
        }
        let partition = self
            .storage
            .partition_led_here(STATE_STREAM, 0)
            .await
            .map_err(|e| no_owner(format!("the agent state is not served here: {e}")))?;
        let log = Arc::new(ChangeLog::take_over(partition, self.node).await?);
        let (router, tasks) = (self.build)(Space::Cluster(log.clone()))?;
        tracing::info!(
            epoch,
            "agent state taken over: this node serves the agent API"
        );
        *served = Some(Served {
            epoch,
            log,
            router: router.clone(),
            _tasks: tasks,
        });
        Ok(router)
    }

    /// Answers `request`: here when this node owns the state, at the owner otherwise.
    pub async fn answer(&self, request: Request) -> Response {
        if let Err(e) = self.ensure_state().await {
            return self.refused(e);
        }
        match self.leader() {
            Some((leader, epoch)) if leader == self.node => match self.serving(epoch).await {
                Ok(router) => router.oneshot(request).await.unwrap_or_else(|e| match e {}),
                Err(e) => self.refused(e),
            },
            Some((leader, _)) => {
                if request.headers().contains_key(FORWARDED) {
                    // Sent here by a node that takes this one for the owner: the two
                    // disagree for a moment (a leadership change); the client tries again.
                    return self.refused(no_owner(format!(
                        "node {leader} serves the agent API now; try again"
                    )));
                }
                self.give_up().await;
                match self.forward(leader, request).await {
                    Ok(r) => r,
                    Err(e) => self.refused(e),
                }
            }
            None => self.refused(no_owner(
                "no node serves the agent API now (its state partition has no leader): try again",
            )),
        }
    }

    fn refused(&self, e: AgentError) -> Response {
        self.metrics.errors.with_label_values(&[e.code]).inc();
        e.into_response()
    }

    /// Sends `request` to node `leader`'s agent listener, and its answer back as it comes
    /// (a long poll or a stream of events included).
    async fn forward(&self, leader: NodeId, request: Request) -> Result<Response, AgentError> {
        let address = self
            .storage
            .catalog
            .members()
            .into_iter()
            .find(|m| m.id == leader)
            .and_then(|m| m.listeners.get("agent").cloned())
            .ok_or_else(|| no_owner(format!("node {leader} has no agent listener registered")))?;
        let (parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", axum::http::uri::PathAndQuery::as_str);
        let mut out = self
            .client
            .request(parts.method.clone(), format!("http://{address}{path}"))
            .body(reqwest::Body::wrap_stream(body.into_data_stream()));
        for (name, value) in &parts.headers {
            if !HOP_BY_HOP.contains(&name.as_str()) {
                out = out.header(name, value);
            }
        }
        out = out.header(FORWARDED, self.node.to_string());
        let answer = out.send().await.map_err(|e| {
            no_owner(format!(
                "node {leader}, which serves the agent API, did not answer: {e}"
            ))
        })?;
        self.metrics.forwarded.inc();
        let mut response = Response::builder().status(answer.status());
        for (name, value) in answer.headers() {
            if !HOP_BY_HOP.contains(&name.as_str()) && name != header::CONTENT_LENGTH {
                response = response.header(name, value);
            }
        }
        let body = Body::from_stream(answer.bytes_stream().map_err(std::io::Error::other));
        Ok(response
            .header(
                HeaderName::from_static("x-strata-served-by"),
                HeaderValue::from(leader),
            )
            .body(body)
            .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response()))
    }
}

/// The router of a node in a cluster: every request answered by [`Owner::answer`].
pub fn router(owner: Arc<Owner>) -> Router {
    Router::new()
        .fallback(
            |State(owner): State<Arc<Owner>>, request: Request| async move {
                owner.answer(request).await
            },
        )
        .with_state(owner)
}
