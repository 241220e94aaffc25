//! `pods.watch`: the pods of this node that cannot pull.
//!
//! Watches the pods with `spec.nodeName` = this node (`cluster::watch`). When a container
//! waits in `ErrImagePull` or `ImagePullBackOff`, its image is probed from this node with the
//! credentials kubelet would use (the pod's pull secrets, read unless `pods.pull_secrets` is
//! false, then the node's), and
//! `pullprobe_pod_image_pull_failure{namespace,pod,container,phase,reason}` is 1 until the
//! container stops waiting on its image or the pod goes away (or a re-list after `410 Gone`
//! no longer has it).
//!
//! Probes are deduplicated by image and credentials (the pod's namespace and pull-secret
//! names): one probe per key per interval, its verdict shared by every container waiting on
//! it; at most [`MAX_PARALLEL`] run at once. A series appears once its verdict is known.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cluster::types::Pod;
use futures::StreamExt as _;
use kube::runtime::watcher::Event;
use prometheus::{GaugeVec, Opts};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Probe;
use crate::cluster::pod::PodFacts;
use crate::cluster::secrets::pod_credentials;
use crate::cluster::{Cluster, watch as podwatch};
use crate::config::Config;
use crate::outcome::Phase;
use crate::reference::ImageRef;

/// After a watch error, the watch counts as working again once no error came for this long:
/// kube-runtime retries a failing list or watch at least every 30 s (its backoff's ceiling),
/// and a restarted watch on a quiet node yields no event that would say it works.
const QUIET_AFTER_ERROR: Duration = Duration::from_secs(70);

/// Pod probes running at once (the targets' probes have their own bound).
pub const MAX_PARALLEL: usize = 2;

/// The metric's name, as the contract spells it.
pub const METRIC: &str = "pullprobe_pod_image_pull_failure";

/// Whether the watch works: without it a broken watch (RBAC, the API unreachable) would look
/// like a node whose pods all pull.
pub const UP_METRIC: &str = "pullprobe_pod_watch_up";

/// What the pod watch needs from the running configuration; the reloader sends a new one
/// after every successful reload.
#[derive(Clone)]
pub(crate) struct Running {
    pub config: Arc<Config>,
    pub probe: Arc<dyn Probe>,
}

/// `pullprobe_pod_watch_up`: 1 while this node's pods are listed and watched, 0 while the
/// API cannot be used or the watch fails; no series while `pods.watch` is off.
pub(crate) fn up_gauge() -> GaugeVec {
    GaugeVec::new(
        Opts::new(
            UP_METRIC,
            "1 while the agent lists and watches this node's pods (pods.watch), 0 while it cannot (the Kubernetes API unreachable, RBAC, no token; the log says which); absent when pods.watch is off.",
        ),
        &[],
    )
    .expect("a valid metric name")
}

/// The gauge, registered with the scrape's registry.
pub(crate) fn gauge() -> GaugeVec {
    GaugeVec::new(
        Opts::new(
            METRIC,
            "1 while a container of a pod on this node waits in ErrImagePull or ImagePullBackOff (pods.watch); phase and reason are pullprobe's verdict for its image probed from this node with the pod's credentials (phase=\"none\", reason=\"ok\" when pullprobe can pull it now).",
        ),
        &["namespace", "pod", "container", "phase", "reason"],
    )
    .expect("a valid metric name and labels")
}

type PodKey = (String, String);
/// Image and credentials: the pod's namespace and its pull-secret names.
type ProbeKey = (String, String, Vec<String>);

/// A verdict: phase and reason label values.
type Verdict = (&'static str, &'static str);

struct Cached {
    at: Instant,
    verdict: Verdict,
}

/// The watch's state: which containers wait on which probe, and the series exported.
struct State {
    gauge: GaugeVec,
    up: GaugeVec,
    /// Per pod, its failing containers: container → (probe key, verdict exported).
    pods: HashMap<PodKey, BTreeMap<String, (ProbeKey, Option<Verdict>)>>,
    cache: HashMap<ProbeKey, Cached>,
    in_flight: HashSet<ProbeKey>,
}

impl State {
    fn set(&mut self, pod: &PodKey, container: &str, verdict: Option<Verdict>) {
        let Some(containers) = self.pods.get_mut(pod) else {
            return;
        };
        let Some(entry) = containers.get_mut(container) else {
            return;
        };
        if entry.1 == verdict {
            return;
        }
        if let Some((p, r)) = entry.1 {
            let _ = self
                .gauge
                .remove_label_values(&[&pod.0, &pod.1, container, p, r]);
        }
        if let Some((p, r)) = verdict {
            self.gauge
                .with_label_values(&[&pod.0, &pod.1, container, p, r])
                .set(1.0);
        }
        entry.1 = verdict;
    }

    /// Drops a container's series and entry.
    fn forget_container(&mut self, pod: &PodKey, container: &str) {
        self.set(pod, container, None);
        if let Some(c) = self.pods.get_mut(pod) {
            c.remove(container);
            if c.is_empty() {
                self.pods.remove(pod);
            }
        }
    }

    fn forget_pod(&mut self, pod: &PodKey) {
        let names: Vec<String> = self
            .pods
            .get(pod)
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default();
        for n in names {
            self.forget_container(pod, &n);
        }
    }

    /// Sets `pullprobe_pod_watch_up`; `None` removes it (pods.watch off).
    fn set_up(&self, up: Option<bool>) {
        match up {
            Some(up) => self
                .up
                .with_label_values(&[] as &[&str])
                .set(f64::from(u8::from(up))),
            None => {
                let _ = self.up.remove_label_values(&[] as &[&str]);
            }
        }
    }

    fn forget_all(&mut self) {
        let pods: Vec<PodKey> = self.pods.keys().cloned().collect();
        for p in pods {
            self.forget_pod(&p);
        }
    }

    /// Exports `verdict` for every container waiting on `key`.
    fn resolve(&mut self, key: &ProbeKey, verdict: Verdict) {
        let waiting: Vec<(PodKey, String)> = self
            .pods
            .iter()
            .flat_map(|(p, c)| {
                c.iter()
                    .filter(|(_, (k, _))| k == key)
                    .map(|(n, _)| (p.clone(), n.clone()))
            })
            .collect();
        for (p, n) in waiting {
            self.set(&p, &n, Some(verdict));
        }
    }
}

/// A finished probe.
struct Done {
    key: ProbeKey,
    verdict: Verdict,
}

/// Runs until `cancel`, following the running config: idle while `pods.watch` is false,
/// (re)starting the watch when it or the node name changes.
pub(crate) async fn run(
    mut running: watch::Receiver<Running>,
    gauge: GaugeVec,
    up: GaugeVec,
    cancel: CancellationToken,
) {
    let mut state = State {
        gauge,
        up,
        pods: HashMap::new(),
        cache: HashMap::new(),
        in_flight: HashSet::new(),
    };
    loop {
        let current = running.borrow_and_update().clone();
        let settings = current.config.pods.clone();
        let node = settings.node_name.clone().filter(|_| settings.watch);
        let Some(node) = node else {
            state.forget_all();
            state.set_up(None);
            tokio::select! {
                () = cancel.cancelled() => return,
                r = running.changed() => if r.is_err() { return },
            }
            continue;
        };
        let cluster = match Cluster::connect(None, current.config.timeout).await {
            Ok(c) => c,
            Err(e) => {
                state.set_up(Some(false));
                warn!(error = %e, "pods.watch: cannot use the Kubernetes API; retrying in 30s");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    r = running.changed() => if r.is_err() { return },
                    () = tokio::time::sleep(Duration::from_secs(30)) => {}
                }
                continue;
            }
        };
        info!(node = %node, api = %cluster.source(), "Watching this node's pods");
        let restart = watch_node(&mut state, &cluster, &node, &mut running, current, &cancel).await;
        state.forget_all();
        if !restart {
            return;
        }
    }
}

/// Follows one node's pods until the settings change (`true`: restart) or `cancel` (`false`).
async fn watch_node(
    state: &mut State,
    cluster: &Cluster,
    node: &str,
    running: &mut watch::Receiver<Running>,
    mut current: Running,
    cancel: &CancellationToken,
) -> bool {
    let stream = podwatch::node_pods(cluster, node);
    tokio::pin!(stream);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let permits = Arc::new(Semaphore::new(MAX_PARALLEL));
    // Pods seen in a re-list (Init … InitDone): the others are gone.
    let mut relist: Option<HashSet<PodKey>> = None;
    let mut last_error: Option<Instant> = None;
    loop {
        let quiet = last_error.map(|t| tokio::time::Instant::from_std(t + QUIET_AFTER_ERROR));
        tokio::select! {
            () = cancel.cancelled() => return false,
            () = async { tokio::time::sleep_until(quiet.expect("guarded")).await }, if quiet.is_some() => {
                last_error = None;
                state.set_up(Some(true));
            }
            r = running.changed() => {
                if r.is_err() {
                    return false;
                }
                let next = running.borrow_and_update().clone();
                let same = next.config.pods == current.config.pods;
                current = next;
                if !same {
                    return true;
                }
            }
            Some(done) = done_rx.recv() => {
                state.in_flight.remove(&done.key);
                state.cache.insert(done.key.clone(), Cached { at: Instant::now(), verdict: done.verdict });
                state.resolve(&done.key, done.verdict);
            }
            ev = stream.next() => match ev {
                None => return true,
                Some(Err(e)) => {
                    last_error = Some(Instant::now());
                    state.set_up(Some(false));
                    warn!(error = %podwatch::error_words(&e), "pods.watch: the watch failed; retrying with backoff");
                }
                Some(Ok(Event::Init)) => relist = Some(HashSet::new()),
                Some(Ok(Event::InitApply(pod))) => {
                    if let Some(seen) = &mut relist {
                        seen.insert(pod_key(&pod));
                    }
                    on_pod(state, cluster, &current, &pod, &permits, &done_tx);
                }
                Some(Ok(Event::InitDone)) => {
                    last_error = None;
                    state.set_up(Some(true));
                    if let Some(seen) = relist.take() {
                        let gone: Vec<PodKey> = state.pods.keys().filter(|k| !seen.contains(*k)).cloned().collect();
                        for k in gone {
                            state.forget_pod(&k);
                        }
                    }
                }
                Some(Ok(Event::Apply(pod))) => {
                    last_error = None;
                    state.set_up(Some(true));
                    on_pod(state, cluster, &current, &pod, &permits, &done_tx);
                }
                Some(Ok(Event::Delete(pod))) => {
                    last_error = None;
                    state.set_up(Some(true));
                    state.forget_pod(&pod_key(&pod));
                }
            }
        }
    }
}

fn pod_key(pod: &Pod) -> PodKey {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

/// A pod changed: forget the containers that no longer fail to pull, and probe (or reuse the
/// verdict for) those that do.
fn on_pod(
    state: &mut State,
    cluster: &Cluster,
    running: &Running,
    pod: &Pod,
    permits: &Arc<Semaphore>,
    done: &mpsc::UnboundedSender<Done>,
) {
    let key = pod_key(pod);
    let facts = PodFacts::from_pod(pod);
    let failing: Vec<_> = facts
        .containers
        .iter()
        .filter(|c| c.pull_failing())
        .collect();
    let known: Vec<String> = state
        .pods
        .get(&key)
        .map(|c| c.keys().cloned().collect())
        .unwrap_or_default();
    for name in known {
        if !failing.iter().any(|c| c.name == name) {
            state.forget_container(&key, &name);
        }
    }
    let interval = running.config.interval;
    for c in failing {
        let probe_key: ProbeKey = (
            c.image.clone(),
            facts.namespace.clone(),
            facts.pull_secrets.clone(),
        );
        let entry = state.pods.entry(key.clone()).or_default();
        match entry.get(&c.name) {
            Some((k, _)) if *k == probe_key => {}
            Some(_) => {
                // Another image or other secrets: a new verdict is needed.
                state.forget_container(&key, &c.name);
                state
                    .pods
                    .entry(key.clone())
                    .or_default()
                    .insert(c.name.clone(), (probe_key.clone(), None));
            }
            None => {
                entry.insert(c.name.clone(), (probe_key.clone(), None));
            }
        }
        if let Some(cached) = state.cache.get(&probe_key)
            && cached.at.elapsed() < interval
        {
            let verdict = cached.verdict;
            state.set(&key, &c.name, Some(verdict));
            continue;
        }
        if !state.in_flight.insert(probe_key.clone()) {
            continue;
        }
        let (cluster, running, facts, permits, done) = (
            cluster.clone(),
            running.clone(),
            facts.clone(),
            permits.clone(),
            done.clone(),
        );
        let container = c.name.clone();
        let image = c.image.clone();
        tokio::spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            let verdict = probe_image(&cluster, &running, &facts, &container, &image).await;
            let _ = done.send(Done {
                key: probe_key,
                verdict,
            });
        });
    }
    // Old cache entries go when no container waits on them.
    let waited: HashSet<&ProbeKey> = state
        .pods
        .values()
        .flat_map(|c| c.values().map(|(k, _)| k))
        .collect();
    let stale: Vec<ProbeKey> = state
        .cache
        .iter()
        .filter(|(k, v)| v.at.elapsed() >= interval && !waited.contains(k))
        .map(|(k, _)| k.clone())
        .collect();
    for k in stale {
        state.cache.remove(&k);
    }
}

/// Probes one image with the pod's credentials, as `--check --pod` does.
async fn probe_image(
    cluster: &Cluster,
    running: &Running,
    facts: &PodFacts,
    container: &str,
    image: &str,
) -> Verdict {
    let config = &running.config;
    let credentials = pod_credentials(cluster, facts, config.pods.pull_secrets).await;
    if credentials.fatal().is_some() {
        // kubelet fails every pull of the pod before it reaches a registry: no phase of
        // pullprobe's vocabulary ran; the pod's credentials are the problem.
        return (
            Phase::Auth.as_str(),
            crate::outcome::Reason::AuthFailed.as_str(),
        );
    }
    let Ok(image) = ImageRef::parse(image.trim()) else {
        // kubelet reports InvalidImageName, not a pull failure; not reached in practice.
        return (
            Phase::Manifest.as_str(),
            crate::outcome::Reason::NameUnknown.as_str(),
        );
    };
    let mut target =
        config.target_for_pod_image(container, image, credentials.credentials_file(facts));
    // As for configured targets: on Docker Hub the manifest GET of the platform check counts
    // as a pull against the node's quota.
    target.check_platform = !target.image.is_docker_hub();
    let report = running.probe.probe(&target).await;
    (
        report.phase().map_or("none", Phase::as_str),
        report.reason().as_str(),
    )
}
