//! DISCONNECT and AUTH.

use bytes::{BufMut, BytesMut};

use super::error::DecodeError;
use super::primitives::Reader;
use super::properties::{Properties, allowed};
use super::reason::{AUTH_CODES, DISCONNECT_CODES};
use super::{ProtocolVersion, ReasonCode};

/// DISCONNECT (a reason code and properties in MQTT 5; empty in MQTT 3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// Reason code.
    pub reason: ReasonCode,
    /// Properties: session expiry interval, reason string, server reference, user properties.
    pub properties: Properties,
}

fn reason_and_properties(
    r: &mut Reader<'_>,
    codes: &[u8],
    allowed: &[u8],
) -> Result<(ReasonCode, Properties), DecodeError> {
    if r.remaining() == 0 {
        return Ok((ReasonCode::SUCCESS, Properties::default()));
    }
    let code = r.u8()?;
    if !codes.contains(&code) {
        return Err(DecodeError::protocol(format!(
            "reason code {code:#04x} not valid here"
        )));
    }
    let properties = if r.remaining() > 0 {
        Properties::decode(r, allowed)?
    } else {
        Properties::default()
    };
    Ok((ReasonCode(code), properties))
}

fn short_len(reason: ReasonCode, properties: &Properties) -> usize {
    if *properties != Properties::default() {
        1 + properties.encoded_len()
    } else if reason != ReasonCode::SUCCESS {
        1
    } else {
        0
    }
}

fn put_short(reason: ReasonCode, properties: &Properties, out: &mut BytesMut) {
    let len = short_len(reason, properties);
    if len >= 1 {
        out.put_u8(reason.0);
    }
    if len > 1 {
        properties.encode(out);
    }
}

impl Disconnect {
    pub(crate) fn decode(r: &mut Reader<'_>, v: ProtocolVersion) -> Result<Self, DecodeError> {
        if !v.is_v5() {
            return Ok(Disconnect::default());
        }
        let (reason, properties) = reason_and_properties(r, DISCONNECT_CODES, allowed::DISCONNECT)?;
        Ok(Disconnect { reason, properties })
    }

    pub(crate) fn encoded_len(&self, v: ProtocolVersion) -> usize {
        if v.is_v5() {
            short_len(self.reason, &self.properties)
        } else {
            0
        }
    }

    pub(crate) fn encode(&self, v: ProtocolVersion, out: &mut BytesMut) {
        if v.is_v5() {
            put_short(self.reason, &self.properties, out);
        }
    }
}

/// AUTH (MQTT 5 only).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    /// Reason code: success, continue authentication or re-authenticate.
    pub reason: ReasonCode,
    /// Properties: authentication method and data, reason string, user properties.
    pub properties: Properties,
}

impl Auth {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let (reason, properties) = reason_and_properties(r, AUTH_CODES, allowed::AUTH)?;
        Ok(Auth { reason, properties })
    }

    pub(crate) fn encoded_len(&self) -> usize {
        short_len(self.reason, &self.properties)
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        put_short(self.reason, &self.properties, out);
    }
}
