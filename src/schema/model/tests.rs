use serde_json::json;

use super::*;
use crate::schema::fixtures::{all_fixtures, fixture, text};

/// (name, type, nullable) of every column.
fn shape(schema: &TableSchema) -> Vec<(&str, ColumnType, bool)> {
    schema
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.ty.clone(), c.nullable))
        .collect()
}

fn column_of<'a>(schema: &'a TableSchema, name: &str) -> &'a Column {
    schema
        .column(name)
        .unwrap_or_else(|| panic!("{} has no column {name}", schema.table))
}

/// Columns come in the order of the parsed JSON maps: key first, then value.
fn expected_order(schema: &TableSchema) -> Vec<String> {
    let props = |part: &str| -> Vec<String> {
        schema.json["properties"][part]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    let mut names = props("key");
    names.extend(props("value"));
    names
}

#[test]
fn all_fixtures_parse() {
    let all = all_fixtures();
    assert_eq!(all.len(), 115);
    assert_eq!(all.iter().filter(|s| s.namespace == "canvas").count(), 113);
    for schema in &all {
        let names: Vec<String> = schema.columns.iter().map(|c| c.name.clone()).collect();
        assert_eq!(names, expected_order(schema), "{}", schema.table);
        assert!(schema.columns.iter().filter(|c| c.key).all(|c| !c.nullable));
        assert_eq!(schema.version, 1);
    }
}

#[test]
fn courses() {
    let s = fixture("canvas", "courses");
    assert_eq!(s.primary_key, ["id"]);
    assert_eq!(s.columns.len(), 50);
    assert_eq!(
        s.comment.as_deref(),
        Some("Stores attributes for a course.")
    );
    let id = column_of(&s, "id");
    assert_eq!(
        (id.ty.clone(), id.nullable, id.key),
        (ColumnType::BigInt, false, true)
    );
    assert_eq!(
        id.comment.as_deref(),
        Some("The unique identifier for the course.")
    );
    let expect = [
        ("storage_quota", ColumnType::BigInt, true),
        ("integration_id", text(Some(255), false), true),
        ("created_at", ColumnType::Timestamp, false),
        ("is_public", ColumnType::Boolean, true),
        ("syllabus_body", text(None, true), true),
        ("allow_student_organized_groups", ColumnType::Boolean, false),
        ("settings", ColumnType::Json, true),
        ("time_zone", text(Some(255), false), true),
    ];
    for (name, ty, nullable) in expect {
        let c = column_of(&s, name);
        assert_eq!((&c.ty, c.nullable, c.key), (&ty, nullable, false), "{name}");
    }
    let states = [
        "created",
        "claimed",
        "available",
        "completed",
        "deleted",
        "__dap_unspecified__",
    ];
    assert_eq!(
        column_of(&s, "workflow_state").ty,
        ColumnType::Enum {
            values: states.map(String::from).to_vec()
        }
    );
    assert!(!column_of(&s, "workflow_state").nullable);
}

#[test]
fn web_logs() {
    let s = fixture("canvas_logs", "web_logs");
    let status = column_of(&s, "http_status");
    let ColumnType::IntEnum { values } = &status.ty else {
        panic!("{:?}", status.ty)
    };
    assert_eq!((values.len(), values[0], values[61]), (62, 100, 511));
    assert_eq!(column_of(&s, "remote_ip").ty, ColumnType::IpAddress);
    assert_eq!(column_of(&s, "url").ty, text(None, false));
    assert_eq!(column_of(&s, "user_agent_id").ty, ColumnType::Int);
    let id = column_of(&s, "id");
    assert!(id.key && !id.nullable);
    let ColumnType::Enum { values } = &column_of(&s, "web_application_controller").ty else {
        panic!()
    };
    assert_eq!(values.len(), 271);
}

#[test]
fn enrollment_states() {
    let s = fixture("canvas", "enrollment_states");
    assert_eq!(s.primary_key, ["enrollment_id"]);
    let mut got = shape(&s);
    got.sort_by_key(|(name, ..)| *name);
    let ColumnType::Enum { values } = &column_of(&s, "state").ty else {
        panic!()
    };
    assert_eq!(values[0], "__dap_unspecified__");
    let state = ColumnType::Enum {
        values: values.clone(),
    };
    assert_eq!(
        got,
        [
            ("access_is_current", ColumnType::Boolean, false),
            ("enrollment_id", ColumnType::BigInt, false),
            ("restricted_access", ColumnType::Boolean, false),
            ("state", state, true),
            ("state_is_current", ColumnType::Boolean, false),
            ("state_started_at", ColumnType::Timestamp, true),
            ("state_valid_until", ColumnType::Timestamp, true),
            ("updated_at", ColumnType::Timestamp, true),
        ]
    );
    assert_eq!(s.columns[0].name, "enrollment_id");
}

#[test]
fn assignments() {
    let s = fixture("canvas", "assignments");
    let types = column_of(&s, "submission_types");
    let ColumnType::Array { item } = &types.ty else {
        panic!("{:?}", types.ty)
    };
    let ColumnType::Enum { values } = item.as_ref() else {
        panic!()
    };
    assert_eq!(values.len(), 15);
    assert_eq!(column_of(&s, "turnitin_settings").ty, ColumnType::Json);
    assert_eq!(column_of(&s, "points_possible").ty, ColumnType::Double);
    assert_eq!(column_of(&s, "description").ty, text(None, true));
}

#[test]
fn developer_keys() {
    let s = fixture("canvas", "developer_keys");
    let uris = column_of(&s, "redirect_uris");
    assert_eq!(
        uris.ty,
        ColumnType::Array {
            item: Box::new(text(Some(255), false))
        }
    );
    assert!(!uris.nullable);
    assert_eq!(column_of(&s, "access_token_count").ty, ColumnType::Int);
    assert_eq!(column_of(&s, "public_jwk").ty, text(None, true));
    assert!(column_of(&s, "name").nullable);
    let comment = "A table representing a set of credentials used for API access.\n\nContains both normal API keys and the LTI keys used in LTI 1.3 apps.";
    assert_eq!(s.comment.as_deref(), Some(comment));
}

#[test]
fn quiz_questions_and_context_external_tools() {
    let q = fixture("canvas", "quiz_questions");
    assert_eq!(column_of(&q, "question_data").ty, ColumnType::Json);
    let t = fixture("canvas", "context_external_tools");
    let settings = column_of(&t, "settings");
    assert_eq!(settings.ty, ColumnType::Json);
    assert!(settings.nullable);
}

#[test]
fn numbers_with_multiple_of_are_doubles() {
    let found: Vec<_> = all_fixtures()
        .into_iter()
        .flat_map(|s| s.columns)
        .filter(|c| c.ty == ColumnType::Double)
        .collect();
    assert_eq!(found.len(), 47 + 4);
}

fn parse(value: Value) -> Result<TableSchema, SchemaError> {
    TableSchema::from_json_schema("ns", "t", 3, &value)
}

fn one_column(prop: Value, required: bool) -> Result<Column, SchemaError> {
    let required = if required { json!(["c"]) } else { json!([]) };
    let schema = json!({"type": "object", "properties": {
        "key": {"type": "object", "properties": {"id": {"type": "integer", "format": "int64"}}},
        "value": {"type": "object", "properties": {"c": prop}, "required": required},
    }});
    parse(schema).map(|s| s.columns[1].clone())
}

#[test]
fn property_types() {
    let cases = [
        (
            json!({"type": "integer", "format": "int16"}),
            ColumnType::SmallInt,
        ),
        (json!({"type": "integer"}), ColumnType::BigInt),
        (json!({"type": "number"}), ColumnType::Double),
        (
            json!({"type": "string", "format": "date"}),
            ColumnType::Date,
        ),
        (
            json!({"type": "string", "format": "uuid"}),
            ColumnType::Uuid,
        ),
        (
            json!({"type": "string", "enum": ["only"]}),
            ColumnType::Enum {
                values: vec!["only".into()],
            },
        ),
        (
            json!({"type": "string", "enum": ["a", "b", "a"]}),
            ColumnType::Enum {
                values: vec!["a".into(), "b".into()],
            },
        ),
        (
            json!({"oneOf": [{"type": "string", "const": TRUNCATION_PLACEHOLDER}, {"type": "string", "maxLength": 10}]}),
            text(Some(10), true),
        ),
        (
            json!({"oneOf": [{"type": "string", "format": "date-time"}, {"const": TRUNCATION_PLACEHOLDER}]}),
            text(None, true),
        ),
        (
            json!({"oneOf": [{"const": TRUNCATION_PLACEHOLDER}, {"type": "string", "enum": ["x"]}]}),
            ColumnType::Enum {
                values: vec!["x".into(), TRUNCATION_PLACEHOLDER.into()],
            },
        ),
        (
            json!({"oneOf": [{"type": "string", "format": "ipv6"}]}),
            ColumnType::IpAddress,
        ),
        (
            json!({"type": "array", "items": {"type": "integer", "format": "int32"}}),
            ColumnType::Array {
                item: Box::new(ColumnType::Int),
            },
        ),
        (
            json!({"type": "array", "items": {"type": "object"}}),
            ColumnType::Json,
        ),
        (
            json!({"type": "array", "items": {"type": "array", "items": {"type": "boolean"}}}),
            ColumnType::Json,
        ),
        (json!({"type": "array"}), ColumnType::Json),
        (json!({"type": "object"}), ColumnType::Json),
    ];
    for (prop, ty) in cases {
        let column = one_column(prop.clone(), true).unwrap_or_else(|e| panic!("{prop}: {e}"));
        assert_eq!(column.ty, ty, "{prop}");
        assert!(!column.nullable);
    }
}

#[test]
fn type_list_with_null_is_nullable() {
    let column = one_column(json!({"type": ["string", "null"], "maxLength": 4}), true).unwrap();
    assert_eq!((column.ty, column.nullable), (text(Some(4), false), true));
    let column = one_column(
        json!({"type": ["null", "string"], "enum": ["a", null]}),
        true,
    )
    .unwrap();
    assert_eq!(
        (column.ty, column.nullable),
        (
            ColumnType::Enum {
                values: vec!["a".into()]
            },
            true
        )
    );
}

#[test]
fn comments_join_title_and_description() {
    let column = one_column(
        json!({"type": "boolean", "title": "T", "description": "D"}),
        false,
    )
    .unwrap();
    assert_eq!(column.comment.as_deref(), Some("T\n\nD"));
    let column = one_column(json!({"type": "boolean", "description": "D"}), false).unwrap();
    assert_eq!(column.comment.as_deref(), Some("D"));
    assert_eq!(
        one_column(json!({"type": "boolean"}), false)
            .unwrap()
            .comment,
        None
    );
}

#[test]
fn unsupported_properties_name_the_column() {
    let cases = [
        json!({"type": "string", "format": "email"}),
        json!({"type": "integer", "format": "uint64"}),
        json!({"type": "number", "format": "decimal"}),
        json!({"type": "null"}),
        json!({"type": ["string", "integer"]}),
        json!({"type": 5}),
        json!({"description": "no type"}),
        json!({"type": "string", "maxLength": -1}),
        json!({"type": "string", "maxLength": "9"}),
        json!({"type": "string", "enum": []}),
        json!({"type": "string", "enum": ["a", 1]}),
        json!({"type": "integer", "enum": [1.5]}),
        json!({"type": "boolean", "enum": [true]}),
        json!({"type": "string", "const": "x"}),
        json!({"oneOf": [{"type": "string"}, {"type": "integer"}]}),
        json!({"oneOf": [{"const": TRUNCATION_PLACEHOLDER}, {"type": "integer"}]}),
        json!({"oneOf": []}),
        json!({"oneOf": "x"}),
        json!({"type": "array", "items": {"type": "string", "format": "email"}}),
        json!("string"),
    ];
    for prop in cases {
        match one_column(prop.clone(), false) {
            Err(SchemaError::UnsupportedType {
                namespace,
                table,
                column,
                ..
            }) => {
                assert_eq!(
                    (namespace.as_str(), table.as_str(), column.as_str()),
                    ("ns", "t", "c"),
                    "{prop}"
                );
            }
            other => panic!("{prop}: {other:?}"),
        }
    }
}

#[test]
fn malformed_tables() {
    let id = json!({"id": {"type": "integer"}});
    let cases = [
        json!(null),
        json!([1, 2]),
        json!({"type": "object"}),
        json!({"properties": {"value": {"properties": id}}}),
        json!({"properties": {"key": {"properties": {}}}}),
        json!({"properties": {"key": {"type": "object"}}}),
        json!({"properties": {"key": {"properties": id}, "value": {"properties": id}}}),
        json!({"properties": {"key": {"properties": id}, "value": 3}}),
        json!({"properties": {"key": {"properties": id, "required": "id"}}}),
        json!({"properties": {"key": {"properties": {"": {"type": "integer"}}}}}),
    ];
    for schema in cases {
        assert!(
            matches!(parse(schema.clone()), Err(SchemaError::Malformed { .. })),
            "{schema}"
        );
    }
    let json_key = json!({"properties": {"key": {"properties": {"k": {"type": "object"}}}}});
    assert!(
        matches!(parse(json_key), Err(SchemaError::UnsupportedType { column, .. }) if column == "k")
    );
    let err = TableSchema::from_envelope("ns", "t", &json!({"schema": {}})).unwrap_err();
    assert!(err.to_string().contains("ns.t"), "{err}");
}

#[test]
fn composite_keys_and_key_only_tables() {
    let schema = json!({"properties": {"key": {"properties": {
        "a": {"type": "integer", "format": "int32"},
        "b": {"type": "string", "maxLength": 8},
    }}}});
    let s = parse(schema).unwrap();
    assert_eq!(s.primary_key, ["a", "b"]);
    assert!(s.columns.iter().all(|c| c.key && !c.nullable));
    assert_eq!(s.comment, None);
}

#[test]
fn description_json_drops_meta() {
    let s = fixture("canvas", "courses");
    let description = s.description_json();
    assert!(description["properties"].get("meta").is_none());
    assert_eq!(description["required"], json!(["key"]));
    assert_eq!(
        description["properties"]["key"],
        s.json["properties"]["key"]
    );
    let again = TableSchema::from_json_schema("canvas", "courses", 1, &description).unwrap();
    assert_eq!(again.columns, s.columns);
    assert_eq!(again.description_json(), description);
}

/// A tiny deterministic generator of arbitrary JSON, biased towards schema-like shapes.
fn arbitrary(rng: &mut fastrand::Rng, depth: u32) -> Value {
    const WORDS: [&str; 12] = [
        "type",
        "properties",
        "key",
        "value",
        "oneOf",
        "enum",
        "items",
        "format",
        "required",
        "string",
        "integer",
        "const",
    ];
    let word = |rng: &mut fastrand::Rng| WORDS[rng.usize(..WORDS.len())].to_owned();
    match if depth == 0 { rng.u8(..4) } else { rng.u8(..7) } {
        0 => Value::Null,
        1 => json!(rng.i64(..)),
        2 => Value::String(word(rng)),
        3 => json!(rng.bool()),
        4 => Value::Array(
            (0..rng.usize(..4))
                .map(|_| arbitrary(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.usize(..5))
                .map(|_| (word(rng), arbitrary(rng, depth - 1)))
                .collect(),
        ),
    }
}

/// Replaces one random node of `value` by `replacement`.
fn mutate(value: &mut Value, rng: &mut fastrand::Rng, replacement: Value) {
    let children: Vec<&mut Value> = match value {
        Value::Object(map) => map.values_mut().collect(),
        Value::Array(items) => items.iter_mut().collect(),
        _ => Vec::new(),
    };
    if children.is_empty() || rng.u8(..4) == 0 {
        *value = replacement;
    } else {
        let n = rng.usize(..children.len());
        if let Some(child) = children.into_iter().nth(n) {
            mutate(child, rng, replacement);
        }
    }
}

#[test]
fn arbitrary_json_is_an_error_not_a_panic() {
    let mut rng = fastrand::Rng::with_seed(7);
    let base: Value = serde_json::from_str(&crate::schema::fixtures::fixture_text(
        "canvas",
        "assignments",
    ))
    .unwrap();
    let (mut ok, mut failed) = (0, 0);
    for _ in 0..3000 {
        let random = arbitrary(&mut rng, 5);
        let mut mutated = base.clone();
        let replacement = arbitrary(&mut rng, 3);
        mutate(&mut mutated, &mut rng, replacement);
        for candidate in [&random, &mutated, &mutated["schema"]] {
            match TableSchema::from_envelope("ns", "t", candidate) {
                Ok(_) => ok += 1,
                Err(_) => failed += 1,
            }
            let _ = TableSchema::from_json_schema("ns", "t", 1, candidate);
        }
    }
    assert!(ok > 0 && failed > 0, "ok {ok}, failed {failed}");
}
