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
mod tests {
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
}
