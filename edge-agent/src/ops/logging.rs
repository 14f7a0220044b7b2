//! Log set-up: JSON lines for journald/Loki, or text for a terminal.

use tracing_subscriber::EnvFilter;

use super::config::LogFormat;

/// Installs the global subscriber. The level comes from `RUST_LOG`
/// (default `info`). Calling it twice is harmless: the second call is ignored.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
