//! The configuration's value types: a database URL that hides its password, a human duration
//! (`90s`, `5m`), a cron schedule.

use std::fmt;
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
