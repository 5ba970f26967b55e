//! A running node: open the journal, serve the admin API, and on a signal stop in order.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use parking_lot::Mutex;
use prometheus::Registry;
use strata_agent::AgentFrontend;
use strata_frontend::owned::{OwnedStreams, Ownership};
use strata_frontend::seams::{StateStore, Storage};
use strata_frontend::security::{SPACE as SECURITY_SPACE, Security};
use strata_frontend::tls::TlsAcceptor;
use strata_frontend::work_queues::QueueLink;
use strata_frontend::{Frontend, FrontendError, FrontendEvent, NodeContext, Shutdown};
use strata_journal::fs::VolatileFs;
use strata_journal::manifests::ManifestCatalog;
use strata_journal::{FsyncPolicy, Journal, JournalOptions};
use strata_kafka::KafkaFrontend;
use strata_local::{ClusterStreams, KvStore, MetaManifests};
use strata_meta::model::{Command, NodeId};
use strata_meta::{MetaConfig, MetaNode};
use strata_mqtt::MqttFrontend;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tracing::{debug, error, info, warn};

use super::admin::{self, AdminState, FrontendApi};
use super::config::NodeConfig;
use super::log_filter::LogControl;
use super::metrics::NodeMetrics;
use super::shutdown::ShutdownSignals;

/// How long a node waits to be registered before its frontends start.
const EARLY_REGISTRATION: Duration = Duration::from_secs(10);
/// How often a node tells the meta service it is up (see `strata_meta::model::LIVENESS_MS`).
const HEARTBEAT_EVERY: Duration = Duration::from_millis(250);
/// How long in-flight admin requests get to finish once the node is stopping.
const ADMIN_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the journal's maintenance tasks get to notice `close` and return.
const MAINTENANCE_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long frontends get to close their connections once the node is stopping.
const FRONTEND_STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs a node until SIGTERM or SIGINT. Must be called inside a multi-threaded tokio runtime.
///
/// Order: signals, metrics, meta service, journal (open, then maintenance), key-value store,
/// admin listener.
/// Stopping runs the other way: stop accepting, drain, close the journal. The journal is
/// closed on every path once it has opened, including when the admin port cannot be bound.
pub async fn run(config: NodeConfig, log: LogControl) -> anyhow::Result<()> {
    let mut signals =
        ShutdownSignals::install().context("cannot install SIGTERM/SIGINT handlers")?;
    // Masked, as the admin API shows it: passwords, keys, tokens and secrets never reach
    // the log.
    debug!(config = %effective_config(&config), "effective configuration");
    let metrics = Arc::new(NodeMetrics::new().context("cannot register node metrics")?);

    // The meta service first: the journal records its uploads there.
    let meta = start_meta(&config, metrics.registry()).await?;
    let manifests = Arc::new(MetaManifests::new(meta.clone()));
    let journal = match open_journal(&config, metrics.registry().clone(), manifests).await {
        Ok(journal) => journal,
        Err(e) => {
            meta.shutdown().await;
            return Err(e);
        }
    };
    let maintenance = journal.start_maintenance();
    let opened = async {
        let kv = open_kv(&config).await?;
        let security = open_security(&config, &kv, metrics.registry())?;
        let admin_tls = config
            .admin
            .tls
            .clone()
            .map(TlsAcceptor::new)
            .transpose()
            .map_err(|e| anyhow!(e).context("admin.tls"))?;
        anyhow::Ok((kv, security, admin_tls))
    };
    let (kv, security, admin_tls) = match opened.await {
        Ok(opened) => opened,
        Err(e) => {
            meta.shutdown().await;
            let _ = close_journal(&journal, maintenance).await;
            return Err(e);
        }
    };
    let kv_sync = sync_kv_periodically(&config, &kv);

    // Claims are made as frontends start; the catalog asks them which streams are a
    // node's own.
    let owned = OwnedStreams::default();
    let streams = ClusterStreams::new(journal.clone(), meta.clone(), owned.clone());
    // Other nodes reach the partitions this one leads through it.
    meta.serve_partitions(Arc::new(streams.clone()));
    let (stop, stopping) = watch::channel(false);
    let listeners = Arc::new(Mutex::new(Vec::new()));
    let mut admin = AdminState {
        metrics,
        journal: journal.clone(),
        storage: storage(&streams, &kv),
        config: Arc::new(effective_config(&config)),
        log,
        frontends: Arc::from([]),
        listeners: listeners.clone(),
        token: config.admin.token.as_deref().map(Arc::from),
        security: security.clone(),
        meta: meta.clone(),
        replicas: streams.replicas().clone(),
    };
    streams.replicas().register(admin.metrics.registry())?;
    let lapse = tokio::spawn(lapse_log_overrides(admin.log.clone()));
    let ctx = NodeContext {
        storage: storage(&streams, &kv),
        registry: admin.metrics.registry().clone(),
        events: mpsc::unbounded_channel().0,
        owned,
        security: security.clone(),
        queues: match (&config.agent.mqtt_prefix, config.agent.enabled) {
            (Some(prefix), true) => QueueLink::new(prefix),
            _ => QueueLink::default(),
        },
    };
    register_early(&meta).await;
    let started = start_frontends(&config, ctx, &mut admin, stopping).await;
    let served = match started {
        Ok((mut frontends, apis)) => {
            // After every frontend claimed its streams: those kept per node (the audit
            // log) stay out of the meta service.
            let reconciling =
                tokio::spawn(streams.clone().reconcile(config.node.data_dir.join("meta")));
            let registering = tokio::spawn(register_and_beat(
                meta.clone(),
                config.cluster.node_id,
                listeners.clone(),
            ));
            let served = serve_admin(
                config.admin.listen,
                admin_tls,
                admin::router(admin, apis),
                &listeners,
                &mut signals,
                &mut frontends,
            )
            .await;
            registering.abort();
            reconciling.abort();
            stop.send_replace(true);
            let stopped = stop_frontends(frontends).await;
            served.and(stopped)
        }
        Err(e) => Err(e),
    };
    meta.shutdown().await;
    let closed = close_journal(&journal, maintenance).await;
    if let Some(task) = kv_sync {
        task.abort();
    }
    lapse.abort();
    let closed = closed.and(kv.flush().context("cannot flush the key-value store"));
    match (served, closed) {
        (Ok(()), Ok(())) => {
            info!("stopped cleanly");
            Ok(())
        }
        (Err(err), Ok(())) | (Ok(()), Err(err)) => Err(err),
        (Err(served), Err(closed)) => {
            let closed = format!("{closed:#}");
            error!(error = %closed, "journal did not close cleanly");
            Err(served)
        }
    }
}

/// Set to `1`, the journal keeps its unsynced writes in this process's memory (for crash
/// tests: see journal/src/fs/volatile.rs).
const VOLATILE_WRITES: &str = "CHAOS_VOLATILE_WRITES";

async fn open_journal(
    config: &NodeConfig,
    registry: Registry,
    manifests: Arc<dyn ManifestCatalog>,
) -> anyhow::Result<Journal> {
    let data_dir = &config.node.data_dir;
    let journal_dir = config.node.journal_dir();
    std::fs::create_dir_all(&journal_dir)
        .with_context(|| format!("cannot create data directory {}", journal_dir.display()))?;

    raise_open_files_limit();
    info!(data_dir = %data_dir.display(), "opening journal");
    let mut options = JournalOptions::new(journal_dir.clone(), config.journal.clone(), registry)
        .with_object_store()
        .await
        .context("cannot open the object storage tier ([journal.object_store], [journal.cache])")?;
    options.manifests = Some(manifests);
    if std::env::var_os(VOLATILE_WRITES).is_some_and(|v| v == "1") {
        anyhow::ensure!(
            config.journal.fsync == FsyncPolicy::Always,
            "{VOLATILE_WRITES}=1 needs [journal] fsync = \"always\""
        );
        // A test seam for the chaos harness: a kill of this process loses what was not
        // fsynced, as a power loss would (journal/src/fs/volatile.rs).
        warn!("{VOLATILE_WRITES}=1: unsynced journal writes are kept in memory only");
        options.fs = Arc::new(VolatileFs::new(options.fs.clone()));
    }
    // Opening recovers and verifies segment tails: synchronous file I/O, kept off the
    // async workers.
    let journal = tokio::task::spawn_blocking(move || Journal::open(options))
        .await
        .context("journal open task failed")?
        .with_context(|| format!("cannot open journal in {}", journal_dir.display()))?;
    info!("journal open");
    for (stream, reason) in journal.failed_streams() {
        error!(stream, reason, "stream not served: it could not be opened");
    }
    Ok(journal)
}

/// Raises the soft limit on open files to the hard limit: every segment partition keeps
/// files open, and a node that runs out of descriptors refuses connections and streams.
/// The bounds on topics and connections are what keep a client from exhausting it.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => debug!(from = soft, to = hard, "open files limit raised"),
            Err(e) => warn!(error = %e, "cannot raise the open files limit"),
        },
        Ok(_) => {}
        Err(e) => warn!(error = %e, "cannot read the open files limit"),
    }
}

/// Starts this node's part of the meta service (`[cluster]`; without it, a cluster of one)
/// with its store under `<data_dir>/meta`.
async fn start_meta(config: &NodeConfig, registry: &Registry) -> anyhow::Result<Arc<MetaNode>> {
    let cluster = &config.cluster;
    let listener = TcpListener::bind(cluster.listen)
        .await
        .with_context(|| format!("cannot bind the cluster listener on {}", cluster.listen))?;
    let bound = listener
        .local_addr()
        .context("cannot read the cluster listener's address")?;
    let mut meta_config = MetaConfig::from_cluster(cluster, &config.node.data_dir, bound)
        .map_err(|e| anyhow!(e).context("cluster"))?;
    meta_config.registry = registry.clone();
    let meta = MetaNode::start(meta_config, listener)
        .await
        .context("cannot start the meta service")?;
    info!(node_id = cluster.node_id, "cluster listening on {bound}");
    Ok(Arc::new(meta))
}

/// Writes `command` (a registration) through the meta leader, retried with a backoff
/// while no leader takes it. False when the meta service stopped.
async fn register(meta: &MetaNode, command: Command) -> bool {
    let mut backoff = Duration::from_millis(100);
    loop {
        match meta.write(command.clone()).await {
            Ok(_) => return true,
            Err(e @ strata_meta::MetaError::Stopped(_)) => {
                error!(error = %e, "cannot register with the meta service: it stopped");
                return false;
            }
            Err(e) => warn!(error = %e, "cannot register with the meta service yet"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// Registers a node alone in its cluster that the meta service does not know yet, before
/// its frontends start, so the streams they create are placed at once (waiting at most
/// [`EARLY_REGISTRATION`] for it to elect itself). A node of a larger cluster does not
/// wait for a quorum here: the streams created before it registers are placed when it
/// does, and their handles find the leader then.
async fn register_early(meta: &Arc<MetaNode>) {
    let id = meta.id();
    if meta.voters() != [id] || meta.read(|s| s.nodes.contains_key(&id)) {
        return;
    }
    let command = Command::AddNode {
        id,
        rpc: meta.advertised().to_owned(),
        listeners: std::collections::BTreeMap::new(),
        at_ms: now_ms(),
    };
    let mut early = tokio::spawn({
        let meta = meta.clone();
        async move { register(&meta, command).await }
    });
    if tokio::time::timeout(EARLY_REGISTRATION, &mut early)
        .await
        .is_err()
    {
        // The registration with the listeners follows; two must not race.
        early.abort();
    }
}

/// Registers this node and its client listeners with the meta service, once a leader
/// takes the write (at once for a cluster of one; retried while no leader answers), then
/// sends a heartbeat every [`HEARTBEAT_EVERY`].
async fn register_and_beat(
    meta: Arc<MetaNode>,
    id: NodeId,
    listeners: Arc<Mutex<Vec<(String, SocketAddr)>>>,
) {
    // A listener bound to every interface is reached at the host other nodes reach this
    // one at.
    let host = meta
        .advertised()
        .rsplit_once(':')
        .map_or("127.0.0.1", |(h, _)| h)
        .to_owned();
    let listeners: std::collections::BTreeMap<String, String> = listeners
        .lock()
        .iter()
        .map(|(name, addr)| {
            let address = if addr.ip().is_unspecified() {
                format!("{host}:{}", addr.port())
            } else {
                addr.to_string()
            };
            (name.clone(), address)
        })
        .collect();
    let command = Command::AddNode {
        id,
        rpc: meta.advertised().to_owned(),
        listeners,
        at_ms: now_ms(),
    };
    if !register(&meta, command).await {
        return;
    }
    info!(node_id = id, "registered with the meta service");
    // Heartbeats: new partitions avoid a node whose heartbeats stopped.
    let mut every = tokio::time::interval(HEARTBEAT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        every.tick().await;
        // A beat forwarded to a meta leader that stopped answering (paused, cut off) is
        // given up after a second, so the next one finds the new leader: beats stuck for
        // the RPC timeout would make every node look down.
        let beat = meta.write(Command::Heartbeat {
            id,
            at_ms: now_ms(),
        });
        let written = match tokio::time::timeout(HEARTBEAT_EVERY * 2, beat).await {
            Ok(w) => w,
            Err(_) => Err(strata_meta::MetaError::NoLeader(
                HEARTBEAT_EVERY * 2,
                "the meta leader did not answer".into(),
            )),
        };
        match written {
            Ok(_) if failing => {
                info!("heartbeats reach the meta service again");
                failing = false;
            }
            Ok(_) => {}
            Err(e @ strata_meta::MetaError::Stopped(_)) => {
                error!(error = %e, "heartbeats stopped: the meta service stopped");
                return;
            }
            // Logged once per outage, not once per beat.
            Err(e) if !failing => {
                warn!(error = %e, "a heartbeat did not reach the meta service");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

/// Wall-clock milliseconds.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The seams frontends see: the cluster's streams and consumer positions, and this node's
/// key-value store.
pub fn storage(streams: &ClusterStreams, kv: &KvStore) -> Storage {
    let streams = streams.clone();
    Storage {
        catalog: Arc::new(streams.clone()),
        router: Arc::new(streams.clone()),
        state: Arc::new(kv.clone()),
        positions: Arc::new(streams),
    }
}

/// Loads users, ACL rules and bans: those of `[auth]` and those the admin API stored.
fn open_security(
    config: &NodeConfig,
    kv: &KvStore,
    registry: &Registry,
) -> anyhow::Result<Security> {
    let space = kv
        .space(SECURITY_SPACE)
        .context("cannot open the security store")?;
    Security::open(config.auth.clone(), Some(space), registry).context("auth")
}

/// Opens the key-value store under `<data_dir>/kv`; its writes are fsynced when the
/// journal's default is `fsync = always`.
async fn open_kv(config: &NodeConfig) -> anyhow::Result<KvStore> {
    let dir = config.node.data_dir.join("kv");
    let sync = config.journal.fsync == FsyncPolicy::Always;
    let path = dir.clone();
    tokio::task::spawn_blocking(move || KvStore::open(&path, sync))
        .await
        .context("key-value store open task failed")?
        .with_context(|| format!("cannot open the key-value store in {}", dir.display()))
}

/// With `fsync = "interval:<ms>"`, fsyncs the key-value store's log at the same interval,
/// so what a power loss can take from it has the journal's bound. (`always` fsyncs every
/// write; `never` leaves it to the operating system.)
fn sync_kv_periodically(config: &NodeConfig, kv: &KvStore) -> Option<JoinHandle<()>> {
    let FsyncPolicy::Interval(ms) = config.journal.fsync else {
        return None;
    };
    let kv = kv.clone();
    Some(tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(ms.max(1)));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let kv = kv.clone();
            match tokio::task::spawn_blocking(move || kv.sync_wal()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(error = %e, "key-value store fsync failed"),
                Err(_) => return,
            }
        }
    }))
}

type Frontends = JoinSet<Result<(), FrontendError>>;

/// Every frontend this build has, each with whether the configuration enables it. Adding
/// a frontend is one line here (and its section in [`NodeConfig`]).
fn registered_frontends(config: &NodeConfig) -> Vec<(Box<dyn Frontend>, bool)> {
    vec![
        (
            Box::new(MqttFrontend::new(config.mqtt.clone())),
            config.mqtt.enabled,
        ),
        (
            Box::new(KafkaFrontend::new(config.kafka.clone())),
            config.kafka.enabled,
        ),
        (
            Box::new(
                AgentFrontend::new(config.agent.clone())
                    .with_object_storage(config.journal.object_store.is_some())
                    .in_cluster(!config.cluster.initial_voters.is_empty()),
            ),
            config.agent.enabled,
        ),
    ]
}

/// Starts every frontend the configuration enables and waits until each has bound its
/// listeners (printing `strata: <name> listening on <addr>` for each) or failed.
/// Returns them with every frontend's admin routes (a disabled one's answer `disabled`).
async fn start_frontends(
    config: &NodeConfig,
    mut ctx: NodeContext,
    admin: &mut AdminState,
    stopping: watch::Receiver<bool>,
) -> anyhow::Result<(Frontends, Vec<FrontendApi>)> {
    let (events, mut announced) = mpsc::unbounded_channel();
    ctx.events = events;
    // The audit log is the node's own: no frontend may delete, write or read it.
    ctx.owned
        .claim(strata_frontend::audit::STREAM, "admin", Ownership::Internal);
    ctx.owned.keep_per_node(strata_frontend::audit::STREAM);
    let mut enabled: Vec<Box<dyn Frontend>> = Vec::new();
    let mut apis = Vec::new();
    for (frontend, on) in registered_frontends(config) {
        // Every claim is made before any frontend serves a request; a disabled frontend's
        // streams stay its own (their data is still there).
        frontend.claim_streams(&ctx.owned);
        if let Some(api) = frontend.admin_api(&ctx) {
            apis.push(FrontendApi {
                name: frontend.name(),
                enabled: on,
                api,
            });
        }
        if on {
            enabled.push(frontend);
        }
    }
    admin.frontends = enabled.iter().map(|f| f.name()).collect();
    let mut waiting = enabled.len();
    let mut frontends = JoinSet::new();
    for f in enabled {
        let name = f.name();
        let shutdown = Shutdown::new(stopping.clone());
        let ctx = ctx.clone();
        frontends.spawn(async move {
            let r = f.serve(ctx, shutdown).await;
            if let Err(e) = &r {
                error!(frontend = name, error = %e, "frontend failed");
            }
            r
        });
    }
    drop(ctx);
    while waiting > 0 {
        tokio::select! {
            Some(event) = announced.recv() => match event {
                FrontendEvent::Listening(name, addr) => {
                    info!("{name} listening on {addr}");
                    admin.listeners.lock().push((name.clone(), addr));
                    announce(&format!("{name} listening on {addr}"));
                }
                FrontendEvent::Ready => waiting -= 1,
            },
            Some(done) = frontends.join_next() => {
                let err = match done {
                    Ok(Err(e)) => anyhow!(e),
                    Ok(Ok(())) => anyhow!("a frontend stopped while starting"),
                    Err(e) => anyhow!("frontend task failed: {e}"),
                };
                frontends.abort_all();
                return Err(err);
            }
        }
    }
    Ok((frontends, apis))
}

/// Waits for the frontends to close their connections after the stop signal.
async fn stop_frontends(mut frontends: Frontends) -> anyhow::Result<()> {
    let mut result = Ok(());
    let drain = async {
        while let Some(done) = frontends.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(anyhow!(e)),
                Err(e) => result = Err(anyhow!("frontend task failed: {e}")),
            }
        }
    };
    if tokio::time::timeout(FRONTEND_STOP_TIMEOUT, drain)
        .await
        .is_err()
    {
        warn!(timeout = ?FRONTEND_STOP_TIMEOUT, "frontends did not stop in time");
        frontends.abort_all();
    }
    result
}

/// Binds the admin listener, serves until a signal (or a frontend failing), then drains.
async fn serve_admin(
    listen: SocketAddr,
    tls: Option<TlsAcceptor>,
    router: axum::Router,
    listeners: &Mutex<Vec<(String, SocketAddr)>>,
    signals: &mut ShutdownSignals,
    frontends: &mut Frontends,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot bind admin listener on {listen}"))?;
    let bound = listener
        .local_addr()
        .context("cannot read the admin listener's address")?;
    info!("admin listening on {bound}");
    announce(&format!("admin listening on {bound}"));
    listeners.lock().push(("admin".to_owned(), bound));

    let (stop, stopped) = oneshot::channel::<()>();
    let stopped = async move {
        // Completes on a send or when the sender is dropped; either means stop.
        let _ = stopped.await;
    };
    let mut server = match tls {
        None => tokio::spawn(admin::serve(listener, router, stopped)),
        Some(tls) => {
            let listener = admin::tls_listener::TlsListener::new(listener, tls)
                .context("cannot start the admin HTTPS listener")?;
            tokio::spawn(admin::serve(listener, router, stopped))
        }
    };

    tokio::select! {
        signal = signals.recv() => info!(signal, "stopping: no longer accepting admin connections"),
        Some(done) = frontends.join_next() => {
            let _ = stop.send(());
            return Err(match done {
                Ok(Err(e)) => anyhow!(e),
                Ok(Ok(())) => anyhow!("a frontend stopped without being asked to"),
                Err(e) => anyhow!("frontend task failed: {e}"),
            });
        }
        exited = &mut server => {
            server_result(exited)?;
            return Err(anyhow!("admin server stopped without being asked to"));
        }
    }
    // The receiver is gone only if the server already returned; the select below sees that.
    let _ = stop.send(());

    tokio::select! {
        exited = &mut server => server_result(exited),
        () = tokio::time::sleep(ADMIN_DRAIN_TIMEOUT) => {
            warn!(timeout = ?ADMIN_DRAIN_TIMEOUT, "admin connections still open; closing them");
            server.abort();
            Ok(())
        }
        signal = signals.recv() => {
            warn!(signal, "second signal: not waiting for admin connections");
            server.abort();
            Ok(())
        }
    }
}

/// Tells whoever started the node where a listener is: with port 0 the log line is the
/// only other place the port appears. One line on stdout, `strata: <what>`, flushed at once.
fn announce(what: &str) {
    let mut stdout = std::io::stdout().lock();
    let written = writeln!(stdout, "strata: {what}").and_then(|()| stdout.flush());
    if let Err(err) = written {
        warn!(error = %err, "cannot write a listener address to stdout");
    }
}

fn server_result(exited: Result<std::io::Result<()>, JoinError>) -> anyhow::Result<()> {
    match exited {
        Ok(served) => served.context("admin server failed"),
        Err(err) => Err(anyhow!("admin server task failed: {err}")),
    }
}

/// Removes log overrides whose time is up, once a second.
async fn lapse_log_overrides(log: LogControl) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        log.prune();
    }
}

/// Flushes and fsyncs the journal, then waits for its maintenance tasks to return.
async fn close_journal(journal: &Journal, maintenance: JoinHandle<()>) -> anyhow::Result<()> {
    info!("closing journal");
    journal
        .close()
        .await
        .context("cannot close the journal cleanly")?;
    match tokio::time::timeout(MAINTENANCE_STOP_TIMEOUT, maintenance).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(anyhow!("journal maintenance task failed: {err}")),
        Err(_) => Err(anyhow!(
            "journal maintenance did not stop within {MAINTENANCE_STOP_TIMEOUT:?} of close"
        )),
    }
}

/// The configuration as `GET /api/v1/node/config` shows it: every value in effect, with
/// passwords and secret keys masked.
fn effective_config(config: &NodeConfig) -> serde_json::Value {
    let mut value = serde_json::to_value(config).unwrap_or_default();
    mask_secrets(&mut value);
    value
}

fn mask_secrets(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "sasl_plain_users" {
                    if let serde_json::Value::Object(users) = v {
                        for password in users.values_mut() {
                            *password = serde_json::Value::from("***");
                        }
                    }
                } else if key.contains("secret") || key.contains("password") || key == "token" {
                    *v = serde_json::Value::from("***");
                } else {
                    mask_secrets(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask_secrets),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_config_masks_secrets() {
        let mut config = NodeConfig::default();
        config
            .kafka
            .sasl_plain_users
            .insert("alice".into(), "hunter2".into());
        let text = effective_config(&config).to_string();
        assert!(text.contains("alice"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        let mut v = serde_json::json!({"s3": {"secret_access_key": "sk", "region": "r"}});
        mask_secrets(&mut v);
        assert_eq!(v["s3"]["secret_access_key"], "***");
        assert_eq!(v["s3"]["region"], "r");
    }
}
