//! Topic rules (`[[mqtt.rules]]`): which publishes and subscriptions are refused, applied
//! to every way a message enters the broker (PUBLISH, `$delayed/` publishes, wills,
//! records bridged from streams) and to subscriptions by everything they could match.

use crate::config::TopicRule;
use crate::topic::{filters_overlap, matches};

/// The configured rules, first match wins.
#[derive(Debug, Clone, Default)]
pub struct TopicRules(Vec<TopicRule>);

impl TopicRules {
    /// Rules in the configured order.
    pub fn new(rules: Vec<TopicRule>) -> Self {
        TopicRules(rules)
    }

    /// The reason code refusing a publish to `topic`, if a rule does. A `$delayed/{s}/{t}`
    /// publish is judged by `t`, the topic it will be published to.
    pub fn publish_refused(&self, topic: &str) -> Option<u8> {
        let target = delayed_target(topic).unwrap_or(topic);
        self.0
            .iter()
            .find(|r| r.deny_publish && (matches(&r.filter, target) || matches(&r.filter, topic)))
            .map(|r| r.reason_code)
    }

    /// The reason code refusing a subscription to `filter` (without any `$share/` part), if
    /// a rule's filter and it could both match one topic: `#` does not slip past a rule on
    /// `secret/#`.
    pub fn subscribe_refused(&self, filter: &str) -> Option<u8> {
        self.0
            .iter()
            .find(|r| r.deny_subscribe && filters_overlap(&r.filter, filter))
            .map(|r| r.reason_code)
    }
}

/// The topic a `$delayed/{seconds}/{topic}` publish is for.
pub fn delayed_target(topic: &str) -> Option<&str> {
    let rest = topic.strip_prefix("$delayed/")?;
    rest.split_once('/').map(|(_, t)| t)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rules() -> TopicRules {
        TopicRules::new(vec![TopicRule {
            filter: "secret/#".into(),
            deny_subscribe: true,
            deny_publish: true,
            reason_code: 0x87,
        }])
    }

    #[test]
    fn wildcards_and_delayed_publishes_do_not_slip_past() {
        let r = rules();
        for f in ["#", "+/x", "secret/a", "secret/+"] {
            assert_eq!(r.subscribe_refused(f), Some(0x87), "{f}");
        }
        for f in ["public/#", "$SYS/#", "a", "a/+"] {
            assert_eq!(r.subscribe_refused(f), None, "{f}");
        }
        assert_eq!(r.publish_refused("secret/x"), Some(0x87));
        assert_eq!(r.publish_refused("$delayed/5/secret/x"), Some(0x87));
        assert_eq!(r.publish_refused("$delayed/5/public/x"), None);
        assert_eq!(r.publish_refused("public/x"), None);
    }
}
