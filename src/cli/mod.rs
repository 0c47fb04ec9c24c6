//! The command line: parses arguments, loads the configuration, sets up logging, and runs a
//! command. Exit codes: 0 success, 1 a table or the command failed, 2 invalid command line,
//! 3 invalid configuration.

pub mod bench;
pub mod demo;
mod export;
pub mod official;
mod operator;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::app;
use crate::app::{EXIT_CONFIG, EXIT_FAILURE, Error};
use crate::config::{Config, LogFormat};
use crate::schema::TableSchema;
use crate::sql::{DdlOptions, Dialect};
use crate::sync::{Mode, ProgressMode, RunReport};
use crate::table::TableId;
pub use operator::{OneTable, RunsArgs};

/// Keeps a database copy of Instructure DAP (Canvas Data 2) tables.
#[derive(Debug, Parser)]
#[command(name = "dapsync", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (default: config/dapsync.toml, then /etc/dapsync/dapsync.toml).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log format: text for people, json for log shippers.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log level or filter (`info`, `debug`, `dapsync=debug,sqlx=warn`); RUST_LOG wins.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
    #[command(flatten)]
    pub official: official::GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// A dapsync command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Lists the tables of a namespace.
    List {
        #[arg(long)]
        namespace: String,
    },
    /// Writes each table's current schema to `<table>_schema_version_<N>.json`.
    Schema(official::SchemaArgs),
    /// Prints the DDL dapsync would run for a table, for review before the first sync.
    Ddl {
        #[arg(long)]
        namespace: String,
        #[arg(long)]
        table: String,
        /// Database dialect (default: the configured database's).
        #[arg(long, value_enum)]
        dialect: Option<DialectArg>,
        /// Read the schema from this file (the API's envelope or a bare JSON schema) instead of
        /// the API.
        #[arg(long, value_name = "PATH")]
        schema_file: Option<PathBuf>,
    },
    /// Downloads a snapshot of tables as files into `DIR/job_<job id>/`, with a manifest.
    Snapshot(export::ExportArgs),
    /// Downloads the changes of tables since a time (or since the last export) as files.
    Incremental(export::IncrementalArgs),
    /// Snapshots tables that were never synced.
    Init(TableArgs),
    /// Brings tables up to date with incremental queries (snapshotting those never synced).
    Sync(TableArgs),
    /// Takes a new snapshot of tables whatever their state; each replaces its live table only
    /// when complete (merged into it for `sync.keep_history` tables).
    Resync(TableArgs),
    /// Drops replicated tables, their enum types and their control rows.
    Drop(official::DropArgs),
    /// The official client's `initdb`: `init` of `--table` into `--connection-string`.
    Initdb(official::DbArgs),
    /// The official client's `syncdb`: `sync` of `--table` in `--connection-string`.
    Syncdb(official::DbArgs),
    /// The official client's `dropdb`: `drop` of `--table` from `--connection-string`.
    Dropdb(official::DbArgs),
    /// The official client's `listdb`: the namespace's tables and their state in the database.
    Listdb(official::ListdbArgs),
    /// Shows each table's state, last sync, lag, schema version, rows and last error.
    Status {
        #[arg(long)]
        namespace: Option<String>,
        #[arg(long)]
        table: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// Print CSV instead of a table.
        #[arg(long)]
        csv: bool,
    },
    /// Pauses a table: the daemon (every replica) skips it until `dapsync resume`; kept across
    /// restarts.
    Pause(OneTable),
    /// Resumes a paused table.
    Resume(OneTable),
    /// Cancels a table's run under way (in whichever daemon runs it): it stops and rolls back.
    Cancel(OneTable),
    /// Shows the run history, newest first.
    Runs(RunsArgs),
    /// Runs the bundled fake DAP server on loopback (for trying dapsync offline).
    FakeDap(FakeDapArgs),
    /// Runs as a service: syncs the selected tables on their schedules, serves /healthz,
    /// /readyz, /status and /metrics, and stops cleanly on SIGTERM or SIGINT.
    Run,
    /// A first run: replicates a few tables from the bundled fake DAP server into a local
    /// SQLite file with the real daemon for a few rounds (about 20 s), then shows the status.
    Demo(demo::DemoArgs),
    /// Measures a snapshot and an incremental against the configured database, with the
    /// database's own bulk load as a baseline; prints rows/s, MB/s and peak memory.
    Bench(BenchArgs),
}

/// Options of `dapsync bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Rows in the table.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
    /// The table, as namespace.table.
    #[arg(long, default_value = "canvas.submissions")]
    pub table: String,
    /// Share of the rows the incremental changes, in percent.
    #[arg(long, default_value_t = 10.0)]
    pub change_percent: f64,
    /// Records per result object.
    #[arg(long, default_value_t = 100_000)]
    pub rows_per_object: usize,
    /// The database to measure (default: the configured one).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Where the JSON report goes.
    #[arg(long, default_value = "bench-results.json")]
    pub output: PathBuf,
}

/// Options of `dapsync fake-dap`.
#[derive(Debug, Clone, Args)]
pub struct FakeDapArgs {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Seed of the generated rows.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Extra rows for a table, as `namespace.table=rows` (repeatable).
    #[arg(long = "rows", value_name = "NS.TABLE=N")]
    pub rows: Vec<String>,
    /// Records per result object.
    #[arg(long, default_value_t = 1000)]
    pub rows_per_object: usize,
}

/// `dapsync config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Prints the effective configuration (secrets redacted) and checks it is complete.
    Check,
}

/// Which tables a command is about.
#[derive(Debug, Clone, Args)]
pub struct TableArgs {
    /// DAP namespace (default: every namespace of the configuration).
    #[arg(long)]
    pub namespace: Option<String>,
    /// A table, a comma-separated list, or `all` (default: the configuration's selection).
    #[arg(long, requires = "namespace")]
    pub table: Option<String>,
}

/// `--dialect` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DialectArg {
    Postgres,
    Mysql,
    Sqlite,
}

impl From<DialectArg> for Dialect {
    fn from(value: DialectArg) -> Self {
        match value {
            DialectArg::Postgres => Dialect::Postgres,
            DialectArg::Mysql => Dialect::Mysql,
            DialectArg::Sqlite => Dialect::Sqlite,
        }
    }
}

/// Parses the command line and runs the command; the process's entry point.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => cli.official.apply(config),
        Err(error) => {
            eprintln!("dapsync: {}", Error::from(error).chain());
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    if let Some(level) = &cli.log_level
        && let Err(reason) = crate::config::check_log_level(level)
    {
        eprintln!("dapsync: invalid configuration: --log-level: {reason}");
        return ExitCode::from(EXIT_CONFIG as u8);
    }
    let format = cli.log_format.unwrap_or(config.log.format);
    let level = match (&cli.log_level, &cli.command) {
        (Some(level), _) => level.clone(),
        // One line per table run, between the demo's own lines.
        (None, Command::Demo(_)) => "warn,dapsync::scheduler=info".to_owned(),
        (None, _) => config.log.level.clone(),
    };
    let (format, level) = cli.official.logging(format, level);
    crate::telemetry::set_interactive(cli.official.interactive());
    if let Err(error) = crate::telemetry::init_to(format, &level, &cli.official.log_outputs()) {
        eprintln!("dapsync: cannot set up logging: {error}");
        return ExitCode::from(EXIT_CONFIG as u8);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("dapsync: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(code) => ExitCode::from(code as u8),
        Err(error) => {
            tracing::error!(error = %error.chain(), "command failed");
            eprintln!("dapsync: {}", error.chain());
            ExitCode::from(error.exit_code() as u8)
        }
    }
}

/// Runs a command; returns the exit code.
pub async fn run(command: Command, config: Config) -> Result<i32, Error> {
    match command {
        Command::Config(ConfigCommand::Check) => {
            print!("{}", config.to_toml());
            config.dap_credentials()?;
            println!("# configuration is valid");
            Ok(0)
        }
        Command::List { namespace } => {
            for table in app::dap_client(&config)?.list_tables(&namespace).await? {
                println!("{table}");
            }
            Ok(0)
        }
        Command::Schema(args) => official::schema_command(&config, args).await,
        Command::Ddl {
            namespace,
            table,
            dialect,
            schema_file,
        } => {
            let schema = match schema_file {
                Some(path) => {
                    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
                        context: format!("reading {}", path.display()),
                        source,
                    })?;
                    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                        Error::Usage(format!("{} is not JSON: {e}", path.display()))
                    })?;
                    if json.get("schema").is_some() {
                        TableSchema::from_envelope(&namespace, &table, &json)?
                    } else {
                        TableSchema::from_json_schema(&namespace, &table, 1, &json)?
                    }
                }
                None => {
                    let envelope = app::dap_client(&config)?
                        .get_schema(&namespace, &table)
                        .await?;
                    TableSchema::from_envelope(&namespace, &table, &envelope)?
                }
            };
            let dialect = match dialect {
                Some(d) => d.into(),
                None => config.database.url.dialect()?,
            };
            let options = DdlOptions {
                enum_mode: config.database.enum_mode,
                drop_removed_columns: config.database.drop_removed_columns,
            };
            print!("{}", dialect.render_ddl(&schema, &options));
            Ok(0)
        }
        Command::Snapshot(args) => export::snapshot_command(&config, args).await,
        Command::Incremental(args) => export::incremental_command(&config, args).await,
        Command::Init(args) => sync_command(&config, args, Mode::Init).await,
        Command::Sync(args) => sync_command(&config, args, Mode::Sync).await,
        Command::Resync(args) => sync_command(&config, args, Mode::Resnapshot).await,
        Command::Drop(args) => drop_command(&config, args).await,
        Command::Initdb(args) => {
            sync_command(&args.config(&config), args.tables(), Mode::Init).await
        }
        Command::Syncdb(args) => {
            sync_command(&args.config(&config), args.tables(), Mode::Sync).await
        }
        Command::Dropdb(args) => drop_command(&args.config(&config), args.drop_args()).await,
        Command::Listdb(args) => official::listdb_command(&config, args).await,
        Command::Status {
            namespace,
            table,
            json,
            csv,
        } => status::status_command(&config, namespace, table, json, csv).await,
        Command::Pause(table) => operator::pause_command(&config, table, true).await,
        Command::Resume(table) => operator::pause_command(&config, table, false).await,
        Command::Cancel(table) => operator::cancel_command(&config, table).await,
        Command::Runs(args) => operator::runs_command(&config, args).await,
        Command::FakeDap(args) => fake_dap_command(args).await,
        Command::Run => run_command(&config).await,
        Command::Demo(args) => {
            let mut signals = Signals::new()?;
            demo::run(args, signals.recv()).await
        }
        Command::Bench(args) => bench_command(config, args).await,
    }
}

/// SIGTERM and SIGINT, caught from the moment this is built.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Self, Error> {
        use tokio::signal::unix::{SignalKind, signal};
        let io = |source| Error::Io {
            context: "installing the signal handlers".into(),
            source,
        };
        Ok(Self {
            term: signal(SignalKind::terminate()).map_err(io)?,
            int: signal(SignalKind::interrupt()).map_err(io)?,
        })
    }

    /// Completes at the next SIGTERM or SIGINT.
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// `dapsync run`: the daemon until SIGTERM or SIGINT; a second signal cuts the grace short.
async fn run_command(config: &Config) -> Result<i32, Error> {
    // Before anything starts, so that a signal during start-up stops the daemon cleanly.
    let mut signals = Signals::new()?;
    // A start-up stalled on the database or the API gives way to a signal: stopping then is
    // as safe as a crash (nothing has been half-applied that the next start cannot finish).
    let daemon = tokio::select! {
        started = app::Daemon::start(config) => started?,
        () = signals.recv() => {
            tracing::info!("stopped during start-up");
            return Ok(0);
        }
    };
    signals.recv().await;
    tracing::info!(
        grace_s = config.sync.shutdown_grace.0.as_secs_f64(),
        "stopping: no new runs; a second signal cuts running tables short"
    );
    daemon.shutdown(signals.recv()).await;
    Ok(0)
}

/// The selection of a command: its arguments, or the configuration's.
fn selection(
    config: &Config,
    args: &TableArgs,
) -> std::collections::BTreeMap<String, crate::config::NamespaceConfig> {
    match (&args.namespace, &args.table) {
        (Some(namespace), Some(tables)) => app::cli_selection(namespace, tables),
        (Some(namespace), None) => {
            let chosen = config
                .namespaces
                .get(namespace)
                .cloned()
                .unwrap_or_default();
            std::collections::BTreeMap::from([(namespace.clone(), chosen)])
        }
        _ => config.namespaces.clone(),
    }
}

async fn sync_command(config: &Config, args: TableArgs, mode: Mode) -> Result<i32, Error> {
    let selection = selection(config, &args);
    let dap = app::dap_client(config)?;
    let tables = app::resolve_tables(&dap, &selection).await?;
    if tables.is_empty() {
        return Err(Error::Usage("no table matches the selection".into()));
    }
    let progress = if tables.len() == 1 && crate::telemetry::interactive_terminal() {
        ProgressMode::Bar
    } else {
        ProgressMode::Log
    };
    let engine = app::engine_with(config, dap, progress).await?;
    let results = app::sync_tables(&engine, tables, mode, config.sync.max_concurrent_tables).await;
    let mut failed = 0;
    for (table, result) in results {
        match result {
            Ok(reports) if reports.is_empty() => {
                println!("{table}: already initialised")
            }
            Ok(reports) => {
                for report in reports {
                    println!("{}", describe(&report));
                }
            }
            Err(error) => {
                failed += 1;
                println!("{table}: FAILED: {}", error.chain());
            }
        }
    }
    engine.db().close().await;
    Ok(if failed > 0 { EXIT_FAILURE } else { 0 })
}

fn describe(report: &RunReport) -> String {
    let what = match (report.kind, report.reason) {
        (crate::db::RunKind::Snapshot, Some(reason)) => format!("snapshot ({reason})"),
        (crate::db::RunKind::Snapshot, None) => "snapshot".to_owned(),
        (crate::db::RunKind::Incremental, _) => "incremental".to_owned(),
    };
    format!(
        "{}: {what}: {} upserted, {} deleted, {} rejected, {} rows, synced until {} (schema v{}) in {:.1}s",
        report.table,
        report.stats.upserted,
        report.stats.deleted,
        report.stats.rejected,
        report.stats.row_count,
        report
            .watermark
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        report.schema_version,
        report.duration.as_secs_f64()
    )
}

async fn drop_command(config: &Config, args: official::DropArgs) -> Result<i32, Error> {
    let args = args.checked()?;
    let selection = selection(config, &args);
    let db = app::database(config).await?;
    let known = db.table_statuses().await?;
    let mut dropped = 0;
    for status in known {
        let Some(chosen) = selection.get(&status.namespace) else {
            continue;
        };
        if !chosen.selects(&status.table) {
            continue;
        }
        let id = TableId::new(&status.namespace, &status.table);
        println!("{id}: dropping");
        match crate::sync::drop_table(&db, &id).await {
            Err(error) if error.is_locked() => {
                println!("{id}: FAILED: being synced by another process");
                continue;
            }
            result => result?,
        }
        println!("{id}: dropped");
        dropped += 1;
    }
    if dropped == 0 {
        println!("no synced table matches the selection");
    }
    db.close().await;
    Ok(0)
}

async fn fake_dap_command(args: FakeDapArgs) -> Result<i32, Error> {
    let mut tables = Vec::new();
    for spec in &args.rows {
        let parsed = spec
            .split_once('=')
            .and_then(|(name, rows)| Some((name.split_once('.')?, rows.parse::<u64>().ok()?)));
        let Some(((namespace, table), rows)) = parsed else {
            return Err(Error::Usage(format!(
                "--rows {spec}: expected namespace.table=rows"
            )));
        };
        tables.push(crate::fake::FakeTable::new(namespace, table, rows));
    }
    let config = crate::fake::FakeDapConfig {
        seed: args.seed,
        rows_per_object: args.rows_per_object,
        tables,
        ..Default::default()
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], args.port));
    let fake = crate::fake::FakeDap::start_on(addr, config)
        .await
        .map_err(|source| Error::Io {
            context: "starting the fake DAP server".into(),
            source,
        })?;
    // Scripts (and `dapsync bench`) read the address from the first line.
    println!("listening on {}", fake.base_url());
    println!(
        "client id: {}  client secret: {}",
        fake.client_id(),
        fake.client_secret().expose()
    );
    let _ = tokio::signal::ctrl_c().await;
    fake.shutdown().await;
    Ok(0)
}

async fn bench_command(mut config: Config, args: BenchArgs) -> Result<i32, Error> {
    if let Some(url) = args.database_url {
        config.database.url = crate::config::DatabaseUrl::new(url);
        config.database.url.dialect()?;
    }
    let (namespace, table) = args
        .table
        .split_once('.')
        .ok_or_else(|| Error::Usage(format!("--table {}: expected namespace.table", args.table)))?;
    let options = bench::BenchOptions {
        namespace: namespace.to_owned(),
        table: table.to_owned(),
        rows: args.rows,
        change_percent: args.change_percent,
        rows_per_object: args.rows_per_object,
        output: args.output,
    };
    let report = bench::run(&config, &options).await?;
    print!("{}", bench::describe(&report));
    println!("report written to {}", options.output.display());
    Ok(0)
}
