//! The Rust `rdkafka` client (librdkafka built from its bundled source) against a real
//! `strata serve`: an idempotent lz4 producer, a consumer group reading everything back and
//! committing, over TCP.

use std::time::Duration;

use crate::common::{KAFKA_LISTENING, Process, strata};

#[test]
fn rdkafka_produces_and_consumes_in_a_group() {
    use rdkafka::ClientConfig;
    use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
    use rdkafka::message::Message;
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let dir = tempfile::tempdir().unwrap();
    let mut cmd = strata(dir.path());
    cmd.arg("serve").env("STRATA_ADMIN__LISTEN", "127.0.0.1:0");
    let node = Process::spawn(cmd);
    let line = node.wait_for_stdout(KAFKA_LISTENING);
    let bootstrap = line.trim_start_matches(KAFKA_LISTENING).trim().to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("enable.idempotence", "true")
            .set("compression.type", "lz4")
            .create()
            .unwrap();
        for i in 0..200 {
            let payload = format!("rd-{i}");
            let key = format!("k{}", i % 3);
            producer
                .send(
                    FutureRecord::to("rd-topic").payload(&payload).key(&key),
                    Duration::from_secs(60),
                )
                .await
                .unwrap();
        }
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "rd-group")
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        consumer.subscribe(&["rd-topic"]).unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(120), async {
            while got.len() < 200 {
                let m = consumer.recv().await.unwrap();
                got.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
            }
        })
        .await
        .expect("200 records within the deadline");
        consumer.commit_consumer_state(CommitMode::Sync).unwrap();
        assert_eq!(got, (0..200).map(|i| format!("rd-{i}")).collect::<Vec<_>>());
    });
}
