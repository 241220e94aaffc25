//! The configuration file: a strict YAML model, validated and resolved at load time.
//!
//! Loading happens in three steps, as blackbox_exporter does it: decode (unknown keys are
//! rejected), validate every rule and collect *all* problems, then resolve into [`Config`] with
//! files read (CA bundles, docker config files) so that a probe never meets a bad setting.
//! Every error names the file, the key and how to fix it. Relative paths are relative to the
//! directory of the config file, as in Prometheus.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use serde::Deserialize;

use crate::credentials::Keyring;
use crate::reference::ImageRef;

/// The configuration used when no `--config.file` is given: well-known public registries.
pub const DEFAULT_CONFIG_YAML: &str = include_str!("default-config.yaml");

/// Where the embedded default config says it comes from in messages.
pub const DEFAULT_CONFIG_NAME: &str = "<embedded default config>";

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A loaded, validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where it came from: a path, or [`DEFAULT_CONFIG_NAME`].
    pub source: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub dns: DnsSettings,
    /// The default credentials for targets without their own `docker_config`.
    pub docker_config: Option<Arc<CredentialsFile>>,
    pub targets: Vec<Target>,
    /// Where the node's own pull configuration is read from (`node:`).
    pub node: NodeSettings,
}

/// The container runtime whose configuration a probe follows (`node.runtime`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// containerd: hosts directories under `node.containerd.config_path`.
    Containerd,
    /// CRI-O: `registries.conf` and its drop-ins (`node.crio.*`).
    Crio,
    /// The registry itself, as written in the image reference (no node files).
    None,
}

/// The `node:` section: the node's files a pull depends on.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    /// `node.runtime`; `None` detects it from the files present.
    pub runtime: Option<Runtime>,
    /// `node.containerd.config_path`: hosts directories, `:`-separated.
    pub containerd_config_path: String,
    /// `node.kubelet.root_dir`: where kubelet's node `config.json` search starts.
    pub kubelet_root_dir: PathBuf,
    /// `node.kubelet.credential_provider_config` with `credential_provider_bin_dir`, loaded.
    pub plugins: Option<crate::node::plugins::Plugins>,
    /// The proxy environment containerd runs with: `node.containerd.proxy_env_file`, else
    /// pullprobe's own environment; `None` when it names no proxy.
    pub proxy: Option<Arc<crate::node::proxy::ProxyEnv>>,
    /// `node.crio.registries_conf`: CRI-O's `--registries-conf` (default: the system file).
    pub crio_registries_conf: Option<PathBuf>,
    /// `node.crio.registries_conf_d`: CRI-O's `--registries-conf-dir`.
    pub crio_registries_conf_d: Option<PathBuf>,
}

impl Default for NodeSettings {
    fn default() -> Self {
        NodeSettings {
            runtime: None,
            containerd_config_path: crate::node::containerd::DEFAULT_CONFIG_PATH.to_owned(),
            kubelet_root_dir: PathBuf::from(crate::node::kubelet::DEFAULT_ROOT_DIR),
            plugins: None,
            proxy: None,
            crio_registries_conf: None,
            crio_registries_conf_d: None,
        }
    }
}

impl NodeSettings {
    /// kubelet's search for the node's docker config, from `kubelet_root_dir`.
    pub fn docker_config_search(&self) -> crate::node::kubelet::NodeDockerConfigSearch {
        crate::node::kubelet::NodeDockerConfigSearch {
            root_dir: self.kubelet_root_dir.clone(),
            ..crate::node::kubelet::NodeDockerConfigSearch::kubelet_defaults()
        }
    }
}

/// The files name resolution reads, as containerd's Go resolver reads them (see `probe::dns`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsSettings {
    /// `dns.hosts_file`: looked up first, before any DNS query.
    pub hosts_file: PathBuf,
    /// `dns.resolv_conf`: nameservers, `search`/`domain` and `options` (ndots, timeout, attempts…).
    pub resolv_conf: PathBuf,
    /// `dns.nameservers`: when set, asked in order instead of the `nameserver` lines of
    /// `resolv_conf`; the rest of `resolv_conf` still applies.
    pub nameservers: Option<Vec<SocketAddr>>,
}

pub const DEFAULT_HOSTS_FILE: &str = "/etc/hosts";
pub const DEFAULT_RESOLV_CONF: &str = "/etc/resolv.conf";

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            hosts_file: PathBuf::from(DEFAULT_HOSTS_FILE),
            resolv_conf: PathBuf::from(DEFAULT_RESOLV_CONF),
            nameservers: None,
        }
    }
}

/// A credentials file and its parsed content.
#[derive(Clone, Debug)]
pub struct CredentialsFile {
    pub path: PathBuf,
    pub keyring: Keyring,
}

/// TLS settings of a target; they apply to the registry host and its token realm host.
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    pub ca_file: Option<PathBuf>,
    /// The certificates read from `ca_file`, added to the system trust store.
    pub extra_roots: Vec<CertificateDer<'static>>,
    pub insecure_skip_verify: bool,
    /// Client certificates offered when the server asks (hosts.toml `client`), in order.
    pub client_certificates: Vec<ClientCertificate>,
    /// A `tls` block was written: the registry speaks HTTPS, verified as the block says. For a
    /// loopback registry this replaces containerd's no-hosts.toml default (HTTPS without
    /// verification, falling back to HTTP), as a hosts.toml `https://` host does.
    pub configured: bool,
    /// The verifier built from these settings, on first use (see `probe::tls::trust_for`).
    pub(crate) trust_cache: std::sync::OnceLock<Result<crate::probe::Trust, String>>,
}

/// A client certificate chain with its private key, loaded and checked as Go's
/// `tls.X509KeyPair` checks them (the key must belong to the first certificate).
#[derive(Clone, Debug)]
pub struct ClientCertificate {
    pub(crate) key: Arc<rustls::sign::CertifiedKey>,
}

impl ClientCertificate {
    /// # Errors
    /// A phrase to complete "the key in FILE … the certificate": "is not supported for", "does
    /// not belong to".
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: rustls_pki_types::PrivateKeyDer<'static>,
    ) -> Result<Self, &'static str> {
        let provider = rustls::crypto::ring::default_provider();
        let key =
            rustls::sign::CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => "does not belong to",
                _ => "cannot be used with",
            })?;
        Ok(ClientCertificate { key: Arc::new(key) })
    }
}

/// One thing to probe: an image and how to reach its registry.
#[derive(Clone, Debug)]
pub struct Target {
    /// Unique within the config; the `target` label.
    pub name: String,
    pub image: ImageRef,
    pub plain_http: bool,
    pub tls: Arc<TlsSettings>,
    pub credentials: Option<Arc<CredentialsFile>>,
    /// Fetch the resolved manifest and, for an image index, require the node's platform in it
    /// (one GET per probe). Always on for `--check`; opt-in per target for the agent, refused
    /// for Docker Hub targets, where a GET counts as a pull.
    pub check_platform: bool,
}

/// A configuration problem: the file, the key, what is wrong, and what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigIssue {
    pub key: String,
    pub problem: String,
    pub fix: String,
}

/// Why a configuration could not be loaded. Lists every problem found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub source_name: String,
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration in {}:", self.source_name)?;
        for i in &self.issues {
            write!(f, "\n  {}: {}\n    fix: {}", i.key, i.problem, i.fix)?;
        }
        Ok(())
    }
}

impl ConfigError {
    fn single(
        source_name: &str,
        key: &str,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        ConfigError {
            source_name: source_name.to_owned(),
            issues: vec![ConfigIssue {
                key: key.to_owned(),
                problem: problem.into(),
                fix: fix.into(),
            }],
        }
    }
}

// ---- the file format -------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// How often the agent probes every target.
    #[serde(default)]
    interval: Option<String>,
    /// The deadline of one probe, all phases together.
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    dns: Option<RawDns>,
    #[serde(default)]
    docker_config: Option<PathBuf>,
    #[serde(default)]
    targets: Vec<RawTarget>,
    #[serde(default)]
    node: Option<RawNode>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    /// containerd | none (default: detected).
    #[serde(default)]
    runtime: Option<String>,
    #[serde(default)]
    containerd: Option<RawContainerd>,
    #[serde(default)]
    kubelet: Option<RawKubelet>,
    #[serde(default)]
    crio: Option<RawCrio>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCrio {
    /// CRI-O's `--registries-conf` (default /etc/containers/registries.conf).
    #[serde(default)]
    registries_conf: Option<PathBuf>,
    /// CRI-O's `--registries-conf-dir` (default /etc/containers/registries.conf.d).
    #[serde(default)]
    registries_conf_d: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKubelet {
    /// kubelet's `--root-dir` (default /var/lib/kubelet): its node config.json.
    #[serde(default)]
    root_dir: Option<PathBuf>,
    /// kubelet's `--image-credential-provider-config`.
    #[serde(default)]
    credential_provider_config: Option<PathBuf>,
    /// kubelet's `--image-credential-provider-bin-dir`.
    #[serde(default)]
    credential_provider_bin_dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContainerd {
    /// Hosts directories, `:`-separated (default /etc/containerd/certs.d:/etc/docker/certs.d).
    #[serde(default)]
    config_path: Option<String>,
    /// containerd's proxy environment: a systemd drop-in or an environment file.
    #[serde(default)]
    proxy_env_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDns {
    /// Replaces the `nameserver` lines of `resolv_conf`.
    #[serde(default)]
    nameservers: Option<Vec<String>>,
    /// The hosts file to read before DNS (default `/etc/hosts`).
    #[serde(default)]
    hosts_file: Option<PathBuf>,
    /// The resolver configuration (default `/etc/resolv.conf`).
    #[serde(default)]
    resolv_conf: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    #[serde(default)]
    name: Option<String>,
    image: String,
    #[serde(default)]
    docker_config: Option<PathBuf>,
    #[serde(default)]
    plain_http: bool,
    #[serde(default)]
    tls: Option<RawTls>,
    #[serde(default)]
    check_platform: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    insecure_skip_verify: bool,
}

/// The one place that knows the YAML crate, so swapping it touches one function.
pub(crate) fn from_yaml_str<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_saphyr::from_str(text).map_err(|e| e.to_string())
}

// ---- loading -----------------------------------------------------------------------------

impl Config {
    /// Reads and validates a config file.
    ///
    /// # Errors
    /// When the file cannot be read, is not valid YAML, has unknown keys or invalid values, or
    /// names CA or credentials files that cannot be used.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::single(
                &name,
                "(file)",
                format!("cannot read the file: {e}"),
                "pass the path of a readable YAML file to --config.file",
            )
        })?;
        let base = path.parent().map(Path::to_owned).unwrap_or_default();
        Self::from_yaml(&name, &text, &base)
    }

    /// The embedded default configuration.
    pub fn embedded_default() -> Self {
        Self::from_yaml(DEFAULT_CONFIG_NAME, DEFAULT_CONFIG_YAML, Path::new("/"))
            .expect("the embedded default config is valid (tested)")
    }

    /// Parses and validates YAML text; relative paths are resolved against `base_dir`.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn from_yaml(source_name: &str, text: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = from_yaml_str(text).map_err(|e| {
            ConfigError::single(
                source_name,
                "(yaml)",
                e.trim().to_owned(),
                "fix the YAML at the position shown; the keys are documented in README.md (Configuration) and examples/config.yaml",
            )
        })?;
        Resolver {
            base_dir,
            issues: Vec::new(),
        }
        .resolve(source_name, raw)
    }

    /// Targets for `--check IMAGE...`: each image, lending tls/docker_config/plain_http from the
    /// first configured target on the same registry host.
    ///
    /// # Errors
    /// When an image reference is invalid (the key is `IMAGE[n]`).
    pub fn targets_for_images(&self, images: &[String]) -> Result<Vec<Target>, ConfigError> {
        let mut out = Vec::with_capacity(images.len());
        let mut issues = Vec::new();
        for (i, text) in images.iter().enumerate() {
            let image = match ImageRef::parse(text) {
                Ok(r) => r,
                Err(e) => {
                    issues.push(ConfigIssue {
                        key: format!("IMAGE[{i}]"),
                        problem: e.to_string(),
                        fix: "use a reference like nginx:1.27, ghcr.io/org/app:v1 or registry.example.com:5000/team/app@sha256:…".to_owned(),
                    });
                    continue;
                }
            };
            let lender = self
                .targets
                .iter()
                .find(|t| t.image.api_authority() == image.api_authority());
            out.push(Target {
                name: unique_name(text.trim(), &out),
                plain_http: lender.is_some_and(|t| t.plain_http),
                tls: lender.map(|t| t.tls.clone()).unwrap_or_default(),
                credentials: lender
                    .map_or_else(|| self.docker_config.clone(), |t| t.credentials.clone()),
                image,
                check_platform: false,
            });
        }
        if issues.is_empty() {
            Ok(out)
        } else {
            Err(ConfigError {
                source_name: "the command line".to_owned(),
                issues,
            })
        }
    }
}

fn unique_name(base: &str, existing: &[Target]) -> String {
    let mut name = base.to_owned();
    let mut n = 2;
    while existing.iter().any(|t| t.name == name) {
        name = format!("{base} ({n})");
        n += 1;
    }
    name
}

struct Resolver<'a> {
    base_dir: &'a Path,
    issues: Vec<ConfigIssue>,
}

impl Resolver<'_> {
    fn issue(
        &mut self,
        key: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.issues.push(ConfigIssue {
            key: key.into(),
            problem: problem.into(),
            fix: fix.into(),
        });
    }

    fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base_dir.join(p)
        }
    }

    fn duration(&mut self, key: &str, value: Option<&str>, default: Duration) -> Duration {
        let Some(text) = value else { return default };
        match humantime::parse_duration(text.trim()) {
            Ok(d) if d.is_zero() => {
                self.issue(
                    key,
                    "must be greater than zero",
                    format!(
                        "use a duration like {}",
                        humantime::format_duration(default)
                    ),
                );
                default
            }
            Ok(d) => d,
            Err(e) => {
                self.issue(
                    key,
                    format!("{text:?} is not a duration: {e}"),
                    "write a number with a unit, like 10s, 5m or 1h30m",
                );
                default
            }
        }
    }

    fn credentials(&mut self, key: &str, path: &Path) -> Option<Arc<CredentialsFile>> {
        let path = self.path(path);
        match Keyring::load(&path) {
            Ok(keyring) => Some(Arc::new(CredentialsFile { path, keyring })),
            Err(e) => {
                self.issue(
                    key,
                    e.to_string(),
                    "point it at a docker config.json or the .dockerconfigjson key of a kubernetes.io/dockerconfigjson Secret: {\"auths\": {\"registry.example.com\": {\"auth\": \"base64(user:password)\"}}}",
                );
                None
            }
        }
    }

    fn tls(&mut self, key: &str, raw: Option<RawTls>, plain_http: bool) -> TlsSettings {
        let Some(raw) = raw else {
            return TlsSettings::default();
        };
        if plain_http {
            self.issue(
                key,
                "tls settings have no effect together with plain_http: true",
                "remove the tls block, or set plain_http: false for a registry that speaks HTTPS",
            );
        }
        let mut settings = TlsSettings {
            insecure_skip_verify: raw.insecure_skip_verify,
            configured: true,
            ..TlsSettings::default()
        };
        if let Some(ca) = raw.ca_file {
            let path = self.path(&ca);
            let ca_key = format!("{key}.ca_file");
            match std::fs::read(&path) {
                Err(e) => self.issue(
                    ca_key,
                    format!("cannot read {}: {e}", path.display()),
                    "mount the CA bundle and give its path",
                ),
                Ok(bytes) => {
                    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&bytes).collect();
                    match certs {
                        Ok(certs) if !certs.is_empty() => settings.extra_roots = certs,
                        Ok(_) => self.issue(
                            ca_key,
                            format!("{} contains no PEM certificate", path.display()),
                            "give a file with one or more -----BEGIN CERTIFICATE----- blocks",
                        ),
                        Err(e) => self.issue(
                            ca_key,
                            format!("{} is not a valid PEM file: {e}", path.display()),
                            "give a file with one or more -----BEGIN CERTIFICATE----- blocks",
                        ),
                    }
                }
            }
            settings.ca_file = Some(path);
        }
        settings
    }

    fn dns(&mut self, raw: Option<RawDns>) -> DnsSettings {
        let mut settings = DnsSettings::default();
        let Some(raw) = raw else { return settings };
        if let Some(p) = raw.hosts_file {
            settings.hosts_file = self.dns_file(
                "dns.hosts_file",
                &p,
                DEFAULT_HOSTS_FILE,
                "a hosts file (lines like `10.0.0.5 registry.internal`)",
            );
        }
        if let Some(p) = raw.resolv_conf {
            settings.resolv_conf = self.dns_file(
                "dns.resolv_conf",
                &p,
                DEFAULT_RESOLV_CONF,
                "a resolv.conf (nameserver, search and options lines)",
            );
        }
        settings.nameservers = match raw.nameservers {
            None => None,
            Some(list) if list.is_empty() => {
                self.issue(
                    "dns.nameservers",
                    "is empty",
                    "list at least one address like 10.0.0.10 or 127.0.0.1:5353, or remove it to use the nameservers of dns.resolv_conf",
                );
                None
            }
            Some(list) => {
                let mut addrs = Vec::with_capacity(list.len());
                for (i, s) in list.iter().enumerate() {
                    match parse_nameserver(s) {
                        Some(a) => addrs.push(a),
                        None => self.issue(
                            format!("dns.nameservers[{i}]"),
                            format!("{s:?} is not an IP address or IP:port"),
                            "write 10.0.0.10, 127.0.0.1:5353 or [fd00::10]:53 (host names cannot be used for nameservers)",
                        ),
                    }
                }
                Some(addrs)
            }
        };
        settings
    }

    /// A file the resolver reads at every probe: it must be readable now, so that a missing
    /// mount is a config error instead of a silent fallback to Go's defaults.
    fn dns_file(&mut self, key: &str, path: &Path, default: &str, what: &str) -> PathBuf {
        let fix = format!(
            "give the path of {what}: on a node the file itself, in a pod a hostPath mount of it; or remove {key} to use {default}"
        );
        if path.as_os_str().is_empty() {
            self.issue(key, "is empty", fix);
            return PathBuf::from(default);
        }
        let path = self.path(path);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => {
                self.issue(key, format!("{} is a directory", path.display()), fix);
            }
            Ok(_) => {
                if let Err(e) = std::fs::File::open(&path) {
                    self.issue(key, format!("cannot read {}: {e}", path.display()), fix);
                }
            }
            Err(e) => self.issue(key, format!("cannot read {}: {e}", path.display()), fix),
        }
        path
    }

    fn resolve(mut self, source_name: &str, raw: RawConfig) -> Result<Config, ConfigError> {
        let interval = self.duration("interval", raw.interval.as_deref(), DEFAULT_INTERVAL);
        let timeout = self.duration("timeout", raw.timeout.as_deref(), DEFAULT_TIMEOUT);
        if timeout > interval {
            self.issue(
                "timeout",
                format!(
                    "timeout ({}) is longer than interval ({})",
                    humantime::format_duration(timeout),
                    humantime::format_duration(interval)
                ),
                "make timeout shorter than interval so that probes of one target never overlap",
            );
        }

        let dns = self.dns(raw.dns);
        let node = self.node(raw.node);

        let docker_config = raw
            .docker_config
            .as_deref()
            .and_then(|p| self.credentials("docker_config", p));

        if raw.targets.is_empty() {
            self.issue(
                "targets",
                "no targets are configured",
                "add at least one target with an image, e.g. `- image: nginx:latest`",
            );
        }
        let mut names = HashSet::new();
        let mut targets = Vec::with_capacity(raw.targets.len());
        for (i, t) in raw.targets.into_iter().enumerate() {
            let key = format!("targets[{i}]");
            let image = match ImageRef::parse(&t.image) {
                Ok(r) => Some(r),
                Err(e) => {
                    self.issue(
                        format!("{key}.image"),
                        e.to_string(),
                        "use a reference like nginx:1.27, ghcr.io/org/app:v1 or registry.example.com:5000/team/app@sha256:…",
                    );
                    None
                }
            };
            let name = t.name.clone().unwrap_or_else(|| t.image.trim().to_owned());
            if name.trim().is_empty() {
                self.issue(
                    format!("{key}.name"),
                    "is empty",
                    "give the target a short unique name, or remove name to use the image",
                );
            } else if !names.insert(name.clone()) {
                self.issue(
                    format!("{key}.name"),
                    format!("the name {name:?} is used by an earlier target"),
                    "give each target a unique name (it becomes the `target` metric label)",
                );
            }
            let credentials = match &t.docker_config {
                Some(p) => self.credentials(&format!("{key}.docker_config"), p),
                None => docker_config.clone(),
            };
            let tls = self.tls(&format!("{key}.tls"), t.tls, t.plain_http);
            if t.check_platform && image.as_ref().is_some_and(ImageRef::is_docker_hub) {
                self.issue(
                    format!("{key}.check_platform"),
                    "the platform check fetches the image index with a GET on every probe, and on Docker Hub every manifest GET counts as a pull against the node's quota (100 per 6 hours anonymously)",
                    "remove check_platform from Docker Hub targets and check them once with `pullprobe --check IMAGE`, or probe a copy of the image on a registry without pull quotas",
                );
            }
            if let Some(image) = image {
                targets.push(Target {
                    name,
                    image,
                    plain_http: t.plain_http,
                    tls: Arc::new(tls),
                    credentials,
                    check_platform: t.check_platform,
                });
            }
        }

        if !self.issues.is_empty() {
            return Err(ConfigError {
                source_name: source_name.to_owned(),
                issues: self.issues,
            });
        }
        Ok(Config {
            source: source_name.to_owned(),
            interval,
            timeout,
            dns,
            docker_config,
            targets,
            node,
        })
    }

    fn node(&mut self, raw: Option<RawNode>) -> NodeSettings {
        let mut node = NodeSettings::default();
        let proxy_file = raw
            .as_ref()
            .and_then(|r| r.containerd.as_ref())
            .and_then(|c| c.proxy_env_file.clone());
        let env = match proxy_file {
            None => Some(crate::node::proxy::ProxyEnv::from_process()),
            Some(f) => match crate::node::proxy::ProxyEnv::from_file(&self.path(&f)) {
                Ok(env) => Some(env),
                Err(e) => {
                    self.issue(
                        "node.containerd.proxy_env_file",
                        e.to_string(),
                        "give containerd's proxy drop-in (e.g. /etc/systemd/system/containerd.service.d/http-proxy.conf with [Service] Environment=\"HTTPS_PROXY=…\") or an environment file of KEY=value lines",
                    );
                    None
                }
            },
        };
        node.proxy = env
            .filter(|e| !e.is_empty() || !e.warnings().is_empty())
            .map(Arc::new);
        let Some(raw) = raw else { return node };
        match raw.runtime.as_deref() {
            None => {}
            Some("containerd") => node.runtime = Some(Runtime::Containerd),
            Some("crio") => node.runtime = Some(Runtime::Crio),
            Some("none") => node.runtime = Some(Runtime::None),
            Some(other) => self.issue(
                "node.runtime",
                format!("{other:?} is not a runtime pullprobe follows"),
                "use containerd, crio or none, or remove node.runtime to detect it from the node's files",
            ),
        }
        if let Some(c) = raw.containerd
            && let Some(p) = c.config_path
        {
            if p.split(':').all(str::is_empty) {
                self.issue(
                    "node.containerd.config_path",
                    "is empty",
                    "give containerd's hosts directory, e.g. /etc/containerd/certs.d (several separated by `:`), or remove the key",
                );
            } else {
                node.containerd_config_path = p
                    .split(':')
                    .map(|part| {
                        if part.is_empty() {
                            String::new()
                        } else {
                            self.path(Path::new(part)).display().to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(":");
            }
        }
        if let Some(c) = raw.crio {
            node.crio_registries_conf = c.registries_conf.map(|p| self.path(&p));
            node.crio_registries_conf_d = c.registries_conf_d.map(|p| self.path(&p));
        }
        if let Some(k) = raw.kubelet {
            if let Some(root) = k.root_dir {
                node.kubelet_root_dir = self.path(&root);
            }
            match (k.credential_provider_config, k.credential_provider_bin_dir) {
                (None, None) => {}
                (Some(_), None) | (None, Some(_)) => self.issue(
                    "node.kubelet",
                    "credential_provider_config and credential_provider_bin_dir go together",
                    "give both, as kubelet's --image-credential-provider-config and --image-credential-provider-bin-dir (the DaemonSet's node-config component mounts them), or neither",
                ),
                (Some(config), Some(bin)) => {
                    match crate::node::plugins::Plugins::load(&self.path(&config), &self.path(&bin)) {
                        Ok(p) => node.plugins = Some(p),
                        Err(e) => {
                            for i in e.issues {
                                self.issue(
                                    format!("node.kubelet.credential_provider_config ({}) {}", e.source_name, i.key),
                                    i.problem,
                                    i.fix,
                                );
                            }
                        }
                    }
                }
            }
        }
        node
    }
}

fn parse_nameserver(s: &str) -> Option<SocketAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 53));
    }
    s.parse::<SocketAddr>().ok().filter(|a| a.port() != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Result<Config, ConfigError> {
        Config::from_yaml("test.yaml", yaml, Path::new("/nonexistent"))
    }

    #[test]
    fn embedded_default_is_valid_and_has_seven_public_targets() {
        let c = Config::embedded_default();
        assert_eq!(c.targets.len(), 7);
        assert_eq!(c.dns, DnsSettings::default());
        assert_eq!(c.interval, DEFAULT_INTERVAL);
        let hub: Vec<_> = c
            .targets
            .iter()
            .filter(|t| t.image.is_docker_hub())
            .collect();
        assert_eq!(
            hub.len(),
            1,
            "one Docker Hub target keeps the fleet's request rate low"
        );
        assert_eq!(hub[0].image.repository(), "ratelimitpreview/test");
    }

    #[test]
    fn shipped_example_parses() {
        let c = Config::from_yaml(
            "examples/config.yaml",
            include_str!("../examples/config.yaml"),
            Path::new("examples"),
        )
        .unwrap();
        assert_eq!(c.targets.len(), 3);
        assert_eq!(c.interval, DEFAULT_INTERVAL);
    }

    #[test]
    fn shipped_daemonset_config_parses() {
        // The DaemonSet mounts credentials at this path; point it at an empty keyring here.
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("config.json");
        std::fs::write(&creds, r#"{"auths": {}}"#).unwrap();
        let text = include_str!("../deploy/base/config.yaml");
        assert!(text.contains("/etc/pullprobe/docker/config.json"));
        let text = text.replace(
            "/etc/pullprobe/docker/config.json",
            &creds.display().to_string(),
        );
        let c = Config::from_yaml("deploy/base/config.yaml", &text, dir.path()).unwrap();
        assert!(!c.targets.is_empty());
        assert!(c.docker_config.is_some());
    }

    #[test]
    fn full_example() {
        let c = load(
            "interval: 5m\ntimeout: 7s\ndns:\n  nameservers: [\"10.0.0.10\", \"127.0.0.1:5353\", \"[::1]:53\"]\n\
             targets:\n  - name: hub\n    image: docker.io/ratelimitpreview/test:latest\n  - image: localhost:5000/app\n    plain_http: true\n",
        )
        .unwrap();
        assert_eq!(c.interval, Duration::from_secs(300));
        assert_eq!(c.timeout, Duration::from_secs(7));
        assert_eq!(
            c.dns.nameservers,
            Some(vec![
                "10.0.0.10:53".parse().unwrap(),
                "127.0.0.1:5353".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ])
        );
        assert_eq!(c.dns.hosts_file, Path::new("/etc/hosts"));
        assert_eq!(c.dns.resolv_conf, Path::new("/etc/resolv.conf"));
        assert_eq!(c.targets[0].name, "hub");
        assert_eq!(c.targets[1].name, "localhost:5000/app");
        assert!(c.targets[1].plain_http);
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let err = load(concat!(
            "interval: 5 minutes please\ntimeout: 0s\ndns:\n  nameservers: [\"dns.example.com\"]\n",
            "docker_config: missing.json\ntargets:\n  - image: \"nginx/UPPER\"\n  - name: a\n    image: nginx\n",
            "  - name: a\n    image: redis\n  - image: localhost/x\n    plain_http: true\n    tls:\n      ca_file: nope.pem\n",
        ))
        .unwrap_err();
        let keys: Vec<_> = err.issues.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "interval",
                "timeout",
                "dns.nameservers[0]",
                "docker_config",
                "targets[0].image",
                "targets[2].name",
                "targets[3].tls",
                "targets[3].tls.ca_file"
            ]
        );
        let text = err.to_string();
        assert!(
            text.starts_with("invalid configuration in test.yaml:"),
            "{text}"
        );
        assert!(
            text.contains("/nonexistent/missing.json"),
            "relative paths resolve against the config dir: {text}"
        );
        assert!(text.contains("fix: "), "{text}");
    }

    #[test]
    fn unknown_keys_and_bad_yaml_name_the_position() {
        let err = load("targets:\n  - image: nginx\n    tls:\n      ca_fil: x\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("unknown field `ca_fil`"), "{text}");
        assert!(text.contains("line 4"), "{text}");
        let err = load("targets: [").unwrap_err();
        assert_eq!(err.issues[0].key, "(yaml)");
        let err = load("targets:\n  - name: x\n").unwrap_err();
        assert!(err.to_string().contains("image"), "{err}");
    }

    #[test]
    fn check_platform_is_opt_in_and_refused_for_docker_hub() {
        let c = load("targets:\n  - image: ghcr.io/org/app:1\n    check_platform: true\n  - image: quay.io/a/b\n").unwrap();
        assert!(c.targets[0].check_platform);
        assert!(!c.targets[1].check_platform);
        for hub in [
            "nginx",
            "docker.io/org/app:1",
            "index.docker.io/library/redis",
        ] {
            let e = load(&format!(
                "targets:\n  - image: {hub}\n    check_platform: true\n"
            ))
            .unwrap_err();
            assert_eq!(e.issues[0].key, "targets[0].check_platform", "{hub}");
            assert!(e.issues[0].problem.contains("counts as a pull"), "{e}");
            assert!(e.issues[0].fix.contains("pullprobe --check"), "{e}");
        }
    }

    #[test]
    fn timeout_longer_than_interval_is_rejected() {
        let err = load("interval: 5s\ntimeout: 10s\ntargets: [{image: nginx}]\n").unwrap_err();
        assert_eq!(err.issues[0].key, "timeout");
    }

    #[test]
    fn dns_files_resolve_against_the_config_dir_and_must_be_readable() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hosts"), "10.0.0.5 registry\n").unwrap();
        std::fs::write(dir.path().join("resolv.conf"), "search svc.test\n").unwrap();
        let c = Config::from_yaml(
            "t.yaml",
            "dns:\n  hosts_file: hosts\n  resolv_conf: resolv.conf\ntargets: [{image: nginx}]\n",
            dir.path(),
        )
        .unwrap();
        assert_eq!(c.dns.hosts_file, dir.path().join("hosts"));
        assert_eq!(c.dns.resolv_conf, dir.path().join("resolv.conf"));
        assert_eq!(c.dns.nameservers, None);

        let err = Config::from_yaml(
            "t.yaml",
            "dns:\n  hosts_file: missing-hosts\n  resolv_conf: \"\"\ntargets: [{image: nginx}]\n",
            dir.path(),
        )
        .unwrap_err();
        let keys: Vec<_> = err.issues.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["dns.hosts_file", "dns.resolv_conf"]);
        let text = err.to_string();
        assert!(
            text.contains(&dir.path().join("missing-hosts").display().to_string()),
            "{text}"
        );
        assert!(
            text.contains("remove dns.hosts_file to use /etc/hosts"),
            "{text}"
        );
        assert!(text.contains("dns.resolv_conf: is empty"), "{text}");

        let err = Config::from_yaml(
            "t.yaml",
            "dns:\n  resolv_conf: .\ntargets: [{image: nginx}]\n",
            dir.path(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("is a directory"), "{err}");
        let err = load("dns:\n  hostsfile: /etc/hosts\ntargets: [{image: nginx}]\n").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `hostsfile`"),
            "{err}"
        );
    }

    #[test]
    fn check_images_borrow_settings_from_a_configured_target_on_the_same_host() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("creds.json"),
            r#"{"auths":{"localhost:5000":{"username":"u","password":"p"}}}"#,
        )
        .unwrap();
        let c = Config::from_yaml(
            "t.yaml",
            "targets:\n  - image: localhost:5000/app\n    plain_http: true\n    docker_config: creds.json\n",
            dir.path(),
        )
        .unwrap();
        let t = c
            .targets_for_images(&[
                "localhost:5000/other:v2".into(),
                "nginx".into(),
                "nginx".into(),
            ])
            .unwrap();
        assert!(t[0].plain_http);
        assert!(t[0].credentials.is_some());
        assert!(!t[1].plain_http);
        assert!(t[1].credentials.is_none());
        assert_eq!(t[2].name, "nginx (2)");
        let err = c.targets_for_images(&["Bad Ref".into()]).unwrap_err();
        assert_eq!(err.issues[0].key, "IMAGE[0]");
    }
}
