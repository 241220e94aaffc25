//! `pullprobe --check --pod`, end to end: the binary reads pods, secrets, service accounts and
//! events from the in-process API server (`support::kubeapi`) and probes the pod's images on
//! the fixture registries with the credentials kubelet would use
//! (`getPullSecretsForPod` + `MakeDockerKeyring`, then the node's credentials).

use std::collections::BTreeMap;
use std::process::Command;

use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateWaiting, ContainerStatus, EphemeralContainer, Event,
    LocalObjectReference, ObjectReference, Pod, PodSpec, PodStatus, Secret, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde_json::Value;

use crate::support::kubeapi::FakeKubeApi;
use crate::support::registry::{Auth, FakeRegistry};
use crate::support::{Run, init};

const USER: &str = "pod-user";
const PASSWORD: &str = "pod-Pa55word-never-printed";

pub fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(ns.into()),
        name: Some(name.into()),
        ..Default::default()
    }
}

pub fn container(name: &str, image: &str) -> Container {
    Container {
        name: name.into(),
        image: Some(image.into()),
        image_pull_policy: Some("IfNotPresent".into()),
        ..Default::default()
    }
}

pub fn waiting(name: &str, reason: &str, message: &str) -> ContainerStatus {
    ContainerStatus {
        name: name.into(),
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message: Some(message.into()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A pod on `node` with one container `app` running `image`, waiting in `state`.
pub fn pod(ns: &str, name: &str, node: &str, image: &str, secrets: &[&str], state: &str) -> Pod {
    Pod {
        metadata: meta(ns, name),
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            containers: vec![container("app", image)],
            image_pull_secrets: (!secrets.is_empty()).then(|| {
                secrets
                    .iter()
                    .map(|s| LocalObjectReference { name: (*s).into() })
                    .collect()
            }),
            ..Default::default()
        }),
        status: Some(PodStatus {
            container_statuses: Some(vec![waiting(
                "app",
                state,
                &format!("Back-off pulling image \"{image}\""),
            )]),
            ..Default::default()
        }),
    }
}

/// A `kubernetes.io/dockerconfigjson` secret for `host`.
pub fn pull_secret(ns: &str, name: &str, host: &str, user: &str, pass: &str) -> Secret {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    let json = format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#);
    Secret {
        metadata: meta(ns, name),
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some(BTreeMap::from([(
            ".dockerconfigjson".to_owned(),
            ByteString(json.into_bytes()),
        )])),
        ..Default::default()
    }
}

fn service_account(ns: &str, name: &str, secrets: &[&str]) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(ns, name),
        image_pull_secrets: Some(
            secrets
                .iter()
                .map(|s| LocalObjectReference { name: (*s).into() })
                .collect(),
        ),
        ..Default::default()
    }
}

fn pull_event(ns: &str, pod: &str, container: &str, message: &str, at: &str) -> Event {
    Event {
        metadata: ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(format!("{pod}.{at}")),
            ..Default::default()
        },
        involved_object: ObjectReference {
            kind: Some("Pod".into()),
            namespace: Some(ns.into()),
            name: Some(pod.into()),
            field_path: Some(format!("spec.containers{{{container}}}")),
            ..Default::default()
        },
        reason: Some("Failed".into()),
        message: Some(message.into()),
        count: Some(3),
        last_timestamp: Some(Time(at.parse().unwrap())),
        type_: Some("Warning".into()),
        ..Default::default()
    }
}

/// A private registry (Basic auth) with `team/app:1`, and a config lending it plain HTTP.
struct Fixture {
    dir: tempfile::TempDir,
    api: FakeKubeApi,
    registry: FakeRegistry,
    config: std::path::PathBuf,
}

impl Fixture {
    async fn new(config_extra: &str) -> Self {
        init();
        let dir = tempfile::tempdir().unwrap();
        let registry = FakeRegistry::builder()
            .auth(Auth::Basic {
                user: USER.into(),
                pass: PASSWORD.into(),
            })
            .repo("team/app", &["1"])
            .start()
            .await;
        let api = FakeKubeApi::start().await;
        let root = dir.path().join("kubelet");
        std::fs::create_dir_all(&root).unwrap();
        let config = dir.path().join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "node:\n  runtime: none\n  kubelet:\n    root_dir: {}\ntargets:\n  - image: {}/team/app:1\n    plain_http: true\n{config_extra}",
                root.display(),
                registry.addr
            ),
        )
        .unwrap();
        api.put_service_account(&service_account("shop", "default", &[]));
        Fixture {
            dir,
            api,
            registry,
            config,
        }
    }

    /// `shop/regcred`: the registry's credentials, as a `kubernetes.io/dockerconfigjson` secret.
    fn put_regcred(&self) {
        self.api.put_secret(&pull_secret(
            "shop",
            "regcred",
            &self.registry.addr.to_string(),
            USER,
            PASSWORD,
        ));
    }

    fn image(&self, tag: &str) -> String {
        format!("{}/team/app:{tag}", self.registry.addr)
    }

    async fn run(&self, args: &[&str], node_name: &str) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pullprobe"));
        cmd.args(["--check", "--config.file"])
            .arg(&self.config)
            .arg("--kubeconfig")
            .arg(self.api.kubeconfig(self.dir.path()))
            .args(args)
            .env("NODE_NAME", node_name)
            .env_remove("KUBECONFIG");
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        let run = Run::from_output(&out);
        assert!(
            !run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD),
            "the password leaked:\n{}\n{}",
            run.stdout,
            run.stderr
        );
        run
    }

    async fn json(&self, pod: &str) -> (i32, Value) {
        let run = self
            .run(&["--output", "json", "--pod", pod], "worker-1")
            .await;
        let p = run.json["pods"][0].clone();
        assert!(p.is_object(), "{}\n{}", run.stdout, run.stderr);
        (run.code, p)
    }
}

#[tokio::test]
async fn the_pods_own_secret_pulls_from_a_private_registry_and_kubelets_error_is_shown() {
    let f = Fixture::new("").await;
    let image = f.image("1");
    f.api.put_pod(pod(
        "shop",
        "cart",
        "worker-1",
        &image,
        &["regcred"],
        "ImagePullBackOff",
    ));
    f.put_regcred();
    f.api.add_event(&pull_event(
        "shop",
        "cart",
        "app",
        &format!("Failed to pull image \"{image}\": 401 Unauthorized"),
        "2026-12-01T08:00:00Z",
    ));
    let (code, p) = f.json("shop/cart").await;
    assert_eq!(code, 0, "{p:#}");
    assert_eq!(p["same_node"], true);
    assert_eq!(p["pull_secrets"][0]["status"], "used");
    let c = &p["containers"][0];
    assert_eq!(c["ok"], true, "{c:#}");
    assert_eq!(c["waiting"]["reason"], "ImagePullBackOff");
    assert!(
        c["pull_event"]["message"]
            .as_str()
            .unwrap()
            .contains("401 Unauthorized")
    );
    assert_eq!(c["pull_event"]["count"], 3);

    // The text names kubelet's view beside pullprobe's verdict.
    let run = f.run(&["--pod", "shop/cart"], "worker-1").await;
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("pod shop/cart (node worker-1; service account default)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("pull secrets: regcred (used, 1 registry)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("kubelet:     waiting, ImagePullBackOff"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("last error:  Failed to pull image"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("(3 times, last at 2026-12-01T08:00:00Z)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("1 of 1 containers' images pull on this node"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("kubelet failed, but this node can pull the image now"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn a_private_registry_without_credentials_is_auth_required_and_a_missing_secret_is_a_finding()
{
    let f = Fixture::new("").await;
    f.api.put_pod(pod(
        "shop",
        "cart",
        "worker-1",
        &f.image("1"),
        &["gone"],
        "ErrImagePull",
    ));
    let (code, p) = f.json("shop/cart").await;
    assert_eq!(code, 1);
    assert_eq!(p["pull_secrets"][0]["status"], "missing");
    let findings = p["findings"].to_string();
    assert!(
        findings.contains("the pull secret shop/gone the pod names does not exist: kubelet skips it without failing"),
        "{findings}"
    );
    let r = &p["containers"][0]["result"];
    assert_eq!(r["reason"], "auth_required", "{r:#}");
    assert_eq!(r["phase"], "auth");
}

#[tokio::test]
async fn a_wrong_tag_is_manifest_unknown_with_the_pods_credentials() {
    let f = Fixture::new("").await;
    f.api.put_pod(pod(
        "shop",
        "cart",
        "worker-1",
        &f.image("2"),
        &["regcred"],
        "ErrImagePull",
    ));
    f.put_regcred();
    let (code, p) = f.json("shop/cart").await;
    assert_eq!(code, 1);
    let r = &p["containers"][0]["result"];
    assert_eq!(r["reason"], "manifest_unknown", "{r:#}");
}

#[tokio::test]
async fn service_account_secrets_the_pod_lacks_and_unreadable_secrets_are_said() {
    let f = Fixture::new("").await;
    f.api
        .put_service_account(&service_account("shop", "default", &["regcred", "newcred"]));
    f.api.put_pod(pod(
        "shop",
        "cart",
        "worker-1",
        &f.image("1"),
        &["regcred"],
        "ErrImagePull",
    ));
    f.put_regcred();
    f.api.forbid("secrets/shop/regcred");
    let (code, p) = f.json("shop/cart").await;
    // Without the secret pullprobe may not read, the pull needs credentials it lacks.
    assert_eq!(code, 1);
    assert_eq!(p["pull_secrets"][0]["status"], "forbidden");
    assert_eq!(
        p["service_account_pull_secrets_missing_from_pod"],
        serde_json::json!(["newcred"])
    );
    let findings = p["findings"].to_string();
    assert!(
        findings.contains("pullprobe may not read the pull secret shop/regcred"),
        "{findings}"
    );
    assert!(
        findings.contains("they reach only pods created after they were added"),
        "{findings}"
    );
}

#[tokio::test]
async fn a_secret_kubelet_cannot_decode_fails_every_container_before_a_pull() {
    let f = Fixture::new("").await;
    f.api.put_pod(pod(
        "shop",
        "cart",
        "worker-1",
        &f.image("1"),
        &["broken"],
        "ErrImagePull",
    ));
    let mut bad = pull_secret("shop", "broken", "x", "u", "p");
    bad.data = Some(BTreeMap::from([(
        ".dockerconfigjson".to_owned(),
        ByteString(b"{not json".to_vec()),
    )]));
    f.api.put_secret(&bad);
    let (code, p) = f.json("shop/cart").await;
    assert_eq!(code, 1);
    let c = &p["containers"][0];
    assert_eq!(c["not_probed"]["reason"], "pull_secret_invalid", "{c:#}");
    assert!(c["result"].is_null());
    // No probe was sent: kubelet never gets as far as the registry.
    assert!(f.registry.requests().is_empty());
}

#[tokio::test]
async fn every_kind_of_container_is_probed_and_another_node_is_named() {
    let f = Fixture::new("").await;
    let mut p = pod(
        "shop",
        "cart",
        "worker-7",
        &f.image("1"),
        &["regcred"],
        "ErrImagePull",
    );
    let spec = p.spec.as_mut().unwrap();
    spec.init_containers = Some(vec![container("migrate", &f.image("missing"))]);
    spec.ephemeral_containers = Some(vec![EphemeralContainer {
        name: "debug".into(),
        image: Some("Bad Image Name".into()),
        ..Default::default()
    }]);
    f.api.put_pod(p);
    f.put_regcred();
    let (code, p) = f.json("shop/cart").await;
    assert_eq!(code, 1);
    assert_eq!(p["same_node"], false);
    assert!(
        p["notes"]
            .to_string()
            .contains("not on the pod's node worker-7"),
        "{p:#}"
    );
    let c = p["containers"].as_array().unwrap();
    let kinds: Vec<(&str, &str)> = c
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("migrate", "init"),
            ("app", "container"),
            ("debug", "ephemeral")
        ]
    );
    assert_eq!(c[0]["result"]["reason"], "manifest_unknown");
    assert_eq!(c[1]["ok"], true);
    assert_eq!(c[2]["not_probed"]["reason"], "invalid_reference");
}

#[tokio::test]
async fn node_credentials_only_mode_never_asks_for_a_secret() {
    let f = Fixture::new("pods:\n  pull_secrets: false\n").await;
    f.api.put_pod(pod(
        "shop",
        "cart",
        "worker-1",
        &f.image("1"),
        &["regcred"],
        "ErrImagePull",
    ));
    // The node's config.json has the credentials: the pull works without the secret.
    crate::support::write_docker_config(
        &f.dir.path().join("kubelet/config.json"),
        &f.registry.addr.to_string(),
        USER,
        PASSWORD,
    );
    let (code, p) = f.json("shop/cart").await;
    assert_eq!(code, 0, "{p:#}");
    assert_eq!(p["pull_secrets"][0]["status"], "not_read");
    assert!(
        p["notes"]
            .to_string()
            .contains("pods.pull_secrets is false")
    );
    assert!(
        f.api.requests().iter().all(|r| !r.contains("/secrets/")),
        "{:?}",
        f.api.requests()
    );
}

#[tokio::test]
async fn a_pod_that_cannot_be_read_is_exit_2_in_words() {
    let f = Fixture::new("").await;
    let run = f.run(&["--pod", "shop/nope"], "worker-1").await;
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("pullprobe: pod shop/nope: pod shop/nope does not exist"),
        "{}",
        run.stderr
    );
    // An API that refuses the token.
    let kubeconfig = f.api.kubeconfig(f.dir.path());
    let text = std::fs::read_to_string(&kubeconfig)
        .unwrap()
        .replace("fake-api-token", "wrong");
    let bad = f.dir.path().join("bad-kubeconfig");
    std::fs::write(&bad, text).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pullprobe"));
    cmd.args(["--check", "--pod", "shop/cart", "--kubeconfig"])
        .arg(&bad);
    // Blocking in a task of its own: the fake API runs on this test's runtime.
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    crate::support::Run::from_output(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("the API server does not accept the credentials of kubeconfig"),
        "{stderr}"
    );
    // The client library's own log lines never reach the user.
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // Usage errors before any request.
    let run = f.run(&["--pod", "cart"], "worker-1").await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("`cart` has no namespace"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn no_api_at_all_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pullprobe"))
        .args(["--check", "--pod", "shop/cart"])
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("HOME", dir.path())
        .output()
        .unwrap();
    crate::support::Run::from_output(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no Kubernetes API to ask"), "{stderr}");
}

// ---- the agent's pod watch (pods.watch) ---------------------------------------------------

/// The value of `pullprobe_pod_image_pull_failure` for one pod, with its phase and reason.
fn pod_series(scrape: &str, pod: &str) -> Option<(String, String)> {
    let line = scrape.lines().find(|l| {
        l.starts_with("pullprobe_pod_image_pull_failure{") && l.contains(&format!("pod=\"{pod}\""))
    })?;
    let label = |k: &str| {
        let start = line.find(&format!("{k}=\""))? + k.len() + 2;
        Some(line[start..start + line[start..].find('"')?].to_owned())
    };
    assert!(line.ends_with(" 1"), "{line}");
    Some((label("phase")?, label("reason")?))
}

struct Agent {
    port: u16,
    daemon: crate::alerts_e2e::Daemon,
}

impl Agent {
    /// The agent binary on `f`'s config, reading the fake API through `KUBECONFIG`.
    fn start(f: &Fixture) -> Self {
        let port = crate::support::free_port();
        let kubeconfig = f.api.kubeconfig(f.dir.path());
        let daemon = crate::alerts_e2e::Daemon::start(
            "pullprobe-agent",
            Command::new(env!("CARGO_BIN_EXE_pullprobe"))
                .arg("--config.file")
                .arg(&f.config)
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .env("KUBECONFIG", &kubeconfig)
                .env_remove("NODE_NAME"),
            f.dir.path(),
        );
        Agent { port, daemon }
    }

    async fn scrape(&self) -> String {
        match reqwest::get(format!("http://127.0.0.1:{}/metrics", self.port)).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Waits until `pred` holds for a scrape (30 s at most).
    async fn until(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let s = self.scrape().await;
            if pred(&s) {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}:\n{s}\n{}",
                self.daemon.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

fn running(mut p: Pod) -> Pod {
    p.status = Some(PodStatus {
        container_statuses: Some(vec![ContainerStatus {
            name: "app".into(),
            state: Some(ContainerState {
                running: Some(Default::default()),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ..Default::default()
    });
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_exports_pods_that_cannot_pull_and_forgets_them() {
    let f = Fixture::new("pods:\n  watch: true\n  node_name: worker-1\n").await;
    f.put_regcred();
    f.api.put_pod(pod(
        "shop",
        "wrong-tag",
        "worker-1",
        &f.image("2"),
        &["regcred"],
        "ErrImagePull",
    ));
    f.api.put_pod(pod(
        "shop",
        "wrong-tag-2",
        "worker-1",
        &f.image("2"),
        &["regcred"],
        "ImagePullBackOff",
    ));
    f.api.put_pod(pod(
        "shop",
        "private",
        "worker-1",
        &f.image("1"),
        &["regcred"],
        "ImagePullBackOff",
    ));
    f.api.put_pod(pod(
        "shop",
        "no-creds",
        "worker-1",
        &f.image("1"),
        &[],
        "ErrImagePull",
    ));
    f.api.put_pod(running(pod(
        "shop",
        "running",
        "worker-1",
        &f.image("1"),
        &[],
        "",
    )));
    f.api.put_pod(pod(
        "shop",
        "elsewhere",
        "worker-2",
        &f.image("2"),
        &[],
        "ErrImagePull",
    ));

    let agent = Agent::start(&f);
    let s = agent
        .until("four failing pods", |s| {
            ["wrong-tag", "wrong-tag-2", "private", "no-creds"]
                .iter()
                .all(|p| pod_series(s, p).is_some())
        })
        .await;
    let m = |_: &str, phase: &str, reason: &str| Some((phase.to_owned(), reason.to_owned()));
    assert_eq!(
        pod_series(&s, "wrong-tag"),
        m("", "manifest", "manifest_unknown")
    );
    assert_eq!(
        pod_series(&s, "wrong-tag-2"),
        m("", "manifest", "manifest_unknown")
    );
    // The pod's own secret lets pullprobe pull: kubelet's error is not about this node now.
    assert_eq!(pod_series(&s, "private"), m("", "none", "ok"));
    assert_eq!(pod_series(&s, "no-creds"), m("", "auth", "auth_required"));
    assert_eq!(pod_series(&s, "running"), None);
    assert_eq!(pod_series(&s, "elsewhere"), None, "another node's pod");
    assert!(s.contains("container=\"app\",namespace=\"shop\""), "{s}");
    assert!(s.contains("\npullprobe_pod_watch_up 1\n"), "{s}");
    // Both pod metrics are the README's (agent_e2e compares the rest of the table).
    let readme = include_str!("../../README.md");
    for m in ["pullprobe_pod_image_pull_failure", "pullprobe_pod_watch_up"] {
        assert!(readme.contains(&format!("| `{m}` |")), "{m}");
    }
    assert!(!s.contains(PASSWORD));
    // One probe for the two pods waiting on the same image with the same credentials: each
    // probe sends the credentials once (at once, or after a 401 when it has not seen the
    // registry's challenge yet).
    let tag2 = f
        .registry
        .requests()
        .iter()
        .filter(|r| r.path_and_query.contains("/manifests/2") && r.authorization.is_some())
        .count();
    assert_eq!(tag2, 1, "deduplicated by image and credentials");

    // The pod pulls: its series goes. A deleted pod's series goes.
    f.api.put_pod(running(pod(
        "shop",
        "wrong-tag",
        "worker-1",
        &f.image("2"),
        &["regcred"],
        "",
    )));
    f.api.delete_pod("shop", "no-creds");
    agent
        .until("recovered and deleted pods forgotten", |s| {
            pod_series(s, "wrong-tag").is_none() && pod_series(s, "no-creds").is_none()
        })
        .await;

    // A deletion the watch missed shows after the API says 410 Gone and the agent re-lists.
    f.api.delete_pod_unseen("shop", "wrong-tag-2");
    let s = agent.scrape().await;
    assert!(pod_series(&s, "wrong-tag-2").is_some(), "not seen yet");
    f.api.compact();
    agent
        .until("the re-list forgets the missed deletion", |s| {
            pod_series(s, "wrong-tag-2").is_none()
        })
        .await;
    assert!(pod_series(&agent.scrape().await, "private").is_some());

    // Bookmarks: the next watch starts from the bookmark's resourceVersion.
    let watches = |api: &FakeKubeApi| {
        api.requests()
            .iter()
            .filter(|r| r.starts_with("/api/v1/pods?") && r.contains("watch=true"))
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while f.api.open_watches() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent watches again"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        f.api
            .requests()
            .iter()
            .any(|r| r.contains("allowWatchBookmarks=true")),
        "{:?}",
        f.api.requests()
    );
    f.api.bookmark();
    let bookmark_rv = f.api.resource_version();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let before = watches(&f.api);
    f.api.end_watches();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while watches(&f.api) == before {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent watches again"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let last = f
        .api
        .requests()
        .into_iter()
        .rfind(|r| r.contains("watch=true"))
        .unwrap();
    assert!(
        last.contains(&format!("resourceVersion={bookmark_rv}")),
        "{last}"
    );
    // And the watch goes on.
    f.api.put_pod(pod(
        "shop",
        "late",
        "worker-1",
        &f.image("1"),
        &[],
        "ErrImagePull",
    ));
    agent
        .until("a pod failing after the reconnect", |s| {
            pod_series(s, "late").is_some()
        })
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_rbac_forbids_shows_as_pod_watch_up_0() {
    let f = Fixture::new("pods:\n  watch: true\n  node_name: worker-1\n").await;
    f.api.forbid("pods");
    let agent = Agent::start(&f);
    agent
        .until("the watch reported down", |s| {
            s.contains("\npullprobe_pod_watch_up 0\n")
        })
        .await;
    // The log says why in words, with the API server's answer, and no library text.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = agent.daemon.log();
        if log.contains("cannot list this node's pods: the API server answered 403") {
            assert!(log.contains("cannot list resource"), "{log}");
            assert!(
                !log.contains("ApiError") && !log.contains("Status {"),
                "{log}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{log}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quiet_watch_outlives_the_probe_timeout() {
    // The probe timeout (1s) bounds gets and lists, never a watch the server holds open.
    let f = Fixture::new("timeout: 1s\npods:\n  watch: true\n  node_name: worker-1\n").await;
    let agent = Agent::start(&f);
    agent
        .until("the watch up", |s| {
            s.contains("\npullprobe_pod_watch_up 1\n")
        })
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while f.api.open_watches() == 0 {
        assert!(std::time::Instant::now() < deadline, "the agent watches");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let count = || {
        f.api
            .requests()
            .iter()
            .filter(|r| r.contains("watch=true"))
            .count()
    };
    let before = count();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(count(), before, "no reconnect: {:?}", f.api.requests());
    let s = agent.scrape().await;
    assert!(s.contains("\npullprobe_pod_watch_up 1\n"), "{s}");
    assert!(
        !agent.daemon.log().contains("watch"),
        "{}",
        agent.daemon.log()
    );
}
