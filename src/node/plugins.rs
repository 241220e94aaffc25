//! kubelet's credential-provider plugins, run the way kubelet runs them.
//!
//! Mirrors kubelet's `pkg/credentialprovider/plugin` (`config.go`, `plugin.go`, `plugins.go`)
//! and the API types of `k8s.io/kubelet` (`config/v1*` `CredentialProviderConfig`,
//! `pkg/apis/credentialprovider/v1*`):
//!
//! - **Config** (`readCredentialProviderConfig`, `decode`): `--image-credential-provider-config`
//!   is a file, or a directory whose `*.json`, `*.yaml` and `*.yml` files are read in byte
//!   order and merged (a provider name twice across files is an error). Each document is
//!   decoded strictly (unknown and repeated fields are errors), must be
//!   `kind: CredentialProviderConfig` of `kubelet.config.k8s.io/v1`, `v1beta1` or `v1alpha1`
//!   (`tokenAttributes` exists only in `v1`), and is then checked as
//!   `validateCredentialProviderConfig` does; every problem is reported at once, each naming
//!   the file, the key, the problem and the fix.
//! - **Binaries** (`RegisterCredentialProviderPlugins`): kubelet refuses to start when the bin
//!   directory or a provider's executable (`<bin_dir>/<name>`) is missing. A missing bin
//!   directory fails [`Plugins::load`]; a missing or non-executable binary is a load warning
//!   and a [`PluginFailureReason::MissingBinary`] failure whenever the provider is asked.
//! - **Which providers are asked** (`isImageAllowed`): those with a `matchImages` entry that
//!   matches the image's normalised name (`registry/repository`, no tag) with kubelet's
//!   `URLsMatchStr` (per-label globs, same port, path prefix).
//! - **Cache** (`pluginProvider.provide`, `getCachedCredentials`): per provider, looked up by
//!   image, then registry (`parseRegistry`: the name up to the first `/`), then `<global>`;
//!   an entry is used while `now <= expiresAt`. A response is cached under the key its
//!   `cacheKeyType` names for its `cacheDuration`, or the provider's `defaultCacheDuration`
//!   when it has none; a duration of 0 is never cached. Concurrent asks for the same image
//!   share one run (`singleflight`).
//! - **Exec** (`execPlugin.ExecPlugin`): `<bin_dir>/<name> args…` with this process's
//!   environment plus the provider's `env` (which wins), the request
//!   `{"kind":"CredentialProviderRequest","apiVersion":"<provider apiVersion>","image":"…"}`
//!   on stdin, killed after one minute ([`EXEC_TIMEOUT`]) — or at the caller's deadline,
//!   whichever comes first.
//! - **Response** (`ExecPlugin`, `decodeResponse`): JSON whose `apiVersion` must equal the
//!   provider's `apiVersion`, `kind` must be `CredentialProviderResponse`, decoded strictly;
//!   `cacheKeyType` must be `Image`, `Registry` or `Global`; `cacheDuration` is an optional Go
//!   duration string; `auth` maps a `matchImages`-style key to `username`/`password`.
//!
//! Where pullprobe differs, on purpose:
//! - kubelet logs a failing plugin and carries on without its credentials; here each failure
//!   is a value ([`PluginFailure`]) naming the provider and what went wrong — the first line of
//!   stderr, the timeout, or which field of the response is wrong — and never the plugin's
//!   stdout or a credential.
//! - A provider with `tokenAttributes` (service-account-token mode, KEP-4412) gets a token
//!   kubelet requests for the pod being started; a node agent has no pod and no token, so
//!   such a provider is not run: it is reported as
//!   [`PluginFailureReason::ServiceAccountToken`].
//! - The plugin runs with this process's environment, not kubelet's: give the agent the
//!   variables the plugin needs (cloud credentials, proxy).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Unexpected, Visitor};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::config::{ConfigError, ConfigIssue};
use crate::credentials::{
    Credential, CredentialSource, Json, Keyring, Secret, is_schemeless_url, parse_json,
    urls_match_str,
};
use crate::reference::ImageRef;

/// kubelet's catch-all timeout for one plugin run (`ExecPlugin`:
/// `context.WithTimeout(ctx, 1*time.Minute)`).
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(60);

/// The `apiVersion`s kubelet decodes a `CredentialProviderConfig` from.
pub const CONFIG_API_VERSIONS: [&str; 3] = [
    "kubelet.config.k8s.io/v1",
    "kubelet.config.k8s.io/v1beta1",
    "kubelet.config.k8s.io/v1alpha1",
];

/// The provider `apiVersion`s kubelet speaks to plugins (`apiVersions` in `plugin.go`),
/// sorted as kubelet lists them in its error.
pub const PROVIDER_API_VERSIONS: [&str; 3] = [
    "credentialprovider.kubelet.k8s.io/v1",
    "credentialprovider.kubelet.k8s.io/v1alpha1",
    "credentialprovider.kubelet.k8s.io/v1beta1",
];

const CONFIG_KIND: &str = "CredentialProviderConfig";
const CONFIG_V1: &str = "kubelet.config.k8s.io/v1";
const PROVIDER_V1: &str = "credentialprovider.kubelet.k8s.io/v1";
const RESPONSE_KIND: &str = "CredentialProviderResponse";
/// `globalCacheKey`: angle brackets keep it apart from any image or registry name.
const GLOBAL_CACHE_KEY: &str = "<global>";
/// `validCacheTypes` of `tokenAttributes.cacheType`, sorted.
const TOKEN_CACHE_TYPES: [&str; 2] = ["ServiceAccount", "Token"];

/// The configured credential-provider plugins. Cheap to clone and share: the providers and
/// their caches live behind one `Arc`.
#[derive(Clone)]
pub struct Plugins {
    inner: Arc<Inner>,
}

struct Inner {
    config_path: PathBuf,
    bin_dir: PathBuf,
    exec_timeout: Duration,
    providers: Vec<Provider>,
    warnings: Vec<ConfigIssue>,
}

impl fmt::Debug for Plugins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugins")
            .field("config_path", &self.inner.config_path)
            .field("bin_dir", &self.inner.bin_dir)
            .field("exec_timeout", &self.inner.exec_timeout)
            .field(
                "providers",
                &self
                    .inner
                    .providers
                    .iter()
                    .map(|p| &p.config)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// One provider as configured (read-only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderConfig {
    /// The executable's name in the bin directory.
    pub name: String,
    pub match_images: Vec<String>,
    /// Used when a response has no `cacheDuration`; zero means no caching.
    pub default_cache_duration: Duration,
    /// The `credentialprovider.kubelet.k8s.io` version spoken to the plugin.
    pub api_version: String,
    pub args: Vec<String>,
    /// Added to this process's environment; values are secret (cloud keys, often).
    pub env: Vec<(String, Secret)>,
    /// Set when the provider runs in service-account-token mode.
    pub token_attributes: Option<TokenAttributes>,
    /// The file the provider was read from (for messages).
    pub file: PathBuf,
}

/// `tokenAttributes` of a provider (service-account-token mode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenAttributes {
    pub service_account_token_audience: String,
    pub cache_type: String,
    pub require_service_account: bool,
    pub required_service_account_annotation_keys: Vec<String>,
    pub optional_service_account_annotation_keys: Vec<String>,
}

struct Provider {
    config: ProviderConfig,
    /// `cacheEntry`s by key (image, registry or `<global>`).
    cache: Mutex<HashMap<String, CacheEntry>>,
    /// `singleflight.Group`: one run per image at a time.
    inflight: Mutex<HashMap<String, Arc<OnceCell<ExecResult>>>>,
}

#[derive(Clone)]
struct CacheEntry {
    keyring: Keyring,
    /// `None`: beyond what `Instant` can hold, so never.
    expires_at: Option<Instant>,
}

type ExecResult = Result<Response, (PluginFailureReason, String)>;

/// What one ask of the plugins gave for an image.
#[derive(Clone, Debug, Default)]
pub struct PluginOutcome {
    /// The providers that answered (from a run or from the cache), in config order.
    pub answers: Vec<PluginAnswer>,
    /// The providers that were asked and failed, in config order.
    pub failures: Vec<PluginFailure>,
}

/// A provider's answer.
#[derive(Clone, Debug)]
pub struct PluginAnswer {
    pub provider: String,
    /// The response's `auth` map, each entry's source being `plugin NAME`.
    pub keyring: Keyring,
    /// Taken from the cache, without running the plugin.
    pub cached: bool,
}

/// A provider that was asked and gave nothing. Its `Display` is one sentence naming the
/// provider; it never holds the plugin's stdout or a credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginFailure {
    pub provider: String,
    pub reason: PluginFailureReason,
    /// What went wrong, after "credential provider plugin NAME ".
    pub message: String,
}

impl fmt::Display for PluginFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "credential provider plugin {} {}",
            self.provider, self.message
        )
    }
}

/// Why a provider gave nothing: a closed set, for labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PluginFailureReason {
    /// `tokenAttributes` is set: kubelet passes the pod's service-account token, which a
    /// node agent cannot get, so the plugin is not run.
    ServiceAccountToken,
    /// `<bin_dir>/<name>` does not exist or is not executable.
    MissingBinary,
    /// The executable exists but could not be started.
    CannotRun,
    /// Killed at kubelet's exec timeout or the caller's deadline.
    Timeout,
    /// Exited with a non-zero status or was killed by a signal.
    Exit,
    /// Printed something that is not a valid `CredentialProviderResponse`.
    BadResponse,
}

impl PluginFailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginFailureReason::ServiceAccountToken => "service_account_token",
            PluginFailureReason::MissingBinary => "missing_binary",
            PluginFailureReason::CannotRun => "cannot_run",
            PluginFailureReason::Timeout => "timeout",
            PluginFailureReason::Exit => "exit",
            PluginFailureReason::BadResponse => "bad_response",
        }
    }
}

impl PluginOutcome {
    /// Every answer in one keyring, as `externalCredentialProviderKeyring.Lookup` builds it:
    /// each provider's `auth` added in config order to one `BasicDockerKeyring`, so keys of all
    /// providers are sorted together and, under the same key, the earlier provider comes
    /// first.
    pub fn keyring(&self) -> Keyring {
        Keyring::merged(self.answers.iter().map(|a| &a.keyring))
    }

    /// For each answer none of whose keys matches `image` the way kubelet matches (so kubelet
    /// would not use it), a sentence saying so.
    pub fn unmatched_notes(&self, image: &ImageRef) -> Vec<String> {
        self.answers
            .iter()
            .filter(|a| a.keyring.lookup_all(image).is_empty())
            .map(|a| {
                let keys: Vec<String> = a.keyring.keys().map(crate::config::quote).collect();
                if keys.is_empty() {
                    format!(
                        "credential provider plugin {} answered with no credentials",
                        a.provider
                    )
                } else {
                    format!(
                        "credential provider plugin {} answered with credentials for {}, none of \
                         which matches {}/{} the way kubelet matches",
                        a.provider,
                        keys.join(", "),
                        image.registry(),
                        image.repository()
                    )
                }
            })
            .collect()
    }
}

// ---- loading -----------------------------------------------------------------------------

impl Plugins {
    /// Reads `--image-credential-provider-config` (a file or a directory) and checks
    /// `--image-credential-provider-bin-dir`, as kubelet's `RegisterCredentialProviderPlugins`.
    ///
    /// # Errors
    /// When the bin directory is missing, a config file cannot be read or decoded, or the
    /// config is invalid; the error lists every problem with its file, key and fix.
    pub fn load(config_path: &Path, bin_dir: &Path) -> Result<Self, ConfigError> {
        Self::load_with_exec_timeout(config_path, bin_dir, EXEC_TIMEOUT)
    }

    /// [`Plugins::load`] with another exec timeout than kubelet's (for tests).
    ///
    /// # Errors
    /// As [`Plugins::load`].
    pub fn load_with_exec_timeout(
        config_path: &Path,
        bin_dir: &Path,
        exec_timeout: Duration,
    ) -> Result<Self, ConfigError> {
        let source_name = config_path.display().to_string();
        let fail = |key: &str, problem: String, fix: &str| ConfigError {
            source_name: source_name.clone(),
            issues: vec![ConfigIssue {
                key: key.to_owned(),
                problem,
                fix: fix.to_owned(),
            }],
        };
        match std::fs::metadata(bin_dir) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(fail(
                    "--image-credential-provider-bin-dir",
                    format!(
                        "the plugin binary directory {} does not exist (kubelet does not start \
                         without it)",
                        bin_dir.display()
                    ),
                    "pass the directory kubelet's --image-credential-provider-bin-dir names, \
                     mounted from the host",
                ));
            }
            Err(e) => {
                return Err(fail(
                    "--image-credential-provider-bin-dir",
                    format!(
                        "cannot inspect {}: {}",
                        bin_dir.display(),
                        crate::config::io_words(&e)
                    ),
                    "make the directory readable by pullprobe",
                ));
            }
        }

        let files = config_files(config_path)
            .map_err(|(problem, fix)| fail("--image-credential-provider-config", problem, fix))?;
        let mut issues = Vec::new();
        let mut raw_providers: Vec<(PathBuf, usize, RawProvider, String)> = Vec::new();
        for file in &files {
            let prefix = if files.len() > 1 || file != config_path {
                format!("{}: ", file.display())
            } else {
                String::new()
            };
            match read_config_file(file) {
                Ok(doc) => {
                    let api_version = doc.api_version.clone();
                    for (i, p) in doc.providers.into_iter().enumerate() {
                        raw_providers.push((file.clone(), i, p, api_version.clone()));
                    }
                }
                Err(mut file_issues) => {
                    for issue in &mut file_issues {
                        issue.key = format!("{prefix}{}", issue.key);
                    }
                    issues.extend(file_issues);
                }
            }
        }
        if !issues.is_empty() {
            return Err(ConfigError {
                source_name,
                issues,
            });
        }

        let multi = files.len() > 1 || files.first().is_some_and(|f| f != config_path);
        let mut providers = Vec::new();
        let mut seen: HashMap<String, String> = HashMap::new();
        if raw_providers.is_empty() {
            issues.push(ConfigIssue {
                key: "providers".to_owned(),
                problem: "no providers: kubelet requires at least one".to_owned(),
                fix: "list the plugins under providers: (name, matchImages, \
                      defaultCacheDuration, apiVersion), or do not pass a credential provider \
                      config"
                    .to_owned(),
            });
        }
        for (file, i, raw, doc_version) in raw_providers {
            let key = if multi {
                format!("{}: providers[{i}]", file.display())
            } else {
                format!("providers[{i}]")
            };
            if let Some(config) = validate_provider(&key, &file, raw, &doc_version, &mut issues) {
                if let Some(first) = seen.get(&config.name) {
                    issues.push(ConfigIssue {
                        key: format!("{key}.name"),
                        problem: format!(
                            "the provider name {} is already used by {first}",
                            crate::config::quote(&config.name)
                        ),
                        fix: "give every provider a different name (it is the executable's \
                              file name)"
                            .to_owned(),
                    });
                    continue;
                }
                seen.insert(config.name.clone(), key.clone());
                providers.push(config);
            }
        }
        if !issues.is_empty() {
            return Err(ConfigError {
                source_name,
                issues,
            });
        }

        let mut warnings = Vec::new();
        for p in &providers {
            let bin = bin_dir.join(&p.name);
            if let Some(problem) = binary_problem(&bin) {
                warnings.push(ConfigIssue {
                    key: format!("providers[{}]", crate::config::quote(&p.name)),
                    problem: format!("{problem} (kubelet does not start with this config)"),
                    fix: format!(
                        "install the plugin as {} or correct the provider's name",
                        bin.display()
                    ),
                });
            }
            if p.token_attributes.is_some() {
                warnings.push(ConfigIssue {
                    key: format!(
                        "providers[{}].tokenAttributes",
                        crate::config::quote(&p.name)
                    ),
                    problem: "the provider runs in service-account-token mode: kubelet passes \
                              it a token of the pod being started, which pullprobe cannot get, \
                              so pullprobe does not run it"
                        .to_owned(),
                    fix: "check pulls that use this provider from a pod of the service \
                          account concerned"
                        .to_owned(),
                });
            }
        }

        Ok(Plugins {
            inner: Arc::new(Inner {
                config_path: config_path.to_owned(),
                bin_dir: bin_dir.to_owned(),
                exec_timeout,
                providers: providers
                    .into_iter()
                    .map(|config| Provider {
                        config,
                        cache: Mutex::new(HashMap::new()),
                        inflight: Mutex::new(HashMap::new()),
                    })
                    .collect(),
                warnings,
            }),
        })
    }

    /// The providers, in config order.
    pub fn providers(&self) -> impl Iterator<Item = &ProviderConfig> {
        self.inner.providers.iter().map(|p| &p.config)
    }

    /// Problems found at load that do not stop pullprobe but that kubelet would refuse or that
    /// pullprobe cannot reproduce (a missing binary, service-account-token mode).
    pub fn warnings(&self) -> &[ConfigIssue] {
        &self.inner.warnings
    }

    pub fn config_path(&self) -> &Path {
        &self.inner.config_path
    }

    pub fn bin_dir(&self) -> &Path {
        &self.inner.bin_dir
    }

    pub fn exec_timeout(&self) -> Duration {
        self.inner.exec_timeout
    }

    /// Asks every provider whose `matchImages` matches `image`, in config order, as kubelet's
    /// `externalCredentialProviderKeyring.Lookup` does; a run is killed at kubelet's exec
    /// timeout or at `deadline`, whichever comes first.
    pub async fn provide(&self, image: &ImageRef, deadline: Instant) -> PluginOutcome {
        // `parsers.ParseImageName`: what kubelet looks up and sends.
        let name = format!("{}/{}", image.registry(), image.repository());
        let mut outcome = PluginOutcome::default();
        for p in &self.inner.providers {
            if !p.is_image_allowed(&name) {
                continue;
            }
            match p.provide(&name, deadline, &self.inner).await {
                Ok((keyring, cached)) => outcome.answers.push(PluginAnswer {
                    provider: p.config.name.clone(),
                    keyring,
                    cached,
                }),
                Err((reason, message)) => outcome.failures.push(PluginFailure {
                    provider: p.config.name.clone(),
                    reason,
                    message,
                }),
            }
        }
        outcome
    }
}

/// `readCredentialProviderConfig`: the files to read, or why not (problem, fix).
fn config_files(path: &Path) -> Result<Vec<PathBuf>, (String, &'static str)> {
    if path.as_os_str().is_empty() {
        return Err((
            "the credential provider config path is empty".to_owned(),
            "pass the file or directory kubelet's --image-credential-provider-config names",
        ));
    }
    let meta = std::fs::metadata(path).map_err(|e| {
        (
            format!(
                "cannot access {}: {}",
                path.display(),
                crate::config::io_words(&e)
            ),
            "pass the file or directory kubelet's --image-credential-provider-config names, \
             mounted from the host",
        )
    })?;
    if !meta.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let entries = std::fs::read_dir(path).map_err(|e| {
        (
            format!(
                "cannot read the directory {}: {}",
                path.display(),
                crate::config::io_words(&e)
            ),
            "make the directory readable by pullprobe",
        )
    })?;
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let bytes = name.as_encoded_bytes();
        // `filepath.Ext`: from the last '.', the file type without following symlinks.
        let ext = bytes
            .iter()
            .rposition(|&b| b == b'.')
            .map_or(&b""[..], |i| &bytes[i..]);
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if !is_dir && matches!(ext, b".json" | b".yaml" | b".yml") {
            files.push(path.join(name));
        }
    }
    // `sort.Strings` on the joined paths: byte order.
    files.sort_by(|a, b| {
        a.as_os_str()
            .as_encoded_bytes()
            .cmp(b.as_os_str().as_encoded_bytes())
    });
    if files.is_empty() {
        return Err((
            format!(
                "the directory {} has no *.json, *.yaml or *.yml file",
                path.display()
            ),
            "put the CredentialProviderConfig in the directory, or pass the file itself",
        ));
    }
    Ok(files)
}

/// One decoded document: its providers and its `apiVersion`.
struct ConfigDoc {
    api_version: String,
    providers: Vec<RawProvider>,
}

/// `decode`: strict JSON (a document starting with `{`) or YAML, then kind and group.
fn read_config_file(path: &Path) -> Result<ConfigDoc, Vec<ConfigIssue>> {
    let issue = |key: &str, problem: String, fix: &str| {
        vec![ConfigIssue {
            key: key.to_owned(),
            problem,
            fix: fix.to_owned(),
        }]
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        issue(
            "(file)",
            format!(
                "cannot read {}: {}",
                path.display(),
                crate::config::io_words(&e)
            ),
            "make the file readable by pullprobe",
        )
    })?;
    // The universal decoder takes JSON when the document starts with '{', else YAML.
    let raw: RawConfig = if text.trim_start().starts_with('{') {
        serde_json::from_str(&text).map_err(|e| {
            issue(
                "(json)",
                crate::config::json_words(&e, Some(text.as_bytes())),
                "fix the JSON at the position shown; the fields are kubelet's \
                 CredentialProviderConfig (apiVersion, kind, providers)",
            )
        })?
    } else {
        crate::config::from_yaml_str::<Option<RawConfig>>(&text)
            .map_err(|e| {
                issue(
                    "(yaml)",
                    e.trim().to_owned(),
                    "fix the YAML at the position shown; the fields are kubelet's \
                     CredentialProviderConfig (apiVersion, kind, providers)",
                )
            })?
            .unwrap_or_default()
    };
    let api_version = raw.api_version.map(|s| s.0).unwrap_or_default();
    let kind = raw.kind.map(|s| s.0).unwrap_or_default();
    let example = "apiVersion: kubelet.config.k8s.io/v1 and kind: CredentialProviderConfig";
    if kind.is_empty() {
        return Err(issue(
            "kind",
            "is missing (kubelet cannot decode the file)".to_owned(),
            &format!("start the file with {example}"),
        ));
    }
    if api_version.is_empty() {
        return Err(issue(
            "apiVersion",
            "is missing (kubelet cannot decode the file)".to_owned(),
            &format!("start the file with {example}"),
        ));
    }
    if !CONFIG_API_VERSIONS.contains(&api_version.as_str()) {
        return Err(issue(
            "apiVersion",
            format!(
                "{api_version} is not a version kubelet reads this file as",
                api_version = crate::config::quote(&api_version)
            ),
            &format!("use one of {}", CONFIG_API_VERSIONS.join(", ")),
        ));
    }
    if kind != CONFIG_KIND {
        return Err(issue(
            "kind",
            format!(
                "{kind} is not {CONFIG_KIND} (kubelet rejects the file)",
                kind = crate::config::quote(&kind)
            ),
            &format!("use {example}"),
        ));
    }
    let providers = raw.providers.unwrap_or_default();
    if api_version != CONFIG_V1 {
        let with_tokens: Vec<ConfigIssue> = providers
            .iter()
            .enumerate()
            .filter(|(_, p)| p.token_attributes.is_some())
            .map(|(i, _)| ConfigIssue {
                key: format!("providers[{i}].tokenAttributes"),
                problem: format!(
                    "is not a field of {api_version} (kubelet's strict decoding rejects the file)"
                ),
                fix: format!("use apiVersion: {CONFIG_V1}"),
            })
            .collect();
        if !with_tokens.is_empty() {
            return Err(with_tokens);
        }
    }
    Ok(ConfigDoc {
        api_version,
        providers,
    })
}

/// `validateCredentialProviderConfig` for one provider: pushes every problem and returns the
/// provider when it has none.
fn validate_provider(
    key: &str,
    file: &Path,
    raw: RawProvider,
    doc_version: &str,
    issues: &mut Vec<ConfigIssue>,
) -> Option<ProviderConfig> {
    let before = issues.len();
    let mut push = |field: &str, problem: String, fix: &str| {
        issues.push(ConfigIssue {
            key: format!("{key}.{field}"),
            problem,
            fix: fix.to_owned(),
        });
    };
    let name_fix = "use the file name of the plugin executable in \
                    --image-credential-provider-bin-dir, e.g. ecr-credential-provider";
    let name = raw.name.map(|s| s.0).unwrap_or_default();
    if name.is_empty() {
        // kubelet's validation lets it through, then fails to start: LookPath finds the bin
        // directory itself.
        push("name", "is missing".to_owned(), name_fix);
    }
    if name.contains('/') {
        push(
            "name",
            format!("{name} contains '/'", name = crate::config::quote(&name)),
            name_fix,
        );
    }
    if name.contains(' ') {
        push(
            "name",
            format!(
                "{name} contains a space",
                name = crate::config::quote(&name)
            ),
            name_fix,
        );
    }
    if name == "." || name == ".." {
        push(
            "name",
            format!("cannot be {name}", name = crate::config::quote(&name)),
            name_fix,
        );
    }

    let api_version = raw.api_version.map(|s| s.0).unwrap_or_default();
    let version_fix = format!(
        "use {PROVIDER_V1} (or the version the plugin documents: {})",
        PROVIDER_API_VERSIONS.join(", ")
    );
    if api_version.is_empty() {
        push("apiVersion", "is missing".to_owned(), &version_fix);
    } else if !PROVIDER_API_VERSIONS.contains(&api_version.as_str()) {
        push(
            "apiVersion",
            format!(
                "{api_version} is not supported",
                api_version = crate::config::quote(&api_version)
            ),
            &version_fix,
        );
    }

    let match_images: Vec<String> = raw
        .match_images
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.0)
        .collect();
    if match_images.is_empty() {
        push(
            "matchImages",
            "is missing: at least one pattern is required".to_owned(),
            "list the registries the plugin serves, e.g. \"*.dkr.ecr.*.amazonaws.com\"",
        );
    }
    for (j, m) in match_images.iter().enumerate() {
        if !is_schemeless_url(m) {
            push(
                &format!("matchImages[{j}]"),
                format!(
                    "{m} is not a valid image pattern (Go's url.Parse rejects it)",
                    m = crate::config::quote(m)
                ),
                "write host[:port][/path] with '*' globs in host labels only, e.g. \
                 \"*.azurecr.io\" or \"registry.example.com:5000/team\"",
            );
        }
    }

    let duration_fix = "write a Go duration like \"12h\", \"30m\" or \"0s\" (0 disables caching)";
    let default_cache_duration = match raw.default_cache_duration.map(|s| s.0) {
        None => {
            push(
                "defaultCacheDuration",
                "is missing".to_owned(),
                duration_fix,
            );
            Duration::ZERO
        }
        Some(text) => match super::parse_go_duration(&text) {
            None => {
                push(
                    "defaultCacheDuration",
                    format!(
                        "{text} is not a duration (kubelet cannot decode the file)",
                        text = crate::config::quote(&text)
                    ),
                    duration_fix,
                );
                Duration::ZERO
            }
            Some(n) if n < 0 => {
                push(
                    "defaultCacheDuration",
                    format!(
                        "{text} is negative: it must be 0 or more",
                        text = crate::config::quote(&text)
                    ),
                    duration_fix,
                );
                Duration::ZERO
            }
            Some(n) => Duration::from_nanos(n.unsigned_abs()),
        },
    };

    let args: Vec<String> = raw
        .args
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.0)
        .collect();
    let env: Vec<(String, Secret)> = raw
        .env
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            (
                e.name.map(|s| s.0).unwrap_or_default(),
                Secret::new(e.value.map(|s| s.0).unwrap_or_default()),
            )
        })
        .collect();

    let token_attributes = raw.token_attributes.map(|t| {
        let audience = t
            .service_account_token_audience
            .map(|s| s.0)
            .unwrap_or_default();
        if audience.is_empty() {
            push(
                "tokenAttributes.serviceAccountTokenAudience",
                "is missing".to_owned(),
                "set the audience the plugin's token exchange expects",
            );
        }
        if t.require_service_account.is_none() {
            push(
                "tokenAttributes.requireServiceAccount",
                "is missing".to_owned(),
                "set true or false",
            );
        }
        if doc_version == CONFIG_V1 && !api_version.is_empty() && api_version != PROVIDER_V1 {
            push(
                "tokenAttributes",
                format!("is only supported with apiVersion {PROVIDER_V1}"),
                &format!("set the provider's apiVersion to {PROVIDER_V1}"),
            );
        }
        let required: Vec<String> = t
            .required_service_account_annotation_keys
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.0)
            .collect();
        let optional: Vec<String> = t
            .optional_service_account_annotation_keys
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.0)
            .collect();
        if t.require_service_account == Some(false) && !required.is_empty() {
            push(
                "tokenAttributes.requiredServiceAccountAnnotationKeys",
                "is set while requireServiceAccount is false".to_owned(),
                "set requireServiceAccount: true, or remove the required keys",
            );
        }
        for (field, keys) in [
            ("requiredServiceAccountAnnotationKeys", &required),
            ("optionalServiceAccountAnnotationKeys", &optional),
        ] {
            let mut seen = HashSet::new();
            for k in keys {
                if let Some(problem) = qualified_name_problem(&k.to_lowercase()) {
                    push(
                        &format!("tokenAttributes.{field}"),
                        format!(
                            "{k} is not a valid annotation key: {problem}",
                            k = crate::config::quote(k)
                        ),
                        "use a key like example.com/role-arn",
                    );
                }
                if !seen.insert(k) {
                    push(
                        &format!("tokenAttributes.{field}"),
                        format!("{k} is listed twice", k = crate::config::quote(k)),
                        "list each key once",
                    );
                }
            }
        }
        let both: Vec<&String> = required.iter().filter(|k| optional.contains(k)).collect();
        if !both.is_empty() {
            push(
                "tokenAttributes",
                format!(
                    "annotation keys {both} are both required and optional",
                    both = both
                        .iter()
                        .map(|k| crate::config::quote(k))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "list each key in one of the two lists",
            );
        }
        let cache_type = t.cache_type.map(|s| s.0).unwrap_or_default();
        if cache_type.is_empty() {
            push(
                "tokenAttributes.cacheType",
                "is missing".to_owned(),
                &format!("set one of {}", TOKEN_CACHE_TYPES.join(", ")),
            );
        } else if !TOKEN_CACHE_TYPES.contains(&cache_type.as_str()) {
            push(
                "tokenAttributes.cacheType",
                format!(
                    "{cache_type} is not supported",
                    cache_type = crate::config::quote(&cache_type)
                ),
                &format!("set one of {}", TOKEN_CACHE_TYPES.join(", ")),
            );
        }
        TokenAttributes {
            service_account_token_audience: audience,
            cache_type,
            require_service_account: t.require_service_account.unwrap_or_default(),
            required_service_account_annotation_keys: required,
            optional_service_account_annotation_keys: optional,
        }
    });

    (issues.len() == before).then(|| ProviderConfig {
        name,
        match_images,
        default_cache_duration,
        api_version,
        args,
        env,
        token_attributes,
        file: file.to_owned(),
    })
}

/// apimachinery's `IsQualifiedName` (on the lowercased key, as kubelet calls it): an optional
/// DNS-1123 subdomain prefix and '/', then a name of at most 63 characters of
/// `[A-Za-z0-9][-A-Za-z0-9_.]*[A-Za-z0-9]`.
fn qualified_name_problem(value: &str) -> Option<&'static str> {
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                return Some("the prefix before '/' is empty");
            }
            if !is_dns1123_subdomain(prefix) {
                return Some("the prefix before '/' must be a DNS subdomain");
            }
            name
        }
        _ => return Some("it has more than one '/'"),
    };
    let b = name.as_bytes();
    if b.is_empty() {
        return Some("the name part is empty");
    }
    if b.len() > 63 {
        return Some("the name part is longer than 63 characters");
    }
    let inner_ok = b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if !inner_ok || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return Some(
            "the name part must be letters, digits, '-', '_' or '.', starting and ending with a \
             letter or digit",
        );
    }
    None
}

/// apimachinery's `IsDNS1123Subdomain`.
fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// Whether kubelet's `exec.LookPath(<bin_dir>/<name>)` would fail: the problem, or `None`.
fn binary_problem(bin: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    match std::fs::metadata(bin) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(format!(
            "the plugin binary {} does not exist",
            bin.display()
        )),
        Err(e) => Some(format!(
            "cannot inspect the plugin binary {}: {}",
            bin.display(),
            crate::config::io_words(&e)
        )),
        Ok(m) if m.is_dir() => Some(format!("{} is a directory", bin.display())),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => Some(format!(
            "the plugin binary {} is not executable",
            bin.display()
        )),
        Ok(_) => None,
    }
}

// ---- the file format ---------------------------------------------------------------------

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default, rename = "apiVersion")]
    api_version: Option<GoString>,
    #[serde(default)]
    kind: Option<GoString>,
    #[serde(default)]
    providers: Option<Vec<RawProvider>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawProvider {
    #[serde(default)]
    name: Option<GoString>,
    #[serde(default)]
    match_images: Option<Vec<GoString>>,
    /// A `metav1.Duration`: a Go duration string.
    #[serde(default)]
    default_cache_duration: Option<GoString>,
    #[serde(default)]
    api_version: Option<GoString>,
    #[serde(default)]
    args: Option<Vec<GoString>>,
    #[serde(default)]
    env: Option<Vec<RawEnv>>,
    #[serde(default)]
    token_attributes: Option<RawTokenAttributes>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnv {
    #[serde(default)]
    name: Option<GoString>,
    #[serde(default)]
    value: Option<GoString>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTokenAttributes {
    #[serde(default)]
    service_account_token_audience: Option<GoString>,
    #[serde(default)]
    cache_type: Option<GoString>,
    #[serde(default)]
    require_service_account: Option<bool>,
    #[serde(default)]
    required_service_account_annotation_keys: Option<Vec<GoString>>,
    #[serde(default)]
    optional_service_account_annotation_keys: Option<Vec<GoString>>,
}

/// A Go `string` field as kubelet decodes it (YAML turned into JSON first): a string, or
/// `null` for "". A YAML number or boolean (`defaultCacheDuration: 0`, `name: true`) is not a
/// string to Go, so it is an error here too, not silently text.
#[derive(Default)]
struct GoString(String);

impl<'de> Deserialize<'de> for GoString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(GoStringVisitor)
    }
}

struct GoStringVisitor;

impl<'de> Visitor<'de> for GoStringVisitor {
    type Value = GoString;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string (quote it)")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<GoString, E> {
        Ok(GoString(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<GoString, E> {
        Ok(GoString(s))
    }

    fn visit_unit<E: de::Error>(self) -> Result<GoString, E> {
        Ok(GoString::default())
    }

    fn visit_none<E: de::Error>(self) -> Result<GoString, E> {
        Ok(GoString::default())
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<GoString, E> {
        Err(E::invalid_type(Unexpected::Bool(b), &self))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<GoString, E> {
        Err(E::invalid_type(Unexpected::Signed(n), &self))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<GoString, E> {
        Err(E::invalid_type(Unexpected::Unsigned(n), &self))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<GoString, E> {
        Err(E::invalid_type(Unexpected::Float(n), &self))
    }
}

// ---- asking a provider -------------------------------------------------------------------

impl Provider {
    /// `isImageAllowed`.
    fn is_image_allowed(&self, image: &str) -> bool {
        self.config
            .match_images
            .iter()
            .any(|m| urls_match_str(m, image))
    }

    /// `pluginProvider.provide`: the cache, else one (shared) run. Returns the answer and
    /// whether it came from the cache.
    async fn provide(
        &self,
        image: &str,
        deadline: Instant,
        inner: &Inner,
    ) -> Result<(Keyring, bool), (PluginFailureReason, String)> {
        if self.config.token_attributes.is_some() {
            return Err((
                PluginFailureReason::ServiceAccountToken,
                "was not run: it uses service-account tokens (tokenAttributes), which kubelet \
                 requests for the pod being started and pullprobe cannot get"
                    .to_owned(),
            ));
        }
        if let Some(keyring) = self.cached(image) {
            return Ok((keyring, true));
        }
        let cell = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            let cell = inflight.entry(image.to_owned()).or_default();
            if cell.initialized() {
                // A finished run nobody cleared (its callers went away): start afresh.
                *cell = Arc::default();
            }
            cell.clone()
        };
        let result = cell
            .get_or_init(|| self.exec(image, deadline, inner))
            .await
            .clone();
        {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            if inflight.get(image).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                inflight.remove(image);
            }
        }
        let response = result?;

        let keyring = Keyring::from_entries(
            CredentialSource::Plugin(self.config.name.clone()),
            response.auth,
        );
        let cache_key = match response.cache_key_type {
            CacheKeyType::Image => image.to_owned(),
            CacheKeyType::Registry => parse_registry(image).to_owned(),
            CacheKeyType::Global => GLOBAL_CACHE_KEY.to_owned(),
        };
        // An explicit 0 is never cached; none means the provider's default (0: never). A
        // negative duration is cached already expired by kubelet, so never used either.
        let ttl = match response.cache_duration {
            Some(n) if n <= 0 => None,
            Some(n) => Some(Duration::from_nanos(n.unsigned_abs())),
            None => {
                let d = self.config.default_cache_duration;
                (!d.is_zero()).then_some(d)
            }
        };
        if let Some(ttl) = ttl {
            let entry = CacheEntry {
                keyring: keyring.clone(),
                expires_at: Instant::now().checked_add(ttl),
            };
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache.insert(cache_key, entry);
        }
        Ok((keyring, false))
    }

    /// `getCachedCredentials`: image, then registry, then global; expired entries are purged.
    fn cached(&self, image: &str) -> Option<Keyring> {
        let now = Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        // `cacheExpirationPolicy.IsExpired`: expired once now is after expiresAt.
        cache.retain(|_, e| e.expires_at.is_none_or(|at| now <= at));
        [image, parse_registry(image), GLOBAL_CACHE_KEY]
            .iter()
            .find_map(|k| cache.get(*k).map(|e| e.keyring.clone()))
    }

    /// `execPlugin.ExecPlugin`: one run of the plugin.
    async fn exec(&self, image: &str, deadline: Instant, inner: &Inner) -> ExecResult {
        let bin = inner.bin_dir.join(&self.config.name);
        let request = encode_request(&self.config.api_version, image);
        let mut cmd = tokio::process::Command::new(&bin);
        cmd.args(&self.config.args)
            .envs(
                self.config
                    .env
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.expose())),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let started = Instant::now();
        if deadline <= started {
            return Err((
                PluginFailureReason::Timeout,
                "was not run: the probe's deadline had already passed".to_owned(),
            ));
        }
        let kubelet_limit = started + inner.exec_timeout;
        let limit = deadline.min(kubelet_limit);
        let mut child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                (
                    PluginFailureReason::MissingBinary,
                    format!(
                        "cannot run: the plugin binary {} does not exist",
                        bin.display()
                    ),
                )
            } else if e.kind() == std::io::ErrorKind::PermissionDenied {
                (
                    PluginFailureReason::MissingBinary,
                    format!(
                        "cannot run: {} is not executable (permission denied)",
                        bin.display()
                    ),
                )
            } else {
                (
                    PluginFailureReason::CannotRun,
                    format!(
                        "cannot run {}: {}",
                        bin.display(),
                        crate::config::io_words(&e)
                    ),
                )
            }
        })?;
        let stdin = child.stdin.take();
        let run = async move {
            if let Some(mut stdin) = stdin {
                // A plugin that exits without reading its stdin is not an error here.
                let _ = stdin.write_all(request.as_bytes()).await;
            }
            child.wait_with_output().await
        };
        let output = match tokio::time::timeout_at(limit, run).await {
            // The run future is dropped with the child: kill_on_drop kills it.
            Err(_) => {
                let after = humantime::format_duration(round_ms(limit - started));
                let message = if limit < kubelet_limit {
                    format!(
                        "was still running when the probe's deadline passed (after {after}) \
                         and was killed; kubelet would wait up to {}",
                        humantime::format_duration(inner.exec_timeout)
                    )
                } else {
                    format!("timed out after {after} and was killed (kubelet's limit)")
                };
                return Err((PluginFailureReason::Timeout, message));
            }
            Ok(Err(e)) => {
                return Err((
                    PluginFailureReason::CannotRun,
                    format!("could not be waited for: {}", crate::config::io_words(&e)),
                ));
            }
            Ok(Ok(output)) => output,
        };
        if !output.status.success() {
            use std::os::unix::process::ExitStatusExt as _;
            let how = match (output.status.code(), output.status.signal()) {
                (Some(code), _) => format!("exited with status {code}"),
                (None, Some(sig)) => format!("was killed by signal {sig}"),
                (None, None) => "failed".to_owned(),
            };
            let message = match first_line(&output.stderr) {
                Some(line) => format!("{how}: {line}"),
                None => format!("{how} and printed nothing on stderr"),
            };
            return Err((PluginFailureReason::Exit, message));
        }
        parse_response(&output.stdout, &self.config.api_version).map_err(|problem| {
            (
                PluginFailureReason::BadResponse,
                format!("printed a response that is not a {RESPONSE_KIND} ({problem})"),
            )
        })
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `parseRegistry`: the image name up to the first `/`.
fn parse_registry(image: &str) -> &str {
    image.split('/').next().unwrap_or(image)
}

/// `encodeRequest`: the request as kubelet's JSON encoder writes it (fields in struct order,
/// a trailing newline).
fn encode_request(api_version: &str, image: &str) -> String {
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned());
    format!(
        "{{\"kind\":\"CredentialProviderRequest\",\"apiVersion\":{},\"image\":{}}}\n",
        quote(api_version),
        quote(image)
    )
}

/// The first non-empty line of `stderr`, control characters dropped, at most 300 characters.
fn first_line(stderr: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stderr);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let clean: String = line.chars().filter(|c| !c.is_control()).take(300).collect();
    Some(clean)
}

/// `Image`, `Registry` or `Global`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CacheKeyType {
    Image,
    Registry,
    Global,
}

/// A decoded `CredentialProviderResponse`.
#[derive(Clone, Debug)]
struct Response {
    cache_key_type: CacheKeyType,
    /// Nanoseconds; `None` when absent or `null`.
    cache_duration: Option<i64>,
    /// The `auth` map in document order.
    auth: Vec<(String, Credential)>,
}

/// A value from the plugin's stdout, shown only when it cannot be a secret: a short
/// identifier-like string (an `apiVersion`, a `kind`, a field name).
fn shown(s: &str) -> String {
    let plain = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'/' | b'-' | b'_'));
    if plain {
        crate::config::quote(s)
    } else {
        "an unexpected value".to_owned()
    }
}

/// `ExecPlugin` + `decodeResponse` + the `cacheKeyType` check of `provide`: the response, or
/// which field is wrong (never a value that could be a credential).
fn parse_response(stdout: &[u8], api_version: &str) -> Result<Response, String> {
    let root = parse_json(stdout).map_err(|e| {
        if stdout.iter().all(u8::is_ascii_whitespace) {
            "it printed nothing".to_owned()
        } else {
            format!(
                "its output is not JSON: syntax error at line {} column {}",
                e.line(),
                e.column()
            )
        }
    })?;
    let members = match root {
        Json::Object(m) => m,
        Json::Null => Vec::new(),
        _ => return Err("its output is not a JSON object".to_owned()),
    };
    // `json.DefaultMetaFactory.Interpret` reads apiVersion with encoding/json: field names
    // match case-insensitively and the last one wins.
    let mut got_version = String::new();
    for (name, value) in &members {
        if name.eq_ignore_ascii_case("apiVersion") {
            match value {
                Json::String(s) => got_version.clone_from(s),
                Json::Null => {}
                _ => return Err("\"apiVersion\" is not a string".to_owned()),
            }
        }
    }
    if got_version.matches('/').count() > 1 {
        return Err(format!(
            "\"apiVersion\" {} is not group/version",
            shown(&got_version)
        ));
    }
    if got_version != api_version {
        return Err(if got_version.is_empty() {
            format!("\"apiVersion\" is missing; the provider's apiVersion is {api_version}")
        } else {
            format!(
                "\"apiVersion\" is {}, not the provider's apiVersion {api_version}",
                shown(&got_version)
            )
        });
    }
    // The strict decoder: exact field names, no unknown or repeated fields; kind first.
    let kind = members.iter().rev().find(|(n, _)| n == "kind");
    match kind.map(|(_, v)| v) {
        Some(Json::String(k)) if k == RESPONSE_KIND => {}
        None | Some(Json::Null) => return Err("\"kind\" is missing".to_owned()),
        Some(Json::String(k)) if k.is_empty() => return Err("\"kind\" is missing".to_owned()),
        Some(Json::String(k)) => {
            return Err(format!("\"kind\" is {}, not {RESPONSE_KIND}", shown(k)));
        }
        Some(_) => return Err("\"kind\" is not a string".to_owned()),
    }
    let mut seen = HashSet::new();
    let mut cache_key_type = String::new();
    let mut cache_duration = None;
    let mut auth = Vec::new();
    for (name, value) in members {
        if !seen.insert(name.clone()) {
            return Err(format!("the field {} appears twice", shown(&name)));
        }
        match name.as_str() {
            "apiVersion" | "kind" => {}
            "cacheKeyType" => match value {
                Json::String(s) => cache_key_type = s,
                Json::Null => {}
                _ => return Err("\"cacheKeyType\" is not a string".to_owned()),
            },
            "cacheDuration" => match value {
                Json::Null => {}
                Json::String(s) => {
                    cache_duration =
                        Some(super::parse_go_duration(&s).ok_or(
                            "\"cacheDuration\" is not a Go duration like \"5m\" or \"12h\"",
                        )?);
                }
                _ => return Err("\"cacheDuration\" is not a duration string".to_owned()),
            },
            "auth" => auth = parse_auth(value)?,
            _ => {
                return Err(if shown(&name).starts_with('"') {
                    format!("unknown field {}", shown(&name))
                } else {
                    "an unknown field".to_owned()
                });
            }
        }
    }
    let cache_key_type = match cache_key_type.as_str() {
        "Image" => CacheKeyType::Image,
        "Registry" => CacheKeyType::Registry,
        "Global" => CacheKeyType::Global,
        "" => {
            return Err("\"cacheKeyType\" is missing: it must be Image, Registry or Global".into());
        }
        other => {
            return Err(format!(
                "\"cacheKeyType\" is {}: it must be Image, Registry or Global",
                shown(other)
            ));
        }
    };
    Ok(Response {
        cache_key_type,
        cache_duration,
        auth,
    })
}

/// `auth map[string]AuthConfig`, strictly.
fn parse_auth(value: Json) -> Result<Vec<(String, Credential)>, String> {
    let members = match value {
        Json::Null => return Ok(Vec::new()),
        Json::Object(m) => m,
        _ => return Err("\"auth\" is not an object".to_owned()),
    };
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(members.len());
    for (key, entry) in members {
        if !seen.insert(key.clone()) {
            return Err(format!(
                "auth[{key}] appears twice",
                key = crate::config::quote(&key)
            ));
        }
        let fields = match entry {
            Json::Null => Vec::new(),
            Json::Object(f) => f,
            _ => {
                return Err(format!(
                    "auth[{key}] is not an object",
                    key = crate::config::quote(&key)
                ));
            }
        };
        let (mut username, mut password) = (String::new(), String::new());
        let mut seen_fields = HashSet::new();
        for (name, v) in fields {
            if !seen_fields.insert(name.clone()) {
                return Err(format!(
                    "auth[{key}].{} appears twice",
                    shown(&name),
                    key = crate::config::quote(&key)
                ));
            }
            let slot = match name.as_str() {
                "username" => &mut username,
                "password" => &mut password,
                _ => {
                    return Err(if shown(&name).starts_with('"') {
                        format!(
                            "auth[{key}] has an unknown field {}",
                            shown(&name),
                            key = crate::config::quote(&key)
                        )
                    } else {
                        format!(
                            "auth[{key}] has an unknown field",
                            key = crate::config::quote(&key)
                        )
                    });
                }
            };
            match v {
                Json::String(s) => *slot = s,
                Json::Null => {}
                _ => {
                    return Err(format!(
                        "auth[{key}].{name} is not a string",
                        key = crate::config::quote(&key)
                    ));
                }
            }
        }
        out.push((
            key,
            Credential {
                username,
                password: Secret::new(password),
            },
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "credentialprovider.kubelet.k8s.io/v1";

    /// A bin dir and scratch space. Plugins are `/bin/sh` (a symlink named after the provider)
    /// running a script given as the provider's first arg, so no test ever executes a file it
    /// has just written (which can fail with ETXTBSY while another test forks).
    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("bin")).unwrap();
            Fixture { dir }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn bin(&self) -> PathBuf {
            self.path("bin")
        }

        /// Installs provider `name` running `body`; returns its config entry (YAML flow).
        fn plugin(
            &self,
            name: &str,
            match_images: &str,
            default_cache: &str,
            body: &str,
        ) -> String {
            let script = self.path(&format!("{name}.sh"));
            std::fs::write(&script, body).unwrap();
            std::os::unix::fs::symlink("/bin/sh", self.bin().join(name)).unwrap();
            format!(
                "  - {{name: {name}, matchImages: {match_images}, defaultCacheDuration: \
                 \"{default_cache}\", apiVersion: {V1}, args: [\"{}\", \"--flag\"], env: \
                 [{{name: PLUGIN_DIR, value: \"{}\"}}, {{name: HOME, value: /plugin-home}}]}}\n",
                script.display(),
                self.dir.path().display()
            )
        }

        fn load(&self, providers: &str, exec_timeout: Duration) -> Plugins {
            let config = self.path("config.yaml");
            std::fs::write(
                &config,
                format!(
                    "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\n\
                     providers:\n{providers}"
                ),
            )
            .unwrap();
            Plugins::load_with_exec_timeout(&config, &self.bin(), exec_timeout).unwrap()
        }

        /// How many times the plugin `name` ran (each run appends a line).
        fn runs(&self, name: &str) -> usize {
            std::fs::read_to_string(self.path(&format!("{name}.runs")))
                .map(|s| s.lines().count())
                .unwrap_or(0)
        }
    }

    /// A plugin that records its run, request, first arg and $HOME, then prints `response`.
    fn responder(name: &str, response: &str) -> String {
        format!(
            "echo run >> \"$PLUGIN_DIR/{name}.runs\"\n\
             cat > \"$PLUGIN_DIR/{name}.request\"\n\
             printf '%s %s' \"$1\" \"$HOME\" > \"$PLUGIN_DIR/{name}.argv\"\n\
             cat <<'JSON'\n{response}\nJSON\n"
        )
    }

    fn response(cache_key_type: &str, cache_duration: Option<&str>, key: &str) -> String {
        let duration = cache_duration
            .map(|d| format!(r#","cacheDuration":"{d}""#))
            .unwrap_or_default();
        format!(
            r#"{{"kind":"CredentialProviderResponse","apiVersion":"{V1}","cacheKeyType":"{cache_key_type}"{duration},"auth":{{"{key}":{{"username":"user","password":"s3cret-pw"}}}}}}"#
        )
    }

    fn image(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap()
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    // plugin.go ExecPlugin + encodeRequest (Test_encodeRequest's bytes), mergeEnvVars
    // (Test_ExecPluginEnvVars: the provider's env wins), args; plugins.go Lookup.
    #[tokio::test]
    async fn success_speaks_kubelets_protocol() {
        let f = Fixture::new();
        let p = f.load(
            &f.plugin(
                "ecr",
                "[\"*.registry.io\"]",
                "1h",
                &responder("ecr", &response("Registry", Some("1h"), "*.registry.io")),
            ),
            EXEC_TIMEOUT,
        );
        assert!(p.warnings().is_empty(), "{:?}", p.warnings());
        let img = image("test.registry.io/foo/bar:1.0");
        let out = p.provide(&img, later()).await;
        assert!(out.failures.is_empty(), "{:?}", out.failures);
        assert_eq!(out.answers.len(), 1);
        assert!(!out.answers[0].cached);
        let keyring = out.keyring();
        let m = keyring.lookup_all(&img);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].credential.username, "user");
        assert_eq!(m[0].credential.password.expose(), "s3cret-pw");
        assert_eq!(
            m[0].origin(),
            "credentials from plugin ecr, key \"*.registry.io\""
        );
        assert_eq!(
            std::fs::read_to_string(f.path("ecr.request")).unwrap(),
            "{\"kind\":\"CredentialProviderRequest\",\"apiVersion\":\
             \"credentialprovider.kubelet.k8s.io/v1\",\"image\":\"test.registry.io/foo/bar\"}\n"
        );
        assert_eq!(
            std::fs::read_to_string(f.path("ecr.argv")).unwrap(),
            "--flag /plugin-home"
        );
        assert!(out.unmatched_notes(&img).is_empty());
        // Debug never shows the provider's env values or the credentials.
        let dbg = format!("{p:?} {out:?}");
        assert!(
            !dbg.contains("/plugin-home") && !dbg.contains("s3cret"),
            "{dbg}"
        );
    }

    // Test_RegistryCacheKeyType / getCachedCredentials: cached under the registry, used for
    // another image of that registry, not for another registry.
    #[tokio::test]
    async fn registry_cache_key_serves_other_images_of_the_registry() {
        let f = Fixture::new();
        let p = f.load(
            &f.plugin(
                "reg",
                "[\"*.registry.io\"]",
                "0s",
                &responder("reg", &response("Registry", Some("1h"), "*.registry.io")),
            ),
            EXEC_TIMEOUT,
        );
        let first = p.provide(&image("a.registry.io/x"), later()).await;
        assert!(!first.answers[0].cached);
        let second = p.provide(&image("a.registry.io/y/z:2"), later()).await;
        assert!(second.answers[0].cached);
        assert_eq!(f.runs("reg"), 1);
        let m = second.keyring();
        assert_eq!(
            m.lookup_all(&image("a.registry.io/y/z"))[0].key,
            "*.registry.io"
        );
        p.provide(&image("b.registry.io/x"), later()).await;
        assert_eq!(f.runs("reg"), 2);
    }

    // Test_ImageCacheKeyType / Test_GlobalCacheKeyType.
    #[tokio::test]
    async fn image_and_global_cache_keys() {
        let f = Fixture::new();
        let providers = f.plugin(
            "img",
            "[\"img.registry.io\"]",
            "0s",
            &responder("img", &response("Image", Some("1h"), "img.registry.io")),
        ) + &f.plugin(
            "glob",
            "[\"*.global.io\"]",
            "0s",
            &responder("glob", &response("Global", Some("1h"), "*.global.io")),
        );
        let p = f.load(&providers, EXEC_TIMEOUT);
        p.provide(&image("img.registry.io/a"), later()).await;
        p.provide(&image("img.registry.io/a:other-tag"), later())
            .await;
        assert_eq!(f.runs("img"), 1, "the tag is not part of the image key");
        p.provide(&image("img.registry.io/b"), later()).await;
        assert_eq!(f.runs("img"), 2);

        p.provide(&image("one.global.io/a"), later()).await;
        let out = p.provide(&image("two.global.io/b"), later()).await;
        assert_eq!(f.runs("glob"), 1);
        assert!(out.answers[0].cached);
    }

    // Test_NoCacheResponse: cacheDuration 0 is never cached; no cacheDuration means
    // defaultCacheDuration, and a default of 0 is never cached either.
    #[tokio::test]
    async fn zero_durations_run_the_plugin_every_time() {
        let f = Fixture::new();
        let providers = f.plugin(
            "zero",
            "[\"zero.io\"]",
            "1h",
            &responder("zero", &response("Global", Some("0s"), "zero.io")),
        ) + &f.plugin(
            "nodefault",
            "[\"nodefault.io\"]",
            "0s",
            &responder("nodefault", &response("Global", None, "nodefault.io")),
        ) + &f.plugin(
            "default",
            "[\"default.io\"]",
            "1h",
            &responder("default", &response("Global", None, "default.io")),
        );
        let p = f.load(&providers, EXEC_TIMEOUT);
        for _ in 0..3 {
            for img in ["zero.io/a", "nodefault.io/a", "default.io/a"] {
                let out = p.provide(&image(img), later()).await;
                assert!(out.failures.is_empty(), "{:?}", out.failures);
            }
        }
        assert_eq!(f.runs("zero"), 3);
        assert_eq!(f.runs("nodefault"), 3);
        assert_eq!(f.runs("default"), 1);
    }

    // getCachedCredentials / cacheExpirationPolicy: an entry is used until it expires.
    #[tokio::test]
    async fn cache_entries_expire() {
        let f = Fixture::new();
        let p = f.load(
            &f.plugin(
                "short",
                "[\"short.io\"]",
                "0s",
                &responder("short", &response("Image", Some("300ms"), "short.io")),
            ),
            EXEC_TIMEOUT,
        );
        p.provide(&image("short.io/a"), later()).await;
        p.provide(&image("short.io/a"), later()).await;
        assert_eq!(f.runs("short"), 1);
        tokio::time::sleep(Duration::from_millis(400)).await;
        p.provide(&image("short.io/a"), later()).await;
        assert_eq!(f.runs("short"), 2);
    }

    // provide: ExecPlugin in a singleflight.Group keyed by image.
    #[tokio::test]
    async fn concurrent_asks_share_one_run() {
        let f = Fixture::new();
        let body = format!(
            "sleep 0.3\n{}",
            responder("slow", &response("Image", Some("0s"), "slow.io"))
        );
        let p = f.load(
            &f.plugin("slow", "[\"slow.io\"]", "0s", &body),
            EXEC_TIMEOUT,
        );
        let img = image("slow.io/a");
        let (a, b) = tokio::join!(p.provide(&img, later()), p.provide(&img, later()));
        assert_eq!(a.answers.len() + b.answers.len(), 2);
        assert_eq!(f.runs("slow"), 1);
    }

    // ExecPlugin: context.WithTimeout(ctx, 1*time.Minute) kills the plugin; the caller's
    // deadline, when earlier, kills it too.
    #[tokio::test]
    async fn a_hanging_plugin_is_killed() {
        let f = Fixture::new();
        let body = "echo $$ > \"$PLUGIN_DIR/hang.pid\"\nexec sleep 30\n";
        let p = f.load(
            &f.plugin("hang", "[\"hang.io\"]", "0s", body),
            Duration::from_millis(300),
        );
        let started = Instant::now();
        let out = p.provide(&image("hang.io/a"), later()).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(out.answers.is_empty());
        let failure = &out.failures[0];
        assert_eq!(failure.reason, PluginFailureReason::Timeout);
        assert_eq!(
            failure.to_string(),
            "credential provider plugin hang timed out after 300ms and was killed (kubelet's \
             limit)"
        );

        let p = f.load(
            &f.plugin("hang2", "[\"hang2.io\"]", "0s", body),
            Duration::from_secs(60),
        );
        let out = p
            .provide(
                &image("hang2.io/a"),
                Instant::now() + Duration::from_millis(200),
            )
            .await;
        let failure = &out.failures[0];
        assert_eq!(failure.reason, PluginFailureReason::Timeout);
        assert!(
            failure
                .message
                .starts_with("was still running when the probe's deadline passed (after ")
                && failure
                    .message
                    .ends_with("ms) and was killed; kubelet would wait up to 1m"),
            "{failure}"
        );
        // The process is gone (or a zombie about to be reaped), not left running.
        let pid = std::fs::read_to_string(f.path("hang.pid")).unwrap();
        let stat = format!("/proc/{}/stat", pid.trim());
        let mut alive = true;
        for _ in 0..40 {
            alive = std::fs::read_to_string(&stat)
                .is_ok_and(|s| s.split(' ').nth(2).is_none_or(|state| state != "Z"));
            if !alive {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!alive, "the plugin process {} still runs", pid.trim());
    }

    // ExecPlugin: "error decoding credential provider plugin response from stdout" — never
    // the stdout itself.
    #[tokio::test]
    async fn garbage_on_stdout_is_not_repeated() {
        let f = Fixture::new();
        let body = "cat >/dev/null\necho 'password=hunter2-secret token=abc'\n";
        let p = f.load(&f.plugin("junk", "[\"junk.io\"]", "0s", body), EXEC_TIMEOUT);
        let out = p.provide(&image("junk.io/a"), later()).await;
        let failure = &out.failures[0];
        assert_eq!(failure.reason, PluginFailureReason::BadResponse);
        let text = failure.to_string();
        assert!(
            text.starts_with(
                "credential provider plugin junk printed a response that is not a \
                 CredentialProviderResponse (its output is not JSON"
            ),
            "{text}"
        );
        assert!(!text.contains("hunter2") && !text.contains("abc"), "{text}");
    }

    // runPlugin: a failing run; kubelet appends all of stderr, pullprobe its first line.
    #[tokio::test]
    async fn a_failing_plugin_reports_its_first_stderr_line() {
        let f = Fixture::new();
        let body = "cat >/dev/null\necho '{\"partial\": \"s3cret\"}'\necho '' >&2\n\
                    echo 'no EC2 IMDS role found' >&2\necho 'second line' >&2\nexit 3\n";
        let p = f.load(
            &f.plugin("fails", "[\"fails.io\"]", "0s", body),
            EXEC_TIMEOUT,
        );
        let out = p.provide(&image("fails.io/a"), later()).await;
        let failure = &out.failures[0];
        assert_eq!(failure.reason, PluginFailureReason::Exit);
        assert_eq!(
            failure.to_string(),
            "credential provider plugin fails exited with status 3: no EC2 IMDS role found"
        );
        let body = "exit 1\n";
        let p = f.load(
            &f.plugin("quiet", "[\"quiet.io\"]", "0s", body),
            EXEC_TIMEOUT,
        );
        let out = p.provide(&image("quiet.io/a"), later()).await;
        assert_eq!(
            out.failures[0].message,
            "exited with status 1 and printed nothing on stderr"
        );
    }

    // RegisterCredentialProviderPlugins: exec.LookPath fails ("plugin binary executable %s
    // did not exist"); kubelet would not start, pullprobe warns and reports it per ask.
    #[tokio::test]
    async fn a_missing_binary_is_a_warning_and_a_failure() {
        let f = Fixture::new();
        let p = f.load(
            &format!(
                "  - {{name: absent, matchImages: [\"absent.io\"], defaultCacheDuration: 1h, \
                 apiVersion: {V1}}}\n"
            ),
            EXEC_TIMEOUT,
        );
        let bin = f.bin().join("absent");
        assert_eq!(p.warnings().len(), 1);
        assert!(
            p.warnings()[0].problem.starts_with(&format!(
                "the plugin binary {} does not exist",
                bin.display()
            )),
            "{:?}",
            p.warnings()
        );
        let out = p.provide(&image("absent.io/a"), later()).await;
        assert_eq!(out.failures[0].reason, PluginFailureReason::MissingBinary);
        assert_eq!(
            out.failures[0].message,
            format!(
                "cannot run: the plugin binary {} does not exist",
                bin.display()
            )
        );
        // Not executable.
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        let p = f.load(
            &format!(
                "  - {{name: absent, matchImages: [\"absent.io\"], defaultCacheDuration: 1h, \
                 apiVersion: {V1}}}\n"
            ),
            EXEC_TIMEOUT,
        );
        assert!(p.warnings()[0].problem.contains("is not executable"));
        let out = p.provide(&image("absent.io/a"), later()).await;
        assert_eq!(out.failures[0].reason, PluginFailureReason::MissingBinary);
    }

    // isImageAllowed: a provider whose matchImages do not match is not run.
    #[tokio::test]
    async fn unmatched_images_do_not_run_the_plugin() {
        let f = Fixture::new();
        let p = f.load(
            &f.plugin(
                "ecr",
                "[\"*.dkr.ecr.*.amazonaws.com\"]",
                "0s",
                &responder("ecr", &response("Image", Some("0s"), "other.io")),
            ),
            EXEC_TIMEOUT,
        );
        let out = p.provide(&image("ghcr.io/org/app"), later()).await;
        assert!(out.answers.is_empty() && out.failures.is_empty());
        assert_eq!(f.runs("ecr"), 0);
        // The plugin runs, but answers for a key that does not match the image.
        let img = image("123.dkr.ecr.eu-west-1.amazonaws.com/app");
        let out = p.provide(&img, later()).await;
        assert_eq!(f.runs("ecr"), 1);
        assert!(out.keyring().lookup_all(&img).is_empty());
        assert_eq!(
            out.unmatched_notes(&img),
            [
                "credential provider plugin ecr answered with credentials for \"other.io\", none \
              of which matches 123.dkr.ecr.eu-west-1.amazonaws.com/app the way kubelet matches"
            ]
        );
    }

    // A tokenAttributes provider is loaded (validated as kubelet does), warned about, and
    // reported instead of run.
    #[tokio::test]
    async fn service_account_token_providers_are_reported_not_run() {
        let f = Fixture::new();
        let mut entry = f.plugin(
            "sa",
            "[\"sa.io\"]",
            "0s",
            &responder("sa", &response("Image", None, "sa.io")),
        );
        entry.truncate(entry.trim_end().len() - 1); // drop the closing brace
        entry.push_str(
            ", tokenAttributes: {serviceAccountTokenAudience: sts.amazonaws.com, cacheType: \
             ServiceAccount, requireServiceAccount: true}}\n",
        );
        let p = f.load(&entry, EXEC_TIMEOUT);
        assert_eq!(p.warnings().len(), 1);
        assert!(p.warnings()[0].key.ends_with(".tokenAttributes"));
        let out = p.provide(&image("sa.io/a"), later()).await;
        assert_eq!(
            out.failures[0].reason,
            PluginFailureReason::ServiceAccountToken
        );
        assert_eq!(f.runs("sa"), 0);
    }

    // Answers of several providers are added to one keyring in config order
    // (externalCredentialProviderKeyring.Lookup): keys sorted together, and under one key the
    // earlier provider first (CredentialProviderConfig.providers doc).
    #[tokio::test]
    async fn answers_merge_in_config_order() {
        let f = Fixture::new();
        let providers = f.plugin(
            "first",
            "[\"*.registry.io\"]",
            "0s",
            &responder("first", &response("Image", Some("0s"), "*.registry.io")),
        ) + &f.plugin(
            "second",
            "[\"a.registry.io\"]",
            "0s",
            &responder("second", &response("Image", Some("0s"), "*.registry.io")),
        ) + &f.plugin(
            "third",
            "[\"a.registry.io\"]",
            "0s",
            &responder(
                "third",
                &response("Image", Some("0s"), "a.registry.io/team"),
            ),
        );
        let p = f.load(&providers, EXEC_TIMEOUT);
        let img = image("a.registry.io/team/app");
        let out = p.provide(&img, later()).await;
        let keyring = out.keyring();
        let order: Vec<String> = keyring
            .lookup_all(&img)
            .iter()
            .map(|m| m.source.to_string())
            .collect();
        assert_eq!(order, ["plugin third", "plugin first", "plugin second"]);
    }

    // keyring_test.go TestURLsMatch (every case) and plugin_test.go Test_Provide's
    // matchImages/image pairs, through the matcher isImageAllowed uses.
    #[test]
    fn match_images_mirror_kubelet_tests() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, bool)] = &[
            // TestURLsMatch: no path component
            ("*.kubernetes.io", "prefix.kubernetes.io", true),
            ("prefix.*.io", "prefix.kubernetes.io", true),
            ("prefix.kubernetes.*", "prefix.kubernetes.io", true),
            ("*-good.kubernetes.io", "prefix-good.kubernetes.io", true),
            // with path components
            ("*.kubernetes.io/blah", "prefix.kubernetes.io/blah", true),
            ("prefix.*.io/foo", "prefix.kubernetes.io/foo/bar", true),
            // with path components and ports
            ("*.kubernetes.io:1111/blah", "prefix.kubernetes.io:1111/blah", true),
            ("prefix.*.io:1111/foo", "prefix.kubernetes.io:1111/foo/bar", true),
            // number of parts mismatch
            ("*.kubernetes.io", "kubernetes.io", false),
            ("*.*.kubernetes.io", "prefix.kubernetes.io", false),
            ("*.*.kubernetes.io", "kubernetes.io", false),
            // some parts mismatch
            ("kubernetes.io", "kubernetes.com", false),
            ("k*.io", "quay.io", false),
            // ports mismatch
            ("*.kubernetes.io:1234/blah", "prefix.kubernetes.io:1111/blah", false),
            ("prefix.*.io/foo", "prefix.kubernetes.io:1111/foo/bar", false),
            // Test_Provide
            ("test.registry.io", "test.registry.io/foo/bar", true),
            ("test.registry.io/foo/bar", "test.registry.io/foo/bar", true),
            ("*.registry.io:8080", "test.registry.io:8080/foo", true),
            ("*.*.registry.io", "foo.bar.registry.io/foo/bar", true),
            ("*.registry.io", "test.registry.io", true),
        ];
        for (glob, target, want) in cases {
            assert_eq!(urls_match_str(glob, target), *want, "{glob} vs {target}");
        }
    }

    // Test_decodeResponse and the checks around it in ExecPlugin / provide.
    #[test]
    fn response_decoding_mirrors_kubelet() {
        let ok = |doc: &str, version: &str| parse_response(doc.as_bytes(), version).unwrap();
        for version in [
            "credentialprovider.kubelet.k8s.io/v1",
            "credentialprovider.kubelet.k8s.io/v1beta1",
            "credentialprovider.kubelet.k8s.io/v1alpha1",
        ] {
            let r = ok(
                &format!(
                    r#"{{"kind":"CredentialProviderResponse","apiVersion":"{version}","cacheKeyType":"Registry","cacheDuration":"1m","auth":{{"*.registry.io":{{"username":"user","password":"password"}}}}}}"#
                ),
                version,
            );
            assert_eq!(r.cache_key_type, CacheKeyType::Registry);
            assert_eq!(r.cache_duration, Some(60_000_000_000));
            assert_eq!(r.auth[0].0, "*.registry.io");
            assert_eq!(r.auth[0].1.username, "user");
        }
        // Optional and null fields.
        let r = ok(
            &format!(
                r#"{{"kind":"CredentialProviderResponse","apiVersion":"{V1}","cacheKeyType":"Global","cacheDuration":null,"auth":{{"a.io":null,"b.io":{{"username":null}}}}}}"#
            ),
            V1,
        );
        assert_eq!(r.cache_duration, None);
        assert_eq!(r.auth.len(), 2);
        let r = ok(
            &format!(
                r#"{{"kind":"CredentialProviderResponse","apiVersion":"{V1}","cacheKeyType":"Image"}}"#
            ),
            V1,
        );
        assert!(r.auth.is_empty());

        let base = |extra: &str| {
            format!(
                r#"{{"kind":"CredentialProviderResponse","apiVersion":"{V1}","cacheKeyType":"Image"{extra}}}"#
            )
        };
        #[rustfmt::skip]
        let bad: Vec<(String, &str)> = vec![
            ("".to_owned(), "it printed nothing"),
            ("s3cret".to_owned(), "its output is not JSON"),
            (r#"["s3cret"]"#.to_owned(), "not a JSON object"),
            // Test_decodeResponse "wrong Kind", "wrong Group"
            (format!(r#"{{"kind":"WrongKind","apiVersion":"{V1}","cacheKeyType":"Image"}}"#),
             "\"kind\" is \"WrongKind\", not CredentialProviderResponse"),
            (r#"{"kind":"CredentialProviderResponse","apiVersion":"foobar.kubelet.k8s.io/v1","cacheKeyType":"Image"}"#.to_owned(),
             "\"apiVersion\" is \"foobar.kubelet.k8s.io/v1\", not the provider's apiVersion credentialprovider.kubelet.k8s.io/v1"),
            (r#"{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1beta1","cacheKeyType":"Image"}"#.to_owned(),
             "not the provider's apiVersion"),
            (r#"{"kind":"CredentialProviderResponse","cacheKeyType":"Image"}"#.to_owned(), "\"apiVersion\" is missing"),
            (format!(r#"{{"apiVersion":"{V1}","cacheKeyType":"Image"}}"#), "\"kind\" is missing"),
            // provide: "did not return a valid cacheKeyType"
            (format!(r#"{{"kind":"CredentialProviderResponse","apiVersion":"{V1}"}}"#), "\"cacheKeyType\" is missing"),
            (base(r#","cacheKeyType":"Image""#), "the field \"cacheKeyType\" appears twice"),
            (format!(r#"{{"kind":"CredentialProviderResponse","apiVersion":"{V1}","cacheKeyType":"image"}}"#),
             "\"cacheKeyType\" is \"image\": it must be Image, Registry or Global"),
            // Strict decoding: unknown and case-mismatched fields, types.
            (base(r#","expiresAt":"soon""#), "unknown field \"expiresAt\""),
            (base(r#","Auth":{}"#), "unknown field \"Auth\""),
            (base(r#","s3cret value!":1"#), "an unknown field"),
            (base(r#","cacheDuration":60"#), "\"cacheDuration\" is not a duration string"),
            (base(r#","cacheDuration":"1 minute""#), "\"cacheDuration\" is not a Go duration"),
            (base(r#","auth":[]"#), "\"auth\" is not an object"),
            (base(r#","auth":{"r.io":"s3cret"}"#), "auth[\"r.io\"] is not an object"),
            (base(r#","auth":{"r.io":{"username":"u","password":"s3cret","token":"s3cret"}}"#),
             "auth[\"r.io\"] has an unknown field \"token\""),
            (base(r#","auth":{"r.io":{"password":5}}"#), "auth[\"r.io\"].password is not a string"),
            (base(r#","auth":{"r.io":{},"r.io":{}}"#), "auth[\"r.io\"] appears twice"),
        ];
        for (doc, want) in bad {
            let err = parse_response(doc.as_bytes(), V1).unwrap_err();
            assert!(err.contains(want), "{doc}: {err}");
            assert!(!err.contains("s3cret"), "{doc}: {err}");
        }
    }

    // time.ParseDuration.
    #[test]
    fn go_durations() {
        #[rustfmt::skip]
        let cases: &[(&str, Option<i64>)] = &[
            ("0", Some(0)), ("0s", Some(0)), ("-0", Some(0)), ("1h", Some(3_600_000_000_000)),
            ("1h30m", Some(5_400_000_000_000)), ("1.5h", Some(5_400_000_000_000)),
            ("300ms", Some(300_000_000)), ("1us", Some(1_000)), ("1\u{b5}s", Some(1_000)),
            ("1\u{3bc}s", Some(1_000)), ("2ns", Some(2)), (".5s", Some(500_000_000)),
            ("5.s", Some(5_000_000_000)), ("-1m", Some(-60_000_000_000)), ("+1s", Some(1_000_000_000)),
            ("9223372036854775807ns", Some(i64::MAX)), ("-9223372036854775808ns", Some(i64::MIN)),
            ("9223372036854775808ns", None), ("3000000h", None),
            ("", None), ("1", None), ("s", None), (".s", None), ("1d", None), ("1 h", None),
            ("12", None), ("1h ", None),
        ];
        for (text, want) in cases {
            assert_eq!(crate::node::parse_go_duration(text), *want, "{text:?}");
        }
    }

    fn load_err(f: &Fixture, name: &str, text: &str) -> String {
        let config = f.path(name);
        std::fs::write(&config, text).unwrap();
        Plugins::load(&config, &f.bin()).unwrap_err().to_string()
    }

    // validateCredentialProviderConfig and decode, one case per rule.
    #[test]
    fn config_validation_mirrors_kubelet() {
        let f = Fixture::new();
        let head = "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\n";
        let provider = |fields: &str| format!("{head}providers:\n  - {{{fields}}}\n");
        let good = "name: p, matchImages: [r.io], defaultCacheDuration: 1h, apiVersion: \
                    credentialprovider.kubelet.k8s.io/v1";
        #[rustfmt::skip]
        let cases: Vec<(String, &str)> = vec![
            (format!("{head}providers: []\n"), "providers: no providers"),
            ("kind: CredentialProviderConfig\nproviders: []\n".to_owned(), "apiVersion: is missing"),
            ("apiVersion: kubelet.config.k8s.io/v1\nproviders: []\n".to_owned(), "kind: is missing"),
            ("apiVersion: kubelet.config.k8s.io/v2\nkind: CredentialProviderConfig\n".to_owned(),
             "\"kubelet.config.k8s.io/v2\" is not a version kubelet reads"),
            ("apiVersion: kubelet.config.k8s.io/v1\nkind: KubeletConfiguration\n".to_owned(),
             "\"KubeletConfiguration\" is not CredentialProviderConfig"),
            (format!("{head}providers: []\nextra: 1\n"), "line 4, column 1: \"extra\" is not a known key here"),
            (provider("name: ecr/x, matchImages: [r.io], defaultCacheDuration: 1h, apiVersion: credentialprovider.kubelet.k8s.io/v1"),
             "providers[0].name: \"ecr/x\" contains '/'"),
            (provider("name: 'a b', matchImages: [r.io], defaultCacheDuration: 1h, apiVersion: credentialprovider.kubelet.k8s.io/v1"),
             "providers[0].name: \"a b\" contains a space"),
            (provider("name: '..', matchImages: [r.io], defaultCacheDuration: 1h, apiVersion: credentialprovider.kubelet.k8s.io/v1"),
             "providers[0].name: cannot be \"..\""),
            (provider("matchImages: [r.io], defaultCacheDuration: 1h, apiVersion: credentialprovider.kubelet.k8s.io/v1"),
             "providers[0].name: is missing"),
            (provider("name: p, matchImages: [r.io], defaultCacheDuration: 1h"), "providers[0].apiVersion: is missing"),
            (provider("name: p, matchImages: [r.io], defaultCacheDuration: 1h, apiVersion: credentialprovider.kubelet.k8s.io/v2"),
             "providers[0].apiVersion: \"credentialprovider.kubelet.k8s.io/v2\" is not supported"),
            (provider("name: p, defaultCacheDuration: 1h, apiVersion: credentialprovider.kubelet.k8s.io/v1"),
             "providers[0].matchImages: is missing"),
            (provider("name: p, matchImages: ['r.io:abc'], defaultCacheDuration: 1h, apiVersion: credentialprovider.kubelet.k8s.io/v1"),
             "providers[0].matchImages[0]: \"r.io:abc\" is not a valid image pattern"),
            (provider("name: p, matchImages: [r.io], apiVersion: credentialprovider.kubelet.k8s.io/v1"),
             "providers[0].defaultCacheDuration: is missing"),
            (provider("name: p, matchImages: [r.io], defaultCacheDuration: -1m, apiVersion: credentialprovider.kubelet.k8s.io/v1"),
             "providers[0].defaultCacheDuration: \"-1m\" is negative"),
            (provider("name: p, matchImages: [r.io], defaultCacheDuration: 1 day, apiVersion: credentialprovider.kubelet.k8s.io/v1"),
             "\"1 day\" is not a duration"),
            // metav1.Duration only unmarshals a JSON string: a YAML number is an error.
            (provider("name: p, matchImages: [r.io], defaultCacheDuration: 0, apiVersion: credentialprovider.kubelet.k8s.io/v1"),
             "line 4, column 36: defaultCacheDuration: must be text (quote it), not the number 0"),
            (provider(&format!("{good}, cacheDuration: 1h")), "\"cacheDuration\" is not a known key here"),
            (format!("{head}providers:\n  - {{{good}}}\n  - {{{good}}}\n"),
             "providers[1].name: the provider name \"p\" is already used by providers[0]"),
            // tokenAttributes rules
            (provider(&format!("{good}, tokenAttributes: {{}}")), "tokenAttributes.serviceAccountTokenAudience: is missing"),
            (provider(&format!("{good}, tokenAttributes: {{serviceAccountTokenAudience: a, cacheType: Token}}")),
             "tokenAttributes.requireServiceAccount: is missing"),
            (provider(&format!("{good}, tokenAttributes: {{serviceAccountTokenAudience: a, requireServiceAccount: true}}")),
             "tokenAttributes.cacheType: is missing"),
            (provider(&format!("{good}, tokenAttributes: {{serviceAccountTokenAudience: a, requireServiceAccount: true, cacheType: Pod}}")),
             "tokenAttributes.cacheType: \"Pod\" is not supported"),
            (provider(&format!("{good}, tokenAttributes: {{serviceAccountTokenAudience: a, requireServiceAccount: false, cacheType: Token, requiredServiceAccountAnnotationKeys: [x.io/a]}}")),
             "is set while requireServiceAccount is false"),
            (provider(&format!("{good}, tokenAttributes: {{serviceAccountTokenAudience: a, requireServiceAccount: true, cacheType: Token, requiredServiceAccountAnnotationKeys: [x.io/a, x.io/a]}}")),
             "\"x.io/a\" is listed twice"),
            (provider(&format!("{good}, tokenAttributes: {{serviceAccountTokenAudience: a, requireServiceAccount: true, cacheType: Token, optionalServiceAccountAnnotationKeys: ['-bad']}}")),
             "\"-bad\" is not a valid annotation key"),
            (provider(&format!("{good}, tokenAttributes: {{serviceAccountTokenAudience: a, requireServiceAccount: true, cacheType: Token, requiredServiceAccountAnnotationKeys: [k], optionalServiceAccountAnnotationKeys: [k]}}")),
             "are both required and optional"),
            (provider("name: p, matchImages: [r.io], defaultCacheDuration: 1h, apiVersion: credentialprovider.kubelet.k8s.io/v1beta1, tokenAttributes: {serviceAccountTokenAudience: a, requireServiceAccount: true, cacheType: Token}"),
             "tokenAttributes: is only supported with apiVersion credentialprovider.kubelet.k8s.io/v1"),
            (format!("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: CredentialProviderConfig\nproviders:\n  - {{{good}, tokenAttributes: {{}}}}\n"),
             "is not a field of kubelet.config.k8s.io/v1beta1"),
        ];
        for (i, (text, want)) in cases.iter().enumerate() {
            let err = load_err(&f, &format!("case{i}.yaml"), text);
            assert!(err.contains(want), "{text}\n---\n{err}");
            assert!(err.contains(&format!("case{i}.yaml")), "{err}");
            assert!(err.contains("fix: "), "{err}");
        }
        // Every problem at once.
        let err = load_err(
            &f,
            "many.yaml",
            &provider("name: a/b, matchImages: ['r.io:x'], defaultCacheDuration: -1s"),
        );
        for want in [
            "name:",
            "apiVersion:",
            "matchImages[0]:",
            "defaultCacheDuration:",
        ] {
            assert!(err.contains(want), "{err}");
        }
        // The bin directory must exist.
        let config = f.path("ok.yaml");
        std::fs::write(&config, provider(good)).unwrap();
        let err = Plugins::load(&config, &f.path("nope"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
        assert!(Plugins::load(&config, &f.bin()).is_ok());
    }

    // readCredentialProviderConfig: JSON documents, and a directory of *.json/*.yaml/*.yml
    // read in order and merged, names unique across files.
    #[test]
    fn config_files_json_and_directories() {
        let f = Fixture::new();
        let json = format!(
            r#"{{"apiVersion":"kubelet.config.k8s.io/v1","kind":"CredentialProviderConfig","providers":[{{"name":"j","matchImages":["j.io"],"defaultCacheDuration":"0s","apiVersion":"{V1}","env":[{{"name":"A","value":"secret-env"}}]}}]}}"#
        );
        std::fs::write(f.path("one.json"), &json).unwrap();
        let p = Plugins::load(&f.path("one.json"), &f.bin()).unwrap();
        let cfg = p.providers().next().unwrap();
        assert_eq!(cfg.name, "j");
        assert_eq!(cfg.env[0].1.expose(), "secret-env");
        assert!(!format!("{p:?}").contains("secret-env"));

        let dir = f.path("conf.d");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("b.yaml"), format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: CredentialProviderConfig\nproviders:\n  \
             - {{name: b, matchImages: [b.io], defaultCacheDuration: 1h, apiVersion: {V1}}}\n"
        )).unwrap();
        std::fs::write(dir.join("a.json"), &json).unwrap();
        std::fs::write(dir.join("README.md"), "ignored").unwrap();
        std::fs::create_dir(dir.join("sub.yaml")).unwrap();
        let p = Plugins::load(&dir, &f.bin()).unwrap();
        let names: Vec<&str> = p.providers().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["j", "b"]);

        std::fs::write(dir.join("c.yml"), &json).unwrap();
        let err = Plugins::load(&dir, &f.bin()).unwrap_err().to_string();
        assert!(
            err.contains("the provider name \"j\" is already used by"),
            "{err}"
        );
        assert!(err.contains("c.yml: providers[0].name"), "{err}");

        let empty = f.path("empty.d");
        std::fs::create_dir(&empty).unwrap();
        let err = Plugins::load(&empty, &f.bin()).unwrap_err().to_string();
        assert!(err.contains("has no *.json, *.yaml or *.yml file"), "{err}");
    }

    #[test]
    fn qualified_names() {
        for ok in [
            "a",
            "example.com/role-arn",
            "x.io/A_b.c",
            "eks.amazonaws.com/role-arn",
        ] {
            assert_eq!(qualified_name_problem(&ok.to_lowercase()), None, "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "/a",
            "a/b/c",
            "Ex_ample.com/a",
            &"n".repeat(64),
        ] {
            assert!(
                qualified_name_problem(&bad.to_lowercase()).is_some(),
                "{bad}"
            );
        }
    }
}
