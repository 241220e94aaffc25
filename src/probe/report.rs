//! What one probe of one target found: the typed result every consumer reads
//! (`--check` output, the agent's metrics and logs).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crate::outcome::{Failure, Phase, Reason};

/// How long one phase took. A phase that was skipped (DNS for an IP literal, TLS with
/// `plain_http`) has no entry; the failing phase has one, up to the failure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PhaseTiming {
    pub phase: Phase,
    pub duration: Duration,
}

/// The registry's pull quota as reported by `ratelimit-limit` / `ratelimit-remaining` /
/// `docker-ratelimit-source`. Absent headers mean the registry does not limit this client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: u64,
    pub remaining: u64,
    pub window_seconds: Option<u64>,
    /// The address (or account) the registry counts pulls against.
    pub source: Option<String>,
}

/// What the TLS handshake showed, also when verification failed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsReport {
    /// `TLSv1.3`, `TLSv1.2`; `None` when the handshake did not finish.
    pub version: Option<&'static str>,
    /// The earliest NotAfter of the presented chain and of the trust anchor it was verified
    /// against (`anchor_not_after`), Unix seconds: an expiring root is as fatal as an
    /// expiring leaf.
    pub earliest_not_after: Option<i64>,
    /// The subject (`CN=…, O=…`) of the trust anchor the chain was verified against — the
    /// registry's own certificate when that is itself trusted, as Go allows — or, when the
    /// chain was refused because of its root (expired, not a CA, …), of that root. `None`
    /// without verification (`insecure_skip_verify`) or when no root was reached.
    pub anchor_subject: Option<String>,
    /// That anchor's NotAfter, Unix seconds; `None` also for the built-in Mozilla anchors,
    /// which carry no dates.
    pub anchor_not_after: Option<i64>,
}

/// One endpoint the pull asked (a mirror, or the registry itself), in the order asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointResult {
    /// `host[:port]` (with the API path when it is not `/v2`; for a CRI-O source, with its
    /// location's namespace): the `endpoint` label.
    pub endpoint: String,
    /// Whether this is the registry itself rather than a mirror.
    pub upstream: bool,
    /// `None` when this endpoint answered with the manifest.
    pub failure: Option<Failure>,
}

impl EndpointResult {
    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }
}

/// The complete result of probing one target once.
#[derive(Clone, Debug)]
pub struct ProbeReport {
    /// The target's name (the `target` label).
    pub target: String,
    /// The normalised image reference.
    pub image: String,
    /// The API endpoint `host[:port]` (the `registry` label).
    pub registry: String,
    /// `None` when every phase succeeded.
    pub failure: Option<Failure>,
    /// Wall-clock time of the whole probe.
    pub duration: Duration,
    /// When the probe started.
    pub started_at: SystemTime,
    pub phases: Vec<PhaseTiming>,
    /// The address the TCP connection used.
    pub address: Option<SocketAddr>,
    pub tls: Option<TlsReport>,
    /// `Docker-Content-Digest` of the manifest.
    pub digest: Option<String>,
    pub rate_limit: Option<RateLimit>,
    /// The endpoint that answered (or whose failure is the verdict): the `endpoint` label.
    pub endpoint: String,
    /// Every endpoint asked, in order; one entry when the node configures no mirrors.
    pub endpoints: Vec<EndpointResult>,
    /// What the node's configuration files would make the runtime do differently than they
    /// say (ignored files, unreadable entries), each naming the file.
    pub warnings: Vec<String>,
}

impl ProbeReport {
    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }

    /// `Ok` for a success, else the failure's reason.
    pub fn reason(&self) -> Reason {
        self.failure.as_ref().map_or(Reason::Ok, |f| f.reason)
    }

    /// The failing phase, `None` when ok.
    pub fn phase(&self) -> Option<Phase> {
        self.failure.as_ref().map(|f| f.phase)
    }

    /// The duration of `phase`, if it ran.
    pub fn phase_duration(&self, phase: Phase) -> Option<Duration> {
        self.phases
            .iter()
            .find(|p| p.phase == phase)
            .map(|p| p.duration)
    }
}
