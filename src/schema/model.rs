//! The table model and the parser from DAP JSON schemas.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::table::TableId;

/// The string DAP puts in place of a value too large to export.
pub const TRUNCATION_PLACEHOLDER: &str = "__dap_oversized_truncated__";

/// One DAP table at one schema version, independent of any database.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    /// DAP namespace, such as `canvas`.
    pub namespace: String,
    /// Table name, such as `courses`.
    pub table: String,
    /// Schema version as reported by the API.
    pub version: i64,
    /// Key columns first (in key order), then value columns in schema order.
    ///
    /// "Schema order" is the iteration order of the parsed [`Value`]: the document's order when
    /// `serde_json` has its `preserve_order` feature, alphabetical otherwise.
    pub columns: Vec<Column>,
    /// Names of the primary-key columns: all properties of `key`, in order.
    pub primary_key: Vec<String>,
    /// Table comment, from the `title` and `description` of the schema.
    pub comment: Option<String>,
    /// The JSON Schema object (the envelope's `schema`), kept for record validation and for
    /// `table_sync.schema_description`.
    pub json: Value,
}

/// One column of a [`TableSchema`].
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// The bare property name.
    pub name: String,
    /// The logical type, mapped per database by `sql`.
    pub ty: ColumnType,
    /// False exactly when the property is listed in `required` (and its `type` does not allow
    /// `null`); always false for key columns.
    pub nullable: bool,
    /// Whether the column belongs to the primary key.
    pub key: bool,
    /// From the property's `title` and `description`.
    pub comment: Option<String>,
}

/// The logical type of a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnType {
    /// `integer` with format `int16`.
    SmallInt,
    /// `integer` with format `int32`.
    Int,
    /// `integer` with format `int64` (and integers without a format).
    BigInt,
    /// `number` (`float64`, or without a format).
    Double,
    /// `boolean`.
    Boolean,
    /// `string`, optionally bounded by `maxLength` (in characters). `truncatable` is set when the
    /// schema allows [`TRUNCATION_PLACEHOLDER`] (`oneOf` with a `const`), so the column must be
    /// able to hold the placeholder even where `max_length` is shorter.
    Text {
        max_length: Option<u32>,
        truncatable: bool,
    },
    /// `string` with format `date-time`: a UTC instant, microsecond precision in the databases.
    Timestamp,
    /// `string` with format `date`.
    Date,
    /// `string` with format `uuid`.
    Uuid,
    /// `string` with `enum`: the values in schema order.
    Enum { values: Vec<String> },
    /// `integer` with `enum` (`web_logs.http_status`).
    IntEnum { values: Vec<i64> },
    /// `oneOf` of IPv4 and IPv6 address strings.
    IpAddress,
    /// `array` whose items are a scalar type (not an object or array).
    Array { item: Box<ColumnType> },
    /// Nested objects (with or without properties) and arrays of objects: stored as JSON.
    Json,
}

/// A schema that cannot be turned into a table.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("schema of {namespace}.{table} is malformed: {reason}")]
    /// The table as a whole cannot be read (no `key`, duplicate columns, not an object, ...).
    Malformed {
        namespace: String,
        table: String,
        reason: String,
    },
    #[error("column {namespace}.{table}.{column} has an unsupported type: {reason}")]
    /// One property has a type dapsync does not know how to store.
    UnsupportedType {
        namespace: String,
        table: String,
        column: String,
        reason: String,
    },
}

impl TableSchema {
    /// The table this schema describes.
    pub fn id(&self) -> TableId {
        TableId::new(&self.namespace, &self.table)
    }

    /// Parses a schema envelope `{"schema": S, "version": N}` as the API returns it.
    pub fn from_envelope(
        namespace: &str,
        table: &str,
        envelope: &Value,
    ) -> Result<Self, SchemaError> {
        let malformed = |reason: &str| malformed(namespace, table, reason);
        let schema = envelope
            .get("schema")
            .ok_or_else(|| malformed("the envelope has no `schema`"))?;
        let version = envelope
            .get("version")
            .and_then(Value::as_i64)
            .ok_or_else(|| malformed("the envelope has no integer `version`"))?;
        Self::from_json_schema(namespace, table, version, schema)
    }

    /// Decodes a schema as stored in `table_sync.schema_description` (the text of a bare JSON
    /// Schema object): the one decoder of a stored schema.
    pub fn from_stored(
        namespace: &str,
        table: &str,
        version: i64,
        description: &str,
    ) -> Result<Self, SchemaError> {
        let json: Value = serde_json::from_str(description).map_err(|e| {
            malformed(
                namespace,
                table,
                &format!("the stored schema description is not JSON: {e}"),
            )
        })?;
        Self::from_json_schema(namespace, table, version, &json)
    }

    /// Parses a bare JSON Schema object `S`, with or without its `meta` property (the form kept
    /// in `table_sync.schema_description`).
    pub fn from_json_schema(
        namespace: &str,
        table: &str,
        version: i64,
        schema: &Value,
    ) -> Result<Self, SchemaError> {
        let malformed = |reason: &str| malformed(namespace, table, reason);
        let properties = schema
            .get("properties")
            .and_then(Value::as_object)
            .ok_or_else(|| malformed("the schema is not an object with `properties`"))?;
        let key = properties
            .get("key")
            .and_then(Value::as_object)
            .ok_or_else(|| malformed("`key` is missing or not an object"))?;
        // A table with key columns only may leave `value` out.
        let value = match properties.get("value") {
            None => None,
            Some(value) => Some(
                value
                    .as_object()
                    .ok_or_else(|| malformed("`value` is not an object"))?,
            ),
        };

        let parse_part =
            |part: &Map<String, Value>, is_key: bool| -> Result<Vec<Column>, SchemaError> {
                let props = match part.get("properties") {
                    None => return Ok(Vec::new()),
                    Some(props) => props.as_object().ok_or_else(|| {
                        malformed("`properties` of `key` or `value` is not an object")
                    })?,
                };
                let required = required_names(part)
                    .ok_or_else(|| malformed("`required` is not a list of names"))?;
                props
                    .iter()
                    .map(|(name, prop)| {
                        if name.is_empty() || name.contains('\0') {
                            return Err(malformed(
                                "a column name is empty or contains a NUL character",
                            ));
                        }
                        let (ty, type_allows_null) =
                            parse_type(prop).map_err(|reason| SchemaError::UnsupportedType {
                                namespace: namespace.to_owned(),
                                table: table.to_owned(),
                                column: name.clone(),
                                reason,
                            })?;
                        if is_key && matches!(ty, ColumnType::Json | ColumnType::Array { .. }) {
                            return Err(SchemaError::UnsupportedType {
                                namespace: namespace.to_owned(),
                                table: table.to_owned(),
                                column: name.clone(),
                                reason: "a key column must have a scalar type".to_owned(),
                            });
                        }
                        Ok(Column {
                            name: name.clone(),
                            ty,
                            nullable: !is_key
                                && (type_allows_null || !required.contains(name.as_str())),
                            key: is_key,
                            comment: comment_of(prop),
                        })
                    })
                    .collect()
            };

        let mut columns = parse_part(key, true)?;
        if columns.is_empty() {
            return Err(malformed("`key` has no properties"));
        }
        let primary_key = columns.iter().map(|c| c.name.clone()).collect();
        if let Some(value) = value {
            columns.extend(parse_part(value, false)?);
        }
        let mut seen = HashSet::new();
        if let Some(dup) = columns.iter().find(|c| !seen.insert(c.name.as_str())) {
            return Err(malformed(&format!(
                "column `{}` appears in both `key` and `value`",
                dup.name
            )));
        }

        let comment = value
            .and_then(comment_of_map)
            .or_else(|| comment_of_map(key));
        Ok(Self {
            namespace: namespace.to_owned(),
            table: table.to_owned(),
            version,
            columns,
            primary_key,
            comment,
            json: schema.clone(),
        })
    }

    /// The schema JSON without `meta`, as the official client stores it in
    /// `table_sync.schema_description`.
    pub fn description_json(&self) -> Value {
        let mut json = self.json.clone();
        if let Some(props) = json.get_mut("properties").and_then(Value::as_object_mut) {
            props.remove("meta");
        }
        if let Some(required) = json.get_mut("required").and_then(Value::as_array_mut) {
            required.retain(|name| name != "meta");
        }
        json
    }

    /// The column with this name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

fn malformed(namespace: &str, table: &str, reason: &str) -> SchemaError {
    SchemaError::Malformed {
        namespace: namespace.to_owned(),
        table: table.to_owned(),
        reason: reason.to_owned(),
    }
}

/// The names in `required`, or `None` when it is not a list of strings.
fn required_names(part: &Map<String, Value>) -> Option<HashSet<&str>> {
    match part.get("required") {
        None => Some(HashSet::new()),
        Some(Value::Array(names)) => names.iter().map(Value::as_str).collect(),
        Some(_) => None,
    }
}

fn comment_of(prop: &Value) -> Option<String> {
    prop.as_object().and_then(comment_of_map)
}

/// `title` and `description`, separated by a blank line when both are present.
fn comment_of_map(object: &Map<String, Value>) -> Option<String> {
    let text = |field| {
        object
            .get(field)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    match (text("title"), text("description")) {
        (Some(title), Some(description)) => Some(format!("{title}\n\n{description}")),
        (one, other) => one.or(other).map(str::to_owned),
    }
}

/// The column type of one property, and whether its `type` list allows `null`. The error is the
/// reason, without the column's name.
fn parse_type(prop: &Value) -> Result<(ColumnType, bool), String> {
    let prop = prop.as_object().ok_or("the property is not an object")?;
    if let Some(branches) = prop.get("oneOf") {
        return parse_one_of(branches).map(|ty| (ty, false));
    }
    let (name, allows_null) = match prop.get("type") {
        Some(Value::String(name)) => (name.as_str(), false),
        Some(Value::Array(names)) => {
            let mut names: Vec<&str> = names
                .iter()
                .map(Value::as_str)
                .collect::<Option<_>>()
                .ok_or("`type` lists a non-string")?;
            let before = names.len();
            names.retain(|n| *n != "null");
            match names.as_slice() {
                [name] => (*name, names.len() < before),
                _ => {
                    return Err(format!(
                        "`type` {names:?} is not one type, optionally with null"
                    ));
                }
            }
        }
        Some(_) => return Err("`type` is neither a string nor a list".to_owned()),
        None => return Err("the property has neither `type` nor `oneOf`".to_owned()),
    };
    let format = match prop.get("format") {
        None => None,
        Some(format) => Some(format.as_str().ok_or("`format` is not a string")?),
    };
    let ty = match (name, prop.get("enum")) {
        ("string", Some(values)) => ColumnType::Enum {
            values: enum_values(values, allows_null, |v| v.as_str().map(str::to_owned))?,
        },
        ("integer", Some(values)) => ColumnType::IntEnum {
            values: enum_values(values, allows_null, Value::as_i64)?,
        },
        (_, Some(_)) => return Err(format!("`enum` of type `{name}` is not supported")),
        ("integer", None) => match format {
            Some("int16") => ColumnType::SmallInt,
            Some("int32") => ColumnType::Int,
            Some("int64") | None => ColumnType::BigInt,
            Some(other) => return Err(format!("integer format `{other}` is not supported")),
        },
        ("number", None) => match format {
            Some("float64") | None => ColumnType::Double,
            Some(other) => return Err(format!("number format `{other}` is not supported")),
        },
        ("boolean", None) => ColumnType::Boolean,
        ("string", None) => {
            if prop.contains_key("const") {
                return Err("a string `const` outside `oneOf` is not supported".to_owned());
            }
            match format {
                Some("date-time") => ColumnType::Timestamp,
                Some("date") => ColumnType::Date,
                Some("uuid") => ColumnType::Uuid,
                Some("ipv4" | "ipv6") => ColumnType::IpAddress,
                Some(other) => return Err(format!("string format `{other}` is not supported")),
                None => ColumnType::Text {
                    max_length: max_length(prop)?,
                    truncatable: false,
                },
            }
        }
        ("array", None) => match prop.get("items") {
            // Items of any shape can only be kept as JSON.
            None => ColumnType::Json,
            Some(items) => match parse_type(items)
                .map_err(|reason| format!("array items: {reason}"))?
                .0
            {
                ColumnType::Json | ColumnType::Array { .. } => ColumnType::Json,
                item => ColumnType::Array {
                    item: Box::new(item),
                },
            },
        },
        ("object", None) => ColumnType::Json,
        (other, None) => return Err(format!("type `{other}` is not supported")),
    };
    Ok((ty, allows_null))
}

/// `maxLength` as a count of characters.
fn max_length(prop: &Map<String, Value>) -> Result<Option<u32>, String> {
    match prop.get("maxLength") {
        None => Ok(None),
        Some(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| format!("`maxLength` {n} is not a positive 32-bit integer")),
    }
}

/// The values of an `enum`, de-duplicated in order. A `null` value is skipped when the type
/// allows null (it is then no label).
fn enum_values<'a, T: PartialEq>(
    values: &'a Value,
    allows_null: bool,
    get: impl Fn(&'a Value) -> Option<T>,
) -> Result<Vec<T>, String> {
    let values = values.as_array().ok_or("`enum` is not a list")?;
    let mut out = Vec::with_capacity(values.len());
    for value in values.iter().filter(|v| !(allows_null && v.is_null())) {
        let value = get(value)
            .ok_or_else(|| format!("enum value {value} does not match the enum's type"))?;
        if !out.contains(&value) {
            out.push(value);
        }
    }
    if out.is_empty() {
        return Err("`enum` has no values".to_owned());
    }
    Ok(out)
}

/// `oneOf`: the truncation placeholder with one other string type, or IPv4/IPv6 addresses.
fn parse_one_of(branches: &Value) -> Result<ColumnType, String> {
    let branches = branches.as_array().ok_or("`oneOf` is not a list")?;
    let is_placeholder =
        |b: &Value| b.get("const").and_then(Value::as_str) == Some(TRUNCATION_PLACEHOLDER);
    if let [first, second] = branches.as_slice()
        && (is_placeholder(first) || is_placeholder(second))
    {
        let other = if is_placeholder(first) { second } else { first };
        let (ty, _) = parse_type(other).map_err(|reason| format!("`oneOf` branch: {reason}"))?;
        return match ty {
            ColumnType::Text { max_length, .. } => Ok(ColumnType::Text {
                max_length,
                truncatable: true,
            }),
            // The placeholder is one more label.
            ColumnType::Enum { mut values } => {
                if !values.iter().any(|v| v == TRUNCATION_PLACEHOLDER) {
                    values.push(TRUNCATION_PLACEHOLDER.to_owned());
                }
                Ok(ColumnType::Enum { values })
            }
            // A typed column (timestamp, uuid, ...) cannot hold the placeholder: keep the text.
            ColumnType::Timestamp | ColumnType::Date | ColumnType::Uuid | ColumnType::IpAddress => {
                Ok(ColumnType::Text {
                    max_length: None,
                    truncatable: true,
                })
            }
            other => Err(format!(
                "the truncation placeholder next to {other:?} is not supported"
            )),
        };
    }
    let is_ip = |b: &Value| {
        b.get("type").and_then(Value::as_str) == Some("string")
            && matches!(
                b.get("format").and_then(Value::as_str),
                Some("ipv4" | "ipv6")
            )
    };
    if !branches.is_empty() && branches.iter().all(is_ip) {
        return Ok(ColumnType::IpAddress);
    }
    Err("`oneOf` is neither the truncation placeholder with one type nor IP addresses".to_owned())
}

#[cfg(test)]
mod tests;
