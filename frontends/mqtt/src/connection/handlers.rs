//! What a connection does with each packet a client sends.

use std::sync::Arc;
use std::time::Instant;

use strata_frontend::log_select::LOG_SELECTORS;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Accepted, Conn, End, enhanced_auth};
use crate::codec::{
    Ack, Auth, Disconnect, Packet, Properties, Publish, QoS, ReasonCode, SubAck, Subscribe,
    UnsubAck, Unsubscribe,
};
use crate::message::Message;
use crate::rules::delayed_target;
use crate::session::Subscription;
use crate::topic::{parse_filter, validate_name};
use strata_frontend::security::Authenticated;
use strata_frontend::security::acl::{Access, Who};

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Handles one packet; an `Err` reason code ends the connection with that code.
    pub(super) fn handle(&mut self, p: Packet) -> Result<(), ReasonCode> {
        match p {
            Packet::Publish(p) => {
                if let Some(a) = self.accept_publish(p)? {
                    self.finish_publish(a, None);
                }
                Ok(())
            }
            Packet::PubAck(a) => {
                self.broker
                    .with_state(&self.session, |st| st.on_puback(a.packet_id));
                Ok(())
            }
            Packet::PubRec(a) => {
                let error = a.reason.is_error();
                let known = self
                    .broker
                    .with_state(&self.session, |st| st.on_pubrec(a.packet_id, error));
                if !a.reason.is_error() {
                    let mut rel = Ack::new(a.packet_id);
                    if !known {
                        rel.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
                    }
                    self.put(&Packet::PubRel(rel));
                }
                Ok(())
            }
            Packet::PubRel(a) => {
                let known = self
                    .broker
                    .with_state(&self.session, |st| st.release_incoming(a.packet_id));
                let mut comp = Ack::new(a.packet_id);
                if !known {
                    comp.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
                }
                self.put(&Packet::PubComp(comp));
                Ok(())
            }
            Packet::PubComp(a) => {
                self.broker
                    .with_state(&self.session, |st| st.on_pubcomp(a.packet_id));
                Ok(())
            }
            Packet::Subscribe(s) => self.on_subscribe(s),
            Packet::Unsubscribe(u) => {
                self.on_unsubscribe(u);
                Ok(())
            }
            Packet::PingReq => {
                self.put(&Packet::PingResp);
                Ok(())
            }
            Packet::Disconnect(d) => self.on_disconnect(d),
            Packet::Auth(a) => self.on_auth(a),
            Packet::Connect(_)
            | Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp => Err(ReasonCode::PROTOCOL_ERROR),
        }
    }

    /// First half of a PUBLISH: alias resolution, validation, duplicate QoS 2 detection,
    /// receive maximum and topic rules. `None` when nothing more is to be done (a resent
    /// QoS 2 PUBLISH, answered here).
    pub(super) fn accept_publish(
        &mut self,
        mut p: Publish,
    ) -> Result<Option<Accepted>, ReasonCode> {
        self.inbound.record(p.qos as usize, p.payload.len());
        if let Some(alias) = p.properties.topic_alias.take() {
            if alias == 0 || alias > self.broker.config.topic_alias_maximum {
                return Err(ReasonCode::TOPIC_ALIAS_INVALID);
            }
            if p.topic.is_empty() {
                p.topic = self
                    .in_aliases
                    .get(&alias)
                    .cloned()
                    .ok_or(ReasonCode::PROTOCOL_ERROR)?;
            } else {
                self.in_aliases.insert(alias, p.topic.clone());
            }
        }
        if validate_name(&p.topic, &self.broker.limits).is_err() {
            return Err(ReasonCode::TOPIC_NAME_INVALID);
        }
        // Per message, so debug only: seen when an operator raises the level for this
        // client or this topic.
        if self
            .log_guard
            .wanted(&LOG_SELECTORS, &self.session.client_id, &p.topic)
        {
            let (topic, qos, bytes) = (p.topic.as_str(), p.qos as u8, p.payload.len());
            tracing::debug!(topic, qos, bytes, "publish received");
        }
        let id = p.packet_id;
        if p.qos == QoS::ExactlyOnce
            && let Some(id) = id
        {
            let mut st = self.session.state.lock();
            if st.incoming_qos2.contains(&id) {
                // A resent PUBLISH whose PUBREC was lost: acknowledge, do not route again.
                drop(st);
                self.put(&Packet::PubRec(Ack::new(id)));
                return Ok(None);
            }
            if st.incoming_qos2.len() >= usize::from(self.broker.config.receive_maximum) {
                return Err(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED);
            }
            st.incoming_qos2.insert(id);
        }
        let target = delayed_target(&p.topic).unwrap_or(&p.topic);
        let access = Access::Publish {
            topic: target,
            retain: p.retain,
        };
        // `$` topics are the server's [MQTT-4.7.2]: a client publishes only `$delayed/`.
        let reserved = p.topic.starts_with('$') && delayed_target(&p.topic).is_none();
        let by_rule = if reserved {
            Some(ReasonCode::NOT_AUTHORIZED)
        } else {
            self.broker.rules.publish_refused(&p.topic).map(ReasonCode)
        };
        let by_acl = by_rule.is_none() && !self.acl_allows(access);
        let refused = by_rule.or(by_acl.then_some(ReasonCode::NOT_AUTHORIZED));
        if refused.is_some() {
            let reason = if by_acl { "acl" } else { "rule" };
            self.broker
                .metrics
                .dropped
                .with_label_values(&[reason])
                .inc();
            tracing::debug!(topic = %p.topic, reason, "publish refused");
        }
        let (qos, topic) = (p.qos, p.topic.clone());
        let publisher = Some(self.session.client_id.clone());
        let message = Arc::new(Message::from_publish(p, topic, publisher, Instant::now()));
        let queue = refused
            .is_none()
            .then(|| self.broker.queues.queue_of(&message.topic))
            .flatten()
            .map(Box::from);
        Ok(Some(Accepted {
            bridged: refused.is_none() && queue.is_none() && self.broker.bridges.wanted(&message),
            queue,
            message,
            qos,
            packet_id: id,
            refused,
        }))
    }

    /// Second half: routes an accepted message (once stored, when it needed storing) and
    /// acknowledges it. `stored_error` is the reason code when storing failed: nothing is
    /// routed and the client is told.
    pub(super) fn finish_publish(&mut self, a: Accepted, stored_error: Option<ReasonCode>) {
        let mut reason = a.refused.or(stored_error).unwrap_or(ReasonCode::SUCCESS);
        if a.queue.is_some() {
            // Kept by its queue (or refused by it): not routed.
        } else if !reason.is_error() && a.message.topic.starts_with("$delayed/") {
            if let Err(code) = self.broker.schedule_delayed(&a.message) {
                reason = code;
            }
        } else if !reason.is_error() {
            match self.broker.publish_checked(a.message) {
                Ok(0) if self.version.is_v5() => reason = ReasonCode::NO_MATCHING_SUBSCRIBERS,
                Ok(_) => {}
                // MQTT 3 cannot be told: the message is dropped (and counted).
                Err(code) if self.version.is_v5() => reason = code,
                Err(_) => {}
            }
        }
        let ack = |id: u16| Ack {
            packet_id: id,
            reason,
            properties: Properties::default(),
        };
        match (a.qos, a.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => self.put(&Packet::PubAck(ack(id))),
            (QoS::ExactlyOnce, Some(id)) => {
                self.broker.with_state(&self.session, |st| {
                    if reason.is_error() {
                        // An error PUBREC ends the exchange: no PUBREL will follow.
                        st.release_incoming(id);
                    } else {
                        st.record_incoming(id);
                    }
                });
                self.put(&Packet::PubRec(ack(id)));
            }
            _ => {}
        }
    }

    fn on_subscribe(&mut self, s: Subscribe) -> Result<(), ReasonCode> {
        let v5 = self.version.is_v5();
        let config = &self.broker.config;
        if s.filters.len() > config.max_subscribe_filters {
            self.broker
                .metrics
                .errors
                .with_label_values(&["subscribe_filters"])
                .inc();
            return Err(ReasonCode::QUOTA_EXCEEDED);
        }
        let max_subscriptions = config.max_subscriptions_per_session;
        let mut retained_budget = config.max_retained_per_subscribe;
        let sub_id = s.properties.subscription_identifiers.first().copied();
        let mut reasons = Vec::with_capacity(s.filters.len());
        let mut retained = Vec::new();
        for (raw, options) in &s.filters {
            let parsed = match parse_filter(raw, &self.broker.limits) {
                Ok(p) => p,
                Err(_) => {
                    reasons.push(if v5 {
                        ReasonCode::TOPIC_FILTER_INVALID
                    } else {
                        ReasonCode(0x80)
                    });
                    continue;
                }
            };
            if parsed.group.is_some() && options.no_local {
                return Err(ReasonCode::PROTOCOL_ERROR);
            }
            let refused = self
                .broker
                .rules
                .subscribe_refused(parsed.filter)
                .or_else(|| (!self.acl_allows(Access::Subscribe(parsed.filter))).then_some(0x87))
                // The agent frontend's own queues (mailboxes) are not for MQTT clients.
                .or_else(|| {
                    crate::work_queue::queue_of_filter(&self.broker.queues, raw)
                        .is_some_and(|q| q.starts_with('_'))
                        .then_some(0x87)
                });
            if let Some(code) = refused {
                tracing::debug!(topic = %raw, "subscription refused by a topic rule");
                reasons.push(if v5 {
                    ReasonCode(code)
                } else {
                    ReasonCode(0x80)
                });
                continue;
            }
            let (held, replaces) = {
                let st = self.session.state.lock();
                (
                    st.subscriptions.len(),
                    st.subscriptions.contains_key(raw.as_str()),
                )
            };
            if !replaces && held >= max_subscriptions {
                self.broker
                    .metrics
                    .errors
                    .with_label_values(&["subscriptions_per_session"])
                    .inc();
                reasons.push(if v5 {
                    ReasonCode::QUOTA_EXCEEDED
                } else {
                    ReasonCode(0x80)
                });
                continue;
            }
            let sub = Subscription {
                options: *options,
                id: sub_id,
            };
            let new = self.broker.subscribe(&self.session, raw, sub);
            self.consume(raw, sub);
            retained.extend(
                self.broker
                    .retained_for(raw, &sub, new, &mut retained_budget),
            );
            // A queue's messages go at QoS 1 at most.
            let granted = match crate::work_queue::queue_of_filter(&self.broker.queues, raw) {
                Some(_) => options.qos.min(QoS::AtLeastOnce),
                None => options.qos,
            };
            reasons.push(ReasonCode(granted as u8));
        }
        self.broker.save_session(&self.session);
        self.put(&Packet::SubAck(SubAck {
            packet_id: s.packet_id,
            reasons,
            properties: Properties::default(),
        }));
        for out in retained {
            self.broker.deliver(&self.session, out);
        }
        Ok(())
    }

    /// Starts consuming the work queue subscription `raw` names, if it names one.
    pub(super) fn consume(&mut self, raw: &str, sub: Subscription) {
        if crate::work_queue::queue_of_filter(&self.broker.queues, raw).is_none() {
            return;
        }
        // An MQTT 3 client has no Receive Maximum: one message at a time.
        let held = if self.version.is_v5() {
            self.client_receive_max
        } else {
            1
        };
        self.consumers
            .get_or_insert_with(|| Box::new(crate::work_queue::Consumers::new(held)))
            .start(&self.broker, &self.session, raw, sub);
    }

    /// Whether the ACL lets this connection's client do `access` (decisions remembered
    /// per connection until the ACL changes).
    fn acl_allows(&mut self, access: Access) -> bool {
        let own_rules = self.acl.as_ref().is_some_and(|c| c.has_own_rules());
        if !own_rules && self.broker.security.acl_is_open() {
            return true;
        }
        let who = Who {
            username: self.principal.as_deref(),
            client_id: &self.session.client_id,
            ip: self.ip,
        };
        self.acl
            .get_or_insert_default()
            .allows(&self.broker.security, &who, access)
    }

    /// Re-authentication [MQTT-4.12.1]: only with the method of CONNECT (without one,
    /// AUTH is a protocol error), for the same user. A failure ends the connection.
    fn on_auth(&mut self, a: Auth) -> Result<(), ReasonCode> {
        let Some(pending) = self.reauth.as_mut() else {
            return Err(ReasonCode::PROTOCOL_ERROR);
        };
        if a.properties.authentication_method.as_deref() != Some(pending.method.as_str()) {
            return Err(ReasonCode::PROTOCOL_ERROR);
        }
        let mechanism =
            enhanced_auth::mechanism(&pending.method).ok_or(ReasonCode::PROTOCOL_ERROR)?;
        let reply = match (a.reason, pending.exchange.take()) {
            (ReasonCode::RE_AUTHENTICATE, None) => {
                let data = a.properties.authentication_data.unwrap_or_default();
                let (exchange, reply) =
                    enhanced_auth::start(&self.broker.security, &pending.method, mechanism, &data)?;
                pending.exchange = Some(exchange);
                reply
            }
            (ReasonCode::CONTINUE_AUTHENTICATION, Some(exchange)) => {
                let proof = enhanced_auth::continuation(&a, &pending.method)?;
                let outcome = match exchange.finish(&proof) {
                    Ok(last) if Some(exchange.username()) == self.principal.as_deref() => Ok(last),
                    Ok(_) => Err(ReasonCode::NOT_AUTHORIZED),
                    Err(_) => Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
                };
                let security = &self.broker.security;
                match outcome {
                    Ok(last) => {
                        security.record(&Authenticated::User(exchange.username().into()));
                        enhanced_auth::auth_packet(ReasonCode::SUCCESS, &pending.method, last)
                    }
                    Err(code) => {
                        security.record(&Authenticated::BadCredentials);
                        return Err(code);
                    }
                }
            }
            _ => return Err(ReasonCode::PROTOCOL_ERROR),
        };
        self.put(&reply);
        Ok(())
    }

    fn on_unsubscribe(&mut self, u: Unsubscribe) {
        let reasons = u
            .filters
            .iter()
            .map(|f| {
                if let Some(consumers) = self.consumers.as_mut() {
                    consumers.stop(f);
                }
                if self.broker.unsubscribe(&self.session, f) {
                    ReasonCode::SUCCESS
                } else {
                    ReasonCode::NO_SUBSCRIPTION_EXISTED
                }
            })
            .collect();
        self.broker.save_session(&self.session);
        self.put(&Packet::UnsubAck(UnsubAck {
            packet_id: u.packet_id,
            reasons,
            properties: Properties::default(),
        }));
    }

    fn on_disconnect(&mut self, d: Disconnect) -> Result<(), ReasonCode> {
        if let Some(expiry) = d.properties.session_expiry_interval {
            // [MQTT-3.14.2-2]: a session opened with expiry 0 cannot be given one now.
            if self.connect_expiry == 0 && expiry != 0 {
                return Err(ReasonCode::PROTOCOL_ERROR);
            }
            let capped = expiry.min(self.broker.config.max_session_expiry);
            self.session.state.lock().expiry_secs = capped;
        }
        self.ended = Some(if d.reason == ReasonCode::DISCONNECT_WITH_WILL {
            End::WithWill
        } else {
            End::Normal
        });
        Ok(())
    }
}
