//! Fuzzes Kafka ACLs: bindings and filters built from any protocol values are accepted or
//! refused without panicking, and a deny binding naming exactly a principal, resource and
//! operation always refuses that operation, whatever else is bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_frontend::security::kafka_acl::{
    AclBinding, AclPermission, BindingFilter, KafkaAcl, Operation, PatternType, ResourceType,
};

fn binding(chunk: &[u8], names: &[&str]) -> Option<AclBinding> {
    let [t, p, who, op, perm, name, ..] = *chunk else {
        return None;
    };
    let b = AclBinding {
        resource_type: ResourceType::from_code(t as i8 % 8)?,
        resource_name: names[name as usize % names.len()].to_string(),
        pattern_type: PatternType::from_code(p as i8 % 6)?,
        principal: ["User:alice", "User:bob", "User:*"][who as usize % 3].to_string(),
        host: "*".into(),
        operation: Operation::from_code(op as i8 % 14)?,
        permission: AclPermission::from_code(perm as i8 % 5)?,
    };
    b.validate().ok()?;
    Some(b)
}

fuzz_target!(|data: &[u8]| {
    let names = ["orders", "ord", "*", "kafka-cluster", "pay", ""];
    let mut bindings: Vec<AclBinding> = data.chunks(6).filter_map(|c| binding(c, &names)).collect();
    if let [a, b, c, d, e, f, g, ..] = *data {
        let filter = BindingFilter::from_codes(
            a as i8 % 8,
            Some(names[b as usize % names.len()]),
            c as i8 % 6,
            None,
            None,
            d as i8 % 14,
            e as i8 % 5,
        );
        if let Some(filter) = filter {
            let _ = bindings.iter().filter(|x| filter.matches(x)).count();
        }
        // A deny for alice on `orders` for one operation.
        if let Some(op) = Operation::from_code(2 + (f % 11) as i8) {
            bindings.insert(
                g as usize % (bindings.len() + 1),
                AclBinding {
                    resource_type: ResourceType::Topic,
                    resource_name: "orders".into(),
                    pattern_type: PatternType::Literal,
                    principal: "User:alice".into(),
                    host: "*".into(),
                    operation: op,
                    permission: AclPermission::Deny,
                },
            );
            let acl = KafkaAcl::new(bindings);
            assert!(!acl.authorize("User:alice", "10.0.0.1", op, ResourceType::Topic, "orders", true));
            for t in [ResourceType::Topic, ResourceType::Group, ResourceType::Cluster] {
                let _ = acl.authorize("User:bob", "::1", Operation::Describe, t, "ord", false);
            }
        }
    }
});
