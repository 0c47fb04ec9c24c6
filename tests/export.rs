//! The file commands `dapsync snapshot` and `dapsync incremental`, as a user runs them: the real
//! binary against the fake DAP server, every format read back and compared with the fake's
//! rows, resumed downloads, and `--since last` chains applied in order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use dapsync::export::{Kind, MANIFEST, Manifest, chain};
use dapsync::fake::{Changes, Endpoint, FakeDap, FakeDapConfig, FakeTable, Fault};
use serde_json::Value;

use crate::formats::read::{
    Expected, check_parquet, check_text, gunzip, read_csv, read_parquet, read_tsv,
};

/// What a finished `dapsync` process left.
pub(crate) struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub(crate) fn success(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        &self.stdout
    }
}

/// The official client's variables for the fake, and quick polling and retries.
pub(crate) fn fake_env(fake: &FakeDap) -> Vec<(String, String)> {
    [
        ("DAP_API_URL", fake.base_url()),
        ("DAP_CLIENT_ID", fake.client_id()),
        ("DAP_CLIENT_SECRET", fake.client_secret().expose()),
        ("DAPSYNC_DAP__QUERIES_PER_MINUTE", "1000"),
        ("DAPSYNC_DAP__MAX_ATTEMPTS", "2"),
        ("DAPSYNC_DAP__INITIAL_BACKOFF", "5ms"),
        ("DAPSYNC_DAP__MAX_BACKOFF", "20ms"),
        ("DAPSYNC_DAP__JOB_POLL_INITIAL", "5ms"),
        ("DAPSYNC_DAP__JOB_POLL_MAX", "20ms"),
        ("DAPSYNC_LOG__LEVEL", "warn"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Runs the binary in `cwd` with a clean environment plus `env`.
pub(crate) async fn dapsync(cwd: &Path, env: &[(String, String)], args: &[&str]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_dapsync"));
    command
        .env_clear()
        .current_dir(cwd)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)));
    let output = command.output().await.unwrap();
    Run {
        code: output.status.code().expect("dapsync exited by a signal"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A fake serving `tables` (name, rows), 3 records per object, jobs complete at once.
async fn fake(tables: &[(&str, u64)]) -> FakeDap {
    FakeDap::start(FakeDapConfig {
        tables: tables
            .iter()
            .map(|(table, rows)| FakeTable {
                rows_per_object: Some(3),
                ..FakeTable::new("canvas", *table, *rows)
            })
            .collect(),
        fixture_rows: None,
        job_polls: 0,
        ..FakeDapConfig::default()
    })
    .await
    .unwrap()
}

pub(crate) fn round() -> Changes {
    Changes {
        updates: 3,
        inserts: 2,
        deletes: 1,
        inserted_then_deleted: 1,
    }
}

/// The complete job folders of `table` in `dir`, oldest first.
fn folders(dir: &Path, table: &str) -> Vec<(PathBuf, Manifest)> {
    chain(dir, "canvas", table).unwrap()
}

/// The files of a job folder, in the manifest's order, checked against the manifest's sizes.
fn files(folder: &Path, manifest: &Manifest) -> Vec<(String, Bytes)> {
    manifest
        .files
        .iter()
        .map(|file| {
            let bytes = Bytes::from(std::fs::read(folder.join(&file.name)).unwrap());
            assert_eq!(bytes.len() as u64, file.bytes, "{}", file.name);
            (file.name.clone(), bytes)
        })
        .collect()
}

/// The JSON Lines records of a job folder (gzip or not).
pub(crate) fn jsonl_records(folder: &Path, manifest: &Manifest) -> Vec<Value> {
    files(folder, manifest)
        .iter()
        .flat_map(|(_, bytes)| {
            let text = if manifest.decompressed {
                String::from_utf8(bytes.to_vec()).unwrap()
            } else {
                gunzip(bytes)
            };
            text.lines()
                .map(|line| serde_json::from_str::<Value>(line).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The records a result should hold, from the JSON Lines result of the same job window.
fn expected_from(records: &[Value]) -> Vec<Expected> {
    records
        .iter()
        .map(|record| Expected {
            key: record["key"].as_object().unwrap().clone(),
            value: record.get("value").and_then(Value::as_object).cloned(),
            action: record["meta"]["action"].as_str().map(str::to_owned),
            ts: record["meta"]["ts"].as_str().unwrap().to_owned(),
        })
        .collect()
}

/// The fake's current rows of a table, by key.
pub(crate) fn truth(fake: &FakeDap, table: &str) -> BTreeMap<String, Value> {
    fake.current_rows("canvas", table)
        .into_iter()
        .map(|row| (row["key"].to_string(), row["value"].clone()))
        .collect()
}

/// Applies JSON Lines records to a copy of a table: upsert `U` (or no action), delete `D`.
pub(crate) fn apply(table: &mut BTreeMap<String, Value>, records: &[Value]) {
    for record in records {
        let key = record["key"].to_string();
        if record["meta"]["action"] == "D" {
            table.remove(&key);
        } else {
            table.insert(key, record["value"].clone());
        }
    }
}

/// Checks a folder of any format against the JSON Lines records of the same window.
pub(crate) async fn check_folder(folder: &Path, manifest: &Manifest, truth: &[Value]) {
    let expected = expected_from(truth);
    let incremental = manifest.kind == Kind::Incremental;
    let context = format!("{:?} {:?}", manifest.format, manifest.kind);
    let files = files(folder, manifest);
    let extension = match (manifest.format.name(), manifest.decompressed) {
        ("parquet", _) => "parquet".to_owned(),
        (name, true) => name.to_owned(),
        (name, false) => format!("{name}.gz"),
    };
    for (name, _) in &files {
        assert!(
            name.starts_with("part-") && name.ends_with(&format!(".{extension}")),
            "{context}: {name}"
        );
    }
    let text = |bytes: &Bytes| {
        if manifest.decompressed {
            String::from_utf8(bytes.to_vec()).unwrap()
        } else {
            gunzip(bytes)
        }
    };
    match manifest.format.name() {
        "jsonl" => assert_eq!(jsonl_records(folder, manifest), truth, "{context}"),
        "tsv" | "csv" => {
            let mut header = None;
            let mut rows = Vec::new();
            for (_, bytes) in &files {
                let table = if manifest.format.name() == "tsv" {
                    read_tsv(&text(bytes))
                } else {
                    read_csv(&text(bytes)).await
                };
                assert_eq!(
                    header.get_or_insert_with(|| table.header.clone()),
                    &table.header
                );
                rows.extend(table.rows);
            }
            let table = crate::formats::read::TextTable {
                header: header.unwrap(),
                rows,
            };
            check_text(&table, &expected, incremental, &context);
        }
        _ => {
            let mut all = Vec::new();
            let mut schema = None;
            for (_, bytes) in &files {
                let (file_schema, rows, _) = read_parquet(bytes);
                schema.get_or_insert(file_schema);
                all.extend(rows);
            }
            check_parquet(&schema.unwrap(), &all, &expected, incremental, &context);
        }
    }
}

#[tokio::test]
async fn every_format_reads_back_as_the_fakes_rows_in_snapshots_and_incrementals() {
    let fake = fake(&[("courses", 8)]).await;
    let env = fake_env(&fake);
    let dir = tempfile::tempdir().unwrap();
    let out = |format: &str| dir.path().join(format).display().to_string();
    let formats = ["jsonl", "tsv", "csv", "parquet"];
    let export = |command: &'static str, format: &'static str, extra: Vec<String>| {
        let mut args: Vec<String> = [command, "--namespace", "canvas", "--table", "courses"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        if format != "jsonl" {
            // jsonl is the default format.
            args.extend(["--format".to_owned(), format.to_owned()]);
        }
        args.extend(["--output-directory".to_owned(), out(format)]);
        args.extend(extra);
        let env = env.clone();
        let cwd = dir.path().to_owned();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            dapsync(&cwd, &env, &args).await
        }
    };
    for format in formats {
        let stdout = export("snapshot", format, vec![])
            .await
            .success()
            .to_owned();
        assert!(
            stdout.starts_with("canvas.courses: snapshot at "),
            "{stdout}"
        );
        assert!(stdout.contains("(3 downloaded now)"), "{stdout}");
    }
    let snapshot = |format: &str| folders(Path::new(&out(format)), "courses");
    let (jsonl_folder, jsonl) = snapshot("jsonl").remove(0);
    assert_eq!(jsonl.files.len(), 3);
    let truth_records = jsonl_records(&jsonl_folder, &jsonl);
    let mut copy = BTreeMap::new();
    apply(&mut copy, &truth_records);
    assert_eq!(copy, truth(&fake, "courses"));
    for format in formats {
        let (folder, manifest) = snapshot(format).remove(0);
        assert_eq!(
            folder.file_name().unwrap().to_str().unwrap(),
            format!("job_{}", manifest.job_id)
        );
        assert_eq!((manifest.kind, manifest.at), (Kind::Snapshot, jsonl.at));
        assert_eq!(manifest.format.name(), format);
        check_folder(&folder, &manifest, &truth_records).await;
    }

    fake.advance("canvas", "courses", round());
    for format in formats {
        export("incremental", format, vec!["--since".into(), "last".into()])
            .await
            .success();
    }
    let newest = |format: &str| folders(Path::new(&out(format)), "courses").pop().unwrap();
    let (jsonl_folder, jsonl_incremental) = newest("jsonl");
    assert_eq!(jsonl_incremental.kind, Kind::Incremental);
    assert_eq!(jsonl_incremental.since, jsonl.at);
    let changes = jsonl_records(&jsonl_folder, &jsonl_incremental);
    assert!(changes.iter().any(|r| r["meta"]["action"] == "D"));
    for format in formats {
        let (folder, manifest) = newest(format);
        assert_eq!(manifest.until, jsonl_incremental.until);
        check_folder(&folder, &manifest, &changes).await;
    }
}

#[tokio::test]
async fn since_last_chains_rounds_without_gap_or_overlap_lost() {
    let fake = fake(&[("courses", 10)]).await;
    let env = fake_env(&fake);
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let args = [
        "incremental",
        "--namespace",
        "canvas",
        "--table",
        "courses",
        "--since",
        "last",
    ];
    // No chain yet: nothing to continue from.
    let run = dapsync(cwd, &env, &args).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("no complete manifest of canvas.courses in downloads"),
        "{}",
        run.stdout
    );

    dapsync(
        cwd,
        &env,
        &["snapshot", "--namespace", "canvas", "--table", "courses"],
    )
    .await
    .success();
    for _ in 0..3 {
        fake.advance("canvas", "courses", round());
        let stdout = dapsync(cwd, &env, &args).await.success().to_owned();
        assert!(stdout.contains(": incremental from "), "{stdout}");
    }
    let downloads = cwd.join("downloads");
    let chain = folders(&downloads, "courses");
    assert_eq!(chain.len(), 4);
    assert_eq!(chain[0].1.kind, Kind::Snapshot);
    let mut copy = BTreeMap::new();
    let mut watermark = None;
    for (folder, manifest) in &chain {
        if manifest.kind == Kind::Incremental {
            assert_eq!(
                manifest.since, watermark,
                "each since is the previous watermark"
            );
        }
        watermark = manifest.watermark();
        apply(&mut copy, &jsonl_records(folder, manifest));
    }
    assert_eq!(copy, truth(&fake, "courses"));

    // An explicit window: `since` with an offset, and an `until` (the fake takes one between
    // the latest commit and now).
    let since = chain[1]
        .1
        .since
        .unwrap()
        .with_timezone(&chrono::FixedOffset::east_opt(7200).unwrap());
    let until =
        chrono::DateTime::from_timestamp_micros(chrono::Utc::now().timestamp_micros()).unwrap();
    let since_text = since.to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
    let until_text = until.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let out = cwd.join("window");
    dapsync(
        cwd,
        &env,
        &[
            "incremental",
            "--namespace",
            "canvas",
            "--table",
            "courses",
            "--since",
            &since_text,
            "--until",
            &until_text,
            "--output-directory",
            out.to_str().unwrap(),
        ],
    )
    .await
    .success();
    let (_, manifest) = folders(&out, "courses").remove(0);
    assert_eq!(
        (manifest.since, manifest.until),
        (chain[1].1.since, Some(until))
    );
    let bad = dapsync(
        cwd,
        &env,
        &[
            "incremental",
            "--namespace",
            "canvas",
            "--table",
            "courses",
            "--since",
            "June",
        ],
    )
    .await;
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("--since \"June\""), "{}", bad.stderr);
}

#[tokio::test]
async fn an_interrupted_download_resumes_keeping_complete_objects() {
    let fake = fake(&[("courses", 8)]).await;
    let env = fake_env(&fake);
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let args = ["snapshot", "--namespace", "canvas", "--table", "courses"];
    dapsync(cwd, &env, &args).await.success();
    let (folder, manifest) = folders(&cwd.join("downloads"), "courses").remove(0);
    let whole = files(&folder, &manifest);
    assert_eq!(whole.len(), 3);

    // As a run interrupted after the first object: a partial manifest listing it, the second
    // object's file half written, the third missing.
    let partial = Manifest {
        files: manifest.files[..1].to_vec(),
        ..manifest.clone()
    };
    std::fs::remove_file(folder.join(MANIFEST)).unwrap();
    std::fs::write(
        folder.join("manifest.json.part"),
        serde_json::to_vec(&partial).unwrap(),
    )
    .unwrap();
    std::fs::rename(
        folder.join(&whole[1].0),
        folder.join(format!("{}.part", whole[1].0)),
    )
    .unwrap();
    std::fs::remove_file(folder.join(&whole[2].0)).unwrap();
    fake.clear_requests();
    let stdout = dapsync(cwd, &env, &args).await.success().to_owned();
    assert!(stdout.contains("(2 downloaded now)"), "{stdout}");
    let downloads = fake
        .requests()
        .iter()
        .filter(|r| r.endpoint == Endpoint::Download)
        .count();
    assert_eq!(downloads, 2, "the complete object is kept");
    let (_, resumed) = folders(&cwd.join("downloads"), "courses").remove(0);
    assert_eq!(resumed, manifest);
    assert_eq!(files(&folder, &resumed), whole);
    let mut names: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut expected: Vec<String> = whole.iter().map(|(name, _)| name.clone()).collect();
    expected.push(MANIFEST.to_owned());
    expected.sort();
    assert_eq!(names, expected, "no partial file is left");

    // A file whose size differs from the manifest's is downloaded again.
    std::fs::write(folder.join(&whole[0].0), b"garbage").unwrap();
    fake.clear_requests();
    let stdout = dapsync(cwd, &env, &args).await.success().to_owned();
    assert!(stdout.contains("(1 downloaded now)"), "{stdout}");
    assert_eq!(files(&folder, &manifest), whole);
}

#[tokio::test]
async fn a_failed_download_leaves_no_file_under_its_name_and_cut_bodies_are_retried() {
    let fake = fake(&[("courses", 8)]).await;
    let env = fake_env(&fake);
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    // Every attempt of every object breaks off (2 attempts each).
    fake.inject(Fault::DropConnection, Endpoint::Download, 6);
    let args = ["snapshot", "--namespace", "canvas", "--table", "courses"];
    let run = dapsync(cwd, &env, &args).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains("canvas.courses: FAILED: "),
        "{}",
        run.stdout
    );
    let jobs: Vec<PathBuf> = std::fs::read_dir(cwd.join("downloads"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(jobs.len(), 1);
    let left: Vec<String> = std::fs::read_dir(&jobs[0])
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    // At most unfinished `.part` files, which a new run overwrites.
    assert!(left.iter().all(|name| name.ends_with(".part")), "{left:?}");

    // Bodies cut exactly at a record boundary (gzip) or halfway (Parquet), without
    // Content-Length, are caught by their missing trailer or footer and downloaded again.
    for format in ["jsonl", "parquet"] {
        fake.inject(Fault::CutAtRecordBoundary, Endpoint::Download, 1);
        let out = cwd.join(format!("cut-{format}"));
        let mut args = args.to_vec();
        args.extend([
            "--format",
            format,
            "--output-directory",
            out.to_str().unwrap(),
        ]);
        dapsync(cwd, &env, &args).await.success();
        let (folder, manifest) = folders(&out, "courses").remove(0);
        if format == "jsonl" {
            let mut copy = BTreeMap::new();
            apply(&mut copy, &jsonl_records(&folder, &manifest));
            assert_eq!(copy, truth(&fake, "courses"));
        } else {
            let rows: usize = files(&folder, &manifest)
                .iter()
                .map(|(_, bytes)| read_parquet(bytes).1.len())
                .sum();
            assert_eq!(rows, 8);
        }
    }
}

#[tokio::test]
async fn decompress_writes_plain_text_and_is_refused_for_parquet() {
    let fake = fake(&[("courses", 8)]).await;
    let env = fake_env(&fake);
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let base = ["snapshot", "--namespace", "canvas", "--table", "courses"];
    fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        args
    }
    dapsync(cwd, &env, &with(&base, &["--output-directory", "gz"]))
        .await
        .success();
    let (folder, manifest) = folders(&cwd.join("gz"), "courses").remove(0);
    let truth_records = jsonl_records(&folder, &manifest);
    for format in ["jsonl", "csv", "tsv"] {
        let out = format!("plain-{format}");
        dapsync(
            cwd,
            &env,
            &with(
                &base,
                &[
                    "--format",
                    format,
                    "--decompress",
                    "--output-directory",
                    &out,
                ],
            ),
        )
        .await
        .success();
        let (folder, manifest) = folders(&cwd.join(&out), "courses").remove(0);
        assert!(manifest.decompressed);
        check_folder(&folder, &manifest, &truth_records).await;
    }
    let refused = dapsync(
        cwd,
        &env,
        &with(
            &base,
            &[
                "--format",
                "parquet",
                "--decompress",
                "--output-directory",
                "pq",
            ],
        ),
    )
    .await;
    assert_eq!(refused.code, 2);
    assert!(
        refused.stderr.contains("--decompress"),
        "{}",
        refused.stderr
    );
    assert!(!cwd.join("pq").exists());
}

#[tokio::test]
async fn several_tables_and_all() {
    let fake = fake(&[("courses", 4), ("users", 5), ("accounts", 2)]).await;
    let env = fake_env(&fake);
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let stdout = dapsync(
        cwd,
        &env,
        &[
            "snapshot",
            "--namespace",
            "canvas",
            "--table",
            "courses,users",
            "--output-directory",
            "two",
        ],
    )
    .await
    .success()
    .to_owned();
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    for table in ["courses", "users"] {
        assert_eq!(folders(&cwd.join("two"), table).len(), 1);
    }
    assert!(folders(&cwd.join("two"), "accounts").is_empty());
    dapsync(
        cwd,
        &env,
        &[
            "snapshot",
            "--namespace",
            "canvas",
            "--table",
            "all",
            "--output-directory",
            "every",
        ],
    )
    .await
    .success();
    for table in ["accounts", "courses", "users"] {
        let (_, manifest) = folders(&cwd.join("every"), table).remove(0);
        let rows = fake.current_rows("canvas", table).len();
        assert_eq!(manifest.namespace, "canvas");
        assert_eq!(manifest.files.len(), rows.div_ceil(3).max(1), "{table}");
    }
    let none = dapsync(
        cwd,
        &env,
        &["snapshot", "--namespace", "canvas", "--table", "nope"],
    )
    .await;
    assert_ne!(none.code, 0);
}
