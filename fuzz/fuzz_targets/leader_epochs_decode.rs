//! Fuzzes the parser of a replica's leader-epoch cache: any bytes give epochs or a reason,
//! never a panic; parsed epochs are ordered, survive a round trip, and answer
//! OffsetForLeaderEpoch with an epoch no newer than asked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_journal::LeaderEpochs;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(epochs) = LeaderEpochs::parse(text) {
        let e = epochs.entries();
        assert!(e.windows(2).all(|w| w[0].epoch < w[1].epoch && w[0].start_offset <= w[1].start_offset));
        assert_eq!(LeaderEpochs::parse(&epochs.encode()).as_ref(), Ok(&epochs));
        for asked in [0, 1, i32::MAX] {
            if let Some((epoch, _)) = epochs.end_offset_for(asked, u64::MAX) {
                assert!(epoch <= asked);
            }
        }
    }
});
