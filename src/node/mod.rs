//! The node's own pull configuration: which endpoints, TLS, credentials and proxy a pull of an
//! image on this node uses.
//!
//! One job: turn the node's files into an ordered list of [`Endpoint`]s (with their TLS
//! settings and headers) that [`crate::probe`] then walks. One file per source:
//! - [`containerd`]: `certs.d/<host>/hosts.toml` as containerd's `remotes/docker/config/hosts.go`
//!   reads it (mirrors, CAs, client certificates, `skip_verify`, `override_path`, headers).
//! - [`crio`]: CRI-O's `registries.conf` (+ drop-ins) as containers/image's `sysregistriesv2`
//!   reads it.
//! - [`kubelet`]: the node's docker `config.json` as kubelet's `credentialprovider` finds it.
//! - [`plugins`]: kubelet's credential-provider plugins (`CredentialProviderConfig`).
//! - [`proxy`]: the proxy environment as Go's `http.ProxyFromEnvironment` reads it.

pub mod containerd;
pub mod crio;
pub mod kubelet;
pub mod plugins;
pub mod proxy;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject as _;

use crate::config::{NodeSettings, Runtime, Target, TlsSettings};

/// How an endpoint is spoken to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// containerd `HostCapabilities`: what a host may be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Fetch manifests and blobs by digest.
    pub pull: bool,
    /// Turn a tag into a digest.
    pub resolve: bool,
    pub push: bool,
}

impl Capabilities {
    pub const ALL: Capabilities = Capabilities {
        pull: true,
        resolve: true,
        push: true,
    };
}

/// One registry host a pull may ask, in the order the runtime asks them.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub scheme: Scheme,
    /// Go's `URL.Host`: `host[:port]` as configured (an IPv6 literal in brackets).
    pub host: String,
    /// The API root: `/v2`, a configured path ending in `/v2`, or an `override_path` root.
    pub path: String,
    pub capabilities: Capabilities,
    pub tls: Arc<TlsSettings>,
    /// Extra request headers (hosts.toml `[header]`), in file order.
    pub headers: Vec<(String, String)>,
    /// hosts.toml `dial_timeout`; containerd's default is 30 s.
    pub dial_timeout: Option<Duration>,
    /// HTTPS first, then plain HTTP when the server answers the TLS handshake in HTTP
    /// (containerd's `NewHTTPFallback`).
    pub http_fallback: bool,
    /// The registry itself (hosts.toml `server`, or the default), not a mirror.
    pub upstream: bool,
    /// Where the endpoint is configured, for messages (e.g. a hosts.toml table), or `None` for
    /// containerd's defaults.
    pub source: Option<String>,
    /// The repository asked on this endpoint when it is not the image's (a CRI-O `location`
    /// rewrites it; containerd never does).
    pub repository: Option<String>,
    /// Whether kubelet's credentials are offered here: always with containerd, only on the
    /// image's own registry with CRI-O.
    pub credentials: bool,
    /// Why the runtime refuses this endpoint before any request (CRI-O `blocked`).
    pub blocked: Option<String>,
    /// The `endpoint` label when `host[:port]` and the API path do not tell this endpoint
    /// apart: a CRI-O source is named by its registries.conf location (`host[:port]/namespace`),
    /// and a repeat of an earlier endpoint's label by its position (`#2`).
    pub name: Option<String>,
}

impl Endpoint {
    /// The `endpoint` label value and how messages name it: [`Endpoint::name`] when set, else
    /// `host[:port]`, with the path when it is not the standard `/v2`.
    pub fn label(&self) -> String {
        if let Some(name) = &self.name {
            name.clone()
        } else if self.path == "/v2" {
            self.host.clone()
        } else {
            format!("{}{}", self.host, self.path)
        }
    }

    /// Whether the runtime would ask this host for a reference: `resolve` for a tag, `pull`
    /// for a digest (containerd `dockerResolver.Resolve`).
    pub fn serves(&self, by_digest: bool) -> bool {
        self.capabilities.pull && (by_digest || self.capabilities.resolve)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme.as_str(), self.host, self.path)
    }
}

/// Whose request flow walks the endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Flow {
    /// containerd's resolver: no ping, `HEAD` of the manifest, challenges from any 401.
    #[default]
    Containerd,
    /// containers/image (CRI-O): `GET /v2/` first (200 or 401), the manifest with the
    /// credentials the ping's challenge asks for, 429 retried with backoff, the primary
    /// location's error when every source fails.
    ContainersImage,
}

/// The endpoints of one image's registry, and what the runtime would say about its files.
#[derive(Clone, Debug, Default)]
pub struct EndpointPlan {
    pub flow: Flow,
    /// In the order they are asked. Empty only when [`EndpointPlan::error`] is set or the
    /// files configure no usable host.
    pub endpoints: Vec<Endpoint>,
    /// Files the runtime ignores or reads differently than written, each naming the file.
    pub warnings: Vec<String>,
    /// A problem that makes the runtime fail the pull before any request (e.g. a CA file it
    /// cannot load), naming the file.
    pub error: Option<String>,
    /// Whether the node's files configure this registry (else the runtime's defaults apply).
    pub from_files: bool,
}

/// The runtime whose configuration the probe follows: `node.runtime`, or detected from the
/// files present (containerd's hosts directories first).
pub fn runtime(settings: &NodeSettings) -> Runtime {
    match settings.runtime {
        Some(r) => r,
        None if containerd::HostsDirs::new(&settings.containerd_config_path).any_exists() => {
            Runtime::Containerd
        }
        // registries.conf alone is not CRI-O: podman, skopeo and buildah install it too.
        None if CRIO_MARKERS
            .iter()
            .any(|p| std::path::Path::new(p).exists()) =>
        {
            Runtime::Crio
        }
        None => Runtime::None,
    }
}

/// The endpoints a pull of `target` asks on this node, in order.
///
/// Without node files for the registry, the target's own `plain_http` / `tls` settings say
/// how the registry is reached (as a hosts.toml `server` entry would); with them, the node's
/// files decide and the target's settings are reported as unused.
pub fn plan(settings: &NodeSettings, target: &Target) -> EndpointPlan {
    let mut plan = runtime_plan(settings, target);
    name_repeated_endpoints(&mut plan.endpoints);
    plan
}

/// Names an endpoint whose label an earlier one already has by its 1-based position in the
/// chain (`mirror.local:5000#2`). Both runtimes ask each configured host in turn even when two
/// look alike (containerd: `[host."https://m:5000"]` and `[host."http://m:5000"]`; CRI-O: a
/// location configured twice), and each answer is its own `endpoint` series and JSON entry;
/// one value per configured host, so bounded by the config.
fn name_repeated_endpoints(endpoints: &mut [Endpoint]) {
    for i in 1..endpoints.len() {
        let label = endpoints[i].label();
        if endpoints[..i].iter().any(|e| e.label() == label) {
            endpoints[i].name = Some(format!("{label}#{}", i + 1));
        }
    }
}

fn runtime_plan(settings: &NodeSettings, target: &Target) -> EndpointPlan {
    let ns = target.image.registry();
    let mut plan = match runtime(settings) {
        Runtime::Containerd => {
            containerd::HostsDirs::new(&settings.containerd_config_path).plan(ns)
        }
        Runtime::None => containerd::HostsDirs { roots: Vec::new() }.plan(ns),
        Runtime::Crio => return crio_plan(settings, target),
    };
    let overrides = target.plain_http || target.tls.configured;
    if plan.from_files && overrides {
        plan.warnings.push(format!(
            "the node's registry configuration for {ns} decides how it is reached, so the target's plain_http/tls settings are not used"
        ));
    } else if overrides && let Some(last) = plan.endpoints.last_mut() {
        last.http_fallback = false;
        if target.plain_http {
            last.scheme = Scheme::Http;
            last.tls = Arc::default();
        } else {
            last.scheme = Scheme::Https;
            last.tls = target.tls.clone();
        }
    }
    plan
}

/// The registries.conf files CRI-O reads (`node.crio.*`, else the system paths).
fn crio_sources(settings: &NodeSettings) -> crio::ConfigSources {
    crio::ConfigSources::resolve(
        settings.crio_registries_conf.as_deref(),
        settings.crio_registries_conf_d.as_deref(),
        std::path::Path::new(CRIO_HOME),
        None,
    )
}

/// Files only a CRI-O node has: its configuration directory and its socket.
const CRIO_MARKERS: [&str; 3] = [
    "/etc/crio",
    "/run/crio/crio.sock",
    "/var/run/crio/crio.sock",
];

/// The home directory of the CRI-O daemon (root).
const CRIO_HOME: &str = "/root";

/// The pull sources CRI-O would try for `target`, as endpoints: mirrors in order, then the
/// primary location (containers/image `PullSourcesFromReference`), each with its certs.d TLS
/// files and `insecure`.
fn crio_plan(settings: &NodeSettings, target: &Target) -> EndpointPlan {
    let mut plan = EndpointPlan {
        flow: Flow::ContainersImage,
        ..EndpointPlan::default()
    };
    let conf = match crio::RegistriesConf::load(&crio_sources(settings)) {
        Ok(c) => c,
        Err(e) => {
            plan.error = Some(format!(
                "CRI-O cannot load its registries configuration: {e}"
            ));
            return plan;
        }
    };
    plan.from_files = conf.find_registry(&target.image.to_string()).is_some();
    plan.warnings.extend(
        conf.notices()
            .iter()
            .map(|n| format!("{}:{}: {}", n.file.display(), n.line, n.message)),
    );
    let sources = match conf.pull_sources(&target.image) {
        Ok(s) => s,
        Err(e) => {
            plan.error = Some(e.to_string());
            return plan;
        }
    };
    let certs = crio::cert_search_dirs(std::path::Path::new(CRIO_HOME), None);
    for src in sources {
        let r = &src.reference;
        let name = match &src.location_path {
            Some(path) => format!("{}/{path}", r.api_authority()),
            None => r.api_authority(),
        };
        let mut tls = TlsSettings {
            insecure_skip_verify: src.insecure,
            configured: src.insecure,
            ..TlsSettings::default()
        };
        match crio::certs_for_host(&certs, r.registry()) {
            Err(e) => {
                plan.error = Some(e.to_string());
                return plan;
            }
            Ok(files) => {
                for ca in &files.cas {
                    tls.extra_roots.extend(
                        rustls_pki_types::CertificateDer::pem_slice_iter(&ca.pem)
                            .map_while(Result::ok),
                    );
                    tls.ca_file.get_or_insert_with(|| ca.path.clone());
                }
                for pair in &files.clients {
                    let loaded = std::fs::read(&pair.cert)
                        .ok()
                        .zip(std::fs::read(&pair.key).ok());
                    let Some((cert, key)) = loaded else { continue };
                    let chain: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(&cert)
                        .map_while(Result::ok)
                        .collect();
                    match rustls_pki_types::PrivateKeyDer::from_pem_slice(&key)
                        .ok()
                        .and_then(|k| crate::config::ClientCertificate::new(chain, k).ok())
                    {
                        Some(c) => tls.client_certificates.push(c),
                        None => {
                            plan.error = Some(format!(
                                "CRI-O cannot load the client certificate {} with its key {}",
                                pair.cert.display(),
                                pair.key.display()
                            ));
                            return plan;
                        }
                    }
                }
            }
        }
        plan.endpoints.push(Endpoint {
            scheme: Scheme::Https,
            host: r.api_authority(),
            path: "/v2".to_owned(),
            capabilities: Capabilities::ALL,
            tls: Arc::new(tls),
            headers: Vec::new(),
            dial_timeout: None,
            http_fallback: false,
            upstream: !src.mirror,
            source: src
                .blocked_by
                .as_ref()
                .map(|b| format!("{}:{} [[registry]] prefix {:?}", b.file.display(), b.line, b.prefix)),
            repository: Some(r.repository().to_owned()),
            credentials: src.kubelet_credentials,
            blocked: src.blocked_by.as_ref().map(|b| {
                format!(
                    "registry {} is blocked in {} (line {}, prefix {:?}), so CRI-O does not pull from it",
                    r.registry(),
                    b.file.display(),
                    b.line,
                    b.prefix
                )
            }),
            name: Some(name),
        });
    }
    plan
}

/// Go's `time.ParseDuration`, in nanoseconds (`None` where Go returns an error).
pub(crate) fn parse_go_duration(s: &str) -> Option<i64> {
    const LIMIT: u64 = 1 << 63;
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        // The number: [0-9]*(\.[0-9]*)? with at least one digit.
        let int_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int_digits, after) = rest.split_at(int_end);
        rest = after;
        let mut frac_digits = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let end = after_dot
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after_dot.len());
            frac_digits = &after_dot[..end];
            rest = &after_dot[end..];
        }
        if int_digits.is_empty() && frac_digits.is_empty() {
            return None;
        }
        // `leadingInt`: overflow is an error.
        let mut v: u64 = 0;
        for c in int_digits.bytes() {
            if v > LIMIT / 10 {
                return None;
            }
            v = v * 10 + u64::from(c - b'0');
            if v > LIMIT {
                return None;
            }
        }
        // `leadingFraction`: digits past what fits are dropped.
        let (mut f, mut scale, mut overflow) = (0u64, 1f64, false);
        for c in frac_digits.bytes() {
            if overflow {
                continue;
            }
            if f > (LIMIT - 1) / 10 {
                overflow = true;
                continue;
            }
            let y = f * 10 + u64::from(c - b'0');
            if y > LIMIT {
                overflow = true;
                continue;
            }
            f = y;
            scale *= 10.0;
        }
        let unit_end = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (unit, after) = rest.split_at(unit_end);
        rest = after;
        let unit: u64 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            _ => return None, // missing or unknown unit
        };
        if v > LIMIT / unit {
            return None;
        }
        v *= unit;
        if f > 0 {
            // Go: v += uint64(float64(f) * (float64(unit) / scale)).
            #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
            #[allow(clippy::cast_sign_loss)]
            let add = (f as f64 * (unit as f64 / scale)) as u64;
            v = v.checked_add(add)?;
            if v > LIMIT {
                return None;
            }
        }
        total = total.checked_add(v)?;
        if total > LIMIT {
            return None;
        }
    }
    if neg {
        return Some(0i64.checked_sub_unsigned(total).unwrap_or(i64::MIN));
    }
    i64::try_from(total).ok()
}

#[cfg(test)]
mod tests {
    /// The CRI-O plan of `image` with `conf` as registries.conf: each source's label.
    fn crio_labels(conf: &str, image: &str) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("registries.conf"), conf).unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        let yaml = format!(
            "node:\n  runtime: crio\n  crio:\n    registries_conf: {0}/registries.conf\n    registries_conf_d: {0}/d\ntargets:\n  - image: {image}\n",
            dir.path().display()
        );
        let config = crate::config::Config::from_yaml("t.yaml", &yaml, dir.path()).unwrap();
        let plan = super::plan(&config.node, &config.targets[0]);
        assert!(plan.error.is_none(), "{:?}", plan.error);
        plan.endpoints.iter().map(super::Endpoint::label).collect()
    }

    /// containers/image `PullSourcesFromReference` lists one source per mirror, then the
    /// location; two on one host:port (issue #12) must not merge into one `endpoint` series.
    #[test]
    fn pull_sources_from_reference_sources_on_one_host_keep_their_own_labels() {
        let labels = crio_labels(
            "[[registry]]\nprefix = \"upstream.test\"\nlocation = \"mirror.local:5000/up\"\n\
             [[registry.mirror]]\nlocation = \"mirror.local:5000/cache\"\n\
             [[registry.mirror]]\nlocation = \"mirror.local:5000/other\"\n\
             [[registry.mirror]]\nlocation = \"mirror.local:5000\"\n",
            "upstream.test/team/app:1",
        );
        assert_eq!(
            labels,
            [
                "mirror.local:5000/cache",
                "mirror.local:5000/other",
                "mirror.local:5000",
                "mirror.local:5000/up",
            ]
        );
    }

    /// A location configured twice is asked twice; the repeat is named by its position.
    #[test]
    fn pull_sources_from_reference_a_repeated_source_is_named_by_its_position() {
        let labels = crio_labels(
            "[[registry]]\nprefix = \"upstream.test\"\nlocation = \"mirror.local:5000/cache\"\n\
             [[registry.mirror]]\nlocation = \"mirror.local:5000/cache\"\n",
            "upstream.test/team/app:1",
        );
        assert_eq!(
            labels,
            ["mirror.local:5000/cache", "mirror.local:5000/cache#2"]
        );
    }

    /// Without a `[[registry]]` entry, and for a location that is the registry itself, the
    /// label is the API `host[:port]`, as with containerd.
    #[test]
    fn pull_sources_from_reference_a_plain_registry_is_its_authority() {
        assert_eq!(
            crio_labels("", "upstream.test/team/app:1"),
            ["upstream.test"]
        );
        assert_eq!(
            crio_labels(
                "[[registry]]\nlocation = \"upstream.test\"\n",
                "upstream.test/team/app:1"
            ),
            ["upstream.test"]
        );
        assert_eq!(
            crio_labels("", "docker.io/library/alpine:3"),
            ["registry-1.docker.io"]
        );
    }

    /// containerd `ConfigureHosts` keeps every `[host]` table in order, so one host:port under
    /// two schemes is asked twice (`dockerResolver.Resolve`); the second keeps its own label.
    #[test]
    fn configure_hosts_one_host_under_two_schemes_keeps_two_labels() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("upstream.test");
        std::fs::create_dir(&hosts).unwrap();
        std::fs::write(
            hosts.join("hosts.toml"),
            "server = \"https://upstream.test\"\n[host.\"https://mirror.local:5000\"]\n[host.\"http://mirror.local:5000\"]\n",
        )
        .unwrap();
        let yaml = format!(
            "node:\n  runtime: containerd\n  containerd:\n    config_path: {}\ntargets:\n  - image: upstream.test/team/app:1\n",
            dir.path().display()
        );
        let config = crate::config::Config::from_yaml("t.yaml", &yaml, dir.path()).unwrap();
        let plan = super::plan(&config.node, &config.targets[0]);
        let labels: Vec<String> = plan.endpoints.iter().map(super::Endpoint::label).collect();
        assert_eq!(
            labels,
            ["mirror.local:5000", "mirror.local:5000#2", "upstream.test"]
        );
    }
}
