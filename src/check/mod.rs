//! `pullprobe --check`: probe every target once, concurrently, and explain the result.
//!
//! Text output is a table (one row per target: phase timings and the result) followed by, for
//! each failure, what failed, why and what to do. JSON output is one object with a `results`
//! array (see the README for the schema). Exit status: 0 all ok, 1 a target failed, 2 usage or
//! configuration error.

pub mod pod;

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::cli::{Cli, EXIT_OK, EXIT_PROBE_FAILED, EXIT_USAGE, OutputFormat};
use crate::config::{Config, Target};
use crate::outcome::{DnsResolver, Failure, Phase, Reason, is_public_registry};
use crate::platform::Platform;
use crate::probe::{ProbeReport, Prober};

/// Runs `--check` and returns the exit status. At most `--probe.concurrency` probes run at once. Output goes to stdout, errors to stderr.
pub async fn run(cli: &Cli) -> u8 {
    let config = match &cli.config_file {
        Some(path) => Config::load(path),
        None => Ok(Config::embedded_default()),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pullprobe: {e}");
            return EXIT_USAGE;
        }
    };
    if cli.kubeconfig.is_some() && cli.pods.is_empty() {
        eprintln!(
            "pullprobe: --kubeconfig applies only with --pod, which reads pods from the Kubernetes API; add --pod NAMESPACE/NAME or remove --kubeconfig"
        );
        return EXIT_USAGE;
    }
    let platform = cli.platform.clone().unwrap_or_else(Platform::host);
    if !cli.pods.is_empty() {
        let cluster =
            match crate::cluster::Cluster::connect(cli.kubeconfig.as_deref(), config.timeout).await
            {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("pullprobe: {e}");
                    return EXIT_USAGE;
                }
            };
        let prober = Prober::with_platform(&config, platform);
        return pod::run(&cluster, &config, &prober, &cli.pods, cli.output).await;
    }
    let mut targets = if cli.images.is_empty() {
        config.targets.clone()
    } else {
        match config.targets_for_images(&cli.images) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("pullprobe: {e}");
                return EXIT_USAGE;
            }
        }
    };
    // --check always checks the platform (one manifest GET per image).
    for t in &mut targets {
        t.check_platform = true;
    }
    tracing::debug!(config = %config.source, targets = targets.len(), timeout = ?config.timeout, platform = %platform, "Checking targets");
    let reports = probe_all_bounded(
        &Prober::with_platform(&config, platform),
        targets,
        cli.probe_concurrency,
    )
    .await;
    let out = match cli.output {
        OutputFormat::Text => render_text(&reports),
        OutputFormat::Json => render_json(&reports),
    };
    write_stdout(&out);
    if reports.iter().all(ProbeReport::ok) {
        EXIT_OK
    } else {
        EXIT_PROBE_FAILED
    }
}

/// Writes the result to stdout. A reader that went away (`pullprobe --check | head -1`) is not
/// an error: the exit status still says whether the targets were ok.
fn write_stdout(out: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        tracing::warn!(error = %e, "Cannot write the result to stdout");
    }
}

/// Probes all targets concurrently; reports come back in target order.
pub async fn probe_all(prober: &Prober, targets: Vec<Target>) -> Vec<ProbeReport> {
    let limit = targets.len().max(1);
    probe_all_bounded(prober, targets, limit).await
}

/// Probes all targets with at most `limit` probes in flight (`--probe.concurrency`), so a
/// large config does not run thousands of handshakes at once and time out on its own load.
/// Each probe's deadline starts when it starts. Reports come back in target order.
pub async fn probe_all_bounded(
    prober: &Prober,
    targets: Vec<Target>,
    limit: usize,
) -> Vec<ProbeReport> {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(limit.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (i, t) in targets.into_iter().enumerate() {
        let prober = prober.clone();
        let permits = permits.clone();
        set.spawn(async move {
            let _permit = permits
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            (i, prober.probe(&t).await)
        });
    }
    let mut out: Vec<(usize, ProbeReport)> = Vec::with_capacity(set.len());
    while let Some(r) = set.join_next().await {
        match r {
            Ok(pair) => out.push(pair),
            Err(e) => tracing::error!(error = %e, "A probe task panicked"),
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

// ---- JSON --------------------------------------------------------------------------------

#[derive(Serialize)]
struct JsonOutput<'a> {
    results: Vec<JsonResult<'a>>,
    /// [`dns_summary`]: what every public registry failing at DNS the same way says about the
    /// node's resolver; `null` otherwise.
    summary: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct JsonResult<'a> {
    target: &'a str,
    image: &'a str,
    registry: &'a str,
    ok: bool,
    phase: Option<Phase>,
    reason: Reason,
    message: String,
    remedy: Option<std::borrow::Cow<'static, str>>,
    duration_seconds: f64,
    phases: Vec<JsonPhase>,
    address: Option<String>,
    tls: Option<JsonTls<'a>>,
    digest: Option<&'a str>,
    rate_limit: Option<JsonRateLimit<'a>>,
    /// The endpoint that answered, or whose failure is the verdict.
    endpoint: &'a str,
    /// Every endpoint asked, in order (mirrors first, the registry last).
    endpoints: Vec<JsonEndpoint<'a>>,
    /// What the node's files would make the runtime do differently than they say.
    warnings: &'a [String],
}

#[derive(Serialize)]
struct JsonEndpoint<'a> {
    endpoint: &'a str,
    ok: bool,
    phase: Option<Phase>,
    reason: Reason,
    message: Option<&'a str>,
}

#[derive(Serialize)]
struct JsonPhase {
    phase: Phase,
    seconds: f64,
}

#[derive(Serialize)]
struct JsonTls<'a> {
    version: Option<&'static str>,
    /// The earliest NotAfter of the presented chain and its trust anchor.
    earliest_not_after: Option<String>,
    /// The subject of the trust anchor the chain was verified against (or of the root that
    /// made it fail).
    anchor_subject: Option<&'a str>,
    anchor_not_after: Option<String>,
}

#[derive(Serialize)]
struct JsonRateLimit<'a> {
    limit: u64,
    remaining: u64,
    window_seconds: Option<u64>,
    source: Option<&'a str>,
}

fn seconds(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e6
}

fn success_message(r: &ProbeReport) -> String {
    match &r.digest {
        Some(d) => format!("{} resolves to {d}", r.image),
        None => format!(
            "{} exists (the registry sent no Docker-Content-Digest)",
            r.image
        ),
    }
}

fn rfc3339(unix: i64) -> Option<String> {
    let secs = u64::try_from(unix).ok()?;
    Some(
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(secs))
            .to_string(),
    )
}

/// One report as an element of the JSON `results` array (also a container's `result` in
/// `--pod` output).
fn json_result(r: &ProbeReport) -> JsonResult<'_> {
    JsonResult {
        target: &r.target,
        image: &r.image,
        registry: &r.registry,
        ok: r.ok(),
        phase: r.phase(),
        reason: r.reason(),
        message: r
            .failure
            .as_ref()
            .map_or_else(|| success_message(r), |f| f.message.clone()),
        remedy: r.failure.as_ref().and_then(Failure::remedy),
        duration_seconds: seconds(r.duration),
        phases: r
            .phases
            .iter()
            .map(|p| JsonPhase {
                phase: p.phase,
                seconds: seconds(p.duration),
            })
            .collect(),
        address: r.address.map(|a| a.to_string()),
        tls: r.tls.as_ref().map(|t| JsonTls {
            version: t.version,
            earliest_not_after: t.earliest_not_after.and_then(rfc3339),
            anchor_subject: t.anchor_subject.as_deref(),
            anchor_not_after: t.anchor_not_after.and_then(rfc3339),
        }),
        digest: r.digest.as_deref(),
        rate_limit: r.rate_limit.as_ref().map(|l| JsonRateLimit {
            limit: l.limit,
            remaining: l.remaining,
            window_seconds: l.window_seconds,
            source: l.source.as_deref(),
        }),
        endpoint: &r.endpoint,
        endpoints: r
            .endpoints
            .iter()
            .map(|e| JsonEndpoint {
                endpoint: &e.endpoint,
                ok: e.ok(),
                phase: e.failure.as_ref().map(|f| f.phase),
                reason: e.failure.as_ref().map_or(Reason::Ok, |f| f.reason),
                message: e.failure.as_ref().map(|f| f.message.as_str()),
            })
            .collect(),
        warnings: &r.warnings,
    }
}

/// Renders reports as the JSON document of `--output json`.
pub fn render_json(reports: &[ProbeReport]) -> String {
    let results = reports.iter().map(json_result).collect();
    let summary = dns_summary(reports);
    let mut s = serde_json::to_string_pretty(&JsonOutput { results, summary })
        .expect("serialising plain data cannot fail");
    s.push('\n');
    s
}

// ---- text --------------------------------------------------------------------------------

/// The endpoints asked, when there is more than the registry itself: "mirror
/// mirror.internal:5000 connect_refused → registry-1.docker.io ok".
fn write_chain(out: &mut String, r: &ProbeReport) {
    if r.endpoints.len() < 2 && r.endpoints.iter().all(|e| e.upstream) {
        return;
    }
    let _ = writeln!(
        out,
        "    endpoints:   (asked in this order, as the node's runtime asks them)"
    );
    for e in &r.endpoints {
        let kind = if e.upstream { "registry" } else { "mirror" };
        match &e.failure {
            None => {
                let _ = writeln!(out, "      {kind} {}: ok", e.endpoint);
            }
            Some(f) => {
                let _ = writeln!(
                    out,
                    "      {kind} {}: {} at {} — {}",
                    e.endpoint, f.reason, f.phase, f.message
                );
            }
        }
    }
    if r.ok() && r.endpoints.len() > 1 {
        let _ = writeln!(out, "      → the pull uses {}", r.endpoint);
    }
}

fn millis(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// Renders reports as the table and explanations of `--output text`.
pub fn render_text(reports: &[ProbeReport]) -> String {
    let mut out = String::new();
    write_table(&mut out, reports, "TARGET");
    for r in reports {
        let _ = writeln!(out);
        write_details(&mut out, r);
    }

    let ok = reports.iter().filter(|r| r.ok()).count();
    let _ = writeln!(out, "\n{ok} of {} targets ok", reports.len());
    if let Some(summary) = dns_summary(reports) {
        let _ = writeln!(out, "{summary}");
    }
    out
}

/// The table: one row per report, `first` heading its first column.
fn write_table(out: &mut String, reports: &[ProbeReport], first: &str) {
    let mut rows: Vec<Vec<String>> = vec![
        [
            first, "REGISTRY", "DNS", "CONNECT", "TLS", "AUTH", "MANIFEST", "RESULT",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect(),
    ];
    for r in reports {
        let mut row = vec![r.target.clone(), r.registry.clone()];
        for phase in Phase::TIMED {
            let cell = match (r.phase_duration(phase), r.phase()) {
                (Some(d), Some(p)) if p == phase => format!("{} FAIL", millis(d)),
                (Some(d), _) => millis(d),
                (None, _) => "-".to_owned(),
            };
            row.push(cell);
        }
        row.push(if r.ok() {
            "ok".to_owned()
        } else {
            format!("FAIL {}", r.reason())
        });
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
}

/// What failed, why and what to do (or what the success found) for one report.
fn write_details(out: &mut String, r: &ProbeReport) {
    match &r.failure {
        None => {
            let _ = writeln!(out, "ok  {} ({})", r.target, r.image);
            let _ = writeln!(out, "    {}", success_message(r));
        }
        Some(f) => {
            let via = if r.endpoint.is_empty() || r.endpoint == r.registry {
                r.registry.clone()
            } else {
                format!("{}, the node's endpoint for {}", r.endpoint, r.registry)
            };
            let _ = writeln!(out, "FAIL  {} ({} via {via})", r.target, r.image);
            let _ = writeln!(out, "    failed step: {}", f.phase);
            let _ = writeln!(out, "    what:        {}", f.message);
            let _ = writeln!(
                out,
                "    why:         {} — {}",
                f.reason,
                f.reason.meaning()
            );
            if let Some(remedy) = f.remedy() {
                let _ = writeln!(out, "    what to do:  {remedy}");
            }
        }
    }
    write_chain(out, r);
    for w in &r.warnings {
        let _ = writeln!(out, "    warning:     {w}");
    }
    if let Some(a) = r.address {
        let _ = writeln!(out, "    address:     {a}");
    }
    if let Some(t) = &r.tls {
        let expiry = t
            .earliest_not_after
            .and_then(rfc3339)
            .unwrap_or_else(|| "unknown".to_owned());
        let _ = writeln!(
            out,
            "    tls:         {} (chain valid until {expiry})",
            t.version.unwrap_or("handshake not completed")
        );
        if let Some(anchor) = &t.anchor_subject {
            let until = t
                .anchor_not_after
                .and_then(rfc3339)
                .map(|u| format!(" (valid until {u})"))
                .unwrap_or_default();
            let _ = writeln!(out, "    chain root:  {anchor}{until}");
        }
    }
    if let Some(l) = &r.rate_limit {
        let window = l
            .window_seconds
            .map(|w| {
                format!(
                    " per {}",
                    humantime::format_duration(Duration::from_secs(w))
                )
            })
            .unwrap_or_default();
        let source = l
            .source
            .as_deref()
            .map(|s| format!(", counted against {s}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "    rate limit:  {} of {} pulls left{window}{source}",
            l.remaining, l.limit
        );
    }
}

// ---- summary -----------------------------------------------------------------------------

/// The host of a `registry` label (`host`, `host:port`, `[v6]:port`).
fn registry_host(registry: &str) -> &str {
    match registry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => registry,
    }
}

/// "a, b and c".
fn and_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// "port 53", "ports 53 and 5353": the ports of the nameservers asked (dns.nameservers may give
/// another than 53), each once, in the order asked.
fn nameserver_ports(resolver: &DnsResolver) -> String {
    let mut ports: Vec<String> = Vec::new();
    for p in resolver.nameservers.iter().map(|a| a.port().to_string()) {
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    let ports: Vec<&str> = ports.iter().map(String::as_str).collect();
    match ports.as_slice() {
        [one] => format!("port {one}"),
        many => format!("ports {}", and_list(many)),
    }
}

/// One line when every public registry among the targets failed at DNS the same way, which
/// says something about the node's resolver rather than about any registry: the targets whose
/// registry is one of [`crate::outcome::PUBLIC_REGISTRY_HOSTS`] all failed in the `dns` phase,
/// for the registry host itself (not a proxy's or a mirror's), with the same reason from the
/// same nameservers, and they are at least two distinct hosts. `None` otherwise.
pub fn dns_summary(reports: &[ProbeReport]) -> Option<String> {
    let mut common: Option<(Reason, &DnsResolver)> = None;
    let mut hosts: Vec<&str> = Vec::new();
    for r in reports {
        let registry = registry_host(&r.registry);
        if !is_public_registry(registry) {
            continue;
        }
        let f = r.failure.as_ref()?;
        let resolver = f.resolver.as_deref()?;
        if f.phase != Phase::Dns || !resolver.host.eq_ignore_ascii_case(registry) {
            return None;
        }
        match common {
            None => common = Some((f.reason, resolver)),
            Some((reason, first)) => {
                if reason != f.reason
                    || first.nameservers != resolver.nameservers
                    || first.source != resolver.source
                {
                    return None;
                }
            }
        }
        if !hosts.iter().any(|h| h.eq_ignore_ascii_case(registry)) {
            hosts.push(registry);
        }
    }
    let (reason, resolver) = common?;
    if hosts.len() < 2 {
        return None;
    }
    let asked = resolver.describe();
    let ports = nameserver_ports(resolver);
    let hosts = and_list(&hosts);
    // Through a proxy the node does not resolve registry names itself (Go's transport sends
    // the name to the proxy), so these lookups mean no proxy applies to these registries.
    let no_public_names = "a proxy-only or air-gapped network? No proxy applies to these registries (through one, the node would not resolve their names itself): on a proxy-only network, set HTTPS_PROXY for the node's container runtime; on an air-gapped one, pull from a mirror inside the network";
    let line = match reason {
        Reason::DnsNxdomain => format!(
            "{asked} answered NXDOMAIN for all of them ({hosts}): this node's resolver does not serve public names — {no_public_names}"
        ),
        Reason::DnsNoRecords => format!(
            "{asked} answered without an address for all of them ({hosts}): this node's resolver does not serve public names — {no_public_names}"
        ),
        Reason::DnsServfail => format!(
            "{asked} answered SERVFAIL or REFUSED for all of them ({hosts}): this node's resolver cannot resolve public names (no working upstream, or it refuses this node) — {no_public_names}"
        ),
        Reason::DnsTimeout => format!(
            "{asked} did not answer in time for any of them ({hosts}): the resolver is down or unreachable from this node (UDP and TCP {ports} blocked?)"
        ),
        _ => format!(
            "{asked} could not be used for any of them ({hosts}): the resolver is down, unreachable from this node, or not a DNS server"
        ),
    };
    Some(format!(
        "every public registry failed at dns the same way: {line}"
    ))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::SystemTime;

    use super::*;
    use crate::outcome::{NameserverSource, PUBLIC_REGISTRY_HOSTS};
    use crate::probe::EndpointResult;

    const NS: &str = "10.0.0.10:53";

    fn report(registry: &str, failure: Option<Failure>) -> ProbeReport {
        ProbeReport {
            target: registry.to_owned(),
            image: format!("{registry}/team/app:1"),
            registry: registry.to_owned(),
            failure: failure.clone(),
            duration: Duration::from_millis(12),
            started_at: SystemTime::UNIX_EPOCH,
            phases: Vec::new(),
            address: None,
            tls: None,
            digest: failure.is_none().then(|| "sha256:abc".to_owned()),
            rate_limit: None,
            endpoint: registry.to_owned(),
            endpoints: vec![EndpointResult {
                endpoint: registry.to_owned(),
                upstream: true,
                failure,
            }],
            warnings: Vec::new(),
        }
    }

    fn resolver(host: &str, ns: &str, source: NameserverSource) -> Option<Box<DnsResolver>> {
        Some(Box::new(DnsResolver {
            host: host.to_owned(),
            nameservers: vec![ns.parse().unwrap()],
            source,
            hosts_file: PathBuf::from("/etc/hosts"),
        }))
    }

    fn file() -> NameserverSource {
        NameserverSource::ResolvConf(PathBuf::from("/etc/resolv.conf"))
    }

    /// A DNS failure of `host` from the nameserver `ns` of /etc/resolv.conf.
    fn dns_failure(registry: &str, reason: Reason, ns: &str) -> ProbeReport {
        let host = registry_host(registry);
        let f = Failure::new(
            Phase::Dns,
            reason,
            format!("{host}: the name does not exist (NXDOMAIN from {ns}); nameservers {ns} from /etc/resolv.conf; not in /etc/hosts"),
        )
        .with_resolver(resolver(host, ns, file()));
        report(registry, Some(f))
    }

    /// The seven public registries of the embedded default config, all failing with `reason`.
    fn all_public(reason: Reason) -> Vec<ProbeReport> {
        PUBLIC_REGISTRY_HOSTS
            .iter()
            .map(|h| dns_failure(h, reason, NS))
            .collect()
    }

    fn assert_readable(text: &str) {
        for debug in ["{ ", "Some(", "None", "Other(", "Kind(", "Os {"] {
            assert!(!text.contains(debug), "{debug:?} in {text}");
        }
    }

    const NO_PUBLIC_NAMES: &str = "a proxy-only or air-gapped network? No proxy applies to these registries (through one, the node would not resolve their names itself): on a proxy-only network, set HTTPS_PROXY for the node's container runtime; on an air-gapped one, pull from a mirror inside the network";
    const ALL: &str = "registry-1.docker.io, registry.k8s.io, ghcr.io, quay.io, public.ecr.aws, mcr.microsoft.com and gcr.io";

    /// What a new user on a node whose resolver serves no public names sees: one line that
    /// says so, naming the resolver and where it came from.
    #[test]
    fn every_public_registry_nxdomain_is_summarised() {
        let summary = dns_summary(&all_public(Reason::DnsNxdomain)).unwrap();
        assert_eq!(
            summary,
            format!(
                "every public registry failed at dns the same way: the nameserver 10.0.0.10:53 (from /etc/resolv.conf) answered NXDOMAIN for all of them ({ALL}): this node's resolver does not serve public names — {NO_PUBLIC_NAMES}"
            )
        );
        assert_readable(&summary);
    }

    /// The port named is the nameservers' own (dns.nameservers may give one), not always 53.
    #[test]
    fn a_timeout_summary_names_the_nameservers_port() {
        let reports: Vec<_> = PUBLIC_REGISTRY_HOSTS
            .iter()
            .map(|h| dns_failure(h, Reason::DnsTimeout, "127.0.0.1:5353"))
            .collect();
        let summary = dns_summary(&reports).unwrap();
        assert!(
            summary.ends_with("(UDP and TCP port 5353 blocked?)"),
            "{summary}"
        );
        assert!(!summary.contains("port 53 "), "{summary}");
        let two = DnsResolver {
            host: "gcr.io".to_owned(),
            nameservers: vec![
                "10.0.0.10:53".parse().unwrap(),
                "10.0.0.11:5353".parse().unwrap(),
                "10.0.0.12:53".parse().unwrap(),
            ],
            source: NameserverSource::Config,
            hosts_file: PathBuf::from("/etc/hosts"),
        };
        assert_eq!(nameserver_ports(&two), "ports 53 and 5353");
    }

    #[test]
    fn the_summary_says_what_each_dns_reason_means_for_the_resolver() {
        let cases = [
            (
                Reason::DnsNoRecords,
                format!(
                    "answered without an address for all of them ({ALL}): this node's resolver does not serve public names — {NO_PUBLIC_NAMES}"
                ),
            ),
            (
                Reason::DnsServfail,
                format!(
                    "answered SERVFAIL or REFUSED for all of them ({ALL}): this node's resolver cannot resolve public names (no working upstream, or it refuses this node) — {NO_PUBLIC_NAMES}"
                ),
            ),
            (
                Reason::DnsTimeout,
                format!(
                    "did not answer in time for any of them ({ALL}): the resolver is down or unreachable from this node (UDP and TCP port 53 blocked?)"
                ),
            ),
            (
                Reason::DnsError,
                format!(
                    "could not be used for any of them ({ALL}): the resolver is down, unreachable from this node, or not a DNS server"
                ),
            ),
        ];
        for (reason, tail) in cases {
            let summary = dns_summary(&all_public(reason)).unwrap();
            assert_eq!(
                summary,
                format!(
                    "every public registry failed at dns the same way: the nameserver 10.0.0.10:53 (from /etc/resolv.conf) {tail}"
                ),
                "{reason}"
            );
            // A resolver that does not answer says nothing about public names or proxies.
            if matches!(reason, Reason::DnsTimeout | Reason::DnsError) {
                assert!(!summary.contains("proxy"), "{summary}");
            }
        }
    }

    /// At least two public hosts; a private target failing otherwise does not matter; two
    /// targets on one host count once.
    #[test]
    fn the_summary_needs_two_public_hosts_and_ignores_private_targets() {
        let mut reports = vec![
            dns_failure("gcr.io", Reason::DnsNxdomain, NS),
            dns_failure("gcr.io", Reason::DnsNxdomain, NS),
        ];
        assert_eq!(dns_summary(&reports), None, "one host is not a pattern");
        reports.push(dns_failure(
            "registry.internal:5000",
            Reason::DnsServfail,
            NS,
        ));
        reports.push(report("10.1.2.3:5000", None));
        assert_eq!(dns_summary(&reports), None);
        reports.push(dns_failure("quay.io", Reason::DnsNxdomain, NS));
        let summary = dns_summary(&reports).unwrap();
        assert!(
            summary.contains("answered NXDOMAIN for all of them (gcr.io and quay.io)"),
            "{summary}"
        );
        assert_eq!(dns_summary(&[]), None);
    }

    /// Every public registry must fail, at DNS, for its own name, the same way, from the same
    /// nameservers: otherwise the resolver is not the common cause.
    #[test]
    fn no_summary_unless_every_public_registry_fails_the_same_way() {
        let base = || all_public(Reason::DnsNxdomain);
        let mut one_ok = base();
        one_ok[2] = report("ghcr.io", None);
        assert_eq!(dns_summary(&one_ok), None, "ghcr.io resolved");

        let mut other_reason = base();
        other_reason[3] = dns_failure("quay.io", Reason::DnsServfail, NS);
        assert_eq!(dns_summary(&other_reason), None);

        let mut other_servers = base();
        other_servers[4] = dns_failure("public.ecr.aws", Reason::DnsNxdomain, "10.0.0.11:53");
        assert_eq!(dns_summary(&other_servers), None);

        let mut other_source = base();
        other_source[4].failure = other_source[4]
            .failure
            .take()
            .map(|f| f.with_resolver(resolver("public.ecr.aws", NS, NameserverSource::Config)));
        assert_eq!(dns_summary(&other_source), None);

        let mut connect = base();
        connect[5] = report(
            "mcr.microsoft.com",
            Some(Failure::new(Phase::Connect, Reason::ConnectTimeout, "m")),
        );
        assert_eq!(dns_summary(&connect), None);

        // The proxy's name failed, not the registry's: the node never asked for gcr.io.
        let mut proxy = base();
        proxy[6].failure = Some(
            Failure::new(Phase::Dns, Reason::DnsNxdomain, "on the way to the proxy …")
                .with_resolver(resolver("proxy.corp.test", NS, file())),
        );
        assert_eq!(dns_summary(&proxy), None);

        // A DNS reason without a resolver (an unusable host in a node file) is not the resolver.
        let mut unasked = base();
        unasked[0].failure = Some(Failure::new(Phase::Dns, Reason::DnsNxdomain, "m"));
        assert_eq!(dns_summary(&unasked), None);
    }

    /// The text output ends with the summary; every target's remedy names its nameserver.
    #[test]
    fn text_output_ends_with_the_summary_and_remedies_name_the_resolver() {
        let reports = all_public(Reason::DnsNxdomain);
        let text = render_text(&reports);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[lines.len() - 2], "0 of 7 targets ok");
        assert_eq!(
            Some(lines[lines.len() - 1]),
            dns_summary(&reports).as_deref()
        );
        assert!(text.contains(
            "    what to do:  gcr.io is a public registry, so the nameserver 10.0.0.10:53 (from /etc/resolv.conf) does not serve public names: "
        ), "{text}");
        assert!(!text.contains("for typos"), "{text}");
        assert_readable(&text);

        let mut mixed = reports;
        mixed[0] = report("registry-1.docker.io", None);
        let text = render_text(&mixed);
        assert!(text.ends_with("1 of 7 targets ok\n"), "{text}");
    }

    /// JSON: `summary` is the same line, or null; `remedy` is the failure's, with its resolver.
    #[test]
    fn json_carries_the_summary_and_the_resolver_remedy() {
        let reports = all_public(Reason::DnsTimeout);
        let json: serde_json::Value = serde_json::from_str(&render_json(&reports)).unwrap();
        assert_eq!(json["summary"], dns_summary(&reports).unwrap());
        assert_eq!(
            json["results"][0]["remedy"],
            "check that the nameserver of /etc/resolv.conf (10.0.0.10:53) answers from the node over UDP and TCP and is not overloaded"
        );
        let ok = [report("ghcr.io", None)];
        let json: serde_json::Value = serde_json::from_str(&render_json(&ok)).unwrap();
        assert_eq!(json["summary"], serde_json::Value::Null);
        assert_eq!(json["results"][0]["remedy"], serde_json::Value::Null);
    }
}
