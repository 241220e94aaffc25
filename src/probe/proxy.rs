//! The dial through a proxy, as Go's `Transport.dialConn` does it for containerd.
//!
//! [`crate::node::proxy::ProxyEnv::proxy_for`] says *whether* and *which* proxy; this file
//! speaks to it. What Go does after dialing `canonicalAddr(proxyURL)` (measured with ctr
//! 1.6.20 against loopback listeners, and read in `net/http/transport.go`):
//!
//! | proxy scheme | target `https://` | target `http://` |
//! |---|---|---|
//! | `http` (and unknown schemes) | [`http_connect`] on the TCP stream, then TLS to the target through the tunnel | no tunnel: requests in absolute form ([`absolute_form`]) with [`proxy_authorization`] |
//! | `https` | TLS to the proxy (server name [`ProxyUrl::host`], **the registry host's TLS settings**: Go uses one `TLSClientConfig` for both), then as above over that TLS stream | as above, over TLS to the proxy |
//! | `socks5`, `socks5h` | [`socks5_connect`], then TLS to the target | [`socks5_connect`], then plain HTTP |
//!
//! How the orchestrator calls it (connect phase):
//! 1. `let target = target_addr(&url)` (`host:port` as Go writes it);
//! 2. resolve and [`super::tcp::connect`] to `proxy.host()`:`proxy.port()?` — a DNS or TCP
//!    failure there is the proxy's (Go wraps it as `proxyconnect tcp: …`);
//! 3. for [`ProxyKind::Https`], the TLS handshake to the proxy;
//! 4. [`http_connect`] or [`socks5_connect`]; the returned stream is the tunnel;
//! 5. the TLS handshake to the *target* host over the tunnel, as without a proxy.
//!
//! Every function is bounded by the caller's deadline; [`http_connect`] also by Go's own
//! one-minute limit on the `CONNECT` exchange.
//!
//! [`ProxyKind::Https`]: crate::node::proxy::ProxyKind::Https

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderValue;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;
use url::Url;

use super::{MAX_HEAD_BYTES, StepError};
use crate::node::proxy::ProxyUrl;
use crate::outcome::Reason;

/// Go's limit on the `CONNECT` write and response read (`dialConn`:
/// `testHookProxyConnectTimeout(ctx, 1*time.Minute)`).
pub(crate) const GO_PROXY_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// The `User-Agent` of Go's `CONNECT` request: `Request.write`'s default, since containerd
/// sets no `ProxyConnectHeader`. The proxy sees what it sees from containerd.
const GO_USER_AGENT: &str = "Go-http-client/1.1";

/// `canonicalAddr(req.URL)`: the `host:port` Go asks the proxy for — the host as written
/// (IPv6 in brackets), the URL's port or the scheme's default. `None` for a URL without a
/// host or a known port.
pub(crate) fn target_addr(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    let port = url.port_or_known_default()?;
    Some(format!("{host}:{port}"))
}

/// The request target of a plain-`http://` request sent to an HTTP proxy (`Request.write`
/// with `usingProxy`): `scheme://host[:port]/path?query`, the port only when the URL has
/// one. Measured: `HEAD http://registry.test:5000/v2/foo/manifests/bar HTTP/1.1`.
pub(crate) fn absolute_form(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    let mut s = format!("{}://{host}", url.scheme());
    if let Some(p) = url.port() {
        s.push_str(&format!(":{p}"));
    }
    s.push_str(url.path());
    if let Some(q) = url.query() {
        s.push('?');
        s.push_str(q);
    }
    s
}

/// The `Proxy-Authorization` header value Go adds (`connectMethod.proxyAuth`) to `CONNECT`
/// and to absolute-form requests, marked sensitive; `None` without user info.
pub(crate) fn proxy_authorization(proxy: &ProxyUrl) -> Option<HeaderValue> {
    let secret = proxy.authorization()?;
    let mut v = HeaderValue::from_str(secret.expose()).ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// A stream with bytes already read from it in front: what a proxy sent after its `200`
/// head is not lost. (Go discards its reader's buffer here, trusting that "TLS server will
/// not speak until spoken to"; keeping the bytes makes a talkative proxy fail the handshake
/// visibly instead of by timing.)
pub(crate) struct Tunnel<S> {
    inner: S,
    buffered: Vec<u8>,
    pos: usize,
}

impl<S> Tunnel<S> {
    /// The bytes received after the proxy's response head and not read yet.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> &[u8] {
        &self.buffered[self.pos..]
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tunnel<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.buffered.len() {
            let n = buf.remaining().min(this.buffered.len() - this.pos);
            buf.put_slice(&this.buffered[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.buffered.len() {
                this.buffered = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tunnel<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The proxy as messages name it: its URL without password, the variable it came from and
/// where that was set.
fn named(proxy: &ProxyUrl) -> String {
    format!("the proxy {proxy} (from {})", proxy.origin())
}

fn credentials_note(proxy: &ProxyUrl) -> String {
    match proxy.username() {
        Some(u) => format!(
            "it rejected the credentials in {} (user {u:?})",
            proxy.variable()
        ),
        None => format!(
            "no credentials were sent: {} has no user:password@",
            proxy.variable()
        ),
    }
}

/// The `CONNECT` exchange of `dialConn` for an `https://` target, on an established stream
/// to the proxy (TCP, or TLS for an `https://` proxy). `target` is [`target_addr`].
///
/// Writes exactly what Go writes (`CONNECT host:port HTTP/1.1`, `Host`, `User-Agent`,
/// `Proxy-Authorization` when the URL has user info), reads the response head (at most
/// [`MAX_HEAD_BYTES`], by the deadline and Go's one minute), and succeeds only on status
/// `200`, as Go does (a `201` fails too).
///
/// # Errors
/// - `407` → `auth_failed`, saying whether credentials were sent;
/// - any other status → `connect_error` with the status line and the text containerd prints;
/// - no answer by the deadline → `connect_timeout`; the proxy closing → `connect_error`;
/// - an answer that is not HTTP, or too large → `protocol_error`.
pub(crate) async fn http_connect<S>(
    mut stream: S,
    proxy: &ProxyUrl,
    target: &str,
    deadline: Instant,
) -> Result<Tunnel<S>, StepError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let go_limit = Instant::now() + GO_PROXY_CONNECT_TIMEOUT;
    let limit = deadline.min(go_limit);
    let mut req =
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: {GO_USER_AGENT}\r\n");
    if let Some(auth) = proxy.authorization() {
        req.push_str("Proxy-Authorization: ");
        req.push_str(auth.expose());
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let exchange = async {
        stream.write_all(req.as_bytes()).await?;
        stream.flush().await?;
        read_head(&mut stream).await
    };
    let (buf, head_len) = match tokio::time::timeout_at(limit, exchange).await {
        Err(_) => {
            let why = if go_limit <= deadline {
                " (Go gives up after 1m)"
            } else {
                " (the probe's deadline)"
            };
            return Err(StepError::new(
                Reason::ConnectTimeout,
                format!(
                    "{} did not answer CONNECT {target} in time{why}",
                    named(proxy)
                ),
            ));
        }
        Ok(Err(HeadError::Io(e))) => {
            return Err(StepError::new(
                Reason::ConnectError,
                format!(
                    "{}: CONNECT {target} failed: {}",
                    named(proxy),
                    super::os_text(&e)
                ),
            ));
        }
        Ok(Err(HeadError::Closed(0))) => {
            return Err(StepError::new(
                Reason::ConnectError,
                format!(
                    "{} closed the connection without answering CONNECT {target}",
                    named(proxy)
                ),
            ));
        }
        Ok(Err(HeadError::Closed(n))) => {
            return Err(StepError::new(
                Reason::ProtocolError,
                format!(
                    "{}'s answer to CONNECT {target} broke off after {n} bytes",
                    named(proxy)
                ),
            ));
        }
        Ok(Err(HeadError::TooLarge)) => {
            return Err(StepError::new(
                Reason::ProtocolError,
                format!(
                    "{} answered CONNECT {target} with a response head over {MAX_HEAD_BYTES} bytes",
                    named(proxy)
                ),
            ));
        }
        Ok(Ok(v)) => v,
    };
    let head = String::from_utf8_lossy(&buf[..head_len]);
    let status = parse_head(&head).map_err(|why| {
        StepError::new(
            Reason::ProtocolError,
            format!(
                "{} did not answer CONNECT {target} in HTTP ({why}): check that {} names an HTTP proxy's port (not a SOCKS or TLS port, which need socks5:// or https://)",
                named(proxy),
                proxy.variable()
            ),
        )
    })?;
    if status.code == 200 {
        return Ok(Tunnel {
            inner: stream,
            buffered: buf[head_len..].to_vec(),
            pos: 0,
        });
    }
    // What containerd prints: the status text after the code (`dialConn`).
    let go_text = status
        .status
        .split_once(' ')
        .map_or("unknown status code", |(_, t)| t);
    let line = status.status.trim();
    if status.code == 407 {
        let realm = status
            .proxy_authenticate
            .as_deref()
            .map(|c| format!(" (Proxy-Authenticate: {c})"))
            .unwrap_or_default();
        return Err(StepError::new(
            Reason::AuthFailed,
            format!(
                "{} answered CONNECT {target} with {line}{realm}: {}; containerd reports \"{go_text}\"",
                named(proxy),
                credentials_note(proxy)
            ),
        ));
    }
    Err(StepError::new(
        Reason::ConnectError,
        format!(
            "{} refused CONNECT {target} with {line}; containerd reports \"{go_text}\"",
            named(proxy)
        ),
    ))
}

enum HeadError {
    Io(io::Error),
    /// The peer closed after this many bytes, before the head ended.
    Closed(usize),
    TooLarge,
}

impl From<io::Error> for HeadError {
    fn from(e: io::Error) -> Self {
        HeadError::Io(e)
    }
}

/// Reads until the empty line that ends a response head (`\r\n` or bare `\n` line ends, as
/// Go's `textproto.Reader` accepts). Returns everything read and the head's length.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Result<(Vec<u8>, usize), HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = head_end(&buf) {
            return Ok((buf, end));
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(HeadError::TooLarge);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(HeadError::Closed(buf.len()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The length of the head in `buf` (through its empty line), if complete.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut start = 0;
    while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
        let line = &buf[start..start + nl];
        if start > 0 && (line.is_empty() || line == b"\r") {
            return Some(start + nl + 1);
        }
        start += nl + 1;
    }
    None
}

struct Status {
    code: u16,
    /// `Response.Status`: `"407 Proxy Authentication Required"`.
    status: String,
    proxy_authenticate: Option<String>,
}

/// `http.ReadResponse`'s checks on a response head; the error is Go's wording.
fn parse_head(head: &str) -> Result<Status, String> {
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let first = lines.next().unwrap_or_default();
    let Some((proto, status)) = first.split_once(' ') else {
        return Err(format!("malformed HTTP response {:?}", shorten(first)));
    };
    let status = status.trim_start_matches(' ');
    let code = status.split_once(' ').map_or(status, |(c, _)| c);
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("malformed HTTP status code {:?}", shorten(code)));
    }
    if !go_http_version(proto) {
        return Err(format!("malformed HTTP version {:?}", shorten(proto)));
    }
    let mut proxy_authenticate = None;
    for (i, line) in lines.enumerate() {
        if line.is_empty() {
            break;
        }
        if i == 0 && line.starts_with([' ', '\t']) {
            return Err(format!(
                "malformed MIME header initial line: {:?}",
                shorten(line)
            ));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("malformed MIME header line: {:?}", shorten(line)));
        };
        if name.eq_ignore_ascii_case("proxy-authenticate") && proxy_authenticate.is_none() {
            proxy_authenticate = Some(shorten(value.trim()).to_owned());
        }
    }
    Ok(Status {
        code: code.parse().unwrap_or(0),
        status: status.to_owned(),
        proxy_authenticate,
    })
}

/// `ParseHTTPVersion`: `HTTP/<digit>.<digit>` (Go accepts one digit each).
fn go_http_version(v: &str) -> bool {
    let Some(rest) = v.strip_prefix("HTTP/") else {
        return false;
    };
    let b = rest.as_bytes();
    b.len() == 3 && b[0].is_ascii_digit() && b[1] == b'.' && b[2].is_ascii_digit()
}

/// At most 80 characters of peer-sent text for messages.
fn shorten(s: &str) -> &str {
    match s.char_indices().nth(80) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The SOCKS5 `CONNECT` of x/net's `internal/socks` (`Dialer.connect`), as Go's transport
/// runs it for `socks5://` and `socks5h://` proxies: the target **name** is sent (Go's
/// transport passes `canonicalAddr(req.URL)`, so neither scheme resolves locally — measured
/// with ctr 1.6.20), an IP literal as an address. With user info in the URL it offers
/// "no authentication" and "username/password" (RFC 1929) and authenticates if the proxy
/// picks the latter. Bounded by `deadline`. `target` is [`target_addr`].
///
/// # Errors
/// The proxy's reply code → `connect_refused` (5), `connect_unreachable` (3, 4),
/// `connect_timeout` (6), `connect_error` (others); rejected or missing credentials →
/// `auth_failed`; a reply that is not SOCKS5 → `protocol_error`; the deadline →
/// `connect_timeout`.
pub(crate) async fn socks5_connect<S>(
    mut stream: S,
    proxy: &ProxyUrl,
    target: &str,
    deadline: Instant,
) -> Result<S, StepError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (host, port) = split_target(target).ok_or_else(|| {
        StepError::new(
            Reason::ProtocolError,
            format!(
                "{}: {target} is not a host:port a SOCKS proxy can be asked for",
                named(proxy)
            ),
        )
    })?;
    let fail = |reason: Reason, what: String| {
        StepError::new(
            reason,
            format!("{}: SOCKS5 CONNECT {target}: {what}", named(proxy)),
        )
    };
    let exchange = async {
        let with_user = proxy.has_credentials();
        let greeting: &[u8] = if with_user {
            &[5, 2, 0x00, 0x02]
        } else {
            &[5, 1, 0x00]
        };
        stream.write_all(greeting).await?;
        let mut b = [0u8; 2];
        stream.read_exact(&mut b).await?;
        if b[0] != 5 {
            return Ok(Err(fail(
                Reason::ProtocolError,
                format!(
                    "unexpected protocol version {} (is this a SOCKS5 proxy?)",
                    b[0]
                ),
            )));
        }
        match (b[1], with_user) {
            (0xff, _) => {
                return Ok(Err(fail(
                    Reason::AuthFailed,
                    format!(
                        "no acceptable authentication methods; {}",
                        credentials_note(proxy)
                    ),
                )));
            }
            (0x00, true) | (_, false) => {}
            (0x02, true) => {
                let user = proxy.username().unwrap_or_default().as_bytes();
                let pass = proxy.password().map_or("", |p| p.expose()).as_bytes();
                if user.is_empty() || user.len() > 255 || pass.len() > 255 {
                    return Ok(Err(fail(
                        Reason::AuthFailed,
                        format!(
                            "invalid username/password: {} needs a user name of 1-255 bytes and a password of at most 255",
                            proxy.variable()
                        ),
                    )));
                }
                let mut msg = vec![1, user.len() as u8];
                msg.extend_from_slice(user);
                msg.push(pass.len() as u8);
                msg.extend_from_slice(pass);
                stream.write_all(&msg).await?;
                stream.read_exact(&mut b).await?;
                if b[0] != 1 {
                    return Ok(Err(fail(
                        Reason::ProtocolError,
                        "invalid username/password version".to_owned(),
                    )));
                }
                if b[1] != 0 {
                    return Ok(Err(fail(
                        Reason::AuthFailed,
                        format!(
                            "username/password authentication failed; {}",
                            credentials_note(proxy)
                        ),
                    )));
                }
            }
            (m, true) => {
                return Ok(Err(fail(
                    Reason::ProtocolError,
                    format!("unsupported authentication method {m}"),
                )));
            }
        }
        let mut req = vec![5, 1, 0];
        match host.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => {
                req.push(1);
                req.extend_from_slice(&v4.octets());
            }
            Ok(IpAddr::V6(v6)) => {
                req.push(4);
                req.extend_from_slice(&v6.octets());
            }
            Err(_) => {
                if host.len() > 255 {
                    return Ok(Err(fail(Reason::ProtocolError, "FQDN too long".to_owned())));
                }
                req.push(3);
                req.push(host.len() as u8);
                req.extend_from_slice(host.as_bytes());
            }
        }
        req.extend_from_slice(&port.to_be_bytes());
        stream.write_all(&req).await?;
        let mut r = [0u8; 4];
        stream.read_exact(&mut r).await?;
        if r[0] != 5 {
            return Ok(Err(fail(
                Reason::ProtocolError,
                format!("unexpected protocol version {}", r[0]),
            )));
        }
        if r[1] != 0 {
            let (reason, text) = socks_reply(r[1]);
            return Ok(Err(fail(reason, format!("the proxy answered {text}"))));
        }
        if r[2] != 0 {
            return Ok(Err(fail(
                Reason::ProtocolError,
                "non-zero reserved field".to_owned(),
            )));
        }
        let len = match r[3] {
            1 => 4,
            4 => 16,
            3 => {
                let mut l = [0u8; 1];
                stream.read_exact(&mut l).await?;
                usize::from(l[0])
            }
            t => {
                return Ok(Err(fail(
                    Reason::ProtocolError,
                    format!("unknown address type {t}"),
                )));
            }
        };
        let mut bound = vec![0u8; len + 2];
        stream.read_exact(&mut bound).await?;
        Ok::<_, io::Error>(Ok(()))
    };
    match tokio::time::timeout_at(deadline, exchange).await {
        Err(_) => Err(fail(
            Reason::ConnectTimeout,
            "no answer before the probe's deadline".to_owned(),
        )),
        Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Err(fail(
            Reason::ConnectError,
            "the proxy closed the connection".to_owned(),
        )),
        Ok(Err(e)) => Err(fail(Reason::ConnectError, e.to_string())),
        Ok(Ok(Err(e))) => Err(e),
        Ok(Ok(Ok(()))) => Ok(stream),
    }
}

/// `socks.Reply.String` and the reason each reply maps to.
fn socks_reply(code: u8) -> (Reason, String) {
    let (reason, text) = match code {
        1 => (Reason::ConnectError, "general SOCKS server failure"),
        2 => (Reason::ConnectError, "connection not allowed by ruleset"),
        3 => (Reason::ConnectUnreachable, "network unreachable"),
        4 => (Reason::ConnectUnreachable, "host unreachable"),
        5 => (Reason::ConnectRefused, "connection refused"),
        6 => (Reason::ConnectTimeout, "TTL expired"),
        7 => (Reason::ProtocolError, "command not supported"),
        8 => (Reason::ProtocolError, "address type not supported"),
        _ => (Reason::ConnectError, ""),
    };
    let text = if text.is_empty() {
        format!("unknown code: {code}")
    } else {
        text.to_owned()
    };
    // containerd prints "unknown error <text>" (`Dialer.connect`).
    (
        reason,
        format!("{text} (containerd reports \"unknown error {text}\")"),
    )
}

/// `socks.splitHostPort`: `host:port` with a port of 1–65535; brackets removed.
fn split_target(target: &str) -> Option<(String, u16)> {
    let (host, port) = target.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port.parse().ok().filter(|p| *p >= 1)?;
    Some((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::JoinHandle;

    use super::*;
    use crate::node::proxy::ProxyEnv;

    fn proxy(value: &str) -> ProxyUrl {
        ProxyEnv::from_vars([("HTTPS_PROXY", value)])
            .https_proxy()
            .unwrap()
            .clone()
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    /// A one-connection server: records what the client sent up to the end of its head (or
    /// `want` bytes), then writes `reply` and keeps the connection open until the client
    /// closes it (or closes it at once with `close`).
    async fn server(reply: Vec<u8>, want: usize, close: bool) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        tokio::spawn(async move {
            let (mut c, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            while head_end(&got).is_none() && got.len() < want {
                let n = c.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            *s.lock().unwrap() = got;
            if !reply.is_empty() {
                let _ = c.write_all(&reply).await;
            }
            if !close {
                let _ = c.read(&mut buf).await;
            }
        });
        (addr, seen)
    }

    async fn connect_via(
        reply: &[u8],
        proxy_url: &str,
    ) -> (Result<Tunnel<TcpStream>, StepError>, String) {
        let (addr, seen) = server(reply.to_vec(), usize::MAX, false).await;
        let s = TcpStream::connect(addr).await.unwrap();
        let r = http_connect(s, &proxy(proxy_url), "registry.test:443", soon()).await;
        let seen = String::from_utf8(seen.lock().unwrap().clone()).unwrap();
        (r, seen)
    }

    /// The bytes of Go's CONNECT, as ctr 1.6.20 sent them to a listener.
    #[tokio::test]
    async fn connect_request_is_gos_and_leftover_bytes_are_kept() {
        let (r, seen) = connect_via(
            b"HTTP/1.1 200 Connection established\r\n\r\nEARLY",
            "http://us%40er:p%3Ass@127.0.0.1:3128",
        )
        .await;
        assert_eq!(
            seen,
            "CONNECT registry.test:443 HTTP/1.1\r\nHost: registry.test:443\r\nUser-Agent: Go-http-client/1.1\r\nProxy-Authorization: Basic dXNAZXI6cDpzcw==\r\n\r\n"
        );
        let mut t = r.unwrap();
        assert_eq!(t.buffered(), b"EARLY");
        let mut five = [0u8; 5];
        t.read_exact(&mut five).await.unwrap();
        assert_eq!(&five, b"EARLY");
        let (_, seen) = connect_via(b"HTTP/1.0 200 OK\n\n", "http://127.0.0.1:1").await;
        assert!(!seen.contains("Proxy-Authorization"), "{seen}");
    }

    #[tokio::test]
    async fn proxy_407_is_auth_failed_and_says_whether_credentials_were_sent() {
        let reply = b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"corp\"\r\n\r\n";
        let (r, _) = connect_via(reply, "http://bob:hunter2@127.0.0.1:3128").await;
        let e = r.err().unwrap();
        assert_eq!(e.reason, Reason::AuthFailed);
        assert_eq!(
            e.message,
            "the proxy http://bob:***@127.0.0.1:3128 (from HTTPS_PROXY in pullprobe's environment) answered CONNECT registry.test:443 with 407 Proxy Authentication Required (Proxy-Authenticate: Basic realm=\"corp\"): it rejected the credentials in HTTPS_PROXY (user \"bob\"); containerd reports \"Proxy Authentication Required\""
        );
        let (r, _) = connect_via(reply, "http://127.0.0.1:3128").await;
        let e = r.err().unwrap();
        assert_eq!(e.reason, Reason::AuthFailed);
        assert!(
            e.message
                .contains("no credentials were sent: HTTPS_PROXY has no user:password@"),
            "{}",
            e.message
        );
    }

    /// `dialConn` accepts only 200; the error text is the status text ("Forbidden by
    /// policy", as ctr printed it).
    #[tokio::test]
    async fn other_statuses_are_connect_errors_with_gos_text() {
        let (r, _) = connect_via(
            b"HTTP/1.1 403 Forbidden by policy\r\n\r\n",
            "http://127.0.0.1:1",
        )
        .await;
        let e = r.err().unwrap();
        assert_eq!(e.reason, Reason::ConnectError);
        assert!(e.message.ends_with("refused CONNECT registry.test:443 with 403 Forbidden by policy; containerd reports \"Forbidden by policy\""), "{}", e.message);
        let (r, _) = connect_via(b"HTTP/1.1 201 Created\r\n\r\n", "http://127.0.0.1:1").await;
        assert_eq!(r.err().unwrap().reason, Reason::ConnectError);
        let (r, _) = connect_via(b"HTTP/1.1 502\r\n\r\n", "http://127.0.0.1:1").await;
        assert!(r.err().unwrap().message.contains("\"unknown status code\""));
    }

    #[tokio::test]
    async fn garbage_closed_and_oversized_answers() {
        let (r, _) = connect_via(b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "http://127.0.0.1:1").await;
        let e = r.err().unwrap();
        assert_eq!(e.reason, Reason::ProtocolError);
        assert!(
            e.message
                .contains("malformed HTTP response \"SSH-2.0-OpenSSH_9.2\""),
            "{}",
            e.message
        );
        let (r, _) = connect_via(
            b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
            "http://127.0.0.1:1",
        )
        .await;
        assert!(
            r.err()
                .unwrap()
                .message
                .contains("malformed MIME header line")
        );

        let (addr, _) = server(Vec::new(), usize::MAX, true).await;
        let s = TcpStream::connect(addr).await.unwrap();
        let e = http_connect(s, &proxy("http://127.0.0.1:1"), "registry.test:443", soon())
            .await
            .err()
            .unwrap();
        assert_eq!(e.reason, Reason::ConnectError);
        assert!(
            e.message
                .contains("closed the connection without answering CONNECT"),
            "{}",
            e.message
        );

        let (addr, _) = server(b"HTTP/1.1 200 OK\r\n".to_vec(), usize::MAX, true).await;
        let s = TcpStream::connect(addr).await.unwrap();
        let e = http_connect(s, &proxy("http://127.0.0.1:1"), "registry.test:443", soon())
            .await
            .err()
            .unwrap();
        assert_eq!(e.reason, Reason::ProtocolError);
        assert!(
            e.message.contains("broke off after 17 bytes"),
            "{}",
            e.message
        );

        let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
        while big.len() <= MAX_HEAD_BYTES + 10 {
            big.extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789\r\n");
        }
        let (r, _) = connect_via(&big, "http://127.0.0.1:1").await;
        let e = r.err().unwrap();
        assert_eq!(e.reason, Reason::ProtocolError);
        assert!(e.message.contains("response head over"), "{}", e.message);
    }

    #[tokio::test]
    async fn a_silent_proxy_times_out_at_the_deadline() {
        let (addr, _) = server(Vec::new(), usize::MAX, false).await;
        let s = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        let deadline = started + Duration::from_millis(300);
        let e = http_connect(
            s,
            &proxy("http://127.0.0.1:1"),
            "registry.test:443",
            deadline,
        )
        .await
        .err()
        .unwrap();
        assert_eq!(e.reason, Reason::ConnectTimeout);
        assert!(
            e.message.contains(
                "did not answer CONNECT registry.test:443 in time (the probe's deadline)"
            ),
            "{}",
            e.message
        );
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    /// The bytes x/net's socks dialer sent from ctr 1.6.20: greeting `05 02 00 02` with
    /// credentials, RFC 1929 `01 01 'u' 01 'p'`, then CONNECT to the *name*.
    #[tokio::test]
    async fn socks5_sends_the_name_and_authenticates_like_x_net() {
        let reply = [
            &[5u8, 2][..],
            &[1, 0],
            &[5, 0, 0, 1, 10, 0, 0, 1, 0x01, 0xbb],
        ]
        .concat();
        let (addr, seen) = socks_server(reply, 4 + 5 + 20).await;
        let s = TcpStream::connect(addr).await.unwrap();
        socks5_connect(
            s,
            &proxy("socks5://u:p@127.0.0.1:1080"),
            "registry.test:443",
            soon(),
        )
        .await
        .unwrap();
        assert_eq!(
            seen.await.unwrap(),
            b"\x05\x02\x00\x02\x01\x01u\x01p\x05\x01\x00\x03\rregistry.test\x01\xbb"
        );
        // Without credentials, one method; an IP literal is sent as an address.
        let (addr, seen) = socks_server(
            [&[5u8, 0][..], &[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]].concat(),
            3 + 10,
        )
        .await;
        let s = TcpStream::connect(addr).await.unwrap();
        socks5_connect(
            s,
            &proxy("socks5h://127.0.0.1:1080"),
            "10.1.2.3:8443",
            soon(),
        )
        .await
        .unwrap();
        assert_eq!(
            seen.await.unwrap(),
            b"\x05\x01\x00\x05\x01\x00\x01\x0a\x01\x02\x03\x20\xfb"
        );
    }

    #[tokio::test]
    async fn socks5_failures_have_their_reasons() {
        let cases: &[(&str, Vec<u8>, Reason, &str)] = &[
            (
                "socks5://127.0.0.1:1",
                vec![5, 0, 5, 5, 0, 1, 0, 0, 0, 0, 0, 0],
                Reason::ConnectRefused,
                "connection refused",
            ),
            (
                "socks5://127.0.0.1:1",
                vec![5, 0, 5, 4, 0, 1, 0, 0, 0, 0, 0, 0],
                Reason::ConnectUnreachable,
                "host unreachable",
            ),
            (
                "socks5://127.0.0.1:1",
                vec![5, 0xff],
                Reason::AuthFailed,
                "no credentials were sent",
            ),
            (
                "socks5://u:bad@127.0.0.1:1",
                vec![5, 2, 1, 1],
                Reason::AuthFailed,
                "username/password authentication failed; it rejected the credentials in HTTPS_PROXY (user \"u\")",
            ),
            (
                "socks5://127.0.0.1:1",
                b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(),
                Reason::ProtocolError,
                "unexpected protocol version 72",
            ),
        ];
        for (url, reply, reason, text) in cases {
            let (addr, _) = socks_server(reply.clone(), 3).await;
            let s = TcpStream::connect(addr).await.unwrap();
            let e = socks5_connect(s, &proxy(url), "registry.test:443", soon())
                .await
                .err()
                .unwrap();
            assert_eq!(e.reason, *reason, "{url} {reply:?}: {}", e.message);
            assert!(e.message.contains(text), "{}", e.message);
            assert!(!e.message.contains("bad@"), "{}", e.message);
        }
    }

    /// A SOCKS peer that sends `reply` at once and returns the first `want` bytes it got.
    async fn socks_server(reply: Vec<u8>, want: usize) -> (SocketAddr, JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut c, _) = l.accept().await.unwrap();
            let _ = c.write_all(&reply).await;
            let mut got = Vec::new();
            let mut buf = [0u8; 512];
            while got.len() < want {
                match tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            got
        });
        (addr, task)
    }

    #[test]
    fn target_and_absolute_forms() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            target_addr(&u("https://registry.test/v2/")).unwrap(),
            "registry.test:443"
        );
        assert_eq!(
            target_addr(&u("https://[::1]:5000/v2/")).unwrap(),
            "[::1]:5000"
        );
        assert_eq!(target_addr(&u("http://r.test/")).unwrap(), "r.test:80");
        assert_eq!(
            absolute_form(&u(
                "http://registry.test:5000/v2/foo/manifests/bar?ns=docker.io"
            )),
            "http://registry.test:5000/v2/foo/manifests/bar?ns=docker.io"
        );
        assert_eq!(
            absolute_form(&u("http://registry.test/v2/")),
            "http://registry.test/v2/"
        );
        let h = proxy_authorization(&proxy("http://bob:pw@p:1")).unwrap();
        assert_eq!(h, "Basic Ym9iOnB3");
        assert!(h.is_sensitive());
        assert!(proxy_authorization(&proxy("http://p:1")).is_none());
        assert_eq!(split_target("[::1]:443"), Some(("::1".to_owned(), 443)));
        assert_eq!(split_target("h:0"), None);
    }
}
