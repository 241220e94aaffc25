//! The shipped alert rules and dashboard, proven end to end on loopback with Debian's
//! `prometheus` (2.42) and `prometheus-alertmanager` (0.25): the real agent binary probes fakes
//! (a DNS failure, an exhausted rate limit, a healthy registry, and a registry behind a node
//! mirror that refuses, so pulls fall back to the registry); Prometheus scrapes it and evaluates
//! `deploy/prometheus/rules.yaml` with only the `for:` durations shortened; the test waits until
//! Alertmanager's API shows `PullProbeDNSFailure`, `PullProbeRateLimitExhausted` and
//! `PullProbeMirrorFailing` firing, nothing for the healthy target and nothing but the mirror
//! alert for the mirrored one. Then (after a rejected reload and with a TLS target, so that no
//! panel is empty by design) every dashboard query runs against that live Prometheus and
//! none may error or come back empty; the endpoint panels must show the mirror. The scrape adds a `cluster` label,
//! as a Prometheus shared by several clusters does: alerts keep it and their description
//! queries select it.
//!
//! A second test loads the Alertmanager example (deploy/prometheus/alertmanager-example.yml)
//! into the real Alertmanager and checks that its inhibit rules act within one cluster only.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::docker_registry::require_tool;
use crate::support::dns::FakeDns;
use crate::support::registry::{Auth, FakeRegistry, RateLimitHeaders, StatusOverride};
use crate::support::{closed_port, free_port, init};

/// A child process killed when the test ends, however it ends.
pub struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    pub fn start(name: &'static str, cmd: &mut Command, dir: &Path) -> Daemon {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} starts: {e}"));
        Daemon { name, child, log }
    }

    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        format!(
            "--- {} (last lines) ---\n{}",
            self.name,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }
}

async fn get_json(client: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    let r = client.get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

async fn wait_ready(client: &reqwest::Client, url: &str, daemons: &[&Daemon]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} never became ready\n{}",
            logs(daemons)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn logs(daemons: &[&Daemon]) -> String {
    daemons
        .iter()
        .map(|d| d.log())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The shipped rule file with every `for:` set to 1s; expressions and labels untouched.
fn shortened_rules() -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/prometheus/rules.yaml"
    ))
    .unwrap();
    let mut doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let mut alerts = 0;
    for group in doc["groups"].as_array_mut().unwrap() {
        for rule in group["rules"].as_array_mut().unwrap() {
            if rule.get("alert").is_some() {
                alerts += 1;
            }
            if let Some(f) = rule.get_mut("for") {
                *f = "1s".into();
            }
        }
    }
    assert!(alerts >= 9, "the rule file has the alerts");
    // JSON is YAML: Prometheus reads it as a rule file.
    doc.to_string()
}

/// Every `expr` in the dashboard (panels and nested rows) with the title of its panel, with
/// Grafana's variables substituted.
fn dashboard_queries() -> Vec<(String, String)> {
    fn walk(v: &serde_json::Value, title: &str, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(m) => {
                let title = m.get("title").and_then(|t| t.as_str()).unwrap_or(title);
                for (k, v) in m {
                    if k == "expr"
                        && let Some(s) = v.as_str()
                    {
                        out.push((title.to_owned(), s.to_owned()));
                    } else {
                        walk(v, title, out);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, title, out)),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dashboards/pullprobe.json"
    ))
    .unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut raw = Vec::new();
    walk(&dash["panels"], "", &mut raw);
    raw.into_iter()
        .map(|(title, e)| {
            let mut e = e;
            for (from, to) in [
                ("${__rate_interval}", "1m"),
                ("$__rate_interval", "1m"),
                ("${__interval}", "15s"),
                ("$__interval", "15s"),
                ("${__range}", "1h"),
                ("$__range", "1h"),
            ] {
                e = e.replace(from, to);
            }
            for var in ["cluster", "node", "target", "registry"] {
                for form in [
                    format!("${{{var}:regex}}"),
                    format!("${{{var}}}"),
                    format!("${var}"),
                ] {
                    e = e.replace(&form, ".*");
                }
            }
            (title, e)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_fire_through_real_prometheus_and_alertmanager() {
    let Some(prometheus) = require_tool("prometheus") else {
        return;
    };
    let Some(alertmanager) = require_tool("prometheus-alertmanager") else {
        return;
    };
    init();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // The fakes: every name is NXDOMAIN; one registry answers 429 with 0 remaining; one is healthy.
    let dns = FakeDns::start(vec![]).await;
    let limited = FakeRegistry::builder()
        .auth(Auth::None)
        .repo("ratelimitpreview/test", &["latest"])
        .manifest_status(StatusOverride::TooManyRequests)
        .rate_limit(Some(RateLimitHeaders::hub(0)))
        .start()
        .await;
    let healthy = FakeRegistry::builder()
        .auth(Auth::None)
        .repo("app", &["v1"])
        .start()
        .await;
    // A TLS registry, so the certificate panels have data.
    pullprobe::install_crypto_provider();
    let ca = crate::support::tls::TestCa::new("e2e CA");
    let tls = FakeRegistry::builder()
        .auth(Auth::None)
        .tls(crate::support::tls::server_config(
            &ca.leaf(&["127.0.0.1"], crate::support::tls::Validity::Valid),
        ))
        .repo("app", &["v1"])
        .start()
        .await;
    std::fs::write(d.join("ca.pem"), ca.ca_pem()).unwrap();

    // The node's containerd hosts directory: mirrored.test has a mirror that refuses
    // connections, then the healthy fake as its registry (`server`). No DNS is involved.
    let dead_mirror = closed_port();
    let certs = d.join("certs.d");
    std::fs::create_dir_all(certs.join("mirrored.test")).unwrap();
    std::fs::write(
        certs.join("mirrored.test/hosts.toml"),
        format!(
            "server = \"http://{}\"\n[host.\"http://{dead_mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            healthy.addr
        ),
    )
    .unwrap();

    // A pod on this node that cannot pull (a tag the registry lacks), in the fake API the
    // agent watches (pods.watch), so the pod alert fires and the pod table has a row.
    let api = crate::support::kubeapi::FakeKubeApi::start().await;
    let kubeconfig = api.kubeconfig(d);
    api.put_pod(crate::pods::pod(
        "shop",
        "cart",
        "node-a",
        &format!("{}/app:missing", healthy.addr),
        &[],
        "ImagePullBackOff",
    ));
    let agent_port = free_port();
    std::fs::write(
        d.join("pullprobe.yaml"),
        format!(
            "interval: 2s\ntimeout: 1s\ndns:\n  nameservers: [\"{}\"]\n\
             node:\n  runtime: containerd\n  containerd:\n    config_path: {}\ntargets:\n\
             \x20 - name: broken-dns\n    image: registry.invalid.test/app:v1\n\
             \x20 - name: hub-limited\n    image: 127.0.0.1:{}/ratelimitpreview/test:latest\n    plain_http: true\n\
             \x20 - name: healthy\n    image: 127.0.0.1:{}/app:v1\n    plain_http: true\n\
             \x20 - name: mirrored\n    image: mirrored.test/app:v1\n\
             \x20 - name: tls\n    image: 127.0.0.1:{}/app:v1\n    tls:\n      ca_file: {}\n\
             pods:\n  watch: true\n  node_name: node-a\n",
            dns.addr,
            certs.display(),
            limited.addr.port(),
            healthy.addr.port(),
            tls.addr.port(),
            d.join("ca.pem").display()
        ),
    )
    .unwrap();
    let agent = Daemon::start(
        "pullprobe",
        Command::new(env!("CARGO_BIN_EXE_pullprobe"))
            .arg("--config.file")
            .arg(d.join("pullprobe.yaml"))
            .arg(format!("--web.listen-address=127.0.0.1:{agent_port}"))
            .env("KUBECONFIG", &kubeconfig),
        d,
    );

    let am_port = free_port();
    std::fs::write(
        d.join("alertmanager.yml"),
        "route:\n  receiver: blackhole\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: blackhole\n",
    )
    .unwrap();
    let am = Daemon::start(
        "alertmanager",
        Command::new(alertmanager)
            .arg(format!(
                "--config.file={}",
                d.join("alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", d.join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address="),
        d,
    );

    std::fs::write(d.join("rules.yaml"), shortened_rules()).unwrap();
    let prom_port = free_port();
    std::fs::write(
        d.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: [\"{}\"]\n\
             alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"127.0.0.1:{am_port}\"]\n\
             scrape_configs:\n  - job_name: pullprobe\n    static_configs:\n      - targets: [\"127.0.0.1:{agent_port}\"]\n        labels:\n          node: node-a\n          cluster: e2e\n",
            d.join("rules.yaml").display()
        ),
    )
    .unwrap();
    let prom = Daemon::start(
        "prometheus",
        Command::new(prometheus)
            .arg(format!(
                "--config.file={}",
                d.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                d.join("prom-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .arg("--rules.alert.resend-delay=1s"),
        d,
    );
    let all = [&agent, &am, &prom];
    let client = reqwest::Client::new();
    wait_ready(
        &client,
        &format!("http://127.0.0.1:{agent_port}/-/ready"),
        &all,
    )
    .await;
    wait_ready(
        &client,
        &format!("http://127.0.0.1:{am_port}/-/ready"),
        &all,
    )
    .await;
    wait_ready(
        &client,
        &format!("http://127.0.0.1:{prom_port}/-/ready"),
        &all,
    )
    .await;

    // Wait for the three alerts in Alertmanager.
    let wanted = [
        ("PullProbeDNSFailure", "broken-dns"),
        ("PullProbeRateLimitExhausted", "hub-limited"),
        ("PullProbeMirrorFailing", "mirrored"),
        ("PullProbePodImagePullFailing", ""),
    ];
    let deadline = Instant::now() + Duration::from_secs(90);
    let alerts = loop {
        let alerts = get_json(
            &client,
            &format!("http://127.0.0.1:{am_port}/api/v2/alerts"),
        )
        .await
        .unwrap_or_default();
        let firing: Vec<(String, String)> = alerts
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        let l = &x["labels"];
                        (
                            l["alertname"].as_str().unwrap_or("").to_owned(),
                            l["target"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if wanted
            .iter()
            .all(|(a, t)| firing.iter().any(|(fa, ft)| fa == a && ft == t))
        {
            break alerts;
        }
        assert!(
            Instant::now() < deadline,
            "alerts did not fire; Alertmanager has {firing:?}\n{}",
            logs(&all)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for a in alerts.as_array().unwrap() {
        let l = &a["labels"];
        assert_ne!(
            l["target"], "healthy",
            "no alert for the healthy target: {a}"
        );
        if l["target"] == "mirrored" {
            // The pull falls back to the registry: only the mirror alert, naming the mirror.
            assert_eq!(l["alertname"], "PullProbeMirrorFailing", "{a}");
            assert_eq!(l["endpoint"], dead_mirror.to_string(), "{a}");
            assert!(
                a["annotations"]["description"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("fall back to {}.", healthy.addr)),
                "the description names the endpoint that answers: {a}"
            );
        }
        if !l["alertname"].as_str().unwrap().ends_with("FromManyNodes") {
            assert_eq!(
                l["node"], "node-a",
                "per-node alerts carry the relabelled node: {a}"
            );
        }
        assert_eq!(l["cluster"], "e2e", "every alert keeps the cluster: {a}");
        if l["alertname"] == "PullProbePodImagePullFailing" {
            // The pod's labels, and pullprobe's verdict in the description.
            assert_eq!(l["namespace"], "shop", "{a}");
            assert_eq!(l["pod"], "cart", "{a}");
            assert_eq!(l["container"], "app", "{a}");
            let d = a["annotations"]["description"].as_str().unwrap();
            assert!(d.contains("manifest_unknown"), "{a}");
            // The metric behind it is the one the README documents (agent_e2e compares the
            // rest of the table with a scrape).
            let readme = include_str!("../../README.md");
            assert!(readme.contains("| `pullprobe_pod_image_pull_failure` |"));
        }
        if l["alertname"] == "PullProbeDNSFailure" {
            // Two failed probes in a row at least, and the reason, in the description: its
            // query selects the alert's cluster (a wrong one would find no reason).
            let d = a["annotations"]["description"].as_str().unwrap();
            assert!(d.contains("probes in a row failed"), "{a}");
            assert!(d.contains("resolver: dns_nxdomain;"), "{a}");
        }
        for k in ["summary", "description", "runbook_url"] {
            assert!(
                a["annotations"][k].as_str().is_some_and(|s| !s.is_empty()),
                "{k} in {a}"
            );
        }
        assert!(
            !a["annotations"]["description"]
                .as_str()
                .unwrap()
                .contains("<no value>"),
            "templates render: {a}"
        );
    }

    // A rejected reload (the agent keeps its config), so the panel for it has data too.
    std::fs::write(d.join("pullprobe.yaml"), "timeout: nope\ntargets: []\n").unwrap();
    let reload = client
        .post(format!("http://127.0.0.1:{agent_port}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 500);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut url =
            url::Url::parse(&format!("http://127.0.0.1:{prom_port}/api/v1/query")).unwrap();
        url.query_pairs_mut()
            .append_pair("query", "pullprobe_config_last_reload_successful == 0");
        let body: serde_json::Value = client.get(url).send().await.unwrap().json().await.unwrap();
        if body["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the rejected reload was not scraped"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every dashboard query parses and evaluates against the live Prometheus, and shows data;
    // the endpoint panels show the mirrored target.
    let queries = dashboard_queries();
    assert!(queries.len() >= 10, "{queries:?}");
    let mut endpoint_panels = 0;
    let mut failing_pairs = 0;
    let mut empty = Vec::new();
    for (title, q) in queries {
        let mut url =
            url::Url::parse(&format!("http://127.0.0.1:{prom_port}/api/v1/query")).unwrap();
        url.query_pairs_mut().append_pair("query", &q);
        let r = client.get(url).send().await.unwrap();
        let status = r.status();
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(
            status.is_success() && body["status"] == "success",
            "dashboard query failed: {q}\n{body}"
        );
        let rows = body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        // Every panel shows data in this run.
        if rows.is_empty() {
            empty.push(format!("{title}: {q}"));
        }
        let mirrored = |endpoint: String| {
            rows.iter()
                .any(|r| r["metric"]["target"] == "mirrored" && r["metric"]["endpoint"] == endpoint)
        };
        match title.as_str() {
            "Answering endpoint" => {
                endpoint_panels += 1;
                assert!(mirrored(healthy.addr.to_string()), "{title}: {q}\n{body}");
            }
            "Failing endpoints" => {
                endpoint_panels += 1;
                assert!(mirrored(dead_mirror.to_string()), "{title}: {q}\n{body}");
            }
            t if t.starts_with("Failing node × target pairs (") => {
                // The failing pairs with their run of failed probes: the join of the result
                // with pullprobe_probe_consecutive_failures matches one to one.
                failing_pairs += 1;
                let run = rows
                    .iter()
                    .find(|r| r["metric"]["target"] == "broken-dns")
                    .and_then(|r| r["value"][1].as_str()?.parse::<f64>().ok());
                assert!(run.is_some_and(|v| v >= 2.0), "{title}: {q}\n{body}");
                assert!(
                    rows.iter().all(|r| r["metric"]["target"] != "healthy"),
                    "{title}: {q}\n{body}"
                );
            }
            _ => {}
        }
    }
    assert!(
        empty.is_empty(),
        "panels without data:\n{}",
        empty.join("\n")
    );
    assert_eq!(endpoint_panels, 2, "the dashboard has both endpoint panels");
    assert_eq!(
        failing_pairs, 1,
        "the dashboard has the failing-pairs table"
    );
}

/// The Alertmanager example's inhibit rules, in the real Alertmanager: a registry outage in
/// one cluster inhibits that cluster's per-node alerts for the registry, never another
/// cluster's; without a `cluster` label (one cluster per Alertmanager) they work as before.
#[tokio::test(flavor = "multi_thread")]
async fn the_alertmanager_example_inhibits_within_one_cluster() {
    let Some(alertmanager) = require_tool("prometheus-alertmanager") else {
        return;
    };
    init();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let am_port = free_port();
    let am = Daemon::start(
        "alertmanager",
        Command::new(alertmanager)
            .arg(concat!(
                "--config.file=",
                env!("CARGO_MANIFEST_DIR"),
                "/deploy/prometheus/alertmanager-example.yml"
            ))
            .arg(format!("--storage.path={}", d.join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address="),
        d,
    );
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{am_port}");
    wait_ready(&client, &format!("{base}/-/ready"), &[&am]).await;

    // (alertname, cluster or "" for none, target, severity, whether it must be inhibited)
    let alerts = [
        (
            "PullProbeRegistryUnreachableFromManyNodes",
            "east",
            "quay",
            "critical",
            false,
        ),
        (
            "PullProbeRegistryUnreachable",
            "east",
            "quay",
            "warning",
            true,
        ),
        (
            "PullProbeRegistryUnreachable",
            "west",
            "quay",
            "warning",
            false,
        ),
        (
            "PullProbeRegistryUnreachableFromManyNodes",
            "",
            "ghcr",
            "critical",
            false,
        ),
        ("PullProbeDNSFailure", "", "ghcr", "warning", true),
        ("PullProbeDNSFailure", "west", "ghcr", "warning", false),
    ];
    let registry = |t: &str| if t == "quay" { "quay.io" } else { "ghcr.io" };
    let body: Vec<serde_json::Value> = alerts
        .iter()
        .map(|(name, cluster, target, severity, _)| {
            let mut labels = serde_json::json!({
                "alertname": name, "target": target, "registry": registry(target),
                "severity": severity,
            });
            if !cluster.is_empty() {
                labels["cluster"] = (*cluster).into();
            }
            if !name.ends_with("FromManyNodes") {
                labels["node"] = "node-1".into();
            }
            serde_json::json!({"labels": labels})
        })
        .collect();
    let r = client
        .post(format!("{base}/api/v2/alerts"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}\n{}", r.status(), am.log());

    // The inhibitor learns of the source alerts asynchronously: wait for the two inhibitions,
    // then check that nothing else is inhibited.
    let inhibited = |all: &serde_json::Value, name: &str, cluster: &str, target: &str| {
        all.as_array()
            .unwrap()
            .iter()
            .find(|a| {
                a["labels"]["alertname"] == name
                    && a["labels"]["target"] == target
                    && a["labels"]["cluster"].as_str().unwrap_or("") == cluster
            })
            .map(|a| {
                a["status"]["inhibitedBy"]
                    .as_array()
                    .is_some_and(|v| !v.is_empty())
            })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let all = loop {
        let all = get_json(&client, &format!("{base}/api/v2/alerts"))
            .await
            .unwrap_or_default();
        let done = all.as_array().is_some_and(|a| a.len() == alerts.len())
            && alerts
                .iter()
                .filter(|a| a.4)
                .all(|(n, c, t, _, _)| inhibited(&all, n, c, t) == Some(true));
        if done {
            break all;
        }
        assert!(
            Instant::now() < deadline,
            "the inhibitions did not happen: {all}\n{}",
            am.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (name, cluster, target, _, want) in alerts {
        assert_eq!(
            inhibited(&all, name, cluster, target),
            Some(want),
            "{name} cluster={cluster:?} target={target}: {all}"
        );
    }
}
