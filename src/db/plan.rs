//! A table prepared for loading: its physical names, its columns in load order, and how each
//! record becomes a row of cells.

use super::value::{Cell, ColumnCodec};
use crate::schema::{Column, ColumnType, TableSchema};
use crate::sql::{Dialect, LiveColumn, LoadColumns, TableNames};

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
    /// Physical names of columns of earlier schema versions that records may still carry (see
    /// [`TablePlan::accepting`]); their values are left out.
    ignored: Vec<String>,
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
            .map(|c| codec(dialect, &schema, c.ty.clone(), c))
            .collect();
        Self {
            schema,
            live,
            staging,
            columns,
            codecs,
            ignored: Vec::new(),
        }
    }

    /// The dialect this plan was made for.
    pub fn dialect(&self) -> Dialect {
        self.live.dialect
    }

    /// `namespace.table`, for logs and errors.
    pub fn label(&self) -> String {
        self.schema.id().to_string()
    }

    /// The plan adjusted to accept what the live table accepts. Records written under an
    /// earlier schema version keep arriving (every result repeats the last commit applied), and
    /// the new version may refuse them where the table does not: dapsync never adds NOT NULL to
    /// a populated column, never removes an enum label, and keeps removed columns. So a column
    /// takes NULL if its live column does (or `previous` did not require it), enum labels of the
    /// live type and of `previous` are accepted, and properties of removed columns are left out.
    pub fn accepting(mut self, live: &[LiveColumn], previous: Option<&TableSchema>) -> Self {
        let dialect = self.dialect();
        let physical = |name: &str| self.live.column(name);
        self.codecs = self
            .schema
            .columns
            .iter()
            .map(|column| {
                let live_column = live.iter().find(|l| l.name == physical(&column.name));
                let before = previous.and_then(|p| p.column(&column.name));
                let nullable = column.nullable
                    || live_column.is_some_and(|l| l.nullable)
                    || previous.is_some() && before.is_none_or(|b| b.nullable);
                let ty = match &column.ty {
                    ColumnType::Enum { values } => {
                        let mut union = values.clone();
                        let earlier = live_column
                            .map(|l| l.enum_values.iter())
                            .into_iter()
                            .flatten();
                        let from_previous = match before.map(|b| &b.ty) {
                            Some(ColumnType::Enum { values }) => values.as_slice(),
                            _ => &[],
                        };
                        for value in earlier.chain(from_previous) {
                            if !union.contains(value) {
                                union.push(value.clone());
                            }
                        }
                        ColumnType::Enum { values: union }
                    }
                    ty => ty.clone(),
                };
                let codec = codec(dialect, &self.schema, ty, column).nullable(nullable);
                match live_column {
                    Some(live) if column.ty == ColumnType::IpAddress && !live.binary => {
                        codec.with_text_ip()
                    }
                    _ => codec,
                }
            })
            .collect();
        let known: Vec<String> = self
            .schema
            .columns
            .iter()
            .map(|c| physical(&c.name))
            .collect();
        self.ignored = live
            .iter()
            .map(|l| l.name.clone())
            .filter(|name| !known.contains(name))
            .collect();
        if let Some(previous) = previous {
            let removed = previous
                .columns
                .iter()
                .filter(|c| self.schema.column(&c.name).is_none());
            self.ignored.extend(removed.map(|c| physical(&c.name)));
        }
        self
    }

    /// Whether records may carry `property` although the schema has no such column (see
    /// [`TablePlan::accepting`]).
    pub fn ignores(&self, property: &str) -> bool {
        let physical = self.live.column(property);
        self.ignored.contains(&physical)
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

/// The codec of `column` of `schema` in `dialect`, converting values to `ty` (the column's type,
/// or one the live table widens it to).
fn codec(dialect: Dialect, schema: &TableSchema, ty: ColumnType, column: &Column) -> ColumnCodec {
    let key_limit = column
        .key
        .then(|| dialect.key_text_limit(schema, &column.name))
        .flatten();
    ColumnCodec::new(ty, column.nullable, dialect).with_key_limit(key_limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Token;
    use crate::schema::fixtures::{column, table, text};

    #[test]
    fn a_string_key_longer_than_mysql_can_index_is_refused_with_that_reason() {
        let mut schema = table(vec![]);
        schema.columns[0] = Column {
            key: true,
            ..column("id", text(None, false), false)
        };
        let fits = "k".repeat(768);
        let long = "k".repeat(769);
        let mysql = TablePlan::new(Dialect::Mysql, schema.clone());
        let id = &mysql.codecs()[0];
        assert_eq!(
            id.convert_token(Token::Str(fits.as_str().into())),
            Ok(Cell::Text(fits.clone()))
        );
        let error = id
            .convert_token(Token::Str(long.as_str().into()))
            .unwrap_err();
        assert_eq!(
            error,
            "is a key of 769 characters, longer than the 768 this database can index in a primary key"
        );
        // The other databases index text keys of any length.
        let postgres = TablePlan::new(Dialect::Postgres, schema);
        assert!(
            postgres.codecs()[0]
                .convert_token(Token::Str(long.as_str().into()))
                .is_ok()
        );
    }
}
