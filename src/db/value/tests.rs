use super::*;
use serde_json::json;

fn conv(ty: ColumnType, v: Value, dialect: Dialect) -> Result<Cell, String> {
    let codec = ColumnCodec::new(ty, true, dialect);
    if codec.is_nested() {
        codec.convert_raw(&v.to_string())
    } else {
        codec.convert_token(Token::from(v))
    }
}

fn text(max: Option<u32>, truncatable: bool) -> ColumnType {
    ColumnType::Text {
        max_length: max,
        truncatable,
    }
}

#[test]
fn integers_respect_their_width() {
    assert_eq!(
        conv(ColumnType::SmallInt, json!(32767), Dialect::Postgres),
        Ok(Cell::Int(32767))
    );
    assert!(
        conv(ColumnType::SmallInt, json!(32768), Dialect::Postgres)
            .unwrap_err()
            .contains("out of range")
    );
    assert!(conv(ColumnType::Int, json!(1.5), Dialect::Postgres).is_err());
    assert!(conv(ColumnType::BigInt, json!("12"), Dialect::Postgres).is_err());
    assert_eq!(
        conv(ColumnType::BigInt, json!(i64::MIN), Dialect::Mysql),
        Ok(Cell::Int(i64::MIN))
    );
}

#[test]
fn floats_and_their_specials() {
    assert_eq!(
        conv(ColumnType::Double, json!(-1.25e300), Dialect::Mysql),
        Ok(Cell::Float(-1.25e300))
    );
    assert!(
        matches!(conv(ColumnType::Double, json!("NaN"), Dialect::Postgres), Ok(Cell::Float(f)) if f.is_nan())
    );
    assert!(
        conv(ColumnType::Double, json!("NaN"), Dialect::Mysql)
            .unwrap_err()
            .contains("cannot be stored")
    );
    assert!(conv(ColumnType::Double, json!("Infinity"), Dialect::Mysql).is_err());
    assert_eq!(
        conv(ColumnType::Double, json!("-Infinity"), Dialect::Sqlite),
        Ok(Cell::Float(f64::NEG_INFINITY))
    );
}

#[test]
fn strings_respect_max_length_in_characters_and_the_placeholder() {
    assert!(conv(text(Some(3), false), json!("äöü"), Dialect::Postgres).is_ok());
    assert!(
        conv(text(Some(3), false), json!("abcd"), Dialect::Postgres)
            .unwrap_err()
            .contains("maximum of 3")
    );
    assert!(
        conv(
            text(Some(3), true),
            json!(TRUNCATION_PLACEHOLDER),
            Dialect::Postgres
        )
        .is_ok()
    );
    assert!(
        conv(
            text(Some(3), false),
            json!(TRUNCATION_PLACEHOLDER),
            Dialect::Postgres
        )
        .is_err()
    );
    assert!(
        conv(text(None, false), json!("a\0b"), Dialect::Postgres)
            .unwrap_err()
            .contains("NUL")
    );
    assert_eq!(
        conv(text(None, false), json!("a\0b"), Dialect::Mysql),
        Ok(Cell::Text("a\0b".into()))
    );
}

#[test]
fn timestamps_keep_microseconds_and_become_utc() {
    let cell = conv(
        ColumnType::Timestamp,
        json!("2024-05-01T12:00:00.1234567+02:00"),
        Dialect::Postgres,
    )
    .unwrap();
    let mut out = String::new();
    if let Cell::Timestamp(ts) = cell {
        format_timestamp(&ts, &mut out);
    }
    assert_eq!(out, "2024-05-01 10:00:00.123456");
    assert!(conv(ColumnType::Timestamp, json!("yesterday"), Dialect::Postgres).is_err());
}

#[test]
fn enums_uuids_ips_dates() {
    let ty = ColumnType::Enum {
        values: vec!["active".into(), "deleted".into()],
    };
    assert!(conv(ty.clone(), json!("active"), Dialect::Mysql).is_ok());
    assert!(
        conv(ty, json!("archived"), Dialect::Mysql)
            .unwrap_err()
            .contains("not one of")
    );
    assert!(conv(ColumnType::Uuid, json!("not-a-uuid"), Dialect::Postgres).is_err());
    assert!(conv(ColumnType::IpAddress, json!("::1"), Dialect::Postgres).is_ok());
    assert!(conv(ColumnType::IpAddress, json!("300.1.1.1"), Dialect::Postgres).is_err());
    assert!(conv(ColumnType::Date, json!("2024-02-30"), Dialect::Postgres).is_err());
    // Year 0 parses but no target holds it.
    for dialect in [Dialect::Postgres, Dialect::Mysql, Dialect::Sqlite] {
        assert!(conv(ColumnType::Date, json!("0000-01-01"), dialect).is_err());
        let ts = json!("0000-06-01T00:00:00Z");
        assert!(conv(ColumnType::Timestamp, ts, dialect).is_err());
        assert!(conv(ColumnType::Date, json!("0001-01-01"), dialect).is_ok());
    }
}

#[test]
fn json_columns_refuse_what_the_database_would() {
    let codec = |dialect| ColumnCodec::new(ColumnType::Json, true, dialect);
    for dialect in [Dialect::Postgres, Dialect::Mysql] {
        let lone = codec(dialect).convert_raw(r#"{"a": "x\ud800y"}"#);
        assert!(lone.unwrap_err().contains("not valid JSON"), "{dialect:?}");
        let pair = codec(dialect).convert_raw(r#"{"a": "\ud83c\udf93"}"#);
        assert!(pair.is_ok(), "{dialect:?}");
    }
    let nul = r#"{"a": "x\u0000"}"#;
    assert!(codec(Dialect::Postgres).convert_raw(nul).is_err());
    assert!(codec(Dialect::Mysql).convert_raw(nul).is_ok());
    // An escaped backslash followed by `u0000` is no NUL.
    let backslash = r#"{"a": "x\\u0000"}"#;
    assert!(codec(Dialect::Postgres).convert_raw(backslash).is_ok());
}

#[test]
fn required_columns_refuse_null() {
    let codec = ColumnCodec::new(ColumnType::BigInt, false, Dialect::Postgres);
    assert!(
        codec
            .convert_token(Token::Null)
            .unwrap_err()
            .contains("NOT NULL")
    );
    assert!(codec.convert_raw("null").is_err());
    assert_eq!(
        ColumnCodec::new(ColumnType::BigInt, true, Dialect::Postgres).convert_token(Token::Null),
        Ok(Cell::Null)
    );
}

#[test]
fn copy_text_escapes_everything_that_matters() {
    let array = conv(
        ColumnType::Array {
            item: Box::new(text(None, false)),
        },
        json!(["a\"b", "c\\d", null, "tab\there"]),
        Dialect::Postgres,
    )
    .unwrap();
    let cells = vec![
        Cell::Int(1),
        Cell::Null,
        Cell::Text("tab\tnew\nline\r\\back".into()),
        Cell::Bool(false),
        Cell::Json(r#"{"k":"v\n"}"#.into()),
        array,
        Cell::Float(0.1),
    ];
    let mut out = Vec::new();
    write_copy_row(&cells, &mut out);
    let expected = "1\t\\N\ttab\\tnew\\nline\\r\\\\back\tf\t{\"k\":\"v\\\\n\"}\t{\"a\\\\\"b\",\"c\\\\\\\\d\",NULL,\"tab\\there\"}\t0.1\n";
    assert_eq!(String::from_utf8(out).unwrap(), expected);
}
