//! The agent in-process: `agent::run` on `127.0.0.1:0` with a synthetic probe engine, asserted
//! through `/metrics` scrapes (names, labels, values, presence and absence of series), reloads
//! by HTTP and by a ConfigMap-style symlink swap, `promtool check metrics`, and shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use pullprobe::agent::{self, AgentError, AgentOptions, BoxFuture, Probe};
use pullprobe::config::{Config, Target};
use pullprobe::outcome::{Failure, Phase, Reason};
use pullprobe::probe::{EndpointResult, PhaseTiming, ProbeReport, RateLimit, TlsReport};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

// ---- a synthetic engine ---------------------------------------------------------------------

#[derive(Clone, Default)]
struct Behaviour {
    failure: Option<Failure>,
    rate_limit: Option<RateLimit>,
    /// The node configures [`MIRROR`] for the registry, and it refuses: the probe asks it
    /// first, then the registry.
    mirror_down: bool,
    /// Never finishes (to test cancellation).
    hang: bool,
}

/// Answers each target as told in `behaviours`; unknown targets succeed without extras.
#[derive(Default)]
struct Fake {
    behaviours: Mutex<HashMap<String, Behaviour>>,
}

impl Fake {
    fn set(&self, target: &str, b: Behaviour) {
        self.behaviours.lock().unwrap().insert(target.to_owned(), b);
    }
}

impl Probe for Fake {
    fn probe<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, ProbeReport> {
        let b = self
            .behaviours
            .lock()
            .unwrap()
            .get(&target.name)
            .cloned()
            .unwrap_or_default();
        Box::pin(async move {
            let registry = target.image.api_authority();
            let mut endpoints = Vec::new();
            if b.mirror_down {
                endpoints.push(EndpointResult {
                    endpoint: MIRROR.to_owned(),
                    upstream: false,
                    failure: Some(refused()),
                });
            }
            endpoints.push(EndpointResult {
                endpoint: registry.clone(),
                upstream: true,
                failure: b.failure.clone(),
            });
            if b.hang {
                std::future::pending::<()>().await;
            }
            let failed_at = b.failure.as_ref().map(|f| f.phase);
            let phases = Phase::TIMED
                .into_iter()
                .take_while(|p| Some(*p) != failed_at)
                .chain(failed_at)
                .map(|phase| PhaseTiming {
                    phase,
                    duration: Duration::from_millis(3),
                })
                .collect();
            ProbeReport {
                target: target.name.clone(),
                image: target.image.to_string(),
                registry: target.image.api_authority(),
                tls: b.failure.is_none().then_some(TlsReport {
                    version: Some("TLSv1.3"),
                    earliest_not_after: Some(1_900_000_000),
                    ..TlsReport::default()
                }),
                failure: b.failure,
                duration: Duration::from_millis(15),
                started_at: SystemTime::now(),
                phases,
                address: None,
                digest: None,
                rate_limit: b.rate_limit,
                endpoint: registry,
                endpoints,
                warnings: Vec::new(),
            }
        })
    }

    fn reconfigure(self: Arc<Self>, _: &Config) -> Arc<dyn Probe> {
        self
    }
}

/// A mirror of the fake registry, configured by some targets' node (`mirror_down`).
const MIRROR: &str = "mirror.internal:5000";

fn hub_limits() -> RateLimit {
    RateLimit {
        limit: 100,
        remaining: 42,
        window_seconds: Some(21600),
        source: Some("198.51.100.9".to_owned()),
    }
}

fn refused() -> Failure {
    Failure::new(
        Phase::Connect,
        Reason::ConnectRefused,
        "127.0.0.1:1 refused the connection",
    )
}

// ---- running the agent ----------------------------------------------------------------------

fn config_yaml(targets: &[&str]) -> String {
    let mut y = String::from("interval: 300ms\ntimeout: 100ms\ntargets:\n");
    for t in targets {
        y.push_str(&format!(
            "  - name: {t}\n    image: 127.0.0.1:1/{t}:v1\n    plain_http: true\n"
        ));
    }
    y
}

struct Agent {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), AgentError>>,
    client: reqwest::Client,
}

fn options(config: &Path, fake: &Arc<Fake>) -> AgentOptions {
    let mut opts = AgentOptions::new(Some(config.to_owned())).with_probe(fake.clone());
    opts.watch_interval = Duration::ZERO;
    opts.reload_on_sighup = false;
    opts.seed = Some(1);
    opts
}

async fn start(opts: AgentOptions) -> Agent {
    pullprobe::install_crypto_provider();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(agent::run(opts, listener, async {
        let _ = stopped.await;
    }));
    let agent = Agent {
        addr,
        stop: Some(stop),
        handle,
        client: reqwest::Client::new(),
    };
    // The server answers (503) a moment before the scheduler has started.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while agent.get("/-/ready").await.status() != 200 {
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    agent
}

impl Agent {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    async fn scrape(&self) -> String {
        let r = self.get("/metrics").await;
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    }

    async fn reload(&self) -> (u16, String) {
        let r = self
            .client
            .post(self.url("/-/reload"))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Scrapes until `pred` holds (at most 10 s) and returns that scrape.
    async fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.scrape().await;
            if pred(&text) {
                return text;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; last scrape:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(3), self.handle)
            .await
            .expect("the agent stops within the grace period");
        result.unwrap().unwrap();
    }
}

/// The value of the series `name{labels}`, labels in exposition order.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels: Vec<_> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    let series = if labels.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{}}}", labels.join(","))
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

/// The labels of the families about the target itself (interval, counters, last probe time).
fn tr(target: &str) -> [(&str, &str); 2] {
    [("target", target), ("registry", "127.0.0.1:1")]
}

/// The labels of the families about the last result, answered (or failed) by `endpoint`.
fn tre<'a>(target: &'a str, endpoint: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("target", target),
        ("registry", "127.0.0.1:1"),
        ("endpoint", endpoint),
    ]
}

fn probes(text: &str, target: &str) -> f64 {
    value(text, "pullprobe_probes_total", &tr(target)).unwrap_or(0.0)
}

fn write_config(dir: &Path, targets: &[&str]) -> PathBuf {
    let path = dir.join("config.yaml");
    std::fs::write(&path, config_yaml(targets)).unwrap();
    path
}

/// An agent with two targets: `hub` succeeds with Docker Hub's rate-limit headers after its
/// mirror refused, `private` is refused; the fake lets a test change that. The directory holds the config; keep it while
/// the agent runs.
async fn start_hub_and_private() -> (Agent, Arc<Fake>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &["hub", "private"]);
    let fake = Arc::new(Fake::default());
    fake.set(
        "hub",
        Behaviour {
            rate_limit: Some(hub_limits()),
            mirror_down: true,
            ..Behaviour::default()
        },
    );
    fake.set(
        "private",
        Behaviour {
            failure: Some(refused()),
            ..Behaviour::default()
        },
    );
    let agent = start(options(&config, &fake)).await;
    (agent, fake, dir)
}

// ---- tests ----------------------------------------------------------------------------------

/// `--web.telemetry-path`: the metrics move, `/metrics` is then unknown, the landing page links
/// the new path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_telemetry_path_moves_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &["hub"]);
    let fake = Arc::new(Fake::default());
    let mut opts = options(&config, &fake);
    opts.telemetry_path = "/probe/metrics".to_owned();
    let agent = start(opts).await;
    let r = agent.get("/probe/metrics").await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("pullprobe_build_info"));
    assert_eq!(agent.get("/metrics").await.status(), 404);
    let landing = agent.get("/").await.text().await.unwrap();
    assert!(landing.contains("href=\"/probe/metrics\""), "{landing}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_reports_success_and_failure_targets() {
    let (agent, fake, _dir) = start_hub_and_private().await;

    let first = agent
        .wait_for("two probes of each target", |t| {
            probes(t, "hub") >= 2.0 && probes(t, "private") >= 2.0
        })
        .await;
    let hub = tr("hub");
    let private = tr("private");
    // The last result's families name the endpoint that answered (or failed).
    let hub_at = tre("hub", "127.0.0.1:1");
    let private_at = tre("private", "127.0.0.1:1");
    assert_eq!(value(&first, "pullprobe_probe_success", &hub_at), Some(1.0));
    assert_eq!(
        value(&first, "pullprobe_probe_success", &private_at),
        Some(0.0)
    );
    let result = |t: &str, phase: &str, reason: &str| {
        value(
            &first,
            "pullprobe_probe_result",
            &[
                ("target", t),
                ("registry", "127.0.0.1:1"),
                ("endpoint", "127.0.0.1:1"),
                ("phase", phase),
                ("reason", reason),
            ],
        )
    };
    // Every endpoint asked: hub's mirror refused before the registry answered.
    assert_eq!(
        value(&first, "pullprobe_endpoint_success", &tre("hub", MIRROR)),
        Some(0.0)
    );
    assert_eq!(
        value(&first, "pullprobe_endpoint_success", &hub_at),
        Some(1.0)
    );
    assert_eq!(
        value(&first, "pullprobe_endpoint_success", &private_at),
        Some(0.0)
    );
    assert_eq!(first.matches("pullprobe_endpoint_success{").count(), 3);
    assert_eq!(result("hub", "none", "ok"), Some(1.0));
    assert_eq!(result("private", "connect", "connect_refused"), Some(1.0));
    assert_eq!(first.matches("pullprobe_probe_result{").count(), 2);
    assert_eq!(
        value(&first, "pullprobe_probe_failures_total", &private),
        Some(probes(&first, "private"))
    );
    assert_eq!(
        value(&first, "pullprobe_probe_failures_total", &hub),
        Some(0.0)
    );
    // Every probe of private failed so far: its run of failures is all of them; hub has none.
    assert_eq!(
        value(&first, "pullprobe_probe_consecutive_failures", &private),
        Some(probes(&first, "private"))
    );
    assert_eq!(
        value(&first, "pullprobe_probe_consecutive_failures", &hub),
        Some(0.0)
    );
    assert_eq!(
        value(&first, "pullprobe_probe_duration_seconds", &hub_at),
        Some(0.015)
    );
    assert_eq!(
        value(
            &first,
            "pullprobe_phase_duration_seconds",
            &[hub_at[0], hub_at[1], hub_at[2], ("phase", "manifest")]
        ),
        Some(0.003)
    );
    assert_eq!(
        value(&first, "pullprobe_probe_interval_seconds", &hub),
        Some(0.3)
    );
    let last = value(&first, "pullprobe_last_probe_timestamp_seconds", &hub).unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - last).abs() < 60.0, "{last} vs {now}");
    assert_eq!(
        value(
            &first,
            "pullprobe_tls_cert_expiry_timestamp_seconds",
            &hub_at
        ),
        Some(1_900_000_000.0)
    );
    // Rate-limit gauges only where the registry sends the headers.
    assert_eq!(
        value(&first, "pullprobe_ratelimit_limit", &hub_at),
        Some(100.0)
    );
    assert_eq!(
        value(&first, "pullprobe_ratelimit_remaining", &hub_at),
        Some(42.0)
    );
    assert_eq!(
        value(&first, "pullprobe_ratelimit_window_seconds", &hub_at),
        Some(21600.0)
    );
    assert_eq!(
        value(
            &first,
            "pullprobe_ratelimit_source_info",
            &[hub_at[0], hub_at[1], hub_at[2], ("source", "198.51.100.9")]
        ),
        Some(1.0)
    );
    for name in [
        "pullprobe_ratelimit_limit",
        "pullprobe_ratelimit_remaining",
        "pullprobe_ratelimit_window_seconds",
        "pullprobe_tls_cert_expiry_timestamp_seconds",
    ] {
        assert_eq!(value(&first, name, &private_at), None, "{name}");
    }
    assert!(
        !first.contains("refused the connection"),
        "no error text in the scrape"
    );
    assert_eq!(
        value(&first, "pullprobe_config_last_reload_successful", &[]),
        Some(1.0)
    );
    assert!(first.contains("pullprobe_build_info{version=\""));
    assert!(first.contains("# HELP pullprobe_probe_success "));
    assert!(first.contains("# TYPE pullprobe_probes_total counter"));

    // Counters increase between scrapes.
    let before = probes(&first, "hub");
    let later = agent
        .wait_for("more probes", |t| probes(t, "hub") > before)
        .await;
    assert!(
        value(&later, "pullprobe_probe_failures_total", &private)
            >= value(&first, "pullprobe_probe_failures_total", &private)
    );

    // The quota recovers: the gauges follow the latest result, and vanish with the headers.
    // The node's mirror is gone too: its series vanish with it.
    fake.set("hub", Behaviour::default());
    let recovered = agent
        .wait_for("rate-limit gauges and the mirror gone", |t| {
            value(t, "pullprobe_ratelimit_remaining", &hub_at).is_none()
                && !t.contains("pullprobe_ratelimit_source_info")
                && !t.contains(MIRROR)
        })
        .await;
    assert_eq!(
        value(&recovered, "pullprobe_endpoint_success", &hub_at),
        Some(1.0)
    );

    let r = agent.get("/metrics").await;
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "text/plain; version=0.0.4"
    );
    assert_eq!(agent.get("/-/healthy").await.status(), 200);
    assert_eq!(agent.get("/-/ready").await.status(), 200);
    let landing = agent.get("/").await.text().await.unwrap();
    for link in ["/metrics", "/-/healthy", "/-/ready", "/-/reload"] {
        assert!(landing.contains(link), "{link}");
    }
    // Each target's last result: reason, phase, age, message; plain HTML.
    assert!(!landing.contains("<script"), "{landing}");
    let row = |name: &str| {
        landing
            .lines()
            .find(|l| l.starts_with(&format!("<tr><td>{name}</td>")))
            .unwrap_or_else(|| panic!("no row for {name}: {landing}"))
            .to_owned()
    };
    let private = row("private");
    assert!(
        private.contains("<td>connect_refused</td><td>connect</td>"),
        "{private}"
    );
    assert!(
        private.contains(" ago</td>") || private.contains("just now"),
        "{private}"
    );
    assert!(
        private.contains("127.0.0.1:1 refused the connection"),
        "{private}"
    );
    assert!(row("hub").contains("<td>ok</td>"), "{landing}");
    assert_eq!(agent.get("/nope").await.status(), 404);
    assert_eq!(agent.get("/-/reload").await.status(), 405);
    let post = agent
        .client
        .post(agent.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);

    // private recovers: its run of failures ends (0), its failure counter keeps its count.
    let failed = value(
        &agent.scrape().await,
        "pullprobe_probe_failures_total",
        &tr("private"),
    )
    .unwrap();
    assert!(failed >= 2.0, "{failed}");
    fake.set("private", Behaviour::default());
    let ok = agent
        .wait_for("private's run of failures to end", |t| {
            value(t, "pullprobe_probe_consecutive_failures", &tr("private")) == Some(0.0)
        })
        .await;
    assert!(value(&ok, "pullprobe_probe_failures_total", &tr("private")).unwrap() >= failed);
    assert_eq!(
        value(
            &ok,
            "pullprobe_probe_success",
            &tre("private", "127.0.0.1:1")
        ),
        Some(1.0)
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_and_removes_targets_and_a_bad_config_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &["keep", "drop"]);
    let fake = Arc::new(Fake::default());
    let agent = start(options(&config, &fake)).await;
    let before = agent
        .wait_for("both targets probed", |t| {
            probes(t, "keep") >= 1.0 && probes(t, "drop") >= 1.0
        })
        .await;
    let kept_count = probes(&before, "keep");

    write_config(dir.path(), &["keep", "new"]);
    assert_eq!(
        agent.reload().await,
        (200, "Configuration reloaded.\n".to_owned())
    );
    let after = agent
        .wait_for("the new target probed", |t| probes(t, "new") >= 1.0)
        .await;
    assert!(
        !after.contains("target=\"drop\""),
        "every series of the removed target is gone:\n{after}"
    );
    assert!(
        probes(&after, "keep") >= kept_count,
        "counters survive a reload"
    );

    // A bad config: the reload fails with the config error and the old config keeps running.
    std::fs::write(&config, config_yaml(&["keep"]) + "bogus_key: 1\n").unwrap();
    let (status, body) = agent.reload().await;
    assert_eq!(status, 500);
    assert!(body.contains("invalid configuration in"), "{body}");
    assert!(body.contains("bogus_key"), "{body}");
    let failed = agent.scrape().await;
    assert_eq!(
        value(&failed, "pullprobe_config_last_reload_successful", &[]),
        Some(0.0)
    );
    let new_count = probes(&failed, "new");
    agent
        .wait_for("the old config still probing", |t| {
            probes(t, "new") > new_count
        })
        .await;

    // Fixing the file recovers.
    write_config(dir.path(), &["keep"]);
    assert_eq!(agent.reload().await.0, 200);
    let fixed = agent.scrape().await;
    assert_eq!(
        value(&fixed, "pullprobe_config_last_reload_successful", &[]),
        Some(1.0)
    );
    assert!(!fixed.contains("target=\"new\""));
    agent.stop().await;
}

/// Kubernetes updates a mounted ConfigMap by writing a new `..<timestamp>` directory and
/// swapping the `..data` symlink; `config.yaml` is a symlink to `..data/config.yaml`.
struct ConfigMapDir {
    dir: tempfile::TempDir,
    version: u32,
}

impl ConfigMapDir {
    fn new(yaml: &str) -> Self {
        let mut c = ConfigMapDir {
            dir: tempfile::tempdir().unwrap(),
            version: 0,
        };
        c.publish(yaml);
        std::os::unix::fs::symlink("..data/config.yaml", c.dir.path().join("config.yaml")).unwrap();
        c
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    /// Writes a new version and swaps `..data` atomically, as the kubelet does.
    fn publish(&mut self, yaml: &str) {
        let d = self.dir.path();
        let old =
            (self.version > 0).then(|| d.join(format!("..2026_11_22_10_0{}_00.1", self.version)));
        self.version += 1;
        let name = format!("..2026_11_22_10_0{}_00.1", self.version);
        std::fs::create_dir(d.join(&name)).unwrap();
        std::fs::write(d.join(&name).join("config.yaml"), yaml).unwrap();
        std::os::unix::fs::symlink(&name, d.join("..data_tmp")).unwrap();
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
        if let Some(old) = old {
            std::fs::remove_dir_all(old).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_symlink_swap_reloads_automatically() {
    let mut cm = ConfigMapDir::new(&config_yaml(&["one"]));
    let fake = Arc::new(Fake::default());
    let mut opts = options(&cm.config(), &fake);
    opts.watch_interval = Duration::from_millis(100);
    let agent = start(opts).await;
    agent
        .wait_for("one probed", |t| probes(t, "one") >= 1.0)
        .await;

    cm.publish(&config_yaml(&["two"]));
    let swapped = agent
        .wait_for("the swapped config applied", |t| {
            probes(t, "two") >= 1.0 && !t.contains("target=\"one\"")
        })
        .await;
    assert_eq!(
        value(&swapped, "pullprobe_config_last_reload_successful", &[]),
        Some(1.0)
    );

    cm.publish("targets: [");
    agent
        .wait_for("the bad swap reported", |t| {
            value(t, "pullprobe_config_last_reload_successful", &[]) == Some(0.0)
        })
        .await;
    let count = probes(&agent.scrape().await, "two");
    agent
        .wait_for("the running config kept", |t| probes(t, "two") > count)
        .await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_a_real_scrape() {
    let Ok(version) = std::process::Command::new("promtool")
        .arg("--version")
        .output()
    else {
        assert!(
            std::env::var_os("CI").is_none()
                && std::env::var_os("PULLPROBE_REQUIRE_TOOLS").is_none(),
            "promtool is required by the test command: apt-get install prometheus"
        );
        eprintln!("skipped: promtool is not on PATH (apt-get install prometheus)");
        return;
    };
    assert!(version.status.success());
    let (agent, _fake, _dir) = start_hub_and_private().await;
    let text = agent
        .wait_for("both probed", |t| {
            probes(t, "hub") >= 1.0 && probes(t, "private") >= 1.0
        })
        .await;
    agent.stop().await;

    use std::io::Write as _;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics:\n{}{}\non:\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cancels_in_flight_probes_within_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &["stuck"]);
    let fake = Arc::new(Fake::default());
    fake.set(
        "stuck",
        Behaviour {
            hang: true,
            ..Behaviour::default()
        },
    );
    let agent = start(options(&config, &fake)).await;
    assert_eq!(agent.get("/-/ready").await.status(), 200);
    // Let the first probe start (the offset is below the 300 ms interval) and hang.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let addr = agent.addr;
    let started = std::time::Instant::now();
    agent.stop().await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn an_invalid_initial_config_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "targets: []\n").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let opts = AgentOptions::new(Some(config)).with_probe(Arc::new(Fake::default()));
    let err = agent::run(opts, listener, std::future::pending())
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::Config(_)));
    assert!(
        err.to_string().contains("no targets are configured"),
        "{err}"
    );
}
