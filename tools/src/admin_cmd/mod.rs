//! `strata admin ...`: a running node's admin API from the command line, as tables or (with
//! `--json`) as the API's JSON.

mod auth;
mod client;
mod table;

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use self::client::AdminClient;
use self::table::{Column, render, render_fields};

/// Talks to a node's admin API.
#[derive(Args)]
pub struct AdminArgs {
    /// The node's admin API.
    #[arg(
        long,
        env = "STRATA_ADMIN_URL",
        default_value = "http://127.0.0.1:9180",
        global = true
    )]
    url: String,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// The node's `[admin] token`, if it has one.
    #[arg(
        long,
        env = "STRATA_ADMIN_TOKEN",
        global = true,
        hide_env_values = true
    )]
    token: Option<String>,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Version, uptime, frontends and listeners.
    Status,
    /// The effective configuration (always JSON; secrets masked).
    Config,
    /// Journal streams and partitions.
    #[command(subcommand)]
    Streams(StreamsCommand),
    /// MQTT clients, sessions, subscriptions and retained messages.
    #[command(subcommand)]
    Mqtt(MqttCommand),
    /// Kafka consumer groups.
    #[command(subcommand)]
    Kafka(KafkaCommand),
    /// The agent frontend's agents, queues and tasks.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// The log level and per-client / per-topic overrides.
    #[command(subcommand)]
    Log(LogCommand),
    /// Users (MQTT and Kafka clients' passwords).
    #[command(subcommand)]
    Users(auth::UsersCommand),
    /// ACL rules.
    #[command(subcommand)]
    Acl(auth::AclCommand),
    /// Banned client ids, usernames and addresses.
    #[command(subcommand)]
    Ban(auth::BanCommand),
    /// Admin API tokens and their roles.
    #[command(subcommand)]
    Tokens(auth::TokensCommand),
    /// The cluster's nodes and its meta service.
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Every node with its addresses, state and the partitions it leads; the meta leader.
    Nodes,
    /// Adds a started node to the meta service's voters.
    AddNode {
        /// Its `[cluster] node_id`.
        id: u64,
        /// Its node-to-node address, `host:port`.
        rpc: String,
    },
    /// Removes a node (or marks it leaving while it still leads partitions or holds
    /// copies: its copies of replicated partitions move to other nodes).
    RemoveNode { id: u64 },
    /// Moves a replicated partition to other nodes (its current replicas cancel a move).
    MoveReplicas {
        /// The stream.
        stream: String,
        /// The partition.
        partition: u32,
        /// The replicas wanted, comma-separated node ids, the preferred leader first.
        #[arg(long, value_delimiter = ',', required = true)]
        replicas: Vec<u64>,
    },
    /// Every partition's leader and epoch.
    Leaders {
        /// Only this stream's partitions.
        #[arg(long)]
        stream: Option<String>,
        /// Only partitions with fewer replicas in sync than copies.
        #[arg(long)]
        under_replicated: bool,
    },
    /// The replicated partitions the node holds a copy of: role, high watermark and, on
    /// their leader, each follower's lag.
    Replicas,
    /// Places partitions that have no leader, or whose node left, on the active nodes.
    Rebalance,
}

#[derive(Subcommand)]
enum StreamsCommand {
    /// Every stream with its totals.
    List,
    /// One stream's partitions: offsets, sizes, tiers.
    Show { name: String },
    /// One partition's segments and where each lives.
    Partition { name: String, partition: u32 },
}

/// Paging options of the MQTT listings.
#[derive(Args, Clone)]
struct Paging {
    /// Most items to show (pages are followed until this many).
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Start after this cursor (from a previous `--json` page).
    #[arg(long)]
    cursor: Option<String>,
}

#[derive(Subcommand)]
enum MqttCommand {
    /// Connected clients.
    Clients {
        /// Only client ids starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Only clients of this user name.
        #[arg(long)]
        username: Option<String>,
        /// Only clients of this protocol level (3, 4, 5).
        #[arg(long)]
        protocol: Option<u8>,
        /// Only clients whose address starts with this.
        #[arg(long)]
        peer: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// One client: session, connection and subscriptions.
    Client { client_id: String },
    /// Close a client's connection (its session stays).
    Disconnect { client_id: String },
    /// Sessions, connected or not.
    Sessions {
        /// Only client ids starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Only connected (true) or disconnected (false) sessions.
        #[arg(long)]
        connected: Option<bool>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Discard a session: connection, subscriptions, queue and stored state.
    Discard { client_id: String },
    /// Subscriptions.
    Subscriptions {
        /// Only this client's.
        #[arg(long)]
        client_id: Option<String>,
        /// Only those matching this topic name.
        #[arg(long)]
        topic: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Retained messages matching a filter.
    Retained {
        /// Topic filter (default `#`).
        #[arg(long)]
        filter: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// One retained message with its payload.
    RetainedGet { topic: String },
    /// Delete a retained message (nothing is published).
    RetainedDelete { topic: String },
}

#[derive(Subcommand)]
enum KafkaCommand {
    /// Consumer groups with their state, members and lag.
    Groups,
    /// One group: members, assignments, offsets and lag.
    Group { group_id: String },
}

#[derive(Subcommand)]
enum AgentCommand {
    /// Registered agents, with their mailboxes.
    Agents {
        /// Only names starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Only online (true) or offline (false) agents.
        #[arg(long)]
        online: Option<bool>,
        #[command(flatten)]
        paging: Paging,
    },
    /// One agent.
    Agent { name: String },
    /// Queues, mailboxes and dead-letter queues, with their depth where open.
    Queues {
        /// Only names starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Only `queue`, `mailbox` or `dead-letter`.
        #[arg(long)]
        kind: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// One queue.
    Queue { name: String },
    /// Tasks.
    Tasks {
        /// Only tasks in this state (`submitted`, `working`, `input-required`,
        /// `completed`, `failed`, `canceled`).
        #[arg(long)]
        state: Option<String>,
        /// Only tasks for this agent.
        #[arg(long)]
        agent: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// One task.
    Task { id: String },
}

const AGENT_COLUMNS: &[Column<'static>] = &[
    ("NAME", "/name"),
    ("ONLINE", "/online"),
    ("SEEN MS", "/seen_ms"),
    ("SKILLS", "/skills"),
    ("MAILBOX DEPTH", "/mailbox_depth"),
];

const QUEUE_COLUMNS: &[Column<'static>] = &[
    ("QUEUE", "/name"),
    ("KIND", "/kind"),
    ("STORAGE", "/storage"),
    ("DEPTH", "/depth"),
    ("IN FLIGHT", "/in_flight"),
];

const TASK_COLUMNS: &[Column<'static>] = &[
    ("TASK", "/id"),
    ("AGENT", "/agent"),
    ("STATE", "/state"),
    ("EVENTS", "/events"),
    ("UPDATED MS", "/updated_ms"),
];

async fn agent(c: &AdminClient, command: AgentCommand) -> anyhow::Result<Shown> {
    let fields = |columns: &'static [Column<'static>]| -> Box<dyn Fn(&Value) -> String> {
        Box::new(move |v| render(std::slice::from_ref(v), columns))
    };
    Ok(match command {
        AgentCommand::Agents {
            prefix,
            online,
            paging,
        } => {
            let q = [
                ("prefix", prefix),
                ("online", online.map(|b| b.to_string())),
            ];
            (
                c.get_all(&["agent", "agents"], &q, paging.cursor, paging.limit)
                    .await?,
                items_table(AGENT_COLUMNS),
            )
        }
        AgentCommand::Agent { name } => (
            c.get(&["agent", "agents", &name], &[]).await?,
            fields(AGENT_COLUMNS),
        ),
        AgentCommand::Queues {
            prefix,
            kind,
            paging,
        } => {
            let q = [("prefix", prefix), ("kind", kind)];
            (
                c.get_all(&["agent", "queues"], &q, paging.cursor, paging.limit)
                    .await?,
                items_table(QUEUE_COLUMNS),
            )
        }
        AgentCommand::Queue { name } => (
            c.get(&["agent", "queues", &name], &[]).await?,
            fields(QUEUE_COLUMNS),
        ),
        AgentCommand::Tasks {
            state,
            agent,
            paging,
        } => {
            let q = [("state", state), ("agent", agent)];
            (
                c.get_all(&["agent", "tasks"], &q, paging.cursor, paging.limit)
                    .await?,
                items_table(TASK_COLUMNS),
            )
        }
        AgentCommand::Task { id } => (
            c.get(&["agent", "tasks", &id], &[]).await?,
            fields(TASK_COLUMNS),
        ),
    })
}

#[derive(Subcommand)]
enum LogCommand {
    /// The base level and the overrides.
    Show,
    /// Replace the base level (`info`, `warn,strata_journal=debug`, ...).
    Level { level: String },
    /// Log one client id's or one topic's events up to a level.
    Override {
        /// The client id (MQTT or Kafka).
        #[arg(long, conflicts_with = "topic", required_unless_present = "topic")]
        client_id: Option<String>,
        /// The topic (MQTT or Kafka).
        #[arg(long)]
        topic: Option<String>,
        /// `debug` or `trace` (or any level).
        #[arg(long, default_value = "debug")]
        level: String,
        /// Lapse after this many seconds.
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// Remove an override.
    Remove { id: u64 },
}

const SESSION_COLUMNS: &[Column<'static>] = &[
    ("CLIENT ID", "/client_id"),
    ("CONNECTED", "/connected"),
    ("PEER", "/connection/peer"),
    ("PROTO", "/connection/protocol_version"),
    ("USER", "/connection/username"),
    ("SUBS", "/subscriptions"),
    ("INFLIGHT", "/inflight"),
    ("QUEUED", "/queued"),
    ("DROPPED", "/dropped"),
];

const SUBSCRIPTION_COLUMNS: &[Column<'static>] = &[
    ("CLIENT ID", "/client_id"),
    ("FILTER", "/filter"),
    ("QOS", "/qos"),
    ("NO LOCAL", "/no_local"),
    ("RAP", "/retain_as_published"),
    ("RH", "/retain_handling"),
    ("ID", "/identifier"),
];

/// Runs an admin subcommand.
pub fn run(args: AdminArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let client = AdminClient::new(&args.url, args.token.as_deref())?;
    let json = args.json;
    let text = runtime.block_on(execute(&client, args.command, json))?;
    if !text.is_empty() {
        println!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

/// What to print for `command`.
async fn execute(c: &AdminClient, command: AdminCommand, json: bool) -> anyhow::Result<String> {
    // Each arm fetches (or acts), then shows the answer as JSON or as a table.
    let (value, show): Shown = match command {
        AdminCommand::Status => (
            c.get(&["node"], &[]).await?,
            Box::new(|v| {
                let mut text = render_fields(
                    v,
                    &[
                        ("version", "/version"),
                        ("uptime", "/uptime_seconds"),
                        ("pid", "/pid"),
                        ("data dir", "/data_dir"),
                        ("streams", "/streams"),
                        ("frontends", "/frontends"),
                    ],
                );
                let listeners = v["listeners"].as_array().cloned().unwrap_or_default();
                text.push_str("\n\n");
                text.push_str(&render(
                    &listeners,
                    &[("LISTENER", "/name"), ("ADDRESS", "/address")],
                ));
                text
            }),
        ),
        AdminCommand::Config => (c.get(&["node", "config"], &[]).await?, Box::new(pretty)),
        AdminCommand::Streams(s) => streams(c, s).await?,
        AdminCommand::Mqtt(m) => mqtt(c, m).await?,
        AdminCommand::Kafka(k) => kafka(c, k).await?,
        AdminCommand::Agent(a) => agent(c, a).await?,
        AdminCommand::Log(l) => log(c, l).await?,
        AdminCommand::Users(u) => auth::users(c, u).await?,
        AdminCommand::Acl(a) => auth::acl(c, a).await?,
        AdminCommand::Ban(b) => auth::ban(c, b).await?,
        AdminCommand::Tokens(t) => auth::tokens(c, t).await?,
        AdminCommand::Cluster(command) => cluster(c, command).await?,
    };
    Ok(if json { pretty(&value) } else { show(&value) })
}

fn show_cluster(v: &Value) -> String {
    let mut text = format!(
        "node {}, meta leader {}, term {}\n",
        v["node_id"], v["leader"], v["term"]
    );
    text.push_str(&render(
        v["nodes"].as_array().map_or(&[][..], Vec::as_slice),
        &[
            ("ID", "/id"),
            ("STATE", "/state"),
            ("RPC", "/rpc"),
            ("LEADS", "/partitions_led"),
            ("KAFKA", "/listeners/kafka"),
            ("MQTT", "/listeners/mqtt"),
        ],
    ));
    text
}

async fn cluster(c: &AdminClient, command: ClusterCommand) -> anyhow::Result<Shown> {
    Ok(match command {
        ClusterCommand::Nodes => (
            c.get(&["cluster", "nodes"], &[]).await?,
            Box::new(show_cluster),
        ),
        ClusterCommand::AddNode { id, rpc } => {
            let url = c.url(&["cluster", "nodes"], &[]);
            let body = json!({ "id": id, "rpc": rpc });
            (
                c.call(Method::POST, url, Some(body)).await?,
                Box::new(show_cluster),
            )
        }
        ClusterCommand::RemoveNode { id } => {
            let url = c.url(&["cluster", "nodes", &id.to_string()], &[]);
            (
                c.call(Method::DELETE, url, None).await?,
                Box::new(move |v| {
                    format!(
                        "node {id}: {} (leads {} partitions, holds {} replicated copies)\n",
                        v["state"].as_str().unwrap_or("?"),
                        v["partitions_led"],
                        v["copies"]
                    )
                }),
            )
        }
        ClusterCommand::MoveReplicas {
            stream,
            partition,
            replicas,
        } => {
            let part = partition.to_string();
            let url = c.url(&["cluster", "partitions", &stream, &part, "replicas"], &[]);
            let body = json!({ "replicas": replicas });
            (
                c.call(Method::POST, url, Some(body)).await?,
                Box::new(|v| {
                    format!(
                        "{}/{}: replicas {} moving to {} (learners {})\n",
                        v["stream"].as_str().unwrap_or("?"),
                        v["partition"],
                        v["replicas"],
                        v["moving_to"],
                        v["learners"]
                    )
                }),
            )
        }
        ClusterCommand::Leaders {
            stream,
            under_replicated,
        } => (
            c.get(
                &["cluster", "leaders"],
                &[
                    ("stream", stream),
                    ("under_replicated", under_replicated.then(|| "true".into())),
                ],
            )
            .await?,
            Box::new(|v| {
                render(
                    v.as_array().map_or(&[][..], Vec::as_slice),
                    &[
                        ("STREAM", "/stream"),
                        ("PARTITION", "/partition"),
                        ("LEADER", "/leader"),
                        ("EPOCH", "/epoch"),
                        ("REPLICAS", "/replicas"),
                        ("IN SYNC", "/in_sync"),
                        ("MOVING TO", "/moving_to"),
                    ],
                )
            }),
        ),
        ClusterCommand::Replicas => (
            c.get(&["cluster", "replicas"], &[]).await?,
            Box::new(|v| {
                let rows: Vec<Value> = v
                    .as_array()
                    .map_or(&[][..], Vec::as_slice)
                    .iter()
                    .map(|r| {
                        let mut r = r.clone();
                        let lags: Vec<String> = r["followers"]
                            .as_array()
                            .map_or(&[][..], Vec::as_slice)
                            .iter()
                            .map(|f| {
                                let sync = if f["learner"] == true {
                                    " (learner)"
                                } else if f["in_sync"] == true {
                                    ""
                                } else {
                                    " (out)"
                                };
                                format!("{}:{}{sync}", f["node"], f["lag"])
                            })
                            .collect();
                        r["lags"] = Value::from(lags.join(" "));
                        r
                    })
                    .collect();
                render(
                    &rows,
                    &[
                        ("STREAM", "/stream"),
                        ("PARTITION", "/partition"),
                        ("ROLE", "/role"),
                        ("EPOCH", "/epoch"),
                        ("LEADER", "/leader"),
                        ("HIGH WATERMARK", "/high_watermark"),
                        ("LOG END", "/log_end"),
                        ("FOLLOWER LAG", "/lags"),
                    ],
                )
            }),
        ),
        ClusterCommand::Rebalance => {
            let url = c.url(&["cluster", "rebalance"], &[]);
            (
                c.call(Method::POST, url, None).await?,
                Box::new(show_cluster),
            )
        }
    })
}

/// An answer and how to show it as text.
type Shown = (Value, Box<dyn Fn(&Value) -> String>);

fn pretty(v: &Value) -> String {
    if v.is_null() {
        return String::new();
    }
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn items_table(columns: &'static [Column<'static>]) -> Box<dyn Fn(&Value) -> String> {
    Box::new(move |v| {
        let items = v["items"].as_array().cloned().unwrap_or_default();
        let mut text = render(&items, columns);
        text.push_str(&format!(
            "\n({} shown of {})",
            items.len(),
            table::cell(&v["total"])
        ));
        text
    })
}

fn done(what: String) -> Box<dyn Fn(&Value) -> String> {
    Box::new(move |_| what.clone())
}

async fn streams(c: &AdminClient, command: StreamsCommand) -> anyhow::Result<Shown> {
    Ok(match command {
        StreamsCommand::List => (
            c.get(&["streams"], &[]).await?,
            Box::new(|v| {
                render(
                    v.as_array().map_or(&[][..], Vec::as_slice),
                    &[
                        ("STREAM", "/name"),
                        ("CLASS", "/class"),
                        ("PARTITIONS", "/partitions"),
                        ("RECORDS", "/records"),
                        ("BYTES", "/size_bytes"),
                    ],
                )
            }),
        ),
        StreamsCommand::Show { name } => (
            c.get(&["streams", &name], &[]).await?,
            Box::new(|v| {
                render(
                    v["partitions"].as_array().map_or(&[][..], Vec::as_slice),
                    &[
                        ("PARTITION", "/partition"),
                        ("START", "/log_start"),
                        ("END", "/end_offset"),
                        ("BYTES", "/size_bytes"),
                        ("SEGMENTS", "/segments"),
                        ("LOCAL", "/local_segments"),
                        ("REMOTE", "/remote_segments"),
                        ("BOTH", "/both_segments"),
                    ],
                )
            }),
        ),
        StreamsCommand::Partition { name, partition } => (
            c.get(
                &["streams", &name, "partitions", &partition.to_string()],
                &[],
            )
            .await?,
            Box::new(|v| {
                render(
                    v["segments"].as_array().map_or(&[][..], Vec::as_slice),
                    &[
                        ("BASE", "/base_offset"),
                        ("END", "/end_offset"),
                        ("BYTES", "/size_bytes"),
                        ("LOCATION", "/location"),
                        ("OBJECT", "/object_key"),
                    ],
                )
            }),
        ),
    })
}

async fn mqtt(c: &AdminClient, command: MqttCommand) -> anyhow::Result<Shown> {
    let page = |p: &Paging| (p.limit, p.cursor.clone());
    Ok(match command {
        MqttCommand::Clients {
            prefix,
            username,
            protocol,
            peer,
            paging,
        } => {
            let (max, cursor) = page(&paging);
            let q = [
                ("client_id_prefix", prefix),
                ("username", username),
                ("protocol_version", protocol.map(|p| p.to_string())),
                ("peer_prefix", peer),
            ];
            (
                c.get_all(&["mqtt", "clients"], &q, cursor, max).await?,
                items_table(SESSION_COLUMNS),
            )
        }
        MqttCommand::Sessions {
            prefix,
            connected,
            paging,
        } => {
            let (max, cursor) = page(&paging);
            let q = [
                ("client_id_prefix", prefix),
                ("connected", connected.map(|b| b.to_string())),
            ];
            (
                c.get_all(&["mqtt", "sessions"], &q, cursor, max).await?,
                items_table(SESSION_COLUMNS),
            )
        }
        MqttCommand::Client { client_id } => (
            c.get(&["mqtt", "clients", &client_id], &[]).await?,
            Box::new(|v| {
                let mut text = render_fields(
                    &v["session"],
                    &[
                        ("client id", "/client_id"),
                        ("connected", "/connected"),
                        ("peer", "/connection/peer"),
                        ("transport", "/connection/transport"),
                        ("protocol", "/connection/protocol_version"),
                        ("username", "/connection/username"),
                        ("keep alive", "/connection/keep_alive_secs"),
                        ("expiry", "/session_expiry_secs"),
                        ("durable", "/durable"),
                        ("inflight", "/inflight"),
                        ("queued", "/queued"),
                        ("dropped", "/dropped"),
                    ],
                );
                text.push_str("\n\n");
                text.push_str(&render(
                    v["subscriptions"].as_array().map_or(&[][..], Vec::as_slice),
                    SUBSCRIPTION_COLUMNS,
                ));
                text
            }),
        ),
        MqttCommand::Disconnect { client_id } => {
            let url = c.url(&["mqtt", "clients", &client_id, "disconnect"], &[]);
            c.call(Method::POST, url, None).await?;
            (Value::Null, done(format!("disconnected {client_id}")))
        }
        MqttCommand::Discard { client_id } => {
            let url = c.url(&["mqtt", "sessions", &client_id], &[]);
            c.call(Method::DELETE, url, None).await?;
            (
                Value::Null,
                done(format!("discarded the session of {client_id}")),
            )
        }
        MqttCommand::Subscriptions {
            client_id,
            topic,
            paging,
        } => {
            let (max, cursor) = page(&paging);
            let q = [("client_id", client_id), ("topic", topic)];
            (
                c.get_all(&["mqtt", "subscriptions"], &q, cursor, max)
                    .await?,
                items_table(SUBSCRIPTION_COLUMNS),
            )
        }
        MqttCommand::Retained { filter, paging } => {
            let (max, cursor) = page(&paging);
            let q = [("filter", filter)];
            const COLUMNS: &[Column<'static>] = &[
                ("TOPIC", "/topic"),
                ("QOS", "/qos"),
                ("BYTES", "/payload_bytes"),
                ("PUBLISHER", "/publisher"),
                ("EXPIRES IN", "/expires_in_secs"),
            ];
            (
                c.get_all(&["mqtt", "retained"], &q, cursor, max).await?,
                items_table(COLUMNS),
            )
        }
        MqttCommand::RetainedGet { topic } => (
            c.get(&["mqtt", "retained", &topic], &[]).await?,
            Box::new(|v| {
                let mut text = render_fields(
                    &v["message"],
                    &[
                        ("topic", "/topic"),
                        ("qos", "/qos"),
                        ("bytes", "/payload_bytes"),
                        ("publisher", "/publisher"),
                        ("content type", "/content_type"),
                    ],
                );
                let payload = match v["payload_utf8"].as_str() {
                    Some(t) => format!("\npayload       {t}"),
                    None => format!("\npayload (b64) {}", table::cell(&v["payload_base64"])),
                };
                text.push_str(&payload);
                text
            }),
        ),
        MqttCommand::RetainedDelete { topic } => {
            let url = c.url(&["mqtt", "retained", &topic], &[]);
            c.call(Method::DELETE, url, None).await?;
            (
                Value::Null,
                done(format!("deleted the retained message of {topic}")),
            )
        }
    })
}

async fn kafka(c: &AdminClient, command: KafkaCommand) -> anyhow::Result<Shown> {
    Ok(match command {
        KafkaCommand::Groups => (
            c.get(&["kafka", "groups"], &[]).await?,
            Box::new(|v| {
                render(
                    v.as_array().map_or(&[][..], Vec::as_slice),
                    &[
                        ("GROUP", "/group_id"),
                        ("STATE", "/state"),
                        ("GENERATION", "/generation"),
                        ("MEMBERS", "/members"),
                        ("LAG", "/lag"),
                    ],
                )
            }),
        ),
        KafkaCommand::Group { group_id } => (
            c.get(&["kafka", "groups", &group_id], &[]).await?,
            Box::new(|v| {
                let members: Vec<Value> = v["members"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|mut m| {
                        let assigned: Vec<String> = m["assignment"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                            .iter()
                            .map(|tp| {
                                format!(
                                    "{}:{}",
                                    table::cell(&tp["topic"]),
                                    table::cell(&tp["partitions"])
                                )
                            })
                            .collect();
                        m["assigned"] = json!(assigned.join(" "));
                        m
                    })
                    .collect();
                let mut text = render_fields(
                    &v["group"],
                    &[
                        ("group", "/group_id"),
                        ("state", "/state"),
                        ("generation", "/generation"),
                        ("protocol", "/protocol"),
                        ("leader", "/leader"),
                        ("lag", "/lag"),
                    ],
                );
                text.push_str("\n\n");
                text.push_str(&render(
                    &members,
                    &[
                        ("MEMBER", "/member_id"),
                        ("CLIENT ID", "/client_id"),
                        ("HOST", "/client_host"),
                        ("ASSIGNED", "/assigned"),
                    ],
                ));
                text.push_str("\n\n");
                text.push_str(&render(
                    v["offsets"].as_array().map_or(&[][..], Vec::as_slice),
                    &[
                        ("TOPIC", "/topic"),
                        ("PARTITION", "/partition"),
                        ("COMMITTED", "/committed_offset"),
                        ("END", "/end_offset"),
                        ("LAG", "/lag"),
                    ],
                ));
                text
            }),
        ),
    })
}

fn log_table(v: &Value) -> String {
    let mut text = format!("level  {}\n\n", table::cell(&v["level"]));
    text.push_str(&render(
        v["overrides"].as_array().map_or(&[][..], Vec::as_slice),
        &[
            ("ID", "/id"),
            ("CLIENT ID", "/client_id"),
            ("TOPIC", "/topic"),
            ("LEVEL", "/level"),
            ("EXPIRES IN", "/expires_in_secs"),
        ],
    ));
    text
}

async fn log(c: &AdminClient, command: LogCommand) -> anyhow::Result<Shown> {
    Ok(match command {
        LogCommand::Show => (c.get(&["log"], &[]).await?, Box::new(log_table)),
        LogCommand::Level { level } => {
            let url = c.url(&["log", "level"], &[]);
            let v = c
                .call(Method::PUT, url, Some(json!({ "level": level })))
                .await?;
            (v, Box::new(log_table))
        }
        LogCommand::Override {
            client_id,
            topic,
            level,
            ttl,
        } => {
            let url = c.url(&["log", "overrides"], &[]);
            let body =
                json!({"client_id": client_id, "topic": topic, "level": level, "ttl_secs": ttl});
            let v = c.call(Method::POST, url, Some(body)).await?;
            (
                v,
                Box::new(|v| format!("override {} added", table::cell(&v["id"]))),
            )
        }
        LogCommand::Remove { id } => {
            let url = c.url(&["log", "overrides", &id.to_string()], &[]);
            c.call(Method::DELETE, url, None).await?;
            (Value::Null, done(format!("override {id} removed")))
        }
    })
}
