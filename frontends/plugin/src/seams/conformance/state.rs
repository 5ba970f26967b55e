//! The state store suite.

use crate::seams::state::{StateOp, StateStore};

/// Runs every check against a state store, in spaces named `conformance-*`; the store must
/// start without them.
pub fn state_store(store: &dyn StateStore) {
    let a = store.space("conformance-a").expect("space a");
    let b = store.space("conformance-b").expect("space b");
    assert_eq!(a.get(b"s/1").expect("get"), None);
    assert!(a.scan_prefix(b"").expect("scan").is_empty());

    a.write(&[
        StateOp::Put(b"s/2".to_vec(), b"two".to_vec()),
        StateOp::Put(b"s/1".to_vec(), b"one".to_vec()),
        StateOp::Put(b"t/1".to_vec(), b"other".to_vec()),
        StateOp::Put(b"s/3".to_vec(), b"three".to_vec()),
        StateOp::Delete(b"s/3".to_vec()),
    ])
    .expect("write");
    b.put(b"s/1", b"b-one").expect("put");
    assert_eq!(a.get(b"s/1").expect("get"), Some(b"one".to_vec()));
    assert_eq!(b.get(b"s/1").expect("get"), Some(b"b-one".to_vec()));
    assert_eq!(a.get(b"s/3").expect("get"), None, "ops apply in order");

    // Prefix scans are in byte order and stop at the prefix's end.
    assert_eq!(
        a.scan_prefix(b"s/").expect("scan"),
        vec![
            (b"s/1".to_vec(), b"one".to_vec()),
            (b"s/2".to_vec(), b"two".to_vec())
        ]
    );
    a.put(b"s/1", b"uno").expect("overwrite");
    assert_eq!(a.get(b"s/1").expect("get"), Some(b"uno".to_vec()));
    a.delete(b"s/2").expect("delete");
    a.delete(b"s/missing")
        .expect("deleting a missing key is fine");
    assert_eq!(a.scan_prefix(b"s/").expect("scan").len(), 1);

    // Binary keys, including 0x00 and 0xff bytes, sort as bytes.
    a.put(&[b'q', 0xff], b"hi").expect("put");
    a.put(&[b'q', 0x00, 1], b"lo").expect("put");
    let q = a.scan_prefix(b"q").expect("scan");
    assert_eq!(q[0].0, vec![b'q', 0x00, 1]);
    assert_eq!(q[1].0, vec![b'q', 0xff]);

    // The same name is the same space.
    let a2 = store.space("conformance-a").expect("space a again");
    assert_eq!(a2.get(b"t/1").expect("get"), Some(b"other".to_vec()));
    a2.delete_prefix(b"").expect("delete all");
    assert!(a.scan_prefix(b"").expect("scan").is_empty());
    assert_eq!(b.get(b"s/1").expect("get"), Some(b"b-one".to_vec()));
    b.write(&[]).expect("an empty batch is fine");
}
