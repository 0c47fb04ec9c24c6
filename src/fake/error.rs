//! Errors of the fake: its own (misuse of its test API) and the error responses it sends, in the
//! shapes of the real API (SPEC section 2), of a gateway and of S3.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::fault::{AccountError, Endpoint, Fault};
use super::table::TableName;

/// A misuse of the fake's test API (in process or over `/_fake/`).
#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    /// The table is not served.
    #[error("the fake DAP server has no table {0}")]
    UnknownTable(TableName),
    /// A table was added without a schema, and no fixture has its name.
    #[error("there is no fixture schema for {0}: give the table a schema")]
    NoFixture(TableName),
    /// The schema has no key properties (or the table has 65,536 versions already).
    #[error("the schema for {0} has no key properties, or the table has too many versions")]
    InvalidSchema(TableName),
    /// See [`Fault::applies_to`].
    #[error("fault {fault:?} cannot happen on endpoint {endpoint:?}")]
    InvalidFault { fault: Fault, endpoint: Endpoint },
}

/// Where in a request body a ValidationError points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Location {
    pub line: usize,
    pub column: usize,
    /// Byte offset from the start of the body.
    pub character: usize,
}

impl Location {
    /// Where `serde_json` stopped parsing `body`.
    pub(super) fn of_json_error(error: &serde_json::Error, body: &[u8]) -> Self {
        let (line, column) = (error.line().max(1), error.column());
        let line_start: usize = body
            .split(|&b| b == b'\n')
            .take(line - 1)
            .map(|l| l.len() + 1)
            .sum();
        Location {
            line,
            column,
            character: (line_start + column).saturating_sub(1),
        }
    }

    /// Where the member `name` appears in `body` (the start when it does not).
    pub(super) fn of_member(body: &[u8], name: &str) -> Self {
        let needle = format!("\"{name}\"");
        let offset = body
            .windows(needle.len())
            .position(|window| window == needle.as_bytes())
            .unwrap_or(0);
        let before = &body[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        Location {
            line,
            column: offset - line_start + 1,
            character: offset,
        }
    }
}

/// A DAP error response: `{"error": {"type", "uuid", "message", ...extra}}`.
#[derive(Debug, Clone)]
pub(super) struct ApiError {
    status: StatusCode,
    type_name: &'static str,
    message: String,
    extra: Map<String, Value>,
}

fn timestamp(ts: DateTime<Utc>) -> Value {
    Value::String(ts.to_rfc3339_opts(SecondsFormat::Micros, true))
}

impl ApiError {
    fn new(status: StatusCode, type_name: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            type_name,
            message: message.into(),
            extra: Map::new(),
        }
    }

    fn with(mut self, name: &str, value: Value) -> Self {
        self.extra.insert(name.to_owned(), value);
        self
    }

    pub(super) fn authentication(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "AuthenticationError", message)
    }

    pub(super) fn validation(message: impl Into<String>, at: Location) -> Self {
        let location = json!({"line": at.line, "column": at.column, "character": at.character});
        Self::new(StatusCode::BAD_REQUEST, "ValidationError", message).with("location", location)
    }

    /// `kind` is what is missing: `namespace`, `table`, `job` or `object`.
    pub(super) fn not_found(id: &str, kind: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFoundError",
            format!("{kind} {id} does not exist or has expired"),
        )
        .with("id", Value::String(id.to_owned()))
        .with("kind", Value::String(kind.to_owned()))
    }

    /// The namespace, or else the table, that does not exist.
    pub(super) fn no_table(table: &TableName, namespace_exists: bool) -> Self {
        if namespace_exists {
            Self::not_found(&table.table, "table")
        } else {
            Self::not_found(&table.namespace, "namespace")
        }
    }

    fn window(self, since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> Self {
        let with_since = self.with("since", since.map_or(Value::Null, timestamp));
        match until {
            Some(until) => with_since.with("until", timestamp(until)),
            None => with_since,
        }
    }

    pub(super) fn out_of_range(since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "OutOfRangeError",
            "the requested range is outside the retained data",
        )
        .window(since, until)
    }

    pub(super) fn snapshot_required(
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "SnapshotRequiredError",
            "the table was reloaded; take a new snapshot",
        )
        .window(since, until)
    }

    pub(super) fn processing(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ProcessingError",
            message,
        )
    }

    pub(super) fn account(error: AccountError) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            error.type_name(),
            "the account cannot use DAP at the moment",
        )
    }

    /// The `error` object, with a fresh uuid.
    pub(super) fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("type".to_owned(), Value::String(self.type_name.to_owned()));
        body.insert("uuid".to_owned(), Value::String(fresh_uuid()));
        body.insert("message".to_owned(), Value::String(self.message.clone()));
        body.extend(self.extra.clone());
        Value::Object(body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": self.body()}))).into_response()
    }
}

/// A random (version 4) uuid.
pub(super) fn fresh_uuid() -> String {
    uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes())
        .into_uuid()
        .to_string()
}

/// HTTP 429 from the gateway.
pub(super) fn rate_limited(retry_after_secs: Option<u64>) -> Response {
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({"message": "Too Many Requests"})),
    )
        .into_response();
    if let Some(seconds) = retry_after_secs {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// An error status as the service (500: ProcessingError) or the gateway (`{"message"}`, or an
/// HTML page) sends it.
pub(super) fn status_error(status: u16, html: bool) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let reason = status.canonical_reason().unwrap_or("Error");
    if html {
        let page = format!(
            "<html>\r\n<head><title>{} {reason}</title></head>\r\n<body>\r\n<center><h1>{} {reason}</h1></center>\r\n</body>\r\n</html>\r\n",
            status.as_u16(),
            status.as_u16()
        );
        return (status, [(header::CONTENT_TYPE, "text/html")], page).into_response();
    }
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        return ApiError::processing("internal server error").into_response();
    }
    (status, Json(json!({"message": reason}))).into_response()
}

/// An S3 error document, as object downloads get.
pub(super) fn s3_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{}</RequestId></Error>",
        fastrand::u64(..)
    );
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_point_into_the_body() {
        let body = b"{\n  \"format\": \"csv\"}";
        assert_eq!(
            Location::of_member(body, "format"),
            Location {
                line: 2,
                column: 3,
                character: 4
            }
        );
        let error = serde_json::from_slice::<Value>(b"{\n  \"a\": }").unwrap_err();
        let at = Location::of_json_error(&error, b"{\n  \"a\": }");
        assert_eq!((at.line, at.column, at.character), (2, 8, 9));
    }

    #[test]
    fn error_bodies_carry_type_uuid_message_and_extra_fields() {
        let body = ApiError::not_found("x", "job").body();
        assert_eq!(
            (
                body["type"].as_str(),
                body["id"].as_str(),
                body["kind"].as_str()
            ),
            (Some("NotFoundError"), Some("x"), Some("job"))
        );
        assert!(body["uuid"].as_str().unwrap().parse::<uuid::Uuid>().is_ok());
        assert_ne!(body["uuid"], ApiError::not_found("x", "job").body()["uuid"]);
        let since = DateTime::from_timestamp(0, 1000).unwrap();
        let body = ApiError::snapshot_required(Some(since), None).body();
        assert_eq!(body["since"], "1970-01-01T00:00:00.000001Z");
        assert!(body.get("until").is_none());
    }
}
