//! Image references: Docker's grammar as the node reads it, and the registry API endpoint
//! containerd uses for a reference.
//!
//! Kubelet and containerd parse references with github.com/distribution/reference (v0.6.0),
//! so this hand-written parser follows it step by step:
//! - `normalize.go` `ParseNormalizedNamed`: a bare 64-hex-digit image ID is refused; the name
//!   is split with `splitDockerDomain`; the repository part before the first `:` must not
//!   change when lower-cased; then `Parse(domain + "/" + remainder)`.
//! - `normalize.go` `splitDockerDomain`: the first `/`-separated component is the registry if
//!   it is `localhost`, contains `.` or `:`, or has uppercase letters; otherwise the registry is
//!   `docker.io`. `index.docker.io` is `docker.io`, and a single component there gets `library/`.
//! - `regexp.go` (`referencePat`, `anchoredNamePat`), read as Go's RE2 reads it (`\w` is ASCII):
//!   `name [":" tag] ["@" digest]`; `name` is an optional `domain "/"` and `/`-separated path
//!   components of `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`; `domain` is a host name
//!   (dot-separated `[A-Za-z0-9]` labels with inner `-`, IPv4 included) or a bracketed IPv6
//!   literal of hex digits and `:` (no zone, no dotted IPv4 tail), then an optional `:digits`;
//!   `tag` is `[\w][\w.-]{0,127}`; `digest` is `[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*`
//!   `:` and 32 or more hex digits. Go's `FindStringSubmatch` takes the domain when both readings
//!   of the first component match; when the domain reading fails, the whole name is the path.
//! - `reference.go` `Parse`: a failed match is `repository name must be lowercase` if the
//!   lower-cased input would match, else `invalid reference format`; the path may have at most
//!   255 characters; the digest goes through go-digest v1.0.0 `Digest.Validate`.
//! - go-digest `Digest.Validate`/`Algorithm.Validate`: `sha256`, `sha384` and `sha512` (what
//!   containerd and kubelet link) with exactly 64, 96 or 128 lowercase hex digits; any other
//!   algorithm is `unsupported digest algorithm`, or `invalid checksum digest format` when it is
//!   not lowercase.
//!
//! Unlike `ParseDockerRef`, a reference keeps both its tag and its digest (the digest is what is
//! resolved, as containerd does), and `latest` is the tag only when there is neither. Beyond the
//! grammar, the port must be 1–65535, because the probe dials it. `docker.io` is served from
//! `registry-1.docker.io` (containerd's `DefaultHost`).

use std::borrow::Cow;
use std::fmt;

/// The API host of Docker Hub (containerd's `DefaultHost` for `docker.io`).
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
const DEFAULT_TAG: &str = "latest";
/// `RepositoryNameTotalLengthMax`: the longest path, in bytes.
const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// A parsed, normalised image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
    /// The registry's host, an IPv6 literal without its brackets.
    host: String,
    port: Option<u16>,
}

/// Why an image reference could not be used: distribution's error, then what to change.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    /// `ErrReferenceInvalidFormat`.
    #[error("invalid image reference {input}: invalid reference format: {hint}", input = crate::config::quote(.input))]
    Format { input: String, hint: String },
    /// `ErrNameContainsUppercase`, or `ParseNormalizedNamed`'s check of the repository.
    #[error(
        "invalid image reference {input}: repository name must be lowercase: {name}; {hint}", input = crate::config::quote(.input), name = crate::config::quote(.name)
    )]
    Uppercase {
        input: String,
        name: String,
        hint: String,
    },
    /// `ErrNameTooLong`.
    #[error(
        "invalid image reference {input}: repository name must not be more than {NAME_MAX} characters \
         (its path has {len}); shorten the repository path", input = crate::config::quote(.input)
    )]
    NameTooLong { input: String, len: usize },
    /// go-digest `ErrDigestInvalidLength`.
    #[error(
        "invalid image reference {input}: invalid checksum digest length: {algorithm} takes {want} \
         hex digits, this digest has {got}; copy the whole digest", input = crate::config::quote(.input)
    )]
    DigestLength {
        input: String,
        algorithm: &'static str,
        want: usize,
        got: usize,
    },
    /// go-digest `ErrDigestInvalidFormat`.
    #[error("invalid image reference {input}: invalid checksum digest format: {hint}", input = crate::config::quote(.input))]
    DigestFormat { input: String, hint: &'static str },
    /// go-digest `ErrDigestUnsupported`.
    #[error(
        "invalid image reference {input}: unsupported digest algorithm {algorithm}; containerd and \
         kubelet verify sha256, sha384 and sha512 digests", input = crate::config::quote(.input), algorithm = crate::config::quote(.algorithm)
    )]
    DigestAlgorithm { input: String, algorithm: String },
    /// `ParseNormalizedNamed`'s refusal of an image ID.
    #[error(
        "invalid image reference {input}: invalid repository name, cannot specify 64-byte hexadecimal \
         strings; an image ID is not a reference: name the repository and put the ID after \
         '@sha256:'", input = crate::config::quote(.input)
    )]
    Identifier { input: String },
    /// Not distribution's: the grammar allows any digits, but no port outside 1–65535 can be dialled.
    #[error("invalid image reference {input}: registry port is not a number from 1 to 65535", input = crate::config::quote(.input))]
    Port { input: String },
}

impl ReferenceError {
    /// The upstream error this is (closed set): `reference_invalid_format`,
    /// `name_contains_uppercase`, `name_too_long`, `digest_invalid_length`,
    /// `digest_invalid_format`, `digest_unsupported`, `identifier`, or `port` (pullprobe's).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Format { .. } => "reference_invalid_format",
            Self::Uppercase { .. } => "name_contains_uppercase",
            Self::NameTooLong { .. } => "name_too_long",
            Self::DigestLength { .. } => "digest_invalid_length",
            Self::DigestFormat { .. } => "digest_invalid_format",
            Self::DigestAlgorithm { .. } => "digest_unsupported",
            Self::Identifier { .. } => "identifier",
            Self::Port { .. } => "port",
        }
    }
}

impl ImageRef {
    /// Parses a reference the way kubelet and containerd do (`ParseNormalizedNamed`).
    ///
    /// # Errors
    /// When the node would refuse the reference, or its port cannot be dialled.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let owned = || input.to_owned();
        if input.len() == 64
            && input
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(ReferenceError::Identifier { input: owned() });
        }
        let (domain, remainder) = split_docker_domain(input);
        let repo_part = remainder.split(':').next().unwrap_or_default();
        if changes_when_lowercased(repo_part) {
            return Err(ReferenceError::Uppercase {
                input: owned(),
                name: repo_part.to_owned(),
                hint: uppercase_hint(input),
            });
        }
        let m = match match_reference(domain, &remainder) {
            Ok(m) => m,
            Err(hint) => {
                let (d, r) = (go_lowercase(domain), go_lowercase(&remainder));
                if (d != domain || r != remainder) && match_reference(&d, &r).is_ok() {
                    return Err(ReferenceError::Uppercase {
                        input: owned(),
                        name: format!("{domain}/{}", split_reference(&remainder).0),
                        hint: uppercase_hint(input),
                    });
                }
                return Err(ReferenceError::Format {
                    input: owned(),
                    hint: generic_hint(input).unwrap_or(hint),
                });
            }
        };
        // The path is what follows the domain, or the whole name when the first component
        // only reads as a path component (e.g. `a.b_c/d`).
        let len = m.name.len() + if m.in_domain { 0 } else { domain.len() + 1 };
        if len > NAME_MAX {
            return Err(ReferenceError::NameTooLong {
                input: owned(),
                len,
            });
        }
        if let Some(d) = m.digest {
            validate_digest(d, input)?;
        }
        let (host, port) =
            split_host_port(domain).ok_or_else(|| ReferenceError::Port { input: owned() })?;
        let tag = match (m.tag, m.digest) {
            (None, None) => Some(DEFAULT_TAG),
            (t, _) => t,
        };
        Ok(ImageRef {
            registry: domain.to_owned(),
            repository: m.name.to_owned(),
            tag: tag.map(str::to_owned),
            digest: m.digest.map(str::to_owned),
            host: host.to_owned(),
            port,
        })
    }

    /// The registry as written in the normalised reference (`docker.io`, `ghcr.io`,
    /// `localhost:5000`, `[fd00::1]:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path (`library/nginx`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// What the manifest request asks for: the digest when there is one, else the tag.
    pub fn manifest_reference(&self) -> &str {
        self.digest().or(self.tag()).unwrap_or(DEFAULT_TAG)
    }

    pub fn is_docker_hub(&self) -> bool {
        self.registry == DOCKER_HUB
    }

    /// The host name (or IP literal, without brackets) that serves the registry API.
    pub fn api_host(&self) -> &str {
        if self.is_docker_hub() {
            DOCKER_HUB_API_HOST
        } else {
            &self.host
        }
    }

    /// The explicit port of the registry, if the reference has one.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// `host[:port]` of the API endpoint, an IPv6 literal in brackets: the `registry` label and
    /// what the report shows.
    pub fn api_authority(&self) -> String {
        let host = self.api_host();
        let host = if self.registry.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        match self.port {
            Some(p) => format!("{host}:{p}"),
            None => host,
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// `splitDockerDomain`.
fn split_docker_domain(name: &str) -> (&str, Cow<'_, str>) {
    let (domain, rest) = match name.split_once('/') {
        None => (DOCKER_HUB, name),
        Some((first, rest))
            if first == "localhost"
                || first.contains(['.', ':'])
                || changes_when_lowercased(first) =>
        {
            (
                if first == DOCKER_HUB_LEGACY {
                    DOCKER_HUB
                } else {
                    first
                },
                rest,
            )
        }
        Some(_) => (DOCKER_HUB, name),
    };
    if domain == DOCKER_HUB && !rest.contains('/') {
        return (domain, Cow::Owned(format!("library/{rest}")));
    }
    (domain, Cow::Borrowed(rest))
}

/// Go's `strings.ToLower(s) != s`.
fn changes_when_lowercased(s: &str) -> bool {
    if s.is_ascii() {
        return s.bytes().any(|b| b.is_ascii_uppercase());
    }
    s.chars().any(|c| !c.to_lowercase().eq([c]))
}

/// Go's `strings.ToLower`: Unicode's simple mapping, one character for one. Rust's full
/// mapping differs only for U+0130, which lower-cases to `i` plus a combining dot.
fn go_lowercase(s: &str) -> Cow<'_, str> {
    if !changes_when_lowercased(s) {
        return Cow::Borrowed(s);
    }
    let lower = |c: char| match c {
        '\u{130}' => 'i',
        c => c.to_lowercase().next().unwrap_or(c),
    };
    Cow::Owned(s.chars().map(lower).collect())
}

/// What `referencePat` captures from `domain "/" rest`.
struct Match<'a> {
    /// Whether the first component matched as a domain (else it is the first path component).
    in_domain: bool,
    name: &'a str,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
}

/// Name, tag and digest of the text after the domain's `/`: no part but the digest can hold
/// `@`, and a path component cannot hold `:`, so a `:` after the last `/` starts the tag.
fn split_reference(rest: &str) -> (&str, Option<&str>, Option<&str>) {
    let (name_tag, digest) = match rest.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (rest, None),
    };
    match name_tag.rfind(':') {
        Some(i) if !name_tag[i..].contains('/') => {
            (&name_tag[..i], Some(&name_tag[i + 1..]), digest)
        }
        _ => (name_tag, None, digest),
    }
}

/// Matches `domain "/" rest` against `referencePat`; on failure, says what does not fit.
fn match_reference<'a>(domain: &str, rest: &'a str) -> Result<Match<'a>, String> {
    let (name, tag, digest) = split_reference(rest);
    if let Some(d) = digest {
        digest_syntax(d)?;
    }
    if let Some(t) = tag {
        tag_syntax(t)?;
    }
    for c in name.split('/') {
        path_component(c)?;
    }
    // Go's leftmost-first match takes the domain reading first, else the path reading.
    let in_domain = match domain_syntax(domain) {
        Ok(()) => true,
        Err(e) => {
            path_component(domain).map_err(|_| e)?;
            false
        }
    };
    Ok(Match {
        in_domain,
        name,
        tag,
        digest,
    })
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or runs of `-`.
fn path_component(c: &str) -> Result<(), String> {
    let b = c.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut ok = b.first().is_some_and(alnum) && b.last().is_some_and(alnum);
    let mut i = 0;
    while ok && i < b.len() {
        let run = b[i..].iter().take_while(|c| !alnum(c)).count();
        let sep = &b[i..i + run];
        ok = run == 0 || matches!(sep, b"." | b"_" | b"__") || sep.iter().all(|&c| c == b'-');
        i += run.max(1);
    }
    match (ok, c) {
        (true, _) => Ok(()),
        (false, "") => Err("a path component is empty (a '/' at an end, or '//')".to_owned()),
        (false, c) if changes_when_lowercased(c) => Err(format!(
            "path component {c} has uppercase letters; repository paths are lowercase",
            c = crate::config::quote(c)
        )),
        (false, c) => Err(format!(
            "path component {c} must be lowercase letters and digits, separated by one '.', \
             '_' or '__' or by dashes, and start and end with a letter or digit",
            c = crate::config::quote(c)
        )),
    }
}

/// `(domainName | "[" [a-fA-F0-9:]+ "]") (":" [0-9]+)?`.
fn domain_syntax(d: &str) -> Result<(), String> {
    let (host_ok, port) = match d.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((ip, port)) => (
                !ip.is_empty() && ip.bytes().all(|b| b.is_ascii_hexdigit() || b == b':'),
                port,
            ),
            None => (false, ""),
        },
        None => {
            let (host, port) = d.find(':').map_or((d, ""), |i| d.split_at(i));
            let label = |l: &[u8]| {
                l.first().is_some_and(u8::is_ascii_alphanumeric)
                    && l.last().is_some_and(u8::is_ascii_alphanumeric)
                    && l.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
            };
            (host.as_bytes().split(|&b| b == b'.').all(label), port)
        }
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    match (host_ok, port_ok) {
        (true, true) => Ok(()),
        (_, _) if !d.starts_with('[') && d.matches(':').count() > 1 => Err(format!(
            "registry {d} looks like an IPv6 address without brackets; write [address]:port",
            d = crate::config::quote(d)
        )),
        (_, _) if d.starts_with('[') && !host_ok => Err(format!(
            "registry {d}: an IPv6 literal is hex digits and ':' in brackets (no zone, no \
             dotted IPv4 part)",
            d = crate::config::quote(d)
        )),
        (true, false) => Err(format!(
            "registry {d}: the port must be digits",
            d = crate::config::quote(d)
        )),
        (false, _) => Err(format!(
            "registry {d} is not a host name: dot-separated labels of ASCII letters, digits \
             and inner '-'",
            d = crate::config::quote(d)
        )),
    }
}

/// `[\w][\w.-]{0,127}`, `\w` being ASCII.
fn tag_syntax(t: &str) -> Result<(), String> {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    match t.as_bytes() {
        [] => Err("a trailing ':' must be followed by a tag (or removed)".to_owned()),
        [first, ..] if !word(*first) => Err(format!(
            "tag {t} must start with an ASCII letter, digit or '_'",
            t = crate::config::quote(t)
        )),
        b if b.iter().any(|&c| !word(c) && c != b'.' && c != b'-') => Err(format!(
            "tag {t} may only contain ASCII letters, digits, '_', '.' and '-'",
            t = crate::config::quote(t)
        )),
        b if b.len() > TAG_MAX => Err(format!(
            "the tag has {} characters; Docker allows at most {TAG_MAX}",
            b.len()
        )),
        _ => Ok(()),
    }
}

/// The digest part of `referencePat`.
fn digest_syntax(d: &str) -> Result<(), String> {
    let example = "e.g. sha256:<64 hex digits>";
    let Some((algorithm, hex)) = d.split_once(':') else {
        return Err(if d.is_empty() {
            "a trailing '@' must be followed by a digest (or removed)".to_owned()
        } else {
            format!(
                "digest {d} must be algorithm:hex, {example}",
                d = crate::config::quote(d)
            )
        });
    };
    let part = |p: &str| {
        let b = p.as_bytes();
        b.first().is_some_and(u8::is_ascii_alphabetic) && b.iter().all(u8::is_ascii_alphanumeric)
    };
    if !algorithm.split(['-', '_', '+', '.']).all(part) {
        return Err(format!(
            "digest algorithm {algorithm} must be letters and digits, {example}",
            algorithm = crate::config::quote(algorithm)
        ));
    }
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "digest {d} may only have hex digits after the ':' (and one '@' before it)",
            d = crate::config::quote(d)
        ));
    }
    if hex.len() < 32 {
        return Err(format!(
            "digest {d} has {} hex digits; a digest has at least 32, {example}",
            hex.len(),
            d = crate::config::quote(d)
        ));
    }
    Ok(())
}

/// go-digest v1.0.0 `Digest.Validate`, after the grammar has matched.
fn validate_digest(d: &str, input: &str) -> Result<(), ReferenceError> {
    let (algorithm, hex) = d.split_once(':').unwrap_or((d, ""));
    let (algorithm, want) = match algorithm {
        "sha256" => ("sha256", 64),
        "sha384" => ("sha384", 96),
        "sha512" => ("sha512", 128),
        a if changes_when_lowercased(a) => {
            return Err(ReferenceError::DigestFormat {
                input: input.to_owned(),
                hint: "the digest algorithm must be lowercase (sha256)",
            });
        }
        a => {
            return Err(ReferenceError::DigestAlgorithm {
                input: input.to_owned(),
                algorithm: a.to_owned(),
            });
        }
    };
    if hex.len() != want {
        return Err(ReferenceError::DigestLength {
            input: input.to_owned(),
            algorithm,
            want,
            got: hex.len(),
        });
    }
    if hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ReferenceError::DigestFormat {
            input: input.to_owned(),
            hint: "the hex digits must be lowercase",
        });
    }
    Ok(())
}

/// What is wrong with the input as a whole, before any part of the grammar.
fn generic_hint(input: &str) -> Option<String> {
    let lower = input.to_ascii_lowercase();
    if input.is_empty() {
        Some("the reference is empty".to_owned())
    } else if let Some(rest) = ["http://", "https://"]
        .iter()
        .find_map(|s| lower.starts_with(s).then(|| &input[s.len()..]))
    {
        Some(format!(
            "remove the scheme: image references have none (write {rest})",
            rest = crate::config::quote(rest)
        ))
    } else if input.trim() != input {
        Some("remove the leading or trailing whitespace".to_owned())
    } else if let Some(c) = input.chars().find(|c| c.is_whitespace()) {
        Some(format!(
            "it contains whitespace ({c}); references have none",
            c = crate::config::quote(&c.to_string())
        ))
    } else if let Some(c) = input.chars().find(|c| !c.is_ascii()) {
        Some(format!(
            "{c} is not ASCII; references are ASCII only",
            c = crate::config::quote(&c.to_string())
        ))
    } else if input.matches('@').count() > 1 {
        Some("a reference has at most one '@' (before its digest)".to_owned())
    } else {
        None
    }
}

fn uppercase_hint(input: &str) -> String {
    generic_hint(input).unwrap_or_else(|| {
        "write it in lowercase (only a registry host, the first component before a '/', may \
         have uppercase letters)"
            .to_owned()
    })
}

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port`; `None` when the port is not 1–65535.
fn split_host_port(registry: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = match registry.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest.split_once(']')?;
            (host, after.strip_prefix(':'))
        }
        None => match registry.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        },
    };
    match port.map(str::parse::<u16>) {
        None => Some((host, None)),
        Some(Ok(p)) if p != 0 => Some((host, Some(p))),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// distribution/reference's own cases, as `ParseNormalizedNamed` answers them (from
    /// `reference_test.go` `TestReferenceParse`; `normalize_test.go` `TestValidateReferenceName`,
    /// `TestValidateRemoteName`, `TestParseRepositoryInfo`, `TestNormalizedSplitHostname`,
    /// `TestParseAnyReference`; `regexp_test.go`), then go-digest's and pullprobe's own.
    /// `input => registry repository tag digest` (`-` for none), or `!` and the error's `kind()`.
    /// `{name}` stands for a long value (see `expand`).
    #[rustfmt::skip]
    const CASES: &[(&str, &str)] = &[
        // reference_test.go
        ("test_com", "docker.io library/test_com latest -"),
        ("test.com:tag", "docker.io library/test.com tag -"),
        ("test.com:5000", "docker.io library/test.com 5000 -"),
        ("test.com/repo:tag", "test.com repo tag -"),
        ("test:5000/repo", "test:5000 repo latest -"),
        ("test:5000/repo:tag", "test:5000 repo tag -"),
        ("test:5000/repo@{sha}", "test:5000 repo - {sha}"),
        ("test:5000/repo:tag@{sha}", "test:5000 repo tag {sha}"),
        // Go's Parse("") is ErrNameEmpty; ParseNormalizedNamed("") parses `docker.io/library/`.
        ("", "!reference_invalid_format"),
        (":justtag", "!reference_invalid_format"),
        ("@{sha}", "!reference_invalid_format"),
        ("repo@sha256:{f34}", "!digest_invalid_length"),
        ("validname@invaliddigest:{f64}", "!digest_unsupported"),
        // Upstream's test binary does not link crypto/sha512; kubelet and containerd do.
        ("validname@{sha512}", "docker.io library/validname - {sha512}"),
        ("Uppercase:tag", "!name_contains_uppercase"),
        ("test:5000/Uppercase/lowercase:tag", "!name_contains_uppercase"),
        // Upstream's FIXME: an uppercase first component is a domain (splitDockerDomain).
        ("Uppercase/lowercase:tag", "Uppercase lowercase tag -"),
        ("lowercase:Uppercase", "docker.io library/lowercase Uppercase -"),
        ("domain/{a256}:tag", "!name_too_long"),
        ("{many}:tag-puts-this-over-max", "docker.io {many} tag-puts-this-over-max -"),
        ("aa/asdf$$^/aa", "!reference_invalid_format"),
        ("sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com bar/baz/quux latest -"),
        ("sub-dom1.foo.com/bar/baz/quux:some-long-tag", "sub-dom1.foo.com bar/baz/quux some-long-tag -"),
        ("b.gcr.io/test.example.com/my-app:test.example.com", "b.gcr.io test.example.com/my-app test.example.com -"),
        ("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com myimage xn--n3h.com -"),
        ("xn--7o8h.com/myimage:xn--7o8h.com@{sha}", "xn--7o8h.com myimage xn--7o8h.com {sha}"),
        ("foo_bar.com:8080", "docker.io library/foo_bar.com 8080 -"),
        ("foo/foo_bar.com:8080", "docker.io foo/foo_bar.com 8080 -"),
        ("192.168.1.1", "docker.io library/192.168.1.1 latest -"),
        ("192.168.1.1:tag", "docker.io library/192.168.1.1 tag -"),
        ("192.168.1.1:5000", "docker.io library/192.168.1.1 5000 -"),
        ("192.168.1.1/repo", "192.168.1.1 repo latest -"),
        ("192.168.1.1:5000/repo", "192.168.1.1:5000 repo latest -"),
        ("192.168.1.1:5000/repo:5050", "192.168.1.1:5000 repo 5050 -"),
        ("[2001:db8::1]", "!reference_invalid_format"),
        ("[2001:db8::1]:5000", "!reference_invalid_format"),
        ("[2001:db8::1]:tag", "!reference_invalid_format"),
        ("[2001:db8::1]/repo", "[2001:db8::1] repo latest -"),
        ("[2001:db8:1:2:3:4:5:6]/repo:tag", "[2001:db8:1:2:3:4:5:6] repo tag -"),
        ("[2001:db8::1]:5000/repo", "[2001:db8::1]:5000 repo latest -"),
        ("[2001:db8::1]:5000/repo:tag", "[2001:db8::1]:5000 repo tag -"),
        ("[2001:db8::1]:5000/repo@{sha}", "[2001:db8::1]:5000 repo - {sha}"),
        ("[2001:db8::1]:5000/repo:tag@{sha}", "[2001:db8::1]:5000 repo tag {sha}"),
        ("[2001:db8::]:5000/repo", "[2001:db8::]:5000 repo latest -"),
        ("[::1]:5000/repo", "[::1]:5000 repo latest -"),
        ("[fe80::1%eth0]:5000/repo", "!reference_invalid_format"),
        ("[fe80::1%@invalidzone]:5000/repo", "!reference_invalid_format"),
        ("example.com/{a255}:tag", "example.com {a255} tag -"),
        // normalize_test.go
        ("docker/docker", "docker.io docker/docker latest -"),
        ("library/debian", "docker.io library/debian latest -"),
        ("debian", "docker.io library/debian latest -"),
        ("localhost/library/debian", "localhost library/debian latest -"),
        ("localhost/debian", "localhost debian latest -"),
        ("LOCALDOMAIN/library/debian", "LOCALDOMAIN library/debian latest -"),
        ("LOCALDOMAIN/debian", "LOCALDOMAIN debian latest -"),
        ("docker.io/docker/docker", "docker.io docker/docker latest -"),
        ("docker.io/library/debian", "docker.io library/debian latest -"),
        ("docker.io/debian", "docker.io library/debian latest -"),
        ("index.docker.io/docker/docker", "docker.io docker/docker latest -"),
        ("index.docker.io/library/debian", "docker.io library/debian latest -"),
        ("index.docker.io/debian", "docker.io library/debian latest -"),
        ("127.0.0.1:5000/docker/docker", "127.0.0.1:5000 docker/docker latest -"),
        ("127.0.0.1:5000/library/debian", "127.0.0.1:5000 library/debian latest -"),
        ("127.0.0.1:5000/debian", "127.0.0.1:5000 debian latest -"),
        ("192.168.0.1", "docker.io library/192.168.0.1 latest -"),
        ("192.168.0.1:80", "docker.io library/192.168.0.1 80 -"),
        ("192.168.0.1:8/debian", "192.168.0.1:8 debian latest -"),
        ("192.168.0.2:25000/debian", "192.168.0.2:25000 debian latest -"),
        ("{song}", "docker.io library/{song} latest -"),
        ("[fc00::1]:5000/docker", "[fc00::1]:5000 docker latest -"),
        ("[fc00::1]:5000/docker/docker", "[fc00::1]:5000 docker/docker latest -"),
        ("[fc00:1:2:3:4:5:6:7]:5000/library/debian", "[fc00:1:2:3:4:5:6:7]:5000 library/debian latest -"),
        ("docker.io/{id}", "docker.io library/{id} latest -"),
        ("Docker/docker", "Docker docker latest -"),
        ("DOCKER/docker", "DOCKER docker latest -"),
        ("https://github.com/docker/docker", "!reference_invalid_format"),
        ("docker/Docker", "!name_contains_uppercase"),
        ("-docker", "!reference_invalid_format"),
        ("-docker/docker", "!reference_invalid_format"),
        ("-docker.io/docker/docker", "!reference_invalid_format"),
        ("docker///docker", "!reference_invalid_format"),
        ("docker.io/docker/Docker", "!name_contains_uppercase"),
        ("docker.io/docker///docker", "!reference_invalid_format"),
        ("[fc00::1]", "!reference_invalid_format"),
        ("[fc00::1]:5000", "!reference_invalid_format"),
        ("fc00::1:5000/debian", "!reference_invalid_format"),
        ("[fe80::1%eth0]:5000/debian", "!reference_invalid_format"),
        ("[2001:db8:3:4::192.0.2.33]:5000/debian", "!reference_invalid_format"),
        ("{id}", "!identifier"),
        ("docker-rules/docker", "docker.io docker-rules/docker latest -"),
        ("docker---rules/docker", "docker.io docker---rules/docker latest -"),
        ("doc/docker", "docker.io doc/docker latest -"),
        ("d/docker", "docker.io d/docker latest -"),
        ("jess/t", "docker.io jess/t latest -"),
        ("dock__er/docker", "docker.io dock__er/docker latest -"),
        ("docker-/docker", "!reference_invalid_format"),
        ("-docker-/docker", "!reference_invalid_format"),
        ("____/____", "!reference_invalid_format"),
        ("_docker/_docker", "!reference_invalid_format"),
        ("dock..er/docker", "!reference_invalid_format"),
        ("dock_.er/docker", "!reference_invalid_format"),
        ("dock-.er/docker", "!reference_invalid_format"),
        ("docker/", "!reference_invalid_format"),
        ("{long_ns}/docker", "!name_too_long"),
        ("ubuntu-12.04-base", "docker.io library/ubuntu-12.04-base latest -"),
        ("docker.io/foo", "docker.io library/foo latest -"),
        ("library/foo/bar", "docker.io library/foo/bar latest -"),
        ("Foo/bar", "Foo bar latest -"),
        ("example.com:8000/private/moonbase", "example.com:8000 private/moonbase latest -"),
        ("test_com/foo", "docker.io test_com/foo latest -"),
        ("test-com:8080/foo", "test-com:8080 foo latest -"),
        ("xn--n3h.com:18080/foo", "xn--n3h.com:18080 foo latest -"),
        ("redis@{redis}", "docker.io library/redis - {redis}"),
        ("busybox:latest@{redis}", "docker.io library/busybox latest {redis}"),
        ("dbcc1", "docker.io library/dbcc1 latest -"),
        ("{id63}", "docker.io library/{id63} latest -"),
        // regexp_test.go
        ("foo_bar.com:8080/app", "!reference_invalid_format"),
        ("do__cker:8080/docker", "!reference_invalid_format"),
        ("foo.com/foo_bar", "foo.com foo_bar latest -"),
        ("example.com/some_separator__underscore/myimage", "example.com some_separator__underscore/myimage latest -"),
        ("example.com/__underscore/myimage", "!reference_invalid_format"),
        ("example.com/.dots/myimage", "!reference_invalid_format"),
        ("registry.io/foo/project--id.module--name.ver---sion--name", "registry.io foo/project--id.module--name.ver---sion--name latest -"),
        ("Asdf.com/foo/bar", "Asdf.com foo/bar latest -"),
        ("Foo/FarB", "!name_contains_uppercase"),
        ("registry.com:8080/myapp@sha256:badbadbadbad", "!reference_invalid_format"),
        ("registry.com:8080/myapp:invalid~tag", "!reference_invalid_format"),
        ("bad_hostname.com:8080/myapp:tag", "!reference_invalid_format"),
        ("localhost:8080", "docker.io library/localhost 8080 -"),
        ("localhost@{redis}", "docker.io library/localhost - {redis}"),
        ("localhost:http/name@{redis}", "!reference_invalid_format"),
        ("registry.com:8080/myapp@bad", "!reference_invalid_format"),
        ("registry.com:8080/myapp@2bad", "!reference_invalid_format"),
        ("[fd00123123123]:5000/app", "[fd00123123123]:5000 app latest -"),
        // go-digest v1.0.0: registered algorithms, exact lengths, lowercase hex.
        ("nginx@{sha384}", "docker.io library/nginx - {sha384}"),
        ("nginx@sha256:{F64}", "!digest_invalid_format"),
        ("nginx:1@SHA256:{f64}", "!digest_invalid_format"),
        // ParseNormalizedNamed's own check reads `library/nginx@SHA256` as the repository.
        ("nginx@SHA256:{f64}", "!name_contains_uppercase"),
        ("nginx@md5:{f64}", "!digest_unsupported"),
        ("nginx@sha512:{f64}", "!digest_invalid_length"),
        // No domain reading of `a.b_c`: the whole name is the path, and its length counts.
        ("a.b_c/d", "a.b_c d latest -"),
        ("a.b_c/{d250}", "!name_too_long"),
        ("nginx:{t128}", "docker.io library/nginx {t128} -"),
        ("nginx:{t128}t", "!reference_invalid_format"),
        ("nginx:é", "!reference_invalid_format"),
        // Go's strings.ToLower maps the Kelvin sign to `k` and U+0130 to `i`.
        ("nginx:\u{212a}", "!name_contains_uppercase"),
        ("\u{130}/x", "!name_contains_uppercase"),
        ("nginx:", "!reference_invalid_format"),
        (" nginx", "!reference_invalid_format"),
        ("nginx:bad tag", "!reference_invalid_format"),
        ("[::1]/app", "[::1] app latest -"),
        // pullprobe's own: the port is dialled.
        ("[fd00:1:2::3]:75050/app", "!port"),
        ("host:0/app", "!port"),
        ("192.168.1.1:750050/app", "!port"),
    ];

    /// Replaces the `{name}` placeholders of [`CASES`].
    fn expand(s: &str) -> String {
        let id = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";
        let ns = "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255";
        let values = [
            ("{sha}", format!("sha256:{}", "f".repeat(64))),
            ("{sha384}", format!("sha384:{}", "0".repeat(96))),
            ("{sha512}", format!("sha512:{}", "f".repeat(128))),
            (
                "{redis}",
                "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c".into(),
            ),
            ("{f34}", "f".repeat(34)),
            ("{f64}", "f".repeat(64)),
            ("{F64}", "F".repeat(64)),
            ("{id63}", id[..63].to_owned()),
            ("{id}", id.to_owned()),
            ("{a255}", "a".repeat(255)),
            ("{a256}", "a".repeat(256)),
            ("{d250}", "d".repeat(250)),
            ("{t128}", "t".repeat(128)),
            ("{many}", format!("{}a", "a/".repeat(127))),
            ("{long_ns}", [ns; 4].join("_")),
            (
                "{song}",
                "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev".into(),
            ),
        ];
        values
            .iter()
            .fold(s.to_owned(), |s, (k, v)| s.replace(k, v))
    }

    #[test]
    fn distribution_reference_cases() {
        for (input, want) in CASES {
            let (input, want) = (expand(input), expand(want));
            let got = match ImageRef::parse(&input) {
                Ok(r) => {
                    let opt = |o: Option<&str>| o.unwrap_or("-").to_owned();
                    let (tag, digest) = (opt(r.tag()), opt(r.digest()));
                    format!("{} {} {tag} {digest}", r.registry(), r.repository())
                }
                Err(e) => format!("!{}", e.kind()),
            };
            assert_eq!(got, want, "{input:?}");
        }
    }

    #[test]
    fn normalises_like_docker() {
        let cases = [
            (
                "nginx",
                "docker.io/library/nginx:latest",
                "registry-1.docker.io",
                "latest",
            ),
            (
                "docker.io/nginx",
                "docker.io/library/nginx:latest",
                "registry-1.docker.io",
                "latest",
            ),
            (
                "index.docker.io/library/nginx:1.27",
                "docker.io/library/nginx:1.27",
                "registry-1.docker.io",
                "1.27",
            ),
            (
                "registry.k8s.io/pause:3.10",
                "registry.k8s.io/pause:3.10",
                "registry.k8s.io",
                "3.10",
            ),
            (
                "localhost:5000/a/b",
                "localhost:5000/a/b:latest",
                "localhost:5000",
                "latest",
            ),
            (
                "127.0.0.1:5000/team/app:v1",
                "127.0.0.1:5000/team/app:v1",
                "127.0.0.1:5000",
                "v1",
            ),
            (
                "[fd00::1]:5000/app",
                "[fd00::1]:5000/app:latest",
                "[fd00::1]:5000",
                "latest",
            ),
            ("[::1]/app:1", "[::1]/app:1", "[::1]", "1"),
            ("Team/app:1", "Team/app:1", "Team", "1"),
        ];
        for (input, whole, authority, reference) in cases {
            let r = ImageRef::parse(input).unwrap();
            assert_eq!(r.to_string(), whole, "{input}");
            assert_eq!(r.api_authority(), authority, "{input}");
            assert_eq!(r.manifest_reference(), reference, "{input}");
            assert_eq!(ImageRef::parse(whole).unwrap(), r, "{input}");
        }
    }

    #[test]
    fn ipv6_hosts_without_brackets_and_authorities_with_them() {
        let r = ImageRef::parse("[fd00::1]:5000/app").unwrap();
        assert_eq!((r.api_host(), r.port()), ("fd00::1", Some(5000)));
        assert_eq!(r.api_authority(), "[fd00::1]:5000");
        let r = ImageRef::parse("[::1]/app").unwrap();
        assert_eq!(
            (r.api_host(), r.port(), r.api_authority().as_str()),
            ("::1", None, "[::1]")
        );
        // The grammar's literal is only hex digits and colons; the engine finds the host unusable.
        let r = ImageRef::parse("[abc]:5000/app").unwrap();
        assert_eq!(
            (r.api_host(), r.api_authority().as_str()),
            ("abc", "[abc]:5000")
        );
    }

    #[test]
    fn digest_wins_over_tag_for_the_request() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("quay.io/org/app:1.0@{d}")).unwrap();
        assert_eq!(r.tag(), Some("1.0"));
        assert_eq!(r.manifest_reference(), d);
        assert_eq!(r.api_host(), "quay.io");
        assert_eq!(r.port(), None);
        assert!(!r.is_docker_hub());
    }

    #[test]
    fn quoted_input_has_no_rust_escapes() {
        for input in ["ngi\"nx\n", "reg.io/a\\b", "nginx:\u{1b}[31m"] {
            let e = ImageRef::parse(input).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!(
                    "invalid image reference {}: ",
                    crate::config::quote(input)
                )),
                "{e}"
            );
            for escape in ["\\\"", "\\n", "\\u{"] {
                assert!(!e.contains(escape), "{escape} in {e}");
            }
        }
        let e = ImageRef::parse("ngi\"nx\n").unwrap_err().to_string();
        assert!(
            e.starts_with("invalid image reference \"ngi\"nx<U+000A>\": "),
            "{e}"
        );
    }

    #[test]
    fn errors_say_what_is_wrong_and_quote_the_input() {
        let long_tag = format!("nginx:{}", "t".repeat(129));
        let short = format!("nginx@sha256:{}", "a".repeat(40));
        let upper_hex = format!("nginx@sha256:{}", "A".repeat(64));
        let md5 = format!("nginx@md5:{}", "0".repeat(32));
        let long_name = format!("a/{}", "b".repeat(254));
        let cases: [(&str, &str); 16] = [
            (
                "https://ghcr.io/org/app:1",
                "invalid reference format: remove the scheme: image references have none (write \"ghcr.io/org/app:1\")",
            ),
            ("http://localhost:5000/app", "remove the scheme"),
            (
                "nginx:",
                "invalid reference format: a trailing ':' must be followed by a tag",
            ),
            ("nginx@", "a trailing '@' must be followed by a digest"),
            (" nginx", "remove the leading or trailing whitespace"),
            ("nginx:bad tag", "it contains whitespace (\" \")"),
            (
                "ghcr.io/Org/app",
                "repository name must be lowercase: \"Org/app\"; write it in lowercase",
            ),
            (
                &long_tag,
                "the tag has 129 characters; Docker allows at most 128",
            ),
            ("nginx:-rc", "tag \"-rc\" must start with"),
            (
                &short,
                "invalid checksum digest length: sha256 takes 64 hex digits, this digest has 40",
            ),
            (
                &upper_hex,
                "invalid checksum digest format: the hex digits must be lowercase",
            ),
            (&md5, "unsupported digest algorithm \"md5\""),
            (
                &long_name,
                "repository name must not be more than 255 characters (its path has 256)",
            ),
            ("fd00::1:5000/app", "without brackets"),
            ("a//b", "a path component is empty"),
            ("reg.io/a-/b", "path component \"a-\" must be"),
        ];
        for (input, text) in cases {
            let e = ImageRef::parse(input).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!(
                    "invalid image reference {}: ",
                    crate::config::quote(input)
                )),
                "{e}"
            );
            assert!(e.contains(text), "{input:?}: {e}");
        }
    }

    #[test]
    fn malformed_references_are_errors_not_panics() {
        for bad in [
            "",
            "nginx/UPPER",
            "a//b",
            ":latest",
            "\u{0}",
            "ñ/ü",
            "a..b",
            "a___b",
            "a/-b",
            "-host.com/app",
            "host.com:/app",
            "app:-tag",
            "nginx@sha256:",
            "nginx@sha256:xyz",
            "nginx:1:2",
            "nginx:ünïcode",
            "K\u{212a}/x",
            "[",
            "[]/x",
            "[::1/x",
            "@",
            "/",
            ":",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
