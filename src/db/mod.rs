//! The database side of dapsync: the only owner of sqlx pools. It runs the migrations, reads and
//! writes the control tables, takes per-table locks, loads snapshots and change sets with each
//! database's fast path, and runs the statements `sql` renders.

mod budget;
mod control;
mod inspect;
mod live;
mod load;
mod lock;
mod migrate;
mod operator;
mod plan;
mod preserve;
mod query;
mod replica;
mod runs;
mod value;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Executor, MySqlPool, PgPool, SqlitePool};

pub use budget::QueryStart;
pub use control::{Reject, SyncState};
pub use inspect::canonical_record;
pub use load::{Commit, Load, LoadStats, RowChange, connections_per_table};
pub use lock::{LockToken, TableLock};
pub use operator::{RunFilter, RunTimes, TableControl};
pub use plan::{Row, TablePlan};
pub use runs::{NewRun, RunError, RunKind, RunRecord, RunResult};
pub use value::{Cell, ColumnCodec, Token, pack_ip, unpack_ip, write_copy_row};

use crate::config::{ConfigError, DatabaseUrl};
pub use crate::run::{ObjectWarning, RunOutcome};
use crate::schema::{SchemaDiff, SchemaError, TableSchema};
use crate::sql::{DdlOptions, Dialect, Statement};
use crate::table::TableId;
pub use crate::table::TableStatus;

/// A database error, with what dapsync was doing.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to {url}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("{context}")]
    Sql {
        context: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(transparent)]
    Url(Box<ConfigError>),
    #[error("table_sync has an incomplete row for {table}")]
    IncompleteSyncState { table: TableId },
    #[error("table_state.pending_swap of {table} is unreadable")]
    UnreadablePendingSwap {
        table: TableId,
        #[source]
        source: serde_json::Error,
    },
    #[error("pending swap of {table} has an unreadable schema")]
    UnreadablePendingSchema {
        table: TableId,
        #[source]
        source: Box<SchemaError>,
    },
    #[error("table_state.live_schema of {table} is unreadable: {reason}")]
    UnreadableLiveSchema { table: TableId, reason: String },
    #[error("the run history returned no id")]
    NoRunId,
    #[error("no dapsync database at {url}: {reason}")]
    NoDatabase { url: String, reason: &'static str },
    #[error("another process holds the migration lock for over 10 minutes")]
    MigrationLocked,
    #[error("the load has already ended")]
    LoadEnded,
    #[error("the load was abandoned before its commit; nothing was applied")]
    LoadAbandoned,
    #[error("the lock of {table} was lost before the commit ({reason}); nothing was committed")]
    LockLost { table: TableId, reason: String },
    #[error("the database writer stopped")]
    WriterStopped,
    #[error("the database writer failed")]
    WriterFailed(#[source] tokio::task::JoinError),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl DbError {
    pub(crate) fn sql(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> DbError {
        let context = context.into();
        move |source| DbError::Sql { context, source }
    }

    /// Whether trying again later may succeed (lost connection, timeout, deadlock, lock wait).
    pub fn is_transient(&self) -> bool {
        let source = match self {
            // A new attempt takes the lock again.
            DbError::Connect { .. } | DbError::LockLost { .. } => return true,
            DbError::Sql { source, .. } => source,
            DbError::Io { .. }
            | DbError::Url(_)
            | DbError::IncompleteSyncState { .. }
            | DbError::UnreadablePendingSwap { .. }
            | DbError::UnreadablePendingSchema { .. }
            | DbError::UnreadableLiveSchema { .. }
            | DbError::NoRunId
            | DbError::NoDatabase { .. }
            | DbError::MigrationLocked
            | DbError::LoadEnded
            | DbError::LoadAbandoned
            | DbError::WriterStopped
            | DbError::WriterFailed(_) => return false,
        };
        match source {
            // A connection cut in the middle of an exchange (a server restart, a failover)
            // shows as an I/O error, or as a protocol error when it broke a message off.
            sqlx::Error::Io(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => {
                let code = db.code().unwrap_or_default();
                // PostgreSQL serialization failure / deadlock / admin shutdown; MySQL deadlock and
                // lock wait timeout; SQLite busy and locked.
                matches!(
                    code.as_ref(),
                    "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "1213" | "1205" | "5" | "6"
                ) || db.message().contains("Deadlock")
            }
            _ => false,
        }
    }

    /// Whether a unique or primary-key constraint refused a row.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, DbError::Sql { source: sqlx::Error::Database(db), .. } if db.is_unique_violation())
    }
}

/// A pool for one of the supported databases.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Postgres(PgPool),
    Mysql(MySqlPool),
    Sqlite(SqlitePool),
}

/// A connection to the replica database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    pub(crate) pool: Pool,
    pub(crate) ddl: DdlOptions,
    /// SQLite has one writer at a time: table runs in this process take turns instead of timing
    /// out on the database lock.
    pub(crate) sqlite_writer: Arc<tokio::sync::Mutex<()>>,
    /// SQLite: the database file, next to which table lock files live.
    pub(crate) sqlite_path: Option<PathBuf>,
    /// MySQL: the server's `max_allowed_packet`, which bounds multi-row inserts.
    pub(crate) max_packet: usize,
    /// In-memory SQLite: table locks within this process.
    pub(crate) memory_locks: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// The table locks this process holds, whose tokens its loads verify before committing.
    pub(crate) held_locks: lock::HeldLocks,
}

impl Db {
    /// Connects (creating a SQLite file if needed). Does not run migrations.
    pub async fn connect(
        url: &DatabaseUrl,
        max_connections: u32,
        ddl: DdlOptions,
    ) -> Result<Self, DbError> {
        Self::open(url, max_connections, ddl, true).await
    }

    /// Opens a database dapsync has already set up, to read it: a SQLite file is opened
    /// read-only and never created, and nothing is migrated. An error when the database (or
    /// its control tables) is not there.
    pub async fn open_existing(url: &DatabaseUrl, ddl: DdlOptions) -> Result<Self, DbError> {
        let db = Self::open(url, 2, ddl, false).await?;
        if !db.is_migrated().await? {
            db.close().await;
            return Err(DbError::NoDatabase {
                url: url.to_string(),
                reason: "it has no dapsync control tables (nothing was synced into it)",
            });
        }
        Ok(db)
    }

    async fn open(
        url: &DatabaseUrl,
        max_connections: u32,
        ddl: DdlOptions,
        create: bool,
    ) -> Result<Self, DbError> {
        let dialect = url.dialect().map_err(|e| DbError::Url(Box::new(e)))?;
        let connect_err = |source| DbError::Connect {
            url: url.to_string(),
            source,
        };
        let acquire_timeout = Duration::from_secs(60);
        let mut sqlite_path = None;
        let mut max_packet = 4 << 20;
        let pool = match dialect {
            Dialect::Postgres => {
                let options = PgConnectOptions::from_str(url.expose())
                    .map_err(connect_err)?
                    .application_name("dapsync");
                let pool = PgPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(acquire_timeout)
                    .connect_with(options)
                    .await
                    .map_err(connect_err)?;
                Pool::Postgres(pool)
            }
            Dialect::Mysql => {
                let text = url.expose().replacen("mariadb://", "mysql://", 1);
                let options = MySqlConnectOptions::from_str(&text)
                    .map_err(connect_err)?
                    .charset("utf8mb4");
                let pool = MySqlPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(acquire_timeout)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // Timestamps are naive UTC everywhere; strict mode refuses bad values
                            // instead of silently truncating them; READ COMMITTED takes no gap
                            // locks, which deadlock concurrent table runs on the control tables
                            // under REPEATABLE READ (our writes are keyed, so nothing is lost).
                            conn.execute("SET time_zone = '+00:00', sql_mode = CONCAT(@@sql_mode, ',STRICT_ALL_TABLES')")
                                .await?;
                            conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED").await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await
                    .map_err(connect_err)?;
                let packet: (u64,) = sqlx::query_as("SELECT @@max_allowed_packet")
                    .fetch_one(&pool)
                    .await
                    .map_err(DbError::sql("reading max_allowed_packet"))?;
                max_packet = usize::try_from(packet.0).unwrap_or(max_packet);
                Pool::Mysql(pool)
            }
            Dialect::Sqlite => {
                let options = SqliteConnectOptions::from_str(url.expose())
                    .map_err(connect_err)?
                    .create_if_missing(create)
                    .busy_timeout(Duration::from_secs(600));
                let options = match create {
                    true => options
                        .journal_mode(SqliteJournalMode::Wal)
                        .synchronous(SqliteSynchronous::Normal),
                    false => options.read_only(true),
                };
                let filename = options.get_filename();
                let memory = filename == std::path::Path::new(":memory:");
                if !create && !memory && !filename.exists() {
                    return Err(DbError::NoDatabase {
                        url: url.to_string(),
                        reason: "the file does not exist",
                    });
                }
                if filename != std::path::Path::new(":memory:") && !filename.as_os_str().is_empty()
                {
                    sqlite_path = Some(filename.to_path_buf());
                }
                let pool = SqlitePoolOptions::new()
                    .max_connections(max_connections.min(4))
                    .acquire_timeout(acquire_timeout)
                    .connect_with(options)
                    .await
                    .map_err(connect_err)?;
                Pool::Sqlite(pool)
            }
        };
        Ok(Self {
            pool,
            ddl,
            sqlite_writer: Arc::new(tokio::sync::Mutex::new(())),
            sqlite_path,
            max_packet,
            memory_locks: Arc::default(),
            held_locks: Arc::default(),
        })
    }

    /// The kind of database.
    pub fn dialect(&self) -> Dialect {
        match self.pool {
            Pool::Postgres(_) => Dialect::Postgres,
            Pool::Mysql(_) => Dialect::Mysql,
            Pool::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// How `schema`'s table is named and shaped in this database.
    pub fn plan(&self, schema: TableSchema) -> TablePlan {
        TablePlan::new(self.dialect(), schema)
    }

    /// Whether a snapshot loads faster with its objects one after the other, keys in order:
    /// InnoDB's clustered index loads far faster so than with keys interleaved from several
    /// objects, and InnoDB, not decoding, bounds the pace.
    pub fn loads_in_key_order(&self) -> bool {
        self.dialect() == Dialect::Mysql
    }

    /// Schema evolution: brings the live table from `old` to `new` in place with the ALTERs
    /// `diff` needs, in run `run_id`, keeping the user's objects on it, and records that the
    /// live table now has `new` (`table_state.live_schema`).
    pub async fn evolve_table(
        &self,
        old: &TableSchema,
        new: &TableSchema,
        diff: &SchemaDiff,
        run_id: i64,
    ) -> Result<(), DbError> {
        let dialect = self.dialect();
        let plan = self.plan(new.clone());
        let existing = self.live_columns(&plan.live).await?;
        let statements =
            dialect.alter_table(old, new, diff, &plan.live, &existing, &self.ddl_options());
        // preserve (issue 11): the user's views survive the ALTERs. The live table's schema
        // is recorded with them (see `Db::alter_preserving`).
        self.alter_preserving(
            &plan,
            &statements,
            run_id,
            &format!("altering {}", new.id()),
        )
        .await
    }

    /// The DDL choices this database was opened with.
    pub fn ddl_options(&self) -> DdlOptions {
        self.ddl
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.execute_one("SELECT 1", "pinging the database").await
    }

    /// Closes every connection.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Postgres(p) => p.close().await,
            Pool::Mysql(p) => p.close().await,
            Pool::Sqlite(p) => p.close().await,
        }
    }

    /// Runs statements in order, each committed on its own (for DDL that must not share a
    /// transaction, and for MySQL where DDL commits anyway).
    pub async fn execute_statements(
        &self,
        statements: &[Statement],
        context: &str,
    ) -> Result<(), DbError> {
        for statement in statements {
            self.execute_one(&statement.sql, context).await?;
        }
        Ok(())
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
                        tx.execute_raw(&s.sql)
                            .await
                            .map_err(DbError::sql(format!("{context}: {}", first_line(&s.sql))))?;
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

    async fn execute_one(&self, sql: &str, context: &str) -> Result<(), DbError> {
        let query = sqlx::raw_sql(AssertSqlSafe(sql.to_owned()));
        let result = match &self.pool {
            Pool::Postgres(p) => query.execute(p).await.map(drop),
            Pool::Mysql(p) => query.execute(p).await.map(drop),
            Pool::Sqlite(p) => query.execute(p).await.map(drop),
        };
        result.map_err(DbError::sql(format!("{context}: {}", first_line(sql))))
    }
}

/// The first line of a statement, for error messages (statements never carry values).
fn first_line(sql: &str) -> &str {
    let line = sql.lines().next().unwrap_or_default();
    match line.char_indices().nth(160) {
        Some((i, _)) => &line[..i],
        None => line,
    }
}
