//! Start-up as a user meets it: configuration mistakes stop the real binary with exit code 3 and
//! a message naming the key; `dapsync status` reads a database and never creates one; the
//! official commands fail with a non-zero exit code.

use dapsync::sql::Dialect;

use crate::export::{dapsync, fake_env};
use crate::support::replica::pg_count;
use crate::support::{self, TestDb};

/// Runs the binary in a fresh directory and asserts exit code 3 with `key` in the message.
async fn refused(env: &[(String, String)], args: &[&str], key: &str) {
    let dir = tempfile::tempdir().unwrap();
    let run = dapsync(dir.path(), env, args).await;
    assert_eq!(
        run.code, 3,
        "{args:?}: stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    assert!(run.stderr.contains(key), "{args:?}: {}", run.stderr);
}

/// The fake's environment, a SQLite database in `dir`, and `extra` variables.
fn env_with(
    fake: &dapsync::fake::FakeDap,
    dir: &std::path::Path,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut env = fake_env(fake);
    env.push((
        "DAP_CONNECTION_STRING".into(),
        format!("sqlite://{}", dir.join("replica.db").display()),
    ));
    env.push(("DAPSYNC_HTTP__ENABLED".into(), "false".into()));
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    env
}

#[tokio::test]
async fn a_selection_that_selects_nothing_stops_run_with_exit_code_3() {
    let fake = support::fake(&[("canvas", "courses", 3), ("canvas", "users", 3)]).await;
    let dir = tempfile::tempdir().unwrap();
    // No namespace at all.
    refused(&env_with(&fake, dir.path(), &[]), &["run"], "namespaces").await;
    // A pattern that matches none of the tables the API lists.
    let env = env_with(
        &fake,
        dir.path(),
        &[("DAPSYNC_NAMESPACES__CANVAS__TABLES", "quiz_*")],
    );
    refused(&env, &["run"], "namespaces.canvas.tables").await;
    // Named tables that the selection's own exclusions take away again.
    let env = env_with(
        &fake,
        dir.path(),
        &[
            ("DAPSYNC_NAMESPACES__CANVAS__TABLES", "courses"),
            ("DAPSYNC_NAMESPACES__CANVAS__EXCLUDE", "c*"),
        ],
    );
    refused(&env, &["run"], "namespaces.canvas.exclude").await;
}

#[tokio::test]
async fn an_unknown_log_level_on_the_command_line_stops_with_exit_code_3() {
    let fake = support::fake(&[("canvas", "courses", 3)]).await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_with(&fake, dir.path(), &[]);
    for level in ["verbose", "dapsync=loud"] {
        refused(
            &env,
            &["--log-level", level, "list", "--namespace", "canvas"],
            "--log-level",
        )
        .await;
    }
    // A good one works, directives too.
    let run = dapsync(
        dir.path(),
        &env,
        &[
            "--log-level",
            "dapsync=debug,sqlx=warn",
            "list",
            "--namespace",
            "canvas",
        ],
    )
    .await;
    assert_eq!(run.success(), "courses\n");
}

#[tokio::test]
async fn a_dapsync_variable_that_looks_like_a_setting_stops_with_exit_code_3() {
    let fake = support::fake(&[("canvas", "courses", 3)]).await;
    let dir = tempfile::tempdir().unwrap();
    let list = ["list", "--namespace", "canvas"];
    // One underscore between section and key: the setting would be silently ignored.
    let env = env_with(
        &fake,
        dir.path(),
        &[("DAPSYNC_DATABASE_URL", "sqlite://x.db")],
    );
    refused(&env, &list, "DAPSYNC_DATABASE_URL").await;
    // An unknown section or key.
    let env = env_with(
        &fake,
        dir.path(),
        &[("DAPSYNC_DATBASE__URL", "sqlite://x.db")],
    );
    refused(&env, &list, "datbase").await;
    let env = env_with(&fake, dir.path(), &[("DAPSYNC_SYNC__SCHEDUL", "* * * * *")]);
    refused(&env, &list, "schedul").await;
    // Kubernetes' service links are no settings and are left alone.
    let env = env_with(
        &fake,
        dir.path(),
        &[
            ("DAPSYNC_SERVICE_HOST", "10.0.0.1"),
            ("DAPSYNC_PORT_8080_TCP_ADDR", "10.0.0.1"),
        ],
    );
    let run = dapsync(dir.path(), &env, &list).await;
    assert_eq!(run.success(), "courses\n");
}

#[tokio::test]
async fn status_never_creates_or_migrates_a_database() {
    let fake = support::fake(&[("canvas", "courses", 3)]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nothing-here.db");
    let mut env = fake_env(&fake);
    env.push((
        "DAP_CONNECTION_STRING".into(),
        format!("sqlite://{}", path.display()),
    ));
    let run = dapsync(dir.path(), &env, &["status"]).await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("no dapsync database at sqlite://")
            && run.stderr.contains("the file does not exist"),
        "{}",
        run.stderr
    );
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "status left files: {left:?}");

    let db = TestDb::new(Dialect::Postgres).await;
    let mut env = fake_env(&fake);
    env.push(("DAP_CONNECTION_STRING".into(), db.url.expose().to_owned()));
    let run = dapsync(dir.path(), &env, &["status"]).await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("no dapsync control tables"),
        "{}",
        run.stderr
    );
    let schemas = pg_count(
        &db,
        "SELECT count(*) FROM information_schema.schemata WHERE schema_name IN ('dapsync', 'instructure_dap')",
    )
    .await;
    assert_eq!(schemas, 0, "status created dapsync's schemas");

    // Once something is synced, status reads it (SQLite opened read-only).
    let replica = TestDb::new(Dialect::Sqlite).await;
    let mut env = fake_env(&fake);
    env.push((
        "DAP_CONNECTION_STRING".into(),
        replica.url.expose().to_owned(),
    ));
    dapsync(
        dir.path(),
        &env,
        &["sync", "--namespace", "canvas", "--table", "courses"],
    )
    .await
    .success();
    let run = dapsync(dir.path(), &env, &["status", "--csv"]).await;
    let stdout = run.success();
    assert!(stdout.contains("canvas,courses,ok,"), "{stdout}");
}

#[tokio::test]
async fn the_official_commands_exit_non_zero_on_failure() {
    let fake = support::fake(&[("canvas", "courses", 3)]).await;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Dialect::Sqlite).await;
    let mut env = fake_env(&fake);
    env.push(("DAP_CONNECTION_STRING".into(), db.url.expose().to_owned()));
    // A server that answers, a database that is not there.
    let missing_db = "postgresql://postgres@127.0.0.1:5432/dapsync_no_such_database";
    let failing: [&[&str]; 9] = [
        &["list", "--namespace", "nope"],
        &["schema", "--namespace", "canvas", "--table", "nope"],
        &["snapshot", "--namespace", "canvas", "--table", "nope"],
        &[
            "incremental",
            "--namespace",
            "canvas",
            "--table",
            "nope",
            "--since",
            "2022-06-13T09:30:00Z",
        ],
        &["initdb", "--namespace", "canvas", "--table", "nope"],
        &["syncdb", "--namespace", "canvas", "--table", "nope"],
        &[
            "syncdb",
            "--connection-string",
            missing_db,
            "--namespace",
            "canvas",
            "--table",
            "courses",
        ],
        &[
            "dropdb",
            "--connection-string",
            missing_db,
            "--namespace",
            "canvas",
            "--table",
            "courses",
        ],
        &[
            "listdb",
            "--connection-string",
            missing_db,
            "--namespace",
            "canvas",
        ],
    ];
    for args in failing {
        let run = dapsync(dir.path(), &env, args).await;
        assert_eq!(run.code, 1, "{args:?}: {}\n{}", run.stdout, run.stderr);
    }
    // And 0 when they succeed.
    for args in [
        &["initdb", "--namespace", "canvas", "--table", "courses"][..],
        &["syncdb", "--namespace", "canvas", "--table", "courses"],
        &["listdb", "--namespace", "canvas"],
        &["dropdb", "--namespace", "canvas", "--table", "courses"],
    ] {
        dapsync(dir.path(), &env, args).await.success();
    }
}
