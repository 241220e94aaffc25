//! One endpoint of the pull (a mirror or the registry) during one probe: its first connection,
//! with the `dns`, `connect` and `tls` phases recorded, and the request URLs containerd builds
//! for it (`RegistryHost` with `Path`, `request.addNamespace`).

use std::net::SocketAddr;

use tokio::time::Instant;
use url::Url;

use super::dns::Dns;
use super::http::{Io, Session};
use super::report::TlsReport;
use super::{Recorder, dial, fallback, tls};
use crate::node::proxy::ProxyEnv;
use crate::node::{Endpoint, Scheme};
use crate::outcome::{Failure, Phase, Reason};

/// An endpoint and what this probe knows of it.
pub(crate) struct EndpointRun<'a> {
    pub ep: Endpoint,
    /// `scheme://host[:port]` (after a fallback to HTTP, `http://`).
    pub origin: Url,
    /// containerd `isProxy`: the reference's host, sent as `?ns=` to a host that is not it.
    pub ns: Option<String>,
    pub session: Option<Session<'a>>,
    /// A failure to connect, kept so that a later path does not dial again.
    pub unreachable: Option<Failure>,
    pub tls: Option<TlsReport>,
    pub address: Option<SocketAddr>,
    /// The proxy the connection goes through.
    pub via: Option<crate::node::proxy::ProxyUrl>,
}

/// Go's `URL.Host` split into the host (brackets removed) and the port.
fn split_authority(authority: &str) -> (&str, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (rest, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, p.parse().ok()),
        _ => (authority, None),
    }
}

impl<'a> EndpointRun<'a> {
    /// `None` when the endpoint's host is not a usable URL authority.
    pub(crate) fn new(ep: Endpoint, reference_host: &str) -> Result<Self, Failure> {
        let origin =
            Url::parse(&format!("{}://{}/", ep.scheme.as_str(), ep.host)).map_err(|_| {
                Failure::new(
                    Phase::Dns,
                    Reason::DnsError,
                    format!("{} is not a usable host", ep.host),
                )
            })?;
        // containerd `RegistryHost.isProxy`.
        let is_proxy = reference_host != ep.host
            && !(reference_host == "docker.io" && ep.host == crate::reference::DOCKER_HUB_API_HOST);
        Ok(EndpointRun {
            ns: is_proxy.then(|| reference_host.to_owned()),
            ep,
            origin,
            session: None,
            unreachable: None,
            tls: None,
            address: None,
            via: None,
        })
    }

    /// The URL of `rest` (`<repo>/manifests/<ref>`) under the endpoint's API root, with
    /// `?ns=` for a mirror.
    pub(crate) fn url(&self, rest: &str) -> Option<Url> {
        let mut url = self.origin.join(&format!("{}/{rest}", self.ep.path)).ok()?;
        if let Some(ns) = &self.ns {
            url.query_pairs_mut().append_pair("ns", ns);
        }
        Some(url)
    }

    /// containers/image's retry of an `insecure` source over plain HTTP after a failed ping
    /// (`detectPropertiesHelper`: `ping("https")`, then `ping("http")` when `insecure`).
    ///
    /// What the HTTPS attempt recorded is retracted: the pull goes on over a plain connection,
    /// so its handshake's facts (version, certificate expiry, anchor) and its address and proxy
    /// would describe a TLS session the pull did not use. The phase timings stay: that time
    /// was spent.
    pub(crate) fn use_plain_http(&mut self) {
        let _ = self.origin.set_scheme("http");
        self.ep.scheme = Scheme::Http;
        self.session = None;
        self.unreachable = None;
        self.tls = None;
        self.address = None;
        self.via = None;
    }

    /// Opens the first connection: DNS, TCP (within the endpoint's `dial_timeout`), TLS (with
    /// containerd's HTTP fallback where it applies), each phase recorded.
    pub(crate) async fn connect(
        &mut self,
        dns: &'a Dns,
        proxies: Option<&'a ProxyEnv>,
        rec: &mut Recorder,
        deadline: Instant,
    ) -> Result<(), Failure> {
        if self.session.is_some() {
            return Ok(());
        }
        if let Some(f) = &self.unreachable {
            return Err(f.clone());
        }
        let result = self.dial(dns, proxies, rec, deadline).await;
        if let Err(f) = &result {
            self.unreachable = Some(f.clone());
        }
        result
    }

    async fn dial(
        &mut self,
        dns: &'a Dns,
        proxies: Option<&'a ProxyEnv>,
        rec: &mut Recorder,
        deadline: Instant,
    ) -> Result<(), Failure> {
        let (host, _) = split_authority(&self.ep.host);
        let host = host.to_owned();
        let dial_deadline = match self.ep.dial_timeout {
            Some(t) if !t.is_zero() => deadline.min(Instant::now() + t),
            _ => deadline,
        };
        let dialed = dial::dial(
            dns,
            proxies,
            &self.origin,
            &self.ep.tls,
            dial_deadline,
            deadline,
            rec,
        )
        .await?;
        self.address = Some(dialed.address);
        self.via = dialed.via.clone();
        let mut absolute_form = dialed.absolute_form;

        let io: Box<dyn Io> = if self.ep.scheme == Scheme::Http {
            dialed.io
        } else {
            rec.enter(Phase::Tls);
            let trust = tls::trust_for(&self.ep.tls)
                .map_err(|e| Failure::new(Phase::Tls, Reason::TlsUntrusted, e))?;
            let (sniffed, first) = fallback::Sniff::new(dialed.io);
            match trust.handshake(sniffed, &host).await {
                Ok((tls, report)) => {
                    self.tls = Some(report);
                    Box::new(tls)
                }
                Err((_, _)) if self.ep.http_fallback && fallback::answered_http(&first) => {
                    // containerd's HTTP fallback: the server answered the ClientHello in HTTP.
                    let _ = self.origin.set_scheme("http");
                    let again = dial::dial(
                        dns,
                        proxies,
                        &self.origin,
                        &self.ep.tls,
                        dial_deadline,
                        deadline,
                        rec,
                    )
                    .await?;
                    // Go's `ProxyFromEnvironment` picks the proxy by the request's scheme:
                    // the retry's (HTTP_PROXY), not the abandoned HTTPS attempt's.
                    self.address = Some(again.address);
                    self.via = again.via;
                    absolute_form = again.absolute_form;
                    again.io
                }
                Err((e, report)) => {
                    self.tls = Some(report);
                    let mut f = e.at(Phase::Tls);
                    if let Some(p) = &dialed.via {
                        f.message += &format!(" (through the proxy {p})");
                    }
                    return Err(f);
                }
            }
        };
        rec.enter(Phase::Manifest);
        let mut session = Session::new(dns, proxies, self.ep.tls.clone(), deadline);
        session
            .attach(&self.origin, io, absolute_form.as_ref())
            .await
            .map_err(|e| e.at(Phase::Manifest))?;
        self.session = Some(session);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_split_as_go_does() {
        assert_eq!(split_authority("mirror:5000"), ("mirror", Some(5000)));
        assert_eq!(split_authority("mirror"), ("mirror", None));
        assert_eq!(split_authority("[fd00::1]:5000"), ("fd00::1", Some(5000)));
        assert_eq!(split_authority("[fd00::1]"), ("fd00::1", None));
    }

    fn insecure_endpoint() -> Endpoint {
        Endpoint {
            scheme: Scheme::Https,
            host: "mirror.local:5000".to_owned(),
            path: "/v2".to_owned(),
            capabilities: crate::node::Capabilities::ALL,
            tls: std::sync::Arc::new(crate::config::TlsSettings {
                insecure_skip_verify: true,
                ..Default::default()
            }),
            headers: Vec::new(),
            dial_timeout: None,
            http_fallback: false,
            upstream: true,
            source: None,
            repository: None,
            credentials: false,
            blocked: None,
            name: None,
        }
    }

    /// containers/image `detectPropertiesHelper`: after the HTTPS ping of an `insecure`
    /// source fails, the HTTP ping is the one the pull uses; the report must not keep the
    /// HTTPS attempt's handshake, address or proxy (issue #12).
    #[test]
    fn detect_properties_helper_plain_http_retry_retracts_the_https_attempt() {
        let mut run = EndpointRun::new(insecure_endpoint(), "mirror.local:5000").unwrap();
        run.tls = Some(TlsReport {
            version: Some("TLSv1.3"),
            earliest_not_after: Some(1_900_000_000),
            anchor_subject: None,
            anchor_not_after: None,
        });
        run.address = Some("127.0.0.1:5000".parse().unwrap());
        run.unreachable = Some(Failure::new(Phase::Tls, Reason::TlsHandshake, "handshake"));
        run.use_plain_http();
        assert_eq!(run.origin.as_str(), "http://mirror.local:5000/");
        assert_eq!(run.ep.scheme, Scheme::Http);
        assert!(run.unreachable.is_none());
        assert_eq!(run.tls, None, "the HTTPS attempt's TLS facts are reported");
        assert_eq!(run.address, None);
        assert!(run.via.is_none());
    }
}
