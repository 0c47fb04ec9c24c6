//! A table prepared for loading: its physical names, its columns in load order, and how each
//! record becomes a row of cells.

use serde_json::{Map, Value};

use super::value::{Cell, ColumnCodec};
use crate::dap::Record;
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

    /// Converts an upsert record into a full row. The record's key and value are taken out.
    pub fn row(&self, record: &mut Record) -> Result<Row, String> {
        let mut key = std::mem::take(&mut record.key);
        let mut value = std::mem::take(&mut record.value);
        let key_len = self.columns.key_len;
        let mut row = Vec::with_capacity(self.codecs.len());
        for (i, (column, codec)) in self.schema.columns.iter().zip(&self.codecs).enumerate() {
            let source = if i < key_len { &mut key } else { &mut value };
            let cell = codec
                .convert(source.remove(&column.name))
                .map_err(|e| format!("column `{}` {e}", column.name))?;
            row.push(cell);
        }
        self.no_leftovers(&key, &value)?;
        Ok(row)
    }

    /// Converts a delete record into its key cells.
    pub fn key_row(&self, record: &mut Record) -> Result<Row, String> {
        let mut key = std::mem::take(&mut record.key);
        let mut row = Vec::with_capacity(self.columns.key_len);
        for (column, codec) in self
            .schema
            .columns
            .iter()
            .zip(&self.codecs)
            .take(self.columns.key_len)
        {
            let cell = codec
                .convert(key.remove(&column.name))
                .map_err(|e| format!("key `{}` {e}", column.name))?;
            row.push(cell);
        }
        self.no_leftovers(&key, &Map::new())?;
        Ok(row)
    }

    /// A property the schema does not know would be silently dropped: refuse the record instead.
    fn no_leftovers(
        &self,
        key: &Map<String, Value>,
        value: &Map<String, Value>,
    ) -> Result<(), String> {
        match key.keys().chain(value.keys()).next() {
            Some(name) => Err(format!(
                "has a property `{name}` that schema version {} does not define",
                self.schema.version
            )),
            None => Ok(()),
        }
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

/// The `key` of a record line as JSON text, for the reject table (the record itself may be gone).
pub fn line_key(line: &str) -> Option<String> {
    let value: Value = serde_json::from_str(line).ok()?;
    value.get("key").map(Value::to_string)
}
