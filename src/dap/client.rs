//! The client: one per process, shared by every table (it is cheap to clone).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use serde_json::json;
use tokio::time::{Instant, sleep};
use tracing::{debug, info};

use crate::secret::Secret;

use super::auth::TokenCache;
use super::download::RecordStream;
use super::error::DapError;
use super::http::{GET_JOB, GET_SCHEMA, LIST_TABLES, Limit, OBJECT_URLS, START_QUERY};
use super::job::{CompleteJob, Job, JobStatus, ObjectRef, Query};
use super::metrics::{ClientMetrics, Metrics};
use super::ratelimit::{RateLimiter, SharedBudget};
use super::record::{LineDecoder, RecordDecoder};

/// Sent as `User-Agent` on every request.
const USER_AGENT: &str = concat!("dapsync/", env!("CARGO_PKG_VERSION"));

/// Retries of one request: exponential backoff with jitter, bounded attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The ceiling of the first backoff; it doubles after each failure.
    pub initial_backoff: Duration,
    /// The largest backoff ceiling.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 6 attempts, backoff ceilings 1 s, 2 s, 4 s, 8 s, 16 s (at most 60 s).
    fn default() -> Self {
        Self {
            max_attempts: 6,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// At most `max` events in any window of `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Events allowed in one window; at least 1.
    pub max: u32,
    /// The length of the sliding window.
    pub per: Duration,
}

/// How to wait for a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollPolicy {
    /// The first wait before asking again; it grows by half after each poll.
    pub initial_interval: Duration,
    /// The longest wait between two polls.
    pub max_interval: Duration,
    /// Give up (with [`DapError::JobTimeout`]) after this long.
    pub timeout: Duration,
}

impl Default for PollPolicy {
    /// First poll after 2 s, then every ×1.5 up to 30 s; give up after 6 hours.
    fn default() -> Self {
        Self {
            initial_interval: Duration::from_secs(2),
            max_interval: Duration::from_secs(30),
            timeout: Duration::from_secs(6 * 60 * 60),
        }
    }
}

/// Everything the client needs to know.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Such as `https://api-gateway.instructure.com`; paths are appended to it.
    pub base_url: String,
    /// Such as `us-east-1#0123abcd-...`.
    pub client_id: String,
    /// Never shown in `Debug` output, logs or errors.
    pub client_secret: Secret,
    /// Limit for opening a connection.
    pub connect_timeout: Duration,
    /// Limit for one API call (not for downloads).
    pub request_timeout: Duration,
    /// A download that receives nothing for this long is broken off and retried.
    pub download_idle_timeout: Duration,
    /// Retries of API calls and of downloads.
    pub retry: RetryPolicy,
    /// Client-side limit for starting queries, shared by all tables.
    pub query_rate: RateLimit,
    /// How to wait for a job.
    pub poll: PollPolicy,
    /// Objects downloaded at the same time.
    pub download_concurrency: usize,
    /// Object ids per URL request.
    pub url_batch_size: usize,
    /// Log in again when the token has less than this left.
    pub token_refresh_margin: Duration,
    /// Records per [`RecordBatch`](super::RecordBatch).
    pub batch_records: usize,
}

impl ClientOptions {
    /// The public DAP API gateway.
    pub const DEFAULT_BASE_URL: &str = "https://api-gateway.instructure.com";

    /// Options with the recommended defaults for everything but the credentials.
    pub fn new(client_id: impl Into<String>, client_secret: Secret) -> Self {
        Self {
            base_url: Self::DEFAULT_BASE_URL.to_owned(),
            client_id: client_id.into(),
            client_secret,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            download_idle_timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            // The server allows 5 starts a minute per client; stay a little under it.
            query_rate: RateLimit {
                max: 4,
                per: Duration::from_secs(60),
            },
            poll: PollPolicy::default(),
            download_concurrency: 4,
            url_batch_size: 20,
            token_refresh_margin: Duration::from_secs(5 * 60),
            batch_records: 10_000,
        }
    }

    fn validate(&self) -> Result<Url, DapError> {
        let invalid = |what: &str| Err(DapError::Config(what.to_owned()));
        let base = Url::parse(self.base_url.trim_end_matches('/'))
            .map_err(|e| DapError::Config(format!("base URL {:?}: {e}", self.base_url)))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return invalid("the base URL must be an http or https URL");
        }
        if self.client_id.is_empty() || self.client_secret.is_empty() {
            return invalid("the client id and the client secret must be set");
        }
        let timeouts = [
            self.connect_timeout,
            self.request_timeout,
            self.download_idle_timeout,
        ];
        if timeouts.iter().any(Duration::is_zero) {
            return invalid("timeouts must not be zero");
        }
        if self.retry.max_attempts == 0 {
            return invalid("retry.max_attempts must be at least 1");
        }
        if self.query_rate.max == 0 || self.query_rate.per.is_zero() {
            return invalid("the query rate must allow at least 1 start per non-zero period");
        }
        if self.poll.initial_interval.is_zero()
            || self.poll.max_interval < self.poll.initial_interval
        {
            return invalid(
                "the initial poll interval must not be zero nor longer than the longest one",
            );
        }
        if self.retry.max_backoff < self.retry.initial_backoff {
            return invalid("retry.max_backoff must not be shorter than retry.initial_backoff");
        }
        if self.download_concurrency == 0 || self.url_batch_size == 0 || self.batch_records == 0 {
            return invalid(
                "download_concurrency, url_batch_size and batch_records must be at least 1",
            );
        }
        Ok(base)
    }
}

/// A DAP API client. Clones share the connection pool, the token, the query rate limiter and
/// the metrics.
#[derive(Clone)]
pub struct DapClient {
    pub(super) inner: Arc<Inner>,
}

/// What the clones of a client share.
#[derive(Debug)]
pub(super) struct Inner {
    pub(super) http: reqwest::Client,
    pub(super) options: ClientOptions,
    base_url: Url,
    pub(super) tokens: TokenCache,
    pub(super) query_limiter: RateLimiter,
    pub(super) metrics: Metrics,
}

impl fmt::Debug for DapClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DapClient")
            .field("base_url", &self.inner.options.base_url)
            .field("client_id", &self.inner.options.client_id)
            .finish_non_exhaustive()
    }
}

/// An HTTP client builder set up like the DAP client's (rustls with the ring provider, dapsync's
/// `User-Agent`), for dapsync's other outgoing requests (webhooks, the benchmark).
pub fn http_client_builder() -> reqwest::ClientBuilder {
    // reqwest is built without a default crypto provider; the error only says that a provider
    // is already installed, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .tls_backend_rustls()
        .user_agent(USER_AGENT)
}

impl DapClient {
    /// Builds a client (TLS by rustls with the ring provider); checks the options, sends nothing.
    pub fn new(options: ClientOptions) -> Result<Self, DapError> {
        let base_url = options.validate()?;
        let http = http_client_builder()
            .connect_timeout(options.connect_timeout)
            .build()
            .map_err(|e| DapError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base_url,
                tokens: TokenCache::default(),
                query_limiter: RateLimiter::new(options.query_rate),
                metrics: Metrics::default(),
                options,
            }),
        })
    }

    /// Shares the query limit with other processes: from now on every query start also takes
    /// a start from `budget` (with [`RateLimit::max`] of the client's query rate, the window a
    /// second longer than the API's). False, and nothing changes, if a budget is shared already.
    pub fn share_query_budget(&self, budget: Arc<dyn SharedBudget>) -> bool {
        self.inner.query_limiter.share(budget)
    }

    /// Logs in now (or reuses a valid token): readiness checks use it.
    pub async fn ensure_login(&self) -> Result<(), DapError> {
        self.inner.token(None).await.map(drop)
    }

    /// The tables of a namespace.
    pub async fn list_tables(&self, namespace: &str) -> Result<Vec<String>, DapError> {
        #[derive(Deserialize)]
        struct Tables {
            tables: Vec<String>,
        }
        let url = self.inner.url(&["dap", "query", namespace, "table"]);
        let body = self
            .inner
            .dap_call(LIST_TABLES, Limit::None, |http| http.get(url.clone()))
            .await?;
        let answer: Tables = decode_json(LIST_TABLES, &body)?;
        Ok(answer.tables)
    }

    /// The current schema envelope `{"schema": ..., "version": N}` of a table, as sent.
    pub async fn get_schema(
        &self,
        namespace: &str,
        table: &str,
    ) -> Result<serde_json::Value, DapError> {
        let url = self
            .inner
            .url(&["dap", "query", namespace, "table", table, "schema"]);
        let body = self
            .inner
            .dap_call(GET_SCHEMA, Limit::None, |http| http.get(url.clone()))
            .await?;
        decode_json(GET_SCHEMA, &body)
    }

    /// Starts a query (waiting for the shared rate limiter first). The server answers an
    /// identical query that already has a job with that job, so a retried start is harmless.
    pub async fn start_query(
        &self,
        namespace: &str,
        table: &str,
        query: Query,
    ) -> Result<Job, DapError> {
        self.start_with_body(namespace, table, query.body()).await
    }

    /// Starts a query with the JSON body given (see [`Self::start_query`]).
    pub(super) async fn start_with_body(
        &self,
        namespace: &str,
        table: &str,
        body: serde_json::Value,
    ) -> Result<Job, DapError> {
        let url = self
            .inner
            .url(&["dap", "query", namespace, "table", table, "data"]);
        let answer = self
            .inner
            .dap_call(START_QUERY, Limit::QueryStart, |http| {
                http.post(url.clone()).json(&body)
            })
            .await?;
        let job = Job::from_json(START_QUERY, &answer)?;
        info!(namespace, table, job_id = %job.id, status = ?job.status, "dap query started");
        Ok(job)
    }

    /// The current state of a job.
    pub async fn get_job(&self, job_id: &str) -> Result<Job, DapError> {
        let url = self.inner.url(&["dap", "job", job_id]);
        let body = self
            .inner
            .dap_call(GET_JOB, Limit::None, |http| http.get(url.clone()))
            .await?;
        Job::from_json(GET_JOB, &body)
    }

    /// Polls a job until it ends; a failed job becomes [`DapError::JobFailed`]. Returns at once
    /// if the job has already ended; waits longer between polls as time goes on.
    pub async fn wait_for_job(&self, mut job: Job) -> Result<CompleteJob, DapError> {
        let poll = self.inner.options.poll;
        let started = Instant::now();
        let mut interval = poll.initial_interval;
        while matches!(job.status, JobStatus::Waiting | JobStatus::Running) {
            let waited = started.elapsed();
            if waited >= poll.timeout {
                return Err(DapError::JobTimeout {
                    job_id: job.id,
                    waited,
                });
            }
            sleep(interval.min(poll.timeout - waited)).await;
            interval = (interval.saturating_mul(3) / 2).min(poll.max_interval);
            job = self.get_job(&job.id).await?;
            debug!(job_id = %job.id, status = ?job.status, "dap job polled");
        }
        let complete = job.into_complete()?;
        info!(job_id = %complete.id, objects = complete.objects.len(), "dap job complete");
        Ok(complete)
    }

    /// Starts a query and waits for its job.
    pub async fn query(
        &self,
        namespace: &str,
        table: &str,
        query: Query,
    ) -> Result<CompleteJob, DapError> {
        let job = self.start_query(namespace, table, query).await?;
        let started = Instant::now();
        let result = self.wait_for_job(job).await;
        // A job the API answered (complete or failed), not one given up on for a transport error.
        if matches!(&result, Ok(_) | Err(DapError::JobFailed { .. })) {
            self.inner.metrics.job_waited(started.elapsed());
        }
        result
    }

    /// Pre-signed URLs for objects, asked for in batches of `url_batch_size`.
    pub async fn resolve_urls(
        &self,
        objects: &[ObjectRef],
    ) -> Result<HashMap<String, String>, DapError> {
        let mut urls = HashMap::with_capacity(objects.len());
        for batch in objects.chunks(self.inner.options.url_batch_size) {
            urls.extend(self.inner.resolve_batch(batch).await?);
        }
        Ok(urls)
    }

    /// Streams the records of a finished job: see [`RecordStream`].
    pub fn records(&self, job: &CompleteJob) -> RecordStream {
        self.records_with(job, Arc::new(RecordDecoder))
    }

    /// Streams the records of a finished job, each line decoded by `decoder` on the download
    /// tasks.
    pub fn records_with<D: LineDecoder>(
        &self,
        job: &CompleteJob,
        decoder: Arc<D>,
    ) -> RecordStream<D> {
        RecordStream::new(self.clone(), job, decoder)
    }

    /// The client's counters so far.
    pub fn metrics(&self) -> ClientMetrics {
        self.inner.metrics.snapshot()
    }
}

impl Inner {
    /// The base URL with `segments` appended (each one percent-encoded).
    pub(super) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base_url.clone();
        // Cannot fail: `validate` rejected URLs that cannot be a base.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// The URLs of one batch of objects (at most `url_batch_size`), in the order asked.
    pub(super) async fn resolve_batch(
        &self,
        objects: &[ObjectRef],
    ) -> Result<Vec<(String, String)>, DapError> {
        let url = self.url(&["dap", "object", "url"]);
        let ids: Vec<_> = objects.iter().map(|o| json!({ "id": o.id })).collect();
        let body = self
            .dap_call(OBJECT_URLS, Limit::None, |http| {
                http.post(url.clone()).json(&ids)
            })
            .await?;
        let mut urls = decode_object_urls(&body)?;
        objects
            .iter()
            .map(|object| match urls.remove(&object.id) {
                Some(url) => Ok((object.id.clone(), url)),
                None => Err(DapError::Decode {
                    endpoint: OBJECT_URLS,
                    reason: format!("no URL for object {}", object.id),
                }),
            })
            .collect()
    }
}

/// The object URLs of an `object_urls` answer, by object id. A malformed answer's error says
/// where it went wrong, not what it held: serde quotes the value it could not take, and these
/// values are signed URLs.
fn decode_object_urls(body: &[u8]) -> Result<HashMap<String, String>, DapError> {
    #[derive(Deserialize)]
    struct Urls {
        urls: HashMap<String, Resource>,
    }
    #[derive(Deserialize)]
    struct Resource {
        url: String,
    }
    let answer: Urls = serde_json::from_slice(body).map_err(|e| DapError::Decode {
        endpoint: OBJECT_URLS,
        reason: format!(
            "unexpected answer ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ),
    })?;
    Ok(answer
        .urls
        .into_iter()
        .map(|(id, resource)| (id, resource.url))
        .collect())
}

fn decode_json<T: serde::de::DeserializeOwned>(
    endpoint: &'static str,
    body: &[u8],
) -> Result<T, DapError> {
    serde_json::from_slice(body).map_err(|e| DapError::Decode {
        endpoint,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ClientOptions {
        ClientOptions::new("us-east-1#client", Secret::new("hunter2-secret"))
    }

    #[test]
    fn malformed_object_urls_never_quote_a_signed_url() {
        let body = br#"{"urls": {"obj": "https://bucket/o?X-Amz-Signature=SECRETSIG"}}"#;
        let shown = decode_object_urls(body).unwrap_err().to_string();
        assert!(!shown.contains("SECRETSIG"), "{shown}");
        assert!(shown.contains("line 1"), "{shown}");
        let good = br#"{"urls": {"obj": {"url": "https://bucket/o?sig=1"}}}"#;
        assert_eq!(
            decode_object_urls(good).unwrap()["obj"],
            "https://bucket/o?sig=1"
        );
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let options = options();
        let shown = format!("{options:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("us-east-1#client"));
        let client = DapClient::new(options).unwrap();
        let shown = format!("{client:?}");
        assert_eq!(
            shown,
            r#"DapClient { base_url: "https://api-gateway.instructure.com", client_id: "us-east-1#client", .. }"#
        );
    }

    #[test]
    fn builds_urls_from_the_base() {
        let mut options = options();
        options.base_url = "http://127.0.0.1:8080/prefix/".to_owned();
        let client = DapClient::new(options).unwrap();
        let url = client.inner.url(&["dap", "job", "a/b c"]);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8080/prefix/dap/job/a%2Fb%20c"
        );
        let client = DapClient::new(self::options()).unwrap();
        let url = client.inner.url(&["dap", "query", "canvas", "table"]);
        assert_eq!(
            url.as_str(),
            "https://api-gateway.instructure.com/dap/query/canvas/table"
        );
    }

    #[test]
    fn rejects_unusable_options() {
        let cases: [fn(&mut ClientOptions); 6] = [
            |o| o.base_url = "ftp://example.com".to_owned(),
            |o| o.base_url = "not a url".to_owned(),
            |o| o.client_secret = Secret::new(""),
            |o| o.retry.max_attempts = 0,
            |o| o.query_rate.max = 0,
            |o| o.batch_records = 0,
        ];
        for change in cases {
            let mut options = options();
            change(&mut options);
            let error = DapClient::new(options).unwrap_err();
            assert!(matches!(error, DapError::Config(_)), "{error}");
            assert!(!error.to_string().contains("hunter2"));
        }
    }
}
