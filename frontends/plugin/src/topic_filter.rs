//! Topic filter arithmetic shared by every frontend that speaks MQTT-style topics (MQTT
//! itself, ACLs): matching a name, whether two filters can match one topic, and whether one
//! filter covers another.

/// Whether `filter` matches topic `name`. Topics starting with `$` are not matched by a
/// filter starting with a wildcard [MQTT-4.7.2-1].
pub fn matches(filter: &str, name: &str) -> bool {
    if name.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut f = filter.split('/');
    let mut n = name.split('/');
    loop {
        match (f.next(), n.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether some topic name matches both filters: what a subscription to one could receive
/// of what the other covers. Topics starting with `$` are matched by neither filter when
/// one starts with a wildcard [MQTT-4.7.2-1].
pub fn filters_overlap(a: &str, b: &str) -> bool {
    let dollar = |f: &str| f.starts_with('$');
    let wild = |f: &str| f.starts_with(['+', '#']);
    if (dollar(a) && wild(b)) || (dollar(b) && wild(a)) {
        return false;
    }
    let mut x = a.split('/');
    let mut y = b.split('/');
    loop {
        match (x.next(), y.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (None, None) => return true,
            // One ended; the other goes on with a level that is not `#` (`a/#` matches `a`,
            // the arm above).
            (None, Some(_)) | (Some(_), None) => return false,
            (Some("+"), Some(_)) | (Some(_), Some("+")) => {}
            (Some(p), Some(q)) if p == q => {}
            _ => return false,
        }
    }
}

/// Whether every topic `filter` matches is matched by `rule` too: a subscription to
/// `filter` receives nothing `rule` does not cover.
pub fn filter_covers(rule: &str, filter: &str) -> bool {
    // A rule starting with a wildcard matches no `$` topic; a filter may match some only
    // when it starts with `$` itself.
    if rule.starts_with(['+', '#']) && filter.starts_with('$') {
        return false;
    }
    let mut r = rule.split('/');
    let mut f = filter.split('/');
    loop {
        match (r.next(), f.next()) {
            (Some("#"), _) => return true,
            // `a/#` matches `a` and deeper topics: only `#` covers it.
            (_, Some("#")) => return false,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b && b != "+" => {}
            (None, None) => return true,
            // The filter ended: `rule` may go on with `#` alone (`a/#` covers `a`).
            (Some(_), None) => return false,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn overlapping_filters() {
        for (a, b) in [
            ("#", "secret/#"),
            ("+/x", "secret/#"),
            ("secret/+", "secret/a"),
            ("a/b", "a/b"),
            ("a/#", "a"),
            ("+/+", "a/b"),
            ("$SYS/#", "$SYS/+"),
        ] {
            assert!(filters_overlap(a, b), "{a} {b}");
            assert!(filters_overlap(b, a), "{b} {a}");
        }
        for (a, b) in [
            ("public/#", "secret/#"),
            ("+", "a/b"),
            ("a/b", "a/b/c"),
            ("#", "$SYS/#"),
            ("+/x", "$SYS/x"),
            ("a/+/c", "a/b/d"),
        ] {
            assert!(!filters_overlap(a, b), "{a} {b}");
            assert!(!filters_overlap(b, a), "{b} {a}");
        }
    }

    #[test]
    fn matching_follows_the_specification() {
        assert!(matches("sport/tennis/player1/#", "sport/tennis/player1"));
        assert!(matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking"
        ));
        assert!(matches("sport/#", "sport"));
        assert!(matches("#", "a/b/c"));
        assert!(matches("sport/+/player1", "sport/tennis/player1"));
        assert!(!matches("sport/+", "sport/tennis/player1"));
        assert!(matches("sport/+", "sport/"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        assert!(!matches("#", "$SYS/broker"));
        assert!(!matches("+/monitor/Clients", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/#", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
    }

    #[test]
    fn covering_filters() {
        for (rule, f) in [
            ("#", "a/b"),
            ("#", "#"),
            ("a/#", "a/b/#"),
            ("a/#", "a"),
            ("a/+", "a/b"),
            ("a/+", "a/+"),
            ("$SYS/#", "$SYS/x"),
        ] {
            assert!(filter_covers(rule, f), "{rule} covers {f}");
        }
        for (rule, f) in [
            ("a/+", "a/#"),
            ("a/b", "a/+"),
            ("a", "a/#"),
            ("#", "$SYS/x"),
            ("secret/#", "#"),
            ("a/+/c", "a/b/+"),
        ] {
            assert!(!filter_covers(rule, f), "{rule} does not cover {f}");
        }
    }

    /// Filters and names from a few levels, wildcards placed as MQTT allows.
    fn filter() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let level = prop_oneof![Just("a"), Just("b"), Just("$x"), Just(""), Just("+")];
        (proptest::collection::vec(level, 1..4), any::<bool>()).prop_map(|(levels, hash)| {
            let mut f = levels.join("/");
            if hash {
                f = if f.is_empty() {
                    "#".into()
                } else {
                    format!("{f}/#")
                };
            }
            f
        })
    }

    fn name() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let level = prop_oneof![Just("a"), Just("b"), Just("$x"), Just("")];
        proptest::collection::vec(level, 1..5).prop_map(|l| l.join("/"))
    }

    proptest::proptest! {
        /// What the ACL relies on: a covering filter matches every name the covered one
        /// does, and two filters matching one name overlap.
        #[test]
        fn cover_and_overlap_agree_with_matching(a in filter(), b in filter(), t in name()) {
            if filter_covers(&a, &b) && matches(&b, &t) {
                proptest::prop_assert!(matches(&a, &t), "{a} covers {b} but not {t}");
            }
            if matches(&a, &t) && matches(&b, &t) {
                proptest::prop_assert!(filters_overlap(&a, &b), "{a} and {b} both match {t}");
            }
            proptest::prop_assert_eq!(filters_overlap(&a, &b), filters_overlap(&b, &a));
        }
    }
}
