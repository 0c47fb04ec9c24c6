//! Parquet: the records of a result as typed, nested columns, written one bounded row group at a
//! time with the `parquet` crate's column writers (no Arrow).
//!
//! The file mirrors a JSON Lines record: three top-level groups, `meta` (required: `ts`, and in
//! incremental results `action`), `key` (required: the key columns) and `value` (optional: NULL
//! for a hard delete; left out when the table has no value columns). So `value.name` reads the same
//! in SQL over Parquet as in the JSON, and one JSON schema describes both.
//!
//! Columns, from the table's latest JSON schema:
//!
//! | JSON schema | Parquet |
//! |---|---|
//! | integer int16 / int32 | INT32 (INTEGER(16/32, signed)) |
//! | integer int64, or no format | INT64 (INTEGER(64, signed)) |
//! | number | DOUBLE |
//! | boolean | BOOLEAN |
//! | string, string enum, uuid, ipv4/ipv6, `oneOf` of strings | BYTE_ARRAY (STRING) |
//! | string date-time | INT64 (TIMESTAMP(MICROS, UTC)) |
//! | string date | INT32 (DATE) |
//! | object with fixed properties | group of its properties |
//! | array | LIST (3-level: `list` / `element`, elements optional) of its items' type |
//! | object without fixed properties, any other `oneOf`, anything else | BYTE_ARRAY (JSON) |
//!
//! A column is REQUIRED when `required` lists it (a top-level value column: in every schema
//! version the table has had, since older rows may lack a column made required later), else
//! OPTIONAL. Pages are compressed with Snappy (pure Rust, and what Spark writes by default).

use std::fs::File;
use std::io::{self, BufWriter, Write as _};
use std::path::Path;
use std::sync::Arc;

use ::parquet::basic::{Compression, LogicalType, Repetition, TimeUnit, Type as Physical};
use ::parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int32Type, Int64Type};
use ::parquet::errors::ParquetError;
use ::parquet::file::properties::WriterProperties;
use ::parquet::file::writer::SerializedFileWriter;
use ::parquet::schema::types::Type;
use chrono::{DateTime, NaiveDate};
use serde_json::{Map, Value};

use super::super::extract::{Extract, Item, Record};
use super::super::generator::{MAX_DEPTH, resolve, type_name};
use super::super::table::RowState;
use super::{fixed_properties, required_names, section};

/// Rows per row group at most.
const ROW_GROUP_ROWS: usize = 16 * 1024;

/// Buffered bytes (roughly) per row group at most: bounds memory however wide the rows are.
const ROW_GROUP_BYTES: usize = 16 << 20;

/// What a leaf column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaf {
    Bool,
    Int16,
    Int32,
    Int64,
    Double,
    Text,
    Json,
    Timestamp,
    Date,
}

impl Leaf {
    fn physical(self) -> Physical {
        match self {
            Leaf::Bool => Physical::BOOLEAN,
            Leaf::Int16 | Leaf::Int32 | Leaf::Date => Physical::INT32,
            Leaf::Int64 | Leaf::Timestamp => Physical::INT64,
            Leaf::Double => Physical::DOUBLE,
            Leaf::Text | Leaf::Json => Physical::BYTE_ARRAY,
        }
    }

    fn logical(self) -> Option<LogicalType> {
        match self {
            Leaf::Bool | Leaf::Double => None,
            Leaf::Int16 => Some(LogicalType::integer(16, true)),
            Leaf::Int32 => Some(LogicalType::integer(32, true)),
            Leaf::Int64 => Some(LogicalType::integer(64, true)),
            Leaf::Text => Some(LogicalType::String),
            Leaf::Json => Some(LogicalType::Json),
            Leaf::Timestamp => Some(LogicalType::timestamp(true, TimeUnit::MICROS)),
            Leaf::Date => Some(LogicalType::Date),
        }
    }

    /// The leaf for a scalar schema; `None` for objects with fixed properties and arrays.
    fn of(schema: &Value, root: &Value) -> Option<Leaf> {
        let schema = resolve(schema, root);
        let Some(object) = schema.as_object() else {
            return Some(Leaf::Json);
        };
        if let Some(value) = object.get("const") {
            return Some(Leaf::of_values(std::slice::from_ref(value)));
        }
        if let Some(values) = object.get("enum").and_then(Value::as_array) {
            return Some(Leaf::of_values(values));
        }
        if let Some(branches) = ["oneOf", "anyOf"]
            .iter()
            .find_map(|keyword| object.get(*keyword)?.as_array())
        {
            let texts = branches.iter().all(|branch| {
                let branch = resolve(branch, root);
                branch.get("type").and_then(Value::as_str) == Some("string")
                    || branch.get("const").is_some_and(Value::is_string)
            });
            return Some(if texts { Leaf::Text } else { Leaf::Json });
        }
        let type_name = type_name(object);
        let format = object.get("format").and_then(Value::as_str);
        Some(match (type_name, format) {
            ("boolean", _) => Leaf::Bool,
            ("integer", Some("int16")) => Leaf::Int16,
            ("integer", Some("int32")) => Leaf::Int32,
            ("integer", _) => Leaf::Int64,
            ("number", _) => Leaf::Double,
            ("string", Some("date-time")) => Leaf::Timestamp,
            ("string", Some("date")) => Leaf::Date,
            ("string", _) => Leaf::Text,
            ("object", _) if fixed_properties(schema, root).is_some() => return None,
            ("array", _) => return None,
            _ => Leaf::Json,
        })
    }

    /// The leaf for a `const` or an `enum`: by the type its values share.
    fn of_values(values: &[Value]) -> Leaf {
        if values.iter().all(Value::is_string) {
            Leaf::Text
        } else if values.iter().all(Value::is_i64) {
            Leaf::Int64
        } else if values.iter().all(Value::is_boolean) {
            Leaf::Bool
        } else {
            Leaf::Json
        }
    }
}

/// The fields of a group, by name.
type Fields = Vec<(String, Node)>;

/// A node of the file's schema, as the shredder walks it.
#[derive(Debug)]
enum Node {
    Leaf { column: usize, optional: bool },
    Group { fields: Fields, optional: bool },
    List { element: Box<Node>, optional: bool },
}

impl Node {
    fn optional(&self) -> bool {
        match self {
            Node::Leaf { optional, .. }
            | Node::Group { optional, .. }
            | Node::List { optional, .. } => *optional,
        }
    }
}

/// The buffered values and levels of one leaf column in the row group being filled.
#[derive(Debug, Clone)]
struct Column {
    leaf: Leaf,
    /// The dotted path, for error messages.
    name: String,
    max_def: i16,
    max_rep: i16,
    values: Values,
    def: Vec<i16>,
    rep: Vec<i16>,
}

#[derive(Debug, Clone)]
enum Values {
    Bool(Vec<bool>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Double(Vec<f64>),
    Bytes(Vec<ByteArray>),
}

/// Why a record does not fit the file's schema (rows written under an incompatible older schema
/// version). Names the column, never the value.
#[derive(Debug)]
struct Misfit {
    column: String,
    problem: &'static str,
}

impl From<Misfit> for io::Error {
    fn from(misfit: Misfit) -> Self {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("column {}: {}", misfit.column, misfit.problem),
        )
    }
}

fn io_error(error: ParquetError) -> io::Error {
    io::Error::other(error)
}

impl Column {
    fn new(leaf: Leaf, name: String, max_def: i16, max_rep: i16) -> Self {
        let values = match leaf {
            Leaf::Bool => Values::Bool(Vec::new()),
            Leaf::Int16 | Leaf::Int32 | Leaf::Date => Values::Int32(Vec::new()),
            Leaf::Int64 | Leaf::Timestamp => Values::Int64(Vec::new()),
            Leaf::Double => Values::Double(Vec::new()),
            Leaf::Text | Leaf::Json => Values::Bytes(Vec::new()),
        };
        Self {
            leaf,
            name,
            max_def,
            max_rep,
            values,
            def: Vec::new(),
            rep: Vec::new(),
        }
    }

    fn levels(&mut self, def: i16, rep: i16) {
        self.def.push(def);
        self.rep.push(rep);
    }

    /// Adds a timestamp (`meta.ts`, a required column of its own).
    fn push_micros(&mut self, micros: i64) {
        if let Values::Int64(values) = &mut self.values {
            values.push(micros);
            self.levels(0, 0);
        }
    }

    /// Adds a non-NULL value; returns roughly how many bytes it takes.
    fn push(&mut self, value: &Value, def: i16, rep: i16) -> Result<usize, Misfit> {
        let misfit = |problem| Misfit {
            column: self.name.clone(),
            problem,
        };
        let integer = || value.as_i64().ok_or_else(|| misfit("not an integer"));
        let text = || value.as_str().ok_or_else(|| misfit("not a string"));
        let size = match (&mut self.values, self.leaf) {
            (Values::Bool(values), _) => {
                values.push(value.as_bool().ok_or_else(|| misfit("not a boolean"))?);
                1
            }
            (Values::Int32(values), Leaf::Int16) => {
                let small = i16::try_from(integer()?).map_err(|_| misfit("out of int16"))?;
                values.push(i32::from(small));
                4
            }
            (Values::Int32(values), Leaf::Date) => {
                let date = NaiveDate::parse_from_str(text()?, "%Y-%m-%d")
                    .map_err(|_| misfit("not a date"))?;
                let days = (date - DateTime::UNIX_EPOCH.date_naive()).num_days();
                values.push(i32::try_from(days).map_err(|_| misfit("date out of range"))?);
                4
            }
            (Values::Int32(values), _) => {
                values.push(i32::try_from(integer()?).map_err(|_| misfit("out of int32"))?);
                4
            }
            (Values::Int64(values), Leaf::Timestamp) => {
                let ts = DateTime::parse_from_rfc3339(text()?)
                    .map_err(|_| misfit("not an RFC 3339 timestamp"))?;
                values.push(ts.timestamp_micros());
                8
            }
            (Values::Int64(values), _) => {
                values.push(integer()?);
                8
            }
            (Values::Double(values), _) => {
                values.push(value.as_f64().ok_or_else(|| misfit("not a number"))?);
                8
            }
            (Values::Bytes(values), Leaf::Json) => {
                // Serializing a JSON value into a Vec cannot fail.
                let json = serde_json::to_vec(value).unwrap_or_default();
                let size = json.len();
                values.push(ByteArray::from(json));
                size
            }
            (Values::Bytes(values), _) => {
                let text = text()?;
                values.push(ByteArray::from(text.as_bytes().to_vec()));
                text.len()
            }
        };
        self.levels(def, rep);
        Ok(size + 4)
    }

    /// Writes the buffered values as one column chunk of `group`, then empties the buffers.
    fn write(
        &mut self,
        group: &mut ::parquet::file::writer::SerializedRowGroupWriter<'_, BufWriter<File>>,
    ) -> Result<(), ParquetError> {
        let mut chunk = group
            .next_column()?
            .ok_or_else(|| ParquetError::General("fewer columns than leaves".to_owned()))?;
        let def = (self.max_def > 0).then_some(&self.def[..]);
        let rep = (self.max_rep > 0).then_some(&self.rep[..]);
        match &mut self.values {
            Values::Bool(values) => {
                chunk.typed::<BoolType>().write_batch(values, def, rep)?;
                values.clear();
            }
            Values::Int32(values) => {
                chunk.typed::<Int32Type>().write_batch(values, def, rep)?;
                values.clear();
            }
            Values::Int64(values) => {
                chunk.typed::<Int64Type>().write_batch(values, def, rep)?;
                values.clear();
            }
            Values::Double(values) => {
                chunk.typed::<DoubleType>().write_batch(values, def, rep)?;
                values.clear();
            }
            Values::Bytes(values) => {
                chunk
                    .typed::<ByteArrayType>()
                    .write_batch(values, def, rep)?;
                values.clear();
            }
        }
        chunk.close()?;
        self.def.clear();
        self.rep.clear();
        Ok(())
    }
}

/// The schema of a query's Parquet objects, and how records map onto its columns. Built once per
/// query and shared by the threads writing its objects.
#[derive(Debug)]
pub(in crate::fake) struct ParquetLayout {
    schema: Arc<Type>,
    incremental: bool,
    key: Fields,
    /// `None` when the table has no value columns.
    value: Option<Fields>,
    /// Empty buffers of every leaf column, in file order.
    columns: Vec<Column>,
}

/// Builds the nodes, Parquet types and column buffers of a schema tree, depth first.
struct Builder<'a> {
    root: &'a Value,
    columns: Vec<Column>,
}

impl Builder<'_> {
    /// One property: `def` and `rep` are the levels of its parent, `path` its dotted name.
    fn node(
        &mut self,
        name: &str,
        path: &str,
        schema: &Value,
        optional: bool,
        (def, rep): (i16, i16),
        depth: usize,
    ) -> Result<(Node, Type), ParquetError> {
        let repetition = if optional {
            Repetition::OPTIONAL
        } else {
            Repetition::REQUIRED
        };
        let def = def + i16::from(optional);
        let leaf = if depth > MAX_DEPTH {
            Some(Leaf::Json)
        } else {
            Leaf::of(schema, self.root)
        };
        if let Some(leaf) = leaf {
            let column = self.columns.len();
            self.columns
                .push(Column::new(leaf, path.to_owned(), def, rep));
            let parquet = Type::primitive_type_builder(name, leaf.physical())
                .with_repetition(repetition)
                .with_logical_type(leaf.logical())
                .build()?;
            return Ok((Node::Leaf { column, optional }, parquet));
        }
        let resolved = resolve(schema, self.root);
        if let Some(properties) = fixed_properties(resolved, self.root) {
            let required = required_names(resolved, self.root);
            let (fields, types) = self.fields(path, properties, &required, (def, rep), depth)?;
            let parquet = Type::group_type_builder(name)
                .with_repetition(repetition)
                .with_fields(types)
                .build()?;
            return Ok((Node::Group { fields, optional }, parquet));
        }
        // An array (the only other kind `Leaf::of` leaves out): LIST of its items.
        let items = resolved.get("items").unwrap_or(&Value::Null);
        let (element, element_type) = self.node(
            "element",
            &format!("{path}[]"),
            items,
            true,
            (def + 1, rep + 1),
            depth + 1,
        )?;
        let list = Type::group_type_builder("list")
            .with_repetition(Repetition::REPEATED)
            .with_fields(vec![Arc::new(element_type)])
            .build()?;
        let parquet = Type::group_type_builder(name)
            .with_repetition(repetition)
            .with_logical_type(Some(LogicalType::List))
            .with_fields(vec![Arc::new(list)])
            .build()?;
        let element = Box::new(element);
        Ok((Node::List { element, optional }, parquet))
    }

    /// The properties of an object, each required when `required` names it.
    fn fields(
        &mut self,
        path: &str,
        properties: &Map<String, Value>,
        required: &[&str],
        levels: (i16, i16),
        depth: usize,
    ) -> Result<(Fields, Vec<Arc<Type>>), ParquetError> {
        let mut fields = Vec::with_capacity(properties.len());
        let mut types = Vec::with_capacity(properties.len());
        for (name, schema) in properties {
            let optional = !required.contains(&name.as_str());
            let path = format!("{path}.{name}");
            let (node, parquet) = self.node(name, &path, schema, optional, levels, depth + 1)?;
            fields.push((name.clone(), node));
            types.push(Arc::new(parquet));
        }
        Ok((fields, types))
    }

    fn leaf(&mut self, name: &str, leaf: Leaf) -> Result<Arc<Type>, ParquetError> {
        self.columns
            .push(Column::new(leaf, format!("meta.{name}"), 0, 0));
        Ok(Arc::new(
            Type::primitive_type_builder(name, leaf.physical())
                .with_repetition(Repetition::REQUIRED)
                .with_logical_type(leaf.logical())
                .build()?,
        ))
    }
}

impl ParquetLayout {
    /// The layout for a result of `extract`.
    pub(in crate::fake) fn new(extract: &Extract) -> Result<Self, io::Error> {
        Self::build(extract).map_err(io_error)
    }

    fn build(extract: &Extract) -> Result<Self, ParquetError> {
        let root = extract.schema();
        let incremental = extract.is_incremental();
        let mut builder = Builder {
            root,
            columns: Vec::new(),
        };
        let mut meta = vec![builder.leaf("ts", Leaf::Timestamp)?];
        if incremental {
            meta.push(builder.leaf("action", Leaf::Text)?);
        }
        let group = |name: &str, repetition, fields| {
            Type::group_type_builder(name)
                .with_repetition(repetition)
                .with_fields(fields)
                .build()
                .map(Arc::new)
        };
        let mut top = vec![group("meta", Repetition::REQUIRED, meta)?];
        let empty = Map::new();
        let key_properties = section(root, "key").unwrap_or(&empty);
        let all: Vec<&str> = key_properties.keys().map(String::as_str).collect();
        let (key, types) = builder.fields("key", key_properties, &all, (0, 0), 0)?;
        top.push(group("key", Repetition::REQUIRED, types)?);
        let value = match section(root, "value").filter(|properties| !properties.is_empty()) {
            Some(properties) => {
                let required = required_everywhere(extract);
                let (value, types) = builder.fields("value", properties, &required, (1, 0), 0)?;
                top.push(group("value", Repetition::OPTIONAL, types)?);
                Some(value)
            }
            None => None,
        };
        let schema = Type::group_type_builder("record")
            .with_fields(top)
            .build()?;
        Ok(Self {
            schema: Arc::new(schema),
            incremental,
            key,
            value,
            columns: builder.columns,
        })
    }

    /// Writes object `part` of `groups` (see [`Extract::objects`]) to `path`; returns its size.
    pub(in crate::fake) fn write(
        &self,
        extract: &Extract,
        groups: &[Vec<(u64, RowState)>],
        part: usize,
        path: &Path,
    ) -> io::Result<u64> {
        let file = BufWriter::with_capacity(64 * 1024, File::create(path)?);
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(format!(
                "dapsync fake DAP server {}",
                env!("CARGO_PKG_VERSION")
            ))
            .build();
        let mut writer =
            SerializedFileWriter::new(file, Arc::clone(&self.schema), Arc::new(properties))
                .map_err(io_error)?;
        let mut columns = self.columns.clone();
        let (mut rows, mut bytes) = (0, 0);
        extract.visit(groups, part, |item| {
            let Item::Record(record) = item else {
                return Ok::<(), io::Error>(());
            };
            bytes += self.shred(&record, &mut columns)?;
            rows += 1;
            if rows >= ROW_GROUP_ROWS || bytes >= ROW_GROUP_BYTES {
                flush(&mut writer, &mut columns)?;
                (rows, bytes) = (0, 0);
            }
            Ok(())
        })?;
        if rows > 0 {
            flush(&mut writer, &mut columns)?;
        }
        let mut file = writer.into_inner().map_err(io_error)?;
        file.flush()?;
        file.get_ref().metadata().map(|metadata| metadata.len())
    }

    /// Adds one record to the column buffers; returns roughly how many bytes it took.
    fn shred(&self, record: &Record<'_>, columns: &mut [Column]) -> Result<usize, Misfit> {
        columns[0].push_micros(record.commit.ts.timestamp_micros());
        let mut bytes = 8;
        if self.incremental {
            let action = Value::String(record.action.unwrap_or("U").to_owned());
            bytes += columns[1].push(&action, 0, 0)?;
        }
        bytes += shred_fields(&self.key, record.key, 0, 0, 0, columns)?;
        if let Some(fields) = &self.value {
            match record.value {
                Some(value) => bytes += shred_fields(fields, value, 1, 0, 0, columns)?,
                None => fields
                    .iter()
                    .for_each(|(_, node)| nulls(node, 0, 0, columns)),
            }
        }
        Ok(bytes)
    }
}

/// The value columns required in every schema version of the table.
fn required_everywhere(extract: &Extract) -> Vec<&str> {
    fn required(schema: &Value) -> Vec<&str> {
        schema
            .pointer("/properties/value")
            .map(|value| required_names(value, schema))
            .unwrap_or_default()
    }
    let versions = &extract.source.schemas;
    required(extract.schema())
        .into_iter()
        .filter(|name| versions.iter().all(|v| required(&v.schema).contains(name)))
        .collect()
}

fn flush(
    writer: &mut SerializedFileWriter<BufWriter<File>>,
    columns: &mut [Column],
) -> io::Result<()> {
    let mut group = writer.next_row_group().map_err(io_error)?;
    for column in columns.iter_mut() {
        column.write(&mut group).map_err(io_error)?;
    }
    group.close().map_err(io_error)?;
    Ok(())
}

/// Shreds the properties of an object present at definition level `def` (Dremel-style): each
/// leaf gets a value or a NULL with its definition and repetition levels. `depth` is the
/// repetition level of the innermost list around.
fn shred_fields(
    fields: &[(String, Node)],
    object: &Map<String, Value>,
    def: i16,
    rep: i16,
    depth: i16,
    columns: &mut [Column],
) -> Result<usize, Misfit> {
    let mut bytes = 0;
    for (name, node) in fields {
        bytes += shred(node, object.get(name), def, rep, depth, columns)?;
    }
    Ok(bytes)
}

fn shred(
    node: &Node,
    value: Option<&Value>,
    def: i16,
    rep: i16,
    depth: i16,
    columns: &mut [Column],
) -> Result<usize, Misfit> {
    let Some(value) = value.filter(|value| !value.is_null()) else {
        if !node.optional() {
            let column = first_column(node);
            return Err(Misfit {
                column: columns[column].name.clone(),
                problem: "a required value is missing",
            });
        }
        nulls(node, def, rep, columns);
        return Ok(1);
    };
    let def = def + i16::from(node.optional());
    match node {
        Node::Leaf { column, .. } => columns[*column].push(value, def, rep),
        Node::Group { fields, .. } => {
            let object = value.as_object().ok_or_else(|| Misfit {
                column: columns[first_column(node)].name.clone(),
                problem: "not an object",
            })?;
            shred_fields(fields, object, def, rep, depth, columns)
        }
        Node::List { element, .. } => {
            let items = value.as_array().ok_or_else(|| Misfit {
                column: columns[first_column(node)].name.clone(),
                problem: "not an array",
            })?;
            if items.is_empty() {
                nulls(element, def, rep, columns);
                return Ok(1);
            }
            let mut bytes = 0;
            for (i, item) in items.iter().enumerate() {
                let rep = if i == 0 { rep } else { depth + 1 };
                bytes += shred(element, Some(item), def + 1, rep, depth + 1, columns)?;
            }
            Ok(bytes)
        }
    }
}

/// A NULL (at definition level `def`) in every leaf under `node`.
fn nulls(node: &Node, def: i16, rep: i16, columns: &mut [Column]) {
    match node {
        Node::Leaf { column, .. } => columns[*column].levels(def, rep),
        Node::Group { fields, .. } => fields
            .iter()
            .for_each(|(_, field)| nulls(field, def, rep, columns)),
        Node::List { element, .. } => nulls(element, def, rep, columns),
    }
}

/// The first leaf column under `node`, to name it in errors.
fn first_column(node: &Node) -> usize {
    match node {
        Node::Leaf { column, .. } => *column,
        Node::Group { fields, .. } => fields.first().map_or(0, |(_, f)| first_column(f)),
        Node::List { element, .. } => first_column(element),
    }
}
