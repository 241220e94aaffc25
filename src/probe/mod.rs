//! The probe engine: walks the image-pull path for one target under one deadline.
//!
//! One file per phase, as blackbox_exporter's `prober/` does: [`dns`], [`tcp`], [`tls`], then
//! [`registry`] for `manifest` and `auth` (with [`challenge`], [`token`], [`ratelimit`]), which
//! resolves the reference the way containerd's resolver does. This file chooses the transport
//! as containerd would (including its loopback defaults, [`fallback`]), runs one attempt per
//! credential kubelet would try, and applies the deadline, so the phase of any failure —
//! including the deadline running out — is known from where it happened.

pub mod challenge;
mod dns;
mod fallback;
mod http;
pub(crate) mod proxy;
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

use crate::config::{Config, Target, TlsSettings};
use crate::credentials::{Credential, KeyringMatch};
use crate::outcome::{Failure, Phase, Reason};
use crate::platform::Platform;
use fallback::LoopbackDefault;

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
    /// The node's platform, for targets with `check_platform`.
    platform: Platform,
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

/// The TLS settings of a loopback registry without hosts.toml: containerd skips verification.
fn loopback_tls() -> Arc<TlsSettings> {
    static SKIP: std::sync::OnceLock<Arc<TlsSettings>> = std::sync::OnceLock::new();
    SKIP.get_or_init(|| {
        Arc::new(TlsSettings {
            insecure_skip_verify: true,
            ..TlsSettings::default()
        })
    })
    .clone()
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
                platform: Platform::host(),
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
            Err(_) => Some(self.deadline_failure(walk.rec.current.map(|c| c.0))),
        };
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
        // A host the reference grammar accepts but the URL standard does not cannot be asked.
        let mut base = Url::parse(&format!("http://{}/", image.api_authority())).map_err(|_| {
            Failure::new(
                Phase::Dns,
                Reason::DnsError,
                format!("{} is not a usable host", image.api_authority()),
            )
        })?;
        // containerd's defaults for a loopback registry without hosts.toml, unless the target
        // says how to reach it (plain_http or a tls block).
        let loopback = if target.plain_http || target.tls.configured {
            None
        } else {
            fallback::loopback_default(host, image.port())
        };
        let mut plain = target.plain_http || loopback == Some(LoopbackDefault::Http);
        let tls_settings = match loopback {
            Some(LoopbackDefault::Https | LoopbackDefault::HttpsWithFallback) => loopback_tls(),
            _ => target.tls.clone(),
        };
        let port = image.port().unwrap_or(if plain { 80 } else { 443 });

        let addrs = match host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
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

        let io: Box<dyn Io> = if plain {
            Box::new(stream)
        } else {
            w.rec.enter(Phase::Tls);
            let trust = tls::trust_for(&tls_settings)
                .map_err(|e| Failure::new(Phase::Tls, Reason::TlsUntrusted, e))?;
            let (sniffed, first) = fallback::Sniff::new(stream);
            match trust.handshake(sniffed, host).await {
                Ok((tls, report)) => {
                    w.report_tls = Some(report);
                    Box::new(tls)
                }
                Err((_, _))
                    if loopback == Some(LoopbackDefault::HttpsWithFallback)
                        && fallback::answered_http(&first) =>
                {
                    // containerd's HTTP fallback: the server answered the ClientHello in HTTP.
                    plain = true;
                    w.rec.enter(Phase::Connect);
                    let (stream, addr) = tcp::connect(&addrs, port, deadline)
                        .await
                        .map_err(|e| e.at(Phase::Connect))?;
                    w.address = Some(addr);
                    Box::new(stream)
                }
                Err((e, report)) => {
                    w.report_tls = Some(report);
                    return Err(e.at(Phase::Tls));
                }
            }
        };

        if !plain {
            // http → https keeps a special scheme, which `set_scheme` always allows.
            let _ = base.set_scheme("https");
        }
        w.rec.enter(Phase::Manifest);
        let mut session = http::Session::new(&self.inner.dns, &tls_settings, deadline);
        session
            .attach(&base, io)
            .await
            .map_err(|e| e.at(Phase::Manifest))?;

        // kubelet tries every matching credential in turn (and pulls anonymously when none
        // matches); the pull succeeds with the first that works.
        let matches: Vec<KeyringMatch<'_>> = target
            .credentials
            .as_ref()
            .map(|c| c.keyring.lookup_all(image))
            .unwrap_or_default();
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
            let result = registry::Attempt::new(
                &mut session,
                base.clone(),
                target,
                &self.inner.tokens,
                credential,
                &mut w.rec,
                platform,
            )
            .resolve(&mut out)
            .await;
            w.manifest = out;
            match result {
                Ok(()) => return Ok(()),
                Err(f) => failures.push((m, f)),
            }
        }
        Err(explain_credentials(target, &matches, failures))
    }
}

fn is_auth_reason(r: Reason) -> bool {
    matches!(r, Reason::AuthRequired | Reason::AuthFailed)
}

/// The failure of a target whose every attempt failed: the attempt that got furthest, its
/// message saying which credentials were used (the docker config file and key, or the keys
/// present when none matched) and what the other attempts found.
fn explain_credentials(
    target: &Target,
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
    let Some(file) = target.credentials.as_ref() else {
        return failure;
    };
    let path = file.path.display();
    if matches.is_empty() {
        let keys: Vec<&str> = file.keyring.keys().collect();
        let host = target.image.registry();
        if keys.is_empty() {
            failure.message += &format!(" — {path} has no credentials");
        } else {
            failure.message += &format!(
                " — no key of {path} matches {host}/{} the way kubelet matches (keys: {})",
                target.image.repository(),
                keys.join(", ")
            );
        }
        return failure;
    }
    let (used, _) = &failures[best];
    if let Some(m) = used {
        failure.message += &format!(" — credentials from {path}, key {:?}", m.key);
        if let Some(note) = crate::credentials::ignored_note(m) {
            failure.message += &format!("; {note}");
        }
    }
    for (i, (m, f)) in failures.iter().enumerate() {
        if i == best {
            continue;
        }
        if let Some(m) = m {
            failure.message += &format!("; key {:?} also failed ({})", m.key, f.reason);
        }
    }
    failure
}
