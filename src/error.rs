//! The top-level error of a dapsync command, and the process exit codes.

use crate::config::ConfigError;
use crate::dap::DapError;
use crate::db::DbError;
use crate::export::ExportError;
use crate::scheduler::SchedulerError;
use crate::schema::SchemaError;
use crate::sync::SyncError;
use crate::webhook::WebhookError;

/// Exit code: one or more tables failed, or the command failed.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code: the command line is invalid (clap's own code).
pub const EXIT_USAGE: i32 = 2;
/// Exit code: the configuration is invalid or incomplete.
pub const EXIT_CONFIG: i32 = 3;

/// Anything that stops a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration")]
    Config(#[from] ConfigError),
    #[error("DAP API")]
    Dap(#[from] DapError),
    #[error("database")]
    Db(#[from] DbError),
    #[error("table schema")]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error("scheduler")]
    Scheduler(#[from] SchedulerError),
    #[error("webhooks")]
    Webhook(#[from] WebhookError),
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Dap(e) => e.is_transient(),
            Error::Db(e) => e.is_transient(),
            Error::Sync(e) => e.is_transient(),
            Error::Export(ExportError::Dap(e)) => e.is_transient(),
            Error::Export(_)
            | Error::Config(_)
            | Error::Schema(_)
            | Error::Scheduler(_)
            | Error::Webhook(_)
            | Error::Io { .. }
            | Error::Usage(_) => false,
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) => EXIT_CONFIG,
            Error::Usage(_) => EXIT_USAGE,
            _ => EXIT_FAILURE,
        }
    }

    /// The error and its causes on one line.
    pub fn chain(&self) -> String {
        chain(self)
    }
}

/// An error and its causes on one line, each cause once (some errors, sqlx's among them, already
/// show their source's message).
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
