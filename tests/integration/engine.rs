//! The real engine against the in-process fakes: every reason of the contract is produced by at
//! least one test here (plus `docker_registry.rs`, `unbound.rs`), each asserting phase and reason.

use std::ffi::{OsStr, OsString};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pullprobe::config::Config;
use pullprobe::outcome::{Phase, Reason};
use pullprobe::probe::{ProbeReport, Prober};

use crate::support::dns::{DnsBehavior, FakeDns};
use crate::support::registry::{
    Auth, FakeRegistry, RateLimitHeaders, ServerKind, StatusOverride, TokenBehavior,
};
use crate::support::tls::{TestCa, TlsReset, TlsStall, Validity, server_config};
use crate::support::{closed_port, init, pullprobe, silent_listener, write_docker_config};

const REPO: &str = "library/alpine";

/// Probes every target of a YAML config (relative paths resolve against `dir`).
async fn probe_config(dir: &Path, yaml: &str) -> Vec<ProbeReport> {
    init();
    let config =
        Config::from_yaml("test.yaml", yaml, dir).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let prober = Prober::from_config(&config);
    pullprobe::check::probe_all(&prober, config.targets.clone()).await
}

/// Probes one plain-HTTP target with the given timeout.
async fn probe_plain(image: String, timeout: &str) -> ProbeReport {
    let dir = tempfile::tempdir().unwrap();
    probe_one(
        dir.path(),
        &format!("timeout: {timeout}\ntargets:\n  - image: {image}\n    plain_http: true\n"),
    )
    .await
}

async fn probe_one(dir: &Path, yaml: &str) -> ProbeReport {
    probe_config(dir, yaml).await.remove(0)
}

fn assert_failure(r: &ProbeReport, phase: Phase, reason: Reason) {
    let got = r.failure.as_ref().map(|f| (f.phase, f.reason));
    assert_eq!(got, Some((phase, reason)), "{:#?}", r.failure);
}

fn image(addr: SocketAddr, repo: &str, tag: &str) -> String {
    format!("127.0.0.1:{}/{repo}:{tag}", addr.port())
}

struct Tls {
    ca: TestCa,
    dir: tempfile::TempDir,
}

impl Tls {
    fn new() -> Tls {
        Tls {
            ca: TestCa::new("pullprobe test CA"),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn server(&self, names: &[&str], validity: Validity) -> std::sync::Arc<rustls::ServerConfig> {
        server_config(&self.ca.leaf(names, validity))
    }

    fn ca_file(&self) -> String {
        self.ca.write_ca_pem(self.dir.path()).display().to_string()
    }

    fn docker_config(&self, key: &str, user: &str, pass: &str) -> String {
        let path = self
            .dir
            .path()
            .join(format!("creds-{user}-{}.json", pass.len()));
        write_docker_config(&path, key, user, pass);
        path.display().to_string()
    }
}

// ---- success -----------------------------------------------------------------------------

#[tokio::test]
async fn ok_over_tls_with_bearer_token_rate_limit_and_token_reuse() {
    let tls = Tls::new();
    let leaf = tls.ca.leaf(&["127.0.0.1"], Validity::Valid);
    let reg = FakeRegistry::builder()
        .tls(server_config(&leaf))
        .auth(Auth::bearer(None))
        .repo(REPO, &["3.20", "latest"])
        .rate_limit(Some(RateLimitHeaders::hub(76)))
        .start()
        .await;
    let yaml = format!(
        "targets:\n  - name: hub\n    image: {}\n    tls:\n      ca_file: {}\n",
        image(reg.addr, REPO, "3.20"),
        tls.ca_file()
    );
    init();
    let config = Config::from_yaml("t.yaml", &yaml, tls.dir.path()).unwrap();
    let prober = Prober::from_config(&config);
    let r = prober.probe(&config.targets[0]).await;
    assert!(r.ok(), "{:#?}", r.failure);
    assert_eq!(r.reason(), Reason::Ok);
    assert_eq!(r.digest, reg.digest(REPO, "3.20"));
    let rl = r.rate_limit.clone().expect("rate-limit headers parsed");
    assert_eq!(
        (
            rl.limit,
            rl.remaining,
            rl.window_seconds,
            rl.source.as_deref()
        ),
        (100, 76, Some(21600), Some("192.0.2.1"))
    );
    let tls_report = r.tls.clone().unwrap();
    assert_eq!(tls_report.version, Some("TLSv1.3"));
    assert_eq!(tls_report.earliest_not_after, Some(leaf.not_after_unix));
    assert_eq!(r.address, Some(reg.addr));
    let phases: Vec<Phase> = r.phases.iter().map(|p| p.phase).collect();
    assert_eq!(
        phases,
        [Phase::Connect, Phase::Tls, Phase::Auth, Phase::Manifest]
    );

    // A second probe walks the whole path again but reuses the token.
    let r2 = prober.probe(&config.targets[0]).await;
    assert!(r2.ok());
    assert_eq!(
        reg.token_requests_count(),
        1,
        "the token is reused until it expires"
    );
    let reqs = reg.requests();
    let heads: Vec<_> = reqs
        .iter()
        .filter(|q| q.method == http::Method::HEAD)
        .collect();
    // First probe: the HEAD (401) and its retry with the token; second probe: one HEAD with the
    // cached token.
    assert_eq!(heads.len(), 3);
    assert_eq!(
        r2.phases.iter().map(|p| p.phase).collect::<Vec<_>>(),
        [Phase::Connect, Phase::Tls, Phase::Manifest],
        "no auth phase when the cached token is accepted"
    );
    let accept = heads[0].accept.as_deref().unwrap();
    for t in [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ] {
        assert!(accept.contains(t), "{accept}");
    }
    assert_eq!(
        reg.manifest_gets_count(),
        0,
        "a manifest is never fetched with GET"
    );
    assert_eq!(
        reqs.iter()
            .filter(|q| q.server == ServerKind::Registry && q.path_and_query == "/v2/")
            .count(),
        0,
        "containerd never asks /v2/"
    );
}

#[tokio::test]
async fn ok_plain_http_without_auth_has_no_rate_limit_and_no_tls() {
    let reg = FakeRegistry::builder()
        .auth(Auth::None)
        .repo(REPO, &["latest"])
        .start()
        .await;
    let r = probe_plain(image(reg.addr, REPO, "latest"), "10s").await;
    assert!(r.ok(), "{:#?}", r.failure);
    assert_eq!(r.rate_limit, None);
    assert_eq!(r.tls, None);
    assert!(r.phase_duration(Phase::Tls).is_none());
}

/// An IPv6-literal registry, `[::1]:PORT/app:1`, as distribution/reference (so kubelet and
/// containerd) accept it: dialled without DNS, asked with `Host: [::1]:PORT`, and its token realm
/// and the docker config key `[::1]:PORT` work as for any host.
#[tokio::test]
async fn ok_ipv6_literal_registry_with_bearer_credentials() {
    let tls = Tls::new();
    let reg = FakeRegistry::builder()
        .ipv6()
        .auth(Auth::bearer(Some(("u", "p"))))
        .repo("app", &["1"])
        .start()
        .await;
    assert!(reg.addr.is_ipv6(), "{}", reg.addr);
    let authority = format!("[::1]:{}", reg.addr.port());
    let creds = tls.docker_config(&authority, "u", "p");
    // YAML would read an unquoted `[` as the start of a list.
    let yaml = format!(
        "targets:\n  - image: \"{authority}/app:1\"\n    plain_http: true\n    docker_config: {creds}\n"
    );
    let r = probe_one(tls.dir.path(), &yaml).await;
    assert!(r.ok(), "{:#?}", r.failure);
    assert_eq!(r.registry, authority);
    assert_eq!(r.address, Some(reg.addr));
    assert_eq!(r.digest, reg.digest("app", "1"));
    assert!(
        r.phase_duration(Phase::Dns).is_none(),
        "an IP literal is not resolved"
    );
    let reqs = reg.requests();
    let head = reqs
        .iter()
        .rfind(|q| q.server == ServerKind::Registry && q.method == http::Method::HEAD)
        .unwrap();
    assert_eq!(head.host.as_deref(), Some(authority.as_str()));
    assert!(head.authorization.is_some(), "the token was sent");
    let tokens: Vec<_> = reqs
        .iter()
        .filter(|q| q.server == ServerKind::Token)
        .map(|q| (&q.method, q.path_and_query.as_str()))
        .collect();
    // containerd's OAuth POST, which the fake does not serve, then the GET with the password.
    assert_eq!(
        tokens.last().map(|t| t.1),
        Some("/token?service=fake-registry&scope=repository%3Aapp%3Apull"),
        "{tokens:?}"
    );
}

/// Over TLS the IPv6 literal is the server name, verified against the certificate's IP SAN.
#[tokio::test]
async fn ok_ipv6_literal_registry_over_tls() {
    let tls = Tls::new();
    let reg = FakeRegistry::builder()
        .ipv6()
        .tls(tls.server(&["::1"], Validity::Valid))
        .repo("app", &["1"])
        .start()
        .await;
    let yaml = format!(
        "targets:\n  - image: \"[::1]:{}/app:1\"\n    tls:\n      ca_file: {}\n",
        reg.addr.port(),
        tls.ca_file()
    );
    let r = probe_one(tls.dir.path(), &yaml).await;
    assert!(r.ok(), "{:#?}", r.failure);
    assert!(r.tls.is_some());
    assert_eq!(r.address, Some(reg.addr));
}

#[tokio::test]
async fn credentials_are_used_for_basic_and_bearer() {
    let tls = Tls::new();
    // Bearer: a wrong password is refused by the token server (auth). Basic: by the manifest
    // request that carries it (containerd has no separate check).
    for (auth, wrong_phase) in [
        (
            Auth::Basic {
                user: "u".into(),
                pass: "p".into(),
            },
            Phase::Manifest,
        ),
        (Auth::bearer(Some(("u", "p"))), Phase::Auth),
    ] {
        let reg = FakeRegistry::builder()
            .tls(tls.server(&["127.0.0.1"], Validity::Valid))
            .auth(auth.clone())
            .repo(REPO, &["latest"])
            .start()
            .await;
        let key = format!("127.0.0.1:{}", reg.addr.port());
        let yaml = format!(
            "targets:\n  - name: good\n    image: {img}\n    docker_config: {good}\n    tls: {{ca_file: {ca}}}\n\
             \x20 - name: wrong\n    image: {img}\n    docker_config: {bad}\n    tls: {{ca_file: {ca}}}\n\
             \x20 - name: none\n    image: {img}\n    tls: {{ca_file: {ca}}}\n",
            img = image(reg.addr, REPO, "latest"),
            good = tls.docker_config(&key, "u", "p"),
            bad = tls.docker_config(&key, "u", "wrong"),
            ca = tls.ca_file(),
        );
        let r = probe_config(tls.dir.path(), &yaml).await;
        assert!(r[0].ok(), "{auth:?}: {:#?}", r[0].failure);
        assert_failure(&r[1], wrong_phase, Reason::AuthFailed);
        assert_failure(&r[2], Phase::Auth, Reason::AuthRequired);
    }
}

// ---- dns ---------------------------------------------------------------------------------

#[tokio::test]
async fn dns_answers_are_classified_and_never_cached() {
    let reg = FakeRegistry::builder()
        .auth(Auth::None)
        .repo(REPO, &["latest"])
        .start()
        .await;
    let lo: IpAddr = "127.0.0.1".parse().unwrap();
    let dns = FakeDns::start(vec![
        ("registry.test", DnsBehavior::Answer(vec![lo])),
        ("nodata.test", DnsBehavior::NoData),
        ("servfail.test", DnsBehavior::ServFail),
        ("refused.test", DnsBehavior::Refused),
        ("silent.test", DnsBehavior::Silent),
        ("truncated.test", DnsBehavior::Truncate(vec![lo])),
        ("many.test", DnsBehavior::Many(300)),
    ])
    .await;
    let port = reg.addr.port();
    let names = [
        "registry",
        "missing",
        "nodata",
        "servfail",
        "refused",
        "silent",
        "truncated",
        "many",
    ];
    let mut yaml = format!(
        "timeout: 3s\ndns:\n  nameservers: [\"{}\"]\ntargets:\n",
        dns.addr
    );
    for n in names {
        yaml += &format!(
            "  - name: {n}\n    image: {n}.test:{port}/{REPO}:latest\n    plain_http: true\n"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let r = probe_config(dir.path(), &yaml).await;
    assert!(r[0].ok(), "{:#?}", r[0].failure);
    assert!(r[0].phase_duration(Phase::Dns).is_some());
    assert_failure(&r[1], Phase::Dns, Reason::DnsNxdomain);
    assert_failure(&r[2], Phase::Dns, Reason::DnsNoRecords);
    assert_failure(&r[3], Phase::Dns, Reason::DnsServfail);
    assert_failure(&r[4], Phase::Dns, Reason::DnsServfail);
    assert_failure(&r[5], Phase::Dns, Reason::DnsTimeout);
    assert!(
        r[6].ok(),
        "a truncated UDP answer is retried over TCP: {:#?}",
        r[6].failure
    );
    // Hundreds of records (the answer needs the TCP fallback too): the probe stays bounded and
    // reaches the registry on the first address, 127.0.0.1. hostile.rs puts it on the last one.
    assert!(
        r[7].duration < Duration::from_secs(3),
        "{:?}",
        r[7].duration
    );
    assert!(r[7].ok(), "{:#?}", r[7].failure);
    assert_eq!(r[7].address, Some(reg.addr));

    let before = dns.queries();
    let again = probe_config(dir.path(), &yaml.replace("timeout: 3s", "timeout: 1s")).await;
    assert!(again[0].ok());
    assert!(
        dns.queries() > before,
        "every probe really asks the DNS server"
    );
}

#[test]
fn dns_error_without_a_usable_resolver_configuration() {
    // The node's /etc/resolv.conf lists no nameserver (bind-mounted in a private mount namespace).
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "# no nameserver lines\n").unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(&config, "targets:\n  - image: registry.test/app\n").unwrap();
    let Some(json) = run_isolated(false, &[(&resolv, "/etc/resolv.conf")], &config) else {
        return;
    };
    let r = &json["results"][0];
    assert_eq!(
        (r["phase"].as_str(), r["reason"].as_str()),
        (Some("dns"), Some("dns_error")),
        "{r}"
    );
    assert!(
        r["message"].as_str().unwrap().contains("/etc/resolv.conf"),
        "{r}"
    );
}

/// Runs `pullprobe --check --output json` under `unshare`: with `net`, in an empty network
/// namespace (loopback down); always in a private mount namespace with `mounts` bind-mounted.
/// `None` (a skip) where namespaces cannot be created and the tools are not required.
fn run_isolated(net: bool, mounts: &[(&Path, &str)], config: &Path) -> Option<serde_json::Value> {
    let unshare = crate::docker_registry::require_tool("unshare")?;
    let mut script = String::new();
    for (src, dst) in mounts {
        script += &format!("mount --bind {} {dst} && ", src.display());
    }
    script += &format!(
        "exec {} --check --output json --config.file {}",
        env!("CARGO_BIN_EXE_pullprobe"),
        config.display()
    );
    let mut cmd = Command::new(unshare);
    if net {
        cmd.arg("--net");
    }
    let out = cmd.args(["--mount", "sh", "-c", &script]).output().unwrap();
    if !matches!(out.status.code(), Some(0 | 1)) {
        let msg = String::from_utf8_lossy(&out.stderr);
        assert!(
            std::env::var_os("PULLPROBE_REQUIRE_TOOLS").is_none(),
            "unshare failed: {msg}"
        );
        eprintln!("SKIP: cannot create namespaces here: {msg}");
        return None;
    }
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

// ---- connect -----------------------------------------------------------------------------

#[tokio::test]
async fn connect_refused_and_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let closed = closed_port();
    let r = probe_one(
        dir.path(),
        &format!("targets:\n  - image: {}\n", image(closed, "a", "b")),
    )
    .await;
    assert_failure(&r, Phase::Connect, Reason::ConnectRefused);
    assert!(r.failure.unwrap().message.contains(&closed.to_string()));

    // A listener whose accept queue is full drops further SYNs: the connection never completes.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = sock.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fillers.push(s);
        }
    }
    let r = probe_one(
        dir.path(),
        &format!(
            "timeout: 1s\ntargets:\n  - image: {}\n",
            image(addr, "a", "b")
        ),
    )
    .await;
    assert_failure(&r, Phase::Connect, Reason::ConnectTimeout);
    drop(listener);
}

/// `unshare` gives the binary a network namespace of its own, where loopback is down: 127.0.0.1
/// has no route (`connect_unreachable`) and ::1 cannot be used as a source (`connect_error`).
/// Names come from a bind-mounted hosts file inside the same namespace.
#[test]
fn connect_unreachable_and_error_in_an_empty_network_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 v4only.test\n::1 v6only.test\n").unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        "timeout: 3s\ntargets:\n  - image: v4only.test:5000/app\n    plain_http: true\n  - image: v6only.test:5000/app\n    plain_http: true\n",
    )
    .unwrap();
    let Some(json) = run_isolated(true, &[(&hosts, "/etc/hosts")], &config) else {
        return;
    };
    let got: Vec<_> = json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["phase"].clone(), r["reason"].clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("connect".into(), "connect_unreachable".into()),
            ("connect".into(), "connect_error".into())
        ]
    );
}

// ---- tls ---------------------------------------------------------------------------------

#[tokio::test]
async fn tls_failures_are_told_apart_and_expiry_is_reported() {
    let tls = Tls::new();
    let other_ca = TestCa::new("unknown CA");
    let expired_leaf = tls.ca.leaf(&["127.0.0.1"], Validity::Expired);
    let servers = [
        (
            server_config(&other_ca.leaf(&["127.0.0.1"], Validity::Valid)),
            Reason::TlsUntrusted,
        ),
        (server_config(&expired_leaf), Reason::TlsExpired),
        (
            tls.server(&["127.0.0.1"], Validity::NotYetValid),
            Reason::TlsExpired,
        ),
        (
            tls.server(&["registry.other.test"], Validity::Valid),
            Reason::TlsNameMismatch,
        ),
    ];
    for (i, (config, want)) in servers.into_iter().enumerate() {
        let reg = FakeRegistry::builder()
            .tls(config)
            .auth(Auth::None)
            .repo(REPO, &["latest"])
            .start()
            .await;
        let r = probe_one(
            tls.dir.path(),
            &format!(
                "targets:\n  - image: {}\n    tls:\n      ca_file: {}\n",
                image(reg.addr, REPO, "latest"),
                tls.ca_file()
            ),
        )
        .await;
        assert_failure(&r, Phase::Tls, want);
        if i == 1 {
            assert_eq!(
                r.tls.unwrap().earliest_not_after,
                Some(expired_leaf.not_after_unix),
                "expiry known despite the failure"
            );
        }
    }

    // insecure_skip_verify accepts the untrusted certificate, as containerd's skip_verify does.
    let reg = FakeRegistry::builder()
        .tls(server_config(
            &other_ca.leaf(&["127.0.0.1"], Validity::Valid),
        ))
        .auth(Auth::None)
        .repo(REPO, &["latest"])
        .start()
        .await;
    let r = probe_one(
        tls.dir.path(),
        &format!(
            "targets:\n  - image: {}\n    tls:\n      insecure_skip_verify: true\n",
            image(reg.addr, REPO, "latest")
        ),
    )
    .await;
    assert!(r.ok(), "{:#?}", r.failure);
}

#[tokio::test]
async fn tls_handshake_reset_plain_http_peer_and_stall() {
    let dir = tempfile::tempdir().unwrap();
    let reset = TlsReset::start().await;
    let r = probe_one(
        dir.path(),
        &format!("targets:\n  - image: {}\n", image(reset.addr, "a", "b")),
    )
    .await;
    assert_failure(&r, Phase::Tls, Reason::TlsHandshake);

    // A plain-HTTP registry reached by name over HTTPS: the handshake fails. On a loopback
    // address the same registry works: containerd falls back to HTTP there (fallback.rs).
    let plain = FakeRegistry::builder()
        .auth(Auth::None)
        .repo(REPO, &["latest"])
        .start()
        .await;
    let lo: IpAddr = "127.0.0.1".parse().unwrap();
    let dns = FakeDns::start(vec![("plain.test", DnsBehavior::Answer(vec![lo]))]).await;
    let r = probe_one(
        dir.path(),
        &format!(
            "dns:\n  nameservers: [\"{}\"]\ntargets:\n  - image: plain.test:{}/{REPO}:latest\n",
            dns.addr,
            plain.addr.port()
        ),
    )
    .await;
    assert_failure(&r, Phase::Tls, Reason::TlsHandshake);
    let r = probe_one(
        dir.path(),
        &format!(
            "targets:\n  - image: {}\n",
            image(plain.addr, REPO, "latest")
        ),
    )
    .await;
    assert!(r.ok(), "{:#?}", r.failure);
    assert_eq!(
        r.tls.as_ref().and_then(|t| t.version),
        None,
        "the registry was reached over HTTP"
    );

    let stall = TlsStall::start().await;
    let r = probe_one(
        dir.path(),
        &format!(
            "timeout: 1s\ntargets:\n  - image: {}\n",
            image(stall.addr, "a", "b")
        ),
    )
    .await;
    assert_failure(&r, Phase::Tls, Reason::Timeout);
    assert!(r.duration < Duration::from_secs(3));
}

// ---- auth --------------------------------------------------------------------------------

#[tokio::test]
async fn token_server_answers_are_classified() {
    let cases = [
        (TokenBehavior::NotJson, Reason::ProtocolError),
        (TokenBehavior::NoTokenField, Reason::ProtocolError),
        (TokenBehavior::Status(429), Reason::RateLimited),
        (TokenBehavior::Status(503), Reason::ServerError),
        (TokenBehavior::Hang, Reason::Timeout),
    ];
    for (behavior, want) in cases {
        let reg = FakeRegistry::builder()
            .auth(Auth::bearer(None))
            .token_behavior(behavior.clone())
            .repo(REPO, &["latest"])
            .start()
            .await;
        let r = probe_plain(image(reg.addr, REPO, "latest"), "2s").await;
        assert_failure(&r, Phase::Auth, want);
    }
    for ok in [
        TokenBehavior::TokenOnly,
        TokenBehavior::AccessTokenOnly,
        TokenBehavior::Ok { expires_in: None },
    ] {
        let reg = FakeRegistry::builder()
            .auth(Auth::bearer(None))
            .token_behavior(ok.clone())
            .repo(REPO, &["latest"])
            .start()
            .await;
        let r = probe_plain(image(reg.addr, REPO, "latest"), "10s").await;
        assert!(r.ok(), "{ok:?}: {:#?}", r.failure);
    }
}

#[tokio::test]
async fn the_v2_endpoint_is_never_asked() {
    // containerd's resolver goes straight to the manifest: whatever `/v2/` answers (a 404 from a
    // path-based proxy, a 403, garbage, nothing at all) does not matter to a pull.
    for status in [
        StatusOverride::Garbage,
        StatusOverride::Status(404),
        StatusOverride::Status(403),
        StatusOverride::Status(502),
        StatusOverride::Hang,
    ] {
        let reg = FakeRegistry::builder()
            .auth(Auth::bearer(None))
            .v2_status(status.clone())
            .repo(REPO, &["latest"])
            .start()
            .await;
        let r = probe_plain(image(reg.addr, REPO, "latest"), "2s").await;
        assert!(r.ok(), "{status:?}: {:#?}", r.failure);
        assert!(
            !reg.requests().iter().any(|q| q.path_and_query == "/v2/"),
            "{status:?}"
        );
    }
}

#[tokio::test]
async fn token_realm_on_another_host_reports_its_own_dns_and_tls_failures_under_auth() {
    let tls = Tls::new();
    let dns = FakeDns::start(vec![(
        "registry.test",
        DnsBehavior::Answer(vec!["127.0.0.1".parse().unwrap()]),
    )])
    .await;
    // The realm host name does not exist.
    let reg = FakeRegistry::builder()
        .tls(tls.server(&["registry.test"], Validity::Valid))
        .auth(Auth::bearer(None))
        .token_realm_host("auth.test")
        .repo(REPO, &["latest"])
        .start()
        .await;
    let yaml = |port: u16| {
        format!(
            "timeout: 3s\ndns:\n  nameservers: [\"{}\"]\ntargets:\n  - image: registry.test:{port}/{REPO}:latest\n    tls:\n      ca_file: {}\n",
            dns.addr,
            tls.ca_file()
        )
    };
    let r = probe_one(tls.dir.path(), &yaml(reg.addr.port())).await;
    assert_failure(&r, Phase::Auth, Reason::DnsNxdomain);

    // The realm host serves an expired certificate.
    let reg = FakeRegistry::builder()
        .tls(tls.server(&["registry.test"], Validity::Valid))
        .token_tls(tls.server(&["127.0.0.1"], Validity::Expired))
        .auth(Auth::bearer(None))
        .repo(REPO, &["latest"])
        .start()
        .await;
    let r = probe_one(tls.dir.path(), &yaml(reg.addr.port())).await;
    assert_failure(&r, Phase::Auth, Reason::TlsExpired);
}

// ---- manifest ----------------------------------------------------------------------------

#[tokio::test]
async fn missing_tag_missing_repo_and_hub_ambiguity() {
    let dir = tempfile::tempdir().unwrap();
    let reg = FakeRegistry::builder()
        .auth(Auth::bearer(None))
        .repo("library/nginx", &["1.27", "1.27.3", "latest", "mainline"])
        .start()
        .await;
    let yaml = format!(
        "targets:\n  - image: {}\n    plain_http: true\n  - image: {}\n    plain_http: true\n",
        image(reg.addr, "library/nginx", "invalidtag"),
        image(reg.addr, "library/nosuch", "latest"),
    );
    let r = probe_config(dir.path(), &yaml).await;
    assert_failure(&r[0], Phase::Manifest, Reason::ManifestUnknown);
    let msg = &r[0].failure.as_ref().unwrap().message;
    assert!(msg.starts_with("tag `invalidtag` not found in"), "{msg}");
    assert!(
        msg.contains("the repository exists and has tags")
            && msg.contains("1.27.3")
            && msg.contains("latest"),
        "{msg}"
    );
    assert_failure(&r[1], Phase::Manifest, Reason::NameUnknown);
    assert_eq!(reg.manifest_gets_count(), 0);

    // A digest that is not there: no "nearest tags" (they say nothing about a digest).
    let missing = format!("sha256:{}", "0".repeat(64));
    let r = probe_plain(
        format!("127.0.0.1:{}/library/nginx@{missing}", reg.addr.port()),
        "10s",
    )
    .await;
    assert_failure(&r, Phase::Manifest, Reason::ManifestUnknown);
    let msg = &r.failure.as_ref().unwrap().message;
    assert!(
        msg.starts_with(&format!("digest `{missing}` not found")),
        "{msg}"
    );
    assert!(
        msg.contains("the repository exists and has 4 tags"),
        "{msg}"
    );
    assert!(
        !msg.contains("mainline"),
        "no tag suggestions for a digest: {msg}"
    );

    let hub = FakeRegistry::builder()
        .auth(Auth::bearer(None))
        .hub_semantics(true)
        .repo(REPO, &["latest"])
        .start()
        .await;
    let r = probe_plain(image(hub.addr, "someone/private", "latest"), "10s").await;
    assert_failure(&r, Phase::Manifest, Reason::AuthRequired);
}

#[tokio::test]
async fn manifest_answers_are_classified_and_rate_limit_headers_kept_on_429() {
    let cases = [
        (StatusOverride::TooManyRequests, Reason::RateLimited),
        (StatusOverride::TooManyRequestsPlain, Reason::RateLimited),
        (StatusOverride::Status(500), Reason::ServerError),
        (StatusOverride::Status(403), Reason::AuthRequired),
        (StatusOverride::Garbage, Reason::ProtocolError),
        (StatusOverride::Hang, Reason::Timeout),
    ];
    for (status, want) in cases {
        let reg = FakeRegistry::builder()
            .auth(Auth::bearer(None))
            .manifest_status(status.clone())
            .rate_limit(Some(RateLimitHeaders {
                source: Some("192.0.2.9".into()),
                ..RateLimitHeaders::hub(0)
            }))
            .repo(REPO, &["latest"])
            .start()
            .await;
        let r = probe_plain(image(reg.addr, REPO, "latest"), "2s").await;
        assert_failure(&r, Phase::Manifest, want);
        if matches!(status, StatusOverride::TooManyRequests) {
            assert_eq!(
                r.rate_limit.as_ref().map(|l| l.remaining),
                Some(0),
                "{:?}",
                r.rate_limit
            );
            assert!(r.failure.unwrap().message.contains("remaining 0 of 100"));
        }
    }
}

#[tokio::test]
async fn a_hanging_registry_never_holds_a_probe_past_its_deadline() {
    let (addr, _guard) = silent_listener().await;
    let r = probe_plain(image(addr, "a", "b"), "1s").await;
    assert_failure(&r, Phase::Manifest, Reason::Timeout);
    assert!(
        r.duration >= Duration::from_millis(900) && r.duration < Duration::from_secs(3),
        "{:?}",
        r.duration
    );
}

// ---- the binary: exit codes, config errors, secrets ----------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn debug_logs_and_json_never_contain_passwords_or_tokens() {
    let tls = Tls::new();
    let reg = FakeRegistry::builder()
        .tls(tls.server(&["127.0.0.1"], Validity::Valid))
        .auth(Auth::bearer(Some(("robot", "hunter2-secret"))))
        .repo(REPO, &["latest"])
        .start()
        .await;
    let key = format!("127.0.0.1:{}", reg.addr.port());
    let config = tls.dir.path().join("c.yaml");
    std::fs::write(
        &config,
        format!(
            "targets:\n  - image: {}\n    docker_config: {}\n    tls: {{ca_file: {}}}\n",
            image(reg.addr, REPO, "latest"),
            tls.docker_config(&key, "robot", "hunter2-secret"),
            tls.ca_file()
        ),
    )
    .unwrap();
    for (log_format, output) in [("text", "text"), ("json", "json"), ("logfmt", "text")] {
        let out = tokio::task::spawn_blocking({
            let config = config.clone();
            move || {
                let flags = [
                    "--check",
                    "--log.level",
                    "trace",
                    "--log.format",
                    log_format,
                    "--output",
                    output,
                    "--config.file",
                ];
                pullprobe(flags.map(OsStr::new).into_iter().chain([config.as_ref()]))
            }
        })
        .await
        .unwrap();
        let all = format!("{}{}", out.stdout, out.stderr);
        assert_eq!(out.code, 0, "{all}");
        let tokens: Vec<String> = reg
            .requests()
            .iter()
            .filter_map(|q| {
                q.authorization
                    .as_deref()?
                    .strip_prefix("Bearer ")
                    .map(str::to_owned)
            })
            .collect();
        assert!(!tokens.is_empty(), "the registry saw bearer tokens");
        assert!(!all.contains("hunter2-secret"), "password leaked:\n{all}");
        for t in &tokens {
            assert!(!all.contains(t.as_str()), "token leaked:\n{all}");
        }
        if log_format == "logfmt" {
            assert!(
                !out.stderr.trim().is_empty(),
                "trace logging logged nothing"
            );
            for line in out.stderr.lines() {
                let pairs = logfmt_pairs(line)
                    .unwrap_or_else(|| panic!("not a logfmt line: {line:?}\n{all}"));
                let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
                assert_eq!(keys[..2], ["ts", "level"], "{line}");
                assert!(keys.contains(&"msg"), "no msg in {line}");
            }
        }
    }
}

/// The `key=value` pairs of a logfmt line as go-kit's logfmt encoder writes them (a value with
/// a space, `=` or `"` is quoted with Go's escapes), or `None` where the line is not logfmt.
fn logfmt_pairs(line: &str) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut rest = line;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        if key.is_empty() || key.contains([' ', '"']) {
            return None;
        }
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let end = loop {
                match chars.next()? {
                    (i, '"') => break i,
                    (_, '\\') => value.push(match chars.next()?.1 {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        c => c,
                    }),
                    (_, c) => value.push(c),
                }
            };
            (value, &quoted[end + 1..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_owned(), &after[end..])
        };
        pairs.push((key.to_owned(), value));
        rest = match after.strip_prefix(' ') {
            Some(r) => r,
            None if after.is_empty() => after,
            None => return None,
        };
    }
    Some(pairs)
}

#[test]
fn exit_codes_and_config_errors_name_file_key_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    // `pullprobe --check` on a config file `name` holding `yaml`.
    let check = |name: &str, yaml: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, yaml).unwrap();
        let out = pullprobe([
            OsStr::new("--check"),
            "--config.file".as_ref(),
            path.as_ref(),
        ]);
        (path, out)
    };
    let (bad, out) = check(
        "bad.yaml",
        "timeout: 10s\ntargets:\n  - image: nginx\n    tls:\n      ca_fil: /x\n",
    );
    assert_eq!(out.code, 2);
    let err = &out.stderr;
    assert!(
        err.contains(&bad.display().to_string()) && err.contains("ca_fil") && err.contains("fix:"),
        "{err}"
    );
    assert!(out.stdout.is_empty());

    let (_, out) = check(
        "bad2.yaml",
        "targets:\n  - image: nginx\n    docker_config: nope.json\n",
    );
    assert_eq!(out.code, 2);
    let err = &out.stderr;
    assert!(
        err.contains("targets[0].docker_config") && err.contains("nope.json"),
        "{err}"
    );

    let out = pullprobe(["--check", "--output", "yaml"]);
    assert_eq!(out.code, 2, "usage errors exit 2");
    let out = pullprobe(["--check", "Not A Ref"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("invalid image argument `Not A Ref`"),
        "{}",
        out.stderr
    );
}

/// `manifest_unknown` says the repository exists only when `tags/list` confirmed it.
#[tokio::test]
async fn a_missing_tag_without_a_tag_list_does_not_claim_the_repository_exists() {
    use crate::support::hostile::{Hostile, Reply, response};
    let s = Hostile::start(|req, _| {
        Reply::Bytes(if req.path().ends_with("/tags/list") {
            response(401, &[], br#"{"errors":[{"code":"UNAUTHORIZED"}]}"#)
        } else {
            response(404, &[], br#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#)
        })
    })
    .await;
    let r = probe_plain(image(s.addr, REPO, "gone"), "5s").await;
    assert_failure(&r, Phase::Manifest, Reason::ManifestUnknown);
    let msg = &r.failure.as_ref().unwrap().message;
    assert!(
        msg.contains("did not confirm that the repository exists"),
        "{msg}"
    );
    assert!(!msg.contains("; the repository exists"), "{msg}");
}

/// kubelet `BasicDockerKeyring.Lookup` + `kuberuntime_image.go` `PullImage`: every matching
/// entry is tried in turn; a stale `host/team` entry next to a valid `host` entry still pulls.
/// When all fail, the message names the file and the keys; when none match, the keys present.
#[tokio::test]
async fn every_matching_credential_is_tried_and_the_message_names_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let reg = FakeRegistry::builder()
        .auth(Auth::bearer(Some(("u", "right"))))
        .repo("team/app", &["1"])
        .start()
        .await;
    let host = format!("127.0.0.1:{}", reg.addr.port());
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    let write = |name: &str, doc: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, doc).unwrap();
        p.display().to_string()
    };
    let stale_and_good = write(
        "stale.json",
        format!(
            r#"{{"auths":{{"{host}/team":{{"auth":"{}"}},"{host}":{{"auth":"{}"}}}}}}"#,
            b64("u:stale"),
            b64("u:right")
        ),
    );
    let all_wrong = write(
        "wrong.json",
        format!(
            r#"{{"auths":{{"{host}/team":{{"auth":"{}"}},"{host}":{{"auth":"{}"}}}}}}"#,
            b64("u:stale"),
            b64("u:older")
        ),
    );
    let elsewhere = write(
        "elsewhere.json",
        format!(
            r#"{{"auths":{{"ghcr.io":{{"auth":"{}"}},"{host}/other":{{"auth":"{}"}}}}}}"#,
            b64("u:x"),
            b64("u:y")
        ),
    );
    // `az acr login` writes an identity token and an empty password: kubelet ignores the token.
    let acr = write(
        "acr.json",
        format!(
            r#"{{"auths":{{"{host}":{{"auth":"{}","identitytoken":"refresh-secret"}}}}}}"#,
            b64("00000000-0000-0000-0000-000000000000:")
        ),
    );
    let img = format!("{host}/team/app:1");
    let yaml = format!(
        "targets:\n  - {{name: a, image: {img}, plain_http: true, docker_config: {stale_and_good}}}\n\
         \x20 - {{name: b, image: {img}, plain_http: true, docker_config: {all_wrong}}}\n\
         \x20 - {{name: c, image: {img}, plain_http: true, docker_config: {elsewhere}}}\n\
         \x20 - {{name: d, image: {img}, plain_http: true, docker_config: {acr}}}\n"
    );
    let r = probe_config(dir.path(), &yaml).await;
    assert!(r[0].ok(), "{:#?}", r[0].failure);

    assert_failure(&r[1], Phase::Auth, Reason::AuthFailed);
    let msg = &r[1].failure.as_ref().unwrap().message;
    assert!(msg.contains(&all_wrong), "{msg}");
    assert!(msg.contains(&format!("key \"{host}/team\"")), "{msg}");
    assert!(
        msg.contains(&format!("key \"{host}\" also failed")),
        "{msg}"
    );
    assert!(!msg.contains("stale") && !msg.contains("older"), "{msg}");

    assert_failure(&r[2], Phase::Auth, Reason::AuthRequired);
    let msg = &r[2].failure.as_ref().unwrap().message;
    assert!(msg.contains(&elsewhere), "{msg}");
    assert!(
        msg.contains("ghcr.io") && msg.contains(&format!("{host}/other")),
        "{msg}"
    );

    // The empty password means an anonymous token request (containerd `doBearerAuth`), which
    // this registry refuses.
    assert_failure(&r[3], Phase::Auth, Reason::AuthRequired);
    let msg = &r[3].failure.as_ref().unwrap().message;
    assert!(msg.contains("identity token"), "{msg}");
    assert!(
        msg.contains("00000000-0000-0000-0000-000000000000"),
        "{msg}"
    );
    assert!(!msg.contains("refresh-secret"), "{msg}");
    assert!(
        reg.requests()
            .iter()
            .any(|q| q.server == ServerKind::Token && q.authorization.is_none()),
        "the token was asked anonymously"
    );
}

/// `--check | head -1` must end with the probe's exit status, not a panic (101).
#[test]
fn check_into_a_closed_pipe_exits_with_the_probe_status() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        format!(
            "targets:\n  - image: 127.0.0.1:{}/a:b\n    plain_http: true\n",
            closed_port().port()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pullprobe"))
        .args([
            OsStr::new("--check"),
            OsStr::new("--config.file"),
            config.as_os_str(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader is gone before anything is written
    let out = child.wait_with_output().unwrap();
    crate::support::Run::from_output(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `--log.level` knows error, warn, info, debug and trace; anything else is a usage error.
#[test]
fn an_unknown_log_level_is_a_usage_error() {
    let run = pullprobe(["--check", "--log.level", "warning", "nginx"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("error, warn, info, debug, trace"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn check_exit_codes_follow_the_results() {
    let ok = FakeRegistry::builder()
        .auth(Auth::None)
        .repo(REPO, &["latest"])
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        format!(
            "targets:\n  - image: {}\n    plain_http: true\n",
            image(ok.addr, REPO, "latest")
        ),
    )
    .unwrap();
    let run = |images: Vec<String>| {
        let mut args: Vec<OsString> = vec![
            "--check".into(),
            "--config.file".into(),
            config.clone().into(),
        ];
        args.extend(images.into_iter().map(Into::into));
        tokio::task::spawn_blocking(move || pullprobe(args))
    };
    let out = run(vec![]).await.unwrap();
    assert_eq!(out.code, 0, "{}", out.stdout);
    let text = &out.stdout;
    assert!(text.contains("1 of 1 targets ok"), "{text}");
    let out = run(vec![image(ok.addr, REPO, "nope")]).await.unwrap();
    assert_eq!(out.code, 1);
    let text = &out.stdout;
    for want in [
        "FAIL manifest_unknown",
        "failed step: manifest",
        "why:",
        "what to do:",
    ] {
        assert!(text.contains(want), "{want} in\n{text}");
    }
}

#[tokio::test]
async fn check_bounds_how_many_probes_run_at_once() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // A server that holds every connection until the client gives up, counting open ones.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (open, max, total) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let server = {
        let (open, max, total) = (open.clone(), max.clone(), total.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (open, max) = (open.clone(), max.clone());
                total.fetch_add(1, Ordering::SeqCst);
                let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(now, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while matches!(tokio::io::AsyncReadExt::read(&mut s, &mut buf).await, Ok(n) if n > 0)
                    {
                    }
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        })
    };
    let mut yaml = String::from("timeout: 300ms\ntargets:\n");
    for i in 0..5 {
        yaml += &format!(
            "  - name: t{i}\n    image: {}\n    plain_http: true\n",
            image(addr, "app", &format!("v{i}"))
        );
    }
    init();
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_yaml("t.yaml", &yaml, dir.path()).unwrap();
    let reports = pullprobe::check::probe_all_bounded(
        &Prober::from_config(&config),
        config.targets.clone(),
        2,
    )
    .await;
    server.abort();
    assert_eq!(reports.len(), 5);
    assert!(
        reports.iter().all(|r| r.reason() == Reason::Timeout),
        "every probe waited for its own deadline"
    );
    assert_eq!(total.load(Ordering::SeqCst), 5, "every target was probed");
    // Overlap of the probes' own [start, end] intervals: never more than 2 (the server's view
    // lags behind closed connections, so it only shows that not all ran at once).
    let spans: Vec<_> = reports
        .iter()
        .map(|r| (r.started_at, r.started_at + r.duration))
        .collect();
    let most = spans
        .iter()
        .map(|(s, _)| spans.iter().filter(|(s2, e2)| s2 <= s && s < e2).count())
        .max()
        .unwrap();
    assert_eq!(most, 2, "{spans:?}");
    assert!(max.load(Ordering::SeqCst) < 5, "not all at once");
}
