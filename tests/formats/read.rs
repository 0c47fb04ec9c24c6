//! Reading results back, independently of the fake's writers, and checking them value by
//! value: TSV with a `COPY` text reader written here, CSV with csv-async (plus a scan for which
//! fields were quoted), Parquet with the parquet crate's record reader.

use std::collections::HashMap;
use std::io::Read;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate};
use futures_util::StreamExt;
use parquet::basic::{LogicalType, Repetition};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, Row};
use parquet::schema::types::Type;
use serde_json::{Map, Value, json};

/// A record the result should hold, in the order it should hold it.
#[derive(Debug, Clone)]
pub(crate) struct Expected {
    pub key: Map<String, Value>,
    /// `None` for a hard delete.
    pub value: Option<Map<String, Value>>,
    pub action: Option<String>,
    pub ts: String,
}

pub(crate) fn text_of(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

pub(crate) fn gunzip(bytes: &[u8]) -> String {
    assert_eq!(&bytes[..2], [0x1f, 0x8b], "a gzip file");
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .unwrap();
    text
}

/// A table of text cells read back from TSV or CSV: its header and its rows (`None`: NULL).
#[derive(Debug)]
pub(crate) struct TextTable {
    pub header: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

/// Reads PostgreSQL `COPY` text: `\N` is NULL, backslash escapes, tab-delimited, `\n`-ended.
pub(crate) fn read_tsv(text: &str) -> TextTable {
    assert!(text.ends_with('\n'), "rows end with a newline");
    assert!(!text.contains('\r'), "carriage returns are escaped");
    let unescape = |field: &str| -> Option<String> {
        if field == "\\N" {
            return None;
        }
        let mut out = String::new();
        let mut chars = field.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            out.push(match chars.next() {
                Some('\\') => '\\',
                Some('t') => '\t',
                Some('n') => '\n',
                Some('r') => '\r',
                Some('b') => '\u{8}',
                Some('f') => '\u{c}',
                Some('v') => '\u{b}',
                other => panic!("unknown escape {other:?} in {field:?}"),
            });
        }
        Some(out)
    };
    let mut lines = text[..text.len() - 1].split('\n');
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split('\t')
        .map(|name| unescape(name).unwrap())
        .collect();
    let rows: Vec<Vec<Option<String>>> = lines
        .map(|line| line.split('\t').map(unescape).collect())
        .collect();
    assert!(rows.iter().all(|row| row.len() == header.len()));
    TextTable { header, rows }
}

/// Whether each field of each CSV record was quoted: what tells `""` (the empty string) from an
/// empty field (NULL), which CSV readers do not report.
fn quoted_fields(text: &str) -> Vec<Vec<bool>> {
    let bytes = text.as_bytes();
    let (mut records, mut record) = (Vec::new(), Vec::new());
    let (mut at_start, mut in_quotes, mut quoted) = (true, false, false);
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        i += 1;
        if in_quotes {
            if byte == b'"' {
                if bytes.get(i) == Some(&b'"') {
                    i += 1;
                } else {
                    in_quotes = false;
                }
            }
            continue;
        }
        match byte {
            b'"' if at_start => (in_quotes, quoted) = (true, true),
            b',' => {
                record.push(quoted);
                (at_start, quoted) = (true, false);
                continue;
            }
            b'\r' if bytes.get(i) == Some(&b'\n') => {
                i += 1;
                record.push(quoted);
                records.push(std::mem::take(&mut record));
                (at_start, quoted) = (true, false);
                continue;
            }
            b'\n' | b'\r' => panic!("a record ends with a lone line break at byte {i}"),
            _ => {}
        }
        at_start = false;
    }
    assert!(
        record.is_empty() && at_start,
        "the last record ends with CRLF"
    );
    records
}

/// Reads CSV with csv-async, telling NULL from the empty string by quoting.
pub(crate) async fn read_csv(text: &str) -> TextTable {
    let mut reader = csv_async::AsyncReaderBuilder::new()
        .has_headers(false)
        .create_reader(text.as_bytes());
    let records: Vec<csv_async::StringRecord> = reader
        .records()
        .map(|record| record.unwrap())
        .collect()
        .await;
    let quoted = quoted_fields(text);
    assert_eq!(records.len(), quoted.len());
    let mut rows = records.iter().zip(&quoted).map(|(record, quoted)| {
        assert_eq!(record.len(), quoted.len());
        record
            .iter()
            .zip(quoted)
            .map(|(field, &quoted)| (quoted || !field.is_empty()).then(|| field.to_owned()))
            .collect::<Vec<Option<String>>>()
    });
    let header = rows
        .next()
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect::<Vec<String>>();
    let rows: Vec<Vec<Option<String>>> = rows.collect();
    assert!(rows.iter().all(|row| row.len() == header.len()));
    TextTable { header, rows }
}

/// The non-NULL value at `path` (a column, then properties of nested objects).
fn lookup<'a>(object: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut value = object.get(*first)?;
    for name in rest {
        value = value.as_object()?.get(*name)?;
    }
    (!value.is_null()).then_some(value)
}

/// Asserts that a text cell shows `truth`: NULL for none, strings as they are, anything else
/// as JSON text.
fn assert_cell(cell: Option<&str>, truth: Option<&Value>, what: &str) {
    match (cell, truth) {
        (None, None) => {}
        (Some(cell), Some(Value::String(text))) => assert_eq!(cell, text, "{what}"),
        (Some(cell), Some(truth)) => {
            let parsed: Value = serde_json::from_str(cell)
                .unwrap_or_else(|error| panic!("{what}: {cell:?} is not JSON: {error}"));
            assert_eq!(&parsed, truth, "{what}");
        }
        (cell, truth) => panic!("{what}: cell {cell:?}, expected {truth:?}"),
    }
}

/// The records of a result, the last of each key only (a table that repeats keys sends older
/// versions first).
pub(crate) fn last_per_key<R>(records: Vec<(Vec<String>, R)>) -> Vec<R> {
    let last: HashMap<Vec<String>, usize> = records
        .iter()
        .enumerate()
        .map(|(i, (key, _))| (key.clone(), i))
        .collect();
    records
        .into_iter()
        .enumerate()
        .filter(|(i, (key, _))| last[key] == *i)
        .map(|(_, (_, record))| record)
        .collect()
}

/// Checks a TSV or CSV result against the expected records, cell by cell.
pub(crate) fn check_text(
    table: &TextTable,
    expected: &[Expected],
    incremental: bool,
    context: &str,
) {
    let header = &table.header;
    assert_eq!(header[0], "meta.ts", "{context}");
    assert_eq!(
        header.iter().any(|h| h == "meta.action"),
        incremental,
        "{context}: meta.action only in incrementals"
    );
    let key_columns: Vec<usize> = (0..header.len())
        .filter(|&i| header[i].starts_with("key."))
        .collect();
    let keyed: Vec<(Vec<String>, &Vec<Option<String>>)> = table
        .rows
        .iter()
        .map(|row| {
            let key = key_columns
                .iter()
                .map(|&i| row[i].clone().unwrap())
                .collect();
            (key, row)
        })
        .collect();
    let rows = last_per_key(keyed);
    assert_eq!(rows.len(), expected.len(), "{context}: records");
    for (row, expected) in rows.iter().zip(expected) {
        assert_eq!(row[0].as_deref(), Some(expected.ts.as_str()), "{context}");
        for (name, cell) in header.iter().zip(row.iter()).skip(1) {
            let what = format!("{context}: {name} of {:?}", expected.key);
            let path: Vec<&str> = name.split('.').collect();
            let truth = match path[0] {
                "meta" => {
                    assert_eq!(cell.as_deref(), expected.action.as_deref(), "{what}");
                    continue;
                }
                "key" => lookup(&expected.key, &path[1..]),
                "value" => expected
                    .value
                    .as_ref()
                    .and_then(|value| lookup(value, &path[1..])),
                other => panic!("{what}: unknown section {other}"),
            };
            assert_cell(cell.as_deref(), truth, &what);
        }
    }
}

/// Asserts that a Parquet field holds `truth`, walking the file schema `ty` alongside.
fn assert_field(field: &Field, ty: &Type, truth: Option<&Value>, what: &str) {
    let truth = truth.filter(|value| !value.is_null());
    let logical = ty.get_basic_info().logical_type_ref().cloned();
    match (field, truth) {
        (Field::Null, None) => {}
        (Field::Null, Some(truth)) | (_, Some(truth @ Value::Null)) => {
            panic!("{what}: NULL instead of {truth}")
        }
        (field, None) => panic!("{what}: {field:?} instead of NULL"),
        (Field::Bool(b), Some(truth)) => assert_eq!(truth, &json!(b), "{what}"),
        (Field::Short(n), Some(truth)) => assert_eq!(truth.as_i64(), Some(i64::from(*n)), "{what}"),
        (Field::Int(n), Some(truth)) => assert_eq!(truth.as_i64(), Some(i64::from(*n)), "{what}"),
        (Field::Long(n), Some(truth)) => assert_eq!(truth.as_i64(), Some(*n), "{what}"),
        (Field::Double(x), Some(truth)) => {
            assert_eq!(
                truth.as_f64().map(f64::to_bits),
                Some(x.to_bits()),
                "{what}"
            )
        }
        (Field::Str(text), Some(truth)) if logical == Some(LogicalType::Json) => {
            assert_eq!(
                &serde_json::from_str::<Value>(text).unwrap(),
                truth,
                "{what}"
            )
        }
        (Field::Str(text), Some(truth)) => assert_eq!(truth, &json!(text), "{what}"),
        (Field::TimestampMicros(micros), Some(truth)) => {
            let ts = DateTime::parse_from_rfc3339(truth.as_str().unwrap()).unwrap();
            assert_eq!(ts.timestamp_micros(), *micros, "{what}");
        }
        (Field::Date(days), Some(truth)) => {
            let date = NaiveDate::parse_from_str(truth.as_str().unwrap(), "%Y-%m-%d").unwrap();
            let epoch = DateTime::UNIX_EPOCH.date_naive();
            assert_eq!((date - epoch).num_days(), i64::from(*days), "{what}");
        }
        (Field::Group(row), Some(truth)) => {
            assert_row(row, ty, truth.as_object().unwrap(), what);
        }
        (Field::ListInternal(list), Some(truth)) => {
            let items = truth.as_array().unwrap();
            assert_eq!(list.elements().len(), items.len(), "{what}");
            let element = &ty.get_fields()[0].get_fields()[0];
            for (i, (field, item)) in list.elements().iter().zip(items).enumerate() {
                assert_field(field, element, Some(item), &format!("{what}[{i}]"));
            }
        }
        (field, Some(truth)) => panic!("{what}: unexpected {field:?} for {truth}"),
    }
}

/// Asserts that every field of a Parquet group holds the property of that name of `truth`.
fn assert_row(row: &Row, ty: &Type, truth: &Map<String, Value>, what: &str) {
    let fields = ty.get_fields();
    assert_eq!(row.len(), fields.len(), "{what}");
    for ((name, field), ty) in row.get_column_iter().zip(fields) {
        assert_eq!(name, ty.name());
        assert_field(field, ty, truth.get(name), &format!("{what}.{name}"));
    }
}

/// Reads every row of a Parquet file, with the file's schema.
pub(crate) fn read_parquet(bytes: &Bytes) -> (Type, Vec<Row>, usize) {
    assert_eq!(&bytes[..4], b"PAR1");
    assert_eq!(&bytes[bytes.len() - 4..], b"PAR1");
    let reader = SerializedFileReader::new(bytes.clone()).unwrap();
    let schema = reader.metadata().file_metadata().schema().clone();
    let groups = reader.metadata().num_row_groups();
    let rows = reader
        .get_row_iter(None)
        .unwrap()
        .map(|row| row.unwrap())
        .collect();
    (schema, rows, groups)
}

/// Checks the rows of a Parquet result against the expected records, value by value.
pub(crate) fn check_parquet(
    schema: &Type,
    rows: &[Row],
    expected: &[Expected],
    incremental: bool,
    context: &str,
) {
    let top: Vec<&str> = schema.get_fields().iter().map(|f| f.name()).collect();
    assert_eq!(top[..2], ["meta", "key"], "{context}");
    let meta_fields: Vec<&str> = schema.get_fields()[0]
        .get_fields()
        .iter()
        .map(|f| f.name())
        .collect();
    let meta_expected: &[&str] = if incremental {
        &["ts", "action"]
    } else {
        &["ts"]
    };
    assert_eq!(meta_fields, meta_expected, "{context}");
    let keyed: Vec<(Vec<String>, &Row)> = rows
        .iter()
        .map(|row| {
            let Some((_, Field::Group(key))) = row.get_column_iter().nth(1) else {
                panic!("{context}: no key group");
            };
            let key = key
                .get_column_iter()
                .map(|(_, field)| match field {
                    Field::Str(text) => text.clone(),
                    other => other.to_string(),
                })
                .collect();
            (key, row)
        })
        .collect();
    let rows = last_per_key(keyed);
    assert_eq!(rows.len(), expected.len(), "{context}: records");
    for (row, expected) in rows.into_iter().zip(expected) {
        let what = format!("{context}: {:?}", expected.key);
        let mut meta = Map::new();
        meta.insert("ts".to_owned(), json!(expected.ts));
        if let Some(action) = &expected.action {
            meta.insert("action".to_owned(), json!(action));
        }
        let mut truth = Map::new();
        truth.insert("meta".to_owned(), Value::Object(meta));
        truth.insert("key".to_owned(), Value::Object(expected.key.clone()));
        if top.len() == 3 {
            truth.insert(
                "value".to_owned(),
                expected.value.clone().map_or(Value::Null, Value::Object),
            );
        }
        assert_row(row, schema, &truth, &what);
    }
}

/// `path: REPETITION PHYSICAL LOGICAL` for every node under `ty`, depth first.
pub(crate) fn describe(ty: &Type, path: &str, out: &mut Vec<String>) {
    for field in ty.get_fields() {
        let info = field.get_basic_info();
        let path = if path.is_empty() {
            field.name().to_owned()
        } else {
            format!("{path}.{}", field.name())
        };
        let repetition = match info.repetition() {
            Repetition::REQUIRED => "required",
            Repetition::OPTIONAL => "optional",
            Repetition::REPEATED => "repeated",
        };
        let logical = info
            .logical_type_ref()
            .map_or_else(String::new, |l| format!(" {l:?}"));
        if field.is_primitive() {
            out.push(format!(
                "{path}: {repetition} {}{logical}",
                field.get_physical_type()
            ));
        } else {
            out.push(format!("{path}: {repetition} group{logical}"));
            describe(field, &path, out);
        }
    }
}
