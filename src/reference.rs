//! Image references: parsing with the Docker grammar and mapping to the registry API endpoint.
//!
//! Parsing and normalisation (`nginx` → `docker.io/library/nginx:latest`) follow
//! distribution/reference, as the `oci-spec` crate did before this module parsed references by
//! hand: compiling oci-spec's Unicode-aware reference regex took ~14 MB of transient heap and a
//! few MB for the compiled automaton, most of the agent's idle memory (docs/performance.md).
//! On top of the grammar this module knows what containerd knows: `docker.io` is served from
//! `registry-1.docker.io`, and when a reference has a digest the digest is what gets resolved.
//!
//! Grammar (anchored): `name [":" tag] ["@" digest]`, where
//! - `name` is `[domain "/"] path`; `domain` is dot-separated `[A-Za-z0-9]` labels (inner `-`
//!   allowed) with an optional `:port`; `path` is `/`-separated components of `[a-z0-9]` runs
//!   joined by `.`, `_`, `__` or runs of `-`;
//! - `tag` is `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`;
//! - `digest` is `algorithm ":" hex`, and only `sha256`/`sha384`/`sha512` with their exact
//!   lengths are accepted.
//!
//! The first path component is the registry only if it contains `.` or `:` or is `localhost`;
//! otherwise the registry is `docker.io` (`index.docker.io` is the same), where a single
//! component gets the `library/` prefix.

use std::fmt;

/// The API host of Docker Hub (containerd's `DefaultHost` for `docker.io`).
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
const OFFICIAL_NAMESPACE: &str = "library";
const DEFAULT_TAG: &str = "latest";
/// The longest repository path accepted, in bytes (distribution's `NameTotalLengthMax`).
const NAME_MAX: usize = 255;
/// The longest tag, in characters.
const TAG_MAX: usize = 128;

/// A parsed, normalised image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
    host: String,
    port: Option<u16>,
}

/// Why a string is not a valid reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("invalid checksum digest length")]
    DigestInvalidLength,
    #[error("unsupported digest algorithm")]
    DigestUnsupported,
    #[error("repository name must have at least one component")]
    NameEmpty,
    #[error("repository name must not be more than {NAME_MAX} characters")]
    NameTooLong,
    #[error("invalid reference format")]
    ReferenceInvalidFormat,
}

/// Why an image reference could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("invalid image reference {input:?}: {source}")]
    Parse {
        input: String,
        #[source]
        source: ParseError,
    },
    #[error("invalid image reference {input:?}: registry port is not a number from 1 to 65535")]
    Port { input: String },
}

impl ImageRef {
    /// Parses a reference the way `docker pull`/containerd would.
    ///
    /// # Errors
    /// When the string is not a valid reference.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let parse_error = |source| ReferenceError::Parse {
            input: input.to_owned(),
            source,
        };
        let (registry, repository, tag, digest) =
            parse_reference(input.trim()).map_err(parse_error)?;
        let (host, port) = split_host_port(&registry).ok_or_else(|| ReferenceError::Port {
            input: input.to_owned(),
        })?;
        Ok(ImageRef {
            registry,
            repository,
            tag,
            digest,
            host,
            port,
        })
    }

    /// The registry as written in the normalised reference (`docker.io`, `ghcr.io`, `localhost:5000`).
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

    /// `host[:port]` of the API endpoint: the `registry` label and what the report shows.
    pub fn api_authority(&self) -> String {
        let host = self.api_host();
        let host = if host.contains(':') {
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

type Parts = (String, String, Option<String>, Option<String>);

/// Splits and validates `s` (see the module docs); returns registry, repository, tag, digest.
fn parse_reference(s: &str) -> Result<Parts, ParseError> {
    if s.is_empty() {
        return Err(ParseError::NameEmpty);
    }
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (s, None),
    };
    // A `:` followed by no `/` ends the name: a port is always followed by the path.
    let (name, tag) = match rest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (rest, None),
    };
    let valid_name = is_path(name)
        || name
            .split_once('/')
            .is_some_and(|(domain, path)| is_domain(domain) && is_path(path));
    if !valid_name || !tag.is_none_or(is_tag) || !digest.is_none_or(is_digest_syntax) {
        return Err(ParseError::ReferenceInvalidFormat);
    }
    let (registry, repository) = split_domain(name);
    if repository.len() > NAME_MAX {
        return Err(ParseError::NameTooLong);
    }
    if let Some(d) = digest {
        let (algorithm, hex) = d
            .split_once(':')
            .ok_or(ParseError::ReferenceInvalidFormat)?;
        let want = match algorithm {
            "sha256" => 64,
            "sha384" => 96,
            "sha512" => 128,
            _ => return Err(ParseError::DigestUnsupported),
        };
        if hex.len() != want {
            return Err(ParseError::DigestInvalidLength);
        }
    }
    let tag = match (tag, digest) {
        (None, None) => Some(DEFAULT_TAG),
        (t, _) => t,
    };
    Ok((
        registry,
        repository,
        tag.map(str::to_owned),
        digest.map(str::to_owned),
    ))
}

/// `docker.io` unless the first component looks like a host; `library/` for official images.
fn split_domain(name: &str) -> (String, String) {
    let (mut domain, mut path) = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            (first.to_owned(), rest.to_owned())
        }
        _ => (DOCKER_HUB.to_owned(), name.to_owned()),
    };
    if domain == DOCKER_HUB_LEGACY {
        DOCKER_HUB.clone_into(&mut domain);
    }
    if domain == DOCKER_HUB && !path.contains('/') {
        path = format!("{OFFICIAL_NAMESPACE}/{path}");
    }
    (domain, path)
}

/// Dot-separated labels of ASCII letters, digits and inner `-`, then an optional `:digits`.
fn is_domain(s: &str) -> bool {
    let (host, port) = match s.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (s, None),
    };
    let label = |l: &str| {
        let b = l.as_bytes();
        matches!((b.first(), b.last()), (Some(f), Some(e)) if f.is_ascii_alphanumeric() && e.is_ascii_alphanumeric())
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    };
    host.split('.').all(label)
        && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
}

/// `/`-separated components of `[a-z0-9]` runs joined by `.`, `_`, `__` or runs of `-`.
fn is_path(s: &str) -> bool {
    s.split('/').all(|component| {
        let b = component.as_bytes();
        let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        if !(b.first().is_some_and(alnum) && b.last().is_some_and(alnum)) {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if alnum(&b[i]) {
                i += 1;
                continue;
            }
            let run = b[i..].iter().take_while(|c| !alnum(c)).count();
            let sep = &b[i..i + run];
            let ok = matches!(sep, b"." | b"_" | b"__") || sep.iter().all(|c| *c == b'-');
            if !ok {
                return false;
            }
            i += run;
        }
        true
    })
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn is_tag(s: &str) -> bool {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let b = s.as_bytes();
    (1..=TAG_MAX).contains(&b.len())
        && word(b[0])
        && b.iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

/// `[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}`.
fn is_digest_syntax(s: &str) -> bool {
    let Some((algorithm, hex)) = s.split_once(':') else {
        return false;
    };
    let part = |p: &str| {
        let b = p.as_bytes();
        b.first().is_some_and(u8::is_ascii_alphabetic) && b.iter().all(u8::is_ascii_alphanumeric)
    };
    algorithm.split(['-', '_', '+', '.']).all(part)
        && hex.len() >= 32
        && hex.bytes().all(|c| c.is_ascii_hexdigit())
}

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(registry: &str) -> Option<(String, Option<u16>)> {
    if let Some(rest) = registry.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(parse_port(p.strip_prefix(':')?)?),
        };
        return Some((host.to_owned(), port));
    }
    match registry.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), Some(parse_port(port)?))),
        None => Some((registry.to_owned(), None)),
    }
}

fn parse_port(p: &str) -> Option<u16> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_docker() {
        let cases = [
            (
                "nginx",
                "docker.io/library/nginx:latest",
                "registry-1.docker.io",
                "library/nginx",
                "latest",
            ),
            (
                "nginx:invalidtag",
                "docker.io/library/nginx:invalidtag",
                "registry-1.docker.io",
                "library/nginx",
                "invalidtag",
            ),
            (
                "docker.io/nginx",
                "docker.io/library/nginx:latest",
                "registry-1.docker.io",
                "library/nginx",
                "latest",
            ),
            (
                "index.docker.io/library/nginx:1.27",
                "docker.io/library/nginx:1.27",
                "registry-1.docker.io",
                "library/nginx",
                "1.27",
            ),
            (
                "ratelimitpreview/test",
                "docker.io/ratelimitpreview/test:latest",
                "registry-1.docker.io",
                "ratelimitpreview/test",
                "latest",
            ),
            (
                "registry.k8s.io/pause:3.10",
                "registry.k8s.io/pause:3.10",
                "registry.k8s.io",
                "pause",
                "3.10",
            ),
            (
                "localhost:5000/a/b",
                "localhost:5000/a/b:latest",
                "localhost:5000",
                "a/b",
                "latest",
            ),
            (
                "127.0.0.1:5000/team/app:v1",
                "127.0.0.1:5000/team/app:v1",
                "127.0.0.1:5000",
                "team/app",
                "v1",
            ),
        ];
        for (input, whole, authority, repo, reference) in cases {
            let r = ImageRef::parse(input).unwrap();
            assert_eq!(r.to_string(), whole, "{input}");
            assert_eq!(r.api_authority(), authority, "{input}");
            assert_eq!(r.repository(), repo, "{input}");
            assert_eq!(r.manifest_reference(), reference, "{input}");
        }
    }

    #[test]
    fn digest_wins_over_tag_for_the_request() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("quay.io/org/app:1.0@{d}")).unwrap();
        assert_eq!(r.tag(), Some("1.0"));
        assert_eq!(r.manifest_reference(), d);
        assert_eq!(r.api_host(), "quay.io");
        assert_eq!(r.port(), None);
    }

    #[test]
    fn grammar_edges_match_distribution_reference() {
        let d = format!("sha256:{}", "0123456789abcdef".repeat(4));
        for (input, whole) in [
            ("a__b-c---d_e/f.g", "docker.io/a__b-c---d_e/f.g:latest"),
            ("test.com:tag", "docker.io/library/test.com:tag"),
            ("test.com:5000", "docker.io/library/test.com:5000"),
            (
                "Host-1.Example.com:443/app",
                "Host-1.Example.com:443/app:latest",
            ),
            ("localhost/app:_v1.0-rc", "localhost/app:_v1.0-rc"),
            ("index.docker.io/nginx", "docker.io/library/nginx:latest"),
            (&format!("app@{d}"), &format!("docker.io/library/app@{d}")),
            (
                &format!("app:v1@{d}"),
                &format!("docker.io/library/app:v1@{d}"),
            ),
            (&format!("host:5000/app@{d}"), &format!("host:5000/app@{d}")),
        ] {
            let r = ImageRef::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), whole, "{input}");
        }
        assert_eq!(
            ImageRef::parse(&format!("app:{}", "t".repeat(128)))
                .unwrap()
                .tag()
                .unwrap()
                .len(),
            128
        );
        let err = |s: &str| match ImageRef::parse(s) {
            Err(ReferenceError::Parse { source, .. }) => source,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(
            err(&format!("app:{}", "t".repeat(129))),
            ParseError::ReferenceInvalidFormat
        );
        assert_eq!(
            err(&format!("a/{}", "b".repeat(254))),
            ParseError::NameTooLong
        );
        assert_eq!(
            err(&format!("app@md5:{}", "0".repeat(32))),
            ParseError::DigestUnsupported
        );
        assert_eq!(
            err(&format!("app@sha256:{}", "0".repeat(63))),
            ParseError::DigestInvalidLength
        );
        assert_eq!(err("  "), ParseError::NameEmpty);
    }

    #[test]
    fn malformed_references_are_errors_not_panics() {
        for bad in [
            "",
            "nginx/UPPER",
            "nginx:bad tag",
            "a//b",
            "nginx@sha256:short",
            "nginx@md5:0123456789abcdef0123456789abcdef",
            ":latest",
            "host:99999/app",
            "host:0/app",
            "\u{0}",
            "ñ/ü",
            "nginx:ünïcode",
            "a..b",
            "a___b",
            "a/-b",
            "-host.com/app",
            "host.com:/app",
            "app:-tag",
            "nginx@sha256:",
            "nginx@sha256:xyz",
            "nginx:1:2",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
