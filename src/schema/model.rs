//! The table model and the parser from DAP JSON schemas.

use serde_json::Value;

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
    pub ty: ColumnType,
    /// False exactly when the property is listed in `required`.
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
    Boolean,
    /// `string`, optionally bounded by `maxLength` (in characters). `truncatable` is set when the
    /// schema allows [`TRUNCATION_PLACEHOLDER`] (`oneOf` with a `const`), so the column must be
    /// able to hold the placeholder even where `max_length` is shorter.
    Text { max_length: Option<u32>, truncatable: bool },
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
    Malformed { namespace: String, table: String, reason: String },
    #[error("column {namespace}.{table}.{column} has an unsupported type: {reason}")]
    UnsupportedType { namespace: String, table: String, column: String, reason: String },
}

impl TableSchema {
    /// Parses a schema envelope `{"schema": S, "version": N}` as the API returns it.
    pub fn from_envelope(namespace: &str, table: &str, envelope: &Value) -> Result<Self, SchemaError> {
        let _ = (namespace, table, envelope);
        todo!("schema issue")
    }

    /// Parses a bare JSON Schema object `S`, with or without its `meta` property (the form kept
    /// in `table_sync.schema_description`).
    pub fn from_json_schema(
        namespace: &str,
        table: &str,
        version: i64,
        schema: &Value,
    ) -> Result<Self, SchemaError> {
        let _ = (namespace, table, version, schema);
        todo!("schema issue")
    }

    /// The schema JSON without `meta`, as the official client stores it in
    /// `table_sync.schema_description`.
    pub fn description_json(&self) -> Value {
        todo!("schema issue")
    }

    /// The column with this name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}
