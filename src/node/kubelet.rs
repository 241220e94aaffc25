//! The node's docker config as kubelet finds it, and how kubelet combines it with a pod's pull
//! secrets and the credential-provider plugins into the list of credentials a pull tries.
//!
//! Mirrors kubelet's `pkg/credentialprovider`:
//! - **Search** (`config.go` `ReadDockerConfigFile`): first `config.json` in each of
//!   `DefaultDockerConfigJSONPaths()` — the preferred path (kubelet sets it to its
//!   `--root-dir`, `/var/lib/kubelet`, in `cmd/kubelet/app/server.go` `RunKubelet`), the
//!   working directory, `$HOME/.docker`, `/.docker` — and only when none is valid,
//!   `.dockercfg` in each of `DefaultDockercfgPaths()` — the preferred path, the working
//!   directory, `$HOME`, `/`. Each name is `filepath.Abs(filepath.Join(dir, name))`.
//! - **A file that exists but cannot be used** (unreadable, not JSON, a malformed entry) is
//!   logged at `-v=4` and skipped: the search goes on to the next path
//!   (`ReadDockerConfigJSONFile`, `ReadDockercfgFile`). [`NodeDockerConfig::skipped`] keeps
//!   them so a message can say why a file the operator wrote is not the one used.
//! - **A `config.json` without `auths`** (a legacy bare map, or only `credsStore`) is *valid*
//!   and empty, and ends the search (`readDockerConfigJSONFileFromBytes` decodes into
//!   `DockerConfigJSON`); a `.dockercfg` is the bare map, so an `auths` member there is an
//!   entry named `auths`.
//! - **Caching** (`default_provider.go`): the `.dockercfg` provider is wrapped in a
//!   `CachingDockerConfigProvider` with a 5-minute lifetime ([`NODE_CONFIG_LIFETIME`]), so
//!   kubelet sees a changed file up to five minutes late.
//! - **Union** (`keyring.go` `UnionDockerKeyring`, `secrets/secrets.go` `MakeDockerKeyring`,
//!   `pkg/kubelet/images/image_manager.go`): kubelet looks an image up in
//!   `MakeDockerKeyring(pullSecrets, UnionDockerKeyring{nodeKeyring,
//!   externalCredentialProviderKeyring})`: the pod's pull secrets (all of them added to one
//!   `BasicDockerKeyring`), then the node file, then the plugins (all of them added to one
//!   `BasicDockerKeyring`, `plugin/plugins.go`). Each of the three is looked up on its own —
//!   its own reverse-sorted index and its own Docker Hub fallback — and the results are
//!   concatenated: [`KubeletKeyring::for_pod`].
//! - **Before the plugins got their own keyring** (kubelet ≤ 1.32, before the
//!   service-account-token change of KEP-4412 added `plugin/plugins.go`), plugins were
//!   registered with `credentialprovider.RegisterCredentialProvider` next to `.dockercfg`, and
//!   `providersDockerKeyring.Lookup` added every provider, in sorted name order, to *one*
//!   `BasicDockerKeyring`: node and plugin keys were sorted together, longest first
//!   ([`KubeletKeyring::for_pod_combined`]).
//!
//! What kubelet does with the list: the image puller tries each credential in turn until one
//! pulls (`pullImage`), and pulls anonymously when the list is empty.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::credentials::{CredentialsError, Keyring, KeyringMatch};
use crate::reference::ImageRef;

/// kubelet's default `--root-dir`, which it sets as the preferred docker config path.
pub const DEFAULT_ROOT_DIR: &str = "/var/lib/kubelet";

/// How long kubelet keeps the node docker config it read (`default_provider.go`:
/// `CachingDockerConfigProvider{Lifetime: 5 * time.Minute}`).
pub const NODE_CONFIG_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// `configJSONFileName`.
const CONFIG_JSON: &str = "config.json";
/// `configFileName`.
const DOCKERCFG: &str = ".dockercfg";

/// Where kubelet looks for the node's docker config. The fields are kubelet's, not this
/// process's, so tests (and an agent reading the host through a mount) can set them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeDockerConfigSearch {
    /// kubelet's `--root-dir` (the preferred path).
    pub root_dir: PathBuf,
    /// kubelet's working directory (`workingDirPath` is `""`, so relative to it).
    pub cwd: PathBuf,
    /// kubelet's `os.UserHomeDir()`: `$HOME`, or `None` when kubelet has no `HOME`, in which
    /// case Go's `homeDirPath` is `""` and the home paths become relative to `cwd`.
    pub home: Option<PathBuf>,
}

impl NodeDockerConfigSearch {
    /// kubelet as a systemd system service with no `User=` and no `WorkingDirectory=`:
    /// `--root-dir` `/var/lib/kubelet`, working directory `/`, and no `HOME` (systemd.exec(5):
    /// `$HOME` is only set for units with `User=`), so the home paths are `/.docker` and `/`.
    /// Set [`NodeDockerConfigSearch::home`] when the unit sets `HOME` (or runs as a user).
    pub fn kubelet_defaults() -> Self {
        NodeDockerConfigSearch {
            root_dir: PathBuf::from(DEFAULT_ROOT_DIR),
            cwd: PathBuf::from("/"),
            home: None,
        }
    }

    /// `DefaultDockerConfigJSONPaths()` joined with `config.json`, in kubelet's order
    /// (duplicates kept: kubelet reads such a path twice).
    pub fn config_json_paths(&self) -> Vec<PathBuf> {
        let home_json = match &self.home {
            Some(h) => h.join(".docker"),
            None => PathBuf::from(".docker"),
        };
        [
            self.root_dir.clone(),
            PathBuf::new(),
            home_json,
            PathBuf::from("/.docker"),
        ]
        .iter()
        .map(|dir| self.abs_join(dir, CONFIG_JSON))
        .collect()
    }

    /// `DefaultDockercfgPaths()` joined with `.dockercfg`, in kubelet's order.
    pub fn dockercfg_paths(&self) -> Vec<PathBuf> {
        [
            self.root_dir.clone(),
            PathBuf::new(),
            self.home.clone().unwrap_or_default(),
            PathBuf::from("/"),
        ]
        .iter()
        .map(|dir| self.abs_join(dir, DOCKERCFG))
        .collect()
    }

    /// `filepath.Abs(filepath.Join(dir, name))`: an empty `dir` is dropped, a relative result
    /// is joined to the working directory, and the path is cleaned lexically.
    fn abs_join(&self, dir: &Path, name: &str) -> PathBuf {
        let joined = if dir.as_os_str().is_empty() {
            PathBuf::from(name)
        } else {
            dir.join(name)
        };
        if joined.is_absolute() {
            go_clean(&joined)
        } else {
            go_clean(&self.cwd.join(joined))
        }
    }

    /// `ReadDockerConfigFile`: the file kubelet uses and the files it skipped on the way.
    /// Reads the files now; kubelet re-reads at most every [`NODE_CONFIG_LIFETIME`].
    pub fn find(&self) -> NodeDockerConfig {
        let mut skipped = Vec::new();
        let json = self.config_json_paths().into_iter().map(|p| (p, true));
        let cfg = self.dockercfg_paths().into_iter().map(|p| (p, false));
        for (path, is_json) in json.chain(cfg) {
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                // `os.IsNotExist`: silently the next path.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                // Any other read error (a directory, no permission): logged and skipped.
                Err(source) => {
                    skipped.push(SkippedFile {
                        error: CredentialsError::Read {
                            path: path.clone(),
                            source,
                        },
                        path,
                    });
                    continue;
                }
            };
            let parsed = if is_json {
                Keyring::from_config_json(&path, &bytes)
            } else {
                Keyring::from_dockercfg(&path, &bytes)
            };
            match parsed {
                Ok(keyring) => {
                    return NodeDockerConfig {
                        found: Some((path, keyring)),
                        skipped,
                    };
                }
                Err(error) => skipped.push(SkippedFile { path, error }),
            }
        }
        NodeDockerConfig {
            found: None,
            skipped,
        }
    }
}

/// Go's `filepath.Clean` on an absolute (or relative) path: `.` dropped, `..` removes the
/// previous element (never above `/`), repeated separators collapsed.
fn go_clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    let mut depth = 0usize; // normal elements that `..` may remove
    for c in path.components() {
        match c {
            Component::RootDir => out.push("/"),
            Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if depth > 0 {
                    out.pop();
                    depth -= 1;
                } else if !out.has_root() {
                    out.push("..");
                }
            }
            Component::Normal(s) => {
                out.push(s);
                depth += 1;
            }
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// What kubelet's `ReadDockerConfigFile` finds on this node.
#[derive(Debug, Default)]
pub struct NodeDockerConfig {
    /// The first valid file and its keyring; `None` when there is none (kubelet then uses no
    /// node credentials). Its entries' source is the file.
    pub found: Option<(PathBuf, Keyring)>,
    /// Files that exist but that kubelet skipped, in search order, each with why.
    pub skipped: Vec<SkippedFile>,
}

/// A node docker config file kubelet passes over.
#[derive(Debug)]
pub struct SkippedFile {
    pub path: PathBuf,
    /// Why: it names the file (and the `auths` key), never a credential.
    pub error: CredentialsError,
}

impl NodeDockerConfig {
    /// The keyring kubelet uses, if any.
    pub fn keyring(&self) -> Option<&Keyring> {
        self.found.as_ref().map(|(_, k)| k)
    }

    /// One sentence per skipped file, saying which file kubelet uses instead, e.g.
    /// "kubelet skips /var/lib/kubelet/config.json (… the JSON is not valid at line 3, column
    /// 1: …) and
    /// uses /root/.docker/config.json instead".
    pub fn warnings(&self) -> Vec<String> {
        let instead = match &self.found {
            Some((path, _)) => format!("uses {} instead", path.display()),
            None => "uses no node docker config".to_owned(),
        };
        let mut warnings: Vec<String> = self
            .skipped
            .iter()
            .map(|s| {
                format!(
                    "kubelet skips {} ({}) and {instead}",
                    s.path.display(),
                    s.error
                )
            })
            .collect();
        if let Some((path, keyring)) = &self.found
            && !keyring.helpers().is_empty()
        {
            warnings.push(format!(
                "the node docker config {}: {}",
                path.display(),
                crate::credentials::helpers_not_run(keyring.helpers())
            ));
        }
        warnings
    }
}

/// The credentials kubelet tries for a pod's image: keyrings looked up one after the other,
/// each on its own, results concatenated (`UnionDockerKeyring.Lookup`).
#[derive(Clone, Debug, Default)]
pub struct KubeletKeyring {
    parts: Vec<Keyring>,
}

impl KubeletKeyring {
    /// What kubelet (1.33 and later) builds for a pull: `MakeDockerKeyring(pullSecrets,
    /// UnionDockerKeyring{nodeKeyring, externalCredentialProviderKeyring})`.
    ///
    /// - `pull_secrets`: one keyring per pod pull secret, in the pod's order (read with
    ///   [`Keyring::from_config_json`] for `.dockerconfigjson`, [`Keyring::from_dockercfg`]
    ///   for `.dockercfg`); they are added to one keyring (`secretsToTrackedDockerConfigs`).
    /// - `node`: [`NodeDockerConfig::keyring`].
    /// - `plugins`: every plugin's answer already in one keyring
    ///   (`externalCredentialProviderKeyring.Lookup`; see `node::plugins`).
    pub fn for_pod(
        pull_secrets: &[Keyring],
        node: Option<&Keyring>,
        plugins: Option<&Keyring>,
    ) -> Self {
        let mut parts = Vec::with_capacity(3);
        if !pull_secrets.is_empty() {
            parts.push(Keyring::merged(pull_secrets));
        }
        parts.extend(node.cloned());
        parts.extend(plugins.cloned());
        KubeletKeyring { parts }
    }

    /// What kubelet 1.26–1.32 built, when plugins were `DockerConfigProvider`s registered
    /// next to the node file's `.dockercfg` provider: `MakeDockerKeyring(pullSecrets,
    /// providersDockerKeyring)`, where `providersDockerKeyring.Lookup` adds every provider —
    /// in sorted provider-name order (`NewDockerKeyring`), the node file under `.dockercfg` —
    /// to one `BasicDockerKeyring`, so node and plugin keys are sorted together.
    ///
    /// `plugins`: each plugin's answer with its provider name.
    pub fn for_pod_combined(
        pull_secrets: &[Keyring],
        node: Option<&Keyring>,
        plugins: &[(&str, &Keyring)],
    ) -> Self {
        let mut providers: Vec<(&str, &Keyring)> = plugins.to_vec();
        providers.extend(node.map(|k| (DOCKERCFG, k)));
        // Go's sort.Strings: byte order. Names are unique (validated), so stability is moot.
        providers.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut parts = Vec::with_capacity(2);
        if !pull_secrets.is_empty() {
            parts.push(Keyring::merged(pull_secrets));
        }
        parts.push(Keyring::merged(providers.into_iter().map(|(_, k)| k)));
        KubeletKeyring { parts }
    }

    /// Every credential kubelet tries for `image`, in order; each says where it came from
    /// ([`KeyringMatch::source`]).
    pub fn lookup_all(&self, image: &ImageRef) -> Vec<KeyringMatch<'_>> {
        self.parts
            .iter()
            .flat_map(|k| k.lookup_all(image))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::{Credential, CredentialSource, Secret};

    fn search(root: &Path) -> NodeDockerConfigSearch {
        NodeDockerConfigSearch {
            root_dir: root.join("kubelet"),
            cwd: root.join("cwd"),
            home: Some(root.join("home")),
        }
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn auths(key: &str, user: &str) -> String {
        format!(r#"{{"auths": {{"{key}": {{"username": "{user}", "password": "pw"}}}}}}"#)
    }

    fn users(matches: &[KeyringMatch<'_>]) -> Vec<String> {
        matches
            .iter()
            .map(|m| m.credential.username.clone())
            .collect()
    }

    fn image(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap()
    }

    // config.go DefaultDockerConfigJSONPaths / DefaultDockercfgPaths, with kubelet's preferred
    // path set to --root-dir (server.go RunKubelet).
    #[test]
    fn a_node_config_with_only_credential_helpers_says_kubelet_does_not_run_them() {
        let dir = tempfile::tempdir().unwrap();
        let s = search(dir.path());
        write(
            &dir.path().join("kubelet/config.json"),
            r#"{"credsStore": "desktop", "credHelpers": {"gcr.io": "gcloud"}}"#,
        );
        let found = s.find();
        assert!(found.keyring().unwrap().is_empty());
        let warnings = found.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let want = format!(
            "the node docker config {}: it names credsStore \"desktop\" and credHelpers for \"gcr.io\", but kubelet never runs docker credential helpers (it ignores credsStore and credHelpers), and neither does pullprobe",
            dir.path().join("kubelet/config.json").display()
        );
        assert!(warnings[0].starts_with(&want), "{}", warnings[0]);
        assert!(warnings[0].contains("install a kubelet credential provider plugin"));
    }

    #[test]
    fn search_paths_are_kubelets() {
        let s = NodeDockerConfigSearch {
            home: Some(PathBuf::from("/root")),
            ..NodeDockerConfigSearch::kubelet_defaults()
        };
        assert_eq!(
            s.config_json_paths(),
            [
                "/var/lib/kubelet/config.json",
                "/config.json",
                "/root/.docker/config.json",
                "/.docker/config.json"
            ]
            .map(PathBuf::from)
        );
        assert_eq!(
            s.dockercfg_paths(),
            [
                "/var/lib/kubelet/.dockercfg",
                "/.dockercfg",
                "/root/.dockercfg",
                "/.dockercfg"
            ]
            .map(PathBuf::from)
        );
        // No HOME: Go's homeDirPath is "", so ".docker" and ".dockercfg" are relative to the
        // working directory.
        let s = NodeDockerConfigSearch {
            cwd: PathBuf::from("/srv/x/../k"),
            root_dir: PathBuf::from("/var/lib/kubelet/"),
            home: None,
        };
        assert_eq!(
            s.config_json_paths(),
            [
                "/var/lib/kubelet/config.json",
                "/srv/k/config.json",
                "/srv/k/.docker/config.json",
                "/.docker/config.json"
            ]
            .map(PathBuf::from)
        );
        assert_eq!(s.dockercfg_paths()[2], PathBuf::from("/srv/k/.dockercfg"));
    }

    #[test]
    fn go_clean_semantics() {
        for (input, want) in [
            ("/a/./b//c", "/a/b/c"),
            ("/a/b/../c", "/a/c"),
            ("/../a", "/a"),
            ("a/../../b", "../b"),
            ("", "."),
        ] {
            assert_eq!(go_clean(Path::new(input)), PathBuf::from(want), "{input}");
        }
    }

    // ReadDockerConfigFile: config.json in every directory before any .dockercfg.
    #[test]
    fn config_json_anywhere_beats_dockercfg_in_root_dir() {
        let dir = tempfile::tempdir().unwrap();
        let s = search(dir.path());
        write(
            &dir.path().join("kubelet/.dockercfg"),
            r#"{"r.io": {"username": "cfg"}}"#,
        );
        write(
            &dir.path().join("home/.docker/config.json"),
            &auths("r.io", "home"),
        );
        let found = s.find();
        let (path, keyring) = found.found.as_ref().unwrap();
        assert_eq!(*path, dir.path().join("home/.docker/config.json"));
        assert_eq!(users(&keyring.lookup_all(&image("r.io/a"))), ["home"]);
        assert!(found.skipped.is_empty());

        // Earlier directories win among config.json files.
        write(&dir.path().join("cwd/config.json"), &auths("r.io", "cwd"));
        let found = s.find();
        assert_eq!(
            found.found.as_ref().unwrap().0,
            dir.path().join("cwd/config.json")
        );
    }

    // ReadDockerConfigJSONFile / ReadDockercfgFile: an invalid file is skipped (logged at
    // -v=4), and the search goes on.
    #[test]
    fn invalid_files_are_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let s = search(dir.path());
        write(&dir.path().join("kubelet/config.json"), "{not json");
        // A directory where a file is expected: a read error other than not-exist.
        std::fs::create_dir_all(dir.path().join("cwd/config.json")).unwrap();
        write(
            &dir.path().join("home/.docker/config.json"),
            r#"{"auths": {"r.io": {"auth": "%%%"}}}"#,
        );
        write(
            &dir.path().join("kubelet/.dockercfg"),
            r#"{"r.io": {"username": "cfg", "password": "pw"}}"#,
        );
        let found = s.find();
        let (path, keyring) = found.found.as_ref().unwrap();
        assert_eq!(*path, dir.path().join("kubelet/.dockercfg"));
        assert_eq!(users(&keyring.lookup_all(&image("r.io/a"))), ["cfg"]);
        let skipped: Vec<&PathBuf> = found.skipped.iter().map(|s| &s.path).collect();
        assert_eq!(
            skipped,
            [
                &dir.path().join("kubelet/config.json"),
                &dir.path().join("cwd/config.json"),
                &dir.path().join("home/.docker/config.json"),
            ]
        );
        let warnings = found.warnings();
        assert!(
            warnings[0].contains("the JSON is not valid at line"),
            "{}",
            warnings[0]
        );
        assert!(
            warnings[0].ends_with(&format!(
                "and uses {} instead",
                dir.path().join("kubelet/.dockercfg").display()
            )),
            "{}",
            warnings[0]
        );
        assert!(warnings[2].contains("auths[\"r.io\"]"), "{}", warnings[2]);

        // Nothing valid at all.
        std::fs::remove_file(dir.path().join("kubelet/.dockercfg")).unwrap();
        let found = s.find();
        assert!(found.found.is_none());
        assert!(found.warnings()[0].ends_with("and uses no node docker config"));
    }

    // readDockerConfigJSONFileFromBytes decodes into DockerConfigJSON: a config.json without
    // "auths" is valid and empty, and it ends the search; readDockerConfigFileFromBytes decodes
    // the bare map, so "auths" in a .dockercfg is an entry named "auths".
    #[test]
    fn document_shapes_are_kubelets() {
        let dir = tempfile::tempdir().unwrap();
        let s = search(dir.path());
        write(
            &dir.path().join("kubelet/config.json"),
            r#"{"r.io": {"username": "legacy", "password": "pw"}}"#,
        );
        write(&dir.path().join("cwd/config.json"), &auths("r.io", "later"));
        let found = s.find();
        let (path, keyring) = found.found.as_ref().unwrap();
        assert_eq!(*path, dir.path().join("kubelet/config.json"));
        assert!(keyring.is_empty());

        for doc in [
            "null",
            r#"{"credsStore": "ecr-login", "HttpHeaders": {"X": "y"}}"#,
        ] {
            let k = Keyring::from_config_json(Path::new("c.json"), doc.as_bytes()).unwrap();
            assert!(k.is_empty(), "{doc}");
        }
        for doc in ["[]", r#"{"auths": []}"#, r#"{"HttpHeaders": {"X": 1}}"#] {
            assert!(
                Keyring::from_config_json(Path::new("c.json"), doc.as_bytes()).is_err(),
                "{doc}"
            );
        }

        let k = Keyring::from_dockercfg(Path::new(".dockercfg"), auths("r.io", "u").as_bytes())
            .unwrap();
        assert_eq!(k.keys().collect::<Vec<_>>(), ["auths"]);
        assert!(k.lookup_all(&image("r.io/a")).is_empty());
        assert!(
            Keyring::from_dockercfg(Path::new(".dockercfg"), b"null")
                .unwrap()
                .is_empty()
        );
    }

    fn plugin_keyring(name: &str, pairs: &[(&str, &str)]) -> Keyring {
        Keyring::from_entries(
            CredentialSource::Plugin(name.to_owned()),
            pairs.iter().map(|(k, u)| {
                (
                    (*k).to_owned(),
                    Credential {
                        username: (*u).to_owned(),
                        password: Secret::new("pw"),
                    },
                )
            }),
        )
    }

    fn file_keyring(path: &str, pairs: &[(&str, &str)]) -> Keyring {
        let auths: Vec<String> = pairs
            .iter()
            .map(|(k, u)| format!(r#""{k}": {{"username": "{u}", "password": "pw"}}"#))
            .collect();
        let doc = format!(r#"{{"auths": {{{}}}}}"#, auths.join(","));
        Keyring::from_config_json(Path::new(path), doc.as_bytes()).unwrap()
    }

    // secrets.go MakeDockerKeyring + image_manager.go: UnionDockerKeyring{secrets,
    // UnionDockerKeyring{node, plugins}}: each looked up on its own, concatenated.
    #[test]
    fn union_order_is_secrets_node_plugins() {
        let secret_a = file_keyring("/s/a", &[("reg.example.com", "secret-a")]);
        let secret_b = file_keyring("/s/b", &[("reg.example.com/team", "secret-b")]);
        let node = file_keyring(
            "/var/lib/kubelet/config.json",
            &[("reg.example.com/team/app", "node")],
        );
        let plugins = Keyring::merged([
            &plugin_keyring("p1", &[("*.example.com", "p1")]),
            &plugin_keyring("p2", &[("reg.example.com", "p2")]),
        ]);
        let k = KubeletKeyring::for_pod(&[secret_a, secret_b], Some(&node), Some(&plugins));
        let got = k.lookup_all(&image("reg.example.com/team/app:1"));
        // Secrets merged into one keyring (longest key first across secrets), then the node
        // file, then the plugins (re-indexed together: "reg…" sorts before "*…").
        assert_eq!(users(&got), ["secret-b", "secret-a", "node", "p2", "p1"]);
        let origins: Vec<String> = got.iter().map(KeyringMatch::origin).collect();
        assert_eq!(
            origins,
            [
                "credentials from /s/b, key \"reg.example.com/team\"",
                "credentials from /s/a, key \"reg.example.com\"",
                "credentials from /var/lib/kubelet/config.json, key \"reg.example.com/team/app\"",
                "credentials from plugin p2, key \"reg.example.com\"",
                "credentials from plugin p1, key \"*.example.com\"",
            ]
        );
    }

    // keyring.go Lookup: the Docker Hub fallback is per BasicDockerKeyring, so with a union
    // the node's index.docker.io key is still tried after a secret's docker.io key.
    #[test]
    fn docker_hub_fallback_is_per_keyring() {
        let secret = file_keyring("/s", &[("docker.io", "secret")]);
        let node = file_keyring("/n", &[("https://index.docker.io/v1/", "node")]);
        let k = KubeletKeyring::for_pod(std::slice::from_ref(&secret), Some(&node), None);
        assert_eq!(users(&k.lookup_all(&image("nginx"))), ["secret", "node"]);
        // In one merged keyring the index key is only a fallback, so it is not tried.
        let one = Keyring::merged([&secret, &node]);
        assert_eq!(users(&one.lookup_all(&image("nginx"))), ["secret"]);
    }

    // plugins.go NewDockerKeyring (kubelet ≤ 1.32): providers in sorted name order, all added
    // to one BasicDockerKeyring by providersDockerKeyring.Lookup.
    #[test]
    fn combined_layout_sorts_node_and_plugin_keys_together() {
        let node = file_keyring("/n", &[("reg.example.com", "node")]);
        let ecr = plugin_keyring("ecr", &[("reg.example.com/team", "ecr")]);
        let acr = plugin_keyring("acr", &[("reg.example.com", "acr")]);
        let k = KubeletKeyring::for_pod_combined(&[], Some(&node), &[("ecr", &ecr), ("acr", &acr)]);
        // "reg.example.com/team" first (reverse order); under "reg.example.com" the node
        // (".dockercfg" sorts before "acr") comes before acr.
        assert_eq!(
            users(&k.lookup_all(&image("reg.example.com/team/app"))),
            ["ecr", "node", "acr"]
        );
        // The current layout keeps the node file first.
        let plugins = Keyring::merged([&ecr, &acr]);
        let k = KubeletKeyring::for_pod(&[], Some(&node), Some(&plugins));
        assert_eq!(
            users(&k.lookup_all(&image("reg.example.com/team/app"))),
            ["node", "ecr", "acr"]
        );
    }
}
