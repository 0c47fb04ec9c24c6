//! The replication engine against the fake server and real databases.

use dapsync::config::OnInvalidRecord;
use dapsync::db::{RunKind, RunOutcome};
use dapsync::fake::{Changes, Endpoint, FakeTable, Fault};
use dapsync::sync::{Mode, ProgressMode};
use dapsync::table::TableId;

use crate::support::{self, DIALECTS, TestDb};

#[tokio::test]
async fn snapshot_then_incrementals_end_equal_to_the_source() {
    for dialect in DIALECTS {
        let fake = support::fake(&[("canvas", "courses", 40)]).await;
        let db = TestDb::new(dialect).await;
        let engine = support::engine(&fake, &db).await;

        let runs = engine
            .sync_table(&TableId::new("canvas", "courses"), Mode::Sync)
            .await
            .unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].kind, RunKind::Snapshot, "{dialect:?}");
        assert_eq!(runs[0].stats.row_count, 40);
        support::assert_replica_matches(&engine, &fake, "canvas", "courses").await;

        for round in 0..3 {
            fake.advance(
                "canvas",
                "courses",
                Changes {
                    updates: 5,
                    inserts: 3,
                    deletes: 2,
                    inserted_then_deleted: 1,
                },
            );
            let runs = engine
                .sync_table(&TableId::new("canvas", "courses"), Mode::Sync)
                .await
                .unwrap();
            assert_eq!(
                runs[0].kind,
                RunKind::Incremental,
                "{dialect:?} round {round}"
            );
            support::assert_replica_matches(&engine, &fake, "canvas", "courses").await;
        }
        engine.db().close().await;
    }
}

#[tokio::test]
async fn a_broken_chain_is_answered_with_a_new_snapshot() {
    for dialect in DIALECTS {
        let fake = support::fake(&[("canvas", "users", 30)]).await;
        let db = TestDb::new(dialect).await;
        let engine = support::engine(&fake, &db).await;
        engine
            .sync_table(&TableId::new("canvas", "users"), Mode::Sync)
            .await
            .unwrap();

        // Upstream reloaded the table: the chain cannot continue.
        fake.advance(
            "canvas",
            "users",
            Changes {
                updates: 4,
                inserts: 2,
                deletes: 1,
                ..Changes::default()
            },
        );
        fake.require_snapshot("canvas", "users");
        fake.advance(
            "canvas",
            "users",
            Changes {
                updates: 3,
                ..Changes::default()
            },
        );
        let runs = engine
            .sync_table(&TableId::new("canvas", "users"), Mode::Sync)
            .await
            .unwrap();
        assert_eq!(runs.len(), 1, "{dialect:?}");
        assert_eq!(runs[0].kind, RunKind::Snapshot);
        assert_eq!(runs[0].reason, Some("snapshot_required"));
        support::assert_replica_matches(&engine, &fake, "canvas", "users").await;

        // The failed incremental is in the run history with the server's error and uuid.
        let history = engine
            .db()
            .recent_runs(Some(("canvas", "users")), 10)
            .await
            .unwrap();
        let failed = history
            .iter()
            .find(|r| r.outcome == RunOutcome::Failed)
            .expect("a failed run");
        assert_eq!(failed.kind, "incremental");
        assert_eq!(failed.error_type.as_deref(), Some("SnapshotRequiredError"));
        assert!(failed.error_uuid.as_deref().is_some_and(|u| !u.is_empty()));
        assert_eq!(history[0].reason.as_deref(), Some("snapshot_required"));

        // Out of range (the chain fell behind the retention window) is handled the same way.
        fake.advance(
            "canvas",
            "users",
            Changes {
                updates: 2,
                ..Changes::default()
            },
        );
        fake.inject(
            Fault::OutOfRange,
            Endpoint::Query.table("canvas", "users"),
            1,
        );
        let runs = engine
            .sync_table(&TableId::new("canvas", "users"), Mode::Sync)
            .await
            .unwrap();
        assert_eq!(runs[0].reason, Some("out_of_range"), "{dialect:?}");
        support::assert_replica_matches(&engine, &fake, "canvas", "users").await;

        // And the chain goes on incrementally afterwards.
        fake.advance(
            "canvas",
            "users",
            Changes {
                updates: 2,
                inserts: 1,
                deletes: 1,
                ..Changes::default()
            },
        );
        let runs = engine
            .sync_table(&TableId::new("canvas", "users"), Mode::Sync)
            .await
            .unwrap();
        assert_eq!(runs[0].kind, RunKind::Incremental);
        support::assert_replica_matches(&engine, &fake, "canvas", "users").await;
        engine.db().close().await;
    }
}

/// The fake puts the older version of a repeated key in the object before its newer one; the
/// first object of each result trickles in, so that it would finish last if the objects were
/// read at once.
#[tokio::test]
async fn repeated_keys_keep_the_last_version() {
    let slow_first_object = |fake: &dapsync::fake::FakeDap| {
        fake.inject(
            Fault::SlowBody {
                chunk_bytes: 64,
                pause_ms: 20,
            },
            Endpoint::Download.table("canvas_logs", "web_logs"),
            1,
        )
    };
    for dialect in DIALECTS {
        let fake = support::fake(&[("canvas_logs", "web_logs", 60)]).await;
        let db = TestDb::new(dialect).await;
        let engine = support::engine(&fake, &db).await;
        slow_first_object(&fake);
        let runs = engine
            .sync_table(&TableId::new("canvas_logs", "web_logs"), Mode::Sync)
            .await
            .unwrap();
        assert_eq!(runs[0].stats.row_count, 60, "{dialect:?}");
        support::assert_replica_matches(&engine, &fake, "canvas_logs", "web_logs").await;
        for _ in 0..2 {
            fake.advance(
                "canvas_logs",
                "web_logs",
                Changes {
                    updates: 10,
                    inserts: 5,
                    deletes: 3,
                    inserted_then_deleted: 1,
                },
            );
            slow_first_object(&fake);
            engine
                .sync_table(&TableId::new("canvas_logs", "web_logs"), Mode::Sync)
                .await
                .unwrap();
            support::assert_replica_matches(&engine, &fake, "canvas_logs", "web_logs").await;
        }
        engine.db().close().await;

        // A table not known to repeat keys is loaded again with last-one-wins when its
        // snapshot turns out to repeat them.
        let db = TestDb::new(dialect).await;
        let mut config = support::config(&fake, &db);
        config.sync.repeated_keys.clear();
        let engine = dapsync::app::engine(&config, ProgressMode::Quiet)
            .await
            .unwrap();
        engine
            .sync_table(&TableId::new("canvas_logs", "web_logs"), Mode::Sync)
            .await
            .unwrap();
        support::assert_replica_matches(&engine, &fake, "canvas_logs", "web_logs").await;
        engine.db().close().await;
    }
}

#[tokio::test]
async fn bad_records_go_to_the_reject_table_and_lose_nothing() {
    for dialect in DIALECTS {
        let mut table = FakeTable::new("canvas", "courses", 30);
        table.bad_lines_every = Some(5);
        let fake = support::fake(&[]).await;
        fake.add_table(table);
        let db = TestDb::new(dialect).await;
        // 6 bad lines in 36 are far above the rejects guard's default share.
        let engine = crate::support::replica::engine_with(&fake, &db, |c| {
            c.sync.max_rejected_fraction = 0.5
        })
        .await;
        let runs = engine
            .sync_table(&TableId::new("canvas", "courses"), Mode::Sync)
            .await
            .unwrap();
        // Rows 0, 5, ..., 25 each bring one bad line.
        assert_eq!(runs[0].stats.rejected, 6, "{dialect:?}");
        assert_eq!(
            engine
                .db()
                .reject_count(&TableId::new("canvas", "courses"))
                .await
                .unwrap(),
            6
        );
        // The run history holds the same facts on every database (MySQL records its snapshot
        // after the swap).
        let history = engine
            .db()
            .recent_runs(Some(("canvas", "courses")), 1)
            .await
            .unwrap();
        let run = &history[0];
        assert_eq!(
            (run.rows_upserted, run.rows_rejected, run.job_id.is_some()),
            (30, 6, true),
            "{dialect:?}"
        );
        assert!(run.bytes > 0, "{dialect:?}");
        support::assert_replica_matches(&engine, &fake, "canvas", "courses").await;

        fake.advance(
            "canvas",
            "courses",
            Changes {
                updates: 30,
                ..Changes::default()
            },
        );
        let runs = engine
            .sync_table(&TableId::new("canvas", "courses"), Mode::Sync)
            .await
            .unwrap();
        assert_eq!(runs[0].stats.rejected, 6);
        assert_eq!(
            engine
                .db()
                .reject_count(&TableId::new("canvas", "courses"))
                .await
                .unwrap(),
            12
        );
        support::assert_replica_matches(&engine, &fake, "canvas", "courses").await;
        engine.db().close().await;
    }
}

#[tokio::test]
async fn with_on_invalid_record_fail_a_bad_record_fails_the_run_and_applies_nothing() {
    for dialect in DIALECTS {
        let fake = support::fake(&[("canvas", "courses", 20)]).await;
        let db = TestDb::new(dialect).await;
        let mut config = support::config(&fake, &db);
        config.sync.on_invalid_record = OnInvalidRecord::Fail;
        let engine = dapsync::app::engine(&config, ProgressMode::Quiet)
            .await
            .unwrap();
        engine
            .sync_table(&TableId::new("canvas", "courses"), Mode::Sync)
            .await
            .unwrap();
        let before = support::dump(&engine, &fake, "canvas", "courses").await;

        let mut bad = FakeTable::new("canvas", "courses", 20);
        bad.bad_lines_every = Some(3);
        fake.add_table(bad);
        fake.advance(
            "canvas",
            "courses",
            Changes {
                updates: 10,
                ..Changes::default()
            },
        );
        let error = engine
            .sync_table(&TableId::new("canvas", "courses"), Mode::Sync)
            .await
            .unwrap_err();
        assert_eq!(
            error.type_name(),
            "InvalidRecords",
            "{dialect:?}: {}",
            error.chain()
        );
        assert_eq!(
            support::dump(&engine, &fake, "canvas", "courses").await,
            before,
            "nothing applied"
        );
        assert_eq!(
            engine
                .db()
                .reject_count(&TableId::new("canvas", "courses"))
                .await
                .unwrap(),
            0
        );
        let history = engine
            .db()
            .recent_runs(Some(("canvas", "courses")), 1)
            .await
            .unwrap();
        assert_eq!(history[0].outcome, RunOutcome::Failed);
        engine.db().close().await;
    }
}
