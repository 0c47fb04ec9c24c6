//! A replicated table's identity (its DAP namespace and its name) and what the database knows of
//! it. A type-only leaf anyone may use.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A table, by namespace and name; shown as `namespace.table`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct TableId {
    pub namespace: String,
    pub table: String,
}

impl TableId {
    /// The table `namespace.table`.
    pub fn new(namespace: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            table: table.into(),
        }
    }

    /// Whether the table's name (without its namespace) matches a glob pattern (see [`glob_match`]).
    pub fn name_matches(&self, pattern: &str) -> bool {
        glob_match(pattern, &self.table)
    }
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.namespace, self.table)
    }
}

/// A `namespace.table` text that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a table name of the form namespace.table")]
pub struct ParseTableIdError(String);

impl FromStr for TableId {
    type Err = ParseTableIdError;

    /// Parses `namespace.table`; the namespace ends at the first dot.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('.') {
            Some((namespace, table)) if !namespace.is_empty() && !table.is_empty() => {
                Ok(Self::new(namespace, table))
            }
            _ => Err(ParseTableIdError(text.to_owned())),
        }
    }
}

/// Matches `name` against a glob pattern with `*` (any run of characters) and `?` (one character).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    let (mut p, mut n) = (0, 0);
    // Where the last `*` was, and how much of the name it has swallowed so far.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == '?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((star_p, star_n)) => {
                    p = star_p + 1;
                    n = star_n + 1;
                    star = Some((star_p, star_n + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Everything the database knows of a table, for `dapsync status` and the daemon's `/status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TableStatus {
    pub namespace: String,
    pub table: String,
    /// The instant the copy is current to (`at` or the last `until`).
    pub synced_until: Option<DateTime<Utc>>,
    pub schema_version: Option<i64>,
    pub row_count: Option<i64>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error_type: Option<String>,
    pub last_error_uuid: Option<String>,
    pub last_error_message: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub consecutive_failures: i64,
    /// Since when an operator paused the table (`dapsync pause`, `POST .../pause`).
    pub paused_at: Option<DateTime<Utc>>,
}
