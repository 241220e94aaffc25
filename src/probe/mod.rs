//! The probe engine: walks the image-pull path for one target under one deadline.
//!
//! One file per phase, as blackbox_exporter's `prober/` does: [`dns`], [`tcp`], [`tls`], then
//! [`registry`] for `auth` and `manifest` (with [`challenge`], [`token`], [`ratelimit`]). This
//! file is the only place that orders the phases and applies the deadline, so the phase of any
//! failure — including the deadline running out — is known from where it happened.

pub mod challenge;
mod dns;
mod http;
pub mod ratelimit;
mod registry;
mod report;
mod tcp;
pub(crate) mod tls;
mod token;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use url::Url;

pub(crate) use http::Io;
/// The engine's read limits (tests probe both sides of them).
pub use http::{MAX_HEAD_BYTES, MAX_REDIRECTS};
pub use report::{PhaseTiming, ProbeReport, RateLimit, TlsReport};
pub(crate) use tls::Trust;
pub use token::MAX_TOKEN_BODY;

use crate::config::{Config, Target};
use crate::outcome::{Failure, Phase, Reason};

/// A failure inside a phase, before the orchestrator attaches the phase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StepError {
    pub reason: Reason,
    pub message: String,
}

impl StepError {
    pub(crate) fn new(reason: Reason, message: impl Into<String>) -> Self {
        StepError {
            reason,
            message: message.into(),
        }
    }

    fn at(self, phase: Phase) -> Failure {
        Failure::new(phase, self.reason, self.message)
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
}

/// Times the phases as they are entered.
#[derive(Default)]
struct Recorder {
    current: Option<(Phase, Instant)>,
    done: Vec<PhaseTiming>,
}

impl Recorder {
    fn enter(&mut self, phase: Phase) {
        self.finish();
        self.current = Some((phase, Instant::now()));
    }

    fn finish(&mut self) {
        if let Some((phase, start)) = self.current.take() {
            self.done.push(PhaseTiming {
                phase,
                duration: start.elapsed(),
            });
        }
    }
}

/// What the walk learned so far; kept when the deadline cuts it short.
#[derive(Default)]
struct Walk {
    rec: Recorder,
    report_tls: Option<TlsReport>,
    address: Option<std::net::SocketAddr>,
    manifest: registry::ManifestOutcome,
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
            }),
        }
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
            Err(_) => Some(self.deadline_failure(walk.rec.current.map(|c| c.0))),
        };
        walk.rec.finish();
        let report = ProbeReport {
            target: target.name.clone(),
            image: target.image.to_string(),
            registry: target.image.api_authority(),
            failure,
            duration: start.elapsed(),
            started_at,
            phases: walk.rec.done,
            address: walk.address,
            tls: walk.report_tls,
            digest: walk.manifest.digest,
            rate_limit: walk.manifest.rate_limit,
        };
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
                format!("no DNS answer within the probe timeout ({limit})"),
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

    async fn walk(&self, target: &Target, deadline: Instant, w: &mut Walk) -> Result<(), Failure> {
        let image = &target.image;
        let host = image.api_host();
        let scheme = if target.plain_http { "http" } else { "https" };
        let port = image
            .port()
            .unwrap_or(if target.plain_http { 80 } else { 443 });
        let base = Url::parse(&format!("{scheme}://{}/", image.api_authority())).map_err(|e| {
            Failure::new(
                Phase::Dns,
                Reason::DnsError,
                format!("{} is not a usable host: {e}", image.api_authority()),
            )
        })?;

        let addrs = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => {
                w.rec.enter(Phase::Dns);
                self.inner
                    .dns
                    .resolve(host)
                    .await
                    .map_err(|e| e.at(Phase::Dns))?
            }
        };

        w.rec.enter(Phase::Connect);
        let addrs = tcp::sort_addresses(addrs, port).await;
        let (stream, addr) = tcp::connect(&addrs, port, deadline)
            .await
            .map_err(|e| e.at(Phase::Connect))?;
        w.address = Some(addr);

        let io: Box<dyn Io> = if target.plain_http {
            Box::new(stream)
        } else {
            w.rec.enter(Phase::Tls);
            let trust = tls::trust_for(&target.tls)
                .map_err(|e| Failure::new(Phase::Tls, Reason::TlsUntrusted, e))?;
            match trust.handshake(stream, host).await {
                Ok((tls, report)) => {
                    w.report_tls = Some(report);
                    Box::new(tls)
                }
                Err((e, report)) => {
                    w.report_tls = Some(report);
                    return Err(e.at(Phase::Tls));
                }
            }
        };

        w.rec.enter(Phase::Auth);
        let mut session = http::Session::new(&self.inner.dns, &target.tls, deadline);
        session
            .attach(&base, io)
            .await
            .map_err(|e| e.at(Phase::Auth))?;
        let auth = registry::authenticate(&mut session, &base, target, &self.inner.tokens)
            .await
            .map_err(|e| e.at(Phase::Auth))?;

        w.rec.enter(Phase::Manifest);
        registry::head_manifest(
            &mut session,
            &base,
            target,
            auth,
            &self.inner.tokens,
            &mut w.manifest,
        )
        .await
        .map_err(|e| e.at(Phase::Manifest))
    }
}
