//! One integration-test binary (as hickory does): in-process fakes in `support`, their
//! self-tests in `fakes`, the engine against them in `engine` and against hostile servers in
//! `hostile` (with the soak test), and end-to-end tests against the real Debian packages in
//! `docker_registry` and `unbound`.

mod docker_registry;
mod engine;
mod fakes;
mod hostile;
mod support;
mod unbound;
