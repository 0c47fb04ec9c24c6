//! The run history: a row per table run, started, finished or failed, and read back for
//! `dapsync status` and `/status`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::control::text;
use super::query::{Arg, Kind, Tx};
use super::{Db, DbError};
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

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunOutcome {
    Running,
    Success,
    Failed,
    /// The process died during the run; nothing of it was applied.
    Interrupted,
}

impl RunOutcome {
    fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Running => "running",
            RunOutcome::Success => "success",
            RunOutcome::Failed => "failed",
            RunOutcome::Interrupted => "interrupted",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "success" => RunOutcome::Success,
            "failed" => RunOutcome::Failed,
            "running" => RunOutcome::Running,
            _ => RunOutcome::Interrupted,
        }
    }
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
        let d = self.dialect();
        let filter = if table.is_some() {
            "WHERE namespace = ? AND table_name = ?"
        } else {
            ""
        };
        let mut args: Vec<Arg> = table
            .map(|(ns, t)| vec![text(ns), text(t)])
            .unwrap_or_default();
        args.push(Arg::Int(Some(limit)));
        let rows = self
            .fetch(
                &format!(
                    "SELECT id, namespace, table_name, kind, reason, job_id, since, until, schema_version, rows_upserted, rows_deleted, \
                     rows_rejected, bytes, started_at, finished_at, outcome, error_type, error_uuid, error_message, warnings FROM {} {filter} \
                     ORDER BY id DESC LIMIT ?",
                    d.own_table("runs")
                ),
                &args,
                &[
                    Kind::Int,
                    Kind::Text,
                    Kind::Text,
                    Kind::Text,
                    Kind::Text,
                    Kind::Text,
                    Kind::Time,
                    Kind::Time,
                    Kind::Int,
                    Kind::Int,
                    Kind::Int,
                    Kind::Int,
                    Kind::Int,
                    Kind::Time,
                    Kind::Time,
                    Kind::Text,
                    Kind::Text,
                    Kind::Text,
                    Kind::Text,
                    Kind::Text,
                ],
                "reading the run history",
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| RunRecord {
                id: r[0].int().unwrap_or_default(),
                namespace: r[1].text().unwrap_or_default(),
                table: r[2].text().unwrap_or_default(),
                kind: r[3].text().unwrap_or_default(),
                reason: r[4].text(),
                job_id: r[5].text(),
                since: r[6].time(),
                until: r[7].time(),
                schema_version: r[8].int(),
                rows_upserted: r[9].int().unwrap_or_default(),
                rows_deleted: r[10].int().unwrap_or_default(),
                rows_rejected: r[11].int().unwrap_or_default(),
                bytes: r[12].int().unwrap_or_default(),
                started_at: r[13].time(),
                finished_at: r[14].time(),
                outcome: RunOutcome::parse(&r[15].text().unwrap_or_default()),
                error_type: r[16].text(),
                error_uuid: r[17].text(),
                error_message: r[18].text(),
                warnings: super::preserve::parse_warnings(r[19].text()),
            })
            .collect())
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
