//! The configuration file: a strict YAML model, validated and resolved at load time.
//!
//! Loading happens in three steps, as blackbox_exporter does it: read the YAML into a tree
//! that keeps each node's line, walk it against the schema (unknown keys are rejected, with
//! the nearest valid key; wrong shapes and repeated keys too), then validate every value and
//! resolve into [`Config`] with files read and parsed (CA bundles certificate by certificate,
//! docker config files) so that a probe never meets a bad setting. The walk replaces serde's
//! `deny_unknown_fields`, which stops at the first unknown key: every problem is collected, and
//! each names its line, its key, what is wrong and a fix that needs no other file. Relative
//! paths are relative to the directory of the config file, as in Prometheus.

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
    /// The pods of this node (`pods:`): the agent's watch, and what `--check --pod` reads.
    pub pods: PodSettings,
}

/// The `pods:` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSettings {
    /// `pods.watch`: the agent watches this node's pods and probes the image of a container
    /// kubelet cannot pull.
    pub watch: bool,
    /// `pods.pull_secrets` (default true): read the pull secrets a pod names. False is the
    /// node-credentials-only mode: no access to secrets, probes use the node's credentials.
    pub pull_secrets: bool,
    /// `pods.node_name`, else `$NODE_NAME` (the downward API's `spec.nodeName`). Required
    /// with `watch`.
    pub node_name: Option<String>,
}

impl Default for PodSettings {
    fn default() -> Self {
        PodSettings {
            watch: false,
            pull_secrets: true,
            node_name: None,
        }
    }
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

/// A configuration problem: where it is, what is wrong, and what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Where the problem is: the key path (`targets[2].tls.ca_file`), prefixed with
    /// `line N: ` when the key is written in the file (see [`ConfigIssue::key_path`]).
    pub key: String,
    pub problem: String,
    pub fix: String,
}

impl ConfigIssue {
    /// The key path without its `line N: ` prefix.
    pub fn key_path(&self) -> &str {
        split_line_prefix(&self.key).1
    }

    /// The line of the file the problem is on, when known.
    pub fn line(&self) -> Option<usize> {
        split_line_prefix(&self.key).0
    }
}

/// `line 12: targets[0]` → `(Some(12), "targets[0]")`.
fn split_line_prefix(key: &str) -> (Option<usize>, &str) {
    key.strip_prefix("line ")
        .and_then(|rest| rest.split_once(": "))
        .and_then(|(n, path)| n.parse().ok().map(|n| (Some(n), path)))
        .unwrap_or((None, key))
}

/// Why a configuration could not be loaded. Lists every problem found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub source_name: String,
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Every configuration error the test suite provokes is checked: none may show a
        // library's rendering of a value.
        #[cfg(debug_assertions)]
        for i in &self.issues {
            for m in [&i.problem, &i.fix] {
                debug_assert!(
                    crate::outcome::library_text(m).is_none(),
                    "a configuration message shows library text: {m}"
                );
            }
        }
        write!(f, "invalid configuration in {}", self.source_name)?;
        match self.issues.len() {
            1 => write!(f, ":")?,
            n => write!(f, " ({n} problems):")?,
        }
        for i in &self.issues {
            // A key path holds the file's own keys, which may hold any character.
            write!(
                f,
                "\n  {}: {}\n    fix: {}",
                visible(&i.key),
                i.problem,
                i.fix
            )?;
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
//
// The file is first read into a tree of YAML nodes with their lines ([`parse_tree`]), then
// walked against the schema below ([`Walk`]), which collects every unknown key (with the
// nearest valid key), every value of the wrong shape and every duplicate key, and builds the
// raw settings from what is valid. The resolver then checks the values. So one run reports
// every problem, each with its line, as blackbox_exporter's `KnownFields(true)` would report
// only the first.

/// The largest config file pullprobe reads. A target takes a few hundred bytes, and a
/// Kubernetes ConfigMap holds at most 1 MiB.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;
/// The most YAML values (keys, values and list items) a config may have.
pub const MAX_CONFIG_VALUES: usize = 250_000;
/// How deep a config may nest lists and mappings (pullprobe's own keys go 4 deep). The tree
/// is read recursively, so this also bounds the stack a hostile file can take (a level costs
/// tens of KiB in a debug build; a tokio worker has 2 MiB).
pub const MAX_CONFIG_DEPTH: usize = 16;

/// A section of the file: the keys valid in it.
struct Section {
    /// How a person names it in a message: "the top level", "a target".
    what: &'static str,
    /// Where it is, for "belongs under" hints: "", "targets[]", "targets[].tls".
    at: &'static str,
    keys: &'static [&'static str],
}

const TOP: Section = Section {
    what: "the top level",
    at: "",
    keys: &[
        "interval",
        "timeout",
        "dns",
        "docker_config",
        "targets",
        "node",
        "pods",
    ],
};
const DNS: Section = Section {
    what: "dns",
    at: "dns",
    keys: &["hosts_file", "resolv_conf", "nameservers"],
};
const TARGET: Section = Section {
    what: "a target",
    at: "targets[]",
    keys: &[
        "name",
        "image",
        "docker_config",
        "plain_http",
        "tls",
        "check_platform",
    ],
};
const TLS: Section = Section {
    what: "tls",
    at: "targets[].tls",
    keys: &["ca_file", "insecure_skip_verify"],
};
const NODE: Section = Section {
    what: "node",
    at: "node",
    keys: &["runtime", "containerd", "crio", "kubelet"],
};
const CONTAINERD: Section = Section {
    what: "node.containerd",
    at: "node.containerd",
    keys: &["config_path", "proxy_env_file"],
};
const CRIO: Section = Section {
    what: "node.crio",
    at: "node.crio",
    keys: &["registries_conf", "registries_conf_d"],
};
const KUBELET: Section = Section {
    what: "node.kubelet",
    at: "node.kubelet",
    keys: &[
        "root_dir",
        "credential_provider_config",
        "credential_provider_bin_dir",
    ],
};
const PODS: Section = Section {
    what: "pods",
    at: "pods",
    keys: &["watch", "pull_secrets", "node_name"],
};
const SECTIONS: [&Section; 9] = [
    &TOP,
    &DNS,
    &TARGET,
    &TLS,
    &NODE,
    &CONTAINERD,
    &CRIO,
    &KUBELET,
    &PODS,
];

#[derive(Debug, Default)]
struct RawConfig {
    /// How often the agent probes every target.
    interval: Option<String>,
    /// The deadline of one probe, all phases together.
    timeout: Option<String>,
    dns: Option<RawDns>,
    docker_config: Option<PathBuf>,
    targets: Vec<RawTarget>,
    node: Option<RawNode>,
    pods: Option<RawPods>,
}

#[derive(Debug, Default)]
struct RawPods {
    watch: bool,
    /// `None` when absent (true).
    pull_secrets: Option<bool>,
    node_name: Option<String>,
}

#[derive(Debug, Default)]
struct RawNode {
    /// containerd | crio | none (default: detected).
    runtime: Option<String>,
    containerd: Option<RawContainerd>,
    kubelet: Option<RawKubelet>,
    crio: Option<RawCrio>,
}

#[derive(Debug, Default)]
struct RawCrio {
    /// CRI-O's `--registries-conf` (default /etc/containers/registries.conf).
    registries_conf: Option<PathBuf>,
    /// CRI-O's `--registries-conf-dir` (default /etc/containers/registries.conf.d).
    registries_conf_d: Option<PathBuf>,
}

#[derive(Debug, Default)]
struct RawKubelet {
    /// kubelet's `--root-dir` (default /var/lib/kubelet): its node config.json.
    root_dir: Option<PathBuf>,
    /// kubelet's `--image-credential-provider-config`.
    credential_provider_config: Option<PathBuf>,
    /// kubelet's `--image-credential-provider-bin-dir`.
    credential_provider_bin_dir: Option<PathBuf>,
}

#[derive(Debug, Default)]
struct RawContainerd {
    /// Hosts directories, `:`-separated (default /etc/containerd/certs.d:/etc/docker/certs.d).
    config_path: Option<String>,
    /// containerd's proxy environment: a systemd drop-in or an environment file.
    proxy_env_file: Option<PathBuf>,
}

#[derive(Debug, Default)]
struct RawDns {
    /// Replaces the `nameserver` lines of `resolv_conf`.
    nameservers: Option<Vec<String>>,
    /// The hosts file to read before DNS (default `/etc/hosts`).
    hosts_file: Option<PathBuf>,
    /// The resolver configuration (default `/etc/resolv.conf`).
    resolv_conf: Option<PathBuf>,
}

#[derive(Debug, Default)]
struct RawTarget {
    name: Option<String>,
    /// `None` when missing or not text (the walk reported it).
    image: Option<String>,
    docker_config: Option<PathBuf>,
    plain_http: bool,
    tls: Option<RawTls>,
    check_platform: bool,
}

#[derive(Debug, Default)]
struct RawTls {
    ca_file: Option<PathBuf>,
    insecure_skip_verify: bool,
}

/// The options every YAML document pullprobe reads is parsed with: explicit limits (so
/// messages can state them), and non-finite floats passed on (`name: .inf` is text to us).
fn yaml_options(duplicates: serde_saphyr::DuplicateKeyPolicy) -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = MAX_CONFIG_VALUES;
    budget.max_depth = MAX_CONFIG_DEPTH;
    serde_saphyr::options! {
        budget: Some(budget),
        duplicate_keys: duplicates,
        non_finite_float_policy: serde_saphyr::options::NonFiniteFloatPolicy::PassThrough,
    }
}

/// The one place that knows the YAML crate, so swapping it touches this section.
///
/// # Errors
/// A plain description with its line and column (`line 3, column 7: …`), never the crate's
/// own rendering.
pub(crate) fn from_yaml_str<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_saphyr::from_str_with_options(text, yaml_options(serde_saphyr::DuplicateKeyPolicy::Error))
        .map_err(|e| {
            let (line, problem, _) = describe_yaml_error(&e);
            match line {
                Some((line, column)) => match usize::try_from(line)
                    .ok()
                    .zip(usize::try_from(column).ok())
                    .and_then(|(l, c)| key_before(text.as_bytes(), l, c))
                    // A problem that names its key ("the key name is missing") needs no other.
                    .filter(|_| problem.starts_with("must be") || problem.starts_with("has "))
                {
                    Some(key) => format!("line {line}, column {column}: {key}: {problem}"),
                    None => format!("line {line}, column {column}: {problem}"),
                },
                None => problem,
            }
        })
}

/// The error under any snippet or alias wrapper.
fn innermost(mut e: &serde_saphyr::Error) -> &serde_saphyr::Error {
    loop {
        e = match e {
            serde_saphyr::Error::WithSnippet { error, .. }
            | serde_saphyr::Error::AliasError { error, .. } => error,
            _ => return e,
        };
    }
}

/// A YAML error in plain words: its position, what is wrong, and a fix.
fn describe_yaml_error(e: &serde_saphyr::Error) -> (Option<(u64, u64)>, String, String) {
    use serde_saphyr::Error as E;
    use serde_saphyr::budget::BudgetBreach as B;
    let at = e
        .location()
        .filter(|l| l.line() > 0)
        .map(|l| (l.line(), l.column()));
    let too_big = "a pullprobe config needs a few lines per target: check that --config.file \
                   names the config file, and split a very long target list over several agents";
    let (problem, fix) = match innermost(e) {
        E::Budget { breach, .. } => match breach {
            B::Nodes { .. } | B::Events { .. } => (
                format!(
                    "has more than {MAX_CONFIG_VALUES} values (keys, values and list items); \
                     pullprobe reads at most {MAX_CONFIG_VALUES}"
                ),
                too_big.to_owned(),
            ),
            B::Depth { .. } => (
                format!(
                    "nests lists and mappings more than {MAX_CONFIG_DEPTH} levels deep; \
                     pullprobe's settings are at most 4 levels deep"
                ),
                "check the indentation: each key belongs at the level shown in the example \
                 `targets:` / `  - image: nginx:1.27` / `    tls:` / `      ca_file: ca.pem`"
                    .to_owned(),
            ),
            B::ScalarBytes { .. } => (
                "holds more text in its values than pullprobe reads (64 MiB)".to_owned(),
                too_big.to_owned(),
            ),
            B::Documents { .. } => (
                "has too many YAML documents (`---` lines)".to_owned(),
                "keep one document: remove the `---` lines".to_owned(),
            ),
            B::Aliases { .. }
            | B::Anchors { .. }
            | B::AliasAnchorRatio { .. }
            | B::MergeKeys { .. } => (
                "uses more YAML anchors, aliases or merge keys (`&name`, `*name`, `<<`) than \
                 pullprobe expands"
                    .to_owned(),
                "write the repeated values out instead of referring to them with `*name`"
                    .to_owned(),
            ),
            _ => (
                "is larger or more deeply nested than pullprobe reads".to_owned(),
                too_big.to_owned(),
            ),
        },
        E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. }
        | E::AliasReplayCounterOverflow { .. } => (
            "uses YAML aliases (`*name`) that expand to more values than pullprobe reads"
                .to_owned(),
            "write the repeated values out instead of referring to them with `*name`".to_owned(),
        ),
        E::MultipleDocuments { .. } => (
            "has more than one YAML document (a `---` line after the first settings)".to_owned(),
            "keep one document: remove the `---` line and put all settings in one mapping"
                .to_owned(),
        ),
        E::InvalidUtf8Input => (
            "is not UTF-8 text".to_owned(),
            "save the file as UTF-8 (plain ASCII is UTF-8)".to_owned(),
        ),
        E::UnknownAnchor { .. } => (
            "refers to an anchor (`*name`) that is not defined before it".to_owned(),
            "define the anchor with `&name` before its first use, or write the value out"
                .to_owned(),
        ),
        E::SerdeInvalidType {
            unexpected,
            expected,
            ..
        }
        | E::SerdeInvalidValue {
            unexpected,
            expected,
            ..
        } => (
            format!(
                "must be {}, not {}",
                expected_words(expected),
                value_words(unexpected)
            ),
            "write the value the key takes, as in the example of the file's format".to_owned(),
        ),
        E::SerdeInvalidLength { len, expected, .. } => (
            format!("has {len} items; it must have {}", unescape_debug(expected)),
            "give the number of items the key takes".to_owned(),
        ),
        E::SerdeUnknownField {
            field, expected, ..
        } => (
            format!("{} is not a known key here", quote(field)),
            if expected.is_empty() {
                "remove it".to_owned()
            } else {
                format!(
                    "remove it or correct its spelling; the keys here are {}",
                    expected.join(", ")
                )
            },
        ),
        E::SerdeUnknownVariant {
            variant, expected, ..
        } => (
            format!("{} is not one of {}", quote(variant), expected.join(", ")),
            format!("write one of {}", expected.join(", ")),
        ),
        E::SerdeMissingField { field, .. } => (
            format!("the key {field} is missing"),
            format!("add `{field}:` with its value"),
        ),
        E::Unexpected { expected, .. } => (
            match *expected {
                "sequence start" => "must be a list".to_owned(),
                "mapping start" | "empty mapping start" => "must be a mapping of keys".to_owned(),
                "string scalar" | "str expected" | "missing string" => "must be text".to_owned(),
                "bool expected" | "missing bool" => "must be true or false".to_owned(),
                "scalar" | "single YAML node" => "must be a single value".to_owned(),
                e if e.contains("number") || e.contains("integer") => "must be a number".to_owned(),
                _ => "is not the kind of value this key takes".to_owned(),
            },
            "write the value the key takes, as in the example of the file's format".to_owned(),
        ),
        E::Message { msg, .. } => (
            serde_words(msg),
            "write the value the key takes, as in the example of the file's format".to_owned(),
        ),
        E::DuplicateMappingKey { key, .. } => (
            match key {
                Some(k) => format!("the key {} is given twice in one mapping", quote(k)),
                None => "a key is given twice in one mapping".to_owned(),
            },
            "keep one of them".to_owned(),
        ),
        inner => {
            // The parser's own description of a syntax error ("unclosed bracket '['"): a
            // sentence about YAML, with its position taken out and control characters escaped.
            use serde_saphyr::MessageFormatter as _;
            let text = serde_saphyr::UserMessageFormatter.format_message(inner);
            let text = visible(&unescape_debug(&text));
            (
                format!("is not valid YAML: {text}"),
                "fix the YAML syntax there: indent with spaces (not tabs), put a space after \
                 each `key:`, start list items with `- `, close every `[` and `{`, and quote \
                 values that contain `: ` or start with `*`, `&`, `!`, `[` or `{`"
                    .to_owned(),
            )
        }
    };
    (at, problem, fix)
}

/// A YAML node as the walk reads it: its line and its value. Scalars keep the text as
/// written (`yes`, `010`, `1e999` stay text), which is what the settings read.
#[derive(Debug)]
struct Node {
    line: usize,
    value: Value,
}

#[derive(Debug)]
enum Value {
    /// `~`, `null` or nothing.
    Null,
    Text(String),
    List(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// What it is, to complete "…, not {}".
    fn describe(&self) -> String {
        match self {
            Value::Null => "empty".to_owned(),
            Value::Text(t) => format!("the value `{}`", shorten(t)),
            Value::List(_) => "a list".to_owned(),
            Value::Map(_) => "a mapping".to_owned(),
        }
    }
}

/// A value for a message: at most 60 characters, control characters shown as `<U+000A>`.
fn shorten(text: &str) -> String {
    let escaped = visible(text);
    if escaped.chars().count() > 60 {
        let head: String = escaped.chars().take(57).collect();
        format!("{head}...")
    } else {
        escaped
    }
}

/// What the YAML crate hands over: every node with its position in the text.
enum Tree {
    Null,
    /// A bool or a number; its text is taken from the source, as written.
    Scalar,
    Text(String),
    List(Vec<serde_saphyr::Spanned<Tree>>),
    Map(Vec<(serde_saphyr::Spanned<Tree>, serde_saphyr::Spanned<Tree>)>),
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Tree;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<Tree, E> {
                Ok(Tree::Null)
            }
            fn visit_none<E>(self) -> Result<Tree, E> {
                Ok(Tree::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Tree, E> {
                Ok(Tree::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Tree, E> {
                Ok(Tree::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Tree, E> {
                Ok(Tree::Scalar)
            }
            fn visit_i128<E>(self, _: i128) -> Result<Tree, E> {
                Ok(Tree::Scalar)
            }
            fn visit_u128<E>(self, _: u128) -> Result<Tree, E> {
                Ok(Tree::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Tree, E> {
                Ok(Tree::Scalar)
            }
            fn visit_bytes<E>(self, _: &[u8]) -> Result<Tree, E> {
                Ok(Tree::Scalar)
            }
            fn visit_str<E>(self, v: &str) -> Result<Tree, E> {
                Ok(Tree::Text(v.to_owned()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Tree, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = a.next_element()? {
                    items.push(item);
                }
                Ok(Tree::List(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Tree, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = a.next_entry()? {
                    entries.push(entry);
                }
                Ok(Tree::Map(entries))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Node {
    fn from_tree(t: serde_saphyr::Spanned<Tree>, source: &str) -> Node {
        let line = usize::try_from(t.referenced.line()).unwrap_or(0);
        let value = match t.value {
            Tree::Null => Value::Null,
            Tree::Text(s) => Value::Text(s),
            Tree::Scalar => {
                // As written: where the value is defined (for an alias, its anchor).
                let span = t.defined.span();
                let text = span
                    .byte_offset()
                    .zip(span.byte_len())
                    .and_then(|(start, len)| {
                        let start = usize::try_from(start).ok()?;
                        source.get(start..start.checked_add(usize::try_from(len).ok()?)?)
                    })
                    .unwrap_or_default();
                Value::Text(text.to_owned())
            }
            Tree::List(items) => Value::List(
                items
                    .into_iter()
                    .map(|i| Node::from_tree(i, source))
                    .collect(),
            ),
            Tree::Map(entries) => Value::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| (Node::from_tree(k, source), Node::from_tree(v, source)))
                    .collect(),
            ),
        };
        Node { line, value }
    }
}

/// Reads `text` into a tree of nodes with their lines; `None` for an empty document.
///
/// # Errors
/// A YAML syntax error or a breached limit, as an issue with its line.
fn parse_tree(text: &str) -> Result<Option<Node>, ConfigIssue> {
    let tree: Option<serde_saphyr::Spanned<Tree>> = serde_saphyr::from_str_with_options(
        text,
        // Duplicates reach the walk, which reports them all with both lines.
        yaml_options(serde_saphyr::DuplicateKeyPolicy::PassThrough),
    )
    .map_err(|e| {
        let (at, problem, fix) = describe_yaml_error(&e);
        ConfigIssue {
            key: match at {
                Some((line, column)) => format!("line {line}: column {column}"),
                None => "(file)".to_owned(),
            },
            problem,
            fix,
        }
    })?;
    Ok(tree.map(|t| Node::from_tree(t, text)))
}

/// Levenshtein distance, on chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The valid key an unknown `key` most likely meant: the nearest by edit distance (case and
/// `-`/`_` ignored), when it is close enough to be a typo.
fn did_you_mean(key: &str, valid: &[&'static str]) -> Option<&'static str> {
    did_you_mean_among(key, valid)
}

/// The keys of a mapping that the schema knows, by name.
struct Fields<'n> {
    entries: Vec<(&'static str, &'n Node)>,
    /// Where the mapping is (its key path) and its line, for "is missing" problems.
    path: String,
    line: usize,
    /// Keys an unknown key was taken to mean (then their absence is not reported again).
    meant: Vec<&'static str>,
}

impl<'n> Fields<'n> {
    fn get(&self, name: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, n)| *n)
    }

    fn path(&self, name: &str) -> String {
        join_key(&self.path, name)
    }
}

fn join_key(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}

/// The walk of the node tree against the schema: collects every problem, with its line, and
/// the line of every key (for the resolver's problems).
#[derive(Default)]
struct Walk {
    issues: Vec<ConfigIssue>,
    lines: std::collections::BTreeMap<String, usize>,
}

impl Walk {
    fn issue(
        &mut self,
        line: usize,
        key: &str,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.issues.push(ConfigIssue {
            key: format!("line {line}: {key}"),
            problem: problem.into(),
            fix: fix.into(),
        });
    }

    /// The line of `key` or of the nearest enclosing key that is in the file.
    fn line_of(&self, key: &str) -> Option<usize> {
        // "node.kubelet.credential_provider_config (FILE) providers[0]": the part in this file.
        let mut k = key.split(" (").next().unwrap_or(key);
        loop {
            if let Some(&l) = self.lines.get(k) {
                return Some(l);
            }
            k = &k[..k.rfind(['.', '['])?];
        }
    }

    /// Reads a mapping of `section`'s keys; reports unknown and repeated keys. `None` when the
    /// node is empty or not a mapping (the latter reported).
    fn map<'n>(&mut self, node: &'n Node, path: &str, section: &Section) -> Option<Fields<'n>> {
        let entries = match &node.value {
            Value::Null => return None,
            Value::Map(entries) => entries,
            other => {
                let key = if path.is_empty() { "(file)" } else { path };
                self.issue(
                    node.line,
                    key,
                    format!(
                        "must be a mapping of keys ({}), not {}",
                        section.keys.join(", "),
                        other.describe()
                    ),
                    if path.is_empty() {
                        "start the file with keys such as `interval: 15m` and `targets:`, each on its own line".to_owned()
                    } else {
                        format!("write the keys indented under `{path}:`, one `key: value` per line")
                    },
                );
                return None;
            }
        };
        let mut fields = Fields {
            entries: Vec::with_capacity(entries.len()),
            path: path.to_owned(),
            line: node.line,
            meant: Vec::new(),
        };
        let mut seen: Vec<(String, usize)> = Vec::new();
        for (k, v) in entries {
            let name = match &k.value {
                Value::Text(t) => t.clone(),
                other => format!("({})", other.describe()),
            };
            let key = join_key(path, &name);
            if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
                self.issue(
                    k.line,
                    &key,
                    format!("is given twice (first at line {first})"),
                    "keep one of them: YAML takes a key once per mapping",
                );
                continue;
            }
            seen.push((name.clone(), k.line));
            match section.keys.iter().find(|s| **s == name) {
                Some(known) => {
                    self.lines.insert(key, k.line);
                    fields.entries.push((known, v));
                }
                None => {
                    let (problem, fix) = self.unknown_key(&name, section, &mut fields);
                    self.issue(k.line, &key, problem, fix);
                }
            }
        }
        Some(fields)
    }

    fn unknown_key(
        &self,
        name: &str,
        section: &Section,
        fields: &mut Fields<'_>,
    ) -> (String, String) {
        let allowed = format!(
            "the keys of {} are {}",
            section.what,
            section.keys.join(", ")
        );
        if let Some(meant) = did_you_mean(name, section.keys) {
            fields.meant.push(meant);
            return (
                format!("unknown key; did you mean `{meant}`?"),
                format!("rename `{name}` to `{meant}` ({allowed})"),
            );
        }
        // A valid key at another level: say where it goes.
        if let Some(home) = SECTIONS
            .iter()
            .find(|s| s.keys.contains(&name) && !std::ptr::eq(**s, section))
        {
            let home = if home.at.is_empty() {
                "at the top level (not indented)".to_owned()
            } else {
                format!("under `{}`", home.at)
            };
            return (
                format!("unknown key here; `{name}` belongs {home}"),
                format!("move `{name}` {home} ({allowed})"),
            );
        }
        (
            "unknown key".to_owned(),
            format!("remove `{}` ({allowed})", shorten(name)),
        )
    }

    /// A text value; `None` when absent or empty, or not text (reported).
    fn text(&mut self, node: Option<&Node>, key: &str, example: &str) -> Option<String> {
        let node = node?;
        match &node.value {
            Value::Null => None,
            Value::Text(t) => Some(t.clone()),
            other => {
                self.issue(
                    node.line,
                    key,
                    format!("must be a single value, not {}", other.describe()),
                    format!("write it on the same line as the key, like `{example}`"),
                );
                None
            }
        }
    }

    fn path(&mut self, node: Option<&Node>, key: &str) -> Option<PathBuf> {
        let example = format!("{}: /path/to/file", key.rsplit('.').next().unwrap_or(key));
        self.text(node, key, &example).map(PathBuf::from)
    }

    /// A true/false value; false when absent. serde-saphyr's `parse_yaml11_bool`: `true`,
    /// `yes`, `on`, `y` and their opposites, in any case.
    fn flag(&mut self, node: Option<&Node>, key: &str) -> bool {
        let Some(node) = node else { return false };
        if let Value::Text(t) = &node.value {
            let t = t.trim().to_ascii_lowercase();
            if ["true", "yes", "y", "on"].contains(&t.as_str()) {
                return true;
            }
            if ["false", "no", "n", "off"].contains(&t.as_str()) {
                return false;
            }
        }
        let name = key.rsplit('.').next().unwrap_or(key);
        self.issue(
            node.line,
            key,
            format!("must be true or false, not {}", node.value.describe()),
            format!("write `{name}: true` or `{name}: false`, or remove it (false)"),
        );
        false
    }

    /// A list; empty when absent or empty, or not a list (reported).
    fn list<'n>(&mut self, node: Option<&'n Node>, key: &str, example: &str) -> &'n [Node] {
        let Some(node) = node else { return &[] };
        match &node.value {
            Value::Null => &[],
            Value::List(items) => items,
            other => {
                self.issue(
                    node.line,
                    key,
                    format!("must be a list, not {}", other.describe()),
                    format!(
                        "write the items one per line, each starting with `- `, like `{example}`"
                    ),
                );
                &[]
            }
        }
    }

    fn config(&mut self, root: Option<&Node>) -> RawConfig {
        let Some(f) = root.and_then(|r| self.map(r, "", &TOP)) else {
            return RawConfig::default();
        };
        let interval = self.text(f.get("interval"), "interval", "interval: 15m");
        let timeout = self.text(f.get("timeout"), "timeout", "timeout: 10s");
        let dns = f.get("dns").and_then(|n| self.dns(n));
        let docker_config = self.path(f.get("docker_config"), "docker_config");
        let items = self.list(f.get("targets"), "targets", "- image: nginx:1.27");
        let targets = items
            .iter()
            .enumerate()
            .map(|(i, t)| self.target(t, &format!("targets[{i}]")))
            .collect();
        let node = f.get("node").and_then(|n| self.node(n));
        let pods = f.get("pods").and_then(|n| {
            let p = self.map(n, "pods", &PODS)?;
            Some(RawPods {
                watch: self.flag(p.get("watch"), "pods.watch"),
                pull_secrets: p
                    .get("pull_secrets")
                    .map(|n| self.flag(Some(n), "pods.pull_secrets")),
                node_name: self.text(p.get("node_name"), "pods.node_name", "node_name: worker-7"),
            })
        });
        RawConfig {
            interval,
            timeout,
            dns,
            docker_config,
            targets,
            node,
            pods,
        }
    }

    fn dns(&mut self, node: &Node) -> Option<RawDns> {
        let f = self.map(node, "dns", &DNS)?;
        let nameservers = f.get("nameservers").and_then(|n| {
            let key = f.path("nameservers");
            if !matches!(n.value, Value::List(_)) {
                // Empty: as if absent; anything else: reported by `list`.
                self.list(Some(n), &key, "- 10.0.0.10");
                return None;
            }
            let items = self.list(Some(n), &key, "- 10.0.0.10");
            let list = items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    let key = format!("{key}[{i}]");
                    self.lines.insert(key.clone(), item.line);
                    let text = self.text(Some(item), &key, "- 10.0.0.10");
                    if text.is_none() && matches!(item.value, Value::Null) {
                        self.issue(
                            item.line,
                            &key,
                            "is empty",
                            "write an address like 10.0.0.10 or 127.0.0.1:5353, or remove the item",
                        );
                    }
                    text
                })
                .collect();
            Some(list)
        });
        Some(RawDns {
            nameservers,
            hosts_file: self.path(f.get("hosts_file"), &f.path("hosts_file")),
            resolv_conf: self.path(f.get("resolv_conf"), &f.path("resolv_conf")),
        })
    }

    fn target(&mut self, node: &Node, path: &str) -> RawTarget {
        self.lines.insert(path.to_owned(), node.line);
        if matches!(node.value, Value::Null) {
            self.issue(
                node.line,
                path,
                "is empty",
                "give the target an image, like `- image: nginx:1.27`, or remove the `-` line",
            );
            return RawTarget::default();
        }
        let Some(f) = self.map(node, path, &TARGET) else {
            return RawTarget::default();
        };
        let image = self.text(f.get("image"), &f.path("image"), "image: nginx:1.27");
        if image.is_none() && !f.meant.contains(&"image") {
            let (line, problem) = match f.get("image") {
                Some(n) => (n.line, "is empty"),
                None => (f.line, "has no image"),
            };
            let key = if f.get("image").is_some() {
                f.path("image")
            } else {
                path.to_owned()
            };
            self.issue(
                line,
                &key,
                problem,
                "every target needs the image to probe, like `image: nginx:1.27` or `image: registry.example.com:5000/team/app:v1`",
            );
        }
        let tls = f.get("tls").and_then(|n| {
            let key = f.path("tls");
            let t = self.map(n, &key, &TLS)?;
            Some(RawTls {
                ca_file: self.path(t.get("ca_file"), &t.path("ca_file")),
                insecure_skip_verify: self.flag(
                    t.get("insecure_skip_verify"),
                    &t.path("insecure_skip_verify"),
                ),
            })
        });
        RawTarget {
            name: self.text(f.get("name"), &f.path("name"), "name: my-registry"),
            image,
            docker_config: self.path(f.get("docker_config"), &f.path("docker_config")),
            plain_http: self.flag(f.get("plain_http"), &f.path("plain_http")),
            tls,
            check_platform: self.flag(f.get("check_platform"), &f.path("check_platform")),
        }
    }

    fn node(&mut self, node: &Node) -> Option<RawNode> {
        let f = self.map(node, "node", &NODE)?;
        let containerd = f.get("containerd").and_then(|n| {
            let c = self.map(n, "node.containerd", &CONTAINERD)?;
            Some(RawContainerd {
                config_path: self.text(
                    c.get("config_path"),
                    &c.path("config_path"),
                    "config_path: /etc/containerd/certs.d",
                ),
                proxy_env_file: self.path(c.get("proxy_env_file"), &c.path("proxy_env_file")),
            })
        });
        let crio = f.get("crio").and_then(|n| {
            let c = self.map(n, "node.crio", &CRIO)?;
            Some(RawCrio {
                registries_conf: self.path(c.get("registries_conf"), &c.path("registries_conf")),
                registries_conf_d: self
                    .path(c.get("registries_conf_d"), &c.path("registries_conf_d")),
            })
        });
        let kubelet = f.get("kubelet").and_then(|n| {
            let k = self.map(n, "node.kubelet", &KUBELET)?;
            Some(RawKubelet {
                root_dir: self.path(k.get("root_dir"), &k.path("root_dir")),
                credential_provider_config: self.path(
                    k.get("credential_provider_config"),
                    &k.path("credential_provider_config"),
                ),
                credential_provider_bin_dir: self.path(
                    k.get("credential_provider_bin_dir"),
                    &k.path("credential_provider_bin_dir"),
                ),
            })
        });
        Some(RawNode {
            runtime: self.text(f.get("runtime"), "node.runtime", "runtime: containerd"),
            containerd,
            kubelet,
            crio,
        })
    }
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
        let fail = |problem: String, fix: &str| ConfigError::single(&name, "(file)", problem, fix);
        let readable = "pass the path of a readable YAML file to --config.file";
        let file = std::fs::File::open(path)
            .map_err(|e| fail(format!("cannot read the file: {}", io_words(&e)), readable))?;
        // Checked before reading, so a huge file is never read into memory.
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        if size > MAX_CONFIG_BYTES {
            return Err(fail(
                format!(
                    "is {} MiB; pullprobe reads config files of at most {} MiB",
                    size >> 20,
                    MAX_CONFIG_BYTES >> 20
                ),
                "check that --config.file names the pullprobe config (a few lines per target), not another file",
            ));
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_CONFIG_BYTES), &mut bytes)
            .map_err(|e| fail(format!("cannot read the file: {}", io_words(&e)), readable))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            fail(
                "is not UTF-8 text".to_owned(),
                "save the file as UTF-8 (plain ASCII is UTF-8), or check that --config.file names the YAML config",
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
        let root = parse_tree(text).map_err(|issue| ConfigError {
            source_name: source_name.to_owned(),
            issues: vec![issue],
        })?;
        let mut walk = Walk::default();
        let raw = walk.config(root.as_ref());
        Resolver {
            base_dir,
            issues: Vec::new(),
            walk,
        }
        .resolve(source_name, raw)
    }

    /// A target for an image a pod names (`--check --pod`, the agent's pod watch): named
    /// `name`, with the pod's `credentials` (its pull secrets, merged) and never the config's
    /// `docker_config`, which kubelet does not know. A configured target on the same registry
    /// host lends its `tls` and `plain_http`, as for an IMAGE argument.
    pub fn target_for_pod_image(
        &self,
        name: &str,
        image: ImageRef,
        credentials: Option<Arc<CredentialsFile>>,
    ) -> Target {
        Target {
            check_platform: true,
            ..self.lent_target(name, image, credentials)
        }
    }

    /// A target for `image` with the `tls` and `plain_http` of the first configured target on
    /// the same registry host (its "lender"), or the defaults.
    fn lent_target(
        &self,
        name: &str,
        image: ImageRef,
        credentials: Option<Arc<CredentialsFile>>,
    ) -> Target {
        let lender = self
            .targets
            .iter()
            .find(|t| t.image.api_authority() == image.api_authority());
        Target {
            name: name.to_owned(),
            plain_http: lender.is_some_and(|t| t.plain_http),
            tls: lender.map(|t| t.tls.clone()).unwrap_or_default(),
            credentials,
            image,
            check_platform: false,
        }
    }

    /// Targets for `--check ARG...`. An argument that is a configured target's name, or its
    /// image, probes that target with its own settings. Any other argument is an image,
    /// lending tls/docker_config/plain_http from the first configured target on the same
    /// registry host.
    ///
    /// A bare target name (`secure`) is that target, although it would also parse as
    /// `docker.io/library/secure:latest`. A name that is also written as a reference (`team/app`)
    /// or is another configured target's image, and means another image than its target's, is
    /// refused as ambiguous, naming both ways to say it.
    ///
    /// # Errors
    /// Every argument that is neither a target nor a valid image reference, or is ambiguous.
    pub fn targets_for_images(&self, images: &[String]) -> Result<Vec<Target>, ImageArgsError> {
        let mut out: Vec<Target> = Vec::with_capacity(images.len());
        let mut issues = Vec::new();
        for arg in images {
            let text = arg.trim();
            let named = self
                .targets
                .iter()
                .find(|t| t.name == *arg || t.name == text);
            let parsed = ImageRef::parse(text);
            let chosen = match (named, parsed) {
                // A bare word is the target's name; it is ambiguous only when it is also written
                // as a reference (`/`, `:`, `@`) or is another configured target's image.
                (Some(target), Ok(image))
                    if image != target.image
                        && (text.contains(['/', ':', '@'])
                            || self
                                .targets
                                .iter()
                                .any(|t| t.name != target.name && t.image == image)) =>
                {
                    issues.push(ImageArgIssue {
                        arg: arg.clone(),
                        problem: format!(
                            "it is both the name of the configured target `{}` (image {}) and the image {image}",
                            target.name, target.image
                        ),
                        fix: format!(
                            "say which: for the target, give its image, `pullprobe --check {}`; for the other image, write it in full, `pullprobe --check {image}`",
                            target.image
                        ),
                    });
                    continue;
                }
                (Some(target), _) => target.clone(),
                (None, Ok(image)) => match self.targets.iter().find(|t| t.image == image) {
                    Some(target) => target.clone(),
                    None => {
                        let credentials = self
                            .targets
                            .iter()
                            .find(|t| t.image.api_authority() == image.api_authority())
                            .map_or_else(|| self.docker_config.clone(), |t| t.credentials.clone());
                        self.lent_target(text, image, credentials)
                    }
                },
                (None, Err(e)) => {
                    let names: Vec<&str> = self.targets.iter().map(|t| t.name.as_str()).collect();
                    let detail = e.to_string();
                    let detail = detail
                        .strip_prefix(&format!("invalid image reference {}: ", quote(text)))
                        .unwrap_or(&detail)
                        .to_owned();
                    let fix = match did_you_mean_among(text, &names) {
                        Some(name) => format!(
                            "did you mean the configured target `{name}`? Otherwise write an image reference like nginx:1.27 or registry.example.com:5000/team/app:v1"
                        ),
                        None => format!(
                            "give a configured target's name ({}) or an image reference like nginx:1.27, ghcr.io/org/app:v1 or registry.example.com:5000/team/app@sha256:…",
                            shorten(&names.join(", "))
                        ),
                    };
                    issues.push(ImageArgIssue {
                        arg: arg.clone(),
                        problem: format!(
                            "it is not the name of a configured target, and not an image reference: {detail}"
                        ),
                        fix,
                    });
                    continue;
                }
            };
            let name = unique_name(&chosen.name, &out);
            out.push(Target { name, ..chosen });
        }
        if issues.is_empty() {
            Ok(out)
        } else {
            Err(ImageArgsError { issues })
        }
    }
}

/// Why `--check` arguments cannot be probed: every bad argument.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ImageArgsError {
    pub issues: Vec<ImageArgIssue>,
}

/// One `--check` argument that cannot be probed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageArgIssue {
    /// The argument as given.
    pub arg: String,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for ImageArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, i) in self.issues.iter().enumerate() {
            if n > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "invalid image argument `{}`: {}\n  fix: {}",
                shorten(&i.arg),
                i.problem,
                i.fix
            )?;
        }
        Ok(())
    }
}

/// [`did_you_mean`] over names known at run time.
fn did_you_mean_among<'a>(key: &str, valid: &[&'a str]) -> Option<&'a str> {
    let norm = |s: &str| s.to_lowercase().replace('-', "_");
    let key_n = norm(key);
    let limit = if key_n.chars().count() <= 4 { 1 } else { 2 };
    valid
        .iter()
        .map(|v| (edit_distance(&key_n, &norm(v)), *v))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v)
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
    /// The walk's problems, and the lines of the keys.
    walk: Walk,
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
        match parse_duration(text) {
            Ok(d) if d.is_zero() => {
                self.issue(
                    key,
                    "must be greater than zero",
                    format!(
                        "write a positive duration like `{key}: {}`",
                        humantime::format_duration(default)
                    ),
                );
                default
            }
            Ok(d) => d,
            Err(problem) => {
                self.issue(
                    key,
                    problem,
                    format!(
                        "write a positive number with a unit, like `{key}: 10s`, `5m` or `1h30m`"
                    ),
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
            match read_ca_file(&path) {
                Ok(certs) => settings.extra_roots = certs,
                Err((problem, fix)) => self.issue(ca_key, problem, fix),
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
                            format!("{s} is not an IP address or IP:port", s = quote(s)),
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
                    self.issue(
                        key,
                        format!("cannot read {}: {}", path.display(), io_words(&e)),
                        fix,
                    );
                }
            }
            Err(e) => self.issue(
                key,
                format!("cannot read {}: {}", path.display(), io_words(&e)),
                fix,
            ),
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
        let pods = self.pods(raw.pods);

        let docker_config = raw
            .docker_config
            .as_deref()
            .and_then(|p| self.credentials("docker_config", p));

        let targets_reported = self
            .walk
            .issues
            .iter()
            .any(|i| i.key_path().starts_with("targets"));
        if raw.targets.is_empty() && !targets_reported {
            self.issue(
                "targets",
                "no targets are configured",
                "add at least one target with an image, e.g. `targets: [{image: nginx:latest}]`",
            );
        }
        let mut names = HashSet::new();
        let mut targets = Vec::with_capacity(raw.targets.len());
        for (i, t) in raw.targets.into_iter().enumerate() {
            let key = format!("targets[{i}]");
            // A target without an image was reported by the walk.
            let Some(image_text) = t.image.as_deref() else {
                continue;
            };
            let image = match ImageRef::parse(image_text) {
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
            let name = t
                .name
                .clone()
                .unwrap_or_else(|| image_text.trim().to_owned());
            if name.trim().is_empty() {
                self.issue(
                    format!("{key}.name"),
                    "is empty",
                    "give the target a short unique name, or remove name to use the image",
                );
            } else if let Some(c) = name.chars().find(|c| !is_printable(*c)) {
                self.issue(
                    format!("{key}.name"),
                    format!(
                        "{} contains the control or invisible character U+{:04X}, which would break the --check table and text logs",
                        quote(&name),
                        u32::from(c)
                    ),
                    "use printable characters only: letters, digits, spaces and punctuation, like `name: team-a registry`",
                );
            } else if !names.insert(name.clone()) {
                self.issue(
                    format!("{key}.name"),
                    format!(
                        "the name {name} is used by an earlier target",
                        name = quote(&name)
                    ),
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

        let mut issues = std::mem::take(&mut self.walk.issues);
        for mut issue in self.issues {
            if let Some(line) = self.walk.line_of(&issue.key) {
                issue.key = format!("line {line}: {}", issue.key);
            }
            issues.push(issue);
        }
        if !issues.is_empty() {
            // In the order of the file; problems without a line last.
            issues.sort_by_key(|i| i.line().unwrap_or(usize::MAX));
            return Err(ConfigError {
                source_name: source_name.to_owned(),
                issues,
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
            pods,
        })
    }

    /// `pods:`; the node name from `$NODE_NAME` when the file does not give it.
    fn pods(&mut self, raw: Option<RawPods>) -> PodSettings {
        let Some(raw) = raw else {
            return PodSettings::default();
        };
        let node_name = raw
            .node_name
            .or_else(|| std::env::var("NODE_NAME").ok())
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty());
        if let Some(n) = &node_name
            && n.chars().any(|c| !is_printable(c) || c.is_whitespace())
        {
            self.issue(
                "pods.node_name",
                "is not a node name (it holds a space or a control character)",
                "write the node's name as `kubectl get nodes` shows it, or remove the key to read $NODE_NAME",
            );
        }
        if raw.watch && node_name.is_none() {
            self.issue(
                "pods.watch",
                "needs this node's name, and neither pods.node_name nor the NODE_NAME environment variable gives it",
                "set NODE_NAME from the downward API (env: [{name: NODE_NAME, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}], as deploy/components/pod-watch does), or write `node_name:` under pods",
            );
        }
        PodSettings {
            watch: raw.watch,
            pull_secrets: raw.pull_secrets.unwrap_or(true),
            node_name,
        }
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
                match did_you_mean_among(other, &["containerd", "crio", "none"]) {
                    Some(meant) => format!("{other} is not a runtime pullprobe follows; did you mean `{meant}`?", other = quote(other)),
                    None => format!("{other} is not a runtime pullprobe follows", other = quote(other)),
                },
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

/// Reads a CA bundle and parses every certificate in it, so a file the probe could not use is
/// a config error at load, naming the file and the block.
///
/// Go's `CertPool.AppendCertsFromPEM` (what containerd does with a `ca` file) skips a block
/// that is not a certificate, and the pull then fails as untrusted; pullprobe refuses the file
/// instead, since its own `ca_file` has no other use.
///
/// # Errors
/// What is wrong and how to fix it.
fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, (String, String)> {
    let shown = path.display();
    let pem_fix = || {
        format!(
            "give a PEM file with one or more -----BEGIN CERTIFICATE----- blocks; a binary (DER) certificate converts with `openssl x509 -inform der -in {shown} -out {shown}.pem`"
        )
    };
    let bytes = std::fs::read(path).map_err(|e| {
        (
            format!("cannot read {shown}: {}", io_words(&e)),
            "mount the CA bundle and give its path (relative paths are relative to the config file)".to_owned(),
        )
    })?;
    let text = String::from_utf8_lossy(&bytes);
    // The line of each `-----BEGIN CERTIFICATE-----`, in order: the n-th certificate the PEM
    // reader returns is the n-th of these.
    let begin_lines: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == "-----BEGIN CERTIFICATE-----")
        .map(|(i, _)| i + 1)
        .collect();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| (pem_problem(&shown.to_string(), &text, &e), pem_fix()))?;
    if certs.is_empty() {
        if x509_parser::parse_x509_certificate(&bytes).is_ok() {
            return Err((
                format!(
                    "{shown} is a binary (DER) certificate; ca_file is read as PEM text, as containerd reads its ca files"
                ),
                format!(
                    "convert it to PEM with `openssl x509 -inform der -in {shown} -out {shown}.pem` and set ca_file to {shown}.pem"
                ),
            ));
        }
        let others: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("-----BEGIN ")?.strip_suffix("-----"))
            .collect();
        let problem = if others.is_empty() {
            format!("{shown} contains no PEM certificate (no -----BEGIN CERTIFICATE----- line)")
        } else {
            format!(
                "{shown} contains no certificate, only {} block(s)",
                others.join(", ")
            )
        };
        return Err((problem, pem_fix()));
    }
    for (i, der) in certs.iter().enumerate() {
        let at = begin_lines.get(i).map_or_else(
            || format!("certificate {}", i + 1),
            |l| format!("the certificate block at line {l}"),
        );
        match x509_parser::parse_x509_certificate(der) {
            Ok(([], _)) => {}
            Ok(_) => {
                return Err((
                    format!(
                        "{shown}: {at} has extra data after the certificate (Go's x509.ParseCertificate refuses it)"
                    ),
                    format!(
                        "replace the block with the CA certificate exactly as the CA published it; `openssl x509 -in {shown} -noout -subject` shows the certificates openssl can read"
                    ),
                ));
            }
            Err(_) => {
                return Err((
                    format!(
                        "{shown}: {at} is not an X.509 certificate (its base64 text decodes, but not to a certificate)"
                    ),
                    format!(
                        "replace the block with the CA certificate in PEM form; `openssl x509 -in {shown} -noout -subject` shows whether a file holds a certificate"
                    ),
                ));
            }
        }
    }
    Ok(certs)
}

/// A PEM syntax error in words, with the line it is on.
pub(crate) fn pem_problem(shown: &str, text: &str, e: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error as E;
    let lines: Vec<&str> = text.lines().collect();
    let line_where =
        |pred: &dyn Fn(&str) -> bool| lines.iter().position(|l| pred(l)).map(|i| i + 1);
    match e {
        E::Base64Decode(_) => {
            // The first line inside a block with a character base64 does not use.
            let mut inside = false;
            let mut at = None;
            for (i, l) in lines.iter().enumerate() {
                let l = l.trim();
                if l.starts_with("-----BEGIN ") {
                    inside = true;
                } else if l.starts_with("-----END ") {
                    inside = false;
                } else if inside
                    && !l.contains(':')
                    && l.chars()
                        .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=')))
                {
                    at = Some(i + 1);
                    break;
                }
            }
            match at {
                Some(l) => format!(
                    "{shown} is not a valid PEM file: line {l} of a certificate block has characters that are not base64"
                ),
                None => format!(
                    "{shown} is not a valid PEM file: a certificate block is not valid base64 (truncated or altered)"
                ),
            }
        }
        E::MissingSectionEnd { .. } => {
            match line_where(&|l: &str| l.trim().starts_with("-----BEGIN ")) {
                Some(l) => format!(
                    "{shown} is not a valid PEM file: the block that starts at line {l} has no -----END line"
                ),
                None => format!("{shown} is not a valid PEM file: a block has no -----END line"),
            }
        }
        E::IllegalSectionStart { .. } => {
            match line_where(&|l: &str| {
                l.trim_start().starts_with("-----BEGIN") && !l.trim_end().ends_with("-----")
            }) {
                Some(l) => format!(
                    "{shown} is not a valid PEM file: line {l} is a malformed -----BEGIN line"
                ),
                None => format!("{shown} is not a valid PEM file: a -----BEGIN line is malformed"),
            }
        }
        E::SectionTooLarge => {
            format!("{shown} is not a valid PEM file: a block is larger than a certificate can be")
        }
        _ => format!("{shown} is not a valid PEM file"),
    }
}

/// Reads a duration as written in the config and in flags: a number with a unit (`10s`, `5m`,
/// `1h30m`, `500ms`).
///
/// # Errors
/// What is wrong, in words that complete "`interval` …": "`-5m` is negative", "`10` has no
/// unit".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("is empty".to_owned());
    }
    if let Ok(d) = humantime::parse_duration(t) {
        return Ok(d);
    }
    let shown = shorten(t);
    if t.starts_with('-') {
        Err(format!(
            "`{shown}` is negative; a duration is a positive number with a unit"
        ))
    } else if t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        Err(format!("`{shown}` has no unit (s, m or h)"))
    } else {
        Err(format!(
            "`{shown}` is not a duration (a number with a unit: s, m or h)"
        ))
    }
}

/// Whether a target name may hold `c`: not a control character (newline, tab, escape…) and
/// not an invisible formatting character (zero-width, bidirectional overrides), which would
/// make two names look alike or reorder a line of the table.
fn is_printable(c: char) -> bool {
    !c.is_control()
        && !matches!(
            c,
            '\u{00ad}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
        )
}

/// `s` in double quotes, for a message a person reads: quotes and backslashes stay as written,
/// control and invisible characters (see [`is_printable`]) are shown as `<U+000A>`. Unlike
/// `{:?}`, it never writes Rust escapes (`\"`, `\n`, `\u{1b}`).
pub(crate) fn quote(s: &str) -> String {
    format!("\"{}\"", visible(s))
}

/// `s` with control and invisible characters (see [`is_printable`]) written as `<U+000A>`.
fn visible(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if is_printable(c) {
            out.push(c);
        } else {
            let _ = write!(out, "<U+{:04X}>", u32::from(c));
        }
    }
    out
}

/// A serde data error (`invalid type: string "yes", expected a sequence`, `unknown field …`,
/// `missing field …`) in plain words that complete "KEY: …"; other text is passed through
/// with Rust escapes undone (it is then a message pullprobe's own types wrote).
pub(crate) fn serde_words(msg: &str) -> String {
    let ticked = |s: &str| -> Option<(String, String)> {
        let s = s.strip_prefix('`')?;
        let end = s.find('`')?;
        Some((s[..end].to_owned(), s[end + 1..].to_owned()))
    };
    let names = |rest: &str| -> String {
        rest.split('`')
            .skip(1)
            .step_by(2)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let pair = |rest: &str| -> Option<(String, String)> {
        let (unexpected, expected) = rest.rsplit_once(", expected ")?;
        Some((value_words(unexpected), expected_words(expected)))
    };
    if let Some((unexpected, expected)) = msg
        .strip_prefix("invalid type: ")
        .or_else(|| msg.strip_prefix("invalid value: "))
        .and_then(pair)
    {
        return format!("must be {expected}, not {unexpected}");
    }
    if let Some((len, expected)) = msg
        .strip_prefix("invalid length ")
        .and_then(|r| r.split_once(", expected "))
    {
        return format!("has {len} items; it must have {expected}");
    }
    if let Some((name, rest)) = msg.strip_prefix("unknown field ").and_then(ticked) {
        let known = names(&rest);
        return if known.is_empty() {
            format!("{} is not a known key here", quote(&name))
        } else {
            format!(
                "{} is not a known key here; the keys are {known}",
                quote(&name)
            )
        };
    }
    if let Some((name, rest)) = msg.strip_prefix("unknown variant ").and_then(ticked) {
        return format!("{} is not one of {}", quote(&name), names(&rest));
    }
    if let Some((name, _)) = msg.strip_prefix("missing field ").and_then(ticked) {
        return format!("the key {name} is missing");
    }
    if let Some((name, _)) = msg.strip_prefix("duplicate field ").and_then(ticked) {
        return format!("the key {name} is given twice");
    }
    unescape_debug(msg)
}

/// What a serde visitor expected, in plain words.
fn expected_words(expected: &str) -> String {
    let e = expected.trim();
    let e = e
        .strip_prefix("a ")
        .or_else(|| e.strip_prefix("an "))
        .unwrap_or(e);
    if e.starts_with("sequence") || e.starts_with("tuple") {
        "a list".to_owned()
    } else if e.starts_with("map") || e.starts_with("struct ") {
        "a mapping of keys".to_owned()
    } else if e.starts_with("bool") {
        "true or false".to_owned()
    } else if e.starts_with("string") || e.starts_with("borrowed string") {
        format!("text{}", &e[e.find(' ').map_or(e.len(), |i| i)..])
    } else if matches!(
        e,
        "u8" | "u16" | "u32" | "u64" | "i8" | "i16" | "i32" | "i64" | "usize" | "isize"
    ) {
        "a whole number".to_owned()
    } else if matches!(e, "f32" | "f64") {
        "a number".to_owned()
    } else {
        unescape_debug(expected.trim())
    }
}

/// A value as serde's `Unexpected` shows it (`string "yes"`, `integer `5``, `map`), in plain
/// words.
fn value_words(shown: &str) -> String {
    let tick = |s: &str| s.trim_matches('`').to_owned();
    if let Some(s) = shown.strip_prefix("string ") {
        let inner = s
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap_or(s);
        format!("the text {}", quote(&unescape_debug(inner)))
    } else if let Some(n) = shown
        .strip_prefix("integer ")
        .or_else(|| shown.strip_prefix("floating point "))
    {
        format!("the number {}", tick(n))
    } else if let Some(b) = shown.strip_prefix("boolean ") {
        tick(b)
    } else if let Some(c) = shown.strip_prefix("character ") {
        format!("the character {}", quote(&tick(c)))
    } else {
        match shown {
            "sequence" => "a list".to_owned(),
            "map" => "a mapping".to_owned(),
            "unit value" | "null" | "Option value" => "empty (null)".to_owned(),
            other => unescape_debug(other),
        }
    }
}

/// Undoes the escapes of Rust's `{:?}` (`\"`, `\\`, `\n`, `\u{1b}`) and quotes what they
/// stood for with [`quote`]'s `<U+…>` form, so that no Rust escape reaches a person.
fn unescape_debug(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let decoded = match chars.next() {
            Some('n') => '\n',
            Some('t') => '\t',
            Some('r') => '\r',
            Some('0') => '\0',
            Some('u') if chars.peek() == Some(&'{') => {
                chars.next();
                let hex: String = chars.by_ref().take_while(|c| *c != '}').collect();
                u32::from_str_radix(&hex, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\u{fffd}')
            }
            Some(other) => other,
            None => '\\',
        };
        out.push(decoded);
    }
    visible(&out)
}

/// A `serde_json` error in words: where it is (line and column, and the key just before it
/// when `text` is given and there is one) and what is wrong, never serde_json's own sentence.
/// Pass `None` for a document that holds secrets: a value cut at the error could be mistaken
/// for a key.
pub(crate) fn json_words(e: &serde_json::Error, text: Option<&[u8]>) -> String {
    use serde_json::error::Category;
    let (line, column) = (e.line(), e.column());
    let key = text.and_then(|t| key_before(t, line, column));
    let at = match &key {
        Some(k) => format!("line {line}, column {column} (at the key {})", quote(k)),
        None => format!("line {line}, column {column}"),
    };
    match e.classify() {
        Category::Eof => format!(
            "the JSON ends before it is complete at {at}: the file is cut short or a `}}`, `]` or `\"` is missing"
        ),
        Category::Syntax => {
            let text = e.to_string();
            let what = text
                .rsplit_once(" at line ")
                .map_or(text.as_str(), |(w, _)| w);
            let what = match what {
                "expected value" | "expected ident" => {
                    "a value was expected (\"text\", a number, true, false, null, {…} or […])"
                        .to_owned()
                }
                "invalid escape" | "unexpected end of hex escape" => {
                    "a string has a backslash escape JSON does not have".to_owned()
                }
                "invalid unicode code point" | "lone leading surrogate in hex escape" => {
                    "a \\u escape in a string is not a character".to_owned()
                }
                "invalid number" | "number out of range" => "a number is malformed".to_owned(),
                "recursion limit exceeded" => "objects and lists nest too deeply".to_owned(),
                "trailing characters" => "there is more text after the JSON document".to_owned(),
                "key must be a string" => "a key is not in double quotes".to_owned(),
                "trailing comma" => "there is a comma before a closing `}` or `]`".to_owned(),
                "control character (\\u0000-\\u001F) found while parsing a string" => {
                    "a string holds a control character (a raw newline or tab; write \\n or \\t)"
                        .to_owned()
                }
                w if w.starts_with("expected") => {
                    format!("{} was expected", w.trim_start_matches("expected "))
                }
                w => w.to_owned(),
            };
            format!("the JSON is not valid at {at}: {what}")
        }
        Category::Data => {
            let text = e.to_string();
            let what = text
                .rsplit_once(" at line ")
                .map_or(text.as_str(), |(w, _)| w);
            format!("at {at}: {}", serde_words(what))
        }
        Category::Io => "could not be read".to_owned(),
    }
}

/// The last `"key":` (JSON) or `key:` (YAML) at or before `line`/`column` (1-based) of
/// `text`: the key an error at that position is about, for messages.
pub(crate) fn key_before(text: &[u8], line: usize, column: usize) -> Option<String> {
    let text = String::from_utf8_lossy(text);
    let mut end = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            end += l.char_indices().nth(column).map_or(l.len(), |(b, _)| b);
            break;
        }
        end += l.len();
    }
    let end = end.min(text.len());
    // A position at a key itself (YAML reports a flow mapping's entry by its key).
    let at = text[end.saturating_sub(1)..].trim_start_matches(['"', ' ']);
    if let Some((word, _)) = at.split_once(':')
        && !word.is_empty()
        && word
            .trim_end_matches('"')
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && text[..end.saturating_sub(1)]
            .trim_end()
            .ends_with(['{', ',', '\n', '-'])
    {
        return Some(word.trim_end_matches('"').to_owned());
    }
    let before = &text[..end];
    // JSON: the last `"name"` followed by `:`.
    let mut rest = before;
    while let Some(colon) = rest.rfind(':') {
        let head = rest[..colon].trim_end();
        if let Some(h) = head.strip_suffix('"')
            && let Some(open) = h.rfind('"')
        {
            return Some(h[open + 1..].to_owned());
        }
        let word: String = head
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if !word.is_empty() {
            return Some(word);
        }
        rest = &rest[..colon];
    }
    None
}

/// An I/O error in words, without the `(os error 2)` suffix.
pub(crate) fn io_words(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::NotFound => "no such file".to_owned(),
        K::PermissionDenied => "permission denied".to_owned(),
        K::IsADirectory => "it is a directory".to_owned(),
        _ => crate::probe::os_text(e),
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
        let keys: Vec<_> = err.issues.iter().map(ConfigIssue::key_path).collect();
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
            text.starts_with("invalid configuration in test.yaml (8 problems):"),
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
        assert!(
            text.contains("line 4: targets[0].tls.ca_fil: unknown key; did you mean `ca_file`?"),
            "{text}"
        );
        let err = load("targets: [").unwrap_err();
        assert_eq!(err.issues[0].key, "line 1: column 10");
        assert!(
            err.issues[0].problem.starts_with("is not valid YAML: "),
            "{err}"
        );
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
            assert_eq!(
                e.issues[0].key, "line 3: targets[0].check_platform",
                "{hub}"
            );
            assert!(e.issues[0].problem.contains("counts as a pull"), "{e}");
            assert!(e.issues[0].fix.contains("pullprobe --check"), "{e}");
        }
    }

    #[test]
    fn timeout_longer_than_interval_is_rejected() {
        let err = load("interval: 5s\ntimeout: 10s\ntargets: [{image: nginx}]\n").unwrap_err();
        assert_eq!(err.issues[0].key_path(), "timeout");
        assert_eq!(err.issues[0].line(), Some(2));
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
        assert_eq!(keys, ["line 2: dns.hosts_file", "line 3: dns.resolv_conf"]);
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
            err.to_string()
                .contains("unknown key; did you mean `hosts_file`?"),
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
        assert_eq!(err.issues[0].arg, "Bad Ref");
    }

    /// Every fix is self-contained: none points at a file a node does not have.
    #[track_caller]
    fn assert_self_contained(err: &ConfigError) {
        for i in &err.issues {
            assert!(
                !i.fix.contains("README") && !i.fix.contains("examples/"),
                "{err}"
            );
            assert!(!i.fix.is_empty(), "{err}");
        }
    }

    #[test]
    fn the_pods_section_defaults_and_needs_a_node_name_to_watch() {
        let c = load("targets: [{image: nginx}]\n").unwrap();
        assert_eq!(c.pods, PodSettings::default());
        assert!(
            c.pods.pull_secrets,
            "pull secrets are read unless turned off"
        );
        let c = load(
            "targets: [{image: nginx}]\npods: {watch: true, pull_secrets: false, node_name: worker-7}\n",
        )
        .unwrap();
        assert_eq!(
            c.pods,
            PodSettings {
                watch: true,
                pull_secrets: false,
                node_name: Some("worker-7".into()),
            }
        );
        let err = load("targets: [{image: nginx}]\npods: {node_name: \"a b\", wacth: true}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pods.wacth: unknown key; did you mean `watch`?"),
            "{err}"
        );
        assert!(err.contains("pods.node_name: is not a node name"), "{err}");
        // Without pods.node_name the name comes from $NODE_NAME (the downward API).
        if std::env::var_os("NODE_NAME").is_none() {
            let err = load("targets: [{image: nginx}]\npods: {watch: true}\n")
                .unwrap_err()
                .to_string();
            assert!(err.contains("pods.watch: needs this node's name"), "{err}");
            assert!(err.contains("fieldPath: spec.nodeName"), "{err}");
        }
    }

    #[test]
    fn three_typos_are_all_reported_with_line_key_suggestion_and_fix() {
        let err =
            load("targets:\n  - imge: nginx\n    plain_htp: true\ntimeot: 10s\n").unwrap_err();
        let text = err.to_string();
        assert_eq!(
            text,
            "invalid configuration in test.yaml (3 problems):\n\
             \x20 line 2: targets[0].imge: unknown key; did you mean `image`?\n\
             \x20   fix: rename `imge` to `image` (the keys of a target are name, image, docker_config, plain_http, tls, check_platform)\n\
             \x20 line 3: targets[0].plain_htp: unknown key; did you mean `plain_http`?\n\
             \x20   fix: rename `plain_htp` to `plain_http` (the keys of a target are name, image, docker_config, plain_http, tls, check_platform)\n\
             \x20 line 4: timeot: unknown key; did you mean `timeout`?\n\
             \x20   fix: rename `timeot` to `timeout` (the keys of the top level are interval, timeout, dns, docker_config, targets, node, pods)"
        );
        assert_self_contained(&err);
    }

    #[test]
    fn unknown_keys_are_rejected_at_every_level_with_the_keys_valid_there() {
        let cases = [
            (
                "dns:\n  resolvconf: /x\n",
                "dns.resolvconf",
                "did you mean `resolv_conf`?",
            ),
            (
                "node:\n  runtim: crio\n",
                "node.runtim",
                "did you mean `runtime`?",
            ),
            (
                "node:\n  kubelt: {}\n",
                "node.kubelt",
                "did you mean `kubelet`?",
            ),
            (
                "node:\n  containerd:\n    config-path: /x\n",
                "node.containerd.config-path",
                "did you mean `config_path`?",
            ),
            (
                "node:\n  crio:\n    registries_conf_dir: /x\n",
                "node.crio.registries_conf_dir",
                "did you mean `registries_conf_d`?",
            ),
            (
                "node:\n  kubelet:\n    credential_provider_bindir: /x\n",
                "node.kubelet.credential_provider_bindir",
                "did you mean `credential_provider_bin_dir`?",
            ),
            (
                "targets:\n  - image: a\n    tls: {insecure: true}\n",
                "targets[0].tls.insecure",
                "unknown key",
            ),
            (
                "plain_http: true\n",
                "plain_http",
                "`plain_http` belongs under `targets[]`",
            ),
            (
                "targets:\n  - image: a\n    timeout: 5s\n",
                "targets[0].timeout",
                "`timeout` belongs at the top level",
            ),
            ("color: blue\n", "color", "unknown key"),
        ];
        for (yaml, key, problem) in cases {
            let yaml = format!("{yaml}targets: [{{image: nginx}}]\n");
            let yaml = yaml.replacen(
                "targets: [{image: nginx}]\n",
                "",
                usize::from(yaml.starts_with("targets")),
            );
            let err = load(&yaml).unwrap_err();
            let issue = err
                .issues
                .iter()
                .find(|i| i.key_path() == key)
                .unwrap_or_else(|| panic!("{key}: {err}"));
            assert!(
                issue.problem.starts_with(problem) || issue.problem.contains(problem),
                "{err}"
            );
            assert!(issue.line().is_some(), "{err}");
            assert_self_contained(&err);
        }
        let err = load("node:\n  runtime: cri-o\ntargets: [{image: nginx}]\n").unwrap_err();
        assert!(
            err.issues[0].problem.ends_with("did you mean `crio`?"),
            "{err}"
        );
        assert_eq!(err.issues[0].key, "line 2: node.runtime");
    }

    #[test]
    fn wrong_shapes_and_duplicates_are_reported_with_their_lines() {
        let err = load(concat!(
            "timeout: [10s]\n",
            "dns: [a]\n",
            "targets:\n",
            "  - image: ghcr.io/a/b\n",
            "    plain_http: 1\n",
            "    image: ghcr.io/c/d\n",
            "  - ~\n",
            "  - name: x\n",
            "interval: 5m\n",
            "interval: 6m\n",
        ))
        .unwrap_err();
        let got: Vec<(String, String)> = err
            .issues
            .iter()
            .map(|i| (i.key.clone(), i.problem.clone()))
            .collect();
        let want = [
            ("line 1: timeout", "must be a single value, not a list"),
            (
                "line 2: dns",
                "must be a mapping of keys (hosts_file, resolv_conf, nameservers), not a list",
            ),
            (
                "line 5: targets[0].plain_http",
                "must be true or false, not the value `1`",
            ),
            (
                "line 6: targets[0].image",
                "is given twice (first at line 4)",
            ),
            ("line 7: targets[1]", "is empty"),
            ("line 8: targets[2]", "has no image"),
            ("line 10: interval", "is given twice (first at line 9)"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, p)| ((*k).to_owned(), (*p).to_owned()))
            .collect();
        assert_eq!(got, want, "{err}");
        assert_self_contained(&err);

        let err = load("- image: nginx\n").unwrap_err();
        assert_eq!(err.issues[0].key, "line 1: (file)");
        assert!(
            err.issues[0]
                .problem
                .starts_with("must be a mapping of keys (interval, timeout"),
            "{err}"
        );
        let err = load("targets: nginx\n").unwrap_err();
        assert_eq!(err.issues.len(), 1, "{err}");
        assert_eq!(
            err.issues[0].problem,
            "must be a list, not the value `nginx`"
        );
        // YAML 1.1 booleans are read as serde-saphyr reads them; quoted too.
        let c = load("targets:\n  - image: a/b\n    plain_http: yes\n  - image: c/d\n    plain_http: 'off'\n").unwrap();
        assert!(c.targets[0].plain_http);
        assert!(!c.targets[1].plain_http);
    }

    #[test]
    fn durations_say_what_a_duration_looks_like() {
        for (value, problem) in [
            (
                "-5m",
                "`-5m` is negative; a duration is a positive number with a unit",
            ),
            (
                "yes",
                "`yes` is not a duration (a number with a unit: s, m or h)",
            ),
            ("10", "`10` has no unit (s, m or h)"),
            ("\"\"", "is empty"),
            ("0s", "must be greater than zero"),
        ] {
            let err =
                load(&format!("interval: {value}\ntargets: [{{image: nginx}}]\n")).unwrap_err();
            assert_eq!(err.issues[0].key, "line 1: interval");
            assert_eq!(err.issues[0].problem, problem);
            assert!(
                err.issues[0].fix.contains("10s") || err.issues[0].fix.contains("15m"),
                "{err}"
            );
            assert!(!err.to_string().contains("expected number"), "{err}");
        }
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration(" 500ms "), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn yaml_limits_are_stated_in_plain_words() {
        // 250001 values: the node-count limit, said as such.
        let mut yaml = String::from("targets:\n");
        for _ in 0..125_001 {
            yaml.push_str("- {image: a}\n");
        }
        let err = load(&yaml).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("has more than 250000 values (keys, values and list items); pullprobe reads at most 250000"), "{text}");
        assert!(
            !text.contains("budget") && !text.contains("Nodes"),
            "{text}"
        );
        // Nesting.
        let deep = format!(
            "targets: {}{}\n",
            "[".repeat(MAX_CONFIG_DEPTH + 4),
            "]".repeat(MAX_CONFIG_DEPTH + 4)
        );
        let err = load(&deep).unwrap_err();
        assert!(
            err.issues[0]
                .problem
                .starts_with("nests lists and mappings more than 16 levels deep"),
            "{err}"
        );
        // A second document.
        let err = load("targets: [{image: a}]\n---\ntargets: [{image: b}]\n").unwrap_err();
        assert!(
            err.issues[0]
                .problem
                .starts_with("has more than one YAML document"),
            "{err}"
        );
        assert_eq!(err.issues[0].line(), Some(3), "{err}");
        // Syntax: the parser's sentence, without its snippet or `<input>`.
        let err = load("targets:\n  - image: [a\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("is not valid YAML: "), "{text}");
        assert!(!text.contains("<input>") && !text.contains("-->"), "{text}");
        assert_self_contained(&err);
        // The file itself: checked before it is read.
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.yaml");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(MAX_CONFIG_BYTES + (1 << 20)).unwrap();
        let err = Config::load(&big).unwrap_err();
        assert_eq!(
            err.issues[0].problem,
            "is 17 MiB; pullprobe reads config files of at most 16 MiB"
        );
        let err = Config::load(&dir.path().join("missing.yaml")).unwrap_err();
        assert_eq!(err.issues[0].problem, "cannot read the file: no such file");
        std::fs::write(
            dir.path().join("latin1.yaml"),
            b"targets: [{image: caf\xe9}]\n",
        )
        .unwrap();
        let err = Config::load(&dir.path().join("latin1.yaml")).unwrap_err();
        assert_eq!(err.issues[0].problem, "is not UTF-8 text");
    }

    #[test]
    fn target_names_must_be_printable() {
        for name in [
            "\"a\\nb\"",
            "\"tab\\there\"",
            "\"esc\\e[31m\"",
            "\"rtl\\u202eevil\"",
            "\"zero\\u200bwidth\"",
        ] {
            let err = load(&format!("targets:\n  - name: {name}\n    image: nginx\n")).unwrap_err();
            assert_eq!(err.issues[0].key, "line 2: targets[0].name", "{name}");
            assert!(
                err.issues[0]
                    .problem
                    .contains("control or invisible character"),
                "{err}"
            );
            assert!(
                !err.to_string().contains('\u{1b}'),
                "the message itself escapes it"
            );
        }
        let c = load("targets:\n  - name: café registry (eu)\n    image: nginx\n").unwrap();
        assert_eq!(c.targets[0].name, "café registry (eu)");
    }

    /// A CA file for `ca_file`, and the issue it gives (or none).
    fn ca_issue(contents: &[u8]) -> Option<ConfigIssue> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), contents).unwrap();
        let yaml =
            "targets:\n  - image: registry.example.com/app\n    tls:\n      ca_file: ca.pem\n";
        match Config::from_yaml("t.yaml", yaml, dir.path()) {
            Ok(c) => {
                assert!(!c.targets[0].tls.extra_roots.is_empty());
                None
            }
            Err(e) => {
                assert_eq!(e.issues.len(), 1, "{e}");
                let mut issue = e.issues[0].clone();
                assert_eq!(issue.key, "line 4: targets[0].tls.ca_file");
                let shown = dir.path().join("ca.pem").display().to_string();
                assert!(issue.problem.contains(&shown), "names the file: {e}");
                issue.problem = issue.problem.replace(&shown, "CA");
                issue.fix = issue.fix.replace(&shown, "CA");
                Some(issue)
            }
        }
    }

    #[test]
    fn ca_files_are_fully_parsed_at_load() {
        let cert = rcgen::generate_simple_self_signed(vec!["ca.test".to_owned()]).unwrap();
        assert_eq!(ca_issue(cert.cert.pem().as_bytes()), None);

        let bad_char =
            ca_issue(b"-----BEGIN CERTIFICATE-----\nMIIB!!!\n-----END CERTIFICATE-----\n").unwrap();
        assert_eq!(
            bad_char.problem,
            "CA is not a valid PEM file: line 2 of a certificate block has characters that are not base64"
        );
        assert!(!bad_char.problem.contains("InvalidCharacter"));

        // Valid base64, not a certificate: a config error now, not a later tls_untrusted.
        let not_cert =
            ca_issue(b"-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n")
                .unwrap();
        assert_eq!(
            not_cert.problem,
            "CA: the certificate block at line 1 is not an X.509 certificate (its base64 text decodes, but not to a certificate)"
        );

        let der = ca_issue(cert.cert.der()).unwrap();
        assert_eq!(
            der.problem,
            "CA is a binary (DER) certificate; ca_file is read as PEM text, as containerd reads its ca files"
        );
        assert_eq!(
            der.fix,
            "convert it to PEM with `openssl x509 -inform der -in CA -out CA.pem` and set ca_file to CA.pem"
        );

        let key_only = ca_issue(cert.signing_key.serialize_pem().as_bytes()).unwrap();
        assert_eq!(
            key_only.problem,
            "CA contains no certificate, only PRIVATE KEY block(s)"
        );
        let empty = ca_issue(b"").unwrap();
        assert_eq!(
            empty.problem,
            "CA contains no PEM certificate (no -----BEGIN CERTIFICATE----- line)"
        );
        assert!(
            empty
                .fix
                .contains("openssl x509 -inform der -in CA -out CA.pem"),
            "{}",
            empty.fix
        );

        let pem = cert.cert.pem();
        let truncated = ca_issue(&pem.as_bytes()[..pem.len() - 30]).unwrap();
        assert_eq!(
            truncated.problem,
            "CA is not a valid PEM file: the block that starts at line 1 has no -----END line"
        );
        let mut trailing = cert.cert.der().to_vec();
        trailing.extend_from_slice(b"junk");
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &trailing);
        let trailing = ca_issue(
            format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n").as_bytes(),
        )
        .unwrap();
        assert_eq!(
            trailing.problem,
            "CA: the certificate block at line 1 has extra data after the certificate (Go's x509.ParseCertificate refuses it)"
        );
    }

    #[test]
    fn check_arguments_name_targets_or_images_and_refuse_ambiguity() {
        let c = load(concat!(
            "targets:\n",
            "  - name: secure\n    image: registry.example.com/secure:1\n    plain_http: true\n",
            "  - name: Hub Probe\n    image: docker.io/ratelimitpreview/test:latest\n",
            "  - image: nginx:1.27\n",
        ))
        .unwrap();
        // A name that is not an image reference: that target, with its own settings.
        let t = c.targets_for_images(&["Hub Probe".into()]).unwrap();
        assert_eq!(t[0].name, "Hub Probe");
        // A target whose name is its image (no `name:`): that target.
        let t = c.targets_for_images(&["nginx:1.27".into()]).unwrap();
        assert_eq!(t[0].name, "nginx:1.27");
        // A target's image, written in any form that normalises to it: that target.
        let t = c
            .targets_for_images(&["registry.example.com/secure:1".into()])
            .unwrap();
        assert_eq!(t[0].name, "secure");
        assert!(t[0].plain_http);
        // Another image on that host lends the settings; Docker Hub images lend nothing here.
        let t = c
            .targets_for_images(&["registry.example.com/other".into(), "redis".into()])
            .unwrap();
        assert_eq!(t[0].name, "registry.example.com/other");
        assert!(t[0].plain_http);
        assert!(!t[1].plain_http);
        // `secure` is the target, not docker.io/library/secure:latest.
        let t = c.targets_for_images(&["secure".into()]).unwrap();
        assert_eq!((t[0].name.as_str(), t[0].plain_http), ("secure", true));
        // A name that is also another target's image: refused, both spelled out.
        let both = load(concat!(
            "targets:\n",
            "  - name: secure\n    image: registry.example.com/secure:1\n",
            "  - name: public\n    image: secure\n",
        ))
        .unwrap();
        let err = both.targets_for_images(&["secure".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid image argument `secure`: it is both the name of the configured target `secure` (image registry.example.com/secure:1) and the image docker.io/library/secure:latest\n  \
             fix: say which: for the target, give its image, `pullprobe --check registry.example.com/secure:1`; for the other image, write it in full, `pullprobe --check docker.io/library/secure:latest`"
        );
        // A name written as a reference that means another image: refused too.
        let written =
            load("targets:\n  - name: team/app\n    image: ghcr.io/team/app:1\n").unwrap();
        assert!(written.targets_for_images(&["team/app".into()]).is_err());
        // Neither a target nor an image: a near target name is suggested.
        let err = c
            .targets_for_images(&["Hub Prbe".into(), "Bad Ref".into()])
            .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("invalid image argument `Hub Prbe`: it is not the name of a configured target, and not an image reference: "), "{text}");
        assert!(
            text.contains("did you mean the configured target `Hub Probe`?"),
            "{text}"
        );
        assert!(
            text.contains("\ninvalid image argument `Bad Ref`: "),
            "{text}"
        );
        assert!(
            !text.contains("configuration in the command line"),
            "{text}"
        );
    }

    #[test]
    fn every_key_of_the_readme_example_is_in_the_schema() {
        let readme = include_str!("../README.md");
        let start = readme.find("## Configuration\n\n```yaml\n").unwrap()
            + "## Configuration\n\n```yaml\n".len();
        let yaml = &readme[start..start + readme[start..].find("```").unwrap()];
        assert!(yaml.contains("credential_provider_bin_dir"), "{yaml}");
        let mut walk = Walk::default();
        let root = parse_tree(yaml).unwrap();
        let raw = walk.config(root.as_ref());
        assert!(walk.issues.is_empty(), "{:?}", walk.issues);
        assert_eq!(raw.targets.len(), 1);
        assert!(
            raw.node
                .is_some_and(|n| n.crio.is_some() && n.kubelet.is_some() && n.containerd.is_some())
        );
        // And every key of the schema appears in the example.
        for section in SECTIONS {
            for key in section.keys {
                assert!(
                    yaml.contains(&format!("{key}:")),
                    "{key} is not in the README example"
                );
            }
        }
    }

    #[test]
    fn did_you_mean_is_for_typos_only() {
        assert_eq!(did_you_mean("timeot", TOP.keys), Some("timeout"));
        assert_eq!(did_you_mean("Timeout", TOP.keys), Some("timeout"));
        assert_eq!(
            did_you_mean("docker-config", TOP.keys),
            Some("docker_config")
        );
        assert_eq!(did_you_mean("targetz", TOP.keys), Some("targets"));
        assert_eq!(did_you_mean("colour", TOP.keys), None);
        assert_eq!(did_you_mean("dn", TOP.keys), Some("dns"));
        assert_eq!(did_you_mean("x", TOP.keys), None);
    }

    #[test]
    fn quote_shows_control_characters_by_code_and_quotes_as_written() {
        assert_eq!(quote("a\"b\\c"), "\"a\"b\\c\"");
        assert_eq!(
            quote("x\ny\u{1b}z\u{200b}"),
            "\"x<U+000A>y<U+001B>z<U+200B>\""
        );
        assert_eq!(quote("é"), "\"é\"");
    }

    #[test]
    fn serde_messages_are_put_in_plain_words() {
        for (serde, want) in [
            (
                "invalid type: string \"yes\", expected a sequence",
                "must be a list, not the text \"yes\"",
            ),
            (
                "invalid type: string \"a\\\"b\\n\", expected a string (quote it)",
                "must be text (quote it), not the text \"a\"b<U+000A>\"",
            ),
            (
                "invalid type: integer `5`, expected a boolean",
                "must be true or false, not the number 5",
            ),
            (
                "invalid type: map, expected struct RawEnv",
                "must be a mapping of keys, not a mapping",
            ),
            (
                "invalid type: null, expected u32",
                "must be a whole number, not empty (null)",
            ),
            (
                "unknown field `bogus`, expected one of `name`, `value`",
                "\"bogus\" is not a known key here; the keys are name, value",
            ),
            (
                "unknown variant `x`, expected `a` or `b`",
                "\"x\" is not one of a, b",
            ),
            ("missing field `name`", "the key name is missing"),
        ] {
            let got = serde_words(serde);
            assert_eq!(got, want, "{serde}");
            assert!(crate::outcome::library_text(&got).is_none(), "{got}");
        }
    }

    #[test]
    fn json_errors_name_the_position_and_key_in_words() {
        let words = |text: &str| {
            let e = serde_json::from_str::<serde_json::Value>(text).unwrap_err();
            json_words(&e, Some(text.as_bytes()))
        };
        assert_eq!(
            words(r#"{"auths":{"#),
            "the JSON ends before it is complete at line 1, column 10 (at the key \"auths\"): the file is cut short or a `}`, `]` or `\"` is missing"
        );
        let got = words("{\"a\": 1,}");
        assert!(
            got.starts_with("the JSON is not valid at line 1, column 9"),
            "{got}"
        );
        assert!(!got.contains("trailing comma"), "{got}");
        let got = words("{\"a\": 1} x");
        assert!(
            got.ends_with("there is more text after the JSON document"),
            "{got}"
        );
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct T {
            n: u32,
        }
        let text = "{\n  \"n\": \"seven\"\n}";
        let e = serde_json::from_str::<T>(text).unwrap_err();
        assert_eq!(
            json_words(&e, Some(text.as_bytes())),
            "at line 2, column 14 (at the key \"n\"): must be a whole number, not the text \"seven\""
        );
    }

    #[test]
    fn user_text_in_config_messages_has_no_rust_escapes() {
        let err = load(
            "targets:\n  - name: \"a\\\"b\"\n    image: nginx\n  - name: \"a\\\"b\"\n    image: alpine\n  - name: \"x\\ty\"\n    image: busybox\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("the name \"a\"b\" is used by an earlier target"),
            "{err}"
        );
        assert!(
            err.contains("\"x<U+0009>y\" contains the control or invisible character U+0009"),
            "{err}"
        );
        for escape in ["\\\"", "\\t", "\\u{"] {
            assert!(!err.contains(escape), "{escape} in {err}");
        }
    }

    #[test]
    fn a_key_with_control_characters_is_shown_by_code() {
        let err = load("\"ti\\u001bme\\nx\": 1\ntargets:\n  - image: nginx\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 1: ti<U+001B>me<U+000A>x: unknown key"),
            "{err}"
        );
        assert!(!err.contains('\u{1b}'), "{err}");
    }
}
