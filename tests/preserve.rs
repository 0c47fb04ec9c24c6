//! The user's objects on replicated tables (issue 11): views (and views over them), grants to
//! other roles, indexes and comments that analysts add survive every way dapsync replaces or
//! alters a table (a persistent SnapshotRequiredError, an in-place schema change, a schema change
//! that needs a rebuild, a requested re-snapshot, a crashed MySQL swap), on PostgreSQL, MariaDB
//! and SQLite; what cannot be kept is recorded in the run history and the data still swaps in.

use std::path::Path;

use dapsync::db::{ObjectWarning, RunOutcome};
use dapsync::fake::{Changes, FakeDap, FakeTable, fixture_schema};
use dapsync::sql::Dialect;
use dapsync::sync::{Engine, Mode, RunReport};
use dapsync::table::TableId;
use serde_json::{Map, Value, json};
use sqlx::{Connection, MySqlConnection, PgConnection, SqliteConnection};

use crate::support::replica::fake_of;
use crate::support::{self, TestDb};

const NS: &str = "canvas";

/// A plain connection to the test database: what an analyst uses.
enum Conn {
    Pg(PgConnection),
    My(MySqlConnection),
    Lite(SqliteConnection),
}

impl Conn {
    async fn open(db: &TestDb) -> Self {
        let url = db.url.expose();
        match db.dialect {
            Dialect::Postgres => Conn::Pg(PgConnection::connect(url).await.unwrap()),
            Dialect::Mysql => Conn::My(MySqlConnection::connect(url).await.unwrap()),
            Dialect::Sqlite => Conn::Lite(SqliteConnection::connect(url).await.unwrap()),
        }
    }

    /// Runs SQL text (several statements at once).
    async fn run(&mut self, sql: &str) {
        let query = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()));
        let result = match self {
            Conn::Pg(c) => query.execute(c).await.map(drop),
            Conn::My(c) => query.execute(c).await.map(drop),
            Conn::Lite(c) => query.execute(c).await.map(drop),
        };
        result.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The first column of the first row, a number.
    async fn int(&mut self, sql: &str) -> i64 {
        let text = || sqlx::AssertSqlSafe(sql.to_owned());
        let result = match self {
            Conn::Pg(c) => sqlx::query_scalar(text()).fetch_one(c).await,
            Conn::My(c) => sqlx::query_scalar(text()).fetch_one(c).await,
            Conn::Lite(c) => sqlx::query_scalar(text()).fetch_one(c).await,
        };
        result.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    async fn close(self) {
        let _ = match self {
            Conn::Pg(c) => c.close().await,
            Conn::My(c) => c.close().await,
            Conn::Lite(c) => c.close().await,
        };
    }
}

/// A replicated copy of `canvas.courses`'s schema named `table`, 40 rows, snapshotted.
async fn replicated(dialect: Dialect, table: &str) -> (FakeDap, TestDb, Engine) {
    let courses = FakeTable {
        schema: fixture_schema(NS, "courses"),
        ..FakeTable::new(NS, table, 40)
    };
    let fake = fake_of(vec![courses]).await;
    let db = TestDb::new(dialect).await;
    let engine = support::engine(&fake, &db).await;
    let runs = sync(&engine, table, Mode::Sync).await;
    assert_eq!(runs[0].reason, Some("initial"));
    (fake, db, engine)
}

async fn sync(engine: &Engine, table: &str, mode: Mode) -> Vec<RunReport> {
    engine
        .sync_table(&TableId::new(NS, table), mode)
        .await
        .unwrap_or_else(|e| panic!("{table}: {}", e.chain()))
}

/// Publishes `edit` of the table's schema as a new version (`rewrite`: every row rewritten, as
/// upstream does for a change old rows do not meet).
fn change_schema(fake: &FakeDap, table: &str, rewrite: bool, edit: impl FnOnce(&mut Value)) {
    let mut schema = fake.schema(NS, table)["schema"].take();
    edit(&mut schema);
    fake.bump_schema(NS, table, schema, rewrite);
}

fn props<'a>(schema: &'a mut Value, part: &str) -> &'a mut Map<String, Value> {
    schema["properties"][part]["properties"]
        .as_object_mut()
        .unwrap()
}

fn set_optional(schema: &mut Value, column: &str) {
    schema["properties"]["value"]["required"]
        .as_array_mut()
        .unwrap()
        .retain(|c| c != column);
}

/// The physical name of the test's table.
fn physical(dialect: Dialect, table: &str) -> String {
    match dialect {
        Dialect::Postgres => format!("{NS}.{table}"),
        Dialect::Mysql | Dialect::Sqlite => format!("{NS}__{table}"),
    }
}

/// What an analyst adds after the first snapshot: a view, a view over it, an index on a column
/// and one on two columns (PostgreSQL: an expression with a predicate; MySQL: a prefix and a
/// descending part), a grant to `role`; PostgreSQL also a materialized view with an index,
/// the view owned by `role`, and comments.
fn user_objects(dialect: Dialect, table: &str, role: &str) -> String {
    let t = physical(dialect, table);
    match dialect {
        Dialect::Postgres => format!(
            "CREATE ROLE {role};
             GRANT USAGE ON SCHEMA {NS} TO {role};
             CREATE VIEW public.course_names AS
                 SELECT id, name, workflow_state FROM {t} WHERE workflow_state <> 'deleted';
             CREATE VIEW public.course_count WITH (security_barrier)
                 AS SELECT count(*) AS n FROM public.course_names;
             CREATE MATERIALIZED VIEW public.course_states AS
                 SELECT workflow_state, count(*) AS n FROM {t} GROUP BY workflow_state;
             CREATE INDEX course_states_ix ON public.course_states (workflow_state);
             CREATE INDEX {table}_name_ix ON {t} (name);
             CREATE INDEX {table}_lower_ix ON {t} (lower(name), account_id) WHERE account_id > 0;
             GRANT SELECT ON {t} TO {role};
             GRANT SELECT ON public.course_names TO {role};
             ALTER VIEW public.course_names OWNER TO {role};
             COMMENT ON TABLE {t} IS 'Courses, for reporting';
             COMMENT ON COLUMN {t}.name IS 'Shown on the dashboard';
             COMMENT ON VIEW public.course_names IS 'Live courses';"
        ),
        Dialect::Mysql => format!(
            "CREATE USER '{role}'@'localhost';
             CREATE VIEW course_names AS
                 SELECT id, name, workflow_state FROM {t} WHERE workflow_state <> 'deleted';
             CREATE VIEW course_count AS SELECT count(*) AS n FROM course_names;
             CREATE INDEX {table}_name_ix ON {t} (name);
             CREATE INDEX {table}_code_ix ON {t} (course_code(10), account_id DESC);
             GRANT SELECT ON {t} TO '{role}'@'localhost';"
        ),
        Dialect::Sqlite => format!(
            "CREATE VIEW course_names AS
                 SELECT id, name, workflow_state FROM {t} WHERE workflow_state <> 'deleted';
             CREATE VIEW course_count AS SELECT count(*) AS n FROM course_names;
             CREATE INDEX {table}_name_ix ON {t} (name);
             CREATE INDEX {table}_code_ix ON {t} (course_code, account_id DESC);"
        ),
    }
}

/// Checks, after `step`, that the last run succeeded with nothing left behind, the replica
/// equals the source, the views answer with the source's row counts, and the grant, the
/// indexes (and on PostgreSQL the owner and comments) are there.
async fn assert_kept(
    conn: &mut Conn,
    engine: &Engine,
    fake: &FakeDap,
    table: &str,
    role: &str,
    step: &str,
) {
    let dialect = engine.db().dialect();
    let context = format!("{dialect:?} after {step}");
    support::assert_replica_matches(engine, fake, NS, table).await;
    let history = engine.db().recent_runs(Some((NS, table)), 1).await.unwrap();
    assert_eq!(history[0].outcome, RunOutcome::Success, "{context}");
    assert_eq!(history[0].warnings, [], "{context}");

    let rows = fake.current_rows(NS, table);
    let live = rows
        .iter()
        .filter(|r| r["value"]["workflow_state"] != "deleted")
        .count() as i64;
    assert!(live > 0, "{context}");
    let t = physical(dialect, table);
    let scope = if dialect == Dialect::Postgres {
        "public."
    } else {
        ""
    };
    assert_eq!(
        conn.int(&format!("SELECT count(*) FROM {scope}course_names"))
            .await,
        live,
        "{context}"
    );
    assert_eq!(
        conn.int(&format!("SELECT n FROM {scope}course_count"))
            .await,
        live,
        "{context}: the view over the view"
    );
    let mut indexes = vec![format!("{table}_name_ix")];
    match dialect {
        Dialect::Postgres => {
            indexes.push(format!("{table}_lower_ix"));
            let count = |sql: &str| format!("SELECT count(*) FROM (SELECT 1) x WHERE {sql}");
            assert_eq!(
                conn.int("SELECT sum(n)::bigint FROM public.course_states")
                    .await,
                rows.len() as i64,
                "{context}: the materialized view holds the new copy's rows"
            );
            let checks = [
                format!("has_table_privilege('{role}', '{t}', 'SELECT')"),
                format!("has_table_privilege('{role}', 'public.course_names', 'SELECT')"),
                format!(
                    "(SELECT viewowner FROM pg_views WHERE viewname = 'course_names') = '{role}'"
                ),
                "(SELECT count(*) FROM pg_indexes WHERE indexname = 'course_states_ix') = 1".into(),
                "(SELECT reloptions FROM pg_class WHERE relname = 'course_count')::text = '{security_barrier=true}'".into(),
                format!("obj_description('{t}'::regclass, 'pg_class') = 'Courses, for reporting'"),
                format!(
                    "col_description('{t}'::regclass, (SELECT attnum FROM pg_attribute \
                     WHERE attrelid = '{t}'::regclass AND attname = 'name')) = 'Shown on the dashboard'"
                ),
                // A column without a comment of the user's keeps the schema's description.
                format!(
                    "col_description('{t}'::regclass, 1) = 'The unique identifier for the course.'"
                ),
                "obj_description('public.course_names'::regclass, 'pg_class') = 'Live courses'"
                    .into(),
            ];
            for check in checks {
                assert_eq!(conn.int(&count(&check)).await, 1, "{context}: {check}");
            }
            for index in &indexes {
                let sql = format!(
                    "SELECT count(*) FROM pg_indexes WHERE schemaname = '{NS}' AND tablename = '{table}' AND indexname = '{index}'"
                );
                assert_eq!(conn.int(&sql).await, 1, "{context}: index {index}");
            }
        }
        Dialect::Mysql => {
            indexes.push(format!("{table}_code_ix"));
            let grants = format!(
                "SELECT count(*) FROM information_schema.table_privileges WHERE grantee = '''{role}''@''localhost''' \
                 AND table_schema = DATABASE() AND table_name = '{t}' AND privilege_type = 'SELECT'"
            );
            assert_eq!(conn.int(&grants).await, 1, "{context}: the grant");
            for index in &indexes {
                let sql = format!(
                    "SELECT count(*) FROM information_schema.statistics WHERE table_schema = DATABASE() \
                     AND table_name = '{t}' AND index_name = '{index}'"
                );
                assert!(conn.int(&sql).await > 0, "{context}: index {index}");
            }
            let descending = format!(
                "SELECT count(*) FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = '{t}' \
                 AND index_name = '{table}_code_ix' AND ((column_name = 'course_code' AND sub_part = 10) \
                 OR (column_name = 'account_id' AND collation = 'D'))"
            );
            assert_eq!(
                conn.int(&descending).await,
                2,
                "{context}: the index's key parts"
            );
        }
        Dialect::Sqlite => {
            indexes.push(format!("{table}_code_ix"));
            for index in &indexes {
                let sql = format!(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = '{index}' AND tbl_name = '{t}'"
                );
                assert_eq!(conn.int(&sql).await, 1, "{context}: index {index}");
            }
        }
    }
}

/// Removes what [`user_objects`] created outside the test's database (roles, users).
async fn drop_role(conn: &mut Conn, dialect: Dialect, role: &str) {
    match dialect {
        Dialect::Postgres => {
            let sql = format!(
                "REASSIGN OWNED BY {role} TO postgres; DROP OWNED BY {role}; DROP ROLE {role}"
            );
            conn.run(&sql).await
        }
        Dialect::Mysql => conn.run(&format!("DROP USER '{role}'@'localhost'")).await,
        Dialect::Sqlite => {}
    }
}

/// A view, a view over it, a grant and user indexes on a replicated table, then a persistent
/// SnapshotRequiredError, an in-place schema change (PostgreSQL: a type PostgreSQL refuses to
/// change under a view; SQLite: a rebuild in place), a change that needs a rebuild and a
/// requested re-snapshot: each succeeds and everything is still there.
async fn user_objects_survive_every_swap(dialect: Dialect, table: &str) {
    let (fake, db, engine) = replicated(dialect, table).await;
    let mut conn = Conn::open(&db).await;
    let role = format!("reporting_{:08x}", fastrand::u32(..));
    conn.run(&user_objects(dialect, table, &role)).await;
    assert_kept(
        &mut conn,
        &engine,
        &fake,
        table,
        &role,
        "the first snapshot",
    )
    .await;

    // 1. Upstream reloaded the table: every incremental gets SnapshotRequiredError.
    fake.advance(
        NS,
        table,
        Changes {
            updates: 5,
            inserts: 4,
            deletes: 2,
            inserted_then_deleted: 1,
        },
    );
    fake.require_snapshot(NS, table);
    fake.advance(
        NS,
        table,
        Changes {
            updates: 3,
            ..Changes::default()
        },
    );
    let runs = sync(&engine, table, Mode::Sync).await;
    assert_eq!(runs.last().unwrap().reason, Some("snapshot_required"));
    assert_kept(
        &mut conn,
        &engine,
        &fake,
        table,
        &role,
        "SnapshotRequiredError",
    )
    .await;

    // 2. In place: the viewed `name` widened (PostgreSQL refuses ALTER COLUMN TYPE under a
    //    view), `account_id` made optional (SQLite rebuilds the table for it). Updates only:
    //    the materialized view, recreated before the incremental's rows, keeps its count.
    fake.advance(
        NS,
        table,
        Changes {
            updates: 5,
            ..Changes::default()
        },
    );
    change_schema(&fake, table, false, |s| {
        props(s, "value")["name"]["maxLength"] = json!(500);
        set_optional(s, "account_id");
    });
    let runs = sync(&engine, table, Mode::Sync).await;
    assert_eq!(runs[0].kind, dapsync::db::RunKind::Incremental);
    assert_kept(
        &mut conn,
        &engine,
        &fake,
        table,
        &role,
        "an in-place change",
    )
    .await;

    // 3. A type changed otherwise (integer to string): a new snapshot replaces the table.
    change_schema(&fake, table, true, |s| {
        props(s, "value")["sis_batch_id"] = json!({"type": "string", "maxLength": 255});
    });
    let runs = sync(&engine, table, Mode::Sync).await;
    assert_eq!(runs.last().unwrap().reason, Some("schema_rebuild"));
    assert_kept(&mut conn, &engine, &fake, table, &role, "a rebuild").await;

    // 4. A re-snapshot asked for with `dapsync resync`: one killed halfway leaves the old copy
    //    as it was, the next one replaces it.
    let before = support::dump(&engine, &fake, NS, table).await;
    fake.advance(
        NS,
        table,
        Changes {
            updates: 2,
            inserts: 2,
            deletes: 1,
            ..Changes::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &fake, &db);
    assert!(!binary(&config, "resync", table, Some("sync.batch")).await);
    assert_eq!(
        support::dump(&engine, &fake, NS, table).await,
        before,
        "{dialect:?}: readers keep the old copy"
    );
    assert!(binary(&config, "resync", table, None).await);
    let history = engine.db().recent_runs(Some((NS, table)), 1).await.unwrap();
    assert_eq!(history[0].reason.as_deref(), Some("requested"));
    assert_kept(
        &mut conn,
        &engine,
        &fake,
        table,
        &role,
        "a requested re-snapshot",
    )
    .await;

    drop_role(&mut conn, dialect, &role).await;
    conn.close().await;
    engine.db().close().await;
}

#[tokio::test]
async fn user_objects_survive_every_swap_on_postgres() {
    user_objects_survive_every_swap(Dialect::Postgres, "kept").await;
}

#[tokio::test]
async fn user_objects_survive_every_swap_on_mysql() {
    user_objects_survive_every_swap(Dialect::Mysql, "kept_objects").await;
}

#[tokio::test]
async fn user_objects_survive_every_swap_on_sqlite() {
    user_objects_survive_every_swap(Dialect::Sqlite, "kept").await;
}

/// The warnings of the last run, checked to be the same in the run history and in the report
/// `/status` is fed.
async fn warnings(engine: &Engine, table: &str, runs: &[RunReport]) -> Vec<ObjectWarning> {
    let history = engine.db().recent_runs(Some((NS, table)), 1).await.unwrap();
    assert_eq!(history[0].outcome, RunOutcome::Success);
    assert_eq!(runs.last().unwrap().warnings, history[0].warnings);
    history[0].warnings.clone()
}

/// A rebuild removes a column a user index (and on PostgreSQL and SQLite a view) uses, and
/// turns a string column into an integer (on MySQL under a prefix index, which then fails):
/// the new data is swapped in anyway, the other objects are kept, and each object left behind
/// is recorded in the run's row with its name.
async fn objects_that_cannot_be_kept_are_reported(dialect: Dialect, table: &str) {
    let (fake, db, engine) = replicated(dialect, table).await;
    let mut conn = Conn::open(&db).await;
    let t = physical(dialect, table);
    let scope = if dialect == Dialect::Postgres {
        "public."
    } else {
        ""
    };
    let prefix = if dialect == Dialect::Mysql {
        "(10)"
    } else {
        ""
    };
    conn.run(&format!(
        "CREATE INDEX gone_ix ON {t} (lti_context_id);
         CREATE INDEX text_ix ON {t} (sis_source_id{prefix});
         CREATE VIEW {scope}fine_view AS SELECT id, name FROM {t};"
    ))
    .await;
    if dialect != Dialect::Mysql {
        conn.run(&format!(
            "CREATE VIEW {scope}gone_view AS SELECT id, lti_context_id FROM {t}"
        ))
        .await;
    }
    change_schema(&fake, table, true, |s| {
        props(s, "value").remove("lti_context_id");
        props(s, "value")["sis_source_id"] = json!({"type": "integer", "format": "int64"});
    });
    let runs = sync(&engine, table, Mode::Sync).await;
    assert_eq!(runs.last().unwrap().reason, Some("schema_rebuild"));
    support::assert_replica_matches(&engine, &fake, NS, table).await;
    let rows = fake.current_rows(NS, table).len() as i64;
    assert_eq!(
        conn.int(&format!("SELECT count(*) FROM {scope}fine_view"))
            .await,
        rows
    );

    let found = warnings(&engine, table, &runs).await;
    let q = |name: &str| dialect.quote_ident(name);
    let warned = |object: &str, says: &str| {
        found
            .iter()
            .any(|w| w.object == object && w.message.contains(says))
    };
    assert!(
        warned(&format!("index {}", q("gone_ix")), "lti_context_id"),
        "{dialect:?}: {found:?}"
    );
    match dialect {
        Dialect::Mysql => {
            // `sis_source_id` is a `bigint` now: a prefix of it means nothing to MariaDB.
            assert!(
                warned(&format!("index {}", q("text_ix")), "could not be recreated"),
                "{found:?}"
            );
            assert_eq!(found.len(), 2, "{found:?}");
        }
        Dialect::Postgres => {
            assert!(
                warned(r#"view "public"."gone_view""#, "could not be recreated"),
                "{found:?}"
            );
            assert_eq!(found.len(), 2, "{found:?}");
        }
        Dialect::Sqlite => {
            assert!(
                warned(r#"view "gone_view""#, "could not be recreated"),
                "{found:?}"
            );
            assert_eq!(found.len(), 2, "{found:?}");
        }
    }

    // The table goes on; the next run has nothing to report.
    fake.advance(
        NS,
        table,
        Changes {
            updates: 3,
            inserts: 2,
            ..Changes::default()
        },
    );
    let runs = sync(&engine, table, Mode::Sync).await;
    assert_eq!(warnings(&engine, table, &runs).await, []);
    support::assert_replica_matches(&engine, &fake, NS, table).await;
    conn.close().await;
    engine.db().close().await;
}

#[tokio::test]
async fn objects_that_cannot_be_kept_are_reported_on_postgres() {
    objects_that_cannot_be_kept_are_reported(Dialect::Postgres, "reported").await;
}

#[tokio::test]
async fn objects_that_cannot_be_kept_are_reported_on_mysql() {
    objects_that_cannot_be_kept_are_reported(Dialect::Mysql, "reported_objects").await;
}

#[tokio::test]
async fn objects_that_cannot_be_kept_are_reported_on_sqlite() {
    objects_that_cannot_be_kept_are_reported(Dialect::Sqlite, "reported").await;
}

/// A configuration file for the real binary: the fake API and the test database.
fn write_config(dir: &Path, fake: &FakeDap, db: &TestDb) -> std::path::PathBuf {
    let path = dir.join("dapsync.toml");
    let text = format!(
        "[dap]\nbase_url = {:?}\nclient_id = {:?}\nclient_secret = {:?}\njob_poll_initial = \"5ms\"\n\
         job_poll_max = \"20ms\"\ninitial_backoff = \"5ms\"\nqueries_per_minute = 1000\n[database]\nurl = {:?}\n\
         [log]\nlevel = \"warn\"\n",
        fake.base_url(),
        fake.client_id(),
        fake.client_secret().expose(),
        db.url.expose()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// `dapsync sync` of one table by the real binary, killed at `crash_at` if given; whether it
/// succeeded.
async fn binary_sync(config: &Path, table: &str, crash_at: Option<&str>) -> bool {
    binary(config, "sync", table, crash_at).await
}

/// `dapsync <command>` (sync, resync) of one table by the real binary, killed at `crash_at` if
/// given; whether it succeeded.
async fn binary(config: &Path, subcommand: &str, table: &str, crash_at: Option<&str>) -> bool {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_dapsync"));
    command.args([
        "--config",
        config.to_str().unwrap(),
        subcommand,
        "--namespace",
        NS,
        "--table",
        table,
    ]);
    command.env_remove("DAPSYNC_CRASH_AT");
    if let Some(point) = crash_at {
        command.env("DAPSYNC_CRASH_AT", point);
    }
    command.output().await.unwrap().status.success()
}

/// MySQL's swap is not one transaction: killed before or after its rename, the next run
/// finishes it, and the user's index is on the new copy either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_mysql_swap_converges_with_the_user_index() {
    for (point, table) in [
        ("mysql.snapshot.before_swap", "crash_before"),
        ("mysql.snapshot.after_rename", "crash_after"),
    ] {
        let courses = FakeTable {
            schema: fixture_schema(NS, "courses"),
            ..FakeTable::new(NS, table, 30)
        };
        let fake = fake_of(vec![courses]).await;
        let db = TestDb::new(Dialect::Mysql).await;
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), &fake, &db);
        assert!(binary_sync(&config, table, None).await);
        let mut conn = Conn::open(&db).await;
        let t = physical(Dialect::Mysql, table);
        conn.run(&format!("CREATE INDEX user_name_ix ON {t} (name)"))
            .await;

        fake.advance(
            NS,
            table,
            Changes {
                updates: 4,
                inserts: 3,
                deletes: 2,
                ..Changes::default()
            },
        );
        fake.require_snapshot(NS, table);
        assert!(!binary_sync(&config, table, Some(point)).await, "{point}");
        assert!(
            binary_sync(&config, table, None).await,
            "{point}: the next run finishes"
        );

        let engine = support::engine(&fake, &db).await;
        support::assert_replica_matches(&engine, &fake, NS, table).await;
        let index = format!(
            "SELECT count(*) FROM information_schema.statistics WHERE table_schema = DATABASE() \
             AND table_name = '{t}' AND index_name = 'user_name_ix'"
        );
        assert_eq!(conn.int(&index).await, 1, "{point}");
        conn.close().await;
        engine.db().close().await;
    }
}
