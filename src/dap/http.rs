//! Sending requests: status mapping, bearer tokens, retries with backoff.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use reqwest::RequestBuilder;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use tokio::time::sleep;
use tracing::{error, warn};

use super::auth::Token;
use super::client::{Inner, RetryPolicy};
use super::error::{ApiError, ApiErrorKind, DapError};

// Endpoint names, as used in errors, logs and metrics.
pub(super) const LOGIN: &str = "login";
pub(super) const LIST_TABLES: &str = "list_tables";
pub(super) const GET_SCHEMA: &str = "get_schema";
pub(super) const START_QUERY: &str = "start_query";
pub(super) const GET_JOB: &str = "get_job";
pub(super) const OBJECT_URLS: &str = "object_urls";
pub(super) const DOWNLOAD: &str = "download";

/// The longest `Retry-After` honoured, so that a wild value cannot stall a table for hours.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);

/// Whether a `/dap/*` call must first pass the client-side limiter for starting queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Limit {
    None,
    QueryStart,
}

impl Inner {
    /// Sends one request and reads the whole answer; a status other than 2xx becomes an error.
    pub(super) async fn send(
        &self,
        endpoint: &'static str,
        request: RequestBuilder,
    ) -> Result<Bytes, DapError> {
        let transport = |source| DapError::Transport { endpoint, source };
        let sent = tokio::time::Instant::now();
        let response = match request.timeout(self.options.request_timeout).send().await {
            Ok(response) => response,
            Err(e) => {
                self.metrics.request(endpoint, None, sent.elapsed());
                return Err(transport(e));
            }
        };
        let status = response.status();
        self.metrics
            .request(endpoint, Some(status.as_u16()), sent.elapsed());
        let retry_after = retry_after(response.headers(), Utc::now());
        let body = response.bytes().await.map_err(transport)?;
        if status.is_success() {
            Ok(body)
        } else {
            let error = ApiError::from_response(status.as_u16(), retry_after, &body);
            Err(DapError::Api {
                endpoint,
                error: Box::new(error),
            })
        }
    }

    /// A `/dap/*` call with the bearer token, retried on transient failures; `build` makes the
    /// request afresh for each try. A 401 leads to one new login and one more try; a second 401
    /// is returned as it is.
    pub(super) async fn dap_call(
        &self,
        endpoint: &'static str,
        limit: Limit,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Bytes, DapError> {
        let mut retries = self.retries(endpoint);
        loop {
            match self.dap_attempt(endpoint, limit, &build).await {
                Ok(body) => return Ok(body),
                Err(error) => retries.wait_or_give_up(error).await?,
            }
        }
    }

    async fn dap_attempt(
        &self,
        endpoint: &'static str,
        limit: Limit,
        build: &impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Bytes, DapError> {
        // The query slot first, the token after it: a token taken before a long wait in the
        // queue could expire there, and its refusal would send the call to the back of the
        // queue with a token that expires again.
        if limit == Limit::QueryStart {
            let waited = {
                let _waiting = super::metrics::BudgetWait::begin();
                self.query_limiter.acquire().await
            }
            .map_err(|source| DapError::Budget { source })?;
            if !waited.is_zero() {
                self.metrics.rate_limit_wait(waited);
            }
        }
        let token = self.token(None).await?;
        match self
            .send_with_token(endpoint, build(&self.http), &token)
            .await
        {
            Err(e) if is_authentication(&e) => {
                warn!(
                    endpoint,
                    uuid = e.uuid(),
                    "dap refused the access token; logging in again"
                );
                // A refused request started nothing: the slot taken above still stands, so
                // the retry with a fresh token does not queue again.
                let fresh = self.token(Some(token.generation)).await?;
                let result = self
                    .send_with_token(endpoint, build(&self.http), &fresh)
                    .await;
                if let Err(e) = &result
                    && is_authentication(e)
                {
                    error!(
                        endpoint,
                        uuid = e.uuid(),
                        "dap refused a fresh access token"
                    );
                }
                result
            }
            result => result,
        }
    }

    async fn send_with_token(
        &self,
        endpoint: &'static str,
        request: RequestBuilder,
        token: &Token,
    ) -> Result<Bytes, DapError> {
        self.send(endpoint, request.bearer_auth(token.secret.expose()))
            .await
    }

    /// The retry budget of one call to `endpoint`.
    pub(super) fn retries(&self, endpoint: &'static str) -> Retries<'_> {
        Retries {
            inner: self,
            endpoint,
            attempts: 0,
        }
    }
}

/// Counts the failed attempts of one call and waits between them: the caller loops over
/// attempts and hands each error to [`Retries::wait_or_give_up`].
#[derive(Debug)]
pub(super) struct Retries<'a> {
    inner: &'a Inner,
    endpoint: &'static str,
    attempts: u32,
}

impl Retries<'_> {
    /// The attempt under way got further than any before it: the failed attempts so far no
    /// longer count against the budget (nor lengthen the backoff).
    pub(super) fn progressed(&mut self) {
        self.attempts = 0;
    }

    /// After a failed attempt: waits (with backoff) when another attempt may succeed, else
    /// returns the error to give up with. Errors that are not transient are returned as they
    /// are, as is a `RetriesExhausted` from a nested call (such as a login), which was retried
    /// already; after `retry.max_attempts` attempts the error is [`DapError::RetriesExhausted`].
    pub(super) async fn wait_or_give_up(&mut self, error: DapError) -> Result<(), DapError> {
        let (policy, endpoint) = (self.inner.options.retry, self.endpoint);
        self.attempts += 1;
        if !error.is_transient() || matches!(error, DapError::RetriesExhausted { .. }) {
            return Err(error);
        }
        if self.attempts >= policy.max_attempts {
            return Err(DapError::RetriesExhausted {
                endpoint,
                attempts: self.attempts,
                last: Box::new(error),
            });
        }
        let delay = retry_delay(&policy, self.attempts, &error);
        warn!(
            endpoint,
            attempt = self.attempts,
            status = error.api_error().and_then(|e| e.status),
            uuid = error.uuid(),
            delay_ms = delay.as_millis() as u64,
            error = %crate::error::chain(&error),
            "retrying dap request"
        );
        self.inner.metrics.retry(endpoint);
        sleep(delay).await;
        Ok(())
    }
}

fn is_authentication(error: &DapError) -> bool {
    matches!(error, DapError::Api { error, .. } if error.is_authentication())
}

/// Full-jitter exponential backoff after `failures` failed attempts: a random wait between zero
/// and `initial_backoff * 2^(failures - 1)`, capped at `max_backoff`.
pub(super) fn backoff(policy: &RetryPolicy, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1));
    let ceiling = policy
        .initial_backoff
        .saturating_mul(factor)
        .min(policy.max_backoff);
    ceiling.mul_f64(fastrand::f64())
}

/// The wait before the next attempt: the backoff, but at least the server's `Retry-After`.
fn retry_delay(policy: &RetryPolicy, failures: u32, error: &DapError) -> Duration {
    let backoff = backoff(policy, failures);
    match error.api_error().map(|e| &e.kind) {
        Some(ApiErrorKind::RateLimited {
            retry_after: Some(after),
        }) => backoff.max((*after).min(MAX_RETRY_AFTER)),
        _ => backoff,
    }
}

/// The `Retry-After` header: delay seconds, or an HTTP date.
pub(super) fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        max_attempts: 10,
        initial_backoff: Duration::from_millis(500),
        max_backoff: Duration::from_secs(30),
    };

    #[test]
    fn backoff_stays_within_its_exponential_ceiling() {
        let ceilings = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0];
        for (failures, ceiling) in (1..).zip(ceilings) {
            let samples: Vec<f64> = (0..500)
                .map(|_| backoff(&POLICY, failures).as_secs_f64())
                .collect();
            assert!(
                samples.iter().all(|&s| (0.0..=ceiling).contains(&s)),
                "failures {failures}"
            );
            // Full jitter spreads over the whole range, not just near the ceiling.
            assert!(
                samples.iter().any(|&s| s < ceiling / 4.0),
                "failures {failures}"
            );
            assert!(
                samples.iter().any(|&s| s > ceiling * 3.0 / 4.0),
                "failures {failures}"
            );
        }
        assert!(backoff(&POLICY, u32::MAX) <= POLICY.max_backoff);
    }

    fn rate_limited(retry_after: Option<Duration>) -> DapError {
        let error = ApiError::from_response(429, retry_after, b"");
        DapError::Api {
            endpoint: START_QUERY,
            error: Box::new(error),
        }
    }

    #[test]
    fn a_rate_limited_retry_waits_at_least_retry_after() {
        for _ in 0..100 {
            let delay = retry_delay(&POLICY, 1, &rate_limited(Some(Duration::from_secs(20))));
            assert!(delay >= Duration::from_secs(20) && delay <= Duration::from_secs(30));
        }
        let capped = retry_delay(&POLICY, 1, &rate_limited(Some(Duration::from_secs(86_400))));
        assert_eq!(capped, MAX_RETRY_AFTER);
        assert!(retry_delay(&POLICY, 1, &rate_limited(None)) <= Duration::from_millis(500));
    }

    #[test]
    fn parses_retry_after() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let parse = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, HeaderValue::from_static(value));
            retry_after(&headers, now)
        };
        assert_eq!(parse("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse(" 1.5 "), Some(Duration::from_millis(1500)));
        assert_eq!(
            parse("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse("Wed, 21 Oct 2015 07:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse("-3"), None);
        assert_eq!(parse("soon"), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }
}
