//! The agent with the real engine against the in-process fakes: what a scrape shows for a
//! healthy TLS registry with rate-limit headers, a registry without them, and a refused
//! connection — and that a reload removes a target's series.

use std::net::SocketAddr;
use std::time::Duration;

use pullprobe::agent::{self, AgentOptions};
use tokio::net::TcpListener;

use crate::support::registry::{Auth, FakeRegistry, RateLimitHeaders};
use crate::support::tls::{TestCa, Validity, server_config};
use crate::support::{closed_port, init};

/// The value of the one sample of `name` whose labels include every `label="value"` in `labels`.
fn sample(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn scrape(addr: SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn wait_for(addr: SocketAddr, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let text = scrape(addr).await;
        if pred(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The agent running in-process on `127.0.0.1:0`; `stop` shuts it down and checks it ended
/// cleanly within the grace period.
pub struct Running {
    pub addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<Result<(), agent::AgentError>>,
}

/// Starts the agent for `config` with the real engine, no file watching and no SIGHUP handler;
/// `adjust` changes further options.
pub async fn start(config: &std::path::Path, adjust: impl FnOnce(&mut AgentOptions)) -> Running {
    init();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut opts = AgentOptions::new(Some(config.to_owned()));
    opts.watch_interval = Duration::ZERO;
    opts.reload_on_sighup = false;
    adjust(&mut opts);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(agent::run(opts, listener, async {
        let _ = stopped.await;
    }));
    Running { addr, stop, handle }
}

impl Running {
    pub async fn stop(self) {
        self.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(3), self.handle)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_scrape_reflects_real_probes_and_reloads() {
    init();
    let ca = TestCa::new("agent e2e CA");
    let leaf = ca.leaf(&["127.0.0.1"], Validity::Valid);
    let hub = FakeRegistry::builder()
        .tls(server_config(&leaf))
        .auth(Auth::Bearer {
            user_pass: None,
            service: "fake".into(),
        })
        .repo("ratelimitpreview/test", &["latest"])
        .rate_limit(Some(RateLimitHeaders::hub(76)))
        .start()
        .await;
    let plain = FakeRegistry::builder()
        .auth(Auth::None)
        .repo("app", &["v1"])
        .start()
        .await;
    let closed = closed_port();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write_ca_pem(dir.path());
    let hub_target = format!(
        "  - name: hub\n    image: 127.0.0.1:{}/ratelimitpreview/test:latest\n    tls: {{ca_file: {}}}\n",
        hub.addr.port(),
        ca_file.display()
    );
    let plain_target = format!(
        "  - name: plain\n    image: 127.0.0.1:{}/app:v1\n    plain_http: true\n",
        plain.addr.port()
    );
    let down_target = format!(
        "  - name: down\n    image: 127.0.0.1:{}/app:v1\n    plain_http: true\n",
        closed.port()
    );
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!("interval: 1s\ntimeout: 1s\ntargets:\n{hub_target}{plain_target}{down_target}"),
    )
    .unwrap();

    let agent = start(&config, |_| {}).await;
    let addr = agent.addr;

    let hub_l = [("target", "hub")];
    let s = wait_for(addr, "three targets probed twice", |s| {
        ["hub", "plain", "down"]
            .iter()
            .all(|t| sample(s, "pullprobe_probes_total", &[("target", t)]).unwrap_or(0.0) >= 2.0)
    })
    .await;
    let registry = format!("127.0.0.1:{}", hub.addr.port());
    assert_eq!(
        sample(
            &s,
            "pullprobe_probe_success",
            &[("target", "hub"), ("registry", &registry)]
        ),
        Some(1.0),
        "{s}"
    );
    assert_eq!(
        sample(
            &s,
            "pullprobe_probe_result",
            &[("target", "hub"), ("phase", "none"), ("reason", "ok")]
        ),
        Some(1.0)
    );
    assert_eq!(sample(&s, "pullprobe_ratelimit_limit", &hub_l), Some(100.0));
    assert_eq!(
        sample(&s, "pullprobe_ratelimit_remaining", &hub_l),
        Some(76.0)
    );
    assert_eq!(
        sample(&s, "pullprobe_ratelimit_window_seconds", &hub_l),
        Some(21600.0)
    );
    assert_eq!(
        sample(
            &s,
            "pullprobe_ratelimit_source_info",
            &[("target", "hub"), ("source", "192.0.2.1")]
        ),
        Some(1.0)
    );
    #[allow(clippy::cast_precision_loss)]
    let expiry = leaf.not_after_unix as f64;
    assert_eq!(
        sample(&s, "pullprobe_tls_cert_expiry_timestamp_seconds", &hub_l),
        Some(expiry)
    );
    // `auth` is absent once the token is cached (the probe is then one request).
    for phase in ["connect", "tls", "manifest"] {
        assert!(
            sample(
                &s,
                "pullprobe_phase_duration_seconds",
                &[("target", "hub"), ("phase", phase)]
            )
            .is_some(),
            "{phase}"
        );
    }
    assert_eq!(
        hub.token_requests_count(),
        1,
        "the agent reuses the token across rounds"
    );

    assert_eq!(
        sample(&s, "pullprobe_probe_success", &[("target", "plain")]),
        Some(1.0)
    );
    assert_eq!(
        sample(&s, "pullprobe_ratelimit_remaining", &[("target", "plain")]),
        None,
        "no headers, no series"
    );
    assert_eq!(
        sample(
            &s,
            "pullprobe_tls_cert_expiry_timestamp_seconds",
            &[("target", "plain")]
        ),
        None
    );

    assert_eq!(
        sample(&s, "pullprobe_probe_success", &[("target", "down")]),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &s,
            "pullprobe_probe_result",
            &[
                ("target", "down"),
                ("phase", "connect"),
                ("reason", "connect_refused")
            ]
        ),
        Some(1.0)
    );
    assert!(sample(&s, "pullprobe_probe_failures_total", &[("target", "down")]).unwrap() >= 2.0);
    // Every probe of `down` failed: its run of failures counts them all (what the alert rules
    // compare with 2); the healthy targets have none.
    assert_eq!(
        sample(
            &s,
            "pullprobe_probe_consecutive_failures",
            &[("target", "down")]
        ),
        sample(&s, "pullprobe_probes_total", &[("target", "down")])
    );
    for t in ["hub", "plain"] {
        assert_eq!(
            sample(&s, "pullprobe_probe_consecutive_failures", &[("target", t)]),
            Some(0.0),
            "{t}"
        );
    }
    assert!(
        !s.contains("refused the connection") && !s.contains("Connection refused"),
        "error text never reaches the scrape"
    );

    // The README documents exactly the metrics the agent exports.
    let exported: std::collections::BTreeSet<String> = s
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
        .filter(|n| n.starts_with("pullprobe_"))
        .map(str::to_owned)
        .collect();
    // And the standard process_* families every exporter has.
    for family in [
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "process_virtual_memory_bytes",
        "process_virtual_memory_max_bytes",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
    ] {
        assert!(
            s.contains(&format!("\n{family} ")),
            "{family} in the scrape"
        );
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    // pullprobe_pod_image_pull_failure and pullprobe_pod_watch_up need pods.watch and an API
    // server: the pod tests scrape them from the agent binary watching the fake API
    // (pods.rs, alerts_e2e.rs).
    let documented: std::collections::BTreeSet<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `pullprobe_")?.split('`').next())
        .map(|n| format!("pullprobe_{n}"))
        .filter(|n| n != "pullprobe_pod_image_pull_failure" && n != "pullprobe_pod_watch_up")
        .collect();
    assert_eq!(
        exported, documented,
        "README metric table vs. a real scrape"
    );

    // Remove the failing target: its series disappear after the reload.
    std::fs::write(
        &config,
        format!("interval: 1s\ntimeout: 1s\ntargets:\n{hub_target}{plain_target}"),
    )
    .unwrap();
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let s = scrape(addr).await;
    assert!(!s.contains("target=\"down\""), "{s}");
    assert_eq!(
        sample(&s, "pullprobe_config_last_reload_successful", &[]),
        Some(1.0)
    );

    agent.stop().await;
}

/// Hostile registries (a hanging one, a trickling one, an endless token body) never stop the
/// agent from answering scrapes, and each ends with a bounded probe and a closed-set reason.
#[tokio::test(flavor = "multi_thread")]
async fn agent_keeps_serving_while_registries_are_hostile() {
    use crate::support::hostile::{Hostile, Reply, healthy, response};
    init();
    let hang = Hostile::start(|_, _| Reply::Hang).await;
    let trickle = Hostile::start(|req, me| match req.path() {
        "/v2/app/manifests/v1" => Reply::Trickle {
            at_once: Vec::new(),
            trickled: response(200, &[], b"{}"),
            every: Duration::from_secs(1),
        },
        _ => healthy(req, me),
    })
    .await;
    let endless = Hostile::start(|req, me| match req.path() {
        "/token" => Reply::Endless {
            head: b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            chunk: b"400\r\n".iter().copied().chain(std::iter::repeat_n(b' ', 1024)).chain(*b"\r\n").collect(),
        },
        _ => healthy(req, me),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let mut yaml = String::from("interval: 2s\ntimeout: 1500ms\ntargets:\n");
    for (name, addr) in [
        ("hang", hang.addr),
        ("trickle", trickle.addr),
        ("endless", endless.addr),
    ] {
        yaml += &format!(
            "  - name: {name}\n    image: 127.0.0.1:{}/app:v1\n    plain_http: true\n",
            addr.port()
        );
    }
    std::fs::write(&config, yaml).unwrap();
    let agent = start(&config, |_| {}).await;
    let addr = agent.addr;

    // Scrapes answer quickly the whole time, while probes hang or trickle.
    let started = tokio::time::Instant::now();
    let mut s = String::new();
    while started.elapsed() < Duration::from_secs(12) {
        s = tokio::time::timeout(Duration::from_secs(1), scrape(addr))
            .await
            .expect("a scrape answers within 1 s");
        let done = ["hang", "trickle", "endless"]
            .iter()
            .all(|t| sample(&s, "pullprobe_probes_total", &[("target", t)]).unwrap_or(0.0) >= 2.0);
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        sample(
            &s,
            "pullprobe_probe_result",
            &[
                ("target", "hang"),
                ("phase", "manifest"),
                ("reason", "timeout")
            ]
        ),
        Some(1.0),
        "{s}"
    );
    assert_eq!(
        sample(
            &s,
            "pullprobe_probe_result",
            &[
                ("target", "trickle"),
                ("phase", "manifest"),
                ("reason", "timeout")
            ]
        ),
        Some(1.0),
        "{s}"
    );
    assert_eq!(
        sample(
            &s,
            "pullprobe_probe_result",
            &[
                ("target", "endless"),
                ("phase", "auth"),
                ("reason", "protocol_error")
            ]
        ),
        Some(1.0),
        "{s}"
    );
    for t in ["hang", "trickle", "endless"] {
        let d = sample(&s, "pullprobe_probe_duration_seconds", &[("target", t)]).unwrap();
        assert!(d < 2.5, "{t}: probe bounded by its timeout, took {d}s");
    }
    agent.stop().await;
}
