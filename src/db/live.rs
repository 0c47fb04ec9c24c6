//! The schema the live table actually has, when it runs ahead of `table_sync`.
//!
//! In-place ALTERs commit before the load that follows them (MySQL's DDL commits implicitly,
//! and a long load should not hold the ALTER's locks), while `table_sync.schema_description`,
//! which the official client owns, moves only when the load commits. When the load then fails,
//! the table has a newer shape than `table_sync` says; `table_state.live_schema` remembers it
//! until the next load commits, so that the next schema change is diffed against what the
//! table really is.

use serde_json::{Value, json};

use super::control::upsert_table_state;
use super::query::{Arg, Kind, Tx};
use super::{Db, DbError, TablePlan};
use crate::schema::TableSchema;
use crate::table::TableId;

impl Db {
    /// The live table's schema when it differs from `table_sync`'s, else `None`.
    pub async fn live_schema(&self, id: &TableId) -> Result<Option<TableSchema>, DbError> {
        let rows = self
            .fetch(
                &format!(
                    "SELECT live_schema FROM {} WHERE namespace = ? AND table_name = ?",
                    self.dialect().own_table("table_state")
                ),
                &[
                    Arg::Text(Some(id.namespace.clone())),
                    Arg::Text(Some(id.table.clone())),
                ],
                &[Kind::Text],
                "reading table_state",
            )
            .await?;
        let Some(text) = rows.into_iter().next().and_then(|row| row[0].text()) else {
            return Ok(None);
        };
        let unreadable = |reason: String| DbError::UnreadableLiveSchema {
            table: id.clone(),
            reason,
        };
        let value: Value = serde_json::from_str(&text).map_err(|e| unreadable(e.to_string()))?;
        let version = value["version"]
            .as_i64()
            .ok_or_else(|| unreadable("no version".into()))?;
        TableSchema::from_json_schema(&id.namespace, &id.table, version, &value["schema"])
            .map(Some)
            .map_err(|e| unreadable(e.to_string()))
    }

    /// Records that the live table now has `plan`'s schema, in a transaction of its own.
    pub async fn set_live_schema(&self, plan: &TablePlan) -> Result<(), DbError> {
        let _writer = self.sqlite_guard().await;
        let mut tx = self.begin().await?;
        record_live_schema(&mut tx, plan).await?;
        tx.commit()
            .await
            .map_err(DbError::sql("recording the live table's schema"))
    }
}

/// Records, in `tx`, that the live table has `plan`'s schema: in the transaction of the ALTERs
/// that gave it that shape where DDL is transactional, so the two never drift apart.
pub(super) async fn record_live_schema(tx: &mut Tx, plan: &TablePlan) -> Result<(), DbError> {
    let value = json!({
        "version": plan.schema.version,
        "schema": plan.schema.description_json(),
    });
    upsert_table_state(
        tx,
        plan,
        &[("live_schema", Arg::Text(Some(value.to_string())))],
    )
    .await
}
