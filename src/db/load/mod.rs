//! Loading snapshots and change sets, with each database's fast path:
//! - PostgreSQL: `COPY ... FROM STDIN` (text format) into a staging table created in the same
//!   transaction as the swap, so a snapshot is all or nothing; change sets are copied into a
//!   temporary table and applied with one `INSERT ... ON CONFLICT` and one `DELETE ... USING`
//!   (`copy`).
//! - MySQL/MariaDB: multi-row `INSERT ... ON DUPLICATE KEY UPDATE` sized to the placeholder limit and
//!   `max_allowed_packet`, batched deletes. DDL commits implicitly, so a snapshot loads into a staging
//!   table and records a pending swap before the rename: a crash at any point converges (`bound`).
//! - SQLite: multi-row prepared inserts in one write transaction (`bound`).
//!
//! A load is a writer task that owns the connection and its transaction; the caller feeds it
//! batches through a small bounded channel (backpressure keeps memory flat) and ends it with
//! [`Load::commit`]. One loop takes the batches and hands them to the dialect's
//! [`TableWriter`] (the COPY writer or the bound-statement writer); at the commit, the writer
//! applies what it holds and gives the transaction back, and the table's lifecycle (`replica`)
//! swaps a snapshot in. The data, `table_sync`, the table state and the run's outcome commit
//! together. Dropping a [`Load`] rolls everything back.

mod bound;
mod copy;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::control::{Reject, synced_last, write_sync_state};
use super::plan::{Row, TablePlan};
use super::query::{Arg, Kind, Tx};
use super::replica;
use super::runs::{RunResult, finish_run};
use super::{Db, DbError};
use crate::run::RunOutcome;
use crate::schema::TableSchema;
use crate::sql::{self, Dialect};

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
        let loading = Loading {
            db: self.clone(),
            plan,
            run_id,
            kind,
            stats: LoadStats::default(),
            inserted: Some(0),
        };
        let task = tokio::spawn(run(loading, receiver));
        Ok(Load {
            sender: Some(sender),
            task: Some(task),
        })
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

/// What a dialect's writer does with a load's batches. The writer owns the load's transaction
/// until [`TableWriter::finish`] gives it back.
trait TableWriter: Sized {
    /// Snapshot rows (counted by the loop).
    async fn rows(&mut self, load: &mut Loading, rows: Vec<Row>) -> Result<(), DbError>;
    /// Change-set records, in result order.
    async fn changes(&mut self, load: &mut Loading, changes: Vec<RowChange>)
    -> Result<(), DbError>;
    /// Records for the reject table (counted by the loop).
    async fn rejects(&mut self, load: &mut Loading, rejects: Vec<Reject>) -> Result<(), DbError>;
    /// Writes and applies everything sent; returns the transaction to commit it in.
    async fn finish(self, load: &mut Loading) -> Result<Tx, DbError>;
    /// The load was abandoned: rolls back, and returns once nothing of it runs any more.
    async fn abandon(self);
}

/// A load under way: what it loads and what it did so far.
struct Loading {
    db: Db,
    plan: Arc<TablePlan>,
    run_id: i64,
    kind: LoadKind,
    stats: LoadStats,
    /// Incremental loads: rows that were new (the rest of the upserts updated rows), so that
    /// the row count follows without counting the table; `None` once counting the table at the
    /// end is the cheaper way (see `bound::FOLLOWED_FRACTION`).
    inserted: Option<i64>,
}

fn aborted() -> DbError {
    DbError::LoadAbandoned
}

/// The writer task: the dialect's writer fed by the one loop.
async fn run(mut loading: Loading, receiver: mpsc::Receiver<Msg>) -> Result<LoadStats, DbError> {
    let db = loading.db.clone();
    // SQLite: one writer at a time in this process, for the whole load.
    let _writer = db.sqlite_guard().await;
    match db.dialect() {
        Dialect::Postgres => {
            let writer = copy::CopyWriter::start(&mut loading).await?;
            feed(loading, writer, receiver).await
        }
        Dialect::Mysql | Dialect::Sqlite => {
            let writer = bound::BoundWriter::start(&mut loading).await?;
            feed(loading, writer, receiver).await
        }
    }
}

/// The one loop: batches to the writer until the commit, then the commit.
async fn feed<W: TableWriter>(
    mut loading: Loading,
    mut writer: W,
    mut receiver: mpsc::Receiver<Msg>,
) -> Result<LoadStats, DbError> {
    let (commit, done) = loop {
        let Some(msg) = receiver.recv().await else {
            writer.abandon().await;
            return Err(aborted());
        };
        match msg {
            Msg::Rows(rows) => {
                loading.stats.upserted += rows.len() as i64;
                writer.rows(&mut loading, rows).await?;
            }
            Msg::Changes(changes) => writer.changes(&mut loading, changes).await?,
            Msg::Rejects(rejects) => {
                loading.stats.rejected += rejects.len() as i64;
                writer.rejects(&mut loading, rejects).await?;
            }
            Msg::Commit(commit, done) => break (commit, done),
        }
    };
    let tx = writer.finish(&mut loading).await?;
    crate::failpoint::hit("load.before_commit");
    loading.commit(tx, &commit).await?;
    let _ = done.send(());
    Ok(loading.stats)
}

impl Loading {
    fn label(&self) -> String {
        self.plan.label()
    }

    fn tx_err(&self, what: &str) -> impl FnOnce(sqlx::Error) -> DbError + use<> {
        DbError::sql(format!("{what} ({})", self.label()))
    }

    /// Commits the load: a snapshot swapped in for the live table, a change set as it is, with
    /// the sync state and the run's outcome.
    async fn commit(&mut self, mut tx: Tx, commit: &Commit) -> Result<(), DbError> {
        match (self.kind, self.db.dialect()) {
            (LoadKind::Snapshot { .. }, Dialect::Mysql) => {
                let plan = self.plan.clone();
                self.stats.row_count = self
                    .db
                    .swap_in_mysql(tx, &plan, commit, &self.stats)
                    .await?;
                Ok(())
            }
            (LoadKind::Snapshot { .. }, _) => {
                let replaced = commit.replaced_schema.as_ref();
                replica::swap_in(&mut tx, &self.plan, replaced, &self.db.ddl, self.run_id).await?;
                self.finish(tx, commit).await
            }
            (LoadKind::Incremental, _) => self.finish(tx, commit).await,
        }
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
