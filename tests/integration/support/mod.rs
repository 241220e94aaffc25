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
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        json,
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
