//! The MQTT codec: pure (no I/O, no runtime), for MQTT 3.1, 3.1.1 and 5.0.
//!
//! [`decode`] takes bytes as they arrive: it returns `Ok(None)`, cheaply and without
//! consuming anything, until a whole packet is buffered; then it splits the packet off
//! and validates it against the specification's normative statements. [`encode`] writes
//! a packet for a given protocol version.

mod connect;
mod control;
mod error;
mod primitives;
mod properties;
mod publish;
pub mod reason;
mod subscribe;

pub use connect::{ConnAck, Connect, Will};
pub use control::{Auth, Disconnect};
pub use error::{DecodeError, EncodeError};
pub use primitives::VARINT_MAX;
pub use properties::Properties;
pub use publish::{Ack, Publish, PublishRef};
pub use reason::ReasonCode;
pub use subscribe::{
    RetainHandling, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe,
};

use bytes::{BufMut, BytesMut};

use primitives::{Reader, put_varint, varint_len};

/// The protocol level of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1 (protocol name "MQIsdp", level 3).
    V31,
    /// MQTT 3.1.1 (level 4).
    V311,
    /// MQTT 5.0 (level 5).
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte.
    pub fn level(self) -> u8 {
        match self {
            ProtocolVersion::V31 => 3,
            ProtocolVersion::V311 => 4,
            ProtocolVersion::V5 => 5,
        }
    }

    /// True for MQTT 5.
    pub fn is_v5(self) -> bool {
        self == ProtocolVersion::V5
    }
}

/// Quality of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum QoS {
    /// At most once.
    #[default]
    AtMostOnce = 0,
    /// At least once.
    AtLeastOnce = 1,
    /// Exactly once.
    ExactlyOnce = 2,
}

impl QoS {
    /// From the two-bit field; 3 is malformed.
    pub fn from_bits(bits: u8) -> Result<QoS, DecodeError> {
        match bits {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            2 => Ok(QoS::ExactlyOnce),
            _ => Err(DecodeError::malformed("QoS 3")),
        }
    }
}

/// Every MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Packet {
    /// Boxed: with its will, by far the largest packet, and one per connection.
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(Ack),
    PubRec(Ack),
    PubRel(Ack),
    PubComp(Ack),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    Auth(Auth),
}

impl Packet {
    /// The packet type number of the fixed header.
    pub fn type_id(&self) -> u8 {
        match self {
            Packet::Connect(_) => 1,
            Packet::ConnAck(_) => 2,
            Packet::Publish(_) => 3,
            Packet::PubAck(_) => 4,
            Packet::PubRec(_) => 5,
            Packet::PubRel(_) => 6,
            Packet::PubComp(_) => 7,
            Packet::Subscribe(_) => 8,
            Packet::SubAck(_) => 9,
            Packet::Unsubscribe(_) => 10,
            Packet::UnsubAck(_) => 11,
            Packet::PingReq => 12,
            Packet::PingResp => 13,
            Packet::Disconnect(_) => 14,
            Packet::Auth(_) => 15,
        }
    }
}

/// Reads the fixed header at the start of `buf`: `(first byte, remaining length, header
/// length)`, or `None` when more bytes are needed.
fn fixed_header(buf: &[u8]) -> Result<Option<(u8, usize, usize)>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut len: usize = 0;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((first, len, 2 + i)));
        }
    }
    Err(DecodeError::malformed(
        "remaining length longer than four bytes",
    ))
}

/// Decodes one packet from the front of `buf`.
///
/// `version` is the connection's protocol version, or `None` before CONNECT (then only a
/// CONNECT is accepted, and it names the version). `max_packet_size` bounds the whole
/// packet; a larger one fails as soon as its fixed header is read. Returns `Ok(None)`
/// without consuming anything until the whole packet is in `buf`.
pub fn decode(
    buf: &mut BytesMut,
    version: Option<ProtocolVersion>,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let Some((first, remaining, header)) = fixed_header(buf)? else {
        return Ok(None);
    };
    let total = header + remaining;
    if total > max_packet_size {
        return Err(DecodeError::TooLarge {
            size: total,
            max: max_packet_size,
        });
    }
    if buf.len() < total {
        return Ok(None);
    }
    let frame = buf.split_to(total).freeze();
    let mut r = Reader::new(&frame, header, total);
    let kind = first >> 4;
    let flags = first & 0x0f;
    let packet = match (kind, version) {
        (1, None) => {
            check_flags(flags, 0)?;
            Packet::Connect(Box::new(Connect::decode(&mut r)?))
        }
        (1, Some(_)) => return Err(DecodeError::protocol("second CONNECT")),
        (_, None) => return Err(DecodeError::protocol("the first packet must be CONNECT")),
        (_, Some(v)) => decode_body(kind, flags, &mut r, v)?,
    };
    if r.remaining() != 0 {
        return Err(DecodeError::malformed("bytes left over after the packet"));
    }
    Ok(Some(packet))
}

fn check_flags(flags: u8, want: u8) -> Result<(), DecodeError> {
    if flags != want {
        return Err(DecodeError::malformed(format!(
            "reserved fixed-header flags {flags:#06b}"
        )));
    }
    Ok(())
}

fn decode_body(
    kind: u8,
    flags: u8,
    r: &mut Reader<'_>,
    v: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    let with_flags = |want: u8| check_flags(flags, want);
    Ok(match kind {
        2 => {
            with_flags(0)?;
            Packet::ConnAck(ConnAck::decode(r, v)?)
        }
        3 => Packet::Publish(Publish::decode(flags, r, v)?),
        4 => {
            with_flags(0)?;
            Packet::PubAck(Ack::decode(r, v, reason::PUBACK_CODES)?)
        }
        5 => {
            with_flags(0)?;
            Packet::PubRec(Ack::decode(r, v, reason::PUBACK_CODES)?)
        }
        6 => {
            with_flags(0b0010)?;
            Packet::PubRel(Ack::decode(r, v, reason::PUBREL_CODES)?)
        }
        7 => {
            with_flags(0)?;
            Packet::PubComp(Ack::decode(r, v, reason::PUBREL_CODES)?)
        }
        8 => {
            with_flags(0b0010)?;
            Packet::Subscribe(Subscribe::decode(r, v)?)
        }
        9 => {
            with_flags(0)?;
            Packet::SubAck(SubAck::decode(r, v)?)
        }
        10 => {
            with_flags(0b0010)?;
            Packet::Unsubscribe(Unsubscribe::decode(r, v)?)
        }
        11 => {
            with_flags(0)?;
            Packet::UnsubAck(UnsubAck::decode(r, v)?)
        }
        12 => {
            with_flags(0)?;
            Packet::PingReq
        }
        13 => {
            with_flags(0)?;
            Packet::PingResp
        }
        14 => {
            with_flags(0)?;
            Packet::Disconnect(Disconnect::decode(r, v)?)
        }
        15 if v.is_v5() => {
            with_flags(0)?;
            Packet::Auth(Auth::decode(r)?)
        }
        _ => {
            return Err(DecodeError::malformed(format!(
                "reserved packet type {kind}"
            )));
        }
    })
}

/// Encodes `packet` for protocol `version` at the end of `out`. Fails without writing when
/// the packet would exceed `max_packet_size` or cannot be expressed in `version`.
pub fn encode(
    packet: &Packet,
    version: ProtocolVersion,
    max_packet_size: usize,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    if let Packet::Publish(p) = packet {
        return encode_publish(&p.as_ref(), version, max_packet_size, out);
    }
    let flags = match packet {
        Packet::PubRel(_) | Packet::Subscribe(_) | Packet::Unsubscribe(_) => 0b0010,
        _ => 0,
    };
    let remaining = body_len(packet, version)?;
    frame(
        packet.type_id() << 4 | flags,
        remaining,
        max_packet_size,
        out,
    )?;
    match packet {
        Packet::Connect(p) => p.encode(out),
        Packet::ConnAck(p) => p.encode(version, out),
        Packet::Publish(_) => {}
        Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
            p.encode(version, out)
        }
        Packet::Subscribe(p) => p.encode(version, out),
        Packet::SubAck(p) => p.encode(version, out),
        Packet::Unsubscribe(p) => p.encode(version, out),
        Packet::UnsubAck(p) => p.encode(version, out),
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(p) => p.encode(version, out),
        Packet::Auth(p) => p.encode(out),
    }
    Ok(())
}

/// Encodes a PUBLISH from borrowed parts, like [`encode`] does for [`Packet::Publish`].
pub fn encode_publish(
    p: &PublishRef<'_>,
    version: ProtocolVersion,
    max_packet_size: usize,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let remaining = p.encoded_len(version)?;
    frame(3 << 4 | p.flags(), remaining, max_packet_size, out)?;
    p.encode(version, out);
    Ok(())
}

/// Checks the sizes and writes the fixed header of a packet whose body is `remaining` bytes.
fn frame(
    first: u8,
    remaining: usize,
    max_packet_size: usize,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    if remaining > VARINT_MAX as usize {
        return Err(EncodeError::TooLarge {
            size: remaining,
            max: VARINT_MAX as usize,
        });
    }
    let total = 1 + varint_len(remaining as u32) + remaining;
    if total > max_packet_size {
        return Err(EncodeError::TooLarge {
            size: total,
            max: max_packet_size,
        });
    }
    out.reserve(total);
    out.put_u8(first);
    put_varint(out, remaining as u32);
    Ok(())
}

fn body_len(packet: &Packet, v: ProtocolVersion) -> Result<usize, EncodeError> {
    Ok(match packet {
        Packet::Connect(p) => p.encoded_len()?,
        Packet::ConnAck(p) => p.encoded_len(v),
        Packet::Publish(p) => p.as_ref().encoded_len(v)?,
        Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
            p.encoded_len(v)
        }
        Packet::Subscribe(p) => p.encoded_len(v),
        Packet::SubAck(p) => p.encoded_len(v),
        Packet::Unsubscribe(p) => p.encoded_len(v),
        Packet::UnsubAck(p) => p.encoded_len(v),
        Packet::PingReq | Packet::PingResp => 0,
        Packet::Disconnect(p) => p.encoded_len(v),
        Packet::Auth(p) => {
            if !v.is_v5() {
                return Err(EncodeError::Invalid("AUTH exists only in MQTT 5".into()));
            }
            p.encoded_len()
        }
    })
}

/// Fails when a string field is longer than 65,535 bytes.
pub(crate) fn check_str(s: &[u8], what: &str) -> Result<(), EncodeError> {
    if s.len() > usize::from(u16::MAX) {
        return Err(EncodeError::Invalid(format!(
            "{what} longer than 65535 bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
