//! SQLite.
//!
//! Types are the three storage classes INTEGER, REAL and TEXT; enums get a CHECK. SQLite cannot
//! alter a column's type, nullability or CHECK, so such changes rebuild the table in place.
//! Comments are not kept (SQLite has none).

use super::{AlterPlan, Statement, TableNames, create_table_sql, enum_check, enum_values};
use crate::schema::{Column, ColumnType, TableSchema};

/// Name suffix of the copy an in-place rebuild fills.
const REBUILD_SUFFIX: &str = "__dapsync_rebuild";

pub(super) fn column_type(ty: &ColumnType) -> &'static str {
    use ColumnType::*;
    match ty {
        SmallInt | Int | BigInt | Boolean | IntEnum { .. } => "INTEGER",
        Double => "REAL",
        Text { .. } | Timestamp | Date | Uuid | Enum { .. } | IpAddress | Array { .. } | Json => {
            "TEXT"
        }
    }
}

/// `"column" TYPE [NOT NULL] [CHECK]`, as in `CREATE TABLE` and `ADD COLUMN`.
fn column_def(names: &TableNames, column: &Column) -> String {
    let mut def = format!(
        "{} {}",
        names.quoted_column(&column.name),
        column_type(&column.ty)
    );
    if !column.nullable {
        def.push_str(" NOT NULL");
    }
    if let Some(values) = enum_values(column) {
        def.push(' ');
        def.push_str(&enum_check(names, &column.name, values));
    }
    def
}

pub(super) fn create_table(schema: &TableSchema, names: &TableNames) -> Vec<Statement> {
    let definitions: Vec<String> = schema
        .columns
        .iter()
        .map(|c| column_def(names, c))
        .collect();
    vec![Statement::new(create_table_sql(
        names,
        &definitions,
        &schema.primary_key,
        "",
    ))]
}

pub(super) fn swap_in(staging: &TableNames, live: &TableNames) -> Vec<Statement> {
    vec![
        Statement::new(format!("DROP TABLE IF EXISTS {}", live.qualified())),
        Statement::new(format!(
            "ALTER TABLE {} RENAME TO {}",
            staging.qualified(),
            live.dialect.quote_ident(&live.table)
        )),
    ]
}

/// `ADD COLUMN` and `DROP COLUMN` where they suffice, else a rebuild.
pub(super) fn alter_table(plan: &AlterPlan) -> Vec<Statement> {
    let names = plan.names;
    let redefined = plan.modified().into_iter().any(|column| {
        let current = plan
            .old
            .column(&column.name)
            .map(|before| column_def(names, &plan.current(before)));
        current != Some(column_def(names, &plan.target(column)))
    });
    let relaxed =
        !plan.options.drop_removed_columns && plan.removed().any(|(_, live)| !live.nullable);
    if redefined || relaxed {
        return rebuild(plan);
    }
    let table = names.qualified();
    let mut out: Vec<String> = plan
        .added()
        .map(|column| {
            let added = Column {
                nullable: true,
                ..column.clone()
            };
            format!(
                "ALTER TABLE {table} ADD COLUMN {}",
                column_def(names, &added)
            )
        })
        .collect();
    if plan.options.drop_removed_columns {
        out.extend(plan.removed().map(|(column, _)| {
            format!(
                "ALTER TABLE {table} DROP COLUMN {}",
                names.quoted_column(&column.name)
            )
        }));
    }
    out.into_iter().map(Statement::new).collect()
}

/// Copies the table into one with the target definition, then puts the copy in its place.
/// Columns of the live table that left the schema are kept (nullable, with their old type if
/// known, else untyped so that SQLite keeps the values as they are) unless
/// `drop_removed_columns` is set.
fn rebuild(plan: &AlterPlan) -> Vec<Statement> {
    let names = plan.names;
    let mut definitions = Vec::new();
    let mut copied = Vec::new();
    for column in &plan.new.columns {
        definitions.push(column_def(names, &plan.target(column)));
        if plan.live(&column.name).is_some() {
            copied.push(names.quoted_column(&column.name));
        }
    }
    if !plan.options.drop_removed_columns {
        let in_new = |live: &str| {
            plan.new
                .columns
                .iter()
                .any(|c| names.column(&c.name) == live)
        };
        for live in plan.live_columns.iter().filter(|l| !in_new(&l.name)) {
            let quoted = names.dialect.quote_ident(&live.name);
            definitions.push(
                match plan
                    .old
                    .columns
                    .iter()
                    .find(|c| names.column(&c.name) == live.name)
                {
                    Some(before) => column_def(
                        names,
                        &Column {
                            nullable: true,
                            ..before.clone()
                        },
                    ),
                    None => quoted.clone(),
                },
            );
            copied.push(quoted);
        }
    }
    let copy = names.suffixed(REBUILD_SUFFIX);
    let copied = copied.join(", ");
    let insert = format!(
        "INSERT INTO {} ({copied}) SELECT {copied} FROM {}",
        copy.qualified(),
        names.qualified()
    );
    let mut out = vec![
        format!("DROP TABLE IF EXISTS {}", copy.qualified()),
        create_table_sql(&copy, &definitions, &plan.new.primary_key, ""),
    ];
    // Rows may hold an enum value an earlier version removed (it stayed allowed), which the
    // new CHECK no longer lists: copy them as they are, as PostgreSQL's NOT VALID would.
    let checked = plan
        .new
        .columns
        .iter()
        .chain(&plan.old.columns)
        .any(|c| enum_values(c).is_some());
    if checked {
        out.push("PRAGMA ignore_check_constraints = ON".to_owned());
        out.push(insert);
        out.push("PRAGMA ignore_check_constraints = OFF".to_owned());
    } else {
        out.push(insert);
    }
    out.push(format!("DROP TABLE {}", names.qualified()));
    out.push(format!(
        "ALTER TABLE {} RENAME TO {}",
        copy.qualified(),
        names.dialect.quote_ident(&names.table)
    ));
    out.into_iter().map(Statement::new).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::fixtures::{column, enumeration, fixture, table};
    use crate::sql::tests::{self, sql};
    use crate::sql::{DdlOptions, Dialect};

    const LITE: Dialect = Dialect::Sqlite;

    #[test]
    fn type_mapping() {
        use ColumnType::*;
        let cases = [
            (SmallInt, "INTEGER"),
            (Int, "INTEGER"),
            (BigInt, "INTEGER"),
            (Boolean, "INTEGER"),
            (IntEnum { values: vec![1] }, "INTEGER"),
            (Double, "REAL"),
            (
                Text {
                    max_length: Some(3),
                    truncatable: true,
                },
                "TEXT",
            ),
            (Timestamp, "TEXT"),
            (Date, "TEXT"),
            (Uuid, "TEXT"),
            (enumeration(&["a"]), "TEXT"),
            (IpAddress, "TEXT"),
            (
                Array {
                    item: Box::new(Int),
                },
                "TEXT",
            ),
            (Json, "TEXT"),
        ];
        let names = TableNames::live(LITE, "ns", "t");
        for (ty, expected) in cases {
            assert_eq!(
                LITE.column_type(
                    &column("c", ty.clone(), true),
                    &names,
                    &DdlOptions::default()
                ),
                expected
            );
        }
    }

    #[test]
    fn courses_ddl() {
        let ddl = LITE.render_ddl(&fixture("canvas", "courses"), &DdlOptions::default());
        assert!(
            ddl.starts_with("CREATE TABLE \"canvas__courses\" (\n    \"id\" INTEGER NOT NULL,\n"),
            "{ddl}"
        );
        for line in [
            r#"    "workflow_state" TEXT NOT NULL CONSTRAINT "ck_workflow_state" CHECK ("workflow_state" IN ('created', 'claimed', 'available', 'completed', 'deleted', '__dap_unspecified__')),"#,
            r#"    "storage_quota" INTEGER,"#,
            r#"    "created_at" TEXT NOT NULL,"#,
            r#"    CONSTRAINT "pk_canvas__courses" PRIMARY KEY ("id")"#,
        ] {
            assert!(ddl.contains(&format!("\n{line}\n")), "{line}");
        }
        assert!(ddl.ends_with("\n);\n"));
    }

    #[test]
    fn swap() {
        let staging = TableNames::staging(LITE, "canvas", "courses");
        let live = TableNames::live(LITE, "canvas", "courses");
        let sql: Vec<String> = LITE
            .swap_in(
                None,
                &fixture("canvas", "courses"),
                &staging,
                &live,
                true,
                &DdlOptions::default(),
            )
            .into_iter()
            .map(|s| s.sql)
            .collect();
        assert_eq!(
            sql,
            [
                r#"DROP TABLE IF EXISTS "canvas__courses""#,
                r#"ALTER TABLE "canvas__courses__dapsync_new" RENAME TO "canvas__courses""#
            ]
        );
    }

    #[test]
    fn additions_and_storage_class_preserving_changes_need_no_rebuild() {
        let old = table(vec![
            column("i", ColumnType::Int, true),
            column(
                "s",
                ColumnType::Text {
                    max_length: Some(5),
                    truncatable: false,
                },
                false,
            ),
            column("gone", ColumnType::Date, true),
        ]);
        let new = table(vec![
            column("i", ColumnType::BigInt, true),
            column(
                "s",
                ColumnType::Text {
                    max_length: None,
                    truncatable: false,
                },
                false,
            ),
            column("e", enumeration(&["a"]), false),
            column("done", ColumnType::Int, true),
        ]);
        let live = [
            ("id", false),
            ("i", true),
            ("s", false),
            ("gone", true),
            ("done", true),
        ];
        assert_eq!(
            sql(tests::alter(LITE, &old, &new, &live, DdlOptions::default())),
            [r#"ALTER TABLE "ns__t" ADD COLUMN "e" TEXT CONSTRAINT "ck_e" CHECK ("e" IN ('a'))"#]
        );
        let drop = DdlOptions {
            drop_removed_columns: true,
            ..DdlOptions::default()
        };
        assert_eq!(
            sql(tests::alter(LITE, &old, &new, &live, drop)),
            [
                r#"ALTER TABLE "ns__t" ADD COLUMN "e" TEXT CONSTRAINT "ck_e" CHECK ("e" IN ('a'))"#,
                r#"ALTER TABLE "ns__t" DROP COLUMN "gone""#,
            ]
        );
    }

    #[test]
    fn other_changes_rebuild_in_place() {
        let old = table(vec![
            column("e", enumeration(&["a", "b"]), false),
            column("r", ColumnType::Int, false),
            column("t", ColumnType::Int, true),
            column("gone", ColumnType::Date, false),
        ]);
        let new = table(vec![
            column("e", enumeration(&["c", "a"]), false),
            column("r", ColumnType::Int, true),
            column("t", ColumnType::Int, false),
            column("new", ColumnType::Double, false),
        ]);
        // `older` left the schema in an earlier version and was kept.
        let live = [
            ("id", false),
            ("e", false),
            ("r", false),
            ("t", true),
            ("gone", false),
            ("older", true),
        ];
        assert_eq!(
            sql(tests::alter(LITE, &old, &new, &live, DdlOptions::default())),
            [
                r#"DROP TABLE IF EXISTS "ns__t__dapsync_rebuild""#,
                "CREATE TABLE \"ns__t__dapsync_rebuild\" (\n    \"id\" INTEGER NOT NULL,\n    \
                 \"e\" TEXT NOT NULL CONSTRAINT \"ck_e\" CHECK (\"e\" IN ('a', 'b', 'c')),\n    \
                 \"r\" INTEGER,\n    \"t\" INTEGER,\n    \"new\" REAL,\n    \"gone\" TEXT,\n    \"older\",\n    \
                 CONSTRAINT \"pk_ns__t\" PRIMARY KEY (\"id\")\n)",
                "PRAGMA ignore_check_constraints = ON",
                r#"INSERT INTO "ns__t__dapsync_rebuild" ("id", "e", "r", "t", "gone", "older") SELECT "id", "e", "r", "t", "gone", "older" FROM "ns__t""#,
                "PRAGMA ignore_check_constraints = OFF",
                r#"DROP TABLE "ns__t""#,
                r#"ALTER TABLE "ns__t__dapsync_rebuild" RENAME TO "ns__t""#,
            ]
        );
        let drop = DdlOptions {
            drop_removed_columns: true,
            ..DdlOptions::default()
        };
        let dropped = sql(tests::alter(LITE, &old, &new, &live, drop));
        assert!(
            dropped[1].contains("\"new\" REAL,\n    CONSTRAINT"),
            "{}",
            dropped[1]
        );
        assert!(
            dropped[3].starts_with(
                r#"INSERT INTO "ns__t__dapsync_rebuild" ("id", "e", "r", "t") SELECT"#
            )
        );
    }
}
