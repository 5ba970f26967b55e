//! The seam between the node and its protocol frontends: the [`Frontend`] trait and the
//! [`NodeContext`] each frontend is given.

use std::net::SocketAddr;

pub mod accept;
pub mod admin;
pub mod admission;
pub mod audit;
pub mod log_select;
pub mod owned;
pub mod rate;
pub mod seams;
pub mod security;
pub mod tls;
pub mod topic_filter;
pub mod work_queues;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};

/// What the node hands every frontend.
#[derive(Debug, Clone)]
pub struct NodeContext {
    /// Streams, partitions and frontend state, wherever they live.
    pub storage: seams::Storage,
    /// The registry behind the node's `/metrics`.
    pub registry: prometheus::Registry,
    /// Where a frontend reports its listeners, so the node can log and announce them.
    pub events: mpsc::UnboundedSender<FrontendEvent>,
    /// Streams owned by a frontend, claimed before any frontend serves.
    pub owned: owned::OwnedStreams,
    /// Users, ACL and bans, shared by every frontend.
    pub security: security::Security,
    /// The agent frontend's work queues, as other frontends reach them.
    pub queues: work_queues::QueueLink,
}

/// What a frontend tells the node while it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontendEvent {
    /// A listener is bound (`name`, for instance `mqtt` or `mqtt-ws`, and its address).
    Listening(String, SocketAddr),
    /// Every listener of the frontend is bound.
    Ready,
}

impl NodeContext {
    /// Reports a bound listener.
    pub fn announce(&self, name: &str, addr: SocketAddr) {
        // The node stops listening only when it is shutting down; nothing to report then.
        let _ = self
            .events
            .send(FrontendEvent::Listening(name.to_string(), addr));
    }

    /// Reports that every listener is bound.
    pub fn ready(&self) {
        let _ = self.events.send(FrontendEvent::Ready);
    }

    /// Binds a TCP listener and reports it as `name`.
    pub async fn bind(
        &self,
        name: &str,
        addr: SocketAddr,
    ) -> Result<tokio::net::TcpListener, FrontendError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| FrontendError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|e| FrontendError::Failed(e.to_string()))?;
        self.announce(name, bound);
        Ok(listener)
    }
}

/// Waits up to `grace` for every connection task to end (they see the shutdown signal
/// themselves), then aborts the rest.
pub async fn drain(connections: &mut tokio::task::JoinSet<()>, grace: std::time::Duration) {
    let ended = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, ended).await.is_err() {
        connections.abort_all();
    }
}

/// Becomes true when the node is stopping.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// A shutdown signal driven by `rx`.
    pub fn new(rx: watch::Receiver<bool>) -> Self {
        Shutdown(rx)
    }

    /// Completes once the node is stopping.
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// True once the node is stopping.
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }
}

/// Why a frontend stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    /// A listener could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Anything else that ended the frontend.
    #[error("{0}")]
    Failed(String),
}

/// A protocol adapter. `serve` binds its listeners, reports each through
/// [`NodeContext::announce`] and then [`NodeContext::ready`], serves until `shutdown` is set, then closes its connections
/// cleanly (flushing what it owes to the journal) and returns.
#[async_trait]
pub trait Frontend: Send + Sync {
    /// Short name, also the config section (`mqtt`, `kafka`...).
    fn name(&self) -> &'static str;

    /// Claims the streams this frontend owns. Called for every frontend before any of
    /// them serves.
    fn claim_streams(&self, _owned: &owned::OwnedStreams) {}

    /// The frontend's part of the node's admin API, served under `/api/v1/<name>`. Asked
    /// of every frontend, enabled or not: a disabled frontend's routes answer 404
    /// `disabled`, and its operations stay in the OpenAPI document.
    fn admin_api(&self, _ctx: &NodeContext) -> Option<admin::http::AdminApi> {
        None
    }

    /// Runs the frontend until shutdown.
    async fn serve(
        self: Box<Self>,
        ctx: NodeContext,
        shutdown: Shutdown,
    ) -> Result<(), FrontendError>;
}
