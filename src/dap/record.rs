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
    pub reason: String,
}

/// Consecutive records of one object, handed on together.
#[derive(Debug, Clone, Default)]
pub struct RecordBatch {
    pub records: Vec<Record>,
    pub malformed: Vec<MalformedLine>,
    /// Decompressed bytes of the lines in this batch.
    pub bytes: u64,
}
