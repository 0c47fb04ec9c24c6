//! SQL text for each supported database: identifier quoting and shortening, type mapping, DDL for
//! creating, swapping, altering and dropping replicated tables. Pure: no I/O; `db` runs what this
//! module renders.
//!
//! Every identifier goes through [`TableNames`] (shortened to the database's limit) and
//! [`Dialect::quote_ident`]; every literal in DDL (comments, enum labels) through
//! [`Dialect::quote_literal`]. Row values are never spliced into SQL text.

mod dml;
mod mysql;
mod naming;
mod postgres;
mod sqlite;

pub use dml::{
    DELETE_COLUMN, LoadColumns, SEQ_COLUMN, copy_from_stdin, count_keys, count_rows, delete_keys,
    insert_rows, pg_apply_changes, pg_create_change_table, pg_insert_latest, select_all,
};
pub use naming::TableNames;
pub use postgres::create_schema as pg_create_schema;

pub use crate::config::{Dialect, EnumMode};
use crate::schema::{Change, Column, ColumnType, SchemaDiff, TRUNCATION_PLACEHOLDER, TableSchema};

/// Choices that shape the DDL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DdlOptions {
    /// PostgreSQL only.
    pub enum_mode: EnumMode,
    /// Drop a column that disappeared upstream instead of keeping it (made nullable).
    pub drop_removed_columns: bool,
}

/// One SQL statement to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The statement's text, without a trailing `;`.
    pub sql: String,
    /// The statement must be committed on its own before later statements can rely on it
    /// (PostgreSQL `ALTER TYPE ... ADD VALUE`: a new enum value cannot be used in the transaction
    /// that added it).
    pub own_transaction: bool,
}

impl Statement {
    fn new(sql: String) -> Self {
        Self {
            sql,
            own_transaction: false,
        }
    }
}

/// A column of the live table as the database reports it (PostgreSQL and MySQL
/// `information_schema.columns`, SQLite `pragma table_info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveColumn {
    /// The physical column name.
    pub name: String,
    /// Whether the column accepts NULL now.
    pub nullable: bool,
    /// The labels the column accepts now, where the database says so in the column's type:
    /// MySQL `ENUM(...)` (read it with [`LiveColumn::mysql_enum_values`]). Empty elsewhere.
    ///
    /// A label removed upstream stays allowed, but the next schema no longer lists it; without
    /// these labels, a later MySQL `MODIFY COLUMN` would drop it and fail on the rows that hold it.
    pub enum_values: Vec<String>,
    /// Whether the column stores bytes: MySQL `binary`/`varbinary` (IP addresses as the
    /// official client packs them, where a table dapsync created earlier has `varchar(45)`).
    pub binary: bool,
}

impl LiveColumn {
    /// The labels of a MySQL column type as `information_schema.columns.column_type` reports
    /// it (`enum('a','it''s')`); empty for any other type or text that does not parse.
    pub fn mysql_enum_values(column_type: &str) -> Vec<String> {
        mysql::parse_enum(column_type).unwrap_or_default()
    }
}

impl Dialect {
    /// The longest string a key column of `schema` may hold in this database, where the
    /// database's index limit is shorter than the schema allows (MySQL: a key of strings without
    /// `maxLength`); `None` where the schema's own limit holds.
    pub fn key_text_limit(self, schema: &TableSchema, column: &str) -> Option<u32> {
        match self {
            Dialect::Mysql => mysql::key_text_limits(schema)
                .into_iter()
                .find_map(|(name, chars)| (name == column).then_some(chars)),
            Dialect::Postgres | Dialect::Sqlite => None,
        }
    }

    /// Quotes an identifier so that no character can end the quotes: PostgreSQL and SQLite
    /// `"..."` with `"` doubled, MySQL `` `...` `` with `` ` `` doubled. NUL characters, which no
    /// database accepts in a name, are removed.
    pub fn quote_ident(self, name: &str) -> String {
        let quote = match self {
            Self::Postgres | Self::Sqlite => '"',
            Self::Mysql => '`',
        };
        let mut out = String::with_capacity(name.len() + 2);
        out.push(quote);
        for c in name.chars().filter(|c| *c != '\0') {
            if c == quote {
                out.push(c);
            }
            out.push(c);
        }
        out.push(quote);
        out
    }

    /// Quotes a string literal for DDL (comments, enum labels), never for row values. `'` is
    /// doubled; PostgreSQL switches to an `E'...'` literal when the text has a backslash, so the
    /// result does not depend on `standard_conforming_strings`; MySQL also doubles backslashes.
    /// NUL characters are removed.
    pub fn quote_literal(self, text: &str) -> String {
        let escape_backslash = match self {
            Self::Postgres => text.contains('\\'),
            Self::Mysql => true,
            Self::Sqlite => false,
        };
        let mut out = String::with_capacity(text.len() + 3);
        if escape_backslash && self == Self::Postgres {
            out.push('E');
        }
        out.push('\'');
        for c in text.chars().filter(|c| *c != '\0') {
            if c == '\'' || (c == '\\' && escape_backslash) {
                out.push(c);
            }
            out.push(c);
        }
        out.push('\'');
        out
    }

    /// The longest identifier the database accepts: PostgreSQL 63 bytes, MySQL 64 characters,
    /// SQLite no limit. [`TableNames`] shortens longer names.
    pub fn max_identifier_len(self) -> Option<usize> {
        match self {
            Self::Postgres => Some(63),
            Self::Mysql => Some(64),
            Self::Sqlite => None,
        }
    }

    /// The SQL type of a column, without nullability. On MySQL, [`Dialect::create_table`] may
    /// store some `varchar` columns as `text` to fit the row-size limit; this is the type before
    /// that adjustment.
    pub fn column_type(self, column: &Column, names: &TableNames, options: &DdlOptions) -> String {
        match self {
            Self::Postgres => postgres::column_type(&column.ty, &column.name, names, options),
            Self::Mysql => mysql::column_type(&column.ty),
            Self::Sqlite => sqlite::column_type(&column.ty).to_owned(),
        }
    }

    /// Creates the table (and on PostgreSQL its schema, enum types and comments). Expects no
    /// table or enum type of these names: run [`Dialect::drop_table`] first to clear leftovers.
    pub fn create_table(
        self,
        schema: &TableSchema,
        names: &TableNames,
        options: &DdlOptions,
    ) -> Vec<Statement> {
        match self {
            Self::Postgres => postgres::create_table(schema, names, options),
            Self::Mysql => mysql::create_table(schema, names),
            Self::Sqlite => sqlite::create_table(schema, names),
        }
    }

    /// Drops the table if it exists, and on PostgreSQL the enum types of `schema`'s columns.
    pub fn drop_table(
        self,
        schema: Option<&TableSchema>,
        names: &TableNames,
        options: &DdlOptions,
    ) -> Vec<Statement> {
        // Enum types are dropped in both enum modes: the table may predate a change of mode.
        let _ = options;
        let mut out = vec![Statement::new(format!(
            "DROP TABLE IF EXISTS {}",
            names.qualified()
        ))];
        if self == Self::Postgres {
            out.extend(
                schema
                    .into_iter()
                    .flat_map(|s| postgres::drop_enum_types(s.columns.iter(), names)),
            );
        }
        out
    }

    /// Replaces `live` by the fully loaded `staging` copy of table `new`; `old` is the schema
    /// the live table was created with, if known.
    ///
    /// PostgreSQL and SQLite: the caller runs all statements in one transaction. MySQL commits
    /// each DDL statement: the live table is renamed to `<table>__dapsync_old` together with the
    /// staging rename (one atomic `RENAME TABLE`), then the old copy is dropped. A crash between
    /// the two leaves the old copy behind and a re-run of the rename fails, so the caller must
    /// record that the rename happened and then only re-run the drop.
    pub fn swap_in(
        self,
        old: Option<&TableSchema>,
        new: &TableSchema,
        staging: &TableNames,
        live: &TableNames,
        live_exists: bool,
        options: &DdlOptions,
    ) -> Vec<Statement> {
        match self {
            Self::Postgres => postgres::swap_in(old, new, staging, live, options),
            Self::Mysql => mysql::swap_in(staging, live, live_exists),
            Self::Sqlite => sqlite::swap_in(staging, live),
        }
    }

    /// The in-place changes of `diff` (from `old` to `new`) for the live table `names`, whose
    /// current columns are `live_columns`. Changes that need a rebuild are ignored: check
    /// [`SchemaDiff::needs_rebuild`] first.
    ///
    /// - An added column is always added nullable, even if required upstream: existing rows
    ///   have no value for it. It is skipped when already in `live_columns`.
    /// - A removed column is made nullable (its data is kept; a PostgreSQL native enum column
    ///   also becomes `text` and loses its type), or dropped with `drop_removed_columns`.
    /// - NOT NULL is never added (tightened nullability is ignored, and a restated MySQL or
    ///   SQLite column keeps NOT NULL only where the live column has it and the new schema
    ///   requires it); removed enum values stay allowed. New enum values are appended after
    ///   the old ones.
    /// - Statements are safe to run again after a crash (`IF EXISTS`, guards). On SQLite, a
    ///   change of type, nullability or CHECK rebuilds the table in place: run all statements
    ///   in one transaction.
    pub fn alter_table(
        self,
        old: &TableSchema,
        new: &TableSchema,
        diff: &SchemaDiff,
        names: &TableNames,
        live_columns: &[LiveColumn],
        options: &DdlOptions,
    ) -> Vec<Statement> {
        let plan = AlterPlan {
            old,
            new,
            diff,
            names,
            live_columns,
            options,
        };
        match self {
            Self::Postgres => postgres::alter_table(&plan),
            Self::Mysql => mysql::alter_table(&plan),
            Self::Sqlite => sqlite::alter_table(&plan),
        }
    }

    /// The DDL `dapsync ddl` prints: every statement of [`Dialect::create_table`] for the live
    /// table, each ending with `;`.
    pub fn render_ddl(self, schema: &TableSchema, options: &DdlOptions) -> String {
        let names = TableNames::live(self, &schema.namespace, &schema.table);
        let statements = self.create_table(schema, &names, options);
        statements
            .iter()
            .map(|s| format!("{};\n", s.sql))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// What [`Dialect::alter_table`] works from, with the lookups every dialect needs.
struct AlterPlan<'a> {
    old: &'a TableSchema,
    new: &'a TableSchema,
    diff: &'a SchemaDiff,
    names: &'a TableNames,
    live_columns: &'a [LiveColumn],
    options: &'a DdlOptions,
}

impl<'a> AlterPlan<'a> {
    /// The live column for a logical column name.
    fn live(&self, name: &str) -> Option<&'a LiveColumn> {
        let physical = self.names.column(name);
        self.live_columns.iter().find(|c| c.name == physical)
    }

    /// The definition a column of `new` should have in the live table after the in-place
    /// changes: enum values are the old ones followed by the new ones, and NOT NULL stays only
    /// where the live column has it and the new schema requires it (a column not yet in the
    /// table is added nullable).
    fn target(&self, column: &Column) -> Column {
        // A column the old schema lacks but the table has (see `mysql::alter_table`) keeps the
        // enum labels it has.
        let before = match self.old.column(&column.name) {
            Some(c) => Some(self.current(c).ty),
            None => self
                .live(&column.name)
                .filter(|l| !l.enum_values.is_empty())
                .map(|l| ColumnType::Enum {
                    values: l.enum_values.clone(),
                }),
        };
        let ty = match (before, &column.ty) {
            (Some(ColumnType::Enum { values: old }), ColumnType::Enum { values: new }) => {
                ColumnType::Enum {
                    values: merged_values(&old, new),
                }
            }
            (_, ty) => ty.clone(),
        };
        let live_nullable = self.live(&column.name).is_none_or(|l| l.nullable);
        Column {
            ty,
            nullable: !column.key && (live_nullable || column.nullable),
            ..column.clone()
        }
    }

    /// The definition the live table has for a column of `old`, as far as dapsync knows it: the
    /// live nullability, and the live enum labels (when reported) before the old schema's.
    fn current(&self, column: &Column) -> Column {
        let live = self.live(&column.name);
        let ty = match (&column.ty, live) {
            (ColumnType::Enum { values }, Some(live)) if !live.enum_values.is_empty() => {
                ColumnType::Enum {
                    values: merged_values(&live.enum_values, values),
                }
            }
            (ty, _) => ty.clone(),
        };
        Column {
            ty,
            nullable: live.is_none_or(|l| l.nullable),
            ..column.clone()
        }
    }

    /// The columns of `new` whose definition an in-place change touches and that are in the
    /// live table, once each, in the order of the changes.
    fn modified(&self) -> Vec<&'a Column> {
        let mut out: Vec<&Column> = Vec::new();
        for change in &self.diff.changes {
            if let Change::NullabilityRelaxed { column }
            | Change::TypeWidened { column, .. }
            | Change::EnumValuesAdded { column, .. } = change
                && self.live(&column.name).is_some()
                && !out.iter().any(|c| c.name == column.name)
            {
                out.push(column);
            }
        }
        out
    }

    /// Added columns missing from the live table.
    fn added(&self) -> impl Iterator<Item = &'a Column> + '_ {
        self.diff.changes.iter().filter_map(|change| match change {
            Change::ColumnAdded { column } if self.live(&column.name).is_none() => Some(column),
            _ => None,
        })
    }

    /// Removed columns still in the live table.
    fn removed(&self) -> impl Iterator<Item = (&'a Column, &'a LiveColumn)> + '_ {
        self.diff.changes.iter().filter_map(|change| match change {
            Change::ColumnRemoved { column } => self.live(&column.name).map(|live| (column, live)),
            _ => None,
        })
    }
}

/// `old` followed by the values of `new` that `old` lacks.
fn merged_values(old: &[String], new: &[String]) -> Vec<String> {
    let mut values = old.to_vec();
    values.extend(new.iter().filter(|v| !old.contains(v)).cloned());
    values
}

/// A named CHECK constraint limiting a text column to enum values (PostgreSQL text mode, SQLite).
fn enum_check(names: &TableNames, column: &str, values: &[String]) -> String {
    let dialect = names.dialect;
    let list: Vec<String> = values.iter().map(|v| dialect.quote_literal(v)).collect();
    format!(
        "CONSTRAINT {} CHECK ({} IN ({}))",
        dialect.quote_ident(&names.check_constraint(column)),
        names.quoted_column(column),
        list.join(", ")
    )
}

/// The length of a `varchar` holding a bounded text column: a truncatable column must also hold
/// the placeholder.
fn varchar_len(max_length: u32, truncatable: bool) -> u32 {
    if truncatable {
        max_length.max(TRUNCATION_PLACEHOLDER.len() as u32)
    } else {
        max_length
    }
}

/// Whether every value of an integer enum fits a 32-bit integer column.
fn fits_int(values: &[i64]) -> bool {
    values.iter().all(|v| i32::try_from(*v).is_ok())
}

/// The enum values of a column, if it is a string enum.
fn enum_values(column: &Column) -> Option<&[String]> {
    match &column.ty {
        ColumnType::Enum { values } => Some(values),
        _ => None,
    }
}

/// `CREATE TABLE` text: one definition per line, then the primary key, then `suffix`.
fn create_table_sql(
    names: &TableNames,
    definitions: &[String],
    primary_key: &[String],
    suffix: &str,
) -> String {
    let key: Vec<String> = primary_key.iter().map(|c| names.quoted_column(c)).collect();
    let mut lines = definitions.to_vec();
    lines.push(format!(
        "CONSTRAINT {} PRIMARY KEY ({})",
        names.dialect.quote_ident(&names.primary_key),
        key.join(", ")
    ));
    format!(
        "CREATE TABLE {} (\n    {}\n){suffix}",
        names.qualified(),
        lines.join(",\n    ")
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::schema::fixtures::all_fixtures;

    /// Live columns from (name, nullable) pairs, without enum labels.
    pub(crate) fn live_columns(columns: &[(&str, bool)]) -> Vec<LiveColumn> {
        columns
            .iter()
            .map(|(name, nullable)| LiveColumn {
                name: name.to_string(),
                nullable: *nullable,
                enum_values: Vec::new(),
                binary: false,
            })
            .collect()
    }

    /// `dialect.alter_table` from `old` to `new` for the live table `ns.t`.
    pub(crate) fn alter(
        dialect: Dialect,
        old: &TableSchema,
        new: &TableSchema,
        live: &[(&str, bool)],
        options: DdlOptions,
    ) -> Vec<Statement> {
        let names = TableNames::live(dialect, "ns", "t");
        let changes = crate::schema::diff(old, new);
        dialect.alter_table(old, new, &changes, &names, &live_columns(live), &options)
    }

    /// The text of each statement.
    pub(crate) fn sql(statements: Vec<Statement>) -> Vec<String> {
        statements.into_iter().map(|s| s.sql).collect()
    }

    const HOSTILE: [&str; 7] = [
        "a\"b",
        "a`b",
        "x'; DROP TABLE t; --",
        "line\nbreak",
        "naïve 名前",
        "back\\slash",
        "nul\0byte",
    ];

    /// Reads one quoted token starting at the beginning of `sql` and returns (content, rest):
    /// how a SQL lexer sees it.
    fn lex_quoted(sql: &str, quote: char, backslash_escapes: bool) -> (String, &str) {
        let mut chars = sql.char_indices().peekable();
        assert_eq!(chars.next().map(|(_, c)| c), Some(quote));
        let mut content = String::new();
        while let Some((i, c)) = chars.next() {
            if backslash_escapes && c == '\\' {
                content.push(chars.next().unwrap().1);
            } else if c == quote {
                if chars.peek().map(|(_, c)| *c) == Some(quote) {
                    chars.next();
                    content.push(quote);
                } else {
                    return (content, &sql[i + 1..]);
                }
            } else {
                content.push(c);
            }
        }
        panic!("unterminated: {sql}");
    }

    #[test]
    fn identifiers_cannot_break_out() {
        for dialect in [Dialect::Postgres, Dialect::Mysql, Dialect::Sqlite] {
            let quote = if dialect == Dialect::Mysql { '`' } else { '"' };
            for name in HOSTILE {
                let quoted = dialect.quote_ident(name);
                let (content, rest) = lex_quoted(&quoted, quote, false);
                assert_eq!(
                    (content.as_str(), rest),
                    (name.replace('\0', "").as_str(), ""),
                    "{dialect:?} {quoted}"
                );
            }
        }
        assert_eq!(Dialect::Postgres.quote_ident("a\"b"), r#""a""b""#);
        assert_eq!(Dialect::Mysql.quote_ident("a`b"), "`a``b`");
        assert_eq!(Dialect::Sqlite.quote_ident("courses"), r#""courses""#);
    }

    #[test]
    fn literals_cannot_break_out() {
        for text in HOSTILE {
            let expected = text.replace('\0', "");
            let pg = Dialect::Postgres.quote_literal(text);
            // PostgreSQL reads E'' literals with backslash escapes, plain ones without.
            let (content, rest) = match pg.strip_prefix('E') {
                Some(e) => lex_quoted(e, '\'', true),
                None => lex_quoted(&pg, '\'', false),
            };
            assert_eq!((content.as_str(), rest), (expected.as_str(), ""), "{pg}");
            // MySQL's default mode reads backslash escapes; NO_BACKSLASH_ESCAPES does not, and
            // still cannot leave the literal.
            let my = Dialect::Mysql.quote_literal(text);
            assert_eq!(lex_quoted(&my, '\'', true), (expected.clone(), ""), "{my}");
            assert_eq!(lex_quoted(&my, '\'', false).1, "", "{my}");
            let lite = Dialect::Sqlite.quote_literal(text);
            assert_eq!(
                lex_quoted(&lite, '\'', false),
                (expected.clone(), ""),
                "{lite}"
            );
        }
        assert_eq!(Dialect::Postgres.quote_literal("it's"), "'it''s'");
        assert_eq!(Dialect::Postgres.quote_literal(r"a\b"), r"E'a\\b'");
        assert_eq!(Dialect::Mysql.quote_literal(r"it's a\b"), r"'it''s a\\b'");
        assert_eq!(Dialect::Sqlite.quote_literal(r"it's a\b"), r"'it''s a\b'");
    }

    #[test]
    fn every_fixture_renders_in_every_dialect() {
        let modes = [EnumMode::Native, EnumMode::Text];
        for schema in all_fixtures() {
            for dialect in [Dialect::Postgres, Dialect::Mysql, Dialect::Sqlite] {
                for enum_mode in modes {
                    let options = DdlOptions {
                        enum_mode,
                        ..DdlOptions::default()
                    };
                    let ddl = dialect.render_ddl(&schema, &options);
                    let names = TableNames::live(dialect, &schema.namespace, &schema.table);
                    let create = dialect.create_table(&schema, &names, &options);
                    let table = create
                        .iter()
                        .find(|s| s.sql.starts_with("CREATE TABLE"))
                        .unwrap();
                    for column in &schema.columns {
                        assert!(
                            table.sql.contains(&names.quoted_column(&column.name)),
                            "{}.{}",
                            schema.table,
                            column.name
                        );
                    }
                    assert_eq!(ddl.matches(";\n").count(), create.len());
                    assert!(create.iter().all(|s| !s.own_transaction));
                }
            }
        }
    }

    #[test]
    fn dialect_names_in_configuration() {
        #[derive(serde::Deserialize)]
        struct Config {
            dialect: Dialect,
        }
        let parse = |s: &str| serde_json::from_str::<Config>(s).unwrap().dialect;
        assert_eq!(parse(r#"{"dialect": "mariadb"}"#), Dialect::Mysql);
        assert_eq!(parse(r#"{"dialect": "postgres"}"#), Dialect::Postgres);
    }
}
