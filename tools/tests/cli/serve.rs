//! `strata serve` as a black box: env overrides, the admin API, signals and config errors.

use std::path::Path;
use std::process::Command;

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::common::{Process, http_get, strata, write_file};

/// `strata serve` with data under `dir` and the admin API on a free loopback port.
fn serve(dir: &Path) -> Command {
    let mut command = strata(dir);
    command
        .arg("serve")
        .env("STRATA_ADMIN__LISTEN", "127.0.0.1:0")
        .env("STRATA_NODE__DATA_DIR", dir.join("data"));
    command
}

fn tempdir() -> TempDir {
    tempfile::tempdir().expect("create tempdir")
}

#[test]
fn starts_from_env_overrides_and_serves_health_and_metrics() {
    let dir = tempdir();
    let mut command = serve(dir.path());
    command
        .env("STRATA_JOURNAL__SEGMENT_BYTES", "1048576")
        .env("STRATA_LOG__FORMAT", "json");
    let mut node = Process::spawn(command);
    let admin = node.wait_for_admin();
    assert!(admin.ip().is_loopback(), "{admin}");
    assert_ne!(
        admin.port(),
        0,
        "the real port is printed, not the requested 0"
    );

    let health = http_get(admin, "/health");
    assert_eq!(health.status, 200, "{health:?}");
    let content_type = health.headers.get("content-type").map(String::as_str);
    assert_eq!(content_type, Some("application/json"), "{health:?}");
    let body = health.json();
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"), "{body}");
    assert!(body["uptime_seconds"].is_u64(), "{body}");

    let metrics = http_get(admin, "/metrics");
    assert_eq!(metrics.status, 200, "{metrics:?}");
    let content_type = metrics.headers.get("content-type").map(String::as_str);
    assert_eq!(
        content_type,
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let build_info = format!(
        "strata_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    for expected in [
        build_info.as_str(),
        "strata_uptime_seconds ",
        "process_cpu_seconds_total ",
    ] {
        assert!(
            metrics.body.contains(expected),
            "no {expected:?} in:\n{}",
            metrics.body
        );
    }

    let missing = http_get(admin, "/no/such/path");
    assert_eq!(missing.status, 404, "{missing:?}");
    assert_eq!(missing.json()["code"], "not_found", "{missing:?}");

    assert!(
        dir.path().join("data/journal").is_dir(),
        "journal lives under <data_dir>/journal"
    );

    // `log.format = "json"` came from the environment: every log line is one JSON object.
    node.wait_for_stderr("admin listening on");
    for line in node.stderr_lines() {
        let event: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|err| panic!("log line is not JSON ({err}): {line}"));
        assert!(
            event.get("level").is_some() && event.get("message").is_some(),
            "{line}"
        );
    }

    node.signal(Signal::SIGTERM);
    assert_eq!(
        node.wait_for_exit().code(),
        Some(0),
        "stderr:\n{}",
        node.stderr()
    );
}

fn assert_stops_cleanly_on(signal: Signal) {
    let dir = tempdir();
    let mut node = Process::spawn(serve(dir.path()));
    node.wait_for_admin();

    node.signal(signal);
    let status = node.wait_for_exit();
    assert_eq!(
        status.code(),
        Some(0),
        "{signal}: {status}; stderr:\n{}",
        node.stderr()
    );
    let stderr = node.stderr();
    assert!(
        stderr.contains("closing journal"),
        "{signal}: stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("stopped cleanly"),
        "{signal}: stderr:\n{stderr}"
    );
}

#[test]
fn sigterm_stops_cleanly() {
    assert_stops_cleanly_on(Signal::SIGTERM);
}

#[test]
fn sigint_stops_cleanly() {
    assert_stops_cleanly_on(Signal::SIGINT);
}

#[test]
fn admin_port_in_use_exits_1_after_closing_the_journal() {
    let dir = tempdir();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port to take");
    let addr = taken.local_addr().expect("taken address");
    let mut command = serve(dir.path());
    command.env("STRATA_ADMIN__LISTEN", addr.to_string());

    let mut node = Process::spawn(command);
    let status = node.wait_for_exit();
    assert_eq!(
        status.code(),
        Some(1),
        "{status}; stderr:\n{}",
        node.stderr()
    );
    let lines = node.stderr_lines();
    let last = lines.last().map(String::as_str).unwrap_or_default();
    assert!(
        last.starts_with("strata: cannot bind admin listener on "),
        "stderr:\n{lines:#?}"
    );
    assert!(last.contains(&addr.to_string()), "stderr:\n{lines:#?}");
    let stderr = node.stderr();
    assert!(stderr.contains("closing journal"), "stderr:\n{stderr}");
    assert!(!stderr.contains("stopped cleanly"), "stderr:\n{stderr}");
}

/// Runs `command` to exit and checks the contract for configuration errors: exit code 2 and
/// exactly one stderr line, `strata: config error: ...`, containing every one of `needles`.
fn assert_config_error(command: Command, needles: &[&str]) {
    let mut node = Process::spawn(command);
    let status = node.wait_for_exit();
    let lines = node.stderr_lines();
    assert_eq!(status.code(), Some(2), "{status}; stderr:\n{lines:#?}");
    assert_eq!(lines.len(), 1, "want one stderr line, got:\n{lines:#?}");
    let line = &lines[0];
    assert!(line.starts_with("strata: config error: "), "{line}");
    for needle in needles {
        assert!(line.contains(needle), "no {needle:?} in: {line}");
    }
}

#[test]
fn wrong_type_in_file_exits_2_naming_the_key_and_file() {
    let dir = tempdir();
    let file = write_file(
        dir.path(),
        "strata.toml",
        "[journal]\nsegment_bytes = \"lots\"\n",
    );
    let mut command = serve(dir.path());
    command.arg("--config").arg(&file);
    assert_config_error(command, &["journal.segment_bytes", "strata.toml"]);
}

#[test]
fn unknown_key_in_file_exits_2_naming_the_key() {
    let dir = tempdir();
    let file = write_file(dir.path(), "strata.toml", "[admin]\nlisten_addr = \"x\"\n");
    let mut command = serve(dir.path());
    command.arg("--config").arg(&file);
    assert_config_error(command, &["admin.listen_addr", "unknown key"]);
}

#[test]
fn bad_env_var_exits_2_naming_the_key_and_variable() {
    let dir = tempdir();
    let mut command = serve(dir.path());
    command.env("STRATA_ADMIN__LISTEN", "notanaddr");
    assert_config_error(command, &["admin.listen", "STRATA_ADMIN__LISTEN"]);
}

#[test]
fn missing_config_file_exits_2_naming_the_file() {
    let dir = tempdir();
    let mut command = serve(dir.path());
    command.arg("--config").arg(dir.path().join("absent.toml"));
    assert_config_error(command, &["absent.toml"]);
}

#[test]
fn config_errors_start_nothing() {
    let dir = tempdir();
    let mut command = serve(dir.path());
    command.env("STRATA_LOG__FORMAT", "xml");
    assert_config_error(command, &["log.format"]);
    assert!(
        !dir.path().join("data").exists(),
        "no data directory for a refused config"
    );
}
