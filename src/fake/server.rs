//! The HTTP side: the DAP routes, the request log, bearer checks and fault injection.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, MatchedPath, Path, Query, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tempfile::TempDir;
use tracing::{debug, warn};

use super::auth::{Signer, UrlRefusal};
use super::error::{ApiError, FakeError, Location, rate_limited, s3_error, status_error};
use super::fault::{Endpoint, Fault, Faults, Target};
use super::format::{Format, Mode, Output};
use super::limit::{RateLimits, Windows};
use super::object;
use super::table::{QueryError, TableName};
use super::world::{Refused, World};
use crate::secret::{REDACTED, Secret};

/// Request bodies larger than this are refused (the real ones are a few hundred bytes).
const MAX_BODY: usize = 1 << 20;

/// The scope claimed by issued tokens.
const SCOPE: &str = "urn:canvas:query:*";

/// One request the fake received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub endpoint: Endpoint,
    /// `GET` or `POST`.
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The query string (a download's expiry and signature).
    pub query: Option<String>,
    /// The scheme of the `Authorization` header (`Basic`, `Bearer`), never the credentials.
    pub authorization: Option<String>,
    /// `Content-Type`, `Accept`, `Accept-Encoding`, `User-Agent` and `Range`, when sent.
    pub headers: BTreeMap<String, String>,
    /// The body: JSON as sent, a form as an object of its fields (secrets redacted); `None` when
    /// empty or neither.
    pub body: Option<Value>,
    /// The status the fake answered with.
    pub status: u16,
    /// When the request arrived, by the system clock (the fake's own clock may stand still):
    /// tests check request spacing with it, such as a client's rate limit or `Retry-After`.
    pub received_at: DateTime<Utc>,
}

/// Fixed settings of a running server.
#[derive(Debug)]
pub(super) struct Settings {
    pub base_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub token_lifetime: Duration,
    pub job_polls: u32,
    pub job_lifetime: Duration,
    pub url_lifetime: Duration,
}

/// The shared state of a server.
#[derive(Debug)]
pub(super) struct Inner {
    pub settings: Settings,
    signer: Signer,
    /// Object files live here, and go when the server does.
    pub dir: TempDir,
    world: Mutex<World>,
    faults: Mutex<Faults>,
    limits: Mutex<Windows>,
    requests: Mutex<Vec<RecordedRequest>>,
}

pub(super) type App = Arc<Inner>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere leaves consistent data here: every change is made in one step.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    pub(super) fn new(
        settings: Settings,
        world: World,
        dir: TempDir,
        limits: Option<RateLimits>,
    ) -> Self {
        Self {
            settings,
            signer: Signer::new(),
            dir,
            world: Mutex::new(world),
            faults: Mutex::new(Faults::default()),
            limits: Mutex::new(Windows::new(limits)),
            requests: Mutex::new(Vec::new()),
        }
    }

    pub(super) fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.world)
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        lock(&self.faults)
    }

    pub(super) fn requests(&self) -> MutexGuard<'_, Vec<RecordedRequest>> {
        lock(&self.requests)
    }

    /// See [`FakeDap::busiest`](super::FakeDap::busiest).
    pub(super) fn busiest(&self, endpoint: Endpoint, window: Duration) -> usize {
        let accepted: Vec<DateTime<Utc>> = self
            .requests()
            .iter()
            .filter(|r| r.endpoint == endpoint && r.status != 429)
            .map(|r| r.received_at)
            .collect();
        super::limit::busiest(accepted, window)
    }

    /// Sets the API's rate limits (see [`RateLimits`]).
    pub(super) fn set_rate_limits(&self, limits: Option<RateLimits>) {
        lock(&self.limits).set(limits);
    }

    /// Arms a fault for the next `times` requests to its target.
    pub(super) fn inject(&self, fault: Fault, target: Target, times: u32) -> Result<(), FakeError> {
        if !fault.applies_to(target.endpoint) {
            return Err(FakeError::InvalidFault {
                fault,
                endpoint: target.endpoint,
            });
        }
        self.faults().add(fault, target, times);
        Ok(())
    }

    pub(super) fn clear_faults(&self) {
        self.faults().clear();
    }

    /// Forgets expired jobs and deletes their files.
    fn sweep(&self) {
        let files = self.world().sweep();
        remove_files(files);
    }
}

fn remove_files(files: Vec<std::path::PathBuf>) {
    for file in files {
        if let Err(error) = std::fs::remove_file(&file) {
            warn!(path = %file.display(), %error, "could not delete an expired object");
        }
    }
}

/// The router of the DAP endpoints, with the request log and fault injection around them.
pub(super) fn router(app: App) -> Router {
    let routes = Endpoint::ALL
        .into_iter()
        .fold(Router::new(), |router, endpoint| {
            let route = match endpoint {
                Endpoint::Login => post(login),
                Endpoint::ListTables => get(list_tables),
                Endpoint::GetSchema => get(get_schema),
                Endpoint::Query => post(start_query),
                Endpoint::Job => get(get_job),
                Endpoint::ObjectUrls => post(object_urls),
                Endpoint::Download => get(download),
            };
            router.route(endpoint.route(), route)
        });
    routes
        .route_layer(middleware::from_fn_with_state(app.clone(), observe))
        .merge(super::admin::router())
        .with_state(app)
}

/// A fault that the handler itself carries out.
#[derive(Debug, Clone)]
struct Armed(Fault);

/// Logs the request, checks the bearer token, and injects a fault if one is armed.
async fn observe(
    State(app): State<App>,
    matched: MatchedPath,
    request: Request,
    next: Next,
) -> Response {
    let received_at = Utc::now();
    let route = Endpoint::ALL
        .into_iter()
        .find(|e| e.route() == matched.as_str());
    // This layer wraps exactly the endpoint routes.
    let Some(endpoint) = route else {
        return next.run(request).await;
    };
    let (mut parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .unwrap_or_default();
    let params: HashMap<String, String> = RawPathParams::from_request_parts(&mut parts, &())
        .await
        .map(|params| {
            params
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let mut record = record(endpoint, &parts, &body, received_at);
    let response = match gate(&app, endpoint, &parts, &params, &body) {
        Gate::Answer(response) => response,
        Gate::Pass(armed) => {
            let mut request = Request::from_parts(parts, Body::from(body));
            if let Some(fault) = armed {
                request.extensions_mut().insert(Armed(fault));
            }
            next.run(request).await
        }
    };
    record.status = response.status().as_u16();
    debug!(?endpoint, status = record.status, "fake dap request");
    app.requests().push(record);
    response
}

fn record(
    endpoint: Endpoint,
    parts: &Parts,
    body: &Bytes,
    received_at: DateTime<Utc>,
) -> RecordedRequest {
    let text = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let headers = [
        header::CONTENT_TYPE,
        header::ACCEPT,
        header::ACCEPT_ENCODING,
        header::USER_AGENT,
        header::RANGE,
    ]
    .into_iter()
    .filter_map(|name| Some((name.as_str().to_owned(), text(name)?)))
    .collect();
    let authorization = text(header::AUTHORIZATION)
        .map(|value| value.split(' ').next().unwrap_or_default().to_owned());
    let body = serde_json::from_slice(body).ok().or_else(|| {
        let mut form = parse_form(body);
        for (name, value) in &mut form {
            if name.contains("secret") || name.contains("password") {
                *value = REDACTED.to_owned();
            }
        }
        (!form.is_empty()).then(|| json!(form))
    });
    RecordedRequest {
        endpoint,
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        authorization,
        headers,
        body,
        status: 0,
        received_at,
    }
}

/// What happens to a request before its handler.
enum Gate {
    /// On to the handler, with the fault it is to carry out, if any.
    Pass(Option<Fault>),
    /// Answered already (a bad token, or a fault that is just a response).
    Answer(Response),
}

/// Checks the bearer token, then takes an armed fault: answered here, or handed to the handler.
fn gate(
    app: &App,
    endpoint: Endpoint,
    parts: &Parts,
    params: &HashMap<String, String>,
    body: &Bytes,
) -> Gate {
    if endpoint.needs_token()
        && let Err(error) = check_bearer(app, &parts.headers)
    {
        return Gate::Answer(error.into_response());
    }
    if let Err(wait) = lock(&app.limits).admit(endpoint, std::time::Instant::now()) {
        return Gate::Answer(rate_limited(Some(wait.as_secs_f64().ceil() as u64)));
    }
    if !app.faults().any_for(endpoint) {
        return Gate::Pass(None);
    }
    let tables = request_tables(&app.world(), endpoint, params, body);
    let Some(fault) = app.faults().take(endpoint, &tables) else {
        return Gate::Pass(None);
    };
    let param = |name: &str| params.get(name).map_or("", String::as_str);
    let response = match &fault {
        Fault::RateLimited { retry_after_secs } => rate_limited(*retry_after_secs),
        Fault::Status { status, html } => status_error(*status, *html),
        Fault::Account { error } => ApiError::account(*error).into_response(),
        Fault::ExpiredToken => {
            ApiError::authentication("the access token has expired").into_response()
        }
        Fault::ExpiredUrl => s3_error(StatusCode::FORBIDDEN, "AccessDenied", "Request has expired"),
        Fault::NotFound => match endpoint {
            Endpoint::Download => s3_error(
                StatusCode::NOT_FOUND,
                "NoSuchKey",
                "The specified key does not exist.",
            ),
            Endpoint::ListTables => {
                ApiError::not_found(param("namespace"), "namespace").into_response()
            }
            Endpoint::GetSchema | Endpoint::Query => {
                ApiError::not_found(param("table"), "table").into_response()
            }
            Endpoint::Job => ApiError::not_found(param("id"), "job").into_response(),
            _ => {
                let first = object_ids(body).into_iter().next().unwrap_or_default();
                ApiError::not_found(&first, "object").into_response()
            }
        },
        _ => return Gate::Pass(Some(fault)),
    };
    Gate::Answer(response)
}

/// The tables a request is about, for faults restricted to a table.
fn request_tables(
    world: &World,
    endpoint: Endpoint,
    params: &HashMap<String, String>,
    body: &Bytes,
) -> Vec<TableName> {
    let param = |name: &str| params.get(name).cloned().unwrap_or_default();
    match endpoint {
        Endpoint::GetSchema | Endpoint::Query => {
            vec![TableName::new(param("namespace"), param("table"))]
        }
        Endpoint::Job => world
            .job(&param("id"))
            .map(|job| job.table().clone())
            .into_iter()
            .collect(),
        Endpoint::ObjectUrls => object_ids(body)
            .iter()
            .filter_map(|id| Some(world.object(id)?.table.clone()))
            .collect(),
        Endpoint::Download => world
            .object(&param("id"))
            .map(|file| file.table.clone())
            .into_iter()
            .collect(),
        Endpoint::Login | Endpoint::ListTables => Vec::new(),
    }
}

fn check_bearer(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let token = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => return Err(ApiError::authentication("a bearer token is required")),
    };
    let now = app.world().clock.now();
    app.signer
        .check_token(token, now)
        .map_err(ApiError::authentication)
}

/// `a=1&b=x+y` → `{a: "1", b: "x y"}`, percent-decoded; malformed escapes are kept as they are.
fn parse_form(body: &[u8]) -> BTreeMap<String, String> {
    let Ok(text) = std::str::from_utf8(body) else {
        return BTreeMap::new();
    };
    let decode = |part: &str| {
        let bytes = part.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let escaped = bytes
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
            match (bytes[i], escaped) {
                (b'%', Some(byte)) => {
                    out.push(byte);
                    i += 3;
                }
                (b'+', _) => {
                    out.push(b' ');
                    i += 1;
                }
                (byte, _) => {
                    out.push(byte);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    text.split('&')
        .filter(|pair| !pair.is_empty() && pair.contains('='))
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

/// The ids of a `[{"id": ...}]` body (empty when it is not one).
fn object_ids(body: &[u8]) -> Vec<String> {
    serde_json::from_slice::<Vec<ObjectRef>>(body)
        .map(|refs| refs.into_iter().map(|r| r.id).collect())
        .unwrap_or_default()
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

async fn login(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let settings = &app.settings;
    let Some((id, secret)) = basic_credentials(&headers) else {
        return ApiError::authentication("Basic client credentials are required").into_response();
    };
    if id != settings.client_id || secret != settings.client_secret.expose() {
        return ApiError::authentication("invalid client credentials").into_response();
    }
    if parse_form(&body).get("grant_type").map(String::as_str) != Some("client_credentials") {
        let at = Location::of_member(&body, "grant_type");
        return ApiError::validation("grant_type must be client_credentials", at).into_response();
    }
    let now = app.world().clock.now();
    let (token, expires_in) = app.signer.token(&id, now, settings.token_lifetime);
    Json(json!({"access_token": token, "expires_in": expires_in, "scope": SCOPE, "token_type": "Bearer"})).into_response()
}

async fn list_tables(State(app): State<App>, Path(namespace): Path<String>) -> Response {
    let world = app.world();
    if !world.has_namespace(&namespace) {
        return ApiError::not_found(&namespace, "namespace").into_response();
    }
    Json(json!({"tables": world.tables_in(&namespace)})).into_response()
}

async fn get_schema(
    State(app): State<App>,
    Path((namespace, table)): Path<(String, String)>,
    armed: Option<axum::Extension<Armed>>,
) -> Response {
    let world = app.world();
    let name = TableName::new(namespace, table);
    let stale = matches!(armed, Some(axum::Extension(Armed(Fault::StaleSchema))));
    match world.table(&name) {
        Ok(table) => {
            let schema = if stale {
                table.stale_schema()
            } else {
                table.latest_schema()
            };
            Json(json!({"schema": schema.schema, "version": schema.version})).into_response()
        }
        Err(_) => ApiError::no_table(&name, world.has_namespace(&name.namespace)).into_response(),
    }
}

/// The body of a query request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryBody {
    format: String,
    mode: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

/// Parses an RFC 3339 timestamp member of the query body.
fn body_timestamp(
    body: &[u8],
    name: &str,
    value: Option<&str>,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .map(|text| {
            DateTime::parse_from_rfc3339(text)
                .map(|ts| ts.to_utc())
                .map_err(|_| {
                    ApiError::validation(
                        format!("`{name}` must be an RFC 3339 timestamp with a time zone"),
                        Location::of_member(body, name),
                    )
                })
        })
        .transpose()
}

/// What a query asks for: a window and an output.
#[derive(Debug, Clone, Copy)]
struct Requested {
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    output: Output,
}

/// Parses a query body; an unknown `format` or `mode` is a ValidationError pointing at it.
fn parse_query(body: &[u8]) -> Result<Requested, ApiError> {
    let query: QueryBody = serde_json::from_slice(body).map_err(|error| {
        ApiError::validation(
            format!("malformed query: {error}"),
            Location::of_json_error(&error, body),
        )
    })?;
    let format = Format::from_name(&query.format).ok_or_else(|| {
        ApiError::validation(
            format!(
                "unknown format {}; use one of jsonl, tsv, csv, parquet",
                query.format
            ),
            Location::of_member(body, "format"),
        )
    })?;
    let mode = match query.mode.as_deref() {
        None => None,
        Some(name) => Some(Mode::from_name(name).ok_or_else(|| {
            ApiError::validation(
                format!("unknown mode {name}; use expanded or condensed"),
                Location::of_member(body, "mode"),
            )
        })?),
    };
    let since = body_timestamp(body, "since", query.since.as_deref())?;
    let until = body_timestamp(body, "until", query.until.as_deref())?;
    Ok(Requested {
        since,
        until,
        output: Output::new(format, mode),
    })
}

async fn start_query(
    State(app): State<App>,
    Path((namespace, table)): Path<(String, String)>,
    armed: Option<axum::Extension<Armed>>,
    body: Bytes,
) -> Response {
    let Requested {
        since,
        until,
        output,
    } = match parse_query(&body) {
        Ok(requested) => requested,
        Err(error) => return error.into_response(),
    };
    let name = TableName::new(namespace, table);
    let fault = armed.map(|axum::Extension(Armed(fault))| fault);
    match fault {
        Some(Fault::SnapshotRequired) => {
            return ApiError::snapshot_required(since, until).into_response();
        }
        Some(Fault::OutOfRange) => return ApiError::out_of_range(since, until).into_response(),
        _ => {}
    }
    app.sweep();
    let failure =
        (fault == Some(Fault::FailedJob)).then(|| ApiError::processing("the query failed").body());
    let settings = &app.settings;
    let started = app.world().start_query(
        &name,
        since,
        until,
        output,
        failure,
        settings.job_polls,
        settings.job_lifetime,
    );
    let started = match started {
        Ok(started) => started,
        Err(Refused::NoTable { namespace_exists }) => {
            return ApiError::no_table(&name, namespace_exists).into_response();
        }
        Err(Refused::Query(QueryError::OutOfRange)) => {
            return ApiError::out_of_range(since, until).into_response();
        }
        Err(Refused::Query(QueryError::SnapshotRequired)) => {
            return ApiError::snapshot_required(since, until).into_response();
        }
        Err(Refused::Query(QueryError::Until(reason))) => {
            return ApiError::validation(reason, Location::of_member(&body, "until"))
                .into_response();
        }
    };
    let job_id = started.job.id.clone();
    if let Some(extract) = started.extract {
        let writer = app.clone();
        let id = job_id.clone();
        let written = tokio::task::spawn_blocking(move || {
            object::write_objects(&extract, output, &name, writer.dir.path(), &id).map_err(
                |error| {
                    warn!(job = %id, %error, "could not write the objects of a job");
                    ApiError::processing("the objects could not be written").body()
                },
            )
        });
        let finish_app = app.clone();
        let finish_id = job_id.clone();
        let finish = async move {
            let written = written
                .await
                .unwrap_or_else(|_| Err(ApiError::processing("the job panicked").body()));
            let orphans = finish_app.world().finish_job(&finish_id, written);
            remove_files(orphans);
        };
        // With no polls to spend, the POST itself answers with the complete job.
        if app.settings.job_polls == 0 {
            finish.await;
        } else {
            tokio::spawn(finish);
        }
    }
    job_response(&app, &job_id)
}

fn job_response(app: &App, id: &str) -> Response {
    match app.world().job(id) {
        Some(job) => {
            let (status, body) = job.to_json();
            (status, Json(body)).into_response()
        }
        None => ApiError::not_found(id, "job").into_response(),
    }
}

async fn get_job(
    State(app): State<App>,
    Path(id): Path<String>,
    armed: Option<axum::Extension<Armed>>,
) -> Response {
    app.sweep();
    if let Some(job) = app.world().job_mut(&id) {
        job.poll();
        if matches!(armed, Some(axum::Extension(Armed(Fault::FailedJob)))) {
            job.fail_now(ApiError::processing("the job failed").body());
        }
    }
    job_response(&app, &id)
}

/// One entry of an object URL request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ObjectRef {
    id: String,
}

async fn object_urls(State(app): State<App>, body: Bytes) -> Response {
    let refs: Vec<ObjectRef> = match serde_json::from_slice(&body) {
        Ok(refs) => refs,
        Err(error) => {
            let message = format!("expected [{{\"id\": ...}}, ...]: {error}");
            return ApiError::validation(message, Location::of_json_error(&error, &body))
                .into_response();
        }
    };
    let world = app.world();
    let expires = world
        .clock
        .now()
        .timestamp()
        .saturating_add_unsigned(app.settings.url_lifetime.as_secs().max(1));
    let mut urls = serde_json::Map::new();
    for ObjectRef { id } in refs {
        if world.object(&id).is_none() {
            return ApiError::not_found(&id, "object").into_response();
        }
        let signature = app.signer.url_signature(&id, expires);
        let url = format!(
            "{}/objects/{id}?expires={expires}&signature={signature}",
            app.settings.base_url
        );
        urls.insert(id, json!({"url": url}));
    }
    Json(json!({"urls": urls})).into_response()
}

async fn download(
    State(app): State<App>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    armed: Option<axum::Extension<Armed>>,
) -> Response {
    let expires = params.get("expires").and_then(|e| e.parse::<i64>().ok());
    let (Some(expires), Some(signature)) = (expires, params.get("signature")) else {
        return s3_error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Query-string authentication requires the expires and signature parameters",
        );
    };
    let file = {
        let world = app.world();
        match app
            .signer
            .check_url(&id, expires, signature, world.clock.now())
        {
            Err(UrlRefusal::BadSignature) => {
                return s3_error(
                    StatusCode::FORBIDDEN,
                    "SignatureDoesNotMatch",
                    "The request signature we calculated does not match the signature you provided.",
                );
            }
            Err(UrlRefusal::Expired) => {
                return s3_error(StatusCode::FORBIDDEN, "AccessDenied", "Request has expired");
            }
            Ok(()) => world.object(&id).cloned(),
        }
    };
    match file {
        Some(file) => {
            object::download(
                &file,
                armed.as_ref().map(|axum::Extension(Armed(fault))| fault),
            )
            .await
        }
        None => s3_error(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_percent_decoded() {
        let form = parse_form(b"grant_type=client_credentials&scope=a+b%3Ac&bad=%zz&&x");
        assert_eq!(
            form.get("grant_type").map(String::as_str),
            Some("client_credentials")
        );
        assert_eq!(form.get("scope").map(String::as_str), Some("a b:c"));
        assert_eq!(form.get("bad").map(String::as_str), Some("%zz"));
        assert_eq!(form.len(), 3);
    }

    #[test]
    fn basic_credentials_split_at_the_first_colon() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            format!("Basic {}", STANDARD.encode("us-east-1#id:se:cret"))
                .parse()
                .unwrap(),
        );
        assert_eq!(
            basic_credentials(&headers),
            Some(("us-east-1#id".to_owned(), "se:cret".to_owned()))
        );
        headers.insert(header::AUTHORIZATION, "Bearer x".parse().unwrap());
        assert_eq!(basic_credentials(&headers), None);
    }
}
