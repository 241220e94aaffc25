//! `pullprobe --check --pod NAMESPACE/NAME`: the walk every ImagePullBackOff guide teaches —
//! read the pod, its events, its pull secrets and its node — done for the person, then every
//! image of the pod probed from this node with the credentials kubelet would use.
//!
//! Output, per pod: where it runs and where pullprobe runs, what became of each pull secret,
//! findings (a missing secret, the service account's secrets the pod lacks), the table of
//! containers, and for each container kubelet's latest pull error beside pullprobe's verdict.
//! Exit status as `--check`: 0 every image pulls, 1 one does not, 2 a pod could not be read.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::{JsonResult, json_result, write_details, write_table};
use crate::cli::{EXIT_OK, EXIT_PROBE_FAILED, EXIT_USAGE, OutputFormat, PodName};
use crate::cluster::pod::{PodContainer, PodFacts};
use crate::cluster::secrets::{PodCredentials, PullSecret, SecretStatus, pod_credentials};
use crate::cluster::{Cluster, ClusterError};
use crate::config::Config;
use crate::probe::{ProbeReport, Prober};
use crate::reference::ImageRef;

/// Where pullprobe runs, for "the verdict describes this node".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThisNode {
    pub name: String,
    /// `$NODE_NAME` / `pods.node_name` (certain), or the host name (a guess: node names
    /// usually are host names).
    pub from_hostname: bool,
}

impl ThisNode {
    /// `pods.node_name` or `$NODE_NAME`, else this host's name.
    pub fn find(config: &Config) -> Option<Self> {
        if let Some(n) = &config.pods.node_name {
            return Some(ThisNode {
                name: n.clone(),
                from_hostname: false,
            });
        }
        if let Ok(n) = std::env::var("NODE_NAME")
            && !n.trim().is_empty()
        {
            return Some(ThisNode {
                name: n.trim().to_owned(),
                from_hostname: false,
            });
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .map(|name| ThisNode {
                name,
                from_hostname: true,
            })
    }
}

/// Why a container's image was not probed: kubelet would not get as far as a pull.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NotProbed {
    /// `invalid_reference` (kubelet: InvalidImageName) or `pull_secret_invalid` (kubelet's
    /// `MakeDockerKeyring` fails every pull of the pod).
    pub reason: &'static str,
    pub message: String,
}

/// One container's result.
pub struct ContainerResult {
    pub container: PodContainer,
    pub verdict: Result<ProbeReport, NotProbed>,
}

impl ContainerResult {
    fn ok(&self) -> bool {
        self.verdict.as_ref().is_ok_and(ProbeReport::ok)
    }
}

/// Everything found about one pod.
pub struct PodResult {
    pub pod: PodFacts,
    pub credentials: PodCredentials,
    /// Read without error, but worth saying: events unreadable, secrets not read.
    pub notes: Vec<String>,
    pub containers: Vec<ContainerResult>,
}

/// Runs `--check --pod` for every pod given; the exit status.
pub async fn run(
    cluster: &Cluster,
    config: &Config,
    prober: &Prober,
    pods: &[PodName],
    output: OutputFormat,
) -> u8 {
    let this_node = ThisNode::find(config);
    let mut results: Vec<Result<PodResult, (PodName, ClusterError)>> = Vec::new();
    for p in pods {
        results.push(
            inspect(cluster, config, prober, p)
                .await
                .map_err(|e| (p.clone(), e)),
        );
    }
    let out = match output {
        OutputFormat::Text => render_text(&results, this_node.as_ref(), cluster),
        OutputFormat::Json => render_json(&results, this_node.as_ref()),
    };
    super::write_stdout(&out);
    if results.iter().any(Result::is_err) {
        for (p, e) in results.iter().filter_map(|r| r.as_ref().err()) {
            eprintln!("pullprobe: pod {p}: {e}");
        }
        EXIT_USAGE
    } else if results
        .iter()
        .flatten()
        .all(|r| r.containers.iter().all(ContainerResult::ok))
    {
        EXIT_OK
    } else {
        EXIT_PROBE_FAILED
    }
}

/// Reads one pod and probes its images.
async fn inspect(
    cluster: &Cluster,
    config: &Config,
    prober: &Prober,
    name: &PodName,
) -> Result<PodResult, ClusterError> {
    let pod = cluster.pod(&name.namespace, &name.name).await?;
    let mut facts = PodFacts::from_pod(&pod);
    let mut notes = Vec::new();
    match cluster
        .pod_events(&facts.namespace, &facts.name, facts.uid.as_deref())
        .await
    {
        Ok(events) => facts.attach_events(&events),
        Err(e) => notes.push(format!(
            "kubelet's events could not be read ({e}); only the container statuses show its errors"
        )),
    }
    let credentials = pod_credentials(cluster, &facts, config.pods.pull_secrets).await;
    if !config.pods.pull_secrets && !facts.pull_secrets.is_empty() {
        notes.push(format!(
            "pods.pull_secrets is false: the pod's pull secrets ({}) were not read, so the verdicts use the node's credentials only; kubelet would also try the secrets",
            facts.pull_secrets.join(", ")
        ));
    }
    if let Some(e) = &credentials.service_account_error {
        notes.push(format!(
            "the service account could not be read ({e}), so pullprobe cannot say whether it lists pull secrets the pod lacks"
        ));
    }
    let containers = probe_containers(config, prober, &facts, &credentials).await;
    Ok(PodResult {
        pod: facts,
        credentials,
        notes,
        containers,
    })
}

/// Probes each distinct image of the pod once, with the pod's credentials.
pub async fn probe_containers(
    config: &Config,
    prober: &Prober,
    pod: &PodFacts,
    credentials: &PodCredentials,
) -> Vec<ContainerResult> {
    let fatal = credentials.fatal().map(|(name, why)| NotProbed {
        reason: "pull_secret_invalid",
        message: format!(
            "kubelet cannot decode the pull secret {}/{name} ({why}) and fails every pull of this pod before it starts",
            pod.namespace
        ),
    });
    let file = credentials.credentials_file(pod);
    let mut targets = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut plan: Vec<Result<usize, NotProbed>> = Vec::new();
    for c in &pod.containers {
        if let Some(f) = &fatal {
            plan.push(Err(f.clone()));
            continue;
        }
        if let Some(&i) = index.get(c.image.as_str()) {
            plan.push(Ok(i));
            continue;
        }
        match ImageRef::parse(c.image.trim()) {
            Ok(image) => {
                let i = targets.len();
                targets.push(config.target_for_pod_image(&c.name, image, file.clone()));
                index.insert(c.image.as_str(), i);
                plan.push(Ok(i));
            }
            Err(e) => plan.push(Err(NotProbed {
                reason: "invalid_reference",
                message: format!(
                    "{e}; kubelet reports InvalidImageName and never pulls it — fix the image in the pod spec"
                ),
            })),
        }
    }
    let reports = super::probe_all(prober, targets).await;
    pod.containers
        .iter()
        .zip(plan)
        .map(|(c, p)| ContainerResult {
            container: c.clone(),
            verdict: p.map(|i| {
                let mut r = reports[i].clone();
                r.target.clone_from(&c.name);
                r
            }),
        })
        .collect()
}

// ---- text --------------------------------------------------------------------------------

fn secret_words(s: &PullSecret) -> String {
    let status = match &s.status {
        SecretStatus::Used { entries: 1 } => "used, 1 registry".to_owned(),
        SecretStatus::Used { entries } => format!("used, {entries} registries"),
        SecretStatus::Missing => "missing".to_owned(),
        SecretStatus::Forbidden { .. } => "not readable by pullprobe".to_owned(),
        SecretStatus::NotRead => "not read".to_owned(),
        SecretStatus::Skipped { .. } => "skipped by kubelet".to_owned(),
        SecretStatus::Invalid { .. } => "invalid".to_owned(),
        SecretStatus::Unavailable { .. } => "unavailable".to_owned(),
    };
    format!("{} ({status})", s.name)
}

/// Where the pod runs against where pullprobe runs; `None` when they are the same node.
fn node_note(pod: &PodFacts, this: Option<&ThisNode>) -> Option<String> {
    let here = this.map_or("this machine", |t| t.name.as_str());
    let how = if this.is_some_and(|t| t.from_hostname) {
        " (its host name; set NODE_NAME when the node is named otherwise)"
    } else {
        ""
    };
    let rerun = |node: &str| {
        format!(
            "run it on {node}: kubectl debug node/{node} -it --image=<the pullprobe image> -- /pullprobe --check --pod {}/{}",
            pod.namespace, pod.name
        )
    };
    match (&pod.node, this) {
        (Some(node), Some(t)) if *node == t.name => None,
        (Some(node), _) => Some(format!(
            "pullprobe runs on {here}{how}, not on the pod's node {node}: the verdicts below describe {here}; {}",
            rerun(node)
        )),
        (None, _) => Some(format!(
            "the pod is not scheduled to a node yet, so no node is pulling its images; the verdicts below describe {here}{how}"
        )),
    }
}

fn render_text(
    results: &[Result<PodResult, (PodName, ClusterError)>],
    this: Option<&ThisNode>,
    cluster: &Cluster,
) -> String {
    let mut out = String::new();
    let mut total = 0;
    let mut ok = 0;
    for r in results {
        if !out.is_empty() {
            let _ = writeln!(out);
        }
        let r = match r {
            Ok(r) => r,
            Err((p, e)) => {
                let _ = writeln!(
                    out,
                    "pod {p}: cannot be read from the API ({}): {e}",
                    cluster.source()
                );
                continue;
            }
        };
        let pod = &r.pod;
        let node = pod.node.as_deref().unwrap_or("not scheduled");
        let _ = writeln!(
            out,
            "pod {}/{} (node {node}; service account {})",
            pod.namespace, pod.name, pod.service_account
        );
        if let Some(n) = node_note(pod, this) {
            let _ = writeln!(out, "  note:         {n}");
        }
        if r.credentials.secrets.is_empty() {
            let _ = writeln!(
                out,
                "  pull secrets: none (kubelet uses the node's credentials only)"
            );
        } else {
            let list: Vec<String> = r.credentials.secrets.iter().map(secret_words).collect();
            let _ = writeln!(out, "  pull secrets: {}", list.join(", "));
        }
        if let Some(e) = &pod.secret_event {
            let _ = writeln!(out, "  kubelet said: {e}");
        }
        for f in r.credentials.findings(pod) {
            let _ = writeln!(out, "  finding:      {f}");
        }
        for n in &r.notes {
            let _ = writeln!(out, "  note:         {n}");
        }
        let _ = writeln!(out);
        let probed: Vec<ProbeReport> = r
            .containers
            .iter()
            .filter_map(|c| c.verdict.as_ref().ok().cloned())
            .collect();
        if !probed.is_empty() {
            write_table(&mut out, &probed, "CONTAINER");
        }
        for c in &r.containers {
            total += 1;
            ok += usize::from(c.ok());
            let k = &c.container;
            let _ = writeln!(
                out,
                "\ncontainer {} ({}; image {}; imagePullPolicy {})",
                k.name,
                k.kind.as_str(),
                k.image,
                k.image_pull_policy
            );
            match &k.waiting {
                Some(w) => {
                    let msg = w
                        .message
                        .as_deref()
                        .map(|m| format!(" — {m}"))
                        .unwrap_or_default();
                    let _ = writeln!(out, "  kubelet:     waiting, {}{msg}", w.reason);
                }
                None => {
                    let _ = writeln!(out, "  kubelet:     not waiting on its image");
                }
            }
            if let Some(e) = &k.pull_event {
                let when = e
                    .last_seen
                    .as_deref()
                    .map(|t| format!(", last at {t}"))
                    .unwrap_or_default();
                let times = if e.count == 1 {
                    "once".to_owned()
                } else {
                    format!("{} times", e.count)
                };
                let _ = writeln!(out, "  last error:  {} ({times}{when})", e.message);
            }
            if k.image_pull_policy == "Never" {
                let _ = writeln!(
                    out,
                    "  note:        imagePullPolicy Never: kubelet never pulls this image, it must already be on the node; the verdict says whether it could be pulled"
                );
            }
            if k.pull_failing() && c.ok() {
                let _ = writeln!(
                    out,
                    "  note:        kubelet failed, but this node can pull the image now: kubelet retries with back-off (up to 5 minutes), so the error was transient, or it is about what pullprobe does not see (the runtime's image store, disk space, a registry that answers kubelet differently); read the last error above"
                );
            }
            match &c.verdict {
                Ok(report) => {
                    let mut details = String::new();
                    write_details(&mut details, report);
                    let _ = write!(out, "  pullprobe:   ");
                    for (i, line) in details.lines().enumerate() {
                        if i == 0 {
                            let _ = writeln!(out, "{line}");
                        } else {
                            let _ = writeln!(out, "  {line}");
                        }
                    }
                }
                Err(n) => {
                    let _ = writeln!(out, "  pullprobe:   FAIL {} — {}", n.reason, n.message);
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "\n{ok} of {total} containers' images pull on this node"
    );
    out
}

// ---- JSON --------------------------------------------------------------------------------

#[derive(Serialize)]
struct JsonOutput<'a> {
    pods: Vec<JsonPod<'a>>,
}

#[derive(Serialize)]
struct JsonPod<'a> {
    namespace: &'a str,
    name: &'a str,
    /// Why the pod could not be read; everything else is null then.
    error: Option<String>,
    node: Option<&'a str>,
    /// Where pullprobe ran.
    this_node: Option<&'a str>,
    /// Whether pullprobe ran on the pod's node; null when either is unknown.
    same_node: Option<bool>,
    service_account: Option<&'a str>,
    pull_secrets: Option<&'a [PullSecret]>,
    /// The service account's pull secrets the pod does not have.
    service_account_pull_secrets_missing_from_pod: Option<&'a [String]>,
    findings: Vec<String>,
    notes: Vec<String>,
    containers: Vec<JsonContainer<'a>>,
}

#[derive(Serialize)]
struct JsonContainer<'a> {
    #[serde(flatten)]
    container: &'a PodContainer,
    ok: bool,
    /// pullprobe's probe of the image, as an element of `--check`'s `results`.
    result: Option<JsonResult<'a>>,
    /// Why the image was not probed.
    not_probed: Option<&'a NotProbed>,
}

fn render_json(
    results: &[Result<PodResult, (PodName, ClusterError)>],
    this: Option<&ThisNode>,
) -> String {
    let pods = results
        .iter()
        .map(|r| match r {
            Err((p, e)) => JsonPod {
                namespace: &p.namespace,
                name: &p.name,
                error: Some(e.to_string()),
                node: None,
                this_node: this.map(|t| t.name.as_str()),
                same_node: None,
                service_account: None,
                pull_secrets: None,
                service_account_pull_secrets_missing_from_pod: None,
                findings: Vec::new(),
                notes: Vec::new(),
                containers: Vec::new(),
            },
            Ok(r) => {
                let pod = &r.pod;
                let mut notes = r.notes.clone();
                notes.extend(node_note(pod, this));
                JsonPod {
                    namespace: &pod.namespace,
                    name: &pod.name,
                    error: None,
                    node: pod.node.as_deref(),
                    this_node: this.map(|t| t.name.as_str()),
                    same_node: pod.node.as_deref().zip(this).map(|(n, t)| n == t.name),
                    service_account: Some(&pod.service_account),
                    pull_secrets: Some(&r.credentials.secrets),
                    service_account_pull_secrets_missing_from_pod: Some(
                        &r.credentials.service_account_only,
                    ),
                    findings: r.credentials.findings(pod),
                    notes,
                    containers: r
                        .containers
                        .iter()
                        .map(|c| JsonContainer {
                            container: &c.container,
                            ok: c.ok(),
                            result: c.verdict.as_ref().ok().map(json_result),
                            not_probed: c.verdict.as_ref().err(),
                        })
                        .collect(),
                }
            }
        })
        .collect();
    let mut s = serde_json::to_string_pretty(&JsonOutput { pods })
        .expect("serialising plain data cannot fail");
    s.push('\n');
    s
}
