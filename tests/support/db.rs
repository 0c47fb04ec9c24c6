//! A fresh database per test on the real servers (PostgreSQL, MariaDB) or a temporary SQLite
//! file. A test's database is dropped when the test passes and kept when it fails (for a look);
//! leftovers older than a day are swept when the next test starts.

use std::time::{SystemTime, UNIX_EPOCH};

use dapsync::config::DatabaseUrl;
use dapsync::db::Db;
use dapsync::sql::{DdlOptions, Dialect};
use sqlx::{Connection, Executor, MySqlConnection, PgConnection};

const PG_ADMIN: &str = "postgresql://postgres@127.0.0.1:5432/postgres";
const MYSQL_ADMIN: &str = "mysql://root@127.0.0.1:3306/test";
const PREFIX: &str = "dapsync_t";

/// Every dialect, for tests that run on all three.
pub const DIALECTS: [Dialect; 3] = [Dialect::Postgres, Dialect::Mysql, Dialect::Sqlite];

/// A database of its own for one test.
#[derive(Debug)]
pub struct TestDb {
    pub dialect: Dialect,
    pub url: DatabaseUrl,
    name: String,
    _dir: Option<tempfile::TempDir>,
}

fn unique_name() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    format!(
        "{PREFIX}{}_{}_{:04x}",
        now.as_secs(),
        std::process::id(),
        fastrand::u16(..)
    )
}

impl TestDb {
    /// Creates an empty database.
    pub async fn new(dialect: Dialect) -> Self {
        let name = unique_name();
        let (url, dir) = match dialect {
            Dialect::Postgres => {
                let mut admin = PgConnection::connect(PG_ADMIN)
                    .await
                    .expect("PostgreSQL on 127.0.0.1:5432 (run .ci/services)");
                sweep_pg(&mut admin).await;
                admin
                    .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await
                    .unwrap();
                (format!("postgresql://postgres@127.0.0.1:5432/{name}"), None)
            }
            Dialect::Mysql => {
                let mut admin = MySqlConnection::connect(MYSQL_ADMIN)
                    .await
                    .expect("MariaDB on 127.0.0.1:3306 (run .ci/services)");
                sweep_mysql(&mut admin).await;
                admin
                    .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await
                    .unwrap();
                (format!("mysql://root@127.0.0.1:3306/{name}"), None)
            }
            Dialect::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join(format!("{name}.db"));
                (format!("sqlite://{}", path.display()), Some(dir))
            }
        };
        Self {
            dialect,
            url: DatabaseUrl::new(url),
            name,
            _dir: dir,
        }
    }

    /// Connects and runs the migrations.
    pub async fn connect(&self) -> Db {
        let db = Db::connect(&self.url, 10, DdlOptions::default())
            .await
            .unwrap();
        db.migrate().await.unwrap();
        db
    }

    /// Connects without running the migrations.
    pub async fn connect_raw(&self, options: DdlOptions) -> Db {
        Db::connect(&self.url, 10, options).await.unwrap()
    }

    /// Runs SQL text directly (several statements on PostgreSQL and SQLite).
    pub async fn execute(&self, sql: &str) {
        let db = self.connect_raw(DdlOptions::default()).await;
        db.execute_statements(
            &[dapsync::sql::Statement {
                sql: sql.to_owned(),
                own_transaction: true,
            }],
            "test setup",
        )
        .await
        .unwrap();
        db.close().await;
    }
}

/// Whether a test database name is older than a day (the name carries its creation time).
fn stale(name: &str) -> bool {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let created = name
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split('_').next())
        .and_then(|s| s.parse::<u64>().ok());
    created.is_some_and(|created| now.saturating_sub(created) > 86_400)
}

async fn sweep_pg(admin: &mut PgConnection) {
    let names: Vec<(String,)> =
        sqlx::query_as("SELECT datname::text FROM pg_database WHERE datname LIKE 'dapsync\\_t%'")
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_default();
    for (name,) in names.into_iter().filter(|(n,)| stale(n)) {
        let _ = admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .await;
    }
}

async fn sweep_mysql(admin: &mut MySqlConnection) {
    let names: Vec<(String,)> =
        sqlx::query_as("SELECT CAST(schema_name AS CHAR) FROM information_schema.schemata WHERE schema_name LIKE 'dapsync\\_t%'")
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_default();
    for (name,) in names.into_iter().filter(|(n,)| stale(n)) {
        let _ = admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name}"
            )))
            .await;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::thread::panicking() || self.dialect == Dialect::Sqlite {
            if std::thread::panicking() {
                eprintln!("test database kept for inspection: {}", self.url);
            }
            return;
        }
        let (dialect, name) = (self.dialect, self.name.clone());
        // Drop runs outside any runtime: use a small one of its own on another thread.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let sql = format!("DROP DATABASE IF EXISTS {name}");
                match dialect {
                    Dialect::Postgres => {
                        if let Ok(mut admin) = PgConnection::connect(PG_ADMIN).await {
                            let _ = admin
                                .execute(sqlx::AssertSqlSafe(format!("{sql} WITH (FORCE)")))
                                .await;
                        }
                    }
                    Dialect::Mysql => {
                        if let Ok(mut admin) = MySqlConnection::connect(MYSQL_ADMIN).await {
                            let _ = admin.execute(sqlx::AssertSqlSafe(sql)).await;
                        }
                    }
                    Dialect::Sqlite => {}
                }
            });
        })
        .join();
    }
}
