//! The node's mirrors, proven against the real client: on each fixture, `pullprobe --check`
//! with `node.containerd.config_path` and `ctr --hosts-dir` read the same hosts directory, and
//! must agree on whether the pull succeeds *and on the endpoint that answered*.
//!
//! Which endpoint ctr used is read from the fakes: containerd's `Resolve` asks hosts in order
//! and stops at the first that has the reference, so the last fake that received a resolving
//! `HEAD …/manifests/<ref>` from ctr answered it. pullprobe says it in `endpoint` and lists
//! every endpoint it asked in `endpoints`; those it asked must be the fakes ctr asked.
//!
//! The namespace (`upstream-N.test`) has no DNS: as on a node with a pull-through cache, only
//! the hosts in hosts.toml are ever dialled. ctr is Debian's containerd 1.6.20; where 1.6/1.7
//! and 2.x read a file differently (a hosts.toml without `[host]` tables, containerd#10027),
//! pullprobe follows 1.6/1.7 and warns.

use std::net::TcpListener;
use std::path::Path;

use crate::differential::have_ctr;
use crate::support::containerd::{CtrOpts, CtrOutcome, HostsDir, ctr_fetch_async};
use crate::support::init;
use crate::support::registry::FakeRegistry;
use crate::support::tls::{TestCa, Validity, server_config};

/// pullprobe's JSON result for one target.
struct Verdict {
    ok: bool,
    reason: String,
    message: String,
    endpoint: String,
    /// (endpoint, reason) in the order asked.
    chain: Vec<(String, String)>,
    warnings: Vec<String>,
}

async fn pullprobe_with_hosts(hosts: &Path, image: &str) -> Verdict {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pullprobe.yaml");
    std::fs::write(
        &config,
        format!(
            "timeout: 8s\nnode:\n  runtime: containerd\n  containerd:\n    config_path: {}\ntargets:\n  - image: {image}\n",
            hosts.display()
        ),
    )
    .unwrap();
    let r = &crate::support::check_json(&config, &[]).await;
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    Verdict {
        ok: r["ok"].as_bool().unwrap(),
        reason: s(&r["reason"]),
        message: s(&r["message"]),
        endpoint: s(&r["endpoint"]),
        chain: r["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (s(&e["endpoint"]), s(&e["reason"])))
            .collect(),
        warnings: r["warnings"].as_array().unwrap().iter().map(s).collect(),
    }
}

/// A loopback port nothing listens on.
fn refused_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The fakes that received a resolving `HEAD` of the manifest, in the given (plan) order.
fn resolve_asked(fakes: &[(&str, &FakeRegistry)]) -> Vec<String> {
    fakes
        .iter()
        .filter(|(_, f)| {
            f.requests()
                .iter()
                .any(|r| r.method == http::Method::HEAD && r.path_and_query.contains("/manifests/"))
        })
        .map(|(label, _)| (*label).to_owned())
        .collect()
}

struct Case<'a> {
    name: &'a str,
    image: String,
    hosts: &'a HostsDir,
    /// Every fake of the fixture with its endpoint label, in hosts.toml order.
    fakes: Vec<(&'a str, &'a FakeRegistry)>,
    /// `Ok(endpoint)`: both pull from it. `Err(reason)`: both fail, pullprobe says `reason`.
    want: Result<&'a str, &'a str>,
}

/// Runs pullprobe then ctr on `case`, each after clearing the fakes' records.
async fn agree(case: Case<'_>) -> (Verdict, CtrOutcome) {
    for (_, f) in &case.fakes {
        f.forget_requests();
    }
    let pp = pullprobe_with_hosts(case.hosts.path(), &case.image).await;
    let pp_asked = resolve_asked(&case.fakes);
    for (_, f) in &case.fakes {
        f.forget_requests();
    }
    let ctr = ctr_fetch_async(
        &case.image,
        &CtrOpts::default().hosts_dir(case.hosts.path()),
    )
    .await;
    let ctr_asked = resolve_asked(&case.fakes);
    let name = case.name;
    assert_eq!(
        pp.ok,
        ctr.ok,
        "{name}: pullprobe says {} ({}: {}), ctr says {ctr}",
        if pp.ok { "ok" } else { "FAIL" },
        pp.reason,
        pp.message
    );
    assert_eq!(
        pp_asked, ctr_asked,
        "{name}: pullprobe asked {pp_asked:?}, ctr asked {ctr_asked:?}"
    );
    // pullprobe's own account of what it asked matches what the fakes saw.
    let chain_fakes: Vec<String> = pp
        .chain
        .iter()
        // A label carries the API root when it is not /v2 (`host:port/api`).
        .map(|(e, _)| e.split('/').next().unwrap_or_default().to_owned())
        .filter(|e| case.fakes.iter().any(|(l, _)| l == e))
        .collect();
    assert_eq!(chain_fakes, pp_asked, "{name}: chain {:?}", pp.chain);
    match case.want {
        Ok(endpoint) => {
            assert!(pp.ok, "{name}: {}: {}", pp.reason, pp.message);
            assert_eq!(pp.endpoint, endpoint, "{name}: chain {:?}", pp.chain);
            assert_eq!(
                ctr_asked.last().map(String::as_str),
                Some(endpoint),
                "{name}: ctr asked {ctr_asked:?}"
            );
        }
        Err(reason) => assert_eq!(
            pp.reason, reason,
            "{name}: pullprobe says {}: {}\nctr: {ctr}",
            pp.reason, pp.message
        ),
    }
    (pp, ctr)
}

fn label(f: &FakeRegistry) -> String {
    format!("127.0.0.1:{}", f.addr.port())
}

/// Mirror chains that both clients walk the same way: a refused mirror, one that 404s, a
/// pull-only mirror for a tag and for a digest, `override_path`, `?ns=`, all failing.
#[tokio::test(flavor = "multi_thread")]
async fn mirror_chains_agree_with_ctr() {
    if !have_ctr() {
        return;
    }
    init();
    let up = FakeRegistry::builder()
        .repo("team/app", &["1"])
        .start()
        .await;
    let m1 = FakeRegistry::builder().repo("other", &["1"]).start().await;
    let m2 = FakeRegistry::builder()
        .repo("team/app", &["1"])
        .start()
        .await;
    let (up_l, m1_l, m2_l) = (label(&up), label(&m1), label(&m2));
    let dead = format!("127.0.0.1:{}", refused_port());
    let fakes = || {
        vec![
            (m1_l.as_str(), &m1),
            (m2_l.as_str(), &m2),
            (up_l.as_str(), &up),
        ]
    };

    // A refused mirror, then the upstream.
    let hosts = HostsDir::new();
    hosts.hosts_toml(
        "upstream-1.test",
        &format!("server = \"http://{up_l}\"\n[host.\"http://{dead}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"),
    );
    let (pp, _) = agree(Case {
        name: "mirror refused, fell back to the registry",
        image: "upstream-1.test/team/app:1".into(),
        hosts: &hosts,
        fakes: fakes(),
        want: Ok(&up_l),
    })
    .await;
    assert_eq!(
        pp.chain,
        vec![
            (dead.clone(), "connect_refused".to_owned()),
            (up_l.clone(), "ok".to_owned())
        ]
    );

    // A mirror without the repository (404), then one with it; `?ns=` on mirror requests.
    let hosts = HostsDir::new();
    hosts.hosts_toml(
        "upstream-2.test",
        &format!(
            "server = \"http://{up_l}\"\n[host.\"http://{m1_l}\"]\n  capabilities = [\"pull\", \"resolve\"]\n[host.\"http://{m2_l}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        ),
    );
    agree(Case {
        name: "first mirror 404s, the second has the tag",
        image: "upstream-2.test/team/app:1".into(),
        hosts: &hosts,
        fakes: fakes(),
        want: Ok(&m2_l),
    })
    .await;
    assert!(
        m2.requests()
            .iter()
            .all(|r| r.path_and_query.contains("ns=upstream-2.test")),
        "ctr sends ?ns=: {:?}",
        m2.requests()
    );
    m2.forget_requests();
    pullprobe_with_hosts(hosts.path(), "upstream-2.test/team/app:1").await;
    let seen = m2.requests();
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|r| r.path_and_query.ends_with("?ns=upstream-2.test")),
        "pullprobe sends ?ns=: {seen:?}"
    );

    // A pull-only mirror is skipped for a tag, used for a digest.
    let hosts = HostsDir::new();
    hosts.hosts_toml(
        "upstream-3.test",
        &format!(
            "server = \"http://{up_l}\"\n[host.\"http://{m2_l}\"]\n  capabilities = [\"pull\"]\n"
        ),
    );
    agree(Case {
        name: "pull-only mirror, tag reference",
        image: "upstream-3.test/team/app:1".into(),
        hosts: &hosts,
        fakes: fakes(),
        want: Ok(&up_l),
    })
    .await;
    let digest = up.digest("team/app", "1").unwrap();
    agree(Case {
        name: "pull-only mirror, digest reference",
        image: format!("upstream-3.test/team/app@{digest}"),
        hosts: &hosts,
        fakes: fakes(),
        want: Ok(&m2_l),
    })
    .await;

    // override_path: the URL path is the API root; without /v2 the fake has nothing there.
    let hosts = HostsDir::new();
    hosts.hosts_toml(
        "upstream-4.test",
        &format!(
            "server = \"http://{dead}\"\n[host.\"http://{m1_l}/api\"]\n  override_path = true\n[host.\"http://{m2_l}/v2\"]\n  override_path = true\n"
        ),
    );
    agree(Case {
        name: "override_path",
        image: "upstream-4.test/team/app:1".into(),
        hosts: &hosts,
        fakes: fakes(),
        want: Ok(&m2_l),
    })
    .await;
    // Both asked the first mirror under its own root, without /v2.
    let under_root = |f: &FakeRegistry| {
        f.requests()
            .iter()
            .any(|r| r.path_and_query.starts_with("/api/team/app/manifests/1"))
    };
    assert!(under_root(&m1), "ctr: {:?}", m1.requests());
    m1.forget_requests();
    pullprobe_with_hosts(hosts.path(), "upstream-4.test/team/app:1").await;
    assert!(under_root(&m1), "pullprobe: {:?}", m1.requests());

    // Everything fails: a refused mirror and a registry without the tag. 2.x reports the
    // error from furthest through the resolution: the registry's "not found".
    let hosts = HostsDir::new();
    hosts.hosts_toml(
        "upstream-5.test",
        &format!("server = \"http://{up_l}\"\n[host.\"http://{dead}\"]\n"),
    );
    let (pp, _) = agree(Case {
        name: "mirror refused, tag missing upstream",
        image: "upstream-5.test/team/app:2".into(),
        hosts: &hosts,
        fakes: fakes(),
        want: Err("manifest_unknown"),
    })
    .await;
    assert_eq!(pp.endpoint, up_l);
    assert_eq!(pp.chain[0].1, "connect_refused");
}

/// A mirror with its own CA (hosts.toml `ca`), and the same mirror without it.
#[tokio::test(flavor = "multi_thread")]
async fn a_mirror_with_its_own_ca_agrees_with_ctr() {
    if !have_ctr() {
        return;
    }
    pullprobe::install_crypto_provider();
    init();
    let ca = TestCa::new("mirror CA");
    let m = FakeRegistry::builder()
        .tls(server_config(&ca.leaf(&["127.0.0.1"], Validity::Valid)))
        .repo("app", &["1"])
        .start()
        .await;
    let m_l = label(&m);
    let dead = format!("127.0.0.1:{}", refused_port());
    let hosts = HostsDir::new();
    let ca_path = hosts.file("mirror-ca.test", "mirror-ca.pem", ca.ca_pem().as_bytes());
    hosts.hosts_toml(
        "mirror-ca.test",
        &format!(
            "server = \"http://{dead}\"\n[host.\"https://{m_l}\"]\n  ca = \"{}\"\n",
            ca_path.display()
        ),
    );
    agree(Case {
        name: "mirror with its own CA",
        image: "mirror-ca.test/app:1".into(),
        hosts: &hosts,
        fakes: vec![(m_l.as_str(), &m)],
        want: Ok(&m_l),
    })
    .await;

    hosts.hosts_toml(
        "mirror-noca.test",
        &format!("server = \"http://{dead}\"\n[host.\"https://{m_l}\"]\n"),
    );
    let (pp, _) = agree(Case {
        name: "mirror whose CA the node lacks",
        image: "mirror-noca.test/app:1".into(),
        hosts: &hosts,
        fakes: Vec::new(),
        want: Err("tls_untrusted"),
    })
    .await;
    assert_eq!(pp.endpoint, m_l, "{:?}", pp.chain);
}

/// Files containerd ignores: a TOML syntax error, and (1.6/1.7) a file without `[host]`
/// tables. Both clients then pull from the registry itself; pullprobe says why in a warning.
#[tokio::test(flavor = "multi_thread")]
async fn hosts_files_containerd_ignores_agree_with_ctr() {
    if !have_ctr() {
        return;
    }
    init();
    let up = FakeRegistry::builder().repo("app", &["1"]).start().await;
    let up_l = label(&up);
    let dead = format!("127.0.0.1:{}", refused_port());

    let hosts = HostsDir::new();
    hosts.hosts_toml(
        &up_l,
        &format!("[host.\"http://{dead}\"\n  capabilities = [\"pull\", \"resolve\"]\n"),
    );
    let (pp, _) = agree(Case {
        name: "hosts.toml with a TOML syntax error",
        image: format!("{up_l}/app:1"),
        hosts: &hosts,
        fakes: vec![(up_l.as_str(), &up)],
        want: Ok(&up_l),
    })
    .await;
    assert!(
        pp.warnings
            .iter()
            .any(|w| w.contains("line 1: TOML syntax error")),
        "{:?}",
        pp.warnings
    );

    let hosts = HostsDir::new();
    hosts.hosts_toml(&up_l, &format!("server = \"http://{dead}\"\n"));
    let (pp, _) = agree(Case {
        name: "hosts.toml without [host] tables (containerd#10027)",
        image: format!("{up_l}/app:1"),
        hosts: &hosts,
        fakes: vec![(up_l.as_str(), &up)],
        want: Ok(&up_l),
    })
    .await;
    assert!(
        pp.warnings.iter().any(|w| w.contains("containerd#10027")),
        "{:?}",
        pp.warnings
    );
}

/// A failure after the reference resolved (the fetch of the manifest for the platform check)
/// belongs to the endpoint that resolved it, in the verdict and in the chain.
#[tokio::test]
async fn a_fetch_failure_after_resolving_is_the_resolving_endpoints() {
    use crate::support::hostile::{Hostile, Reply, manifest_ok, response};
    init();
    let reg = Hostile::start(|req, _| {
        Reply::Bytes(if req.is_manifest_head() {
            manifest_ok(&[])
        } else {
            response(404, &[], b"")
        })
    })
    .await;
    let reg_l = format!("127.0.0.1:{}", reg.addr.port());
    let dead = format!("127.0.0.1:{}", refused_port());
    let hosts = HostsDir::new();
    hosts.hosts_toml(
        "fetch.test",
        &format!("server = \"http://{reg_l}\"\n[host.\"http://{dead}\"]\n"),
    );
    let pp = pullprobe_with_hosts(hosts.path(), "fetch.test/app:1").await;
    assert!(!pp.ok);
    assert_eq!(pp.endpoint, reg_l, "{:?}", pp.chain);
    assert_eq!(pp.chain.len(), 2, "{:?}", pp.chain);
    assert_eq!(pp.chain[0], (dead, "connect_refused".to_owned()));
    assert_eq!(pp.chain[1].0, reg_l);
    assert!(pp.message.contains("404"), "{}", pp.message);
}

/// containerd `config.ConfigureHosts` / `hostFileConfig.Header`: a host's `[header]` table is
/// set on every request to that host (`RegistryHost.Header`, copied in `request.do`), a list
/// value as repeated headers; other hosts do not get it. Both clients, on one fixture.
#[tokio::test(flavor = "multi_thread")]
async fn config_hosts_header_is_sent_on_the_mirrors_requests_as_ctr_sends_it() {
    if !have_ctr() {
        return;
    }
    init();
    let up = FakeRegistry::builder().repo("app", &["1"]).start().await;
    let m = FakeRegistry::builder().repo("app", &["1"]).start().await;
    let (up_l, m_l) = (label(&up), label(&m));
    let hosts = HostsDir::new();
    hosts.hosts_toml(
        "header.test",
        &format!(
            "server = \"http://{up_l}\"\n[host.\"http://{m_l}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  [host.\"http://{m_l}\".header]\n    x-mirror-token = \"t0ken\"\n    x-mirror-tier = [\"gold\", \"eu\"]\n"
        ),
    );
    let sent_everywhere = |f: &FakeRegistry, who: &str| {
        let seen = f.requests();
        assert!(!seen.is_empty(), "{who}: the mirror was not asked");
        for r in &seen {
            let values = |name: &str| -> Vec<String> {
                r.headers
                    .get_all(name)
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect()
            };
            let (token, tier) = (values("x-mirror-token"), values("x-mirror-tier"));
            assert_eq!(token, ["t0ken"], "{who}: {} {}", r.method, r.path_and_query);
            assert_eq!(
                tier,
                ["gold", "eu"],
                "{who}: {} {}",
                r.method,
                r.path_and_query
            );
        }
    };
    for (_, f) in [("m", &m), ("up", &up)] {
        f.forget_requests();
    }
    let ctr = ctr_fetch_async(
        "header.test/app:1",
        &CtrOpts::default().hosts_dir(hosts.path()),
    )
    .await;
    assert!(ctr.ok, "{ctr}");
    sent_everywhere(&m, "ctr");
    assert!(up.requests().is_empty(), "ctr asked the registry");
    m.forget_requests();
    let pp = pullprobe_with_hosts(hosts.path(), "header.test/app:1").await;
    assert!(pp.ok, "{}: {}", pp.reason, pp.message);
    assert_eq!(pp.endpoint, m_l);
    sent_everywhere(&m, "pullprobe");
    assert!(up.requests().is_empty(), "pullprobe asked the registry");

    // The header belongs to its host: when the mirror lacks the tag, the registry that
    // answers next gets none of it.
    let hosts = HostsDir::new();
    hosts.hosts_toml(
        "header.test",
        &format!(
            "server = \"http://{up_l}\"\n[host.\"http://{m_l}\"]\n  [host.\"http://{m_l}\".header]\n    x-mirror-token = \"t0ken\"\n"
        ),
    );
    up.forget_requests();
    let pp = pullprobe_with_hosts(hosts.path(), "header.test/app:2").await;
    assert!(!pp.ok);
    assert!(!up.requests().is_empty());
    assert!(
        up.requests()
            .iter()
            .all(|r| !r.headers.contains_key("x-mirror-token")),
        "{:?}",
        up.requests()
    );
}

/// containerd `config.ConfigureHosts`: a host's `dial_timeout` bounds its `net.Dialer`, and
/// `dockerResolver.Resolve` moves on to the next host when a host's request fails. A mirror
/// whose connects are never answered fails at `connect` with `connect_timeout` after about
/// `dial_timeout`, and the registry answers within the probe's deadline. (ctr 1.6.20 does not
/// know `dial_timeout`, so this fixture has no ctr run; see docs/containerd-differential.md.)
#[tokio::test]
async fn config_hosts_dial_timeout_bounds_the_mirrors_connect_and_the_chain_moves_on() {
    use crate::support::hostile::Blackhole;
    init();
    let up = FakeRegistry::builder().repo("app", &["1"]).start().await;
    let up_l = label(&up);
    let hole = Blackhole::start().await;
    let hole_l = format!("127.0.0.1:{}", hole.addr.port());
    let hosts = HostsDir::new();
    hosts.hosts_toml(
        "dial.test",
        &format!(
            "server = \"http://{up_l}\"\n[host.\"http://{hole_l}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  dial_timeout = \"1s\"\n"
        ),
    );
    let started = std::time::Instant::now();
    let pp = pullprobe_with_hosts(hosts.path(), "dial.test/app:1").await;
    let took = started.elapsed();
    assert!(pp.ok, "{}: {}", pp.reason, pp.message);
    assert_eq!(pp.endpoint, up_l);
    assert_eq!(
        pp.chain,
        [
            (hole_l, "connect_timeout".to_owned()),
            (up_l, "ok".to_owned())
        ]
    );
    // 1 s of dial_timeout, not the probe's 8 s deadline; the rest is the process starting.
    assert!(
        took >= std::time::Duration::from_millis(900) && took < std::time::Duration::from_secs(5),
        "{took:?}"
    );
}
