use super::*;
use crate::schema::diff;
use crate::schema::fixtures::{all_fixtures, column, enumeration, fixture, table, text};
use crate::sql::tests::{self, live_columns, sql};
use crate::sql::{DdlOptions, Dialect, LiveColumn};

const MY: Dialect = Dialect::Mysql;

/// A table keyed by `keys` (name, type), with one value column.
fn keyed_by(keys: &[(&str, ColumnType)]) -> TableSchema {
    let mut schema = table(vec![column("v", ColumnType::Int, true)]);
    schema.columns.remove(0);
    for (i, (name, ty)) in keys.iter().enumerate() {
        let mut key = column(name, ty.clone(), false);
        key.key = true;
        schema.columns.insert(i, key);
    }
    schema.primary_key = keys.iter().map(|(name, _)| name.to_string()).collect();
    schema
}

#[test]
fn string_keys_fit_the_index_limit() {
    use ColumnType::*;
    type Keys<'a> = &'a [(&'a str, ColumnType)];
    let cases: [(Keys, &[(&str, u32)]); 6] = [
        (&[("id", BigInt)], &[]),
        (&[("id", text(Some(255), false))], &[]),
        (&[("id", text(Some(768), false))], &[]),
        (&[("id", text(None, false))], &[("id", 768)]),
        (&[("id", text(Some(1000), false))], &[("id", 768)]),
        // The other key columns take their bytes first; short strings keep their length.
        (
            &[
                ("a", BigInt),
                ("b", text(None, false)),
                ("c", text(Some(100), false)),
                ("d", text(None, false)),
            ],
            &[("b", 333), ("d", 333)],
        ),
    ];
    for (keys, expected) in cases {
        let schema = keyed_by(keys);
        let mut limits = key_text_limits(&schema);
        limits.sort();
        assert_eq!(limits, expected, "{keys:?}");
        let ddl = sql(create_table(&schema, &TableNames::live(MY, "ns", "t"))).join("\n");
        for (name, chars) in expected {
            assert!(
                ddl.contains(&format!("`{name}` varchar({chars}) NOT NULL")),
                "{ddl}"
            );
        }
        assert!(!ddl.contains("text NOT NULL"), "{ddl}");
    }
}

#[test]
fn type_mapping() {
    use ColumnType::*;
    let cases = [
        (SmallInt, "smallint"),
        (Int, "int"),
        (BigInt, "bigint"),
        (Double, "double"),
        (Boolean, "tinyint(1)"),
        (text(None, false), "mediumtext"),
        (text(Some(255), false), "varchar(255)"),
        (
            Text {
                max_length: Some(5),
                truncatable: true,
            },
            "varchar(27)",
        ),
        (
            Text {
                max_length: None,
                truncatable: true,
            },
            "mediumtext",
        ),
        (text(Some(MAX_VARCHAR + 1), false), "mediumtext"),
        (Timestamp, "datetime(6)"),
        (Date, "date"),
        (Uuid, "binary(16)"),
        (
            enumeration(&["a", "it's"]),
            "ENUM('a', 'it''s') CHARACTER SET ascii COLLATE ascii_bin",
        ),
        (
            enumeration(&["é"]),
            "ENUM('é') CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
        ),
        (IntEnum { values: vec![200] }, "int"),
        (
            IntEnum {
                values: vec![i64::MAX],
            },
            "bigint",
        ),
        (IpAddress, "binary(16)"),
        (
            Array {
                item: Box::new(Int),
            },
            "json",
        ),
        (Json, "json"),
    ];
    let names = TableNames::live(MY, "ns", "t");
    for (ty, expected) in cases {
        assert_eq!(
            MY.column_type(
                &column("c", ty.clone(), true),
                &names,
                &DdlOptions::default()
            ),
            expected,
            "{ty:?}"
        );
    }
}

#[test]
fn courses_ddl() {
    let courses = fixture("canvas", "courses");
    let ddl = MY.render_ddl(&courses, &DdlOptions::default());
    assert!(ddl.starts_with("CREATE TABLE `canvas__courses` (\n    `id` bigint NOT NULL COMMENT 'The unique identifier for the course.',\n"));
    for line in [
        "    `storage_quota` bigint NULL COMMENT 'The total amount of storage space (in bytes) allowed to be used by files in the course.',",
        "    `created_at` datetime(6) NOT NULL COMMENT 'The date the course was created.',",
        "    `workflow_state` ENUM('created', 'claimed', 'available', 'completed', 'deleted', '__dap_unspecified__') CHARACTER SET ascii COLLATE ascii_bin NOT NULL COMMENT 'Life-cycle state for the course.',",
        "    `is_public` tinyint(1) NULL COMMENT 'True if the course is publicly visible.',",
        "    `syllabus_body` mediumtext NULL COMMENT 'User-generated HTML for the course syllabus.',",
        "    CONSTRAINT `pk_canvas__courses` PRIMARY KEY (`id`)",
    ] {
        assert!(ddl.contains(&format!("\n{line}\n")), "{line}\n{ddl}");
    }
    assert!(ddl.ends_with("\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin COMMENT='Stores attributes for a course.';\n"));
}

#[test]
fn comments_are_cut_to_the_limits() {
    let mut schema = fixture("canvas", "courses");
    schema.comment = Some("é".repeat(3000));
    schema.columns[0].comment = Some("'".repeat(1500));
    let ddl = MY.render_ddl(&schema, &DdlOptions::default());
    assert!(ddl.contains(&format!("COMMENT '{}',", "''".repeat(1024))));
    assert!(ddl.contains(&format!("COMMENT='{}';", "é".repeat(2048))));
}

#[test]
fn real_tables_fit_without_moving_columns() {
    for schema in all_fixtures() {
        let columns: Vec<&Column> = schema.columns.iter().collect();
        assert_eq!(
            moved_to_text(&columns, &HashSet::new(), |_| true),
            HashSet::new(),
            "{}",
            schema.table
        );
    }
}

fn wide_table(varchars: usize) -> TableSchema {
    let mut columns: Vec<Column> = (0..varchars)
        .map(|i| column(&format!("v{i:02}"), text(Some(255), false), true))
        .collect();
    columns.push(column("wide", text(Some(2000), false), true));
    table(columns)
}

#[test]
fn wide_rows_move_the_widest_varchars_to_text() {
    // 8 + 2000*4+2 + 60*1022 + 8 null bytes = 69,338: `wide` alone frees 7,990 bytes.
    let ddl = MY.render_ddl(&wide_table(60), &DdlOptions::default());
    assert!(ddl.contains("`wide` text NULL,"), "{ddl}");
    assert_eq!(ddl.matches("varchar(255)").count(), 60);
    // 70 varchars need `wide` and 6 more (1,010 bytes each), taken in schema order.
    let ddl = MY.render_ddl(&wide_table(70), &DdlOptions::default());
    assert!(ddl.contains("`wide` text NULL,"));
    let moved: Vec<String> = (0..70)
        .map(|i| format!("v{i:02}"))
        .filter(|c| ddl.contains(&format!("`{c}` text NULL")))
        .collect();
    assert_eq!(moved, ["v00", "v01", "v02", "v03", "v04", "v05"]);
}

#[test]
fn alter_every_kind() {
    let mut commented = column("w", text(Some(10), false), false);
    commented.comment = Some("Words".into());
    let old = table(vec![
        commented.clone(),
        column("e", enumeration(&["a", "b"]), false),
        column("r", ColumnType::Int, false),
        column("n", ColumnType::Date, false),
        column("t", ColumnType::Date, true),
        column("gone", ColumnType::Boolean, false),
    ]);
    let new = table(vec![
        Column {
            ty: text(Some(20), false),
            ..commented
        },
        column("e", enumeration(&["c", "a"]), false),
        column("r", ColumnType::Int, true),
        column("n", ColumnType::Date, false),
        column("t", ColumnType::Date, false),
        column("added", enumeration(&["x"]), false),
    ]);
    let live = [
        ("id", false),
        ("w", false),
        ("e", false),
        ("r", false),
        ("n", false),
        ("t", true),
        ("gone", false),
    ];
    assert_eq!(
        sql(tests::alter(MY, &old, &new, &live, DdlOptions::default())),
        [
            "ALTER TABLE `ns__t` MODIFY COLUMN `w` varchar(20) NOT NULL COMMENT 'Words'",
            "ALTER TABLE `ns__t` MODIFY COLUMN `e` ENUM('a', 'b', 'c') CHARACTER SET ascii COLLATE ascii_bin NOT NULL",
            "ALTER TABLE `ns__t` MODIFY COLUMN `r` int NULL",
            "ALTER TABLE `ns__t` ADD COLUMN `added` ENUM('x') CHARACTER SET ascii COLLATE ascii_bin NULL",
            "ALTER TABLE `ns__t` MODIFY COLUMN `gone` tinyint(1) NULL",
        ]
    );
    let drop = DdlOptions {
        drop_removed_columns: true,
        ..DdlOptions::default()
    };
    let mut live_after_crash = live.to_vec();
    live_after_crash.push(("added", true));
    live_after_crash[1].1 = true;
    assert_eq!(
        sql(tests::alter(MY, &old, &new, &live_after_crash, drop)),
        [
            "ALTER TABLE `ns__t` MODIFY COLUMN `w` varchar(20) NULL COMMENT 'Words'",
            "ALTER TABLE `ns__t` MODIFY COLUMN `e` ENUM('a', 'b', 'c') CHARACTER SET ascii COLLATE ascii_bin NOT NULL",
            "ALTER TABLE `ns__t` MODIFY COLUMN `r` int NULL",
            // Added by the crashed run, whose record of it was lost: brought to its target.
            "ALTER TABLE `ns__t` MODIFY COLUMN `added` ENUM('x') CHARACTER SET ascii COLLATE ascii_bin NULL",
            "ALTER TABLE `ns__t` DROP COLUMN `gone`",
        ]
    );
}

#[test]
fn labels_the_live_column_still_has_are_kept() {
    // v1 had a and b; v2 removed b (kept in the table); v3 adds d.
    let old = table(vec![column("e", enumeration(&["c", "a"]), true)]);
    let new = table(vec![column("e", enumeration(&["c", "a", "d"]), true)]);
    let mut live = live_columns(&[("id", false), ("e", true)]);
    live[1].enum_values = LiveColumn::mysql_enum_values("enum('a','b','c')");
    let names = TableNames::live(MY, "ns", "t");
    let sql = MY.alter_table(
        &old,
        &new,
        &diff(&old, &new),
        &names,
        &live,
        &DdlOptions::default(),
    );
    assert_eq!(
        sql[0].sql,
        "ALTER TABLE `ns__t` MODIFY COLUMN `e` ENUM('a', 'b', 'c', 'd') CHARACTER SET ascii COLLATE ascii_bin NULL"
    );
    assert_eq!(sql.len(), 1);
}

#[test]
fn only_enum_removals_need_nothing() {
    let old = table(vec![column("e", enumeration(&["a", "b"]), true)]);
    let new = table(vec![column("e", enumeration(&["a"]), true)]);
    assert_eq!(
        tests::alter(
            MY,
            &old,
            &new,
            &[("id", false), ("e", true)],
            DdlOptions::default()
        ),
        []
    );
}

#[test]
fn added_columns_move_to_text_when_the_row_is_full() {
    let old = wide_table(60);
    let mut new = wide_table(60);
    new.columns
        .push(column("more", text(Some(3000), false), true));
    let live: Vec<(String, bool)> = old
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.nullable))
        .collect();
    let live: Vec<(&str, bool)> = live.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    // `wide` was created as text; the new column does not fit as varchar(3000).
    assert_eq!(
        sql(tests::alter(MY, &old, &new, &live, DdlOptions::default())),
        ["ALTER TABLE `ns__t` ADD COLUMN `more` text NULL"]
    );
}

#[test]
fn enum_column_types_parse() {
    let parse = LiveColumn::mysql_enum_values;
    assert_eq!(parse("enum('a','b')"), ["a", "b"]);
    assert_eq!(
        parse("ENUM('it''s','x\\\\y','new\nline','é',',')"),
        ["it's", "x\\y", "new\nline", "é", ","]
    );
    assert_eq!(parse("enum('')"), [""]);
    for other in [
        "int(11)",
        "enum(",
        "enum('a'",
        "enum('a',)",
        "enum('a')x",
        "set('a')",
        "enum(a)",
        "",
        "é",
    ] {
        assert_eq!(parse(other), Vec::<String>::new(), "{other}");
    }
    // What create_table renders, MySQL reports back the same way.
    let labels: Vec<String> = ["a", "it's", "x\\y"].map(String::from).to_vec();
    let rendered = enum_type(&labels)
        .replace("ENUM(", "enum(")
        .replace(", ", ",")
        .replace(" CHARACTER SET ascii COLLATE ascii_bin", "");
    assert_eq!(parse(&rendered), labels);
}

#[test]
fn swap() {
    let staging = TableNames::staging(MY, "canvas", "courses");
    let live = TableNames::live(MY, "canvas", "courses");
    let schema = fixture("canvas", "courses");
    let sql = |exists| -> Vec<String> {
        MY.swap_in(
            None,
            &schema,
            &staging,
            &live,
            exists,
            &DdlOptions::default(),
        )
        .into_iter()
        .map(|s| s.sql)
        .collect()
    };
    assert_eq!(
        sql(true),
        [
            "RENAME TABLE `canvas__courses` TO `canvas__courses__dapsync_old`, `canvas__courses__dapsync_new` TO `canvas__courses`",
            "DROP TABLE IF EXISTS `canvas__courses__dapsync_old`",
        ]
    );
    assert_eq!(
        sql(false),
        ["RENAME TABLE `canvas__courses__dapsync_new` TO `canvas__courses`"]
    );
}
