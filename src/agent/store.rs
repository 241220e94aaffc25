//! The agent's state read at scrape time: the latest [`ProbeReport`] of every configured target,
//! its counters, and the outcome of the last config reload.
//!
//! Invariants:
//! - The store holds exactly the configured targets: [`Store::configure`] drops the entries of
//!   removed targets, so their series disappear from the next scrape.
//! - A target kept across a reload (same name, same `registry` label) keeps its counters, its
//!   run of consecutive failures and its last result; counters only ever increase while the
//!   target exists.
//! - `consecutive_failures` is the number of failed probes since the target's last success (or
//!   since it was configured): 0 exactly when the last result is a success or there is none.
//! - Only the task that currently owns a target may record for it (checked by task id), so a
//!   cancelled task can never write into a target that was removed and added again.
//!
//! Locks are `std` mutexes held for a few map operations, never across an `.await`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::outcome::{Phase, Reason};
use crate::probe::ProbeReport;

/// Identifies the scheduler task that owns a target's entry.
pub(crate) type TaskId = u64;

/// What the store knows about one configured target; a snapshot is a clone of these.
#[derive(Clone, Debug)]
pub(crate) struct TargetState {
    pub(crate) name: String,
    /// The `registry` label: the API authority of the target's image.
    pub(crate) registry: String,
    /// The configured probe interval.
    pub(crate) interval: Duration,
    pub(crate) probes_total: u64,
    pub(crate) failures_total: u64,
    /// Failed probes in a row, up to and including the latest; reset to 0 by a success. The
    /// alert rules count probes with it instead of minutes, so they hold at any interval.
    pub(crate) consecutive_failures: u64,
    /// The latest report, `None` until the first probe has finished. Shared, so a snapshot
    /// for a scrape does not copy every report.
    pub(crate) last: Option<Arc<ProbeReport>>,
}

/// A configured target as the scheduler hands it to [`Store::configure`].
#[derive(Clone, Debug)]
pub(crate) struct Configured {
    pub(crate) name: String,
    pub(crate) registry: String,
    pub(crate) interval: Duration,
    pub(crate) task: TaskId,
}

/// The state of a target's last result, used to tell a state change from a steady repeat.
pub(crate) type Verdict = (Option<Phase>, Reason);

#[derive(Debug)]
struct Entry {
    state: TargetState,
    task: TaskId,
}

/// Latest results and counters per target.
#[derive(Debug, Default)]
pub(crate) struct Store {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Store {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Makes `targets` the configured set: drops other entries, creates new ones, and keeps
    /// counters and results of targets whose name and registry label are unchanged.
    pub(crate) fn configure(&self, targets: &[Configured]) {
        let mut entries = self.lock();
        entries.retain(|name, e| {
            targets
                .iter()
                .any(|t| &t.name == name && t.registry == e.state.registry)
        });
        for t in targets {
            let entry = entries.entry(t.name.clone()).or_insert_with(|| Entry {
                state: TargetState {
                    name: t.name.clone(),
                    registry: t.registry.clone(),
                    interval: t.interval,
                    probes_total: 0,
                    failures_total: 0,
                    consecutive_failures: 0,
                    last: None,
                },
                task: t.task,
            });
            entry.state.interval = t.interval;
            entry.task = t.task;
        }
    }

    /// Records a finished probe of the target owned by `task`. Returns the verdict of the
    /// previous result (`Some(None)` for the first result), or `None` when `task` no longer
    /// owns a configured target and the report was dropped.
    pub(crate) fn record(
        &self,
        task: TaskId,
        report: impl Into<Arc<ProbeReport>>,
    ) -> Option<Option<Verdict>> {
        let report = report.into();
        let mut entries = self.lock();
        let entry = entries.get_mut(&report.target)?;
        if entry.task != task {
            return None;
        }
        let state = &mut entry.state;
        let previous = state.last.as_ref().map(|r| (r.phase(), r.reason()));
        state.probes_total += 1;
        if report.ok() {
            state.consecutive_failures = 0;
        } else {
            state.failures_total += 1;
            state.consecutive_failures += 1;
        }
        state.last = Some(report);
        Some(previous)
    }

    /// Every configured target, sorted by name.
    pub(crate) fn snapshot(&self) -> Vec<TargetState> {
        let entries = self.lock();
        let mut out: Vec<_> = entries.values().map(|e| e.state.clone()).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock cannot leave the map inconsistent (every update is
        // a single field write), so a poisoned lock is still usable.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The outcome of the last configuration (re)load, for the `pullprobe_config_*` gauges.
#[derive(Debug)]
pub(crate) struct ReloadStatus {
    successful: AtomicBool,
    /// Unix seconds of the last successful load, as `f64` bits.
    last_success: AtomicU64,
}

impl ReloadStatus {
    /// The status after the initial load at `at`.
    pub(crate) fn loaded_at(at: SystemTime) -> Self {
        let s = ReloadStatus {
            successful: AtomicBool::new(true),
            last_success: AtomicU64::new(0),
        };
        s.succeeded(at);
        s
    }

    pub(crate) fn succeeded(&self, at: SystemTime) {
        let secs = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.last_success.store(secs.to_bits(), Ordering::Relaxed);
        self.successful.store(true, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self) {
        self.successful.store(false, Ordering::Relaxed);
    }

    pub(crate) fn successful(&self) -> bool {
        self.successful.load(Ordering::Relaxed)
    }

    pub(crate) fn last_success_seconds(&self) -> f64 {
        f64::from_bits(self.last_success.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::outcome::Failure;

    pub(crate) fn report(target: &str, registry: &str, failure: Option<Failure>) -> ProbeReport {
        ProbeReport {
            target: target.to_owned(),
            image: format!("{registry}/app:latest"),
            registry: registry.to_owned(),
            failure,
            duration: Duration::from_millis(250),
            started_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            phases: Vec::new(),
            address: None,
            tls: None,
            digest: None,
            rate_limit: None,
            endpoint: registry.to_owned(),
            endpoints: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn configured(name: &str, registry: &str, task: TaskId) -> Configured {
        Configured {
            name: name.to_owned(),
            registry: registry.to_owned(),
            interval: Duration::from_secs(60),
            task,
        }
    }

    #[test]
    fn counts_and_reports_previous_verdict() {
        let s = Store::new();
        s.configure(&[configured("a", "r", 1)]);
        assert_eq!(s.record(1, report("a", "r", None)), Some(None));
        let fail = Failure::new(Phase::Connect, Reason::ConnectRefused, "refused");
        assert_eq!(
            s.record(1, report("a", "r", Some(fail))),
            Some(Some((None, Reason::Ok)))
        );
        let snap = s.snapshot();
        assert_eq!((snap[0].probes_total, snap[0].failures_total), (2, 1));
        assert_eq!(
            snap[0].last.as_ref().unwrap().reason(),
            Reason::ConnectRefused
        );
    }

    /// The run of failures counts failed probes since the last success, whatever their phase,
    /// reason or endpoint, and a success ends it.
    #[test]
    fn consecutive_failures_count_the_run_and_reset_on_success() {
        let s = Store::new();
        s.configure(&[configured("a", "r", 1)]);
        let run = |s: &Store| s.snapshot()[0].consecutive_failures;
        assert_eq!(run(&s), 0, "no probe yet: no failures");
        let refused = Failure::new(Phase::Connect, Reason::ConnectRefused, "refused");
        let nx = Failure::new(Phase::Dns, Reason::DnsNxdomain, "no such host");
        s.record(1, report("a", "r", Some(refused.clone())));
        assert_eq!(run(&s), 1);
        // A different failure continues the run: it counts probes, not one reason.
        s.record(1, report("a", "r", Some(nx)));
        let mut via_mirror = report("a", "r", Some(refused.clone()));
        via_mirror.endpoint = "mirror.internal".into();
        s.record(1, via_mirror);
        assert_eq!(run(&s), 3);
        s.record(1, report("a", "r", None));
        assert_eq!(run(&s), 0, "a success ends the run");
        s.record(1, report("a", "r", Some(refused)));
        let snap = s.snapshot();
        assert_eq!(snap[0].consecutive_failures, 1, "a new run starts at 1");
        assert_eq!((snap[0].probes_total, snap[0].failures_total), (5, 4));
    }

    /// A reload that keeps the target keeps its run; a target that moves to another registry
    /// starts again at 0, as its counters do.
    #[test]
    fn consecutive_failures_survive_a_reload_that_keeps_the_target() {
        let s = Store::new();
        s.configure(&[configured("a", "r", 1), configured("b", "r", 2)]);
        let fail = || Some(Failure::new(Phase::Tls, Reason::TlsExpired, "expired"));
        for _ in 0..2 {
            s.record(1, report("a", "r", fail()));
            s.record(2, report("b", "r", fail()));
        }
        s.configure(&[configured("a", "r", 3), configured("b", "other", 4)]);
        let snap = s.snapshot();
        assert_eq!(
            (snap[0].name.as_str(), snap[0].consecutive_failures),
            ("a", 2)
        );
        assert_eq!(
            (snap[1].name.as_str(), snap[1].consecutive_failures),
            ("b", 0)
        );
        // The report of a task that lost the target changes nothing.
        assert_eq!(s.record(1, report("a", "r", fail())), None);
        assert_eq!(s.snapshot()[0].consecutive_failures, 2);
        s.record(3, report("a", "r", fail()));
        assert_eq!(s.snapshot()[0].consecutive_failures, 3);
    }

    #[test]
    fn reconfigure_keeps_unchanged_drops_removed_and_resets_moved() {
        let s = Store::new();
        s.configure(&[
            configured("a", "r", 1),
            configured("b", "r", 2),
            configured("c", "r", 3),
        ]);
        for (t, id) in [("a", 1), ("b", 2), ("c", 3)] {
            s.record(id, report(t, "r", None));
        }
        // a kept (new task id after an interval change), b removed, c moved to another registry.
        s.configure(&[configured("a", "r", 4), configured("c", "other", 5)]);
        let snap = s.snapshot();
        assert_eq!(snap.len(), 2);
        assert_eq!((snap[0].name.as_str(), snap[0].probes_total), ("a", 1));
        assert_eq!((snap[1].name.as_str(), snap[1].probes_total), ("c", 0));
        assert!(snap[1].last.is_none());
        // The old task of a, and the task of removed b, may no longer record.
        assert_eq!(s.record(1, report("a", "r", None)), None);
        assert_eq!(s.record(2, report("b", "r", None)), None);
        assert!(s.record(4, report("a", "r", None)).is_some());
    }

    #[test]
    fn reload_status() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(42);
        let r = ReloadStatus::loaded_at(at);
        assert!(r.successful());
        r.failed();
        assert!(!r.successful());
        assert!((r.last_success_seconds() - 42.0).abs() < f64::EPSILON);
    }
}
