//! The four result formats of the API (the query body's `format`) and the two layouts of the
//! tabular ones (its `mode`).
//!
//! - JSON Lines (`jsonl`): one `{"key", "value", "meta"}` object per line, NULLs left out.
//! - TSV (`tsv`) and CSV (`csv`): a header row of `meta.*`, `key.*` and `value.*` field names, then
//!   one row per record; see [`text`] for the escaping rules. `meta.ts` always, `meta.action` only
//!   in incremental results (snapshot records have no action), then the key columns, then the
//!   value columns, each in schema order.
//! - Parquet (`parquet`): typed, nested columns from the table's JSON schema; see [`parquet`].
//!
//! The documentation does not say what `mode` does; the official client asks for
//! `format: tsv, mode: condensed` and reads it as one column per table column (`key.<column>`,
//! `value.<column>`). So the fake reads the modes as:
//!
//! - `condensed`: one column per table column; a nested object is one column of JSON text.
//! - `expanded` (the default, and what the format documentation describes): an object with fixed
//!   properties is flattened into `value.<column>.<property>` columns, recursively; arrays,
//!   objects without fixed properties and `oneOf` values stay one column of JSON text.
//!
//! `mode` shapes only TSV and CSV: JSON Lines and Parquet accept and ignore it (Parquet nests
//! natively), so such queries with and without a mode are one query.
//!
//! Tabular columns follow the table's latest schema (the job's `schema_version`): a row written
//! under an older version shows NULL for a column it lacks, and no cell for one the latest schema
//! dropped.

mod parquet;
mod text;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::generator::resolve;

pub(super) use parquet::ParquetLayout;
pub(super) use text::TextEncoder;

/// The data format of a query's result objects (the query body's `format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// JSON Lines, gzip-compressed.
    Jsonl,
    /// Tab-separated values in PostgreSQL `COPY` text format, gzip-compressed.
    Tsv,
    /// RFC 4180 comma-separated values, gzip-compressed.
    Csv,
    /// Apache Parquet (compressed inside, with Snappy).
    Parquet,
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 4] = [Format::Jsonl, Format::Tsv, Format::Csv, Format::Parquet];

    /// The name the query body uses: `jsonl`, `tsv`, `csv` or `parquet`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Tsv => "tsv",
            Format::Csv => "csv",
            Format::Parquet => "parquet",
        }
    }

    /// The format of a query body's `format` name.
    pub fn from_name(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|format| format.name() == name)
    }

    /// How its object names end: `jsonl.gz`, `tsv.gz`, `csv.gz` or `parquet`.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl.gz",
            Format::Tsv => "tsv.gz",
            Format::Csv => "csv.gz",
            Format::Parquet => "parquet",
        }
    }

    /// The media type its downloads are sent with, as the format documentation names it. The
    /// gzip-compressed formats are sent without `Content-Encoding`: the bytes are the `.gz` file
    /// the object name promises, which clients decompress themselves.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jsonl => "application/jsonlines",
            Format::Tsv => "text/plain; charset=utf-8",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Parquet => "application/parquet",
        }
    }

    /// Whether its objects are gzip files (all but Parquet).
    pub fn is_gzip(self) -> bool {
        self != Format::Parquet
    }

    /// Whether `mode` shapes it (TSV and CSV).
    pub fn is_tabular(self) -> bool {
        matches!(self, Format::Tsv | Format::Csv)
    }
}

/// How TSV and CSV lay out nested values (the query body's `mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Objects with fixed properties flattened into a column per property (the default).
    #[default]
    Expanded,
    /// One column per table column; nested values as JSON text.
    Condensed,
}

impl Mode {
    /// The name the query body uses: `expanded` or `condensed`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Expanded => "expanded",
            Mode::Condensed => "condensed",
        }
    }

    /// The mode of a query body's `mode` name.
    pub fn from_name(name: &str) -> Option<Mode> {
        [Mode::Expanded, Mode::Condensed]
            .into_iter()
            .find(|mode| mode.name() == name)
    }
}

/// What a query's objects look like: a format, and for TSV and CSV a mode. Two queries that differ
/// only in a mode their format ignores ask for the same output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Output {
    pub format: Format,
    /// `Some` exactly for the tabular formats.
    pub mode: Option<Mode>,
}

impl Output {
    /// The output of a query body's `format` and `mode`.
    pub(super) fn new(format: Format, mode: Option<Mode>) -> Self {
        Self {
            format,
            mode: format.is_tabular().then(|| mode.unwrap_or_default()),
        }
    }
}

impl Default for Output {
    fn default() -> Self {
        Output::new(Format::Jsonl, None)
    }
}

/// The properties of a schema that is an object with fixed properties (at least one), after
/// following `$ref`s; `None` for anything else, including `oneOf`s and free-form objects.
fn fixed_properties<'a>(schema: &'a Value, root: &'a Value) -> Option<&'a Map<String, Value>> {
    let schema = resolve(schema, root);
    let object = schema.as_object()?;
    if ["oneOf", "anyOf", "allOf", "const", "enum"]
        .iter()
        .any(|keyword| object.contains_key(*keyword))
    {
        return None;
    }
    let is_object = match object.get("type") {
        Some(Value::String(name)) => name == "object",
        Some(Value::Array(names)) => {
            names.iter().any(|name| name == "object")
                && names.iter().all(|name| name == "object" || name == "null")
        }
        None => true,
        Some(_) => false,
    };
    let properties = object.get("properties")?.as_object()?;
    (is_object && !properties.is_empty()).then_some(properties)
}

/// The names listed in a schema's `required`.
fn required_names<'a>(schema: &'a Value, root: &'a Value) -> Vec<&'a str> {
    resolve(schema, root)
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The properties of the `key` or `value` section of a table schema, in schema order.
fn section<'a>(root: &'a Value, name: &str) -> Option<&'a Map<String, Value>> {
    let section = resolve(root.pointer(&format!("/properties/{name}"))?, root);
    section.get("properties")?.as_object()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_round_trip_and_mode_counts_only_for_tabular_formats() {
        for format in Format::ALL {
            assert_eq!(Format::from_name(format.name()), Some(format));
            assert_eq!(serde_json::to_value(format).unwrap(), json!(format.name()));
        }
        assert_eq!(Format::from_name("JSONL"), None);
        assert_eq!(Mode::from_name("condensed"), Some(Mode::Condensed));
        assert_eq!(Mode::from_name("flat"), None);
        assert_eq!(
            Output::new(Format::Jsonl, Some(Mode::Condensed)),
            Output::default()
        );
        assert_eq!(
            Output::new(Format::Csv, None),
            Output::new(Format::Csv, Some(Mode::Expanded))
        );
        assert_ne!(
            Output::new(Format::Csv, None),
            Output::new(Format::Csv, Some(Mode::Condensed))
        );
        assert_eq!(
            Output::new(Format::Parquet, Some(Mode::Condensed)).mode,
            None
        );
    }

    #[test]
    fn only_objects_with_fixed_properties_count_as_fixed() {
        let root =
            json!({"$defs": {"p": {"type": "object", "properties": {"x": {"type": "integer"}}}}});
        let fixed = |schema: Value| fixed_properties(&schema, &root).map(|p| p.len());
        assert_eq!(fixed(json!({"$ref": "#/$defs/p"})), Some(1));
        assert_eq!(
            fixed(json!({"type": ["object", "null"], "properties": {"a": {}, "b": {}}})),
            Some(2)
        );
        assert_eq!(fixed(json!({"type": "object"})), None);
        assert_eq!(fixed(json!({"type": "object", "properties": {}})), None);
        assert_eq!(
            fixed(json!({"oneOf": [{"type": "object", "properties": {"a": {}}}]})),
            None
        );
        assert_eq!(fixed(json!({"type": "array", "items": {}})), None);
    }
}
