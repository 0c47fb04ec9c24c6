//! Column values: JSON values of DAP records converted to typed cells, and the encodings the
//! loaders send (PostgreSQL COPY text, MySQL and SQLite bind parameters).
//!
//! Conversion is where a record the database could not take is caught, before it reaches the
//! database: a value of the wrong type, a string over its length, NaN in a MySQL float column, a NUL
//! character for PostgreSQL. The caller turns the error into a row of the reject table.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::IpAddr;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike};
use serde_json::Value;

use crate::schema::{ColumnType, TRUNCATION_PLACEHOLDER};
use crate::sql::Dialect;

/// A typed column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Text, enum values and IP addresses (checked, as sent).
    Text(String),
    /// A UTC instant without its time zone, microsecond precision.
    Timestamp(NaiveDateTime),
    Date(NaiveDate),
    Uuid(uuid::Uuid),
    /// Serialized JSON: objects, arrays stored as JSON.
    Json(String),
    /// An IP address packed as the official client stores it in MySQL's `binary(16)`: IPv4 in
    /// the first 4 bytes and zeros after, IPv6 as its 16 bytes (see [`pack_ip`]).
    PackedIp([u8; 16]),
    /// PostgreSQL arrays of scalars.
    Array(Vec<Cell>),
}

/// How one column's values are checked and converted.
#[derive(Debug, Clone)]
pub struct ColumnCodec {
    ty: ColumnType,
    nullable: bool,
    dialect: Dialect,
    /// Allowed values of a string enum, for a fast membership check.
    enum_values: Option<HashSet<String>>,
    /// MySQL: IP addresses go into a `binary(16)` column, packed (see [`pack_ip`]).
    packed_ip: bool,
    /// A key column whose strings the database can index only up to this many characters.
    key_limit: Option<u32>,
}

impl ColumnCodec {
    /// The codec of a column of type `ty` in `dialect`.
    pub fn new(ty: ColumnType, nullable: bool, dialect: Dialect) -> Self {
        let enum_values = match &ty {
            ColumnType::Enum { values } => Some(values.iter().cloned().collect()),
            _ => None,
        };
        let packed_ip = dialect == Dialect::Mysql && ty == ColumnType::IpAddress;
        Self {
            ty,
            nullable,
            dialect,
            enum_values,
            packed_ip,
            key_limit: None,
        }
    }

    /// The same codec, taking NULL or not as `nullable` says.
    pub fn nullable(mut self, nullable: bool) -> Self {
        self.nullable = nullable;
        self
    }

    /// The codec for a key column the database can index only up to `chars` characters (see
    /// `Dialect::key_text_limit`): longer keys are refused with that reason.
    pub fn with_key_limit(mut self, chars: Option<u32>) -> Self {
        self.key_limit = chars;
        self
    }

    /// The codec for a column that stores IP addresses as text after all: a MySQL table that
    /// dapsync created before it used the official client's `binary(16)`.
    pub fn with_text_ip(mut self) -> Self {
        self.packed_ip = false;
        self
    }

    /// Whether the column holds JSON text (objects, arrays): its values are converted from
    /// their raw JSON with [`ColumnCodec::convert_raw`], the others with
    /// [`ColumnCodec::convert_token`].
    pub fn is_nested(&self) -> bool {
        matches!(self.ty, ColumnType::Json | ColumnType::Array { .. })
    }

    /// Converts a scalar value as the parser produced it. `Token::Null` stands for an absent
    /// property too (a missing property means NULL).
    pub fn convert_token(&self, token: Token<'_>) -> Result<Cell, String> {
        match token {
            Token::Null if self.nullable => Ok(Cell::Null),
            Token::Null => Err("is missing but the column is NOT NULL".into()),
            Token::Str(text)
                if self.key_limit.is_some_and(|max| {
                    text.len() > max as usize && text.chars().count() > max as usize
                }) =>
            {
                Err(format!(
                    "is a key of {} characters, longer than the {} this database can index in a primary key",
                    text.chars().count(),
                    self.key_limit.unwrap_or_default()
                ))
            }
            token => {
                let cell = convert(&self.ty, token, self.dialect, self.enum_values.as_ref())?;
                Ok(match cell {
                    Cell::Text(text) if self.packed_ip => match text.parse::<IpAddr>() {
                        Ok(ip) => Cell::PackedIp(pack_ip(ip)),
                        Err(_) => Cell::Text(text),
                    },
                    cell => cell,
                })
            }
        }
    }

    /// Converts the raw JSON text of a value of a nested column (see [`ColumnCodec::is_nested`]).
    pub fn convert_raw(&self, json: &str) -> Result<Cell, String> {
        let json = json.trim();
        if json == "null" {
            return self.convert_token(Token::Null);
        }
        let array = json.starts_with('[');
        match &self.ty {
            ColumnType::Array { item } if self.dialect == Dialect::Postgres => {
                let Ok(Value::Array(items)) = serde_json::from_str::<Value>(json) else {
                    return Err(format!("expected an array, got {}", json_kind(json)));
                };
                items
                    .into_iter()
                    .map(|item_value| match item_value {
                        Value::Null => Ok(Cell::Null),
                        value => convert(item, Token::from(value), self.dialect, None)
                            .map_err(|e| format!("has an item that {e}")),
                    })
                    .collect::<Result<_, _>>()
                    .map(Cell::Array)
            }
            ColumnType::Array { .. } if !array => {
                Err(format!("expected an array, got {}", json_kind(json)))
            }
            _ => {
                check_json_escapes(json, self.dialect)?;
                Ok(Cell::Json(json.to_owned()))
            }
        }
    }
}

/// A scalar JSON value as the parser produced it, borrowing strings from the line where it can.
#[derive(Debug, Clone, PartialEq)]
pub enum Token<'a> {
    /// `null`, or an absent property.
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(std::borrow::Cow<'a, str>),
    /// An object or an array where a scalar was expected.
    Nested(&'static str),
}

/// Refuses what the JSON columns would refuse: a lone surrogate escape (`\ud800`), which is not
/// valid JSON for PostgreSQL jsonb nor MySQL's `JSON_VALID`, and on PostgreSQL a NUL character
/// (`\u0000`), which jsonb cannot hold. Only text with such escapes is parsed again.
fn check_json_escapes(json: &str, dialect: Dialect) -> Result<(), String> {
    let surrogate = json.contains("\\ud") || json.contains("\\uD");
    let nul = dialect == Dialect::Postgres && json.contains("\\u0000");
    if !(surrogate || nul) {
        return Ok(());
    }
    let value: Value = serde_json::from_str(json).map_err(|e| format!("is not valid JSON: {e}"))?;
    fn has_nul(value: &Value) -> bool {
        match value {
            Value::String(text) => text.contains('\0'),
            Value::Array(items) => items.iter().any(has_nul),
            Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    if nul && has_nul(&value) {
        return Err("contains a NUL character, which PostgreSQL jsonb cannot hold".into());
    }
    Ok(())
}

impl From<Value> for Token<'_> {
    fn from(value: Value) -> Self {
        match value {
            Value::Null => Token::Null,
            Value::Bool(b) => Token::Bool(b),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => Token::Int(i),
                (_, Some(u), _) => Token::UInt(u),
                (_, _, f) => Token::Float(f.unwrap_or(f64::NAN)),
            },
            Value::String(s) => Token::Str(s.into()),
            Value::Array(_) => Token::Nested("an array"),
            Value::Object(_) => Token::Nested("an object"),
        }
    }
}

impl Token<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Token::Null => "null",
            Token::Bool(_) => "a boolean",
            Token::Int(_) | Token::UInt(_) | Token::Float(_) => "a number",
            Token::Str(_) => "a string",
            Token::Nested(kind) => kind,
        }
    }
}

fn json_kind(json: &str) -> &'static str {
    match json.as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        _ => "a number",
    }
}

fn convert(
    ty: &ColumnType,
    token: Token<'_>,
    dialect: Dialect,
    enums: Option<&HashSet<String>>,
) -> Result<Cell, String> {
    match ty {
        ColumnType::SmallInt => int_in(token, i16::MIN.into(), i16::MAX.into(), "smallint"),
        ColumnType::Int => int_in(token, i32::MIN.into(), i32::MAX.into(), "integer"),
        ColumnType::BigInt | ColumnType::IntEnum { .. } => {
            int_in(token, i64::MIN, i64::MAX, "bigint")
        }
        ColumnType::Double => float(token, dialect),
        ColumnType::Boolean => match token {
            Token::Bool(b) => Ok(Cell::Bool(b)),
            other => Err(format!("expected a boolean, got {}", other.kind())),
        },
        ColumnType::Text {
            max_length,
            truncatable,
        } => {
            let text = string(token, dialect)?;
            if let Some(max) = max_length {
                let fits = (*max as usize) >= text.len() || text.chars().count() <= *max as usize;
                if !(fits || *truncatable && text == TRUNCATION_PLACEHOLDER) {
                    return Err(format!("is longer than its maximum of {max} characters"));
                }
            }
            Ok(Cell::Text(text.into_owned()))
        }
        ColumnType::Timestamp => {
            let text = string(token, dialect)?;
            let instant = DateTime::parse_from_rfc3339(&text)
                .map_err(|e| format!("is not an RFC 3339 timestamp: {e}"))?;
            let utc = instant.naive_utc();
            check_year(utc.year())?;
            // Microseconds are what every target keeps; finer digits are cut, never rounded up.
            let micros = utc
                .with_nanosecond(utc.nanosecond() / 1_000 * 1_000)
                .unwrap_or(utc);
            Ok(Cell::Timestamp(micros))
        }
        ColumnType::Date => {
            let text = string(token, dialect)?;
            let date = NaiveDate::parse_from_str(&text, "%Y-%m-%d")
                .map_err(|e| format!("is not a date: {e}"))?;
            check_year(date.year())?;
            Ok(Cell::Date(date))
        }
        ColumnType::Uuid => {
            let text = string(token, dialect)?;
            uuid::Uuid::parse_str(&text)
                .map(Cell::Uuid)
                .map_err(|e| format!("is not a uuid: {e}"))
        }
        ColumnType::Enum { .. } => {
            let text = string(token, dialect)?;
            if enums.is_some_and(|values| !values.contains(text.as_ref())) {
                return Err(format!("value {text:?} is not one of the enum's values"));
            }
            Ok(Cell::Text(text.into_owned()))
        }
        ColumnType::IpAddress => {
            let text = string(token, dialect)?;
            text.parse::<IpAddr>()
                .map_err(|e| format!("is not an IP address: {e}"))?;
            Ok(Cell::Text(text.into_owned()))
        }
        ColumnType::Array { .. } => Err(format!("expected an array, got {}", token.kind())),
        ColumnType::Json => Err(format!("expected JSON, got {}", token.kind())),
    }
}

/// Years 1 to 9999: what every target's date types hold (PostgreSQL has no year 0, MySQL's
/// `datetime` ends with 9999).
fn check_year(year: i32) -> Result<(), String> {
    if (1..=9999).contains(&year) {
        Ok(())
    } else {
        Err(format!("has the year {year}, outside 1 to 9999"))
    }
}

fn int_in(token: Token<'_>, min: i64, max: i64, name: &str) -> Result<Cell, String> {
    let value = match token {
        Token::Int(i) => Some(i128::from(i)),
        Token::UInt(u) => Some(i128::from(u)),
        _ => None,
    };
    match value {
        Some(i) if (i128::from(min)..=i128::from(max)).contains(&i) => Ok(Cell::Int(i as i64)),
        Some(i) => Err(format!("value {i} is out of range for {name}")),
        None => Err(format!("expected an integer, got {}", token.kind())),
    }
}

fn float(token: Token<'_>, dialect: Dialect) -> Result<Cell, String> {
    let f = match &token {
        Token::Int(i) => *i as f64,
        Token::UInt(u) => *u as f64,
        Token::Float(f) => *f,
        // JSON has no NaN or Infinity; exporters that need them send them as strings.
        Token::Str(s) => match s.to_ascii_lowercase().as_str() {
            "nan" => f64::NAN,
            "infinity" | "inf" | "+infinity" => f64::INFINITY,
            "-infinity" | "-inf" => f64::NEG_INFINITY,
            _ => return Err(format!("expected a number, got the string {s:?}")),
        },
        other => return Err(format!("expected a number, got {}", other.kind())),
    };
    let allowed = match dialect {
        Dialect::Postgres => true,
        Dialect::Mysql => f.is_finite(),
        Dialect::Sqlite => !f.is_nan(),
    };
    if allowed {
        Ok(Cell::Float(f))
    } else {
        Err(format!(
            "{f} cannot be stored in a {dialect:?} float column"
        ))
    }
}

fn string(token: Token<'_>, dialect: Dialect) -> Result<std::borrow::Cow<'_, str>, String> {
    match token {
        Token::Str(s) if dialect == Dialect::Postgres && s.contains('\0') => {
            Err("contains a NUL character, which PostgreSQL text cannot hold".into())
        }
        Token::Str(s) => Ok(s),
        other => Err(format!("expected a string, got {}", other.kind())),
    }
}

/// Formats a timestamp the way every target parses it: `YYYY-MM-DD HH:MM:SS.ffffff`.
pub fn format_timestamp(ts: &NaiveDateTime, out: &mut String) {
    format_date(&ts.date(), out);
    let time = ts.time();
    out.push(' ');
    push_padded(out, time.hour(), 2);
    out.push(':');
    push_padded(out, time.minute(), 2);
    out.push(':');
    // A leap second arrives as nanoseconds over 10^9; it stays in the same second.
    push_padded(out, time.second(), 2);
    out.push('.');
    push_padded(out, (time.nanosecond() / 1_000).min(999_999), 6);
}

/// Formats a date as `YYYY-MM-DD` (chrono's own formatting for years outside 0..=9999).
fn format_date(date: &NaiveDate, out: &mut String) {
    match u32::try_from(date.year()) {
        Ok(year) if year <= 9999 => {
            push_padded(out, year, 4);
            out.push('-');
            push_padded(out, date.month(), 2);
            out.push('-');
            push_padded(out, date.day(), 2);
        }
        _ => {
            let _ = write!(out, "{}", date.format("%Y-%m-%d"));
        }
    }
}

/// Appends an integer in decimal.
fn push_int(out: &mut String, value: i64) {
    if value < 0 {
        out.push('-');
    }
    match u32::try_from(value.unsigned_abs()) {
        Ok(small) => push_padded(out, small, 1),
        Err(_) => {
            let _ = write!(out, "{}", value.unsigned_abs());
        }
    }
}

/// Appends `value` in decimal, zero-padded to `width` digits (the hot path of COPY encoding:
/// no format-string parsing).
fn push_padded(out: &mut String, value: u32, width: usize) {
    let mut digits = [0u8; 10];
    let mut rest = value;
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for _ in digits.len() - start..width {
        out.push('0');
    }
    out.extend(digits[start..].iter().map(|&d| char::from(d)));
}

/// Appends one row in PostgreSQL's COPY text format (tab-separated, `\N` for NULL, backslash
/// escapes), terminated by a newline.
pub fn write_copy_row<'a>(cells: impl IntoIterator<Item = &'a Cell>, out: &mut Vec<u8>) {
    let mut scratch = String::new();
    for (i, cell) in cells.into_iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        match cell {
            Cell::Null => out.extend_from_slice(b"\\N"),
            Cell::Text(text) | Cell::Json(text) => copy_escape(text, out),
            Cell::Array(items) => {
                scratch.clear();
                write_pg_array(items, &mut scratch);
                copy_escape(&scratch, out);
            }
            other => {
                scratch.clear();
                write_plain(other, &mut scratch);
                out.extend_from_slice(scratch.as_bytes());
            }
        }
    }
    out.push(b'\n');
}

/// Scalars that need no escaping.
fn write_plain(cell: &Cell, out: &mut String) {
    match cell {
        Cell::Int(i) => push_int(out, *i),
        Cell::Float(f) => {
            let _ = write!(out, "{f:?}");
        }
        Cell::Bool(b) => out.push(if *b { 't' } else { 'f' }),
        Cell::Timestamp(ts) => format_timestamp(ts, out),
        Cell::Date(d) => format_date(d, out),
        Cell::Uuid(u) => {
            let _ = write!(out, "{}", u.hyphenated());
        }
        Cell::PackedIp(bytes) => {
            let _ = write!(out, "{}", unpack_ip(bytes));
        }
        Cell::Null | Cell::Text(_) | Cell::Json(_) | Cell::Array(_) => {
            unreachable!("escaped by the caller")
        }
    }
}

/// A PostgreSQL array literal: `{1,2}`, `{"a","b \"q\""}`.
fn write_pg_array(items: &[Cell], out: &mut String) {
    out.push('{');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match item {
            Cell::Null => out.push_str("NULL"),
            Cell::Text(text) | Cell::Json(text) => {
                out.push('"');
                for c in text.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
            Cell::Array(inner) => write_pg_array(inner, out),
            other => {
                out.push('"');
                write_plain(other, out);
                out.push('"');
            }
        }
    }
    out.push('}');
}

fn copy_escape(text: &str, out: &mut Vec<u8>) {
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escaped);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// An IP address as the official client stores it in MySQL's `binary(16)`: an IPv4 address in
/// the first 4 bytes and zeros after, an IPv6 address as its 16 bytes.
pub fn pack_ip(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => {
            let mut bytes = [0; 16];
            bytes[..4].copy_from_slice(&v4.octets());
            bytes
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The address [`pack_ip`] packed. Twelve zero bytes after the first four read as IPv4, as the
/// official client reads them (no IPv6 address in use ends so: `a:b::` with `a`, `b` chosen so).
pub fn unpack_ip(bytes: &[u8; 16]) -> IpAddr {
    if bytes[4..].iter().all(|&b| b == 0) {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        IpAddr::from(*bytes)
    }
}

impl Cell {
    /// The cell as SQLite stores it: timestamps, dates and uuids as text.
    pub fn sqlite_text(&self) -> Option<String> {
        let mut out = String::new();
        match self {
            Cell::Timestamp(ts) => format_timestamp(ts, &mut out),
            Cell::Date(_) | Cell::Uuid(_) | Cell::PackedIp(_) => write_plain(self, &mut out),
            _ => return None,
        }
        Some(out)
    }

    /// A stable text form, used to tell keys apart.
    pub fn key_text(&self, out: &mut String) {
        match self {
            Cell::Null => out.push_str("\\N"),
            Cell::Text(t) | Cell::Json(t) => out.push_str(t),
            Cell::Array(items) => write_pg_array(items, out),
            other => write_plain(other, out),
        }
    }
}

#[cfg(test)]
mod tests;
