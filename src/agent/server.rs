//! The agent's HTTP server (hyper 1, HTTP/1.1): `/metrics`, `/-/healthy`, `/-/ready`,
//! `POST /-/reload` and a landing page at `/`.
//!
//! One accept loop; every connection is watched by hyper-util's `GracefulShutdown`, so on
//! cancellation the loop stops accepting and open connections are asked to finish. The caller
//! bounds how long that may take.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::metrics;
use super::reload::Trigger;
use super::webconfig::{AuthDecision, WebConfig, WebConfigHandle};

/// What the handlers read.
pub(crate) struct AppState {
    pub(crate) exposition: metrics::Exposition,
    /// The latest results, for the landing page.
    pub(crate) store: Arc<super::store::Store>,
    /// `--web.telemetry-path`.
    pub(crate) telemetry_path: String,
    /// Set once the config is loaded and the scheduler has started the first round.
    pub(crate) ready: Arc<AtomicBool>,
    pub(crate) reload: mpsc::Sender<Trigger>,
}

const LANDING_HEAD: &str = "<!DOCTYPE html>
<html><head><meta charset=\"utf-8\"><title>pullprobe</title>
<style>table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 6px;text-align:left;vertical-align:top}</style>
</head>
<body>
<h1>pullprobe</h1>
<p>Probes the image-pull path of this node (DNS, TCP, TLS, registry auth, manifest) on a schedule.</p>
<ul>
<li><a href=\"{telemetry}\">{telemetry}</a>: Prometheus metrics</li>
<li><a href=\"/-/healthy\">/-/healthy</a>: liveness</li>
<li><a href=\"/-/ready\">/-/ready</a>: readiness</li>
<li><code>POST /-/reload</code>: reload the configuration</li>
</ul>
";

/// Text made safe for HTML element content and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The landing page: links, then each target's last result (result, phase, endpoint, age,
/// message). Plain HTML, no scripts.
fn landing(store: &super::store::Store, telemetry_path: &str) -> String {
    use std::fmt::Write as _;
    let mut page = LANDING_HEAD.replace("{telemetry}", &escape(telemetry_path));
    let targets = store.snapshot();
    let _ = writeln!(page, "<h2>Targets ({})</h2>", targets.len());
    page.push_str(
        "<table>\n<tr><th>target</th><th>registry</th><th>result</th><th>phase</th><th>endpoint</th><th>age</th><th>message</th></tr>\n",
    );
    let now = std::time::SystemTime::now();
    for t in &targets {
        let (result, phase, endpoint, age, message) = match &t.last {
            None => (
                "not probed yet".to_owned(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ),
            Some(r) => {
                let finished = r.started_at + r.duration;
                let age = now
                    .duration_since(finished)
                    .map(|d| {
                        format!(
                            "{} ago",
                            humantime::format_duration(Duration::from_secs(d.as_secs()))
                        )
                    })
                    .unwrap_or_else(|_| "just now".to_owned());
                (
                    if r.ok() {
                        "ok".to_owned()
                    } else {
                        r.reason().as_str().to_owned()
                    },
                    r.phase().map(|p| p.as_str().to_owned()).unwrap_or_default(),
                    r.endpoint.clone(),
                    age,
                    r.failure
                        .iter()
                        .map(|f| f.message.clone())
                        .chain(r.warnings.iter().map(|w| format!("warning: {w}")))
                        .collect::<Vec<_>>()
                        .join("\n"),
                )
            }
        };
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&t.name),
            escape(&t.registry),
            escape(&result),
            escape(&phase),
            escape(&endpoint),
            escape(&age),
            escape(&message)
        );
    }
    page.push_str("</table>\n</body></html>\n");
    page
}

/// Serves until `cancel`, then shuts open connections down gracefully. With a web config,
/// connections are TLS and/or requests need basic auth, as the config says at accept time.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    web: Option<Arc<WebConfigHandle>>,
    cancel: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(e) => {
                        // Usually EMFILE: back off briefly instead of spinning.
                        warn!(error = %e, "Cannot accept a connection");
                        tokio::select! {
                            () = cancel.cancelled() => break,
                            () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                        }
                    }
                };
                let web = web.clone();
                let config = web.as_ref().map(|w| w.current());
                let watcher = graceful.watcher();
                let state = state.clone();
                tokio::spawn(async move {
                    match config.as_ref().and_then(|c| c.tls.clone()) {
                        None => serve_connection(stream, state, web, config, watcher).await,
                        Some(tls) => {
                            let accept = tokio_rustls::TlsAcceptor::from(tls).accept(stream);
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
                                Ok(Ok(tls)) => serve_connection(tls, state, web, config, watcher).await,
                                Ok(Err(e)) => debug!(error = %e, "TLS handshake with a client failed"),
                                Err(_) => debug!("TLS handshake with a client timed out"),
                            }
                        }
                    }
                });
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// How long a client may take for the TLS handshake or to send its request head.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn serve_connection<I>(
    io: I,
    state: Arc<AppState>,
    web: Option<Arc<WebConfigHandle>>,
    config: Option<Arc<WebConfig>>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: Request<Incoming>| {
        let state = state.clone();
        let web = web.clone();
        let config = config.clone();
        async move {
            let mut resp = match (&web, &config) {
                (Some(w), Some(c))
                    if w.authorize(c, req.headers().get(header::AUTHORIZATION))
                        == AuthDecision::Denied =>
                {
                    let mut r = text(StatusCode::UNAUTHORIZED, "Unauthorized.\n");
                    r.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        header::HeaderValue::from_static("Basic realm=\"pullprobe\""),
                    );
                    r
                }
                _ => route(req, &state).await,
            };
            if let Some(c) = &config {
                for (k, v) in &c.headers {
                    resp.headers_mut().insert(k.clone(), v.clone());
                }
            }
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn).await {
        debug!(error = %e, "HTTP connection ended with an error");
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", body)
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

async fn route(req: Request<Incoming>, state: &AppState) -> Response<Full<Bytes>> {
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    let path = req.uri().path();
    // `--web.telemetry-path` serves the metrics; `/metrics` is then an ordinary unknown path.
    let path = if path == state.telemetry_path {
        "/metrics"
    } else if path == "/metrics" {
        "/-/not-found"
    } else {
        path
    };
    match (path, get, req.method() == Method::POST) {
        ("/metrics", true, _) => respond(
            StatusCode::OK,
            metrics::CONTENT_TYPE,
            state.exposition.render(),
        ),
        ("/-/healthy", true, _) => text(StatusCode::OK, "pullprobe is healthy.\n"),
        ("/-/ready", true, _) => {
            if state.ready.load(Ordering::Acquire) {
                text(StatusCode::OK, "pullprobe is ready.\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "pullprobe is not ready.\n")
            }
        }
        ("/-/reload", _, true) => reload(state).await,
        ("/", true, _) => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            landing(&state.store, &state.telemetry_path),
        ),
        ("/metrics" | "/-/healthy" | "/-/ready" | "/", ..) => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "Only GET is allowed.\n");
            r.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            r
        }
        ("/-/reload", ..) => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "Only POST is allowed.\n");
            r.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
            r
        }
        _ => text(StatusCode::NOT_FOUND, "Not found.\n"),
    }
}

async fn reload(state: &AppState) -> Response<Full<Bytes>> {
    let (tx, rx) = oneshot::channel();
    if state.reload.send(Trigger::Http(tx)).await.is_err() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "pullprobe is shutting down.\n",
        );
    }
    match rx.await {
        Ok(Ok(())) => text(StatusCode::OK, "Configuration reloaded.\n"),
        // The error is a config error: file, key, problem, fix. It never contains a credential.
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        Err(_) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "pullprobe is shutting down.\n",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_landing_page_escapes_what_it_shows() {
        assert_eq!(
            escape(r#"<script>alert("x") & 'y'</script>"#),
            "&lt;script&gt;alert(&quot;x&quot;) &amp; &#39;y&#39;&lt;/script&gt;"
        );
        let store = super::super::store::Store::new();
        let page = landing(&store, "/metrics");
        assert!(page.contains("<h2>Targets (0)</h2>"), "{page}");
        assert!(page.ends_with("</table>\n</body></html>\n"), "{page}");
    }
}
