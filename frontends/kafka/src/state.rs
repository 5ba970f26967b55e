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

/// A broker as Metadata and FindCoordinator name it: id, host, port.
pub type Broker = (i32, String, i32);

impl Kafka {
    /// The broker id this node announces: its node id.
    pub fn node_id(&self) -> i32 {
        broker_id(self.storage.catalog.node_id())
    }

    /// Every live broker of the cluster, by id, with the address a client of this session's
    /// listener (plain or TLS) reaches it at: this node's advertised address, the others'
    /// as they registered it. Nodes without such a listener, or down, are left out.
    pub fn brokers(&self, session: &Session) -> Vec<Broker> {
        self.registered(session, false)
    }

    /// The brokers that registered a listener for this session's kind, down ones included
    /// when `down` says so.
    fn registered(&self, session: &Session, down: bool) -> Vec<Broker> {
        let me = self.node_id();
        let (host, port) = self.advertised_for(session);
        let mut brokers = vec![(me, host.to_owned(), port)];
        let listener = if session.tls { "kafka-tls" } else { "kafka" };
        for m in self.storage.catalog.members() {
            let id = broker_id(m.id);
            // A node that is down is not offered, as Kafka lists only live brokers.
            if id == me || !(m.alive || down) {
                continue;
            }
            let Some((host, port)) = m.listeners.get(listener).and_then(|a| split_address(a))
            else {
                continue;
            };
            brokers.push((id, host, port));
        }
        brokers.sort_by_key(|b| b.0);
        brokers
    }

    /// The broker coordinating group (or transactional id) `key`: chosen by a hash of the
    /// key over the registered brokers, down ones included, so that a node missing a few
    /// heartbeats does not move groups (and make their members join again). While the
    /// coordinator is down its groups wait for it; their committed offsets are in the meta
    /// service, so whichever node coordinates a group next serves them.
    pub fn coordinator(&self, session: &Session, key: &str) -> Broker {
        let mut brokers = self.registered(session, true);
        let i = strata_frontend::seams::partition_for_key(key.as_bytes(), brokers.len() as u32);
        brokers.swap_remove(i as usize)
    }

    /// Whether this node coordinates group `key`.
    pub fn coordinates(&self, session: &Session, key: &str) -> bool {
        self.coordinator(session, key).0 == self.node_id()
    }
}

/// A node id as a Kafka broker id (node ids are checked to fit).
fn broker_id(id: u64) -> i32 {
    i32::try_from(id).unwrap_or(i32::MAX)
}

/// `host:port` (a bracketed IPv6 host too) as host and port.
fn split_address(address: &str) -> Option<(String, i32)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_owned(), port.parse::<u16>().ok()?.into()))
}
