//! Codec errors, each mapped to the MQTT 5 reason code a server sends for it.

use super::reason::ReasonCode;

/// Why bytes could not be decoded into a packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes break the packet format (reason code 0x81).
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// The packet is well formed but breaks a protocol rule (reason code 0x82).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The packet is larger than the receiver's maximum packet size (0x95).
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Announced packet size, fixed header included.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// CONNECT names a protocol level this server does not speak (0x84).
    #[error("unsupported protocol {name:?} level {level}")]
    UnsupportedVersion {
        /// Protocol name from the CONNECT.
        name: String,
        /// Protocol level from the CONNECT.
        level: u8,
    },
}

impl DecodeError {
    pub(crate) fn malformed(msg: impl Into<String>) -> Self {
        DecodeError::Malformed(msg.into())
    }

    pub(crate) fn protocol(msg: impl Into<String>) -> Self {
        DecodeError::Protocol(msg.into())
    }

    /// The MQTT 5 reason code for a DISCONNECT or CONNACK reporting this error.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::Malformed(_) => ReasonCode::MALFORMED_PACKET,
            DecodeError::Protocol(_) => ReasonCode::PROTOCOL_ERROR,
            DecodeError::TooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            DecodeError::UnsupportedVersion { .. } => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
        }
    }
}

/// Why a packet could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The packet would exceed the peer's maximum packet size.
    #[error("packet of {size} bytes exceeds the peer's maximum of {max}")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A field cannot be represented (too long a string, a property the version lacks...).
    #[error("cannot encode: {0}")]
    Invalid(String),
}
