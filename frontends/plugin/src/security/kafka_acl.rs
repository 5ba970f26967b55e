//! Kafka ACLs as Kafka's own authorizer keeps them: bindings of a resource pattern (topic,
//! group, cluster or transactional id; a literal name, `*`, or a prefix), a principal
//! (`User:alice`, `User:*`), a host (`*` or an address), an operation and allow or deny.
//! Deny wins over allow; `Describe` is implied by `Read`, `Write`, `Delete` and `Alter`,
//! `DescribeConfigs` by `AlterConfigs`, everything by `All`. A resource no binding names is
//! refused unless the node says otherwise (`allow_if_no_acl`).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

macro_rules! coded {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $code:expr),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// The value Kafka's protocol uses.
            pub fn code(self) -> i8 {
                match self {
                    $($name::$variant => $code),+
                }
            }

            /// From the protocol's value.
            pub fn from_code(code: i8) -> Option<Self> {
                match code {
                    $($code => Some($name::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

coded!(
    /// What a binding is about.
    ResourceType {
        /// A topic.
        Topic = 2,
        /// A consumer group.
        Group = 3,
        /// The cluster (`kafka-cluster`).
        Cluster = 4,
        /// A transactional id.
        TransactionalId = 5,
    }
);

coded!(
    /// How a binding's name matches resources.
    PatternType {
        /// The name itself (`*`: every resource of the type).
        Literal = 3,
        /// Every name that starts with it.
        Prefixed = 4,
    }
);

coded!(
    /// An operation on a resource.
    Operation {
        /// Every operation.
        All = 2,
        /// Fetch, commit offsets, join groups.
        Read = 3,
        /// Produce.
        Write = 4,
        /// Create topics.
        Create = 5,
        /// Delete topics, groups, records.
        Delete = 6,
        /// Add partitions, change ACLs (on the cluster).
        Alter = 7,
        /// Metadata, offsets, group descriptions, ACL listings (on the cluster).
        Describe = 8,
        /// Broker-to-broker requests.
        ClusterAction = 9,
        /// Read configurations.
        DescribeConfigs = 10,
        /// Change configurations.
        AlterConfigs = 11,
        /// Idempotent produce.
        IdempotentWrite = 12,
    }
);

coded!(
    /// Allow or deny.
    AclPermission {
        /// Refused (wins over any allow).
        Deny = 2,
        /// Allowed.
        Allow = 3,
    }
);

/// One Kafka ACL binding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct AclBinding {
    /// The resource type.
    pub resource_type: ResourceType,
    /// The resource name (`kafka-cluster` for the cluster; `*` for every resource).
    pub resource_name: String,
    /// Literal or prefixed.
    pub pattern_type: PatternType,
    /// `User:<name>` or `User:*`.
    pub principal: String,
    /// `*` or one address.
    pub host: String,
    /// The operation.
    pub operation: Operation,
    /// Allow or deny.
    pub permission: AclPermission,
}

fn normalize_host(host: &str) -> String {
    host.parse::<std::net::IpAddr>()
        .map_or_else(|_| host.to_string(), |ip| ip.to_canonical().to_string())
}

/// The name of the cluster resource.
pub const CLUSTER: &str = "kafka-cluster";

impl AclBinding {
    /// Checks a binding a client asks to create.
    pub fn validate(&self) -> Result<(), String> {
        if self.resource_name.is_empty() || self.resource_name.len() > 1024 {
            return Err("a resource name is 1 to 1024 bytes".into());
        }
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER {
            return Err(format!("the cluster resource is named `{CLUSTER}`"));
        }
        if self.pattern_type == PatternType::Prefixed && self.resource_name == "*" {
            return Err("a prefixed pattern cannot be `*`".into());
        }
        let Some((kind, name)) = self.principal.split_once(':') else {
            return Err("a principal is `User:<name>`".into());
        };
        if kind != "User" || name.is_empty() || name.len() > 256 {
            return Err("a principal is `User:<name>`".into());
        }
        if self.host != "*" && self.host.parse::<std::net::IpAddr>().is_err() {
            return Err("a host is `*` or an address".into());
        }
        Ok(())
    }

    /// The binding with its host written as clients' addresses are compared
    /// (`::ffff:10.0.0.5` is `10.0.0.5`, IPv6 in lower case).
    pub fn normalized(mut self) -> Self {
        self.host = normalize_host(&self.host);
        self
    }

    fn names(&self, name: &str) -> bool {
        match self.pattern_type {
            PatternType::Literal => self.resource_name == name || self.resource_name == "*",
            PatternType::Prefixed => name.starts_with(&self.resource_name),
        }
    }

    fn applies(&self, principal: &str, host: &str) -> bool {
        (self.principal == principal || self.principal == "User:*")
            && (self.host == "*" || self.host == host)
    }
}

/// How a filter matches patterns (Kafka's `PatternTypeFilter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternFilter {
    /// Any pattern type; the name, if given, compared as written.
    Any,
    /// Every binding that applies to the named resource (literal, `*` or prefix of it).
    Match,
    /// This pattern type only.
    Exactly(PatternType),
}

/// A filter over bindings, as DescribeAcls and DeleteAcls carry it (`None`: any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingFilter {
    /// Resource type.
    pub resource_type: Option<ResourceType>,
    /// Resource name.
    pub resource_name: Option<String>,
    /// How the name matches.
    pub pattern: PatternFilter,
    /// Principal.
    pub principal: Option<String>,
    /// Host.
    pub host: Option<String>,
    /// Operation.
    pub operation: Option<Operation>,
    /// Permission.
    pub permission: Option<AclPermission>,
}

impl BindingFilter {
    /// From the protocol's values: `None` when one of them is unknown (Kafka answers such
    /// a filter with an error).
    #[allow(clippy::too_many_arguments)]
    pub fn from_codes(
        resource_type: i8,
        resource_name: Option<&str>,
        pattern_type: i8,
        principal: Option<&str>,
        host: Option<&str>,
        operation: i8,
        permission: i8,
    ) -> Option<Self> {
        const ANY: i8 = 1;
        const MATCH: i8 = 2;
        let any_or = |code: i8| -> Option<Option<i8>> {
            match code {
                ANY => Some(None),
                0 => None,
                c => Some(Some(c)),
            }
        };
        let resource_type = match any_or(resource_type)? {
            None => None,
            Some(c) => Some(ResourceType::from_code(c)?),
        };
        let pattern = match pattern_type {
            ANY => PatternFilter::Any,
            MATCH => PatternFilter::Match,
            c => PatternFilter::Exactly(PatternType::from_code(c)?),
        };
        let operation = match any_or(operation)? {
            None => None,
            Some(c) => Some(Operation::from_code(c)?),
        };
        let permission = match any_or(permission)? {
            None => None,
            Some(c) => Some(AclPermission::from_code(c)?),
        };
        Some(BindingFilter {
            resource_type,
            resource_name: resource_name.map(str::to_string),
            pattern,
            principal: principal.map(str::to_string),
            host: host.map(normalize_host),
            operation,
            permission,
        })
    }

    /// Whether `b` passes the filter.
    pub fn matches(&self, b: &AclBinding) -> bool {
        let name_ok = match (&self.resource_name, self.pattern) {
            (_, PatternFilter::Exactly(p)) if p != b.pattern_type => false,
            (None, _) => true,
            (Some(n), PatternFilter::Match) => b.names(n),
            (Some(n), _) => &b.resource_name == n,
        };
        name_ok
            && self.resource_type.is_none_or(|t| t == b.resource_type)
            && self.principal.as_ref().is_none_or(|p| *p == b.principal)
            && self.host.as_ref().is_none_or(|h| *h == b.host)
            && self.operation.is_none_or(|o| o == b.operation)
            && self.permission.is_none_or(|p| p == b.permission)
    }
}

/// The bindings, indexed by resource type and literal name so that a check reads only the
/// bindings that can apply.
#[derive(Debug, Clone, Default)]
pub struct KafkaAcl {
    bindings: Vec<AclBinding>,
    literal: HashMap<(ResourceType, String), Vec<usize>>,
    /// Prefixed bindings and literal `*` ones, per resource type.
    broad: HashMap<ResourceType, Vec<usize>>,
}

/// Whether `requested` is granted by a binding for `bound`.
fn implies(bound: Operation, requested: Operation) -> bool {
    use Operation::*;
    bound == All
        || bound == requested
        || (requested == Describe && matches!(bound, Read | Write | Delete | Alter))
        || (requested == DescribeConfigs && bound == AlterConfigs)
}

impl KafkaAcl {
    /// An ACL of these bindings.
    pub fn new(bindings: Vec<AclBinding>) -> Self {
        let mut literal: HashMap<(ResourceType, String), Vec<usize>> = HashMap::new();
        let mut broad: HashMap<ResourceType, Vec<usize>> = HashMap::new();
        for (i, b) in bindings.iter().enumerate() {
            if b.pattern_type == PatternType::Literal && b.resource_name != "*" {
                literal
                    .entry((b.resource_type, b.resource_name.clone()))
                    .or_default()
                    .push(i);
            } else {
                broad.entry(b.resource_type).or_default().push(i);
            }
        }
        KafkaAcl {
            bindings,
            literal,
            broad,
        }
    }

    /// Every binding.
    pub fn bindings(&self) -> &[AclBinding] {
        &self.bindings
    }

    /// Whether some binding allows `principal` from `host` to do `operation` on some
    /// resource of type `resource` (Kafka lets a producer that may write to some topic be
    /// idempotent).
    pub fn grants_any(
        &self,
        principal: &str,
        host: &str,
        operation: Operation,
        resource: ResourceType,
    ) -> bool {
        self.bindings.iter().any(|b| {
            b.resource_type == resource
                && b.permission == AclPermission::Allow
                && b.applies(principal, host)
                && implies(b.operation, operation)
        })
    }

    /// Whether `principal` (`User:<name>`) from `host` may do `operation` on the resource;
    /// `allow_if_no_acl` decides for a resource no binding names.
    pub fn authorize(
        &self,
        principal: &str,
        host: &str,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
        allow_if_no_acl: bool,
    ) -> bool {
        let literal = self
            .literal
            .get(&(resource_type, name.to_string()))
            .into_iter()
            .flatten();
        let broad = self.broad.get(&resource_type).into_iter().flatten();
        let mut any = false;
        let mut allowed = false;
        for b in literal.chain(broad).map(|&i| &self.bindings[i]) {
            if !b.names(name) {
                continue;
            }
            any = true;
            if !b.applies(principal, host) {
                continue;
            }
            match b.permission {
                // A deny on the operation (or on all) wins; a deny on Read does not refuse
                // Describe.
                AclPermission::Deny
                    if b.operation == operation || b.operation == Operation::All =>
                {
                    return false;
                }
                AclPermission::Allow if implies(b.operation, operation) => allowed = true,
                _ => {}
            }
        }
        allowed || (!any && allow_if_no_acl)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn b(
        t: ResourceType,
        name: &str,
        p: PatternType,
        who: &str,
        op: Operation,
        perm: AclPermission,
    ) -> AclBinding {
        AclBinding {
            resource_type: t,
            resource_name: name.into(),
            pattern_type: p,
            principal: who.into(),
            host: "*".into(),
            operation: op,
            permission: perm,
        }
    }

    #[test]
    fn deny_wins_and_describe_is_implied() {
        use AclPermission::*;
        use Operation::*;
        use PatternType::*;
        use ResourceType::*;
        let acl = KafkaAcl::new(vec![
            b(Topic, "orders", Literal, "User:alice", Read, Allow),
            b(Topic, "pay", Prefixed, "User:alice", Write, Allow),
            b(Topic, "pay-secret", Literal, "User:*", All, Deny),
            b(Group, "*", Literal, "User:alice", Read, Allow),
        ]);
        let can = |who, op, t, name| acl.authorize(who, "10.0.0.1", op, t, name, false);
        assert!(can("User:alice", Read, Topic, "orders"));
        assert!(
            can("User:alice", Describe, Topic, "orders"),
            "implied by read"
        );
        assert!(!can("User:alice", Write, Topic, "orders"));
        assert!(!can("User:bob", Read, Topic, "orders"));
        assert!(can("User:alice", Write, Topic, "payments"));
        assert!(!can("User:alice", Write, Topic, "pay-secret"), "deny wins");
        assert!(can("User:alice", Read, Group, "any-group"));
        assert!(
            !can("User:alice", Read, Topic, "unnamed"),
            "no ACL: refused"
        );
        assert!(acl.authorize("User:x", "h", Read, Topic, "unnamed", true));
        assert!(!acl.authorize("User:x", "h", Read, Topic, "orders", true));
    }

    #[test]
    fn filters_follow_kafka() {
        let binding = b(
            ResourceType::Topic,
            "pay",
            PatternType::Prefixed,
            "User:alice",
            Operation::Write,
            AclPermission::Allow,
        );
        let f = |name: Option<&str>, pattern: i8| {
            BindingFilter::from_codes(1, name, pattern, None, None, 1, 1).unwrap()
        };
        assert!(f(None, 1).matches(&binding));
        assert!(
            f(Some("payments"), 2).matches(&binding),
            "match: applies to it"
        );
        assert!(
            !f(Some("payments"), 1).matches(&binding),
            "any: the name as written"
        );
        assert!(f(Some("pay"), 4).matches(&binding));
        assert!(!f(Some("pay"), 3).matches(&binding));
        assert!(BindingFilter::from_codes(0, None, 1, None, None, 1, 1).is_none());
        assert!(binding.validate().is_ok());
        let mut bad = binding.clone();
        bad.principal = "alice".into();
        assert!(bad.validate().is_err());
    }
}
