//! The operator's levers on a running scheduler, for the control API: run a table now (or
//! re-snapshot it), pause and resume it (kept in the database, so across restarts and on every
//! replica), cancel its run (rolled back), and read the run history.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::time::{Instant, sleep};
use tracing::{info, warn};

use super::{Runner, Trigger, lock};
use crate::status::{TableId, TableView};
use crate::sync::{DbError, RunFilter, RunRecord, TableControl};

/// How often a running table checks whether a cancel was asked for in the database (by the
/// shell, or through another replica).
const CANCEL_POLL: Duration = Duration::from_secs(1);
/// How long a cancel waits for the run to end and for its table lock.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// Why an operator's action was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0} is not scheduled")]
    NotFound(TableId),
    #[error("{table}: {reason}")]
    Conflict { table: TableId, reason: String },
    #[error("the scheduler is stopping")]
    Stopping,
    #[error("the control tables cannot be read or written")]
    Db(#[from] DbError),
}

/// What a cancel did.
#[derive(Debug, Clone, PartialEq)]
pub enum Cancelled {
    /// The run under way here was stopped and rolled back; the run as recorded.
    Here(Option<Box<RunRecord>>),
    /// Another process runs the table: the cancel was asked for in the database, and it stops
    /// its run within a few seconds.
    Requested,
}

/// A handle on the scheduler's levers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Control {
    runner: Arc<Runner>,
}

impl super::Scheduler {
    /// The levers of this scheduler.
    pub fn control(&self) -> Control {
        Control {
            runner: self.runner.clone(),
        }
    }
}

impl Control {
    /// The table as `/status` shows it, if it is scheduled.
    fn view(&self, table: &TableId) -> Result<TableView, ControlError> {
        self.runner
            .status
            .table(table)
            .ok_or_else(|| ControlError::NotFound(table.clone()))
    }

    /// Starts a run of `table` now: an incremental (or its first snapshot), or with `resync` a
    /// new snapshot loaded beside the live table and swapped in when complete. Returns the table
    /// as it stands (queued or running).
    pub async fn run_now(&self, table: &TableId, resync: bool) -> Result<TableView, ControlError> {
        self.view(table)?;
        if self.runner.stopping.is_cancelled() {
            return Err(ControlError::Stopping);
        }
        let conflict = |reason: &str| ControlError::Conflict {
            table: table.clone(),
            reason: reason.to_owned(),
        };
        if lock(&self.runner.running).contains(table) {
            return Err(conflict("a run is under way"));
        }
        let db = self.runner.engine.db();
        if db.has_running_run(&table.namespace, &table.table).await? {
            return Err(conflict("another process is running the table"));
        }
        let trigger = if resync {
            Trigger::Resync
        } else {
            Trigger::Operator
        };
        info!(table = %table, resync, "run requested by an operator");
        if !self.runner.start_run(table.clone(), trigger) {
            return Err(conflict("a run is under way"));
        }
        self.view(table)
    }

    /// Pauses (`true`) or resumes a table. A run under way goes on; the schedule skips the
    /// table from its next tick until it is resumed.
    pub async fn set_paused(
        &self,
        table: &TableId,
        paused: bool,
    ) -> Result<TableView, ControlError> {
        self.view(table)?;
        let control = self
            .runner
            .engine
            .db()
            .set_paused(&table.namespace, &table.table, paused)
            .await?;
        info!(table = %table, paused, "table {} by an operator", if paused { "paused" } else { "resumed" });
        self.runner
            .status
            .set_table_paused(table, control.paused_at);
        self.view(table)
    }

    /// Cancels the table's run: here, by dropping it (its transaction rolls back); elsewhere, by
    /// asking for it in the database. A conflict when no run is under way.
    pub async fn cancel(&self, table: &TableId) -> Result<Cancelled, ControlError> {
        self.view(table)?;
        let switch = lock(&self.runner.cancels).get(table).cloned();
        if let Some(switch) = switch {
            info!(table = %table, "run cancelled by an operator");
            switch.cancel();
            let deadline = Instant::now() + CANCEL_WAIT;
            while lock(&self.runner.running).contains(table) && Instant::now() < deadline {
                sleep(Duration::from_millis(20)).await;
            }
            let runs = self.runs(&run_of(table)).await?;
            return Ok(Cancelled::Here(runs.into_iter().next().map(Box::new)));
        }
        let db = self.runner.engine.db();
        if db.has_running_run(&table.namespace, &table.table).await? {
            db.request_cancel(&table.namespace, &table.table).await?;
            return Ok(Cancelled::Requested);
        }
        Err(ControlError::Conflict {
            table: table.clone(),
            reason: "no run is under way".into(),
        })
    }

    /// The run history.
    pub async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, ControlError> {
        Ok(self.runner.engine.db().runs(filter).await?)
    }

    /// Every scheduled table's operator controls.
    pub async fn controls(&self) -> Result<Vec<TableControl>, ControlError> {
        Ok(self.runner.engine.db().table_controls().await?)
    }
}

/// Why a run was dropped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dropped {
    /// An operator cancelled it.
    Cancelled,
    /// The scheduler stopped while it waited for the query budget.
    Stopping,
}

/// The latest run of a table.
fn run_of(table: &TableId) -> RunFilter {
    RunFilter {
        namespace: Some(table.namespace.clone()),
        table: Some(table.table.clone()),
        limit: 1,
        ..RunFilter::default()
    }
}

impl Runner {
    /// Whether an operator paused the table (read from the database, where the shell and other
    /// replicas write too). A database that cannot answer pauses nothing: the run will meet
    /// the same error and report it.
    pub(super) async fn operator_paused(&self, table: &TableId) -> bool {
        match self
            .engine
            .db()
            .table_control(&table.namespace, &table.table)
            .await
        {
            Ok(control) => {
                self.status.set_table_paused(table, control.paused_at);
                control.paused_at.is_some()
            }
            Err(error) => {
                warn!(table = %table, %error, "cannot read whether the table is paused");
                false
            }
        }
    }

    /// Completes when a cancel of the table's run is asked for in the database after `since`.
    pub(super) async fn cancel_requested(&self, table: &TableId, since: DateTime<Utc>) {
        loop {
            sleep(CANCEL_POLL).await;
            let control = self
                .engine
                .db()
                .table_control(&table.namespace, &table.table)
                .await;
            if let Ok(control) = control
                && control.cancel_requested_at.is_some_and(|at| at >= since)
            {
                info!(table = %table, "run cancelled through the database");
                return;
            }
        }
    }

    /// Completes when the scheduler stops while the run waits for the query budget (`waiting`,
    /// see [`crate::sync::report_budget_waits`]): no query of it started, so nothing of it was
    /// applied, and waiting on would hold the shutdown up for up to a minute.
    pub(super) async fn stopping_while_waiting(&self, waiting: &mut watch::Receiver<bool>) {
        self.stopping.cancelled().await;
        if waiting.wait_for(|&waiting| waiting).await.is_err() {
            // The run has ended (it owns the sender): the run's own branch completes.
            std::future::pending::<()>().await;
        }
    }

    /// After a run was dropped (its transaction rolled back and its table lock let go):
    /// records it in the run history as cancelled, or as interrupted at shutdown.
    pub(super) async fn dropped(&self, table: &TableId, why: Dropped) {
        let db = self.engine.db();
        let deadline = Instant::now() + CANCEL_WAIT;
        // The lock goes with the dropped run's connection, which closes in the background.
        loop {
            match db.try_lock_table(table).await {
                Ok(Some(held)) => {
                    let recorded = match why {
                        Dropped::Cancelled => {
                            db.cancel_running_runs(&table.namespace, &table.table).await
                        }
                        Dropped::Stopping => {
                            db.interrupt_running_runs(&table.namespace, &table.table)
                                .await
                        }
                    };
                    if let Err(error) = recorded {
                        warn!(table = %table, %error, "cannot record the dropped run");
                    }
                    held.release().await;
                    break;
                }
                Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(50)).await,
                Ok(None) => {
                    warn!(table = %table, "the table stayed locked after its run was dropped");
                    break;
                }
                Err(error) => {
                    warn!(table = %table, %error, "cannot record the dropped run");
                    break;
                }
            }
        }
        match why {
            Dropped::Cancelled => {
                info!(table = %table, "run cancelled; its transaction was rolled back");
                self.status.cancelled(table);
            }
            Dropped::Stopping => {
                info!(table = %table, "stopping: the run waiting for the query budget gave up; nothing of it was applied");
                self.status.abandoned(table);
            }
        }
    }
}
