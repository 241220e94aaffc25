//! The Kubernetes API: one job, reading what kubelet reads for a pod's pull.
//!
//! - [`Cluster`]: a client found as kubectl finds one (`--kubeconfig`, `$KUBECONFIG`,
//!   `~/.kube/config`, then the pod's service account), with every error in words.
//! - [`pod`]: a pod's images, pull policies and pull secrets, and kubelet's latest pull error
//!   for each container from its status and events (pure functions of the API objects).
//! - [`secrets`]: the pod's pull secrets read as kubelet's `getPullSecretsForPod` and
//!   `MakeDockerKeyring` read them, and the service account's list the pod does not have.
//! - [`watch`]: this node's pods, for the agent (`pods.watch`).
//!
//! `probe/` walks the images; `check/pod.rs` and `agent/pods.rs` put the two together.

pub mod pod;
pub mod secrets;
pub mod types;
pub mod watch;

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Api, Client};
use types::{Event, Pod, Secret, ServiceAccount};

/// Where the client's configuration came from, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A kubeconfig file (the first, when `$KUBECONFIG` lists several).
    Kubeconfig(PathBuf),
    /// The pod's service account (`KUBERNETES_SERVICE_HOST` and the mounted token).
    InCluster,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Kubeconfig(p) => write!(f, "kubeconfig {}", p.display()),
            Source::InCluster => f.write_str("the pod's service account"),
        }
    }
}

/// A Kubernetes API client and where its configuration came from.
#[derive(Clone)]
pub struct Cluster {
    client: Client,
    source: Source,
    /// Each request's limit.
    timeout: Duration,
}

/// Why the API could not answer, in words (the API server's own message is kept: it names
/// the user and the missing permission).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// No configuration, or one that cannot be used.
    #[error("{0}")]
    Config(String),
    #[error("{kind} {name} does not exist")]
    NotFound { kind: &'static str, name: String },
    /// 403: RBAC does not allow it.
    #[error("not allowed to {verb} {kind} {name}: {message}")]
    Forbidden {
        verb: &'static str,
        kind: &'static str,
        name: String,
        message: String,
    },
    /// 401: the token or certificate is not accepted.
    #[error("the API server does not accept the credentials of {from}: {message}")]
    Unauthorized { from: Source, message: String },
    /// Any other answer of the API server.
    #[error("the API server answered {code} to {verb} {kind} {name}: {message}")]
    Status {
        verb: &'static str,
        kind: &'static str,
        name: String,
        code: u16,
        message: String,
    },
    /// No answer: connection, TLS or timeout.
    #[error("cannot reach the Kubernetes API ({from}): {detail}")]
    Unreachable { from: Source, detail: String },
}

impl ClusterError {
    /// Whether the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClusterError::NotFound { .. })
    }

    /// Whether RBAC refused the request.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, ClusterError::Forbidden { .. })
    }
}

/// What a request was, for its error message.
struct Request<'a> {
    verb: &'static str,
    kind: &'static str,
    name: &'a str,
}

impl Cluster {
    /// Finds the API as kubectl does: `kubeconfig` when given; else `$KUBECONFIG` (every file
    /// it lists, merged) or `~/.kube/config` when it exists; else the service account of the
    /// pod pullprobe runs in. Each request gives up after `timeout`.
    ///
    /// # Errors
    /// [`ClusterError::Config`] saying which file or variable is wrong and how to fix it.
    pub async fn connect(
        kubeconfig: Option<&Path>,
        timeout: Duration,
    ) -> Result<Self, ClusterError> {
        let (config, source) = load_config(kubeconfig).await?;
        Self::with_config(config, source, timeout)
    }

    /// A client for an already built configuration (tests point it at a fake API server).
    ///
    /// # Errors
    /// When the configuration's TLS material cannot be used.
    pub fn with_config(
        mut config: kube::Config,
        source: Source,
        timeout: Duration,
    ) -> Result<Self, ClusterError> {
        // Only the connection has a limit here: a read limit would also cut a watch that is
        // quiet for longer (the server holds it open for minutes). Each get and list has its
        // own deadline (`get`, `pod_events`).
        config.connect_timeout = Some(timeout);
        let client = Client::try_from(config).map_err(|_| {
            ClusterError::Config(format!(
                "the TLS settings of {source} cannot be used (its certificate-authority or client certificate and key); `kubectl config view --raw` shows them"
            ))
        })?;
        Ok(Cluster {
            client,
            source,
            timeout,
        })
    }

    /// Where the configuration came from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The client, for watches.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Runs one request within the request limit, its error in words.
    async fn bounded<T>(
        &self,
        req: Request<'_>,
        request: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, ClusterError> {
        match tokio::time::timeout(self.timeout, request).await {
            Ok(r) => r.map_err(|e| self.error(&req, &e)),
            Err(_) => Err(self.timed_out()),
        }
    }

    /// `GET /api/v1/namespaces/NS/<kind's plural>/NAME`; errors name `kind` and `NS/NAME`.
    async fn get<K>(
        &self,
        kind: &'static str,
        namespace: &str,
        name: &str,
    ) -> Result<K, ClusterError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        let full = format!("{namespace}/{name}");
        let req = Request {
            verb: "get",
            kind,
            name: &full,
        };
        self.bounded(req, api.get(name)).await
    }

    /// `GET /api/v1/namespaces/NS/pods/NAME`.
    ///
    /// # Errors
    /// As the API answers; see [`ClusterError`].
    pub async fn pod(&self, namespace: &str, name: &str) -> Result<Pod, ClusterError> {
        self.get("pod", namespace, name).await
    }

    /// `GET /api/v1/namespaces/NS/secrets/NAME`.
    ///
    /// # Errors
    /// As the API answers; see [`ClusterError`].
    pub async fn secret(&self, namespace: &str, name: &str) -> Result<Secret, ClusterError> {
        self.get("secret", namespace, name).await
    }

    /// `GET /api/v1/namespaces/NS/serviceaccounts/NAME`.
    ///
    /// # Errors
    /// As the API answers; see [`ClusterError`].
    pub async fn service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<ServiceAccount, ClusterError> {
        self.get("service account", namespace, name).await
    }

    /// The events about one pod, as `kubectl describe pod` lists them: core/v1 events in the
    /// pod's namespace whose `involvedObject` is the pod (kind, name and, when known, UID).
    ///
    /// # Errors
    /// As the API answers; see [`ClusterError`].
    pub async fn pod_events(
        &self,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<Vec<Event>, ClusterError> {
        let mut selector = format!("involvedObject.kind=Pod,involvedObject.name={name}");
        if let Some(uid) = uid {
            selector.push_str(",involvedObject.uid=");
            selector.push_str(uid);
        }
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let full = format!("{namespace}/{name}");
        let req = Request {
            verb: "list",
            kind: "events of pod",
            name: &full,
        };
        let list = self
            .bounded(req, api.list(&ListParams::default().fields(&selector)))
            .await?;
        Ok(list.items)
    }

    fn timed_out(&self) -> ClusterError {
        ClusterError::Unreachable {
            from: self.source.clone(),
            detail: format!(
                "no answer within {}",
                humantime::format_duration(self.timeout)
            ),
        }
    }

    fn error(&self, req: &Request<'_>, e: &kube::Error) -> ClusterError {
        api_error(&self.source, req, e)
    }
}

/// A `kube::Error` in words: the API server's status (its message names the user and the
/// permission), or why no answer came (the OS error, a timeout, TLS).
fn api_error(source: &Source, req: &Request<'_>, e: &kube::Error) -> ClusterError {
    match e {
        kube::Error::Api(status) => {
            let message = status.message.trim().to_owned();
            match status.code {
                404 => ClusterError::NotFound {
                    kind: req.kind,
                    name: req.name.to_owned(),
                },
                403 => ClusterError::Forbidden {
                    verb: req.verb,
                    kind: req.kind,
                    name: req.name.to_owned(),
                    message,
                },
                401 => ClusterError::Unauthorized {
                    from: source.clone(),
                    message: if message.is_empty() {
                        "Unauthorized".to_owned()
                    } else {
                        message
                    },
                },
                code => ClusterError::Status {
                    verb: req.verb,
                    kind: req.kind,
                    name: req.name.to_owned(),
                    code,
                    message,
                },
            }
        }
        other => ClusterError::Unreachable {
            from: source.clone(),
            detail: transport_words(other),
        },
    }
}

/// Why a request got no answer, from the error's source chain: the OS error in words, a
/// timeout, or a TLS failure; never a library's own text.
pub(crate) fn transport_words(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut tls = false;
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return "the connection timed out".to_owned();
            }
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
            {
                tls = true;
            } else if io.raw_os_error().is_some() {
                return crate::probe::os_text(io);
            }
        }
        if err.is::<rustls::Error>() {
            tls = true;
        }
        if err.to_string().contains("timed out") || err.to_string().contains("elapsed") {
            return "no answer in time".to_owned();
        }
        cur = err.source();
    }
    if tls {
        "the TLS handshake failed (the server's certificate is not signed by the kubeconfig's certificate-authority, or the client certificate was refused)".to_owned()
    } else {
        "the connection failed or the server did not speak the Kubernetes API".to_owned()
    }
}

/// kubectl's order: the flag, `$KUBECONFIG`, `~/.kube/config`, then in-cluster.
async fn load_config(flag: Option<&Path>) -> Result<(kube::Config, Source), ClusterError> {
    let options = KubeConfigOptions::default();
    if let Some(path) = flag {
        let kc = read_kubeconfig(path)?;
        let config = kube::Config::from_custom_kubeconfig(kc, &options)
            .await
            .map_err(|e| kubeconfig_error(path, &e))?;
        return Ok((config, Source::Kubeconfig(path.to_owned())));
    }
    if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        let paths: Vec<PathBuf> = std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        let mut merged: Option<Kubeconfig> = None;
        for p in &paths {
            // kubectl skips listed files that do not exist.
            if !p.exists() {
                continue;
            }
            let kc = read_kubeconfig(p)?;
            merged = Some(match merged {
                None => kc,
                Some(m) => m.merge(kc).map_err(|e| kubeconfig_error(p, &e))?,
            });
        }
        let first = paths.first().cloned().unwrap_or_default();
        let Some(kc) = merged else {
            return Err(ClusterError::Config(format!(
                "$KUBECONFIG names {} but none of its files exists; point it at a kubeconfig, or pass --kubeconfig PATH",
                list.to_string_lossy()
            )));
        };
        let config = kube::Config::from_custom_kubeconfig(kc, &options)
            .await
            .map_err(|e| kubeconfig_error(&first, &e))?;
        return Ok((config, Source::Kubeconfig(first)));
    }
    if let Some(home) = std::env::var_os("HOME") {
        let path = PathBuf::from(home).join(".kube").join("config");
        if path.exists() {
            let kc = read_kubeconfig(&path)?;
            let config = kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| kubeconfig_error(&path, &e))?;
            return Ok((config, Source::Kubeconfig(path)));
        }
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return kube::Config::incluster()
            .map(|c| (c, Source::InCluster))
            .map_err(|_| {
                ClusterError::Config(
                    "running in a pod, but its service account token is not mounted (/var/run/secrets/kubernetes.io/serviceaccount): set automountServiceAccountToken: true on the pod (deploy/components/pod-watch does), or pass --kubeconfig PATH".to_owned(),
                )
            });
    }
    Err(ClusterError::Config(
        "no Kubernetes API to ask: no --kubeconfig, $KUBECONFIG unset, no ~/.kube/config, and not running in a pod; pass --kubeconfig PATH (the file kubectl uses)".to_owned(),
    ))
}

fn read_kubeconfig(path: &Path) -> Result<Kubeconfig, ClusterError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ClusterError::Config(format!(
            "cannot read the kubeconfig {}: {}",
            path.display(),
            crate::config::io_words(&e)
        ))
    })?;
    Kubeconfig::from_yaml(&text).map_err(|_| {
        ClusterError::Config(format!(
            "{} is not a kubeconfig (YAML with clusters, contexts and users); `kubectl config view --kubeconfig {}` shows what is wrong",
            path.display(),
            path.display()
        ))
    })
}

fn kubeconfig_error(path: &Path, e: &KubeconfigError) -> ClusterError {
    let p = path.display();
    let what = match e {
        KubeconfigError::CurrentContextNotSet => {
            "sets no current-context; choose one with `kubectl config use-context NAME`".to_owned()
        }
        KubeconfigError::LoadContext(name) => {
            format!("names the context {name}, which it does not define", name = crate::config::quote(name))
        }
        KubeconfigError::LoadClusterOfContext(name) => {
            format!("names the cluster {name}, which it does not define", name = crate::config::quote(name))
        }
        KubeconfigError::MissingClusterUrl => {
            "has a cluster without a server URL (clusters[].cluster.server)".to_owned()
        }
        KubeconfigError::ParseClusterUrl(_) => {
            "has a cluster server URL that is not a URL (clusters[].cluster.server)".to_owned()
        }
        KubeconfigError::KindMismatch | KubeconfigError::ApiVersionMismatch => {
            "cannot be merged with the other files of $KUBECONFIG (a different kind or apiVersion)"
                .to_owned()
        }
        _ => "cannot be used (its credentials, certificates or an exec plugin); `kubectl config view` shows it".to_owned(),
    };
    ClusterError::Config(format!("the kubeconfig {p} {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_words_name_the_os_error_not_the_library() {
        let io = std::io::Error::from_raw_os_error(111);
        let words = transport_words(&io);
        assert!(words.contains("refused"), "{words}");
    }
}
