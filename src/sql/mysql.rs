//! MySQL and MariaDB.
//!
//! InnoDB limits the declared size of a row (not counting `text`/`json`, which live off-row) to
//! 65,535 bytes, and a `varchar(255)` in utf8mb4 declares 1,022. A table that would exceed it
//! gets its widest `varchar` columns as `text` instead, until it fits.

use std::collections::HashSet;

use super::{AlterPlan, Statement, TableNames, create_table_sql, fits_int, varchar_len};
use crate::schema::{Column, ColumnType, TableSchema};

/// The longest `varchar(n)` in utf8mb4 (65,535 bytes / 4).
const MAX_VARCHAR: u32 = 16_383;
/// InnoDB's row-size limit, in bytes.
const MAX_ROW_BYTES: usize = 65_535;
/// The longest column comment (characters).
const MAX_COLUMN_COMMENT: usize = 1024;
/// The longest table comment (characters).
const MAX_TABLE_COMMENT: usize = 2048;
/// InnoDB's limit on an index key (row formats DYNAMIC and COMPRESSED, the default), in bytes.
const MAX_KEY_BYTES: u32 = 3072;
pub(super) fn column_type(ty: &ColumnType) -> String {
    use ColumnType::*;
    match ty {
        SmallInt => "smallint".into(),
        Int => "int".into(),
        BigInt => "bigint".into(),
        Double => "double".into(),
        Boolean => "tinyint(1)".into(),
        Text {
            max_length: Some(n),
            truncatable,
        } if varchar_len(*n, *truncatable) <= MAX_VARCHAR => {
            format!("varchar({})", varchar_len(*n, *truncatable))
        }
        Text { .. } => "mediumtext".into(),
        // The official client's `datetime` drops the microseconds the chain's timestamps carry.
        Timestamp => "datetime(6)".into(),
        Date => "date".into(),
        Uuid => "binary(16)".into(),
        Enum { values } => enum_type(values),
        IntEnum { values } if fits_int(values) => "int".into(),
        IntEnum { .. } => "bigint".into(),
        // Packed as the official client packs them (see `db::pack_ip`).
        IpAddress => "binary(16)".into(),
        Array { .. } | Json => "json".into(),
    }
}

/// Inline `ENUM(...)`, case-sensitive: ascii_bin, or utf8mb4_bin when a label is not ASCII.
fn enum_type(values: &[String]) -> String {
    let labels: Vec<String> = values
        .iter()
        .map(|v| super::Dialect::Mysql.quote_literal(v))
        .collect();
    let charset = if values.iter().all(|v| v.is_ascii()) {
        "CHARACTER SET ascii COLLATE ascii_bin"
    } else {
        "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
    };
    format!("ENUM({}) {charset}", labels.join(", "))
}

/// The labels of `enum('a','it''s')` as MySQL reports a column type: `'` and `\\` doubled.
pub(super) fn parse_enum(column_type: &str) -> Option<Vec<String>> {
    let prefix = column_type
        .get(..5)
        .filter(|p| p.eq_ignore_ascii_case("enum("))?;
    let mut chars = column_type[prefix.len()..].chars().peekable();
    let mut values = Vec::new();
    loop {
        if chars.next()? != '\'' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\'' if chars.peek() == Some(&'\'') => value.push(chars.next()?),
                '\'' => break,
                '\\' => value.push(chars.next()?),
                c => value.push(c),
            }
        }
        values.push(value);
        match chars.next()? {
            ',' => {}
            ')' => return chars.next().is_none().then_some(values),
            _ => return None,
        }
    }
}

/// Bytes a column declares towards the row-size limit (`text` when `as_text`).
fn row_bytes(ty: &ColumnType, as_text: bool) -> usize {
    use ColumnType::*;
    // Off-row types count their length bytes and pointer.
    const OFF_ROW: usize = 12;
    let varchar = |chars: u32| {
        let bytes = 4 * chars as usize;
        bytes + if bytes > 255 { 2 } else { 1 }
    };
    match ty {
        _ if as_text => OFF_ROW,
        Boolean => 1,
        SmallInt | Enum { .. } => 2,
        Date => 3,
        Int | IntEnum { .. } => 4,
        BigInt | Double | Timestamp => 8,
        Uuid | IpAddress => 16,
        Text {
            max_length: Some(n),
            truncatable,
        } if varchar_len(*n, *truncatable) <= MAX_VARCHAR => varchar(varchar_len(*n, *truncatable)),
        Text { .. } | Array { .. } | Json => OFF_ROW,
    }
}

/// Columns stored as `text` instead of `varchar` so that the row fits: those in `already`, then
/// the widest of the columns `may_move` allows, until the row fits.
fn moved_to_text<'a>(
    columns: &[&'a Column],
    already: &HashSet<&'a str>,
    may_move: impl Fn(&Column) -> bool,
) -> HashSet<&'a str> {
    let mut moved = already.clone();
    let nullable = columns.iter().filter(|c| c.nullable).count();
    let mut total: usize = nullable.div_ceil(8)
        + columns
            .iter()
            .map(|c| row_bytes(&c.ty, moved.contains(c.name.as_str())))
            .sum::<usize>();
    let mut candidates: Vec<&&Column> = columns
        .iter()
        .filter(|c| !c.key && !moved.contains(c.name.as_str()) && may_move(c))
        .filter(|c| row_bytes(&c.ty, false) > row_bytes(&c.ty, true))
        .collect();
    // Widest first; the sort is stable, so ties keep the schema order.
    candidates.sort_by_key(|c| std::cmp::Reverse(row_bytes(&c.ty, false)));
    for column in candidates {
        if total <= MAX_ROW_BYTES {
            break;
        }
        total -= row_bytes(&column.ty, false) - row_bytes(&column.ty, true);
        moved.insert(column.name.as_str());
    }
    moved
}

/// `` `column` type NULL|NOT NULL [COMMENT '...'] ``, as in `CREATE TABLE`, `ADD` and `MODIFY`.
fn column_def(names: &TableNames, column: &Column, as_text: bool) -> String {
    let ty = if as_text {
        "text".to_owned()
    } else {
        column_type(&column.ty)
    };
    let null = if column.nullable { "NULL" } else { "NOT NULL" };
    let mut def = format!("{} {ty} {null}", names.quoted_column(&column.name));
    if let Some(comment) = &column.comment {
        def.push_str(&format!(
            " COMMENT {}",
            comment_literal(comment, MAX_COLUMN_COMMENT)
        ));
    }
    def
}

fn comment_literal(comment: &str, max_chars: usize) -> String {
    let end = comment
        .char_indices()
        .nth(max_chars)
        .map_or(comment.len(), |(i, _)| i);
    super::Dialect::Mysql.quote_literal(&comment[..end])
}

/// The longest string each key column may hold so that the primary key fits InnoDB's index
/// limit, for the key's string columns whose `maxLength` (or the lack of one) would not fit: a
/// text type cannot be a primary key, and a key wider than [`MAX_KEY_BYTES`] is refused. The
/// room left by the key's other columns is shared out, shorter strings keeping their length.
pub(super) fn key_text_limits(schema: &TableSchema) -> Vec<(&str, u32)> {
    let keys = schema.columns.iter().filter(|c| c.key);
    let (texts, others): (Vec<&Column>, Vec<&Column>) =
        keys.partition(|c| matches!(c.ty, ColumnType::Text { .. }));
    let fixed: u32 = others.iter().map(|c| key_bytes(&c.ty)).sum();
    let mut room = MAX_KEY_BYTES.saturating_sub(fixed) / 4;
    let wanted = |c: &Column| match c.ty {
        ColumnType::Text {
            max_length: Some(n),
            truncatable,
        } => varchar_len(n, truncatable),
        _ => u32::MAX,
    };
    let fits = texts
        .iter()
        .try_fold(0u32, |sum, c| sum.checked_add(wanted(c)))
        .is_some_and(|chars| chars <= room);
    if fits {
        return Vec::new();
    }
    let mut texts = texts;
    texts.sort_by_key(|c| wanted(c));
    let mut limits = Vec::new();
    for (i, column) in texts.iter().enumerate() {
        let share = room / (texts.len() - i) as u32;
        let chars = wanted(column).min(share);
        room -= chars;
        if chars < wanted(column) {
            limits.push((column.name.as_str(), chars));
        }
    }
    limits
}

/// Bytes a key column of a type other than text takes in an index.
fn key_bytes(ty: &ColumnType) -> u32 {
    row_bytes(ty, false) as u32
}

pub(super) fn create_table(schema: &TableSchema, names: &TableNames) -> Vec<Statement> {
    let limits = key_text_limits(schema);
    let limited: Vec<Column> = schema
        .columns
        .iter()
        .map(|c| match limits.iter().find(|(name, _)| *name == c.name) {
            Some(&(_, chars)) => Column {
                ty: ColumnType::Text {
                    max_length: Some(chars),
                    truncatable: false,
                },
                ..c.clone()
            },
            None => c.clone(),
        })
        .collect();
    let columns: Vec<&Column> = limited.iter().collect();
    let moved = moved_to_text(&columns, &HashSet::new(), |_| true);
    let definitions: Vec<String> = columns
        .iter()
        .map(|c| column_def(names, c, moved.contains(c.name.as_str())))
        .collect();
    let mut suffix = String::from(" ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin");
    if let Some(comment) = &schema.comment {
        suffix.push_str(&format!(
            " COMMENT={}",
            comment_literal(comment, MAX_TABLE_COMMENT)
        ));
    }
    vec![Statement::new(create_table_sql(
        names,
        &definitions,
        &schema.primary_key,
        &suffix,
    ))]
}

pub(super) fn swap_in(
    staging: &TableNames,
    live: &TableNames,
    live_exists: bool,
) -> Vec<Statement> {
    let retired = live.retired();
    let (staging, live_name, retired) =
        (staging.qualified(), live.qualified(), retired.qualified());
    if !live_exists {
        return vec![Statement::new(format!(
            "RENAME TABLE {staging} TO {live_name}"
        ))];
    }
    vec![
        Statement::new(format!(
            "RENAME TABLE {live_name} TO {retired}, {staging} TO {live_name}"
        )),
        Statement::new(format!("DROP TABLE IF EXISTS {retired}")),
    ]
}

/// `ADD`, `DROP` and `MODIFY COLUMN` statements. `MODIFY` restates the whole definition; it is
/// issued only when the restated definition differs from the current one.
pub(super) fn alter_table(plan: &AlterPlan) -> Vec<Statement> {
    let names = plan.names;
    let table = names.qualified();
    // The columns of the table after the change, for the row-size check: current definitions,
    // with the added and modified ones replaced by their targets.
    let modified = plan.modified();
    let added: Vec<&Column> = plan.added().collect();
    let targets: Vec<Column> = modified
        .iter()
        .chain(&added)
        .map(|c| plan.target(c))
        .collect();
    let mut after: Vec<&Column> = plan
        .old
        .columns
        .iter()
        .filter(|c| plan.live(&c.name).is_some())
        .collect();
    after.retain(|c| !targets.iter().any(|t| t.name == c.name));
    let old_columns: Vec<&Column> = plan.old.columns.iter().collect();
    let current_text = moved_to_text(&old_columns, &HashSet::new(), |_| true);
    let already: HashSet<&str> = after
        .iter()
        .map(|c| c.name.as_str())
        .filter(|n| current_text.contains(n))
        .collect();
    after.extend(&targets);
    let moved = moved_to_text(&after, &already, |c| {
        targets.iter().any(|t| t.name == c.name)
    });

    let mut out = Vec::new();
    for target in &targets {
        let def = column_def(names, target, moved.contains(target.name.as_str()));
        if plan.live(&target.name).is_none() {
            out.push(format!("ALTER TABLE {table} ADD COLUMN {def}"));
        } else if let Some(before) = plan.old.column(&target.name) {
            let current = column_def(
                names,
                &plan.current(before),
                current_text.contains(before.name.as_str()),
            );
            if def != current {
                out.push(format!("ALTER TABLE {table} MODIFY COLUMN {def}"));
            }
        }
    }
    for (column, live) in plan.removed() {
        if plan.options.drop_removed_columns {
            out.push(format!(
                "ALTER TABLE {table} DROP COLUMN {}",
                names.quoted_column(&column.name)
            ));
        } else if !live.nullable {
            let kept = Column {
                nullable: true,
                ..column.clone()
            };
            let def = column_def(names, &kept, current_text.contains(column.name.as_str()));
            out.push(format!("ALTER TABLE {table} MODIFY COLUMN {def}"));
        }
    }
    out.into_iter().map(Statement::new).collect()
}

#[cfg(test)]
mod tests {
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
}
