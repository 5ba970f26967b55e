//! `LogControl`: the node's log filter, changeable while it runs. A base `EnvFilter` (the
//! `[log] level` directives) plus overrides that raise the level for the events of one MQTT
//! or Kafka client id, or of one topic: an event passes an override when it, or a span it
//! is in, carries the override's `client_id` or `topic` field value.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use tracing::level_filters::LevelFilter;
use tracing::span;
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::Visit;
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::registry::LookupSpan;

use strata_frontend::log_select::LOG_SELECTORS;

const LEVELS: [LevelFilter; 6] = [
    LevelFilter::OFF,
    LevelFilter::ERROR,
    LevelFilter::WARN,
    LevelFilter::INFO,
    LevelFilter::DEBUG,
    LevelFilter::TRACE,
];

fn level_index(level: LevelFilter) -> usize {
    LEVELS.iter().position(|l| *l == level).unwrap_or(0)
}

/// Which events an override selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Events with this `client_id` field, or inside a span with it.
    ClientId(String),
    /// Events with this `topic` field, or inside a span with it.
    Topic(String),
}

/// One override as the admin API lists it.
#[derive(Debug, Clone)]
pub struct Override {
    /// Its id, for deletion.
    pub id: u64,
    /// The events it selects.
    pub selector: Selector,
    /// The most verbose level it lets through for them.
    pub level: LevelFilter,
    /// When it lapses, if it does.
    pub expires_at: Option<Instant>,
}

impl Override {
    fn live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }
}

/// Shared handle: the filter installed in the subscriber and the admin API hold clones.
#[derive(Clone)]
pub struct LogControl {
    inner: Arc<Inner>,
}

struct Inner {
    base: RwLock<(String, EnvFilter)>,
    overrides: RwLock<Vec<Override>>,
    /// The most verbose level of any override (`OFF` when there is none), read on every
    /// event before anything else; a [`level_index`].
    widest: AtomicUsize,
    next_id: AtomicU64,
    /// Held across each change and the recomputation after it, so that concurrent changes
    /// (an API call and the once-a-second prune) publish in the order they made them.
    changes: parking_lot::Mutex<()>,
}

impl fmt::Debug for LogControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogControl")
            .field("level", &self.level())
            .finish_non_exhaustive()
    }
}

impl LogControl {
    /// A control starting from `filter`, built from the directives `directives`.
    pub fn new(directives: String, filter: EnvFilter) -> Self {
        let control = LogControl {
            inner: Arc::new(Inner {
                base: RwLock::new((directives, filter)),
                overrides: RwLock::new(Vec::new()),
                widest: AtomicUsize::new(level_index(LevelFilter::OFF)),
                next_id: AtomicU64::new(1),
                changes: parking_lot::Mutex::new(()),
            }),
        };
        control.publish();
        control
    }

    /// The base directives in effect.
    pub fn level(&self) -> String {
        self.inner.base.read().0.clone()
    }

    /// Replaces the base directives (`info`, `warn,strata_journal=debug`, ...).
    pub fn set_level(&self, directives: &str) -> Result<(), String> {
        let filter = super::logging::parse_directives(directives).map_err(|e| e.to_string())?;
        let _change = self.inner.changes.lock();
        *self.inner.base.write() = (directives.trim().to_owned(), filter);
        tracing_core::callsite::rebuild_interest_cache();
        self.publish();
        Ok(())
    }

    /// The overrides still in effect, oldest first.
    pub fn overrides(&self) -> Vec<Override> {
        self.prune();
        self.inner.overrides.read().clone()
    }

    /// Adds an override; `ttl` bounds how long it lasts.
    pub fn add_override(
        &self,
        selector: Selector,
        level: LevelFilter,
        ttl: Option<Duration>,
    ) -> Override {
        let o = Override {
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
            selector,
            level,
            expires_at: ttl.map(|t| Instant::now() + t),
        };
        let _change = self.inner.changes.lock();
        self.inner.overrides.write().push(o.clone());
        self.refresh();
        o
    }

    /// Removes override `id`; false when there is none.
    pub fn remove_override(&self, id: u64) -> bool {
        let _change = self.inner.changes.lock();
        let removed = {
            let mut all = self.inner.overrides.write();
            let before = all.len();
            all.retain(|o| o.id != id);
            all.len() != before
        };
        self.refresh();
        removed
    }

    /// The filter to install on the log layer.
    pub fn filter(&self) -> ControlFilter {
        ControlFilter {
            inner: self.inner.clone(),
        }
    }

    /// Drops the overrides whose time is up; the node calls it every second.
    pub fn prune(&self) {
        let now = Instant::now();
        let expired = self.inner.overrides.read().iter().any(|o| !o.live(now));
        if expired {
            let _change = self.inner.changes.lock();
            self.inner.overrides.write().retain(|o| o.live(now));
            self.refresh();
        }
    }

    /// Recomputes the widest override level and makes tracing ask every call site again.
    fn refresh(&self) {
        let widest = self
            .inner
            .overrides
            .read()
            .iter()
            .map(|o| o.level)
            .max()
            .unwrap_or(LevelFilter::OFF);
        self.inner
            .widest
            .store(level_index(widest), Ordering::Release);
        tracing_core::callsite::rebuild_interest_cache();
        self.publish();
    }

    /// Tells the frontends' hot paths which clients and topics want per-message events.
    fn publish(&self) {
        let (mut clients, mut topics) = (BTreeSet::new(), BTreeSet::new());
        for o in self.inner.overrides.read().iter() {
            if o.level >= LevelFilter::DEBUG {
                match &o.selector {
                    Selector::ClientId(c) => clients.insert(c.clone()),
                    Selector::Topic(t) => topics.insert(t.clone()),
                };
            }
        }
        let base = self.inner.base.read().1.max_level_hint();
        let base_debug = base.is_none_or(|l| l >= LevelFilter::DEBUG);
        LOG_SELECTORS.set(clients, topics, base_debug);
    }
}

/// The `Filter` half of [`LogControl`].
pub struct ControlFilter {
    inner: Arc<Inner>,
}

/// The `client_id` and `topic` values a span carries, kept in its extensions.
#[derive(Debug, Default, Clone)]
struct Keys {
    client_id: Option<String>,
    topic: Option<String>,
}

impl Visit for Keys {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "client_id" => self.client_id = Some(value.to_owned()),
            "topic" => self.topic = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        if matches!(field.name(), "client_id" | "topic") {
            let text = format!("{value:?}");
            self.record_str(field, &text);
        }
    }
}

impl Keys {
    fn selected_by(&self, s: &Selector) -> bool {
        match s {
            Selector::ClientId(id) => self.client_id.as_deref() == Some(id),
            Selector::Topic(t) => self.topic.as_deref() == Some(t),
        }
    }

    fn has_any(&self) -> bool {
        self.client_id.is_some() || self.topic.is_some()
    }
}

impl ControlFilter {
    fn widest(&self) -> LevelFilter {
        LEVELS[self.inner.widest.load(Ordering::Acquire)]
    }

    /// Whether some override selecting `keys` lets `level` through. (Lapsed overrides are
    /// removed by [`LogControl::prune`] within a second; the clock is not read per event.)
    fn overridden(&self, keys: &Keys, level: &tracing::Level) -> bool {
        self.inner
            .overrides
            .read()
            .iter()
            .any(|o| *level <= o.level && keys.selected_by(&o.selector))
    }
}

impl<S> Filter<S> for ControlFilter
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        // Spans within an override's level are always created, so that their fields are
        // there for the events inside them.
        self.inner.base.read().1.enabled(meta, cx.clone()) || *meta.level() <= self.widest()
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        let base = Filter::<S>::callsite_enabled(&self.inner.base.read().1, meta);
        if *meta.level() <= self.widest() && !base.is_always() {
            Interest::sometimes()
        } else {
            base
        }
    }

    fn event_enabled(&self, event: &Event<'_>, cx: &Context<'_, S>) -> bool {
        if self
            .inner
            .base
            .read()
            .1
            .enabled(event.metadata(), cx.clone())
        {
            return true;
        }
        let level = event.metadata().level();
        if *level > self.widest() {
            return false;
        }
        let mut keys = Keys::default();
        event.record(&mut keys);
        if keys.has_any() && self.overridden(&keys, level) {
            return true;
        }
        let Some(scope) = cx.event_scope(event) else {
            return false;
        };
        for span in scope {
            if let Some(k) = span.extensions().get::<Keys>()
                && self.overridden(k, level)
            {
                return true;
            }
        }
        false
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        let base = Filter::<S>::max_level_hint(&self.inner.base.read().1);
        base.map(|b| b.max(self.widest()))
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        Filter::on_new_span(&self.inner.base.read().1, attrs, id, ctx.clone());
        let mut keys = Keys::default();
        attrs.record(&mut keys);
        if keys.has_any()
            && let Some(span) = ctx.span(id)
        {
            span.extensions_mut().insert(keys);
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        Filter::on_record(&self.inner.base.read().1, id, values, ctx.clone());
        let mut update = Keys::default();
        values.record(&mut update);
        if update.has_any()
            && let Some(span) = ctx.span(id)
        {
            let mut ext = span.extensions_mut();
            match ext.get_mut::<Keys>() {
                Some(k) => {
                    if update.client_id.is_some() {
                        k.client_id = update.client_id;
                    }
                    if update.topic.is_some() {
                        k.topic = update.topic;
                    }
                }
                None => ext.insert(update),
            }
        }
    }

    fn on_enter(&self, id: &span::Id, ctx: Context<'_, S>) {
        Filter::on_enter(&self.inner.base.read().1, id, ctx);
    }

    fn on_exit(&self, id: &span::Id, ctx: Context<'_, S>) {
        Filter::on_exit(&self.inner.base.read().1, id, ctx);
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        Filter::on_close(&self.inner.base.read().1, id, ctx);
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::Mutex;

    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Collects what the fmt layer writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().expect("not poisoned")).into_owned()
        }
    }

    fn with_control(f: impl FnOnce(&LogControl)) -> String {
        let out = Captured::default();
        let control = LogControl::new("info".into(), EnvFilter::new("info"));
        let writer = out.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_filter(control.filter());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || f(&control));
        out.text()
    }

    #[test]
    fn client_override_lets_that_clients_debug_events_through() {
        let text = with_control(|control| {
            let a = tracing::info_span!("mqtt", client_id = "alice");
            let b = tracing::info_span!("mqtt", client_id = "bob");
            a.in_scope(|| tracing::debug!("before-override"));
            let o =
                control.add_override(Selector::ClientId("alice".into()), LevelFilter::DEBUG, None);
            a.in_scope(|| tracing::debug!("alice-debug"));
            a.in_scope(|| tracing::trace!("alice-trace"));
            b.in_scope(|| tracing::debug!("bob-debug"));
            tracing::debug!(client_id = "alice", "alice-field");
            assert!(control.remove_override(o.id));
            a.in_scope(|| tracing::debug!("after-removal"));
            tracing::info!("plain-info");
        });
        assert!(text.contains("alice-debug"), "{text}");
        assert!(text.contains("alice-field"), "{text}");
        assert!(text.contains("plain-info"), "{text}");
        for absent in [
            "before-override",
            "alice-trace",
            "bob-debug",
            "after-removal",
        ] {
            assert!(!text.contains(absent), "{absent} in {text}");
        }
    }

    #[test]
    fn topic_override_and_level_change() {
        let text = with_control(|control| {
            control.add_override(Selector::Topic("a/b".into()), LevelFilter::TRACE, None);
            tracing::trace!(topic = "a/b", "topic-trace");
            tracing::trace!(topic = "a/c", "other-topic");
            control.set_level("warn").expect("valid");
            tracing::info!("info-after-warn");
            control.set_level("debug").expect("valid");
            tracing::debug!("debug-after-debug");
            assert!(control.set_level("inof").is_err());
        });
        assert!(text.contains("topic-trace"), "{text}");
        assert!(text.contains("debug-after-debug"), "{text}");
        assert!(!text.contains("other-topic"), "{text}");
        assert!(!text.contains("info-after-warn"), "{text}");
    }

    #[test]
    fn expired_overrides_lapse() {
        let text = with_control(|control| {
            control.add_override(
                Selector::ClientId("c".into()),
                LevelFilter::DEBUG,
                Some(Duration::ZERO),
            );
            assert!(
                control.overrides().is_empty(),
                "listing prunes lapsed overrides"
            );
            tracing::debug!(client_id = "c", "expired-debug");
        });
        assert!(!text.contains("expired-debug"), "{text}");
    }
}
