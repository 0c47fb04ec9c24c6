//! Configuration: built-in defaults, then a TOML file, then the official client's `DAP_*` environment
//! variables, then `DAPSYNC_*` environment variables (`__` for nesting). Everything is validated at
//! load, and every error names the key it is about.

mod env;
mod value;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::secret::Secret;
use crate::table::{TableId, glob_match};
pub use env::check_log_level;
use env::is_setting;
pub use value::{CronSchedule, DatabaseUrl, FileFormat, FilesTarget, HumanDuration, Target};

/// A supported target database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    #[serde(alias = "mariadb")]
    Mysql,
    /// SQLite.
    Sqlite,
}

/// How string enums are stored on PostgreSQL.
///
/// The mode applies when a table is created; the ALTERs for later schema versions assume the
/// table was created in the current mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnumMode {
    /// A native enum type per column, named `"<ns>"."<table>__<column>"` (the official client's way).
    #[default]
    Native,
    /// Plain `text` with a CHECK constraint listing the values (readable by every BI tool).
    Text,
}

/// Where the configuration file is looked for when `--config` is not given, in order.
pub const DEFAULT_PATHS: [&str; 2] = ["config/dapsync.toml", "/etc/dapsync/dapsync.toml"];

/// The official client's environment variables and the keys they set.
const OFFICIAL_ENV: [(&str, &str); 4] = [
    ("DAP_API_URL", "dap.base_url"),
    ("DAP_CLIENT_ID", "dap.client_id"),
    ("DAP_CLIENT_SECRET", "dap.client_secret"),
    ("DAP_CONNECTION_STRING", "database.url"),
];

/// The whole configuration of a dapsync process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub dap: DapConfig,
    pub database: DatabaseConfig,
    pub sync: SyncConfig,
    /// Tables to replicate, per DAP namespace.
    pub namespaces: BTreeMap<String, NamespaceConfig>,
    pub http: HttpConfig,
    pub log: LogConfig,
    pub webhooks: WebhookConfig,
}

/// How to reach the DAP API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DapConfig {
    pub base_url: String,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    /// A file holding the client secret (used when `client_secret` is not set).
    pub client_secret_file: Option<PathBuf>,
    pub connect_timeout: HumanDuration,
    /// Limit for one API call (downloads are limited by `download_idle_timeout` instead).
    pub request_timeout: HumanDuration,
    pub download_idle_timeout: HumanDuration,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    pub initial_backoff: HumanDuration,
    pub max_backoff: HumanDuration,
    /// Queries started per minute at most, shared by all tables (the API allows 5).
    pub queries_per_minute: u32,
    pub job_poll_initial: HumanDuration,
    pub job_poll_max: HumanDuration,
    /// Give up waiting for a job after this long.
    pub job_timeout: HumanDuration,
    /// Objects downloaded at the same time.
    pub download_concurrency: usize,
    /// Object ids per URL request.
    pub url_batch_size: usize,
}

/// Where the replica lives, and how its tables are shaped.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgresql://...`, `mysql://...` or `sqlite://path`.
    pub url: DatabaseUrl,
    /// A file holding the database password, put into `url`.
    pub password_file: Option<PathBuf>,
    pub max_connections: u32,
    /// PostgreSQL only: `native` enum types, or `text` columns with a CHECK constraint.
    pub enum_mode: EnumMode,
    /// Drop columns that disappear upstream instead of keeping them (nullable).
    pub drop_removed_columns: bool,
}

/// What happens to a record the database cannot take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnInvalidRecord {
    /// Store it in the reject table, count it, and go on.
    #[default]
    Reject,
    /// Fail the run; nothing of it is applied.
    Fail,
}

/// How and when tables are synced.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// Cron expression (5 or 6 fields) for every table without its own schedule.
    pub schedule: CronSchedule,
    pub max_concurrent_tables: usize,
    /// Attempts of a table run that fails with a transient error, within one tick.
    pub run_attempts: u32,
    /// Wait before the first retry of a failed run; doubles with each further attempt.
    pub run_backoff: HumanDuration,
    /// How long every table pauses after an account-level error.
    pub account_pause: HumanDuration,
    /// How often `tables = ["all"]` is resolved again through the API.
    pub refresh_tables: HumanDuration,
    pub on_invalid_record: OnInvalidRecord,
    /// Validate every record against the table's JSON schema.
    pub validate_records: bool,
    /// Tables whose keys may repeat within one result (loaded last-one-wins).
    pub repeated_keys: Vec<String>,
    /// A snapshot or incremental whose share of rejected records is above this is not applied.
    pub max_rejected_fraction: f64,
    /// Tables whose re-snapshots merge into the live table instead of replacing it.
    pub keep_history: Vec<String>,
    /// Time running table runs get to finish after SIGTERM before they are rolled back.
    pub shutdown_grace: HumanDuration,
}

/// The tables of one namespace.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NamespaceConfig {
    /// Table names or glob patterns (`*`, `?`); `all` means every table of the namespace.
    #[serde(deserialize_with = "string_or_list")]
    pub tables: Vec<String>,
    /// Glob patterns of tables to leave out.
    #[serde(deserialize_with = "string_or_list")]
    pub exclude: Vec<String>,
    /// Per-table schedules: table name or glob pattern → cron expression.
    pub schedules: BTreeMap<String, CronSchedule>,
}

/// The HTTP endpoint for health, status, metrics and the control API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// A file holding the bearer token of the control API's write endpoints (pause, resume,
    /// run, cancel); without it (or the systemd credential `control_token`) they are off.
    pub control_token_file: Option<PathBuf>,
    /// The token read from `control_token_file`; never configured directly.
    #[serde(skip)]
    pub control_token: Option<Secret>,
}

/// Log output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A level or `tracing` filter directive (`info`, `dapsync=debug,sqlx=warn`); `RUST_LOG` wins.
    pub level: String,
}

/// The shape of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Webhooks told when a table starts failing and when it recovers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    #[serde(deserialize_with = "string_or_list")]
    pub urls: Vec<String>,
    pub timeout: HumanDuration,
    /// The body every URL receives.
    pub format: WebhookFormat,
}

/// The body of a webhook POST.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// dapsync's own JSON event (see the README).
    #[default]
    Json,
    /// A Slack incoming-webhook message (`text` and `blocks`).
    Slack,
    /// A Microsoft Teams message with an Adaptive Card (Workflows and incoming webhooks).
    Teams,
}

impl Default for DapConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api-gateway.instructure.com".into(),
            client_id: None,
            client_secret: None,
            client_secret_file: None,
            connect_timeout: HumanDuration::secs(10),
            request_timeout: HumanDuration::secs(60),
            download_idle_timeout: HumanDuration::secs(120),
            max_attempts: 6,
            initial_backoff: HumanDuration(Duration::from_millis(500)),
            max_backoff: HumanDuration::secs(60),
            queries_per_minute: 5,
            job_poll_initial: HumanDuration(Duration::from_millis(500)),
            job_poll_max: HumanDuration::secs(5),
            job_timeout: HumanDuration::secs(4 * 3600),
            download_concurrency: 4,
            url_batch_size: 100,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: DatabaseUrl::new("sqlite://dapsync.db"),
            password_file: None,
            max_connections: 8,
            enum_mode: EnumMode::Native,
            drop_removed_columns: false,
        }
    }
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            schedule: CronSchedule::hourly(),
            max_concurrent_tables: 4,
            run_attempts: 3,
            run_backoff: HumanDuration::secs(30),
            account_pause: HumanDuration::secs(30 * 60),
            refresh_tables: HumanDuration::secs(3600),
            on_invalid_record: OnInvalidRecord::Reject,
            validate_records: true,
            repeated_keys: vec!["canvas_logs.web_logs".into()],
            max_rejected_fraction: 0.01,
            keep_history: vec!["canvas_logs.web_logs".into()],
            shutdown_grace: HumanDuration::secs(60),
        }
    }
}

impl Default for NamespaceConfig {
    fn default() -> Self {
        Self {
            tables: vec!["all".into()],
            exclude: Vec::new(),
            schedules: BTreeMap::new(),
        }
    }
}

impl SyncConfig {
    /// The tables of `repeated_keys`; entries that are not `namespace.table` name no table.
    pub fn repeated_key_tables(&self) -> Vec<TableId> {
        table_ids(&self.repeated_keys)
    }

    /// The tables of `keep_history`; entries that are not `namespace.table` name no table.
    pub fn keep_history_tables(&self) -> Vec<TableId> {
        table_ids(&self.keep_history)
    }
}

/// The `namespace.table` names of a list as tables; other entries name no table.
fn table_ids(names: &[String]) -> Vec<TableId> {
    names.iter().filter_map(|name| name.parse().ok()).collect()
}

impl NamespaceConfig {
    /// Whether `table` is selected: matched by `tables` (`all` matches everything) and by no
    /// `exclude` pattern.
    pub fn selects(&self, table: &str) -> bool {
        let included = self
            .tables
            .iter()
            .any(|p| p == "all" || glob_match(p, table));
        included && !self.exclude.iter().any(|p| glob_match(p, table))
    }

    /// Whether the selection can only be resolved with the namespace's table list from the API.
    pub fn needs_listing(&self) -> bool {
        self.tables
            .iter()
            .any(|p| p == "all" || p.contains(['*', '?']))
    }

    /// The table's own schedule, if a `schedules` entry matches it.
    pub fn schedule_for(&self, table: &str) -> Option<&CronSchedule> {
        self.schedules.get(table).or_else(|| {
            self.schedules
                .iter()
                .find(|(p, _)| glob_match(p, table))
                .map(|(_, s)| s)
        })
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            control_token_file: None,
            control_token: None,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            timeout: HumanDuration::secs(10),
            format: WebhookFormat::Json,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot load the configuration")]
    Load(#[source] config::ConfigError),
    #[error("configuration file {0} does not exist")]
    NotFound(PathBuf),
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    #[error("{key} is not set{hint}")]
    Missing {
        key: &'static str,
        hint: &'static str,
    },
    #[error("{key}: cannot read {path}")]
    SecretFile {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ConfigError {
    fn invalid(key: impl Into<String>, reason: impl fmt::Display) -> Self {
        Self::Invalid {
            key: key.into(),
            reason: reason.to_string(),
        }
    }
}

impl Config {
    /// Loads the configuration from `path` (or the first of [`DEFAULT_PATHS`] that exists, or
    /// defaults only), the process environment, and secret files; then validates it.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::load_with_env(path, &env)
    }

    /// [`Config::load`] with an explicit environment (for tests).
    pub fn load_with_env(
        path: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let file = match path {
            Some(path) if !path.exists() => return Err(ConfigError::NotFound(path.to_path_buf())),
            Some(path) => Some(path.to_path_buf()),
            None => DEFAULT_PATHS.iter().map(PathBuf::from).find(|p| p.exists()),
        };
        env::check_misnamed(env)?;
        let mut builder = config::Config::builder();
        if let Some(file) = &file {
            builder = builder
                .add_source(config::File::from(file.as_path()).format(config::FileFormat::Toml));
        }
        // The official client's variables sit between the file and DAPSYNC_* variables: an
        // existing `dap` environment works unchanged, and dapsync's own names win.
        let official: config::Map<String, String> = OFFICIAL_ENV
            .iter()
            .filter_map(|(var, key)| {
                let value = env.get(*var).filter(|v| !v.is_empty())?;
                Some((
                    format!("OFFICIAL_{}", key.replace('.', "__")).to_uppercase(),
                    value.clone(),
                ))
            })
            .collect();
        builder = builder
            .add_source(
                config::Environment::with_prefix("OFFICIAL")
                    .prefix_separator("_")
                    .separator("__")
                    .source(Some(official)),
            )
            .add_source(
                config::Environment::with_prefix("DAPSYNC")
                    .prefix_separator("_")
                    .separator("__")
                    .source(Some(
                        env.iter()
                            .filter(|(k, _)| is_setting(k))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                    )),
            );
        let mut config: Config = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(ConfigError::Load)?;
        config.read_secret_files(env.get("CREDENTIALS_DIRECTORY").map(Path::new))?;
        config.validate()?;
        Ok(config)
    }

    /// Fills secrets from files: `client_secret_file`, `password_file`, `control_token_file`, and
    /// systemd credentials (`$CREDENTIALS_DIRECTORY/dap_client_secret`, `database_url`,
    /// `database_password`, `control_token`).
    fn read_secret_files(&mut self, credentials: Option<&Path>) -> Result<(), ConfigError> {
        let credential = |name: &str| credentials.map(|dir| dir.join(name)).filter(|p| p.exists());
        if self.dap.client_secret.is_none() {
            let file = self
                .dap
                .client_secret_file
                .clone()
                .or_else(|| credential("dap_client_secret"));
            if let Some(path) = file {
                self.dap.client_secret =
                    Some(Secret::new(read_secret("dap.client_secret_file", &path)?));
            }
        }
        if let Some(path) = credential("database_url") {
            self.database.url = DatabaseUrl::new(read_secret("database.url", &path)?);
        }
        if let Some(path) = self
            .database
            .password_file
            .clone()
            .or_else(|| credential("database_password"))
        {
            let password = read_secret("database.password_file", &path)?;
            self.database.url = self.database.url.with_password(&password)?;
        }
        if let Some(path) = self
            .http
            .control_token_file
            .clone()
            .or_else(|| credential("control_token"))
        {
            let token = read_secret("http.control_token_file", &path)?;
            if token.is_empty() {
                return Err(ConfigError::invalid(
                    "http.control_token_file",
                    "the token is empty",
                ));
            }
            self.http.control_token = Some(Secret::new(token));
        }
        Ok(())
    }

    /// Checks every value that deserialization alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let base = reqwest::Url::parse(&self.dap.base_url)
            .map_err(|e| ConfigError::invalid("dap.base_url", e))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ConfigError::invalid(
                "dap.base_url",
                "must be an http or https URL",
            ));
        }
        if self.dap.client_id.is_some() != self.dap.client_secret.is_some() {
            let missing = if self.dap.client_id.is_some() {
                "dap.client_secret"
            } else {
                "dap.client_id"
            };
            return Err(ConfigError::Missing {
                key: missing,
                hint: CREDENTIALS_HINT,
            });
        }
        self.database.url.target()?;
        for (key, value) in [
            ("dap.max_attempts", self.dap.max_attempts as usize),
            (
                "dap.queries_per_minute",
                self.dap.queries_per_minute as usize,
            ),
            ("dap.download_concurrency", self.dap.download_concurrency),
            ("dap.url_batch_size", self.dap.url_batch_size),
            (
                "database.max_connections",
                self.database.max_connections as usize,
            ),
            (
                "sync.max_concurrent_tables",
                self.sync.max_concurrent_tables,
            ),
            ("sync.run_attempts", self.sync.run_attempts as usize),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        let dap = &self.dap;
        for (key, value) in [
            ("dap.connect_timeout", &dap.connect_timeout),
            ("dap.request_timeout", &dap.request_timeout),
            ("dap.download_idle_timeout", &dap.download_idle_timeout),
            ("dap.job_poll_initial", &dap.job_poll_initial),
            ("dap.job_timeout", &dap.job_timeout),
        ] {
            if value.0.is_zero() {
                return Err(ConfigError::invalid(key, "must not be zero"));
            }
        }
        for (key, max, min, min_key) in [
            (
                "dap.max_backoff",
                &dap.max_backoff,
                &dap.initial_backoff,
                "dap.initial_backoff",
            ),
            (
                "dap.job_poll_max",
                &dap.job_poll_max,
                &dap.job_poll_initial,
                "dap.job_poll_initial",
            ),
        ] {
            if max.0 < min.0 {
                return Err(ConfigError::invalid(
                    key,
                    format!("must not be shorter than {min_key}"),
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.sync.max_rejected_fraction) {
            return Err(ConfigError::invalid(
                "sync.max_rejected_fraction",
                "must be between 0 and 1",
            ));
        }
        for (ns, namespace) in &self.namespaces {
            if namespace.tables.is_empty() {
                return Err(ConfigError::invalid(
                    format!("namespaces.{ns}.tables"),
                    "lists no table",
                ));
            }
            if !namespace.needs_listing() && !namespace.tables.iter().any(|t| namespace.selects(t))
            {
                return Err(ConfigError::invalid(
                    format!("namespaces.{ns}.exclude"),
                    "excludes every table the selection names",
                ));
            }
        }
        check_log_level(&self.log.level).map_err(|e| ConfigError::invalid("log.level", e))?;
        for url in &self.webhooks.urls {
            reqwest::Url::parse(url)
                .map_err(|e| ConfigError::invalid("webhooks.urls", format!("{url}: {e}")))?;
        }
        Ok(())
    }

    /// The DAP client id and secret, or an error naming the missing key.
    pub fn dap_credentials(&self) -> Result<(&str, &Secret), ConfigError> {
        match (&self.dap.client_id, &self.dap.client_secret) {
            (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => Ok((id, secret)),
            (None, _) => Err(ConfigError::Missing {
                key: "dap.client_id",
                hint: CREDENTIALS_HINT,
            }),
            (Some(id), _) if id.is_empty() => Err(ConfigError::Missing {
                key: "dap.client_id",
                hint: CREDENTIALS_HINT,
            }),
            _ => Err(ConfigError::Missing {
                key: "dap.client_secret",
                hint: CREDENTIALS_HINT,
            }),
        }
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self)
            .unwrap_or_else(|e| format!("# cannot render the configuration: {e}\n"))
    }
}

const CREDENTIALS_HINT: &str = " (set it in the configuration file, in DAPSYNC_DAP__CLIENT_ID / DAPSYNC_DAP__CLIENT_SECRET, or in DAP_CLIENT_ID / DAP_CLIENT_SECRET)";

fn read_secret(key: &'static str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map(|text| text.trim_end_matches(['\r', '\n']).to_owned())
        .map_err(|source| ConfigError::SecretFile {
            key,
            path: path.to_path_buf(),
            source,
        })
}

/// Accepts `["a", "b"]` or `"a,b"` (environment variables can only hold the latter).
fn string_or_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Raw::deserialize(deserializer)? {
        Raw::List(list) => list,
        Raw::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

#[cfg(test)]
mod tests;
