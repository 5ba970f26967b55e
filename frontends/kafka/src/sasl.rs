//! SASL for Kafka clients: PLAIN (against `[kafka] sasl_plain_users`, then the node's users
//! and their argon2 hashes) and SCRAM-SHA-256/512 (against the SCRAM credentials the node
//! keeps for users whose password was set through the admin API). A failed authentication
//! closes the connection once the client has its error, as Kafka does.

use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use strata_frontend::security::Authenticated;
use strata_frontend::security::scram::{Mechanism, ServerExchange, client_first};

use crate::code;
use crate::session::{SaslMechanism, Session};
use crate::state::Kafka;

const MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// SaslHandshake: the mechanism for the next SaslAuthenticate requests.
pub fn handshake(session: &mut Session, r: SaslHandshakeRequest) -> SaslHandshakeResponse {
    let name = r.mechanism.as_str();
    session.mechanism = match name {
        "PLAIN" => Some(SaslMechanism::Plain),
        other => Mechanism::from_name(other).map(SaslMechanism::Scram),
    };
    session.scram = None;
    SaslHandshakeResponse::default()
        .with_error_code(if session.mechanism.is_some() {
            code::NONE
        } else {
            code::UNSUPPORTED_SASL_MECHANISM
        })
        .with_mechanisms(
            MECHANISMS
                .iter()
                .map(|m| StrBytes::from_static_str(m))
                .collect(),
        )
}

fn failed(k: &Kafka, session: &mut Session, message: &'static str) -> SaslAuthenticateResponse {
    k.metrics
        .error("SaslAuthenticate", code::SASL_AUTHENTICATION_FAILED);
    session.close_after_response = true;
    session.scram = None;
    SaslAuthenticateResponse::default()
        .with_error_code(code::SASL_AUTHENTICATION_FAILED)
        .with_error_message(Some(StrBytes::from_static_str(message)))
}

/// SaslAuthenticate: one round of the chosen mechanism.
pub async fn authenticate(
    k: &Kafka,
    session: &mut Session,
    r: SaslAuthenticateRequest,
) -> SaslAuthenticateResponse {
    match session.mechanism {
        None => {
            k.metrics
                .error("SaslAuthenticate", code::ILLEGAL_SASL_STATE);
            SaslAuthenticateResponse::default()
                .with_error_code(code::ILLEGAL_SASL_STATE)
                .with_error_message(Some(StrBytes::from_static_str(
                    "SaslHandshake must come first",
                )))
        }
        Some(SaslMechanism::Plain) => plain(k, session, &r.auth_bytes).await,
        Some(SaslMechanism::Scram(mechanism)) => scram(k, session, mechanism, &r.auth_bytes),
    }
}

async fn plain(k: &Kafka, session: &mut Session, bytes: &[u8]) -> SaslAuthenticateResponse {
    // [authzid] NUL authcid NUL passwd
    let parts: Vec<&[u8]> = bytes.split(|&b| b == 0).collect();
    let [_, user, pass] = parts.as_slice() else {
        return failed(k, session, "Authentication failed: malformed PLAIN message");
    };
    let user = String::from_utf8_lossy(user).to_string();
    let configured = k
        .config
        .sasl_plain_users
        .get(&user)
        .map(|p| constant_time_eq(p.as_bytes(), pass));
    let good = match configured {
        Some(ok) => ok,
        None => matches!(
            k.security.authenticate(Some(&user), Some(pass)).await,
            Authenticated::User(_)
        ),
    };
    if !good {
        return failed(
            k,
            session,
            "Authentication failed: invalid username or password",
        );
    }
    session.user = Some(user);
    session.authenticated = true;
    SaslAuthenticateResponse::default()
}

fn scram(
    k: &Kafka,
    session: &mut Session,
    mechanism: Mechanism,
    bytes: &[u8],
) -> SaslAuthenticateResponse {
    match session.scram.take() {
        None => {
            let Ok((user, nonce, bare)) = client_first(bytes) else {
                return failed(k, session, "Authentication failed: malformed SCRAM message");
            };
            let credential = k.security.scram_credential(&user, mechanism);
            let (exchange, first) =
                ServerExchange::start(mechanism, user, &nonce, bare, credential);
            session.scram = Some(Box::new(exchange));
            SaslAuthenticateResponse::default().with_auth_bytes(first.into())
        }
        Some(exchange) => match exchange.finish(bytes) {
            Ok(last) => {
                session.user = Some(exchange.username().to_string());
                session.authenticated = true;
                SaslAuthenticateResponse::default().with_auth_bytes(last.into())
            }
            Err(e) => {
                tracing::debug!(user = exchange.username(), error = %e, "SCRAM authentication failed");
                failed(
                    k,
                    session,
                    "Authentication failed: invalid username or password",
                )
            }
        },
    }
}

/// Compares without stopping at the first difference, so timing does not reveal how much of
/// a guessed password was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
