//! Result lines decoded straight into rows of typed cells, on the download tasks.
//!
//! One pass of serde_json over the line's bytes: property names are looked up in the table's
//! columns, scalar values arrive as borrowed tokens and are converted by the column's codec, and
//! JSON columns keep their raw text. No `serde_json::Value` tree is built for a record; that
//! is what makes a snapshot's decoding cheap enough to keep pace with the database's bulk load.
//!
//! Checks, and what fails them (the record goes to the reject table, with its line):
//! - the record's shape: a `key` object, `value` and `meta` objects, a known `meta.action`;
//! - each property: one the schema defines, a value of the column's type (and range, length,
//!   enum values), required properties present;
//! - with validation on, each column whose JSON schema says more than its type (nested objects
//!   and arrays, numeric bounds, integer enums, patterns) is checked by the jsonschema crate
//!   against that property's schema.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::dap::{LineDecoder, MalformedLine};
use crate::destination::{Cell, Reject, Row, TablePlan, Token};
use crate::hash::Fnv;

/// What a line becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A row to insert or update, every column in plan order.
    Upsert(Row),
    /// The key cells of a row to delete.
    Delete(Row),
    /// A record the table cannot take.
    Rejected(Reject),
}

/// Decodes the lines of one table's results.
pub struct RowDecoder {
    plan: Arc<TablePlan>,
    /// Column index by property name.
    index: HashMap<String, usize, BuildHasherDefault<Fnv>>,
    /// The jsonschema validator of each column that needs one (see the module docs).
    checks: Vec<Option<jsonschema::Validator>>,
    /// Whether `D` records are expected (incremental results).
    deletes: bool,
}

impl fmt::Debug for RowDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RowDecoder")
            .field("table", &self.plan.label())
            .field(
                "checked_columns",
                &self.checks.iter().filter(|c| c.is_some()).count(),
            )
            .field("deletes", &self.deletes)
            .finish()
    }
}

/// Schema keywords of a property that the column's codec does not enforce by itself.
const CHECKED_KEYWORDS: [&str; 11] = [
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "const",
];

impl RowDecoder {
    /// A decoder for `plan`'s table; `validate` turns on the jsonschema checks, `deletes` says
    /// whether the result is incremental (a `D` in a snapshot is refused).
    pub fn new(plan: Arc<TablePlan>, validate: bool, deletes: bool) -> Result<Self, String> {
        let schema = &plan.schema;
        let index = schema
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        let mut checks = Vec::with_capacity(schema.columns.len());
        for (column, codec) in schema.columns.iter().zip(plan.codecs()) {
            let section = if column.key { "key" } else { "value" };
            let property = schema.json.pointer(&format!(
                "/properties/{section}/properties/{}",
                pointer_escape(&column.name)
            ));
            let check = match property {
                Some(property) if validate && (codec.is_nested() || needs_check(property)) => {
                    let relaxed = one_of_as_any_of(property.clone());
                    let validator = jsonschema::validator_for(&relaxed).map_err(|e| {
                        format!(
                            "the schema of column `{}` does not compile: {}",
                            column.name,
                            e.masked()
                        )
                    })?;
                    Some(validator)
                }
                _ => None,
            };
            checks.push(check);
        }
        Ok(Self {
            plan,
            index,
            checks,
            deletes,
        })
    }

    /// Decodes one line.
    pub fn decode_line(&self, line: &[u8]) -> Result<Decoded, String> {
        let mut state = State {
            cells: vec![None; self.plan.columns.names.len()],
            action: None,
            key: None,
            error: None,
        };
        // One pass over the whole line: parsing from `str` then skips checking each string.
        let text = std::str::from_utf8(line).map_err(|e| format!("is not UTF-8: {e}"))?;
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let parsed = LineSeed {
            decoder: self,
            state: &mut state,
        }
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end());
        if let Some(reason) = state.error.take() {
            return Ok(self.reject(state.key, reason, line));
        }
        if let Err(error) = parsed {
            return Err(format!("is not valid JSON: {error}"));
        }
        let Some(key) = state.key else {
            return Err("has no `key` object".into());
        };
        let codecs = self.plan.codecs();
        let delete = match state.action.as_deref() {
            None | Some("U") => false,
            Some("D") => true,
            Some(other) => {
                let reason = format!("has an unknown meta.action {other:?}");
                return Ok(self.reject(Some(key), reason, line));
            }
        };
        if delete && !self.deletes {
            return Ok(self.reject(Some(key), "is a delete inside a snapshot".into(), line));
        }
        let mut cells = state.cells;
        if delete {
            cells.truncate(self.plan.columns.key_len);
        }
        for (i, cell) in cells.iter_mut().enumerate() {
            if cell.is_none() {
                match codecs[i].convert_token(Token::Null) {
                    Ok(null) => *cell = Some(null),
                    Err(reason) => {
                        let column = &self.plan.schema.columns[i].name;
                        return Ok(self.reject(
                            Some(key),
                            format!("column `{column}` {reason}"),
                            line,
                        ));
                    }
                }
            }
        }
        // Collected in place: `Option<Cell>` and `Cell` have the same layout.
        let row: Row = cells
            .into_iter()
            .map(|cell| cell.unwrap_or(Cell::Null))
            .collect();
        Ok(if delete {
            Decoded::Delete(row)
        } else {
            Decoded::Upsert(row)
        })
    }

    fn reject(&self, key: Option<&str>, reason: String, line: &[u8]) -> Decoded {
        Decoded::Rejected(Reject {
            key: key.map(str::to_owned),
            reason,
            line: String::from_utf8_lossy(line).into_owned(),
        })
    }

    /// Converts one property's value and runs its column's check.
    fn cell<'de, A: MapAccess<'de>>(
        &self,
        column: usize,
        map: &mut A,
    ) -> Result<Result<Cell, String>, A::Error> {
        let codec = &self.plan.codecs()[column];
        let (cell, json) = if codec.is_nested() {
            let raw: &RawValue = map.next_value()?;
            (codec.convert_raw(raw.get()), Some(raw.get()))
        } else {
            let token = map.next_value_seed(TokenSeed)?;
            let value = self.checks[column].as_ref().map(|_| token_value(&token));
            let cell = codec.convert_token(token);
            return Ok(cell.and_then(|cell| match (&self.checks[column], value) {
                (Some(check), Some(value)) => self.check(check, column, &value).map(|()| cell),
                _ => Ok(cell),
            }));
        };
        Ok(cell.and_then(|cell| match (&self.checks[column], json) {
            (Some(check), Some(json)) => {
                let value: Value =
                    serde_json::from_str(json).map_err(|e| format!("is not JSON: {e}"))?;
                self.check(check, column, &value).map(|()| cell)
            }
            _ => Ok(cell),
        }))
    }

    fn check(
        &self,
        validator: &jsonschema::Validator,
        column: usize,
        value: &Value,
    ) -> Result<(), String> {
        validator.validate(value).map_err(|error| {
            let path = error.instance_path().to_string();
            // `masked` leaves the value out: row contents stay out of logs and reasons.
            format!(
                "column `{}`{} fails schema validation: {}",
                self.plan.schema.columns[column].name,
                path,
                error.masked()
            )
        })
    }
}

impl LineDecoder for RowDecoder {
    type Item = Decoded;

    fn decode(&self, object_id: &str, line: &[u8]) -> Result<Decoded, MalformedLine> {
        self.decode_line(line).map_err(|reason| MalformedLine {
            object_id: object_id.to_owned(),
            line: String::from_utf8_lossy(line).into_owned(),
            reason,
        })
    }
}

/// What parsing one line gathered.
struct State<'line> {
    cells: Vec<Option<Cell>>,
    action: Option<String>,
    /// The `key` object as JSON text (for the reject table), borrowed from the line.
    key: Option<&'line str>,
    /// Why the record is refused; parsing stops at the first reason.
    error: Option<String>,
}

/// Parsing stops with this error once `State::error` holds the reason.
fn stop<E: de::Error>() -> E {
    E::custom("record refused")
}

struct LineSeed<'a, 'de> {
    decoder: &'a RowDecoder,
    state: &'a mut State<'de>,
}

impl<'de> DeserializeSeed<'de> for LineSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for LineSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a record object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Name(field)) = map.next_key()? {
            match field.as_ref() {
                "key" => {
                    let raw: &'de RawValue = map.next_value()?;
                    self.state.key = Some(raw.get());
                    let mut inner = serde_json::Deserializer::from_str(raw.get());
                    let section = SectionSeed {
                        decoder: self.decoder,
                        state: &mut *self.state,
                        key: true,
                    };
                    if section.deserialize(&mut inner).is_err() {
                        self.state
                            .error
                            .get_or_insert_with(|| "has a `key` that is not an object".into());
                        return Err(stop());
                    }
                }
                "value" => map.next_value_seed(SectionSeed {
                    decoder: self.decoder,
                    state: &mut *self.state,
                    key: false,
                })?,
                "meta" => self.state.action = map.next_value_seed(MetaSeed)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// The `key` or `value` object.
struct SectionSeed<'a, 'line> {
    decoder: &'a RowDecoder,
    state: &'a mut State<'line>,
    key: bool,
}

impl<'de> DeserializeSeed<'de> for SectionSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SectionSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of columns")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let key_len = self.decoder.plan.columns.key_len;
        while let Some(Name(name)) = map.next_key()? {
            let column = self
                .decoder
                .index
                .get(name.as_ref())
                .copied()
                .filter(|&i| (i < key_len) == self.key);
            if column.is_none() && !self.key && self.decoder.plan.ignores(&name) {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let Some(column) = column else {
                let section = if self.key { "key" } else { "value" };
                let version = self.decoder.plan.schema.version;
                self.state.error = Some(format!(
                    "has a {section} property `{name}` that schema version {version} does not define"
                ));
                return Err(stop());
            };
            match self.decoder.cell(column, &mut map)? {
                Ok(cell) => self.state.cells[column] = Some(cell),
                Err(reason) => {
                    self.state.error = Some(if reason.starts_with("column `") {
                        reason
                    } else {
                        format!("column `{name}` {reason}")
                    });
                    return Err(stop());
                }
            }
        }
        Ok(())
    }
}

/// `meta`: only `action` matters here.
struct MetaSeed;

impl<'de> DeserializeSeed<'de> for MetaSeed {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Option<String>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MetaSeed {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a meta object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
        let mut action = None;
        while let Some(Name(field)) = map.next_key()? {
            if field == "action" {
                action = map.next_value::<Option<String>>()?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(action)
    }
}

/// A property name, borrowed from the line unless it has escapes.
struct Name<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a property name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

/// A scalar value as a [`Token`]; objects and arrays are skipped and reported as such.
struct TokenSeed;

impl<'de> DeserializeSeed<'de> for TokenSeed {
    type Value = Token<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Token<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TokenSeed {
    type Value = Token<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Token<'de>, E> {
        Ok(Token::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Token<'de>, E> {
        Ok(Token::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Token<'de>, E> {
        Ok(Token::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Token<'de>, E> {
        Ok(Token::UInt(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Token<'de>, E> {
        Ok(Token::Float(v))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Token<'de>, E> {
        Ok(Token::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Token<'de>, E> {
        Ok(Token::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Token<'de>, E> {
        Ok(Token::Str(Cow::Owned(v)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Token<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Token::Nested("an object"))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Token<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Token::Nested("an array"))
    }
}

/// A token as a JSON value, for the jsonschema check of a scalar column.
fn token_value(token: &Token<'_>) -> Value {
    match token {
        Token::Null | Token::Nested(_) => Value::Null,
        Token::Bool(b) => Value::Bool(*b),
        Token::Int(i) => Value::from(*i),
        Token::UInt(u) => Value::from(*u),
        Token::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Token::Str(s) => Value::String(s.as_ref().to_owned()),
    }
}

fn needs_check(property: &Value) -> bool {
    let mut found = false;
    visit_keys(property, &mut |key| {
        found |= CHECKED_KEYWORDS.contains(&key)
    });
    found
        || property.get("type").and_then(Value::as_str) == Some("integer")
            && property.get("enum").is_some()
}

fn visit_keys(value: &Value, f: &mut impl FnMut(&str)) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                f(key);
                visit_keys(inner, f);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| visit_keys(item, f)),
        _ => {}
    }
}

/// DAP writes its truncation placeholder as `oneOf: [{"const": "__dap_oversized_truncated__"},
/// {"type": "string"}]`, which the placeholder itself matches twice — strictly invalid under
/// `oneOf`. DAP means "either", so every `oneOf` is read as `anyOf`.
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

/// `~` and `/` escaped for a JSON pointer.
fn pointer_escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests;
