//! Fuzzes what the MQTT frontend reads back from the key-value store at start-up: stored
//! messages (retained) and session records. Damaged bytes must give `None` or an error,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_mqtt::persist::{QueueEntry, SessionRecord, decode_due, decode_message};

fuzz_target!(|data: &[u8]| {
    let now = std::time::Instant::now();
    let _ = decode_message(data, now);
    let _ = decode_due(data, now);
    if let Some(e) = QueueEntry::decode(data) {
        assert_eq!(QueueEntry::decode(&e.encode()), Some(e));
    }
    if let Ok(record) = serde_json::from_slice::<SessionRecord>(data) {
        let _ = record.subscriptions();
        let _ = record.expired();
    }
});
