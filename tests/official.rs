//! The official `dap` client's command line with `dap` replaced by `dapsync`: its documented
//! examples, its global options, and its database commands on SQLite and PostgreSQL.

use dapsync::fake::{Changes, FakeDap};
use dapsync::sql::Dialect;
use serde_json::Value;

use crate::export::{dapsync, fake_env};
use crate::support::{self, TestDb};

fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// Runs `args` (owned strings) in `cwd` with `env`, and asserts success.
async fn ok(cwd: &std::path::Path, env: &[(String, String)], args: Vec<String>) -> String {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    dapsync(cwd, env, &args).await.success().to_owned()
}

#[tokio::test]
async fn the_documented_examples_run_with_dap_replaced_by_dapsync() {
    for dialect in [Dialect::Sqlite, Dialect::Postgres] {
        let fake: FakeDap =
            support::fake(&[("canvas", "courses", 12), ("canvas", "users", 5)]).await;
        let db = TestDb::new(dialect).await;
        let url = db.url.expose().to_owned();
        let env = fake_env(&fake);
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path();

        let tables = ok(cwd, &env, owned(&["list", "--namespace", "canvas"])).await;
        assert_eq!(tables.lines().collect::<Vec<_>>(), ["courses", "users"]);
        let written = ok(
            cwd,
            &env,
            owned(&["schema", "--namespace", "canvas", "--table", "courses"]),
        )
        .await;
        assert_eq!(written.trim(), "./courses_schema_version_1.json");
        let schema: Value = serde_json::from_slice(
            &std::fs::read(cwd.join("courses_schema_version_1.json")).unwrap(),
        )
        .unwrap();
        assert!(schema["properties"]["key"].is_object());
        let written = ok(
            cwd,
            &env,
            owned(&[
                "schema",
                "--namespace",
                "canvas",
                "--table",
                "all",
                "--output-directory",
                "schemas",
            ]),
        )
        .await;
        assert_eq!(written.lines().count(), 2, "{written}");
        assert!(cwd.join("schemas/users_schema_version_1.json").exists());

        let out = ok(
            cwd,
            &env,
            owned(&["snapshot", "--namespace", "canvas", "--table", "courses"]),
        )
        .await;
        assert!(out.contains("in downloads/job_"), "{out}");
        let out = ok(
            cwd,
            &env,
            owned(&[
                "incremental",
                "--namespace",
                "canvas",
                "--table",
                "courses",
                "--since",
                "2022-06-13T09:30:00Z",
            ]),
        )
        .await;
        assert!(
            out.contains("incremental from 2022-06-13T09:30:00.000000Z"),
            "{out}"
        );

        let db_args = |command: &str| {
            owned(&[
                command,
                "--connection-string",
                &url,
                "--namespace",
                "canvas",
                "--table",
                "courses",
            ])
        };
        let out = ok(cwd, &env, db_args("initdb")).await;
        assert!(
            out.contains("canvas.courses: snapshot (initial): 12 upserted"),
            "{out}"
        );
        fake.advance(
            "canvas",
            "courses",
            Changes {
                updates: 2,
                inserts: 3,
                deletes: 1,
                inserted_then_deleted: 0,
            },
        );
        let out = ok(cwd, &env, db_args("syncdb")).await;
        assert!(out.contains("canvas.courses: incremental: "), "{out}");
        let engine = support::engine(&fake, &db).await;
        support::assert_replica_matches(&engine, &fake, "canvas", "courses").await;
        engine.db().close().await;

        let listdb = |extra: &[&str]| {
            let mut args = owned(&[
                "listdb",
                "--connection-string",
                &url,
                "--namespace",
                "canvas",
            ]);
            args.extend(owned(extra));
            ok(cwd, &env, args)
        };
        let out = listdb(&[]).await;
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].ends_with("ROWS"), "{out}");
        assert!(
            lines[1].starts_with("canvas.courses")
                && lines[1].contains(" ok ")
                && lines[1].ends_with(" 14"),
            "{out}"
        );
        assert!(
            lines[2].starts_with("canvas.users") && lines[2].contains("not replicated"),
            "{out}"
        );
        let out = listdb(&["--omit-not-replicated", "--omit-record-count"]).await;
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(
            !lines[0].contains("ROWS") && !lines[1].ends_with(" 14"),
            "{out}"
        );

        let out = ok(cwd, &env, db_args("dropdb")).await;
        assert!(
            out.contains("canvas.courses: dropping") && out.contains("canvas.courses: dropped"),
            "{out}"
        );
        let out = listdb(&["--omit-not-replicated"]).await;
        assert_eq!(out.lines().count(), 1, "{out}");
    }
}

#[tokio::test]
async fn the_official_global_options_before_the_command() {
    let fake = support::fake(&[("canvas", "courses", 3)]).await;
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let logfile = cwd.join("dap.log");
    let secret = fake.client_secret().expose().to_owned();
    let run = dapsync(
        cwd,
        &[],
        &[
            "--base-url",
            fake.base_url(),
            "--client-id",
            fake.client_id(),
            "--client-secret",
            &secret,
            "--loglevel",
            "debug",
            "--logfile",
            logfile.to_str().unwrap(),
            "--logformat",
            "json",
            "--no-log-to-console",
            "--no-tracking",
            "--non-interactive",
            "--console-theme",
            "dark",
            "list",
            "--namespace",
            "canvas",
        ],
    )
    .await;
    assert_eq!(run.success(), "courses\n");
    assert_eq!(run.stderr, "", "no log on the console");
    let log = std::fs::read_to_string(&logfile).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().any(|l| l["level"] == "DEBUG"), "{log}");
    assert!(!log.contains(&secret));

    // `--loglevel warning` and plain lines, to the console as well as the file.
    std::fs::remove_file(&logfile).unwrap();
    let mut env = fake_env(&fake);
    env.retain(|(k, _)| k != "DAPSYNC_LOG__LEVEL");
    let run = dapsync(
        cwd,
        &env,
        &[
            "--loglevel",
            "warning",
            "--logfile",
            logfile.to_str().unwrap(),
            "--logformat",
            "plain",
            "schema",
            "--namespace",
            "canvas",
            "--table",
            "nope",
        ],
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    let log = std::fs::read_to_string(&logfile).unwrap();
    assert!(log.contains("ERROR") && !log.contains("INFO"), "{log}");
    assert!(run.stderr.contains("ERROR"), "{}", run.stderr);

    let bad = dapsync(
        cwd,
        &env,
        &["--loglevel", "verbose", "list", "--namespace", "canvas"],
    )
    .await;
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("'verbose'") && bad.stderr.contains("warning"),
        "{}",
        bad.stderr
    );
}

#[tokio::test]
async fn drop_names_its_tables_or_needs_all_and_yes() {
    let fake = support::fake(&[("canvas", "courses", 4), ("canvas", "users", 3)]).await;
    let db = TestDb::new(Dialect::Sqlite).await;
    let mut env = fake_env(&fake);
    env.push(("DAP_CONNECTION_STRING".into(), db.url.expose().to_owned()));
    env.push((
        "DAPSYNC_NAMESPACES__CANVAS__TABLES".into(),
        "courses, users".into(),
    ));
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    ok(
        cwd,
        &env,
        owned(&["initdb", "--namespace", "canvas", "--table", "all"]),
    )
    .await;

    let run = dapsync(cwd, &env, &["drop"]).await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("--namespace NS --table T"),
        "{}",
        run.stderr
    );
    let run = dapsync(cwd, &env, &["drop", "--namespace", "canvas"]).await;
    assert_eq!(run.code, 2);
    let run = dapsync(cwd, &env, &["drop", "--all"]).await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("--yes"), "{}", run.stderr);
    let run = dapsync(cwd, &env, &["drop", "--all", "--table", "courses"]).await;
    assert_eq!(run.code, 2, "--all with a table is a contradiction");
    let engine = support::engine(&fake, &db).await;
    assert_eq!(
        engine.db().table_statuses().await.unwrap().len(),
        2,
        "nothing dropped"
    );

    let out = ok(cwd, &env, owned(&["drop", "--all", "--yes"])).await;
    for table in ["courses", "users"] {
        assert!(out.contains(&format!("canvas.{table}: dropping")), "{out}");
        assert!(out.contains(&format!("canvas.{table}: dropped")), "{out}");
    }
    assert!(engine.db().table_statuses().await.unwrap().is_empty());
    engine.db().close().await;
}
