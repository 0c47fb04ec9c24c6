//! The database side going wrong under a run: its table lock lost, its connection cut, another
//! table's long load on SQLite. Nothing half-applied stays, and the next run converges.

use std::time::Duration;

use dapsync::config::DatabaseUrl;
use dapsync::fake::{Changes, Endpoint, FakeDap, Fault};
use dapsync::sql::Dialect;
use dapsync::sync::{Engine, Mode, ProgressMode, RunOutcome};
use dapsync::table::TableId;
use sqlx::Connection;

use crate::support::proxy::CutProxy;
use crate::support::{self, TestDb};

const PATIENCE: Duration = Duration::from_secs(60);

const CHANGES: Changes = Changes {
    updates: 3,
    inserts: 2,
    deletes: 1,
    inserted_then_deleted: 0,
};

fn courses() -> TableId {
    TableId::new("canvas", "courses")
}

/// Waits until a download has started since `mark` requests.
async fn wait_download(fake: &FakeDap, mark: usize) {
    tokio::time::timeout(PATIENCE, async {
        while !fake.requests()[mark..]
            .iter()
            .any(|r| r.endpoint == Endpoint::Download)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("no download started");
}

/// Ends the session that holds the table lock of `table`, from another connection, as an
/// operator (or a failover) would.
async fn terminate_lock_session(db: &TestDb, table: &TableId) {
    match db.dialect {
        Dialect::Postgres => {
            let mut admin = sqlx::PgConnection::connect(db.url.expose()).await.unwrap();
            let (ended,): (bool,) = sqlx::query_as(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            .fetch_one(&mut admin)
            .await
            .expect("the table lock is held");
            assert!(ended);
        }
        Dialect::Mysql => {
            let mut admin = sqlx::MySqlConnection::connect(db.url.expose())
                .await
                .unwrap();
            let (holder,): (Option<i64>,) = sqlx::query_as(
                "SELECT IS_USED_LOCK(CONCAT('dapsync:', SHA1(CONCAT(DATABASE(), '/', ?))))",
            )
            .bind(format!("dapsync:{table}"))
            .fetch_one(&mut admin)
            .await
            .unwrap();
            let holder = holder.expect("the table lock is held");
            sqlx::query(sqlx::AssertSqlSafe(format!("KILL {holder}")))
                .execute(&mut admin)
                .await
                .unwrap();
        }
        Dialect::Sqlite => unreachable!("a lock file has no session to end"),
    }
}

/// Runs `mode` on courses in the background.
fn spawn_run(
    engine: &Engine,
    mode: Mode,
) -> tokio::task::JoinHandle<Result<Vec<dapsync::sync::RunReport>, dapsync::sync::SyncError>> {
    let engine = engine.clone();
    tokio::spawn(async move { engine.sync_table(&courses(), mode).await })
}

async fn lock_lost_in_the_middle_of(dialect: Dialect, mode: Mode) {
    let fake = support::fake(&[("canvas", "courses", 30)]).await;
    let db = TestDb::new(dialect).await;
    let engine = support::engine(&fake, &db).await;
    engine.sync_table(&courses(), Mode::Sync).await.unwrap();
    let before = support::dump(&engine, &fake, "canvas", "courses").await;
    let state = engine.db().sync_state(&courses()).await.unwrap().unwrap();

    fake.advance("canvas", "courses", CHANGES);
    // Downloads slow enough for the lock's session to be ended under the run.
    fake.inject(
        Fault::SlowBody {
            chunk_bytes: 256,
            pause_ms: 200,
        },
        Endpoint::Download,
        10_000,
    );
    let mark = fake.requests().len();
    let run = spawn_run(&engine, mode);
    wait_download(&fake, mark).await;
    terminate_lock_session(&db, &courses()).await;
    let error = tokio::time::timeout(PATIENCE, run)
        .await
        .unwrap_or_else(|_| panic!("{dialect:?} {mode:?}: the run does not end"))
        .unwrap()
        .expect_err("a run whose lock was lost must not commit");
    assert_eq!(
        error.type_name(),
        "LockLost",
        "{dialect:?} {mode:?}: {error}"
    );
    assert!(
        error.chain().contains("nothing was committed"),
        "{}",
        error.chain()
    );

    // Nothing of it was applied: the rows and the watermark are those of before.
    assert_eq!(
        support::dump(&engine, &fake, "canvas", "courses").await,
        before,
        "{dialect:?} {mode:?}"
    );
    let after = engine.db().sync_state(&courses()).await.unwrap().unwrap();
    assert_eq!(after.since, state.since, "{dialect:?} {mode:?}");
    let runs = engine
        .db()
        .recent_runs(Some(("canvas", "courses")), 1)
        .await
        .unwrap();
    assert_eq!(runs[0].outcome, RunOutcome::Failed);
    assert_eq!(runs[0].error_type.as_deref(), Some("LockLost"));

    // The next run converges.
    fake.clear_faults();
    engine.sync_table(&courses(), mode).await.unwrap();
    support::assert_replica_matches(&engine, &fake, "canvas", "courses").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_whose_lock_session_ends_commits_nothing() {
    for dialect in [Dialect::Postgres, Dialect::Mysql] {
        lock_lost_in_the_middle_of(dialect, Mode::Sync).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_whose_lock_session_ends_is_not_swapped_in() {
    for dialect in [Dialect::Postgres, Dialect::Mysql] {
        lock_lost_in_the_middle_of(dialect, Mode::Resnapshot).await;
    }
}

/// An engine whose database connections go through `proxy`.
async fn engine_through(fake: &FakeDap, db: &TestDb, proxy: &CutProxy) -> Engine {
    let server = match db.dialect {
        Dialect::Postgres => ":5432/",
        _ => ":3306/",
    };
    let url = db
        .url
        .expose()
        .replacen(server, &format!(":{}/", proxy.port()), 1);
    let mut config = support::config(fake, db);
    config.database.url = DatabaseUrl::new(url);
    let dap = dapsync::app::dap_client(&config).unwrap();
    let database = dapsync::app::database(&config).await.unwrap();
    Engine::new(
        dap,
        database,
        dapsync::app::sync_options(&config, ProgressMode::Quiet),
    )
}

/// Rows in key order.
fn sorted(mut rows: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    rows.sort_by_key(|v| v["key"].to_string());
    rows
}

/// The fake's current rows of courses, in key order, as [`support::dump`] shows a replica's.
fn expected(fake: &FakeDap) -> Vec<serde_json::Value> {
    let schema = support::schema(fake, "canvas", "courses");
    let rows = fake.current_rows("canvas", "courses");
    sorted(
        rows.iter()
            .map(|r| dapsync::db::canonical_record(&schema, r))
            .collect(),
    )
}

/// The database goes away after `bytes` bytes of a run, again and again further on: each run
/// either commits all of its result or fails and leaves the table as it was, and the next run
/// converges.
async fn cut_at_every_point(dialect: Dialect, mode: Mode) {
    let fake = support::fake(&[("canvas", "courses", 400)]).await;
    let db = TestDb::new(dialect).await;
    let upstream = match dialect {
        Dialect::Postgres => "127.0.0.1:5432",
        _ => "127.0.0.1:3306",
    };
    let proxy = CutProxy::start(upstream.parse().unwrap()).await;
    // The direct engine reads what the table holds; the proxied one runs.
    let direct = support::engine(&fake, &db).await;
    let engine = engine_through(&fake, &db, &proxy).await;
    engine.sync_table(&courses(), Mode::Sync).await.unwrap();
    let mut bytes = 300;
    let mut failures = 0;
    loop {
        let before = support::dump(&direct, &fake, "canvas", "courses").await;
        let since = direct
            .db()
            .sync_state(&courses())
            .await
            .unwrap()
            .unwrap()
            .since;
        fake.advance("canvas", "courses", CHANGES);
        let cuts = proxy.cuts();
        proxy.cut_after(bytes);
        let result = tokio::time::timeout(PATIENCE, engine.sync_table(&courses(), mode))
            .await
            .expect("a run whose database went away ends");
        proxy.disarm();
        match result {
            Ok(_) => {
                support::assert_replica_matches(&direct, &fake, "canvas", "courses").await;
                if proxy.cuts() == cuts {
                    // The run needed fewer bytes than the cut: every point was tried.
                    break;
                }
            }
            Err(error) => {
                failures += 1;
                assert!(proxy.cuts() > cuts, "{dialect:?}: {error}");
                assert!(
                    error.is_transient(),
                    "{dialect:?} after {bytes} bytes: {}",
                    error.chain()
                );
                // Nothing of it was applied; on MySQL, whose DDL commits, a snapshot cut after
                // its rename has swapped in the whole new copy, and its control rows follow on
                // the next run (see `Db::recover_table`).
                let rows = support::dump(&direct, &fake, "canvas", "courses").await;
                let swapped = dialect == Dialect::Mysql
                    && mode == Mode::Resnapshot
                    && sorted(rows.clone()) == expected(&fake);
                if !swapped {
                    assert_eq!(rows, before, "{dialect:?} {mode:?} cut after {bytes} bytes");
                    let after = direct.db().sync_state(&courses()).await.unwrap().unwrap();
                    assert_eq!(
                        after.since, since,
                        "{dialect:?} {mode:?} cut after {bytes} bytes"
                    );
                }
                // The next run converges.
                engine.sync_table(&courses(), mode).await.unwrap();
                support::assert_replica_matches(&direct, &fake, "canvas", "courses").await;
            }
        }
        bytes = bytes * 3 / 2;
    }
    assert!(
        failures >= 3,
        "{dialect:?} {mode:?}: only {failures} cut runs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_going_away_during_an_incremental_applies_nothing() {
    for dialect in [Dialect::Postgres, Dialect::Mysql] {
        cut_at_every_point(dialect, Mode::Sync).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_going_away_during_a_snapshot_keeps_the_old_copy() {
    for dialect in [Dialect::Postgres, Dialect::Mysql] {
        cut_at_every_point(dialect, Mode::Resnapshot).await;
    }
}
