//! Round trips of the client against a tiny DAP server on loopback.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flate2::{Compress, Compression, FlushCompress};
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::time::timeout;

use super::decode::tests::gzip_member;
use super::*;
use crate::secret::Secret;

/// What the fake server does and what it saw.
#[derive(Default)]
struct Fake {
    base: String,
    /// Tokens `token-N` with N up to this are refused with a 401.
    refuse_tokens_up_to: u64,
    /// Query starts answered with a 429 before one is accepted.
    throttled_starts: u32,
    /// Polls of `job-1` answered `running` before it is complete.
    polls_before_complete: u32,
    /// Object id → gzip body and the offset of a full-flush point inside it.
    objects: HashMap<String, (Vec<u8>, usize)>,
    /// Objects whose first download is refused with a 403 (an expired URL).
    expire_once: HashSet<String>,
    /// Objects whose first download ends at their full-flush point.
    truncate_once: HashSet<String>,
    /// Objects whose first download breaks off (the connection drops) at their full-flush point.
    break_once: HashSet<String>,
    /// Objects that always fail with a 500.
    always_fail: HashSet<String>,
    /// Objects that trickle empty lines forever; `stalled` fires when one starts, `dropped`
    /// when its body is dropped.
    endless: HashSet<String>,
    started: Arc<Notify>,
    dropped: Arc<Notify>,
    logins: u64,
    seen: Vec<Seen>,
    url_batches: Vec<usize>,
    downloads: HashMap<String, u32>,
}

struct Seen {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

type Shared = Arc<Mutex<Fake>>;

async fn serve(fake: Fake, tweak: impl FnOnce(&mut ClientOptions)) -> (Shared, DapClient) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shared = Arc::new(Mutex::new(Fake {
        base: base.clone(),
        ..fake
    }));
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(shared.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mut options = ClientOptions::new("us-east-1#client", Secret::new("s3cret"));
    options.base_url = base;
    options.retry = RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
    };
    options.poll = PollPolicy {
        initial_interval: Duration::from_millis(1),
        max_interval: Duration::from_millis(5),
        timeout: Duration::from_secs(30),
    };
    options.download_concurrency = 2;
    options.url_batch_size = 2;
    options.batch_records = 4;
    tweak(&mut options);
    (shared, DapClient::new(options).unwrap())
}

fn reply(status: u16, body: Value) -> Response {
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

fn dap_error(status: u16, type_name: &str) -> Response {
    reply(
        status,
        json!({"error": {"type": type_name, "uuid": format!("uuid-{status}"), "message": "no"}}),
    )
}

async fn handle(State(shared): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let path = parts.uri.path().to_owned();
    let mut fake = shared.lock().unwrap();
    fake.seen.push(Seen {
        path: path.clone(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segments[0] == "dap" {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let generation = token
            .and_then(|t| t.strip_prefix("Bearer token-"))
            .and_then(|n| n.parse::<u64>().ok());
        if generation.is_none_or(|n| n <= fake.refuse_tokens_up_to) {
            return dap_error(401, "AuthenticationError");
        }
    }
    match (parts.method.as_str(), segments.as_slice()) {
        ("POST", ["ids", "auth", "login"]) => {
            fake.logins += 1;
            reply(
                200,
                json!({"access_token": format!("token-{}", fake.logins), "expires_in": 3600}),
            )
        }
        ("GET", ["dap", "query", "canvas", "table"]) => {
            reply(200, json!({"tables": ["accounts", "courses"]}))
        }
        ("GET", ["dap", "query", "canvas", "table", table, "schema"]) => match *table {
            "courses" => reply(200, json!({"schema": {"type": "object"}, "version": 7})),
            "missing" => dap_error(404, "NotFoundError"),
            _ => (StatusCode::SERVICE_UNAVAILABLE, "<html><h1>503</h1></html>").into_response(),
        },
        ("POST", ["dap", "query", "canvas", "table", table, "data"]) => {
            if fake.throttled_starts > 0 {
                fake.throttled_starts -= 1;
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, "0")],
                    "slow down",
                )
                    .into_response();
            }
            let id = match *table {
                "failing" => {
                    return reply(
                        200,
                        json!({"id": "job-f", "status": "failed", "error": {"type": "ProcessingError", "uuid": "uuid-f", "message": "boom"}}),
                    );
                }
                "endless" => "job-e",
                _ => "job-1",
            };
            reply(202, json!({"id": id, "status": "waiting"}))
        }
        ("GET", ["dap", "job", "job-1"]) if fake.polls_before_complete == 0 => {
            let mut objects: Vec<&String> = fake.objects.keys().collect();
            objects.sort();
            let objects: Vec<Value> = objects.iter().map(|id| json!({"id": id})).collect();
            let job = json!({"id": "job-1", "status": "complete", "objects": objects, "schema_version": 7,
                "since": "2024-05-01T10:00:00Z", "until": "2024-05-01T14:00:00.123456Z"});
            reply(200, job)
        }
        ("GET", ["dap", "job", id]) => {
            fake.polls_before_complete = fake.polls_before_complete.saturating_sub(1);
            reply(200, json!({"id": id, "status": "running"}))
        }
        ("POST", ["dap", "object", "url"]) => {
            let ids: Vec<Value> = serde_json::from_slice(&body).unwrap();
            fake.url_batches.push(ids.len());
            let urls: serde_json::Map<String, Value> = ids
                .iter()
                .map(|o| {
                    let id = o["id"].as_str().unwrap();
                    (
                        id.to_owned(),
                        json!({"url": format!("{}/objects/{id}?sig=abc", fake.base)}),
                    )
                })
                .collect();
            reply(200, json!({ "urls": urls }))
        }
        ("GET", ["objects", id]) => fake.object(id),
        _ => dap_error(404, "NotFoundError"),
    }
}

impl Fake {
    fn object(&mut self, id: &str) -> Response {
        let count = self.downloads.entry(id.to_owned()).or_default();
        *count += 1;
        let first = *count == 1;
        if self.always_fail.contains(id) {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "<Error>InternalError</Error>",
            )
                .into_response();
        }
        if first && self.expire_once.contains(id) {
            return (
                StatusCode::FORBIDDEN,
                "<Error><Code>AccessDenied</Code></Error>",
            )
                .into_response();
        }
        if self.endless.contains(id) {
            self.started.notify_one();
            return Body::from_stream(endless_gzip(DropSignal(self.dropped.clone())))
                .into_response();
        }
        let (gzip, flush_point) = &self.objects[id];
        if first && self.break_once.contains(id) {
            let head = Bytes::copy_from_slice(&gzip[..*flush_point]);
            // Pause before failing so that the status and the head go out first.
            let broken = stream::once(async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone"))
            });
            return Body::from_stream(stream::iter([Ok(head)]).chain(broken)).into_response();
        }
        let end = if first && self.truncate_once.contains(id) {
            *flush_point
        } else {
            gzip.len()
        };
        gzip[..end].to_vec().into_response()
    }
}

/// Fires its `Notify` when dropped.
struct DropSignal(Arc<Notify>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

/// A gzip body that never ends: a header, then a flushed empty line every few milliseconds.
fn endless_gzip(signal: DropSignal) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> {
    let header = Bytes::from_static(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    let lines = stream::unfold(
        (Compress::new(Compression::default(), false), signal),
        |(mut deflate, signal)| async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let mut chunk = Vec::with_capacity(64);
            deflate
                .compress_vec(b"\n", &mut chunk, FlushCompress::Sync)
                .unwrap();
            Some((Ok(Bytes::from(chunk)), (deflate, signal)))
        },
    );
    stream::iter([Ok(header)]).chain(lines)
}

/// A gzip object of the records with ids `ids`, flushed after half of them.
fn object(ids: std::ops::Range<i64>) -> (Vec<u8>, usize) {
    let text: String = ids
        .map(|n| format!("{{\"key\": {{\"id\": {n}}}, \"meta\": {{\"action\": \"U\"}}}}\n"))
        .collect();
    let half = text
        .match_indices('\n')
        .nth(text.lines().count() / 2)
        .map_or(0, |(i, _)| i + 1);
    gzip_member(text.as_bytes(), half)
}

fn requests(client: &DapClient, endpoint: &'static str, status: &str) -> u64 {
    client
        .metrics()
        .requests
        .get(&(endpoint, status.to_owned()))
        .copied()
        .unwrap_or(0)
}

#[tokio::test]
async fn logs_in_and_sends_the_expected_headers() {
    let (fake, client) = serve(Fake::default(), |_| {}).await;
    assert_eq!(
        client.list_tables("canvas").await.unwrap(),
        ["accounts", "courses"]
    );
    let schema = client.get_schema("canvas", "courses").await.unwrap();
    assert_eq!(schema, json!({"schema": {"type": "object"}, "version": 7}));
    let fake = fake.lock().unwrap();
    assert_eq!(fake.logins, 1);
    let login = &fake.seen[0];
    assert_eq!(login.path, "/ids/auth/login");
    let basic = format!("Basic {}", STANDARD.encode("us-east-1#client:s3cret"));
    assert_eq!(login.headers[header::AUTHORIZATION], basic.as_str());
    assert_eq!(
        login.headers[header::CONTENT_TYPE],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(login.body, "grant_type=client_credentials");
    for seen in &fake.seen {
        assert_eq!(
            seen.headers[header::USER_AGENT],
            concat!("dapsync/", env!("CARGO_PKG_VERSION"))
        );
    }
    assert_eq!(
        fake.seen[1].headers[header::AUTHORIZATION],
        "Bearer token-1"
    );
    assert_eq!(
        fake.seen[2].headers[header::AUTHORIZATION],
        "Bearer token-1"
    );
    assert_eq!(client.metrics().logins, 1);
}

#[tokio::test]
async fn a_refused_token_leads_to_one_new_login() {
    let (fake, client) = serve(
        Fake {
            refuse_tokens_up_to: 1,
            ..Fake::default()
        },
        |_| {},
    )
    .await;
    assert_eq!(client.list_tables("canvas").await.unwrap().len(), 2);
    assert_eq!(fake.lock().unwrap().logins, 2);
    assert_eq!(requests(&client, "list_tables", "401"), 1);
    assert_eq!(requests(&client, "list_tables", "200"), 1);
}

#[tokio::test]
async fn a_second_refusal_fails_loudly_without_retries() {
    let (fake, client) = serve(
        Fake {
            refuse_tokens_up_to: u64::MAX,
            ..Fake::default()
        },
        |_| {},
    )
    .await;
    let error = client.list_tables("canvas").await.unwrap_err();
    assert!(
        matches!(&error, DapError::Api { error, .. } if error.kind == ApiErrorKind::Authentication),
        "{error:?}"
    );
    assert_eq!(fake.lock().unwrap().logins, 2);
    assert_eq!(requests(&client, "list_tables", "401"), 2);
    // Neither the secret nor a token shows in the error.
    let shown = format!("{error} {error:?}");
    assert!(
        !shown.contains("s3cret") && !shown.contains("token-"),
        "{shown}"
    );
}

#[tokio::test]
async fn retries_server_errors_then_gives_up() {
    let (_, client) = serve(Fake::default(), |_| {}).await;
    let error = client.get_schema("canvas", "flaky").await.unwrap_err();
    let DapError::RetriesExhausted {
        endpoint,
        attempts,
        last,
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!((*endpoint, *attempts), ("get_schema", 3));
    assert_eq!(
        last.api_error().map(|e| (&e.kind, e.status)),
        Some((&ApiErrorKind::Server, Some(503)))
    );
    assert_eq!(requests(&client, "get_schema", "503"), 3);
    assert_eq!(client.metrics().retries.get("get_schema"), Some(&2));
}

#[tokio::test]
async fn does_not_retry_a_missing_table() {
    let (_, client) = serve(Fake::default(), |_| {}).await;
    let error = client.get_schema("canvas", "missing").await.unwrap_err();
    assert_eq!(error.type_name(), "NotFoundError");
    assert_eq!(error.uuid(), Some("uuid-404"));
    assert_eq!(requests(&client, "get_schema", "404"), 1);
}

#[tokio::test]
async fn starts_a_query_through_a_429_and_waits_for_the_job() {
    let fake = Fake {
        throttled_starts: 1,
        polls_before_complete: 3,
        ..Fake::default()
    };
    let (fake, client) = serve(fake, |_| {}).await;
    let since = job::parse_timestamp("2024-05-01T10:00:00.5Z").unwrap();
    let complete = client
        .query("canvas", "courses", Query::Incremental { since })
        .await
        .unwrap();
    assert_eq!(complete.id, "job-1");
    assert_eq!(
        complete.watermark(),
        job::parse_timestamp("2024-05-01T14:00:00.123456Z").unwrap()
    );
    let fake = fake.lock().unwrap();
    let starts: Vec<Value> = fake
        .seen
        .iter()
        .filter(|s| s.path.ends_with("/data"))
        .map(|s| serde_json::from_slice(&s.body).unwrap())
        .collect();
    let body = json!({"format": "jsonl", "since": "2024-05-01T10:00:00.500000Z"});
    assert_eq!(starts, [body.clone(), body]);
    assert_eq!(requests(&client, "start_query", "429"), 1);
    assert_eq!(requests(&client, "get_job", "200"), 4);
}

#[tokio::test]
async fn a_failed_job_and_a_job_that_never_ends() {
    let (_, client) = serve(Fake::default(), |o| {
        o.poll.timeout = Duration::from_millis(30)
    })
    .await;
    let error = client
        .query("canvas", "failing", Query::Snapshot)
        .await
        .unwrap_err();
    let DapError::JobFailed { job_id, error: api } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(
        (job_id.as_str(), api.uuid.as_deref()),
        ("job-f", Some("uuid-f"))
    );
    let error = client
        .query("canvas", "endless", Query::Snapshot)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, DapError::JobTimeout { job_id, .. } if job_id == "job-e"),
        "{error:?}"
    );
}

async fn complete_job(client: &DapClient) -> CompleteJob {
    client
        .query("canvas", "courses", Query::Snapshot)
        .await
        .unwrap()
}

#[tokio::test]
async fn streams_every_record_once_despite_expired_urls_cut_bodies_and_dropped_connections() {
    let objects = HashMap::from([
        ("part-a".to_owned(), object(0..10)),
        ("part-b".to_owned(), object(100..111)),
        ("part-c".to_owned(), object(200..207)),
    ]);
    let fake = Fake {
        objects,
        expire_once: HashSet::from(["part-a".to_owned()]),
        truncate_once: HashSet::from(["part-b".to_owned()]),
        break_once: HashSet::from(["part-c".to_owned()]),
        ..Fake::default()
    };
    let (fake, client) = serve(fake, |_| {}).await;
    let job = complete_job(&client).await;
    let mut stream = client.records(&job);
    let mut ids: HashMap<i64, Vec<i64>> = HashMap::new();
    while let Some(batch) = stream.next_batch().await {
        let batch = batch.unwrap();
        assert!(batch.records.len() <= 4 && batch.malformed.is_empty());
        for record in batch.records {
            let id = record.key["id"].as_i64().unwrap();
            ids.entry(id / 100).or_default().push(id);
        }
    }
    assert!(stream.next_batch().await.is_none());
    assert_eq!(ids[&0], (0..10).collect::<Vec<_>>());
    assert_eq!(ids[&1], (100..111).collect::<Vec<_>>());
    assert_eq!(ids[&2], (200..207).collect::<Vec<_>>());

    let fake = fake.lock().unwrap();
    // Two batches of URLs up front, then one more for the expired URL.
    assert_eq!(fake.url_batches, [2, 1, 1]);
    assert_eq!(
        fake.downloads,
        HashMap::from([
            ("part-a".into(), 2),
            ("part-b".into(), 2),
            ("part-c".into(), 2)
        ])
    );
    for seen in fake.seen.iter().filter(|s| s.path.starts_with("/objects/")) {
        assert!(
            !seen.headers.contains_key(header::AUTHORIZATION),
            "{}",
            seen.path
        );
    }
    let metrics = client.metrics();
    assert_eq!(metrics.records_decoded, 28);
    assert_eq!(requests(&client, "download", "403"), 1);
    assert_eq!(requests(&client, "download", "200"), 5);
    assert_eq!(metrics.retries.get("download"), Some(&2));
    let full: u64 = fake
        .objects
        .values()
        .map(|(gzip, _)| gzip.len() as u64)
        .sum();
    let cuts = (fake.objects["part-b"].1 + fake.objects["part-c"].1) as u64;
    assert_eq!(metrics.bytes_downloaded, full + cuts);
}

#[tokio::test]
async fn a_failing_object_ends_the_stream_with_its_error() {
    let fake = Fake {
        objects: HashMap::from([("part-a".to_owned(), object(0..3))]),
        always_fail: HashSet::from(["part-a".to_owned()]),
        ..Fake::default()
    };
    let (_, client) = serve(fake, |_| {}).await;
    let job = complete_job(&client).await;
    let mut stream = client.records(&job);
    let error = stream.next_batch().await.unwrap().unwrap_err();
    let DapError::RetriesExhausted {
        endpoint: "download",
        attempts: 3,
        last,
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(last.api_error().and_then(|e| e.status), Some(500));
    assert!(stream.next_batch().await.is_none());
}

#[tokio::test]
async fn dropping_the_stream_stops_its_downloads() {
    let fake = Fake {
        objects: HashMap::from([("part-a".to_owned(), object(0..3))]),
        endless: HashSet::from(["part-a".to_owned()]),
        ..Fake::default()
    };
    let (started, dropped) = (fake.started.clone(), fake.dropped.clone());
    let (_, client) = serve(fake, |_| {}).await;
    let job = complete_job(&client).await;
    let mut stream = client.records(&job);
    tokio::select! {
        batch = stream.next_batch() => panic!("an endless object yielded {batch:?}"),
        () = started.notified() => {}
    }
    drop(stream);
    // Not a timing assertion: the bound only keeps a broken build from hanging.
    timeout(Duration::from_secs(30), dropped.notified())
        .await
        .expect("the download kept running");
}
