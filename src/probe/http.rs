//! HTTP/1.1 over connections the engine built itself, one per host, kept for the probe.
//!
//! A [`Session`] lives for one probe. It reuses a connection per `scheme://host:port` (as an
//! HTTP client with keep-alive does), opens new ones for other hosts (token realms,
//! redirects) through the same DNS → TCP → TLS steps, follows redirects as Go's client does
//! (containerd's transport), and caps what it reads: response heads
//! by hyper's buffer limit, bodies by an explicit byte limit. Dropping the session aborts its
//! connection tasks, so a cancelled probe leaves nothing behind.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, HOST, LOCATION, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;
use tokio::time::Instant;
use url::Url;

use super::StepError;
use super::dns::Dns;
use super::tls;
use crate::config::TlsSettings;
use crate::node::proxy::{ProxyEnv, ProxyUrl};
use crate::outcome::Reason;

/// The largest response head (status line and headers) accepted.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// At most this many redirects are followed (containerd's `CheckRedirect`: "stopped after 10
/// redirects").
pub const MAX_REDIRECTS: usize = 10;

pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

const USER_AGENT_VALUE: &str = concat!("pullprobe/", env!("CARGO_PKG_VERSION"));

/// `scheme://host:port`, the key of a connection.
fn origin(url: &Url) -> Option<String> {
    Some(format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str()?,
        url.port_or_known_default()?
    ))
}

/// `host[:port]` for the `Host` header.
fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    }
}

pub(crate) struct Session<'a> {
    dns: &'a Dns,
    proxies: Option<&'a ProxyEnv>,
    tls: Arc<TlsSettings>,
    /// Origins reached through an HTTP proxy without a tunnel: requests in absolute form, with
    /// the proxy's `Proxy-Authorization` when it has credentials.
    absolute: HashMap<String, Option<HeaderValue>>,
    deadline: Instant,
    conns: HashMap<String, http1::SendRequest<Full<Bytes>>>,
    tasks: JoinSet<()>,
}

impl<'a> Session<'a> {
    pub(crate) fn new(
        dns: &'a Dns,
        proxies: Option<&'a ProxyEnv>,
        tls: Arc<TlsSettings>,
        deadline: Instant,
    ) -> Self {
        Session {
            dns,
            proxies,
            tls,
            absolute: HashMap::new(),
            deadline,
            conns: HashMap::new(),
            tasks: JoinSet::new(),
        }
    }

    /// Adopts an established transport to `url`'s origin.
    pub(crate) async fn attach(
        &mut self,
        url: &Url,
        io: Box<dyn Io>,
        absolute_form: Option<&ProxyUrl>,
    ) -> Result<(), StepError> {
        let key = origin(url).ok_or_else(|| {
            StepError::new(Reason::ProtocolError, format!("{url}: not an http(s) URL"))
        })?;
        if let Some(p) = absolute_form {
            self.absolute
                .insert(key.clone(), super::proxy::proxy_authorization(p));
        }
        let sender = self.handshake(io).await?;
        self.conns.insert(key, sender);
        Ok(())
    }

    async fn handshake(
        &mut self,
        io: Box<dyn Io>,
    ) -> Result<http1::SendRequest<Full<Bytes>>, StepError> {
        let (sender, conn) = http1::Builder::new()
            .max_buf_size(MAX_HEAD_BYTES)
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| {
                StepError::new(
                    Reason::ProtocolError,
                    format!("HTTP/1.1 handshake failed: {}", super::os_text(&e)),
                )
            })?;
        self.tasks.spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Opens a connection to `url`'s origin: DNS, TCP and (for https) TLS, each failure with
    /// its own reason. The caller decides which phase it counts in.
    async fn open(&mut self, url: &Url) -> Result<http1::SendRequest<Full<Bytes>>, StepError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(StepError::new(
                Reason::ProtocolError,
                format!("{}: unsupported scheme", redact_url(url)),
            ));
        }
        let host = url.host_str().ok_or_else(|| {
            StepError::new(
                Reason::ProtocolError,
                format!("{}: no host", redact_url(url)),
            )
        })?;
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let mut rec = super::Recorder::default();
        let dialed = super::dial::dial(
            self.dns,
            self.proxies,
            url,
            &self.tls,
            self.deadline,
            self.deadline,
            &mut rec,
        )
        .await
        .map_err(|f| StepError::new(f.reason, f.message))?;
        if let (Some(p), Some(key)) = (&dialed.absolute_form, origin(url)) {
            self.absolute
                .insert(key, super::proxy::proxy_authorization(p));
        }
        let stream = dialed.io;
        let io: Box<dyn Io> = match url.scheme() {
            "http" => stream,
            "https" => {
                let trust = tls::trust_for(&self.tls)
                    .map_err(|e| StepError::new(Reason::TlsUntrusted, e))?;
                let (tls, _report) = trust.handshake(stream, &bare).await.map_err(|(e, _)| e)?;
                Box::new(tls)
            }
            other => {
                return Err(StepError::new(
                    Reason::ProtocolError,
                    format!("{url}: unsupported scheme {other:?}"),
                ));
            }
        };
        self.handshake(io).await
    }

    /// Sends one request on the origin's connection (reopening it once if the server closed it).
    async fn send_once(
        &mut self,
        method: &Method,
        url: &Url,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<Response<Incoming>, StepError> {
        let key = origin(url).ok_or_else(|| {
            StepError::new(Reason::ProtocolError, format!("{url}: not an http(s) URL"))
        })?;
        let mut sender = match self.conns.remove(&key) {
            Some(s) if !s.is_closed() => s,
            _ => self.open(url).await?,
        };
        if sender.ready().await.is_err() {
            sender = self.open(url).await?;
            sender.ready().await.map_err(|e| {
                StepError::new(
                    Reason::ProtocolError,
                    format!(
                        "{}: connection unusable: {}",
                        host_header(url),
                        super::os_text(&e)
                    ),
                )
            })?;
        }
        let proxy_auth = self.absolute.get(&key).cloned();
        let path = match (&proxy_auth, url.query()) {
            (Some(_), _) => super::proxy::absolute_form(url),
            (None, Some(q)) => format!("{}?{q}", url.path()),
            (None, None) => url.path().to_owned(),
        };
        let mut req = Request::builder()
            .method(method.clone())
            .uri(path)
            .body(Full::new(body.clone()))
            .map_err(|e| {
                StepError::new(
                    Reason::ProtocolError,
                    format!("cannot build request for {url}: {e}"),
                )
            })?;
        let h = req.headers_mut();
        h.extend(headers.clone());
        if let Ok(v) = HeaderValue::from_str(&host_header(url)) {
            h.insert(HOST, v);
        }
        h.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        if let Some(Some(auth)) = proxy_auth {
            h.insert(http::header::PROXY_AUTHORIZATION, auth);
        }
        let resp = sender.send_request(req).await.map_err(|e| {
            StepError::new(
                Reason::ProtocolError,
                format!(
                    "{method} {}: no valid HTTP response: {}",
                    redact_url(url),
                    super::os_text(&e)
                ),
            )
        })?;
        self.conns.insert(key, sender);
        Ok(resp)
    }

    /// Sends a request and follows redirects as Go's `http.Client` does for containerd.
    pub(crate) async fn fetch(
        &mut self,
        method: Method,
        url: &Url,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<(Response<Incoming>, Url), StepError> {
        self.fetch_authorized(method, url, headers, body, &|_| None)
            .await
    }

    /// Sends a request and follows up to [`MAX_REDIRECTS`] redirects the way Go's
    /// `http.Client` does under containerd's `request.do`:
    /// - 301/302/303 turn any method but GET and HEAD into a body-less GET; 307/308 keep both;
    /// - an `Authorization` header given in `headers` goes along only to the same host or a
    ///   subdomain of it (Go `shouldCopyHeaderOnRedirect`, host names without ports);
    /// - `authorize` is asked for every request, the first and each redirect (containerd's
    ///   `CheckRedirect` calls `request.authorize`): what it returns replaces the header, so a
    ///   host the authorizer already holds a token for gets its own;
    /// - a 3xx without `Location` is returned as it is;
    /// - more than [`MAX_REDIRECTS`] is an error ("stopped after 10 redirects").
    ///
    /// Returns the last response and the URL it answered.
    pub(crate) async fn fetch_authorized(
        &mut self,
        method: Method,
        url: &Url,
        headers: HeaderMap,
        body: Bytes,
        authorize: &(dyn Fn(&Url) -> Option<HeaderValue> + Sync),
    ) -> Result<(Response<Incoming>, Url), StepError> {
        let (mut method, mut url, mut headers, mut body) = (method, url.clone(), headers, body);
        let first_host = url.host_str().map(str::to_ascii_lowercase);
        for hop in 0..=MAX_REDIRECTS {
            // The header the request carries: the authorizer's for this host, else what the
            // previous request carried (when Go copies it along).
            if let Some(v) = authorize(&url) {
                headers.insert(AUTHORIZATION, v);
            }
            let resp = self.send_once(&method, &url, &headers, &body).await?;
            let status = resp.status();
            let follows = matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308);
            let Some(location) = resp
                .headers()
                .get(LOCATION)
                .filter(|_| follows)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
            else {
                return Ok((resp, url));
            };
            if hop == MAX_REDIRECTS {
                break;
            }
            let next = url.join(&location).map_err(|_| {
                StepError::new(
                    Reason::ProtocolError,
                    format!("{}: redirect to an invalid URL", redact_url(&url)),
                )
            })?;
            // Only HTTP(S) is followed, and refused before any connection is made: a Location
            // like `ftp://host:21/` must not make the probe dial an arbitrary port.
            if !matches!(next.scheme(), "http" | "https") {
                return Err(StepError::new(
                    Reason::ProtocolError,
                    format!(
                        "{}: redirect to a {} URL, not HTTP(S)",
                        redact_url(&url),
                        next.scheme()
                    ),
                ));
            }
            // Drain what is left of the redirect body so the connection can be reused.
            let _ = read_body(resp, 16 * 1024).await;
            if matches!(status.as_u16(), 301..=303)
                && method != Method::GET
                && method != Method::HEAD
            {
                method = Method::GET;
                body = Bytes::new();
            }
            let next_host = next.host_str().map(str::to_ascii_lowercase);
            if !same_domain_or_subdomain(first_host.as_deref(), next_host.as_deref()) {
                headers.remove(AUTHORIZATION);
            }
            url = next;
        }
        Err(StepError::new(
            Reason::ProtocolError,
            format!(
                "stopped after {MAX_REDIRECTS} redirects, the last to {}",
                redact_url(&url)
            ),
        ))
    }
}

/// Go's `isDomainOrSubdomain(sub, parent)`: `sub` is `parent` or ends with `.parent`.
fn same_domain_or_subdomain(parent: Option<&str>, sub: Option<&str>) -> bool {
    match (parent, sub) {
        (Some(p), Some(s)) => {
            s == p
                || (s.parse::<IpAddr>().is_err()
                    && s.len() > p.len()
                    && s.ends_with(p)
                    && s.as_bytes()[s.len() - p.len() - 1] == b'.')
        }
        _ => false,
    }
}

/// Reads a body of at most `limit` bytes.
///
/// # Errors
/// `protocol_error` when the body is larger or the transfer breaks.
pub(crate) async fn read_body(resp: Response<Incoming>, limit: usize) -> Result<Bytes, StepError> {
    match Limited::new(resp.into_body(), limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(StepError::new(
            Reason::ProtocolError,
            format!("the response body is larger than {limit} bytes"),
        )),
        Err(e) => Err(StepError::new(
            Reason::ProtocolError,
            format!("the response body broke off: {}", super::os_text(&e)),
        )),
    }
}

/// A URL for messages: without query string and user info (they may carry tokens).
pub(crate) fn redact_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}
