//! The daemon's clock: one tokio-cron-scheduler cron job per table; at most
//! `max_concurrent_tables` runs at once (all sharing the DAP client's query rate limiter); a tick
//! that finds its table still running is skipped; transient errors are retried with a doubling
//! backoff; an account-level error pauses every table; tables overdue at start-up run at once;
//! `all` and pattern selections are resolved again periodically; and a stop lets running tables
//! finish within a grace period, then drops them (which rolls their transaction back); a run
//! that waits for the query budget gives up at once. It calls
//! `sync` and writes `status`; it knows nothing of HTTP.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_cron_scheduler::{Job, JobBuilder, JobScheduler, JobSchedulerError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};
use uuid::Uuid;

use crate::config::{CronSchedule, NamespaceConfig};
use crate::status::{SkipReason, Status};
use crate::sync::{Engine, Mode, RunKind, RunReport, SyncError, TableStatus, report_budget_waits};
use crate::table::TableId;
use crate::webhook::{WebhookEvent, WebhookKind, Webhooks};

mod control;

/// The run history's types, for the control API.
pub use crate::sync::{RunFilter, RunOutcome, RunRecord};
use control::Dropped;
pub use control::{Cancelled, Control, ControlError};

/// The scheduler's own heartbeat job: it proves the cron machinery ticks (`/healthz`).
const HEARTBEAT_SCHEDULE: &str = "*/5 * * * * *";
/// How often the database and the login are checked for `/readyz`.
const CHECK_EVERY: Duration = Duration::from_secs(15);
/// How long resolving the table selection through the API may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);
/// A readiness check that takes longer than this fails.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed table listing, try again this soon (or at `refresh_tables`, if sooner).
const REFRESH_RETRY: Duration = Duration::from_secs(60);

/// How the scheduler runs tables.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// The tables to run, per namespace, with their own schedules.
    pub namespaces: BTreeMap<String, NamespaceConfig>,
    /// The schedule of tables without their own.
    pub schedule: CronSchedule,
    pub max_concurrent_tables: usize,
    /// Attempts of a run whose errors are transient, the first included.
    pub run_attempts: u32,
    /// The wait before the first retry; it doubles with each further one.
    pub run_backoff: Duration,
    /// How long every table pauses after an account-level error.
    pub account_pause: Duration,
    /// How often the table selection is resolved again.
    pub refresh_tables: Duration,
    /// How long running tables get to finish when the scheduler stops.
    pub shutdown_grace: Duration,
}

impl SchedulerOptions {
    /// The schedule of a table: its namespace's `schedules` entry, else the default.
    pub fn schedule_for(&self, table: &TableId) -> &CronSchedule {
        self.namespaces
            .get(&table.namespace)
            .and_then(|ns| ns.schedule_for(&table.table))
            .unwrap_or(&self.schedule)
    }
}

/// Why the scheduler cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("the cron scheduler failed")]
    Cron(#[source] JobSchedulerError),
    #[error("{table}: cannot schedule `{schedule}`")]
    Schedule {
        table: String,
        schedule: String,
        #[source]
        source: JobSchedulerError,
    },
    #[error(
        "namespaces.{namespace}.tables: selects no table (none of the namespace's tables matches)"
    )]
    SelectsNothing { namespace: String },
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// A tick of its schedule (skipped while the table is paused).
    Schedule,
    /// An operator's "sync now".
    Operator,
    /// An operator's re-snapshot: loaded beside the live table, swapped in when complete.
    Resync,
}

/// A running scheduler. Stop it with [`Scheduler::shutdown`].
pub struct Scheduler {
    runner: Arc<Runner>,
    cron: JobScheduler,
}

impl fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduler")
            .field("runner", &self.runner)
            .finish_non_exhaustive()
    }
}

/// What the cron jobs, the table runs and the chores share.
struct Runner {
    engine: Engine,
    status: Status,
    webhooks: Webhooks,
    options: SchedulerOptions,
    cron: JobScheduler,
    permits: Semaphore,
    /// Tables with a run under way (queued, running or between attempts).
    running: Arc<Mutex<HashSet<TableId>>>,
    paused_until: Mutex<Option<DateTime<Utc>>>,
    /// Tables whose run the pause stopped: they run again when it ends.
    held_by_pause: Mutex<HashSet<TableId>>,
    /// The cron job of every scheduled table.
    jobs: tokio::sync::Mutex<HashMap<TableId, Uuid>>,
    /// Cancelled when the scheduler stops: no run starts any more.
    stopping: CancellationToken,
    /// Cancelled when the grace period is over: running tables are dropped.
    abort: CancellationToken,
    /// The cancel switch of every run under way.
    cancels: Mutex<HashMap<TableId, CancellationToken>>,
    tasks: TaskTracker,
}

impl fmt::Debug for Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("options", &self.options)
            .field("running", &self.running)
            .field("paused_until", &self.paused_until)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update leaves the data whole, so one that panicked cannot have broken it.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Marks a table as having a run under way until dropped, however the run ends.
struct RunSlot {
    running: Arc<Mutex<HashSet<TableId>>>,
    table: TableId,
}

impl RunSlot {
    /// `None` if the table already has a run under way.
    fn take(running: &Arc<Mutex<HashSet<TableId>>>, table: &TableId) -> Option<Self> {
        lock(running).insert(table.clone()).then(|| Self {
            running: running.clone(),
            table: table.clone(),
        })
    }
}

impl Drop for RunSlot {
    fn drop(&mut self) {
        lock(&self.running).remove(&self.table);
    }
}

impl Scheduler {
    /// Checks the database and the login, resolves the tables, schedules a cron job for each,
    /// runs at once the tables that missed a tick (or were never synced), and starts ticking.
    pub async fn start(
        engine: Engine,
        options: SchedulerOptions,
        status: Status,
        webhooks: Webhooks,
    ) -> Result<Self, SchedulerError> {
        let cron = JobScheduler::new().await.map_err(SchedulerError::Cron)?;
        let runner = Arc::new(Runner {
            permits: Semaphore::new(options.max_concurrent_tables.max(1)),
            engine,
            status,
            webhooks,
            options,
            cron: cron.clone(),
            running: Arc::default(),
            paused_until: Mutex::new(None),
            held_by_pause: Mutex::default(),
            jobs: tokio::sync::Mutex::default(),
            stopping: CancellationToken::new(),
            abort: CancellationToken::new(),
            cancels: Mutex::default(),
            tasks: TaskTracker::new(),
        });
        runner.check().await;
        let status = runner.status.clone();
        status.heartbeat();
        let heartbeat = Job::new(HEARTBEAT_SCHEDULE, move |_, _| status.heartbeat())
            .map_err(SchedulerError::Cron)?;
        cron.add(heartbeat).await.map_err(SchedulerError::Cron)?;
        let listed = runner.refresh(true).await?;
        cron.start().await.map_err(SchedulerError::Cron)?;
        runner.tasks.spawn(runner.clone().chores(listed));
        Ok(Self { runner, cron })
    }

    /// The tables scheduled now.
    pub async fn tables(&self) -> Vec<TableId> {
        let mut tables: Vec<TableId> = self.runner.jobs.lock().await.keys().cloned().collect();
        tables.sort();
        tables
    }

    /// Stops: no run starts any more, queued runs are dropped (and so are runs waiting for the
    /// query budget: nothing of them is applied yet), and running ones get
    /// `shutdown_grace` to finish (or until `cut_short` completes, such as a second signal);
    /// then they are dropped, which rolls their transaction back. Returns when every task has
    /// ended.
    pub async fn shutdown(mut self, cut_short: impl Future<Output = ()>) {
        let runner = &self.runner;
        runner.stopping.cancel();
        if let Err(error) = self.cron.shutdown().await {
            warn!(%error, "stopping the cron scheduler failed");
        }
        runner.tasks.close();
        let running = lock(&runner.running).len();
        if running > 0 {
            info!(
                running,
                grace_s = runner.options.shutdown_grace.as_secs_f64(),
                "waiting for running tables to finish"
            );
        }
        let finished = tokio::select! {
            () = runner.tasks.wait() => true,
            () = sleep(runner.options.shutdown_grace) => false,
            () = cut_short => false,
        };
        if !finished {
            warn!("cutting off the running tables; their transactions roll back");
            runner.abort.cancel();
            runner.tasks.wait().await;
        }
        info!("scheduler stopped");
    }
}

impl Runner {
    /// Runs `table` now unless it already has a run under way (then the tick is skipped).
    fn trigger(self: &Arc<Self>, table: TableId) {
        self.start_run(table, Trigger::Schedule);
    }

    /// Starts a run of `table`; false (and the tick skipped) if it already has one under way.
    fn start_run(self: &Arc<Self>, table: TableId, trigger: Trigger) -> bool {
        if self.stopping.is_cancelled() {
            return false;
        }
        let Some(slot) = RunSlot::take(&self.running, &table) else {
            info!(table = %table, "the previous run is still going; tick skipped");
            self.status.skipped(&table, SkipReason::Running);
            return false;
        };
        if trigger != Trigger::Schedule {
            // At once, so that the operator's answer shows it (a tick checks the pause first).
            self.status.queued(&table);
        }
        let cancel = CancellationToken::new();
        lock(&self.cancels).insert(table.clone(), cancel.clone());
        let runner = self.clone();
        self.tasks.spawn(async move {
            let _slot = slot;
            runner.run(&table, trigger, cancel).await;
            lock(&runner.cancels).remove(&table);
        });
        true
    }

    /// One table run: a slot, the sync, and retries of transient errors.
    async fn run(self: &Arc<Self>, table: &TableId, trigger: Trigger, cancel: CancellationToken) {
        if trigger == Trigger::Schedule && self.operator_paused(table).await {
            info!(table = %table, "the table is paused; tick skipped");
            return self.status.skipped(table, SkipReason::Paused);
        }
        let started = Instant::now();
        let started_at = Utc::now();
        // Time spent waiting for a slot or the query budget: reported apart from the run's.
        let mut queued = Duration::ZERO;
        let mut attempt = 1;
        loop {
            self.status.queued(table);
            let waiting = Instant::now();
            // The semaphore is never closed: this waits for a permit.
            let permit = tokio::select! {
                biased;
                () = self.stopping.cancelled() => return self.status.abandoned(table),
                () = cancel.cancelled() => return self.status.cancelled(table),
                permit = self.permits.acquire() => permit,
            };
            queued += waiting.elapsed();
            if let Some(until) = self.paused_until() {
                info!(table = %table, until = %until, "every table is paused; the table runs when the pause ends");
                lock(&self.held_by_pause).insert(table.clone());
                return self.status.skipped(table, SkipReason::Paused);
            }
            self.status.started(table);
            // A resync is `Engine::resync`: a new snapshot into staging, swapped in when complete.
            let mode = match trigger {
                Trigger::Resync => Mode::Resnapshot,
                Trigger::Operator => Mode::Sync,
                // Replicas tick together: the first to lock the table serves the tick, the
                // others find it synced since (cron ticks fall on whole seconds).
                Trigger::Schedule => Mode::Tick(
                    started_at
                        .duration_trunc(TimeDelta::seconds(1))
                        .unwrap_or(started_at),
                ),
            };
            let (budget, mut waiting) = watch::channel(false);
            let sync = report_budget_waits(budget, self.engine.sync_table_timed(table, mode));
            let result = tokio::select! {
                (result, waited) = sync => {
                    queued += waited;
                    result
                }
                () = self.abort.cancelled() => {
                    warn!(table = %table, "run cut off at shutdown; its transaction is rolled back");
                    return self.status.abandoned(table);
                }
                () = self.stopping_while_waiting(&mut waiting) => {
                    drop(permit);
                    return self.dropped(table, Dropped::Stopping).await;
                }
                () = cancel.cancelled() => {
                    drop(permit);
                    return self.dropped(table, Dropped::Cancelled).await;
                }
                () = self.cancel_requested(table, started_at) => {
                    drop(permit);
                    return self.dropped(table, Dropped::Cancelled).await;
                }
            };
            let error = match result {
                Ok(reports) if reports.is_empty() && matches!(mode, Mode::Tick(_)) => {
                    info!(table = %table, "another process synced the table since the tick; tick skipped");
                    return self.status.skipped(table, SkipReason::Synced);
                }
                Ok(reports) => {
                    drop(permit);
                    return self.succeeded(table, &reports, started.elapsed(), queued);
                }
                Err(error) => error,
            };
            let account_level = error.is_account_level();
            if account_level {
                // Before the slot is given up, so that no queued table starts in between.
                self.pause(&error);
                lock(&self.held_by_pause).insert(table.clone());
            }
            drop(permit);
            if error.is_locked() {
                info!(table = %table, "another process is syncing the table; tick skipped");
                return self.status.skipped(table, SkipReason::Locked);
            }
            if !account_level && error.is_transient() && attempt < self.options.run_attempts {
                let backoff = self.options.run_backoff * 2u32.saturating_pow(attempt - 1);
                warn!(
                    table = %table,
                    attempt,
                    error_type = %error.type_name(),
                    uuid = error.uuid().unwrap_or("-"),
                    backoff_ms = backoff.as_millis() as u64,
                    error = %error.chain(),
                    "table run failed; retrying"
                );
                self.status.retrying(table, attempt, &error.failure());
                tokio::select! {
                    () = sleep(backoff) => {}
                    () = self.stopping.cancelled() => return self.status.abandoned(table),
                    () = cancel.cancelled() => return self.status.cancelled(table),
                }
                attempt += 1;
                continue;
            }
            return self.failed(table, &error, attempt, started.elapsed(), queued);
        }
    }

    fn succeeded(
        &self,
        table: &TableId,
        reports: &[RunReport],
        elapsed: Duration,
        queued: Duration,
    ) {
        let duration = elapsed.saturating_sub(queued);
        self.status.queue_time(table, queued);
        let summaries: Vec<_> = reports.iter().map(RunReport::summary).collect();
        let recovered_from = self.status.succeeded(table, &summaries, duration);
        let last = reports.last();
        info!(
            table = %table,
            outcome = "success",
            runs = reports.len(),
            kind = last.map_or("-", |r| match r.kind {
                RunKind::Snapshot => "snapshot",
                RunKind::Incremental => "incremental",
            }),
            upserted = reports.iter().map(|r| r.stats.upserted).sum::<i64>(),
            deleted = reports.iter().map(|r| r.stats.deleted).sum::<i64>(),
            rows = last.map_or(0, |r| r.stats.row_count),
            watermark = %last.map(|r| r.watermark.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)).unwrap_or_default(),
            duration_ms = duration.as_millis() as u64,
            queued_ms = queued.as_millis() as u64,
            "table run finished"
        );
        if let Some(error) = recovered_from {
            info!(table = %table, "table recovered");
            self.notify(WebhookEvent::new(WebhookKind::Recovered, table, &error));
        }
    }

    fn failed(
        &self,
        table: &TableId,
        error: &SyncError,
        attempts: u32,
        elapsed: Duration,
        queued: Duration,
    ) {
        let duration = elapsed.saturating_sub(queued);
        self.status.queue_time(table, queued);
        let started_failing_with = self.status.failed(table, &error.failure(), duration);
        error!(
            table = %table,
            outcome = "failed",
            attempts,
            error_type = %error.type_name(),
            uuid = error.uuid().unwrap_or("-"),
            duration_ms = duration.as_millis() as u64,
            queued_ms = queued.as_millis() as u64,
            error = %error.chain(),
            "table run failed"
        );
        if let Some(recorded) = started_failing_with {
            self.notify(WebhookEvent::new(WebhookKind::Failing, table, &recorded));
        }
    }

    fn notify(&self, event: WebhookEvent) {
        if self.webhooks.is_empty() {
            return;
        }
        let webhooks = self.webhooks.clone();
        self.tasks.spawn(async move { webhooks.send(&event).await });
    }

    /// Pauses every table after an account-level error; when the pause ends, the tables it
    /// held back run (without waiting for their next tick, which may be a day away).
    fn pause(self: &Arc<Self>, error: &SyncError) {
        let pause = self.options.account_pause;
        let until = Utc::now() + chrono::Duration::from_std(pause).unwrap_or(chrono::Duration::MAX);
        *lock(&self.paused_until) = Some(until);
        let runner = self.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = runner.stopping.cancelled() => {}
                () = sleep(pause) => runner.resume(),
            }
        });
        self.status.set_paused(Some(until));
        error!(
            error_type = %error.type_name(),
            uuid = error.uuid().unwrap_or("-"),
            until = %until,
            error = %error.chain(),
            "account-level error: every table pauses"
        );
    }

    /// Runs the tables the pause held back, once no pause holds (a later error may have
    /// extended it: its own timer resumes them then).
    fn resume(self: &Arc<Self>) {
        if self.paused_until().is_some() {
            return;
        }
        let held: Vec<TableId> = lock(&self.held_by_pause).drain().collect();
        for table in held {
            self.trigger(table);
        }
    }

    /// The end of the pause, while every table is paused.
    fn paused_until(&self) -> Option<DateTime<Utc>> {
        let mut paused = lock(&self.paused_until);
        match *paused {
            Some(until) if until > Utc::now() => Some(until),
            Some(_) => {
                *paused = None;
                self.status.set_paused(None);
                info!("the account pause is over");
                None
            }
            None => None,
        }
    }

    /// Resolves the selection and brings the cron jobs in line with it; tables that are new and
    /// overdue run at once. Returns whether the API answered: when it does not, the tables the
    /// database knows (and the named ones) are scheduled, and none is removed. At start-up
    /// (`first`), a namespace whose selection matches none of the tables the API lists is an
    /// error: a daemon that syncs nothing is a configuration mistake.
    async fn refresh(self: &Arc<Self>, first: bool) -> Result<bool, SchedulerError> {
        let known = match self.engine.table_statuses().await {
            Ok(known) => known,
            Err(error) => {
                warn!(error = %error, "cannot read the table states; assuming nothing is synced");
                Vec::new()
            }
        };
        let namespaces = &self.options.namespaces;
        // Bounded, so that an API that accepts connections but never answers holds up neither
        // the start (and systemd's or Kubernetes' patience with it) nor the readiness checks.
        let listing = timeout(LIST_TIMEOUT, self.engine.resolve_tables(namespaces)).await;
        let (tables, listed) = match listing {
            Ok(Ok(tables)) => (tables, true),
            Ok(Err(error)) => {
                warn!(error = %format!("DAP API: {}", crate::error::chain(&error)), "cannot list the tables; scheduling the known ones");
                (fallback_tables(namespaces, &known), false)
            }
            Err(_) => {
                warn!(
                    timeout_s = LIST_TIMEOUT.as_secs(),
                    "listing the tables did not finish in time; scheduling the known ones"
                );
                (fallback_tables(namespaces, &known), false)
            }
        };
        if first && listed {
            let empty = namespaces
                .keys()
                .find(|ns| !tables.iter().any(|t| &t.namespace == *ns));
            if let Some(namespace) = empty {
                return Err(SchedulerError::SelectsNothing {
                    namespace: namespace.clone(),
                });
            }
        }
        let mut jobs = self.jobs.lock().await;
        let mut wanted: Vec<(TableId, CronSchedule)> = tables
            .into_iter()
            .map(|id| {
                let schedule = self.options.schedule_for(&id).clone();
                (id, schedule)
            })
            .collect();
        if !listed {
            let missing: Vec<TableId> = jobs
                .keys()
                .filter(|id| !wanted.iter().any(|(w, _)| w == *id))
                .cloned()
                .collect();
            for id in missing {
                let schedule = self.options.schedule_for(&id).clone();
                wanted.push((id, schedule));
            }
        }
        self.status.set_tables(&wanted, &known);
        let gone: Vec<TableId> = jobs
            .keys()
            .filter(|id| !wanted.iter().any(|(w, _)| w == *id))
            .cloned()
            .collect();
        for id in gone {
            if let Some(job) = jobs.remove(&id)
                && let Err(error) = self.cron.remove(&job).await
            {
                warn!(table = %id, %error, "cannot remove the cron job");
            }
            info!(table = %id, "table no longer selected; unscheduled");
        }
        let now = Utc::now();
        for (id, schedule) in wanted {
            if jobs.contains_key(&id) {
                continue;
            }
            let job =
                self.add_job(&id, &schedule)
                    .await
                    .map_err(|source| SchedulerError::Schedule {
                        table: id.to_string(),
                        schedule: schedule.as_str().to_owned(),
                        source,
                    })?;
            jobs.insert(id.clone(), job);
            let last_sync = known
                .iter()
                .find(|s| s.namespace == id.namespace && s.table == id.table)
                .and_then(|s| s.last_success_at.or(s.synced_until));
            let overdue = overdue(&schedule, last_sync, now);
            info!(table = %id, schedule = schedule.as_str(), overdue, "table scheduled");
            if overdue {
                self.trigger(id);
            }
        }
        Ok(listed)
    }

    /// Adds the cron job that triggers `table`.
    async fn add_job(
        self: &Arc<Self>,
        table: &TableId,
        schedule: &CronSchedule,
    ) -> Result<Uuid, JobSchedulerError> {
        // The jobs live in the cron scheduler, which the runner owns: a weak reference avoids
        // the cycle.
        let runner: Weak<Runner> = Arc::downgrade(self);
        let target = table.clone();
        let job = cron_job(schedule, move || {
            if let Some(runner) = runner.upgrade() {
                runner.trigger(target.clone());
            }
        })?;
        self.cron.add(job).await
    }

    /// Until the scheduler stops: resolves the tables again every `refresh_tables` (sooner
    /// after a failure) and checks readiness every [`CHECK_EVERY`].
    async fn chores(self: Arc<Self>, listed: bool) {
        let refresh_after = |listed: bool| {
            let every = self.options.refresh_tables;
            if listed {
                every
            } else {
                every.min(REFRESH_RETRY)
            }
        };
        let mut next_refresh = Instant::now() + refresh_after(listed);
        let mut next_check = Instant::now() + CHECK_EVERY;
        loop {
            let refresh = tokio::select! {
                () = self.stopping.cancelled() => return,
                () = sleep_until(next_refresh) => true,
                () = sleep_until(next_check) => false,
            };
            let chore = async {
                if refresh {
                    let listed = match self.refresh(false).await {
                        Ok(listed) => listed,
                        Err(error) => {
                            error!(error = %error, "cannot schedule the tables");
                            false
                        }
                    };
                    next_refresh = Instant::now() + refresh_after(listed);
                } else {
                    self.check().await;
                    next_check = Instant::now() + CHECK_EVERY;
                }
            };
            tokio::select! {
                () = self.stopping.cancelled() => return,
                () = chore => {}
            }
        }
    }

    /// Checks that the database answers and that the login works, for `/readyz`.
    async fn check(&self) {
        let before = self.status.readiness();
        let database = match timeout(CHECK_TIMEOUT, self.engine.check_database()).await {
            Ok(result) => result,
            Err(_) => Err("the database did not answer in time".to_owned()),
        };
        let login = match timeout(CHECK_TIMEOUT, self.engine.check_login()).await {
            Ok(result) => result,
            Err(_) => Err("the login did not finish in time".to_owned()),
        };
        for (what, was, now) in [
            ("database", &before.database, &database),
            ("login", &before.login, &login),
        ] {
            match now {
                Err(error) if was.ok || was.checked_at.is_none() => {
                    warn!(check = what, error = %error, "readiness check failed");
                }
                Ok(()) if !was.ok && was.checked_at.is_some() => {
                    info!(check = what, "readiness check passes again");
                }
                _ => {}
            }
        }
        self.status.set_database_check(database);
        self.status.set_login_check(login);
        // Other processes on the database (replicas) sync tables too: what they did shows here
        // as well (the data's freshness; failures and counters stay this process's own).
        if let Ok(Ok(known)) = timeout(CHECK_TIMEOUT, self.engine.table_statuses()).await {
            self.status.refresh_known(&known);
        }
    }
}

/// Whether a table missed a tick since it last synced (or never synced).
fn overdue(schedule: &CronSchedule, last_sync: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    match last_sync {
        None => true,
        // Cron ticks fall on whole seconds.
        Some(last) => schedule.next_after(last).is_some_and(|tick| tick <= now),
    }
}

/// The tables to schedule when the API cannot list them: the ones the database knows that the
/// selection selects, and the ones the selection names.
fn fallback_tables(
    namespaces: &BTreeMap<String, NamespaceConfig>,
    known: &[TableStatus],
) -> Vec<TableId> {
    let mut tables: Vec<TableId> = known
        .iter()
        .filter(|s| {
            namespaces
                .get(&s.namespace)
                .is_some_and(|ns| ns.selects(&s.table))
        })
        .map(|s| TableId::new(&s.namespace, &s.table))
        .collect();
    for (namespace, selection) in namespaces.iter().filter(|(_, s)| !s.needs_listing()) {
        tables.extend(
            selection
                .tables
                .iter()
                .filter(|t| selection.selects(t))
                .map(|t| TableId::new(namespace, t)),
        );
    }
    tables.sort();
    tables.dedup();
    tables
}

/// A cron job running `run` on `schedule`'s ticks. The builder parses as `CronSchedule::cron`
/// does, with classic cron's rule that a restricted day of month and day of week combine as
/// either (`Job::new` would want both).
fn cron_job(
    schedule: &CronSchedule,
    run: impl Fn() + Send + Sync + 'static,
) -> Result<Job, JobSchedulerError> {
    JobBuilder::new()
        .with_timezone(chrono::Utc)
        .with_cron_job_type()
        .with_schedule(schedule.as_str())?
        .with_run_sync(Box::new(move |_, _| run()))
        .build()
}

#[cfg(test)]
mod tests;
