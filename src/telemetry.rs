//! Logging to stderr with tracing: text or JSON, filtered by `--log.level`.

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Installs the global subscriber.
///
/// # Errors
/// When `level` is not a valid filter directive.
pub fn init(level: &str, format: LogFormat) -> Result<(), String> {
    let mut filter =
        EnvFilter::try_new(level).map_err(|e| format!("invalid --log.level {level:?}: {e}"))?;
    // The Kubernetes client logs its own errors in its own words ("client error
    // (SendRequest)"); pullprobe reports the same failures in words (`cluster`), so its
    // events never reach the log.
    for quiet in ["kube_client=off", "kube_runtime=off", "kube=off"] {
        filter = filter.add_directive(quiet.parse().expect("a valid directive"));
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Logfmt => builder.event_format(Logfmt).try_init(),
    };
    result.map_err(|e| format!("cannot install the logger: {e}"))
}

/// logfmt lines as Prometheus and its exporters write them (go-kit log, promslog):
/// `ts=2026-12-01T06:00:00.000Z level=info msg="Target is ok" target=hub registry=…`.
struct Logfmt;

/// A logfmt value: bare when it needs no quoting, else quoted with `"` and `\` escaped.
fn logfmt_value(v: &str) -> String {
    if !v.is_empty() && !v.contains(|c: char| c <= ' ' || c == '"' || c == '=' || c == '\\') {
        return v.to_owned();
    }
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The line so far, and whether the event's message (`msg`) has been written: a field that is
/// itself called `message` comes after it and keeps its name.
struct LogfmtFields(String, bool);

impl tracing::field::Visit for LogfmtFields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.push(field.name(), value);
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.push(field.name(), &format!("{value:?}"));
    }
}

impl LogfmtFields {
    fn push(&mut self, name: &str, value: &str) {
        let name = if name == "message" && !self.1 {
            self.1 = true;
            "msg"
        } else {
            name
        };
        self.0.push(' ');
        self.0.push_str(name);
        self.0.push('=');
        self.0.push_str(&logfmt_value(value));
    }
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Logfmt
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let ts = humantime::format_rfc3339_millis(std::time::SystemTime::now());
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        let mut fields = LogfmtFields(String::new(), false);
        event.record(&mut fields);
        writeln!(writer, "ts={ts} level={level}{}", fields.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_values_are_quoted_as_go_kit_quotes_them() {
        assert_eq!(logfmt_value("hub"), "hub");
        assert_eq!(logfmt_value("Target is ok"), "\"Target is ok\"");
        assert_eq!(logfmt_value(""), "\"\"");
        assert_eq!(logfmt_value("a=b"), "\"a=b\"");
        assert_eq!(logfmt_value("say \"x\"\n"), "\"say \\\"x\\\"\\n\"");
    }
}
