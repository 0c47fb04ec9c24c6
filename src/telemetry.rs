//! Logging through tracing-subscriber: human-readable lines or JSON, to stderr and/or a file.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};

use crate::config::LogFormat;

/// Cleared by the official client's `--non-interactive`.
static INTERACTIVE: AtomicBool = AtomicBool::new(true);

/// Allows or forbids progress lines and colours (`--non-interactive` forbids them).
pub fn set_interactive(interactive: bool) {
    INTERACTIVE.store(interactive, Ordering::Relaxed);
}

/// Whether a progress line may be drawn: stderr is a terminal, and not `--non-interactive`.
pub fn interactive_terminal() -> bool {
    INTERACTIVE.load(Ordering::Relaxed) && std::io::IsTerminal::is_terminal(&std::io::stderr())
}

/// Where log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outputs {
    /// To stderr.
    pub console: bool,
    /// Also appended to this file.
    pub file: Option<PathBuf>,
}

impl Default for Outputs {
    /// stderr only.
    fn default() -> Self {
        Self {
            console: true,
            file: None,
        }
    }
}

/// Installs the global subscriber, logging to stderr. The filter comes from `RUST_LOG` when it is
/// set, else from `level` (a level or a filter directive such as `dapsync=debug,sqlx=warn`).
///
/// Returns an error if a subscriber is already installed or the filter does not parse.
pub fn init(
    format: LogFormat,
    level: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    init_to(format, level, &Outputs::default())
}

/// [`init`], logging to `outputs`: stderr, a file, both or neither.
pub fn init_to(
    format: LogFormat,
    level: &str,
    outputs: &Outputs,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives)?,
        _ => EnvFilter::try_new(default_directives(level))?,
    };
    let file = match &outputs.file {
        Some(path) => Some(Arc::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open the log file {}: {e}", path.display()))?,
        )),
        None => None,
    };
    let writer = match (outputs.console, file) {
        (true, None) => BoxMakeWriter::new(std::io::stderr),
        (true, Some(file)) => BoxMakeWriter::new(std::io::stderr.and(file)),
        (false, Some(file)) => BoxMakeWriter::new(file),
        (false, None) => BoxMakeWriter::new(std::io::sink),
    };
    let ansi = outputs.console && outputs.file.is_none() && interactive_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.with_ansi(ansi).try_init(),
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
