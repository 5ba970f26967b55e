//! Codec tests: property-based round trips for every packet and version, partial input,
//! byte-exact vectors and the malformed inputs the specification names.
#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::properties::allowed;
use super::*;

const MAX: usize = 1 << 20;

fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![
        Just(ProtocolVersion::V31),
        Just(ProtocolVersion::V311),
        Just(ProtocolVersion::V5)
    ]
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9/ é_-]{0,12}"
}

fn bytes() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

prop_compose! {
    fn all_properties()(
        flags in proptest::collection::vec(0u8..=1, 10),
        u32s in proptest::collection::vec(any::<u32>(), 4),
        u16s in proptest::collection::vec(1u16.., 4),
        strings in proptest::collection::vec(proptest::option::of(text()), 8),
        data in proptest::collection::vec(proptest::option::of(bytes()), 2),
        sub_ids in proptest::collection::vec(1u32..=VARINT_MAX, 0..3),
        user in proptest::collection::vec((text(), text()), 0..3),
        some in proptest::collection::vec(any::<bool>(), 12),
    ) -> Properties {
        Properties {
            payload_format_indicator: Some(flags[0]).filter(|_| some[0]),
            message_expiry_interval: Some(u32s[0]).filter(|_| some[1]),
            content_type: strings[0].clone(),
            response_topic: strings[1].clone(),
            correlation_data: data[0].clone(),
            subscription_identifiers: sub_ids,
            session_expiry_interval: Some(u32s[1]).filter(|_| some[2]),
            assigned_client_identifier: strings[2].clone(),
            server_keep_alive: Some(u16s[0]).filter(|_| some[3]),
            authentication_method: strings[3].clone(),
            authentication_data: data[1].clone(),
            request_problem_information: Some(flags[1]).filter(|_| some[4]),
            will_delay_interval: Some(u32s[2]).filter(|_| some[5]),
            request_response_information: Some(flags[2]).filter(|_| some[6]),
            response_information: strings[4].clone(),
            server_reference: strings[5].clone(),
            reason_string: strings[6].clone(),
            receive_maximum: Some(u16s[1]).filter(|_| some[7]),
            topic_alias_maximum: Some(u16s[2]).filter(|_| some[8]),
            topic_alias: Some(u16s[3]).filter(|_| some[9]),
            maximum_qos: Some(flags[3]).filter(|_| some[10]),
            retain_available: Some(flags[4]).filter(|_| some[11]),
            user_properties: user,
            maximum_packet_size: Some(u32s[3].max(1)).filter(|_| some[0] && some[1]),
            wildcard_subscription_available: Some(flags[5]).filter(|_| some[2]),
            subscription_identifier_available: Some(flags[6]).filter(|_| some[3]),
            shared_subscription_available: Some(flags[7]).filter(|_| some[4]),
        }
    }
}

/// Keeps only the properties `allowed` lists.
fn only(mut p: Properties, allowed: &[u8]) -> Properties {
    let a = |id: u8| allowed.contains(&id);
    macro_rules! keep {
        ($($id:literal => $field:ident),*) => {$( if !a($id) { p.$field = Default::default(); } )*};
    }
    keep!(0x01 => payload_format_indicator, 0x02 => message_expiry_interval, 0x03 => content_type,
          0x08 => response_topic, 0x09 => correlation_data, 0x0B => subscription_identifiers,
          0x11 => session_expiry_interval, 0x12 => assigned_client_identifier,
          0x13 => server_keep_alive, 0x15 => authentication_method, 0x16 => authentication_data,
          0x17 => request_problem_information, 0x18 => will_delay_interval,
          0x19 => request_response_information, 0x1A => response_information,
          0x1C => server_reference, 0x1F => reason_string, 0x21 => receive_maximum,
          0x22 => topic_alias_maximum, 0x23 => topic_alias, 0x24 => maximum_qos,
          0x25 => retain_available, 0x26 => user_properties, 0x27 => maximum_packet_size,
          0x28 => wildcard_subscription_available, 0x29 => subscription_identifier_available,
          0x2A => shared_subscription_available);
    if p.authentication_method.is_none() {
        p.authentication_data = None;
    }
    p
}

fn props_for(v: ProtocolVersion, p: Properties, allowed: &[u8]) -> Properties {
    if v.is_v5() {
        only(p, allowed)
    } else {
        Properties::default()
    }
}

fn packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    (
        version(),
        all_properties(),
        all_properties(),
        text(),
        bytes(),
        qos(),
        1u16..,
        any::<[bool; 6]>(),
        0u8..=2,
    )
        .prop_map(|(v, p1, p2, s, b, q, id, f, kind)| (v, p1, p2, s, b, q, id, f, kind))
        .prop_flat_map(|(v, p1, p2, s, b, q, id, f, kind)| {
            (0u8..15, Just((v, p1, p2, s, b, q, id, f, kind)))
        })
        .prop_map(|(which, (v, p1, p2, s, b, q, id, f, kind))| {
            let v5 = v.is_v5();
            let reason = |codes: &[u8]| {
                if v5 {
                    ReasonCode(codes[usize::from(kind) % codes.len()])
                } else {
                    ReasonCode::SUCCESS
                }
            };
            let ack_props = props_for(v, p1.clone(), allowed::ACK);
            let topic = if s.is_empty() {
                "t".to_string()
            } else {
                s.replace(['+', '#'], "x")
            };
            let packet = match which {
                0 => Packet::Connect(Box::new(Connect {
                    version: v,
                    clean_start: f[0],
                    keep_alive: id,
                    client_id: s.clone(),
                    will: f[1].then(|| Will {
                        topic: topic.clone(),
                        payload: b.clone(),
                        qos: q,
                        retain: f[2],
                        properties: props_for(v, p2.clone(), allowed::WILL),
                    }),
                    username: (f[3] || (f[4] && !v5)).then(|| s.clone()),
                    password: f[4].then(|| b.clone()),
                    properties: props_for(v, p1.clone(), allowed::CONNECT),
                })),
                1 => Packet::ConnAck(ConnAck {
                    session_present: f[0],
                    code: if v5 {
                        reason(reason::CONNACK_CODES)
                    } else {
                        ReasonCode(kind)
                    },
                    properties: props_for(v, p1.clone(), allowed::CONNACK),
                }),
                2 => {
                    let mut properties = props_for(v, p1.clone(), allowed::PUBLISH);
                    let topic = if v5 && f[5] && properties.topic_alias.is_some() {
                        String::new()
                    } else {
                        topic
                    };
                    if !v5 {
                        properties = Properties::default();
                    }
                    Packet::Publish(Publish {
                        dup: f[0] && q != QoS::AtMostOnce,
                        qos: q,
                        retain: f[1],
                        topic,
                        packet_id: (q != QoS::AtMostOnce).then_some(id),
                        properties,
                        payload: b.clone(),
                    })
                }
                3 => Packet::PubAck(Ack {
                    packet_id: id,
                    reason: reason(reason::PUBACK_CODES),
                    properties: ack_props,
                }),
                4 => Packet::PubRec(Ack {
                    packet_id: id,
                    reason: reason(reason::PUBACK_CODES),
                    properties: ack_props,
                }),
                5 => Packet::PubRel(Ack {
                    packet_id: id,
                    reason: reason(reason::PUBREL_CODES),
                    properties: ack_props,
                }),
                6 => Packet::PubComp(Ack {
                    packet_id: id,
                    reason: reason(reason::PUBREL_CODES),
                    properties: ack_props,
                }),
                7 => {
                    let mut properties = props_for(v, p1.clone(), allowed::SUBSCRIBE);
                    properties.subscription_identifiers.truncate(1);
                    let options = SubscriptionOptions {
                        qos: q,
                        no_local: v5 && f[0],
                        retain_as_published: v5 && f[1],
                        retain_handling: if v5 {
                            [
                                RetainHandling::SendAtSubscribe,
                                RetainHandling::SendIfNew,
                                RetainHandling::DoNotSend,
                            ][usize::from(kind)]
                        } else {
                            RetainHandling::SendAtSubscribe
                        },
                    };
                    Packet::Subscribe(Subscribe {
                        packet_id: id,
                        filters: vec![
                            (s.clone(), options),
                            ("a/+/#".into(), SubscriptionOptions::default()),
                        ],
                        properties,
                    })
                }
                8 => Packet::SubAck(SubAck {
                    packet_id: id,
                    reasons: vec![
                        if v5 {
                            reason(reason::SUBACK_CODES)
                        } else {
                            ReasonCode([0, 1, 2, 0x80][usize::from(kind)])
                        },
                        ReasonCode::GRANTED_QOS_1,
                    ],
                    properties: ack_props,
                }),
                9 => Packet::Unsubscribe(Unsubscribe {
                    packet_id: id,
                    filters: vec![s.clone(), "x/#".into()],
                    properties: props_for(v, p1.clone(), allowed::UNSUBSCRIBE),
                }),
                10 => Packet::UnsubAck(UnsubAck {
                    packet_id: id,
                    reasons: if v5 {
                        vec![reason(reason::UNSUBACK_CODES)]
                    } else {
                        vec![]
                    },
                    properties: ack_props,
                }),
                11 => Packet::PingReq,
                12 => Packet::PingResp,
                13 => Packet::Disconnect(Disconnect {
                    reason: reason(reason::DISCONNECT_CODES),
                    properties: props_for(v, p1.clone(), allowed::DISCONNECT),
                }),
                _ if v5 => Packet::Auth(Auth {
                    reason: reason(reason::AUTH_CODES),
                    properties: only(p1.clone(), allowed::AUTH),
                }),
                _ => Packet::PingReq,
            };
            (v, packet)
        })
}

fn encode_one(p: &Packet, v: ProtocolVersion) -> BytesMut {
    let mut out = BytesMut::new();
    encode(p, v, MAX, &mut out).unwrap();
    out
}

fn decode_one(bytes: &[u8], v: Option<ProtocolVersion>) -> Result<Option<Packet>, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    decode(&mut buf, v, MAX)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn every_packet_round_trips((v, p) in packet()) {
        let bytes = encode_one(&p, v);
        let at = if matches!(p, Packet::Connect(_)) { None } else { Some(v) };
        let mut buf = bytes.clone();
        let back = decode(&mut buf, at, MAX).unwrap().unwrap();
        prop_assert_eq!(&back, &p);
        prop_assert!(buf.is_empty());
        // Every strict prefix is "incomplete" and consumes nothing.
        for cut in 0..bytes.len() {
            let mut part = BytesMut::from(&bytes[..cut]);
            prop_assert_eq!(decode(&mut part, at, MAX).unwrap(), None);
            prop_assert_eq!(part.len(), cut);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64), v in proptest::option::of(version())) {
        let mut buf = BytesMut::from(&data[..]);
        while let Ok(Some(_)) = decode(&mut buf, v, MAX) {}
    }
}

#[test]
fn a_mosquitto_style_311_connect_decodes() {
    // CONNECT, MQTT 3.1.1, clean session, keep alive 60, client id "cli".
    let raw = [
        0x10, 0x0f, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x03, b'c',
        b'l', b'i',
    ];
    let Packet::Connect(c) = decode_one(&raw, None).unwrap().unwrap() else {
        panic!()
    };
    assert_eq!(c.version, ProtocolVersion::V311);
    assert!(c.clean_start);
    assert_eq!(c.keep_alive, 60);
    assert_eq!(c.client_id, "cli");
    assert_eq!(
        encode_one(&Packet::Connect(c), ProtocolVersion::V311)[..],
        raw[..]
    );
}

#[test]
fn short_forms_of_v5_acks_and_disconnect() {
    let v = Some(ProtocolVersion::V5);
    let Packet::PubAck(a) = decode_one(&[0x40, 0x02, 0x00, 0x07], v).unwrap().unwrap() else {
        panic!()
    };
    assert_eq!((a.packet_id, a.reason), (7, ReasonCode::SUCCESS));
    let Packet::PubAck(a) = decode_one(&[0x40, 0x03, 0x00, 0x07, 0x10], v)
        .unwrap()
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(a.reason, ReasonCode::NO_MATCHING_SUBSCRIBERS);
    let Packet::Disconnect(d) = decode_one(&[0xe0, 0x00], v).unwrap().unwrap() else {
        panic!()
    };
    assert_eq!(d.reason, ReasonCode::NORMAL_DISCONNECTION);
    assert_eq!(
        &encode_one(
            &Packet::Disconnect(Disconnect::default()),
            ProtocolVersion::V5
        )[..],
        &[0xe0, 0x00]
    );
    let with_will = Disconnect {
        reason: ReasonCode::DISCONNECT_WITH_WILL,
        ..Disconnect::default()
    };
    assert_eq!(
        &encode_one(&Packet::Disconnect(with_will), ProtocolVersion::V5)[..],
        &[0xe0, 0x01, 0x04]
    );
}

fn err(bytes: &[u8], v: Option<ProtocolVersion>) -> DecodeError {
    decode_one(bytes, v).unwrap_err()
}

#[test]
fn malformed_and_protocol_errors() {
    let v3 = Some(ProtocolVersion::V311);
    let v5 = Some(ProtocolVersion::V5);
    // Reserved flags on PUBACK; PUBREL without its 0b0010 flags.
    assert!(matches!(
        err(&[0x41, 0x02, 0x00, 0x01], v3),
        DecodeError::Malformed(_)
    ));
    assert!(matches!(
        err(&[0x60, 0x02, 0x00, 0x01], v3),
        DecodeError::Malformed(_)
    ));
    // QoS 3, and DUP on QoS 0.
    assert!(matches!(
        err(&[0x36, 0x05, 0x00, 0x01, b't', 0x00, 0x01], v3),
        DecodeError::Malformed(_)
    ));
    assert!(matches!(
        err(&[0x38, 0x03, 0x00, 0x01, b't'], v3),
        DecodeError::Malformed(_)
    ));
    // Packet identifier 0; wildcard in a topic name.
    assert!(matches!(
        err(&[0x32, 0x05, 0x00, 0x01, b't', 0x00, 0x00], v3),
        DecodeError::Malformed(_)
    ));
    assert!(matches!(
        err(&[0x30, 0x03, 0x00, 0x01, b'#'], v3),
        DecodeError::Malformed(_)
    ));
    // Remaining length of five bytes.
    assert!(matches!(
        err(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01], v3),
        DecodeError::Malformed(_)
    ));
    // Too large: rejected from the fixed header alone.
    let mut big = BytesMut::from(&[0x30, 0xff, 0xff, 0x03][..]);
    assert!(matches!(
        decode(&mut big, v3, 1000),
        Err(DecodeError::TooLarge { .. })
    ));
    // SUBSCRIBE without filters; reserved option bits.
    assert!(matches!(
        err(&[0x82, 0x02, 0x00, 0x01], v3),
        DecodeError::Protocol(_)
    ));
    assert!(matches!(
        err(&[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x04], v3),
        DecodeError::Malformed(_)
    ));
    assert!(matches!(
        err(&[0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0xc0], v5),
        DecodeError::Malformed(_)
    ));
    // A property twice, and one not allowed in the packet.
    assert!(matches!(
        err(
            &[
                0x40, 0x0a, 0x00, 0x01, 0x00, 0x06, 0x1f, 0x00, 0x00, 0x1f, 0x00, 0x00
            ],
            v5
        ),
        DecodeError::Protocol(_)
    ));
    assert!(matches!(
        err(
            &[
                0x40, 0x08, 0x00, 0x01, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00, 0x01
            ],
            v5
        ),
        DecodeError::Protocol(_)
    ));
    // Invalid PUBACK reason code.
    assert!(matches!(
        err(&[0x40, 0x03, 0x00, 0x01, 0x81], v5),
        DecodeError::Protocol(_)
    ));
    // Invalid UTF-8 and U+0000 in strings.
    assert!(matches!(
        err(&[0x30, 0x03, 0x00, 0x01, 0xff], v3),
        DecodeError::Malformed(_)
    ));
    assert!(matches!(
        err(&[0x30, 0x03, 0x00, 0x01, 0x00], v3),
        DecodeError::Malformed(_)
    ));
    // Packets before CONNECT, a second CONNECT, AUTH in 3.1.1.
    assert!(matches!(err(&[0xc0, 0x00], None), DecodeError::Protocol(_)));
    let connect = [
        0x10, 0x0c, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x00,
    ];
    assert!(matches!(err(&connect, v3), DecodeError::Protocol(_)));
    assert!(matches!(err(&[0xf0, 0x00], v3), DecodeError::Malformed(_)));
}

#[test]
fn connect_rules() {
    let base = |level: u8, flags: u8| {
        vec![
            0x10, 0x0c, 0x00, 0x04, b'M', b'Q', b'T', b'T', level, flags, 0x00, 0x3c, 0x00, 0x00,
        ]
    };
    assert!(
        matches!(err(&base(4, 0x03), None), DecodeError::Malformed(_)),
        "reserved flag"
    );
    assert!(
        matches!(err(&base(4, 0x08), None), DecodeError::Malformed(_)),
        "will QoS without will"
    );
    assert!(
        matches!(err(&base(4, 0x20), None), DecodeError::Malformed(_)),
        "will retain without will"
    );
    assert!(
        matches!(err(&base(4, 0x40), None), DecodeError::Malformed(_)),
        "password without user name"
    );
    assert!(matches!(
        err(&base(9, 0x02), None),
        DecodeError::UnsupportedVersion { level: 9, .. }
    ));
    assert_eq!(
        err(&base(9, 0x02), None).reason_code(),
        ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
    );
    // MQTT 3.1 names itself MQIsdp.
    let v31 = [
        0x10, 0x0e, 0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03, 0x02, 0x00, 0x3c, 0x00,
        0x00,
    ];
    let Packet::Connect(c) = decode_one(&v31, None).unwrap().unwrap() else {
        panic!()
    };
    assert_eq!(c.version, ProtocolVersion::V31);
}
