//! Hostile and broken HTTP/1.1 servers: raw tokio TCP servers that write exactly the bytes a
//! test chooses — trickled, endless, oversized, malformed — where hyper (in `registry.rs`)
//! would refuse to.
//!
//! A [`Hostile`] server reads each request head (and discards a `Content-Length` body),
//! records it, and asks the test's handler for a [`Reply`]. Connections are kept alive after
//! a [`Reply::Bytes`], as a registry's would be, so the engine's connection reuse is exercised.
//! [`healthy`] answers like a small working registry with Bearer auth and its token server on
//! the same origin; a handler overrides the routes it wants broken and falls back to it.
//! Every task stops when the [`Hostile`] is dropped.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, DropGuard};

/// The token [`healthy`] hands out.
pub const TOKEN: &str = "hostile-token";
/// The digest [`healthy`] reports for every manifest.
pub const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// Requests heads larger than this are refused (the connection is closed).
const MAX_REQUEST_HEAD: usize = 1024 * 1024;

/// One request as the server read it. Header values are raw bytes.
#[derive(Clone, Debug)]
pub struct RawRequest {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl RawRequest {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    pub fn is_manifest_head(&self) -> bool {
        self.method == "HEAD" && self.path().contains("/manifests/")
    }
}

/// What the server does with one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Writes these bytes, then reads the next request on the same connection.
    Bytes(Vec<u8>),
    /// Writes these bytes, then closes the connection (FIN).
    BytesThenClose(Vec<u8>),
    /// Writes `at_once`, then the bytes of `trickled` one at a time, `every` apart.
    Trickle {
        at_once: Vec<u8>,
        trickled: Vec<u8>,
        every: Duration,
    },
    /// Writes `head`, then `chunk` over and over until the client goes away.
    Endless { head: Vec<u8>, chunk: Vec<u8> },
    /// Resets the connection (RST).
    Reset,
    /// Never answers; holds the connection open.
    Hang,
}

/// A status line, the given headers, `Content-Length` and the body.
pub fn response(status: u16, headers: &[(&str, &[u8])], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)).into_bytes();
    write_headers(&mut out, headers);
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

fn write_headers(out: &mut Vec<u8>, headers: &[(&str, &[u8])]) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
}

/// A JSON `200 OK` response.
pub fn json(body: &[u8]) -> Vec<u8> {
    response(200, &[("Content-Type", b"application/json")], body)
}

/// A redirect with this status to `location`.
pub fn redirect(status: u16, location: &str) -> Vec<u8> {
    response(status, &[("Location", location.as_bytes())], b"")
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Whatever",
    }
}

/// The `WWW-Authenticate` value [`healthy`] sends: a Bearer realm on the server itself.
pub fn challenge_for(me: SocketAddr) -> String {
    format!(r#"Bearer realm="http://{me}/token",service="hostile""#)
}

/// A working registry with Bearer auth on `me`: `/v2/` challenges (200 with the token),
/// `/token` hands out [`TOKEN`], a manifest `HEAD` with the token answers 200 with
/// [`DIGEST`], anything else 404.
pub fn healthy(req: &RawRequest, me: SocketAddr) -> Reply {
    let authorised = req.header("authorization") == Some(format!("Bearer {TOKEN}").as_bytes());
    let challenge = challenge_for(me);
    Reply::Bytes(match req.path() {
        "/v2/" if authorised => json(b"{}"),
        "/v2/" => response(401, &[("WWW-Authenticate", challenge.as_bytes())], b"{}"),
        "/token" => json(format!(r#"{{"token":"{TOKEN}","expires_in":300}}"#).as_bytes()),
        _ if req.is_manifest_head() && authorised => manifest_ok(&[]),
        _ if req.is_manifest_head() => {
            response(401, &[("WWW-Authenticate", challenge.as_bytes())], b"")
        }
        _ => response(404, &[], b""),
    })
}

/// A 200 answer to a manifest `HEAD` with [`DIGEST`] and `extra` headers (no body follows a
/// HEAD answer, whatever `Content-Length` says).
pub fn manifest_ok(extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut headers: Vec<(&str, &[u8])> = vec![
        (
            "Content-Type",
            b"application/vnd.oci.image.manifest.v1+json",
        ),
        ("Docker-Content-Digest", DIGEST.as_bytes()),
    ];
    headers.extend_from_slice(extra);
    let mut out = b"HTTP/1.1 200 OK\r\n".to_vec();
    write_headers(&mut out, &headers);
    out.extend_from_slice(b"Content-Length: 1234\r\n\r\n");
    out
}

type Handler = dyn Fn(&RawRequest, SocketAddr) -> Reply + Send + Sync;

/// A running hostile server.
pub struct Hostile {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<RawRequest>>>,
    _stop: DropGuard,
}

impl Hostile {
    /// Starts a server on `127.0.0.1:0` answering with `handler(request, own address)`.
    pub async fn start<F>(handler: F) -> Hostile
    where
        F: Fn(&RawRequest, SocketAddr) -> Reply + Send + Sync + 'static,
    {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), handler).await
    }

    /// As [`Hostile::start`], on `ip` (any loopback address).
    pub async fn start_on<F>(ip: IpAddr, handler: F) -> Hostile
    where
        F: Fn(&RawRequest, SocketAddr) -> Reply + Send + Sync + 'static,
    {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let stop = CancellationToken::new();
        let token = stop.clone();
        let log = requests.clone();
        super::spawn_until(&stop, async move {
            while let Ok((stream, _)) = listener.accept().await {
                super::spawn_until(&token, serve(stream, addr, handler.clone(), log.clone()));
            }
        });
        Hostile {
            addr,
            requests,
            _stop: stop.drop_guard(),
        }
    }

    /// Every request seen so far, in arrival order.
    pub fn requests(&self) -> Vec<RawRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// How many requests matched `f`.
    pub fn count(&self, f: impl Fn(&RawRequest) -> bool) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| f(r))
            .count()
    }

    /// Drops the recorded requests (long soak runs would otherwise keep them all).
    pub fn forget_requests(&self) {
        self.requests.lock().unwrap().clear();
    }
}

async fn serve(
    mut stream: TcpStream,
    me: SocketAddr,
    handler: Arc<Handler>,
    log: Arc<Mutex<Vec<RawRequest>>>,
) {
    let mut buf = Vec::new();
    loop {
        let Some(req) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        let reply = handler(&req, me);
        log.lock().unwrap().push(req);
        match reply {
            Reply::Bytes(bytes) => {
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Reply::BytesThenClose(bytes) => {
                let _ = stream.write_all(&bytes).await;
                let _ = stream.shutdown().await;
                return;
            }
            Reply::Trickle {
                at_once,
                trickled,
                every,
            } => {
                if stream.write_all(&at_once).await.is_err() {
                    return;
                }
                for b in trickled {
                    tokio::time::sleep(every).await;
                    if stream.write_all(&[b]).await.is_err() {
                        return;
                    }
                }
            }
            Reply::Endless { head, chunk } => {
                if stream.write_all(&head).await.is_err() {
                    return;
                }
                while stream.write_all(&chunk).await.is_ok() {}
                return;
            }
            Reply::Reset => {
                let _ = stream.set_zero_linger();
                return;
            }
            Reply::Hang => {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Reads one request head (and skips its `Content-Length` body). `None` at EOF or on garbage.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<RawRequest> {
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_REQUEST_HEAD {
            return None;
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut rest = buf.split_off(end + 4);
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_owned(), first.next()?.to_owned());
    let headers: Vec<(String, Vec<u8>)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().as_bytes().to_vec()))
        .collect();
    let body_len = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse::<usize>().ok())
        .unwrap_or(0);
    while rest.len() < body_len {
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        rest.extend_from_slice(&chunk[..n]);
    }
    *buf = rest.split_off(body_len);
    Some(RawRequest {
        method,
        target,
        headers,
    })
}

/// A loopback address whose connects neither succeed nor fail: a listener with a backlog of
/// one that never accepts, its queue filled, so the kernel drops every further SYN and the
/// client waits until its own timeout (as with a firewalled or vanished mirror).
pub struct Blackhole {
    pub addr: SocketAddr,
    _listener: TcpListener,
    _queued: Vec<std::net::TcpStream>,
}

impl Blackhole {
    pub async fn start() -> Blackhole {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((Ipv4Addr::LOCALHOST, 0).into()).unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        let queued = tokio::task::spawn_blocking(move || {
            let mut queued = Vec::new();
            for _ in 0..8 {
                match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                    Ok(s) => queued.push(s),
                    Err(_) => return queued,
                }
            }
            panic!("the accept queue of {addr} never filled");
        })
        .await
        .unwrap();
        Blackhole {
            addr,
            _listener: listener,
            _queued: queued,
        }
    }
}
