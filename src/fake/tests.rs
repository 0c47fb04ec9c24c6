//! End-to-end tests of the fake over HTTP, with reqwest as a plain client.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use serde_json::{Value, json};

use super::*;

fn http() -> reqwest::Client {
    // reqwest is built without a TLS provider of its own; plain HTTP still wants one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A running fake and a logged-in client.
struct Api {
    fake: FakeDap,
    http: reqwest::Client,
    token: String,
}

fn config() -> FakeDapConfig {
    FakeDapConfig {
        fixture_rows: Some(0..=3),
        job_polls: 0,
        ..FakeDapConfig::default()
    }
}

fn with_table(table: FakeTable) -> FakeDapConfig {
    FakeDapConfig {
        tables: vec![table],
        ..config()
    }
}

fn courses(rows: u64, rows_per_object: usize) -> FakeTable {
    FakeTable {
        rows_per_object: Some(rows_per_object),
        ..FakeTable::new("canvas", "courses", rows)
    }
}

async fn start(config: FakeDapConfig) -> Api {
    let fake = FakeDap::start(config).await.unwrap();
    let http = http();
    let (status, body) = login(
        &http,
        &fake,
        fake.client_secret().expose(),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    Api { fake, http, token }
}

async fn login(
    http: &reqwest::Client,
    fake: &FakeDap,
    secret: &str,
    form: &'static str,
) -> (StatusCode, Value) {
    let credentials = STANDARD.encode(format!("{}:{secret}", fake.client_id()));
    let response = http
        .post(format!("{}/ids/auth/login", fake.base_url()))
        .header(AUTHORIZATION, format!("Basic {credentials}"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

/// Decompresses a whole gzip object into its lines.
fn gunzip_lines(bytes: &[u8]) -> Vec<Value> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .unwrap();
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.fake.base_url())
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.post_raw(path, body.to_string()).await
    }

    async fn post_raw(&self, path: &str, body: String) -> (StatusCode, Value) {
        let request = self
            .http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .header(CONTENT_TYPE, "application/json");
        let response = request.body(body).send().await.unwrap();
        (response.status(), response.json().await.unwrap())
    }

    async fn start_query(&self, table: &str, body: Value) -> (StatusCode, Value) {
        let (namespace, table) = table.split_once('.').unwrap();
        self.post(&format!("/dap/query/{namespace}/table/{table}/data"), &body)
            .await
    }

    /// Runs a query to its end (complete or failed).
    async fn query(&self, table: &str, body: Value) -> Value {
        let (status, mut job) = self.start_query(table, body).await;
        assert!(status.is_success(), "{job}");
        while matches!(job["status"].as_str(), Some("waiting" | "running")) {
            job = self
                .get(&format!("/dap/job/{}", job["id"].as_str().unwrap()))
                .await
                .1;
        }
        job
    }

    async fn snapshot(&self, table: &str) -> Value {
        self.query(table, json!({"format": "jsonl"})).await
    }

    async fn incremental(&self, table: &str, since: &Value) -> Value {
        self.query(table, json!({"format": "jsonl", "since": since}))
            .await
    }

    /// The pre-signed URLs of a job's objects, in object order, resolved in one request.
    async fn urls(&self, job: &Value) -> Vec<String> {
        let objects = job["objects"].clone();
        let (status, body) = self.post("/dap/object/url", &objects).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let ids = objects
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap());
        ids.map(|id| body["urls"][id]["url"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The raw bytes of each object of a job, downloaded without Authorization.
    async fn objects(&self, job: &Value) -> Vec<Vec<u8>> {
        let mut objects = Vec::new();
        for url in self.urls(job).await {
            let response = self.http.get(url).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let length: usize = response.headers()[CONTENT_LENGTH]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            let bytes = response.bytes().await.unwrap().to_vec();
            assert_eq!(bytes.len(), length);
            objects.push(bytes);
        }
        objects
    }

    async fn records(&self, job: &Value) -> Vec<Value> {
        self.objects(job)
            .await
            .iter()
            .flat_map(|bytes| gunzip_lines(bytes))
            .collect()
    }
}

/// The status of an error answer and one member of its `error` object.
fn error_field<'a>(status: StatusCode, body: &'a Value, member: &str) -> (StatusCode, &'a str) {
    (
        status,
        body["error"][member].as_str().unwrap_or("(missing)"),
    )
}

/// A tiny replica: key → value, upserts and deletes applied in order.
#[derive(Default)]
struct Replica(BTreeMap<String, Value>);

impl Replica {
    fn apply(&mut self, records: &[Value]) {
        for record in records {
            let key = record["key"].to_string();
            match record["meta"]["action"].as_str() {
                Some("D") => {
                    assert!(record.get("value").is_none());
                    self.0.remove(&key);
                }
                _ => {
                    self.0.insert(key, record["value"].clone());
                }
            }
        }
    }

    fn assert_matches(&self, rows: &[Value]) {
        let expected: BTreeMap<String, Value> = rows
            .iter()
            .map(|row| (row["key"].to_string(), row["value"].clone()))
            .collect();
        assert_eq!(self.0.len(), expected.len());
        assert!(
            self.0 == expected,
            "the replica differs from the fake's current rows"
        );
    }
}

#[tokio::test]
async fn login_checks_credentials_and_issues_jwts() {
    let api = start(FakeDapConfig {
        token_lifetime: Duration::from_secs(90),
        ..config()
    })
    .await;
    let (status, body) = login(
        &api.http,
        &api.fake,
        api.fake.client_secret().expose(),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body["expires_in"].as_u64(), body["token_type"].as_str()),
        (Some(90), Some("Bearer"))
    );
    assert!(body["scope"].is_string());
    let parts: Vec<&str> = body["access_token"].as_str().unwrap().split('.').collect();
    assert_eq!(parts.len(), 3);
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!(
        (90..=91).contains(&lifetime),
        "exp is rounded up: the token lasts at least 90 s"
    );
    assert_eq!(claims["sub"], api.fake.client_id());

    let (status, body) = login(
        &api.http,
        &api.fake,
        "wrong",
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["type"], "AuthenticationError");
    assert!(
        body["error"]["uuid"]
            .as_str()
            .unwrap()
            .parse::<uuid::Uuid>()
            .is_ok()
    );
    let (status, body) = login(
        &api.http,
        &api.fake,
        api.fake.client_secret().expose(),
        "grant_type=password",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["type"], "ValidationError");
    let response = api
        .http
        .post(api.url("/ids/auth/login"))
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn dap_endpoints_need_a_bearer_token_this_server_issued_that_has_not_expired() {
    let api = start(FakeDapConfig {
        token_lifetime: Duration::from_secs(60),
        ..config()
    })
    .await;
    let other = start(config()).await;
    assert_eq!(api.get("/dap/query/canvas/table").await.0, StatusCode::OK);
    let url = api.url("/dap/query/canvas/table");
    let refused = [
        api.http.get(&url),
        api.http.get(&url).header(AUTHORIZATION, "Basic abc"),
        api.http.get(&url).bearer_auth("not.a.jwt"),
        api.http.get(&url).bearer_auth(&other.token),
    ];
    for request in refused {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["type"], "AuthenticationError");
    }
    api.fake.travel(Duration::from_secs(61));
    assert_eq!(
        api.get("/dap/query/canvas/table").await.0,
        StatusCode::UNAUTHORIZED
    );
    let (_, body) = login(
        &api.http,
        &api.fake,
        api.fake.client_secret().expose(),
        "grant_type=client_credentials",
    )
    .await;
    let fresh = Api {
        token: body["access_token"].as_str().unwrap().to_owned(),
        ..api
    };
    assert_eq!(fresh.get("/dap/query/canvas/table").await.0, StatusCode::OK);
}

#[tokio::test]
async fn tables_and_schemas_are_listed_and_unknown_names_are_not_found() {
    let api = start(config()).await;
    let (status, body) = api.get("/dap/query/canvas/table").await;
    assert_eq!(status, StatusCode::OK);
    let tables = body["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 113);
    assert!(tables.contains(&json!("courses")));
    assert_eq!(
        api.get("/dap/query/canvas_logs/table").await.1,
        json!({"tables": ["user_agents", "web_logs"]})
    );
    let (status, body) = api.get("/dap/query/nope/table").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        (
            body["error"]["type"].as_str(),
            body["error"]["id"].as_str(),
            body["error"]["kind"].as_str()
        ),
        (Some("NotFoundError"), Some("nope"), Some("namespace"))
    );

    let (status, body) = api.get("/dap/query/canvas/table/courses/schema").await;
    assert_eq!(status, StatusCode::OK);
    let fixture: Value = serde_json::from_str(include_str!(
        "../../tests/fixtures/schemas/canvas/courses.json"
    ))
    .unwrap();
    assert_eq!(body, fixture);
    assert_eq!(body, api.fake.schema("canvas", "courses"));
    let (status, body) = api.get("/dap/query/canvas/table/nope/schema").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["kind"], "table");
}

#[tokio::test]
async fn jobs_wait_run_complete_and_identical_queries_share_them() {
    let api = start(FakeDapConfig {
        job_polls: 2,
        job_lifetime: Duration::from_secs(3600),
        // Outlives the job, so that the job's expiry (not the token's) answers at the end
        // however slowly the test runs.
        token_lifetime: Duration::from_secs(7200),
        ..with_table(courses(5, 2))
    })
    .await;
    let (status, job) = api
        .start_query("canvas.courses", json!({"format": "jsonl"}))
        .await;
    assert_eq!(
        (status, job["status"].as_str()),
        (StatusCode::ACCEPTED, Some("waiting"))
    );
    assert!(job["expires_at"].as_str().unwrap().ends_with('Z'));
    let id = job["id"].as_str().unwrap().to_owned();
    let (_, again) = api
        .start_query(
            "canvas.courses",
            json!({"format": "jsonl", "mode": "condensed"}),
        )
        .await;
    assert_eq!(
        again["id"],
        id.as_str(),
        "an identical query returns the same job"
    );
    let mut seen = Vec::new();
    loop {
        let (status, job) = api.get(&format!("/dap/job/{id}")).await;
        let state = job["status"].as_str().unwrap().to_owned();
        assert_eq!(
            status,
            if state == "complete" {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            }
        );
        seen.push(state);
        if seen.last().map(String::as_str) == Some("complete") {
            assert_eq!(job["objects"].as_array().unwrap().len(), 3);
            assert_eq!(job["schema_version"], 1);
            assert_eq!(
                job["at"],
                api.fake
                    .latest_commit("canvas", "courses")
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            );
            assert!(job.get("since").is_none());
            break;
        }
    }
    assert_eq!(&seen[..3], ["waiting", "running", "running"]);
    let (status, body) = api.get("/dap/job/nope").await;
    assert_eq!(
        error_field(status, &body, "kind"),
        (StatusCode::NOT_FOUND, "job")
    );
    api.fake.travel(Duration::from_secs(3600));
    assert_eq!(
        api.get(&format!("/dap/job/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn malformed_queries_get_validation_errors_with_a_location() {
    let api = start(with_table(courses(2, 10))).await;
    let (status, body) = api
        .start_query("canvas.courses", json!({"format": "xml"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["type"], "ValidationError");
    assert!(
        body["error"]["uuid"]
            .as_str()
            .unwrap()
            .parse::<uuid::Uuid>()
            .is_ok()
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("jsonl"));
    assert_eq!(
        body["error"]["location"],
        json!({"line": 1, "column": 2, "character": 1})
    );
    let (status, body) = api
        .post_raw(
            "/dap/query/canvas/table/courses/data",
            "{\"format\": \n }".to_owned(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["location"]["line"], 2);
    for bad in [
        json!({"format": "jsonl", "sincee": "x"}),
        json!({"format": "jsonl", "since": "2026-01-01T10:00:00"}),
        json!({"format": "jsonl", "mode": "flat"}),
        json!({"format": "csv", "mode": "Condensed"}),
        json!({"format": "Parquet"}),
        json!({"format": null}),
        json!({"mode": "expanded"}),
    ] {
        let (status, body) = api.start_query("canvas.courses", bad).await;
        assert_eq!(
            error_field(status, &body, "type"),
            (StatusCode::BAD_REQUEST, "ValidationError")
        );
    }
    let (status, body) = api
        .start_query("canvas.nope", json!({"format": "jsonl"}))
        .await;
    assert_eq!(
        error_field(status, &body, "kind"),
        (StatusCode::NOT_FOUND, "table")
    );
}

#[tokio::test]
async fn objects_download_without_authorization_through_urls_that_expire() {
    let api = start(with_table(courses(5, 2))).await;
    let job = api.snapshot("canvas.courses").await;
    let urls = api.urls(&job).await;
    assert_eq!(urls.len(), 3);
    assert!(urls.iter().all(
        |url| url.starts_with(&format!("{}/objects/", api.fake.base_url()))
            && url.contains("signature=")
    ));
    let objects = api.objects(&job).await;
    let lines: Vec<usize> = objects
        .iter()
        .map(|bytes| gunzip_lines(bytes).len())
        .collect();
    assert_eq!(lines, [2, 2, 1]);
    let log = api.fake.requests();
    let downloads: Vec<&RecordedRequest> = log
        .iter()
        .filter(|r| r.endpoint == Endpoint::Download)
        .collect();
    assert_eq!(downloads.len(), 3);
    assert!(
        downloads
            .iter()
            .all(|r| r.authorization.is_none() && r.status == 200)
    );

    let tampered = urls[0].replace("expires=", "expires=1");
    let response = api.http.get(&tampered).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("SignatureDoesNotMatch")
    );
    api.fake.travel(Duration::from_secs(15 * 60));
    let response = api.http.get(&urls[0]).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("Request has expired")
    );
    let (status, body) = api
        .post(
            "/dap/object/url",
            &json!([{"id": "nope/part-00000.jsonl.gz"}]),
        )
        .await;
    assert_eq!(
        error_field(status, &body, "kind"),
        (StatusCode::NOT_FOUND, "object")
    );
    let (status, body) = api.post("/dap/object/url", &json!({"id": "x"})).await;
    assert_eq!(
        error_field(status, &body, "type"),
        (StatusCode::BAD_REQUEST, "ValidationError")
    );
}

#[tokio::test]
async fn snapshot_then_chained_incrementals_reproduce_the_current_rows() {
    let api = start(with_table(courses(60, 7))).await;
    let job = api.snapshot("canvas.courses").await;
    let records = api.records(&job).await;
    assert_eq!(records.len(), 60);
    assert!(
        records
            .iter()
            .all(|r| r["meta"].get("action").is_none() && r["meta"]["ts"] == job["at"])
    );
    let mut replica = Replica::default();
    replica.apply(&records);
    replica.assert_matches(&api.fake.current_rows("canvas", "courses"));

    let mut since = job["at"].clone();
    let mut unseen_deletes = 0;
    for round in 0..4 {
        let changes = Changes {
            updates: 5 + round,
            inserts: 3,
            deletes: 2,
            inserted_then_deleted: 1,
        };
        let commit = api.fake.advance("canvas", "courses", changes);
        let job = api.incremental("canvas.courses", &since).await;
        assert_eq!(job["since"], since);
        assert_eq!(
            job["until"],
            commit.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        );
        let records = api.records(&job).await;
        assert!(
            records
                .iter()
                .all(|r| matches!(r["meta"]["action"].as_str(), Some("U" | "D")))
        );
        let deletes = records.iter().filter(|r| r["meta"]["action"] == "D");
        unseen_deletes += deletes
            .filter(|r| !replica.0.contains_key(&r["key"].to_string()))
            .count();
        replica.apply(&records);
        replica.assert_matches(&api.fake.current_rows("canvas", "courses"));
        since = job["until"].clone();
    }
    assert!(
        unseen_deletes >= 4,
        "keys inserted and deleted in one round come as D"
    );
    let (_, job) = api
        .start_query(
            "canvas.courses",
            json!({"format": "jsonl", "since": "2099-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(
        (job["until"].as_str(), api.records(&job).await.len()),
        (Some("2099-01-01T00:00:00.000000Z"), 0)
    );
    let queries: Vec<RecordedRequest> = api
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == Endpoint::Query)
        .collect();
    assert!(
        queries
            .iter()
            .all(|r| r.body.as_ref().is_some_and(|b| b.get("until").is_none()))
    );
}

#[tokio::test]
async fn web_logs_repeat_keys_with_the_current_version_last() {
    let api = start(with_table(FakeTable::new("canvas_logs", "web_logs", 30))).await;
    api.fake.advance(
        "canvas_logs",
        "web_logs",
        Changes {
            updates: 30,
            ..Changes::default()
        },
    );
    let job = api.snapshot("canvas_logs.web_logs").await;
    let records = api.records(&job).await;
    let mut counts = BTreeMap::new();
    for record in &records {
        *counts.entry(record["key"].to_string()).or_insert(0) += 1;
    }
    assert!(counts.values().any(|&n| n == 2), "some key appears twice");
    let mut replica = Replica::default();
    replica.apply(&records);
    replica.assert_matches(&api.fake.current_rows("canvas_logs", "web_logs"));
    let first_of_each: BTreeMap<String, &Value> = records
        .iter()
        .rev()
        .map(|r| (r["key"].to_string(), &r["value"]))
        .collect();
    assert!(
        first_of_each
            .iter()
            .any(|(key, value)| replica.0[key] != **value),
        "the earlier copy is an older version"
    );
}

/// `courses` with one more nullable column.
fn courses_with_new_column() -> Value {
    let mut schema = fixture_schema("canvas", "courses").unwrap();
    schema["properties"]["value"]["properties"]["fake_new_column"] =
        json!({"type": "string", "maxLength": 10});
    schema
}

#[tokio::test]
async fn in_place_schema_bumps_keep_old_rows_until_they_change() {
    let api = start(with_table(courses(40, 100))).await;
    let snapshot = api.snapshot("canvas.courses").await;
    assert_eq!(
        api.fake
            .bump_schema("canvas", "courses", courses_with_new_column(), false),
        2
    );
    assert_eq!(
        api.get("/dap/query/canvas/table/courses/schema").await.1["version"],
        2
    );
    let updated = api.fake.advance(
        "canvas",
        "courses",
        Changes {
            updates: 20,
            ..Changes::default()
        },
    );
    let updated = json!(updated.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
    let since_snapshot = api.incremental("canvas.courses", &snapshot["at"]).await;
    assert_eq!(
        (&since_snapshot["schema_version"], &since_snapshot["until"]),
        (&json!(2), &updated)
    );
    assert_eq!(
        api.records(&since_snapshot).await.len(),
        40,
        "`since` is inclusive: the initial commit again"
    );
    let changed = api
        .records(&api.incremental("canvas.courses", &updated).await)
        .await;
    assert_eq!(changed.len(), 20);
    assert!(
        changed
            .iter()
            .any(|r| r["value"].get("fake_new_column").is_some()),
        "changed rows use the new schema"
    );
    let changed_keys: Vec<&Value> = changed.iter().map(|r| &r["key"]).collect();
    let all = api.records(&api.snapshot("canvas.courses").await).await;
    let untouched = all.iter().filter(|r| !changed_keys.contains(&&r["key"]));
    assert!(
        untouched.clone().count() == 20
            && untouched
                .clone()
                .all(|r| r["value"].get("fake_new_column").is_none()),
        "old rows keep version 1"
    );
}

#[tokio::test]
async fn rewrites_reloads_and_retention_refuse_old_incrementals() {
    let tables = vec![
        courses(10, 100),
        FakeTable::new("canvas_logs", "web_logs", 3),
    ];
    let api = start(FakeDapConfig {
        tables,
        token_lifetime: Duration::from_secs(60 * 86_400),
        ..config()
    })
    .await;
    let before = api.snapshot("canvas.courses").await;
    api.fake
        .bump_schema("canvas", "courses", courses_with_new_column(), true);
    let (status, body) = api
        .start_query(
            "canvas.courses",
            json!({"format": "jsonl", "since": before["at"]}),
        )
        .await;
    assert_eq!(
        error_field(status, &body, "type"),
        (StatusCode::BAD_REQUEST, "SnapshotRequiredError")
    );
    assert_eq!(body["error"]["since"], before["at"]);
    let after = api.snapshot("canvas.courses").await;
    assert_eq!(after["schema_version"], 2);
    let records = api.records(&after).await;
    assert!(
        records
            .iter()
            .any(|r| r["value"].get("fake_new_column").is_some()),
        "every row was rewritten"
    );
    assert!(api.incremental("canvas.courses", &after["at"]).await["status"] == "complete");

    let reload = api.fake.require_snapshot("canvas", "courses");
    let (_, body) = api
        .start_query(
            "canvas.courses",
            json!({"format": "jsonl", "since": after["at"]}),
        )
        .await;
    assert_eq!(body["error"]["type"], "SnapshotRequiredError");
    let snapshot = api.snapshot("canvas.courses").await;
    assert_eq!(
        snapshot["at"],
        reload.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    );

    let web_logs = api.snapshot("canvas_logs.web_logs").await;
    assert_eq!(
        api.incremental("canvas_logs.web_logs", &web_logs["at"])
            .await["status"],
        "complete"
    );
    api.fake.travel(Duration::from_secs(31 * 86_400));
    let (status, body) = api
        .start_query(
            "canvas_logs.web_logs",
            json!({"format": "jsonl", "since": web_logs["at"]}),
        )
        .await;
    assert_eq!(
        error_field(status, &body, "type"),
        (StatusCode::BAD_REQUEST, "OutOfRangeError")
    );
    api.fake.set_retention("canvas_logs", "web_logs", None);
    assert!(
        api.start_query(
            "canvas_logs.web_logs",
            json!({"format": "jsonl", "since": web_logs["at"]})
        )
        .await
        .0
        .is_success()
    );
}

#[tokio::test]
async fn status_faults_answer_like_the_service_and_its_gateway() {
    let api = start(config()).await;
    let tables = "/dap/query/canvas/table";
    api.fake.inject(
        Fault::RateLimited {
            retry_after_secs: Some(7),
        },
        Endpoint::ListTables,
        1,
    );
    let response = api
        .http
        .get(api.url(tables))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (
            response.status(),
            response.headers()[RETRY_AFTER].to_str().unwrap()
        ),
        (StatusCode::TOO_MANY_REQUESTS, "7")
    );
    assert_eq!(
        api.get(tables).await.0,
        StatusCode::OK,
        "a fault strikes only as often as asked"
    );

    api.fake.inject(
        Fault::Status {
            status: 500,
            html: false,
        },
        Endpoint::ListTables,
        1,
    );
    api.fake.inject(
        Fault::Status {
            status: 502,
            html: false,
        },
        Endpoint::ListTables,
        1,
    );
    let (status, body) = api.get(tables).await;
    assert_eq!(
        error_field(status, &body, "type"),
        (StatusCode::INTERNAL_SERVER_ERROR, "ProcessingError")
    );
    assert_eq!(
        api.get(tables).await,
        (StatusCode::BAD_GATEWAY, json!({"message": "Bad Gateway"}))
    );
    api.fake.inject(
        Fault::Status {
            status: 504,
            html: true,
        },
        Endpoint::ListTables,
        1,
    );
    let response = api
        .http
        .get(api.url(tables))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(response.text().await.unwrap().starts_with("<html>"));

    api.fake.inject(
        Fault::Account {
            error: AccountError::AccountDisabled,
        },
        Endpoint::GetSchema,
        1,
    );
    let (status, body) = api.get("/dap/query/canvas/table/courses/schema").await;
    assert_eq!(
        error_field(status, &body, "type"),
        (StatusCode::FORBIDDEN, "AccountDisabled")
    );
    api.fake.inject(Fault::ExpiredToken, Endpoint::GetSchema, 1);
    assert_eq!(
        api.get("/dap/query/canvas/table/courses/schema").await.1["error"]["type"],
        "AuthenticationError"
    );
    api.fake.inject(Fault::NotFound, Endpoint::GetSchema, 1);
    let (status, body) = api.get("/dap/query/canvas/table/courses/schema").await;
    assert_eq!(
        error_field(status, &body, "id"),
        (StatusCode::NOT_FOUND, "courses")
    );
    assert_eq!(
        api.get("/dap/query/canvas/table/courses/schema").await.0,
        StatusCode::OK
    );
    let statuses: Vec<u16> = api
        .fake
        .requests()
        .iter()
        .filter(|r| r.endpoint == Endpoint::ListTables)
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [429, 200, 500, 502, 504]);
}

#[tokio::test]
async fn query_faults_refuse_the_query_or_fail_its_job() {
    let api = start(FakeDapConfig {
        job_polls: 1,
        ..with_table(courses(3, 10))
    })
    .await;
    let since = json!({"format": "jsonl", "since": "2026-01-01T00:00:00Z"});
    api.fake.inject(Fault::SnapshotRequired, Endpoint::Query, 1);
    api.fake.inject(Fault::OutOfRange, Endpoint::Query, 1);
    let (status, body) = api.start_query("canvas.courses", since.clone()).await;
    assert_eq!(
        error_field(status, &body, "type"),
        (StatusCode::BAD_REQUEST, "SnapshotRequiredError")
    );
    assert_eq!(body["error"]["since"], "2026-01-01T00:00:00.000000Z");
    assert_eq!(
        api.start_query("canvas.courses", since).await.1["error"]["type"],
        "OutOfRangeError"
    );

    api.fake.inject(Fault::FailedJob, Endpoint::Query, 1);
    let failed = api.snapshot("canvas.courses").await;
    assert_eq!(
        (failed["status"].as_str(), failed["error"]["type"].as_str()),
        (Some("failed"), Some("ProcessingError"))
    );
    assert!(failed["error"]["uuid"].is_string());
    let retried = api.snapshot("canvas.courses").await;
    assert_ne!(retried["id"], failed["id"], "a failed job is not reused");
    assert_eq!(retried["status"], "complete");

    api.fake.advance(
        "canvas",
        "courses",
        Changes {
            updates: 1,
            ..Changes::default()
        },
    );
    let (_, job) = api
        .start_query("canvas.courses", json!({"format": "jsonl"}))
        .await;
    api.fake.inject(
        Fault::FailedJob,
        Endpoint::Job.table("canvas", "courses"),
        1,
    );
    let (status, polled) = api
        .get(&format!("/dap/job/{}", job["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        (status, polled["status"].as_str()),
        (StatusCode::OK, Some("failed"))
    );
}

/// A complete snapshot of `courses` with one object of `rows` lines: its id, URL and bytes.
async fn one_object(rows: u64) -> (Api, String, String, Vec<u8>) {
    let api = start(with_table(courses(rows, 1000))).await;
    let job = api.snapshot("canvas.courses").await;
    let id = job["objects"][0]["id"].as_str().unwrap().to_owned();
    let url = api.urls(&job).await.remove(0);
    let whole = api.objects(&job).await.remove(0);
    (api, id, url, whole)
}

/// Decompresses what it can: the text before the error, and whether the stream ended cleanly.
fn gunzip_partial(bytes: &[u8]) -> (String, bool) {
    let mut out = Vec::new();
    let complete = flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .is_ok();
    (String::from_utf8_lossy(&out).into_owned(), complete)
}

#[tokio::test]
async fn download_faults_cut_the_body_where_they_say() {
    let (api, _, url, whole) = one_object(10).await;
    let (whole_text, complete) = gunzip_partial(&whole);
    assert!(complete);

    api.fake
        .inject(Fault::CutAtRecordBoundary, Endpoint::Download, 1);
    let response = api.http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get(CONTENT_LENGTH).is_none());
    assert_eq!(response.headers()["transfer-encoding"], "chunked");
    let cut = response.bytes().await.unwrap();
    assert!(cut.len() < whole.len() && whole.starts_with(&cut));
    let (text, complete) = gunzip_partial(&cut);
    assert!(!complete, "the gzip trailer is missing");
    assert!(text.ends_with('\n') && whole_text.starts_with(&text));
    assert_eq!(text.lines().count(), 5);

    api.fake.inject(Fault::CutMidRecord, Endpoint::Download, 1);
    let response = api.http.get(&url).send().await.unwrap();
    let length: usize = response.headers()[CONTENT_LENGTH]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let cut = response.bytes().await.unwrap();
    assert_eq!(cut.len(), length);
    assert!(cut.len() < whole.len() && whole.starts_with(&cut));
    let (text, complete) = gunzip_partial(&cut);
    assert!(!complete && whole_text.starts_with(&text));
    assert!(
        text.lines().count() <= 5 && text.matches('\n').count() == 4,
        "4 whole lines, then part of the 5th at most"
    );

    api.fake
        .inject(Fault::DropConnection, Endpoint::Download, 1);
    let response = api.http.get(&url).send().await.unwrap();
    assert_eq!(
        response.headers()[CONTENT_LENGTH].to_str().unwrap(),
        whole.len().to_string()
    );
    assert!(
        response.bytes().await.is_err(),
        "the connection closed before the announced length"
    );

    api.fake.inject(
        Fault::SlowBody {
            chunk_bytes: 100,
            pause_ms: 1,
        },
        Endpoint::Download,
        1,
    );
    let response = api.http.get(&url).send().await.unwrap();
    assert_eq!(response.bytes().await.unwrap(), whole);

    api.fake.inject(Fault::ExpiredUrl, Endpoint::Download, 1);
    api.fake.inject(Fault::NotFound, Endpoint::Download, 1);
    assert_eq!(
        api.http.get(&url).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api.http.get(&url).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    api.fake.inject(
        Fault::ExpiredUrl,
        Endpoint::Download.table("canvas", "users"),
        1,
    );
    assert_eq!(
        api.http.get(&url).send().await.unwrap().status(),
        StatusCode::OK,
        "the fault is for another table"
    );
}

#[tokio::test]
async fn a_slow_body_trickles_in_small_chunks() {
    let (api, id, _, whole) = one_object(3).await;
    let file = api.fake.app.world().object(&id).cloned().unwrap();
    let response = object::download(
        &file,
        Some(&Fault::SlowBody {
            chunk_bytes: 64,
            pause_ms: 1,
        }),
    )
    .await;
    let mut stream = response.into_body().into_data_stream();
    let mut chunks = Vec::new();
    while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
        chunks.push(chunk.unwrap());
    }
    assert_eq!(chunks.concat(), whole);
    assert!(chunks.iter().all(|chunk| chunk.len() <= 64));
    assert!(chunks.len() >= whole.len().div_ceil(64));
}

#[test]
#[should_panic(expected = "cannot happen on endpoint")]
fn faults_that_cannot_happen_on_an_endpoint_are_refused() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let fake = FakeDap::start(config()).await.unwrap();
        fake.inject(Fault::CutMidRecord, Endpoint::Query, 1);
    });
}

#[tokio::test]
async fn the_request_log_shows_what_the_client_sent() {
    let api = start(with_table(courses(3, 1))).await;
    let job = api.snapshot("canvas.courses").await;
    api.objects(&job).await;
    let log = api.fake.requests();
    let login = &log[0];
    assert_eq!(
        (
            login.endpoint,
            login.method.as_str(),
            login.authorization.as_deref()
        ),
        (Endpoint::Login, "POST", Some("Basic"))
    );
    assert_eq!(
        login.body,
        Some(json!({"grant_type": "client_credentials"}))
    );
    assert_eq!(
        login.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    let query = log.iter().find(|r| r.endpoint == Endpoint::Query).unwrap();
    assert_eq!(
        (query.path.as_str(), query.authorization.as_deref()),
        ("/dap/query/canvas/table/courses/data", Some("Bearer"))
    );
    assert_eq!(query.body, Some(json!({"format": "jsonl"})));
    let url_requests: Vec<&RecordedRequest> = log
        .iter()
        .filter(|r| r.endpoint == Endpoint::ObjectUrls)
        .collect();
    assert_eq!(url_requests.len(), 1, "URLs resolved in one batch");
    assert_eq!(
        url_requests[0]
            .body
            .as_ref()
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let download = log
        .iter()
        .find(|r| r.endpoint == Endpoint::Download)
        .unwrap();
    assert!(
        download.authorization.is_none()
            && download.query.as_deref().unwrap().contains("signature=")
    );
    api.fake.clear_requests();
    assert!(api.fake.requests().is_empty());
}

#[tokio::test]
async fn the_same_seed_gives_the_same_bytes() {
    let fixed = FakeClock::Fixed(chrono::DateTime::from_timestamp(1_767_261_600, 0).unwrap());
    let run = |seed| async move {
        let api = start(FakeDapConfig {
            seed,
            clock: fixed,
            ..with_table(courses(25, 10))
        })
        .await;
        api.fake.advance(
            "canvas",
            "courses",
            Changes {
                updates: 5,
                inserts: 5,
                deletes: 2,
                inserted_then_deleted: 1,
            },
        );
        let snapshot = api.snapshot("canvas.courses").await;
        let incremental = api
            .incremental("canvas.courses", &json!("2026-01-01T10:00:00Z"))
            .await;
        [
            api.objects(&snapshot).await,
            api.objects(&incremental).await,
        ]
        .concat()
    };
    let first = run(7).await;
    assert_eq!(
        first.len(),
        3 + 4,
        "28 live rows, 31 changed keys, 10 per object"
    );
    assert_eq!(first, run(7).await);
    assert_ne!(first, run(8).await);
}

#[tokio::test]
async fn a_large_table_is_written_to_disk_and_streamed() {
    let table = FakeTable {
        rows_per_object: Some(50_000),
        ..FakeTable::new("canvas", "attachment_associations", 200_000)
    };
    let api = start(with_table(table)).await;
    let job = api.snapshot("canvas.attachment_associations").await;
    let ids: Vec<String> = job["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 4);
    let on_disk: u64 = ids
        .iter()
        .map(|id| {
            std::fs::metadata(&api.fake.app.world().object(id).unwrap().path)
                .unwrap()
                .len()
        })
        .sum();
    let mut lines = 0;
    let mut downloaded = 0;
    for url in api.urls(&job).await {
        let mut response = api.http.get(url).send().await.unwrap();
        let mut decoder = flate2::write::GzDecoder::new(LineCounter::default());
        while let Some(chunk) = response.chunk().await.unwrap() {
            downloaded += chunk.len() as u64;
            std::io::Write::write_all(&mut decoder, &chunk).unwrap();
        }
        lines += decoder.finish().unwrap().0;
    }
    assert_eq!((lines, downloaded), (200_000, on_disk));
}

/// Counts newlines written to it.
#[derive(Default)]
struct LineCounter(usize);

impl std::io::Write for LineCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.iter().filter(|&&b| b == b'\n').count();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_admin_api_drives_a_standalone_server() {
    let api = start(config()).await;
    let admin = |path: &str| format!("{}/_fake{path}", api.fake.base_url());
    let table = json!({"namespace": "catalog", "table": "items", "rows": 4, "schema": {
        "type": "object",
        "properties": {
            "key": {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}}, "required": ["id"], "additionalProperties": false},
            "value": {"type": "object", "properties": {"name": {"type": "string"}}, "additionalProperties": false}
        }
    }});
    assert_eq!(
        api.http
            .post(admin("/tables"))
            .json(&table)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.get("/dap/query/catalog/table").await.1,
        json!({"tables": ["items"]})
    );
    let advanced: Value = api
        .http
        .post(admin("/tables/catalog/items/advance"))
        .json(&json!({"inserts": 2}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(advanced["ts"].as_str().unwrap().ends_with('Z'));
    let rows: Value = api
        .http
        .get(admin("/tables/catalog/items/rows"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 6);
    let state: Value = api
        .http
        .get(admin("/tables/catalog/items"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (state["version"].as_i64(), &state["latest_commit"]),
        (Some(1), &advanced["ts"])
    );
    let bumped: Value = api
        .http
        .post(admin("/tables/catalog/items/schema"))
        .json(&json!({"schema": table["schema"], "rewrite": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bumped["version"], 2);
    let missing = api
        .http
        .post(admin("/tables/catalog/nope/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let fault = json!({"fault": {"type": "status", "status": 503, "html": false}, "target": {"endpoint": "list_tables"}, "times": 1});
    assert_eq!(
        api.http
            .post(admin("/faults"))
            .json(&fault)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.get("/dap/query/catalog/table").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let bad =
        json!({"fault": {"type": "cut_mid_record"}, "target": {"endpoint": "login"}, "times": 1});
    assert_eq!(
        api.http
            .post(admin("/faults"))
            .json(&bad)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST
    );
    let log: Vec<RecordedRequest> = api
        .http
        .get(admin("/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(log.last().map(|r| r.status), Some(503));
    assert!(log.iter().all(|r| !r.path.starts_with("/_fake")));
    assert_eq!(
        api.http
            .delete(admin("/requests"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    assert!(api.fake.requests().is_empty());
    api.http
        .put(admin("/tables/catalog/items/retention"))
        .json(&json!({"seconds": 0}))
        .send()
        .await
        .unwrap();
    api.http
        .post(admin("/travel"))
        .json(&json!({"seconds": 10}))
        .send()
        .await
        .unwrap();
    let (_, body) = api
        .start_query(
            "catalog.items",
            json!({"format": "jsonl", "since": advanced["ts"]}),
        )
        .await;
    assert_eq!(body["error"]["type"], "OutOfRangeError");
    // Absurd values are taken without bringing the server down.
    for (path, seconds) in [
        ("/tables/catalog/items/retention", u64::MAX),
        ("/travel", u64::MAX),
    ] {
        let request = if path == "/travel" {
            api.http.post(admin(path))
        } else {
            api.http.put(admin(path))
        };
        let answer = request
            .json(&json!({ "seconds": seconds }))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    }
    let (status, _) = api
        .start_query(
            "catalog.items",
            json!({"format": "jsonl", "since": advanced["ts"]}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the token expired long ago"
    );
    api.fake.advance("catalog", "items", Changes::default());
}

#[tokio::test]
async fn serve_until_serves_until_told_to_stop() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_until(
        config(),
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        async {
            let _ = stopped.await;
        },
    ));
    let http = http();
    let url = format!("http://127.0.0.1:{port}/dap/query/canvas/table");
    let mut status = None;
    for _ in 0..100 {
        if let Ok(response) = http.get(&url).send().await {
            status = Some(response.status());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status, Some(StatusCode::UNAUTHORIZED));
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(http.get(&url).send().await.is_err());
}
