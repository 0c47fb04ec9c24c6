//! `sync.keep_history`: a re-snapshot of a retention-limited table merges into the live table
//! instead of replacing it, so the replica keeps rows DAP no longer has.

use std::time::Duration;

use dapsync::fake::{Changes, FakeDap, FakeTable};
use dapsync::sync::{Engine, Mode};
use dapsync::table::TableId;
use serde_json::Value;

use crate::support::replica::fake_of;
use crate::support::{self, DIALECTS, TestDb};

const NS: &str = "canvas_logs";
const TABLE: &str = "web_logs";

fn by_key(mut rows: Vec<Value>) -> Vec<Value> {
    rows.sort_by_key(|r| r["key"].to_string());
    rows
}

/// The replica's rows, and the fake's current rows in the same (canonical) form.
async fn rows(engine: &Engine, fake: &FakeDap) -> (Vec<Value>, Vec<Value>) {
    let schema = support::schema(fake, NS, TABLE);
    let source = fake
        .current_rows(NS, TABLE)
        .iter()
        .map(|r| dapsync::db::canonical_record(&schema, r))
        .collect();
    (
        by_key(support::dump(engine, fake, NS, TABLE).await),
        by_key(source),
    )
}

#[tokio::test]
async fn a_resnapshot_of_a_kept_table_merges_and_keeps_rows_gone_upstream() {
    for dialect in DIALECTS {
        let fake = fake_of(vec![FakeTable::new(NS, TABLE, 30)]).await;
        fake.set_retention(NS, TABLE, Duration::from_secs(3600));
        let db = TestDb::new(dialect).await;
        let engine = support::engine(&fake, &db).await;
        engine
            .sync_table(&TableId::new(NS, TABLE), Mode::Sync)
            .await
            .unwrap();
        let (first, _) = rows(&engine, &fake).await;

        // Past the retention window, with rows updated, added and deleted meanwhile: the
        // incremental gets OutOfRangeError and the re-snapshot is merged.
        fake.travel(Duration::from_secs(7200));
        fake.advance(
            NS,
            TABLE,
            Changes {
                updates: 4,
                inserts: 3,
                deletes: 2,
                ..Changes::default()
            },
        );
        let runs = engine
            .sync_table(&TableId::new(NS, TABLE), Mode::Sync)
            .await
            .unwrap();
        assert_eq!(
            runs.last().unwrap().reason,
            Some("out_of_range"),
            "{dialect:?}"
        );
        let (replica, source) = rows(&engine, &fake).await;
        // Every upstream row as upstream has it, and the rows deleted upstream as they were.
        let mut expected = source.clone();
        let keys: Vec<String> = source.iter().map(|r| r["key"].to_string()).collect();
        let gone: Vec<Value> = first
            .into_iter()
            .filter(|r| !keys.contains(&r["key"].to_string()))
            .collect();
        assert_eq!(gone.len(), 2, "{dialect:?}");
        expected.extend(gone);
        assert_eq!(replica, by_key(expected.clone()), "{dialect:?}");
        let state = engine.db().table_statuses().await.unwrap();
        assert_eq!(
            state[0].row_count,
            Some(expected.len() as i64),
            "{dialect:?}"
        );

        // `resync` merges too; a table not kept is replaced (the source's rows only).
        engine.resync(&TableId::new(NS, TABLE)).await.unwrap();
        assert_eq!(
            rows(&engine, &fake).await.0,
            by_key(expected),
            "{dialect:?}"
        );
        engine.db().close().await;
        let engine =
            crate::support::replica::engine_with(&fake, &db, |c| c.sync.keep_history.clear()).await;
        engine.resync(&TableId::new(NS, TABLE)).await.unwrap();
        let (replica, source) = rows(&engine, &fake).await;
        assert_eq!(replica, source, "{dialect:?}");
        engine.db().close().await;
    }
}
