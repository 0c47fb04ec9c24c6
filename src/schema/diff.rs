//! Differences between two versions of a table, classified as in-place or rebuild.

use super::model::{Column, ColumnType, TableSchema};

/// The changes that turn one version of a table into another.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SchemaDiff {
    /// In the order [`diff`] lists them.
    pub changes: Vec<Change>,
}

/// One difference between two versions of a table. `column` is the new version of the column,
/// except in [`Change::ColumnRemoved`], where it is the old one.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A new column. Added nullable even when required upstream: existing rows have no value.
    ColumnAdded { column: Column },
    /// A column that disappeared upstream. Kept (made nullable) unless configured otherwise.
    ColumnRemoved { column: Column },
    /// A required column became nullable.
    NullabilityRelaxed { column: Column },
    /// A nullable column became required. In-place and a no-op in SQL: NOT NULL is never added
    /// to a populated table, whose old rows may hold NULL.
    NullabilityTightened { column: Column },
    /// A type that can hold every value of the old one: longer varchar, larger integer, ...
    TypeWidened { column: Column, from: ColumnType },
    /// Any other change of type: the data must be reloaded.
    TypeChanged { column: Column, from: ColumnType },
    /// New values of a string or integer enum (integer values rendered as decimal strings), in
    /// the new schema's order.
    EnumValuesAdded { column: Column, values: Vec<String> },
    /// Values gone from an enum. In-place and a no-op in SQL: the value stays allowed, so that
    /// old rows stay valid and nothing wedges.
    EnumValuesRemoved { column: Column, values: Vec<String> },
    /// The primary-key columns differ: the data must be reloaded.
    KeyChanged { from: Vec<String>, to: Vec<String> },
}

impl Change {
    /// Whether the table must be reloaded from a new snapshot (no ALTER can keep the data right).
    pub fn needs_rebuild(&self) -> bool {
        matches!(self, Self::KeyChanged { .. } | Self::TypeChanged { .. })
    }
}

impl SchemaDiff {
    /// Whether any change needs a rebuild.
    pub fn needs_rebuild(&self) -> bool {
        self.changes.iter().any(Change::needs_rebuild)
    }

    /// Whether the two versions describe the same table.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Lists the changes from `old` to `new`: the key first, then each column of `new` in order,
/// then the removed columns. Comments are not compared.
pub fn diff(old: &TableSchema, new: &TableSchema) -> SchemaDiff {
    let mut changes = Vec::new();
    if old.primary_key != new.primary_key {
        changes.push(Change::KeyChanged {
            from: old.primary_key.clone(),
            to: new.primary_key.clone(),
        });
    }
    for column in &new.columns {
        let Some(before) = old.column(&column.name) else {
            changes.push(Change::ColumnAdded {
                column: column.clone(),
            });
            continue;
        };
        type_changes(before, column, &mut changes);
        match (before.nullable, column.nullable) {
            (false, true) => changes.push(Change::NullabilityRelaxed {
                column: column.clone(),
            }),
            (true, false) => changes.push(Change::NullabilityTightened {
                column: column.clone(),
            }),
            _ => {}
        }
    }
    for column in old.columns.iter().filter(|c| new.column(&c.name).is_none()) {
        changes.push(Change::ColumnRemoved {
            column: column.clone(),
        });
    }
    SchemaDiff { changes }
}

fn type_changes(before: &Column, column: &Column, changes: &mut Vec<Change>) {
    let (old_values, new_values) = match (&before.ty, &column.ty) {
        (a, b) if a == b => return,
        (ColumnType::Enum { values: a }, ColumnType::Enum { values: b }) => (a.clone(), b.clone()),
        (ColumnType::IntEnum { values: a }, ColumnType::IntEnum { values: b }) => {
            let render = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>();
            (render(a), render(b))
        }
        (from, to) => {
            let (column, from) = (column.clone(), from.clone());
            changes.push(if widens(&from, to) {
                Change::TypeWidened { column, from }
            } else {
                Change::TypeChanged { column, from }
            });
            return;
        }
    };
    let added: Vec<String> = new_values
        .iter()
        .filter(|v| !old_values.contains(v))
        .cloned()
        .collect();
    let removed: Vec<String> = old_values
        .iter()
        .filter(|v| !new_values.contains(v))
        .cloned()
        .collect();
    if !added.is_empty() {
        changes.push(Change::EnumValuesAdded {
            column: column.clone(),
            values: added,
        });
    }
    if !removed.is_empty() {
        changes.push(Change::EnumValuesRemoved {
            column: column.clone(),
            values: removed,
        });
    }
}

/// Whether a column of type `to` holds every value of a column of type `from` (`from != to`).
fn widens(from: &ColumnType, to: &ColumnType) -> bool {
    use ColumnType::*;
    let integer_range = |ty: &ColumnType| match ty {
        SmallInt => Some((i64::from(i16::MIN), i64::from(i16::MAX))),
        Int => Some((i64::from(i32::MIN), i64::from(i32::MAX))),
        BigInt => Some((i64::MIN, i64::MAX)),
        _ => None,
    };
    let holds_chars = |max: Option<u32>, chars: usize| max.is_none_or(|m| chars <= m as usize);
    match (from, to) {
        (SmallInt | Int | BigInt, _) => match (integer_range(from), integer_range(to)) {
            (Some((a, b)), Some((c, d))) => c <= a && b <= d,
            _ => false,
        },
        (IntEnum { values }, _) => {
            integer_range(to).is_some_and(|(lo, hi)| values.iter().all(|v| (lo..=hi).contains(v)))
        }
        (
            Text {
                max_length: a,
                truncatable: t,
            },
            Text {
                max_length: b,
                truncatable: u,
            },
        ) => (!t || *u) && (b.is_none() || a.zip(*b).is_some_and(|(a, b)| a <= b)),
        (Enum { values }, Text { max_length, .. }) => values
            .iter()
            .all(|v| holds_chars(*max_length, v.chars().count())),
        // Enum items of arrays are not enforced by any database: any change of their values fits.
        (Array { item: a }, Array { item: b }) => {
            matches!((a.as_ref(), b.as_ref()), (Enum { .. }, Enum { .. })) || widens(a, b)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::fixtures::{array, column, enumeration, table, text};

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    /// The type change of one column from `from` to `to`.
    fn type_change(from: ColumnType, to: ColumnType) -> Vec<Change> {
        diff(
            &table(vec![column("c", from, true)]),
            &table(vec![column("c", to, true)]),
        )
        .changes
    }

    #[test]
    fn widening_and_changing() {
        use ColumnType::*;
        let cases = [
            (SmallInt, Int, true),
            (SmallInt, BigInt, true),
            (Int, BigInt, true),
            (BigInt, Int, false),
            (Int, SmallInt, false),
            (Int, Double, false),
            (text(Some(10), false), text(Some(20), false), true),
            (text(Some(10), false), text(None, false), true),
            (text(Some(10), false), text(Some(10), true), true),
            (text(None, false), text(None, true), true),
            (text(Some(20), false), text(Some(10), false), false),
            (text(None, false), text(Some(10), false), false),
            (text(Some(10), true), text(Some(10), false), false),
            (text(Some(10), true), text(Some(20), true), true),
            (enumeration(&["a", "bb"]), text(None, false), true),
            (enumeration(&["a", "bb"]), text(Some(2), false), true),
            (enumeration(&["a", "bbb"]), text(Some(2), false), false),
            (text(None, false), enumeration(&["a"]), false),
            (
                IntEnum {
                    values: vec![100, 511],
                },
                SmallInt,
                true,
            ),
            (
                IntEnum {
                    values: vec![100, 40_000],
                },
                SmallInt,
                false,
            ),
            (
                IntEnum {
                    values: vec![100, 40_000],
                },
                Int,
                true,
            ),
            (IntEnum { values: vec![1] }, Double, false),
            (BigInt, IntEnum { values: vec![1] }, false),
            (array(Int), array(BigInt), true),
            (array(BigInt), array(Int), false),
            (array(enumeration(&["a"])), array(enumeration(&["b"])), true),
            (array(Int), Json, false),
            (Timestamp, text(None, false), false),
            (Uuid, Timestamp, false),
            (Json, text(None, false), false),
            (
                enumeration(&["a"]),
                ColumnType::IntEnum { values: vec![1] },
                false,
            ),
        ];
        for (from, to, widened) in cases {
            let changes = type_change(from.clone(), to.clone());
            let expected = if widened {
                Change::TypeWidened {
                    column: column("c", to.clone(), true),
                    from: from.clone(),
                }
            } else {
                Change::TypeChanged {
                    column: column("c", to.clone(), true),
                    from: from.clone(),
                }
            };
            assert_eq!(changes, [expected], "{from:?} -> {to:?}");
            assert_eq!(changes[0].needs_rebuild(), !widened);
        }
    }

    #[test]
    fn enum_values() {
        let changes = type_change(
            enumeration(&["a", "b", "c"]),
            enumeration(&["d", "a", "c", "e"]),
        );
        let new = column("c", enumeration(&["d", "a", "c", "e"]), true);
        assert_eq!(
            changes,
            [
                Change::EnumValuesAdded {
                    column: new.clone(),
                    values: strings(&["d", "e"])
                },
                Change::EnumValuesRemoved {
                    column: new,
                    values: strings(&["b"])
                },
            ]
        );
        assert!(changes.iter().all(|c| !c.needs_rebuild()));
        // Order alone is no change the database must follow.
        assert_eq!(
            type_change(
                ColumnType::IntEnum { values: vec![1, 2] },
                ColumnType::IntEnum { values: vec![2, 1] }
            ),
            []
        );
        let ints = type_change(
            ColumnType::IntEnum {
                values: vec![200, 404],
            },
            ColumnType::IntEnum {
                values: vec![200, 418],
            },
        );
        let new = column(
            "c",
            ColumnType::IntEnum {
                values: vec![200, 418],
            },
            true,
        );
        assert_eq!(
            ints,
            [
                Change::EnumValuesAdded {
                    column: new.clone(),
                    values: strings(&["418"])
                },
                Change::EnumValuesRemoved {
                    column: new,
                    values: strings(&["404"])
                },
            ]
        );
    }

    #[test]
    fn columns_nullability_and_key() {
        let old = table(vec![
            column("gone", ColumnType::Boolean, false),
            column("relaxed", ColumnType::Date, false),
            column("tightened", ColumnType::Date, true),
            column("same", ColumnType::Uuid, true),
        ]);
        let mut new = table(vec![
            column("relaxed", ColumnType::Date, true),
            column("tightened", ColumnType::Date, false),
            column("same", ColumnType::Uuid, true),
            column("added", ColumnType::Json, false),
        ]);
        let expected = vec![
            Change::NullabilityRelaxed {
                column: new.columns[1].clone(),
            },
            Change::NullabilityTightened {
                column: new.columns[2].clone(),
            },
            Change::ColumnAdded {
                column: new.columns[4].clone(),
            },
            Change::ColumnRemoved {
                column: old.columns[1].clone(),
            },
        ];
        let found = diff(&old, &new);
        assert_eq!(found.changes, expected);
        assert!(!found.needs_rebuild() && !found.is_empty());
        assert!(diff(&old, &old).is_empty());

        new.columns[3].key = true;
        new.primary_key.push("same".into());
        let found = diff(&old, &new);
        assert_eq!(
            found.changes[0],
            Change::KeyChanged {
                from: strings(&["id"]),
                to: strings(&["id", "same"])
            }
        );
        assert!(found.needs_rebuild());
    }

    #[test]
    fn a_type_and_nullability_change_are_both_listed() {
        let old = table(vec![column("c", ColumnType::Int, false)]);
        let new = table(vec![column("c", ColumnType::BigInt, true)]);
        let c = new.columns[1].clone();
        assert_eq!(
            diff(&old, &new).changes,
            [
                Change::TypeWidened {
                    column: c.clone(),
                    from: ColumnType::Int
                },
                Change::NullabilityRelaxed { column: c },
            ]
        );
    }
}
