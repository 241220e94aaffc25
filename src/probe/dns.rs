//! The `dns` phase: resolve the registry host the way the node's pull would.
//!
//! The pull is containerd's, a Go program; on Linux with cgo off its `net.Dialer` resolves with
//! Go's own resolver (`net/dnsclient_unix.go`). This module mirrors it, function by function:
//!
//! | Go, package `net` | here |
//! |---|---|
//! | `goLookupIPCNAME` with `hostLookupFilesDNS` (`conf.go` `lookupOrder`) | [`Dns::resolve`] |
//! | `readHosts`, `lookupStaticHost`, `absDomainName` (`hosts.go`, `dnsclient.go`) | [`HostsFile`] |
//! | `dnsReadConfig`, `dnsDefaultSearch` (`dnsconfig_unix.go`) | [`ResolvConf::parse`] |
//! | `dnsConfig.nameList`, `avoidDNS`, `isDomainName` | [`ResolvConf::name_list`], [`is_domain_name`] |
//! | `tryOneName`, `exchange`, `checkHeader`, `skipToAnswer` | [`Dns::try_one_name`], [`exchange`], [`check_answer`] |
//!
//! So: the hosts file first, for the name as written; if it lists the name, its addresses are the
//! whole answer. Otherwise DNS: the candidate names from `ndots` and `search`, A and AAAA for each
//! (in parallel, or one after the other with `options single-request`), the first candidate with
//! an address wins. For each question the nameservers are asked one after the other in file order
//! (`attempts` rounds, `rotate` honoured); NXDOMAIN or an answer without records ends the question,
//! anything else (SERVFAIL, REFUSED, a lame referral, no answer within `timeout`, a network error)
//! moves on to the next server. When every candidate fails, the error reported is Go's: the one
//! for the name as written if it was asked, else the first one seen.
//!
//! hickory-proto builds and parses the messages; hickory's `Resolver` is not used for the lookup:
//! its name-server pool orders servers by measured latency, asks two at once and stops at SERVFAIL,
//! and it applies the hosts file and search domains its own way.
//!
//! Where pullprobe knowingly differs (it explains more): NXDOMAIN and "no records" are told apart
//! (Go reports both as "no such host"), and messages name every candidate and server asked, and
//! where the servers came from (`dns.nameservers`, the resolv.conf, or Go's defaults); every
//! failure carries them as a [`DnsResolver`] for its remedy and the `--check` summary. When the
//! probe's deadline comes during the lookup, the `dns_timeout` says what was asked by then. Not
//! mirrored: `/etc/nsswitch.conf` (the order is always `files,dns`, which Go also uses without
//! that file, or for `hosts: files dns` and its common variants); IPv6 zones of hosts-file
//! addresses; the AD bit of `options trust-ad`; re-reading files only when they change (both
//! files are read at every resolution, which is never staler than Go's 5 s cache).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hickory_resolver::proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_resolver::proto::rr::{DNSClass, Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

use super::StepError;
use crate::config::DnsSettings;
use crate::outcome::{DnsResolver, NameserverSource, Reason};

/// Go's `defaultNS`: asked when resolv.conf names no nameserver or cannot be read.
const DEFAULT_NS: [SocketAddr; 2] = [
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53),
    SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 53),
];

/// Go's `maxDNSPacketSize`: the EDNS(0) payload size it advertises and its UDP read buffer.
const MAX_DNS_PACKET: u16 = 1232;

/// Where Go's `os.Hostname` ends up on Linux; its domain is the default search list.
const HOSTNAME_FILE: &str = "/proc/sys/kernel/hostname";

/// The resolver: the settings' files are read at every resolution.
pub(crate) struct Dns {
    settings: DnsSettings,
    /// Go's `dnsConfig.soffset`: where the next question starts under `options rotate`.
    rotate: AtomicU32,
}

impl Dns {
    pub(crate) fn new(settings: &DnsSettings) -> Self {
        Dns {
            settings: settings.clone(),
            rotate: AtomicU32::new(0),
        }
    }

    /// Resolves `host` as Go's `goLookupIPCNAME` does with the `files,dns` order. The addresses
    /// come in the order of the hosts file or of the answers (Go then sorts them by RFC 6724,
    /// as the connect phase does). When `deadline` (the probe's) comes first, the failure says
    /// what had been asked and answered by then. Every failure carries its [`DnsResolver`].
    pub(crate) async fn resolve(
        &self,
        host: &str,
        deadline: Instant,
    ) -> Result<Vec<IpAddr>, StepError> {
        let hosts = HostsFile::read(&self.settings.hosts_file).await;
        let listed = hosts.lookup(host);
        if !listed.is_empty() {
            // Go: "Use entries from /etc/hosts if they match", and return them alone.
            return Ok(listed);
        }
        let (conf, servers_from) = self.resolv_conf().await;
        let context = Context {
            host,
            settings: &self.settings,
            conf: &conf,
            servers_from: &servers_from,
            hosts: &hosts,
        };
        let error = if is_domain_name(host) {
            let progress = Mutex::new(Progress::default());
            let started = Instant::now();
            match tokio::time::timeout_at(deadline, self.ask(&conf, host, &progress)).await {
                Ok(Ok(addrs)) => return Ok(addrs),
                Ok(Err(reported)) => {
                    let progress = progress
                        .into_inner()
                        .unwrap_or_else(PoisonError::into_inner);
                    context.failure(reported, &progress.tried)
                }
                Err(_) => {
                    let progress = progress
                        .into_inner()
                        .unwrap_or_else(PoisonError::into_inner);
                    context.deadline(&progress, started.elapsed())
                }
            }
        } else {
            // Go answers "no such host" without asking anyone, "for consistency with libc".
            StepError::new(
                Reason::DnsNxdomain,
                format!(
                    "{host}: not a valid DNS name, so the resolver reports that it does not exist without asking a server (it would ask {}); {}",
                    context.servers_note(),
                    context.hosts_note()
                ),
            )
        };
        Err(StepError {
            resolver: Some(Box::new(context.resolver())),
            ..error
        })
    }

    /// The DNS part of `goLookupIPCNAME`: the candidate names in order, A and AAAA for each,
    /// the first with an address wins. On failure, Go's error: the one for the name as
    /// written if it was asked, else the first; `progress` has every candidate tried.
    async fn ask(
        &self,
        conf: &ResolvConf,
        host: &str,
        progress: &Mutex<Progress>,
    ) -> Result<Vec<IpAddr>, Option<(String, QueryError)>> {
        let names = conf.name_list(host);
        let original = format!("{host}.");
        let mut reported: Option<(String, QueryError)> = None;
        for fqdn in &names {
            lock(progress).current = Some((fqdn.clone(), Vec::new()));
            let mut addrs = Vec::new();
            let mut first_fail = None;
            for result in self.ask_a_and_aaaa(conf, fqdn, progress).await {
                match result {
                    Ok(found) => addrs.extend(found),
                    Err(e) => {
                        first_fail.get_or_insert_with(|| e.fail.clone());
                        // Go: keep the first error, but "prefer error for original name".
                        if reported.is_none() || *fqdn == original {
                            reported = Some((fqdn.clone(), e));
                        }
                    }
                }
            }
            if !addrs.is_empty() {
                return Ok(addrs);
            }
            let mut p = lock(progress);
            p.current = None;
            p.tried.push((fqdn.clone(), first_fail));
        }
        Err(reported)
    }

    /// What the messages of a probe cut short before asking say about the nameservers: those
    /// of `dns.nameservers`, or the resolv.conf they are read from (not read here).
    pub(crate) fn configured(&self) -> String {
        match &self.settings.nameservers {
            Some(servers) => format!(
                "nameservers {} from dns.nameservers",
                servers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => format!("the nameservers of {}", self.settings.resolv_conf.display()),
        }
    }

    /// Reads resolv.conf as Go's `dnsReadConfig` does; `dns.nameservers` replaces its servers.
    async fn resolv_conf(&self) -> (ResolvConf, ServersFrom) {
        let hostname = tokio::fs::read_to_string(HOSTNAME_FILE).await.ok();
        let hostname = hostname.as_deref().map(str::trim);
        let (mut conf, mut from) = match tokio::fs::read(&self.settings.resolv_conf).await {
            Ok(bytes) => {
                let conf = ResolvConf::parse(&String::from_utf8_lossy(&bytes), hostname);
                let from = if conf.servers_listed {
                    ServersFrom::File
                } else {
                    ServersFrom::NoneListed
                };
                (conf, from)
            }
            Err(e) => (
                ResolvConf::parse("", hostname),
                ServersFrom::Unreadable(e.kind()),
            ),
        };
        if let Some(servers) = &self.settings.nameservers {
            conf.servers.clone_from(servers);
            from = ServersFrom::Config;
        }
        (conf, from)
    }

    /// The A and AAAA questions for one candidate, answers in the order Go reads them: as they
    /// arrive when asked in parallel, A then AAAA under `single-request`.
    async fn ask_a_and_aaaa(
        &self,
        conf: &ResolvConf,
        fqdn: &str,
        progress: &Mutex<Progress>,
    ) -> [Result<Vec<IpAddr>, QueryError>; 2] {
        if conf.single_request {
            let a = self.try_one_name(conf, fqdn, RecordType::A, progress).await;
            let aaaa = self
                .try_one_name(conf, fqdn, RecordType::AAAA, progress)
                .await;
            return [a, aaaa];
        }
        let a = self.try_one_name(conf, fqdn, RecordType::A, progress);
        let aaaa = self.try_one_name(conf, fqdn, RecordType::AAAA, progress);
        tokio::pin!(a, aaaa);
        tokio::select! {
            biased;
            first = &mut a => [first, aaaa.await],
            first = &mut aaaa => [first, a.await],
        }
    }

    /// One question, as Go's `tryOneName`: `attempts` rounds over the servers in order; an
    /// NXDOMAIN or an answer without records ends it ("trying another server won't help").
    async fn try_one_name(
        &self,
        conf: &ResolvConf,
        fqdn: &str,
        qtype: RecordType,
        progress: &Mutex<Progress>,
    ) -> Result<Vec<IpAddr>, QueryError> {
        let Ok(name) = Name::from_ascii(fqdn) else {
            return Err(QueryError {
                fail: Fail::BadName,
                outcomes: Vec::new(),
            });
        };
        let servers = &conf.servers;
        let offset = if conf.rotate {
            self.rotate.fetch_add(1, Ordering::Relaxed) as usize
        } else {
            0
        };
        let mut outcomes = Vec::new();
        for _ in 0..conf.attempts {
            for j in 0..servers.len() {
                let server = servers[(offset + j) % servers.len()];
                let fail = match exchange(server, &name, qtype, conf.timeout, conf.use_tcp).await {
                    Ok(msg) => match check_answer(&msg, qtype) {
                        Ok(addrs) => return Ok(addrs),
                        Err(f) => f,
                    },
                    Err(f) => f,
                };
                let ends = matches!(fail, Fail::NxDomain | Fail::NoData);
                if let Some((_, answers)) = &mut lock(progress).current {
                    answers.push((server, fail.clone()));
                }
                outcomes.push((server, fail.clone()));
                if ends {
                    return Err(QueryError { fail, outcomes });
                }
            }
        }
        let fail = outcomes
            .last()
            .map_or(Fail::BadName, |(_, fail)| fail.clone());
        Err(QueryError { fail, outcomes })
    }
}

/// How far a resolution got, kept outside the lookup so that it survives the probe's deadline.
#[derive(Default)]
struct Progress {
    /// The candidates that gave no address, with the first failure of each.
    tried: Vec<(String, Option<Fail>)>,
    /// The candidate being asked, and what each server said about it so far (A and AAAA).
    current: Option<(String, Vec<(SocketAddr, Fail)>)>,
}

/// Locks `progress`, which is never held across an `await`.
fn lock(progress: &Mutex<Progress>) -> MutexGuard<'_, Progress> {
    progress.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where the servers asked came from, for messages.
enum ServersFrom {
    File,
    Config,
    NoneListed,
    Unreadable(io::ErrorKind),
}

/// Why one question to one server gave no address. `Clone` for the message only.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Fail {
    /// RCODE NXDOMAIN (Go: `errNoSuchHost` from `checkHeader`).
    NxDomain,
    /// NOERROR without a record of the type asked (Go: `errNoSuchHost` from `skipToAnswer`).
    NoData,
    /// Another RCODE: SERVFAIL, REFUSED… (Go: `errServerMisbehaving`).
    Rcode(ResponseCode),
    /// NOERROR, empty, neither authoritative nor recursive (Go: `errLameReferral`).
    LameReferral,
    /// No answer within resolv.conf's `timeout`.
    Timeout(Duration),
    /// The socket failed (Go: an `OpError`).
    Network(io::ErrorKind),
    /// An answer over TCP that does not parse or answers another question.
    Malformed,
    /// The name does not fit in a query (Go: `errCannotMarshalDNSMessage`).
    BadName,
}

impl Fail {
    fn reason(&self) -> Reason {
        match self {
            Fail::NxDomain | Fail::BadName => Reason::DnsNxdomain,
            Fail::NoData => Reason::DnsNoRecords,
            Fail::Rcode(_) | Fail::LameReferral => Reason::DnsServfail,
            Fail::Timeout(_) => Reason::DnsTimeout,
            Fail::Network(_) | Fail::Malformed => Reason::DnsError,
        }
    }

    /// The headline of a failed resolution.
    fn headline(&self) -> String {
        match self {
            Fail::NxDomain => "the name does not exist".to_owned(),
            Fail::NoData => "the name has no A or AAAA records".to_owned(),
            Fail::Rcode(code) => format!("the DNS server answered {}", rcode_name(*code)),
            Fail::LameReferral => "the DNS server is not a recursive resolver".to_owned(),
            Fail::Timeout(_) => "no DNS server answered in time".to_owned(),
            Fail::Network(_) => "no DNS server could be reached".to_owned(),
            Fail::Malformed => "the DNS server sent a malformed answer".to_owned(),
            Fail::BadName => "the name is too long for a DNS query".to_owned(),
        }
    }

    /// What happened, to be followed by the server(s).
    fn short(&self) -> String {
        match self {
            Fail::NxDomain => "NXDOMAIN from".to_owned(),
            Fail::NoData => "NOERROR without addresses from".to_owned(),
            Fail::Rcode(code) => format!("{} from", rcode_name(*code)),
            Fail::LameReferral => {
                "an empty answer without recursion available (lame referral) from".to_owned()
            }
            Fail::Timeout(t) => format!("no answer within {} from", humantime::format_duration(*t)),
            Fail::Network(kind) => format!("{} at", network_sentence(*kind)),
            Fail::Malformed => "a malformed answer from".to_owned(),
            Fail::BadName => "not asked".to_owned(),
        }
    }

    /// The short form for the "also tried" list.
    fn brief(&self) -> String {
        let s = self.short();
        s.trim_end_matches(" from")
            .trim_end_matches(" at")
            .to_owned()
    }
}

fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::ServFail => "SERVFAIL".to_owned(),
        ResponseCode::Refused => "REFUSED".to_owned(),
        ResponseCode::FormErr => "FORMERR".to_owned(),
        ResponseCode::NotImp => "NOTIMP".to_owned(),
        other => format!("response code {}", u16::from(other)),
    }
}

fn network_sentence(kind: io::ErrorKind) -> &'static str {
    match kind {
        io::ErrorKind::ConnectionRefused => "connection refused",
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => "connection reset",
        io::ErrorKind::UnexpectedEof => "connection closed before the answer",
        io::ErrorKind::NetworkUnreachable => "network unreachable",
        io::ErrorKind::HostUnreachable => "host unreachable",
        io::ErrorKind::AddrNotAvailable => "no local address for this address family",
        io::ErrorKind::PermissionDenied => "permission denied",
        _ => "a network error",
    }
}

fn file_sentence(kind: io::ErrorKind) -> &'static str {
    match kind {
        io::ErrorKind::NotFound => "does not exist",
        io::ErrorKind::PermissionDenied => "cannot be read (permission denied)",
        io::ErrorKind::IsADirectory => "is a directory",
        _ => "cannot be read",
    }
}

/// One failed question: Go's error (the last server's, or the one that ended it) and every
/// server's outcome in the order asked.
struct QueryError {
    fail: Fail,
    outcomes: Vec<(SocketAddr, Fail)>,
}

/// What a failure message is made of.
struct Context<'a> {
    host: &'a str,
    settings: &'a DnsSettings,
    conf: &'a ResolvConf,
    servers_from: &'a ServersFrom,
    hosts: &'a HostsFile,
}

impl Context<'_> {
    fn failure(
        &self,
        reported: Option<(String, QueryError)>,
        tried: &[(String, Option<Fail>)],
    ) -> StepError {
        let host = self.host;
        let Some((fqdn, error)) = reported else {
            // Only `.onion` names (RFC 7686) and over-long names leave nothing to ask.
            return StepError::new(
                Reason::DnsNxdomain,
                format!(
                    "{host}: the resolver does not ask DNS for this name (.onion, or too long; it would ask {}); {}",
                    self.servers_note(),
                    self.hosts_note()
                ),
            );
        };
        let mut message = format!("{host}: {} (", error.fail.headline());
        if display_name(&fqdn) != display_name(host) {
            message += &format!("for {}: ", display_name(&fqdn));
        }
        message += &outcomes_detail(&error.outcomes).unwrap_or_else(|| error.fail.short());
        message.push(')');
        message += &self.also_tried(tried, &fqdn);
        message += &format!("; {}; {}", self.servers_note(), self.hosts_note());
        StepError::new(error.fail.reason(), message)
    }

    /// The probe's deadline came while `progress.current` was being asked.
    fn deadline(&self, progress: &Progress, elapsed: Duration) -> StepError {
        let host = self.host;
        let mut message = format!(
            "{host}: no DNS answer before the probe's deadline ({:.1}s spent in DNS",
            elapsed.as_secs_f64()
        );
        let mut current = "";
        if let Some((fqdn, answers)) = &progress.current {
            current = fqdn;
            if display_name(fqdn) != display_name(host) {
                message += &format!(", asking for {}", display_name(fqdn));
            }
            match outcomes_detail(answers) {
                None => message += ": no server had answered yet",
                Some(detail) => message += &format!(": {detail}, then no answer yet"),
            }
        }
        message.push(')');
        message += &self.also_tried(&progress.tried, current);
        message += &format!("; {}; {}", self.servers_note(), self.hosts_note());
        StepError::new(Reason::DnsTimeout, message)
    }

    /// "; also tried registry.svc.test (search domain: NXDOMAIN), …" for the candidates other
    /// than `reported`, or nothing.
    fn also_tried(&self, tried: &[(String, Option<Fail>)], reported: &str) -> String {
        let others: Vec<String> = tried
            .iter()
            .filter(|(name, _)| name != reported)
            .map(|(name, fail)| {
                let kind = if display_name(name) == display_name(self.host) {
                    "as written"
                } else {
                    "search domain"
                };
                let outcome = fail
                    .as_ref()
                    .map_or_else(|| "no address".to_owned(), Fail::brief);
                format!("{} ({kind}: {outcome})", display_name(name))
            })
            .collect();
        if others.is_empty() {
            String::new()
        } else {
            format!("; also tried {}", others.join(", "))
        }
    }

    /// The resolver of every failure: the name, the servers and where they came from.
    fn resolver(&self) -> DnsResolver {
        let path = self.settings.resolv_conf.clone();
        DnsResolver {
            host: self.host.to_owned(),
            nameservers: self.conf.servers.clone(),
            source: match self.servers_from {
                ServersFrom::Config => NameserverSource::Config,
                ServersFrom::File => NameserverSource::ResolvConf(path),
                ServersFrom::NoneListed | ServersFrom::Unreadable(_) => {
                    NameserverSource::Defaults(path)
                }
            },
            hosts_file: self.settings.hosts_file.clone(),
        }
    }

    fn servers_note(&self) -> String {
        let list = self
            .conf
            .servers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let path = self.settings.resolv_conf.display();
        match self.servers_from {
            ServersFrom::File => format!("nameservers {list} from {path}"),
            ServersFrom::Config => format!("nameservers {list} from dns.nameservers"),
            ServersFrom::NoneListed => {
                format!("nameservers {list}: the defaults, because {path} lists no nameserver")
            }
            ServersFrom::Unreadable(kind) => format!(
                "nameservers {list}: the defaults, because {path} {}",
                file_sentence(*kind)
            ),
        }
    }

    fn hosts_note(&self) -> String {
        let path = self.settings.hosts_file.display();
        match self.hosts.unreadable {
            None => format!("not in {path}"),
            Some(kind) => format!("{path} {}, so it was skipped", file_sentence(kind)),
        }
    }
}

/// What each server said, in the order they were first asked (the last answer of each):
/// "NXDOMAIN from 10.0.0.10:53", or per server when they differ. `None` if none answered.
fn outcomes_detail(outcomes: &[(SocketAddr, Fail)]) -> Option<String> {
    let mut last: Vec<(SocketAddr, &Fail)> = Vec::new();
    for (server, fail) in outcomes {
        match last.iter_mut().find(|(s, _)| s == server) {
            Some(entry) => entry.1 = fail,
            None => last.push((*server, fail)),
        }
    }
    let first = last.first()?.1.short();
    if last.iter().all(|(_, f)| f.short() == first) {
        let servers: Vec<String> = last.iter().map(|(s, _)| s.to_string()).collect();
        return Some(format!("{first} {}", servers.join(", ")));
    }
    Some(
        last.iter()
            .map(|(s, f)| format!("{} {s}", f.short()))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

fn display_name(name: &str) -> &str {
    name.strip_suffix('.').unwrap_or(name)
}

// ---- the hosts file (Go: hosts.go) ------------------------------------------------------

/// The hosts file by name, as Go's `readHosts` indexes it.
#[derive(Debug, Default)]
struct HostsFile {
    /// Key: lower-case name, with a trailing dot if it has a dot (Go's `absDomainName`).
    by_name: HashMap<String, Vec<IpAddr>>,
    /// Why the file could not be read; Go then uses no entries.
    unreadable: Option<io::ErrorKind>,
}

impl HostsFile {
    async fn read(path: &Path) -> Self {
        match tokio::fs::read(path).await {
            Ok(bytes) => Self::parse(&String::from_utf8_lossy(&bytes)),
            Err(e) => HostsFile {
                unreadable: Some(e.kind()),
                ..HostsFile::default()
            },
        }
    }

    /// Go's `readHosts`: `#` starts a comment anywhere; an address then one or more names; lines
    /// whose address does not parse are skipped; a name on several lines gets every address.
    fn parse(text: &str) -> Self {
        let mut by_name: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default();
            let fields: Vec<&str> = fields(line).collect();
            if fields.len() < 2 {
                continue;
            }
            let Some(addr) = parse_literal_ip(fields[0]) else {
                continue;
            };
            for name in &fields[1..] {
                by_name
                    .entry(abs_domain_name(&name.to_ascii_lowercase()))
                    .or_default()
                    .push(addr);
            }
        }
        HostsFile {
            by_name,
            unreadable: None,
        }
    }

    /// Go's `lookupStaticHost`: ASCII case-insensitive; a trailing dot matches only names with a
    /// dot inside (`registry.internal.` finds `registry.internal`, `registry.` not `registry`).
    fn lookup(&self, host: &str) -> Vec<IpAddr> {
        self.by_name
            .get(&abs_domain_name(&host.to_ascii_lowercase()))
            .cloned()
            .unwrap_or_default()
    }
}

/// Go's `absDomainName`: a trailing dot is added only to names that have a dot, so that local
/// names like `localhost` stay as they are.
fn abs_domain_name(name: &str) -> String {
    if name.contains('.') && !name.ends_with('.') {
        format!("{name}.")
    } else {
        name.to_owned()
    }
}

/// Go's `parseLiteralIP`: IPv4, or IPv6 with an optional `%zone` (dropped here).
fn parse_literal_ip(text: &str) -> Option<IpAddr> {
    if let Ok(v4) = text.parse::<Ipv4Addr>() {
        return Some(IpAddr::V4(v4));
    }
    let (addr, zone) = match text.split_once('%') {
        Some((addr, zone)) => (addr, Some(zone)),
        None => (text, None),
    };
    if zone.is_some_and(str::is_empty) {
        return None;
    }
    addr.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// Go's `getFields`: split at spaces, tabs, CR and LF, dropping empty fields.
fn fields(line: &str) -> impl Iterator<Item = &str> {
    line.split([' ', '\t', '\r', '\n'])
        .filter(|f| !f.is_empty())
}

// ---- resolv.conf (Go: dnsconfig_unix.go) ------------------------------------------------

/// The parts of Go's `dnsConfig` that change what is asked.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ResolvConf {
    /// At most three, with port 53; Go's `defaultNS` when none is listed.
    servers: Vec<SocketAddr>,
    /// Whether `servers` came from `nameserver` lines.
    servers_listed: bool,
    /// Rooted suffixes (trailing dot), from the last `search` or `domain` line, else the host
    /// name's domain.
    search: Vec<String>,
    ndots: usize,
    timeout: Duration,
    attempts: usize,
    rotate: bool,
    single_request: bool,
    use_tcp: bool,
}

impl ResolvConf {
    /// Go's `dnsReadConfig`, for the text of the file (empty if it cannot be read) and the host
    /// name (for `dnsDefaultSearch`).
    fn parse(text: &str, hostname: Option<&str>) -> Self {
        let mut conf = ResolvConf {
            servers: Vec::new(),
            servers_listed: false,
            search: Vec::new(),
            ndots: 1,
            timeout: Duration::from_secs(5),
            attempts: 2,
            rotate: false,
            single_request: false,
            use_tcp: false,
        };
        for line in text.lines() {
            // Only a `;` or `#` in the first column makes a comment.
            if line.starts_with([';', '#']) {
                continue;
            }
            let f: Vec<&str> = fields(line).collect();
            let Some((&keyword, args)) = f.split_first() else {
                continue;
            };
            match keyword {
                "nameserver" => {
                    if let Some(addr) = args.first()
                        && conf.servers.len() < 3
                        && let Ok(ip) = addr.parse::<IpAddr>()
                    {
                        conf.servers.push(SocketAddr::new(ip, 53));
                    }
                }
                "domain" => {
                    if let Some(domain) = args.first() {
                        conf.search = vec![ensure_rooted(domain)];
                    }
                }
                "search" => {
                    conf.search = args
                        .iter()
                        .map(|s| ensure_rooted(s))
                        .filter(|s| s != ".")
                        .collect();
                }
                "options" => {
                    for opt in args {
                        if let Some(n) = opt.strip_prefix("ndots:") {
                            conf.ndots = leading_number(n).min(15);
                        } else if let Some(n) = opt.strip_prefix("timeout:") {
                            conf.timeout = Duration::from_secs(leading_number(n).max(1) as u64);
                        } else if let Some(n) = opt.strip_prefix("attempts:") {
                            conf.attempts = leading_number(n).max(1);
                        } else {
                            match *opt {
                                "rotate" => conf.rotate = true,
                                "single-request" | "single-request-reopen" => {
                                    conf.single_request = true;
                                }
                                "use-vc" | "usevc" | "tcp" => conf.use_tcp = true,
                                _ => {}
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        conf.servers_listed = !conf.servers.is_empty();
        if conf.servers.is_empty() {
            conf.servers = DEFAULT_NS.to_vec();
        }
        if conf.search.is_empty() {
            conf.search = default_search(hostname);
        }
        conf
    }

    /// Go's `dnsConfig.nameList`: the rooted names to ask, in order. A rooted name is asked
    /// alone; a name with at least `ndots` dots is asked as written first, else last, around
    /// the search suffixes; names over 253 characters and `.onion` names are never asked.
    fn name_list(&self, name: &str) -> Vec<String> {
        let rooted = name.ends_with('.');
        if name.len() > 254 || (name.len() == 254 && !rooted) {
            return Vec::new();
        }
        if rooted {
            return if avoid_dns(name) {
                Vec::new()
            } else {
                vec![name.to_owned()]
            };
        }
        let has_ndots = name.matches('.').count() >= self.ndots;
        let name = format!("{name}.");
        let mut names = Vec::with_capacity(1 + self.search.len());
        if has_ndots && !avoid_dns(&name) {
            names.push(name.clone());
        }
        for suffix in &self.search {
            let fqdn = format!("{name}{suffix}");
            if !avoid_dns(&fqdn) && fqdn.len() <= 254 {
                names.push(fqdn);
            }
        }
        if !has_ndots && !avoid_dns(&name) {
            names.push(name);
        }
        names
    }
}

/// Go's `dnsDefaultSearch`: the domain of the host name, if it has one.
fn default_search(hostname: Option<&str>) -> Vec<String> {
    match hostname.and_then(|h| h.split_once('.')) {
        Some((_, domain)) if !domain.is_empty() => vec![ensure_rooted(domain)],
        _ => Vec::new(),
    }
}

fn ensure_rooted(s: &str) -> String {
    if s.ends_with('.') {
        s.to_owned()
    } else {
        format!("{s}.")
    }
}

/// Go's `dtoi` as `dnsReadConfig` uses it: the leading decimal digits, 0 if there are none,
/// capped at 0xFFFFFF.
fn leading_number(s: &str) -> usize {
    const BIG: usize = 0x00FF_FFFF;
    let mut n: usize = 0;
    for c in s.bytes().take_while(u8::is_ascii_digit) {
        n = n * 10 + usize::from(c - b'0');
        if n >= BIG {
            return BIG;
        }
    }
    n
}

/// Go's `avoidDNS`: `.onion` names are never sent to DNS (RFC 7686).
fn avoid_dns(name: &str) -> bool {
    if name.is_empty() {
        return true;
    }
    let name = name.strip_suffix('.').unwrap_or(name).as_bytes();
    name.len() >= 6 && name[name.len() - 6..].eq_ignore_ascii_case(b".onion")
}

/// Go's `isDomainName`: letters, digits, `_` and `-` in labels of 1 to 63 characters, no label
/// starting with `-` or ending with `-`, at most 253 characters (254 with the trailing dot), not
/// all digits.
fn is_domain_name(s: &str) -> bool {
    if s == "." {
        return true;
    }
    let b = s.as_bytes();
    let l = b.len();
    if l == 0 || l > 254 || (l == 254 && b[l - 1] != b'.') {
        return false;
    }
    let mut last = b'.';
    let mut non_numeric = false;
    let mut part = 0;
    for &c in b {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                non_numeric = true;
                part += 1;
            }
            b'0'..=b'9' => part += 1,
            b'-' => {
                if last == b'.' {
                    return false;
                }
                part += 1;
                non_numeric = true;
            }
            b'.' => {
                if last == b'.' || last == b'-' || part > 63 || part == 0 {
                    return false;
                }
                part = 0;
            }
            _ => return false,
        }
        last = c;
    }
    last != b'-' && part <= 63 && non_numeric
}

// ---- one exchange with one server (Go: exchange, checkHeader, skipToAnswer) -------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

/// Go's `exchange`: UDP (a fresh connected socket), then TCP if the UDP answer is truncated;
/// TCP only with `options use-vc`. Each transport gets the whole `timeout`.
async fn exchange(
    server: SocketAddr,
    name: &Name,
    qtype: RecordType,
    timeout: Duration,
    tcp_only: bool,
) -> Result<Message, Fail> {
    let mut request = Message::query();
    request.metadata.recursion_desired = true;
    request.add_query(Query::query(name.clone(), qtype));
    let mut edns = Edns::new();
    edns.set_max_payload(MAX_DNS_PACKET);
    request.set_edns(edns);
    let bytes = request.to_vec().map_err(|_| Fail::BadName)?;
    let id = request.metadata.id;
    let transports: &[Transport] = if tcp_only {
        &[Transport::Tcp]
    } else {
        &[Transport::Udp, Transport::Tcp]
    };
    for &transport in transports {
        let round_trip = async {
            match transport {
                Transport::Udp => udp_round_trip(server, &bytes, id, name, qtype).await,
                Transport::Tcp => tcp_round_trip(server, &bytes, id, name, qtype).await,
            }
        };
        let msg = tokio::time::timeout(timeout, round_trip)
            .await
            .map_err(|_| Fail::Timeout(timeout))??;
        if msg.queries.len() != 1 {
            return Err(Fail::Malformed);
        }
        // RFC 5966: a truncated UDP answer means "ask again over TCP"; a truncated TCP answer is
        // used as it is (Go follows glibc here, go.dev/issue/64896).
        if msg.metadata.truncation && transport == Transport::Udp {
            continue;
        }
        return Ok(msg);
    }
    Err(Fail::Malformed)
}

fn network(e: io::Error) -> Fail {
    Fail::Network(e.kind())
}

/// Go's `dnsPacketRoundTrip`: what does not parse or answers another question is ignored (a
/// possible forgery, golang.org/issue/13281) and the wait goes on.
async fn udp_round_trip(
    server: SocketAddr,
    request: &[u8],
    id: u16,
    name: &Name,
    qtype: RecordType,
) -> Result<Message, Fail> {
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await.map_err(network)?;
    socket.connect(server).await.map_err(network)?;
    socket.send(request).await.map_err(network)?;
    let mut buf = vec![0u8; usize::from(MAX_DNS_PACKET)];
    loop {
        let n = socket.recv(&mut buf).await.map_err(network)?;
        if let Ok(msg) = Message::from_vec(&buf[..n])
            && answers(&msg, id, name, qtype)
        {
            return Ok(msg);
        }
    }
}

/// Go's `dnsStreamRoundTrip`: one length-prefixed message each way on a fresh connection.
async fn tcp_round_trip(
    server: SocketAddr,
    request: &[u8],
    id: u16,
    name: &Name,
    qtype: RecordType,
) -> Result<Message, Fail> {
    let mut stream = TcpStream::connect(server).await.map_err(network)?;
    let len = u16::try_from(request.len()).map_err(|_| Fail::BadName)?;
    let mut framed = Vec::with_capacity(request.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(request);
    stream.write_all(&framed).await.map_err(network)?;
    let len = stream.read_u16().await.map_err(network)?;
    let mut body = vec![0u8; usize::from(len)];
    stream.read_exact(&mut body).await.map_err(network)?;
    let msg = Message::from_vec(&body).map_err(|_| Fail::Malformed)?;
    if answers(&msg, id, name, qtype) {
        Ok(msg)
    } else {
        Err(Fail::Malformed)
    }
}

/// Go's `checkResponse`: a response, with our ID, to our question (name compared ignoring case).
fn answers(msg: &Message, id: u16, name: &Name, qtype: RecordType) -> bool {
    msg.metadata.message_type == MessageType::Response
        && msg.metadata.id == id
        && msg.queries.first().is_some_and(|q| {
            q.query_type() == qtype
                && q.query_class() == DNSClass::IN
                && q.name().to_ascii().eq_ignore_ascii_case(&name.to_ascii())
        })
}

/// Go's `checkHeader`, `skipToAnswer` and the answer loop of `goLookupIPCNAME`: NXDOMAIN ends
/// the question; a lame referral or another RCODE tries the next server; otherwise the A and
/// AAAA records from the first record of the type asked (CNAMEs before it are skipped).
fn check_answer(msg: &Message, qtype: RecordType) -> Result<Vec<IpAddr>, Fail> {
    let rcode = msg.metadata.response_code;
    if rcode == ResponseCode::NXDomain {
        return Err(Fail::NxDomain);
    }
    let has_additional =
        !msg.additionals.is_empty() || msg.edns.is_some() || msg.signature.is_some();
    if rcode == ResponseCode::NoError
        && !msg.metadata.authoritative
        && !msg.metadata.recursion_available
        && msg.answers.is_empty()
        && !has_additional
    {
        return Err(Fail::LameReferral);
    }
    if rcode != ResponseCode::NoError {
        return Err(Fail::Rcode(rcode));
    }
    let mut records = msg
        .answers
        .iter()
        .skip_while(|r| r.record_type() != qtype)
        .peekable();
    if records.peek().is_none() {
        return Err(Fail::NoData);
    }
    Ok(records.filter_map(|r| r.data.ip_addr()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(text: &str) -> ResolvConf {
        ResolvConf::parse(text, None)
    }

    fn names(conf: &ResolvConf, name: &str) -> Vec<String> {
        conf.name_list(name)
    }

    /// Go `dnsConfig.nameList`: fewer dots than ndots → search suffixes first, then as written.
    #[test]
    fn name_list_single_label_tries_search_domains_first() {
        let c = conf("nameserver 10.0.0.10\nsearch svc.cluster.local cluster.local\n");
        assert_eq!(
            names(&c, "registry"),
            [
                "registry.svc.cluster.local.",
                "registry.cluster.local.",
                "registry."
            ]
        );
    }

    /// Go `dnsConfig.nameList`: at least ndots dots → as written first, then the suffixes.
    #[test]
    fn name_list_with_enough_dots_tries_the_name_first() {
        let c = conf("search svc.cluster.local\n");
        assert_eq!(
            names(&c, "registry.internal"),
            ["registry.internal.", "registry.internal.svc.cluster.local."]
        );
        // Kubernetes pods' ndots:5: a two-label name goes through the search list first.
        let k8s = conf("search ns.svc.cluster.local svc.cluster.local\noptions ndots:5\n");
        assert_eq!(
            names(&k8s, "registry.internal"),
            [
                "registry.internal.ns.svc.cluster.local.",
                "registry.internal.svc.cluster.local.",
                "registry.internal."
            ]
        );
        // ndots:0: even a single label is asked as written first.
        let zero = conf("search corp\noptions ndots:0\n");
        assert_eq!(names(&zero, "registry"), ["registry.", "registry.corp."]);
    }

    /// Go `dnsConfig.nameList`: "If name is rooted (trailing dot), try only that name."
    #[test]
    fn name_list_rooted_name_is_asked_alone() {
        let c = conf("search svc.cluster.local\noptions ndots:5\n");
        assert_eq!(names(&c, "registry."), ["registry."]);
        assert_eq!(names(&c, "Registry.Internal."), ["Registry.Internal."]);
    }

    /// Go `avoidDNS` (TestLookupTorOnion): `.onion` is never asked as such, but a search
    /// suffix makes it another name.
    #[test]
    fn name_list_avoids_onion_names() {
        let c = conf("search corp\n");
        assert!(names(&c, "hidden.onion.").is_empty());
        assert_eq!(names(&c, "hidden.ONION"), ["hidden.ONION.corp."]);
    }

    /// Go `TestDNSNameLength`: a suffix that would pass 254 characters is dropped; a name that
    /// is too long itself gives no candidate.
    #[test]
    fn name_list_length_limits() {
        let c = conf("search example.com\n");
        let label = "a".repeat(63);
        let long = format!("{label}.{label}.{label}.{}", "b".repeat(50)); // 242 characters
        assert_eq!(long.len(), 242);
        assert_eq!(names(&c, &long), [format!("{long}.")]);
        let too_long = format!("{label}.{label}.{label}.{}", "b".repeat(62)); // 254, unrooted
        assert!(names(&c, &too_long).is_empty());
        let short = "registry";
        assert_eq!(names(&c, short).len(), 2);
    }

    /// Go `dnsReadConfig` (TestDNSReadConfig): defaults, limits and clamps.
    #[test]
    fn resolv_conf_parse_follows_dns_read_config() {
        let c = conf("");
        assert_eq!(c.servers, DEFAULT_NS.to_vec());
        assert!(!c.servers_listed);
        assert_eq!(
            (c.ndots, c.timeout, c.attempts),
            (1, Duration::from_secs(5), 2)
        );
        let c = conf(
            "# comment\n; comment\nnameserver 10.0.0.1\nnameserver not-an-ip\nnameserver fd00::2\n\
             nameserver 10.0.0.3\nnameserver 10.0.0.4\ndomain first.example\nsearch a.example b.example. .\n\
             options ndots:99 timeout:0 attempts:0 rotate single-request-reopen use-vc edns0 trust-ad\n",
        );
        assert_eq!(
            c.servers,
            [
                "10.0.0.1:53".parse().unwrap(),
                "[fd00::2]:53".parse().unwrap(),
                "10.0.0.3:53".parse().unwrap()
            ]
        );
        assert_eq!(c.search, ["a.example.", "b.example."]);
        assert_eq!(c.ndots, 15);
        assert_eq!(c.timeout, Duration::from_secs(1));
        assert_eq!(c.attempts, 1);
        assert!(c.rotate && c.single_request && c.use_tcp);
        // The last of `search` and `domain` wins; `ndots:` without a number means 0.
        let c = conf("search a.example\ndomain b.example\noptions ndots:x timeout:3 attempts:4\n");
        assert_eq!(c.search, ["b.example."]);
        assert_eq!(
            (c.ndots, c.timeout, c.attempts),
            (0, Duration::from_secs(3), 4)
        );
        // Go's dnsDefaultSearch: no search line → the host name's domain.
        let c = ResolvConf::parse("nameserver 10.0.0.1\n", Some("node-1.corp.example"));
        assert_eq!(c.search, ["corp.example."]);
        let c = ResolvConf::parse("nameserver 10.0.0.1\n", Some("node-1"));
        assert!(c.search.is_empty());
    }

    /// Go `lookupStaticHost` (TestLookupStaticHost, TestLookupStaticHostAliases).
    #[test]
    fn hosts_file_lookup_follows_lookup_static_host() {
        let h = HostsFile::parse(
            "127.0.0.1 localhost\n10.0.0.5 Registry registry.Internal # comment 10.9.9.9 other\n\
             fd00::5 registry\nnot-an-ip registry\nfe80::1%eth0 linklocal\n10.0.0.6\n  \t10.0.0.7\tmirror.internal.\n",
        );
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Every line of a name, in file order; names are ASCII case-insensitive.
        assert_eq!(h.lookup("REGISTRY"), [ip("10.0.0.5"), ip("fd00::5")]);
        // A name with a dot matches with or without the trailing dot, either way round.
        assert_eq!(h.lookup("registry.internal"), [ip("10.0.0.5")]);
        assert_eq!(h.lookup("registry.internal."), [ip("10.0.0.5")]);
        assert_eq!(h.lookup("mirror.internal"), [ip("10.0.0.7")]);
        // absDomainName adds no dot to a single label, so `registry.` is not `registry`.
        assert!(h.lookup("registry.").is_empty());
        assert!(h.lookup("other").is_empty());
        assert_eq!(h.lookup("linklocal"), [ip("fe80::1")]);
        // Search domains are not applied to the hosts file.
        assert!(h.lookup("registry.svc.cluster.local").is_empty());
    }

    /// The engine's own deadline message (the deadline between two steps of a lookup) names
    /// the nameservers too, from the settings alone.
    #[test]
    fn configured_names_the_nameservers_from_the_settings() {
        let mut settings = DnsSettings {
            resolv_conf: "/host/etc/resolv.conf".into(),
            ..DnsSettings::default()
        };
        assert_eq!(
            Dns::new(&settings).configured(),
            "the nameservers of /host/etc/resolv.conf"
        );
        settings.nameservers = Some(vec![
            "10.0.0.10:53".parse().unwrap(),
            "127.0.0.1:5353".parse().unwrap(),
        ]);
        assert_eq!(
            Dns::new(&settings).configured(),
            "nameservers 10.0.0.10:53, 127.0.0.1:5353 from dns.nameservers"
        );
    }

    /// Go `isDomainName` (TestDNSName).
    #[test]
    fn is_domain_name_cases() {
        for ok in [
            "registry",
            "registry.internal",
            "registry.internal.",
            "_srv.example",
            "a-b.example",
            "1.2.3.a",
            ".",
        ] {
            assert!(is_domain_name(ok), "{ok}");
        }
        for bad in [
            "",
            "1.2.3.4",
            "-registry",
            "registry-",
            "a..b",
            "a.-b",
            "a b",
            "reg\u{e9}",
        ] {
            assert!(!is_domain_name(bad), "{bad}");
        }
        assert!(!is_domain_name(&format!("{}.x", "a".repeat(64))));
    }

    fn response(rcode: ResponseCode, aa: bool, ra: bool) -> Message {
        let mut m = Message::response(1, hickory_resolver::proto::op::OpCode::Query);
        m.metadata.response_code = rcode;
        m.metadata.authoritative = aa;
        m.metadata.recursion_available = ra;
        m
    }

    /// Go `checkHeader` and `skipToAnswer` (TestIgnoreLameReferrals).
    #[test]
    fn check_answer_follows_check_header() {
        use hickory_resolver::proto::rr::rdata::{A, CNAME};
        use hickory_resolver::proto::rr::{RData, Record};
        assert_eq!(
            check_answer(
                &response(ResponseCode::NXDomain, false, false),
                RecordType::A
            ),
            Err(Fail::NxDomain)
        );
        assert_eq!(
            check_answer(
                &response(ResponseCode::NoError, false, false),
                RecordType::A
            ),
            Err(Fail::LameReferral)
        );
        assert_eq!(
            check_answer(&response(ResponseCode::NoError, false, true), RecordType::A),
            Err(Fail::NoData)
        );
        assert_eq!(
            check_answer(
                &response(ResponseCode::ServFail, false, true),
                RecordType::A
            ),
            Err(Fail::Rcode(ResponseCode::ServFail))
        );
        let name = Name::from_ascii("registry.example.").unwrap();
        let target = Name::from_ascii("cdn.example.").unwrap();
        let mut m = response(ResponseCode::NoError, false, true);
        m.answers.push(Record::from_rdata(
            name.clone(),
            60,
            RData::CNAME(CNAME(target.clone())),
        ));
        m.answers.push(Record::from_rdata(
            target,
            60,
            RData::A(A(Ipv4Addr::new(10, 0, 0, 5))),
        ));
        assert_eq!(
            check_answer(&m, RecordType::A),
            Ok(vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5))])
        );
        // Only a CNAME for the AAAA question: no such host for that type.
        m.answers.truncate(1);
        assert_eq!(check_answer(&m, RecordType::AAAA), Err(Fail::NoData));
    }
}
