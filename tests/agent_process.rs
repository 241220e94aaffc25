//! The `pullprobe` binary in agent mode: ready, reloads on SIGHUP, exits 0 on SIGTERM.

use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A port that was free a moment ago (the binary must bind it itself).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn kill(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal}");
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Kills the child if the test fails half-way.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]

async fn sigterm_exits_zero_within_the_grace_period() {
    pullprobe::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    // Nothing listens on port 1; a long interval keeps the probes out of the way.
    std::fs::write(
        &config,
        "interval: 1h\ntimeout: 2s\ntargets:\n  - name: closed\n    image: 127.0.0.1:1/app:v1\n    plain_http: true\n",
    )
    .unwrap();
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_pullprobe"))
        .arg("--config.file")
        .arg(&config)
        .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Guard(child);
    let client = reqwest::Client::new();
    let ready = format!("http://127.0.0.1:{port}/-/ready");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = client.get(&ready).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "the agent exited early"
        );
        assert!(Instant::now() < deadline, "the agent never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // SIGHUP reloads instead of terminating.
    kill(&child.0, "HUP");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "SIGHUP must not stop the agent"
    );
    let metrics = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("pullprobe_config_last_reload_successful 1"));

    kill(&child.0, "TERM");
    let status = wait_exit(&mut child.0, Duration::from_secs(3)).expect("exits within 3 s");
    assert!(status.success(), "{status}");
}
