//! PUBLISH and the acknowledgements of its QoS flows (PUBACK, PUBREC, PUBREL, PUBCOMP).

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::primitives::{Reader, binary_len, put_binary};
use super::properties::{Properties, allowed};
use super::{ProtocolVersion, QoS, ReasonCode, check_str};

/// PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Redelivery flag.
    pub dup: bool,
    /// Quality of service.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// Topic name (empty in MQTT 5 when a topic alias stands for it).
    pub topic: String,
    /// Packet identifier, present exactly when QoS > 0.
    pub packet_id: Option<u16>,
    /// PUBLISH properties (MQTT 5).
    pub properties: Properties,
    /// Application payload, shared with the received packet's buffer.
    pub payload: Bytes,
}

impl Publish {
    pub(crate) fn decode(
        flags: u8,
        r: &mut Reader<'_>,
        v: ProtocolVersion,
    ) -> Result<Publish, DecodeError> {
        let qos = QoS::from_bits((flags >> 1) & 0x03)?;
        let dup = flags & 0x08 != 0;
        if dup && qos == QoS::AtMostOnce {
            return Err(DecodeError::malformed(
                "DUP set on a QoS 0 PUBLISH [MQTT-3.3.1-2]",
            ));
        }
        let topic = r.string()?;
        if topic.contains(['+', '#']) {
            return Err(DecodeError::malformed(
                "wildcard in a PUBLISH topic name [MQTT-3.3.2-2]",
            ));
        }
        let packet_id = if qos == QoS::AtMostOnce {
            None
        } else {
            Some(nonzero_packet_id(r)?)
        };
        let properties = Properties::decode_for(r, v, allowed::PUBLISH)?;
        if topic.is_empty() && properties.topic_alias.is_none() {
            return Err(DecodeError::malformed(
                "empty topic name without a topic alias",
            ));
        }
        Ok(Publish {
            dup,
            qos,
            retain: flags & 0x01 != 0,
            topic,
            packet_id,
            properties,
            payload: r.rest(),
        })
    }

    /// A borrowed view, for encoding.
    pub fn as_ref(&self) -> PublishRef<'_> {
        PublishRef {
            dup: self.dup,
            qos: self.qos,
            retain: self.retain,
            topic: &self.topic,
            packet_id: self.packet_id,
            properties: &self.properties,
            payload: &self.payload,
        }
    }
}

/// A PUBLISH made of borrowed parts, so that a message sent to many subscribers is encoded
/// without copying its topic or payload into a [`Publish`] first.
#[derive(Debug, Clone, Copy)]
pub struct PublishRef<'a> {
    /// Redelivery flag.
    pub dup: bool,
    /// Quality of service.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// Topic name (empty when a topic alias stands for it).
    pub topic: &'a str,
    /// Packet identifier, present exactly when QoS > 0.
    pub packet_id: Option<u16>,
    /// Properties (MQTT 5).
    pub properties: &'a Properties,
    /// Payload.
    pub payload: &'a [u8],
}

impl PublishRef<'_> {
    pub(crate) fn flags(&self) -> u8 {
        u8::from(self.dup) << 3 | (self.qos as u8) << 1 | u8::from(self.retain)
    }

    pub(crate) fn encoded_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        check_str(self.topic.as_bytes(), "topic name")?;
        if (self.qos == QoS::AtMostOnce) != self.packet_id.is_none() {
            return Err(EncodeError::Invalid(
                "a packet identifier goes with QoS 1 and 2 only".into(),
            ));
        }
        let mut n = binary_len(self.topic.as_bytes()) + self.payload.len();
        if self.packet_id.is_some() {
            n += 2;
        }
        if v.is_v5() {
            n += self.properties.encoded_len();
        }
        Ok(n)
    }

    pub(crate) fn encode(&self, v: ProtocolVersion, out: &mut BytesMut) {
        put_binary(out, self.topic.as_bytes());
        if let Some(id) = self.packet_id {
            out.put_u16(id);
        }
        self.properties.encode_for(v, out);
        out.put_slice(self.payload);
    }
}

pub(crate) fn nonzero_packet_id(r: &mut Reader<'_>) -> Result<u16, DecodeError> {
    let id = r.u16()?;
    if id == 0 {
        return Err(DecodeError::malformed("packet identifier 0 [MQTT-2.2.1-3]"));
    }
    Ok(id)
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP (the packet type tells which).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// Packet identifier of the PUBLISH being acknowledged.
    pub packet_id: u16,
    /// Reason code (MQTT 5; always success in MQTT 3).
    pub reason: ReasonCode,
    /// Properties (MQTT 5): reason string and user properties.
    pub properties: Properties,
}

impl Ack {
    /// A successful acknowledgement without properties.
    pub fn new(packet_id: u16) -> Self {
        Ack {
            packet_id,
            reason: ReasonCode::SUCCESS,
            properties: Properties::default(),
        }
    }

    pub(crate) fn decode(
        r: &mut Reader<'_>,
        v: ProtocolVersion,
        codes: &[u8],
    ) -> Result<Ack, DecodeError> {
        let packet_id = nonzero_packet_id(r)?;
        let mut ack = Ack::new(packet_id);
        if v.is_v5() && r.remaining() > 0 {
            let code = r.u8()?;
            if !codes.contains(&code) {
                return Err(DecodeError::protocol(format!(
                    "reason code {code:#04x} not valid here"
                )));
            }
            ack.reason = ReasonCode(code);
            if r.remaining() > 0 {
                ack.properties = Properties::decode(r, allowed::ACK)?;
            }
        }
        Ok(ack)
    }

    fn short(&self) -> bool {
        self.properties == Properties::default()
    }

    pub(crate) fn encoded_len(&self, v: ProtocolVersion) -> usize {
        if !v.is_v5() || (self.reason == ReasonCode::SUCCESS && self.short()) {
            2
        } else if self.short() {
            3
        } else {
            3 + self.properties.encoded_len()
        }
    }

    pub(crate) fn encode(&self, v: ProtocolVersion, out: &mut BytesMut) {
        out.put_u16(self.packet_id);
        let len = self.encoded_len(v);
        if len >= 3 {
            out.put_u8(self.reason.0);
        }
        if len > 3 {
            self.properties.encode(out);
        }
    }
}
