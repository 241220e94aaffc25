//! Process signals: SIGTERM/SIGINT end the agent, SIGHUP reloads its config.
//!
//! Each listener is installed once per process (not per connection or per task).

use tracing::{error, info};

/// Resolves on the first SIGTERM or SIGINT (Ctrl-C). Pass it to [`super::run`] as `shutdown`.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => info!(signal = "SIGTERM", "Shutting down"),
                () = interrupted() => {}
            },
            Err(e) => {
                error!(error = %e, "Cannot listen for SIGTERM; only SIGINT stops the agent");
                interrupted().await;
            }
        }
    }
    #[cfg(not(unix))]
    interrupted().await;
}

/// Resolves on SIGINT. Without a working listener it never resolves: a broken signal handler
/// must not stop the agent at once.
async fn interrupted() {
    match tokio::signal::ctrl_c().await {
        Ok(()) => info!(signal = "SIGINT", "Shutting down"),
        Err(e) => {
            error!(error = %e, "Cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    }
}

/// A SIGHUP listener.
#[derive(Debug)]
pub(crate) struct Hangup {
    #[cfg(unix)]
    inner: tokio::signal::unix::Signal,
}

impl Hangup {
    /// Starts listening for SIGHUP; from now on SIGHUP no longer terminates the process.
    ///
    /// # Errors
    /// When the signal handler cannot be installed.
    pub(crate) fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Hangup {
                inner: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Hangup {})
    }

    /// The next SIGHUP; `None` once no more signals can arrive.
    pub(crate) async fn recv(&mut self) -> Option<()> {
        #[cfg(unix)]
        {
            self.inner.recv().await
        }
        #[cfg(not(unix))]
        std::future::pending().await
    }
}
