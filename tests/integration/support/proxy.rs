//! An HTTP proxy on loopback for tests of the pull path through `HTTPS_PROXY`/`HTTP_PROXY`.
//!
//! [`ConnectProxy`] answers `CONNECT host:port` by tunnelling to the target, and absolute-form
//! requests (`GET http://host:port/path`, what Go sends for `http://` targets) by forwarding
//! them. It resolves host names only from its own table ([`ConnectProxyBuilder::map_host`]),
//! so a test can target `registry.test:PORT` that nothing else resolves; it never connects to
//! anything but loopback (an unmapped name or a non-loopback address gets `502`). It can
//! require Basic credentials (`407` otherwise), records what it was asked
//! ([`ConnectProxy::seen`]), and has modes for broken proxies ([`ProxyMode`]).
//!
//! ```ignore
//! let proxy = ConnectProxy::start()
//!     .require_basic("user", "pass")
//!     .map_host("registry.test", Ipv4Addr::LOCALHOST)
//!     .await;
//! let env = format!("HTTPS_PROXY={}", proxy.url_with("user", "pass"));
//! // … probe https://registry.test:<registry port>/ …
//! assert_eq!(proxy.seen()[0].target, format!("registry.test:{port}"));
//! ```
//!
//! Forwarded plain-HTTP connections go to the host of their first request; later requests on
//! the same client connection follow to that host (enough for one registry). Everything stops
//! when the [`ConnectProxy`] is dropped.

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, DropGuard};

/// Requests heads larger than this are answered `431` and closed.
const MAX_HEAD: usize = 64 * 1024;

/// How the proxy answers.
#[derive(Clone, Debug, Default)]
pub enum ProxyMode {
    /// Tunnel `CONNECT`s and forward absolute-form requests (after the credential check).
    #[default]
    Forward,
    /// Like [`ProxyMode::Forward`], but writes these bytes right after the `200` of a
    /// `CONNECT`, before any byte from the target (a proxy that talks first).
    ForwardAfter(Vec<u8>),
    /// Answer every request with this status and reason phrase (no body), then close.
    Status(u16, &'static str),
    /// Write these bytes instead of an HTTP answer, then close.
    Garbage(Vec<u8>),
    /// Read the request and never answer; the connection stays open.
    Silent,
    /// Close the connection as soon as the request head is read.
    Close,
}

/// One request the proxy read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// `CONNECT`, or the method of a forwarded request.
    pub method: String,
    /// The request target: `host:port` for `CONNECT`, the absolute URL otherwise.
    pub target: String,
    /// The `Proxy-Authorization` header, as sent.
    pub proxy_authorization: Option<String>,
    /// The whole request head, as sent.
    pub head: String,
    /// The status the proxy answered (`0` when it did not answer).
    pub status: u16,
}

struct State {
    basic: Option<String>,
    hosts: HashMap<String, IpAddr>,
    mode: ProxyMode,
    seen: Mutex<Vec<Seen>>,
}

/// Configures a [`ConnectProxy`]; `.await` it to start the proxy.
#[must_use = "await the builder to start the proxy"]
pub struct ConnectProxyBuilder {
    basic: Option<(String, String)>,
    hosts: HashMap<String, IpAddr>,
    mode: ProxyMode,
}

impl ConnectProxyBuilder {
    /// Answer `407` unless `Proxy-Authorization` is `Basic base64(user:pass)`.
    pub fn require_basic(mut self, user: &str, pass: &str) -> Self {
        self.basic = Some((user.to_owned(), pass.to_owned()));
        self
    }

    /// Resolve `name` to `addr` (which must be loopback); the port comes from the request.
    pub fn map_host(mut self, name: &str, addr: impl Into<IpAddr>) -> Self {
        let addr = addr.into();
        assert!(
            addr.is_loopback(),
            "the test proxy connects to loopback only"
        );
        self.hosts.insert(name.to_ascii_lowercase(), addr);
        self
    }

    pub fn mode(mut self, mode: ProxyMode) -> Self {
        self.mode = mode;
        self
    }

    async fn run(self) -> ConnectProxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let basic = self.basic.map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        let state = Arc::new(State {
            basic,
            hosts: self.hosts,
            mode: self.mode,
            seen: Mutex::default(),
        });
        let stop = CancellationToken::new();
        let (st, token) = (state.clone(), stop.clone());
        super::spawn_until(&stop, async move {
            while let Ok((client, _)) = listener.accept().await {
                let st = st.clone();
                super::spawn_until(&token, async move {
                    serve(client, st).await;
                });
            }
        });
        ConnectProxy {
            addr,
            state,
            _stop: stop.drop_guard(),
        }
    }
}

impl IntoFuture for ConnectProxyBuilder {
    type Output = ConnectProxy;
    type IntoFuture = Pin<Box<dyn Future<Output = ConnectProxy> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// A running test proxy on `127.0.0.1`; stops when dropped.
pub struct ConnectProxy {
    addr: SocketAddr,
    state: Arc<State>,
    _stop: DropGuard,
}

impl ConnectProxy {
    /// A builder: `ConnectProxy::start().require_basic(..).map_host(..).await`.
    pub fn start() -> ConnectProxyBuilder {
        ConnectProxyBuilder {
            basic: None,
            hosts: HashMap::new(),
            mode: ProxyMode::Forward,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for `HTTPS_PROXY`/`HTTP_PROXY`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://user:pass@127.0.0.1:PORT`, both parts written as given (percent-encode them
    /// yourself where a URL needs it).
    pub fn url_with(&self, user: &str, pass: &str) -> String {
        format!("http://{user}:{pass}@{}", self.addr)
    }

    /// Every request read so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
}

/// The end of a request head in `buf`, if complete (`\r\n\r\n` or `\n\n`).
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn answer(status: u16, reason: &str, extra: &str) -> Vec<u8> {
    format!("HTTP/1.1 {status} {reason}\r\n{extra}Content-Length: 0\r\n\r\n").into_bytes()
}

async fn serve(mut client: TcpStream, st: Arc<State>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(end) = head_end(&buf) {
            break end;
        }
        if buf.len() > MAX_HEAD {
            let _ = client
                .write_all(&answer(431, "Request Header Fields Too Large", ""))
                .await;
            return;
        }
        match client.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let rest = buf[end..].to_vec();
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let target = first.next().unwrap_or_default().to_owned();
    let proxy_authorization = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("proxy-authorization"))
        .map(|(_, v)| v.trim().to_owned());
    let record = |status: u16| {
        st.seen.lock().unwrap().push(Seen {
            method: method.clone(),
            target: target.clone(),
            proxy_authorization: proxy_authorization.clone(),
            head: head.clone(),
            status,
        });
    };
    match &st.mode {
        ProxyMode::Status(code, reason) => {
            record(*code);
            let _ = client.write_all(&answer(*code, reason, "")).await;
            return;
        }
        ProxyMode::Garbage(bytes) => {
            record(0);
            let _ = client.write_all(bytes).await;
            return;
        }
        ProxyMode::Silent => {
            record(0);
            let _ = client.read(&mut chunk).await;
            std::future::pending::<()>().await;
        }
        ProxyMode::Close => {
            record(0);
            return;
        }
        ProxyMode::Forward | ProxyMode::ForwardAfter(_) => {}
    }
    if let Some(want) = &st.basic
        && proxy_authorization.as_deref() != Some(want.as_str())
    {
        record(407);
        let _ = client
            .write_all(&answer(
                407,
                "Proxy Authentication Required",
                "Proxy-Authenticate: Basic realm=\"pullprobe-test\"\r\n",
            ))
            .await;
        return;
    }
    let authority = if method == "CONNECT" {
        target.clone()
    } else {
        // Absolute form: scheme://authority/path.
        target
            .split_once("://")
            .map(|(_, r)| r.split('/').next().unwrap_or_default().to_owned())
            .unwrap_or_default()
    };
    let Some(upstream) = resolve(&st, &authority, method != "CONNECT") else {
        record(502);
        let _ = client
            .write_all(&answer(
                502,
                "Bad Gateway (name not mapped or not loopback)",
                "",
            ))
            .await;
        return;
    };
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        record(502);
        let _ = client.write_all(&answer(502, "Bad Gateway", "")).await;
        return;
    };
    record(200);
    if method == "CONNECT" {
        let mut ok = b"HTTP/1.1 200 Connection established\r\n\r\n".to_vec();
        if let ProxyMode::ForwardAfter(early) = &st.mode {
            ok.extend_from_slice(early);
        }
        if client.write_all(&ok).await.is_err() {
            return;
        }
        if !rest.is_empty() && server.write_all(&rest).await.is_err() {
            return;
        }
    } else if server.write_all(&buf).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

/// `host:port` to a loopback address: mapped names, or loopback IP literals.
fn resolve(st: &State, authority: &str, http_default: bool) -> Option<SocketAddr> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let (h, after) = rest.split_once(']')?;
            (h, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(p) => p.parse::<u16>().ok()?,
        None if http_default => 80,
        None => return None,
    };
    let ip = match host.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => *st.hosts.get(&host.to_ascii_lowercase())?,
    };
    ip.is_loopback().then_some(SocketAddr::new(ip, port))
}
