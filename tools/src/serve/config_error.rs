//! `ConfigError`: a configuration problem as one line naming the key, what is wrong, and where.

use std::fmt;
use std::path::Path;

use figment::Metadata;
use figment::error::Kind;

use super::config::{ENV_PREFIX, ENV_SEPARATOR};

/// Why the node refused its configuration. Displays as exactly one line:
/// `config error: <key.path>: <what is wrong> (<where the value came from>)`.
#[derive(Debug)]
pub struct ConfigError {
    /// Dotted key path (`journal.segment_bytes`), when the problem belongs to one key.
    key: Option<String>,
    message: String,
    /// `in <file>` or `from environment variable <NAME>`, when known.
    origin: Option<String>,
}

impl ConfigError {
    /// A value that deserialized but is not acceptable.
    pub fn invalid(key: &str, message: impl Into<String>) -> Self {
        Self {
            key: Some(key.to_owned()),
            message: message.into(),
            origin: None,
        }
    }

    /// A bad value in an environment variable that is not a config key, such as `RUST_LOG`.
    pub fn env_var(name: &str, message: impl Into<String>) -> Self {
        Self {
            key: None,
            message: message.into(),
            origin: Some(format!("from environment variable {name}")),
        }
    }

    /// The file given with `--config` could not be read.
    pub fn unreadable_file(path: &Path, err: &std::io::Error) -> Self {
        Self {
            key: None,
            message: format!("cannot read config file {}: {err}", path.display()),
            origin: None,
        }
    }

    /// Converts figment's error, which knows the key path and the provider of the bad value.
    pub fn from_figment(err: figment::Error) -> Self {
        let key = (!err.path.is_empty()).then(|| err.path.join("."));
        let mut message = describe(&err.kind);
        // serde stops at the first bad value, so several errors only come from several broken
        // sources; the first is enough to act on.
        let others = err.count().saturating_sub(1);
        if others > 0 {
            message.push_str(&format!(" (and {others} more)"));
        }
        let origin = err
            .metadata
            .as_ref()
            .map(|metadata| describe_origin(metadata, &err.path));
        Self {
            key,
            message,
            origin,
        }
    }

    /// The dotted key path this error is about, if it is about one key.
    #[cfg(test)]
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("config error: ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(origin) = &self.origin {
            write!(f, " ({origin})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The environment variable that sets `path`: `["admin", "listen"]` -> `STRATA_ADMIN__LISTEN`.
pub fn env_var_name(path: &[String]) -> String {
    format!("{ENV_PREFIX}{}", path.join(ENV_SEPARATOR).to_uppercase())
}

/// figment's own wording, except for unknown names, where it nests backquotes.
fn describe(kind: &Kind) -> String {
    match kind {
        Kind::UnknownField(found, expected) => {
            format!("unknown key `{found}`, expected {}", one_of(expected))
        }
        Kind::UnknownVariant(found, expected) => {
            format!("unknown value `{found}`, expected {}", one_of(expected))
        }
        other => one_line(&other.to_string()),
    }
}

/// "`a`", "`a` or `b`", "one of `a`, `b`, `c`".
fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|name| format!("`{name}`")).collect();
    match quoted.as_slice() {
        [] => "nothing here".to_owned(),
        [one] => one.clone(),
        [first, second] => format!("{first} or {second}"),
        all => format!("one of {}", all.join(", ")),
    }
}

fn describe_origin(metadata: &Metadata, path: &[String]) -> String {
    if let Some(file) = metadata
        .source
        .as_ref()
        .and_then(|source| source.file_path())
    {
        return format!("in {}", file.display());
    }
    // figment's `Env` provider has no `source`, only this name; matching on it is the one
    // way to tell an environment value from other sources.
    if metadata.name.contains("environment variable") && !path.is_empty() {
        return format!("from environment variable {}", env_var_name(path));
    }
    format!("in {}", metadata.name)
}

/// Folds a multi-line message (TOML parse errors quote the offending line and draw a caret
/// under it) into one line, keeping the text and dropping the drawing.
pub fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !is_source_excerpt(line))
        .collect::<Vec<_>>()
        .join(": ")
}

/// `|`, `| ^^^` and `12 | key = value`: the excerpt lines of a TOML parse error.
fn is_source_excerpt(line: &str) -> bool {
    match line.split_once('|') {
        Some((before, _)) => before.trim().chars().all(|c| c.is_ascii_digit()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_key_message_origin() {
        let err = ConfigError {
            key: Some("admin.listen".to_owned()),
            message: "invalid socket address syntax".to_owned(),
            origin: Some("from environment variable STRATA_ADMIN__LISTEN".to_owned()),
        };
        assert_eq!(
            err.to_string(),
            "config error: admin.listen: invalid socket address syntax \
             (from environment variable STRATA_ADMIN__LISTEN)"
        );
    }

    #[test]
    fn env_var_name_joins_with_double_underscore() {
        let path = ["journal".to_owned(), "segment_bytes".to_owned()];
        assert_eq!(env_var_name(&path), "STRATA_JOURNAL__SEGMENT_BYTES");
    }

    #[test]
    fn one_line_drops_toml_excerpts() {
        let text = "TOML parse error at line 1, column 7\n  |\n1 | [admin\n  |       ^\n\
                    invalid table header\nexpected `.`, `]`\n";
        assert_eq!(
            one_line(text),
            "TOML parse error at line 1, column 7: invalid table header: expected `.`, `]`"
        );
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let unknown = Kind::UnknownField("listen_addr".to_owned(), &["listen"]);
        assert_eq!(
            describe(&unknown),
            "unknown key `listen_addr`, expected `listen`"
        );
        let variant = Kind::UnknownVariant("xml".to_owned(), &["human", "json"]);
        assert_eq!(
            describe(&variant),
            "unknown value `xml`, expected `human` or `json`"
        );
        let section = Kind::UnknownField("nodes".to_owned(), &["node", "log", "admin"]);
        assert_eq!(
            describe(&section),
            "unknown key `nodes`, expected one of `node`, `log`, `admin`"
        );
    }

    #[test]
    fn one_line_keeps_plain_messages() {
        assert_eq!(one_line("missing field `x`"), "missing field `x`");
    }
}
