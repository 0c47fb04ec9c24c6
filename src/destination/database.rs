//! The database destination: a table's copy in PostgreSQL, MySQL/MariaDB or SQLite, its state in
//! the control tables (`table_sync` and dapsync's own), loaded with each database's fast path.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::{
    Commit, Destination, Guard, Intake, Load, LoadStats, NewRun, ObjectWarning, Reject, Release,
    Result, Row, RowChange, RowLoad, RunError, RunResult, RunTimes, TableState, TableStatus,
};
use crate::db::{self, Db, TableLock, TablePlan};
use crate::schema::{self, TableSchema};
use crate::table::TableId;

impl Destination for Db {
    fn intake(&self) -> Intake {
        Intake::Rows
    }

    fn lock<'a>(&'a self, id: &'a TableId) -> BoxFuture<'a, Result<Option<Guard>>> {
        Box::pin(async move { Ok(self.try_lock_table(id).await?.map(Guard::new)) })
    }

    fn recover<'a>(&'a self, id: &'a TableId) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { Ok(self.recover_table(id).await?) })
    }

    fn state<'a>(&'a self, id: &'a TableId) -> BoxFuture<'a, Result<Option<TableState>>> {
        Box::pin(async move {
            let Some(state) = self.sync_state(id).await? else {
                return Ok(None);
            };
            let stored = TableSchema::from_stored(
                &id.namespace,
                &id.table,
                state.schema_version,
                &state.schema_description,
            )?;
            // The live table's schema runs ahead of table_sync when ALTERs committed before a
            // load that did not: diffs are made against what the table is.
            let live = self
                .live_schema(id)
                .await?
                .unwrap_or_else(|| stored.clone());
            Ok(Some(TableState {
                since: state.since,
                stored,
                live,
                last_success_at: state.last_success_at,
            }))
        })
    }

    fn table_exists<'a>(&'a self, id: &'a TableId) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let live = crate::sql::TableNames::live(self.dialect(), &id.namespace, &id.table);
            Ok(Db::table_exists(self, &live).await?)
        })
    }

    fn start_run<'a>(&'a self, run: &'a NewRun<'a>) -> BoxFuture<'a, Result<i64>> {
        Box::pin(async move { Ok(Db::start_run(self, run).await?) })
    }

    fn fail_run<'a>(
        &'a self,
        run_id: i64,
        id: &'a TableId,
        result: &'a RunResult,
        error: &'a RunError,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { Ok(Db::fail_run(self, run_id, id, result, error).await?) })
    }

    fn record_run_times(&self, run_id: i64, times: RunTimes) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { Ok(Db::record_run_times(self, run_id, times).await?) })
    }

    fn run_warnings(&self, run_id: i64) -> BoxFuture<'_, Result<Vec<ObjectWarning>>> {
        Box::pin(async move { Ok(Db::run_warnings(self, run_id).await?) })
    }

    fn evolve<'a>(
        &'a self,
        old: &'a TableSchema,
        new: &'a TableSchema,
        run_id: i64,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let id = new.id();
            let diff = schema::diff(old, new);
            if diff.needs_rebuild() {
                tracing::warn!(table = %id, from = old.version, to = new.version, changes = ?diff.changes, "schema change needs a new snapshot");
                return Ok(false);
            }
            if diff.is_empty() {
                return Ok(true);
            }
            // preserve (issue 11): the user's views survive the ALTERs (see `Db::evolve_table`).
            self.evolve_table(old, new, &diff, run_id).await?;
            // The ALTERs committed; the load that moves table_sync on may not.
            self.set_live_schema(&self.plan(new.clone())).await?;
            tracing::info!(table = %id, from = old.version, to = new.version, changes = diff.changes.len(), "schema evolved in place");
            Ok(true)
        })
    }

    fn begin_snapshot(
        &self,
        schema: TableSchema,
        run_id: i64,
        repeated_keys: bool,
    ) -> BoxFuture<'_, Result<Load>> {
        Box::pin(async move {
            let plan = Arc::new(self.plan(schema));
            let load = Db::begin_snapshot(self, plan.clone(), run_id, repeated_keys).await?;
            Ok(self.row_load(plan, load, true))
        })
    }

    fn begin_changes<'a>(
        &'a self,
        schema: TableSchema,
        previous: Option<&'a TableSchema>,
        run_id: i64,
    ) -> BoxFuture<'a, Result<Load>> {
        Box::pin(async move {
            let live = self.live_columns(&self.plan(schema.clone()).live).await?;
            let plan = Arc::new(self.plan(schema).accepting(&live, previous));
            let load = self.begin_incremental(plan.clone(), run_id).await?;
            Ok(self.row_load(plan, load, false))
        })
    }

    fn drop_table<'a>(&'a self, id: &'a TableId) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            // A schema that cannot be read names no enum types: the table is dropped all the same.
            let schema = self.sync_state(id).await?.and_then(|state| {
                TableSchema::from_stored(
                    &id.namespace,
                    &id.table,
                    state.schema_version,
                    &state.schema_description,
                )
                .ok()
            });
            Ok(self.drop_replica(id, schema.as_ref()).await?)
        })
    }

    fn table_statuses(&self) -> BoxFuture<'_, Result<Vec<TableStatus>>> {
        Box::pin(async move { Ok(Db::table_statuses(self).await?) })
    }

    fn ping(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { Ok(Db::ping(self).await?) })
    }
}

impl Db {
    fn row_load(&self, plan: Arc<TablePlan>, load: db::Load, snapshot: bool) -> Load {
        // Where a key repeats, the last one wins: the last in the job's order of objects and
        // lines, which the loaders see only when the objects come one after the other. Some
        // databases also load a snapshot faster so.
        let in_key_order = snapshot && self.loads_in_key_order();
        Load::Rows(Box::new(DbLoad {
            plan,
            load,
            in_key_order,
        }))
    }
}

/// A database load: a writer task owning its transaction (see `db::Load`).
struct DbLoad {
    plan: Arc<TablePlan>,
    load: db::Load,
    in_key_order: bool,
}

impl RowLoad for DbLoad {
    fn plan(&self) -> &Arc<TablePlan> {
        &self.plan
    }

    fn in_key_order(&self) -> bool {
        self.in_key_order
    }

    fn rows(&mut self, rows: Vec<Row>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { Ok(self.load.rows(rows).await?) })
    }

    fn changes(&mut self, changes: Vec<RowChange>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { Ok(self.load.changes(changes).await?) })
    }

    fn rejects(&mut self, rejects: Vec<Reject>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { Ok(self.load.rejects(rejects).await?) })
    }

    fn commit(self: Box<Self>, commit: Commit) -> BoxFuture<'static, Result<LoadStats>> {
        Box::pin(async move { Ok(self.load.commit(commit).await?) })
    }

    fn abort(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(self.load.abort())
    }
}

impl Release for TableLock {
    fn release(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(TableLock::release(*self))
    }
}
