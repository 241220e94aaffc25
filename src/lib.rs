//! pullprobe: can this node pull its images right now, and if not, which step fails and why?
//!
//! pullprobe walks the path containerd walks to pull an image — DNS, TCP, TLS, the registry's
//! `/v2/` challenge and token, the manifest `HEAD` and its rate-limit headers — and names the
//! first step that fails with a reason from a closed vocabulary.
//!
//! # Layout
//! - [`outcome`]: the closed vocabulary ([`outcome::Phase`], [`outcome::Reason`]).
//! - [`reference`]: image references and the registry endpoint they map to.
//! - [`credentials`]: docker `config.json` credentials matched like kubelet does.
//! - [`config`]: the YAML config, validated and resolved at load time.
//! - [`probe`]: the engine; one file per phase, `probe/mod.rs` orders them under one deadline.
//! - [`check`]: `pullprobe --check`, the one-shot explanation.
//! - [`cli`], [`telemetry`]: flags and logging.

pub mod agent;
pub mod check;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod outcome;
pub mod probe;
pub mod reference;
pub mod telemetry;

/// Installs the process-wide rustls crypto provider (ring). Idempotent; call before any TLS.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
