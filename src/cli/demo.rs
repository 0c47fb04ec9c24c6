//! `dapsync demo`: a first run for newcomers. The bundled fake DAP server serves a few real
//! tables; the real daemon (scheduler, engine, HTTP endpoint) replicates them into a local SQLite
//! file on a fast schedule while the demo changes them upstream round after round (updates,
//! inserts, deletes, a schema change), then prints the status table. Only the API is simulated.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Args;
use serde_json::json;

use crate::app;
use crate::app::{EXIT_FAILURE, Error};
use crate::config::{Config, CronSchedule, DatabaseUrl, HumanDuration, NamespaceConfig};
use crate::db::TablePlan;
use crate::fake::{Changes, FakeDap, FakeDapConfig, FakeTable};
use crate::schema::TableSchema;
use crate::status::{Status, StatusView};
use crate::table::TableId;

/// The tables the demo replicates, with their rows at the start.
const TABLES: [(&str, &str, u64); 4] = [
    ("canvas", "courses", 120),
    ("canvas", "users", 400),
    ("canvas", "enrollments", 600),
    ("canvas", "assignments", 250),
];
/// Every 2 seconds.
const SCHEDULE: &str = "*/2 * * * * *";
/// The round in which `canvas.courses` gets a new column upstream.
const SCHEMA_ROUND: u32 = 3;
/// The pause between rounds.
const ROUND_PAUSE: Duration = Duration::from_secs(3);
/// A round that takes longer than this is reported and the demo moves on.
const ROUND_LIMIT: Duration = Duration::from_secs(60);

/// Options of `dapsync demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// The SQLite file to replicate into; it stays for you to look at.
    #[arg(long, default_value = "dapsync-demo.db", value_name = "PATH")]
    pub database: PathBuf,
    /// Replace the database file if it exists (from an earlier demo).
    #[arg(long)]
    pub replace: bool,
    /// Rounds of upstream changes after the first snapshot.
    #[arg(long, default_value_t = 4)]
    pub rounds: u32,
    /// Port of the HTTP endpoint on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
}

/// Runs the demo until its rounds are done or `stop` completes (Ctrl-C); returns the exit code:
/// 0 when every table caught up in every round.
pub async fn run(args: DemoArgs, stop: impl Future<Output = ()>) -> Result<i32, Error> {
    prepare_file(&args.database, args.replace)?;
    let fake = FakeDap::start(FakeDapConfig {
        tables: TABLES
            .iter()
            .map(|(ns, table, rows)| FakeTable::new(*ns, *table, *rows))
            .collect(),
        fixture_rows: None,
        rows_per_object: 200,
        ..FakeDapConfig::default()
    })
    .await
    .map_err(|source| Error::Io {
        context: "starting the fake DAP server".into(),
        source,
    })?;
    let config = config(&fake, &args)?;
    println!(
        "dapsync demo: a fake DAP API at {} serves {} canvas tables;",
        fake.base_url(),
        TABLES.len()
    );
    println!(
        "the real daemon replicates them into {} every 2 seconds.",
        args.database.display()
    );
    let daemon = app::Daemon::start(&config).await?;
    if let Some(addr) = daemon.http_addr() {
        println!("Meanwhile: http://{addr}/status (and /healthz, /readyz, /metrics)");
    }
    let caught_up = tokio::select! {
        caught_up = rounds(&fake, daemon.status(), args.rounds) => caught_up,
        () = stop => {
            println!("interrupted; stopping");
            false
        }
    };
    daemon.shutdown(std::future::pending()).await;
    let db = app::database(&config).await?;
    let statuses = db.table_statuses().await?;
    println!();
    super::status::print_status_table(&statuses);
    println!();
    let mut equal = true;
    for (namespace, table, _) in TABLES {
        let schema = TableSchema::from_envelope(namespace, table, &fake.schema(namespace, table))?;
        let plan = TablePlan::new(db.dialect(), schema);
        let replica = db.count_rows(&plan.live).await?;
        let source = fake.current_rows(namespace, table).len();
        let same = usize::try_from(replica).is_ok_and(|r| r == source);
        equal &= same;
        println!(
            "{namespace}.{table}: {replica} rows in the replica, {source} upstream{}",
            if same { "" } else { " (behind)" }
        );
    }
    db.close().await;
    fake.shutdown().await;
    println!();
    println!(
        "Look inside: sqlite3 {} 'SELECT * FROM canvas__courses LIMIT 5'",
        args.database.display()
    );
    println!(
        "Status again: DAPSYNC_DATABASE__URL=sqlite://{} dapsync status",
        args.database.display()
    );
    Ok(if caught_up && equal { 0 } else { EXIT_FAILURE })
}

/// Refuses to overwrite a file unless asked, and then removes it with its SQLite companions.
fn prepare_file(path: &Path, replace: bool) -> Result<(), Error> {
    if !path.exists() {
        return Ok(());
    }
    if !replace {
        return Err(Error::Usage(format!(
            "{} exists (from an earlier demo?): pass --replace to start over, or --database to use another file",
            path.display()
        )));
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        removed(Path::new(&file), std::fs::remove_file(&file))?;
    }
    let mut locks = path.as_os_str().to_owned();
    locks.push(".locks");
    removed(Path::new(&locks), std::fs::remove_dir_all(&locks))
}

/// A removal's result, a file that was not there counting as removed.
fn removed(path: &Path, result: std::io::Result<()>) -> Result<(), Error> {
    match result {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(Error::Io {
            context: format!("removing {}", path.display()),
            source: error,
        }),
        _ => Ok(()),
    }
}

/// The daemon's configuration for the demo: the fake API, the SQLite file, a fast schedule.
fn config(fake: &FakeDap, args: &DemoArgs) -> Result<Config, Error> {
    let fast = |millis| HumanDuration(Duration::from_millis(millis));
    let mut config = Config::default();
    config.dap.base_url = fake.base_url().to_owned();
    config.dap.client_id = Some(fake.client_id().to_owned());
    config.dap.client_secret = Some(fake.client_secret().clone());
    config.dap.job_poll_initial = fast(100);
    config.dap.job_poll_max = fast(500);
    // The real API allows 5 query starts a minute; the fake answers as fast as the demo asks.
    config.dap.queries_per_minute = 600;
    config.database.url = DatabaseUrl::new(format!("sqlite://{}", args.database.display()));
    config.sync.schedule = CronSchedule::parse(SCHEDULE).map_err(Error::Usage)?;
    config.sync.run_backoff = fast(1000);
    config.sync.shutdown_grace = fast(5000);
    config.namespaces.clear();
    config.namespaces.insert(
        "canvas".into(),
        NamespaceConfig {
            tables: TABLES
                .iter()
                .map(|(_, table, _)| table.to_string())
                .collect(),
            ..NamespaceConfig::default()
        },
    );
    config.http.enabled = true;
    config.http.listen = std::net::SocketAddr::from(([127, 0, 0, 1], args.port));
    config.webhooks.urls.clear();
    config.validate()?;
    Ok(config)
}

/// The snapshot, then `rounds` rounds of upstream changes, each waited for until every table
/// caught up. Returns whether every round caught up.
async fn rounds(fake: &FakeDap, status: &Status, rounds: u32) -> bool {
    let mut all_caught_up = wait(status, &[], "snapshot of every table").await;
    for round in 1..=rounds {
        // A moment to look at the endpoint between rounds.
        tokio::time::sleep(ROUND_PAUSE).await;
        let mut commits = Vec::new();
        let mut what = "updates, inserts and deletes";
        for (namespace, table, _) in TABLES {
            if round == SCHEMA_ROUND && table == "courses" {
                add_column(fake, namespace, table);
                what = "updates, inserts, deletes and a new column in canvas.courses";
            }
            let changes = Changes {
                updates: 12,
                inserts: 6,
                deletes: 3,
                inserted_then_deleted: 1,
            };
            let commit = fake.advance(namespace, table, changes);
            commits.push((TableId::new(namespace, table), commit));
        }
        println!("round {round}: upstream {what}; waiting for the next tick");
        all_caught_up &= wait(status, &commits, &format!("round {round} applied")).await;
    }
    all_caught_up
}

/// A new nullable column, added in place (no rewrite): the replica ALTERs the table.
fn add_column(fake: &FakeDap, namespace: &str, table: &str) {
    let mut schema = fake.schema(namespace, table)["schema"].clone();
    if let Some(properties) = schema
        .pointer_mut("/properties/value/properties")
        .and_then(|p| p.as_object_mut())
    {
        properties.insert(
            "demo_note".into(),
            json!({"type": "string", "maxLength": 255, "description": "Added by dapsync demo."}),
        );
        fake.bump_schema(namespace, table, schema, false);
    }
}

/// Waits until every demo table has synced, up to its commit in `commits` if it has one, and
/// says so.
async fn wait(status: &Status, commits: &[(TableId, DateTime<Utc>)], done: &str) -> bool {
    let caught_up = |view: &StatusView| {
        view.tables.iter().all(|t| {
            let commit = commits
                .iter()
                .find(|(id, _)| id.namespace == t.namespace && id.table == t.table)
                .map(|(_, c)| *c);
            t.synced_until
                .is_some_and(|until| commit.is_none_or(|c| until >= c))
        })
    };
    match tokio::time::timeout(ROUND_LIMIT, status.wait_for(caught_up)).await {
        Ok(()) => {
            let rows: i64 = status.view().tables.iter().filter_map(|t| t.rows).sum();
            println!("  {done}: {rows} rows in all");
            true
        }
        Err(_) => {
            println!("  {done}: not every table caught up; see the status table below");
            false
        }
    }
}
