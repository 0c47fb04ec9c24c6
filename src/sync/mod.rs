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
mod guard;
mod merge;
mod progress;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

pub use decode::{Decoded, RowDecoder};
pub use progress::ProgressMode;

use crate::config::OnInvalidRecord;
use crate::dap::{CompleteJob, DapClient, DapError, Query};
use crate::db::{
    Change, Commit, Db, DbError, Load, LoadStats, NewRun, ObjectWarning, Reject, RunError, RunKind,
    RunResult, TablePlan,
};
use crate::schema::{self, SchemaError, TableSchema};
use crate::sql::Dialect;
use progress::Progress;

/// How a table is treated by the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncOptions {
    pub on_invalid_record: OnInvalidRecord,
    pub validate_records: bool,
    /// `namespace.table` names whose keys may repeat within one result.
    pub repeated_keys: Vec<String>,
    /// A result whose share of rejected records is above this is not applied.
    pub max_rejected_fraction: f64,
    /// `namespace.table` names whose re-snapshots merge into the live table (upserts) instead
    /// of replacing it.
    pub keep_history: Vec<String>,
    pub progress: ProgressMode,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            on_invalid_record: OnInvalidRecord::Reject,
            validate_records: true,
            repeated_keys: vec!["canvas_logs.web_logs".into()],
            max_rejected_fraction: 0.01,
            keep_history: vec!["canvas_logs.web_logs".into()],
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
}

/// What one run did.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    pub namespace: String,
    pub table: String,
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

/// Why a table could not be synced.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{table} is being synced by another process")]
    Locked { table: String },
    #[error("{table}: DAP request failed")]
    Dap {
        table: String,
        #[source]
        source: DapError,
    },
    #[error("{table}: database operation failed")]
    Db {
        table: String,
        #[source]
        source: DbError,
    },
    #[error("{table}: the schema cannot be used")]
    Schema {
        table: String,
        #[source]
        source: SchemaError,
    },
    #[error(
        "{table}: {count} invalid record(s) and on_invalid_record = \"fail\"; the first {reason}"
    )]
    InvalidRecords {
        table: String,
        count: usize,
        reason: String,
    },
    #[error(
        "{table}: {count} of {records} record(s) rejected, above sync.max_rejected_fraction; nothing was applied; the first {reason}"
    )]
    TooManyRejects {
        table: String,
        count: u64,
        records: u64,
        reason: String,
    },
    #[error(
        "{table}: the job's records follow schema version {job}, but DAP describes version {described}; not loaded, tried again later"
    )]
    SchemaVersion {
        table: String,
        job: i64,
        described: i64,
    },
    #[error("{table}: {reason}")]
    State { table: String, reason: String },
}

impl SyncError {
    /// Whether the next attempt may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Locked { .. } | SyncError::SchemaVersion { .. } => true,
            SyncError::Dap { source, .. } => source.is_transient(),
            SyncError::Db { source, .. } => source.is_transient(),
            SyncError::Schema { .. }
            | SyncError::InvalidRecords { .. }
            | SyncError::TooManyRejects { .. }
            | SyncError::State { .. } => false,
        }
    }

    /// Whether every table should pause (an account-level DAP error).
    pub fn is_account_level(&self) -> bool {
        matches!(self, SyncError::Dap { source, .. } if source.is_account_level())
    }

    /// A short name for the kind of error: the DAP error type where there is one.
    pub fn type_name(&self) -> String {
        match self {
            SyncError::Locked { .. } => "Locked".into(),
            SyncError::Dap { source, .. } => source.type_name().to_owned(),
            SyncError::Db { .. } => "DatabaseError".into(),
            SyncError::Schema { .. } => "SchemaError".into(),
            SyncError::InvalidRecords { .. } => "InvalidRecords".into(),
            SyncError::TooManyRejects { .. } => "TooManyRejects".into(),
            SyncError::SchemaVersion { .. } => "SchemaVersionMismatch".into(),
            SyncError::State { .. } => "StateError".into(),
        }
    }

    /// The DAP error uuid, if the error came from the API.
    pub fn uuid(&self) -> Option<&str> {
        match self {
            SyncError::Dap { source, .. } => source.uuid(),
            _ => None,
        }
    }

    /// The error and its causes on one line.
    pub fn chain(&self) -> String {
        crate::error::chain(self)
    }

    fn run_error(&self) -> RunError {
        RunError {
            error_type: self.type_name(),
            uuid: self.uuid().map(str::to_owned),
            message: self.chain(),
        }
    }
}

/// The replication engine. Cheap to clone; shared by every table run.
#[derive(Debug, Clone)]
pub struct Engine {
    dap: DapClient,
    db: Db,
    options: Arc<SyncOptions>,
    /// Tables found to repeat keys although not configured so.
    repeating: Arc<Mutex<HashSet<String>>>,
}

/// The part of a run the engine keeps track of while it goes.
struct Attempt {
    run_id: i64,
    result: RunResult,
}

impl Engine {
    pub fn new(dap: DapClient, db: Db, options: SyncOptions) -> Self {
        Self {
            dap,
            db,
            options: Arc::new(options),
            repeating: Arc::default(),
        }
    }

    /// The database this engine writes to.
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
    pub async fn resync(&self, namespace: &str, table: &str) -> Result<Vec<RunReport>, SyncError> {
        self.sync_table(namespace, table, Mode::Resnapshot).await
    }

    /// Syncs one table. Returns the runs it made: none (an `Init` of a synced table), one, or two
    /// (an incremental that found the chain broken, then the snapshot that replaced it).
    pub async fn sync_table(
        &self,
        namespace: &str,
        table: &str,
        mode: Mode,
    ) -> Result<Vec<RunReport>, SyncError> {
        let label = format!("{namespace}.{table}");
        let db_err = |source| SyncError::Db {
            table: label.clone(),
            source,
        };
        let Some(lock) = self
            .db
            .try_lock_table(namespace, table)
            .await
            .map_err(db_err)?
        else {
            return Err(SyncError::Locked { table: label });
        };
        let result = self.sync_locked(namespace, table, mode).await;
        lock.release().await;
        result
    }

    async fn sync_locked(
        &self,
        namespace: &str,
        table: &str,
        mode: Mode,
    ) -> Result<Vec<RunReport>, SyncError> {
        let label = format!("{namespace}.{table}");
        let db_err = |source| SyncError::Db {
            table: label.clone(),
            source,
        };
        self.db
            .recover_table(namespace, table)
            .await
            .map_err(db_err)?;
        let state = self.db.sync_state(namespace, table).await.map_err(db_err)?;
        let stored = match &state {
            Some(state) => Some(stored_schema(
                namespace,
                table,
                state.schema_version,
                &state.schema_description,
            )?),
            None => None,
        };
        // The live table's schema runs ahead of table_sync when ALTERs committed before a load
        // that did not: diff against what the table is, not what table_sync says.
        let shape = match &stored {
            Some(stored) => Some(
                self.db
                    .live_schema(namespace, table)
                    .await
                    .map_err(db_err)?
                    .unwrap_or_else(|| stored.clone()),
            ),
            None => None,
        };
        let (state, stored) = match (state, stored, mode) {
            (None, _, Mode::Init | Mode::Sync) => {
                return Ok(vec![
                    self.snapshot(namespace, table, "initial", None).await?,
                ]);
            }
            (Some(_), _, Mode::Init) => return Ok(Vec::new()),
            (_, _, Mode::Resnapshot) => {
                return Ok(vec![
                    self.snapshot(namespace, table, "requested", shape).await?,
                ]);
            }
            (Some(state), Some(stored), Mode::Sync) => (state, stored),
            (Some(_), None, Mode::Sync) => unreachable!("a stored state always has a schema"),
        };
        let shape = shape.unwrap_or_else(|| stored.clone());
        let plan = TablePlan::new(self.db.dialect(), shape.clone());
        if !self.db.table_exists(&plan.live).await.map_err(db_err)? {
            tracing::warn!(table = %label, "the table is gone from the database; taking a new snapshot");
            return Ok(vec![
                self.snapshot(namespace, table, "missing_table", Some(shape))
                    .await?,
            ]);
        }
        let mut reports = Vec::new();
        match self
            .incremental(namespace, table, state.since, stored, shape.clone())
            .await
        {
            Ok(Some(report)) => reports.push(report),
            Ok(None) => reports.push(
                self.snapshot(namespace, table, "schema_rebuild", Some(shape.clone()))
                    .await?,
            ),
            Err(SyncError::Dap { source, .. }) if source.needs_snapshot() => {
                let reason = if matches!(
                    source.api_error().map(|e| &e.kind),
                    Some(crate::dap::ApiErrorKind::OutOfRange { .. })
                ) {
                    "out_of_range"
                } else {
                    "snapshot_required"
                };
                tracing::warn!(table = %label, error_type = source.type_name(), uuid = source.uuid().unwrap_or("-"), "the incremental chain is broken; taking a new snapshot");
                reports.push(self.snapshot(namespace, table, reason, Some(shape)).await?);
            }
            Err(error) => return Err(error),
        }
        Ok(reports)
    }

    /// Records a failed run and passes the error on.
    async fn fail(
        &self,
        attempt: &Attempt,
        namespace: &str,
        table: &str,
        error: SyncError,
    ) -> SyncError {
        if let Err(db_error) = self
            .db
            .fail_run(
                attempt.run_id,
                namespace,
                table,
                &attempt.result,
                &error.run_error(),
            )
            .await
        {
            tracing::error!(table = %format!("{namespace}.{table}"), error = %db_error, "could not record the failed run");
        }
        error
    }

    async fn current_schema(&self, namespace: &str, table: &str) -> Result<TableSchema, SyncError> {
        let label = || format!("{namespace}.{table}");
        let envelope = self
            .dap
            .get_schema(namespace, table)
            .await
            .map_err(|source| SyncError::Dap {
                table: label(),
                source,
            })?;
        TableSchema::from_envelope(namespace, table, &envelope).map_err(|source| {
            SyncError::Schema {
                table: label(),
                source,
            }
        })
    }

    /// The schema of version `version`, which a job's records follow: DAP describes only its
    /// latest version, so when that is another one, the job is not loaded and the run is tried
    /// again later (records are never loaded with another version's schema).
    async fn schema_of_job(
        &self,
        namespace: &str,
        table: &str,
        version: i64,
    ) -> Result<TableSchema, SyncError> {
        let schema = self.current_schema(namespace, table).await?;
        if schema.version != version {
            tracing::warn!(table = %format!("{namespace}.{table}"), job = version, described = schema.version, "the job's schema version is not the one DAP describes");
            return Err(SyncError::SchemaVersion {
                table: format!("{namespace}.{table}"),
                job: version,
                described: schema.version,
            });
        }
        Ok(schema)
    }

    /// Loads a new snapshot; `replaced` is the schema of the live table it replaces.
    async fn snapshot(
        &self,
        namespace: &str,
        table: &str,
        reason: &'static str,
        replaced: Option<TableSchema>,
    ) -> Result<RunReport, SyncError> {
        let label = format!("{namespace}.{table}");
        let started = Instant::now();
        let run = NewRun {
            namespace,
            table,
            kind: RunKind::Snapshot,
            reason: Some(reason),
            since: None,
        };
        let mut attempt = self.start_attempt(&run, &label).await?;
        tracing::info!(table = %label, reason, run_id = attempt.run_id, "snapshot starting");
        match self
            .snapshot_run(namespace, table, &mut attempt, replaced)
            .await
        {
            Ok(mut report) => {
                report.reason = Some(reason);
                report.duration = started.elapsed();
                // preserve (issue 11): what the swap could not keep, for /status.
                report.warnings = self.run_warnings(attempt.run_id).await;
                log_report(&report);
                Ok(report)
            }
            Err(error) => Err(self.fail(&attempt, namespace, table, error).await),
        }
    }

    async fn snapshot_run(
        &self,
        namespace: &str,
        table: &str,
        attempt: &mut Attempt,
        replaced: Option<TableSchema>,
    ) -> Result<RunReport, SyncError> {
        let label = format!("{namespace}.{table}");
        let dap_err = |source| SyncError::Dap {
            table: label.clone(),
            source,
        };
        let mut schema = self.current_schema(namespace, table).await?;
        let job = self
            .dap
            .query(namespace, table, Query::Snapshot)
            .await
            .map_err(dap_err)?;
        attempt.result.job_id = Some(job.id.clone());
        if job.schema_version != schema.version {
            schema = self
                .schema_of_job(namespace, table, job.schema_version)
                .await?;
        }
        if let Some(live_schema) = &replaced
            && self.keeps_history(namespace, table)
            && let Some(report) = self
                .merge_snapshot(&job, live_schema, schema.clone(), attempt)
                .await?
        {
            return Ok(report);
        }
        let repeated = self.repeats_keys(namespace, table);
        match self
            .load_snapshot(&job, schema.clone(), attempt, replaced.clone(), repeated)
            .await
        {
            Err(SyncError::Db { source, .. }) if !repeated && source.is_unique_violation() => {
                tracing::warn!(table = %label, "the snapshot repeats keys; loading it again keeping the last of each");
                if let Ok(mut set) = self.repeating.lock() {
                    set.insert(format!("{namespace}.{table}"));
                }
                self.load_snapshot(&job, schema, attempt, replaced, true)
                    .await
            }
            other => other,
        }
    }

    /// Whether a table's results may repeat a key (configured, or found while loading).
    fn repeats_keys(&self, namespace: &str, table: &str) -> bool {
        let key = format!("{namespace}.{table}");
        self.options.repeated_keys.contains(&key)
            || self.repeating.lock().is_ok_and(|set| set.contains(&key))
    }

    /// Records the start of a run in the run history.
    async fn start_attempt(&self, run: &NewRun<'_>, label: &str) -> Result<Attempt, SyncError> {
        let run_id = self
            .db
            .start_run(run)
            .await
            .map_err(|source| SyncError::Db {
                table: label.to_owned(),
                source,
            })?;
        Ok(Attempt {
            run_id,
            result: RunResult::default(),
        })
    }

    async fn load_snapshot(
        &self,
        job: &CompleteJob,
        schema: TableSchema,
        attempt: &mut Attempt,
        replaced: Option<TableSchema>,
        repeated_keys: bool,
    ) -> Result<RunReport, SyncError> {
        let plan = Arc::new(TablePlan::new(self.db.dialect(), schema));
        let label = plan.label();
        let mut load = self
            .db
            .begin_snapshot(plan.clone(), attempt.run_id, repeated_keys)
            .await
            .map_err(|source| SyncError::Db {
                table: label.clone(),
                source,
            })?;
        let bytes = match self.pump(&plan, job, &mut load, false).await {
            Ok(bytes) => bytes,
            Err(error) => {
                load.abort().await;
                return Err(error);
            }
        };
        attempt.result.bytes = bytes as i64;
        let commit = Commit {
            run_id: attempt.run_id,
            watermark: job.watermark(),
            job_id: job.id.clone(),
            bytes: bytes as i64,
            replaced_schema: replaced,
        };
        let stats = load.commit(commit).await.map_err(|source| SyncError::Db {
            table: label,
            source,
        })?;
        Ok(self.report(&plan, job, RunKind::Snapshot, None, stats, bytes))
    }

    /// Runs one incremental query from `since`; `stored` is table_sync's schema, `shape` the
    /// live table's. `Ok(None)` means the schema changed in a way that needs a new snapshot.
    async fn incremental(
        &self,
        namespace: &str,
        table: &str,
        since: DateTime<Utc>,
        stored: TableSchema,
        shape: TableSchema,
    ) -> Result<Option<RunReport>, SyncError> {
        let label = format!("{namespace}.{table}");
        let started = Instant::now();
        let run = NewRun {
            namespace,
            table,
            kind: RunKind::Incremental,
            reason: None,
            since: Some(since),
        };
        let mut attempt = self.start_attempt(&run, &label).await?;
        match self
            .incremental_run(namespace, table, since, (stored, shape), &mut attempt)
            .await
        {
            Ok(Some(mut report)) => {
                report.since = Some(since);
                report.duration = started.elapsed();
                // preserve (issue 11): what an in-place change could not keep, for /status.
                report.warnings = self.run_warnings(attempt.run_id).await;
                log_report(&report);
                Ok(Some(report))
            }
            Ok(None) => {
                let error = SyncError::State {
                    table: label,
                    reason: "the schema changed in a way that needs a new snapshot".into(),
                };
                let mut error = error.run_error();
                error.error_type = "SchemaRebuild".into();
                if let Err(db_error) = self
                    .db
                    .fail_run(attempt.run_id, namespace, table, &attempt.result, &error)
                    .await
                {
                    tracing::error!(table = %format!("{namespace}.{table}"), error = %db_error, "could not record the run");
                }
                Ok(None)
            }
            Err(error) => Err(self.fail(&attempt, namespace, table, error).await),
        }
    }

    async fn incremental_run(
        &self,
        namespace: &str,
        table: &str,
        since: DateTime<Utc>,
        (stored, shape): (TableSchema, TableSchema),
        attempt: &mut Attempt,
    ) -> Result<Option<RunReport>, SyncError> {
        let label = format!("{namespace}.{table}");
        let dap_err = |source| SyncError::Dap {
            table: label.clone(),
            source,
        };
        let mut schema = shape;
        let current = self.current_schema(namespace, table).await?;
        if current.version != schema.version {
            if !self.evolve(&schema, &current, attempt.run_id).await? {
                return Ok(None);
            }
            schema = current;
        }
        let job = self
            .dap
            .query(namespace, table, Query::Incremental { since })
            .await
            .map_err(dap_err)?;
        attempt.result.job_id = Some(job.id.clone());
        if job.schema_version != schema.version {
            // The schema moved on between our look and the query.
            let newer = self
                .schema_of_job(namespace, table, job.schema_version)
                .await?;
            if !self.evolve(&schema, &newer, attempt.run_id).await? {
                return Ok(None);
            }
            schema = newer;
        }
        let live = self
            .db
            .live_columns(&TablePlan::new(self.db.dialect(), schema.clone()).live)
            .await
            .map_err(|source| SyncError::Db {
                table: label.clone(),
                source,
            })?;
        // The last commit applied comes again, written under the stored version.
        let previous = (schema.version != stored.version).then_some(&stored);
        let plan = Arc::new(TablePlan::new(self.db.dialect(), schema).accepting(&live, previous));
        let mut load = self
            .db
            .begin_incremental(plan.clone(), attempt.run_id)
            .await
            .map_err(|source| SyncError::Db {
                table: label.clone(),
                source,
            })?;
        let bytes = match self.pump(&plan, &job, &mut load, true).await {
            Ok(bytes) => bytes,
            Err(error) => {
                load.abort().await;
                return Err(error);
            }
        };
        attempt.result.bytes = bytes as i64;
        let commit = Commit {
            run_id: attempt.run_id,
            watermark: job.watermark(),
            job_id: job.id.clone(),
            bytes: bytes as i64,
            replaced_schema: None,
        };
        let stats = load.commit(commit).await.map_err(|source| SyncError::Db {
            table: label,
            source,
        })?;
        Ok(Some(self.report(
            &plan,
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
    ) -> Result<bool, SyncError> {
        let diff = schema::diff(old, new);
        let label = format!("{}.{}", new.namespace, new.table);
        if diff.needs_rebuild() {
            tracing::warn!(table = %label, from = old.version, to = new.version, changes = ?diff.changes, "schema change needs a new snapshot");
            return Ok(false);
        }
        if diff.is_empty() {
            return Ok(true);
        }
        let dialect = self.db.dialect();
        let plan = TablePlan::new(dialect, new.clone());
        let db_err = |source| SyncError::Db {
            table: label.clone(),
            source,
        };
        let existing = self.db.live_columns(&plan.live).await.map_err(db_err)?;
        let statements = dialect.alter_table(
            old,
            new,
            &diff,
            &plan.live,
            &existing,
            &self.db.ddl_options(),
        );
        // preserve (issue 11): the user's views survive the ALTERs.
        self.db
            .alter_preserving(
                &plan.live,
                &statements,
                run_id,
                &format!("altering {label}"),
            )
            .await
            .map_err(db_err)?;
        // The ALTERs committed; the load that moves table_sync on may not.
        self.db.set_live_schema(&plan).await.map_err(db_err)?;
        tracing::info!(table = %label, from = old.version, to = new.version, changes = diff.changes.len(), "schema evolved in place");
        Ok(true)
    }

    /// Streams a job's records into a load: validation, conversion, rejects. Returns the bytes read.
    async fn pump(
        &self,
        plan: &Arc<TablePlan>,
        job: &CompleteJob,
        load: &mut Load,
        incremental: bool,
    ) -> Result<u64, SyncError> {
        let repeated_keys = self.repeats_keys(&plan.schema.namespace, &plan.schema.table);
        let label = plan.label();
        let decoder = RowDecoder::new(plan.clone(), self.options.validate_records, incremental)
            .map_err(|reason| SyncError::State {
                table: label.clone(),
                reason,
            })?;
        let mut stream = self.dap.records_with(job, Arc::new(decoder));
        // Where a key repeats, the last one wins: the last in the job's order of objects and
        // lines, which the loaders see only when the objects come one after the other.
        // InnoDB's clustered index also loads far faster with keys arriving in order than
        // interleaved from several objects, and InnoDB, not decoding, bounds the pace.
        if repeated_keys || (!incremental && self.db.dialect() == Dialect::Mysql) {
            stream = stream.sequential();
        }
        let mut progress = Progress::new(&label, self.options.progress);
        let mut bytes = 0u64;
        let mut tally = guard::RejectTally::default();
        while let Some(batch) = stream.next_batch().await {
            let batch = batch.map_err(|source| SyncError::Dap {
                table: label.clone(),
                source,
            })?;
            bytes += batch.bytes;
            let mut rejects: Vec<Reject> = batch
                .malformed
                .into_iter()
                .map(|m| Reject {
                    key: None,
                    reason: format!("is not a valid record: {}", m.reason),
                    line: m.line,
                })
                .collect();
            let mut rows = Vec::new();
            let mut changes = Vec::new();
            let records = batch.records.len();
            let lines = records + rejects.len();
            for decoded in batch.records {
                match decoded {
                    Decoded::Upsert(row) if incremental => {
                        changes.push(Change { delete: false, row })
                    }
                    Decoded::Upsert(row) => rows.push(row),
                    Decoded::Delete(row) => changes.push(Change { delete: true, row }),
                    Decoded::Rejected(reject) => rejects.push(reject),
                }
            }
            tally.add(lines, rejects.iter().map(|r| r.reason.as_str()));
            if !rejects.is_empty() && self.options.on_invalid_record == OnInvalidRecord::Fail {
                let reason = rejects.swap_remove(0).reason;
                return Err(SyncError::InvalidRecords {
                    table: label,
                    count: tally.rejected() as usize,
                    reason,
                });
            }
            let db_err = |source| SyncError::Db {
                table: label.clone(),
                source,
            };
            if incremental {
                load.changes(changes).await.map_err(db_err)?;
            } else {
                load.rows(rows).await.map_err(db_err)?;
            }
            load.rejects(rejects).await.map_err(db_err)?;
            progress.advance(records as u64, batch.bytes);
            crate::failpoint::hit("sync.batch");
        }
        progress.finish();
        if let Err(refused) = tally.check(self.options.max_rejected_fraction) {
            tracing::warn!(table = %label, rejected = refused.rejected, records = refused.records, "too many records rejected; the result is not applied");
            return Err(SyncError::TooManyRejects {
                table: label,
                count: refused.rejected,
                records: refused.records,
                reason: refused.first_reason,
            });
        }
        if tally.rejected() > 0 {
            tracing::warn!(table = %label, rejected = tally.rejected(), "records went to the reject table");
        }
        Ok(bytes)
    }

    fn report(
        &self,
        plan: &TablePlan,
        job: &CompleteJob,
        kind: RunKind,
        since: Option<DateTime<Utc>>,
        stats: LoadStats,
        bytes: u64,
    ) -> RunReport {
        RunReport {
            namespace: plan.schema.namespace.clone(),
            table: plan.schema.table.clone(),
            kind,
            reason: None,
            job_id: job.id.clone(),
            since,
            watermark: job.watermark(),
            schema_version: plan.schema.version,
            stats,
            bytes,
            duration: Duration::ZERO,
            warnings: Vec::new(),
        }
    }

    /// The warnings recorded against a run; none (logged) if they cannot be read.
    async fn run_warnings(&self, run_id: i64) -> Vec<ObjectWarning> {
        self.db.run_warnings(run_id).await.unwrap_or_else(|error| {
            tracing::warn!(run_id, error = %error, "could not read the run's warnings");
            Vec::new()
        })
    }
}

fn stored_schema(
    namespace: &str,
    table: &str,
    version: i64,
    description: &str,
) -> Result<TableSchema, SyncError> {
    let label = || format!("{namespace}.{table}");
    let json: serde_json::Value =
        serde_json::from_str(description).map_err(|e| SyncError::State {
            table: label(),
            reason: format!("table_sync.schema_description is not JSON: {e}"),
        })?;
    TableSchema::from_json_schema(namespace, table, version, &json).map_err(|source| {
        SyncError::Schema {
            table: label(),
            source,
        }
    })
}

fn log_report(report: &RunReport) {
    tracing::info!(
        table = %format!("{}.{}", report.namespace, report.table),
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
