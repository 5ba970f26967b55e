//! The MQTT frontend's admin surface: sessions and their connections, subscriptions and
//! retained messages as the node's HTTP API shows them, and the operator's actions on
//! them (close a connection, discard a session, delete a retained message).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, UNIX_EPOCH};

use base64::Engine;
use serde::{Deserialize, Serialize};
use strata_frontend::admin::{AdminError, Live, Page, PageRequest};
use utoipa::{IntoParams, ToSchema};

use crate::broker::Broker;
use crate::codec::ReasonCode;
use crate::session::{ConnectionInfo, Session, SessionState};
use crate::topic::{matches, parse_filter};

/// A cloneable handle on the running MQTT frontend for the admin API.
#[derive(Debug, Clone)]
pub struct MqttAdmin {
    broker: Live<Broker>,
}

impl Default for MqttAdmin {
    fn default() -> Self {
        MqttAdmin {
            broker: Live::new("MQTT"),
        }
    }
}

/// A session, with its connection while one is attached.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionView {
    /// Client identifier.
    pub client_id: String,
    /// A connection is attached.
    pub connected: bool,
    /// The attached connection, if any.
    pub connection: Option<ConnectionView>,
    /// Session expiry interval in seconds; none when the session never expires.
    pub session_expiry_secs: Option<u32>,
    /// Seconds since the last connection ended (none while connected).
    pub disconnected_secs: Option<u64>,
    /// Its state is kept in the node's store and survives a restart.
    pub durable: bool,
    /// Number of subscriptions.
    pub subscriptions: usize,
    /// QoS 1/2 messages sent and not yet acknowledged.
    pub inflight: usize,
    /// Messages waiting to be sent.
    pub queued: usize,
    /// Bytes (topics and payloads) of the queued messages.
    pub queued_bytes: u64,
    /// Messages dropped because the queue was full.
    pub dropped: u64,
}

/// A live connection.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConnectionView {
    /// The client's address (`ip:port`), when the transport has one.
    pub peer: Option<String>,
    /// `tcp` or `websocket`.
    pub transport: String,
    /// Protocol level: 3 (MQTT 3.1), 4 (3.1.1) or 5.
    pub protocol_version: u8,
    /// User name from CONNECT.
    pub username: Option<String>,
    /// Keep alive in effect, in seconds (0: none).
    pub keep_alive_secs: u16,
    /// When CONNECT was accepted, in milliseconds since the Unix epoch.
    pub connected_at_ms: u64,
}

/// A session with its subscriptions.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionDetail {
    /// The session.
    pub session: SessionView,
    /// Its subscriptions, by filter.
    pub subscriptions: Vec<SubscriptionView>,
}

/// One subscription.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubscriptionView {
    /// Client identifier of the subscriber.
    pub client_id: String,
    /// Topic filter as subscribed (including `$share/<group>/` for shared ones).
    pub filter: String,
    /// Maximum QoS granted.
    pub qos: u8,
    /// MQTT 5 no-local option.
    pub no_local: bool,
    /// MQTT 5 retain-as-published option.
    pub retain_as_published: bool,
    /// MQTT 5 retain handling (0, 1 or 2).
    pub retain_handling: u8,
    /// MQTT 5 subscription identifier.
    pub identifier: Option<u32>,
    /// The shared subscription group, for `$share/...` filters.
    pub share_group: Option<String>,
}

/// A retained message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RetainedView {
    /// Topic name.
    pub topic: String,
    /// QoS it was published with.
    pub qos: u8,
    /// Payload size in bytes.
    pub payload_bytes: usize,
    /// Client identifier of the publisher, if a client published it.
    pub publisher: Option<String>,
    /// Seconds until it expires (MQTT 5 message expiry), if it does.
    pub expires_in_secs: Option<u64>,
    /// MQTT 5 content type.
    pub content_type: Option<String>,
}

/// A retained message with its payload.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RetainedDetail {
    /// The message.
    pub message: RetainedView,
    /// The payload, base64 (standard alphabet, padded).
    pub payload_base64: String,
    /// The payload as text, when it is valid UTF-8.
    pub payload_utf8: Option<String>,
}

macro_rules! page_type {
    ($name:ident, $item:ty, $what:literal) => {
        #[doc = concat!("One page of ", $what, ".")]
        #[derive(Debug, Clone, Serialize, ToSchema)]
        pub struct $name {
            /// The items, in key order.
            pub items: Vec<$item>,
            /// Pass as `cursor` for the next page; none on the last page.
            pub next_cursor: Option<String>,
            /// How many items matched over all pages.
            pub total: usize,
        }

        impl From<Page<$item>> for $name {
            fn from(p: Page<$item>) -> Self {
                $name {
                    items: p.items,
                    next_cursor: p.next_cursor,
                    total: p.total,
                }
            }
        }
    };
}

page_type!(SessionPage, SessionView, "sessions or clients");
page_type!(SubscriptionPage, SubscriptionView, "subscriptions");
page_type!(RetainedPage, RetainedView, "retained messages");

/// Filters and paging of `GET /api/v1/mqtt/clients` (connected clients only).
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ClientQuery {
    /// Only client ids starting with this.
    pub client_id_prefix: Option<String>,
    /// Only clients that connected with this user name.
    pub username: Option<String>,
    /// Only clients speaking this protocol level (3, 4 or 5).
    #[param(minimum = 3, maximum = 5)]
    pub protocol_version: Option<u8>,
    /// Only clients whose address (`ip:port`) starts with this.
    pub peer_prefix: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^(c([0-9a-fA-F]{2})*)?$")]
    pub cursor: Option<String>,
    /// Most items in the page (1-1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// Filters and paging of `GET /api/v1/mqtt/sessions`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionQuery {
    /// Only client ids starting with this.
    pub client_id_prefix: Option<String>,
    /// Only connected (`true`) or only disconnected (`false`) sessions.
    pub connected: Option<bool>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^(c([0-9a-fA-F]{2})*)?$")]
    pub cursor: Option<String>,
    /// Most items in the page (1-1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// Filters and paging of `GET /api/v1/mqtt/subscriptions`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubscriptionQuery {
    /// Only this client's subscriptions.
    pub client_id: Option<String>,
    /// Only subscriptions whose filter matches this topic name.
    pub topic: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^(c([0-9a-fA-F]{2})*)?$")]
    pub cursor: Option<String>,
    /// Most items in the page (1-1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// Filters and paging of `GET /api/v1/mqtt/retained`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RetainedQuery {
    /// Only topics matching this filter (wildcards allowed; default `#`, which like any
    /// MQTT filter does not match `$`-topics such as `$SYS/...`).
    #[param(
        min_length = 1,
        pattern = r"^(#|(\+|[^#+/\x00]*)(/(\+|[^#+/\x00]*))*(/#)?)$"
    )]
    pub filter: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^(c([0-9a-fA-F]{2})*)?$")]
    pub cursor: Option<String>,
    /// Most items in the page (1-1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

fn page(cursor: &Option<String>, limit: Option<usize>) -> PageRequest {
    PageRequest {
        cursor: cursor.clone(),
        limit,
    }
}

impl MqttAdmin {
    /// Connects the handle to the running broker (done once by the frontend).
    pub(crate) fn attach(&self, broker: Arc<Broker>) {
        self.broker.attach(broker);
    }

    fn broker(&self) -> Result<&Arc<Broker>, AdminError> {
        self.broker.get()
    }

    /// Connected clients matching `q`, a page of them.
    pub fn clients(&self, q: &ClientQuery) -> Result<SessionPage, AdminError> {
        if q.protocol_version.is_some_and(|v| !(3..=5).contains(&v)) {
            return Err(AdminError::BadRequest(
                "protocol_version must be 3, 4 or 5".into(),
            ));
        }
        let views = self.broker()?.sessions_view(|s| {
            let Some(c) = &s.connection else {
                return false;
            };
            prefixed(&s.client_id, &q.client_id_prefix)
                && q.username
                    .as_ref()
                    .is_none_or(|u| c.username.as_ref() == Some(u))
                && q.protocol_version.is_none_or(|v| c.protocol_version == v)
                && q.peer_prefix.as_ref().is_none_or(|p| {
                    c.peer
                        .as_deref()
                        .is_some_and(|peer| peer.starts_with(p.as_str()))
                })
        });
        Ok(page(&q.cursor, q.limit).page(views)?.into())
    }

    /// Sessions (connected or not) matching `q`, a page of them.
    pub fn sessions(&self, q: &SessionQuery) -> Result<SessionPage, AdminError> {
        let views = self.broker()?.sessions_view(|s| {
            prefixed(&s.client_id, &q.client_id_prefix)
                && q.connected.is_none_or(|c| c == s.connected)
        });
        Ok(page(&q.cursor, q.limit).page(views)?.into())
    }

    /// One session with its subscriptions.
    pub fn session(&self, client_id: &str) -> Result<SessionDetail, AdminError> {
        let broker = self.broker()?;
        let session = broker.find_session(client_id)?;
        let st = session.state.lock();
        let mut subscriptions = subscription_views(&session.client_id, &st);
        subscriptions.sort_by(|a, b| a.filter.cmp(&b.filter));
        Ok(SessionDetail {
            session: session_view(&session.client_id, &st, Instant::now()),
            subscriptions,
        })
    }

    /// Closes the client's connection (MQTT 5 clients get DISCONNECT 0x98, administrative
    /// action). The session stays, as after any abnormal disconnection: its will is
    /// published and a persistent session keeps its subscriptions.
    pub fn disconnect(&self, client_id: &str) -> Result<(), AdminError> {
        let broker = self.broker()?;
        let session = broker.find_session(client_id)?;
        let st = session.state.lock();
        let link = st.connection.as_ref().ok_or_else(|| {
            AdminError::NotFound(format!("client `{client_id}` is not connected"))
        })?;
        evict(&link.info, &link.kick);
        tracing::info!(client_id, "connection closed by the admin API");
        Ok(())
    }

    /// Discards a session at once: it leaves the routing table, its connection (if any)
    /// is closed without its will, its pending will is dropped, and its subscriptions,
    /// queue and stored state are deleted from memory and the store before this returns.
    /// A client connecting with that id afterwards starts a new session.
    pub fn discard_session(&self, client_id: &str) -> Result<(), AdminError> {
        let broker = self.broker()?;
        broker.discard(client_id)?;
        tracing::info!(client_id, "session discarded by the admin API");
        Ok(())
    }

    /// Subscriptions matching `q`, a page of them.
    pub fn subscriptions(&self, q: &SubscriptionQuery) -> Result<SubscriptionPage, AdminError> {
        let broker = self.broker()?;
        let sessions: Vec<Arc<Session>> = match &q.client_id {
            Some(id) => broker
                .sessions
                .lock()
                .get(id.as_str())
                .cloned()
                .into_iter()
                .collect(),
            None => broker.sessions.lock().values().cloned().collect(),
        };
        let mut found = Vec::new();
        for s in sessions {
            let st = s.state.lock();
            for v in subscription_views(&s.client_id, &st) {
                let wanted = q.topic.as_ref().is_none_or(|t| {
                    parse_filter(&v.filter, &broker.limits).is_ok_and(|p| matches(p.filter, t))
                });
                if wanted {
                    found.push((format!("{}\0{}", v.client_id, v.filter), v));
                }
            }
        }
        Ok(page(&q.cursor, q.limit).page(found)?.into())
    }

    /// Retained messages whose topic matches `q.filter`, a page of them.
    pub fn retained(&self, q: &RetainedQuery) -> Result<RetainedPage, AdminError> {
        let broker = self.broker()?;
        let filter = q.filter.as_deref().unwrap_or("#");
        // A `$share/<group>/` prefix is ignored: the filter after it selects the topics.
        let parsed = parse_filter(filter, &broker.limits)
            .map_err(|e| AdminError::BadRequest(format!("filter `{filter}`: {e:?}")))?;
        let now = Instant::now();
        let found = broker
            .retained
            .read()
            .values()
            .filter(|m| matches(parsed.filter, &m.topic))
            .map(|m| (m.topic.clone(), retained_view(m, now)))
            .collect();
        Ok(page(&q.cursor, q.limit).page(found)?.into())
    }

    /// The retained message of `topic`, with its payload.
    pub fn retained_message(&self, topic: &str) -> Result<RetainedDetail, AdminError> {
        let m = self.broker()?.retained.read().get(topic).cloned();
        let m = m.ok_or_else(|| no_retained(topic))?;
        Ok(RetainedDetail {
            message: retained_view(&m, Instant::now()),
            payload_base64: base64::engine::general_purpose::STANDARD.encode(&m.payload),
            payload_utf8: std::str::from_utf8(&m.payload).ok().map(str::to_owned),
        })
    }

    /// Deletes the retained message of `topic` (from memory and the store) without
    /// publishing anything to subscribers.
    pub fn delete_retained(&self, topic: &str) -> Result<(), AdminError> {
        let broker = self.broker()?;
        broker.remove_retained(topic)?;
        tracing::info!(topic, "retained message deleted by the admin API");
        Ok(())
    }
}

fn no_retained(topic: &str) -> AdminError {
    AdminError::NotFound(format!("no retained message on `{topic}`"))
}

fn prefixed(id: &str, prefix: &Option<String>) -> bool {
    prefix.as_ref().is_none_or(|p| id.starts_with(p.as_str()))
}

fn evict(info: &ConnectionInfo, kick: &tokio::sync::Notify) {
    info.evicted
        .store(ReasonCode::ADMINISTRATIVE_ACTION.0, Ordering::Release);
    kick.notify_one();
}

fn session_view(client_id: &str, st: &SessionState, now: Instant) -> SessionView {
    let connection = st.connection.as_ref().map(|link| {
        let c = &link.info;
        ConnectionView {
            peer: c.peer.map(|p| p.to_string()),
            transport: c.transport.to_owned(),
            protocol_version: c.protocol_level,
            username: c.username.clone(),
            keep_alive_secs: c.keep_alive_secs,
            connected_at_ms: c
                .connected_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    });
    SessionView {
        client_id: client_id.to_owned(),
        connected: connection.is_some(),
        connection,
        session_expiry_secs: (st.expiry_secs != u32::MAX).then_some(st.expiry_secs),
        disconnected_secs: st
            .disconnected_at
            .map(|t| now.saturating_duration_since(t).as_secs()),
        durable: st.durable.is_some(),
        subscriptions: st.subscriptions.len(),
        inflight: st.inflight.len(),
        queued: st.queue.len(),
        queued_bytes: st.queued_bytes,
        dropped: st.dropped,
    }
}

fn subscription_views(client_id: &str, st: &SessionState) -> Vec<SubscriptionView> {
    st.subscriptions
        .iter()
        .map(|(filter, sub)| SubscriptionView {
            client_id: client_id.to_owned(),
            filter: filter.clone(),
            qos: sub.options.qos as u8,
            no_local: sub.options.no_local,
            retain_as_published: sub.options.retain_as_published,
            retain_handling: sub.options.retain_handling as u8,
            identifier: sub.id,
            share_group: filter
                .strip_prefix("$share/")
                .and_then(|rest| rest.split_once('/'))
                .map(|(group, _)| group.to_owned()),
        })
        .collect()
}

fn retained_view(m: &crate::message::Message, now: Instant) -> RetainedView {
    RetainedView {
        topic: m.topic.clone(),
        qos: m.qos as u8,
        payload_bytes: m.payload.len(),
        publisher: m.publisher.as_deref().map(str::to_owned),
        expires_in_secs: m
            .expires_at
            .map(|t| t.saturating_duration_since(now).as_secs()),
        content_type: m.properties.content_type.clone(),
    }
}

/// The admin API's access to the broker's state.
impl Broker {
    fn find_session(&self, client_id: &str) -> Result<Arc<Session>, AdminError> {
        self.sessions
            .lock()
            .get(client_id)
            .cloned()
            .ok_or_else(|| AdminError::NotFound(format!("no session for client `{client_id}`")))
    }

    /// Every session whose view passes `keep`, keyed by client id.
    fn sessions_view(&self, keep: impl Fn(&SessionView) -> bool) -> Vec<(String, SessionView)> {
        let sessions: Vec<Arc<Session>> = self.sessions.lock().values().cloned().collect();
        let now = Instant::now();
        sessions
            .iter()
            .map(|s| session_view(&s.client_id, &s.state.lock(), now))
            .filter(|v| keep(v))
            .map(|v| (v.client_id.clone(), v))
            .collect()
    }

    /// Removes the retained message of `topic`: from the store first, under the same lock
    /// a publish stores one with, so a concurrent publish is neither lost nor undone, and
    /// a failed store write leaves the message in place.
    fn remove_retained(&self, topic: &str) -> Result<(), AdminError> {
        let mut retained = self.retained.write();
        if !retained.contains_key(topic) {
            return Err(no_retained(topic));
        }
        if let Some(p) = &self.persist {
            p.delete_retained(topic).map_err(|e| {
                self.metrics.errors.with_label_values(&["kv_write"]).inc();
                AdminError::Unavailable(format!("retained message not deleted from the store: {e}"))
            })?;
        }
        retained.remove(topic);
        self.metrics.retained.set(retained.len() as i64);
        self.metrics.retained_bytes.set(retained.bytes() as i64);
        Ok(())
    }

    /// See [`MqttAdmin::discard_session`].
    fn discard(&self, client_id: &str) -> Result<(), AdminError> {
        let session = self
            .remove_session(client_id)
            .ok_or_else(|| AdminError::NotFound(format!("no session for client `{client_id}`")))?;
        // Detached first: the connection, once it notices, finds itself no longer attached
        // and leaves the session alone (no will, no store write).
        let link = {
            let mut st = session.state.lock();
            st.expiry_secs = 0;
            st.disconnected_at = Some(Instant::now());
            st.connection.take()
        };
        if let Some(link) = link {
            evict(&link.info, &link.kick);
        }
        self.forget_session(&session);
        // Its queued and in-flight messages go too.
        self.with_state(&session, |st| st.clear());
        if self.wills.lock().remove(client_id).is_some() {
            self.push_op(strata_frontend::seams::StateOp::Delete(
                crate::stored::will_key(client_id),
            ));
        }
        self.sync_durable().map_err(|e| {
            AdminError::Unavailable(format!(
                "session discarded, but its deletion is not yet in the store: {e}"
            ))
        })
    }
}
