//! The position store suite.

use crate::seams::catalog::{Catalog, StreamSpec, ensure_stream};
use crate::seams::error::StoreError;
use crate::seams::positions::{Position, PositionStore};

/// Runs every check against a position store whose partitions `catalog` names: it creates
/// streams `conformance-pos-a` (2 partitions) and `conformance-pos-b` (1), and uses
/// consumers `conformance-*`, which must have no positions yet.
pub async fn positions(store: &dyn PositionStore, catalog: &dyn Catalog) {
    ensure_stream(catalog, StreamSpec::new("conformance-pos-a", 2))
        .await
        .expect("stream a");
    ensure_stream(catalog, StreamSpec::new("conformance-pos-b", 1))
        .await
        .expect("stream b");
    let (a, b) = (
        "conformance-pos-a".to_string(),
        "conformance-pos-b".to_string(),
    );
    let g = "conformance-g";
    assert_eq!(store.get(g, &a, 0), None);
    assert!(store.scan(g).is_empty());

    let noted = Position {
        offset: 7,
        leader_epoch: 3,
        metadata: Some("note".into()),
    };
    store
        .commit(
            g,
            vec![
                (b.clone(), 0, Position::at(1)),
                (a.clone(), 1, noted.clone()),
                (a.clone(), 0, Position::at(5)),
            ],
        )
        .await
        .expect("commit");
    store
        .commit("conformance-h", vec![(a.clone(), 0, Position::at(9))])
        .await
        .expect("commit h");
    // Read back at once on the node that committed, in stream and partition order.
    assert_eq!(store.get(g, &a, 1), Some(noted.clone()));
    assert_eq!(
        store.scan(g),
        vec![
            (a.clone(), 0, Position::at(5)),
            (a.clone(), 1, noted),
            (b.clone(), 0, Position::at(1)),
        ]
    );
    assert_eq!(store.get("conformance-h", &a, 0), Some(Position::at(9)));
    let consumers = store.consumers();
    assert!(consumers.contains(&g.to_string()) && consumers.contains(&"conformance-h".into()));

    // All or nothing: a missing partition or stream refuses the whole commit.
    let refused = store
        .commit(
            g,
            vec![
                (a.clone(), 0, Position::at(6)),
                (a.clone(), 2, Position::at(1)),
            ],
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(StoreError::Invalid(_) | StoreError::UnknownStream(_))
        ),
        "{refused:?}"
    );
    let refused = store
        .commit(g, vec![("conformance-pos-none".into(), 0, Position::at(1))])
        .await;
    assert!(
        matches!(
            refused,
            Err(StoreError::Invalid(_) | StoreError::UnknownStream(_))
        ),
        "{refused:?}"
    );
    assert_eq!(store.get(g, &a, 0), Some(Position::at(5)));
    assert_eq!(store.get(g, &a, -1), None);
    let refused = store
        .commit("bad\0consumer", vec![(a.clone(), 0, Position::at(1))])
        .await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "{refused:?}"
    );

    // Overwrite, then forget one consumer without touching the other.
    store
        .commit(g, vec![(a.clone(), 0, Position::at(6))])
        .await
        .expect("overwrite");
    assert_eq!(store.get(g, &a, 0), Some(Position::at(6)));
    store.forget(g).await.expect("forget");
    assert!(store.scan(g).is_empty());
    assert!(!store.consumers().contains(&g.to_string()));
    assert_eq!(store.get("conformance-h", &a, 0), Some(Position::at(9)));
    store
        .forget("conformance-never")
        .await
        .expect("forgetting nothing");
    store.forget("conformance-h").await.expect("forget h");
}
