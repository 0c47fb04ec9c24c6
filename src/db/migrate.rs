//! Migrations of the control tables, embedded from `migrations/<dialect>/`. They run at start-up,
//! under a database-wide lock so that two processes starting together apply each one once.

use sqlx::{AssertSqlSafe, Connection, Executor};

use super::{Db, DbError, Pool};
use crate::sql::Dialect;

struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

/// The migrations, one list for every dialect: each is `migrations/<dialect>/<file>_<name>.sql`.
macro_rules! migrations {
    ($($version:literal $file:literal $name:literal;)*) => {
        const POSTGRES: &[Migration] = &[$(Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../../migrations/postgres/", $file, "_", $name, ".sql")),
        }),*];
        const MYSQL: &[Migration] = &[$(Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../../migrations/mysql/", $file, "_", $name, ".sql")),
        }),*];
        const SQLITE: &[Migration] = &[$(Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../../migrations/sqlite/", $file, "_", $name, ".sql")),
        }),*];
    };
}

migrations! {
    1 "0001" "control_tables";
    2 "0002" "run_warnings";
    3 "0003" "live_schema";
    4 "0004" "control_api";
}

/// A constant key for PostgreSQL's advisory lock ("dapsync" in ASCII).
const PG_LOCK_KEY: i64 = 0x64_61_70_73_79_6e_63;

impl Db {
    /// Applies every migration not applied yet. Safe to call from several processes at once.
    pub async fn migrate(&self) -> Result<(), DbError> {
        let err = |what: &str| DbError::sql(format!("migrating the control tables: {what}"));
        match &self.pool {
            Pool::Postgres(pool) => {
                let mut conn = pool.acquire().await.map_err(err("connecting"))?;
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(PG_LOCK_KEY)
                    .execute(&mut *conn)
                    .await
                    .map_err(err("locking"))?;
                let result = async {
                    conn.execute(
                        "CREATE SCHEMA IF NOT EXISTS dapsync; \
                         CREATE TABLE IF NOT EXISTS dapsync.schema_migrations (version bigint PRIMARY KEY, name text NOT NULL, \
                         applied_at timestamp with time zone NOT NULL DEFAULT now())",
                    )
                    .await
                    .map_err(err("creating dapsync.schema_migrations"))?;
                    let applied: Vec<(i64,)> = sqlx::query_as("SELECT version FROM dapsync.schema_migrations")
                        .fetch_all(&mut *conn)
                        .await
                        .map_err(err("reading applied migrations"))?;
                    for migration in pending(POSTGRES, &applied) {
                        let mut tx = conn.begin().await.map_err(err(migration.name))?;
                        tx.execute(AssertSqlSafe(migration.sql)).await.map_err(err(migration.name))?;
                        sqlx::query("INSERT INTO dapsync.schema_migrations (version, name) VALUES ($1, $2)")
                            .bind(migration.version)
                            .bind(migration.name)
                            .execute(&mut *tx)
                            .await
                            .map_err(err(migration.name))?;
                        tx.commit().await.map_err(err(migration.name))?;
                        tracing::info!(version = migration.version, name = migration.name, "migration applied");
                    }
                    Ok(())
                }
                .await;
                let unlock = sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(PG_LOCK_KEY)
                    .execute(&mut *conn)
                    .await;
                result.and(unlock.map(drop).map_err(err("unlocking")))
            }
            Pool::Mysql(pool) => {
                let mut conn = pool.acquire().await.map_err(err("connecting"))?;
                let locked: (Option<i64>,) = sqlx::query_as(
                    "SELECT GET_LOCK(CONCAT('dapsync.migrate:', SHA1(DATABASE())), 600)",
                )
                .fetch_one(&mut *conn)
                .await
                .map_err(err("locking"))?;
                if locked.0 != Some(1) {
                    return Err(DbError::MigrationLocked);
                }
                let result = async {
                    conn.execute(
                        "CREATE TABLE IF NOT EXISTS dapsync__schema_migrations (version bigint PRIMARY KEY, name varchar(255) NOT NULL, \
                         applied_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB",
                    )
                    .await
                    .map_err(err("creating dapsync__schema_migrations"))?;
                    let applied: Vec<(i64,)> = sqlx::query_as("SELECT version FROM dapsync__schema_migrations")
                        .fetch_all(&mut *conn)
                        .await
                        .map_err(err("reading applied migrations"))?;
                    for migration in pending(MYSQL, &applied) {
                        // MySQL commits DDL implicitly: every statement is written to be re-run
                        // safely after a crash in the middle.
                        for statement in split_statements(migration.sql) {
                            conn.execute(AssertSqlSafe(statement)).await.map_err(err(migration.name))?;
                        }
                        sqlx::query("INSERT INTO dapsync__schema_migrations (version, name) VALUES (?, ?)")
                            .bind(migration.version)
                            .bind(migration.name)
                            .execute(&mut *conn)
                            .await
                            .map_err(err(migration.name))?;
                        tracing::info!(version = migration.version, name = migration.name, "migration applied");
                    }
                    Ok(())
                }
                .await;
                let unlock = sqlx::query(
                    "SELECT RELEASE_LOCK(CONCAT('dapsync.migrate:', SHA1(DATABASE())))",
                )
                .execute(&mut *conn)
                .await;
                result.and(unlock.map(drop).map_err(err("unlocking")))
            }
            Pool::Sqlite(pool) => {
                // Up to date: nothing to write, so no wait for the write lock, which a daemon's
                // long load may hold (a `dapsync cancel` from the shell must get through).
                let applied: Result<Vec<(i64,)>, _> =
                    sqlx::query_as("SELECT version FROM dapsync__schema_migrations")
                        .fetch_all(pool)
                        .await;
                if applied.is_ok_and(|applied| pending(SQLITE, &applied).is_empty()) {
                    return Ok(());
                }
                let _writer = self.sqlite_writer.lock().await;
                let mut conn = pool.acquire().await.map_err(err("connecting"))?;
                // One write transaction: SQLite serializes writers, and its DDL is transactional.
                let mut tx = conn
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(err("locking"))?;
                tx.execute(
                    "CREATE TABLE IF NOT EXISTS dapsync__schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, \
                     applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')))",
                )
                .await
                .map_err(err("creating dapsync__schema_migrations"))?;
                let applied: Vec<(i64,)> =
                    sqlx::query_as("SELECT version FROM dapsync__schema_migrations")
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(err("reading applied migrations"))?;
                for migration in pending(SQLITE, &applied) {
                    tx.execute(AssertSqlSafe(migration.sql))
                        .await
                        .map_err(err(migration.name))?;
                    sqlx::query(
                        "INSERT INTO dapsync__schema_migrations (version, name) VALUES (?, ?)",
                    )
                    .bind(migration.version)
                    .bind(migration.name)
                    .execute(&mut *tx)
                    .await
                    .map_err(err(migration.name))?;
                    tracing::info!(
                        version = migration.version,
                        name = migration.name,
                        "migration applied"
                    );
                }
                tx.commit().await.map_err(err("committing"))
            }
        }
    }
}

impl Db {
    /// Whether dapsync's migrations were applied here (read only: creates nothing).
    pub async fn is_migrated(&self) -> Result<bool, DbError> {
        let dialect = self.dialect();
        let (schema, table) = match dialect {
            Dialect::Postgres => (Some("dapsync".to_owned()), "schema_migrations"),
            Dialect::Mysql | Dialect::Sqlite => (None, "dapsync__schema_migrations"),
        };
        let names = crate::sql::TableNames {
            dialect,
            schema,
            table: table.to_owned(),
            primary_key: String::new(),
        };
        self.table_exists(&names).await
    }
}

/// The migrations whose version is not among the applied ones.
fn pending(all: &'static [Migration], applied: &[(i64,)]) -> Vec<&'static Migration> {
    all.iter()
        .filter(|m| !applied.iter().any(|(v,)| *v == m.version))
        .collect()
}

/// Splits a migration file into statements at `;` line ends (our files keep `;` out of strings).
fn split_statements(sql: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        if line.trim_start().starts_with("--") {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if line.trim_end().ends_with(';') {
            statements.push(std::mem::take(&mut current));
        }
    }
    if !current.trim().is_empty() {
        statements.push(current);
    }
    statements
}

impl Dialect {
    /// The name of the official client's table of synced tables in this dialect.
    pub fn table_sync_name(self) -> &'static str {
        match self {
            Dialect::Postgres => "instructure_dap.table_sync",
            Dialect::Mysql | Dialect::Sqlite => "instructure_dap__table_sync",
        }
    }

    /// The name of one of dapsync's own tables (`table_state`, `runs`, `rejects`).
    pub fn own_table(self, name: &str) -> String {
        match self {
            Dialect::Postgres => format!("dapsync.{name}"),
            Dialect::Mysql | Dialect::Sqlite => format!("dapsync__{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_files_split_into_statements() {
        let statements = split_statements(MYSQL[0].sql);
        assert!(statements.len() >= 6, "{statements:?}");
        assert!(statements.iter().all(|s| s.trim_end().ends_with(';')));
    }

    #[test]
    fn every_dialect_has_the_same_migrations() {
        let versions = |m: &[Migration]| m.iter().map(|m| (m.version, m.name)).collect::<Vec<_>>();
        assert_eq!(versions(POSTGRES), versions(MYSQL));
        assert_eq!(versions(POSTGRES), versions(SQLITE));
    }
}
