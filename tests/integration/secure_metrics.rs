//! `--web.config.file`: the agent's endpoint over HTTPS with basic auth (bcrypt), scraped for
//! real — by an HTTPS client and by Debian's Prometheus with `tls_config` and `basic_auth` —
//! plus client-certificate authentication.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::agent_e2e::{Running, start};
use crate::alerts_e2e::Daemon;
use crate::docker_registry::require_tool;
use crate::support::pullprobe;
use crate::support::registry::{Auth, FakeRegistry};
use crate::support::tls::{TestCa, Validity};

const USER: &str = "prometheus";
const PASSWORD: &str = "scrape-Pa55";

async fn start_agent(dir: &Path, web_config: &Path, registry: std::net::SocketAddr) -> Running {
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!("interval: 1s\ntimeout: 1s\ntargets:\n  - name: plain\n    image: 127.0.0.1:{}/app:v1\n    plain_http: true\n", registry.port()),
    )
    .unwrap();
    start(&config, |opts| {
        opts.web_config_file = Some(web_config.to_owned())
    })
    .await
}

/// A CA and a serving certificate for `names`, written to `d` as `tls.crt` and `tls.key`;
/// returns the CA and the path of its PEM.
fn serving_cert(d: &Path, names: &[&str]) -> (TestCa, PathBuf) {
    let ca = TestCa::new("metrics CA");
    let leaf = ca.leaf(names, Validity::Valid);
    std::fs::write(d.join("tls.crt"), &leaf.cert_pem).unwrap();
    std::fs::write(d.join("tls.key"), &leaf.key_pem).unwrap();
    let ca_file = ca.write_ca_pem(d);
    (ca, ca_file)
}

fn https_client(ca: &TestCa, identity: Option<reqwest::Identity>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.ca_pem().as_bytes()).unwrap()]);
    if let Some(id) = identity {
        b = b.identity(id);
    }
    b.build().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn https_and_basic_auth_with_a_real_prometheus_scrape() {
    let reg = FakeRegistry::builder()
        .auth(Auth::None)
        .repo("app", &["v1"])
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca, ca_file) = serving_cert(d, &["127.0.0.1", "localhost"]);
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    let web = d.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  min_version: TLS12\n\
             http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n\
             basic_auth_users:\n  {USER}: '{hash}'\n"
        ),
    )
    .unwrap();
    let agent = start_agent(d, &web, reg.addr).await;
    let base = format!("https://127.0.0.1:{}", agent.addr.port());
    let client = https_client(&ca, None);

    let r = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 401, "no credentials");
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"pullprobe\"");
    let r = client
        .get(format!("{base}/metrics"))
        .basic_auth(USER, Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "wrong password");
    let r = client
        .get(format!("{base}/-/healthy"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "every endpoint is protected, as in exporter-toolkit"
    );
    let r = client
        .get(format!("{base}/metrics"))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(r.text().await.unwrap().contains("pullprobe_build_info"));
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::get(format!("http://127.0.0.1:{}/metrics", agent.addr.port())).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());

    // Debian's Prometheus scrapes it with tls_config and basic_auth: up == 1.
    if let Some(prometheus) = require_tool("prometheus") {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::write(d.join("password"), PASSWORD).unwrap();
        std::fs::write(
            d.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: pullprobe\n    scheme: https\n\
                 \x20   tls_config:\n      ca_file: {}\n    basic_auth:\n      username: {USER}\n      password_file: {}\n\
                 \x20   static_configs:\n      - targets: [\"127.0.0.1:{}\"]\n",
                ca_file.display(),
                d.join("password").display(),
                agent.addr.port()
            ),
        )
        .unwrap();
        let prom = Daemon::start(
            "prometheus",
            std::process::Command::new(prometheus)
                .arg(format!(
                    "--config.file={}",
                    d.join("prometheus.yml").display()
                ))
                .arg(format!("--storage.tsdb.path={}", d.join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}")),
            d,
        );
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v: Option<serde_json::Value> = match http
                .get(format!(
                    "http://127.0.0.1:{port}/api/v1/query?query=up%7Bjob%3D%22pullprobe%22%7D"
                ))
                .send()
                .await
            {
                Ok(r) => r.json().await.ok(),
                Err(_) => None,
            };
            let up = v.as_ref().and_then(|v| {
                v["data"]["result"][0]["value"][1]
                    .as_str()
                    .map(str::to_owned)
            });
            if up.as_deref() == Some("1") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus never scraped the HTTPS endpoint: {v:?}\n{}",
                prom.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificates_are_required_when_configured() {
    let reg = FakeRegistry::builder()
        .auth(Auth::None)
        .repo("app", &["v1"])
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca, ca_file) = serving_cert(d, &["127.0.0.1"]);
    let web = d.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n",
            ca_file.display()
        ),
    )
    .unwrap();
    let agent = start_agent(d, &web, reg.addr).await;
    let url = format!("https://127.0.0.1:{}/metrics", agent.addr.port());

    let without = https_client(&ca, None).get(&url).send().await;
    assert!(
        without.is_err(),
        "a client without a certificate is refused"
    );
    let client_leaf = ca.client("prometheus");
    let identity = reqwest::Identity::from_pem(
        format!("{}{}", client_leaf.cert_pem, client_leaf.key_pem).as_bytes(),
    )
    .unwrap();
    let with = https_client(&ca, Some(identity))
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(with.status(), 200);
    agent.stop().await;
}

#[test]
fn a_bad_web_config_is_a_startup_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(&web, "basic_auth_users:\n  prometheus: not-a-bcrypt-hash\n").unwrap();
    let out = pullprobe([
        OsStr::new("--web.listen-address=127.0.0.1:0"),
        "--web.config.file".as_ref(),
        web.as_ref(),
    ]);
    assert_eq!(out.code, 2);
    let err = &out.stderr;
    assert!(
        err.contains("basic_auth_users.prometheus") && err.contains("bcrypt"),
        "{err}"
    );
    assert!(!err.contains("not-a-bcrypt-hash"), "{err}");
}
