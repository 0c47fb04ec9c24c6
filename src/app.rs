//! The one place where everything is wired: the DAP client, the database and the engine are built
//! from the configuration here, for the one-shot commands and the daemon alike.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::{Config, NamespaceConfig};
use crate::dap::{ClientOptions, DapClient, PollPolicy, RateLimit, RetryPolicy};
use crate::db::Db;
use crate::error::Error;
use crate::sync::{Engine, Mode, ProgressMode, RunReport, SyncError, SyncOptions};

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
        batch_records: 2_000,
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
    // Every running table holds one connection for its lock and one for its load.
    let connections = config
        .database
        .max_connections
        .max(2 * config.sync.max_concurrent_tables as u32 + 2);
    let db = Db::connect(&config.database.url, connections, ddl).await?;
    db.migrate().await?;
    Ok(db)
}

/// The engine options the configuration describes.
pub fn sync_options(config: &Config, progress: ProgressMode) -> SyncOptions {
    SyncOptions {
        on_invalid_record: config.sync.on_invalid_record,
        validate_records: config.sync.validate_records,
        repeated_keys: config.sync.repeated_keys.clone(),
        progress,
    }
}

/// A replication engine for the configured API and database.
pub async fn engine(config: &Config, progress: ProgressMode) -> Result<Engine, Error> {
    let dap = dap_client(config)?;
    let db = database(config).await?;
    Ok(Engine::new(dap, db, sync_options(config, progress)))
}

/// Resolves a table selection to `(namespace, table)` pairs, asking the API for the namespace's
/// tables only when the selection needs it (`all` or a pattern).
pub async fn resolve_tables(
    dap: &DapClient,
    namespaces: &BTreeMap<String, NamespaceConfig>,
) -> Result<Vec<(String, String)>, Error> {
    let mut tables = Vec::new();
    for (namespace, selection) in namespaces {
        let names = if selection.needs_listing() {
            dap.list_tables(namespace).await?
        } else {
            selection.tables.clone()
        };
        tables.extend(
            names
                .into_iter()
                .filter(|t| selection.selects(t))
                .map(|t| (namespace.clone(), t)),
        );
    }
    tables.sort();
    tables.dedup();
    Ok(tables)
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
pub type TableResult = ((String, String), Result<Vec<RunReport>, SyncError>);

/// Runs tables through the engine, at most `concurrency` at a time, in the order given.
pub async fn sync_tables(
    engine: &Engine,
    tables: Vec<(String, String)>,
    mode: Mode,
    concurrency: usize,
) -> Vec<TableResult> {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut running = JoinSet::new();
    for (index, (namespace, table)) in tables.into_iter().enumerate() {
        let engine = engine.clone();
        let permits = permits.clone();
        running.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let result = engine.sync_table(&namespace, &table, mode).await;
            (index, ((namespace, table), result))
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
