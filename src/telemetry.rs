//! Logging to stderr with tracing: text or JSON, filtered by `--log.level`.

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Installs the global subscriber.
///
/// # Errors
/// When `level` is not a valid filter directive.
pub fn init(level: &str, format: LogFormat) -> Result<(), String> {
    let filter =
        EnvFilter::try_new(level).map_err(|e| format!("invalid --log.level {level:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| format!("cannot install the logger: {e}"))
}
