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
        create
            .sql
            .starts_with("CREATE TABLE \"canvas\".\"courses\" (\n    \"id\" bigint NOT NULL,\n")
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
    assert!(
        statements.iter().any(|s| s.sql
            == r#"COMMENT ON TABLE "canvas"."courses" IS 'Stores attributes for a course.'"#)
    );

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
