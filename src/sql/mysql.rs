//! MySQL and MariaDB.
//!
//! InnoDB limits the declared size of a row (not counting `text`/`json`, which live off-row) to
//! 65,535 bytes, and a `varchar(255)` in utf8mb4 declares 1,022. A table that would exceed it
//! gets its widest `varchar` columns as `text` instead, until it fits.

use std::collections::HashSet;

use super::{AlterPlan, Statement, TableNames, create_table_sql, fits_int, varchar_len};
use crate::schema::{Change, Column, ColumnType, TableSchema};

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
    // Columns the diff adds that the table has already: an earlier run's ALTER added them and
    // died before recording the live table's schema (MySQL's DDL commits on its own). They are
    // brought to their target, since the version they were added with may differ.
    let readded: Vec<&Column> = plan
        .diff
        .changes
        .iter()
        .filter_map(|change| match change {
            Change::ColumnAdded { column } if plan.live(&column.name).is_some() => Some(column),
            _ => None,
        })
        .collect();
    let targets: Vec<Column> = modified
        .iter()
        .chain(&added)
        .chain(&readded)
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
        } else {
            out.push(format!("ALTER TABLE {table} MODIFY COLUMN {def}"));
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
mod tests;
