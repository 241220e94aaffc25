//! Command-line flags, named the Prometheus way (`--config.file`, `--log.level`).

use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, ValueEnum};

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
    after_help = "Modes: with --check, probe once and print the result (--output, --platform, IMAGE, --pod, --kubeconfig apply); without it, run the agent (--web.listen-address, --web.config.file, --config.watch-interval apply). A flag of the other mode is a usage error.\n\nExit status of --check: 0 all targets ok, 1 at least one target failed, 2 usage or configuration error."
)]
pub struct Cli {
    /// Probe every target once, explain the result and exit. Besides resolving the tag, it
    /// fetches each image's manifest or index (one GET) to check that the node's platform is in
    /// it; on Docker Hub that GET counts as one pull against the node's pull quota.
    #[arg(long)]
    pub check: bool,

    /// With --check: the platform image indexes must offer, as os/arch[/variant] (for example
    /// linux/arm64). Default: this machine's.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = parse_platform)]
    pub platform: Option<Platform>,

    /// Configuration file (YAML). Without it, an embedded default probes well-known public registries.
    #[arg(long = "config.file", value_name = "PATH")]
    pub config_file: Option<PathBuf>,

    /// With --check: the output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// Agent: the address its HTTP server (metrics, health, reload) listens on, in
    /// Prometheus' forms: `:9865` (every interface), `127.0.0.1:9865`, `[::1]:9865`,
    /// `localhost:9865`.
    #[arg(
        long = "web.listen-address",
        value_name = "ADDR",
        default_value = ":9865",
        value_parser = ListenAddress::parse
    )]
    pub web_listen_address: ListenAddress,

    /// Agent: the path the metrics are served at.
    #[arg(
        long = "web.telemetry-path",
        value_name = "PATH",
        default_value = "/metrics",
        value_parser = parse_telemetry_path
    )]
    pub web_telemetry_path: String,

    /// Agent: how often it checks the config file, and the files it references, for changes
    /// (by content, so a ConfigMap symlink swap is seen). 0s disables the check.
    #[arg(
        long = "config.watch-interval",
        value_name = "DURATION",
        default_value = "5s",
        // `-5s` reaches the parser, which says it is negative (not clap's "unexpected
        // argument '-5'").
        allow_hyphen_values = true,
        value_parser = parse_watch_interval
    )]
    pub config_watch_interval: Duration,

    /// At most this many probes run at the same time, across all targets.
    #[arg(
        long = "probe.concurrency",
        value_name = "N",
        default_value_t = 16,
        allow_negative_numbers = true,
        value_parser = parse_concurrency
    )]
    pub probe_concurrency: usize,

    /// Agent: Prometheus exporter-toolkit web configuration (TLS, basic auth) for its HTTP server.
    #[arg(long = "web.config.file", value_name = "PATH")]
    pub web_config_file: Option<PathBuf>,

    /// Log level: error, warn, info, debug or trace.
    #[arg(long = "log.level", value_name = "LEVEL", default_value = "info", value_parser = parse_log_level)]
    pub log_level: String,

    /// Log format on stderr.
    #[arg(long = "log.format", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// With --check: what to probe instead of every configured target. The name of a configured
    /// target, or its image, probes that target. Any other IMAGE is an image reference; a
    /// configured target on the same registry host lends it its tls, docker_config and
    /// plain_http settings. A bare target name (`secure`) is the target, not
    /// docker.io/library/secure. A name that is also another target's image, or is written
    /// as a reference (`team/app`) meaning another image, is refused as ambiguous: give the
    /// target's image, or the other image in full.
    #[arg(value_name = "IMAGE", conflicts_with = "pods")]
    pub images: Vec<String>,

    /// With --check: explain why a pod's images do or do not pull on this node. Reads the pod,
    /// its pull secrets, its service account and its events, and probes every image of its
    /// init, regular and ephemeral containers with the credentials kubelet would use. Repeat it
    /// for several pods. Run it on the pod's node (kubectl debug node/NODE, or exec into the
    /// pullprobe pod there).
    #[arg(long = "pod", value_name = "NAMESPACE/NAME", value_parser = PodName::parse)]
    pub pods: Vec<PodName>,

    /// With --pod: the kubeconfig to read the API with. Default: as kubectl finds it
    /// ($KUBECONFIG, ~/.kube/config), else the pod's service account.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
}

/// A `--pod` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodName {
    pub namespace: String,
    pub name: String,
}

impl PodName {
    fn parse(s: &str) -> Result<Self, String> {
        let fix = "write it as NAMESPACE/NAME, like --pod shop/cart-7d9f (kubectl get pods -A lists both)";
        let Some((ns, name)) = s.split_once('/') else {
            return Err(format!("`{s}` has no namespace; {fix}"));
        };
        // Namespaces are DNS labels, pod names DNS subdomains: lowercase letters, digits,
        // `-` and (in names) `.`.
        let ok = |t: &str, dot: bool| {
            !t.is_empty()
                && t.len() <= 253
                && t.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (dot && b == b'.')
                })
        };
        if !ok(ns, false) || !ok(name, true) {
            return Err(format!(
                "`{s}` is not a namespace and pod name (lowercase letters, digits and `-`; `.` in the name); {fix}"
            ));
        }
        Ok(PodName {
            namespace: ns.to_owned(),
            name: name.to_owned(),
        })
    }
}

impl std::fmt::Display for PodName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Flags (clap ids and how they are written) that only `--check` reads.
const CHECK_ONLY: [(&str, &str); 5] = [
    ("output", "--output"),
    ("platform", "--platform"),
    ("images", "IMAGE arguments"),
    ("pods", "--pod"),
    ("kubeconfig", "--kubeconfig"),
];

/// Flags that only the agent (no `--check`) reads.
const AGENT_ONLY: [(&str, &str); 4] = [
    ("web_listen_address", "--web.listen-address"),
    ("web_telemetry_path", "--web.telemetry-path"),
    ("web_config_file", "--web.config.file"),
    ("config_watch_interval", "--config.watch-interval"),
];

impl Cli {
    /// Parses the process's arguments; on a usage error prints it and exits with status 2.
    pub fn parse_args() -> Self {
        Self::try_parse_args(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// Parses `args` (the first is the program name) and checks that every flag given applies
    /// to the mode chosen (`--check` or the agent).
    ///
    /// # Errors
    /// A usage error (clap's, exit status 2), naming the flags that do not apply and the mode.
    pub fn try_parse_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut cmd = Self::command();
        let matches = cmd.try_get_matches_from_mut(args)?;
        let cli = Self::from_arg_matches(&matches)?;
        match mode_conflict(&matches, cli.check) {
            Some(message) => Err(cmd.error(clap::error::ErrorKind::ArgumentConflict, message)),
            None => Ok(cli),
        }
    }
}

/// The flags given that the chosen mode does not read, as a usage message.
fn mode_conflict(matches: &ArgMatches, check: bool) -> Option<String> {
    let given = |id: &str| {
        matches
            .value_source(id)
            .is_some_and(|s| s != ValueSource::DefaultValue)
    };
    let list: &[(&str, &str)] = if check { &AGENT_ONLY } else { &CHECK_ONLY };
    let wrong: Vec<&str> = list
        .iter()
        .filter(|(id, _)| given(id))
        .map(|(_, flag)| *flag)
        .collect();
    if wrong.is_empty() {
        return None;
    }
    let flags = wrong.join(", ");
    let verb = if wrong.len() == 1 && !wrong[0].starts_with("IMAGE") {
        "applies"
    } else {
        "apply"
    };
    Some(if check {
        format!(
            "{flags} {verb} only to the agent (pullprobe without --check); --check probes once, prints the result and serves nothing. Remove {flags}, or drop --check to run the agent"
        )
    } else {
        format!(
            "{flags} {verb} only to --check; without --check pullprobe runs the agent, which serves its results as metrics. Add --check to probe once and print the result, or remove {flags}"
        )
    })
}

/// A `--config.watch-interval` value: a duration, `0s` to turn the check off.
fn parse_watch_interval(s: &str) -> Result<Duration, String> {
    crate::config::parse_duration(s).map_err(|problem| {
        format!("{problem}; write it like 5s, 1m or 1h30m, or 0s to turn the check off")
    })
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
            "{s} is not a log level; use one of {}",
            LOG_LEVELS.join(", "),
            s = crate::config::quote(s)
        ))
    }
}

/// A probe concurrency: a whole number from 1 to 1024.
fn parse_concurrency(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=1024).contains(&n) => Ok(n),
        _ => Err(format!(
            "{s} is not a whole number from 1 to 1024",
            s = crate::config::quote(s)
        )),
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
    /// `ts=… level=… msg="…" key=value`, as Prometheus and its exporters log.
    Logfmt,
    Json,
}

/// `--web.listen-address` as Prometheus reads it (Go's `net.Listen("tcp", addr)`): an empty
/// host listens on every interface, a name is resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenAddress {
    /// Empty for every interface; an IPv6 literal without brackets.
    pub host: String,
    pub port: u16,
}

impl ListenAddress {
    /// # Errors
    /// A sentence saying what is wrong and what the forms are.
    pub fn parse(s: &str) -> Result<Self, String> {
        let forms =
            "write host:port or :port, e.g. :9865, 127.0.0.1:9865, [::1]:9865 or localhost:9865";
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, p) = rest.split_once("]:").ok_or_else(|| {
                format!(
                    "{s} has no port after the IPv6 address; {forms}",
                    s = crate::config::quote(s)
                )
            })?;
            h.parse::<std::net::Ipv6Addr>().map_err(|_| {
                format!(
                    "{h} is not an IPv6 address; {forms}",
                    h = crate::config::quote(h)
                )
            })?;
            (h, p)
        } else {
            let (h, p) = s
                .rsplit_once(':')
                .ok_or_else(|| format!("{s} has no port; {forms}", s = crate::config::quote(s)))?;
            if h.contains(':') {
                return Err(format!(
                    "write the IPv6 address {h} in brackets; {forms}",
                    h = crate::config::quote(h)
                ));
            }
            (h, p)
        };
        let port = port.parse::<u16>().map_err(|_| {
            format!(
                "{port} is not a port number (0-65535); {forms}",
                port = crate::config::quote(port)
            )
        })?;
        if host.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(format!(
                "{host} is not a host name or address; {forms}",
                host = crate::config::quote(host)
            ));
        }
        Ok(ListenAddress {
            host: host.to_owned(),
            port,
        })
    }

    /// The addresses to try binding, in order: every interface is `[::]` (dual-stack) then
    /// `0.0.0.0` for a kernel without IPv6; a name is resolved.
    pub fn candidates(&self) -> Vec<String> {
        if self.host.is_empty() {
            vec![
                format!("[::]:{}", self.port),
                format!("0.0.0.0:{}", self.port),
            ]
        } else if self.host.contains(':') {
            vec![format!("[{}]:{}", self.host, self.port)]
        } else {
            vec![format!("{}:{}", self.host, self.port)]
        }
    }
}

impl std::fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// `--web.telemetry-path`: an absolute path that is not one of the agent's own pages.
fn parse_telemetry_path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') || s.contains(['?', '#', ' ']) {
        return Err(format!(
            "{s} is not an absolute URL path; write one like /metrics",
            s = crate::config::quote(s)
        ));
    }
    if s == "/" || s.starts_with("/-/") {
        return Err(format!(
            "{s} is taken by the agent's own pages (/ and /-/…); choose another, e.g. /metrics",
            s = crate::config::quote(s)
        ));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    // Prometheus' --web.listen-address forms (Go `net.Listen("tcp", addr)`).
    #[test]
    fn listen_addresses_in_prometheus_forms() {
        let p = |s: &str| ListenAddress::parse(s).map(|a| a.candidates());
        assert_eq!(p(":9865").unwrap(), ["[::]:9865", "0.0.0.0:9865"]);
        assert_eq!(p("0.0.0.0:9865").unwrap(), ["0.0.0.0:9865"]);
        assert_eq!(p("localhost:9865").unwrap(), ["localhost:9865"]);
        assert_eq!(p("[::1]:9865").unwrap(), ["[::1]:9865"]);
        assert_eq!(
            ListenAddress::parse("[::1]:9865").unwrap().to_string(),
            "[::1]:9865"
        );
        for bad in [
            "9865",
            "::1:9865",
            "localhost:http",
            "[nope]:1",
            "a b:1",
            ":99999",
        ] {
            let e = ListenAddress::parse(bad).unwrap_err();
            assert!(e.contains("e.g. :9865"), "{bad}: {e}");
        }
        let c =
            Cli::try_parse_args(["pullprobe", "--web.listen-address", "localhost:9865"]).unwrap();
        assert_eq!(c.web_listen_address.host, "localhost");
        assert_eq!(
            Cli::try_parse_args(["pullprobe"])
                .unwrap()
                .web_listen_address
                .host,
            ""
        );
    }

    #[test]
    fn telemetry_paths_and_logfmt() {
        let c = Cli::try_parse_args([
            "pullprobe",
            "--web.telemetry-path",
            "/probe/metrics",
            "--log.format",
            "logfmt",
        ])
        .unwrap();
        assert_eq!(c.web_telemetry_path, "/probe/metrics");
        assert_eq!(c.log_format, LogFormat::Logfmt);
        for bad in ["metrics", "/", "/-/ready", "/a b"] {
            assert!(parse_telemetry_path(bad).is_err(), "{bad}");
        }
        // An agent flag with --check is a usage error naming the mode.
        assert!(
            Cli::try_parse_args(["pullprobe", "--check", "--web.telemetry-path", "/m"]).is_err()
        );
    }

    #[test]
    fn flags_parse() {
        Cli::command().debug_assert();
        let c = Cli::try_parse_args([
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
            Cli::try_parse_args(["pullprobe", "nginx"]).is_err(),
            "IMAGE needs --check"
        );
        assert!(Cli::try_parse_args(["pullprobe", "--check", "--output", "xml"]).is_err());
    }

    #[test]
    fn log_levels_are_a_closed_set() {
        let level = |l: &str| Cli::try_parse_args(["pullprobe", "--log.level", l]);
        assert_eq!(level("DEBUG").unwrap().log_level, "debug");
        for bad in ["warning", "verbose", "pullprobe=debug", ""] {
            let e = level(bad).unwrap_err().to_string();
            assert!(e.contains("error, warn, info, debug, trace"), "{bad}: {e}");
        }
    }

    #[test]
    fn platform_flag() {
        let c =
            Cli::try_parse_args(["pullprobe", "--check", "--platform", "linux/arm64/v8"]).unwrap();
        assert_eq!(c.platform.unwrap().to_string(), "linux/arm64");
        assert!(Cli::try_parse_args(["pullprobe", "--check", "--platform", "arm64"]).is_err());
        assert!(
            Cli::try_parse_args(["pullprobe", "--platform", "linux/amd64"]).is_err(),
            "--platform needs --check"
        );
    }

    #[test]
    fn agent_flags() {
        let c = Cli::try_parse_args(["pullprobe"]).unwrap();
        assert_eq!(c.config_watch_interval, Duration::from_secs(5));
        assert_eq!(c.probe_concurrency, 16);
        let c = Cli::try_parse_args([
            "pullprobe",
            "--config.watch-interval",
            "0s",
            "--probe.concurrency",
            "4",
        ])
        .unwrap();
        assert!(c.config_watch_interval.is_zero());
        assert_eq!(c.probe_concurrency, 4);
        assert!(Cli::try_parse_args(["pullprobe", "--probe.concurrency", "0"]).is_err());
        assert!(Cli::try_parse_args(["pullprobe", "--config.watch-interval", "soon"]).is_err());
    }

    #[test]
    fn flags_of_the_other_mode_are_usage_errors_naming_the_mode() {
        let err = |args: &[&str]| {
            let e = Cli::try_parse_args(std::iter::once("pullprobe").chain(args.iter().copied()))
                .unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
            e.to_string()
        };
        assert!(err(&["--output", "json"]).starts_with(
            "error: --output applies only to --check; without --check pullprobe runs the agent"
        ));
        assert!(
            err(&["--output", "text", "--platform", "linux/amd64", "nginx"])
                .starts_with("error: --output, --platform, IMAGE arguments apply only to --check;")
        );
        for flag in [
            ["--web.listen-address", "127.0.0.1:1"],
            ["--web.config.file", "/w.yaml"],
            ["--config.watch-interval", "5s"],
        ] {
            let e = err(&["--check", flag[0], flag[1]]);
            assert!(
                e.starts_with(&format!(
                    "error: {} applies only to the agent (pullprobe without --check); --check probes once",
                    flag[0]
                )),
                "{e}"
            );
        }
        // Flags both modes read, and defaults, are fine either way.
        for args in [
            vec![
                "pullprobe",
                "--probe.concurrency",
                "4",
                "--log.level",
                "debug",
            ],
            vec![
                "pullprobe",
                "--check",
                "--probe.concurrency",
                "4",
                "--config.file",
                "c.yaml",
            ],
        ] {
            Cli::try_parse_args(args).unwrap();
        }
    }

    #[test]
    fn watch_interval_says_what_a_duration_looks_like() {
        let e = Cli::try_parse_args(["pullprobe", "--config.watch-interval", "bogus"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`bogus` is not a duration (a number with a unit: s, m or h); write it like 5s, 1m or 1h30m, or 0s to turn the check off"),
            "{e}"
        );
        assert!(!e.contains("expected number"), "{e}");
        let e = Cli::try_parse_args(["pullprobe", "--config.watch-interval=-5s"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`-5s` is negative"), "{e}");
    }
}
