//! The `dns` phase: resolve the registry host with the node's resolver configuration.
//!
//! hickory-resolver reads `/etc/resolv.conf` (nameservers, search, ndots, timeout, attempts)
//! or uses `dns.nameservers`. Its cache is off, so every probe really asks. A and AAAA are
//! queried in parallel and told apart: NXDOMAIN, no records, SERVFAIL/REFUSED, no answer.

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;

use super::StepError;
use crate::config::DnsSettings;
use crate::outcome::Reason;

/// A resolver, or why none could be built (reported by every probe as `dns_error`).
pub(crate) struct Dns {
    resolver: Result<TokioResolver, String>,
}

impl Dns {
    pub(crate) fn new(settings: &DnsSettings) -> Self {
        let built = match settings {
            DnsSettings::System => hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| format!("cannot use /etc/resolv.conf: {e}")),
            DnsSettings::Nameservers(addrs) => Ok((custom_config(addrs), ResolverOpts::default())),
        };
        let resolver = built.and_then(|(config, mut opts)| {
            opts.cache_size = 0;
            // Answers from 127.0.0.0/8 and private ranges are legitimate for registries.
            opts.deny_answers.clear();
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
                .with_options(opts)
                .build()
                .map_err(|e| format!("cannot build a resolver: {e}"))
        });
        Dns { resolver }
    }

    /// Resolves `host` to its addresses (IPv4 and IPv6, in the order the server gave them).
    pub(crate) async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, StepError> {
        let resolver = self
            .resolver
            .as_ref()
            .map_err(|e| StepError::new(Reason::DnsError, e.clone()))?;
        let (v4, v6) = tokio::join!(resolver.ipv4_lookup(host), resolver.ipv6_lookup(host));
        let mut addrs: Vec<IpAddr> = Vec::new();
        if let Ok(l) = &v4 {
            addrs.extend(l.answers().iter().filter_map(|r| r.data.ip_addr()));
        }
        if let Ok(l) = &v6 {
            addrs.extend(l.answers().iter().filter_map(|r| r.data.ip_addr()));
        }
        if !addrs.is_empty() {
            return Ok(addrs);
        }
        let errors: Vec<NetError> = [v4.err(), v6.err()].into_iter().flatten().collect();
        Err(classify(host, &errors))
    }
}

fn custom_config(addrs: &[SocketAddr]) -> ResolverConfig {
    let servers = addrs
        .iter()
        .map(|a| {
            let mut ns = NameServerConfig::udp_and_tcp(a.ip());
            for c in &mut ns.connections {
                c.port = a.port();
            }
            ns
        })
        .collect();
    ResolverConfig::from_parts(None, Vec::new(), servers)
}

/// Picks the most telling reason from the A and AAAA errors.
fn classify(host: &str, errors: &[NetError]) -> StepError {
    let any = |f: &dyn Fn(&NetError) -> bool| errors.iter().any(f);
    if any(&|e| e.is_nx_domain()) {
        return StepError::new(
            Reason::DnsNxdomain,
            format!("{host}: the name does not exist (NXDOMAIN)"),
        );
    }
    if let Some(code) = errors.iter().find_map(|e| match e {
        NetError::Dns(DnsError::ResponseCode(c))
            if matches!(c, ResponseCode::ServFail | ResponseCode::Refused) =>
        {
            Some(*c)
        }
        _ => None,
    }) {
        return StepError::new(
            Reason::DnsServfail,
            format!("{host}: the DNS server answered {code}"),
        );
    }
    if !errors.is_empty() && errors.iter().all(|e| e.is_no_records_found()) {
        return StepError::new(
            Reason::DnsNoRecords,
            format!("{host}: no A or AAAA records"),
        );
    }
    if any(&|e| matches!(e, NetError::Timeout)) {
        return StepError::new(
            Reason::DnsTimeout,
            format!("{host}: no DNS server answered in time"),
        );
    }
    let detail = errors
        .first()
        .map_or_else(|| "no answer".to_owned(), ToString::to_string);
    StepError::new(Reason::DnsError, format!("{host}: {detail}"))
}
