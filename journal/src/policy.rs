//! Decisions without I/O: when to roll a segment and which segments retention removes.

use crate::config::{Retention, SegmentSettings};

/// What the decisions need to know about one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSummary {
    /// First offset.
    pub base_offset: u64,
    /// Offset after the last batch.
    pub end_offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// Largest record timestamp (`None` when empty).
    pub max_timestamp: Option<i64>,
    /// When the segment received its first batch (ms), `None` when empty.
    pub first_append_ms: Option<i64>,
}

/// Whether the active segment must be rolled before appending `incoming` bytes spanning
/// `incoming_offsets` offsets.
pub fn should_roll(
    active: &SegmentSummary,
    incoming: u64,
    incoming_offsets: u64,
    now_ms: i64,
    settings: &SegmentSettings,
) -> bool {
    if active.size == 0 {
        return false;
    }
    let too_big = active.size + incoming > settings.segment_bytes;
    let too_old = active
        .first_append_ms
        .is_some_and(|t| now_ms.saturating_sub(t) >= settings.segment_ms as i64);
    let span = active.end_offset + incoming_offsets - active.base_offset;
    too_big || too_old || span > u64::from(u32::MAX)
}

/// Whether maintenance should roll the active segment even without an append: it is old
/// enough, or everything in it is already past the age bound (so retention can remove it).
pub fn should_roll_idle(
    active: &SegmentSummary,
    now_ms: i64,
    settings: &SegmentSettings,
    retention: &Retention,
) -> bool {
    if active.size == 0 {
        return false;
    }
    should_roll(active, 0, 0, now_ms, settings) || expired(active, now_ms, retention)
}

fn expired(segment: &SegmentSummary, now_ms: i64, retention: &Retention) -> bool {
    match (retention.max_age_ms, segment.max_timestamp) {
        (Some(age), Some(ts)) => ts < now_ms.saturating_sub(age as i64),
        _ => false,
    }
}

/// How many of the oldest segments to remove. `segments` is oldest first and its last
/// entry is the active segment, which is never removed. A segment goes when it lies wholly
/// below `log_start`, when all its records are older than the age bound, or when the
/// partition would still hold at least `max_bytes` without it.
pub fn segments_to_remove(
    segments: &[SegmentSummary],
    log_start: u64,
    retention: &Retention,
    now_ms: i64,
) -> usize {
    let sealed = segments.len().saturating_sub(1);
    let mut total: u64 = segments.iter().map(|s| s.size).sum();
    let mut count = 0;
    for seg in &segments[..sealed] {
        let below_start = seg.end_offset <= log_start;
        let too_old = expired(seg, now_ms, retention);
        let over_size = retention
            .max_bytes
            .is_some_and(|max| total.saturating_sub(seg.size) >= max);
        if !(below_start || too_old || over_size) {
            break;
        }
        total -= seg.size;
        count += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(base: u64, end: u64, size: u64, ts: i64) -> SegmentSummary {
        SegmentSummary {
            base_offset: base,
            end_offset: end,
            size,
            max_timestamp: Some(ts),
            first_append_ms: Some(ts),
        }
    }

    fn settings() -> SegmentSettings {
        SegmentSettings {
            segment_bytes: 1000,
            segment_ms: 60_000,
            index_interval_bytes: 100,
        }
    }

    #[test]
    fn rolls_on_size_age_and_offset_span_but_never_when_empty() {
        let s = settings();
        let active = seg(0, 10, 900, 1_000);
        assert!(!should_roll(&active, 100, 1, 1_000, &s));
        assert!(should_roll(&active, 101, 1, 1_000, &s));
        assert!(should_roll(&active, 1, 1, 61_000, &s));
        assert!(should_roll(
            &seg(0, 10, 10, 0),
            1,
            u64::from(u32::MAX),
            0,
            &s
        ));
        let empty = SegmentSummary {
            size: 0,
            ..seg(5, 5, 0, 0)
        };
        assert!(!should_roll(&empty, 5000, 1, i64::MAX, &s));
    }

    #[test]
    fn idle_roll_when_everything_expired() {
        let r = Retention {
            max_bytes: None,
            max_age_ms: Some(10_000),
        };
        let active = seg(0, 10, 10, 1_000);
        assert!(!should_roll_idle(&active, 5_000, &settings(), &r));
        assert!(should_roll_idle(&active, 12_000, &settings(), &r));
    }

    #[test]
    fn size_retention_keeps_at_least_the_bound() {
        let segs = [
            seg(0, 10, 100, 0),
            seg(10, 20, 100, 0),
            seg(20, 30, 100, 0),
            seg(30, 35, 50, 0),
        ];
        let r = Retention {
            max_bytes: Some(200),
            max_age_ms: None,
        };
        // 350 bytes: dropping the first leaves 250 >= 200; dropping the second would leave 150.
        assert_eq!(segments_to_remove(&segs, 0, &r, 0), 1);
        let r = Retention {
            max_bytes: Some(10),
            max_age_ms: None,
        };
        assert_eq!(
            segments_to_remove(&segs, 0, &r, 0),
            3,
            "the active segment stays"
        );
    }

    #[test]
    fn age_retention_stops_at_the_first_young_segment() {
        let segs = [
            seg(0, 10, 1, 100),
            seg(10, 20, 1, 5_000),
            seg(20, 30, 1, 200),
            seg(30, 31, 1, 0),
        ];
        let r = Retention {
            max_bytes: None,
            max_age_ms: Some(1_000),
        };
        assert_eq!(segments_to_remove(&segs, 0, &r, 3_000), 1);
    }

    #[test]
    fn log_start_removes_segments_wholly_below_it() {
        let segs = [seg(0, 10, 1, 0), seg(10, 20, 1, 0), seg(20, 30, 1, 0)];
        let r = Retention::default();
        assert_eq!(segments_to_remove(&segs, 15, &r, 0), 1);
        assert_eq!(segments_to_remove(&segs, 20, &r, 0), 2);
        assert_eq!(segments_to_remove(&segs, 99, &r, 0), 2);
    }
}
