//! A pod's pull secrets, read as kubelet reads them.
//!
//! kubelet's `getPullSecretsForPod` gets each `spec.imagePullSecrets` name from the pod's
//! namespace and silently skips one it cannot get (newer kubelets also record a
//! `FailedToRetrieveImagePullSecret` event); `secretsToTrackedDockerConfigs`
//! (`pkg/credentialprovider/secrets/secrets.go`) then uses the `.dockerconfigjson` key of a
//! `kubernetes.io/dockerconfigjson` secret and the `.dockercfg` key of a
//! `kubernetes.io/dockercfg` one, skips every other secret, and fails the whole pull when one of
//! them is not JSON it can decode. The service account's `imagePullSecrets` are not read by
//! kubelet at all: the ServiceAccount admission plugin copied them into the pod when it was
//! created without any.

use serde::Serialize;

use super::{Cluster, ClusterError};
use crate::cluster::pod::PodFacts;
use crate::config::CredentialsFile;
use crate::credentials::Keyring;

const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
const DOCKERCFG: &str = "kubernetes.io/dockercfg";

/// What became of one pull secret the pod names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SecretStatus {
    /// kubelet uses it: `entries` credentials (`auths` keys).
    Used { entries: usize },
    /// It does not exist: kubelet skips it.
    Missing,
    /// pullprobe may not read it (RBAC); kubelet, which may, would use it.
    Forbidden { message: String },
    /// pullprobe did not ask (`pods.pull_secrets: false`).
    NotRead,
    /// Another type, or the type without its key: kubelet skips it.
    Skipped { why: String },
    /// Its data is not a docker config: kubelet fails every pull of the pod.
    Invalid { why: String },
    /// The API did not answer.
    Unavailable { why: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PullSecret {
    pub name: String,
    #[serde(flatten)]
    pub status: SecretStatus,
}

/// The pod's credentials as kubelet would have them, and what is wrong with them.
#[derive(Clone, Debug, Default)]
pub struct PodCredentials {
    /// Every name of `spec.imagePullSecrets`, in order.
    pub secrets: Vec<PullSecret>,
    /// The secrets kubelet would use, merged as `secretsToTrackedDockerConfigs` adds them to
    /// one `BasicDockerKeyring`; `None` when there is none.
    pub keyring: Option<Keyring>,
    /// The service account's `imagePullSecrets` the pod does not have.
    pub service_account_only: Vec<String>,
    /// Why the service account could not be read, when it could not.
    pub service_account_error: Option<String>,
}

impl PodCredentials {
    /// The secrets kubelet would use, as the credentials of a probe target: one keyring
    /// whose entries say which secret they came from.
    pub fn credentials_file(&self, pod: &PodFacts) -> Option<std::sync::Arc<CredentialsFile>> {
        let keyring = self.keyring.clone()?;
        let used: Vec<&str> = self
            .secrets
            .iter()
            .filter(|s| matches!(s.status, SecretStatus::Used { .. }))
            .map(|s| s.name.as_str())
            .collect();
        Some(std::sync::Arc::new(CredentialsFile {
            path: std::path::PathBuf::from(format!(
                "the pull secrets of pod {}/{} ({})",
                pod.namespace,
                pod.name,
                used.join(", ")
            )),
            keyring,
        }))
    }

    /// A secret kubelet cannot decode: every pull of the pod fails before it starts
    /// (`MakeDockerKeyring` returns the error).
    pub fn fatal(&self) -> Option<(&str, &str)> {
        self.secrets.iter().find_map(|s| match &s.status {
            SecretStatus::Invalid { why } => Some((s.name.as_str(), why.as_str())),
            _ => None,
        })
    }

    /// Findings a person should act on, one sentence each, in the pod's order.
    pub fn findings(&self, pod: &PodFacts) -> Vec<String> {
        let ns = &pod.namespace;
        let mut out = Vec::new();
        for s in &self.secrets {
            let name = &s.name;
            match &s.status {
                SecretStatus::Used { .. } | SecretStatus::NotRead => {}
                SecretStatus::Missing => out.push(format!(
                    "the pull secret {ns}/{name} the pod names does not exist: kubelet skips it without failing, and pulls with the other credentials; create it (kubectl -n {ns} create secret docker-registry {name} …) or remove it from spec.imagePullSecrets"
                )),
                SecretStatus::Forbidden { message } => out.push(format!(
                    "pullprobe may not read the pull secret {ns}/{name} ({message}); kubelet can, so the verdict below is without it. Grant `get` on secrets (deploy/components/pod-watch) to probe with it"
                )),
                SecretStatus::Skipped { why } => out.push(format!(
                    "the pull secret {ns}/{name} {why}: kubelet skips it; recreate it with `kubectl create secret docker-registry`"
                )),
                SecretStatus::Invalid { why } => out.push(format!(
                    "the pull secret {ns}/{name} cannot be decoded ({why}): kubelet fails every pull of this pod until it is fixed or removed from spec.imagePullSecrets"
                )),
                SecretStatus::Unavailable { why } => out.push(format!(
                    "the pull secret {ns}/{name} could not be read ({why}); the verdict below is without it"
                )),
            }
        }
        if !self.service_account_only.is_empty() {
            let names = self.service_account_only.join(", ");
            out.push(format!(
                "the service account {ns}/{} lists pull secrets the pod does not have ({names}): they are copied into pods only when a pod is created without imagePullSecrets, so they reach only pods created after they were added. kubelet does not use them for this pod; recreate it (e.g. kubectl rollout restart) to pick them up",
                pod.service_account
            ));
        }
        out
    }
}

/// Reads the pod's pull secrets (when `read_secrets`) and its service account's list.
pub async fn pod_credentials(
    cluster: &Cluster,
    pod: &PodFacts,
    read_secrets: bool,
) -> PodCredentials {
    let ns = &pod.namespace;
    let mut out = PodCredentials::default();
    let mut keyrings = Vec::new();
    for name in &pod.pull_secrets {
        let status = if read_secrets {
            match cluster.secret(ns, name).await {
                Ok(secret) => match decode(ns, name, &secret) {
                    Ok(Some(k)) => {
                        let entries = k.keys().count();
                        keyrings.push(k);
                        SecretStatus::Used { entries }
                    }
                    Ok(None) => SecretStatus::Skipped {
                        why: skipped_why(&secret),
                    },
                    Err(why) => SecretStatus::Invalid { why },
                },
                Err(ClusterError::NotFound { .. }) => SecretStatus::Missing,
                Err(ClusterError::Forbidden { message, .. }) => SecretStatus::Forbidden { message },
                Err(e) => SecretStatus::Unavailable { why: e.to_string() },
            }
        } else {
            SecretStatus::NotRead
        };
        out.secrets.push(PullSecret {
            name: name.clone(),
            status,
        });
    }
    if !keyrings.is_empty() {
        out.keyring = Some(Keyring::merged(&keyrings));
    }
    match cluster.service_account(ns, &pod.service_account).await {
        Ok(sa) => {
            out.service_account_only = sa
                .image_pull_secrets
                .into_iter()
                .flatten()
                .map(|r| r.name)
                .filter(|n| !n.is_empty() && !pod.pull_secrets.contains(n))
                .collect();
        }
        Err(e) => out.service_account_error = Some(e.to_string()),
    }
    out
}

/// `secretsToTrackedDockerConfigs` for one secret: `Ok(None)` when kubelet skips it.
fn decode(
    ns: &str,
    name: &str,
    secret: &crate::cluster::types::Secret,
) -> Result<Option<Keyring>, String> {
    let data = secret.data.as_ref();
    let get = |key: &str| data.and_then(|d| d.get(key)).filter(|b| !b.0.is_empty());
    let full = format!("{ns}/{name}");
    let (bytes, dockercfg) = match secret.type_.as_deref() {
        Some(DOCKER_CONFIG_JSON) => match get(".dockerconfigjson") {
            Some(b) => (b, false),
            None => return Ok(None),
        },
        Some(DOCKERCFG) => match get(".dockercfg") {
            Some(b) => (b, true),
            None => return Ok(None),
        },
        _ => return Ok(None),
    };
    Keyring::from_pull_secret(&full, dockercfg, &bytes.0)
        .map(Some)
        .map_err(|e| e.to_string())
}

fn skipped_why(secret: &crate::cluster::types::Secret) -> String {
    match secret.type_.as_deref() {
        Some(DOCKER_CONFIG_JSON) => {
            "is of type kubernetes.io/dockerconfigjson but has no .dockerconfigjson data".to_owned()
        }
        Some(DOCKERCFG) => {
            "is of type kubernetes.io/dockercfg but has no .dockercfg data".to_owned()
        }
        Some(t) => {
            format!("is of type {t}, not kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg")
        }
        None => "has no type (kubernetes.io/dockerconfigjson is needed)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::types::Secret;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(type_: &str, key: &str, value: &str) -> Secret {
        Secret {
            type_: Some(type_.to_owned()),
            data: Some(BTreeMap::from([(
                key.to_owned(),
                ByteString(value.as_bytes().to_vec()),
            )])),
            ..Default::default()
        }
    }

    #[test]
    fn decodes_as_secrets_to_tracked_docker_configs() {
        let ok = secret(
            DOCKER_CONFIG_JSON,
            ".dockerconfigjson",
            r#"{"auths":{"r.example":{"auth":"dTpw"}}}"#,
        );
        assert_eq!(decode("ns", "a", &ok).unwrap().unwrap().keys().count(), 1);
        let cfg = secret(DOCKERCFG, ".dockercfg", r#"{"r.example":{"auth":"dTpw"}}"#);
        assert_eq!(decode("ns", "b", &cfg).unwrap().unwrap().keys().count(), 1);
        // The type decides which key counts: a dockerconfigjson secret's .dockercfg is skipped.
        let wrong_key = secret(DOCKER_CONFIG_JSON, ".dockercfg", "{}");
        assert_eq!(decode("ns", "c", &wrong_key).unwrap(), None);
        let opaque = secret("Opaque", ".dockerconfigjson", "{}");
        assert_eq!(decode("ns", "d", &opaque).unwrap(), None);
        assert!(skipped_why(&opaque).contains("Opaque"));
        // Empty data is skipped, not an error (len(bytes) > 0).
        let empty = secret(DOCKER_CONFIG_JSON, ".dockerconfigjson", "");
        assert_eq!(decode("ns", "e", &empty).unwrap(), None);
        // Not JSON: json.Unmarshal fails, and every pull of the pod with it.
        let bad = secret(DOCKER_CONFIG_JSON, ".dockerconfigjson", "{nope");
        let why = decode("ns", "f", &bad).unwrap_err();
        assert!(why.contains("secret ns/f"), "{why}");
        assert!(
            why.contains("the JSON is not valid at line 1, column 2"),
            "{why}"
        );
        assert!(!why.contains("key must be a string"), "{why}");
    }
}
