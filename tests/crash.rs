//! Crash safety: the real binary is killed (it aborts itself, as abruptly as `kill -9`, at a named
//! point: `DAPSYNC_CRASH_AT`) during a snapshot and during an incremental, then run again. The
//! database must hold the previous state after the crash, and the next run must finish the job.

use std::path::Path;
use tokio::process::Command;

use dapsync::db::RunOutcome;
use dapsync::fake::{Changes, FakeDap};
use dapsync::sql::Dialect;
use dapsync::table::TableId;

use crate::support::{self, DIALECTS, TestDb};

/// A configuration file for the binary: the fake API and the test database.
fn write_config(dir: &Path, fake: &FakeDap, db: &TestDb) -> std::path::PathBuf {
    let path = dir.join("dapsync.toml");
    let text = format!(
        "[dap]\nbase_url = {:?}\nclient_id = {:?}\nclient_secret = {:?}\njob_poll_initial = \"5ms\"\njob_poll_max = \"20ms\"\n\
         initial_backoff = \"5ms\"\nqueries_per_minute = 1000\n[database]\nurl = {:?}\n[log]\nlevel = \"warn\"\n",
        fake.base_url(),
        fake.client_id(),
        fake.client_secret().expose(),
        db.url.expose()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `dapsync sync` on canvas.courses, crashing at `crash_at` if given; returns whether it
/// exited with success.
async fn sync(config: &Path, crash_at: Option<&str>) -> bool {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dapsync"));
    command.args([
        "--config",
        config.to_str().unwrap(),
        "sync",
        "--namespace",
        "canvas",
        "--table",
        "courses",
    ]);
    command.env_remove("DAPSYNC_CRASH_AT");
    if let Some(point) = crash_at {
        command.env("DAPSYNC_CRASH_AT", point);
    }
    let output = command.output().await.unwrap();
    if crash_at.is_some() {
        assert!(
            !output.status.success(),
            "expected a crash at {crash_at:?}: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("crashing at"),
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    if crash_at.is_none() && !output.status.success() {
        eprintln!(
            "dapsync failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output.status.success()
}

async fn crash_points(dialect: Dialect) -> Vec<&'static str> {
    let mut points = vec!["sync.batch:2", "load.before_commit"];
    if dialect == Dialect::Mysql {
        points.extend(["mysql.snapshot.before_swap", "mysql.snapshot.after_rename"]);
    }
    points
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_killed_at_any_point_is_finished_by_the_next_run() {
    for dialect in DIALECTS {
        for point in crash_points(dialect).await {
            let fake = support::fake(&[("canvas", "courses", 40)]).await;
            let db = TestDb::new(dialect).await;
            let dir = tempfile::tempdir().unwrap();
            let config = write_config(dir.path(), &fake, &db);

            assert!(!sync(&config, Some(point)).await);
            let engine = support::engine(&fake, &db).await;
            let state = engine
                .db()
                .sync_state(&TableId::new("canvas", "courses"))
                .await
                .unwrap();
            if point != "mysql.snapshot.after_rename" {
                // Nothing of the snapshot is visible: no control row, no live table.
                assert_eq!(state, None, "{dialect:?} {point}");
                let plan = dapsync::db::TablePlan::new(
                    dialect,
                    support::schema(&fake, "canvas", "courses"),
                );
                assert!(
                    !engine.db().table_exists(&plan.live).await.unwrap(),
                    "{dialect:?} {point}"
                );
            }

            assert!(
                sync(&config, None).await,
                "{dialect:?} {point}: the second run must succeed"
            );
            support::assert_replica_matches(&engine, &fake, "canvas", "courses").await;
            let history = engine
                .db()
                .recent_runs(Some(("canvas", "courses")), 10)
                .await
                .unwrap();
            assert!(
                history.iter().any(|r| r.outcome == RunOutcome::Success),
                "{dialect:?} {point}"
            );
            assert!(
                history.iter().all(|r| r.outcome != RunOutcome::Running),
                "{dialect:?} {point}: {history:?}"
            );
            engine.db().close().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_killed_at_any_point_leaves_the_previous_state_and_is_replayed() {
    for dialect in DIALECTS {
        for point in ["sync.batch:1", "load.before_commit"] {
            let fake = support::fake(&[("canvas", "courses", 40)]).await;
            let db = TestDb::new(dialect).await;
            let dir = tempfile::tempdir().unwrap();
            let config = write_config(dir.path(), &fake, &db);
            assert!(sync(&config, None).await);
            let engine = support::engine(&fake, &db).await;
            let before = support::dump(&engine, &fake, "canvas", "courses").await;
            let since = engine
                .db()
                .sync_state(&TableId::new("canvas", "courses"))
                .await
                .unwrap()
                .unwrap()
                .since;

            fake.advance(
                "canvas",
                "courses",
                Changes {
                    updates: 12,
                    inserts: 9,
                    deletes: 5,
                    inserted_then_deleted: 1,
                },
            );
            assert!(!sync(&config, Some(point)).await);
            assert_eq!(
                support::dump(&engine, &fake, "canvas", "courses").await,
                before,
                "{dialect:?} {point}: half applied"
            );
            assert_eq!(
                engine
                    .db()
                    .sync_state(&TableId::new("canvas", "courses"))
                    .await
                    .unwrap()
                    .unwrap()
                    .since,
                since,
                "{dialect:?} {point}"
            );

            assert!(sync(&config, None).await, "{dialect:?} {point}");
            support::assert_replica_matches(&engine, &fake, "canvas", "courses").await;
            let history = engine
                .db()
                .recent_runs(Some(("canvas", "courses")), 10)
                .await
                .unwrap();
            assert_eq!(history[0].outcome, RunOutcome::Success);
            assert_eq!(
                history[1].outcome,
                RunOutcome::Interrupted,
                "{dialect:?} {point}: {history:?}"
            );
            engine.db().close().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resnapshot_killed_at_any_point_keeps_the_old_copy_serving_until_the_swap() {
    for dialect in DIALECTS {
        for point in crash_points(dialect).await {
            let fake = support::fake(&[("canvas", "courses", 30)]).await;
            let db = TestDb::new(dialect).await;
            let dir = tempfile::tempdir().unwrap();
            let config = write_config(dir.path(), &fake, &db);
            assert!(sync(&config, None).await);
            let engine = support::engine(&fake, &db).await;
            let before = support::dump(&engine, &fake, "canvas", "courses").await;

            fake.advance(
                "canvas",
                "courses",
                Changes {
                    updates: 8,
                    inserts: 4,
                    deletes: 3,
                    ..Changes::default()
                },
            );
            fake.require_snapshot("canvas", "courses");
            assert!(!sync(&config, Some(point)).await);
            if point != "mysql.snapshot.after_rename" {
                assert_eq!(
                    support::dump(&engine, &fake, "canvas", "courses").await,
                    before,
                    "{dialect:?} {point}"
                );
            }
            assert!(sync(&config, None).await, "{dialect:?} {point}");
            support::assert_replica_matches(&engine, &fake, "canvas", "courses").await;
            engine.db().close().await;
        }
    }
}
