//! The query budget every process on one database shares (the daemon's replicas, a manual
//! `dapsync sync` beside them): the instants of the query starts within the last window, so that
//! together they never start more queries than the API allows.
//!
//! PostgreSQL and MySQL keep it in `query_budget`, read and written under the row's lock, on the
//! database's clock (replicas on several hosts agree on it). SQLite keeps it in a file beside the
//! database, under an exclusive file lock like the table locks: SQLite has one writer at a time,
//! and a snapshot holds it while it loads, so a budget inside the database would hold every query
//! start until that load commits.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};

use super::control::text;
use super::query::{Arg, Kind};
use super::{Db, DbError, Pool};
use crate::sql::Dialect;

/// The answer of [`Db::take_query_start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryStart {
    /// A start was taken at this instant (the database's clock; the host's for SQLite).
    Taken(DateTime<Utc>),
    /// The window is full: nothing was taken, and the oldest start leaves it in this long.
    Full(Duration),
}

const CONTEXT: &str = "taking a query start from the shared budget";

impl Db {
    /// Whether other processes can share this database's query budget (all but an in-memory
    /// SQLite database, which only this process sees).
    pub fn shares_query_budget(&self) -> bool {
        !matches!(self.pool, Pool::Sqlite(_)) || self.sqlite_path.is_some()
    }

    /// Takes one start from the budget `name` if fewer than `max` were taken within the last
    /// `per`, atomically for every process on this database.
    pub async fn take_query_start(
        &self,
        name: &str,
        max: u32,
        per: Duration,
    ) -> Result<QueryStart, DbError> {
        match (&self.pool, &self.locks_dir()) {
            (Pool::Sqlite(_), Some(dir)) => {
                let file = dir.join(format!(
                    "query_budget_{:016x}",
                    crate::hash::fnv1a(name.as_bytes())
                ));
                tokio::task::spawn_blocking(move || take_in_file(&file, max, per))
                    .await
                    .map_err(DbError::WriterFailed)?
            }
            (Pool::Sqlite(_), None) => {
                // In memory: nobody else can share it, and this process's limiter is enough.
                Ok(QueryStart::Taken(Utc::now()))
            }
            _ => self.take_in_table(name, max, per).await,
        }
    }

    async fn take_in_table(
        &self,
        name: &str,
        max: u32,
        per: Duration,
    ) -> Result<QueryStart, DbError> {
        let d = self.dialect();
        let table = d.own_table("query_budget");
        let (insert, now) = match d {
            Dialect::Postgres => (
                format!(
                    "INSERT INTO {table} (name, starts) VALUES (?, '[]') ON CONFLICT (name) DO NOTHING"
                ),
                // The time after the lock was granted (now() is the transaction's start).
                "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS bigint)",
            ),
            _ => (
                format!("INSERT IGNORE INTO {table} (name, starts) VALUES (?, '[]')"),
                "SELECT CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)",
            ),
        };
        // The row is created once, outside the locking transaction: on MySQL an insert that
        // finds the row takes a shared lock, and two of those upgrading to FOR UPDATE deadlock.
        for _ in 0..2 {
            let mut tx = self.begin().await?;
            let rows = tx
                .fetch(
                    &format!("SELECT starts FROM {table} WHERE name = ? FOR UPDATE"),
                    &[text(name)],
                    &[Kind::Text],
                )
                .await
                .map_err(DbError::sql(CONTEXT))?;
            let Some(starts) = rows.into_iter().next() else {
                drop(tx);
                self.fetch(&insert, &[text(name)], &[], CONTEXT).await?;
                continue;
            };
            let micros = tx
                .fetch(now, &[], &[Kind::Int])
                .await
                .map_err(DbError::sql(CONTEXT))?
                .first()
                .and_then(|row| row[0].int())
                .unwrap_or_default();
            let now = DateTime::from_timestamp_micros(micros).unwrap_or_else(Utc::now);
            let (kept, answer) = take(decode(&starts[0].text().unwrap_or_default()), now, max, per);
            if let Some(kept) = kept {
                tx.execute(
                    &format!("UPDATE {table} SET starts = ?, updated_at = ? WHERE name = ?"),
                    &[text(&encode(&kept)), Arg::Time(Some(now)), text(name)],
                )
                .await
                .map_err(DbError::sql(CONTEXT))?;
            }
            tx.commit().await.map_err(DbError::sql(CONTEXT))?;
            return Ok(answer);
        }
        Err(DbError::Io {
            context: CONTEXT.to_owned(),
            source: std::io::Error::other("the budget's row could not be created"),
        })
    }
}

/// SQLite: the budget in `file` (`.json`), read and written under an exclusive lock on
/// `file.lock`; the new contents are renamed into place, so a crash never leaves half a file.
fn take_in_file(file: &Path, max: u32, per: Duration) -> Result<QueryStart, DbError> {
    let io = |source| DbError::Io {
        context: format!("{CONTEXT} ({})", file.display()),
        source,
    };
    let with = |extension: &str| {
        let mut path = file.as_os_str().to_owned();
        path.push(extension);
        PathBuf::from(path)
    };
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(with(".lock"))
        .map_err(io)?;
    lock.lock().map_err(io)?;
    let data = with(".json");
    let starts = match std::fs::read_to_string(&data) {
        Ok(text) => decode(&text),
        Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(e)),
    };
    let now = Utc::now();
    let (kept, answer) = take(starts, now, max, per);
    if let Some(kept) = kept {
        let part = with(".json.part");
        std::fs::write(&part, encode(&kept)).map_err(io)?;
        std::fs::rename(&part, &data).map_err(io)?;
    }
    // Closing the file releases the lock.
    drop(lock);
    Ok(answer)
}

/// A take at `now`: the starts to store (`None` when nothing changes) and the answer. Starts
/// older than `per` leave the window; the oldest of a full window says how long to wait.
fn take(
    mut starts: Vec<DateTime<Utc>>,
    now: DateTime<Utc>,
    max: u32,
    per: Duration,
) -> (Option<Vec<DateTime<Utc>>>, QueryStart) {
    let per = TimeDelta::from_std(per).unwrap_or(TimeDelta::MAX);
    starts.retain(|&start| now.signed_duration_since(start) < per);
    starts.sort();
    if starts.len() < max as usize {
        starts.push(now);
        return (Some(starts), QueryStart::Taken(now));
    }
    // Full: the start that must leave before one more fits (there are `max` or more).
    let blocking = starts[starts.len() - max as usize];
    let wait = (blocking + per)
        .signed_duration_since(now)
        .to_std()
        .unwrap_or_default();
    (None, QueryStart::Full(wait))
}

/// The stored starts: a JSON array of RFC 3339 instants. Anything unreadable counts as none.
fn decode(stored: &str) -> Vec<DateTime<Utc>> {
    let values: Vec<serde_json::Value> = serde_json::from_str(stored).unwrap_or_default();
    values
        .iter()
        .filter_map(|v| DateTime::parse_from_rfc3339(v.as_str()?).ok())
        .map(|t| t.with_timezone(&Utc))
        .collect()
}

fn encode(starts: &[DateTime<Utc>]) -> String {
    let texts: Vec<String> = starts
        .iter()
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
        .collect();
    serde_json::to_string(&texts).unwrap_or_else(|_| "[]".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_window_with_room_takes_and_a_full_one_says_how_long_to_wait() {
        let (kept, answer) = take(vec![at(0), at(10)], at(30), 3, MINUTE);
        assert_eq!(answer, QueryStart::Taken(at(30)));
        assert_eq!(kept, Some(vec![at(0), at(10), at(30)]));
        let (kept, answer) = take(vec![at(0), at(10), at(30)], at(40), 3, MINUTE);
        assert_eq!(kept, None);
        assert_eq!(answer, QueryStart::Full(Duration::from_secs(20)));
        // At 60 s the first start has left the window.
        let (kept, answer) = take(vec![at(0), at(10), at(30)], at(60), 3, MINUTE);
        assert_eq!(answer, QueryStart::Taken(at(60)));
        assert_eq!(kept, Some(vec![at(10), at(30), at(60)]));
    }

    #[test]
    fn a_lowered_limit_waits_until_enough_starts_left() {
        let starts = vec![at(0), at(5), at(10), at(20)];
        let (_, answer) = take(starts, at(30), 2, MINUTE);
        // Two must leave: the one at 10 s leaves at 70 s.
        assert_eq!(answer, QueryStart::Full(Duration::from_secs(40)));
    }

    #[test]
    fn stored_starts_round_trip_and_garbage_counts_as_none() {
        let starts = vec![at(0), at(1) + TimeDelta::microseconds(250)];
        assert_eq!(decode(&encode(&starts)), starts);
        assert!(decode("not json").is_empty());
        assert_eq!(decode(r#"["2026-01-01T00:00:00Z", 7, "nope"]"#).len(), 1);
    }
}
