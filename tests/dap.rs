//! The DAP client (`dapsync::dap`) against the fake DAP server (`dapsync::fake`) over loopback
//! HTTP: every endpoint, every fault the fake can inject, retry bounds, the query rate limit,
//! streaming in bounded memory, and logs free of secrets.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use dapsync::dap::{
    Action, ApiErrorKind, ClientOptions, CompleteJob, DapClient, DapError, JobKind, JobStatus,
    PollPolicy, Query, RateLimit, Record, RetryPolicy,
};
use dapsync::fake::{
    AccountError, Changes, Endpoint, FakeDap, FakeDapConfig, FakeTable, Fault, RateLimits,
    RecordedRequest, fixture_tables,
};
use serde_json::{Value, json};

use crate::support::{self, alloc, logs::CapturedLogs};

const NS: &str = "canvas";

/// A fake serving `tables` (canvas tables and their rows) and nothing else.
async fn fake_with(tables: &[(&str, u64)], rows_per_object: usize, job_polls: u32) -> FakeDap {
    let config = FakeDapConfig {
        tables: tables
            .iter()
            .map(|&(table, rows)| FakeTable::new(NS, table, rows))
            .collect(),
        fixture_rows: None,
        rows_per_object,
        job_polls,
        ..FakeDapConfig::default()
    };
    FakeDap::start(config).await.unwrap()
}

/// Options for the fake: quick polls and backoffs, no rate limit worth waiting for, small
/// batches.
fn options(fake: &FakeDap) -> ClientOptions {
    ClientOptions {
        base_url: fake.base_url().to_owned(),
        download_idle_timeout: Duration::from_secs(10),
        retry: RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
        },
        query_rate: RateLimit {
            max: 1000,
            per: Duration::from_secs(1),
        },
        poll: PollPolicy {
            initial_interval: Duration::from_millis(5),
            max_interval: Duration::from_millis(20),
            timeout: Duration::from_secs(30),
        },
        download_concurrency: 2,
        batch_records: 4,
        ..ClientOptions::new(fake.client_id(), fake.client_secret().clone())
    }
}

fn client(fake: &FakeDap) -> DapClient {
    DapClient::new(options(fake)).unwrap()
}

fn client_with(fake: &FakeDap, tweak: impl FnOnce(&mut ClientOptions)) -> DapClient {
    let mut options = options(fake);
    tweak(&mut options);
    DapClient::new(options).unwrap()
}

/// What a record stream delivered before it ended.
#[derive(Debug)]
struct Drained {
    records: Vec<Record>,
    /// Decompressed bytes, as the batches count them.
    bytes: u64,
    /// The error the stream ended with, if it did not end cleanly.
    error: Option<DapError>,
}

async fn drain(client: &DapClient, job: &CompleteJob) -> Drained {
    let mut stream = client.records(job);
    let mut drained = Drained {
        records: Vec::new(),
        bytes: 0,
        error: None,
    };
    while let Some(next) = stream.next_batch().await {
        match next {
            Ok(batch) => {
                assert!(batch.malformed.is_empty(), "{:?}", batch.malformed);
                drained.bytes += batch.bytes;
                drained.records.extend(batch.records);
            }
            Err(error) => {
                assert!(stream.next_batch().await.is_none(), "ends after an error");
                drained.error = Some(error);
            }
        }
    }
    drained
}

/// Every record of a job; panics if the stream fails.
async fn read_all(client: &DapClient, job: &CompleteJob) -> Vec<Record> {
    let drained = drain(client, job).await;
    if let Some(error) = drained.error {
        panic!("the stream failed: {error}");
    }
    drained.records
}

fn key(record: &Record) -> String {
    Value::Object(record.key.clone()).to_string()
}

/// The fake's current rows of a canvas table: key → value.
fn current(fake: &FakeDap, table: &str) -> BTreeMap<String, Value> {
    fake.current_rows(NS, table)
        .into_iter()
        .map(|row| (row["key"].to_string(), row["value"].clone()))
        .collect()
}

/// Upserts and deletes the records into a key → value map.
fn apply(replica: &mut BTreeMap<String, Value>, records: &[Record]) {
    for record in records {
        match record.action {
            Action::Upsert => replica.insert(key(record), Value::Object(record.value.clone())),
            Action::Delete => replica.remove(&key(record)),
        };
    }
}

/// Records by key, asserting that no key comes twice.
fn once_each(records: &[Record]) -> BTreeMap<String, Value> {
    let mut rows = BTreeMap::new();
    for record in records {
        let old = rows.insert(key(record), Value::Object(record.value.clone()));
        assert!(old.is_none(), "key {} delivered twice", key(record));
    }
    rows
}

/// Asserts that a snapshot's records are exactly the table's current rows, each once.
fn assert_current(fake: &FakeDap, table: &str, records: &[Record]) {
    assert_eq!(once_each(records), current(fake, table));
}

fn logged(fake: &FakeDap, endpoint: Endpoint) -> Vec<RecordedRequest> {
    let log = fake.requests().into_iter();
    log.filter(|r| r.endpoint == endpoint).collect()
}

fn statuses(fake: &FakeDap, endpoint: Endpoint) -> Vec<u16> {
    logged(fake, endpoint).iter().map(|r| r.status).collect()
}

/// The client's count of requests to `endpoint` answered with `status`.
fn requests(client: &DapClient, endpoint: &'static str, status: &str) -> u64 {
    let metrics = client.metrics();
    let key = (endpoint, status.to_owned());
    metrics.requests.get(&key).copied().unwrap_or(0)
}

fn retries(client: &DapClient, endpoint: &'static str) -> u64 {
    client.metrics().retries.get(endpoint).copied().unwrap_or(0)
}

/// A plain HTTP client, independent of the one under test.
fn http() -> reqwest::Client {
    // reqwest is built without a TLS provider of its own; plain HTTP still wants one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// An access token from a login of the test's own.
async fn raw_token(fake: &FakeDap) -> String {
    let login: Value = http()
        .post(format!("{}/ids/auth/login", fake.base_url()))
        .basic_auth(fake.client_id(), Some(fake.client_secret().expose()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    login["access_token"].as_str().unwrap().to_owned()
}

/// The fake's answer to a `GET` of `path`, asked with a token of the test's own.
async fn raw_get(fake: &FakeDap, path: &str) -> Value {
    let url = format!("{}{path}", fake.base_url());
    let token = raw_token(fake).await;
    let response = http().get(url).bearer_auth(token).send().await.unwrap();
    response.json().await.unwrap()
}

/// A timestamp as the client sends it in a query body.
fn wire_time(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The API error a call failed with, and the endpoint it named.
fn api_error(error: &DapError) -> (&'static str, &dapsync::dap::ApiError) {
    match error {
        DapError::Api { endpoint, error } => (endpoint, error),
        other => panic!("not an API error: {other:?}"),
    }
}

/// The attempts and last error of a `RetriesExhausted`.
fn exhausted<'a>(error: &'a DapError, expected_endpoint: &str) -> (u32, &'a DapError) {
    match error {
        DapError::RetriesExhausted {
            endpoint,
            attempts,
            last,
        } => {
            assert_eq!(*endpoint, expected_endpoint);
            (*attempts, last)
        }
        other => panic!("not RetriesExhausted: {other:?}"),
    }
}

fn is_uuid(text: Option<&str>) -> bool {
    text.is_some_and(|text| uuid::Uuid::parse_str(text).is_ok())
}

#[tokio::test]
async fn logs_in_once_and_speaks_every_endpoint_as_the_api_says() {
    let fake = FakeDap::start(FakeDapConfig {
        tables: vec![
            FakeTable::new(NS, "courses", 30),
            FakeTable::new(NS, "users", 2),
        ],
        fixture_rows: None,
        rows_per_object: 3,
        job_polls: 2,
        ..FakeDapConfig::default()
    })
    .await
    .unwrap();
    let client = client(&fake);

    client.ensure_login().await.unwrap();
    client.ensure_login().await.unwrap();
    assert_eq!(client.list_tables(NS).await.unwrap(), ["courses", "users"]);
    let schema = client.get_schema(NS, "courses").await.unwrap();
    assert_eq!(schema, fake.schema(NS, "courses"));

    // With two polls per state the job answers waiting, waiting, running, running, ...
    let mut job = client
        .start_query(NS, "courses", Query::Snapshot)
        .await
        .unwrap();
    let mut seen = vec![job.status];
    for _ in 0..3 {
        job = client.get_job(&job.id).await.unwrap();
        seen.push(job.status);
    }
    assert_eq!(
        seen,
        [
            JobStatus::Waiting,
            JobStatus::Waiting,
            JobStatus::Running,
            JobStatus::Running
        ]
    );
    assert!(job.objects.is_empty() && job.at.is_none());
    let job = client.wait_for_job(job).await.unwrap();
    let at = fake.latest_commit(NS, "courses");
    assert_eq!(job.kind, JobKind::Snapshot { at });
    assert_eq!(Some(job.schema_version), schema["version"].as_i64());
    assert_eq!(job.objects.len(), 10, "30 rows, 3 per object");
    let polls = statuses(&fake, Endpoint::Job);
    assert!(polls.len() >= 4, "{polls:?}");
    assert!(
        polls[..polls.len() - 1].iter().all(|&s| s == 202),
        "{polls:?}"
    );
    assert_eq!(polls.last(), Some(&200));

    // Every object's URL in one request.
    let urls = client.resolve_urls(&job.objects).await.unwrap();
    assert_eq!(urls.len(), 10);
    let ids: Vec<Value> = job.objects.iter().map(|o| json!({"id": o.id})).collect();
    let url_bodies: Vec<Option<Value>> = logged(&fake, Endpoint::ObjectUrls)
        .into_iter()
        .map(|r| r.body)
        .collect();
    assert_eq!(url_bodies, [Some(Value::Array(ids.clone()))]);

    // The stream resolves them again, in one request too, and downloads every object.
    let drained = drain(&client, &job).await;
    assert!(drained.error.is_none(), "{:?}", drained.error);
    assert_current(&fake, "courses", &drained.records);
    let url_requests = logged(&fake, Endpoint::ObjectUrls);
    assert_eq!(url_requests.len(), 2);
    assert_eq!(url_requests[1].body, Some(Value::Array(ids)));
    let downloads = logged(&fake, Endpoint::Download);
    assert_eq!(downloads.len(), 10);
    for download in &downloads {
        assert_eq!(download.status, 200);
        assert_eq!(
            download.authorization, None,
            "no Authorization on downloads"
        );
        assert!(download.query.as_deref().unwrap().contains("signature="));
    }

    // What went over the wire: a login with Basic credentials and a form, then bearer calls.
    let log = fake.requests();
    let logins: Vec<&RecordedRequest> = log
        .iter()
        .filter(|r| r.endpoint == Endpoint::Login)
        .collect();
    assert_eq!(logins.len(), 1, "one login for every call");
    let login = logins[0];
    assert_eq!(
        (login.method.as_str(), login.authorization.as_deref()),
        ("POST", Some("Basic"))
    );
    assert_eq!(login.status, 200, "the fake accepted the credentials");
    assert_eq!(
        login.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(
        login.body,
        Some(json!({"grant_type": "client_credentials"}))
    );
    for request in &log {
        let user_agent = &request.headers["user-agent"];
        assert!(user_agent.starts_with("dapsync/"), "{user_agent}");
        if !matches!(request.endpoint, Endpoint::Login | Endpoint::Download) {
            assert_eq!(
                request.authorization.as_deref(),
                Some("Bearer"),
                "{request:?}"
            );
        }
    }
    let query = &logged(&fake, Endpoint::Query)[0];
    assert_eq!(query.path, "/dap/query/canvas/table/courses/data");
    assert_eq!(query.body, Some(json!({"format": "jsonl"})));

    // The bytes on the wire, fetched independently, are the records' lines and what the
    // metrics count.
    let http = http();
    let (mut compressed, mut text) = (0, String::new());
    for object in &job.objects {
        let body = http.get(&urls[&object.id]).send().await.unwrap();
        let body = body.bytes().await.unwrap();
        compressed += body.len() as u64;
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut text)
            .unwrap();
    }
    let mut wire_lines: Vec<&str> = text.lines().collect();
    let mut lines: Vec<&str> = drained.records.iter().map(|r| r.line.as_str()).collect();
    wire_lines.sort_unstable();
    lines.sort_unstable();
    assert_eq!(lines, wire_lines);
    assert_eq!(drained.bytes, text.len() as u64);
    let metrics = client.metrics();
    assert_eq!(metrics.bytes_downloaded, compressed);
    assert_eq!(metrics.records_decoded, 30);
    assert_eq!((metrics.logins, metrics.malformed_lines), (1, 0));
    assert_eq!(requests(&client, "download", "200"), 10);
    assert_eq!(requests(&client, "object_urls", "200"), 2);
    assert!(metrics.retries.is_empty(), "{:?}", metrics.retries);
}

#[tokio::test]
async fn a_snapshot_and_chained_incrementals_reproduce_the_source() {
    let fake = support::fake(&[(NS, "courses", 40)]).await;
    let client = client(&fake);
    let snapshot = client.query(NS, "courses", Query::Snapshot).await.unwrap();
    let records = read_all(&client, &snapshot).await;
    assert_eq!(snapshot.objects.len(), 6, "40 rows, 7 per object");
    assert!(records.iter().all(|r| r.action == Action::Upsert));
    let mut replica = BTreeMap::new();
    apply(&mut replica, &records);
    assert_eq!(replica, current(&fake, "courses"));

    let mut ever_seen: Vec<String> = replica.keys().cloned().collect();
    let mut since = snapshot.watermark();
    let mut expected_bodies = vec![json!({"format": "jsonl"})];
    for round in 0..3 {
        let until = fake.advance(
            NS,
            "courses",
            Changes {
                updates: 5,
                inserts: 3,
                deletes: 2,
                inserted_then_deleted: 2,
            },
        );
        let job = client
            .query(NS, "courses", Query::Incremental { since })
            .await
            .unwrap();
        assert_eq!(job.kind, JobKind::Incremental { since, until });
        expected_bodies.push(json!({"format": "jsonl", "since": wire_time(since)}));
        let records = read_all(&client, &job).await;
        once_each(&records);
        // `since` is inclusive, so each window also holds the previous round's commit: its
        // two inserted-then-deleted keys come again, as deletes of keys never seen.
        let never_seen = records
            .iter()
            .filter(|r| r.action == Action::Delete && !ever_seen.contains(&key(r)))
            .inspect(|r| assert!(r.value.is_empty()))
            .count();
        assert_eq!(never_seen, if round == 0 { 2 } else { 4 }, "round {round}");
        apply(&mut replica, &records);
        ever_seen.extend(replica.keys().cloned());
        assert_eq!(replica, current(&fake, "courses"), "round {round}");
        since = job.watermark();
    }
    let bodies: Vec<Value> = logged(&fake, Endpoint::Query)
        .into_iter()
        .map(|r| r.body.unwrap())
        .collect();
    assert_eq!(bodies, expected_bodies, "never an `until`");
}

#[tokio::test]
async fn a_429_is_retried_no_sooner_than_retry_after() {
    let fake = support::fake(&[(NS, "courses", 5)]).await;
    let client = client(&fake);
    fake.inject(
        Fault::RateLimited {
            retry_after_secs: Some(1),
        },
        Endpoint::Query,
        1,
    );
    let job = client.query(NS, "courses", Query::Snapshot).await.unwrap();
    assert_current(&fake, "courses", &read_all(&client, &job).await);
    let starts = logged(&fake, Endpoint::Query);
    assert_eq!(
        starts.iter().map(|r| r.status).collect::<Vec<_>>(),
        [429, 202]
    );
    let waited = starts[1].received_at - starts[0].received_at;
    assert!(waited >= TimeDelta::seconds(1), "retried after {waited}");
    assert_eq!(requests(&client, "start_query", "429"), 1);
    assert_eq!(retries(&client, "start_query"), 1);

    // Without Retry-After the backoff alone decides.
    fake.inject(
        Fault::RateLimited {
            retry_after_secs: None,
        },
        Endpoint::GetSchema,
        2,
    );
    let schema = client.get_schema(NS, "courses").await.unwrap();
    assert_eq!(schema, fake.schema(NS, "courses"));
    assert_eq!(statuses(&fake, Endpoint::GetSchema), [429, 429, 200]);
    assert_eq!(retries(&client, "get_schema"), 2);
}

#[tokio::test]
async fn server_errors_are_retried_and_retries_stop_at_their_bound() {
    const MAX_ATTEMPTS: u32 = 3;
    let cases = [
        (500, false),
        (500, true),
        (502, false),
        (502, true),
        (504, false),
        (504, true),
    ];
    for (status, html) in cases {
        let case = format!("HTTP {status}, html {html}");
        let fake = support::fake(&[(NS, "courses", 1)]).await;
        let client = client_with(&fake, |o| o.retry.max_attempts = MAX_ATTEMPTS);
        let fault = Fault::Status { status, html };

        fake.inject(fault.clone(), Endpoint::GetSchema, MAX_ATTEMPTS - 1);
        let schema = client.get_schema(NS, "courses").await.unwrap();
        assert_eq!(schema, fake.schema(NS, "courses"), "{case}");
        assert_eq!(
            statuses(&fake, Endpoint::GetSchema),
            [status, status, 200],
            "{case}"
        );

        fake.clear_requests();
        fake.inject(fault, Endpoint::GetSchema, MAX_ATTEMPTS + 5);
        let error = client.get_schema(NS, "courses").await.unwrap_err();
        assert_eq!(
            statuses(&fake, Endpoint::GetSchema),
            vec![status; MAX_ATTEMPTS as usize],
            "{case}: exactly the allowed attempts reach the server"
        );
        let (attempts, last) = exhausted(&error, "get_schema");
        assert_eq!(attempts, MAX_ATTEMPTS, "{case}");
        let (endpoint, api) = api_error(last);
        assert_eq!(
            (endpoint, api.status),
            ("get_schema", Some(status)),
            "{case}"
        );
        let expected = match (status, html) {
            (500, false) => ApiErrorKind::Processing,
            (504, _) => ApiErrorKind::GatewayTimeout,
            _ => ApiErrorKind::Server,
        };
        assert_eq!(api.kind, expected, "{case}");
        // Only the service's own 500 is a DAP error with a uuid; gateway bodies are not.
        assert_eq!(
            is_uuid(api.uuid.as_deref()),
            !html && status == 500,
            "{case}"
        );
        if html {
            assert!(
                api.message.contains(&format!("<h1>{status} ")),
                "{case}: {api}"
            );
        }
        assert!(error.is_transient() && !error.needs_snapshot(), "{case}");
        assert_eq!(error.type_name(), api.type_name(), "{case}");
        let retried = u64::from(2 * (MAX_ATTEMPTS - 1));
        assert_eq!(retries(&client, "get_schema"), retried, "{case}");
    }

    // A login that keeps failing stops at the bound too.
    let fake = support::fake(&[(NS, "courses", 1)]).await;
    let client = client_with(&fake, |o| o.retry.max_attempts = MAX_ATTEMPTS);
    let unavailable = Fault::Status {
        status: 503,
        html: false,
    };
    fake.inject(unavailable, Endpoint::Login, MAX_ATTEMPTS + 5);
    let error = client.list_tables(NS).await.unwrap_err();
    let (attempts, last) = exhausted(&error, "login");
    assert_eq!(attempts, MAX_ATTEMPTS);
    assert_eq!(api_error(last).1.status, Some(503));
    assert_eq!(
        statuses(&fake, Endpoint::Login),
        vec![503; MAX_ATTEMPTS as usize]
    );
    assert!(logged(&fake, Endpoint::ListTables).is_empty());
}

#[tokio::test]
async fn a_failed_job_surfaces_with_the_servers_uuid() {
    let fake = support::fake(&[(NS, "courses", 3)]).await;
    let client = client(&fake);
    // The job fails by itself (a fault on the query), or on a poll.
    for on in [Endpoint::Query, Endpoint::Job] {
        fake.clear_requests();
        fake.inject(Fault::FailedJob, on, 1);
        let error = client
            .query(NS, "courses", Query::Snapshot)
            .await
            .unwrap_err();
        let DapError::JobFailed { job_id, error: api } = &error else {
            panic!("{on:?}: {error:?}");
        };
        let job = raw_get(&fake, &format!("/dap/job/{job_id}")).await;
        assert_eq!(job["status"], "failed", "{on:?}");
        assert!(is_uuid(error.uuid()), "{on:?}");
        assert_eq!(error.uuid(), job["error"]["uuid"].as_str(), "{on:?}");
        assert_eq!((&api.kind, api.status), (&ApiErrorKind::Processing, None));
        assert_eq!(error.type_name(), "ProcessingError");
        assert_eq!(logged(&fake, Endpoint::Query).len(), 1, "{on:?}");
    }
}

#[tokio::test]
async fn snapshot_required_and_out_of_range_are_told_apart_and_not_retried() {
    let fake = support::fake(&[(NS, "courses", 3)]).await;
    let client = client(&fake);
    let snapshot = client.query(NS, "courses", Query::Snapshot).await.unwrap();
    let since = snapshot.watermark();
    let incremental = Query::Incremental { since };

    let check = |error: &DapError, type_name: &str| {
        let (endpoint, api) = api_error(error);
        assert_eq!((endpoint, api.status), ("start_query", Some(400)));
        assert_eq!(error.type_name(), type_name);
        let window = match &api.kind {
            ApiErrorKind::SnapshotRequired { since, .. }
                if type_name == "SnapshotRequiredError" =>
            {
                since
            }
            ApiErrorKind::OutOfRange { since, .. } if type_name == "OutOfRangeError" => since,
            other => panic!("{type_name}: {other:?}"),
        };
        assert_eq!(*window, Some(snapshot.watermark()));
        assert!(error.needs_snapshot() && !error.is_transient() && !error.is_account_level());
        assert!(is_uuid(error.uuid()), "{type_name}: {error}");
    };
    for (fault, type_name) in [
        (Fault::SnapshotRequired, "SnapshotRequiredError"),
        (Fault::OutOfRange, "OutOfRangeError"),
    ] {
        fake.clear_requests();
        fake.inject(fault, Endpoint::Query, 1);
        let error = client.query(NS, "courses", incremental).await.unwrap_err();
        check(&error, type_name);
        assert_eq!(logged(&fake, Endpoint::Query).len(), 1, "{type_name}");
    }

    // The real causes: an upstream reload, then a retention that `since` falls outside of.
    fake.clear_requests();
    fake.require_snapshot(NS, "courses");
    let error = client.query(NS, "courses", incremental).await.unwrap_err();
    check(&error, "SnapshotRequiredError");
    fake.set_retention(NS, "courses", Duration::from_secs(60));
    fake.travel(Duration::from_secs(120));
    let error = client.query(NS, "courses", incremental).await.unwrap_err();
    check(&error, "OutOfRangeError");
    assert_eq!(statuses(&fake, Endpoint::Query), [400, 400]);
}

#[tokio::test]
async fn account_errors_and_missing_things_are_not_retried() {
    let fake = support::fake(&[(NS, "courses", 3)]).await;
    let client = client(&fake);
    for account in [
        AccountError::AccountNotOnboarded,
        AccountError::AccountDisabled,
        AccountError::AccountUnderMaintenance,
    ] {
        fake.clear_requests();
        fake.inject(Fault::Account { error: account }, Endpoint::Query, 1);
        let error = client
            .query(NS, "courses", Query::Snapshot)
            .await
            .unwrap_err();
        let (_, api) = api_error(&error);
        assert_eq!(error.type_name(), format!("{account:?}"));
        assert_eq!(api.status, Some(403));
        assert!(error.is_account_level() && !error.is_transient());
        assert!(is_uuid(error.uuid()));
        assert_eq!(statuses(&fake, Endpoint::Query), [403], "{account:?}");
    }
    // Refused at login: nothing else is tried.
    let fresh = client_with(&fake, |_| {});
    fake.clear_requests();
    let disabled = AccountError::AccountDisabled;
    fake.inject(Fault::Account { error: disabled }, Endpoint::Login, 1);
    let error = fresh.list_tables(NS).await.unwrap_err();
    assert!(error.is_account_level(), "{error:?}");
    assert_eq!(statuses(&fake, Endpoint::Login), [403]);
    assert!(logged(&fake, Endpoint::ListTables).is_empty());

    // Missing tables, namespaces and jobs.
    fake.clear_requests();
    let s = String::from;
    let not_found = |error: &DapError| match &api_error(error).1.kind {
        ApiErrorKind::NotFound { id, kind } => (id.clone().unwrap(), kind.clone().unwrap()),
        other => panic!("{other:?}"),
    };
    let error = client.get_schema(NS, "no_such_table").await.unwrap_err();
    assert_eq!(not_found(&error), (s("no_such_table"), s("table")));
    assert!(!error.is_transient() && is_uuid(error.uuid()));
    let error = client.list_tables("no_such_namespace").await.unwrap_err();
    assert_eq!(not_found(&error), (s("no_such_namespace"), s("namespace")));
    fake.inject(Fault::NotFound, Endpoint::Job, 1);
    let job = client
        .start_query(NS, "courses", Query::Snapshot)
        .await
        .unwrap();
    let error = client.wait_for_job(job.clone()).await.unwrap_err();
    assert_eq!(not_found(&error), (job.id, s("job")));
    assert_eq!(statuses(&fake, Endpoint::GetSchema), [404]);
    assert_eq!(statuses(&fake, Endpoint::ListTables), [404]);
    assert_eq!(statuses(&fake, Endpoint::Job), [404]);
}

#[tokio::test]
async fn an_expired_url_is_resolved_again() {
    let fake = fake_with(&[("courses", 20)], 4, 0).await;
    let client = client_with(&fake, |o| {
        o.download_concurrency = 1;
        o.batch_records = 2;
    });
    let job = client.query(NS, "courses", Query::Snapshot).await.unwrap();
    assert_eq!(job.objects.len(), 5);

    fake.inject(Fault::ExpiredUrl, Endpoint::Download, 1);
    assert_current(&fake, "courses", &read_all(&client, &job).await);
    assert_eq!(
        statuses(&fake, Endpoint::Download),
        [403, 200, 200, 200, 200, 200]
    );
    let url_requests = logged(&fake, Endpoint::ObjectUrls);
    assert_eq!(url_requests.len(), 2);
    let first = json!([{"id": job.objects[0].id}]);
    assert_eq!(url_requests[1].body, Some(first));

    // Really expired: every URL is resolved with the first download, then the clock passes
    // their lifetime before the next downloads start.
    fake.clear_requests();
    let mut stream = client.records(&job);
    let mut records = stream.next_batch().await.unwrap().unwrap().records;
    fake.travel(Duration::from_secs(20 * 60));
    while let Some(batch) = stream.next_batch().await {
        records.extend(batch.unwrap().records);
    }
    assert_current(&fake, "courses", &records);
    assert_eq!(
        statuses(&fake, Endpoint::Download),
        [200, 403, 200, 403, 200, 403, 200, 403, 200]
    );
    assert_eq!(logged(&fake, Endpoint::ObjectUrls).len(), 1 + 4);
}

/// A snapshot of courses in one object of 40 rows, and a client that hands them on in batches
/// of 4 and makes at most `max_attempts` attempts.
async fn one_object_of_40_rows(max_attempts: u32) -> (FakeDap, DapClient, CompleteJob) {
    let fake = fake_with(&[("courses", 40)], 100, 0).await;
    let client = client_with(&fake, |o| {
        o.retry.max_attempts = max_attempts;
        o.batch_records = 4;
    });
    let job = client.query(NS, "courses", Query::Snapshot).await.unwrap();
    assert_eq!(job.objects.len(), 1);
    (fake, client, job)
}

#[tokio::test]
async fn cut_and_dropped_bodies_are_detected_and_downloaded_again() {
    const MAX_ATTEMPTS: u32 = 3;
    for fault in [
        Fault::CutMidRecord,
        Fault::CutAtRecordBoundary,
        Fault::DropConnection,
    ] {
        // Cut after the object's 20th line (or inside it).
        let (fake, client, job) = one_object_of_40_rows(MAX_ATTEMPTS).await;

        fake.inject(fault.clone(), Endpoint::Download, 1);
        let records = read_all(&client, &job).await;
        assert_current(&fake, "courses", &records);
        assert_eq!(statuses(&fake, Endpoint::Download), [200, 200], "{fault:?}");
        assert_eq!(retries(&client, "download"), 1, "{fault:?}");

        fake.clear_requests();
        fake.inject(fault.clone(), Endpoint::Download, MAX_ATTEMPTS + 5);
        let drained = drain(&client, &job).await;
        assert_eq!(
            logged(&fake, Endpoint::Download).len(),
            MAX_ATTEMPTS as usize,
            "{fault:?}"
        );
        let error = drained.error.expect("the stream must not end as complete");
        let (attempts, last) = exhausted(&error, "download");
        assert_eq!(attempts, MAX_ATTEMPTS, "{fault:?}");
        // A cut body fails its gzip checks; a dropped connection is a transport error.
        match (&fault, last) {
            (Fault::DropConnection, DapError::Transport { endpoint, .. }) => {
                assert_eq!(*endpoint, "download");
            }
            (
                Fault::CutMidRecord | Fault::CutAtRecordBoundary,
                DapError::IncompleteObject { object_id, .. },
            ) => {
                assert_eq!(object_id, &job.objects[0].id, "{fault:?}");
            }
            (_, other) => panic!("{fault:?}: {other:?}"),
        }
        assert!(error.is_transient(), "{fault:?}");
        // What came before the cut, in whole batches, each record once; never the whole object.
        // Lines 1-19 and half of line 20 arrive before a cut inside the record (batches 1-4
        // are full and go out), lines 1-20 before a cut after it (batches 1-5).
        let rows = once_each(&drained.records);
        let before_cut = if fault == Fault::CutAtRecordBoundary {
            20
        } else {
            16
        };
        assert_eq!(rows.len(), before_cut, "{fault:?}");
        let source = current(&fake, "courses");
        assert!(
            rows.iter()
                .all(|(key, value)| source.get(key) == Some(value))
        );
    }
}

/// A connection that breaks off again and again, a little further each time, does not use up
/// the retry budget: only attempts that hand on nothing new count against it.
#[tokio::test]
async fn a_download_that_keeps_getting_further_is_not_given_up() {
    const MAX_ATTEMPTS: u32 = 2;
    const BREAKS: u64 = 5;
    let (fake, client, job) = one_object_of_40_rows(MAX_ATTEMPTS).await;
    read_all(&client, &job).await;
    let size = client.metrics().bytes_downloaded;

    // Each attempt gets a sixth of the object further (about 7 more lines).
    for k in 1..=BREAKS {
        let bytes = size * k / (BREAKS + 1);
        fake.inject(Fault::DropConnectionAfter { bytes }, Endpoint::Download, 1);
    }
    fake.clear_requests();
    let retried = retries(&client, "download");
    let records = read_all(&client, &job).await;
    assert_current(&fake, "courses", &records);
    assert_eq!(
        statuses(&fake, Endpoint::Download).len(),
        BREAKS as usize + 1
    );
    assert_eq!(retries(&client, "download") - retried, BREAKS);

    // Breaks that get no further use the budget up.
    fake.clear_requests();
    let at = size / 2;
    fake.inject(
        Fault::DropConnectionAfter { bytes: at },
        Endpoint::Download,
        MAX_ATTEMPTS + 3,
    );
    let error = drain(&client, &job).await.error.unwrap();
    let (attempts, _) = exhausted(&error, "download");
    assert_eq!(attempts, MAX_ATTEMPTS);
    // The first attempt got further than nothing and starts the count; the second did not.
    assert_eq!(
        logged(&fake, Endpoint::Download).len(),
        MAX_ATTEMPTS as usize
    );
}

#[tokio::test]
async fn a_slow_body_completes_and_a_stalled_one_is_broken_off() {
    let fake = fake_with(&[("courses", 40)], 100, 0).await;
    let client = client(&fake);
    let job = client.query(NS, "courses", Query::Snapshot).await.unwrap();

    let trickle = Fault::SlowBody {
        chunk_bytes: 1024,
        pause_ms: 5,
    };
    fake.inject(trickle, Endpoint::Download, 1);
    assert_current(&fake, "courses", &read_all(&client, &job).await);
    assert_eq!(statuses(&fake, Endpoint::Download), [200]);
    assert_eq!(retries(&client, "download"), 0);

    // A pause longer than the idle timeout breaks the download off; the retry completes.
    let stall = Fault::SlowBody {
        chunk_bytes: 1024,
        pause_ms: 3_000,
    };
    let impatient = Duration::from_millis(200);
    let client = client_with(&fake, |o| o.download_idle_timeout = impatient);
    fake.clear_requests();
    fake.inject(stall.clone(), Endpoint::Download, 1);
    assert_current(&fake, "courses", &read_all(&client, &job).await);
    assert_eq!(statuses(&fake, Endpoint::Download), [200, 200]);
    assert_eq!(retries(&client, "download"), 1);

    let once = client_with(&fake, |o| {
        o.download_idle_timeout = impatient;
        o.retry.max_attempts = 1;
    });
    fake.inject(stall, Endpoint::Download, 1);
    let error = drain(&once, &job).await.error.unwrap();
    let (_, last) = exhausted(&error, "download");
    assert!(
        matches!(last, DapError::IncompleteObject { reason, .. } if reason.contains("200ms")),
        "{last:?}"
    );
}

#[tokio::test]
async fn an_expired_token_leads_to_one_new_login() {
    let fake = support::fake(&[(NS, "courses", 3)]).await;
    let client = client(&fake);
    let logins = || statuses(&fake, Endpoint::Login).len();

    fake.inject(Fault::ExpiredToken, Endpoint::GetSchema, 1);
    let schema = client.get_schema(NS, "courses").await.unwrap();
    assert_eq!(schema, fake.schema(NS, "courses"));
    let sequence: Vec<(Endpoint, u16)> = fake
        .requests()
        .iter()
        .map(|r| (r.endpoint, r.status))
        .collect();
    assert_eq!(
        sequence,
        [
            (Endpoint::Login, 200),
            (Endpoint::GetSchema, 401),
            (Endpoint::Login, 200),
            (Endpoint::GetSchema, 200),
        ]
    );
    assert_eq!(client.metrics().logins, 2);
    assert_eq!(requests(&client, "get_schema", "401"), 1);

    // Really expired: the server's clock has passed the token's `exp`.
    fake.travel(Duration::from_secs(2 * 3600));
    let job = client.query(NS, "courses", Query::Snapshot).await.unwrap();
    assert_current(&fake, "courses", &read_all(&client, &job).await);
    assert_eq!(logins(), 3);
    assert_eq!(statuses(&fake, Endpoint::Query), [401, 202]);

    // A fresh token refused too: the error is returned, with no further tries.
    fake.clear_requests();
    fake.inject(Fault::ExpiredToken, Endpoint::ListTables, 2);
    let error = client.list_tables(NS).await.unwrap_err();
    let (_, api) = api_error(&error);
    assert_eq!(
        (&api.kind, api.status),
        (&ApiErrorKind::Authentication, Some(401))
    );
    assert!(!error.is_transient());
    assert_eq!(statuses(&fake, Endpoint::ListTables), [401, 401]);
    assert_eq!(logins(), 1);
    assert_eq!(client.metrics().logins, 4);
}

#[tokio::test]
async fn the_query_rate_limit_holds_across_clones() {
    const PER: Duration = Duration::from_secs(2);
    let tables: Vec<&str> = fixture_tables()
        .filter(|&(namespace, _)| namespace == NS)
        .map(|(_, table)| table)
        .take(9)
        .collect();
    let rows: Vec<(&str, u64)> = tables.iter().map(|&t| (t, 2)).collect();
    let fake = fake_with(&rows, 7, 1).await;
    let client = client_with(&fake, |o| o.query_rate = RateLimit { max: 3, per: PER });

    let mut tasks = tokio::task::JoinSet::new();
    for &table in &tables {
        let client = client.clone();
        tasks.spawn(async move { client.query(NS, table, Query::Snapshot).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }

    let starts: Vec<DateTime<Utc>> = logged(&fake, Endpoint::Query)
        .iter()
        .inspect(|r| assert!(matches!(r.status, 200 | 202), "{r:?}"))
        .map(|r| r.received_at)
        .collect();
    assert_eq!(starts.len(), 9);
    // The limiter spaces the starts as the client sends them; they arrive a little later, by
    // a delay that varies with scheduling (on a loaded machine, a few hundred milliseconds),
    // which this slack allows for. Without the limiter all nine would arrive within it.
    let slack = TimeDelta::milliseconds(500);
    let per = TimeDelta::from_std(PER).unwrap();
    for (window, fourth) in starts.iter().zip(&starts[3..]) {
        let span = *fourth - *window;
        assert!(span >= per - slack, "4 starts within {span}: {starts:?}");
    }
    assert_eq!(statuses(&fake, Endpoint::Login).len(), 1);
    let metrics = client.metrics();
    // Three started at once, three waited one period, three two periods.
    assert_eq!(metrics.rate_limit_waits, 6, "{metrics:?}");
    assert!(
        metrics.rate_limit_wait_seconds > 3.0 * (2.0 + 4.0) - 1.0,
        "{metrics:?}"
    );
}

#[tokio::test]
async fn a_query_that_waited_for_its_slot_takes_a_token_after_the_wait() {
    // Tokens live 2 s; query starts are spaced 3 s apart: every query but the first waits
    // longer than a token lives. A token taken before the wait would be refused, and its
    // retry, queued again, would go out with a fresh token that had expired too.
    let tables: Vec<&str> = fixture_tables()
        .filter(|&(namespace, _)| namespace == NS)
        .map(|(_, table)| table)
        .take(3)
        .collect();
    let fake = FakeDap::start(FakeDapConfig {
        tables: tables.iter().map(|&t| FakeTable::new(NS, t, 2)).collect(),
        fixture_rows: None,
        token_lifetime: Duration::from_secs(2),
        ..FakeDapConfig::default()
    })
    .await
    .unwrap();
    let client = client_with(&fake, |o| {
        o.query_rate = RateLimit {
            max: 1,
            per: Duration::from_secs(3),
        }
    });

    let mut tasks = tokio::task::JoinSet::new();
    for &table in &tables {
        let client = client.clone();
        tasks.spawn(async move { client.query(NS, table, Query::Snapshot).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }
    assert_eq!(statuses(&fake, Endpoint::Query), [202, 202, 202]);
    assert_eq!(client.metrics().rate_limit_waits, 2);
}

#[tokio::test]
async fn above_the_apis_query_limit_the_fake_answers_429_with_retry_after() {
    let tables: Vec<&str> = fixture_tables()
        .filter(|&(namespace, _)| namespace == NS)
        .map(|(_, table)| table)
        .take(3)
        .collect();
    let fake = FakeDap::start(FakeDapConfig {
        tables: tables.iter().map(|&t| FakeTable::new(NS, t, 2)).collect(),
        fixture_rows: None,
        rate_limits: Some(RateLimits {
            per_minute: BTreeMap::from([(Endpoint::Query, 2)]),
            window: Duration::from_secs(2),
        }),
        ..FakeDapConfig::default()
    })
    .await
    .unwrap();
    // A client that does not keep to the limit and does not retry: the third start is refused.
    let eager = client_with(&fake, |o| o.retry.max_attempts = 1);
    for &table in &tables[..2] {
        eager.query(NS, table, Query::Snapshot).await.unwrap();
    }
    let refused = eager
        .query(NS, tables[2], Query::Snapshot)
        .await
        .unwrap_err();
    let (_, last) = exhausted(&refused, "start_query");
    let (_, api) = api_error(last);
    assert!(
        matches!(api.kind, ApiErrorKind::RateLimited { retry_after: Some(after) } if after <= Duration::from_secs(2)),
        "{api:?}"
    );
    assert_eq!(statuses(&fake, Endpoint::Query), [202, 202, 429]);
    // One that retries waits out Retry-After and gets through.
    let patient = client(&fake);
    let started = std::time::Instant::now();
    patient.query(NS, tables[2], Query::Snapshot).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(*statuses(&fake, Endpoint::Query).last().unwrap(), 202);
}

/// The test's path in the binary, for [`alloc::alone`].
const BOUNDED_MEMORY_TEST: &str = "dap::a_large_object_streams_in_bounded_memory";

#[tokio::test]
async fn a_large_object_streams_in_bounded_memory() {
    const BUDGET: usize = 64 << 20;
    const ROWS: u64 = 200_000;
    if !alloc::alone(BOUNDED_MEMORY_TEST) {
        return;
    }
    let fake = fake_with(&[("assignments", ROWS)], ROWS as usize, 1).await;
    let client = client_with(&fake, |o| {
        o.batch_records = 1000;
        // The fake writes the whole object before the job completes: slow in a debug build
        // on a busy machine.
        o.poll.timeout = Duration::from_secs(600);
    });
    let job = client
        .query(NS, "assignments", Query::Snapshot)
        .await
        .unwrap();
    assert_eq!(job.objects.len(), 1);
    // The object is on disk now: measure from here.
    alloc::reset_peak();
    let baseline = alloc::current();
    let mut stream = client.records(&job);
    let (mut records, mut bytes) = (0, 0);
    while let Some(batch) = stream.next_batch().await {
        let batch = batch.unwrap();
        records += batch.records.len() as u64;
        bytes += batch.bytes;
    }
    let peak = alloc::peak();
    assert_eq!(records, ROWS);
    assert!(
        bytes > 5 * BUDGET as u64,
        "the object is only {bytes} bytes"
    );
    // The counter does see the batches go by.
    assert!(
        peak > baseline + (1 << 20),
        "{peak} bytes at most, {baseline} before"
    );
    assert!(
        peak < BUDGET,
        "heap peaked at {peak} bytes ({baseline} before) for {bytes} bytes of records"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn no_secret_reaches_the_logs() {
    // The runtime has one thread, so every task the test starts logs to this subscriber.
    let logs = CapturedLogs::default();
    let _default = tracing::subscriber::set_default(logs.subscriber());

    let fake = fake_with(&[("courses", 20)], 5, 1).await;
    let client = client(&fake);
    let secret = fake.client_secret().expose().to_owned();

    fake.inject(
        Fault::Status {
            status: 502,
            html: true,
        },
        Endpoint::ListTables,
        1,
    );
    fake.inject(Fault::ExpiredToken, Endpoint::GetSchema, 1);
    fake.inject(Fault::CutMidRecord, Endpoint::Download, 1);
    fake.inject(Fault::ExpiredUrl, Endpoint::Download, 1);
    client.list_tables(NS).await.unwrap();
    client.get_schema(NS, "courses").await.unwrap();
    let snapshot = client.query(NS, "courses", Query::Snapshot).await.unwrap();
    read_all(&client, &snapshot).await;
    // A token the server's clock has expired: a 401, then a new login.
    fake.advance(
        NS,
        "courses",
        Changes {
            updates: 3,
            ..Changes::default()
        },
    );
    fake.travel(Duration::from_secs(2 * 3600));
    let since = snapshot.watermark();
    let incremental = client
        .query(NS, "courses", Query::Incremental { since })
        .await
        .unwrap();
    read_all(&client, &incremental).await;
    assert_eq!(client.metrics().logins, 3);
    // Wrong credentials: the error says so without showing them.
    let wrong = client_with(&fake, |o| {
        o.client_secret = dapsync::secret::Secret::new("wrong-secret-123")
    });
    let error = wrong.ensure_login().await.unwrap_err();
    tracing::error!(error = %error, debug = ?error, "login failed");
    drop(wrong);

    let text = logs.text();
    for expected in [
        "logged in to dap",
        "retrying dap request",
        "dap refused the access token",
        "pre-signed url refused",
        "login failed",
    ] {
        assert!(text.contains(expected), "{expected:?} not logged:\n{text}");
    }
    let signatures: Vec<String> = logged(&fake, Endpoint::Download)
        .iter()
        .map(|r| r.query.clone().unwrap())
        .map(|query| query.split("signature=").nth(1).unwrap().to_owned())
        .collect();
    // Four objects in each job (the incremental's inclusive `since` takes in the initial
    // commit), a cut download retried and a refused one re-resolved.
    assert_eq!(signatures.len(), 4 + 4 + 2);
    // Every token the fake issues is a JWT, which starts with a base64url `{"`: looking for
    // that finds any token, whole or in part.
    let token = raw_token(&fake).await;
    assert!(token.starts_with("eyJ"), "{token}");
    let mut secrets = vec![
        secret.clone(),
        "wrong-secret-123".to_owned(),
        "eyJ".to_owned(),
    ];
    secrets.extend(signatures);
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "{secret} is logged:\n{text}"
        );
    }
    let options = options(&fake);
    let shown = format!("{options:?} {client:?} {error} {error:?}");
    assert!(shown.contains(fake.client_id()), "{shown}");
    assert!(
        !shown.contains(&secret) && !shown.contains("wrong-secret-123"),
        "{shown}"
    );
}
