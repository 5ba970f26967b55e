//! Fuzzes the SCRAM server (Kafka SASL/SCRAM and MQTT 5 enhanced authentication): any
//! client-first message parses or is refused, and any client-final message is checked or
//! refused, for known and unknown users, without panicking; a made-up proof never passes.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use strata_frontend::security::scram::{Mechanism, ScramCredential, ServerExchange, client_first};

fuzz_target!(|data: &[u8]| {
    let (first, last) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok((user, nonce, bare)) = client_first(first) else {
        return;
    };
    let mechanism = if data.len() % 2 == 0 {
        Mechanism::Sha256
    } else {
        Mechanism::Sha512
    };
    // A known user (a fixed password, derived once: PBKDF2 is slow on purpose) or an
    // unknown one.
    static KEYS: OnceLock<[ScramCredential; 2]> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        [Mechanism::Sha256, Mechanism::Sha512].map(|m| ScramCredential::derive(m, "pw"))
    });
    let credential =
        (user.len() % 3 != 0).then(|| keys[usize::from(mechanism == Mechanism::Sha512)].clone());
    let (exchange, _server_first) = ServerExchange::start(mechanism, user, &nonce, bare, credential);
    // The server's nonce is random: no input can carry it, so no proof passes.
    assert!(exchange.finish(last).is_err());
});
