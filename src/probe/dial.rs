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
use crate::node::proxy::{ProxyEnv, ProxyKind, ProxyUrl};
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

/// "proxy http://p:3128 (HTTPS_PROXY): …": what a failure on the way to the proxy says.
fn via(p: &ProxyUrl, e: StepError) -> StepError {
    StepError {
        message: format!(
            "on the way to the proxy {p} (from {}, as containerd's environment says): {}",
            p.variable(),
            e.message
        ),
        ..e
    }
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
        .map_err(|e| via(&p, e).at(Phase::Dns))?;
    rec.enter(Phase::Connect);
    let addrs = tcp::sort_addresses(addrs, proxy_port).await;
    let (stream, address) = tcp::connect(&addrs, proxy_port, dial_deadline)
        .await
        .map_err(|e| via(&p, e).at(Phase::Connect))?;
    let stream: Box<dyn Io> = if p.kind() == ProxyKind::Https {
        rec.enter(Phase::Tls);
        let trust =
            tls::trust_for(tls).map_err(|e| Failure::new(Phase::Tls, Reason::TlsUntrusted, e))?;
        let (s, _report) = trust
            .handshake(stream, p.host())
            .await
            .map_err(|(e, _)| via(&p, e).at(Phase::Tls))?;
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
    let in_proxy = |e: StepError| {
        // 407 is the proxy asking for credentials: the auth phase.
        let phase = if e.reason == Reason::AuthFailed {
            Phase::Auth
        } else {
            Phase::Connect
        };
        StepError::new(
            e.reason,
            format!("the proxy {p} (from {}): {}", p.variable(), e.message),
        )
        .at(phase)
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
