//! The files destination under the daemon, as a user runs it: the real binary with
//! `database.url = "files://DIR?format=F"` for each format, over several incremental rounds, a
//! restart and a kill -9 in the middle of a download; then the chain's files, applied in order,
//! equal the fake's rows, and `status`, `/status` and `/metrics` tell where the table stands.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dapsync::export::{Kind, Manifest, chain, chain_named};
use dapsync::fake::{Endpoint, FakeDap, FakeDapConfig, FakeTable, Fault};
use serde_json::Value;

use crate::export::{apply, check_folder, dapsync, fake_env, jsonl_records, round, truth};
use crate::support::daemon::PATIENCE;
use crate::support::daemon::get;

/// A fake serving `canvas.courses`, 3 records per object, jobs complete at once.
async fn fake() -> FakeDap {
    FakeDap::start(FakeDapConfig {
        tables: vec![FakeTable {
            rows_per_object: Some(3),
            ..FakeTable::new("canvas", "courses", 8)
        }],
        fixture_rows: None,
        job_polls: 0,
        ..FakeDapConfig::default()
    })
    .await
    .unwrap()
}

/// A `dapsync run` process and its JSON log lines.
struct Process {
    child: tokio::process::Child,
    logs: tokio::sync::mpsc::UnboundedReceiver<Value>,
}

impl Process {
    fn spawn(config: &Path) -> Self {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_dapsync"))
            .args([
                "--config",
                config.to_str().unwrap(),
                "--log-format",
                "json",
                "run",
            ])
            .env_clear()
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
        Self { child, logs }
    }

    /// The address the HTTP endpoint listens on, from its log line.
    async fn http_addr(&mut self) -> std::net::SocketAddr {
        let wait = async {
            loop {
                let line = self.logs.recv().await.expect("the process ended");
                if line["message"] == "http endpoint listening" {
                    return line["address"].as_str().unwrap().parse().unwrap();
                }
            }
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .expect("no http endpoint")
    }

    /// SIGTERM; asserts a clean exit.
    async fn terminate(mut self) {
        let pid = self.child.id().unwrap().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        let exit = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("the process did not stop")
            .unwrap();
        assert_eq!(exit.code(), Some(0));
    }

    /// SIGKILL: no clean-up at all.
    async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }
}

/// The complete jobs of the table's current generation, oldest first.
fn current_chain(table: &Path) -> Vec<(PathBuf, Manifest)> {
    let mut generations: Vec<PathBuf> = std::fs::read_dir(table)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("generation=")
                })
                .collect()
        })
        .unwrap_or_default();
    generations.sort_by_key(|p| {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        name["generation=".len()..].parse::<u64>().unwrap()
    });
    generations
        .last()
        .map(|g| chain_named(g, "canvas", "courses", "_manifest.json").unwrap())
        .unwrap_or_default()
        .into_iter()
        .filter(|(folder, _)| {
            let name = folder.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("job_")
        })
        .collect()
}

/// Waits (at most [`PATIENCE`]) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    tokio::time::timeout(PATIENCE, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// The folders of jobs still downloading in the table's folder, with the files their partial
/// manifest lists as complete (those a resumed download keeps).
fn downloading(table: &Path) -> Vec<(PathBuf, usize)> {
    let mut found = Vec::new();
    for generation in std::fs::read_dir(table).into_iter().flatten() {
        let generation = generation.unwrap().path();
        for job in std::fs::read_dir(&generation).into_iter().flatten() {
            let job = job.unwrap().path();
            let name = job.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with(".job_") && name.ends_with(".part") && job.is_dir() {
                let listed = std::fs::read(job.join("manifest.json.part"))
                    .ok()
                    .and_then(|text| serde_json::from_slice::<Manifest>(&text).ok())
                    .map_or(0, |manifest| manifest.files.len());
                found.push((job, listed));
            }
        }
    }
    found
}

/// The same window as `manifest`'s job, asked again as JSON Lines with the file command (while
/// its `until` is still the fake's latest commit).
async fn jsonl_window(fake: &FakeDap, cwd: &Path, manifest: &Manifest, name: &str) -> Vec<Value> {
    let out = cwd.join(name);
    let micros =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let (since, until) = (manifest.since.unwrap(), manifest.until.unwrap());
    dapsync(
        cwd,
        &fake_env(fake),
        &[
            "incremental",
            "--namespace",
            "canvas",
            "--table",
            "courses",
            "--since",
            &micros(since),
            "--until",
            &micros(until),
            "--output-directory",
            out.to_str().unwrap(),
        ],
    )
    .await
    .success();
    let (folder, manifest) = chain(&out, "canvas", "courses").unwrap().remove(0);
    jsonl_records(&folder, &manifest)
}

async fn the_daemon_keeps_a_chain_of_files(format: &str) {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let lake = cwd.join("lake");
    let url = format!("files://{}?format={format}", lake.display());
    let config = cwd.join("dapsync.toml");
    std::fs::write(
        &config,
        format!(
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
download_concurrency = 1

[database]
url = "{url}"

[sync]
schedule = "* * * * * *"
run_backoff = "50ms"

[namespaces.canvas]
tables = ["courses"]

[http]
listen = "127.0.0.1:0"

[log]
level = "info"
"#,
            base = fake.base_url(),
            id = fake.client_id(),
            secret = fake.client_secret().expose(),
        ),
    )
    .unwrap();
    let table = lake.join("canvas/courses");
    let mut daemon = Process::spawn(&config);
    daemon.http_addr().await;
    until("the snapshot", || current_chain(&table).len() == 1).await;
    // The snapshot's rows as JSON Lines, asked while the fake has not changed.
    dapsync(
        cwd,
        &fake_env(&fake),
        &[
            "snapshot",
            "--namespace",
            "canvas",
            "--table",
            "courses",
            "--output-directory",
            "snapshot",
        ],
    )
    .await
    .success();
    let (folder, manifest) = chain(&cwd.join("snapshot"), "canvas", "courses")
        .unwrap()
        .remove(0);
    let snapshot = jsonl_records(&folder, &manifest);

    let mut windows = vec![snapshot];
    fake.advance("canvas", "courses", round());
    until("the first incremental", || current_chain(&table).len() == 2).await;
    // Asked again before the fake moves on (it serves `until` from its latest commit on).
    windows.push(jsonl_window(&fake, cwd, &current_chain(&table)[1].1, "window1").await);

    // A restart continues the chain.
    daemon.terminate().await;
    fake.advance("canvas", "courses", round());
    let daemon = Process::spawn(&config);
    until("the incremental after the restart", || {
        current_chain(&table).len() == 3
    })
    .await;
    windows.push(jsonl_window(&fake, cwd, &current_chain(&table)[2].1, "window2").await);

    // kill -9 in the middle of a download: the next start resumes the job, keeping its
    // complete files, and the chain goes on without a gap or a repeat.
    fake.inject(
        Fault::SlowBody {
            chunk_bytes: 512,
            pause_ms: 200,
        },
        Endpoint::Download,
        100_000,
    );
    fake.advance("canvas", "courses", round());
    until("a download under way with a complete file", || {
        downloading(&table)
            .iter()
            .any(|(_, complete)| *complete > 0)
    })
    .await;
    daemon.kill().await;
    let (part, kept) = downloading(&table).remove(0);
    assert!(current_chain(&table).len() == 3, "{part:?}");
    fake.clear_faults();
    let mark = fake.requests().len();
    let mut daemon = Process::spawn(&config);
    let addr = daemon.http_addr().await;
    until("the resumed incremental", || {
        current_chain(&table).len() == 4
    })
    .await;
    let jobs = current_chain(&table);
    let resumed = &jobs[3].1;
    assert_eq!(
        part.file_name().unwrap().to_string_lossy(),
        format!(".job_{}.part", resumed.job_id),
        "the same job was resumed"
    );
    let downloads = fake.requests()[mark..]
        .iter()
        .filter(|r| r.endpoint == Endpoint::Download)
        .count();
    assert_eq!(
        downloads,
        resumed.files.len() - kept,
        "only the files not complete were downloaded again"
    );
    assert!(downloading(&table).is_empty(), "no download left behind");
    windows.push(jsonl_window(&fake, cwd, resumed, "window3").await);

    // /status and /metrics as for a database.
    let watermark = jobs[3].1.watermark().unwrap();
    let (code, _, body) = get(addr, "/status").await;
    assert_eq!(code, 200, "{body}");
    let status: Value = serde_json::from_str(&body).unwrap();
    let row = status["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "courses")
        .unwrap_or_else(|| panic!("{body}"))
        .clone();
    let synced: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(row["synced_until"].clone()).unwrap();
    assert_eq!(synced, watermark, "{body}");
    let (code, _, metrics) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("dapsync_table_schema_version{")
                && l.contains("table=\"courses\"")),
        "{metrics}"
    );
    daemon.terminate().await;

    // `dapsync status` reads the directory.
    let mut env = fake_env(&fake);
    env.push(("DAP_CONNECTION_STRING".into(), url.clone()));
    let run = dapsync(cwd, &env, &["status", "--json"]).await;
    let rows: Value = serde_json::from_str(run.success()).unwrap();
    assert_eq!(rows[0]["table"], "courses", "{rows}");
    assert_eq!(rows[0]["state"], "ok", "{rows}");
    let synced: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(rows[0]["synced_until"].clone()).unwrap();
    assert_eq!(synced, watermark);

    // The chain: a snapshot, then incrementals each starting where the previous one ended;
    // each job's files hold what the same window holds as JSON Lines; applied in order, they
    // equal the fake's rows.
    assert_eq!(jobs[0].1.kind, Kind::Snapshot);
    let mut copy = BTreeMap::new();
    let mut previous = None;
    assert_eq!(jobs.len(), windows.len());
    for ((folder, manifest), records) in jobs.iter().zip(&windows) {
        assert_eq!(manifest.format.name(), format);
        assert!(folder.join("_schema.json").exists());
        assert!(!folder.join("manifest.json").exists());
        if manifest.kind == Kind::Incremental {
            assert_eq!(manifest.since, previous, "each since is the last watermark");
        }
        check_folder(folder, manifest, records).await;
        apply(&mut copy, records);
        previous = manifest.watermark();
    }
    assert_eq!(copy, truth(&fake, "courses"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_keeps_a_chain_of_jsonl_files() {
    the_daemon_keeps_a_chain_of_files("jsonl").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_keeps_a_chain_of_tsv_files() {
    the_daemon_keeps_a_chain_of_files("tsv").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_keeps_a_chain_of_csv_files() {
    the_daemon_keeps_a_chain_of_files("csv").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_keeps_a_chain_of_parquet_files() {
    the_daemon_keeps_a_chain_of_files("parquet").await;
}
