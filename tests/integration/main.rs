//! One integration-test binary (as hickory does): in-process fakes in `support`, their
//! self-tests in `fakes`, the engine against them in `engine` and against hostile servers in
//! `hostile` (with the soak test), name resolution as Go's resolver does it in `go_resolver`
//! and what its failures tell a person in `messages_dns`,
//! and end-to-end tests against the real Debian packages in
//! `docker_registry`, `unbound`, `alerts_e2e` and `secure_metrics`; the agent with the real
//! engine in `agent_e2e`; the TLS verdicts where Go's crypto/x509 and webpki differ in `tls_go`;
//! and containerd's own client on the fakes, pinning the behaviour pullprobe must agree with,
//! in `containerd`; pullprobe against it on the same fixtures in `differential`, and on the
//! node's mirror chains (hosts.toml) in `mirrors`, and on hosts.toml files that fail the
//! pull on the node itself (a missing `ca`, a `client` that is not a certificate) in
//! `node_errors`.

mod agent_e2e;
mod alerts_e2e;
mod containerd;
mod crio;
mod differential;
mod docker_registry;
mod engine;
mod fakes;
mod go_resolver;
mod hostile;
mod image;
mod messages_config;
mod messages_dns;
mod mirrors;
mod node_credentials;
mod node_errors;
mod pods;
mod proxy;
mod secure_metrics;
mod support;
mod tls_go;
mod unbound;
