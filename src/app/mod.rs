//! The one place where everything is wired: the DAP client, the database and the engine are built
//! from the configuration here, for the one-shot commands and the daemon alike; [`Daemon`] puts
//! the scheduler, the HTTP endpoint and the systemd notifications around them.

mod dap_metrics;

pub use dap_metrics::dap_metrics;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::config::ConfigError;
use crate::config::Target;
use crate::config::{Config, NamespaceConfig};
use crate::dap::DapError;
use crate::dap::{
    BudgetFuture, ClientOptions, DapClient, PollPolicy, RateLimit, RetryPolicy, SharedBudget,
};
use crate::db::DbError;
use crate::db::{Db, QueryStart};
use crate::destination::{DestinationError, Files};
use crate::export::ExportError;
use crate::notify::Notifier;
use crate::scheduler::SchedulerError;
use crate::scheduler::{Scheduler, SchedulerOptions};
use crate::schema::SchemaError;
use crate::status::Status;
use crate::sync::{Engine, Mode, ProgressMode, RunReport, SyncError, SyncOptions};
use crate::table::TableId;
use crate::webhook::WebhookError;
use crate::webhook::Webhooks;

/// Exit code: one or more tables failed, or the command failed.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code: the command line is invalid (clap's own code).
pub const EXIT_USAGE: i32 = 2;
/// Exit code: the configuration is invalid or incomplete.
pub const EXIT_CONFIG: i32 = 3;

/// Anything that stops a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration")]
    Config(#[from] ConfigError),
    #[error("DAP API")]
    Dap(#[from] DapError),
    #[error("database")]
    Db(#[from] DbError),
    #[error("destination")]
    Destination(#[from] DestinationError),
    #[error("table schema")]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    Sync(Box<SyncError>),
    #[error("scheduler")]
    Scheduler(#[from] SchedulerError),
    #[error("webhooks")]
    Webhook(#[from] WebhookError),
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
}

impl From<SyncError> for Error {
    fn from(error: SyncError) -> Self {
        Error::Sync(Box::new(error))
    }
}

impl Error {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Dap(e) => e.is_transient(),
            Error::Db(e) => e.is_transient(),
            Error::Destination(e) => e.is_transient(),
            Error::Sync(e) => e.is_transient(),
            Error::Export(ExportError::Dap(e)) => e.is_transient(),
            Error::Export(_)
            | Error::Config(_)
            | Error::Schema(_)
            | Error::Scheduler(_)
            | Error::Webhook(_)
            | Error::Io { .. }
            | Error::Usage(_) => false,
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) => EXIT_CONFIG,
            Error::Usage(_) => EXIT_USAGE,
            _ => EXIT_FAILURE,
        }
    }

    /// The error and its causes on one line.
    pub fn chain(&self) -> String {
        crate::error::chain(self)
    }
}

/// The DAP client options the configuration describes.
pub fn client_options(config: &Config) -> Result<ClientOptions, Error> {
    let (client_id, client_secret) = config.dap_credentials()?;
    let dap = &config.dap;
    Ok(ClientOptions {
        base_url: dap.base_url.trim_end_matches('/').to_owned(),
        client_id: client_id.to_owned(),
        client_secret: client_secret.clone(),
        connect_timeout: dap.connect_timeout.0,
        request_timeout: dap.request_timeout.0,
        download_idle_timeout: dap.download_idle_timeout.0,
        retry: RetryPolicy {
            max_attempts: dap.max_attempts,
            initial_backoff: dap.initial_backoff.0,
            max_backoff: dap.max_backoff.0,
        },
        query_rate: RateLimit {
            max: dap.queries_per_minute,
            per: std::time::Duration::from_secs(60),
        },
        poll: PollPolicy {
            initial_interval: dap.job_poll_initial.0,
            max_interval: dap.job_poll_max.0,
            timeout: dap.job_timeout.0,
        },
        download_concurrency: dap.download_concurrency,
        url_batch_size: dap.url_batch_size,
        token_refresh_margin: std::time::Duration::from_secs(300),
        // Decoded records take several times their line's size: small batches keep memory
        // flat while still amortizing the hand-offs between tasks.
        batch_records: 500,
    })
}

/// A DAP client for the configured API.
pub fn dap_client(config: &Config) -> Result<DapClient, Error> {
    Ok(DapClient::new(client_options(config)?)?)
}

/// Connects to the configured database and brings its control tables up to date.
pub async fn database(config: &Config) -> Result<Db, Error> {
    let ddl = crate::sql::DdlOptions {
        enum_mode: config.database.enum_mode,
        drop_removed_columns: config.database.drop_removed_columns,
    };
    // Enough for every running table (see `connections_per_table`), and two to spare for
    // status, readiness and the scheduler's own queries.
    let per_table = crate::db::connections_per_table(config.database.url.dialect()?);
    let connections = config
        .database
        .max_connections
        .max(per_table * config.sync.max_concurrent_tables as u32 + 2);
    let db = Db::connect(&config.database.url, connections, ddl).await?;
    db.migrate().await?;
    Ok(db)
}

/// Opens the configured database to read it, as it is: never created, never migrated (see
/// [`Db::open_existing`]).
pub async fn existing_database(config: &Config) -> Result<Db, Error> {
    let ddl = crate::sql::DdlOptions {
        enum_mode: config.database.enum_mode,
        drop_removed_columns: config.database.drop_removed_columns,
    };
    Ok(Db::open_existing(&config.database.url, ddl).await?)
}

/// The engine options the configuration describes.
pub fn sync_options(config: &Config, progress: ProgressMode) -> SyncOptions {
    SyncOptions {
        on_invalid_record: config.sync.on_invalid_record,
        validate_records: config.sync.validate_records,
        repeated_keys: config.sync.repeated_key_tables(),
        max_rejected_fraction: config.sync.max_rejected_fraction,
        keep_history: config.sync.keep_history_tables(),
        progress,
    }
}

/// A replication engine for the configured API and database; its query limit is shared with
/// every process on the database (see [`share_query_budget`]).
pub async fn engine(config: &Config, progress: ProgressMode) -> Result<Engine, Error> {
    engine_with(config, dap_client(config)?, progress).await
}

/// A replication engine on `dap` for the configured destination: the database, or a directory
/// of files (whose operator controls, pauses and cancels, live in a SQLite file inside it).
pub async fn engine_with(
    config: &Config,
    dap: DapClient,
    progress: ProgressMode,
) -> Result<Engine, Error> {
    let options = sync_options(config, progress);
    match config.database.url.target()? {
        Target::Database(_) => {
            let db = database(config).await?;
            share_query_budget(config, &dap, &db)?;
            Ok(Engine::new(dap, db, options))
        }
        Target::Files(target) => {
            let files = Files::new(&target);
            files.check().map_err(DestinationError::from)?;
            // Daemons writing one directory share the budget through its control database.
            let control = control_database(config).await?;
            share_query_budget(config, &dap, &control)?;
            Ok(Engine::with_destination(
                dap,
                control,
                Arc::new(files),
                options,
            ))
        }
    }
}

/// The database of the operator's controls: the configured database, or for a files
/// destination `DIR/.dapsync/control.db` (pauses and cancel requests; the chain's state is in
/// the files themselves).
pub async fn control_database(config: &Config) -> Result<Db, Error> {
    let Target::Files(target) = config.database.url.target()? else {
        return database(config).await;
    };
    let folder = target.directory.join(".dapsync");
    std::fs::create_dir_all(&folder).map_err(|source| Error::Io {
        context: format!("creating {}", folder.display()),
        source,
    })?;
    let url = crate::config::DatabaseUrl::new(format!(
        "sqlite://{}",
        folder.join("control.db").display()
    ));
    let ddl = crate::sql::DdlOptions::default();
    let db = Db::connect(&url, config.database.max_connections, ddl).await?;
    db.migrate().await?;
    Ok(db)
}

/// The tables the configured destination holds, with their state, read as they are: a
/// database is opened read-only (see [`existing_database`]), a directory only read.
pub async fn table_statuses(config: &Config) -> Result<Vec<crate::sync::TableStatus>, Error> {
    match config.database.url.target()? {
        Target::Files(target) => {
            if !target.directory.is_dir() {
                return Err(Error::Usage(format!(
                    "no files destination at {}: the directory does not exist",
                    target.directory.display()
                )));
            }
            Ok(Files::new(&target)
                .table_statuses()
                .map_err(DestinationError::from)?)
        }
        Target::Database(_) => {
            let db = existing_database(config).await?;
            let statuses = db.table_statuses().await;
            db.close().await;
            Ok(statuses?)
        }
    }
}

/// Makes `dap` take its query starts from the budget that every process on `db` shares (the
/// daemon's replicas, a manual `dapsync sync` beside them), one per client id: together they
/// start at most `dap.queries_per_minute` queries a minute. An in-memory SQLite database is
/// seen by this process alone, whose own limit is enough.
pub fn share_query_budget(config: &Config, dap: &DapClient, db: &Db) -> Result<(), Error> {
    if db.shares_query_budget() {
        let (client_id, _) = config.dap_credentials()?;
        let name = format!(
            "start_query {:016x}",
            crate::hash::fnv1a(client_id.as_bytes())
        );
        dap.share_query_budget(Arc::new(DatabaseBudget {
            db: db.clone(),
            name,
        }));
    }
    Ok(())
}

/// The database's query budget (see [`Db::take_query_start`]) as the DAP client takes it.
#[derive(Debug)]
struct DatabaseBudget {
    db: Db,
    /// The budget's row: the API limits each client id on its own.
    name: String,
}

impl SharedBudget for DatabaseBudget {
    fn try_take(&self, limit: RateLimit) -> BudgetFuture<'_> {
        Box::pin(async move {
            match self
                .db
                .take_query_start(&self.name, limit.max, limit.per)
                .await?
            {
                QueryStart::Taken(_) => Ok(None),
                QueryStart::Full(wait) => Ok(Some(wait)),
            }
        })
    }
}

/// Resolves a table selection to tables, asking the API for the namespace's
/// tables only when the selection needs it (`all` or a pattern).
pub async fn resolve_tables(
    dap: &DapClient,
    namespaces: &BTreeMap<String, NamespaceConfig>,
) -> Result<Vec<TableId>, Error> {
    Ok(crate::sync::resolve_tables(dap, namespaces).await?)
}

/// The tables `--namespace NS --table a,b|all` names, as the API lists them; a usage error when
/// none matches.
pub async fn named_tables(
    dap: &DapClient,
    namespace: &str,
    tables: &str,
) -> Result<Vec<TableId>, Error> {
    let found = resolve_tables(dap, &cli_selection(namespace, tables)).await?;
    if found.is_empty() {
        return Err(Error::Usage(format!(
            "--namespace {namespace} --table {tables}: no table matches"
        )));
    }
    Ok(found)
}

/// The selection `--namespace NS --table a,b|all` as a namespace configuration.
pub fn cli_selection(namespace: &str, tables: &str) -> BTreeMap<String, NamespaceConfig> {
    let tables: Vec<String> = tables
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    BTreeMap::from([(
        namespace.to_owned(),
        NamespaceConfig {
            tables,
            ..NamespaceConfig::default()
        },
    )])
}

/// The outcome of one table in a multi-table command.
pub type TableResult = (TableId, Result<Vec<RunReport>, SyncError>);

/// Runs tables through the engine, at most `concurrency` at a time, in the order given.
pub async fn sync_tables(
    engine: &Engine,
    tables: Vec<TableId>,
    mode: Mode,
    concurrency: usize,
) -> Vec<TableResult> {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut running = JoinSet::new();
    for (index, table) in tables.into_iter().enumerate() {
        let engine = engine.clone();
        let permits = permits.clone();
        running.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let result = engine.sync_table(&table, mode).await;
            (index, (table, result))
        });
    }
    let mut results: Vec<(usize, TableResult)> = Vec::new();
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok(result) => results.push(result),
            Err(e) => tracing::error!(error = %e, "a table task panicked"),
        }
    }
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

/// The scheduler options the configuration describes.
pub fn scheduler_options(config: &Config) -> SchedulerOptions {
    let sync = &config.sync;
    SchedulerOptions {
        namespaces: config.namespaces.clone(),
        schedule: sync.schedule.clone(),
        max_concurrent_tables: sync.max_concurrent_tables,
        run_attempts: sync.run_attempts,
        run_backoff: sync.run_backoff.0,
        account_pause: sync.account_pause.0,
        refresh_tables: sync.refresh_tables.0,
        shutdown_grace: sync.shutdown_grace.0,
    }
}

/// The service as `dapsync run` runs it: the scheduler, the HTTP endpoint and the systemd
/// notifications around one engine.
#[derive(Debug)]
pub struct Daemon {
    status: Status,
    scheduler: Scheduler,
    db: Db,
    http: Option<(SocketAddr, JoinHandle<std::io::Result<()>>)>,
    stop_http: CancellationToken,
    notifier: Arc<Notifier>,
    watchdog: Option<JoinHandle<()>>,
    /// Cancelled when the shutdown begins: the watchdog pings on through the grace period.
    stopping: CancellationToken,
}

impl Daemon {
    /// Connects, starts the scheduler and the HTTP endpoint (if enabled; port 0 picks a free
    /// one), and tells systemd the service is ready.
    pub async fn start(config: &Config) -> Result<Daemon, Error> {
        let engine = engine(config, ProgressMode::Log).await?;
        let status = Status::new(Some(dap_metrics(engine.dap().clone())));
        Self::start_with(config, engine, status).await
    }

    /// [`Daemon::start`] on an engine and a status model built by the caller (tests use their
    /// own client options, and subscribe to the events before the first run starts).
    pub async fn start_with(
        config: &Config,
        engine: Engine,
        status: Status,
    ) -> Result<Daemon, Error> {
        if config.namespaces.is_empty() {
            return Err(Error::Config(ConfigError::Invalid {
                key: "namespaces".into(),
                reason:
                    "selects no table: add a [namespaces.<namespace>] section with tables = [...]"
                        .into(),
            }));
        }
        let notifier = Arc::new(Notifier::from_env());
        let webhooks = Webhooks::new(&config.webhooks)?;
        // Bound before anything runs, so that a busy port fails the start-up.
        let listener = match config.http.enabled {
            true => Some(
                TcpListener::bind(config.http.listen)
                    .await
                    .map_err(|source| Error::Io {
                        context: format!("listening on {}", config.http.listen),
                        source,
                    })?,
            ),
            false => None,
        };
        let db = engine.db().clone();
        let options = scheduler_options(config);
        let scheduler = Scheduler::start(engine, options, status.clone(), webhooks)
            .await
            .map_err(|error| match error {
                SchedulerError::SelectsNothing { namespace } => {
                    Error::Config(ConfigError::Invalid {
                        key: format!("namespaces.{namespace}.tables"),
                        reason: "selects no table: none of the namespace's tables matches".into(),
                    })
                }
                error => Error::Scheduler(error),
            })?;
        let stop_http = CancellationToken::new();
        let http = match listener {
            Some(listener) => {
                let addr = listener.local_addr().map_err(|source| Error::Io {
                    context: "reading the HTTP listen address".into(),
                    source,
                })?;
                tracing::info!(address = %addr, "http endpoint listening");
                let serve = crate::http::serve(
                    listener,
                    status.clone(),
                    Some(scheduler.control()),
                    config.http.control_token.clone(),
                    stop_http.clone().cancelled_owned(),
                );
                Some((addr, tokio::spawn(serve)))
            }
            None => None,
        };
        let tables = scheduler.tables().await.len();
        notifier.status(&format!("syncing {tables} tables"));
        notifier.ready();
        let stopping = CancellationToken::new();
        let watchdog = notifier.watchdog_interval().map(|every| {
            let (notifier, status, stopping) = (notifier.clone(), status.clone(), stopping.clone());
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(every);
                loop {
                    ticks.tick().await;
                    // A stalled scheduler goes without pings, so systemd restarts the service.
                    // A stopping one has stopped ticking on purpose: the shutdown is bounded by
                    // the grace period, and systemd must not take a clean stop for a hang.
                    if status.is_alive() || stopping.is_cancelled() {
                        notifier.watchdog();
                    }
                }
            })
        });
        Ok(Daemon {
            status,
            scheduler,
            db,
            http,
            stop_http,
            notifier,
            watchdog,
            stopping,
        })
    }

    /// The read model the endpoint serves.
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// Where the HTTP endpoint listens, if it is enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|(addr, _)| *addr)
    }

    /// The tables scheduled now.
    pub async fn tables(&self) -> Vec<TableId> {
        self.scheduler.tables().await
    }

    /// Stops: running tables get the grace period to finish (see [`Scheduler::shutdown`];
    /// `cut_short` ends it early), then the endpoint closes and the database pool with it. The
    /// systemd watchdog is pinged until the end.
    pub async fn shutdown(self, cut_short: impl Future<Output = ()>) {
        self.notifier.stopping();
        self.stopping.cancel();
        self.scheduler.shutdown(cut_short).await;
        self.stop_http.cancel();
        if let Some((_, task)) = self.http {
            match tokio::time::timeout(Duration::from_secs(5), task).await {
                Ok(Ok(Err(error))) => tracing::warn!(%error, "the http endpoint failed"),
                Ok(_) => {}
                Err(_) => tracing::warn!("the http endpoint did not stop in time"),
            }
        }
        if let Some(watchdog) = self.watchdog {
            watchdog.abort();
        }
        if tokio::time::timeout(Duration::from_secs(10), self.db.close())
            .await
            .is_err()
        {
            tracing::warn!("the database connections did not close in time");
        }
        tracing::info!("stopped");
    }
}
