use super::*;
use crate::fake::fixture::{fixture_envelope, fixture_tables};
use serde_json::json;

/// DAP's truncation `oneOf` matches the placeholder in both branches, so validation reads
/// every `oneOf` as `anyOf`.
fn one_of_as_any_of(schema: &Value) -> Value {
    match schema {
        Value::Object(object) => Value::Object(
            object
                .iter()
                .map(|(k, v)| {
                    (
                        if k == "oneOf" {
                            "anyOf".to_owned()
                        } else {
                            k.clone()
                        },
                        one_of_as_any_of(v),
                    )
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(one_of_as_any_of).collect()),
        other => other.clone(),
    }
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(&one_of_as_any_of(schema))
        .unwrap()
}

fn record(shape: &RowShape, index: u64, rng: &mut Rng) -> Value {
    let ts = "2026-01-01T10:00:00.123456Z";
    json!({"key": shape.key(7, index), "value": shape.value(rng), "meta": {"ts": ts, "action": "U"}})
}

#[test]
fn rows_of_every_fixture_table_validate_against_its_schema() {
    for (namespace, table) in fixture_tables() {
        let (_, schema) = fixture_envelope(namespace, table).unwrap();
        let shape = RowShape::compile(&schema).unwrap();
        let validator = validator(&schema);
        let mut rng = Rng::with_seed(text_hash(table));
        for index in 0..150 {
            let record = record(&shape, index, &mut rng);
            let errors: Vec<String> = validator
                .iter_errors(&record)
                .map(|e| e.to_string())
                .collect();
            assert!(
                errors.is_empty(),
                "{namespace}.{table}: {errors:?} in {record}"
            );
        }
    }
}

#[test]
fn the_validator_would_catch_bad_values() {
    let (_, schema) = fixture_envelope("canvas", "courses").unwrap();
    let shape = RowShape::compile(&schema).unwrap();
    let validator = validator(&schema);
    let mut rng = Rng::with_seed(5);
    let good = record(&shape, 1, &mut rng);
    assert!(validator.is_valid(&good));
    for (column, bad) in [
        ("created_at", json!("yesterday")),
        ("course_code", json!("x".repeat(256))),
        ("workflow_state", json!("gone")),
        ("storage_quota", json!(1.5)),
    ] {
        let mut record = good.clone();
        record["value"][column] = bad;
        assert!(!validator.is_valid(&record), "{column}");
    }
    let mut missing = good.clone();
    missing["value"]
        .as_object_mut()
        .unwrap()
        .remove("created_at");
    assert!(!validator.is_valid(&missing));
}

#[test]
fn values_cover_the_interesting_cases() {
    let (_, schema) = fixture_envelope("canvas", "courses").unwrap();
    let shape = RowShape::compile(&schema).unwrap();
    let mut rng = Rng::with_seed(1);
    let rows: Vec<Map<String, Value>> = (0..2000).map(|_| shape.value(&mut rng)).collect();
    let all_text: String = rows
        .iter()
        .map(|row| Value::Object(row.clone()).to_string())
        .collect();
    for needle in [
        "日本語",
        "🎓",
        "\\\"quoted\\\"",
        "back\\\\slash",
        "\\t",
        "\\n",
        "__dap_oversized_truncated__",
    ] {
        assert!(all_text.contains(needle), "no {needle}");
    }
    // Required columns always present; nullable ones sometimes left out.
    assert!(
        rows.iter()
            .all(|row| row.contains_key("workflow_state") && row.contains_key("created_at"))
    );
    assert!(rows.iter().any(|row| !row.contains_key("sis_source_id")));
    assert!(rows.iter().any(|row| row.contains_key("sis_source_id")));
    let storage: Vec<i64> = rows
        .iter()
        .filter_map(|row| row.get("storage_quota")?.as_i64())
        .collect();
    assert!(storage.contains(&i64::MIN) && storage.contains(&i64::MAX));
    assert!(
        rows.iter()
            .any(|row| row.get("settings").is_some_and(Value::is_object))
    );
    let micros = rows
        .iter()
        .filter_map(|row| row.get("created_at")?.as_str())
        .filter(|t| t.len() == 27);
    assert!(micros.count() > 0);
}

#[test]
fn web_logs_have_both_address_families_and_integer_enums() {
    let (_, schema) = fixture_envelope("canvas_logs", "web_logs").unwrap();
    let shape = RowShape::compile(&schema).unwrap();
    let mut rng = Rng::with_seed(2);
    let rows: Vec<Map<String, Value>> = (0..500).map(|_| shape.value(&mut rng)).collect();
    let ips: Vec<&str> = rows
        .iter()
        .filter_map(|row| row.get("remote_ip")?.as_str())
        .collect();
    assert!(ips.iter().any(|ip| ip.parse::<Ipv4Addr>().is_ok()));
    assert!(ips.iter().any(|ip| ip.parse::<Ipv6Addr>().is_ok()));
    assert!(
        rows.iter()
            .all(|row| row.get("http_status").is_some_and(Value::is_u64))
    );
}

#[test]
fn multiples_of_a_hundredth_print_exactly() {
    let range = NumberRange {
        min: Some((-1000.0, true)),
        max: Some((1000.0, true)),
        multiple_of: Some(0.01),
    };
    let mut rng = Rng::with_seed(3);
    for _ in 0..1000 {
        let value = range.generate(&mut rng);
        assert!(value > -1000.0 && value < 1000.0);
        let printed = Value::from(value).to_string();
        let decimals = printed
            .split_once('.')
            .map_or(0, |(_, fraction)| fraction.len());
        assert!(decimals <= 2, "{printed}");
    }
}

#[test]
fn keys_follow_the_index_and_respect_composite_and_uuid_keys() {
    let schema = json!({"properties": {
        "key": {"type": "object", "properties": {
            "a": {"type": "integer", "format": "int32"},
            "b": {"type": "string", "format": "uuid"},
            "c": {"type": "string", "maxLength": 4}
        }},
        "value": {"type": "object", "properties": {}}
    }});
    let shape = RowShape::compile(&schema).unwrap();
    let key = shape.key(9, 41);
    assert_eq!(key["a"], 42);
    assert_eq!(key["c"], "41");
    let uuids: std::collections::HashSet<String> = (0..1000)
        .map(|i| shape.key(9, i)["b"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(uuids.len(), 1000);
    assert!(uuids.iter().all(|u| u.parse::<uuid::Uuid>().is_ok()));
    assert!(RowShape::compile(&json!({"properties": {}})).is_none());
}

#[test]
fn refs_arrays_of_objects_and_free_form_objects_generate_valid_values() {
    let schema = json!({
        "type": "object",
        "$defs": {"point": {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"], "additionalProperties": false}},
        "properties": {
            "key": {"type": "object", "properties": {"id": {"type": "integer", "format": "int16"}}, "required": ["id"], "additionalProperties": false},
            "value": {"type": "object", "additionalProperties": false, "properties": {
                "points": {"type": "array", "items": {"$ref": "#/$defs/point"}},
                "bag": {"type": "object"},
                "maybe": {"type": ["string", "null"], "maxLength": 3},
                "empty": {"type": "object", "properties": {}, "additionalProperties": false},
                "anything": {}
            }, "required": ["points", "bag", "maybe", "empty", "anything"]}
        }
    });
    let shape = RowShape::compile(&schema).unwrap();
    let validator = validator(&schema);
    let mut rng = Rng::with_seed(4);
    for index in [0, 1, 40_000, 70_000] {
        let record = json!({"key": shape.key(1, index), "value": shape.value(&mut rng)});
        assert!(validator.is_valid(&record), "{record}");
    }
    assert_eq!(shape.key(1, 40_000)["id"], 40_001 - 65_536);
}
