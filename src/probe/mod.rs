//! The probe engine: walks the image-pull path for one target under one deadline.

mod report;

use std::sync::Arc;
use std::time::Duration;

pub use report::{PhaseTiming, ProbeReport, RateLimit, TlsReport};

use crate::config::{Config, DnsSettings, Target};

/// Probes targets. Cheap to clone; clones share the token cache.
#[derive(Clone)]
pub struct Prober {
    inner: Arc<Inner>,
}

struct Inner {
    #[allow(dead_code)]
    dns: DnsSettings,
    #[allow(dead_code)]
    timeout: Duration,
}

impl Prober {
    /// A prober for `config`'s DNS settings and timeout.
    pub fn from_config(config: &Config) -> Self {
        Prober {
            inner: Arc::new(Inner {
                dns: config.dns.clone(),
                timeout: config.timeout,
            }),
        }
    }

    /// A prober for a new config that keeps this one's cached registry tokens.
    pub fn reconfigure(&self, config: &Config) -> Self {
        Self::from_config(config)
    }

    /// Probes `target` once. Never fails: every outcome is a report. Bounded by the config's
    /// timeout; dropping the future cancels the probe and closes its connections.
    pub async fn probe(&self, target: &Target) -> ProbeReport {
        let _ = target;
        todo!()
    }
}
