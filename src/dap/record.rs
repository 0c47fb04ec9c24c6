//! Records of a query result, decoded from JSON Lines.

use serde_json::{Map, Value};

/// What a record does to its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Insert or update (`U`, and every snapshot record).
    Upsert,
    /// Hard delete (`D`): the record has a key and no value.
    Delete,
}

/// One decoded line of a query result.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The primary-key properties.
    pub key: Map<String, Value>,
    /// Every other property; a missing property means NULL. Empty for deletes.
    pub value: Map<String, Value>,
    /// `meta.ts`: the commit time in the lake, as sent.
    pub ts: Option<String>,
    /// What the record does to its row (`meta.action`; snapshots send none: an upsert).
    pub action: Action,
    /// The line as received (without its newline), kept for the reject table.
    pub line: String,
}

/// A line that is not a well-formed record (bad JSON, no `key`, unknown action, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedLine {
    /// The object the line came from.
    pub object_id: String,
    /// The line as received (lossily decoded if it was not UTF-8).
    pub line: String,
    /// Why the line is not a record.
    pub reason: String,
}

/// Turns the lines of result objects into items. It runs on the download tasks, so decoding is
/// spread over the objects being downloaded; the default, [`RecordDecoder`], makes [`Record`]s.
pub trait LineDecoder: std::fmt::Debug + Send + Sync + 'static {
    /// What one line becomes.
    type Item: Send + 'static;

    /// Decodes one line (without its line ending) of the object `object_id`.
    fn decode(&self, object_id: &str, line: &[u8]) -> Result<Self::Item, MalformedLine>;
}

/// Decodes lines into [`Record`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordDecoder;

impl LineDecoder for RecordDecoder {
    type Item = Record;

    fn decode(&self, object_id: &str, line: &[u8]) -> Result<Record, MalformedLine> {
        Record::decode(object_id, line)
    }
}

/// Consecutive records of one object, handed on together.
#[derive(Debug, Clone)]
pub struct RecordBatch<T = Record> {
    /// The decoded records, in the order of their lines.
    pub records: Vec<T>,
    /// The lines that are not records, in their order.
    pub malformed: Vec<MalformedLine>,
    /// Decompressed bytes of the lines in this batch, line endings and empty lines included
    /// (the batches of an object add up to its decompressed size).
    pub bytes: u64,
}

impl<T> Default for RecordBatch<T> {
    fn default() -> Self {
        Self {
            records: Vec::new(),
            malformed: Vec::new(),
            bytes: 0,
        }
    }
}

impl Record {
    /// Decodes one line of a result object (without its line ending). A line that is not a
    /// well-formed record becomes a [`MalformedLine`] naming the object and the reason.
    pub(super) fn decode(object_id: &str, line: &[u8]) -> Result<Self, MalformedLine> {
        let malformed = |reason: String| MalformedLine {
            object_id: object_id.to_owned(),
            line: String::from_utf8_lossy(line).into_owned(),
            reason,
        };
        let text = std::str::from_utf8(line).map_err(|e| malformed(format!("not UTF-8: {e}")))?;
        let mut fields: Map<String, Value> =
            serde_json::from_str(text).map_err(|e| malformed(format!("not a JSON object: {e}")))?;
        let key = match fields.remove("key") {
            Some(Value::Object(key)) => key,
            Some(_) => return Err(malformed("`key` is not an object".to_owned())),
            None => return Err(malformed("no `key`".to_owned())),
        };
        let value = match fields.remove("value") {
            Some(Value::Object(value)) => value,
            None | Some(Value::Null) => Map::new(),
            Some(_) => return Err(malformed("`value` is not an object".to_owned())),
        };
        let meta = match fields.remove("meta") {
            Some(Value::Object(meta)) => meta,
            None | Some(Value::Null) => Map::new(),
            Some(_) => return Err(malformed("`meta` is not an object".to_owned())),
        };
        let ts = match meta.get("ts") {
            Some(Value::String(ts)) => Some(ts.clone()),
            None | Some(Value::Null) => None,
            Some(_) => return Err(malformed("`meta.ts` is not a string".to_owned())),
        };
        // Snapshot records may carry no action: they are all live rows.
        let action = match meta.get("action") {
            None | Some(Value::Null) => Action::Upsert,
            Some(Value::String(a)) if a == "U" => Action::Upsert,
            Some(Value::String(a)) if a == "D" => Action::Delete,
            Some(other) => return Err(malformed(format!("unknown `meta.action` {other}"))),
        };
        Ok(Self {
            key,
            value,
            ts,
            action,
            line: text.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn decode(line: &str) -> Result<Record, MalformedLine> {
        Record::decode("part-1", line.as_bytes())
    }

    fn reason(line: &[u8]) -> String {
        let bad = Record::decode("part-1", line).unwrap_err();
        assert_eq!(bad.object_id, "part-1");
        assert_eq!(bad.line, String::from_utf8_lossy(line));
        bad.reason
    }

    #[test]
    fn decodes_an_upsert() {
        let line = r#"{"key": {"id": 1}, "value": {"name": "x"}, "meta": {"ts": "2024-05-01T10:00:00.000Z", "action": "U"}}"#;
        let record = decode(line).unwrap();
        assert_eq!(Value::Object(record.key), json!({"id": 1}));
        assert_eq!(Value::Object(record.value), json!({"name": "x"}));
        assert_eq!(record.ts.as_deref(), Some("2024-05-01T10:00:00.000Z"));
        assert_eq!(record.action, Action::Upsert);
        assert_eq!(record.line, line);
    }

    #[test]
    fn decodes_a_delete_without_value() {
        let record = decode(r#"{"key": {"id": 3}, "meta": {"ts": "t", "action": "D"}}"#).unwrap();
        assert_eq!(Value::Object(record.key), json!({"id": 3}));
        assert!(record.value.is_empty());
        assert_eq!(record.action, Action::Delete);
    }

    #[test]
    fn a_snapshot_record_without_action_is_an_upsert() {
        let record = decode(r#"{"key": {"id": 2}, "value": {}, "meta": {"ts": "t"}}"#).unwrap();
        assert_eq!(record.action, Action::Upsert);
        let record = decode(r#"{"key": {"id": 2}, "value": {"a": null}}"#).unwrap();
        assert_eq!((record.action, record.ts), (Action::Upsert, None));
        assert_eq!(Value::Object(record.value), json!({"a": null}));
    }

    #[test]
    fn malformed_lines_say_why() {
        assert!(reason(br#"{"key": {"id": 1}"#).starts_with("not a JSON object"));
        assert!(reason(b"[1, 2]").starts_with("not a JSON object"));
        assert_eq!(reason(br#"{"value": {"a": 1}}"#), "no `key`");
        assert_eq!(
            reason(br#"{"key": 5, "value": {}}"#),
            "`key` is not an object"
        );
        assert_eq!(
            reason(br#"{"key": {"id": 1}, "value": [1]}"#),
            "`value` is not an object"
        );
        assert_eq!(
            reason(br#"{"key": {"id": 1}, "meta": 1}"#),
            "`meta` is not an object"
        );
        assert_eq!(
            reason(br#"{"key": {"id": 1}, "meta": {"ts": 5}}"#),
            "`meta.ts` is not a string"
        );
        assert_eq!(
            reason(br#"{"key": {"id": 1}, "meta": {"action": "X"}}"#),
            r#"unknown `meta.action` "X""#
        );
        assert!(reason(b"{\"key\": {\"id\": \"\xff\"}}").starts_with("not UTF-8"));
    }
}
