//! The official `dap` client's command line, accepted as it is: its global options (before the
//! command), and its commands `initdb`, `syncdb`, `dropdb`, `listdb` and `schema` with their
//! options, so that replacing `dap` with `dapsync` in a script is the whole migration. (`list`,
//! `snapshot` and `incremental` are dapsync's own commands, which take the same options.)

use std::fmt;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::app;
use crate::app::Error;
use crate::config::{Config, DatabaseUrl, LogFormat};
use crate::schema::TableSchema;
use crate::secret::Secret;
use crate::table::TableId;

/// The official client's global options. Each one overrides the configuration.
#[derive(Clone, Default, Args)]
#[command(next_help_heading = "Options of the official `dap` client")]
pub struct GlobalArgs {
    /// The DAP API's base URL (dap.base_url; env DAP_API_URL).
    #[arg(long, global = true, value_name = "URL")]
    pub base_url: Option<String>,
    /// The client id (dap.client_id; env DAP_CLIENT_ID).
    #[arg(long, global = true, value_name = "ID")]
    pub client_id: Option<String>,
    /// The client secret (dap.client_secret; env DAP_CLIENT_SECRET, which keeps it out of the
    /// process list).
    #[arg(long, global = true, value_name = "SECRET")]
    pub client_secret: Option<String>,
    /// Log level, as the official client names it.
    #[arg(long, global = true, value_enum)]
    pub loglevel: Option<OfficialLevel>,
    /// Also write the log to this file.
    #[arg(long, global = true, value_name = "PATH")]
    pub logfile: Option<PathBuf>,
    /// Log format: plain (dapsync's text) or json.
    #[arg(long, global = true, value_enum)]
    pub logformat: Option<OfficialLogFormat>,
    /// No log on stderr (only in the --logfile, if any).
    #[arg(long, global = true)]
    pub no_log_to_console: bool,
    /// Accepted and ignored: dapsync sends no analytics.
    #[arg(long, global = true)]
    pub no_tracking: bool,
    /// No progress line and no colours (for scripts).
    #[arg(long, global = true)]
    pub non_interactive: bool,
    /// Accepted and ignored: dapsync's console has no colour themes.
    #[arg(long, global = true, value_enum)]
    pub console_theme: Option<ConsoleTheme>,
}

/// The secret is never shown.
impl fmt::Debug for GlobalArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlobalArgs")
            .field("base_url", &self.base_url)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("loglevel", &self.loglevel)
            .field("logfile", &self.logfile)
            .field("logformat", &self.logformat)
            .field("no_log_to_console", &self.no_log_to_console)
            .field("non_interactive", &self.non_interactive)
            .finish_non_exhaustive()
    }
}

/// `--loglevel` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OfficialLevel {
    Debug,
    Info,
    Warning,
    Error,
}

/// `--logformat` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OfficialLogFormat {
    Plain,
    Json,
}

/// `--console-theme` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConsoleTheme {
    Dark,
    Light,
    HighContrastBw,
}

impl GlobalArgs {
    /// The configuration with the options given on the command line.
    pub fn apply(&self, mut config: Config) -> Config {
        if let Some(url) = &self.base_url {
            config.dap.base_url = url.clone();
        }
        if let Some(id) = &self.client_id {
            config.dap.client_id = Some(id.clone());
        }
        if let Some(secret) = &self.client_secret {
            config.dap.client_secret = Some(Secret::new(secret.clone()));
        }
        config
    }

    /// The log format and level, with the official options over `format` and `level`.
    pub fn logging(&self, format: LogFormat, level: String) -> (LogFormat, String) {
        let format = match self.logformat {
            Some(OfficialLogFormat::Plain) => LogFormat::Text,
            Some(OfficialLogFormat::Json) => LogFormat::Json,
            None => format,
        };
        let level = match self.loglevel {
            Some(OfficialLevel::Debug) => "debug".to_owned(),
            Some(OfficialLevel::Info) => "info".to_owned(),
            Some(OfficialLevel::Warning) => "warn".to_owned(),
            Some(OfficialLevel::Error) => "error".to_owned(),
            None => level,
        };
        (format, level)
    }

    /// Where the log goes.
    pub fn log_outputs(&self) -> crate::telemetry::Outputs {
        crate::telemetry::Outputs {
            console: !self.no_log_to_console,
            file: self.logfile.clone(),
        }
    }

    /// Whether a progress line may be drawn (on a terminal, unless `--non-interactive`).
    pub fn interactive(&self) -> bool {
        !self.non_interactive
    }
}

/// Options of `initdb`, `syncdb` and `dropdb`.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// The database (database.url; env DAP_CONNECTION_STRING), such as
    /// `postgresql://user:pass@host/db`.
    #[arg(long, value_name = "URL")]
    pub connection_string: Option<String>,
    /// DAP namespace, such as `canvas`.
    #[arg(long)]
    pub namespace: String,
    /// A table, a comma-separated list, or `all`.
    #[arg(long)]
    pub table: String,
}

impl DbArgs {
    /// The configuration with `--connection-string` over the database URL.
    pub fn config(&self, config: &Config) -> Config {
        with_connection_string(config, self.connection_string.as_deref())
    }

    /// The tables, as dapsync's own commands take them.
    pub fn tables(&self) -> super::TableArgs {
        super::TableArgs {
            namespace: Some(self.namespace.clone()),
            table: Some(self.table.clone()),
        }
    }
}

impl DbArgs {
    /// `dropdb`'s tables, as `dapsync drop` takes them.
    pub fn drop_args(&self) -> DropArgs {
        DropArgs {
            tables: self.tables(),
            all: false,
            yes: false,
        }
    }
}

/// Options of `dapsync drop`: it never drops everything by accident.
#[derive(Debug, Clone, Args)]
pub struct DropArgs {
    #[command(flatten)]
    pub tables: super::TableArgs,
    /// Every table of the configuration's selection (needs --yes).
    #[arg(long, conflicts_with_all = ["namespace", "table"])]
    pub all: bool,
    /// Confirms --all.
    #[arg(long)]
    pub yes: bool,
}

impl DropArgs {
    /// The tables to drop, once the command line has named them: `--namespace` and `--table`,
    /// or `--all` with `--yes`.
    pub fn checked(self) -> Result<super::TableArgs, Error> {
        let named = self.tables.namespace.is_some() && self.tables.table.is_some();
        match (named, self.all, self.yes) {
            (true, false, _) | (false, true, true) => Ok(self.tables),
            (false, true, false) => Err(Error::Usage(
                "--all drops every table of the configuration's selection: add --yes to confirm"
                    .into(),
            )),
            _ => Err(Error::Usage(
                "name the tables to drop with --namespace NS --table T (a list, or `all`), or use --all --yes"
                    .into(),
            )),
        }
    }
}

fn with_connection_string(config: &Config, url: Option<&str>) -> Config {
    let mut config = config.clone();
    if let Some(url) = url {
        config.database.url = DatabaseUrl::new(url.to_owned());
    }
    config
}

/// Options of `listdb`.
#[derive(Debug, Clone, Args)]
pub struct ListdbArgs {
    /// The database (database.url; env DAP_CONNECTION_STRING).
    #[arg(long, value_name = "URL")]
    pub connection_string: Option<String>,
    /// DAP namespace, such as `canvas`.
    #[arg(long)]
    pub namespace: String,
    /// Leave out the namespace's tables that are not in the database.
    #[arg(long)]
    pub omit_not_replicated: bool,
    /// Leave out the row counts.
    #[arg(long)]
    pub omit_record_count: bool,
}

/// `dapsync listdb`: every table of the namespace, and for those in the database their state,
/// how far they are synced, their schema version and row count.
pub async fn listdb_command(config: &Config, args: ListdbArgs) -> Result<i32, Error> {
    let config = with_connection_string(config, args.connection_string.as_deref());
    let tables = app::dap_client(&config)?
        .list_tables(&args.namespace)
        .await?;
    let db = app::database(&config).await?;
    let statuses = db.table_statuses().await?;
    db.close().await;
    let mut header = format!(
        "{:<40} {:<14} {:<28} {:>7}",
        "TABLE", "STATE", "SYNCED UNTIL", "SCHEMA"
    );
    if !args.omit_record_count {
        header.push_str(&format!(" {:>12}", "ROWS"));
    }
    println!("{header}");
    for table in tables {
        let status = statuses
            .iter()
            .find(|s| s.namespace == args.namespace && s.table == table);
        if status.is_none() && args.omit_not_replicated {
            continue;
        }
        let dash = || "-".to_owned();
        let mut line = format!(
            "{:<40} {:<14} {:<28} {:>7}",
            format!("{}.{table}", args.namespace),
            status.map_or("not replicated", super::status::state_word),
            status.and_then(|s| s.synced_until).map_or_else(dash, |t| t
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
            status
                .and_then(|s| s.schema_version)
                .map_or_else(dash, |v| format!("v{v}")),
        );
        if !args.omit_record_count {
            let rows = status.and_then(|s| s.row_count);
            line.push_str(&format!(
                " {:>12}",
                rows.map_or_else(dash, |r| r.to_string())
            ));
        }
        println!("{line}");
    }
    Ok(0)
}

/// Options of `schema`.
#[derive(Debug, Clone, Args)]
pub struct SchemaArgs {
    /// DAP namespace, such as `canvas`.
    #[arg(long)]
    pub namespace: String,
    /// A table, a comma-separated list, or `all`.
    #[arg(long)]
    pub table: String,
    /// Directory to write the files to.
    #[arg(long, alias = "output-dir", default_value = ".", value_name = "DIR")]
    pub output_directory: PathBuf,
}

/// `dapsync schema`: writes `<table>_schema_version_<N>.json` per table.
pub async fn schema_command(config: &Config, args: SchemaArgs) -> Result<i32, Error> {
    let dap = app::dap_client(config)?;
    let tables = app::named_tables(&dap, &args.namespace, &args.table).await?;
    std::fs::create_dir_all(&args.output_directory).map_err(|source| Error::Io {
        context: format!("creating {}", args.output_directory.display()),
        source,
    })?;
    for TableId { namespace, table } in tables {
        let envelope = dap.get_schema(&namespace, &table).await?;
        let schema = TableSchema::from_envelope(&namespace, &table, &envelope)?;
        let path = args
            .output_directory
            .join(format!("{table}_schema_version_{}.json", schema.version));
        let text = serde_json::to_string_pretty(&envelope["schema"]).unwrap_or_default();
        std::fs::write(&path, text + "\n").map_err(|source| Error::Io {
            context: format!("writing {}", path.display()),
            source,
        })?;
        println!("{}", path.display());
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_log_options_win_and_the_secret_is_never_shown() {
        let args = GlobalArgs {
            loglevel: Some(OfficialLevel::Warning),
            logformat: Some(OfficialLogFormat::Json),
            client_secret: Some("hunter2-secret".into()),
            ..GlobalArgs::default()
        };
        assert_eq!(
            args.logging(LogFormat::Text, "info".into()),
            (LogFormat::Json, "warn".to_owned())
        );
        assert!(!format!("{args:?}").contains("hunter2"));
        let config = args.apply(Config::default());
        assert_eq!(
            config.dap.client_secret.map(|s| s.expose().to_owned()),
            Some("hunter2-secret".to_owned())
        );
        let none = GlobalArgs::default();
        assert_eq!(
            none.logging(LogFormat::Text, "debug".into()),
            (LogFormat::Text, "debug".to_owned())
        );
    }
}
