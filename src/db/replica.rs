//! A replicated table's lifecycle: the staging copy a snapshot loads into, the swap that puts
//! it in the live table's place (keeping the user's objects on it), the retired copy it leaves
//! behind, and the drop of the whole table.
//!
//! - PostgreSQL and SQLite: the staging table is created, loaded and swapped in one
//!   transaction, so a snapshot is all or nothing and the old copy serves reads until the commit.
//! - MySQL/MariaDB: DDL commits implicitly, so the staging table is loaded on its own, a pending
//!   swap is recorded in `table_state`, `RENAME TABLE` swaps the copies atomically (the old one
//!   becomes the retired copy, dropped last), and the control rows follow. Every step can be
//!   repeated after a crash: [`Db::recover_table`] finishes what a crash interrupted.

use super::control::{PendingSwap, write_sync_state};
use super::load::{Commit, LoadStats};
use super::plan::TablePlan;
use super::preserve;
use super::query::{Kind, Tx};
use super::runs::{RunResult, finish_run};
use super::{Db, DbError};
use crate::run::RunOutcome;
use crate::schema::TableSchema;
use crate::sql::{self, DdlOptions, Dialect, Statement, TableNames};
use crate::table::TableId;

/// The statements that make a fresh, empty staging table for `plan` (on MySQL, also dropping a
/// retired copy an earlier crash left, which would block the next rename).
pub(super) fn create_staging(plan: &TablePlan, ddl: &DdlOptions) -> Vec<Statement> {
    let dialect = plan.dialect();
    let mut statements = dialect.drop_table(Some(&plan.schema), &plan.staging, ddl);
    if dialect == Dialect::Mysql {
        statements.push(drop_retired(&plan.live));
    }
    statements.extend(dialect.create_table(&plan.schema, &plan.staging, ddl));
    statements
}

/// Drops the copy a MySQL swap retired.
fn drop_retired(live: &TableNames) -> Statement {
    Statement {
        sql: format!("DROP TABLE IF EXISTS {}", live.retired().qualified()),
        own_transaction: true,
    }
}

/// PostgreSQL and SQLite: replaces the live table by the staging table inside the load's
/// transaction. `replaced`: the live table's schema (its enum types go with it).
pub(super) async fn swap_in(
    tx: &mut Tx,
    plan: &TablePlan,
    replaced: Option<&TableSchema>,
    ddl: &DdlOptions,
    run_id: i64,
) -> Result<(), DbError> {
    let dialect = tx.dialect();
    let live_exists = !super::inspect::columns_tx(tx, &plan.live).await?.is_empty();
    // preserve (issue 11): read the user's objects on the live table, drop its views.
    let kept = preserve::before_swap(tx, &plan.live, &plan.staging, replaced).await?;
    let statements = dialect.swap_in(
        replaced,
        &plan.schema,
        &plan.staging,
        &plan.live,
        live_exists,
        ddl,
    );
    for statement in &statements {
        tx.execute_raw(&statement.sql)
            .await
            .map_err(DbError::sql(format!(
                "swapping the snapshot in ({})",
                plan.label()
            )))?;
    }
    // preserve (issue 11): recreate them on the new copy; warnings go to the run's row.
    preserve::after_swap(tx, kept, run_id).await
}

impl Db {
    /// MySQL: commits the loaded staging table, records the pending swap and swaps it in.
    /// Returns the rows of the new copy.
    pub(super) async fn swap_in_mysql(
        &self,
        tx: Tx,
        plan: &TablePlan,
        commit: &Commit,
        stats: &LoadStats,
    ) -> Result<i64, DbError> {
        tx.commit().await.map_err(DbError::sql(format!(
            "committing the last batch ({})",
            plan.label()
        )))?;
        let counted = self
            .fetch(
                &sql::count_rows(&plan.staging),
                &[],
                &[Kind::Int],
                "counting rows",
            )
            .await?;
        let rows = counted.first().and_then(|r| r[0].int()).unwrap_or_default();
        let pending = PendingSwap {
            run_id: commit.run_id,
            watermark: commit.watermark,
            schema_version: plan.schema.version,
            schema_description: plan.schema.description_json().to_string(),
            rows,
            job_id: Some(commit.job_id.clone()),
            upserted: stats.upserted,
            rejected: stats.rejected,
            bytes: commit.bytes,
        };
        self.set_pending_swap(plan, Some(&pending)).await?;
        crate::failpoint::hit("mysql.snapshot.before_swap");
        self.mysql_swap(plan, &pending).await?;
        Ok(rows)
    }

    /// Finishes a MySQL snapshot swap that a crash interrupted (see the module docs). A no-op when
    /// nothing is pending, and on PostgreSQL and SQLite, whose swaps are transactional.
    pub async fn recover_table(&self, id: &TableId) -> Result<(), DbError> {
        let (namespace, table) = (id.namespace.as_str(), id.table.as_str());
        if self.dialect() != Dialect::Mysql {
            return Ok(());
        }
        let Some(pending) = self.pending_swap(id).await? else {
            return Ok(());
        };
        let schema = TableSchema::from_stored(
            namespace,
            table,
            pending.schema_version,
            &pending.schema_description,
        )
        .map_err(|source| DbError::UnreadablePendingSchema {
            table: id.clone(),
            source: Box::new(source),
        })?;
        let plan = TablePlan::new(Dialect::Mysql, schema);
        tracing::info!(table = %plan.label(), run_id = pending.run_id, "finishing an interrupted snapshot swap");
        self.mysql_swap(&plan, &pending).await
    }

    /// MySQL: swap a complete staging table in, then commit the control rows; every step can be
    /// repeated after a crash.
    async fn mysql_swap(&self, plan: &TablePlan, pending: &PendingSwap) -> Result<(), DbError> {
        let staging_exists = self.table_exists(&plan.staging).await?;
        if staging_exists {
            // A retired copy left by an earlier crash would block the rename.
            self.execute_one(&drop_retired(&plan.live).sql, "dropping the replaced table")
                .await?;
            // preserve (issue 11): the user's indexes onto the staging copy before the rename.
            self.copy_user_indexes(&plan.live, &plan.staging, pending.run_id)
                .await?;
            let live_exists = self.table_exists(&plan.live).await?;
            let statements = Dialect::Mysql.swap_in(
                None,
                &plan.schema,
                &plan.staging,
                &plan.live,
                live_exists,
                &self.ddl,
            );
            // The rename (first statement) is atomic; the drop of the old copy may be repeated.
            self.execute_statements(&statements, "swapping the snapshot in")
                .await?;
            crate::failpoint::hit("mysql.snapshot.after_rename");
            // InnoDB has no statistics for a freshly loaded table yet: without them the next
            // incremental's deletes by key were planned as full table scans.
            let analyze = format!("ANALYZE TABLE {}", plan.live.qualified());
            self.execute_one(&analyze, "analyzing the new table")
                .await?;
        }
        let mut tx = self.begin().await?;
        write_sync_state(&mut tx, plan, pending.watermark, pending.rows).await?;
        let result = RunResult {
            job_id: pending.job_id.clone(),
            until: Some(pending.watermark),
            schema_version: Some(plan.schema.version),
            upserted: pending.upserted,
            deleted: 0,
            rejected: pending.rejected,
            bytes: pending.bytes,
        };
        finish_run(&mut tx, pending.run_id, RunOutcome::Success, &result, None).await?;
        tx.commit()
            .await
            .map_err(DbError::sql("committing the snapshot"))?;
        // A crash before this drop leaves a retired copy that the next swap drops.
        self.execute_one(&drop_retired(&plan.live).sql, "dropping the replaced table")
            .await
    }

    /// Drops a replicated table (and its enum types, staging leftovers) and forgets its control
    /// rows. `schema` (from `table_sync`) names the enum types to drop on PostgreSQL.
    pub async fn drop_replica(
        &self,
        id: &TableId,
        schema: Option<&TableSchema>,
    ) -> Result<(), DbError> {
        let (namespace, table) = (id.namespace.as_str(), id.table.as_str());
        let d = self.dialect();
        let live = TableNames::live(d, namespace, table);
        let staging = TableNames::staging(d, namespace, table);
        let mut statements = d.drop_table(schema, &live, &self.ddl);
        statements.extend(d.drop_table(schema, &staging, &self.ddl));
        if d == Dialect::Mysql {
            statements.push(drop_retired(&live));
        }
        self.apply_statements(&statements, &format!("dropping {namespace}.{table}"))
            .await?;
        self.forget_table(id).await
    }
}
