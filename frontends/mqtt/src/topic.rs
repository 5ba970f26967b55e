//! Topic names and topic filters: validation, shared-subscription parsing and matching.

/// Why a topic name or filter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Empty where a topic is required.
    #[error("empty topic")]
    Empty,
    /// A wildcard where none is allowed, or one in the wrong place.
    #[error("misplaced wildcard in {0:?}")]
    Wildcard(String),
    /// More levels than configured.
    #[error("{levels} topic levels exceed the maximum of {max}")]
    TooManyLevels {
        /// Levels found.
        levels: usize,
        /// The limit.
        max: usize,
    },
    /// Longer than configured.
    #[error("topic of {len} bytes exceeds the maximum of {max}")]
    TooLong {
        /// Length found.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A `$share/` filter without a valid group name or filter.
    #[error("invalid shared subscription {0:?}")]
    Shared(String),
}

/// Limits applied to topic names and filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicLimits {
    /// Maximum number of levels.
    pub max_levels: usize,
    /// Maximum length in bytes.
    pub max_len: usize,
}

impl Default for TopicLimits {
    fn default() -> Self {
        TopicLimits {
            max_levels: 32,
            max_len: 65_535,
        }
    }
}

fn check_limits(s: &str, limits: &TopicLimits) -> Result<(), TopicError> {
    if s.len() > limits.max_len {
        return Err(TopicError::TooLong {
            len: s.len(),
            max: limits.max_len,
        });
    }
    let levels = s.split('/').count();
    if levels > limits.max_levels {
        return Err(TopicError::TooManyLevels {
            levels,
            max: limits.max_levels,
        });
    }
    Ok(())
}

/// Checks a topic name for PUBLISH: non-empty, no wildcards [MQTT-3.3.2-2].
pub fn validate_name(name: &str, limits: &TopicLimits) -> Result<(), TopicError> {
    if name.is_empty() {
        return Err(TopicError::Empty);
    }
    if name.contains(['+', '#']) {
        return Err(TopicError::Wildcard(name.into()));
    }
    check_limits(name, limits)
}

/// Checks a topic filter: non-empty; `#` only as the whole last level; `+` only as a whole
/// level [MQTT-4.7.1-1, MQTT-4.7.1-2].
pub fn validate_filter(filter: &str, limits: &TopicLimits) -> Result<(), TopicError> {
    if filter.is_empty() {
        return Err(TopicError::Empty);
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        let ok = match level {
            "#" => last,
            "+" => true,
            _ => !level.contains(['+', '#']),
        };
        if !ok {
            return Err(TopicError::Wildcard(filter.into()));
        }
    }
    check_limits(filter, limits)
}

/// A subscription filter, split from its shared-subscription group when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedFilter<'a> {
    /// The share group of `$share/{group}/{filter}`.
    pub group: Option<&'a str>,
    /// The topic filter proper.
    pub filter: &'a str,
}

/// Parses and validates a subscription filter, including `$share/{group}/{filter}`.
pub fn parse_filter<'a>(
    raw: &'a str,
    limits: &TopicLimits,
) -> Result<ParsedFilter<'a>, TopicError> {
    if let Some(rest) = raw.strip_prefix("$share/") {
        let (group, filter) = rest
            .split_once('/')
            .ok_or_else(|| TopicError::Shared(raw.into()))?;
        if group.is_empty() || group.contains(['+', '#']) || filter.is_empty() {
            return Err(TopicError::Shared(raw.into()));
        }
        // The whole filter, group included, is bounded like any topic.
        check_limits(raw, limits)?;
        validate_filter(filter, limits)?;
        return Ok(ParsedFilter {
            group: Some(group),
            filter,
        });
    }
    validate_filter(raw, limits)?;
    Ok(ParsedFilter {
        group: None,
        filter: raw,
    })
}

pub use strata_frontend::topic_filter::{filters_overlap, matches};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_names_are_validated() {
        let l = TopicLimits::default();
        for ok in ["#", "+", "a/+/c", "a/#", "+/+", "/", "a//b", "$SYS/#"] {
            assert!(validate_filter(ok, &l).is_ok(), "{ok}");
        }
        for bad in ["", "a/#/b", "a#", "a/b+", "#/a", "++"] {
            assert!(validate_filter(bad, &l).is_err(), "{bad}");
        }
        assert!(validate_name("a/b", &l).is_ok());
        assert!(validate_name("a/+", &l).is_err());
        assert!(validate_name("", &l).is_err());
        let tight = TopicLimits {
            max_levels: 2,
            max_len: 5,
        };
        assert!(matches!(
            validate_name("a/b/c", &tight),
            Err(TopicError::TooManyLevels { .. })
        ));
        assert!(matches!(
            validate_name("abcdef", &tight),
            Err(TopicError::TooLong { .. })
        ));
    }

    #[test]
    fn shared_filters_parse() {
        let l = TopicLimits::default();
        let p = parse_filter("$share/g1/a/+", &l).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.group, p.filter), (Some("g1"), "a/+"));
        for bad in ["$share/g1", "$share//a", "$share/g+/a", "$share/g/"] {
            assert!(parse_filter(bad, &l).is_err(), "{bad}");
        }
    }
}
