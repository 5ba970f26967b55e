//! One client connection: the CONNECT handshake, then packets in, deliveries out, keep
//! alive, takeover and the will. Generic over the byte stream (TCP today).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use strata_frontend::Shutdown;
use strata_frontend::seams::{StoreError, StoreResult, StreamHandles};
use strata_frontend::work_queues::QueueErrorKind;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::Instrument;

use strata_frontend::log_select::{LOG_SELECTORS, MessageLogGuard};

use crate::broker::{Attached, Broker};
use crate::codec::{
    self, Ack, ConnAck, Connect, DecodeError, Disconnect, Packet, Properties, ProtocolVersion,
    Publish, PublishRef, QoS, ReasonCode,
};
use crate::message::{Message, Outgoing};
use crate::session::{ConnectionInfo, Phase, Session, Subscription};
use crate::store;
use crate::topic::validate_name;
use strata_frontend::security::Authenticated;
use strata_frontend::security::acl::{Access, AclRule, Who};
use strata_frontend::security::bans::BanKind;
use strata_frontend::security::cache::DecisionCache;

/// How long a closing connection waits for its last writes and for the client to close.
const LINGER: Duration = Duration::from_secs(1);
/// Bytes reserved before a socket read while a connection is quiet, and the most reserved
/// once reads keep filling the buffer. Buffers start empty and grow only as far as the
/// traffic needs, so idle connections stay small.
const READ_MIN: usize = 512;
const READ_MAX: usize = 64 * 1024;
/// About how many bytes of deliveries are encoded before they are written.
const WRITE_CHUNK: usize = 32 * 1024;
/// Chunks written in a row before the connection looks at its input again.
const PUMP_CHUNKS: usize = 16;
/// Reserved for the CONNECT and a first burst.
const READ_CHUNK: usize = 4 * 1024;

/// How a connection ended, which decides the will.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// DISCONNECT 0x00: discard the will.
    Normal,
    /// DISCONNECT 0x04: publish the will.
    WithWill,
    /// Network error, keep-alive timeout, protocol error: publish the will.
    Abnormal,
    /// Another connection took the session, or the server is stopping: no will.
    Replaced,
}

struct Conn<S> {
    stream: S,
    /// Deliveries not yet added to the shared latency histogram and byte counters.
    delivery: Option<Box<traffic_stats::DeliveryStats>>,
    /// Whether an operator asked for this client's per-message log events.
    log_guard: MessageLogGuard,
    /// PUBLISH packets received in the current read, added to the shared counters per read.
    inbound: traffic_stats::Inbound,
    broker: Arc<Broker>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    version: ProtocolVersion,
    /// Outbound: the client's limits.
    client_receive_max: usize,
    client_max_packet: usize,
    client_alias_max: u16,
    out_aliases: HashMap<String, u16>,
    in_aliases: HashMap<u16, String>,
    keep_alive: Option<Duration>,
    session: Arc<Session>,
    will: Option<(Arc<Message>, Duration)>,
    connect_expiry: u32,
    /// Set by a handler that ends the connection (DISCONNECT).
    ended: Option<End>,
    /// Journal partition this client's messages go to (keeps its messages in order).
    partition: u32,
    /// Bytes to reserve before the next read: doubles while reads fill the buffer, halves
    /// when they do not.
    read_hint: usize,
    /// The authenticated user, if any.
    principal: Option<Arc<str>>,
    /// The client's address, for ACL rules by network.
    ip: Option<std::net::IpAddr>,
    /// ACL decisions already made for this connection (allocated on first use).
    acl: Option<Box<DecisionCache>>,
    /// The client's message and byte rates, when bounded.
    rate: Option<Box<rate::RateLimiter>>,
    /// The enhanced authentication method of CONNECT, and a re-authentication under way.
    reauth: Option<Box<enhanced_auth::Pending>>,
    /// Consumers of work queues this connection subscribed to (allocated on first use).
    consumers: Option<Box<crate::work_queue::Consumers>>,
}

/// A PUBLISH that passed validation, waiting to be stored (when it must be kept), routed
/// and acknowledged.
pub(crate) struct Accepted {
    message: Arc<Message>,
    qos: QoS,
    packet_id: Option<u16>,
    /// A topic rule refused it: acknowledged with this code, neither stored nor routed.
    refused: Option<ReasonCode>,
    /// It goes to a bridged stream too.
    bridged: bool,
    /// The work queue it is sent to instead of being stored and routed.
    queue: Option<Box<str>>,
}

impl Accepted {
    /// Messages that must be stored before they are acknowledged: QoS 1 and 2, retained
    /// ones and those bridged to a stream.
    fn must_keep(&self) -> bool {
        self.refused.is_none()
            && (self.qos != QoS::AtMostOnce
                || self.message.retain
                || self.bridged
                || self.queue.is_some())
    }
}

mod enhanced_auth;
mod handlers;
mod rate;
mod traffic_stats;

/// Where a connection comes from: the client's address and the transport.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's address, when the transport has one.
    pub addr: Option<std::net::SocketAddr>,
    /// `tcp`, `tls`, `websocket` or `websocket-tls`.
    pub transport: &'static str,
    /// The username a verified client certificate gives (mTLS), if any.
    pub cert_user: Option<String>,
}

/// Serves one connection until it ends.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: Peer,
    broker: Arc<Broker>,
    mut shutdown: Shutdown,
) {
    let mut rbuf = BytesMut::new();
    // Before CONNECT the client is nobody: it may make the server hold one CONNECT's worth
    // of bytes, for `connect_timeout_secs`.
    let max = cfg_connect_bytes(&broker);
    let connect_timeout = Duration::from_secs(broker.config.connect_timeout_secs.max(1));
    // The phases before and after the main loop run boxed: a future is as large as its
    // largest state, and every idle connection would carry their states otherwise.
    let first = Box::pin(tokio::time::timeout(connect_timeout, async {
        loop {
            match codec::decode(&mut rbuf, None, max) {
                Ok(Some(Packet::Connect(c))) => return Ok(c),
                Ok(Some(_)) => return Err(DecodeError::Protocol("expected CONNECT".into())),
                Ok(None) => {}
                Err(e) => return Err(e),
            }
            rbuf.reserve(READ_CHUNK);
            match stream.read_buf(&mut rbuf).await {
                Ok(0) | Err(_) => {
                    return Err(DecodeError::Malformed(
                        "connection closed before CONNECT".into(),
                    ));
                }
                Ok(_) => {}
            }
        }
    }))
    .await;
    let connect = match first {
        Ok(Ok(c)) => c,
        Ok(Err(DecodeError::UnsupportedVersion { level, .. })) => {
            // [MQTT-3.1.2-2]: CONNACK "unacceptable protocol version", then close.
            let code = if level >= 5 { 0x84 } else { 0x01 };
            let body = if level >= 5 {
                vec![0x20, 0x03, 0x00, code, 0x00]
            } else {
                vec![0x20, 0x02, 0x00, code]
            };
            let _ = stream.write_all(&body).await;
            broker
                .metrics
                .errors
                .with_label_values(&["unsupported_version"])
                .inc();
            return;
        }
        Ok(Err(e)) => {
            broker
                .metrics
                .errors
                .with_label_values(&[&format!("{:#04x}", e.reason_code().0)])
                .inc();
            tracing::debug!(error = %e, "bad first packet");
            return;
        }
        Err(_) => {
            broker
                .metrics
                .errors
                .with_label_values(&["connect_timeout"])
                .inc();
            return;
        }
    };
    let Some((conn, attached)) =
        Box::pin(handshake(stream, peer, broker.clone(), rbuf, *connect)).await
    else {
        return;
    };
    broker.metrics.connections.inc();
    broker.metrics.connects.inc();
    let client = attached.session.client_id.clone();
    // Every event of this connection carries its client id (a span entered with `enter()`
    // would be wrong across awaits; `instrument` re-enters it at each poll).
    let span = tracing::info_span!("mqtt", client_id = &*client);
    run(conn, attached, &mut shutdown).instrument(span).await;
    broker.metrics.connections.dec();
}

/// Validates CONNECT, attaches the session and sends CONNACK.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: Peer,
    broker: Arc<Broker>,
    rbuf: BytesMut,
    c: Connect,
) -> Option<(Conn<S>, Attached)> {
    let v = c.version;
    let refuse = |v5: ReasonCode, v3: u8| ConnAck {
        session_present: false,
        code: if v.is_v5() { v5 } else { ReasonCode(v3) },
        properties: Properties::default(),
    };
    let mut assigned = None;
    let client_id = if c.client_id.is_empty() {
        if v == ProtocolVersion::V31 || (!c.clean_start && !v.is_v5()) {
            send_connack(
                &mut stream,
                v,
                refuse(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, 0x02),
            )
            .await;
            return None;
        }
        let id = format!("strata-{:016x}", rand_id());
        assigned = Some(id.clone());
        id
    } else {
        c.client_id.clone()
    };
    if client_id.len() > broker.config.max_client_id_length {
        send_connack(
            &mut stream,
            v,
            refuse(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, 0x02),
        )
        .await;
        return None;
    }
    let security = &broker.security;
    // Waiting for a password check or an exchange is bounded like the CONNECT itself.
    let limit = Duration::from_secs(broker.config.connect_timeout_secs.max(1));
    // MQTT 5 enhanced authentication: a SCRAM exchange before CONNACK, whose last message
    // CONNACK carries. Any other method is refused [MQTT-4.12.0-1].
    let mut scram: Option<(String, Vec<u8>)> = None;
    let mut rbuf = rbuf;
    if let Some(method) = c.properties.authentication_method.as_deref() {
        let Some(mechanism) = enhanced_auth::mechanism(method) else {
            send_connack(
                &mut stream,
                v,
                refuse(ReasonCode::BAD_AUTHENTICATION_METHOD, 0x05),
            )
            .await;
            return None;
        };
        let first = c.properties.authentication_data.clone().unwrap_or_default();
        let max = cfg_connect_bytes(&broker);
        let exchange = Box::pin(enhanced_auth::at_connect(
            &mut stream,
            &mut rbuf,
            max,
            security,
            method,
            mechanism,
            &first,
        ));
        let outcome = tokio::time::timeout(limit, exchange)
            .await
            .unwrap_or(Err(ReasonCode::NOT_AUTHORIZED));
        match outcome {
            Ok((user, _)) if c.username.as_deref().is_some_and(|u| u != user) => {
                security.record(&Authenticated::BadCredentials);
                send_connack(
                    &mut stream,
                    v,
                    refuse(ReasonCode::BAD_USER_NAME_OR_PASSWORD, 0x04),
                )
                .await;
                return None;
            }
            Ok(done) => scram = Some(done),
            Err(code) => {
                if code == ReasonCode::BAD_USER_NAME_OR_PASSWORD {
                    security.record(&Authenticated::BadCredentials);
                }
                tracing::debug!(client_id, code = code.0, "enhanced authentication failed");
                send_connack(&mut stream, v, refuse(code, 0x05)).await;
                return None;
            }
        }
    }
    // A verified client certificate names the user; no password is needed then.
    let authenticated = match (&scram, &peer.cert_user) {
        (Some((user, _)), _) => {
            let outcome = Authenticated::User(user.clone());
            security.record(&outcome);
            outcome
        }
        (None, Some(user)) => Authenticated::User(user.clone()),
        (None, None) => {
            let check = security.authenticate(c.username.as_deref(), c.password.as_deref());
            match tokio::time::timeout(limit, check).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    broker
                        .metrics
                        .errors
                        .with_label_values(&["auth_timeout"])
                        .inc();
                    send_connack(&mut stream, v, refuse(ReasonCode::SERVER_BUSY, 0x03)).await;
                    return None;
                }
            }
        }
    };
    // A token brings ACL rules of its own and an end of validity.
    let mut token_rules: Option<Arc<[AclRule]>> = None;
    let mut expires_at = None;
    // A user of the node's (a password or SCRAM, not a certificate): deleting it closes
    // the connection.
    let account = matches!(authenticated, Authenticated::User(_)) && peer.cert_user.is_none()
        || scram.is_some();
    let principal: Option<Arc<str>> = match authenticated {
        Authenticated::User(name) => Some(Arc::from(name)),
        Authenticated::Token(grant) => {
            token_rules = (!grant.rules.is_empty()).then_some(grant.rules);
            expires_at = grant.expires_at;
            Some(Arc::from(grant.username))
        }
        Authenticated::Anonymous => None,
        Authenticated::BadCredentials => {
            tracing::debug!(client_id, "bad user name or password");
            send_connack(
                &mut stream,
                v,
                refuse(ReasonCode::BAD_USER_NAME_OR_PASSWORD, 0x04),
            )
            .await;
            return None;
        }
        Authenticated::NotAuthorized => {
            send_connack(&mut stream, v, refuse(ReasonCode::NOT_AUTHORIZED, 0x05)).await;
            return None;
        }
    };
    // Bans apply to the authenticated user (or, anonymous, to none) and the client id.
    let banned_name = principal.as_deref().or(c.username.as_deref());
    if security.client_banned(&client_id, banned_name) {
        send_connack(&mut stream, v, refuse(ReasonCode::BANNED, 0x05)).await;
        return None;
    }
    // Someone else's client id is refused before it can count towards a flapping ban.
    if !broker.may_own(&client_id, principal.as_deref()) {
        broker
            .metrics
            .errors
            .with_label_values(&["client_id_owned"])
            .inc();
        send_connack(&mut stream, v, refuse(ReasonCode::NOT_AUTHORIZED, 0x05)).await;
        return None;
    }
    // A client id that reconnects too often is banned for a while, this attempt included.
    if security.record_connect(BanKind::ClientId, &client_id) {
        send_connack(&mut stream, v, refuse(ReasonCode::BANNED, 0x05)).await;
        return None;
    }
    let ip = peer.addr.map(|a| a.ip().to_canonical());
    let who = Who {
        username: principal.as_deref(),
        client_id: &client_id,
        ip,
    };
    if let Some(w) = &c.will {
        if validate_name(&w.topic, &broker.limits).is_err() {
            send_connack(&mut stream, v, refuse(ReasonCode::TOPIC_NAME_INVALID, 0x02)).await;
            return None;
        }
        // A will is a publish made later on the client's behalf: the same rules apply.
        let access = Access::Publish {
            topic: &w.topic,
            retain: w.retain,
        };
        let refused = broker.rules.publish_refused(&w.topic).or_else(|| {
            let own = token_rules.as_deref().unwrap_or_default();
            (!security.allows_with(own, &who, access)).then_some(0x87)
        });
        if let Some(code) = refused {
            broker
                .metrics
                .errors
                .with_label_values(&["will_refused"])
                .inc();
            send_connack(&mut stream, v, refuse(ReasonCode(code), 0x05)).await;
            return None;
        }
    }
    if broker.metrics.connections.get() as usize >= broker.config.max_connections {
        send_connack(&mut stream, v, refuse(ReasonCode::SERVER_BUSY, 0x03)).await;
        broker
            .metrics
            .errors
            .with_label_values(&["max_connections"])
            .inc();
        return None;
    }
    let cfg = &broker.config;
    let requested_expiry = if v.is_v5() {
        c.properties.session_expiry_interval.unwrap_or(0)
    } else if c.clean_start {
        0
    } else {
        u32::MAX
    };
    let expiry = requested_expiry.min(cfg.max_session_expiry);
    let mut keep_alive = c.keep_alive;
    let mut props = Properties::default();
    if cfg.max_keep_alive > 0 && (keep_alive == 0 || keep_alive > cfg.max_keep_alive) {
        keep_alive = cfg.max_keep_alive;
        props.server_keep_alive = Some(keep_alive);
    }
    let info = Arc::new(ConnectionInfo {
        peer: peer.addr,
        transport: peer.transport,
        protocol_level: v.level(),
        username: principal
            .as_deref()
            .map(str::to_string)
            .or(c.username.clone()),
        keep_alive_secs: keep_alive,
        connected_at: std::time::SystemTime::now(),
        principal: principal.clone(),
        account,
        acl_rules: token_rules.clone(),
        expires_at,
        evicted: std::sync::atomic::AtomicU8::new(0),
    });
    let attached = match broker.connect(
        &client_id,
        c.clean_start,
        expiry,
        info,
        principal.as_deref(),
    ) {
        Ok(a) => a,
        Err(code) => {
            // 3.1.1 has fewer codes: not authorized stays so, anything else is
            // "server unavailable".
            let v3 = if code == ReasonCode::NOT_AUTHORIZED {
                0x05
            } else {
                0x03
            };
            send_connack(&mut stream, v, refuse(code, v3)).await;
            return None;
        }
    };
    if attached.present {
        // What a resumed session subscribed to is judged again by the ACL as it reads now.
        broker.recheck_subscriptions(&attached.session, &who, token_rules.as_deref());
    }
    if v.is_v5() {
        props.assigned_client_identifier = assigned;
        if let Some((_, server_final)) = &scram {
            props.authentication_method = c.properties.authentication_method.clone();
            props.authentication_data = Some(server_final.clone().into());
        }
        props.receive_maximum = Some(cfg.receive_maximum);
        props.maximum_packet_size = Some(cfg.max_packet_size);
        props.topic_alias_maximum = Some(cfg.topic_alias_maximum);
        props.retain_available = Some(1);
        props.wildcard_subscription_available = Some(1);
        props.subscription_identifier_available = Some(1);
        props.shared_subscription_available = Some(1);
        if expiry != requested_expiry {
            props.session_expiry_interval = Some(expiry);
        }
    }
    let now = Instant::now();
    let will = c.will.map(|w| {
        let delay = Duration::from_secs(u64::from(w.properties.will_delay_interval.unwrap_or(0)));
        let p = Publish {
            dup: false,
            qos: w.qos,
            retain: w.retain,
            topic: w.topic.clone(),
            packet_id: None,
            properties: w.properties,
            payload: w.payload,
        };
        (
            Arc::new(Message::from_publish(
                p,
                w.topic,
                Some(attached.session.client_id.clone()),
                now,
            )),
            delay,
        )
    });
    let mut conn = Conn {
        stream,
        broker: broker.clone(),
        rbuf,
        wbuf: BytesMut::new(),
        version: v,
        client_receive_max: usize::from(c.properties.receive_maximum.unwrap_or(u16::MAX)),
        client_max_packet: c
            .properties
            .maximum_packet_size
            .map_or(usize::MAX, |m| m as usize),
        // Aliases this server assigns: as many as the client takes, within the server's own
        // maximum (each holds a topic).
        client_alias_max: c
            .properties
            .topic_alias_maximum
            .unwrap_or(0)
            .min(cfg.topic_alias_maximum),
        out_aliases: HashMap::new(),
        in_aliases: HashMap::new(),
        keep_alive: (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500)),
        session: attached.session.clone(),
        will,
        connect_expiry: expiry,
        ended: None,
        partition: partition_for(&attached.session.client_id, broker.store.as_deref()),
        read_hint: READ_MIN,
        delivery: None,
        log_guard: MessageLogGuard::default(),
        inbound: traffic_stats::Inbound::default(),
        principal,
        ip,
        acl: token_rules.map(|r| Box::new(DecisionCache::with_rules(r))),
        consumers: None,
        reauth: scram.is_some().then(|| {
            Box::new(enhanced_auth::Pending {
                method: c
                    .properties
                    .authentication_method
                    .clone()
                    .unwrap_or_default(),
                exchange: None,
            })
        }),
        rate: rate::RateLimiter::new(cfg, Instant::now()),
    };
    let ack = ConnAck {
        session_present: attached.present,
        code: ReasonCode::SUCCESS,
        properties: props,
    };
    conn.put(&Packet::ConnAck(ack));
    if attached.present {
        // Work queue messages of the session's last connection: their consumer is gone,
        // they go back to their queues (this connection's consumers take them again).
        drop(
            conn.broker
                .with_state(&conn.session, |st| st.take_receipts()),
        );
        conn.resend();
        // A resumed session's work queue subscriptions consume again.
        if conn.broker.queues.prefix().is_some() {
            let subs: Vec<(String, Subscription)> = conn
                .session
                .state
                .lock()
                .subscriptions
                .iter()
                .map(|(raw, sub)| (raw.clone(), *sub))
                .collect();
            for (raw, sub) in subs {
                conn.consume(&raw, sub);
            }
        }
    }
    Some((conn, attached))
}

/// The most bytes a packet may have before the client is authenticated.
fn cfg_connect_bytes(broker: &Broker) -> usize {
    broker
        .config
        .max_packet_size
        .min(broker.config.max_connect_bytes) as usize
}

async fn send_connack<S: AsyncWrite + Unpin>(stream: &mut S, v: ProtocolVersion, ack: ConnAck) {
    let mut out = BytesMut::new();
    if codec::encode(&Packet::ConnAck(ack), v, usize::MAX, &mut out).is_ok() {
        let _ = stream.write_all(&out).await;
        let _ = stream.flush().await;
    }
}

fn partition_for(client: &str, store: Option<&StreamHandles>) -> u32 {
    store.map_or(0, |s| s.partition_for_key(client.as_bytes()))
}

/// 64 random bits for assigned client identifiers: `RandomState` is seeded randomly per
/// instance, so hashing anything with a fresh one gives an unpredictable value.
fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

/// Sends the publishes of `batch` bound for work queues to their queues: for each
/// publish, the reason its queue refused it, if it did.
async fn send_queued(broker: &Broker, batch: &[Accepted]) -> Vec<Option<QueueErrorKind>> {
    let mut refused = vec![None; batch.len()];
    if batch.iter().all(|a| a.queue.is_none()) {
        return refused;
    }
    let queues = broker.queues.get();
    for (a, refused) in batch.iter().zip(refused.iter_mut()) {
        let Some(queue) = &a.queue else {
            continue;
        };
        let sent = match &queues {
            // The agent frontend is not serving yet.
            None => Err(QueueErrorKind::Unavailable),
            Some(q) => q
                .send(queue, crate::work_queue::item_of(&a.message))
                .await
                .map_err(|e| {
                    tracing::debug!(queue = &**queue, error = %e, "work queue refused a publish");
                    e.kind
                }),
        };
        if let Err(kind) = sent {
            broker
                .metrics
                .dropped
                .with_label_values(&["queue_refused"])
                .inc();
            *refused = Some(kind);
        }
    }
    refused
}

async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    mut conn: Conn<S>,
    attached: Attached,
    shutdown: &mut Shutdown,
) {
    let end = conn.main_loop(&attached, shutdown).await;
    if let Some(consumers) = conn.consumers.as_mut() {
        // None may deliver once the connection ends.
        Box::pin(consumers.stop_all()).await;
    }
    Box::pin(conn.linger()).await;
    traffic_stats::flush(&mut conn.delivery, &conn.broker.metrics);
    let broker = conn.broker.clone();
    let session = conn.session.clone();
    // When another connection took the session over, what is in it is that connection's
    // to send.
    let shared = broker.with_state(&session, |st| {
        match st.connection.as_ref().map(|c| c.generation) {
            Some(g) if g != attached.generation => Vec::new(),
            _ => st.take_shared(),
        }
    });
    if !shared.is_empty() {
        broker.redistribute(&session, shared);
    }
    let will = match end {
        End::Abnormal | End::WithWill => conn.will.take(),
        End::Normal | End::Replaced => None,
    };
    Box::pin(broker.disconnect(&session, attached.generation, will)).await;
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn put(&mut self, p: &Packet) {
        match codec::encode(p, self.version, self.client_max_packet, &mut self.wbuf) {
            Ok(()) => self.broker.metrics.packets_out[usize::from(p.type_id())].inc(),
            Err(e) => tracing::debug!(error = %e, "packet not sent"),
        }
    }

    async fn flush(&mut self) -> bool {
        if self.wbuf.is_empty() {
            return true;
        }
        // Nothing reaches the client before the store holds what it implies.
        if self.broker.sync_durable().is_err() {
            return false;
        }
        let n = self.wbuf.len();
        // A client that stopped reading holds this write: bounded, so it cannot hold its
        // connection, session and buffers forever.
        let limit = Duration::from_secs(self.broker.config.write_timeout_secs.max(1));
        let write = async {
            self.stream.write_all(&self.wbuf).await.is_ok() && self.stream.flush().await.is_ok()
        };
        let ok = match tokio::time::timeout(limit, write).await {
            Ok(ok) => ok,
            Err(_) => {
                self.broker
                    .metrics
                    .errors
                    .with_label_values(&["write_timeout"])
                    .inc();
                false
            }
        };
        if self.wbuf.capacity() > READ_MAX {
            // Give back what a burst grew, so idle connections stay small.
            self.wbuf = BytesMut::new();
        } else {
            self.wbuf.clear();
        }
        self.broker.metrics.bytes_out.inc_by(n as u64);
        ok
    }

    /// Closes our side after the last packet (a DISCONNECT with a reason code, say) and
    /// reads what the client still sends for a moment: closing a socket with unread input
    /// makes the kernel send a reset, which can destroy that DISCONNECT before the client
    /// reads it.
    async fn linger(&mut self) {
        // Bounded: a client that stopped reading must not hold its connection open.
        let _ = tokio::time::timeout(LINGER, self.flush()).await;
        let _ = self.stream.shutdown().await;
        // Read into the heap, not a local array: a local lives in every connection's
        // future, idle or not.
        let mut scratch = vec![0u8; 4096];
        let drain = async {
            while let Ok(n) = self.stream.read(&mut scratch).await {
                if n == 0 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, drain).await;
    }

    /// Resends in-flight messages after a session resumes [MQTT-4.4.0-1].
    fn resend(&mut self) {
        let inflight: Vec<_> = self.session.state.lock().inflight.iter().cloned().collect();
        for f in inflight {
            if f.phase == Phase::AwaitComp {
                self.put(&Packet::PubRel(Ack::new(f.packet_id)));
            } else {
                self.put_publish(&f.out, Some(f.packet_id), true, Instant::now());
            }
        }
    }

    /// Encodes one delivery into the write buffer without copying its topic or payload.
    /// Returns false when it is larger than the client accepts (then nothing is written).
    fn put_publish(
        &mut self,
        out: &Outgoing,
        packet_id: Option<u16>,
        dup: bool,
        now: Instant,
    ) -> bool {
        let m = &out.message;
        let mut properties = Properties::default();
        let mut topic: &str = &m.topic;
        if self.version.is_v5() {
            properties = (*m.properties).clone();
            properties.message_expiry_interval = m.remaining_expiry(now);
            properties.subscription_identifiers = out.subscription_ids.clone();
            if self.client_alias_max > 0 && !dup {
                if let Some(&alias) = self.out_aliases.get(&m.topic) {
                    properties.topic_alias = Some(alias);
                    topic = "";
                } else if self.out_aliases.len() < usize::from(self.client_alias_max) {
                    let alias = self.out_aliases.len() as u16 + 1;
                    self.out_aliases.insert(m.topic.clone(), alias);
                    properties.topic_alias = Some(alias);
                }
            }
        }
        let p = PublishRef {
            dup,
            qos: out.qos,
            retain: out.retain,
            topic,
            packet_id,
            properties: &properties,
            payload: &m.payload,
        };
        match codec::encode_publish(&p, self.version, self.client_max_packet, &mut self.wbuf) {
            Ok(()) => {
                self.broker.metrics.packets_out[3].inc();
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "publish not sent");
                false
            }
        }
    }

    /// Moves queued deliveries into the write buffer, within the in-flight window and
    /// about `WRITE_CHUNK` bytes, so a backlog never grows the buffer past that. True when
    /// more could be sent right away.
    fn pump(&mut self) -> bool {
        let limit = self
            .client_receive_max
            .min(usize::from(self.broker.config.max_inflight))
            .max(1);
        let now = Instant::now();
        let (ready, more) = self.broker.with_state(&self.session, |state| {
            let ready = state.take_sendable(limit, now, WRITE_CHUNK);
            let more = !ready.is_empty() && state.can_send(limit);
            (ready, more)
        });
        let mut sent = [0u64; 3];
        for (id, out) in ready {
            if !self.put_publish(&out, id, false, now) {
                // Larger than the client accepts: discarded [MQTT-3.1.2-25].
                if let Some(id) = id {
                    self.broker.with_state(&self.session, |st| st.forget(id));
                }
                self.broker
                    .metrics
                    .dropped
                    .with_label_values(&["too_large_for_client"])
                    .inc();
                continue;
            }
            if let Some(receipt) = &out.receipt {
                // At QoS 0 nothing acknowledges it: done once sent.
                receipt.sent(out.qos == QoS::AtMostOnce);
            }
            if self
                .log_guard
                .wanted(&LOG_SELECTORS, &self.session.client_id, &out.message.topic)
            {
                let topic = out.message.topic.as_str();
                tracing::debug!(topic, qos = out.qos as u8, "publish sent");
            }
            sent[out.qos as usize] += 1;
            // Deliveries with the retain flag are mostly retained messages sent on
            // subscribe, whose age is not a delivery latency: their bytes count, their
            // latency does not.
            let latency =
                (!out.retain).then(|| now.saturating_duration_since(out.message.received));
            traffic_stats::record(
                &mut self.delivery,
                &self.broker.metrics,
                out.qos as usize,
                out.message.payload.len(),
                latency,
                now,
            );
        }
        for (counter, n) in self.broker.metrics.messages_out.iter().zip(sent) {
            if n > 0 {
                counter.inc_by(n);
            }
        }
        more
    }

    /// Writes queued deliveries chunk by chunk. After `PUMP_CHUNKS` chunks it wakes itself
    /// and returns, so the connection reads its input between the chunks of a long backlog.
    async fn pump_and_flush(&mut self) -> bool {
        for _ in 0..PUMP_CHUNKS {
            let more = self.pump();
            if !self.flush().await {
                return false;
            }
            if !more {
                return true;
            }
        }
        self.session.wake.notify_one();
        true
    }

    async fn main_loop(&mut self, attached: &Attached, shutdown: &mut Shutdown) -> End {
        let mut deadline = self.keep_alive.map(|k| tokio::time::Instant::now() + k);
        // Packets the client sent right behind its CONNECT arrived with it.
        if !self.rbuf.is_empty()
            && let Some(end) = Box::pin(self.drain_packets()).await
        {
            let _ = self.flush().await;
            return end;
        }
        loop {
            // A client that stops reading blocks the flush; a takeover or an operator's
            // kick must still end the connection then (without a DISCONNECT: the stream
            // may be cut mid-packet).
            let pumped = tokio::select! {
                biased;
                pumped = self.pump_and_flush() => pumped,
                _ = attached.kick.notified() => {
                    return if self.evicted(attached).is_some() { End::Abnormal } else { End::Replaced };
                }
            };
            if !pumped {
                return End::Abnormal;
            }
            let keep_alive = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let stats_due = self.delivery.as_ref().map(|s| s.due());
            let stats_window = async {
                match stats_due {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            if self.rbuf.is_empty() && self.rbuf.capacity() > self.read_hint {
                // Give back what a burst grew, so idle connections stay small.
                self.rbuf = BytesMut::new();
            }
            // A client behind its rates is read in small pieces (see `rate::BEHIND_READ`).
            let cap = self.rate.as_ref().map_or(usize::MAX, |r| r.read_cap());
            self.rbuf.reserve(self.read_hint.min(cap));
            let room = self.rbuf.capacity() - self.rbuf.len();
            // Boxed and only when throttled: idle connections carry no timer for it.
            let throttled = self.rate.as_ref().and_then(|r| r.until);
            let timer = throttled.map(|t| Box::pin(tokio::time::sleep_until(t.into())));
            let throttle = async {
                match timer {
                    Some(t) => t.await,
                    None => std::future::pending().await,
                }
            };
            let (stream, rbuf) = (&mut self.stream, &mut self.rbuf);
            let read = async move { stream.read_buf(&mut bytes::BufMut::limit(rbuf, cap)).await };
            tokio::select! {
                _ = throttle => {
                    if let Some(r) = self.rate.as_mut() {
                        r.until = None;
                    }
                    // Its silence was ours: the keep alive counts from here.
                    deadline = self.keep_alive.map(|k| tokio::time::Instant::now() + k);
                }
                read = read, if throttled.is_none() => {
                    match read {
                        Ok(0) | Err(_) => return End::Abnormal,
                        Ok(n) => {
                            self.broker.metrics.bytes_in.inc_by(n as u64);
                            if let Some(r) = self.rate.as_mut() {
                                r.read(n, room.min(cap));
                            }
                            // Capped reads say nothing about the size the client needs.
                            if cap == usize::MAX {
                                self.read_hint = if n >= room {
                                    (self.read_hint * 2).min(READ_MAX)
                                } else {
                                    (self.read_hint / 2).max(READ_MIN)
                                };
                            }
                        }
                    }
                    deadline = self.keep_alive.map(|k| tokio::time::Instant::now() + k);
                    // Boxed: it holds a journal append while it waits, which idle
                    // connections need no room for.
                    if let Some(end) = Box::pin(self.drain_packets()).await {
                        let _ = self.flush().await;
                        return end;
                    }
                    if self.read_hint == READ_MAX {
                        // A publisher flooding full reads: let the subscribers it just fed
                        // run before reading more, so their queues drain instead of filling.
                        tokio::task::yield_now().await;
                    }
                }
                _ = self.session.wake.notified() => {}
                _ = stats_window => traffic_stats::flush(&mut self.delivery, &self.broker.metrics),
                _ = attached.kick.notified() => {
                    // An operator's kick ends the connection as an abnormal end would, so
                    // its will is published (unless the session was discarded, which
                    // detached it first); a takeover ends it without the will.
                    let (reason, end) = match self.evicted(attached) {
                        Some(reason) => (reason, End::Abnormal),
                        None => (ReasonCode::SESSION_TAKEN_OVER, End::Replaced),
                    };
                    self.disconnect_with(reason);
                    let _ = tokio::time::timeout(LINGER, self.flush()).await;
                    return end;
                }
                // While we hold the client back its silence is ours: no keep-alive then.
                _ = keep_alive, if throttled.is_none() => {
                    self.broker.metrics.errors.with_label_values(&["keep_alive_timeout"]).inc();
                    self.disconnect_with(ReasonCode::KEEP_ALIVE_TIMEOUT);
                    let _ = self.flush().await;
                    return End::Abnormal;
                }
                _ = shutdown.wait() => {
                    self.disconnect_with(ReasonCode::SERVER_SHUTTING_DOWN);
                    let _ = self.flush().await;
                    return End::Replaced;
                }
            }
        }
    }

    /// After a kick: the reason the node closed the connection (an operator, a ban,
    /// expired credentials; counted), or `None` when another connection took the session
    /// over.
    fn evicted(&self, attached: &Attached) -> Option<ReasonCode> {
        let code = attached
            .info
            .evicted
            .load(std::sync::atomic::Ordering::Acquire);
        if code == 0 {
            return None;
        }
        let label = match ReasonCode(code) {
            ReasonCode::NOT_AUTHORIZED => "credentials_expired",
            _ => "administrative_action",
        };
        self.broker.metrics.errors.with_label_values(&[label]).inc();
        Some(ReasonCode(code))
    }

    fn disconnect_with(&mut self, reason: ReasonCode) {
        if self.version.is_v5() {
            self.put(&Packet::Disconnect(Disconnect {
                reason,
                properties: Properties::default(),
            }));
        }
    }

    /// Handles every complete packet in the read buffer; `Some` ends the connection.
    /// Consecutive publishes that must be kept are stored in one journal append, then
    /// routed and acknowledged; any other packet first completes those before it.
    async fn drain_packets(&mut self) -> Option<End> {
        let end = self.drain_read().await;
        let (messages, bytes) = self.inbound.totals();
        self.inbound.flush(&self.broker.metrics);
        if end.is_some() {
            return end;
        }
        let now = Instant::now();
        let verdict = self.rate.as_mut().map(|r| r.charge(messages, bytes, now));
        match verdict {
            Some(rate::Verdict::Cut) => {
                return Some(self.fail(ReasonCode::MESSAGE_RATE_TOO_HIGH));
            }
            Some(rate::Verdict::Wait(_)) => {
                self.broker
                    .metrics
                    .errors
                    .with_label_values(&["throttled"])
                    .inc();
            }
            _ => {}
        }
        None
    }

    /// [`Conn::drain_packets`] without the counter flush.
    async fn drain_read(&mut self) -> Option<End> {
        let mut pending: Vec<Accepted> = Vec::new();
        let end = loop {
            let max = self.broker.config.max_packet_size as usize;
            let packet = match codec::decode(&mut self.rbuf, Some(self.version), max) {
                Ok(None) => break None,
                Ok(Some(p)) => {
                    // PUBLISH packets are counted by `accept_publish`, per read.
                    if !matches!(p, Packet::Publish(_)) {
                        self.broker.metrics.packets_in[usize::from(p.type_id())].inc();
                    }
                    p
                }
                Err(e) => {
                    tracing::debug!(error = %e, "bad packet");
                    break Some(e.reason_code());
                }
            };
            if let Packet::Publish(p) = packet {
                match self.accept_publish(p) {
                    Ok(Some(a)) if a.must_keep() => pending.push(a),
                    Ok(Some(a)) => {
                        if let Some(end) = self.commit(&mut pending).await {
                            return Some(end);
                        }
                        self.finish_publish(a, None);
                    }
                    Ok(None) => {}
                    Err(reason) => break Some(reason),
                }
                continue;
            }
            if let Some(end) = self.commit(&mut pending).await {
                return Some(end);
            }
            if let Err(reason) = self.handle(packet) {
                break Some(reason);
            }
            if let Some(end) = self.ended.take() {
                return Some(end);
            }
        };
        if let Some(end) = self.commit(&mut pending).await {
            return Some(end);
        }
        end.map(|reason| self.fail(reason))
    }

    /// Stores the pending publishes in one journal append, then routes and acknowledges
    /// them. When the append fails nothing is routed: MQTT 5 clients get the error code
    /// in PUBACK/PUBREC; an MQTT 3 client, which cannot be told, is disconnected.
    async fn commit(&mut self, pending: &mut Vec<Accepted>) -> Option<End> {
        if pending.is_empty() {
            return None;
        }
        let mut batch: Vec<Accepted> = std::mem::take(pending);
        let queued = Box::pin(send_queued(&self.broker.clone(), &batch)).await;
        let kept = batch.iter().any(|a| a.queue.is_none());
        let stored = if kept {
            self.store(&mut batch).await
        } else {
            Ok(())
        };
        let stored = match stored {
            Ok(()) if batch.iter().any(|a| a.bridged) => {
                let bridged: Vec<&Message> = batch
                    .iter()
                    .filter(|a| a.bridged)
                    .map(|a| &*a.message)
                    .collect();
                self.broker.bridges.forward(&bridged).await
            }
            other => other,
        };
        let error = match stored {
            Ok(()) => None,
            Err(e) => {
                tracing::error!(stream = store::STREAM, partition = self.partition, error = %e, "cannot store MQTT messages; not acknowledging them");
                self.broker
                    .metrics
                    .dropped
                    .with_label_values(&["store_failed"])
                    .inc_by(batch.len() as u64);
                if !self.version.is_v5() {
                    for a in &batch {
                        if let Some(id) = a.packet_id {
                            self.broker
                                .with_state(&self.session, |st| st.release_incoming(id));
                        }
                    }
                    return Some(End::Abnormal);
                }
                Some(ReasonCode::UNSPECIFIED_ERROR)
            }
        };
        if !self.version.is_v5()
            && queued
                .iter()
                .flatten()
                .any(|&kind| !crate::work_queue::refused_for_good(kind))
        {
            // An MQTT 3 client cannot be told its message was refused. One that may be
            // kept later (a full queue) is not acknowledged: the client resends it on its
            // next connection. One that never will be is acknowledged (and counted), as
            // an ACL refusal is, so the client does not resend it forever.
            tracing::debug!("work queue refused an MQTT 3 publish for now");
            for a in &batch {
                if let Some(id) = a.packet_id {
                    self.broker
                        .with_state(&self.session, |st| st.release_incoming(id));
                }
            }
            return Some(End::Abnormal);
        }
        let broker = self.broker.clone();
        let _group = broker.write_group();
        for (a, queued) in batch.into_iter().zip(queued) {
            let error = match a.queue {
                Some(_) => queued.map(crate::work_queue::reason_for),
                None => error,
            };
            self.finish_publish(a, error);
        }
        None
    }

    /// Appends the messages of `batch` that are kept (not handed to a work queue) to the
    /// journal in one batch ([`store::append`]: tried again while the partition has no
    /// leader) and records where each one is.
    async fn store(&mut self, batch: &mut [Accepted]) -> StoreResult<()> {
        let Some(stream) = &self.broker.store else {
            return Ok(());
        };
        let partition = stream
            .get(self.partition)
            .ok_or_else(|| StoreError::UnknownPartition {
                stream: stream.name().to_string(),
                partition: self.partition,
            })?;
        let kept = || {
            let kept = batch.iter().filter(|a| a.queue.is_none());
            Ok(store::batch(kept.map(|a| &*a.message))?)
        };
        let appended = store::append(partition, kept).await?;
        let kept = batch.iter_mut().filter(|a| a.queue.is_none());
        for (i, a) in kept.enumerate() {
            if let Some(m) = Arc::get_mut(&mut a.message) {
                m.stored = Some((self.partition, appended.base_offset + i as u64));
            }
        }
        Ok(())
    }

    fn fail(&mut self, reason: ReasonCode) -> End {
        self.broker
            .metrics
            .errors
            .with_label_values(&[&format!("{:#04x}", reason.0)])
            .inc();
        self.disconnect_with(reason);
        End::Abnormal
    }
}

#[cfg(test)]
mod tests {
    /// Every connection's task holds this future for its whole life, so its size is part of
    /// the memory of each idle connection (4 KiB per connection more when a 4 KiB read
    /// array was a local of an async fn).
    #[test]
    fn the_connection_future_stays_small() {
        let broker = std::sync::Arc::new(crate::broker::Broker::new(
            crate::config::MqttConfig::default(),
            crate::metrics::MqttMetrics::new(&prometheus::Registry::new()),
            None,
        ));
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let peer = super::Peer {
            addr: None,
            transport: "tcp",
            cert_user: None,
        };
        let future = super::serve(
            tokio::io::empty(),
            peer,
            broker,
            strata_frontend::Shutdown::new(rx),
        );
        let size = std::mem::size_of_val(&future);
        assert!(size <= 2048, "connection future is {size} bytes");
    }
}
