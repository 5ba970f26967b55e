//! Logging for `strata serve`: the `[log]` settings turned into a tracing subscriber on stderr,
//! filtered through a [`LogControl`] the admin API can change at runtime.

use std::io::IsTerminal;
use std::str::FromStr;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use super::config::{LogFormat, LogSettings};
use super::config_error::ConfigError;
use super::log_filter::LogControl;

/// Builds the event filter: `RUST_LOG` when set and not empty, otherwise `log.level`.
pub fn filter(settings: &LogSettings) -> Result<LogControl, ConfigError> {
    let (directives, filter) = match std::env::var("RUST_LOG") {
        Ok(rust_log) if !rust_log.trim().is_empty() => {
            let f = filter_from(&settings.level, Some(&rust_log))?;
            (rust_log, f)
        }
        Ok(_) | Err(std::env::VarError::NotPresent) => {
            (settings.level.clone(), filter_from(&settings.level, None)?)
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(ConfigError::env_var("RUST_LOG", "value is not valid UTF-8"));
        }
    };
    Ok(LogControl::new(directives, filter))
}

/// Parses level directives as `log.level` takes them (for changes at runtime).
pub fn parse_directives(level: &str) -> Result<EnvFilter, ConfigError> {
    filter_from(level, None)
}

/// [`filter`] without the environment, so it can be tested.
fn filter_from(level: &str, rust_log: Option<&str>) -> Result<EnvFilter, ConfigError> {
    if let Some(rust_log) = rust_log {
        return EnvFilter::try_new(rust_log).map_err(|err| {
            ConfigError::env_var("RUST_LOG", format!("invalid filter `{rust_log}`: {err}"))
        });
    }
    check_level_words(level)?;
    // EnvFilter does not accept spaces around the commas people write in config files.
    let level: Vec<&str> = level
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    let level = level.join(",");
    EnvFilter::try_new(&level).map_err(|err| {
        ConfigError::invalid("log.level", format!("invalid filter `{level}`: {err}"))
    })
}

/// `EnvFilter` reads a bare word as a target name, so `level = "inof"` would be accepted and
/// silence every log line. In the config file a bare word must therefore be a level; a
/// target needs its level spelt out (`strata_journal=debug`). `RUST_LOG` keeps its usual
/// meaning and is not checked this way.
fn check_level_words(level: &str) -> Result<(), ConfigError> {
    let bare_words = level
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty() && !d.contains(['=', '[']));
    for word in bare_words {
        if LevelFilter::from_str(word).is_err() {
            return Err(ConfigError::invalid(
                "log.level",
                format!(
                    "`{word}` is not a level (off, error, warn, info, debug, trace); \
                     to filter a target write `{word}=<level>`"
                ),
            ));
        }
    }
    Ok(())
}

/// Installs the global subscriber. Fails only if one is already installed.
///
/// JSON lines carry the event's fields at the top level and the fields of the spans it is
/// in (such as a connection's `client_id`) under `spans`, innermost last.
pub fn install(format: LogFormat, control: &LogControl) -> anyhow::Result<()> {
    let layer = match format {
        LogFormat::Human => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(control.filter())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .with_filter(control.filter())
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(layer)
        .try_init()
        .map_err(|err| anyhow::anyhow!("cannot install the log subscriber: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_levels_and_target_directives_are_accepted() {
        for level in [
            "info",
            "debug",
            "off",
            "warn,strata_journal=trace",
            "info, h2=warn",
        ] {
            assert!(filter_from(level, None).is_ok(), "{level}");
        }
    }

    #[test]
    fn misspelt_level_is_a_config_error_naming_the_key() {
        let err = filter_from("inof", None).expect_err("typo");
        assert_eq!(err.key(), Some("log.level"));
        assert!(err.to_string().contains("inof"), "{err}");
    }

    #[test]
    fn malformed_directive_is_a_config_error_naming_the_key() {
        let err = filter_from("info,!!!=debug", None).expect_err("malformed");
        assert_eq!(err.key(), Some("log.level"));
    }

    #[test]
    fn rust_log_replaces_the_configured_level() {
        // A bad configured level does not matter once RUST_LOG is set.
        assert!(filter_from("inof", Some("debug")).is_ok());
        let err = filter_from("info", Some("!!!")).expect_err("malformed RUST_LOG");
        assert!(err.to_string().contains("RUST_LOG"), "{err}");
    }
}
