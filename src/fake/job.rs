//! Jobs: a query's way through `waiting` and `running` to `complete` or `failed`.

use axum::http::StatusCode;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::format::Output;
use super::table::{TableName, Window};

/// What makes two queries identical: the same table, window request, output and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct QueryKey {
    pub table: TableName,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// A different format (or mode of a tabular format) is a different query.
    pub output: Output,
    /// The table's data version: a query after a commit or a schema change is a new query.
    pub data_version: (usize, usize),
}

#[derive(Debug, Clone)]
enum Outcome {
    /// The objects are being written.
    Writing,
    Written(Vec<String>),
    /// The `error` object of a failed job.
    Failed(Value),
}

/// One job.
#[derive(Debug, Clone)]
pub(super) struct Job {
    pub id: String,
    pub key: QueryKey,
    pub window: Window,
    pub schema_version: i64,
    pub expires_at: DateTime<Utc>,
    /// Polls spent in `waiting`, then as many in `running`.
    polls_per_state: u32,
    polls: u32,
    outcome: Outcome,
}

fn timestamp(ts: DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl Job {
    /// A job whose objects are being written, or that will fail with `error`.
    pub(super) fn new(
        key: QueryKey,
        window: Window,
        schema_version: i64,
        expires_at: DateTime<Utc>,
        polls_per_state: u32,
        error: Option<Value>,
    ) -> Self {
        Self {
            id: super::error::fresh_uuid(),
            key,
            window,
            schema_version,
            expires_at,
            polls_per_state,
            polls: 0,
            outcome: error.map_or(Outcome::Writing, Outcome::Failed),
        }
    }

    pub(super) fn table(&self) -> &TableName {
        &self.key.table
    }

    pub(super) fn poll(&mut self) {
        self.polls = self.polls.saturating_add(1);
    }

    /// Fails the job right away, whatever its state.
    pub(super) fn fail_now(&mut self, error: Value) {
        self.outcome = Outcome::Failed(error);
        self.polls = self.polls.max(self.polls_per_state.saturating_mul(2));
    }

    /// Records the written objects (or why they could not be written).
    pub(super) fn finish(&mut self, objects: Result<Vec<String>, Value>) {
        if matches!(self.outcome, Outcome::Writing) {
            self.outcome = objects.map_or_else(Outcome::Failed, Outcome::Written);
        }
    }

    pub(super) fn is_failed(&self) -> bool {
        matches!(self.outcome, Outcome::Failed(_))
    }

    /// The object ids of a job that has written them.
    pub(super) fn objects(&self) -> &[String] {
        match &self.outcome {
            Outcome::Written(objects) => objects,
            _ => &[],
        }
    }

    /// The job as the API shows it, with its HTTP status (202 while in progress).
    pub(super) fn to_json(&self) -> (StatusCode, Value) {
        let mut job = json!({"id": self.id, "expires_at": timestamp(self.expires_at)});
        let in_progress = if self.polls < self.polls_per_state {
            Some("waiting")
        } else if self.polls < self.polls_per_state.saturating_mul(2)
            || matches!(self.outcome, Outcome::Writing)
        {
            Some("running")
        } else {
            None
        };
        if let Some(status) = in_progress {
            job["status"] = json!(status);
            return (StatusCode::ACCEPTED, job);
        }
        match &self.outcome {
            Outcome::Failed(error) => {
                job["status"] = json!("failed");
                job["error"] = error.clone();
            }
            _ => {
                job["status"] = json!("complete");
                job["objects"] = self.objects().iter().map(|id| json!({"id": id})).collect();
                job["schema_version"] = json!(self.schema_version);
                match self.window {
                    Window::Snapshot { at } => job["at"] = json!(timestamp(at)),
                    Window::Incremental { since, until } => {
                        job["since"] = json!(timestamp(since));
                        job["until"] = json!(timestamp(until));
                    }
                }
            }
        }
        (StatusCode::OK, job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(polls_per_state: u32, error: Option<Value>) -> Job {
        let key = QueryKey {
            table: TableName::new("canvas", "courses"),
            since: None,
            until: None,
            output: Output::default(),
            data_version: (1, 1),
        };
        let at = DateTime::from_timestamp(1_767_261_600, 123_456_000).unwrap();
        Job::new(key, Window::Snapshot { at }, 3, at, polls_per_state, error)
    }

    fn status(job: &Job) -> (StatusCode, String) {
        let (code, body) = job.to_json();
        (code, body["status"].as_str().unwrap().to_owned())
    }

    #[test]
    fn jobs_wait_then_run_then_complete_once_written() {
        let mut job = job(1, None);
        assert_eq!(status(&job), (StatusCode::ACCEPTED, "waiting".to_owned()));
        job.poll();
        assert_eq!(status(&job).1, "running");
        job.poll();
        assert_eq!(status(&job).1, "running", "objects not written yet");
        job.finish(Ok(vec!["a/part-00000.jsonl.gz".to_owned()]));
        let (code, body) = job.to_json();
        assert_eq!(code, StatusCode::OK);
        assert_eq!(body["objects"], json!([{"id": "a/part-00000.jsonl.gz"}]));
        assert_eq!(
            (body["schema_version"].as_i64(), body["at"].as_str()),
            (Some(3), Some("2026-01-01T10:00:00.123456Z"))
        );
        assert_eq!(body["expires_at"], "2026-01-01T10:00:00.123456Z");
    }

    #[test]
    fn failing_jobs_fail_after_their_polls_or_right_away() {
        let mut failing = job(1, Some(json!({"type": "ProcessingError"})));
        assert_eq!(status(&failing).1, "waiting");
        failing.poll();
        failing.poll();
        assert_eq!(failing.to_json().1["error"]["type"], "ProcessingError");
        let mut job = job(5, None);
        job.fail_now(json!({"type": "ProcessingError"}));
        assert_eq!(status(&job), (StatusCode::OK, "failed".to_owned()));
    }
}
