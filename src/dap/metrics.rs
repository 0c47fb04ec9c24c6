//! Counters of what the client did, for the daemon's `/metrics` endpoint, and the measure of the
//! time a task spent waiting for the query rate limiter (see [`rate_limit_wait_of`]), and whether
//! it waits for it now (see [`report_budget_waits`]).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

pub use crate::histogram::Histogram;

/// Upper bounds of the request duration buckets, in seconds.
pub const REQUEST_BUCKETS: [f64; 11] =
    [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Upper bounds of the job wait buckets, in seconds: from a job answered at once to one queued
/// behind a busy lake for hours.
pub const JOB_WAIT_BUCKETS: [f64; 11] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
];

tokio::task_local! {
    static RATE_LIMIT_WAIT: Cell<Duration>;
    static BUDGET_WAITING: tokio::sync::watch::Sender<bool>;
}

/// Runs `work`, keeping `waiting` set while it waits for the query budget (in this task): the
/// scheduler gives up such a run at shutdown, since nothing of it can have been applied yet.
pub async fn report_budget_waits<F: Future>(
    waiting: tokio::sync::watch::Sender<bool>,
    work: F,
) -> F::Output {
    BUDGET_WAITING.scope(waiting, work).await
}

/// Marks the task (see [`report_budget_waits`]) as waiting for the query budget until dropped.
#[derive(Debug)]
pub(super) struct BudgetWait(());

impl BudgetWait {
    pub(super) fn begin() -> Self {
        let _ = BUDGET_WAITING.try_with(|waiting| waiting.send_replace(true));
        Self(())
    }
}

impl Drop for BudgetWait {
    fn drop(&mut self) {
        let _ = BUDGET_WAITING.try_with(|waiting| waiting.send_replace(false));
    }
}

/// Runs `work` and returns its output with the time it spent waiting for the client-side query
/// rate limiter (in this task; work spawned onto other tasks is not counted). The scheduler
/// reports that time as queue time, apart from the run's own. Measures nest: an enclosing one
/// counts the wait too.
pub async fn rate_limit_wait_of<F: Future>(work: F) -> (F::Output, Duration) {
    let (output, waited) = RATE_LIMIT_WAIT
        .scope(Cell::new(Duration::ZERO), async {
            let output = work.await;
            (output, RATE_LIMIT_WAIT.with(Cell::get))
        })
        .await;
    let _ = RATE_LIMIT_WAIT.try_with(|outer| outer.set(outer.get() + waited));
    (output, waited)
}

/// A snapshot of the client's counters since it was built. Endpoint names are `login`,
/// `list_tables`, `get_schema`, `start_query`, `get_job`, `object_urls` and `download`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientMetrics {
    /// Requests by endpoint and outcome: the HTTP status (`"200"`), or `"error"` when no answer
    /// came (connection failure, timeout).
    pub requests: BTreeMap<(&'static str, String), u64>,
    /// How long requests took until their answer's head came, by endpoint and outcome (as
    /// `requests`).
    pub request_durations: BTreeMap<(&'static str, String), Histogram>,
    /// Answers `429 Too Many Requests`, by endpoint.
    pub rate_limited: BTreeMap<&'static str, u64>,
    /// From a query's start (the API's answer to it) to its job's end, complete or failed, in
    /// seconds.
    pub job_waits: Histogram,
    /// Requests sent again after a transient failure, by endpoint.
    pub retries: BTreeMap<&'static str, u64>,
    /// Successful logins.
    pub logins: u64,
    /// Query starts that had to wait for the client-side rate limiter.
    pub rate_limit_waits: u64,
    /// Time spent waiting for the rate limiter, in seconds.
    pub rate_limit_wait_seconds: f64,
    /// Compressed bytes received from downloads.
    pub bytes_downloaded: u64,
    /// Records decoded from downloads (malformed lines excluded).
    pub records_decoded: u64,
    /// Lines that could not be decoded into records.
    pub malformed_lines: u64,
}

impl Default for ClientMetrics {
    fn default() -> Self {
        Self {
            requests: BTreeMap::new(),
            request_durations: BTreeMap::new(),
            rate_limited: BTreeMap::new(),
            job_waits: Histogram::new(&JOB_WAIT_BUCKETS),
            retries: BTreeMap::new(),
            logins: 0,
            rate_limit_waits: 0,
            rate_limit_wait_seconds: 0.0,
            bytes_downloaded: 0,
            records_decoded: 0,
            malformed_lines: 0,
        }
    }
}

/// The live counters behind [`ClientMetrics`], shared by all clones of a client.
#[derive(Debug, Default)]
pub(super) struct Metrics(Mutex<ClientMetrics>);

impl Metrics {
    pub(super) fn snapshot(&self) -> ClientMetrics {
        self.update(|m| m.clone())
    }

    /// Counts a request that took `took`; `status` is `None` when no answer came.
    pub(super) fn request(&self, endpoint: &'static str, status: Option<u16>, took: Duration) {
        let outcome = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
        self.update(|m| {
            *m.requests.entry((endpoint, outcome.clone())).or_default() += 1;
            m.request_durations
                .entry((endpoint, outcome))
                .or_insert_with(|| Histogram::new(&REQUEST_BUCKETS))
                .observe(took.as_secs_f64());
            if status == Some(429) {
                *m.rate_limited.entry(endpoint).or_default() += 1;
            }
        });
    }

    /// Counts a job that ended after `waited` since its query started.
    pub(super) fn job_waited(&self, waited: Duration) {
        self.update(|m| m.job_waits.observe(waited.as_secs_f64()));
    }

    pub(super) fn retry(&self, endpoint: &'static str) {
        self.update(|m| *m.retries.entry(endpoint).or_default() += 1);
    }

    pub(super) fn login(&self) {
        self.update(|m| m.logins += 1);
    }

    pub(super) fn rate_limit_wait(&self, waited: Duration) {
        // Outside a measured task there is nobody to tell.
        let _ = RATE_LIMIT_WAIT.try_with(|total| total.set(total.get() + waited));
        self.update(|m| {
            m.rate_limit_waits += 1;
            m.rate_limit_wait_seconds += waited.as_secs_f64();
        });
    }

    pub(super) fn downloaded(&self, bytes: u64) {
        self.update(|m| m.bytes_downloaded += bytes);
    }

    pub(super) fn decoded(&self, records: u64, malformed: u64) {
        self.update(|m| {
            m.records_decoded += records;
            m.malformed_lines += malformed;
        });
    }

    fn update<T>(&self, f: impl FnOnce(&mut ClientMetrics) -> T) -> T {
        // A panic while holding the lock cannot leave the counters inconsistent: use them anyway.
        let mut guard = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }
}
