//! `pullprobe --check`: probe every target once, concurrently, and explain the result.
//!
//! Text output is a table (one row per target: phase timings and the result) followed by, for
//! each failure, what failed, why and what to do. JSON output is one object with a `results`
//! array (see the README for the schema). Exit status: 0 all ok, 1 a target failed, 2 usage or
//! configuration error.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::cli::{Cli, EXIT_OK, EXIT_PROBE_FAILED, EXIT_USAGE, OutputFormat};
use crate::config::{Config, Target};
use crate::outcome::{Phase, Reason};
use crate::platform::Platform;
use crate::probe::{ProbeReport, Prober};

/// Runs `--check` and returns the exit status. At most `--probe.concurrency` probes run at once. Output goes to stdout, errors to stderr.
pub async fn run(cli: &Cli) -> u8 {
    let config = match &cli.config_file {
        Some(path) => Config::load(path),
        None => Ok(Config::embedded_default()),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pullprobe: {e}");
            return EXIT_USAGE;
        }
    };
    let mut targets = if cli.images.is_empty() {
        config.targets.clone()
    } else {
        match config.targets_for_images(&cli.images) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("pullprobe: {e}");
                return EXIT_USAGE;
            }
        }
    };
    // --check always checks the platform (one manifest GET per image).
    for t in &mut targets {
        t.check_platform = true;
    }
    let platform = cli.platform.clone().unwrap_or_else(Platform::host);
    tracing::debug!(config = %config.source, targets = targets.len(), timeout = ?config.timeout, platform = %platform, "Checking targets");
    let reports = probe_all_bounded(
        &Prober::with_platform(&config, platform),
        targets,
        cli.probe_concurrency,
    )
    .await;
    let out = match cli.output {
        OutputFormat::Text => render_text(&reports),
        OutputFormat::Json => render_json(&reports),
    };
    write_stdout(&out);
    if reports.iter().all(ProbeReport::ok) {
        EXIT_OK
    } else {
        EXIT_PROBE_FAILED
    }
}

/// Writes the result to stdout. A reader that went away (`pullprobe --check | head -1`) is not
/// an error: the exit status still says whether the targets were ok.
fn write_stdout(out: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        tracing::warn!(error = %e, "Cannot write the result to stdout");
    }
}

/// Probes all targets concurrently; reports come back in target order.
pub async fn probe_all(prober: &Prober, targets: Vec<Target>) -> Vec<ProbeReport> {
    let limit = targets.len().max(1);
    probe_all_bounded(prober, targets, limit).await
}

/// Probes all targets with at most `limit` probes in flight (`--probe.concurrency`), so a
/// large config does not run thousands of handshakes at once and time out on its own load.
/// Each probe's deadline starts when it starts. Reports come back in target order.
pub async fn probe_all_bounded(
    prober: &Prober,
    targets: Vec<Target>,
    limit: usize,
) -> Vec<ProbeReport> {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(limit.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (i, t) in targets.into_iter().enumerate() {
        let prober = prober.clone();
        let permits = permits.clone();
        set.spawn(async move {
            let _permit = permits
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            (i, prober.probe(&t).await)
        });
    }
    let mut out: Vec<(usize, ProbeReport)> = Vec::with_capacity(set.len());
    while let Some(r) = set.join_next().await {
        match r {
            Ok(pair) => out.push(pair),
            Err(e) => tracing::error!(error = %e, "A probe task panicked"),
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

// ---- JSON --------------------------------------------------------------------------------

#[derive(Serialize)]
struct JsonOutput<'a> {
    results: Vec<JsonResult<'a>>,
}

#[derive(Serialize)]
struct JsonResult<'a> {
    target: &'a str,
    image: &'a str,
    registry: &'a str,
    ok: bool,
    phase: Option<Phase>,
    reason: Reason,
    message: String,
    remedy: Option<&'static str>,
    duration_seconds: f64,
    phases: Vec<JsonPhase>,
    address: Option<String>,
    tls: Option<JsonTls<'a>>,
    digest: Option<&'a str>,
    rate_limit: Option<JsonRateLimit<'a>>,
    /// The endpoint that answered, or whose failure is the verdict.
    endpoint: &'a str,
    /// Every endpoint asked, in order (mirrors first, the registry last).
    endpoints: Vec<JsonEndpoint<'a>>,
    /// What the node's files would make the runtime do differently than they say.
    warnings: &'a [String],
}

#[derive(Serialize)]
struct JsonEndpoint<'a> {
    endpoint: &'a str,
    ok: bool,
    phase: Option<Phase>,
    reason: Reason,
    message: Option<&'a str>,
}

#[derive(Serialize)]
struct JsonPhase {
    phase: Phase,
    seconds: f64,
}

#[derive(Serialize)]
struct JsonTls<'a> {
    version: Option<&'static str>,
    /// The earliest NotAfter of the presented chain and its trust anchor.
    earliest_not_after: Option<String>,
    /// The subject of the trust anchor the chain was verified against (or of the root that
    /// made it fail).
    anchor_subject: Option<&'a str>,
    anchor_not_after: Option<String>,
}

#[derive(Serialize)]
struct JsonRateLimit<'a> {
    limit: u64,
    remaining: u64,
    window_seconds: Option<u64>,
    source: Option<&'a str>,
}

fn seconds(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e6
}

fn success_message(r: &ProbeReport) -> String {
    match &r.digest {
        Some(d) => format!("{} resolves to {d}", r.image),
        None => format!(
            "{} exists (the registry sent no Docker-Content-Digest)",
            r.image
        ),
    }
}

fn rfc3339(unix: i64) -> Option<String> {
    let secs = u64::try_from(unix).ok()?;
    Some(
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(secs))
            .to_string(),
    )
}

/// Renders reports as the JSON document of `--output json`.
pub fn render_json(reports: &[ProbeReport]) -> String {
    let results = reports
        .iter()
        .map(|r| JsonResult {
            target: &r.target,
            image: &r.image,
            registry: &r.registry,
            ok: r.ok(),
            phase: r.phase(),
            reason: r.reason(),
            message: r
                .failure
                .as_ref()
                .map_or_else(|| success_message(r), |f| f.message.clone()),
            remedy: r.reason().remedy(),
            duration_seconds: seconds(r.duration),
            phases: r
                .phases
                .iter()
                .map(|p| JsonPhase {
                    phase: p.phase,
                    seconds: seconds(p.duration),
                })
                .collect(),
            address: r.address.map(|a| a.to_string()),
            tls: r.tls.as_ref().map(|t| JsonTls {
                version: t.version,
                earliest_not_after: t.earliest_not_after.and_then(rfc3339),
                anchor_subject: t.anchor_subject.as_deref(),
                anchor_not_after: t.anchor_not_after.and_then(rfc3339),
            }),
            digest: r.digest.as_deref(),
            rate_limit: r.rate_limit.as_ref().map(|l| JsonRateLimit {
                limit: l.limit,
                remaining: l.remaining,
                window_seconds: l.window_seconds,
                source: l.source.as_deref(),
            }),
            endpoint: &r.endpoint,
            endpoints: r
                .endpoints
                .iter()
                .map(|e| JsonEndpoint {
                    endpoint: &e.endpoint,
                    ok: e.ok(),
                    phase: e.failure.as_ref().map(|f| f.phase),
                    reason: e.failure.as_ref().map_or(Reason::Ok, |f| f.reason),
                    message: e.failure.as_ref().map(|f| f.message.as_str()),
                })
                .collect(),
            warnings: &r.warnings,
        })
        .collect();
    let mut s = serde_json::to_string_pretty(&JsonOutput { results })
        .expect("serialising plain data cannot fail");
    s.push('\n');
    s
}

// ---- text --------------------------------------------------------------------------------

/// The endpoints asked, when there is more than the registry itself: "mirror
/// mirror.internal:5000 connect_refused → registry-1.docker.io ok".
fn write_chain(out: &mut String, r: &ProbeReport) {
    if r.endpoints.len() < 2 && r.endpoints.iter().all(|e| e.upstream) {
        return;
    }
    let _ = writeln!(
        out,
        "    endpoints:   (asked in this order, as the node's runtime asks them)"
    );
    for e in &r.endpoints {
        let kind = if e.upstream { "registry" } else { "mirror" };
        match &e.failure {
            None => {
                let _ = writeln!(out, "      {kind} {}: ok", e.endpoint);
            }
            Some(f) => {
                let _ = writeln!(
                    out,
                    "      {kind} {}: {} at {} — {}",
                    e.endpoint, f.reason, f.phase, f.message
                );
            }
        }
    }
    if r.ok() && r.endpoints.len() > 1 {
        let _ = writeln!(out, "      → the pull uses {}", r.endpoint);
    }
}

fn millis(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// Renders reports as the table and explanations of `--output text`.
pub fn render_text(reports: &[ProbeReport]) -> String {
    let mut rows: Vec<Vec<String>> = vec![
        [
            "TARGET", "REGISTRY", "DNS", "CONNECT", "TLS", "AUTH", "MANIFEST", "RESULT",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect(),
    ];
    for r in reports {
        let mut row = vec![r.target.clone(), r.registry.clone()];
        for phase in Phase::ALL {
            let cell = match (r.phase_duration(phase), r.phase()) {
                (Some(d), Some(p)) if p == phase => format!("{} FAIL", millis(d)),
                (Some(d), _) => millis(d),
                (None, _) => "-".to_owned(),
            };
            row.push(cell);
        }
        row.push(if r.ok() {
            "ok".to_owned()
        } else {
            format!("FAIL {}", r.reason())
        });
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }

    for r in reports {
        let _ = writeln!(out);
        match &r.failure {
            None => {
                let _ = writeln!(out, "ok  {} ({})", r.target, r.image);
                let _ = writeln!(out, "    {}", success_message(r));
            }
            Some(f) => {
                let via = if r.endpoint.is_empty() || r.endpoint == r.registry {
                    r.registry.clone()
                } else {
                    format!("{}, the node's endpoint for {}", r.endpoint, r.registry)
                };
                let _ = writeln!(out, "FAIL  {} ({} via {via})", r.target, r.image);
                let _ = writeln!(out, "    failed step: {}", f.phase);
                let _ = writeln!(out, "    what:        {}", f.message);
                let _ = writeln!(
                    out,
                    "    why:         {} — {}",
                    f.reason,
                    f.reason.meaning()
                );
                if let Some(remedy) = f.reason.remedy() {
                    let _ = writeln!(out, "    what to do:  {remedy}");
                }
            }
        }
        write_chain(&mut out, r);
        for w in &r.warnings {
            let _ = writeln!(out, "    warning:     {w}");
        }
        if let Some(a) = r.address {
            let _ = writeln!(out, "    address:     {a}");
        }
        if let Some(t) = &r.tls {
            let expiry = t
                .earliest_not_after
                .and_then(rfc3339)
                .unwrap_or_else(|| "unknown".to_owned());
            let _ = writeln!(
                out,
                "    tls:         {} (chain valid until {expiry})",
                t.version.unwrap_or("handshake not completed")
            );
            if let Some(anchor) = &t.anchor_subject {
                let until = t
                    .anchor_not_after
                    .and_then(rfc3339)
                    .map(|u| format!(" (valid until {u})"))
                    .unwrap_or_default();
                let _ = writeln!(out, "    chain root:  {anchor}{until}");
            }
        }
        if let Some(l) = &r.rate_limit {
            let window = l
                .window_seconds
                .map(|w| {
                    format!(
                        " per {}",
                        humantime::format_duration(Duration::from_secs(w))
                    )
                })
                .unwrap_or_default();
            let source = l
                .source
                .as_deref()
                .map(|s| format!(", counted against {s}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "    rate limit:  {} of {} pulls left{window}{source}",
                l.remaining, l.limit
            );
        }
    }
    let ok = reports.iter().filter(|r| r.ok()).count();
    let _ = writeln!(out, "\n{ok} of {} targets ok", reports.len());
    out
}
