//! `strata serve` with object storage configured: MQTT messages stored in the journal are
//! offloaded to a real S3 server (s3s-fs on loopback) and `strata journal inspect` shows
//! where each segment lives; a bad object storage configuration stops the node with a
//! message naming the section.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use strata_tiered::testing::S3Server;

use crate::common::{MQTT_LISTENING, Process, http_get, strata, write_file};

#[test]
fn mqtt_messages_are_offloaded_to_s3_and_inspect_shows_where() {
    let server = S3Server::start("strata");
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://{}", server.addr());
    let config = write_file(
        dir.path(),
        "strata.toml",
        &format!(
            r#"
[journal]
segment_bytes = 65536

[journal.object_store]
backend = "s3"
endpoint = "{endpoint}"
bucket = "strata"
access_key_id = "{ak}"
secret_access_key = "{sk}"
prefix = "node-1"

[journal.offload]
local_retention_ms = 0
"#,
            ak = strata_tiered::testing::ACCESS_KEY,
            sk = strata_tiered::testing::SECRET_KEY,
        ),
    );
    let mut cmd = strata(dir.path());
    cmd.arg("serve")
        .arg("--config")
        .arg(&config)
        .env("STRATA_ADMIN__LISTEN", "127.0.0.1:0")
        .env("STRATA_NODE__DATA_DIR", dir.path().join("data"));
    let mut node = Process::spawn(cmd);
    let line = node.wait_for_stdout(MQTT_LISTENING);
    let port: u16 = line.rsplit(':').next().unwrap().trim().parse().unwrap();
    let admin = node.wait_for_admin();

    // 2,000 QoS 1 messages of 200 bytes: several 64 KiB segments.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use rumqttc::{AsyncClient, Event, MqttOptions, QoS};
        let opts = MqttOptions::new("tiered-pub", "127.0.0.1", port);
        let (client, mut events) = AsyncClient::new(opts, 100);
        let publisher = tokio::spawn(async move {
            for i in 0..2000u32 {
                let payload = format!("{i:0>200}");
                client
                    .publish("tiered/t", QoS::AtLeastOnce, false, payload)
                    .await
                    .unwrap();
            }
            client
        });
        let mut acked = 0;
        tokio::time::timeout(Duration::from_secs(120), async {
            while acked < 2000 {
                if let Event::Incoming(rumqttc::Packet::PubAck(_)) = events.poll().await.unwrap() {
                    acked += 1;
                }
            }
        })
        .await
        .expect("2000 PUBACKs within the deadline");
        drop(publisher.await.unwrap());
    });

    // The sealed segments reach object storage and (local retention 0) their local copies
    // go: inspect below must find segments held only remotely.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let metrics = http_get(admin, "/metrics").body;
        let counter = |name: &str| {
            metrics
                .lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let uploads = counter("strata_tier_uploads_total");
        let dropped = counter("strata_tier_local_segments_deleted_total");
        if uploads >= 3.0 && dropped >= 1.0 {
            assert!(
                metrics.contains("strata_tier_upload_backlog_bytes"),
                "{metrics}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no uploads: {metrics}");
        std::thread::sleep(Duration::from_millis(50));
    }
    node.signal(Signal::SIGTERM);
    assert!(node.wait_for_exit().success(), "{}", node.stderr());

    let out = strata(dir.path())
        .args(["journal", "inspect"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains(" remote ") && l.contains("streams/")),
        "inspect shows remote segments and their objects: {text}"
    );
    assert!(text.contains(" local "), "{text}");
}

#[test]
fn a_bad_object_storage_configuration_stops_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(
        dir.path(),
        "strata.toml",
        r#"
[journal.object_store]
backend = "fs"
root = "/tmp"

[journal.cache]
block_bytes = 1
"#,
    );
    let mut cmd = strata(dir.path());
    cmd.arg("serve")
        .arg("--config")
        .arg(&config)
        .env("STRATA_ADMIN__LISTEN", "127.0.0.1:0")
        .env("STRATA_NODE__DATA_DIR", dir.path().join("data"));
    let mut node = Process::spawn(cmd);
    let status = node.wait_for_exit();
    assert!(!status.success());
    let err = node.stderr();
    assert!(err.contains("block_bytes"), "{err}");
}
