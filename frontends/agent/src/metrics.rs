//! The agent frontend's metrics. No label names a queue or an agent: the set of series is
//! fixed whatever clients create.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Registry};
use strata_metrics::{counter, counter_vec, gauge};

/// Counters and gauges of the agent frontend. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AgentMetrics {
    /// Messages stored.
    pub sends: IntCounter,
    /// Sends answered with the message an earlier send with the same key stored.
    pub duplicates: IntCounter,
    /// Messages handed out.
    pub deliveries: IntCounter,
    /// Messages handed out again (after a nack or a lapsed lease).
    pub redeliveries: IntCounter,
    /// Messages acknowledged.
    pub acks: IntCounter,
    /// Messages given back.
    pub nacks: IntCounter,
    /// Leases that lapsed.
    pub lease_expiries: IntCounter,
    /// Messages dead-lettered after too many deliveries.
    pub dead_letters: IntCounter,
    /// Message bodies stored on their own (claim-check).
    pub claims: IntCounter,
    /// Messages that expired unread or left the journal before delivery.
    pub expired: IntCounter,
    /// Queues open on this node.
    pub queues: IntGauge,
    /// Events appended to topics.
    pub events_published: IntCounter,
    /// Events sent to streaming readers.
    pub events_streamed: IntCounter,
    /// Streaming (SSE) readers connected.
    pub sse_clients: IntGauge,
    /// Requests refused, by error code.
    pub errors: IntCounterVec,
    /// MCP requests, by method (a fixed set; `other` for the rest).
    pub mcp_requests: IntCounterVec,
    /// Requests forwarded to the node that serves the agent API (in a cluster).
    pub forwarded: IntCounter,
}

impl AgentMetrics {
    /// Registers the metrics in `registry`.
    pub fn new(registry: &Registry) -> Self {
        let c = |name: &str, help: &str| counter(registry, name, help);
        AgentMetrics {
            sends: c(
                "strata_agent_sends_total",
                "Messages stored in agent queues",
            ),
            duplicates: c(
                "strata_agent_duplicate_sends_total",
                "Sends whose idempotency key had stored the message already",
            ),
            deliveries: c(
                "strata_agent_deliveries_total",
                "Messages handed out on a lease",
            ),
            redeliveries: c(
                "strata_agent_redeliveries_total",
                "Messages handed out again after a nack or a lapsed lease",
            ),
            acks: c("strata_agent_acks_total", "Messages acknowledged"),
            nacks: c(
                "strata_agent_nacks_total",
                "Messages given back to their queue",
            ),
            lease_expiries: c("strata_agent_lease_expiries_total", "Leases that lapsed"),
            dead_letters: c(
                "strata_agent_dead_letters_total",
                "Messages dead-lettered after max_deliveries",
            ),
            claims: c(
                "strata_agent_claim_checks_total",
                "Message bodies stored on their own, claim-checked",
            ),
            expired: c(
                "strata_agent_expired_total",
                "Messages that expired unread or left the journal before delivery",
            ),
            queues: gauge(
                registry,
                "strata_agent_queues",
                "Agent queues open on this node",
            ),
            events_published: c(
                "strata_agent_events_published_total",
                "Events appended to agent topics",
            ),
            events_streamed: c(
                "strata_agent_events_streamed_total",
                "Events sent to streaming (SSE) readers",
            ),
            sse_clients: gauge(
                registry,
                "strata_agent_sse_clients",
                "Streaming (SSE) readers connected",
            ),
            errors: counter_vec(
                registry,
                "strata_agent_errors_total",
                "Agent API requests refused, by error code",
                &["code"],
            ),
            mcp_requests: counter_vec(
                registry,
                "strata_agent_mcp_requests_total",
                "MCP requests, by JSON-RPC method",
                &["method"],
            ),
            forwarded: c(
                "strata_agent_forwarded_total",
                "Requests forwarded to the node serving the agent API (a cluster's owner of \
                 the agent state)",
            ),
        }
    }
}
