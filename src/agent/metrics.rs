//! The `/metrics` exposition, rendered at scrape time from a [`Store`] snapshot: the agent's own
//! series through the `prometheus` crate's collector and text encoder, the per-target families
//! by [`write_targets`], which produces the same text without the crate's per-series
//! allocations (tested byte for byte against the crate).
//!
//! Rendering at scrape time (instead of updating gauge vectors after each probe) is what makes
//! a removed target's series disappear (writing_exporters.md, "Collectors"), and what makes a
//! series of the last probe disappear when the next probe changes its labels: when the
//! endpoint that answers changes (a mirror fails, the registry answers), the families of the
//! last result carry only the new `endpoint`, so Prometheus marks the old series stale at the
//! next scrape instead of keeping two answers for one target.
//!
//! Label values come only from the config (`target`, `registry`), from the node's registry
//! host configuration (`endpoint`: a mirror of containerd's hosts.toml or the registry itself,
//! so bounded by those files), from closed sets (`phase`, `reason`), from the build, or — for
//! `source` — from a header value that passed [`valid_source`]. Error text never becomes a
//! label. No sample carries a timestamp.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Registry, TextEncoder};

use super::store::{ReloadStatus, Store, TargetState};
use crate::outcome::Phase;

/// The `Content-Type` of a scrape.
pub(crate) const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Appended to the HELP of every per-target metric (writing_exporters.md: cached values say so).
const CACHED: &str = "Cached from the last scheduled probe: every target is probed once per pullprobe_probe_interval_seconds (config `interval`, default 15m, with per-node offset and jitter), not at scrape time.";

struct Spec {
    /// Its position in [`SPECS`] (and so its family's in [`Families`]).
    slot: usize,
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    labels: &'static [&'static str],
    /// Whether [`CACHED`] is appended to the help.
    cached: bool,
}

/// The labels of the families about the target itself: its configuration, its counters and
/// when it was last probed. They do not carry `endpoint`: a counter or a schedule whose series
/// changed with the answering endpoint would be split into pieces (see docs/agent.md).
const TR: &[&str] = &["target", "registry"];
/// The labels of the families about the last probe's result: also the endpoint that answered,
/// or whose failure is the verdict.
const TRE: &[&str] = &["target", "registry", "endpoint"];

const BUILD_INFO: Spec = Spec {
    slot: 0,
    name: "pullprobe_build_info",
    help: "A metric with a constant '1' value labeled by the version, git revision and rustc version pullprobe was built from.",
    kind: MetricType::GAUGE,
    labels: &["version", "revision", "rustc_version"],
    cached: false,
};
const RELOAD_OK: Spec = Spec {
    slot: 1,
    name: "pullprobe_config_last_reload_successful",
    help: "Whether the last configuration reload attempt succeeded (1) or failed and the previous configuration is still in use (0).",
    kind: MetricType::GAUGE,
    labels: &[],
    cached: false,
};
const RELOAD_TS: Spec = Spec {
    slot: 2,
    name: "pullprobe_config_last_reload_success_timestamp_seconds",
    help: "Unix time of the last successful configuration load.",
    kind: MetricType::GAUGE,
    labels: &[],
    cached: false,
};
const INTERVAL: Spec = Spec {
    slot: 3,
    name: "pullprobe_probe_interval_seconds",
    help: "The configured interval between two probes of the target (config `interval`); each probe is shifted by up to 10% random jitter.",
    kind: MetricType::GAUGE,
    labels: TR,
    cached: false,
};
const SUCCESS: Spec = Spec {
    slot: 4,
    name: "pullprobe_probe_success",
    help: "Whether the last probe of the image-pull path succeeded (1) or failed (0).",
    kind: MetricType::GAUGE,
    labels: TRE,
    cached: true,
};
const RESULT: Spec = Spec {
    slot: 5,
    name: "pullprobe_probe_result",
    help: "The result of the last probe: 1 for the failing phase and reason (phase=\"none\", reason=\"ok\" on success); one series per target.",
    kind: MetricType::GAUGE,
    labels: &["target", "registry", "endpoint", "phase", "reason"],
    cached: true,
};
const DURATION: Spec = Spec {
    slot: 6,
    name: "pullprobe_probe_duration_seconds",
    help: "How long the last probe took, all phases together.",
    kind: MetricType::GAUGE,
    labels: TRE,
    cached: true,
};
const PHASE_DURATION: Spec = Spec {
    slot: 7,
    name: "pullprobe_phase_duration_seconds",
    help: "How long each phase of the last probe took; phases that did not run have no series.",
    kind: MetricType::GAUGE,
    labels: &["target", "registry", "endpoint", "phase"],
    cached: true,
};
const PROBES: Spec = Spec {
    slot: 8,
    name: "pullprobe_probes_total",
    help: "Scheduled probes of the target since it was configured (kept across reloads that keep the target).",
    kind: MetricType::COUNTER,
    labels: TR,
    cached: false,
};
const FAILURES: Spec = Spec {
    slot: 9,
    name: "pullprobe_probe_failures_total",
    help: "Failed scheduled probes of the target since it was configured (kept across reloads that keep the target).",
    kind: MetricType::COUNTER,
    labels: TR,
    cached: false,
};
const LAST_TS: Spec = Spec {
    slot: 10,
    name: "pullprobe_last_probe_timestamp_seconds",
    help: "Unix time at which the last probe of the target started.",
    kind: MetricType::GAUGE,
    labels: TR,
    cached: true,
};
const TLS_EXPIRY: Spec = Spec {
    slot: 11,
    name: "pullprobe_tls_cert_expiry_timestamp_seconds",
    help: "Unix time of the earliest NotAfter in the certificate chain the registry presented in the last probe and in the trust anchor that chain was verified against.",
    kind: MetricType::GAUGE,
    labels: TRE,
    cached: true,
};
const RL_LIMIT: Spec = Spec {
    slot: 12,
    name: "pullprobe_ratelimit_limit",
    help: "The pull quota of this node's egress per window (ratelimit-limit header); absent when the registry does not send it.",
    kind: MetricType::GAUGE,
    labels: TRE,
    cached: true,
};
const RL_REMAINING: Spec = Spec {
    slot: 13,
    name: "pullprobe_ratelimit_remaining",
    help: "Pulls left in the current window (ratelimit-remaining header); absent when the registry does not send it.",
    kind: MetricType::GAUGE,
    labels: TRE,
    cached: true,
};
const RL_WINDOW: Spec = Spec {
    slot: 14,
    name: "pullprobe_ratelimit_window_seconds",
    help: "The length of the rate-limit window (the w= parameter of ratelimit-limit); absent when the registry does not send it.",
    kind: MetricType::GAUGE,
    labels: TRE,
    cached: true,
};
const RL_SOURCE: Spec = Spec {
    slot: 15,
    name: "pullprobe_ratelimit_source_info",
    help: "1 while the registry names the address or account it counts pulls against (docker-ratelimit-source header); absent when the header is missing or not an IP address or short token.",
    kind: MetricType::GAUGE,
    labels: &["target", "registry", "endpoint", "source"],
    cached: true,
};
const ENDPOINT_SUCCESS: Spec = Spec {
    slot: 16,
    name: "pullprobe_endpoint_success",
    help: "Whether each endpoint the last probe asked (the node's registry mirrors in the order the runtime asks them, then the registry itself) answered (1) or failed (0); endpoints after the one that answered are not asked and have no series.",
    kind: MetricType::GAUGE,
    labels: TRE,
    cached: true,
};

const CONSECUTIVE: Spec = Spec {
    slot: 17,
    name: "pullprobe_probe_consecutive_failures",
    help: "Failed probes of the target in a row, up to and including the last one, whatever their phase, reason or endpoint; 0 after a success and before the first probe (kept across reloads that keep the target).",
    kind: MetricType::GAUGE,
    labels: TR,
    cached: true,
};

const SPECS: [&Spec; 18] = [
    &BUILD_INFO,
    &RELOAD_OK,
    &RELOAD_TS,
    &INTERVAL,
    &SUCCESS,
    &RESULT,
    &DURATION,
    &PHASE_DURATION,
    &PROBES,
    &FAILURES,
    &LAST_TS,
    &TLS_EXPIRY,
    &RL_LIMIT,
    &RL_REMAINING,
    &RL_WINDOW,
    &RL_SOURCE,
    &ENDPOINT_SUCCESS,
    &CONSECUTIVE,
];

/// The build's identity for `pullprobe_build_info`; `unknown` when build.rs could not tell.
pub(crate) fn build_labels() -> [&'static str; 3] {
    [
        env!("CARGO_PKG_VERSION"),
        option_env!("PULLPROBE_BUILD_REVISION").unwrap_or("unknown"),
        option_env!("PULLPROBE_BUILD_RUSTC").unwrap_or("unknown"),
    ]
}

/// Whether a `docker-ratelimit-source` value may become a label value: an IP address, or a
/// short token of `[A-Za-z0-9._:-]`. Anything else is remote free text and is dropped.
pub(crate) fn valid_source(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
        || ((1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')))
}

fn help(spec: &Spec) -> String {
    if spec.cached {
        format!("{} {CACHED}", spec.help)
    } else {
        spec.help.to_owned()
    }
}

/// Whether the family has one or more series per target (its first labels are `target`,
/// `registry`); such families are written by [`write_targets`], the others by the crate.
fn per_target(spec: &Spec) -> bool {
    spec.labels.first() == Some(&"target")
}

/// The values of a per-target series' labels after `target` and `registry`: `endpoint`, then
/// `phase`, `reason` or `source`, as its family has them; unused entries are empty.
type Extra<'a> = [&'a str; 3];

/// Calls `emit` for every per-target sample of `t`, with the values of its labels after
/// `target` and `registry`.
fn target_samples<'a>(t: &'a TargetState, mut emit: impl FnMut(&'static Spec, Extra<'a>, f64)) {
    const NONE: Extra<'static> = ["", "", ""];
    emit(&INTERVAL, NONE, t.interval.as_secs_f64());
    #[allow(clippy::cast_precision_loss)] // counts stay far below 2^53
    {
        emit(&PROBES, NONE, t.probes_total as f64);
        emit(&FAILURES, NONE, t.failures_total as f64);
        emit(&CONSECUTIVE, NONE, t.consecutive_failures as f64);
    }
    let Some(r) = &t.last else { return };
    let started = r
        .started_at
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    emit(&LAST_TS, NONE, started.as_secs_f64());
    // Everything below describes the last result: it carries the endpoint that answered.
    let ep = r.endpoint.as_str();
    let at = [ep, "", ""];
    emit(&SUCCESS, at, if r.ok() { 1.0 } else { 0.0 });
    let phase = r.phase().map_or("none", Phase::as_str);
    emit(&RESULT, [ep, phase, r.reason().as_str()], 1.0);
    emit(&DURATION, at, r.duration.as_secs_f64());
    for p in &r.phases {
        emit(
            &PHASE_DURATION,
            [ep, p.phase.as_str(), ""],
            p.duration.as_secs_f64(),
        );
    }
    if let Some(not_after) = r.tls.as_ref().and_then(|t| t.earliest_not_after) {
        #[allow(clippy::cast_precision_loss)] // Unix seconds fit in f64 exactly
        emit(&TLS_EXPIRY, at, not_after as f64);
    }
    if let Some(rl) = &r.rate_limit {
        #[allow(clippy::cast_precision_loss)] // quotas stay far below 2^53
        {
            emit(&RL_LIMIT, at, rl.limit as f64);
            emit(&RL_REMAINING, at, rl.remaining as f64);
            if let Some(w) = rl.window_seconds {
                emit(&RL_WINDOW, at, w as f64);
            }
        }
        if let Some(source) = rl.source.as_deref().filter(|s| valid_source(s)) {
            emit(&RL_SOURCE, [ep, source, ""], 1.0);
        }
    }
    for (i, e) in r.endpoints.iter().enumerate() {
        // One series per endpoint: if the chain named one twice, its latest answer stands,
        // as it does when the probe records the chain.
        if r.endpoints[i + 1..]
            .iter()
            .any(|l| l.endpoint == e.endpoint)
        {
            continue;
        }
        emit(
            &ENDPOINT_SUCCESS,
            [e.endpoint.as_str(), "", ""],
            if e.ok() { 1.0 } else { 0.0 },
        );
    }
}

/// The agent's own series (build, config reload), through the `prometheus` crate's model.
struct AgentCollector {
    reload: Arc<ReloadStatus>,
    descs: Vec<Desc>,
}

/// The crate's descriptor of a family; it validates the metric and label names.
fn desc(spec: &Spec) -> Desc {
    Desc::new(
        spec.name.to_owned(),
        help(spec),
        spec.labels.iter().map(|&l| l.to_owned()).collect(),
        HashMap::new(),
    )
    .expect("metric specs are valid (tested)")
}

impl AgentCollector {
    fn new(reload: Arc<ReloadStatus>) -> Self {
        let descs = SPECS
            .iter()
            .filter(|s| !per_target(s))
            .map(|s| desc(s))
            .collect();
        AgentCollector { reload, descs }
    }
}

/// Builds `prometheus` crate families, each created by its first series.
struct Families(Vec<Option<MetricFamily>>);

impl Families {
    fn new() -> Self {
        Families(SPECS.iter().map(|_| None).collect())
    }

    /// The families that have series, in [`SPECS`] order.
    fn into_vec(self) -> Vec<MetricFamily> {
        self.0.into_iter().flatten().collect()
    }

    fn add(&mut self, spec: &Spec, values: &[&str], value: f64) {
        debug_assert_eq!(spec.labels.len(), values.len(), "{}", spec.name);
        let labels = spec
            .labels
            .iter()
            .zip(values)
            .map(|(&name, &value)| {
                let mut lp = LabelPair::default();
                lp.set_name(name.to_owned());
                lp.set_value(value.to_owned());
                lp
            })
            .collect();
        let mut m = Metric::from_label(labels);
        if spec.kind == MetricType::COUNTER {
            let mut c = Counter::default();
            c.set_value(value);
            m.set_counter(c);
        } else {
            let mut g = Gauge::default();
            g.set_value(value);
            m.set_gauge(g);
        }
        self.0[spec.slot]
            .get_or_insert_with(|| {
                let mut mf = MetricFamily::default();
                mf.set_name(spec.name.to_owned());
                mf.set_help(help(spec));
                mf.set_field_type(spec.kind);
                mf
            })
            .mut_metric()
            .push(m);
    }

    fn agent(&mut self, reload: &ReloadStatus) {
        self.add(&BUILD_INFO, &build_labels(), 1.0);
        self.add(&RELOAD_OK, &[], if reload.successful() { 1.0 } else { 0.0 });
        self.add(&RELOAD_TS, &[], reload.last_success_seconds());
    }
}

impl Collector for AgentCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut f = Families::new();
        f.agent(&self.reload);
        f.into_vec()
    }
}

/// Renders scrapes: the agent's own series through the `prometheus` crate's registry and text
/// encoder, then the per-target families, written directly from a store snapshot.
///
/// The per-target families are written by hand because they are where a scrape's cost is: with
/// 1 000 targets the crate's model allocates ~90 000 strings per scrape (an owned name and value
/// for every label of ~16 000 series), then sorts, encodes and frees them; see
/// docs/performance.md. The writer's output is byte for byte what the crate's registry and
/// encoder produce for the same series (a test compares the two on random stores): families
/// in name order, series in label-value order, the same escaping and number formatting.
pub(crate) struct Exposition {
    registry: Registry,
    store: Arc<Store>,
}

impl Exposition {
    pub(crate) fn new(store: Arc<Store>, reload: Arc<ReloadStatus>) -> Self {
        let registry = Registry::new();
        registry
            .register(Box::new(AgentCollector::new(reload)))
            .expect("the only collector of a fresh registry registers");
        registry
            .register(Box::new(super::process::ProcessCollector::new()))
            .expect("process_* names are distinct from the agent's");
        Exposition { registry, store }
    }

    /// Adds a collector the agent updates itself (the pod watch's gauge).
    pub(crate) fn register(&self, collector: Box<dyn Collector>) {
        self.registry
            .register(collector)
            .expect("the agent's collectors have distinct names");
    }

    /// The body of a scrape, in the text format 0.0.4.
    pub(crate) fn render(&self) -> String {
        let targets = self.store.snapshot();
        // About 110 bytes per series, up to 19 series per target (one more per mirror): one
        // allocation.
        let mut buf = String::with_capacity(8192 + targets.len() * 2048);
        // Encoding only fails on inconsistent families, which the specs rule out (tested).
        if let Err(e) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "Cannot encode metrics");
        }
        write_targets(&mut buf, &targets);
        buf
    }
}

/// One per-target series: the index of its target in the snapshot, the values of its labels
/// after `target` and `registry`, and its value.
struct Sample<'a> {
    target: usize,
    extra: Extra<'a>,
    value: f64,
}

/// Appends every per-target family with at least one series, in name order (after the
/// agent's own families, whose names all sort first), each series in label-value order.
/// `targets` is sorted by name, as [`Store::snapshot`] returns it.
fn write_targets(buf: &mut String, targets: &[TargetState]) {
    let mut families: Vec<Vec<Sample<'_>>> = SPECS.iter().map(|_| Vec::new()).collect();
    for (i, t) in targets.iter().enumerate() {
        target_samples(t, |spec, extra, value| {
            families[spec.slot].push(Sample {
                target: i,
                extra,
                value,
            });
        });
    }
    let mut order: Vec<&Spec> = SPECS.iter().copied().filter(|s| per_target(s)).collect();
    order.sort_unstable_by_key(|s| s.name);
    for spec in order {
        let samples = &mut families[spec.slot];
        if samples.is_empty() {
            continue;
        }
        // Targets come in name order already; within a target, order by the extra labels
        // (the phases of a probe run in phase order and the endpoints in the order asked,
        // not in label order).
        samples.sort_by(|a, b| (a.target, a.extra).cmp(&(b.target, b.extra)));
        buf.push_str("# HELP ");
        buf.push_str(spec.name);
        buf.push(' ');
        escape(buf, spec.help, false);
        if spec.cached {
            buf.push(' ');
            escape(buf, CACHED, false);
        }
        buf.push_str("\n# TYPE ");
        buf.push_str(spec.name);
        buf.push_str(if spec.kind == MetricType::COUNTER {
            " counter\n"
        } else {
            " gauge\n"
        });
        for s in samples.iter() {
            let t = &targets[s.target];
            buf.push_str(spec.name);
            let [e0, e1, e2] = s.extra;
            let values = [t.name.as_str(), t.registry.as_str(), e0, e1, e2];
            for (n, (&label, value)) in spec.labels.iter().zip(values).enumerate() {
                buf.push_str(if n == 0 { "{" } else { "," });
                buf.push_str(label);
                buf.push_str("=\"");
                escape(buf, value, true);
                buf.push('"');
            }
            buf.push_str("} ");
            // `Display`, as the crate's encoder formats values: shortest round-trip form,
            // no exponent, `NaN`.
            let _ = write!(buf, "{}", s.value);
            buf.push('\n');
        }
    }
}

/// Escapes as the text format requires: `\\` and newline always, `"` in label values.
fn escape(buf: &mut String, s: &str, label_value: bool) {
    let special = |c: char| c == '\\' || c == '\n' || (label_value && c == '"');
    if !s.contains(special) {
        buf.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => buf.push_str("\\\\"),
            '\n' => buf.push_str("\\n"),
            '"' if label_value => buf.push_str("\\\""),
            c => buf.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use rand::rngs::StdRng;
    use rand::{Rng as _, RngExt as _, SeedableRng as _};

    use super::*;
    use crate::agent::store::tests::report;
    use crate::agent::store::{Configured, ReloadStatus};
    use crate::outcome::{Failure, Reason};
    use crate::probe::{EndpointResult, PhaseTiming, RateLimit, TlsReport};

    fn scrape(reports: Vec<crate::probe::ProbeReport>, extra: &[(&str, &str)]) -> String {
        let store = Arc::new(Store::new());
        let mut configured: Vec<_> = reports
            .iter()
            .map(|r| (r.target.as_str(), r.registry.as_str()))
            .chain(extra.iter().copied())
            .map(|(name, registry)| Configured {
                name: name.to_owned(),
                registry: registry.to_owned(),
                interval: Duration::from_secs(900),
                task: 1,
            })
            .collect();
        configured.dedup_by(|a, b| a.name == b.name);
        store.configure(&configured);
        for r in reports {
            store.record(1, r);
        }
        let status = Arc::new(ReloadStatus::loaded_at(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        ));
        Exposition::new(store, status).render()
    }

    fn full_success() -> crate::probe::ProbeReport {
        let mut r = report("hub", "registry-1.docker.io", None);
        r.phases = vec![
            PhaseTiming {
                phase: Phase::Dns,
                duration: Duration::from_millis(5),
            },
            PhaseTiming {
                phase: Phase::Manifest,
                duration: Duration::from_millis(40),
            },
        ];
        r.tls = Some(TlsReport {
            version: Some("TLSv1.3"),
            earliest_not_after: Some(1_800_000_000),
            ..TlsReport::default()
        });
        r.rate_limit = Some(RateLimit {
            limit: 100,
            remaining: 76,
            window_seconds: Some(21600),
            source: Some("203.0.113.7".into()),
        });
        r.endpoints = vec![asked("registry-1.docker.io", true, None)];
        r
    }

    fn asked(endpoint: &str, upstream: bool, failure: Option<Failure>) -> EndpointResult {
        EndpointResult {
            endpoint: endpoint.to_owned(),
            upstream,
            failure,
        }
    }

    fn refused() -> Failure {
        Failure::new(Phase::Connect, Reason::ConnectRefused, "refused")
    }

    fn series<'a>(text: &'a str, target: &str) -> Vec<&'a str> {
        let needle = format!("target=\"{target}\"");
        text.lines()
            .filter(|l| !l.starts_with('#') && l.contains(&needle))
            .collect()
    }

    #[test]
    fn success_renders_every_series_within_budget() {
        let text = scrape(vec![full_success()], &[]);
        let l = "target=\"hub\",registry=\"registry-1.docker.io\"";
        let le = format!("{l},endpoint=\"registry-1.docker.io\"");
        for want in [
            format!("pullprobe_probe_success{{{le}}} 1"),
            format!("pullprobe_probe_result{{{le},phase=\"none\",reason=\"ok\"}} 1"),
            format!("pullprobe_probe_duration_seconds{{{le}}} 0.25"),
            format!("pullprobe_phase_duration_seconds{{{le},phase=\"dns\"}} 0.005"),
            format!("pullprobe_phase_duration_seconds{{{le},phase=\"manifest\"}} 0.04"),
            format!("pullprobe_probes_total{{{l}}} 1"),
            format!("pullprobe_probe_failures_total{{{l}}} 0"),
            format!("pullprobe_probe_consecutive_failures{{{l}}} 0"),
            format!("pullprobe_last_probe_timestamp_seconds{{{l}}} 1700000000"),
            format!("pullprobe_tls_cert_expiry_timestamp_seconds{{{le}}} 1800000000"),
            format!("pullprobe_ratelimit_limit{{{le}}} 100"),
            format!("pullprobe_ratelimit_remaining{{{le}}} 76"),
            format!("pullprobe_ratelimit_window_seconds{{{le}}} 21600"),
            format!("pullprobe_ratelimit_source_info{{{le},source=\"203.0.113.7\"}} 1"),
            format!("pullprobe_probe_interval_seconds{{{l}}} 900"),
            format!("pullprobe_endpoint_success{{{le}}} 1"),
            "pullprobe_config_last_reload_successful 1".to_owned(),
            "pullprobe_config_last_reload_success_timestamp_seconds 1700000000".to_owned(),
            "# TYPE pullprobe_probes_total counter".to_owned(),
            "# TYPE pullprobe_probe_success gauge".to_owned(),
        ] {
            assert!(
                text.lines().any(|line| line == want),
                "missing {want}\n{text}"
            );
        }
        assert!(text.contains("pullprobe_build_info{version=\""));
        assert!(text.contains("# HELP pullprobe_probe_success Whether the last probe"));
        assert!(text.contains("not at scrape time"));
        // 13 series, one per phase that ran and one per endpoint asked: at most 19 per target
        // with all five phases and no mirror, one more per mirror.
        assert_eq!(series(&text, "hub").len(), 13 + 2 + 1);
    }

    #[test]
    fn failure_has_one_result_series_and_no_optional_series() {
        let fail = Failure::new(
            Phase::Connect,
            Reason::ConnectRefused,
            "connection refused \"quoted\" secret-free text",
        );
        let mut r = report("private", "127.0.0.1:1", Some(fail.clone()));
        r.endpoints = vec![asked("127.0.0.1:1", true, Some(fail))];
        let text = scrape(vec![r], &[("new", "ghcr.io")]);
        let l = "target=\"private\",registry=\"127.0.0.1:1\"";
        let le = format!("{l},endpoint=\"127.0.0.1:1\"");
        assert!(text.contains(&format!("pullprobe_probe_success{{{le}}} 0\n")));
        assert!(text.contains(&format!(
            "pullprobe_probe_result{{{le},phase=\"connect\",reason=\"connect_refused\"}} 1\n"
        )));
        assert!(text.contains(&format!("pullprobe_endpoint_success{{{le}}} 0\n")));
        assert!(text.contains(&format!("pullprobe_probe_failures_total{{{l}}} 1\n")));
        assert!(text.contains(&format!("pullprobe_probe_consecutive_failures{{{l}}} 1\n")));
        assert_eq!(text.matches("pullprobe_probe_result{").count(), 1);
        assert!(
            !text.contains("ratelimit"),
            "no rate-limit family at all: {text}"
        );
        assert!(!text.contains("tls_cert_expiry"));
        assert!(
            !text.contains("quoted"),
            "error text never reaches the scrape"
        );
        // A configured target that was not probed yet: interval and zero counters only.
        assert_eq!(
            series(&text, "new"),
            [
                "pullprobe_probe_consecutive_failures{target=\"new\",registry=\"ghcr.io\"} 0",
                "pullprobe_probe_failures_total{target=\"new\",registry=\"ghcr.io\"} 0",
                "pullprobe_probe_interval_seconds{target=\"new\",registry=\"ghcr.io\"} 900",
                "pullprobe_probes_total{target=\"new\",registry=\"ghcr.io\"} 0",
            ]
        );
    }

    /// A mirror refuses, the registry answers: the result families name the registry, and
    /// `pullprobe_endpoint_success` has the whole chain in the order asked.
    #[test]
    fn failing_mirror_with_working_registry() {
        let mut r = full_success();
        r.endpoints = vec![
            asked("mirror.internal:5000", false, Some(refused())),
            asked("cache.internal/v2/hub", false, Some(refused())),
            asked("registry-1.docker.io", true, None),
        ];
        let text = scrape(vec![r], &[]);
        let tr = "target=\"hub\",registry=\"registry-1.docker.io\"";
        let endpoints: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("pullprobe_endpoint_success{"))
            .collect();
        // Series in label-value order, as the crate's encoder sorts them.
        assert_eq!(
            endpoints,
            [
                format!("pullprobe_endpoint_success{{{tr},endpoint=\"cache.internal/v2/hub\"}} 0"),
                format!("pullprobe_endpoint_success{{{tr},endpoint=\"mirror.internal:5000\"}} 0"),
                format!("pullprobe_endpoint_success{{{tr},endpoint=\"registry-1.docker.io\"}} 1"),
            ]
        );
        for family in ["pullprobe_probe_success", "pullprobe_probe_result"] {
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&format!("{family}{{")))
                .collect();
            assert_eq!(lines.len(), 1, "{lines:?}");
            assert!(
                lines[0].contains(",endpoint=\"registry-1.docker.io\""),
                "{lines:?}"
            );
        }
    }

    /// When the answering endpoint changes between probes, the next scrape has only the new
    /// one's series: the old series vanish (Prometheus marks them stale) instead of lingering
    /// as a second answer for the target. The counters and the schedule keep one series.
    #[test]
    fn an_endpoint_change_replaces_the_series_of_the_last_result() {
        let store = Arc::new(Store::new());
        store.configure(&[Configured {
            name: "hub".into(),
            registry: "registry-1.docker.io".into(),
            interval: Duration::from_secs(900),
            task: 1,
        }]);
        let status = Arc::new(ReloadStatus::loaded_at(SystemTime::UNIX_EPOCH));
        let exposition = Exposition::new(store.clone(), status);

        let mut via_registry = full_success();
        via_registry.endpoints = vec![
            asked("mirror.internal:5000", false, Some(refused())),
            asked("registry-1.docker.io", true, None),
        ];
        store.record(1, via_registry);
        let before = exposition.render();
        assert!(before.contains("endpoint=\"mirror.internal:5000\"} 0\n"));
        assert!(before.contains("success{target=\"hub\",registry=\"registry-1.docker.io\",endpoint=\"registry-1.docker.io\"} 1\n"));

        let mut via_mirror = full_success();
        via_mirror.endpoint = "mirror.internal:5000".into();
        via_mirror.endpoints = vec![asked("mirror.internal:5000", false, None)];
        store.record(1, via_mirror);
        let after = exposition.render();
        let with_endpoint: Vec<&str> = after.lines().filter(|l| l.contains(",endpoint=")).collect();
        // success, result, duration, 2 phases, TLS, 3 rate-limit gauges, source, endpoint.
        assert_eq!(with_endpoint.len(), 11, "{after}");
        assert!(
            with_endpoint
                .iter()
                .all(|l| l.contains(",endpoint=\"mirror.internal:5000\"")),
            "only the mirror that answered: {with_endpoint:?}"
        );
        assert!(after.contains("pullprobe_endpoint_success{target=\"hub\",registry=\"registry-1.docker.io\",endpoint=\"mirror.internal:5000\"} 1\n"));
        for l in [
            "pullprobe_probes_total{target=\"hub\",registry=\"registry-1.docker.io\"} 2",
            "pullprobe_probe_failures_total{target=\"hub\",registry=\"registry-1.docker.io\"} 0",
            "pullprobe_last_probe_timestamp_seconds{target=\"hub\",registry=\"registry-1.docker.io\"} 1700000000",
            "pullprobe_probe_interval_seconds{target=\"hub\",registry=\"registry-1.docker.io\"} 900",
        ] {
            assert!(after.lines().any(|line| line == l), "missing {l}\n{after}");
        }
    }

    /// `pullprobe_probe_consecutive_failures` counts failed probes in a row across endpoint
    /// changes (one series per target, no `endpoint`), and a success resets it to 0.
    #[test]
    fn consecutive_failures_follow_the_run_across_endpoints() {
        let store = Arc::new(Store::new());
        store.configure(&[Configured {
            name: "hub".into(),
            registry: "registry-1.docker.io".into(),
            interval: Duration::from_secs(1800),
            task: 1,
        }]);
        let status = Arc::new(ReloadStatus::loaded_at(SystemTime::UNIX_EPOCH));
        let exposition = Exposition::new(store.clone(), status);
        let gauge = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| l.starts_with("pullprobe_probe_consecutive_failures"))
                .map(str::to_owned)
                .collect()
        };
        let tr = "{target=\"hub\",registry=\"registry-1.docker.io\"}";
        assert_eq!(
            gauge(&exposition.render()),
            [format!("pullprobe_probe_consecutive_failures{tr} 0")],
            "exported at 0 before the first probe"
        );
        let mut at_mirror = report("hub", "registry-1.docker.io", Some(refused()));
        at_mirror.endpoint = "mirror.internal:5000".into();
        store.record(1, at_mirror);
        store.record(1, report("hub", "registry-1.docker.io", Some(refused())));
        let text = exposition.render();
        assert!(text.contains("# TYPE pullprobe_probe_consecutive_failures gauge\n"));
        assert_eq!(
            gauge(&text),
            [format!("pullprobe_probe_consecutive_failures{tr} 2")]
        );
        store.record(1, report("hub", "registry-1.docker.io", None));
        assert_eq!(
            gauge(&exposition.render()),
            [format!("pullprobe_probe_consecutive_failures{tr} 0")]
        );
    }

    /// A chain that names an endpoint twice still gives one series (a duplicate would make
    /// the scrape invalid); its latest answer stands, as in the probe's own record.
    #[test]
    fn an_endpoint_asked_twice_has_one_series() {
        let mut r = full_success();
        r.endpoints = vec![
            asked("registry-1.docker.io", false, Some(refused())),
            asked("mirror.internal", false, Some(refused())),
            asked("registry-1.docker.io", true, None),
        ];
        let text = scrape(vec![r], &[]);
        assert_eq!(text.matches("pullprobe_endpoint_success{").count(), 2);
        assert!(text.contains("endpoint=\"registry-1.docker.io\"} 1\n"));
        assert!(!text.contains("endpoint=\"registry-1.docker.io\"} 0\n"));
    }

    #[test]
    fn source_label_accepts_only_addresses_and_short_tokens() {
        for ok in [
            "203.0.113.7",
            "2001:db8::1",
            "a1b2c3d4-e5f6",
            "user.name_1:x",
        ] {
            assert!(valid_source(ok), "{ok}");
        }
        for bad in ["", "a b", "<script>", "x\"y", &"a".repeat(65), "ünïcode"] {
            assert!(!valid_source(bad), "{bad}");
        }
        let mut r = full_success();
        r.rate_limit.as_mut().unwrap().source = Some("not a token!".into());
        r.rate_limit.as_mut().unwrap().window_seconds = None;
        let text = scrape(vec![r], &[]);
        assert!(!text.contains("source_info{"));
        assert!(!text.contains("window_seconds{"));
        assert!(text.contains("pullprobe_ratelimit_remaining{"));
    }

    /// All series through the crate's model, registry (sorting) and text encoder: the
    /// reference that [`Exposition::render`] must match byte for byte.
    struct Oracle {
        store: Arc<Store>,
        reload: Arc<ReloadStatus>,
        descs: Vec<Desc>,
    }

    impl Collector for Oracle {
        fn desc(&self) -> Vec<&Desc> {
            self.descs.iter().collect()
        }

        fn collect(&self) -> Vec<MetricFamily> {
            let mut f = Families::new();
            f.agent(&self.reload);
            for t in &self.store.snapshot() {
                target_samples(t, |spec, extra, value| {
                    let [e0, e1, e2] = extra;
                    let values = [t.name.as_str(), t.registry.as_str(), e0, e1, e2];
                    f.add(spec, &values[..spec.labels.len()], value);
                });
            }
            f.into_vec()
        }
    }

    fn oracle(store: Arc<Store>, reload: Arc<ReloadStatus>) -> String {
        let descs = SPECS.iter().map(|s| desc(s)).collect();
        let registry = Registry::new();
        registry
            .register(Box::new(Oracle {
                store,
                reload,
                descs,
            }))
            .unwrap();
        TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap()
    }

    /// A random report for `name`: any failure phase and reason, phases in any order, TLS and
    /// rate-limit data present or not, sources valid or not, odd durations.
    fn random_report(rng: &mut StdRng, name: &str, registry: &str) -> crate::probe::ProbeReport {
        let mut r = report(name, registry, None);
        if rng.random_bool(0.4) {
            let phase = Phase::ALL[rng.random_range(0..Phase::ALL.len())];
            let reason = Reason::ALL[rng.random_range(1..Reason::ALL.len())];
            r.failure = Some(Failure::new(phase, reason, "text \"never\" shown"));
        }
        let ran = rng.random_range(0..=Phase::TIMED.len());
        let mut phases: Vec<_> = Phase::TIMED[..ran]
            .iter()
            .map(|&phase| PhaseTiming {
                phase,
                duration: Duration::from_nanos(rng.random_range(0..20_000_000_000)),
            })
            .collect();
        phases.reverse();
        r.phases = phases;
        r.duration = Duration::from_nanos(rng.random_range(0..u64::from(u32::MAX)));
        r.started_at = SystemTime::UNIX_EPOCH + Duration::from_nanos(rng.next_u64() >> 4);
        if rng.random_bool(0.5) {
            r.tls = Some(TlsReport {
                version: Some("TLSv1.2"),
                earliest_not_after: rng.random_bool(0.9).then(|| rng.random_range(-1..1 << 40)),
                ..TlsReport::default()
            });
        }
        if rng.random_bool(0.5) {
            let sources = [
                "203.0.113.7",
                "2001:db8::1",
                "acct_1",
                "not a token!",
                "x\"y",
            ];
            r.rate_limit = Some(RateLimit {
                limit: rng.next_u64() >> rng.random_range(0..64),
                remaining: rng.random_range(0..1000),
                window_seconds: rng.random_bool(0.7).then(|| rng.random_range(0..100_000)),
                source: rng
                    .random_bool(0.8)
                    .then(|| sources[rng.random_range(0..sources.len())].to_owned()),
            });
        }
        // Endpoints: mirrors with paths, odd characters, the same one twice; the verdict's
        // endpoint one of them, or empty (no endpoint was planned).
        let pool = [
            registry,
            "mirror.internal:5000",
            "cache.example/v2/hub",
            "m\"q\\x",
            "é.example",
        ];
        r.endpoints = (0..rng.random_range(0..5))
            .map(|_| EndpointResult {
                endpoint: pool[rng.random_range(0..pool.len())].to_owned(),
                upstream: rng.random_bool(0.3),
                failure: rng.random_bool(0.5).then(refused),
            })
            .collect();
        r.endpoint = if rng.random_bool(0.1) {
            String::new()
        } else {
            pool[rng.random_range(0..pool.len())].to_owned()
        };
        r
    }

    #[test]
    fn writer_matches_the_crate_encoder_byte_for_byte() {
        let mut rng = StdRng::seed_from_u64(0x5eed);
        // Names sort in byte order, with escapes, non-ASCII and shared prefixes.
        let alphabet = ["a", "b", "B", "-", "_", "\"", "\\", "\n", "é", "1", " "];
        for round in 0..40 {
            let store = Arc::new(Store::new());
            let n = if round == 0 {
                0
            } else {
                rng.random_range(1..60)
            };
            let mut configured: Vec<Configured> = (0..n)
                .map(|_| {
                    let name: String = (0..rng.random_range(1..6))
                        .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                        .collect();
                    Configured {
                        registry: format!("registry-{}.example:{}", name.len(), round),
                        name,
                        interval: Duration::from_millis(rng.random_range(1..10_000_000)),
                        task: 1,
                    }
                })
                .collect();
            configured.sort_by(|a, b| a.name.cmp(&b.name));
            configured.dedup_by(|a, b| a.name == b.name);
            store.configure(&configured);
            for c in &configured {
                for _ in 0..rng.random_range(0..3) {
                    store.record(1, random_report(&mut rng, &c.name, &c.registry));
                }
            }
            let reload = Arc::new(ReloadStatus::loaded_at(
                SystemTime::UNIX_EPOCH + Duration::from_millis(rng.next_u64() >> 24),
            ));
            if rng.random_bool(0.3) {
                reload.failed();
            }
            let want = oracle(store.clone(), reload.clone());
            let got = Exposition::new(store, reload).render();
            // The process_* families (measured at each read) come from their own collector,
            // through the crate's encoder, first in name order.
            let start = got.find("# HELP pullprobe_").expect("pullprobe families");
            assert!(
                got[..start].lines().all(|l| l.contains("process_")),
                "{got}"
            );
            assert_eq!(&got[start..], want, "round {round}");
        }
    }

    #[test]
    fn every_spec_knows_its_slot_and_has_valid_names() {
        for (i, s) in SPECS.iter().enumerate() {
            assert_eq!(s.slot, i, "{}", s.name);
            desc(s); // panics on an invalid metric or label name
        }
    }

    #[test]
    fn config_values_are_escaped() {
        let text = scrape(vec![report("we\"ird\\name", "r", None)], &[]);
        assert!(text.contains(r#"target="we\"ird\\name""#), "{text}");
    }
}
