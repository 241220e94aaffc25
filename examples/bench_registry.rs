//! A minimal TLS registry for the whole-process benchmarks (`bench/run.sh`): pullprobe and
//! blackbox_exporter probe the same server, trusting the same CA.
//!
//! ```sh
//! cargo run --release --example bench_registry -- --dir /tmp/bench [--port 0]
//! ```
//!
//! At start it generates a CA and a leaf certificate for `127.0.0.1` and `localhost` (rcgen,
//! ECDSA P-256), writes the CA to `DIR/ca.pem`, listens on `127.0.0.1:PORT` and prints
//! `listening 127.0.0.1:PORT` on stdout. It answers, over TLS 1.2/1.3 with ALPN `http/1.1` and
//! keep-alive, just what a probe asks:
//! - `GET|HEAD /v2/` → 200 `{}` (no authentication);
//! - `GET|HEAD /v2/<name>/manifests/<ref>` → 200 with `Docker-Content-Digest` and a small OCI
//!   manifest, for any `<name>` (so 1 000 targets can differ by repository on one server);
//! - anything else → 404.
//!
//! It runs on a single-threaded runtime so that it takes at most one of the machine's cores.
//! Stop it with SIGTERM/SIGINT. Benchmarks only: no auth, no limits, loopback only.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A small OCI image manifest; its digest is what `Docker-Content-Digest` reports.
const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
/// The real digest of [`MANIFEST`]: `pullprobe --check` fetches the manifest and verifies it,
/// as containerd does.
const DIGEST: &str = "sha256:f20c43161d73848408ef247f0ec7111b19fe58ffebc0cbcaa0d2c8bda4967268";

#[derive(Debug, Parser)]
struct Args {
    /// Where to write `ca.pem`.
    #[arg(long)]
    dir: PathBuf,
    /// Port on 127.0.0.1; 0 picks a free one (printed on stdout).
    #[arg(long, default_value_t = 0)]
    port: u16,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(&args.dir)?;
    let acceptor = TlsAcceptor::from(tls_config(&args.dir)?);
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, args.port)).await?;
    let addr: SocketAddr = listener.local_addr()?;
    {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening {addr}")?;
        stdout.flush()?;
    }

    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            r = tokio::signal::ctrl_c() => r?,
        }
        Ok::<(), std::io::Error>(())
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            r = &mut stop => return Ok(r?),
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service_fn(answer))
                        .await;
                });
            }
        }
    }
}

/// A CA and a leaf for 127.0.0.1/localhost; writes the CA to `dir/ca.pem`.
fn tls_config(
    dir: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, Box<dyn std::error::Error>> {
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "pullprobe bench CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    std::fs::write(dir.join("ca.pem"), issuer.pem())?;

    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    leaf.distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate()?;
    let cert = leaf.signed_by(&key, &issuer)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone(), issuer.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    let readable = matches!(*req.method(), Method::GET | Method::HEAD);
    let is_manifest = path
        .strip_prefix("/v2/")
        .and_then(|rest| rest.rsplit_once("/manifests/"))
        .is_some_and(|(name, reference)| !name.is_empty() && !reference.is_empty());
    let mut resp = if readable && path == "/v2/" {
        let mut r = Response::new(Full::new(Bytes::from_static(b"{}")));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        r
    } else if readable && is_manifest {
        let mut r = Response::new(Full::new(Bytes::from_static(MANIFEST.as_bytes())));
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/vnd.oci.image.manifest.v1+json"),
        );
        h.insert(
            "docker-content-digest",
            header::HeaderValue::from_static(DIGEST),
        );
        r
    } else {
        let mut r = Response::new(Full::new(Bytes::from_static(b"404 page not found\n")));
        *r.status_mut() = StatusCode::NOT_FOUND;
        r
    };
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        header::HeaderValue::from_static("registry/2.0"),
    );
    Ok(resp)
}
