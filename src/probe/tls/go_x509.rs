//! Certificate verification that gives Go `crypto/x509`'s verdicts.
//!
//! The node's pull is containerd, which verifies the registry's chain with Go's
//! `Certificate.Verify` (`src/crypto/x509/verify.go`), called by `crypto/tls` with the server
//! name and the certificates the server sent. pullprobe builds its paths with rustls-webpki,
//! and corrects it where Go decides differently:
//!
//! * Go checks the leaf's validity period and then its name **before** any chain is built
//!   (`Certificate.Verify`: `isValid(leafCertificate)`, then `VerifyHostname`), so those two
//!   failures win over an unknown issuer. pullprobe checks them in the same order.
//! * Go accepts a leaf that is itself in the root pool, byte for byte, whatever it is
//!   (`Certificate.Verify`: `opts.Roots.contains(c)`), e.g. Docker's self-signed `CA:TRUE`
//!   recipe certificate given as `ca` in hosts.toml. webpki refuses a `CA:TRUE` leaf.
//! * Go never asks whether the leaf is a CA (`isValid` requires `CA:TRUE` of intermediates
//!   only), so a `CA:TRUE` leaf that chains to a root verifies. webpki refuses it
//!   (`CaUsedAsEndEntity`); pullprobe then builds the chain as `buildChains` does
//!   ([`GoChains`]). The same happens for chains webpki refuses by its built-in distrust list
//!   (`CertDistrusted`), which Go does not have.
//! * Go checks the root like any other parent (`buildChains` → `CheckSignatureFrom` then
//!   `isValid(rootCertificate)`): it must be a CA allowed to sign certificates, inside its
//!   validity period, with a path length constraint the chain respects, and an extended key
//!   usage that allows server authentication (`checkChainForKeyUsage`). webpki trust anchors
//!   carry none of that, so an expired root passed; pullprobe keeps every root's DER and applies
//!   those rules to the anchor of each path webpki finds ([`Roots::go_root_rules`]).
//! * An extended key usage of `anyExtendedKeyUsage` satisfies Go (`checkChainForKeyUsage`),
//!   not webpki's `KeyUsage::server_auth`; pullprobe passes webpki a validator with Go's rule.
//!
//! What still differs is listed in README.md ("Where pullprobe's TLS still differs from Go").

use std::cell::{Cell, RefCell};
use std::fmt;

use rustls_pki_types::{
    CertificateDer, ServerName, SignatureVerificationAlgorithm, TrustAnchor, UnixTime,
};
use webpki::{EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeId, KeyPurposeIdIter};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::x509::{X509Name, X509Version};

use crate::outcome::Reason;

/// Where a root comes from, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RootSource {
    /// The node's trust store (`SSL_CERT_FILE` / `SSL_CERT_DIR` / the system bundle).
    System,
    /// The Mozilla bundle built into pullprobe, used when the node has no trust store.
    Builtin,
    /// The target's `tls.ca_file`.
    CaFile,
    /// The registry's own certificate, found in the roots (Go's `roots.contains`).
    Leaf,
}

impl RootSource {
    fn describe(self) -> &'static str {
        match self {
            RootSource::System => "from the node's trust store",
            RootSource::Builtin => "from the Mozilla bundle built into pullprobe",
            RootSource::CaFile => "from tls.ca_file",
            RootSource::Leaf => "the registry's own certificate, found in the trusted roots",
        }
    }
}

/// The trust anchor a chain was verified against, or, when the chain was refused because of
/// its root, that root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Anchor {
    /// The subject, `CN=…, O=…` in certificate order.
    pub subject: String,
    /// NotAfter, Unix seconds; `None` for the built-in Mozilla anchors, which carry no dates.
    pub not_after: Option<i64>,
    pub source: RootSource,
}

/// Why Go would refuse the chain: the reason label, a sentence (without the host), and the
/// root the refusal is about, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub reason: Reason,
    pub message: String,
    pub anchor: Option<Anchor>,
}

impl Rejection {
    fn new(reason: Reason, message: impl Into<String>) -> Self {
        Rejection {
            reason,
            message: message.into(),
            anchor: None,
        }
    }

    fn untrusted(message: impl Into<String>) -> Self {
        Rejection::new(Reason::TlsUntrusted, message)
    }

    /// The rustls error to abort the handshake with; it decides the alert sent to the server.
    pub(crate) fn to_rustls(&self) -> rustls::Error {
        let c = match self.reason {
            Reason::TlsExpired => rustls::CertificateError::Expired,
            Reason::TlsNameMismatch => rustls::CertificateError::NotValidForName,
            _ => rustls::CertificateError::UnknownIssuer,
        };
        rustls::Error::InvalidCertificate(c)
    }
}

/// A certificate that could not be used as a trust anchor.
#[derive(Debug)]
pub(crate) struct BadRoot {
    pub index: usize,
}

/// The root pool: the node's roots plus the target's extra roots, as webpki trust anchors
/// and, where there is one, the certificate each came from.
pub(crate) struct Roots {
    system: &'static SystemRoots,
    extra: Vec<CertificateDer<'static>>,
    /// System anchors first, then one per `extra` certificate.
    anchors: Vec<TrustAnchor<'static>>,
}

/// The node's trust store, loaded once.
pub(crate) struct SystemRoots {
    /// Empty when the built-in Mozilla bundle stands in for a missing trust store.
    ders: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
}

impl SystemRoots {
    /// Keeps the certificates that can be trust anchors; the Mozilla bundle if none can.
    pub(crate) fn new(certs: Vec<CertificateDer<'static>>) -> Self {
        let mut ders = Vec::new();
        let mut anchors = Vec::new();
        for der in certs {
            if let Ok(anchor) = webpki::anchor_from_trusted_cert(&der) {
                anchors.push(anchor.to_owned());
                ders.push(der);
            }
        }
        if anchors.is_empty() {
            tracing::warn!(
                "No system CA certificates found; using the Mozilla root bundle built into pullprobe"
            );
            anchors = webpki_roots::TLS_SERVER_ROOTS.to_vec();
        }
        SystemRoots { ders, anchors }
    }
}

impl fmt::Debug for Roots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Roots")
            .field("system", &self.system.anchors.len())
            .field("extra", &self.extra.len())
            .finish()
    }
}

/// Go's default `KeyUsages` for a TLS client: server authentication, where a certificate that
/// lists no extended key usage, or lists `anyExtendedKeyUsage`, qualifies
/// (verify.go: `checkChainForKeyUsage`).
struct GoServerAuth;

/// id-kp-serverAuth, 1.3.6.1.5.5.7.3.1 (OID content octets).
const EKU_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
/// anyExtendedKeyUsage, 2.5.29.37.0.
const EKU_ANY: &[u8] = &[0x55, 0x1d, 0x25, 0x00];

impl ExtendedKeyUsageValidator for GoServerAuth {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        let mut empty = true;
        for id in iter {
            empty = false;
            let id = id?;
            if id == KeyPurposeId::new(EKU_SERVER_AUTH) || id == KeyPurposeId::new(EKU_ANY) {
                return Ok(());
            }
        }
        if empty {
            return Ok(());
        }
        Err(webpki::Error::RequiredEkuNotFoundContext(
            webpki::RequiredEkuNotFoundContext {
                required: webpki::KeyUsage::server_auth(),
                present: Vec::new(),
            },
        ))
    }
}

impl Roots {
    /// The system roots plus `extra`.
    ///
    /// # Errors
    /// The index in `extra` of a certificate that cannot be a trust anchor.
    pub(crate) fn new(
        system: &'static SystemRoots,
        extra: &[CertificateDer<'static>],
    ) -> Result<Self, BadRoot> {
        let mut anchors = system.anchors.clone();
        for (index, der) in extra.iter().enumerate() {
            let anchor = webpki::anchor_from_trusted_cert(der).map_err(|_| BadRoot { index })?;
            anchors.push(anchor.to_owned());
        }
        Ok(Roots {
            system,
            extra: extra.to_vec(),
            anchors,
        })
    }

    /// The certificate behind anchor `i` and where it comes from.
    fn root(&self, i: usize) -> (Option<&CertificateDer<'static>>, RootSource) {
        let system = self.system.anchors.len();
        if i < system {
            if self.system.ders.is_empty() {
                (None, RootSource::Builtin)
            } else {
                (self.system.ders.get(i), RootSource::System)
            }
        } else {
            (self.extra.get(i - system), RootSource::CaFile)
        }
    }

    /// Every root certificate with its anchor index.
    fn root_ders(&self) -> impl Iterator<Item = (usize, &CertificateDer<'static>)> {
        (0..self.anchors.len()).filter_map(|i| self.root(i).0.map(|d| (i, d)))
    }

    /// Go's `CertPool.contains`: the same certificate, byte for byte.
    fn contains(&self, der: &[u8]) -> bool {
        self.root_ders().any(|(_, d)| d.as_ref() == der)
    }

    fn anchor_of(&self, i: usize) -> Anchor {
        let (der, source) = self.root(i);
        match der.and_then(|d| Node::parse(d.as_ref())) {
            Some(node) => node.anchor(source),
            None => Anchor {
                subject: self
                    .anchors
                    .get(i)
                    .map(|a| name_from_contents(a.subject.as_ref()))
                    .unwrap_or_default(),
                not_after: None,
                source,
            },
        }
    }

    /// Verifies `end_entity` for `server_name` as Go's `Certificate.Verify` would, with
    /// `intermediates` as the pool of intermediates (what the server sent after the leaf).
    ///
    /// # Errors
    /// Go's refusal, classified, in a sentence.
    pub(crate) fn verify(
        &self,
        algs: &[&dyn SignatureVerificationAlgorithm],
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<Anchor, Rejection> {
        let leaf = Node::parse(end_entity.as_ref()).ok_or_else(|| {
            Rejection::untrusted(
                "the registry's certificate is not a well-formed X.509 certificate",
            )
        })?;
        let ee = EndEntityCert::try_from(end_entity)
            .map_err(|e| chain_error(&e, "the registry's certificate", &leaf, &[]))?;

        // verify.go: Certificate.Verify → isValid(leafCertificate): the validity period.
        check_validity(&leaf.cert, now, "the certificate")?;
        // verify.go: Certificate.Verify → VerifyHostname, before any chain is built.
        ee.verify_is_valid_for_subject_name(server_name)
            .map_err(|_| name_error(&leaf.cert, server_name))?;
        // verify.go: Certificate.Verify → opts.Roots.contains(c): a trusted leaf is its own
        // chain; only checkChainForKeyUsage still applies to it.
        if self.contains(end_entity.as_ref()) {
            if !eku_allows_server_auth(&leaf.cert) {
                return Err(incompatible_usage("the certificate"));
            }
            return Ok(leaf.anchor(RootSource::Leaf));
        }

        // verify.go: buildChains, through webpki, with Go's rules for the root added.
        let chosen = Cell::new(None);
        let refused = RefCell::new(None);
        let go_rules =
            |path: &webpki::VerifiedPath<'_>| self.go_root_rules(path, now, &chosen, &refused);
        let webpki = ee.verify_for_usage(
            algs,
            &self.anchors,
            intermediates,
            now,
            GoServerAuth,
            None,
            Some(&go_rules),
        );
        match webpki {
            Ok(_) => Ok(chosen.get().map_or_else(
                || Anchor {
                    subject: String::new(),
                    not_after: None,
                    source: RootSource::System,
                },
                |i| self.anchor_of(i),
            )),
            // Rules of webpki's that Go does not have: build the chain the Go way.
            Err(webpki::Error::CaUsedAsEndEntity | webpki::Error::CertDistrusted) => {
                GoChains::new(self, algs, now).verify(&leaf, intermediates)
            }
            Err(e) => Err(refused.into_inner().unwrap_or_else(|| {
                chain_error(&e, "a certificate of the chain", &leaf, intermediates)
            })),
        }
    }

    /// Go's checks of the root a path ends at (verify.go: `CheckSignatureFrom` and
    /// `isValid(rootCertificate)` in `buildChains`, then `checkChainForKeyUsage`). Returning an
    /// error makes webpki look for another path; the first refusal is kept for the message.
    fn go_root_rules(
        &self,
        path: &webpki::VerifiedPath<'_>,
        now: UnixTime,
        chosen: &Cell<Option<usize>>,
        refused: &RefCell<Option<Rejection>>,
    ) -> Result<(), webpki::Error> {
        let Some(i) = self
            .anchors
            .iter()
            .position(|a| std::ptr::eq(a, path.anchor()))
        else {
            return Ok(());
        };
        let (der, source) = self.root(i);
        let Some(root) = der.and_then(|d| Node::parse(d.as_ref())) else {
            // The built-in anchors carry no certificate: nothing more to check.
            chosen.set(Some(i));
            return Ok(());
        };
        let intermediates = path.intermediate_certificates().count();
        let verdict = check_can_sign(&root.cert)
            .map_err(|why| {
                Rejection::untrusted(format!(
                    "the chain ends at the root CA {} ({}), which Go's crypto/x509 refuses: {why}",
                    quoted_name(&root.cert),
                    source.describe()
                ))
            })
            .and_then(|()| check_validity(&root.cert, now, &root_label(&root.cert, source)))
            .and_then(|()| {
                check_path_len(&root.cert, &root_label(&root.cert, source), intermediates)
            })
            .and_then(|()| {
                if eku_allows_server_auth(&root.cert) {
                    Ok(())
                } else {
                    Err(incompatible_usage(&root_label(&root.cert, source)))
                }
            });
        match verdict {
            Ok(()) => {
                chosen.set(Some(i));
                Ok(())
            }
            Err(mut r) => {
                r.anchor = Some(root.anchor(source));
                refused.borrow_mut().get_or_insert(r);
                Err(webpki::Error::UnknownIssuer)
            }
        }
    }
}

// ---- Go's buildChains, for what webpki refuses and Go does not ---------------------------------

/// A parsed certificate with the pieces a signature check needs.
struct Node<'a> {
    cert: X509Certificate<'a>,
    signed: Signed<'a>,
}

/// `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }`.
struct Signed<'a> {
    /// The whole `tbsCertificate` element: the signed message.
    tbs: &'a [u8],
    /// The contents of `signatureAlgorithm` (webpki's `AlgorithmIdentifier` form).
    algorithm: &'a [u8],
    signature: &'a [u8],
}

impl<'a> Node<'a> {
    fn parse(der: &'a [u8]) -> Option<Node<'a>> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let signed = signed_parts(der)?;
        Some(Node { cert, signed })
    }

    fn anchor(&self, source: RootSource) -> Anchor {
        Anchor {
            subject: self.cert.subject().to_string(),
            not_after: Some(self.cert.validity().not_after.timestamp()),
            source,
        }
    }
}

/// One DER element and what follows it.
struct Element<'a> {
    tag: u8,
    contents: &'a [u8],
    /// Tag, length and contents.
    whole: &'a [u8],
    rest: &'a [u8],
}

fn der_element(input: &[u8]) -> Option<Element<'_>> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    let header = input.len() - rest.len();
    Some(Element {
        tag,
        contents: &rest[..len],
        whole: &input[..header + len],
        rest: &rest[len..],
    })
}

/// The element at the start of `input` if it has `tag`.
fn expect(input: &[u8], tag: u8) -> Option<Element<'_>> {
    der_element(input).filter(|e| e.tag == tag)
}

const SEQUENCE: u8 = 0x30;
const BIT_STRING: u8 = 0x03;

/// The contents of a BIT STRING with no unused bits.
fn whole_bytes(bits: &[u8]) -> Option<&[u8]> {
    match bits.split_first()? {
        (0, bytes) => Some(bytes),
        _ => None,
    }
}

fn signed_parts(der: &[u8]) -> Option<Signed<'_>> {
    let cert = expect(der, SEQUENCE)?.contents;
    let tbs = expect(cert, SEQUENCE)?;
    let algorithm = expect(tbs.rest, SEQUENCE)?;
    let signature = expect(algorithm.rest, BIT_STRING)?;
    Some(Signed {
        tbs: tbs.whole,
        algorithm: algorithm.contents,
        signature: whole_bytes(signature.contents)?,
    })
}

/// `SubjectPublicKeyInfo ::= SEQUENCE { algorithm, subjectPublicKey }`: the algorithm's
/// contents and the key's bits.
fn spki_parts(spki: &[u8]) -> Option<(&[u8], &[u8])> {
    let inner = expect(spki, SEQUENCE)?.contents;
    let algorithm = expect(inner, SEQUENCE)?;
    let key = expect(algorithm.rest, BIT_STRING)?;
    Some((algorithm.contents, whole_bytes(key.contents)?))
}

/// A certificate's subject, given as the contents of its `Name` (webpki anchors keep those).
fn name_from_contents(contents: &[u8]) -> String {
    let Ok(len) = u16::try_from(contents.len()) else {
        return String::new();
    };
    let mut der = vec![SEQUENCE, 0x82];
    der.extend_from_slice(&len.to_be_bytes());
    der.extend_from_slice(contents);
    use x509_parser::prelude::FromDer as _;
    X509Name::from_der(&der)
        .map(|(_, n)| n.to_string())
        .unwrap_or_default()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Intermediate,
    Root,
}

/// Go's `buildChains` over the roots and the certificates the server sent.
struct GoChains<'r> {
    roots: &'r Roots,
    algs: &'r [&'r dyn SignatureVerificationAlgorithm],
    now: UnixTime,
    /// `CheckSignatureFrom` calls so far; Go gives up after 100 (`maxChainSignatureChecks`).
    signature_checks: usize,
}

/// What a candidate parent led to.
enum Step {
    Chain(usize),
    Failed(Rejection),
}

impl<'r> GoChains<'r> {
    fn new(
        roots: &'r Roots,
        algs: &'r [&'r dyn SignatureVerificationAlgorithm],
        now: UnixTime,
    ) -> Self {
        GoChains {
            roots,
            algs,
            now,
            signature_checks: 0,
        }
    }

    /// The leaf has passed `isValid` and `VerifyHostname` and is not itself a root.
    fn verify(
        mut self,
        leaf: &Node<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<Anchor, Rejection> {
        let roots: Vec<(usize, Node<'_>)> = self
            .roots
            .root_ders()
            .filter_map(|(i, d)| Node::parse(d.as_ref()).map(|n| (i, n)))
            .collect();
        let intermediates: Vec<Node<'_>> = intermediates
            .iter()
            .filter_map(|d| Node::parse(d.as_ref()))
            .collect();
        let mut chain = vec![leaf];
        match self.build(&mut chain, &roots, &intermediates) {
            Step::Chain(i) => Ok(self.roots.anchor_of(i)),
            Step::Failed(r) => Err(r),
        }
    }

    /// verify.go: `buildChains` — roots first, then intermediates; the first complete chain
    /// whose key usages allow server authentication wins. Go collects every chain, but any
    /// one makes the verdict.
    fn build<'c>(
        &mut self,
        chain: &mut Vec<&'c Node<'c>>,
        roots: &'c [(usize, Node<'c>)],
        intermediates: &'c [Node<'c>],
    ) -> Step {
        let child = chain[chain.len() - 1];
        let mut err: Option<Rejection> = None;
        let mut hint: Option<(String, String)> = None;
        let candidates = potential_parents(child, roots.iter().map(|(i, n)| (Some(*i), n)))
            .into_iter()
            .map(|(i, n)| (Kind::Root, i, n))
            .chain(
                potential_parents(child, intermediates.iter().map(|n| (None, n)))
                    .into_iter()
                    .map(|(i, n)| (Kind::Intermediate, i, n)),
            );
        for (kind, index, candidate) in candidates {
            if already_in_chain(candidate, chain) {
                continue;
            }
            self.signature_checks += 1;
            if self.signature_checks > 100 {
                return Step::Failed(Rejection::untrusted(
                    "the chain has so many candidate issuers that Go's crypto/x509 gives up after 100 signature checks",
                ));
            }
            if let Err(why) = check_signature_from(child, candidate, self.algs) {
                hint.get_or_insert((quoted_name(&candidate.cert), why));
                continue;
            }
            if let Err(mut r) = self.is_valid(candidate, kind, index, chain) {
                if let (Kind::Root, Some(i)) = (kind, index) {
                    r.anchor = Some(self.roots.anchor_of(i));
                }
                err = Some(r);
                continue;
            }
            chain.push(candidate);
            let step = match (kind, index) {
                (Kind::Root, Some(i)) => {
                    if chain.iter().all(|n| eku_allows_server_auth(&n.cert)) {
                        Step::Chain(i)
                    } else {
                        Step::Failed(incompatible_usage("a certificate of the chain"))
                    }
                }
                _ => self.build(chain, roots, intermediates),
            };
            chain.pop();
            match step {
                Step::Chain(i) => return Step::Chain(i),
                Step::Failed(r) => err = Some(r),
            }
        }
        Step::Failed(err.unwrap_or_else(|| unknown_authority(&child.cert, hint)))
    }

    /// verify.go: `isValid` for an intermediate or root candidate.
    fn is_valid(
        &self,
        c: &Node<'_>,
        kind: Kind,
        index: Option<usize>,
        chain: &[&Node<'_>],
    ) -> Result<(), Rejection> {
        let label = match (kind, index) {
            (Kind::Root, Some(i)) => root_label(&c.cert, self.roots.root(i).1),
            (Kind::Root, None) => format!("the root CA {}", quoted_name(&c.cert)),
            (Kind::Intermediate, _) => format!("the intermediate CA {}", quoted_name(&c.cert)),
        };
        if let Some(oid) = unhandled_critical_extension(&c.cert) {
            return Err(Rejection::untrusted(format!(
                "{label} has a critical extension ({oid}) that Go's crypto/x509 does not handle"
            )));
        }
        check_validity(&c.cert, self.now, &label)?;
        check_name_constraints(&c.cert, chain).map_err(|why| {
            Rejection::untrusted(format!(
                "{label} is not allowed to issue a certificate for this name: {why}"
            ))
        })?;
        if kind == Kind::Intermediate && !is_ca(&c.cert) {
            return Err(Rejection::untrusted(format!(
                "{label} is not a CA certificate (basicConstraints CA:TRUE missing) but signed another certificate of the chain"
            )));
        }
        check_path_len(&c.cert, &label, chain.len() - 1)
    }
}

/// verify.go `CertPool.findPotentialParents`: the certificates whose subject is the child's
/// issuer, those whose key identifier matches the child's authority key identifier first.
fn potential_parents<'c>(
    child: &Node<'_>,
    pool: impl Iterator<Item = (Option<usize>, &'c Node<'c>)>,
) -> Vec<(Option<usize>, &'c Node<'c>)> {
    let akid = authority_key_id(&child.cert);
    let mut found: Vec<(u8, Option<usize>, &'c Node<'c>)> = pool
        .filter(|(_, n)| n.cert.subject().as_raw() == child.cert.issuer().as_raw())
        .map(|(i, n)| {
            let rank = match (akid, subject_key_id(&n.cert)) {
                (Some(a), Some(s)) if a == s => 0,
                (Some(_), Some(_)) => 2,
                _ => 1,
            };
            (rank, i, n)
        })
        .collect();
    found.sort_by_key(|(rank, _, _)| *rank);
    found.into_iter().map(|(_, i, n)| (i, n)).collect()
}

/// verify.go `alreadyInChain`: same subject, same key and same SANs.
fn already_in_chain(candidate: &Node<'_>, chain: &[&Node<'_>]) -> bool {
    fn san<'a>(n: &Node<'a>) -> Option<&'a [u8]> {
        n.cert
            .extensions()
            .iter()
            .find(|e| {
                matches!(
                    e.parsed_extension(),
                    ParsedExtension::SubjectAlternativeName(_)
                )
            })
            .map(|e| e.value)
    }
    chain.iter().any(|c| {
        c.cert.subject().as_raw() == candidate.cert.subject().as_raw()
            && c.cert.public_key().raw == candidate.cert.public_key().raw
            && san(c) == san(candidate)
    })
}

/// x509.go `CheckSignatureFrom`: the parent must be a CA allowed to sign certificates, and its
/// key must verify the child's signature.
fn check_signature_from(
    child: &Node<'_>,
    parent: &Node<'_>,
    algs: &[&dyn SignatureVerificationAlgorithm],
) -> Result<(), String> {
    check_can_sign(&parent.cert)?;
    let (key_algorithm, key) = spki_parts(parent.cert.public_key().raw)
        .ok_or_else(|| "its public key cannot be parsed".to_owned())?;
    let mut supported = false;
    for alg in algs {
        if alg.signature_alg_id().as_ref() != child.signed.algorithm
            || alg.public_key_alg_id().as_ref() != key_algorithm
        {
            continue;
        }
        supported = true;
        if alg
            .verify_signature(key, child.signed.tbs, child.signed.signature)
            .is_ok()
        {
            return Ok(());
        }
    }
    Err(if supported {
        "its key does not verify the signature".to_owned()
    } else {
        "the signature uses an algorithm or key type pullprobe (rustls with ring) cannot verify"
            .to_owned()
    })
}

/// The CA and key-usage half of x509.go `CheckSignatureFrom`.
fn check_can_sign(c: &X509Certificate<'_>) -> Result<(), String> {
    let bc = c.basic_constraints().ok().flatten();
    if (c.version() == X509Version::V3 && bc.is_none()) || bc.is_some_and(|b| !b.value.ca) {
        return Err("it is not a CA certificate (basicConstraints CA:TRUE missing)".to_owned());
    }
    if let Some(ku) = c.key_usage().ok().flatten()
        && !ku.value.key_cert_sign()
    {
        return Err("its key usage does not include certificate signing (keyCertSign)".to_owned());
    }
    Ok(())
}

fn is_ca(c: &X509Certificate<'_>) -> bool {
    c.basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|b| b.value.ca)
}

/// verify.go `isValid`: `MaxPathLen` against the number of intermediates below.
fn check_path_len(
    c: &X509Certificate<'_>,
    label: &str,
    intermediates: usize,
) -> Result<(), Rejection> {
    match c
        .basic_constraints()
        .ok()
        .flatten()
        .and_then(|b| b.value.path_len_constraint)
    {
        Some(max) if intermediates > usize::try_from(max).unwrap_or(usize::MAX) => {
            Err(Rejection::untrusted(format!(
                "{label} allows {max} intermediate CA(s) below it (pathLenConstraint) but the chain has {intermediates}"
            )))
        }
        _ => Ok(()),
    }
}

/// verify.go `isValid`: the validity period, with Go's strict comparisons.
fn check_validity(c: &X509Certificate<'_>, now: UnixTime, what: &str) -> Result<(), Rejection> {
    let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let v = c.validity();
    let (not_before, not_after) = (v.not_before.timestamp(), v.not_after.timestamp());
    if now_secs < not_before {
        return Err(Rejection::new(
            Reason::TlsExpired,
            format!(
                "{what} is not valid before {} (node time {}); check the node's clock",
                rfc3339(not_before),
                rfc3339(now_secs)
            ),
        ));
    }
    if now_secs > not_after {
        return Err(Rejection::new(
            Reason::TlsExpired,
            format!(
                "{what} expired at {} (node time {})",
                rfc3339(not_after),
                rfc3339(now_secs)
            ),
        ));
    }
    Ok(())
}

/// verify.go `checkChainForKeyUsage` for one certificate with `KeyUsages = [ServerAuth]`.
fn eku_allows_server_auth(c: &X509Certificate<'_>) -> bool {
    match c.extended_key_usage().ok().flatten() {
        None => true,
        Some(eku) => {
            let e = eku.value;
            let listed = e.any
                || e.server_auth
                || e.client_auth
                || e.code_signing
                || e.email_protection
                || e.time_stamping
                || e.ocsp_signing
                || !e.other.is_empty();
            !listed || e.any || e.server_auth
        }
    }
}

/// Extensions Go's parser understands (x509/parser.go `processExtensions`); a critical one
/// outside this list makes `isValid` fail with `UnhandledCriticalExtension`.
fn unhandled_critical_extension(c: &X509Certificate<'_>) -> Option<String> {
    const HANDLED: &[&str] = &[
        "2.5.29.14", // subjectKeyIdentifier
        "2.5.29.15", // keyUsage
        "2.5.29.17", // subjectAltName
        "2.5.29.19", // basicConstraints
        "2.5.29.30", // nameConstraints
        "2.5.29.31", // cRLDistributionPoints
        "2.5.29.32", // certificatePolicies
        "2.5.29.33", // policyMappings
        "2.5.29.36", // policyConstraints
        "2.5.29.37", // extKeyUsage
        "2.5.29.54", // inhibitAnyPolicy
    ];
    c.extensions()
        .iter()
        .filter(|e| e.critical)
        .map(|e| e.oid.to_id_string())
        .find(|oid| !HANDLED.contains(&oid.as_str()))
}

fn subject_key_id<'a>(c: &X509Certificate<'a>) -> Option<&'a [u8]> {
    c.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0),
            _ => None,
        })
}

fn authority_key_id<'a>(c: &X509Certificate<'a>) -> Option<&'a [u8]> {
    c.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref().map(|k| k.0),
            _ => None,
        })
}

// ---- name constraints (verify.go isValid → checkNameConstraints) ---------------------------

/// Go checks every SAN of every certificate already in the chain against the candidate CA's
/// DNS, IP, email and URI constraints (directoryName constraints are ignored).
fn check_name_constraints(ca: &X509Certificate<'_>, chain: &[&Node<'_>]) -> Result<(), String> {
    let Some(nc) = ca.name_constraints().ok().flatten() else {
        return Ok(());
    };
    fn subtrees<'a>(
        s: Option<&Vec<x509_parser::extensions::GeneralSubtree<'a>>>,
    ) -> Vec<GeneralName<'a>> {
        s.map(|v| v.iter().map(|t| t.base.clone()).collect())
            .unwrap_or_default()
    }
    let permitted = subtrees(nc.value.permitted_subtrees.as_ref());
    let excluded = subtrees(nc.value.excluded_subtrees.as_ref());
    let mut count = 0usize;
    for node in chain {
        let Some(san) = node.cert.subject_alternative_name().ok().flatten() else {
            continue;
        };
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => {
                    if reverse_labels(dns).is_none() {
                        return Err(format!("cannot parse DNS name {dns:?}"));
                    }
                    check_constraint(
                        &mut count,
                        "DNS name",
                        dns,
                        &permitted,
                        &excluded,
                        |c| match c {
                            GeneralName::DNSName(c) => Some(match_domain(dns, c)),
                            _ => None,
                        },
                    )?;
                }
                GeneralName::IPAddress(ip) => {
                    if ip.len() != 4 && ip.len() != 16 {
                        return Err(
                            "an IP address SAN has a length of neither 4 nor 16 bytes".into()
                        );
                    }
                    let shown = ip_string(ip);
                    check_constraint(
                        &mut count,
                        "IP address",
                        &shown,
                        &permitted,
                        &excluded,
                        |c| match c {
                            GeneralName::IPAddress(c) => Some(Ok(match_ip(ip, c))),
                            _ => None,
                        },
                    )?;
                }
                GeneralName::RFC822Name(mail) => {
                    let Some((local, domain)) = mail.rsplit_once('@') else {
                        return Err(format!("cannot parse email address {mail:?}"));
                    };
                    check_constraint(
                        &mut count,
                        "email address",
                        mail,
                        &permitted,
                        &excluded,
                        |c| match c {
                            GeneralName::RFC822Name(c) => Some(match c.rsplit_once('@') {
                                Some((cl, cd)) => {
                                    Ok(cl == local && cd.eq_ignore_ascii_case(domain))
                                }
                                None => match_domain(domain, c),
                            }),
                            _ => None,
                        },
                    )?;
                }
                GeneralName::URI(uri) => {
                    let host = uri_host(uri)?;
                    check_constraint(&mut count, "URI", uri, &permitted, &excluded, |c| match c {
                        GeneralName::URI(c) => Some(match_domain(&host, c)),
                        _ => None,
                    })?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// verify.go `checkNameConstraints`: excluded first, then at least one permitted of the type.
fn check_constraint(
    count: &mut usize,
    kind: &str,
    name: &str,
    permitted: &[GeneralName<'_>],
    excluded: &[GeneralName<'_>],
    matches: impl Fn(&GeneralName<'_>) -> Option<Result<bool, String>>,
) -> Result<(), String> {
    const MAX_COMPARISONS: usize = 250_000;
    let excluded: Vec<_> = excluded.iter().filter_map(&matches).collect();
    *count += excluded.len();
    if *count > MAX_COMPARISONS {
        return Err("too many name constraints to check".into());
    }
    for m in excluded {
        if m? {
            return Err(format!("{kind} {name:?} is excluded by a name constraint"));
        }
    }
    let permitted: Vec<_> = permitted.iter().filter_map(&matches).collect();
    *count += permitted.len();
    if *count > MAX_COMPARISONS {
        return Err("too many name constraints to check".into());
    }
    let mut ok = true;
    for m in permitted {
        ok = m?;
        if ok {
            break;
        }
    }
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{kind} {name:?} is not permitted by any name constraint"
        ))
    }
}

/// verify.go `domainToReverseLabels`.
fn reverse_labels(domain: &str) -> Option<Vec<&str>> {
    if domain.is_empty() {
        return Some(Vec::new());
    }
    let labels: Vec<&str> = domain.rsplit('.').collect();
    let valid = labels
        .iter()
        .all(|l| !l.is_empty() && l.bytes().all(|b| (33..=126).contains(&b)));
    valid.then_some(labels)
}

/// verify.go `matchDomainConstraint`: a leading dot requires at least one more label.
fn match_domain(domain: &str, constraint: &str) -> Result<bool, String> {
    if constraint.is_empty() {
        return Ok(true);
    }
    let domain_labels =
        reverse_labels(domain).ok_or_else(|| format!("cannot parse domain {domain:?}"))?;
    let (must_have_subdomains, constraint) = match constraint.strip_prefix('.') {
        Some(rest) => (true, rest),
        None => (false, constraint),
    };
    let constraint_labels = reverse_labels(constraint)
        .ok_or_else(|| format!("cannot parse name constraint {constraint:?}"))?;
    if domain_labels.len() < constraint_labels.len()
        || (must_have_subdomains && domain_labels.len() == constraint_labels.len())
    {
        return Ok(false);
    }
    Ok(constraint_labels
        .iter()
        .zip(&domain_labels)
        .all(|(c, d)| c.eq_ignore_ascii_case(d)))
}

/// verify.go `matchIPConstraint`: the constraint is the address followed by its mask.
fn match_ip(ip: &[u8], constraint: &[u8]) -> bool {
    if constraint.len() != 2 * ip.len() {
        return false;
    }
    let (net, mask) = constraint.split_at(ip.len());
    ip.iter()
        .zip(net)
        .zip(mask)
        .all(|((a, n), m)| a & m == n & m)
}

/// verify.go `matchURIConstraint`: the URI's host, which must be a name, not an address.
fn uri_host(uri: &str) -> Result<String, String> {
    let parsed = url::Url::parse(uri).map_err(|_| format!("cannot parse URI {uri:?}"))?;
    match parsed.host() {
        Some(url::Host::Domain(d)) => Ok(d.to_owned()),
        Some(_) => Err(format!(
            "URI {uri:?} has an IP address, which cannot be matched against name constraints"
        )),
        None => Err(format!(
            "URI {uri:?} has no host to match against name constraints"
        )),
    }
}

fn ip_string(ip: &[u8]) -> String {
    match ip.len() {
        4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(ip).unwrap_or_default()).to_string(),
        _ => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(ip).unwrap_or_default()).to_string(),
    }
}

// ---- messages ---------------------------------------------------------------------------------

/// `"CN"` of a certificate, else its whole subject, else its serial number (as Go's
/// `UnknownAuthorityError` names a candidate).
fn quoted_name(c: &X509Certificate<'_>) -> String {
    let cn = c
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_owned);
    let subject = c.subject().to_string();
    match cn {
        Some(cn) if !cn.is_empty() => format!("{cn:?}"),
        _ if !subject.is_empty() => format!("{subject:?}"),
        _ => format!("with serial {}", c.raw_serial_as_string()),
    }
}

fn root_label(c: &X509Certificate<'_>, source: RootSource) -> String {
    format!("the root CA {} ({})", quoted_name(c), source.describe())
}

fn rfc3339(unix: i64) -> String {
    u64::try_from(unix).map_or_else(
        |_| format!("{unix} (Unix time)"),
        |s| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(s),
            )
            .to_string()
        },
    )
}

fn incompatible_usage(what: &str) -> Rejection {
    Rejection::untrusted(format!(
        "{what} lists extended key usages without serverAuth, so it may not be used for a TLS server"
    ))
}

fn unknown_authority(child: &X509Certificate<'_>, hint: Option<(String, String)>) -> Rejection {
    if let Some((candidate, why)) = hint {
        return Rejection::untrusted(format!(
            "the certificate is signed by an unknown authority: the candidate issuer {candidate} was refused because {why}"
        ));
    }
    let issuer = child.issuer().to_string();
    Rejection::untrusted(format!(
        "the certificate chain leads to {}, which is not in the trusted roots",
        if issuer.is_empty() {
            "an unnamed issuer".to_owned()
        } else {
            format!("the issuer {issuer:?}")
        }
    ))
}

/// verify.go `HostnameError`, in words: the names the certificate is valid for.
fn name_error(leaf: &X509Certificate<'_>, server_name: &ServerName<'_>) -> Rejection {
    let san = leaf.subject_alternative_name().ok().flatten();
    let names = san
        .as_ref()
        .map_or(&[][..], |s| s.value.general_names.as_slice());
    let message = match server_name {
        ServerName::IpAddress(ip) => {
            let host = std::net::IpAddr::from(*ip);
            let ips: Vec<String> = names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::IPAddress(a) if a.len() == 4 || a.len() == 16 => {
                        Some(ip_string(a))
                    }
                    _ => None,
                })
                .collect();
            if ips.is_empty() {
                format!(
                    "the certificate has no IP address among its subjectAltNames, so it is not valid for {host}"
                )
            } else {
                format!(
                    "the certificate is valid for {} but the node connects to {host}",
                    ips.join(", ")
                )
            }
        }
        ServerName::DnsName(d) => {
            let host = d.as_ref();
            let dns: Vec<&str> = names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(*d),
                    _ => None,
                })
                .collect();
            let cn_only = san.is_none()
                && leaf
                    .subject()
                    .iter_common_name()
                    .filter_map(|a| a.as_str().ok())
                    .any(|cn| cn.eq_ignore_ascii_case(host));
            if cn_only {
                format!(
                    "the certificate names {host} only in its Common Name, which Go ignores (since 1.15); it needs a subjectAltName"
                )
            } else if dns.is_empty() {
                format!(
                    "the certificate is not valid for any DNS name, but the node connects to {host}"
                )
            } else {
                format!(
                    "the certificate is valid for {} but the node connects to {host}",
                    dns.join(", ")
                )
            }
        }
        _ => "the certificate's names cannot be checked against the server name".to_owned(),
    };
    Rejection::new(Reason::TlsNameMismatch, message)
}

/// A webpki path-building error, in words. `what` names the certificate for errors about
/// one certificate whose identity webpki does not give.
fn chain_error(
    e: &webpki::Error,
    what: &str,
    leaf: &Node<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Rejection {
    use webpki::Error as E;
    // webpki names no certificate in a validity error; the NotAfter/NotBefore finds it.
    let named = |pick: &dyn Fn(&X509Certificate<'_>) -> bool| {
        intermediates
            .iter()
            .filter_map(|d| Node::parse(d.as_ref()))
            .find(|n| pick(&n.cert))
            .map(|n| format!("the intermediate CA {}", quoted_name(&n.cert)))
            .unwrap_or_else(|| what.to_owned())
    };
    match e {
        E::CertExpired { time, not_after } => {
            let t = i64::try_from(not_after.as_secs()).unwrap_or(i64::MAX);
            Rejection::new(
                Reason::TlsExpired,
                format!(
                    "{} expired at {} (node time {})",
                    named(&|c| c.validity().not_after.timestamp() == t),
                    rfc3339(t),
                    rfc3339(i64::try_from(time.as_secs()).unwrap_or(i64::MAX))
                ),
            )
        }
        E::CertNotValidYet { time, not_before } => {
            let t = i64::try_from(not_before.as_secs()).unwrap_or(i64::MAX);
            Rejection::new(
                Reason::TlsExpired,
                format!(
                    "{} is not valid before {} (node time {}); check the node's clock",
                    named(&|c| c.validity().not_before.timestamp() == t),
                    rfc3339(t),
                    rfc3339(i64::try_from(time.as_secs()).unwrap_or(i64::MAX))
                ),
            )
        }
        E::InvalidCertValidity => Rejection::new(
            Reason::TlsExpired,
            format!("{what} has a NotBefore later than its NotAfter"),
        ),
        E::UnknownIssuer => {
            // The top of what the server sent: follow issuer names through the intermediates.
            let parsed: Vec<Node<'_>> = intermediates
                .iter()
                .filter_map(|d| Node::parse(d.as_ref()))
                .collect();
            let mut top = &leaf.cert;
            for _ in 0..parsed.len() {
                match parsed.iter().find(|n| {
                    n.cert.subject().as_raw() == top.issuer().as_raw()
                        && n.cert.subject().as_raw() != top.subject().as_raw()
                }) {
                    Some(n) => top = &n.cert,
                    None => break,
                }
            }
            unknown_authority(top, None)
        }
        E::InvalidSignatureForPublicKey => {
            Rejection::untrusted("a signature in the certificate chain does not verify")
        }
        E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => Rejection::untrusted(
            "the chain is signed with an algorithm or key type pullprobe (rustls with ring) cannot verify, such as P-521 or RSA keys shorter than 2048 bits",
        ),
        E::RequiredEkuNotFoundContext(_) | E::EmptyEkuExtension => Rejection::untrusted(
            "a certificate of the chain lists extended key usages without serverAuth, so it may not be used for a TLS server",
        ),
        E::NameConstraintViolation => Rejection::untrusted(
            "a CA of the chain is not allowed to issue a certificate for this name (name constraints)",
        ),
        E::PathLenConstraintViolated => Rejection::untrusted(
            "the chain has more intermediate CAs than a CA's path length constraint allows",
        ),
        E::EndEntityUsedAsCa => Rejection::untrusted(
            "a certificate that is not a CA (basicConstraints CA:TRUE missing) signed another certificate of the chain",
        ),
        E::CertDistrusted => {
            Rejection::untrusted("the chain goes through a CA that rustls-webpki distrusts")
        }
        E::UnsupportedCriticalExtension => Rejection::untrusted(format!(
            "{what} has a critical extension that pullprobe (rustls-webpki) does not support"
        )),
        E::UnsupportedCertVersion => {
            Rejection::untrusted(format!("{what} is not an X.509 version 3 certificate"))
        }
        E::BadDer | E::BadDerTime | E::TrailingData(_) | E::MalformedExtensions => {
            Rejection::untrusted(format!("{what} is not well-formed DER"))
        }
        E::MaximumPathDepthExceeded => Rejection::untrusted(
            "the chain has more than 6 intermediate CAs, more than pullprobe (rustls-webpki) follows",
        ),
        E::MaximumSignatureChecksExceeded
        | E::MaximumPathBuildCallsExceeded
        | E::MaximumNameConstraintComparisonsExceeded => Rejection::untrusted(
            "the certificate chain is too complex to verify (too many candidate paths)",
        ),
        _ => Rejection::untrusted(format!(
            "{what} was refused while verifying the certificate chain"
        )),
    }
}

#[cfg(test)]
mod tests;
