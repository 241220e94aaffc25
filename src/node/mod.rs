//! The node's own pull configuration: which endpoints, TLS, credentials and proxy a pull of an
//! image on this node uses.
//!
//! One job: turn the node's files into an ordered list of endpoints (with their TLS settings,
//! headers and credentials) that [`crate::probe`] then walks. One file per source:
//! - [`containerd`]: `certs.d/<host>/hosts.toml` as containerd's `remotes/docker/config/hosts.go`
//!   reads it (mirrors, CAs, client certificates, `skip_verify`, `override_path`, headers).
//! - [`crio`]: CRI-O's `registries.conf` (+ drop-ins) as containers/image's `sysregistriesv2`
//!   reads it.
//! - [`kubelet`]: the node's docker `config.json` as kubelet's `credentialprovider` finds it.
//! - [`plugins`]: kubelet's credential-provider plugins (`CredentialProviderConfig`).
//! - [`proxy`]: the proxy environment as Go's `http.ProxyFromEnvironment` reads it.

pub mod containerd;
pub mod crio;
pub mod kubelet;
pub mod plugins;
pub mod proxy;
