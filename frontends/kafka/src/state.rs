//! What every Kafka connection shares: the configuration, storage, group coordinator,
//! producer state, quotas and metrics. Request handlers take it; it knows none of them.

use strata_frontend::owned::OwnedStreams;
use strata_frontend::seams::Storage;
use strata_frontend::security::Security;

use crate::config::KafkaConfig;
use crate::groups::Coordinator;
use crate::metrics::KafkaMetrics;
use crate::producers::Producers;
use crate::session::Session;

/// What every connection shares.
#[derive(Debug)]
pub struct Kafka {
    pub config: KafkaConfig,
    pub storage: Storage,
    pub metrics: KafkaMetrics,
    pub groups: Coordinator,
    pub producers: Producers,
    /// Host and port clients are told to use.
    pub advertised: (String, i32),
    /// Host and port clients of the SSL listener are told to use.
    pub advertised_tls: Option<(String, i32)>,
    /// Streams other frontends own.
    pub owned: OwnedStreams,
    /// Users, ACL and bans.
    pub security: Security,
    /// Produce and Fetch quotas, per principal.
    pub quotas: crate::quota::QuotaBook,
}

impl Kafka {
    /// The host and port a client of this session's listener is told to use.
    pub fn advertised_for(&self, session: &Session) -> (&str, i32) {
        match (&self.advertised_tls, session.tls) {
            (Some((host, port)), true) => (host, *port),
            _ => (&self.advertised.0, self.advertised.1),
        }
    }
}

/// The node id this broker announces (a single node for now).
pub const NODE_ID: i32 = 0;
