//! The retained messages by topic, with their total size, so their bound
//! (`max_retained_messages`, `max_retained_bytes`) is checked without a scan.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::Arc;

use crate::message::Message;

/// Retained messages by topic and the bytes (topics and payloads) they hold.
#[derive(Debug, Default)]
pub struct RetainedMessages {
    by_topic: BTreeMap<String, Arc<Message>>,
    bytes: u64,
    /// `$SYS/` topics among them: the broker's own, a fixed set, outside the count bound.
    sys: usize,
}

/// Why a retained message was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetainRefused {
    /// `max_retained_messages` reached by other topics.
    Count,
    /// `max_retained_bytes` would be exceeded.
    Bytes,
}

fn size(m: &Message) -> u64 {
    (m.topic.len() + m.payload.len()) as u64
}

fn is_sys(topic: &str) -> bool {
    // Only the broker publishes `$SYS/` topics (clients cannot publish to `$` topics).
    topic.starts_with("$SYS/")
}

impl RetainedMessages {
    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Keeps `m` as the retained message of its topic, replacing the one before, unless
    /// that would pass `max_count` topics or `max_bytes` bytes. A replacement never counts
    /// as a new topic.
    pub fn insert_bounded(
        &mut self,
        m: Arc<Message>,
        max_count: usize,
        max_bytes: u64,
    ) -> Result<(), RetainRefused> {
        let old = self.by_topic.get(&m.topic).map(|o| size(o));
        if old.is_none() && self.by_topic.len() - self.sys >= max_count {
            return Err(RetainRefused::Count);
        }
        if self.bytes - old.unwrap_or(0) + size(&m) > max_bytes {
            return Err(RetainRefused::Bytes);
        }
        self.insert(m);
        Ok(())
    }

    /// Keeps `m` whatever the bounds (messages recovered from the store).
    pub fn insert(&mut self, m: Arc<Message>) {
        self.bytes += size(&m);
        let sys = is_sys(&m.topic);
        match self.by_topic.insert(m.topic.clone(), m) {
            Some(old) => self.bytes -= size(&old),
            None => self.sys += usize::from(sys),
        }
    }

    /// Forgets the retained message of `topic`.
    pub fn remove(&mut self, topic: &str) -> Option<Arc<Message>> {
        let old = self.by_topic.remove(topic)?;
        self.bytes -= size(&old);
        self.sys -= usize::from(is_sys(topic));
        Some(old)
    }
}

impl RetainedMessages {
    /// The retained messages `filter` may match: those under its literal prefix (the
    /// levels before its first wildcard), found by range in topic order, not by reading
    /// every retained message.
    pub fn candidates<'a>(
        &'a self,
        filter: &str,
    ) -> Box<dyn Iterator<Item = &'a Arc<Message>> + 'a> {
        let literal = filter
            .split('/')
            .take_while(|l| *l != "+" && *l != "#")
            .collect::<Vec<_>>()
            .join("/");
        if literal.len() == filter.len() {
            return Box::new(self.by_topic.get(filter).into_iter());
        }
        Box::new(
            self.by_topic
                .range(literal.clone()..)
                .take_while(move |(t, _)| t.starts_with(literal.as_str()))
                .map(|(_, m)| m),
        )
    }
}

impl Deref for RetainedMessages {
    type Target = BTreeMap<String, Arc<Message>>;

    fn deref(&self) -> &Self::Target {
        &self.by_topic
    }
}
