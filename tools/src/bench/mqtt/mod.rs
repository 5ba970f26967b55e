//! `strata bench mqtt`: a load generator for any MQTT broker. Scenarios point-to-point,
//! fan-out, fan-in and shared subscription; QoS 0/1/2; flood or paced. Reports messages
//! per second, end-to-end latency percentiles, losses and (with `--pid`) the broker's
//! CPU-seconds per million messages.

mod client;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use clap::{Args, ValueEnum};
use indicatif::ProgressBar;
use parking_lot::Mutex;
use strata_mqtt::codec::{self as codec, Ack, Packet, ProtocolVersion, Publish, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use super::report::{Latency, cpu_of};

/// CPU seconds the broker process has used.
fn broker_cpu(pid: u32) -> Option<f64> {
    cpu_of(&pid.to_string()).map(|d| d.as_secs_f64())
}
use client::{BenchClient, Dialer};

/// Load shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// N publishers, each with its own subscriber on its own topic.
    P2p,
    /// One publisher, N subscribers of the same topic.
    FanOut,
    /// N publishers, one subscriber.
    FanIn,
    /// One publisher, N members of one shared subscription.
    Shared,
    /// N connections opened as fast as the broker takes them and held idle: connect rate
    /// and broker memory per connection.
    Storm,
    /// Connection attempts at `--rate` per second, `--messages` of them, each a CONNECT
    /// dropped as soon as it is answered (or refused): a connection flood from one address,
    /// to run beside another benchmark.
    Flood,
    /// One publisher to `bench/fill` and no subscriber: fills the queues of persistent
    /// sessions subscribed there (for restart measurements); the rate is acknowledged
    /// publishes per second.
    Publish,
}

/// Arguments of `strata bench mqtt`.
#[derive(Args, Debug)]
pub struct MqttBenchArgs {
    /// Broker address.
    #[arg(long, default_value = "127.0.0.1:1883")]
    broker: SocketAddr,
    /// Load shape.
    #[arg(long, value_enum, default_value = "p2p")]
    scenario: Scenario,
    /// Publishers (p2p: pairs; fan-in: publishers) or subscribers (fan-out, shared).
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// QoS of publishes and subscriptions.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// Payload bytes (at least 8: a send timestamp).
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Messages per publisher.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// Messages per second per publisher (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// QoS 1/2 messages in flight per publisher.
    #[arg(long, default_value_t = 256)]
    inflight: usize,
    /// Broker process id, to report its CPU time.
    #[arg(long)]
    pid: Option<u32>,
    /// Give up waiting for messages after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Publishers and subscribers use persistent sessions (MQTT 3.1.1 clean session 0), so
    /// the broker keeps their state durably.
    #[arg(long)]
    persistent: bool,
    /// Storm: spread connections over this many source addresses (127.0.0.1, 127.0.0.2...),
    /// each good for about 28,000 connections to one port.
    #[arg(long, default_value_t = 1)]
    sources: u8,
    /// Storm: connections being opened at once.
    #[arg(long, default_value_t = 512)]
    concurrency: usize,
    /// Flood: the local address the attempts come from (another loopback address than
    /// the load's, such as 127.0.0.2, so per-address bounds tell them apart).
    #[arg(long, default_value = "127.0.0.1")]
    bind: std::net::Ipv4Addr,
    /// Connect over TLS, trusting the CA certificates in this PEM file.
    #[arg(long)]
    tls_ca: Option<std::path::PathBuf>,
    /// The name the broker's certificate must carry (with `--tls-ca`).
    #[arg(long, default_value = "localhost")]
    tls_server_name: String,
}

impl MqttBenchArgs {
    fn dialer(&self) -> anyhow::Result<Dialer> {
        Dialer::new(self.tls_ca.as_deref(), &self.tls_server_name)
    }
}

fn qos(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

struct Shared {
    started: Instant,
    received: AtomicU64,
    latency: Mutex<Latency>,
    last_receive: Mutex<Instant>,
}

async fn subscriber(
    args: Arc<MqttBenchArgs>,
    id: usize,
    filter: String,
    expect: u64,
    shared: Arc<Shared>,
    ready: Arc<Semaphore>,
) -> anyhow::Result<u64> {
    let mut c = BenchClient::connect(
        &args.dialer()?,
        args.broker,
        &format!("bench-sub-{id}-{}", std::process::id()),
        !args.persistent,
    )
    .await?;
    c.subscribe(&filter, qos(args.qos)).await?;
    ready.add_permits(1);
    let mut got = 0u64;
    let mut local = Latency::new();
    let deadline = tokio::time::sleep(Duration::from_secs(args.timeout));
    tokio::pin!(deadline);
    // Everything one read brought is handled, and answered with one write, before the next
    // read: a load generator that wrote once per acknowledgement would measure itself.
    'receive: while got < expect {
        let before = got;
        while let Some(packet) = c.buffered()? {
            match &packet {
                Packet::Publish(p) => {
                    if p.payload.len() >= 8 {
                        let sent =
                            u64::from_be_bytes(p.payload[..8].try_into().unwrap_or_default());
                        let now = shared.started.elapsed().as_nanos() as u64;
                        local.record(Duration::from_nanos(now.saturating_sub(sent)));
                    }
                    c.acknowledge(p)?;
                    got += 1;
                }
                Packet::PubRel(_) => c.answer_qos2(&packet)?,
                _ => {}
            }
        }
        c.flush().await?;
        shared.received.fetch_add(got - before, Ordering::Relaxed);
        if got >= expect {
            break;
        }
        tokio::select! {
            r = c.fill() => r?,
            _ = &mut deadline => break 'receive,
        }
    }
    *shared.last_receive.lock() = Instant::now();
    shared.latency.lock().merge(&local);
    Ok(got)
}

async fn publisher(
    args: Arc<MqttBenchArgs>,
    id: usize,
    topic: String,
    shared: Arc<Shared>,
) -> anyhow::Result<()> {
    let c = BenchClient::connect(
        &args.dialer()?,
        args.broker,
        &format!("bench-pub-{id}-{}", std::process::id()),
        !args.persistent,
    )
    .await?;
    let q = qos(args.qos);
    let window = Arc::new(Semaphore::new(if q == QoS::AtMostOnce {
        0
    } else {
        args.inflight
    }));
    let (stream, mut rbuf) = c.into_stream();
    let (mut rd, mut wr) = tokio::io::split(stream);
    // Acknowledgements free window slots; QoS 2 PUBRECs are answered with PUBREL.
    let (rel_tx, mut rel_rx) = tokio::sync::mpsc::unbounded_channel::<u16>();
    let acks = {
        let window = window.clone();
        tokio::spawn(async move {
            loop {
                while let Ok(Some(p)) =
                    codec::decode(&mut rbuf, Some(ProtocolVersion::V311), 1 << 24)
                {
                    match p {
                        Packet::PubAck(_) | Packet::PubComp(_) => window.add_permits(1),
                        Packet::PubRec(a) => {
                            let _ = rel_tx.send(a.packet_id);
                        }
                        _ => {}
                    }
                }
                match rd.read_buf(&mut rbuf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
    };
    let mut out = BytesMut::with_capacity(64 * 1024);
    let filler = vec![0x5au8; args.payload.saturating_sub(8)];
    let interval = (args.rate > 0).then(|| Duration::from_nanos(1_000_000_000 / args.rate));
    let begin = tokio::time::Instant::now();
    let mut next_id: u16 = 0;
    for n in 0..args.messages {
        if let Some(every) = interval {
            tokio::time::sleep_until(begin + every * n as u32).await;
        }
        if q != QoS::AtMostOnce {
            if window.available_permits() == 0 && !out.is_empty() {
                wr.write_all(&out).await?;
                out.clear();
            }
            window.acquire().await?.forget();
        }
        while let Ok(id) = rel_rx.try_recv() {
            codec::encode(
                &Packet::PubRel(Ack::new(id)),
                ProtocolVersion::V311,
                usize::MAX,
                &mut out,
            )?;
        }
        let mut payload = BytesMut::with_capacity(args.payload.max(8));
        payload.put_u64(shared.started.elapsed().as_nanos() as u64);
        payload.put_slice(&filler);
        let packet_id = (q != QoS::AtMostOnce).then(|| {
            next_id = next_id.wrapping_add(1).max(1);
            next_id
        });
        let p = Publish {
            dup: false,
            qos: q,
            retain: false,
            topic: topic.clone(),
            packet_id,
            properties: Default::default(),
            payload: Bytes::from(payload),
        };
        codec::encode(
            &Packet::Publish(p),
            ProtocolVersion::V311,
            usize::MAX,
            &mut out,
        )?;
        if out.len() >= 32 * 1024 || interval.is_some() {
            wr.write_all(&out).await?;
            out.clear();
        }
    }
    wr.write_all(&out).await?;
    // Keep answering PUBRECs until every QoS 2 exchange completes.
    if q == QoS::ExactlyOnce {
        let done = async {
            while window.available_permits() < args.inflight {
                if let Some(id) = rel_rx.recv().await {
                    let mut b = BytesMut::new();
                    codec::encode(
                        &Packet::PubRel(Ack::new(id)),
                        ProtocolVersion::V311,
                        usize::MAX,
                        &mut b,
                    )?;
                    wr.write_all(&b).await?;
                } else {
                    break;
                }
            }
            anyhow::Ok(())
        };
        let _ = tokio::time::timeout(Duration::from_secs(args.timeout), done).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(args.timeout), async {
        while window.available_permits()
            < if q == QoS::AtMostOnce {
                0
            } else {
                args.inflight
            }
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    acks.abort();
    Ok(())
}

/// Resident memory of a process in KiB, from `/proc/PID/status`.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Opens and drops connections at `--rate` per second: how many the broker answered with
/// CONNACK 0, how many it refused or closed, and the rate reached.
async fn flood(args: MqttBenchArgs) -> anyhow::Result<()> {
    let dialer = args.dialer()?;
    let rate = args.rate.max(1);
    let total = args.messages;
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let mut connect = BytesMut::new();
    codec::encode(
        &Packet::Connect(Box::new(strata_mqtt::codec::Connect {
            version: ProtocolVersion::V311,
            clean_start: true,
            keep_alive: 0,
            client_id: String::new(),
            will: None,
            username: None,
            password: None,
            properties: strata_mqtt::codec::Properties::default(),
        })),
        ProtocolVersion::V311,
        usize::MAX,
        &mut connect,
    )?;
    let connect = connect.freeze();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        // Paced: attempt i starts at i / rate seconds.
        let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let Ok(permit) = gate.clone().try_acquire_owned() else {
            // As many attempts in flight as allowed: this one counts as refused.
            refused.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let (dialer, connect, broker) = (dialer.clone(), connect.clone(), args.broker);
        let (accepted, refused, bind) = (accepted.clone(), refused.clone(), args.bind);
        tasks.spawn(async move {
            let attempt = async {
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.bind(SocketAddr::from((bind, 0)))?;
                let tcp = socket.connect(broker).await?;
                let mut stream = dialer.wrap(tcp).await?;
                stream.write_all(&connect).await?;
                let mut ack = [0u8; 4];
                stream.read_exact(&mut ack).await?;
                anyhow::ensure!(ack == [0x20, 0x02, 0x00, 0x00], "CONNACK {ack:?}");
                anyhow::Ok(())
            };
            let ok = matches!(
                tokio::time::timeout(Duration::from_secs(5), attempt).await,
                Ok(Ok(()))
            );
            if ok { &accepted } else { &refused }.fetch_add(1, Ordering::Relaxed);
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    let (ok, no) = (
        accepted.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );
    if args.json {
        println!(
            "{}",
            serde_json::json!({"scenario": "Flood", "attempts": total, "accepted": ok,
                "refused": no, "seconds": elapsed, "attempts_per_sec": total as f64 / elapsed})
        );
    } else {
        println!(
            "flood: {total} attempts in {elapsed:.1} s ({:.0}/s): {ok} accepted, {no} refused or closed",
            total as f64 / elapsed
        );
    }
    Ok(())
}

/// Opens `--clients` MQTT connections and holds them: connect rate and broker memory.
async fn storm(args: MqttBenchArgs) -> anyhow::Result<()> {
    use strata_mqtt::codec::{self as c, Connect, Properties, ProtocolVersion};
    let rss0 = args.pid.and_then(rss_kib);
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let dialer = args.dialer()?;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let bar = ProgressBar::new(args.clients as u64);
    for i in 0..args.clients {
        let permit = gate.clone().acquire_owned().await?;
        let source =
            std::net::Ipv4Addr::new(127, 0, 0, 1 + (i % usize::from(args.sources.max(1))) as u8);
        let broker = args.broker;
        let bar = bar.clone();
        let dialer = dialer.clone();
        tasks.spawn(async move {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::from((source, 0)))?;
            let mut stream = dialer.wrap(socket.connect(broker).await?).await?;
            let mut out = BytesMut::new();
            let connect = Connect {
                version: ProtocolVersion::V311,
                clean_start: true,
                keep_alive: 0,
                client_id: format!("storm-{i}"),
                will: None,
                username: None,
                password: None,
                properties: Properties::default(),
            };
            c::encode(
                &Packet::Connect(Box::new(connect)),
                ProtocolVersion::V311,
                usize::MAX,
                &mut out,
            )?;
            stream.write_all(&out).await?;
            let mut ack = [0u8; 4];
            stream.read_exact(&mut ack).await?;
            anyhow::ensure!(ack == [0x20, 0x02, 0x00, 0x00], "CONNACK {ack:?}");
            drop(permit);
            bar.inc(1);
            anyhow::Ok(stream)
        });
    }
    let mut held = Vec::with_capacity(args.clients);
    let mut failed = 0usize;
    while let Some(r) = tasks.join_next().await {
        match r? {
            Ok(s) => held.push(s),
            Err(e) => {
                failed += 1;
                if failed == 1 {
                    eprintln!("connection failed: {e:#}");
                }
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    // Let the broker settle before reading its memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss1 = args.pid.and_then(rss_kib);
    let per_conn = match (rss0, rss1) {
        (Some(a), Some(b)) if !held.is_empty() => {
            Some(b.saturating_sub(a) as f64 / held.len() as f64)
        }
        _ => None,
    };
    let rate = held.len() as f64 / elapsed;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"scenario": "Storm", "connected": held.len(), "failed": failed, "seconds": elapsed,
                "connects_per_s": rate, "broker_rss_kib_before": rss0, "broker_rss_kib_after": rss1,
                "broker_kib_per_connection": per_conn})
        );
    } else {
        println!(
            "{} connections ({failed} failed) in {elapsed:.2} s: {rate:.0} connects/s",
            held.len()
        );
        if let Some(k) = per_conn {
            println!(
                "broker RSS {} -> {} KiB: {k:.2} KiB per connection",
                rss0.unwrap_or(0),
                rss1.unwrap_or(0)
            );
        }
    }
    drop(held);
    Ok(())
}

/// Runs the benchmark.
pub async fn run(args: MqttBenchArgs) -> anyhow::Result<()> {
    if args.scenario == Scenario::Storm {
        return storm(args).await;
    }
    if args.scenario == Scenario::Flood {
        return flood(args).await;
    }
    anyhow::ensure!(
        args.payload >= 8,
        "--payload must be at least 8 bytes (a send timestamp)"
    );
    let args = Arc::new(args);
    let n = args.clients.max(1);
    let tag = std::process::id();
    // (subscriber filters, publisher topics, messages each subscriber expects)
    let (subs, pubs, per_sub): (Vec<String>, Vec<String>, u64) = match args.scenario {
        Scenario::P2p => (
            (0..n).map(|i| format!("bench/{tag}/{i}")).collect(),
            (0..n).map(|i| format!("bench/{tag}/{i}")).collect(),
            args.messages,
        ),
        Scenario::FanOut => (
            vec![format!("bench/{tag}/all"); n],
            vec![format!("bench/{tag}/all")],
            args.messages,
        ),
        Scenario::FanIn => (
            vec![format!("bench/{tag}/+")],
            (0..n).map(|i| format!("bench/{tag}/{i}")).collect(),
            args.messages * n as u64,
        ),
        Scenario::Shared => (
            vec![format!("$share/g/bench/{tag}/s"); n],
            vec![format!("bench/{tag}/s")],
            0,
        ),
        Scenario::Publish => (Vec::new(), vec!["bench/fill".to_string()], 0),
        Scenario::Storm | Scenario::Flood => unreachable!("handled above"),
    };
    let expected_total = match args.scenario {
        Scenario::Shared | Scenario::Publish => args.messages,
        _ => per_sub * subs.len() as u64,
    };
    let shared = Arc::new(Shared {
        started: Instant::now(),
        received: AtomicU64::new(0),
        latency: Mutex::new(Latency::new()),
        last_receive: Mutex::new(Instant::now()),
    });
    let ready = Arc::new(Semaphore::new(0));
    let mut sub_tasks = Vec::new();
    for (i, f) in subs.iter().enumerate() {
        // A shared-group member cannot know its share; it stops when the total arrives.
        let expect = if args.scenario == Scenario::Shared {
            u64::MAX
        } else {
            per_sub
        };
        sub_tasks.push(tokio::spawn(subscriber(
            args.clone(),
            i,
            f.clone(),
            expect,
            shared.clone(),
            ready.clone(),
        )));
    }
    let _ = ready.acquire_many(subs.len() as u32).await?;
    let cpu0 = args.pid.and_then(broker_cpu);
    let bar = ProgressBar::new(expected_total);
    let ticker = {
        let (bar, shared) = (bar.clone(), shared.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                bar.set_position(shared.received.load(Ordering::Relaxed));
            }
        })
    };
    let start = Instant::now();
    let mut pub_tasks = Vec::new();
    for (i, t) in pubs.iter().enumerate() {
        pub_tasks.push(tokio::spawn(publisher(
            args.clone(),
            i,
            t.clone(),
            shared.clone(),
        )));
    }
    for t in pub_tasks {
        t.await??;
    }
    if args.scenario == Scenario::Publish {
        *shared.last_receive.lock() = Instant::now();
        shared.received.store(args.messages, Ordering::Relaxed);
    }
    if args.scenario == Scenario::Shared {
        let deadline = Instant::now() + Duration::from_secs(args.timeout);
        while shared.received.load(Ordering::Relaxed) < expected_total && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        *shared.last_receive.lock() = Instant::now();
        for t in &sub_tasks {
            t.abort();
        }
    } else {
        for t in sub_tasks {
            t.await??;
        }
    }
    ticker.abort();
    bar.finish_and_clear();
    let received = shared.received.load(Ordering::Relaxed);
    let elapsed = shared
        .last_receive
        .lock()
        .duration_since(start)
        .as_secs_f64()
        .max(1e-9);
    let cpu = match (args.pid.and_then(broker_cpu), cpu0) {
        (Some(b), Some(a)) => Some(b - a),
        _ => None,
    };
    let lat = shared.latency.lock();
    let (p50, p99, p999) = (
        lat.quantile_us(0.5),
        lat.quantile_us(0.99),
        lat.quantile_us(0.999),
    );
    let rate = received as f64 / elapsed;
    let cpu_per_million = cpu.map(|c| c / (received as f64 / 1e6).max(1e-12));
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "scenario": format!("{:?}", args.scenario), "clients": n, "qos": args.qos, "payload": args.payload,
                "expected": expected_total, "received": received, "lost": expected_total.saturating_sub(received),
                "seconds": elapsed, "msgs_per_s": rate, "p50_us": p50, "p99_us": p99, "p999_us": p999,
                "broker_cpu_seconds": cpu, "broker_cpu_seconds_per_million": cpu_per_million,
            })
        );
    } else {
        println!(
            "mqtt bench {:?}: {n} client(s), QoS {}, {} B payloads, broker {}",
            args.scenario, args.qos, args.payload, args.broker
        );
        println!(
            "received {received} of {expected_total} ({} lost) in {elapsed:.2} s: {rate:.0} msg/s",
            expected_total.saturating_sub(received)
        );
        println!("latency p50 {p50} µs, p99 {p99} µs, p999 {p999} µs");
        if let Some(c) = cpu_per_million {
            println!(
                "broker CPU {:.2} s: {c:.2} CPU-s per million messages",
                cpu.unwrap_or_default()
            );
        }
    }
    Ok(())
}
