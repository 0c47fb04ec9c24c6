//! DAP table schemas (versioned JSON Schema) turned into a dialect-neutral table model, and the diff
//! between two versions of a table. Pure: no I/O.
//!
//! A schema envelope from the API looks like `{"schema": S, "version": N}`; `S` has the properties
//! `meta`, `key` (primary-key columns) and `value` (every other column). [`TableSchema`] is what
//! the rest of dapsync works with.

mod diff;
mod model;

pub use diff::{Change, SchemaDiff, diff};
pub use model::{Column, ColumnType, SchemaError, TRUNCATION_PLACEHOLDER, TableSchema};

#[cfg(test)]
pub(crate) mod fixtures;
