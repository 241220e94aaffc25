//! CRI-O's registries configuration: `registries.conf` and its drop-ins, and the pull sources a
//! fully-qualified pull walks, read exactly as containers/image reads them.
//!
//! CRI-O pulls through containers/image (container-libs `image/`), so its semantics are the
//! specification. Mirrored functions, by file:
//! - `pkg/sysregistriesv2/system_registries_v2.go`:
//!   - `newConfigWrapperWithHomeDir`: which main file and which drop-in directories
//!     ([`ConfigSources::resolve`]);
//!   - `tryUpdatingCache`: a missing main file is an empty configuration unless its path was
//!     given explicitly; drop-ins follow in `dropInConfigs` order (each directory walked by Go's
//!     `filepath.WalkDir`: lexical order, `*.conf` only, no subdirectories, and a symlinked
//!     directory is *not* walked); a drop-in that vanished is skipped;
//!   - `loadConfigFile`: BurntSushi/toml v1.6 decoding (keys matched exactly, else
//!     case-insensitively; unknown keys ignored; a value of the wrong type fails the file), v1
//!     (`[registries.search|insecure|block]`) converted by `ConvertToV2` and refused in drop-ins
//!     and when mixed with v2 keys, `postProcessRegistries`, the short-name mode, the wildcard
//!     prefix format, and the aliases (`newShortNameAliasCache` in `shortnames.go`);
//!   - `postProcessRegistries` and `parseLocation`: locations and prefixes lose trailing `/`,
//!     schemes are refused, a wildcard prefix may have an empty location, mirrors need one,
//!     `pull-from-mirror` only on mirrors and not with `mirror-by-digest-only`, one location
//!     must not be both insecure and secure (or blocked and not) within one file, and of several
//!     entries with one prefix the first wins; entries end up sorted by prefix;
//!   - `updateWithConfigurationFrom`: a drop-in replaces whole `[[registry]]` entries by prefix,
//!     and `unqualified-search-registries`, `credential-helpers` and `short-name-mode` when it
//!     sets them (an empty list counts as set); aliases merge by name. Validation is per file:
//!     conflicts *between* files are not checked;
//!   - `FindRegistry` (`refMatchingPrefix`, `refMatchingSubdomainPrefix`): the longest matching
//!     prefix of the reference's *name* (`docker.io/library/nginx`: a prefix must spell
//!     `library/`);
//!   - `Registry.PullSourcesFromReference` and `Endpoint.rewriteReference`: mirrors in order
//!     (filtered by `mirror-by-digest-only` or each mirror's `pull-from-mirror`), the primary
//!     last, each reference rewritten and re-parsed with `reference.ParseNamed`.
//! - `docker/docker_image_src.go` `newImageSource` / `newImageSourceAttempt` and
//!   `docker/docker_client.go` `newDockerClient`: `blocked` is checked per source, on the
//!   *rewritten* reference (so a mirror of a blocked registry is still tried); a source's TLS
//!   verification is skipped iff its endpoint is `insecure`, which also allows plain HTTP when
//!   the HTTPS ping fails (`detectPropertiesHelper`); kubelet's credentials go only to sources
//!   on the image's own registry.
//! - `docker/docker_client.go` `dockerCertDir` and `pkg/tlsclientconfig` `SetupCertificates`:
//!   the certs.d directory of a host and its `*.crt`, `*.cert` + `*.key` files ([`certs_for_host`]).
//! - CRI-O `internal/storage/references` `RegistryImageReferenceFromRaw`: a reference with a tag
//!   and a digest loses its tag.
//!
//! Not mirrored: short-name resolution (`pkg/shortnames`: `unqualified-search-registries`,
//! aliases, `short-name-mode` are loaded and validated, since an invalid value fails the load,
//! and exposed, but [`RegistriesConf::pull_sources`] takes a fully-qualified [`ImageRef`]), and
//! CRI-O's in-memory cache: CRI-O loads these files at start, on SIGHUP and (with
//! `auto_reload_registries`) when the drop-in directory changes; this module reads them now.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::config::ConfigIssue;
use crate::reference::ImageRef;

/// `systemRegistriesConfPath`.
pub const SYSTEM_REGISTRIES_CONF: &str = "/etc/containers/registries.conf";
/// `systemRegistriesConfDirPath`.
pub const SYSTEM_REGISTRIES_CONF_DIR: &str = "/etc/containers/registries.conf.d";
/// `userRegistriesFile`, relative to the home directory.
const USER_REGISTRIES_FILE: &str = ".config/containers/registries.conf";
/// `userRegistriesDir`, relative to the home directory.
const USER_REGISTRIES_DIR: &str = ".config/containers/registries.conf.d";
/// `AuthenticationFileHelper`: the credential helper used when none is configured.
pub const AUTHENTICATION_FILE_HELPER: &str = "containers-auth.json";

// ---- where the configuration comes from -------------------------------------------------

/// The files containers/image reads: `configWrapper`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigSources {
    /// The main `registries.conf`.
    pub main: PathBuf,
    /// Whether a missing main file is an error: only when its path was given explicitly
    /// (`SystemRegistriesConfPath`, CRI-O's `--registries-conf` / `CONTAINER_REGISTRIES_CONF`).
    pub main_required: bool,
    /// Drop-in directories, read in this order (system, then per-user).
    pub dropin_dirs: Vec<PathBuf>,
}

impl ConfigSources {
    /// `newConfigWrapperWithHomeDir`. `conf` and `conf_dir` are the explicit overrides (CRI-O's
    /// `--registries-conf` / `--registries-conf-dir`, env `CONTAINER_REGISTRIES_CONF` /
    /// `CONTAINER_REGISTRIES_CONF_DIR`); `home` is the home directory of the CRI-O process
    /// (`/root`); `root` is `RootForImplicitAbsolutePaths`, prefixed to the system paths only.
    /// A per-user `registries.conf` that exists replaces the system file *and* directory.
    pub fn resolve(
        conf: Option<&Path>,
        conf_dir: Option<&Path>,
        home: &Path,
        root: Option<&Path>,
    ) -> Self {
        let user_file = home.join(USER_REGISTRIES_FILE);
        let user_dir = home.join(USER_REGISTRIES_DIR);
        let system = |p: &str| match root {
            Some(r) => r.join(p.trim_start_matches('/')),
            None => PathBuf::from(p),
        };
        let (main, main_required) = match conf {
            Some(c) => (c.to_owned(), true),
            // `fileutils.Exists` follows symlinks, as `metadata` does.
            None if std::fs::metadata(&user_file).is_ok() => {
                let dir = conf_dir.map_or(user_dir, Path::to_owned);
                return ConfigSources {
                    main: user_file,
                    main_required: false,
                    dropin_dirs: vec![dir],
                };
            }
            None => (system(SYSTEM_REGISTRIES_CONF), false),
        };
        let dropin_dirs = match conf_dir {
            Some(d) => vec![d.to_owned()],
            None => vec![system(SYSTEM_REGISTRIES_CONF_DIR), user_dir],
        };
        ConfigSources {
            main,
            main_required,
            dropin_dirs,
        }
    }
}

// ---- the loaded configuration ------------------------------------------------------------

/// The merged configuration of a main file and its drop-ins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistriesConf {
    /// Unique by prefix, sorted by prefix (byte order), as `updateWithConfigurationFrom` leaves them.
    registries: Vec<Registry>,
    unqualified_search_registries: Vec<String>,
    credential_helpers: Vec<String>,
    short_name_mode: ShortNameMode,
    /// Short name → fully-qualified name; `None` where a file reset the alias with `""`.
    aliases: BTreeMap<String, Option<String>>,
    files: Vec<PathBuf>,
    notices: Vec<ConfigNotice>,
}

/// One `[[registry]]` entry after `postProcessRegistries`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registry {
    /// What the entry matches: a registry, namespace or repository, or `*.example.com`.
    pub prefix: String,
    /// Where the prefix is served from; empty only for a wildcard prefix (no rewrite).
    pub location: String,
    pub insecure: bool,
    pub blocked: bool,
    pub mirror_by_digest_only: bool,
    pub mirrors: Vec<Mirror>,
    /// The file and line that defined the entry.
    pub file: PathBuf,
    pub line: usize,
}

/// One `[[registry.mirror]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirror {
    pub location: String,
    pub insecure: bool,
    pub pull_from_mirror: PullFromMirror,
}

/// `pull-from-mirror`: which pulls may use a mirror.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullFromMirror {
    /// `all`, or unset.
    All,
    /// `digest-only`.
    DigestOnly,
    /// `tag-only`.
    TagOnly,
}

/// `types.ShortNameMode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShortNameMode {
    Disabled,
    Permissive,
    Enforcing,
}

/// Something containers/image accepts silently that is probably not what was meant (an unknown
/// key, a key set twice in different case, a later entry with the same prefix, a symlinked
/// drop-in directory). Never a failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigNotice {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ConfigNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// Why the registries configuration cannot be loaded: CRI-O refuses to start with it, and a
/// reload with it fails (CRI-O then keeps the configuration it had).
#[derive(Debug, thiserror::Error)]
pub enum CrioConfigError {
    /// The file or directory exists but cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file is not a configuration containers/image loads.
    #[error("{}", render_issues(file, issues))]
    Invalid {
        file: PathBuf,
        issues: Vec<ConfigIssue>,
    },
}

fn render_issues(file: &Path, issues: &[ConfigIssue]) -> String {
    let mut s = format!(
        "invalid registries configuration {} (containers/image refuses to load it):",
        file.display()
    );
    for i in issues {
        s.push_str(&format!("\n  {}: {}\n    fix: {}", i.key, i.problem, i.fix));
    }
    s
}

impl RegistriesConf {
    /// `tryUpdatingCache`: loads the main file, then every drop-in, and merges them.
    ///
    /// # Errors
    /// When a file cannot be read or containers/image would refuse one; the first file that
    /// fails stops the load, as upstream.
    pub fn load(sources: &ConfigSources) -> Result<Self, CrioConfigError> {
        let mut notices = Vec::new();
        let mut files = Vec::new();
        let mut conf = match load_file(&sources.main, false, &mut notices)? {
            Some(parsed) => {
                files.push(sources.main.clone());
                parsed
            }
            None if sources.main_required => {
                return Err(CrioConfigError::Read {
                    path: sources.main.clone(),
                    source: io::Error::from(io::ErrorKind::NotFound),
                });
            }
            None => ParsedFile::default(),
        };
        for path in dropin_configs(&sources.dropin_dirs, &mut notices)? {
            // A drop-in removed between listing and reading is skipped (`tryUpdatingCache`).
            if let Some(dropin) = load_file(&path, true, &mut notices)? {
                files.push(path);
                conf.update_with(dropin);
            }
        }
        let mut credential_helpers = conf.credential_helpers.unwrap_or_default();
        if credential_helpers.is_empty() {
            credential_helpers = vec![AUTHENTICATION_FILE_HELPER.to_owned()];
        }
        Ok(RegistriesConf {
            registries: conf.registries.into_values().collect(),
            unqualified_search_registries: conf.unqualified_search.unwrap_or_default(),
            credential_helpers,
            short_name_mode: conf.short_name_mode.unwrap_or(ShortNameMode::Permissive),
            aliases: conf.aliases,
            files,
            notices,
        })
    }

    /// The `[[registry]]` entries, sorted by prefix.
    pub fn registries(&self) -> &[Registry] {
        &self.registries
    }

    /// `UnqualifiedSearchRegistries`.
    pub fn unqualified_search_registries(&self) -> &[String] {
        &self.unqualified_search_registries
    }

    /// `CredentialHelpers`: never empty (`containers-auth.json` by default).
    pub fn credential_helpers(&self) -> &[String] {
        &self.credential_helpers
    }

    /// `GetShortNameMode`: `permissive` unless a file sets it.
    pub fn short_name_mode(&self) -> ShortNameMode {
        self.short_name_mode
    }

    /// The merged `[aliases]` (normalised values; `None` = reset by a later file).
    pub fn aliases(&self) -> &BTreeMap<String, Option<String>> {
        &self.aliases
    }

    /// The files that were read, main file first.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// What containers/image accepted silently but was probably not meant.
    pub fn notices(&self) -> &[ConfigNotice] {
        &self.notices
    }

    /// `FindRegistry`: the entry with the longest prefix matching `reference`, a registry,
    /// repository name or whole reference starting with its registry (`docker.io/library/nginx`).
    /// Of two matching prefixes of one length, the first in prefix order wins.
    pub fn find_registry(&self, reference: &str) -> Option<&Registry> {
        let mut best: Option<&Registry> = None;
        for r in &self.registries {
            if ref_matching_prefix(reference, &r.prefix).is_some()
                && r.prefix.len() > best.map_or(0, |b| b.prefix.len())
            {
                best = Some(r);
            }
        }
        best
    }

    /// The sources a pull of `image` tries, in order: `newImageSource` with
    /// `FindRegistry(ref.Name())` and `PullSourcesFromReference`. A source that is blocked
    /// stays in the list, marked, because containers/image fails that attempt and moves on.
    ///
    /// # Errors
    /// When containers/image cannot parse the reference, or a rewritten reference: the pull
    /// fails before any source is tried.
    pub fn pull_sources(&self, image: &ImageRef) -> Result<Vec<PullSource>, PullSourcesError> {
        let name = format!("{}/{}", image.registry(), image.repository());
        // CRI-O's `RegistryImageReferenceFromRaw`: a digest wins over a tag.
        let logical = match (image.digest(), image.tag()) {
            (Some(d), _) => format!("{name}@{d}"),
            (None, t) => format!("{name}:{}", t.unwrap_or("latest")),
        };
        parse_named(&logical).map_err(|problem| PullSourcesError::Reference {
            reference: logical.clone(),
            problem,
        })?;
        let digested = image.digest().is_some();
        let (prefix, endpoints, entry) = match self.find_registry(&name) {
            Some(reg) => {
                let mut eps: Vec<(&str, bool, bool)> = Vec::new();
                for m in &reg.mirrors {
                    let wanted = if reg.mirror_by_digest_only {
                        digested
                    } else {
                        match m.pull_from_mirror {
                            PullFromMirror::All => true,
                            PullFromMirror::DigestOnly => digested,
                            PullFromMirror::TagOnly => !digested,
                        }
                    };
                    if wanted {
                        eps.push((&m.location, m.insecure, true));
                    }
                }
                eps.push((&reg.location, reg.insecure, false));
                (reg.prefix.as_str(), eps, Some(reg))
            }
            // No entry: "the equivalent of a default configuration".
            None => (
                logical.as_str(),
                vec![(logical.as_str(), false, false)],
                None,
            ),
        };
        let mut out = Vec::with_capacity(endpoints.len());
        for (location, insecure, mirror) in endpoints {
            let (_, reference) =
                rewrite_reference(&logical, prefix, location).map_err(|problem| {
                    PullSourcesError::Rewrite {
                        // Without an entry the location is the reference itself, which parsed.
                        entry: Box::new(entry.map(EntryOrigin::of).unwrap_or_else(|| {
                            EntryOrigin {
                                prefix: prefix.to_owned(),
                                file: PathBuf::new(),
                                line: 0,
                            }
                        })),
                        location: location.to_owned(),
                        reference: logical.clone(),
                        problem,
                    }
                })?;
            let physical = format!("{}/{}", reference.registry(), reference.repository());
            let blocked_by = self
                .find_registry(&physical)
                .filter(|r| r.blocked)
                .map(EntryOrigin::of);
            // A location is `host[:port][/namespace]`; without an entry (or with a wildcard
            // prefix's empty location) the source is the reference's own registry.
            let location_path = entry
                .filter(|_| !location.is_empty())
                .and_then(|_| location.split_once('/'))
                .map(|(_, path)| path.trim_end_matches('/'))
                .filter(|path| !path.is_empty())
                .map(str::to_owned);
            out.push(PullSource {
                location_path,
                kubelet_credentials: reference.registry() == image.registry(),
                reference,
                insecure,
                mirror,
                blocked_by,
            });
        }
        Ok(out)
    }
}

/// One place a pull tries: containers/image's `PullSource`, with what `newImageSourceAttempt`
/// and `newDockerClient` decide for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullSource {
    /// The reference pulled from this source, rewritten to its location. Its `registry()` is
    /// the certs.d directory name and the credential key; `api_authority()` is what is dialled.
    pub reference: ImageRef,
    /// The endpoint's `insecure`: TLS verification is skipped, and plain HTTP is tried when the
    /// HTTPS `/v2/` ping fails.
    pub insecure: bool,
    /// A mirror (every source but the last, the primary location).
    pub mirror: bool,
    /// The namespace of the registries.conf `location` after its host (`cache` for
    /// `mirror.local:5000/cache`), `None` for a bare host or without an entry: it tells apart
    /// two sources on the same host, which containers/image asks as two sources
    /// (`PullSourcesFromReference` lists one per mirror, then the location).
    pub location_path: Option<String>,
    /// The `blocked` entry matching the rewritten reference: this attempt fails with
    /// "registry … is blocked" and the pull moves on.
    pub blocked_by: Option<EntryOrigin>,
    /// Whether kubelet's credentials are sent: CRI-O drops them for a source on another
    /// registry than the image's (`newImageSourceAttempt`).
    pub kubelet_credentials: bool,
}

/// A `[[registry]]` entry, named for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryOrigin {
    pub prefix: String,
    pub file: PathBuf,
    pub line: usize,
}

impl EntryOrigin {
    fn of(r: &Registry) -> Self {
        EntryOrigin {
            prefix: r.prefix.clone(),
            file: r.file.clone(),
            line: r.line,
        }
    }
}

impl fmt::Display for EntryOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[[registry]] prefix {:?} ({}:{})",
            self.prefix,
            self.file.display(),
            self.line
        )
    }
}

/// Why containers/image fails a pull before trying any source.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PullSourcesError {
    /// containers/image's reference grammar (older than kubelet's) refuses the image.
    #[error(
        "containers/image cannot parse image reference {reference:?}: {problem}; CRI-O cannot pull it"
    )]
    Reference { reference: String, problem: String },
    /// `rewriteReference` produced a reference that `reference.ParseNamed` refuses.
    #[error(
        "{entry} rewrites {reference:?} with location {location:?} into a reference containers/image \
         refuses: {problem}; fix the location (for Docker Hub, spell the 'library/' namespace \
         in both prefix and location)"
    )]
    Rewrite {
        entry: Box<EntryOrigin>,
        location: String,
        reference: String,
        problem: String,
    },
}

// ---- loading: tryUpdatingCache, dropInConfigs, loadConfigFile ----------------------------

/// `parsedConfig`: one file, validated, or the merge so far.
#[derive(Debug, Default)]
struct ParsedFile {
    registries: BTreeMap<String, Registry>,
    unqualified_search: Option<Vec<String>>,
    credential_helpers: Option<Vec<String>>,
    short_name_mode: Option<ShortNameMode>,
    aliases: BTreeMap<String, Option<String>>,
}

impl ParsedFile {
    /// `parsedConfig.updateWithConfigurationFrom`.
    fn update_with(&mut self, dropin: ParsedFile) {
        self.registries.extend(dropin.registries);
        if dropin.unqualified_search.is_some() {
            self.unqualified_search = dropin.unqualified_search;
        }
        if dropin.credential_helpers.is_some() {
            self.credential_helpers = dropin.credential_helpers;
        }
        if dropin.short_name_mode.is_some() {
            self.short_name_mode = dropin.short_name_mode;
        }
        self.aliases.extend(dropin.aliases);
    }
}

/// `dropInConfigs`: each directory walked as `filepath.WalkDir` walks it.
fn dropin_configs(
    dirs: &[PathBuf],
    notices: &mut Vec<ConfigNotice>,
) -> Result<Vec<PathBuf>, CrioConfigError> {
    let mut out = Vec::new();
    let is_conf = |p: &Path| p.as_os_str().as_encoded_bytes().ends_with(b".conf");
    for dir in dirs {
        let read_err = |source| CrioConfigError::Read {
            path: dir.clone(),
            source,
        };
        // WalkDir starts with an Lstat of the root: a symlink is visited as a file, not walked.
        let meta = match std::fs::symlink_metadata(dir) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(read_err(e)),
        };
        if !meta.is_dir() {
            if meta.file_type().is_symlink() && std::fs::metadata(dir).is_ok_and(|m| m.is_dir()) {
                notices.push(ConfigNotice {
                    file: dir.clone(),
                    line: 0,
                    message:
                        "this drop-in directory is a symbolic link, which containers/image does \
                              not follow (Go's filepath.WalkDir): its files are ignored; make it a \
                              real directory"
                            .to_owned(),
                });
            }
            if is_conf(dir) {
                out.push(dir.clone());
            }
            continue;
        }
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read_err)? {
            let entry = entry.map_err(read_err)?;
            let is_dir = entry.file_type().map_err(read_err)?.is_dir();
            names.push((entry.file_name(), is_dir));
        }
        // WalkDir reads each directory sorted by name (bytes).
        names.sort();
        for (name, is_dir) in names {
            let path = dir.join(&name);
            if !is_dir && is_conf(&path) {
                out.push(path);
            }
        }
    }
    Ok(out)
}

/// `loadConfigFile`. `Ok(None)` when the file does not exist.
fn load_file(
    path: &Path,
    force_v2: bool,
    notices: &mut Vec<ConfigNotice>,
) -> Result<Option<ParsedFile>, CrioConfigError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CrioConfigError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let invalid = |issues| CrioConfigError::Invalid {
        file: path.to_owned(),
        issues,
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Err(invalid(vec![ConfigIssue {
            key: "(file)".to_owned(),
            problem: "the file is not UTF-8 text".to_owned(),
            fix: "save registries.conf as UTF-8".to_owned(),
        }]));
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut d = Decoder {
        text,
        file: path,
        issues: Vec::new(),
        notices,
    };
    let doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let at = e.span().map_or(0, |s| s.start);
            let (line, col) = line_col(text, at);
            return Err(invalid(vec![ConfigIssue {
                key: format!("line {line}, column {col}"),
                problem: format!("not valid TOML: {}", e.message()),
                fix: "fix the TOML syntax at that position".to_owned(),
            }]));
        }
    };
    let raw = d.document(doc.get_ref());
    if !d.issues.is_empty() {
        return Err(invalid(d.issues));
    }
    let mut v = Validator {
        file: path,
        issues: Vec::new(),
        notices: d.notices,
    };
    let parsed = v.file(raw, force_v2);
    if v.issues.is_empty() {
        Ok(Some(parsed))
    } else {
        Err(invalid(v.issues))
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

// ---- decoding: the TOML tree as BurntSushi/toml's `unify` fills the Go structs ------------

/// A value and the line it was written on.
#[derive(Clone, Debug)]
struct Located<T> {
    value: T,
    line: usize,
    /// Where it sits in the file, for messages (`registry[2].mirror[0]`).
    key: String,
}

/// `tomlConfig`: `V2RegistriesConf` and `V1RegistriesConf` decoded side by side. `Option`
/// is a Go slice or map that the file left nil; strings are set when non-empty.
#[derive(Debug, Default)]
struct RawFile {
    registries: Option<Vec<RawRegistry>>,
    unqualified_search: Option<Vec<Located<String>>>,
    credential_helpers: Option<Vec<String>>,
    short_name_mode: Option<Located<String>>,
    additional_layer_store_auth_helper: bool,
    aliases: Option<Vec<(Located<String>, String)>>,
    v1_search: Option<Vec<Located<String>>>,
    v1_insecure: Option<Vec<Located<String>>>,
    v1_block: Option<Vec<Located<String>>>,
    /// The line of the first v2 key, and of the first v1 key, for the mixing message.
    v2_line: Option<usize>,
    v1_line: Option<usize>,
}

#[derive(Debug, Default)]
struct RawRegistry {
    prefix: String,
    location: String,
    insecure: bool,
    blocked: bool,
    mirror_by_digest_only: bool,
    pull_from_mirror: String,
    mirrors: Vec<RawMirror>,
    line: usize,
    key: String,
}

#[derive(Debug, Default)]
struct RawMirror {
    location: String,
    insecure: bool,
    pull_from_mirror: String,
    line: usize,
    key: String,
}

const TOP_KEYS: &[&str] = &[
    "registry",
    "unqualified-search-registries",
    "credential-helpers",
    "short-name-mode",
    "additional-layer-store-auth-helper",
    "aliases",
    "registries",
];
const REGISTRY_KEYS: &[&str] = &[
    "prefix",
    "location",
    "insecure",
    "pull-from-mirror",
    "mirror",
    "blocked",
    "mirror-by-digest-only",
];
const MIRROR_KEYS: &[&str] = &["location", "insecure", "pull-from-mirror"];
const V1_KEYS: &[&str] = &["search", "insecure", "block"];
const V1_LIST_KEYS: &[&str] = &["registries"];

type Value<'i> = Spanned<DeValue<'i>>;

struct Decoder<'a> {
    text: &'a str,
    file: &'a Path,
    issues: Vec<ConfigIssue>,
    notices: &'a mut Vec<ConfigNotice>,
}

impl<'i> Decoder<'_> {
    fn line(&self, offset: usize) -> usize {
        line_col(self.text, offset).0
    }

    /// `unifyStruct`: each key goes to the field of that name, else to a field whose name is
    /// equal under Unicode case folding (`strings.EqualFold`); other keys are ignored.
    fn fields<'t>(
        &mut self,
        table: &'t DeTable<'i>,
        known: &[&'static str],
        path: &str,
    ) -> Vec<(&'static str, String, &'t Value<'i>)> {
        let mut out: Vec<(&'static str, String, &'t Value<'i>)> = Vec::new();
        for (k, v) in table.iter() {
            let key: &str = k.get_ref();
            let line = self.line(k.span().start);
            let full = join_key(path, key);
            let field = known
                .iter()
                .find(|f| **f == key)
                .or_else(|| known.iter().find(|f| equal_fold(f, key)));
            let Some(&field) = field else {
                self.notices.push(ConfigNotice {
                    file: self.file.to_owned(),
                    line,
                    message: format!(
                        "unknown key {full:?} is ignored by containers/image (known here: {})",
                        known.join(", ")
                    ),
                });
                continue;
            };
            if let Some(i) = out.iter().position(|(f, _, _)| *f == field) {
                self.notices.push(ConfigNotice {
                    file: self.file.to_owned(),
                    line,
                    message: format!(
                        "{full:?} sets {field:?} a second time (keys match regardless of case); \
                         containers/image keeps either value at random; keep one"
                    ),
                });
                if key == field {
                    out[i] = (field, full, v);
                }
                continue;
            }
            out.push((field, full, v));
        }
        out
    }

    fn mismatch(&mut self, key: &str, v: &Value<'i>, want: &str, fix: &str) {
        let line = self.line(v.span().start);
        self.issues.push(ConfigIssue {
            key: format!("{key} (line {line})"),
            problem: format!("must be {want}, not {}", type_name(v.get_ref())),
            fix: fix.to_owned(),
        });
    }

    fn string(&mut self, key: &str, v: &Value<'i>) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => {
                self.mismatch(key, v, "a string", "quote the value");
                None
            }
        }
    }

    fn boolean(&mut self, key: &str, v: &Value<'i>) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.mismatch(key, v, "true or false", "write true or false, unquoted");
                None
            }
        }
    }

    fn strings(&mut self, key: &str, v: &Value<'i>) -> Option<Vec<Located<String>>> {
        let DeValue::Array(items) = v.get_ref() else {
            self.mismatch(key, v, "an array of strings", "write [\"a\", \"b\"]");
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let k = format!("{key}[{i}]");
            let line = self.line(item.span().start);
            out.push(Located {
                value: self.string(&k, item)?,
                line,
                key: k,
            });
        }
        Some(out)
    }

    /// An array of tables (`[[x]]` or an inline array of inline tables).
    fn tables<'t>(
        &mut self,
        key: &str,
        v: &'t Value<'i>,
    ) -> Option<Vec<(String, usize, &'t DeTable<'i>)>> {
        let DeValue::Array(items) = v.get_ref() else {
            self.mismatch(
                key,
                v,
                "an array of tables",
                &format!("write each entry as a [[{key}]] table"),
            );
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let k = format!("{key}[{i}]");
            match item.get_ref() {
                DeValue::Table(t) => out.push((k, self.line(item.span().start), t)),
                _ => {
                    self.mismatch(
                        &k,
                        item,
                        "a table",
                        &format!("write it as a [[{key}]] table"),
                    );
                    return None;
                }
            }
        }
        Some(out)
    }

    fn table<'t>(&mut self, key: &str, v: &'t Value<'i>) -> Option<&'t DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.mismatch(key, v, "a table", &format!("write it as a [{key}] table"));
                None
            }
        }
    }

    fn document(&mut self, doc: &DeTable<'i>) -> RawFile {
        let mut f = RawFile::default();
        for (field, key, v) in self.fields(doc, TOP_KEYS, "") {
            let line = self.line(v.span().start);
            if field == "registries" {
                f.v1_line.get_or_insert(line);
                self.v1(&key, v, &mut f);
                continue;
            }
            match field {
                "registry" => {
                    let regs = self.tables(&key, v).map(|ts| {
                        ts.into_iter()
                            .map(|(k, line, t)| self.registry(k, line, t))
                            .collect()
                    });
                    f.registries = regs;
                    f.v2_line.get_or_insert(line);
                }
                "unqualified-search-registries" => {
                    f.unqualified_search = self.strings(&key, v);
                    f.v2_line.get_or_insert(line);
                }
                "credential-helpers" => {
                    f.credential_helpers = self
                        .strings(&key, v)
                        .map(|l| l.into_iter().map(|s| s.value).collect());
                    f.v2_line.get_or_insert(line);
                }
                "short-name-mode" => {
                    if let Some(s) = self.string(&key, v).filter(|s| !s.is_empty()) {
                        f.short_name_mode = Some(Located {
                            value: s,
                            line,
                            key,
                        });
                        f.v2_line.get_or_insert(line);
                    }
                }
                "additional-layer-store-auth-helper" => {
                    if self.string(&key, v).is_some_and(|s| !s.is_empty()) {
                        f.additional_layer_store_auth_helper = true;
                        f.v2_line.get_or_insert(line);
                    }
                }
                _ => {
                    // "aliases": `map[string]string`.
                    let Some(t) = self.table(&key, v) else {
                        continue;
                    };
                    let mut aliases = Vec::new();
                    for (name, value) in t.iter() {
                        let k = join_key(&key, name.get_ref());
                        if let Some(s) = self.string(&k, value) {
                            let line = self.line(name.span().start);
                            let name = Located {
                                value: name.get_ref().to_string(),
                                line,
                                key: k,
                            };
                            aliases.push((name, s));
                        }
                    }
                    f.aliases = Some(aliases);
                    f.v2_line.get_or_insert(line);
                }
            }
        }
        f
    }

    fn registry(&mut self, key: String, line: usize, t: &DeTable<'i>) -> RawRegistry {
        let mut r = RawRegistry {
            line,
            ..RawRegistry::default()
        };
        for (field, k, v) in self.fields(t, REGISTRY_KEYS, &key) {
            match field {
                "prefix" => r.prefix = self.string(&k, v).unwrap_or_default(),
                "location" => r.location = self.string(&k, v).unwrap_or_default(),
                "insecure" => r.insecure = self.boolean(&k, v).unwrap_or_default(),
                "blocked" => r.blocked = self.boolean(&k, v).unwrap_or_default(),
                "mirror-by-digest-only" => {
                    r.mirror_by_digest_only = self.boolean(&k, v).unwrap_or_default();
                }
                "pull-from-mirror" => r.pull_from_mirror = self.string(&k, v).unwrap_or_default(),
                _ => {
                    for (mk, mline, mt) in self.tables(&k, v).unwrap_or_default() {
                        let mut m = RawMirror {
                            line: mline,
                            ..RawMirror::default()
                        };
                        for (field, k, v) in self.fields(mt, MIRROR_KEYS, &mk) {
                            match field {
                                "location" => m.location = self.string(&k, v).unwrap_or_default(),
                                "insecure" => m.insecure = self.boolean(&k, v).unwrap_or_default(),
                                _ => m.pull_from_mirror = self.string(&k, v).unwrap_or_default(),
                            }
                        }
                        m.key = mk;
                        r.mirrors.push(m);
                    }
                }
            }
        }
        r.key = key;
        r
    }

    /// `V1TOMLConfig`: `[registries.search|insecure|block] registries = [...]`.
    fn v1(&mut self, key: &str, v: &Value<'i>, f: &mut RawFile) {
        let Some(t) = self.table(key, v) else {
            return;
        };
        for (field, k, v) in self.fields(t, V1_KEYS, key) {
            let Some(list_table) = self.table(&k, v) else {
                continue;
            };
            for (_, lk, lv) in self.fields(list_table, V1_LIST_KEYS, &k) {
                let list = self.strings(&lk, lv);
                match field {
                    "search" => f.v1_search = list,
                    "insecure" => f.v1_insecure = list,
                    _ => f.v1_block = list,
                }
            }
        }
    }
}

fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Go's `strings.EqualFold` of an ASCII field name and a key: the only non-ASCII characters
/// that fold to ASCII letters are U+212A KELVIN SIGN (k) and U+017F LATIN SMALL LETTER LONG S (s).
fn equal_fold(field: &str, key: &str) -> bool {
    let fold = |c: char| match c {
        '\u{212a}' => Some('k'),
        '\u{17f}' => Some('s'),
        c if c.is_ascii() => Some(c.to_ascii_lowercase()),
        _ => None,
    };
    field.chars().count() == key.chars().count()
        && field
            .chars()
            .zip(key.chars())
            .all(|(a, b)| fold(b) == Some(a.to_ascii_lowercase()))
}

// ---- validation: ConvertToV2, postProcessRegistries, the rest of loadConfigFile ------------

struct Validator<'a> {
    file: &'a Path,
    issues: Vec<ConfigIssue>,
    notices: &'a mut Vec<ConfigNotice>,
}

impl Validator<'_> {
    fn issue(&mut self, key: &str, line: usize, problem: String, fix: &str) {
        self.issues.push(ConfigIssue {
            key: format!("{key} (line {line})"),
            problem,
            fix: fix.to_owned(),
        });
    }

    /// The rest of `loadConfigFile`, after decoding.
    fn file(&mut self, mut raw: RawFile, force_v2: bool) -> ParsedFile {
        let v1_set = raw.v1_search.is_some() || raw.v1_insecure.is_some() || raw.v1_block.is_some();
        if v1_set {
            let line = raw.v1_line.unwrap_or(1);
            if force_v2 {
                self.issue(
                    "registries",
                    line,
                    "a drop-in file must use the v2 format, this one uses v1 ([registries.search], \
                     [registries.insecure], [registries.block])"
                        .to_owned(),
                    "write [[registry]] tables and unqualified-search-registries instead",
                );
                return ParsedFile::default();
            }
            let v2_set = raw.registries.is_some()
                || raw.unqualified_search.is_some()
                || raw.credential_helpers.is_some()
                || raw.short_name_mode.is_some()
                || raw.additional_layer_store_auth_helper
                || raw.aliases.is_some();
            if v2_set {
                let v2 = raw.v2_line.unwrap_or(1);
                self.issue(
                    "registries",
                    line,
                    format!(
                        "mixing sysregistry v1/v2 is not supported: the v1 [registries.*] tables \
                         and the v2 keys (line {v2}) are both present, even if empty"
                    ),
                    "keep only the v2 format ([[registry]], unqualified-search-registries)",
                );
                return ParsedFile::default();
            }
            self.convert_v1(&mut raw);
        }
        let registries = self.post_process(raw.registries.unwrap_or_default());
        let unqualified_search = raw.unqualified_search.map(|list| {
            list.into_iter()
                .filter_map(|l| self.search_registry(l))
                .collect()
        });
        let short_name_mode = raw.short_name_mode.and_then(|m| {
            let mode = match m.value.as_str() {
                "disabled" => Some(ShortNameMode::Disabled),
                "enforcing" => Some(ShortNameMode::Enforcing),
                "permissive" => Some(ShortNameMode::Permissive),
                _ => None,
            };
            if mode.is_none() {
                self.issue(
                    &m.key,
                    m.line,
                    format!("invalid short-name mode: {:?}", m.value),
                    "use \"enforcing\", \"permissive\" or \"disabled\"",
                );
            }
            mode
        });
        for r in registries.values() {
            if r.prefix.starts_with("*.") && r.prefix.contains(['/', '@', ':']) {
                self.issue(
                    "prefix",
                    r.line,
                    format!(
                        "wildcarded prefix should be in the format: *.example.com; {:?} is incorrectly formatted",
                        r.prefix
                    ),
                    "a wildcard prefix names hosts only: no port, path, tag or digest",
                );
            }
        }
        let aliases = self.aliases(raw.aliases.unwrap_or_default());
        ParsedFile {
            registries,
            unqualified_search,
            credential_helpers: raw.credential_helpers,
            short_name_mode,
            aliases,
        }
    }

    /// `V1RegistriesConf.ConvertToV2`: one entry per location, blocked ones first.
    fn convert_v1(&mut self, raw: &mut RawFile) {
        let mut regs: Vec<RawRegistry> = Vec::new();
        let lists = [(raw.v1_block.take(), true), (raw.v1_insecure.take(), false)];
        for (list, blocked) in lists {
            for l in list.unwrap_or_default() {
                let location = match parse_location(&l.value) {
                    Ok(loc) => loc,
                    Err(problem) => {
                        self.issue(&l.key, l.line, problem, LOCATION_FIX);
                        continue;
                    }
                };
                let i = match regs.iter().position(|r| r.location == location) {
                    Some(i) => i,
                    None => {
                        regs.push(RawRegistry {
                            prefix: location.clone(),
                            location,
                            line: l.line,
                            key: l.key,
                            ..RawRegistry::default()
                        });
                        regs.len() - 1
                    }
                };
                if blocked {
                    regs[i].blocked = true;
                } else {
                    regs[i].insecure = true;
                }
            }
        }
        raw.registries = Some(regs);
        raw.unqualified_search = raw.v1_search.take();
    }

    /// `postProcessRegistries` for the `[[registry]]` entries of one file.
    fn post_process(&mut self, raws: Vec<RawRegistry>) -> BTreeMap<String, Registry> {
        let mut regs = Vec::new();
        for raw in raws {
            if let Some(r) = self.normalise(raw) {
                regs.push(r);
            }
        }
        // One location (or wildcard prefix) must agree with itself on insecure and blocked.
        let group = |r: &Registry| {
            if r.location.is_empty() {
                r.prefix.clone()
            } else {
                r.location.clone()
            }
        };
        let mut reported = HashSet::new();
        for r in &regs {
            for o in &regs {
                for (what, differ) in [
                    ("insecure", r.insecure != o.insecure),
                    ("blocked", r.blocked != o.blocked),
                ] {
                    if differ && group(r) == group(o) && reported.insert((group(r), what)) {
                        self.issue(
                            "location",
                            r.line,
                            format!(
                                "registry {:?} is defined multiple times with conflicting '{what}' \
                                 setting (also at line {})",
                                group(r),
                                o.line
                            ),
                            &format!(
                                "give every [[registry]] entry of this location the same '{what}'"
                            ),
                        );
                    }
                }
            }
        }
        // "The first longest prefix always wins": later entries with the same prefix are dropped.
        let mut out: BTreeMap<String, Registry> = BTreeMap::new();
        for r in regs {
            if let Some(first) = out.get(&r.prefix) {
                self.notices.push(ConfigNotice {
                    file: self.file.to_owned(),
                    line: r.line,
                    message: format!(
                        "this [[registry]] has the same prefix {:?} as the one at line {}, so \
                         containers/image ignores it; merge the two",
                        r.prefix, first.line
                    ),
                });
                continue;
            }
            out.insert(r.prefix.clone(), r);
        }
        out
    }

    /// The per-entry checks of `postProcessRegistries`.
    fn normalise(&mut self, raw: RawRegistry) -> Option<Registry> {
        let (key, line) = (raw.key.as_str(), raw.line);
        let location = match parse_location(&raw.location) {
            Ok(l) => l,
            Err(p) => {
                self.issue(&format!("{key}.location"), line, p, LOCATION_FIX);
                return None;
            }
        };
        let prefix = if raw.prefix.is_empty() {
            if location.is_empty() {
                self.issue(
                    key,
                    line,
                    "invalid condition: both location and prefix are unset".to_owned(),
                    "set location (and prefix, if it differs)",
                );
                return None;
            }
            location.clone()
        } else {
            let prefix = match parse_location(&raw.prefix) {
                Ok(p) => p,
                Err(p) => {
                    self.issue(&format!("{key}.prefix"), line, p, LOCATION_FIX);
                    return None;
                }
            };
            if !prefix.starts_with("*.") && location.is_empty() {
                self.issue(
                    key,
                    line,
                    "invalid condition: location is unset and prefix is not in the format: *.example.com"
                        .to_owned(),
                    "set location; only a wildcard prefix may go without one",
                );
                return None;
            }
            prefix
        };
        if !raw.pull_from_mirror.is_empty() {
            self.issue(
                &format!("{key}.pull-from-mirror"),
                line,
                format!("pull-from-mirror must not be set for a non-mirror registry {prefix:?}"),
                "move it into the [[registry.mirror]] tables, or use mirror-by-digest-only",
            );
            return None;
        }
        let mut mirrors = Vec::new();
        for m in raw.mirrors {
            let location = match parse_location(&m.location) {
                Ok(l) if l.is_empty() => {
                    self.issue(
                        &m.key,
                        m.line,
                        "invalid condition: mirror location is unset".to_owned(),
                        "give every [[registry.mirror]] a location",
                    );
                    return None;
                }
                Ok(l) => l,
                Err(p) => {
                    self.issue(&format!("{}.location", m.key), m.line, p, LOCATION_FIX);
                    return None;
                }
            };
            if raw.mirror_by_digest_only && !m.pull_from_mirror.is_empty() {
                self.issue(
                    &format!("{}.pull-from-mirror", m.key),
                    m.line,
                    format!(
                        "cannot set mirror usage mirror-by-digest-only for the registry ({prefix:?}) \
                         and pull-from-mirror for per-mirror ({location:?}) at the same time"
                    ),
                    "use either mirror-by-digest-only on the registry or pull-from-mirror on its mirrors",
                );
                return None;
            }
            let pull_from_mirror = match m.pull_from_mirror.as_str() {
                "" | "all" => PullFromMirror::All,
                "digest-only" => PullFromMirror::DigestOnly,
                "tag-only" => PullFromMirror::TagOnly,
                other => {
                    self.issue(
                        &format!("{}.pull-from-mirror", m.key),
                        m.line,
                        format!(
                            "unsupported pull-from-mirror value {other:?} for mirror {location:?}"
                        ),
                        "use \"all\", \"digest-only\" or \"tag-only\"",
                    );
                    return None;
                }
            };
            mirrors.push(Mirror {
                location,
                insecure: m.insecure,
                pull_from_mirror,
            });
        }
        Some(Registry {
            prefix,
            location,
            insecure: raw.insecure,
            blocked: raw.blocked,
            mirror_by_digest_only: raw.mirror_by_digest_only,
            mirrors,
            file: self.file.to_owned(),
            line,
        })
    }

    /// An `unqualified-search-registries` entry: `parseLocation`, then `anchoredDomainRegexp`.
    fn search_registry(&mut self, l: Located<String>) -> Option<String> {
        match parse_location(&l.value) {
            Ok(r) if is_domain(&r) => Some(r),
            Ok(r) => {
                self.issue(
                    &l.key,
                    l.line,
                    format!("invalid unqualified-search-registries entry {r:?}"),
                    "list registries as host[:port], without a namespace",
                );
                None
            }
            Err(p) => {
                self.issue(&l.key, l.line, p, LOCATION_FIX);
                None
            }
        }
    }

    /// `newShortNameAliasCache`: every malformed alias is reported.
    fn aliases(&mut self, raw: Vec<(Located<String>, String)>) -> BTreeMap<String, Option<String>> {
        let mut out = BTreeMap::new();
        for (name, value) in raw {
            if let Err(p) = validate_short_name(&name.value) {
                self.issue(
                    &name.key,
                    name.line,
                    p,
                    "an alias name is a short name: no registry, tag or digest",
                );
            }
            if value.is_empty() {
                out.insert(name.value, None);
                continue;
            }
            match parse_short_name_value(&value) {
                Ok(v) => {
                    out.insert(name.value, Some(v));
                }
                Err(p) => self.issue(
                    &name.key,
                    name.line,
                    p,
                    "an alias value is registry/repository, without tag or digest",
                ),
            }
        }
        out
    }
}

const LOCATION_FIX: &str = "write host[:port][/path] without http:// or https://";

/// `parseLocation`: trailing `/` removed, URI schemes refused.
fn parse_location(input: &str) -> Result<String, String> {
    let trimmed = input.trim_end_matches('/');
    if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
        return Err(format!(
            "invalid location '{input}': URI schemes are not supported"
        ));
    }
    Ok(trimmed.to_owned())
}

// ---- FindRegistry, rewriteReference -----------------------------------------------------

/// `refMatchingPrefix`: the length of `prefix` when it prefixes `reference` at a boundary
/// (`:`, `/`, `@` or the end). This lets `example.com` match `example.com:5000` (upstream:
/// "unintended … DON'T RELY ON THE CURRENT BEHAVIOR", but it is the behaviour).
fn ref_matching_prefix(reference: &str, prefix: &str) -> Option<usize> {
    if prefix.starts_with("*.") {
        return ref_matching_subdomain_prefix(reference, prefix);
    }
    let rest = reference.strip_prefix(prefix)?;
    match rest.bytes().next() {
        None | Some(b':' | b'/' | b'@') => Some(prefix.len()),
        Some(_) => None,
    }
}

/// `refMatchingSubdomainPrefix`: `*.example.com` matches a host ending in `.example.com` (the
/// first occurrence of `.example.com`, before any `/`), and returns the host's length.
fn ref_matching_subdomain_prefix(reference: &str, prefix: &str) -> Option<usize> {
    let suffix = &prefix[1..];
    let index = reference.find(suffix)?;
    if reference[..index].contains('/') {
        return None;
    }
    let end = index + suffix.len();
    match reference.as_bytes().get(end) {
        None | Some(b':' | b'/' | b'@') => Some(end),
        Some(_) => None,
    }
}

/// `Endpoint.rewriteReference`: the location replaces the matched prefix. Returns the rewritten
/// text and its parse.
fn rewrite_reference(
    reference: &str,
    prefix: &str,
    location: &str,
) -> Result<(String, ImageRef), String> {
    let Some(len) = ref_matching_prefix(reference, prefix) else {
        return Err(format!(
            "invalid prefix '{prefix}' for reference '{reference}'"
        ));
    };
    if location.is_empty() {
        if !prefix.starts_with("*.") {
            return Err(format!(
                "invalid prefix '{prefix}' for empty location, should be in the format: *.example.com"
            ));
        }
        return Ok((reference.to_owned(), parse_named(reference)?));
    }
    let rewritten = format!("{location}{}", &reference[len..]);
    let parsed = parse_named(&rewritten).map_err(|p| format!("rewriting reference: {p}"))?;
    Ok((rewritten, parsed))
}

// ---- containers/image's reference grammar (docker/reference, a fork of an older distribution) --

/// `reference.ParseNamed`: `ParseNormalizedNamed`, and the result must print as the input.
/// containers/image's grammar differs from kubelet's (distribution v0.6): a domain must contain
/// `.` or `:` or be `localhost` (upper case alone does not make one), there are no bracketed
/// IPv6 literals, and the whole name (domain included) has at most 255 characters.
fn parse_named(s: &str) -> Result<ImageRef, String> {
    let first = s.split_once('/').map(|(d, _)| d);
    let Some(domain) = first.filter(|d| d.contains(['.', ':']) || *d == "localhost") else {
        return Err(format!(
            "{s:?} does not start with a registry (a host with '.' or ':', or localhost), so it \
             would be read as a Docker Hub name: repository name must be canonical"
        ));
    };
    if !is_domain(domain) {
        return Err(format!(
            "{domain:?} is not a registry host containers/image accepts (host names, IPv4 \
             addresses and a port; no bracketed IPv6): invalid reference format"
        ));
    }
    let r = ImageRef::parse(s).map_err(|e| e.to_string())?;
    let name_len = r.registry().len() + 1 + r.repository().len();
    if name_len > 255 {
        return Err(format!(
            "repository name must not be more than 255 characters (it has {name_len})"
        ));
    }
    // `ImageRef` gives a name-only reference the tag `latest`; `ParseNamed` does not.
    let name_only = !s.contains('@') && !s.rsplit('/').next().unwrap_or(s).contains(':');
    let printed = if name_only {
        format!("{}/{}", r.registry(), r.repository())
    } else {
        r.to_string()
    };
    if printed != s {
        return Err(format!(
            "repository name must be canonical: {s:?} normalises to {printed:?}"
        ));
    }
    Ok(r)
}

/// `DomainRegexp`: dot-separated `[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?` labels, then an
/// optional `:digits`.
fn is_domain(s: &str) -> bool {
    let (host, port) = match s.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    };
    host.split('.').all(label_ok)
        && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
}

/// `nameComponent`: `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
fn is_name_component(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(&b[0]) || !alnum(&b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(&b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(&b[i]) {
            i += 1;
        }
        let sep = &s[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-')) {
            return false;
        }
    }
    true
}

/// `validateShortName`: `reference.Parse` accepts it, it has no tag or digest, and its domain
/// (if the first of several components reads as one) has no `.` or `:` and is not `localhost`.
fn validate_short_name(name: &str) -> Result<(), String> {
    let components: Vec<&str> = name.split('/').collect();
    let path_ok = |cs: &[&str]| !cs.is_empty() && cs.iter().all(|c| is_name_component(c));
    let (domain, parses) = match components.split_first() {
        Some((first, rest)) if !rest.is_empty() && is_domain(first) && path_ok(rest) => {
            (Some(*first), true)
        }
        _ => (None, path_ok(&components)),
    };
    if name.contains('@') {
        return Err(format!(
            "invalid short name {name:?}: must not contain digest"
        ));
    }
    if !parses || name.len() > 255 {
        let tagged = name.rsplit_once(':').is_some_and(|(_, t)| !t.contains('/'));
        return Err(if tagged {
            format!("invalid short name {name:?}: must not contain tag")
        } else {
            format!("cannot parse short name: {name:?}")
        });
    }
    if domain.is_some_and(|d| d.contains(['.', ':']) || d == "localhost") {
        return Err(format!(
            "invalid short name {name:?}: must not contain registry"
        ));
    }
    Ok(())
}

/// `parseShortNameValue`: a registry and repository, no tag or digest; the normalised name.
fn parse_short_name_value(alias: &str) -> Result<String, String> {
    if alias.contains('@') {
        return Err(format!("invalid alias {alias:?}: must not contain digest"));
    }
    if alias
        .rsplit_once(':')
        .is_some_and(|(_, t)| !t.contains('/'))
    {
        return Err(format!("invalid alias {alias:?}: must not contain tag"));
    }
    let has_registry = alias
        .split_once('/')
        .is_some_and(|(d, _)| d.contains(['.', ':']) || d == "localhost");
    if !has_registry {
        return Err(format!(
            "invalid alias {alias:?}: must contain registry and repository"
        ));
    }
    let (domain, _) = alias.split_once('/').unwrap_or_default();
    if !is_domain(domain) {
        return Err(format!("parsing alias {alias:?}: invalid reference format"));
    }
    let r = ImageRef::parse(alias).map_err(|e| format!("parsing alias {alias:?}: {e}"))?;
    let name = format!("{}/{}", r.registry(), r.repository());
    if name.len() > 255 {
        return Err(format!(
            "parsing alias {alias:?}: repository name must not be more than 255 characters"
        ));
    }
    Ok(name)
}

// ---- certs.d: dockerCertDir and tlsclientconfig.SetupCertificates --------------------------

/// The certs.d roots `dockerCertDir` searches, in order: `$HOME/.config/containers/certs.d`,
/// then `/etc/containers/certs.d` and `/etc/docker/certs.d` (`perHostCertDirs`, under
/// `RootForImplicitAbsolutePaths` when given).
pub fn cert_search_dirs(home: &Path, root: Option<&Path>) -> Vec<PathBuf> {
    let system = |p: &str| match root {
        Some(r) => r.join(p),
        None => Path::new("/").join(p),
    };
    vec![
        home.join(".config/containers/certs.d"),
        system("etc/containers/certs.d"),
        system("etc/docker/certs.d"),
    ]
}

/// The TLS files containers/image uses for one host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFiles {
    /// The directory `dockerCertDir` chose: the first `<root>/<host[:port]>` that exists, else
    /// the last candidate (which then adds nothing).
    pub dir: PathBuf,
    /// `*.crt`, in name order: added to the system roots. PEM blocks that do not parse are
    /// skipped without error (`CertPool.AppendCertsFromPEM`).
    pub cas: Vec<CaFile>,
    /// `*.cert` with its `*.key`, in name order: offered as client certificates. A pair that does
    /// not load fails the attempt (`tls.LoadX509KeyPair`), which is the TLS layer's to check.
    pub clients: Vec<ClientPair>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct CaFile {
    pub path: PathBuf,
    pub pem: Vec<u8>,
}

impl fmt::Debug for CaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaFile")
            .field("path", &self.path)
            .field("pem_bytes", &self.pem.len())
            .finish()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Why containers/image fails a pull attempt while reading a host's certs.d directory.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "missing key {} for client certificate {}; add the key, or rename a CA certificate to *.crt",
        key.display(), cert.display()
    )]
    MissingKey { cert: PathBuf, key: PathBuf },
    #[error(
        "missing client certificate {} for key {}; add the certificate or remove the key",
        cert.display(), key.display()
    )]
    MissingCert { key: PathBuf, cert: PathBuf },
}

/// `dockerCertDir` then `SetupCertificates` for `host_port` (the reference's registry as
/// written: `docker.io`, `registry.example:5000`; the port must match the reference exactly).
///
/// # Errors
/// As `SetupCertificates`: the first unreadable `*.crt` (one that vanished is skipped), a
/// `*.cert` without its `*.key` or the reverse, or a directory that exists but cannot be listed
/// for a reason other than permissions. The attempt on that source fails; the pull moves on.
pub fn certs_for_host(search: &[PathBuf], host_port: &str) -> Result<CertFiles, CertsError> {
    let mut dir = PathBuf::new();
    for root in search {
        dir = root.join(host_port);
        match std::fs::metadata(&dir) {
            Ok(_) => break,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
                ) => {}
            Err(source) => return Err(CertsError::Read { path: dir, source }),
        }
    }
    let mut files = CertFiles {
        dir: dir.clone(),
        cas: Vec::new(),
        clients: Vec::new(),
    };
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
            ) =>
        {
            return Ok(files);
        }
        Err(source) => return Err(CertsError::Read { path: dir, source }),
    };
    let mut names = Vec::new();
    for e in entries {
        let e = e.map_err(|source| CertsError::Read {
            path: dir.clone(),
            source,
        })?;
        names.push(e.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    for name in &names {
        let path = dir.join(name);
        if name.ends_with(".crt") {
            match std::fs::read(&path) {
                Ok(pem) => files.cas.push(CaFile {
                    path: path.clone(),
                    pem,
                }),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(CertsError::Read { path, source }),
            }
        }
        if let Some(base) = name.strip_suffix(".cert") {
            let key = format!("{base}.key");
            if !names.contains(&key) {
                return Err(CertsError::MissingKey {
                    cert: path,
                    key: dir.join(key),
                });
            }
            let key = dir.join(key);
            for p in [&path, &key] {
                std::fs::File::open(p).map_err(|source| CertsError::Read {
                    path: p.clone(),
                    source,
                })?;
            }
            files.clients.push(ClientPair { cert: path, key });
        } else if let Some(base) = name.strip_suffix(".key") {
            let cert = format!("{base}.cert");
            if !names.contains(&cert) {
                return Err(CertsError::MissingCert {
                    key: path,
                    cert: dir.join(cert),
                });
            }
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    //! Upstream's own cases and fixtures (container-libs `image/pkg/sysregistriesv2/testdata`,
    //! `image/pkg/tlsclientconfig/testdata`) as facts, written into temporary directories.

    use super::*;

    const DIGEST: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    // ---- upstream testdata, verbatim -------------------------------------------------------

    const FIND_REGISTRY: &str = r#"[[registry]]
location = "registry.com:5000"
prefix = "simple-prefix.com"

[[registry]]
location = "another-registry.com:5000"
prefix = "complex-prefix.com:4000/with/path"

[[registry]]
location = "registry.com:5000"
prefix = "another-registry.com"

[[registry]]
location = "no-prefix.com"

[[registry]]
location = "empty-prefix.com"
prefix = ""

[[registry]]
location = "subdomain-prefix.com"
prefix = "*.so.simple-prefix.com"

[[registry]]
location = "subdomain-prefix-2.com"
prefix = "*.simple-prefix.com"

# For subdomain override using dropin registries.conf.d/subdomain-override-1.conf
[[registry]]
location = "subdomain-prefix-1.com"
prefix = "*.not.quite.simple-prefix.com"

# For subdomain override failure using registries.conf.d/subdomain-override-2.conf
# with unmatched prefix = "*.example.com"
[[registry]]
location = "subdomain-prefix-2.com"
prefix = "*.docker.io"

# For subdomain override using dropin registries.conf.d/subdomain-override-3.conf
[[registry]]
location = "subdomain-prefix-3.com"
prefix = "*.bar.example.com"

# For longest wildcarded prefix match in comparison with "*.docker.io"
[[registry]]
location = "subdomain-prefix-4.com"
prefix = "*.bar.docker.io"

# For longest prefix match in comparison with *.bar.example.com
[[registry]]
location = "subdomain-prefix-5.com"
prefix = "foo.bar.example.com:5000"

# For empty location with wildcard prefix
[[registry]]
prefix="*.internal.registry.com"

[[registry]]
prefix="*.com"

[[registry]]
prefix="*.foobar.io"
"#;

    /// `testdata/registries.conf.d`.
    const CONF_D: &[(&str, &str)] = &[
        (
            "config-1.conf",
            r#"unqualified-search-registries = ["example-overwrite.com"]
credential-helpers = ["we", "will", "be", "overridden", "later"]

[[registry]]
location = "1.com"

[aliases]
docker="docker.io/library/config1"
config1="config1.com/image"
barz="barz.com/image/config1"
"#,
        ),
        (
            "config-2.conf",
            r#"short-name-mode="permissive"

credential-helpers=["dropin-1", "dropin-2"]

[[registry]]
location = "1.com"

[[registry]]
location = "2.com"

[[registry]]
location = "base.com"
blocked = true

[aliases]
config2="config2.com/image"
barz="barz.com/config2"
added3="xxx.com/image"
example=""
"#,
        ),
        ("config-3.conf", ""),
        (
            "config-3.ignore",
            r#"unqualified-search-registries = ["ignore-example-overwrite.com"]

[[registry]]
location = "ignore-me-because-i-have-a-wrong-suffix.com"

[aliases]
ignore="me because i have a wrong suffix"
"#,
        ),
        (
            "subdomain-override-1.conf",
            "[[registry]]\nlocation = \"subdomain-prefix-1-overridden-by-dropin-location.com\"\nprefix = \"*.not.quite.simple-prefix.com\"\n",
        ),
        (
            "subdomain-override-2.conf",
            "[[registry]]\nlocation = \"subdomain-prefix-2-overridden-by-dropin-location.com\"\nprefix = \"*.docker.com\"\n",
        ),
        (
            "subdomain-override-3.conf",
            "[[registry]]\nlocation = \"subdomain-prefix-3-overridden-by-dropin-location.com\"\nprefix = \"*.bar.example.com\"\n",
        ),
    ];

    const PULL_SOURCES: &str = r#"[[registry]]
prefix = "registry-a.com/foo"
location = "registry-a.com/bar"

[[registry.mirror]]
location = "mirror-1.registry-a.com"

[[registry.mirror]]
location = "mirror-2.registry-a.com"
insecure = true

[[registry]]
prefix = "registry-b.com/foo"
location = "registry-b.com/bar"
mirror-by-digest-only = true

[[registry.mirror]]
location = "mirror-1.registry-b.com"

[[registry.mirror]]
location = "mirror-2.registry-b.com"

[[registry]]
prefix = "registry-a.com/baz"
location = "registry-a.com/bar"

[[registry.mirror]]
location = "mirror-1.registry-a.com"

[[registry.mirror]]
location = "mirror-2.registry-a.com"
insecure = true

[[registry]]
prefix = "registry-b.com/baz"
location = "registry-b.com/bar"

[[registry.mirror]]
pull-from-mirror = "digest-only"
location = "mirror-1.registry-b.com"

[[registry.mirror]]
pull-from-mirror = "digest-only"
location = "mirror-2.registry-b.com"

[[registry]]
prefix = "registry-c.com/baz"
location = "registry-c.com/bar"

[[registry.mirror]]
location = "mirror-1.registry-c.com"

[[registry.mirror]]
pull-from-mirror = "digest-only"
location = "mirror-2.registry-c.com"

[[registry]]
prefix = "registry-d.com/baz"
location = "registry-d.com/bar"
mirror-by-digest-only = true

[[registry.mirror]]
location = "mirror-1.registry-d.com"

[[registry.mirror]]
location = "mirror-2.registry-d.com"

[[registry]]
prefix = "registry-e.com/baz"
location = "registry-e.com/bar"

[[registry.mirror]]
pull-from-mirror = "tag-only"
location = "mirror-1.registry-e.com"

[[registry.mirror]]
pull-from-mirror = "tag-only"
location = "mirror-2.registry-e.com"

[[registry]]
prefix = "registry-f.com/baz"
location = "registry-f.com/bar"

[[registry.mirror]]
location = "mirror-1.registry-f.com"

[[registry.mirror]]
pull-from-mirror = "tag-only"
location = "mirror-2.registry-f.com"

[[registry]]
prefix = "registry-g.com/baz"
location = "registry-g.com/bar"

[[registry.mirror]]
pull-from-mirror = "digest-only"
location = "mirror-1.registry-g.com"

[[registry.mirror]]
pull-from-mirror = "tag-only"
location = "mirror-2.registry-g.com"

[[registry.mirror]]
location = "mirror-3.registry-g.com"

[[registry.mirror]]
pull-from-mirror = "all"
location = "mirror-4.registry-g.com"
"#;

    /// `unmarshal.conf`, `invalidate-cache.conf` and `TestConfigCache`'s file.
    const UNMARSHAL: &str = r#"[[registry]]
location = "registry.com"

[[registry.mirror]]
location = "mirror-1.registry.com"

[[registry.mirror]]
location = "mirror-2.registry.com"


[[registry]]
location = "blocked.registry.com"
blocked = true


[[registry]]
location = "insecure.registry.com"
insecure = true


[[registry]]
location = "untrusted.registry.com"
insecure = true
"#;

    const MIRRORS: &str = r#"[[registry]]
location = "registry.com"

[[registry.mirror]]
location = "mirror-1.registry.com"

[[registry.mirror]]
location = "mirror-2.registry.com"
insecure = true

[[registry]]
location = "blocked.registry.com"
blocked = true
"#;

    const UNQUALIFIED_SEARCH: &str = r#"unqualified-search-registries = ["registry-a.com", "registry-c.com", "registry-d.com"]

[[registry]]
location = "registry-a.com"

[[registry]]
location = "registry-b.com"

[[registry]]
location = "registry-c.com"

[[registry]]
location = "registry-d.com"
"#;

    const V1_COMPATIBILITY: &str = r#"[registries.search]
registries = ["registry-a.com////", "registry-c.com", "registry-d.com"]

[registries.block]
registries = ["registry-b.com"]

[registries.insecure]
registries = ["registry-b.com////", "registry-d.com", "registry-e.com", "registry-a.com"]
"#;

    const CRED_HELPER: &str = r#"credential-helpers = ["helper-1", "helper-2"]
[[registry]]
location = "registry-a.com"

[[registry]]
location = "registry-b.com"

[[registry]]
location = "registry-c.com/foo"
prefix = "registry-c.com"
"#;

    const ALIASES: &str = r#"short-name-mode="enforcing"

[aliases]
docker="docker.io/library/foo"
"quay/foo"="quay.io/library/foo"
example="example.com/library/foo"
empty=""
"#;

    /// Invalid files and a fragment of upstream's error (`TestInvalidV2Configs`,
    /// `TestInvalidMirrorConfig`, `TestMixingV1andV2`, `TestV1BackwardsCompatibility`,
    /// `TestFindUnqualifiedSearchRegistries`, `TestGetShortNameMode`, `TestTryUpdatingCache`,
    /// the aliases tests), then the line the issue must name.
    const INVALID: &[(&str, &str, &str, usize)] = &[
        (
            "insecure-conflicts.conf",
            "[[registry]]\nlocation = \"registry.com\"\n\n[[registry.mirror]]\nlocation = \"mirror-1.registry.com\"\n\n[[registry.mirror]]\nlocation = \"mirror-2.registry.com\"\n\n\n[[registry]]\nlocation = \"registry.com\"\ninsecure = true\n",
            "registry \"registry.com\" is defined multiple times with conflicting 'insecure' setting",
            1,
        ),
        (
            "blocked-conflicts.conf",
            "[[registry]]\nlocation = \"registry.com\"\n\n[[registry.mirror]]\nlocation = \"mirror-1.registry.com\"\n\n[[registry.mirror]]\nlocation = \"mirror-2.registry.com\"\n\n\n[[registry]]\nlocation = \"registry.com\"\nblocked = true\n",
            "registry \"registry.com\" is defined multiple times with conflicting 'blocked' setting",
            1,
        ),
        (
            "missing-mirror-location.conf",
            "unqualified-search-registries = [\"registry-a.com\"]\n\n[[registry]]\nlocation = \"registry-a.com\"\n\n[[registry]]\nlocation = \"registry-b.com\"\n[[registry.mirror]]\nlocation = \"mirror-b.com\"\n[[registry.mirror]]\n",
            "invalid condition: mirror location is unset",
            10,
        ),
        (
            "invalid-prefix.conf",
            "[[registry]]\nlocation = \"registry.com:5000\"\nprefix = \"http://schema-is-invalid.com\"\n\n[[registry]]\nlocation = \"another-registry.com:5000\"\nprefix = \"complex-prefix.com:4000/with/path\"\n",
            "invalid location 'http://schema-is-invalid.com': URI schemes are not supported",
            1,
        ),
        (
            "invalid-config-level-mirror.conf",
            "[[registry]]\nprefix = \"registry-a.com/foo\"\nlocation = \"registry-a.com/bar\"\npull-from-mirror = \"digest-only\"\n\n[[registry.mirror]]\nlocation = \"mirror-1.registry-a.com\"\n\n[[registry.mirror]]\nlocation = \"mirror-2.registry-a.com\"\ninsecure = true",
            "pull-from-mirror must not be set for a non-mirror registry \"registry-a.com/foo\"",
            1,
        ),
        (
            "invalid-conflict-mirror.conf",
            "[[registry]]\nprefix = \"registry-a.com/foo\"\nlocation = \"registry-a.com/bar\"\nmirror-by-digest-only = true\n\n[[registry.mirror]]\npull-from-mirror = \"digest-only\"\nlocation = \"mirror-1.registry-a.com\"\n\n[[registry.mirror]]\nlocation = \"mirror-2.registry-a.com\"\ninsecure = true",
            "cannot set mirror usage mirror-by-digest-only for the registry (\"registry-a.com/foo\") and pull-from-mirror for per-mirror (\"mirror-1.registry-a.com\") at the same time",
            6,
        ),
        (
            "invalid-value-mirror.conf",
            "[[registry]]\nprefix = \"registry-a.com/foo\"\nlocation = \"registry-a.com/bar\"\n\n[[registry.mirror]]\npull-from-mirror = \"notvalid\"\nlocation = \"mirror-1.registry-a.com\"\n\n[[registry.mirror]]\nlocation = \"mirror-2.registry-a.com\"\ninsecure = true",
            "unsupported pull-from-mirror value \"notvalid\" for mirror \"mirror-1.registry-a.com\"",
            5,
        ),
        (
            "mixing-v1-v2.conf",
            "unqualified-search-registries = [\"registry-a.com\", \"registry-c.com\"]\n\n[registries.search]\nregistries = [\"registry-a.com\", \"registry-c.com\"]\n\n[registries.block]\nregistries = [\"registry-b.com\"]\n\n[registries.insecure]\nregistries = [\"registry-d.com\", \"registry-e.com\", \"registry-a.com\"]\n\n[[registry]]\nlocation = \"registry-a.com\"\n",
            "mixing sysregistry v1/v2 is not supported",
            3,
        ),
        (
            "mixing-v1-v2-empty.conf",
            "unqualified-search-registries = []\n\n[registries.search]\nregistries = []\n\n[registries.block]\nregistries = []\n\n[registries.insecure]\nregistries = []\n",
            "mixing sysregistry v1/v2 is not supported",
            3,
        ),
        (
            "v1-invalid-block.conf",
            "[registries.search]\nregistries = [\"registry-a.com////\", \"registry-c.com\", \"registry-d.com\", \"http://schema-is-invalid.com\"]\n\n[registries.block]\nregistries = [\"registry-b.com\", \"http://schema-is-invalid.com\"]\n",
            "invalid location 'http://schema-is-invalid.com': URI schemes are not supported",
            5,
        ),
        (
            "v1-invalid-insecure.conf",
            "[registries.insecure]\nregistries = [\"registry-b.com////\", \"registry-d.com\", \"registry-e.com\", \"registry-a.com\", \"http://schema-is-invalid.com\"]\n",
            "URI schemes are not supported",
            2,
        ),
        (
            "v1-invalid-search.conf",
            "[registries.search]\nregistries = [\"registry-a.com////\", \"registry-c.com\", \"registry-d.com\", \"http://schema-is-invalid.com\"]\n\n[registries.block]\nregistries = [\"registry-b.com\"]\n",
            "URI schemes are not supported",
            2,
        ),
        (
            "invalid-search.conf",
            "unqualified-search-registries = [\"registry-a.com/namespace-is-forbidden\"]\n",
            "invalid unqualified-search-registries entry \"registry-a.com/namespace-is-forbidden\"",
            1,
        ),
        (
            "invalid-short-name-mode.conf",
            "short-name-mode=\"invalid\"\n",
            "invalid short-name mode: \"invalid\"",
            1,
        ),
        (
            "invalid-aliases.conf",
            "[aliases]\nimage1=\"quay.io/repo/image:1\"\nimage2=\"image:1\"\n",
            "invalid alias \"quay.io/repo/image:1\": must not contain tag",
            2,
        ),
        (
            "try-update-cache-invalid.conf",
            "invalid\n",
            "not valid TOML",
            1,
        ),
    ];

    // ---- helpers ----------------------------------------------------------------------------

    fn write(dir: &Path, files: &[(&str, &str)]) {
        for (name, text) in files {
            let p = dir.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
    }

    /// Loads `main` with the drop-ins in `dropins`, as `SystemRegistriesConfPath` +
    /// `SystemRegistriesConfDirPath` do.
    fn load(main: &str, dropins: &[(&str, &str)]) -> Result<RegistriesConf, CrioConfigError> {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), &[("registries.conf", main)]);
        let d = tmp.path().join("registries.conf.d");
        std::fs::create_dir(&d).unwrap();
        write(&d, dropins);
        RegistriesConf::load(&ConfigSources {
            main: tmp.path().join("registries.conf"),
            main_required: true,
            dropin_dirs: vec![d],
        })
    }

    fn image(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap()
    }

    fn locations(c: &RegistriesConf) -> Vec<&str> {
        c.registries().iter().map(|r| r.location.as_str()).collect()
    }

    /// `location (i|s)` per source, `!` when blocked.
    fn sources(c: &RegistriesConf, img: &str) -> Vec<String> {
        c.pull_sources(&image(img))
            .unwrap()
            .iter()
            .map(|s| {
                format!(
                    "{}{}{}",
                    s.reference,
                    if s.insecure { " insecure" } else { "" },
                    if s.blocked_by.is_some() {
                        " blocked"
                    } else {
                        ""
                    }
                )
            })
            .collect()
    }

    fn issues(e: &CrioConfigError) -> &[ConfigIssue] {
        match e {
            CrioConfigError::Invalid { issues, .. } => issues,
            CrioConfigError::Read { .. } => panic!("expected an invalid file, got {e}"),
        }
    }

    // ---- pure functions -----------------------------------------------------------------------

    #[test]
    fn ref_matching_prefix_cases_from_test_ref_matching_prefix() {
        let d = format!("example.com/foo@{DIGEST}");
        let other = format!("example.com/foo@sha256:{}", "b".repeat(64));
        let cases: &[(&str, &str, Option<usize>)] = &[
            ("docker.io", "docker.io", Some(9)),
            ("docker.io", "example.com", None),
            ("example.com:5000", "example.com:5000", Some(16)),
            ("example.com:50000", "example.com:5000", None),
            ("example.com:5000", "example.com", Some(11)),
            ("example.com/foo", "example.com", Some(11)),
            ("example.com/foo/bar", "example.com", Some(11)),
            ("example.com/foo/bar:baz", "example.com", Some(11)),
            (&d, "example.com", Some(11)),
            ("docker.io", "docker.io/library", None),
            ("docker.io/library", "docker.io/library", Some(17)),
            ("example.com/library", "docker.io/library", None),
            ("docker.io/libraryy", "docker.io/library", None),
            ("docker.io/library/busybox", "docker.io/library", Some(17)),
            ("docker.io", "docker.io/library/busybox", None),
            (
                "docker.io/library/busybox",
                "docker.io/library/busybox",
                Some(25),
            ),
            (
                "example.com/library/busybox",
                "docker.io/library/busybox",
                None,
            ),
            (
                "docker.io/library/busybox2",
                "docker.io/library/busybox",
                None,
            ),
            ("example.com", "example.com/foo:bar", None),
            ("example.com/foo", "example.com/foo:bar", None),
            ("example.com/foo:bar", "example.com/foo:bar", Some(19)),
            ("example.com/foo:bar2", "example.com/foo:bar", None),
            ("example.com", &d, None),
            ("example.com/foo", &d, None),
            (&d, &d, Some(d.len())),
            (&other, &d, None),
            ("example.com/foo", "*", None),
        ];
        for (reference, prefix, want) in cases {
            assert_eq!(
                ref_matching_prefix(reference, prefix),
                *want,
                "{reference} vs {prefix}"
            );
        }
    }

    #[test]
    fn subdomain_cases_from_test_ref_matching_subdomain_prefix() {
        let n = |s: &str| Some(s.len());
        let d1 = format!("yet.another.example.com/foo/bar@{DIGEST}");
        let d2 = format!("yet.another.sub.example.com/foo/bar@{DIGEST}");
        let cases: &[(&str, &str, Option<usize>)] = &[
            ("docker.io", "*.io", n("docker.io")),
            ("docker.io/foo", "*.com", None),
            ("example.com/foo", "*.co", None),
            ("example.com/foo", "*.example.com", None),
            ("example.com/foo", "*.com", n("example.com")),
            ("example.com/foo:bar", "*.com", n("example.com")),
            ("example.com/foo/bar:baz", "*.com", n("example.com")),
            ("yet.another.example.com/foo", "**.example.com", None),
            (
                "yet.another.example.com/foo",
                "***.another.example.com",
                None,
            ),
            (
                "yet.another.example.com/foo",
                "**********.another.example.com",
                None,
            ),
            (
                "yet.another.example.com/foo/bar",
                "**********.another.example.com",
                None,
            ),
            (
                "yet.another.example.com/foo/bar",
                "*.another.example.com",
                n("yet.another.example.com"),
            ),
            (
                "another.example.com/namespace.com/foo/bar/bbq:baz",
                "*.example.com",
                n("another.example.com"),
            ),
            (
                "example.net/namespace-ends-in.com/foo/bar/bbq:baz",
                "*.com",
                None,
            ),
            (
                "another.example.com/namespace.com/foo/bar/bbq:baz",
                "*.namespace.com",
                None,
            ),
            ("sub.example.com/foo/bar", "*.com", n("sub.example.com")),
            (
                "sub.example.com/foo/bar",
                "*.example.com",
                n("sub.example.com"),
            ),
            (
                "another.sub.example.com/foo/bar/bbq:baz",
                "*.example.com",
                n("another.sub.example.com"),
            ),
            (
                "another.sub.example.com/foo/bar/bbq:baz",
                "*.sub.example.com",
                n("another.sub.example.com"),
            ),
            (&d1, "*.example.com", n("yet.another.example.com")),
            (&d2, "*.sub.example.com", n("yet.another.sub.example.com")),
        ];
        for (reference, prefix, want) in cases {
            assert_eq!(
                ref_matching_subdomain_prefix(reference, prefix),
                *want,
                "{reference} vs {prefix}"
            );
        }
    }

    #[test]
    fn parse_location_cases_from_test_parse_location() {
        assert_eq!(
            parse_location("https://example.com").unwrap_err(),
            "invalid location 'https://example.com': URI schemes are not supported"
        );
        assert!(parse_location("john.doe@example.com").is_ok());
        for (input, want) in [
            ("example.com", "example.com"),
            ("example.com/", "example.com"),
            ("example.com//////", "example.com"),
            ("example.com:5000/with/path", "example.com:5000/with/path"),
        ] {
            assert_eq!(parse_location(input).unwrap(), want);
        }
    }

    #[test]
    fn rewrites_from_test_rewrite_reference_success() {
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "example.com/image",
                "example.com",
                "example.com",
                "example.com/image",
            ),
            (
                "example.com/image:latest",
                "example.com",
                "example.com",
                "example.com/image:latest",
            ),
            (
                "example.com:5000/image",
                "example.com:5000",
                "example.com:5000",
                "example.com:5000/image",
            ),
            (
                "example.com:5000/image:latest",
                "example.com:5000",
                "example.com:5000",
                "example.com:5000/image:latest",
            ),
            (
                "example.com/foo@{d}",
                "example.com",
                "example.com",
                "example.com/foo@{d}",
            ),
            (
                "example.com/foo/image:latest",
                "example.com/foo",
                "example.com",
                "example.com/image:latest",
            ),
            (
                "example.com/foo/image:latest",
                "example.com/foo",
                "example.com/path",
                "example.com/path/image:latest",
            ),
            (
                "docker.io/library/image:latest",
                "docker.io",
                "docker.io",
                "docker.io/library/image:latest",
            ),
            (
                "docker.io/library/image",
                "docker.io/library",
                "example.com",
                "example.com/image",
            ),
            (
                "docker.io/library/image",
                "docker.io",
                "example.com",
                "example.com/library/image",
            ),
            (
                "docker.io/library/prefix/image",
                "docker.io/library/prefix",
                "example.com",
                "example.com/image",
            ),
            (
                "docker.io/namespace/image",
                "*.io",
                "example.com",
                "example.com/namespace/image",
            ),
            (
                "docker.io/library/prefix/image",
                "*.io",
                "example.com",
                "example.com/library/prefix/image",
            ),
            (
                "sub.example.io/library/prefix/image",
                "*.example.io",
                "example.com",
                "example.com/library/prefix/image",
            ),
            (
                "another.sub.example.io:5000/library/prefix/image:latest",
                "*.sub.example.io",
                "example.com",
                "example.com:5000/library/prefix/image:latest",
            ),
            (
                "foo.bar.io/ns1/ns2/ns3/ns4",
                "*.bar.io",
                "omg.bbq.com/roflmao",
                "omg.bbq.com/roflmao/ns1/ns2/ns3/ns4",
            ),
            (
                "abc.internal.registry.com/foo:bar",
                "*.internal.registry.com",
                "",
                "abc.internal.registry.com/foo:bar",
            ),
            (
                "blah.foo.bar.com/omg:bbq",
                "*.com",
                "",
                "blah.foo.bar.com/omg:bbq",
            ),
            (
                "alien.vs.predator.foobar.io:5000/omg",
                "*.foobar.io",
                "",
                "alien.vs.predator.foobar.io:5000/omg",
            ),
            (
                "alien.vs.predator.foobar.io:5000/foo@{d}",
                "*.foobar.io",
                "",
                "alien.vs.predator.foobar.io:5000/foo@{d}",
            ),
            (
                "alien.vs.predator.foobar.io:5000/omg:bbq",
                "*.foobar.io",
                "",
                "alien.vs.predator.foobar.io:5000/omg:bbq",
            ),
        ];
        for (input, prefix, location, want) in cases {
            let (input, want) = (input.replace("{d}", DIGEST), want.replace("{d}", DIGEST));
            let (got, parsed) = rewrite_reference(&input, prefix, location)
                .unwrap_or_else(|e| panic!("{input} {prefix} {location}: {e}"));
            assert_eq!(got, want, "{input} {prefix} {location}");
            assert_eq!(
                format!("{}/{}", parsed.registry(), parsed.repository()),
                want.split(['@'])
                    .next()
                    .unwrap()
                    .rsplit_once(':')
                    .filter(|(_, t)| !t.contains('/'))
                    .map_or(want.split('@').next().unwrap(), |(n, _)| n),
            );
        }
    }

    #[test]
    fn rewrite_failures_from_test_rewrite_reference_failed_during_parse_named() {
        let d = format!("example.com/foo@{DIGEST}");
        let cases: &[(&str, &str, &str)] = &[
            (
                "example.com/foo/image:latest",
                "example.com/foo",
                "example.com/path/",
            ),
            (&d, "example.com/foo", "example.com"),
            ("example.com:5000/image:latest", "example.com", ""),
            (
                "example.com:5000/image:latest",
                "example.com",
                "example.com:5000",
            ),
            (
                "example.com/foo/image:latest",
                "example.com//foo",
                "example.com/path",
            ),
            ("example.com/image:latest", "image", "anotherimage"),
            (
                "example.com/foo/image:latest",
                "example.com/foo/",
                "example.com",
            ),
            ("example.com/foo/image", "example.com/f", "example.com/foo"),
            ("example.com/foo:latest", "example.com/f", "example.com/foo"),
            (&d, "example.com/f", "example.com/foo"),
            ("docker.io/library/image", "example.com", "example.com"),
            ("docker.io/library/image", "*.com", "example.com"),
            (
                "foo.docker.io/library/image",
                "*.example.com",
                "example.com/image",
            ),
            (
                "foo.docker.io/library/image",
                "*.docker.com",
                "example.com/image",
            ),
        ];
        for (input, prefix, location) in cases {
            assert!(
                rewrite_reference(input, prefix, location).is_err(),
                "{input} {prefix} {location}"
            );
        }
    }

    #[test]
    fn containers_image_grammar_is_narrower_than_kubelets() {
        // Docker Hub names must be canonical: `library/` spelled out, no `index.docker.io`.
        for bad in [
            "docker.io/busybox:1",
            "index.docker.io/library/busybox:1",
            "Team/app:1",
            "[fd00::1]:5000/app:1",
            "registry:5000:1/app",
        ] {
            assert!(parse_named(bad).is_err(), "{bad}");
        }
        let long = format!("{}.example.com/{}:1", "a".repeat(100), "b".repeat(150));
        assert!(ImageRef::parse(&long).is_ok());
        assert!(parse_named(&long).unwrap_err().contains("255"));
        for good in [
            "docker.io/library/busybox:1",
            "localhost/app:1",
            "Reg.example:5000/a/b@{d}",
        ] {
            let good = good.replace("{d}", DIGEST);
            assert!(parse_named(&good).is_ok(), "{good}");
        }
    }

    #[test]
    fn short_names_from_test_validate_short_name_and_test_parse_short_name_value() {
        let digest = "docker.io/library/fedora@sha256:b87dd5f837112a9e1e9882963a6406387597698268c0ad371b187151a5dfe6bf";
        for name in ["library/fedora", "fedora", "1234567489"] {
            assert!(validate_short_name(name).is_ok(), "{name}");
        }
        for name in [
            "docker.io/library/fedora:latest",
            digest,
            "fedora:latest",
            "library/fedora:latest",
            "$$4455%%",
            "docker://foo",
            "docker-archive://foo",
            "",
        ] {
            assert!(validate_short_name(name).is_err(), "{name}");
        }
        for value in [
            "docker.io/library/fedora",
            "localhost/fedora",
            "localhost:5000/fedora",
            "localhost:5000/namespace/fedora",
        ] {
            assert_eq!(parse_short_name_value(value).unwrap(), value);
        }
        for value in [
            "docker.io/library/fedora:latest",
            digest,
            "fedora",
            "fedora:latest",
            "library/fedora",
            "library/fedora:latest",
            "$$4455%%",
            "docker://foo",
            "docker-archive://foo",
            "",
        ] {
            assert!(parse_short_name_value(value).is_err(), "{value}");
        }
        assert_eq!(
            parse_short_name_value("docker.io/fedora").unwrap(),
            "docker.io/library/fedora"
        );
    }

    #[test]
    fn field_names_fold_case_as_go_equal_fold() {
        assert!(equal_fold("location", "Location"));
        assert!(equal_fold("insecure", "INSECURE"));
        assert!(equal_fold("blocked", "bloc\u{212a}ed"));
        assert!(equal_fold("insecure", "in\u{17f}ecure"));
        assert!(!equal_fold("insecure", "insecur"));
        assert!(!equal_fold("insecure", "\u{130}nsecure"));
    }

    // ---- loading --------------------------------------------------------------------------

    #[test]
    fn find_registry_from_test_find_registry() {
        let c = load(FIND_REGISTRY, CONF_D).unwrap();
        assert_eq!(c.registries().len(), 19);
        let loc = |r: &str| c.find_registry(r).map(|r| r.location.as_str());
        let reg = c.find_registry("simple-prefix.com/foo/bar:latest").unwrap();
        assert_eq!(
            (reg.prefix.as_str(), reg.location.as_str()),
            ("simple-prefix.com", "registry.com:5000")
        );
        assert!(c.find_registry("simple-prefix.com/").is_some());
        assert!(c.find_registry("simple-prefix.com").is_some());
        assert_eq!(
            loc("not.so.simple-prefix.com/"),
            Some("subdomain-prefix.com")
        );
        assert_eq!(
            loc("not.quite.simple-prefix.com/"),
            Some("subdomain-prefix-2.com")
        );
        assert_eq!(
            loc("not.quite.simple-prefix.com:5000/with/path/and/beyond:tag"),
            Some("subdomain-prefix-2.com")
        );
        assert_eq!(
            loc("really.not.quite.simple-prefix.com:5000/with/path/and/beyond:tag"),
            Some("subdomain-prefix-1-overridden-by-dropin-location.com")
        );
        assert_eq!(
            loc("foo.docker.io:5000/omg/wtf/bbq:foo"),
            Some("subdomain-prefix-2.com")
        );
        assert_eq!(
            loc(&format!("foo.bar.example.com:6000/omg/wtf/bbq@{DIGEST}")),
            Some("subdomain-prefix-3-overridden-by-dropin-location.com")
        );
        assert_eq!(
            loc("foo.bar.docker.io:5000/omg/wtf/bbq:foo"),
            Some("subdomain-prefix-4.com")
        );
        assert_eq!(
            loc("foo.bar.example.com:5000/omg/wtf/bbq:foo"),
            Some("subdomain-prefix-5.com")
        );
        assert!(c.find_registry("simple-prefix.comx").is_none());
        let reg = c
            .find_registry("complex-prefix.com:4000/with/path/and/beyond:tag")
            .unwrap();
        assert_eq!(
            (reg.prefix.as_str(), reg.location.as_str()),
            (
                "complex-prefix.com:4000/with/path",
                "another-registry.com:5000"
            )
        );
        let reg = c.find_registry("no-prefix.com/foo:tag").unwrap();
        assert_eq!(
            (reg.prefix.as_str(), reg.location.as_str()),
            ("no-prefix.com", "no-prefix.com")
        );
        let reg = c.find_registry("empty-prefix.com/foo:tag").unwrap();
        assert_eq!(
            (reg.prefix.as_str(), reg.location.as_str()),
            ("empty-prefix.com", "empty-prefix.com")
        );
        // A required main file that does not exist is an error.
        let err = RegistriesConf::load(&ConfigSources {
            main: PathBuf::from("/this/does/not/exist.conf"),
            main_required: true,
            dropin_dirs: vec![],
        })
        .unwrap_err();
        assert!(matches!(err, CrioConfigError::Read { .. }), "{err}");
    }

    #[test]
    fn pull_sources_from_test_pull_sources_from_reference() {
        let c = load(PULL_SOURCES, &[]).unwrap();
        assert_eq!(c.registries().len(), 9);
        // (prefix, digest locations, digest insecure, tag locations, tag insecure)
        type Case<'a> = (
            &'a str,
            &'a [&'a str],
            &'a [bool],
            &'a [&'a str],
            &'a [bool],
        );
        let cases: &[Case<'_>] = &[
            (
                "registry-a.com/foo",
                &[
                    "mirror-1.registry-a.com",
                    "mirror-2.registry-a.com",
                    "registry-a.com/bar",
                ],
                &[false, true, false],
                &[
                    "mirror-1.registry-a.com",
                    "mirror-2.registry-a.com",
                    "registry-a.com/bar",
                ],
                &[false, true, false],
            ),
            (
                "registry-b.com/foo",
                &[
                    "mirror-1.registry-b.com",
                    "mirror-2.registry-b.com",
                    "registry-b.com/bar",
                ],
                &[false, false, false],
                &["registry-b.com/bar"],
                &[false],
            ),
            (
                "registry-a.com/baz",
                &[
                    "mirror-1.registry-a.com",
                    "mirror-2.registry-a.com",
                    "registry-a.com/bar",
                ],
                &[false, true, false],
                &[
                    "mirror-1.registry-a.com",
                    "mirror-2.registry-a.com",
                    "registry-a.com/bar",
                ],
                &[false, true, false],
            ),
            (
                "registry-b.com/baz",
                &[
                    "mirror-1.registry-b.com",
                    "mirror-2.registry-b.com",
                    "registry-b.com/bar",
                ],
                &[false, false, false],
                &["registry-b.com/bar"],
                &[false],
            ),
            (
                "registry-c.com/baz",
                &[
                    "mirror-1.registry-c.com",
                    "mirror-2.registry-c.com",
                    "registry-c.com/bar",
                ],
                &[false, false, false],
                &["mirror-1.registry-c.com", "registry-c.com/bar"],
                &[false, false],
            ),
            (
                "registry-d.com/baz",
                &[
                    "mirror-1.registry-d.com",
                    "mirror-2.registry-d.com",
                    "registry-d.com/bar",
                ],
                &[false, false, false],
                &["registry-d.com/bar"],
                &[false],
            ),
            (
                "registry-e.com/baz",
                &["registry-e.com/bar"],
                &[false],
                &[
                    "mirror-1.registry-e.com",
                    "mirror-2.registry-e.com",
                    "registry-e.com/bar",
                ],
                &[false, false, false],
            ),
            (
                "registry-f.com/baz",
                &["mirror-1.registry-f.com", "registry-f.com/bar"],
                &[false, false],
                &[
                    "mirror-1.registry-f.com",
                    "mirror-2.registry-f.com",
                    "registry-f.com/bar",
                ],
                &[false, false, false],
            ),
            (
                "registry-g.com/baz",
                &[
                    "mirror-1.registry-g.com",
                    "mirror-3.registry-g.com",
                    "mirror-4.registry-g.com",
                    "registry-g.com/bar",
                ],
                &[false, false, false, false],
                &[
                    "mirror-2.registry-g.com",
                    "mirror-3.registry-g.com",
                    "mirror-4.registry-g.com",
                    "registry-g.com/bar",
                ],
                &[false, false, false, false],
            ),
        ];
        for (prefix, dlocs, dinsecure, tlocs, tinsecure) in cases {
            for (suffix, locs, insecure) in [
                (format!("@{DIGEST}"), dlocs, dinsecure),
                (":aaa".to_owned(), tlocs, tinsecure),
            ] {
                let img = format!("{prefix}/image{suffix}");
                let got = c.pull_sources(&image(&img)).unwrap();
                let want: Vec<String> = locs.iter().map(|l| format!("{l}/image{suffix}")).collect();
                let got_refs: Vec<String> = got.iter().map(|s| s.reference.to_string()).collect();
                assert_eq!(got_refs, want, "{img}");
                let got_insecure: Vec<bool> = got.iter().map(|s| s.insecure).collect();
                assert_eq!(&got_insecure, insecure, "{img}");
                let mirrors: Vec<bool> = got.iter().map(|s| s.mirror).collect();
                let mut want_mirrors = vec![true; locs.len() - 1];
                want_mirrors.push(false);
                assert_eq!(mirrors, want_mirrors, "{img}");
            }
        }
    }

    #[test]
    fn invalid_files_from_upstream_tests_name_key_line_and_fix() {
        for (name, text, fragment, line) in INVALID {
            let err = load(text, &[]).unwrap_err();
            let all = issues(&err);
            assert!(
                all[0].problem.contains(fragment),
                "{name}: first issue {:?} lacks {fragment:?}",
                all[0]
            );
            assert!(
                all[0].key.contains(&format!("line {line}")),
                "{name}: {:?} should name line {line}",
                all[0]
            );
            assert!(!all[0].fix.is_empty(), "{name}");
            let text = err.to_string();
            assert!(
                text.contains("registries.conf (containers/image refuses to load it)"),
                "{text}"
            );
        }
    }

    #[test]
    fn valid_files_from_upstream_tests() {
        // TestUnmarshalConfig, TestInvalidateCache: sorted by prefix.
        let c = load(UNMARSHAL, &[]).unwrap();
        assert_eq!(
            locations(&c),
            [
                "blocked.registry.com",
                "insecure.registry.com",
                "registry.com",
                "untrusted.registry.com"
            ]
        );
        // TestMirrors.
        let c = load(MIRRORS, &[]).unwrap();
        assert_eq!(c.registries().len(), 2);
        let reg = c.find_registry("registry.com/image:tag").unwrap();
        let mirrors: Vec<(&str, bool)> = reg
            .mirrors
            .iter()
            .map(|m| (m.location.as_str(), m.insecure))
            .collect();
        assert_eq!(
            mirrors,
            [
                ("mirror-1.registry.com", false),
                ("mirror-2.registry.com", true)
            ]
        );
        // TestFindUnqualifiedSearchRegistries.
        let c = load(UNQUALIFIED_SEARCH, &[]).unwrap();
        assert_eq!(c.registries().len(), 4);
        assert_eq!(
            c.unqualified_search_registries(),
            ["registry-a.com", "registry-c.com", "registry-d.com"]
        );
        // TestV1BackwardsCompatibility.
        let c = load(V1_COMPATIBILITY, &[]).unwrap();
        assert_eq!(c.registries().len(), 4);
        assert_eq!(
            c.unqualified_search_registries(),
            ["registry-a.com", "registry-c.com", "registry-d.com"]
        );
        let reg = c
            .find_registry("registry-b.com/bar/foo/barfoo:latest")
            .unwrap();
        assert!(reg.insecure && reg.blocked);
        // TestGetShortNameMode, TestResolveShortNameAlias.
        let c = load(ALIASES, &[]).unwrap();
        assert_eq!(c.short_name_mode(), ShortNameMode::Enforcing);
        let aliases: Vec<(&str, Option<&str>)> = c
            .aliases()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect();
        assert_eq!(
            aliases,
            [
                ("docker", Some("docker.io/library/foo")),
                ("empty", None),
                ("example", Some("example.com/library/foo")),
                ("quay/foo", Some("quay.io/library/foo")),
            ]
        );
        assert_eq!(
            load("", &[]).unwrap().short_name_mode(),
            ShortNameMode::Permissive
        );
        assert_eq!(
            load("short-name-mode=\"permissive\"", &[])
                .unwrap()
                .short_name_mode(),
            ShortNameMode::Permissive
        );
    }

    #[test]
    fn credential_helpers_from_test_credential_helpers() {
        let helpers = |main: &str, dropins: &[(&str, &str)]| {
            load(main, dropins).unwrap().credential_helpers().to_vec()
        };
        assert_eq!(helpers(CRED_HELPER, &[]), ["helper-1", "helper-2"]);
        assert_eq!(helpers("", &[]), [AUTHENTICATION_FILE_HELPER]);
        assert_eq!(
            helpers(CRED_HELPER, &[("empty.conf", "credential-helpers=[]\n")]),
            [AUTHENTICATION_FILE_HELPER]
        );
        assert_eq!(helpers(CRED_HELPER, CONF_D), ["dropin-1", "dropin-2"]);
    }

    #[test]
    fn dropins_from_test_registries_conf_directory() {
        let base = "unqualified-search-registries = [\"example.com\"]\n\n[[registry]]\nlocation = \"base.com\"\ninsecure = true";
        let c = load(base, CONF_D).unwrap();
        assert_eq!(c.unqualified_search_registries(), ["example-overwrite.com"]);
        assert_eq!(
            locations(&c),
            [
                "subdomain-prefix-3-overridden-by-dropin-location.com",
                "subdomain-prefix-2-overridden-by-dropin-location.com",
                "subdomain-prefix-1-overridden-by-dropin-location.com",
                "1.com",
                "2.com",
                "base.com"
            ]
        );
        // The drop-in replaces the whole entry: blocked now, and no longer insecure.
        let reg = c.find_registry("base.com/test:latest").unwrap();
        assert!(reg.blocked && !reg.insecure);
        assert!(reg.file.ends_with("config-2.conf"));
        // `.ignore` is not a drop-in; the files read are main + the six `.conf` files.
        assert_eq!(c.files().len(), 7);
        // Aliases merge by name; a later "" resets.
        assert_eq!(c.aliases()["barz"].as_deref(), Some("barz.com/config2"));
        assert_eq!(
            c.aliases()["docker"].as_deref(),
            Some("docker.io/library/config1")
        );
        // unqualified-search-registries: untouched by a drop-in that does not set it,
        // replaced by one that sets it to [].
        let usr1 = load(
            UNQUALIFIED_SEARCH,
            &[(
                "no-usr.conf",
                "# unqualified-search-registries is not set\n",
            )],
        )
        .unwrap();
        assert_eq!(
            usr1.unqualified_search_registries(),
            ["registry-a.com", "registry-c.com", "registry-d.com"]
        );
        let usr2 = load(
            UNQUALIFIED_SEARCH,
            &[("empty-usr.conf", "unqualified-search-registries = []\n")],
        )
        .unwrap();
        assert!(usr2.unqualified_search_registries().is_empty());
    }

    #[test]
    fn missing_main_file_is_empty_unless_required_from_test_empty_config() {
        let tmp = tempfile::tempdir().unwrap();
        let c = RegistriesConf::load(&ConfigSources {
            main: tmp.path().join("registries.conf"),
            main_required: false,
            dropin_dirs: vec![tmp.path().join("this-does-not-exist")],
        })
        .unwrap();
        assert!(c.registries().is_empty() && c.files().is_empty());
        assert_eq!(c.credential_helpers(), [AUTHENTICATION_FILE_HELPER]);
        // An empty main file is an empty configuration too.
        assert!(load("", &[]).unwrap().registries().is_empty());
    }

    #[test]
    fn dropins_are_walked_as_filepath_walkdir_walks_them() {
        let tmp = tempfile::tempdir().unwrap();
        let main = tmp.path().join("registries.conf");
        std::fs::write(&main, "").unwrap();
        let real = tmp.path().join("real.d");
        write(
            &real,
            &[
                ("b.conf", "[[registry]]\nlocation = \"b.example\"\n"),
                (
                    "a.conf",
                    "[[registry]]\nprefix = \"b.example\"\nlocation = \"a.example\"\n",
                ),
                (
                    "sub.conf/x.conf",
                    "[[registry]]\nlocation = \"nested.example\"\n",
                ),
                (
                    "c.conf.bak",
                    "[[registry]]\nlocation = \"backup.example\"\n",
                ),
            ],
        );
        let sources = |dirs: Vec<PathBuf>| ConfigSources {
            main: main.clone(),
            main_required: true,
            dropin_dirs: dirs,
        };
        // Lexical order: b.conf (later) replaces a.conf's entry of the same prefix.
        let c = RegistriesConf::load(&sources(vec![real.clone()])).unwrap();
        assert_eq!(locations(&c), ["b.example"]);
        // A symlinked directory is not walked: its drop-ins do not apply (skopeo 1.9.3 with a
        // symlinked `$HOME/.config/containers/registries.conf.d` ignores a `blocked` in it).
        let link = tmp.path().join("link.d");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let c = RegistriesConf::load(&sources(vec![link.clone()])).unwrap();
        assert!(c.registries().is_empty());
        assert!(
            c.notices()[0].message.contains("symbolic link"),
            "{:?}",
            c.notices()
        );
        // Two directories: system then user, the later one wins.
        let user = tmp.path().join("user.d");
        write(
            &user,
            &[(
                "0.conf",
                "[[registry]]\nprefix = \"b.example\"\nlocation = \"user.example\"\n",
            )],
        );
        let c = RegistriesConf::load(&sources(vec![real.clone(), user])).unwrap();
        assert_eq!(locations(&c), ["user.example"]);
        // A drop-in must be v2, and a broken drop-in names itself.
        write(
            &real,
            &[(
                "z.conf",
                "[registries.search]\nregistries = [\"x.example\"]\n",
            )],
        );
        let err = RegistriesConf::load(&sources(vec![real.clone()])).unwrap_err();
        assert!(err.to_string().contains("z.conf"), "{err}");
        assert!(issues(&err)[0].problem.contains("must use the v2 format"));
        write(&real, &[("z.conf", "[[registry]\n")]);
        let err = RegistriesConf::load(&sources(vec![real.clone()])).unwrap_err();
        assert!(issues(&err)[0].key.starts_with("line 1, column"), "{err}");
    }

    #[test]
    fn validation_is_per_file_and_later_files_replace_entries() {
        // The same location insecure in one file and secure in a drop-in: no conflict checked.
        let c = load(
            "[[registry]]\nlocation = \"r.example\"\ninsecure = true\n",
            &[(
                "1.conf",
                "[[registry]]\nprefix = \"other.example\"\nlocation = \"r.example\"\n",
            )],
        )
        .unwrap();
        assert_eq!(c.registries().len(), 2);
        // Within one file the first entry of a prefix wins, and the second is noted (skopeo
        // 1.9.3 does not try the second entry's mirror).
        let c = load(
            "[[registry]]\nlocation = \"r.example\"\n[[registry.mirror]]\nlocation = \"m.example\"\n\n[[registry]]\nlocation = \"r.example\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.registries()[0].mirrors.len(), 1);
        assert!(
            c.notices()[0].message.contains("same prefix"),
            "{:?}",
            c.notices()
        );
        assert_eq!(c.notices()[0].line, 6);
    }

    #[test]
    fn decoding_follows_burntsushi_toml() {
        // Case-insensitive keys, ignored unknown keys and the fatal type error: also measured
        // with skopeo 1.9.3 ("toml: line 3 (last key \"registry.insecure\"): incompatible types").
        // Keys match regardless of case; unknown keys are ignored (and noted).
        let c = load(
            "[[Registry]]\nLOCATION = \"r.example\"\nInsecure = true\nmirror-by-digest = true\nproxy = \"http://p\"\n",
            &[],
        )
        .unwrap();
        let r = &c.registries()[0];
        assert!(r.insecure && !r.mirror_by_digest_only);
        let notes: Vec<&str> = c.notices().iter().map(|n| n.message.as_str()).collect();
        assert!(
            notes[0].contains("\"Registry[0].mirror-by-digest\""),
            "{notes:?}"
        );
        assert!(notes[1].contains("\"Registry[0].proxy\""), "{notes:?}");
        assert_eq!(c.notices()[0].line, 4);
        // Set twice in different case: noted, the exactly-spelled key kept.
        let c = load(
            "[[registry]]\nLocation = \"a.example\"\nlocation = \"b.example\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(locations(&c), ["b.example"]);
        assert!(c.notices()[0].message.contains("second time"));
        // A value of the wrong type fails the file, naming key and line.
        for (text, key, want) in [
            (
                "[[registry]]\nlocation = \"r.example\"\ninsecure = \"true\"\n",
                "registry[0].insecure (line 3)",
                "must be true or false, not a string",
            ),
            (
                "[registry]\nlocation = \"r.example\"\n",
                "registry (line 1)",
                "must be an array of tables, not a table",
            ),
            (
                "unqualified-search-registries = \"docker.io\"\n",
                "unqualified-search-registries (line 1)",
                "must be an array of strings",
            ),
            (
                "[aliases]\nx = 1\n",
                "aliases.x (line 2)",
                "must be a string, not an integer",
            ),
            (
                "[[registry]]\nlocation = \"r.example\"\n[[registry.mirror]]\nlocation = 5\n",
                "registry[0].mirror[0].location (line 4)",
                "must be a string",
            ),
        ] {
            let err = load(text, &[]).unwrap_err();
            let i = &issues(&err)[0];
            assert_eq!(
                (i.key.as_str(), i.problem.contains(want)),
                (key, true),
                "{text}: {i:?}"
            );
        }
    }

    #[test]
    fn errors_read_as_file_key_problem_fix() {
        let err = load(
            "# comment\n[[registry]]\nprefix = \"example.com/foo\"\n",
            &[],
        )
        .unwrap_err();
        let text = err.to_string();
        let (head, body) = text.split_once('\n').unwrap();
        assert!(
            head.starts_with("invalid registries configuration "),
            "{text}"
        );
        assert!(head.ends_with("registries.conf (containers/image refuses to load it):"));
        assert_eq!(
            body,
            "  registry[0] (line 2): invalid condition: location is unset and prefix is not in \
             the format: *.example.com\n    fix: set location; only a wildcard prefix may go \
             without one"
        );
        // A key given twice is a TOML error for both parsers.
        let err = load("[[registry]]\nlocation = \"a\"\nlocation = \"b\"\n", &[]).unwrap_err();
        assert!(issues(&err)[0].problem.contains("not valid TOML"), "{err}");
        assert!(issues(&err)[0].key.starts_with("line 3,"), "{err}");
    }

    // ---- pull sources -----------------------------------------------------------------------

    #[test]
    fn blocked_is_checked_per_rewritten_source_as_new_docker_client_does() {
        // Measured with skopeo 1.9.3 (containers/image 5.23.1) on this file: the mirror is
        // refused as blocked, the tag pull skips the digest-only mirror, the primary is tried.
        let c = load(
            r#"[[registry]]
prefix = "127.0.0.1:5999/team"
location = "127.0.0.1:5998/other"
[[registry.mirror]]
location = "127.0.0.1:5997/m1"
insecure = true
[[registry.mirror]]
location = "127.0.0.1:5996/m2"
pull-from-mirror = "digest-only"
[[registry]]
location = "127.0.0.1:5997"
blocked = true
"#,
            &[],
        )
        .unwrap();
        assert_eq!(
            sources(&c, "127.0.0.1:5999/team/app:1"),
            [
                "127.0.0.1:5997/m1/app:1 insecure blocked",
                "127.0.0.1:5998/other/app:1"
            ]
        );
        let src = c.pull_sources(&image("127.0.0.1:5999/team/app:1")).unwrap();
        let by = src[0].blocked_by.as_ref().unwrap();
        assert_eq!((by.prefix.as_str(), by.line), ("127.0.0.1:5997", 10));
        // A blocked registry with a mirror: the mirror is still tried.
        let c = load(
            "[[registry]]\nlocation = \"docker.io\"\nblocked = true\n[[registry.mirror]]\nlocation = \"mirror.example\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            sources(&c, "nginx"),
            [
                "mirror.example/library/nginx:latest",
                "docker.io/library/nginx:latest blocked"
            ]
        );
    }

    #[test]
    fn sources_measured_with_skopeo() {
        // skopeo 1.9.3 (containers/image 5.23.1) `--debug inspect --raw` on this file printed
        // these "Trying to access" lines, or failed before any.
        let c = load(
            r#"[[registry]]
prefix = "*.internal.example"
[[registry.mirror]]
location = "127.0.0.1:5991/cache"
[[registry]]
prefix = "docker.io/library/busybox"
location = "127.0.0.1:5992/hub/busybox"
[[registry.mirror]]
location = "localhost:5993/m"
pull-from-mirror = "tag-only"
[[registry]]
prefix = "docker.io/library"
location = "docker.io"
"#,
            &[],
        )
        .unwrap();
        assert_eq!(
            sources(&c, "busybox:1"),
            ["localhost:5993/m:1", "127.0.0.1:5992/hub/busybox:1"]
        );
        assert_eq!(
            sources(&c, &format!("busybox@{DIGEST}")),
            [format!("127.0.0.1:5992/hub/busybox@{DIGEST}")]
        );
        // "rewriting reference: repository name must be canonical"
        let err = c.pull_sources(&image("alpine:1")).unwrap_err();
        assert!(err.to_string().contains("must be canonical"), "{err}");
        // "rewriting reference: invalid reference format": a wildcard match ends before the
        // port, so the mirror location gets `:5000/team/app:1` appended.
        let err = c
            .pull_sources(&image("a.b.internal.example:5000/team/app:1"))
            .unwrap_err();
        assert!(matches!(err, PullSourcesError::Rewrite { .. }), "{err}");
        // Not measured (the primary is not on loopback): without a port the rewrite works.
        assert_eq!(
            sources(&c, "a.b.internal.example/team/app:1"),
            [
                "127.0.0.1:5991/cache/team/app:1",
                "a.b.internal.example/team/app:1"
            ]
        );
    }

    #[test]
    fn docker_hub_prefixes_must_spell_library() {
        let conf = |prefix: &str| {
            load(
                &format!(
                    "[[registry]]\nprefix = \"{prefix}\"\nlocation = \"mirror.example/hub\"\n"
                ),
                &[],
            )
            .unwrap()
        };
        // `docker.io/nginx` matches the `docker.io/nginx/*` repositories, not `nginx`.
        assert_eq!(
            sources(&conf("docker.io/nginx"), "nginx:1"),
            ["docker.io/library/nginx:1"]
        );
        assert_eq!(
            sources(&conf("docker.io/nginx"), "nginx/app:1"),
            ["mirror.example/hub/app:1"]
        );
        assert_eq!(
            sources(&conf("docker.io/library/nginx"), "nginx:1"),
            ["mirror.example/hub:1"]
        );
        // A rewrite to a non-canonical Docker Hub name fails the whole pull.
        let c = load(
            "[[registry]]\nprefix = \"docker.io/library\"\nlocation = \"docker.io\"\n",
            &[],
        )
        .unwrap();
        let err = c.pull_sources(&image("busybox:1")).unwrap_err();
        assert!(matches!(err, PullSourcesError::Rewrite { .. }), "{err}");
        assert!(err.to_string().contains("must be canonical"), "{err}");
    }

    #[test]
    fn references_and_credentials_as_cri_o_passes_them() {
        let c = load(
            "[[registry]]\nlocation = \"quay.io\"\n[[registry.mirror]]\nlocation = \"quay.io/cache\"\n[[registry.mirror]]\nlocation = \"mirror.example/quay\"\n",
            &[],
        )
        .unwrap();
        // A tag and a digest: CRI-O keeps the digest only.
        let img = format!("quay.io/org/app:1@{DIGEST}");
        let src = c.pull_sources(&image(&img)).unwrap();
        let refs: Vec<String> = src.iter().map(|s| s.reference.to_string()).collect();
        assert_eq!(
            refs,
            [
                format!("quay.io/cache/org/app@{DIGEST}"),
                format!("mirror.example/quay/org/app@{DIGEST}"),
                format!("quay.io/org/app@{DIGEST}"),
            ]
        );
        // Kubelet's credentials go to sources on the image's own registry only.
        let creds: Vec<bool> = src.iter().map(|s| s.kubelet_credentials).collect();
        assert_eq!(creds, [true, false, true]);
        // Without an entry the reference is its own single source.
        assert_eq!(sources(&c, "ghcr.io/org/app:2"), ["ghcr.io/org/app:2"]);
        assert!(c.find_registry("quay.iox/a").is_none());
        // References kubelet accepts but containers/image does not.
        for bad in ["[fd00::1]:5000/app:1", "Team/app:1"] {
            let err = c.pull_sources(&image(bad)).unwrap_err();
            assert!(
                matches!(err, PullSourcesError::Reference { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn config_sources_from_test_new_config_wrapper() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        let explicit = Path::new("/this/is/not/the/default/registries.conf");
        let s = ConfigSources::resolve(None, None, h, None);
        assert_eq!(s.main, Path::new(SYSTEM_REGISTRIES_CONF));
        assert!(!s.main_required);
        assert_eq!(
            s.dropin_dirs,
            [
                PathBuf::from(SYSTEM_REGISTRIES_CONF_DIR),
                h.join(USER_REGISTRIES_DIR)
            ]
        );
        let s = ConfigSources::resolve(Some(explicit), None, h, None);
        assert_eq!((s.main.as_path(), s.main_required), (explicit, true));
        assert_eq!(s.dropin_dirs[0], Path::new(SYSTEM_REGISTRIES_CONF_DIR));
        let s = ConfigSources::resolve(None, None, h, Some(Path::new("/root/prefix")));
        assert_eq!(
            s.main,
            Path::new("/root/prefix/etc/containers/registries.conf")
        );
        assert_eq!(
            s.dropin_dirs,
            [
                PathBuf::from("/root/prefix/etc/containers/registries.conf.d"),
                h.join(USER_REGISTRIES_DIR)
            ]
        );
        let s = ConfigSources::resolve(
            Some(explicit),
            Some(Path::new("/d")),
            h,
            Some(Path::new("/root/prefix")),
        );
        assert_eq!(
            (s.main.as_path(), s.dropin_dirs.as_slice()),
            (explicit, [PathBuf::from("/d")].as_slice())
        );
        // A per-user file replaces the system file and the system directory.
        write(h, &[(USER_REGISTRIES_FILE, "")]);
        let s = ConfigSources::resolve(None, None, h, None);
        assert_eq!(s.main, h.join(USER_REGISTRIES_FILE));
        assert_eq!(s.dropin_dirs, [h.join(USER_REGISTRIES_DIR)]);
        let s = ConfigSources::resolve(Some(explicit), None, h, None);
        assert_eq!(s.main, explicit);
    }

    // ---- certs.d ------------------------------------------------------------------------------

    #[test]
    fn certs_from_test_setup_certificates() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("certs.d");
        let full = root.join("full");
        write(
            &full,
            &[
                ("ca-cert-2.crt", "PEM 2"),
                ("ca-cert-1.crt", "PEM 1"),
                ("client-cert-2.cert", "c2"),
                ("client-cert-2.key", "k2"),
                ("client-cert-1.cert", "c1"),
                ("client-cert-1.key", "k1"),
            ],
        );
        let f = certs_for_host(std::slice::from_ref(&root), "full").unwrap();
        let cas: Vec<&[u8]> = f.cas.iter().map(|c| c.pem.as_slice()).collect();
        assert_eq!(cas, [b"PEM 1".as_slice(), b"PEM 2"]);
        let pairs: Vec<(PathBuf, PathBuf)> = f
            .clients
            .iter()
            .map(|p| (p.cert.clone(), p.key.clone()))
            .collect();
        assert_eq!(
            pairs,
            [
                (
                    full.join("client-cert-1.cert"),
                    full.join("client-cert-1.key")
                ),
                (
                    full.join("client-cert-2.cert"),
                    full.join("client-cert-2.key")
                ),
            ]
        );
        // Directory does not exist: nothing, no error.
        let none = certs_for_host(std::slice::from_ref(&root), "absent:5000").unwrap();
        assert!(none.cas.is_empty() && none.clients.is_empty());
        // Another error reading the directory.
        assert!(certs_for_host(&[PathBuf::from("/dev/null/is/not")], "a.directory").is_err());
        // Upstream's dangling symlinks: an unreadable CA is skipped, the rest are errors.
        let ln = |dir: &str, name: &str, target: &Path| {
            std::fs::create_dir_all(root.join(dir)).unwrap();
            std::os::unix::fs::symlink(target, root.join(dir).join(name)).unwrap();
        };
        let nowhere = Path::new("/this/does/not/exist");
        ln("unreadable-ca", "unreadable.crt", nowhere);
        let f = certs_for_host(std::slice::from_ref(&root), "unreadable-ca").unwrap();
        assert!(f.cas.is_empty());
        ln(
            "missing-key",
            "client-cert-1.cert",
            &full.join("client-cert-1.cert"),
        );
        ln(
            "missing-cert",
            "client-cert-1.key",
            &full.join("client-cert-1.key"),
        );
        ln("unreadable-cert", "client-cert-1.cert", nowhere);
        ln(
            "unreadable-cert",
            "client-cert-1.key",
            &full.join("client-cert-1.key"),
        );
        ln(
            "unreadable-key",
            "client-cert-1.cert",
            &full.join("client-cert-1.cert"),
        );
        ln("unreadable-key", "client-cert-1.key", nowhere);
        for (host, want) in [
            ("missing-key", "missing key"),
            ("missing-cert", "missing client certificate"),
            ("unreadable-cert", "cannot read"),
            ("unreadable-key", "cannot read"),
        ] {
            let err = certs_for_host(std::slice::from_ref(&root), host).unwrap_err();
            assert!(err.to_string().contains(want), "{host}: {err}");
        }
    }

    #[test]
    fn cert_dirs_are_searched_as_docker_cert_dir_searches_them() {
        let tmp = tempfile::tempdir().unwrap();
        let (home, root) = (tmp.path().join("home"), tmp.path().join("host"));
        let search = cert_search_dirs(&home, Some(&root));
        assert_eq!(
            search,
            [
                home.join(".config/containers/certs.d"),
                root.join("etc/containers/certs.d"),
                root.join("etc/docker/certs.d"),
            ]
        );
        assert_eq!(
            cert_search_dirs(&home, None)[1],
            Path::new("/etc/containers/certs.d")
        );
        let host = "registry.example:5000";
        // Nothing exists: the last candidate, empty.
        assert_eq!(
            certs_for_host(&search, host).unwrap().dir,
            search[2].join(host)
        );
        // The first directory that exists wins, even an empty one: no merging.
        write(&search[2].join(host), &[("docker.crt", "D")]);
        write(&search[1].join(host), &[("containers.crt", "C")]);
        let f = certs_for_host(&search, host).unwrap();
        assert_eq!((f.dir.clone(), f.cas.len()), (search[1].join(host), 1));
        std::fs::create_dir_all(search[0].join(host)).unwrap();
        let f = certs_for_host(&search, host).unwrap();
        assert_eq!((f.dir, f.cas.len()), (search[0].join(host), 0));
        // The port is part of the name: `registry.example` is another directory.
        assert_eq!(
            certs_for_host(&search, "registry.example").unwrap().dir,
            search[2].join("registry.example")
        );
    }
}
