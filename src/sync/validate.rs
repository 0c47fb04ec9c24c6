//! Record validation against the table's JSON schema, with the jsonschema crate.

use serde_json::{Map, Value};

use crate::dap::Record;

/// A compiled schema that checks records.
#[derive(Debug)]
pub struct RecordValidator {
    validator: jsonschema::Validator,
}

impl RecordValidator {
    /// Compiles the table's schema (the `schema` object of the envelope).
    ///
    /// DAP writes its truncation placeholder as `oneOf: [{"const": "__dap_oversized_truncated__"},
    /// {"type": "string"}]`, which the placeholder itself matches twice — strictly invalid under
    /// `oneOf`. DAP means "either", so every `oneOf` is read as `anyOf`.
    pub fn new(schema: &Value) -> Result<Self, String> {
        let relaxed = one_of_as_any_of(schema.clone());
        let validator = jsonschema::validator_for(&relaxed)
            .map_err(|e| format!("the table schema does not compile: {}", e.masked()))?;
        Ok(Self { validator })
    }

    /// Checks a record's key and value; on failure returns a reason that names the property but
    /// not its value (row contents stay out of logs).
    ///
    /// The record's maps are moved into a JSON object for the check and moved back afterwards.
    pub fn check(&self, record: &mut Record) -> Result<(), String> {
        let mut object = Map::new();
        object.insert("key".into(), Value::Object(std::mem::take(&mut record.key)));
        if !record.value.is_empty() {
            object.insert(
                "value".into(),
                Value::Object(std::mem::take(&mut record.value)),
            );
        }
        let instance = Value::Object(object);
        let result = match self.validator.validate(&instance) {
            Ok(()) => Ok(()),
            Err(error) => Err(format!(
                "fails schema validation at {}: {}",
                error.instance_path(),
                error.masked()
            )),
        };
        let Value::Object(mut object) = instance else {
            unreachable!("built as an object")
        };
        if let Some(Value::Object(key)) = object.remove("key") {
            record.key = key;
        }
        if let Some(Value::Object(value)) = object.remove("value") {
            record.value = value;
        }
        result
    }
}

fn one_of_as_any_of(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    (
                        if k == "oneOf" { "anyOf".to_owned() } else { k },
                        one_of_as_any_of(v),
                    )
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(one_of_as_any_of).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dap::Action;
    use serde_json::json;

    fn record(key: Value, value: Value) -> Record {
        Record {
            key: key.as_object().cloned().unwrap_or_default(),
            value: value.as_object().cloned().unwrap_or_default(),
            ts: None,
            action: Action::Upsert,
            line: String::new(),
        }
    }

    #[test]
    fn the_truncation_placeholder_is_valid_and_bad_records_are_not() {
        let envelope: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/schemas/canvas/courses.json"
        ))
        .unwrap();
        let validator = RecordValidator::new(&envelope["schema"]).unwrap();
        let required = json!({
            "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z", "workflow_state": "available",
            "account_id": 1, "allow_student_organized_groups": true, "enrollment_term_id": 1, "template": false,
            "homeroom_course": false, "sync_enrollments_from_homeroom": false
        });
        let mut good = record(json!({"id": 1}), required.clone());
        good.value
            .insert("syllabus_body".into(), json!("__dap_oversized_truncated__"));
        assert_eq!(validator.check(&mut good), Ok(()));
        assert_eq!(good.key["id"], json!(1), "the maps are put back");
        assert_eq!(
            good.value["syllabus_body"],
            json!("__dap_oversized_truncated__")
        );

        let mut wrong_type = record(json!({"id": "one"}), required.clone());
        let reason = validator.check(&mut wrong_type).unwrap_err();
        assert!(reason.contains("/key/id"), "{reason}");
        assert!(
            !reason.contains("one"),
            "row contents must not leak into reasons: {reason}"
        );

        let mut unknown = record(json!({"id": 2}), required);
        unknown.value.insert("surprise".into(), json!(1));
        assert!(validator.check(&mut unknown).is_err());
    }
}
