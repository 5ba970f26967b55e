//! A work queue's delivery state over its log: which messages are out on a lease, which
//! wait to be delivered again (and from when), which are done (acknowledged, rejected or
//! dead-lettered). State in, operations out, as `session.rs` in the MQTT frontend: the
//! caller supplies the time and the log's end, reads the messages the answers name, and
//! stores [`Queue::mark`] after the changes it must keep.
//!
//! A queue has [`LEVELS`] priority levels, each its own partition of the queue's stream
//! (level 0 is the most urgent): a fetch takes from the most urgent level that has
//! something to deliver, in offset order within a level (FIFO), messages to deliver again
//! before new ones.
//!
//! What survives a restart is the mark of each level: the offset below which everything
//! is done and the done offsets above it. Leases and delivery counts do not: after a
//! restart every message not done is delivered again (at least once, never lost).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

/// Priority levels of a queue, most urgent first.
pub const LEVELS: usize = 3;

/// Most messages one fetch hands out.
pub const MAX_FETCH: usize = 1000;

/// A message of a queue: its priority level and its offset in that level's partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot {
    /// Priority level, `0..LEVELS`.
    pub level: u8,
    /// Offset in the level's partition.
    pub offset: u64,
}

/// What a level keeps across restarts: every offset below `floor` is done, and so are
/// those in the `done` ranges (inclusive) above it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// Every offset below is done.
    pub floor: u64,
    /// Done offsets above the floor, as inclusive ranges in order.
    pub done: Vec<(u64, u64)>,
}

/// A message handed out on a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The message.
    pub slot: Slot,
    /// The lease's token: only its holder can settle the message.
    pub lease: String,
    /// How many times the message has been handed out, this one included (since the
    /// last restart).
    pub attempt: u32,
    /// When the lease lapses, in milliseconds since the epoch.
    pub until_ms: i64,
}

/// Why a lease cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseError {
    /// No such lease: never given, settled already, or lapsed (the message went back to
    /// the queue, maybe to another consumer).
    Unknown,
}

/// What lapsed leases came to ([`Queue::expire`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Expired {
    /// Messages that go back to the queue.
    pub redelivered: Vec<Slot>,
    /// Messages handed out `max_deliveries` times without being settled: done here, for
    /// the caller to dead-letter.
    pub dead: Vec<Slot>,
}

/// One priority level's state.
#[derive(Debug, Default, Clone)]
struct Level {
    /// Every offset below is done.
    floor: u64,
    /// Done offsets at or above `floor`.
    done: BTreeSet<u64>,
    /// The first offset never handed out.
    next: u64,
    /// Offsets to hand out again, with the time (ms) from which they may be.
    again: BTreeMap<u64, i64>,
    /// Times each offset at or above `floor` was handed out.
    attempts: HashMap<u64, u32>,
    /// Offsets out on a lease.
    out: BTreeSet<u64>,
}

impl Level {
    fn finish(&mut self, offset: u64) {
        self.again.remove(&offset);
        self.out.remove(&offset);
        self.attempts.remove(&offset);
        if offset >= self.floor {
            self.done.insert(offset);
        }
        while self.done.remove(&self.floor) {
            self.floor += 1;
        }
        self.next = self.next.max(self.floor);
    }

    /// The next offset to hand out at `now_ms` below `end`: one due again first.
    fn take(&mut self, end: u64, now_ms: i64) -> Option<u64> {
        if let Some((&offset, _)) = self.again.iter().find(|(_, from)| **from <= now_ms) {
            self.again.remove(&offset);
            return Some(offset);
        }
        while self.next < end {
            let offset = self.next;
            self.next += 1;
            if !self.done.contains(&offset) {
                return Some(offset);
            }
        }
        None
    }
}

/// A lease handed out.
#[derive(Debug, Clone)]
struct Lease {
    slot: Slot,
    until_ms: i64,
}

/// The delivery state of one queue.
#[derive(Debug)]
pub struct Queue {
    levels: [Level; LEVELS],
    leases: HashMap<String, Lease>,
    /// The lease of each message out, by message.
    lease_of: HashMap<Slot, String>,
    max_deliveries: u32,
    /// Messages handed out `max_deliveries` times, waiting to be dead-lettered: neither
    /// done nor handed out again until the caller stored them elsewhere.
    dying: Vec<Slot>,
}

/// A lease token: 128 random bits as hex, so one cannot be guessed from another.
fn token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl Queue {
    /// A queue whose levels start at the marks kept (`(floor, done above it)` per level,
    /// as [`Queue::mark`] gave them) and dead-letter a message after `max_deliveries`.
    pub fn restore(marks: [Mark; LEVELS], max_deliveries: u32) -> Self {
        let levels = marks.map(|m| {
            let floor = m.floor;
            let mut l = Level {
                floor,
                next: floor,
                ..Level::default()
            };
            // Ranges are the node's own writing; one past the floor's reach is ignored
            // rather than expanded without bound.
            l.done = m
                .done
                .into_iter()
                .filter(|&(a, b)| a <= b && b - a < 1 << 24)
                .flat_map(|(a, b)| a.max(floor)..=b)
                .collect();
            while l.done.remove(&l.floor) {
                l.floor += 1;
            }
            l.next = l.floor;
            l
        });
        Queue {
            levels,
            leases: HashMap::new(),
            lease_of: HashMap::new(),
            dying: Vec::new(),
            max_deliveries: max_deliveries.max(1),
        }
    }

    /// An empty queue.
    pub fn new(max_deliveries: u32) -> Self {
        Queue::restore(Default::default(), max_deliveries)
    }

    /// Hands out up to `max` messages (at most [`MAX_FETCH`]) on leases of `lease_ms`, the
    /// most urgent level first; `ends[l]` is one past the last offset of level `l`'s
    /// partition.
    pub fn fetch(
        &mut self,
        ends: [u64; LEVELS],
        max: usize,
        now_ms: i64,
        lease_ms: i64,
    ) -> Vec<Delivery> {
        let mut out = Vec::new();
        let max = max.min(MAX_FETCH);
        for (level, l) in self.levels.iter_mut().enumerate() {
            while out.len() < max {
                let Some(offset) = l.take(ends[level], now_ms) else {
                    break;
                };
                let slot = Slot {
                    level: level as u8,
                    offset,
                };
                let attempt = l.attempts.entry(offset).or_insert(0);
                *attempt += 1;
                let until_ms = now_ms.saturating_add(lease_ms);
                let lease = token();
                l.out.insert(offset);
                self.leases.insert(lease.clone(), Lease { slot, until_ms });
                self.lease_of.insert(slot, lease.clone());
                out.push(Delivery {
                    slot,
                    lease,
                    attempt: *attempt,
                    until_ms,
                });
            }
        }
        out
    }

    fn settle(&mut self, lease: &str) -> Result<Slot, LeaseError> {
        let held = self.leases.remove(lease).ok_or(LeaseError::Unknown)?;
        self.lease_of.remove(&held.slot);
        Ok(held.slot)
    }

    /// The message of `lease` is done (acknowledged, or rejected for good).
    pub fn ack(&mut self, lease: &str) -> Result<Slot, LeaseError> {
        let slot = self.settle(lease)?;
        self.levels[usize::from(slot.level)].finish(slot.offset);
        Ok(slot)
    }

    /// The message of `lease` goes back to the queue, to be handed out again from
    /// `delay_ms` after `now_ms`.
    pub fn nack(&mut self, lease: &str, now_ms: i64, delay_ms: i64) -> Result<Slot, LeaseError> {
        let slot = self.settle(lease)?;
        let l = &mut self.levels[usize::from(slot.level)];
        l.out.remove(&slot.offset);
        l.again
            .insert(slot.offset, now_ms.saturating_add(delay_ms.max(0)));
        Ok(slot)
    }

    /// Takes back the message of `lease` as if it had not been handed out (a delayed
    /// message fetched before its time): it is due again at `until_ms`, its delivery not
    /// counted.
    pub fn defer(&mut self, lease: &str, until_ms: i64) -> Result<Slot, LeaseError> {
        let slot = self.settle(lease)?;
        let l = &mut self.levels[usize::from(slot.level)];
        l.out.remove(&slot.offset);
        if let Some(n) = l.attempts.get_mut(&slot.offset) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                l.attempts.remove(&slot.offset);
            }
        }
        l.again.insert(slot.offset, until_ms);
        Ok(slot)
    }

    /// Extends `lease` to `lease_ms` from `now_ms`: its new end.
    pub fn extend(&mut self, lease: &str, now_ms: i64, lease_ms: i64) -> Result<i64, LeaseError> {
        let held = self.leases.get_mut(lease).ok_or(LeaseError::Unknown)?;
        held.until_ms = now_ms.saturating_add(lease_ms);
        Ok(held.until_ms)
    }

    /// Ends the leases that lapsed by `now_ms`: their messages go back to the queue, or,
    /// handed out `max_deliveries` times already, wait to be dead-lettered
    /// ([`Queue::take_dying`]); they are done only once the caller has stored them there.
    pub fn expire(&mut self, now_ms: i64) -> Expired {
        let lapsed: Vec<String> = self
            .leases
            .iter()
            .filter(|(_, l)| l.until_ms <= now_ms)
            .map(|(token, _)| token.clone())
            .collect();
        let mut expired = Expired::default();
        for token in lapsed {
            let Ok(slot) = self.settle(&token) else {
                continue;
            };
            let l = &mut self.levels[usize::from(slot.level)];
            let attempts = l.attempts.get(&slot.offset).copied().unwrap_or(0);
            if attempts >= self.max_deliveries {
                l.out.remove(&slot.offset);
                self.dying.push(slot);
                expired.dead.push(slot);
            } else {
                l.out.remove(&slot.offset);
                l.again.insert(slot.offset, now_ms);
                expired.redelivered.push(slot);
            }
        }
        expired.dead.sort();
        expired.redelivered.sort();
        expired
    }

    /// The messages waiting to be dead-lettered; each must come back through
    /// [`Queue::finish`] (stored in the dead-letter queue) or [`Queue::retry`].
    pub fn take_dying(&mut self) -> Vec<Slot> {
        std::mem::take(&mut self.dying)
    }

    /// `slot` is done (dead-lettered, say).
    pub fn finish(&mut self, slot: Slot) {
        self.levels[usize::from(slot.level)].finish(slot.offset);
    }

    /// `slot` waits to be dead-lettered again (the last try failed).
    pub fn retry(&mut self, slot: Slot) {
        self.dying.push(slot);
    }

    /// `slot` goes back to the queue at `now_ms`, its count of deliveries started again
    /// (a dead-letter queue's own messages are never dead-lettered).
    pub fn requeue(&mut self, slot: Slot, now_ms: i64) {
        let l = &mut self.levels[usize::from(slot.level)];
        l.attempts.remove(&slot.offset);
        l.again.insert(slot.offset, now_ms);
    }

    /// Up to `max` messages not done and not out on a lease, in level and offset order
    /// (`ends` as for [`Queue::fetch`]): what a listing shows.
    pub fn pending(&self, ends: [u64; LEVELS], max: usize) -> Vec<Slot> {
        let mut out = Vec::new();
        for (level, (l, end)) in self.levels.iter().zip(ends).enumerate() {
            for offset in l.floor..end {
                if out.len() >= max {
                    return out;
                }
                if !l.done.contains(&offset) && !l.out.contains(&offset) {
                    out.push(Slot {
                        level: level as u8,
                        offset,
                    });
                }
            }
        }
        out
    }

    /// When the next lease lapses or the next delayed message is due, if any.
    pub fn next_due_ms(&self) -> Option<i64> {
        let leases = self.leases.values().map(|l| l.until_ms);
        let again = self
            .levels
            .iter()
            .filter_map(|l| l.again.values().min().copied());
        leases.chain(again).min()
    }

    /// What a level keeps across restarts: its floor and the done offsets above it.
    pub fn mark(&self, level: usize) -> Mark {
        let l = &self.levels[level];
        let mut done: Vec<(u64, u64)> = Vec::new();
        for &o in &l.done {
            match done.last_mut() {
                Some((_, end)) if *end + 1 == o => *end = o,
                _ => done.push((o, o)),
            }
        }
        Mark {
            floor: l.floor,
            done,
        }
    }

    /// Messages from each level's oldest unfinished one to its end, over every level: what
    /// the queue's state spans (`ends` as for [`Queue::fetch`]).
    pub fn window(&self, ends: [u64; LEVELS]) -> u64 {
        self.levels
            .iter()
            .zip(ends)
            .map(|(l, end)| end.saturating_sub(l.floor))
            .sum()
    }

    /// Messages not done, over every level (`ends` as for [`Queue::fetch`]).
    pub fn depth(&self, ends: [u64; LEVELS]) -> u64 {
        self.levels
            .iter()
            .zip(ends)
            .map(|(l, end)| {
                let done_below_end = l.done.range(..end).count() as u64;
                end.saturating_sub(l.floor).saturating_sub(done_below_end)
            })
            .sum()
    }

    /// Messages out on a lease.
    pub fn in_flight(&self) -> usize {
        self.leases.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn offsets(d: &[Delivery]) -> Vec<(u8, u64)> {
        d.iter().map(|d| (d.slot.level, d.slot.offset)).collect()
    }

    #[test]
    fn the_most_urgent_level_goes_first_and_each_level_in_order() {
        let mut q = Queue::new(5);
        let got = q.fetch([2, 0, 3], 4, 0, 1000);
        assert_eq!(offsets(&got), vec![(0, 0), (0, 1), (2, 0), (2, 1)]);
        let got = q.fetch([2, 1, 3], 10, 0, 1000);
        assert_eq!(offsets(&got), vec![(1, 0), (2, 2)]);
        assert!(q.fetch([2, 1, 3], 10, 0, 1000).is_empty());
        assert_eq!(q.in_flight(), 6);
        assert_eq!(q.depth([2, 1, 3]), 6);
    }

    #[test]
    fn acked_messages_are_done_and_survive_a_restart_others_come_back() {
        let mut q = Queue::new(5);
        let got = q.fetch([4, 0, 0], 4, 0, 1000);
        q.ack(&got[0].lease).unwrap();
        q.ack(&got[2].lease).unwrap();
        assert_eq!(
            q.mark(0),
            Mark {
                floor: 1,
                done: vec![(2, 2)]
            }
        );
        assert_eq!(q.depth([4, 0, 0]), 2);
        // The same lease cannot settle twice.
        assert_eq!(q.ack(&got[0].lease), Err(LeaseError::Unknown));
        // After a restart, what was not acknowledged is delivered again; nothing else.
        let mut again = Queue::restore([q.mark(0), Mark::default(), Mark::default()], 5);
        let got = again.fetch([4, 0, 0], 10, 0, 1000);
        assert_eq!(offsets(&got), vec![(0, 1), (0, 3)]);
        again.ack(&got[0].lease).unwrap();
        assert_eq!(again.mark(0).floor, 3);
        assert!(again.mark(0).done.is_empty());
    }

    #[test]
    fn a_mark_keeps_done_offsets_as_ranges_and_restores_them() {
        let mut q = Queue::new(5);
        let got = q.fetch([9, 0, 0], 9, 0, 1000);
        for i in [1, 2, 3, 4, 5, 7] {
            q.ack(&got[i].lease).unwrap();
        }
        let mark = q.mark(0);
        assert_eq!(
            mark,
            Mark {
                floor: 0,
                done: vec![(1, 5), (7, 7)]
            }
        );
        assert_eq!(q.window([9, 0, 0]), 9);
        let mut again = Queue::restore([mark, Mark::default(), Mark::default()], 5);
        let back = again.fetch([9, 0, 0], 9, 0, 1000);
        assert_eq!(offsets(&back), vec![(0, 0), (0, 6), (0, 8)]);
    }

    #[test]
    fn a_lapsed_lease_redelivers_and_too_many_dead_letter() {
        let mut q = Queue::new(2);
        let first = q.fetch([1, 0, 0], 1, 0, 100);
        assert_eq!(first[0].attempt, 1);
        assert_eq!(q.next_due_ms(), Some(100));
        assert_eq!(q.expire(99), Expired::default());
        let e = q.expire(100);
        assert_eq!(
            e.redelivered,
            vec![Slot {
                level: 0,
                offset: 0
            }]
        );
        // The old lease is gone: its holder cannot ack what another may now hold.
        assert_eq!(q.ack(&first[0].lease), Err(LeaseError::Unknown));
        let second = q.fetch([1, 0, 0], 1, 100, 100);
        assert_eq!((second[0].slot.offset, second[0].attempt), (0, 2));
        let e = q.expire(200);
        assert_eq!(
            e.dead,
            vec![Slot {
                level: 0,
                offset: 0
            }]
        );
        // Not done until stored elsewhere, and not handed out meanwhile.
        assert_eq!(q.depth([1, 0, 0]), 1);
        assert!(q.fetch([1, 0, 0], 1, 300, 100).is_empty());
        assert_eq!(
            q.pending([1, 0, 0], 10),
            vec![Slot {
                level: 0,
                offset: 0
            }]
        );
        let dying = q.take_dying();
        assert_eq!(
            dying,
            vec![Slot {
                level: 0,
                offset: 0
            }]
        );
        q.finish(dying[0]);
        assert_eq!(q.depth([1, 0, 0]), 0);
        assert_eq!(
            q.mark(0),
            Mark {
                floor: 1,
                done: vec![]
            }
        );
    }

    #[test]
    fn a_nack_with_a_delay_holds_the_message_back_until_then() {
        let mut q = Queue::new(5);
        let got = q.fetch([2, 0, 0], 1, 0, 1000);
        q.nack(&got[0].lease, 0, 500).unwrap();
        // Not due yet: the next message goes first.
        let next = q.fetch([2, 0, 0], 5, 10, 1000);
        assert_eq!(offsets(&next), vec![(0, 1)]);
        assert!(q.fetch([2, 0, 0], 5, 499, 1000).is_empty());
        let due = q.fetch([2, 0, 0], 5, 500, 1000);
        assert_eq!(offsets(&due), vec![(0, 0)]);
        assert_eq!(due[0].attempt, 2);
    }

    #[test]
    fn a_deferred_message_waits_and_its_delivery_is_not_counted() {
        let mut q = Queue::new(1);
        let got = q.fetch([1, 0, 0], 1, 0, 100);
        q.defer(&got[0].lease, 500).unwrap();
        assert!(q.fetch([1, 0, 0], 1, 499, 100).is_empty());
        let due = q.fetch([1, 0, 0], 1, 500, 100);
        assert_eq!(due[0].attempt, 1);
        // Counted from now on: one lapse is max_deliveries (1) here.
        assert_eq!(q.expire(600).dead.len(), 1);
        // A dead-letter queue's message goes back instead, its count started again.
        let slot = q.take_dying()[0];
        q.requeue(slot, 700);
        assert_eq!(q.fetch([1, 0, 0], 1, 700, 100)[0].attempt, 1);
    }

    #[test]
    fn an_extended_lease_does_not_lapse() {
        let mut q = Queue::new(5);
        let got = q.fetch([1, 0, 0], 1, 0, 100);
        assert_eq!(q.extend(&got[0].lease, 90, 100), Ok(190));
        assert!(q.expire(150).redelivered.is_empty());
        // The lease still holds: it extends again, to 190.
        assert_eq!(q.extend(&got[0].lease, 150, 40), Ok(190));
        assert_eq!(q.extend("not-a-lease", 90, 100), Err(LeaseError::Unknown));
        assert_eq!(q.expire(190).redelivered.len(), 1);
    }

    #[test]
    fn lease_tokens_cannot_be_told_from_one_another() {
        let mut q = Queue::new(5);
        let got = q.fetch([50, 0, 0], 50, 0, 100);
        let tokens: std::collections::HashSet<_> = got.iter().map(|d| d.lease.clone()).collect();
        assert_eq!(tokens.len(), 50);
        assert!(got.iter().all(|d| d.lease.len() == 32));
    }

    proptest::proptest! {
        /// Whatever consumers do, every message is done exactly once or still to be
        /// delivered: none is lost, none is done twice.
        #[test]
        fn no_message_is_lost_or_done_twice(
            ops in proptest::collection::vec((0u8..5, 0usize..4, 0i64..300), 1..200),
        ) {
            let ends = [20, 10, 5];
            let mut q = Queue::new(3);
            let mut now = 0;
            let mut held: Vec<Delivery> = Vec::new();
            let mut done = BTreeSet::new();
            for (op, n, dt) in ops {
                now += dt;
                match op {
                    0 => held.extend(q.fetch(ends, n + 1, now, 100)),
                    1 if !held.is_empty() => {
                        let d = held.remove(n % held.len());
                        if q.ack(&d.lease).is_ok() {
                            proptest::prop_assert!(done.insert(d.slot), "{:?} done twice", d.slot);
                        }
                    }
                    2 if !held.is_empty() => {
                        let d = held.remove(n % held.len());
                        let _ = q.nack(&d.lease, now, dt);
                    }
                    3 => {
                        q.expire(now);
                        for slot in q.take_dying() {
                            proptest::prop_assert!(done.insert(slot), "{slot:?} dead twice");
                            q.finish(slot);
                        }
                    }
                    _ => {}
                }
            }
            let total: u64 = ends.iter().sum();
            proptest::prop_assert_eq!(q.depth(ends) + done.len() as u64, total);
        }
    }
}
