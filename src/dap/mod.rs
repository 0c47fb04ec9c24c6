//! Client for the DAP Query API: login, requests with retries and rate limits, job polling, URL
//! resolution, streaming downloads, record decoding, and result objects saved as files. Knows
//! nothing of SQL.

mod auth;
mod client;
mod decode;
mod download;
mod error;
mod http;
mod job;
mod metrics;
mod ratelimit;
mod record;
mod save;

pub use client::{
    ClientOptions, DapClient, PollPolicy, RateLimit, RetryPolicy, http_client_builder,
};
pub use download::RecordStream;
pub use error::{ApiError, ApiErrorKind, DapError};
pub use job::{CompleteJob, Job, JobKind, JobStatus, ObjectRef, Query};
pub use metrics::{
    ClientMetrics, Histogram, JOB_WAIT_BUCKETS, REQUEST_BUCKETS, rate_limit_wait_of,
    report_budget_waits,
};
pub use ratelimit::{BudgetError, BudgetFuture, SHARED_BUDGET_MARGIN, SharedBudget};
pub use record::{Action, LineDecoder, MalformedLine, Record, RecordBatch, RecordDecoder};
pub use save::{FileQuery, Format, object_file_name};

#[cfg(test)]
mod tests;
