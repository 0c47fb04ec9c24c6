//! The control API over HTTP against a running daemon: the reads (`/tables`, `/runs` and its
//! pages), the write endpoints' token, sync now and resync, a conflict with a running run, a
//! cancel that rolls the run back, and a pause kept across a restart; and the same actions from
//! the shell.

use std::net::SocketAddr;
use std::time::Duration;

use dapsync::config::{Config, CronSchedule};
use dapsync::fake::{Changes, Endpoint, FakeDap, Fault};
use dapsync::secret::Secret;
use dapsync::sql::Dialect;
use dapsync::status::{RunEventKind, SkipReason};
use serde_json::Value;

use crate::support::daemon::{self, Events, PATIENCE, get, id, is, start, stop, wait_synced};
use crate::support::{self, DIALECTS, TestDb};

const TOKEN: &str = "s3cret-control-token";
const TABLES: [&str; 2] = ["canvas.courses", "canvas.users"];
const CHANGES: Changes = Changes {
    updates: 3,
    inserts: 2,
    deletes: 1,
    inserted_then_deleted: 0,
};

/// A request to the endpoint: status and JSON body (`Null` when the body is not JSON).
async fn call(
    addr: SocketAddr,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .tls_backend_rustls()
        .build()
        .unwrap();
    let mut request = client.request(method, format!("http://{addr}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    let text = answer.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn post(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, Value) {
    call(addr, reqwest::Method::POST, path, token, None).await
}

async fn get_json(addr: SocketAddr, path: &str) -> Value {
    let (code, _, body) = get(addr, path).await;
    assert_eq!(code, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// A daemon configuration with the control token; hourly, so that only the first runs (the
/// tables were never synced) and the operator's start on their own.
fn config(fake: &FakeDap, db: &TestDb, schedule: &str) -> Config {
    let mut config = daemon::config(fake, db, &TABLES);
    config.sync.schedule = CronSchedule::parse(schedule).unwrap();
    config.http.control_token = Some(Secret::new(TOKEN));
    config
}

async fn fake() -> FakeDap {
    support::fake(&[("canvas", "courses", 30), ("canvas", "users", 30)]).await
}

/// Waits until `table`'s run after now ends with `kind`.
async fn wait_run(events: &mut Events, table: &str, done: impl Fn(&RunEventKind) -> bool) {
    events.until(|e| is(e, table, &done)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_api_over_http() {
    for dialect in DIALECTS {
        control_api_on(dialect).await;
    }
}

async fn control_api_on(dialect: Dialect) {
    let fake = fake().await;
    let db = TestDb::new(dialect).await;
    let (daemon, mut events) = start(&config(&fake, &db, "0 0 * * * *")).await;
    let addr = daemon.http_addr().unwrap();
    let latest: Vec<_> = TABLES
        .iter()
        .map(|t| (id(t), fake.latest_commit("canvas", &id(t).table)))
        .collect();
    wait_synced(daemon.status(), &latest).await;
    let courses = "/tables/canvas/courses";

    // Reads.
    let tables = get_json(addr, "/tables").await;
    let names: Vec<&str> = tables
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["courses", "users"]);
    let one = get_json(addr, courses).await;
    assert_eq!(one["state"], "idle", "{one}");
    assert_eq!(one["rows"], 30);
    assert_eq!(get(addr, "/tables/canvas/nope").await.0, 404);

    // The token: 401 without, 403 wrong, and nothing changed by either.
    let pause = format!("{courses}/pause");
    assert_eq!(post(addr, &pause, None).await.0, 401);
    assert_eq!(post(addr, &pause, Some("wrong")).await.0, 403);
    assert_eq!(
        post(addr, &format!("{courses}/runs"), Some("wrong"))
            .await
            .0,
        403
    );
    assert_eq!(get_json(addr, courses).await["state"], "idle");

    // Pause and resume.
    let (code, paused) = post(addr, &pause, Some(TOKEN)).await;
    assert_eq!(
        (code, paused["state"].as_str()),
        (200, Some("paused")),
        "{paused}"
    );
    assert_eq!(get_json(addr, courses).await["state"], "paused");
    let engine = support::engine(&fake, &db).await;
    let control = engine
        .db()
        .table_control("canvas", "courses")
        .await
        .unwrap();
    assert!(control.paused_at.is_some());
    let (code, resumed) = post(addr, &format!("{courses}/resume"), Some(TOKEN)).await;
    assert_eq!(
        (code, resumed["state"].as_str()),
        (200, Some("idle")),
        "{resumed}"
    );
    assert_eq!(
        post(addr, "/tables/canvas/nope/pause", Some(TOKEN)).await.0,
        404
    );

    // Sync now: the changes arrive.
    let commit = fake.advance("canvas", "courses", CHANGES);
    let runs = format!("{courses}/runs");
    let (code, started) = post(addr, &runs, Some(TOKEN)).await;
    assert_eq!(code, 202, "{started}");
    assert!(
        matches!(started["state"].as_str(), Some("queued" | "running")),
        "{started}"
    );
    wait_synced(daemon.status(), &[(id("canvas.courses"), commit)]).await;
    support::assert_replica_matches(&engine, &fake, "canvas", "courses").await;
    let bad = call(
        addr,
        reqwest::Method::POST,
        &runs,
        Some(TOKEN),
        Some(r#"{"kind":"later"}"#),
    )
    .await;
    assert_eq!(bad.0, 400);

    // A run under way: a second start is a conflict; a cancel stops it and rolls it back.
    let before = support::dump(&engine, &fake, "canvas", "courses").await;
    fake.inject(
        Fault::SlowBody {
            chunk_bytes: 64,
            pause_ms: 2_000,
        },
        Endpoint::Download,
        10_000,
    );
    fake.advance("canvas", "courses", CHANGES);
    let (code, _) = post(addr, &runs, Some(TOKEN)).await;
    assert_eq!(code, 202);
    wait_download(&fake).await;
    let (code, conflict) = post(addr, &runs, Some(TOKEN)).await;
    assert_eq!(code, 409, "{conflict}");
    let current = format!("{courses}/runs/current");
    assert_eq!(
        call(addr, reqwest::Method::DELETE, &current, None, None)
            .await
            .0,
        401
    );
    let (code, cancelled) = call(addr, reqwest::Method::DELETE, &current, Some(TOKEN), None).await;
    assert_eq!(code, 200, "{cancelled}");
    assert_eq!(cancelled["run"]["outcome"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["run"]["kind"], "incremental");
    wait_run(&mut events, "canvas.courses", |k| {
        *k == RunEventKind::Cancelled
    })
    .await;
    assert_eq!(
        support::dump(&engine, &fake, "canvas", "courses").await,
        before
    );
    let (code, _) = call(addr, reqwest::Method::DELETE, &current, Some(TOKEN), None).await;
    assert_eq!(code, 409, "nothing left to cancel");

    // A resync: a new snapshot replaces the table, and the cancelled changes arrive with it.
    wait_idle(&daemon, "courses").await;
    fake.clear_faults();
    let (code, _) = call(
        addr,
        reqwest::Method::POST,
        &runs,
        Some(TOKEN),
        Some(r#"{"kind":"resync"}"#),
    )
    .await;
    assert_eq!(code, 202);
    wait_run(&mut events, "canvas.courses", |k| {
        matches!(k, RunEventKind::Succeeded { .. })
    })
    .await;
    support::assert_replica_matches(&engine, &fake, "canvas", "courses").await;

    // The history, newest first, in pages.
    let all = get_json(addr, "/runs?namespace=canvas&table=courses&limit=100").await;
    let all = all["runs"].as_array().unwrap().clone();
    let kinds: Vec<(&str, &str, Option<&str>)> = all
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap(),
                r["outcome"].as_str().unwrap(),
                r["reason"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("snapshot", "success", Some("requested")),
            ("incremental", "cancelled", None),
            ("incremental", "success", None),
            ("snapshot", "success", Some("initial")),
        ]
    );
    let newest = &all[0];
    for key in ["queued_seconds", "api_seconds", "load_seconds"] {
        assert!(
            newest[key].as_f64().is_some_and(|s| s >= 0.0),
            "{key}: {newest}"
        );
    }
    assert!(newest["job_id"].is_string());
    let mut paged = Vec::new();
    let mut path = "/runs?namespace=canvas&table=courses&limit=3".to_owned();
    loop {
        let page = get_json(addr, &path).await;
        paged.extend(page["runs"].as_array().unwrap().iter().cloned());
        match page["next_before"].as_i64() {
            Some(before) => {
                path = format!("/runs?namespace=canvas&table=courses&limit=3&before={before}")
            }
            None => break,
        }
    }
    assert_eq!(paged, all);
    let cancelled = get_json(addr, "/runs?outcome=cancelled").await;
    assert_eq!(cancelled["runs"].as_array().unwrap().len(), 1);
    assert_eq!(get(addr, "/runs?outcome=maybe").await.0, 400);
    assert_eq!(get(addr, "/runs?limit=0").await.0, 400);
    let users = get_json(addr, "/runs?namespace=canvas&table=users").await;
    assert!(
        users["runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["table"] == "users")
    );

    stop(daemon).await;
    engine.db().close().await;
}

/// Waits until a download is under way.
async fn wait_download(fake: &FakeDap) {
    let mark = fake.requests().len();
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

async fn wait_idle(daemon: &dapsync::app::Daemon, table: &str) {
    daemon::wait_for(daemon.status(), "the table to be idle", |view| {
        view.tables
            .iter()
            .any(|t| t.table == table && t.running_since.is_none())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_endpoints_are_off_without_a_token() {
    let fake = fake().await;
    let db = TestDb::new(Dialect::Sqlite).await;
    let mut config = config(&fake, &db, "0 0 * * * *");
    config.http.control_token = None;
    let (daemon, _) = start(&config).await;
    let addr = daemon.http_addr().unwrap();
    for path in [
        "/tables/canvas/courses/pause",
        "/tables/canvas/courses/runs",
    ] {
        let (code, body) = post(addr, path, Some(TOKEN)).await;
        assert_eq!(code, 403, "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("control_token_file")
        );
    }
    assert_eq!(get(addr, "/tables").await.0, 200);
    stop(daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_is_kept_across_a_restart() {
    let fake = fake().await;
    let db = TestDb::new(Dialect::Postgres).await;
    let config = config(&fake, &db, "* * * * * *");
    let (daemon, _) = start(&config).await;
    let addr = daemon.http_addr().unwrap();
    let first: Vec<_> = TABLES
        .iter()
        .map(|t| (id(t), fake.latest_commit("canvas", &id(t).table)))
        .collect();
    wait_synced(daemon.status(), &first).await;
    let (code, _) = post(addr, "/tables/canvas/users/pause", Some(TOKEN)).await;
    assert_eq!(code, 200);
    stop(daemon).await;

    let users_commit = fake.advance("canvas", "users", CHANGES);
    let courses_commit = fake.advance("canvas", "courses", CHANGES);
    let (daemon, mut events) = start(&config).await;
    let addr = daemon.http_addr().unwrap();
    assert_eq!(
        get_json(addr, "/tables/canvas/users").await["state"],
        "paused"
    );
    // Ticks come and go: users is skipped as paused, courses moves on.
    wait_run(&mut events, "canvas.users", |k| {
        *k == RunEventKind::Skipped(SkipReason::Paused)
    })
    .await;
    wait_synced(daemon.status(), &[(id("canvas.courses"), courses_commit)]).await;
    wait_run(&mut events, "canvas.users", |k| {
        *k == RunEventKind::Skipped(SkipReason::Paused)
    })
    .await;
    let users = get_json(addr, "/tables/canvas/users").await;
    assert_eq!(users["state"], "paused");
    let view = daemon.status().table(&id("canvas.users")).unwrap();
    assert!(view.synced_until.unwrap() < users_commit);

    let (code, _) = post(addr, "/tables/canvas/users/resume", Some(TOKEN)).await;
    assert_eq!(code, 200);
    wait_synced(daemon.status(), &[(id("canvas.users"), users_commit)]).await;
    stop(daemon).await;
}

/// Runs the binary on a configuration file for `db` (the database is all these commands use).
async fn dapsync(dir: &std::path::Path, db: &TestDb, args: &[&str]) -> (i32, String) {
    let config = dir.join("dapsync.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = {:?}\n[log]\nlevel = \"warn\"\n",
            db.url.expose()
        ),
    )
    .unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_dapsync"))
        .env_clear()
        .arg("--config")
        .arg(&config)
        .args(args)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap(), format!("{stdout}{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shell_pauses_resumes_cancels_and_lists_runs_on_the_database() {
    let fake = fake().await;
    // SQLite's case, a load holding the one write lock, has its own test below.
    let db = TestDb::new(Dialect::Postgres).await;
    let config = config(&fake, &db, "* * * * * *");
    let (daemon, mut events) = start(&config).await;
    let first: Vec<_> = TABLES
        .iter()
        .map(|t| (id(t), fake.latest_commit("canvas", &id(t).table)))
        .collect();
    wait_synced(daemon.status(), &first).await;
    let dir = tempfile::tempdir().unwrap();
    let table = ["--namespace", "canvas", "--table", "users"];

    let (code, out) = dapsync(dir.path(), &db, &[&["pause"][..], &table].concat()).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("canvas.users: paused since"), "{out}");
    // The daemon reads it at the next tick.
    wait_run(&mut events, "canvas.users", |k| {
        *k == RunEventKind::Skipped(SkipReason::Paused)
    })
    .await;
    assert_eq!(
        daemon.status().table(&id("canvas.users")).unwrap().state,
        dapsync::status::TableState::Paused
    );
    let (code, out) = dapsync(dir.path(), &db, &["status", "--json"]).await;
    assert_eq!(code, 0, "{out}");
    let statuses: Value = serde_json::from_str(&out).unwrap();
    let users = statuses
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["table"] == "users")
        .unwrap();
    assert_eq!(users["state"], "paused");

    // Nothing runs on the paused table: nothing to cancel.
    let (code, out) = dapsync(dir.path(), &db, &[&["cancel"][..], &table].concat()).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no run is under way"), "{out}");

    // A slow run of courses, cancelled from the shell: the daemon rolls it back.
    let engine = support::engine(&fake, &db).await;
    let before = support::dump(&engine, &fake, "canvas", "courses").await;
    fake.inject(
        Fault::SlowBody {
            chunk_bytes: 64,
            pause_ms: 2_000,
        },
        Endpoint::Download,
        10_000,
    );
    fake.advance("canvas", "courses", CHANGES);
    wait_download(&fake).await;
    let courses = ["--namespace", "canvas", "--table", "courses"];
    let (code, out) = dapsync(dir.path(), &db, &[&["cancel"][..], &courses].concat()).await;
    assert_eq!(code, 0, "{out}");
    wait_run(&mut events, "canvas.courses", |k| {
        *k == RunEventKind::Cancelled
    })
    .await;
    fake.clear_faults();
    assert_eq!(
        support::dump(&engine, &fake, "canvas", "courses").await,
        before
    );

    let (code, out) = dapsync(
        dir.path(),
        &db,
        &[
            "runs",
            "--namespace",
            "canvas",
            "--table",
            "courses",
            "--outcome",
            "cancelled",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let runs: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "{runs}");
    assert_eq!(runs["runs"][0]["error_type"], "Cancelled");
    let (code, out) = dapsync(dir.path(), &db, &["runs", "--limit", "3"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().count(), 4, "a header and three runs: {out}");

    let (code, out) = dapsync(dir.path(), &db, &[&["resume"][..], &table].concat()).await;
    assert_eq!(code, 0, "{out}");
    let users_commit = fake.advance("canvas", "users", CHANGES);
    wait_synced(daemon.status(), &[(id("canvas.users"), users_commit)]).await;
    stop(daemon).await;
    engine.db().close().await;
}

/// Whether another connection holds SQLite's one write lock on the database at `url`.
async fn sqlite_write_locked(url: &str) -> bool {
    use sqlx::ConnectOptions;
    use std::str::FromStr;
    let mut connection = sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .unwrap()
        .busy_timeout(Duration::ZERO)
        .connect()
        .await
        .unwrap();
    let locked = match sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut connection)
        .await
    {
        Ok(_) => {
            sqlx::query("ROLLBACK")
                .execute(&mut connection)
                .await
                .unwrap();
            false
        }
        Err(error) => {
            assert!(error.to_string().contains("locked"), "{error}");
            true
        }
    };
    use sqlx::Connection;
    connection.close().await.unwrap();
    locked
}

/// A long load holds SQLite's one writer: `dapsync cancel` from the shell waits for the database
/// instead of failing with "database is locked", and the cancel takes effect: the daemon rolls
/// the run back, which lets the shell's write through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shell_cancels_a_long_load_on_sqlite() {
    let fake = fake().await;
    let db = TestDb::new(Dialect::Sqlite).await;
    let config = config(&fake, &db, "0 0 * * * *");
    let (daemon, mut events) = start(&config).await;
    let first: Vec<_> = TABLES
        .iter()
        .map(|t| (id(t), fake.latest_commit("canvas", &id(t).table)))
        .collect();
    wait_synced(daemon.status(), &first).await;
    let engine = support::engine(&fake, &db).await;
    let before = support::dump(&engine, &fake, "canvas", "courses").await;

    // A re-snapshot whose download trickles in: its load holds the write lock meanwhile.
    fake.inject(
        Fault::SlowBody {
            chunk_bytes: 64,
            pause_ms: 2_000,
        },
        Endpoint::Download,
        10_000,
    );
    fake.advance("canvas", "courses", CHANGES);
    let addr = daemon.http_addr().unwrap();
    let (code, body) = call(
        addr,
        reqwest::Method::POST,
        "/tables/canvas/courses/runs",
        Some(TOKEN),
        Some(r#"{"kind":"resync"}"#),
    )
    .await;
    assert_eq!(code, 202, "{body}");
    tokio::time::timeout(PATIENCE, async {
        while !sqlite_write_locked(db.url.expose()).await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the load never took the write lock");

    let dir = tempfile::tempdir().unwrap();
    let courses = ["cancel", "--namespace", "canvas", "--table", "courses"];
    let (code, out) = tokio::time::timeout(PATIENCE, dapsync(dir.path(), &db, &courses))
        .await
        .expect("the shell's cancel waited for the whole load");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("cancel requested"), "{out}");
    wait_run(&mut events, "canvas.courses", |k| {
        *k == RunEventKind::Cancelled
    })
    .await;
    fake.clear_faults();
    assert_eq!(
        support::dump(&engine, &fake, "canvas", "courses").await,
        before
    );
    let runs = engine
        .db()
        .recent_runs(Some(("canvas", "courses")), 1)
        .await
        .unwrap();
    assert_eq!(
        runs[0].outcome,
        dapsync::db::RunOutcome::Cancelled,
        "{runs:#?}"
    );
    stop(daemon).await;
    engine.db().close().await;
}
