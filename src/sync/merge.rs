//! Re-snapshots that keep history (`sync.keep_history`).
//!
//! DAP keeps some tables only for a window (`canvas_logs.web_logs`: 30 days), so their snapshot
//! holds that window and no more. Replacing the live table with it would delete the older rows
//! that only the replica still has. For these tables a re-snapshot is merged instead: its
//! records are upserted into the live table like an incremental's, and nothing is deleted.

use std::sync::Arc;

use crate::dap::CompleteJob;
use crate::db::RunKind;
use crate::schema::{self, TableSchema};
use crate::table::TableId;

use super::{Attempt, Engine, RunReport, SyncErrorKind};

impl Engine {
    /// Whether a re-snapshot of the table merges into the live table.
    pub(super) fn keeps_history(&self, id: &TableId) -> bool {
        self.options.keep_history.contains(id)
    }

    /// Upserts a snapshot's records into the live table, whose schema is `live_schema`, after
    /// bringing it to `schema` in place. `Ok(None)` when that cannot be done (no live table, or a
    /// schema change that needs a rebuild): the snapshot then replaces the table.
    pub(super) async fn merge_snapshot(
        &self,
        job: &CompleteJob,
        live_schema: &TableSchema,
        schema: TableSchema,
        attempt: &mut Attempt,
    ) -> Result<Option<RunReport>, SyncErrorKind> {
        let label = schema.id();
        let old = self.db.plan(live_schema.clone());
        if !self.db.table_exists(&old.live).await? {
            return Ok(None);
        }
        if schema::diff(live_schema, &schema).needs_rebuild() {
            tracing::warn!(table = %label, from = live_schema.version, to = schema.version, "the schema change needs a rebuild: the snapshot replaces the table, and its rows older than DAP keeps are gone");
            return Ok(None);
        }
        if !self.evolve(&label, live_schema, &schema, attempt).await? {
            return Ok(None);
        }
        let live = self
            .db
            .live_columns(&self.db.plan(schema.clone()).live)
            .await?;
        let plan = Arc::new(self.db.plan(schema).accepting(&live, None));
        let load = self
            .db
            .begin_incremental(plan.clone(), attempt.run_id, attempt.lock.clone())
            .await?;
        let repeated_keys = self.repeats_keys(&label);
        let (stats, bytes) = self
            .fill(&plan, job, load, attempt, true, repeated_keys, None)
            .await?;
        tracing::info!(table = %label, upserted = stats.upserted, rows = stats.row_count, "snapshot merged into the live table (sync.keep_history)");
        Ok(Some(self.report(
            &plan,
            job,
            RunKind::Snapshot,
            None,
            stats,
            bytes,
        )))
    }
}
