//! The daemon (`dapsync run`) against the fake server and real databases: cron cycles, the
//! concurrency limit and the shared rate limiter, overruns, failures and webhooks, the account
//! pause, new upstream tables, two daemons on one database, signals, and the HTTP endpoint.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dapsync::app::{self, Daemon};
use dapsync::config::{CronSchedule, HumanDuration, NamespaceConfig};
use dapsync::dap::{DapClient, RateLimit};
use dapsync::db::{RunOutcome, TablePlan};
use dapsync::fake::{AccountError, Changes, Endpoint, FakeDap, FakeTable, Fault};
use dapsync::sql::Dialect;
use dapsync::status::{RunEvent, RunEventKind, SkipReason, TableId, TableState};
use dapsync::sync::{Engine, ProgressMode};
use serde_json::Value;

use crate::support::daemon::{
    self, Events, PATIENCE, get, id, is, requests, start, start_with, stop, wait_for, wait_synced,
};
use crate::support::{self, DIALECTS, TestDb, prometheus};

const CHANGES: Changes = Changes {
    updates: 4,
    inserts: 3,
    deletes: 2,
    inserted_then_deleted: 1,
};

/// A fake serving `tables` (`namespace.table`) with `rows` rows each.
async fn fake(tables: &[&str], rows: u64) -> FakeDap {
    let specs: Vec<(&str, &str, u64)> = tables
        .iter()
        .map(|name| {
            let (namespace, table) = name.split_once('.').unwrap();
            (namespace, table, rows)
        })
        .collect();
    support::fake(&specs).await
}

/// Advances every table one change round; returns each table's commit time.
fn advance(fake: &FakeDap, tables: &[&str]) -> Vec<(TableId, DateTime<Utc>)> {
    tables
        .iter()
        .map(|name| {
            let table = id(name);
            let commit = fake.advance(&table.namespace, &table.table, CHANGES);
            (table, commit)
        })
        .collect()
}

fn latest(fake: &FakeDap, tables: &[&str]) -> Vec<(TableId, DateTime<Utc>)> {
    tables
        .iter()
        .map(|name| {
            let table = id(name);
            let commit = fake.latest_commit(&table.namespace, &table.table);
            (table, commit)
        })
        .collect()
}

/// Stops the daemon, then asserts that every table equals the source.
async fn stop_and_compare(daemon: Daemon, fake: &FakeDap, db: &TestDb, tables: &[&str]) {
    stop(daemon).await;
    let engine = support::engine(fake, db).await;
    assert_all_match(&engine, fake, tables).await;
    engine.db().close().await;
}

async fn assert_all_match(engine: &Engine, fake: &FakeDap, tables: &[&str]) {
    for name in tables {
        let table = id(name);
        support::assert_replica_matches(engine, fake, &table.namespace, &table.table).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_cycles_keep_every_table_equal_to_the_source() {
    let tables = ["canvas.courses", "canvas.users", "canvas.enrollments"];
    for dialect in DIALECTS {
        let fake = fake(&tables, 25).await;
        let db = TestDb::new(dialect).await;
        let (daemon, _) = start(&daemon::config(&fake, &db, &tables)).await;
        let engine = support::engine(&fake, &db).await;
        wait_synced(daemon.status(), &latest(&fake, &tables)).await;
        assert_all_match(&engine, &fake, &tables).await;
        for _round in 0..3 {
            let commits = advance(&fake, &tables);
            wait_synced(daemon.status(), &commits).await;
            assert_all_match(&engine, &fake, &tables).await;
        }
        let view = daemon.status().view();
        assert!(view.tables.iter().all(|t| t.consecutive_failures == 0));
        stop(daemon).await;
        engine.db().close().await;
    }
}

/// How many runs were going at most at once, from the events up to the moment every one of
/// `tables` succeeded.
async fn peak_concurrency(events: &mut Events, tables: &[&str]) -> usize {
    let (mut running, mut peak) = (0usize, 0usize);
    let mut succeeded = BTreeSet::new();
    while succeeded.len() < tables.len() {
        let event = events.next().await;
        match event.kind {
            RunEventKind::Started => running += 1,
            RunEventKind::Succeeded { .. } => {
                running -= 1;
                succeeded.insert(event.table);
            }
            RunEventKind::Failed { .. }
            | RunEventKind::Retrying { .. }
            | RunEventKind::Skipped(SkipReason::Locked) => running -= 1,
            _ => {}
        }
        peak = peak.max(running);
    }
    peak
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_limit_and_the_shared_rate_limiter_hold() {
    let tables = [
        "canvas.accounts",
        "canvas.assignments",
        "canvas.courses",
        "canvas.enrollments",
        "canvas.groups",
        "canvas.users",
    ];
    let fake = fake(&tables, 10).await;
    let db = TestDb::new(Dialect::Postgres).await;
    let mut config = daemon::config(&fake, &db, &tables);
    // Only the start-up catch-up runs: every table at once, three at a time.
    config.sync.schedule = CronSchedule::hourly();
    config.sync.max_concurrent_tables = 3;
    // Two query starts per second for the whole process: the third concurrent table must wait.
    let mut options = app::client_options(&config).unwrap();
    options.query_rate = RateLimit {
        max: 2,
        per: Duration::from_secs(1),
    };
    let engine = Engine::new(
        DapClient::new(options).unwrap(),
        app::database(&config).await.unwrap(),
        app::sync_options(&config, ProgressMode::Quiet),
    );
    let (daemon, mut events) = start_with(&config, engine).await;

    assert_eq!(peak_concurrency(&mut events, &tables).await, 3);
    let samples = prometheus::parse(&daemon.status().render_metrics());
    // Three tables start at once and two starts fit in a second: the third waits most of it.
    let waited = prometheus::value(&samples, "dapsync_dap_rate_limit_wait_seconds_total", &[]);
    assert!(
        waited >= 0.5,
        "the query starts hardly waited for the shared limiter: {waited}s"
    );
    assert_eq!(requests(&fake, Endpoint::Query, None), tables.len());
    let refused: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.status == 429)
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
    stop_and_compare(daemon, &fake, &db, &tables).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overrunning_table_is_skipped_not_doubled_and_others_go_on() {
    let tables = ["canvas.courses", "canvas.users"];
    let fake = fake(&tables, 7).await;
    // Not SQLite: its single writer makes the tables of one process take turns.
    let db = TestDb::new(Dialect::Postgres).await;
    let mut config = daemon::config(&fake, &db, &tables);
    config.sync.shutdown_grace = HumanDuration(Duration::from_millis(100));
    let (daemon, _) = start(&config).await;
    wait_synced(daemon.status(), &latest(&fake, &tables)).await;

    // From now on every download of courses takes 2.5 s (its objects are far smaller than a
    // chunk: one pause each); ticks come every second, so at least two come during each run.
    fake.inject(
        Fault::SlowBody {
            chunk_bytes: 64 << 10,
            pause_ms: 2_500,
        },
        Endpoint::Download.table("canvas", "courses"),
        1000,
    );
    let mut events = Events::new(daemon.status());
    let commits = advance(&fake, &["canvas.courses"]);
    let commit = commits[0].1;
    let caught_up = |kind: &RunEventKind| matches!(kind, RunEventKind::Succeeded { watermark: Some(w) } if *w >= commit);
    let seen = events.until(|e| is(e, "canvas.courses", caught_up)).await;
    let mut running = false;
    for event in seen.iter().filter(|e| e.table == id("canvas.courses")) {
        match event.kind {
            RunEventKind::Started => {
                assert!(!running, "a second run started: {seen:#?}");
                running = true;
            }
            // An overrun tick leaves the run going; a tick that found the table locked or already
            // synced (after its Started) ended it.
            RunEventKind::Skipped(SkipReason::Running) => {}
            _ => running = false,
        }
    }
    let count = |table: &str, kind: fn(&RunEventKind) -> bool| {
        seen.iter().filter(|e| is(e, table, kind)).count()
    };
    let overrun = |k: &RunEventKind| *k == RunEventKind::Skipped(SkipReason::Running);
    assert!(count("canvas.courses", overrun) >= 1, "{seen:#?}");
    let succeeded = |k: &RunEventKind| matches!(k, RunEventKind::Succeeded { .. });
    assert!(
        count("canvas.users", succeeded) >= 2,
        "users waited for courses: {seen:#?}"
    );
    stop_and_compare(daemon, &fake, &db, &tables).await;
}

/// A webhook receiver: every JSON body POSTed to it, in order.
async fn webhook_receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = received.clone();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let sink = sink.clone();
            async move { sink.lock().unwrap().push(body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_table_does_not_stop_the_others_and_shows_everywhere() {
    let tables = ["canvas.courses", "canvas.users"];
    let fake = fake(&tables, 10).await;
    // Two ticks of two attempts each fail with a ProcessingError; the third tick succeeds.
    fake.inject(
        Fault::FailedJob,
        Endpoint::Query.table("canvas", "courses"),
        4,
    );
    let db = TestDb::new(Dialect::Postgres).await;
    let (hook, received) = webhook_receiver().await;
    let mut config = daemon::config(&fake, &db, &tables);
    config.webhooks.urls = vec![hook];
    let (daemon, mut events) = start(&config).await;
    let addr = daemon.http_addr().unwrap();

    events
        .until(|e| {
            is(e, "canvas.courses", |k| {
                matches!(k, RunEventKind::Failed { .. })
            })
        })
        .await;
    wait_synced(daemon.status(), &latest(&fake, &["canvas.users"])).await;
    let (code, _, body) = get(addr, "/status").await;
    assert_eq!(code, 200);
    let status: Value = serde_json::from_str(&body).unwrap();
    let table = |name: &str| {
        status["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == name)
            .unwrap()
            .clone()
    };
    let courses = table("courses");
    assert!(
        courses["consecutive_failures"].as_u64().unwrap() >= 1,
        "{courses}"
    );
    assert_eq!(courses["last_error"]["type"], "ProcessingError");
    assert!(!courses["last_error"]["uuid"].as_str().unwrap().is_empty());
    assert!(courses["synced_until"].is_null());
    assert_eq!(table("users")["consecutive_failures"], 0);
    assert!(table("users")["synced_until"].is_string());
    let (_, _, text) = get(addr, "/metrics").await;
    let samples = prometheus::parse(&text);
    let courses_labels = [("namespace", "canvas"), ("table", "courses")];
    assert_eq!(
        prometheus::value(&samples, "dapsync_table_failing", &courses_labels),
        1.0
    );

    events
        .until(|e| {
            is(e, "canvas.courses", |k| {
                matches!(k, RunEventKind::Succeeded { .. })
            })
        })
        .await;
    wait_for(daemon.status(), "the webhooks", |_| {
        received.lock().unwrap().len() >= 2
    })
    .await;
    let (_, _, text) = get(addr, "/metrics").await;
    let samples = prometheus::parse(&text);
    let runs = |table: &str, outcome: &str| {
        let labels = [
            ("namespace", "canvas"),
            ("table", table),
            ("outcome", outcome),
        ];
        prometheus::value(&samples, "dapsync_table_runs_total", &labels)
    };
    assert_eq!(runs("courses", "failed"), 2.0);
    assert_eq!(runs("courses", "success"), 1.0);
    assert!(runs("users", "success") >= 2.0);
    assert_eq!(
        prometheus::value(&samples, "dapsync_table_retries_total", &courses_labels),
        2.0
    );
    assert_eq!(
        prometheus::value(&samples, "dapsync_table_failing", &courses_labels),
        0.0
    );

    let received = received.lock().unwrap().clone();
    let shape: Vec<(&str, &str, &str)> = received
        .iter()
        .map(|b| {
            (
                b["event"].as_str().unwrap(),
                b["table"].as_str().unwrap(),
                b["error_type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("failing", "courses", "ProcessingError"),
            ("recovered", "courses", "ProcessingError")
        ]
    );
    assert_eq!(received[0]["namespace"], "canvas");
    assert_eq!(received[0]["uuid"], courses["last_error"]["uuid"]);
    stop_and_compare(daemon, &fake, &db, &tables).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_level_error_pauses_every_table_then_they_resume() {
    let tables = ["canvas.courses", "canvas.users"];
    let fake = fake(&tables, 10).await;
    let db = TestDb::new(Dialect::Sqlite).await;
    let config = daemon::config(&fake, &db, &tables);
    let (daemon, mut events) = start(&config).await;
    wait_synced(daemon.status(), &latest(&fake, &tables)).await;

    fake.inject(
        Fault::Account {
            error: AccountError::AccountDisabled,
        },
        Endpoint::Query.table("canvas", "courses"),
        1,
    );
    events
        .until(|e| {
            is(e, "canvas.courses", |k| {
                matches!(k, RunEventKind::Failed { error_type, .. } if error_type == "AccountDisabled")
            })
        })
        .await;
    assert!(daemon.status().view().paused_until.is_some());
    let paused = |k: &RunEventKind| *k == RunEventKind::Skipped(SkipReason::Paused);
    let seen = events.until(|e| is(e, "canvas.users", paused)).await;
    assert!(
        !seen.iter().any(|e| e.kind == RunEventKind::Started),
        "{seen:#?}"
    );
    assert_eq!(
        daemon.status().table(&id("canvas.users")).unwrap().state,
        TableState::Paused
    );

    // After the pause (2 s) both tables sync again.
    let commits = advance(&fake, &tables);
    wait_synced(daemon.status(), &commits).await;
    assert_eq!(daemon.status().view().paused_until, None);
    stop_and_compare(daemon, &fake, &db, &tables).await;
}

/// A table the pause held back runs when the pause ends, not at its next tick (a day away
/// here); so does the one whose error started the pause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_held_back_by_the_pause_run_when_it_ends() {
    let tables = ["canvas.courses", "canvas.users"];
    let fake = fake(&tables, 10).await;
    let db = TestDb::new(Dialect::Sqlite).await;
    let mut config = daemon::config(&fake, &db, &tables);
    config.sync.schedule = CronSchedule::parse("0 3 * * *").unwrap();
    config.sync.max_concurrent_tables = 1;
    for table in ["courses", "users"] {
        fake.inject(
            Fault::Account {
                error: AccountError::AccountUnderMaintenance,
            },
            Endpoint::Query.table("canvas", table),
            1,
        );
    }
    let (daemon, mut events) = start(&config).await;
    let paused = |k: &RunEventKind| *k == RunEventKind::Skipped(SkipReason::Paused);
    events
        .until(|e| tables.iter().any(|t| is(e, t, paused)))
        .await;
    wait_synced(daemon.status(), &latest(&fake, &tables)).await;
    stop_and_compare(daemon, &fake, &db, &tables).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_that_appear_upstream_are_picked_up_and_initialised() {
    let fake = fake(&["canvas.courses"], 10).await;
    let db = TestDb::new(Dialect::Sqlite).await;
    let mut config = daemon::config(&fake, &db, &[]);
    config.namespaces.insert(
        "canvas".into(),
        NamespaceConfig {
            tables: vec!["all".into()],
            exclude: vec!["quiz_*".into()],
            ..NamespaceConfig::default()
        },
    );
    config.sync.refresh_tables = HumanDuration(Duration::from_secs(1));
    let (daemon, _) = start(&config).await;
    wait_synced(daemon.status(), &latest(&fake, &["canvas.courses"])).await;

    fake.add_table(FakeTable::new("canvas", "users", 12));
    fake.add_table(FakeTable::new("canvas", "quiz_questions", 5));
    wait_synced(daemon.status(), &latest(&fake, &["canvas.users"])).await;
    assert_eq!(
        daemon.tables().await,
        [id("canvas.courses"), id("canvas.users")]
    );
    stop_and_compare(daemon, &fake, &db, &["canvas.courses", "canvas.users"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_database_never_sync_the_same_table_at_once() {
    let tables = ["canvas.courses", "canvas.users"];
    for dialect in DIALECTS {
        let fake = fake(&tables, 7).await;
        // Runs of about a second, so that the two daemons' ticks collide.
        fake.inject(
            Fault::SlowBody {
                chunk_bytes: 2048,
                pause_ms: 250,
            },
            Endpoint::Download,
            10_000,
        );
        let db = TestDb::new(dialect).await;
        let config = daemon::config(&fake, &db, &tables);
        let (first, mut first_events) = start(&config).await;
        let (second, mut second_events) = start(&config).await;

        let mut successes: HashMap<TableId, usize> = HashMap::new();
        let mut locked = 0;
        while locked == 0
            || tables
                .iter()
                .any(|t| successes.get(&id(t)).copied().unwrap_or(0) < 3)
        {
            let event: RunEvent = tokio::select! {
                event = first_events.next() => event,
                event = second_events.next() => event,
            };
            match event.kind {
                RunEventKind::Succeeded { .. } => *successes.entry(event.table).or_default() += 1,
                RunEventKind::Skipped(SkipReason::Locked) => locked += 1,
                _ => {}
            }
        }
        stop(first).await;
        stop(second).await;

        let engine = support::engine(&fake, &db).await;
        for name in tables {
            let table = id(name);
            let mut runs: Vec<_> = engine
                .db()
                .recent_runs(Some((&table.namespace, &table.table)), 1000)
                .await
                .unwrap()
                .into_iter()
                .filter(|r| r.outcome != RunOutcome::Running)
                .collect();
            runs.sort_by_key(|r| r.started_at);
            assert!(runs.len() >= 3, "{dialect:?} {name}: {runs:#?}");
            for pair in runs.windows(2) {
                assert!(
                    pair[0].finished_at <= pair[1].started_at,
                    "{dialect:?} {name}: runs {} and {} overlap",
                    pair[0].id,
                    pair[1].id
                );
            }
        }
        assert_all_match(&engine, &fake, &tables).await;
        engine.db().close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_status_and_metrics_over_http() {
    let tables = ["canvas.courses", "canvas.users"];
    let fake = fake(&tables, 10).await;
    let db = TestDb::new(Dialect::Sqlite).await;
    let (daemon, _) = start(&daemon::config(&fake, &db, &tables)).await;
    let addr = daemon.http_addr().unwrap();
    wait_synced(daemon.status(), &latest(&fake, &tables)).await;

    assert_eq!(
        get(addr, "/healthz").await,
        (200, "text/plain; charset=utf-8".into(), "ok\n".into())
    );
    let (code, content_type, body) = get(addr, "/readyz").await;
    assert_eq!((code, content_type.as_str()), (200, "application/json"));
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["database"]["ok"], true);
    assert_eq!(ready["login"]["ok"], true);

    let (code, _, body) = get(addr, "/status").await;
    assert_eq!(code, 200);
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["ready"], true);
    let listed: Vec<&str> = status["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["courses", "users"]);
    let engine = support::engine(&fake, &db).await;
    let stored = engine.db().table_statuses().await.unwrap();
    for table in status["tables"].as_array().unwrap() {
        let keys: Vec<&str> = table
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "namespace",
                "table",
                "state",
                "schedule",
                "running_since",
                "last_success_at",
                "synced_until",
                "lag_seconds",
                "rows",
                "schema_version",
                "next_run",
                "consecutive_failures",
                "last_run",
                "last_error"
            ]
        );
        assert_eq!(table["schedule"], "* * * * * *");
        assert!(table["lag_seconds"].as_f64().unwrap() >= 0.0);
        assert!(table["next_run"].is_string());
        let row = stored.iter().find(|s| s.table == table["table"]).unwrap();
        // The database moves on with each tick: the endpoint's copy is never ahead of it.
        let synced: DateTime<Utc> = serde_json::from_value(table["synced_until"].clone()).unwrap();
        assert!(synced <= row.synced_until.unwrap());
        assert_eq!(table["rows"].as_i64(), row.row_count);
    }

    let (code, content_type, text) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let samples = prometheus::parse(&text);
    let courses = [("namespace", "canvas"), ("table", "courses")];
    assert!(prometheus::value(&samples, "dapsync_table_lag_seconds", &courses) >= 0.0);
    let rows = prometheus::value(&samples, "dapsync_table_rows", &courses);
    assert_eq!(rows, fake.current_rows("canvas", "courses").len() as f64);
    assert!(prometheus::value(&samples, "dapsync_rows_upserted_total", &courses) >= 10.0);
    assert!(
        prometheus::value(
            &samples,
            "dapsync_table_run_duration_seconds_count",
            &courses
        ) >= 1.0
    );
    let starts = [("endpoint", "start_query"), ("status", "202")];
    assert!(prometheus::value(&samples, "dapsync_dap_requests_total", &starts) >= 2.0);
    assert_eq!(prometheus::value(&samples, "dapsync_tables", &[]), 2.0);
    assert_eq!(prometheus::value(&samples, "dapsync_ready", &[]), 1.0);
    for family in [
        "dapsync_rows_deleted_total",
        "dapsync_table_skipped_total",
        "dapsync_dap_retries_total",
        "dapsync_dap_rate_limit_waits_total",
        "dapsync_dap_rate_limit_wait_seconds_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing"
        );
    }
    stop(daemon).await;
    engine.db().close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_when_the_login_does_not_work() {
    let fake = fake(&["canvas.courses"], 5).await;
    let db = TestDb::new(Dialect::Sqlite).await;
    let mut config = daemon::config(&fake, &db, &["canvas.courses"]);
    config.dap.client_secret = Some(dapsync::secret::Secret::new("wrong"));
    let (daemon, _) = start(&config).await;
    let addr = daemon.http_addr().unwrap();
    assert_eq!(get(addr, "/healthz").await.0, 200);
    let (code, _, body) = get(addr, "/readyz").await;
    assert_eq!(code, 503);
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (ready["ready"].clone(), ready["database"]["ok"].clone()),
        (false.into(), true.into())
    );
    assert_eq!(ready["login"]["ok"], false);
    assert!(
        ready["login"]["error"]
            .as_str()
            .unwrap()
            .contains("AuthenticationError"),
        "{ready}"
    );
    stop(daemon).await;
}

/// The `dapsync` binary running `run` on a configuration file, its JSON log lines collected.
struct Process {
    child: tokio::process::Child,
    logs: tokio::sync::mpsc::UnboundedReceiver<Value>,
    seen: Vec<Value>,
    _dir: tempfile::TempDir,
}

impl Process {
    fn spawn(fake: &FakeDap, database_url: &str, grace: &str) -> Self {
        Self::spawn_with(fake, database_url, grace, &[])
    }

    /// [`Process::spawn`] with more environment variables.
    fn spawn_with(fake: &FakeDap, database_url: &str, grace: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dapsync.toml");
        let toml = format!(
            r#"
[dap]
base_url = "{base}"
client_id = "{id}"
client_secret = "{secret}"
job_poll_initial = "5ms"
job_poll_max = "20ms"
initial_backoff = "5ms"
max_backoff = "50ms"
queries_per_minute = 10000

[database]
url = "{url}"

[sync]
schedule = "* * * * * *"
shutdown_grace = "{grace}"

[namespaces.canvas]
tables = ["courses", "users"]

[http]
enabled = false
"#,
            base = fake.base_url(),
            id = fake.client_id(),
            secret = fake.client_secret().expose(),
            url = database_url,
        );
        std::fs::write(&path, toml).unwrap();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_dapsync"))
            .args([
                "--config",
                path.to_str().unwrap(),
                "--log-format",
                "json",
                "run",
            ])
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (sender, logs) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if sender.send(value).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            logs,
            seen: Vec::new(),
            _dir: dir,
        }
    }

    /// Waits for a log line with `message` about `table`.
    async fn logged(&mut self, message: &str, table: &str) {
        let wait = async {
            loop {
                let line = self.logs.recv().await.expect("the process ended");
                let found = line["message"] == message && line["table"] == table;
                self.seen.push(line);
                if found {
                    return;
                }
            }
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .unwrap_or_else(|_| panic!("no {message:?} for {table}: {:#?}", self.seen));
    }

    /// Sends SIGTERM.
    fn signal(&self) {
        let pid = self.child.id().unwrap().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Sends SIGTERM and returns the exit code and every log line.
    async fn terminate(mut self) -> (Option<i32>, Vec<Value>) {
        self.signal();
        let exit = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("the process did not stop")
            .unwrap();
        while let Some(line) = self.logs.recv().await {
            self.seen.push(line);
        }
        (exit.code(), self.seen)
    }
}

/// A table's watermark and rows, to compare after the process is gone.
async fn snapshot_of(
    engine: &Engine,
    fake: &FakeDap,
    table: &TableId,
) -> (DateTime<Utc>, Vec<Value>) {
    let state = engine.db().sync_state(table).await.unwrap().unwrap();
    let schema = support::schema(fake, &table.namespace, &table.table);
    let plan = TablePlan::new(engine.db().dialect(), schema);
    let mut rows = engine.db().dump_rows(&plan).await.unwrap();
    rows.sort_by_key(|r| r["key"].to_string());
    (state.since, rows)
}

/// Runs the binary until both tables are snapshotted, makes every download slow, changes both
/// tables upstream, waits until both runs carrying the changes are downloading, and sends
/// SIGTERM. Downloads trickle in 512-byte chunks with `pause_ms` before each, so no download
/// finishes sooner than that. Returns the exit code, the log, and for each table whether it
/// moved to the new watermark; asserts that each table is either exactly as before or equal to
/// the source.
async fn sigterm_mid_run(
    dialect: Dialect,
    grace: &str,
    pause_ms: u64,
) -> (Option<i32>, Vec<Value>, Vec<bool>) {
    let tables = ["canvas.courses", "canvas.users"];
    let fake = fake(&tables, 7).await;
    let db = TestDb::new(dialect).await;
    let mut process = Process::spawn(&fake, db.url.expose(), grace);
    for table in tables {
        process.logged("table run finished", table).await;
    }
    let engine = support::engine(&fake, &db).await;
    let mut before = Vec::new();
    for table in tables {
        before.push(snapshot_of(&engine, &fake, &id(table)).await);
    }

    fake.inject(
        Fault::SlowBody {
            chunk_bytes: 512,
            pause_ms,
        },
        Endpoint::Download,
        10_000,
    );
    advance(&fake, &tables);
    // Queries received from now on carry the changes.
    let mark = fake.requests().len();
    let started = || {
        let recent = fake.requests().split_off(mark);
        let last_query = tables
            .iter()
            .map(|t| {
                let path = format!("/dap/query/canvas/table/{}/data", id(t).table);
                recent
                    .iter()
                    .position(|r| r.endpoint == Endpoint::Query && r.path == path)
            })
            .collect::<Option<Vec<usize>>>()
            .and_then(|positions| positions.into_iter().max());
        last_query.is_some_and(|q| recent[q..].iter().any(|r| r.endpoint == Endpoint::Download))
    };
    tokio::time::timeout(PATIENCE, async {
        while !started() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the runs with the changes did not start");

    let (code, log) = process.terminate().await;
    let mut moved = Vec::new();
    for (name, (since, rows)) in tables.iter().zip(before) {
        let table = id(name);
        let (now_since, now_rows) = snapshot_of(&engine, &fake, &table).await;
        if now_since == since {
            assert_eq!(
                now_rows, rows,
                "{dialect:?} {name} changed without its watermark"
            );
            moved.push(false);
        } else {
            support::assert_replica_matches(&engine, &fake, &table.namespace, &table.table).await;
            moved.push(true);
        }
    }
    engine.db().close().await;
    (code, log, moved)
}

fn logged(log: &[Value], message: &str) -> bool {
    log.iter().any(|line| line["message"] == message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_after_the_grace_period_rolls_the_running_tables_back() {
    for dialect in DIALECTS {
        // A download takes at least 5 s: far past the grace period, however slow the machine.
        let (code, log, moved) = sigterm_mid_run(dialect, "200ms", 5_000).await;
        assert_eq!(code, Some(0), "{dialect:?}: {log:#?}");
        assert_eq!(moved, [false, false], "{dialect:?}");
        assert!(
            logged(
                &log,
                "run cut off at shutdown; its transaction is rolled back"
            ),
            "{dialect:?}: {log:#?}"
        );
        assert!(logged(&log, "stopped"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_running_tables_finish_within_the_grace_period() {
    for dialect in [Dialect::Postgres, Dialect::Sqlite] {
        let (code, log, moved) = sigterm_mid_run(dialect, "30s", 300).await;
        assert_eq!(code, Some(0), "{dialect:?}: {log:#?}");
        assert_eq!(moved, [true, true], "{dialect:?}");
        assert!(!logged(
            &log,
            "run cut off at shutdown; its transaction is rolled back"
        ));
        assert!(logged(&log, "waiting for running tables to finish"));
    }
}

/// systemd's watchdog hears from dapsync through the whole shutdown grace period. The pings
/// follow the scheduler's heartbeat while it runs; a stopping scheduler no longer ticks, and its
/// heartbeat goes stale after 30 s (`status::HEARTBEAT_STALE`), yet a clean stop must not look
/// like a hang. The run here outlasts that (its download stalls), and pings must still come
/// well after it, until a second signal ends the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_is_pinged_through_the_shutdown_grace_period() {
    let tables = ["canvas.courses"];
    let fake = fake(&tables, 7).await;
    let db = TestDb::new(Dialect::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = tokio::net::UnixDatagram::bind(&path).unwrap();
    // A ping every second.
    let env = [
        ("NOTIFY_SOCKET", path.to_str().unwrap()),
        ("WATCHDOG_USEC", "2000000"),
    ];
    let mut process = Process::spawn_with(&fake, db.url.expose(), "300s", &env);
    let (sender, mut messages) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buffer = [0u8; 256];
        while let Ok(n) = socket.recv(&mut buffer).await {
            let message = String::from_utf8_lossy(&buffer[..n]).into_owned();
            if sender.send((tokio::time::Instant::now(), message)).is_err() {
                return;
            }
        }
    });
    process.logged("table run finished", "canvas.courses").await;
    fake.inject(
        Fault::SlowBody {
            chunk_bytes: 512,
            pause_ms: 600_000,
        },
        Endpoint::Download,
        10_000,
    );
    let mark = fake.requests().len();
    advance(&fake, &tables);
    tokio::time::timeout(PATIENCE, async {
        while !fake.requests()[mark..]
            .iter()
            .any(|r| r.endpoint == Endpoint::Download)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the run with the changes did not start downloading");

    process.signal();
    async fn next(
        messages: &mut tokio::sync::mpsc::UnboundedReceiver<(tokio::time::Instant, String)>,
    ) -> Option<(tokio::time::Instant, String)> {
        tokio::time::timeout(Duration::from_secs(90), messages.recv())
            .await
            .ok()
            .flatten()
    }
    let stopping_at = loop {
        match next(&mut messages).await {
            Some((at, message)) if message == "STOPPING=1" => break at,
            Some(_) => {}
            None => panic!("no STOPPING=1 from dapsync"),
        }
    };
    // Past the heartbeat's 30 s, and the 5 s between heartbeats, with a margin.
    let past_the_heartbeat = stopping_at + Duration::from_secs(40);
    loop {
        match next(&mut messages).await {
            Some((at, message)) if message == "WATCHDOG=1" && at >= past_the_heartbeat => break,
            Some(_) => {}
            None => panic!("the watchdog pings stopped during the shutdown grace period"),
        }
    }
    // The second signal ends the grace period: the run is cut off, the exit clean.
    let (code, log) = process.terminate().await;
    assert_eq!(code, Some(0), "{log:#?}");
    assert!(
        logged(
            &log,
            "run cut off at shutdown; its transaction is rolled back"
        ),
        "{log:#?}"
    );
}

/// A run waiting for the query budget when the daemon stops gives up at once: its query never
/// reaches the API, nothing of it is applied, and it is recorded as interrupted. The grace
/// period (an hour) and the budget (one query a minute) would otherwise hold the stop up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_waiting_for_the_query_budget_does_not_hold_up_the_shutdown() {
    let tables = ["canvas.courses", "canvas.users"];
    let fake = fake(&tables, 5).await;
    let db = TestDb::new(Dialect::Postgres).await;
    let mut config = daemon::config(&fake, &db, &tables);
    config.sync.schedule = CronSchedule::parse("0 0 * * * *").unwrap();
    config.dap.queries_per_minute = 1;
    config.sync.shutdown_grace = HumanDuration(Duration::from_secs(3600));
    let (daemon, mut events) = start(&config).await;
    // Both were never synced and start at once; one gets the minute's only query.
    let seen = events
        .until(|e| matches!(e.kind, RunEventKind::Succeeded { .. }))
        .await;
    let first = seen.last().unwrap().table.clone();
    let other = tables.iter().map(|t| id(t)).find(|t| *t != first).unwrap();
    let other_name = other.to_string();
    tokio::time::timeout(PATIENCE, async {
        while requests(&fake, Endpoint::GetSchema, Some(&other_name)) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the other table's run did not start");
    assert_eq!(requests(&fake, Endpoint::Query, Some(&other_name)), 0);

    tokio::time::timeout(PATIENCE, stop(daemon))
        .await
        .expect("the shutdown waited for the query budget");
    let abandoned = events
        .until(|e| e.table == other && e.kind == RunEventKind::Abandoned)
        .await;
    assert!(!abandoned.iter().any(|e| e.table == other
        && matches!(
            e.kind,
            RunEventKind::Succeeded { .. } | RunEventKind::Failed { .. }
        )));
    assert_eq!(requests(&fake, Endpoint::Query, Some(&other_name)), 0);
    let engine = support::engine(&fake, &db).await;
    assert!(engine.db().sync_state(&other).await.unwrap().is_none());
    let runs = engine
        .db()
        .recent_runs(Some((&other.namespace, &other.table)), 10)
        .await
        .unwrap();
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0].outcome, RunOutcome::Interrupted, "{runs:#?}");
    assert_eq!(runs[0].error_type.as_deref(), Some("Stopped"));
    engine.db().close().await;
}

/// A database that accepts connections and never answers stalls the start-up; SIGTERM still
/// stops the process at once, with exit code 0 (not after the pool's acquire timeout, with a
/// connection error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_stalled_start_up_stops_the_process() {
    let fake = fake(&["canvas.courses"], 1).await;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("postgres://postgres@{}/test", silent.local_addr().unwrap());
    let process = Process::spawn(&fake, &url, "10s");
    // Hold the connection open without a word until the test ends.
    let (_connection, _) = tokio::time::timeout(PATIENCE, silent.accept())
        .await
        .expect("the process never connected to the database")
        .unwrap();

    let (code, log) = process.terminate().await;
    assert_eq!(code, Some(0), "{log:#?}");
    assert!(logged(&log, "stopped during start-up"), "{log:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_replicates_its_tables_and_refuses_to_overwrite_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let args = dapsync::cli::demo::DemoArgs {
        database: dir.path().join("demo.db"),
        replace: false,
        rounds: 1,
        port: 0,
    };
    let code = dapsync::cli::demo::run(args.clone(), std::future::pending())
        .await
        .unwrap();
    assert_eq!(code, 0);
    let db = dapsync::db::Db::connect(
        &dapsync::config::DatabaseUrl::new(format!("sqlite://{}", args.database.display())),
        1,
        Default::default(),
    )
    .await
    .unwrap();
    let statuses = db.table_statuses().await.unwrap();
    let synced: Vec<&str> = statuses.iter().map(|s| s.table.as_str()).collect();
    assert_eq!(synced, ["assignments", "courses", "enrollments", "users"]);
    assert!(statuses.iter().all(|s| s.consecutive_failures == 0));
    db.close().await;

    let refused = dapsync::cli::demo::run(args, std::future::pending()).await;
    assert!(
        matches!(&refused, Err(dapsync::app::Error::Usage(m)) if m.contains("--replace")),
        "{refused:?}"
    );
}
