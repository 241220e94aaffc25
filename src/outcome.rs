//! The closed vocabulary of a probe result: [`Phase`] and [`Reason`].
//!
//! Both sets are user-facing contracts: they become the `phase`/`reason` metric labels,
//! the JSON fields of `--check --output json`, and the words alerts match on. Variants
//! may be added, never renamed. Free text (hosts, URLs, library messages) never becomes
//! a label: it stays in [`Failure::message`] and in logs.

use std::fmt;

use serde::Serialize;

/// The steps of a probe, in the order they run. A probe stops at the first failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
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
    pub const ALL: [Phase; 5] = [
        Phase::Dns,
        Phase::Connect,
        Phase::Tls,
        Phase::Auth,
        Phase::Manifest,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
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
    pub const ALL: [Reason; 23] = [
        Reason::Ok,
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
            Reason::DnsNxdomain => {
                "check the registry host in the image name for typos; for a private registry, check that its DNS zone is served to this node's resolver (/etc/resolv.conf), or that /etc/hosts lists the name exactly as written (search domains do not apply there)"
            }
            Reason::DnsNoRecords => {
                "add an A/AAAA record for the host, or fix the CNAME chain; check split-horizon DNS views that answer this node differently"
            }
            Reason::DnsServfail => {
                "check the node's upstream resolvers (systemd-resolved, the VPC resolver, DNSSEC validation failures); query them with `dig` from the node"
            }
            Reason::DnsTimeout => {
                "check that the nameservers in /etc/resolv.conf are reachable from the node (UDP and TCP port 53) and not overloaded"
            }
            Reason::DnsError => {
                "check the nameservers of /etc/resolv.conf on the node (dns.resolv_conf) or dns.nameservers: each must run a resolver reachable on port 53"
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

/// A failed probe: where it stopped, why, and a human explanation free of secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub phase: Phase,
    pub reason: Reason,
    /// What happened, specific to this probe (hosts, status codes, tags); never a credential.
    pub message: String,
}

impl Failure {
    pub fn new(phase: Phase, reason: Reason, message: impl Into<String>) -> Self {
        Failure {
            phase,
            reason,
            message: message.into(),
        }
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

    #[test]
    fn every_failure_reason_has_a_remedy() {
        for r in Reason::ALL {
            assert_eq!(r.remedy().is_none(), r == Reason::Ok, "{r}");
            assert!(!r.meaning().is_empty());
        }
    }
}
