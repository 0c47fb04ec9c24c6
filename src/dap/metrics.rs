//! Counters of what the client did, for the daemon's `/metrics` endpoint.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// A snapshot of the client's counters since it was built. Endpoint names are `login`,
/// `list_tables`, `get_schema`, `start_query`, `get_job`, `object_urls` and `download`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientMetrics {
    /// Requests by endpoint and outcome: the HTTP status (`"200"`), or `"error"` when no answer
    /// came (connection failure, timeout).
    pub requests: BTreeMap<(&'static str, String), u64>,
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

/// The live counters behind [`ClientMetrics`], shared by all clones of a client.
#[derive(Debug, Default)]
pub(super) struct Metrics(Mutex<ClientMetrics>);

impl Metrics {
    pub(super) fn snapshot(&self) -> ClientMetrics {
        self.update(|m| m.clone())
    }

    /// Counts a request; `status` is `None` when no answer came.
    pub(super) fn request(&self, endpoint: &'static str, status: Option<u16>) {
        let outcome = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
        self.update(|m| *m.requests.entry((endpoint, outcome)).or_default() += 1);
    }

    pub(super) fn retry(&self, endpoint: &'static str) {
        self.update(|m| *m.retries.entry(endpoint).or_default() += 1);
    }

    pub(super) fn login(&self) {
        self.update(|m| m.logins += 1);
    }

    pub(super) fn rate_limit_wait(&self, waited: Duration) {
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
