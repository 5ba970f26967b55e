//! Fuzzes the decoder of an uploaded segment's index trailer: any bytes give an index or
//! an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_journal::segment::remote::decode_trailer;

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = decode_trailer(data, 1 << 20) {
        let _ = index.position_for(7);
        let _ = index.rel_offset_for_time(0);
    }
});
