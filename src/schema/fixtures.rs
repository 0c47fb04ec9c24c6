//! Schemas for unit tests: the 115 real tables under `tests/fixtures/schemas`, and builders of
//! small synthetic ones.

use std::path::PathBuf;

use super::{Column, ColumnType, TableSchema};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schemas")
}

/// The envelope text of one fixture.
pub(crate) fn fixture_text(namespace: &str, table: &str) -> String {
    let path = root().join(namespace).join(format!("{table}.json"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One fixture, parsed.
pub(crate) fn fixture(namespace: &str, table: &str) -> TableSchema {
    let envelope = serde_json::from_str(&fixture_text(namespace, table)).unwrap();
    TableSchema::from_envelope(namespace, table, &envelope).unwrap_or_else(|e| panic!("{e}"))
}

/// Every fixture, parsed, sorted by namespace and table.
pub(crate) fn all_fixtures() -> Vec<TableSchema> {
    let mut names = Vec::new();
    for namespace in std::fs::read_dir(root()).unwrap() {
        let namespace = namespace.unwrap().path();
        if !namespace.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&namespace).unwrap() {
            let file = file.unwrap().path();
            if file.extension().is_some_and(|e| e == "json") {
                let ns = namespace
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                names.push((ns, file.file_stem().unwrap().to_string_lossy().into_owned()));
            }
        }
    }
    names.sort();
    names.iter().map(|(ns, table)| fixture(ns, table)).collect()
}

/// A column; the one named `id` is the key.
pub(crate) fn column(name: &str, ty: ColumnType, nullable: bool) -> Column {
    Column {
        name: name.into(),
        ty,
        nullable,
        key: name == "id",
        comment: None,
    }
}

/// A string enum type.
pub(crate) fn enumeration(values: &[&str]) -> ColumnType {
    ColumnType::Enum {
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

/// Table `ns.t`: key `id` (bigint), then `columns`.
pub(crate) fn table(columns: Vec<Column>) -> TableSchema {
    let mut all = vec![column("id", ColumnType::BigInt, false)];
    all.extend(columns);
    let primary_key = all
        .iter()
        .filter(|c| c.key)
        .map(|c| c.name.clone())
        .collect();
    TableSchema {
        namespace: "ns".into(),
        table: "t".into(),
        version: 1,
        columns: all,
        primary_key,
        comment: None,
        json: serde_json::Value::Null,
    }
}

/// A string type.
pub(crate) fn text(max_length: Option<u32>, truncatable: bool) -> ColumnType {
    ColumnType::Text {
        max_length,
        truncatable,
    }
}

/// An array type.
pub(crate) fn array(item: ColumnType) -> ColumnType {
    ColumnType::Array {
        item: Box::new(item),
    }
}
