//! Everything the fake knows, behind one lock: its clock, tables, jobs and objects.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::FakeTable;
use super::error::FakeError;
use super::extract::Extract;
use super::fixture::fixture_envelope;
use super::format::Output;
use super::job::{Job, QueryKey};
use super::object::ObjectFile;
use super::table::{Changes, QueryError, SchemaVersion, TableName, TableState};

/// Where the fake's time comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FakeClock {
    /// The system clock.
    #[default]
    Wall,
    /// Time stands still at this instant (until [`FakeDap::travel`](super::FakeDap::travel)), so
    /// a run is reproducible byte for byte.
    Fixed(DateTime<Utc>),
}

/// `ts + by`, or the latest representable instant.
pub(super) fn saturating_add(ts: DateTime<Utc>, by: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(by)
        .ok()
        .and_then(|by| ts.checked_add_signed(by))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The fake's clock: commits get strictly increasing microsecond timestamps.
#[derive(Debug)]
pub(super) struct Clock {
    source: FakeClock,
    /// Time travelled so far.
    offset: Duration,
    last_commit: Option<DateTime<Utc>>,
}

impl Clock {
    fn new(source: FakeClock) -> Self {
        Self {
            source,
            offset: Duration::ZERO,
            last_commit: None,
        }
    }

    /// Now, to the microsecond.
    pub(super) fn now(&self) -> DateTime<Utc> {
        let base = match self.source {
            FakeClock::Wall => Utc::now(),
            FakeClock::Fixed(instant) => instant,
        };
        let now = saturating_add(base, self.offset);
        DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
    }

    /// The time of a new commit: now, or a microsecond after the previous commit.
    fn next_commit(&mut self) -> DateTime<Utc> {
        let now = self.now();
        let ts = match self.last_commit {
            Some(last) if now <= last => last
                .checked_add_signed(TimeDelta::microseconds(1))
                .unwrap_or(last),
            _ => now,
        };
        self.last_commit = Some(ts);
        ts
    }

    pub(super) fn travel(&mut self, by: Duration) {
        self.offset = self.offset.saturating_add(by);
    }
}

/// A query the fake accepted: its job, and the rows to write unless the job reused an older one
/// or is meant to fail.
#[derive(Debug)]
pub(super) struct Started {
    pub job: Job,
    pub extract: Option<Extract>,
}

/// Why a query was refused.
#[derive(Debug)]
pub(super) enum Refused {
    NoTable { namespace_exists: bool },
    Query(QueryError),
}

/// The tables, jobs and objects of one server.
#[derive(Debug)]
pub(super) struct World {
    pub clock: Clock,
    seed: u64,
    rows_per_object: usize,
    tables: BTreeMap<TableName, TableState>,
    jobs: HashMap<String, Job>,
    objects: HashMap<String, ObjectFile>,
}

impl World {
    pub(super) fn new(seed: u64, rows_per_object: usize, clock: FakeClock) -> Self {
        Self {
            clock: Clock::new(clock),
            seed,
            rows_per_object,
            tables: BTreeMap::new(),
            jobs: HashMap::new(),
            objects: HashMap::new(),
        }
    }

    /// Adds (or replaces) a table, its rows in one new commit.
    pub(super) fn add_table(&mut self, table: FakeTable) -> Result<(), FakeError> {
        let name = TableName::new(table.namespace, table.table);
        let (version, schema) = match table.schema {
            Some(schema) => (1, schema),
            None => fixture_envelope(&name.namespace, &name.table)
                .ok_or_else(|| FakeError::NoFixture(name.clone()))?,
        };
        let schema = SchemaVersion::new(version, schema)
            .ok_or_else(|| FakeError::InvalidSchema(name.clone()))?;
        let rows_per_object = table.rows_per_object.unwrap_or(self.rows_per_object);
        let ts = self.clock.next_commit();
        let mut state = TableState::new(
            name.clone(),
            self.seed,
            schema,
            table.rows,
            rows_per_object,
            ts,
        );
        state.set_bad_lines_every(table.bad_lines_every.filter(|n| *n > 0));
        self.tables.insert(name, state);
        Ok(())
    }

    pub(super) fn table(&self, name: &TableName) -> Result<&TableState, FakeError> {
        self.tables
            .get(name)
            .ok_or_else(|| FakeError::UnknownTable(name.clone()))
    }

    /// A table to change, with the time of a new commit.
    fn commit_to(
        &mut self,
        name: &TableName,
    ) -> Result<(&mut TableState, DateTime<Utc>), FakeError> {
        let table = self
            .tables
            .get_mut(name)
            .ok_or_else(|| FakeError::UnknownTable(name.clone()))?;
        Ok((table, self.clock.next_commit()))
    }

    pub(super) fn advance(
        &mut self,
        name: &TableName,
        changes: Changes,
    ) -> Result<DateTime<Utc>, FakeError> {
        let (table, ts) = self.commit_to(name)?;
        table.advance(changes, ts);
        Ok(ts)
    }

    pub(super) fn bump_schema(
        &mut self,
        name: &TableName,
        schema: Value,
        rewrite: bool,
    ) -> Result<i64, FakeError> {
        let (table, ts) = self.commit_to(name)?;
        table
            .bump_schema(schema, rewrite, ts)
            .ok_or_else(|| FakeError::InvalidSchema(name.clone()))
    }

    pub(super) fn require_snapshot(
        &mut self,
        name: &TableName,
    ) -> Result<DateTime<Utc>, FakeError> {
        let (table, ts) = self.commit_to(name)?;
        table.require_snapshot(ts);
        Ok(ts)
    }

    pub(super) fn set_retention(
        &mut self,
        name: &TableName,
        retention: Option<Duration>,
    ) -> Result<(), FakeError> {
        let table = self
            .tables
            .get_mut(name)
            .ok_or_else(|| FakeError::UnknownTable(name.clone()))?;
        table.set_retention(retention);
        Ok(())
    }

    pub(super) fn has_namespace(&self, namespace: &str) -> bool {
        self.tables.keys().any(|name| name.namespace == namespace)
    }

    /// The names of the tables in a namespace, sorted.
    pub(super) fn tables_in(&self, namespace: &str) -> Vec<String> {
        self.tables
            .keys()
            .filter(|name| name.namespace == namespace)
            .map(|name| name.table.clone())
            .collect()
    }

    /// Starts a query, or returns the live job of an identical one.
    ///
    /// `failure` is the `error` object of a job that is to fail (an injected fault).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_query(
        &mut self,
        name: &TableName,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        output: Output,
        failure: Option<Value>,
        polls_per_state: u32,
        job_lifetime: Duration,
    ) -> Result<Started, Refused> {
        let Some(table) = self.tables.get(name) else {
            return Err(Refused::NoTable {
                namespace_exists: self.has_namespace(&name.namespace),
            });
        };
        let now = self.clock.now();
        let key = QueryKey {
            table: name.clone(),
            since,
            until,
            output,
            data_version: table.data_version(),
        };
        if let Some(job) = self
            .jobs
            .values()
            .find(|job| job.key == key && !job.is_failed())
        {
            return Ok(Started {
                job: job.clone(),
                extract: None,
            });
        }
        let (window, extract) = table.plan(since, until, now).map_err(Refused::Query)?;
        let expires_at = saturating_add(now, job_lifetime);
        let extract = failure.is_none().then_some(extract);
        let job = Job::new(
            key,
            window,
            table.latest_schema().version,
            expires_at,
            polls_per_state,
            failure,
        );
        self.jobs.insert(job.id.clone(), job.clone());
        Ok(Started { job, extract })
    }

    pub(super) fn job(&self, id: &str) -> Option<&Job> {
        self.jobs.get(id)
    }

    pub(super) fn job_mut(&mut self, id: &str) -> Option<&mut Job> {
        self.jobs.get_mut(id)
    }

    pub(super) fn object(&self, id: &str) -> Option<&ObjectFile> {
        self.objects.get(id)
    }

    /// Stores a job's written objects. Returns the files to delete when the job is gone already.
    pub(super) fn finish_job(
        &mut self,
        job_id: &str,
        written: Result<Vec<(String, ObjectFile)>, Value>,
    ) -> Vec<PathBuf> {
        let Some(job) = self.jobs.get_mut(job_id) else {
            return written
                .map(|objects| objects.into_iter().map(|(_, file)| file.path).collect())
                .unwrap_or_default();
        };
        let ids = written.map(|objects| {
            let ids = objects.iter().map(|(id, _)| id.clone()).collect();
            self.objects.extend(objects);
            ids
        });
        job.finish(ids);
        Vec::new()
    }

    /// Forgets expired jobs and their objects; returns the files to delete.
    pub(super) fn sweep(&mut self) -> Vec<PathBuf> {
        let now = self.clock.now();
        let expired: Vec<String> = self
            .jobs
            .values()
            .filter(|job| job.expires_at <= now)
            .map(|job| job.id.clone())
            .collect();
        let mut files = Vec::new();
        for id in expired {
            if let Some(job) = self.jobs.remove(&id) {
                files.extend(
                    job.objects()
                        .iter()
                        .filter_map(|object| self.objects.remove(object))
                        .map(|file| file.path),
                );
            }
        }
        files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_are_strictly_increasing_even_when_time_stands_still() {
        let start = DateTime::from_timestamp(1_767_261_600, 0).unwrap();
        let mut clock = Clock::new(FakeClock::Fixed(start));
        let first = clock.next_commit();
        let second = clock.next_commit();
        assert_eq!(first, start);
        assert_eq!(second, start + TimeDelta::microseconds(1));
        clock.travel(Duration::from_secs(60));
        assert_eq!(clock.now(), start + TimeDelta::seconds(60));
        assert_eq!(clock.next_commit(), start + TimeDelta::seconds(60));
        let mut wall = Clock::new(FakeClock::Wall);
        let commits: Vec<DateTime<Utc>> = (0..100).map(|_| wall.next_commit()).collect();
        assert!(commits.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(
            commits
                .iter()
                .all(|ts| ts.timestamp_subsec_nanos() % 1000 == 0)
        );
    }

    #[test]
    fn identical_queries_share_a_job_until_the_data_changes() {
        let mut world = World::new(1, 10, FakeClock::Wall);
        world
            .add_table(FakeTable::new("canvas", "courses", 5))
            .unwrap();
        let courses = TableName::new("canvas", "courses");
        let day = Duration::from_secs(86_400);
        let first = world
            .start_query(&courses, None, None, Output::default(), None, 1, day)
            .unwrap();
        assert!(first.extract.is_some());
        let again = world
            .start_query(&courses, None, None, Output::default(), None, 1, day)
            .unwrap();
        assert_eq!(again.job.id, first.job.id);
        assert!(again.extract.is_none());
        world
            .advance(
                &courses,
                Changes {
                    updates: 1,
                    ..Changes::default()
                },
            )
            .unwrap();
        let after = world
            .start_query(&courses, None, None, Output::default(), None, 1, day)
            .unwrap();
        assert_ne!(after.job.id, first.job.id);
        let missing = world.start_query(
            &TableName::new("canvas", "nope"),
            None,
            None,
            Output::default(),
            None,
            1,
            day,
        );
        assert!(matches!(
            missing,
            Err(Refused::NoTable {
                namespace_exists: true
            })
        ));
        assert!(matches!(
            world.advance(&TableName::new("x", "y"), Changes::default()),
            Err(FakeError::UnknownTable(_))
        ));
    }

    #[test]
    fn expired_jobs_are_swept_with_their_objects() {
        let mut world = World::new(
            1,
            10,
            FakeClock::Fixed(DateTime::from_timestamp(0, 0).unwrap()),
        );
        world
            .add_table(FakeTable::new("canvas", "courses", 5))
            .unwrap();
        let courses = TableName::new("canvas", "courses");
        let started = world
            .start_query(
                &courses,
                None,
                None,
                Output::default(),
                None,
                0,
                Duration::from_secs(10),
            )
            .unwrap();
        assert!(world.sweep().is_empty());
        world.clock.travel(Duration::from_secs(10));
        assert!(world.sweep().is_empty(), "no objects were written");
        assert!(world.job_mut(&started.job.id).is_none());
    }
}
