//! Where a run's time goes, for the run history: waiting for the query budget, the API's query
//! and job, and the rest (downloading and loading).

use std::time::{Duration, Instant};

use crate::dap::{CompleteJob, DapError, Query};
use crate::db::RunTimes;

use super::{Attempt, Engine};

/// A run's clock.
#[derive(Debug, Clone, Copy)]
pub(super) struct RunClock {
    started: Instant,
    queued: Duration,
    api: Duration,
}

impl RunClock {
    pub(super) fn start() -> Self {
        Self {
            started: Instant::now(),
            queued: Duration::ZERO,
            api: Duration::ZERO,
        }
    }

    fn times(&self) -> RunTimes {
        let total = self.started.elapsed();
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        RunTimes {
            queued_ms: ms(self.queued),
            api_ms: ms(self.api),
            load_ms: ms(total.saturating_sub(self.queued + self.api)),
        }
    }
}

impl Engine {
    /// Starts a query and waits for its job, counting the time as the run's API time (the wait
    /// for the query budget apart).
    pub(super) async fn timed_query(
        &self,
        attempt: &mut Attempt,
        namespace: &str,
        table: &str,
        query: Query,
    ) -> Result<CompleteJob, DapError> {
        let began = Instant::now();
        let (job, queued) =
            crate::dap::rate_limit_wait_of(self.dap.query(namespace, table, query)).await;
        attempt.clock.queued += queued;
        attempt.clock.api += began.elapsed().saturating_sub(queued);
        job
    }

    /// Writes the run's time split into the run history (a failure to do so is only logged).
    pub(super) async fn record_times(&self, attempt: &Attempt) {
        if let Err(error) = self
            .db
            .record_run_times(attempt.run_id, attempt.clock.times())
            .await
        {
            tracing::warn!(run_id = attempt.run_id, %error, "could not record the run's times");
        }
    }
}
