//! Server-Sent Events streams that resume by themselves: a topic's events, a task's
//! events. After a dropped connection, a silent one or a node restart, the stream connects
//! again with the id of the last event it yielded as `Last-Event-ID`, so that the node
//! sends every event after it: none missed, none twice.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::header::ACCEPT;
use serde::de::DeserializeOwned;

use crate::sse::{SseEvent, SseParser};
use crate::{Client, Error, Event, TaskEvent};

/// A stream of events that reconnects and resumes by itself.
///
/// Items are in order, each once. Dropped connections, silent ones and node restarts are
/// not items: the stream reconnects (waiting 100 ms, doubled up to 2 s, between attempts)
/// and resumes. An `Err` item reports a failure without ending the stream (an `error`
/// event the node sent when storage failed under it, an event that does not decode),
/// except when the stream cannot go on (the topic or task no longer exists, the token is
/// refused, the position is no longer kept): that error is its last item. Dropping it
/// closes the connection.
pub type Subscription<T> = Pin<Box<dyn Stream<Item = Result<T, Error>> + Send>>;

/// Where a topic subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At the oldest event the topic keeps.
    Beginning,
    /// At the event with this id (inclusive).
    At(u64),
    /// Just after the event with this id (what a subscription resumed by hand names: the
    /// last id it saw).
    After(u64),
    /// At the next event published once the subscription is open. The position is read
    /// from the topic (`GET /v1/topics/{t}`); for the node's own topics, which that
    /// refuses (`_registry`, `_failed-<q>`), the node picks it when the stream opens, so
    /// that a reconnection before the first event may miss events published meanwhile.
    Now,
}

/// How long a stream may stay silent before it is taken for dead: the node sends a
/// comment every 15 s.
const IDLE: Duration = Duration::from_secs(45);
/// The first wait before reconnecting, doubled at each failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What a followed stream yields: an event with an increasing id.
pub(crate) trait Item: DeserializeOwned + Send + 'static {
    fn id(&self) -> u64;
}

impl Item for Event {
    fn id(&self) -> u64 {
        self.id
    }
}

impl Item for TaskEvent {
    fn id(&self) -> u64 {
        self.id
    }
}

/// What is followed.
#[derive(Debug)]
pub(crate) enum Source {
    /// Topic `name`, its first position as asked for until it is resolved.
    Topic { name: String, start: Start },
    /// The events of task `id`; the stream ends with the task.
    Task { id: String },
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

struct Follow<T> {
    client: Client,
    source: Source,
    /// The id of the last event yielded: where a connection resumes.
    last: Option<u64>,
    /// Where the first connection starts, once resolved (when `last` is none).
    from: Option<u64>,
    resolved: bool,
    body: Option<Body>,
    parser: SseParser,
    pending: VecDeque<Result<T, Error>>,
    backoff: Duration,
    done: bool,
}

/// A stream of `source`'s events after `last` (all of them when none), its first
/// connection open.
pub(crate) async fn follow<T: Item>(
    client: Client,
    source: Source,
    last: Option<u64>,
) -> Result<Subscription<T>, Error> {
    let (from, resolved) = match &source {
        Source::Topic {
            start: Start::At(n),
            ..
        } => (Some(*n), true),
        Source::Topic {
            start: Start::Beginning | Start::Now,
            ..
        } => (None, false),
        _ => (None, true),
    };
    let mut follow = Follow::<T> {
        client,
        source,
        last,
        from,
        resolved,
        body: None,
        parser: SseParser::new(),
        pending: VecDeque::new(),
        backoff: FIRST_BACKOFF,
        done: false,
    };
    // A node that takes the connection but does not answer is tried again by the stream.
    if let Ok(opened) = tokio::time::timeout(IDLE, follow.connect()).await {
        follow.body = Some(opened?);
    }
    Ok(Box::pin(futures_util::stream::unfold(
        follow,
        |mut f| async move {
            let item = f.next().await?;
            Some((item, f))
        },
    )))
}

impl<T: Item> Follow<T> {
    async fn next(&mut self) -> Option<Result<T, Error>> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.done {
                return None;
            }
            let Some(body) = self.body.as_mut() else {
                match tokio::time::timeout(IDLE, self.connect()).await {
                    Ok(Ok(body)) => self.body = Some(body),
                    Ok(Err(e)) if !e.is_retryable() => {
                        self.done = true;
                        return Some(Err(e));
                    }
                    Ok(Err(e)) => self.pause(e.retry_after()).await,
                    Err(_) => self.pause(None).await,
                }
                continue;
            };
            match tokio::time::timeout(IDLE, body.next()).await {
                Ok(Some(Ok(chunk))) => {
                    for event in self.parser.push(&chunk) {
                        self.accept(event);
                    }
                }
                // Cut, failed or silent: connect again.
                Ok(Some(Err(_))) | Err(_) => {
                    self.body = None;
                    self.pause(None).await;
                }
                // Ended by the node: it is stopping, or (a task's stream) the task is over.
                Ok(None) => {
                    self.body = None;
                    match self.finished().await {
                        Ok(true) => self.done = true,
                        Ok(false) => self.pause(None).await,
                        Err(e) if e.is_retryable() => self.pause(e.retry_after()).await,
                        Err(e) => {
                            self.done = true;
                            return Some(Err(e));
                        }
                    }
                }
            }
        }
    }

    /// Opens the stream where it should resume.
    async fn connect(&mut self) -> Result<Body, Error> {
        let mut request = match &self.source {
            Source::Topic { name, start } => {
                if !self.resolved {
                    let topic = self.client.topic(name);
                    self.from = match start {
                        Start::Beginning => {
                            let page = topic.read(None, 1, Duration::ZERO).await?;
                            Some(page.events.first().map_or(page.next, |e| e.id))
                        }
                        _ => match topic.describe().await {
                            Ok(info) => Some(info.next),
                            Err(e) if e.code() == Some("bad_name") => None,
                            Err(e) => return Err(e),
                        },
                    };
                    self.resolved = true;
                }
                let mut path = format!("/v1/topics/{}/events", crate::segment(name));
                if let (None, Some(from)) = (self.last, self.from) {
                    path.push_str(&format!("?from={from}"));
                }
                self.client.get(&path, false)
            }
            Source::Task { id } => self
                .client
                .get(&format!("/v1/tasks/{}/events", crate::segment(id)), false),
        };
        if let Some(last) = self.last {
            request = request.header("Last-Event-ID", last.to_string());
        }
        let response = request.header(ACCEPT, "text/event-stream").send().await?;
        if !response.status().is_success() {
            return Err(Error::from_response(response).await);
        }
        self.parser = SseParser::new();
        self.backoff = FIRST_BACKOFF;
        Ok(Box::pin(response.bytes_stream()))
    }

    /// Takes in one event of the stream.
    fn accept(&mut self, event: SseEvent) {
        if event.event.as_deref() == Some("error") && event.id.is_none() {
            self.pending
                .push_back(Err(Error::from_stream_event(&event.data)));
            return;
        }
        match serde_json::from_str::<T>(&event.data) {
            Ok(item) => {
                if self.last.is_some_and(|last| item.id() <= last) {
                    return;
                }
                self.last = Some(item.id());
                self.pending.push_back(Ok(item));
            }
            Err(e) => {
                // Not what the API sends: passed on, and skipped past by its id.
                if let Some(id) = event.id.and_then(|id| id.parse().ok()) {
                    self.last = Some(self.last.map_or(id, |last: u64| last.max(id)));
                }
                self.pending.push_back(Err(Error::Decode(e)));
            }
        }
    }

    /// After the node ended the stream: whether there is no more to follow.
    async fn finished(&mut self) -> Result<bool, Error> {
        match &self.source {
            Source::Topic { .. } => Ok(false),
            Source::Task { id } => {
                let task = self.client.task(id).await?;
                let seen = task
                    .events
                    .last()
                    .is_none_or(|&newest| self.last.is_some_and(|last| last >= newest));
                Ok(task.state.is_final() && seen)
            }
        }
    }

    async fn pause(&mut self, hint: Option<Duration>) {
        tokio::time::sleep(hint.unwrap_or(self.backoff)).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }
}
