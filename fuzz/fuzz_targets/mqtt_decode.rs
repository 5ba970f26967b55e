//! Fuzzes the MQTT decoder for every protocol state: before CONNECT and for each version.
//! Any input must decode, report "incomplete" or fail with an error, never panic; a packet
//! that decodes must encode again.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use strata_mqtt::codec::{ProtocolVersion, decode, encode};

fuzz_target!(|data: &[u8]| {
    let Some((&state, data)) = data.split_first() else { return };
    let version = match state % 4 {
        0 => None,
        1 => Some(ProtocolVersion::V31),
        2 => Some(ProtocolVersion::V311),
        _ => Some(ProtocolVersion::V5),
    };
    let mut buf = BytesMut::from(data);
    while let Ok(Some(packet)) = decode(&mut buf, version, 1 << 20) {
        let v = version.unwrap_or(ProtocolVersion::V5);
        let mut out = BytesMut::new();
        let _ = encode(&packet, v, 1 << 20, &mut out);
        if version.is_none() {
            break;
        }
    }
});
