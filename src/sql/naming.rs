//! Physical names of replicated tables: quoting, shortening to the database's limits.
//!
//! Live tables follow the official client: PostgreSQL `"<ns>"."<table>"` with primary key
//! `pk_<table>` and enum types `"<ns>"."<table>__<column>"`; MySQL and SQLite `<ns>__<table>` with
//! primary key `pk_<ns>__<table>`. A snapshot loads into a staging copy named with the suffix
//! `__dapsync_new` and then replaces the live table.

use super::Dialect;
use crate::hash::fnv1a;

/// Suffix of the staging copy a snapshot loads into.
const STAGING_SUFFIX: &str = "__dapsync_new";
/// MySQL: the name a replaced live table has between the swap's rename and its drop.
const RETIRED_SUFFIX: &str = "__dapsync_old";

/// The physical names of one replicated table (the live table or its staging copy) in one dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    /// The database the names are for (it decides quoting and length limits).
    pub dialect: Dialect,
    /// The schema holding the table: the DAP namespace on PostgreSQL, `None` elsewhere.
    pub schema: Option<String>,
    /// The table name, unquoted.
    pub table: String,
    /// The primary-key constraint name, unquoted.
    pub primary_key: String,
}

impl TableNames {
    /// The names of the live table.
    pub fn live(dialect: Dialect, namespace: &str, table: &str) -> Self {
        Self::with_base(dialect, namespace, table, "")
    }

    /// The names of the staging copy. On MySQL and SQLite it keeps the live table's
    /// primary-key name: MySQL ignores it (a primary key is always `PRIMARY`) and SQLite cannot
    /// rename a constraint, so a swapped-in table looks exactly like one created directly.
    pub fn staging(dialect: Dialect, namespace: &str, table: &str) -> Self {
        let mut names = Self::with_base(dialect, namespace, table, STAGING_SUFFIX);
        if dialect != Dialect::Postgres {
            names.primary_key = Self::live(dialect, namespace, table).primary_key;
        }
        names
    }

    fn with_base(dialect: Dialect, namespace: &str, table: &str, suffix: &str) -> Self {
        let (schema, base) = match dialect {
            Dialect::Postgres => (
                Some(shorten(dialect, namespace)),
                format!("{table}{suffix}"),
            ),
            Dialect::Mysql | Dialect::Sqlite => (None, format!("{namespace}__{table}{suffix}")),
        };
        Self {
            dialect,
            schema,
            table: shorten(dialect, &base),
            primary_key: shorten(dialect, &format!("pk_{base}")),
        }
    }

    /// Another table in the same place, named after this one with `suffix` (MySQL's retired
    /// copy during a swap, SQLite's rebuild). It keeps this table's primary-key name, which
    /// suits MySQL and SQLite only.
    pub(super) fn suffixed(&self, suffix: &str) -> Self {
        Self {
            table: shorten(self.dialect, &format!("{}{suffix}", self.table)),
            ..self.clone()
        }
    }

    /// MySQL: the live table's name while a snapshot swap has renamed it away and not yet
    /// dropped it.
    pub fn retired(&self) -> Self {
        self.suffixed(RETIRED_SUFFIX)
    }

    /// The quoted table name, schema-qualified where the dialect has schemas.
    pub fn qualified(&self) -> String {
        self.qualify(&self.table)
    }

    fn qualify(&self, name: &str) -> String {
        let name = self.dialect.quote_ident(name);
        match &self.schema {
            Some(schema) => format!("{}.{name}", self.dialect.quote_ident(schema)),
            None => name,
        }
    }

    /// The physical (possibly shortened) column name, unquoted.
    pub fn column(&self, name: &str) -> String {
        shorten(self.dialect, name)
    }

    /// The physical column name, quoted.
    pub fn quoted_column(&self, name: &str) -> String {
        self.dialect.quote_ident(&self.column(name))
    }

    /// PostgreSQL: the quoted, schema-qualified name of a column's native enum type.
    pub fn enum_type(&self, column: &str) -> String {
        self.qualify(&self.enum_type_name(column))
    }

    /// The unquoted name of a column's enum type, `<table>__<column>`.
    pub(super) fn enum_type_name(&self, column: &str) -> String {
        shorten(self.dialect, &format!("{}__{column}", self.table))
    }

    /// The unquoted name of a column's CHECK constraint listing enum values. It does not depend
    /// on the table (CHECK names are per table), so it survives a rename.
    pub(super) fn check_constraint(&self, column: &str) -> String {
        shorten(self.dialect, &format!("ck_{column}"))
    }
}

/// `name` if the dialect accepts it, else a prefix of it (cut on a character boundary) followed
/// by `_` and 8 hex digits of a hash of the whole name: deterministic, and two long names that
/// share a prefix still differ.
pub(super) fn shorten(dialect: Dialect, name: &str) -> String {
    const HASH_LEN: usize = 9;
    let Some(limit) = dialect.max_identifier_len() else {
        return name.to_owned();
    };
    // PostgreSQL counts bytes, MySQL characters.
    let (len, keep) = match dialect {
        Dialect::Postgres => (name.len(), floor_char_boundary(name, limit - HASH_LEN)),
        _ => (
            name.chars().count(),
            name.char_indices()
                .nth(limit - HASH_LEN)
                .map_or(name.len(), |(i, _)| i),
        ),
    };
    if len <= limit {
        return name.to_owned();
    }
    let hash = fnv1a(name.as_bytes());
    format!("{}_{:08x}", &name[..keep], (hash ^ (hash >> 32)) as u32)
}

/// The largest index `<= index` that is a character boundary of `s`.
fn floor_char_boundary(s: &str, index: usize) -> usize {
    (0..=index.min(s.len()))
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_and_staging_names() {
        let pg = TableNames::live(Dialect::Postgres, "canvas", "courses");
        assert_eq!(
            (
                pg.schema.as_deref(),
                pg.table.as_str(),
                pg.primary_key.as_str()
            ),
            (Some("canvas"), "courses", "pk_courses")
        );
        assert_eq!(pg.qualified(), r#""canvas"."courses""#);
        assert_eq!(
            pg.enum_type("workflow_state"),
            r#""canvas"."courses__workflow_state""#
        );
        let pg = TableNames::staging(Dialect::Postgres, "canvas", "courses");
        assert_eq!(pg.qualified(), r#""canvas"."courses__dapsync_new""#);
        assert_eq!(pg.primary_key, "pk_courses__dapsync_new");
        assert_eq!(
            pg.enum_type("workflow_state"),
            r#""canvas"."courses__dapsync_new__workflow_state""#
        );

        let my = TableNames::live(Dialect::Mysql, "canvas", "courses");
        assert_eq!(
            (my.schema.clone(), my.qualified(), my.primary_key.as_str()),
            (None, "`canvas__courses`".into(), "pk_canvas__courses")
        );
        let my = TableNames::staging(Dialect::Mysql, "canvas", "courses");
        assert_eq!(
            (my.qualified(), my.primary_key.as_str()),
            (
                "`canvas__courses__dapsync_new`".into(),
                "pk_canvas__courses"
            )
        );
        assert_eq!(
            my.suffixed("__dapsync_old").qualified(),
            "`canvas__courses__dapsync_new__dapsync_old`"
        );

        let lite = TableNames::staging(Dialect::Sqlite, "canvas_logs", "web_logs");
        assert_eq!(lite.qualified(), r#""canvas_logs__web_logs__dapsync_new""#);
        assert_eq!(lite.primary_key, "pk_canvas_logs__web_logs");
        assert_eq!(lite.quoted_column("id"), r#""id""#);
    }

    #[test]
    fn short_names_are_kept() {
        let name63 = "a".repeat(63);
        assert_eq!(shorten(Dialect::Postgres, &name63), name63);
        let name64 = "é".repeat(64);
        assert_eq!(shorten(Dialect::Mysql, &name64), name64);
        let long = "x".repeat(500);
        assert_eq!(shorten(Dialect::Sqlite, &long), long);
    }

    #[test]
    fn long_names_are_shortened_within_limits() {
        let long = format!("{}_one", "p".repeat(70));
        let other = format!("{}_two", "p".repeat(70));
        let pg = shorten(Dialect::Postgres, &long);
        assert_eq!(pg.len(), 63);
        assert_eq!(&pg[..54], &long[..54]);
        assert_eq!(pg, shorten(Dialect::Postgres, &long), "deterministic");
        assert_ne!(pg, shorten(Dialect::Postgres, &other));
        assert_eq!(
            shorten(Dialect::Postgres, &"a".repeat(64)),
            format!("{}_{}", "a".repeat(54), &pg_hash(&"a".repeat(64)))
        );
        let my = shorten(Dialect::Mysql, &long);
        assert_eq!(my.chars().count(), 64);
        assert_ne!(my, shorten(Dialect::Mysql, &other));
        // Names that share a long prefix and differ only at the end stay apart.
        let names: Vec<String> = (0..1000)
            .map(|i| format!("{}{i}", "t".repeat(60)))
            .collect();
        let mut shortened: Vec<String> = names
            .iter()
            .map(|n| shorten(Dialect::Postgres, n))
            .collect();
        shortened.sort();
        shortened.dedup();
        assert_eq!(shortened.len(), names.len());
    }

    fn pg_hash(name: &str) -> String {
        let hash = fnv1a(name.as_bytes());
        format!("{:08x}", (hash ^ (hash >> 32)) as u32)
    }

    #[test]
    fn multibyte_names_are_cut_on_character_boundaries() {
        // 3-byte characters: 54 bytes of room do not fall on a boundary after "a".
        let name = format!("a{}", "名".repeat(30));
        let pg = shorten(Dialect::Postgres, &name);
        assert!(pg.len() <= 63, "{}", pg.len());
        assert!(pg.starts_with(&format!("a{}", "名".repeat(17))));
        assert!(pg.ends_with(&format!("_{}", pg_hash(&name))));
        let my = shorten(Dialect::Mysql, &"名".repeat(65));
        assert_eq!(my.chars().count(), 64);
        assert!(my.starts_with(&"名".repeat(55)));
    }

    #[test]
    fn every_identifier_is_shortened() {
        let table = "t".repeat(70);
        let column = "c".repeat(70);
        for names in [
            TableNames::live(Dialect::Postgres, &"n".repeat(70), &table),
            TableNames::staging(Dialect::Postgres, "canvas", &table),
        ] {
            for name in [
                names.schema.clone().unwrap(),
                names.table.clone(),
                names.primary_key.clone(),
                names.column(&column),
                names.enum_type_name(&column),
                names.check_constraint(&column),
            ] {
                assert!(name.len() <= 63, "{name}");
            }
        }
        let my = TableNames::staging(Dialect::Mysql, "canvas", &table);
        for name in [
            &my.table,
            &my.primary_key,
            &my.column(&column),
            &my.suffixed("__dapsync_old").table,
        ] {
            assert!(name.chars().count() <= 64, "{name}");
        }
        let live = TableNames::live(Dialect::Postgres, "canvas", &table);
        let staging = TableNames::staging(Dialect::Postgres, "canvas", &table);
        assert_ne!(live.table, staging.table);
        assert_ne!(live.primary_key, staging.primary_key);
    }
}
