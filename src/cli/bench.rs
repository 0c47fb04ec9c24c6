//! `dapsync bench`: measures a full snapshot and an incremental that changes a share of the rows,
//! against the configured database, with the fake DAP server in a child process (so that the peak
//! memory measured is the sync's alone), and in the same run the database's own bulk load of the
//! same rows as a baseline: PostgreSQL `COPY ... FROM 'file'` (and the change set applied by hand:
//! COPY into a temporary table, one `INSERT ... ON CONFLICT`, one `DELETE ... USING`), MariaDB/MySQL
//! `LOAD DATA LOCAL INFILE` through the `mariadb`/`mysql` client.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::app::Error;
use crate::config::{Config, DatabaseUrl, HumanDuration};
use crate::dap::{CompleteJob, DapClient, Query};
use crate::db::{Cell, Db, TablePlan, write_copy_row};
use crate::schema::TableSchema;
use crate::sql::Dialect;
use crate::sync::{Decoded, Engine, Mode, ProgressMode, RowDecoder};
use crate::table::TableId;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub namespace: String,
    pub table: String,
    pub rows: u64,
    /// Share of the rows the incremental changes, in percent (80% updates, 10% inserts, 10% deletes).
    pub change_percent: f64,
    pub rows_per_object: usize,
    /// Where the JSON report goes.
    pub output: PathBuf,
}

/// One measured phase.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub rows: u64,
    pub seconds: f64,
    pub rows_per_sec: f64,
    /// Decompressed JSON Lines megabytes per second.
    pub mb_per_sec: f64,
    /// Peak resident memory of the dapsync process during the phase.
    pub peak_rss_mb: f64,
    /// CPU time the dapsync process used (user and system), which shows whether dapsync or
    /// the database is the bottleneck.
    pub cpu_seconds: f64,
}

/// A baseline: the database loading the same rows by itself.
#[derive(Debug, Clone, Serialize)]
pub struct Baseline {
    pub method: String,
    pub rows: u64,
    pub seconds: f64,
    pub rows_per_sec: f64,
}

impl Baseline {
    /// The baseline's figures once its load has finished; drops its table and its load file.
    async fn measured(
        db: &Db,
        table: &str,
        load_file: &Path,
        method: String,
        rows: u64,
        started: Instant,
    ) -> Result<Baseline, Error> {
        let seconds = started.elapsed().as_secs_f64();
        db.execute_statements(
            &statements(&[&format!("DROP TABLE IF EXISTS {table}")]),
            "bench",
        )
        .await?;
        let _ = std::fs::remove_file(load_file);
        Ok(Baseline {
            method,
            rows,
            seconds,
            rows_per_sec: rows as f64 / seconds,
        })
    }
}

/// The benchmark's results.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub dapsync_version: &'static str,
    pub database: Dialect,
    pub table: String,
    pub rows: u64,
    pub snapshot: Phase,
    pub incremental: Phase,
    pub snapshot_baseline: Option<Baseline>,
    pub incremental_baseline: Option<Baseline>,
    /// dapsync's rows/s over the baseline's.
    pub snapshot_ratio: Option<f64>,
    pub incremental_ratio: Option<f64>,
}

/// The fake server in a child process; killed when dropped.
struct FakeProcess {
    child: Child,
    base_url: String,
    /// Kept open: the child writes more than the first line, and a closed pipe would kill it.
    _stdout: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl FakeProcess {
    fn start(options: &BenchOptions) -> Result<Self, Error> {
        let io = |context: &str| {
            let context = context.to_owned();
            move |source| Error::Io { context, source }
        };
        let exe = std::env::current_exe().map_err(io("finding the dapsync binary"))?;
        let mut child = Command::new(exe)
            .args([
                "fake-dap",
                "--port",
                "0",
                "--rows-per-object",
                &options.rows_per_object.to_string(),
            ])
            .arg("--rows")
            .arg(format!(
                "{}.{}={}",
                options.namespace, options.table, options.rows
            ))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(io("starting the fake DAP server"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::Usage("the fake DAP server has no stdout".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        let base_url = lines
            .find_map(|line| line.ok()?.strip_prefix("listening on ").map(str::to_owned))
            .ok_or_else(|| Error::Usage("the fake DAP server did not start".into()))?;
        Ok(Self {
            child,
            base_url,
            _stdout: lines,
        })
    }

    /// Applies one change round through the fake's admin API.
    async fn advance(
        &self,
        namespace: &str,
        table: &str,
        updates: u64,
        inserts: u64,
        deletes: u64,
    ) -> Result<(), Error> {
        let url = format!("{}/_fake/tables/{namespace}/{table}/advance", self.base_url);
        let body = serde_json::json!({"updates": updates, "inserts": inserts, "deletes": deletes});
        let client = crate::dap::http_client_builder()
            .build()
            .map_err(|e| Error::Usage(format!("building an HTTP client: {e}")))?;
        let response = client
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(|e| Error::Usage(format!("advancing the fake: {e}")))?;
        if !response.status().is_success() {
            return Err(Error::Usage(format!(
                "advancing the fake: HTTP {}",
                response.status()
            )));
        }
        Ok(())
    }
}

impl Drop for FakeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resets the kernel's peak-RSS counter of this process (Linux; a no-op elsewhere).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The peak RSS since the last reset, in MB.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU time (user + system) this process has used, from `/proc/self/stat` (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces, so split after its `)`).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 11 and 12 after the name; the kernel
    // counts them in USER_HZ, which is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// Runs the benchmark and writes its report.
pub async fn run(config: &Config, options: &BenchOptions) -> Result<Report, Error> {
    let dialect = config.database.url.dialect()?;
    let id = TableId::new(&options.namespace, &options.table);
    let label = id.to_string();
    eprintln!(
        "bench: generating {} rows of {label} in the fake DAP server",
        options.rows
    );
    let fake = FakeProcess::start(options)?;
    let mut config = config.clone();
    config.dap.base_url = fake.base_url.clone();
    config.dap.client_id = Some("us-east-1#fake-client".into());
    config.dap.client_secret = Some(crate::secret::Secret::new("fake-secret"));
    config.dap.job_poll_initial = HumanDuration(Duration::from_millis(50));
    config.dap.job_poll_max = HumanDuration(Duration::from_millis(250));
    config.dap.queries_per_minute = 1_000;
    let dap = crate::app::dap_client(&config)?;
    let db = crate::app::database(&config).await?;
    let (ns, table) = (options.namespace.as_str(), options.table.as_str());
    let repeated_keys = crate::app::sync_options(&config, ProgressMode::Log).repeats_keys(&id);
    let schema = TableSchema::from_envelope(ns, table, &dap.get_schema(ns, table).await?)?;
    // Baseline copies left by an interrupted run would hold on to the table's enum types.
    if dialect != Dialect::Sqlite {
        let plan = TablePlan::new(dialect, schema.clone());
        for suffix in [BASELINE_SUFFIX, INCREMENTAL_SUFFIX] {
            let drop = format!(
                "DROP TABLE IF EXISTS {}",
                baseline_table(&plan, suffix).qualified()
            );
            db.execute_statements(&statements(&[&drop]), "bench")
                .await?;
        }
    }
    if db.sync_state(&id).await?.is_some() {
        crate::sync::drop_table(&db, &id).await?;
    }

    // A first small commit: since `since` is inclusive, the incremental re-reads the commit the
    // snapshot ends on, which should not be the initial one holding every row.
    fake.advance(ns, table, 1, 0, 0).await?;
    // The fake writes a job's objects before it reports the job complete, and answers an
    // identical query with the same job: warming the query up keeps generation out of the timing.
    let snapshot_job = dap.query(ns, table, Query::Snapshot).await?;
    let engine = Engine::new(
        dap.clone(),
        db.clone(),
        crate::app::sync_options(&config, ProgressMode::detect()),
    );

    eprintln!("bench: snapshot");
    let snapshot = measure(&engine, &id, options.rows).await?;
    let snapshot_baseline = baseline_snapshot(
        &db,
        &dap,
        &schema,
        &snapshot_job,
        &config.database.url,
        repeated_keys,
    )
    .await?;

    let changes = ((options.rows as f64) * options.change_percent / 100.0).round() as u64;
    let (updates, inserts) = (changes * 8 / 10, changes / 10);
    let deletes = changes - updates - inserts;
    fake.advance(ns, table, updates, inserts, deletes).await?;
    let since = db
        .sync_state(&id)
        .await?
        .map(|s| s.since)
        .ok_or_else(|| Error::Usage("the snapshot left no sync state".into()))?;
    let incremental_job = dap.query(ns, table, Query::Incremental { since }).await?;
    let incremental_baseline = match dialect {
        Dialect::Sqlite => None,
        _ => Some(
            baseline_incremental(
                &db,
                &dap,
                &schema,
                &incremental_job,
                &config.database.url,
                repeated_keys,
            )
            .await?,
        ),
    };
    eprintln!("bench: incremental");
    let incremental = measure(&engine, &id, changes).await?;

    let ratio = |phase: &Phase, baseline: &Option<Baseline>| {
        baseline
            .as_ref()
            .map(|b| phase.rows_per_sec / b.rows_per_sec)
    };
    let report = Report {
        dapsync_version: env!("CARGO_PKG_VERSION"),
        database: dialect,
        table: label,
        rows: options.rows,
        snapshot_ratio: ratio(&snapshot, &snapshot_baseline),
        incremental_ratio: ratio(&incremental, &incremental_baseline),
        snapshot,
        incremental,
        snapshot_baseline,
        incremental_baseline,
    };
    let json = serde_json::to_string_pretty(&report).unwrap_or_default();
    std::fs::write(&options.output, json + "\n").map_err(|source| Error::Io {
        context: format!("writing {}", options.output.display()),
        source,
    })?;
    db.close().await;
    Ok(report)
}

/// Runs one sync of the table and measures it.
async fn measure(engine: &Engine, table: &TableId, expected_rows: u64) -> Result<Phase, Error> {
    reset_peak_rss();
    let started = Instant::now();
    let cpu_before = cpu_seconds();
    let runs = engine.sync_table(table, Mode::Sync).await?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = cpu_seconds() - cpu_before;
    let peak_rss_mb = peak_rss_mb();
    let bytes: u64 = runs.iter().map(|r| r.bytes).sum();
    let rows = runs
        .iter()
        .map(|r| (r.stats.upserted + r.stats.deleted) as u64)
        .sum::<u64>()
        .max(expected_rows.min(1));
    Ok(Phase {
        rows,
        seconds,
        rows_per_sec: rows as f64 / seconds,
        mb_per_sec: bytes as f64 / 1e6 / seconds,
        peak_rss_mb,
        cpu_seconds,
    })
}

/// Writes a job's records to a file in the database's bulk-load text format (tab-separated,
/// `\N` for NULL, backslash escapes). With `flags`, every row ends with the delete flag.
async fn write_load_file(
    dap: &DapClient,
    plan: &TablePlan,
    job: &CompleteJob,
    path: &Path,
    flags: bool,
    repeated_keys: bool,
) -> Result<u64, Error> {
    let file = std::fs::File::create(path).map_err(|source| Error::Io {
        context: format!("creating {}", path.display()),
        source,
    })?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let write_error = |source| Error::Io {
        context: "writing the load file".into(),
        source,
    };
    let decoder = RowDecoder::new(Arc::new(plan.clone()), false, true).map_err(Error::Usage)?;
    let mut stream = dap.records_with(job, Arc::new(decoder));
    // Where keys repeat, only the last line of each key is written (neither COPY nor an
    // `INSERT ... ON CONFLICT` takes a key twice): lines are held, in the job's order, until the
    // end. This happens before the timing, in a few large allocations that go back to the
    // system when freed, so that the peak memory measured for dapsync afterwards is its own.
    let mut held: Option<HeldLines> = None;
    if repeated_keys {
        stream = stream.sequential();
        held = Some(HeldLines::default());
    }
    let mut rows = 0;
    let mut buffer = Vec::with_capacity(1 << 16);
    let mysql = plan.dialect() == Dialect::Mysql;
    while let Some(batch) = stream.next_batch().await {
        for decoded in batch?.records {
            let (delete, mut row) = match decoded {
                Decoded::Upsert(row) => (false, row),
                Decoded::Delete(row) => (true, row),
                Decoded::Rejected(_) => continue,
            };
            row.resize(plan.columns.names.len(), Cell::Null);
            if mysql {
                // LOAD DATA reads booleans as integers and binary(16) from the hex `SET` below.
                for cell in &mut row {
                    let text = match &*cell {
                        Cell::Bool(b) => Cell::Int(i64::from(*b)),
                        Cell::Uuid(u) => Cell::Text(u.simple().to_string()),
                        _ => continue,
                    };
                    *cell = text;
                }
            }
            buffer.clear();
            if flags {
                let flag = if mysql {
                    Cell::Int(i64::from(delete))
                } else {
                    Cell::Bool(delete)
                };
                write_copy_row(row.iter().chain([&flag]), &mut buffer);
            } else {
                write_copy_row(&row, &mut buffer);
            }
            if let Some(held) = &mut held {
                held.push(&plan.key_text(&row), &buffer);
                continue;
            }
            out.write_all(&buffer).map_err(write_error)?;
            rows += 1;
        }
    }
    if let Some(held) = held {
        for line in held.last_of_each_key() {
            out.write_all(line).map_err(write_error)?;
            rows += 1;
        }
    }
    out.flush().map_err(write_error)?;
    Ok(rows)
}

fn load_file_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("dapsync-bench-{}-{name}.tsv", std::process::id()))
}

async fn baseline_snapshot(
    db: &Db,
    dap: &DapClient,
    schema: &TableSchema,
    job: &CompleteJob,
    url: &DatabaseUrl,
    repeated_keys: bool,
) -> Result<Option<Baseline>, Error> {
    let dialect = db.dialect();
    if dialect == Dialect::Sqlite {
        return Ok(None);
    }
    let plan = TablePlan::new(dialect, schema.clone());
    let path = load_file_path("snapshot");
    let rows = write_load_file(dap, &plan, job, &path, false, repeated_keys).await?;
    make_world_readable(&path);
    let baseline = baseline_table(&plan, BASELINE_SUFFIX);
    let qualified = baseline.qualified();
    db.execute_statements(
        &statements(&[&format!("DROP TABLE IF EXISTS {qualified}")]),
        "bench",
    )
    .await?;
    let like = match dialect {
        Dialect::Postgres => format!(
            "CREATE TABLE {qualified} (LIKE {} INCLUDING ALL)",
            plan.live.qualified()
        ),
        _ => format!("CREATE TABLE {qualified} LIKE {}", plan.live.qualified()),
    };
    db.execute_statements(&statements(&[&like]), "bench")
        .await?;
    let columns: Vec<String> = plan
        .columns
        .names
        .iter()
        .map(|c| dialect.quote_ident(c))
        .collect();
    let started = Instant::now();
    let method = match dialect {
        Dialect::Postgres => {
            let copy = format!(
                "COPY {qualified} ({}) FROM {}",
                columns.join(", "),
                dialect.quote_literal(&path.display().to_string())
            );
            db.execute_statements(&statements(&[&copy]), "bench: COPY FROM file")
                .await?;
            "PostgreSQL COPY FROM a local file".to_owned()
        }
        _ => {
            let load = load_data_sql(&qualified, &plan, schema, &path, None);
            mysql_client(url, &format!("SET unique_checks = 1; {load}"))?;
            "LOAD DATA LOCAL INFILE (mariadb client)".to_owned()
        }
    };
    Ok(Some(
        Baseline::measured(db, &qualified, &path, method, rows, started).await?,
    ))
}

/// The change set applied by hand to a copy of the table, in one transaction. PostgreSQL: COPY
/// into a temporary table, one `INSERT ... ON CONFLICT`, one `DELETE ... USING`. MariaDB:
/// `LOAD DATA LOCAL INFILE` into a temporary table, one `INSERT ... SELECT ... ON DUPLICATE KEY
/// UPDATE`, one multi-table `DELETE`.
async fn baseline_incremental(
    db: &Db,
    dap: &DapClient,
    schema: &TableSchema,
    job: &CompleteJob,
    url: &DatabaseUrl,
    repeated_keys: bool,
) -> Result<Baseline, Error> {
    let d = db.dialect();
    let plan = TablePlan::new(d, schema.clone());
    let path = load_file_path("changes");
    let rows = write_load_file(dap, &plan, job, &path, true, repeated_keys).await?;
    make_world_readable(&path);
    let copy_table = baseline_table(&plan, INCREMENTAL_SUFFIX);
    let (target, live) = (copy_table.qualified(), plan.live.qualified());
    let mut setup = vec![format!("DROP TABLE IF EXISTS {target}")];
    if d == Dialect::Postgres {
        setup.push(format!("CREATE TABLE {target} (LIKE {live} INCLUDING ALL)"));
        setup.push(format!("INSERT INTO {target} SELECT * FROM {live}"));
        setup.push(format!("VACUUM ANALYZE {target}"));
    } else {
        setup.push(format!("CREATE TABLE {target} LIKE {live}"));
        setup.push(format!("INSERT INTO {target} SELECT * FROM {live}"));
        setup.push(format!("ANALYZE TABLE {target}"));
    }
    let setup: Vec<&str> = setup.iter().map(String::as_str).collect();
    db.execute_statements(&statements(&setup), "bench").await?;
    let columns: Vec<String> = plan
        .columns
        .names
        .iter()
        .map(|c| d.quote_ident(c))
        .collect();
    let key: Vec<&String> = columns.iter().take(plan.columns.key_len).collect();
    let matches: Vec<String> = key.iter().map(|k| format!("t.{k} = c.{k}")).collect();
    let (cols, matches) = (columns.join(", "), matches.join(" AND "));
    let started = Instant::now();
    let method = if d == Dialect::Postgres {
        let key_list = key
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let set: Vec<String> = columns
            .iter()
            .skip(plan.columns.key_len)
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect();
        let script = format!(
            "BEGIN;\
             CREATE TEMPORARY TABLE bench_changes ON COMMIT DROP AS SELECT * FROM {live} WITH NO DATA;\
             ALTER TABLE bench_changes ADD COLUMN deleted boolean;\
             COPY bench_changes ({cols}, deleted) FROM {file};\
             INSERT INTO {target} ({cols}) SELECT {cols} FROM bench_changes WHERE NOT deleted ON CONFLICT ({key_list}) DO UPDATE SET {set};\
             DELETE FROM {target} AS t USING bench_changes AS c WHERE c.deleted AND {matches};\
             COMMIT;",
            file = d.quote_literal(&path.display().to_string()),
            set = set.join(", "),
        );
        db.execute_statements(&statements(&[&script]), "bench: change set by hand")
            .await?;
        "COPY into a temporary table, INSERT ... ON CONFLICT, DELETE ... USING"
    } else {
        let set: Vec<String> = columns
            .iter()
            .skip(plan.columns.key_len)
            .map(|c| format!("{c} = VALUES({c})"))
            .collect();
        let load = load_data_sql("bench_changes", &plan, schema, &path, Some("deleted"));
        let script = format!(
            "START TRANSACTION;\
             CREATE TEMPORARY TABLE bench_changes LIKE {live};\
             ALTER TABLE bench_changes ADD COLUMN deleted tinyint;\
             {load};\
             INSERT INTO {target} ({cols}) SELECT {cols} FROM bench_changes WHERE NOT deleted ON DUPLICATE KEY UPDATE {set};\
             DELETE t FROM {target} AS t JOIN bench_changes AS c ON {matches} WHERE c.deleted;\
             COMMIT;",
            set = set.join(", "),
        );
        mysql_client(url, &script)?;
        "LOAD DATA into a temporary table, INSERT ... SELECT ... ON DUPLICATE KEY UPDATE, DELETE ... JOIN"
    };
    Baseline::measured(db, &target, &path, method.into(), rows, started).await
}

/// Lines of a load file held back to keep the last of each key, in one buffer.
#[derive(Default)]
struct HeldLines {
    bytes: Vec<u8>,
    /// Where each line ends in `bytes`.
    ends: Vec<usize>,
    /// The last line of each key, by a hash of the key (64 bits: no collision in a benchmark).
    last: HashMap<u64, usize>,
}

impl HeldLines {
    fn push(&mut self, key: &str, line: &[u8]) {
        self.last
            .insert(crate::hash::fnv1a(key.as_bytes()), self.ends.len());
        self.bytes.extend_from_slice(line);
        self.ends.push(self.bytes.len());
    }

    /// The lines that are the last of their key, in order.
    fn last_of_each_key(&self) -> impl Iterator<Item = &[u8]> {
        let mut keep = vec![false; self.ends.len()];
        for &i in self.last.values() {
            keep[i] = true;
        }
        (0..self.ends.len()).filter(move |&i| keep[i]).map(|i| {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            &self.bytes[start..self.ends[i]]
        })
    }
}

const BASELINE_SUFFIX: &str = "__bench_baseline";
const INCREMENTAL_SUFFIX: &str = "__bench_incremental";

/// The copy of the table a baseline loads into.
fn baseline_table(plan: &TablePlan, suffix: &str) -> crate::sql::TableNames {
    crate::sql::TableNames {
        table: format!("{}{suffix}", plan.live.table),
        ..plan.live.clone()
    }
}

fn statements(sql: &[&str]) -> Vec<crate::sql::Statement> {
    sql.iter()
        .map(|s| crate::sql::Statement {
            sql: (*s).to_owned(),
            own_transaction: true,
        })
        .collect()
}

/// The database server reads the file itself (PostgreSQL `COPY FROM 'file'`).
fn make_world_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644));
}

/// `LOAD DATA LOCAL INFILE` of a file written by [`write_load_file`] into `table`, with an
/// extra last column `flag` if given.
fn load_data_sql(
    table: &str,
    plan: &TablePlan,
    schema: &TableSchema,
    path: &Path,
    flag: Option<&str>,
) -> String {
    let mut variables = Vec::new();
    let mut sets = Vec::new();
    for (column, physical) in schema.columns.iter().zip(&plan.columns.names) {
        let quoted = Dialect::Mysql.quote_ident(physical);
        if column.ty == crate::schema::ColumnType::Uuid {
            let var = format!("@v{}", variables.len());
            sets.push(format!("{quoted} = UNHEX({var})"));
            variables.push(var);
        } else {
            variables.push(quoted);
        }
    }
    variables.extend(flag.map(|f| Dialect::Mysql.quote_ident(f)));
    let set = if sets.is_empty() {
        String::new()
    } else {
        format!(" SET {}", sets.join(", "))
    };
    format!(
        "LOAD DATA LOCAL INFILE {} INTO TABLE {table} CHARACTER SET utf8mb4 ({}){set}",
        Dialect::Mysql.quote_literal(&path.display().to_string()),
        variables.join(", ")
    )
}

/// Runs SQL through the `mariadb` (or `mysql`) command-line client, which can send local files.
fn mysql_client(url: &DatabaseUrl, sql: &str) -> Result<(), Error> {
    let parsed = reqwest::Url::parse(&url.expose().replacen("mariadb://", "mysql://", 1))
        .map_err(|e| Error::Usage(format!("database URL: {e}")))?;
    let client = if which("mariadb") { "mariadb" } else { "mysql" };
    let mut command = Command::new(client);
    command
        .arg("--local-infile=1")
        .arg(format!(
            "--host={}",
            parsed.host_str().unwrap_or("127.0.0.1")
        ))
        .arg(format!("--port={}", parsed.port().unwrap_or(3306)))
        .arg(format!("--user={}", parsed.username()))
        .arg(parsed.path().trim_start_matches('/'))
        .arg("-e")
        .arg(sql);
    if let Some(password) = parsed.password() {
        command.env("MYSQL_PWD", password);
    }
    let output = command.output().map_err(|source| Error::Io {
        context: format!("running {client}"),
        source,
    })?;
    if !output.status.success() {
        return Err(Error::Usage(format!(
            "{client} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The report as a few lines for people.
pub fn describe(report: &Report) -> String {
    let phase = |name: &str, p: &Phase| {
        format!(
            "{name:<12} {:>10} rows {:>8.2} s {:>10.0} rows/s {:>7.1} MB/s  peak RSS {:>6.1} MB  CPU {:>6.2} s\n",
            p.rows, p.seconds, p.rows_per_sec, p.mb_per_sec, p.peak_rss_mb, p.cpu_seconds
        )
    };
    let base = |name: &str, b: &Option<Baseline>, ratio: Option<f64>| match b {
        Some(b) => format!(
            "{name:<12} {:>10} rows {:>8.2} s {:>10.0} rows/s  ({}) — dapsync reaches {:.0}% of it\n",
            b.rows,
            b.seconds,
            b.rows_per_sec,
            b.method,
            ratio.unwrap_or_default() * 100.0
        ),
        None => String::new(),
    };
    let mut text = format!(
        "dapsync bench: {} on {:?}, {} rows\n",
        report.table, report.database, report.rows
    );
    text.push_str(&phase("snapshot", &report.snapshot));
    text.push_str(&base(
        "  baseline",
        &report.snapshot_baseline,
        report.snapshot_ratio,
    ));
    text.push_str(&phase("incremental", &report.incremental));
    text.push_str(&base(
        "  baseline",
        &report.incremental_baseline,
        report.incremental_ratio,
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_lines_keep_the_last_of_each_key_in_order() {
        let mut held = HeldLines::default();
        for (key, line) in [("a", "a1\n"), ("b", "b1\n"), ("a", "a2\n"), ("c", "c1\n")] {
            held.push(key, line.as_bytes());
        }
        let kept: Vec<&[u8]> = held.last_of_each_key().collect();
        assert_eq!(kept, [&b"b1\n"[..], b"a2\n", b"c1\n"]);
    }
}
