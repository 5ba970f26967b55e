//! MQTT 5 enhanced authentication (§4.12) with SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802,
//! 7677): the client's first message rides in CONNECT, the server answers with AUTH
//! "continue", the client's proof comes back in AUTH "continue", and CONNACK carries the
//! server's signature. The same exchange runs again later when the client asks to
//! re-authenticate (AUTH 0x19). The password never crosses the network, and the node keeps
//! only the SCRAM keys derived when the password was set.

use bytes::{Bytes, BytesMut};
use strata_frontend::security::Security;
use strata_frontend::security::scram::{Mechanism, ServerExchange, client_first};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::codec::{self, Auth, Packet, Properties, ProtocolVersion, ReasonCode};

/// The mechanism an MQTT authentication method names, if it is one the node runs.
pub(crate) fn mechanism(method: &str) -> Option<Mechanism> {
    match method {
        "SCRAM-SHA-256" => Some(Mechanism::Sha256),
        "SCRAM-SHA-512" => Some(Mechanism::Sha512),
        _ => None,
    }
}

/// An exchange under way on a connection (re-authentication), with its method.
#[derive(Debug)]
pub(crate) struct Pending {
    pub method: String,
    pub exchange: Option<ServerExchange>,
}

/// Starts an exchange from the client's first message: the exchange and the AUTH
/// "continue" packet to answer with. A first message that does not parse is a protocol
/// error.
pub(crate) fn start(
    security: &Security,
    method: &str,
    mechanism: Mechanism,
    data: &[u8],
) -> Result<(ServerExchange, Packet), ReasonCode> {
    let (user, nonce, bare) = client_first(data).map_err(|_| ReasonCode::PROTOCOL_ERROR)?;
    let credential = security.scram_credential(&user, mechanism);
    let (exchange, server_first) = ServerExchange::start(mechanism, user, &nonce, bare, credential);
    Ok((
        exchange,
        auth_packet(ReasonCode::CONTINUE_AUTHENTICATION, method, server_first),
    ))
}

/// An AUTH packet with a method and data.
pub(crate) fn auth_packet(reason: ReasonCode, method: &str, data: Vec<u8>) -> Packet {
    Packet::Auth(Auth {
        reason,
        properties: Properties {
            authentication_method: Some(method.to_string()),
            authentication_data: Some(Bytes::from(data)),
            ..Properties::default()
        },
    })
}

/// The client's answer in an exchange: AUTH "continue" with the same method, its data.
pub(crate) fn continuation(auth: &Auth, method: &str) -> Result<Bytes, ReasonCode> {
    if auth.reason != ReasonCode::CONTINUE_AUTHENTICATION
        || auth.properties.authentication_method.as_deref() != Some(method)
    {
        return Err(ReasonCode::PROTOCOL_ERROR);
    }
    Ok(auth
        .properties
        .authentication_data
        .clone()
        .unwrap_or_default())
}

/// The exchange at CONNECT: answers the client's first message, reads its proof (from
/// `rbuf` and then `stream`, at most `max` bytes) and checks it. The authenticated user and
/// the server's final message, or the reason code CONNACK refuses with.
pub(crate) async fn at_connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    max: usize,
    security: &Security,
    method: &str,
    mechanism: Mechanism,
    first: &[u8],
) -> Result<(String, Vec<u8>), ReasonCode> {
    let (exchange, reply) = start(security, method, mechanism, first)?;
    let mut out = BytesMut::new();
    codec::encode(&reply, ProtocolVersion::V5, usize::MAX, &mut out)
        .map_err(|_| ReasonCode::UNSPECIFIED_ERROR)?;
    stream
        .write_all(&out)
        .await
        .map_err(|_| ReasonCode::UNSPECIFIED_ERROR)?;
    let answer = loop {
        match codec::decode(rbuf, Some(ProtocolVersion::V5), max) {
            Ok(Some(Packet::Auth(a))) => break a,
            Ok(Some(_)) => return Err(ReasonCode::PROTOCOL_ERROR),
            Ok(None) => {}
            Err(e) => return Err(e.reason_code()),
        }
        rbuf.reserve(4096);
        match stream.read_buf(rbuf).await {
            Ok(0) | Err(_) => return Err(ReasonCode::UNSPECIFIED_ERROR),
            Ok(_) => {}
        }
    };
    let proof = continuation(&answer, method)?;
    let server_final = exchange
        .finish(&proof)
        .map_err(|_| ReasonCode::BAD_USER_NAME_OR_PASSWORD)?;
    Ok((exchange.username().to_string(), server_final))
}
