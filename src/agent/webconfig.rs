//! `--web.config.file`: TLS and basic auth for the agent's HTTP server, in the Prometheus
//! exporter-toolkit format every official exporter reads:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: /etc/pullprobe/web/tls.crt
//!   key_file: /etc/pullprobe/web/tls.key
//!   client_auth_type: NoClientCert        # or RequireAndVerifyClientCert, VerifyClientCertIfGiven
//!   client_ca_file: /etc/pullprobe/web/ca.crt
//!   min_version: TLS12                   # TLS12 or TLS13
//!   max_version: TLS13
//! http_server_config:
//!   headers: {Strict-Transport-Security: max-age=31536000}
//! basic_auth_users:
//!   prometheus: $2y$10$...               # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```
//!
//! As in exporter-toolkit, every endpoint is protected, and the file (with the certificate and
//! key it names) is re-read when its content changes, so rotated certificates are picked up
//! without a restart; a broken new file is logged and the previous one kept. Successful
//! password checks are cached under a keyed hash, so bcrypt runs once per credential, not once
//! per scrape; unknown users cost a bcrypt check too, so response times do not reveal names.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio::time::Instant;

/// How often, at most, the files are checked for changes.
const RECHECK: Duration = Duration::from_secs(5);
/// How many verified credentials are remembered.
const MAX_CACHED: usize = 64;
/// A valid bcrypt hash (of a random string) checked for unknown users.
const DUMMY_HASH: &str = "$2b$10$3euPcmQFCiblsZeEu5s7p.9OVHgeHWFDk9nhMqZ0m/3pd/lhwZgES";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    #[serde(default)]
    tls_server_config: Option<RawTls>,
    #[serde(default)]
    http_server_config: Option<RawHttp>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<PathBuf>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
}

/// A loaded web configuration.
pub(crate) struct WebConfig {
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    users: BTreeMap<String, String>,
    pub(crate) headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn err(path: &Path, key: &str, problem: impl std::fmt::Display, fix: &str) -> String {
    format!(
        "invalid web configuration in {}:\n  {key}: {problem}\n    fix: {fix}",
        path.display()
    )
}

/// The PEM items of `file` (named by `key` in the web config at `path`) that `parse` reads, or
/// the problem in words: an I/O error without `(os error N)`, a PEM error by its line.
fn read_pem<T>(
    path: &Path,
    key: &str,
    file: &Path,
    fix: &str,
    parse: impl FnOnce(&[u8]) -> Result<T, rustls_pki_types::pem::Error>,
) -> Result<T, String> {
    let bytes = std::fs::read(file).map_err(|e| {
        err(
            path,
            key,
            format!(
                "cannot read {}: {}",
                file.display(),
                crate::config::io_words(&e)
            ),
            fix,
        )
    })?;
    parse(&bytes).map_err(|e| {
        let problem = match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                format!("{} holds no PEM block of this kind", file.display())
            }
            e => crate::config::pem_problem(
                &file.display().to_string(),
                &String::from_utf8_lossy(&bytes),
                &e,
            ),
        };
        err(path, key, problem, fix)
    })
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        base.join(p)
    }
}

impl WebConfig {
    /// Reads and validates a web config file and the files it names.
    ///
    /// # Errors
    /// With the file, the key, the problem and a fix; never a password or hash.
    pub(crate) fn load(path: &Path) -> Result<(Self, Vec<PathBuf>), String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            err(
                path,
                "(file)",
                format!("cannot read the file: {}", crate::config::io_words(&e)),
                "pass a readable YAML file to --web.config.file",
            )
        })?;
        let raw: RawWebConfig = crate::config::from_yaml_str(&text).map_err(|e| {
            err(
                path,
                "(yaml)",
                e.trim(),
                "use the exporter-toolkit keys tls_server_config, http_server_config, basic_auth_users",
            )
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut files = vec![path.to_owned()];
        let tls = match raw.tls_server_config {
            None => None,
            Some(t) => Some(Arc::new(server_tls(path, base, t, &mut files)?)),
        };
        let users = raw.basic_auth_users.unwrap_or_default();
        for (user, hash) in &users {
            if user.contains(':') || user.is_empty() {
                return Err(err(
                    path,
                    &format!("basic_auth_users.{user}"),
                    "a user name must be non-empty and contain no ':'",
                    "rename the user",
                ));
            }
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(err(
                    path,
                    &format!("basic_auth_users.{user}"),
                    "is not a bcrypt hash",
                    "store a bcrypt hash, not the password: htpasswd -nBC 10 \"\" | tr -d ':\\n'",
                ));
            }
        }
        let mut headers = Vec::new();
        for (k, v) in raw
            .http_server_config
            .and_then(|h| h.headers)
            .unwrap_or_default()
        {
            let name = http::HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                err(
                    path,
                    &format!("http_server_config.headers.{k}"),
                    "is not a valid header name",
                    "use a header name like Strict-Transport-Security",
                )
            })?;
            let value = http::HeaderValue::from_str(&v).map_err(|_| {
                err(
                    path,
                    &format!("http_server_config.headers.{k}"),
                    "is not a valid header value",
                    "use printable ASCII",
                )
            })?;
            headers.push((name, value));
        }
        Ok((
            WebConfig {
                tls,
                users,
                headers,
            },
            files,
        ))
    }

    /// Whether requests must carry basic-auth credentials.
    pub(crate) fn requires_auth(&self) -> bool {
        !self.users.is_empty()
    }
}

fn tls_version(
    path: &Path,
    key: &str,
    v: &str,
) -> Result<&'static rustls::SupportedProtocolVersion, String> {
    match v {
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS13" => Ok(&rustls::version::TLS13),
        other => Err(err(
            path,
            key,
            format!(
                "{other} is not supported",
                other = crate::config::quote(other)
            ),
            "use TLS12 or TLS13 (older versions are insecure)",
        )),
    }
}

fn server_tls(
    path: &Path,
    base: &Path,
    t: RawTls,
    files: &mut Vec<PathBuf>,
) -> Result<rustls::ServerConfig, String> {
    let (Some(cert), Some(key)) = (t.cert_file, t.key_file) else {
        return Err(err(
            path,
            "tls_server_config",
            "cert_file and key_file are both required",
            "give the PEM certificate and its key",
        ));
    };
    let (cert, key) = (resolve(base, &cert), resolve(base, &key));
    files.extend([cert.clone(), key.clone()]);
    let chain: Vec<CertificateDer<'static>> = read_pem(
        path,
        "tls_server_config.cert_file",
        &cert,
        "give a PEM certificate (chain)",
        |b| CertificateDer::pem_slice_iter(b).collect(),
    )?;
    if chain.is_empty() {
        return Err(err(
            path,
            "tls_server_config.cert_file",
            format!("{} has no certificate", cert.display()),
            "give a PEM certificate (chain)",
        ));
    }
    let key = read_pem(
        path,
        "tls_server_config.key_file",
        &key,
        "give the PEM private key of the certificate",
        PrivateKeyDer::from_pem_slice,
    )?;

    let min = t
        .min_version
        .as_deref()
        .map(|v| tls_version(path, "tls_server_config.min_version", v))
        .transpose()?;
    let max = t
        .max_version
        .as_deref()
        .map(|v| tls_version(path, "tls_server_config.max_version", v))
        .transpose()?;
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [&rustls::version::TLS12, &rustls::version::TLS13]
            .into_iter()
            .filter(|v| min.is_none_or(|m| u16::from(v.version) >= u16::from(m.version)))
            .filter(|v| max.is_none_or(|m| u16::from(v.version) <= u16::from(m.version)))
            .collect();
    if versions.is_empty() {
        return Err(err(
            path,
            "tls_server_config.min_version",
            "min_version is above max_version",
            "set min_version ≤ max_version",
        ));
    }
    let builder = rustls::ServerConfig::builder_with_protocol_versions(&versions);

    let auth_type = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let builder = match auth_type {
        "NoClientCert" => builder.with_no_client_auth(),
        "RequireAndVerifyClientCert" | "VerifyClientCertIfGiven" => {
            let Some(ca) = t.client_ca_file else {
                return Err(err(
                    path,
                    "tls_server_config.client_ca_file",
                    format!("is required with client_auth_type {auth_type}"),
                    "give the CA that signs the scraper's client certificate",
                ));
            };
            let ca = resolve(base, &ca);
            files.push(ca.clone());
            let mut roots = rustls::RootCertStore::empty();
            let certs: Vec<CertificateDer<'static>> = read_pem(
                path,
                "tls_server_config.client_ca_file",
                &ca,
                "give a PEM CA file",
                |b| CertificateDer::pem_slice_iter(b).collect(),
            )?;
            roots.add_parsable_certificates(certs);
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots));
            let verifier = if auth_type == "VerifyClientCertIfGiven" {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier.build().map_err(|e| {
                err(
                    path,
                    "tls_server_config.client_ca_file",
                    e,
                    "give a PEM CA file with at least one CA certificate",
                )
            })?;
            builder.with_client_cert_verifier(verifier)
        }
        other => {
            return Err(err(
                path,
                "tls_server_config.client_auth_type",
                format!(
                    "{other} is not supported",
                    other = crate::config::quote(other)
                ),
                "use NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert",
            ));
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        err(
            path,
            "tls_server_config.key_file",
            e,
            "give the private key that belongs to cert_file",
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The current web config, re-read when its files change, and the password-check cache.
pub(crate) struct WebConfigHandle {
    path: PathBuf,
    state: Mutex<HandleState>,
    hasher: std::collections::hash_map::RandomState,
    hasher2: std::collections::hash_map::RandomState,
}

struct HandleState {
    current: Arc<WebConfig>,
    fingerprint: u64,
    checked: Instant,
    verified: HashMap<u128, ()>,
}

fn fingerprint(files: &[PathBuf]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for f in files {
        std::fs::read(f).ok().hash(&mut h);
    }
    h.finish()
}

/// What a request's credentials amount to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AuthDecision {
    Allowed,
    Denied,
}

impl WebConfigHandle {
    /// Loads the file once.
    ///
    /// # Errors
    /// As [`WebConfig::load`].
    pub(crate) fn new(path: &Path) -> Result<Self, String> {
        let (config, files) = WebConfig::load(path)?;
        Ok(WebConfigHandle {
            path: path.to_owned(),
            state: Mutex::new(HandleState {
                current: Arc::new(config),
                fingerprint: fingerprint(&files),
                checked: Instant::now(),
                verified: HashMap::new(),
            }),
            hasher: std::collections::hash_map::RandomState::new(),
            hasher2: std::collections::hash_map::RandomState::new(),
        })
    }

    /// The config to use for a new connection, re-read if its files changed.
    pub(crate) fn current(&self) -> Arc<WebConfig> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.checked.elapsed() >= RECHECK {
            st.checked = Instant::now();
            match WebConfig::load(&self.path) {
                Ok((config, files)) => {
                    let fp = fingerprint(&files);
                    if fp != st.fingerprint {
                        tracing::info!(file = %self.path.display(), "Web configuration reloaded");
                        st.current = Arc::new(config);
                        st.fingerprint = fp;
                        st.verified.clear();
                    }
                }
                Err(e) => tracing::error!(error = %e, "Keeping the previous web configuration"),
            }
        }
        st.current.clone()
    }

    /// Checks an `Authorization` header against `config`'s users.
    pub(crate) fn authorize(
        &self,
        config: &WebConfig,
        authorization: Option<&http::HeaderValue>,
    ) -> AuthDecision {
        if !config.requires_auth() {
            return AuthDecision::Allowed;
        }
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return AuthDecision::Denied;
        };
        let key = (u128::from(self.hasher.hash_one((&user, &password))) << 64)
            | u128::from(self.hasher2.hash_one((&user, &password)));
        if self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .verified
            .contains_key(&key)
        {
            return AuthDecision::Allowed;
        }
        let (hash, known) = match config.users.get(&user) {
            Some(h) => (h.as_str(), true),
            None => (DUMMY_HASH, false),
        };
        let ok = bcrypt::verify(&password, hash).unwrap_or(false) && known;
        if !ok {
            return AuthDecision::Denied;
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.verified.len() >= MAX_CACHED {
            st.verified.clear();
        }
        st.verified.insert(key, ());
        AuthDecision::Allowed
    }
}

fn parse_basic(v: &http::HeaderValue) -> Option<(String, String)> {
    let v = v.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (u, p) = decoded.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn yaml_type_errors_are_said_in_words_with_the_key() {
        let dir = tempfile::tempdir().unwrap();
        for (text, want) in [
            (
                "tls_server_config: yes\n",
                "(yaml): line 1, column 20: tls_server_config: must be a mapping of keys",
            ),
            (
                "tls_server_config:\n  min_version: [1]\n",
                "(yaml): line 2, column 16: min_version: must be text",
            ),
            (
                "bogus: 1\n",
                "(yaml): line 1, column 1: \"bogus\" is not a known key here",
            ),
        ] {
            let p = write(dir.path(), "web.yml", text);
            let e = WebConfig::load(&p).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
            for library in ["invalid type", "expected", "unknown field"] {
                assert!(!e.contains(library), "{text}: {e}");
            }
        }
    }

    #[test]
    fn basic_auth_checks_bcrypt_and_caches() {
        let dir = tempfile::tempdir().unwrap();
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let p = write(
            dir.path(),
            "web.yml",
            &format!("basic_auth_users:\n  prom: '{hash}'\n"),
        );
        let h = WebConfigHandle::new(&p).unwrap();
        let c = h.current();
        let header = |u: &str, pw: &str| {
            http::HeaderValue::from_str(&format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{pw}"))
            ))
            .unwrap()
        };
        assert_eq!(
            h.authorize(&c, Some(&header("prom", "s3cret"))),
            AuthDecision::Allowed
        );
        assert_eq!(
            h.authorize(&c, Some(&header("prom", "s3cret"))),
            AuthDecision::Allowed,
            "cached"
        );
        assert_eq!(
            h.authorize(&c, Some(&header("prom", "wrong"))),
            AuthDecision::Denied
        );
        assert_eq!(
            h.authorize(&c, Some(&header("other", "s3cret"))),
            AuthDecision::Denied
        );
        assert_eq!(h.authorize(&c, None), AuthDecision::Denied);
        assert_eq!(
            h.authorize(&c, Some(&http::HeaderValue::from_static("Bearer x"))),
            AuthDecision::Denied
        );
        assert_eq!(
            h.authorize(&c, Some(&http::HeaderValue::from_static("Basic %%%"))),
            AuthDecision::Denied
        );
    }

    #[test]
    fn bad_files_name_the_key_and_never_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "basic_auth_users:\n  prom: plaintext-password\n",
                "basic_auth_users.prom",
            ),
            (
                "tls_server_config:\n  cert_file: /nope.crt\n  key_file: /nope.key\n",
                "tls_server_config.cert_file",
            ),
            (
                "tls_server_config:\n  key_file: /nope.key\n",
                "tls_server_config",
            ),
            (
                "tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: Maybe\n",
                "tls_server_config.cert_file",
            ),
            (
                "basic_auth_user:\n  x: y\n",
                "\"basic_auth_user\" is not a known key here",
            ),
            (
                "basic_auth_users: plaintext-password\n",
                "basic_auth_users: must be a mapping",
            ),
            (
                "basic_auth_users:\n  prom: [plaintext-password]\n",
                "prom: must be text",
            ),
        ];
        for (text, want) in cases {
            let p = write(dir.path(), "web.yml", text);
            let e = WebConfig::load(&p).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
            assert!(e.contains("web.yml") && e.contains("fix:"), "{e}");
            assert!(!e.contains("plaintext-password"), "{e}");
        }
    }
}
