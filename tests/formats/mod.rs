//! The fake DAP server's four formats over HTTP: every object of a snapshot and an incremental
//! downloaded, decompressed, parsed back with a reader independent of the fake's writers
//! (csv-async, the parquet crate's record reader, a `COPY` text reader written here), and every
//! value compared with the fake's rows.

mod api;
pub(crate) mod read;

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use dapsync::fake::{Changes, Endpoint, FakeDap, FakeTable, Fault, Format, fixture_tables};
use futures_util::StreamExt;
use parquet::file::reader::{FileReader, SerializedFileReader};
use reqwest::StatusCode;
use serde_json::{Value, json};

use api::{Api, body, split, start};
use read::{
    Expected, TextTable, check_parquet, check_text, describe, gunzip, last_per_key, read_csv,
    read_parquet, read_tsv, text_of,
};

/// The namespace of the edge-case table.
const NS: &str = "canvas";

/// A table made for escaping and typing: a composite key, every scalar type, strings that need
/// quoting or escaping (in enums, on top of the generator's own tricky words), nested objects
/// with and without fixed properties, arrays of scalars and of objects.
fn edge_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "key": {"type": "object", "properties": {
                "id": {"type": "integer", "format": "int64"},
                "part": {"type": "string", "maxLength": 32}
            }, "required": ["id", "part"], "additionalProperties": false},
            "value": {"type": "object", "properties": {
                "name": {"type": "string"},
                "label": {"type": "string", "enum": [
                    "a,b", "say \"hi\"", "tab\there", "two\nlines", "cr\rlf", "crlf\r\n", "back\\slash",
                    "", "NULL", "\\N", " padded ", "日本語 🎓", "x"
                ]},
                "note": {"oneOf": [
                    {"type": "string", "const": "__dap_oversized_truncated__"},
                    {"type": "string"}
                ]},
                "small": {"type": "integer", "format": "int16"},
                "medium": {"type": "integer", "format": "int32"},
                "big": {"type": "integer", "format": "int64"},
                "ratio": {"type": "number", "format": "float64"},
                "flag": {"type": "boolean"},
                "created_at": {"type": "string", "format": "date-time"},
                "due_on": {"type": "string", "format": "date"},
                "uid": {"type": "string", "format": "uuid"},
                "ip": {"oneOf": [
                    {"type": "string", "format": "ipv4"},
                    {"type": "string", "format": "ipv6"}
                ]},
                "status": {"type": "integer", "enum": [200, 404, 500]},
                "settings": {"type": "object", "properties": {
                    "mode": {"type": "string", "enum": ["x", "y,z", "\"q\""]},
                    "limit": {"type": "integer", "format": "int32"},
                    "open": {"type": "boolean"},
                    "window": {"type": "object", "properties": {
                        "from": {"type": "string", "format": "date-time"},
                        "to": {"type": "string", "format": "date-time"}
                    }, "additionalProperties": false},
                    "ids": {"type": "array", "items": {"type": "integer", "format": "int32"}}
                }, "required": ["ids"], "additionalProperties": false},
                "bag": {"type": "object"},
                "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b,c", "\"d\"", ""]}},
                "points": {"type": "array", "items": {"type": "object", "properties": {
                    "x": {"type": "number"},
                    "label": {"type": "string"}
                }, "required": ["x"], "additionalProperties": false}}
            }, "required": ["name", "created_at", "tags"], "additionalProperties": false}
        }
    })
}

fn edge_table(rows: u64, rows_per_object: usize) -> FakeTable {
    FakeTable {
        rows_per_object: Some(rows_per_object),
        schema: Some(edge_schema()),
        ..FakeTable::new(NS, "edge_cases", rows)
    }
}

/// Every format, and for the tabular ones each mode: `(format, mode)` as the query body names
/// them.
const OUTPUTS: [(&str, Option<&str>); 6] = [
    ("jsonl", None),
    ("tsv", Some("expanded")),
    ("tsv", Some("condensed")),
    ("csv", Some("expanded")),
    ("csv", Some("condensed")),
    ("parquet", None),
];

/// A fresh table's snapshot: its current rows, all from the one commit `at`.
fn expected_snapshot(fake: &FakeDap, name: &str, at: &str) -> Vec<Expected> {
    let (namespace, table) = split(name);
    fake.current_rows(namespace, table)
        .into_iter()
        .map(|row| Expected {
            key: row["key"].as_object().unwrap().clone(),
            value: Some(row["value"].as_object().unwrap().clone()),
            action: None,
            ts: at.to_owned(),
        })
        .collect()
}

/// An incremental over one change round committed at `ts`: the keys and actions of its JSON
/// Lines result (checked against the counts of the round), with the current rows as values.
fn expected_incremental(
    fake: &FakeDap,
    name: &str,
    jsonl: &[Value],
    changes: Changes,
    ts: &str,
) -> Vec<Expected> {
    let (namespace, table) = split(name);
    let current: HashMap<String, Value> = fake
        .current_rows(namespace, table)
        .into_iter()
        .map(|row| (row["key"].to_string(), row["value"].clone()))
        .collect();
    let keyed = jsonl
        .iter()
        .map(|record| (vec![record["key"].to_string()], record))
        .collect();
    let expected: Vec<Expected> = last_per_key(keyed)
        .into_iter()
        .map(|record| {
            let action = record["meta"]["action"].as_str().unwrap().to_owned();
            let value = current.get(&record["key"].to_string());
            assert_eq!(value.is_some(), action == "U", "{record}");
            assert_eq!(record.get("value"), value);
            Expected {
                key: record["key"].as_object().unwrap().clone(),
                value: value.map(|v| v.as_object().unwrap().clone()),
                action: Some(action),
                ts: ts.to_owned(),
            }
        })
        .collect();
    let count = |action: &str| {
        expected
            .iter()
            .filter(|e| e.action.as_deref() == Some(action))
            .count() as u64
    };
    assert_eq!(count("U"), changes.updates + changes.inserts);
    assert_eq!(count("D"), changes.deletes + changes.inserted_then_deleted);
    expected
}

/// The columns the fake's latest schema of a table has, as `key.<name>` and `value.<name>`.
fn schema_columns(fake: &FakeDap, name: &str) -> Vec<String> {
    let (namespace, table) = split(name);
    let schema = fake.schema(namespace, table);
    ["key", "value"]
        .into_iter()
        .flat_map(|section| {
            schema["schema"]["properties"][section]["properties"]
                .as_object()
                .map(|properties| {
                    properties
                        .keys()
                        .map(|name| format!("{section}.{name}"))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .collect()
}

/// Reads a result of table `name` in any format and checks it against `expected`; also checks
/// the object names and content types.
async fn check_result(
    api: &Api,
    name: &str,
    job: &Value,
    (format, mode): (&str, Option<&str>),
    expected: &[Expected],
    incremental: bool,
    context: &str,
) {
    let format = Format::from_name(format).unwrap();
    let objects = api.download(job).await;
    assert!(!objects.is_empty());
    let context = format!("{context}, {} {mode:?}", format.name());
    for object in &objects {
        assert!(
            object.name.starts_with("part-")
                && object.name.ends_with(&format!(".{}", format.extension())),
            "{context}: {}",
            object.name
        );
        assert_eq!(object.content_type, format.content_type(), "{context}");
    }
    match format {
        Format::Jsonl => {
            let lines: Vec<(Vec<String>, Value)> = objects
                .iter()
                .flat_map(|object| {
                    gunzip(&object.bytes)
                        .lines()
                        .map(|line| serde_json::from_str::<Value>(line).unwrap())
                        .collect::<Vec<_>>()
                })
                .map(|line| {
                    let key = line["key"]
                        .as_object()
                        .unwrap()
                        .values()
                        .map(text_of)
                        .collect();
                    (key, line)
                })
                .collect();
            let lines = last_per_key(lines);
            assert_eq!(lines.len(), expected.len(), "{context}");
            for (line, expected) in lines.iter().zip(expected) {
                assert_eq!(
                    line["key"],
                    Value::Object(expected.key.clone()),
                    "{context}"
                );
                assert_eq!(
                    line.get("value"),
                    expected.value.clone().map(Value::Object).as_ref(),
                    "{context}"
                );
                assert_eq!(line["meta"]["ts"], expected.ts, "{context}");
                assert_eq!(
                    line["meta"]["action"].as_str(),
                    expected.action.as_deref(),
                    "{context}"
                );
            }
        }
        Format::Tsv | Format::Csv => {
            let mut header = None;
            let mut rows = Vec::new();
            for object in &objects {
                let text = gunzip(&object.bytes);
                let table = if format == Format::Tsv {
                    read_tsv(&text)
                } else {
                    read_csv(&text).await
                };
                // Every object has the same header row.
                assert_eq!(
                    header.get_or_insert_with(|| table.header.clone()),
                    &table.header
                );
                rows.extend(table.rows);
            }
            let header = header.unwrap();
            let table = TextTable { header, rows };
            check_text(&table, expected, incremental, &context);
            let columns = schema_columns(&api.fake, name);
            let data: Vec<&String> = table
                .header
                .iter()
                .filter(|h| !h.starts_with("meta."))
                .collect();
            if mode == Some("condensed") {
                assert_eq!(data, columns.iter().collect::<Vec<_>>(), "{context}");
            } else {
                for column in &columns {
                    assert!(
                        data.iter()
                            .any(|h| *h == column || h.starts_with(&format!("{column}."))),
                        "{context}: {column} has no column"
                    );
                }
            }
        }
        Format::Parquet => {
            let mut all = Vec::new();
            let mut schema = None;
            for object in &objects {
                let (file_schema, rows, _) = read_parquet(&object.bytes);
                assert_eq!(
                    schema.get_or_insert_with(|| file_schema.clone()),
                    &file_schema
                );
                all.extend(rows);
            }
            check_parquet(&schema.unwrap(), &all, expected, incremental, &context);
        }
    }
}

/// Runs a snapshot, a change round and an incremental of `name` (`namespace.table`) in each of
/// `outputs`, and checks each result against the fake's rows.
async fn check_every_output(
    api: &Api,
    name: &str,
    changes: Changes,
    outputs: &[(&str, Option<&str>)],
) {
    let mut jobs = Vec::new();
    for &(format, mode) in outputs {
        jobs.push(api.query(name, &body(format, mode, None)).await);
    }
    let at = jobs[0]["at"].as_str().unwrap().to_owned();
    assert!(jobs.iter().all(|job| job["at"] == at));
    let snapshot = expected_snapshot(&api.fake, name, &at);
    let context = format!("{name} snapshot");
    for (job, &output) in jobs.iter().zip(outputs) {
        check_result(api, name, job, output, &snapshot, false, &context).await;
    }

    let (namespace, table) = split(name);
    let ts = api
        .fake
        .advance(namespace, table, changes)
        .to_rfc3339_opts(SecondsFormat::Micros, true);
    // `since` is inclusive: a microsecond after the snapshot leaves out the rows it had.
    let since = after(DateTime::parse_from_rfc3339(&at).unwrap().to_utc());
    let jsonl = api.query(name, &body("jsonl", None, Some(&since))).await;
    let lines: Vec<Value> = api
        .download(&jsonl)
        .await
        .iter()
        .flat_map(|object| {
            gunzip(&object.bytes)
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect::<Vec<Value>>()
        })
        .collect();
    let incremental = expected_incremental(&api.fake, name, &lines, changes, &ts);
    let context = format!("{name} incremental");
    for &(format, mode) in outputs {
        let job = api.query(name, &body(format, mode, Some(&since))).await;
        check_result(
            api,
            name,
            &job,
            (format, mode),
            &incremental,
            true,
            &context,
        )
        .await;
    }
}

/// The `since` of an incremental that starts right after `commit`.
fn after(commit: DateTime<Utc>) -> Value {
    json!((commit + TimeDelta::microseconds(1)).to_rfc3339_opts(SecondsFormat::Micros, true))
}

fn round() -> Changes {
    Changes {
        updates: 10,
        inserts: 5,
        deletes: 4,
        inserted_then_deleted: 2,
    }
}

#[tokio::test]
async fn every_format_and_mode_reads_back_as_the_fakes_rows() {
    let api = start(vec![edge_table(60, 16)]).await;
    check_every_output(&api, "canvas.edge_cases", round(), &OUTPUTS).await;
}

#[tokio::test]
async fn every_fixture_table_reads_back_in_every_format() {
    let tables: Vec<FakeTable> = fixture_tables()
        .map(|(namespace, table)| FakeTable {
            rows_per_object: Some(3),
            ..FakeTable::new(namespace, table, 5)
        })
        .collect();
    let api = start(tables).await;
    let changes = Changes {
        updates: 2,
        inserts: 1,
        deletes: 1,
        inserted_then_deleted: 1,
    };
    // Every writer once (both text formats, both modes, Parquet) per table; the edge-case test
    // covers every combination.
    let outputs = [
        ("tsv", Some("expanded")),
        ("csv", Some("condensed")),
        ("parquet", None),
    ];
    let names: Vec<String> = fixture_tables()
        .map(|(namespace, table)| format!("{namespace}.{table}"))
        .collect();
    futures_util::stream::iter(&names)
        .for_each_concurrent(4, |name| check_every_output(&api, name, changes, &outputs))
        .await;
}

/// The header row of the first object of a TSV or CSV result.
async fn header(api: &Api, name: &str, body: &Value) -> Vec<String> {
    let job = api.query(name, body).await;
    let objects = api.download(&job).await;
    let text = gunzip(&objects[0].bytes);
    if body["format"] == "tsv" {
        read_tsv(&text).header
    } else {
        read_csv(&text).await.header
    }
}

#[tokio::test]
async fn headers_name_meta_key_and_value_fields_flattened_only_when_expanded() {
    let api = start(vec![edge_table(3, 10)]).await;
    let name = "canvas.edge_cases";
    let keys = ["key.id", "key.part"];
    let scalars = [
        "value.name",
        "value.label",
        "value.note",
        "value.small",
        "value.medium",
        "value.big",
        "value.ratio",
        "value.flag",
        "value.created_at",
        "value.due_on",
        "value.uid",
        "value.ip",
        "value.status",
    ];
    let expanded_settings = [
        "value.settings.mode",
        "value.settings.limit",
        "value.settings.open",
        "value.settings.window.from",
        "value.settings.window.to",
        "value.settings.ids",
    ];
    let rest = ["value.bag", "value.tags", "value.points"];
    let columns = |meta: &[&str], settings: &[&str]| -> Vec<String> {
        meta.iter()
            .chain(&keys)
            .chain(&scalars)
            .chain(settings)
            .chain(&rest)
            .map(|s| (*s).to_owned())
            .collect()
    };
    let since = after(api.fake.latest_commit(NS, "edge_cases"));
    for format in ["tsv", "csv"] {
        for (mode, settings) in [
            (None, &expanded_settings[..]),
            (Some("expanded"), &expanded_settings[..]),
            (Some("condensed"), &["value.settings"][..]),
        ] {
            assert_eq!(
                header(&api, name, &body(format, mode, None)).await,
                columns(&["meta.ts"], settings),
                "{format} {mode:?} snapshot"
            );
            assert_eq!(
                header(&api, name, &body(format, mode, Some(&since))).await,
                columns(&["meta.ts", "meta.action"], settings),
                "{format} {mode:?} incremental"
            );
        }
    }
    // An incremental with no changes still has its header.
    let job = api.query(name, &body("csv", None, Some(&since))).await;
    let objects = api.download(&job).await;
    let table = read_csv(&gunzip(&objects[0].bytes)).await;
    assert!(table.rows.is_empty());
    assert_eq!(
        table.header.len(),
        2 + keys.len() + scalars.len() + 6 + rest.len()
    );
}

#[tokio::test]
async fn parquet_columns_are_typed_and_nested_from_the_schema() {
    let api = start(vec![edge_table(20, 100)]).await;
    let name = "canvas.edge_cases";
    let since = after(api.fake.latest_commit(NS, "edge_cases"));
    let job = api.query(name, &body("parquet", None, Some(&since))).await;
    let (schema, rows, groups) = read_parquet(&api.download(&job).await[0].bytes);
    assert_eq!(
        (rows.len(), groups),
        (0, 0),
        "an empty incremental is a file without rows"
    );
    let mut lines = Vec::new();
    describe(&schema, "", &mut lines);
    let ts = "INT64 Timestamp(TimestampType { is_adjusted_to_u_t_c: true, unit: MICROS })";
    let int = |bits| format!("Integer(IntType {{ bit_width: {bits}, is_signed: true }})");
    let expected = [
        "meta: required group".to_owned(),
        format!("meta.ts: required {ts}"),
        "meta.action: required BYTE_ARRAY String".to_owned(),
        "key: required group".to_owned(),
        format!("key.id: required INT64 {}", int(64)),
        "key.part: required BYTE_ARRAY String".to_owned(),
        "value: optional group".to_owned(),
        "value.name: required BYTE_ARRAY String".to_owned(),
        "value.label: optional BYTE_ARRAY String".to_owned(),
        "value.note: optional BYTE_ARRAY String".to_owned(),
        format!("value.small: optional INT32 {}", int(16)),
        format!("value.medium: optional INT32 {}", int(32)),
        format!("value.big: optional INT64 {}", int(64)),
        "value.ratio: optional DOUBLE".to_owned(),
        "value.flag: optional BOOLEAN".to_owned(),
        format!("value.created_at: required {ts}"),
        "value.due_on: optional INT32 Date".to_owned(),
        "value.uid: optional BYTE_ARRAY String".to_owned(),
        "value.ip: optional BYTE_ARRAY String".to_owned(),
        format!("value.status: optional INT64 {}", int(64)),
        "value.settings: optional group".to_owned(),
        "value.settings.mode: optional BYTE_ARRAY String".to_owned(),
        format!("value.settings.limit: optional INT32 {}", int(32)),
        "value.settings.open: optional BOOLEAN".to_owned(),
        "value.settings.window: optional group".to_owned(),
        format!("value.settings.window.from: optional {ts}"),
        format!("value.settings.window.to: optional {ts}"),
        "value.settings.ids: required group List".to_owned(),
        "value.settings.ids.list: repeated group".to_owned(),
        format!(
            "value.settings.ids.list.element: optional INT32 {}",
            int(32)
        ),
        "value.bag: optional BYTE_ARRAY Json".to_owned(),
        "value.tags: required group List".to_owned(),
        "value.tags.list: repeated group".to_owned(),
        "value.tags.list.element: optional BYTE_ARRAY String".to_owned(),
        "value.points: optional group List".to_owned(),
        "value.points.list: repeated group".to_owned(),
        "value.points.list.element: optional group".to_owned(),
        "value.points.list.element.x: required DOUBLE".to_owned(),
        "value.points.list.element.label: optional BYTE_ARRAY String".to_owned(),
    ];
    assert_eq!(lines, expected);

    // A snapshot has no action, and its file says how it was compressed.
    let job = api
        .query(name, &body("parquet", Some("condensed"), None))
        .await;
    let bytes = &api.download(&job).await[0].bytes;
    let reader = SerializedFileReader::new(bytes.clone()).unwrap();
    let column = reader.metadata().row_group(0).column(0);
    assert_eq!(column.compression(), parquet::basic::Compression::SNAPPY);
    let (schema, rows, _) = read_parquet(bytes);
    assert_eq!(rows.len(), 20);
    let meta: Vec<&str> = schema.get_fields()[0]
        .get_fields()
        .iter()
        .map(|f| f.name())
        .collect();
    assert_eq!(meta, ["ts"]);
}

#[tokio::test]
async fn a_different_format_or_tabular_mode_is_a_different_query() {
    let api = start(vec![edge_table(5, 10)]).await;
    let name = "canvas.edge_cases";
    let mut ids = Vec::new();
    for (format, mode) in [
        ("jsonl", None),
        ("jsonl", Some("condensed")),
        ("tsv", None),
        ("tsv", Some("expanded")),
        ("tsv", Some("condensed")),
        ("csv", None),
        ("csv", Some("condensed")),
        ("parquet", None),
        ("parquet", Some("expanded")),
    ] {
        let job = api.query(name, &body(format, mode, None)).await;
        ids.push(job["id"].as_str().unwrap().to_owned());
    }
    // jsonl and parquet ignore the mode; tsv and csv default to expanded.
    let same = [(0, 1), (2, 3), (7, 8)];
    for i in 0..ids.len() {
        for j in i + 1..ids.len() {
            assert_eq!(
                ids[i] == ids[j],
                same.contains(&(i, j)),
                "queries {i} and {j}"
            );
        }
    }
    for bad in [
        json!({"format": "xlsx"}),
        json!({"format": "csv", "mode": "flat"}),
        json!({"format": "tsv", "mode": 1}),
        json!({"format": ["csv"]}),
    ] {
        let (status, error) = api.start_query(name, &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(error["error"]["type"], "ValidationError", "{bad}");
        assert!(error["error"]["location"]["line"].is_u64(), "{bad}");
    }
}

#[tokio::test]
async fn a_large_parquet_object_is_written_in_bounded_row_groups() {
    let schema = json!({"type": "object", "properties": {
        "key": {"type": "object", "properties": {"id": {"type": "integer", "format": "int64"}}, "required": ["id"]},
        "value": {"type": "object", "properties": {
            "n": {"type": "integer", "format": "int32"},
            "s": {"type": "string", "maxLength": 8},
            "at": {"type": "string", "format": "date-time"}
        }, "required": ["n"]}
    }});
    let rows = 40_000;
    let api = start(vec![FakeTable {
        rows_per_object: Some(rows as usize),
        schema: Some(schema),
        ..FakeTable::new(NS, "wide_enough", rows)
    }])
    .await;
    let name = "canvas.wide_enough";
    let job = api.query(name, &body("parquet", None, None)).await;
    let objects = api.download(&job).await;
    assert_eq!(objects.len(), 1);
    let (schema, got, groups) = read_parquet(&objects[0].bytes);
    assert!(groups >= 3, "{groups} row groups for {rows} rows");
    let expected = expected_snapshot(&api.fake, name, job["at"].as_str().unwrap());
    check_parquet(&schema, &got, &expected, false, "40,000 rows");
}

#[tokio::test]
async fn a_cut_parquet_download_does_not_read_as_a_file() {
    let api = start(vec![edge_table(30, 100)]).await;
    let job = api
        .query("canvas.edge_cases", &body("parquet", None, None))
        .await;
    let whole = api.download(&job).await.remove(0).bytes;
    api.fake
        .inject(Fault::CutAtRecordBoundary, Endpoint::Download, 1);
    let cut = api.download(&job).await.remove(0).bytes;
    assert!(cut.len() < whole.len() && cut[..] == whole[..cut.len()]);
    assert!(SerializedFileReader::new(cut).is_err());
}
