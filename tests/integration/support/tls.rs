//! Certificates made inside each test with rcgen, and two misbehaving TLS endpoints.
//!
//! A [`TestCa`] issues leaf certificates whose validity window is chosen by [`Validity`]; the CA's
//! own NotAfter is ten years out, so only the leaf varies. "Unknown CA" is a leaf from a second
//! `TestCa` that the client does not trust. [`TlsStall`] reads the ClientHello and never answers;
//! [`TlsReset`] reads a few bytes of it and resets the connection; [`TlsResetAfterHello`] answers
//! with a real ServerHello and resets the connection right after it.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::{CancellationToken, DropGuard};

const DAY: Duration = Duration::from_secs(86_400);

/// A certificate authority generated for one test.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    not_after_unix: i64,
}

/// The validity window of a leaf certificate, relative to now.
#[derive(Clone, Copy, Debug)]
pub enum Validity {
    /// From yesterday to 30 days from now.
    Valid,
    /// From 30 days ago to yesterday.
    Expired,
    /// From tomorrow to 30 days from now.
    NotYetValid,
}

/// A leaf certificate and its key, in both PEM and DER forms.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    /// Leaf first, then the CA certificate.
    pub chain_der: Vec<CertificateDer<'static>>,
    pub key_der: PrivateKeyDer<'static>,
    /// The earliest NotAfter in `chain_der`, in Unix seconds.
    pub not_after_unix: i64,
}

/// Seconds since the Unix epoch, whole (certificates carry no fractions).
fn unix_now() -> Duration {
    Duration::from_secs(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
}

impl TestCa {
    /// A new self-signed CA whose common name is `name`.
    pub fn new(name: &str) -> TestCa {
        let now = rcgen::date_time_ymd(1970, 1, 1) + unix_now();
        let mut params = CertificateParams::default();
        (params.not_before, params.not_after) = (now - DAY, now + 3650 * DAY);
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let not_after_unix = params.not_after.unix_timestamp();
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        TestCa {
            issuer,
            not_after_unix,
        }
    }

    /// The CA certificate in PEM form.
    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA certificate in DER form.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// Writes the CA certificate to `dir/ca.pem` and returns that path.
    pub fn write_ca_pem(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, self.ca_pem()).unwrap();
        path
    }

    /// Issues a server certificate for `names` (DNS names or IP addresses, all become SANs).
    pub fn leaf(&self, names: &[&str], validity: Validity) -> Leaf {
        self.issue(names, validity, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// Issues a client certificate (for mutual TLS) for `name`.
    pub fn client(&self, name: &str) -> Leaf {
        self.issue(
            &[name],
            Validity::Valid,
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }

    fn issue(&self, names: &[&str], validity: Validity, usage: ExtendedKeyUsagePurpose) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        let now = rcgen::date_time_ymd(1970, 1, 1) + unix_now();
        (params.not_before, params.not_after) = match validity {
            Validity::Valid => (now - DAY, now + 30 * DAY),
            Validity::Expired => (now - 30 * DAY, now - DAY),
            Validity::NotYetValid => (now + DAY, now + 30 * DAY),
        };
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            chain_der: vec![cert.der().clone(), self.ca_der()],
            key_der: key.into(),
            not_after_unix: params.not_after.unix_timestamp().min(self.not_after_unix),
        }
    }

    /// A rustls client config that trusts only this CA (ALPN http/1.1).
    pub fn client_config(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der()).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls server config presenting `leaf` (and its CA), ALPN http/1.1.
pub fn server_config(leaf: &Leaf) -> Arc<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(leaf.chain_der.clone(), leaf.key_der.clone_key())
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Accepts TCP connections, reads the ClientHello and never answers. Stops when dropped.
pub struct TlsStall {
    pub addr: SocketAddr,
    _stop: DropGuard,
}

impl TlsStall {
    pub async fn start() -> TlsStall {
        let (addr, stop) = accept_loop(|mut stream| async move {
            let mut buf = [0u8; 4096];
            // Keep reading (and holding the socket) until the client gives up.
            while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
        })
        .await;
        TlsStall {
            addr,
            _stop: stop.drop_guard(),
        }
    }
}

/// Accepts TCP connections, reads a few bytes of the ClientHello, then resets (RST) the
/// connection. Stops when dropped.
pub struct TlsReset {
    pub addr: SocketAddr,
    _stop: DropGuard,
}

impl TlsReset {
    pub async fn start() -> TlsReset {
        let (addr, stop) = accept_loop(|mut stream| async move {
            let mut buf = [0u8; 5];
            let _ = stream.read_exact(&mut buf).await;
            // SO_LINGER 0 makes close() send RST instead of FIN.
            let _ = stream.set_zero_linger();
            drop(stream);
        })
        .await;
        TlsReset {
            addr,
            _stop: stop.drop_guard(),
        }
    }
}

/// Accepts TCP connections, runs a real rustls server on the ClientHello, sends only the first
/// record of its answer (the ServerHello) and then resets (RST) the connection, so the client
/// fails in the middle of the handshake with the server's key share in hand. Stops when dropped.
pub struct TlsResetAfterHello {
    pub addr: SocketAddr,
    _stop: DropGuard,
}

impl TlsResetAfterHello {
    pub async fn start(config: Arc<rustls::ServerConfig>) -> TlsResetAfterHello {
        let (addr, stop) = accept_loop(move |mut stream| {
            let config = config.clone();
            async move {
                let mut conn = rustls::ServerConnection::new(config).unwrap();
                let mut buf = [0u8; 4096];
                // Feed the ClientHello to rustls until it has an answer to send.
                while !conn.wants_write() {
                    let n = match stream.read(&mut buf).await {
                        Ok(n) if n > 0 => n,
                        _ => return,
                    };
                    if conn.read_tls(&mut &buf[..n]).is_err() || conn.process_new_packets().is_err()
                    {
                        return;
                    }
                }
                let mut flight = Vec::new();
                while conn.wants_write() {
                    if conn.write_tls(&mut flight).is_err() {
                        return;
                    }
                }
                // A TLS record: type (1), version (2), length (2), then `length` bytes.
                assert_eq!(
                    flight.first(),
                    Some(&0x16),
                    "a handshake record comes first"
                );
                let len = usize::from(u16::from_be_bytes([flight[3], flight[4]]));
                assert_eq!(
                    flight[5], 0x02,
                    "the first handshake message is a ServerHello"
                );
                let _ = stream.write_all(&flight[..5 + len]).await;
                let _ = stream.flush().await;
                let _ = stream.set_zero_linger();
                drop(stream);
            }
        })
        .await;
        TlsResetAfterHello {
            addr,
            _stop: stop.drop_guard(),
        }
    }
}

/// Binds `127.0.0.1:0` and runs `handle` on every accepted connection until the token is cancelled.
async fn accept_loop<F, Fut>(handle: F) -> (SocketAddr, CancellationToken)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let token = stop.clone();
    super::spawn_until(&stop, async move {
        while let Ok((stream, _)) = listener.accept().await {
            super::spawn_until(&token, handle(stream));
        }
    });
    (addr, stop)
}
