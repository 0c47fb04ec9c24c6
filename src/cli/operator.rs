//! `dapsync pause`, `resume`, `cancel` and `runs`: the control API's actions for the shell,
//! working on the database directly, so they reach a daemon that runs elsewhere (every replica
//! reads the same control tables).

use clap::Args;
use serde_json::json;

use crate::app;
use crate::app::Error;
use crate::config::Config;
use crate::db::{RunFilter, RunOutcome, RunRecord};

/// One table.
#[derive(Debug, Clone, Args)]
pub struct OneTable {
    #[arg(long)]
    pub namespace: String,
    #[arg(long)]
    pub table: String,
}

/// Options of `dapsync runs`.
#[derive(Debug, Clone, Args)]
pub struct RunsArgs {
    #[arg(long)]
    pub namespace: Option<String>,
    #[arg(long, requires = "namespace")]
    pub table: Option<String>,
    /// Only runs with this outcome: running, success, failed, interrupted, cancelled.
    #[arg(long)]
    pub outcome: Option<String>,
    /// How many runs (newest first).
    #[arg(long, default_value_t = 20)]
    pub limit: i64,
    /// Only runs older than this run id (the last id of the previous page).
    #[arg(long)]
    pub before: Option<i64>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `dapsync pause` and `dapsync resume`.
pub(super) async fn pause_command(
    config: &Config,
    table: OneTable,
    paused: bool,
) -> Result<i32, Error> {
    let db = app::control_database(config).await?;
    let control = db.set_paused(&table.namespace, &table.table, paused).await;
    db.close().await;
    let control = control?;
    match control.paused_at {
        Some(at) => println!(
            "{}.{}: paused since {} (the schedule skips it until `dapsync resume`)",
            table.namespace,
            table.table,
            at.to_rfc3339()
        ),
        None => println!("{}.{}: resumed", table.namespace, table.table),
    }
    Ok(0)
}

/// `dapsync cancel`: asks whichever daemon runs the table to stop its run (it rolls back within
/// a few seconds). Exit code 1 when no run is under way.
pub(super) async fn cancel_command(config: &Config, table: OneTable) -> Result<i32, Error> {
    let db = app::control_database(config).await?;
    let result = async {
        if !db.has_running_run(&table.namespace, &table.table).await? {
            return Ok(false);
        }
        db.request_cancel(&table.namespace, &table.table).await?;
        Ok::<_, crate::db::DbError>(true)
    }
    .await;
    db.close().await;
    if result? {
        println!(
            "{}.{}: cancel requested; the daemon running it rolls the run back",
            table.namespace, table.table
        );
        Ok(0)
    } else {
        eprintln!("{}.{}: no run is under way", table.namespace, table.table);
        Ok(1)
    }
}

/// `dapsync runs`: the run history, newest first.
pub(super) async fn runs_command(config: &Config, args: RunsArgs) -> Result<i32, Error> {
    let outcome = match args.outcome.as_deref() {
        None => None,
        Some(text) if RunOutcome::parse(text).as_str() == text => Some(RunOutcome::parse(text)),
        Some(text) => return Err(Error::Usage(format!("unknown outcome `{text}`"))),
    };
    let filter = RunFilter {
        namespace: args.namespace,
        table: args.table,
        outcome,
        before: args.before,
        limit: args.limit.max(1),
    };
    let db = app::control_database(config).await?;
    let runs = db.runs(&filter).await;
    db.close().await;
    let runs = runs?;
    if args.json {
        let next_before = (runs.len() as i64 == filter.limit)
            .then(|| runs.last().map(|r| r.id))
            .flatten();
        let out = json!({ "runs": runs, "next_before": next_before });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        print_runs(&runs);
    }
    Ok(0)
}

fn print_runs(runs: &[RunRecord]) {
    let seconds = |s: Option<f64>| s.map_or("-".to_owned(), |s| format!("{s:.1}"));
    println!(
        "{:>6}  {:<32} {:<11} {:<17} {:<11} {:>9} {:>8} {:>7} {:>7} {:>7}  error",
        "id", "table", "kind", "reason", "outcome", "upserted", "deleted", "queued", "api", "load"
    );
    for run in runs {
        println!(
            "{:>6}  {:<32} {:<11} {:<17} {:<11} {:>9} {:>8} {:>7} {:>7} {:>7}  {}{}",
            run.id,
            format!("{}.{}", run.namespace, run.table),
            run.kind,
            run.reason.as_deref().unwrap_or("-"),
            run.outcome.as_str(),
            run.rows_upserted,
            run.rows_deleted,
            seconds(run.queued_seconds),
            seconds(run.api_seconds),
            seconds(run.load_seconds),
            run.error_type.as_deref().unwrap_or(""),
            run.error_uuid
                .as_deref()
                .map(|u| format!(" ({u})"))
                .unwrap_or_default(),
        );
    }
}
