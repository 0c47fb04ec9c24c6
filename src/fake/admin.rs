//! The admin API under `/_fake/`, so another process can drive a standalone fake server. Its
//! requests are not recorded, need no token and never meet a fault.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::FakeTable;
use super::error::FakeError;
use super::fault::{Endpoint, Fault, Target};
use super::limit::RateLimits;
use super::server::App;
use super::table::{Changes, TableName};

pub(super) fn router() -> Router<App> {
    Router::new()
        .route("/_fake/tables", post(add_table))
        .route("/_fake/tables/{namespace}/{table}", get(table_state))
        .route("/_fake/tables/{namespace}/{table}/rows", get(current_rows))
        .route("/_fake/tables/{namespace}/{table}/advance", post(advance))
        .route(
            "/_fake/tables/{namespace}/{table}/schema",
            post(bump_schema),
        )
        .route(
            "/_fake/tables/{namespace}/{table}/reload",
            post(require_snapshot),
        )
        .route(
            "/_fake/tables/{namespace}/{table}/retention",
            put(set_retention),
        )
        .route("/_fake/faults", post(inject))
        .route("/_fake/requests", get(requests).delete(clear_requests))
        .route("/_fake/requests/busiest", get(busiest))
        .route("/_fake/travel", post(travel))
        .route("/_fake/rate_limits", put(set_rate_limits))
}

impl IntoResponse for FakeError {
    fn into_response(self) -> Response {
        let status = match self {
            FakeError::UnknownTable(_) => StatusCode::NOT_FOUND,
            FakeError::NoFixture(_)
            | FakeError::InvalidSchema(_)
            | FakeError::InvalidFault { .. } => StatusCode::BAD_REQUEST,
        };
        (status, Json(json!({"error": self.to_string()}))).into_response()
    }
}

type Named = Path<(String, String)>;

fn name(Path((namespace, table)): Named) -> TableName {
    TableName::new(namespace, table)
}

fn ts(ts: DateTime<Utc>) -> Json<Value> {
    Json(json!({"ts": ts.to_rfc3339_opts(SecondsFormat::Micros, true)}))
}

async fn add_table(
    State(app): State<App>,
    Json(table): Json<FakeTable>,
) -> Result<StatusCode, FakeError> {
    app.world().add_table(table)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn table_state(State(app): State<App>, table: Named) -> Result<Json<Value>, FakeError> {
    let world = app.world();
    let table = world.table(&name(table))?;
    let schema = table.latest_schema();
    let latest = table
        .latest_commit()
        .to_rfc3339_opts(SecondsFormat::Micros, true);
    Ok(Json(
        json!({"schema": schema.schema, "version": schema.version, "latest_commit": latest}),
    ))
}

async fn current_rows(State(app): State<App>, table: Named) -> Result<Json<Vec<Value>>, FakeError> {
    Ok(Json(app.world().table(&name(table))?.current_rows()))
}

async fn advance(
    State(app): State<App>,
    table: Named,
    Json(changes): Json<Changes>,
) -> Result<Json<Value>, FakeError> {
    Ok(ts(app.world().advance(&name(table), changes)?))
}

#[derive(Debug, Deserialize)]
struct SchemaBump {
    schema: Value,
    #[serde(default)]
    rewrite: bool,
}

async fn bump_schema(
    State(app): State<App>,
    table: Named,
    Json(bump): Json<SchemaBump>,
) -> Result<Json<Value>, FakeError> {
    let version = app
        .world()
        .bump_schema(&name(table), bump.schema, bump.rewrite)?;
    Ok(Json(json!({"version": version})))
}

async fn require_snapshot(State(app): State<App>, table: Named) -> Result<Json<Value>, FakeError> {
    Ok(ts(app.world().require_snapshot(&name(table))?))
}

#[derive(Debug, Deserialize)]
struct Retention {
    /// `null`: keep everything.
    seconds: Option<u64>,
}

async fn set_retention(
    State(app): State<App>,
    table: Named,
    Json(retention): Json<Retention>,
) -> Result<StatusCode, FakeError> {
    app.world()
        .set_retention(&name(table), retention.seconds.map(Duration::from_secs))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct Injection {
    fault: Fault,
    target: Target,
    times: u32,
}

async fn inject(
    State(app): State<App>,
    Json(injection): Json<Injection>,
) -> Result<StatusCode, FakeError> {
    app.inject(injection.fault, injection.target, injection.times)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn requests(State(app): State<App>) -> Json<Value> {
    Json(json!(*app.requests()))
}

async fn clear_requests(State(app): State<App>) -> StatusCode {
    app.requests().clear();
    StatusCode::NO_CONTENT
}

#[derive(Debug, Deserialize)]
struct Busiest {
    endpoint: Endpoint,
    /// Seconds; a minute unless given.
    window: Option<f64>,
}

/// `?endpoint=query&window=60`: `{"requests": N}`, the most accepted within any window.
async fn busiest(
    State(app): State<App>,
    Query(query): Query<Busiest>,
) -> Result<Json<Value>, StatusCode> {
    let window = Duration::try_from_secs_f64(query.window.unwrap_or(60.0))
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    let requests = app.busiest(query.endpoint, window);
    Ok(Json(json!({"requests": requests})))
}

#[derive(Debug, Deserialize)]
struct Travel {
    seconds: u64,
}

async fn travel(State(app): State<App>, Json(travel): Json<Travel>) -> StatusCode {
    app.world()
        .clock
        .travel(Duration::from_secs(travel.seconds));
    StatusCode::NO_CONTENT
}

/// `null` lifts every limit; `{"per_minute": {"query": 5, ...}, "window": 60}` sets them.
async fn set_rate_limits(
    State(app): State<App>,
    Json(limits): Json<Option<RateLimits>>,
) -> StatusCode {
    app.set_rate_limits(limits);
    StatusCode::NO_CONTENT
}
