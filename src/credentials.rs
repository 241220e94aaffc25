//! Registry credentials from a docker `config.json` / `kubernetes.io/dockerconfigjson` file,
//! matched to an image the way kubelet matches `imagePullSecrets` and its node config files.
//!
//! Everything here mirrors kubelet's `pkg/credentialprovider` (`config.go`, `keyring.go`) and
//! the image puller (`pkg/kubelet/kuberuntime/kuberuntime_image.go` `PullImage`):
//!
//! - **What an entry holds** (`config.go`, `DockerConfigEntry.UnmarshalJSON`): only `username`,
//!   `password`, `email` and `auth` are read, with Go's case-insensitive field names. A
//!   non-empty `auth` replaces username and password; it is decoded padded when it ends with
//!   `=` and unpadded otherwise (`decodeDockerConfigFieldAuth`). `identitytoken` and
//!   `registrytoken` are never read: an `az acr login` entry (`auth` of
//!   `00000000-0000-0000-0000-000000000000:` plus an identity token) pulls as that user with an
//!   empty password. An entry without any credential (only a token, only `email`, or `null`) is
//!   kept and tried like the others: kubelet sends an empty username and password, which
//!   containerd treats as an anonymous pull ([`Credential::is_anonymous`]).
//! - **Keys** (`BasicDockerKeyring.Add`): parsed as URLs with Go's `url.Parse` (`https://` is
//!   prepended unless the key starts with `https://` or `http://`); the scheme goes, and a path
//!   starting with `/v1/` or `/v2/` loses those three characters (`https://quay.io/v2/` is
//!   `quay.io`, `quay.io/v2/team` is `quay.io/team`, `quay.io/v2` stays as it is). A key Go
//!   cannot parse is ignored, as kubelet logs and skips it. Hosts keep their case.
//! - **Matching** (`URLsMatchStr`/`URLsMatch`, on `ParseSchemelessURL` of both sides): the
//!   image is its normalised name (`docker.io/library/nginx`, `parsers.ParseImageName`). Ports
//!   must be equal as written (no port matches only no port); hosts must have the same number
//!   of `.`-separated labels, each matched as a `filepath.Match` glob (`*`, `?`, `[a-z]`,
//!   `\`); the key's path must be a plain **string prefix** of the image's path (`host/team-a`
//!   matches `host/team-ab/app`).
//! - **Order** (`Add`, `Lookup`): every matching key is returned, in kubelet's index order —
//!   the normalised keys sorted in reverse byte order (for keys that match the same image this
//!   puts a longer path before its prefix, and a literal label before `*`) — and kubelet's
//!   image puller tries each credential in turn until one pulls.
//! - **Docker Hub** (`isDefaultRegistryMatch`): `docker.io` images match `docker.io` keys like
//!   any other host. Only when no key matched at all, an image whose first name component is
//!   `docker.io`, `index.docker.io` or has neither `.` nor `:` (so also `localhost/…`) gets the
//!   entries whose key normalises to exactly `index.docker.io` (`https://index.docker.io/v1/`).
//!   A `registry-1.docker.io` key never matches Docker Hub images.
//!
//! Where kubelet's order is undefined (several keys normalising to the same string, which Go
//! adds in map order), entries keep their order in the file.
//!
//! Secrets live in [`Secret`], whose `Debug` never shows the value.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

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

/// What kubelet passes to the runtime: only a username and password.
///
/// kubelet's keyring fills `AuthConfig` with the entry's username, password and email only
/// (`keyring.go` `Add`), so the runtime never gets an `auth`, identity token or registry token
/// from a docker config file. Either string may be empty.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Credential {
    pub username: String,
    pub password: Secret,
}

impl Credential {
    /// A non-secret description for messages, e.g. `user "robot"`.
    pub fn describe(&self) -> String {
        match (self.username.is_empty(), self.password.expose().is_empty()) {
            (false, false) => format!("user {}", crate::config::quote(&self.username)),
            (false, true) => format!(
                "user {} with an empty password",
                crate::config::quote(&self.username)
            ),
            (true, false) => "a password without a username".to_owned(),
            (true, true) => "an empty username and password".to_owned(),
        }
    }

    /// Whether the runtime pulls without credentials when given this one: containerd's CRI
    /// `ParseAuth` returns nothing when the username is empty (kubelet never sets the identity
    /// token or `auth` it would look at next).
    pub fn is_anonymous(&self) -> bool {
        self.username.is_empty()
    }
}

/// Where an entry of a [`Keyring`] came from, for messages: `Display` gives the file's path or
/// `plugin NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    /// A docker `config.json` / `.dockercfg` / `.dockerconfigjson` file.
    File(PathBuf),
    /// The `auth` map of a kubelet credential-provider plugin's response, by provider name.
    Plugin(String),
    /// A pod's pull secret, as `NAMESPACE/NAME`.
    Secret(String),
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::File(path) => write!(f, "{}", path.display()),
            CredentialSource::Plugin(name) => write!(f, "plugin {name}"),
            CredentialSource::Secret(name) => write!(f, "secret {name}"),
        }
    }
}

/// One entry kubelet would try for an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyringMatch<'a> {
    /// The `auths` key exactly as written in the file (or the plugin's `auth` key).
    pub key: &'a str,
    pub credential: &'a Credential,
    /// Fields present in the entry that kubelet ignores (e.g. "identitytoken",
    /// "registrytoken"), so a message can say so.
    pub ignored: &'a [&'static str],
    /// The file or plugin the entry came from.
    pub source: &'a CredentialSource,
}

impl KeyringMatch<'_> {
    /// `credentials from plugin ecr-credential-provider, key "*.dkr.ecr.*.amazonaws.com"` or
    /// `credentials from /var/lib/kubelet/config.json, key "quay.io"`: never a secret.
    pub fn origin(&self) -> String {
        format!(
            "credentials from {}, key {}",
            self.source,
            crate::config::quote(self.key)
        )
    }
}

/// The credential-bearing fields of a docker config entry that kubelet never reads
/// (`config.go` `dockerConfigEntryWithAuth` has only username, password, email and auth).
const IGNORED_FIELDS: [&str; 2] = ["identitytoken", "registrytoken"];

/// Explains an entry whose tokens kubelet ignores, e.g. an `az acr login` entry: "the entry
/// "x.azurecr.io" holds only an identity token, which kubelet does not use; the node pulls as
/// user "00000000-0000-0000-0000-000000000000" with an empty password". `None` when the entry
/// has no ignored field.
pub fn ignored_note(m: &KeyringMatch<'_>) -> Option<String> {
    if m.ignored.is_empty() {
        return None;
    }
    let key = m.key;
    let c = m.credential;
    let has_password = !c.password.expose().is_empty();
    Some(if c.is_anonymous() {
        let sent = if has_password {
            "a password without a username, which containerd ignores"
        } else {
            "an empty username and password"
        };
        format!(
            "the entry {} holds only {}, which kubelet does not use; the node pulls \
             without credentials (kubelet sends {sent})",
            crate::config::quote(key),
            token_list(m.ignored, true)
        )
    } else if has_password {
        format!(
            "kubelet does not use the {} of the entry {}; the node pulls as user {} with \
             the entry's password",
            token_list(m.ignored, false),
            crate::config::quote(key),
            crate::config::quote(&c.username)
        )
    } else {
        format!(
            "the entry {} holds only {}, which kubelet does not use; the node pulls as \
             user {} with an empty password",
            crate::config::quote(key),
            token_list(m.ignored, true),
            crate::config::quote(&c.username)
        )
    })
}

/// "an identity token and a registry token" (with articles) or "identity token and registry
/// token".
fn token_list(fields: &[&str], articles: bool) -> String {
    let names: Vec<&str> = fields
        .iter()
        .map(|f| match (*f, articles) {
            ("identitytoken", true) => "an identity token",
            ("identitytoken", false) => "identity token",
            ("registrytoken", true) => "a registry token",
            ("registrytoken", false) => "registry token",
            (_, true) => "a token",
            (_, false) => "token",
        })
        .collect();
    names.join(" and ")
}

/// A loaded credentials file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keyring {
    /// Every entry, in the file's order (a key written twice keeps its first place and its
    /// last value, as Go's map decoding does).
    entries: Vec<Entry>,
    /// kubelet's index: normalised keys in reverse byte order, each with its entries.
    index: Vec<IndexKey>,
    /// The docker credential helpers the document names (`credsStore "desktop"`,
    /// `credHelpers for "gcr.io"`), which kubelet never runs: for messages only.
    helpers: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    key: String,
    credential: Credential,
    ignored: Vec<&'static str>,
    source: Arc<CredentialSource>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct IndexKey {
    /// kubelet's normalised key: host plus the effective path (bytes: Go strings need not be
    /// UTF-8 once percent escapes are decoded).
    key: Vec<u8>,
    /// The key as `ParseSchemelessURL` reads it at lookup; `None` when Go cannot parse it
    /// (`URLsMatchStr` then fails, so it never matches).
    url: Option<GoUrl>,
    /// Indexes into `Keyring::entries`.
    entries: Vec<usize>,
}

/// Why a credentials file could not be used. Messages name the file and the key, never a value.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read {}: {}", path.display(), crate::config::io_words(source))]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a docker config.json / .dockerconfigjson document: {detail}", path.display())]
    Format { path: PathBuf, detail: String },
    #[error("{}: auths[{key}]: {detail}", path.display(), key = crate::config::quote(.key))]
    Entry {
        path: PathBuf,
        key: String,
        detail: String,
    },
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
    /// A malformed entry fails the whole file, as `json.Unmarshal` fails the whole secret in
    /// kubelet (and the pull with it); a key Go's `url.Parse` rejects is kept out of the index,
    /// as kubelet does.
    ///
    /// # Errors
    /// As [`Keyring::load`].
    pub fn from_slice(path: &Path, bytes: &[u8]) -> Result<Self, CredentialsError> {
        Self::parse(path, bytes, Shape::Either)
    }

    /// Parses a node `config.json` exactly as kubelet's `readDockerConfigJSONFileFromBytes`
    /// does: `json.Unmarshal` into `DockerConfigJSON`, so only `auths` (and the type of
    /// `HttpHeaders`) matter. A document without `auths` — a legacy bare map, or only
    /// `credsStore` — is valid and has no entries, and so is `null`.
    ///
    /// # Errors
    /// When the document is not JSON, is not an object, or an entry is malformed.
    pub fn from_config_json(path: &Path, bytes: &[u8]) -> Result<Self, CredentialsError> {
        Self::parse(path, bytes, Shape::ConfigJson)
    }

    /// Parses a node `.dockercfg` exactly as kubelet's `ReadDockerConfigFileFromBytes` does:
    /// `json.Unmarshal` into the bare `DockerConfig` map, so every member is an entry (an
    /// `"auths"` member too, as an entry named `auths`), and `null` is an empty map.
    ///
    /// # Errors
    /// When the document is not JSON, is not an object, or an entry is malformed.
    pub fn from_dockercfg(path: &Path, bytes: &[u8]) -> Result<Self, CredentialsError> {
        Self::parse(path, bytes, Shape::Dockercfg)
    }

    /// Reads a pod pull secret's data as kubelet's `secretsToTrackedDockerConfigs` does: the
    /// `.dockerconfigjson` key of a `kubernetes.io/dockerconfigjson` secret as
    /// `DockerConfigJSON` (only `auths`), the `.dockercfg` key of a `kubernetes.io/dockercfg`
    /// secret as the bare `DockerConfig` map. Entries say they came from `secret NAMESPACE/NAME`;
    /// errors name the secret and its key.
    ///
    /// # Errors
    /// When the data is not JSON, is not an object, or an entry is malformed: kubelet's
    /// `json.Unmarshal` then fails, and with it every pull of the pod.
    pub fn from_pull_secret(
        namespaced_name: &str,
        dockercfg: bool,
        bytes: &[u8],
    ) -> Result<Self, CredentialsError> {
        let (key, shape) = if dockercfg {
            (".dockercfg", Shape::Dockercfg)
        } else {
            (".dockerconfigjson", Shape::ConfigJson)
        };
        let label = PathBuf::from(format!("secret {namespaced_name} (key {key})"));
        Self::parse_from(
            &label,
            bytes,
            shape,
            CredentialSource::Secret(namespaced_name.to_owned()),
        )
    }

    fn parse(path: &Path, bytes: &[u8], shape: Shape) -> Result<Self, CredentialsError> {
        Self::parse_from(path, bytes, shape, CredentialSource::File(path.to_owned()))
    }

    fn parse_from(
        path: &Path,
        bytes: &[u8],
        shape: Shape,
        source: CredentialSource,
    ) -> Result<Self, CredentialsError> {
        let format_err = |detail: &str| CredentialsError::Format {
            path: path.to_owned(),
            detail: detail.to_owned(),
        };
        // The document is read into a tree that keeps member order and never fails on a type,
        // so serde_json's messages are only about syntax and positions, never values.
        let root = parse_json(bytes).map_err(|e| CredentialsError::Format {
            path: path.to_owned(),
            // No key hint: a value cut short could be a password.
            detail: crate::config::json_words(&e, None),
        })?;
        let top = match (root, shape) {
            (Json::Object(top), _) => top,
            // `json.Unmarshal` of `null` into a struct or a map leaves it empty.
            (Json::Null, Shape::ConfigJson | Shape::Dockercfg) => Vec::new(),
            _ => return Err(format_err("the top level must be a JSON object")),
        };
        let has_auths = top.iter().any(|(k, _)| go_field_eq(k, "auths"));
        let helpers = helpers_named(&top);
        let auths = if shape == Shape::Dockercfg {
            // `DockerConfig` is the map itself.
            let mut merged = Members::default();
            merged.merge(top);
            merged
        } else if has_auths || shape == Shape::ConfigJson {
            // `DockerConfigJSON.Auths`: Go matches the field name case-insensitively, decodes
            // a repeated "auths" into the same map, and a `null` resets it.
            let mut merged = Members::default();
            for (name, value) in top {
                if go_field_eq(&name, "httpheaders") {
                    // `HTTPHeaders map[string]string`: only its type can fail the document.
                    let strings = match &value {
                        Json::Null => true,
                        Json::Object(m) => m
                            .iter()
                            .all(|(_, v)| matches!(v, Json::String(_) | Json::Null)),
                        _ => false,
                    };
                    if !strings {
                        return Err(format_err("\"HttpHeaders\" must be an object of strings"));
                    }
                    continue;
                }
                if !go_field_eq(&name, "auths") {
                    continue;
                }
                match value {
                    Json::Null => merged.clear(),
                    Json::Object(members) => merged.merge(members),
                    _ => return Err(format_err("\"auths\" must be an object")),
                }
            }
            merged
        } else if !helpers.is_empty() {
            return Err(format_err(&format!(
                "it has no \"auths\" object; {}",
                helpers_not_run(&helpers)
            )));
        } else if top
            .iter()
            .all(|(_, v)| matches!(v, Json::Object(_) | Json::Null))
        {
            // Legacy .dockercfg: the map itself (`ReadDockerConfigFileFromBytes`).
            let mut merged = Members::default();
            merged.merge(top);
            merged
        } else {
            return Err(format_err("missing \"auths\" object"));
        };

        let source = Arc::new(source);
        let mut entries = Vec::with_capacity(auths.items.len());
        for (key, value) in auths.items {
            let (credential, ignored) =
                entry_from(value).map_err(|detail| CredentialsError::Entry {
                    path: path.to_owned(),
                    key: key.clone(),
                    detail: detail.to_owned(),
                })?;
            entries.push(Entry {
                key,
                credential,
                ignored,
                source: source.clone(),
            });
        }
        let mut keyring = Self::indexed(entries);
        keyring.helpers = helpers;
        Ok(keyring)
    }

    /// A keyring of `(key, credential)` pairs from one source, in the given order — what
    /// `BasicDockerKeyring.Add` builds from a provider's `DockerConfig` (a credential-provider
    /// plugin's `auth` map, say). Keys are normalised and indexed as for a file.
    pub fn from_entries(
        source: CredentialSource,
        entries: impl IntoIterator<Item = (String, Credential)>,
    ) -> Self {
        let source = Arc::new(source);
        let entries = entries
            .into_iter()
            .map(|(key, credential)| Entry {
                key,
                credential,
                ignored: Vec::new(),
                source: source.clone(),
            })
            .collect();
        Self::indexed(entries)
    }

    /// One keyring holding every entry of `parts`, in order, indexed together: what kubelet
    /// gets by calling `BasicDockerKeyring.Add` once per provider on one keyring
    /// (`providersDockerKeyring.Lookup`, `externalCredentialProviderKeyring.Lookup`,
    /// `secretsToTrackedDockerConfigs`). Keys of all parts are sorted together in reverse, and
    /// entries under the same normalised key keep the order of `parts`. Each entry keeps its
    /// [`CredentialSource`].
    ///
    /// This is not the union of `UnionDockerKeyring`, which looks each keyring
    /// up on its own and concatenates the results.
    pub fn merged<'a>(parts: impl IntoIterator<Item = &'a Keyring>) -> Self {
        let entries = parts
            .into_iter()
            .flat_map(|k| k.entries.iter().cloned())
            .collect();
        Self::indexed(entries)
    }

    /// `BasicDockerKeyring.Add`: index every entry under its normalised key, dedupe,
    /// reverse-sort.
    fn indexed(entries: Vec<Entry>) -> Self {
        let mut index: Vec<IndexKey> = Vec::new();
        let mut position: HashMap<Vec<u8>, usize> = HashMap::new();
        for (i, entry) in entries.iter().enumerate() {
            let Some(key) = index_key(&entry.key) else {
                continue; // kubelet: "Entry %q in dockercfg invalid (%v), ignoring"
            };
            match position.get(&key) {
                Some(&k) => index[k].entries.push(i),
                None => {
                    position.insert(key.clone(), index.len());
                    index.push(IndexKey {
                        url: parse_schemeless_url(&key),
                        key,
                        entries: vec![i],
                    });
                }
            }
        }
        index.sort_by(|a, b| b.key.cmp(&a.key));
        Keyring {
            entries,
            index,
            helpers: Vec::new(),
        }
    }

    /// Every entry kubelet would try for `image`, in kubelet's order (empty if none match).
    pub fn lookup_all(&self, image: &ImageRef) -> Vec<KeyringMatch<'_>> {
        // `parsers.ParseImageName`: the normalised name without tag or digest.
        let name = format!("{}/{}", image.registry(), image.repository());
        let mut groups: Vec<&IndexKey> = match parse_schemeless_url(name.as_bytes()) {
            Some(target) => self
                .index
                .iter()
                .filter(|k| k.url.as_ref().is_some_and(|glob| urls_match(glob, &target)))
                .collect(),
            None => Vec::new(),
        };
        if groups.is_empty() && is_default_registry_match(&name) {
            groups.extend(
                self.index
                    .iter()
                    .find(|k| k.key == DEFAULT_REGISTRY_HOST.as_bytes()),
            );
        }
        groups
            .into_iter()
            .flat_map(|k| &k.entries)
            .map(|&i| {
                let e = &self.entries[i];
                KeyringMatch {
                    key: &e.key,
                    credential: &e.credential,
                    ignored: &e.ignored,
                    source: &e.source,
                }
            })
            .collect()
    }

    /// All keys in the file, in the file's order (also those kubelet cannot parse).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.key.as_str())
    }

    /// Whether the file has no `auths` entries at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The docker credential helpers the file names (`credsStore "desktop"`, `credHelpers for
    /// "gcr.io"`); kubelet (and so pullprobe) never runs them.
    pub fn helpers(&self) -> &[String] {
        &self.helpers
    }
}

/// What a document's `credsStore` and `credHelpers` name, for messages: kubelet's
/// `DockerConfigJSON` has no such fields, so it never runs a docker credential helper.
fn helpers_named(top: &[(String, Json)]) -> Vec<String> {
    let mut helpers = Vec::new();
    for (name, value) in top {
        if go_field_eq(name, "credsstore") {
            if let Json::String(s) = value {
                helpers.push(format!("credsStore {}", crate::config::quote(s)));
            }
        } else if go_field_eq(name, "credhelpers")
            && let Json::Object(members) = value
            && !members.is_empty()
        {
            let hosts: Vec<String> = members
                .iter()
                .map(|(k, _)| crate::config::quote(k))
                .collect();
            helpers.push(format!("credHelpers for {}", hosts.join(", ")));
        }
    }
    helpers
}

/// The sentence for a file whose credentials live only in docker credential helpers.
pub(crate) fn helpers_not_run(helpers: &[String]) -> String {
    format!(
        "it names {}, but kubelet never runs docker credential helpers (it ignores credsStore \
         and credHelpers), and neither does pullprobe: only \"auths\" entries count. Put the \
         registry's credentials in \"auths\" (e.g. `docker login` with credsStore removed from \
         the file, or a kubernetes.io/dockerconfigjson pull secret), or install a kubelet \
         credential provider plugin for the registry",
        helpers.join(" and ")
    )
}

/// Which document shapes a reader accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `{"auths": …}`, or the bare map when there is no `auths` (a user's `docker_config`).
    Either,
    /// kubelet's `DockerConfigJSON`: only `auths`.
    ConfigJson,
    /// kubelet's `DockerConfig`: the bare map.
    Dockercfg,
}

/// Object members gathered as Go decodes JSON objects into one map: a repeated key keeps its
/// first position and takes the last value.
#[derive(Default)]
struct Members {
    items: Vec<(String, Json)>,
    position: HashMap<String, usize>,
}

impl Members {
    fn merge(&mut self, members: Vec<(String, Json)>) {
        for (key, value) in members {
            match self.position.get(&key) {
                Some(&i) => self.items[i].1 = value,
                None => {
                    self.position.insert(key.clone(), self.items.len());
                    self.items.push((key, value));
                }
            }
        }
    }

    fn clear(&mut self) {
        self.items.clear();
        self.position.clear();
    }
}

/// `DockerConfigEntry.UnmarshalJSON`: the credential kubelet builds from one entry, and the
/// token fields it ignores.
fn entry_from(value: Json) -> Result<(Credential, Vec<&'static str>), &'static str> {
    let members = match value {
        // Go hands `null` to UnmarshalJSON, which decodes it as an empty entry.
        Json::Null => Vec::new(),
        Json::Object(m) => m,
        _ => return Err("must be an object of string fields (username, password, auth)"),
    };
    let (mut username, mut password, mut auth) = (String::new(), String::new(), String::new());
    let mut tokens = [false; IGNORED_FIELDS.len()];
    for (name, value) in members {
        let slot = if go_field_eq(&name, "username") {
            &mut username
        } else if go_field_eq(&name, "password") {
            &mut password
        } else if go_field_eq(&name, "auth") {
            &mut auth
        } else if go_field_eq(&name, "email") {
            // Read (and type-checked) by kubelet, never sent for a pull.
            if !matches!(value, Json::String(_) | Json::Null) {
                return Err("\"email\" must be a string");
            }
            continue;
        } else {
            if let Some(i) = IGNORED_FIELDS.iter().position(|f| go_field_eq(&name, f)) {
                tokens[i] = matches!(&value, Json::String(s) if !s.is_empty());
            }
            continue; // unknown fields are ignored, whatever their type
        };
        match value {
            Json::String(s) => *slot = s,
            Json::Null => {} // `null` leaves a Go string field as it was
            _ if go_field_eq(&name, "username") => return Err("\"username\" must be a string"),
            _ if go_field_eq(&name, "password") => return Err("\"password\" must be a string"),
            _ => return Err("\"auth\" must be a string"),
        }
    }
    if !auth.is_empty() {
        (username, password) = decode_auth(&auth)?;
    }
    let ignored = IGNORED_FIELDS
        .iter()
        .zip(tokens)
        .filter_map(|(f, present)| present.then_some(*f))
        .collect();
    Ok((
        Credential {
            username,
            password: Secret::new(password),
        },
        ignored,
    ))
}

/// `decodeDockerConfigFieldAuth`: padded base64 when the field (trimmed) ends with `=`,
/// unpadded otherwise; Go's decoder skips `\r` and `\n` and accepts non-zero trailing bits.
fn decode_auth(field: &str) -> Result<(String, String), &'static str> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const PADDED: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
    );
    const UNPADDED: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::RequireNone),
    );
    let engine = if field.trim().ends_with('=') {
        &PADDED
    } else {
        &UNPADDED
    };
    let cleaned: Vec<u8> = field
        .bytes()
        .filter(|b| !matches!(b, b'\r' | b'\n'))
        .collect();
    let decoded = engine
        .decode(cleaned)
        .map_err(|_| "\"auth\" is not valid base64")?;
    // Go keeps any bytes; the CRI request carrying them must be UTF-8, so such a pull fails.
    let decoded =
        String::from_utf8(decoded).map_err(|_| "\"auth\" does not decode to UTF-8 text")?;
    let (user, pass) = decoded
        .split_once(':')
        .ok_or("\"auth\" must decode to \"username:password\"")?;
    Ok((user.to_owned(), pass.to_owned()))
}

/// kubelet's `defaultRegistryHost`: the index key of `https://index.docker.io/v1/`.
const DEFAULT_REGISTRY_HOST: &str = "index.docker.io";

/// `isDefaultRegistryMatch`, on the normalised image name.
fn is_default_registry_match(name: &str) -> bool {
    let first = name.split('/').next().unwrap_or_default();
    if first.is_empty() {
        return false;
    }
    if !name.contains('/') || first == "docker.io" || first == "index.docker.io" {
        return true;
    }
    !first.contains(['.', ':'])
}

/// `BasicDockerKeyring.Add`: the index key for an `auths` key, or `None` when Go's
/// `url.Parse` rejects it.
fn index_key(raw: &str) -> Option<Vec<u8>> {
    let value = if raw.starts_with("https://") || raw.starts_with("http://") {
        raw.as_bytes().to_vec()
    } else {
        [b"https://", raw.as_bytes()].concat()
    };
    let url = go_url_parse(&value)?;
    let path: &[u8] = if url.path.starts_with(b"/v2/") || url.path.starts_with(b"/v1/") {
        &url.path[3..]
    } else {
        &url.path
    };
    let mut key = url.host;
    if !path.is_empty() && path != b"/" {
        key.extend_from_slice(path);
    }
    Some(key)
}

/// The two parts of a Go `url.URL` kubelet's matching reads.
#[derive(Clone, Debug, PartialEq, Eq)]
struct GoUrl {
    host: Vec<u8>,
    path: Vec<u8>,
}

/// `ParseSchemelessURL`: `url.Parse("https://" + s)`.
fn parse_schemeless_url(s: &[u8]) -> Option<GoUrl> {
    go_url_parse(&[b"https://", s].concat())
}

/// Whether kubelet's `ParseSchemelessURL` accepts `s` (how `validateCredentialProviderConfig`
/// checks a `matchImages` entry).
pub(crate) fn is_schemeless_url(s: &str) -> bool {
    parse_schemeless_url(s.as_bytes()).is_some()
}

/// kubelet's `URLsMatchStr(glob, target)`; a side Go cannot parse, or a malformed glob, is no
/// match (as `isImageAllowed` treats the error).
pub(crate) fn urls_match_str(glob: &str, target: &str) -> bool {
    match (
        parse_schemeless_url(glob.as_bytes()),
        parse_schemeless_url(target.as_bytes()),
    ) {
        (Some(g), Some(t)) => urls_match(&g, &t),
        _ => false,
    }
}

/// Go's `url.Parse` for an absolute `scheme://…` URL, reduced to whether it succeeds and the
/// host and (unescaped) path it yields. Go strings are bytes, so this works on bytes.
fn go_url_parse(raw: &[u8]) -> Option<GoUrl> {
    // The fragment is cut first and must unescape.
    let (raw, fragment) = split_at_first(raw, b'#');
    if let Some(f) = fragment {
        unescape(f, Mode::Other)?;
    }
    if raw.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return None; // "invalid control character in URL"
    }
    let colon = raw.iter().position(|&b| b == b':')?;
    let scheme = &raw[..colon];
    if scheme.is_empty()
        || !scheme[0].is_ascii_alphabetic()
        || !scheme
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return None;
    }
    let mut rest = &raw[colon + 1..];
    // A single trailing '?' is ForceQuery; otherwise everything from the first '?' is the
    // query (never unescaped by Parse).
    if rest.ends_with(b"?") && rest.iter().filter(|&&b| b == b'?').count() == 1 {
        rest = &rest[..rest.len() - 1];
    } else {
        rest = split_at_first(rest, b'?').0;
    }
    let after_slashes = rest.strip_prefix(b"//")?;
    let (authority, path) = match after_slashes.iter().position(|&b| b == b'/') {
        Some(i) => after_slashes.split_at(i),
        None => (after_slashes, &b""[..]),
    };
    let host = parse_authority(authority)?;
    let path = unescape(path, Mode::Other)?;
    Some(GoUrl { host, path })
}

fn split_at_first(s: &[u8], c: u8) -> (&[u8], Option<&[u8]>) {
    match s.iter().position(|&b| b == c) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

/// `parseAuthority`: user info up to the last `@` (checked, then dropped), then the host.
fn parse_authority(authority: &[u8]) -> Option<Vec<u8>> {
    let Some(at) = authority.iter().rposition(|&b| b == b'@') else {
        return parse_host(authority);
    };
    let host = parse_host(&authority[at + 1..])?;
    let userinfo = &authority[..at];
    let valid = userinfo.iter().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b':'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'%'
                    | b'@'
            )
    });
    if !valid {
        return None; // "invalid userinfo"
    }
    for part in userinfo.splitn(2, |&b| b == b':') {
        unescape(part, Mode::Other)?;
    }
    Some(host)
}

/// `parseHost`: an optional `:port` of digits after the last `:` (after `]` for a bracketed
/// host), then the host unescaped with host rules.
fn parse_host(host: &[u8]) -> Option<Vec<u8>> {
    if host.starts_with(b"[") {
        let close = host.iter().rposition(|&b| b == b']')?;
        if !valid_optional_port(&host[close + 1..]) {
            return None;
        }
        // An IPv6 zone (`%25…`) is unescaped with looser rules.
        if let Some(zone) = find(&host[..close], b"%25") {
            let mut out = unescape(&host[..zone], Mode::Host)?;
            out.extend(unescape(&host[zone..close], Mode::Zone)?);
            out.extend(unescape(&host[close..], Mode::Host)?);
            return Some(out);
        }
    } else if let Some(colon) = host.iter().rposition(|&b| b == b':')
        && !valid_optional_port(&host[colon..])
    {
        return None; // "invalid port … after host"
    }
    unescape(host, Mode::Host)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `validOptionalPort`: empty, or `:` followed by digits (possibly none).
fn valid_optional_port(port: &[u8]) -> bool {
    port.is_empty() || (port[0] == b':' && port[1..].iter().all(u8::is_ascii_digit))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Host,
    Zone,
    Other,
}

/// Go's `unescape`: `%XX` needs two hex digits; a host may only escape bytes of 0x80 and up
/// (or `%25`), a zone only `%25`, a space and what a host may contain; both may only contain
/// letters, digits and `-._~!$&'()*+,;=:[]<>"` as ASCII.
fn unescape(s: &[u8], mode: Mode) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b == b'%' {
            let hex = |j: usize| s.get(j).and_then(|&h| (h as char).to_digit(16));
            let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                return None;
            };
            // Both digits are < 16, so the byte fits.
            let v = u8::try_from(hi * 16 + lo).unwrap_or_default();
            let percent = &s[i..i + 3] == b"%25";
            match mode {
                Mode::Host if hi < 8 && !percent => return None,
                Mode::Zone if !percent && v != b' ' && !host_byte_allowed(v) => return None,
                _ => {}
            }
            out.push(v);
            i += 3;
            continue;
        }
        if mode != Mode::Other && b < 0x80 && !host_byte_allowed(b) {
            return None; // "invalid character … in host name"
        }
        out.push(b);
        i += 1;
    }
    Some(out)
}

/// `shouldEscape(c, encodeHost) == false` for ASCII.
pub(crate) fn host_byte_allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_'
                | b'.'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'['
                | b']'
                | b'<'
                | b'>'
                | b'"'
        )
}

/// `URLsMatch`: same port, same number of host labels, the key's path a string prefix of the
/// image's path, every label a `filepath.Match`.
fn urls_match(glob: &GoUrl, target: &GoUrl) -> bool {
    let (glob_labels, glob_port) = split_url(&glob.host);
    let (target_labels, target_port) = split_url(&target.host);
    glob_port == target_port
        && glob_labels.len() == target_labels.len()
        && target.path.starts_with(&glob.path)
        && glob_labels
            .iter()
            .zip(&target_labels)
            .all(|(pattern, label)| filepath_match(pattern, label) == Some(true))
}

/// `SplitURL`: `net.SplitHostPort`, or the whole host with no port when that fails; the host
/// split on `.`.
fn split_url(host: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let (h, port) = split_host_port(host).unwrap_or((host, b""));
    (h.split(|&b| b == b'.').collect(), port)
}

/// `net.SplitHostPort`.
fn split_host_port(hostport: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = hostport.iter().rposition(|&b| b == b':')?;
    let (host, after_host) = if hostport.first() == Some(&b'[') {
        let end = hostport.iter().position(|&b| b == b']')?;
        if end + 1 != colon {
            return None; // missing port, or too many colons
        }
        (&hostport[1..end], end + 1)
    } else {
        let host = &hostport[..colon];
        if host.contains(&b':') {
            return None; // too many colons
        }
        (host, 0)
    };
    let start = usize::from(hostport.first() == Some(&b'['));
    if hostport[start..].contains(&b'[') || hostport[after_host..].contains(&b']') {
        return None;
    }
    Some((host, &hostport[colon + 1..]))
}

/// One element of a `filepath.Match` pattern.
enum Token {
    Star,
    /// `?`: any one character (a UTF-8 sequence, or one invalid byte).
    AnyChar,
    /// `[...]`: one character in (or, negated, not in) the inclusive ranges.
    Class {
        negated: bool,
        ranges: Vec<(u32, u32)>,
    },
    /// A byte compared as is (Go compares literals byte by byte).
    Byte(u8),
}

/// Go's `filepath.Match` (Unix) for one host label: `Some(matched)`, or `None` for a
/// malformed pattern (`ErrBadPattern`, which kubelet treats as no match). A label has no `/`,
/// so the separator rule of `*` never applies.
fn filepath_match(pattern: &[u8], name: &[u8]) -> Option<bool> {
    let tokens = glob_tokens(pattern)?;
    // Backtracking over the last star is enough: every other token has a fixed width at a
    // given position, so the leftmost match of each star-free run is the one to keep.
    let (mut p, mut n) = (0, 0);
    let mut resume: Option<(usize, usize)> = None;
    loop {
        if p < tokens.len() {
            if let Token::Star = tokens[p] {
                resume = Some((p + 1, n));
                p += 1;
                continue;
            }
            if let Some(width) = token_matches(&tokens[p], &name[n..]) {
                p += 1;
                n += width;
                continue;
            }
        } else if n == name.len() {
            return Some(true);
        }
        match resume {
            Some((rp, rn)) if rn < name.len() => {
                resume = Some((rp, rn + 1));
                p = rp;
                n = rn + 1;
            }
            _ => return Some(false),
        }
    }
}

/// The number of bytes `token` (not a star) consumes at the start of `s`, if it matches.
fn token_matches(token: &Token, s: &[u8]) -> Option<usize> {
    match token {
        Token::Star => None,
        Token::Byte(b) => (s.first() == Some(b)).then_some(1),
        Token::AnyChar => (!s.is_empty()).then(|| decode_rune(s).1),
        Token::Class { negated, ranges } => {
            if s.is_empty() {
                return None;
            }
            let (r, width) = decode_rune(s);
            let inside = ranges.iter().any(|&(lo, hi)| lo <= r && r <= hi);
            (inside != *negated).then_some(width)
        }
    }
}

/// Go's `utf8.DecodeRune`: an invalid sequence is U+FFFD, one byte wide.
fn decode_rune(s: &[u8]) -> (u32, usize) {
    let want = match s[0] {
        0x00..=0x7f => return (u32::from(s[0]), 1),
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return (0xfffd, 1),
    };
    match s.get(..want).and_then(|b| std::str::from_utf8(b).ok()) {
        Some(text) => (text.chars().next().map_or(0xfffd, u32::from), want),
        None => (0xfffd, 1),
    }
}

/// Splits a `filepath.Match` pattern into tokens; `None` when Go would say `ErrBadPattern`.
fn glob_tokens(pattern: &[u8]) -> Option<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'*' => tokens.push(Token::Star),
            b'?' => tokens.push(Token::AnyChar),
            b'\\' => {
                i += 1;
                tokens.push(Token::Byte(*pattern.get(i)?));
            }
            b'[' => {
                i += 1;
                let negated = pattern.get(i) == Some(&b'^');
                if negated {
                    i += 1;
                }
                let mut ranges = Vec::new();
                loop {
                    if pattern.get(i) == Some(&b']') && !ranges.is_empty() {
                        break;
                    }
                    let lo = class_char(pattern, &mut i)?;
                    let hi = if pattern.get(i) == Some(&b'-') {
                        i += 1;
                        class_char(pattern, &mut i)?
                    } else {
                        lo
                    };
                    ranges.push((lo, hi));
                }
                tokens.push(Token::Class { negated, ranges });
            }
            b => tokens.push(Token::Byte(b)),
        }
        i += 1;
    }
    Some(tokens)
}

/// Go's `getEsc`: one (possibly `\`-escaped) character of a class; never `-` or `]`
/// unescaped, never invalid UTF-8, and the class must go on after it.
fn class_char(pattern: &[u8], i: &mut usize) -> Option<u32> {
    match pattern.get(*i)? {
        b'-' | b']' => return None,
        b'\\' => *i += 1,
        _ => {}
    }
    let rest = pattern.get(*i..).filter(|r| !r.is_empty())?;
    let (r, width) = decode_rune(rest);
    if r == 0xfffd && width == 1 {
        return None;
    }
    *i += width;
    (*i < pattern.len()).then_some(r)
}

/// Go's `encoding/json` field-name match: exact or case-insensitive, where `ſ` folds to `s`
/// and the Kelvin sign to `k` (`want` is lowercase ASCII).
fn go_field_eq(name: &str, want: &str) -> bool {
    name.chars()
        .map(|c| match c {
            '\u{17f}' => 's',
            '\u{212a}' => 'k',
            c => c.to_ascii_lowercase(),
        })
        .eq(want.chars())
}

/// A JSON value as far as a docker config file needs it, with object members in document
/// order and repeated members kept (serde_json's `Map` sorts them and keeps the last, and Go's
/// decoding depends on both). Also what `node::plugins` reads a plugin's response into.
pub(crate) enum Json {
    Object(Vec<(String, Json)>),
    String(String),
    Null,
    Other,
}

/// Reads `bytes` as one JSON document (trailing non-space is an error, as in Go).
pub(crate) fn parse_json(bytes: &[u8]) -> Result<Json, serde_json::Error> {
    serde_json::from_slice(bytes)
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Json, E> {
        Ok(Json::Other)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Json, E> {
        Ok(Json::Other)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Json, E> {
        Ok(Json::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Json, E> {
        Ok(Json::Other)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Json, E> {
        Ok(Json::String(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Json, E> {
        Ok(Json::String(s))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Json::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Json>()? {
            members.push((k, v));
        }
        Ok(Json::Object(members))
    }
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

    /// A config whose entries are `key → user "<key>"` with a password.
    fn config(keys: &[&str]) -> String {
        let auths: serde_json::Map<String, serde_json::Value> = keys
            .iter()
            .map(|k| {
                let entry = serde_json::json!({"username": k, "password": "pw"});
                ((*k).to_owned(), entry)
            })
            .collect();
        serde_json::json!({ "auths": auths }).to_string()
    }

    /// The keys kubelet would try for `image`, in order.
    fn tried<'a>(k: &'a Keyring, image: &str) -> Vec<&'a str> {
        k.lookup_all(&ImageRef::parse(image).unwrap())
            .iter()
            .map(|m| m.key)
            .collect()
    }

    /// Each case: the kubelet function it mirrors, the `auths` keys, the image, and the keys
    /// kubelet would try, in its order.
    #[test]
    fn matching_and_order_mirror_kubelet() {
        #[rustfmt::skip]
        let cases: &[(&str, &[&str], &str, &[&str])] = &[
            // keyring.go Add (index reverse-sorted) + kuberuntime_image.go PullImage (each
            // credential tried in turn): a stale team key does not hide the host key.
            ("Add/Lookup: every match, longer path first",
             &["reg.example.com", "reg.example.com/team"], "reg.example.com/team/app",
             &["reg.example.com/team", "reg.example.com"]),
            ("Add: reverse byte order of normalised keys",
             &["*.example.com", "reg.example.com/team/app", "reg.example.com", "reg.example.com/team"],
             "reg.example.com/team/app/x",
             &["reg.example.com/team/app", "reg.example.com/team", "reg.example.com", "*.example.com"]),
            // Reverse byte order, not specificity: 'e' sorts after '*', whatever the path.
            ("Add: reverse order is lexical, not most-specific",
             &["r*.example.com/team", "reg.example.com"], "reg.example.com/team/app",
             &["reg.example.com", "r*.example.com/team"]),
            // URLsMatch: strings.HasPrefix on the paths, not whole segments.
            ("URLsMatch: path is a string prefix",
             &["reg.example.com/team-a"], "reg.example.com/team-ab/app", &["reg.example.com/team-a"]),
            ("URLsMatch: a trailing slash keeps segments apart",
             &["reg.example.com/team-a/"], "reg.example.com/team-ab/app", &[]),
            ("URLsMatch: trailing slash, same team",
             &["reg.example.com/team-a/"], "reg.example.com/team-a/app", &["reg.example.com/team-a/"]),
            ("URLsMatch: other path",
             &["reg.example.com/team-a"], "reg.example.com/other", &[]),
            // Add: the scheme goes; a path starting with /v1/ or /v2/ loses 3 characters.
            ("Add: https:// and /v2/ stripped", &["https://quay.io/v2/"], "quay.io/org/app", &["https://quay.io/v2/"]),
            ("Add: http:// and /v1/ stripped", &["http://quay.io/v1/"], "quay.io/org/app", &["http://quay.io/v1/"]),
            ("Add: /v1/ prefix of a longer path", &["quay.io/v1/team"], "quay.io/team/app", &["quay.io/v1/team"]),
            ("Add: /v1/team is team, not v1", &["quay.io/v1/team"], "quay.io/v1/team", &[]),
            ("Add: /v2 without a slash stays a path", &["quay.io/v2"], "quay.io/org/app", &[]),
            ("Add: /v2 without a slash is a prefix of v2app", &["quay.io/v2"], "quay.io/v2app/x", &["quay.io/v2"]),
            ("Add: /v2/ only as a prefix, never a suffix", &["quay.io/team/v2/"], "quay.io/team/app", &[]),
            // Add: only a lowercase scheme is recognised; "HTTPS://" gets https:// prepended
            // and parses to host "HTTPS:", which matches nothing.
            ("Add: an uppercase scheme is not stripped", &["HTTPS://quay.io"], "quay.io/org/app", &[]),
            // url.Parse: user info, query and fragment are not part of the key.
            ("url.Parse: user info dropped", &["robot@quay.io"], "quay.io/org/app", &["robot@quay.io"]),
            ("url.Parse: query dropped", &["quay.io/org?x=1"], "quay.io/org/app", &["quay.io/org?x=1"]),
            ("url.Parse: fragment dropped", &["quay.io/org#frag"], "quay.io/org/app", &["quay.io/org#frag"]),
            ("url.Parse: path unescaped", &["quay.io/%6Frg"], "quay.io/org/app", &["quay.io/%6Frg"]),
            // SplitURL / URLsMatch: ports compared as strings, both sides.
            ("URLsMatch: equal ports", &["reg.example.com:5000"], "reg.example.com:5000/x", &["reg.example.com:5000"]),
            ("URLsMatch: key port, image without", &["reg.example.com:5000"], "reg.example.com/x", &[]),
            ("URLsMatch: image port, key without", &["reg.example.com"], "reg.example.com:5000/x", &[]),
            ("URLsMatch: ports are strings", &["reg.example.com:05000"], "reg.example.com:5000/x", &[]),
            ("URLsMatch: the default port is not implied", &["https://reg.example.com:443"], "reg.example.com/x", &[]),
            ("URLsMatch: localhost with port", &["localhost:5000"], "localhost:5000/a/b", &["localhost:5000"]),
            ("URLsMatch: IPv4 with port", &["127.0.0.1:5000"], "127.0.0.1:5000/a/b", &["127.0.0.1:5000"]),
            // URLsMatch: filepath.Match per label, same number of labels.
            ("URLsMatch: glob per label", &["*.dkr.ecr.*.amazonaws.com"],
             "123.dkr.ecr.eu-west-1.amazonaws.com/app", &["*.dkr.ecr.*.amazonaws.com"]),
            ("URLsMatch: a glob covers one label", &["*.dkr.ecr.*.amazonaws.com"],
             "123.dkr.ecr.eu.west.amazonaws.com/app", &[]),
            ("URLsMatch: * needs the label to exist", &["*.example.com"], "example.com/x", &[]),
            ("URLsMatch: * does not cross dots", &["*.example.com"], "a.b.example.com/x", &[]),
            // url.Parse: '?' starts the query, so "reg?.example.com" is host "reg": a '?'
            // glob never reaches filepath.Match.
            ("url.Parse: ? in a key is a query, not a glob", &["reg?.example.com"], "reg1.example.com/x", &[]),
            ("filepath.Match: class", &["reg[0-9].example.com"], "reg7.example.com/x", &["reg[0-9].example.com"]),
            ("filepath.Match: class miss", &["reg[0-9].example.com"], "rega.example.com/x", &[]),
            // url.Parse: '^' may not appear in a host, so a negated class breaks the key.
            ("url.Parse: ^ in a host is invalid", &["reg[^0-9].example.com"], "rega.example.com/x", &[]),
            ("filepath.Match: bad pattern never matches", &["reg[.example.com"], "reg.example.com/x", &[]),
            // url.Parse: a host starting with '[' is an IPv6 literal, so a class there breaks
            // the key and kubelet ignores it.
            ("url.Parse: leading [ is not a glob", &["[ab].example.com"], "a.example.com/x", &[]),
            // url.Parse keeps the host's case and filepath.Match is case-sensitive.
            ("URLsMatch: hosts are case-sensitive", &["Reg.Example.com"], "reg.example.com/x", &[]),
            ("URLsMatch: same case matches", &["Reg.Example.com"], "Reg.Example.com/x", &["Reg.Example.com"]),
            // Docker Hub: the image is docker.io/<repo> (parsers.ParseImageName).
            ("isDefaultRegistryMatch: index key for nginx", &["https://index.docker.io/v1/"], "nginx",
             &["https://index.docker.io/v1/"]),
            ("isDefaultRegistryMatch: index key for docker.io/org", &["index.docker.io"], "docker.io/org/app:1",
             &["index.docker.io"]),
            ("isDefaultRegistryMatch: index.docker.io image", &["https://index.docker.io/v1/"],
             "index.docker.io/library/nginx:1.27", &["https://index.docker.io/v1/"]),
            ("URLsMatch: a docker.io key matches like any host", &["docker.io"], "nginx", &["docker.io"]),
            ("URLsMatch: docker.io/library is a path prefix", &["docker.io/library", "docker.io"], "nginx",
             &["docker.io/library", "docker.io"]),
            ("Lookup: the index key is only a fallback", &["docker.io", "https://index.docker.io/v1/"], "nginx",
             &["docker.io"]),
            ("isDefaultRegistryMatch: registry-1.docker.io is just a host", &["registry-1.docker.io"], "nginx", &[]),
            ("isDefaultRegistryMatch: index.docker.io/v1 without slash is a path",
             &["index.docker.io/v1"], "nginx", &[]),
            ("isDefaultRegistryMatch: not for other registries", &["https://index.docker.io/v1/"], "ghcr.io/org/app", &[]),
            // A first component without '.' or ':' counts as Docker Hub: localhost too.
            ("isDefaultRegistryMatch: localhost falls back to the index key",
             &["https://index.docker.io/v1/"], "localhost/x", &["https://index.docker.io/v1/"]),
            ("isDefaultRegistryMatch: localhost:5000 does not", &["https://index.docker.io/v1/"], "localhost:5000/x", &[]),
        ];
        for (why, keys, image, want) in cases {
            let k = keyring(&config(keys));
            assert_eq!(
                tried(&k, image),
                *want,
                "{why}: keys {keys:?}, image {image}"
            );
        }
    }

    // keyring.go Add: keys that normalise to the same string are all kept; kubelet adds them
    // in Go map order, pullprobe in file order.
    #[test]
    fn same_normalised_key_keeps_every_entry_in_file_order() {
        let k = keyring(
            r#"{"auths": {"quay.io": {"username": "a"}, "https://quay.io/v2/": {"username": "b"},
                          "http://quay.io": {"username": "c"}}}"#,
        );
        assert_eq!(
            tried(&k, "quay.io/org/app"),
            ["quay.io", "https://quay.io/v2/", "http://quay.io"]
        );
        assert_eq!(
            k.keys().collect::<Vec<_>>(),
            ["quay.io", "https://quay.io/v2/", "http://quay.io"]
        );
    }

    // keyring.go Add: an entry url.Parse rejects is logged and ignored, not an error.
    #[test]
    fn keys_go_cannot_parse_are_ignored() {
        let k = keyring(&config(&[
            "",
            "my registry.example.com",
            "reg.example.com:abc",
            "reg.example.com/%zz",
            "reg.example.com",
        ]));
        assert_eq!(tried(&k, "reg.example.com/x"), ["reg.example.com"]);
        assert_eq!(k.keys().count(), 5);
        assert!(!k.is_empty());
        for bad in [
            "my registry.example.com",
            "reg.example.com:abc",
            "reg.example.com/%zz",
        ] {
            assert_eq!(index_key(bad), None, "{bad}");
        }
        // "" parses (host "") and matches nothing.
        assert_eq!(index_key(""), Some(Vec::new()));
    }

    // config.go decodeDockerConfigFieldAuth: padded when the trimmed field ends with '=',
    // unpadded otherwise; '\r' and '\n' skipped; split on the first ':'.
    #[test]
    fn auth_field_decoding() {
        #[rustfmt::skip]
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("dXNlcjpwdw==", Some(("user", "pw"))),        // padded
            ("dXNlcjpwdw", Some(("user", "pw"))),          // unpadded, accepted by kubelet
            ("dXNlcjpw\ndw==\r\n", Some(("user", "pw"))),  // Go skips CR and LF
            ("dXNlcjpwdx==", Some(("user", "pw"))),        // non-zero trailing bits (Go is not strict)
            ("dTpwOnE=", Some(("u", "p:q"))),              // the password keeps later colons
            ("OnB3", Some(("", "pw"))),                    // ":pw": empty username
            ("dXNlcjpwdw=", None),                         // wrong padding
            ("dXNlcjpwdw===", None),
            (" dXNlcjpwdw==", None),                       // Go does not skip spaces
            ("dXNlcjpwdw== ", None),
            ("dXNlcg==", None),                            // "user": no colon
            ("%%%", None),
        ];
        for (field, want) in cases {
            let got = decode_auth(field).ok();
            let got = got.as_ref().map(|(u, p)| (u.as_str(), p.as_str()));
            assert_eq!(got, *want, "{field:?}");
        }
        // A non-empty auth replaces username and password; an empty one does not.
        let k = keyring(&format!(
            r#"{{"auths": {{"a.io": {{"auth": "{}", "username": "x", "password": "y"}},
                            "b.io": {{"auth": "", "username": "x", "password": "y"}}}}}}"#,
            b64("user:pw")
        ));
        let got = |image: &str| {
            let m = k.lookup_all(&ImageRef::parse(image).unwrap())[0];
            (
                m.credential.username.clone(),
                m.credential.password.expose().to_owned(),
            )
        };
        assert_eq!(got("a.io/x"), ("user".to_owned(), "pw".to_owned()));
        assert_eq!(got("b.io/x"), ("x".to_owned(), "y".to_owned()));
    }

    // config.go DockerConfigEntry: username, password, email, auth — nothing else. An
    // `az acr login` entry pulls as the GUID user with an empty password; an entry without
    // any credential is kept and sent as an empty username and password.
    #[test]
    fn tokens_are_ignored_and_empty_entries_are_kept() {
        let acr_user = "00000000-0000-0000-0000-000000000000";
        let k = keyring(&format!(
            r#"{{"auths": {{
                "acr.example.com": {{"auth": "{}", "identitytoken": "refresh"}},
                "tok.example.com": {{"identitytoken": "refresh"}},
                "reg.example.com": {{"registrytoken": "bearer", "IdentityToken": "x"}},
                "both.example.com": {{"username": "u", "password": "p", "identitytoken": "r"}},
                "mail.example.com": {{"email": "a@b"}},
                "null.example.com": null,
                "empty.example.com": {{"identitytoken": ""}}
            }}}}"#,
            b64(&format!("{acr_user}:"))
        ));
        let first = |image: &str| k.lookup_all(&ImageRef::parse(image).unwrap())[0];

        let acr = first("acr.example.com/app");
        assert_eq!(acr.credential.username, acr_user);
        assert_eq!(acr.credential.password.expose(), "");
        assert!(!acr.credential.is_anonymous());
        assert_eq!(acr.ignored, ["identitytoken"]);
        assert_eq!(
            ignored_note(&acr).unwrap(),
            format!(
                "the entry \"acr.example.com\" holds only an identity token, which kubelet does \
                 not use; the node pulls as user \"{acr_user}\" with an empty password"
            )
        );

        let tok = first("tok.example.com/app");
        assert_eq!(*tok.credential, Credential::default());
        assert!(tok.credential.is_anonymous());
        assert_eq!(
            ignored_note(&tok).unwrap(),
            "the entry \"tok.example.com\" holds only an identity token, which kubelet does not \
             use; the node pulls without credentials (kubelet sends an empty username and \
             password)"
        );

        let reg = first("reg.example.com/app");
        assert_eq!(reg.ignored, ["identitytoken", "registrytoken"]);
        assert!(
            ignored_note(&reg)
                .unwrap()
                .contains("holds only an identity token and a registry token")
        );

        let both = first("both.example.com/app");
        assert_eq!(
            ignored_note(&both).unwrap(),
            "kubelet does not use the identity token of the entry \"both.example.com\"; the \
             node pulls as user \"u\" with the entry's password"
        );

        for image in [
            "mail.example.com/a",
            "null.example.com/a",
            "empty.example.com/a",
        ] {
            let m = first(image);
            assert!(m.credential.is_anonymous(), "{image}");
            assert!(m.ignored.is_empty(), "{image}");
            assert_eq!(ignored_note(&m), None, "{image}");
        }
    }

    // An empty entry still counts as a match, so the Docker Hub fallback does not apply
    // (keyring.go Lookup returns as soon as the index gave anything).
    #[test]
    fn an_empty_entry_still_blocks_the_hub_fallback() {
        let k = keyring(&format!(
            r#"{{"auths": {{"docker.io/library": {{"email": "x"}},
                            "https://index.docker.io/v1/": {{"auth": "{}"}}}}}}"#,
            b64("hub:pw")
        ));
        assert_eq!(tried(&k, "nginx"), ["docker.io/library"]);
        assert_eq!(
            tried(&k, "docker.io/org/app"),
            ["https://index.docker.io/v1/"]
        );
    }

    // encoding/json: field names match case-insensitively, a repeated field takes the last
    // value, `null` leaves a field as it was, unknown fields of any type are ignored, and a
    // repeated "auths" is decoded into the same map.
    #[test]
    fn go_json_decoding_rules() {
        let k = keyring(
            r#"{"Auths": {"a.io": {"USERNAME": "first", "Username": "u", "pAssword": "p",
                                    "password": null, "identitytoken": 5, "other": [1]}},
                "auths": {"b.io": {"uſername": "long-s"}}}"#,
        );
        let m = k.lookup_all(&ImageRef::parse("a.io/x").unwrap())[0];
        assert_eq!(m.credential.username, "u");
        assert_eq!(m.credential.password.expose(), "p");
        let m = k.lookup_all(&ImageRef::parse("b.io/x").unwrap())[0];
        assert_eq!(m.credential.username, "long-s");
        // A repeated key keeps its first place and its last value; "auths": null resets.
        let k = keyring(
            r#"{"auths": {"a.io": {"username": "1"}, "b.io": {}, "a.io": {"username": "2"}}}"#,
        );
        assert_eq!(k.keys().collect::<Vec<_>>(), ["a.io", "b.io"]);
        assert_eq!(
            k.lookup_all(&ImageRef::parse("a.io/x").unwrap())[0]
                .credential
                .username,
            "2"
        );
        let k = keyring(r#"{"auths": {"a.io": {}}, "auths": null}"#);
        assert!(k.is_empty());
    }

    #[test]
    fn legacy_dockercfg() {
        let k = keyring(r#"{"reg.example.com": {"username":"u","password":"p","email":"x@y"}}"#);
        assert_eq!(tried(&k, "reg.example.com/a"), ["reg.example.com"]);
    }

    #[test]
    fn describe_never_shows_the_password() {
        let c = |u: &str, p: &str| Credential {
            username: u.to_owned(),
            password: Secret::new(p),
        };
        assert_eq!(c("robot", "hunter2").describe(), "user \"robot\"");
        assert_eq!(
            c("robot", "").describe(),
            "user \"robot\" with an empty password"
        );
        assert_eq!(c("", "hunter2").describe(), "a password without a username");
        assert_eq!(c("", "").describe(), "an empty username and password");
        assert!(!format!("{:?}", c("robot", "hunter2")).contains("hunter2"));
    }

    #[test]
    fn malformed_files_give_errors_without_secrets() {
        let cases = [
            (
                "not json",
                "the JSON is not valid at line 1, column 2: a value was expected",
            ),
            (
                r#"{"au"#,
                "the JSON ends before it is complete at line 1, column 4: the file is cut short",
            ),
            (
                r#"{"auths": {"r.io": {"password": "a:supersecret"#,
                "the JSON ends before it is complete",
            ),
            (
                r#"{"auths": {"r.io": {"auth": "abc"}},}"#,
                "there is a comma before a closing",
            ),
            ("[1,2]", "top level must be a JSON object"),
            (r#""supersecret""#, "top level must be a JSON object"),
            (r#"{"auths": 3}"#, "\"auths\" must be an object"),
            (r#"{"auths": "supersecret"}"#, "\"auths\" must be an object"),
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
                "\"password\" must be a string",
            ),
            (
                r#"{"auths": {"r.io": {"username": ["supersecret"]}}}"#,
                "\"username\" must be a string",
            ),
            (
                r#"{"auths": {"r.io": {"auth": {"supersecret": 1}}}}"#,
                "\"auth\" must be a string",
            ),
            (
                r#"{"auths": {"r.io": "supersecret"}}"#,
                "must be an object of string fields",
            ),
            (
                r#"{"credsStore": "desktop"}"#,
                "it has no \"auths\" object; it names credsStore \"desktop\", but kubelet never runs docker credential helpers",
            ),
            (
                r#"{"credHelpers": {"gcr.io": "gcloud"}}"#,
                "credHelpers for \"gcr.io\", but kubelet never runs",
            ),
            (r#"{"supersecret": 1}"#, "missing \"auths\""),
        ];
        for (doc, want) in cases {
            let err = Keyring::from_slice(Path::new("/etc/x.json"), doc.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{doc}: {err}");
            assert!(err.contains("/etc/x.json"), "{err}");
            assert!(!err.contains("supersecret"), "{err}");
        }
        let err = Keyring::from_slice(
            Path::new("/etc/x.json"),
            br#"{"auths": {"r.io": {"password": 12}}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("auths[\"r.io\"]"), "{err}");
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
        let m = k.lookup_all(&ImageRef::parse("r.io/x").unwrap());
        assert!(!format!("{m:?}").contains("hunter2"));
    }

    // path/filepath Match, for one label.
    #[test]
    fn filepath_match_semantics() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, Option<bool>)] = &[
            ("*", "abc", Some(true)),
            ("*", "", Some(true)),
            ("a*c", "abbbc", Some(true)),
            ("a*c", "abbbd", Some(false)),
            ("a*b*c", "axxbyyc", Some(true)),
            ("a*b*c", "axxbyyb", Some(false)),
            ("a?c", "abc", Some(true)),
            ("a?c", "ac", Some(false)),
            ("a?c", "aéc", Some(true)),           // ? is one character, not one byte
            ("[a-c]x", "bx", Some(true)),
            ("[^a-c]x", "bx", Some(false)),
            ("[\\]]", "]", Some(true)),
            ("\\*", "*", Some(true)),
            ("\\*", "a", Some(false)),
            ("[]a]", "a", None),                   // ']' first is not literal in Go
            ("[a-]", "a", None),
            ("[a", "a", None),
            ("a\\", "a", None),
            ("[^]", "a", None),
            ("x[", "y", None),                     // bad even when the text fails early
            ("[z-a]", "m", Some(false)),           // an empty range is allowed
        ];
        for (pattern, name, want) in cases {
            assert_eq!(
                filepath_match(pattern.as_bytes(), name.as_bytes()),
                *want,
                "{pattern:?} {name:?}"
            );
        }
    }

    // net.SplitHostPort, through SplitURL.
    #[test]
    fn split_host_port_semantics() {
        let split = |h: &str| {
            let (labels, port) = split_url(h.as_bytes());
            let labels: Vec<String> = labels
                .iter()
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect();
            (labels.join("|"), String::from_utf8_lossy(port).into_owned())
        };
        assert_eq!(split("a.b:5000"), ("a|b".into(), "5000".into()));
        assert_eq!(split("a.b"), ("a|b".into(), String::new()));
        assert_eq!(split("a.b:"), ("a|b".into(), String::new()));
        assert_eq!(split("[::1]:5000"), ("::1".into(), "5000".into()));
        assert_eq!(split("[::1]"), ("[::1]".into(), String::new()));
        assert_eq!(split("a:b:c"), ("a:b:c".into(), String::new()));
    }
}
