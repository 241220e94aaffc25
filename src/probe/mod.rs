//! The probe engine: walks the image-pull path for one target under one deadline.
//!
//! One file per phase, as blackbox_exporter's `prober/` does: [`dns`], [`tcp`], [`tls`], then
//! [`registry`] for `manifest` and `auth` (with [`challenge`], [`token`], [`ratelimit`]), which
//! resolves the reference the way containerd's resolver does. This file chooses the transport
//! as containerd would (including its loopback defaults, [`fallback`]), runs one attempt per
//! credential kubelet would try, and applies the deadline, so the phase of any failure —
//! including the deadline running out — is known from where it happened.

pub mod challenge;
mod dial;
mod dns;
mod endpoint;
mod fallback;
mod http;
pub(crate) mod proxy;
pub mod ratelimit;
mod registry;
mod report;
mod tcp;
pub(crate) mod tls;
mod token;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

pub(crate) use fallback::is_localhost;
/// The engine's read limits (tests probe both sides of them).
pub use http::{MAX_HEAD_BYTES, MAX_REDIRECTS};
pub use report::{EndpointResult, PhaseTiming, ProbeReport, RateLimit, TlsReport};
pub(crate) use tls::Trust;
pub use token::MAX_TOKEN_BODY;

use crate::config::{Config, NodeSettings, Target};
use crate::credentials::{Credential, Keyring, KeyringMatch};
use crate::node::kubelet::KubeletKeyring;
use crate::node::plugins::{PluginFailureReason, PluginOutcome};
use crate::node::{Endpoint, EndpointPlan};
use crate::outcome::{DnsResolver, Failure, Phase, Reason};
use crate::platform::Platform;

/// An error as a person reads it: its sentence without Rust's "(os error 111)" (also inside
/// a library error that quotes the I/O error it wraps).
pub fn os_text(e: &dyn std::fmt::Display) -> String {
    let mut text = e.to_string();
    while let Some(i) = text.find(" (os error ") {
        match text[i..].find(')') {
            Some(j) => text.replace_range(i..i + j + 1, ""),
            None => break,
        }
    }
    text
}

/// A failure inside a phase, before the orchestrator attaches the phase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StepError {
    pub reason: Reason,
    pub message: String,
    /// Set by the `dns` phase: the resolver that gave the failure ([`Failure::resolver`]).
    pub resolver: Option<Box<DnsResolver>>,
}

impl StepError {
    pub(crate) fn new(reason: Reason, message: impl Into<String>) -> Self {
        StepError {
            reason,
            message: message.into(),
            resolver: None,
        }
    }

    fn at(self, phase: Phase) -> Failure {
        Failure::new(phase, self.reason, self.message).with_resolver(self.resolver)
    }
}

/// Probes targets. Cheap to clone; clones share the resolver and the token cache.
#[derive(Clone)]
pub struct Prober {
    inner: Arc<Inner>,
}

struct Inner {
    dns: dns::Dns,
    timeout: Duration,
    tokens: Arc<token::TokenCache>,
    /// The node's platform, for targets with `check_platform`.
    platform: Platform,
    /// Where the node's pull configuration is read from.
    node: NodeSettings,
}

/// Times the phases as they are entered. A phase entered again (`manifest` after `auth`)
/// adds to its time; the list comes out in phase order.
#[derive(Default)]
pub(crate) struct Recorder {
    current: Option<(Phase, Instant)>,
    done: Vec<PhaseTiming>,
}

impl Recorder {
    pub(crate) fn enter(&mut self, phase: Phase) {
        self.finish();
        self.current = Some((phase, Instant::now()));
    }

    fn finish(&mut self) {
        if let Some((phase, start)) = self.current.take() {
            match self.done.iter_mut().find(|p| p.phase == phase) {
                Some(p) => p.duration += start.elapsed(),
                None => self.done.push(PhaseTiming {
                    phase,
                    duration: start.elapsed(),
                }),
            }
        }
    }

    fn into_phases(mut self) -> Vec<PhaseTiming> {
        self.finish();
        self.done.sort_by_key(|p| p.phase);
        self.done
    }
}

/// What the walk learned so far; kept when the deadline cuts it short.
#[derive(Default)]
struct Walk {
    rec: Recorder,
    report_tls: Option<TlsReport>,
    address: Option<std::net::SocketAddr>,
    /// Each endpoint of the last attempt: its label, TLS report and address.
    asked: Vec<(String, Option<TlsReport>, Option<std::net::SocketAddr>)>,
    manifest: registry::ManifestOutcome,
    /// The labels of the planned endpoints, in order.
    endpoints: Vec<String>,
    /// The endpoints asked so far and how they answered.
    chain: Vec<EndpointResult>,
    /// The endpoint being asked when the walk stopped, if it had not answered yet.
    current_endpoint: Option<usize>,
    /// Credential-provider plugins are running.
    running_plugins: bool,
    warnings: Vec<String>,
}

impl Walk {
    /// The endpoint being asked when the deadline ran out failed with `f`.
    fn deadline_hit(&mut self, f: &Failure) {
        let Some(label) = self
            .current_endpoint
            .and_then(|i| self.endpoints.get(i))
            .cloned()
        else {
            return;
        };
        let entry = EndpointResult {
            upstream: self.endpoints.last() == Some(&label),
            endpoint: label.clone(),
            failure: Some(f.clone()),
        };
        match self.chain.iter_mut().find(|e| e.endpoint == label) {
            Some(e) => *e = entry,
            None => self.chain.push(entry),
        }
    }

    /// The `endpoint` label: the endpoint that answered, or the one whose failure is the
    /// verdict (the last one asked when no entry matches it).
    fn verdict_endpoint(&self, failure: Option<&Failure>) -> String {
        let found = match failure {
            None => self.chain.iter().find(|e| e.ok()),
            Some(f) => self
                .chain
                .iter()
                .find(|e| {
                    e.failure.as_ref().is_some_and(|g| {
                        g.phase == f.phase
                            && g.reason == f.reason
                            && f.message.starts_with(&g.message)
                    })
                })
                .or_else(|| self.chain.last()),
        };
        found
            .map(|e| e.endpoint.clone())
            .or_else(|| self.endpoints.first().cloned())
            .unwrap_or_default()
    }

    /// Takes the TLS report and address of the endpoint that decided the attempt: the one
    /// that answered, else the last one asked.
    fn note_answering(&mut self, eps: &[endpoint::EndpointRun<'_>]) {
        let decided = self
            .chain
            .iter()
            .position(EndpointResult::ok)
            .or_else(|| self.chain.len().checked_sub(1));
        let Some(label) = decided.map(|i| self.chain[i].endpoint.clone()) else {
            return;
        };
        if let Some(ep) = eps.iter().find(|e| e.ep.label() == label) {
            self.report_tls = ep.tls.clone();
            self.address = ep.address;
        }
        self.asked = eps
            .iter()
            .map(|e| (e.ep.label(), e.tls.clone(), e.address))
            .collect();
    }

    /// The TLS report and address become those of `endpoint`, the one whose answer is the
    /// verdict. When every endpoint fails, containerd's resolver returns the first error
    /// (`dockerResolver.Resolve`'s `firstErr`), which need not be the last endpoint asked.
    fn take_facts_of(&mut self, endpoint: &str) {
        if let Some((_, tls, address)) = self.asked.iter().find(|(l, _, _)| l == endpoint) {
            self.report_tls = tls.clone();
            self.address = *address;
        }
    }
}

impl Prober {
    /// A prober for `config`'s DNS settings and timeout.
    pub fn from_config(config: &Config) -> Self {
        Self::with_tokens(config, Arc::default())
    }

    /// A prober for a new config that keeps this one's cached registry tokens.
    pub fn reconfigure(&self, config: &Config) -> Self {
        Self::with_tokens(config, self.inner.tokens.clone())
    }

    fn with_tokens(config: &Config, tokens: Arc<token::TokenCache>) -> Self {
        Prober {
            inner: Arc::new(Inner {
                dns: dns::Dns::new(&config.dns),
                timeout: config.timeout,
                tokens,
                platform: Platform::host(),
                node: config.node.clone(),
            }),
        }
    }

    /// The same prober checking image indexes against `platform` instead of this machine's.
    pub fn with_platform(config: &Config, platform: Platform) -> Self {
        Prober {
            inner: Arc::new(Inner {
                dns: dns::Dns::new(&config.dns),
                timeout: config.timeout,
                tokens: Arc::default(),
                platform,
                node: config.node.clone(),
            }),
        }
    }

    /// The platform image indexes are checked against.
    pub fn platform(&self) -> &Platform {
        &self.inner.platform
    }

    /// The deadline of one probe.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Probes `target` once. Never fails: every outcome is a report. Bounded by the config's
    /// timeout; dropping the future cancels the probe and closes its connections.
    pub async fn probe(&self, target: &Target) -> ProbeReport {
        let started_at = SystemTime::now();
        let start = Instant::now();
        let deadline = start + self.inner.timeout;
        let mut walk = Walk::default();
        let result =
            tokio::time::timeout_at(deadline, self.walk(target, deadline, &mut walk)).await;
        let failure = match result {
            Ok(Ok(())) => None,
            Ok(Err(f)) => Some(f),
            Err(_) if walk.running_plugins => Some(Failure::new(
                Phase::Auth,
                Reason::Timeout,
                format!(
                    "the node's credential provider plugins did not answer within the probe timeout ({}); kubelet waits up to a minute for each",
                    humantime::format_duration(self.inner.timeout)
                ),
            )),
            Err(_) => {
                let f = self.deadline_failure(walk.rec.current.map(|c| c.0));
                walk.deadline_hit(&f);
                Some(f)
            }
        };
        let endpoint = walk.verdict_endpoint(failure.as_ref());
        walk.take_facts_of(&endpoint);
        let report = ProbeReport {
            target: target.name.clone(),
            image: target.image.to_string(),
            registry: target.image.api_authority(),
            failure,
            duration: start.elapsed(),
            started_at,
            phases: walk.rec.into_phases(),
            address: walk.address,
            tls: walk.report_tls,
            digest: walk.manifest.digest,
            rate_limit: walk.manifest.rate_limit,
            endpoint,
            endpoints: walk.chain,
            warnings: walk.warnings,
        };
        // Every message of every probe the test suite runs is checked: none may show a
        // library's rendering of a value.
        #[cfg(debug_assertions)]
        for m in report
            .failure
            .iter()
            .map(|f| f.message.as_str())
            .chain(
                report
                    .endpoints
                    .iter()
                    .filter_map(|e| e.failure.as_ref())
                    .map(|f| f.message.as_str()),
            )
            .chain(report.warnings.iter().map(String::as_str))
        {
            debug_assert!(
                crate::outcome::library_text(m).is_none(),
                "a message shows library text: {m}"
            );
        }
        match &report.failure {
            None => {
                tracing::debug!(target = %report.target, registry = %report.registry, duration = ?report.duration, "Probe succeeded")
            }
            Some(f) => tracing::debug!(
                target = %report.target, registry = %report.registry, phase = f.phase.as_str(),
                reason = f.reason.as_str(), message = %f.message, "Probe failed"
            ),
        }
        report
    }

    fn deadline_failure(&self, phase: Option<Phase>) -> Failure {
        let limit = humantime::format_duration(self.inner.timeout);
        match phase.unwrap_or(Phase::Dns) {
            Phase::Dns => Failure::new(
                Phase::Dns,
                Reason::DnsTimeout,
                format!(
                    "no DNS answer within the probe timeout ({limit}); {}",
                    self.inner.dns.configured()
                ),
            ),
            Phase::Connect => Failure::new(
                Phase::Connect,
                Reason::ConnectTimeout,
                format!(
                    "the TCP connection was not established within the probe timeout ({limit})"
                ),
            ),
            p => Failure::new(
                p,
                Reason::Timeout,
                format!("the {p} phase did not finish within the probe timeout ({limit})"),
            ),
        }
    }

    /// The endpoints a pull of `target` asks, in order, from the node's configuration.
    fn plan(&self, target: &Target) -> EndpointPlan {
        crate::node::plan(&self.inner.node, target)
    }

    async fn walk(&self, target: &Target, deadline: Instant, w: &mut Walk) -> Result<(), Failure> {
        let image = &target.image;
        let plan = self.plan(target);
        w.warnings = plan.warnings;
        // A file the runtime cannot use (containerd's `ConfigureHosts` fails, CRI-O's
        // registries.conf or certs.d): the pull fails on the node, before any registry is asked.
        if let Some(e) = plan.error {
            return Err(Failure::new(Phase::Node, Reason::NodeConfigInvalid, e));
        }
        w.endpoints = plan.endpoints.iter().map(Endpoint::label).collect();
        let flow = plan.flow;
        let mut eps = Vec::with_capacity(plan.endpoints.len());
        for ep in plan.endpoints {
            eps.push(endpoint::EndpointRun::new(ep, image.registry())?);
        }

        // The credentials kubelet would pass: the target's docker config (the pod's pull
        // secret), the node's config.json, the credential-provider plugins' answers.
        if let Some(p) = &self.inner.node.proxy {
            w.warnings
                .extend(p.warnings().iter().map(ToString::to_string));
        }
        let node_config = self.inner.node.docker_config_search().find();
        w.warnings.extend(node_config.warnings());
        let plugins = match &self.inner.node.plugins {
            Some(p) => {
                w.warnings.extend(
                    p.warnings()
                        .iter()
                        .map(|i| format!("{}: {}", i.key, i.problem)),
                );
                w.rec.enter(Phase::Auth);
                w.running_plugins = true;
                let outcome = p.provide(image, deadline).await;
                w.running_plugins = false;
                // A plugin still running at the deadline leaves no time for the pull.
                if let Some(t) = outcome
                    .failures
                    .iter()
                    .find(|f| f.reason == PluginFailureReason::Timeout)
                    && Instant::now() >= deadline
                {
                    return Err(Failure::new(Phase::Auth, Reason::Timeout, t.to_string()));
                }
                w.warnings.extend(outcome.unmatched_notes(image));
                Some(outcome)
            }
            None => None,
        };
        let plugin_keyring = plugins.as_ref().map(PluginOutcome::keyring);
        let secrets: Vec<Keyring> = target
            .credentials
            .iter()
            .map(|c| c.keyring.clone())
            .collect();
        let keyring =
            KubeletKeyring::for_pod(&secrets, node_config.keyring(), plugin_keyring.as_ref());
        let sources = CredentialSources {
            target: target.credentials.as_deref(),
            node: node_config.found.as_ref().map(|(p, k)| (p.as_path(), k)),
            plugins: plugins.as_ref(),
        };

        // kubelet tries every matching credential in turn (and pulls anonymously when none
        // matches); the pull succeeds with the first that works.
        let matches: Vec<KeyringMatch<'_>> = keyring.lookup_all(image);
        let platform = target.check_platform.then_some(&self.inner.platform);
        let mut failures: Vec<(Option<&KeyringMatch<'_>>, Failure)> = Vec::new();
        let attempts: Vec<Option<&KeyringMatch<'_>>> = if matches.is_empty() {
            vec![None]
        } else {
            matches.iter().map(Some).collect()
        };
        for m in attempts {
            // containerd's CRI `ParseAuth`: an empty username means an anonymous pull.
            let credential: Option<&Credential> =
                m.map(|m| m.credential).filter(|c| !c.is_anonymous());
            let mut out = registry::ManifestOutcome::default();
            w.chain.clear();
            let result = registry::Attempt::new(
                &mut eps,
                &self.inner.dns,
                self.inner.node.proxy.as_deref(),
                deadline,
                target,
                &self.inner.tokens,
                credential,
                w,
                platform,
            )
            .with_flow(flow)
            .resolve(&mut out)
            .await;
            w.manifest = out;
            w.note_answering(&eps);
            match result {
                Ok(()) => {
                    if let Some(p) = &plugins {
                        // kubelet goes on without a failed plugin's credentials; the pull
                        // worked anyway.
                        w.warnings
                            .extend(p.failures.iter().map(ToString::to_string));
                    }
                    return Ok(());
                }
                Err(f) => failures.push((m, f)),
            }
        }
        Err(explain_credentials(image, &sources, &matches, failures))
    }
}

fn is_auth_reason(r: Reason) -> bool {
    matches!(r, Reason::AuthRequired | Reason::AuthFailed)
}

/// Where a probe's credentials come from, for messages.
struct CredentialSources<'a> {
    /// The target's `docker_config` (the pod's pull secret).
    target: Option<&'a crate::config::CredentialsFile>,
    /// The node's docker config kubelet found.
    node: Option<(&'a std::path::Path, &'a Keyring)>,
    plugins: Option<&'a PluginOutcome>,
}

/// The failure of a target whose every attempt failed: the attempt that got furthest, its
/// message saying which credentials were used (the file or plugin and key, or the keys
/// present when none matched) and what the other attempts found. A credential-provider
/// plugin that failed is the failure when the pull then failed for want of credentials.
fn explain_credentials(
    image: &crate::reference::ImageRef,
    sources: &CredentialSources<'_>,
    matches: &[KeyringMatch<'_>],
    failures: Vec<(Option<&KeyringMatch<'_>>, Failure)>,
) -> Failure {
    let rank = |f: &Failure| (f.phase, !is_auth_reason(f.reason));
    let best = failures
        .iter()
        .enumerate()
        .max_by(|(ia, (_, a)), (ib, (_, b))| rank(a).cmp(&rank(b)).then(ib.cmp(ia)))
        .map_or(0, |(i, _)| i);
    let mut failure = failures[best].1.clone();
    if !is_auth_reason(failure.reason) {
        return failure;
    }
    if let Some(p) = sources.plugins
        && let Some(pf) = p.failures.first()
    {
        return Failure::new(
            Phase::Auth,
            Reason::AuthFailed,
            format!(
                "{pf}; without its credentials the registry refused the pull: {}",
                failure.message
            ),
        );
    }
    if matches.is_empty() {
        let mut places: Vec<String> = Vec::new();
        let mut keys: Vec<String> = Vec::new();
        if let Some(file) = sources.target {
            places.push(file.path.display().to_string());
            keys.extend(file.keyring.keys().map(str::to_owned));
        }
        if let Some((path, k)) = sources.node {
            places.push(format!("the node's {}", path.display()));
            keys.extend(k.keys().map(str::to_owned));
        }
        if let Some(p) = sources.plugins {
            let names: Vec<&str> = p.answers.iter().map(|a| a.provider.as_str()).collect();
            if !names.is_empty() {
                places.push(format!("credential provider plugin {}", names.join(", ")));
            }
        }
        if places.is_empty() {
            return failure;
        }
        let host = image.registry();
        if keys.is_empty() {
            failure.message += &format!(" — {} has no credentials", places.join(", "));
        } else {
            failure.message += &format!(
                " — no key of {} matches {host}/{} the way kubelet matches (keys: {})",
                places.join(", "),
                image.repository(),
                keys.join(", ")
            );
        }
        return failure;
    }
    let (used, _) = &failures[best];
    if let Some(m) = used {
        failure.message += &format!(" — {}", m.origin());
        if let Some(note) = crate::credentials::ignored_note(m) {
            failure.message += &format!("; {note}");
        }
    }
    for (i, (m, f)) in failures.iter().enumerate() {
        if i == best {
            continue;
        }
        if let Some(m) = m {
            let same_source = used.is_some_and(|u| u.source.to_string() == m.source.to_string());
            let of = if same_source {
                String::new()
            } else {
                format!(" of {}", m.source)
            };
            failure.message += &format!("; key {:?}{of} also failed ({})", m.key, f.reason);
        }
    }
    failure
}
