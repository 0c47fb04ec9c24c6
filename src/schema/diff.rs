//! Differences between two versions of a table, classified as in-place or rebuild.

use super::model::{Column, ColumnType, TableSchema};

/// The changes that turn one version of a table into another.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SchemaDiff {
    pub changes: Vec<Change>,
}

/// One difference between two versions of a table.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    ColumnAdded { column: Column },
    ColumnRemoved { column: Column },
    NullabilityRelaxed { column: Column },
    NullabilityTightened { column: Column },
    /// A type that can hold every value of the old one: longer varchar, larger integer, ...
    TypeWidened { column: Column, from: ColumnType },
    TypeChanged { column: Column, from: ColumnType },
    EnumValuesAdded { column: Column, values: Vec<String> },
    EnumValuesRemoved { column: Column, values: Vec<String> },
    KeyChanged { from: Vec<String>, to: Vec<String> },
}

impl Change {
    /// Whether the table must be reloaded from a new snapshot (no ALTER can keep the data right).
    pub fn needs_rebuild(&self) -> bool {
        todo!("schema issue")
    }
}

impl SchemaDiff {
    /// Whether any change needs a rebuild.
    pub fn needs_rebuild(&self) -> bool {
        self.changes.iter().any(Change::needs_rebuild)
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Lists the changes from `old` to `new`.
pub fn diff(old: &TableSchema, new: &TableSchema) -> SchemaDiff {
    let _ = (old, new);
    todo!("schema issue")
}
