//! The control tables: the official client's `table_sync` (compatible in both directions) and
//! dapsync's own table state, run history and reject table.

use chrono::{DateTime, DurationRound, NaiveDateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::plan::TablePlan;
use super::query::{Arg, Kind, Tx};
use super::runs::{RunError, RunResult, finish_run};
use super::{Db, DbError};
use crate::run::RunOutcome;
use crate::sql::Dialect;
use crate::table::{TableId, TableStatus};

/// What the control tables say about a replicated table.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncState {
    /// Where the next incremental query starts: the exact watermark dapsync stored, or
    /// `table_sync.timestamp` when another client (the official `dap syncdb`) moved it since.
    pub since: DateTime<Utc>,
    pub schema_version: i64,
    /// The table's JSON schema without `meta`, as stored in `table_sync.schema_description`.
    pub schema_description: String,
    /// When the last successful run of the table started (any process on this database).
    pub last_success_at: Option<DateTime<Utc>>,
}

/// A MySQL snapshot whose staging table is complete but not yet swapped in (kept in
/// `table_state.pending_swap` so that a crash at any point converges).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PendingSwap {
    pub run_id: i64,
    pub watermark: DateTime<Utc>,
    pub schema_version: i64,
    pub schema_description: String,
    pub rows: i64,
    /// The run's facts for the run history (absent in swaps recorded by older versions).
    #[serde(default)]
    pub job_id: Option<String>,
    #[serde(default)]
    pub upserted: i64,
    #[serde(default)]
    pub rejected: i64,
    #[serde(default)]
    pub bytes: i64,
}

/// A record the database could not take.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    /// The record's `key` as JSON text, when it could be read.
    pub key: Option<String>,
    pub reason: String,
    /// The line as received.
    pub line: String,
}

pub(super) fn text(value: &str) -> Arg {
    Arg::Text(Some(value.to_owned()))
}

impl Dialect {
    /// The precision `table_sync.timestamp` keeps: whole seconds on MySQL (the official client's
    /// `datetime`), microseconds elsewhere. Values are cut down to it, never rounded up: a `since`
    /// a little early re-applies a few changes harmlessly, one a little late would lose them.
    pub fn table_sync_precision(self) -> TimeDelta {
        match self {
            Dialect::Mysql => TimeDelta::seconds(1),
            Dialect::Postgres | Dialect::Sqlite => TimeDelta::microseconds(1),
        }
    }
}

fn truncate(t: DateTime<Utc>, precision: TimeDelta) -> DateTime<Utc> {
    t.duration_trunc(precision).unwrap_or(t)
}

/// Whether `table_sync.timestamp` (`stamp`) is still dapsync's exact `watermark`, cut to the
/// column's precision: no other client (`dap syncdb`) advanced the table since dapsync did.
pub(crate) fn synced_last(d: Dialect, watermark: DateTime<Utc>, stamp: DateTime<Utc>) -> bool {
    truncate(watermark, d.table_sync_precision()) == stamp
}

impl Db {
    /// The sync state of a table, or `None` if it was never synced (by dapsync or `dap`).
    pub async fn sync_state(&self, id: &TableId) -> Result<Option<SyncState>, DbError> {
        let (namespace, table) = (id.namespace.as_str(), id.table.as_str());
        let d = self.dialect();
        let rows = self
            .fetch(
                &format!(
                    "SELECT {}, schema_version, schema_description FROM {} WHERE source_namespace = ? AND source_table = ?",
                    d.quote_ident("timestamp"),
                    d.table_sync_name()
                ),
                &[text(namespace), text(table)],
                &[Kind::Naive, Kind::Int, Kind::Text],
                "reading table_sync",
            )
            .await?;
        let Some(row) = rows.into_iter().next() else {
            return Ok(None);
        };
        let (Some(stamp), Some(schema_version), Some(schema_description)) =
            (row[0].time(), row[1].int(), row[2].text())
        else {
            return Err(DbError::IncompleteSyncState { table: id.clone() });
        };
        let own = self
            .fetch(
                &format!(
                    "SELECT watermark FROM {} WHERE namespace = ? AND table_name = ?",
                    d.own_table("table_state")
                ),
                &[text(namespace), text(table)],
                &[Kind::Time],
                "reading table_state",
            )
            .await?
            .into_iter()
            .next();
        let watermark = own.as_ref().and_then(|row| row[0].time());
        // When the last successful run started (not ended): a run that started after a tick
        // served it, while one that ended after it may have queried before it.
        let last_success_at = self
            .fetch(
                &format!(
                    "SELECT max(started_at) FROM {} WHERE namespace = ? AND table_name = ? AND outcome = 'success'",
                    d.own_table("runs")
                ),
                &[text(namespace), text(table)],
                &[Kind::Time],
                "reading the last successful run",
            )
            .await?
            .into_iter()
            .next()
            .and_then(|row| row[0].time());
        let since = match watermark {
            Some(exact) if synced_last(d, exact, stamp) => exact,
            // Another client wrote the stamp (`dap`, on a database it set up or took a turn on).
            // MySQL rounds fractional seconds written into a whole-second `datetime` (MariaDB
            // cuts them), so the stamp may be up to a second past the true `until`: a window
            // replayed from a second earlier is harmless, one skipped is lost for good.
            _ if d.table_sync_precision() >= TimeDelta::seconds(1) => {
                stamp - d.table_sync_precision()
            }
            _ => stamp,
        };
        Ok(Some(SyncState {
            since,
            schema_version,
            schema_description,
            last_success_at,
        }))
    }

    /// The MySQL swap in progress for a table, if any.
    pub(crate) async fn pending_swap(&self, id: &TableId) -> Result<Option<PendingSwap>, DbError> {
        let (namespace, table) = (id.namespace.as_str(), id.table.as_str());
        let rows = self
            .fetch(
                &format!(
                    "SELECT pending_swap FROM {} WHERE namespace = ? AND table_name = ?",
                    self.dialect().own_table("table_state")
                ),
                &[text(namespace), text(table)],
                &[Kind::Text],
                "reading table_state",
            )
            .await?;
        let Some(json) = rows.into_iter().next().and_then(|row| row[0].text()) else {
            return Ok(None);
        };
        serde_json::from_str(&json)
            .map(Some)
            .map_err(|source| DbError::UnreadablePendingSwap {
                table: id.clone(),
                source,
            })
    }

    /// Records (or clears) a MySQL swap in progress.
    pub(crate) async fn set_pending_swap(
        &self,
        plan: &TablePlan,
        swap: Option<&PendingSwap>,
    ) -> Result<(), DbError> {
        let json = swap.map(|s| serde_json::to_string(s).unwrap_or_default());
        let mut tx = self.begin().await?;
        upsert_table_state(&mut tx, plan, &[("pending_swap", Arg::Text(json))]).await?;
        tx.commit()
            .await
            .map_err(DbError::sql("recording a pending swap"))
    }

    /// Records a failed run and the table's last error.
    pub async fn fail_run(
        &self,
        run_id: i64,
        table: &TableId,
        result: &RunResult,
        error: &RunError,
    ) -> Result<(), DbError> {
        let d = self.dialect();
        let mut tx = self.begin().await?;
        finish_run(&mut tx, run_id, RunOutcome::Failed, result, Some(error)).await?;
        let state = d.own_table("table_state");
        let now = Arg::Time(Some(Utc::now()));
        let set = "last_error_type = ?, last_error_uuid = ?, last_error_message = ?, last_error_at = ?, \
                   consecutive_failures = consecutive_failures + 1, updated_at = ?";
        let args = [
            text(&error.error_type),
            Arg::Text(error.uuid.clone()),
            text(&error.message),
            now.clone(),
            now.clone(),
            text(&table.namespace),
            text(&table.table),
        ];
        let context = "recording a failed run";
        let updated = tx
            .execute(
                &format!("UPDATE {state} SET {set} WHERE namespace = ? AND table_name = ?"),
                &args,
            )
            .await
            .map_err(DbError::sql(context))?;
        if updated == 0 {
            tx.execute(
                &format!(
                    "INSERT INTO {state} (namespace, table_name, last_error_type, last_error_uuid, last_error_message, last_error_at, \
                     consecutive_failures, updated_at) VALUES (?, ?, ?, ?, ?, ?, 1, ?)"
                ),
                &[text(&table.namespace), text(&table.table), args[0].clone(), args[1].clone(), args[2].clone(), now.clone(), now],
            )
            .await
            .map_err(DbError::sql(context))?;
        }
        tx.commit().await.map_err(DbError::sql(context))
    }

    /// The status of every table the control tables know.
    pub async fn table_statuses(&self) -> Result<Vec<TableStatus>, DbError> {
        let d = self.dialect();
        let ts = d.quote_ident("timestamp");
        let sync_rows = self
            .fetch(
                &format!(
                    "SELECT source_namespace, source_table, {ts}, schema_version FROM {}",
                    d.table_sync_name()
                ),
                &[],
                &[Kind::Text, Kind::Text, Kind::Naive, Kind::Int],
                "reading table_sync",
            )
            .await?;
        let state_rows = self
            .fetch(
                &format!(
                    "SELECT namespace, table_name, watermark, row_count, last_success_at, last_error_type, last_error_uuid, \
                     last_error_message, last_error_at, consecutive_failures FROM {}",
                    d.own_table("table_state")
                ),
                &[],
                &[Kind::Text, Kind::Text, Kind::Time, Kind::Int, Kind::Time, Kind::Text, Kind::Text, Kind::Text, Kind::Time, Kind::Int],
                "reading table_state",
            )
            .await?;
        let mut statuses: Vec<TableStatus> = Vec::new();
        for row in &sync_rows {
            let (Some(namespace), Some(table)) = (row[0].text(), row[1].text()) else {
                continue;
            };
            statuses.push(TableStatus {
                namespace,
                table,
                synced_until: row[2].time(),
                schema_version: row[3].int(),
                ..TableStatus::default()
            });
        }
        for row in &state_rows {
            let (Some(namespace), Some(table)) = (row[0].text(), row[1].text()) else {
                continue;
            };
            let index = match statuses
                .iter()
                .position(|s| s.namespace == namespace && s.table == table)
            {
                Some(i) => i,
                None => {
                    statuses.push(TableStatus {
                        namespace: namespace.clone(),
                        table: table.clone(),
                        ..TableStatus::default()
                    });
                    statuses.len() - 1
                }
            };
            let status = &mut statuses[index];
            if let (Some(exact), Some(stamp)) = (row[2].time(), status.synced_until)
                && synced_last(d, exact, stamp)
            {
                status.synced_until = Some(exact);
            }
            status.row_count = row[3].int();
            status.last_success_at = row[4].time();
            status.last_error_type = row[5].text();
            status.last_error_uuid = row[6].text();
            status.last_error_message = row[7].text();
            status.last_error_at = row[8].time();
            status.consecutive_failures = row[9].int().unwrap_or(0);
        }
        for control in self.table_controls().await? {
            if let Some(status) = statuses
                .iter_mut()
                .find(|s| s.namespace == control.namespace && s.table == control.table)
            {
                status.paused_at = control.paused_at;
            } else if control.paused_at.is_some() {
                statuses.push(TableStatus {
                    namespace: control.namespace,
                    table: control.table,
                    paused_at: control.paused_at,
                    ..TableStatus::default()
                });
            }
        }
        statuses.sort_by(|a, b| (&a.namespace, &a.table).cmp(&(&b.namespace, &b.table)));
        Ok(statuses)
    }

    /// How many rejected records a table has.
    pub async fn reject_count(&self, table: &TableId) -> Result<i64, DbError> {
        let rows = self
            .fetch(
                &format!(
                    "SELECT count(*) FROM {} WHERE namespace = ? AND table_name = ?",
                    self.dialect().own_table("rejects")
                ),
                &[text(&table.namespace), text(&table.table)],
                &[Kind::Int],
                "counting rejects",
            )
            .await?;
        Ok(rows.first().and_then(|r| r[0].int()).unwrap_or(0))
    }

    /// Forgets a table: its `table_sync` row and dapsync's state (the run history stays).
    pub(crate) async fn forget_table(&self, id: &TableId) -> Result<(), DbError> {
        let (namespace, table) = (id.namespace.as_str(), id.table.as_str());
        let d = self.dialect();
        let mut tx = self.begin().await?;
        for sql in [
            format!(
                "DELETE FROM {} WHERE source_namespace = ? AND source_table = ?",
                d.table_sync_name()
            ),
            format!(
                "DELETE FROM {} WHERE namespace = ? AND table_name = ?",
                d.own_table("table_state")
            ),
        ] {
            tx.execute(&sql, &[text(namespace), text(table)])
                .await
                .map_err(DbError::sql("removing control rows"))?;
        }
        tx.commit()
            .await
            .map_err(DbError::sql("removing control rows"))
    }
}

/// Advances a table's sync state: `table_sync` (the official client's view) and dapsync's exact
/// watermark, in the caller's transaction so that it commits together with the data.
pub(crate) async fn write_sync_state(
    tx: &mut Tx,
    plan: &TablePlan,
    watermark: DateTime<Utc>,
    row_count: i64,
) -> Result<(), DbError> {
    let d = tx.dialect();
    let schema = &plan.schema;
    let context = "writing table_sync";
    let stamp: NaiveDateTime = truncate(watermark, d.table_sync_precision()).naive_utc();
    let description = schema.description_json().to_string();
    let (target_schema, target_table) = match d {
        Dialect::Postgres => (Some(schema.namespace.clone()), plan.live.table.clone()),
        Dialect::Mysql | Dialect::Sqlite => (None, plan.live.table.clone()),
    };
    let ts = d.quote_ident("timestamp");
    let table_sync = d.table_sync_name();
    let updated = tx
        .execute(
            &format!(
                "UPDATE {table_sync} SET {ts} = ?, schema_version = ?, target_schema = ?, target_table = ?, \
                 schema_description_format = 'json', schema_description = ? WHERE source_namespace = ? AND source_table = ?"
            ),
            &[
                Arg::Naive(stamp),
                Arg::Int(Some(schema.version)),
                Arg::Text(target_schema.clone()),
                text(&target_table),
                text(&description),
                text(&schema.namespace),
                text(&schema.table),
            ],
        )
        .await
        .map_err(DbError::sql(context))?;
    if updated == 0 {
        tx.execute(
            &format!(
                "INSERT INTO {table_sync} (source_namespace, source_table, {ts}, schema_version, target_schema, target_table, \
                 schema_description_format, schema_description) VALUES (?, ?, ?, ?, ?, ?, 'json', ?)"
            ),
            &[
                text(&schema.namespace),
                text(&schema.table),
                Arg::Naive(stamp),
                Arg::Int(Some(schema.version)),
                Arg::Text(target_schema),
                text(&target_table),
                text(&description),
            ],
        )
        .await
        .map_err(DbError::sql(context))?;
    }
    let now = Arg::Time(Some(Utc::now()));
    upsert_table_state(
        tx,
        plan,
        &[
            ("watermark", Arg::Time(Some(watermark))),
            ("pending_swap", Arg::Text(None)),
            // The load committed: the live table has table_sync's schema again.
            ("live_schema", Arg::Text(None)),
            ("row_count", Arg::Int(Some(row_count))),
            ("last_success_at", now),
            ("last_error_type", Arg::Text(None)),
            ("last_error_uuid", Arg::Text(None)),
            ("last_error_message", Arg::Text(None)),
            ("last_error_at", Arg::Time(None)),
            ("consecutive_failures", Arg::Int(Some(0))),
        ],
    )
    .await
}

/// Sets columns of a table's `table_state` row, creating the row if needed.
pub(super) async fn upsert_table_state(
    tx: &mut Tx,
    plan: &TablePlan,
    values: &[(&str, Arg)],
) -> Result<(), DbError> {
    let state = tx.dialect().own_table("table_state");
    let context = "writing table_state";
    let keys = [text(&plan.schema.namespace), text(&plan.schema.table)];
    let now = Arg::Time(Some(Utc::now()));
    let set: Vec<String> = values
        .iter()
        .map(|(column, _)| format!("{column} = ?"))
        .collect();
    let mut args: Vec<Arg> = values.iter().map(|(_, arg)| arg.clone()).collect();
    args.push(now.clone());
    args.extend(keys.iter().cloned());
    let updated = tx
        .execute(
            &format!(
                "UPDATE {state} SET {}, updated_at = ? WHERE namespace = ? AND table_name = ?",
                set.join(", ")
            ),
            &args,
        )
        .await
        .map_err(DbError::sql(context))?;
    if updated == 0 {
        let columns: Vec<&str> = values.iter().map(|(column, _)| *column).collect();
        let mut args: Vec<Arg> = keys.to_vec();
        args.extend(values.iter().map(|(_, arg)| arg.clone()));
        args.push(now);
        let marks = vec!["?"; args.len()].join(", ");
        tx.execute(
            &format!(
                "INSERT INTO {state} (namespace, table_name, {}, updated_at) VALUES ({marks})",
                columns.join(", ")
            ),
            &args,
        )
        .await
        .map_err(DbError::sql(context))?;
    }
    Ok(())
}

/// Stores rejected records.
pub(crate) async fn insert_rejects(
    tx: &mut Tx,
    run_id: i64,
    plan: &TablePlan,
    rejects: &[Reject],
) -> Result<(), DbError> {
    let sql = format!(
        "INSERT INTO {} (run_id, namespace, table_name, record_key, reason, line, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        tx.dialect().own_table("rejects")
    );
    let dialect = tx.dialect();
    let storable = |value: &str| Arg::Text(Some(storable_text(dialect, value)));
    for reject in rejects {
        tx.execute(
            &sql,
            &[
                Arg::Int(Some(run_id)),
                text(&plan.schema.namespace),
                text(&plan.schema.table),
                Arg::Text(reject.key.as_deref().map(|key| storable_text(dialect, key))),
                storable(&reject.reason),
                storable(&reject.line),
                Arg::Time(Some(Utc::now())),
            ],
        )
        .await
        .map_err(DbError::sql("storing rejected records"))?;
    }
    Ok(())
}

/// Text as a text column of `dialect` can hold it: PostgreSQL refuses the NUL character, which a
/// rejected line may carry (raw, or decoded from `\u0000` in a property name), so there it is
/// written as the JSON escape `\u0000`.
fn storable_text(dialect: Dialect, value: &str) -> String {
    match dialect {
        Dialect::Postgres if value.contains('\0') => value.replace('\0', "\\u0000"),
        _ => value.to_owned(),
    }
}
