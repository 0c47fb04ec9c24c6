//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod alloc;
pub mod binary;
pub mod browser;
pub mod daemon;
mod db;
pub mod logs;
pub mod prometheus;
pub mod replica;

use std::time::Duration;

use dapsync::config::{Config, DatabaseUrl, HumanDuration};
use dapsync::dap::DapClient;
use dapsync::db::{TablePlan, canonical_record};
use dapsync::fake::{FakeDap, FakeDapConfig, FakeTable};
use dapsync::schema::TableSchema;
use dapsync::sync::{Engine, ProgressMode};
pub use db::{DIALECTS, TestDb};
use serde_json::Value;

/// A fake DAP server serving `tables` (namespace, table, rows) and no other rows.
pub async fn fake(tables: &[(&str, &str, u64)]) -> FakeDap {
    let config = FakeDapConfig {
        tables: tables
            .iter()
            .map(|(ns, t, rows)| FakeTable::new(*ns, *t, *rows))
            .collect(),
        fixture_rows: None,
        rows_per_object: 7,
        ..FakeDapConfig::default()
    };
    FakeDap::start(config).await.unwrap()
}

/// The configuration a test daemon uses: the fake API, the test database, fast polling and
/// retries, and no rate limit worth waiting for.
pub fn config(fake: &FakeDap, db: &TestDb) -> Config {
    let mut config = Config::default();
    config.dap.base_url = fake.base_url().to_owned();
    config.dap.client_id = Some(fake.client_id().to_owned());
    config.dap.client_secret = Some(fake.client_secret().clone());
    config.dap.job_poll_initial = HumanDuration(Duration::from_millis(5));
    config.dap.job_poll_max = HumanDuration(Duration::from_millis(20));
    config.dap.initial_backoff = HumanDuration(Duration::from_millis(5));
    config.dap.max_backoff = HumanDuration(Duration::from_millis(50));
    config.dap.queries_per_minute = 10_000;
    config.database.url = DatabaseUrl::new(db.url.expose());
    config.namespaces.clear();
    config
}

/// A client for the fake server, configured as [`config`] says.
pub fn client(fake: &FakeDap, db: &TestDb) -> DapClient {
    dapsync::app::dap_client(&config(fake, db)).unwrap()
}

/// An engine on the fake server and the test database, wired as the daemon wires it.
pub async fn engine(fake: &FakeDap, db: &TestDb) -> Engine {
    let config = config(fake, db);
    let dap = dapsync::app::dap_client(&config).unwrap();
    let database = dapsync::app::database(&config).await.unwrap();
    Engine::new(
        dap,
        database,
        dapsync::app::sync_options(&config, ProgressMode::Quiet),
    )
}

/// The fake's current schema of a table, parsed.
pub fn schema(fake: &FakeDap, namespace: &str, table: &str) -> TableSchema {
    TableSchema::from_envelope(namespace, table, &fake.schema(namespace, table)).unwrap()
}

/// The replica's rows of a table (canonical form), as the fake's current schema sees them.
pub async fn dump(engine: &Engine, fake: &FakeDap, namespace: &str, table: &str) -> Vec<Value> {
    let plan = TablePlan::new(engine.db().dialect(), schema(fake, namespace, table));
    engine.db().dump_rows(&plan).await.unwrap()
}

/// Asserts that the replica holds exactly the fake server's current rows, column for column.
pub async fn assert_replica_matches(engine: &Engine, fake: &FakeDap, namespace: &str, table: &str) {
    let schema = schema(fake, namespace, table);
    let plan = TablePlan::new(engine.db().dialect(), schema.clone());
    let actual = engine.db().dump_rows(&plan).await.unwrap();
    let mut expected: Vec<Value> = fake
        .current_rows(namespace, table)
        .iter()
        .map(|r| canonical_record(&schema, r))
        .collect();
    let key = |v: &Value| v["key"].to_string();
    expected.sort_by_key(key);
    let mut actual_sorted = actual.clone();
    actual_sorted.sort_by_key(key);
    assert_eq!(
        actual_sorted.len(),
        expected.len(),
        "row count of {namespace}.{table}"
    );
    for (a, e) in actual_sorted.iter().zip(&expected) {
        assert_eq!(a, e, "row of {namespace}.{table}");
    }
}
