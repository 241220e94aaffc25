//! `ImageRef::parse` (distribution/reference's grammar, by hand) against `oci-spec`'s regex
//! parser on a seeded corpus of ASCII references: random strings, and well-formed references
//! with a few random edits.
//!
//! Both must give the same registry, repository, tag and digest, or the same error, except in
//! the classes below, where oci-spec differs from distribution/reference (what kubelet and
//! containerd run) and distribution's behaviour is the one pullprobe keeps. Each class says why;
//! any other difference fails the test, and each class must occur in the corpus.

use std::time::{Duration, Instant};

use oci_spec::distribution::{ParseError, Reference};
use pullprobe::reference::{ImageRef, ReferenceError};

/// The fuzz targets' checks; every corpus reference also goes through `reference`'s invariants.
#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod checks;

/// How many generated references are compared.
const CORPUS: usize = 100_000;

/// The classes where the two may differ, each with why distribution's answer wins.
const CLASSES: &[(&str, &str)] = &[
    (
        "ipv6-literal",
        "distribution's grammar (regexp.go `ipv6address`, since v0.5) accepts a bracketed IPv6 \
         registry, `[fd00::1]:5000/app`; oci-spec's regex predates it and refuses the reference",
    ),
    (
        "uppercase-first-component",
        "normalize.go `splitDockerDomain` reads a first component with uppercase letters as a \
         registry host (distribution#2979, 2019); oci-spec files `P/z` under docker.io, giving a \
         repository no registry accepts",
    ),
    (
        "image-id",
        "`ParseNormalizedNamed` refuses a bare 64-hex-digit image ID; oci-spec reads it as \
         docker.io/library/<id>",
    ),
    (
        "digest-case",
        "go-digest v1.0.0 `Validate` wants lowercase hex for sha256/384/512 and a lowercase \
         algorithm (else `invalid checksum digest format`); oci-spec checks only the length",
    ),
    (
        "port-range",
        "the grammar allows any digits as a port and both libraries accept them; pullprobe must \
         dial the port, so 0 and ports above 65535 are its own error",
    ),
    (
        "uppercase-error-kind",
        "distribution answers `repository name must be lowercase` (ParseNormalizedNamed's check, \
         and Parse's lower-cased retry) where oci-spec says `invalid reference format` (its own \
         FIXME); both refuse",
    ),
    (
        "empty",
        "`ParseNormalizedNamed(\"\")` parses `docker.io/library/`, `invalid reference format`; \
         oci-spec says `repository name must have at least one component`; both refuse",
    ),
    (
        "path-of-a-non-domain",
        "when the first component has a `.` but is no domain (`a.b_c/d`), distribution's Parse \
         keeps the whole name as the path and checks its 255 characters; oci-spec counts only \
         what follows the first `/`",
    ),
];

/// splitmix64: a small seeded generator, so the corpus is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn chars(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len)
            .map(|_| char::from(alphabet[self.below(alphabet.len())]))
            .collect()
    }
}

const NOISE: &[u8] = b"abz09AZ._-/:@[]%+ ~";
const LOWER: &[u8] = b"abcz0189";
const TAG: &[u8] = b"abzAZ09_.-";
const HEX: &[u8] = b"0123456789abcdef";

fn domain(r: &mut Rng) -> String {
    match r.below(4) {
        0 => r
            .pick(&[
                "docker.io",
                "index.docker.io",
                "localhost",
                "localhost:5000",
                "ghcr.io",
                "registry.k8s.io",
                "127.0.0.1:5000",
                "Host-1.Example.com:443",
                "Team",
                "LOCALDOMAIN",
                "[::1]",
                "[::1]:5000",
                "[fd00::1]:5000",
                "[2001:db8::]:80",
                "[abc]",
                "a.b_c",
                "foo_bar.com:8080",
                "host:0",
                "host:99999",
                "host:65535",
                "xn--n3h.com",
                "a.123",
            ])
            .to_owned(),
        1 => {
            let labels = 1 + r.below(3);
            let mut d: Vec<String> = (0..labels)
                .map(|_| {
                    let len = 1 + r.below(5);
                    r.chars(b"abzAZ09-", len)
                })
                .collect();
            if r.chance(30) {
                d.push("com".to_owned());
            }
            let mut d = d.join(".");
            if r.chance(40) {
                d.push_str(&format!(":{}", r.below(70_000)));
            }
            d
        }
        2 => {
            let len = 1 + r.below(12);
            let mut d = format!("[{}]", r.chars(b"0af:F", len));
            if r.chance(50) {
                d.push_str(&format!(":{}", r.below(70_000)));
            }
            d
        }
        _ => String::new(),
    }
}

fn path(r: &mut Rng) -> String {
    let components = 1 + r.below(3);
    (0..components)
        .map(|_| {
            let mut c = String::new();
            for i in 0..1 + r.below(3) {
                if i > 0 {
                    c.push_str(r.pick(&[".", "_", "__", "-", "--", "___", ".."]));
                }
                let len = 1 + r.below(4);
                c.push_str(&r.chars(LOWER, len));
            }
            if r.chance(3) {
                c = c.to_uppercase();
            }
            c
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn digest(r: &mut Rng) -> String {
    let algorithm = r.pick(&[
        "sha256",
        "sha256",
        "sha384",
        "sha512",
        "md5",
        "SHA256",
        "sha256+b64",
        "blake3",
        "a.b",
    ]);
    let len = match r.below(6) {
        0 => 64,
        1 => 96,
        2 => 128,
        3 => 32,
        4 => 63,
        _ => r.below(140),
    };
    let mut hex = r.chars(HEX, len);
    if r.chance(10) {
        hex = hex.to_uppercase();
    }
    format!("{algorithm}:{hex}")
}

/// A well-formed-looking reference.
fn reference(r: &mut Rng) -> String {
    let mut s = domain(r);
    if !s.is_empty() {
        s.push('/');
    }
    s.push_str(&path(r));
    if r.chance(50) {
        s.push(':');
        let len = match r.below(10) {
            0 => 128,
            1 => 129,
            2 => 0,
            _ => 1 + r.below(8),
        };
        s.push_str(&r.chars(TAG, len));
    }
    if r.chance(25) {
        s.push('@');
        s.push_str(&digest(r));
    }
    s
}

/// One to three random edits: insert, delete or replace a character.
fn mutate(r: &mut Rng, s: &mut String) {
    for _ in 0..1 + r.below(3) {
        let at = r.below(s.len() + 1);
        let c = char::from(NOISE[r.below(NOISE.len())]);
        match r.below(3) {
            0 => s.insert(at, c),
            1 if at < s.len() => {
                s.remove(at);
            }
            _ if at < s.len() => s.replace_range(at..=at, &c.to_string()),
            _ => s.push(c),
        }
    }
}

fn corpus() -> Vec<String> {
    let mut r = Rng(0x7075_6c6c_7072_6f62); // "pullprob"
    let mut out: Vec<String> = [
        String::new(),
        format!("a.b_c/{}", "d".repeat(250)),
        "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a".to_owned(),
        format!("nginx@sha256:{}", "A".repeat(64)),
        "P/z".to_owned(),
        "[::1]:5000/app:1".to_owned(),
        "host:0/app".to_owned(),
        "Nginx".to_owned(),
    ]
    .into();
    while out.len() < CORPUS {
        let s = match r.below(10) {
            0..=1 => {
                let len = 1 + r.below(24);
                r.chars(NOISE, len)
            }
            2..=4 => reference(&mut r),
            5 => {
                let len = if r.chance(50) { 64 } else { 1 + r.below(70) };
                r.chars(HEX, len)
            }
            _ => {
                let mut s = reference(&mut r);
                mutate(&mut r, &mut s);
                s
            }
        };
        out.push(s);
    }
    out
}

fn oci_kind(e: &ParseError) -> &'static str {
    match e {
        ParseError::DigestInvalidFormat => "digest_invalid_format",
        ParseError::DigestInvalidLength => "digest_invalid_length",
        ParseError::DigestUnsupported => "digest_unsupported",
        ParseError::NameContainsUppercase => "name_contains_uppercase",
        ParseError::NameEmpty => "name_empty",
        ParseError::NameTooLong => "name_too_long",
        ParseError::ReferenceInvalidFormat => "reference_invalid_format",
        _ => "other",
    }
}

/// The class that explains a difference between the two answers, if one does. Each class is
/// recognised from the input and allows only the difference it describes.
fn explain(
    input: &str,
    ours: &Result<ImageRef, ReferenceError>,
    theirs: &Result<Reference, ParseError>,
) -> Option<&'static str> {
    let first = input.split_once('/').map(|(f, _)| f);
    let kind = ours.as_ref().err().map(ReferenceError::kind);
    let after_at = input.split_once('@').map(|(_, d)| d);
    if let Some(f) = first
        && f.starts_with('[')
        && matches!(theirs, Err(ParseError::ReferenceInvalidFormat))
        && ours.as_ref().is_ok_and(|r| r.registry() == f) != ours.is_err()
    {
        return Some("ipv6-literal");
    }
    if let Some(f) = first
        && f.bytes().any(|b| b.is_ascii_uppercase())
        && !f.contains(['.', ':'])
        && ours.as_ref().is_ok_and(|r| r.registry() == f)
    {
        return Some("uppercase-first-component");
    }
    if input.len() == 64 && kind == Some("identifier") && theirs.is_ok() {
        return Some("image-id");
    }
    if let Some(d) = after_at
        && (d.bytes().any(|b| b.is_ascii_uppercase()))
        && matches!(
            kind,
            Some("digest_invalid_format" | "name_contains_uppercase")
        )
    {
        return Some("digest-case");
    }
    if kind == Some("port") && theirs.is_ok() {
        return Some("port-range");
    }
    if kind == Some("name_contains_uppercase") && theirs.is_err() {
        return Some("uppercase-error-kind");
    }
    if input.is_empty() && kind == Some("reference_invalid_format") {
        return Some("empty");
    }
    if first.is_some_and(|f| f.contains('.') && f.contains('_'))
        && kind == Some("name_too_long")
        && theirs.is_ok()
    {
        return Some("path-of-a-non-domain");
    }
    None
}

#[test]
fn agrees_with_oci_spec_except_where_distribution_differs() {
    let mut counts = vec![0usize; CLASSES.len()];
    let mut unexplained = Vec::new();
    let mut accepted = 0;
    let corpus = corpus();
    let (mut ours_time, mut theirs_time) = (Duration::ZERO, Duration::ZERO);
    for input in &corpus {
        let start = Instant::now();
        let ours = ImageRef::parse(input);
        ours_time += start.elapsed();
        let start = Instant::now();
        let theirs = Reference::try_from(input.as_str());
        theirs_time += start.elapsed();
        accepted += usize::from(ours.is_ok());
        checks::reference(input.as_bytes());
        let same = match (&ours, &theirs) {
            (Ok(a), Ok(b)) => {
                (a.registry(), a.repository(), a.tag(), a.digest())
                    == (b.registry(), b.repository(), b.tag(), b.digest())
            }
            (Err(a), Err(b)) => a.kind() == oci_kind(b),
            _ => false,
        };
        if same {
            continue;
        }
        match explain(input, &ours, &theirs) {
            Some(class) => counts[CLASSES.iter().position(|(c, _)| *c == class).unwrap()] += 1,
            None => unexplained.push(format!(
                "{input:?}: pullprobe {:?}, oci-spec {:?}",
                ours.map(|r| r.to_string()).map_err(|e| e.kind()),
                theirs.map(|r| r.to_string()).map_err(|e| oci_kind(&e)),
            )),
        }
    }
    for ((class, why), n) in CLASSES.iter().zip(&counts) {
        println!("{n:6} {class}: {why}");
    }
    println!(
        "{accepted} of {} references accepted; parsing took {ours_time:?} (oci-spec {theirs_time:?})",
        corpus.len()
    );
    assert!(
        unexplained.is_empty(),
        "{} unexplained differences, e.g.:\n{}",
        unexplained.len(),
        unexplained[..unexplained.len().min(20)].join("\n")
    );
    for ((class, _), n) in CLASSES.iter().zip(&counts) {
        assert!(*n > 0, "the corpus never exercises {class}");
    }
    assert!(
        accepted > CORPUS / 10,
        "too few valid references: {accepted}"
    );
}
