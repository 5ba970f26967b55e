//! The sparse offset index and time index of one segment, in memory and on disk.
//!
//! Both get an entry for the first batch of a segment and then for the first batch after
//! every `index_interval_bytes`. Offset entries are `(relative offset, byte position)` of a
//! batch start; time entries are `(largest timestamp up to and including that batch, its
//! relative offset)`. On disk: 8-byte and 12-byte big-endian entries.

/// One offset-index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    /// Batch base offset minus the segment base offset.
    pub rel_offset: u32,
    /// Byte position of the batch in the segment file.
    pub position: u32,
}

/// One time-index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    /// Largest record timestamp of every batch up to and including the indexed one.
    pub timestamp: i64,
    /// Relative base offset of the indexed batch.
    pub rel_offset: u32,
}

/// Both indexes of a segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentIndex {
    offsets: Vec<OffsetEntry>,
    times: Vec<TimeEntry>,
    bytes_since_entry: u64,
    max_timestamp: Option<i64>,
}

const OFFSET_ENTRY: usize = 8;
const TIME_ENTRY: usize = 12;

impl SegmentIndex {
    /// Notes a batch appended at `position`; adds entries when the interval has passed.
    pub fn on_append(
        &mut self,
        rel_offset: u32,
        position: u32,
        len: u64,
        max_ts: i64,
        interval: u32,
    ) {
        let max_so_far = self.max_timestamp.map_or(max_ts, |m| m.max(max_ts));
        self.max_timestamp = Some(max_so_far);
        if self.offsets.is_empty() || self.bytes_since_entry >= u64::from(interval) {
            self.offsets.push(OffsetEntry {
                rel_offset,
                position,
            });
            self.times.push(TimeEntry {
                timestamp: max_so_far,
                rel_offset,
            });
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += len;
    }

    /// Largest record timestamp seen.
    pub fn max_timestamp(&self) -> Option<i64> {
        self.max_timestamp
    }

    /// Position to start scanning for the batch holding `rel_offset`.
    pub fn position_for(&self, rel_offset: u32) -> u32 {
        let i = self.offsets.partition_point(|e| e.rel_offset <= rel_offset);
        i.checked_sub(1).map_or(0, |i| self.offsets[i].position)
    }

    /// Relative offset to start scanning for the first record at or after `timestamp`:
    /// every batch before the returned one has only smaller timestamps.
    pub fn rel_offset_for_time(&self, timestamp: i64) -> u32 {
        let i = self.times.partition_point(|e| e.timestamp < timestamp);
        i.checked_sub(1).map_or(0, |i| self.times[i].rel_offset)
    }

    /// The last offset-index entry.
    pub fn last_entry(&self) -> Option<OffsetEntry> {
        self.offsets.last().copied()
    }

    /// Number of offset entries.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// True when no batch has been indexed.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Encodes the offset index file.
    pub fn encode_offsets(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.offsets.len() * OFFSET_ENTRY);
        for e in &self.offsets {
            out.extend_from_slice(&e.rel_offset.to_be_bytes());
            out.extend_from_slice(&e.position.to_be_bytes());
        }
        out
    }

    /// Encodes the time index file.
    pub fn encode_times(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.times.len() * TIME_ENTRY);
        for e in &self.times {
            out.extend_from_slice(&e.timestamp.to_be_bytes());
            out.extend_from_slice(&e.rel_offset.to_be_bytes());
        }
        out
    }

    /// Decodes both files, checking their structure against a segment of `segment_len`
    /// bytes. The caller still verifies that entries point at real batches, and finishes
    /// the state with [`SegmentIndex::resume`].
    pub fn decode(offsets: &[u8], times: &[u8], segment_len: u64) -> Result<SegmentIndex, String> {
        if !offsets.len().is_multiple_of(OFFSET_ENTRY) || !times.len().is_multiple_of(TIME_ENTRY) {
            return Err("index file length is not a whole number of entries".into());
        }
        let offsets: Vec<OffsetEntry> = offsets
            .chunks_exact(OFFSET_ENTRY)
            .map(|c| OffsetEntry {
                rel_offset: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                position: u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        let times: Vec<TimeEntry> = times
            .chunks_exact(TIME_ENTRY)
            .map(|c| TimeEntry {
                timestamp: i64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
                rel_offset: u32::from_be_bytes([c[8], c[9], c[10], c[11]]),
            })
            .collect();
        check_entries(&offsets, &times, segment_len)?;
        Ok(SegmentIndex {
            max_timestamp: times.last().map(|t| t.timestamp),
            offsets,
            times,
            bytes_since_entry: 0,
        })
    }

    /// Continues after a decoded index: `trailing` are the batches after the last entry
    /// (from a header scan) as `(len, max_timestamp)`.
    pub fn resume(&mut self, trailing: impl IntoIterator<Item = (u64, i64)>) {
        for (i, (len, ts)) in trailing.into_iter().enumerate() {
            self.max_timestamp = Some(self.max_timestamp.map_or(ts, |m| m.max(ts)));
            if i > 0 {
                self.bytes_since_entry += len;
            } else {
                self.bytes_since_entry = len;
            }
        }
    }
}

fn check_entries(
    offsets: &[OffsetEntry],
    times: &[TimeEntry],
    segment_len: u64,
) -> Result<(), String> {
    if offsets.len() != times.len() {
        return Err("offset and time indexes differ in length".into());
    }
    if offsets
        .first()
        .is_some_and(|e| e.position != 0 || e.rel_offset != 0)
    {
        return Err("first index entry does not point at the segment start".into());
    }
    for pair in offsets.windows(2) {
        if pair[1].rel_offset <= pair[0].rel_offset || pair[1].position <= pair[0].position {
            return Err(format!(
                "offset index entries out of order at {:?}",
                pair[1]
            ));
        }
    }
    if let Some(last) = offsets.last()
        && u64::from(last.position) >= segment_len
    {
        return Err(format!("index entry {last:?} points past the segment end"));
    }
    for (t, o) in times.iter().zip(offsets) {
        if t.rel_offset != o.rel_offset {
            return Err(format!(
                "time index entry {t:?} does not match offset entry {o:?}"
            ));
        }
    }
    if times.windows(2).any(|p| p[1].timestamp < p[0].timestamp) {
        return Err("time index timestamps decrease".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn built() -> SegmentIndex {
        let mut idx = SegmentIndex::default();
        // Ten 100-byte batches of 10 records, interval 250 bytes.
        for i in 0..10u32 {
            idx.on_append(i * 10, i * 100, 100, 1000 + i64::from(i) * 10, 250);
        }
        idx
    }

    #[test]
    fn entries_follow_the_interval_and_lookups_floor() {
        let idx = built();
        assert_eq!(idx.len(), 4); // batches 0, 3, 6, 9
        assert_eq!(idx.position_for(0), 0);
        assert_eq!(idx.position_for(29), 0);
        assert_eq!(idx.position_for(30), 300);
        assert_eq!(idx.position_for(95), 900);
        assert_eq!(idx.rel_offset_for_time(0), 0);
        assert_eq!(idx.rel_offset_for_time(1035), 30);
        assert_eq!(idx.max_timestamp(), Some(1090));
    }

    #[test]
    fn files_round_trip_and_damage_is_detected() {
        let idx = built();
        let (o, t) = (idx.encode_offsets(), idx.encode_times());
        let back = SegmentIndex::decode(&o, &t, 1000).unwrap();
        assert_eq!(back.position_for(65), idx.position_for(65));
        assert!(SegmentIndex::decode(&o[..o.len() - 1], &t, 1000).is_err());
        assert!(
            SegmentIndex::decode(&o, &t, 900).is_err(),
            "entry past the end"
        );
        let mut swapped = o.clone();
        swapped[8..16].copy_from_slice(&o[16..24]);
        assert!(SegmentIndex::decode(&swapped, &t, 1000).is_err());
    }
}
