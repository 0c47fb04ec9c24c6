//! The bound-statement writer (MySQL/MariaDB, SQLite): rows travel as bind parameters in
//! multi-row prepared statements, as many rows each as the placeholder limit and MySQL's
//! `max_allowed_packet` allow, the next statement encoded while the server runs the current one.
//! Change sets are applied in groups of full statements (the last change of each key, upserts,
//! then deletes by key); a MySQL snapshot's staging table is written over two connections at
//! once.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::mysql::MySqlArguments;
use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, AssertSqlSafe};
use tokio::sync::mpsc;

use super::previous_row_count;
use super::{LoadKind, Loading, MYSQL_SNAPSHOT_CONNECTIONS, RowChange, TableWriter};
use crate::db::control::{Reject, insert_rejects};
use crate::db::plan::{Row, TablePlan};
use crate::db::query::Tx;
use crate::db::value::Cell;
use crate::db::{Db, DbError, replica};
use crate::sql::{self, Dialect, LoadColumns, TableNames};

/// Rows gathered before multi-row statements are sent.
const STATEMENT_ROWS: usize = 8_000;
/// Rows per multi-row statement, at most (fewer when the placeholder limit or the packet size
/// says so).
const MAX_STATEMENT_ROWS: usize = 1_000;
/// An incremental follows the row count by looking up the keys of its upserts (a lookup costs
/// about as much as counting a few hundred rows, and more in a transaction that has written)
/// until its upserts pass this fraction of the table (1/N), or [`FOLLOWED_MIN`]; then it
/// counts the table once at the end.
const FOLLOWED_FRACTION: i64 = 100;
const FOLLOWED_MIN: i64 = 5_000;
/// Bind parameters per statement, at most.
const MYSQL_MAX_VARS: usize = 65_535;
const SQLITE_MAX_VARS: usize = 32_766;

pub(super) struct BoundWriter {
    tx: Tx,
    /// The staging table (snapshots) or the live table (change sets).
    target: TableNames,
    max_vars: usize,
    /// Upserts whose keys are looked up to follow the row count; beyond that, one count of the
    /// table at the end costs less.
    follow_limit: i64,
    /// Whether rows whose key exists replace it (else a repeated key fails the load).
    upsert: bool,
    pending: Vec<Row>,
    pending_changes: Vec<RowChange>,
    /// A MySQL snapshot's rows go in over connections of their own (see `ParallelInserts`).
    parallel: Option<ParallelInserts>,
}

impl BoundWriter {
    /// Begins the load's transaction, after creating the staging table of a snapshot.
    pub(super) async fn start(load: &mut Loading) -> Result<Self, DbError> {
        let db = load.db.clone();
        let plan = load.plan.clone();
        let dialect = db.dialect();
        let snapshot = matches!(load.kind, LoadKind::Snapshot { .. });
        let target = if snapshot {
            plan.staging.clone()
        } else {
            plan.live.clone()
        };
        // SQLite keeps the whole load in one transaction (its DDL is transactional). MySQL keeps a
        // change set in one transaction; a snapshot goes into the staging table (invisible until
        // the swap) in one transaction per loading connection (see `ParallelInserts`).
        let mut tx = if snapshot && dialect == Dialect::Mysql {
            db.execute_statements(
                &replica::create_staging(&plan, &db.ddl),
                "creating the staging table",
            )
            .await?;
            db.begin().await?
        } else if snapshot {
            let mut tx = db.begin().await?;
            for statement in &replica::create_staging(&plan, &db.ddl) {
                tx.execute_raw(&statement.sql)
                    .await
                    .map_err(load.tx_err("creating the staging table"))?;
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
        let follow_limit = match load.kind {
            LoadKind::Incremental => previous_row_count(&mut tx, &plan)
                .await?
                .map_or(0, |rows| (rows / FOLLOWED_FRACTION).max(FOLLOWED_MIN)),
            LoadKind::Snapshot { .. } => 0,
        };
        // A SQLite snapshot not known to repeat keys inserts plainly: a repeated key then fails
        // the load, which is loaded again in the job's order (see `Engine::snapshot`), instead
        // of keeping whichever version arrived last.
        let upsert = !matches!(
            (load.kind, dialect),
            (
                LoadKind::Snapshot {
                    repeated_keys: false
                },
                Dialect::Sqlite
            )
        );
        let parallel = if snapshot && dialect == Dialect::Mysql {
            ParallelInserts::start(&db, &plan, MYSQL_SNAPSHOT_CONNECTIONS).await?
        } else {
            None
        };
        Ok(Self {
            tx,
            target,
            max_vars,
            follow_limit,
            upsert,
            pending: Vec::new(),
            pending_changes: Vec::new(),
            parallel,
        })
    }

    /// Writes rows to the target in multi-row statements.
    async fn write(&mut self, load: &Loading, rows: Vec<Row>) -> Result<(), DbError> {
        write_rows(
            &mut self.tx,
            &self.target,
            &load.plan.columns,
            rows,
            self.max_vars,
            load.db.max_packet,
            self.upsert,
        )
        .await
        .map_err(load.tx_err("inserting rows"))
    }

    /// Applies a group of changes to the live table: the last change of each key, upserts in
    /// multi-row statements, deletes in batches. Follows the count of new rows while the
    /// upserts stay within `follow_limit`.
    async fn apply_changes(
        &mut self,
        load: &mut Loading,
        changes: Vec<RowChange>,
    ) -> Result<(), DbError> {
        let (tx, follow_limit, max_vars) = (&mut self.tx, self.follow_limit, self.max_vars);
        let plan = load.plan.clone();
        let (target, columns) = (&plan.live, &plan.columns);
        let (upserts, deletes) = last_change_per_key(&plan, changes);
        load.stats.upserted += upserts.len() as i64;
        if load.stats.upserted > follow_limit {
            load.inserted = None;
        }
        if let Some(inserted) = load.inserted {
            let existing = count_existing(tx, target, columns, &upserts, max_vars)
                .await
                .map_err(load.tx_err("counting existing rows"))?;
            load.inserted = Some(inserted + upserts.len() as i64 - existing);
        }
        let max_packet = load.db.max_packet;
        write_rows(tx, target, columns, upserts, max_vars, max_packet, true)
            .await
            .map_err(load.tx_err("upserting rows"))?;
        load.stats.deleted += delete_rows(tx, target, columns, deletes, max_vars)
            .await
            .map_err(load.tx_err("deleting rows"))?;
        Ok(())
    }
}

impl TableWriter for BoundWriter {
    async fn rows(&mut self, load: &mut Loading, rows: Vec<Row>) -> Result<(), DbError> {
        self.pending.extend(rows);
        if let Some(parallel) = &mut self.parallel {
            parallel.push(std::mem::take(&mut self.pending)).await?;
        } else if self.pending.len() >= STATEMENT_ROWS {
            // Full statements only: the decode batches are smaller than a statement.
            let rows = std::mem::take(&mut self.pending);
            self.write(load, rows).await?;
        }
        Ok(())
    }

    async fn changes(
        &mut self,
        load: &mut Loading,
        changes: Vec<RowChange>,
    ) -> Result<(), DbError> {
        // Applied in groups of full statements, like rows.
        self.pending_changes.extend(changes);
        if self.pending_changes.len() >= STATEMENT_ROWS {
            let changes = std::mem::take(&mut self.pending_changes);
            self.apply_changes(load, changes).await?;
        }
        Ok(())
    }

    async fn rejects(&mut self, load: &mut Loading, rejects: Vec<Reject>) -> Result<(), DbError> {
        insert_rejects(&mut self.tx, load.run_id, &load.plan, &rejects).await
    }

    async fn finish(mut self, load: &mut Loading) -> Result<Tx, DbError> {
        match self.parallel.take() {
            Some(parallel) => parallel.finish().await?,
            None => {
                let rows = std::mem::take(&mut self.pending);
                self.write(load, rows).await?;
            }
        }
        let changes = std::mem::take(&mut self.pending_changes);
        self.apply_changes(load, changes).await?;
        Ok(self.tx)
    }

    async fn abandon(self) {
        // Dropping the transaction rolls it back; the parallel connections' tasks are aborted
        // with their set.
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
