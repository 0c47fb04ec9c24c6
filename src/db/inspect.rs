//! Looking at replicated tables: whether they exist, their columns, and their rows as JSON (the
//! form tests and the benchmark compare with what DAP served).

use std::net::IpAddr;

use chrono::{NaiveDate, NaiveDateTime};
use serde_json::{Map, Number, Value};
use sqlx::{AssertSqlSafe, Row as _};

use super::plan::TablePlan;
use super::query::{Arg, Kind, Tx};
use super::{Db, DbError, Pool};
use crate::schema::{ColumnType, TableSchema};
use crate::sql::{self, Dialect, LiveColumn, TableNames};

/// The query listing a table's columns in order (name, nullable as `YES`/`NO` or 0/1, MySQL
/// column type), with its arguments.
pub(crate) fn columns_query(names: &TableNames) -> (String, Vec<Arg>) {
    let table = Arg::Text(Some(names.table.clone()));
    match names.dialect {
        // Native enum columns report their type's labels, in the form of MySQL's column_type.
        Dialect::Postgres => (
            "SELECT a.attname::text, CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END, \
             COALESCE((SELECT 'enum(' || string_agg(quote_literal(e.enumlabel), ',' ORDER BY e.enumsortorder) || ')' \
             FROM pg_enum e WHERE e.enumtypid = a.atttypid), '') \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = ? AND c.relname = ? AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
                .into(),
            vec![Arg::Text(names.schema.clone()), table],
        ),
        Dialect::Mysql => (
            "SELECT CAST(column_name AS CHAR), CAST(is_nullable AS CHAR), CAST(column_type AS CHAR) FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND table_name = ? ORDER BY ordinal_position"
                .into(),
            vec![table],
        ),
        Dialect::Sqlite => (
            "SELECT name, CASE WHEN \"notnull\" = 0 THEN 'YES' ELSE 'NO' END, '' FROM pragma_table_info(?) ORDER BY cid".into(),
            vec![table],
        ),
    }
}

pub(crate) const COLUMN_KINDS: [Kind; 3] = [Kind::Text, Kind::Text, Kind::Text];

fn live_column(row: &[super::query::Val]) -> Option<LiveColumn> {
    let column_type = row[2].text().unwrap_or_default();
    Some(LiveColumn {
        name: row[0].text()?,
        nullable: row[1].text().is_some_and(|n| n == "YES"),
        enum_values: LiveColumn::mysql_enum_values(&column_type),
        binary: column_type.starts_with("binary") || column_type.starts_with("varbinary"),
    })
}

impl Db {
    /// The columns of a table as the database reports them, in order; empty if the table does
    /// not exist.
    pub async fn live_columns(&self, names: &TableNames) -> Result<Vec<LiveColumn>, DbError> {
        let (sql, args) = columns_query(names);
        let rows = self
            .fetch(&sql, &args, &COLUMN_KINDS, "reading table columns")
            .await?;
        Ok(rows.iter().filter_map(|r| live_column(r)).collect())
    }

    /// The physical column names of a table, in order; empty if the table does not exist.
    pub async fn table_columns(&self, names: &TableNames) -> Result<Vec<String>, DbError> {
        Ok(self
            .live_columns(names)
            .await?
            .into_iter()
            .map(|c| c.name)
            .collect())
    }

    /// Whether a table exists.
    pub async fn table_exists(&self, names: &TableNames) -> Result<bool, DbError> {
        Ok(!self.table_columns(names).await?.is_empty())
    }

    /// Rows in a table.
    pub async fn count_rows(&self, names: &TableNames) -> Result<i64, DbError> {
        let rows = self
            .fetch(&sql::count_rows(names), &[], &[Kind::Int], "counting rows")
            .await?;
        Ok(rows.first().and_then(|r| r[0].int()).unwrap_or_default())
    }

    /// Every row of the live table as `{"key": {...}, "value": {...}}`, ordered by key, in a
    /// canonical form: NULLs left out, timestamps `YYYY-MM-DDTHH:MM:SS.ffffffZ`, uuids lowercase,
    /// IP addresses in their standard notation, JSON columns as JSON.
    pub async fn dump_rows(&self, plan: &TablePlan) -> Result<Vec<Value>, DbError> {
        let d = self.dialect();
        let live = self.live_columns(&plan.live).await?;
        let binary = |physical: &str| live.iter().any(|l| l.name == physical && l.binary);
        let columns: Vec<String> = plan
            .schema
            .columns
            .iter()
            .zip(&plan.columns.names)
            .map(|(column, physical)| {
                let quoted = d.quote_ident(physical);
                match column.ty {
                    // Packed addresses (see `pack_ip`) as `0x` and their hex digits.
                    ColumnType::IpAddress if binary(physical) => {
                        format!("CONCAT('0x', HEX({quoted}))")
                    }
                    _ => select_expression(d, &column.ty, &quoted),
                }
            })
            .collect();
        let key: Vec<String> = plan
            .columns
            .names
            .iter()
            .take(plan.columns.key_len)
            .map(|c| d.quote_ident(c))
            .collect();
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {}",
            columns.join(", "),
            plan.live.qualified(),
            key.join(", ")
        );
        let context = format!("reading the rows of {}", plan.label());
        let sql = AssertSqlSafe(sql);
        let cells: Vec<Vec<Value>> = match &self.pool {
            Pool::Postgres(pool) => {
                let rows = sqlx::query(sql)
                    .fetch_all(pool)
                    .await
                    .map_err(DbError::sql(&context))?;
                rows.iter()
                    .map(|row| {
                        (0..columns.len())
                            .map(|i| {
                                let text: Option<String> = row.try_get(i)?;
                                Ok(text
                                    .and_then(|t| serde_json::from_str(&t).ok())
                                    .unwrap_or(Value::Null))
                            })
                            .collect::<Result<Vec<_>, sqlx::Error>>()
                    })
                    .collect::<Result<_, _>>()
                    .map_err(DbError::sql(&context))?
            }
            Pool::Mysql(pool) => {
                let rows = sqlx::query(sql)
                    .fetch_all(pool)
                    .await
                    .map_err(DbError::sql(&context))?;
                rows.iter()
                    .map(|row| decode_bound_row(&plan.schema, |i, ty| mysql_cell(row, i, ty)))
                    .collect::<Result<_, _>>()
                    .map_err(DbError::sql(&context))?
            }
            Pool::Sqlite(pool) => {
                let rows = sqlx::query(sql)
                    .fetch_all(pool)
                    .await
                    .map_err(DbError::sql(&context))?;
                rows.iter()
                    .map(|row| decode_bound_row(&plan.schema, |i, ty| sqlite_cell(row, i, ty)))
                    .collect::<Result<_, _>>()
                    .map_err(DbError::sql(&context))?
            }
        };
        Ok(cells
            .into_iter()
            .map(|row| record_json(&plan.schema, row))
            .collect())
    }
}

/// What to select for a column so that it decodes simply.
fn select_expression(dialect: Dialect, ty: &ColumnType, column: &str) -> String {
    match dialect {
        // to_json renders every type (enums, inet, arrays, jsonb, timestamps) as JSON text.
        Dialect::Postgres => format!("to_json({column})::text"),
        Dialect::Mysql => match ty {
            ColumnType::Json | ColumnType::Array { .. } | ColumnType::Enum { .. } => {
                format!("CAST({column} AS CHAR)")
            }
            _ => column.to_owned(),
        },
        Dialect::Sqlite => column.to_owned(),
    }
}

fn decode_bound_row(
    schema: &TableSchema,
    mut cell: impl FnMut(usize, &ColumnType) -> Result<Value, sqlx::Error>,
) -> Result<Vec<Value>, sqlx::Error> {
    schema
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| cell(i, &c.ty))
        .collect()
}

fn mysql_cell(
    row: &sqlx::mysql::MySqlRow,
    i: usize,
    ty: &ColumnType,
) -> Result<Value, sqlx::Error> {
    match ty {
        ColumnType::Timestamp => Ok(timestamp_json(row.try_get::<Option<NaiveDateTime>, _>(i)?)),
        ColumnType::Date => Ok(date_json(row.try_get::<Option<NaiveDate>, _>(i)?)),
        ColumnType::Uuid => Ok(row
            .try_get::<Option<Vec<u8>>, _>(i)?
            .and_then(|b| uuid::Uuid::from_slice(&b).ok())
            .map(|u| Value::String(u.hyphenated().to_string()))
            .unwrap_or(Value::Null)),
        _ => plain_cell(row, i, ty),
    }
}

fn sqlite_cell(
    row: &sqlx::sqlite::SqliteRow,
    i: usize,
    ty: &ColumnType,
) -> Result<Value, sqlx::Error> {
    plain_cell(row, i, ty)
}

/// A cell stored as an integer, a float or text: every type on SQLite, the rest on MySQL
/// (booleans are integers on both).
fn plain_cell<'r, R>(row: &'r R, i: usize, ty: &ColumnType) -> Result<Value, sqlx::Error>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<f64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(match ty {
        ColumnType::SmallInt
        | ColumnType::Int
        | ColumnType::BigInt
        | ColumnType::IntEnum { .. } => row
            .try_get::<Option<i64>, _>(i)?
            .map(Value::from)
            .unwrap_or(Value::Null),
        ColumnType::Boolean => row
            .try_get::<Option<i64>, _>(i)?
            .map(|b| Value::Bool(b != 0))
            .unwrap_or(Value::Null),
        ColumnType::Double => float_json(row.try_get::<Option<f64>, _>(i)?),
        _ => text_json(ty, row.try_get::<Option<String>, _>(i)?),
    })
}

fn float_json(f: Option<f64>) -> Value {
    match f {
        None => Value::Null,
        Some(f) => Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(f.to_string())),
    }
}

fn timestamp_json(t: Option<NaiveDateTime>) -> Value {
    t.map(|t| Value::String(t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()))
        .unwrap_or(Value::Null)
}

fn date_json(d: Option<NaiveDate>) -> Value {
    d.map(|d| Value::String(d.format("%Y-%m-%d").to_string()))
        .unwrap_or(Value::Null)
}

/// A value stored as text (SQLite for most types, MySQL for text-like ones) in canonical form.
fn text_json(ty: &ColumnType, text: Option<String>) -> Value {
    let Some(text) = text else { return Value::Null };
    canonical(ty, Value::String(text))
}

/// Puts one value of a column in canonical form (see [`Db::dump_rows`]).
pub fn canonical(ty: &ColumnType, value: Value) -> Value {
    match (ty, value) {
        (ColumnType::Timestamp, Value::String(s)) => {
            let parsed = chrono::DateTime::parse_from_rfc3339(&s)
                .map(|t| t.naive_utc())
                .or_else(|_| NaiveDateTime::parse_from_str(&s, "%Y-%m-%d %H:%M:%S%.f"))
                .or_else(|_| NaiveDateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M:%S%.f"));
            match parsed {
                Ok(t) => timestamp_json(Some(t)),
                Err(_) => Value::String(s),
            }
        }
        (ColumnType::Uuid, Value::String(s)) => Value::String(
            uuid::Uuid::parse_str(&s)
                .map(|u| u.hyphenated().to_string())
                .unwrap_or(s),
        ),
        (ColumnType::IpAddress, Value::String(s)) if s.starts_with("0x") => {
            let packed: Option<[u8; 16]> = (0..16)
                .map(|i| u8::from_str_radix(s.get(2 + 2 * i..4 + 2 * i)?, 16).ok())
                .collect::<Option<Vec<u8>>>()
                .and_then(|bytes| bytes.try_into().ok());
            match packed {
                Some(bytes) if s.len() == 34 => {
                    Value::String(super::value::unpack_ip(&bytes).to_string())
                }
                _ => Value::String(s),
            }
        }
        (ColumnType::IpAddress, Value::String(s)) => {
            let address = s.split('/').next().unwrap_or(&s);
            Value::String(
                address
                    .parse::<IpAddr>()
                    .map(|ip| ip.to_string())
                    .unwrap_or(s),
            )
        }
        (ColumnType::Json | ColumnType::Array { .. }, Value::String(s)) => {
            serde_json::from_str(&s).unwrap_or(Value::String(s))
        }
        (ColumnType::Array { item }, Value::Array(items)) => {
            Value::Array(items.into_iter().map(|v| canonical(item, v)).collect())
        }
        (ColumnType::Double, Value::Number(n)) => float_json(n.as_f64()),
        (_, value) => value,
    }
}

/// `{"key": {...}, "value": {...}}` from a row's values in column order, NULLs left out.
fn record_json(schema: &TableSchema, values: Vec<Value>) -> Value {
    let mut key = Map::new();
    let mut value = Map::new();
    for (column, cell) in schema.columns.iter().zip(values) {
        let cell = canonical(&column.ty, cell);
        if cell.is_null() {
            continue;
        }
        if column.key {
            key.insert(column.name.clone(), cell)
        } else {
            value.insert(column.name.clone(), cell)
        };
    }
    serde_json::json!({ "key": key, "value": value })
}

/// A DAP record (`{"key", "value", ...}`) in the canonical form of [`Db::dump_rows`].
pub fn canonical_record(schema: &TableSchema, record: &Value) -> Value {
    let mut values = Vec::with_capacity(schema.columns.len());
    for column in &schema.columns {
        let section = if column.key { "key" } else { "value" };
        values.push(
            record
                .get(section)
                .and_then(|s| s.get(&column.name))
                .cloned()
                .unwrap_or(Value::Null),
        );
    }
    record_json(schema, values)
}

/// The physical columns of a table seen from inside a transaction (empty if it does not exist).
pub(super) async fn columns_tx(tx: &mut Tx, names: &TableNames) -> Result<Vec<String>, DbError> {
    let (sql, args) = columns_query(names);
    let rows = tx
        .fetch(&sql, &args, &COLUMN_KINDS)
        .await
        .map_err(DbError::sql("reading table columns"))?;
    Ok(rows.into_iter().filter_map(|r| r[0].text()).collect())
}
