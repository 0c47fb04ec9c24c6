//! Dropping a replicated table: its copy (on a database, its enum types and staging leftovers
//! too) and its state, under the table's lock.

use super::{SyncError, SyncErrorKind};
use crate::destination::Destination;
use crate::table::TableId;

/// Drops a replicated table. Fails with [`SyncErrorKind::Locked`] while another run holds it.
pub async fn drop_table(destination: &dyn Destination, id: &TableId) -> Result<(), SyncError> {
    let error = |kind| SyncError::new(id.clone(), kind);
    let Some(lock) = destination.lock(id).await.map_err(|e| error(e.into()))? else {
        return Err(error(SyncErrorKind::Locked));
    };
    let result = destination.drop_table(id).await;
    lock.release().await;
    result.map_err(|e| error(e.into()))
}
