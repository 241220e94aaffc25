//! End to end against the real registry: Debian's `docker-registry` (distribution 2.8) with
//! TLS (a CA generated here) and htpasswd Basic auth, an image pushed through the blob-upload
//! API, probed by the `pullprobe` binary: ok, no credentials, wrong credentials, missing tag,
//! missing repository — and a debug log that never shows the password.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::Digest as _;

use crate::support::tls::{TestCa, Validity};
use crate::support::{Run, free_port, pullprobe};

const USER: &str = "probe-user";
const PASSWORD: &str = "s3cret-Pa55word";

/// Finds a tool, or says why the test cannot run. On CI a missing tool is a failure.
pub fn require_tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none()
                && std::env::var_os("PULLPROBE_REQUIRE_TOOLS").is_none(),
            "{name} is not installed; the test command (scripts/test) installs it"
        );
        eprintln!(
            "SKIP: {name} is not installed (run scripts/test to install the test dependencies)"
        );
    }
    found
}

struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry(bin: &Path, ca: &TestCa) -> Registry {
    let dir = tempfile::tempdir().unwrap();
    let leaf = ca.leaf(&["127.0.0.1", "localhost"], Validity::Valid);
    std::fs::write(dir.path().join("cert.pem"), &leaf.cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), &leaf.key_pem).unwrap();
    let htpasswd = Command::new("htpasswd")
        .args(["-Bbn", USER, PASSWORD])
        .output()
        .expect("htpasswd (apache2-utils) runs");
    assert!(htpasswd.status.success());
    std::fs::write(dir.path().join("htpasswd"), htpasswd.stdout).unwrap();
    let port = free_port();
    let d = dir.path().display();
    let config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {d}/data\n  delete:\n    enabled: true\n\
         http:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {d}/cert.pem\n    key: {d}/key.pem\n\
         auth:\n  htpasswd:\n    realm: pullprobe-test\n    path: {d}/htpasswd\n"
    );
    std::fs::write(dir.path().join("config.yml"), config).unwrap();
    let child = Command::new(bin)
        .arg("serve")
        .arg(dir.path().join("config.yml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry starts");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "docker-registry did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Registry { child, port, dir }
}

fn client(ca: &TestCa) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.ca_pem().as_bytes()).unwrap()])
        .build()
        .unwrap()
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex(&sha2::Sha256::digest(data)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Pushes a blob with the monolithic upload (POST, then PUT with the digest).
async fn push_blob(http: &reqwest::Client, base: &str, repo: &str, data: &[u8]) -> String {
    let digest = sha256(data);
    let start = http
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 202, "upload start");
    let location = start.headers()["location"].to_str().unwrap().to_owned();
    let location = if location.starts_with("http") {
        location
    } else {
        format!("{base}{location}")
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let put = http
        .put(format!("{location}{sep}digest={digest}"))
        .basic_auth(USER, Some(PASSWORD))
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201, "blob upload");
    digest
}

/// Pushes a one-layer OCI image and returns its manifest digest.
async fn push_image(http: &reqwest::Client, base: &str, repo: &str, tag: &str) -> String {
    let layer =
        b"pullprobe test layer: not a real tarball, the registry does not look inside".to_vec();
    let layer_digest = push_blob(http, base, repo, &layer).await;
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let config_digest = push_blob(http, base, repo, &config).await;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer.len()}],
    })
    .to_string();
    let resp = http
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .basic_auth(USER, Some(PASSWORD))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        201,
        "manifest upload: {:?}",
        resp.text().await
    );
    sha256(manifest.as_bytes())
}

/// Runs `pullprobe --check --output json` with a config and images.
pub fn run_check(config: &Path, images: &[&str], extra: &[&str]) -> Run {
    let config = config.as_os_str();
    let args = ["--check", "--output", "json", "--config.file"].map(OsStr::new);
    pullprobe(
        args.into_iter()
            .chain([config])
            .chain(extra.iter().chain(images).map(OsStr::new)),
    )
}

fn auth_file(dir: &Path, name: &str, key: &str, user: &str, pass: &str) -> PathBuf {
    let path = dir.join(name);
    crate::support::write_docker_config(&path, key, user, pass);
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn real_docker_registry_with_tls_and_htpasswd() {
    let Some(bin) = require_tool("docker-registry") else {
        return;
    };
    if require_tool("htpasswd").is_none() {
        return;
    }
    pullprobe::install_crypto_provider();
    let ca = TestCa::new("pullprobe e2e CA");
    let reg = start_registry(&bin, &ca);
    let base = format!("https://127.0.0.1:{}", reg.port);
    let http = client(&ca);
    let digest = push_image(&http, &base, "team/app", "v1.2.3").await;
    push_image(&http, &base, "team/app", "v1.2").await;

    let dir = reg.dir.path();
    let ca_file = ca.write_ca_pem(dir);
    let authority = format!("127.0.0.1:{}", reg.port);
    let good = auth_file(dir, "good.json", &authority, USER, PASSWORD);
    let bad = auth_file(dir, "bad.json", &authority, USER, "not-the-Pa55word");
    let config = dir.join("pullprobe.yaml");
    std::fs::write(
        &config,
        format!(
            "timeout: 10s\ntargets:\n\
             - name: good\n  image: {authority}/team/app:v1.2.3\n  docker_config: {}\n  tls:\n    ca_file: {}\n\
             - name: anonymous\n  image: {authority}/team/app:v1.2.3\n  tls:\n    ca_file: {}\n\
             - name: bad-creds\n  image: {authority}/team/app:v1.2.3\n  docker_config: {}\n  tls:\n    ca_file: {}\n",
            good.display(),
            ca_file.display(),
            ca_file.display(),
            bad.display(),
            ca_file.display()
        ),
    )
    .unwrap();

    let run = run_check(&config, &[], &["--log.level", "debug"]);
    assert_eq!(
        run.code, 1,
        "one target fails: {}\n{}",
        run.stdout, run.stderr
    );
    let results = run.json["results"].as_array().expect("results array");
    let by_name = |n: &str| {
        results
            .iter()
            .find(|r| r["target"] == n)
            .unwrap_or_else(|| panic!("{n} in {results:?}"))
    };

    let good = by_name("good");
    assert_eq!(good["ok"], true, "{good}");
    assert_eq!(good["reason"], "ok");
    assert_eq!(good["phase"], serde_json::Value::Null);
    assert_eq!(
        good["digest"],
        digest.as_str(),
        "the digest is the one pushed"
    );
    assert_eq!(
        good["rate_limit"],
        serde_json::Value::Null,
        "no rate-limit headers means unlimited"
    );
    let phases: Vec<_> = good["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        phases,
        ["connect", "tls", "auth", "manifest"],
        "an IP literal skips dns"
    );
    assert_eq!(good["tls"]["version"], "TLSv1.3");

    let anon = by_name("anonymous");
    assert_eq!(
        (anon["phase"].as_str(), anon["reason"].as_str()),
        (Some("auth"), Some("auth_required")),
        "{anon}"
    );
    // Basic credentials are checked by the manifest request itself (containerd sends them
    // with the retried HEAD), so a wrong password fails there.
    let wrong = by_name("bad-creds");
    assert_eq!(
        (wrong["phase"].as_str(), wrong["reason"].as_str()),
        (Some("manifest"), Some("auth_failed")),
        "{wrong}"
    );
    assert!(
        wrong["message"].as_str().unwrap().contains(USER),
        "the message names the user: {wrong}"
    );

    for secret in [PASSWORD, "not-the-Pa55word"] {
        assert!(!run.stdout.contains(secret), "stdout leaks a password");
        assert!(
            !run.stderr.contains(secret),
            "the debug log leaks a password"
        );
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    assert!(
        !run.stderr.contains(&b64) && !run.stdout.contains(&b64),
        "the Basic header leaks"
    );
    assert!(
        run.stderr.contains("DEBUG"),
        "debug logging was on: {}",
        run.stderr
    );

    // IMAGE arguments borrow the settings of the configured target on the same host.
    let run = run_check(
        &config,
        &[
            &format!("{authority}/team/app:v1.3"),
            &format!("{authority}/team/nope:v1"),
        ],
        &[],
    );
    assert_eq!(run.code, 1);
    let r = &run.json["results"];
    assert_eq!(r[0]["reason"], "manifest_unknown", "{r}");
    let msg = r[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("`v1.3`") && msg.contains("v1.2.3, v1.2") || msg.contains("v1.2, v1.2.3"),
        "{msg}"
    );
    assert_eq!(r[1]["reason"], "name_unknown", "{r}");

    let run = run_check(&config, &[&format!("{authority}/team/app@{digest}")], &[]);
    assert_eq!(run.code, 0, "{}", run.stdout);
}
