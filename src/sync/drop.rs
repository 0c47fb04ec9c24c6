//! Dropping a replicated table: its copy, its enum types and staging leftovers, and its control
//! rows, under the table's lock.

use super::{SyncError, SyncErrorKind};
use crate::db::Db;
use crate::schema::TableSchema;
use crate::table::TableId;

/// Drops a replicated table. Fails with [`SyncErrorKind::Locked`] while another run holds it.
pub async fn drop_table(db: &Db, id: &TableId) -> Result<(), SyncError> {
    let error = |kind| SyncError::new(id.clone(), kind);
    let schema = match db.sync_state(id).await.map_err(|e| error(e.into()))? {
        // A schema that cannot be read names no enum types: the table is dropped all the same.
        Some(state) => TableSchema::from_stored(
            &id.namespace,
            &id.table,
            state.schema_version,
            &state.schema_description,
        )
        .ok(),
        None => None,
    };
    let Some(lock) = db.try_lock_table(id).await.map_err(|e| error(e.into()))? else {
        return Err(error(SyncErrorKind::Locked));
    };
    let result = db.drop_replica(id, schema.as_ref()).await;
    lock.release().await;
    result.map_err(|e| error(e.into()))
}
