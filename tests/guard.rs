//! The rejects guard (`sync.max_rejected_fraction`): a result with too many rejected records is
//! not applied, and the table and its watermark stay as they were.

use dapsync::db::RunOutcome;
use dapsync::fake::{Changes, FakeTable};
use dapsync::sync::Mode;
use dapsync::table::TableId;
use serde_json::json;

use crate::support::replica::{engine_with, fake_of};
use crate::support::{self, DIALECTS, TestDb};

#[tokio::test]
async fn an_incremental_above_the_rejected_share_is_not_applied() {
    for dialect in DIALECTS {
        let fake = support::fake(&[("canvas", "courses", 20)]).await;
        let db = TestDb::new(dialect).await;
        let engine = support::engine(&fake, &db).await;
        engine
            .sync_table(&TableId::new("canvas", "courses"), Mode::Sync)
            .await
            .unwrap();
        let rows_before = support::dump(&engine, &fake, "canvas", "courses").await;
        let since_before = engine
            .db()
            .sync_state(&TableId::new("canvas", "courses"))
            .await
            .unwrap()
            .unwrap()
            .since;

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
            "TooManyRejects",
            "{dialect:?}: {}",
            error.chain()
        );
        let message = error.chain();
        assert!(
            message.contains("record(s) rejected") && message.contains("is not a valid record"),
            "{dialect:?}: {message}"
        );
        assert_eq!(
            support::dump(&engine, &fake, "canvas", "courses").await,
            rows_before,
            "{dialect:?}: nothing applied"
        );
        let state = engine
            .db()
            .sync_state(&TableId::new("canvas", "courses"))
            .await
            .unwrap();
        assert_eq!(state.unwrap().since, since_before, "{dialect:?}");
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
        assert_eq!(history[0].outcome, RunOutcome::Failed, "{dialect:?}");
        assert_eq!(
            history[0].error_type.as_deref(),
            Some("TooManyRejects"),
            "{dialect:?}"
        );
        engine.db().close().await;

        // Allowed more rejects, the same window loads, with its rejects stored.
        let engine = engine_with(&fake, &db, |c| c.sync.max_rejected_fraction = 0.5).await;
        let runs = engine
            .sync_table(&TableId::new("canvas", "courses"), Mode::Sync)
            .await
            .unwrap();
        assert!(runs[0].stats.rejected > 0, "{dialect:?}");
        support::assert_replica_matches(&engine, &fake, "canvas", "courses").await;
        engine.db().close().await;
    }
}

#[tokio::test]
async fn a_snapshot_whose_every_record_is_rejected_is_never_applied() {
    for dialect in DIALECTS {
        // Every record fails the pattern of a required property (the fake does not honour
        // patterns).
        let probe = support::fake(&[("canvas", "courses", 1)]).await;
        let mut schema = probe.schema("canvas", "courses")["schema"].clone();
        let value = &mut schema["properties"]["value"];
        value["properties"]["code"] = json!({"type": "string", "pattern": "^never$"});
        value["required"]
            .as_array_mut()
            .unwrap()
            .push(json!("code"));
        let fake = fake_of(vec![FakeTable {
            schema: Some(schema),
            ..FakeTable::new("canvas", "courses", 12)
        }])
        .await;
        let db = TestDb::new(dialect).await;
        let engine = engine_with(&fake, &db, |c| c.sync.max_rejected_fraction = 1.0).await;
        let error = engine
            .sync_table(&TableId::new("canvas", "courses"), Mode::Sync)
            .await
            .unwrap_err();
        assert_eq!(
            error.type_name(),
            "TooManyRejects",
            "{dialect:?}: {}",
            error.chain()
        );
        assert!(
            error.chain().contains("12 of 12 record(s) rejected"),
            "{dialect:?}: {}",
            error.chain()
        );
        assert!(
            engine
                .db()
                .sync_state(&TableId::new("canvas", "courses"))
                .await
                .unwrap()
                .is_none(),
            "{dialect:?}: no watermark"
        );
        let plan = dapsync::db::TablePlan::new(
            engine.db().dialect(),
            support::schema(&fake, "canvas", "courses"),
        );
        assert!(
            !engine.db().table_exists(&plan.live).await.unwrap(),
            "{dialect:?}: no live table"
        );
        engine.db().close().await;
    }
}
