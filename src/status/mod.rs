//! The daemon's read model: what every scheduled table is doing, what its runs did, whether the
//! process is alive and ready, and the counters behind `/metrics`. The scheduler writes it; the
//! HTTP endpoint and the tests read it. Cheap to clone; every clone sees the same state.

mod metrics;
mod process;

pub use metrics::{Exposition, METRICS_CONTENT_TYPE, MetricKind, MetricsSource};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::config::CronSchedule;
use crate::run::{ObjectWarning, RunOutcome};
pub use crate::table::TableId;
use crate::table::TableStatus;

use metrics::TableCounters;

/// The scheduler counts as stalled when its heartbeat is older than this.
pub const HEARTBEAT_STALE: Duration = Duration::from_secs(30);

/// Events kept for subscribers that fall behind.
const EVENT_BACKLOG: usize = 1024;

/// What a table is doing, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TableState {
    /// Waiting for its next tick.
    Idle,
    /// Its tick came; waiting for a free slot (`max_concurrent_tables`).
    Queued,
    /// Syncing now.
    Running,
    /// Its last run failed.
    Failing,
    /// An operator paused it (kept across restarts), or every table waits after an
    /// account-level error.
    Paused,
    /// Its last tick found it locked by another process.
    Skipped,
}

/// Why a tick did not run a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SkipReason {
    /// The table's previous run was still going.
    Running,
    /// Another process holds the table's lock.
    Locked,
    /// Every table is paused after an account-level error.
    Paused,
    /// Another process (a replica) synced the table since the tick.
    Synced,
}

impl SkipReason {
    const ALL: [SkipReason; 4] = [
        SkipReason::Running,
        SkipReason::Locked,
        SkipReason::Paused,
        SkipReason::Synced,
    ];

    fn as_str(self) -> &'static str {
        match self {
            SkipReason::Running => "running",
            SkipReason::Locked => "locked",
            SkipReason::Paused => "paused",
            SkipReason::Synced => "synced",
        }
    }
}

/// Something that happened to a table; see [`Status::subscribe`].
#[derive(Debug, Clone, PartialEq)]
pub struct RunEvent {
    pub table: TableId,
    pub at: DateTime<Utc>,
    pub kind: RunEventKind,
}

/// The kinds of [`RunEvent`].
#[derive(Debug, Clone, PartialEq)]
pub enum RunEventKind {
    /// A run got its slot and began.
    Started,
    /// The run succeeded; the copy now stands at `watermark`.
    Succeeded { watermark: Option<DateTime<Utc>> },
    /// An attempt failed with a transient error; another follows after a backoff.
    Retrying { attempt: u32, error_type: String },
    /// The run failed (after its retries).
    Failed {
        error_type: String,
        uuid: Option<String>,
    },
    /// A tick did not run the table.
    Skipped(SkipReason),
    /// The run was cut off at shutdown; its transaction was rolled back.
    Abandoned,
    /// An operator cancelled the run; its transaction was rolled back.
    Cancelled,
}

/// What one successful run did, as the read model keeps it (`sync` makes it from its report).
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// Why a snapshot ran; `None` for an incremental.
    pub snapshot_reason: Option<&'static str>,
    /// Where the table copy now stands.
    pub watermark: DateTime<Utc>,
    pub schema_version: i64,
    pub upserted: i64,
    pub deleted: i64,
    pub rejected: i64,
    /// Rows in the table after the run.
    pub row_count: i64,
    /// User objects on the table that the run could not keep.
    pub warnings: Vec<ObjectWarning>,
}

/// Why a run failed, as the read model keeps it (`sync` makes it from its error).
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The DAP error type (`ProcessingError`, ...) or dapsync's (`DatabaseError`, ...).
    pub error_type: String,
    /// The DAP error uuid, for Instructure support.
    pub uuid: Option<String>,
    /// The error and its causes on one line.
    pub message: String,
}

/// The last error of a table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastError {
    /// The DAP error type (`ProcessingError`, ...) or dapsync's (`DatabaseError`, ...).
    #[serde(rename = "type")]
    pub error_type: String,
    /// The DAP error uuid, for Instructure support.
    pub uuid: Option<String>,
    pub message: String,
    pub at: DateTime<Utc>,
}

/// How the last run of a table ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastRun {
    /// `success` or `failed`.
    pub outcome: RunOutcome,
    pub finished_at: DateTime<Utc>,
    pub duration_seconds: f64,
    pub upserted: i64,
    pub deleted: i64,
    /// User objects on the table that the run could not keep on the new copy (a view that
    /// could not be recreated, an index whose column is gone, ...): the run still succeeded.
    pub warnings: Vec<ObjectWarning>,
}

/// One table in `/status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableView {
    pub namespace: String,
    pub table: String,
    pub state: TableState,
    /// The 6-field cron expression the table runs on.
    pub schedule: String,
    /// When the running (or queued) run began.
    pub running_since: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    /// The instant the copy is current to (a snapshot's `at`, an incremental's `until`).
    pub synced_until: Option<DateTime<Utc>>,
    /// Now minus `synced_until`.
    pub lag_seconds: Option<f64>,
    pub rows: Option<i64>,
    pub schema_version: Option<i64>,
    pub next_run: Option<DateTime<Utc>>,
    pub consecutive_failures: u64,
    pub last_run: Option<LastRun>,
    pub last_error: Option<LastError>,
}

/// The result of one readiness check.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Check {
    pub ok: bool,
    /// `None` until the first check.
    pub checked_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

/// `/readyz`: the database answers and the last login worked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub database: Check,
    pub login: Check,
}

/// The whole `/status` document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusView {
    pub now: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub ready: bool,
    /// Set while every table waits after an account-level error.
    pub paused_until: Option<DateTime<Utc>>,
    pub tables: Vec<TableView>,
}

/// The daemon's shared read model.
#[derive(Debug, Clone)]
pub struct Status {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    started_at: DateTime<Utc>,
    /// Metric families `/metrics` adds to the read model's own.
    metrics_source: Option<MetricsSource>,
    events: broadcast::Sender<RunEvent>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    tables: BTreeMap<TableId, Entry>,
    heartbeat: Instant,
    database: Check,
    login: Check,
    paused_until: Option<DateTime<Utc>>,
}

/// Where a table's run is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Idle,
    Queued { since: DateTime<Utc> },
    Running { since: DateTime<Utc> },
}

#[derive(Debug)]
struct Entry {
    schedule: CronSchedule,
    phase: Phase,
    last_success_at: Option<DateTime<Utc>>,
    synced_until: Option<DateTime<Utc>>,
    rows: Option<i64>,
    schema_version: Option<i64>,
    consecutive_failures: u64,
    last_run: Option<LastRun>,
    last_error: Option<LastError>,
    /// Whether the last tick found the table locked by another process.
    locked_out: bool,
    /// Since when an operator paused the table.
    paused_at: Option<DateTime<Utc>>,
    counters: TableCounters,
}

impl Entry {
    fn new(schedule: CronSchedule, known: Option<&TableStatus>) -> Self {
        let known = known.cloned().unwrap_or_default();
        let last_error = match (known.last_error_type, known.last_error_message) {
            (Some(error_type), Some(message)) => Some(LastError {
                error_type,
                uuid: known.last_error_uuid,
                message,
                at: known.last_error_at.unwrap_or_default(),
            }),
            _ => None,
        };
        Self {
            schedule,
            phase: Phase::Idle,
            last_success_at: known.last_success_at,
            synced_until: known.synced_until,
            rows: known.row_count,
            schema_version: known.schema_version,
            consecutive_failures: u64::try_from(known.consecutive_failures).unwrap_or(0),
            last_run: None,
            last_error,
            locked_out: false,
            paused_at: known.paused_at,
            counters: TableCounters::default(),
        }
    }

    fn state(&self, paused: bool) -> TableState {
        match self.phase {
            Phase::Running { .. } => TableState::Running,
            Phase::Queued { .. } => TableState::Queued,
            Phase::Idle if paused || self.paused_at.is_some() => TableState::Paused,
            Phase::Idle if self.consecutive_failures > 0 => TableState::Failing,
            Phase::Idle if self.locked_out => TableState::Skipped,
            Phase::Idle => TableState::Idle,
        }
    }

    fn view(&self, id: &TableId, now: DateTime<Utc>, paused: bool) -> TableView {
        let running_since = match self.phase {
            Phase::Idle => None,
            Phase::Queued { since } | Phase::Running { since } => Some(since),
        };
        TableView {
            namespace: id.namespace.clone(),
            table: id.table.clone(),
            state: self.state(paused),
            schedule: self.schedule.as_str().to_owned(),
            running_since,
            last_success_at: self.last_success_at,
            synced_until: self.synced_until,
            lag_seconds: self.lag(now),
            rows: self.rows,
            schema_version: self.schema_version,
            // Cron ticks fall on whole seconds.
            next_run: self.schedule.next_after(now),
            consecutive_failures: self.consecutive_failures,
            last_run: self.last_run.clone(),
            last_error: self.last_error.clone(),
        }
    }

    /// The time between the schedule's next two ticks.
    fn schedule_period(&self, now: DateTime<Utc>) -> Option<Duration> {
        let next = self.schedule.next_after(now)?;
        let after = self.schedule.next_after(next)?;
        (after - next).to_std().ok()
    }

    fn lag(&self, now: DateTime<Utc>) -> Option<f64> {
        self.synced_until
            .map(|t| (now - t).num_milliseconds() as f64 / 1000.0)
    }
}

impl Default for Status {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Status {
    /// An empty model; `/metrics` adds the families of `metrics_source` when given.
    pub fn new(metrics_source: Option<MetricsSource>) -> Self {
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        Self {
            inner: Arc::new(Inner {
                started_at: Utc::now(),
                metrics_source,
                events,
                state: Mutex::new(State {
                    tables: BTreeMap::new(),
                    heartbeat: Instant::now(),
                    database: Check::default(),
                    login: Check::default(),
                    paused_until: None,
                }),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state whole, so one that panicked cannot have broken it.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn emit(&self, table: &TableId, kind: RunEventKind) {
        // Nobody listening is fine.
        let _ = self.inner.events.send(RunEvent {
            table: table.clone(),
            at: Utc::now(),
            kind,
        });
    }

    /// Updates a table with `update` if it is scheduled.
    fn with_table<T>(&self, id: &TableId, update: impl FnOnce(&mut Entry) -> T) -> Option<T> {
        self.state().tables.get_mut(id).map(update)
    }

    /// Events of every table from now on. A subscriber that falls more than 1024 events behind
    /// loses the oldest ones.
    pub fn subscribe(&self) -> broadcast::Receiver<RunEvent> {
        self.inner.events.subscribe()
    }

    /// Waits until `done` holds for the status: checked at once, then after every event. Pair it
    /// with a timeout: it waits for ever otherwise.
    pub async fn wait_for(&self, mut done: impl FnMut(&StatusView) -> bool) {
        let mut events = self.subscribe();
        while !done(&self.view()) {
            // Falling behind only means events were missed: the view is read again anyway. The
            // channel cannot close while `self` holds its sender.
            let _ = events.recv().await;
        }
    }

    /// Sets the scheduled tables and their schedules. New tables start from what the database
    /// knows of them (`known`); tables no longer scheduled disappear.
    pub fn set_tables(&self, tables: &[(TableId, CronSchedule)], known: &[TableStatus]) {
        let mut state = self.state();
        state
            .tables
            .retain(|id, _| tables.iter().any(|(t, _)| t == id));
        for (id, schedule) in tables {
            let known = known
                .iter()
                .find(|s| s.namespace == id.namespace && s.table == id.table);
            state
                .tables
                .entry(id.clone())
                .and_modify(|entry| entry.schedule = schedule.clone())
                .or_insert_with(|| Entry::new(schedule.clone(), known));
        }
    }

    /// Takes what the database knows of the tables' data where it is newer than what this
    /// process saw (another process synced them): last success, synced-until instant, rows and
    /// schema version. Failures and counters stay this process's own.
    pub fn refresh_known(&self, known: &[TableStatus]) {
        let mut state = self.state();
        for status in known {
            let id = TableId::new(&status.namespace, &status.table);
            let Some(entry) = state.tables.get_mut(&id) else {
                continue;
            };
            let newer = match (status.last_success_at, entry.last_success_at) {
                (Some(theirs), Some(ours)) => theirs > ours,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if newer {
                entry.last_success_at = status.last_success_at;
                entry.synced_until = status.synced_until.or(entry.synced_until);
                entry.rows = status.row_count.or(entry.rows);
                entry.schema_version = status.schema_version.or(entry.schema_version);
            }
        }
    }

    /// The table's tick came and it waits for a slot.
    pub fn queued(&self, id: &TableId) {
        self.with_table(id, |entry| {
            entry.phase = Phase::Queued { since: Utc::now() }
        });
    }

    /// The table's run began.
    pub fn started(&self, id: &TableId) {
        self.with_table(id, |entry| {
            entry.phase = Phase::Running { since: Utc::now() };
            entry.locked_out = false;
        });
        self.emit(id, RunEventKind::Started);
    }

    /// The table's run succeeded with `reports`. Returns the error the table recovered from, if
    /// it was failing.
    pub fn succeeded(
        &self,
        id: &TableId,
        reports: &[RunSummary],
        duration: Duration,
    ) -> Option<LastError> {
        let now = Utc::now();
        let last = reports.last();
        let recovered_from = self
            .with_table(id, |entry| {
                entry.phase = Phase::Idle;
                entry.counters.success(reports, duration);
                entry.last_success_at = Some(now);
                if let Some(last) = last {
                    entry.synced_until = Some(last.watermark);
                    entry.rows = Some(last.row_count);
                    entry.schema_version = Some(last.schema_version);
                }
                entry.last_run = Some(LastRun {
                    outcome: RunOutcome::Success,
                    finished_at: now,
                    duration_seconds: duration.as_secs_f64(),
                    upserted: reports.iter().map(|r| r.upserted).sum(),
                    deleted: reports.iter().map(|r| r.deleted).sum(),
                    warnings: reports.iter().flat_map(|r| r.warnings.clone()).collect(),
                });
                let was_failing = std::mem::take(&mut entry.consecutive_failures) > 0;
                entry.last_error.clone().filter(|_| was_failing)
            })
            .flatten();
        let watermark = last.map(|r| r.watermark);
        self.emit(id, RunEventKind::Succeeded { watermark });
        recovered_from
    }

    /// An attempt of the table's run failed and will be tried again.
    pub fn retrying(&self, id: &TableId, attempt: u32, error: &Failure) {
        self.with_table(id, |entry| {
            entry.counters.retries += 1;
            entry.phase = Phase::Queued { since: Utc::now() };
        });
        self.emit(
            id,
            RunEventKind::Retrying {
                attempt,
                error_type: error.error_type.clone(),
            },
        );
    }

    /// The table's run failed. Returns the error as recorded if the table started failing with
    /// it (it was not failing before).
    pub fn failed(&self, id: &TableId, error: &Failure, duration: Duration) -> Option<LastError> {
        let now = Utc::now();
        let started_failing = self
            .with_table(id, |entry| {
                entry.phase = Phase::Idle;
                entry.counters.failure(duration);
                entry.consecutive_failures += 1;
                entry.last_error = Some(LastError {
                    error_type: error.error_type.clone(),
                    uuid: error.uuid.clone(),
                    message: error.message.clone(),
                    at: now,
                });
                entry.last_run = Some(LastRun {
                    outcome: RunOutcome::Failed,
                    finished_at: now,
                    duration_seconds: duration.as_secs_f64(),
                    upserted: 0,
                    deleted: 0,
                    warnings: Vec::new(),
                });
                entry
                    .last_error
                    .clone()
                    .filter(|_| entry.consecutive_failures == 1)
            })
            .flatten();
        self.emit(
            id,
            RunEventKind::Failed {
                error_type: error.error_type.clone(),
                uuid: error.uuid.clone(),
            },
        );
        started_failing
    }

    /// The table's run (done now) waited `queued` for a slot or the query budget, apart from its
    /// run time.
    pub fn queue_time(&self, id: &TableId, queued: Duration) {
        self.with_table(id, |entry| entry.counters.queue(queued));
    }

    /// A tick did not run the table.
    pub fn skipped(&self, id: &TableId, reason: SkipReason) {
        self.with_table(id, |entry| {
            entry.counters.skip(reason);
            match reason {
                // The run that is still going keeps its phase.
                SkipReason::Running => {}
                SkipReason::Locked | SkipReason::Synced => {
                    entry.phase = Phase::Idle;
                    entry.locked_out = true;
                }
                SkipReason::Paused => entry.phase = Phase::Idle,
            }
        });
        self.emit(id, RunEventKind::Skipped(reason));
    }

    /// An operator paused the table (since `at`) or resumed it (`None`).
    pub fn set_table_paused(&self, id: &TableId, at: Option<DateTime<Utc>>) {
        self.with_table(id, |entry| entry.paused_at = at);
    }

    /// An operator cancelled the table's run; it was rolled back.
    pub fn cancelled(&self, id: &TableId) {
        self.with_table(id, |entry| entry.phase = Phase::Idle);
        self.emit(id, RunEventKind::Cancelled);
    }

    /// The table's run (or its wait for a slot) was cut off at shutdown.
    pub fn abandoned(&self, id: &TableId) {
        self.with_table(id, |entry| entry.phase = Phase::Idle);
        self.emit(id, RunEventKind::Abandoned);
    }

    /// Every table pauses until `until` (`None`: the pause is over).
    pub fn set_paused(&self, until: Option<DateTime<Utc>>) {
        self.state().paused_until = until;
    }

    /// The scheduler is alive.
    pub fn heartbeat(&self) {
        self.state().heartbeat = Instant::now();
    }

    /// Records whether the database answered.
    pub fn set_database_check(&self, result: Result<(), String>) {
        self.state().database = check(result);
    }

    /// Records whether logging in to the DAP API worked.
    pub fn set_login_check(&self, result: Result<(), String>) {
        self.state().login = check(result);
    }

    /// Whether the scheduler's heartbeat is recent.
    pub fn is_alive(&self) -> bool {
        self.state().heartbeat.elapsed() < HEARTBEAT_STALE
    }

    /// Whether the database answered and the login worked at the last check.
    pub fn readiness(&self) -> Readiness {
        let state = self.state();
        Readiness {
            ready: state.database.ok && state.login.ok,
            database: state.database.clone(),
            login: state.login.clone(),
        }
    }

    /// Every scheduled table, in name order, as of now.
    pub fn view(&self) -> StatusView {
        let now = Utc::now();
        let state = self.state();
        let paused = state.paused_until.filter(|&until| until > now);
        StatusView {
            now,
            started_at: self.inner.started_at,
            ready: state.database.ok && state.login.ok,
            paused_until: paused,
            tables: state
                .tables
                .iter()
                .map(|(id, entry)| entry.view(id, now, paused.is_some()))
                .collect(),
        }
    }

    /// One table as of now, if it is scheduled.
    pub fn table(&self, id: &TableId) -> Option<TableView> {
        let now = Utc::now();
        let state = self.state();
        let paused = state.paused_until.is_some_and(|until| until > now);
        state
            .tables
            .get(id)
            .map(|entry| entry.view(id, now, paused))
    }
}

fn check(result: Result<(), String>) -> Check {
    Check {
        ok: result.is_ok(),
        checked_at: Some(Utc::now()),
        error: result.err(),
    }
}

#[cfg(test)]
mod tests;
