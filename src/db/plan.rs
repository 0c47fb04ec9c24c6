//! A table prepared for loading: its physical names, its columns in load order, and how each
//! record becomes a row of cells.

use super::value::{Cell, ColumnCodec};
use crate::schema::TableSchema;
use crate::sql::{Dialect, LoadColumns, TableNames};

/// One row of cells in [`TablePlan::columns`] order (for deletes: the key cells only).
pub type Row = Vec<Cell>;

/// A table at one schema version, ready to load into one database.
#[derive(Debug, Clone)]
pub struct TablePlan {
    pub schema: TableSchema,
    pub live: TableNames,
    pub staging: TableNames,
    /// Physical column names, key first, in schema order.
    pub columns: LoadColumns,
    codecs: Vec<ColumnCodec>,
}

impl TablePlan {
    /// Plans `schema` for `dialect`.
    pub fn new(dialect: Dialect, schema: TableSchema) -> Self {
        let live = TableNames::live(dialect, &schema.namespace, &schema.table);
        let staging = TableNames::staging(dialect, &schema.namespace, &schema.table);
        let columns = LoadColumns {
            names: schema
                .columns
                .iter()
                .map(|c| live.column(&c.name))
                .collect(),
            key_len: schema.columns.iter().filter(|c| c.key).count(),
        };
        let codecs = schema
            .columns
            .iter()
            .map(|c| ColumnCodec::new(c.ty.clone(), c.nullable, dialect))
            .collect();
        Self {
            schema,
            live,
            staging,
            columns,
            codecs,
        }
    }

    /// The dialect this plan was made for.
    pub fn dialect(&self) -> Dialect {
        self.live.dialect
    }

    /// `namespace.table`, for logs and errors.
    pub fn label(&self) -> String {
        format!("{}.{}", self.schema.namespace, self.schema.table)
    }

    /// How each column's values are converted, in [`TablePlan::columns`] order.
    pub fn codecs(&self) -> &[ColumnCodec] {
        &self.codecs
    }

    /// A text that identifies a row's key (the key cells joined), for telling keys apart in a batch.
    pub fn key_text(&self, row: &Row) -> String {
        let mut out = String::new();
        for (i, cell) in row.iter().take(self.columns.key_len).enumerate() {
            if i > 0 {
                out.push('\u{1f}');
            }
            cell.key_text(&mut out);
        }
        out
    }
}
