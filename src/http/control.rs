//! The control API: `GET /tables`, `GET /tables/{ns}/{t}`, `GET /runs` (the run history,
//! filtered and paginated), and the write endpoints `POST /tables/{ns}/{t}/runs` (sync now, or
//! `{"kind":"resync"}`), `POST .../pause`, `POST .../resume` and `DELETE .../runs/current`
//! (cancel). Write endpoints need `Authorization: Bearer <token>`; without a configured token
//! they are off.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::json;

use super::Api;
use crate::scheduler::{Cancelled, Control, ControlError, RunFilter, RunOutcome};
use crate::status::TableId;

/// Runs per page unless `limit` says otherwise, and the most `limit` may say.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 1000;

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/tables", get(tables))
        .route("/tables/{namespace}/{table}", get(table))
        .route("/tables/{namespace}/{table}/runs", post(run_now))
        .route("/tables/{namespace}/{table}/pause", post(pause))
        .route("/tables/{namespace}/{table}/resume", post(resume))
        .route("/tables/{namespace}/{table}/runs/current", delete(cancel))
        .route("/runs", get(runs))
}

/// An error answer: `{"error": "..."}`.
fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, axum::Json(json!({ "error": message.into() }))).into_response()
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let code = match &self {
            ControlError::NotFound(_) => StatusCode::NOT_FOUND,
            ControlError::Conflict { .. } => StatusCode::CONFLICT,
            ControlError::Stopping => StatusCode::SERVICE_UNAVAILABLE,
            ControlError::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if let ControlError::Db(source) = &self {
            tracing::warn!(error = %crate::error::chain(source), "control api: database error");
        }
        error(code, self.to_string())
    }
}

async fn tables(State(api): State<Api>) -> Response {
    axum::Json(api.status.view().tables).into_response()
}

async fn table(
    State(api): State<Api>,
    Path((namespace, table)): Path<(String, String)>,
) -> Response {
    let id = TableId::new(namespace, table);
    match api.status.table(&id) {
        Some(view) => axum::Json(view).into_response(),
        None => ControlError::NotFound(id).into_response(),
    }
}

/// `GET /runs` parameters.
#[derive(Debug, Deserialize)]
struct RunsQuery {
    namespace: Option<String>,
    table: Option<String>,
    outcome: Option<String>,
    limit: Option<i64>,
    before: Option<i64>,
}

async fn runs(State(api): State<Api>, Query(query): Query<RunsQuery>) -> Response {
    let control = match control_of(&api) {
        Ok(control) => control,
        Err(response) => return *response,
    };
    let outcome = match query.outcome.as_deref().filter(|o| !o.is_empty()) {
        None => None,
        Some(text) => match RunOutcome::parse(text) {
            parsed if parsed.as_str() == text => Some(parsed),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "outcome must be running, success, failed, interrupted or cancelled",
                );
            }
        },
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("limit must be between 1 and {MAX_LIMIT}"),
        );
    }
    let filter = RunFilter {
        namespace: query.namespace.filter(|s| !s.is_empty()),
        table: query.table.filter(|s| !s.is_empty()),
        outcome,
        before: query.before,
        limit,
    };
    match control.runs(&filter).await {
        Ok(runs) => {
            // A full page may have more after it: the next page starts before its last run.
            let next_before = (runs.len() as i64 == limit)
                .then(|| runs.last().map(|r| r.id))
                .flatten();
            axum::Json(json!({ "runs": runs, "next_before": next_before })).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// The body of `POST /tables/{ns}/{t}/runs` (optional).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunRequest {
    #[serde(default)]
    kind: RunRequestKind,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum RunRequestKind {
    #[default]
    Sync,
    Resync,
}

async fn run_now(
    State(api): State<Api>,
    Path((namespace, table)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let control = match authorized(&api, &headers) {
        Ok(control) => control,
        Err(response) => return *response,
    };
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        RunRequest {
            kind: RunRequestKind::Sync,
        }
    } else {
        match serde_json::from_slice::<RunRequest>(&body) {
            Ok(request) => request,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("the body must be {{\"kind\": \"sync\" | \"resync\"}}: {e}"),
                );
            }
        }
    };
    let id = TableId::new(namespace, table);
    let resync = request.kind == RunRequestKind::Resync;
    match control.run_now(&id, resync).await {
        Ok(view) => (StatusCode::ACCEPTED, axum::Json(view)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn pause(
    State(api): State<Api>,
    Path((namespace, table)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    set_paused(&api, &headers, TableId::new(namespace, table), true).await
}

async fn resume(
    State(api): State<Api>,
    Path((namespace, table)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    set_paused(&api, &headers, TableId::new(namespace, table), false).await
}

async fn set_paused(api: &Api, headers: &HeaderMap, id: TableId, paused: bool) -> Response {
    let control = match authorized(api, headers) {
        Ok(control) => control,
        Err(response) => return *response,
    };
    match control.set_paused(&id, paused).await {
        Ok(view) => axum::Json(view).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn cancel(
    State(api): State<Api>,
    Path((namespace, table)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let control = match authorized(&api, &headers) {
        Ok(control) => control,
        Err(response) => return *response,
    };
    match control.cancel(&TableId::new(namespace, table)).await {
        Ok(Cancelled::Here(run)) => {
            axum::Json(json!({ "cancelled": true, "run": run })).into_response()
        }
        Ok(Cancelled::Requested) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({ "cancelled": false, "requested": true })),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

fn control_of(api: &Api) -> Result<&Control, Box<Response>> {
    api.control.as_ref().ok_or_else(|| {
        Box::new(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the control API needs the scheduler",
        ))
    })
}

/// The scheduler's levers, if the request carries the configured bearer token: 403 when no
/// token is configured (the write endpoints are off) or the token is wrong, 401 without one.
fn authorized<'a>(api: &'a Api, headers: &HeaderMap) -> Result<&'a Control, Box<Response>> {
    let Some(expected) = &api.token else {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "the control API's write endpoints are off: configure http.control_token_file",
        )));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let Some(given) = given else {
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "an Authorization: Bearer token is required",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            "Bearer".parse().expect("a valid header"),
        );
        return Err(Box::new(response));
    };
    if !same_secret(given.trim().as_bytes(), expected.expose().as_bytes()) {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "the token is not valid",
        )));
    }
    control_of(api)
}

/// Compares in time that depends on the lengths only, not on where the bytes differ.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let mut difference = given.len() ^ expected.len();
    for i in 0..given.len().max(expected.len()) {
        let a = given.get(i).copied().unwrap_or(0);
        let b = expected.get(i).copied().unwrap_or(0);
        difference |= usize::from(a ^ b);
    }
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cres", b"s3cret"));
        assert!(!same_secret(b"s3cret", b"s3cret!"));
        assert!(!same_secret(b"", b"s3cret"));
        assert!(same_secret(b"", b""));
    }
}
