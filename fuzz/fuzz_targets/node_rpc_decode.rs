//! Fuzzes what a node decodes from another node's requests: the meta service's frames
//! (Raft requests, commands, voter changes and answers as JSON in a prost frame) and the
//! data plane's partition requests with the batch they carry. Any bytes give a value or a
//! refusal, never a panic; a batch taken from a request has the length its header states.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = strata_meta::decode_frame(data);
    if let Some(request) = strata_meta::partitions::decode_request(data)
        && let Ok(batch) = strata_batch::PendingBatch::from_stored(&request.batch)
    {
        assert_eq!(batch.len(), request.batch.len());
    }
});
