//! The engine's TLS verdicts where Go's `crypto/x509` (containerd's) and rustls-webpki
//! disagree: each test names the Go function whose verdict it expects
//! (`src/crypto/x509/verify.go`). The fixtures come from `support::tls` so the same files can
//! be given to containerd's `ctr` to prove agreement.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use pullprobe::outcome::{Phase, Reason};
use pullprobe::probe::ProbeReport;

use crate::support::dns::{DnsBehavior, FakeDns};
use crate::support::registry::{Auth, FakeRegistry};
use crate::support::tls::{Leaf, TestCa, Validity, docker_recipe_cert, server_config};
use crate::support::{init, pullprobe};

const REPO: &str = "library/alpine";

async fn registry(leaf: &Leaf) -> FakeRegistry {
    FakeRegistry::builder()
        .tls(server_config(leaf))
        .auth(Auth::None)
        .repo(REPO, &["latest"])
        .start()
        .await
}

/// Writes `pem` as the CA file and returns the config of one target for `image` trusting it.
fn config(dir: &Path, image: &str, ca_pem: Option<&str>, extra: &str) -> String {
    let tls = match ca_pem {
        Some(pem) => {
            let path = dir.join("ca.pem");
            std::fs::write(&path, pem).unwrap();
            format!("    tls:\n      ca_file: {}\n", path.display())
        }
        None => String::new(),
    };
    format!("{extra}targets:\n  - name: reg\n    image: {image}\n{tls}")
}

async fn probe(dir: &Path, yaml: &str) -> ProbeReport {
    init();
    let config = pullprobe::config::Config::from_yaml("test.yaml", yaml, dir)
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let prober = pullprobe::probe::Prober::from_config(&config);
    prober.probe(&config.targets[0]).await
}

fn loopback_image(addr: SocketAddr) -> String {
    format!("127.0.0.1:{}/{REPO}:latest", addr.port())
}

#[track_caller]
fn assert_tls_failure(r: &ProbeReport, reason: Reason, words: &[&str]) {
    let f = r.failure.as_ref().expect("the probe fails");
    assert_eq!((f.phase, f.reason), (Phase::Tls, reason), "{}", f.message);
    for w in words {
        assert!(f.message.contains(w), "{:?} lacks {w:?}", f.message);
    }
    // No Rust Debug text: no variant names, no braces.
    for debug in ["Other(", "Error(", "Context", "{", "CaUsedAsEndEntity"] {
        assert!(!f.message.contains(debug), "{:?}", f.message);
    }
}

fn rfc3339(unix: i64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap()),
    )
    .to_string()
}

/// Docker's recipe certificate for `registry.test`, served by a fake registry that the fake DNS
/// gives as `registry.test` and `other.test`.
#[tokio::test]
async fn docker_recipe_ca_true_cert_as_ca_file_verifies_like_go_roots_contains() {
    let dir = tempfile::tempdir().unwrap();
    let cert = docker_recipe_cert(&["registry.test"]);
    let reg = registry(&cert).await;
    let loopback = DnsBehavior::Answer(vec!["127.0.0.1".parse().unwrap()]);
    let dns = FakeDns::start(vec![
        ("registry.test", loopback.clone()),
        ("other.test", loopback),
    ])
    .await;
    let port = reg.addr.port();
    let with_dns = format!("timeout: 5s\ndns:\n  nameservers: [\"{}\"]\n", dns.addr);

    // verify.go: Certificate.Verify (opts.Roots.contains(c)) — the trusted leaf is its own
    // chain, CA:TRUE or not; its name and validity were checked before.
    let r = probe(
        dir.path(),
        &config(
            dir.path(),
            &format!("registry.test:{port}/{REPO}:latest"),
            Some(&cert.cert_pem),
            &with_dns,
        ),
    )
    .await;
    assert!(r.ok(), "{:#?}", r.failure);
    let tls = r.tls.unwrap();
    assert_eq!(tls.anchor_subject.as_deref(), Some("CN=registry.test"));
    assert_eq!(tls.anchor_not_after, Some(cert.not_after_unix));
    assert_eq!(tls.earliest_not_after, Some(cert.not_after_unix));

    // verify.go: Certificate.Verify (VerifyHostname runs before opts.Roots.contains).
    let r = probe(
        dir.path(),
        &config(
            dir.path(),
            &format!("other.test:{port}/{REPO}:latest"),
            Some(&cert.cert_pem),
            &with_dns,
        ),
    )
    .await;
    assert_tls_failure(
        &r,
        Reason::TlsNameMismatch,
        &["the certificate is valid for registry.test but the node connects to other.test"],
    );

    // Without the file it is an unknown authority (verify.go: buildChains,
    // UnknownAuthorityError), whatever the system trust store holds.
    let r = probe(
        dir.path(),
        &config(
            dir.path(),
            &format!("registry.test:{port}/{REPO}:latest"),
            None,
            &with_dns,
        ),
    )
    .await;
    assert_tls_failure(&r, Reason::TlsUntrusted, &["CN=registry.test"]);
}

#[tokio::test]
async fn ca_true_leaf_signed_by_a_root_verifies_like_go_is_valid() {
    // verify.go: isValid(leafCertificate) asks no CA question of the leaf (only intermediates
    // must be CA:TRUE), so buildChains reaches the root. webpki alone: CaUsedAsEndEntity.
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("pullprobe test root");
    let leaf = ca.ca_true_leaf(&["127.0.0.1"]);
    let reg = registry(&leaf).await;
    let r = probe(
        dir.path(),
        &config(
            dir.path(),
            &loopback_image(reg.addr),
            Some(&ca.ca_pem()),
            "",
        ),
    )
    .await;
    assert!(r.ok(), "{:#?}", r.failure);
    let tls = r.tls.unwrap();
    assert_eq!(
        tls.anchor_subject.as_deref(),
        Some("CN=pullprobe test root")
    );
    assert_eq!(tls.anchor_not_after, Some(ca.not_after_unix()));
    assert_eq!(tls.earliest_not_after, Some(leaf.not_after_unix));

    // The same leaf for another name: VerifyHostname still applies.
    let other = ca.ca_true_leaf(&["registry.other.test"]);
    let reg = registry(&other).await;
    let r = probe(
        dir.path(),
        &config(
            dir.path(),
            &loopback_image(reg.addr),
            Some(&ca.ca_pem()),
            "",
        ),
    )
    .await;
    assert_tls_failure(&r, Reason::TlsNameMismatch, &["no IP address"]);
}

#[tokio::test]
async fn expired_root_fails_tls_expired_naming_the_root_like_go_is_valid_root() {
    // verify.go: buildChains → isValid(rootCertificate): "x509: certificate has expired or is
    // not yet valid" for the root, though the leaf is valid. webpki trust anchors carry no
    // dates, so rustls alone accepted this chain.
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::expired("pullprobe expired root");
    let leaf = ca.leaf(&["127.0.0.1"], Validity::Valid);
    for (what, served) in [
        ("leaf and root", clone_leaf(&leaf)),
        ("leaf alone", leaf.alone()),
    ] {
        let reg = registry(&served).await;
        let r = probe(
            dir.path(),
            &config(
                dir.path(),
                &loopback_image(reg.addr),
                Some(&ca.ca_pem()),
                "",
            ),
        )
        .await;
        assert_tls_failure(
            &r,
            Reason::TlsExpired,
            &[
                "the root CA \"pullprobe expired root\" (from tls.ca_file) expired at",
                &rfc3339(ca.not_after_unix()),
            ],
        );
        let tls = r.tls.unwrap();
        assert_eq!(
            tls.anchor_subject.as_deref(),
            Some("CN=pullprobe expired root"),
            "{what}"
        );
        assert_eq!(tls.earliest_not_after, Some(ca.not_after_unix()), "{what}");
    }
}

fn clone_leaf(leaf: &Leaf) -> Leaf {
    Leaf {
        cert_pem: leaf.cert_pem.clone(),
        key_pem: leaf.key_pem.clone(),
        chain_der: leaf.chain_der.clone(),
        key_der: leaf.key_der.clone_key(),
        not_after_unix: leaf.not_after_unix,
        leaf_not_after_unix: leaf.leaf_not_after_unix,
    }
}

/// A root that expires in 5 days under a leaf valid for 30, the server sending the leaf alone:
/// the expiry the node faces is the root's, and `--check` (JSON and text) and the agent's
/// gauge show it and name the anchor.
#[tokio::test(flavor = "multi_thread")]
async fn the_anchor_is_named_and_its_expiry_counted_in_check_output_and_metric() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::expiring_in("pullprobe short-lived root", 5);
    let leaf = ca.leaf(&["127.0.0.1"], Validity::Valid).alone();
    assert!(leaf.not_after_unix > ca.not_after_unix());
    let reg = registry(&leaf).await;
    let yaml = config(
        dir.path(),
        &loopback_image(reg.addr),
        Some(&ca.ca_pem()),
        "interval: 1s\ntimeout: 1s\n",
    );
    let config_path = dir.path().join("c.yaml");
    std::fs::write(&config_path, &yaml).unwrap();

    let run = |format: &'static str| {
        let config_path = config_path.clone();
        tokio::task::spawn_blocking(move || {
            let flags = ["--check", "--output", format, "--config.file"];
            pullprobe(
                flags
                    .map(OsStr::new)
                    .into_iter()
                    .chain([config_path.as_os_str()]),
            )
        })
    };
    let json = run("json").await.unwrap();
    assert_eq!(json.code, 0, "{}{}", json.stdout, json.stderr);
    let tls = &json.json["results"][0]["tls"];
    assert_eq!(tls["version"], "TLSv1.3");
    assert_eq!(tls["anchor_subject"], "CN=pullprobe short-lived root");
    assert_eq!(tls["anchor_not_after"], rfc3339(ca.not_after_unix()));
    assert_eq!(tls["earliest_not_after"], rfc3339(ca.not_after_unix()));

    let text = run("text").await.unwrap();
    assert_eq!(text.code, 0, "{}{}", text.stdout, text.stderr);
    let line = format!(
        "    chain root:  CN=pullprobe short-lived root (valid until {})",
        rfc3339(ca.not_after_unix())
    );
    assert!(text.stdout.contains(&line), "{}", text.stdout);

    let agent = crate::agent_e2e::start(&config_path, |_| {}).await;
    let metric = "pullprobe_tls_cert_expiry_timestamp_seconds{";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let value = loop {
        let scrape = reqwest::get(format!("http://{}/metrics", agent.addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if let Some(line) = scrape.lines().find(|l| l.starts_with(metric)) {
            break line.rsplit(' ').next().unwrap().parse::<f64>().unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "{scrape}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    #[allow(clippy::cast_precision_loss)]
    let want = ca.not_after_unix() as f64;
    assert_eq!(value, want);
    agent.stop().await;
}
