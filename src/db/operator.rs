//! What operators change from outside the schedule (migration 0004): a table paused, a cancel
//! asked for, and the run history read with filters and pages. Every replica and the shell
//! commands see the same rows.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::query::{Arg, Kind};
use super::runs::RunRecord;
use super::{Db, DbError};
use crate::run::RunOutcome;

/// The operator's controls of one table.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TableControl {
    pub namespace: String,
    pub table: String,
    /// Since when the table is paused; `None`: it runs on its schedule.
    pub paused_at: Option<DateTime<Utc>>,
    /// When a cancel of its running run was last asked for.
    pub cancel_requested_at: Option<DateTime<Utc>>,
}

/// Which runs [`Db::runs`] returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    pub namespace: Option<String>,
    pub table: Option<String>,
    pub outcome: Option<RunOutcome>,
    /// Only runs older than this run id (the previous page's last `id`).
    pub before: Option<i64>,
    pub limit: i64,
}

/// A run's time split, for the run history.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RunTimes {
    /// Waiting for the query budget.
    pub queued_ms: i64,
    /// The API: schema, query and job.
    pub api_ms: i64,
    /// The rest: downloading and loading.
    pub load_ms: i64,
}

fn text(value: &str) -> Arg {
    Arg::Text(Some(value.to_owned()))
}

impl Db {
    /// The controls of every table that has any.
    pub async fn table_controls(&self) -> Result<Vec<TableControl>, DbError> {
        let rows = self
            .fetch(
                &format!(
                    "SELECT namespace, table_name, paused_at, cancel_requested_at FROM {} ORDER BY namespace, table_name",
                    self.dialect().own_table("table_control")
                ),
                &[],
                &[Kind::Text, Kind::Text, Kind::Time, Kind::Time],
                "reading table_control",
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| TableControl {
                namespace: r[0].text().unwrap_or_default(),
                table: r[1].text().unwrap_or_default(),
                paused_at: r[2].time(),
                cancel_requested_at: r[3].time(),
            })
            .collect())
    }

    /// The controls of one table (all unset if it has none).
    pub async fn table_control(
        &self,
        namespace: &str,
        table: &str,
    ) -> Result<TableControl, DbError> {
        let found = self
            .table_controls()
            .await?
            .into_iter()
            .find(|c| c.namespace == namespace && c.table == table);
        let mut control = found.unwrap_or_else(|| TableControl {
            namespace: namespace.to_owned(),
            table: table.to_owned(),
            ..TableControl::default()
        });
        let asked = self
            .cancel_file(namespace, table)
            .and_then(|file| std::fs::read_to_string(file).ok())
            .and_then(|text| DateTime::parse_from_rfc3339(text.trim()).ok())
            .map(|at| at.with_timezone(&Utc));
        control.cancel_requested_at = control.cancel_requested_at.max(asked);
        Ok(control)
    }

    /// SQLite (a file): where a cancel of the table is asked for beside the database, next to
    /// its lock file, for a run whose load holds the database's one write lock.
    fn cancel_file(&self, namespace: &str, table: &str) -> Option<PathBuf> {
        let mut dir = self.sqlite_path.clone()?.into_os_string();
        dir.push(".locks");
        let name = format!("dapsync:{namespace}.{table}");
        Some(PathBuf::from(dir).join(format!(
            "{:016x}.cancel",
            crate::hash::fnv1a(name.as_bytes())
        )))
    }

    /// Pauses a table (the schedule skips it until resumed) or resumes it. Pausing a paused
    /// table keeps its first `paused_at`.
    pub async fn set_paused(
        &self,
        namespace: &str,
        table: &str,
        paused: bool,
    ) -> Result<TableControl, DbError> {
        let now = Utc::now();
        let set = if paused {
            "paused_at = COALESCE(paused_at, ?), updated_at = ?"
        } else {
            "paused_at = NULL, updated_at = ?"
        };
        let mut args = Vec::new();
        if paused {
            args.push(Arg::Time(Some(now)));
        }
        args.push(Arg::Time(Some(now)));
        let paused_at = Arg::Time(paused.then_some(now));
        self.upsert_control(namespace, table, set, args, ("paused_at", paused_at))
            .await?;
        self.table_control(namespace, table).await
    }

    /// Asks whichever process runs the table to cancel its run.
    pub async fn request_cancel(&self, namespace: &str, table: &str) -> Result<(), DbError> {
        let at = Utc::now();
        if let Some(file) = self.cancel_file(namespace, table) {
            // First beside the database: the run to cancel may hold SQLite's one write lock
            // until it ends, and reads this file meanwhile. The row follows once it stopped.
            let written = file
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&file, at.to_rfc3339()));
            if let Err(source) = written {
                return Err(DbError::Io {
                    context: format!("asking for a cancel in {}", file.display()),
                    source,
                });
            }
        }
        let now = Arg::Time(Some(at));
        self.upsert_control(
            namespace,
            table,
            "cancel_requested_at = ?, updated_at = ?",
            vec![now.clone(), now.clone()],
            ("cancel_requested_at", now),
        )
        .await
    }

    /// Updates a table's control row with `set` (and its `args`), or inserts one with `column`.
    async fn upsert_control(
        &self,
        namespace: &str,
        table: &str,
        set: &str,
        args: Vec<Arg>,
        column: (&str, Arg),
    ) -> Result<(), DbError> {
        let control = self.dialect().own_table("table_control");
        let context = "writing table_control";
        // Twice: a concurrent insert of the same row makes the first insert fail.
        let mut retried = false;
        loop {
            let mut tx = self.begin().await?;
            let mut update_args = args.clone();
            update_args.extend([text(namespace), text(table)]);
            let updated = tx
                .execute(
                    &format!("UPDATE {control} SET {set} WHERE namespace = ? AND table_name = ?"),
                    &update_args,
                )
                .await
                .map_err(DbError::sql(context))?;
            if updated == 0 {
                let inserted = tx
                    .execute(
                        &format!(
                            "INSERT INTO {control} (namespace, table_name, {}, updated_at) VALUES (?, ?, ?, ?)",
                            column.0
                        ),
                        &[
                            text(namespace),
                            text(table),
                            column.1.clone(),
                            Arg::Time(Some(Utc::now())),
                        ],
                    )
                    .await;
                if let Err(error) = inserted {
                    let error = DbError::sql(context)(error);
                    if error.is_unique_violation() && !retried {
                        retried = true;
                        continue;
                    }
                    return Err(error);
                }
            }
            return tx.commit().await.map_err(DbError::sql(context));
        }
    }

    /// Marks the table's runs left `running` as cancelled, once the run was dropped (its
    /// transaction rolled back). The caller holds the table's lock.
    pub async fn cancel_running_runs(&self, namespace: &str, table: &str) -> Result<u64, DbError> {
        if let Some(file) = self.cancel_file(namespace, table) {
            // Done with; a missing file is fine.
            let _ = std::fs::remove_file(file);
        }
        let mut tx = self.begin().await?;
        let context = "recording a cancelled run";
        let cancelled = tx
            .execute(
                &format!(
                    "UPDATE {} SET outcome = 'cancelled', finished_at = ?, error_type = 'Cancelled', \
                     error_message = 'cancelled by an operator; nothing of the run was applied' \
                     WHERE namespace = ? AND table_name = ? AND outcome = 'running'",
                    self.dialect().own_table("runs")
                ),
                &[Arg::Time(Some(Utc::now())), text(namespace), text(table)],
            )
            .await
            .map_err(DbError::sql(context))?;
        tx.commit().await.map_err(DbError::sql(context))?;
        Ok(cancelled)
    }

    /// Records the table's runs under way as interrupted: the daemon stopped while they waited
    /// for the query budget, before anything of them was applied. Returns how many.
    pub async fn interrupt_running_runs(
        &self,
        namespace: &str,
        table: &str,
    ) -> Result<u64, DbError> {
        let mut tx = self.begin().await?;
        let context = "recording an interrupted run";
        let interrupted = tx
            .execute(
                &format!(
                    "UPDATE {} SET outcome = 'interrupted', finished_at = ?, error_type = 'Stopped', \
                     error_message = 'the daemon stopped while the run waited for the query budget; nothing of the run was applied' \
                     WHERE namespace = ? AND table_name = ? AND outcome = 'running'",
                    self.dialect().own_table("runs")
                ),
                &[Arg::Time(Some(Utc::now())), text(namespace), text(table)],
            )
            .await
            .map_err(DbError::sql(context))?;
        tx.commit().await.map_err(DbError::sql(context))?;
        Ok(interrupted)
    }

    /// Whether the run history has a run of the table under way (in some process).
    pub async fn has_running_run(&self, namespace: &str, table: &str) -> Result<bool, DbError> {
        let rows = self
            .fetch(
                &format!(
                    "SELECT count(*) FROM {} WHERE namespace = ? AND table_name = ? AND outcome = 'running'",
                    self.dialect().own_table("runs")
                ),
                &[text(namespace), text(table)],
                &[Kind::Int],
                "reading the run history",
            )
            .await?;
        Ok(rows.first().and_then(|r| r[0].int()).unwrap_or(0) > 0)
    }

    /// Records how a run's time split up.
    pub async fn record_run_times(&self, run_id: i64, times: RunTimes) -> Result<(), DbError> {
        let mut tx = self.begin().await?;
        let context = "recording a run's times";
        tx.execute(
            &format!(
                "UPDATE {} SET queued_ms = ?, api_ms = ?, load_ms = ? WHERE id = ?",
                self.dialect().own_table("runs")
            ),
            &[
                Arg::Int(Some(times.queued_ms)),
                Arg::Int(Some(times.api_ms)),
                Arg::Int(Some(times.load_ms)),
                Arg::Int(Some(run_id)),
            ],
        )
        .await
        .map_err(DbError::sql(context))?;
        tx.commit().await.map_err(DbError::sql(context))
    }

    /// The run history, newest first, as `filter` selects.
    pub async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, DbError> {
        let mut conditions = Vec::new();
        let mut args = Vec::new();
        if let Some(namespace) = &filter.namespace {
            conditions.push("namespace = ?");
            args.push(text(namespace));
        }
        if let Some(table) = &filter.table {
            conditions.push("table_name = ?");
            args.push(text(table));
        }
        if let Some(outcome) = filter.outcome {
            conditions.push("outcome = ?");
            args.push(text(outcome.as_str()));
        }
        if let Some(before) = filter.before {
            conditions.push("id < ?");
            args.push(Arg::Int(Some(before)));
        }
        let filter_sql = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        args.push(Arg::Int(Some(filter.limit.max(0))));
        let mut kinds = vec![
            Kind::Int,
            Kind::Text,
            Kind::Text,
            Kind::Text,
            Kind::Text,
            Kind::Text,
        ];
        kinds.extend([
            Kind::Time,
            Kind::Time,
            Kind::Int,
            Kind::Int,
            Kind::Int,
            Kind::Int,
        ]);
        kinds.extend([
            Kind::Int,
            Kind::Time,
            Kind::Time,
            Kind::Text,
            Kind::Text,
            Kind::Text,
        ]);
        kinds.extend([Kind::Text, Kind::Text, Kind::Int, Kind::Int, Kind::Int]);
        let rows = self
            .fetch(
                &format!(
                    "SELECT id, namespace, table_name, kind, reason, job_id, since, until, schema_version, rows_upserted, rows_deleted, \
                     rows_rejected, bytes, started_at, finished_at, outcome, error_type, error_uuid, error_message, warnings, \
                     queued_ms, api_ms, load_ms FROM {} {filter_sql} ORDER BY id DESC LIMIT ?",
                    self.dialect().own_table("runs")
                ),
                &args,
                &kinds,
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
                queued_seconds: r[20].int().map(seconds),
                api_seconds: r[21].int().map(seconds),
                load_seconds: r[22].int().map(seconds),
            })
            .collect())
    }
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}
