//! MQTT 5 properties: decoding with the per-packet allow-list and value checks, encoding.

use bytes::{BufMut, Bytes, BytesMut};

use super::ProtocolVersion;
use super::error::DecodeError;
use super::primitives::{Reader, VARINT_MAX, binary_len, put_binary, put_varint, varint_len};

/// Every MQTT 5 property. Absent properties are `None` (or empty, for repeatable ones).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Properties {
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    pub subscription_identifiers: Vec<u32>,
    pub session_expiry_interval: Option<u32>,
    pub assigned_client_identifier: Option<String>,
    pub server_keep_alive: Option<u16>,
    pub authentication_method: Option<String>,
    pub authentication_data: Option<Bytes>,
    pub request_problem_information: Option<u8>,
    pub will_delay_interval: Option<u32>,
    pub request_response_information: Option<u8>,
    pub response_information: Option<String>,
    pub server_reference: Option<String>,
    pub reason_string: Option<String>,
    pub receive_maximum: Option<u16>,
    pub topic_alias_maximum: Option<u16>,
    pub topic_alias: Option<u16>,
    pub maximum_qos: Option<u8>,
    pub retain_available: Option<u8>,
    pub user_properties: Vec<(String, String)>,
    pub maximum_packet_size: Option<u32>,
    pub wildcard_subscription_available: Option<u8>,
    pub subscription_identifier_available: Option<u8>,
    pub shared_subscription_available: Option<u8>,
}

/// Property identifiers allowed in each packet (and in a will).
pub mod allowed {
    pub const CONNECT: &[u8] = &[0x11, 0x15, 0x16, 0x17, 0x19, 0x21, 0x22, 0x26, 0x27];
    pub const CONNACK: &[u8] = &[
        0x11, 0x12, 0x13, 0x15, 0x16, 0x1A, 0x1C, 0x1F, 0x21, 0x22, 0x24, 0x25, 0x26, 0x27, 0x28,
        0x29, 0x2A,
    ];
    pub const PUBLISH: &[u8] = &[0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x23, 0x26];
    pub const WILL: &[u8] = &[0x01, 0x02, 0x03, 0x08, 0x09, 0x18, 0x26];
    pub const ACK: &[u8] = &[0x1F, 0x26];
    pub const SUBSCRIBE: &[u8] = &[0x0B, 0x26];
    pub const UNSUBSCRIBE: &[u8] = &[0x26];
    pub const DISCONNECT: &[u8] = &[0x11, 0x1C, 0x1F, 0x26];
    pub const AUTH: &[u8] = &[0x15, 0x16, 0x1F, 0x26];
}

fn set<T>(slot: &mut Option<T>, value: T, id: u8) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::protocol(format!(
            "property {id:#04x} appears twice"
        )));
    }
    *slot = Some(value);
    Ok(())
}

fn flag(r: &mut Reader<'_>, id: u8) -> Result<u8, DecodeError> {
    let v = r.u8()?;
    if v > 1 {
        return Err(DecodeError::protocol(format!(
            "property {id:#04x} must be 0 or 1, got {v}"
        )));
    }
    Ok(v)
}

fn nonzero_u16(r: &mut Reader<'_>, id: u8) -> Result<u16, DecodeError> {
    let v = r.u16()?;
    if v == 0 {
        return Err(DecodeError::protocol(format!(
            "property {id:#04x} must not be 0"
        )));
    }
    Ok(v)
}

impl Properties {
    /// Decodes a property block (length, then properties), allowing only `allowed` ids.
    pub fn decode(r: &mut Reader<'_>, allowed: &[u8]) -> Result<Properties, DecodeError> {
        let len = r.varint()? as usize;
        let mut r = r.sub(len)?;
        let mut p = Properties::default();
        while r.remaining() > 0 {
            let id = r.varint()?;
            let id = u8::try_from(id)
                .map_err(|_| DecodeError::malformed(format!("unknown property {id}")))?;
            if !allowed.contains(&id) {
                return Err(DecodeError::protocol(format!(
                    "property {id:#04x} is not allowed in this packet"
                )));
            }
            match id {
                0x01 => set(&mut p.payload_format_indicator, flag(&mut r, id)?, id)?,
                0x02 => set(&mut p.message_expiry_interval, r.u32()?, id)?,
                0x03 => set(&mut p.content_type, r.string()?, id)?,
                0x08 => set(&mut p.response_topic, r.string()?, id)?,
                0x09 => set(&mut p.correlation_data, r.binary()?, id)?,
                0x0B => {
                    let v = r.varint()?;
                    if v == 0 {
                        return Err(DecodeError::protocol("subscription identifier 0"));
                    }
                    p.subscription_identifiers.push(v);
                }
                0x11 => set(&mut p.session_expiry_interval, r.u32()?, id)?,
                0x12 => set(&mut p.assigned_client_identifier, r.string()?, id)?,
                0x13 => set(&mut p.server_keep_alive, r.u16()?, id)?,
                0x15 => set(&mut p.authentication_method, r.string()?, id)?,
                0x16 => set(&mut p.authentication_data, r.binary()?, id)?,
                0x17 => set(&mut p.request_problem_information, flag(&mut r, id)?, id)?,
                0x18 => set(&mut p.will_delay_interval, r.u32()?, id)?,
                0x19 => set(&mut p.request_response_information, flag(&mut r, id)?, id)?,
                0x1A => set(&mut p.response_information, r.string()?, id)?,
                0x1C => set(&mut p.server_reference, r.string()?, id)?,
                0x1F => set(&mut p.reason_string, r.string()?, id)?,
                0x21 => set(&mut p.receive_maximum, nonzero_u16(&mut r, id)?, id)?,
                0x22 => set(&mut p.topic_alias_maximum, r.u16()?, id)?,
                0x23 => set(&mut p.topic_alias, nonzero_u16(&mut r, id)?, id)?,
                0x24 => set(&mut p.maximum_qos, flag(&mut r, id)?, id)?,
                0x25 => set(&mut p.retain_available, flag(&mut r, id)?, id)?,
                0x26 => p.user_properties.push((r.string()?, r.string()?)),
                0x27 => {
                    let v = r.u32()?;
                    if v == 0 {
                        return Err(DecodeError::protocol("maximum packet size 0"));
                    }
                    set(&mut p.maximum_packet_size, v, id)?
                }
                0x28 => set(
                    &mut p.wildcard_subscription_available,
                    flag(&mut r, id)?,
                    id,
                )?,
                0x29 => set(
                    &mut p.subscription_identifier_available,
                    flag(&mut r, id)?,
                    id,
                )?,
                0x2A => set(&mut p.shared_subscription_available, flag(&mut r, id)?, id)?,
                _ => {
                    return Err(DecodeError::malformed(format!(
                        "unknown property {id:#04x}"
                    )));
                }
            }
        }
        Ok(p)
    }

    /// Decodes a property block in MQTT 5; MQTT 3 packets have none.
    pub fn decode_for(
        r: &mut Reader<'_>,
        v: ProtocolVersion,
        allowed: &[u8],
    ) -> Result<Properties, DecodeError> {
        if v.is_v5() {
            Properties::decode(r, allowed)
        } else {
            Ok(Properties::default())
        }
    }

    /// Encoded size of the block in `v` (0 before MQTT 5).
    pub fn encoded_len_for(&self, v: ProtocolVersion) -> usize {
        if v.is_v5() { self.encoded_len() } else { 0 }
    }

    /// Writes the block in MQTT 5; nothing before.
    pub fn encode_for(&self, v: ProtocolVersion, out: &mut BytesMut) {
        if v.is_v5() {
            self.encode(out);
        }
    }

    /// Calls `f(id, value)` for each present property, in identifier order.
    fn each(&self, mut f: impl FnMut(u8, Value<'_>)) {
        fn s(o: &Option<String>) -> Option<&str> {
            o.as_deref()
        }
        use Value::*;
        if let Some(v) = self.payload_format_indicator {
            f(0x01, Byte(v))
        }
        if let Some(v) = self.message_expiry_interval {
            f(0x02, Four(v))
        }
        if let Some(v) = s(&self.content_type) {
            f(0x03, Str(v))
        }
        if let Some(v) = s(&self.response_topic) {
            f(0x08, Str(v))
        }
        if let Some(v) = &self.correlation_data {
            f(0x09, Bin(v))
        }
        for &v in &self.subscription_identifiers {
            f(0x0B, Var(v))
        }
        if let Some(v) = self.session_expiry_interval {
            f(0x11, Four(v))
        }
        if let Some(v) = s(&self.assigned_client_identifier) {
            f(0x12, Str(v))
        }
        if let Some(v) = self.server_keep_alive {
            f(0x13, Two(v))
        }
        if let Some(v) = s(&self.authentication_method) {
            f(0x15, Str(v))
        }
        if let Some(v) = &self.authentication_data {
            f(0x16, Bin(v))
        }
        if let Some(v) = self.request_problem_information {
            f(0x17, Byte(v))
        }
        if let Some(v) = self.will_delay_interval {
            f(0x18, Four(v))
        }
        if let Some(v) = self.request_response_information {
            f(0x19, Byte(v))
        }
        if let Some(v) = s(&self.response_information) {
            f(0x1A, Str(v))
        }
        if let Some(v) = s(&self.server_reference) {
            f(0x1C, Str(v))
        }
        if let Some(v) = s(&self.reason_string) {
            f(0x1F, Str(v))
        }
        if let Some(v) = self.receive_maximum {
            f(0x21, Two(v))
        }
        if let Some(v) = self.topic_alias_maximum {
            f(0x22, Two(v))
        }
        if let Some(v) = self.topic_alias {
            f(0x23, Two(v))
        }
        if let Some(v) = self.maximum_qos {
            f(0x24, Byte(v))
        }
        if let Some(v) = self.retain_available {
            f(0x25, Byte(v))
        }
        for (k, v) in &self.user_properties {
            f(0x26, Pair(k, v))
        }
        if let Some(v) = self.maximum_packet_size {
            f(0x27, Four(v))
        }
        if let Some(v) = self.wildcard_subscription_available {
            f(0x28, Byte(v))
        }
        if let Some(v) = self.subscription_identifier_available {
            f(0x29, Byte(v))
        }
        if let Some(v) = self.shared_subscription_available {
            f(0x2A, Byte(v))
        }
    }

    /// Bytes of the properties, without the length prefix.
    pub fn body_len(&self) -> usize {
        let mut n = 0;
        self.each(|_, v| n += 1 + v.len());
        n
    }

    /// Bytes of the whole block, length prefix included.
    pub fn encoded_len(&self) -> usize {
        let body = self.body_len();
        varint_len(body as u32) + body
    }

    /// Writes the block: length, then every present property.
    pub fn encode(&self, out: &mut BytesMut) {
        put_varint(out, self.body_len() as u32);
        self.each(|id, v| {
            out.put_u8(id);
            v.put(out);
        });
    }
}

enum Value<'a> {
    Byte(u8),
    Two(u16),
    Four(u32),
    Var(u32),
    Str(&'a str),
    Bin(&'a [u8]),
    Pair(&'a str, &'a str),
}

impl Value<'_> {
    fn len(&self) -> usize {
        match self {
            Value::Byte(_) => 1,
            Value::Two(_) => 2,
            Value::Four(_) => 4,
            Value::Var(v) => varint_len((*v).min(VARINT_MAX)),
            Value::Str(s) => binary_len(s.as_bytes()),
            Value::Bin(b) => binary_len(b),
            Value::Pair(k, v) => binary_len(k.as_bytes()) + binary_len(v.as_bytes()),
        }
    }

    fn put(&self, out: &mut BytesMut) {
        match self {
            Value::Byte(v) => out.put_u8(*v),
            Value::Two(v) => out.put_u16(*v),
            Value::Four(v) => out.put_u32(*v),
            Value::Var(v) => put_varint(out, (*v).min(VARINT_MAX)),
            Value::Str(s) => put_binary(out, s.as_bytes()),
            Value::Bin(b) => put_binary(out, b),
            Value::Pair(k, v) => {
                put_binary(out, k.as_bytes());
                put_binary(out, v.as_bytes());
            }
        }
    }
}
