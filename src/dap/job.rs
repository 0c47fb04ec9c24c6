//! Queries and the jobs that run them.

use chrono::{DateTime, Utc};

use super::error::ApiError;

/// What to ask of a table. The format is always JSON Lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    /// All live rows as of the latest commit.
    Snapshot,
    /// Every change since the given instant (inclusive), up to the latest commit; `until` is
    /// never sent.
    Incremental { since: DateTime<Utc> },
}

/// The state of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Waiting,
    Running,
    Complete,
    Failed,
}

/// A reference to a result object, traded for a pre-signed URL before download.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    pub id: String,
}

/// A job as the API reports it, in any state.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    pub status: JobStatus,
    pub expires_at: Option<DateTime<Utc>>,
    pub objects: Vec<ObjectRef>,
    pub schema_version: Option<i64>,
    pub at: Option<DateTime<Utc>>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Set on failed jobs.
    pub error: Option<ApiError>,
}

/// What a finished job covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Snapshot { at: DateTime<Utc> },
    Incremental { since: DateTime<Utc>, until: DateTime<Utc> },
}

/// A job that completed with success.
#[derive(Debug, Clone, PartialEq)]
pub struct CompleteJob {
    pub id: String,
    pub kind: JobKind,
    pub schema_version: i64,
    pub objects: Vec<ObjectRef>,
}

impl CompleteJob {
    /// The instant the table copy is current to once this job is applied: `at` or `until`.
    pub fn watermark(&self) -> DateTime<Utc> {
        match self.kind {
            JobKind::Snapshot { at } => at,
            JobKind::Incremental { until, .. } => until,
        }
    }
}
