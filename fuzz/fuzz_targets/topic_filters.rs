//! Fuzzes the topic filter arithmetic the ACL and topic rules rely on: for any two filters
//! and a topic name, a covering filter matches every name the covered one does, two filters
//! matching one name overlap, overlap is symmetric, and nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_frontend::topic_filter::{filter_covers, filters_overlap, matches};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let (Some(a), Some(b), Some(t)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    if t.contains(['+', '#']) {
        return;
    }
    if filter_covers(a, b) && matches(b, t) && !b.contains("#/") && !a.contains("#/") {
        assert!(matches(a, t), "{a:?} covers {b:?} but not {t:?}");
    }
    if matches(a, t) && matches(b, t) {
        assert!(filters_overlap(a, b), "{a:?} and {b:?} both match {t:?}");
    }
    assert_eq!(filters_overlap(a, b), filters_overlap(b, a));
});
