//! Errors of the DAP API and of talking to it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::job::parse_timestamp;

/// How much of a body that is not a DAP error goes into the message.
const MAX_BODY_EXCERPT: usize = 200;

/// The kind of an error response, told apart by `error.type` (SPEC section 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// Bad credentials or token.
    Authentication,
    /// The account has not been onboarded to DAP yet.
    AccountNotOnboarded,
    /// The account's access has been restricted.
    AccountDisabled,
    /// The account is under maintenance.
    AccountUnderMaintenance,
    /// Our request was malformed: a bug, never retried.
    Validation {
        /// Line of the invalid input (1-based).
        line: Option<u64>,
        /// Column within that line (1-based).
        column: Option<u64>,
        /// Character from the start of the input (1-based).
        character: Option<u64>,
    },
    /// A table, namespace, job or object is gone.
    NotFound {
        /// What was not found, such as a table name or a job id.
        id: Option<String>,
        /// The kind of thing not found: `namespace`, `table`, `object` or `job`.
        kind: Option<String>,
    },
    /// `since` is outside the retained range.
    OutOfRange {
        /// The earliest permitted timestamp.
        since: Option<DateTime<Utc>>,
        /// The latest permitted timestamp.
        until: Option<DateTime<Utc>>,
    },
    /// The table was reloaded upstream: a new snapshot is needed.
    SnapshotRequired {
        /// The earliest permitted timestamp.
        since: Option<DateTime<Utc>>,
        /// The latest permitted timestamp.
        until: Option<DateTime<Utc>>,
    },
    /// A server-side job failure; often transient.
    Processing,
    /// HTTP 504.
    GatewayTimeout,
    /// HTTP 429, with the server's `Retry-After` if it sent one.
    RateLimited {
        /// How long the server asked us to wait.
        retry_after: Option<Duration>,
    },
    /// Any other server error: a 5xx, or a body that is not a DAP error (a gateway page).
    Server,
    /// An error type this client does not know.
    Other {
        /// The `error.type` as sent.
        type_name: String,
    },
}

/// An error the API answered with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind_name} (HTTP {status}, uuid {uuid}): {message}", kind_name = self.type_name(), status = self.status.map_or_else(|| "-".to_owned(), |s| s.to_string()), uuid = self.uuid.as_deref().unwrap_or("-"))]
pub struct ApiError {
    /// What went wrong, by `error.type`.
    pub kind: ApiErrorKind,
    /// HTTP status, absent for errors reported inside a failed job.
    pub status: Option<u16>,
    /// The server's error uuid: what Instructure support asks for.
    pub uuid: Option<String>,
    /// The server's human-readable message (or the start of a non-DAP body).
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

    /// Whether trying again later may succeed. An error type this client does not know is
    /// transient when the server answered it with a 5xx status.
    pub fn is_transient(&self) -> bool {
        match self.kind {
            ApiErrorKind::Processing
            | ApiErrorKind::GatewayTimeout
            | ApiErrorKind::RateLimited { .. }
            | ApiErrorKind::Server => true,
            ApiErrorKind::Other { .. } => self.status.is_some_and(|s| s >= 500),
            _ => false,
        }
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

impl ApiError {
    /// Maps an error answer: by `error.type` when the body is a DAP error envelope, else by the
    /// HTTP status (gateway pages, `{"message": ...}` bodies). A 429 is always
    /// [`ApiErrorKind::RateLimited`], whatever its body.
    pub(super) fn from_response(status: u16, retry_after: Option<Duration>, body: &[u8]) -> Self {
        let json = serde_json::from_slice::<Value>(body).ok();
        let detail = json
            .as_ref()
            .and_then(|v| v.get("error"))
            .filter(|e| e.is_object());
        if status != 429
            && let Some(error) = detail.and_then(|d| Self::from_detail(d, Some(status)))
        {
            return error;
        }
        let kind = match status {
            401 => ApiErrorKind::Authentication,
            429 => ApiErrorKind::RateLimited { retry_after },
            504 => ApiErrorKind::GatewayTimeout,
            _ => ApiErrorKind::Server,
        };
        let message = detail
            .or(json.as_ref())
            .and_then(|v| string_field(v, "message"))
            .unwrap_or_else(|| body_excerpt(body));
        Self {
            kind,
            status: Some(status),
            uuid: detail.and_then(|d| string_field(d, "uuid")),
            message,
        }
    }

    /// Maps the inside of a DAP error envelope (also found in failed jobs); `None` when it has no
    /// `type`.
    pub(super) fn from_detail(detail: &Value, status: Option<u16>) -> Option<Self> {
        let type_name = detail.get("type")?.as_str()?;
        Some(Self {
            kind: ApiErrorKind::from_detail(type_name, detail),
            status,
            uuid: string_field(detail, "uuid"),
            message: string_field(detail, "message").unwrap_or_default(),
        })
    }

    /// A failed job's error: as [`ApiError::from_detail`], or a processing error that keeps the
    /// detail's uuid and message when it names no type.
    pub(super) fn from_job_detail(detail: &Value) -> Self {
        Self::from_detail(detail, None).unwrap_or_else(|| Self {
            kind: ApiErrorKind::Processing,
            status: None,
            uuid: string_field(detail, "uuid"),
            message: string_field(detail, "message")
                .unwrap_or_else(|| "the job failed without saying why".to_owned()),
        })
    }

    /// Whether the server rejected our credentials or token (whatever the body of a 401 says).
    pub(super) fn is_authentication(&self) -> bool {
        self.kind == ApiErrorKind::Authentication || self.status == Some(401)
    }
}

impl ApiErrorKind {
    /// The kind named by `error.type`, with its extra fields. Names are matched without a
    /// package prefix and without an `Error` suffix, since the type "typically corresponds to the
    /// fully-qualified exception class" of the server.
    fn from_detail(type_name: &str, detail: &Value) -> Self {
        let short = type_name.rsplit('.').next().unwrap_or(type_name);
        let short = short.strip_suffix("Error").unwrap_or(short);
        let timestamp = |name| {
            detail
                .get(name)
                .and_then(Value::as_str)
                .and_then(parse_timestamp)
        };
        let location = |name| {
            detail
                .get("location")
                .and_then(|l| l.get(name))
                .and_then(Value::as_u64)
        };
        match short {
            "Authentication" => Self::Authentication,
            "AccountNotOnboarded" => Self::AccountNotOnboarded,
            "AccountDisabled" => Self::AccountDisabled,
            "AccountUnderMaintenance" => Self::AccountUnderMaintenance,
            "Validation" => Self::Validation {
                line: location("line"),
                column: location("column"),
                character: location("character"),
            },
            // `ObjectNotFound` is the type in the API's own example of a 404.
            "NotFound" | "ObjectNotFound" => Self::NotFound {
                id: string_field(detail, "id"),
                kind: string_field(detail, "kind"),
            },
            "OutOfRange" => Self::OutOfRange {
                since: timestamp("since"),
                until: timestamp("until"),
            },
            "SnapshotRequired" => Self::SnapshotRequired {
                since: timestamp("since"),
                until: timestamp("until"),
            },
            "Processing" => Self::Processing,
            "GatewayTimeout" => Self::GatewayTimeout,
            _ => Self::Other {
                type_name: type_name.to_owned(),
            },
        }
    }
}

fn string_field(value: &Value, name: &str) -> Option<String> {
    value.get(name).and_then(Value::as_str).map(str::to_owned)
}

/// The start of a body that is not a DAP error (such as a gateway's HTML page), on one line.
fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut excerpt = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some((cut, _)) = excerpt.char_indices().nth(MAX_BODY_EXCERPT) {
        excerpt.truncate(cut);
        excerpt.push_str("...");
    }
    if excerpt.is_empty() {
        "(empty body)".to_owned()
    } else {
        excerpt
    }
}

/// Everything that can go wrong talking to DAP.
#[derive(Debug, thiserror::Error)]
pub enum DapError {
    /// The server answered with an error (boxed to keep `Result`s small).
    #[error("DAP answered {endpoint} with {error}")]
    Api {
        /// The endpoint called, such as `start_query` or `download`.
        endpoint: &'static str,
        /// What the server said.
        error: Box<ApiError>,
    },
    /// No answer: connection failure, timeout, or a connection broken while reading.
    #[error("request to {endpoint} failed")]
    Transport {
        /// The endpoint called.
        endpoint: &'static str,
        /// The HTTP client's error (without the URL for downloads, whose URLs are signed).
        #[source]
        source: reqwest::Error,
    },
    /// A downloaded object ended early, stalled, or failed its gzip checks.
    #[error("object {object_id} is incomplete: {reason}")]
    IncompleteObject {
        /// The object's id.
        object_id: String,
        /// What was wrong, such as `unexpected end of file`.
        reason: String,
    },
    /// A successful answer that could not be understood.
    #[error("could not decode the answer of {endpoint}: {reason}")]
    Decode {
        /// The endpoint called.
        endpoint: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A job was still running when the poll timeout ran out.
    #[error("job {job_id} did not finish within {waited:?}")]
    JobTimeout {
        /// The job's id.
        job_id: String,
        /// How long it was polled.
        waited: Duration,
    },
    /// A job ended with failure.
    #[error("job {job_id} failed: {error}")]
    JobFailed {
        /// The job's id.
        job_id: String,
        /// The job's `error`, mapped like an error response (without a status).
        error: Box<ApiError>,
    },
    /// Transient failures continued through every allowed attempt.
    #[error("gave up on {endpoint} after {attempts} attempts")]
    RetriesExhausted {
        /// The endpoint called.
        endpoint: &'static str,
        /// Attempts made, the first included.
        attempts: u32,
        /// The error of the last attempt.
        #[source]
        last: Box<DapError>,
    },
    /// The query budget shared with other processes could not be consulted (its database
    /// failed); no query was started.
    #[error("cannot take a query start from the shared budget")]
    Budget {
        /// What the budget's store said.
        #[source]
        source: super::ratelimit::BudgetError,
    },
    /// The client options cannot work.
    #[error("invalid client setting: {0}")]
    Config(String),
    /// A downloaded object could not be written to the local file system.
    #[error("cannot write {path}")]
    Write {
        /// The file written.
        path: String,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
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
            DapError::Transport { .. }
            | DapError::IncompleteObject { .. }
            | DapError::JobTimeout { .. }
            | DapError::Budget { .. } => true,
            DapError::RetriesExhausted { last, .. } => last.is_transient(),
            DapError::Decode { .. } | DapError::Config(_) | DapError::Write { .. } => false,
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
            matches!(
                e.kind,
                ApiErrorKind::SnapshotRequired { .. } | ApiErrorKind::OutOfRange { .. }
            )
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
            DapError::Budget { .. } => "BudgetError",
            DapError::RetriesExhausted { last, .. } => last.type_name(),
            DapError::Config(_) => "ConfigError",
            DapError::Write { .. } => "WriteError",
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(status: u16, body: Value) -> ApiError {
        ApiError::from_response(status, None, body.to_string().as_bytes())
    }

    fn detail(type_name: &str, extra: Value) -> Value {
        let mut error =
            json!({ "type": type_name, "uuid": "0f8e-uuid", "message": "what happened" });
        if let (Some(error), Value::Object(extra)) = (error.as_object_mut(), extra) {
            error.extend(extra);
        }
        json!({ "error": error })
    }

    fn at(text: &str) -> Option<DateTime<Utc>> {
        Some(
            DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&Utc),
        )
    }

    #[test]
    fn maps_every_dap_error_type() {
        let cases = [
            (
                401,
                "AuthenticationError",
                json!({}),
                ApiErrorKind::Authentication,
            ),
            (
                403,
                "AccountNotOnboarded",
                json!({}),
                ApiErrorKind::AccountNotOnboarded,
            ),
            (
                500,
                "AccountDisabled",
                json!({}),
                ApiErrorKind::AccountDisabled,
            ),
            (
                403,
                "AccountUnderMaintenance",
                json!({}),
                ApiErrorKind::AccountUnderMaintenance,
            ),
            (
                400,
                "ValidationError",
                json!({"location": {"line": 1, "column": 12, "character": 11}}),
                ApiErrorKind::Validation {
                    line: Some(1),
                    column: Some(12),
                    character: Some(11),
                },
            ),
            (
                404,
                "NotFoundError",
                json!({"id": "web_logz", "kind": "table"}),
                ApiErrorKind::NotFound {
                    id: Some("web_logz".into()),
                    kind: Some("table".into()),
                },
            ),
            (
                404,
                "ObjectNotFound",
                json!({"id": "1234", "kind": "job"}),
                ApiErrorKind::NotFound {
                    id: Some("1234".into()),
                    kind: Some("job".into()),
                },
            ),
            (
                400,
                "OutOfRangeError",
                json!({"since": "2024-04-01T00:00:00Z"}),
                ApiErrorKind::OutOfRange {
                    since: at("2024-04-01T00:00:00Z"),
                    until: None,
                },
            ),
            (
                400,
                "SnapshotRequiredError",
                json!({"since": "2024-04-01T00:00:00Z", "until": "2024-05-01T10:00:00.123456Z"}),
                ApiErrorKind::SnapshotRequired {
                    since: at("2024-04-01T00:00:00Z"),
                    until: at("2024-05-01T10:00:00.123456Z"),
                },
            ),
            (500, "ProcessingError", json!({}), ApiErrorKind::Processing),
            (
                504,
                "GatewayTimeoutError",
                json!({}),
                ApiErrorKind::GatewayTimeout,
            ),
            (
                500,
                "dap.errors.ProcessingError",
                json!({}),
                ApiErrorKind::Processing,
            ),
            (
                418,
                "TeapotError",
                json!({}),
                ApiErrorKind::Other {
                    type_name: "TeapotError".into(),
                },
            ),
        ];
        for (status, type_name, extra, kind) in cases {
            let error = map(status, detail(type_name, extra));
            assert_eq!(error.kind, kind, "{type_name}");
            assert_eq!(error.status, Some(status));
            assert_eq!(error.uuid.as_deref(), Some("0f8e-uuid"));
            assert_eq!(error.message, "what happened");
        }
    }

    #[test]
    fn snapshot_required_and_out_of_range_are_told_apart_by_type() {
        let fields = json!({"since": "2024-04-01T00:00:00Z"});
        let required = DapError::Api {
            endpoint: "start_query",
            error: Box::new(map(400, detail("SnapshotRequiredError", fields.clone()))),
        };
        let out_of_range = DapError::Api {
            endpoint: "start_query",
            error: Box::new(map(400, detail("OutOfRangeError", fields))),
        };
        assert_eq!(required.type_name(), "SnapshotRequiredError");
        assert_eq!(out_of_range.type_name(), "OutOfRangeError");
        assert!(required.needs_snapshot() && out_of_range.needs_snapshot());
        assert!(!required.is_transient() && !out_of_range.is_transient());
        assert_eq!(required.uuid(), Some("0f8e-uuid"));
    }

    #[test]
    fn bodies_that_are_not_dap_errors_map_by_status() {
        let html = b"<html><body>\n<h1>502 Bad Gateway</h1>\n</body></html>";
        let error = ApiError::from_response(502, None, html);
        assert_eq!((error.kind, error.uuid), (ApiErrorKind::Server, None));
        assert_eq!(
            error.message,
            "<html><body> <h1>502 Bad Gateway</h1> </body></html>"
        );

        let error = map(504, json!({"message": "Endpoint request timed out"}));
        assert_eq!(error.kind, ApiErrorKind::GatewayTimeout);
        assert_eq!(error.message, "Endpoint request timed out");
        // The documented gateway timeout has no `type` inside its envelope.
        let error = map(504, json!({"error": {"message": "timeout"}}));
        assert_eq!(
            (error.kind, error.message.as_str()),
            (ApiErrorKind::GatewayTimeout, "timeout")
        );

        let error = map(401, json!({"message": "Unauthorized"}));
        assert_eq!(error.kind, ApiErrorKind::Authentication);
        assert_eq!(
            ApiError::from_response(500, None, b"").message,
            "(empty body)"
        );
        assert_eq!(
            ApiError::from_response(503, None, b"\xff\xfe").kind,
            ApiErrorKind::Server
        );
        let long = "x".repeat(1000);
        assert_eq!(
            ApiError::from_response(500, None, long.as_bytes())
                .message
                .chars()
                .count(),
            203
        );
    }

    #[test]
    fn rate_limits_keep_retry_after_whatever_the_body() {
        let after = Some(Duration::from_secs(7));
        for body in [
            &b"Too Many Requests"[..],
            br#"{"error": {"type": "ProcessingError", "uuid": "u", "message": "m"}}"#,
        ] {
            let error = ApiError::from_response(429, after, body);
            assert_eq!(error.kind, ApiErrorKind::RateLimited { retry_after: after });
            assert!(error.is_transient());
        }
    }

    #[test]
    fn transience_and_account_level() {
        let transient =
            |status, type_name| map(status, detail(type_name, json!({}))).is_transient();
        assert!(transient(500, "ProcessingError"));
        assert!(transient(503, "SomethingNew"));
        assert!(!transient(400, "SomethingNew"));
        assert!(!transient(400, "ValidationError"));
        assert!(!transient(404, "NotFoundError"));
        assert!(!transient(401, "AuthenticationError"));
        assert!(!transient(500, "AccountDisabled"));
        let account = DapError::Api {
            endpoint: "get_job",
            error: Box::new(map(403, detail("AccountUnderMaintenance", json!({})))),
        };
        assert!(account.is_account_level() && !account.needs_snapshot());
        let exhausted = DapError::RetriesExhausted {
            endpoint: "get_job",
            attempts: 3,
            last: Box::new(account),
        };
        assert!(exhausted.is_account_level());
        assert_eq!(exhausted.type_name(), "AccountUnderMaintenance");
    }

    #[test]
    fn display_names_type_status_and_uuid() {
        let error = map(400, detail("ValidationError", json!({})));
        assert_eq!(
            error.to_string(),
            "ValidationError (HTTP 400, uuid 0f8e-uuid): what happened"
        );
    }
}
