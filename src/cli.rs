//! Command-line flags, named the Prometheus way (`--config.file`, `--log.level`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::platform::Platform;

/// Exit status when every target is ok.
pub const EXIT_OK: u8 = 0;
/// Exit status when at least one target failed.
pub const EXIT_PROBE_FAILED: u8 = 1;
/// Exit status for a usage or configuration error.
pub const EXIT_USAGE: u8 = 2;

/// Can this node pull its images right now? Probes the image-pull path (DNS, TCP, TLS,
/// registry auth, manifest) and names the failing step.
///
/// Without --check, runs the agent: probes on a schedule and serves Prometheus metrics.
#[derive(Debug, Parser)]
#[command(
    name = "pullprobe",
    version,
    after_help = "Exit status of --check: 0 all targets ok, 1 at least one target failed, 2 usage or configuration error."
)]
pub struct Cli {
    /// Probe every target once, explain the result and exit. Besides resolving the tag, it
    /// fetches each image's manifest or index (one GET) to check that the node's platform is in
    /// it; on Docker Hub that GET counts as one pull against the node's pull quota.
    #[arg(long)]
    pub check: bool,

    /// With --check: the platform image indexes must offer, as os/arch[/variant] (for example
    /// linux/arm64). Default: this machine's.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = parse_platform, requires = "check")]
    pub platform: Option<Platform>,

    /// Configuration file (YAML). Without it, an embedded default probes well-known public registries.
    #[arg(long = "config.file", value_name = "PATH")]
    pub config_file: Option<PathBuf>,

    /// Output format of --check.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// Address the agent's HTTP server (metrics, health, reload) listens on.
    #[arg(
        long = "web.listen-address",
        value_name = "ADDR",
        default_value = "0.0.0.0:9865"
    )]
    pub web_listen_address: SocketAddr,

    /// How often the agent checks the config file, and the files it references, for changes
    /// (by content, so a ConfigMap symlink swap is seen). 0s disables the check.
    #[arg(
        long = "config.watch-interval",
        value_name = "DURATION",
        default_value = "5s",
        value_parser = humantime::parse_duration
    )]
    pub config_watch_interval: Duration,

    /// At most this many probes run at the same time, across all targets.
    #[arg(
        long = "probe.concurrency",
        value_name = "N",
        default_value_t = 16,
        value_parser = parse_concurrency
    )]
    pub probe_concurrency: usize,

    /// Prometheus exporter-toolkit web configuration (TLS, basic auth) for the HTTP server.
    #[arg(long = "web.config.file", value_name = "PATH")]
    pub web_config_file: Option<PathBuf>,

    /// Log level: error, warn, info, debug or trace.
    #[arg(long = "log.level", value_name = "LEVEL", default_value = "info", value_parser = parse_log_level)]
    pub log_level: String,

    /// Log format on stderr.
    #[arg(long = "log.format", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// With --check: images to probe instead of the configured targets. A configured target on
    /// the same registry host lends its tls, docker_config and plain_http settings.
    #[arg(value_name = "IMAGE", requires = "check")]
    pub images: Vec<String>,
}

/// A `--platform` value.
fn parse_platform(s: &str) -> Result<Platform, String> {
    Platform::parse(s).map_err(|e| e.to_string())
}

/// The log levels `--log.level` knows (Prometheus exporters' names; `warning` is not one).
pub const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// A `--log.level` value: one of [`LOG_LEVELS`], in any case.
fn parse_log_level(s: &str) -> Result<String, String> {
    let lower = s.trim().to_ascii_lowercase();
    if LOG_LEVELS.contains(&lower.as_str()) {
        Ok(lower)
    } else {
        Err(format!(
            "{s:?} is not a log level; use one of {}",
            LOG_LEVELS.join(", ")
        ))
    }
}

/// A probe concurrency: a whole number from 1 to 1024.
fn parse_concurrency(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=1024).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a whole number from 1 to 1024")),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flags_parse() {
        Cli::command().debug_assert();
        let c = Cli::try_parse_from([
            "pullprobe",
            "--check",
            "--config.file",
            "/etc/p.yaml",
            "--output",
            "json",
            "--log.level",
            "debug",
            "--log.format",
            "json",
            "nginx",
            "redis:7",
        ])
        .unwrap();
        assert!(c.check);
        assert_eq!(c.output, OutputFormat::Json);
        assert_eq!(c.images, ["nginx", "redis:7"]);
        assert!(
            Cli::try_parse_from(["pullprobe", "nginx"]).is_err(),
            "IMAGE needs --check"
        );
        assert!(Cli::try_parse_from(["pullprobe", "--check", "--output", "xml"]).is_err());
    }

    #[test]
    fn log_levels_are_a_closed_set() {
        let level = |l: &str| Cli::try_parse_from(["pullprobe", "--log.level", l]);
        assert_eq!(level("DEBUG").unwrap().log_level, "debug");
        for bad in ["warning", "verbose", "pullprobe=debug", ""] {
            let e = level(bad).unwrap_err().to_string();
            assert!(e.contains("error, warn, info, debug, trace"), "{bad}: {e}");
        }
    }

    #[test]
    fn platform_flag() {
        let c =
            Cli::try_parse_from(["pullprobe", "--check", "--platform", "linux/arm64/v8"]).unwrap();
        assert_eq!(c.platform.unwrap().to_string(), "linux/arm64");
        assert!(Cli::try_parse_from(["pullprobe", "--check", "--platform", "arm64"]).is_err());
        assert!(
            Cli::try_parse_from(["pullprobe", "--platform", "linux/amd64"]).is_err(),
            "--platform needs --check"
        );
    }

    #[test]
    fn agent_flags() {
        let c = Cli::try_parse_from(["pullprobe"]).unwrap();
        assert_eq!(c.config_watch_interval, Duration::from_secs(5));
        assert_eq!(c.probe_concurrency, 16);
        let c = Cli::try_parse_from([
            "pullprobe",
            "--config.watch-interval",
            "0s",
            "--probe.concurrency",
            "4",
        ])
        .unwrap();
        assert!(c.config_watch_interval.is_zero());
        assert_eq!(c.probe_concurrency, 4);
        assert!(Cli::try_parse_from(["pullprobe", "--probe.concurrency", "0"]).is_err());
        assert!(Cli::try_parse_from(["pullprobe", "--config.watch-interval", "soon"]).is_err());
    }
}
