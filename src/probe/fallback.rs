//! containerd's HTTP fallback for loopback registries.
//!
//! With no hosts.toml, containerd 2.x (`config.ConfigureHosts`) talks to a loopback registry
//! (`localhost`, 127.0.0.0/8, `::1`) on a port other than 80 and 443 over HTTPS without
//! verifying the certificate, through `docker.NewHTTPFallback`: when the server answers the
//! TLS ClientHello with something that starts with `HTTP/` (Go's `tls.RecordHeaderError` whose
//! record header reads `HTTP/`: a plain-HTTP server's 400), the request is sent again over plain
//! HTTP. Port 443 (or no port) is HTTPS only, port 80 plain HTTP only.
//!
//! [`Sniff`] records the first bytes the server sends on a connection, so the engine can tell
//! that case from any other handshake failure exactly as Go does.

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How containerd reaches a loopback registry that has no hosts.toml.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LoopbackDefault {
    /// Port 80: plain HTTP.
    Http,
    /// No port or 443: HTTPS without verification.
    Https,
    /// Any other port: HTTPS without verification, falling back to HTTP.
    HttpsWithFallback,
}

/// containerd `docker.IsLocalhost`: `localhost`, or an IP address in 127.0.0.0/8 or `::1`.
pub(crate) fn is_localhost(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare == "localhost" || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// containerd 2.x `ConfigureHosts` without a hosts.toml, for `host` and its written `port`.
pub(crate) fn loopback_default(host: &str, port: Option<u16>) -> Option<LoopbackDefault> {
    if !is_localhost(host) {
        return None;
    }
    Some(match port {
        None | Some(443) => LoopbackDefault::Https,
        Some(80) => LoopbackDefault::Http,
        Some(_) => LoopbackDefault::HttpsWithFallback,
    })
}

/// A stream that keeps the first five bytes it reads.
pub(crate) struct Sniff<S> {
    inner: S,
    first: Arc<Mutex<Vec<u8>>>,
}

impl<S> Sniff<S> {
    pub(crate) fn new(inner: S) -> (Self, Arc<Mutex<Vec<u8>>>) {
        let first = Arc::new(Mutex::new(Vec::with_capacity(5)));
        (
            Sniff {
                inner,
                first: first.clone(),
            },
            first,
        )
    }
}

/// Whether the recorded bytes are an HTTP response (Go: `string(RecordHeader[:]) == "HTTP/"`).
pub(crate) fn answered_http(first: &Mutex<Vec<u8>>) -> bool {
    first.lock().unwrap_or_else(|p| p.into_inner()).as_slice() == b"HTTP/"
}

impl<S: AsyncRead + Unpin> AsyncRead for Sniff<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if polled.is_ready() {
            let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
            if first.len() < 5 {
                let fresh = &buf.filled()[before..];
                let take = (5 - first.len()).min(fresh.len());
                first.extend_from_slice(&fresh[..take]);
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Sniff<S> {
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

#[cfg(test)]
mod tests {
    use super::*;

    // containerd config/hosts.go ConfigureHosts (2.x), localhost branch.
    #[test]
    fn loopback_defaults_as_containerd() {
        use LoopbackDefault::*;
        assert_eq!(
            loopback_default("localhost", Some(5000)),
            Some(HttpsWithFallback)
        );
        assert_eq!(
            loopback_default("127.0.0.1", Some(5000)),
            Some(HttpsWithFallback)
        );
        assert_eq!(loopback_default("127.8.9.10", None), Some(Https));
        assert_eq!(loopback_default("[::1]", Some(443)), Some(Https));
        assert_eq!(loopback_default("::1", Some(80)), Some(Http));
        assert_eq!(loopback_default("registry.local", Some(5000)), None);
        assert_eq!(loopback_default("10.0.0.1", Some(5000)), None);
        assert_eq!(loopback_default("localhost.example", Some(5000)), None);
    }
}
