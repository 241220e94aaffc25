//! One integration-test binary (as hickory does): in-process fakes in `support`, their
//! self-tests in `fakes`, the engine against them in `engine` and against hostile servers in
//! `hostile` (with the soak test), and end-to-end tests against the real Debian packages in
//! `docker_registry`, `unbound`, `alerts_e2e` and `secure_metrics`; the agent with the real
//! engine in `agent_e2e`; the TLS verdicts where Go's crypto/x509 and webpki differ in `tls_go`.

mod agent_e2e;
mod alerts_e2e;
mod docker_registry;
mod engine;
mod fakes;
mod hostile;
mod secure_metrics;
mod support;
mod tls_go;
mod unbound;
