//! containerd's HTTP fallback for loopback registries.
//!
//! With no hosts.toml, containerd 2.x (`config.ConfigureHosts`, see `node::containerd`) talks
//! to a loopback registry (`localhost`, 127.0.0.0/8, `::1`) on a port other than 80 and 443 —
//! and to any `http://` host with TLS settings — over HTTPS first, through
//! `docker.NewHTTPFallback`: when the server answers the TLS ClientHello with something that
//! starts with `HTTP/` (Go's `tls.RecordHeaderError` whose record header reads `HTTP/`: a
//! plain-HTTP server's 400), the request is sent again over plain HTTP.
//!
//! [`Sniff`] records the first bytes the server sends on a connection, so the engine can tell
//! that case from any other handshake failure exactly as Go does.

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// containerd `docker.IsLocalhost`: `localhost`, or an IP address in 127.0.0.0/8 or `::1`.
pub(crate) fn is_localhost(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare == "localhost" || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
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
