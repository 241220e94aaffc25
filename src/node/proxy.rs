//! The proxy a pull on this node goes through, decided as containerd's Go HTTP transport decides.
//!
//! containerd's registry transport sets `Proxy: http.ProxyFromEnvironment`, which is
//! `golang.org/x/net/http/httpproxy` (`FromEnvironment().ProxyFunc()`). This module mirrors
//! that package (x/net@0ca694d, `http/httpproxy/proxy.go`) and the parts of Go's `net/url`
//! and `net/http` it relies on:
//!
//! - **Variables** (`FromEnvironment`, `getEnvAny`): `HTTP_PROXY`, then `http_proxy`; the same
//!   for `HTTPS_PROXY` and `NO_PROXY`; the first **non-empty** one wins (so `HTTP_PROXY=""` does
//!   not hide `http_proxy`). A non-empty `REQUEST_METHOD` marks a CGI process, in which
//!   `HTTP_PROXY` is refused for `http://` requests with Go's error.
//! - **Values** (`parseProxy`): Go's `url.Parse`; when that fails or gives no scheme or no host,
//!   `url.Parse("http://" + value)` is tried and wins if it parses. Any scheme is kept
//!   (`socks5h://`, even `foo://`). A value neither parse accepts is **ignored** — `config.init`
//!   drops the error and the transport connects directly — so pullprobe does the same and says
//!   so in a [`Warning`].
//! - **Choice** (`proxyForURL`): `https://` requests use `HTTPS_PROXY` only (never `HTTP_PROXY`),
//!   `http://` requests `HTTP_PROXY` only, other schemes none.
//! - **Exceptions** (`useProxy`, `config.init`, the matchers): `localhost` and loopback
//!   addresses are never proxied. `NO_PROXY` is a comma list of `*` (nothing is proxied), IP
//!   prefixes in CIDR notation, IP addresses with an optional port, and domain names with an
//!   optional port (`example.com` matches itself and its subdomains, `.example.com` and
//!   `*.example.com` only subdomains). Entries are lowercased and trimmed; malformed ones are
//!   skipped. A domain entry never matches an IP address (CVE-2025-22870 fix).
//!
//! The variables come from pullprobe's own environment ([`ProxyEnv::from_process`]) or from
//! a file ([`ProxyEnv::from_file`], the `node.containerd.proxy_env_file` setting) in either of
//! the two forms systemd gives containerd its environment in:
//!
//! - a **unit drop-in** (`/etc/systemd/system/containerd.service.d/http-proxy.conf`): read as
//!   systemd's `config_parse` reads unit files, with `Environment=` parsed as
//!   `config_parse_environ` does (words split and unquoted by `extract_first_word` with
//!   C escapes, `%` specifiers, invalid assignments skipped, later assignments win, an empty
//!   `Environment=` resets). `EnvironmentFile=` is not followed (a [`Warning`] says so).
//! - an **environment file** as `EnvironmentFile=` reads it (`load_env_file`,
//!   `src/basic/env-file.c`): `KEY=VALUE` lines, `#`/`;` comments, single and double quotes,
//!   backslash escapes and continuations. systemd knows no `export` prefix: `export KEY=v` has
//!   the invalid name `export KEY` and is ignored, as systemd ignores it.
//!
//! A file is a drop-in when one of its lines starts with `[` (opens a section).

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use url::Url;

use crate::credentials::Secret;
use crate::outcome::Reason;

/// Where the proxy variables came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvSource {
    /// pullprobe's own process environment (or variables given by the caller).
    Process,
    /// A systemd drop-in or environment file (`node.containerd.proxy_env_file`).
    File(PathBuf),
}

impl fmt::Display for EnvSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvSource::Process => f.write_str("pullprobe's environment"),
            EnvSource::File(p) => write!(f, "containerd's environment ({})", p.display()),
        }
    }
}

/// Something the node's configuration does that a person should know about: a setting that
/// is ignored, or read differently from what it looks like. Never contains a password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The file, when the settings came from one.
    pub path: Option<PathBuf>,
    /// The line in that file, when the warning is about one line.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.path, self.line) {
            (Some(p), Some(l)) => write!(f, "{}:{l}: {}", p.display(), self.message),
            (Some(p), None) => write!(f, "{}: {}", p.display(), self.message),
            _ => f.write_str(&self.message),
        }
    }
}

/// A proxy environment file that cannot be used at all.
#[derive(Debug, thiserror::Error)]
pub enum ProxyEnvError {
    #[error("cannot read the proxy environment file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}: not UTF-8 text; node.containerd.proxy_env_file must name a systemd drop-in or environment file",
        path.display()
    )]
    NotText { path: PathBuf },
    /// A unit-file error for which systemd refuses the whole file (so the unit does not load).
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// Why a request cannot use the proxy the environment names. Go returns these as errors, so
/// containerd fails the request rather than connecting directly.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// `proxyForURL`'s CGI rule: `REQUEST_METHOD` is set and an `http://` request would use
    /// `HTTP_PROXY` (golang.org/s/cgihttpproxy).
    #[error(
        "refusing to use HTTP_PROXY value in CGI environment; see golang.org/s/cgihttpproxy (REQUEST_METHOD is set in {from}: unset it for containerd, or reach the registry over https)"
    )]
    CgiHttpProxy { from: EnvSource },
    /// The proxy URL's port is not one Go can dial (`net.Dial`: "invalid port").
    #[error(
        "the proxy {proxy} (from {origin}) has the port {port:?}, which Go cannot dial (invalid port): fix the port in {origin}"
    )]
    InvalidPort {
        proxy: String,
        /// The variable and where it was set ([`ProxyUrl::origin`]).
        origin: String,
        port: String,
    },
    /// A proxy URL of a scheme with no default port and no port of its own: Go dials port 0.
    #[error(
        "the proxy {proxy} (from {origin}) has no port and Go knows no default port for {scheme}:// (it dials port 0 and fails): add a port in {origin}, or use http://, https://, socks5:// or socks5h://"
    )]
    NoPort {
        proxy: String,
        /// The variable and where it was set ([`ProxyUrl::origin`]).
        origin: String,
        scheme: String,
    },
}

impl ProxyError {
    /// The closed reason a probe reports for this error.
    pub fn reason(&self) -> Reason {
        Reason::ConnectError
    }
}

/// How Go's transport talks to a proxy (`Transport.dialConn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    /// `http://`: plain TCP to the proxy, then `CONNECT` (https targets) or absolute-form
    /// requests (http targets).
    Http,
    /// `https://`: TLS to the proxy (server name = the proxy host), then as [`ProxyKind::Http`].
    Https,
    /// `socks5://`: a SOCKS5 `CONNECT` to the target's host **name** (Go's transport does not
    /// resolve it locally, unlike curl's `socks5://`).
    Socks5,
    /// `socks5h://`: the same as [`ProxyKind::Socks5`] in Go.
    Socks5h,
    /// Any other scheme: `dialConn`'s switch treats it as a plain-TCP HTTP proxy.
    Other,
}

/// The user info of a proxy URL.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ProxyUser {
    username: String,
    password: Option<Secret>,
}

/// A proxy URL as Go parsed it. `Display` never shows the password
/// (`http://user:***@proxy:3128`); `Debug` shows it as `<redacted>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyUrl {
    scheme: String,
    user: Option<ProxyUser>,
    /// `URL.Hostname()` after `idnaASCII`: no brackets, no port.
    hostname: String,
    /// `URL.Port()`: the digits after the last colon, or empty.
    port: String,
    /// The variable it came from, e.g. `HTTPS_PROXY` or `https_proxy`.
    variable: &'static str,
    /// Where that variable was set.
    source: EnvSource,
}

impl ProxyUrl {
    /// The scheme, lowercased as Go's `url.Parse` does.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    pub fn kind(&self) -> ProxyKind {
        match self.scheme.as_str() {
            "http" => ProxyKind::Http,
            "https" => ProxyKind::Https,
            "socks5" => ProxyKind::Socks5,
            "socks5h" => ProxyKind::Socks5h,
            _ => ProxyKind::Other,
        }
    }

    /// The host to dial (and the TLS server name of an `https://` proxy): Go's
    /// `idnaASCIIFromURL`, without brackets or port. Not resolved.
    pub fn host(&self) -> &str {
        &self.hostname
    }

    /// The port Go dials: `canonicalAddr` — the URL's port, else 80 (`http`), 443 (`https`),
    /// 1080 (`socks5`, `socks5h`).
    ///
    /// # Errors
    /// [`ProxyError::InvalidPort`] above 65535; [`ProxyError::NoPort`] for another scheme
    /// without a port.
    pub fn port(&self) -> Result<u16, ProxyError> {
        if self.port.is_empty() {
            return match self.scheme.as_str() {
                "http" => Ok(80),
                "https" => Ok(443),
                "socks5" | "socks5h" => Ok(1080),
                _ => Err(ProxyError::NoPort {
                    proxy: self.to_string(),
                    origin: self.origin(),
                    scheme: self.scheme.clone(),
                }),
            };
        }
        self.port
            .parse::<u16>()
            .map_err(|_| ProxyError::InvalidPort {
                proxy: self.to_string(),
                origin: self.origin(),
                port: self.port.clone(),
            })
    }

    /// The variable this URL came from (`HTTPS_PROXY`, `http_proxy`, …), for messages.
    pub fn variable(&self) -> &'static str {
        self.variable
    }

    /// Where the variable was set: containerd's environment file, or pullprobe's own.
    pub fn source(&self) -> &EnvSource {
        &self.source
    }

    /// The variable and where it was set, for messages: "HTTPS_PROXY in containerd's
    /// environment (/etc/systemd/system/containerd.service.d/http-proxy.conf)".
    pub fn origin(&self) -> String {
        format!("{} in {}", self.variable, self.source)
    }

    /// Whether the URL has user info (`user[:password]@`); Go then sends credentials.
    pub fn has_credentials(&self) -> bool {
        self.user.is_some()
    }

    /// The user name, when the URL has user info.
    pub fn username(&self) -> Option<&str> {
        self.user.as_ref().map(|u| u.username.as_str())
    }

    /// The password, when the URL has one (`user:password@`).
    pub fn password(&self) -> Option<&Secret> {
        self.user.as_ref().and_then(|u| u.password.as_ref())
    }

    /// The `Proxy-Authorization` value Go sends (`connectMethod.proxyAuth`): `Basic` of
    /// `username:password` whenever the URL has user info — even `http://@proxy` sends
    /// `Basic Og==` (measured with ctr 1.6.20).
    pub fn authorization(&self) -> Option<Secret> {
        let u = self.user.as_ref()?;
        let pass = u.password.as_ref().map_or("", |p| p.expose());
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{pass}", u.username));
        Some(Secret::new(format!("Basic {token}")))
    }

    /// `host:port` as written in messages (brackets around IPv6), or the host alone when the
    /// port is unusable.
    fn authority(&self) -> String {
        let host = if self.hostname.contains(':') {
            format!("[{}]", self.hostname)
        } else {
            self.hostname.clone()
        };
        if self.port.is_empty() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme)?;
        if let Some(u) = &self.user {
            // `Userinfo.String`: the user name escaped as `encodeUserPassword` does.
            for c in u.username.chars() {
                match c {
                    '@' | '/' | '?' | ':' | '%' | ' ' => write!(f, "%{:02X}", c as u32)?,
                    c => write!(f, "{c}")?,
                }
            }
            if u.password.is_some() {
                f.write_str(":***")?;
            }
            f.write_str("@")?;
        }
        f.write_str(&self.authority())
    }
}

/// One variable as found.
#[derive(Clone, PartialEq, Eq)]
struct Var {
    name: &'static str,
    value: String,
    line: Option<usize>,
}

/// The value may hold a proxy password: `Debug` shows it with the user info redacted.
impl fmt::Debug for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Var")
            .field("name", &self.name)
            .field("value", &redact_raw(&self.value))
            .field("line", &self.line)
            .finish()
    }
}

/// The proxy settings of containerd's transport: the three variables, the CGI flag, and the
/// parsed proxies and `NO_PROXY` matchers (`httpproxy.config`).
#[derive(Clone, Debug)]
pub struct ProxyEnv {
    source: EnvSource,
    http_var: Option<Var>,
    https_var: Option<Var>,
    no_proxy_var: Option<Var>,
    cgi: bool,
    http: Option<ProxyUrl>,
    https: Option<ProxyUrl>,
    no_proxy: NoProxy,
    warnings: Vec<Warning>,
}

impl ProxyEnv {
    /// The proxy settings of pullprobe's own process (`httpproxy.FromEnvironment`). Variables
    /// whose value is not UTF-8 are skipped with a warning.
    pub fn from_process() -> Self {
        let mut skipped = Vec::new();
        let vars: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| match (k.into_string(), v.into_string()) {
                (Ok(k), Ok(v)) => Some((k, v)),
                (Ok(k), Err(_)) => {
                    skipped.push(k);
                    None
                }
                _ => None,
            })
            .collect();
        let mut env = Self::from_vars(vars);
        for k in skipped.into_iter().filter(|k| is_proxy_name(k)) {
            env.warnings.push(Warning {
                path: None,
                line: None,
                message: format!("{k} is not UTF-8 text; pullprobe ignores it"),
            });
        }
        env
    }

    /// The proxy settings of the given variables (name, value), as if they were the process
    /// environment. For a repeated name the last value counts.
    pub fn from_vars<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let assignments: Vec<Assignment> = vars
            .into_iter()
            .map(|(k, v)| Assignment {
                key: k.as_ref().to_owned(),
                value: v.as_ref().to_owned(),
                line: 0,
            })
            .collect();
        Self::build(EnvSource::Process, &assignments, Vec::new())
    }

    /// Reads `path`, a systemd drop-in or environment file (see the module docs).
    ///
    /// # Errors
    /// The file cannot be read, is not UTF-8, or is a unit file systemd refuses as a whole.
    pub fn from_file(path: &Path) -> Result<Self, ProxyEnvError> {
        let bytes = std::fs::read(path).map_err(|source| ProxyEnvError::Read {
            path: path.to_owned(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|_| ProxyEnvError::NotText {
            path: path.to_owned(),
        })?;
        Self::parse_file(path, &text)
    }

    /// [`ProxyEnv::from_file`] on text already read; `path` names it in messages.
    ///
    /// # Errors
    /// A unit file systemd refuses as a whole (an unclosed or unsafe section header).
    pub fn parse_file(path: &Path, text: &str) -> Result<Self, ProxyEnvError> {
        let mut warnings = Vec::new();
        let assignments = if looks_like_unit(text) {
            systemd::parse_unit(path, text, &mut warnings)?
        } else {
            systemd::parse_env_file(path, text, &mut warnings)
        };
        Ok(Self::build(
            EnvSource::File(path.to_owned()),
            &assignments,
            warnings,
        ))
    }

    fn build(source: EnvSource, assignments: &[Assignment], mut warnings: Vec<Warning>) -> Self {
        let path = match &source {
            EnvSource::File(p) => Some(p.clone()),
            EnvSource::Process => None,
        };
        let lookup = |name: &'static str| -> Option<Var> {
            assignments
                .iter()
                .rev()
                .find(|a| a.key == name)
                .map(|a| Var {
                    name,
                    value: a.value.clone(),
                    line: (a.line > 0).then_some(a.line),
                })
        };
        // getEnvAny: the first non-empty of the upper- and lowercase name.
        let mut any = |upper: &'static str, lower: &'static str| -> Option<Var> {
            let (u, l) = (lookup(upper), lookup(lower));
            let nonempty = |v: &Option<Var>| v.as_ref().is_some_and(|v| !v.value.is_empty());
            if nonempty(&u)
                && nonempty(&l)
                && u.as_ref().map(|v| &v.value) != l.as_ref().map(|v| &v.value)
            {
                warnings.push(Warning {
                    path: path.clone(),
                    line: l.as_ref().and_then(|v| v.line),
                    message: format!(
                        "both {upper} and {lower} are set, to different values: Go (containerd) uses {upper} and ignores {lower} (curl and others prefer {lower}); keep one"
                    ),
                });
            }
            if nonempty(&u) {
                u
            } else if nonempty(&l) {
                l
            } else {
                None
            }
        };
        let http_var = any("HTTP_PROXY", "http_proxy");
        let https_var = any("HTTPS_PROXY", "https_proxy");
        let no_proxy_var = any("NO_PROXY", "no_proxy");
        let cgi = lookup("REQUEST_METHOD").is_some_and(|v| !v.value.is_empty());
        let mut parse = |var: &Option<Var>| -> Option<ProxyUrl> {
            let var = var.as_ref()?;
            match parse_proxy(&var.value, var.name) {
                Ok((mut url, notes)) => {
                    url.source = source.clone();
                    for message in notes {
                        warnings.push(Warning {
                            path: path.clone(),
                            line: var.line,
                            message,
                        });
                    }
                    Some(url)
                }
                Err(message) => {
                    warnings.push(Warning {
                        path: path.clone(),
                        line: var.line,
                        message,
                    });
                    None
                }
            }
        };
        let http = parse(&http_var);
        let https = parse(&https_var);
        let no_proxy = NoProxy::parse(no_proxy_var.as_ref().map_or("", |v| v.value.as_str()));
        if cgi && http.is_some() {
            warnings.push(Warning {
                path: path.clone(),
                line: lookup("REQUEST_METHOD").and_then(|v| v.line),
                message: "REQUEST_METHOD is set, so Go treats the process as a CGI handler and refuses HTTP_PROXY for http:// registries".to_owned(),
            });
        }
        ProxyEnv {
            source,
            http_var,
            https_var,
            no_proxy_var,
            cgi,
            http,
            https,
            no_proxy,
            warnings,
        }
    }

    /// The proxy containerd's transport uses for `url`, exactly as Go's `ProxyFunc` decides;
    /// `None` means a direct connection.
    ///
    /// `url` is already normalised by the `url` crate (lowercase host, punycode), which Go
    /// does not do for the request host; `LOCALHOST` is therefore treated as `localhost`.
    ///
    /// # Errors
    /// [`ProxyError::CgiHttpProxy`] for an `http://` URL when `HTTP_PROXY` applies in a CGI
    /// environment. Go checks this before `NO_PROXY`, so it fails even for excepted hosts.
    pub fn proxy_for(&self, url: &Url) -> Result<Option<ProxyUrl>, ProxyError> {
        let proxy = match url.scheme() {
            "https" => self.https.as_ref(),
            "http" => {
                if self.http.is_some() && self.cgi {
                    return Err(ProxyError::CgiHttpProxy {
                        from: self.source.clone(),
                    });
                }
                self.http.as_ref()
            }
            _ => None,
        };
        let Some(proxy) = proxy else {
            return Ok(None);
        };
        let host = url
            .host_str()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = match url.port() {
            Some(p) => p.to_string(),
            None => match url.scheme() {
                "http" => "80".to_owned(),
                "https" => "443".to_owned(),
                "socks5" => "1080".to_owned(),
                _ => String::new(),
            },
        };
        if !self.no_proxy.use_proxy(host, &port) {
            return Ok(None);
        }
        Ok(Some(proxy.clone()))
    }

    /// The proxy for `http://` requests (`HTTP_PROXY`), when set and parseable.
    pub fn http_proxy(&self) -> Option<&ProxyUrl> {
        self.http.as_ref()
    }

    /// The proxy for `https://` requests (`HTTPS_PROXY`), when set and parseable.
    pub fn https_proxy(&self) -> Option<&ProxyUrl> {
        self.https.as_ref()
    }

    /// The `NO_PROXY` value in effect, as written.
    pub fn no_proxy(&self) -> Option<&str> {
        self.no_proxy_var.as_ref().map(|v| v.value.as_str())
    }

    /// Whether `REQUEST_METHOD` is set (Go's CGI rule).
    pub fn is_cgi(&self) -> bool {
        self.cgi
    }

    /// Whether neither proxy variable is set (every request goes direct).
    pub fn is_empty(&self) -> bool {
        self.http_var.is_none() && self.https_var.is_none()
    }

    /// Where the variables came from.
    pub fn source(&self) -> &EnvSource {
        &self.source
    }

    /// What the person should know about how the settings are read.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }
}

fn is_proxy_name(k: &str) -> bool {
    matches!(
        k,
        "HTTP_PROXY" | "http_proxy" | "HTTPS_PROXY" | "https_proxy" | "NO_PROXY" | "no_proxy"
    )
}

/// A proxy value for messages: the user info is replaced by `***`, since an unparseable
/// value may still hold a password.
fn redact_raw(value: &str) -> String {
    match value.rfind('@') {
        Some(at) => {
            let start = value.find("://").map_or(0, |i| i + 3);
            if start <= at {
                format!("{}***@{}", &value[..start], &value[at + 1..])
            } else {
                format!("***@{}", &value[at + 1..])
            }
        }
        None => value.to_owned(),
    }
}

/// `httpproxy.parseProxy` plus the `ProxyUrl` Go's transport would use, and notes for the
/// person when Go reads the value differently from how it looks. `Err` is the warning for a
/// value Go ignores.
fn parse_proxy(value: &str, variable: &'static str) -> Result<(ProxyUrl, Vec<String>), String> {
    let shown = redact_raw(value);
    let first = go_url::parse(value);
    let mut notes = Vec::new();
    let usable = matches!(&first, Ok(u) if !u.scheme.is_empty() && !u.host.is_empty());
    let url = if usable {
        first.expect("checked")
    } else {
        match go_url::parse(&format!("http://{value}")) {
            Ok(u) => {
                if value.contains("://") {
                    let why = match &first {
                        Err(e) => format!("Go cannot parse it ({e})"),
                        Ok(_) => "it has no host".to_owned(),
                    };
                    notes.push(format!(
                        "{variable}={shown}: {why}, so Go reads it as http://{shown}, a proxy on host {:?}; percent-encode '#', '/', '?' and '@' in the user name and password",
                        u.hostname()
                    ));
                }
                u
            }
            Err(_) => match first {
                Err(e) => {
                    return Err(format!(
                        "{variable}={shown} is not a proxy URL Go can parse ({e}): containerd ignores it and connects directly; write it as http://host:port"
                    ));
                }
                Ok(u) => u,
            },
        }
    };
    let hostname = idna_ascii(&url.hostname());
    let port = url.port();
    let proxy = ProxyUrl {
        scheme: url.scheme.clone(),
        user: url.user.map(|(username, password)| ProxyUser {
            username,
            password: password.map(Secret::new),
        }),
        hostname,
        port,
        variable,
        source: EnvSource::Process,
    };
    match proxy.kind() {
        ProxyKind::Other => notes.push(format!(
            "{variable} has the scheme {}://, which Go's transport speaks to as a plain HTTP proxy",
            proxy.scheme
        )),
        ProxyKind::Socks5h => notes.push(format!(
            "{variable} uses socks5h://, which Go reads as a proxy URL only since golang.org/x/net of 2023-09 (Go 1.22): containerd builds with an older Go read it as a host named \"socks5h\""
        )),
        _ => {}
    }
    if proxy.hostname.is_empty() {
        notes.push(format!(
            "{variable}={shown} has no host: Go dials the local machine"
        ));
    }
    Ok((proxy, notes))
}

/// `idnaASCII`: ASCII strings unchanged, others through IDNA (`idna.Lookup.ToASCII`, here the
/// URL standard's domain-to-ASCII); kept as they are if that fails, as Go keeps them.
fn idna_ascii(s: &str) -> String {
    if s.is_ascii() {
        return s.to_owned();
    }
    match url::Host::parse(s) {
        Ok(url::Host::Domain(d)) => d,
        _ => s.to_owned(),
    }
}

/// The parsed `NO_PROXY` (`config.ipMatchers`, `config.domainMatchers`).
#[derive(Clone, Debug, Default)]
struct NoProxy {
    ip: Vec<Matcher>,
    domain: Vec<Matcher>,
}

#[derive(Clone, Debug)]
enum Matcher {
    /// `allMatch`, from `*`.
    All,
    /// `cidrMatch`.
    Cidr { net: IpAddr, bits: u8 },
    /// `ipMatch`: an address and an optional port.
    Ip { ip: IpAddr, port: String },
    /// `domainMatch`: `host` always starts with `.`; `match_host` also matches `host[1..]`.
    Domain {
        host: String,
        port: String,
        match_host: bool,
    },
}

impl NoProxy {
    /// `config.init`'s loop over `NO_PROXY`.
    fn parse(value: &str) -> Self {
        let mut np = NoProxy::default();
        for p in value.split(',') {
            let p = p.trim_matches(GO_SPACE).to_lowercase();
            if p.is_empty() {
                continue;
            }
            if p == "*" {
                return NoProxy {
                    ip: vec![Matcher::All],
                    domain: vec![Matcher::All],
                };
            }
            if let Some((net, bits)) = go_net::parse_cidr(&p) {
                np.ip.push(Matcher::Cidr { net, bits });
                continue;
            }
            let (mut phost, pport) = match go_net::split_host_port(&p) {
                Some((h, port)) => {
                    if h.is_empty() {
                        continue;
                    }
                    let h = if h.starts_with('[') && h.ends_with(']') && h.len() >= 2 {
                        h[1..h.len() - 1].to_owned()
                    } else {
                        h
                    };
                    (h, port)
                }
                None => (p.clone(), String::new()),
            };
            if let Some(ip) = go_net::parse_ip(&phost) {
                np.ip.push(Matcher::Ip { ip, port: pport });
                continue;
            }
            if phost.is_empty() {
                continue;
            }
            if let Some(rest) = phost.strip_prefix("*.") {
                phost = format!(".{rest}");
            }
            let match_host = !phost.starts_with('.');
            if match_host {
                phost = format!(".{phost}");
            }
            let host = if phost.is_ascii() {
                phost
            } else {
                // The leading dot is not a label; convert the rest.
                format!(".{}", idna_ascii(&phost[1..]))
            };
            np.domain.push(Matcher::Domain {
                host,
                port: pport,
                match_host,
            });
        }
        np
    }

    /// `config.useProxy(canonicalAddr(url))`: whether a request to `host:port` goes through
    /// the proxy. `host` has no brackets.
    fn use_proxy(&self, host: &str, port: &str) -> bool {
        if host == "localhost" {
            return false;
        }
        let ip = go_net::parse_addr(host);
        if ip.is_some_and(|ip| go_net::is_loopback(&ip)) {
            return false;
        }
        let addr = host.trim_matches(GO_SPACE).to_lowercase();
        if let Some(ip) = ip
            && self.ip.iter().any(|m| m.matches(&addr, port, Some(ip)))
        {
            return false;
        }
        !self.domain.iter().any(|m| m.matches(&addr, port, ip))
    }
}

impl Matcher {
    fn matches(&self, host: &str, port: &str, ip: Option<IpAddr>) -> bool {
        match self {
            Matcher::All => true,
            Matcher::Cidr { net, bits } => {
                ip.is_some_and(|ip| go_net::cidr_contains(*net, *bits, ip))
            }
            Matcher::Ip { ip: m, port: p } => {
                ip.is_some_and(|ip| go_net::ip_equal(*m, ip)) && (p.is_empty() || p == port)
            }
            Matcher::Domain {
                host: m,
                port: p,
                match_host,
            } => {
                if ip.is_some() {
                    return false;
                }
                (host.ends_with(m.as_str()) || (*match_host && host == &m[1..]))
                    && (p.is_empty() || p == port)
            }
        }
    }
}

/// Go's `strings.TrimSpace` set (ASCII part; Go also trims Unicode spaces).
const GO_SPACE: &[char] = &[' ', '\t', '\n', '\r', '\x0b', '\x0c'];

/// Whether a file is a unit file: a line (not a comment) opens a section. In an environment
/// file such a line would be a key without `=`, which systemd ignores.
fn looks_like_unit(text: &str) -> bool {
    text.lines()
        .map(|l| l.trim_start_matches('\u{feff}').trim())
        .any(|l| l.starts_with('['))
}

/// One `KEY=value` the file sets, with the line it was set on (0 for the process environment).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Assignment {
    key: String,
    value: String,
    line: usize,
}

/// The parts of Go's `net` package `httpproxy` uses.
mod go_net {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    /// `net.SplitHostPort`; `None` for its errors.
    pub(super) fn split_host_port(hostport: &str) -> Option<(String, String)> {
        let i = hostport.rfind(':')?;
        let (host, j, k);
        if hostport.starts_with('[') {
            let end = hostport.find(']')?;
            if end + 1 == hostport.len() || end + 1 != i {
                return None;
            }
            host = &hostport[1..end];
            j = 1;
            k = end + 1;
        } else {
            host = &hostport[..i];
            if host.contains(':') {
                return None;
            }
            j = 0;
            k = 0;
        }
        if hostport[j..].contains('[') || hostport[k..].contains(']') {
            return None;
        }
        Some((host.to_owned(), hostport[i + 1..].to_owned()))
    }

    /// `net.ParseIP`: dotted IPv4 (no leading zeros) or IPv6, no zone.
    pub(super) fn parse_ip(s: &str) -> Option<IpAddr> {
        s.parse::<IpAddr>().ok()
    }

    /// `netip.ParseAddr`: like [`parse_ip`], but an IPv6 address may carry a zone
    /// (`fe80::1%eth0`), which is dropped.
    pub(super) fn parse_addr(s: &str) -> Option<IpAddr> {
        match s.split_once('%') {
            Some((a, zone)) if !zone.is_empty() => a.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
            Some(_) => None,
            None => parse_ip(s),
        }
    }

    /// `net.ParseCIDR`: `addr/bits` with a decimal prefix length no longer than the address.
    pub(super) fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
        let (addr, mask) = s.split_once('/')?;
        let ip = addr.parse::<IpAddr>().ok()?;
        if mask.is_empty() || !mask.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let bits: u32 = mask.parse().ok()?;
        (bits <= max).then_some((ip, bits as u8))
    }

    /// `net.IP.To4`: an IPv4 address, or the IPv4 inside an IPv4-mapped IPv6 address.
    fn to4(ip: IpAddr) -> Option<Ipv4Addr> {
        match ip {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(v6) => v6.to_ipv4_mapped(),
        }
    }

    /// `net.IP.IsLoopback`: 127/8 (also IPv4-mapped) or `::1`.
    pub(super) fn is_loopback(ip: &IpAddr) -> bool {
        match to4(*ip) {
            Some(v4) => v4.octets()[0] == 127,
            None => ip.is_loopback(),
        }
    }

    /// `net.IP.Equal`: IPv4 equals its IPv4-mapped form.
    pub(super) fn ip_equal(a: IpAddr, b: IpAddr) -> bool {
        match (to4(a), to4(b)) {
            (Some(x), Some(y)) => x == y,
            (None, None) => a == b,
            _ => false,
        }
    }

    /// `net.IPNet.Contains` for a network from `ParseCIDR`: an IPv4 network contains IPv4
    /// (and IPv4-mapped) addresses, an IPv6 network only IPv6 ones that are not IPv4-mapped.
    pub(super) fn cidr_contains(net: IpAddr, bits: u8, ip: IpAddr) -> bool {
        let (n, a, len): (u128, u128, u32) = match (net, to4(ip)) {
            (IpAddr::V4(n), Some(a)) => (u32::from(n).into(), u32::from(a).into(), 32),
            (IpAddr::V6(n), None) => match ip {
                IpAddr::V6(a) => (u128::from(n), u128::from(a), 128),
                IpAddr::V4(_) => return false,
            },
            // An IPv6 network whose address is IPv4-mapped is treated as IPv4 by Go; rare.
            (IpAddr::V6(n), Some(a)) => match n.to_ipv4_mapped() {
                Some(n4) if bits >= 96 => {
                    return cidr_contains(IpAddr::V4(n4), bits - 96, IpAddr::V4(a));
                }
                _ => return false,
            },
            (IpAddr::V4(_), None) => return false,
        };
        let bits = u32::from(bits);
        if bits == 0 {
            return true;
        }
        let shift = len - bits;
        (n >> shift) == (a >> shift)
    }
}

/// The parts of Go's `net/url` (`url.Parse`, `parseAuthority`, `parseHost`, `unescape`,
/// `URL.Hostname`, `URL.Port`) that decide what a proxy value means.
mod go_url {
    #[derive(Debug, Clone)]
    pub(super) struct GoUrl {
        pub(super) scheme: String,
        /// `(username, password)` when the URL has user info.
        pub(super) user: Option<(String, Option<String>)>,
        /// `URL.Host`: unescaped host, with brackets and `:port` as written.
        pub(super) host: String,
    }

    impl GoUrl {
        /// `URL.Hostname` (`splitHostPort`).
        pub(super) fn hostname(&self) -> String {
            split_host_port(&self.host).0
        }

        /// `URL.Port`.
        pub(super) fn port(&self) -> String {
            split_host_port(&self.host).1
        }
    }

    fn split_host_port(hostport: &str) -> (String, String) {
        let mut host = hostport;
        let mut port = "";
        if let Some(colon) = host.rfind(':')
            && valid_optional_port(&host[colon..])
        {
            port = &hostport[colon + 1..];
            host = &hostport[..colon];
        }
        if host.starts_with('[') && host.ends_with(']') && host.len() >= 2 {
            host = &host[1..host.len() - 1];
        }
        (host.to_owned(), port.to_owned())
    }

    /// `validOptionalPort`: empty, or `:` and digits.
    fn valid_optional_port(port: &str) -> bool {
        port.is_empty() || (port.starts_with(':') && port[1..].bytes().all(|b| b.is_ascii_digit()))
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Mode {
        Path,
        Host,
        Zone,
        UserPassword,
        Fragment,
    }

    /// `shouldEscape` for the modes used here.
    fn should_escape(c: u8, mode: Mode) -> bool {
        if c.is_ascii_alphanumeric() {
            return false;
        }
        // The sub-delimiters Go leaves unescaped in hosts: the same table kubelet's URL
        // parsing uses (`credentials::host_byte_allowed`).
        if matches!(mode, Mode::Host | Mode::Zone) && crate::credentials::host_byte_allowed(c) {
            return false;
        }
        match c {
            b'-' | b'_' | b'.' | b'~' => return false,
            b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'?' | b'@' => match mode {
                Mode::Path => return c == b'?',
                Mode::UserPassword => return matches!(c, b'@' | b'/' | b'?' | b':'),
                Mode::Fragment => return false,
                _ => {}
            },
            _ => {}
        }
        if mode == Mode::Fragment && matches!(c, b'!' | b'(' | b')' | b'*') {
            return false;
        }
        true
    }

    fn unhex(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => 0,
        }
    }

    /// `unescape`; the error is Go's message.
    fn unescape(s: &str, mode: Mode) -> Result<String, String> {
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'%' => {
                    if i + 2 >= b.len()
                        || !b[i + 1].is_ascii_hexdigit()
                        || !b[i + 2].is_ascii_hexdigit()
                    {
                        let end = (i + 3).min(b.len());
                        return Err(format!(
                            "invalid URL escape {:?}",
                            String::from_utf8_lossy(&b[i..end])
                        ));
                    }
                    let esc = &s[i..i + 3];
                    if mode == Mode::Host && unhex(b[i + 1]) < 8 && esc != "%25" {
                        return Err(format!("invalid URL escape {esc:?}"));
                    }
                    if mode == Mode::Zone {
                        let v = unhex(b[i + 1]) << 4 | unhex(b[i + 2]);
                        if esc != "%25" && v != b' ' && should_escape(v, Mode::Host) {
                            return Err(format!("invalid URL escape {esc:?}"));
                        }
                    }
                    i += 3;
                }
                c => {
                    if matches!(mode, Mode::Host | Mode::Zone) && c < 0x80 && should_escape(c, mode)
                    {
                        return Err(format!(
                            "invalid character {:?} in host name",
                            char::from(c).to_string()
                        ));
                    }
                    i += 1;
                }
            }
        }
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                out.push(unhex(b[i + 1]) << 4 | unhex(b[i + 2]));
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// `getScheme`.
    fn get_scheme(raw: &str) -> Result<(&str, &str), String> {
        for (i, c) in raw.bytes().enumerate() {
            match c {
                b'a'..=b'z' | b'A'..=b'Z' => {}
                b'0'..=b'9' | b'+' | b'-' | b'.' => {
                    if i == 0 {
                        return Ok(("", raw));
                    }
                }
                b':' => {
                    if i == 0 {
                        return Err("missing protocol scheme".to_owned());
                    }
                    return Ok((&raw[..i], &raw[i + 1..]));
                }
                _ => return Ok(("", raw)),
            }
        }
        Ok(("", raw))
    }

    /// `validUserinfo`.
    fn valid_userinfo(s: &str) -> bool {
        s.chars().all(|r| {
            r.is_ascii_alphanumeric()
                || matches!(
                    r,
                    '-' | '.'
                        | '_'
                        | ':'
                        | '~'
                        | '!'
                        | '$'
                        | '&'
                        | '\''
                        | '('
                        | ')'
                        | '*'
                        | '+'
                        | ','
                        | ';'
                        | '='
                        | '%'
                        | '@'
                )
        })
    }

    /// `parseHost`.
    fn parse_host(host: &str) -> Result<String, String> {
        if host.starts_with('[') {
            let Some(i) = host.rfind(']') else {
                return Err("missing ']' in host".to_owned());
            };
            let colon_port = &host[i + 1..];
            if !valid_optional_port(colon_port) {
                return Err(format!("invalid port {colon_port:?} after host"));
            }
            if let Some(zone) = host[..i].find("%25") {
                let h1 = unescape(&host[..zone], Mode::Host)?;
                let h2 = unescape(&host[zone..i], Mode::Zone)?;
                let h3 = unescape(&host[i..], Mode::Host)?;
                return Ok(h1 + &h2 + &h3);
            }
        } else if let Some(i) = host.rfind(':') {
            let colon_port = &host[i..];
            if !valid_optional_port(colon_port) {
                return Err(format!("invalid port {colon_port:?} after host"));
            }
        }
        unescape(host, Mode::Host)
    }

    /// `parseAuthority`.
    #[allow(clippy::type_complexity)]
    fn parse_authority(
        authority: &str,
    ) -> Result<(Option<(String, Option<String>)>, String), String> {
        let at = authority.rfind('@');
        let host = parse_host(match at {
            Some(i) => &authority[i + 1..],
            None => authority,
        })?;
        let Some(i) = at else {
            return Ok((None, host));
        };
        let userinfo = &authority[..i];
        if !valid_userinfo(userinfo) {
            return Err("net/url: invalid userinfo".to_owned());
        }
        let user = match userinfo.split_once(':') {
            None => (unescape(userinfo, Mode::UserPassword)?, None),
            Some((u, p)) => (
                unescape(u, Mode::UserPassword)?,
                Some(unescape(p, Mode::UserPassword)?),
            ),
        };
        Ok((Some(user), host))
    }

    /// `url.Parse`: the fields a proxy URL needs. The error is Go's inner message.
    pub(super) fn parse(raw: &str) -> Result<GoUrl, String> {
        let (u, frag) = match raw.split_once('#') {
            Some((u, f)) => (u, Some(f)),
            None => (raw, None),
        };
        let url = parse_no_frag(u)?;
        if let Some(f) = frag {
            unescape(f, Mode::Fragment)?;
        }
        Ok(url)
    }

    fn parse_no_frag(raw: &str) -> Result<GoUrl, String> {
        if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err("net/url: invalid control character in URL".to_owned());
        }
        let mut url = GoUrl {
            scheme: String::new(),
            user: None,
            host: String::new(),
        };
        if raw == "*" {
            return Ok(url);
        }
        let (scheme, rest) = get_scheme(raw)?;
        url.scheme = scheme.to_ascii_lowercase();
        let rest = if rest.ends_with('?') && rest.matches('?').count() == 1 {
            &rest[..rest.len() - 1]
        } else {
            rest.split_once('?').map_or(rest, |(r, _)| r)
        };
        if !rest.starts_with('/') {
            if !url.scheme.is_empty() {
                // A rootless path: opaque.
                return Ok(url);
            }
            let segment = rest.split_once('/').map_or(rest, |(s, _)| s);
            if segment.contains(':') {
                return Err("first path segment in URL cannot contain colon".to_owned());
            }
        }
        let mut path = rest;
        if (!url.scheme.is_empty() || !rest.starts_with("///")) && rest.starts_with("//") {
            let authority = &rest[2..];
            let (authority, p) = match authority.find('/') {
                Some(i) => (&authority[..i], &authority[i..]),
                None => (authority, ""),
            };
            let (user, host) = parse_authority(authority)?;
            url.user = user;
            url.host = host;
            path = p;
        }
        unescape(path, Mode::Path)?;
        Ok(url)
    }
}

/// systemd's readers of unit files and environment files.
mod systemd {
    use std::path::Path;

    use super::{Assignment, ProxyEnvError, Warning};

    /// `WHITESPACE` in systemd's `string-util.h`.
    const WHITESPACE: &[char] = &[' ', '\t', '\n', '\r'];

    fn warn(path: &Path, line: usize, warnings: &mut Vec<Warning>, message: String) {
        warnings.push(Warning {
            path: Some(path.to_owned()),
            line: Some(line),
            message,
        });
    }

    /// `read_line`'s line ends: `\n`, `\r`, `\r\n` and NUL. Returns (line number, text).
    fn lines(text: &str) -> Vec<(usize, &str)> {
        let mut out = Vec::new();
        let b = text.as_bytes();
        let (mut start, mut i, mut n) = (0, 0, 1);
        while i < b.len() {
            match b[i] {
                b'\n' | b'\0' => {
                    out.push((n, &text[start..i]));
                    i += 1;
                    start = i;
                    n += 1;
                }
                b'\r' => {
                    out.push((n, &text[start..i]));
                    i += if b.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
                    start = i;
                    n += 1;
                }
                _ => i += 1,
            }
        }
        if start < b.len() {
            out.push((n, &text[start..]));
        }
        out
    }

    /// `config_parse` + `parse_line` for a service unit (or drop-in), keeping what
    /// `Environment=` in `[Service]` sets.
    pub(super) fn parse_unit(
        path: &Path,
        text: &str,
        warnings: &mut Vec<Warning>,
    ) -> Result<Vec<Assignment>, ProxyEnvError> {
        let mut env: Vec<Assignment> = Vec::new();
        let mut section: Option<String> = None;
        let mut section_ignored = false;
        let mut continuation: Option<String> = None;
        let all = lines(text);
        let last = all.last().map_or(0, |l| l.0);
        for (idx, (n, raw)) in all.iter().enumerate() {
            let l = raw.trim_start_matches(WHITESPACE);
            if l.starts_with('#') || l.starts_with(';') {
                continue;
            }
            let l = if idx == 0 {
                raw.strip_prefix('\u{feff}').unwrap_or(raw)
            } else {
                raw
            };
            let mut p = match continuation.take() {
                Some(mut c) => {
                    c.push_str(l);
                    c
                }
                None => l.to_owned(),
            };
            // A trailing unescaped backslash continues the line (replaced by a space).
            let mut escaped = false;
            for ch in p.chars() {
                escaped = if escaped { false } else { ch == '\\' };
            }
            if escaped {
                p.pop();
                p.push(' ');
                continuation = Some(p);
                continue;
            }
            parse_line(
                path,
                *n,
                &p,
                &mut section,
                &mut section_ignored,
                &mut env,
                warnings,
            )?;
        }
        if let Some(c) = continuation {
            parse_line(
                path,
                last + 1,
                &c,
                &mut section,
                &mut section_ignored,
                &mut env,
                warnings,
            )?;
        }
        Ok(env)
    }

    /// `string_is_safe`: no control characters, quotes or backslashes.
    fn string_is_safe(s: &str) -> bool {
        !s.chars()
            .any(|c| (c as u32) < 0x20 || c == '\x7f' || matches!(c, '"' | '\'' | '\\'))
    }

    fn parse_line(
        path: &Path,
        n: usize,
        l: &str,
        section: &mut Option<String>,
        section_ignored: &mut bool,
        env: &mut Vec<Assignment>,
        warnings: &mut Vec<Warning>,
    ) -> Result<(), ProxyEnvError> {
        let l = l.trim_matches(WHITESPACE);
        if l.is_empty() {
            return Ok(());
        }
        if l.starts_with('[') {
            let syntax = |message: String| ProxyEnvError::Syntax {
                path: path.to_owned(),
                line: n,
                message,
            };
            if !l.ends_with(']') || l.len() < 2 {
                return Err(syntax(format!(
                    "invalid section header {l:?}: systemd refuses the whole file, so containerd's unit does not load; close the bracket, e.g. [Service]"
                )));
            }
            let name = &l[1..l.len() - 1];
            if !string_is_safe(name) {
                return Err(syntax(format!(
                    "bad characters in section header {l:?}: systemd refuses the whole file; write [Service]"
                )));
            }
            if matches!(name, "Unit" | "Service" | "Install") {
                *section = Some(name.to_owned());
                *section_ignored = false;
            } else {
                if !name.starts_with("X-") {
                    warn(
                        path,
                        n,
                        warnings,
                        format!(
                            "unknown section [{name}]: systemd ignores it and everything in it; proxy variables belong in [Service]"
                        ),
                    );
                }
                *section = None;
                *section_ignored = true;
            }
            return Ok(());
        }
        let Some(sec) = section.as_deref() else {
            if !*section_ignored {
                warn(
                    path,
                    n,
                    warnings,
                    "assignment outside of a section: systemd ignores it; put it under [Service]"
                        .to_owned(),
                );
            }
            return Ok(());
        };
        let Some((key, value)) = l.split_once('=') else {
            warn(
                path,
                n,
                warnings,
                "missing '=': systemd ignores this line".to_owned(),
            );
            return Ok(());
        };
        if key.is_empty() {
            warn(
                path,
                n,
                warnings,
                "missing key name before '=': systemd ignores this line".to_owned(),
            );
            return Ok(());
        }
        if sec != "Service" {
            return Ok(());
        }
        let (key, value) = (key.trim_matches(WHITESPACE), value.trim_matches(WHITESPACE));
        match key {
            "Environment" => environ(path, n, value, env, warnings),
            "EnvironmentFile" => warn(
                path,
                n,
                warnings,
                format!(
                    "EnvironmentFile={value} is not followed: point node.containerd.proxy_env_file at that file if the proxy variables are there"
                ),
            ),
            "UnsetEnvironment" | "PassEnvironment" => warn(
                path,
                n,
                warnings,
                format!(
                    "{key}= is not applied by pullprobe: check `systemctl show containerd -p Environment` for the variables containerd really gets"
                ),
            ),
            _ => {}
        }
        Ok(())
    }

    /// `config_parse_environ`.
    fn environ(
        path: &Path,
        n: usize,
        rvalue: &str,
        env: &mut Vec<Assignment>,
        warnings: &mut Vec<Warning>,
    ) {
        if rvalue.is_empty() {
            // An empty assignment resets the list.
            env.clear();
            return;
        }
        let mut rest = rvalue;
        loop {
            let word = match extract_first_word(&mut rest) {
                Ok(Some(w)) => w,
                Ok(None) => return,
                Err(why) => {
                    warn(
                        path,
                        n,
                        warnings,
                        format!("systemd ignores the rest of this Environment= line: {why}"),
                    );
                    return;
                }
            };
            let resolved = match specifiers(&word) {
                Ok(s) => s,
                Err(why) => {
                    warn(path, n, warnings, why);
                    continue;
                }
            };
            let Ok(resolved) = String::from_utf8(resolved) else {
                warn(
                    path,
                    n,
                    warnings,
                    "an escape in this Environment= word makes it invalid UTF-8: systemd ignores the assignment".to_owned(),
                );
                continue;
            };
            match resolved.split_once('=') {
                Some((k, v)) if env_name_is_valid(k) => replace(env, k, v, n),
                _ => {
                    let name = resolved
                        .split_once('=')
                        .map_or(resolved.as_str(), |(k, _)| k);
                    warn(
                        path,
                        n,
                        warnings,
                        format!(
                            "invalid environment assignment (name {name:?}): systemd ignores it; write Environment=\"NAME=value\""
                        ),
                    );
                }
            }
        }
    }

    fn replace(env: &mut Vec<Assignment>, key: &str, value: &str, line: usize) {
        env.retain(|a| a.key != key);
        env.push(Assignment {
            key: key.to_owned(),
            value: value.to_owned(),
            line,
        });
    }

    /// `env_name_is_valid`: letters, digits and `_`, not starting with a digit.
    fn env_name_is_valid(k: &str) -> bool {
        !k.is_empty()
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    }

    /// `extract_first_word(p, &word, NULL, EXTRACT_CUNESCAPE|EXTRACT_UNQUOTE)`: the next
    /// whitespace-separated word with quotes removed and C escapes decoded, as bytes.
    fn extract_first_word(p: &mut &str) -> Result<Option<Vec<u8>>, String> {
        let s = p.trim_start_matches(WHITESPACE);
        if s.is_empty() {
            *p = "";
            return Ok(None);
        }
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut quote: Option<u8> = None;
        let mut i = 0;
        loop {
            let Some(&c) = b.get(i) else {
                if quote.is_some() {
                    return Err("a quote is not closed".to_owned());
                }
                *p = "";
                return Ok(Some(out));
            };
            if c == b'\\' {
                let (bytes, used) = cunescape_one(&b[i + 1..])?;
                out.extend_from_slice(&bytes);
                i += 1 + used;
                continue;
            }
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => out.push(c),
                None if c == b'\'' || c == b'"' => quote = Some(c),
                None if WHITESPACE.contains(&char::from(c)) => {
                    *p = &s[i..];
                    return Ok(Some(out));
                }
                None => out.push(c),
            }
            i += 1;
        }
    }

    /// `cunescape_one`: the escape after a backslash; returns its bytes and how many input
    /// bytes it used.
    fn cunescape_one(b: &[u8]) -> Result<(Vec<u8>, usize), String> {
        let hex = |n: usize| -> Option<u32> {
            let digits = b.get(1..=n)?;
            let s = std::str::from_utf8(digits).ok()?;
            if !s.bytes().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            u32::from_str_radix(s, 16).ok()
        };
        let bad = || {
            Err(format!(
                "unknown escape \\{} (systemd knows \\a \\b \\f \\n \\r \\t \\v \\\\ \\\" \\' \\s \\xHH \\uHHHH \\UHHHHHHHH \\OOO)",
                b.first()
                    .map_or(String::new(), |c| char::from(*c).to_string())
            ))
        };
        let simple = |c: u8| Ok((vec![c], 1));
        let Some(&c) = b.first() else {
            return Err("a trailing backslash".to_owned());
        };
        match c {
            b'a' => simple(0x07),
            b'b' => simple(0x08),
            b'f' => simple(0x0c),
            b'n' => simple(b'\n'),
            b'r' => simple(b'\r'),
            b't' => simple(b'\t'),
            b'v' => simple(0x0b),
            b'\\' | b'"' | b'\'' => simple(c),
            b's' => simple(b' '),
            b'x' => match hex(2) {
                Some(v) if v != 0 => Ok((vec![v as u8], 3)),
                _ => bad(),
            },
            b'u' | b'U' => {
                let n = if c == b'u' { 4 } else { 8 };
                match hex(n).filter(|v| *v != 0).and_then(char::from_u32) {
                    Some(ch) => Ok((ch.to_string().into_bytes(), n + 1)),
                    None => bad(),
                }
            }
            b'0'..=b'7' => {
                let d = b
                    .get(..3)
                    .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
                match d {
                    Some(d) => {
                        let v = u32::from(d[0] - b'0') << 6
                            | u32::from(d[1] - b'0') << 3
                            | u32::from(d[2] - b'0');
                        if v == 0 || v > 255 {
                            bad()
                        } else {
                            Ok((vec![v as u8], 3))
                        }
                    }
                    None => bad(),
                }
            }
            _ => bad(),
        }
    }

    /// `unit_env_printf` / `specifier_printf`: `%%` is `%`; `%` before a character that is
    /// not a letter or digit stays; a digit is an unknown specifier (systemd ignores the
    /// assignment); a letter is a specifier pullprobe cannot expand.
    fn specifiers(word: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(word.len());
        let mut i = 0;
        while i < word.len() {
            if word[i] != b'%' {
                out.push(word[i]);
                i += 1;
                continue;
            }
            match word.get(i + 1) {
                None => out.push(b'%'),
                Some(b'%') => out.push(b'%'),
                Some(c) if c.is_ascii_digit() => {
                    return Err(format!(
                        "%{} is not a systemd specifier, so systemd ignores this assignment: write %% for a literal % (a percent-encoded password such as p%40ss must be written p%%40ss)",
                        char::from(*c)
                    ));
                }
                Some(c) if c.is_ascii_alphabetic() => {
                    return Err(format!(
                        "%{} is a systemd specifier that pullprobe does not expand, so it ignores this assignment: write %% for a literal %, or check `systemctl show containerd -p Environment`",
                        char::from(*c)
                    ));
                }
                Some(c) => {
                    out.push(b'%');
                    out.push(*c);
                }
            }
            i += 2;
        }
        Ok(out)
    }

    /// `load_env_file` (`parse_env_file_internal`'s state machine), then
    /// `strv_env_clean_with_callback`: invalid names are skipped with a warning.
    pub(super) fn parse_env_file(
        path: &Path,
        text: &str,
        warnings: &mut Vec<Warning>,
    ) -> Vec<Assignment> {
        #[derive(Clone, Copy, PartialEq)]
        enum St {
            PreKey,
            Key,
            PreValue,
            Value,
            ValueEscape,
            SingleQuote,
            DoubleQuote,
            DoubleQuoteEscape,
            Comment,
            CommentEscape,
        }
        let mut env: Vec<Assignment> = Vec::new();
        let mut st = St::PreKey;
        let (mut key, mut value) = (String::new(), String::new());
        let mut last_key_ws: Option<usize> = None;
        let mut last_value_ws: Option<usize> = None;
        let (mut line, mut key_line) = (1usize, 1usize);
        let is_ws = |c: char| WHITESPACE.contains(&c);
        let is_nl = |c: char| c == '\n' || c == '\r';
        let mut push = |key: &mut String,
                        value: &mut String,
                        last_key_ws: Option<usize>,
                        key_line: usize,
                        env: &mut Vec<Assignment>| {
            if let Some(w) = last_key_ws {
                key.truncate(w);
            }
            if env_name_is_valid(key) {
                replace(env, key, value, key_line);
            } else if let Some(name) = key.strip_prefix("export") {
                warn(
                    path,
                    key_line,
                    warnings,
                    format!(
                        "\"export{name}\" is not a variable name for systemd's EnvironmentFile=, which ignores the line: remove \"export\""
                    ),
                );
            } else {
                warn(
                    path,
                    key_line,
                    warnings,
                    format!(
                        "{key:?} is not a valid variable name: systemd ignores the line (names are letters, digits and _)"
                    ),
                );
            }
            key.clear();
            value.clear();
        };
        for c in text.chars() {
            match st {
                St::PreKey => {
                    if c == '#' || c == ';' {
                        st = St::Comment;
                    } else if !is_ws(c) {
                        st = St::Key;
                        last_key_ws = None;
                        key_line = line;
                        key.push(c);
                    }
                }
                St::Key => {
                    if is_nl(c) {
                        st = St::PreKey;
                        key.clear();
                    } else if c == '=' {
                        st = St::PreValue;
                        last_value_ws = None;
                    } else {
                        if !is_ws(c) {
                            last_key_ws = None;
                        } else if last_key_ws.is_none() {
                            last_key_ws = Some(key.len());
                        }
                        key.push(c);
                    }
                }
                St::PreValue => {
                    if is_nl(c) {
                        st = St::PreKey;
                        push(&mut key, &mut value, last_key_ws, key_line, &mut env);
                    } else if c == '\'' {
                        st = St::SingleQuote;
                    } else if c == '"' {
                        st = St::DoubleQuote;
                    } else if c == '\\' {
                        st = St::ValueEscape;
                    } else if !is_ws(c) {
                        st = St::Value;
                        value.push(c);
                    }
                }
                St::Value => {
                    if is_nl(c) {
                        st = St::PreKey;
                        if let Some(w) = last_value_ws {
                            value.truncate(w);
                        }
                        push(&mut key, &mut value, last_key_ws, key_line, &mut env);
                    } else if c == '\\' {
                        st = St::ValueEscape;
                        last_value_ws = None;
                    } else {
                        if !is_ws(c) {
                            last_value_ws = None;
                        } else if last_value_ws.is_none() {
                            last_value_ws = Some(value.len());
                        }
                        value.push(c);
                    }
                }
                St::ValueEscape => {
                    st = St::Value;
                    // An escaped newline is eaten entirely.
                    if !is_nl(c) {
                        value.push(c);
                    }
                }
                St::SingleQuote => {
                    if c == '\'' {
                        st = St::PreValue;
                    } else {
                        value.push(c);
                    }
                }
                St::DoubleQuote => {
                    if c == '"' {
                        st = St::PreValue;
                    } else if c == '\\' {
                        st = St::DoubleQuoteEscape;
                    } else {
                        value.push(c);
                    }
                }
                St::DoubleQuoteEscape => {
                    st = St::DoubleQuote;
                    if matches!(c, '"' | '\\' | '`' | '$') {
                        value.push(c);
                    } else if c != '\n' {
                        value.push('\\');
                        value.push(c);
                    }
                }
                St::Comment => {
                    if c == '\\' {
                        st = St::CommentEscape;
                    } else if is_nl(c) {
                        st = St::PreKey;
                    }
                }
                St::CommentEscape => {
                    st = if is_nl(c) { St::PreKey } else { St::Comment };
                }
            }
            if c == '\n' {
                line += 1;
            }
        }
        match st {
            St::PreValue
            | St::Value
            | St::ValueEscape
            | St::SingleQuote
            | St::DoubleQuote
            | St::DoubleQuoteEscape => {
                if st == St::Value
                    && let Some(w) = last_value_ws
                {
                    value.truncate(w);
                }
                push(&mut key, &mut value, last_key_ws, key_line, &mut env);
            }
            _ => {}
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `httpproxy.Config` of Go's tests.
    #[derive(Default, Clone, Copy)]
    struct Cfg {
        http: &'static str,
        https: &'static str,
        no: &'static str,
        cgi: bool,
    }

    fn env(c: Cfg) -> ProxyEnv {
        let mut vars = vec![
            ("HTTP_PROXY", c.http),
            ("HTTPS_PROXY", c.https),
            ("NO_PROXY", c.no),
        ];
        if c.cgi {
            vars.push(("REQUEST_METHOD", "GET"));
        }
        ProxyEnv::from_vars(vars)
    }

    fn shown(r: Result<Option<ProxyUrl>, ProxyError>) -> String {
        match r {
            Ok(Some(p)) => p.to_string(),
            Ok(None) => "<nil>".to_owned(),
            Err(e) => format!("error: {e}"),
        }
    }

    /// x/net `http/httpproxy/proxy_test.go` `proxyForURLTests`, every case whose request URL
    /// the URL standard can express (the zone-ID case is `use_proxy_ignores_zone_ids`).
    #[test]
    fn go_proxy_for_url_tests() {
        let c = |http, https, no| Cfg {
            http,
            https,
            no,
            cgi: false,
        };
        let table: &[(Cfg, &str, &str)] = &[
            (c("127.0.0.1:8080", "", ""), "", "http://127.0.0.1:8080"),
            (
                c("cache.corp.example.com:1234", "", ""),
                "",
                "http://cache.corp.example.com:1234",
            ),
            (
                c("cache.corp.example.com", "", ""),
                "",
                "http://cache.corp.example.com",
            ),
            // Single-label domain is recognised as a scheme by url.Parse.
            (c("localhost", "", ""), "", "http://localhost"),
            (
                c("https://cache.corp.example.com", "", ""),
                "",
                "https://cache.corp.example.com",
            ),
            (
                c("http://127.0.0.1:8080", "", ""),
                "",
                "http://127.0.0.1:8080",
            ),
            (
                c("https://127.0.0.1:8080", "", ""),
                "",
                "https://127.0.0.1:8080",
            ),
            (c("socks5://127.0.0.1", "", ""), "", "socks5://127.0.0.1"),
            // Preserve unknown schemes.
            (c("foo://host", "", ""), "", "foo://host"),
            // Don't use secure for http.
            (
                c("http.proxy.tld", "secure.proxy.tld", ""),
                "http://insecure.tld/",
                "http://http.proxy.tld",
            ),
            // Use secure for https.
            (
                c("http.proxy.tld", "secure.proxy.tld", ""),
                "https://secure.tld/",
                "http://secure.proxy.tld",
            ),
            (
                c("http.proxy.tld", "https://secure.proxy.tld", ""),
                "https://secure.tld/",
                "https://secure.proxy.tld",
            ),
            (c("http.proxy.tld", "", ""), "https://secure.tld/", "<nil>"),
            (c("http.proxy.tld", "", ""), "ftp://insecure.tld/", "<nil>"),
            (c("", "", ""), "", "<nil>"),
            (
                c("proxy", "", "example.com"),
                "http://example.com/",
                "<nil>",
            ),
            (
                c("proxy", "", ".example.com"),
                "http://example.com/",
                "http://proxy",
            ),
            (
                c("proxy", "", "ample.com"),
                "http://example.com/",
                "http://proxy",
            ),
            (
                c("proxy", "", "example.com"),
                "http://foo.example.com/",
                "<nil>",
            ),
            (
                c("proxy", "", ".foo.com"),
                "http://example.com/",
                "http://proxy",
            ),
            (c("proxy", "", ".示例.com"), "http://www.示例.com", "<nil>"),
            (
                c("proxy", "", "xn--fsq092h.com"),
                "http://www.示例.com",
                "<nil>",
            ),
            (
                c("proxy", "", "示例.com"),
                "http://www.xn--fsq092h.com",
                "<nil>",
            ),
        ];
        for (cfg, req, want) in table {
            let req = if req.is_empty() {
                "http://example.com"
            } else {
                req
            };
            let got = shown(env(*cfg).proxy_for(&Url::parse(req).unwrap()));
            assert_eq!(
                &got, want,
                "http_proxy={:?} https_proxy={:?} no_proxy={:?} req={req:?}",
                cfg.http, cfg.https, cfg.no
            );
        }
    }

    /// proxy_test.go, "Issue 16405": HTTP_PROXY is refused in a CGI environment; HTTPS_PROXY
    /// is still used there.
    #[test]
    fn go_cgi_refuses_http_proxy_only() {
        let e = env(Cfg {
            http: "http://10.1.2.3:8080",
            cgi: true,
            ..Cfg::default()
        });
        let err = e
            .proxy_for(&Url::parse("http://example.com").unwrap())
            .unwrap_err();
        assert!(err.to_string().starts_with(
            "refusing to use HTTP_PROXY value in CGI environment; see golang.org/s/cgihttpproxy"
        ));
        assert_eq!(err.reason(), Reason::ConnectError);
        let e = env(Cfg {
            https: "https://secure.proxy.tld",
            cgi: true,
            ..Cfg::default()
        });
        assert_eq!(
            shown(e.proxy_for(&Url::parse("https://secure.tld/").unwrap())),
            "https://secure.proxy.tld"
        );
    }

    const GO_NO_PROXY: &str = "foobar.com, .barbaz.net, *.wildcard.io, 192.168.1.1, 192.168.1.2:81, 192.168.1.3:80, 10.0.0.0/30, 2001:db8::52:0:1, [2001:db8::52:0:2]:443, [2001:db8::52:0:3]:80, 2002:db8:a::45/64";

    /// proxy_test.go `UseProxyTests` (`TestUseProxy`, `TestAllNoProxy`).
    #[test]
    fn go_use_proxy_tests() {
        let table = [
            ("localhost", false),
            ("127.0.0.1", false),
            ("127.0.0.2", false),
            ("[::1]", false),
            ("[::2]", true),
            ("192.168.1.1", false),
            ("192.168.1.2", true),
            ("192.168.1.3", false),
            ("192.168.1.4", true),
            ("10.0.0.2", false),
            ("[2001:db8::52:0:1]", false),
            ("[2001:db8::52:0:2]", true),
            ("[2001:db8::52:0:3]", false),
            ("[2002:db8:a::123]", false),
            ("[fe80::424b:c8be:1643:a1b6]", true),
            ("barbaz.net", true),
            ("www.barbaz.net", false),
            ("foobar.com", false),
            ("www.foobar.com", false),
            ("foofoobar.com", true),
            ("baz.com", true),
            ("localhost.net", true),
            ("local.localhost", true),
            ("barbarbaz.net", true),
            ("wildcard.io", true),
            ("nested.wildcard.io", false),
            ("awildcard.io", true),
        ];
        let np = NoProxy::parse(GO_NO_PROXY);
        let all = NoProxy::parse("*");
        for (host, want) in table {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            assert_eq!(np.use_proxy(bare, "80"), want, "useProxy({host})");
            assert!(!all.use_proxy(bare, "80"), "NO_PROXY=* useProxy({host})");
        }
    }

    /// proxy_test.go `TestInvalidNoProxy`: a malformed entry is skipped, not fatal.
    #[test]
    fn go_invalid_no_proxy() {
        assert!(NoProxy::parse(":1").use_proxy("example.com", "80"));
    }

    /// proxy_test.go's CVE-2025-22870 case: `[1000::%25.example.com]:123` is an IPv6 address
    /// with a zone, which a domain entry must not match.
    #[test]
    fn use_proxy_ignores_zone_ids() {
        let np = NoProxy::parse("example.com");
        assert!(np.use_proxy("1000::%.example.com", "123"));
    }

    /// proxy_test.go `TestFromEnvironment*`: uppercase first, lowercase when uppercase is unset
    /// or empty; REQUEST_METHOD makes it CGI.
    #[test]
    fn go_from_environment_precedence() {
        let e = ProxyEnv::from_vars([("http_proxy", "lower"), ("HTTP_PROXY", "")]);
        assert_eq!(e.http_proxy().unwrap().to_string(), "http://lower");
        assert!(!e.is_cgi());
        let e = ProxyEnv::from_vars([
            ("HTTPS_PROXY", "upper"),
            ("https_proxy", "lower"),
            ("NO_PROXY", "a"),
            ("no_proxy", "b"),
            ("REQUEST_METHOD", "PUT"),
        ]);
        assert_eq!(e.https_proxy().unwrap().to_string(), "http://upper");
        assert_eq!(e.no_proxy(), Some("a"));
        assert!(e.is_cgi());
        let w: Vec<String> = e.warnings().iter().map(ToString::to_string).collect();
        assert!(
            w.iter()
                .any(|w| w.contains("uses HTTPS_PROXY and ignores https_proxy")),
            "{w:?}"
        );
        assert!(
            ProxyEnv::from_vars([("REQUEST_METHOD", "")])
                .proxy_for(&Url::parse("http://x").unwrap())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn ports_are_go_canonical_addr() {
        let port = |v: &str| {
            ProxyEnv::from_vars([("HTTPS_PROXY", v)])
                .https_proxy()
                .unwrap()
                .port()
        };
        assert_eq!(port("proxy"), Ok(80));
        assert_eq!(port("https://proxy"), Ok(443));
        assert_eq!(port("socks5://proxy"), Ok(1080));
        assert_eq!(port("socks5h://proxy"), Ok(1080));
        assert_eq!(port("http://proxy:"), Ok(80));
        assert_eq!(port("proxy:3128"), Ok(3128));
        assert!(matches!(
            port("http://proxy:99999"),
            Err(ProxyError::InvalidPort { .. })
        ));
        let err = port("foo://proxy").unwrap_err();
        assert!(matches!(err, ProxyError::NoPort { .. }));
        assert!(err.to_string().contains("dials port 0"), "{err}");
    }

    /// `proxyAuth` bytes, measured with ctr 1.6.20: `us%40er:p%3Ass` is sent as
    /// `Basic base64("us@er:p:ss")`, and `http://@host` as `Basic Og==`.
    #[test]
    fn proxy_authorization_is_go_proxy_auth() {
        let p = |v: &str| {
            ProxyEnv::from_vars([("HTTPS_PROXY", v)])
                .https_proxy()
                .unwrap()
                .clone()
        };
        let with = p("http://us%40er:p%3Ass@127.0.0.1:3128");
        assert_eq!(
            with.authorization().unwrap().expose(),
            "Basic dXNAZXI6cDpzcw=="
        );
        assert_eq!(with.username(), Some("us@er"));
        assert_eq!(with.password().unwrap().expose(), "p:ss");
        assert_eq!(
            p("http://@127.0.0.1:1").authorization().unwrap().expose(),
            "Basic Og=="
        );
        assert_eq!(
            p("http://bob@proxy").authorization().unwrap().expose(),
            "Basic Ym9iOg=="
        );
        assert!(p("http://proxy").authorization().is_none());
        assert!(!p("http://proxy").has_credentials());
    }

    #[test]
    fn passwords_never_show() {
        let e = ProxyEnv::from_vars([
            ("HTTPS_PROXY", "http://alice:hunter2@proxy.corp:3128"),
            ("HTTP_PROXY", "http://alice:hunter2@proxy:port"),
            ("http_proxy", "http://alice:hunter2@other"),
        ]);
        let p = e.https_proxy().unwrap();
        assert_eq!(p.to_string(), "http://alice:***@proxy.corp:3128");
        let text = format!("{p:?} {e:?} {:?}", e.warnings());
        let shown: Vec<String> = e.warnings().iter().map(ToString::to_string).collect();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!shown.join(" ").contains("hunter2"), "{shown:?}");
        assert!(p.authorization().unwrap().to_string() == "<redacted>");
    }

    /// `parseProxy`'s `http://` retry: a '#' in a password makes Go cut the URL there; the
    /// retry then reads the host `http`. pullprobe mirrors it and says why.
    #[test]
    fn a_value_go_misreads_is_mirrored_and_explained() {
        let e = ProxyEnv::from_vars([("HTTPS_PROXY", "http://user:pa#ss@proxy:3128")]);
        let p = e.https_proxy().unwrap();
        assert_eq!(p.host(), "http");
        assert_eq!(p.port(), Ok(80));
        let w = e.warnings()[0].to_string();
        assert!(
            w.contains("Go reads it as http://") && w.contains("\"http\""),
            "{w}"
        );
        assert!(!w.contains("pa#ss"), "{w}");
    }

    /// `config.init` drops `parseProxy`'s error: the transport then connects directly.
    #[test]
    fn an_unparseable_value_is_ignored_like_go() {
        for v in ["proxy host:3128", "%zz", "http://pro\u{1}xy:3128"] {
            let e = ProxyEnv::from_vars([("HTTPS_PROXY", v)]);
            assert!(e.https_proxy().is_none(), "{v:?}");
            assert!(
                e.proxy_for(&Url::parse("https://r.example").unwrap())
                    .unwrap()
                    .is_none()
            );
            let w = e.warnings()[0].to_string();
            assert!(
                w.contains("containerd ignores it and connects directly"),
                "{w}"
            );
        }
    }

    #[test]
    fn unusual_schemes_are_noted() {
        let e = ProxyEnv::from_vars([("HTTPS_PROXY", "socks5h://127.0.0.1:1080")]);
        assert_eq!(e.https_proxy().unwrap().kind(), ProxyKind::Socks5h);
        assert!(e.warnings()[0].message.contains("socks5h"));
        let e = ProxyEnv::from_vars([("HTTPS_PROXY", "foo://h:1")]);
        assert_eq!(e.https_proxy().unwrap().kind(), ProxyKind::Other);
        assert!(e.warnings()[0].message.contains("plain HTTP proxy"));
    }

    fn file(text: &str) -> ProxyEnv {
        ProxyEnv::parse_file(Path::new("/etc/x.conf"), text).unwrap()
    }

    fn messages(e: &ProxyEnv) -> Vec<String> {
        e.warnings().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn systemd_drop_in_as_config_parse_environ_reads_it() {
        let e = file(concat!(
            "# Docker's documented drop-in\n",
            "[Service]\n",
            "Environment=\"HTTP_PROXY=http://proxy.example.com:3128\" \"HTTPS_PROXY=http://proxy.example.com:3128\"\n",
            "Environment=NO_PROXY=localhost,127.0.0.1,.svc,\\\n",
            "  10.0.0.0/8\n",
            "EnvironmentFile=-/etc/default/proxy\n",
        ));
        assert_eq!(
            e.https_proxy().unwrap().to_string(),
            "http://proxy.example.com:3128"
        );
        assert_eq!(
            e.http_proxy().unwrap().to_string(),
            "http://proxy.example.com:3128"
        );
        // The continuation's backslash becomes a space, which ends the word.
        assert_eq!(e.no_proxy(), Some("localhost,127.0.0.1,.svc,"));
        let w = messages(&e);
        assert!(
            w.iter().any(|w| w
                .starts_with("/etc/x.conf:6: EnvironmentFile=-/etc/default/proxy is not followed")),
            "{w:?}"
        );
        assert!(w.iter().any(|w| w.contains("\"10.0.0.0/8\"")), "{w:?}");
    }

    #[test]
    fn systemd_quotes_escapes_overrides_and_resets() {
        let e = file(concat!(
            "[Service]\n",
            "Environment=HTTPS_PROXY=http://first:1 'NO_PROXY=a, b'\n",
            "Environment=\"HTTPS_PROXY=http://\\x70roxy:2\"\n",
        ));
        assert_eq!(e.https_proxy().unwrap().to_string(), "http://proxy:2");
        assert_eq!(e.no_proxy(), Some("a, b"));
        assert_eq!(e.https_proxy().unwrap().variable(), "HTTPS_PROXY");
        let e = file("[Service]\nEnvironment=HTTPS_PROXY=http://p:1\nEnvironment=\n");
        assert!(e.is_empty());
    }

    #[test]
    fn systemd_percent_specifiers() {
        let e = file("[Service]\nEnvironment=\"HTTPS_PROXY=http://u:p%40ss@proxy:3128\"\n");
        assert!(e.https_proxy().is_none());
        let w = messages(&e);
        assert!(
            w[0].starts_with("/etc/x.conf:2: %4 is not a systemd specifier"),
            "{w:?}"
        );
        assert!(!w[0].contains("p%40ss@"), "{w:?}");
        let e = file("[Service]\nEnvironment=\"HTTPS_PROXY=http://u:p%%40ss@proxy:3128\"\n");
        assert_eq!(
            e.https_proxy().unwrap().password().unwrap().expose(),
            "p@ss"
        );
        let e = file("[Service]\nEnvironment=\"HTTPS_PROXY=http://%H:3128\"\n");
        assert!(e.https_proxy().is_none());
        assert!(
            messages(&e)[0].contains("%H is a systemd specifier that pullprobe does not expand")
        );
    }

    #[test]
    fn systemd_ignores_what_systemd_ignores() {
        let e = file(concat!(
            "HTTPS_PROXY=http://outside:1\n",
            "[Service]\n",
            "Environment=\"HTTPS_PROXY=http://ok:1\" \"BAD-NAME=x\" \"unclosed\n",
            "[Servce]\n",
            "Environment=HTTP_PROXY=http://typo:1\n",
            "[Unit]\n",
            "Environment=HTTP_PROXY=http://unit:1\n",
            "no equals sign\n",
        ));
        assert_eq!(e.https_proxy().unwrap().to_string(), "http://ok:1");
        assert!(e.http_proxy().is_none());
        let w = messages(&e).join("\n");
        for part in [
            "x.conf:1: assignment outside of a section",
            "x.conf:3: invalid environment assignment (name \"BAD-NAME\")",
            "x.conf:3: systemd ignores the rest of this Environment= line: a quote is not closed",
            "x.conf:4: unknown section [Servce]",
            "x.conf:8: missing '='",
        ] {
            assert!(w.contains(part), "{part}\n{w}");
        }
    }

    #[test]
    fn systemd_refuses_a_broken_section_header() {
        let err = ProxyEnv::parse_file(Path::new("/etc/x.conf"), "[Service\nEnvironment=A=b\n")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/x.conf:1: invalid section header \"[Service\": systemd refuses the whole file, so containerd's unit does not load; close the bracket, e.g. [Service]"
        );
    }

    #[test]
    fn environment_file_as_load_env_file_reads_it() {
        let e = file(concat!(
            "# proxy for containerd\n",
            "  HTTPS_PROXY = http://proxy:3128   \n",
            "export HTTP_PROXY=http://exported:1\n",
            "NO_PROXY=\"a,b \\\"c\\\"\" # not a comment\n",
            "; comment\n",
            "http_proxy='http://single\\quote:2'\n",
        ));
        assert_eq!(e.https_proxy().unwrap().to_string(), "http://proxy:3128");
        assert_eq!(e.no_proxy(), Some("a,b \"c\"# not a comment"));
        // `export HTTP_PROXY` is no name for systemd; http_proxy is used instead.
        let w = messages(&e);
        assert!(
            w[0].starts_with("/etc/x.conf:3: \"export HTTP_PROXY\" is not a variable name"),
            "{w:?}"
        );
        assert_eq!(e.http_proxy().unwrap().variable(), "http_proxy");
        assert_eq!(e.source(), &EnvSource::File("/etc/x.conf".into()));
    }

    #[test]
    fn environment_file_later_lines_win_and_continuations_join() {
        let e = file("HTTPS_PROXY=http://a:1\nHTTPS_PROXY=http://b:\\\n2\n");
        assert_eq!(e.https_proxy().unwrap().to_string(), "http://b:2");
    }

    #[test]
    fn from_file_names_the_file_in_errors() {
        let err = ProxyEnv::from_file(Path::new("/nonexistent/proxy.conf")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read the proxy environment file /nonexistent/proxy.conf"),
            "{err}"
        );
    }
}
