//! CONNECT (with its will) and CONNACK.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::primitives::{Reader, binary_len, put_binary};
use super::properties::{Properties, allowed};
use super::reason::CONNACK_CODES;
use super::{ProtocolVersion, QoS, ReasonCode, check_str};

/// A will message, published by the server when the connection ends abnormally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Topic to publish to.
    pub topic: String,
    /// Payload.
    pub payload: Bytes,
    /// QoS of the will publish.
    pub qos: QoS,
    /// Retain flag of the will publish.
    pub retain: bool,
    /// Will properties (MQTT 5).
    pub properties: Properties,
}

/// CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Protocol version the client asks for.
    pub version: ProtocolVersion,
    /// Clean session (3.1.1) / clean start (5.0).
    pub clean_start: bool,
    /// Keep alive in seconds (0: none).
    pub keep_alive: u16,
    /// Client identifier (may be empty).
    pub client_id: String,
    /// Will message.
    pub will: Option<Will>,
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<Bytes>,
    /// CONNECT properties (MQTT 5).
    pub properties: Properties,
}

impl Connect {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Connect, DecodeError> {
        let name = r.string()?;
        let level = r.u8()?;
        let version = match (name.as_str(), level) {
            ("MQIsdp", 3) => ProtocolVersion::V31,
            ("MQTT", 4) => ProtocolVersion::V311,
            ("MQTT", 5) => ProtocolVersion::V5,
            ("MQTT" | "MQIsdp", _) => return Err(DecodeError::UnsupportedVersion { name, level }),
            _ => return Err(DecodeError::malformed(format!("protocol name {name:?}"))),
        };
        let flags = r.u8()?;
        if flags & 0x01 != 0 {
            return Err(DecodeError::malformed(
                "CONNECT reserved flag set [MQTT-3.1.2-3]",
            ));
        }
        let will_flag = flags & 0x04 != 0;
        let will_qos = QoS::from_bits((flags >> 3) & 0x03)?;
        let will_retain = flags & 0x20 != 0;
        if !will_flag && (will_qos != QoS::AtMostOnce || will_retain) {
            return Err(DecodeError::malformed(
                "will QoS or retain set without a will [MQTT-3.1.2-11]",
            ));
        }
        let has_password = flags & 0x40 != 0;
        let has_username = flags & 0x80 != 0;
        if has_password && !has_username && !version.is_v5() {
            return Err(DecodeError::malformed(
                "password without user name [MQTT-3.1.2-22]",
            ));
        }
        let keep_alive = r.u16()?;
        let properties = Properties::decode_for(r, version, allowed::CONNECT)?;
        if properties.authentication_data.is_some() && properties.authentication_method.is_none() {
            return Err(DecodeError::protocol(
                "authentication data without a method",
            ));
        }
        let client_id = r.string()?;
        let will = if will_flag {
            let properties = Properties::decode_for(r, version, allowed::WILL)?;
            Some(Will {
                properties,
                topic: r.string()?,
                payload: r.binary()?,
                qos: will_qos,
                retain: will_retain,
            })
        } else {
            None
        };
        let username = has_username.then(|| r.string()).transpose()?;
        let password = has_password.then(|| r.binary()).transpose()?;
        Ok(Connect {
            version,
            clean_start: flags & 0x02 != 0,
            keep_alive,
            client_id,
            will,
            username,
            password,
            properties,
        })
    }

    fn name(&self) -> &'static [u8] {
        match self.version {
            ProtocolVersion::V31 => b"MQIsdp",
            _ => b"MQTT",
        }
    }

    pub(crate) fn encoded_len(&self) -> Result<usize, EncodeError> {
        let v5 = self.version.is_v5();
        check_str(self.client_id.as_bytes(), "client identifier")?;
        let mut n = binary_len(self.name()) + 1 + 1 + 2 + binary_len(self.client_id.as_bytes());
        if v5 {
            n += self.properties.encoded_len();
        }
        if let Some(w) = &self.will {
            check_str(w.topic.as_bytes(), "will topic")?;
            check_str(&w.payload, "will payload")?;
            n += binary_len(w.topic.as_bytes()) + binary_len(&w.payload);
            if v5 {
                n += w.properties.encoded_len();
            }
        }
        if let Some(u) = &self.username {
            check_str(u.as_bytes(), "user name")?;
            n += binary_len(u.as_bytes());
        }
        if let Some(p) = &self.password {
            check_str(p, "password")?;
            n += binary_len(p);
        }
        Ok(n)
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        put_binary(out, self.name());
        out.put_u8(self.version.level());
        let mut flags = 0u8;
        if self.clean_start {
            flags |= 0x02;
        }
        if let Some(w) = &self.will {
            flags |= 0x04 | (w.qos as u8) << 3;
            if w.retain {
                flags |= 0x20;
            }
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        out.put_u8(flags);
        out.put_u16(self.keep_alive);
        if self.version.is_v5() {
            self.properties.encode(out);
        }
        put_binary(out, self.client_id.as_bytes());
        if let Some(w) = &self.will {
            if self.version.is_v5() {
                w.properties.encode(out);
            }
            put_binary(out, w.topic.as_bytes());
            put_binary(out, &w.payload);
        }
        if let Some(u) = &self.username {
            put_binary(out, u.as_bytes());
        }
        if let Some(p) = &self.password {
            put_binary(out, p);
        }
    }
}

/// CONNACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    /// Session present flag.
    pub session_present: bool,
    /// Reason code (MQTT 5) or return code (MQTT 3: 0 accepted, 1-5 refused).
    pub code: ReasonCode,
    /// CONNACK properties (MQTT 5).
    pub properties: Properties,
}

impl ConnAck {
    pub(crate) fn decode(r: &mut Reader<'_>, v: ProtocolVersion) -> Result<ConnAck, DecodeError> {
        let flags = r.u8()?;
        if flags & 0xfe != 0 {
            return Err(DecodeError::malformed("CONNACK reserved flags set"));
        }
        let code = r.u8()?;
        let valid = if v.is_v5() {
            CONNACK_CODES.contains(&code)
        } else {
            code <= 5
        };
        if !valid {
            return Err(DecodeError::malformed(format!("CONNACK code {code:#04x}")));
        }
        let properties = Properties::decode_for(r, v, allowed::CONNACK)?;
        Ok(ConnAck {
            session_present: flags & 1 != 0,
            code: ReasonCode(code),
            properties,
        })
    }

    pub(crate) fn encoded_len(&self, v: ProtocolVersion) -> usize {
        2 + self.properties.encoded_len_for(v)
    }

    pub(crate) fn encode(&self, v: ProtocolVersion, out: &mut BytesMut) {
        out.put_u8(u8::from(self.session_present));
        out.put_u8(self.code.0);
        self.properties.encode_for(v, out);
    }
}
