//! TEMPORARY stand-ins until the schema branch lands.
use super::{DdlOptions, Dialect, Statement, TableNames};
use crate::schema::{SchemaDiff, TableSchema};

impl Dialect {
    pub fn quote_ident(self, name: &str) -> String {
        match self {
            Dialect::Mysql => format!("`{}`", name.replace('`', "``")),
            _ => format!("\"{}\"", name.replace('"', "\"\"")),
        }
    }
    pub fn create_table(self, _s: &TableSchema, _n: &TableNames, _o: &DdlOptions) -> Vec<Statement> { todo!() }
    pub fn drop_table(self, _s: Option<&TableSchema>, _n: &TableNames, _o: &DdlOptions) -> Vec<Statement> { todo!() }
    pub fn swap_in(self, _old: Option<&TableSchema>, _new: &TableSchema, _s: &TableNames, _l: &TableNames, _e: bool, _o: &DdlOptions) -> Vec<Statement> { todo!() }
    pub fn render_ddl(self, _s: &TableSchema, _o: &DdlOptions) -> String { todo!() }
    pub fn alter_table(self, _old: &TableSchema, _new: &TableSchema, _d: &SchemaDiff, _n: &TableNames, _c: &[String], _o: &DdlOptions) -> Vec<Statement> { todo!() }
}
impl TableNames {
    pub fn live(dialect: Dialect, ns: &str, table: &str) -> Self { let _ = (dialect, ns, table); todo!() }
    pub fn staging(dialect: Dialect, ns: &str, table: &str) -> Self { let _ = (dialect, ns, table); todo!() }
    pub fn qualified(&self) -> String { todo!() }
    pub fn column(&self, name: &str) -> String { name.to_owned() }
}
