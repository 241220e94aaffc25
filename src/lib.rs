//! pullprobe: can this node pull its images right now, and if not, which step fails and why?
//!
//! pullprobe walks the path containerd walks to pull an image — DNS as Go resolves, TCP, TLS
//! judged as Go's crypto/x509 judges, the manifest `HEAD` as containerd's resolver sends it with
//! the registry's challenge and token when it asks, the rate-limit headers, the platforms of the
//! index — with the credentials kubelet would pass, and names the first step that fails with a
//! reason from a closed vocabulary.
//!
//! # Layout
//! - [`outcome`]: the closed vocabulary ([`outcome::Phase`], [`outcome::Reason`]).
//! - [`reference`]: image references and the registry endpoint they map to.
//! - [`credentials`]: docker `config.json` credentials matched like kubelet does.
//! - [`platform`]: `os/arch[/variant]` compared as containerd picks a manifest from an index.
//! - [`config`]: the YAML config, validated and resolved at load time.
//! - [`node`]: the node's own pull configuration (mirrors, node credentials, plugins, proxy).
//! - [`cluster`]: the Kubernetes API: a pod's images, pull secrets and kubelet's pull errors.
//! - [`probe`]: the engine; one file per phase, `probe/mod.rs` orders them under one deadline.
//! - [`check`]: `pullprobe --check`, the one-shot explanation.
//! - [`cli`], [`telemetry`]: flags and logging.

pub mod agent;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod credentials;
pub mod node;
pub mod outcome;
pub mod platform;
pub mod probe;
pub mod reference;
pub mod telemetry;

/// Installs the process-wide rustls crypto provider (ring). Idempotent; call before any TLS.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
