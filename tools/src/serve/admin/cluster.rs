//! `/api/v1/cluster/...`: the cluster as the meta service knows it.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use strata_frontend::admin::extract::{ApiJson, ApiPath, ApiQuery};
use strata_meta::model::{Command, MAX_REPLICAS, NodeState, Outcome, PartitionPlacement};
use strata_meta::{MetaError, VoterChange};
use utoipa::{IntoParams, ToSchema};

use super::{AdminState, ApiError, ApiResult, ErrorBody};

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
    /// Its last heartbeat in milliseconds on the cluster's clock, which the meta leader
    /// keeps (close to wall-clock time; 0: none yet).
    pub last_heartbeat_ms: i64,
    /// Whether its heartbeats arrive: a node whose last heartbeat is more than 1.5 s older
    /// than the newest any node sent is taken for down, new partitions avoid it, the
    /// replicated partitions it leads elect another leader and Kafka clients see its
    /// unreplicated partitions offline.
    pub alive: bool,
    /// Whether new partitions may be placed on it: active, and its last heartbeat within
    /// 1.5 s of the newest any node sent (the time the metadata itself records).
    pub takes_partitions: bool,
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
    Json(view(&s))
}

fn view(s: &AdminState) -> ClusterView {
    let alive: BTreeMap<u64, bool> = s
        .storage
        .catalog
        .members()
        .into_iter()
        .map(|m| (m.id, m.alive))
        .collect();
    let nodes = s.meta.read(|state| {
        let mut led: BTreeMap<u64, usize> = BTreeMap::new();
        for p in state.placement.values().flatten() {
            if let Some(l) = p.leader {
                *led.entry(l).or_default() += 1;
            }
        }
        state
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
                last_heartbeat_ms: n.heartbeat_ms,
                alive: alive.get(&n.id).copied().unwrap_or(false),
                takes_partitions: state.takes_partitions(n.id),
            })
            .collect()
    });
    ClusterView {
        node_id: s.meta.id(),
        leader: s.meta.leader(),
        term: s.meta.term(),
        nodes,
    }
}

/// A node to add to the cluster.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNode {
    /// Its id (`[cluster] node_id` in its configuration).
    #[schema(minimum = 1, maximum = 2147483647)]
    pub id: u64,
    /// Its node-to-node address, `host:port`.
    #[schema(pattern = "^[A-Za-z0-9.\\[\\]:_-]+:[0-9]{1,5}$", max_length = 255)]
    pub rpc: String,
}

fn meta_error(e: MetaError) -> ApiError {
    match e {
        MetaError::Refused(m) => ApiError::new(StatusCode::CONFLICT, "refused", m),
        e => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        ),
    }
}

/// Adds a node to the meta service's voters: it catches up as a learner, then votes. Start
/// the node first, with the current voters as its `initial_voters` (itself not among them)
/// and the cluster's secret; it registers its listeners by itself once it is a member.
#[utoipa::path(post, path = "/api/v1/cluster/nodes", tag = "cluster", request_body = NewNode,
    responses(
        (status = 200, description = "The cluster with the node added", body = ClusterView),
        (status = 400, description = "Bad id or address", body = ErrorBody),
        (status = 409, description = "The meta leader refused the change", body = ErrorBody),
        (status = 503, description = "No meta leader answered", body = ErrorBody)))]
pub async fn add_node(
    State(s): State<AdminState>,
    ApiJson(node): ApiJson<NewNode>,
) -> ApiResult<ClusterView> {
    if node.id == 0 || node.id > i32::MAX as u64 {
        return Err(ApiError::bad_request(format!(
            "a node id is 1 to {}",
            i32::MAX
        )));
    }
    let valid = node.rpc.len() <= 255
        && node
            .rpc
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
    if !valid {
        return Err(ApiError::bad_request(format!(
            "`{}` is not host:port",
            node.rpc
        )));
    }
    if s.meta.voters().contains(&node.id) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "refused",
            format!("node {} is already a voter", node.id),
        ));
    }
    // Refused at once when nothing listens there, before the group waits for it.
    let reach = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        tokio::net::TcpStream::connect(node.rpc.as_str()),
    )
    .await;
    if !matches!(reach, Ok(Ok(_))) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "refused",
            format!("nothing answers at {}: start the node first", node.rpc),
        ));
    }
    let change = VoterChange::Add {
        id: node.id,
        rpc: node.rpc.clone(),
    };
    s.meta.change_voters(change).await.map_err(meta_error)?;
    tracing::info!(
        node = node.id,
        rpc = node.rpc,
        "node added to the meta service's voters"
    );
    s.audit("cluster.node.add", &node.id.to_string()).await;
    Ok(Json(view(&s)))
}

/// What removing a node did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Removal {
    /// `removed`, or `leaving`: the node still leads partitions or holds copies of
    /// replicated ones; it takes no new ones. The copies move to other active nodes
    /// (each move ends with an election); a partition with one copy stays where its
    /// records are. Remove it again once it holds none.
    pub state: String,
    /// Partitions it still leads.
    pub partitions_led: u64,
    /// Replicated partitions that still hold a copy on it (moving off it when another
    /// active node can take the copy; none left to take it: move or shrink them with
    /// `POST /api/v1/cluster/partitions/{stream}/{partition}/replicas`).
    pub copies: u64,
}

/// Removes a node: at once when it leads no partition and holds no copy (it also stops
/// being a meta voter); otherwise it is marked leaving, takes no new partitions, keeps
/// serving those it has, and its copies of replicated partitions move to other nodes.
#[utoipa::path(delete, path = "/api/v1/cluster/nodes/{id}", tag = "cluster",
    params(("id" = u64, Path, description = "Node id")),
    responses(
        (status = 200, description = "Removed or leaving", body = Removal),
        (status = 404, description = "No such node", body = ErrorBody),
        (status = 409, description = "The meta leader refused the change", body = ErrorBody),
        (status = 503, description = "No meta leader answered", body = ErrorBody)))]
pub async fn remove_node(
    State(s): State<AdminState>,
    ApiPath(id): ApiPath<u64>,
) -> ApiResult<Removal> {
    let voter = s.meta.voters().contains(&id);
    let outcome = s
        .meta
        .write(Command::RemoveNode { id })
        .await
        .map_err(meta_error)?;
    let removal = match outcome {
        Outcome::Removed => Removal {
            state: "removed".into(),
            partitions_led: 0,
            copies: 0,
        },
        // Never registered (it never started) but a voter: only the vote goes.
        Outcome::NotFound(_) if voter => Removal {
            state: "removed".into(),
            partitions_led: 0,
            copies: 0,
        },
        Outcome::NotFound(m) => return Err(ApiError::not_found(m)),
        Outcome::Invalid(m) => return Err(ApiError::new(StatusCode::CONFLICT, "refused", m)),
        Outcome::Leaving { partitions, copies } => Removal {
            state: "leaving".into(),
            partitions_led: partitions,
            copies,
        },
        other => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "refused",
                format!("{other:?}"),
            ));
        }
    };
    // Its vote goes once the meta service removed it (the leader's state decides, not this
    // node's view). Refused while the voters that would remain have no quorum: asking
    // again finishes it (a node gone from the metadata but still voting loses its vote).
    if removal.state == "removed" && voter {
        s.meta
            .change_voters(VoterChange::Remove { id })
            .await
            .map_err(meta_error)?;
    }
    // Read-your-writes on this node: its view shows the change before the answer.
    let deadline = std::time::Duration::from_secs(10);
    if removal.state == "removed" {
        s.meta
            .applied(|st| !st.nodes.contains_key(&id), deadline)
            .await;
    } else {
        s.meta
            .applied(
                |st| {
                    st.nodes
                        .get(&id)
                        .is_some_and(|n| n.state == NodeState::Leaving)
                },
                deadline,
            )
            .await;
    }
    tracing::info!(node = id, state = removal.state, "node removal requested");
    s.audit("cluster.node.remove", &id.to_string()).await;
    Ok(Json(removal))
}

/// One partition's placement.
#[derive(Debug, Serialize, ToSchema)]
pub struct LeaderView {
    /// Stream.
    pub stream: String,
    /// Partition.
    pub partition: u32,
    /// The node that serves it, if any does.
    pub leader: Option<u64>,
    /// Its leader epoch.
    pub epoch: u64,
    /// The nodes holding a copy.
    pub replicas: Vec<u64>,
    /// The replicas in sync with the leader, as it last reported them (none while the
    /// partition has no leader).
    pub in_sync: Vec<u64>,
    /// Whether fewer replicas are in sync than hold a copy.
    pub under_replicated: bool,
    /// The replicas it is moving to, while a move runs (empty otherwise).
    pub moving_to: Vec<u64>,
    /// The nodes copying it to become replicas (the move's new nodes).
    pub learners: Vec<u64>,
}

impl LeaderView {
    fn of(stream: &str, partition: u32, p: &PartitionPlacement) -> Self {
        LeaderView {
            stream: stream.to_string(),
            partition,
            leader: p.leader,
            epoch: p.epoch,
            replicas: p.replicas.clone(),
            in_sync: p.in_sync(),
            under_replicated: p.under_replicated(),
            moving_to: p.target.clone(),
            learners: p.learners(),
        }
    }
}

/// Which partitions to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LeadersQuery {
    /// Only this stream's partitions.
    pub stream: Option<String>,
    /// Only partitions with fewer replicas in sync than copies (`true`), or only the
    /// others (`false`).
    pub under_replicated: Option<bool>,
}

/// Every partition's leader, epoch and replicas (or one stream's), by stream and partition.
#[utoipa::path(get, path = "/api/v1/cluster/leaders", tag = "cluster", params(LeadersQuery),
    responses((status = 200, description = "Placement", body = [LeaderView])))]
pub async fn leaders(
    State(s): State<AdminState>,
    ApiQuery(q): ApiQuery<LeadersQuery>,
) -> Json<Vec<LeaderView>> {
    Json(s.meta.read(|state| {
        state
            .placement
            .iter()
            .filter(|(name, _)| q.stream.as_ref().is_none_or(|w| w == *name))
            .flat_map(|(name, parts)| {
                parts
                    .iter()
                    .enumerate()
                    .map(move |(i, p)| LeaderView::of(name, i as u32, p))
            })
            .filter(|v| q.under_replicated.is_none_or(|u| u == v.under_replicated))
            .collect()
    }))
}

/// A replicated partition's copy on this node.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplicaView {
    /// Stream.
    pub stream: String,
    /// Partition.
    pub partition: u32,
    /// `leader`, `follower`, `electing` or `idle`.
    pub role: String,
    /// The epoch of that role (0 when idle).
    pub epoch: u64,
    /// The leader this copy follows (followers), or this node (leaders).
    pub leader: Option<u64>,
    /// Its high watermark: the records below it are committed and readable.
    pub high_watermark: u64,
    /// The end of what its log holds (committed or not).
    pub log_end: u64,
    /// Leaders: each follower's progress.
    pub followers: Vec<FollowerView>,
}

/// A follower as its leader sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct FollowerView {
    /// The follower.
    pub node: u64,
    /// Its last fetch offset (it holds every record below it); none before its first
    /// fetch in this epoch.
    pub offset: Option<u64>,
    /// Records the leader holds past that offset: the replication lag.
    pub lag: u64,
    /// Whether it caught up with the leader within the last 10 s (never for a learner).
    pub in_sync: bool,
    /// Whether it is a learner: a node the partition is moving to, copying the log
    /// without counting toward commitment.
    pub learner: bool,
}

/// The replicated partitions this node holds a copy of: role, high watermark and, on
/// their leader, each follower's lag.
#[utoipa::path(get, path = "/api/v1/cluster/replicas", tag = "cluster",
    responses((status = 200, description = "This node's replicas", body = [ReplicaView])))]
pub async fn replicas(State(s): State<AdminState>) -> Json<Vec<ReplicaView>> {
    use strata_local::replica::Role;
    let me = s.meta.id();
    Json(
        s.replicas
            .statuses(me)
            .into_iter()
            .map(|r| {
                let (role, epoch, leader) = match r.role {
                    Role::Idle => ("idle", 0, None),
                    Role::Electing { epoch } => ("electing", epoch, None),
                    Role::Leader { epoch } => ("leader", epoch, Some(me)),
                    Role::Follower { epoch, leader } => ("follower", epoch, Some(leader)),
                };
                ReplicaView {
                    stream: r.stream,
                    partition: r.partition,
                    role: role.to_string(),
                    epoch,
                    leader,
                    high_watermark: r.high_watermark,
                    log_end: r.log_end,
                    followers: r
                        .followers
                        .into_iter()
                        .map(|f| FollowerView {
                            node: f.node,
                            offset: f.offset,
                            lag: f.lag,
                            in_sync: f.in_sync,
                            learner: f.learner,
                        })
                        .collect(),
                }
            })
            .collect(),
    )
}

/// Places every partition that has no leader, or whose node left the cluster, on the least
/// loaded active nodes. Partitions on members stay where their records are.
#[utoipa::path(post, path = "/api/v1/cluster/rebalance", tag = "cluster",
    responses(
        (status = 200, description = "The cluster after the change", body = ClusterView),
        (status = 503, description = "No meta leader answered", body = ErrorBody)))]
pub async fn rebalance(State(s): State<AdminState>) -> ApiResult<ClusterView> {
    s.meta.write(Command::Rebalance).await.map_err(meta_error)?;
    s.audit("cluster.rebalance", "").await;
    Ok(Json(view(&s)))
}

/// The replicas a partition is to have.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReplicas {
    /// 2 to 7 distinct node ids, the first the preferred leader. The partition's current
    /// replicas cancel a move under way; the same nodes in another order only change the
    /// preferred leader.
    pub replicas: Vec<u64>,
}

/// Moves a replicated partition to other nodes: the nodes new to it copy its log as
/// learners; once every one keeps up, its leader stops taking appends for at most a
/// second, and the next leader is elected among the new replicas, the first preferred.
/// Answers at once with the move under way (follow it in `GET /api/v1/cluster/leaders`).
#[utoipa::path(post, path = "/api/v1/cluster/partitions/{stream}/{partition}/replicas",
    tag = "cluster", request_body = NewReplicas,
    params(("stream" = String, Path, description = "Stream"),
        ("partition" = u32, Path, description = "Partition")),
    responses(
        (status = 200, description = "The partition's placement, the move under way", body = LeaderView),
        (status = 404, description = "No such stream or partition", body = ErrorBody),
        (status = 409, description = "Refused (one copy, unknown or leaving nodes, a bad count)", body = ErrorBody),
        (status = 503, description = "No meta leader answered", body = ErrorBody)))]
pub async fn move_replicas(
    State(s): State<AdminState>,
    ApiPath((stream, partition)): ApiPath<(String, u32)>,
    ApiJson(new): ApiJson<NewReplicas>,
) -> ApiResult<LeaderView> {
    // Refused before anything is written: the meta service would refuse it too.
    let mut distinct = new.replicas.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() != new.replicas.len()
        || !(2..=MAX_REPLICAS as usize).contains(&new.replicas.len())
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "refused",
            format!("a replicated partition has 2 to {MAX_REPLICAS} distinct replicas"),
        ));
    }
    let command = Command::MoveReplicas {
        stream: stream.clone(),
        partition,
        replicas: new.replicas.clone(),
    };
    match s.meta.write(command).await.map_err(meta_error)? {
        Outcome::Done => {}
        Outcome::NotFound(m) => return Err(ApiError::not_found(m)),
        other => {
            let m = match other {
                Outcome::Invalid(m) => m,
                o => format!("{o:?}"),
            };
            return Err(ApiError::new(StatusCode::CONFLICT, "refused", m));
        }
    }
    // Read-your-writes on this node.
    let wanted = new.replicas.clone();
    let shown = |st: &strata_meta::model::MetaState| {
        st.placement
            .get(&stream)
            .and_then(|ps| ps.get(partition as usize))
            .is_some_and(|p| p.target == wanted || (p.target.is_empty() && p.replicas == wanted))
    };
    s.meta
        .applied(shown, std::time::Duration::from_secs(10))
        .await;
    let view = s.meta.read(|st| {
        st.placement
            .get(&stream)
            .and_then(|ps| ps.get(partition as usize))
            .map(|p| LeaderView::of(&stream, partition, p))
    });
    let replicas = format!("{stream}/{partition} -> {:?}", new.replicas);
    tracing::info!(stream, partition, replicas = ?new.replicas, "partition move requested");
    s.audit("cluster.partition.move", &replicas).await;
    view.map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no partition {partition} in `{stream}`")))
}
