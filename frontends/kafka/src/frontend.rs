//! The Kafka frontend: its listeners and the connections they accept.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use strata_frontend::accept::{Accepted, Acceptor};
use strata_frontend::admin::http::AdminApi;
use strata_frontend::admission::ConnectionGate;
use strata_frontend::seams::Storage;
use strata_frontend::seams::positions::SpacePositions;
use strata_frontend::tls::TlsAcceptor;
use strata_frontend::{Frontend, FrontendError, NodeContext, Shutdown};

use crate::admin::{GroupCollector, KafkaAdmin};
use crate::config::KafkaConfig;
use crate::connection;
use crate::groups::Coordinator;
use crate::metrics::KafkaMetrics;
use crate::producers::Producers;
use crate::state::Kafka;

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

#[async_trait]
impl Frontend for KafkaFrontend {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn admin_api(&self, _ctx: &NodeContext) -> Option<AdminApi> {
        Some(crate::admin_api::api(self.admin.clone()))
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
        tokio::spawn(hand_over_offsets(
            SpacePositions::new(kv.clone(), ctx.storage.catalog.clone()),
            ctx.storage.clone(),
        ));
        let state = Arc::new(Kafka {
            groups: Coordinator::new(
                ctx.storage.positions.clone(),
                Duration::from_millis(self.config.group_initial_rebalance_delay_ms),
            ),
            producers: Producers::new(
                kv.clone(),
                self.config.max_producers_per_partition,
                ctx.storage.catalog.node_id(),
            ),
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
        strata_metrics::register_collector(&ctx.registry, Box::new(GroupCollector::new(&state)));
        let sweeper = {
            let (state, shutdown) = (state.clone(), shutdown.clone());
            tokio::spawn(async move { state.groups.sweep(shutdown).await })
        };
        let mut connections = tokio::task::JoinSet::new();
        // Decided at accept, before a byte is read.
        let gate = ConnectionGate::new(state.config.connection_limits());
        let handshake =
            Duration::from_millis(state.config.connections_max_idle_ms.clamp(1, 10_000));
        let mut listeners = vec![(false, listener)];
        listeners.extend(tls_listener.map(|l| (true, l)));
        let errors = state.metrics.errors.clone();
        let mut acceptor = Acceptor::start(listeners, gate, state.security.clone(), move |why| {
            errors.with_label_values(&["connection", why]).inc();
        });
        loop {
            let socket = tokio::select! {
                socket = acceptor.next() => socket,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                _ = shutdown.wait() => break,
            };
            let (state, shutdown, tls) = (state.clone(), shutdown.clone(), tls.clone());
            connections.spawn(async move {
                let Accepted {
                    kind: secure,
                    stream,
                    addr: peer,
                    admitted,
                } = socket;
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
        drop(acceptor);
        strata_frontend::drain(&mut connections, Duration::from_secs(10)).await;
        sweeper.abort();
        Ok(())
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

/// How long offsets committed while they were a node's own state wait for their streams
/// to be known to the cluster (a node's streams are recorded there just after its
/// frontends start).
const HAND_OVER_FOR: Duration = Duration::from_secs(120);

/// Hands the offsets this node kept in its own store (before they were the cluster's) to
/// the store every node serves, retrying while their streams are not known yet.
async fn hand_over_offsets(own: SpacePositions, storage: Storage) {
    let started = std::time::Instant::now();
    loop {
        match own
            .hand_over(storage.positions.as_ref(), storage.catalog.as_ref())
            .await
        {
            Ok((moved, 0)) => {
                if moved > 0 {
                    tracing::info!(moved, "committed offsets handed to the cluster");
                }
                return;
            }
            Ok((moved, left)) if started.elapsed() >= HAND_OVER_FOR => {
                tracing::warn!(
                    moved,
                    left,
                    "committed offsets of unknown topics stay in this node's store"
                );
                return;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot hand committed offsets over yet"),
        }
        if started.elapsed() >= HAND_OVER_FOR {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
