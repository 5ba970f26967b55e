//! Fuzzes what the Kafka frontend does with a request frame before touching any state:
//! header and body decoding for the API and version the frame names, and for a Produce
//! request the split into record batches and the check of each batch. Any bytes give a
//! request or an error, never a panic.
#![no_main]

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;
use libfuzzer_sys::fuzz_target;
use strata_batch::PendingBatch;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let mut frame = Bytes::copy_from_slice(data);
    let raw = i16::from_be_bytes([data[0], data[1]]);
    let version = i16::from_be_bytes([data[2], data[3]]);
    let Ok(key) = ApiKey::try_from(raw) else {
        return;
    };
    let Ok(_header) = RequestHeader::decode(&mut frame, key.request_header_version(version)) else {
        return;
    };
    if let Ok(RequestKind::Produce(p)) = RequestKind::decode(key, &mut frame, version) {
        for t in p.topic_data {
            for part in t.partition_data {
                if let Ok(batches) = strata_kafka::record_batches::split(&part.records.unwrap_or_default()) {
                    for b in batches {
                        let _ = PendingBatch::from_kafka(&b);
                    }
                }
            }
        }
    }
});
