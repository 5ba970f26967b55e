//! The Rust SDK (`sdk/rust`, crate `strata-agent-sdk`) against a real `strata serve` with
//! the agent frontend on: sends, fetches and acks with the API's typed errors, a lease kept
//! alive past its length while a handler works, subscriptions that resume by themselves
//! across a cut connection and across a SIGKILL restart, a task from creation through
//! input-required to completion with the registry around it, and a task's stream resumed
//! across a cut connection.
//!
//! Every wait is on a condition, bounded by [`DEADLINE`]; nothing sleeps to synchronise.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use strata_agent_sdk::{
    AgentCard, AgentQuery, Client, Error, FetchOptions, Priority, RegisterOptions, SendOptions,
    SendResult, Skill, Start, Storage, Subscription, TaskEventKind, TaskState,
};
use tokio::task::{JoinHandle, block_in_place};

use crate::common::{DEADLINE, Process, strata};

const TOKEN: &str = "sdk-rust-token-0123456789abcdef";

/// The stdout line `strata serve` prints once the agent API accepts connections.
const AGENT_LISTENING: &str = "strata: agent listening on ";

/// A node with the agent frontend on, listening on `port` (0: any free one).
struct Node {
    process: Process,
    port: u16,
}

/// `strata serve` with data under `dir`, the agent API on 127.0.0.1:`port` behind
/// [`TOKEN`], and `env` besides. Blocks until the agent API listens.
fn serve(dir: &Path, port: u16, env: &[(&str, &str)]) -> Node {
    let mut command = strata(dir);
    command
        .arg("serve")
        .env("STRATA_ADMIN__LISTEN", "127.0.0.1:0")
        .env("STRATA_NODE__DATA_DIR", dir.join("data"))
        .env("STRATA_AGENT__ENABLED", "true")
        .env("STRATA_AGENT__TOKEN", TOKEN)
        .env("STRATA_AGENT__LISTEN", format!("127.0.0.1:{port}"));
    for (name, value) in env {
        command.env(name, value);
    }
    let process = Process::spawn(command);
    let addr: SocketAddr = process
        .wait_for_stdout(AGENT_LISTENING)
        .trim()
        .parse()
        .expect("agent address parses");
    Node {
        process,
        port: addr.port(),
    }
}

impl Node {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn client(&self) -> Client {
        Client::new(self.url()).with_token(TOKEN)
    }
}

/// `future`'s output, which must come within [`DEADLINE`].
async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(DEADLINE, future)
        .await
        .expect("done within the deadline")
}

/// The next item of `stream`, which must be an event.
async fn next<T>(stream: &mut Subscription<T>) -> T {
    within(stream.next())
        .await
        .expect("the stream goes on")
        .expect("an event, not an error")
}

/// Waits until `check` holds, polling it.
async fn until<F: AsyncFnMut() -> bool>(what: &str, mut check: F) {
    let deadline = Instant::now() + DEADLINE;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn wait() -> FetchOptions {
    FetchOptions::new().wait(Duration::from_secs(5))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_send_fetch_ack_and_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let node = block_in_place(|| {
        serve(
            dir.path(),
            0,
            &[
                ("STRATA_AGENT__MAX_DELIVERIES", "1"),
                ("STRATA_AGENT__MAX_QUEUE_DEPTH", "3"),
            ],
        )
    });
    let client = node.client();

    // Created in the class asked for, once.
    let made = client
        .create_queue("jobs", Some(Storage::Memory))
        .await
        .unwrap();
    assert!(
        made.created && made.storage == Some(Storage::Memory),
        "{made:?}"
    );
    let kept = client.create_queue("jobs", None).await.unwrap();
    assert!(
        !kept.created && kept.storage == Some(Storage::Memory),
        "{kept:?}"
    );
    let conflict = client
        .create_queue("jobs", Some(Storage::Local))
        .await
        .unwrap_err();
    assert_eq!(conflict.status(), Some(409), "{conflict}");
    assert_eq!(conflict.code(), Some("storage_conflict"));

    // A send with every option, repeated with its idempotency key: stored once.
    let jobs = client.queue("jobs");
    let options = SendOptions::new()
        .priority(Priority::High)
        .key("k1")
        .tag("resize")
        .ttl(Duration::from_secs(3600))
        .idempotency_key("job-1");
    let sent = jobs.send_with(&json!({"n": 1}), &options).await.unwrap();
    assert!(!sent.duplicate);
    let again = jobs.send_with(&json!({"n": 1}), &options).await.unwrap();
    assert_eq!(
        again,
        SendResult {
            id: sent.id.clone(),
            duplicate: true
        }
    );
    jobs.send(&json!({"n": 2})).await.unwrap();

    // Fetched most urgent first, then acked together.
    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(within(jobs.fetch(&wait().max(10))).await.unwrap());
    }
    assert_eq!(got[0].id, sent.id);
    assert_eq!(got[0].body, json!({"n": 1}));
    assert_eq!(
        (got[0].priority, got[0].key.as_deref(), got[0].attempt),
        (0, Some("k1"), 1)
    );
    assert_eq!(got[0].tags, ["resize"]);
    assert!(got[0].expires_ms.is_some_and(|t| t > got[0].sent_ms));
    assert_eq!(
        Priority::from_level(got[1].priority),
        Some(Priority::Normal)
    );
    let later = jobs
        .extend(&got[1].lease, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(later > got[1].lease_until_ms);
    let acked = jobs
        .ack_many([
            got[0].lease.as_str(),
            got[1].lease.as_str(),
            "no-such-lease",
        ])
        .await
        .unwrap();
    assert_eq!(acked.ids, [got[0].id.clone(), got[1].id.clone()]);
    assert_eq!(acked.unknown, ["no-such-lease"]);
    let info = jobs.describe().await.unwrap();
    assert_eq!(
        (info.name.as_str(), info.depth, info.in_flight),
        ("jobs", 0, 0)
    );

    // A failing handler gives the message back (nack); the next one gets it again.
    jobs.send(&json!({"n": 3})).await.unwrap();
    let failed = within(jobs.process(&wait(), async |m| {
        Err::<(), _>(format!("cannot do {}", m.body))
    }))
    .await
    .unwrap();
    assert_eq!(failed, Some(Err("cannot do {\"n\":3}".to_string())));
    let done = within(jobs.process(&wait(), async |m| {
        Ok::<_, String>((m.attempt, m.body.clone()))
    }))
    .await
    .unwrap();
    assert_eq!(done, Some(Ok((2, json!({"n": 3})))));
    let none = jobs
        .process(&FetchOptions::new(), async |_| Ok::<_, String>(()))
        .await
        .unwrap();
    assert_eq!(none, None, "an empty queue hands out nothing");

    // Nack and ack by lease.
    jobs.send(&json!({"n": 4})).await.unwrap();
    let m = within(jobs.fetch(&wait())).await.unwrap().remove(0);
    assert_eq!(jobs.nack(&m.lease, Duration::ZERO).await.unwrap(), m.id);
    let m = within(jobs.fetch(&wait())).await.unwrap().remove(0);
    assert_eq!((m.body.clone(), m.attempt), (json!({"n": 4}), 2));
    assert_eq!(jobs.ack(&m.lease).await.unwrap(), m.id);

    // A lapsed lease past `max_deliveries` (1 here) dead-letters the message; a redrive
    // sends it back.
    jobs.send_with(&json!({"n": 5}), &SendOptions::new().key("k5"))
        .await
        .unwrap();
    let lapsing = within(jobs.fetch(&wait().lease(Duration::from_millis(100))))
        .await
        .unwrap()
        .remove(0);
    until("dead-lettered", async || {
        !jobs.dead_letters(10).await.unwrap().is_empty()
    })
    .await;
    let dead = jobs.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        (
            dead[0].queue.as_str(),
            dead[0].id.as_str(),
            dead[0].reason.as_str()
        ),
        ("jobs", lapsing.id.as_str(), "max_deliveries")
    );
    assert_eq!(
        (dead[0].key.as_deref(), dead[0].deliveries),
        (Some("k5"), 1)
    );
    assert_eq!(dead[0].message.body, json!({"n": 5}));
    assert_eq!(jobs.redrive(10).await.unwrap(), 1);
    let back = within(jobs.fetch(&wait())).await.unwrap().remove(0);
    assert_eq!((back.body.clone(), back.attempt), (json!({"n": 5}), 1));
    jobs.ack(&back.lease).await.unwrap();

    // The API's errors, typed.
    let unknown = jobs.ack("not-a-lease").await.unwrap_err();
    assert_eq!(
        (unknown.status(), unknown.code()),
        (Some(404), Some("unknown_lease"))
    );
    assert!(
        matches!(unknown, Error::Api { status: 404, .. }),
        "{unknown:?}"
    );
    let missing = client.queue("nothing-here").describe().await.unwrap_err();
    assert_eq!(missing.code(), Some("unknown_queue"), "{missing}");
    for wrong in [
        Client::new(node.url()).with_token("not-the-token"),
        Client::new(node.url()),
    ] {
        let e = wrong.queue("jobs").send(&json!(1)).await.unwrap_err();
        assert!(matches!(e, Error::Unauthorized { .. }), "{e:?}");
        assert_eq!((e.status(), e.code()), (Some(401), Some("unauthorized")));
        assert!(!e.is_retryable());
    }
    // A full queue asks to come back later (429 with Retry-After).
    let small = client.queue("small");
    let mut sent = 0;
    let full = loop {
        match small.send(&json!("x")).await {
            Ok(_) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent <= 3, "a queue of depth 3 took {sent} messages");
    };
    assert_eq!(
        (full.status(), full.code()),
        (Some(429), Some("queue_full"))
    );
    assert_eq!(full.retry_after(), Some(Duration::from_secs(1)));
    assert!(full.is_retryable());
    // No node: an HTTP error, worth retrying.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let e = Client::new(gone)
        .queue("jobs")
        .send(&json!(1))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Http(_)) && e.is_retryable(), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_outlives_its_length_while_the_message_is_worked_on() {
    let dir = tempfile::tempdir().unwrap();
    let node = block_in_place(|| serve(dir.path(), 0, &[]));
    let work = node.client().queue("work");
    let rival = node.client().queue("work");
    work.send(&json!({"job": 1})).await.unwrap();

    let lease = Duration::from_millis(1500);
    let mut leased = within(work.fetch_leased(&wait().lease(lease)))
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    let leased = leased.remove(0);
    assert_eq!(leased.body, json!({"job": 1}));
    let first_until = leased.lease_until_ms();

    // While the lease is extended past three of its lengths, another consumer fetching all
    // along gets nothing: the message is not delivered again.
    let three = i64::try_from(3 * lease.as_millis()).unwrap();
    let deadline = Instant::now() + DEADLINE;
    while leased.lease_until_ms() < first_until + three {
        let got = rival
            .fetch(&FetchOptions::new().wait(Duration::from_millis(500)))
            .await
            .unwrap();
        assert!(got.is_empty(), "delivered again while leased: {got:?}");
        assert!(!leased.is_lost());
        assert!(Instant::now() < deadline, "the lease was not extended");
    }
    let info = work.describe().await.unwrap();
    assert_eq!((info.depth, info.in_flight), (1, 1));
    assert_eq!(leased.ack().await.unwrap(), "1-0");
    let info = work.describe().await.unwrap();
    assert_eq!((info.depth, info.in_flight), (0, 0));
    let got = rival.fetch(&FetchOptions::new()).await.unwrap();
    assert!(got.is_empty(), "{got:?}");
}

/// A TCP relay to `target` whose connections can be cut.
struct Relay {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: JoinHandle<()>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let links = Arc::new(Mutex::new(Vec::new()));
        let acceptor = tokio::spawn({
            let (accepted, links) = (accepted.clone(), links.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let link = tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    links.lock().unwrap().push(link);
                }
            }
        });
        Relay {
            addr,
            accepted,
            links,
            acceptor,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Cuts every connection relayed so far.
    fn cut(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.cut();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_resumes_after_its_connection_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let node = block_in_place(|| serve(dir.path(), 0, &[]));
    let feed = node.client().topic("feed");
    for n in 0..5 {
        assert_eq!(feed.publish(&json!({"n": n})).await.unwrap(), n);
    }
    let relay = Relay::start(SocketAddr::from(([127, 0, 0, 1], node.port))).await;
    let through = Client::new(format!("http://{}", relay.addr)).with_token(TOKEN);
    let mut events = through
        .topic("feed")
        .subscribe(Start::Beginning)
        .await
        .unwrap();
    for n in 0..5 {
        let e = next(&mut events).await;
        assert_eq!((e.id, e.data.clone()), (n, json!({"n": n})));
    }

    let before = relay.accepted();
    relay.cut();
    for n in 5..10 {
        feed.publish_typed("tick", &json!({"n": n})).await.unwrap();
    }
    for n in 5..11 {
        if n == 10 {
            // One more, after the resumed ones: nothing came twice in between.
            feed.publish(&json!({"n": 10})).await.unwrap();
        }
        let e = next(&mut events).await;
        assert_eq!((e.id, e.data.clone()), (n, json!({"n": n})));
        let kind = if n == 10 { None } else { Some("tick") };
        assert_eq!(e.kind.as_deref(), kind);
    }
    assert!(relay.accepted() > before, "the stream connected again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_resumes_across_a_sigkill_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = block_in_place(|| serve(dir.path(), 0, &[]));
    let client = node.client();
    let made = client
        .create_topic("feed", Some(Storage::Local))
        .await
        .unwrap();
    assert!(made.created, "{made:?}");
    let feed = client.topic("feed");
    for n in 0..5 {
        feed.publish(&json!({"n": n})).await.unwrap();
    }
    let mut events = client.topic("feed").subscribe(Start::At(0)).await.unwrap();
    for n in 0..5 {
        assert_eq!(next(&mut events).await.id, n);
    }

    // The node dies; another starts on the same data and port.
    let port = node.port;
    block_in_place(|| {
        node.process.signal(Signal::SIGKILL);
        node.process.wait_for_exit();
    });
    let again = block_in_place(|| serve(dir.path(), port, &[]));
    let feed = again.client().topic("feed");
    let info = feed.describe().await.unwrap();
    assert_eq!(
        (info.storage, info.first, info.next),
        (Some(Storage::Local), 0, 5)
    );
    for n in 5..11 {
        feed.publish(&json!({"n": n})).await.unwrap();
    }
    for n in 5..11 {
        let e = next(&mut events).await;
        assert_eq!((e.id, e.data.clone()), (n, json!({"n": n})));
    }

    // A subscription from an id resumes after it; one from now sees only what comes next.
    let mut after = again
        .client()
        .topic("feed")
        .subscribe(Start::After(8))
        .await
        .unwrap();
    assert_eq!(next(&mut after).await.id, 9);
    let mut now = again
        .client()
        .topic("feed")
        .subscribe(Start::Now)
        .await
        .unwrap();
    let page = feed.read(Some(9), 10, Duration::ZERO).await.unwrap();
    assert_eq!(
        (
            page.events.iter().map(|e| e.id).collect::<Vec<_>>(),
            page.next
        ),
        (vec![9, 10], 11)
    );
    feed.publish(&json!({"n": 11})).await.unwrap();
    assert_eq!(next(&mut now).await.id, 11);
    assert_eq!(next(&mut after).await.id, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_through_input_required_to_completion_with_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let node = block_in_place(|| serve(dir.path(), 0, &[]));
    let client = node.client();

    // Registered, found, heartbeating.
    let card = AgentCard::new("adder")
        .description("adds numbers")
        .skill(Skill {
            id: "add".into(),
            name: Some("Addition".into()),
            tags: vec!["math".into()],
        })
        .tag("calc");
    let registered = client
        .register(&card, &RegisterOptions::new().storage(Storage::Local))
        .await
        .unwrap();
    let token = registered.token.expect("a new agent's token");
    let worker = node.client().with_agent_token(&token);
    client
        .register(&AgentCard::new("echo"), &RegisterOptions::new())
        .await
        .unwrap();
    let taken = client
        .register(&AgentCard::new("adder"), &RegisterOptions::new())
        .await
        .unwrap_err();
    assert_eq!(
        (taken.status(), taken.code()),
        (Some(409), Some("name_taken"))
    );
    let names = async |query: AgentQuery| -> Vec<String> {
        let agents = client.agents(&query).await.unwrap();
        agents.into_iter().map(|a| a.card.name).collect()
    };
    assert_eq!(names(AgentQuery::new()).await, ["adder", "echo"]);
    assert_eq!(names(AgentQuery::new().skill("add")).await, ["adder"]);
    assert_eq!(
        names(AgentQuery::new().tag("math").online()).await,
        ["adder"]
    );
    assert_eq!(names(AgentQuery::new().max(1)).await, ["adder"]);
    assert!(names(AgentQuery::new().skill("divide")).await.is_empty());
    let adder = client.agent("adder").await.unwrap();
    assert_eq!(adder.card, card);
    assert!(adder.online);
    let until = worker.heartbeat("adder").await.unwrap();
    assert!(until > adder.seen_ms);
    // An update, with the agent's token: no new token.
    let updated = worker
        .register(&card.clone().tag("fast"), &RegisterOptions::new())
        .await
        .unwrap();
    assert_eq!(updated.token, None);
    assert_eq!(
        client.agent("adder").await.unwrap().card.tags,
        ["calc", "fast"]
    );
    // The registry's own topic, read from its beginning.
    let mut registry = client
        .topic("_registry")
        .subscribe(Start::Beginning)
        .await
        .unwrap();
    for (kind, name) in [
        ("registered", "adder"),
        ("registered", "echo"),
        ("updated", "adder"),
    ] {
        let e = next(&mut registry).await;
        assert_eq!(
            (e.kind.as_deref(), &e.data["name"]),
            (Some(kind), &json!(name))
        );
    }
    // The mailbox is the agent's alone.
    let stranger = client
        .mailbox("adder")
        .fetch(&FetchOptions::new())
        .await
        .unwrap_err();
    assert_eq!(
        (stranger.status(), stranger.code()),
        (Some(403), Some("not_owner"))
    );
    let mailbox = worker.mailbox("adder").describe().await.unwrap();
    assert_eq!(
        (mailbox.name.as_str(), mailbox.storage),
        ("adder", Some(Storage::Local))
    );

    // The requester creates a task and follows its events.
    let task = client
        .create_task("adder", &json!({"a": 2, "b": 3}))
        .await
        .unwrap();
    assert_eq!(
        (task.agent.as_str(), task.state),
        ("adder", TaskState::Submitted)
    );
    let stream = client.stream_task(&task.id, None).await.unwrap();
    let followed = tokio::spawn(stream.collect::<Vec<_>>());

    // The worker takes it from its mailbox, works, asks a question, waits for the answer
    // and completes.
    let working = tokio::spawn({
        let worker = worker.clone();
        async move {
            let mailbox = worker.mailbox("adder");
            mailbox
                .process(&wait(), async |m| -> Result<i64, Error> {
                    let id = m.body["task"].as_str().unwrap();
                    let (a, b) = (m.body["input"]["a"].as_i64(), m.body["input"]["b"].as_i64());
                    let sum = a.unwrap() + b.unwrap();
                    worker
                        .update_task(id, TaskState::Working, &Value::Null)
                        .await?;
                    worker.add_artifact(id, &json!({"sum": sum})).await?;
                    let asked = worker
                        .update_task(id, TaskState::InputRequired, &json!("double it?"))
                        .await?;
                    let mut after = asked.events.last().copied();
                    let answer = 'answer: loop {
                        let read = worker
                            .task_events(id, after, Duration::from_secs(5))
                            .await?;
                        for e in read.events {
                            after = Some(e.id);
                            if e.kind == TaskEventKind::Message && e.by == "requester" {
                                break 'answer e.data;
                            }
                        }
                    };
                    let result = if answer == json!({"double": true}) {
                        2 * sum
                    } else {
                        sum
                    };
                    worker.add_artifact(id, &json!({"result": result})).await?;
                    worker
                        .update_task(id, TaskState::Completed, &Value::Null)
                        .await?;
                    Ok(result)
                })
                .await
        }
    });

    let asked = client.wait_task(&task.id, DEADLINE).await.unwrap();
    assert_eq!(asked.state, TaskState::InputRequired);
    let late = client
        .respond(&task.id, &json!({"double": true}))
        .await
        .unwrap();
    assert_eq!(late.state, TaskState::Working);
    let done = client.wait_task(&task.id, DEADLINE).await.unwrap();
    assert_eq!(done.state, TaskState::Completed);
    let worked = within(working).await.unwrap().unwrap();
    assert_eq!(worked.map(Result::unwrap), Some(10));

    // The stream saw every event, in order, and ended with the task.
    let events: Vec<_> = within(followed)
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let seen: Vec<_> = events
        .iter()
        .map(|e| (e.kind, e.state, e.by.as_str()))
        .collect();
    use TaskEventKind::{Artifact, Message, Status};
    assert_eq!(
        seen,
        [
            (Status, Some(TaskState::Submitted), "requester"),
            (Status, Some(TaskState::Working), "agent"),
            (Artifact, None, "agent"),
            (Status, Some(TaskState::InputRequired), "agent"),
            (Message, None, "requester"),
            (Artifact, None, "agent"),
            (Status, Some(TaskState::Completed), "agent"),
        ]
    );
    assert_eq!(events[0].data, json!({"a": 2, "b": 3}));
    assert_eq!(events[5].data, json!({"result": 10}));
    assert_eq!(events.iter().map(|e| e.id).collect::<Vec<_>>(), done.events);
    // Read again: the same, from any event on.
    let read = client
        .task_events(&task.id, None, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        (read.state, read.events),
        (TaskState::Completed, events.clone())
    );
    let tail = client
        .stream_task(&task.id, Some(events[3].id))
        .await
        .unwrap();
    let tail: Vec<_> = within(tail.collect::<Vec<_>>())
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(tail, events[4..]);

    // A finished task takes no more; a canceled one neither; only its agent reports.
    let over = client.respond(&task.id, &json!(1)).await.unwrap_err();
    assert_eq!(over.status(), Some(409), "{over}");
    let other = client.create_task("adder", &json!(null)).await.unwrap();
    let impostor = node.client().with_agent_token("not-adders-token");
    let refused = impostor
        .add_message(&other.id, &json!("hi"))
        .await
        .unwrap_err();
    assert_eq!(
        (refused.status(), refused.code()),
        (Some(403), Some("not_owner"))
    );
    let canceled = client.cancel_task(&other.id).await.unwrap();
    assert_eq!(canceled.state, TaskState::Canceled);
    let finished = worker.add_artifact(&other.id, &json!(1)).await.unwrap_err();
    assert_eq!(finished.code(), Some("task_finished"), "{finished}");

    // Deregistered: gone from the registry.
    worker.deregister("adder").await.unwrap();
    let gone = client.agent("adder").await.unwrap_err();
    assert_eq!(
        (gone.status(), gone.code()),
        (Some(404), Some("unknown_agent"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_stream_resumes_after_its_connection_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let node = block_in_place(|| serve(dir.path(), 0, &[]));
    let client = node.client();
    let token = client
        .register(&AgentCard::new("worker"), &RegisterOptions::new())
        .await
        .unwrap()
        .token
        .unwrap();
    let worker = node.client().with_agent_token(token);
    let task = client.create_task("worker", "go").await.unwrap();

    let relay = Relay::start(SocketAddr::from(([127, 0, 0, 1], node.port))).await;
    let through = Client::new(format!("http://{}", relay.addr)).with_token(TOKEN);
    let mut events = through.stream_task(&task.id, None).await.unwrap();
    let submitted = next(&mut events).await;
    assert_eq!(submitted.state, Some(TaskState::Submitted));

    let before = relay.accepted();
    relay.cut();
    worker.add_artifact(&task.id, &json!(1)).await.unwrap();
    worker
        .update_task(&task.id, TaskState::Completed, &json!("done"))
        .await
        .unwrap();
    let rest: Vec<_> = within(events.collect::<Vec<_>>())
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let seen: Vec<_> = rest.iter().map(|e| (e.kind, e.state)).collect();
    assert_eq!(
        seen,
        [
            (TaskEventKind::Artifact, None),
            (TaskEventKind::Status, Some(TaskState::Completed))
        ]
    );
    assert!(rest[0].id > submitted.id && rest[1].id > rest[0].id);
    assert!(relay.accepted() > before, "the stream connected again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_checked_body_is_read_back_by_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let node = block_in_place(|| serve(dir.path(), 0, &[]));
    let client = node.client();
    let big = client.queue("big");
    // Over the node's claim-check threshold (64 KiB): kept on its own, claimed.
    let large = json!({"doc": "y".repeat(200_000)});
    big.send(&large).await.unwrap();
    let got = within(big.fetch(&wait())).await.unwrap();
    assert_eq!(got.len(), 1);
    let claim = got[0].claim.clone().expect("the message carries a claim");
    assert!(claim.bytes > 200_000, "{claim:?}");
    assert_eq!(got[0].body, large, "fetch reads the body in");
    assert_eq!(client.blob(&claim.id).await.unwrap(), large);
    let e = client.blob("0-00").await.unwrap_err();
    assert_eq!(e.code(), Some("unknown_blob"), "{e:?}");
}
