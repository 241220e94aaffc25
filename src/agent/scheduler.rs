//! The probe schedule: one task per target, a per-node random start offset, jittered intervals,
//! and a global bound on concurrent probes.
//!
//! Invariants:
//! - A target's first probe starts at a uniformly random offset after the task starts, so the
//!   nodes of a DaemonSet do not probe in lockstep: within the first minute (`FIRST_ROUND`), or
//!   within the interval for a Docker Hub target, whose fleet-wide request rate the interval
//!   is chosen to bound.
//! - After each probe the next one is due `interval ± 10 %` (uniform) after the previous due
//!   time. A late task never bursts to catch up: if the next due time has already passed, it is
//!   moved to `now + period` (the `MissedTickBehavior::Delay` semantics).
//! - At most `concurrency` probes run at once, across all targets (one `Semaphore`).
//! - [`Scheduler::apply`] keeps the task (and therefore the schedule) of every target whose name,
//!   `registry` label and interval are unchanged, handing it the new settings for its next probe;
//!   it starts tasks for new targets and cancels the tasks of removed ones. Cancelling drops the
//!   in-flight probe future, which closes its connections and releases its permit.
//! - All time comes from `tokio::time`, so tests drive the schedule with paused time.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng as _, RngExt as _, SeedableRng as _};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::store::{Configured, Store, TaskId, Verdict};
use crate::config::{Config, Target};
use crate::probe::{ProbeReport, Prober};

/// A boxed, sendable future, as returned by [`Probe::probe`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the scheduler needs from a probe engine: the real [`Prober`], or a synthetic one in tests.
pub trait Probe: Send + Sync + 'static {
    /// Probes `target` once. Must be bounded by the config's timeout and cancel-safe: dropping
    /// the future cancels the probe.
    fn probe<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, ProbeReport>;

    /// The engine to use after a successful config reload (the real prober keeps its cached
    /// registry tokens).
    fn reconfigure(self: Arc<Self>, config: &Config) -> Arc<dyn Probe>;
}

impl Probe for Prober {
    fn probe<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, ProbeReport> {
        Box::pin(Prober::probe(self, target))
    }

    fn reconfigure(self: Arc<Self>, config: &Config) -> Arc<dyn Probe> {
        Arc::new(Prober::reconfigure(&self, config))
    }
}

/// The largest jitter, as a fraction of the interval.
pub const JITTER: f64 = 0.1;

/// `interval` scaled by a uniform factor in `[1 - JITTER, 1 + JITTER]`.
fn jittered(interval: Duration, rng: &mut StdRng) -> Duration {
    interval.mul_f64(rng.random_range((1.0 - JITTER)..=(1.0 + JITTER)))
}

/// How soon after start every target but Docker Hub's has its first result.
pub const FIRST_ROUND: Duration = Duration::from_secs(60);

/// A target's first probe: uniform in `[0, min(interval, FIRST_ROUND))`, so a new agent shows
/// results within a minute; a Docker Hub target's in `[0, interval)`, so a fleet that starts
/// together stays within Hub's request budget (docs/agent.md: the interval is chosen so that
/// `nodes × 3 requests / interval` fits it; a one-minute window would be `interval / 1 min`
/// times that rate, e.g. 15× for 5 000 nodes).
fn start_offset(interval: Duration, docker_hub: bool, rng: &mut StdRng) -> Duration {
    let window = if docker_hub {
        interval
    } else {
        interval.min(FIRST_ROUND)
    };
    let nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX).max(1);
    Duration::from_nanos(rng.random_range(0..nanos))
}

/// State shared by the scheduler and its tasks.
struct Shared {
    store: Arc<Store>,
    prober: RwLock<Arc<dyn Probe>>,
    limit: Semaphore,
}

impl Shared {
    fn prober(&self) -> Arc<dyn Probe> {
        self.prober
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

struct Task {
    id: TaskId,
    registry: String,
    interval: Duration,
    target: watch::Sender<Arc<Target>>,
    cancel: CancellationToken,
}

/// Owns one task per configured target.
pub(crate) struct Scheduler {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    rng: StdRng,
    next_id: TaskId,
    tasks: HashMap<String, Task>,
}

impl Scheduler {
    /// A scheduler with no targets yet. Tasks are children of `cancel` and tracked by `tracker`.
    /// `seed` makes offsets and jitter reproducible (tests); `None` seeds from the OS.
    pub(crate) fn new(
        store: Arc<Store>,
        prober: Arc<dyn Probe>,
        concurrency: usize,
        cancel: CancellationToken,
        tracker: TaskTracker,
        seed: Option<u64>,
    ) -> Self {
        Scheduler {
            shared: Arc::new(Shared {
                store,
                prober: RwLock::new(prober),
                limit: Semaphore::new(concurrency.max(1)),
            }),
            cancel,
            tracker,
            rng: seed.map_or_else(rand::make_rng, StdRng::seed_from_u64),
            next_id: 0,
            tasks: HashMap::new(),
        }
    }

    /// The engine probes use.
    pub(crate) fn prober(&self) -> Arc<dyn Probe> {
        self.shared.prober()
    }

    /// Replaces the engine; running tasks use it from their next probe on.
    pub(crate) fn set_prober(&self, prober: Arc<dyn Probe>) {
        *self
            .shared
            .prober
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = prober;
    }

    /// Makes `config.targets` the probed set (see the module invariants).
    pub(crate) fn apply(&mut self, config: &Config) {
        let interval = config.interval;
        let mut old = std::mem::take(&mut self.tasks);
        let mut configured = Vec::with_capacity(config.targets.len());
        let mut to_start = Vec::new();
        for target in &config.targets {
            let registry = target.image.api_authority();
            let kept = old
                .remove(&target.name)
                .filter(|t| t.registry == registry && t.interval == interval);
            let task = if let Some(task) = kept {
                task.target.send_replace(Arc::new(target.clone()));
                task
            } else {
                self.next_id += 1;
                let (tx, rx) = watch::channel(Arc::new(target.clone()));
                let task = Task {
                    id: self.next_id,
                    registry: registry.clone(),
                    interval,
                    target: tx,
                    cancel: self.cancel.child_token(),
                };
                to_start.push((
                    task.id,
                    rx,
                    task.cancel.clone(),
                    target.image.is_docker_hub(),
                ));
                task
            };
            configured.push(Configured {
                name: target.name.clone(),
                registry,
                interval,
                task: task.id,
            });
            self.tasks.insert(target.name.clone(), task);
        }
        for (name, task) in old {
            debug!(target = %name, "Stopping the probes of a removed or changed target");
            task.cancel.cancel();
        }
        // The store learns the new owners before any new task can record.
        self.shared.store.configure(&configured);
        for (id, rx, cancel, docker_hub) in to_start {
            let offset = start_offset(interval, docker_hub, &mut self.rng);
            let rng = StdRng::seed_from_u64(self.rng.next_u64());
            let shared = self.shared.clone();
            self.tracker
                .spawn(run_target(id, rx, interval, offset, rng, shared, cancel));
        }
    }

    /// The task id of each target, for tests.
    #[cfg(test)]
    fn task_ids(&self) -> HashMap<String, TaskId> {
        self.tasks.iter().map(|(n, t)| (n.clone(), t.id)).collect()
    }
}

/// The probe loop of one target; returns when cancelled.
async fn run_target(
    id: TaskId,
    target: watch::Receiver<Arc<Target>>,
    interval: Duration,
    offset: Duration,
    mut rng: StdRng,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let mut due = Instant::now() + offset;
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            () = tokio::time::sleep_until(due) => {}
        }
        let report = {
            let _permit = tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                p = shared.limit.acquire() => p.expect("the probe semaphore is never closed"),
            };
            let target = target.borrow().clone();
            let prober = shared.prober();
            tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                r = prober.probe(&target) => r,
            }
        };
        let report = Arc::new(report);
        if let Some(previous) = shared.store.record(id, report.clone()) {
            log_result(previous, &report);
        }
        let period = jittered(interval, &mut rng);
        due += period;
        let now = Instant::now();
        if due <= now {
            due = now + period;
        }
    }
}

/// Logs a state change at info (ok) or warn (failing); a steady repeat at debug.
fn log_result(previous: Option<Verdict>, r: &ProbeReport) {
    let changed = previous != Some((r.phase(), r.reason()));
    if changed {
        // What the node's files make the runtime do differently than they say (an ignored
        // hosts.toml, a skipped config.json…): once per change of state, not every interval.
        for w in &r.warnings {
            warn!(target = %r.target, registry = %r.registry, warning = %w, "The node's pull configuration");
        }
    }
    match (&r.failure, changed) {
        (None, true) => {
            info!(target = %r.target, registry = %r.registry, endpoint = %r.endpoint, "Target is ok")
        }
        (None, false) => debug!(target = %r.target, registry = %r.registry, "Target is still ok"),
        (Some(f), true) => warn!(
            target = %r.target,
            registry = %r.registry,
            endpoint = %r.endpoint,
            phase = f.phase.as_str(),
            reason = f.reason.as_str(),
            message = %f.message,
            "Target is failing"
        ),
        (Some(f), false) => debug!(
            target = %r.target,
            registry = %r.registry,
            phase = f.phase.as_str(),
            reason = f.reason.as_str(),
            message = %f.message,
            "Target is still failing"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::agent::store::tests::report;

    /// A synthetic engine: records when each target was probed, takes `delay` per probe, and
    /// counts probes that were cancelled before they finished.
    #[derive(Default)]
    struct Fake {
        calls: Mutex<Vec<(String, Instant)>>,
        delay: Mutex<HashMap<String, Duration>>,
        running: AtomicUsize,
        max_running: AtomicUsize,
        cancelled: AtomicUsize,
    }

    struct Running<'a> {
        fake: &'a Fake,
        finished: bool,
    }

    impl Drop for Running<'_> {
        fn drop(&mut self) {
            self.fake.running.fetch_sub(1, Ordering::SeqCst);
            if !self.finished {
                self.fake.cancelled.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    impl Probe for Fake {
        fn probe<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, ProbeReport> {
            Box::pin(async move {
                self.calls
                    .lock()
                    .unwrap()
                    .push((target.name.clone(), Instant::now()));
                let n = self.running.fetch_add(1, Ordering::SeqCst) + 1;
                self.max_running.fetch_max(n, Ordering::SeqCst);
                let mut running = Running {
                    fake: self,
                    finished: false,
                };
                let delay = self.delay.lock().unwrap().get(&target.name).copied();
                tokio::time::sleep(delay.unwrap_or(Duration::from_millis(100))).await;
                running.finished = true;
                report(&target.name, &target.image.api_authority(), None)
            })
        }

        fn reconfigure(self: Arc<Self>, _: &Config) -> Arc<dyn Probe> {
            self
        }
    }

    impl Fake {
        fn times(&self, name: &str, start: Instant) -> Vec<Duration> {
            self.calls
                .lock()
                .unwrap()
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, t)| *t - start)
                .collect()
        }
    }

    fn config(interval: &str, names: &[&str]) -> Config {
        let mut yaml = format!("interval: {interval}\ntimeout: 1s\ntargets:\n");
        for n in names {
            yaml.push_str(&format!(
                "  - name: {n}\n    image: 127.0.0.1:1/{n}\n    plain_http: true\n"
            ));
        }
        Config::from_yaml("test.yaml", &yaml, Path::new("/")).unwrap()
    }

    struct Harness {
        fake: Arc<Fake>,
        store: Arc<Store>,
        scheduler: Scheduler,
        cancel: CancellationToken,
        start: Instant,
    }

    fn harness(concurrency: usize, seed: u64) -> Harness {
        let fake = Arc::new(Fake::default());
        let store = Arc::new(Store::new());
        let cancel = CancellationToken::new();
        let scheduler = Scheduler::new(
            store.clone(),
            fake.clone(),
            concurrency,
            cancel.clone(),
            TaskTracker::new(),
            Some(seed),
        );
        Harness {
            fake,
            store,
            scheduler,
            cancel,
            start: Instant::now(),
        }
    }

    const MIN: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn offset_then_jittered_interval() {
        let mut h = harness(16, 7);
        h.scheduler.apply(&config("1m", &["a", "b", "c"]));
        tokio::time::sleep(MIN * 20).await;
        let mut firsts = Vec::new();
        for name in ["a", "b", "c"] {
            let t = h.fake.times(name, h.start);
            assert!(t.len() >= 17, "{name}: {t:?}");
            assert!(t[0] < MIN, "first probe within one interval: {t:?}");
            firsts.push(t[0]);
            for w in t.windows(2) {
                let gap = w[1] - w[0];
                assert!(
                    gap >= MIN.mul_f64(0.9) && gap <= MIN.mul_f64(1.1),
                    "{name}: gap {gap:?}"
                );
            }
            let gaps: Vec<_> = t.windows(2).map(|w| w[1] - w[0]).collect();
            assert!(gaps.iter().any(|g| *g != gaps[0]), "jitter varies the gap");
        }
        assert!(
            firsts[0] != firsts[1] && firsts[1] != firsts[2],
            "{firsts:?}"
        );
        h.cancel.cancel();
    }

    /// A new agent has a result for every target within a minute — except Docker Hub's, whose
    /// first probes spread over the interval.
    #[tokio::test(start_paused = true)]
    async fn first_results_within_a_minute_and_docker_hub_spread_over_the_interval() {
        let mut hub_firsts = Vec::new();
        for seed in 0..40 {
            let mut h = harness(16, seed);
            let mut c = config("15m", &["a", "b"]);
            let hub = Config::from_yaml(
                "t.yaml",
                "interval: 15m\ntargets:\n  - name: hub\n    image: nginx:1.27\n",
                Path::new("/"),
            )
            .unwrap();
            c.targets.extend(hub.targets);
            h.scheduler.apply(&c);
            tokio::time::sleep(MIN * 16).await;
            for name in ["a", "b"] {
                let t = h.fake.times(name, h.start);
                assert!(t[0] < FIRST_ROUND, "{name}: {t:?}");
            }
            hub_firsts.push(h.fake.times("hub", h.start)[0]);
            h.cancel.cancel();
        }
        assert!(hub_firsts.iter().all(|t| *t < MIN * 15), "{hub_firsts:?}");
        // Spread over the interval, not bunched in the first minute.
        let late = hub_firsts.iter().filter(|t| **t > MIN * 5).count();
        assert!(late >= 10, "{hub_firsts:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn offsets_differ_by_seed_and_repeat_with_it() {
        let mut first = Vec::new();
        for seed in [1, 2, 1] {
            let mut h = harness(16, seed);
            h.scheduler.apply(&config("15m", &["hub"]));
            tokio::time::sleep(MIN * 15).await;
            first.push(h.fake.times("hub", h.start)[0]);
            h.cancel.cancel();
        }
        assert_ne!(first[0], first[1]);
        assert_eq!(first[0], first[2]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_probe_does_not_cause_a_burst() {
        let mut h = harness(16, 3);
        h.fake
            .delay
            .lock()
            .unwrap()
            .insert("slow".into(), MIN.mul_f64(3.5));
        h.scheduler.apply(&config("1m", &["slow"]));
        tokio::time::sleep(MIN * 10).await;
        let t = h.fake.times("slow", h.start);
        for w in t.windows(2) {
            // Each probe lasts 3.5 intervals; the next starts a jittered interval after it ends.
            let gap = w[1] - w[0];
            assert!(gap >= MIN.mul_f64(3.5 + 0.9), "burst: {t:?}");
        }
        h.cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_is_bounded() {
        let mut h = harness(2, 11);
        let names = ["a", "b", "c", "d", "e", "f"];
        for n in names {
            h.fake.delay.lock().unwrap().insert(n.into(), MIN / 2);
        }
        h.scheduler.apply(&config("1m", &names));
        tokio::time::sleep(MIN * 10).await;
        assert_eq!(h.fake.max_running.load(Ordering::SeqCst), 2);
        assert!(h.fake.times("f", h.start).len() >= 3);
        h.cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn reload_keeps_unchanged_schedules_and_cancels_removed_targets() {
        // The schedule of `a` without any reload, as the reference.
        let mut reference = harness(16, 5);
        reference.scheduler.apply(&config("1m", &["a", "b"]));
        tokio::time::sleep(MIN * 6).await;
        let want = reference.fake.times("a", reference.start);
        reference.cancel.cancel();

        let mut h = harness(16, 5);
        h.fake.delay.lock().unwrap().insert("b".into(), MIN / 2);
        h.scheduler.apply(&config("1m", &["a", "b"]));
        let ids = h.scheduler.task_ids();
        tokio::time::sleep(MIN * 3).await;
        // Remove b (possibly mid-probe), add c, keep a.
        let b_probes = h.fake.times("b", h.start).len();
        h.scheduler.apply(&config("1m", &["a", "c"]));
        assert_eq!(h.scheduler.task_ids()["a"], ids["a"]);
        let names: Vec<_> = h.store.snapshot().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["a", "c"]);
        tokio::time::sleep(MIN * 3).await;
        assert_eq!(h.fake.times("a", h.start)[..want.len()], want[..]);
        assert_eq!(h.fake.times("b", h.start).len(), b_probes, "b stopped");
        assert!(!h.fake.times("c", h.start).is_empty(), "c started");
        assert_eq!(h.fake.running.load(Ordering::SeqCst), 0);

        // A changed interval restarts the task; counters survive.
        let before = h.store.snapshot()[0].probes_total;
        h.scheduler.apply(&config("2m", &["a", "c"]));
        assert_ne!(h.scheduler.task_ids()["a"], ids["a"]);
        assert_eq!(h.store.snapshot()[0].probes_total, before);
        h.cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_drops_in_flight_probes() {
        let mut h = harness(16, 9);
        h.fake.delay.lock().unwrap().insert("a".into(), MIN * 10);
        h.scheduler.apply(&config("1m", &["a"]));
        tokio::time::sleep(MIN * 2).await;
        assert_eq!(h.fake.running.load(Ordering::SeqCst), 1);
        h.cancel.cancel();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(h.fake.running.load(Ordering::SeqCst), 0);
        assert_eq!(h.fake.cancelled.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn jitter_and_offset_bounds() {
        let mut rng = StdRng::seed_from_u64(0);
        for _ in 0..1000 {
            let j = jittered(MIN, &mut rng);
            assert!(j >= MIN.mul_f64(0.9) && j <= MIN.mul_f64(1.1));
            assert!(start_offset(MIN, false, &mut rng) < MIN);
            assert!(start_offset(MIN * 15, false, &mut rng) < FIRST_ROUND);
            assert!(start_offset(MIN * 15, true, &mut rng) < MIN * 15);
        }
    }
}
