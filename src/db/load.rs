//! Loading snapshots and change sets, with each database's fast path:
//! - PostgreSQL: `COPY ... FROM STDIN` (text format) into a staging table created in the same
//!   transaction as the swap, so a snapshot is all or nothing; change sets are copied into a
//!   temporary table and applied with one `INSERT ... ON CONFLICT` and one `DELETE ... USING`.
//! - MySQL/MariaDB: multi-row `INSERT ... ON DUPLICATE KEY UPDATE` sized to the placeholder limit and
//!   `max_allowed_packet`, batched deletes. DDL commits implicitly, so a snapshot loads into a staging
//!   table and records a pending swap before the rename: a crash at any point converges.
//! - SQLite: multi-row prepared inserts in one write transaction.
//!
//! A load is a writer task that owns the connection and its transaction; the caller feeds it
//! batches through a small bounded channel (backpressure keeps memory flat) and ends it with
//! [`Load::commit`]. The data, `table_sync`, the table state and the run's outcome commit together.
//! Dropping a [`Load`] rolls everything back.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::mysql::MySqlArguments;
use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, AssertSqlSafe};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::control::{PendingSwap, Reject, insert_rejects, synced_last, write_sync_state};
use super::plan::{Row, TablePlan};
use super::preserve;
use super::query::{Arg, Kind, Tx};
use super::runs::{RunResult, finish_run};
use super::value::{Cell, write_copy_row};
use super::{Db, DbError, Pool};
use crate::run::RunOutcome;
use crate::schema::TableSchema;
use crate::sql::{self, Dialect, LoadColumns, Statement, TableNames};
use crate::table::TableId;

/// Where a successful load leaves the table.
#[derive(Debug, Clone)]
pub struct Commit {
    pub run_id: i64,
    /// `at` of the snapshot or `until` of the incremental.
    pub watermark: DateTime<Utc>,
    pub job_id: String,
    pub bytes: i64,
    /// The schema the live table had before a snapshot replaced it (to drop its enum types).
    pub replaced_schema: Option<TableSchema>,
}

/// What a load did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadStats {
    pub upserted: i64,
    pub deleted: i64,
    pub rejected: i64,
    /// Rows in the table after the commit.
    pub row_count: i64,
}

/// One record of a change set: an upsert with its full row, or a delete with its key cells.
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    pub delete: bool,
    pub row: Row,
}

#[derive(Debug)]
enum Msg {
    Rows(Vec<Row>),
    Changes(Vec<RowChange>),
    Rejects(Vec<Reject>),
    Commit(Box<Commit>, oneshot::Sender<()>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoadKind {
    Snapshot { repeated_keys: bool },
    Incremental,
}

/// A snapshot or change set being loaded.
#[derive(Debug)]
pub struct Load {
    sender: Option<mpsc::Sender<Msg>>,
    task: Option<JoinHandle<Result<LoadStats, DbError>>>,
}

const CHANNEL_BATCHES: usize = 2;
const COPY_CHUNK: usize = 1 << 20;
/// Rows gathered before multi-row statements are sent (MySQL, SQLite).
const STATEMENT_ROWS: usize = 8_000;
/// Rows per multi-row statement, at most (fewer when the placeholder limit or the packet size
/// says so).
const MAX_STATEMENT_ROWS: usize = 1_000;
/// MySQL, SQLite: an incremental follows the row count by looking up the keys of its upserts
/// (a lookup costs about as much as counting a few hundred rows, and more in a transaction
/// that has written) until its upserts pass this fraction of the table (1/N), or
/// [`FOLLOWED_MIN`]; then it counts the table once at the end.
const FOLLOWED_FRACTION: i64 = 100;
const FOLLOWED_MIN: i64 = 5_000;
/// Bind parameters per statement, at most.
const MYSQL_MAX_VARS: usize = 65_535;
const SQLITE_MAX_VARS: usize = 32_766;
/// MySQL: connections that load a snapshot's staging table at the same time.
const MYSQL_SNAPSHOT_CONNECTIONS: usize = 2;

/// Connections a table run may hold at once: one for its lock, one for its load, and on MySQL
/// the snapshot's extra loading connections.
pub fn connections_per_table(dialect: Dialect) -> u32 {
    match dialect {
        Dialect::Mysql => 2 + MYSQL_SNAPSHOT_CONNECTIONS as u32,
        Dialect::Postgres | Dialect::Sqlite => 2,
    }
}

/// Rejects are written in groups of this size (PostgreSQL interrupts its COPY for them).
const REJECT_FLUSH: usize = 1_000;

impl Db {
    /// Starts loading a snapshot of `plan` into a fresh staging table. With `repeated_keys`, a key
    /// may appear several times and the last one wins.
    pub async fn begin_snapshot(
        &self,
        plan: Arc<TablePlan>,
        run_id: i64,
        repeated_keys: bool,
    ) -> Result<Load, DbError> {
        self.begin_load(plan, run_id, LoadKind::Snapshot { repeated_keys })
            .await
    }

    /// Starts loading a change set into the live table.
    pub async fn begin_incremental(
        &self,
        plan: Arc<TablePlan>,
        run_id: i64,
    ) -> Result<Load, DbError> {
        self.begin_load(plan, run_id, LoadKind::Incremental).await
    }

    async fn begin_load(
        &self,
        plan: Arc<TablePlan>,
        run_id: i64,
        kind: LoadKind,
    ) -> Result<Load, DbError> {
        let (sender, receiver) = mpsc::channel(CHANNEL_BATCHES);
        let writer = Writer {
            db: self.clone(),
            plan,
            run_id,
            kind,
            receiver,
            stats: LoadStats::default(),
            inserted: Some(0),
        };
        let task = tokio::spawn(writer.run());
        Ok(Load {
            sender: Some(sender),
            task: Some(task),
        })
    }

    /// Finishes a MySQL snapshot swap that a crash interrupted (see the module docs). A no-op when
    /// nothing is pending, and on PostgreSQL and SQLite, whose swaps are transactional.
    pub async fn recover_table(&self, id: &TableId) -> Result<(), DbError> {
        let (namespace, table) = (id.namespace.as_str(), id.table.as_str());
        if self.dialect() != Dialect::Mysql {
            return Ok(());
        }
        let Some(pending) = self.pending_swap(id).await? else {
            return Ok(());
        };
        let schema = TableSchema::from_stored(
            namespace,
            table,
            pending.schema_version,
            &pending.schema_description,
        )
        .map_err(|source| DbError::UnreadablePendingSchema {
            table: id.clone(),
            source: Box::new(source),
        })?;
        let plan = TablePlan::new(Dialect::Mysql, schema);
        tracing::info!(table = %plan.label(), run_id = pending.run_id, "finishing an interrupted snapshot swap");
        self.mysql_swap(&plan, &pending).await
    }

    /// MySQL: swap a complete staging table in, then commit the control rows; every step can be
    /// repeated after a crash.
    async fn mysql_swap(&self, plan: &TablePlan, pending: &PendingSwap) -> Result<(), DbError> {
        let staging_exists = self.table_exists(&plan.staging).await?;
        if staging_exists {
            // A retired copy left by an earlier crash would block the rename.
            let retired = format!("DROP TABLE IF EXISTS {}", plan.live.retired().qualified());
            self.execute_one(&retired, "dropping the replaced table")
                .await?;
            // preserve (issue 11): the user's indexes onto the staging copy before the rename.
            self.copy_user_indexes(&plan.live, &plan.staging, pending.run_id)
                .await?;
            let live_exists = self.table_exists(&plan.live).await?;
            let statements = Dialect::Mysql.swap_in(
                None,
                &plan.schema,
                &plan.staging,
                &plan.live,
                live_exists,
                &self.ddl,
            );
            // The rename (first statement) is atomic; the drop of the old copy may be repeated.
            self.execute_statements(&statements, "swapping the snapshot in")
                .await?;
            crate::failpoint::hit("mysql.snapshot.after_rename");
            // InnoDB has no statistics for a freshly loaded table yet: without them the next
            // incremental's deletes by key were planned as full table scans.
            let analyze = format!("ANALYZE TABLE {}", plan.live.qualified());
            self.execute_one(&analyze, "analyzing the new table")
                .await?;
        }
        let mut tx = self.begin().await?;
        write_sync_state(&mut tx, plan, pending.watermark, pending.rows).await?;
        let result = RunResult {
            job_id: pending.job_id.clone(),
            until: Some(pending.watermark),
            schema_version: Some(plan.schema.version),
            upserted: pending.upserted,
            deleted: 0,
            rejected: pending.rejected,
            bytes: pending.bytes,
        };
        finish_run(&mut tx, pending.run_id, RunOutcome::Success, &result, None).await?;
        tx.commit()
            .await
            .map_err(DbError::sql("committing the snapshot"))?;
        // A crash before this drop leaves a retired copy that the next swap drops.
        self.execute_one(
            &format!("DROP TABLE IF EXISTS {}", plan.live.retired().qualified()),
            "dropping the replaced table",
        )
        .await
    }

    /// Runs schema statements: consecutive statements that may share a transaction run in one
    /// (atomic on PostgreSQL and SQLite), the others on their own.
    pub async fn apply_statements(
        &self,
        statements: &[Statement],
        context: &str,
    ) -> Result<(), DbError> {
        let _writer = self.sqlite_guard().await;
        let mut group: Vec<&Statement> = Vec::new();
        for statement in statements.iter().chain(std::iter::once(&Statement {
            sql: String::new(),
            own_transaction: true,
        })) {
            if statement.own_transaction || self.dialect() == Dialect::Mysql {
                if !group.is_empty() {
                    let mut tx = self.begin().await?;
                    for s in group.drain(..) {
                        tx.execute_raw(&s.sql).await.map_err(DbError::sql(format!(
                            "{context}: {}",
                            super::first_line(&s.sql)
                        )))?;
                    }
                    tx.commit()
                        .await
                        .map_err(DbError::sql(context.to_owned()))?;
                }
                if !statement.sql.is_empty() {
                    self.execute_one(&statement.sql, context).await?;
                }
            } else {
                group.push(statement);
            }
        }
        Ok(())
    }

    /// On SQLite, waits for this process's other writers (see [`Db::sqlite_writer`]).
    pub(crate) async fn sqlite_guard(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.pool {
            Pool::Sqlite(_) => Some(self.sqlite_writer.lock().await),
            _ => None,
        }
    }
}

impl Load {
    /// Sends snapshot rows.
    pub async fn rows(&mut self, rows: Vec<Row>) -> Result<(), DbError> {
        self.send(Msg::Rows(rows)).await
    }

    /// Sends change-set records, in result order (later ones win).
    pub async fn changes(&mut self, changes: Vec<RowChange>) -> Result<(), DbError> {
        self.send(Msg::Changes(changes)).await
    }

    /// Sends records for the reject table; they commit with the data.
    pub async fn rejects(&mut self, rejects: Vec<Reject>) -> Result<(), DbError> {
        if rejects.is_empty() {
            return Ok(());
        }
        self.send(Msg::Rejects(rejects)).await
    }

    /// Applies everything sent and commits it together with the control rows.
    pub async fn commit(mut self, commit: Commit) -> Result<LoadStats, DbError> {
        let (done, _wait) = oneshot::channel();
        let sent = self.send(Msg::Commit(Box::new(commit), done)).await;
        self.sender = None;
        let result = self.join().await;
        sent.and(result)
    }

    /// Abandons the load and waits until the writer has rolled it back, so that nothing of it
    /// is still running when the table's lock is released.
    pub async fn abort(mut self) {
        self.sender = None;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    async fn send(&mut self, msg: Msg) -> Result<(), DbError> {
        let Some(sender) = &self.sender else {
            return Err(DbError::LoadEnded);
        };
        if sender.send(msg).await.is_ok() {
            return Ok(());
        }
        // The writer stopped: its error says why.
        self.sender = None;
        self.join().await.and(Err(DbError::WriterStopped))
    }

    async fn join(&mut self) -> Result<LoadStats, DbError> {
        match self.task.take() {
            Some(task) => task.await.unwrap_or_else(|e| Err(DbError::WriterFailed(e))),
            None => Err(DbError::LoadEnded),
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        // Closing the channel without a commit makes the writer roll back; it is not waited for.
        self.sender = None;
    }
}

struct Writer {
    db: Db,
    plan: Arc<TablePlan>,
    run_id: i64,
    kind: LoadKind,
    receiver: mpsc::Receiver<Msg>,
    stats: LoadStats,
    /// Incremental loads: rows that were new (the rest of the upserts updated rows), so that
    /// the row count follows without counting the table; `None` once counting the table at the
    /// end is the cheaper way (see [`FOLLOWED_FRACTION`]).
    inserted: Option<i64>,
}

fn aborted() -> DbError {
    DbError::LoadAbandoned
}

impl Writer {
    async fn run(self) -> Result<LoadStats, DbError> {
        match self.db.dialect() {
            Dialect::Postgres => self.run_postgres().await,
            Dialect::Mysql | Dialect::Sqlite => self.run_bound().await,
        }
    }

    fn label(&self) -> String {
        self.plan.label()
    }

    fn tx_err(&self, what: &str) -> impl FnOnce(sqlx::Error) -> DbError + use<> {
        DbError::sql(format!("{what} ({})", self.label()))
    }

    /// PostgreSQL: everything in one transaction, rows streamed with COPY.
    async fn run_postgres(mut self) -> Result<LoadStats, DbError> {
        let plan = self.plan.clone();
        if let Some(schema) = &plan.staging.schema {
            // Created on its own first: inside the load's transaction, a new schema would make
            // every other table's load in that namespace wait for this one's commit.
            self.db
                .execute_one(
                    &sql::pg_create_schema(schema),
                    "creating the namespace's schema",
                )
                .await?;
        }
        let mut tx = self.db.begin().await?;
        let change_table = "dapsync_changes";
        // Where COPY writes: the staging table, or a change table with a sequence number and a
        // delete flag when later lines must win over earlier ones.
        let (copy_target, with_seq) = match self.kind {
            LoadKind::Snapshot { repeated_keys } => {
                let mut statements =
                    Dialect::Postgres.drop_table(Some(&plan.schema), &plan.staging, &self.db.ddl);
                statements.extend(Dialect::Postgres.create_table(
                    &plan.schema,
                    &plan.staging,
                    &self.db.ddl,
                ));
                for s in &statements {
                    tx.execute_raw(&s.sql)
                        .await
                        .map_err(self.tx_err("creating the staging table"))?;
                }
                if repeated_keys {
                    for s in sql::pg_create_change_table(change_table, &plan.staging) {
                        tx.execute_raw(&s)
                            .await
                            .map_err(self.tx_err("creating the change table"))?;
                    }
                    (Dialect::Postgres.quote_ident(change_table), true)
                } else {
                    (plan.staging.qualified(), false)
                }
            }
            LoadKind::Incremental => {
                for s in sql::pg_create_change_table(change_table, &plan.live) {
                    tx.execute_raw(&s)
                        .await
                        .map_err(self.tx_err("creating the change table"))?;
                }
                (Dialect::Postgres.quote_ident(change_table), true)
            }
        };
        let mut columns: Vec<String> = plan
            .columns
            .names
            .iter()
            .map(|c| Dialect::Postgres.quote_ident(c))
            .collect();
        if with_seq {
            columns.push(Dialect::Postgres.quote_ident(sql::SEQ_COLUMN));
            columns.push(Dialect::Postgres.quote_ident(sql::DELETE_COLUMN));
        }
        let copy_sql = sql::copy_from_stdin(&copy_target, &columns);
        let width = plan.columns.names.len();
        let mut seq: i64 = 0;
        let mut buffer: Vec<u8> = Vec::with_capacity(COPY_CHUNK + (64 << 10));
        let mut rejects: Vec<Reject> = Vec::new();
        // COPY occupies the connection: it is interrupted (finished and started again) whenever
        // enough rejects have gathered to be written.
        let (commit, done) = loop {
            let mut copy = tx
                .copy_in(&copy_sql)
                .await
                .map_err(self.tx_err("starting COPY"))?;
            let end = loop {
                let Some(msg) = self.receiver.recv().await else {
                    let _ = copy.abort("dapsync abandoned the load").await;
                    return Err(aborted());
                };
                match msg {
                    Msg::Rows(rows) => {
                        for row in &rows {
                            if with_seq {
                                seq += 1;
                                write_copy_row(
                                    row.iter().chain([&Cell::Int(seq), &Cell::Bool(false)]),
                                    &mut buffer,
                                );
                            } else {
                                write_copy_row(row, &mut buffer);
                            }
                        }
                        self.stats.upserted += rows.len() as i64;
                    }
                    Msg::Changes(changes) => {
                        for change in &changes {
                            seq += 1;
                            let padding = width.saturating_sub(change.row.len());
                            let cells = change
                                .row
                                .iter()
                                .chain(std::iter::repeat_n(&Cell::Null, padding));
                            write_copy_row(
                                cells.chain([&Cell::Int(seq), &Cell::Bool(change.delete)]),
                                &mut buffer,
                            );
                        }
                    }
                    Msg::Rejects(more) => {
                        self.stats.rejected += more.len() as i64;
                        rejects.extend(more);
                    }
                    Msg::Commit(commit, done) => break Some((commit, done)),
                }
                if buffer.len() >= COPY_CHUNK {
                    copy.send(std::mem::take(&mut buffer))
                        .await
                        .map_err(self.tx_err("sending COPY data"))?;
                    buffer.reserve(COPY_CHUNK + (64 << 10));
                }
                if rejects.len() >= REJECT_FLUSH {
                    break None;
                }
            };
            copy.send(std::mem::take(&mut buffer))
                .await
                .map_err(self.tx_err("sending COPY data"))?;
            copy.finish().await.map_err(self.tx_err("finishing COPY"))?;
            insert_rejects(&mut tx, self.run_id, &plan, &std::mem::take(&mut rejects)).await?;
            if let Some(end) = end {
                break end;
            }
        };
        match self.kind {
            LoadKind::Snapshot { repeated_keys } => {
                if repeated_keys {
                    let insert = sql::pg_insert_latest(change_table, &plan.staging, &plan.columns);
                    let inserted = tx
                        .execute(&insert, &[])
                        .await
                        .map_err(self.tx_err("keeping the last of repeated keys"))?;
                    self.stats.upserted = inserted as i64;
                }
                self.swap_in(&mut tx, &commit).await?;
            }
            LoadKind::Incremental => {
                let [upsert, delete] =
                    sql::pg_apply_changes(change_table, &plan.live, &plan.columns);
                // New rows have no xmax yet; updated ones do.
                let counted = format!(
                    "WITH upserted AS ({upsert} RETURNING (xmax = 0) AS inserted) \
                     SELECT count(*), count(*) FILTER (WHERE inserted) FROM upserted"
                );
                let counts = tx
                    .fetch(&counted, &[], &[Kind::Int, Kind::Int])
                    .await
                    .map_err(self.tx_err("applying upserts"))?;
                let count = |i: usize| counts.first().and_then(|r| r[i].int()).unwrap_or_default();
                self.stats.upserted = count(0);
                self.inserted = Some(count(1));
                self.stats.deleted =
                    tx.execute(&delete, &[])
                        .await
                        .map_err(self.tx_err("applying deletes"))? as i64;
            }
        }
        crate::failpoint::hit("load.before_commit");
        self.finish(tx, &commit).await?;
        let _ = done.send(());
        Ok(self.stats)
    }

    /// PostgreSQL and SQLite: replace the live table by the staging table inside the transaction.
    async fn swap_in(&self, tx: &mut Tx, commit: &Commit) -> Result<(), DbError> {
        let plan = &self.plan;
        let dialect = tx.dialect();
        let live_exists = !super::inspect::columns_tx(tx, &plan.live).await?.is_empty();
        // preserve (issue 11): read the user's objects on the live table, drop its views.
        let kept = preserve::before_swap(
            tx,
            &plan.live,
            &plan.staging,
            commit.replaced_schema.as_ref(),
        )
        .await?;
        let statements = dialect.swap_in(
            commit.replaced_schema.as_ref(),
            &plan.schema,
            &plan.staging,
            &plan.live,
            live_exists,
            &self.db.ddl,
        );
        for statement in &statements {
            tx.execute_raw(&statement.sql)
                .await
                .map_err(self.tx_err("swapping the snapshot in"))?;
        }
        // preserve (issue 11): recreate them on the new copy; warnings go to the run's row.
        preserve::after_swap(tx, kept, self.run_id).await
    }

    /// Counts the rows, advances the sync state and records the run, then commits.
    async fn finish(&mut self, mut tx: Tx, commit: &Commit) -> Result<(), DbError> {
        let plan = &self.plan;
        // Counting a large table costs seconds on InnoDB: follow the count where it is known.
        let known = match self.kind {
            // A PostgreSQL snapshot copied (or deduplicated into) exactly `upserted` rows.
            LoadKind::Snapshot { .. } if tx.dialect() == Dialect::Postgres => {
                Some(self.stats.upserted)
            }
            LoadKind::Snapshot { .. } => None,
            LoadKind::Incremental => match self.inserted {
                Some(inserted) => previous_row_count(&mut tx, plan)
                    .await?
                    .map(|before| before + inserted - self.stats.deleted),
                None => None,
            },
        };
        self.stats.row_count = match known {
            Some(rows) => rows,
            None => {
                let counted = tx
                    .fetch(&sql::count_rows(&plan.live), &[], &[Kind::Int])
                    .await
                    .map_err(self.tx_err("counting rows"))?;
                counted.first().and_then(|r| r[0].int()).unwrap_or_default()
            }
        };
        write_sync_state(&mut tx, plan, commit.watermark, self.stats.row_count).await?;
        let result = self.run_result(commit);
        finish_run(&mut tx, self.run_id, RunOutcome::Success, &result, None).await?;
        tx.commit().await.map_err(self.tx_err("committing"))
    }

    fn run_result(&self, commit: &Commit) -> RunResult {
        RunResult {
            job_id: Some(commit.job_id.clone()),
            until: Some(commit.watermark),
            schema_version: Some(self.plan.schema.version),
            upserted: self.stats.upserted,
            deleted: self.stats.deleted,
            rejected: self.stats.rejected,
            bytes: commit.bytes,
        }
    }

    /// Applies a group of changes to the live table: the last change of each key, upserts in
    /// multi-row statements, deletes in batches. Follows the count of new rows while the
    /// upserts stay within `follow_limit`.
    async fn apply_changes(
        &mut self,
        tx: &mut Tx,
        changes: Vec<RowChange>,
        follow_limit: i64,
        max_vars: usize,
    ) -> Result<(), DbError> {
        let plan = self.plan.clone();
        let (target, columns) = (&plan.live, &plan.columns);
        let (upserts, deletes) = last_change_per_key(&plan, changes);
        self.stats.upserted += upserts.len() as i64;
        if self.stats.upserted > follow_limit {
            self.inserted = None;
        }
        if let Some(inserted) = self.inserted {
            let existing = count_existing(tx, target, columns, &upserts, max_vars)
                .await
                .map_err(self.tx_err("counting existing rows"))?;
            self.inserted = Some(inserted + upserts.len() as i64 - existing);
        }
        let max_packet = self.db.max_packet;
        write_rows(tx, target, columns, upserts, max_vars, max_packet, true)
            .await
            .map_err(self.tx_err("upserting rows"))?;
        self.stats.deleted += delete_rows(tx, target, columns, deletes, max_vars)
            .await
            .map_err(self.tx_err("deleting rows"))?;
        Ok(())
    }

    /// MySQL and SQLite: rows travel as bind parameters in multi-row statements.
    async fn run_bound(mut self) -> Result<LoadStats, DbError> {
        let db = self.db.clone();
        let plan = self.plan.clone();
        let dialect = db.dialect();
        // SQLite: one writer at a time in this process, for the whole load.
        let _writer = db.sqlite_guard().await;
        let snapshot = matches!(self.kind, LoadKind::Snapshot { .. });
        let target = if snapshot {
            plan.staging.clone()
        } else {
            plan.live.clone()
        };
        // SQLite keeps the whole load in one transaction (its DDL is transactional). MySQL keeps a
        // change set in one transaction; a snapshot goes into the staging table (invisible until
        // the swap) in one transaction per loading connection (see `ParallelInserts`).
        let mut tx = if snapshot && dialect == Dialect::Mysql {
            let mut statements = dialect.drop_table(Some(&plan.schema), &plan.staging, &db.ddl);
            statements.push(Statement {
                sql: format!("DROP TABLE IF EXISTS {}", plan.live.retired().qualified()),
                own_transaction: true,
            });
            statements.extend(dialect.create_table(&plan.schema, &plan.staging, &db.ddl));
            db.execute_statements(&statements, "creating the staging table")
                .await?;
            db.begin().await?
        } else if snapshot {
            let mut tx = db.begin().await?;
            let mut statements = dialect.drop_table(Some(&plan.schema), &plan.staging, &db.ddl);
            statements.extend(dialect.create_table(&plan.schema, &plan.staging, &db.ddl));
            for statement in &statements {
                tx.execute_raw(&statement.sql)
                    .await
                    .map_err(self.tx_err("creating the staging table"))?;
            }
            tx
        } else {
            db.begin().await?
        };
        let max_vars = if dialect == Dialect::Mysql {
            MYSQL_MAX_VARS
        } else {
            SQLITE_MAX_VARS
        };
        // Upserts whose keys are looked up to follow the row count; beyond that, one count of the
        // table at the end costs less.
        let follow_limit = match self.kind {
            LoadKind::Incremental => previous_row_count(&mut tx, &plan)
                .await?
                .map_or(0, |rows| (rows / FOLLOWED_FRACTION).max(FOLLOWED_MIN)),
            LoadKind::Snapshot { .. } => 0,
        };
        // A SQLite snapshot not known to repeat keys inserts plainly: a repeated key then fails
        // the load, which is loaded again in the job's order (see `Engine::snapshot`), instead
        // of keeping whichever version arrived last.
        let upsert = !matches!(
            (self.kind, dialect),
            (
                LoadKind::Snapshot {
                    repeated_keys: false
                },
                Dialect::Sqlite
            )
        );
        let mut pending: Vec<Row> = Vec::new();
        let mut pending_changes: Vec<RowChange> = Vec::new();
        // A MySQL snapshot's rows go in over connections of their own (see `ParallelInserts`).
        let mut parallel = if snapshot && dialect == Dialect::Mysql {
            ParallelInserts::start(&db, &plan, MYSQL_SNAPSHOT_CONNECTIONS).await?
        } else {
            None
        };
        let (commit, done) = loop {
            let Some(msg) = self.receiver.recv().await else {
                return Err(aborted());
            };
            match msg {
                Msg::Rows(rows) => {
                    self.stats.upserted += rows.len() as i64;
                    pending.extend(rows);
                    if let Some(parallel) = &mut parallel {
                        parallel.push(std::mem::take(&mut pending)).await?;
                    } else if pending.len() >= STATEMENT_ROWS {
                        // Full statements only: the decode batches are smaller than a statement.
                        write_rows(
                            &mut tx,
                            &target,
                            &plan.columns,
                            std::mem::take(&mut pending),
                            max_vars,
                            db.max_packet,
                            upsert,
                        )
                        .await
                        .map_err(self.tx_err("inserting rows"))?;
                    }
                }
                Msg::Changes(changes) => {
                    // Applied in groups of full statements, like rows.
                    pending_changes.extend(changes);
                    if pending_changes.len() >= STATEMENT_ROWS {
                        let changes = std::mem::take(&mut pending_changes);
                        self.apply_changes(&mut tx, changes, follow_limit, max_vars)
                            .await?;
                    }
                }
                Msg::Rejects(rejects) => {
                    self.stats.rejected += rejects.len() as i64;
                    insert_rejects(&mut tx, self.run_id, &plan, &rejects).await?;
                }
                Msg::Commit(commit, done) => break (commit, done),
            }
        };
        match parallel {
            Some(parallel) => parallel.finish().await?,
            None => write_rows(
                &mut tx,
                &target,
                &plan.columns,
                pending,
                max_vars,
                db.max_packet,
                upsert,
            )
            .await
            .map_err(self.tx_err("inserting rows"))?,
        }
        self.apply_changes(&mut tx, pending_changes, follow_limit, max_vars)
            .await?;
        crate::failpoint::hit("load.before_commit");
        match (self.kind, dialect) {
            (LoadKind::Snapshot { .. }, Dialect::Mysql) => {
                tx.commit()
                    .await
                    .map_err(self.tx_err("committing the last batch"))?;
                let counted = db
                    .fetch(
                        &sql::count_rows(&plan.staging),
                        &[],
                        &[Kind::Int],
                        "counting rows",
                    )
                    .await?;
                let rows = counted.first().and_then(|r| r[0].int()).unwrap_or_default();
                let pending = PendingSwap {
                    run_id: self.run_id,
                    watermark: commit.watermark,
                    schema_version: plan.schema.version,
                    schema_description: plan.schema.description_json().to_string(),
                    rows,
                    job_id: Some(commit.job_id.clone()),
                    upserted: self.stats.upserted,
                    rejected: self.stats.rejected,
                    bytes: commit.bytes,
                };
                db.set_pending_swap(&plan, Some(&pending)).await?;
                crate::failpoint::hit("mysql.snapshot.before_swap");
                db.mysql_swap(&plan, &pending).await?;
                self.stats.row_count = rows;
            }
            (LoadKind::Snapshot { .. }, _) => {
                self.swap_in(&mut tx, &commit).await?;
                self.finish(tx, &commit).await?;
            }
            (LoadKind::Incremental, _) => self.finish(tx, &commit).await?,
        }
        let _ = done.send(());
        Ok(self.stats)
    }
}

/// MySQL snapshot rows loaded over several connections at once. One connection's server thread
/// is what bounds MariaDB's pace; a second one uses the rest of the machine. Rows are spread by
/// key (blocks of the first key column's integers, a hash otherwise), so that a key repeated in
/// the snapshot always goes to the same connection, in order: the last version wins as with one
/// connection, and two connections never wait on each other's rows. Each connection loads its
/// share in one transaction, committed at the end; the staging table is invisible until the
/// swap either way.
struct ParallelInserts {
    plan: Arc<TablePlan>,
    /// Per connection: rows gathered for its next statement, and where to send them.
    pending: Vec<Vec<Row>>,
    statement_rows: usize,
    senders: Vec<mpsc::Sender<Vec<Row>>>,
    tasks: tokio::task::JoinSet<Result<(), DbError>>,
}

impl ParallelInserts {
    /// Up to `connections` connections that the pool has at hand, and never one it would have
    /// to wait for (other tables' loads may hold the rest); `None` without any.
    async fn start(
        db: &Db,
        plan: &Arc<TablePlan>,
        connections: usize,
    ) -> Result<Option<Self>, DbError> {
        let mut senders = Vec::with_capacity(connections);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..connections {
            let Some(mut tx) = db.try_begin_mysql().await? else {
                break;
            };
            // One statement waiting while one runs: as few rows in flight as with one connection.
            let (sender, mut receiver) = mpsc::channel::<Vec<Row>>(1);
            let (max_packet, plan) = (db.max_packet, plan.clone());
            tasks.spawn(async move {
                let context = |what: &str| DbError::sql(format!("{what} ({})", plan.label()));
                while let Some(rows) = receiver.recv().await {
                    let (table, columns) = (&plan.staging, &plan.columns);
                    write_rows(
                        &mut tx,
                        table,
                        columns,
                        rows,
                        MYSQL_MAX_VARS,
                        max_packet,
                        true,
                    )
                    .await
                    .map_err(context("inserting rows"))?;
                }
                tx.commit().await.map_err(context("committing the rows"))
            });
            senders.push(sender);
        }
        if senders.is_empty() {
            return Ok(None);
        }
        let connections = senders.len();
        Ok(Some(Self {
            plan: plan.clone(),
            pending: vec![Vec::new(); connections],
            statement_rows: rows_per_statement(MYSQL_MAX_VARS, plan.columns.names.len()),
            senders,
            tasks,
        }))
    }

    /// Adds rows; a connection whose statement is full gets it (waiting while it is busy).
    async fn push(&mut self, rows: Vec<Row>) -> Result<(), DbError> {
        let connections = self.senders.len() as u64;
        for row in rows {
            // Blocks of consecutive integer keys stay together: B-trees fill far better with
            // each connection appending runs of keys than with keys alternating between them.
            let spread = match row.first() {
                Some(Cell::Int(id)) => (*id / 1024) as u64,
                _ => crate::hash::fnv1a(self.plan.key_text(&row).as_bytes()),
            };
            let i = (spread % connections) as usize;
            self.pending[i].push(row);
            if self.pending[i].len() >= self.statement_rows {
                self.send(i).await?;
            }
        }
        Ok(())
    }

    async fn send(&mut self, i: usize) -> Result<(), DbError> {
        let rows = std::mem::take(&mut self.pending[i]);
        if rows.is_empty() || self.senders[i].send(rows).await.is_ok() {
            return Ok(());
        }
        // That connection's task ended early: its error says why.
        self.senders.clear();
        Err(self.join().await.err().unwrap_or_else(|| {
            DbError::sql("loading the staging table")(sqlx::Error::WorkerCrashed)
        }))
    }

    /// Sends the last rows and waits until every connection has written and committed its own.
    async fn finish(mut self) -> Result<(), DbError> {
        for i in 0..self.senders.len() {
            self.send(i).await?;
        }
        self.senders.clear();
        self.join().await
    }

    async fn join(&mut self) -> Result<(), DbError> {
        while let Some(result) = self.tasks.join_next().await {
            result.map_err(|_| {
                DbError::sql("loading the staging table")(sqlx::Error::WorkerCrashed)
            })??;
        }
        Ok(())
    }
}

/// Keeps the last change of every key (later lines win), split into upsert rows and delete keys.
fn last_change_per_key(plan: &TablePlan, changes: Vec<RowChange>) -> (Vec<Row>, Vec<Row>) {
    let mut latest: HashMap<String, usize> = HashMap::with_capacity(changes.len());
    for (i, change) in changes.iter().enumerate() {
        latest.insert(plan.key_text(&change.row), i);
    }
    let mut upserts = Vec::new();
    let mut deletes = Vec::new();
    for (i, change) in changes.into_iter().enumerate() {
        if latest.get(&plan.key_text(&change.row)) != Some(&i) {
            continue;
        }
        if change.delete {
            deletes.push(change.row.into_iter().take(plan.columns.key_len).collect());
        } else {
            upserts.push(change.row);
        }
    }
    (upserts, deletes)
}

/// Approximate bytes a cell takes in a MySQL packet.
fn cell_size(cell: &Cell) -> usize {
    match cell {
        Cell::Text(t) | Cell::Json(t) => t.len() + 9,
        Cell::Array(items) => items.iter().map(cell_size).sum::<usize>() + 9,
        _ => 17,
    }
}

/// Rows per multi-row statement of `width` columns: as many as the placeholder limit allows, up
/// to [`MAX_STATEMENT_ROWS`].
fn rows_per_statement(max_vars: usize, width: usize) -> usize {
    (max_vars / width.max(1)).clamp(1, MAX_STATEMENT_ROWS)
}

/// Multi-row inserts (with `upsert`, rows whose key exists replace it), as many rows per
/// statement as the placeholder limit and packet size allow.
///
/// The next statement's arguments are encoded while the server executes the current one, so
/// that neither side waits for the other.
async fn write_rows(
    tx: &mut Tx,
    target: &TableNames,
    columns: &LoadColumns,
    rows: Vec<Row>,
    max_vars: usize,
    max_packet: usize,
    upsert: bool,
) -> Result<(), sqlx::Error> {
    let max_rows = rows_per_statement(max_vars, columns.names.len());
    let byte_budget = max_packet / 2;
    let mut chunks: Vec<Vec<Row>> = vec![Vec::new()];
    let mut chunk_bytes = 0;
    for row in rows {
        chunk_bytes += row.iter().map(cell_size).sum::<usize>();
        let chunk = chunks.last_mut().expect("never empty");
        chunk.push(row);
        if chunk.len() >= max_rows || chunk_bytes >= byte_budget {
            chunks.push(Vec::new());
            chunk_bytes = 0;
        }
    }
    let dialect = tx.dialect();
    let statement = |chunk: Vec<Row>| {
        let full = chunk.len() == max_rows;
        let sql = sql::insert_rows(target, columns, chunk.len(), upsert);
        BoundArgs::new(dialect, chunk.into_iter().flatten()).map(|args| (sql, args, full))
    };
    let mut current: Option<(String, BoundArgs, bool)> = None;
    for chunk in chunks.into_iter().filter(|c| !c.is_empty()) {
        current = Some(match current.take() {
            Some((sql, args, full)) => {
                let (done, next) =
                    tokio::join!(args.execute(tx, &sql, full), async { statement(chunk) });
                done?;
                next?
            }
            None => statement(chunk)?,
        });
    }
    if let Some((sql, args, full)) = current {
        args.execute(tx, &sql, full).await?;
    }
    Ok(())
}

/// How many of the rows' keys exist in the table already (the rows have distinct keys).
async fn count_existing(
    tx: &mut Tx,
    target: &TableNames,
    columns: &LoadColumns,
    rows: &[Row],
    max_vars: usize,
) -> Result<i64, sqlx::Error> {
    let per_statement = rows_per_statement(max_vars, columns.key_len);
    let mut existing = 0;
    for chunk in rows.chunks(per_statement) {
        let sql = sql::count_keys(target, columns, chunk.len());
        let keys = chunk
            .iter()
            .flat_map(|row| row.iter().take(columns.key_len).cloned());
        let args = BoundArgs::new(tx.dialect(), keys)?;
        existing += args.count(tx, &sql, chunk.len() == per_statement).await?;
    }
    Ok(existing)
}

/// The row count dapsync stored for the table, if any.
/// `None` when unknown, or when another client (`dap syncdb`) synced the table since dapsync
/// did: the count dapsync followed no longer holds then.
async fn previous_row_count(tx: &mut Tx, plan: &TablePlan) -> Result<Option<i64>, DbError> {
    let d = tx.dialect();
    let sql = format!(
        "SELECT s.row_count, s.watermark, t.{} FROM {} s JOIN {} t \
         ON t.source_namespace = s.namespace AND t.source_table = s.table_name \
         WHERE s.namespace = ? AND s.table_name = ?",
        d.quote_ident("timestamp"),
        d.own_table("table_state"),
        d.table_sync_name()
    );
    let args = [
        Arg::Text(Some(plan.schema.namespace.clone())),
        Arg::Text(Some(plan.schema.table.clone())),
    ];
    let rows = tx
        .fetch(&sql, &args, &[Kind::Int, Kind::Time, Kind::Naive])
        .await
        .map_err(DbError::sql("reading the row count"))?;
    Ok(rows.first().and_then(|r| match (r[1].time(), r[2].time()) {
        (Some(watermark), Some(stamp)) if synced_last(d, watermark, stamp) => r[0].int(),
        _ => None,
    }))
}

/// Batched deletes by key; returns the rows deleted.
async fn delete_rows(
    tx: &mut Tx,
    target: &TableNames,
    columns: &LoadColumns,
    keys: Vec<Row>,
    max_vars: usize,
) -> Result<i64, sqlx::Error> {
    let per_statement = rows_per_statement(max_vars, columns.key_len);
    let mut deleted = 0;
    for chunk in keys.chunks(per_statement) {
        let sql = sql::delete_keys(target, columns, chunk.len());
        let full = chunk.len() == per_statement;
        deleted += execute_bound(tx, &sql, chunk.iter().flatten().cloned(), full).await? as i64;
    }
    Ok(deleted)
}

/// Runs a statement with cells as bind parameters (see [`BoundArgs::execute`]).
async fn execute_bound(
    tx: &mut Tx,
    sql: &str,
    cells: impl Iterator<Item = Cell>,
    persistent: bool,
) -> Result<u64, sqlx::Error> {
    BoundArgs::new(tx.dialect(), cells)?
        .execute(tx, sql, persistent)
        .await
}

/// Bind parameters, encoded ahead of their statement.
enum BoundArgs {
    Mysql(MySqlArguments),
    Sqlite(SqliteArguments),
}

impl BoundArgs {
    fn new(dialect: Dialect, cells: impl Iterator<Item = Cell>) -> Result<Self, sqlx::Error> {
        let encode = sqlx::Error::Encode;
        Ok(match dialect {
            Dialect::Mysql => {
                let mut args = MySqlArguments::default();
                for cell in cells {
                    bind_mysql(&mut args, cell).map_err(encode)?;
                }
                BoundArgs::Mysql(args)
            }
            Dialect::Sqlite => {
                let mut args = SqliteArguments::default();
                for cell in cells {
                    bind_sqlite(&mut args, cell).map_err(encode)?;
                }
                BoundArgs::Sqlite(args)
            }
            Dialect::Postgres => unreachable!("PostgreSQL loads with COPY"),
        })
    }

    /// Runs a `SELECT count(*)` with these arguments.
    async fn count(self, tx: &mut Tx, sql: &str, persistent: bool) -> Result<i64, sqlx::Error> {
        let sql = AssertSqlSafe(sql.to_owned());
        match (self, tx) {
            (BoundArgs::Mysql(args), Tx::Mysql(tx)) => {
                sqlx::query_scalar_with(sql, args)
                    .persistent(persistent)
                    .fetch_one(&mut **tx)
                    .await
            }
            (BoundArgs::Sqlite(args), Tx::Sqlite(tx)) => {
                sqlx::query_scalar_with(sql, args)
                    .persistent(persistent)
                    .fetch_one(&mut **tx)
                    .await
            }
            _ => unreachable!("arguments are encoded for their transaction's dialect"),
        }
    }

    /// Runs `sql` with these arguments; returns the rows affected. Only `persistent` statements
    /// stay prepared on the connection: multi-row statements for odd-sized remainders would
    /// otherwise fill the statement cache with large, never reused statements.
    async fn execute(self, tx: &mut Tx, sql: &str, persistent: bool) -> Result<u64, sqlx::Error> {
        let sql = AssertSqlSafe(sql.to_owned());
        Ok(match (self, tx) {
            (BoundArgs::Mysql(args), Tx::Mysql(tx)) => sqlx::query_with(sql, args)
                .persistent(persistent)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
            (BoundArgs::Sqlite(args), Tx::Sqlite(tx)) => sqlx::query_with(sql, args)
                .persistent(persistent)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
            _ => unreachable!("arguments are encoded for their transaction's dialect"),
        })
    }
}

type BindResult = Result<(), sqlx::error::BoxDynError>;

fn bind_mysql(args: &mut MySqlArguments, cell: Cell) -> BindResult {
    match cell {
        Cell::Null => args.add(None::<i64>),
        Cell::Int(i) => args.add(i),
        Cell::Float(f) => args.add(f),
        Cell::Bool(b) => args.add(b),
        Cell::Text(t) | Cell::Json(t) => args.add(t),
        Cell::Timestamp(ts) => args.add(ts),
        Cell::Date(d) => args.add(d),
        Cell::Uuid(u) => args.add(u.as_bytes().to_vec()),
        Cell::PackedIp(bytes) => args.add(bytes.to_vec()),
        Cell::Array(_) => Err("arrays are stored as JSON on MySQL".into()),
    }
}

fn bind_sqlite(args: &mut SqliteArguments, cell: Cell) -> BindResult {
    match cell {
        Cell::Null => args.add(None::<i64>),
        Cell::Int(i) => args.add(i),
        Cell::Float(f) => args.add(f),
        Cell::Bool(b) => args.add(i64::from(b)),
        Cell::Text(t) | Cell::Json(t) => args.add(t),
        other @ (Cell::Timestamp(_) | Cell::Date(_) | Cell::Uuid(_) | Cell::PackedIp(_)) => {
            args.add(other.sqlite_text())
        }
        Cell::Array(_) => Err("arrays are stored as JSON on SQLite".into()),
    }
}

impl Db {
    /// Drops a replicated table (and its enum types, staging leftovers) and forgets its control
    /// rows. `schema` (from `table_sync`) names the enum types to drop on PostgreSQL.
    pub async fn drop_replica(
        &self,
        id: &TableId,
        schema: Option<&TableSchema>,
    ) -> Result<(), DbError> {
        let (namespace, table) = (id.namespace.as_str(), id.table.as_str());
        let d = self.dialect();
        let live = TableNames::live(d, namespace, table);
        let staging = TableNames::staging(d, namespace, table);
        let mut statements = d.drop_table(schema, &live, &self.ddl);
        statements.extend(d.drop_table(schema, &staging, &self.ddl));
        if d == Dialect::Mysql {
            statements.push(Statement {
                sql: format!("DROP TABLE IF EXISTS {}", live.retired().qualified()),
                own_transaction: true,
            });
        }
        self.apply_statements(&statements, &format!("dropping {namespace}.{table}"))
            .await?;
        self.forget_table(id).await
    }
}
