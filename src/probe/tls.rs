//! The `tls` phase: a rustls handshake that trusts what the node trusts and decides as the
//! node's pull would.
//!
//! Roots are the system trust store (`rustls-native-certs`, honouring `SSL_CERT_FILE` /
//! `SSL_CERT_DIR`; Mozilla's bundle if the system has none) plus the target's `tls.ca_file`,
//! as containerd builds its pool (`x509.SystemCertPool()` plus the hosts.toml `ca` files).
//! The chain is judged by Go `crypto/x509`'s rules ([`go_x509`]), because the pull is
//! containerd's. A wrapping verifier records the presented chain before verification, so the
//! earliest NotAfter is known also when verification fails (an expired registry certificate is
//! exactly when you want to see its date), together with the trust anchor the chain reached.
//! Each handshake is fresh: no session resumption.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{AlertDescription, ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::StepError;
use super::report::TlsReport;
use crate::config::{ClientCertificate, TlsSettings};
use crate::outcome::Reason;

mod go_x509;

use go_x509::{Anchor, Rejection, Roots, SystemRoots};

/// The verifier for one target's TLS settings, built once and shared by its probes.
#[derive(Clone, Debug)]
pub(crate) struct Trust {
    /// `None` with `insecure_skip_verify`.
    verifier: Option<Arc<Roots>>,
    /// The client certificates offered when the server asks.
    client: Vec<ClientCertificate>,
}

/// Go's client certificate choice (`tls.Config.Certificates` without `GetClientCertificate`,
/// `clientHandshakeState.getClientCertificate`): the first chain the server's
/// CertificateRequest supports — a signature scheme it accepts and, when it names acceptable
/// CAs, an issuer among them (`CertificateRequestInfo.SupportsCertificate`); none otherwise.
#[derive(Debug)]
struct ClientCerts(Vec<ClientCertificate>);

impl rustls::client::ResolvesClientCert for ClientCerts {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.0
            .iter()
            .find(|c| {
                c.key.key.choose_scheme(sigschemes).is_some()
                    && (root_hint_subjects.is_empty()
                        || c.key
                            .cert
                            .iter()
                            .any(|der| issued_by_one_of(der, root_hint_subjects)))
            })
            .map(|c| c.key.clone())
    }

    fn has_certs(&self) -> bool {
        !self.0.is_empty()
    }
}

/// Whether the certificate's issuer is one of the names (with or without the outer SEQUENCE,
/// as TLS and X.509 write them).
fn issued_by_one_of(der: &CertificateDer<'_>, names: &[&[u8]]) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return false;
    };
    let raw = cert.issuer().as_raw();
    // The content of the SEQUENCE: after its tag and (short or long form) length.
    let header = match raw.get(1) {
        Some(&l) if l < 0x80 => 2,
        Some(&l) => 2 + usize::from(l & 0x7f),
        None => raw.len(),
    };
    let inner = raw.get(header..).unwrap_or_default();
    names
        .iter()
        .any(|n| *n == raw || (!inner.is_empty() && *n == inner))
}

fn system_roots() -> &'static SystemRoots {
    static ROOTS: OnceLock<SystemRoots> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        for e in &loaded.errors {
            tracing::debug!(error = %e, "Skipping part of the system trust store");
        }
        SystemRoots::new(loaded.certs)
    })
}

/// The root pool of the system roots plus `extra_roots`, shared by every target (and every
/// config generation) with the same extra roots while any of them is alive.
///
/// Each pool holds its own copy of the system trust anchors (~150, some hundred kB), so
/// building one per target made the agent's memory grow with the number of targets: 200
/// targets with the same `tls.ca_file` held 200 copies. The pool is immutable, so sharing it
/// changes no decision.
fn shared_verifier(extra_roots: &[CertificateDer<'static>]) -> Result<Arc<Roots>, String> {
    type Cache = HashMap<Vec<CertificateDer<'static>>, Weak<Roots>>;
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(v) = cache.get(extra_roots).and_then(Weak::upgrade) {
        return Ok(v);
    }
    let roots = Roots::new(system_roots(), extra_roots).map_err(|bad| {
        format!(
            "tls.ca_file: certificate number {} of the file cannot be used as a trust anchor (its subject or public key cannot be parsed)",
            bad.index + 1
        )
    })?;
    let verifier = Arc::new(roots);
    // Forget the pools no target uses any more (removed by a reload).
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
    /// When a certificate of `tls.ca_file` cannot be a trust anchor.
    pub(crate) fn new(settings: &TlsSettings) -> Result<Self, String> {
        let client = settings.client_certificates.clone();
        if settings.insecure_skip_verify {
            return Ok(Trust {
                verifier: None,
                client,
            });
        }
        Ok(Trust {
            verifier: Some(shared_verifier(&settings.extra_roots)?),
            client,
        })
    }

    /// Runs the handshake. On failure the report still carries what was seen of the chain.
    pub(crate) async fn handshake<S>(
        &self,
        tcp: S,
        host: &str,
    ) -> Result<(TlsStream<S>, TlsReport), (StepError, TlsReport)>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
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
            roots: self.verifier.clone(),
            algorithms: provider_algorithms(),
            seen: Mutex::default(),
        });
        let builder = ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(capture.clone());
        let mut config = if self.client.is_empty() {
            builder.with_no_client_auth()
        } else {
            builder.with_client_cert_resolver(Arc::new(ClientCerts(self.client.clone())))
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.resumption = rustls::client::Resumption::disabled();
        let result = TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await;
        let seen = std::mem::take(&mut *capture.seen.lock().unwrap_or_else(|p| p.into_inner()));
        match result {
            Ok(stream) => {
                let version = stream.get_ref().1.protocol_version().map(version_name);
                Ok((stream, seen.report(version)))
            }
            Err(e) => {
                let error = match &seen.rejection {
                    Some(r) => StepError::new(r.reason, format!("{host}: {}", r.message)),
                    None => classify(host, &e),
                };
                Err((error, seen.report(None)))
            }
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

/// What the verifier saw of one handshake.
#[derive(Debug, Default)]
struct Seen {
    /// The earliest NotAfter of the chain the server presented.
    chain_not_after: Option<i64>,
    /// The anchor the chain was verified against, or the root that made it fail.
    anchor: Option<Anchor>,
    /// Why the chain was refused, as Go would refuse it.
    rejection: Option<Rejection>,
}

impl Seen {
    fn report(self, version: Option<&'static str>) -> TlsReport {
        let anchor_not_after = self.anchor.as_ref().and_then(|a| a.not_after);
        TlsReport {
            version,
            earliest_not_after: self
                .chain_not_after
                .into_iter()
                .chain(anchor_not_after)
                .min(),
            anchor_subject: self.anchor.map(|a| a.subject),
            anchor_not_after,
        }
    }
}

/// Records the chain's earliest NotAfter, then verifies it with Go's rules (or accepts it,
/// when skipping verification) and records the anchor or the refusal.
#[derive(Debug)]
struct Capture {
    roots: Option<Arc<Roots>>,
    algorithms: WebPkiSupportedAlgorithms,
    seen: Mutex<Seen>,
}

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain_not_after = std::iter::once(end_entity)
            .chain(intermediates)
            .filter_map(not_after)
            .min();
        let verdict = self.roots.as_ref().map(|roots| {
            roots.verify(
                self.algorithms.all,
                end_entity,
                intermediates,
                server_name,
                now,
            )
        });
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.chain_not_after = chain_not_after;
        match verdict {
            None => Ok(ServerCertVerified::assertion()),
            Some(Ok(anchor)) => {
                seen.anchor = Some(anchor);
                Ok(ServerCertVerified::assertion())
            }
            Some(Err(rejection)) => {
                let error = rejection.to_rustls();
                seen.anchor.clone_from(&rejection.anchor);
                seen.rejection = Some(rejection);
                Err(error)
            }
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

/// A handshake failure other than the chain's verdict (which [`Capture`] words itself), in a
/// sentence. tokio-rustls reports them as `io::Error` wrapping a `rustls::Error`; every
/// variant gets words of its own or a generic sentence naming the step — never Rust's `Debug`
/// text, which is what `rustls::Error`'s `Display` prints for most variants.
fn classify(host: &str, err: &std::io::Error) -> StepError {
    let Some(tls) = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return StepError::new(
            Reason::TlsHandshake,
            format!(
                "{host}: the connection failed during the TLS handshake: {}",
                super::os_text(err)
            ),
        );
    };
    let (reason, what) = describe(host, tls);
    StepError::new(reason, format!("{host}: {what}"))
}

fn describe(host: &str, tls: &rustls::Error) -> (Reason, String) {
    use rustls::Error as E;
    let handshake = |s: &str| (Reason::TlsHandshake, s.to_owned());
    match tls {
        E::InvalidCertificate(c) => certificate_error(c),
        E::AlertReceived(a) => (Reason::TlsHandshake, alert(*a, host)),
        E::PeerIncompatible(p) => (Reason::TlsHandshake, incompatible(p)),
        E::PeerMisbehaved(_) => handshake(
            "the registry broke the TLS protocol during the handshake (a message with values TLS forbids)",
        ),
        E::InvalidMessage(_)
        | E::InappropriateMessage { .. }
        | E::InappropriateHandshakeMessage { .. } => handshake(
            "the registry sent a malformed or unexpected TLS message (is it speaking TLS on this port?)",
        ),
        E::PeerSentOversizedRecord => handshake(
            "the registry sent a TLS record larger than TLS allows (is it speaking TLS on this port?)",
        ),
        E::NoCertificatesPresented => handshake("the registry presented no certificate"),
        E::DecryptError => handshake(
            "a TLS record from the registry could not be decrypted (corrupted on the way, or a broken TLS peer)",
        ),
        E::NoApplicationProtocol => handshake(
            "the registry accepts none of the application protocols pullprobe offers (ALPN http/1.1)",
        ),
        E::UnsupportedNameType => (
            Reason::TlsHandshake,
            format!("{host} cannot be sent as a TLS server name"),
        ),
        E::FailedToGetCurrentTime => handshake("the node's clock could not be read"),
        E::FailedToGetRandomBytes => {
            handshake("the node gave no random numbers for the TLS handshake")
        }
        E::General(detail) => (
            Reason::TlsHandshake,
            format!("the TLS handshake failed: {detail}"),
        ),
        _ => {
            handshake("the TLS handshake failed (rustls gave a reason pullprobe has no words for)")
        }
    }
}

/// A certificate error that did not come from [`Capture`]'s verdict (e.g. a signature in the
/// handshake itself).
fn certificate_error(c: &rustls::CertificateError) -> (Reason, String) {
    use rustls::CertificateError as C;
    match c {
        C::Expired | C::ExpiredContext { .. } => (
            Reason::TlsExpired,
            "the certificate has expired".to_owned(),
        ),
        C::NotValidYet | C::NotValidYetContext { .. } => (
            Reason::TlsExpired,
            "the certificate is not valid yet; check the node's clock".to_owned(),
        ),
        C::NotValidForName | C::NotValidForNameContext { .. } => (
            Reason::TlsNameMismatch,
            "the certificate is not valid for this name".to_owned(),
        ),
        C::BadSignature => (
            Reason::TlsHandshake,
            "the registry's handshake signature does not verify with its certificate's key"
                .to_owned(),
        ),
        C::UnsupportedSignatureAlgorithmContext { .. }
        | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => (
            Reason::TlsHandshake,
            "the registry signs the handshake with an algorithm pullprobe (rustls with ring) does not support"
                .to_owned(),
        ),
        _ => (
            Reason::TlsUntrusted,
            "the registry's certificate was refused".to_owned(),
        ),
    }
}

/// A fatal alert from the registry, in words; the alert's name is the RFC 8446 one.
fn alert(a: AlertDescription, host: &str) -> String {
    use AlertDescription as A;
    let name = alert_name(a);
    match a {
        A::HandshakeFailure | A::InsufficientSecurity => format!(
            "the registry refused the handshake ({name}): it shares no TLS version, cipher suite, key exchange group or signature scheme with pullprobe"
        ),
        A::ProtocolVersion => format!(
            "the registry refused the TLS version ({name}); pullprobe, like containerd's Go client by default, speaks TLS 1.2 and 1.3"
        ),
        A::UnrecognisedName => {
            format!("the registry does not serve the name {host} ({name})")
        }
        A::CertificateRequired | A::BadCertificate | A::CertificateUnknown | A::UnknownCA => {
            format!(
                "the registry wants a client certificate it accepts ({name}); pullprobe sends none"
            )
        }
        A::AccessDenied => format!("the registry denied the connection ({name})"),
        A::InternalError => format!("the registry's TLS stack failed ({name})"),
        _ => format!("the registry ended the TLS handshake with the alert {name}"),
    }
}

fn alert_name(a: AlertDescription) -> String {
    use AlertDescription as A;
    let name = match a {
        A::CloseNotify => "close_notify",
        A::UnexpectedMessage => "unexpected_message",
        A::BadRecordMac => "bad_record_mac",
        A::RecordOverflow => "record_overflow",
        A::HandshakeFailure => "handshake_failure",
        A::BadCertificate => "bad_certificate",
        A::UnsupportedCertificate => "unsupported_certificate",
        A::CertificateRevoked => "certificate_revoked",
        A::CertificateExpired => "certificate_expired",
        A::CertificateUnknown => "certificate_unknown",
        A::IllegalParameter => "illegal_parameter",
        A::UnknownCA => "unknown_ca",
        A::AccessDenied => "access_denied",
        A::DecodeError => "decode_error",
        A::DecryptError => "decrypt_error",
        A::ProtocolVersion => "protocol_version",
        A::InsufficientSecurity => "insufficient_security",
        A::InternalError => "internal_error",
        A::InappropriateFallback => "inappropriate_fallback",
        A::UserCanceled => "user_canceled",
        A::MissingExtension => "missing_extension",
        A::UnsupportedExtension => "unsupported_extension",
        A::UnrecognisedName => "unrecognized_name",
        A::BadCertificateStatusResponse => "bad_certificate_status_response",
        A::UnknownPSKIdentity => "unknown_psk_identity",
        A::CertificateRequired => "certificate_required",
        A::NoApplicationProtocol => "no_application_protocol",
        A::EncryptedClientHelloRequired => "ech_required",
        other => return format!("number {}", u8::from(other)),
    };
    name.to_owned()
}

fn incompatible(p: &rustls::PeerIncompatible) -> String {
    use rustls::PeerIncompatible as P;
    match p {
        P::NoCipherSuitesInCommon => "the registry shares no cipher suite with pullprobe (TLS 1.3 suites, and for TLS 1.2 ECDHE with AES-GCM or ChaCha20-Poly1305; Go's client also offers AES-CBC suites)",
        P::NoKxGroupsInCommon => "the registry shares no key exchange group with pullprobe (X25519, P-256, P-384; Go's client also offers P-521 and X25519MLKEM768)",
        P::NoSignatureSchemesInCommon => "the registry shares no signature scheme with pullprobe",
        P::ServerDoesNotSupportTls12Or13
        | P::ServerTlsVersionIsDisabledByOurConfig
        | P::SupportedVersionsExtensionRequired
        | P::Tls12NotOffered
        | P::Tls12NotOfferedOrEnabled => "the registry speaks neither TLS 1.2 nor TLS 1.3",
        P::ExtendedMasterSecretExtensionRequired => "the registry does not support the extended master secret extension",
        P::UncompressedEcPointsRequired
        | P::NoEcPointFormatsInCommon
        | P::EcPointsExtensionRequired => "the registry uses an elliptic-curve point format pullprobe does not support",
        _ => "the registry's TLS parameters are incompatible with pullprobe's",
    }
    .to_owned()
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

    fn verifier(settings: &TlsSettings) -> Arc<Roots> {
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

    /// Every handshake error gets words, never the `Debug` text of the error or its variants
    /// (which is what `rustls::Error`'s own `Display` prints for most of them).
    #[test]
    fn handshake_errors_are_sentences_without_debug_text() {
        use rustls::{
            AlertDescription as A, CertificateError as C, Error as E, PeerIncompatible as P,
        };
        let errors = [
            E::AlertReceived(A::HandshakeFailure),
            E::AlertReceived(A::ProtocolVersion),
            E::AlertReceived(A::UnrecognisedName),
            E::AlertReceived(A::CertificateRequired),
            E::AlertReceived(A::DecodeError),
            E::AlertReceived(A::Unknown(201)),
            E::PeerIncompatible(P::NoCipherSuitesInCommon),
            E::PeerIncompatible(P::NoKxGroupsInCommon),
            E::PeerIncompatible(P::ServerDoesNotSupportTls12Or13),
            E::PeerIncompatible(P::IncorrectCertificateTypeExtension),
            E::PeerMisbehaved(rustls::PeerMisbehaved::IllegalMiddleboxChangeCipherSpec),
            E::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
            E::InvalidCertificate(C::BadSignature),
            E::InvalidCertificate(C::UnknownIssuer),
            E::InvalidCertificate(C::UnhandledCriticalExtension),
            E::InvalidCertificate(C::ApplicationVerificationFailure),
            E::NoCertificatesPresented,
            E::DecryptError,
            E::PeerSentOversizedRecord,
            E::NoApplicationProtocol,
            E::HandshakeNotComplete,
            E::BadMaxFragmentSize,
            E::General("boom".to_owned()),
            E::Other(rustls::OtherError(Arc::new(std::io::Error::other("x")))),
        ];
        for e in errors {
            let io = std::io::Error::new(std::io::ErrorKind::InvalidData, e.clone());
            let step = classify("registry.test", &io);
            let debug = format!("{e:?}");
            let names = debug
                .split(|c: char| !c.is_alphanumeric())
                .filter(|t| t.len() > 3 && t.starts_with(char::is_uppercase));
            for name in names.filter(|t| t.chars().any(char::is_lowercase)) {
                assert!(
                    !step.message.contains(name),
                    "{:?} shows {name:?} of {debug}",
                    step.message
                );
            }
            assert!(
                step.message.starts_with("registry.test: "),
                "{}",
                step.message
            );
            assert!(!step.message.contains('{'), "{}", step.message);
        }
    }

    #[test]
    fn alerts_are_named_as_in_the_rfc() {
        assert_eq!(
            alert_name(AlertDescription::HandshakeFailure),
            "handshake_failure"
        );
        assert_eq!(
            alert_name(AlertDescription::UnrecognisedName),
            "unrecognized_name"
        );
        assert_eq!(alert_name(AlertDescription::Unknown(201)), "number 201");
    }
}
