//! Fuzzes the parser of offloaded-segment manifests: any bytes give entries or a reason,
//! never a panic; entries never end before they start.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((entries, _)) = strata_tiered::manifest::parse(data) {
        assert!(entries.values().all(|e| e.last_offset >= e.base_offset));
    }
});
