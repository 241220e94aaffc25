//! In-process fakes for the integration tests: DNS ([`dns`]), certificates and broken TLS
//! endpoints ([`tls`]), an OCI registry with its token server ([`registry`]), and raw HTTP
//! servers that misbehave byte by byte ([`hostile`]); and the real containerd client to compare
//! against ([`containerd`]).
//!
//! Everything listens on loopback port 0 and stops when its handle is dropped: each fake owns a
//! `CancellationToken` drop guard, and every task it spawns runs until that token is cancelled.
#![allow(dead_code)]

pub mod containerd;
pub mod dns;
pub mod hostile;
pub mod kubeapi;
pub mod proxy;
pub mod registry;
pub mod tls;

use std::ffi::OsStr;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;

use tokio::net::TcpListener;
use tokio_util::sync::{CancellationToken, DropGuard};

/// Installs the ring crypto provider for code that uses the process default (reqwest, the engine).
pub fn init() {
    pullprobe::install_crypto_provider();
}

/// Spawns `fut` on the current runtime; it is dropped as soon as `stop` is cancelled.
pub(crate) fn spawn_until<F>(stop: &CancellationToken, fut: F)
where
    F: Future + Send + 'static,
{
    let stop = stop.clone();
    tokio::spawn(async move {
        stop.run_until_cancelled_owned(fut).await;
    });
}

/// Keeps a [`silent_listener`] running; dropping it closes the port and its connections.
pub struct SilentGuard(DropGuard);

/// A loopback TCP port that accepts connections and never sends a byte.
pub async fn silent_listener() -> (SocketAddr, SilentGuard) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let token = stop.clone();
    spawn_until(&stop, async move {
        while let Ok((stream, _)) = listener.accept().await {
            // Hold the connection open until the guard is dropped.
            spawn_until(&token, async move {
                let _stream = stream;
                std::future::pending::<()>().await;
            });
        }
    });
    (addr, SilentGuard(stop.drop_guard()))
}

/// A loopback port that was free a moment ago, for daemons that must be told their port.
pub fn free_port() -> u16 {
    closed_port().port()
}

/// A loopback address with nothing listening (bound, then released), so connecting is refused.
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap()
}

/// Writes a docker `config.json` at `path` with one `auths` entry, `key` → `user:pass`.
pub fn write_docker_config(path: &Path, key: &str, user: &str, pass: &str) {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    std::fs::write(
        path,
        format!(r#"{{"auths":{{"{key}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
}

/// What one run of the `pullprobe` binary printed, and how it exited.
pub struct Run {
    /// The exit status; -1 when a signal ended the process.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// stdout as JSON, `Null` when it is not JSON (text output, an error).
    pub json: serde_json::Value,
}

/// Runs the `pullprobe` binary with `args` and waits for it (blocking: from async tests, call it
/// in `spawn_blocking`).
pub fn pullprobe<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = Command::new(env!("CARGO_BIN_EXE_pullprobe"))
        .args(args)
        .output()
        .unwrap();
    Run::from_output(&out)
}

impl Run {
    /// What a finished `pullprobe` printed, checked first: no line a person reads may show a
    /// library's rendering of a value ([`pullprobe::outcome::LIBRARY_TEXT`]: `Os {`, `(os
    /// error 2)`, the `\"` of `{:?}` …). Panics naming the stream and the line.
    pub fn from_output(out: &std::process::Output) -> Run {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_words("stdout", &stdout);
        assert_words("stderr", &stderr);
        let json = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout,
            stderr,
            json,
        }
    }
}

/// The level of a log line in any of `--log.format` text, logfmt or JSON, lower case; `None`
/// for a line that is not a log line (a message, a table row, an error).
fn log_level(line: &str, json: Option<&serde_json::Value>) -> Option<String> {
    if let Some(v) = json {
        return v.get("level")?.as_str().map(str::to_ascii_lowercase);
    }
    if line.starts_with("ts=") {
        let rest = &line[line.find(" level=")? + 7..];
        return Some(rest.split(' ').next()?.to_owned());
    }
    // text: `2026-12-01T06:00:00.123456Z  INFO message…`
    let mut words = line.split_whitespace();
    let ts = words.next()?;
    let level = words.next()?;
    (ts.starts_with(|c: char| c.is_ascii_digit())
        && ts.contains('T')
        && ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level))
    .then(|| level.to_ascii_lowercase())
}

/// Panics when `text` (one stream of a run) shows library text. A JSON document on stdout
/// (`--output json`) is checked value by value, since JSON itself escapes `"`. Debug and trace log lines
/// are skipped: they may carry library detail by design. Other log lines are checked, except
/// for `\"`, with which text and logfmt lines quote a field value.
fn assert_words(stream: &str, text: &str) {
    if stream == "stdout"
        && let Ok(doc) = serde_json::from_str::<serde_json::Value>(text)
        && (doc.is_object() || doc.is_array())
    {
        assert_json_words(stream, text, &doc, &pullprobe::outcome::LIBRARY_TEXT);
        return;
    }
    for line in text.lines() {
        let json = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .filter(serde_json::Value::is_object);
        let level = log_level(line, json.as_ref());
        if matches!(level.as_deref(), Some("debug" | "trace")) {
            continue;
        }
        let patterns: Vec<&str> = pullprobe::outcome::LIBRARY_TEXT
            .iter()
            .copied()
            .filter(|p| level.is_none() || *p != "\\\"")
            .collect();
        match &json {
            Some(v) => assert_json_words(stream, line, v, &patterns),
            None => {
                if let Some(p) = patterns.iter().find(|p| line.contains(**p)) {
                    panic!(
                        "pullprobe's {stream} shows library text {p:?} in the line:\n{line}\n--- all of {stream}:\n{text}"
                    );
                }
            }
        }
    }
}

fn assert_json_words(stream: &str, whole: &str, v: &serde_json::Value, patterns: &[&str]) {
    match v {
        serde_json::Value::String(s) => {
            if let Some(p) = patterns.iter().find(|p| s.contains(**p)) {
                panic!(
                    "pullprobe's {stream} shows library text {p:?} in the value:\n{s}\n--- all of {stream}:\n{whole}"
                );
            }
        }
        serde_json::Value::Array(items) => {
            for i in items {
                assert_json_words(stream, whole, i, patterns);
            }
        }
        serde_json::Value::Object(members) => {
            for (k, i) in members {
                assert_json_words(
                    stream,
                    whole,
                    &serde_json::Value::String(k.clone()),
                    patterns,
                );
                assert_json_words(stream, whole, i, patterns);
            }
        }
        _ => {}
    }
}

/// `pullprobe --check --output json --config.file <config> <extra>` from an async test: the
/// one result's JSON object (panics, showing the output, when there is none).
pub async fn check_json(config: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "--check".to_owned(),
        "--output".to_owned(),
        "json".to_owned(),
        "--config.file".to_owned(),
        config.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let run = tokio::task::spawn_blocking(move || pullprobe(args))
        .await
        .unwrap();
    let r = run.json["results"][0].clone();
    assert!(
        r.is_object(),
        "pullprobe printed no result: {}\n{}",
        run.stdout,
        run.stderr
    );
    r
}

/// The guard of [`Run::from_output`]: library text in a message or a JSON value fails the run;
/// JSON's and logfmt's own quoting, and debug lines, do not.
#[test]
fn messages_guard_catches_library_text_and_lets_format_escapes_through() {
    let caught = |stream: &str, text: &str| {
        let text = text.to_owned();
        let stream = stream.to_owned();
        std::panic::catch_unwind(move || assert_words(&stream, &text)).is_err()
    };
    assert!(caught(
        "stderr",
        "pullprobe: cannot read x: No such file (os error 2)\n"
    ));
    assert!(caught("stderr", "error: invalid reference \"a\\\"b\"\n"));
    assert!(caught(
        "stdout",
        r#"{"results": [{"message": "Os { code: 2 }"}]}"#
    ));
    assert!(caught(
        "stderr",
        "ts=2026-12-01T06:00:00.000Z level=warn msg=\"x\" error=\"Some(1)\"\n"
    ));
    assert!(!caught(
        "stdout",
        r#"{"results": [{"message": "invalid image reference \"a\"b\""}]}"#
    ));
    assert!(!caught(
        "stderr",
        "ts=2026-12-01T06:00:00.000Z level=warn msg=\"say \\\"x\\\"\"\n"
    ));
    assert!(!caught(
        "stderr",
        "2026-12-01T06:00:00.123456Z DEBUG hyper: Os { code: 104 }\n"
    ));
    assert!(!caught(
        "stderr",
        "{\"level\":\"DEBUG\",\"message\":\"Custom { kind: Other }\"}\n"
    ));
}
