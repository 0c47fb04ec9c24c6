//! Logging through tracing-subscriber: human-readable lines or JSON, to stderr.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. The filter comes from `RUST_LOG` when it is set, else from
/// `level` (a level or a filter directive such as `dapsync=debug,sqlx=warn`).
///
/// Returns an error if a subscriber is already installed or the filter does not parse.
pub fn init(
    format: LogFormat,
    level: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives)?,
        _ => EnvFilter::try_new(default_directives(level))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    }
}

/// `level` for dapsync, and quieter defaults for chatty dependencies unless the user named them
/// (sqlx warns about every statement over a second, which bulk loads are by design).
fn default_directives(level: &str) -> String {
    if level.contains('=') {
        level.to_owned()
    } else {
        format!("{level},sqlx=error,hyper=warn,reqwest=warn,tokio_cron_scheduler=warn")
    }
}
