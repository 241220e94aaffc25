//! One integration-test binary (as hickory does): in-process fakes in `support`, their
//! self-tests in `fakes`, the engine against them in `engine`, and end-to-end tests against
//! the real Debian packages in `docker_registry` and `unbound`.

mod agent_e2e;
mod alerts_e2e;
mod docker_registry;
mod engine;
mod fakes;
mod secure_metrics;
mod support;
mod unbound;
