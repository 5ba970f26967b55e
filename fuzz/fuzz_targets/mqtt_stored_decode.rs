//! Fuzzes what the MQTT frontend reads back from the key-value store at start-up: stored
//! messages (retained) and session records. Damaged bytes must give `None` or an error,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_mqtt::persist::{SessionRecord, decode_message};

fuzz_target!(|data: &[u8]| {
    let _ = decode_message(data, std::time::Instant::now());
    if let Ok(record) = serde_json::from_slice::<SessionRecord>(data) {
        let _ = record.subscriptions();
        let _ = record.expired();
    }
});
