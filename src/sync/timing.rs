//! Where a run's time goes, for the run history: waiting for the query budget, the API's query
//! and job, and the rest (downloading and loading).

use std::time::{Duration, Instant};

use crate::dap::{CompleteJob, DapError, FileQuery, Query};
use crate::destination::{Intake, RunTimes};

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
    /// Starts a query (for the records, or for the objects in the format the destination
    /// keeps) and waits for its job, counting the time as the run's API time (the wait
    /// for the query budget apart).
    pub(super) async fn timed_query(
        &self,
        attempt: &mut Attempt,
        namespace: &str,
        table: &str,
        query: Query,
    ) -> Result<CompleteJob, DapError> {
        let began = Instant::now();
        let request = async {
            match self.destination.intake() {
                Intake::Rows => self.dap.query(namespace, table, query).await,
                Intake::Objects(format) => {
                    let since = match query {
                        Query::Snapshot => None,
                        Query::Incremental { since } => Some(since),
                    };
                    let query = FileQuery {
                        format,
                        since,
                        until: None,
                    };
                    self.dap.query_files(namespace, table, &query).await
                }
            }
        };
        let (job, queued) = crate::dap::rate_limit_wait_of(request).await;
        attempt.clock.queued += queued;
        attempt.clock.api += began.elapsed().saturating_sub(queued);
        job
    }

    /// Writes the run's time split into the run history (a failure to do so is only logged).
    pub(super) async fn record_times(&self, attempt: &Attempt) {
        if let Err(error) = self
            .destination
            .record_run_times(attempt.run_id, attempt.clock.times())
            .await
        {
            tracing::warn!(run_id = attempt.run_id, %error, "could not record the run's times");
        }
    }
}
