//! Opening the way to a URL as containerd's transport does: straight (DNS, TCP), or through the
//! proxy Go's `ProxyFromEnvironment` picks ([`crate::node::proxy`]), in which case DNS, TCP and
//! (for an `https://` proxy) TLS are the way to the proxy and every message says so, followed
//! by the `CONNECT` or SOCKS5 exchange ([`super::proxy`]). TLS to the target itself is the
//! caller's.

use std::net::{IpAddr, SocketAddr};

use tokio::time::Instant;
use url::Url;

use super::dns::Dns;
use super::http::Io;
use super::{Recorder, StepError, proxy, tcp, tls};
use crate::config::TlsSettings;
use crate::node::proxy::{EnvSource, ProxyEnv, ProxyKind, ProxyUrl};
use crate::outcome::{Failure, Phase, Reason};

/// An open transport to a URL's origin.
pub(crate) struct Dialed {
    pub io: Box<dyn Io>,
    /// The address the TCP connection went to (the proxy's, through a proxy).
    pub address: SocketAddr,
    /// Set for a plain-`http://` URL through an HTTP proxy: requests go in absolute form with
    /// the proxy's `Proxy-Authorization` (no tunnel).
    pub absolute_form: Option<ProxyUrl>,
    /// The proxy the connection goes through.
    pub via: Option<ProxyUrl>,
}

/// A failure on the way to the proxy `p` (port `port`): its DNS, TCP or TLS. Every request of
/// the pull goes through the proxy, so the registry was not reached: the message names the
/// proxy and where it was set, and the remedy is about the proxy, not the registry.
fn via(p: &ProxyUrl, port: u16, e: StepError, phase: Phase) -> Failure {
    // The handshake's words call its peer "the registry"; here the peer is the proxy.
    let detail = if phase == Phase::Tls {
        e.message.replace("the registry", "the proxy")
    } else {
        e.message
    };
    let message = format!(
        "on the way to the proxy {p} (from {}), so the registry was not reached: {detail}",
        p.origin(),
    );
    let f = Failure::new(phase, e.reason, message).with_resolver(e.resolver);
    let host = p.host();
    let var = p.variable();
    let what = match (phase, e.reason) {
        (Phase::Dns, _) => format!(
            "the node resolves the proxy's name {host} itself before any pull: {}",
            f.remedy().unwrap_or_default()
        ),
        (Phase::Connect, Reason::ConnectRefused) => format!(
            "nothing accepts connections on {host} port {port}: check that the proxy runs and listens on that port"
        ),
        (Phase::Connect, Reason::ConnectTimeout | Reason::Timeout) => format!(
            "the proxy {host} port {port} does not answer: check that it is up and that the firewalls between the node and it let the port through"
        ),
        (Phase::Connect, Reason::ConnectUnreachable) => format!(
            "the node has no route to the proxy {host}: check the node's routes and default gateway"
        ),
        (Phase::Connect, _) => format!(
            "check the node's network path to the proxy {host} port {port}; the message has the operating system's error"
        ),
        (_, Reason::TlsUntrusted | Reason::TlsExpired | Reason::TlsNameMismatch) => format!(
            "{var} names an https:// proxy, so the node checks the proxy's certificate before any request: it must be valid, cover {host}, and be signed by a CA the node trusts (containerd checks it with the TLS settings of the registry's hosts.toml, `ca`)"
        ),
        _ => format!(
            "{var} names an https:// proxy, so the node speaks TLS to it first: check that {host} port {port} serves TLS; for a proxy that speaks plain HTTP, write http:// in {var}"
        ),
    };
    let correct = match p.source() {
        EnvSource::File(_) => format!(
            "or, if it is the wrong proxy, correct {} and restart containerd",
            p.origin()
        ),
        EnvSource::Process => format!(
            "or, if it is the wrong proxy, correct {var}; pullprobe read it from its own environment, so point node.containerd.proxy_env_file at containerd's proxy drop-in to follow what containerd uses"
        ),
    };
    f.with_fix(format!("{what}; {correct}"))
}

/// Resolves `host` (an IP literal needs no DNS) in the `dns` phase, by `deadline`.
async fn addresses(
    dns: &Dns,
    host: &str,
    deadline: Instant,
    rec: &mut Recorder,
) -> Result<Vec<IpAddr>, StepError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => Ok(vec![ip]),
        Err(_) => {
            rec.enter(Phase::Dns);
            dns.resolve(bare, deadline).await
        }
    }
}

/// Opens the way to `url`'s origin. `dial_deadline` bounds the TCP connect (hosts.toml
/// `dial_timeout`), `deadline` everything. `tls` is the endpoint's TLS settings, which Go also
/// uses for the handshake with an `https://` proxy.
pub(crate) async fn dial(
    dns: &Dns,
    proxies: Option<&ProxyEnv>,
    url: &Url,
    tls: &TlsSettings,
    dial_deadline: Instant,
    deadline: Instant,
    rec: &mut Recorder,
) -> Result<Dialed, Failure> {
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(443);
    let proxy = match proxies {
        None => None,
        Some(env) => env
            .proxy_for(url)
            .map_err(|e| Failure::new(Phase::Connect, e.reason(), e.to_string()))?,
    };
    let Some(p) = proxy else {
        let addrs = addresses(dns, host, deadline, rec)
            .await
            .map_err(|e| e.at(Phase::Dns))?;
        rec.enter(Phase::Connect);
        let addrs = tcp::sort_addresses(addrs, port).await;
        let (stream, address) = tcp::connect(&addrs, port, dial_deadline)
            .await
            .map_err(|e| e.at(Phase::Connect))?;
        return Ok(Dialed {
            io: Box::new(stream),
            address,
            absolute_form: None,
            via: None,
        });
    };

    let proxy_port = p
        .port()
        .map_err(|e| Failure::new(Phase::Connect, e.reason(), e.to_string()))?;
    let addrs = addresses(dns, p.host(), deadline, rec)
        .await
        .map_err(|e| via(&p, proxy_port, e, Phase::Dns))?;
    rec.enter(Phase::Connect);
    let addrs = tcp::sort_addresses(addrs, proxy_port).await;
    let (stream, address) = tcp::connect(&addrs, proxy_port, dial_deadline)
        .await
        .map_err(|e| via(&p, proxy_port, e, Phase::Connect))?;
    let stream: Box<dyn Io> = if p.kind() == ProxyKind::Https {
        rec.enter(Phase::Tls);
        let trust = tls::trust_for(tls).map_err(|e| {
            via(
                &p,
                proxy_port,
                StepError::new(Reason::TlsUntrusted, e),
                Phase::Tls,
            )
        })?;
        let (s, _report) = trust
            .handshake(stream, p.host())
            .await
            .map_err(|(e, _)| via(&p, proxy_port, e, Phase::Tls))?;
        rec.enter(Phase::Connect);
        Box::new(s)
    } else {
        Box::new(stream)
    };
    let target = proxy::target_addr(url).ok_or_else(|| {
        Failure::new(
            Phase::Connect,
            Reason::ProtocolError,
            format!("{host}: no address to ask the proxy for"),
        )
    })?;
    // The exchange's messages name the proxy and where it was set themselves.
    let in_proxy = |e: StepError| {
        // 407 is the proxy asking for credentials: the auth phase.
        let phase = if e.reason == Reason::AuthFailed {
            Phase::Auth
        } else {
            Phase::Connect
        };
        e.at(phase)
    };
    let io: Box<dyn Io> = match (p.kind(), url.scheme()) {
        (ProxyKind::Socks5 | ProxyKind::Socks5h, _) => Box::new(
            proxy::socks5_connect(stream, &p, &target, deadline)
                .await
                .map_err(in_proxy)?,
        ),
        (_, "http") => {
            return Ok(Dialed {
                io: stream,
                address,
                absolute_form: Some(p.clone()),
                via: Some(p),
            });
        }
        _ => Box::new(
            proxy::http_connect(stream, &p, &target, deadline)
                .await
                .map_err(in_proxy)?,
        ),
    };
    Ok(Dialed {
        io,
        address,
        absolute_form: None,
        via: Some(p),
    })
}
