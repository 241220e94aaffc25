//! Config reload: on SIGHUP, on `POST /-/reload`, and when the config file or a file it
//! references changes on disk.
//!
//! Changes on disk are found by polling a content hash of the config file and of every file it
//! references (`docker_config` files, `tls.ca_file` bundles). Hashing content, not watching
//! inodes or mtimes, is what survives the way Kubernetes updates a mounted ConfigMap or Secret:
//! it writes a new `..<timestamp>` directory and atomically swaps the `..data` symlink that
//! `config.yaml -> ..data/config.yaml` points through.
//!
//! A reload that fails keeps the running config, logs the [`ConfigError`] (which never contains
//! a credential) and sets `pullprobe_config_last_reload_successful` to 0. The hash of a failed
//! attempt is remembered too, so a bad file is reported once, not every poll.
//!
//! [`ConfigError`]: crate::config::ConfigError

use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::scheduler::Scheduler;
use super::signal::Hangup;
use super::store::ReloadStatus;
use crate::config::Config;

/// Why a reload was asked for.
#[derive(Debug)]
pub(crate) enum Trigger {
    /// `POST /-/reload`; the answer goes back to the request.
    Http(oneshot::Sender<Result<(), String>>),
}

/// Owns the running config and the scheduler; the only place that changes either.
pub(crate) struct Reloader {
    path: Option<PathBuf>,
    config: Config,
    /// The content hash at the last reload attempt; `None` without a config file.
    hash: Option<u64>,
    scheduler: Scheduler,
    status: Arc<ReloadStatus>,
    /// Told every config that loads, for the pod watch.
    pods: Option<tokio::sync::watch::Sender<super::pods::Running>>,
}

impl Reloader {
    /// Sends every config that loads to the pod watch.
    pub(crate) fn with_pods(
        mut self,
        tx: tokio::sync::watch::Sender<super::pods::Running>,
    ) -> Self {
        self.pods = Some(tx);
        self
    }

    pub(crate) fn new(
        path: Option<PathBuf>,
        config: Config,
        scheduler: Scheduler,
        status: Arc<ReloadStatus>,
    ) -> Self {
        let hash = path
            .as_deref()
            .map(|p| content_hash(&watched_files(p, &config)));
        Reloader {
            path,
            config,
            hash,
            scheduler,
            status,
            pods: None,
        }
    }

    /// Serves reload triggers until `cancel`: requests from `rx`, SIGHUP from `hangup`, and a
    /// poll of the config files every `watch_interval` (zero disables polling).
    pub(crate) async fn run(
        mut self,
        mut rx: mpsc::Receiver<Trigger>,
        mut hangup: Option<Hangup>,
        watch_interval: Duration,
        cancel: CancellationToken,
    ) {
        let watching = self.path.is_some() && !watch_interval.is_zero();
        let mut poll = tokio::time::interval(if watching {
            watch_interval
        } else {
            Duration::from_secs(3600)
        });
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        poll.reset(); // the first tick would fire at once; the config was just loaded
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                Some(trigger) = rx.recv() => match trigger {
                    Trigger::Http(reply) => {
                        info!(trigger = "http", "Reloading the configuration");
                        let _ = reply.send(self.reload().await);
                    }
                },
                Some(()) = recv_hangup(hangup.as_mut()) => {
                    info!(trigger = "SIGHUP", "Reloading the configuration");
                    let _ = self.reload().await;
                }
                _ = poll.tick(), if watching => {
                    if self.changed_on_disk().await {
                        info!(trigger = "file change", "Reloading the configuration");
                        let _ = self.reload().await;
                    }
                }
            }
        }
    }

    /// Whether the config file or a file it references differs from the last attempt.
    async fn changed_on_disk(&mut self) -> bool {
        let Some(path) = self.path.clone() else {
            return false;
        };
        let files = watched_files(&path, &self.config);
        let hash = tokio::task::spawn_blocking(move || content_hash(&files))
            .await
            .ok();
        hash.is_some() && hash != self.hash
    }

    /// Loads the config file again and applies it; on failure keeps the running config.
    ///
    /// # Errors
    /// The config error text, when the new config is invalid.
    pub(crate) async fn reload(&mut self) -> Result<(), String> {
        let Some(path) = self.path.clone() else {
            info!("No --config.file: the embedded default config has nothing to reload");
            self.status.succeeded(SystemTime::now());
            return Ok(());
        };
        let files = watched_files(&path, &self.config);
        let loaded = tokio::task::spawn_blocking(move || {
            let before = content_hash(&files);
            let config = Config::load(&path);
            let after = config
                .as_ref()
                .ok()
                .map(|c| content_hash(&watched_files(&path, c)));
            (config, after.unwrap_or(before))
        })
        .await;
        let (result, hash) = match loaded {
            Ok(v) => v,
            Err(e) => return Err(format!("the config loader stopped: {e}")),
        };
        self.hash = Some(hash);
        match result {
            Ok(config) => {
                self.apply(config);
                Ok(())
            }
            Err(e) => {
                self.status.failed();
                error!(error = %e, "Configuration reload failed; keeping the running configuration");
                Err(e.to_string())
            }
        }
    }

    fn apply(&mut self, config: Config) {
        let prober = self.scheduler.prober().reconfigure(&config);
        self.scheduler.set_prober(prober.clone());
        if let Some(tx) = &self.pods {
            tx.send_replace(super::pods::Running {
                config: Arc::new(config.clone()),
                probe: prober,
            });
        }
        self.scheduler.apply(&config);
        self.status.succeeded(SystemTime::now());
        info!(
            source = %config.source,
            targets = config.targets.len(),
            "Configuration reloaded"
        );
        self.config = config;
    }
}

async fn recv_hangup(hangup: Option<&mut Hangup>) -> Option<()> {
    match hangup {
        Some(h) => h.recv().await,
        None => std::future::pending().await,
    }
}

/// The config file and every file the loaded `config` references, without duplicates.
fn watched_files(path: &Path, config: &Config) -> Vec<PathBuf> {
    let mut files = vec![path.to_owned()];
    let referenced =
        config
            .docker_config
            .iter()
            .map(|c| c.path.clone())
            .chain(config.targets.iter().flat_map(|t| {
                t.credentials
                    .iter()
                    .map(|c| c.path.clone())
                    .chain(t.tls.ca_file.clone())
            }));
    for p in referenced {
        if !files.contains(&p) {
            files.push(p);
        }
    }
    files
}

/// A hash of the paths and contents of `files`, following symlinks. An unreadable file hashes
/// as its error kind, so it changing to readable (or back) counts as a change.
fn content_hash(files: &[PathBuf]) -> u64 {
    let mut h = DefaultHasher::new();
    for f in files {
        f.hash(&mut h);
        match std::fs::read(f) {
            Ok(bytes) => bytes.hash(&mut h),
            Err(e) => format!("{:?}", e.kind()).hash(&mut h),
        }
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_follows_content_through_a_configmap_symlink_swap() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let v1 = d.join("..2026_11_22_10_00_00.1");
        std::fs::create_dir(&v1).unwrap();
        std::fs::write(v1.join("config.yaml"), "a").unwrap();
        std::os::unix::fs::symlink(&v1, d.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/config.yaml", d.join("config.yaml")).unwrap();
        let files = [d.join("config.yaml")];
        let h1 = content_hash(&files);
        assert_eq!(h1, content_hash(&files));

        let v2 = d.join("..2026_11_22_10_05_00.2");
        std::fs::create_dir(&v2).unwrap();
        std::fs::write(v2.join("config.yaml"), "b").unwrap();
        std::os::unix::fs::symlink(&v2, d.join("..data_tmp")).unwrap();
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
        std::fs::remove_dir_all(&v1).unwrap();
        assert_ne!(h1, content_hash(&files));
    }

    #[test]
    fn missing_file_hashes_stably() {
        let files = [PathBuf::from("/nonexistent/pullprobe.yaml")];
        assert_eq!(content_hash(&files), content_hash(&files));
    }
}
