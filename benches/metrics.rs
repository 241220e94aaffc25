//! `/metrics` rendering for 1 000 targets (target: ≤ 10 ms per scrape). Run with
//! `cargo bench --bench metrics`, or everything with `bash bench/run.sh`.
//!
//! The store holds one realistic report per target: a success with every phase timed, a TLS
//! expiry and Docker Hub-style rate-limit headers (the largest per-target series set, 17), every
//! tenth target a connect failure instead. So the scrape has ~16 000 series.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use pullprobe::agent::ScrapeFixture;
use pullprobe::outcome::{Failure, Phase, Reason};
use pullprobe::probe::{PhaseTiming, ProbeReport, RateLimit, TlsReport};

fn report(i: usize) -> ProbeReport {
    let registry = format!("registry-{}.example.com:5000", i % 50);
    let failure = (i % 10 == 9)
        .then(|| Failure::new(Phase::Connect, Reason::ConnectRefused, "connection refused"));
    let phases = Phase::TIMED
        .iter()
        .take(if failure.is_some() { 2 } else { 5 })
        .zip(1u64..)
        .map(|(&phase, ms)| PhaseTiming {
            phase,
            duration: Duration::from_millis(ms * 7),
        })
        .collect();
    let ok = failure.is_none();
    ProbeReport {
        target: format!("team-{i:04}-app"),
        image: format!("{registry}/team-{i:04}/app:v1.2.3"),
        registry,
        failure,
        duration: Duration::from_millis(123),
        started_at: SystemTime::now(),
        phases,
        address: Some("127.0.0.1:5000".parse().expect("literal")),
        tls: ok.then_some(TlsReport {
            version: Some("TLSv1.3"),
            earliest_not_after: Some(1_800_000_000),
            ..TlsReport::default()
        }),
        digest: ok.then(|| format!("sha256:{}", "ab".repeat(32))),
        rate_limit: ok.then(|| RateLimit {
            limit: 100,
            remaining: 76,
            window_seconds: Some(21_600),
            source: Some("203.0.113.7".to_owned()),
        }),
        endpoint: format!("registry-{}.example.com:5000", i % 50),
        endpoints: Vec::new(),
        warnings: Vec::new(),
    }
}

fn render(c: &mut Criterion) {
    for n in [7, 1000] {
        let fixture = ScrapeFixture::new((0..n).map(report).collect(), Duration::from_secs(900));
        let bytes = fixture.render().len();
        c.bench_function(&format!("render_metrics_{n}_targets"), |b| {
            b.iter(|| black_box(fixture.render()));
        });
        eprintln!("render_metrics_{n}_targets: {bytes} bytes per scrape");
    }
}

criterion_group!(benches, render);
criterion_main!(benches);
