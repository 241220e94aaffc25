//! Agent mode: probe every target on a schedule, serve Prometheus metrics, reload the config
//! live, and shut down within a bounded grace period.
//!
//! [`run`] takes the listener and the shutdown future from its caller (mini-redis style), so
//! `main` binds `--web.listen-address` and passes [`shutdown_signal`], while tests bind
//! `127.0.0.1:0` and pass a channel. The probe engine is injected too ([`AgentOptions::probe`]),
//! so tests can drive the agent with synthetic reports.
//!
//! Layout: `store` holds the latest result per target, `metrics` renders it at scrape
//! time, `scheduler` runs one task per target, `reload` owns the running config, `server` is
//! the HTTP front and `signal` the process signals; `pods` watches this node's pods that
//! cannot pull (`pods.watch`).

mod metrics;
mod pods;
mod process;
mod reload;
mod scheduler;
mod server;
mod signal;
mod store;
mod webconfig;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use scheduler::{BoxFuture, JITTER, Probe};
pub use signal::shutdown_signal;

use crate::cli::Cli;
use crate::config::{Config, ConfigError};
use crate::probe::Prober;

/// Default bound on probes running at the same time, across all targets.
pub const DEFAULT_PROBE_CONCURRENCY: usize = 16;
/// Default period of the config-file poll.
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(5);
/// Default time in-flight work gets to finish after the shutdown signal.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Builds the probe engine for the initial config.
pub type ProbeFactory = Arc<dyn Fn(&Config) -> Arc<dyn Probe> + Send + Sync>;

/// How to run the agent.
#[derive(Clone)]
pub struct AgentOptions {
    /// The config file; `None` uses the embedded default (and there is nothing to watch).
    pub config_file: Option<PathBuf>,
    /// How often the config file and the files it references are checked for changes; zero
    /// disables the check (SIGHUP and `POST /-/reload` still work).
    pub watch_interval: Duration,
    /// At most this many probes run at once.
    pub probe_concurrency: usize,
    /// How long in-flight work may take to finish after the shutdown signal.
    pub shutdown_grace: Duration,
    /// Reload on SIGHUP. Installing the listener makes SIGHUP stop terminating the process.
    pub reload_on_sighup: bool,
    /// Seeds start offsets and jitter (reproducible tests); `None` seeds from the OS.
    pub seed: Option<u64>,
    /// Builds the probe engine; the default is the real [`Prober`].
    pub probe: ProbeFactory,
    /// `--web.config.file`: TLS and basic auth for the HTTP server (exporter-toolkit format).
    pub web_config_file: Option<PathBuf>,
    /// `--web.telemetry-path`: where the metrics are served (default `/metrics`).
    pub telemetry_path: String,
}

/// Where the metrics are served unless `--web.telemetry-path` says otherwise.
pub const DEFAULT_TELEMETRY_PATH: &str = "/metrics";

impl AgentOptions {
    /// Defaults for `config_file`, with the real probe engine.
    pub fn new(config_file: Option<PathBuf>) -> Self {
        AgentOptions {
            config_file,
            watch_interval: DEFAULT_WATCH_INTERVAL,
            probe_concurrency: DEFAULT_PROBE_CONCURRENCY,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            reload_on_sighup: true,
            seed: None,
            probe: Arc::new(|c: &Config| -> Arc<dyn Probe> { Arc::new(Prober::from_config(c)) }),
            web_config_file: None,
            telemetry_path: DEFAULT_TELEMETRY_PATH.to_owned(),
        }
    }

    /// The options the command line asks for.
    pub fn from_cli(cli: &Cli) -> Self {
        AgentOptions {
            watch_interval: cli.config_watch_interval,
            probe_concurrency: cli.probe_concurrency,
            web_config_file: cli.web_config_file.clone(),
            telemetry_path: cli.web_telemetry_path.clone(),
            ..Self::new(cli.config_file.clone())
        }
    }

    /// Uses `probe` instead of the real engine (tests).
    #[must_use]
    pub fn with_probe(mut self, probe: Arc<dyn Probe>) -> Self {
        self.probe = Arc::new(move |_: &Config| probe.clone());
        self
    }
}

impl fmt::Debug for AgentOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentOptions")
            .field("config_file", &self.config_file)
            .field("watch_interval", &self.watch_interval)
            .field("probe_concurrency", &self.probe_concurrency)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("reload_on_sighup", &self.reload_on_sighup)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

/// Renders `/metrics` exactly as a scrape does, for a fixed set of reports. Exists for the
/// benchmarks in `benches/`; not a supported API.
#[doc(hidden)]
pub struct ScrapeFixture {
    exposition: metrics::Exposition,
}

#[doc(hidden)]
impl ScrapeFixture {
    /// A store holding `reports` (each its own configured target, probed at `interval`).
    pub fn new(reports: Vec<crate::probe::ProbeReport>, interval: Duration) -> Self {
        let store = Arc::new(store::Store::new());
        let configured: Vec<_> = reports
            .iter()
            .map(|r| store::Configured {
                name: r.target.clone(),
                registry: r.registry.clone(),
                interval,
                task: 1,
            })
            .collect();
        store.configure(&configured);
        for r in reports {
            store.record(1, r);
        }
        let status = Arc::new(store::ReloadStatus::loaded_at(SystemTime::now()));
        ScrapeFixture {
            exposition: metrics::Exposition::new(store, status),
        }
    }

    /// The body of one scrape.
    pub fn render(&self) -> String {
        self.exposition.render()
    }
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The initial configuration is invalid (exit status 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The `--web.config.file` is invalid (the message names the file, the key and a fix).
    #[error("{0}")]
    WebConfig(String),
    /// A signal listener could not be installed.
    #[error("cannot listen for SIGHUP")]
    Signal(#[source] std::io::Error),
}

/// Runs the agent on `listener` until `shutdown` resolves, then cancels in-flight probes, lets
/// open HTTP connections finish for at most `opts.shutdown_grace`, and returns `Ok`.
///
/// # Errors
/// When the initial configuration cannot be loaded, or the SIGHUP listener cannot be installed.
/// Later problems (bad reloads, failing probes, accept errors) are logged, never returned.
pub async fn run(
    opts: AgentOptions,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let config = match &opts.config_file {
        Some(path) => Config::load(path)?,
        None => Config::embedded_default(),
    };
    let web = match &opts.web_config_file {
        Some(path) => Some(Arc::new(
            webconfig::WebConfigHandle::new(path).map_err(AgentError::WebConfig)?,
        )),
        None => None,
    };
    let hangup = if opts.reload_on_sighup {
        Some(signal::Hangup::new().map_err(AgentError::Signal)?)
    } else {
        None
    };

    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let store = Arc::new(store::Store::new());
    let status = Arc::new(store::ReloadStatus::loaded_at(SystemTime::now()));
    let ready = Arc::new(AtomicBool::new(false));
    let (reload_tx, reload_rx) = mpsc::channel(4);

    let state = Arc::new(server::AppState {
        exposition: metrics::Exposition::new(store.clone(), status.clone()),
        store: store.clone(),
        telemetry_path: opts.telemetry_path.clone(),
        ready: ready.clone(),
        reload: reload_tx,
    });
    if let Ok(addr) = listener.local_addr() {
        info!(address = %addr, "Serving metrics");
    }
    tracker.spawn(server::serve(
        listener,
        state.clone(),
        web,
        cancel.child_token(),
    ));

    let mut scheduler = scheduler::Scheduler::new(
        store,
        (opts.probe)(&config),
        opts.probe_concurrency,
        cancel.child_token(),
        tracker.clone(),
        opts.seed,
    );
    scheduler.apply(&config);
    ready.store(true, Ordering::Release);
    info!(
        source = %config.source,
        targets = config.targets.len(),
        interval = %humantime::format_duration(config.interval),
        "Probing started"
    );
    // The pod watch follows the running config; idle unless pods.watch is on.
    let pod_gauge = pods::gauge();
    state.exposition.register(Box::new(pod_gauge.clone()));
    let pod_watch_up = pods::up_gauge();
    state.exposition.register(Box::new(pod_watch_up.clone()));
    let (pods_tx, pods_rx) = tokio::sync::watch::channel(pods::Running {
        config: Arc::new(config.clone()),
        probe: scheduler.prober(),
    });
    tracker.spawn(pods::run(
        pods_rx,
        pod_gauge,
        pod_watch_up,
        cancel.child_token(),
    ));
    let reloader = reload::Reloader::new(opts.config_file.clone(), config, scheduler, status)
        .with_pods(pods_tx);
    tracker.spawn(reloader.run(reload_rx, hangup, opts.watch_interval, cancel.child_token()));
    tracker.close();

    shutdown.await;
    ready.store(false, Ordering::Release);
    cancel.cancel();
    if tokio::time::timeout(opts.shutdown_grace, tracker.wait())
        .await
        .is_err()
    {
        warn!(grace = ?opts.shutdown_grace, "Shutdown did not complete within the grace period");
    }
    info!("Stopped");
    Ok(())
}
