//! DML for loading: COPY, multi-row inserts and upserts, batched deletes, and the PostgreSQL
//! change-set statements. Values are never part of the text: they travel as COPY data or binds.

use super::{Dialect, TableNames};

/// The name of the column that orders a PostgreSQL change set (later lines win).
pub const SEQ_COLUMN: &str = "dapsync_seq";
/// The name of the column that marks deletes in a PostgreSQL change set.
pub const DELETE_COLUMN: &str = "dapsync_delete";

/// Columns of a load, in the order their values are sent, with the primary key first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadColumns {
    /// Physical names, unquoted.
    pub names: Vec<String>,
    /// How many of `names` (from the start) form the primary key.
    pub key_len: usize,
}

impl LoadColumns {
    fn quoted(&self, dialect: Dialect) -> Vec<String> {
        self.names.iter().map(|n| dialect.quote_ident(n)).collect()
    }

    fn key(&self, dialect: Dialect) -> Vec<String> {
        self.quoted(dialect)
            .into_iter()
            .take(self.key_len)
            .collect()
    }

    fn non_key(&self, dialect: Dialect) -> Vec<String> {
        self.quoted(dialect)
            .into_iter()
            .skip(self.key_len)
            .collect()
    }
}

/// `COPY table (columns) FROM STDIN` in the text format.
pub fn copy_from_stdin(table: &str, columns: &[String]) -> String {
    format!("COPY {table} ({}) FROM STDIN", columns.join(", "))
}

/// A multi-row `INSERT` for `rows` rows with one placeholder per value; with `upsert`, rows whose
/// key exists update every non-key column (MySQL `ON DUPLICATE KEY UPDATE`, SQLite `ON CONFLICT`).
pub fn insert_rows(names: &TableNames, columns: &LoadColumns, rows: usize, upsert: bool) -> String {
    let dialect = names.dialect;
    let quoted = columns.quoted(dialect);
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ",
        names.qualified(),
        quoted.join(", ")
    );
    let one = format!("({})", vec!["?"; quoted.len()].join(", "));
    sql.reserve(rows * (one.len() + 1));
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&one);
    }
    if upsert {
        let non_key = columns.non_key(dialect);
        match dialect {
            Dialect::Mysql => {
                // `VALUES(col)` works on MariaDB and MySQL alike (MySQL 8 also has row aliases).
                let key = columns.key(dialect);
                let set: Vec<String> = if non_key.is_empty() {
                    key.iter().map(|c| format!("{c} = {c}")).collect()
                } else {
                    non_key
                        .iter()
                        .map(|c| format!("{c} = VALUES({c})"))
                        .collect()
                };
                sql.push_str(&format!(" ON DUPLICATE KEY UPDATE {}", set.join(", ")));
            }
            Dialect::Sqlite | Dialect::Postgres => {
                let key = columns.key(dialect).join(", ");
                if non_key.is_empty() {
                    sql.push_str(&format!(" ON CONFLICT ({key}) DO NOTHING"));
                } else {
                    let set: Vec<String> = non_key
                        .iter()
                        .map(|c| format!("{c} = excluded.{c}"))
                        .collect();
                    sql.push_str(&format!(
                        " ON CONFLICT ({key}) DO UPDATE SET {}",
                        set.join(", ")
                    ));
                }
            }
        }
    }
    sql
}

/// `DELETE` of `rows` keys given as binds: `WHERE k IN (?, ...)` or `WHERE (k1, k2) IN ((?, ?), ...)`.
pub fn delete_keys(names: &TableNames, columns: &LoadColumns, rows: usize) -> String {
    format!(
        "DELETE FROM {} WHERE {}",
        names.qualified(),
        key_filter(names, columns, rows)
    )
}

/// How many of `rows` keys given as binds exist (see [`delete_keys`]).
pub fn count_keys(names: &TableNames, columns: &LoadColumns, rows: usize) -> String {
    format!(
        "SELECT count(*) FROM {} WHERE {}",
        names.qualified(),
        key_filter(names, columns, rows)
    )
}

fn key_filter(names: &TableNames, columns: &LoadColumns, rows: usize) -> String {
    let key = columns.key(names.dialect);
    let (target, one) = if key.len() == 1 {
        (key[0].clone(), "?".to_owned())
    } else {
        (
            format!("({})", key.join(", ")),
            format!("({})", vec!["?"; key.len()].join(", ")),
        )
    };
    format!("{target} IN ({})", vec![one; rows].join(", "))
}

/// PostgreSQL: a temporary table shaped like `like` (types and enum types included, no
/// constraints), plus the sequence and delete-marker columns, dropped at commit.
pub fn pg_create_change_table(change_table: &str, like: &TableNames) -> [String; 2] {
    let q = |n: &str| Dialect::Postgres.quote_ident(n);
    [
        format!(
            "CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT * FROM {} WITH NO DATA",
            q(change_table),
            like.qualified()
        ),
        format!(
            "ALTER TABLE {} ADD COLUMN {} bigint NOT NULL, ADD COLUMN {} boolean NOT NULL",
            q(change_table),
            q(SEQ_COLUMN),
            q(DELETE_COLUMN)
        ),
    ]
}

/// PostgreSQL: apply a change table to `target`: the latest line per key wins; upserts first, then
/// deletes. Returns the upsert and the delete statement.
pub fn pg_apply_changes(
    change_table: &str,
    target: &TableNames,
    columns: &LoadColumns,
) -> [String; 2] {
    let d = Dialect::Postgres;
    let changes = d.quote_ident(change_table);
    let seq = d.quote_ident(SEQ_COLUMN);
    let delete = d.quote_ident(DELETE_COLUMN);
    let all = columns.quoted(d).join(", ");
    let key = columns.key(d);
    let key_list = key.join(", ");
    let latest =
        format!("SELECT DISTINCT ON ({key_list}) * FROM {changes} ORDER BY {key_list}, {seq} DESC");
    let non_key = columns.non_key(d);
    let on_conflict = if non_key.is_empty() {
        "DO NOTHING".to_owned()
    } else {
        let set: Vec<String> = non_key
            .iter()
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect();
        format!("DO UPDATE SET {}", set.join(", "))
    };
    let upsert = format!(
        "INSERT INTO {} ({all}) SELECT {all} FROM ({latest}) AS c WHERE NOT c.{delete} ON CONFLICT ({key_list}) {on_conflict}",
        target.qualified()
    );
    let matches: Vec<String> = key.iter().map(|k| format!("t.{k} = c.{k}")).collect();
    let remove = format!(
        "DELETE FROM {} AS t USING ({latest}) AS c WHERE c.{delete} AND {}",
        target.qualified(),
        matches.join(" AND ")
    );
    [upsert, remove]
}

/// PostgreSQL: copy the latest line per key of a change table (deletes excluded) into `target`,
/// which must be empty: a snapshot of a table whose keys repeat.
pub fn pg_insert_latest(change_table: &str, target: &TableNames, columns: &LoadColumns) -> String {
    let d = Dialect::Postgres;
    let all = columns.quoted(d).join(", ");
    let key_list = columns.key(d).join(", ");
    format!(
        "INSERT INTO {} ({all}) SELECT {all} FROM (SELECT DISTINCT ON ({key_list}) * FROM {} ORDER BY {key_list}, {} DESC) AS c",
        target.qualified(),
        d.quote_ident(change_table),
        d.quote_ident(SEQ_COLUMN)
    )
}

/// `SELECT columns FROM table ORDER BY key`.
pub fn select_all(names: &TableNames, columns: &LoadColumns) -> String {
    let d = names.dialect;
    format!(
        "SELECT {} FROM {} ORDER BY {}",
        columns.quoted(d).join(", "),
        names.qualified(),
        columns.key(d).join(", ")
    )
}

/// `SELECT count(*) FROM table`.
pub fn count_rows(names: &TableNames) -> String {
    format!("SELECT count(*) FROM {}", names.qualified())
}
