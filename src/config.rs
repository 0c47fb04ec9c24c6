//! Configuration: built-in defaults, then a TOML file, then the official client's `DAP_*` environment
//! variables, then `DAPSYNC_*` environment variables (`__` for nesting). Everything is validated at
//! load, and every error names the key it is about.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::secret::{REDACTED, Secret};
use crate::table::{TableId, glob_match};

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

/// The HTTP endpoint for health, status and metrics.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
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

    /// Fills secrets from files: `client_secret_file`, `password_file`, and systemd credentials
    /// (`$CREDENTIALS_DIRECTORY/dap_client_secret`, `database_url`, `database_password`).
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
            self.database.url = DatabaseUrl(Secret::new(read_secret("database.url", &path)?));
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
        self.database.url.dialect()?;
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
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| ConfigError::invalid("log.level", e))?;
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

/// Whether a `DAPSYNC_*` variable is a setting: every key lives in a section, so settings read
/// `DAPSYNC_<SECTION>__<KEY>`. Others are left alone: Kubernetes service links of a Service named
/// `dapsync` (`DAPSYNC_SERVICE_HOST`, `DAPSYNC_PORT`), the tests' `DAPSYNC_CRASH_AT`.
fn is_setting(variable: &str) -> bool {
    variable
        .strip_prefix("DAPSYNC_")
        .is_some_and(|rest| rest.contains("__"))
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

/// A database URL. It may carry a password, so it shows itself with the password redacted.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(Secret);

impl DatabaseUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(Secret::new(url))
    }

    /// The full URL, password included: pass it only to the database driver.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The database this URL points at.
    pub fn dialect(&self) -> Result<Dialect, ConfigError> {
        let scheme = self
            .expose()
            .split_once("://")
            .map(|(scheme, _)| scheme)
            .unwrap_or_default();
        match scheme {
            "postgres" | "postgresql" => Ok(Dialect::Postgres),
            "mysql" | "mariadb" => Ok(Dialect::Mysql),
            "sqlite" => Ok(Dialect::Sqlite),
            _ => Err(ConfigError::invalid(
                "database.url",
                format!("{self} is not a postgresql://, mysql:// or sqlite:// URL"),
            )),
        }
    }

    /// The URL with its password replaced.
    fn with_password(&self, password: &str) -> Result<Self, ConfigError> {
        let mut url = reqwest::Url::parse(self.expose())
            .map_err(|e| ConfigError::invalid("database.url", e))?;
        url.set_password(Some(password)).map_err(|()| {
            ConfigError::invalid(
                "database.password_file",
                "the database URL cannot carry a password",
            )
        })?;
        Ok(Self::new(String::from(url)))
    }
}

impl fmt::Display for DatabaseUrl {
    /// The URL with any password replaced by `[redacted]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match reqwest::Url::parse(self.expose()) {
            Ok(mut url) => {
                let mut redacted = url.password().is_some();
                if redacted {
                    let _ = url.set_password(Some(REDACTED));
                }
                // sqlx also takes a password as a query parameter (`?password=...`).
                let sensitive = |key: &str| {
                    let key = key.to_ascii_lowercase();
                    ["pass", "pwd", "secret", "token"]
                        .iter()
                        .any(|word| key.contains(word))
                };
                if url.query_pairs().any(|(key, _)| sensitive(&key)) {
                    let pairs: Vec<(String, String)> = url
                        .query_pairs()
                        .map(|(key, value)| {
                            let value = if sensitive(&key) {
                                REDACTED.to_owned()
                            } else {
                                value.into_owned()
                            };
                            (key.into_owned(), value)
                        })
                        .collect();
                    url.query_pairs_mut().clear().extend_pairs(pairs);
                    redacted = true;
                }
                if redacted {
                    write!(f, "{url}")
                } else {
                    f.write_str(self.expose())
                }
            }
            // Not a URL we understand: it might hide a password anywhere, show the scheme only.
            Err(_) => {
                let scheme = self.expose().split_once("://").map_or("", |(s, _)| s);
                write!(f, "{scheme}://{REDACTED}")
            }
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A duration written as `500ms`, `30s`, `5m`, `2h`, `1d`, or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    const fn secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// Parses `500ms`, `30s`, `5m`, `2h`, `1d` or a bare number of seconds.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("`{text}` is not a duration like 30s, 5m or 2h"))?;
        let millis = match unit.trim() {
            "ms" => 1,
            "" | "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => {
                return Err(format!(
                    "`{text}` has an unknown unit (use ms, s, m, h or d)"
                ));
            }
        };
        Ok(Self(Duration::from_millis(number.saturating_mul(millis))))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        match millis {
            m if m % 86_400_000 == 0 && m > 0 => write!(f, "{}d", m / 86_400_000),
            m if m % 3_600_000 == 0 && m > 0 => write!(f, "{}h", m / 3_600_000),
            m if m % 60_000 == 0 && m > 0 => write!(f, "{}m", m / 60_000),
            m if m % 1_000 == 0 => write!(f, "{}s", m / 1_000),
            m => write!(f, "{m}ms"),
        }
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Seconds(secs) => Ok(Self::secs(secs)),
            Raw::Text(text) => Self::parse(&text).map_err(serde::de::Error::custom),
        }
    }
}

/// A cron expression, stored in the 6-field form (seconds first) the scheduler runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSchedule(String);

impl CronSchedule {
    /// At minute 0 of every hour.
    pub fn hourly() -> Self {
        Self("0 0 * * * *".into())
    }

    /// Parses a 5-field (minute first) or 6-field (second first) cron expression.
    pub fn parse(text: &str) -> Result<Self, String> {
        let fields = text.split_whitespace().count();
        let expression = match fields {
            5 => format!(
                "0 {}",
                text.split_whitespace().collect::<Vec<_>>().join(" ")
            ),
            6 => text.split_whitespace().collect::<Vec<_>>().join(" "),
            _ => {
                return Err(format!(
                    "`{text}` is not a cron expression of 5 or 6 fields"
                ));
            }
        };
        let schedule = Self(expression);
        schedule
            .cron()
            .map_err(|e| format!("`{text}` is not a valid cron expression: {e}"))?;
        Ok(schedule)
    }

    /// The 6-field expression.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The parsed expression, with the settings the scheduler uses: as in classic cron, when
    /// both the day of month and the day of week are restricted, a day matching either runs.
    pub fn cron(&self) -> Result<croner::Cron, croner::errors::CronError> {
        croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .build()
            .parse(&self.0)
    }

    /// The first tick strictly after `after`.
    pub fn next_after(
        &self,
        after: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        // Ticks fall on whole seconds; a fraction would carry over into the answer.
        let after = chrono::SubsecRound::trunc_subsecs(after, 0);
        self.cron().ok()?.find_next_occurrence(&after, false).ok()
    }
}

impl Serialize for CronSchedule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CronSchedule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
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
mod tests {
    use super::*;

    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dapsync.toml");
        std::fs::write(&path, toml).unwrap();
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load_with_env(Some(&path), &env)
    }

    #[test]
    fn defaults_need_no_file() {
        let config = load("", &[]).unwrap();
        assert_eq!(config.dap.base_url, "https://api-gateway.instructure.com");
        assert_eq!(config.database.url.dialect().unwrap(), Dialect::Sqlite);
        assert_eq!(config.sync.schedule.as_str(), "0 0 * * * *");
        assert_eq!(config.dap.queries_per_minute, 5);
    }

    #[test]
    fn file_then_official_env_then_dapsync_env() {
        let toml = r#"
            [dap]
            base_url = "http://file.example"
            client_id = "from-file"
            client_secret = "file-secret"
        "#;
        let config = load(toml, &[("DAP_API_URL", "http://official.example")]).unwrap();
        assert_eq!(config.dap.base_url, "http://official.example");
        assert_eq!(config.dap.client_id.as_deref(), Some("from-file"));
        let config = load(
            toml,
            &[
                ("DAP_API_URL", "http://official.example"),
                ("DAPSYNC_DAP__BASE_URL", "http://dapsync.example"),
                ("DAP_CLIENT_SECRET", "official-secret"),
                ("DAP_CONNECTION_STRING", "postgresql://u:pw@localhost/db"),
                ("DAPSYNC_SYNC__MAX_CONCURRENT_TABLES", "7"),
                ("DAPSYNC_NAMESPACES__CANVAS__TABLES", "courses, users"),
            ],
        )
        .unwrap();
        assert_eq!(config.dap.base_url, "http://dapsync.example");
        assert_eq!(
            config.dap.client_secret.as_ref().unwrap().expose(),
            "official-secret"
        );
        assert_eq!(config.database.url.dialect().unwrap(), Dialect::Postgres);
        assert_eq!(config.sync.max_concurrent_tables, 7);
        assert_eq!(config.namespaces["canvas"].tables, ["courses", "users"]);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = load("[dap]\nclient_idd = \"x\"\n", &[]).unwrap_err();
        assert!(
            crate::error::chain(&err).contains("client_idd"),
            "{}",
            crate::error::chain(&err)
        );
        let err = load("", &[("DAPSYNC_SYNC__SCHEDULEE", "x")]).unwrap_err();
        assert!(
            crate::error::chain(&err).contains("schedulee"),
            "{}",
            crate::error::chain(&err)
        );
        // Variables that are no settings are left alone (Kubernetes service links).
        let env = [
            ("DAPSYNC_SERVICE_HOST", "10.0.0.1"),
            ("DAPSYNC_PORT", "tcp://10.0.0.1:8080"),
        ];
        assert!(load("", &env).is_ok());
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            ("[dap]\nbase_url = \"not a url\"\n", "dap.base_url"),
            ("[database]\nurl = \"oracle://x\"\n", "database.url"),
            ("[sync]\nschedule = \"61 * * * *\"\n", "61 * * * *"),
            ("[sync]\nschedule = \"every hour\"\n", "every hour"),
            ("[dap]\nclient_id = \"abc\"\n", "dap.client_secret"),
            (
                "[sync]\nmax_concurrent_tables = 0\n",
                "sync.max_concurrent_tables",
            ),
            ("[dap]\njob_timeout = \"ten minutes\"\n", "ten minutes"),
            ("[dap]\njob_poll_max = \"0s\"\n", "dap.job_poll_max"),
            ("[dap]\nmax_backoff = \"100ms\"\n", "dap.max_backoff"),
            ("[dap]\nrequest_timeout = \"0s\"\n", "dap.request_timeout"),
            (
                "[sync]\nmax_rejected_fraction = 1.5\n",
                "sync.max_rejected_fraction",
            ),
        ];
        for (toml, expected) in cases {
            let err = load(toml, &[]).unwrap_err();
            assert!(
                crate::error::chain(&err).contains(expected),
                "{toml}: {}",
                crate::error::chain(&err)
            );
        }
    }

    #[test]
    fn cron_accepts_five_and_six_fields() {
        assert_eq!(
            CronSchedule::parse("*/15 * * * *").unwrap().as_str(),
            "0 */15 * * * *"
        );
        assert_eq!(
            CronSchedule::parse("*/2 * * * * *").unwrap().as_str(),
            "*/2 * * * * *"
        );
        assert!(CronSchedule::parse("* * *").is_err());
        let hourly = CronSchedule::hourly();
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T10:20:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            hourly.next_after(now).unwrap().to_rfc3339(),
            "2026-01-01T11:00:00+00:00"
        );
    }

    #[test]
    fn globs_select_tables() {
        assert!(glob_match("quiz_*", "quiz_questions"));
        assert!(glob_match("*_logs", "web_logs"));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("quiz_*", "quizzes"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*a*b*", "xxaxxbxx"));
        let namespace = NamespaceConfig {
            tables: vec!["all".into()],
            exclude: vec!["web_logs".into(), "quiz_*".into()],
            ..Default::default()
        };
        assert!(namespace.selects("courses"));
        assert!(!namespace.selects("quiz_questions"));
        assert!(!namespace.selects("web_logs"));
        assert!(namespace.needs_listing());
        let listed = NamespaceConfig {
            tables: vec!["courses".into()],
            ..Default::default()
        };
        assert!(!listed.needs_listing());
        assert!(!listed.selects("users"));
    }

    #[test]
    fn durations() {
        assert_eq!(
            HumanDuration::parse("500ms").unwrap().0,
            Duration::from_millis(500)
        );
        assert_eq!(
            HumanDuration::parse("2h").unwrap().0,
            Duration::from_secs(7200)
        );
        assert_eq!(
            HumanDuration::parse("90").unwrap().0,
            Duration::from_secs(90)
        );
        assert_eq!(HumanDuration::secs(300).to_string(), "5m");
        assert!(HumanDuration::parse("5 parsecs").is_err());
    }

    #[test]
    fn secrets_come_from_files_and_never_show() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("dap_client_secret"),
            "s3cret-from-systemd\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("database_password"), "db-pa55").unwrap();
        let toml = "[dap]\nclient_id = \"us-east-1#abc\"\n[database]\nurl = \"postgresql://app@db.example/dap\"\n";
        let config = load(
            toml,
            &[("CREDENTIALS_DIRECTORY", dir.path().to_str().unwrap())],
        )
        .unwrap();
        assert_eq!(
            config.dap_credentials().unwrap().1.expose(),
            "s3cret-from-systemd"
        );
        assert_eq!(
            config.database.url.expose(),
            "postgresql://app:db-pa55@db.example/dap"
        );
        for shown in [format!("{config:?}"), config.to_toml()] {
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(!shown.contains("db-pa55"), "{shown}");
            assert!(
                shown.contains("postgresql://app:%5Bredacted%5D@db.example/dap")
                    || shown.contains("[redacted]")
            );
        }
        let secret_file = dir.path().join("secret.txt");
        std::fs::write(&secret_file, "from-file").unwrap();
        let toml = format!(
            "[dap]\nclient_id = \"x\"\nclient_secret_file = {:?}\n",
            secret_file.to_str().unwrap()
        );
        assert_eq!(
            load(&toml, &[])
                .unwrap()
                .dap_credentials()
                .unwrap()
                .1
                .expose(),
            "from-file"
        );

        // A password in the query string (sqlx takes it there too) never shows either.
        let url = DatabaseUrl::new("postgresql://app@db/dap?sslmode=require&password=hunter2");
        for shown in [url.to_string(), format!("{url:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("sslmode=require"), "{shown}");
        }
        assert_eq!(
            DatabaseUrl::new("sqlite://dapsync.db").to_string(),
            "sqlite://dapsync.db"
        );

        // Environment values are strings: a numeric-looking secret keeps its leading zeros.
        let config = load(
            "[dap]\nclient_id = \"x\"\n",
            &[("DAPSYNC_DAP__CLIENT_SECRET", "00123")],
        )
        .unwrap();
        assert_eq!(config.dap_credentials().unwrap().1.expose(), "00123");
    }

    #[test]
    fn missing_credentials_name_the_key() {
        let config = load("", &[]).unwrap();
        assert!(
            config
                .dap_credentials()
                .unwrap_err()
                .to_string()
                .starts_with("dap.client_id is not set")
        );
    }

    #[test]
    fn the_example_file_is_complete_and_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dapsync.toml");
        let env = HashMap::new();
        let config = Config::load_with_env(Some(&path), &env).unwrap();
        assert!(config.namespaces.contains_key("canvas"));
    }
}
