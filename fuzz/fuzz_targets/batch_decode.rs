//! Fuzzes the stored-batch decoder: header parsing, CRC check and record decoding must
//! never panic on any input, and a batch that passes must decode or fail cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_batch::{Batch, BatchHeader, PendingBatch};

fuzz_target!(|data: &[u8]| {
    let _ = BatchHeader::parse(data);
    let _ = BatchHeader::peek_len(data);
    let _ = PendingBatch::from_stored(data);
    // Reach the record decoder even though random bytes rarely carry a valid CRC: fix the
    // frame CRC first.
    if data.len() >= 8 {
        let mut fixed = data.to_vec();
        let crc = crc(&fixed[4..]);
        fixed[0..4].copy_from_slice(&crc.to_be_bytes());
        if let Ok(batch) = Batch::from_bytes(bytes::Bytes::from(fixed)) {
            if let Ok(records) = batch.records() {
                for r in records.take(10_000) {
                    let _ = r;
                }
            }
        }
    }
});

fn crc(bytes: &[u8]) -> u32 {
    strata_batch::frame_crc_of_tail(bytes)
}
