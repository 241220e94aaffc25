//! Certificates made inside each test with rcgen (and one with the `openssl` CLI), and
//! misbehaving TLS endpoints.
//!
//! A [`TestCa`] issues leaf certificates whose validity window is chosen by [`Validity`]; the CA's
//! own NotAfter is ten years out ([`TestCa::new`]), long past ([`TestCa::expired`]) or near
//! ([`TestCa::expiring_in`]). "Unknown CA" is a leaf from a second `TestCa` that the client does
//! not trust.
//!
//! The certificates where Go's `crypto/x509` and rustls-webpki disagree, for the engine tests
//! (`tls_go.rs`) and for differential runs against containerd's `ctr` on the same files:
//! [`docker_recipe_cert`] (Docker's self-signed `CA:TRUE` recipe), [`TestCa::ca_true_leaf`] (a
//! `CA:TRUE` server certificate signed by a CA), and [`TestCa::expired`] with any valid leaf (an
//! expired root). [`Leaf::write_pem`] and [`TestCa::write_ca_pem`] put them in files.
//!
//! [`TlsStall`] reads the ClientHello and never answers;
//! [`TlsReset`] reads a few bytes of it and resets the connection; [`TlsResetAfterHello`] answers
//! with a real ServerHello and resets the connection right after it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject as _;
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
    /// Leaf first, then the CA certificate (just the leaf for a self-signed one).
    pub chain_der: Vec<CertificateDer<'static>>,
    pub key_der: PrivateKeyDer<'static>,
    /// The earliest NotAfter in `chain_der`, in Unix seconds.
    pub not_after_unix: i64,
    /// The leaf's own NotAfter, in Unix seconds.
    pub leaf_not_after_unix: i64,
}

impl Leaf {
    /// The same certificate and key with a chain of the leaf alone, as a server that does not
    /// send its CA (the client then needs the CA as a root, and `not_after_unix` is the leaf's).
    pub fn alone(&self) -> Leaf {
        Leaf {
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
            chain_der: self.chain_der[..1].to_vec(),
            key_der: self.key_der.clone_key(),
            not_after_unix: self.leaf_not_after_unix,
            leaf_not_after_unix: self.leaf_not_after_unix,
        }
    }

    /// Writes `dir/<stem>.crt` (the chain, leaf first, PEM) and `dir/<stem>.key` and returns
    /// both paths, e.g. for a registry's `http.tls` or containerd's hosts.toml.
    pub fn write_pem(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        let chain: String = self
            .chain_der
            .iter()
            .map(|d| pem("CERTIFICATE", d.as_ref()))
            .collect();
        std::fs::write(&cert, chain).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }
}

/// PEM armour around `der`.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// NotAfter of a DER certificate, Unix seconds.
fn not_after_of(der: &[u8]) -> i64 {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.validity().not_after.timestamp()
}

/// A registry certificate made exactly as Docker's documentation makes one ("Use self-signed
/// certificates"):
///
/// ```text
/// openssl req -x509 -newkey rsa:4096 -nodes -keyout key.pem -out cert.pem -days 365 \
///     -subj /CN=<names[0]> -addext subjectAltName=DNS:<name>,IP:<address>,...
/// ```
///
/// OpenSSL's default `v3_ca` section makes it `basicConstraints=critical,CA:TRUE` with equal
/// subject and authority key identifiers. The one file is both the server's certificate and,
/// given as `tls.ca_file` (containerd: hosts.toml `ca`), the root: Go accepts that
/// (verify.go `Certificate.Verify`: `opts.Roots.contains(c)`), webpki alone refuses it
/// (`CaUsedAsEndEntity`). Needs the `openssl` command (Debian: `openssl`, which
/// `ca-certificates` depends on).
pub fn docker_recipe_cert(names: &[&str]) -> Leaf {
    let dir = tempfile::tempdir().unwrap();
    let san: Vec<String> = names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(_) => format!("IP:{n}"),
            Err(_) => format!("DNS:{n}"),
        })
        .collect();
    let out = Command::new("openssl")
        .current_dir(dir.path())
        .args([
            "req", "-x509", "-newkey", "rsa:4096", "-nodes", "-keyout", "key.pem", "-out",
            "cert.pem", "-days", "365",
        ])
        .arg("-subj")
        .arg(format!("/CN={}", names[0]))
        .arg("-addext")
        .arg(format!("subjectAltName={}", san.join(",")))
        .output()
        .expect("the openssl command runs (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cert_pem = std::fs::read_to_string(dir.path().join("cert.pem")).unwrap();
    let key_pem = std::fs::read_to_string(dir.path().join("key.pem")).unwrap();
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    let not_after_unix = not_after_of(cert.as_ref());
    Leaf {
        key_der: PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap(),
        chain_der: vec![cert],
        cert_pem,
        key_pem,
        not_after_unix,
        leaf_not_after_unix: not_after_unix,
    }
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
    /// A new self-signed CA whose common name is `name`, valid from yesterday for ten years.
    pub fn new(name: &str) -> TestCa {
        let now = rcgen::date_time_ymd(1970, 1, 1) + unix_now();
        TestCa::with_window(name, |p| {
            (p.not_before, p.not_after) = (now - DAY, now + 3650 * DAY);
        })
    }

    /// A CA whose own validity ended yesterday (it began 400 days ago). Leaves it issues are
    /// valid as asked; Go refuses every chain to it (verify.go `buildChains` →
    /// `isValid(rootCertificate)`), webpki alone accepts them (trust anchors carry no dates).
    pub fn expired(name: &str) -> TestCa {
        let now = rcgen::date_time_ymd(1970, 1, 1) + unix_now();
        TestCa::with_window(name, |p| {
            (p.not_before, p.not_after) = (now - 400 * DAY, now - DAY);
        })
    }

    /// A CA valid from yesterday until `days` days from now.
    pub fn expiring_in(name: &str, days: u32) -> TestCa {
        let now = rcgen::date_time_ymd(1970, 1, 1) + unix_now();
        TestCa::with_window(name, |p| {
            (p.not_before, p.not_after) = (now - DAY, now + days * DAY);
        })
    }

    fn with_window(name: &str, window: impl FnOnce(&mut CertificateParams)) -> TestCa {
        let mut params = CertificateParams::default();
        window(&mut params);
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

    /// The CA's NotAfter, Unix seconds.
    pub fn not_after_unix(&self) -> i64 {
        self.not_after_unix
    }

    /// Issues a server certificate for `names` (DNS names or IP addresses, all become SANs).
    pub fn leaf(&self, names: &[&str], validity: Validity) -> Leaf {
        self.issue(names, validity, ExtendedKeyUsagePurpose::ServerAuth, false)
    }

    /// Issues a valid server certificate for `names` that says `basicConstraints=CA:TRUE`, as
    /// OpenSSL's `v3_ca` extensions make it when a CSR is signed with them. Go accepts it when
    /// it chains to a root (verify.go `isValid` asks no CA question of the leaf); webpki alone
    /// refuses it (`CaUsedAsEndEntity`).
    pub fn ca_true_leaf(&self, names: &[&str]) -> Leaf {
        self.issue(
            names,
            Validity::Valid,
            ExtendedKeyUsagePurpose::ServerAuth,
            true,
        )
    }

    /// Issues a client certificate (for mutual TLS) for `name`.
    pub fn client(&self, name: &str) -> Leaf {
        self.issue(
            &[name],
            Validity::Valid,
            ExtendedKeyUsagePurpose::ClientAuth,
            false,
        )
    }

    fn issue(
        &self,
        names: &[&str],
        validity: Validity,
        usage: ExtendedKeyUsagePurpose,
        ca_true: bool,
    ) -> Leaf {
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
        if ca_true {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages.push(KeyUsagePurpose::KeyCertSign);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            chain_der: vec![cert.der().clone(), self.ca_der()],
            key_der: key.into(),
            not_after_unix: params.not_after.unix_timestamp().min(self.not_after_unix),
            leaf_not_after_unix: params.not_after.unix_timestamp(),
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
