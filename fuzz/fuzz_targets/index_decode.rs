//! Fuzzes the segment index decoder: any bytes give an index or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_journal::segment::SegmentIndex;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let (offsets, times) = data.split_at(split);
    if let Ok(index) = SegmentIndex::decode(offsets, times, 1 << 20) {
        let _ = index.position_for(7);
        let _ = index.rel_offset_for_time(0);
    }
});
