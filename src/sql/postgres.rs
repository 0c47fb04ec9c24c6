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
mod tests;
