//! Which tables a selection names: the configured names, or the namespace's tables from the API
//! filtered by the selection's patterns.

use std::collections::BTreeMap;

use crate::config::NamespaceConfig;
use crate::dap::{DapClient, DapError};
use crate::table::TableId;

/// Resolves a table selection to tables, asking the API for the namespace's
/// tables only when the selection needs it (`all` or a pattern).
pub async fn resolve_tables(
    dap: &DapClient,
    namespaces: &BTreeMap<String, NamespaceConfig>,
) -> Result<Vec<TableId>, DapError> {
    let mut tables = Vec::new();
    for (namespace, selection) in namespaces {
        let names = if selection.needs_listing() {
            dap.list_tables(namespace).await?
        } else {
            selection.tables.clone()
        };
        tables.extend(
            names
                .into_iter()
                .filter(|t| selection.selects(t))
                .map(|t| TableId::new(namespace, t)),
        );
    }
    tables.sort();
    tables.dedup();
    Ok(tables)
}
