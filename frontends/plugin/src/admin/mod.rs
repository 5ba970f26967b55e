//! What frontends offer the node's admin API: its error type, cursor paging, the HTTP
//! vocabulary of its routes ([`http`], [`extract`]) and the handle through which routes
//! reach a running frontend ([`Live`]).
//!
//! A frontend exposes a cloneable admin handle (for instance `MqttAdmin`) that its admin
//! routes call; the handle answers from the frontend's live state and fails with
//! [`AdminError::Unavailable`] until the frontend has started.

pub mod extract;
pub mod http;

use std::sync::{Arc, OnceLock};

/// A frontend's running state as its admin handle sees it: empty until the frontend has
/// started and attached it, then the state for good.
#[derive(Debug)]
pub struct Live<T> {
    what: &'static str,
    state: Arc<OnceLock<Arc<T>>>,
}

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live {
            what: self.what,
            state: self.state.clone(),
        }
    }
}

impl<T> Live<T> {
    /// An empty handle on the frontend named `what` (for messages: `MQTT`, `Kafka`...).
    pub fn new(what: &'static str) -> Self {
        Live {
            what,
            state: Arc::default(),
        }
    }

    /// Connects the handle to the running frontend (once; later calls are ignored).
    pub fn attach(&self, state: Arc<T>) {
        let _ = self.state.set(state);
    }

    /// The running frontend, or [`AdminError::Unavailable`] while it starts.
    pub fn get(&self) -> Result<&Arc<T>, AdminError> {
        self.state.get().ok_or_else(|| {
            AdminError::Unavailable(format!("the {} frontend is still starting", self.what))
        })
    }
}

/// Most items one page returns when the caller does not say.
pub const DEFAULT_PAGE_LIMIT: usize = 100;
/// Most items one page may return.
pub const MAX_PAGE_LIMIT: usize = 1000;

/// Why an admin request failed; the HTTP API maps each variant to a status and a code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdminError {
    /// The named thing does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed or asks for something impossible (400).
    #[error("{0}")]
    BadRequest(String),
    /// The component is not running (yet) or cannot answer now (503).
    #[error("{0}")]
    Unavailable(String),
}

/// Which page of a listing: the items after `cursor` (an opaque token from the previous
/// page's `next_cursor`), at most `limit` of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// Token from the previous page; none for the first page.
    pub cursor: Option<String>,
    /// Most items wanted (default [`DEFAULT_PAGE_LIMIT`], at most [`MAX_PAGE_LIMIT`]).
    pub limit: Option<usize>,
}

/// One page of a listing sorted by a string key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items of this page, in key order.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; none on the last page.
    pub next_cursor: Option<String>,
    /// How many items matched the filters over all pages.
    pub total: usize,
}

impl PageRequest {
    /// The limit to apply, checked against [`MAX_PAGE_LIMIT`].
    pub fn limit(&self) -> Result<usize, AdminError> {
        match self.limit.unwrap_or(DEFAULT_PAGE_LIMIT) {
            0 => Err(AdminError::BadRequest("limit must be at least 1".into())),
            n if n > MAX_PAGE_LIMIT => Err(AdminError::BadRequest(format!(
                "limit must be at most {MAX_PAGE_LIMIT}"
            ))),
            n => Ok(n),
        }
    }

    /// The key the page starts after, decoded from the cursor (an empty cursor is none).
    pub fn after(&self) -> Result<Option<String>, AdminError> {
        self.cursor
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(decode_cursor)
            .transpose()
    }

    /// Cuts one page out of `items` (matching items, each with its sort key, in any order).
    pub fn page<T>(&self, mut items: Vec<(String, T)>) -> Result<Page<T>, AdminError> {
        let limit = self.limit()?;
        let after = self.after()?;
        items.sort_by(|a, b| a.0.cmp(&b.0));
        let total = items.len();
        let start = match &after {
            Some(key) => items.partition_point(|(k, _)| k <= key),
            None => 0,
        };
        let mut rest = items.into_iter().skip(start);
        let page: Vec<(String, T)> = rest.by_ref().take(limit).collect();
        let next_cursor = match rest.next() {
            Some(_) => page.last().map(|(k, _)| encode_cursor(k)),
            None => None,
        };
        Ok(Page {
            items: page.into_iter().map(|(_, v)| v).collect(),
            next_cursor,
            total,
        })
    }
}

/// The pattern every cursor matches (`c` and hex digits in pairs; empty means none), for
/// API documents.
pub const CURSOR_PATTERN: &str = "^(c([0-9a-fA-F]{2})*)?$";

/// Cursors are `c` and the hex of the last key: safe in a URL whatever the key holds, and
/// never empty (an empty cursor means the first page, so the empty key needs one too). Any
/// string of that form is accepted back (bytes that are not UTF-8 are replaced), so a
/// cursor only positions the page and never fails once it has the documented form.
fn encode_cursor(key: &str) -> String {
    std::iter::once("c".to_owned())
        .chain(key.bytes().map(|b| format!("{b:02x}")))
        .collect()
}

fn decode_cursor(cursor: &str) -> Result<String, AdminError> {
    let bad =
        || AdminError::BadRequest(format!("cursor `{cursor}` does not match {CURSOR_PATTERN}"));
    let hex = cursor.strip_prefix('c').ok_or_else(bad)?;
    if !hex.len().is_multiple_of(2) {
        return Err(bad());
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A JSON integer, which JSON Schema lets a client write as `30` or `30.0`.
pub fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    use serde::Deserialize;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(v) = n.as_u64() {
        return Ok(Some(v));
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&f) => Ok(Some(f as u64)),
        _ => Err(serde::de::Error::custom(format!(
            "{n} is not a whole number"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(n: usize) -> Vec<(String, usize)> {
        (0..n).rev().map(|i| (format!("k{i:03}"), i)).collect()
    }

    #[test]
    fn pages_walk_every_item_once_in_key_order() {
        let mut request = PageRequest {
            cursor: None,
            limit: Some(7),
        };
        let mut seen = Vec::new();
        loop {
            let page = request.page(keyed(20)).expect("valid page");
            assert_eq!(page.total, 20);
            seen.extend(page.items);
            match page.next_cursor {
                Some(c) => request.cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen, (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn exact_last_page_has_no_cursor() {
        let request = PageRequest {
            cursor: None,
            limit: Some(5),
        };
        let page = request.page(keyed(5)).expect("valid page");
        assert_eq!(page.items.len(), 5);
        assert_eq!(page.next_cursor, None);
    }

    #[test]
    fn bad_limits_and_cursors_are_bad_requests() {
        for (cursor, limit) in [(None, Some(0)), (None, Some(MAX_PAGE_LIMIT + 1))] {
            let r = PageRequest { cursor, limit };
            assert!(matches!(r.page(keyed(1)), Err(AdminError::BadRequest(_))));
        }
        for cursor in ["x", "zz", "cfff", "ff"] {
            let r = PageRequest {
                cursor: Some(cursor.into()),
                limit: None,
            };
            assert!(
                matches!(r.page(keyed(1)), Err(AdminError::BadRequest(_))),
                "{cursor}"
            );
        }
    }

    #[test]
    fn cursors_survive_any_key() {
        for key in ["a/b c", "", "ü\u{1}%2F"] {
            assert_eq!(decode_cursor(&encode_cursor(key)).as_deref(), Ok(key));
        }
        // Hex pairs that are not UTF-8 still position a page.
        assert_eq!(decode_cursor("cff41").as_deref(), Ok("\u{fffd}A"));
    }

    #[test]
    fn the_empty_key_has_a_cursor_of_its_own() {
        let request = PageRequest {
            cursor: None,
            limit: Some(1),
        };
        let page = request
            .page(vec![(String::new(), 0), ("a".to_owned(), 1)])
            .expect("valid page");
        let next = page.next_cursor.expect("a second page");
        let second = PageRequest {
            cursor: Some(next),
            limit: Some(1),
        }
        .page(vec![(String::new(), 0), ("a".to_owned(), 1)])
        .expect("valid page");
        assert_eq!(second.items, vec![1]);
    }
}
