//! Physical names of replicated tables: quoting, shortening to the database's limits.

use super::Dialect;

/// The physical names of one replicated table (the live table or its staging copy) in one dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    pub dialect: Dialect,
    /// The schema holding the table: the DAP namespace on PostgreSQL, `None` elsewhere.
    pub schema: Option<String>,
    /// The table name, unquoted.
    pub table: String,
    /// The primary-key constraint name, unquoted.
    pub primary_key: String,
}
