//! The in-process parsers a probe runs: the `WWW-Authenticate` challenge, Docker Hub's
//! rate-limit headers, and image references. Run with `cargo bench --bench parsing`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use pullprobe::probe::{challenge, ratelimit};
use pullprobe::reference::ImageRef;

const HUB_CHALLENGE: &str = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#;
const ERROR_CHALLENGE: &str = r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:org/app:pull,push",error="insufficient_scope""#;

fn parsers(c: &mut Criterion) {
    c.bench_function("challenge_bearer_hub", |b| {
        b.iter(|| challenge::parse(black_box(HUB_CHALLENGE)));
    });
    c.bench_function("challenge_bearer_error_scope", |b| {
        b.iter(|| challenge::parse(black_box(ERROR_CHALLENGE)));
    });

    let mut headers = HeaderMap::new();
    headers.insert("ratelimit-limit", HeaderValue::from_static("100;w=21600"));
    headers.insert(
        "ratelimit-remaining",
        HeaderValue::from_static("76;w=21600"),
    );
    headers.insert(
        "docker-ratelimit-source",
        HeaderValue::from_static("203.0.113.7"),
    );
    headers.insert(
        "docker-content-digest",
        HeaderValue::from_static(
            "sha256:1d7e2cc7d8c1b0a6a7d2f0ea3b6b9e2d5c4f3a291807f6e5d4c3b2a190807f6e",
        ),
    );
    c.bench_function("ratelimit_from_headers", |b| {
        b.iter(|| ratelimit::from_headers(black_box(&headers)));
    });

    for (name, text) in [
        ("reference_short", "nginx"),
        (
            "reference_full",
            "registry.example.com:5000/team/app:v1.2.3",
        ),
        (
            "reference_digest",
            "ghcr.io/org/app@sha256:1d7e2cc7d8c1b0a6a7d2f0ea3b6b9e2d5c4f3a291807f6e5d4c3b2a190807f6e",
        ),
    ] {
        c.bench_function(name, |b| b.iter(|| ImageRef::parse(black_box(text))));
    }
}

criterion_group!(benches, parsers);
criterion_main!(benches);
