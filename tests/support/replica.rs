//! Engines configured by the test, and the replica's rows as the tests look at them.

use dapsync::config::Config;
use dapsync::db::TablePlan;
use dapsync::fake::{FakeDap, FakeDapConfig, FakeTable};
use dapsync::schema::TableSchema;
use dapsync::sql::{LiveColumn, TableNames};
use dapsync::sync::{Engine, ProgressMode};
use serde_json::Value;
use sqlx::{Connection, Executor, PgConnection};

use super::TestDb;

/// A fake DAP server serving `tables` and no other.
pub async fn fake_of(tables: Vec<FakeTable>) -> FakeDap {
    let config = FakeDapConfig {
        tables,
        fixture_rows: None,
        rows_per_object: 7,
        ..FakeDapConfig::default()
    };
    FakeDap::start(config).await.unwrap()
}

/// An engine wired as [`super::engine`] wires it, after `configure` has changed the
/// configuration (enum mode, dropped columns, ...).
pub async fn engine_with(
    fake: &FakeDap,
    db: &TestDb,
    configure: impl FnOnce(&mut Config),
) -> Engine {
    let mut config = super::config(fake, db);
    configure(&mut config);
    dapsync::app::engine(&config, ProgressMode::Quiet)
        .await
        .unwrap()
}

/// The replica's rows of `schema`'s table, read with `schema`'s columns (which may be an older or
/// newer version than the one the engine last applied).
pub async fn dump(engine: &Engine, schema: &TableSchema) -> Vec<Value> {
    let plan = TablePlan::new(engine.db().dialect(), schema.clone());
    engine.db().dump_rows(&plan).await.unwrap()
}

/// A column's value in a canonical row (`{"key": .., "value": ..}`); `None` for NULL.
pub fn cell<'a>(row: &'a Value, column: &str) -> Option<&'a Value> {
    row["key"]
        .get(column)
        .or_else(|| row["value"].get(column))
        .filter(|v| !v.is_null())
}

/// The live table's column of this name, as the database reports it.
pub async fn live_column(
    engine: &Engine,
    namespace: &str,
    table: &str,
    name: &str,
) -> Option<LiveColumn> {
    let names = TableNames::live(engine.db().dialect(), namespace, table);
    let columns = engine.db().live_columns(&names).await.unwrap();
    columns.into_iter().find(|c| c.name == names.column(name))
}

/// The first column of the first row of a PostgreSQL query, as a number.
pub async fn pg_count(db: &TestDb, sql: &str) -> i64 {
    let mut connection = PgConnection::connect(db.url.expose()).await.unwrap();
    let (count,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut connection)
        .await
        .unwrap();
    count
}

/// Runs a PostgreSQL statement that must fail, and returns its SQLSTATE.
pub async fn pg_error_code(db: &TestDb, sql: &str) -> String {
    let mut connection = PgConnection::connect(db.url.expose()).await.unwrap();
    let error = connection
        .execute(sqlx::AssertSqlSafe(sql.to_owned()))
        .await
        .unwrap_err();
    error
        .as_database_error()
        .and_then(|e| e.code())
        .unwrap_or_default()
        .into_owned()
}
