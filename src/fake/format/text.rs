//! TSV and CSV: a header row of field names, then one row per record.
//!
//! Cells: strings as they are; numbers as in JSON; booleans `true`/`false`; arrays, objects without
//! fixed properties (and, when condensed, every object) as compact JSON text; `meta.ts` as RFC
//! 3339 with microseconds. A hard delete (`D`) has its key cells and NULL in every value cell.
//!
//! - TSV, PostgreSQL `COPY` text format: tab-delimited, rows end with `\n`, NULL is `\N`, and
//!   backslash escapes `\\`, `\t`, `\n`, `\r`, `\b`, `\f`, `\v` (the API's table). No quoting.
//! - CSV, RFC 4180 with the API's extensions: comma-delimited, rows end with `\r\n`; NULL is an
//!   empty field, the empty string is always `""`; a field is quoted (with `"` doubled inside)
//!   when it holds `"`, `,`, `\n`, `\r` or a tab, starts or ends with a space, or reads `NULL`
//!   (so that no reader can take it for the NULL literal of the other CSV convention).

use std::io::Write as _;

use serde_json::{Map, Value};

use super::super::extract::Record;
use super::super::generator::MAX_DEPTH;
use super::{Format, Mode, fixed_properties, section};

/// Which of the two text formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Tsv,
    Csv,
}

/// Where a column's cells come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Ts,
    Action,
    /// A path into the key columns: the column, then properties of nested objects.
    Key(Vec<String>),
    /// A path into the value columns.
    Value(Vec<String>),
}

/// One column: its header and its source.
#[derive(Debug, Clone)]
struct Column {
    header: String,
    source: Source,
}

/// Writes the header and the rows of TSV or CSV objects for one query.
#[derive(Debug)]
pub(in crate::fake) struct TextEncoder {
    dialect: Dialect,
    columns: Vec<Column>,
}

impl TextEncoder {
    /// The encoder for a result in `format` (TSV or CSV; anything else is taken as CSV), laid
    /// out by the table `schema` in `mode`.
    pub(in crate::fake) fn new(
        format: Format,
        mode: Mode,
        schema: &Value,
        incremental: bool,
    ) -> Self {
        let dialect = if format == Format::Tsv {
            Dialect::Tsv
        } else {
            Dialect::Csv
        };
        let mut columns = vec![Column {
            header: "meta.ts".to_owned(),
            source: Source::Ts,
        }];
        if incremental {
            columns.push(Column {
                header: "meta.action".to_owned(),
                source: Source::Action,
            });
        }
        for name in ["key", "value"] {
            for (property, property_schema) in section(schema, name).into_iter().flatten() {
                let path = vec![property.clone()];
                lay_out(name, path, property_schema, schema, mode, &mut columns);
            }
        }
        Self { dialect, columns }
    }

    /// The header row, with its line end, in place of what `out` held.
    pub(in crate::fake) fn header(&self, out: &mut Vec<u8>) {
        out.clear();
        for (i, column) in self.columns.iter().enumerate() {
            self.separator(i, out);
            self.text(column.header.as_bytes(), out);
        }
        self.row_end(out);
    }

    /// The row of one record, with its line end, in place of what `out` held. `scratch` is
    /// reused for JSON text.
    pub(in crate::fake) fn row(
        &self,
        record: &Record<'_>,
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
    ) {
        out.clear();
        for (i, column) in self.columns.iter().enumerate() {
            self.separator(i, out);
            let cell = match &column.source {
                Source::Ts => Some(Cell::Text(&record.commit.text)),
                Source::Action => record.action.map(Cell::Text),
                Source::Key(path) => lookup(record.key, path).map(Cell::Json),
                Source::Value(path) => record
                    .value
                    .and_then(|value| lookup(value, path))
                    .map(Cell::Json),
            };
            match cell {
                None => self.null(out),
                Some(Cell::Text(text)) => self.text(text.as_bytes(), out),
                Some(Cell::Json(value)) => self.value(value, out, scratch),
            }
        }
        self.row_end(out);
    }

    fn separator(&self, column: usize, out: &mut Vec<u8>) {
        if column > 0 {
            out.push(match self.dialect {
                Dialect::Tsv => b'\t',
                Dialect::Csv => b',',
            });
        }
    }

    fn row_end(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(match self.dialect {
            Dialect::Tsv => b"\n",
            Dialect::Csv => b"\r\n",
        });
    }

    fn null(&self, out: &mut Vec<u8>) {
        if self.dialect == Dialect::Tsv {
            out.extend_from_slice(b"\\N");
        }
    }

    fn value(&self, value: &Value, out: &mut Vec<u8>, scratch: &mut Vec<u8>) {
        match value {
            Value::Null => self.null(out),
            Value::String(text) => self.text(text.as_bytes(), out),
            // Numbers and booleans never need escaping or quoting.
            Value::Number(number) => {
                // Writing into a Vec cannot fail.
                let _ = write!(out, "{number}");
            }
            Value::Bool(true) => out.extend_from_slice(b"true"),
            Value::Bool(false) => out.extend_from_slice(b"false"),
            Value::Array(_) | Value::Object(_) => {
                scratch.clear();
                // Serializing a JSON value into a Vec cannot fail.
                serde_json::to_writer(&mut *scratch, value).unwrap_or_default();
                self.text(scratch, out);
            }
        }
    }

    /// Text, escaped (TSV) or quoted when needed (CSV).
    fn text(&self, text: &[u8], out: &mut Vec<u8>) {
        match self.dialect {
            Dialect::Tsv => tsv_escape(text, out),
            Dialect::Csv => csv_quote(text, out),
        }
    }
}

/// What one cell shows.
enum Cell<'a> {
    Text(&'a str),
    Json(&'a Value),
}

/// Adds the columns of one property: one, or in expanded mode one per fixed property of an object,
/// recursively.
fn lay_out(
    section: &str,
    path: Vec<String>,
    schema: &Value,
    root: &Value,
    mode: Mode,
    columns: &mut Vec<Column>,
) {
    let nested = (mode == Mode::Expanded && path.len() <= MAX_DEPTH)
        .then(|| fixed_properties(schema, root))
        .flatten();
    match nested {
        Some(properties) => {
            for (name, property) in properties {
                let mut path = path.clone();
                path.push(name.clone());
                lay_out(section, path, property, root, mode, columns);
            }
        }
        None => {
            let header = format!("{section}.{}", path.join("."));
            let source = if section == "key" {
                Source::Key(path)
            } else {
                Source::Value(path)
            };
            columns.push(Column { header, source });
        }
    }
}

/// The non-NULL value at `path` (a column, then properties of nested objects), if any.
fn lookup<'a>(columns: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut value = columns.get(first)?;
    for name in rest {
        value = value.as_object()?.get(name)?;
    }
    (!value.is_null()).then_some(value)
}

/// Appends `text` with PostgreSQL `COPY` text escapes.
fn tsv_escape(text: &[u8], out: &mut Vec<u8>) {
    // UTF-8 continuation bytes are never ASCII, so escaping byte by byte keeps characters whole.
    let mut start = 0;
    for (i, &byte) in text.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            0x08 => b"\\b",
            0x0C => b"\\f",
            0x0B => b"\\v",
            _ => continue,
        };
        out.extend_from_slice(&text[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&text[start..]);
}

/// Appends `text` as a CSV field: as it is, or quoted (see the module documentation).
fn csv_quote(text: &[u8], out: &mut Vec<u8>) {
    let special = |byte: &u8| matches!(byte, b'"' | b',' | b'\n' | b'\r' | b'\t');
    let quoted = text.is_empty()
        || text == b"NULL"
        || text.first() == Some(&b' ')
        || text.last() == Some(&b' ')
        || text.iter().any(special);
    if !quoted {
        out.extend_from_slice(text);
        return;
    }
    out.push(b'"');
    for part in text.split_inclusive(|&byte| byte == b'"') {
        out.extend_from_slice(part);
        if part.last() == Some(&b'"') {
            out.push(b'"');
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::table::Commit;
    use chrono::DateTime;
    use serde_json::json;

    fn tsv(text: &str) -> String {
        let mut out = Vec::new();
        tsv_escape(text.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    fn csv(text: &str) -> String {
        let mut out = Vec::new();
        csv_quote(text.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn tsv_escapes_as_copy_text_format() {
        assert_eq!(tsv("plain café 日本語"), "plain café 日本語");
        assert_eq!(
            tsv("a\\b\tc\nd\re\u{8}f\u{c}g\u{b}h"),
            "a\\\\b\\tc\\nd\\re\\bf\\fg\\vh"
        );
        assert_eq!(tsv("\\N"), "\\\\N");
        assert_eq!(tsv(""), "");
    }

    #[test]
    fn csv_quotes_only_when_needed_and_always_the_empty_string() {
        assert_eq!(csv("plain café"), "plain café");
        assert_eq!(csv(""), "\"\"");
        assert_eq!(csv("NULL"), "\"NULL\"");
        assert_eq!(csv("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv("\""), "\"\"\"\"");
        assert_eq!(csv("a,b"), "\"a,b\"");
        assert_eq!(csv("a\r\nb"), "\"a\r\nb\"");
        assert_eq!(csv("tab\there"), "\"tab\there\"");
        assert_eq!(csv(" x"), "\" x\"");
        assert_eq!(csv("\\N"), "\\N");
    }

    fn schema() -> Value {
        json!({"properties": {
            "key": {"type": "object", "properties": {"id": {"type": "integer"}, "part": {"type": "string"}}},
            "value": {"type": "object", "properties": {
                "name": {"type": "string"},
                "settings": {"type": "object", "properties": {
                    "a": {"type": "string"},
                    "inner": {"type": "object", "properties": {"x": {"type": "number"}}},
                    "list": {"type": "array", "items": {"type": "integer"}}
                }},
                "bag": {"type": "object"},
                "flag": {"type": "boolean"}
            }}
        }})
    }

    fn rows(encoder: &TextEncoder, records: &[Record<'_>]) -> String {
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        encoder.header(&mut out);
        let mut all = out.clone();
        for record in records {
            encoder.row(record, &mut out, &mut scratch);
            all.extend_from_slice(&out);
        }
        String::from_utf8(all).unwrap()
    }

    #[test]
    fn modes_lay_out_nested_objects_and_deletes_have_only_keys() {
        let commit = Commit {
            ts: DateTime::UNIX_EPOCH,
            text: "1970-01-01T00:00:00.000000Z".to_owned(),
        };
        let key = json!({"id": 7, "part": "a\tb"});
        let value = json!({"name": "", "settings": {"a": "x,y", "inner": {"x": 1.5}, "list": [1, 2]},
            "bag": {"k": "v"}, "flag": false});
        let (key, value) = (key.as_object().unwrap(), value.as_object().unwrap());
        let upsert = Record {
            key,
            value: Some(value),
            commit: &commit,
            action: Some("U"),
        };
        let delete = Record {
            value: None,
            action: Some("D"),
            ..upsert
        };
        let schema = schema();
        let expanded = TextEncoder::new(Format::Tsv, Mode::Expanded, &schema, true);
        assert_eq!(
            rows(&expanded, &[upsert, delete]),
            "meta.ts\tmeta.action\tkey.id\tkey.part\tvalue.name\tvalue.settings.a\t\
             value.settings.inner.x\tvalue.settings.list\tvalue.bag\tvalue.flag\n\
             1970-01-01T00:00:00.000000Z\tU\t7\ta\\tb\t\tx,y\t1.5\t[1,2]\t{\"k\":\"v\"}\tfalse\n\
             1970-01-01T00:00:00.000000Z\tD\t7\ta\\tb\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\n"
        );
        let condensed = TextEncoder::new(Format::Csv, Mode::Condensed, &schema, false);
        let snapshot = Record {
            action: None,
            ..upsert
        };
        assert_eq!(
            rows(&condensed, &[snapshot]),
            "meta.ts,key.id,key.part,value.name,value.settings,value.bag,value.flag\r\n\
             1970-01-01T00:00:00.000000Z,7,\"a\tb\",\"\",\
             \"{\"\"a\"\":\"\"x,y\"\",\"\"inner\"\":{\"\"x\"\":1.5},\"\"list\"\":[1,2]}\",\
             \"{\"\"k\"\":\"\"v\"\"}\",false\r\n"
        );
    }
}
