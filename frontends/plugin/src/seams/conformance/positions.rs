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

    // Adopting keeps what is there and adds what is not; a gone partition is skipped.
    store
        .adopt(
            g,
            vec![
                (a.clone(), 0, Position::at(1)),
                (a.clone(), 7, Position::at(1)),
                (b.clone(), 0, Position::at(4)),
            ],
        )
        .await
        .expect("adopt");
    assert_eq!(store.get(g, &a, 0), Some(Position::at(5)));
    assert_eq!(store.get(g, &b, 0), Some(Position::at(1)));
    assert!(store.has_consumer(g) && !store.has_consumer("conformance-never"));
    let counted = store.consumer_count();
    assert!(counted >= 2, "{counted}");
    // A partition named twice keeps the last position named.
    store
        .commit(
            g,
            vec![
                (b.clone(), 0, Position::at(2)),
                (b.clone(), 0, Position::at(3)),
            ],
        )
        .await
        .expect("commit twice");
    assert_eq!(store.get(g, &b, 0), Some(Position::at(3)));

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

    // A commit far larger than one meta command (64 notes of 4 KiB that JSON writes six
    // times as long) is stored whole all the same.
    let wide = "conformance-pos-wide".to_string();
    ensure_stream(catalog, StreamSpec::new(&wide, 64))
        .await
        .expect("stream wide");
    let note = "\u{1}".repeat(4096);
    let positions: Vec<_> = (0..64)
        .map(|p| {
            let position = Position {
                offset: i64::from(p),
                leader_epoch: -1,
                metadata: Some(note.clone()),
            };
            (wide.clone(), p, position)
        })
        .collect();
    store
        .commit("conformance-wide", positions.clone())
        .await
        .expect("wide commit");
    assert_eq!(store.scan("conformance-wide"), positions);
    store.forget("conformance-wide").await.expect("forget wide");
}
