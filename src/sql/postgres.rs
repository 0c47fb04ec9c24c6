//! PostgreSQL.

use super::{
    AlterPlan, DdlOptions, EnumMode, Statement, TableNames, create_table_sql, enum_check,
    enum_values, fits_int, merged_values, varchar_len,
};
use crate::schema::{Change, Column, ColumnType, TableSchema};

/// The longest `varchar(n)` PostgreSQL accepts.
const MAX_VARCHAR: u32 = 10_485_760;

/// The SQL type of a column named `column` (which names its native enum type).
pub(super) fn column_type(
    ty: &ColumnType,
    column: &str,
    names: &TableNames,
    options: &DdlOptions,
) -> String {
    use ColumnType::*;
    match ty {
        SmallInt => "smallint".into(),
        Int => "integer".into(),
        BigInt => "bigint".into(),
        Double => "double precision".into(),
        Boolean => "boolean".into(),
        Text {
            max_length: Some(n),
            truncatable,
        } if varchar_len(*n, *truncatable) <= MAX_VARCHAR => {
            format!("varchar({})", varchar_len(*n, *truncatable))
        }
        Text { .. } => "text".into(),
        Timestamp => "timestamp".into(),
        Date => "date".into(),
        Uuid => "uuid".into(),
        Enum { .. } if options.enum_mode == EnumMode::Native => names.enum_type(column),
        Enum { .. } => "text".into(),
        IntEnum { values } if fits_int(values) => "integer".into(),
        IntEnum { .. } => "bigint".into(),
        IpAddress => "inet".into(),
        // Items are not enforced: any string item (enum, date, ...) is text.
        Array { item } => match item.as_ref() {
            Text { .. } | Enum { .. } | Timestamp | Date | Uuid | IpAddress => "text[]".into(),
            item => format!("{}[]", column_type(item, column, names, options)),
        },
        Json => "jsonb".into(),
    }
}

/// `"column" type [NOT NULL] [CHECK]`, as in `CREATE TABLE` and `ADD COLUMN`.
fn column_def(column: &Column, names: &TableNames, options: &DdlOptions) -> String {
    let mut def = format!(
        "{} {}",
        names.quoted_column(&column.name),
        column_type(&column.ty, &column.name, names, options)
    );
    if !column.nullable {
        def.push_str(" NOT NULL");
    }
    if options.enum_mode == EnumMode::Text
        && let Some(values) = enum_values(column)
    {
        def.push(' ');
        def.push_str(&enum_check(names, &column.name, values));
    }
    def
}

pub(super) fn create_table(
    schema: &TableSchema,
    names: &TableNames,
    options: &DdlOptions,
) -> Vec<Statement> {
    let mut out = Vec::new();
    if let Some(namespace) = &names.schema {
        out.push(create_schema(namespace));
    }
    if options.enum_mode == EnumMode::Native {
        out.extend(
            schema
                .columns
                .iter()
                .filter_map(|c| Some(create_enum_type(names, &c.name, enum_values(c)?))),
        );
    }
    let definitions: Vec<String> = schema
        .columns
        .iter()
        .map(|c| column_def(c, names, options))
        .collect();
    out.push(create_table_sql(
        names,
        &definitions,
        &schema.primary_key,
        "",
    ));
    if let Some(comment) = &schema.comment {
        out.push(format!(
            "COMMENT ON TABLE {} IS {}",
            names.qualified(),
            names.dialect.quote_literal(comment)
        ));
    }
    out.extend(
        schema
            .columns
            .iter()
            .filter_map(|c| comment_on_column(names, c)),
    );
    out.into_iter().map(Statement::new).collect()
}

fn create_enum_type(names: &TableNames, column: &str, values: &[String]) -> String {
    let labels: Vec<String> = values
        .iter()
        .map(|v| names.dialect.quote_literal(v))
        .collect();
    format!(
        "CREATE TYPE {} AS ENUM ({})",
        names.enum_type(column),
        labels.join(", ")
    )
}

fn comment_on_column(names: &TableNames, column: &Column) -> Option<String> {
    let comment = column.comment.as_ref()?;
    Some(format!(
        "COMMENT ON COLUMN {}.{} IS {}",
        names.qualified(),
        names.quoted_column(&column.name),
        names.dialect.quote_literal(comment)
    ))
}

/// `DROP TYPE IF EXISTS` for the enum columns among `columns`.
pub(super) fn drop_enum_types<'a>(
    columns: impl IntoIterator<Item = &'a Column>,
    names: &TableNames,
) -> Vec<Statement> {
    columns
        .into_iter()
        .filter(|c| enum_values(c).is_some())
        .map(|c| Statement::new(format!("DROP TYPE IF EXISTS {}", names.enum_type(&c.name))))
        .collect()
}

pub(super) fn swap_in(
    old: Option<&TableSchema>,
    new: &TableSchema,
    staging: &TableNames,
    live: &TableNames,
    options: &DdlOptions,
) -> Vec<Statement> {
    let quote = |name: &str| live.dialect.quote_ident(name);
    let mut out = vec![Statement::new(format!(
        "DROP TABLE IF EXISTS {}",
        live.qualified()
    ))];
    // Types of the old table, and any leftover with a name the new table's types will take.
    let mut enum_columns: Vec<&Column> =
        old.map(|o| o.columns.iter().collect()).unwrap_or_default();
    enum_columns.extend(
        new.columns
            .iter()
            .filter(|c| old.is_none_or(|o| o.column(&c.name).is_none())),
    );
    out.extend(drop_enum_types(enum_columns, live));
    out.push(Statement::new(format!(
        "ALTER TABLE {} RENAME TO {}",
        staging.qualified(),
        quote(&live.table)
    )));
    out.push(Statement::new(format!(
        "ALTER TABLE {} RENAME CONSTRAINT {} TO {}",
        live.qualified(),
        quote(&staging.primary_key),
        quote(&live.primary_key)
    )));
    if options.enum_mode == EnumMode::Native {
        out.extend(
            new.columns
                .iter()
                .filter(|c| enum_values(c).is_some())
                .map(|c| {
                    Statement::new(format!(
                        "ALTER TYPE {} RENAME TO {}",
                        staging.enum_type(&c.name),
                        quote(&live.enum_type_name(&c.name))
                    ))
                }),
        );
    }
    out
}

pub(super) fn alter_table(plan: &AlterPlan) -> Vec<Statement> {
    let (names, options) = (plan.names, plan.options);
    let table = names.qualified();
    let native = options.enum_mode == EnumMode::Native;
    let mut out = Vec::new();
    for column in plan.added() {
        if native && let Some(values) = enum_values(column) {
            out.push(Statement::new(guarded(
                &create_enum_type(names, &column.name, values),
                "duplicate_object",
            )));
        }
        let added = Column {
            nullable: true,
            ..column.clone()
        };
        out.push(Statement::new(format!(
            "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {}",
            column_def(&added, names, options)
        )));
        out.extend(comment_on_column(names, column).map(Statement::new));
    }
    for (column, live) in plan.removed() {
        let quoted = names.quoted_column(&column.name);
        if options.drop_removed_columns {
            out.push(Statement::new(format!(
                "ALTER TABLE {table} DROP COLUMN IF EXISTS {quoted}"
            )));
            out.extend(drop_enum_types([column], names));
            continue;
        }
        if !live.nullable {
            out.push(Statement::new(format!(
                "ALTER TABLE {table} ALTER COLUMN {quoted} DROP NOT NULL"
            )));
        }
        // A kept enum column becomes text, so that its type does not outlive it unnoticed
        // (a later drop or swap only knows the types of the schema's columns).
        if native && enum_values(column).is_some() {
            out.push(Statement::new(format!(
                "ALTER TABLE {table} ALTER COLUMN {quoted} TYPE text USING {quoted}::text"
            )));
            out.extend(drop_enum_types([column], names));
        }
    }
    for change in &plan.diff.changes {
        let column = match change {
            Change::NullabilityRelaxed { column }
            | Change::TypeWidened { column, .. }
            | Change::EnumValuesAdded { column, .. } => column,
            _ => continue,
        };
        let Some(live) = plan.live(&column.name) else {
            continue;
        };
        let quoted = names.quoted_column(&column.name);
        match change {
            Change::NullabilityRelaxed { .. } if !live.nullable => {
                out.push(Statement::new(format!(
                    "ALTER TABLE {table} ALTER COLUMN {quoted} DROP NOT NULL"
                )));
            }
            Change::TypeWidened { from, .. } => out.extend(widen(plan, column, from)),
            Change::EnumValuesAdded { values, .. } if enum_values(column).is_some() => {
                out.extend(add_enum_values(plan, column, values));
            }
            _ => {}
        }
    }
    out
}

fn widen(plan: &AlterPlan, column: &Column, from: &ColumnType) -> Vec<Statement> {
    let (names, options) = (plan.names, plan.options);
    let (table, quoted) = (names.qualified(), names.quoted_column(&column.name));
    let target = column_type(&column.ty, &column.name, names, options);
    let alter = |using: &str| {
        Statement::new(format!(
            "ALTER TABLE {table} ALTER COLUMN {quoted} TYPE {target}{using}"
        ))
    };
    match from {
        ColumnType::Enum { .. } if options.enum_mode == EnumMode::Native => vec![
            alter(&format!(" USING {quoted}::text")),
            Statement::new(format!(
                "DROP TYPE IF EXISTS {}",
                names.enum_type(&column.name)
            )),
        ],
        ColumnType::Enum { .. } => {
            let check = names
                .dialect
                .quote_ident(&names.check_constraint(&column.name));
            let mut out = vec![Statement::new(format!(
                "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {check}"
            ))];
            if target != "text" {
                out.push(alter(""));
            }
            out
        }
        from if column_type(from, &column.name, names, options) == target => Vec::new(),
        _ => vec![alter("")],
    }
}

/// Native types get `ADD VALUE` (committed on its own); text columns a re-created CHECK with
/// the old values followed by the new ones. The CHECK is `NOT VALID`: rows holding a value that
/// an earlier version removed stay, as they would with a native type.
fn add_enum_values(plan: &AlterPlan, column: &Column, added: &[String]) -> Vec<Statement> {
    let names = plan.names;
    if plan.options.enum_mode == EnumMode::Native {
        let add = |value: &String| Statement {
            sql: format!(
                "ALTER TYPE {} ADD VALUE IF NOT EXISTS {}",
                names.enum_type(&column.name),
                names.dialect.quote_literal(value)
            ),
            own_transaction: true,
        };
        return added.iter().map(add).collect();
    }
    let old = plan
        .old
        .column(&column.name)
        .and_then(enum_values)
        .unwrap_or_default();
    let values = merged_values(old, enum_values(column).unwrap_or_default());
    let table = names.qualified();
    let check = names
        .dialect
        .quote_ident(&names.check_constraint(&column.name));
    vec![
        Statement::new(format!(
            "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {check}"
        )),
        Statement::new(format!(
            "ALTER TABLE {table} ADD {} NOT VALID",
            enum_check(names, &column.name, &values)
        )),
    ]
}

/// `CREATE SCHEMA IF NOT EXISTS`, safe when two sessions run it at once: both can find the
/// schema missing, and the second then fails on the catalog's unique index.
pub fn create_schema(namespace: &str) -> String {
    guarded(
        &format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            super::Dialect::Postgres.quote_ident(namespace)
        ),
        "unique_violation",
    )
}

/// Runs `sql`, ignoring the error `condition` (a PL/pgSQL condition name): a `CREATE` that may
/// find its object already there.
fn guarded(sql: &str, condition: &str) -> String {
    // A dollar-quote tag that `sql` cannot contain, so no label can end the block.
    let mut tag = String::from("$dapsync$");
    while sql.contains(&tag) {
        tag.insert(tag.len() - 1, '_');
    }
    format!("DO {tag} BEGIN {sql}; EXCEPTION WHEN {condition} THEN NULL; END {tag}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::diff;
    use crate::schema::fixtures::{array, column, enumeration, fixture, table, text};
    use crate::sql::Dialect;
    use crate::sql::tests::{self, sql};

    const PG: Dialect = Dialect::Postgres;
    const TEXT: DdlOptions = DdlOptions {
        enum_mode: EnumMode::Text,
        drop_removed_columns: false,
    };

    fn names() -> TableNames {
        TableNames::live(PG, "ns", "t")
    }

    fn alter(
        old: &TableSchema,
        new: &TableSchema,
        live: &[(&str, bool)],
        options: DdlOptions,
    ) -> Vec<Statement> {
        tests::alter(PG, old, new, live, options)
    }

    #[test]
    fn type_mapping() {
        use ColumnType::*;
        let labels = enumeration(&["a"]);
        let cases = [
            (SmallInt, "smallint", "smallint"),
            (Int, "integer", "integer"),
            (BigInt, "bigint", "bigint"),
            (Double, "double precision", "double precision"),
            (Boolean, "boolean", "boolean"),
            (text(None, false), "text", "text"),
            (text(None, true), "text", "text"),
            (text(Some(255), false), "varchar(255)", "varchar(255)"),
            (text(Some(10), false), "varchar(10)", "varchar(10)"),
            (text(Some(10), true), "varchar(27)", "varchar(27)"),
            (text(Some(100), true), "varchar(100)", "varchar(100)"),
            (text(Some(MAX_VARCHAR + 1), false), "text", "text"),
            (Timestamp, "timestamp", "timestamp"),
            (Date, "date", "date"),
            (Uuid, "uuid", "uuid"),
            (labels.clone(), r#""ns"."t__c""#, "text"),
            (
                IntEnum {
                    values: vec![100, 511],
                },
                "integer",
                "integer",
            ),
            (
                IntEnum {
                    values: vec![1, 1 << 40],
                },
                "bigint",
                "bigint",
            ),
            (IpAddress, "inet", "inet"),
            (array(labels), "text[]", "text[]"),
            (array(text(Some(255), false)), "text[]", "text[]"),
            (array(Uuid), "text[]", "text[]"),
            (array(Int), "integer[]", "integer[]"),
            (array(Double), "double precision[]", "double precision[]"),
            (array(Boolean), "boolean[]", "boolean[]"),
            (Json, "jsonb", "jsonb"),
        ];
        for (ty, native, text_mode) in cases {
            let c = column("c", ty.clone(), true);
            assert_eq!(
                PG.column_type(&c, &names(), &DdlOptions::default()),
                native,
                "{ty:?}"
            );
            assert_eq!(PG.column_type(&c, &names(), &TEXT), text_mode, "{ty:?}");
        }
    }

    #[test]
    fn courses_ddl() {
        let courses = fixture("canvas", "courses");
        let names = TableNames::live(PG, "canvas", "courses");
        let statements = PG.create_table(&courses, &names, &DdlOptions::default());
        assert_eq!(
            statements[0].sql,
            r#"DO $dapsync$ BEGIN CREATE SCHEMA IF NOT EXISTS "canvas"; EXCEPTION WHEN unique_violation THEN NULL; END $dapsync$"#
        );
        let types: Vec<&str> = statements
            .iter()
            .map(|s| s.sql.as_str())
            .filter(|s| s.starts_with("CREATE TYPE"))
            .collect();
        assert_eq!(
            types,
            [
                r#"CREATE TYPE "canvas"."courses__workflow_state" AS ENUM ('created', 'claimed', 'available', 'completed', 'deleted', '__dap_unspecified__')"#
            ]
        );
        let create = statements
            .iter()
            .find(|s| s.sql.starts_with("CREATE TABLE"))
            .unwrap();
        assert!(
            create.sql.starts_with(
                "CREATE TABLE \"canvas\".\"courses\" (\n    \"id\" bigint NOT NULL,\n"
            )
        );
        for line in [
            r#"    "storage_quota" bigint,"#,
            r#"    "integration_id" varchar(255),"#,
            r#"    "created_at" timestamp NOT NULL,"#,
            r#"    "workflow_state" "canvas"."courses__workflow_state" NOT NULL,"#,
            r#"    "is_public" boolean,"#,
            r#"    "syllabus_body" text,"#,
            r#"    "settings" jsonb,"#,
        ] {
            assert!(
                create.sql.contains(&format!("\n{line}\n")),
                "{line}\n{}",
                create.sql
            );
        }
        assert!(
            create
                .sql
                .ends_with("\n    CONSTRAINT \"pk_courses\" PRIMARY KEY (\"id\")\n)")
        );
        assert!(statements.iter().any(|s| s.sql
            == r#"COMMENT ON COLUMN "canvas"."courses"."id" IS 'The unique identifier for the course.'"#));
        assert!(statements.iter().any(|s| s.sql
            == r#"COMMENT ON TABLE "canvas"."courses" IS 'Stores attributes for a course.'"#));

        let text_mode = PG.create_table(&courses, &names, &TEXT);
        assert!(!text_mode.iter().any(|s| s.sql.starts_with("CREATE TYPE")));
        let create = text_mode
            .iter()
            .find(|s| s.sql.starts_with("CREATE TABLE"))
            .unwrap();
        assert!(create.sql.contains(r#"    "workflow_state" text NOT NULL CONSTRAINT "ck_workflow_state" CHECK ("workflow_state" IN ('created', 'claimed', 'available', 'completed', 'deleted', '__dap_unspecified__')),"#));
    }

    #[test]
    fn composite_key_and_drop() {
        let mut schema = fixture("canvas", "courses");
        let quota = schema
            .columns
            .iter_mut()
            .find(|c| c.name == "storage_quota")
            .unwrap();
        (quota.key, quota.nullable) = (true, false);
        schema.primary_key.push("storage_quota".into());
        let create = PG.create_table(&schema, &names(), &DdlOptions::default());
        assert!(create.iter().any(|s| {
            s.sql
                .contains(r#"CONSTRAINT "pk_t" PRIMARY KEY ("id", "storage_quota")"#)
        }));
        let drop: Vec<String> = PG
            .drop_table(Some(&schema), &names(), &TEXT)
            .into_iter()
            .map(|s| s.sql)
            .collect();
        assert_eq!(drop[0], r#"DROP TABLE IF EXISTS "ns"."t""#);
        assert!(drop.contains(&r#"DROP TYPE IF EXISTS "ns"."t__workflow_state""#.to_owned()));
        assert_eq!(drop.len(), 2);
    }

    #[test]
    fn swap() {
        let old = table(vec![
            column("gone", enumeration(&["x"]), true),
            column("e", enumeration(&["a"]), true),
        ]);
        let new = table(vec![
            column("e", enumeration(&["a", "b"]), true),
            column("f", enumeration(&["c"]), true),
        ]);
        let staging = TableNames::staging(PG, "ns", "t");
        let sql = |options| -> Vec<String> {
            PG.swap_in(Some(&old), &new, &staging, &names(), true, &options)
                .into_iter()
                .map(|s| s.sql)
                .collect()
        };
        assert_eq!(
            sql(DdlOptions::default()),
            [
                r#"DROP TABLE IF EXISTS "ns"."t""#,
                r#"DROP TYPE IF EXISTS "ns"."t__gone""#,
                r#"DROP TYPE IF EXISTS "ns"."t__e""#,
                r#"DROP TYPE IF EXISTS "ns"."t__f""#,
                r#"ALTER TABLE "ns"."t__dapsync_new" RENAME TO "t""#,
                r#"ALTER TABLE "ns"."t" RENAME CONSTRAINT "pk_t__dapsync_new" TO "pk_t""#,
                r#"ALTER TYPE "ns"."t__dapsync_new__e" RENAME TO "t__e""#,
                r#"ALTER TYPE "ns"."t__dapsync_new__f" RENAME TO "t__f""#,
            ]
        );
        assert_eq!(sql(TEXT).len(), 6);
    }

    #[test]
    fn add_columns() {
        let old = table(vec![]);
        let mut added = column("e", enumeration(&["a", "b"]), false);
        added.comment = Some("It's new".into());
        let new = table(vec![added, column("n", ColumnType::Int, false)]);
        assert_eq!(
            sql(alter(&old, &new, &[("id", false)], DdlOptions::default())),
            [
                r#"DO $dapsync$ BEGIN CREATE TYPE "ns"."t__e" AS ENUM ('a', 'b'); EXCEPTION WHEN duplicate_object THEN NULL; END $dapsync$"#,
                r#"ALTER TABLE "ns"."t" ADD COLUMN IF NOT EXISTS "e" "ns"."t__e""#,
                r#"COMMENT ON COLUMN "ns"."t"."e" IS 'It''s new'"#,
                r#"ALTER TABLE "ns"."t" ADD COLUMN IF NOT EXISTS "n" integer"#,
            ]
        );
        assert_eq!(
            sql(alter(&old, &new, &[("id", false), ("e", true)], TEXT)),
            [r#"ALTER TABLE "ns"."t" ADD COLUMN IF NOT EXISTS "n" integer"#]
        );
        let old_text = sql(alter(&old, &new, &[("id", false)], TEXT));
        assert_eq!(
            old_text[0],
            r#"ALTER TABLE "ns"."t" ADD COLUMN IF NOT EXISTS "e" text CONSTRAINT "ck_e" CHECK ("e" IN ('a', 'b'))"#
        );
    }

    #[test]
    fn dollar_quote_tag_is_not_in_the_body() {
        assert_eq!(
            guarded("x $dapsync$ y", "duplicate_object"),
            "DO $dapsync_$ BEGIN x $dapsync$ y; EXCEPTION WHEN duplicate_object THEN NULL; END $dapsync_$"
        );
    }

    #[test]
    fn remove_columns() {
        let old = table(vec![
            column("r", ColumnType::Int, false),
            column("e", enumeration(&["a"]), true),
        ]);
        let new = table(vec![]);
        let live = [("id", false), ("r", false), ("e", true)];
        assert_eq!(
            sql(alter(&old, &new, &live, DdlOptions::default())),
            [
                r#"ALTER TABLE "ns"."t" ALTER COLUMN "r" DROP NOT NULL"#,
                r#"ALTER TABLE "ns"."t" ALTER COLUMN "e" TYPE text USING "e"::text"#,
                r#"DROP TYPE IF EXISTS "ns"."t__e""#,
            ]
        );
        assert_eq!(
            sql(alter(&old, &new, &live, TEXT)),
            [r#"ALTER TABLE "ns"."t" ALTER COLUMN "r" DROP NOT NULL"#]
        );
        let drop = DdlOptions {
            drop_removed_columns: true,
            ..DdlOptions::default()
        };
        assert_eq!(
            sql(alter(&old, &new, &live, drop)),
            [
                r#"ALTER TABLE "ns"."t" DROP COLUMN IF EXISTS "r""#,
                r#"ALTER TABLE "ns"."t" DROP COLUMN IF EXISTS "e""#,
                r#"DROP TYPE IF EXISTS "ns"."t__e""#,
            ]
        );
        assert_eq!(
            sql(alter(&old, &new, &[("id", false)], drop)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn nullability() {
        let old = table(vec![
            column("a", ColumnType::Int, false),
            column("b", ColumnType::Int, true),
        ]);
        let new = table(vec![
            column("a", ColumnType::Int, true),
            column("b", ColumnType::Int, false),
        ]);
        let live = [("id", false), ("a", false), ("b", true)];
        assert_eq!(
            sql(alter(&old, &new, &live, DdlOptions::default())),
            [r#"ALTER TABLE "ns"."t" ALTER COLUMN "a" DROP NOT NULL"#]
        );
        let live = [("id", false), ("a", true), ("b", true)];
        assert_eq!(
            sql(alter(&old, &new, &live, DdlOptions::default())),
            Vec::<String>::new()
        );
    }

    #[test]
    fn widen_types() {
        let old = table(vec![
            column("i", ColumnType::Int, true),
            column("s", text(Some(10), false), true),
            column("e", enumeration(&["a"]), true),
            column("same", text(Some(10), false), true),
        ]);
        let new = table(vec![
            column("i", ColumnType::BigInt, true),
            column("s", text(None, false), true),
            column("e", text(Some(20), false), true),
            column(
                "same",
                ColumnType::Text {
                    max_length: Some(10),
                    truncatable: true,
                },
                true,
            ),
        ]);
        let live = [
            ("id", false),
            ("i", true),
            ("s", true),
            ("e", true),
            ("same", true),
        ];
        assert_eq!(
            sql(alter(&old, &new, &live, DdlOptions::default())),
            [
                r#"ALTER TABLE "ns"."t" ALTER COLUMN "i" TYPE bigint"#,
                r#"ALTER TABLE "ns"."t" ALTER COLUMN "s" TYPE text"#,
                r#"ALTER TABLE "ns"."t" ALTER COLUMN "e" TYPE varchar(20) USING "e"::text"#,
                r#"DROP TYPE IF EXISTS "ns"."t__e""#,
                r#"ALTER TABLE "ns"."t" ALTER COLUMN "same" TYPE varchar(27)"#,
            ]
        );
        let text_mode = sql(alter(&old, &new, &live, TEXT));
        assert_eq!(
            &text_mode[2..4],
            [
                r#"ALTER TABLE "ns"."t" DROP CONSTRAINT IF EXISTS "ck_e""#,
                r#"ALTER TABLE "ns"."t" ALTER COLUMN "e" TYPE varchar(20)"#
            ]
        );
    }

    #[test]
    fn enum_values_added_and_removed() {
        let old = table(vec![
            column("e", enumeration(&["a", "b"]), true),
            column("h", ColumnType::IntEnum { values: vec![1] }, true),
        ]);
        let new = table(vec![
            column("e", enumeration(&["c", "a", "d"]), true),
            column("h", ColumnType::IntEnum { values: vec![2] }, true),
        ]);
        let live = [("id", false), ("e", true), ("h", true)];
        let native = alter(&old, &new, &live, DdlOptions::default());
        assert_eq!(
            native,
            [
                Statement {
                    sql: r#"ALTER TYPE "ns"."t__e" ADD VALUE IF NOT EXISTS 'c'"#.into(),
                    own_transaction: true
                },
                Statement {
                    sql: r#"ALTER TYPE "ns"."t__e" ADD VALUE IF NOT EXISTS 'd'"#.into(),
                    own_transaction: true
                },
            ]
        );
        assert_eq!(
            sql(alter(&old, &new, &live, TEXT)),
            [
                r#"ALTER TABLE "ns"."t" DROP CONSTRAINT IF EXISTS "ck_e""#,
                r#"ALTER TABLE "ns"."t" ADD CONSTRAINT "ck_e" CHECK ("e" IN ('a', 'b', 'c', 'd')) NOT VALID"#,
            ]
        );
    }

    #[test]
    fn rebuild_changes_are_ignored() {
        let old = table(vec![column("c", ColumnType::BigInt, true)]);
        let new = table(vec![column("c", ColumnType::Int, true)]);
        let changes = diff(&old, &new);
        assert!(changes.needs_rebuild());
        assert_eq!(
            alter(
                &old,
                &new,
                &[("id", false), ("c", true)],
                DdlOptions::default()
            ),
            []
        );
    }
}
