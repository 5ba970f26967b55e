//! The leader-epoch cache of a replicated partition: where each leader epoch's records
//! start. Replicas use it to find where their logs diverge (Kafka's
//! OffsetForLeaderEpoch answers from it), and leaders stamp their epoch into every batch.
//!
//! Stored as `leader-epochs` in the partition directory: one line `epoch start_offset` per
//! epoch, epochs strictly increasing and starts non-decreasing, written atomically.

/// The first offset of one leader epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochStart {
    /// The leader epoch (the partition's Raft term).
    pub epoch: i32,
    /// The offset of its first record.
    pub start_offset: u64,
}

/// At most this many epochs are kept: older ones are dropped first. Epochs only change
/// with leaders, so a partition reaching this keeps its recent history, which is all
/// divergence checks need.
pub const MAX_EPOCHS: usize = 4096;

/// The epochs of a partition's stored records, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochs {
    entries: Vec<EpochStart>,
}

impl LeaderEpochs {
    /// Parses the stored form, checking its order.
    pub fn parse(text: &str) -> Result<LeaderEpochs, String> {
        let mut out = LeaderEpochs::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split_ascii_whitespace();
            let (Some(epoch), Some(start), None) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!("line {}: expected `epoch start_offset`", n + 1));
            };
            let epoch: i32 = epoch
                .parse()
                .map_err(|e| format!("line {}: epoch: {e}", n + 1))?;
            let start_offset: u64 = start
                .parse()
                .map_err(|e| format!("line {}: start offset: {e}", n + 1))?;
            if epoch < 0 {
                return Err(format!("line {}: negative epoch {epoch}", n + 1));
            }
            if let Some(last) = out.entries.last()
                && (epoch <= last.epoch || start_offset < last.start_offset)
            {
                return Err(format!(
                    "line {}: epoch {epoch} at {start_offset} does not follow epoch {} at {}",
                    n + 1,
                    last.epoch,
                    last.start_offset
                ));
            }
            if out.entries.len() >= MAX_EPOCHS {
                out.entries.remove(0);
            }
            out.entries.push(EpochStart {
                epoch,
                start_offset,
            });
        }
        Ok(out)
    }

    /// The stored form.
    pub fn encode(&self) -> String {
        self.entries
            .iter()
            .map(|e| format!("{} {}\n", e.epoch, e.start_offset))
            .collect()
    }

    /// Every epoch, oldest first.
    pub fn entries(&self) -> &[EpochStart] {
        &self.entries
    }

    /// The newest epoch with records, if any.
    pub fn latest(&self) -> Option<EpochStart> {
        self.entries.last().copied()
    }

    /// Records that `epoch` starts at `start` (the end of the log when its first batch is
    /// appended). Returns whether anything changed. An epoch older than the newest is an
    /// error (the caller answers `Fenced`); the newest again changes nothing. An epoch that
    /// held no records (a newer one starts where it started) is replaced.
    pub fn assign(&mut self, epoch: i32, start: u64) -> Result<bool, i32> {
        if let Some(last) = self.entries.last() {
            if epoch < last.epoch {
                return Err(last.epoch);
            }
            if epoch == last.epoch {
                return Ok(false);
            }
        }
        while self
            .entries
            .last()
            .is_some_and(|last| last.start_offset >= start)
        {
            self.entries.pop();
        }
        if self.entries.len() >= MAX_EPOCHS {
            self.entries.remove(0);
        }
        self.entries.push(EpochStart {
            epoch,
            start_offset: start,
        });
        Ok(true)
    }

    /// Forgets epochs that start at or after `end` (the log was truncated there). Returns
    /// whether anything changed.
    pub fn truncate_from(&mut self, end: u64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end);
        self.entries.len() != before
    }

    /// Forgets epochs wholly below `log_start` (retention removed their records); the one
    /// holding `log_start` now starts there. Returns whether anything changed.
    pub fn truncate_before(&mut self, log_start: u64) -> bool {
        let holding = self
            .entries
            .partition_point(|e| e.start_offset <= log_start)
            .saturating_sub(1);
        let mut changed = false;
        if holding > 0 {
            self.entries.drain(..holding);
            changed = true;
        }
        if let Some(first) = self.entries.first_mut()
            && first.start_offset < log_start
        {
            first.start_offset = log_start;
            changed = true;
        }
        changed
    }

    /// Kafka's OffsetForLeaderEpoch: the largest epoch at most `epoch` and the offset where
    /// it ends (where the next epoch starts, or `log_end` for the newest). `None` when
    /// `epoch` is newer than every stored epoch, or nothing is stored.
    pub fn end_offset_for(&self, epoch: i32, log_end: u64) -> Option<(i32, u64)> {
        let latest = self.latest()?;
        if epoch == latest.epoch {
            return Some((epoch, log_end));
        }
        let higher = self.entries.partition_point(|e| e.epoch <= epoch);
        let next = self.entries.get(higher)?;
        match higher.checked_sub(1) {
            Some(floor) => Some((self.entries[floor].epoch, next.start_offset)),
            // Older than every stored epoch: it ended where the oldest stored one starts.
            None => Some((epoch, next.start_offset)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn epochs(pairs: &[(i32, u64)]) -> LeaderEpochs {
        let mut e = LeaderEpochs::default();
        for &(epoch, start) in pairs {
            e.assign(epoch, start).unwrap();
        }
        e
    }

    #[test]
    fn assign_keeps_order_and_fences_older_epochs() {
        let mut e = epochs(&[(1, 0), (3, 10)]);
        assert_eq!(e.assign(3, 20), Ok(false));
        assert_eq!(e.assign(2, 20), Err(3));
        assert_eq!(e.assign(5, 10), Ok(true), "epoch 3 held nothing");
        assert_eq!(
            e.entries(),
            &[
                EpochStart {
                    epoch: 1,
                    start_offset: 0
                },
                EpochStart {
                    epoch: 5,
                    start_offset: 10
                }
            ]
        );
        assert_eq!(LeaderEpochs::parse(&e.encode()).unwrap(), e);
    }

    #[test]
    fn end_offsets_follow_kafka() {
        let e = epochs(&[(2, 5), (4, 10), (7, 30)]);
        assert_eq!(e.end_offset_for(7, 42), Some((7, 42)));
        assert_eq!(e.end_offset_for(4, 42), Some((4, 30)));
        assert_eq!(e.end_offset_for(5, 42), Some((4, 30)), "floor epoch");
        assert_eq!(e.end_offset_for(1, 42), Some((1, 5)), "older than all");
        assert_eq!(e.end_offset_for(8, 42), None, "newer than all");
        assert_eq!(LeaderEpochs::default().end_offset_for(0, 0), None);
    }

    #[test]
    fn truncation_from_either_end() {
        let mut e = epochs(&[(2, 5), (4, 10), (7, 30)]);
        assert!(e.truncate_from(30));
        assert_eq!(e.latest().unwrap().epoch, 4);
        assert!(e.truncate_before(12));
        assert_eq!(
            e.entries(),
            &[EpochStart {
                epoch: 4,
                start_offset: 12
            }]
        );
        assert!(!e.truncate_before(12));
    }

    #[test]
    fn parse_refuses_disorder_and_garbage() {
        assert!(LeaderEpochs::parse("1 0\n1 5\n").is_err());
        assert!(LeaderEpochs::parse("2 10\n3 5\n").is_err());
        assert!(LeaderEpochs::parse("-1 0\n").is_err());
        assert!(LeaderEpochs::parse("1\n").is_err());
        assert!(LeaderEpochs::parse("1 2 3\n").is_err());
        assert!(LeaderEpochs::parse("x 2\n").is_err());
        assert_eq!(LeaderEpochs::parse("\n").unwrap(), LeaderEpochs::default());
    }
}
