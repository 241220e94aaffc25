//! What kubelet pulls for a pod, and what it last said about it: pure functions of the API
//! objects, so the `--pod` report and the agent read a pod the same way.

use super::types::{Container, ContainerStatus, Event, Pod};
use serde::Serialize;

/// Which list of the pod spec a container is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerKind {
    Init,
    Container,
    Ephemeral,
}

impl ContainerKind {
    /// The pod spec field the container is in (`spec.initContainers`), as kubelet writes it
    /// in an event's `involvedObject.fieldPath`.
    pub const fn field(self) -> &'static str {
        match self {
            ContainerKind::Init => "spec.initContainers",
            ContainerKind::Container => "spec.containers",
            ContainerKind::Ephemeral => "spec.ephemeralContainers",
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            ContainerKind::Init => "init",
            ContainerKind::Container => "container",
            ContainerKind::Ephemeral => "ephemeral",
        }
    }
}

/// A container's `state.waiting`, as kubelet reported it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Waiting {
    /// `ErrImagePull`, `ImagePullBackOff`, `InvalidImageName`, `ErrImageNeverPull`, or a
    /// reason that is not about the image (`ContainerCreating`, `CrashLoopBackOff`).
    pub reason: String,
    pub message: Option<String>,
}

impl Waiting {
    /// Whether kubelet is failing to pull the image: the reasons of `images.ErrImagePull` and
    /// `images.ErrImagePullBackOff` (kubelet's `pkg/kubelet/images/types.go`).
    pub fn is_pull_failure(&self) -> bool {
        is_pull_failure_reason(&self.reason)
    }
}

/// `ErrImagePull` or `ImagePullBackOff`: the states the agent watches for.
pub fn is_pull_failure_reason(reason: &str) -> bool {
    matches!(reason, "ErrImagePull" | "ImagePullBackOff")
}

/// The latest pull event kubelet recorded for a container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PullEvent {
    /// `Failed`, `InspectFailed` or `ErrImageNeverPull` (`pkg/kubelet/events/event.go`).
    pub reason: String,
    pub message: String,
    /// How many times the API server has seen it (`count`, or `series.count`).
    pub count: u32,
    /// When it was last seen, RFC 3339.
    pub last_seen: Option<String>,
}

/// One container of the pod and what kubelet said about pulling its image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PodContainer {
    pub name: String,
    pub kind: ContainerKind,
    /// The image exactly as written in the spec.
    pub image: String,
    /// `Always`, `IfNotPresent` or `Never`, as the API server defaults it.
    pub image_pull_policy: String,
    pub waiting: Option<Waiting>,
    pub pull_event: Option<PullEvent>,
}

impl PodContainer {
    /// Whether kubelet is failing to pull this container's image now.
    pub fn pull_failing(&self) -> bool {
        self.waiting.as_ref().is_some_and(Waiting::is_pull_failure)
    }
}

/// What kubelet reads of a pod to pull its images.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PodFacts {
    pub namespace: String,
    pub name: String,
    #[serde(skip)]
    pub uid: Option<String>,
    /// `spec.nodeName`; `None` while the pod is not scheduled.
    pub node: Option<String>,
    /// `spec.serviceAccountName` (`default` when unset).
    pub service_account: String,
    /// `spec.imagePullSecrets` names in order, empty names left out as kubelet leaves them
    /// out (`getPullSecretsForPod`).
    pub pull_secrets: Vec<String>,
    /// Init containers, then containers, then ephemeral containers.
    pub containers: Vec<PodContainer>,
    /// kubelet's `FailedToRetrieveImagePullSecret` event on the pod, the latest one.
    pub secret_event: Option<String>,
}

impl PodFacts {
    /// Reads a pod (without its events; see [`PodFacts::attach_events`]).
    pub fn from_pod(pod: &Pod) -> Self {
        let meta = &pod.metadata;
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let mut containers = Vec::new();
        let empty: Vec<ContainerStatus> = Vec::new();
        let statuses = |list: Option<&Vec<ContainerStatus>>| list.unwrap_or(&empty).clone();
        if let Some(spec) = spec {
            let init = statuses(status.and_then(|s| s.init_container_statuses.as_ref()));
            for c in spec.init_containers.iter().flatten() {
                containers.push(container(c, ContainerKind::Init, &init));
            }
            let regular = statuses(status.and_then(|s| s.container_statuses.as_ref()));
            for c in &spec.containers {
                containers.push(container(c, ContainerKind::Container, &regular));
            }
            let eph = statuses(status.and_then(|s| s.ephemeral_container_statuses.as_ref()));
            for c in spec.ephemeral_containers.iter().flatten() {
                containers.push(container(c, ContainerKind::Ephemeral, &eph));
            }
        }
        PodFacts {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone(),
            node: spec
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            service_account: spec
                .and_then(|s| s.service_account_name.clone())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "default".to_owned()),
            pull_secrets: spec
                .and_then(|s| s.image_pull_secrets.as_ref())
                .into_iter()
                .flatten()
                .map(|r| r.name.clone())
                .filter(|n| !n.is_empty())
                .collect(),
            containers,
            secret_event: None,
        }
    }

    /// Attaches kubelet's latest pull event to each container (matched by the event's
    /// `involvedObject.fieldPath`, `spec.containers{NAME}`), and its latest
    /// `FailedToRetrieveImagePullSecret` to the pod.
    pub fn attach_events(&mut self, events: &[Event]) {
        for c in &mut self.containers {
            let path = format!("{}{{{}}}", c.kind.field(), c.name);
            c.pull_event = events
                .iter()
                .filter(|e| e.involved_object.field_path.as_deref() == Some(path.as_str()))
                .filter_map(pull_event)
                .max_by(|a, b| a.1.cmp(&b.1))
                .map(|(e, _)| e);
        }
        self.secret_event = events
            .iter()
            .filter(|e| e.reason.as_deref() == Some("FailedToRetrieveImagePullSecret"))
            .filter_map(|e| Some((e.message.clone()?, event_time(e))))
            .max_by(|a, b| a.1.cmp(&b.1))
            .map(|(m, _)| m);
    }
}

fn container(c: &Container, kind: ContainerKind, statuses: &[ContainerStatus]) -> PodContainer {
    PodContainer {
        name: c.name.clone(),
        kind,
        image: c.image.clone().unwrap_or_default(),
        image_pull_policy: pull_policy(c.image_pull_policy.as_deref(), c.image.as_deref()),
        waiting: waiting(&c.name, statuses),
        pull_event: None,
    }
}

fn waiting(name: &str, statuses: &[ContainerStatus]) -> Option<Waiting> {
    let w = statuses
        .iter()
        .find(|s| s.name == name)?
        .state
        .as_ref()?
        .waiting
        .as_ref()?;
    Some(Waiting {
        reason: w.reason.clone().unwrap_or_default(),
        message: w.message.clone().filter(|m| !m.is_empty()),
    })
}

/// The pull policy as the API server defaults it (`SetDefaults_Container`): `Always` for a
/// `:latest` or untagged image without a digest, `IfNotPresent` otherwise.
fn pull_policy(written: Option<&str>, image: Option<&str>) -> String {
    if let Some(p) = written.filter(|p| !p.is_empty()) {
        return p.to_owned();
    }
    let image = image.unwrap_or_default();
    let (name, digest) = match image.split_once('@') {
        Some((n, _)) => (n, true),
        None => (image, false),
    };
    // The tag follows the last `:` after the last `/` (a registry port is before it).
    let last = name.rsplit('/').next().unwrap_or(name);
    let tag = last.rsplit_once(':').map(|(_, t)| t);
    if digest || tag.is_some_and(|t| t != "latest") {
        "IfNotPresent".to_owned()
    } else {
        "Always".to_owned()
    }
}

/// An event's time for ordering: the series' last observation, `lastTimestamp`, `eventTime`
/// or `firstTimestamp`, whichever is set first, as RFC 3339 (which sorts as text).
fn event_time(e: &Event) -> Option<String> {
    e.series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref())
        .map(|t| t.0.to_string())
        .or_else(|| e.last_timestamp.as_ref().map(|t| t.0.to_string()))
        .or_else(|| e.event_time.as_ref().map(|t| t.0.to_string()))
        .or_else(|| e.first_timestamp.as_ref().map(|t| t.0.to_string()))
}

/// kubelet's pull-failure events (`pkg/kubelet/images/image_manager.go`): `Failed` with
/// "Failed to pull image …", `InspectFailed` (an image name it cannot parse) and
/// `ErrImageNeverPull`. `BackOff` and kubelet's second `Failed` ("Error: ErrImagePull")
/// say nothing more and are skipped.
fn pull_event(e: &Event) -> Option<(PullEvent, Option<String>)> {
    let reason = e.reason.as_deref()?;
    let message = e.message.as_deref()?;
    let wanted = match reason {
        "Failed" => message.starts_with("Failed to pull image"),
        "InspectFailed" | "ErrImageNeverPull" => true,
        _ => false,
    };
    if !wanted {
        return None;
    }
    let count = e
        .series
        .as_ref()
        .and_then(|s| s.count)
        .or(e.count)
        .and_then(|c| u32::try_from(c).ok())
        .unwrap_or(1);
    let time = event_time(e);
    Some((
        PullEvent {
            reason: reason.to_owned(),
            message: message.to_owned(),
            count,
            last_seen: time.clone(),
        },
        time,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    // The objects are built with k8s-openapi's own types and read through JSON, as they come
    // from the API server.
    use k8s_openapi::api::core::v1::{
        Container, ContainerState, ContainerStateWaiting, ContainerStatus, EphemeralContainer,
        Event, LocalObjectReference, ObjectReference, Pod, PodSpec, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn slim<T: serde::de::DeserializeOwned>(o: &impl serde::Serialize) -> T {
        serde_json::from_value(serde_json::to_value(o).unwrap()).unwrap()
    }

    fn status(name: &str, reason: &str, message: &str) -> ContainerStatus {
        ContainerStatus {
            name: name.to_owned(),
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.to_owned()),
                    message: Some(message.to_owned()),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some("shop".into()),
                name: Some("cart".into()),
                uid: Some("u-1".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("worker-7".into()),
                image_pull_secrets: Some(vec![
                    LocalObjectReference {
                        name: "regcred".into(),
                    },
                    LocalObjectReference {
                        name: String::new(),
                    },
                    LocalObjectReference { name: "old".into() },
                ]),
                init_containers: Some(vec![Container {
                    name: "migrate".into(),
                    image: Some("registry.example/db:1.2".into()),
                    ..Default::default()
                }]),
                containers: vec![Container {
                    name: "app".into(),
                    image: Some("registry.example/app".into()),
                    image_pull_policy: Some("IfNotPresent".into()),
                    ..Default::default()
                }],
                ephemeral_containers: Some(vec![EphemeralContainer {
                    name: "debugger".into(),
                    image: Some("busybox@sha256:abc".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: Some(PodStatus {
                container_statuses: Some(vec![status(
                    "app",
                    "ImagePullBackOff",
                    "Back-off pulling image",
                )]),
                ..Default::default()
            }),
        }
    }

    fn event(path: Option<&str>, reason: &str, message: &str, at: &str, count: i32) -> Event {
        Event {
            involved_object: ObjectReference {
                field_path: path.map(str::to_owned),
                ..Default::default()
            },
            reason: Some(reason.into()),
            message: Some(message.into()),
            count: Some(count),
            last_timestamp: Some(Time(at.parse().unwrap())),
            ..Default::default()
        }
    }

    #[test]
    fn reads_containers_secrets_and_policies_as_kubelet_and_the_api_server_do() {
        let f = PodFacts::from_pod(&slim(&pod()));
        assert_eq!(f.node.as_deref(), Some("worker-7"));
        assert_eq!(f.service_account, "default");
        // getPullSecretsForPod skips empty names.
        assert_eq!(f.pull_secrets, ["regcred", "old"]);
        let names: Vec<(&str, ContainerKind, &str)> = f
            .containers
            .iter()
            .map(|c| (c.name.as_str(), c.kind, c.image_pull_policy.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("migrate", ContainerKind::Init, "IfNotPresent"),
                ("app", ContainerKind::Container, "IfNotPresent"),
                ("debugger", ContainerKind::Ephemeral, "IfNotPresent"),
            ]
        );
        assert!(f.containers[1].pull_failing());
        assert!(!f.containers[0].pull_failing());
    }

    #[test]
    fn defaults_the_pull_policy_as_set_defaults_container() {
        assert_eq!(pull_policy(None, Some("nginx")), "Always");
        assert_eq!(pull_policy(None, Some("nginx:latest")), "Always");
        assert_eq!(pull_policy(None, Some("localhost:5000/app")), "Always");
        assert_eq!(
            pull_policy(None, Some("localhost:5000/app:1")),
            "IfNotPresent"
        );
        assert_eq!(pull_policy(None, Some("app@sha256:00")), "IfNotPresent");
        assert_eq!(pull_policy(Some("Never"), Some("app")), "Never");
    }

    #[test]
    fn attaches_the_latest_pull_failure_of_each_container() {
        let mut f = PodFacts::from_pod(&slim(&pod()));
        let events: Vec<Event> = vec![
            event(
                Some("spec.containers{app}"),
                "Failed",
                "Failed to pull image \"registry.example/app\": old",
                "2026-12-01T08:00:00Z",
                2,
            ),
            event(
                Some("spec.containers{app}"),
                "Failed",
                "Failed to pull image \"registry.example/app\": newer",
                "2026-12-01T08:05:00Z",
                4,
            ),
            // kubelet's second event says nothing more.
            event(
                Some("spec.containers{app}"),
                "Failed",
                "Error: ErrImagePull",
                "2026-12-01T08:06:00Z",
                4,
            ),
            event(
                Some("spec.containers{app}"),
                "BackOff",
                "Back-off pulling image",
                "2026-12-01T08:07:00Z",
                9,
            ),
            // Another container's event with the same name elsewhere.
            event(
                Some("spec.initContainers{app}"),
                "Failed",
                "Failed to pull image \"x\": init",
                "2026-12-01T09:00:00Z",
                1,
            ),
            event(
                None,
                "FailedToRetrieveImagePullSecret",
                "Unable to retrieve some image pull secrets (old); attempting to pull the image may not succeed.",
                "2026-12-01T08:00:00Z",
                3,
            ),
        ];
        let events: Vec<super::super::types::Event> = events.iter().map(slim).collect();
        f.attach_events(&events);
        let app = &f.containers[1];
        let e = app.pull_event.as_ref().unwrap();
        assert!(e.message.ends_with("newer"), "{e:?}");
        assert_eq!(e.count, 4);
        assert_eq!(e.last_seen.as_deref(), Some("2026-12-01T08:05:00Z"));
        assert!(f.containers[0].pull_event.is_none());
        assert!(f.secret_event.as_deref().unwrap().contains("(old)"));
    }
}
