//! Image references: parsing with the Docker grammar and mapping to the registry API endpoint.
//!
//! Parsing and normalisation (`nginx` → `docker.io/library/nginx:latest`) come from the
//! `oci-spec` crate, which follows distribution/reference. On top of it this module knows
//! what containerd knows: `docker.io` is served from `registry-1.docker.io`, and when a
//! reference has a digest the digest is what gets resolved.

use std::fmt;

use oci_spec::distribution::Reference;

/// The API host of Docker Hub (containerd's `DefaultHost` for `docker.io`).
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

/// A parsed, normalised image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef {
    inner: Reference,
    host: String,
    port: Option<u16>,
}

/// Why an image reference could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("invalid image reference {input:?}: {source}")]
    Parse {
        input: String,
        #[source]
        source: oci_spec::distribution::ParseError,
    },
    #[error("invalid image reference {input:?}: registry port is not a number from 1 to 65535")]
    Port { input: String },
    #[error(
        "invalid image reference {input:?}: it would be read as {normalised:?}, which is not a valid reference \
         (Docker reads an uppercase first path component as a registry host)"
    )]
    Ambiguous { input: String, normalised: String },
    #[error(
        "invalid image reference {input:?}: a tag may only contain ASCII letters, digits, '_', '.' and '-' \
         (Docker's grammar), so no node can pull it"
    )]
    Tag { input: String },
}

impl ImageRef {
    /// Parses a reference the way `docker pull`/containerd would.
    ///
    /// # Errors
    /// When the string is not a valid reference.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let trimmed = input.trim();
        let inner: Reference = trimmed.parse().map_err(|source| ReferenceError::Parse {
            input: input.to_owned(),
            source,
        })?;
        // The normalised form must read back as the same reference: `P/z` normalises to
        // `docker.io/P/z`, whose uppercase repository is invalid (Docker itself takes `P` for a
        // registry host there). Probing such a reference would probe something else.
        let normalised = inner.to_string();
        if normalised.parse::<Reference>().ok().as_ref() != Some(&inner) {
            return Err(ReferenceError::Ambiguous {
                input: input.to_owned(),
                normalised,
            });
        }
        // oci-spec reads the tag's `\w` as Unicode; distribution (Go's RE2, so containerd and
        // kubelet) reads it as ASCII and rejects `nginx:é` as an invalid reference.
        if !inner.tag().is_none_or(|t| t.is_ascii()) {
            return Err(ReferenceError::Tag {
                input: input.to_owned(),
            });
        }
        let (host, port) =
            split_host_port(inner.registry()).ok_or_else(|| ReferenceError::Port {
                input: input.to_owned(),
            })?;
        Ok(ImageRef { inner, host, port })
    }

    /// The registry as written in the normalised reference (`docker.io`, `ghcr.io`, `localhost:5000`).
    pub fn registry(&self) -> &str {
        self.inner.registry()
    }

    /// The repository path (`library/nginx`).
    pub fn repository(&self) -> &str {
        self.inner.repository()
    }

    pub fn tag(&self) -> Option<&str> {
        self.inner.tag()
    }

    pub fn digest(&self) -> Option<&str> {
        self.inner.digest()
    }

    /// What the manifest request asks for: the digest when there is one, else the tag.
    pub fn manifest_reference(&self) -> &str {
        self.digest().or(self.tag()).unwrap_or("latest")
    }

    pub fn is_docker_hub(&self) -> bool {
        self.inner.registry() == "docker.io"
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
        write!(f, "{}", self.inner)
    }
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
            "P/z",
            "Team/app:1",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn tags_are_ascii_as_in_docker() {
        for bad in ["nginx:é", "nginx:v1é", "ghcr.io/org/app:ünïcode@sha256:{}"] {
            let bad = bad.replace("{}", &"a".repeat(64));
            let e = ImageRef::parse(&bad).unwrap_err();
            assert_eq!(e, ReferenceError::Tag { input: bad.clone() });
            assert!(e.to_string().contains("ASCII"), "{e}");
        }
        assert_eq!(
            ImageRef::parse("nginx:V1_2.3-rc").unwrap().tag(),
            Some("V1_2.3-rc")
        );
    }
}
