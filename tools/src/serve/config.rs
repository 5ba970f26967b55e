//! `NodeConfig`: the node's settings, layered as built-in defaults <- TOML file <- `STRATA_*` env.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};
use strata_agent::AgentConfig;
use strata_frontend::security::AuthConfig;
use strata_journal::JournalConfig;
use strata_kafka::KafkaConfig;
use strata_meta::config::ClusterConfig;
use strata_mqtt::MqttConfig;

use super::config_error::ConfigError;

/// Environment variables starting with this prefix are configuration keys.
pub const ENV_PREFIX: &str = "STRATA_";
/// Separates nesting levels in an environment variable name: `STRATA_ADMIN__LISTEN`.
pub const ENV_SEPARATOR: &str = "__";

/// Everything `strata serve` reads at startup. Each field is one `[section]` of the file.
///
/// Every struct denies unknown fields, so a misspelt key is an error that names it instead of
/// a setting silently left at its default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    pub node: NodeSettings,
    pub log: LogSettings,
    pub admin: AdminSettings,
    /// Defaults for new journal streams; owned and documented by `strata-journal`.
    pub journal: JournalConfig,
    /// The MQTT frontend; owned and documented by `strata-mqtt`.
    pub mqtt: MqttConfig,
    /// The Kafka frontend; owned and documented by `strata-kafka`.
    pub kafka: KafkaConfig,
    /// The agent frontend; owned and documented by `strata-agent`.
    pub agent: AgentConfig,
    /// Users, ACL, anonymous access and flapping detection, for every frontend.
    pub auth: AuthConfig,
    /// The node's place in the cluster; owned and documented by `strata-meta`.
    pub cluster: ClusterConfig,
}

/// `[node]`: where this node keeps its data.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSettings {
    /// Root of everything the node writes; the journal lives in `<data_dir>/journal`.
    pub data_dir: PathBuf,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
        }
    }
}

impl NodeSettings {
    /// The directory handed to the journal.
    pub fn journal_dir(&self) -> PathBuf {
        self.data_dir.join("journal")
    }
}

/// `[log]`: how and how much the node logs (always to stderr).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
    /// An `EnvFilter` directive string such as `info` or `info,strata_journal=debug`.
    /// `RUST_LOG`, when set, replaces it.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: "info".to_owned(),
        }
    }
}

/// The shape of each log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Human,
    /// One JSON object per event, fields flattened, with the current span.
    Json,
}

/// `[admin]`: the HTTP server for health checks and metrics.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// Address to bind; port 0 picks a free port (the bound address is printed on stdout).
    pub listen: SocketAddr,
    /// When set, every `/api/v1/...` request must carry `Authorization: Bearer <token>`
    /// (`/health` and `/metrics` stay open).
    pub token: Option<String>,
    /// When set, the admin API is served over HTTPS only.
    pub tls: Option<strata_frontend::tls::TlsSettings>,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 9180)),
            token: None,
            tls: None,
        }
    }
}

impl NodeConfig {
    /// Loads defaults, then `file` if given, then `STRATA_*` environment variables.
    ///
    /// A file named explicitly must exist and be readable: a node silently running on
    /// defaults because of a typo in `--config` is worse than one that refuses to start.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            // Read once here only to turn "missing" and "unreadable" into errors: figment's
            // file provider would report a missing file as an empty one. Parsing is left to
            // figment so that errors carry the file name.
            std::fs::read_to_string(path)
                .map_err(|err| ConfigError::unreadable_file(path, &err))?;
            figment = figment.merge(Toml::file_exact(path));
        }
        let figment = figment.merge(Env::prefixed(ENV_PREFIX).split(ENV_SEPARATOR));
        Self::from_figment(&figment)
    }

    /// Extracts and validates a configuration from already layered sources.
    pub fn from_figment(figment: &Figment) -> Result<Self, ConfigError> {
        let config: Self = figment.extract().map_err(ConfigError::from_figment)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde's types cannot express. (`admin.listen` needs nothing here: it is a
    /// `SocketAddr`, so a bad address already failed to deserialize.)
    fn validate(&self) -> Result<(), ConfigError> {
        if self.node.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("node.data_dir", "must not be empty"));
        }
        let cap = self.mqtt.rate_hard_cap_secs;
        if !(cap.is_finite() && cap > 0.0 && cap <= 3600.0) {
            return Err(ConfigError::invalid(
                "mqtt.rate_hard_cap_secs",
                "must be more than 0 and at most 3600 seconds",
            ));
        }
        for (key, rate) in [
            ("mqtt.max_messages_per_sec", self.mqtt.max_messages_per_sec),
            ("mqtt.max_bytes_per_sec", self.mqtt.max_bytes_per_sec),
        ] {
            if !(rate.is_finite() && rate >= 0.0) {
                return Err(ConfigError::invalid(
                    key,
                    "must be 0 (off) or a positive rate",
                ));
            }
        }
        if let Err(e) = self.cluster.validate() {
            return Err(ConfigError::invalid("cluster", e));
        }
        if let Some(prefix) = &self.agent.mqtt_prefix {
            let plain = !prefix.starts_with('$')
                && prefix.ends_with('/')
                && prefix.len() > 1
                && !prefix.contains(['+', '#', '\0']);
            if !plain {
                return Err(ConfigError::invalid(
                    "agent.mqtt_prefix",
                    "must be a topic prefix ending in /, without wildcards, not starting with $",
                ));
            }
        }
        if self.admin.token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(ConfigError::invalid(
                "admin.token",
                "must be at least 16 characters",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_toml(text: &str) -> Result<NodeConfig, ConfigError> {
        NodeConfig::from_figment(&Figment::from(Toml::string(text)))
    }

    #[test]
    fn no_sources_gives_built_in_defaults() {
        let config = NodeConfig::from_figment(&Figment::new()).expect("defaults are valid");
        assert_eq!(config.node.data_dir, PathBuf::from("./data"));
        assert_eq!(config.node.journal_dir(), PathBuf::from("./data/journal"));
        assert_eq!(config.log.format, LogFormat::Human);
        assert_eq!(config.log.level, "info");
        assert_eq!(
            config.admin.listen,
            "127.0.0.1:9180".parse().expect("valid address")
        );
    }

    #[test]
    fn file_values_override_defaults_key_by_key() {
        let config = from_toml("[admin]\nlisten = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\n")
            .expect("valid file");
        assert_eq!(
            config.admin.listen,
            "127.0.0.1:0".parse().expect("valid address")
        );
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(
            config.log.level, "info",
            "keys not in the file keep their default"
        );
    }

    #[test]
    fn rate_bounds_must_be_finite() {
        let err = from_toml("[mqtt]\nrate_hard_cap_secs = inf\n").expect_err("no end");
        assert_eq!(err.key(), Some("mqtt.rate_hard_cap_secs"));
        let err = from_toml("[mqtt]\nmax_messages_per_sec = -1.0\n").expect_err("negative");
        assert_eq!(err.key(), Some("mqtt.max_messages_per_sec"));
        assert!(from_toml("[mqtt]\nrate_hard_cap_secs = 30.0\n").is_ok());
    }

    #[test]
    fn a_queue_prefix_is_a_plain_topic_level() {
        for bad in ["queues", "$queues/", "q/+/", "/"] {
            let err = from_toml(&format!("[agent]\nmqtt_prefix = \"{bad}\"\n"))
                .expect_err("not a plain prefix");
            assert_eq!(err.key(), Some("agent.mqtt_prefix"), "{bad}");
        }
        assert!(from_toml("[agent]\nmqtt_prefix = \"queues/\"\n").is_ok());
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = from_toml("[admin]\nlisten = 5\n").expect_err("5 is not an address");
        assert_eq!(err.key(), Some("admin.listen"));
    }

    #[test]
    fn bad_address_names_the_key() {
        let err = from_toml("[admin]\nlisten = \"notanaddr\"\n").expect_err("not an address");
        assert_eq!(err.key(), Some("admin.listen"));
        assert!(
            err.to_string().starts_with("config error: admin.listen: "),
            "{err}"
        );
    }

    #[test]
    fn unknown_key_names_the_key() {
        let err = from_toml("[admin]\nlisten_addr = \"x\"\n").expect_err("unknown key");
        assert_eq!(err.key(), Some("admin.listen_addr"));
        assert!(
            err.to_string().contains("unknown key `listen_addr`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_section_names_the_section() {
        let err = from_toml("[nodes]\ndata_dir = \"x\"\n").expect_err("unknown section");
        assert_eq!(err.key(), Some("nodes"));
    }

    #[test]
    fn unknown_log_format_names_the_key() {
        let err = from_toml("[log]\nformat = \"xml\"\n").expect_err("unknown format");
        assert_eq!(err.key(), Some("log.format"));
    }

    #[test]
    fn short_admin_token_is_rejected() {
        let err = from_toml("[admin]\ntoken = \"short\"\n").expect_err("too short");
        assert_eq!(err.key(), Some("admin.token"));
        assert!(from_toml("[admin]\ntoken = \"0123456789abcdef\"\n").is_ok());
    }

    #[test]
    fn empty_data_dir_is_rejected() {
        let err = from_toml("[node]\ndata_dir = \"\"\n").expect_err("empty path");
        assert_eq!(err.key(), Some("node.data_dir"));
    }

    #[test]
    fn missing_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("absent.toml");
        let err = NodeConfig::load(Some(&path)).expect_err("file is missing");
        assert!(err.to_string().contains("absent.toml"), "{err}");
    }

    #[test]
    fn parse_error_is_one_line() {
        let err = from_toml("[admin\nlisten = \"x\"\n").expect_err("broken TOML");
        let text = err.to_string();
        assert!(!text.contains('\n'), "{text:?}");
    }
}
