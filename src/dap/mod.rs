//! Client for the DAP Query API: login, requests with retries and rate limits, job polling, URL
//! resolution, streaming downloads and record decoding. Knows nothing of SQL.

mod client;
mod error;
mod job;
mod record;

pub use client::{ClientOptions, DapClient, PollPolicy, RateLimit, RecordStream, RetryPolicy};
pub use error::{ApiError, ApiErrorKind, DapError};
pub use job::{CompleteJob, Job, JobKind, JobStatus, ObjectRef, Query};
pub use record::{Action, MalformedLine, Record, RecordBatch};
