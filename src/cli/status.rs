//! `dapsync status`: the state of every synced table, as a table, JSON or CSV.

use chrono::Utc;

use crate::app::{self, EXIT_FAILURE, Error};
use crate::config::Config;
use crate::sync::TableStatus;

/// A table's state in one word.
pub fn state_word(status: &TableStatus) -> &'static str {
    if status.paused_at.is_some() {
        "paused"
    } else if status.consecutive_failures > 0 {
        "failing"
    } else if status.synced_until.is_some() {
        "ok"
    } else {
        "not synced"
    }
}

pub(super) async fn status_command(
    config: &Config,
    namespace: Option<String>,
    table: Option<String>,
    json: bool,
    csv: bool,
) -> Result<i32, Error> {
    let statuses: Vec<TableStatus> = app::table_statuses(config)
        .await?
        .into_iter()
        .filter(|s| namespace.as_ref().is_none_or(|ns| &s.namespace == ns))
        .filter(|s| {
            table
                .as_ref()
                .is_none_or(|t| t.split(',').any(|t| t == "all" || t == s.table))
        })
        .collect();
    let now = Utc::now();
    let lag = |s: &TableStatus| s.synced_until.map(|t| (now - t).num_seconds());
    if json {
        let rows: Vec<serde_json::Value> = statuses
            .iter()
            .map(|s| {
                let mut value = serde_json::to_value(s).unwrap_or_default();
                value["state"] = state_word(s).into();
                value["lag_seconds"] = lag(s).into();
                value
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
    } else if csv {
        print_csv(&statuses, &lag).await?;
    } else {
        print_status_table(&statuses);
    }
    let failing = statuses
        .iter()
        .filter(|s| s.consecutive_failures > 0)
        .count();
    if failing > 0 {
        for s in statuses.iter().filter(|s| s.consecutive_failures > 0) {
            eprintln!(
                "{}.{}: failing: {}",
                s.namespace,
                s.table,
                s.last_error_message.as_deref().unwrap_or("-")
            );
        }
        return Ok(EXIT_FAILURE);
    }
    Ok(0)
}

/// Prints statuses as the table `dapsync status` shows (state, synced until, lag, schema, rows,
/// last error).
pub fn print_status_table(statuses: &[TableStatus]) {
    let now = Utc::now();
    let lag = |s: &TableStatus| s.synced_until.map(|t| (now - t).num_seconds());
    println!(
        "{:<40} {:<10} {:<28} {:>10} {:>7} {:>12}  LAST ERROR",
        "TABLE", "STATE", "SYNCED UNTIL", "LAG", "SCHEMA", "ROWS"
    );
    for s in statuses {
        println!(
            "{:<40} {:<10} {:<28} {:>10} {:>7} {:>12}  {}",
            format!("{}.{}", s.namespace, s.table),
            state_word(s),
            s.synced_until
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
                .unwrap_or_else(|| "-".into()),
            lag(s).map(human_seconds).unwrap_or_else(|| "-".into()),
            s.schema_version
                .map(|v| format!("v{v}"))
                .unwrap_or_else(|| "-".into()),
            s.row_count
                .map(|r| r.to_string())
                .unwrap_or_else(|| "-".into()),
            match (&s.last_error_type, &s.last_error_message) {
                (Some(kind), Some(message)) if s.consecutive_failures > 0 => {
                    format!(
                        "{kind} (uuid {}): {message}",
                        s.last_error_uuid.as_deref().unwrap_or("-")
                    )
                }
                _ => "-".into(),
            }
        );
    }
}

async fn print_csv(
    statuses: &[TableStatus],
    lag: &dyn Fn(&TableStatus) -> Option<i64>,
) -> Result<(), Error> {
    let io = |source| Error::Io {
        context: "writing CSV".into(),
        source,
    };
    let mut writer = csv_async::AsyncWriter::from_writer(tokio::io::stdout());
    writer
        .write_record([
            "namespace",
            "table",
            "state",
            "synced_until",
            "lag_seconds",
            "schema_version",
            "rows",
            "error_type",
            "error_uuid",
            "error",
        ])
        .await
        .map_err(|e| io(e.into()))?;
    for s in statuses {
        let failing = s.consecutive_failures > 0;
        writer
            .write_record([
                s.namespace.clone(),
                s.table.clone(),
                state_word(s).to_owned(),
                s.synced_until
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
                    .unwrap_or_default(),
                lag(s).map(|l| l.to_string()).unwrap_or_default(),
                s.schema_version.map(|v| v.to_string()).unwrap_or_default(),
                s.row_count.map(|r| r.to_string()).unwrap_or_default(),
                s.last_error_type
                    .clone()
                    .filter(|_| failing)
                    .unwrap_or_default(),
                s.last_error_uuid
                    .clone()
                    .filter(|_| failing)
                    .unwrap_or_default(),
                s.last_error_message
                    .clone()
                    .filter(|_| failing)
                    .unwrap_or_default(),
            ])
            .await
            .map_err(|e| io(e.into()))?;
    }
    writer.flush().await.map_err(io)
}

/// `93s`, `14m`, `5h12m`, `3d4h`.
pub fn human_seconds(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        s if s < 120 => format!("{s}s"),
        s if s < 7_200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h{:02}m", s / 3_600, (s % 3_600) / 60),
        s => format!("{}d{}h", s / 86_400, (s % 86_400) / 3_600),
    }
}
