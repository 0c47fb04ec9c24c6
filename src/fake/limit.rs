//! The API's rate limits (SPEC section 1): per client, per endpoint, per minute. Above its limit,
//! an endpoint answers 429 with a `Retry-After` that says when the oldest request of the window
//! leaves it. Requests answered 429 do not count.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::fault::Endpoint;

/// Requests per minute each limited endpoint accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimits {
    /// Endpoint name (as [`Endpoint`] serializes) to requests per window; endpoints not listed
    /// are not limited.
    pub per_minute: BTreeMap<Endpoint, u32>,
    /// The window, one minute unless a test shortens it.
    #[serde(default = "minute", with = "seconds")]
    pub window: Duration,
}

fn minute() -> Duration {
    Duration::from_secs(60)
}

mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(value.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let seconds = f64::deserialize(deserializer)?;
        Duration::try_from_secs_f64(seconds).map_err(serde::de::Error::custom)
    }
}

impl RateLimits {
    /// The real API's limits: start query 5, list tables 5, get job 500, get schema 500, object
    /// URLs 200, per minute.
    pub fn api() -> Self {
        Self {
            per_minute: BTreeMap::from([
                (Endpoint::Query, 5),
                (Endpoint::ListTables, 5),
                (Endpoint::Job, 500),
                (Endpoint::GetSchema, 500),
                (Endpoint::ObjectUrls, 200),
            ]),
            window: minute(),
        }
    }

    /// The API's limits with `queries` query starts per minute instead of 5.
    pub fn with_queries(mut self, queries: u32) -> Self {
        self.per_minute.insert(Endpoint::Query, queries);
        self
    }
}

/// The requests of each limited endpoint within the window.
#[derive(Debug, Default)]
pub(super) struct Windows {
    limits: Option<RateLimits>,
    accepted: BTreeMap<Endpoint, VecDeque<Instant>>,
}

impl Windows {
    pub(super) fn new(limits: Option<RateLimits>) -> Self {
        Self {
            limits,
            accepted: BTreeMap::new(),
        }
    }

    /// Replaces the limits (`None`: none) and forgets the windows.
    pub(super) fn set(&mut self, limits: Option<RateLimits>) {
        *self = Self::new(limits);
    }

    /// Counts a request to `endpoint` arriving `now`, or refuses it: `Err` holds how long until
    /// the window has room.
    pub(super) fn admit(&mut self, endpoint: Endpoint, now: Instant) -> Result<(), Duration> {
        let Some(limits) = &self.limits else {
            return Ok(());
        };
        let Some(&max) = limits.per_minute.get(&endpoint) else {
            return Ok(());
        };
        let window = limits.window;
        let accepted = self.accepted.entry(endpoint).or_default();
        while accepted
            .front()
            .is_some_and(|&at| now.duration_since(at) >= window)
        {
            accepted.pop_front();
        }
        if accepted.len() < max as usize {
            accepted.push_back(now);
            return Ok(());
        }
        let oldest = accepted.front().copied().unwrap_or(now);
        Err(window.saturating_sub(now.duration_since(oldest)))
    }
}

/// The most of `instants` within any `window` (a window holds the instants less than `window`
/// after its first, as the limit counts them).
pub(super) fn busiest(mut instants: Vec<DateTime<Utc>>, window: Duration) -> usize {
    instants.sort();
    let window = chrono::TimeDelta::from_std(window).unwrap_or(chrono::TimeDelta::MAX);
    let mut most = 0;
    let mut first = 0;
    for (last, &at) in instants.iter().enumerate() {
        while at.signed_duration_since(instants[first]) >= window {
            first += 1;
        }
        most = most.max(last - first + 1);
    }
    most
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busiest_window_counts_what_a_limit_would() {
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let at = |ms: i64| t0 + chrono::TimeDelta::milliseconds(ms);
        let minute = Duration::from_secs(60);
        assert_eq!(busiest(Vec::new(), minute), 0);
        // 0 s, 30 s and 59.999 s share a minute; 60 s does not share one with 0 s.
        let instants = vec![at(60_000), at(0), at(30_000), at(59_999), at(200_000)];
        assert_eq!(busiest(instants, minute), 3);
        assert_eq!(busiest(vec![at(0), at(60_000), at(120_000)], minute), 1);
    }

    #[test]
    fn a_full_window_refuses_until_its_oldest_request_leaves() {
        let limits = RateLimits {
            per_minute: BTreeMap::from([(Endpoint::Query, 2)]),
            window: Duration::from_secs(10),
        };
        let mut windows = Windows::new(Some(limits));
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        assert_eq!(windows.admit(Endpoint::Query, at(0)), Ok(()));
        assert_eq!(windows.admit(Endpoint::Query, at(4)), Ok(()));
        assert_eq!(
            windows.admit(Endpoint::Query, at(6)),
            Err(Duration::from_secs(4))
        );
        // Refused requests do not count: room again when the first leaves.
        assert_eq!(windows.admit(Endpoint::Query, at(10)), Ok(()));
        assert_eq!(
            windows.admit(Endpoint::Query, at(11)),
            Err(Duration::from_secs(3))
        );
        // Other endpoints have their own windows, and unlisted ones none.
        assert_eq!(windows.admit(Endpoint::Job, at(11)), Ok(()));
        windows.set(None);
        assert_eq!(windows.admit(Endpoint::Query, at(11)), Ok(()));
    }
}
