//! The closed vocabulary of a probe result: [`Phase`] and [`Reason`].
//!
//! Both sets are user-facing contracts: they become the `phase`/`reason` metric labels,
//! the JSON fields of `--check --output json`, and the words alerts match on. Variants
//! may be added, never renamed. Free text (hosts, URLs, library messages) never becomes
//! a label: it stays in [`Failure::message`] and in logs.
//!
//! A DNS failure also carries the [`DnsResolver`] it came from (the nameservers asked and where
//! they were configured), so that its remedy ([`Failure::remedy`]) names those nameservers and
//! their source instead of a file that may not be where they came from.

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Serialize;

/// The steps of a probe, in the order they run. A probe stops at the first failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Reading the node's container-runtime configuration for the registry (containerd's
    /// hosts.toml and the CA and client files it names, CRI-O's registries.conf and certs.d).
    /// A file the runtime cannot use fails the pull before any request, so nothing is timed.
    Node,
    /// Resolving the registry host name.
    Dns,
    /// Opening a TCP connection to a resolved address.
    Connect,
    /// The TLS handshake and certificate verification.
    Tls,
    /// From the registry's first 401 until a token (or Basic credentials) is in hand: the
    /// `WWW-Authenticate` challenge and the token request. Absent when no auth is needed.
    Auth,
    /// Resolving the reference: `HEAD /v2/<repository>/manifests/<reference>` (and, for the
    /// platform check, `GET` of the manifest or index).
    Manifest,
}

impl Phase {
    /// Every phase, in execution order.
    pub const ALL: [Phase; 6] = [
        Phase::Node,
        Phase::Dns,
        Phase::Connect,
        Phase::Tls,
        Phase::Auth,
        Phase::Manifest,
    ];

    /// The phases that talk to the network and are timed (`pullprobe_phase_duration_seconds`,
    /// the columns of the `--check` table): all but [`Phase::Node`].
    pub const TIMED: [Phase; 5] = [
        Phase::Dns,
        Phase::Connect,
        Phase::Tls,
        Phase::Auth,
        Phase::Manifest,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Node => "node",
            Phase::Dns => "dns",
            Phase::Connect => "connect",
            Phase::Tls => "tls",
            Phase::Auth => "auth",
            Phase::Manifest => "manifest",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a probe ended the way it did. `Ok` is the only success.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Ok,
    NodeConfigInvalid,
    DnsNxdomain,
    DnsNoRecords,
    DnsServfail,
    DnsTimeout,
    DnsError,
    ConnectRefused,
    ConnectTimeout,
    ConnectUnreachable,
    ConnectError,
    TlsUntrusted,
    TlsExpired,
    TlsNameMismatch,
    TlsHandshake,
    AuthRequired,
    AuthFailed,
    NameUnknown,
    ManifestUnknown,
    PlatformMissing,
    RateLimited,
    ServerError,
    ProtocolError,
    Timeout,
}

impl Reason {
    /// Every reason, so that callers can enumerate the closed set.
    pub const ALL: [Reason; 24] = [
        Reason::Ok,
        Reason::NodeConfigInvalid,
        Reason::DnsNxdomain,
        Reason::DnsNoRecords,
        Reason::DnsServfail,
        Reason::DnsTimeout,
        Reason::DnsError,
        Reason::ConnectRefused,
        Reason::ConnectTimeout,
        Reason::ConnectUnreachable,
        Reason::ConnectError,
        Reason::TlsUntrusted,
        Reason::TlsExpired,
        Reason::TlsNameMismatch,
        Reason::TlsHandshake,
        Reason::AuthRequired,
        Reason::AuthFailed,
        Reason::NameUnknown,
        Reason::ManifestUnknown,
        Reason::PlatformMissing,
        Reason::RateLimited,
        Reason::ServerError,
        Reason::ProtocolError,
        Reason::Timeout,
    ];

    /// The label value; exhaustive, so a new variant fails to compile until named here.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Ok => "ok",
            Reason::NodeConfigInvalid => "node_config_invalid",
            Reason::DnsNxdomain => "dns_nxdomain",
            Reason::DnsNoRecords => "dns_no_records",
            Reason::DnsServfail => "dns_servfail",
            Reason::DnsTimeout => "dns_timeout",
            Reason::DnsError => "dns_error",
            Reason::ConnectRefused => "connect_refused",
            Reason::ConnectTimeout => "connect_timeout",
            Reason::ConnectUnreachable => "connect_unreachable",
            Reason::ConnectError => "connect_error",
            Reason::TlsUntrusted => "tls_untrusted",
            Reason::TlsExpired => "tls_expired",
            Reason::TlsNameMismatch => "tls_name_mismatch",
            Reason::TlsHandshake => "tls_handshake",
            Reason::AuthRequired => "auth_required",
            Reason::AuthFailed => "auth_failed",
            Reason::NameUnknown => "name_unknown",
            Reason::ManifestUnknown => "manifest_unknown",
            Reason::PlatformMissing => "platform_missing",
            Reason::RateLimited => "rate_limited",
            Reason::ServerError => "server_error",
            Reason::ProtocolError => "protocol_error",
            Reason::Timeout => "timeout",
        }
    }

    /// One line saying what the reason means, for the person on the node.
    pub const fn meaning(self) -> &'static str {
        match self {
            Reason::Ok => "the image can be resolved: every step of the pull path answered",
            Reason::NodeConfigInvalid => {
                "the node's container-runtime configuration for this registry names a file the runtime cannot use (a CA or client certificate file that is missing, unreadable or not a certificate, a key that does not belong to its certificate), so the runtime fails the pull before it asks any registry"
            }
            Reason::DnsNxdomain => "the DNS server says the registry host name does not exist",
            Reason::DnsNoRecords => {
                "the host name exists but has no A or AAAA record, so there is no address to connect to"
            }
            Reason::DnsServfail => {
                "the DNS server failed or refused to answer (SERVFAIL/REFUSED), usually an upstream resolver problem"
            }
            Reason::DnsTimeout => "no DNS server answered in time",
            Reason::DnsError => {
                "the name could not be resolved (no usable resolver, or a malformed answer)"
            }
            Reason::ConnectRefused => {
                "the registry address answered the TCP connection with a reset: nothing listens on that port"
            }
            Reason::ConnectTimeout => {
                "the TCP connection got no answer in time: packets are dropped by a firewall, security group or a down host"
            }
            Reason::ConnectUnreachable => "the node has no route to the registry address",
            Reason::ConnectError => "the TCP connection failed for another reason",
            Reason::TlsUntrusted => {
                "the registry's certificate is not signed by a CA this node trusts (private CA or TLS-intercepting proxy)"
            }
            Reason::TlsExpired => "the registry's certificate is expired or not valid yet",
            Reason::TlsNameMismatch => {
                "the registry's certificate does not cover the host name the node connects to"
            }
            Reason::TlsHandshake => {
                "the TLS handshake failed (protocol or cipher mismatch, or the server broke it off)"
            }
            Reason::AuthRequired => {
                "the registry needs credentials and none are configured (or it hides whether the repository exists)"
            }
            Reason::AuthFailed => "the registry rejected the configured credentials",
            Reason::NameUnknown => "the repository does not exist on this registry",
            Reason::ManifestUnknown => {
                "the tag or digest was not found (the message says whether the repository was confirmed to exist)"
            }
            Reason::PlatformMissing => {
                "the image index has no manifest for the node's platform, so the node cannot pull it (containerd: `no match for platform in manifest`)"
            }
            Reason::RateLimited => {
                "the registry answered 429 Too Many Requests: the pull quota for this node's egress is used up"
            }
            Reason::ServerError => "the registry answered with a 5xx server error",
            Reason::ProtocolError => {
                "the registry or token server sent a response that makes no sense for the registry protocol"
            }
            Reason::Timeout => "the probe's deadline ran out during this phase",
        }
    }

    /// What to do about it, or `None` for `Ok`.
    pub const fn remedy(self) -> Option<&'static str> {
        Some(match self {
            Reason::Ok => return None,
            Reason::NodeConfigInvalid => {
                "fix the file the message names on the node, or the entry that names it (containerd: the `ca`/`client` line of /etc/containerd/certs.d/<host>/hosts.toml; CRI-O: registries.conf or /etc/containers/certs.d/<host>/); the registry and its certificate are not at fault, and pulls on this node fail until the file is fixed"
            }
            Reason::DnsNxdomain => {
                "check the host name in the message for typos; for a private registry, check that its DNS zone is served by the nameservers the message names, or that the hosts file lists the name exactly as written (search domains do not apply there)"
            }
            Reason::DnsNoRecords => {
                "add an A/AAAA record for the host, or fix the CNAME chain; check split-horizon DNS views that answer the nameservers the message names differently"
            }
            Reason::DnsServfail => {
                "query the nameservers the message names with `dig` from the node, and check their upstream resolvers (systemd-resolved, the VPC resolver, DNSSEC validation failures)"
            }
            Reason::DnsTimeout => {
                "check that the nameservers the message names are reachable from the node over UDP and TCP on their port (53 unless the message gives another) and not overloaded"
            }
            Reason::DnsError => {
                "the message says which: fix a host name that is not usable in the file that names it; otherwise each nameserver the message names must run a resolver reachable on its port (53 unless the message gives another)"
            }
            Reason::ConnectRefused => {
                "check the registry port in the image name, that the registry (or the load balancer in front of it) is running, and any proxy in between"
            }
            Reason::ConnectTimeout => {
                "check egress firewall rules, security groups, NAT gateways and proxies between the node and the registry"
            }
            Reason::ConnectUnreachable => {
                "check the node's routes and default gateway; for IPv6-only or IPv4-only nodes, check which address families the registry publishes"
            }
            Reason::ConnectError => {
                "check the node's network configuration; the message has the operating system's error"
            }
            Reason::TlsUntrusted => {
                "install the registry's CA on the node (containerd: /etc/containerd/certs.d/<host>/hosts.toml `ca`) and in pullprobe's tls.ca_file, or fix the proxy that intercepts TLS"
            }
            Reason::TlsExpired => {
                "renew the registry's certificate; if it looks valid, check the node's clock (NTP)"
            }
            Reason::TlsNameMismatch => {
                "use the host name the certificate was issued for in the image name, or reissue the certificate with this name in its subjectAltName"
            }
            Reason::TlsHandshake => {
                "check that the port speaks TLS (or set plain_http for an HTTP-only registry) and that a proxy is not breaking the handshake"
            }
            Reason::AuthRequired => {
                "create a kubernetes.io/dockerconfigjson pull secret and reference it in imagePullSecrets (and pullprobe's docker_config); on Docker Hub also check that the repository name is right"
            }
            Reason::AuthFailed => {
                "renew or fix the pull secret's username and password/token (expired robot tokens and cloud tokens are common) and check that the account may pull this repository"
            }
            Reason::NameUnknown => {
                "check the repository path in the image name (organisation, project, spelling)"
            }
            Reason::ManifestUnknown => {
                "check the tag or digest in the pod spec; the image may not have been pushed yet or may have been deleted"
            }
            Reason::PlatformMissing => {
                "build and push the image for the node's platform (e.g. `docker buildx build --platform linux/amd64,linux/arm64`), or schedule the pod on nodes of a platform the image has (nodeSelector kubernetes.io/arch)"
            }
            Reason::RateLimited => {
                "authenticate pulls (imagePullSecrets), use a pull-through cache or mirror, or wait for the quota window to reset"
            }
            Reason::ServerError => {
                "the registry is having trouble: check its status page and retry later"
            }
            Reason::ProtocolError => {
                "check that the host is really a container registry and not a captive portal or proxy error page; the message has the detail"
            }
            Reason::Timeout => {
                "the phase named was too slow: check for packet loss, a slow proxy, or an overloaded registry; raise `timeout` only if the path is just slow"
            }
        })
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Renderings of Rust values that must never reach a person (`Debug` output of errors and
/// options, the standard library's `(os error N)`, the escapes of `{:?}` on a string or char:
/// user text is shown with `config::quote` instead).
pub const LIBRARY_TEXT: [&str; 11] = [
    "{ ",
    "Some(",
    "None)",
    "Other(",
    "Os {",
    "Error {",
    "Custom {",
    "(os error",
    "\\\"",
    "\\'",
    "\\u{",
];

/// The first piece of library text in `message`, if any (see [`LIBRARY_TEXT`]).
pub fn library_text(message: &str) -> Option<&'static str> {
    LIBRARY_TEXT.iter().copied().find(|p| message.contains(p))
}

/// A failed probe: where it stopped, why, and a human explanation free of secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub phase: Phase,
    pub reason: Reason,
    /// What happened, specific to this probe (hosts, status codes, tags); never a credential.
    pub message: String,
    /// For a failure of the resolver: the name looked up and the nameservers asked. `None` for
    /// other failures, and for DNS failures that did not come from asking (an unusable host
    /// in a node file, the probe's deadline between two steps).
    pub resolver: Option<Box<DnsResolver>>,
    /// What to do, when this failure's fix is not its reason's: a failure on the way to a
    /// proxy is fixed at the proxy or in the variable that names it, not at the registry.
    /// Replaces every other remedy ([`Failure::remedy`]).
    pub fix: Option<String>,
}

impl Failure {
    pub fn new(phase: Phase, reason: Reason, message: impl Into<String>) -> Self {
        Failure {
            phase,
            reason,
            message: message.into(),
            resolver: None,
            fix: None,
        }
    }

    /// The same failure, saying which resolver gave it.
    #[must_use]
    pub fn with_resolver(mut self, resolver: Option<Box<DnsResolver>>) -> Self {
        self.resolver = resolver;
        self
    }

    /// The same failure, with its own remedy ([`Failure::fix`]).
    #[must_use]
    pub fn with_fix(mut self, fix: String) -> Self {
        self.fix = Some(fix);
        self
    }

    /// What to do about it: [`Failure::fix`] when set; for a DNS failure with its
    /// [`DnsResolver`], a remedy that names the nameservers asked and where they were
    /// configured; otherwise [`Reason::remedy`].
    pub fn remedy(&self) -> Option<Cow<'static, str>> {
        if let Some(fix) = &self.fix {
            return Some(Cow::Owned(fix.clone()));
        }
        if let Some(remedy) = self.resolver.as_ref().and_then(|r| r.remedy(self.reason)) {
            return Some(Cow::Owned(remedy));
        }
        self.reason.remedy().map(Cow::Borrowed)
    }
}

/// The registry API hosts of the embedded default config (`src/default-config.yaml`): the
/// public registries most clusters pull from. Every one of them failing at DNS the same way
/// says something about the node's resolver rather than about a registry.
pub const PUBLIC_REGISTRY_HOSTS: [&str; 7] = [
    "registry-1.docker.io",
    "registry.k8s.io",
    "ghcr.io",
    "quay.io",
    "public.ecr.aws",
    "mcr.microsoft.com",
    "gcr.io",
];

/// Whether `host` (no port; a trailing dot and letter case do not matter) is one of
/// [`PUBLIC_REGISTRY_HOSTS`].
pub fn is_public_registry(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    PUBLIC_REGISTRY_HOSTS
        .iter()
        .any(|h| h.eq_ignore_ascii_case(host))
}

/// Where the nameservers of a lookup came from, as Go's `dnsReadConfig` and pullprobe's
/// `dns.nameservers` decide.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NameserverSource {
    /// `dns.nameservers` in pullprobe's config (it replaces the resolv.conf's servers).
    Config,
    /// The `nameserver` lines of this resolv.conf (`dns.resolv_conf`).
    ResolvConf(PathBuf),
    /// Go's defaults, `127.0.0.1:53` and `[::1]:53`, because this resolv.conf lists no
    /// nameserver or cannot be read.
    Defaults(PathBuf),
}

/// The resolver a DNS failure came from: what was looked up and whom it asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsResolver {
    /// The name looked up, as written (before any search domain), without a port.
    pub host: String,
    /// The nameservers, in the order they are asked.
    pub nameservers: Vec<SocketAddr>,
    pub source: NameserverSource,
    /// The hosts file read before DNS (`dns.hosts_file`).
    pub hosts_file: PathBuf,
}

impl DnsResolver {
    /// The nameservers, comma-separated: `10.0.0.10:53, 10.0.0.11:53`.
    pub fn nameserver_list(&self) -> String {
        self.nameservers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// "the nameservers 10.0.0.10:53 (from /etc/resolv.conf)".
    pub fn describe(&self) -> String {
        let list = self.nameserver_list();
        let noun = if self.nameservers.len() == 1 {
            "the nameserver"
        } else {
            "the nameservers"
        };
        match &self.source {
            NameserverSource::Config => format!("{noun} {list} (from dns.nameservers)"),
            NameserverSource::ResolvConf(path) => {
                format!("{noun} {list} (from {})", path.display())
            }
            NameserverSource::Defaults(path) => format!(
                "{noun} {list} (Go's defaults, as {} gives none)",
                path.display()
            ),
        }
    }

    /// `dig @10.0.0.10 gcr.io` (with `-p` for a port other than 53), for the first nameserver.
    fn dig(&self) -> String {
        match self.nameservers.first() {
            Some(ns) if ns.port() == 53 => format!("`dig @{} {}`", ns.ip(), self.host),
            Some(ns) => format!("`dig @{} -p {} {}`", ns.ip(), ns.port(), self.host),
            None => format!("`dig {}`", self.host),
        }
    }

    /// The remedy for a DNS `reason` this resolver gave, naming its nameservers and their
    /// source; `None` for other reasons.
    fn remedy(&self, reason: Reason) -> Option<String> {
        let host = &self.host;
        let asked = self.describe();
        let list = self.nameserver_list();
        let one = self.nameservers.len() == 1;
        let (does, answers, them, their) = if one {
            ("does", "answers", "it", "its")
        } else {
            ("do", "answer", "them", "their")
        };
        let unreachable = |what: &str| match &self.source {
            NameserverSource::Config => format!(
                "check that {list} (set in dns.nameservers of pullprobe's config) {what}; dns.nameservers replaces the node's own nameservers for pullprobe, so also check that it lists the ones the node's container runtime uses"
            ),
            NameserverSource::ResolvConf(path) => format!(
                "check that the {} of {} ({list}) {what}",
                if one { "nameserver" } else { "nameservers" },
                path.display()
            ),
            NameserverSource::Defaults(path) => format!(
                "{} gives no nameserver, so Go's defaults {list} were asked: give it the node's nameserver lines (in a pod, point dns.resolv_conf at the node's resolv.conf, mounted), or set dns.nameservers",
                path.display()
            ),
        };
        Some(match reason {
            Reason::DnsNxdomain if is_public_registry(host) => format!(
                "{host} is a public registry, so {asked} {does} not serve public names: on a proxy-only network, set HTTPS_PROXY for the node's container runtime (through a proxy the node does not resolve registry names itself); on an air-gapped one, pull from a mirror inside the network; otherwise point the node at a resolver that forwards public names"
            ),
            Reason::DnsNxdomain => format!(
                "check {host} for typos; if it is a private name, check that its DNS zone is served by {asked}, or list the name in {} exactly as written (search domains do not apply there)",
                self.hosts_file.display()
            ),
            Reason::DnsNoRecords => format!(
                "add an A or AAAA record for {host} (or fix its CNAME chain) in the zone {asked} {answers} from; check split-horizon views that answer {them} differently than other clients"
            ),
            Reason::DnsServfail => format!(
                "query {asked} from the node ({}) and check {their} upstream resolvers (forwarders, DNSSEC validation)",
                self.dig()
            ),
            Reason::DnsTimeout if one => {
                unreachable("answers from the node over UDP and TCP and is not overloaded")
            }
            Reason::DnsTimeout => {
                unreachable("answer from the node over UDP and TCP and are not overloaded")
            }
            Reason::DnsError if one => {
                unreachable("runs a resolver reachable from the node over UDP and TCP")
            }
            Reason::DnsError => {
                unreachable("each run a resolver reachable from the node over UDP and TCP")
            }
            _ => return None,
        })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed ({}): {}",
            self.phase, self.reason, self.message
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_strings_are_the_contract() {
        let strings: Vec<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            strings,
            [
                "ok",
                "node_config_invalid",
                "dns_nxdomain",
                "dns_no_records",
                "dns_servfail",
                "dns_timeout",
                "dns_error",
                "connect_refused",
                "connect_timeout",
                "connect_unreachable",
                "connect_error",
                "tls_untrusted",
                "tls_expired",
                "tls_name_mismatch",
                "tls_handshake",
                "auth_required",
                "auth_failed",
                "name_unknown",
                "manifest_unknown",
                "platform_missing",
                "rate_limited",
                "server_error",
                "protocol_error",
                "timeout",
            ]
        );
    }

    #[test]
    fn serde_names_match_label_values() {
        for r in Reason::ALL {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        for p in Phase::ALL {
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
    }

    const DNS_REASONS: [Reason; 5] = [
        Reason::DnsNxdomain,
        Reason::DnsNoRecords,
        Reason::DnsServfail,
        Reason::DnsTimeout,
        Reason::DnsError,
    ];

    fn resolver(host: &str, servers: &[&str], source: NameserverSource) -> Box<DnsResolver> {
        Box::new(DnsResolver {
            host: host.to_owned(),
            nameservers: servers.iter().map(|s| s.parse().unwrap()).collect(),
            source,
            hosts_file: PathBuf::from("/node/hosts"),
        })
    }

    fn remedy(reason: Reason, resolver: Box<DnsResolver>) -> String {
        Failure::new(Phase::Dns, reason, "m")
            .with_resolver(Some(resolver))
            .remedy()
            .unwrap()
            .into_owned()
    }

    /// Library renderings a person cannot act on (`Some(…)`, `Kind(NotFound)`, `Os { … }`).
    fn assert_readable(text: &str) {
        for debug in ["{ ", "Some(", "None", "Other(", "Kind(", "Os {", "\"\""] {
            assert!(!text.contains(debug), "{debug:?} in {text}");
        }
    }

    /// Without a resolver (a DNS failure that did not come from asking), a remedy names no
    /// file: the nameservers may come from dns.nameservers, and the files from dns.*.
    #[test]
    fn generic_dns_remedies_name_no_file() {
        for r in DNS_REASONS {
            let text = Failure::new(Phase::Dns, r, "m").remedy().unwrap();
            assert_eq!(text, r.remedy().unwrap());
            for file in ["/etc/resolv.conf", "/etc/hosts"] {
                assert!(!text.contains(file), "{r}: {text}");
            }
        }
    }

    /// With `dns.nameservers` set, the remedy names those nameservers and that key, never
    /// /etc/resolv.conf.
    #[test]
    fn remedies_name_the_configured_nameservers() {
        let config = || {
            resolver(
                "registry.internal",
                &["10.0.0.10:53", "127.0.0.1:5353"],
                NameserverSource::Config,
            )
        };
        assert_eq!(
            remedy(Reason::DnsTimeout, config()),
            "check that 10.0.0.10:53, 127.0.0.1:5353 (set in dns.nameservers of pullprobe's config) answer from the node over UDP and TCP and are not overloaded; dns.nameservers replaces the node's own nameservers for pullprobe, so also check that it lists the ones the node's container runtime uses"
        );
        assert_eq!(
            remedy(
                Reason::DnsError,
                resolver(
                    "registry.internal",
                    &["10.0.0.10:53"],
                    NameserverSource::Config
                )
            ),
            "check that 10.0.0.10:53 (set in dns.nameservers of pullprobe's config) runs a resolver reachable from the node over UDP and TCP; dns.nameservers replaces the node's own nameservers for pullprobe, so also check that it lists the ones the node's container runtime uses"
        );
        assert_eq!(
            remedy(Reason::DnsNxdomain, config()),
            "check registry.internal for typos; if it is a private name, check that its DNS zone is served by the nameservers 10.0.0.10:53, 127.0.0.1:5353 (from dns.nameservers), or list the name in /node/hosts exactly as written (search domains do not apply there)"
        );
        assert_eq!(
            remedy(Reason::DnsNoRecords, config()),
            "add an A or AAAA record for registry.internal (or fix its CNAME chain) in the zone the nameservers 10.0.0.10:53, 127.0.0.1:5353 (from dns.nameservers) answer from; check split-horizon views that answer them differently than other clients"
        );
        assert_eq!(
            remedy(Reason::DnsServfail, config()),
            "query the nameservers 10.0.0.10:53, 127.0.0.1:5353 (from dns.nameservers) from the node (`dig @10.0.0.10 registry.internal`) and check their upstream resolvers (forwarders, DNSSEC validation)"
        );
        for r in DNS_REASONS {
            let text = remedy(r, config());
            assert!(
                !text.contains("resolv.conf") && !text.contains("/etc/"),
                "{r}: {text}"
            );
            assert_readable(&text);
        }
    }

    /// Nameservers from a resolv.conf: the remedy names that file (whatever its path).
    #[test]
    fn remedies_name_the_resolv_conf_the_nameservers_came_from() {
        let file = || NameserverSource::ResolvConf(PathBuf::from("/host/etc/resolv.conf"));
        assert_eq!(
            remedy(
                Reason::DnsTimeout,
                resolver("registry.internal", &["10.0.0.10:53"], file())
            ),
            "check that the nameserver of /host/etc/resolv.conf (10.0.0.10:53) answers from the node over UDP and TCP and is not overloaded"
        );
        assert_eq!(
            remedy(
                Reason::DnsError,
                resolver(
                    "registry.internal",
                    &["10.0.0.10:53", "10.0.0.11:53"],
                    file()
                )
            ),
            "check that the nameservers of /host/etc/resolv.conf (10.0.0.10:53, 10.0.0.11:53) each run a resolver reachable from the node over UDP and TCP"
        );
        assert_eq!(
            remedy(
                Reason::DnsServfail,
                resolver("registry.internal", &["127.0.0.1:5353"], file())
            ),
            "query the nameserver 127.0.0.1:5353 (from /host/etc/resolv.conf) from the node (`dig @127.0.0.1 -p 5353 registry.internal`) and check its upstream resolvers (forwarders, DNSSEC validation)"
        );
        // Go's defaults: the fix is the file (or dns.nameservers), not the loopback servers.
        let defaults = resolver(
            "registry.internal",
            &["127.0.0.1:53", "[::1]:53"],
            NameserverSource::Defaults(PathBuf::from("/host/etc/resolv.conf")),
        );
        assert_eq!(
            remedy(Reason::DnsTimeout, defaults.clone()),
            "/host/etc/resolv.conf gives no nameserver, so Go's defaults 127.0.0.1:53, [::1]:53 were asked: give it the node's nameserver lines (in a pod, point dns.resolv_conf at the node's resolv.conf, mounted), or set dns.nameservers"
        );
        assert_eq!(
            defaults.describe(),
            "the nameservers 127.0.0.1:53, [::1]:53 (Go's defaults, as /host/etc/resolv.conf gives none)"
        );
    }

    /// NXDOMAIN for a public registry is not a typo: the resolver does not serve public names.
    #[test]
    fn nxdomain_for_a_public_registry_points_at_the_resolver() {
        let text = remedy(
            Reason::DnsNxdomain,
            resolver(
                "gcr.io",
                &["10.0.0.10:53"],
                NameserverSource::ResolvConf(PathBuf::from("/etc/resolv.conf")),
            ),
        );
        assert_eq!(
            text,
            "gcr.io is a public registry, so the nameserver 10.0.0.10:53 (from /etc/resolv.conf) does not serve public names: on a proxy-only network, set HTTPS_PROXY for the node's container runtime (through a proxy the node does not resolve registry names itself); on an air-gapped one, pull from a mirror inside the network; otherwise point the node at a resolver that forwards public names"
        );
        assert!(!text.contains("typo"));
    }

    /// The public registries are the embedded default config's, so the two cannot drift.
    #[test]
    fn public_registry_hosts_are_the_embedded_defaults() {
        let config = crate::config::Config::embedded_default();
        let hosts: Vec<&str> = config.targets.iter().map(|t| t.image.api_host()).collect();
        assert_eq!(hosts, PUBLIC_REGISTRY_HOSTS);
        assert!(is_public_registry("GCR.io."));
        assert!(
            !is_public_registry("docker.io"),
            "never looked up: Hub's API host is registry-1"
        );
        assert!(!is_public_registry("gcr.io.corp.test"));
    }

    #[test]
    fn every_failure_reason_has_a_remedy() {
        for r in Reason::ALL {
            assert_eq!(r.remedy().is_none(), r == Reason::Ok, "{r}");
            assert!(!r.meaning().is_empty());
        }
    }
}

#[cfg(test)]
mod library_text_tests {
    use super::*;

    #[test]
    fn library_renderings_are_recognised_and_os_errors_lose_their_number() {
        for leak in [
            "Os { code: 2, kind: NotFound }",
            "budget breached: Nodes { nodes: 250001 }",
            "Some(\"x\")",
            "Other(Custom)",
            "Connection refused (os error 111)",
            "invalid image reference \"a\\\"b\"",
            "the character '\\''",
            "\"x\\u{1b}\"",
        ] {
            assert!(library_text(leak).is_some(), "{leak}");
        }
        assert_eq!(library_text("127.0.0.1:1: Connection refused"), None);
        let e = std::io::Error::from_raw_os_error(111);
        assert_eq!(crate::probe::os_text(&e), "Connection refused");
        assert_eq!(
            crate::probe::os_text(&"connection error: Connection reset by peer (os error 104)"),
            "connection error: Connection reset by peer"
        );
    }
}
