//! One table, one run: a snapshot, or an incremental query chained on the stored watermark. The only
//! place that knows DAP, schemas and the database together; it knows nothing of cron, HTTP or
//! signals.
//!
//! A run takes the table's lock, finishes any interrupted swap, reads the sync state, and then:
//! - never synced (or forced): snapshot into a staging table that replaces the live one atomically;
//! - synced: bring the table to the current schema version (in-place ALTERs, or a re-snapshot when
//!   the change needs a rebuild), run an incremental query from the stored watermark and apply it
//!   in one transaction with the new watermark. SnapshotRequiredError and OutOfRangeError are
//!   recorded and answered with a re-snapshot.

mod decode;
mod drop;
mod error;
mod fill;
mod guard;
mod merge;
mod progress;
mod select;
mod timing;

use std::collections::{BTreeMap, HashSet};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

pub use decode::{Decoded, RowDecoder};
pub use drop::drop_table;
pub use error::{SyncError, SyncErrorKind};
pub use progress::ProgressMode;
pub use select::resolve_tables;

/// Whether a run waits for the query budget, for the scheduler's shutdown.
pub use crate::dap::report_budget_waits;
/// The run history's and the control tables' vocabulary, as the scheduler and the CLI see it.
pub use crate::destination::{
    DbError, RunFilter, RunKind, RunOutcome, RunRecord, TableControl, TableStatus,
};

use crate::config::{NamespaceConfig, OnInvalidRecord};
use crate::dap::{CompleteJob, DapClient, DapError, Query};
use crate::destination::{
    Db, Destination, DestinationError, LoadStats, NewRun, ObjectWarning, RunError, RunResult,
};
use crate::schema::TableSchema;
use crate::status::RunSummary;
use crate::table::TableId;

/// How a table is treated by the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncOptions {
    pub on_invalid_record: OnInvalidRecord,
    pub validate_records: bool,
    /// Tables whose keys may repeat within one result.
    pub repeated_keys: Vec<TableId>,
    /// A result whose share of rejected records is above this is not applied.
    pub max_rejected_fraction: f64,
    /// `namespace.table` names whose re-snapshots merge into the live table (upserts) instead
    /// of replacing it.
    pub keep_history: Vec<TableId>,
    pub progress: ProgressMode,
}

impl SyncOptions {
    /// Whether the configuration says a table's results may repeat a key.
    pub fn repeats_keys(&self, table: &TableId) -> bool {
        self.repeated_keys.contains(table)
    }
}

impl Default for SyncOptions {
    fn default() -> Self {
        let defaults = crate::config::SyncConfig::default();
        Self {
            on_invalid_record: OnInvalidRecord::Reject,
            validate_records: true,
            repeated_keys: defaults.repeated_key_tables(),
            max_rejected_fraction: 0.01,
            keep_history: defaults.keep_history_tables(),
            progress: ProgressMode::Log,
        }
    }
}

/// What to do with a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Snapshot it if it was never synced; otherwise leave it.
    Init,
    /// Bring it up to date: an incremental query, or its first snapshot.
    Sync,
    /// Take a new snapshot whatever its state.
    Resnapshot,
    /// A schedule's tick at this instant: [`Mode::Sync`], unless the table was synced since
    /// (another replica took the tick), and then nothing.
    Tick(DateTime<Utc>),
}

/// What one run did.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    pub table: TableId,
    pub kind: RunKind,
    /// Why a snapshot ran.
    pub reason: Option<&'static str>,
    pub job_id: String,
    pub since: Option<DateTime<Utc>>,
    /// `at` of a snapshot, `until` of an incremental: where the table copy now stands.
    pub watermark: DateTime<Utc>,
    pub schema_version: i64,
    pub stats: LoadStats,
    /// Decompressed bytes of the records read.
    pub bytes: u64,
    pub duration: Duration,
    /// User objects on the table that the run could not keep (see `db::ObjectWarning`).
    pub warnings: Vec<ObjectWarning>,
}

impl RunReport {
    /// What the read model keeps of the run.
    pub fn summary(&self) -> RunSummary {
        RunSummary {
            snapshot_reason: (self.kind == RunKind::Snapshot)
                .then(|| self.reason.unwrap_or("requested")),
            watermark: self.watermark,
            schema_version: self.schema_version,
            upserted: self.stats.upserted,
            deleted: self.stats.deleted,
            rejected: self.stats.rejected,
            row_count: self.stats.row_count,
            warnings: self.warnings.clone(),
        }
    }
}

/// The replication engine. Cheap to clone; shared by every table run.
#[derive(Debug, Clone)]
pub struct Engine {
    dap: DapClient,
    /// The database of the operator's controls and the run history, read by the scheduler and
    /// the control API.
    db: Db,
    /// Where the tables go: everything a run does to its target goes through it.
    destination: Arc<dyn Destination>,
    options: Arc<SyncOptions>,
    /// Tables found to repeat keys although not configured so.
    repeating: Arc<Mutex<HashSet<TableId>>>,
}

/// The part of a run the engine keeps track of while it goes.
struct Attempt {
    run_id: i64,
    result: RunResult,
    clock: timing::RunClock,
}

impl Engine {
    pub fn new(dap: DapClient, db: Db, options: SyncOptions) -> Self {
        Self {
            dap,
            destination: Arc::new(db.clone()),
            db,
            options: Arc::new(options),
            repeating: Arc::default(),
        }
    }

    /// An engine whose tables go to `destination`; `db` keeps the operator's controls.
    pub fn with_destination(
        dap: DapClient,
        db: Db,
        destination: Arc<dyn Destination>,
        options: SyncOptions,
    ) -> Self {
        Self {
            dap,
            destination,
            db,
            options: Arc::new(options),
            repeating: Arc::default(),
        }
    }

    /// The database of the operator's controls and the run history.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The DAP client this engine reads from.
    pub fn dap(&self) -> &DapClient {
        &self.dap
    }

    /// Takes a new snapshot of one table, whatever its state: loaded into a staging copy that
    /// replaces the live table when complete (readers see the old copy until then), or, for a
    /// `sync.keep_history` table, merged into the live table. The operation behind `dapsync
    /// resync`, for any caller that wants a table reloaded.
    pub async fn resync(&self, id: &TableId) -> Result<Vec<RunReport>, SyncError> {
        self.sync_table(id, Mode::Resnapshot).await
    }

    /// The tables the database knows, with their state.
    pub async fn table_statuses(&self) -> Result<Vec<TableStatus>, DestinationError> {
        self.destination.table_statuses().await
    }

    /// Resolves a table selection (see [`resolve_tables`]).
    pub async fn resolve_tables(
        &self,
        namespaces: &BTreeMap<String, NamespaceConfig>,
    ) -> Result<Vec<TableId>, DapError> {
        resolve_tables(&self.dap, namespaces).await
    }

    /// Whether the database answers; the error on one line if not.
    pub async fn check_database(&self) -> Result<(), String> {
        self.destination
            .ping()
            .await
            .map_err(|e| format!("database: {}", crate::error::chain(&e)))
    }

    /// Whether the login to the DAP API works; the error on one line if not.
    pub async fn check_login(&self) -> Result<(), String> {
        self.dap
            .ensure_login()
            .await
            .map_err(|e| format!("DAP API: {}", crate::error::chain(&e)))
    }

    /// [`Engine::sync_table`], and the time it waited for the query budget.
    pub async fn sync_table_timed(
        &self,
        id: &TableId,
        mode: Mode,
    ) -> (Result<Vec<RunReport>, SyncError>, Duration) {
        crate::dap::rate_limit_wait_of(self.sync_table(id, mode)).await
    }

    /// Syncs one table. Returns the runs it made: none (an `Init` of a synced table, a `Tick`
    /// another process served), one, or two
    /// (an incremental that found the chain broken, then the snapshot that replaced it).
    pub async fn sync_table(&self, id: &TableId, mode: Mode) -> Result<Vec<RunReport>, SyncError> {
        let result = match self.destination.lock(id).await {
            Ok(Some(lock)) => {
                let result = self.sync_locked(id, mode).await;
                lock.release().await;
                result
            }
            Ok(None) => Err(SyncErrorKind::Locked),
            Err(source) => Err(source.into()),
        };
        result.map_err(|kind| SyncError::new(id.clone(), kind))
    }

    async fn sync_locked(&self, id: &TableId, mode: Mode) -> Result<Vec<RunReport>, SyncErrorKind> {
        self.destination.recover(id).await?;
        // `live` runs ahead of `stored` when ALTERs committed before a load that did not: diffs
        // are made against what the table is, not what it was last loaded with.
        let state = self.destination.state(id).await?;
        let state = match (state, mode) {
            (None, Mode::Init | Mode::Sync | Mode::Tick(_)) => {
                return Ok(vec![self.snapshot(id, "initial", None).await?]);
            }
            (Some(_), Mode::Init) => return Ok(Vec::new()),
            (state, Mode::Resnapshot) => {
                let shape = state.map(|state| state.live);
                return Ok(vec![self.snapshot(id, "requested", shape).await?]);
            }
            (Some(state), Mode::Tick(tick))
                if state.last_success_at.is_some_and(|at| at >= tick) =>
            {
                return Ok(Vec::new());
            }
            (Some(state), Mode::Sync | Mode::Tick(_)) => state,
        };
        let (stored, shape) = (state.stored, state.live);
        if !self.destination.table_exists(id).await? {
            tracing::warn!(table = %id, "the table is gone from the database; taking a new snapshot");
            return Ok(vec![self.snapshot(id, "missing_table", Some(shape)).await?]);
        }
        let mut reports = Vec::new();
        match self
            .incremental(id, state.since, stored, shape.clone())
            .await
        {
            Ok(Some(report)) => reports.push(report),
            Ok(None) => reports.push(
                self.snapshot(id, "schema_rebuild", Some(shape.clone()))
                    .await?,
            ),
            Err(SyncErrorKind::Dap(source)) if source.needs_snapshot() => {
                let reason = if matches!(
                    source.api_error().map(|e| &e.kind),
                    Some(crate::dap::ApiErrorKind::OutOfRange { .. })
                ) {
                    "out_of_range"
                } else {
                    "snapshot_required"
                };
                tracing::warn!(table = %id, error_type = source.type_name(), uuid = source.uuid().unwrap_or("-"), "the incremental chain is broken; taking a new snapshot");
                reports.push(self.snapshot(id, reason, Some(shape)).await?);
            }
            Err(error) => return Err(error),
        }
        Ok(reports)
    }

    /// Records a failed run and passes the error on.
    async fn fail(&self, attempt: &Attempt, id: &TableId, kind: SyncErrorKind) -> SyncErrorKind {
        let error = SyncError::new(id.clone(), kind);
        self.record_failure(attempt, id, &error.run_error()).await;
        error.kind
    }

    /// Records a failed run; a failure to record is logged.
    async fn record_failure(&self, attempt: &Attempt, id: &TableId, error: &RunError) {
        if let Err(db_error) = self
            .destination
            .fail_run(attempt.run_id, id, &attempt.result, error)
            .await
        {
            tracing::error!(table = %id, error = %db_error, "could not record the failed run");
        }
    }

    async fn current_schema(&self, id: &TableId) -> Result<TableSchema, SyncErrorKind> {
        let envelope = self.dap.get_schema(&id.namespace, &id.table).await?;
        Ok(TableSchema::from_envelope(
            &id.namespace,
            &id.table,
            &envelope,
        )?)
    }

    /// The schema of version `version`, which a job's records follow: DAP describes only its
    /// latest version, so when that is another one, the job is not loaded and the run is tried
    /// again later (records are never loaded with another version's schema).
    async fn schema_of_job(
        &self,
        id: &TableId,
        version: i64,
    ) -> Result<TableSchema, SyncErrorKind> {
        let schema = self.current_schema(id).await?;
        if schema.version != version {
            tracing::warn!(table = %id, job = version, described = schema.version, "the job's schema version is not the one DAP describes");
            return Err(SyncErrorKind::SchemaVersion {
                job: version,
                described: schema.version,
            });
        }
        Ok(schema)
    }

    /// Loads a new snapshot; `replaced` is the schema of the live table it replaces.
    async fn snapshot(
        &self,
        id: &TableId,
        reason: &'static str,
        replaced: Option<TableSchema>,
    ) -> Result<RunReport, SyncErrorKind> {
        let started = Instant::now();
        let run = NewRun {
            table: id,
            kind: RunKind::Snapshot,
            reason: Some(reason),
            since: None,
        };
        let mut attempt = self.start_attempt(&run).await?;
        tracing::info!(table = %id, reason, run_id = attempt.run_id, "snapshot starting");
        let result = self.snapshot_run(id, &mut attempt, replaced).await;
        self.record_times(&attempt).await;
        match result {
            Ok(mut report) => {
                report.reason = Some(reason);
                report.duration = started.elapsed();
                // preserve (issue 11): what the swap could not keep, for /status.
                report.warnings = self.run_warnings(attempt.run_id).await;
                log_report(&report);
                Ok(report)
            }
            Err(error) => Err(self.fail(&attempt, id, error).await),
        }
    }

    async fn snapshot_run(
        &self,
        id: &TableId,
        attempt: &mut Attempt,
        replaced: Option<TableSchema>,
    ) -> Result<RunReport, SyncErrorKind> {
        let mut schema = self.current_schema(id).await?;
        let job = self
            .timed_query(attempt, &id.namespace, &id.table, Query::Snapshot)
            .await?;
        attempt.result.job_id = Some(job.id.clone());
        if job.schema_version != schema.version {
            schema = self.schema_of_job(id, job.schema_version).await?;
        }
        if let Some(live_schema) = &replaced
            && self.keeps_history(id)
            && let Some(report) = self
                .merge_snapshot(&job, live_schema, schema.clone(), attempt)
                .await?
        {
            return Ok(report);
        }
        let repeated = self.repeats_keys(id);
        match self
            .load_snapshot(&job, schema.clone(), attempt, replaced.clone(), repeated)
            .await
        {
            Err(SyncErrorKind::Db(source)) if !repeated && source.is_unique_violation() => {
                tracing::warn!(table = %id, "the snapshot repeats keys; loading it again keeping the last of each");
                if let Ok(mut set) = self.repeating.lock() {
                    set.insert(id.clone());
                }
                self.load_snapshot(&job, schema, attempt, replaced, true)
                    .await
            }
            other => other,
        }
    }

    /// Whether a table's results may repeat a key (configured, or found while loading). The one
    /// place this is decided.
    fn repeats_keys(&self, id: &TableId) -> bool {
        self.options.repeats_keys(id) || self.repeating.lock().is_ok_and(|set| set.contains(id))
    }

    /// Records the start of a run in the run history.
    async fn start_attempt(&self, run: &NewRun<'_>) -> Result<Attempt, SyncErrorKind> {
        let run_id = self.destination.start_run(run).await?;
        Ok(Attempt {
            run_id,
            result: RunResult::default(),
            clock: timing::RunClock::start(),
        })
    }

    async fn load_snapshot(
        &self,
        job: &CompleteJob,
        schema: TableSchema,
        attempt: &mut Attempt,
        replaced: Option<TableSchema>,
        repeated_keys: bool,
    ) -> Result<RunReport, SyncErrorKind> {
        let load = self
            .destination
            .begin_snapshot(schema.clone(), attempt.run_id, repeated_keys)
            .await?;
        let (stats, bytes) = self
            .fill(job, load, attempt, false, repeated_keys, replaced)
            .await?;
        Ok(self.report(&schema, job, RunKind::Snapshot, None, stats, bytes))
    }

    /// Runs one incremental query from `since`; `stored` is table_sync's schema, `shape` the
    /// live table's. `Ok(None)` means the schema changed in a way that needs a new snapshot.
    async fn incremental(
        &self,
        id: &TableId,
        since: DateTime<Utc>,
        stored: TableSchema,
        shape: TableSchema,
    ) -> Result<Option<RunReport>, SyncErrorKind> {
        let started = Instant::now();
        let run = NewRun {
            table: id,
            kind: RunKind::Incremental,
            reason: None,
            since: Some(since),
        };
        let mut attempt = self.start_attempt(&run).await?;
        let result = self
            .incremental_run(id, since, (stored, shape), &mut attempt)
            .await;
        self.record_times(&attempt).await;
        match result {
            Ok(Some(mut report)) => {
                report.since = Some(since);
                report.duration = started.elapsed();
                // preserve (issue 11): what an in-place change could not keep, for /status.
                report.warnings = self.run_warnings(attempt.run_id).await;
                log_report(&report);
                Ok(Some(report))
            }
            Ok(None) => {
                let error = SyncError::new(
                    id.clone(),
                    SyncErrorKind::State(
                        "the schema changed in a way that needs a new snapshot".into(),
                    ),
                );
                let mut error = error.run_error();
                error.error_type = "SchemaRebuild".into();
                self.record_failure(&attempt, id, &error).await;
                Ok(None)
            }
            Err(error) => Err(self.fail(&attempt, id, error).await),
        }
    }

    async fn incremental_run(
        &self,
        id: &TableId,
        since: DateTime<Utc>,
        (stored, shape): (TableSchema, TableSchema),
        attempt: &mut Attempt,
    ) -> Result<Option<RunReport>, SyncErrorKind> {
        let mut schema = shape;
        let current = self.current_schema(id).await?;
        if current.version != schema.version {
            if !self.evolve(&schema, &current, attempt.run_id).await? {
                return Ok(None);
            }
            schema = current;
        }
        let job = self
            .timed_query(
                attempt,
                &id.namespace,
                &id.table,
                Query::Incremental { since },
            )
            .await?;
        attempt.result.job_id = Some(job.id.clone());
        if job.schema_version != schema.version {
            // The schema moved on between our look and the query.
            let newer = self.schema_of_job(id, job.schema_version).await?;
            if !self.evolve(&schema, &newer, attempt.run_id).await? {
                return Ok(None);
            }
            schema = newer;
        }
        // The last commit applied comes again, written under the stored version.
        let previous = (schema.version != stored.version).then_some(&stored);
        let load = self
            .destination
            .begin_changes(schema.clone(), previous, attempt.run_id)
            .await?;
        let repeated_keys = self.repeats_keys(id);
        let (stats, bytes) = self
            .fill(&job, load, attempt, true, repeated_keys, None)
            .await?;
        Ok(Some(self.report(
            &schema,
            &job,
            RunKind::Incremental,
            None,
            stats,
            bytes,
        )))
    }

    /// Brings the live table from `old` to `new` in place, in run `run_id`. Returns false when
    /// the change needs a rebuild instead.
    async fn evolve(
        &self,
        old: &TableSchema,
        new: &TableSchema,
        run_id: i64,
    ) -> Result<bool, SyncErrorKind> {
        // preserve (issue 11): the user's views survive the ALTERs (see `Db::evolve_table`).
        Ok(self.destination.evolve(old, new, run_id).await?)
    }

    fn report(
        &self,
        schema: &TableSchema,
        job: &CompleteJob,
        kind: RunKind,
        since: Option<DateTime<Utc>>,
        stats: LoadStats,
        bytes: u64,
    ) -> RunReport {
        RunReport {
            table: schema.id(),
            kind,
            reason: None,
            job_id: job.id.clone(),
            since,
            watermark: job.watermark(),
            schema_version: schema.version,
            stats,
            bytes,
            duration: Duration::ZERO,
            warnings: Vec::new(),
        }
    }

    /// The warnings recorded against a run; none (logged) if they cannot be read.
    async fn run_warnings(&self, run_id: i64) -> Vec<ObjectWarning> {
        self.destination
            .run_warnings(run_id)
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(run_id, error = %error, "could not read the run's warnings");
                Vec::new()
            })
    }
}

fn log_report(report: &RunReport) {
    tracing::info!(
        table = %report.table,
        kind = ?report.kind,
        reason = report.reason.unwrap_or("-"),
        job_id = %report.job_id,
        watermark = %report.watermark.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        upserted = report.stats.upserted,
        deleted = report.stats.deleted,
        rejected = report.stats.rejected,
        rows = report.stats.row_count,
        duration_ms = report.duration.as_millis() as u64,
        "table synced"
    );
}
