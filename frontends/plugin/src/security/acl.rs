//! Access control lists: rules by username, client id, address (CIDR) and topic filter
//! (with `%u` and `%c` for the client's own username and client id), allowing or denying
//! publish, subscribe or retain. The first rule that applies decides; when none does, the
//! default policy.
//!
//! A publish is judged by its topic. A subscription is judged by everything it could
//! receive: a deny rule applies when its filter and the subscription's can match a common
//! topic (so `#` does not slip past a deny on `secret/#`), an allow rule only when its
//! filter covers every topic the subscription's matches.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::topic_filter::{filter_covers, filters_overlap, matches};

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// The action is allowed.
    Allow,
    /// The action is refused.
    Deny,
}

/// What a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AclAction {
    /// Publishing to a topic (wills, delayed and bridged publishes included).
    Publish,
    /// Subscribing to a filter.
    Subscribe,
    /// Publishing with the retain flag (checked besides `publish`).
    Retain,
    /// Every action.
    All,
}

/// One rule. Unset conditions match everyone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AclRule {
    /// Allow or deny.
    pub permission: Permission,
    /// The action it is about.
    pub action: AclAction,
    /// Topic filter; `%u` stands for the client's username, `%c` for its client id.
    pub topic: String,
    /// Only for this username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Only for this client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Only for clients from this address or network (`10.0.0.0/8`, `::1/128`).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "ip_or_net")]
    #[schema(value_type = Option<IpText>)]
    pub ip: Option<IpNet>,
}

/// An address or a network, as text (`10.1.2.3` or `10.0.0.0/8`).
mod ip_or_net {
    use std::net::IpAddr;

    use ipnet::IpNet;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<IpNet>, s: S) -> Result<S::Ok, S::Error> {
        v.map(|n| n.to_string()).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpNet>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        text.parse::<IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
            .map(Some)
            .map_err(|_| {
                serde::de::Error::custom(format!("`{text}` is not an address or a network"))
            })
    }
}

/// An address or a network as the admin API's documents describe it (`10.1.2.3`,
/// `10.0.0.0/8`, `::1/128`).
#[derive(Debug, Clone, ToSchema)]
#[schema(value_type = String, pattern = "^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}(/(3[0-2]|[12]?[0-9]))?|(([0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,7}:|([0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,5}(:[0-9a-fA-F]{1,4}){1,2}|([0-9a-fA-F]{1,4}:){1,4}(:[0-9a-fA-F]{1,4}){1,3}|([0-9a-fA-F]{1,4}:){1,3}(:[0-9a-fA-F]{1,4}){1,4}|([0-9a-fA-F]{1,4}:){1,2}(:[0-9a-fA-F]{1,4}){1,5}|[0-9a-fA-F]{1,4}:(:[0-9a-fA-F]{1,4}){1,6}|:((:[0-9a-fA-F]{1,4}){1,7}|:))(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?)$")]
pub struct IpText(pub String);

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    /// Authenticated username, if any.
    pub username: Option<&'a str>,
    /// Client id.
    pub client_id: &'a str,
    /// Address, if the transport has one.
    pub ip: Option<IpAddr>,
}

/// What is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access<'a> {
    /// Publish to a topic name; `retain` when the retain flag is set.
    Publish {
        /// The topic.
        topic: &'a str,
        /// The retain flag.
        retain: bool,
    },
    /// Subscribe to a filter (without any `$share/` part).
    Subscribe(&'a str),
}

/// A `%u`/`%c` placeholder stands for a value only when the value cannot widen the filter
/// (no wildcard, no level separator): otherwise the rule does not apply.
fn substitute(topic: &str, who: &Who) -> Option<String> {
    let safe = |v: &str| !v.is_empty() && !v.contains(['+', '#', '/', '%']);
    let mut out = topic.to_string();
    if out.contains("%u") {
        let u = who.username.filter(|u| safe(u))?;
        out = out.replace("%u", u);
    }
    if out.contains("%c") {
        if !safe(who.client_id) {
            return None;
        }
        out = out.replace("%c", who.client_id);
    }
    Some(out)
}

impl AclRule {
    fn applies_to(&self, who: &Who) -> bool {
        self.username
            .as_deref()
            .is_none_or(|u| who.username == Some(u))
            && self.client_id.as_deref().is_none_or(|c| who.client_id == c)
            && self
                .ip
                .is_none_or(|net| who.ip.is_some_and(|ip| net.contains(&ip)))
    }

    /// The rule's decision for one action on one topic or filter, if it has one.
    fn decide(
        &self,
        who: &Who,
        action: AclAction,
        target: &str,
        subscribe: bool,
    ) -> Option<Permission> {
        if !(self.action == action || self.action == AclAction::All) || !self.applies_to(who) {
            return None;
        }
        let Some(filter) = substitute(&self.topic, who) else {
            // A deny rule whose placeholder has no safe value denies: refusing is the safe
            // reading. An allow rule then allows nothing.
            return (self.permission == Permission::Deny).then_some(Permission::Deny);
        };
        let hit = match (subscribe, self.permission) {
            (false, _) => matches(&filter, target),
            (true, Permission::Deny) => filters_overlap(&filter, target),
            (true, Permission::Allow) => filter_covers(&filter, target),
        };
        hit.then_some(self.permission)
    }
}

/// An ordered rule list and the default policy.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    /// Rules, first match wins.
    pub rules: Vec<AclRule>,
    /// The decision when no rule applies.
    pub default_allow: bool,
}

impl Acl {
    /// The first of `own` (a client's own rules, such as a token's) and then of the
    /// node's rules that applies decides; none does, the default.
    fn first(
        &self,
        own: &[AclRule],
        who: &Who,
        action: AclAction,
        target: &str,
        subscribe: bool,
    ) -> bool {
        own.iter()
            .chain(&self.rules)
            .find_map(|r| r.decide(who, action, target, subscribe))
            .map_or(self.default_allow, |p| p == Permission::Allow)
    }

    /// Whether `who` may do `access`.
    pub fn allows(&self, who: &Who, access: Access) -> bool {
        self.allows_with(&[], who, access)
    }

    /// Whether `who`, whose own rules are `own` (checked first), may do `access`.
    pub fn allows_with(&self, own: &[AclRule], who: &Who, access: Access) -> bool {
        match access {
            Access::Publish { topic, retain } => {
                self.first(own, who, AclAction::Publish, topic, false)
                    && (!retain || self.first(own, who, AclAction::Retain, topic, false))
            }
            Access::Subscribe(filter) => self.first(own, who, AclAction::Subscribe, filter, true),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rule(permission: Permission, action: AclAction, topic: &str) -> AclRule {
        AclRule {
            permission,
            action,
            topic: topic.into(),
            username: None,
            client_id: None,
            ip: None,
        }
    }

    fn who<'a>(username: Option<&'a str>, client_id: &'a str) -> Who<'a> {
        Who {
            username,
            client_id,
            ip: Some(IpAddr::from([10, 1, 2, 3])),
        }
    }

    #[test]
    fn first_match_wins_and_subscriptions_are_judged_by_what_they_could_match() {
        use AclAction::*;
        use Permission::*;
        let acl = Acl {
            rules: vec![
                rule(Allow, All, "users/%u/#"),
                rule(Deny, All, "secret/#"),
                rule(Allow, Subscribe, "sensors/+"),
                rule(Deny, Retain, "#"),
                rule(Allow, Publish, "#"),
            ],
            default_allow: false,
        };
        let alice = who(Some("alice"), "c1");
        assert!(acl.allows(&alice, Access::Subscribe("users/alice/#")));
        assert!(!acl.allows(&alice, Access::Subscribe("users/bob/#")));
        assert!(
            !acl.allows(&alice, Access::Subscribe("#")),
            "# meets the deny on secret/#"
        );
        assert!(!acl.allows(&alice, Access::Subscribe("+/x")));
        assert!(acl.allows(&alice, Access::Subscribe("sensors/1")));
        assert!(
            !acl.allows(&alice, Access::Subscribe("sensors/#")),
            "not covered"
        );
        assert!(acl.allows(
            &alice,
            Access::Publish {
                topic: "a/b",
                retain: false
            }
        ));
        assert!(!acl.allows(
            &alice,
            Access::Publish {
                topic: "a/b",
                retain: true
            }
        ));
        assert!(acl.allows(
            &alice,
            Access::Publish {
                topic: "users/alice/x",
                retain: true
            }
        ));
        assert!(!acl.allows(
            &alice,
            Access::Publish {
                topic: "secret/x",
                retain: false
            }
        ));
    }

    #[test]
    fn placeholders_never_widen_a_filter() {
        let acl = Acl {
            rules: vec![rule(Permission::Allow, AclAction::All, "users/%u/#")],
            default_allow: false,
        };
        for bad in ["#", "+", "a/b", ""] {
            let w = who(Some(bad), "c");
            assert!(!acl.allows(&w, Access::Subscribe("users/x/#")), "{bad}");
        }
        assert!(!acl.allows(&who(None, "c"), Access::Subscribe("users//#")));
    }

    #[test]
    fn conditions_on_username_client_and_network() {
        let mut r = rule(Permission::Allow, AclAction::All, "#");
        r.username = Some("alice".into());
        r.ip = Some("10.0.0.0/8".parse().unwrap());
        let acl = Acl {
            rules: vec![r],
            default_allow: false,
        };
        let sub = Access::Subscribe("a");
        assert!(acl.allows(&who(Some("alice"), "c"), sub));
        assert!(!acl.allows(&who(Some("bob"), "c"), sub));
        let mut far = who(Some("alice"), "c");
        far.ip = Some(IpAddr::from([192, 168, 0, 1]));
        assert!(!acl.allows(&far, sub));
    }
}
