//! One table of the fake: a few bytes of state per row, the commits that changed it, its schema
//! versions, and what a snapshot or an incremental query returns.
//!
//! Row contents are never stored: they are generated again from (seed, table, key index, row
//! version, schema version) whenever they are needed.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use fastrand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::extract::Extract;
use super::generator::{RowShape, mix, text_hash};

/// The table that keeps only 30 days and may repeat a key within one result (at-least-once).
const WEB_LOGS: (&str, &str) = ("canvas_logs", "web_logs");

/// A table's namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TableName {
    pub namespace: String,
    pub table: String,
}

impl TableName {
    /// Names a table.
    pub fn new(namespace: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            table: table.into(),
        }
    }

    fn is(&self, (namespace, table): (&str, &str)) -> bool {
        self.namespace == namespace && self.table == table
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.namespace, self.table)
    }
}

/// One change round: one commit in which existing rows are updated or hard-deleted and new rows
/// inserted. Which rows is drawn from the seed and the round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Changes {
    /// Live rows that get a new version.
    pub updates: u64,
    /// New keys.
    pub inserts: u64,
    /// Live rows that are hard-deleted.
    pub deletes: u64,
    /// New keys deleted within the same round: an incremental spanning the round carries a `D`
    /// for a key no snapshot ever had.
    pub inserted_then_deleted: u64,
}

/// What the fake keeps per key index (12 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RowState {
    pub version: u32,
    /// Index of the commit that last changed the row.
    pub commit: u32,
    /// Index into the table's schema versions: the one the row was written under.
    pub schema: u16,
    pub live: bool,
}

/// One version of a table's schema.
#[derive(Debug)]
pub(super) struct SchemaVersion {
    pub version: i64,
    pub schema: Value,
    shape: RowShape,
}

impl SchemaVersion {
    /// Compiles a schema; `None` when it has no key properties.
    pub(super) fn new(version: i64, schema: Value) -> Option<Self> {
        let shape = RowShape::compile(&schema)?;
        Some(Self {
            version,
            schema,
            shape,
        })
    }
}

/// Turns row states into rows. Cheap to clone, so a job can take one away from the lock.
#[derive(Debug, Clone)]
pub(super) struct RowSource {
    seed: u64,
    table_hash: u64,
    /// Every version of the table's schema, oldest first (never empty).
    pub schemas: Vec<Arc<SchemaVersion>>,
}

impl RowSource {
    /// The key and value columns of a row version.
    pub(super) fn key_and_value(
        &self,
        index: u64,
        row: RowState,
    ) -> (Map<String, Value>, Map<String, Value>) {
        let schema = &self.schemas[usize::from(row.schema)];
        let version = u64::from(row.version);
        // The signed version is hashed by its bits.
        let mut rng = Rng::with_seed(mix(&[
            self.seed,
            self.table_hash,
            index,
            version,
            schema.version as u64,
        ]));
        (
            schema.shape.key(self.table_hash, index),
            schema.shape.value(&mut rng),
        )
    }

    /// The `(seed, table)` hash that decides whether a key is repeated in a result.
    pub(super) fn repeats(&self, index: u64, row: RowState) -> bool {
        mix(&[
            self.seed,
            self.table_hash,
            index,
            u64::from(row.version),
            0x5EED,
        ])
        .is_multiple_of(4)
    }
}

/// Why a query cannot be answered.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum QueryError {
    OutOfRange,
    SnapshotRequired,
    /// An `until` the fake cannot serve (it keeps only the latest state of each row).
    Until(&'static str),
}

/// The time span a query result covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Window {
    Snapshot {
        at: DateTime<Utc>,
    },
    Incremental {
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    },
}

/// A commit, with its time as records carry it.
#[derive(Debug, Clone)]
pub(super) struct Commit {
    pub ts: DateTime<Utc>,
    /// RFC 3339 with microseconds, as `meta.ts` carries it.
    pub text: String,
}

impl Commit {
    fn new(ts: DateTime<Utc>) -> Self {
        Self {
            ts,
            text: ts.to_rfc3339_opts(SecondsFormat::Micros, true),
        }
    }
}

/// The state of one table.
#[derive(Debug)]
pub(super) struct TableState {
    name: TableName,
    source: RowSource,
    /// Shared with jobs that are still writing their objects; copied only if changed meanwhile.
    rows: Arc<Vec<RowState>>,
    commits: Arc<Vec<Commit>>,
    /// Incrementals whose `since` is before this need a new snapshot (a reload or a rewrite).
    chain_start: Option<DateTime<Utc>>,
    retention: Option<Duration>,
    rows_per_object: usize,
    bad_lines_every: Option<u64>,
}

impl TableState {
    /// A table of `rows` live rows, all written in one initial commit at `ts`.
    pub(super) fn new(
        name: TableName,
        seed: u64,
        schema: SchemaVersion,
        rows: u64,
        rows_per_object: usize,
        ts: DateTime<Utc>,
    ) -> Self {
        let retention = name.is(WEB_LOGS).then(|| Duration::from_secs(30 * 86_400));
        let row = RowState {
            version: 0,
            commit: 0,
            schema: 0,
            live: true,
        };
        let count = usize::try_from(rows).unwrap_or(usize::MAX);
        Self {
            source: RowSource {
                seed,
                table_hash: text_hash(&name.to_string()),
                schemas: vec![Arc::new(schema)],
            },
            name,
            rows: Arc::new(vec![row; count]),
            commits: Arc::new(vec![Commit::new(ts)]),
            chain_start: None,
            retention,
            rows_per_object: rows_per_object.max(1),
            bad_lines_every: None,
        }
    }

    /// See [`crate::fake::FakeTable::bad_lines_every`].
    pub(super) fn set_bad_lines_every(&mut self, every: Option<u64>) {
        self.bad_lines_every = every;
    }

    pub(super) fn latest_schema(&self) -> &SchemaVersion {
        // Never empty: `new` starts with one version and versions are only added.
        &self.source.schemas[self.source.schemas.len() - 1]
    }

    /// The version before the latest (the latest when there is only one).
    pub(super) fn stale_schema(&self) -> &SchemaVersion {
        let versions = &self.source.schemas;
        &versions[versions.len().saturating_sub(2)]
    }

    pub(super) fn latest_commit(&self) -> DateTime<Utc> {
        // Never empty: `new` starts with the initial commit.
        self.commits[self.commits.len() - 1].ts
    }

    /// Changes whenever a query could answer differently (a commit or a new schema version).
    pub(super) fn data_version(&self) -> (usize, usize) {
        (self.commits.len(), self.source.schemas.len())
    }

    pub(super) fn set_retention(&mut self, retention: Option<Duration>) {
        self.retention = retention;
    }

    fn push_commit(&mut self, ts: DateTime<Utc>) -> u32 {
        let commits = Arc::make_mut(&mut self.commits);
        commits.push(Commit::new(ts));
        u32::try_from(commits.len() - 1).unwrap_or(u32::MAX)
    }

    fn latest_schema_index(&self) -> u16 {
        u16::try_from(self.source.schemas.len() - 1).unwrap_or(u16::MAX)
    }

    /// Applies one change round in a commit at `ts`.
    pub(super) fn advance(&mut self, changes: Changes, ts: DateTime<Utc>) {
        let commit = self.push_commit(ts);
        let schema = self.latest_schema_index();
        let mut rng = Rng::with_seed(mix(&[
            self.source.seed,
            self.source.table_hash,
            u64::from(commit),
        ]));
        let mut live: Vec<usize> = self
            .rows
            .iter()
            .enumerate()
            .filter(|(_, row)| row.live)
            .map(|(i, _)| i)
            .collect();
        let picked = usize::try_from(changes.updates.saturating_add(changes.deletes))
            .unwrap_or(usize::MAX)
            .min(live.len());
        for i in 0..picked {
            let j = rng.usize(i..live.len());
            live.swap(i, j);
        }
        let updates = usize::try_from(changes.updates)
            .unwrap_or(usize::MAX)
            .min(picked);
        let rows = Arc::make_mut(&mut self.rows);
        for (n, &index) in live[..picked].iter().enumerate() {
            let row = &mut rows[index];
            row.commit = commit;
            if n < updates {
                row.version = row.version.saturating_add(1);
                row.schema = schema;
            } else {
                row.live = false;
            }
        }
        let new_row = |live| RowState {
            version: 0,
            commit,
            schema,
            live,
        };
        rows.extend((0..changes.inserts).map(|_| new_row(true)));
        rows.extend((0..changes.inserted_then_deleted).map(|_| new_row(false)));
    }

    /// Adds a schema version. With `rewrite`, every live row is written again under it in a
    /// commit at `ts`, which breaks the chain of incrementals.
    pub(super) fn bump_schema(
        &mut self,
        schema: Value,
        rewrite: bool,
        ts: DateTime<Utc>,
    ) -> Option<i64> {
        let version = self.latest_schema().version + 1;
        if self.source.schemas.len() > usize::from(u16::MAX) {
            return None;
        }
        self.source
            .schemas
            .push(Arc::new(SchemaVersion::new(version, schema)?));
        if rewrite {
            let schema = self.latest_schema_index();
            self.rewrite_live_rows(ts, |row| row.schema = schema);
        }
        Some(version)
    }

    /// An upstream reload: every live row is committed again, unchanged, and incrementals from
    /// before the reload need a new snapshot.
    pub(super) fn require_snapshot(&mut self, ts: DateTime<Utc>) {
        self.rewrite_live_rows(ts, |_| {});
    }

    fn rewrite_live_rows(&mut self, ts: DateTime<Utc>, change: impl Fn(&mut RowState)) {
        let commit = self.push_commit(ts);
        for row in Arc::make_mut(&mut self.rows)
            .iter_mut()
            .filter(|row| row.live)
        {
            row.commit = commit;
            change(row);
        }
        self.chain_start = Some(ts);
    }

    /// The latest state of every live row, as `{"key": .., "value": ..}`, in key order.
    pub(super) fn current_rows(&self) -> Vec<Value> {
        let rows = self.rows.iter().zip(0u64..).filter(|(row, _)| row.live);
        rows.map(|(&row, index)| {
            let (key, value) = self.source.key_and_value(index, row);
            serde_json::json!({"key": key, "value": value})
        })
        .collect()
    }

    /// Plans a query: the window it covers and the rows to write. `since` is inclusive.
    pub(super) fn plan(
        &self,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(Window, Extract), QueryError> {
        let latest = self.latest_commit();
        let (window, from_commit) = match since {
            None if until.is_some() => return Err(QueryError::Until("`until` needs `since`")),
            None => (Window::Snapshot { at: latest }, None),
            Some(since) => {
                let oldest = self.retention.and_then(|kept| {
                    TimeDelta::from_std(kept)
                        .ok()
                        .and_then(|kept| now.checked_sub_signed(kept))
                });
                if oldest.is_some_and(|oldest| since < oldest) {
                    return Err(QueryError::OutOfRange);
                }
                if self.chain_start.is_some_and(|start| since < start) {
                    return Err(QueryError::SnapshotRequired);
                }
                let until = match until {
                    Some(until) if until < since => {
                        return Err(QueryError::Until("`until` is before `since`"));
                    }
                    Some(until) if until < latest || until > now => {
                        return Err(QueryError::Until(
                            "the fake serves `until` only between the latest commit and now; leave it out",
                        ));
                    }
                    Some(until) => until,
                    None => latest.max(since),
                };
                let first = self.commits.partition_point(|commit| commit.ts < since);
                (
                    Window::Incremental { since, until },
                    Some(u32::try_from(first).unwrap_or(u32::MAX)),
                )
            }
        };
        let extract = Extract {
            source: self.source.clone(),
            rows: Arc::clone(&self.rows),
            commits: Arc::clone(&self.commits),
            from_commit,
            rows_per_object: self.rows_per_object,
            repeat_keys: self.name.is(WEB_LOGS),
            bad_lines_every: self.bad_lines_every,
        };
        Ok((window, extract))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::fixture::fixture_envelope;

    fn t(second: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_261_600 + second, 0).unwrap()
    }

    fn table(namespace: &str, name: &str, rows: u64) -> TableState {
        let (version, schema) = fixture_envelope(namespace, name).unwrap();
        TableState::new(
            TableName::new(namespace, name),
            7,
            SchemaVersion::new(version, schema).unwrap(),
            rows,
            4,
            t(0),
        )
    }

    fn lines(extract: &Extract) -> Vec<Vec<Value>> {
        let groups: Vec<_> = extract.objects().collect();
        (0..groups.len())
            .map(|part| {
                let mut out = Vec::new();
                extract
                    .write_lines::<()>(&groups, part, |line| {
                        out.push(serde_json::from_slice(line).unwrap());
                        Ok(())
                    })
                    .unwrap();
                out
            })
            .collect()
    }

    #[test]
    fn row_state_stays_small() {
        assert!(std::mem::size_of::<RowState>() <= 12);
    }

    #[test]
    fn snapshot_has_live_rows_in_objects_without_action() {
        let mut courses = table("canvas", "courses", 10);
        courses.advance(
            Changes {
                deletes: 1,
                ..Changes::default()
            },
            t(1),
        );
        let (window, extract) = courses.plan(None, None, t(2)).unwrap();
        assert_eq!(window, Window::Snapshot { at: t(1) });
        let objects = lines(&extract);
        assert_eq!(objects.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4, 1]);
        let first = &objects[0][0];
        assert_eq!(
            first["meta"],
            serde_json::json!({"ts": "2026-01-01T10:00:00.000000Z"})
        );
        assert_eq!(
            objects
                .concat()
                .iter()
                .map(|line| serde_json::json!({"key": line["key"], "value": line["value"]}))
                .collect::<Vec<_>>(),
            courses.current_rows()
        );
    }

    #[test]
    fn incremental_consolidates_changes_since_inclusive() {
        let mut courses = table("canvas", "courses", 10);
        courses.advance(
            Changes {
                updates: 3,
                ..Changes::default()
            },
            t(1),
        );
        courses.advance(
            Changes {
                updates: 2,
                inserts: 2,
                deletes: 2,
                inserted_then_deleted: 1,
            },
            t(2),
        );
        let (window, extract) = courses.plan(Some(t(2)), None, t(3)).unwrap();
        assert_eq!(
            window,
            Window::Incremental {
                since: t(2),
                until: t(2)
            }
        );
        let records = lines(&extract).concat();
        let actions: Vec<&str> = records
            .iter()
            .map(|r| r["meta"]["action"].as_str().unwrap())
            .collect();
        assert_eq!(actions.iter().filter(|a| **a == "U").count(), 4);
        assert_eq!(actions.iter().filter(|a| **a == "D").count(), 3);
        assert!(
            records
                .iter()
                .filter(|r| r["meta"]["action"] == "D")
                .all(|r| r.get("value").is_none())
        );
        assert!(
            records
                .iter()
                .all(|r| r["meta"]["ts"] == "2026-01-01T10:00:02.000000Z")
        );
        // Since after the latest commit: nothing, and `until` = `since`.
        let (window, extract) = courses.plan(Some(t(5)), None, t(6)).unwrap();
        assert_eq!(
            window,
            Window::Incremental {
                since: t(5),
                until: t(5)
            }
        );
        assert_eq!(lines(&extract), [Vec::<Value>::new()]);
    }

    #[test]
    fn rewrites_and_reloads_break_the_chain_and_retention_limits_it() {
        let mut courses = table("canvas", "courses", 3);
        let schema = courses.latest_schema().schema.clone();
        assert_eq!(courses.bump_schema(schema.clone(), false, t(1)), Some(2));
        assert!(courses.plan(Some(t(0)), None, t(2)).is_ok());
        assert_eq!(courses.bump_schema(schema, true, t(3)), Some(3));
        assert_eq!(
            courses.plan(Some(t(2)), None, t(4)).unwrap_err(),
            QueryError::SnapshotRequired
        );
        assert!(courses.plan(Some(t(3)), None, t(4)).is_ok());
        courses.require_snapshot(t(5));
        assert_eq!(
            courses.plan(Some(t(3)), None, t(6)).unwrap_err(),
            QueryError::SnapshotRequired
        );

        let web_logs = table("canvas_logs", "web_logs", 3);
        let now = t(0) + TimeDelta::days(31);
        assert_eq!(
            web_logs.plan(Some(t(0)), None, now).unwrap_err(),
            QueryError::OutOfRange
        );
        assert!(web_logs.plan(Some(t(0)), None, t(10)).is_ok());
        assert!(matches!(
            web_logs.plan(Some(t(0)), Some(t(-1)), t(10)),
            Err(QueryError::Until(_))
        ));
    }

    #[test]
    fn web_logs_repeat_keys_older_version_first() {
        let mut web_logs = table("canvas_logs", "web_logs", 40);
        web_logs.advance(
            Changes {
                updates: 40,
                ..Changes::default()
            },
            t(1),
        );
        let (_, extract) = web_logs.plan(None, None, t(2)).unwrap();
        let objects = lines(&extract);
        // Some key repeats across objects, not only within one.
        let object_of = |key: &Value| {
            objects
                .iter()
                .position(|object| object.iter().any(|r| &r["key"] == key))
        };
        assert!(objects.iter().enumerate().any(|(i, object)| {
            object
                .iter()
                .any(|r| object_of(&r["key"]).is_some_and(|first| first < i))
        }));
        let records = objects.concat();
        assert!(records.len() > 40);
        let current: Vec<Value> = web_logs.current_rows();
        let mut last = std::collections::HashMap::new();
        for record in &records {
            last.insert(record["key"].to_string(), record["value"].clone());
        }
        assert_eq!(last.len(), 40);
        for row in current {
            assert_eq!(last[&row["key"].to_string()], row["value"]);
        }
    }
}
