//! The command line, as a user runs it: the real binary, a configuration file (or the official
//! client's environment variables), the fake DAP server and a real database. Checks the output,
//! the exit codes and what ends up in the database.

use std::path::{Path, PathBuf};

use dapsync::db::TablePlan;
use dapsync::fake::{Changes, Endpoint, FakeDap, Fault};
use dapsync::sql::{DdlOptions, Dialect};
use dapsync::table::TableId;
use serde_json::Value;

use crate::support::{self, DIALECTS, TestDb};

/// What a finished `dapsync` process left.
struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Output {
    /// Asserts exit code 0 and returns stdout.
    fn success(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        &self.stdout
    }
}

/// Runs the binary with `args` in a clean environment plus `env`.
async fn dapsync(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_dapsync"));
    command.env_clear().args(args).envs(env.iter().copied());
    let output = command.output().await.unwrap();
    Output {
        code: output.status.code().expect("dapsync exited by a signal"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Writes a configuration file with `text` and returns its path.
fn config_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("dapsync.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A configuration for the fake server and a test database, quick to poll and to give up.
fn fake_config(fake: &FakeDap, db: &TestDb) -> String {
    format!(
        "[dap]\nbase_url = {:?}\nclient_id = {:?}\nclient_secret = {:?}\njob_poll_initial = \"5ms\"\n\
         job_poll_max = \"20ms\"\ninitial_backoff = \"5ms\"\nmax_backoff = \"20ms\"\nmax_attempts = 2\n\
         queries_per_minute = 1000\n[database]\nurl = {:?}\n[sync]\nrun_attempts = 1\n\
         [namespaces.canvas]\ntables = [\"courses\", \"users\"]\n[log]\nlevel = \"warn\"\n",
        fake.base_url(),
        fake.client_id(),
        fake.client_secret().expose(),
        db.url.expose()
    )
}

#[tokio::test]
async fn config_check_shows_the_effective_configuration_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        dir.path(),
        "[dap]\nclient_id = \"from-the-file\"\n[database]\nurl = \"postgresql://replica:db-password-123@db.example.edu/canvas\"\n",
    );
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "file-secret-456\n").unwrap();
    let out = dapsync(
        &["--config", config.to_str().unwrap(), "config", "check"],
        &[
            (
                "DAPSYNC_DAP__CLIENT_SECRET_FILE",
                secret_file.to_str().unwrap(),
            ),
            ("DAPSYNC_SYNC__MAX_CONCURRENT_TABLES", "7"),
        ],
    )
    .await;
    let stdout = out.success();
    assert!(stdout.contains("from-the-file"), "{stdout}");
    assert!(stdout.contains("max_concurrent_tables = 7"), "{stdout}");
    assert!(stdout.contains("db.example.edu"), "{stdout}");
    assert!(stdout.contains("# configuration is valid"), "{stdout}");
    for secret in ["db-password-123", "file-secret-456"] {
        assert!(!stdout.contains(secret), "{secret} shown:\n{stdout}");
        assert!(
            !out.stderr.contains(secret),
            "{secret} shown:\n{}",
            out.stderr
        );
    }

    // The official client's variables work without any dapsync setting.
    let empty = config_file(dir.path(), "");
    let out = dapsync(
        &["--config", empty.to_str().unwrap(), "config", "check"],
        &[
            ("DAP_API_URL", "https://dap.example.edu"),
            ("DAP_CLIENT_ID", "official-id"),
            ("DAP_CLIENT_SECRET", "official-secret-789"),
            (
                "DAP_CONNECTION_STRING",
                "mysql://root:mysql-pass-1@127.0.0.1/canvas",
            ),
        ],
    )
    .await;
    let stdout = out.success();
    assert!(stdout.contains("https://dap.example.edu"), "{stdout}");
    assert!(stdout.contains("official-id"), "{stdout}");
    assert!(stdout.contains("mysql://"), "{stdout}");
    for secret in ["official-secret-789", "mysql-pass-1"] {
        assert!(!stdout.contains(secret), "{secret} shown:\n{stdout}");
    }
}

#[tokio::test]
async fn configuration_errors_name_the_key_and_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[dap]\nbase_urll = \"https://x.example\"\n", "base_urll"),
        ("[dap]\nbase_url = \"not a url\"\n", "base_url"),
        ("[sync]\nschedule = \"every hour\"\n", "schedule"),
        (
            "[namespaces.canvas]\nschedules = { courses = \"61 * * * *\" }\n",
            "courses",
        ),
        ("[dap]\nclient_id = \"id\"\n", "client_secret"),
    ];
    for (text, key) in cases {
        let config = config_file(dir.path(), text);
        let out = dapsync(
            &["--config", config.to_str().unwrap(), "config", "check"],
            &[],
        )
        .await;
        assert_eq!(out.code, 3, "{text}: {}\n{}", out.stdout, out.stderr);
        assert!(out.stderr.contains(key), "{text}: {}", out.stderr);
    }
    let missing = dir.path().join("missing.toml");
    let out = dapsync(
        &["--config", missing.to_str().unwrap(), "config", "check"],
        &[],
    )
    .await;
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("missing.toml"), "{}", out.stderr);

    let out = dapsync(&["sync", "--no-such-flag"], &[]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
}

/// `dapsync ddl` prints what dapsync would run: run as printed, it creates the table that a
/// sync then fills.
#[tokio::test]
async fn ddl_from_a_schema_file_creates_the_table_it_describes() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), "");
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/schemas/canvas/courses.json"
    );
    let envelope: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let schema =
        dapsync::schema::TableSchema::from_envelope("canvas", "courses", &envelope).unwrap();
    for dialect in DIALECTS {
        let name = match dialect {
            Dialect::Postgres => "postgres",
            Dialect::Mysql => "mysql",
            Dialect::Sqlite => "sqlite",
        };
        let args = [
            "--config",
            config.to_str().unwrap(),
            "ddl",
            "--namespace",
            "canvas",
            "--table",
            "courses",
            "--dialect",
            name,
            "--schema-file",
            file,
        ];
        let out = dapsync(&args, &[]).await;
        let ddl = out.success();
        let db = TestDb::new(dialect).await;
        for statement in split_statements(ddl) {
            db.execute(&statement).await;
        }
        let plan = TablePlan::new(dialect, schema.clone());
        let connected = db.connect_raw(DdlOptions::default()).await;
        let mut columns = connected.table_columns(&plan.live).await.unwrap();
        columns.sort();
        let mut expected: Vec<String> = schema.columns.iter().map(|c| c.name.clone()).collect();
        expected.sort();
        assert_eq!(columns, expected, "{dialect:?}:\n{ddl}");
        connected.close().await;
    }
}

/// Splits printed DDL into statements: they end with `;` at the end of a line.
fn split_statements(ddl: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    for line in ddl.lines() {
        current.push_str(line);
        current.push('\n');
        if line.trim_end().ends_with(';') {
            statements.push(std::mem::take(&mut current));
        }
    }
    assert!(current.trim().is_empty(), "unterminated DDL: {current}");
    statements
}

#[tokio::test]
async fn list_and_schema_read_the_api_with_the_official_clients_environment() {
    let fake = support::fake(&[("canvas", "courses", 3), ("canvas", "users", 3)]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), "");
    let env = [
        ("DAP_API_URL", fake.base_url()),
        ("DAP_CLIENT_ID", fake.client_id()),
        ("DAP_CLIENT_SECRET", fake.client_secret().expose()),
    ];
    let config = config.to_str().unwrap();
    let out = dapsync(&["--config", config, "list", "--namespace", "canvas"], &env).await;
    let listed: Vec<&str> = out.success().lines().collect();
    assert_eq!(listed, ["courses", "users"]);

    let target = dir.path().to_str().unwrap();
    let args = [
        "--config",
        config,
        "schema",
        "--namespace",
        "canvas",
        "--table",
        "users",
        "--output-dir",
        target,
    ];
    let out = dapsync(&args, &env).await;
    let envelope = fake.schema("canvas", "users");
    let version = envelope["version"].as_i64().unwrap();
    let path = dir
        .path()
        .join(format!("users_schema_version_{version}.json"));
    assert_eq!(out.success().trim(), path.display().to_string());
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(written, envelope["schema"]);

    // A wrong secret is an API error (exit 1) that does not show the secret.
    let env = [
        ("DAP_API_URL", fake.base_url()),
        ("DAP_CLIENT_ID", fake.client_id()),
        ("DAP_CLIENT_SECRET", "wrong-secret-321"),
    ];
    let out = dapsync(&["--config", config, "list", "--namespace", "canvas"], &env).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("dapsync:"), "{}", out.stderr);
    assert!(!out.stderr.contains("wrong-secret-321"), "{}", out.stderr);
}

/// init, sync, status and drop on every database: the replica follows the source, status
/// reports it, a failing table makes the exit code 1 with a reason, and drop leaves nothing.
#[tokio::test]
async fn init_sync_status_and_drop() {
    for dialect in DIALECTS {
        let fake = support::fake(&[("canvas", "courses", 25), ("canvas", "users", 12)]).await;
        let db = TestDb::new(dialect).await;
        let dir = tempfile::tempdir().unwrap();
        let config = config_file(dir.path(), &fake_config(&fake, &db));
        let config = config.to_str().unwrap();
        let run = |args: &'static [&'static str]| {
            let mut all = vec!["--config", config];
            all.extend(args);
            async move { dapsync(&all, &[]).await }
        };

        let out = run(&["init", "--namespace", "canvas", "--table", "courses,users"]).await;
        let stdout = out.success();
        assert!(
            stdout.contains("canvas.courses: snapshot (initial): 25 upserted"),
            "{stdout}"
        );
        assert!(
            stdout.contains("canvas.users: snapshot (initial): 12 upserted"),
            "{stdout}"
        );
        let out = run(&["init", "--namespace", "canvas", "--table", "courses"]).await;
        assert!(
            out.success()
                .contains("canvas.courses: already initialised")
        );

        fake.advance(
            "canvas",
            "courses",
            Changes {
                updates: 4,
                inserts: 2,
                deletes: 3,
                inserted_then_deleted: 0,
            },
        );
        // The configured selection: both tables of the config file.
        let out = run(&["sync"]).await;
        let stdout = out.success();
        assert!(stdout.contains("canvas.courses: incremental: "), "{stdout}");
        assert!(stdout.contains("canvas.users: incremental: "), "{stdout}");
        let engine = support::engine(&fake, &db).await;
        support::assert_replica_matches(&engine, &fake, "canvas", "courses").await;
        support::assert_replica_matches(&engine, &fake, "canvas", "users").await;

        let out = run(&["status", "--json"]).await;
        let statuses: Vec<Value> = serde_json::from_str(out.success()).unwrap();
        let courses = statuses
            .iter()
            .find(|s| s["table"] == "courses")
            .expect("courses in status");
        assert_eq!(courses["namespace"], "canvas");
        assert_eq!(courses["row_count"], 24);
        assert_eq!(courses["consecutive_failures"], 0);
        let latest = fake.latest_commit("canvas", "courses");
        let until: chrono::DateTime<chrono::Utc> =
            courses["synced_until"].as_str().unwrap().parse().unwrap();
        assert_eq!(until, latest);

        // A table whose queries keep failing: exit 1, a reason on its line, the other table fine.
        fake.inject(
            Fault::FailedJob,
            Endpoint::Query.table("canvas", "users"),
            100,
        );
        // (New commits on both: a query identical to an earlier one gets that job again.)
        for table in ["courses", "users"] {
            fake.advance(
                "canvas",
                table,
                Changes {
                    updates: 1,
                    inserts: 0,
                    deletes: 0,
                    inserted_then_deleted: 0,
                },
            );
        }
        let out = run(&["sync", "--namespace", "canvas", "--table", "all"]).await;
        assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
        assert!(
            out.stdout.contains("canvas.courses: incremental: "),
            "{}",
            out.stdout
        );
        let failed = out
            .stdout
            .lines()
            .find(|l| l.starts_with("canvas.users: FAILED: "))
            .unwrap_or_else(|| panic!("no failure line:\n{}", out.stdout));
        assert!(
            failed.contains("ProcessingError") || failed.contains("failed"),
            "{failed}"
        );
        let out = run(&["status"]).await;
        assert_eq!(out.code, 1, "{}", out.stdout);
        assert!(
            out.stderr.contains("canvas.users: failing"),
            "{}",
            out.stderr
        );
        support::assert_replica_matches(&engine, &fake, "canvas", "courses").await;

        let out = run(&["drop", "--namespace", "canvas", "--table", "courses"]).await;
        assert!(out.success().contains("canvas.courses: dropped"));
        let plan = TablePlan::new(dialect, support::schema(&fake, "canvas", "courses"));
        assert!(!engine.db().table_exists(&plan.live).await.unwrap());
        assert!(
            engine
                .db()
                .sync_state(&TableId::new("canvas", "courses"))
                .await
                .unwrap()
                .is_none()
        );
        if dialect == Dialect::Postgres {
            let (types,): (i64,) = sqlx_count(
                &db,
                "SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace \
                 WHERE n.nspname = 'canvas' AND t.typname LIKE 'courses\\_\\_%'",
            )
            .await;
            assert_eq!(types, 0, "enum types of courses left behind");
        }
        let out = run(&["status", "--json", "--table", "courses"]).await;
        let statuses: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
        assert!(statuses.is_empty(), "{statuses:?}");
        // The other table is untouched.
        assert!(
            engine
                .db()
                .sync_state(&TableId::new("canvas", "users"))
                .await
                .unwrap()
                .is_some()
        );
        engine.db().close().await;
    }
}

/// One `count(*)` on a PostgreSQL test database.
async fn sqlx_count(db: &TestDb, sql: &'static str) -> (i64,) {
    use sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(db.url.expose()).await.unwrap();
    let row = sqlx::query_as(sql)
        .fetch_one(&mut connection)
        .await
        .unwrap();
    connection.close().await.unwrap();
    row
}

#[tokio::test]
async fn database_tls_trusts_the_system_store_and_sslrootcert() {
    let db = TestDb::new(Dialect::Postgres).await;
    // `status` reads a database dapsync has set up (and never sets one up itself).
    db.connect().await.close().await;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(db.url.expose())
        .await
        .unwrap();
    let (ssl,): (String,) = sqlx::query_as("SHOW ssl")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let (cert,): (String,) = sqlx::query_as("SHOW ssl_cert_file")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    if ssl != "on" {
        eprintln!("skipped: the PostgreSQL server has no TLS");
        return;
    }
    // The server's certificate (Debian's self-signed one for `localhost`) stands for a CA the
    // host trusts, such as a cloud provider's bundle.
    let dir = tempfile::tempdir().unwrap();
    let (trusted, untrusted, no_dir) = (
        dir.path().join("trusted.pem"),
        dir.path().join("untrusted.pem"),
        dir.path().join("no-certificates"),
    );
    std::fs::write(&trusted, std::fs::read(&cert).unwrap()).unwrap();
    std::fs::write(&untrusted, "").unwrap();
    std::fs::create_dir(&no_dir).unwrap();
    let url = db.url.expose().replace("127.0.0.1", "localhost");
    let url = format!(
        "{url}{}sslmode=verify-full",
        if url.contains('?') { "&" } else { "?" }
    );
    // Only the file counts: the directory of the system store is an empty one.
    let no_dir = no_dir.to_str().unwrap().to_owned();
    let status = |url: String, store: PathBuf| {
        let no_dir = no_dir.clone();
        async move {
            let store = store.to_str().unwrap().to_owned();
            let env = [
                ("DAPSYNC_DATABASE__URL", url.as_str()),
                ("SSL_CERT_FILE", store.as_str()),
                ("SSL_CERT_DIR", no_dir.as_str()),
            ];
            dapsync(&["status"], &env).await
        }
    };
    let refused = status(url.clone(), untrusted.clone()).await;
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("UnknownIssuer"),
        "{}",
        refused.stderr
    );
    status(url.clone(), trusted).await.success();
    let rooted = format!("{url}&sslrootcert={cert}");
    status(rooted, untrusted).await.success();
}
