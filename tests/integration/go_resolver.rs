//! Name resolution as the node's pull does it: containerd resolves with Go's resolver (package
//! `net`, cgo off), so pullprobe must find the same addresses, or fail for the same reason.
//! Each test gives the engine a hosts file and a resolv.conf in a temp dir (`dns.hosts_file`,
//! `dns.resolv_conf`), in-process DNS servers as `dns.nameservers` (they replace the resolv.conf
//! `nameserver` lines; its `search` and `options` still apply), and names the Go function whose
//! behaviour it pins down.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use pullprobe::config::Config;
use pullprobe::outcome::{Phase, Reason};
use pullprobe::probe::{ProbeReport, Prober};

use crate::support::dns::{DnsBehavior, FakeDns};
use crate::support::init;
use crate::support::registry::{Auth, FakeRegistry};

const REPO: &str = "library/alpine";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A node: its hosts file and resolv.conf in a temp dir.
fn node(hosts: &str, resolv_conf: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hosts"), hosts).unwrap();
    std::fs::write(dir.path().join("resolv.conf"), resolv_conf).unwrap();
    dir
}

/// Probes plain-HTTP `images` on `node`, asking `servers` for DNS.
async fn probe(node: &Path, servers: &[&FakeDns], images: &[String]) -> Vec<ProbeReport> {
    init();
    let servers: Vec<String> = servers.iter().map(|s| format!("\"{}\"", s.addr)).collect();
    let mut yaml = format!(
        "timeout: 5s\ndns:\n  hosts_file: hosts\n  resolv_conf: resolv.conf\n  nameservers: [{}]\ntargets:\n",
        servers.join(", ")
    );
    for image in images {
        yaml += &format!("  - image: {image}\n    plain_http: true\n");
    }
    let config = Config::from_yaml("test.yaml", &yaml, node).unwrap_or_else(|e| panic!("{e}"));
    let prober = Prober::from_config(&config);
    pullprobe::check::probe_all(&prober, config.targets.clone()).await
}

async fn registry() -> FakeRegistry {
    FakeRegistry::builder()
        .auth(Auth::None)
        .repo(REPO, &["latest"])
        .start()
        .await
}

fn failure(r: &ProbeReport) -> (Phase, Reason, &str) {
    let f = r.failure.as_ref().expect("the probe fails");
    (f.phase, f.reason, f.message.as_str())
}

/// Go `goLookupIPCNAME` (order `files,dns`) and `lookupStaticHost`: a single-label name listed
/// in the hosts file is answered from it, as written, before any search domain; DNS is not asked.
#[tokio::test]
async fn hosts_file_answers_a_single_label_name_before_search_domains() {
    let reg = registry().await;
    // A trap: the search-domain name resolves to another address.
    let dns = FakeDns::start(vec![(
        "registry.svc.test",
        DnsBehavior::Answer(vec![ip("127.0.0.2")]),
    )])
    .await;
    let node = node(
        "127.0.0.1 localhost\n127.0.0.1 registry # the registry\n",
        "search svc.test\noptions ndots:5\n",
    );
    let port = reg.addr.port();
    let r = probe(
        node.path(),
        &[&dns],
        &[format!("registry:{port}/{REPO}:latest")],
    )
    .await;
    assert!(r[0].ok(), "{:#?}", r[0].failure);
    assert_eq!(r[0].address, Some(reg.addr));
    assert_eq!(dns.queries(), 0, "asked DNS: {:?}", dns.asked());
}

/// Go `goLookupIPCNAME`: "Use entries from /etc/hosts if they match" and return them alone;
/// the DNS answers for the same name are never fetched, let alone mixed in.
#[tokio::test]
async fn hosts_file_addresses_are_not_mixed_with_dns_addresses() {
    let reg = registry().await;
    let dns = FakeDns::start(vec![(
        "registry.internal",
        DnsBehavior::Answer(vec![ip("127.0.0.2"), ip("::1")]),
    )])
    .await;
    // Case-insensitive; a name with a dot matches with or without the trailing dot.
    let node = node("127.0.0.1 Registry.Internal.\n", "search svc.test\n");
    let port = reg.addr.port();
    let r = probe(
        node.path(),
        &[&dns],
        &[format!("registry.internal:{port}/{REPO}:latest")],
    )
    .await;
    assert!(r[0].ok(), "{:#?}", r[0].failure);
    assert_eq!(r[0].address, Some(reg.addr));
    assert_eq!(dns.queries(), 0, "asked DNS: {:?}", dns.asked());
}

/// Go `dnsConfig.nameList` and `goLookupIPCNAME`: fewer dots than ndots → each search suffix in
/// order, then the name as written; A and AAAA for each; the first name with an address wins
/// (later candidates are not asked). Enough dots → the name as written first.
#[tokio::test]
async fn search_domains_are_tried_in_go_order() {
    let reg = registry().await;
    let dns = FakeDns::start(vec![
        ("registry.ns.svc.test", DnsBehavior::NxDomain),
        (
            "registry.svc.test",
            DnsBehavior::Answer(vec![ip("127.0.0.1")]),
        ),
        ("registry", DnsBehavior::Answer(vec![ip("127.0.0.2")])),
        ("mirror.internal", DnsBehavior::NoData),
        (
            "mirror.internal.ns.svc.test",
            DnsBehavior::Answer(vec![ip("127.0.0.1")]),
        ),
    ])
    .await;
    let node = node("127.0.0.1 localhost\n", "search ns.svc.test svc.test\n");
    let port = reg.addr.port();
    let r = probe(
        node.path(),
        &[&dns],
        &[format!("registry:{port}/{REPO}:latest")],
    )
    .await;
    assert!(r[0].ok(), "{:#?}", r[0].failure);
    assert_eq!(r[0].address, Some(reg.addr));
    let mut asked = dns.asked();
    asked.sort(); // A and AAAA of one name go out together
    assert_eq!(
        asked,
        [
            "registry.ns.svc.test. A",
            "registry.ns.svc.test. AAAA",
            "registry.svc.test. A",
            "registry.svc.test. AAAA"
        ]
    );

    let dns2 = FakeDns::start(vec![
        ("mirror.internal", DnsBehavior::NoData),
        (
            "mirror.internal.ns.svc.test",
            DnsBehavior::Answer(vec![ip("127.0.0.1")]),
        ),
    ])
    .await;
    let r = probe(
        node.path(),
        &[&dns2],
        &[format!("mirror.internal:{port}/{REPO}:latest")],
    )
    .await;
    assert!(r[0].ok(), "{:#?}", r[0].failure);
    let asked = dns2.asked();
    assert_eq!(asked.len(), 4, "{asked:?}");
    assert!(
        asked[..2]
            .iter()
            .all(|q| q.starts_with("mirror.internal. ")),
        "{asked:?}"
    );
}

/// Go `tryOneName` and `goLookupIPCNAME`: NXDOMAIN from the first nameserver ends a question
/// (the second is not asked); the error reported is the one for the name as written. The
/// message names the nameservers, every candidate name and the hosts file consulted.
#[tokio::test]
async fn nxdomain_names_the_nameservers_and_every_candidate() {
    let first = FakeDns::start(vec![]).await;
    let second = FakeDns::start(vec![]).await;
    let node = node("127.0.0.1 localhost\n", "search svc.test cluster.test\n");
    let r = probe(
        node.path(),
        &[&first, &second],
        &[format!("registry:5000/{REPO}:latest")],
    )
    .await;
    let (phase, reason, message) = failure(&r[0]);
    assert_eq!(
        (phase, reason),
        (Phase::Dns, Reason::DnsNxdomain),
        "{message}"
    );
    assert_eq!(
        second.queries(),
        0,
        "NXDOMAIN is final: {:?}",
        second.asked()
    );
    assert_eq!(first.queries(), 6, "{:?}", first.asked());
    let expected = format!(
        "registry: the name does not exist (NXDOMAIN from {a}); also tried registry.svc.test (search domain: NXDOMAIN), \
         registry.cluster.test (search domain: NXDOMAIN); nameservers {a}, {b} from dns.nameservers; not in {hosts}",
        a = first.addr,
        b = second.addr,
        hosts = node.path().join("hosts").display(),
    );
    assert_eq!(message, expected);
}

/// Go `tryOneName`: SERVFAIL (and REFUSED) move on to the next nameserver, in file order.
#[tokio::test]
async fn servfail_moves_on_to_the_next_nameserver() {
    let reg = registry().await;
    let broken = FakeDns::start(vec![("registry.test", DnsBehavior::ServFail)]).await;
    let good = FakeDns::start(vec![(
        "registry.test",
        DnsBehavior::Answer(vec![ip("127.0.0.1")]),
    )])
    .await;
    let node = node("", "");
    let port = reg.addr.port();
    let r = probe(
        node.path(),
        &[&broken, &good],
        &[format!("registry.test:{port}/{REPO}:latest")],
    )
    .await;
    assert!(r[0].ok(), "{:#?}", r[0].failure);
    assert!(broken.queries() >= 1 && good.queries() >= 1);
}

/// Go `goLookupIPCNAME` "Prefer error for original name" (TestErrorForOriginalNameWhenSearching):
/// when every candidate fails, the reason is the one of the name as written, whatever the
/// search candidates answered.
#[tokio::test]
async fn the_error_for_the_name_as_written_is_reported() {
    let dns = FakeDns::start(vec![
        ("one.test.svc.test", DnsBehavior::ServFail),
        ("one.test", DnsBehavior::NxDomain),
        ("two.test.svc.test", DnsBehavior::NxDomain),
        ("two.test", DnsBehavior::ServFail),
        ("three.test.svc.test", DnsBehavior::NxDomain),
        ("three.test", DnsBehavior::NoData),
    ])
    .await;
    let node = node("", "search svc.test\noptions ndots:5 attempts:1\n");
    let r = probe(
        node.path(),
        &[&dns],
        &[
            format!("one.test:5000/{REPO}:latest"),
            format!("two.test:5000/{REPO}:latest"),
            format!("three.test:5000/{REPO}:latest"),
        ],
    )
    .await;
    let (_, reason, message) = failure(&r[0]);
    assert_eq!(reason, Reason::DnsNxdomain, "{message}");
    assert!(
        message.contains("also tried one.test.svc.test (search domain: SERVFAIL)"),
        "{message}"
    );
    let (_, reason, message) = failure(&r[1]);
    assert_eq!(reason, Reason::DnsServfail, "{message}");
    assert!(
        message.starts_with("two.test: the DNS server answered SERVFAIL (SERVFAIL from "),
        "{message}"
    );
    let (_, reason, message) = failure(&r[2]);
    assert_eq!(reason, Reason::DnsNoRecords, "{message}");
}

/// Go `nameList`: a name in the hosts file under a search domain is still not found by its
/// short name (search domains apply to DNS only), so DNS is asked and its answer used.
#[tokio::test]
async fn search_domains_do_not_apply_to_the_hosts_file() {
    let reg = registry().await;
    let dns = FakeDns::start(vec![(
        "registry.svc.test",
        DnsBehavior::Answer(vec![ip("127.0.0.1")]),
    )])
    .await;
    let node = node("127.0.0.2 registry.svc.test\n", "search svc.test\n");
    let port = reg.addr.port();
    let r = probe(
        node.path(),
        &[&dns],
        &[format!("registry:{port}/{REPO}:latest")],
    )
    .await;
    assert!(r[0].ok(), "{:#?}", r[0].failure);
    assert_eq!(r[0].address, Some(SocketAddr::new(ip("127.0.0.1"), port)));
    assert!(dns.queries() > 0);
}
