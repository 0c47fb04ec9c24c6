use super::*;
use crate::config::Dialect;
use crate::schema::TableSchema;

fn decoder(table: &str, validate: bool, deletes: bool) -> RowDecoder {
    let text = std::fs::read_to_string(format!(
        "{}/tests/fixtures/schemas/canvas/{table}.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let schema =
        TableSchema::from_envelope("canvas", table, &serde_json::from_str(&text).unwrap()).unwrap();
    RowDecoder::new(
        Arc::new(TablePlan::new(Dialect::Postgres, schema)),
        validate,
        deletes,
    )
    .unwrap()
}

const COURSE: &str = r#""created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00.123456Z", "workflow_state": "available",
        "account_id": 1, "allow_student_organized_groups": true, "enrollment_term_id": 1, "template": false,
        "homeroom_course": false, "sync_enrollments_from_homeroom": false"#;

fn course(key: &str, extra: &str) -> String {
    format!(
        r#"{{"key": {key}, "value": {{{COURSE}{extra}}}, "meta": {{"ts": "2024-01-01T00:00:00Z", "action": "U"}}}}"#
    )
}

fn reason(decoded: Decoded) -> String {
    match decoded {
        Decoded::Rejected(reject) => reject.reason,
        other => panic!("expected a reject, got {other:?}"),
    }
}

#[test]
fn a_record_becomes_a_row_in_column_order() {
    let decoder = decoder("courses", true, true);
    let line = course(
        r#"{"id": 7}"#,
        r#", "syllabus_body": "__dap_oversized_truncated__", "name": "Caf\u00e9 \"1\"""#,
    );
    let Decoded::Upsert(row) = decoder.decode_line(line.as_bytes()).unwrap() else {
        panic!("not an upsert")
    };
    let plan = &decoder.plan;
    assert_eq!(row.len(), plan.columns.names.len());
    assert_eq!(row[0], Cell::Int(7));
    let at = |name: &str| {
        &row[plan
            .schema
            .columns
            .iter()
            .position(|c| c.name == name)
            .unwrap()]
    };
    assert_eq!(
        at("syllabus_body"),
        &Cell::Text("__dap_oversized_truncated__".into())
    );
    assert_eq!(at("name"), &Cell::Text("Café \"1\"".into()));
    assert_eq!(at("workflow_state"), &Cell::Text("available".into()));
    assert_eq!(
        at("storage_quota"),
        &Cell::Null,
        "an absent property is NULL"
    );
}

#[test]
fn deletes_carry_the_key_only_and_are_refused_in_snapshots() {
    let line = br#"{"key": {"id": 3}, "meta": {"ts": "2024-01-01T00:00:00Z", "action": "D"}}"#;
    assert_eq!(
        decoder("courses", true, true).decode_line(line).unwrap(),
        Decoded::Delete(vec![Cell::Int(3)])
    );
    assert!(
        reason(decoder("courses", true, false).decode_line(line).unwrap())
            .contains("delete inside a snapshot")
    );
}

#[test]
fn bad_records_are_rejected_with_a_reason_and_their_key() {
    let decoder = decoder("courses", true, true);
    let wrong_key = decoder
        .decode_line(course(r#"{"id": "seven"}"#, "").as_bytes())
        .unwrap();
    let Decoded::Rejected(reject) = wrong_key else {
        panic!("not rejected")
    };
    assert_eq!(reject.key.as_deref(), Some(r#"{"id": "seven"}"#));
    assert!(
        reject.reason.contains("column `id` expected an integer"),
        "{}",
        reject.reason
    );
    assert!(
        !reject.reason.contains("seven"),
        "row contents stay out of reasons"
    );

    let unknown = decoder
        .decode_line(course(r#"{"id": 1}"#, r#", "surprise": 1"#).as_bytes())
        .unwrap();
    assert!(
        reason(unknown).contains("value property `surprise` that schema version 1 does not define")
    );

    let missing = br#"{"key": {"id": 1}, "value": {}}"#;
    assert!(reason(decoder.decode_line(missing).unwrap()).contains("NOT NULL"));

    let bad_enum = decoder
        .decode_line(
            course(r#"{"id": 1}"#, "")
                .replace("available", "archived")
                .as_bytes(),
        )
        .unwrap();
    assert!(reason(bad_enum).contains("not one of the enum's values"));

    assert!(
        decoder
            .decode_line(b"{\"key\": {\"id\": 1}, \"value\": {\"cut")
            .unwrap_err()
            .contains("not valid JSON")
    );
    assert!(
        decoder
            .decode_line(br#"{"value": {}}"#)
            .unwrap_err()
            .contains("no `key`")
    );
    assert!(
        decoder
            .decode_line(b"{\"key\": {\"id\": 1}, \"value\": {\"name\": \"\xff\"}}")
            .unwrap_err()
            .contains("not UTF-8")
    );
}

#[test]
fn schema_constraints_beyond_the_type_are_checked_by_jsonschema() {
    // submissions.points_deducted has exclusiveMaximum 10000.
    let text = |points: &str| {
        format!(
            r#"{{"key": {{"id": 1}}, "value": {{"points_deducted": {points}, "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
                "workflow_state": "submitted", "assignment_id": 1, "user_id": 1, "attempt": 1, "excused": false, "graded_anonymously": false,
                "late_policy_status": "none", "processed": false, "grade_matches_current_submission": true, "cached_quiz_lti": false,
                "redo_request": false, "submission_comments_count": 0, "seconds_late_override": 0, "course_id": 1, "extra_attempts": 0,
                "anonymous_id": "x", "cached_tardiness": "late"}}}}"#
        )
    };
    let checked = decoder("submissions", true, false);
    let unchecked = decoder("submissions", false, false);
    let too_big = text("20000");
    if let Decoded::Rejected(reject) = unchecked.decode_line(too_big.as_bytes()).unwrap() {
        panic!("only the schema check refuses this: {}", reject.reason);
    }
    assert!(
        reason(checked.decode_line(too_big.as_bytes()).unwrap())
            .contains("column `points_deducted` fails schema validation")
    );
}
