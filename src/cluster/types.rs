//! The core/v1 objects pullprobe reads, with only the fields it reads.
//!
//! k8s-openapi's full `Pod` (every volume source, probe, affinity term…) costs about 4 MB of
//! code in the binary for its serde, `Clone` and `Debug` impls, and every byte of that is
//! mapped into the agent's memory whether or not `pods.watch` is on (docs/performance.md). These
//! types read the same JSON — the API's field names, unknown fields ignored, as client-go's
//! decoder does — and kube's `Api` and watcher use them through k8s-openapi's `Resource` traits.
//! The tests serve k8s-openapi's own objects to them (tests/integration/support/kubeapi.rs).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::{ByteString, ListableResource, Metadata, NamespaceResourceScope, Resource};
use serde::Deserialize;

macro_rules! core_v1 {
    ($ty:ident, $kind:literal, $segment:literal) => {
        impl Resource for $ty {
            const API_VERSION: &'static str = "v1";
            const GROUP: &'static str = "";
            const KIND: &'static str = $kind;
            const VERSION: &'static str = "v1";
            const URL_PATH_SEGMENT: &'static str = $segment;
            type Scope = NamespaceResourceScope;
        }

        impl ListableResource for $ty {
            const LIST_KIND: &'static str = concat!($kind, "List");
        }

        impl Metadata for $ty {
            type Ty = ObjectMeta;

            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }

            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

/// `spec.imagePullSecrets[]` and a service account's `imagePullSecrets[]`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct LocalObjectReference {
    #[serde(default)]
    pub name: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: Option<PodSpec>,
    pub status: Option<PodStatus>,
}
core_v1!(Pod, "Pod", "pods");

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    pub node_name: Option<String>,
    pub service_account_name: Option<String>,
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    #[serde(default)]
    pub containers: Vec<Container>,
    pub init_containers: Option<Vec<Container>>,
    pub ephemeral_containers: Option<Vec<Container>>,
}

/// A container, init container or ephemeral container: the fields a pull reads.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default)]
    pub name: String,
    pub image: Option<String>,
    pub image_pull_policy: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    pub container_statuses: Option<Vec<ContainerStatus>>,
    pub init_container_statuses: Option<Vec<ContainerStatus>>,
    pub ephemeral_container_statuses: Option<Vec<ContainerStatus>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ContainerStatus {
    #[serde(default)]
    pub name: String,
    pub state: Option<ContainerState>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ContainerState {
    pub waiting: Option<ContainerStateWaiting>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ContainerStateWaiting {
    pub reason: Option<String>,
    pub message: Option<String>,
}

/// A secret. Its `Debug` shows the data keys only, never the values.
#[derive(Clone, Default, Deserialize)]
pub struct Secret {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub data: Option<BTreeMap<String, ByteString>>,
}
core_v1!(Secret, "Secret", "secrets");

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("name", &self.metadata.name)
            .field("type", &self.type_)
            .field(
                "keys",
                &self.data.as_ref().map(|d| d.keys().collect::<Vec<_>>()),
            )
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccount {
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
}
core_v1!(ServiceAccount, "ServiceAccount", "serviceaccounts");

/// A core/v1 event (what `kubectl describe pod` lists).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub involved_object: ObjectReference,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub count: Option<i32>,
    pub first_timestamp: Option<Time>,
    pub last_timestamp: Option<Time>,
    pub event_time: Option<MicroTime>,
    pub series: Option<EventSeries>,
}
core_v1!(Event, "Event", "events");

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    pub field_path: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventSeries {
    pub count: Option<i32>,
    pub last_observed_time: Option<MicroTime>,
}
