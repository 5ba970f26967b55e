//! `/api/v1/cluster/...`: the cluster as the meta service knows it.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use strata_meta::model::NodeState;
use utoipa::ToSchema;

use super::AdminState;

/// A member of the cluster.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeView {
    /// Its id.
    pub id: u64,
    /// Its node-to-node (meta service) address.
    pub rpc: String,
    /// Its client listeners by name, as it registered them.
    pub listeners: BTreeMap<String, String>,
    /// `active`, or `leaving` once its removal started.
    pub state: String,
    /// Partitions it leads.
    pub partitions_led: usize,
}

/// The cluster's members and its meta service's leader.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterView {
    /// This node's id.
    pub node_id: u64,
    /// The meta service's leader as this node knows it.
    pub leader: Option<u64>,
    /// The meta service's Raft term.
    pub term: u64,
    /// Every member, by id.
    pub nodes: Vec<NodeView>,
}

/// The nodes of the cluster and the meta service's leader, as this node has applied them
/// (a follower may trail the leader by its last few writes).
#[utoipa::path(get, path = "/api/v1/cluster/nodes", tag = "cluster",
    responses((status = 200, description = "The cluster", body = ClusterView)))]
pub async fn nodes(State(s): State<AdminState>) -> Json<ClusterView> {
    let state = s.meta.state();
    let mut led: BTreeMap<u64, usize> = BTreeMap::new();
    for p in state.placement.values().flatten() {
        if let Some(l) = p.leader {
            *led.entry(l).or_default() += 1;
        }
    }
    let nodes = state
        .nodes
        .values()
        .map(|n| NodeView {
            id: n.id,
            rpc: n.rpc.clone(),
            listeners: n.listeners.clone(),
            state: match n.state {
                NodeState::Active => "active",
                NodeState::Leaving => "leaving",
            }
            .to_owned(),
            partitions_led: led.get(&n.id).copied().unwrap_or(0),
        })
        .collect();
    Json(ClusterView {
        node_id: s.meta.id(),
        leader: s.meta.leader(),
        term: s.meta.term(),
        nodes,
    })
}
