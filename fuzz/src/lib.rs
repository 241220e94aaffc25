//! The properties the fuzz targets check, one function per target.
//!
//! This file is also compiled into the main crate's `tests/fuzz_regressions.rs` (through
//! `#[path]`), which replays every saved crash input and seed with the same function, so
//! `cargo test` — which has no fuzzer — keeps each finding fixed. It may therefore only use
//! crates the main package depends on.

use std::path::Path;

use http::{HeaderMap, HeaderValue};
use pullprobe::config::Config;
use pullprobe::credentials::{self, Keyring};
use pullprobe::probe::challenge::{self, Challenge};
use pullprobe::probe::ratelimit;
use pullprobe::reference::ImageRef;

/// `challenge::from_header_lines` (containerd's `ParseAuthHeader`): never panics; the input,
/// split at `\n` into header lines, yields Bearer challenges before Basic ones, and never more
/// challenges than lines.
pub fn challenge(data: &[u8]) {
    let lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    let all = challenge::from_header_lines(lines.iter().copied());
    assert!(all.len() <= lines.len());
    let first_basic = all
        .iter()
        .position(|c| matches!(c, Challenge::Basic { .. }))
        .unwrap_or(all.len());
    assert!(
        all[first_basic..]
            .iter()
            .all(|c| matches!(c, Challenge::Basic { .. })),
        "{data:?}: Bearer after Basic"
    );
}

/// `ratelimit::parse_value` and `from_headers`: never panic; a parsed value renders back to
/// itself; remaining never exceeds the limit; a reported source is always a safe token.
/// The input is split at `\n` (which no header value can contain) into the values of
/// `ratelimit-limit`, `ratelimit-remaining` and `docker-ratelimit-source`.
pub fn ratelimit(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(v) = ratelimit::parse_value(text)
    {
        let rendered = match v.window_seconds {
            Some(w) => format!("{};w={w}", v.count),
            None => v.count.to_string(),
        };
        assert_eq!(ratelimit::parse_value(&rendered), Some(v), "{text:?}");
    }
    let mut headers = HeaderMap::new();
    let mut parts = data.splitn(3, |b| *b == b'\n');
    for name in [
        "ratelimit-limit",
        "ratelimit-remaining",
        "docker-ratelimit-source",
    ] {
        if let Some(Ok(value)) = parts.next().map(HeaderValue::from_bytes) {
            headers.insert(name, value);
        }
    }
    if let Some(rl) = ratelimit::from_headers(&headers) {
        assert!(rl.remaining <= rl.limit, "{rl:?}");
        if let Some(source) = &rl.source {
            assert!(ratelimit::is_safe_source(source), "{source:?}");
        }
    }
}

/// `ImageRef::parse`: never panics; every accessor works; the normalised form parses back to
/// the same reference; the API authority makes the URL the engine builds (or is a host the
/// URL standard refuses, which the engine reports as `dns_error`).
pub fn reference(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(r) = ImageRef::parse(text) else {
        return;
    };
    let _ = (
        r.registry(),
        r.repository(),
        r.tag(),
        r.digest(),
        r.is_docker_hub(),
        r.port(),
    );
    assert!(!r.manifest_reference().is_empty(), "{text:?}");
    assert!(!r.api_host().is_empty(), "{text:?}");
    // Docker's grammar as Go reads it: every part is ASCII (`\w` is ASCII in RE2).
    assert!(r.to_string().is_ascii(), "{text:?}");
    // An IPv6 literal's host is given without brackets, its authority with them.
    assert!(!r.api_host().contains(['[', ']']), "{text:?}");
    assert_eq!(
        r.registry().starts_with('['),
        r.api_authority().starts_with('['),
        "{text:?}"
    );
    let shown = r.to_string();
    let again = ImageRef::parse(&shown)
        .unwrap_or_else(|e| panic!("{text:?} normalises to {shown:?}, which does not parse: {e}"));
    assert_eq!(again, r, "{text:?} -> {shown:?}");
    assert_eq!(again.to_string(), shown);
    let authority = r.api_authority();
    match url::Url::parse(&format!("https://{authority}/")) {
        Ok(url) => assert_eq!(url.port(), r.port().filter(|p| *p != 443), "{text:?}"),
        // The reference grammar allows hosts the URL standard refuses: a numeric last label
        // (`a.123`, read as a malformed IPv4 address), a label that is broken punycode
        // (`xn--55550`), or a bracketed literal of hex digits and colons that is no IPv6
        // address (`[abc]`). The engine reports such a target as dns/dns_error ("not a usable
        // host"); no other URL error (port, empty host) may happen.
        Err(
            url::ParseError::InvalidIpv4Address
            | url::ParseError::IdnaError
            | url::ParseError::InvalidIpv6Address,
        ) => {}
        Err(e) => panic!("{text:?}: authority {authority:?} is not a URL host: {e}"),
    }
}

/// `Keyring::from_slice` and `lookup_all`: never panic; and neither an error nor the keyring's
/// `Debug` output shows a secret.
///
/// The secret check runs on a canary copy of the input: when the input is JSON, every
/// password, token and the password half of every `auth` is replaced by a unique marker that
/// keeps the value's kind (valid or invalid base64, with or without `:`), and the re-encoded
/// document is loaded again. Comparing against the input's own secrets would flag a password
/// that happens to equal fixed output such as `Keyring { entries: [] }` (the fuzzer found one).
pub fn credentials(data: &[u8]) {
    let path = Path::new("/fuzz/config.json");
    let _ = load_and_show(path, data);
    let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let mut canaries = Vec::new();
    plant_canaries(&mut doc, &mut canaries);
    if canaries.is_empty() {
        return;
    }
    let planted = serde_json::to_vec(&doc).expect("a Value encodes");
    let shown = load_and_show(path, &planted);
    for canary in &canaries {
        assert!(
            !shown.contains(canary.as_str()),
            "secret {canary:?} shown in {shown:?}"
        );
    }
}

/// Images the credentials target looks up in every keyring it manages to load.
const LOOKUPS: &[&str] = &[
    "nginx",
    "registry.example.com/team-a/app:1",
    "registry.example.com:5000/x",
    "123.dkr.ecr.eu-west-1.amazonaws.com/app",
    "127.0.0.1:5000/a/b",
    "localhost/x",
];

/// Loads `data` and returns what a person could see: the error, or the keyring's `Debug`, its
/// keys, and the description and note of every entry a lookup finds.
fn load_and_show(path: &Path, data: &[u8]) -> String {
    match Keyring::from_slice(path, data) {
        Ok(keyring) => {
            let mut shown = format!("{keyring:?}");
            for key in keyring.keys() {
                shown.push_str(&format!(" {key}"));
            }
            for image in LOOKUPS {
                let image = ImageRef::parse(image).expect("fixed references parse");
                for m in keyring.lookup_all(&image) {
                    let c = m.credential;
                    shown.push_str(&format!(" {} {c:?} {m:?}", c.describe()));
                    if let Some(note) = credentials::ignored_note(&m) {
                        shown.push_str(&format!(" {note}"));
                    }
                }
            }
            shown
        }
        Err(e) => format!("{e} {e:?}"),
    }
}

/// Replaces the secrets of every entry (in `auths` and, for the legacy format, at the top
/// level) by markers `CANARY<n>Z`, recording them.
fn plant_canaries(doc: &mut serde_json::Value, canaries: &mut Vec<String>) {
    use base64::Engine as _;
    use serde_json::Value;
    let b64 = &base64::engine::general_purpose::STANDARD;
    let Value::Object(top) = doc else {
        return;
    };
    let mut entries: Vec<&mut Value> = Vec::new();
    for (key, value) in top.iter_mut() {
        match (key.as_str(), value) {
            ("auths", Value::Object(auths)) => entries.extend(auths.values_mut()),
            (_, v) => entries.push(v),
        }
    }
    for entry in entries {
        let Value::Object(fields) = entry else {
            continue;
        };
        for (field, value) in fields.iter_mut() {
            let Value::String(text) = value else {
                continue;
            };
            let mut canary = || {
                let c = format!("CANARY{}Z", canaries.len());
                canaries.push(c.clone());
                c
            };
            *text = match field.as_str() {
                "password" | "identitytoken" | "registrytoken" if !text.is_empty() => canary(),
                // kubelet also accepts unpadded base64, so decode that too.
                "auth" if !text.is_empty() => match b64.decode(text.trim()).or_else(|_| {
                    base64::engine::general_purpose::STANDARD_NO_PAD.decode(text.trim())
                }) {
                    Err(_) => format!("%{}%", canary()),
                    Ok(raw) => match String::from_utf8(raw) {
                        Err(_) => b64.encode([&[0xff_u8][..], canary().as_bytes()].concat()),
                        Ok(decoded) => match decoded.split_once(':') {
                            Some((user, _)) => b64.encode(format!("{user}:{}", canary())),
                            None => b64.encode(canary()),
                        },
                    },
                },
                _ => continue,
            };
        }
    }
}

/// `Config::from_yaml`: never panics; a loaded config satisfies the validated rules; an error
/// lists at least one issue.
///
/// Inputs that could name device or proc files (or spell a path with YAML escapes) are
/// skipped: the loader reads the CA and docker config files a config names, and reading
/// `/dev/zero` is not what this target is about.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if ["/dev", "/proc", "/sys", "\\"]
        .iter()
        .any(|bad| text.contains(bad))
    {
        return;
    }
    match Config::from_yaml("fuzz.yaml", text, Path::new("/nonexistent-fuzz-base")) {
        Ok(c) => {
            assert!(!c.targets.is_empty(), "{text:?}");
            assert!(c.timeout <= c.interval, "{text:?}");
            assert!(!c.timeout.is_zero() && !c.interval.is_zero(), "{text:?}");
            let mut names: Vec<&str> = c.targets.iter().map(|t| t.name.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), c.targets.len(), "{text:?}: duplicate names");
        }
        Err(e) => {
            assert!(!e.issues.is_empty(), "{text:?}");
            let _ = e.to_string();
        }
    }
}
