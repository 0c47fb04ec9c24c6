//! Table schemas on real databases: every real DAP table created, loaded and read back equal, and
//! each kind of upstream schema change applied to a populated table, on PostgreSQL, MariaDB and
//! SQLite.

use std::collections::BTreeSet;
use std::net::IpAddr;

use dapsync::config::Config;
use dapsync::db::{RunKind, canonical_record};
use dapsync::fake::{Changes, FakeDap, FakeTable, fixture_schema, fixture_tables};
use dapsync::schema::{ColumnType, TRUNCATION_PLACEHOLDER, TableSchema};
use dapsync::sql::{Dialect, EnumMode};
use dapsync::sync::{Engine, Mode, RunReport};
use dapsync::table::TableId;
use serde_json::{Map, Value, json};

use crate::support::replica::{
    cell, dump, engine_with, fake_of, live_column, pg_count, pg_error_code,
};
use crate::support::{self, TestDb};

/// Rows per fixture table: enough for every nullable column to hold a value somewhere.
const FIXTURE_ROWS: u64 = 10;
/// Rows of the hand-written edge-case table: enough for its rarer values to come up.
const EDGE_ROWS: u64 = 300;

/// A table whose columns hold what the real tables do not: the truncation placeholder in a
/// `varchar` shorter than it, enum labels that need quoting, IP addresses, arrays of enums and
/// integers, and objects nested in objects.
fn edge_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": false,
        "required": ["key"],
        "properties": {
            "meta": {
                "type": "object",
                "additionalProperties": false,
                "required": ["ts"],
                "properties": {
                    "ts": {"type": "string", "format": "date-time"},
                    "action": {"type": "string", "enum": ["U", "D"]}
                }
            },
            "key": {
                "type": "object",
                "additionalProperties": false,
                "required": ["id"],
                "properties": {"id": {"type": "integer", "format": "int64"}}
            },
            "value": {
                "type": "object",
                "additionalProperties": false,
                "required": ["tiny"],
                "properties": {
                    "code": {"oneOf": [
                        {"type": "string", "const": TRUNCATION_PLACEHOLDER},
                        {"type": "string", "maxLength": 5}
                    ]},
                    "tiny": {"type": "integer", "format": "int16"},
                    "mood": {"type": "string", "enum": [
                        "it's", "back\\slash", "naïve", "日本語", "__dap_unspecified__"
                    ]},
                    "address": {"oneOf": [
                        {"type": "string", "format": "ipv4"},
                        {"type": "string", "format": "ipv6"}
                    ]},
                    "tags": {"type": "array", "items": {"type": "string", "enum": ["red", "green"]}},
                    "scores": {"type": "array", "items": {"type": "integer", "format": "int32"}},
                    "doc": {
                        "type": "object",
                        "properties": {
                            "inner": {
                                "type": "object",
                                "properties": {
                                    "ratio": {"type": "number"},
                                    "words": {"type": "array", "items": {"type": "string"}}
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}

/// A fake serving every fixture table and the edge-case tables (`canvas.edge_cases`,
/// `canvas.text_keys`).
async fn every_table() -> FakeDap {
    let mut tables: Vec<FakeTable> = fixture_tables()
        .map(|(ns, t)| FakeTable::new(ns, t, FIXTURE_ROWS))
        .collect();
    tables.push(FakeTable {
        schema: Some(edge_schema()),
        ..FakeTable::new("canvas", "edge_cases", EDGE_ROWS)
    });
    // A key of strings without `maxLength`: MySQL cannot make a text type its primary key.
    let mut text_keys = edge_schema();
    props(&mut text_keys, "key")["id"] = json!({"type": "string"});
    tables.push(FakeTable {
        schema: Some(text_keys),
        ..FakeTable::new("canvas", "text_keys", EDGE_ROWS)
    });
    fake_of(tables).await
}

fn names(tables: &[(&str, &str)]) -> Vec<TableId> {
    tables.iter().map(|(ns, t)| TableId::new(*ns, *t)).collect()
}

/// Syncs `tables`, `concurrency` at a time, then checks that each replica equals its source.
async fn sync_all(
    engine: &Engine,
    fake: &FakeDap,
    tables: &[(&str, &str)],
    concurrency: usize,
    expected: RunKind,
) {
    let results = dapsync::app::sync_tables(engine, names(tables), Mode::Sync, concurrency).await;
    assert_eq!(results.len(), tables.len());
    for (id, result) in results {
        let (ns, t) = (id.namespace, id.table);
        let runs = result.unwrap_or_else(|e| panic!("{ns}.{t}: {}", e.chain()));
        assert_eq!(runs.len(), 1, "{ns}.{t}");
        assert_eq!(runs[0].kind, expected, "{ns}.{t}");
        assert_eq!(runs[0].stats.rejected, 0, "{ns}.{t}: rejected records");
        support::assert_replica_matches(engine, fake, &ns, &t).await;
    }
}

/// One round of changes to every table of `tables`.
fn advance_all(fake: &FakeDap, tables: &[(&str, &str)]) {
    let changes = Changes {
        updates: 3,
        inserts: 3,
        deletes: 1,
        inserted_then_deleted: 1,
    };
    for &(ns, t) in tables {
        fake.advance(ns, t, changes);
    }
}

/// Creates and loads every table, checks every column holds a value somewhere and the boundary
/// values came through, then applies a round of changes to every table through the incremental
/// path.
async fn every_table_round_trips(dialect: Dialect, concurrency: usize) {
    let fake = every_table().await;
    let db = TestDb::new(dialect).await;
    let engine = support::engine(&fake, &db).await;
    let mut tables: Vec<(&str, &str)> = fixture_tables().collect();
    tables.push(("canvas", "edge_cases"));
    tables.push(("canvas", "text_keys"));

    sync_all(&engine, &fake, &tables, concurrency, RunKind::Snapshot).await;
    let mut seen = BTreeSet::new();
    for &(ns, t) in &tables {
        let schema = support::schema(&fake, ns, t);
        let rows = dump(&engine, &schema).await;
        for column in &schema.columns {
            assert!(
                rows.iter().any(|row| cell(row, &column.name).is_some()),
                "{dialect:?}: {ns}.{t}.{} is NULL in every row",
                column.name
            );
        }
        boundaries(&schema, &rows, &mut seen);
    }
    let missing: Vec<&&str> = BOUNDARIES.iter().filter(|b| !seen.contains(*b)).collect();
    assert!(missing.is_empty(), "{dialect:?}: never loaded {missing:?}");

    advance_all(&fake, &tables);
    sync_all(&engine, &fake, &tables, concurrency, RunKind::Incremental).await;
    engine.db().close().await;
}

/// The boundary values [`boundaries`] looks for.
const BOUNDARIES: &[&str] = &[
    "smallint min",
    "smallint max",
    "integer min",
    "integer max",
    "bigint min",
    "bigint max",
    "double max",
    "double min",
    "double tiny",
    "non-ASCII text",
    "emoji",
    "double quote",
    "single quote",
    "backslash",
    "tab",
    "newline",
    "carriage return",
    "COPY null marker",
    "empty text",
    "placeholder in a varchar shorter than it",
    "enum label with quote and backslash",
    "ipv4",
    "ipv6",
    "microseconds",
    "nested object",
    "array of enums",
    "array of integers",
];

/// Adds to `seen` the names of the boundary values among `rows`.
fn boundaries(schema: &TableSchema, rows: &[Value], seen: &mut BTreeSet<&'static str>) {
    for column in &schema.columns {
        for value in rows.iter().filter_map(|row| cell(row, &column.name)) {
            let mut found = |name: &'static str, hit: bool| {
                if hit {
                    seen.insert(name);
                }
            };
            match (&column.ty, value) {
                (ColumnType::SmallInt, Value::Number(n)) => {
                    found("smallint min", n.as_i64() == Some(i16::MIN.into()));
                    found("smallint max", n.as_i64() == Some(i16::MAX.into()));
                }
                (ColumnType::Int, Value::Number(n)) => {
                    found("integer min", n.as_i64() == Some(i32::MIN.into()));
                    found("integer max", n.as_i64() == Some(i32::MAX.into()));
                }
                (ColumnType::BigInt, Value::Number(n)) => {
                    found("bigint min", n.as_i64() == Some(i64::MIN));
                    found("bigint max", n.as_i64() == Some(i64::MAX));
                }
                (ColumnType::Double, Value::Number(n)) => {
                    let f = n.as_f64().unwrap();
                    found("double max", f == f64::MAX);
                    found("double min", f == f64::MIN);
                    found("double tiny", f != 0.0 && f.abs() < 1e-100);
                }
                (ColumnType::Text { max_length, .. }, Value::String(s)) => {
                    found(
                        "non-ASCII text",
                        s.contains("日本語") || s.contains("Grüße"),
                    );
                    found("emoji", s.contains('🎓'));
                    found("double quote", s.contains('"'));
                    found("single quote", s.contains('\''));
                    found("backslash", s.contains('\\'));
                    found("tab", s.contains('\t'));
                    found("newline", s.contains('\n'));
                    found("carriage return", s.contains('\r'));
                    found("COPY null marker", s.contains("\\N"));
                    found("empty text", s.is_empty());
                    found(
                        "placeholder in a varchar shorter than it",
                        s == TRUNCATION_PLACEHOLDER
                            && max_length.is_some_and(|m| (m as usize) < s.len()),
                    );
                }
                (ColumnType::Enum { .. }, Value::String(s)) => {
                    found(
                        "enum label with quote and backslash",
                        s.contains('\'') || s.contains('\\'),
                    );
                }
                (ColumnType::IpAddress, Value::String(s)) => {
                    let ip: IpAddr = s.parse().unwrap();
                    found("ipv4", ip.is_ipv4());
                    found("ipv6", ip.is_ipv6());
                }
                (ColumnType::Timestamp, Value::String(s)) => {
                    // Canonical form: `.ffffffZ`; the last three digits are below milliseconds.
                    found("microseconds", s.len() == 27 && !s.ends_with("000Z"));
                }
                (ColumnType::Json, Value::Object(o)) => {
                    found(
                        "nested object",
                        o.values().any(|v| v.is_object() || v.is_array()),
                    );
                }
                (ColumnType::Array { item }, Value::Array(items)) if !items.is_empty() => {
                    found("array of enums", matches!(**item, ColumnType::Enum { .. }));
                    found("array of integers", matches!(**item, ColumnType::Int));
                }
                _ => {}
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_round_trips_on_postgres() {
    every_table_round_trips(Dialect::Postgres, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_round_trips_on_mysql() {
    every_table_round_trips(Dialect::Mysql, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_round_trips_on_sqlite() {
    every_table_round_trips(Dialect::Sqlite, 4).await;
}

/// The namespace of the tables the schema-change tests evolve.
const NS: &str = "canvas";

/// What the first incremental under a new schema version carries.
#[derive(Debug, Clone, Copy)]
enum Window {
    /// Also rows written under the previous version just before the change, as it happens
    /// upstream (and `since` is inclusive: the previous run's last commit comes again).
    WithOldRows,
    /// Only rows written under the new version: the chain had moved past the old ones.
    NewRowsOnly,
}

/// A table of `canvas.courses`'s schema (a real one, with a required enum column) replicated
/// into a fresh database, and the fake that serves it.
struct Evolving {
    table: &'static str,
    fake: FakeDap,
    engine: Engine,
    db: TestDb,
}

impl Evolving {
    /// Snapshots 40 rows of `canvas.<table>` with an engine set up by `configure`.
    ///
    /// Each test names its table differently: MySQL table locks are server-wide, so tests
    /// running at once on one server must not sync tables of the same name.
    async fn start(
        dialect: Dialect,
        table: &'static str,
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        let courses = FakeTable {
            schema: fixture_schema(NS, "courses"),
            ..FakeTable::new(NS, table, 40)
        };
        let fake = fake_of(vec![courses]).await;
        let db = TestDb::new(dialect).await;
        let engine = engine_with(&fake, &db, configure).await;
        let evolving = Self {
            table,
            fake,
            engine,
            db,
        };
        assert_eq!(evolving.sync().await.kind, RunKind::Snapshot);
        evolving
    }

    /// Syncs once and checks that nothing was rejected and the replica equals the source.
    async fn sync(&self) -> RunReport {
        let mut runs = self
            .engine
            .sync_table(&TableId::new(NS, self.table), Mode::Sync)
            .await
            .unwrap_or_else(|e| panic!("{}", e.chain()));
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].stats.rejected, 0, "rejected records");
        support::assert_replica_matches(&self.engine, &self.fake, NS, self.table).await;
        runs.remove(0)
    }

    /// The schema the fake serves now.
    fn schema(&self) -> TableSchema {
        support::schema(&self.fake, NS, self.table)
    }

    /// Publishes `edit` of the current schema as a new version and syncs.
    async fn change(
        &self,
        rewrite: bool,
        window: Window,
        edit: impl FnOnce(&mut Value),
    ) -> RunReport {
        match window {
            Window::WithOldRows => {
                let changes = Changes {
                    updates: 5,
                    inserts: 5,
                    deletes: 1,
                    inserted_then_deleted: 0,
                };
                self.fake.advance(NS, self.table, changes);
            }
            Window::NewRowsOnly => {
                // An empty commit: the next `since` is past every row of the old version.
                self.fake.advance(NS, self.table, Changes::default());
                assert_eq!(self.sync().await.kind, RunKind::Incremental);
            }
        }
        let mut schema = self.fake.schema(NS, self.table)["schema"].take();
        edit(&mut schema);
        let version = self.fake.bump_schema(NS, self.table, schema, rewrite);
        let run = self.sync().await;
        assert_eq!(run.schema_version, version);
        run
    }

    /// A change the engine applies in place, keeping every row.
    async fn evolve(&self, window: Window, edit: impl FnOnce(&mut Value)) {
        let run = self.change(false, window, edit).await;
        assert_eq!(run.kind, RunKind::Incremental);
    }

    /// A change under which old rows are no longer valid: upstream rewrites them, and the engine
    /// takes a new snapshot.
    async fn rebuild(&self, edit: impl FnOnce(&mut Value)) {
        let run = self.change(true, Window::WithOldRows, edit).await;
        assert_eq!(
            (run.kind, run.reason),
            (RunKind::Snapshot, Some("schema_rebuild"))
        );
    }

    /// Updates, inserts and deletes rows under the current schema, syncs, and returns the
    /// replica's rows.
    async fn churn(&self) -> Vec<Value> {
        let changes = Changes {
            updates: 5,
            inserts: 30,
            deletes: 2,
            inserted_then_deleted: 1,
        };
        self.fake.advance(NS, self.table, changes);
        assert_eq!(self.sync().await.kind, RunKind::Incremental);
        self.rows().await
    }

    /// The replica's rows under the current schema.
    async fn rows(&self) -> Vec<Value> {
        dump(&self.engine, &self.schema()).await
    }

    /// Whether the live table has this column (`Some`), and whether it is nullable.
    async fn nullable(&self, column: &str) -> Option<bool> {
        live_column(&self.engine, NS, self.table, column)
            .await
            .map(|c| c.nullable)
    }

    /// Checks that `columns`, gone from the schema, still hold what the source's rows written
    /// under `old` (a version that had them, one of them required) hold.
    async fn assert_kept(&self, old: &TableSchema, columns: &[&str]) {
        let replica = dump(&self.engine, old).await;
        let mut compared = 0;
        for row in self.fake.current_rows(NS, self.table) {
            if !columns.iter().any(|c| row["value"].get(c).is_some()) {
                continue;
            }
            let expected = canonical_record(old, &row);
            let actual = replica.iter().find(|r| r["key"] == expected["key"]);
            for column in columns {
                assert_eq!(
                    actual.and_then(|a| cell(a, column)),
                    cell(&expected, column),
                    "{column}"
                );
            }
            compared += 1;
        }
        assert!(compared > 0, "no row written under the old version is left");
    }

    /// Closes the engine's connections before the database is dropped.
    async fn close(self) {
        self.engine.db().close().await;
    }
}

/// The properties of the schema's `key` or `value`.
fn props<'a>(schema: &'a mut Value, part: &str) -> &'a mut Map<String, Value> {
    schema["properties"][part]["properties"]
        .as_object_mut()
        .unwrap()
}

/// Makes a column of `value` required or optional.
fn set_required(schema: &mut Value, column: &str, required: bool) {
    let list = schema["properties"]["value"]["required"]
        .as_array_mut()
        .unwrap();
    list.retain(|c| c != column);
    if required {
        list.push(json!(column));
    }
}

/// Sets `workflow_state`'s labels: those of the real `canvas.courses` but `without`, then `extra`.
fn set_workflow(schema: &mut Value, without: &[&str], extra: &[&str]) {
    let mut courses = fixture_schema(NS, "courses").unwrap();
    let real = props(&mut courses, "value")["workflow_state"]["enum"].take();
    let labels: Vec<&str> = real
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .filter(|l| !without.contains(l))
        .chain(extra.iter().copied())
        .collect();
    props(schema, "value")["workflow_state"]["enum"] = json!(labels);
}

/// The non-NULL values of a column.
fn values<'a>(rows: &'a [Value], column: &str) -> Vec<&'a Value> {
    rows.iter().filter_map(|row| cell(row, column)).collect()
}

fn nulls(rows: &[Value], column: &str) -> usize {
    rows.len() - values(rows, column).len()
}

/// Rows whose column holds `value`.
fn holding(rows: &[Value], column: &str, value: &str) -> usize {
    values(rows, column).iter().filter(|v| **v == value).count()
}

/// Adds `blurb`, `rank` (int32), `short_code` (truncatable `varchar(8)`) and the enums `audience`
/// and `visibility`, all nullable.
fn add_columns(schema: &mut Value) {
    let value = props(schema, "value");
    value.insert("blurb".into(), json!({"type": "string"}));
    value.insert("rank".into(), json!({"type": "integer", "format": "int32"}));
    value.insert(
        "short_code".into(),
        json!({"oneOf": [
            {"type": "string", "const": TRUNCATION_PLACEHOLDER},
            {"type": "string", "maxLength": 8}
        ]}),
    );
    value.insert(
        "audience".into(),
        json!({"type": "string", "enum": ["students", "staff"]}),
    );
    value.insert(
        "visibility".into(),
        json!({"type": "string", "enum": ["public", "private"]}),
    );
}

/// Adds the required column `grading_scheme_id`.
fn add_required_column(schema: &mut Value) {
    props(schema, "value").insert(
        "grading_scheme_id".into(),
        json!({"type": "integer", "format": "int64"}),
    );
    set_required(schema, "grading_scheme_id", true);
}

/// Removes `template` (required) and `audience` (an enum).
fn remove_columns(schema: &mut Value) {
    props(schema, "value").remove("template");
    props(schema, "value").remove("audience");
    set_required(schema, "template", false);
}

/// Every kind of upstream schema change, one after another on a populated copy of `courses`;
/// after each, the old rows are intact and new rows load.
async fn schema_changes(dialect: Dialect, enum_mode: EnumMode) {
    use Window::{NewRowsOnly, WithOldRows};
    let t = Evolving::start(dialect, "evolving", |config| {
        config.database.enum_mode = enum_mode;
    })
    .await;

    // New nullable columns of several types: old rows hold NULL, new rows values.
    t.evolve(WithOldRows, add_columns).await;
    let rows = t.churn().await;
    for column in ["blurb", "rank", "short_code", "audience", "visibility"] {
        assert!(!values(&rows, column).is_empty(), "{column}");
        assert!(nulls(&rows, column) > 0, "{column}");
    }

    // A new required column is added nullable: old rows have no value for it. (Records written
    // under the old version in the same window: see `restrictive_changes_with_old_rows_in_the_window`.)
    t.evolve(NewRowsOnly, add_required_column).await;
    assert_eq!(t.nullable("grading_scheme_id").await, Some(true));
    let rows = t.churn().await;
    assert!(values(&rows, "grading_scheme_id").len() >= 30);
    assert!(nulls(&rows, "grading_scheme_id") > 0);

    // Removed columns (one required, one enum) stay, nullable, with their data.
    let before = t.schema();
    t.evolve(NewRowsOnly, remove_columns).await;
    assert_eq!(t.nullable("template").await, Some(true));
    assert_eq!(t.nullable("audience").await, Some(true));
    t.assert_kept(&before, &["template", "audience"]).await;
    t.churn().await;
    t.assert_kept(&before, &["template", "audience"]).await;

    // A required column made optional: NULL loads.
    assert_eq!(t.nullable("account_id").await, Some(false));
    t.evolve(WithOldRows, |s| set_required(s, "account_id", false))
        .await;
    assert_eq!(t.nullable("account_id").await, Some(true));
    let rows = t.churn().await;
    assert!(nulls(&rows, "account_id") > 0);

    // An optional column made required: NOT NULL is not added over the old NULLs.
    assert!(nulls(&t.rows().await, "storage_quota") > 0);
    t.evolve(NewRowsOnly, |s| set_required(s, "storage_quota", true))
        .await;
    assert_eq!(t.nullable("storage_quota").await, Some(true));
    let rows = t.churn().await;
    assert!(nulls(&rows, "storage_quota") > 0);

    // A varchar widened: longer values load.
    t.evolve(WithOldRows, |s| {
        props(s, "value")["short_code"]["oneOf"][1]["maxLength"] = json!(64);
    })
    .await;
    let rows = t.churn().await;
    assert!(values(&rows, "short_code").iter().any(|v| {
        let v = v.as_str().unwrap();
        v != TRUNCATION_PLACEHOLDER && v.chars().count() > 8
    }));

    // An integer widened: values beyond 32 bits load. (The minimum makes every new value need
    // them; older values would not meet it, hence no older rows in the window.)
    t.evolve(NewRowsOnly, |s| {
        props(s, "value")["rank"] =
            json!({"type": "integer", "format": "int64", "minimum": 1_i64 << 31});
    })
    .await;
    let rows = t.churn().await;
    assert!(
        values(&rows, "rank")
            .iter()
            .any(|v| v.as_i64().unwrap() > i32::MAX.into())
    );

    // An enum value added: it loads.
    t.evolve(WithOldRows, |s| set_workflow(s, &[], &["archived"]))
        .await;
    let rows = t.churn().await;
    assert!(holding(&rows, "workflow_state", "archived") > 0);

    // An enum value removed: rows holding it stay, and the table takes new rows.
    let held = holding(&t.rows().await, "workflow_state", "claimed");
    assert!(held > 0);
    t.evolve(NewRowsOnly, |s| {
        set_workflow(s, &["claimed"], &["archived"])
    })
    .await;
    assert_eq!(holding(&t.rows().await, "workflow_state", "claimed"), held);
    let rows = t.churn().await;
    assert!(holding(&rows, "workflow_state", "claimed") > 0);

    // A value added after one was removed: the rows holding the removed one still stay.
    t.evolve(WithOldRows, |s| {
        set_workflow(s, &["claimed"], &["archived", "concluded"]);
    })
    .await;
    let rows = t.churn().await;
    assert!(holding(&rows, "workflow_state", "concluded") > 0);
    assert!(holding(&rows, "workflow_state", "claimed") > 0);

    // An enum column turned into plain text: any text loads.
    t.evolve(WithOldRows, |s| {
        props(s, "value")["visibility"] = json!({"type": "string"});
    })
    .await;
    let rows = t.churn().await;
    assert!(
        values(&rows, "visibility")
            .iter()
            .any(|v| !["public", "private"].contains(&v.as_str().unwrap()))
    );

    // A type changed otherwise (integer to string): a new snapshot.
    t.rebuild(|s| {
        props(s, "value")["sis_batch_id"] = json!({"type": "string", "maxLength": 255});
    })
    .await;
    let rows = t.churn().await;
    assert!(values(&rows, "sis_batch_id").iter().all(|v| v.is_string()));

    // The key changed: a new snapshot.
    t.rebuild(|s| {
        let uuid = props(s, "value").remove("uuid").unwrap();
        props(s, "key").insert("uuid".into(), uuid);
        s["properties"]["key"]["required"] = json!(["id", "uuid"]);
    })
    .await;
    assert_eq!(t.schema().primary_key, ["id", "uuid"]);
    t.churn().await;
    t.close().await;
}

#[tokio::test]
async fn schema_changes_on_postgres() {
    schema_changes(Dialect::Postgres, EnumMode::Native).await;
}

#[tokio::test]
async fn schema_changes_on_postgres_with_text_enums() {
    schema_changes(Dialect::Postgres, EnumMode::Text).await;
}

#[tokio::test]
async fn schema_changes_on_mysql() {
    schema_changes(Dialect::Mysql, EnumMode::Native).await;
}

#[tokio::test]
async fn schema_changes_on_sqlite() {
    schema_changes(Dialect::Sqlite, EnumMode::Native).await;
}

/// Changes after which records written under the previous version are no longer valid under
/// the new one, with such records in the first window: they should load (the replica allows
/// every one of them), not be rejected.
#[tokio::test]
async fn restrictive_changes_with_old_rows_in_the_window() {
    for dialect in support::DIALECTS {
        let t = Evolving::start(dialect, "restricted", |_| {}).await;
        t.evolve(Window::WithOldRows, add_required_column).await;
        t.evolve(Window::WithOldRows, remove_columns).await;
        t.evolve(Window::WithOldRows, |s| {
            set_required(s, "storage_quota", true)
        })
        .await;
        t.evolve(Window::WithOldRows, |s| set_workflow(s, &["claimed"], &[]))
            .await;
        t.close().await;
    }
}

/// With `drop_removed_columns`, a column gone upstream is dropped (a PostgreSQL enum column with
/// its type), and the table goes on taking rows.
#[tokio::test]
async fn removed_columns_are_dropped_when_configured() {
    for dialect in support::DIALECTS {
        let t = Evolving::start(dialect, "dropping", |config| {
            config.database.drop_removed_columns = true;
        })
        .await;
        assert_eq!(t.nullable("workflow_state").await, Some(false));
        let enum_type = "SELECT count(*) FROM pg_type WHERE typname = 'dropping__workflow_state'";
        if dialect == Dialect::Postgres {
            assert_eq!(pg_count(&t.db, enum_type).await, 1);
        }
        t.evolve(Window::NewRowsOnly, |s| {
            props(s, "value").remove("template");
            props(s, "value").remove("workflow_state");
            set_required(s, "template", false);
            set_required(s, "workflow_state", false);
        })
        .await;
        assert_eq!(t.nullable("template").await, None, "{dialect:?}");
        assert_eq!(t.nullable("workflow_state").await, None, "{dialect:?}");
        if dialect == Dialect::Postgres {
            assert_eq!(pg_count(&t.db, enum_type).await, 0);
        }
        t.churn().await;
        t.close().await;
    }
}

/// Enums stored as text with a CHECK on PostgreSQL: every table with an enum column loads and
/// reads back equal through a snapshot and an incremental, no enum type is created, and the
/// CHECK refuses other values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_enums_on_postgres() {
    let fake = every_table().await;
    let db = TestDb::new(Dialect::Postgres).await;
    let engine = engine_with(&fake, &db, |config| {
        config.database.enum_mode = EnumMode::Text;
    })
    .await;
    let mut tables: Vec<(&str, &str)> = fixture_tables()
        .filter(|&(ns, t)| {
            let schema = support::schema(&fake, ns, t);
            schema
                .columns
                .iter()
                .any(|c| matches!(c.ty, ColumnType::Enum { .. }))
        })
        .collect();
    assert!(tables.len() > 50);
    tables.push(("canvas", "edge_cases"));
    sync_all(&engine, &fake, &tables, 4, RunKind::Snapshot).await;
    advance_all(&fake, &tables);
    sync_all(&engine, &fake, &tables, 4, RunKind::Incremental).await;
    let enum_types = "SELECT count(*) FROM pg_type WHERE typtype = 'e'";
    assert_eq!(pg_count(&db, enum_types).await, 0);
    let insert =
        r#"INSERT INTO "canvas"."edge_cases" ("id", "tiny", "mood") VALUES (-1, 0, 'sad')"#;
    assert_eq!(pg_error_code(&db, insert).await, "23514");
    engine.db().close().await;
}
