//! Schema changes that meet a live table whose shape runs ahead of `table_sync` (issue 11).

use dapsync::fake::{Changes, Endpoint, FakeDap, FakeTable, Fault, fixture_schema};
use dapsync::sync::Mode;
use dapsync::table::TableId;
use serde_json::{Value, json};

use crate::support::replica::fake_of;
use crate::support::{self, DIALECTS, TestDb, binary};

const NS: &str = "canvas";
const TABLE: &str = "evolving";

/// Publishes `edit` of the table's schema as a new version, rows kept as they are.
fn change_schema(fake: &FakeDap, edit: impl FnOnce(&mut Value)) {
    let mut schema = fake.schema(NS, TABLE)["schema"].take();
    edit(&mut schema);
    fake.bump_schema(NS, TABLE, schema, false);
}

fn id() -> TableId {
    TableId::new(NS, TABLE)
}

fn updates(n: u64) -> Changes {
    Changes {
        updates: n,
        ..Changes::default()
    }
}

/// A run adds a column in place and dies before its load commits; the next version adds an
/// enum value to that column. The next run must add the value (the column exists, but without
/// it), not skip the change because the column is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_to_a_column_added_by_a_failed_run_is_applied() {
    for dialect in DIALECTS {
        let fake = fake_of(vec![FakeTable {
            schema: fixture_schema(NS, "courses"),
            ..FakeTable::new(NS, TABLE, 20)
        }])
        .await;
        let db = TestDb::new(dialect).await;
        let dir = tempfile::tempdir().unwrap();
        let config = binary::write_config(dir.path(), &fake, &db);
        assert!(binary::run(&config, "sync", NS, TABLE, None).await);

        change_schema(&fake, |s| {
            s["properties"]["value"]["properties"]["tier"] =
                json!({"type": "string", "enum": ["gold"]});
        });
        fake.advance(NS, TABLE, updates(10));
        assert!(
            !binary::run(&config, "sync", NS, TABLE, Some("sync.batch")).await,
            "{dialect:?}: killed after its ALTERs, during the load"
        );

        change_schema(&fake, |s| {
            s["properties"]["value"]["properties"]["tier"]["enum"] = json!(["gold", "silver"]);
        });
        fake.advance(NS, TABLE, updates(20));
        let silver = fake
            .current_rows(NS, TABLE)
            .iter()
            .filter(|r| r["value"]["tier"] == "silver")
            .count();
        assert!(silver > 0, "{dialect:?}");
        let engine = support::engine(&fake, &db).await;
        let runs = engine
            .sync_table(&id(), Mode::Sync)
            .await
            .unwrap_or_else(|e| panic!("{dialect:?}: {}", e.chain()));
        assert_eq!(runs[0].stats.rejected, 0, "{dialect:?}");
        support::assert_replica_matches(&engine, &fake, NS, TABLE).await;
        // The load committed: the live table has table_sync's schema again.
        assert!(
            engine.db().live_schema(&id()).await.unwrap().is_none(),
            "{dialect:?}"
        );
        engine.db().close().await;
    }
}

/// A run dies right after its ALTERs, before the live table's schema is recorded (PostgreSQL and
/// SQLite: inside the ALTERs' transaction, which the crash rolls back; MySQL: after the ALTER
/// committed). The next version adds an enum value to the column those ALTERs added; the next
/// run must leave the table with the value, whatever the crash left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_an_alter_and_its_record_leaves_them_together() {
    for dialect in DIALECTS {
        let fake = fake_of(vec![FakeTable {
            schema: fixture_schema(NS, "courses"),
            ..FakeTable::new(NS, TABLE, 20)
        }])
        .await;
        let db = TestDb::new(dialect).await;
        let dir = tempfile::tempdir().unwrap();
        let config = binary::write_config(dir.path(), &fake, &db);
        assert!(binary::run(&config, "sync", NS, TABLE, None).await);

        change_schema(&fake, |s| {
            s["properties"]["value"]["properties"]["tier"] =
                json!({"type": "string", "enum": ["gold"]});
        });
        fake.advance(NS, TABLE, updates(10));
        assert!(
            !binary::run(&config, "sync", NS, TABLE, Some("evolve.before_record")).await,
            "{dialect:?}: killed between the ALTERs and their record"
        );

        change_schema(&fake, |s| {
            s["properties"]["value"]["properties"]["tier"]["enum"] = json!(["gold", "silver"]);
        });
        fake.advance(NS, TABLE, updates(20));
        assert!(
            fake.current_rows(NS, TABLE)
                .iter()
                .any(|r| r["value"]["tier"] == "silver"),
            "{dialect:?}"
        );
        let engine = support::engine(&fake, &db).await;
        let runs = engine
            .sync_table(&id(), Mode::Sync)
            .await
            .unwrap_or_else(|e| panic!("{dialect:?}: {}", e.chain()));
        assert_eq!(runs[0].stats.rejected, 0, "{dialect:?}");
        support::assert_replica_matches(&engine, &fake, NS, TABLE).await;
        assert!(
            engine.db().live_schema(&id()).await.unwrap().is_none(),
            "{dialect:?}"
        );
        engine.db().close().await;
    }
}

/// A job whose records follow a schema version DAP's schema endpoint does not describe (yet) is
/// not loaded: the run fails as one to try again, the table and its watermark stay, and the
/// next run, with the schema in step, loads it.
#[tokio::test]
async fn a_job_is_never_loaded_with_another_schema_version() {
    for dialect in DIALECTS {
        let fake = fake_of(vec![FakeTable {
            schema: fixture_schema(NS, "courses"),
            ..FakeTable::new(NS, TABLE, 20)
        }])
        .await;
        let db = TestDb::new(dialect).await;
        let engine = support::engine(&fake, &db).await;
        engine.sync_table(&id(), Mode::Sync).await.unwrap();
        let v1 = support::schema(&fake, NS, TABLE);
        let before = support::replica::dump(&engine, &v1).await;
        let since = engine.db().sync_state(&id()).await.unwrap().unwrap().since;

        change_schema(&fake, |s| {
            s["properties"]["value"]["properties"]["tier"] =
                json!({"type": "string", "enum": ["gold"]});
        });
        fake.advance(NS, TABLE, updates(10));
        // Both looks at the schema (before the query, and after the job named another version)
        // see the version before.
        fake.inject(Fault::StaleSchema, Endpoint::GetSchema, 2);
        let error = engine.sync_table(&id(), Mode::Sync).await.unwrap_err();
        assert_eq!(
            error.type_name(),
            "SchemaVersionMismatch",
            "{dialect:?}: {}",
            error.chain()
        );
        assert!(error.is_transient(), "{dialect:?}");
        assert_eq!(
            support::replica::dump(&engine, &v1).await,
            before,
            "{dialect:?}: nothing applied"
        );
        let state = engine.db().sync_state(&id()).await.unwrap().unwrap();
        assert_eq!(
            (state.since, state.schema_version),
            (since, 1),
            "{dialect:?}"
        );
        assert_eq!(engine.db().reject_count(&id()).await.unwrap(), 0);

        engine.sync_table(&id(), Mode::Sync).await.unwrap();
        support::assert_replica_matches(&engine, &fake, NS, TABLE).await;
        engine.db().close().await;
    }
}
