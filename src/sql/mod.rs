//! SQL text for each supported database: identifier quoting and shortening, type mapping, DDL for
//! creating, swapping, altering and dropping replicated tables. Pure: no I/O; `db` runs what this
//! module renders.

mod dml;
mod mysql;
mod naming;
mod pending;
mod postgres;
mod sqlite;

pub use dml::{
    DELETE_COLUMN, LoadColumns, SEQ_COLUMN, copy_from_stdin, count_rows, delete_keys, insert_rows, pg_apply_changes,
    pg_create_change_table, pg_insert_latest, select_all,
};
pub use naming::TableNames;

use serde::{Deserialize, Serialize};

/// A supported target database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    Postgres,
    #[serde(alias = "mariadb")]
    Mysql,
    Sqlite,
}

/// How string enums are stored on PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnumMode {
    /// A native enum type per column, named `"<ns>"."<table>__<column>"` (the official client's way).
    #[default]
    Native,
    /// Plain `text` with a CHECK constraint listing the values (readable by every BI tool).
    Text,
}

/// Choices that shape the DDL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DdlOptions {
    pub enum_mode: EnumMode,
    /// Drop a column that disappeared upstream instead of keeping it (made nullable).
    pub drop_removed_columns: bool,
}

/// One SQL statement to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sql: String,
    /// The statement must be committed on its own before later statements can rely on it
    /// (PostgreSQL `ALTER TYPE ... ADD VALUE`: a new enum value cannot be used in the transaction
    /// that added it).
    pub own_transaction: bool,
}
