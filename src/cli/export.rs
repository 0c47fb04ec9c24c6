//! `dapsync snapshot` and `dapsync incremental`: the official client's file commands.

use std::path::PathBuf;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use clap::Args;

use crate::app::{self, EXIT_FAILURE, Error};
use crate::config::Config;
use crate::dap::Format;
use crate::export::{ExportOptions, Since, Window, export_table};

/// Options of `dapsync snapshot` (and of `dapsync incremental`).
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// DAP namespace, such as `canvas`.
    #[arg(long)]
    pub namespace: String,
    /// A table, a comma-separated list, or `all`.
    #[arg(long)]
    pub table: String,
    /// The format asked of the API.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    pub format: Format,
    /// Job folders `job_<job id>/` go here.
    #[arg(long, default_value = "downloads", value_name = "DIR")]
    pub output_directory: PathBuf,
    /// Write the gzip objects of jsonl, tsv and csv decompressed (not for parquet).
    #[arg(long)]
    pub decompress: bool,
}

/// Options of `dapsync incremental`.
#[derive(Debug, Clone, Args)]
pub struct IncrementalArgs {
    #[command(flatten)]
    pub export: ExportArgs,
    /// The first instant included (`2022-06-13T09:30:00Z`, an offset such as `+02:00`), or
    /// `last`: where the table's newest manifest in the output directory ends.
    #[arg(long, value_name = "TS|last")]
    pub since: String,
    /// The last instant included (default: the latest commit).
    #[arg(long, value_name = "TS")]
    pub until: Option<String>,
}

/// `dapsync snapshot`.
pub async fn snapshot_command(config: &Config, args: ExportArgs) -> Result<i32, Error> {
    run(config, args, Window::Snapshot).await
}

/// `dapsync incremental`.
pub async fn incremental_command(config: &Config, args: IncrementalArgs) -> Result<i32, Error> {
    let since = match args.since.as_str() {
        "last" => Since::Last,
        text => Since::At(parse_timestamp("--since", text)?),
    };
    let until = args
        .until
        .as_deref()
        .map(|text| parse_timestamp("--until", text))
        .transpose()?;
    run(config, args.export, Window::Incremental { since, until }).await
}

/// A timestamp as the official client takes it: RFC 3339 with `Z` or an offset; without one,
/// UTC.
fn parse_timestamp(option: &str, text: &str) -> Result<DateTime<Utc>, Error> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.to_utc())
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })
        .ok_or_else(|| {
            Error::Usage(format!(
                "{option} {text:?}: expected a timestamp such as 2022-06-13T09:30:00Z or 2022-06-13T11:30:00+02:00"
            ))
        })
}

async fn run(config: &Config, args: ExportArgs, window: Window) -> Result<i32, Error> {
    if args.decompress && !args.format.is_gzip() {
        return Err(Error::Usage(
            "--decompress applies to jsonl, tsv and csv: parquet files are compressed inside"
                .into(),
        ));
    }
    let dap = app::dap_client(config)?;
    let tables = app::named_tables(&dap, &args.namespace, &args.table).await?;
    let options = ExportOptions {
        directory: args.output_directory,
        format: args.format,
        decompress: args.decompress,
        progress_bar: crate::telemetry::interactive_terminal(),
    };
    let mut failed = 0;
    for crate::table::TableId { namespace, table } in tables {
        match export_table(&dap, &namespace, &table, window, &options).await {
            Ok(exported) => {
                let manifest = &exported.manifest;
                let time = |t: Option<DateTime<Utc>>| {
                    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
                        .unwrap_or_default()
                };
                let covers = match manifest.at {
                    Some(at) => format!("snapshot at {}", time(Some(at))),
                    None => format!(
                        "incremental from {} until {}",
                        time(manifest.since),
                        time(manifest.until)
                    ),
                };
                println!(
                    "{namespace}.{table}: {covers} (schema v{}): {} files, {} bytes in {} ({} downloaded now)",
                    manifest.schema_version,
                    manifest.files.len(),
                    manifest.bytes(),
                    exported.folder.display(),
                    exported.downloaded,
                );
            }
            Err(error) => {
                failed += 1;
                tracing::error!(namespace, table, error = %crate::error::chain(&error), "export failed");
                println!(
                    "{namespace}.{table}: FAILED: {}",
                    crate::error::chain(&error)
                );
            }
        }
    }
    Ok(if failed > 0 { EXIT_FAILURE } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_take_z_offsets_or_none() {
        let utc = parse_timestamp("--since", "2022-06-13T09:30:00Z").unwrap();
        assert_eq!(
            parse_timestamp("--since", "2022-06-13T11:30:00+02:00").unwrap(),
            utc
        );
        assert_eq!(
            parse_timestamp("--since", "2022-06-13T09:30:00").unwrap(),
            utc
        );
        let error = parse_timestamp("--until", "yesterday").unwrap_err();
        assert!(
            error.to_string().starts_with("--until \"yesterday\""),
            "{error}"
        );
    }
}
