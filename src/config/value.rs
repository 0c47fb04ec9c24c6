//! The configuration's value types: a database URL that hides its password, a human duration
//! (`90s`, `5m`), a cron schedule.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{ConfigError, Dialect};
use crate::secret::{REDACTED, Secret};

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

    /// The database this URL points at; an error for a files destination, which is none.
    pub fn dialect(&self) -> Result<Dialect, ConfigError> {
        match self.target()? {
            Target::Database(dialect) => Ok(dialect),
            Target::Files(_) => Err(ConfigError::invalid(
                "database.url",
                format!("{self} is a directory of files, and this command needs a database"),
            )),
        }
    }

    /// What this URL points at: a database, or a directory of files
    /// (`files:///path/to/dir?format=parquet`).
    pub fn target(&self) -> Result<Target, ConfigError> {
        let (scheme, rest) = self.expose().split_once("://").unwrap_or_default();
        match scheme {
            "postgres" | "postgresql" => Ok(Target::Database(Dialect::Postgres)),
            "mysql" | "mariadb" => Ok(Target::Database(Dialect::Mysql)),
            "sqlite" => Ok(Target::Database(Dialect::Sqlite)),
            "files" => FilesTarget::parse(rest).map(Target::Files),
            _ => Err(ConfigError::invalid(
                "database.url",
                format!("{self} is not a postgresql://, mysql://, sqlite:// or files:// URL"),
            )),
        }
    }

    /// The URL with its password replaced.
    pub(super) fn with_password(&self, password: &str) -> Result<Self, ConfigError> {
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

/// What `database.url` points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A database of this kind.
    Database(Dialect),
    /// A directory that keeps each table as a chain of exported jobs.
    Files(FilesTarget),
}

/// A files destination: `files:///path/to/dir?format=parquet` (`files://dir` is relative).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesTarget {
    /// The directory holding `<namespace>/<table>/`.
    pub directory: PathBuf,
    /// The format asked of the API (default `jsonl`).
    pub format: FileFormat,
}

impl FilesTarget {
    /// Parses what follows `files://`.
    fn parse(rest: &str) -> Result<Self, ConfigError> {
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() {
            return Err(ConfigError::invalid(
                "database.url",
                "files:// needs a directory, such as files:///var/lib/dapsync/lake",
            ));
        }
        let mut format = FileFormat::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("format", name)) => {
                    format = FileFormat::from_name(name).ok_or_else(|| {
                        ConfigError::invalid(
                            "database.url",
                            format!("format={name}: not one of jsonl, tsv, csv, parquet"),
                        )
                    })?;
                }
                _ => {
                    return Err(ConfigError::invalid(
                        "database.url",
                        format!("files:// takes only ?format=..., not {pair:?}"),
                    ));
                }
            }
        }
        Ok(Self {
            directory: PathBuf::from(path),
            format,
        })
    }
}

/// The data format of result objects, as the API serves them (a query body's `format`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// JSON Lines, gzip-compressed.
    #[default]
    Jsonl,
    /// Tab-separated values, gzip-compressed.
    Tsv,
    /// Comma-separated values, gzip-compressed.
    Csv,
    /// Apache Parquet (compressed inside).
    Parquet,
}

impl FileFormat {
    const ALL: [FileFormat; 4] = [Self::Jsonl, Self::Tsv, Self::Csv, Self::Parquet];

    /// The name the query body uses: `jsonl`, `tsv`, `csv` or `parquet`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Jsonl => "jsonl",
            Self::Tsv => "tsv",
            Self::Csv => "csv",
            Self::Parquet => "parquet",
        }
    }

    /// The format of a name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|format| format.name() == name)
    }

    /// Whether its objects are gzip files (all but Parquet).
    pub fn is_gzip(self) -> bool {
        self != Self::Parquet
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
    pub(super) const fn secs(secs: u64) -> Self {
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
