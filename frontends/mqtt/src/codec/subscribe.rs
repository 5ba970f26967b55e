//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK.

use bytes::{BufMut, BytesMut};

use super::error::DecodeError;
use super::primitives::{Reader, binary_len, put_binary};
use super::properties::{Properties, allowed};
use super::publish::nonzero_packet_id;
use super::reason::{SUBACK_CODES, UNSUBACK_CODES};
use super::{ProtocolVersion, QoS, ReasonCode};

/// When retained messages are sent for a new subscription (MQTT 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetainHandling {
    /// At subscribe time.
    #[default]
    SendAtSubscribe = 0,
    /// At subscribe time, if the subscription did not exist.
    SendIfNew = 1,
    /// Never.
    DoNotSend = 2,
}

/// Options of one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS.
    pub qos: QoS,
    /// Do not deliver this connection's own publishes (MQTT 5).
    pub no_local: bool,
    /// Keep the retain flag of forwarded publishes (MQTT 5).
    pub retain_as_published: bool,
    /// Retained-message handling (MQTT 5).
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    pub(crate) fn decode(byte: u8, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let reserved = if v.is_v5() { 0xC0 } else { 0xFC };
        if byte & reserved != 0 {
            return Err(DecodeError::malformed(
                "reserved subscription option bits set [MQTT-3.8.3-5]",
            ));
        }
        let retain_handling = match (byte >> 4) & 0x03 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(DecodeError::protocol("retain handling 3")),
        };
        Ok(SubscriptionOptions {
            qos: QoS::from_bits(byte & 0x03)?,
            no_local: byte & 0x04 != 0,
            retain_as_published: byte & 0x08 != 0,
            retain_handling,
        })
    }

    pub(crate) fn byte(&self, v: ProtocolVersion) -> u8 {
        let mut b = self.qos as u8;
        if v.is_v5() {
            b |= u8::from(self.no_local) << 2 | u8::from(self.retain_as_published) << 3;
            b |= (self.retain_handling as u8) << 4;
        }
        b
    }
}

/// SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet identifier.
    pub packet_id: u16,
    /// Topic filters with their options, in order.
    pub filters: Vec<(String, SubscriptionOptions)>,
    /// Properties (MQTT 5): subscription identifier, user properties.
    pub properties: Properties,
}

impl Subscribe {
    pub(crate) fn decode(r: &mut Reader<'_>, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = nonzero_packet_id(r)?;
        let properties = Properties::decode_for(r, v, allowed::SUBSCRIBE)?;
        if properties.subscription_identifiers.len() > 1 {
            return Err(DecodeError::protocol(
                "more than one subscription identifier",
            ));
        }
        let mut filters = Vec::new();
        while r.remaining() > 0 {
            let filter = r.string()?;
            filters.push((filter, SubscriptionOptions::decode(r.u8()?, v)?));
        }
        if filters.is_empty() {
            return Err(DecodeError::protocol(
                "SUBSCRIBE without a topic filter [MQTT-3.8.3-3]",
            ));
        }
        Ok(Subscribe {
            packet_id,
            filters,
            properties,
        })
    }

    pub(crate) fn encoded_len(&self, v: ProtocolVersion) -> usize {
        let props = self.properties.encoded_len_for(v);
        2 + props
            + self
                .filters
                .iter()
                .map(|(f, _)| binary_len(f.as_bytes()) + 1)
                .sum::<usize>()
    }

    pub(crate) fn encode(&self, v: ProtocolVersion, out: &mut BytesMut) {
        out.put_u16(self.packet_id);
        self.properties.encode_for(v, out);
        for (f, o) in &self.filters {
            put_binary(out, f.as_bytes());
            out.put_u8(o.byte(v));
        }
    }
}

/// SUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// Packet identifier of the SUBSCRIBE.
    pub packet_id: u16,
    /// One code per filter: granted QoS or failure (0x80 in MQTT 3).
    pub reasons: Vec<ReasonCode>,
    /// Properties (MQTT 5).
    pub properties: Properties,
}

impl SubAck {
    pub(crate) fn decode(r: &mut Reader<'_>, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = nonzero_packet_id(r)?;
        let properties = Properties::decode_for(r, v, allowed::ACK)?;
        let reasons = codes(
            r,
            if v.is_v5() {
                SUBACK_CODES
            } else {
                &[0, 1, 2, 0x80]
            },
        )?;
        Ok(SubAck {
            packet_id,
            reasons,
            properties,
        })
    }

    pub(crate) fn encoded_len(&self, v: ProtocolVersion) -> usize {
        2 + self.reasons.len() + self.properties.encoded_len_for(v)
    }

    pub(crate) fn encode(&self, v: ProtocolVersion, out: &mut BytesMut) {
        out.put_u16(self.packet_id);
        self.properties.encode_for(v, out);
        for c in &self.reasons {
            out.put_u8(c.0);
        }
    }
}

fn codes(r: &mut Reader<'_>, valid: &[u8]) -> Result<Vec<ReasonCode>, DecodeError> {
    let mut out = Vec::with_capacity(r.remaining());
    while r.remaining() > 0 {
        let c = r.u8()?;
        if !valid.contains(&c) {
            return Err(DecodeError::protocol(format!(
                "reason code {c:#04x} not valid here"
            )));
        }
        out.push(ReasonCode(c));
    }
    if out.is_empty() {
        return Err(DecodeError::protocol(
            "acknowledgement without reason codes",
        ));
    }
    Ok(out)
}

/// UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet identifier.
    pub packet_id: u16,
    /// Topic filters to remove.
    pub filters: Vec<String>,
    /// Properties (MQTT 5): user properties.
    pub properties: Properties,
}

impl Unsubscribe {
    pub(crate) fn decode(r: &mut Reader<'_>, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = nonzero_packet_id(r)?;
        let properties = Properties::decode_for(r, v, allowed::UNSUBSCRIBE)?;
        let mut filters = Vec::new();
        while r.remaining() > 0 {
            filters.push(r.string()?);
        }
        if filters.is_empty() {
            return Err(DecodeError::protocol(
                "UNSUBSCRIBE without a topic filter [MQTT-3.10.3-2]",
            ));
        }
        Ok(Unsubscribe {
            packet_id,
            filters,
            properties,
        })
    }

    pub(crate) fn encoded_len(&self, v: ProtocolVersion) -> usize {
        let props = self.properties.encoded_len_for(v);
        2 + props
            + self
                .filters
                .iter()
                .map(|f| binary_len(f.as_bytes()))
                .sum::<usize>()
    }

    pub(crate) fn encode(&self, v: ProtocolVersion, out: &mut BytesMut) {
        out.put_u16(self.packet_id);
        self.properties.encode_for(v, out);
        for f in &self.filters {
            put_binary(out, f.as_bytes());
        }
    }
}

/// UNSUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// Packet identifier of the UNSUBSCRIBE.
    pub packet_id: u16,
    /// One code per filter (MQTT 5 only; empty in MQTT 3).
    pub reasons: Vec<ReasonCode>,
    /// Properties (MQTT 5).
    pub properties: Properties,
}

impl UnsubAck {
    pub(crate) fn decode(r: &mut Reader<'_>, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = nonzero_packet_id(r)?;
        if !v.is_v5() {
            return Ok(UnsubAck {
                packet_id,
                reasons: Vec::new(),
                properties: Properties::default(),
            });
        }
        let properties = Properties::decode(r, allowed::ACK)?;
        let reasons = codes(r, UNSUBACK_CODES)?;
        Ok(UnsubAck {
            packet_id,
            reasons,
            properties,
        })
    }

    pub(crate) fn encoded_len(&self, v: ProtocolVersion) -> usize {
        if v.is_v5() {
            2 + self.properties.encoded_len() + self.reasons.len()
        } else {
            2
        }
    }

    pub(crate) fn encode(&self, v: ProtocolVersion, out: &mut BytesMut) {
        out.put_u16(self.packet_id);
        if v.is_v5() {
            self.properties.encode(out);
            for c in &self.reasons {
                out.put_u8(c.0);
            }
        }
    }
}
