//! Deterministic values for a table's JSON schema.
//!
//! A schema is compiled once into a [`RowShape`]; rows are then drawn from it with a seeded RNG, so
//! the same inputs always give the same row. Keys come from the key index alone, so a row keeps its
//! key through all its versions.

use std::net::{Ipv4Addr, Ipv6Addr};

use chrono::{DateTime, Days, NaiveDate, SecondsFormat};
use fastrand::Rng;
use serde_json::{Map, Value};

/// Nested schemas deeper than this (or `$ref` cycles) generate plain strings.
pub(super) const MAX_DEPTH: usize = 16;

/// Text pieces that exercise escaping and encoding: accents, CJK, emoji, quotes, backslashes,
/// tabs, newlines, markup and the null markers of COPY and CSV.
const WORDS: &[&str] = &[
    "lorem",
    "ipsum",
    "dolor",
    "course",
    "quiz",
    "Grüße",
    "café",
    "naïve",
    "Ünïcödé",
    "日本語",
    "漢字テスト",
    "한국어",
    "Ελληνικά",
    "العربية",
    "emoji 🎓",
    "📚✨",
    "\"quoted\"",
    "it's",
    "back\\slash",
    "tab\there",
    "new\nline",
    "crlf\r\n",
    "<b>bold</b>",
    "50%",
    "a_b",
    "NULL",
    "\\N",
    "",
    " ",
    "x",
];

/// Mixes values into one well-spread 64-bit hash.
pub(super) fn mix(parts: &[u64]) -> u64 {
    parts.iter().fold(0x243F_6A88_85A3_08D3, |acc, &part| {
        splitmix(acc ^ splitmix(part))
    })
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A hash of a text that never changes between Rust releases (FNV-1a), unlike std's hashers.
pub(super) fn text_hash(text: &str) -> u64 {
    crate::hash::fnv1a(text.as_bytes())
}

/// The compiled schema of a table's rows: the properties of `key` and of `value`.
#[derive(Debug, Clone)]
pub(super) struct RowShape {
    key: Vec<Prop>,
    value: Vec<Prop>,
}

#[derive(Debug, Clone)]
struct Prop {
    name: String,
    shape: Shape,
    required: bool,
}

/// What a schema allows for one value.
#[derive(Debug, Clone)]
enum Shape {
    Const(Value),
    Enum(Vec<Value>),
    /// `oneOf`/`anyOf`: one branch is drawn per value.
    Choice(Vec<Shape>),
    Boolean,
    Integer {
        min: i64,
        max: i64,
    },
    Number(NumberRange),
    Text {
        min_chars: usize,
        max_chars: Option<usize>,
    },
    DateTime,
    Date,
    Uuid,
    Ipv4,
    Ipv6,
    /// `open`: other properties are allowed (a free-form object when there are no properties).
    Object {
        props: Vec<Prop>,
        open: bool,
    },
    Array {
        items: Box<Shape>,
        min_items: usize,
        max_items: usize,
    },
    Null,
    /// A schema this generator does not understand (or `{}`): any short string.
    Any,
}

#[derive(Debug, Clone, Copy)]
struct NumberRange {
    /// Bound and whether it is exclusive.
    min: Option<(f64, bool)>,
    max: Option<(f64, bool)>,
    multiple_of: Option<f64>,
}

impl RowShape {
    /// Compiles a table schema (`{"properties": {"key": ..., "value": ...}}`); `None` when it
    /// has no key properties.
    pub(super) fn compile(schema: &Value) -> Option<RowShape> {
        let key = object_props(schema.pointer("/properties/key")?, schema, 0);
        if key.is_empty() {
            return None;
        }
        let value = schema
            .pointer("/properties/value")
            .map_or_else(Vec::new, |value| object_props(value, schema, 0));
        Some(RowShape { key, value })
    }

    /// The key of the row with this index: integers are `index + 1`, uuids embed the index, strings
    /// spell it, so keys are unique and stable across versions.
    pub(super) fn key(&self, table_hash: u64, index: u64) -> Map<String, Value> {
        self.key
            .iter()
            .map(|prop| (prop.name.clone(), prop.shape.key_value(table_hash, index)))
            .collect()
    }

    /// The value columns of one row version; nullable columns are sometimes left out (NULL).
    pub(super) fn value(&self, rng: &mut Rng) -> Map<String, Value> {
        generate_props(&self.value, rng)
    }
}

/// The properties of an object schema, each marked required or not.
fn object_props(object: &Value, root: &Value, depth: usize) -> Vec<Prop> {
    let object = resolve(object, root);
    let required: Vec<&str> = object
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(props) = object.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    props
        .iter()
        .map(|(name, schema)| Prop {
            name: name.clone(),
            shape: Shape::compile(schema, root, depth + 1),
            required: required.contains(&name.as_str()),
        })
        .collect()
}

/// The JSON type a schema object describes: its `type` (the first that is not `null` of a list),
/// else `object` or `array` by its keywords, else "".
pub(super) fn type_name(schema: &Map<String, Value>) -> &str {
    match schema.get("type") {
        Some(Value::String(name)) => name.as_str(),
        Some(Value::Array(names)) => names
            .iter()
            .filter_map(Value::as_str)
            .find(|name| *name != "null")
            .unwrap_or("null"),
        _ if schema.contains_key("properties") => "object",
        _ if schema.contains_key("items") => "array",
        _ => "",
    }
}

/// Follows local `$ref`s (`#/...`), a few hops at most.
pub(super) fn resolve<'a>(mut schema: &'a Value, root: &'a Value) -> &'a Value {
    for _ in 0..8 {
        match schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix('#'))
        {
            Some(pointer) => match root.pointer(pointer) {
                Some(target) => schema = target,
                None => break,
            },
            None => break,
        }
    }
    schema
}

impl Shape {
    fn compile(schema: &Value, root: &Value, depth: usize) -> Shape {
        let schema = resolve(schema, root);
        let Some(s) = schema.as_object() else {
            return Shape::Any;
        };
        if depth > MAX_DEPTH {
            return Shape::Any;
        }
        if let Some(value) = s.get("const") {
            return Shape::Const(value.clone());
        }
        if let Some(values) = s.get("enum").and_then(Value::as_array)
            && !values.is_empty()
        {
            return Shape::Enum(values.clone());
        }
        for keyword in ["oneOf", "anyOf"] {
            if let Some(branches) = s.get(keyword).and_then(Value::as_array)
                && !branches.is_empty()
            {
                return Shape::Choice(
                    branches
                        .iter()
                        .map(|b| Shape::compile(b, root, depth + 1))
                        .collect(),
                );
            }
        }
        let type_name = type_name(s);
        let number = |name: &str| s.get(name).and_then(Value::as_f64);
        let count = |name: &str| {
            s.get(name)
                .and_then(Value::as_u64)
                .and_then(|n| usize::try_from(n).ok())
        };
        match type_name {
            "boolean" => Shape::Boolean,
            "integer" => {
                let (mut min, mut max) = match s.get("format").and_then(Value::as_str) {
                    Some("int16") => (i64::from(i16::MIN), i64::from(i16::MAX)),
                    Some("int32") => (i64::from(i32::MIN), i64::from(i32::MAX)),
                    _ => (i64::MIN, i64::MAX),
                };
                // `as` saturates, which is what a bound outside the i64 range means.
                if let Some(bound) = number("minimum") {
                    min = min.max(bound.ceil() as i64);
                }
                if let Some(bound) = number("exclusiveMinimum") {
                    min = min.max((bound.floor() as i64).saturating_add(1));
                }
                if let Some(bound) = number("maximum") {
                    max = max.min(bound.floor() as i64);
                }
                if let Some(bound) = number("exclusiveMaximum") {
                    max = max.min((bound.ceil() as i64).saturating_sub(1));
                }
                Shape::Integer {
                    min,
                    max: max.max(min),
                }
            }
            "number" => Shape::Number(NumberRange {
                min: number("exclusiveMinimum")
                    .map(|b| (b, true))
                    .or(number("minimum").map(|b| (b, false))),
                max: number("exclusiveMaximum")
                    .map(|b| (b, true))
                    .or(number("maximum").map(|b| (b, false))),
                multiple_of: number("multipleOf").filter(|m| *m > 0.0),
            }),
            "string" => match s.get("format").and_then(Value::as_str) {
                Some("date-time") => Shape::DateTime,
                Some("date") => Shape::Date,
                Some("uuid") => Shape::Uuid,
                Some("ipv4") => Shape::Ipv4,
                Some("ipv6") => Shape::Ipv6,
                _ => Shape::Text {
                    min_chars: count("minLength").unwrap_or(0),
                    max_chars: count("maxLength"),
                },
            },
            "object" => Shape::Object {
                props: object_props(schema, root, depth),
                open: s.get("additionalProperties") != Some(&Value::Bool(false)),
            },
            "array" => {
                let min_items = count("minItems").unwrap_or(0);
                Shape::Array {
                    items: Box::new(
                        s.get("items")
                            .map_or(Shape::Any, |items| Shape::compile(items, root, depth + 1)),
                    ),
                    min_items,
                    max_items: count("maxItems").unwrap_or(3).max(min_items),
                }
            }
            "null" => Shape::Null,
            _ => Shape::Any,
        }
    }

    fn generate(&self, rng: &mut Rng) -> Value {
        match self {
            Shape::Const(value) => value.clone(),
            Shape::Enum(values) => values[rng.usize(..values.len())].clone(),
            Shape::Choice(branches) => choose_branch(branches, rng).generate(rng),
            Shape::Boolean => Value::Bool(rng.bool()),
            Shape::Integer { min, max } => Value::from(integer(rng, *min, *max)),
            Shape::Number(range) => Value::from(range.generate(rng)),
            Shape::Text {
                min_chars,
                max_chars,
            } => Value::String(text(rng, *min_chars, *max_chars)),
            Shape::DateTime => Value::String(date_time(rng)),
            Shape::Date => Value::String(date(rng)),
            Shape::Uuid => Value::String(
                uuid::Builder::from_random_bytes(rng.u128(..).to_le_bytes())
                    .into_uuid()
                    .to_string(),
            ),
            Shape::Ipv4 => Value::String(Ipv4Addr::from(rng.u32(..)).to_string()),
            Shape::Ipv6 => Value::String(ipv6(rng)),
            Shape::Object { props, open } => {
                let mut object = generate_props(props, rng);
                if *open && props.is_empty() {
                    object.insert("note".to_owned(), Value::String(text(rng, 0, Some(40))));
                    object.insert("count".to_owned(), Value::from(rng.i64(-5..=500)));
                }
                Value::Object(object)
            }
            Shape::Array {
                items,
                min_items,
                max_items,
            } => Value::Array(
                (0..rng.usize(*min_items..=*max_items))
                    .map(|_| items.generate(rng))
                    .collect(),
            ),
            Shape::Null => Value::Null,
            Shape::Any => Value::String(text(rng, 0, Some(40))),
        }
    }

    /// A key column's value for a key index (see [`RowShape::key`]).
    fn key_value(&self, table_hash: u64, index: u64) -> Value {
        match self {
            Shape::Integer { min, max } => {
                // Wraps into the column's range: unique as long as the table fits in it.
                let (min, max) = (i128::from(*min), i128::from(*max));
                let wanted = i128::from(index) + 1;
                let id = if (min..=max).contains(&wanted) {
                    wanted
                } else {
                    min + (wanted - min).rem_euclid(max - min + 1)
                };
                Value::from(i64::try_from(id).unwrap_or(i64::MAX))
            }
            Shape::Uuid => {
                let mut bytes = [0; 16];
                bytes[..8].copy_from_slice(&table_hash.to_be_bytes());
                // Bytes 9..16 hold the index; the builder overwrites only version and variant bits.
                bytes[8..].copy_from_slice(&index.to_be_bytes());
                bytes[8] = 0;
                Value::String(
                    uuid::Builder::from_random_bytes(bytes)
                        .into_uuid()
                        .to_string(),
                )
            }
            Shape::Text { max_chars, .. } => {
                let spelled = format!("key-{index}");
                let fits = max_chars.is_none_or(|max| spelled.len() <= max);
                Value::String(if fits { spelled } else { index.to_string() })
            }
            other => other.generate(&mut Rng::with_seed(mix(&[table_hash, index]))),
        }
    }
}

fn generate_props(props: &[Prop], rng: &mut Rng) -> Map<String, Value> {
    let mut object = Map::new();
    for prop in props {
        // A nullable column is NULL (left out) about one time in eight.
        if prop.required || rng.u8(..8) != 0 {
            object.insert(prop.name.clone(), prop.shape.generate(rng));
        }
    }
    object
}

/// A `oneOf` branch: a `const` branch (the truncation placeholder) only now and then.
fn choose_branch<'a>(branches: &'a [Shape], rng: &mut Rng) -> &'a Shape {
    let (consts, others): (Vec<&Shape>, Vec<&Shape>) =
        branches.iter().partition(|b| matches!(b, Shape::Const(_)));
    if others.is_empty() || (!consts.is_empty() && rng.u8(..25) == 0) {
        return &branches[rng.usize(..branches.len())];
    }
    others[rng.usize(..others.len())]
}

/// Mostly small positive numbers (like ids), sometimes the range's edges or zero.
fn integer(rng: &mut Rng, min: i64, max: i64) -> i64 {
    match rng.u8(..25) {
        0 => min,
        1 => max,
        2 if min <= 0 && 0 <= max => 0,
        _ => {
            let (low, high) = (min.max(1), max.min(1_000_000));
            if low <= high {
                rng.i64(low..=high)
            } else {
                rng.i64(min..=max)
            }
        }
    }
}

impl NumberRange {
    fn generate(&self, rng: &mut Rng) -> f64 {
        if let Some(step) = self.multiple_of {
            return self.multiple(rng, step);
        }
        if self.min.is_some() || self.max.is_some() {
            let low = self.min.map_or(-1e6, |(bound, _)| bound);
            let high = self.max.map_or(1e6, |(bound, _)| bound).max(low);
            // Halves first, so that even the widest range has a finite span.
            let value = low + rng.f64() * (high / 2.0 - low / 2.0) * 2.0;
            // Stay strictly inside exclusive bounds.
            return if !value.is_finite() || value <= low || value >= high {
                low / 2.0 + high / 2.0
            } else {
                value
            };
        }
        match rng.u8(..40) {
            0 => 0.0,
            1 => f64::MAX,
            2 => f64::MIN,
            3 => (rng.f64() + 1.0) * 10f64.powi(rng.i32(15..=300)),
            4 => -(rng.f64() + 1.0) * 10f64.powi(rng.i32(15..=300)),
            5 => (rng.f64() + 1.0) * 10f64.powi(-rng.i32(5..=300)),
            6..=15 => rng.i64(-1000..=1000) as f64,
            _ => (rng.f64() - 0.5) * 2e4,
        }
    }

    /// A multiple of `step` within the bounds, written so that its shortest decimal form is exact
    /// (`12.34`, not `12.340000000000002`).
    fn multiple(&self, rng: &mut Rng, step: f64) -> f64 {
        let steps = |bound: f64| bound / step;
        let low = self.min.map_or(-1e6, |(bound, exclusive)| {
            let k = steps(bound).ceil();
            if exclusive && k == steps(bound) {
                k + 1.0
            } else {
                k
            }
        });
        let high = self.max.map_or(1e6, |(bound, exclusive)| {
            let k = steps(bound).floor();
            if exclusive && k == steps(bound) {
                k - 1.0
            } else {
                k
            }
        });
        let k = integer(rng, low as i64, (high as i64).max(low as i64)) as f64;
        let inverse = (1.0 / step).round();
        if step < 1.0 && (inverse * step - 1.0).abs() < 1e-9 {
            k / inverse
        } else {
            k * step
        }
    }
}

/// Free text, sometimes empty, long, or exactly `max_chars` multi-byte characters.
fn text(rng: &mut Rng, min_chars: usize, max_chars: Option<usize>) -> String {
    let mut text = match rng.u8(..40) {
        0 => String::new(),
        1 => (0..rng.usize(40..400))
            .map(|_| WORDS[rng.usize(..WORDS.len())])
            .collect::<Vec<_>>()
            .join(" "),
        2 if max_chars.is_some() => "é漢".chars().cycle().take(max_chars.unwrap_or(0)).collect(),
        _ => (0..rng.usize(1..=6))
            .map(|_| WORDS[rng.usize(..WORDS.len())])
            .collect::<Vec<_>>()
            .join(" "),
    };
    if let Some(max) = max_chars
        && text.chars().count() > max
    {
        text = text.chars().take(max).collect();
    }
    let missing = min_chars.saturating_sub(text.chars().count());
    text.extend(std::iter::repeat_n('x', missing));
    text
}

/// An RFC 3339 UTC instant between 2000 and 2035, with whole seconds, milliseconds or microseconds.
fn date_time(rng: &mut Rng) -> String {
    const START: i64 = 946_684_800;
    const SPAN: i64 = 36 * 365 * 86_400;
    let instant = DateTime::from_timestamp(START + rng.i64(0..SPAN), rng.u32(0..1_000_000) * 1000)
        .unwrap_or_default();
    let precision = match rng.u8(..10) {
        0..=4 => SecondsFormat::Secs,
        5..=7 => SecondsFormat::Micros,
        _ => SecondsFormat::Millis,
    };
    instant.to_rfc3339_opts(precision, true)
}

fn date(rng: &mut Rng) -> String {
    let start = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default();
    (start + Days::new(rng.u64(0..13_000))).to_string()
}

/// Random addresses and short compressed ones (`2001:db8::5`, `::1`).
fn ipv6(rng: &mut Rng) -> String {
    let address = match rng.u8(..4) {
        0 => Ipv6Addr::LOCALHOST,
        1 => Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, rng.u16(..)),
        _ => Ipv6Addr::from(rng.u128(..)),
    };
    address.to_string()
}

#[cfg(test)]
mod tests;
