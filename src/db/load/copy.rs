//! The COPY writer (PostgreSQL): rows are encoded into COPY's text format and streamed with
//! `COPY ... FROM STDIN` into the staging table, or into a change table (with a sequence number
//! and a delete flag) when later lines must win over earlier ones; the change table is applied
//! at the end with one `INSERT ... ON CONFLICT` and one `DELETE ... USING`.
//!
//! COPY occupies the connection while it runs: a task of its own owns the transaction and the
//! COPY, and the writer hands it chunks of encoded rows. Rejects gather in the writer and are
//! written between two COPYs (the COPY is finished and started again), and at the end.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use std::sync::Arc;

use super::{LoadKind, Loading, RowChange, TableWriter, aborted};
use crate::db::control::{Reject, insert_rejects};
use crate::db::plan::{Row, TablePlan};
use crate::db::query::{Kind, Tx};
use crate::db::value::{Cell, write_copy_row};
use crate::db::{DbError, replica};
use crate::sql::{self, Dialect};

const COPY_CHUNK: usize = 1 << 20;
/// Rejects are written in groups of this size (PostgreSQL interrupts its COPY for them).
const REJECT_FLUSH: usize = 1_000;
/// Chunks on their way to the COPY task.
const CHUNKS_IN_FLIGHT: usize = 1;
const CHANGE_TABLE: &str = "dapsync_changes";

/// What the writer hands the COPY task.
enum Chunk {
    /// Encoded rows.
    Data(Vec<u8>),
    /// Rejects to write between two COPYs.
    Rejects(Vec<Reject>),
    /// The last rejects; the task then gives the transaction back.
    End(Vec<Reject>),
}

pub(super) struct CopyWriter {
    /// Whether rows carry a sequence number and a delete flag (a change table).
    with_seq: bool,
    seq: i64,
    width: usize,
    buffer: Vec<u8>,
    rejects: Vec<Reject>,
    chunks: mpsc::Sender<Chunk>,
    task: JoinHandle<Result<Tx, DbError>>,
}

impl CopyWriter {
    /// Creates the staging or change table in a new transaction and starts the COPY task.
    pub(super) async fn start(load: &mut Loading) -> Result<Self, DbError> {
        let plan = load.plan.clone();
        if let Some(schema) = &plan.staging.schema {
            // Created on its own first: inside the load's transaction, a new schema would make
            // every other table's load in that namespace wait for this one's commit.
            load.db
                .execute_one(
                    &sql::pg_create_schema(schema),
                    "creating the namespace's schema",
                )
                .await?;
        }
        let mut tx = load.db.begin().await?;
        // Where COPY writes: the staging table, or a change table with a sequence number and a
        // delete flag when later lines must win over earlier ones.
        let (copy_target, with_seq) = match load.kind {
            LoadKind::Snapshot { repeated_keys } => {
                for s in &replica::create_staging(&plan, &load.db.ddl) {
                    tx.execute_raw(&s.sql)
                        .await
                        .map_err(load.tx_err("creating the staging table"))?;
                }
                if repeated_keys {
                    for s in sql::pg_create_change_table(CHANGE_TABLE, &plan.staging) {
                        tx.execute_raw(&s)
                            .await
                            .map_err(load.tx_err("creating the change table"))?;
                    }
                    (Dialect::Postgres.quote_ident(CHANGE_TABLE), true)
                } else {
                    (plan.staging.qualified(), false)
                }
            }
            LoadKind::Incremental => {
                for s in sql::pg_create_change_table(CHANGE_TABLE, &plan.live) {
                    tx.execute_raw(&s)
                        .await
                        .map_err(load.tx_err("creating the change table"))?;
                }
                (Dialect::Postgres.quote_ident(CHANGE_TABLE), true)
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
        let (chunks, receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let task = tokio::spawn(copy_task(tx, copy_sql, Task::of(load), receiver));
        Ok(Self {
            with_seq,
            seq: 0,
            width: plan.columns.names.len(),
            buffer: Vec::with_capacity(COPY_CHUNK + (64 << 10)),
            rejects: Vec::new(),
            chunks,
            task,
        })
    }

    async fn send(&mut self, chunk: Chunk) -> Result<(), DbError> {
        if self.chunks.send(chunk).await.is_ok() {
            return Ok(());
        }
        // The COPY task stopped: its error says why.
        match (&mut self.task).await {
            Ok(Err(error)) => Err(error),
            Ok(Ok(_)) => Err(DbError::WriterStopped),
            Err(error) => Err(DbError::WriterFailed(error)),
        }
    }

    /// Hands over the encoded rows once a chunk is full.
    async fn flush_full(&mut self) -> Result<(), DbError> {
        if self.buffer.len() >= COPY_CHUNK {
            let data = std::mem::replace(
                &mut self.buffer,
                Vec::with_capacity(COPY_CHUNK + (64 << 10)),
            );
            self.send(Chunk::Data(data)).await?;
        }
        Ok(())
    }
}

impl TableWriter for CopyWriter {
    async fn rows(&mut self, _load: &mut Loading, rows: Vec<Row>) -> Result<(), DbError> {
        for row in &rows {
            if self.with_seq {
                self.seq += 1;
                write_copy_row(
                    row.iter().chain([&Cell::Int(self.seq), &Cell::Bool(false)]),
                    &mut self.buffer,
                );
            } else {
                write_copy_row(row, &mut self.buffer);
            }
        }
        self.flush_full().await
    }

    async fn changes(
        &mut self,
        _load: &mut Loading,
        changes: Vec<RowChange>,
    ) -> Result<(), DbError> {
        for change in &changes {
            self.seq += 1;
            let padding = self.width.saturating_sub(change.row.len());
            let cells = change
                .row
                .iter()
                .chain(std::iter::repeat_n(&Cell::Null, padding));
            write_copy_row(
                cells.chain([&Cell::Int(self.seq), &Cell::Bool(change.delete)]),
                &mut self.buffer,
            );
        }
        self.flush_full().await
    }

    async fn rejects(&mut self, _load: &mut Loading, rejects: Vec<Reject>) -> Result<(), DbError> {
        self.rejects.extend(rejects);
        self.flush_full().await?;
        if self.rejects.len() >= REJECT_FLUSH {
            let data = std::mem::take(&mut self.buffer);
            self.send(Chunk::Data(data)).await?;
            let rejects = std::mem::take(&mut self.rejects);
            self.send(Chunk::Rejects(rejects)).await?;
        }
        Ok(())
    }

    async fn finish(mut self, load: &mut Loading) -> Result<Tx, DbError> {
        let data = std::mem::take(&mut self.buffer);
        self.send(Chunk::Data(data)).await?;
        let rejects = std::mem::take(&mut self.rejects);
        self.send(Chunk::End(rejects)).await?;
        drop(self.chunks);
        let mut tx = self
            .task
            .await
            .unwrap_or_else(|e| Err(DbError::WriterFailed(e)))?;
        let plan = load.plan.clone();
        match load.kind {
            LoadKind::Snapshot { repeated_keys } => {
                if repeated_keys {
                    let insert = sql::pg_insert_latest(CHANGE_TABLE, &plan.staging, &plan.columns);
                    let inserted = tx
                        .execute(&insert, &[])
                        .await
                        .map_err(load.tx_err("keeping the last of repeated keys"))?;
                    load.stats.upserted = inserted as i64;
                }
            }
            LoadKind::Incremental => {
                let [upsert, delete] =
                    sql::pg_apply_changes(CHANGE_TABLE, &plan.live, &plan.columns);
                // New rows have no xmax yet; updated ones do.
                let counted = format!(
                    "WITH upserted AS ({upsert} RETURNING (xmax = 0) AS inserted) \
                     SELECT count(*), count(*) FILTER (WHERE inserted) FROM upserted"
                );
                let counts = tx
                    .fetch(&counted, &[], &[Kind::Int, Kind::Int])
                    .await
                    .map_err(load.tx_err("applying upserts"))?;
                let count = |i: usize| counts.first().and_then(|r| r[i].int()).unwrap_or_default();
                load.stats.upserted = count(0);
                load.inserted = Some(count(1));
                load.stats.deleted =
                    tx.execute(&delete, &[])
                        .await
                        .map_err(load.tx_err("applying deletes"))? as i64;
            }
        }
        Ok(tx)
    }

    async fn abandon(self) {
        // Closing the channel without its end makes the task abort the COPY and roll back.
        drop(self.chunks);
        let _ = self.task.await;
    }
}

/// What the COPY task needs of the load.
struct Task {
    plan: Arc<TablePlan>,
    run_id: i64,
}

impl Task {
    fn of(load: &Loading) -> Self {
        Self {
            plan: load.plan.clone(),
            run_id: load.run_id,
        }
    }
}

/// Streams the chunks into COPY, finishing it and starting it again around rejects; returns the
/// transaction after the last chunk, or rolls it back when the writer goes away first.
async fn copy_task(
    mut tx: Tx,
    copy_sql: String,
    task: Task,
    mut chunks: mpsc::Receiver<Chunk>,
) -> Result<Tx, DbError> {
    let context = |what: &str| DbError::sql(format!("{what} ({})", task.plan.label()));
    loop {
        let mut copy = tx
            .copy_in(&copy_sql)
            .await
            .map_err(context("starting COPY"))?;
        let (rejects, end) = loop {
            match chunks.recv().await {
                Some(Chunk::Data(data)) => {
                    copy.send(data)
                        .await
                        .map_err(context("sending COPY data"))?;
                }
                Some(Chunk::Rejects(rejects)) => break (rejects, false),
                Some(Chunk::End(rejects)) => break (rejects, true),
                None => {
                    let _ = copy.abort("dapsync abandoned the load").await;
                    return Err(aborted());
                }
            }
        };
        copy.finish().await.map_err(context("finishing COPY"))?;
        insert_rejects(&mut tx, task.run_id, &task.plan, &rejects).await?;
        if end {
            return Ok(tx);
        }
    }
}
