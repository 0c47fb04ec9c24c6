//! Where a replicated table goes: the seam between `sync`, which knows DAP and the chain of
//! queries, and the target that keeps the table's copy and its sync state.
//!
//! [`Destination`] is what a table run needs of its target; `sync` talks to nothing else. The
//! database destination ([`Db`], in `database`) keeps the copy in a SQL table, its state in the
//! control tables, and takes the job's records decoded into rows of typed cells. SQL plans,
//! COPY, staging tables and swaps stay behind it.

mod database;
mod files;

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;

use crate::dap::{CompleteJob, DapClient, DapError, Format};
use crate::schema::{SchemaError, TableSchema};
use crate::table::TableId;

pub use files::{CHAIN_MANIFEST, Files, FilesError};

/// The run history's and the control tables' vocabulary, which every destination speaks.
pub use crate::db::{
    Cell, Commit, Db, DbError, LoadStats, NewRun, ObjectWarning, Reject, Row, RowChange, RunError,
    RunFilter, RunKind, RunOutcome, RunRecord, RunResult, RunTimes, TableControl, TablePlan,
    TableStatus, Token,
};

/// A destination's error.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    /// The database destination's errors, as they are.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A stored schema that cannot be read back.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A file destination's I/O.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A download a files destination's load made.
    #[error(transparent)]
    Dap(#[from] DapError),
    /// What a destination keeps is not what it should be.
    #[error("{0}")]
    State(String),
}

impl DestinationError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            DestinationError::Db(source) => source.is_transient(),
            DestinationError::Dap(source) => source.is_transient(),
            DestinationError::Schema(_)
            | DestinationError::Io { .. }
            | DestinationError::State(_) => false,
        }
    }
}

/// A destination's answer.
pub type Result<T, E = DestinationError> = std::result::Result<T, E>;

/// What a destination knows of a table it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct TableState {
    /// Where the next incremental query starts (the last job's `at` or `until`).
    pub since: DateTime<Utc>,
    /// The schema the table was last loaded with (`table_sync`'s, on a database).
    pub stored: TableSchema,
    /// The schema the copy has now: `stored`, or a newer one whose in-place changes committed
    /// before a load that did not.
    pub live: TableSchema,
    /// When the last successful sync of the table started, by any process (a run that started
    /// after a tick served it).
    pub last_success_at: Option<DateTime<Utc>>,
}

/// What a destination takes of a job, which decides how the job is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intake {
    /// The job's records as JSON Lines, decoded into rows of cells by the plan its loads give
    /// ([`RowLoad::plan`]).
    Rows,
    /// The job's objects as the API serves them in `Format`, downloaded by the load itself
    /// ([`ObjectLoad::save`]).
    Objects(Format),
}

/// One snapshot or change set being written: the destination's half of a run's load.
pub enum Load {
    /// Takes decoded rows ([`Intake::Rows`]).
    Rows(Box<dyn RowLoad>),
    /// Takes the job's objects ([`Intake::Objects`]).
    Objects(Box<dyn ObjectLoad>),
}

impl fmt::Debug for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Load::Rows(_) => "Load::Rows",
            Load::Objects(_) => "Load::Objects",
        })
    }
}

/// A load fed with decoded rows. Nothing is visible until [`RowLoad::commit`]; dropping the
/// load, or [`RowLoad::abort`], leaves the table as it was.
pub trait RowLoad: Send {
    /// How records become rows for this load: the columns, their codecs, the names. The engine
    /// decodes each line with it on the download tasks.
    fn plan(&self) -> &Arc<TablePlan>;
    /// Whether the job's objects should come one after the other, keys in the job's order
    /// (some databases load a snapshot faster so).
    fn in_key_order(&self) -> bool;
    /// Snapshot rows.
    fn rows(&mut self, rows: Vec<Row>) -> BoxFuture<'_, Result<()>>;
    /// Change-set records, in result order (later ones win).
    fn changes(&mut self, changes: Vec<RowChange>) -> BoxFuture<'_, Result<()>>;
    /// Records the table cannot take; they commit with the data.
    fn rejects(&mut self, rejects: Vec<Reject>) -> BoxFuture<'_, Result<()>>;
    /// Applies everything sent and commits it with the new sync state and the run's outcome.
    fn commit(self: Box<Self>, commit: Commit) -> BoxFuture<'static, Result<LoadStats>>;
    /// Abandons the load and waits until nothing of it runs any more.
    fn abort(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// A load that takes a job's objects as files. The job's chain position commits with
/// [`ObjectLoad::commit`]; an abandoned load leaves the chain where it was.
pub trait ObjectLoad: Send {
    /// Downloads and keeps the job's objects; returns the bytes received.
    fn save<'a>(
        &'a mut self,
        dap: &'a DapClient,
        job: &'a CompleteJob,
    ) -> BoxFuture<'a, Result<u64>>;
    /// Makes the saved job part of the table's chain, with the run's outcome.
    fn commit(self: Box<Self>, commit: Commit) -> BoxFuture<'static, Result<LoadStats>>;
    /// Abandons the load.
    fn abort(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// A held table lock; [`Guard::release`] lets it go (dropping it does too).
pub struct Guard(Box<dyn Release>);

impl Guard {
    /// A lock held by `held`.
    pub fn new(held: impl Release + 'static) -> Self {
        Self(Box::new(held))
    }

    /// Lets the lock go.
    pub async fn release(self) {
        self.0.release().await
    }
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Guard")
    }
}

/// What holds a table lock. Dropping it must let the lock go as well.
pub trait Release: Send {
    fn release(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// What a table run needs of its target: one trait for the database destination and any other.
///
/// A run takes the table's [`lock`](Destination::lock), lets the destination
/// [`recover`](Destination::recover) from a crash, reads the table's
/// [`state`](Destination::state), records itself in the run history
/// ([`start_run`](Destination::start_run)), and then loads a job: a snapshot
/// ([`begin_snapshot`](Destination::begin_snapshot), which replaces the table's copy when it
/// commits) or a change set ([`begin_changes`](Destination::begin_changes), applied to it), after
/// bringing the copy to the job's schema ([`evolve`](Destination::evolve)). A load commits the
/// data, the new watermark and the run's outcome together, or nothing.
///
/// How a destination that is not a SQL database implements it (the files destination keeps
/// each table as a chain of exported jobs in a directory):
/// - [`intake`](Destination::intake) answers [`Intake::Objects`] with its format: the engine
///   then asks the API for the job in that format and hands the job to the load's
///   [`ObjectLoad::save`] instead of decoding records; no row, cell or plan is involved.
/// - [`state`](Destination::state) is read from what it keeps (the newest complete job's
///   manifest: its `at` or `until`, its schema), [`recover`](Destination::recover) clears what
///   an interrupted job left, and a load's `commit` writes the manifest that makes the job part
///   of the chain (written last, so a job without one is not).
/// - [`evolve`](Destination::evolve) returns `true` without work when each job keeps its own
///   schema; [`table_exists`](Destination::table_exists) says whether the chain's folder is
///   there; [`drop_table`](Destination::drop_table) removes it.
/// - The lock and the run history may live beside the data (a lock file, a runs file); a
///   destination without a run history returns a run id of its own from `start_run` and
///   keeps the rest as no-ops.
pub trait Destination: Send + Sync + fmt::Debug {
    /// What the destination takes of a job.
    fn intake(&self) -> Intake;

    /// Takes the table's lock if nobody holds it; `None` if another run holds it.
    fn lock<'a>(&'a self, id: &'a TableId) -> BoxFuture<'a, Result<Option<Guard>>>;

    /// Finishes or clears what a crashed run left (called under the lock).
    fn recover<'a>(&'a self, id: &'a TableId) -> BoxFuture<'a, Result<()>>;

    /// The table's sync state; `None` for a table never synced.
    fn state<'a>(&'a self, id: &'a TableId) -> BoxFuture<'a, Result<Option<TableState>>>;

    /// Whether the table's copy is there (someone may have dropped it by hand).
    fn table_exists<'a>(&'a self, id: &'a TableId) -> BoxFuture<'a, Result<bool>>;

    /// Records the start of a run in the run history; returns its id.
    fn start_run<'a>(&'a self, run: &'a NewRun<'a>) -> BoxFuture<'a, Result<i64>>;

    /// Records a failed run (and the table's last error).
    fn fail_run<'a>(
        &'a self,
        run_id: i64,
        id: &'a TableId,
        result: &'a RunResult,
        error: &'a RunError,
    ) -> BoxFuture<'a, Result<()>>;

    /// Records where a run's time went.
    fn record_run_times(&self, run_id: i64, times: RunTimes) -> BoxFuture<'_, Result<()>>;

    /// The user objects a run could not keep on the table.
    fn run_warnings(&self, run_id: i64) -> BoxFuture<'_, Result<Vec<ObjectWarning>>>;

    /// Brings the copy from `old` to `new` in place, in run `run_id`. `false` when the change
    /// needs a new snapshot instead.
    fn evolve<'a>(
        &'a self,
        old: &'a TableSchema,
        new: &'a TableSchema,
        run_id: i64,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Starts loading a snapshot of `schema` that replaces the table's copy when it commits.
    /// With `repeated_keys`, a key may appear several times and the last one wins.
    fn begin_snapshot(
        &self,
        schema: TableSchema,
        run_id: i64,
        repeated_keys: bool,
    ) -> BoxFuture<'_, Result<Load>>;

    /// Starts loading a change set written under `schema` into the table's copy. `previous`:
    /// the schema the table was last loaded with, when records written under it may come again.
    fn begin_changes<'a>(
        &'a self,
        schema: TableSchema,
        previous: Option<&'a TableSchema>,
        run_id: i64,
    ) -> BoxFuture<'a, Result<Load>>;

    /// Drops the table's copy and forgets its state (the caller holds the lock).
    fn drop_table<'a>(&'a self, id: &'a TableId) -> BoxFuture<'a, Result<()>>;

    /// The tables the destination holds, with their state.
    fn table_statuses(&self) -> BoxFuture<'_, Result<Vec<TableStatus>>>;

    /// Whether the destination answers.
    fn ping(&self) -> BoxFuture<'_, Result<()>>;
}
