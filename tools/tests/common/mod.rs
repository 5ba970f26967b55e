//! Shared helpers for the `strata` black-box tests: run the binary, read its output, speak HTTP.
// Each test module uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long any one wait may take. Generous: CI machines are slow and busy, and a test only
/// waits this long when it is about to fail anyway.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// How often a wait re-checks its condition.
const POLL: Duration = Duration::from_millis(20);

/// The stdout line `strata serve` prints once the admin API accepts connections.
pub const ADMIN_LISTENING: &str = "strata: admin listening on ";

/// A `strata` command with a clean environment: no inherited `STRATA_*` variables or
/// `RUST_LOG` from the shell running the tests, and the working directory set to `cwd` so
/// nothing lands in the repository.
pub fn strata(cwd: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
    for (name, _) in std::env::vars_os() {
        let inherited = name.to_string_lossy();
        if inherited.starts_with("STRATA_") || inherited == "RUST_LOG" {
            command.env_remove(&name);
        }
    }
    command.current_dir(cwd);
    // Frontends listen on free loopback ports in tests; a test may override this.
    command.env("STRATA_MQTT__LISTEN", "127.0.0.1:0");
    command.env("STRATA_MQTT__WS_LISTEN", "127.0.0.1:0");
    command.env("STRATA_KAFKA__LISTEN", "127.0.0.1:0");
    command.env("STRATA_AGENT__LISTEN", "127.0.0.1:0");
    command
}

/// The stdout line `strata serve` prints once the Kafka listener accepts connections.
pub const KAFKA_LISTENING: &str = "strata: kafka listening on ";

/// The stdout line `strata serve` prints once the MQTT listener accepts connections.
pub const MQTT_LISTENING: &str = "strata: mqtt listening on ";

/// A running `strata` process whose stdout and stderr are read line by line in the background.
/// Dropping it kills the process if it is still running.
pub struct Process {
    child: Child,
    stdout: Receiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Process {
    pub fn spawn(mut command: Command) -> Self {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn strata");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");

        let (lines, stdout_rx) = mpsc::channel();
        let stderr_lines = Arc::new(Mutex::new(Vec::new()));
        let stderr_sink = Arc::clone(&stderr_lines);
        let readers = vec![
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if lines.send(line).is_err() {
                        break;
                    }
                }
            }),
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    stderr_sink.lock().expect("stderr lock").push(line);
                }
            }),
        ];
        Self {
            child,
            stdout: stdout_rx,
            stderr: stderr_lines,
            readers,
        }
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits in i32"))
    }

    /// Waits for a stdout line starting with `prefix` and returns the rest of it.
    pub fn wait_for_stdout(&self, prefix: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.to_owned();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no stdout line {prefix:?} within {DEADLINE:?}; stderr:\n{}",
                        self.stderr()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "strata closed stdout before printing {prefix:?}; stderr:\n{}",
                        self.stderr()
                    )
                }
            }
        }
    }

    /// Waits until `strata serve` reports its admin address, and returns it.
    pub fn wait_for_admin(&self) -> SocketAddr {
        let addr = self.wait_for_stdout(ADMIN_LISTENING);
        addr.trim().parse().expect("admin address parses")
    }

    /// Waits for a stderr line containing `needle` (log lines, which stdout does not carry).
    pub fn wait_for_stderr(&self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let found = self
                .stderr
                .lock()
                .expect("stderr lock")
                .iter()
                .find(|l| l.contains(needle))
                .cloned();
            if let Some(line) = found {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no stderr line containing {needle:?} within {DEADLINE:?}; stderr:\n{}",
                self.stderr()
            );
            thread::sleep(POLL);
        }
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), signal).expect("send signal");
    }

    /// Waits for the process to exit, then for its output to be read to the end.
    pub fn wait_for_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "strata did not exit within {DEADLINE:?}; stderr:\n{}",
                self.stderr()
            );
            thread::sleep(POLL);
        };
        for reader in self.readers.drain(..) {
            reader.join().expect("output reader");
        }
        status
    }

    /// Everything read from stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").join("\n")
    }

    /// Non-empty stderr lines read so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        let lines = self.stderr.lock().expect("stderr lock");
        lines
            .iter()
            .filter(|line| !line.trim().is_empty())
            .cloned()
            .collect()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Writes `contents` to `<dir>/<name>` and returns the path.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write test file");
    path
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl HttpResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("body is JSON")
    }
}

/// `GET path` over a fresh connection, by hand: one request, `Connection: close`, read to EOF.
pub fn http_get(addr: SocketAddr, path: &str) -> HttpResponse {
    let mut stream = TcpStream::connect_timeout(&addr, DEADLINE).expect("connect to admin");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("set read timeout");
    stream
        .set_write_timeout(Some(DEADLINE))
        .expect("set write timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> HttpResponse {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .expect("response has a header block");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|encoding| encoding.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// Decodes a chunked body: `<hex size>\r\n<data>\r\n` repeated, ending with a zero size.
fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    loop {
        let (size_line, after) = rest.split_once("\r\n").expect("chunk size line");
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).expect("hex chunk size");
        if size == 0 {
            return body;
        }
        body.push_str(&after[..size]);
        rest = after[size..]
            .strip_prefix("\r\n")
            .expect("CRLF after chunk");
    }
}
