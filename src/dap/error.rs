//! Errors of the DAP API and of talking to it.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The kind of an error response, told apart by `error.type` (SPEC section 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// Bad credentials or token.
    Authentication,
    AccountNotOnboarded,
    AccountDisabled,
    AccountUnderMaintenance,
    /// Our request was malformed: a bug, never retried.
    Validation { line: Option<u64>, column: Option<u64>, character: Option<u64> },
    /// A table, namespace, job or object is gone.
    NotFound { id: Option<String>, kind: Option<String> },
    /// `since` is outside the retained range.
    OutOfRange { since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>> },
    /// The table was reloaded upstream: a new snapshot is needed.
    SnapshotRequired { since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>> },
    /// A server-side job failure; often transient.
    Processing,
    /// HTTP 504.
    GatewayTimeout,
    /// HTTP 429, with the server's `Retry-After` if it sent one.
    RateLimited { retry_after: Option<Duration> },
    /// Any other server error: a 5xx, or a body that is not a DAP error (a gateway page).
    Server,
    /// An error type this client does not know.
    Other { type_name: String },
}

/// An error the API answered with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind_name} (HTTP {status}, uuid {uuid}): {message}", kind_name = self.type_name(), status = self.status.map_or_else(|| "-".to_owned(), |s| s.to_string()), uuid = self.uuid.as_deref().unwrap_or("-"))]
pub struct ApiError {
    pub kind: ApiErrorKind,
    /// HTTP status, absent for errors reported inside a failed job.
    pub status: Option<u16>,
    /// The server's error uuid: what Instructure support asks for.
    pub uuid: Option<String>,
    pub message: String,
}

impl ApiError {
    /// The DAP `error.type` name of this error, such as `SnapshotRequiredError`.
    pub fn type_name(&self) -> &str {
        match &self.kind {
            ApiErrorKind::Authentication => "AuthenticationError",
            ApiErrorKind::AccountNotOnboarded => "AccountNotOnboarded",
            ApiErrorKind::AccountDisabled => "AccountDisabled",
            ApiErrorKind::AccountUnderMaintenance => "AccountUnderMaintenance",
            ApiErrorKind::Validation { .. } => "ValidationError",
            ApiErrorKind::NotFound { .. } => "NotFoundError",
            ApiErrorKind::OutOfRange { .. } => "OutOfRangeError",
            ApiErrorKind::SnapshotRequired { .. } => "SnapshotRequiredError",
            ApiErrorKind::Processing => "ProcessingError",
            ApiErrorKind::GatewayTimeout => "GatewayTimeoutError",
            ApiErrorKind::RateLimited { .. } => "RateLimited",
            ApiErrorKind::Server => "ServerError",
            ApiErrorKind::Other { type_name } => type_name,
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            ApiErrorKind::Processing
                | ApiErrorKind::GatewayTimeout
                | ApiErrorKind::RateLimited { .. }
                | ApiErrorKind::Server
        )
    }

    /// Whether the error concerns the whole account, so every table should pause.
    pub fn is_account_level(&self) -> bool {
        matches!(
            self.kind,
            ApiErrorKind::AccountNotOnboarded
                | ApiErrorKind::AccountDisabled
                | ApiErrorKind::AccountUnderMaintenance
        )
    }
}

/// Everything that can go wrong talking to DAP.
#[derive(Debug, thiserror::Error)]
pub enum DapError {
    #[error("DAP answered {endpoint} with {error}")]
    Api { endpoint: &'static str, error: ApiError },
    #[error("request to {endpoint} failed")]
    Transport {
        endpoint: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("object {object_id} is incomplete: {reason}")]
    IncompleteObject { object_id: String, reason: String },
    #[error("could not decode the answer of {endpoint}: {reason}")]
    Decode { endpoint: &'static str, reason: String },
    #[error("job {job_id} did not finish within {waited:?}")]
    JobTimeout { job_id: String, waited: Duration },
    #[error("job {job_id} failed: {error}")]
    JobFailed { job_id: String, error: ApiError },
    #[error("gave up on {endpoint} after {attempts} attempts")]
    RetriesExhausted {
        endpoint: &'static str,
        attempts: u32,
        #[source]
        last: Box<DapError>,
    },
    #[error("invalid client setting: {0}")]
    Config(String),
}

impl DapError {
    /// The API error behind this error, if the server sent one.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            DapError::Api { error, .. } | DapError::JobFailed { error, .. } => Some(error),
            DapError::RetriesExhausted { last, .. } => last.api_error(),
            _ => None,
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            DapError::Api { error, .. } | DapError::JobFailed { error, .. } => error.is_transient(),
            DapError::Transport { .. } | DapError::IncompleteObject { .. } | DapError::JobTimeout { .. } => {
                true
            }
            DapError::RetriesExhausted { last, .. } => last.is_transient(),
            DapError::Decode { .. } | DapError::Config(_) => false,
        }
    }

    /// Whether the error concerns the whole account, so every table should pause.
    pub fn is_account_level(&self) -> bool {
        self.api_error().is_some_and(ApiError::is_account_level)
    }

    /// Whether the chain of incrementals cannot be continued and a new snapshot is needed
    /// (SnapshotRequiredError or OutOfRangeError).
    pub fn needs_snapshot(&self) -> bool {
        self.api_error().is_some_and(|e| {
            matches!(e.kind, ApiErrorKind::SnapshotRequired { .. } | ApiErrorKind::OutOfRange { .. })
        })
    }

    /// The server's error uuid, if any.
    pub fn uuid(&self) -> Option<&str> {
        self.api_error().and_then(|e| e.uuid.as_deref())
    }

    /// A short name for the kind of error, for run history and metrics.
    pub fn type_name(&self) -> &str {
        match self {
            DapError::Api { error, .. } | DapError::JobFailed { error, .. } => error.type_name(),
            DapError::Transport { .. } => "TransportError",
            DapError::IncompleteObject { .. } => "IncompleteObject",
            DapError::Decode { .. } => "DecodeError",
            DapError::JobTimeout { .. } => "JobTimeout",
            DapError::RetriesExhausted { last, .. } => last.type_name(),
            DapError::Config(_) => "ConfigError",
        }
    }
}
