//! The shipped image, tested as shipped: the static (musl) release binary the Dockerfile builds,
//! in a root filesystem holding only that binary and a CA bundle (what distroless/static adds
//! that matters: `/etc/ssl/certs/ca-certificates.crt`), run as distroless' nonroot user
//! (65532) under `chroot` — no container engine needed.
//!
//! scripts/test builds the binary the Dockerfile's way (`TARGET_CC=musl-gcc cargo build
//! --release --locked --target <arch>-unknown-linux-musl`) and passes its path in
//! `PULLPROBE_IMAGE_BINARY`. Without it (a plain `cargo test`) the tests say so and skip; under
//! the test command (`PULLPROBE_REQUIRE_TOOLS`) they fail instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::registry::FakeRegistry;
use crate::support::tls::{TestCa, Validity, server_config};

/// The Dockerfile's `ENTRYPOINT`/`CMD`, read from the Dockerfile itself.
fn dockerfile_command() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    let json_list = |prefix: &str| -> Vec<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|rest| serde_json::from_str::<Vec<String>>(rest.trim()).unwrap())
            .unwrap_or_default()
    };
    let mut cmd = json_list("ENTRYPOINT ");
    assert_eq!(cmd, ["/pullprobe"], "ENTRYPOINT");
    cmd.extend(json_list("CMD "));
    cmd
}

fn binary() -> Option<PathBuf> {
    match std::env::var_os("PULLPROBE_IMAGE_BINARY") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            assert!(
                std::env::var_os("PULLPROBE_REQUIRE_TOOLS").is_none(),
                "PULLPROBE_IMAGE_BINARY is not set; scripts/test builds the image's binary"
            );
            eprintln!("SKIP: PULLPROBE_IMAGE_BINARY is not set (scripts/test builds it)");
            None
        }
    }
}

/// A root filesystem: `/pullprobe` and `/etc/ssl/certs/ca-certificates.crt` (the system bundle
/// plus `extra_ca`), nothing else.
fn image_root(binary: &Path, extra_ca: Option<&str>) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::copy(binary, root.path().join("pullprobe")).unwrap();
    let certs = root.path().join("etc/ssl/certs");
    std::fs::create_dir_all(&certs).unwrap();
    let mut bundle = std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    if let Some(pem) = extra_ca {
        bundle.extend_from_slice(pem.as_bytes());
    }
    std::fs::write(certs.join("ca-certificates.crt"), bundle).unwrap();
    // chroot needs to traverse the directory as 65532.
    Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(root.path())
        .status()
        .unwrap();
    root
}

/// `chroot --userspec=65532:65532 ROOT /pullprobe ARGS`, with an empty environment.
fn in_image(root: &Path, args: &[&str]) -> std::process::Output {
    // The environment is cleared for pullprobe, so chroot is named by its path.
    let chroot = crate::docker_registry::require_tool("chroot").expect("coreutils' chroot");
    Command::new(chroot)
        .arg("--userspec=65532:65532")
        .arg(root)
        .arg("/pullprobe")
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn the_binary_is_static() {
    let Some(bin) = binary() else { return };
    let out = Command::new("ldd").arg(&bin).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("not a dynamic executable") || text.contains("statically linked"),
        "{text}"
    );
}

/// `--check` from the empty root: a TLS registry whose CA is only in the image's bundle
/// verifies; without it, `tls_untrusted`. Proves the binary runs alone, resolves nothing it
/// needs from the host, and reads the bundle distroless ships.
#[tokio::test(flavor = "multi_thread")]
async fn check_runs_from_an_empty_root_with_only_a_ca_bundle() {
    let Some(bin) = binary() else { return };
    pullprobe::install_crypto_provider();
    crate::support::init();
    let ca = TestCa::new("image test CA");
    let reg = FakeRegistry::builder()
        .tls(server_config(&ca.leaf(&["127.0.0.1"], Validity::Valid)))
        .repo("app", &["1"])
        .start()
        .await;
    let image = format!("127.0.0.1:{}/app:1", reg.addr.port());
    // A loopback registry would be reached without verification (containerd's default): the
    // target's tls block asks for verification against the system roots.
    let run = |root: tempfile::TempDir| {
        let image = image.clone();
        tokio::task::spawn_blocking(move || {
            let cfg = root.path().join("config.yaml");
            std::fs::write(
                &cfg,
                format!(
                    "targets:\n  - image: {image}\n    tls:\n      insecure_skip_verify: false\n"
                ),
            )
            .unwrap();
            Command::new("chmod").arg("a+r").arg(&cfg).status().unwrap();
            let out = in_image(
                root.path(),
                &[
                    "--check",
                    "--output",
                    "json",
                    "--config.file",
                    "/config.yaml",
                ],
            );
            (out, root)
        })
    };
    let (out, _root) = run(image_root(&bin, Some(&ca.ca_pem()))).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "no JSON: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(out.status.code(), Some(0), "{json:#}");
    assert_eq!(json["results"][0]["ok"], true, "{json:#}");

    let (out, _root) = run(image_root(&bin, None)).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["results"][0]["reason"], "tls_untrusted", "{json:#}");
}

/// The Dockerfile's command (ENTRYPOINT + CMD) starts the agent on the embedded default in the
/// empty root: it serves `/metrics` on :9865 and is ready. Run in a private network namespace
/// (only loopback), so it probes nothing outside and its port is free.
#[test]
fn the_dockerfile_command_runs_the_agent_on_the_embedded_default() {
    let Some(bin) = binary() else { return };
    let root = image_root(&bin, None);
    let command = dockerfile_command();
    let script = format!(
        r#"ip link set lo up
chroot --userspec=65532:65532 "$1" {} >"$1/agent.log" 2>&1 &
agent=$!
for _ in $(seq 1 100); do
  if python3 -c 'import urllib.request,sys; r=urllib.request.urlopen("http://127.0.0.1:9865/-/ready", timeout=1); sys.stdout.write(urllib.request.urlopen("http://127.0.0.1:9865/metrics", timeout=1).read().decode())' >"$1/metrics.txt" 2>/dev/null; then
    kill -TERM $agent; wait $agent; exit $?
  fi
  kill -0 $agent 2>/dev/null || {{ wait $agent; echo "agent exited: $?"; exit 3; }}
  sleep 0.1
done
kill $agent; exit 4
"#,
        command
            .iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut child = Command::new("unshare")
        .args(["--net", "--fork", "sh", "-c", &script, "sh"])
        .arg(root.path())
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the agent did not answer"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = std::fs::read_to_string(root.path().join("agent.log")).unwrap_or_default();
    assert!(status.success(), "{status}: {log}");
    let metrics = std::fs::read_to_string(root.path().join("metrics.txt")).unwrap();
    assert!(metrics.contains("pullprobe_build_info"), "{metrics}");
    assert!(
        metrics.contains("pullprobe_probe_interval_seconds{target=\"docker-hub\""),
        "{metrics}"
    );
}
