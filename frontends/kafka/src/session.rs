//! What one Kafka connection knows about itself.

use strata_frontend::security::scram::Mechanism;

/// A SASL mechanism this broker offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    /// PLAIN.
    Plain,
    /// SCRAM-SHA-256 or SCRAM-SHA-512.
    Scram(Mechanism),
}

/// Per-connection state.
#[derive(Debug, Default)]
pub struct Session {
    /// True once SASL succeeded (or when SASL is off).
    pub authenticated: bool,
    /// The mechanism a SaslHandshake chose.
    pub mechanism: Option<SaslMechanism>,
    /// A SCRAM exchange between its two rounds.
    pub scram: Option<Box<strata_frontend::security::scram::ServerExchange>>,
    /// Principal after authentication.
    pub user: Option<String>,
    /// The client's address.
    pub peer: Option<std::net::SocketAddr>,
    /// Client id from the last request header.
    pub client_id: String,
    /// Set when the connection must close once the response is written (a failed
    /// authentication).
    pub close_after_response: bool,
    /// The connection came in on the SSL listener.
    pub tls: bool,
    /// Produce and Fetch byte quotas, when configured.
    pub quotas: Option<Box<crate::quota::Quotas>>,
}
