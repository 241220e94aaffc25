//! The `tls` phase: a rustls handshake that trusts what the node trusts.
//!
//! Roots are the system trust store (`rustls-native-certs`, honouring `SSL_CERT_FILE` /
//! `SSL_CERT_DIR`; Mozilla's bundle if the system has none) plus the target's `tls.ca_file`.
//! A wrapping verifier records the presented chain before verification, so the earliest
//! NotAfter is known also when verification fails (an expired registry certificate is exactly
//! when you want to see its date). Each handshake is fresh: no session resumption.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, UNIX_EPOCH};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::StepError;
use super::report::TlsReport;
use crate::config::TlsSettings;
use crate::outcome::Reason;

/// The verifier for one target's TLS settings, built once and shared by its probes.
#[derive(Clone, Debug)]
pub(crate) struct Trust {
    /// `None` with `insecure_skip_verify`.
    verifier: Option<Arc<WebPkiServerVerifier>>,
}

fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        let loaded = rustls_native_certs::load_native_certs();
        for e in &loaded.errors {
            tracing::debug!(error = %e, "Skipping part of the system trust store");
        }
        let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
        if added == 0 {
            tracing::warn!("No system CA certificates found; using the Mozilla root bundle built into pullprobe");
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        roots
    })
}

/// The verifier trusting the system roots plus `extra_roots`, shared by every target (and every
/// config generation) with the same extra roots while any of them is alive.
///
/// Each verifier holds its own copy of the system trust store (~150 anchors, some hundred kB),
/// so building one per target made the agent's memory grow with the number of targets: 200
/// targets with the same `tls.ca_file` held 200 copies. The verifier is immutable, so sharing
/// it changes no decision.
fn shared_verifier(
    extra_roots: &[CertificateDer<'static>],
) -> Result<Arc<WebPkiServerVerifier>, String> {
    type Cache = HashMap<Vec<CertificateDer<'static>>, Weak<WebPkiServerVerifier>>;
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(v) = cache.get(extra_roots).and_then(Weak::upgrade) {
        return Ok(v);
    }
    let mut roots = system_roots().clone();
    for cert in extra_roots {
        roots.add(cert.clone()).map_err(|e| {
            format!("tls.ca_file: a certificate cannot be used as a trust anchor: {e}")
        })?;
    }
    let verifier = WebPkiServerVerifier::builder(Arc::new(roots))
        .build()
        .map_err(|e| format!("cannot build the certificate verifier: {e}"))?;
    // Forget the verifiers no target uses any more (removed by a reload).
    cache.retain(|_, v| v.strong_count() > 0);
    cache.insert(extra_roots.to_vec(), Arc::downgrade(&verifier));
    Ok(verifier)
}

/// The trust for `settings`, built on first use and cached in the settings.
///
/// # Errors
/// As [`Trust::new`].
pub(crate) fn trust_for(settings: &TlsSettings) -> Result<Trust, String> {
    settings
        .trust_cache
        .get_or_init(|| Trust::new(settings))
        .clone()
}

impl Trust {
    /// Builds the trust for `settings`.
    ///
    /// # Errors
    /// When no verifier can be built (for example every extra root is malformed).
    pub(crate) fn new(settings: &TlsSettings) -> Result<Self, String> {
        if settings.insecure_skip_verify {
            return Ok(Trust { verifier: None });
        }
        Ok(Trust {
            verifier: Some(shared_verifier(&settings.extra_roots)?),
        })
    }

    /// Runs the handshake. On failure the report still carries what was seen of the chain.
    pub(crate) async fn handshake(
        &self,
        tcp: TcpStream,
        host: &str,
    ) -> Result<(TlsStream<TcpStream>, TlsReport), (StepError, TlsReport)> {
        let server_name = ServerName::try_from(host.to_owned()).map_err(|e| {
            (
                StepError::new(
                    Reason::TlsHandshake,
                    format!("{host} cannot be used as a TLS server name: {e}"),
                ),
                TlsReport::default(),
            )
        })?;
        let capture = Arc::new(Capture {
            inner: self.verifier.clone(),
            algorithms: provider_algorithms(),
            earliest_not_after: Mutex::new(None),
        });
        let mut config = ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(capture.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.resumption = rustls::client::Resumption::disabled();
        let result = TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await;
        let earliest_not_after = *capture
            .earliest_not_after
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(stream) => {
                let version = stream.get_ref().1.protocol_version().map(version_name);
                Ok((
                    stream,
                    TlsReport {
                        version,
                        earliest_not_after,
                    },
                ))
            }
            Err(e) => Err((
                classify(host, &e),
                TlsReport {
                    version: None,
                    earliest_not_after,
                },
            )),
        }
    }
}

fn provider_algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::CryptoProvider::get_default()
        .map(|p| p.signature_verification_algorithms)
        .unwrap_or_else(|| {
            rustls::crypto::ring::default_provider().signature_verification_algorithms
        })
}

fn version_name(v: rustls::ProtocolVersion) -> &'static str {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
        _ => "other",
    }
}

/// Records the chain's earliest NotAfter, then delegates (or accepts, when skipping verification).
#[derive(Debug)]
struct Capture {
    inner: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
    earliest_not_after: Mutex<Option<i64>>,
}

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let earliest = std::iter::once(end_entity)
            .chain(intermediates)
            .filter_map(not_after)
            .min();
        *self
            .earliest_not_after
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = earliest;
        match &self.inner {
            Some(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// NotAfter of a DER certificate, Unix seconds.
pub(crate) fn not_after(der: &CertificateDer<'_>) -> Option<i64> {
    x509_parser::parse_x509_certificate(der.as_ref())
        .ok()
        .map(|(_, cert)| cert.validity().not_after.timestamp())
}

fn rfc3339(t: UnixTime) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t.as_secs())).to_string()
}

/// tokio-rustls reports handshake failures as `io::Error` wrapping a `rustls::Error`. Both the
/// plain and the `*Context` variants of `CertificateError` occur, so both are matched.
fn classify(host: &str, err: &std::io::Error) -> StepError {
    use CertificateError as C;
    let Some(tls) = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return StepError::new(
            Reason::TlsHandshake,
            format!("{host}: the connection failed during the TLS handshake: {err}"),
        );
    };
    let (reason, what) = match tls {
        rustls::Error::InvalidCertificate(c) => match c {
            C::ExpiredContext { time, not_after } => (
                Reason::TlsExpired,
                format!(
                    "the certificate expired at {} (node time {})",
                    rfc3339(*not_after),
                    rfc3339(*time)
                ),
            ),
            C::Expired => (Reason::TlsExpired, "the certificate has expired".to_owned()),
            C::NotValidYetContext { time, not_before } => (
                Reason::TlsExpired,
                format!(
                    "the certificate is not valid before {} (node time {}); check the node's clock",
                    rfc3339(*not_before),
                    rfc3339(*time)
                ),
            ),
            C::NotValidYet => (
                Reason::TlsExpired,
                "the certificate is not valid yet".to_owned(),
            ),
            C::NotValidForNameContext { presented, .. } => (
                Reason::TlsNameMismatch,
                format!(
                    "the certificate is for {} but the node connects to {host}",
                    if presented.is_empty() {
                        "no names".to_owned()
                    } else {
                        presented.join(", ")
                    }
                ),
            ),
            C::NotValidForName => (
                Reason::TlsNameMismatch,
                format!("the certificate is not valid for {host}"),
            ),
            C::UnknownIssuer => (
                Reason::TlsUntrusted,
                "the certificate is signed by an unknown certificate authority".to_owned(),
            ),
            C::BadSignature | C::BadEncoding => (
                Reason::TlsUntrusted,
                format!("the certificate chain is invalid: {c:?}"),
            ),
            other => (
                Reason::TlsUntrusted,
                format!("the certificate was rejected: {other:?}"),
            ),
        },
        other => (
            Reason::TlsHandshake,
            format!("TLS handshake failed: {other}"),
        ),
    };
    StepError::new(reason, format!("{host}: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_der(name: &str) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    fn verifier(settings: &TlsSettings) -> Arc<WebPkiServerVerifier> {
        Trust::new(settings).unwrap().verifier.unwrap()
    }

    #[test]
    fn targets_with_the_same_roots_share_one_verifier() {
        crate::install_crypto_provider();
        let (a, b) = (ca_der("a"), ca_der("b"));
        let with = |roots: Vec<CertificateDer<'static>>| TlsSettings {
            extra_roots: roots,
            ..TlsSettings::default()
        };
        let first = verifier(&with(vec![a.clone()]));
        assert!(Arc::ptr_eq(&first, &verifier(&with(vec![a.clone()]))));
        assert!(!Arc::ptr_eq(&first, &verifier(&with(vec![b.clone()]))));
        assert!(!Arc::ptr_eq(&first, &verifier(&with(vec![a, b]))));
        assert!(
            Trust::new(&TlsSettings {
                insecure_skip_verify: true,
                ..TlsSettings::default()
            })
            .unwrap()
            .verifier
            .is_none()
        );
    }
}
