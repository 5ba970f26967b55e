//! rumqttc (the Rust MQTT client) against a real `strata serve`: MQTT 3.1.1 and 5.0,
//! QoS 0, 1 and 2, over TCP.

use std::time::Duration;

use crate::common::{MQTT_LISTENING, Process, strata};

fn start() -> (tempfile::TempDir, Process, u16) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = strata(dir.path());
    cmd.arg("serve").env("STRATA_ADMIN__LISTEN", "127.0.0.1:0");
    let node = Process::spawn(cmd);
    let line = node.wait_for_stdout(MQTT_LISTENING);
    let port = line.rsplit(':').next().unwrap().trim().parse().unwrap();
    (dir, node, port)
}

const DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn v4_publish_and_subscribe_at_every_qos() {
    let (_dir, _node, port) = start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
        let mut opts = MqttOptions::new("rumqttc-v4", "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(30));
        let (client, mut events) = AsyncClient::new(opts, 100);
        client.subscribe("rq/#", QoS::ExactlyOnce).await.unwrap();
        let mut sent = false;
        let mut got = Vec::new();
        tokio::time::timeout(DEADLINE, async {
            while got.len() < 3 {
                match events.poll().await.unwrap() {
                    Event::Incoming(Packet::SubAck(_)) if !sent => {
                        sent = true;
                        for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
                            .into_iter()
                            .enumerate()
                        {
                            client
                                .publish(format!("rq/{i}"), qos, false, vec![i as u8; 10])
                                .await
                                .unwrap();
                        }
                    }
                    Event::Incoming(Packet::Publish(p)) => {
                        got.push((p.topic.clone(), p.qos, p.payload.to_vec()))
                    }
                    _ => {}
                }
            }
        })
        .await
        .expect("three messages within the deadline");
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got[0], ("rq/0".into(), QoS::AtMostOnce, vec![0; 10]));
        assert_eq!(got[1], ("rq/1".into(), QoS::AtLeastOnce, vec![1; 10]));
        assert_eq!(got[2], ("rq/2".into(), QoS::ExactlyOnce, vec![2; 10]));
    });
}

#[test]
fn v5_publish_and_subscribe_with_user_properties() {
    let (_dir, _node, port) = start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use rumqttc::v5::mqttbytes::QoS;
        use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
        use rumqttc::v5::{AsyncClient, Event, MqttOptions};
        let opts = MqttOptions::new("rumqttc-v5", "127.0.0.1", port);
        let (client, mut events) = AsyncClient::new(opts, 100);
        client.subscribe("r5/#", QoS::AtLeastOnce).await.unwrap();
        let mut sent = false;
        let msg = tokio::time::timeout(DEADLINE, async {
            loop {
                match events.poll().await.unwrap() {
                    Event::Incoming(Packet::SubAck(_)) if !sent => {
                        sent = true;
                        let props = PublishProperties {
                            user_properties: vec![("origin".into(), "rumqttc".into())],
                            content_type: Some("text/plain".into()),
                            ..Default::default()
                        };
                        client
                            .publish_with_properties(
                                "r5/a",
                                QoS::AtLeastOnce,
                                false,
                                "hello",
                                props,
                            )
                            .await
                            .unwrap();
                    }
                    Event::Incoming(Packet::Publish(p)) => return p,
                    _ => {}
                }
            }
        })
        .await
        .expect("the message within the deadline");
        assert_eq!(&msg.topic[..], b"r5/a");
        assert_eq!(&msg.payload[..], b"hello");
        let props = msg.properties.unwrap_or_default();
        assert_eq!(
            props.user_properties,
            vec![("origin".to_string(), "rumqttc".to_string())]
        );
        assert_eq!(props.content_type.as_deref(), Some("text/plain"));
    });
}
