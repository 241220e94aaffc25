//! containerd's registry hosts directories: `<config_path>/<host>/hosts.toml`.
//!
//! Mirrors containerd 2.x `core/remotes/docker/config/hosts.go` (differences from 1.6/1.7 are
//! named where they matter):
//! - `hostDirFromRoots` / `HostDirFromRoot` / `hostPaths`: for each root of `config_path`
//!   (`:`-separated, as the CRI plugin splits it), the first of `<root>/host_port_`,
//!   `<root>/host:port`, `<root>/_default` that exists.
//! - `loadHostDir`: `hosts.toml`, or Docker's certificate files (`*.crt`, `*.cert` + `*.key`)
//!   when the file is missing, empty, or cannot be decoded (logged by containerd, which then
//!   behaves as if the file were not there: reported here as a warning).
//! - `parseHostsFile` / `getSortedHosts` / `parseHostConfig`: `[host."…"]` tables in file order,
//!   then the root table as the last host (`server`, default: the upstream).
//! - `ConfigureHosts`: the default upstream (`docker.io` → `registry-1.docker.io`; loopback
//!   hosts over HTTPS without verification, falling back to HTTP on ports other than 80 and
//!   443), per-host TLS (`ca` added to the system pool, `client` pairs, `skip_verify`),
//!   `dial_timeout`, and the HTTP fallback of an `http://` host that has TLS settings.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{Capabilities, Endpoint, EndpointPlan, Scheme};
use crate::config::{ClientCertificate, TlsSettings, io_words};
use crate::probe::is_localhost;

/// containerd's CRI default `config_path` on Linux when neither `config_path` nor the
/// deprecated mirrors are set (2.x `plugins/cri/images/plugin.go`).
pub const DEFAULT_CONFIG_PATH: &str = "/etc/containerd/certs.d:/etc/docker/certs.d";

/// The hosts directories of `node.containerd.config_path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostsDirs {
    pub roots: Vec<PathBuf>,
}

impl HostsDirs {
    /// `config_path` split as Go's `filepath.SplitList` splits it (empty parts dropped).
    pub fn new(config_path: &str) -> Self {
        HostsDirs {
            roots: config_path
                .split(':')
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect(),
        }
    }

    /// Whether any root exists (used to detect a containerd node).
    pub fn any_exists(&self) -> bool {
        self.roots.iter().any(|r| r.is_dir())
    }

    /// containerd `hostDirFromRoots`: the directory configuring `host` (the reference's
    /// registry, e.g. `docker.io`, `localhost:5000`).
    ///
    /// # Errors
    /// When a candidate exists but cannot be examined (containerd fails the pull).
    pub fn host_dir(&self, host: &str) -> Result<Option<PathBuf>, String> {
        for root in &self.roots {
            for p in host_paths(root, host) {
                match std::fs::metadata(&p) {
                    Ok(_) => return Ok(Some(p)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(format!(
                            "containerd cannot examine {}: {}",
                            p.display(),
                            io_words(&e)
                        ));
                    }
                }
            }
        }
        Ok(None)
    }

    /// The endpoints containerd would ask for an image of `host`, in order.
    pub fn plan(&self, host: &str) -> EndpointPlan {
        let mut plan = EndpointPlan::default();
        let hosts = match self.host_dir(host) {
            Err(e) => {
                plan.error = Some(e);
                return plan;
            }
            Ok(None) => None,
            Ok(Some(dir)) => {
                plan.from_files = true;
                Some(load_host_dir(&dir, &mut plan.warnings))
            }
        };
        configure_hosts(host, hosts, &mut plan);
        plan
    }
}

/// containerd `hostDirectory`: `host:port` → `host_port_`.
fn host_directory(host: &str) -> String {
    match host.rfind(':') {
        Some(i) if i > 0 => format!("{}_{}_", &host[..i], &host[i + 1..]),
        _ => host.to_owned(),
    }
}

/// containerd `hostPaths` (unix).
fn host_paths(root: &Path, host: &str) -> Vec<PathBuf> {
    let mut paths = Vec::with_capacity(3);
    let ch = host_directory(host);
    if ch != host {
        paths.push(root.join(ch));
    }
    paths.push(root.join(host));
    paths.push(root.join("_default"));
    paths
}

/// `hostConfig`: one host as written, before defaults.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct HostConfig {
    /// Empty for the root table without `server`.
    scheme: String,
    host: String,
    path: String,
    capabilities: Option<Capabilities>,
    ca: Vec<PathBuf>,
    /// (certificate, key); the key `None` when it is in the certificate file.
    client: Vec<(PathBuf, Option<PathBuf>)>,
    skip_verify: Option<bool>,
    headers: Vec<(String, String)>,
    dial_timeout: Option<Duration>,
    /// For messages: the file and table.
    source: String,
}

/// containerd `loadHostDir`, with the decode error it logs as a warning.
fn load_host_dir(dir: &Path, warnings: &mut Vec<String>) -> Vec<HostConfig> {
    let file = dir.join("hosts.toml");
    match std::fs::read(&file) {
        Ok(b) if !b.is_empty() => match parse_hosts_file(dir, &file, &b) {
            Ok(hosts) => return hosts,
            Err(e) => warnings.push(format!(
                "containerd cannot use {}: {e}; it ignores the file and pulls as if it were not there{}",
                file.display(),
                cert_files_note(dir)
            )),
        },
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warnings.push(format!(
            "containerd cannot read {}: {}",
            file.display(),
            io_words(&e)
        )),
    }
    load_cert_files(dir)
}

fn cert_files_note(dir: &Path) -> String {
    let certs = load_cert_files(dir);
    if certs[0].ca.is_empty() && certs[0].client.is_empty() {
        String::new()
    } else {
        format!(
            " (using only the certificate files of {} as Docker's certs.d layout)",
            dir.display()
        )
    }
}

/// containerd `loadCertFiles`: Docker's certs.d layout, one default host.
fn load_cert_files(dir: &Path) -> Vec<HostConfig> {
    let mut host = HostConfig {
        source: format!("{} (Docker certificate files)", dir.display()),
        ..HostConfig::default()
    };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    // Go's os.ReadDir returns entries sorted by name.
    names.sort();
    for name in names {
        if name.ends_with(".crt") {
            host.ca.push(dir.join(&name));
        }
        if let Some(stem) = name.strip_suffix(".cert") {
            let key = dir.join(format!("{stem}.key"));
            host.client
                .push((dir.join(&name), key.exists().then_some(key)));
        }
    }
    vec![host]
}

/// A problem with a hosts.toml, with the line it is on when known.
#[derive(Debug)]
pub(crate) struct ParseProblem {
    line: Option<usize>,
    message: String,
}

impl std::fmt::Display for ParseProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line of the table header `[host."name"]` (or of the root table: 1).
fn table_line(text: &str, host: Option<&str>) -> Option<usize> {
    let host = host?;
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.starts_with('[')
                && !l.starts_with("[[")
                && l.contains("host")
                && (l.contains(&format!("\"{host}\"")) || l.contains(&format!("'{host}'")))
        })
        .map(|i| i + 1)
}

/// containerd `parseHostsFile`.
pub(crate) fn parse_hosts_file(
    dir: &Path,
    file: &Path,
    bytes: &[u8],
) -> Result<Vec<HostConfig>, ParseProblem> {
    let text = std::str::from_utf8(bytes).map_err(|e| ParseProblem {
        line: Some(line_of(
            &String::from_utf8_lossy(&bytes[..e.valid_up_to()]),
            usize::MAX,
        )),
        message: "the file is not UTF-8 text".to_owned(),
    })?;
    let table: toml::Table = toml::from_str(text).map_err(|e| ParseProblem {
        line: e.span().map(|s| line_of(text, s.start)),
        message: format!("TOML syntax error: {}", e.message().trim_end()),
    })?;
    let mut hosts = Vec::new();
    if !table.contains_key("host") {
        // 1.6/1.7 `getSortedHosts`: "invalid `host` tree" (containerd#10027); 2.x reads the
        // file. pullprobe follows the versions that ignore it, and says so.
        let line = text
            .lines()
            .position(|l| l.trim_start().starts_with("server"))
            .map(|i| i + 1);
        return Err(ParseProblem {
            line,
            message: "the file has no [host.\"…\"] table, and containerd 1.6 and 1.7 reject such a file \
                      (\"invalid `host` tree\", containerd#10027; containerd 2.x would use its server) — \
                      add the server as a [host.\"…\"] table to be read by every version"
                .to_owned(),
        });
    }
    if let Some(h) = table.get("host") {
        let toml::Value::Table(h) = h else {
            return Err(ParseProblem {
                line: None,
                message: "`host` must be a table of `[host.\"URL\"]` tables".to_owned(),
            });
        };
        // `getSortedHosts`: file order (the toml crate keeps it).
        for (name, value) in h {
            let line = table_line(text, Some(name));
            let toml::Value::Table(t) = value else {
                return Err(ParseProblem {
                    line,
                    message: format!("host.{name:?} must be a table"),
                });
            };
            let source = format!(
                "{} [host.{name:?}]{}",
                file.display(),
                line.map(|l| format!(" (line {l})")).unwrap_or_default()
            );
            hosts.push(parse_host_config(name, dir, t, source).map_err(|message| {
                ParseProblem {
                    line,
                    message: format!("[host.{name:?}]: {message}"),
                }
            })?);
        }
    }
    let server = match table.get("server") {
        None => String::new(),
        Some(toml::Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(ParseProblem {
                line: None,
                message: "`server` must be a string".to_owned(),
            });
        }
    };
    let source = if server.is_empty() {
        format!("{} (root table)", file.display())
    } else {
        format!("{} server", file.display())
    };
    hosts.push(
        parse_host_config(&server, dir, &table, source).map_err(|message| ParseProblem {
            line: None,
            message,
        })?,
    );
    Ok(hosts)
}

fn string_list(value: &toml::Value, key: &str) -> Result<Vec<String>, String> {
    match value {
        toml::Value::Array(a) => a
            .iter()
            .map(|v| match v {
                toml::Value::String(s) => Ok(s.clone()),
                _ => Err(format!("`{key}` must list strings")),
            })
            .collect(),
        _ => Err(format!("`{key}` must be a list of strings")),
    }
}

/// Go's `filepath.Join(base, p)` unless `p` is absolute (`makeAbsPath`).
fn abs_path(p: &str, base: &Path) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_owned()
    } else {
        base.join(p)
    }
}

/// containerd `parseHostConfig` for one table (`server` empty for a root table without it).
fn parse_host_config(
    server: &str,
    dir: &Path,
    t: &toml::Table,
    source: String,
) -> Result<HostConfig, String> {
    let mut result = HostConfig {
        source,
        ..HostConfig::default()
    };
    let override_path = match t.get("override_path") {
        None => false,
        Some(toml::Value::Boolean(b)) => *b,
        Some(_) => return Err("`override_path` must be true or false".to_owned()),
    };
    if !server.is_empty() {
        let server = if server.starts_with("http") {
            server.to_owned()
        } else {
            format!("https://{server}")
        };
        let (scheme, host, path) = split_url(&server)
            .ok_or_else(|| format!("unable to parse server {server:?} as a URL"))?;
        result.scheme = scheme;
        result.host = host;
        result.path = if !path.is_empty() {
            let clean = go_path_clean(&path);
            if !clean.ends_with("/v2") && !override_path {
                format!("{clean}/v2")
            } else {
                clean
            }
        } else if !override_path {
            "/v2".to_owned()
        } else {
            String::new()
        };
    }
    result.skip_verify = match t.get("skip_verify") {
        None => None,
        Some(toml::Value::Boolean(b)) => Some(*b),
        Some(_) => return Err("`skip_verify` must be true or false".to_owned()),
    };
    if let Some(caps) = t.get("capabilities") {
        let list = string_list(caps, "capabilities")?;
        if !list.is_empty() {
            let mut c = Capabilities {
                pull: false,
                resolve: false,
                push: false,
            };
            for cap in list {
                match cap.to_ascii_lowercase().as_str() {
                    "pull" => c.pull = true,
                    "resolve" => c.resolve = true,
                    "push" => c.push = true,
                    // 2.x; 1.6/1.7 reject it as unknown.
                    "referrers" => {}
                    other => {
                        return Err(format!(
                            "unknown capability {other:?} (containerd knows pull, resolve, push, referrers)"
                        ));
                    }
                }
            }
            result.capabilities = Some(c);
        }
    }
    match t.get("ca") {
        None => {}
        Some(toml::Value::String(s)) => result.ca.push(abs_path(s, dir)),
        Some(v @ toml::Value::Array(_)) => {
            result.ca = string_list(v, "ca")?
                .iter()
                .map(|s| abs_path(s, dir))
                .collect();
        }
        Some(_) => return Err("`ca` must be a path or a list of paths".to_owned()),
    }
    match t.get("client") {
        None => {}
        Some(toml::Value::String(s)) => result.client.push((abs_path(s, dir), None)),
        Some(toml::Value::Array(items)) => {
            for item in items {
                match item {
                    toml::Value::String(s) => result.client.push((abs_path(s, dir), None)),
                    toml::Value::Array(_) => {
                        let pair = string_list(item, "client")?;
                        let [cert, key] = pair.as_slice() else {
                            return Err(
                                "a `client` pair must be [certificate file, key file]".to_owned()
                            );
                        };
                        result
                            .client
                            .push((abs_path(cert, dir), Some(abs_path(key, dir))));
                    }
                    _ => return Err("`client` must list paths or [cert, key] pairs".to_owned()),
                }
            }
        }
        Some(_) => {
            return Err(
                "`client` must be a path, a list of paths or of [cert, key] pairs".to_owned(),
            );
        }
    }
    match t.get("header") {
        None => {}
        Some(toml::Value::Table(h)) => {
            for (name, value) in h {
                match value {
                    toml::Value::String(s) => result.headers.push((name.clone(), s.clone())),
                    toml::Value::Array(_) => {
                        for s in string_list(value, &format!("header.{name}"))? {
                            result.headers.push((name.clone(), s));
                        }
                    }
                    _ => return Err(format!("header {name:?} must be a string or a list")),
                }
            }
        }
        Some(_) => return Err("`header` must be a table".to_owned()),
    }
    match t.get("dial_timeout") {
        None => {}
        Some(toml::Value::String(s)) if s.is_empty() => {}
        Some(toml::Value::String(s)) => {
            result.dial_timeout = Some(parse_go_duration(s).ok_or_else(|| {
                format!("dial_timeout {s:?} is not a Go duration (e.g. \"5s\", \"1m30s\")")
            })?);
        }
        Some(_) => return Err("`dial_timeout` must be a string such as \"5s\"".to_owned()),
    }
    Ok(result)
}

/// Go `url.Parse` for the parts containerd uses: scheme, `Host` and `Path` (query and
/// fragment dropped). `None` when there is no `://`.
fn split_url(s: &str) -> Option<(String, String, String)> {
    let (scheme, rest) = s.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return None;
    }
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if host.contains(['@', ' ']) || host.bytes().any(|b| b < 0x20) {
        return None;
    }
    Some((
        scheme.to_ascii_lowercase(),
        host.to_owned(),
        path.to_owned(),
    ))
}

/// Go `path.Clean`.
fn go_path_clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            x => out.push(x),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// Go `time.ParseDuration` (`super::parse_go_duration`) as a dial timeout: a negative one
/// means none, as zero does.
pub(crate) fn parse_go_duration(s: &str) -> Option<Duration> {
    super::parse_go_duration(s).map(|n| Duration::from_nanos(u64::try_from(n).unwrap_or(0)))
}

/// Go `x509.CertPool.AppendCertsFromPEM`: the certificates of the file; `None` when it holds
/// none (containerd: "unable to load CA cert").
fn pem_certificates(bytes: &[u8]) -> Option<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(bytes)
        .map_while(Result::ok)
        .filter(|c| x509_parser::parse_x509_certificate(c).is_ok())
        .collect();
    (!certs.is_empty()).then_some(certs)
}

/// containerd `updateTLSConfigFromHost` / Go `tls.X509KeyPair`: loads a client pair.
fn client_pair(cert: &Path, key: Option<&Path>) -> Result<ClientCertificate, String> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| {
            format!(
                "containerd cannot read the client certificate file {}: {}",
                p.display(),
                io_words(&e)
            )
        })
    };
    let cert_pem = read(cert)?;
    let key_pem = match key {
        Some(k) => read(k)?,
        None => cert_pem.clone(),
    };
    let key_name = key.unwrap_or(cert).display().to_string();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .map_while(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(format!(
            "failed to load X509 key pair: {} holds no PEM certificate",
            cert.display()
        ));
    }
    // Go's `X509KeyPair` parses the leaf (`x509.ParseCertificate`, which refuses trailing
    // data): a block that decodes but is not a certificate fails here, on the node, not in a
    // handshake later.
    if !matches!(x509_parser::parse_x509_certificate(&chain[0]), Ok(([], _))) {
        return Err(format!(
            "failed to load X509 key pair: the first certificate block of {} is not an X.509 \
             certificate (`openssl x509 -in {} -noout -subject` shows whether it holds one)",
            cert.display(),
            cert.display()
        ));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
        format!("failed to load X509 key pair: {key_name} holds no PEM private key")
    })?;
    ClientCertificate::new(chain, key_der).map_err(|why| {
        format!(
            "failed to load X509 key pair: the key in {key_name} {why} the certificate in {}",
            cert.display()
        )
    })
}

/// containerd `ConfigureHosts` for the reference host `ns` (2.x, CRI's empty default scheme).
fn configure_hosts(ns: &str, hosts: Option<Vec<HostConfig>>, plan: &mut EndpointPlan) {
    let mut hosts = hosts.unwrap_or_else(|| vec![HostConfig::default()]);
    if let Some(last) = hosts.last_mut()
        && last.host.is_empty()
    {
        if ns == "docker.io" {
            last.scheme = "https".to_owned();
            last.host = crate::reference::DOCKER_HUB_API_HOST.to_owned();
        } else if is_localhost(host_part(ns)) {
            last.host = ns.to_owned();
            let port = port_part(ns);
            last.scheme = if port.is_none() || port == Some("443") {
                "https"
            } else {
                "http"
            }
            .to_owned();
            if port != Some("80") {
                last.skip_verify = Some(true);
            }
        } else {
            last.host = ns.to_owned();
            last.scheme = "https".to_owned();
        }
        last.path = "/v2".to_owned();
        last.capabilities = Some(Capabilities::ALL);
        if last.source.ends_with("(root table)") {
            last.source = format!("{} (no server: the upstream)", last.source);
        }
    }
    let count = hosts.len();
    for (i, h) in hosts.into_iter().enumerate() {
        let explicit_tls = !h.ca.is_empty() || !h.client.is_empty() || h.skip_verify.is_some();
        let mut tls = TlsSettings {
            insecure_skip_verify: h.skip_verify.unwrap_or(false),
            configured: explicit_tls,
            ..TlsSettings::default()
        };
        for f in &h.ca {
            match std::fs::read(f) {
                Err(e) => {
                    plan.error = Some(format!(
                        "containerd cannot read the CA file {} named in {}: {}",
                        f.display(),
                        h.source,
                        io_words(&e)
                    ));
                    return;
                }
                Ok(b) => match pem_certificates(&b) {
                    Some(certs) => tls.extra_roots.extend(certs),
                    None => {
                        plan.error = Some(format!(
                            "containerd cannot load the CA file {} named in {}: it holds no PEM certificate \
                             (a DER file converts with `openssl x509 -inform der -in FILE -out FILE.pem`)",
                            f.display(),
                            h.source
                        ));
                        return;
                    }
                },
            }
        }
        if tls.ca_file.is_none() {
            tls.ca_file = h.ca.first().cloned();
        }
        for (cert, key) in &h.client {
            match client_pair(cert, key.as_deref()) {
                Ok(c) => tls.client_certificates.push(c),
                Err(e) => {
                    plan.error = Some(format!("{e} (named in {})", h.source));
                    return;
                }
            }
        }
        let mut scheme = if h.scheme == "http" {
            Scheme::Http
        } else {
            Scheme::Https
        };
        // "host will try HTTPS first since it is configured for HTTP with a TLS configuration".
        let mut http_fallback = false;
        if scheme == Scheme::Http && explicit_tls && port_part(&h.host) != Some("80") {
            scheme = Scheme::Https;
            http_fallback = true;
        }
        plan.endpoints.push(Endpoint {
            scheme,
            host: h.host,
            path: h.path,
            capabilities: h.capabilities.unwrap_or(Capabilities::ALL),
            tls: Arc::new(tls),
            headers: h.headers,
            dial_timeout: h.dial_timeout,
            http_fallback,
            upstream: i + 1 == count,
            source: (!h.source.is_empty()).then_some(h.source),
            repository: None,
            credentials: true,
            blocked: None,
            name: None,
        });
    }
}

/// The host of `host[:port]` (brackets kept for IPv6 literals, as `IsLocalhost` takes them).
fn host_part(authority: &str) -> &str {
    match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') && !authority[..i].ends_with(':') => {
            &authority[..i]
        }
        _ => authority,
    }
}

/// The port of `host:port`, Go's `net.SplitHostPort` for the cases containerd meets.
fn port_part(authority: &str) -> Option<&str> {
    if authority.starts_with('[') {
        return authority
            .rsplit_once("]:")
            .map(|(_, p)| p)
            .filter(|p| !p.is_empty());
    }
    match authority.matches(':').count() {
        1 => authority
            .rsplit_once(':')
            .map(|(_, p)| p)
            .filter(|p| !p.is_empty()),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
