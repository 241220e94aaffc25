//! What a person reads when name resolution fails: every DNS message names the nameservers
//! asked and where they came from (`dns.nameservers`, the resolv.conf, Go's defaults), every
//! remedy names those nameservers rather than a file they did not come from, and `--check`
//! ends with one line when every public registry fails at DNS the same way.
//!
//! Each test runs the real engine against [`FakeDns`] on loopback, renders the report as
//! `--check` does and asserts the lines of the explanation (`what:`, `why:`, `what to do:`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use pullprobe::config::Config;
use pullprobe::outcome::{Phase, Reason};
use pullprobe::probe::{ProbeReport, Prober};

use crate::support::dns::{DnsBehavior, FakeDns};
use crate::support::{init, pullprobe};

/// A node: a hosts file and a resolv.conf (with `search corp.test`, so that the candidates do
/// not depend on this machine's host name) in a temp dir.
fn node(resolv_conf: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hosts"), "127.0.0.1 localhost\n").unwrap();
    std::fs::write(
        dir.path().join("resolv.conf"),
        format!("search corp.test\n{resolv_conf}"),
    )
    .unwrap();
    std::fs::write(dir.path().join("no-proxy.env"), "").unwrap();
    dir
}

/// The config: the node's files, `nameservers` (none: the resolv.conf's), no node runtime
/// files and no proxy (whatever this process's environment says), plain-HTTP `images`.
fn yaml(timeout: &str, nameservers: &[SocketAddr], images: &[&str]) -> String {
    let mut yaml =
        format!("timeout: {timeout}\ndns:\n  hosts_file: hosts\n  resolv_conf: resolv.conf\n");
    if !nameservers.is_empty() {
        let list: Vec<String> = nameservers.iter().map(|s| format!("\"{s}\"")).collect();
        yaml += &format!("  nameservers: [{}]\n", list.join(", "));
    }
    yaml += "node:\n  runtime: none\n  containerd:\n    proxy_env_file: no-proxy.env\ntargets:\n";
    for image in images {
        yaml += &format!("  - image: {image}\n    plain_http: true\n");
    }
    yaml
}

async fn probe(
    node: &Path,
    timeout: &str,
    nameservers: &[SocketAddr],
    images: &[&str],
) -> Vec<ProbeReport> {
    init();
    let yaml = yaml(timeout, nameservers, images);
    let config = Config::from_yaml("test.yaml", &yaml, node).unwrap_or_else(|e| panic!("{e}"));
    let prober = Prober::from_config(&config);
    pullprobe::check::probe_all(&prober, config.targets.clone()).await
}

/// The explanation lines of one report as `--check` prints them, by label.
struct Explained {
    what: String,
    why: String,
    remedy: String,
}

fn explain(r: &ProbeReport) -> Explained {
    let text = pullprobe::check::render_text(std::slice::from_ref(r));
    let line = |label: &str| {
        let prefix = format!("    {label:<12} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {label} line in\n{text}"))
            .to_owned()
    };
    let explained = Explained {
        what: line("what:"),
        why: line("why:"),
        remedy: line("what to do:"),
    };
    for part in [&explained.what, &explained.why, &explained.remedy] {
        assert_readable(part);
    }
    explained
}

/// No library rendering a person cannot act on.
fn assert_readable(text: &str) {
    for debug in ["{ ", "Some(", "None", "Other(", "Kind(", "Os {", "\"\""] {
        assert!(!text.contains(debug), "{debug:?} in {text}");
    }
}

fn failure(r: &ProbeReport) -> (Phase, Reason) {
    let f = r.failure.as_ref().expect("the probe fails");
    (f.phase, f.reason)
}

/// A loopback UDP port with nothing behind it: a question there is refused (ICMP).
fn closed_udp_port() -> SocketAddr {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    socket.local_addr().unwrap()
}

/// dns_nxdomain with `dns.nameservers`: the message names the server that answered and its
/// source; the remedy names the same, and not /etc/resolv.conf or /etc/hosts.
#[tokio::test]
async fn nxdomain_names_the_configured_nameserver_in_message_and_remedy() {
    let dns = FakeDns::start(vec![]).await;
    let node = node("");
    let r = probe(node.path(), "5s", &[dns.addr], &["missing.test:5000/app"]).await;
    assert_eq!(failure(&r[0]), (Phase::Dns, Reason::DnsNxdomain));
    let e = explain(&r[0]);
    let (ns, hosts) = (dns.addr, node.path().join("hosts"));
    let hosts = hosts.display();
    assert_eq!(
        e.what,
        format!(
            "missing.test: the name does not exist (NXDOMAIN from {ns}); also tried missing.test.corp.test (search domain: NXDOMAIN); nameservers {ns} from dns.nameservers; not in {hosts}"
        )
    );
    assert_eq!(
        e.why,
        "dns_nxdomain — the DNS server says the registry host name does not exist"
    );
    assert_eq!(
        e.remedy,
        format!(
            "check missing.test for typos; if it is a private name, check that its DNS zone is served by the nameserver {ns} (from dns.nameservers), or list the name in {hosts} exactly as written (search domains do not apply there)"
        )
    );
}

/// dns_no_records: the name exists without an address; the remedy says where to add one.
#[tokio::test]
async fn no_records_names_the_nameserver() {
    let dns = FakeDns::start(vec![("nodata.test", DnsBehavior::NoData)]).await;
    let node = node("");
    let r = probe(node.path(), "5s", &[dns.addr], &["nodata.test:5000/app"]).await;
    assert_eq!(failure(&r[0]), (Phase::Dns, Reason::DnsNoRecords));
    let e = explain(&r[0]);
    let (ns, hosts) = (dns.addr, node.path().join("hosts"));
    assert_eq!(
        e.what,
        format!(
            "nodata.test: the name has no A or AAAA records (NOERROR without addresses from {ns}); also tried nodata.test.corp.test (search domain: NXDOMAIN); nameservers {ns} from dns.nameservers; not in {}",
            hosts.display()
        )
    );
    assert_eq!(
        e.remedy,
        format!(
            "add an A or AAAA record for nodata.test (or fix its CNAME chain) in the zone the nameserver {ns} (from dns.nameservers) answers from; check split-horizon views that answer it differently than other clients"
        )
    );
}

/// dns_servfail, for SERVFAIL and for REFUSED: each server's answer, and a `dig` command
/// against the first server, with its port.
#[tokio::test]
async fn servfail_and_refused_name_each_server_and_how_to_query_it() {
    let first = FakeDns::start(vec![
        ("servfail.test", DnsBehavior::ServFail),
        ("refused.test", DnsBehavior::Refused),
    ])
    .await;
    let second = FakeDns::start(vec![
        ("servfail.test", DnsBehavior::ServFail),
        ("refused.test", DnsBehavior::ServFail),
    ])
    .await;
    let node = node("options attempts:1\n");
    let r = probe(
        node.path(),
        "5s",
        &[first.addr, second.addr],
        &["servfail.test:5000/app", "refused.test:5000/app"],
    )
    .await;
    let (a, b) = (first.addr, second.addr);
    let hosts = node.path().join("hosts");
    let hosts = hosts.display();
    assert_eq!(failure(&r[0]), (Phase::Dns, Reason::DnsServfail));
    let e = explain(&r[0]);
    assert_eq!(
        e.what,
        format!(
            "servfail.test: the DNS server answered SERVFAIL (SERVFAIL from {a}, {b}); also tried servfail.test.corp.test (search domain: NXDOMAIN); nameservers {a}, {b} from dns.nameservers; not in {hosts}"
        )
    );
    assert_eq!(
        e.why,
        "dns_servfail — the DNS server failed or refused to answer (SERVFAIL/REFUSED), usually an upstream resolver problem"
    );
    assert_eq!(
        e.remedy,
        format!(
            "query the nameservers {a}, {b} (from dns.nameservers) from the node (`dig @127.0.0.1 -p {} servfail.test`) and check their upstream resolvers (forwarders, DNSSEC validation)",
            a.port()
        )
    );
    assert_eq!(failure(&r[1]), (Phase::Dns, Reason::DnsServfail));
    let e = explain(&r[1]);
    assert_eq!(
        e.what,
        format!(
            "refused.test: the DNS server answered SERVFAIL (REFUSED from {a}, SERVFAIL from {b}); also tried refused.test.corp.test (search domain: NXDOMAIN); nameservers {a}, {b} from dns.nameservers; not in {hosts}"
        )
    );
}

/// dns_timeout from the resolver's own `options timeout` (well within the probe's): the
/// remedy names the configured nameserver and says dns.nameservers replaces the node's.
#[tokio::test]
async fn resolver_timeout_names_the_silent_nameserver() {
    let dns = FakeDns::start(vec![("silent.test", DnsBehavior::Silent)]).await;
    let node = node("options timeout:1 attempts:1\n");
    let r = probe(node.path(), "5s", &[dns.addr], &["silent.test:5000/app"]).await;
    assert_eq!(failure(&r[0]), (Phase::Dns, Reason::DnsTimeout));
    let e = explain(&r[0]);
    let ns = dns.addr;
    assert_eq!(
        e.what,
        format!(
            "silent.test: no DNS server answered in time (no answer within 1s from {ns}); also tried silent.test.corp.test (search domain: NXDOMAIN); nameservers {ns} from dns.nameservers; not in {}",
            node.path().join("hosts").display()
        )
    );
    assert_eq!(e.why, "dns_timeout — no DNS server answered in time");
    assert_eq!(
        e.remedy,
        format!(
            "check that {ns} (set in dns.nameservers of pullprobe's config) answers from the node over UDP and TCP and is not overloaded; dns.nameservers replaces the node's own nameservers for pullprobe, so also check that it lists the ones the node's container runtime uses"
        )
    );
    assert!(!e.remedy.contains("resolv.conf"), "{}", e.remedy);
}

/// dns_timeout at the probe's deadline, before the resolver's own timeout: the message says
/// what had been asked by then (here nothing had answered) and names the nameservers.
#[tokio::test]
async fn deadline_during_dns_names_the_nameservers_asked() {
    let dns = FakeDns::start(vec![("silent.test", DnsBehavior::Silent)]).await;
    let node = node("");
    let r = probe(node.path(), "1s", &[dns.addr], &["silent.test:5000/app"]).await;
    assert_eq!(failure(&r[0]), (Phase::Dns, Reason::DnsTimeout));
    let e = explain(&r[0]);
    let ns = dns.addr;
    let (head, tail) = e
        .what
        .split_once("s spent in DNS")
        .unwrap_or_else(|| panic!("{}", e.what));
    assert!(
        head.starts_with("silent.test: no DNS answer before the probe's deadline ("),
        "{}",
        e.what
    );
    assert_eq!(
        tail,
        format!(
            ": no server had answered yet); nameservers {ns} from dns.nameservers; not in {}",
            node.path().join("hosts").display()
        )
    );
    assert!(
        e.remedy
            .starts_with(&format!("check that {ns} (set in dns.nameservers"))
    );
    assert!(
        dns.queries() >= 2,
        "A and AAAA were asked: {:?}",
        dns.asked()
    );
}

/// The deadline after one server timed out and while the next was being asked: both appear.
#[tokio::test]
async fn deadline_after_one_server_timed_out_says_so() {
    let first = FakeDns::start(vec![("silent.test", DnsBehavior::Silent)]).await;
    let second = FakeDns::start(vec![("silent.test", DnsBehavior::Silent)]).await;
    let node = node("options timeout:1 attempts:1\n");
    let r = probe(
        node.path(),
        "1500ms",
        &[first.addr, second.addr],
        &["silent.test:5000/app"],
    )
    .await;
    assert_eq!(failure(&r[0]), (Phase::Dns, Reason::DnsTimeout));
    let e = explain(&r[0]);
    let (a, b) = (first.addr, second.addr);
    let (_, tail) = e
        .what
        .split_once("s spent in DNS")
        .unwrap_or_else(|| panic!("{}", e.what));
    assert_eq!(
        tail,
        format!(
            ": no answer within 1s from {a}, then no answer yet); nameservers {a}, {b} from dns.nameservers; not in {}",
            node.path().join("hosts").display()
        )
    );
    assert!(second.queries() >= 1, "{:?}", second.asked());
}

/// dns_error: the nameserver's port is closed (the question is refused): the message says so,
/// the remedy names that server and its source.
#[tokio::test]
async fn unreachable_nameserver_is_named() {
    let ns = closed_udp_port();
    let node = node("options attempts:1\n");
    let r = probe(node.path(), "5s", &[ns], &["registry.test:5000/app"]).await;
    assert_eq!(failure(&r[0]), (Phase::Dns, Reason::DnsError));
    let e = explain(&r[0]);
    assert_eq!(
        e.what,
        format!(
            "registry.test: no DNS server could be reached (connection refused at {ns}); also tried registry.test.corp.test (search domain: connection refused); nameservers {ns} from dns.nameservers; not in {}",
            node.path().join("hosts").display()
        )
    );
    assert_eq!(
        e.why,
        "dns_error — the name could not be resolved (no usable resolver, or a malformed answer)"
    );
    assert_eq!(
        e.remedy,
        format!(
            "check that {ns} (set in dns.nameservers of pullprobe's config) runs a resolver reachable from the node over UDP and TCP; dns.nameservers replaces the node's own nameservers for pullprobe, so also check that it lists the ones the node's container runtime uses"
        )
    );
}

/// Go's `isDomainName`: a label longer than 63 characters is "no such host" without a
/// question; the message still says whom the resolver would have asked.
#[tokio::test]
async fn invalid_name_says_whom_it_would_ask() {
    let dns = FakeDns::start(vec![]).await;
    let node = node("");
    let host = format!("{}.test", "a".repeat(64));
    let image = format!("{host}:5000/app");
    let r = probe(node.path(), "5s", &[dns.addr], &[image.as_str()]).await;
    assert_eq!(failure(&r[0]), (Phase::Dns, Reason::DnsNxdomain));
    let e = explain(&r[0]);
    assert_eq!(
        e.what,
        format!(
            "{host}: not a valid DNS name, so the resolver reports that it does not exist without asking a server (it would ask nameservers {} from dns.nameservers); not in {}",
            dns.addr,
            node.path().join("hosts").display()
        )
    );
    assert!(
        e.remedy.starts_with(&format!("check {host} for typos; ")),
        "{}",
        e.remedy
    );
    assert_eq!(dns.queries(), 0, "{:?}", dns.asked());
}

/// Nameservers from the resolv.conf (`dns.resolv_conf`): the message and the remedy name that
/// file. resolv.conf cannot name a port, so the server is on port 53 of a random loopback
/// address, which needs root.
#[tokio::test]
async fn nameservers_from_resolv_conf_are_named_with_the_file() {
    if !std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
    {
        return;
    }
    let ip = Ipv4Addr::new(127, 53, rand_octet(), rand_octet().max(1));
    let dns = FakeDns::start_at(
        (ip, 53).into(),
        vec![("servfail.test", DnsBehavior::ServFail)],
    )
    .await;
    let node = node(&format!("nameserver {ip}\noptions attempts:1\n"));
    let r = probe(node.path(), "5s", &[], &["servfail.test:5000/app"]).await;
    assert_eq!(failure(&r[0]), (Phase::Dns, Reason::DnsServfail));
    let e = explain(&r[0]);
    let resolv_conf = node.path().join("resolv.conf");
    let resolv_conf = resolv_conf.display();
    assert_eq!(
        e.what,
        format!(
            "servfail.test: the DNS server answered SERVFAIL (SERVFAIL from {ip}:53); also tried servfail.test.corp.test (search domain: NXDOMAIN); nameservers {ip}:53 from {resolv_conf}; not in {}",
            node.path().join("hosts").display()
        )
    );
    assert_eq!(
        e.remedy,
        format!(
            "query the nameserver {ip}:53 (from {resolv_conf}) from the node (`dig @{ip} servfail.test`) and check its upstream resolvers (forwarders, DNSSEC validation)"
        )
    );
    drop(dns);
}

fn rand_octet() -> u8 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    u8::try_from(nanos % 250).unwrap()
}

/// A resolv.conf without a nameserver line: Go's defaults are asked, and the message says
/// why. (What answers on this machine's 127.0.0.1:53 varies, so only the note is asserted.)
#[tokio::test]
async fn default_nameservers_say_why() {
    let node = node("options timeout:1 attempts:1\n");
    let r = probe(node.path(), "5s", &[], &["missing.invalid:5000/app"]).await;
    let f = r[0].failure.as_ref().expect("the probe fails");
    assert_eq!(f.phase, Phase::Dns, "{}", f.message);
    assert!(
        f.message.contains(&format!(
            "nameservers 127.0.0.1:53, [::1]:53: the defaults, because {} lists no nameserver",
            node.path().join("resolv.conf").display()
        )),
        "{}",
        f.message
    );
}

const PUBLIC_IMAGES: [&str; 7] = [
    "docker.io/ratelimitpreview/test:latest",
    "registry.k8s.io/pause:3.10",
    "ghcr.io/containerd/busybox:1.36",
    "quay.io/prometheus/busybox:latest",
    "public.ecr.aws/docker/library/alpine:latest",
    "mcr.microsoft.com/azurelinux/base/core:3.0",
    "gcr.io/distroless/static-debian12:nonroot",
];

/// The new user on a node whose resolver serves no public names: the default config's seven
/// registries all get NXDOMAIN from the one nameserver. `--check` ends with one line saying
/// so, in text and in JSON; each remedy points at the resolver, not at typos.
#[tokio::test(flavor = "multi_thread")]
async fn check_sums_up_a_resolver_without_public_names() {
    let dns = FakeDns::start(vec![]).await;
    let node = node("");
    let config = node.path().join("pullprobe.yaml");
    std::fs::write(&config, yaml("5s", &[dns.addr], &PUBLIC_IMAGES)).unwrap();
    let run_text = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            pullprobe([
                "--check".as_ref(),
                "--output".as_ref(),
                "text".as_ref(),
                "--config.file".as_ref(),
                config.as_os_str(),
            ])
        })
    };
    let text = run_text.await.unwrap();
    assert_eq!(text.code, 1, "{}", text.stderr);
    let ns = dns.addr;
    let summary = format!(
        "every public registry failed at dns the same way: the nameserver {ns} (from dns.nameservers) answered NXDOMAIN for all of them (registry-1.docker.io, registry.k8s.io, ghcr.io, quay.io, public.ecr.aws, mcr.microsoft.com and gcr.io): this node's resolver does not serve public names — a proxy-only or air-gapped network? No proxy applies to these registries (through one, the node would not resolve their names itself): on a proxy-only network, set HTTPS_PROXY for the node's container runtime; on an air-gapped one, pull from a mirror inside the network"
    );
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert_eq!(
        lines[lines.len() - 2..],
        ["0 of 7 targets ok", summary.as_str()]
    );
    assert!(
        text.stdout.contains(&format!(
            "    what to do:  gcr.io is a public registry, so the nameserver {ns} (from dns.nameservers) does not serve public names: "
        )),
        "{}",
        text.stdout
    );
    assert!(!text.stdout.contains("for typos"), "{}", text.stdout);
    assert_readable(&text.stdout);

    let run_json =
        tokio::task::spawn_blocking(move || crate::docker_registry::run_check(&config, &[], &[]));
    let json = run_json.await.unwrap();
    assert_eq!(json.code, 1, "{}", json.stderr);
    assert_eq!(json.json["summary"], summary.as_str());
    for r in json.json["results"].as_array().unwrap() {
        assert_eq!(r["reason"], "dns_nxdomain", "{r}");
        let remedy = r["remedy"].as_str().unwrap();
        assert!(
            remedy.contains("is a public registry, so the nameserver"),
            "{remedy}"
        );
    }
}

/// One public registry resolves (and is then refused on loopback): the resolver serves
/// public names, so there is no summary.
#[tokio::test]
async fn no_summary_when_one_public_registry_resolves() {
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let dns = FakeDns::start(vec![("ghcr.io", DnsBehavior::Answer(vec![lo]))]).await;
    let node = node("");
    let r = probe(node.path(), "5s", &[dns.addr], &PUBLIC_IMAGES).await;
    assert_ne!(failure(&r[2]).0, Phase::Dns, "{:?}", r[2].failure);
    assert_eq!(failure(&r[6]), (Phase::Dns, Reason::DnsNxdomain));
    assert_eq!(pullprobe::check::dns_summary(&r), None);
    let text = pullprobe::check::render_text(&r);
    assert!(text.ends_with("0 of 7 targets ok\n"), "{text}");
}
