//! The run history: a row per table run, started, finished or failed, and read back for
//! `dapsync status` and `/status`.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::control::text;
use super::query::{Arg, Kind, Tx};
use super::{Db, DbError};
use crate::run::RunOutcome;
use crate::sql::Dialect;
use crate::table::TableId;

/// The kind of a run, for the run history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    Snapshot,
    Incremental,
}

/// A run about to start.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun<'a> {
    pub table: &'a TableId,
    pub kind: RunKind,
    /// Why a snapshot runs: `initial`, `snapshot_required`, `out_of_range`, `schema_rebuild`, `requested`.
    pub reason: Option<&'a str>,
    pub since: Option<DateTime<Utc>>,
}

/// The facts of a finished run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunResult {
    pub job_id: Option<String>,
    pub until: Option<DateTime<Utc>>,
    pub schema_version: Option<i64>,
    pub upserted: i64,
    pub deleted: i64,
    pub rejected: i64,
    pub bytes: i64,
}

/// An error to record against a run and its table.
#[derive(Debug, Clone, PartialEq)]
pub struct RunError {
    pub error_type: String,
    pub uuid: Option<String>,
    pub message: String,
}

/// One row of the run history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRecord {
    pub id: i64,
    pub namespace: String,
    pub table: String,
    pub kind: String,
    pub reason: Option<String>,
    pub job_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub schema_version: Option<i64>,
    pub rows_upserted: i64,
    pub rows_deleted: i64,
    pub rows_rejected: i64,
    pub bytes: i64,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: RunOutcome,
    pub error_type: Option<String>,
    pub error_uuid: Option<String>,
    pub error_message: Option<String>,
    /// User objects (views, indexes, grants, comments) the run could not keep on the new copy
    /// of the table.
    pub warnings: Vec<super::ObjectWarning>,
    /// Time spent waiting for the query budget (`None` for runs recorded before 0.1's
    /// migration 0004, and for runs still going).
    pub queued_seconds: Option<f64>,
    /// Time spent on the API: the schema, the query and the job.
    pub api_seconds: Option<f64>,
    /// The rest: downloading and loading.
    pub load_seconds: Option<f64>,
}

impl Db {
    /// Starts a run: marks runs of this table left `running` by a dead process as interrupted
    /// (the caller holds the table lock, so nobody else is running it) and inserts a new one.
    pub async fn start_run(&self, run: &NewRun<'_>) -> Result<i64, DbError> {
        let d = self.dialect();
        let runs = d.own_table("runs");
        let context = "starting a run";
        let mut tx = self.begin().await?;
        tx.execute(
            &format!("UPDATE {runs} SET outcome = 'interrupted', finished_at = ? WHERE namespace = ? AND table_name = ? AND outcome = 'running'"),
            &[Arg::Time(Some(Utc::now())), text(&run.table.namespace), text(&run.table.table)],
        )
        .await
        .map_err(DbError::sql(context))?;
        let kind = match run.kind {
            RunKind::Snapshot => "snapshot",
            RunKind::Incremental => "incremental",
        };
        let insert = format!(
            "INSERT INTO {runs} (namespace, table_name, kind, reason, since, started_at, outcome) VALUES (?, ?, ?, ?, ?, ?, 'running')"
        );
        let args = [
            text(&run.table.namespace),
            text(&run.table.table),
            text(kind),
            Arg::Text(run.reason.map(str::to_owned)),
            Arg::Time(run.since),
            Arg::Time(Some(Utc::now())),
        ];
        let id = if d == Dialect::Mysql {
            tx.execute(&insert, &args)
                .await
                .map_err(DbError::sql(context))?;
            tx.fetch("SELECT CAST(LAST_INSERT_ID() AS SIGNED)", &[], &[Kind::Int])
                .await
        } else {
            tx.fetch(&format!("{insert} RETURNING id"), &args, &[Kind::Int])
                .await
        }
        .map_err(DbError::sql(context))?
        .first()
        .and_then(|row| row[0].int())
        .ok_or(DbError::NoRunId)?;
        tx.commit().await.map_err(DbError::sql(context))?;
        Ok(id)
    }

    /// The latest runs, newest first, optionally of one table.
    pub async fn recent_runs(
        &self,
        table: Option<(&str, &str)>,
        limit: i64,
    ) -> Result<Vec<RunRecord>, DbError> {
        self.runs(&super::RunFilter {
            namespace: table.map(|(ns, _)| ns.to_owned()),
            table: table.map(|(_, t)| t.to_owned()),
            limit,
            ..super::RunFilter::default()
        })
        .await
    }
}

/// Writes the outcome of a run.
pub(crate) async fn finish_run(
    tx: &mut Tx,
    run_id: i64,
    outcome: RunOutcome,
    result: &RunResult,
    error: Option<&RunError>,
) -> Result<(), DbError> {
    let runs = tx.dialect().own_table("runs");
    tx.execute(
        &format!(
            "UPDATE {runs} SET outcome = ?, finished_at = ?, job_id = COALESCE(?, job_id), until = ?, schema_version = ?, rows_upserted = ?, \
             rows_deleted = ?, rows_rejected = ?, bytes = ?, error_type = ?, error_uuid = ?, error_message = ? WHERE id = ?"
        ),
        &[
            text(outcome.as_str()),
            Arg::Time(Some(Utc::now())),
            Arg::Text(result.job_id.clone()),
            Arg::Time(result.until),
            Arg::Int(result.schema_version),
            Arg::Int(Some(result.upserted)),
            Arg::Int(Some(result.deleted)),
            Arg::Int(Some(result.rejected)),
            Arg::Int(Some(result.bytes)),
            Arg::Text(error.map(|e| e.error_type.clone())),
            Arg::Text(error.and_then(|e| e.uuid.clone())),
            Arg::Text(error.map(|e| e.message.clone())),
            Arg::Int(Some(run_id)),
        ],
    )
    .await
    .map_err(DbError::sql("recording the end of a run"))?;
    Ok(())
}
