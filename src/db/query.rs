//! A small typed query layer over the three databases, for dapsync's own tables: statements are
//! written once with `?` placeholders, arguments and results use a handful of types.

use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::mysql::MySqlArguments;
use sqlx::postgres::PgArguments;
use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, AssertSqlSafe, MySql, Postgres, Row as _, Sqlite, Transaction};

use super::value::format_timestamp;
use super::{Db, DbError, Pool};
use crate::sql::Dialect;

/// A bind argument.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    Int(Option<i64>),
    Text(Option<String>),
    /// A UTC instant (PostgreSQL `timestamptz`, MySQL `datetime(6)`, SQLite text).
    Time(Option<DateTime<Utc>>),
    /// A naive UTC timestamp (`table_sync.timestamp`).
    Naive(NaiveDateTime),
}

/// The type of a result column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Int,
    Text,
    Time,
    Naive,
}

/// A result value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Null,
    Int(i64),
    Text(String),
    Time(DateTime<Utc>),
    Naive(NaiveDateTime),
}

impl Val {
    pub(crate) fn int(&self) -> Option<i64> {
        match self {
            Val::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub(crate) fn text(&self) -> Option<String> {
        match self {
            Val::Text(t) => Some(t.clone()),
            _ => None,
        }
    }

    pub(crate) fn time(&self) -> Option<DateTime<Utc>> {
        match self {
            Val::Time(t) => Some(*t),
            Val::Naive(n) => Some(n.and_utc()),
            _ => None,
        }
    }
}

/// `?` placeholders become `$1`, `$2`, ... for PostgreSQL. Our statements have no `?` elsewhere.
fn placeholders(dialect: Dialect, sql: &str) -> String {
    if dialect != Dialect::Postgres {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

fn sqlite_time(t: &NaiveDateTime) -> String {
    let mut out = String::new();
    format_timestamp(t, &mut out);
    out
}

fn pg_args(args: &[Arg]) -> Result<PgArguments, sqlx::Error> {
    let mut out = PgArguments::default();
    for arg in args {
        let added = match arg {
            Arg::Int(v) => out.add(*v),
            Arg::Text(v) => out.add(v.clone()),
            Arg::Time(v) => out.add(*v),
            Arg::Naive(v) => out.add(*v),
        };
        added.map_err(sqlx::Error::Encode)?;
    }
    Ok(out)
}

fn mysql_args(args: &[Arg]) -> Result<MySqlArguments, sqlx::Error> {
    let mut out = MySqlArguments::default();
    for arg in args {
        let added = match arg {
            Arg::Int(v) => out.add(*v),
            Arg::Text(v) => out.add(v.clone()),
            Arg::Time(v) => out.add(v.map(|t| t.naive_utc())),
            Arg::Naive(v) => out.add(*v),
        };
        added.map_err(sqlx::Error::Encode)?;
    }
    Ok(out)
}

fn sqlite_args(args: &[Arg]) -> Result<SqliteArguments, sqlx::Error> {
    let mut out = SqliteArguments::default();
    for arg in args {
        let added = match arg {
            Arg::Int(v) => out.add(*v),
            Arg::Text(v) => out.add(v.clone()),
            Arg::Time(v) => out.add(v.map(|t| sqlite_time(&t.naive_utc()))),
            Arg::Naive(v) => out.add(sqlite_time(v)),
        };
        added.map_err(sqlx::Error::Encode)?;
    }
    Ok(out)
}

fn parse_sqlite_time(text: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .or_else(|| {
            DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.naive_utc())
        })
}

macro_rules! decode_row {
    ($row:expr, $kinds:expr, $time:ty, $naive:ty, $to_time:expr, $to_naive:expr) => {{
        let mut values = Vec::with_capacity($kinds.len());
        for (i, kind) in $kinds.iter().enumerate() {
            let value = match kind {
                Kind::Int => $row.try_get::<Option<i64>, _>(i)?.map(Val::Int),
                Kind::Text => $row.try_get::<Option<String>, _>(i)?.map(Val::Text),
                Kind::Time => $row
                    .try_get::<Option<$time>, _>(i)?
                    .and_then($to_time)
                    .map(Val::Time),
                Kind::Naive => $row
                    .try_get::<Option<$naive>, _>(i)?
                    .and_then($to_naive)
                    .map(Val::Naive),
            };
            values.push(value.unwrap_or(Val::Null));
        }
        values
    }};
}

fn pg_row(row: &sqlx::postgres::PgRow, kinds: &[Kind]) -> Result<Vec<Val>, sqlx::Error> {
    Ok(decode_row!(
        row,
        kinds,
        DateTime<Utc>,
        NaiveDateTime,
        Some,
        Some
    ))
}

fn mysql_row(row: &sqlx::mysql::MySqlRow, kinds: &[Kind]) -> Result<Vec<Val>, sqlx::Error> {
    Ok(decode_row!(
        row,
        kinds,
        NaiveDateTime,
        NaiveDateTime,
        |t: NaiveDateTime| Some(t.and_utc()),
        Some
    ))
}

fn sqlite_row(row: &sqlx::sqlite::SqliteRow, kinds: &[Kind]) -> Result<Vec<Val>, sqlx::Error> {
    Ok(decode_row!(
        row,
        kinds,
        String,
        String,
        |t: String| parse_sqlite_time(&t).map(|n| n.and_utc()),
        |t: String| parse_sqlite_time(&t)
    ))
}

/// An open transaction on any of the databases.
#[derive(Debug)]
pub(crate) enum Tx {
    Postgres(Transaction<'static, Postgres>),
    Mysql(Transaction<'static, MySql>),
    Sqlite(Transaction<'static, Sqlite>),
}

impl Tx {
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Tx::Postgres(_) => Dialect::Postgres,
            Tx::Mysql(_) => Dialect::Mysql,
            Tx::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// Runs a statement with arguments; returns the rows affected.
    pub(crate) async fn execute(&mut self, sql: &str, args: &[Arg]) -> Result<u64, sqlx::Error> {
        let sql = AssertSqlSafe(placeholders(self.dialect(), sql));
        Ok(match self {
            Tx::Postgres(tx) => sqlx::query_with(sql, pg_args(args)?)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
            Tx::Mysql(tx) => sqlx::query_with(sql, mysql_args(args)?)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
            Tx::Sqlite(tx) => sqlx::query_with(sql, sqlite_args(args)?)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
        })
    }

    /// Runs a statement without arguments (DDL, several statements at once on PostgreSQL/SQLite).
    pub(crate) async fn execute_raw(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        let query = sqlx::raw_sql(AssertSqlSafe(sql.to_owned()));
        match self {
            Tx::Postgres(tx) => query.execute(&mut **tx).await.map(drop),
            Tx::Mysql(tx) => query.execute(&mut **tx).await.map(drop),
            Tx::Sqlite(tx) => query.execute(&mut **tx).await.map(drop),
        }
    }

    /// Runs a query and decodes every row as `kinds`.
    pub(crate) async fn fetch(
        &mut self,
        sql: &str,
        args: &[Arg],
        kinds: &[Kind],
    ) -> Result<Vec<Vec<Val>>, sqlx::Error> {
        let sql = AssertSqlSafe(placeholders(self.dialect(), sql));
        match self {
            Tx::Postgres(tx) => {
                let rows = sqlx::query_with(sql, pg_args(args)?)
                    .fetch_all(&mut **tx)
                    .await?;
                rows.iter().map(|r| pg_row(r, kinds)).collect()
            }
            Tx::Mysql(tx) => {
                let rows = sqlx::query_with(sql, mysql_args(args)?)
                    .fetch_all(&mut **tx)
                    .await?;
                rows.iter().map(|r| mysql_row(r, kinds)).collect()
            }
            Tx::Sqlite(tx) => {
                let rows = sqlx::query_with(sql, sqlite_args(args)?)
                    .fetch_all(&mut **tx)
                    .await?;
                rows.iter().map(|r| sqlite_row(r, kinds)).collect()
            }
        }
    }

    /// Starts `COPY ... FROM STDIN` (PostgreSQL only).
    pub(crate) async fn copy_in(
        &mut self,
        sql: &str,
    ) -> Result<sqlx::postgres::PgCopyIn<&mut sqlx::PgConnection>, sqlx::Error> {
        match self {
            Tx::Postgres(tx) => tx.copy_in_raw(sql).await,
            _ => Err(sqlx::Error::Protocol(
                "COPY exists on PostgreSQL only".into(),
            )),
        }
    }

    pub(crate) async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Postgres(tx) => tx.rollback().await,
            Tx::Mysql(tx) => tx.rollback().await,
            Tx::Sqlite(tx) => tx.rollback().await,
        }
    }

    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Postgres(tx) => tx.commit().await,
            Tx::Mysql(tx) => tx.commit().await,
            Tx::Sqlite(tx) => tx.commit().await,
        }
    }
}

impl Db {
    /// Begins a transaction. On SQLite it starts as a write transaction (`BEGIN IMMEDIATE`) so that
    /// it never fails later on lock upgrade.
    pub(crate) async fn begin(&self) -> Result<Tx, DbError> {
        let context = "beginning a transaction";
        Ok(match &self.pool {
            Pool::Postgres(p) => Tx::Postgres(p.begin().await.map_err(DbError::sql(context))?),
            Pool::Mysql(p) => Tx::Mysql(p.begin().await.map_err(DbError::sql(context))?),
            Pool::Sqlite(p) => Tx::Sqlite(
                p.begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(DbError::sql(context))?,
            ),
        })
    }

    /// MySQL: begins a transaction if the pool has a connection to spare or can open one
    /// within a second; `None` rather than wait longer for one.
    pub(crate) async fn try_begin_mysql(&self) -> Result<Option<Tx>, DbError> {
        let Pool::Mysql(pool) = &self.pool else {
            return Ok(None);
        };
        let wait = std::time::Duration::from_secs(1);
        let Ok(Ok(connection)) = tokio::time::timeout(wait, pool.acquire()).await else {
            return Ok(None);
        };
        let tx = sqlx::Transaction::begin(connection, None)
            .await
            .map_err(DbError::sql("beginning a transaction"))?;
        Ok(Some(Tx::Mysql(tx)))
    }

    /// Runs a query outside any transaction of ours.
    pub(crate) async fn fetch(
        &self,
        sql: &str,
        args: &[Arg],
        kinds: &[Kind],
        context: &str,
    ) -> Result<Vec<Vec<Val>>, DbError> {
        let sql = AssertSqlSafe(placeholders(self.dialect(), sql));
        let result = match &self.pool {
            Pool::Postgres(p) => match pg_args(args) {
                Ok(a) => sqlx::query_with(sql, a)
                    .fetch_all(p)
                    .await
                    .and_then(|rows| rows.iter().map(|r| pg_row(r, kinds)).collect()),
                Err(e) => Err(e),
            },
            Pool::Mysql(p) => match mysql_args(args) {
                Ok(a) => sqlx::query_with(sql, a)
                    .fetch_all(p)
                    .await
                    .and_then(|rows| rows.iter().map(|r| mysql_row(r, kinds)).collect()),
                Err(e) => Err(e),
            },
            Pool::Sqlite(p) => match sqlite_args(args) {
                Ok(a) => sqlx::query_with(sql, a)
                    .fetch_all(p)
                    .await
                    .and_then(|rows| rows.iter().map(|r| sqlite_row(r, kinds)).collect()),
                Err(e) => Err(e),
            },
        };
        result.map_err(DbError::sql(context))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_gets_numbered_placeholders() {
        assert_eq!(
            placeholders(Dialect::Postgres, "a = ? AND b = ?"),
            "a = $1 AND b = $2"
        );
        assert_eq!(placeholders(Dialect::Mysql, "a = ?"), "a = ?");
    }

    #[test]
    fn sqlite_times_round_trip() {
        let t = NaiveDateTime::parse_from_str("2024-05-01 10:00:00.123456", "%Y-%m-%d %H:%M:%S%.f")
            .unwrap();
        assert_eq!(parse_sqlite_time(&sqlite_time(&t)), Some(t));
        assert!(parse_sqlite_time("2024-05-01T10:00:00Z").is_some());
    }
}
