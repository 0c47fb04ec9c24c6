//! Talking to the fake as a client would: a login of the test's own, queries, URL resolution and
//! downloads without Authorization.

use bytes::Bytes;
use dapsync::fake::{FakeDap, FakeDapConfig, FakeTable};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A running fake and a token of the test's own.
pub(super) struct Api {
    pub fake: FakeDap,
    pub http: reqwest::Client,
    pub token: String,
}

/// One downloaded object.
pub(super) struct Object {
    /// The last segment of its URL's path, which the official client keeps as the file name.
    pub name: String,
    pub content_type: String,
    pub bytes: Bytes,
}

pub(super) async fn start(tables: Vec<FakeTable>) -> Api {
    let fake = FakeDap::start(FakeDapConfig {
        tables,
        fixture_rows: None,
        job_polls: 0,
        ..FakeDapConfig::default()
    })
    .await
    .unwrap();
    // reqwest is built without a TLS provider of its own; plain HTTP still wants one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let login: Value = http
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
    let token = login["access_token"].as_str().unwrap().to_owned();
    Api { fake, http, token }
}

/// `namespace.table` split.
pub(super) fn split(name: &str) -> (&str, &str) {
    name.split_once('.').unwrap()
}

impl Api {
    /// Starts a query of `name` (`namespace.table`); the status and the job (or error) it
    /// answers with.
    pub(super) async fn start_query(&self, name: &str, body: &Value) -> (StatusCode, Value) {
        let (namespace, table) = split(name);
        let response = self
            .http
            .post(format!(
                "{}/dap/query/{namespace}/table/{table}/data",
                self.fake.base_url()
            ))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    /// A complete job (the fake answers the query with it, polling being off).
    pub(super) async fn query(&self, name: &str, body: &Value) -> Value {
        let (status, job) = self.start_query(name, body).await;
        assert_eq!(status, StatusCode::OK, "{body}: {job}");
        assert_eq!(job["status"], "complete", "{body}: {job}");
        job
    }

    pub(super) async fn download(&self, job: &Value) -> Vec<Object> {
        let refs = job["objects"].clone();
        let urls: Value = self
            .http
            .post(format!("{}/dap/object/url", self.fake.base_url()))
            .bearer_auth(&self.token)
            .json(&refs)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut objects = Vec::new();
        for object in refs.as_array().unwrap() {
            let url = urls["urls"][object["id"].as_str().unwrap()]["url"]
                .as_str()
                .unwrap();
            let response = self.http.get(url).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let name = reqwest::Url::parse(url)
                .unwrap()
                .path_segments()
                .unwrap()
                .next_back()
                .unwrap()
                .to_owned();
            let content_type = response.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(response.headers().get("content-encoding").is_none());
            let bytes = response.bytes().await.unwrap();
            objects.push(Object {
                name,
                content_type,
                bytes,
            });
        }
        objects
    }
}

pub(super) fn body(format: &str, mode: Option<&str>, since: Option<&Value>) -> Value {
    let mut body = json!({"format": format});
    if let Some(mode) = mode {
        body["mode"] = json!(mode);
    }
    if let Some(since) = since {
        body["since"] = since.clone();
    }
    body
}
