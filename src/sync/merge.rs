//! Re-snapshots that keep history (`sync.keep_history`).
//!
//! DAP keeps some tables only for a window (`canvas_logs.web_logs`: 30 days), so their snapshot
//! holds that window and no more. Replacing the live table with it would delete the older rows
//! that only the replica still has. For these tables a re-snapshot is merged instead: its
//! records are upserted into the live table like an incremental's, and nothing is deleted.

use crate::dap::CompleteJob;
use crate::destination::RunKind;
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
        if !self.destination.table_exists(&label).await? {
            return Ok(None);
        }
        if schema::diff(live_schema, &schema).needs_rebuild() {
            tracing::warn!(table = %label, from = live_schema.version, to = schema.version, "the schema change needs a rebuild: the snapshot replaces the table, and its rows older than DAP keeps are gone");
            return Ok(None);
        }
        if !self.evolve(live_schema, &schema, attempt.run_id).await? {
            return Ok(None);
        }
        let load = self
            .destination
            .begin_changes(schema.clone(), None, attempt.run_id)
            .await?;
        let repeated_keys = self.repeats_keys(&label);
        let (stats, bytes) = self
            .fill(job, load, attempt, true, repeated_keys, None)
            .await?;
        tracing::info!(table = %label, upserted = stats.upserted, rows = stats.row_count, "snapshot merged into the live table (sync.keep_history)");
        Ok(Some(self.report(
            &schema,
            job,
            RunKind::Snapshot,
            None,
            stats,
            bytes,
        )))
    }
}
