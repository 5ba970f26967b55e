//! Fuzzes the admin API's paging: any cursor and limit give a page or a bad-request error,
//! never a panic; a page never holds more than its limit, keeps key order, and its
//! `next_cursor` resumes after its last item.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_frontend::admin::PageRequest;

fuzz_target!(|data: &[u8]| {
    let Some((&limit, rest)) = data.split_first() else {
        return;
    };
    let cursor = String::from_utf8_lossy(rest).into_owned();
    let keys: Vec<(String, usize)> = ["", "a", "a/b", "b", "\u{fffd}", "zz"]
        .iter()
        .enumerate()
        .map(|(i, k)| (k.to_string(), i))
        .collect();
    let request = PageRequest {
        cursor: Some(cursor),
        limit: Some(usize::from(limit)),
    };
    if let Ok(page) = request.page(keys.clone()) {
        assert!(page.items.len() <= usize::from(limit));
        assert!(page.items.windows(2).all(|w| keys[w[0]].0 < keys[w[1]].0));
        if let Some(next) = page.next_cursor {
            let after = PageRequest { cursor: Some(next), limit: Some(usize::from(limit)) }
                .after()
                .expect("a cursor the API issued decodes");
            assert_eq!(after.as_deref(), page.items.last().map(|&i| keys[i].0.as_str()));
        }
    }
});
