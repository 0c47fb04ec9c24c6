//! Several replicas on one database: the shared query budget on each database, and three
//! `dapsync run` processes sharing ten tables and one API budget, one of them killed mid-run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use dapsync::db::{QueryStart, RunOutcome};
use dapsync::fake::{Changes, Endpoint, FakeDap, RateLimits};
use dapsync::sql::Dialect;
use dapsync::sync::{Engine, Mode, RunKind};
use dapsync::table::TableId;
use tokio::process::{Child, Command};
use tokio::task::JoinSet;

use crate::support::{self, DIALECTS, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_takers_on_separate_connections_never_exceed_the_shared_budget() {
    const MAX: usize = 3;
    const PER: Duration = Duration::from_secs(1);
    for dialect in DIALECTS {
        let db = TestDb::new(dialect).await;
        // A pool each, as separate processes would have.
        let mut pools = Vec::new();
        for _ in 0..3 {
            pools.push(db.connect().await);
        }
        let refused = Arc::new(AtomicUsize::new(0));
        let mut takers = JoinSet::new();
        for pool in &pools {
            for _ in 0..2 {
                let (pool, refused) = (pool.clone(), refused.clone());
                takers.spawn(async move {
                    let mut taken: Vec<DateTime<Utc>> = Vec::new();
                    while taken.len() < 2 {
                        match pool
                            .take_query_start("start_query test", MAX as u32, PER)
                            .await
                            .unwrap()
                        {
                            QueryStart::Taken(at) => taken.push(at),
                            QueryStart::Full(wait) => {
                                refused.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(wait).await;
                            }
                        }
                    }
                    taken
                });
            }
        }
        let mut starts: Vec<DateTime<Utc>> = takers.join_all().await.concat();
        starts.sort();
        assert_eq!(starts.len(), 12, "{dialect:?}");
        // No window of PER holds more than MAX starts.
        for window in starts.windows(MAX + 1) {
            assert!(
                (window[MAX] - window[0]).to_std().unwrap() >= PER,
                "{dialect:?}: {} starts within {PER:?}: {window:?}",
                MAX + 1
            );
        }
        assert!(refused.load(Ordering::Relaxed) > 0, "{dialect:?}");
        // Each budget (one per client id) has its own window.
        let other = pools[0]
            .take_query_start("start_query another client", MAX as u32, PER)
            .await
            .unwrap();
        assert!(matches!(other, QueryStart::Taken(_)), "{dialect:?}");
        for pool in pools {
            pool.close().await;
        }
    }
}

/// Replicas tick together: the one that locks the table first serves the tick, and the others,
/// finding it synced since the tick, run nothing and start no query; a later tick runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_another_replica_served_runs_nothing() {
    for dialect in DIALECTS {
        let fake = support::fake(&[("canvas", "courses", 10)]).await;
        let db = TestDb::new(dialect).await;
        let (first, second) = (
            support::engine(&fake, &db).await,
            support::engine(&fake, &db).await,
        );
        let courses = TableId::new("canvas", "courses");
        let queries = || support::daemon::requests(&fake, Endpoint::Query, None);
        let tick = Utc::now() - TimeDelta::seconds(1);
        let served = first.sync_table(&courses, Mode::Tick(tick)).await.unwrap();
        assert_eq!(served.len(), 1, "{dialect:?}");
        let before = queries();
        let again = second.sync_table(&courses, Mode::Tick(tick)).await.unwrap();
        assert!(again.is_empty(), "{dialect:?}: {again:?}");
        assert_eq!(queries(), before, "{dialect:?}");

        fake.advance("canvas", "courses", CHANGES);
        let next = second
            .sync_table(&courses, Mode::Tick(Utc::now()))
            .await
            .unwrap();
        assert_eq!(next.len(), 1, "{dialect:?}");
        assert_eq!(next[0].kind, RunKind::Incremental);
        assert_eq!(queries(), before + 1, "{dialect:?}");
        support::assert_replica_matches(&second, &fake, "canvas", "courses").await;
        first.db().close().await;
        second.db().close().await;
    }
}

const CHANGES: Changes = Changes {
    updates: 3,
    inserts: 2,
    deletes: 1,
    inserted_then_deleted: 1,
};

const TABLES: [&str; 10] = [
    "accounts",
    "assignments",
    "attachments",
    "courses",
    "discussion_topics",
    "enrollments",
    "groups",
    "quiz_questions",
    "submissions",
    "users",
];

/// Query starts a minute, for the fake's limit and the daemons' budget alike: the three
/// daemons spend it within seconds, so the test runs through more than one window.
const BUDGET: u32 = 30;

/// Longest wait for one stage of the three-daemon test (a budget window is a minute).
const PATIENCE: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_on_postgres_share_the_tables_and_one_query_budget() {
    three_daemons_share_the_tables_and_one_query_budget(Dialect::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_on_a_sqlite_file_share_the_tables_and_one_query_budget() {
    three_daemons_share_the_tables_and_one_query_budget(Dialect::Sqlite).await;
}

/// Three `dapsync run` processes on one database, every table every second, `BUDGET` query
/// starts a minute for all of them: every table is snapshotted; once every table has a run
/// waiting for the budget, the tables change upstream and one daemon is killed; the other two
/// bring every table up to date. The fake counted no more than the budget in any minute and
/// answered no 429, no table had two runs at once, and every daemon synced tables.
async fn three_daemons_share_the_tables_and_one_query_budget(dialect: Dialect) {
    let specs: Vec<(&str, &str, u64)> = TABLES.iter().map(|t| ("canvas", *t, 20)).collect();
    let fake = support::fake(&specs).await;
    fake.set_rate_limits(Some(RateLimits::api().with_queries(BUDGET)));
    let db = TestDb::new(dialect).await;
    // Migrated before the daemons start, so that the test can read the run history at once.
    let engine = support::engine(&fake, &db).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &fake, &db);
    let mut daemons: Vec<(Child, PathBuf)> = (0..3)
        .map(|n| {
            let log = dir.path().join(format!("daemon-{n}.log"));
            (spawn(&config, &log), log)
        })
        .collect();

    let snapshots: Vec<(TableId, DateTime<Utc>)> = TABLES
        .iter()
        .map(|&t| (TableId::new("canvas", t), fake.latest_commit("canvas", t)))
        .collect();
    wait_synced(&engine, &snapshots, "every table snapshotted").await;
    // The budget is spent: each daemon holds up to 4 tables (max_concurrent_tables) waiting
    // for it, so the one about to be killed holds at least two.
    wait_until(
        "every table to have a run waiting for the budget",
        || async {
            let running = engine
                .db()
                .recent_runs(None, 1000)
                .await
                .unwrap()
                .into_iter()
                .filter(|r| r.outcome == RunOutcome::Running)
                .map(|r| r.table)
                .collect::<std::collections::BTreeSet<_>>();
            running.len() == TABLES.len()
        },
    )
    .await;
    let commits: Vec<(TableId, DateTime<Utc>)> = TABLES
        .iter()
        .map(|&t| {
            (
                TableId::new("canvas", t),
                fake.advance("canvas", t, CHANGES),
            )
        })
        .collect();
    let (mut dead, _) = daemons.remove(0);
    dead.start_kill().unwrap();
    dead.wait().await.unwrap();
    wait_synced(&engine, &commits, "every table caught up by the two left").await;

    // Both at once: each gives its runs still waiting for the budget the grace period.
    for (child, _) in &daemons {
        let pid = child.id().unwrap().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
    }
    for (child, log) in &mut daemons {
        let exit = tokio::time::timeout(PATIENCE, child.wait())
            .await
            .expect("the daemon did not stop")
            .unwrap();
        assert_eq!(exit.code(), Some(0), "{}", read(log));
    }

    for table in TABLES {
        support::assert_replica_matches(&engine, &fake, "canvas", table).await;
    }
    let mut interrupted = 0;
    for table in TABLES {
        let mut runs: Vec<_> = engine
            .db()
            .recent_runs(Some(("canvas", table)), 1000)
            .await
            .unwrap();
        interrupted += runs
            .iter()
            .filter(|r| r.outcome == RunOutcome::Interrupted)
            .count();
        runs.sort_by_key(|r| r.started_at);
        assert!(runs.len() >= 2, "{table}: {runs:#?}");
        for pair in runs.windows(2) {
            assert!(
                pair[0]
                    .finished_at
                    .is_some_and(|end| Some(end) <= pair[1].started_at),
                "{dialect:?} {table}: runs {} and {} overlap",
                pair[0].id,
                pair[1].id
            );
        }
    }
    // The killed daemon's runs, taken over by the others.
    assert!(interrupted >= 2, "{interrupted} interrupted runs");
    let refused: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.status == 429)
        .collect();
    assert!(refused.is_empty(), "answered 429: {refused:#?}");
    // Spent to the last start in the busiest minute, and never more.
    assert_eq!(
        fake.busiest(Endpoint::Query, Duration::from_secs(60)),
        BUDGET as usize
    );
    // The tables were spread: when every table had a run, each daemon held at least two (at
    // most 4 each); the two left finished theirs, the killed one's were interrupted (above).
    for (_, log) in &daemons {
        let log = read(log);
        assert!(log.contains("table run finished"), "{log}");
        assert!(!log.contains(r#""level":"ERROR""#), "{log}");
    }
    engine.db().close().await;
}

fn write_config(dir: &Path, fake: &FakeDap, db: &TestDb) -> PathBuf {
    let path = dir.join("dapsync.toml");
    let tables: Vec<String> = TABLES.iter().map(|t| format!("{t:?}")).collect();
    let text = format!(
        "[dap]\nbase_url = {base:?}\nclient_id = {id:?}\nclient_secret = {secret:?}\n\
         job_poll_initial = \"5ms\"\njob_poll_max = \"20ms\"\ninitial_backoff = \"5ms\"\n\
         queries_per_minute = {BUDGET}\n\
         [database]\nurl = {url:?}\n\
         [sync]\nschedule = \"* * * * * *\"\nmax_concurrent_tables = 4\nshutdown_grace = \"2s\"\n\
         [http]\nenabled = false\n\
         [log]\nlevel = \"info\"\n\
         [namespaces.canvas]\ntables = [{tables}]\n",
        base = fake.base_url(),
        id = fake.client_id(),
        secret = fake.client_secret().expose(),
        url = db.url.expose(),
        tables = tables.join(", "),
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn spawn(config: &Path, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_dapsync"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "--log-format",
            "json",
            "run",
        ])
        .env_remove("NOTIFY_SOCKET")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// Waits (at most [`PATIENCE`]) until `done` says so, asking twice a second.
async fn wait_until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let wait = async {
        while !done().await {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// Waits until the database says every table is synced up to its commit.
async fn wait_synced(engine: &Engine, commits: &[(TableId, DateTime<Utc>)], what: &str) {
    wait_until(what, || async {
        let statuses = engine.table_statuses().await.unwrap();
        commits.iter().all(|(id, commit)| {
            statuses.iter().any(|s| {
                s.namespace == id.namespace
                    && s.table == id.table
                    && s.synced_until.is_some_and(|until| until >= *commit)
            })
        })
    })
    .await;
}
