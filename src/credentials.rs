//! Registry credentials from a docker `config.json` / `kubernetes.io/dockerconfigjson` file,
//! matched to an image the way kubelet matches `imagePullSecrets`.
//!
//! Matching follows kubelet's keyring: the key's scheme and a trailing `/v1/` or `/v2/` are
//! ignored; host names are compared label by label with `*` globs (same number of labels);
//! ports must be equal; the key's path must be a prefix of the image's repository path; the
//! most specific key wins. Docker Hub images match the `https://index.docker.io/v1/` key (and
//! `docker.io`, `index.docker.io`, `registry-1.docker.io` keys alike).
//!
//! Secrets live in [`Secret`], whose `Debug` never shows the value.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use crate::reference::ImageRef;

/// A secret string. `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The value, for building an `Authorization` header. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Credentials for one registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// Username and password (or access token used as a password).
    Basic { username: String, password: Secret },
    /// A refresh token (`identitytoken`), exchanged at the token endpoint with OAuth2.
    IdentityToken { username: String, token: Secret },
    /// A bearer token to send to the registry as is (`registrytoken`).
    RegistryToken(Secret),
}

impl Credential {
    /// A non-secret description for messages: the username, or the kind of token.
    pub fn describe(&self) -> String {
        match self {
            Credential::Basic { username, .. } => format!("user {username:?}"),
            Credential::IdentityToken { username, .. } if !username.is_empty() => {
                format!("identity token of {username:?}")
            }
            Credential::IdentityToken { .. } => "an identity token".to_owned(),
            Credential::RegistryToken(_) => "a registry token".to_owned(),
        }
    }
}

/// A loaded credentials file: keys in kubelet's match order (most specific first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keyring {
    entries: Vec<(MatchKey, Credential)>,
}

/// Why a credentials file could not be used. Messages name the file and the key, never a value.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a docker config.json / .dockerconfigjson document: {detail}", path.display())]
    Format { path: PathBuf, detail: String },
    #[error("{}: auths[{key:?}]: {detail}", path.display())]
    Entry {
        path: PathBuf,
        key: String,
        detail: String,
    },
}

#[derive(Deserialize)]
struct RawEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

impl Keyring {
    /// Reads a `config.json` (`{"auths": {...}}`) or legacy `.dockercfg` (the bare map) file.
    ///
    /// # Errors
    /// When the file cannot be read or an entry is malformed; the error names the file and the
    /// `auths` key but never contains a credential.
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        let bytes = std::fs::read(path).map_err(|source| CredentialsError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_slice(path, &bytes)
    }

    /// Parses the document in `bytes`; `path` is only used in error messages.
    ///
    /// # Errors
    /// As [`Keyring::load`].
    pub fn from_slice(path: &Path, bytes: &[u8]) -> Result<Self, CredentialsError> {
        let format_err = |detail: String| CredentialsError::Format {
            path: path.to_owned(),
            detail,
        };
        // serde_json errors on a typed map could quote values; parse to a Value first and
        // only ever report positions and key names.
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
            format_err(format!(
                "invalid JSON at line {} column {}",
                e.line(),
                e.column()
            ))
        })?;
        let serde_json::Value::Object(mut top) = value else {
            return Err(format_err("the top level must be a JSON object".to_owned()));
        };
        let auths = match top.remove("auths") {
            Some(serde_json::Value::Object(m)) => m,
            Some(_) => return Err(format_err("\"auths\" must be an object".to_owned())),
            // Legacy .dockercfg: the map itself. Ignore the config.json's other fields.
            None if top.values().all(serde_json::Value::is_object) => top,
            None => return Err(format_err("missing \"auths\" object".to_owned())),
        };
        let mut entries = Vec::with_capacity(auths.len());
        for (key, raw) in auths {
            let entry_err = |detail: &str| CredentialsError::Entry {
                path: path.to_owned(),
                key: key.clone(),
                detail: detail.to_owned(),
            };
            let raw: RawEntry = serde_json::from_value(raw).map_err(|_| {
                entry_err(
                    "must be an object of string fields (auth, username, password, identitytoken)",
                )
            })?;
            let Some(cred) = credential_from(raw).map_err(&entry_err)? else {
                continue; // an entry without credentials (e.g. only "email") is ignored, as docker does
            };
            let match_key = MatchKey::parse(&key)
                .ok_or_else(|| entry_err("the key is not a registry host or URL"))?;
            entries.push((match_key, cred));
        }
        // kubelet sorts keys in reverse lexical order so that longer (more specific) keys come
        // first; sort by specificity explicitly, then by key for a stable order.
        entries.sort_by(|(a, _), (b, _)| {
            b.specificity()
                .cmp(&a.specificity())
                .then_with(|| b.raw.cmp(&a.raw))
        });
        Ok(Keyring { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The credential kubelet would use for `image`, if any.
    pub fn lookup(&self, image: &ImageRef) -> Option<&Credential> {
        let host = if image.is_docker_hub() {
            "index.docker.io".to_owned()
        } else {
            image.api_host().to_ascii_lowercase()
        };
        self.entries
            .iter()
            .find(|(k, _)| k.matches(&host, image.port(), image.repository()))
            .map(|(_, c)| c)
    }
}

fn credential_from(raw: RawEntry) -> Result<Option<Credential>, &'static str> {
    let (mut username, mut password) = (
        raw.username.unwrap_or_default(),
        raw.password.unwrap_or_default(),
    );
    if let Some(auth) = raw.auth.filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| "\"auth\" is not valid base64")?;
        let decoded =
            String::from_utf8(decoded).map_err(|_| "\"auth\" does not decode to UTF-8 text")?;
        let (u, p) = decoded
            .split_once(':')
            .ok_or("\"auth\" must decode to \"username:password\"")?;
        username = u.to_owned();
        password = p.to_owned();
    }
    if let Some(token) = raw.registrytoken.filter(|t| !t.is_empty()) {
        // It is sent as `Authorization: Bearer <token>`: refuse what a header cannot carry.
        if token.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err("\"registrytoken\" contains control characters");
        }
        return Ok(Some(Credential::RegistryToken(Secret::new(token))));
    }
    if let Some(token) = raw.identitytoken.filter(|t| !t.is_empty()) {
        return Ok(Some(Credential::IdentityToken {
            username,
            token: Secret::new(token),
        }));
    }
    if username.is_empty() && password.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credential::Basic {
        username,
        password: Secret::new(password),
    }))
}

/// A parsed `auths` key.
#[derive(Clone, Debug, PartialEq, Eq)]
struct MatchKey {
    raw: String,
    host_labels: Vec<String>,
    port: Option<u16>,
    path: Vec<String>,
}

impl MatchKey {
    fn parse(key: &str) -> Option<Self> {
        let mut rest = key.trim();
        for scheme in ["https://", "http://"] {
            if let Some(r) = rest.strip_prefix(scheme) {
                rest = r;
            }
        }
        for suffix in ["/v1/", "/v2/", "/v1", "/v2"] {
            if let Some(r) = rest.strip_suffix(suffix) {
                rest = r;
                break;
            }
        }
        let rest = rest.trim_end_matches('/');
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() {
            return None;
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                (h, Some(p.parse::<u16>().ok()?))
            }
            _ => (authority, None),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let host = match host.as_str() {
            "docker.io" | "registry-1.docker.io" => "index.docker.io".to_owned(),
            _ => host,
        };
        if host.is_empty() {
            return None;
        }
        Some(MatchKey {
            raw: key.to_owned(),
            host_labels: host.split('.').map(str::to_owned).collect(),
            port,
            path: path
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }

    fn specificity(&self) -> (usize, usize, bool) {
        let literal_labels = self.host_labels.iter().filter(|l| !l.contains('*')).count();
        (self.path.len(), literal_labels, self.port.is_some())
    }

    fn matches(&self, host: &str, port: Option<u16>, repository: &str) -> bool {
        let labels: Vec<&str> = host.split('.').collect();
        if labels.len() != self.host_labels.len() {
            return false;
        }
        if !self
            .host_labels
            .iter()
            .zip(&labels)
            .all(|(pat, label)| glob_match(pat, label))
        {
            return false;
        }
        if self.port != port {
            return false;
        }
        let repo: Vec<&str> = repository.split('/').collect();
        self.path.len() <= repo.len() && self.path.iter().zip(&repo).all(|(a, b)| a == b)
    }
}

/// `filepath.Match` for one DNS label: `*` matches any run of characters, `?` one character.
fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(json: &str) -> Keyring {
        Keyring::from_slice(Path::new("test.json"), json.as_bytes()).unwrap()
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn user_for(k: &Keyring, image: &str) -> Option<String> {
        match k.lookup(&ImageRef::parse(image).unwrap())? {
            Credential::Basic { username, .. } => Some(username.clone()),
            other => Some(other.describe()),
        }
    }

    #[test]
    fn docker_hub_key_matches_hub_images() {
        let k = keyring(&format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}}}}}}"#,
            b64("hubuser:pw")
        ));
        assert_eq!(user_for(&k, "nginx").as_deref(), Some("hubuser"));
        assert_eq!(
            user_for(&k, "docker.io/org/app:1").as_deref(),
            Some("hubuser")
        );
        assert_eq!(user_for(&k, "ghcr.io/org/app"), None);
        for key in ["docker.io", "registry-1.docker.io", "index.docker.io"] {
            let k = keyring(&format!(
                r#"{{"auths":{{"{key}":{{"username":"u","password":"p"}}}}}}"#
            ));
            assert_eq!(user_for(&k, "nginx").as_deref(), Some("u"), "{key}");
        }
    }

    #[test]
    fn kubelet_glob_port_and_path_rules() {
        let k = keyring(&format!(
            r#"{{"auths":{{
                "*.dkr.ecr.*.amazonaws.com": {{"auth":"{}"}},
                "registry.example.com:5000": {{"auth":"{}"}},
                "registry.example.com/team-a": {{"auth":"{}"}},
                "registry.example.com": {{"auth":"{}"}},
                "https://quay.io/v2/": {{"username":"robot","password":"x"}}
            }}}}"#,
            b64("AWS:tok"),
            b64("port:pw"),
            b64("team-a:pw"),
            b64("generic:pw"),
        ));
        assert_eq!(
            user_for(&k, "123.dkr.ecr.eu-west-1.amazonaws.com/app").as_deref(),
            Some("AWS")
        );
        // a glob matches exactly one label
        assert_eq!(user_for(&k, "123.dkr.ecr.eu.west.amazonaws.com/app"), None);
        assert_eq!(
            user_for(&k, "registry.example.com:5000/x").as_deref(),
            Some("port")
        );
        assert_eq!(
            user_for(&k, "registry.example.com/team-a/app").as_deref(),
            Some("team-a")
        );
        // a path prefix is matched by whole segments
        assert_eq!(
            user_for(&k, "registry.example.com/team-ab/app").as_deref(),
            Some("generic")
        );
        assert_eq!(
            user_for(&k, "registry.example.com/other").as_deref(),
            Some("generic")
        );
        assert_eq!(user_for(&k, "registry.example.com:6000/x"), None);
        assert_eq!(user_for(&k, "quay.io/org/app").as_deref(), Some("robot"));
    }

    #[test]
    fn legacy_dockercfg_and_tokens() {
        let k = keyring(r#"{"reg.example.com": {"username":"u","password":"p","email":"x@y"}}"#);
        assert_eq!(user_for(&k, "reg.example.com/a").as_deref(), Some("u"));
        let k = keyring(
            r#"{"auths":{"acr.example.com":{"username":"00000000-0000-0000-0000-000000000000","identitytoken":"refresh"},
                              "tok.example.com":{"registrytoken":"abc"},"empty.example.com":{"email":"x"}}}"#,
        );
        assert!(matches!(
            k.lookup(&ImageRef::parse("acr.example.com/a").unwrap()),
            Some(Credential::IdentityToken { .. })
        ));
        assert!(matches!(
            k.lookup(&ImageRef::parse("tok.example.com/a").unwrap()),
            Some(Credential::RegistryToken(_))
        ));
        assert_eq!(user_for(&k, "empty.example.com/a"), None);
    }

    #[test]
    fn malformed_files_give_errors_without_secrets() {
        let cases = [
            ("not json", "invalid JSON"),
            ("[1,2]", "top level must be a JSON object"),
            (r#"{"auths": 3}"#, "\"auths\" must be an object"),
            (
                r#"{"auths": {"r.io": {"auth": "%%%supersecret"}}}"#,
                "not valid base64",
            ),
            (
                r#"{"auths": {"r.io": {"auth": "c3VwZXJzZWNyZXQ="}}}"#,
                "username:password",
            ),
            (
                r#"{"auths": {"r.io": {"password": 12}}}"#,
                "must be an object of string fields",
            ),
            (
                r#"{"auths": {"": {"username": "u", "password": "supersecret"}}}"#,
                "not a registry host",
            ),
            (r#"{"credsStore": "desktop"}"#, "missing \"auths\""),
            (
                r#"{"auths": {"r.io": {"registrytoken": "supersecret\r\nX: y"}}}"#,
                "control characters",
            ),
        ];
        for (doc, want) in cases {
            let err = Keyring::from_slice(Path::new("/etc/x.json"), doc.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{doc}: {err}");
            assert!(err.contains("/etc/x.json"), "{err}");
            assert!(!err.contains("supersecret"), "{err}");
        }
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let k = keyring(&format!(
            r#"{{"auths":{{"r.io":{{"auth":"{}"}}}}}}"#,
            b64("user:hunter2")
        ));
        let dbg = format!("{k:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", "abc"));
        assert!(glob_match("a*c", "abbbc"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(!glob_match("*.x", "a.y"));
    }
}
