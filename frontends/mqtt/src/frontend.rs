//! The MQTT frontend: the TCP listener, housekeeping (wills, session expiry) and the
//! `$SYS` topics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use strata_frontend::accept::{Accepted, Acceptor};
use strata_frontend::admin::http::AdminApi;
use strata_frontend::admission::ConnectionGate;
use strata_frontend::owned::{OwnedStreams, Ownership};
use strata_frontend::seams::{StoreError, StreamHandles, StreamSpec};
use strata_frontend::tls::TlsAcceptor;
use strata_frontend::{Frontend, FrontendError, NodeContext, Shutdown};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::admin::MqttAdmin;
use crate::bridge::{self, Bridges};
use crate::broker::Broker;
use crate::codec::{Properties, QoS};
use crate::config::MqttConfig;
use crate::connection::Peer;
use crate::message::Message;
use crate::metrics::MqttMetrics;
use crate::persist::{self, Persist};
use crate::{connection, store, websocket};

/// The MQTT frontend.
#[derive(Debug)]
pub struct MqttFrontend {
    config: MqttConfig,
    admin: MqttAdmin,
}

impl MqttFrontend {
    /// A frontend with these settings.
    pub fn new(config: MqttConfig) -> Self {
        MqttFrontend {
            config,
            admin: MqttAdmin::default(),
        }
    }

    /// The admin API's handle on this frontend; it answers once the frontend has started.
    pub fn admin(&self) -> MqttAdmin {
        self.admin.clone()
    }
}

#[async_trait]
impl Frontend for MqttFrontend {
    fn name(&self) -> &'static str {
        "mqtt"
    }

    fn claim_streams(&self, owned: &OwnedStreams) {
        // Stored MQTT messages, whatever their topic: not for other protocols to read
        // past the topic rules, nor to write records MQTT recovery would misread.
        owned.claim(store::STREAM, "mqtt", Ownership::Internal);
        for to in &self.config.bridge_to_stream {
            owned.claim(&to.stream, "mqtt", Ownership::Shared);
        }
        for from in &self.config.bridge_from_stream {
            owned.claim(&from.stream, "mqtt", Ownership::Shared);
        }
    }

    fn admin_api(&self, ctx: &NodeContext) -> Option<AdminApi> {
        Some(crate::admin_api::api(
            self.admin.clone(),
            ctx.storage.clone(),
        ))
    }

    async fn serve(
        self: Box<Self>,
        ctx: NodeContext,
        mut shutdown: Shutdown,
    ) -> Result<(), FrontendError> {
        let config = &self.config;
        let mut bound = Vec::new();
        if config.plaintext {
            bound.push((Transport::Tcp, ctx.bind("mqtt", config.listen).await?));
            if config.ws_enabled {
                bound.push((Transport::Ws, ctx.bind("mqtt-ws", config.ws_listen).await?));
            }
        }
        let tls = match &config.tls {
            Some(settings) => Some(
                TlsAcceptor::new(settings.clone())
                    .map_err(|e| FrontendError::Failed(format!("mqtt: {e}")))?,
            ),
            None => None,
        };
        if tls.is_some() {
            bound.push((
                Transport::Tls,
                ctx.bind("mqtt-tls", config.tls_listen).await?,
            ));
            if config.ws_enabled {
                bound.push((
                    Transport::Wss,
                    ctx.bind("mqtt-wss", config.wss_listen).await?,
                ));
            }
        }
        ctx.ready();
        let Some(store) = open_store(&ctx, self.config.journal_partitions, &mut shutdown).await?
        else {
            return Ok(());
        };
        let mut broker = Broker::new(
            self.config.clone(),
            MqttMetrics::new(&ctx.registry),
            Some(store),
        );
        broker.security = ctx.security.clone();
        broker.queues = ctx.queues.clone();
        broker.bridges = Bridges::open(&ctx.storage, &self.config.bridge_to_stream)
            .await
            .map_err(fail)?;
        let mut from_streams = Vec::new();
        for from in &self.config.bridge_from_stream {
            let s = bridge::stream(&ctx.storage, &from.stream)
                .await
                .map_err(fail)?;
            from_streams.push((from.clone(), s));
        }
        let space = ctx.storage.state.space(persist::SPACE).map_err(fail)?;
        let bridge_space = space.clone();
        // Reading every stored session is synchronous RocksDB work: off the async workers.
        let stopping = shutdown.clone();
        let recovered = tokio::task::spawn_blocking(move || {
            let loaded = broker.recover(Persist::new(space), stopping);
            loaded.map(|(sessions, retained)| {
                tracing::info!(sessions, retained, "mqtt state recovered");
                broker
            })
        })
        .await
        .map_err(fail)?;
        let broker = match recovered {
            Ok(broker) => broker,
            // Stopped while recovery waited for the message store: nothing was lost.
            Err(_) if shutdown.is_set() => return Ok(()),
            Err(e) => return Err(fail(e)),
        };
        let broker = Arc::new(broker);
        self.admin.attach(broker.clone());
        let housekeeping = tokio::spawn(housekeeping(broker.clone(), shutdown.clone()));
        let bridges: Vec<_> = from_streams
            .into_iter()
            .map(|(from, stream)| {
                tokio::spawn(crate::bridge_from::run_from_stream(
                    broker.clone(),
                    bridge_space.clone(),
                    from,
                    stream,
                    shutdown.clone(),
                ))
            })
            .collect();
        let mut connections = tokio::task::JoinSet::new();
        // Decided at accept, before a byte is read: sockets open at once (with or without
        // CONNECT), per address, and new connections per second per address. One gate for
        // every listener.
        let gate = ConnectionGate::new(self.config.connection_limits());
        let errors = broker.metrics.errors.clone();
        let mut acceptor = Acceptor::start(bound, gate, broker.security.clone(), move |why| {
            errors.with_label_values(&[why]).inc();
        });
        let spawn = Arc::new(Spawn {
            tls,
            handshake_timeout: Duration::from_secs(self.config.connect_timeout_secs.max(1)),
            ws_frame_limit: self.config.max_packet_size as usize,
        });
        loop {
            tokio::select! {
                socket = acceptor.next() => {
                    let (broker, shutdown, spawn) = (broker.clone(), shutdown.clone(), spawn.clone());
                    broker.metrics.sockets.inc();
                    connections.spawn(async move {
                        let Accepted { kind, stream, addr, admitted } = socket;
                        spawn.serve(kind, stream, addr, broker.clone(), shutdown).await;
                        drop(admitted);
                        broker.metrics.sockets.dec();
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = shutdown.wait() => break,
            }
        }
        drop(acceptor);
        // Connections see the same signal, send DISCONNECT 0x8B (MQTT 5) and end.
        strata_frontend::drain(&mut connections, Duration::from_secs(10)).await;
        housekeeping.abort();
        for b in bridges {
            b.abort();
        }
        Ok(())
    }
}

/// The journal stream MQTT messages are kept in, created on first start; `None` when the
/// node stops first. In a cluster it is the cluster's, created once enough nodes are up to
/// keep its copies: until then (and while the meta service has no leader) this waits,
/// the listeners bound and connections waiting in their backlog.
async fn open_store(
    ctx: &NodeContext,
    partitions: u32,
    shutdown: &mut Shutdown,
) -> Result<Option<Arc<StreamHandles>>, FrontendError> {
    let mut told: Option<Instant> = None;
    loop {
        let spec = StreamSpec::new(store::STREAM, partitions);
        match StreamHandles::open(&ctx.storage, spec).await {
            Ok(handles) => return Ok(Some(Arc::new(handles))),
            Err(e @ StoreError::Unavailable(_)) => {
                if told.is_none_or(|at| at.elapsed() >= STORE_WAIT_LOG_EVERY) {
                    told = Some(Instant::now());
                    tracing::warn!(stream = store::STREAM, error = %e,
                        "waiting for the MQTT message store; connections wait meanwhile");
                }
                tokio::select! {
                    () = tokio::time::sleep(STORE_RETRY) => {}
                    () = shutdown.wait() => return Ok(None),
                }
            }
            Err(e) => {
                return Err(FrontendError::Failed(format!(
                    "cannot open the {} stream: {e}",
                    store::STREAM
                )));
            }
        }
    }
}

/// How often opening the message store is tried again while it is unavailable.
const STORE_RETRY: Duration = Duration::from_millis(250);
/// How often a store that stays unavailable is logged.
const STORE_WAIT_LOG_EVERY: Duration = Duration::from_secs(10);

/// The kind of listener a socket came in on.
#[derive(Debug, Clone, Copy)]
enum Transport {
    Tcp,
    Ws,
    Tls,
    Wss,
}

/// What serving a socket of any transport needs besides the broker.
struct Spawn {
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
    ws_frame_limit: usize,
}

impl Spawn {
    /// Runs the transport's handshakes (TLS, WebSocket, each within the CONNECT timeout),
    /// then serves the MQTT connection.
    async fn serve(
        &self,
        transport: Transport,
        stream: TcpStream,
        addr: SocketAddr,
        broker: Arc<Broker>,
        shutdown: Shutdown,
    ) {
        let peer = |transport, cert_user| Peer {
            addr: Some(addr),
            transport,
            cert_user,
        };
        let failed = |what: &str| broker.metrics.errors.with_label_values(&[what]).inc();
        match (transport, &self.tls) {
            (Transport::Tcp, _) => {
                connection::serve(stream, peer("tcp", None), broker.clone(), shutdown).await
            }
            (Transport::Ws, _) => match self.websocket(stream).await {
                Some(ws) => {
                    connection::serve(ws, peer("websocket", None), broker.clone(), shutdown).await
                }
                None => failed("websocket_handshake"),
            },
            (Transport::Tls | Transport::Wss, None) => {}
            (Transport::Tls, Some(tls)) => match tls.accept(stream, self.handshake_timeout).await {
                Ok((s, user)) => {
                    connection::serve(s, peer("tls", user), broker.clone(), shutdown).await
                }
                Err(_) => failed("tls_handshake"),
            },
            (Transport::Wss, Some(tls)) => match tls.accept(stream, self.handshake_timeout).await {
                Ok((s, user)) => match self.websocket(s).await {
                    Some(ws) => {
                        connection::serve(ws, peer("websocket-tls", user), broker.clone(), shutdown)
                            .await
                    }
                    None => failed("websocket_handshake"),
                },
                Err(_) => failed("tls_handshake"),
            },
        }
    }

    async fn websocket<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
    ) -> Option<websocket::WsBytes<S>> {
        let handshake = websocket::accept(stream, self.ws_frame_limit);
        tokio::time::timeout(self.handshake_timeout, handshake)
            .await
            .ok()?
            .ok()
    }
}

/// Once a second: due wills and expired sessions; every `sys_interval_secs`: `$SYS`.
fn fail(e: impl std::fmt::Display) -> FrontendError {
    FrontendError::Failed(format!("mqtt: cannot recover sessions: {e}"))
}

async fn housekeeping(broker: Arc<Broker>, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let sys_every = broker.config.sys_interval_secs;
    let mut last_sys: Option<Instant> = None;
    let mut bans_seen = broker.security.bans_generation();
    let mut revoked_seen = (
        broker.security.acl_generation(),
        broker.security.users_generation(),
    );
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => return,
        }
        let now = Instant::now();
        broker.housekeep(now).await;
        bans_seen = broker.close_banned(bans_seen);
        broker.close_expired(std::time::SystemTime::now());
        revoked_seen = broker.revoke(revoked_seen);
        if sys_every > 0
            && last_sys.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(sys_every))
        {
            last_sys = Some(now);
            publish_sys(&broker);
        }
    }
}

fn publish_sys(broker: &Broker) {
    let m = &broker.metrics;
    let sum = |v: &[prometheus::IntCounter; 3]| v.iter().map(|c| c.get()).sum::<u64>();
    let (sessions, connected) = broker.session_counts();
    let values: [(&str, String); 10] = [
        ("version", format!("strata {}", env!("CARGO_PKG_VERSION"))),
        (
            "uptime",
            format!("{} seconds", broker.started.elapsed().as_secs()),
        ),
        ("clients/connected", connected.to_string()),
        ("clients/total", sessions.to_string()),
        ("messages/received", sum(&m.messages_in).to_string()),
        ("messages/sent", sum(&m.messages_out).to_string()),
        ("bytes/received", m.bytes_in.get().to_string()),
        ("bytes/sent", m.bytes_out.get().to_string()),
        ("subscriptions/count", m.subscriptions.get().to_string()),
        (
            "retained messages/count",
            broker.retained_count().to_string(),
        ),
    ];
    for (topic, value) in values {
        broker.publish(Arc::new(Message {
            topic: format!("$SYS/broker/{topic}"),
            payload: Bytes::from(value),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: crate::message::forwarded(Properties::default()),
            expires_at: None,
            publisher: None,
            stored: None,
            received: Instant::now(),
        }));
    }
}
