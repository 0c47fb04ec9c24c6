//! The client: one per process, shared by every table (it is cheap to clone).

use std::collections::HashMap;
use std::time::Duration;

use crate::secret::Secret;

use super::error::DapError;
use super::job::{CompleteJob, Job, ObjectRef, Query};
use super::record::RecordBatch;

/// Retries of one request: exponential backoff with jitter, bounded attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

/// At most `max` events in any window of `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub max: u32,
    pub per: Duration,
}

/// How to wait for a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollPolicy {
    pub initial_interval: Duration,
    pub max_interval: Duration,
    /// Give up (with [`DapError::JobTimeout`]) after this long.
    pub timeout: Duration,
}

/// Everything the client needs to know.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Such as `https://api-gateway.instructure.com`; paths are appended to it.
    pub base_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub connect_timeout: Duration,
    /// Limit for one API call (not for downloads).
    pub request_timeout: Duration,
    /// A download that receives nothing for this long is broken off and retried.
    pub download_idle_timeout: Duration,
    pub retry: RetryPolicy,
    /// Client-side limit for starting queries, shared by all tables.
    pub query_rate: RateLimit,
    pub poll: PollPolicy,
    /// Objects downloaded at the same time.
    pub download_concurrency: usize,
    /// Object ids per URL request.
    pub url_batch_size: usize,
    /// Log in again when the token has less than this left.
    pub token_refresh_margin: Duration,
    /// Records per [`RecordBatch`].
    pub batch_records: usize,
}

/// A DAP API client.
#[derive(Debug, Clone)]
pub struct DapClient {}

/// The records of a finished job, in batches, as they are downloaded.
#[derive(Debug)]
pub struct RecordStream {}

impl DapClient {
    pub fn new(options: ClientOptions) -> Result<Self, DapError> {
        let _ = options;
        todo!("foundation issue")
    }

    /// Logs in now (or reuses a valid token): readiness checks use it.
    pub async fn ensure_login(&self) -> Result<(), DapError> {
        todo!("foundation issue")
    }

    /// The tables of a namespace.
    pub async fn list_tables(&self, namespace: &str) -> Result<Vec<String>, DapError> {
        let _ = namespace;
        todo!("foundation issue")
    }

    /// The current schema envelope `{"schema": ..., "version": N}` of a table, as sent.
    pub async fn get_schema(&self, namespace: &str, table: &str) -> Result<serde_json::Value, DapError> {
        let _ = (namespace, table);
        todo!("foundation issue")
    }

    /// Starts a query (waiting for the shared rate limiter first).
    pub async fn start_query(&self, namespace: &str, table: &str, query: Query) -> Result<Job, DapError> {
        let _ = (namespace, table, query);
        todo!("foundation issue")
    }

    /// The current state of a job.
    pub async fn get_job(&self, job_id: &str) -> Result<Job, DapError> {
        let _ = job_id;
        todo!("foundation issue")
    }

    /// Polls a job until it ends; a failed job becomes [`DapError::JobFailed`].
    pub async fn wait_for_job(&self, job: Job) -> Result<CompleteJob, DapError> {
        let _ = job;
        todo!("foundation issue")
    }

    /// Starts a query and waits for its job.
    pub async fn query(&self, namespace: &str, table: &str, query: Query) -> Result<CompleteJob, DapError> {
        let job = self.start_query(namespace, table, query).await?;
        self.wait_for_job(job).await
    }

    /// Pre-signed URLs for objects, asked for in batches.
    pub async fn resolve_urls(&self, objects: &[ObjectRef]) -> Result<HashMap<String, String>, DapError> {
        let _ = objects;
        todo!("foundation issue")
    }

    /// Streams the records of a finished job.
    pub fn records(&self, job: &CompleteJob) -> RecordStream {
        let _ = job;
        todo!("foundation issue")
    }
}

impl RecordStream {
    /// The next batch; `None` when every object has been read completely. After an error the
    /// stream ends.
    pub async fn next_batch(&mut self) -> Option<Result<RecordBatch, DapError>> {
        todo!("foundation issue")
    }
}
