//! The agents registry: agents register an A2A-style card (name, description, skills,
//! tags, endpoint), keep themselves online with heartbeats, and are found by skill, tag
//! or being online. Registering gives the agent its own token (shown once, kept as a
//! SHA-256 digest): it alone updates or removes its card and reads its mailbox. Cards
//! are kept in the node's state store; every change is also an event of topic
//! [`REGISTRY_TOPIC`], so a client can watch the registry as a resumable stream.

use std::collections::BTreeMap;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::AgentError;
use crate::space::Space;

/// The topic every registry change is published to.
pub const REGISTRY_TOPIC: &str = "_registry";

/// Largest card, as JSON.
const MAX_CARD_BYTES: usize = 8 * 1024;
/// Most skills and tags on a card, and their longest strings.
const MAX_SKILLS: usize = 64;
const MAX_TAGS: usize = 32;
const MAX_TEXT: usize = 1024;
const MAX_WORD: usize = 64;

/// A skill an agent offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Skill {
    /// Its id, unique on the card.
    pub id: String,
    /// A name for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tags, for search.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// What an agent says of itself (an A2A agent card's essentials).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Card {
    /// The agent's name: 1 to 100 characters of `[A-Za-z0-9_-]`, unique on the node.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What it can do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skills: Vec<Skill>,
    /// Tags, for search.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Where it can be reached directly, if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

fn word_ok(w: &str) -> bool {
    !w.is_empty() && w.len() <= MAX_WORD && !w.chars().any(char::is_control)
}

impl Card {
    /// Checks the card's bounds.
    pub fn check(&self) -> Result<(), AgentError> {
        let bad = |what: &str| Err(AgentError::bad_request("bad_card", what.to_string()));
        if !valid_agent_name(&self.name) {
            return bad(
                "an agent's name is 1 to 100 characters of [A-Za-z0-9_-], not starting with _",
            );
        }
        if self
            .description
            .as_ref()
            .is_some_and(|d| d.len() > MAX_TEXT)
            || self.endpoint.as_ref().is_some_and(|e| e.len() > MAX_TEXT)
        {
            return bad("a description or endpoint is at most 1024 bytes");
        }
        if self.skills.len() > MAX_SKILLS
            || self.skills.iter().any(|s| {
                !word_ok(&s.id)
                    || s.name.as_ref().is_some_and(|n| n.len() > MAX_TEXT)
                    || s.tags.len() > MAX_TAGS
                    || !s.tags.iter().all(|t| word_ok(t))
            })
        {
            return bad("at most 64 skills, each with an id and at most 32 tags of 1 to 64 bytes");
        }
        if self.tags.len() > MAX_TAGS || !self.tags.iter().all(|t| word_ok(t)) {
            return bad("at most 32 tags of 1 to 64 bytes");
        }
        if serde_json::to_vec(self).map_or(usize::MAX, |j| j.len()) > MAX_CARD_BYTES {
            return bad("a card is at most 8 KiB of JSON");
        }
        Ok(())
    }
}

/// Whether `name` may name an agent.
pub fn valid_agent_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && !name.starts_with('_')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// An agent as kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    card: Card,
    /// SHA-256 of its token, hex.
    token_sha256: String,
    registered_ms: i64,
    /// Its last heartbeat (or registration).
    seen_ms: i64,
    /// How long after `seen_ms` it counts as online.
    lease_ms: i64,
    /// This registration's own id: a name registered again after a removal is another
    /// agent, with another mailbox and none of the old one's tasks.
    #[serde(default)]
    incarnation: String,
}

/// An agent as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    /// Its card.
    #[serde(flatten)]
    pub card: Card,
    /// Whether its last heartbeat is within its lease.
    pub online: bool,
    /// Its last heartbeat, milliseconds since the epoch.
    pub seen_ms: i64,
}

/// What a search asks for.
#[derive(Debug, Clone, Default)]
pub struct Search {
    /// Agents offering this skill (by id).
    pub skill: Option<String>,
    /// Agents with this tag (on the card or on a skill).
    pub tag: Option<String>,
    /// Only agents online now.
    pub online: bool,
}

fn digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn key(name: &str) -> Vec<u8> {
    format!("a/{name}").into_bytes()
}

/// The registry of a node.
#[derive(Debug)]
pub struct Registry {
    space: Space,
    agents: Mutex<BTreeMap<String, Entry>>,
    /// Held by every change, from reading the card to storing it: a change stored is never
    /// undone by an older one stored after it.
    changing: tokio::sync::Mutex<()>,
    max_agents: usize,
}

impl Registry {
    /// The registry kept in `space`, loaded from it; at most `max_agents` agents.
    pub fn open(space: Space, max_agents: usize) -> Result<Self, AgentError> {
        let mut agents = BTreeMap::new();
        for (k, v) in space.scan_prefix(b"a/")? {
            match serde_json::from_slice::<Entry>(&v) {
                Ok(e) => {
                    agents.insert(e.card.name.clone(), e);
                }
                Err(e) => tracing::warn!(
                    key = %String::from_utf8_lossy(&k),
                    error = %e,
                    "unreadable agent card skipped"
                ),
            }
        }
        Ok(Registry {
            space,
            agents: Mutex::new(agents),
            changing: tokio::sync::Mutex::new(()),
            max_agents,
        })
    }

    async fn keep(&self, e: &Entry) -> Result<(), AgentError> {
        let bytes = serde_json::to_vec(e).unwrap_or_default();
        self.space.put(key(&e.card.name), bytes).await
    }

    /// Registers `card`, online for `lease_ms` from `now_ms`: the agent's token, new
    /// unless `token` (the agent's current one) updates an existing card. Whether it was
    /// new.
    pub async fn register(
        &self,
        card: Card,
        token: Option<&str>,
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<(String, bool), AgentError> {
        card.check()?;
        let _one = self.changing.lock().await;
        let (entry, token, new) = self.registered(card, token, lease_ms, now_ms)?;
        self.keep(&entry).await?;
        self.agents.lock().insert(entry.card.name.clone(), entry);
        Ok((token, new))
    }

    /// The entry [`Registry::register`] stores, its token and whether it is new.
    fn registered(
        &self,
        card: Card,
        token: Option<&str>,
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<(Entry, String, bool), AgentError> {
        let agents = self.agents.lock();
        let (token, registered_ms, new, incarnation) = match agents.get(&card.name) {
            Some(old) => {
                let given = token.map(digest);
                if given.as_deref() != Some(old.token_sha256.as_str()) {
                    let (status, code) = match token {
                        None => (axum::http::StatusCode::CONFLICT, "name_taken"),
                        Some(_) => (axum::http::StatusCode::FORBIDDEN, "not_owner"),
                    };
                    return Err(AgentError {
                        status,
                        code,
                        message: format!(
                            "agent {} is registered: only its own token updates it",
                            card.name
                        ),
                        retry_after: None,
                    });
                }
                (
                    token.unwrap_or_default().to_string(),
                    old.registered_ms,
                    false,
                    old.incarnation.clone(),
                )
            }
            None => {
                if agents.len() >= self.max_agents {
                    return Err(AgentError::full(
                        "max_agents",
                        format!("this node keeps at most {} agents", self.max_agents),
                    ));
                }
                (
                    format!("{:032x}", rand::random::<u128>()),
                    now_ms,
                    true,
                    format!("{:016x}", rand::random::<u64>()),
                )
            }
        };
        let entry = Entry {
            card,
            token_sha256: digest(&token),
            registered_ms,
            seen_ms: now_ms,
            lease_ms,
            incarnation,
        };
        Ok((entry, token, new))
    }

    /// Whether `token` is agent `name`'s.
    pub fn owns(&self, name: &str, token: &str) -> bool {
        let given = digest(token);
        self.agents.lock().get(name).is_some_and(|e| {
            let (a, b) = (e.token_sha256.as_bytes(), given.as_bytes());
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
        })
    }

    /// Whether agent `name` is registered.
    pub fn exists(&self, name: &str) -> bool {
        self.agents.lock().contains_key(name)
    }

    /// The id of agent `name`'s registration, if it is registered.
    pub fn incarnation(&self, name: &str) -> Option<String> {
        self.agents.lock().get(name).map(|e| e.incarnation.clone())
    }

    /// Agent `name` is alive at `now_ms`: until when it counts as online.
    pub async fn heartbeat(&self, name: &str, now_ms: i64) -> Result<i64, AgentError> {
        // Written under the change lock: a removal or an update cannot slip in between
        // and be undone by this write.
        let _one = self.changing.lock().await;
        let mut kept = self
            .agents
            .lock()
            .get(name)
            .cloned()
            .ok_or_else(|| unknown(name))?;
        kept.seen_ms = now_ms;
        let until = now_ms.saturating_add(kept.lease_ms);
        self.keep(&kept).await?;
        self.agents.lock().insert(name.to_string(), kept);
        Ok(until)
    }

    /// Removes agent `name`.
    pub async fn remove(&self, name: &str) -> Result<(), AgentError> {
        let _one = self.changing.lock().await;
        if !self.agents.lock().contains_key(name) {
            return Err(unknown(name));
        }
        self.space.delete(key(name)).await?;
        self.agents.lock().remove(name);
        Ok(())
    }

    /// Agent `name`.
    pub fn get(&self, name: &str, now_ms: i64) -> Result<Listed, AgentError> {
        self.agents
            .lock()
            .get(name)
            .map(|e| listed(e, now_ms))
            .ok_or_else(|| unknown(name))
    }

    /// The agents `search` matches, by name, at most `max`.
    pub fn search(&self, search: &Search, now_ms: i64, max: usize) -> Vec<Listed> {
        self.agents
            .lock()
            .values()
            .filter(|e| {
                let c = &e.card;
                search
                    .skill
                    .as_ref()
                    .is_none_or(|s| c.skills.iter().any(|k| &k.id == s))
                    && search.tag.as_ref().is_none_or(|t| {
                        c.tags.contains(t) || c.skills.iter().any(|k| k.tags.contains(t))
                    })
                    && (!search.online || online(e, now_ms))
            })
            .take(max)
            .map(|e| listed(e, now_ms))
            .collect()
    }
}

fn online(e: &Entry, now_ms: i64) -> bool {
    now_ms < e.seen_ms.saturating_add(e.lease_ms)
}

fn listed(e: &Entry, now_ms: i64) -> Listed {
    Listed {
        card: e.card.clone(),
        online: online(e, now_ms),
        seen_ms: e.seen_ms,
    }
}

fn unknown(name: &str) -> AgentError {
    AgentError::not_found("unknown_agent", format!("no agent {name}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use strata_frontend::seams::StateStore;
    use strata_frontend::seams::memory::MemoryState;

    fn card(name: &str, skill: &str, tag: &str) -> Card {
        Card {
            name: name.into(),
            description: None,
            skills: vec![Skill {
                id: skill.into(),
                name: None,
                tags: vec![],
            }],
            tags: vec![tag.into()],
            endpoint: None,
        }
    }

    #[tokio::test]
    async fn agents_register_are_found_and_survive_a_reopen() {
        let state = MemoryState::default();
        let r = Registry::open(Space::Node(state.space("agent").unwrap()), 10).unwrap();
        let (token, new) = r
            .register(card("a", "sum", "math"), None, 1000, 0)
            .await
            .unwrap();
        assert!(new && token.len() == 32);
        r.register(card("b", "draw", "art"), None, 1000, 0)
            .await
            .unwrap();
        // Someone else cannot take the name; the owner updates its card.
        let taken = r
            .register(card("a", "x", "y"), None, 1000, 0)
            .await
            .unwrap_err();
        assert_eq!(taken.code, "name_taken");
        assert_eq!(
            r.register(card("a", "sum", "calc"), Some(&token), 1000, 10)
                .await
                .unwrap(),
            (token.clone(), false)
        );
        assert!(r.owns("a", &token) && !r.owns("b", &token) && !r.owns("a", "guess"));
        let by_skill = r.search(
            &Search {
                skill: Some("sum".into()),
                ..Search::default()
            },
            500,
            100,
        );
        assert_eq!(by_skill.len(), 1);
        assert_eq!(by_skill[0].card.tags, vec!["calc".to_string()]);
        // b's lease lapsed at 1000; a beat at 1500.
        r.heartbeat("a", 1500).await.unwrap();
        let online = r.search(
            &Search {
                online: true,
                ..Search::default()
            },
            2000,
            100,
        );
        assert_eq!(
            online
                .iter()
                .map(|l| l.card.name.as_str())
                .collect::<Vec<_>>(),
            vec!["a"]
        );
        let again = Registry::open(Space::Node(state.space("agent").unwrap()), 10).unwrap();
        assert_eq!(again.search(&Search::default(), 0, 10).len(), 2);
        assert!(again.owns("a", &token));
        again.remove("b").await.unwrap();
        assert_eq!(again.get("b", 0).unwrap_err().code, "unknown_agent");
    }

    #[tokio::test]
    async fn cards_are_bounded() {
        let state = MemoryState::default();
        let r = Registry::open(Space::Node(state.space("agent").unwrap()), 1).unwrap();
        let mut c = card("a", "s", "t");
        c.tags = (0..33).map(|i| format!("t{i}")).collect();
        assert_eq!(
            r.register(c, None, 1, 0).await.unwrap_err().code,
            "bad_card"
        );
        assert_eq!(
            r.register(card("_sys", "s", "t"), None, 1, 0)
                .await
                .unwrap_err()
                .code,
            "bad_card"
        );
        r.register(card("a", "s", "t"), None, 1, 0).await.unwrap();
        assert_eq!(
            r.register(card("b", "s", "t"), None, 1, 0)
                .await
                .unwrap_err()
                .code,
            "max_agents"
        );
    }
}
