//! Go `crypto/x509` verdicts, one case per rule; each test names the Go function it mirrors
//! (`src/crypto/x509/verify.go` unless said otherwise). The handshake itself is covered by
//! `tests/integration/tls_go.rs`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, KeyPair, KeyUsagePurpose, NameConstraints,
};

use super::*;

const DAY: Duration = Duration::from_secs(86_400);

fn now() -> UnixTime {
    UnixTime::since_unix_epoch(SystemTime::now().duration_since(UNIX_EPOCH).unwrap())
}

/// Valid from `from` to `to` days from now (negative = past).
fn valid(p: &mut CertificateParams, from: i64, to: i64) {
    let now = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(now().as_secs());
    let shift = |days: i64| {
        let by = DAY * u32::try_from(days.unsigned_abs()).unwrap();
        if days >= 0 { now + by } else { now - by }
    };
    (p.not_before, p.not_after) = (shift(from), shift(to));
}

type Issuer = CertifiedIssuer<'static, KeyPair>;

/// A CA named `cn`, valid from yesterday for ten years, adjusted by `f`.
fn ca(cn: &str, f: impl FnOnce(&mut CertificateParams)) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    valid(&mut p, -1, 3650);
    f(&mut p);
    p
}

fn root(cn: &str, f: impl FnOnce(&mut CertificateParams)) -> Issuer {
    CertifiedIssuer::self_signed(ca(cn, f), KeyPair::generate().unwrap()).unwrap()
}

fn intermediate(cn: &str, parent: &Issuer, f: impl FnOnce(&mut CertificateParams)) -> Issuer {
    CertifiedIssuer::signed_by(ca(cn, f), KeyPair::generate().unwrap(), parent).unwrap()
}

/// A server certificate for `names`, valid for 30 days, adjusted by `f`, signed by `parent`
/// (self-signed when `None`).
fn leaf(
    names: &[&str],
    parent: Option<&Issuer>,
    f: impl FnOnce(&mut CertificateParams),
) -> CertificateDer<'static> {
    let mut p =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, names[0]);
    valid(&mut p, -1, 30);
    f(&mut p);
    let key = KeyPair::generate().unwrap();
    match parent {
        Some(parent) => p.signed_by(&key, parent).unwrap().der().clone(),
        None => p.self_signed(&key).unwrap().der().clone(),
    }
}

/// Docker's recipe in rcgen: self-signed, `CA:TRUE`, the names as SANs.
fn docker_recipe(
    names: &[&str],
    f: impl FnOnce(&mut CertificateParams),
) -> CertificateDer<'static> {
    leaf(names, None, |p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        f(p);
    })
}

fn ca_true(p: &mut CertificateParams) {
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
}

fn pool(ca_file: &[&CertificateDer<'static>]) -> Roots {
    let system: &'static SystemRoots = Box::leak(Box::new(SystemRoots {
        ders: Vec::new(),
        anchors: Vec::new(),
    }));
    let extra: Vec<_> = ca_file.iter().map(|d| (*d).clone()).collect();
    Roots::new(system, &extra).unwrap()
}

fn verify(
    roots: &Roots,
    chain: &[&CertificateDer<'static>],
    host: &str,
) -> Result<Anchor, Rejection> {
    let algs = rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all;
    let intermediates: Vec<_> = chain[1..].iter().map(|d| (*d).clone()).collect();
    let name = ServerName::try_from(host.to_owned()).unwrap();
    roots.verify(algs, chain[0], &intermediates, &name, now())
}

#[track_caller]
fn refused(r: Result<Anchor, Rejection>, reason: Reason, words: &[&str]) -> Rejection {
    let r = r.expect_err("Go refuses this chain");
    assert_eq!(r.reason, reason, "{}", r.message);
    for w in words {
        assert!(r.message.contains(w), "{:?} lacks {w:?}", r.message);
    }
    r
}

// ---- the leaf is itself a root ------------------------------------------------------------------

#[test]
fn verify_contains_a_trusted_ca_true_leaf_is_its_own_chain() {
    // Certificate.Verify: `opts.Roots.contains(c)` returns [[c]] before any chain building.
    let cert = docker_recipe(&["registry.test"], |_| {});
    let anchor = verify(&pool(&[&cert]), &[&cert], "registry.test").unwrap();
    assert_eq!(anchor.subject, "CN=registry.test");
    assert_eq!(anchor.source, RootSource::Leaf);
    assert!(anchor.not_after.is_some());
}

#[test]
fn verify_hostname_comes_before_roots_contains() {
    // Certificate.Verify: VerifyHostname runs before `opts.Roots.contains(c)`.
    let cert = docker_recipe(&["registry.test"], |_| {});
    refused(
        verify(&pool(&[&cert]), &[&cert], "other.test"),
        Reason::TlsNameMismatch,
        &["the certificate is valid for registry.test but the node connects to other.test"],
    );
}

#[test]
fn is_valid_leaf_period_comes_before_roots_contains() {
    // Certificate.Verify: isValid(leafCertificate) — the validity period — runs first.
    let cert = docker_recipe(&["registry.test"], |p| {
        valid(p, -30, -1);
    });
    refused(
        verify(&pool(&[&cert]), &[&cert], "registry.test"),
        Reason::TlsExpired,
        &["the certificate expired at"],
    );
}

#[test]
fn check_chain_for_key_usage_applies_to_a_trusted_leaf() {
    // Certificate.Verify: checkChainForKeyUsage([c]) with KeyUsages = [ServerAuth].
    let cert = docker_recipe(&["registry.test"], |p| {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    });
    refused(
        verify(&pool(&[&cert]), &[&cert], "registry.test"),
        Reason::TlsUntrusted,
        &["serverAuth"],
    );
}

// ---- a CA:TRUE leaf that is not a root (webpki: CaUsedAsEndEntity) ------------------------------

#[test]
fn is_valid_asks_no_ca_question_of_the_leaf_signed_by_a_root() {
    // isValid(leafCertificate) never looks at IsCA; buildChains finds the root.
    let r = root("pullprobe root", |_| {});
    let cert = leaf(&["registry.test"], Some(&r), ca_true);
    let anchor = verify(&pool(&[r.der()]), &[&cert], "registry.test").unwrap();
    assert_eq!(anchor.subject, "CN=pullprobe root");
    assert_eq!(anchor.source, RootSource::CaFile);
}

#[test]
fn build_chains_ca_true_leaf_through_an_intermediate() {
    // buildChains: intermediate candidate (IsCA required of it), then the root.
    let r = root("pullprobe root", |_| {});
    let i = intermediate("pullprobe intermediate", &r, |_| {});
    let cert = leaf(&["registry.test"], Some(&i), ca_true);
    let anchor = verify(&pool(&[r.der()]), &[&cert, i.der()], "registry.test").unwrap();
    assert_eq!(anchor.subject, "CN=pullprobe root");
}

#[test]
fn build_chains_ca_true_leaf_with_an_unknown_issuer() {
    // buildChains: no candidate → UnknownAuthorityError.
    let stranger = root("stranger", |_| {});
    let cert = leaf(&["registry.test"], Some(&stranger), ca_true);
    let other = root("pullprobe root", |_| {});
    refused(
        verify(&pool(&[other.der()]), &[&cert], "registry.test"),
        Reason::TlsUntrusted,
        &["CN=stranger", "not in the trusted roots"],
    );
}

#[test]
fn is_valid_root_period_for_a_ca_true_leaf() {
    // buildChains → isValid(rootCertificate): "certificate has expired or is not yet valid".
    let r = root("old root", |p| valid(p, -400, -2));
    let cert = leaf(&["registry.test"], Some(&r), ca_true);
    let e = refused(
        verify(&pool(&[r.der()]), &[&cert], "registry.test"),
        Reason::TlsExpired,
        &["the root CA \"old root\"", "expired at"],
    );
    assert_eq!(e.anchor.unwrap().subject, "CN=old root");
}

#[test]
fn is_valid_name_constraints_of_the_root_for_a_ca_true_leaf() {
    // isValid → checkNameConstraints over the SANs of the chain so far.
    let constrained = |dns: &str| {
        let dns = dns.to_owned();
        root("constrained root", move |p| {
            p.name_constraints = Some(NameConstraints {
                permitted_subtrees: vec![GeneralSubtree::DnsName(dns)],
                excluded_subtrees: vec![],
            });
        })
    };
    let ok = constrained("registry.test");
    let cert = leaf(&["registry.test"], Some(&ok), ca_true);
    verify(&pool(&[ok.der()]), &[&cert], "registry.test").unwrap();

    let other = constrained("example.com");
    let cert = leaf(&["registry.test"], Some(&other), ca_true);
    refused(
        verify(&pool(&[other.der()]), &[&cert], "registry.test"),
        Reason::TlsUntrusted,
        &["not permitted by any name constraint"],
    );
}

#[test]
fn is_valid_intermediate_must_be_a_ca() {
    // isValid(intermediateCertificate): `!c.BasicConstraintsValid || !c.IsCA` → NotAuthorizedToSign.
    // The non-CA intermediate already fails CheckSignatureFrom, so Go reports an unknown
    // authority naming the refused candidate.
    let r = root("pullprobe root", |_| {});
    let not_ca = intermediate("not a CA", &r, |p| p.is_ca = IsCa::ExplicitNoCa);
    let cert = leaf(&["registry.test"], Some(&not_ca), ca_true);
    refused(
        verify(&pool(&[r.der()]), &[&cert, not_ca.der()], "registry.test"),
        Reason::TlsUntrusted,
        &["the candidate issuer \"not a CA\" was refused because it is not a CA certificate"],
    );
}

// ---- the root: Go checks it like any parent ------------------------------------------------------

#[test]
fn is_valid_root_period_with_a_valid_leaf() {
    // buildChains → isValid(rootCertificate); webpki trust anchors carry no validity.
    let r = root("expired root", |p| valid(p, -400, -2));
    let cert = leaf(&["registry.test"], Some(&r), |_| {});
    let e = refused(
        verify(&pool(&[r.der()]), &[&cert], "registry.test"),
        Reason::TlsExpired,
        &["the root CA \"expired root\" (from tls.ca_file) expired at"],
    );
    let anchor = e.anchor.unwrap();
    assert_eq!(anchor.subject, "CN=expired root");
    assert!(anchor.not_after.unwrap() < i64::try_from(now().as_secs()).unwrap());
}

#[test]
fn build_chains_tries_every_root_candidate() {
    // buildChains considers every potential parent: a renewed root with the same name and key
    // verifies even when the old one, also in the pool, has expired.
    let key = KeyPair::generate().unwrap();
    let params = |f: fn(&mut CertificateParams)| ca("renewed root", f);
    let old = params(|p| valid(p, -400, -2)).self_signed(&key).unwrap();
    let issuer = CertifiedIssuer::self_signed(params(|_| {}), key).unwrap();
    let cert = leaf(&["registry.test"], Some(&issuer), |_| {});
    let anchor = verify(&pool(&[old.der(), issuer.der()]), &[&cert], "registry.test").unwrap();
    assert!(anchor.not_after.unwrap() > i64::try_from(now().as_secs()).unwrap());
}

#[test]
fn check_signature_from_root_must_be_a_ca() {
    // x509.go CheckSignatureFrom: a v3 parent without CA:TRUE cannot sign.
    let r = root("not a CA root", |p| p.is_ca = IsCa::ExplicitNoCa);
    let cert = leaf(&["registry.test"], Some(&r), |_| {});
    refused(
        verify(&pool(&[r.der()]), &[&cert], "registry.test"),
        Reason::TlsUntrusted,
        &["\"not a CA root\"", "not a CA certificate"],
    );
}

#[test]
fn check_signature_from_root_key_usage_must_allow_cert_sign() {
    // x509.go CheckSignatureFrom: KeyUsage present without KeyUsageCertSign.
    let r = root("signing-only root", |p| {
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    });
    let cert = leaf(&["registry.test"], Some(&r), |_| {});
    refused(
        verify(&pool(&[r.der()]), &[&cert], "registry.test"),
        Reason::TlsUntrusted,
        &["keyCertSign"],
    );
}

#[test]
fn is_valid_root_max_path_len() {
    // isValid: `c.MaxPathLen >= 0 && numIntermediates > c.MaxPathLen` → TooManyIntermediates.
    let r = root("strict root", |p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    });
    let i = intermediate("intermediate", &r, |_| {});
    let cert = leaf(&["registry.test"], Some(&i), |_| {});
    refused(
        verify(&pool(&[r.der()]), &[&cert, i.der()], "registry.test"),
        Reason::TlsUntrusted,
        &["pathLenConstraint"],
    );
}

#[test]
fn check_chain_for_key_usage_includes_the_root() {
    // checkChainForKeyUsage walks the whole chain, root included.
    let r = root("client-only root", |p| {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    });
    let cert = leaf(&["registry.test"], Some(&r), |_| {});
    refused(
        verify(&pool(&[r.der()]), &[&cert], "registry.test"),
        Reason::TlsUntrusted,
        &["client-only root", "serverAuth"],
    );
}

#[test]
fn check_chain_for_key_usage_accepts_any_extended_key_usage() {
    // checkChainForKeyUsage: ExtKeyUsageAny in a certificate satisfies every usage
    // (webpki's KeyUsage::server_auth would refuse it).
    let r = root("pullprobe root", |_| {});
    let cert = leaf(&["registry.test"], Some(&r), |p| {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::Any];
    });
    verify(&pool(&[r.der()]), &[&cert], "registry.test").unwrap();
}

// ---- ordinary chains ------------------------------------------------------------------------------

#[test]
fn verify_reports_the_anchor_of_an_ordinary_chain() {
    let r = root("pullprobe root", |_| {});
    let i = intermediate("pullprobe intermediate", &r, |_| {});
    let cert = leaf(&["registry.test"], Some(&i), |_| {});
    let anchor = verify(&pool(&[r.der()]), &[&cert, i.der()], "registry.test").unwrap();
    assert_eq!(anchor.subject, "CN=pullprobe root");
    assert_eq!(anchor.source, RootSource::CaFile);
}

#[test]
fn is_valid_names_the_expired_intermediate() {
    // buildChains → isValid(intermediateCertificate): the intermediate's validity period.
    let r = root("pullprobe root", |_| {});
    let i = intermediate("old intermediate", &r, |p| {
        valid(p, -400, -2);
    });
    let cert = leaf(&["registry.test"], Some(&i), |_| {});
    refused(
        verify(&pool(&[r.der()]), &[&cert, i.der()], "registry.test"),
        Reason::TlsExpired,
        &["the intermediate CA \"old intermediate\" expired at"],
    );
}

#[test]
fn build_chains_unknown_authority() {
    let stranger = root("stranger", |_| {});
    let cert = leaf(&["registry.test"], Some(&stranger), |_| {});
    let r = root("pullprobe root", |_| {});
    refused(
        verify(&pool(&[r.der()]), &[&cert], "registry.test"),
        Reason::TlsUntrusted,
        &["the issuer \"CN=stranger\"", "not in the trusted roots"],
    );
}

#[test]
fn verify_hostname_comes_before_build_chains() {
    // Certificate.Verify: a wrong name wins over an unknown issuer.
    let stranger = root("stranger", |_| {});
    let cert = leaf(&["registry.test"], Some(&stranger), |_| {});
    refused(
        verify(&pool(&[]), &[&cert], "other.test"),
        Reason::TlsNameMismatch,
        &["registry.test"],
    );
}

// ---- pieces -----------------------------------------------------------------------------------------

#[test]
fn match_domain_constraint_follows_go() {
    // verify.go matchDomainConstraint.
    for (domain, constraint, want) in [
        ("registry.test", "registry.test", true),
        ("a.registry.test", "registry.test", true),
        ("registry.test", ".registry.test", false),
        ("a.registry.test", ".registry.test", true),
        ("REGISTRY.test", "registry.TEST", true),
        ("xregistry.test", "registry.test", false),
        ("anything", "", true),
    ] {
        assert_eq!(
            match_domain(domain, constraint),
            Ok(want),
            "{domain} vs {constraint}"
        );
    }
    assert!(match_domain("bad..name", "x").is_err());
}

#[test]
fn match_ip_constraint_follows_go() {
    // verify.go matchIPConstraint: address and mask, same length only.
    assert!(match_ip(&[10, 1, 2, 3], &[10, 0, 0, 0, 255, 0, 0, 0]));
    assert!(!match_ip(&[11, 1, 2, 3], &[10, 0, 0, 0, 255, 0, 0, 0]));
    assert!(!match_ip(&[10, 1, 2, 3], &[0; 32]));
}

#[test]
fn der_parts_of_a_certificate() {
    let cert = docker_recipe(&["registry.test"], |_| {});
    let signed = signed_parts(cert.as_ref()).unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).unwrap();
    assert_eq!(signed.tbs, parsed.tbs_certificate.as_ref());
    assert_eq!(signed.signature, parsed.signature_value.data.as_ref());
    assert!(spki_parts(parsed.public_key().raw).is_some());
    assert!(der_element(&[0x30, 0x85, 0, 0, 0, 0, 0]).is_none());
    assert!(der_element(&[0x30, 0x03, 0]).is_none());
}
