//! Queries and the jobs that run them.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, DapError};

/// What to ask of a table. The format is always JSON Lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    /// All live rows as of the latest commit.
    Snapshot,
    /// Every change since the given instant (inclusive), up to the latest commit; `until` is
    /// never sent.
    Incremental {
        /// The first instant included: the previous job's `until` (or the snapshot's `at`).
        since: DateTime<Utc>,
    },
}

impl Query {
    /// The JSON body that starts this query.
    pub(super) fn body(&self) -> Value {
        match self {
            Query::Snapshot => json!({ "format": "jsonl" }),
            Query::Incremental { since } => {
                json!({ "format": "jsonl", "since": format_timestamp(*since) })
            }
        }
    }
}

/// The state of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Queued.
    Waiting,
    /// Being computed.
    Running,
    /// Finished with success: its objects can be downloaded.
    Complete,
    /// Finished with failure: see its `error`.
    Failed,
}

/// A reference to a result object, traded for a pre-signed URL before download.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
pub struct ObjectRef {
    /// The object's opaque id (file names carry no meaning).
    pub id: String,
}

/// A job as the API reports it, in any state.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The job's opaque id.
    pub id: String,
    /// Where the job stands.
    pub status: JobStatus,
    /// When the job and its objects will be deleted.
    pub expires_at: Option<DateTime<Utc>>,
    /// The result objects; set on complete jobs.
    pub objects: Vec<ObjectRef>,
    /// The schema version the records follow; set on complete jobs.
    pub schema_version: Option<i64>,
    /// The table state a complete snapshot shows.
    pub at: Option<DateTime<Utc>>,
    /// The first instant a complete incremental covers.
    pub since: Option<DateTime<Utc>>,
    /// The last instant a complete incremental covers: the next `since`.
    pub until: Option<DateTime<Utc>>,
    /// Set on failed jobs.
    pub error: Option<ApiError>,
}

/// What a finished job covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Every live row as of `at`.
    Snapshot {
        /// The table state shown; the first incremental's `since`.
        at: DateTime<Utc>,
    },
    /// Every change from `since` to `until`.
    Incremental {
        /// The first instant covered.
        since: DateTime<Utc>,
        /// The last instant covered; the next incremental's `since`.
        until: DateTime<Utc>,
    },
}

/// A job that completed with success.
#[derive(Debug, Clone, PartialEq)]
pub struct CompleteJob {
    /// The job's opaque id.
    pub id: String,
    /// What the job covers.
    pub kind: JobKind,
    /// The schema version the records follow.
    pub schema_version: i64,
    /// The result objects, to be streamed with [`DapClient::records`](super::DapClient::records).
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

impl Job {
    /// Reads a job as the API sends it (`endpoint` names the call, for errors).
    pub(super) fn from_json(endpoint: &'static str, body: &[u8]) -> Result<Self, DapError> {
        let wire: WireJob = serde_json::from_slice(body).map_err(|e| DapError::Decode {
            endpoint,
            reason: format!("not a job: {e}"),
        })?;
        let timestamp = |name: &str, value: Option<String>| match value {
            None => Ok(None),
            Some(text) => parse_timestamp(&text)
                .map(Some)
                .ok_or_else(|| DapError::Decode {
                    endpoint,
                    reason: format!("job {}: `{name}` is not a timestamp: {text:?}", wire.id),
                }),
        };
        Ok(Self {
            status: wire.status,
            expires_at: timestamp("expires_at", wire.expires_at)?,
            objects: wire.objects,
            schema_version: wire.schema_version,
            at: timestamp("at", wire.at)?,
            since: timestamp("since", wire.since)?,
            until: timestamp("until", wire.until)?,
            error: wire.error.map(|detail| ApiError::from_job_detail(&detail)),
            id: wire.id,
        })
    }

    /// The finished job, or why it is not one: a failed job becomes [`DapError::JobFailed`], and
    /// a complete job without its watermarks is a [`DapError::Decode`] error.
    pub(super) fn into_complete(self) -> Result<CompleteJob, DapError> {
        const ENDPOINT: &str = "get_job";
        let decode = |reason: String| DapError::Decode {
            endpoint: ENDPOINT,
            reason,
        };
        match self.status {
            JobStatus::Complete => {}
            JobStatus::Failed => {
                let error = self.error.unwrap_or_else(|| ApiError {
                    kind: super::error::ApiErrorKind::Processing,
                    status: None,
                    uuid: None,
                    message: "the job failed without saying why".to_owned(),
                });
                return Err(DapError::JobFailed {
                    job_id: self.id,
                    error: Box::new(error),
                });
            }
            JobStatus::Waiting | JobStatus::Running => {
                return Err(decode(format!("job {} has not finished", self.id)));
            }
        }
        let kind = match (self.at, self.since, self.until) {
            (_, Some(since), Some(until)) => JobKind::Incremental { since, until },
            (Some(at), None, None) => JobKind::Snapshot { at },
            _ => {
                return Err(decode(format!(
                    "complete job {} lacks `at` or `since`/`until`",
                    self.id
                )));
            }
        };
        let schema_version = self
            .schema_version
            .ok_or_else(|| decode(format!("complete job {} lacks `schema_version`", self.id)))?;
        Ok(CompleteJob {
            id: self.id,
            kind,
            schema_version,
            objects: self.objects,
        })
    }
}

/// A job on the wire; timestamps are parsed afterwards so that a bad one is named in the error.
#[derive(Deserialize)]
struct WireJob {
    id: String,
    status: JobStatus,
    expires_at: Option<String>,
    #[serde(default)]
    objects: Vec<ObjectRef>,
    schema_version: Option<i64>,
    at: Option<String>,
    since: Option<String>,
    until: Option<String>,
    error: Option<Value>,
}

/// Formats an instant as the API expects it: RFC 3339 in UTC with microseconds.
pub(super) fn format_timestamp(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Reads an API timestamp: RFC 3339 with any offset, or a date-time without one, taken as UTC.
pub(super) fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::dap::ApiErrorKind;

    fn job(value: Value) -> Result<Job, DapError> {
        Job::from_json("get_job", value.to_string().as_bytes())
    }

    fn at(text: &str) -> DateTime<Utc> {
        parse_timestamp(text).unwrap()
    }

    #[test]
    fn query_bodies() {
        assert_eq!(Query::Snapshot.body(), json!({"format": "jsonl"}));
        let since = at("2024-05-01T10:00:00.123456Z");
        assert_eq!(
            Query::Incremental { since }.body(),
            json!({"format": "jsonl", "since": "2024-05-01T10:00:00.123456Z"})
        );
        let whole = at("2024-05-01T10:00:00Z");
        assert_eq!(format_timestamp(whole), "2024-05-01T10:00:00.000000Z");
    }

    #[test]
    fn parses_timestamps_with_or_without_offset() {
        assert_eq!(at("2024-05-01T12:00:00+02:00"), at("2024-05-01T10:00:00Z"));
        assert_eq!(at("2024-05-01T10:00:00.5"), at("2024-05-01T10:00:00.500Z"));
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn a_complete_snapshot_job() {
        let job = job(json!({
            "id": "j1", "status": "complete", "expires_at": "2024-05-02T10:00:00Z",
            "objects": [{"id": "j1/part-00000.json.gz"}, {"id": "j1/part-00001.json.gz"}],
            "schema_version": 7, "at": "2024-05-01T10:00:00Z"
        }))
        .unwrap();
        assert_eq!(job.expires_at, Some(at("2024-05-02T10:00:00Z")));
        let complete = job.into_complete().unwrap();
        assert_eq!(
            complete.kind,
            JobKind::Snapshot {
                at: at("2024-05-01T10:00:00Z")
            }
        );
        assert_eq!(complete.schema_version, 7);
        assert_eq!(complete.objects.len(), 2);
        assert_eq!(complete.objects[1].id, "j1/part-00001.json.gz");
        assert_eq!(complete.watermark(), at("2024-05-01T10:00:00Z"));
    }

    #[test]
    fn a_complete_incremental_job() {
        let complete = job(json!({
            "id": "j2", "status": "complete", "objects": [], "schema_version": 7,
            "since": "2024-05-01T10:00:00Z", "until": "2024-05-01T14:00:00.123456Z"
        }))
        .unwrap()
        .into_complete()
        .unwrap();
        let (since, until) = (
            at("2024-05-01T10:00:00Z"),
            at("2024-05-01T14:00:00.123456Z"),
        );
        assert_eq!(complete.kind, JobKind::Incremental { since, until });
        assert_eq!(complete.watermark(), until);
    }

    #[test]
    fn a_running_job() {
        let job = job(json!({"id": "j3", "status": "running"})).unwrap();
        assert_eq!(
            (job.status, job.objects.len(), job.at),
            (JobStatus::Running, 0, None)
        );
    }

    #[test]
    fn a_failed_job_carries_its_error() {
        let failed = job(json!({
            "id": "j4", "status": "failed",
            "error": {"type": "ProcessingError", "uuid": "e-uuid", "message": "boom"}
        }))
        .unwrap();
        let error = failed.into_complete().unwrap_err();
        let DapError::JobFailed { job_id, error: api } = &error else {
            panic!("{error:?}")
        };
        assert_eq!(job_id, "j4");
        assert_eq!(
            (&api.kind, api.status, api.uuid.as_deref()),
            (&ApiErrorKind::Processing, None, Some("e-uuid"))
        );
        assert!(error.is_transient());

        // An error without a type still keeps its uuid and message for support.
        let untyped = job(json!({
            "id": "j5", "status": "failed", "error": {"uuid": "u-5", "message": "disk full"}
        }))
        .unwrap();
        let DapError::JobFailed { error: api, .. } = untyped.into_complete().unwrap_err() else {
            panic!("a failed job")
        };
        assert_eq!(
            (&api.kind, api.uuid.as_deref(), api.message.as_str()),
            (&ApiErrorKind::Processing, Some("u-5"), "disk full")
        );
    }

    #[test]
    fn bad_jobs_are_decode_errors() {
        let decode = |value: Value| match job(value).and_then(Job::into_complete) {
            Err(DapError::Decode { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
        assert!(
            decode(json!({"id": "j", "status": "complete", "schema_version": 1}))
                .contains("lacks `at`")
        );
        let no_version = json!({"id": "j", "status": "complete", "at": "2024-05-01T10:00:00Z"});
        assert!(decode(no_version).contains("schema_version"));
        let half = json!({"id": "j", "status": "complete", "schema_version": 1, "since": "2024-05-01T10:00:00Z"});
        assert!(decode(half).contains("lacks"));
        let bad_time = json!({"id": "j", "status": "complete", "schema_version": 1, "at": "noon"});
        assert!(decode(bad_time).contains("`at` is not a timestamp"));
        assert!(decode(json!({"id": "j", "status": "paused"})).starts_with("not a job"));
        assert!(decode(json!([1])).starts_with("not a job"));
        assert!(decode(json!({"id": "j", "status": "waiting"})).contains("has not finished"));
    }
}
