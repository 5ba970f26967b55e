//! The Kafka frontend: the listener and the state every connection shares.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use strata_frontend::admission::ConnectionGate;
use strata_frontend::owned::OwnedStreams;
use strata_frontend::seams::Storage;
use strata_frontend::security::Security;
use strata_frontend::tls::TlsAcceptor;
use strata_frontend::{Frontend, FrontendError, NodeContext, Shutdown};

use crate::admin::{GroupCollector, KafkaAdmin};
use crate::config::KafkaConfig;
use crate::connection;
use crate::groups::Coordinator;
use crate::metrics::KafkaMetrics;
use crate::producers::Producers;

/// Namespace of the Kafka frontend in the node's key-value store.
pub const SPACE: &str = "kafka";

/// The Kafka frontend.
#[derive(Debug)]
pub struct KafkaFrontend {
    config: KafkaConfig,
    admin: KafkaAdmin,
}

impl KafkaFrontend {
    /// A frontend with these settings.
    pub fn new(config: KafkaConfig) -> Self {
        KafkaFrontend {
            config,
            admin: KafkaAdmin::default(),
        }
    }

    /// The admin API's handle on this frontend; it answers once the frontend has started.
    pub fn admin(&self) -> KafkaAdmin {
        self.admin.clone()
    }
}

/// What every connection shares.
#[derive(Debug)]
pub struct Kafka {
    pub config: KafkaConfig,
    pub storage: Storage,
    pub metrics: KafkaMetrics,
    pub groups: Coordinator,
    pub producers: Producers,
    /// Host and port clients are told to use.
    pub advertised: (String, i32),
    /// Host and port clients of the SSL listener are told to use.
    pub advertised_tls: Option<(String, i32)>,
    /// Streams other frontends own.
    pub owned: OwnedStreams,
    /// Users, ACL and bans.
    pub security: Security,
    /// Produce and Fetch quotas, per principal.
    pub quotas: crate::quota::QuotaBook,
}

impl Kafka {
    /// The host and port a client of this session's listener is told to use.
    pub fn advertised_for(&self, session: &crate::handlers::Session) -> (&str, i32) {
        match (&self.advertised_tls, session.tls) {
            (Some((host, port)), true) => (host, *port),
            _ => (&self.advertised.0, self.advertised.1),
        }
    }
}

/// The node id this broker announces (a single node for now).
pub const NODE_ID: i32 = 0;

#[async_trait]
impl Frontend for KafkaFrontend {
    fn name(&self) -> &'static str {
        "kafka"
    }

    async fn serve(
        self: Box<Self>,
        ctx: NodeContext,
        mut shutdown: Shutdown,
    ) -> Result<(), FrontendError> {
        let listener = ctx.bind("kafka", self.config.listen).await?;
        let bound = listener
            .local_addr()
            .map_err(|e| FrontendError::Failed(e.to_string()))?;
        let kv = ctx
            .storage
            .state
            .space(SPACE)
            .map_err(|e| FrontendError::Failed(e.to_string()))?;
        let advertised = advertised(&self.config, bound);
        let tls = match &self.config.tls {
            Some(settings) => Some(
                TlsAcceptor::new(settings.clone())
                    .map_err(|e| FrontendError::Failed(format!("kafka: {e}")))?,
            ),
            None => None,
        };
        let tls_listener = match &tls {
            Some(_) => Some(ctx.bind("kafka-tls", self.config.tls_listen).await?),
            None => None,
        };
        let advertised_tls = match &tls_listener {
            Some(l) => {
                let bound = l
                    .local_addr()
                    .map_err(|e| FrontendError::Failed(e.to_string()))?;
                let port = self.config.advertised_tls_port.unwrap_or(bound.port());
                Some((advertised.0.clone(), i32::from(port)))
            }
            None => None,
        };
        let state = Arc::new(Kafka {
            groups: Coordinator::new(
                kv.clone(),
                Duration::from_millis(self.config.group_initial_rebalance_delay_ms),
            ),
            producers: Producers::new(kv.clone(), self.config.max_producers_per_partition),
            metrics: KafkaMetrics::new(&ctx.registry),
            config: self.config,
            storage: ctx.storage.clone(),
            advertised,
            advertised_tls,
            owned: ctx.owned.clone(),
            security: ctx.security.clone(),
            quotas: crate::quota::QuotaBook::default(),
        });
        self.admin.attach(state.clone());
        // Ready once the admin API can answer for this frontend too.
        ctx.ready();
        if let Err(e) = ctx.registry.register(Box::new(GroupCollector::new(&state))) {
            tracing::debug!(error = %e, "kafka group metrics already registered");
        }
        let sweeper = tokio::spawn(Coordinator::sweep(state.clone(), shutdown.clone()));
        let mut connections = tokio::task::JoinSet::new();
        // Decided at accept, before a byte is read.
        let gate = ConnectionGate::new(state.config.connection_limits());
        let handshake =
            Duration::from_millis(state.config.connections_max_idle_ms.clamp(1, 10_000));
        loop {
            let (accepted, secure) = tokio::select! {
                accepted = listener.accept() => (accepted, false),
                accepted = accept_tls(tls_listener.as_ref()) => (accepted, true),
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                _ = shutdown.wait() => break,
            };
            let Ok((stream, peer)) = accepted else {
                // Out of file descriptors, say: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let refused = |why| {
                let errors = &state.metrics.errors;
                errors.with_label_values(&["connection", why]).inc();
            };
            let Some(admitted) = gate.admit_unbanned(&state.security, peer, refused) else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (state, shutdown, tls) = (state.clone(), shutdown.clone(), tls.clone());
            connections.spawn(async move {
                match (secure, tls) {
                    (false, _) => {
                        connection::serve(stream, Some(peer), None, state, shutdown).await
                    }
                    (true, Some(tls)) => match tls.accept(stream, handshake).await {
                        Ok((s, user)) => {
                            connection::serve(s, Some(peer), Some(user), state, shutdown).await
                        }
                        Err(_) => {
                            let errors = &state.metrics.errors;
                            errors
                                .with_label_values(&["connection", "tls_handshake"])
                                .inc();
                        }
                    },
                    (true, None) => {}
                }
                drop(admitted);
            });
        }
        drop(listener);
        strata_frontend::drain(&mut connections, Duration::from_secs(10)).await;
        sweeper.abort();
        Ok(())
    }
}

/// Accepts on the SSL listener, or never when there is none.
async fn accept_tls(
    listener: Option<&tokio::net::TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

fn advertised(config: &KafkaConfig, bound: SocketAddr) -> (String, i32) {
    let host = config.advertised_host.clone().unwrap_or_else(|| {
        if bound.ip().is_unspecified() {
            "localhost".to_string()
        } else {
            bound.ip().to_string()
        }
    });
    let port = config.advertised_port.unwrap_or(bound.port());
    (host, i32::from(port))
}
