//! The replication engine against the fake server and real databases.

use dapsync::db::RunKind;
use dapsync::fake::Changes;
use dapsync::sync::Mode;

use crate::support::{self, DIALECTS, TestDb};

#[tokio::test]
async fn snapshot_then_incrementals_end_equal_to_the_source() {
    for dialect in DIALECTS {
        let fake = support::fake(&[("canvas", "courses", 40)]).await;
        let db = TestDb::new(dialect).await;
        let engine = support::engine(&fake, &db).await;

        let runs = engine
            .sync_table("canvas", "courses", Mode::Sync)
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
                .sync_table("canvas", "courses", Mode::Sync)
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
