//! The files destination (`database.url = "files:///path/to/dir?format=parquet"`): each table
//! kept as a chain of exported jobs, the state in the directory itself.
//!
//! ```text
//! DIR/<namespace>/<table>/
//!   .lock                       flock: one writer of the table at a time
//!   .status.json                the last success and the last failures (for `status`)
//!   generation=1/               the current chain: a snapshot, then each incremental
//!     job_<id>/                 the job's files, as `dapsync snapshot` writes them, with
//!       _manifest.json          its manifest (named so that lake engines skip it), and
//!       _schema.json            the schema its records follow (`{"schema", "version"}`)
//!     .job_<id>.part/           a job still downloading (resumed by the next run)
//!   generation=2/               a new snapshot's chain; the older generation is removed once
//!                               its snapshot is complete
//! ```
//!
//! A job folder counts only under its final name, which it gets by a rename once every file and
//! its manifest are written; so a crash leaves the chain as it was, and the next run resumes (the
//! API answers the same query with the same job) or redoes the job.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use futures_util::future::BoxFuture;

use super::{
    Commit, Destination, DestinationError, Guard, Intake, Load, LoadStats, NewRun, ObjectLoad,
    ObjectWarning, Release, Result, RunError, RunResult, RunTimes, TableState, TableStatus,
};
use crate::config::{FileFormat, FilesTarget};
use crate::dap::{CompleteJob, DapClient, JobKind};
use crate::export::{ExportError, ExportOptions, Kind, MANIFEST, Manifest, chain_named, save_job};
use crate::schema::{SchemaError, TableSchema};
use crate::table::TableId;

/// The lock file of a table's folder.
const LOCK: &str = ".lock";
/// The status file of a table's folder.
const STATUS: &str = ".status.json";
/// A generation's folder name: this, then its number.
const GENERATION: &str = "generation=";
/// The schema file of a job folder.
const SCHEMA: &str = "_schema.json";
/// The manifest of a job folder in the chain: `manifest.json` renamed, so that data lake
/// engines that read every file of a folder (Athena, Hive) skip it.
pub const CHAIN_MANIFEST: &str = "_manifest.json";

/// Why the files destination failed.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("{table}: {reason}")]
    State { table: TableId, reason: String },
}

impl From<FilesError> for DestinationError {
    fn from(error: FilesError) -> Self {
        match error {
            FilesError::Io { context, source }
            | FilesError::Export(ExportError::Io { context, source }) => {
                DestinationError::Io { context, source }
            }
            FilesError::Export(ExportError::Dap(source)) => DestinationError::Dap(source),
            FilesError::Export(other) => DestinationError::State(crate::error::chain(&other)),
            FilesError::Schema(source) => DestinationError::Schema(source),
            FilesError::State { table, reason } => {
                DestinationError::State(format!("{table}: {reason}"))
            }
        }
    }
}

fn io_error(path: &Path, doing: &str) -> impl FnOnce(io::Error) -> FilesError {
    let context = format!("{doing} {}", path.display());
    move |source| FilesError::Io { context, source }
}

/// A directory that keeps tables as chains of exported jobs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Files {
    root: PathBuf,
    format: FileFormat,
    runs: std::sync::Arc<AtomicI64>,
}

/// A table's current chain.
#[derive(Debug, Clone, PartialEq)]
pub struct Chain {
    /// The generation's number.
    pub generation: u64,
    /// The generation's folder.
    pub folder: PathBuf,
    /// Its complete jobs, oldest first: a snapshot, then incrementals.
    pub jobs: Vec<(PathBuf, Manifest)>,
}

impl Chain {
    /// Where the next incremental starts: the newest job's `at` or `until`.
    pub fn watermark(&self) -> Option<DateTime<Utc>> {
        self.jobs.last().and_then(|(_, m)| m.watermark())
    }

    /// The schema the newest job's records follow.
    pub fn schema(&self, id: &TableId) -> Result<TableSchema, FilesError> {
        let (folder, manifest) = self.jobs.last().ok_or_else(|| FilesError::State {
            table: id.clone(),
            reason: "the chain has no job".into(),
        })?;
        read_schema(folder, id, manifest.schema_version)
    }
}

/// What a table's `.status.json` keeps: what the chain itself cannot say.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct StatusFile {
    last_success_at: Option<DateTime<Utc>>,
    last_error_type: Option<String>,
    last_error_uuid: Option<String>,
    last_error_message: Option<String>,
    last_error_at: Option<DateTime<Utc>>,
    consecutive_failures: i64,
}

/// A held table lock: an exclusive flock on the table's `.lock`, let go when dropped (and when
/// the process dies).
#[derive(Debug)]
pub struct FilesLock(File);

impl FilesLock {
    /// Lets the lock go.
    pub fn release(self) {
        let _ = self.0.unlock();
    }
}

impl Files {
    /// The destination a `files://` URL names.
    pub fn new(target: &FilesTarget) -> Self {
        Self {
            root: target.directory.clone(),
            format: target.format,
            runs: std::sync::Arc::default(),
        }
    }

    /// The format jobs are asked for.
    pub fn format(&self) -> FileFormat {
        self.format
    }

    /// The folder of a table.
    pub fn table_folder(&self, id: &TableId) -> PathBuf {
        self.root.join(&id.namespace).join(&id.table)
    }

    /// Whether the directory is there and can be written to (it is created if missing).
    pub fn check(&self) -> Result<(), FilesError> {
        std::fs::create_dir_all(&self.root).map_err(io_error(&self.root, "creating"))?;
        let probe = self.root.join(".dapsync-probe");
        std::fs::write(&probe, b"").map_err(io_error(&self.root, "writing to"))?;
        std::fs::remove_file(&probe).map_err(io_error(&self.root, "writing to"))
    }

    /// Takes the table's lock if nobody holds it; `None` if another process (or run) holds it.
    pub fn try_lock(&self, id: &TableId) -> Result<Option<FilesLock>, FilesError> {
        let folder = self.table_folder(id);
        std::fs::create_dir_all(&folder).map_err(io_error(&folder, "creating"))?;
        let path = folder.join(LOCK);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error(&path, "opening"))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(FilesLock(file))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(source)) => Err(FilesError::Io {
                context: format!("locking {}", path.display()),
                source,
            }),
        }
    }

    /// A new run id, unique within this process (the files destination keeps no run history).
    pub fn next_run_id(&self) -> i64 {
        self.runs.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The table's current chain: the newest generation whose snapshot is complete.
    pub fn chain(&self, id: &TableId) -> Result<Option<Chain>, FilesError> {
        let folder = self.table_folder(id);
        for (generation, path) in generations(&folder)?.into_iter().rev() {
            let jobs = jobs_of(&path, id)?;
            if jobs.first().is_some_and(|(_, m)| m.kind == Kind::Snapshot) {
                return Ok(Some(Chain {
                    generation,
                    folder: path,
                    jobs,
                }));
            }
        }
        Ok(None)
    }

    /// Clears what crashed runs left (under the lock): the generations older than the current
    /// one, whose removal a crash cut short. Jobs still downloading are kept for the next run.
    pub fn recover(&self, id: &TableId) -> Result<(), FilesError> {
        if let Some(chain) = self.chain(id)? {
            remove_generations_before(&self.table_folder(id), chain.generation)?;
        }
        Ok(())
    }

    /// Where a new job of the table goes: the current generation for an incremental; for a
    /// snapshot, a new generation (or the one an interrupted snapshot started, to resume it).
    pub fn generation_for(
        &self,
        id: &TableId,
        snapshot: bool,
    ) -> Result<(u64, PathBuf), FilesError> {
        let folder = self.table_folder(id);
        let current = self.chain(id)?;
        if !snapshot {
            return current
                .map(|chain| (chain.generation, chain.folder))
                .ok_or_else(|| FilesError::State {
                    table: id.clone(),
                    reason: "no complete snapshot to continue".into(),
                });
        }
        let newest = generations(&folder)?.pop();
        let current = current.map(|chain| chain.generation);
        let generation = match newest {
            Some((newest, _)) if current.is_none_or(|c| newest > c) => newest,
            Some((newest, _)) => newest + 1,
            None => 1,
        };
        Ok((generation, folder.join(format!("{GENERATION}{generation}"))))
    }

    /// Downloads a job into `generation`'s folder under a temporary name, resuming what an
    /// earlier run left there, with the schema its records follow. Returns the bytes of its
    /// files.
    pub async fn save(
        &self,
        dap: &DapClient,
        job: &CompleteJob,
        generation: &Path,
        schema: &TableSchema,
    ) -> Result<u64, FilesError> {
        let id = schema.id();
        let part = generation.join(format!(".job_{}.part", job.id));
        // A crash between the two renames of `commit`: the job is complete.
        let renamed = part.join(CHAIN_MANIFEST);
        if renamed.exists() {
            std::fs::rename(&renamed, part.join(MANIFEST))
                .map_err(io_error(&renamed, "renaming"))?;
        }
        let options = ExportOptions {
            directory: generation.to_path_buf(),
            format: self.format,
            decompress: false,
            progress_bar: false,
        };
        let exported = save_job(dap, &id.namespace, &id.table, job, &part, &options).await?;
        let envelope = serde_json::json!({
            "schema": schema.json,
            "version": schema.version,
        });
        let text = serde_json::to_vec_pretty(&envelope).map_err(io::Error::other);
        let path = part.join(SCHEMA);
        text.and_then(|text| std::fs::write(&path, text))
            .map_err(io_error(&path, "writing"))?;
        Ok(exported.manifest.bytes())
    }

    /// Makes a saved job part of the chain: its folder renamed to `job_<id>`, synced; other
    /// jobs' leftovers in the generation removed; after a snapshot, the older generations
    /// removed. Records the success in the table's status file.
    pub fn commit(
        &self,
        id: &TableId,
        job: &CompleteJob,
        generation: &Path,
    ) -> Result<(), FilesError> {
        let part = generation.join(format!(".job_{}.part", job.id));
        let done = generation.join(format!("job_{}", job.id));
        // An incremental that found no new commit does not move the chain: nothing to keep.
        let empty = matches!(job.kind, JobKind::Incremental { since, until } if until <= since);
        if empty {
            std::fs::remove_dir_all(&part).map_err(io_error(&part, "removing"))?;
        } else if !done.exists() {
            let manifest = part.join(MANIFEST);
            std::fs::rename(&manifest, part.join(CHAIN_MANIFEST))
                .map_err(io_error(&manifest, "renaming"))?;
            std::fs::rename(&part, &done).map_err(io_error(&part, "renaming"))?;
            sync_dir(generation)?;
        }
        for entry in read_dir(generation)? {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".job_") && name.ends_with(".part") {
                let path = entry.path();
                std::fs::remove_dir_all(&path).map_err(io_error(&path, "removing"))?;
            }
        }
        let folder = self.table_folder(id);
        if let Some(number) = generation_number(generation) {
            let manifest = std::fs::read(done.join(CHAIN_MANIFEST)).ok();
            let snapshot = manifest
                .and_then(|text| serde_json::from_slice::<Manifest>(&text).ok())
                .is_some_and(|m| m.kind == Kind::Snapshot);
            if snapshot {
                remove_generations_before(&folder, number)?;
            }
        }
        self.write_status(id, |status| {
            *status = StatusFile {
                last_success_at: Some(Utc::now()),
                ..StatusFile::default()
            }
        })
    }

    /// Records a failed run in the table's status file.
    pub fn record_failure(&self, id: &TableId, error: &RunError) -> Result<(), FilesError> {
        self.write_status(id, |status| {
            status.last_error_type = Some(error.error_type.clone());
            status.last_error_uuid = error.uuid.clone();
            status.last_error_message = Some(error.message.clone());
            status.last_error_at = Some(Utc::now());
            status.consecutive_failures += 1;
        })
    }

    fn write_status(
        &self,
        id: &TableId,
        change: impl FnOnce(&mut StatusFile),
    ) -> Result<(), FilesError> {
        let folder = self.table_folder(id);
        std::fs::create_dir_all(&folder).map_err(io_error(&folder, "creating"))?;
        let path = folder.join(STATUS);
        let mut status = read_status(&folder);
        change(&mut status);
        let temporary = folder.join(format!("{STATUS}.tmp"));
        let text = serde_json::to_vec_pretty(&status).map_err(io::Error::other);
        text.and_then(|text| std::fs::write(&temporary, text))
            .and_then(|()| std::fs::rename(&temporary, &path))
            .map_err(io_error(&path, "writing"))
    }

    /// Removes a table's folder: its chain, status and lock file (the caller holds the lock).
    pub fn drop_table(&self, id: &TableId) -> Result<(), FilesError> {
        let folder = self.table_folder(id);
        for entry in read_dir(&folder)? {
            let path = entry.path();
            if entry.file_name() == LOCK {
                continue;
            }
            let removed = match path.is_dir() {
                true => std::fs::remove_dir_all(&path),
                false => std::fs::remove_file(&path),
            };
            removed.map_err(io_error(&path, "removing"))?;
        }
        Ok(())
    }

    /// Every table the directory holds, with its state: from its chain's manifests and its
    /// status file.
    pub fn table_statuses(&self) -> Result<Vec<TableStatus>, FilesError> {
        let mut statuses = Vec::new();
        for namespace in read_dir(&self.root)? {
            if !namespace.path().is_dir() || is_hidden(&namespace.file_name()) {
                continue;
            }
            for table in read_dir(&namespace.path())? {
                let folder = table.path();
                if !folder.is_dir() || is_hidden(&table.file_name()) {
                    continue;
                }
                let id = TableId::new(
                    namespace.file_name().to_string_lossy(),
                    table.file_name().to_string_lossy(),
                );
                let chain = self.chain(&id)?;
                let status = read_status(&folder);
                if chain.is_none() && status == StatusFile::default() {
                    continue;
                }
                let newest = chain.as_ref().and_then(|c| c.jobs.last());
                statuses.push(TableStatus {
                    synced_until: chain.as_ref().and_then(Chain::watermark),
                    schema_version: newest.map(|(_, m)| m.schema_version),
                    row_count: None,
                    last_success_at: status.last_success_at,
                    last_error_type: status.last_error_type,
                    last_error_uuid: status.last_error_uuid,
                    last_error_message: status.last_error_message,
                    last_error_at: status.last_error_at,
                    consecutive_failures: status.consecutive_failures,
                    paused_at: None,
                    namespace: id.namespace,
                    table: id.table,
                });
            }
        }
        statuses.sort_by(|a, b| (&a.namespace, &a.table).cmp(&(&b.namespace, &b.table)));
        Ok(statuses)
    }
}

impl Destination for Files {
    fn intake(&self) -> Intake {
        Intake::Objects(self.format())
    }

    fn lock<'a>(&'a self, id: &'a TableId) -> BoxFuture<'a, Result<Option<Guard>>> {
        Box::pin(async move { Ok(self.try_lock(id)?.map(Guard::new)) })
    }

    fn recover<'a>(&'a self, id: &'a TableId) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { Ok(Files::recover(self, id)?) })
    }

    fn state<'a>(&'a self, id: &'a TableId) -> BoxFuture<'a, Result<Option<TableState>>> {
        Box::pin(async move {
            let Some(chain) = self.chain(id)? else {
                return Ok(None);
            };
            let (Some(since), schema) = (chain.watermark(), chain.schema(id)?) else {
                return Ok(None);
            };
            Ok(Some(TableState {
                since,
                stored: schema.clone(),
                live: schema,
                last_success_at: read_status(&self.table_folder(id)).last_success_at,
            }))
        })
    }

    fn table_exists<'a>(&'a self, id: &'a TableId) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { Ok(self.chain(id)?.is_some()) })
    }

    fn start_run<'a>(&'a self, _run: &'a NewRun<'a>) -> BoxFuture<'a, Result<i64>> {
        Box::pin(async move { Ok(self.next_run_id()) })
    }

    fn fail_run<'a>(
        &'a self,
        _run_id: i64,
        id: &'a TableId,
        _result: &'a RunResult,
        error: &'a RunError,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { Ok(self.record_failure(id, error)?) })
    }

    fn record_run_times(&self, _run_id: i64, _times: RunTimes) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn run_warnings(&self, _run_id: i64) -> BoxFuture<'_, Result<Vec<ObjectWarning>>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Each job keeps the schema its records follow (`schema.json`): nothing to change.
    fn evolve<'a>(
        &'a self,
        _old: &'a TableSchema,
        _new: &'a TableSchema,
        _run_id: i64,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async { Ok(true) })
    }

    fn begin_snapshot(
        &self,
        schema: TableSchema,
        _run_id: i64,
        _repeated_keys: bool,
    ) -> BoxFuture<'_, Result<Load>> {
        Box::pin(async move { Ok(self.load(schema, true)?) })
    }

    fn begin_changes<'a>(
        &'a self,
        schema: TableSchema,
        _previous: Option<&'a TableSchema>,
        _run_id: i64,
    ) -> BoxFuture<'a, Result<Load>> {
        Box::pin(async move { Ok(self.load(schema, false)?) })
    }

    fn drop_table<'a>(&'a self, id: &'a TableId) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { Ok(Files::drop_table(self, id)?) })
    }

    fn table_statuses(&self) -> BoxFuture<'_, Result<Vec<TableStatus>>> {
        Box::pin(async move { Ok(Files::table_statuses(self)?) })
    }

    fn ping(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { Ok(self.check()?) })
    }
}

impl Files {
    /// A load of one job into the table's chain.
    fn load(&self, schema: TableSchema, snapshot: bool) -> Result<Load, FilesError> {
        let (_, generation) = self.generation_for(&schema.id(), snapshot)?;
        Ok(Load::Objects(Box::new(FilesLoad {
            files: self.clone(),
            schema,
            generation,
            job: None,
        })))
    }
}

impl Release for FilesLock {
    fn release(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move { FilesLock::release(*self) })
    }
}

/// One job on its way into a table's chain.
struct FilesLoad {
    files: Files,
    schema: TableSchema,
    generation: PathBuf,
    job: Option<CompleteJob>,
}

impl ObjectLoad for FilesLoad {
    fn save<'a>(
        &'a mut self,
        dap: &'a DapClient,
        job: &'a CompleteJob,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let bytes = self
                .files
                .save(dap, job, &self.generation, &self.schema)
                .await?;
            self.job = Some(job.clone());
            Ok(bytes)
        })
    }

    fn commit(self: Box<Self>, _commit: Commit) -> BoxFuture<'static, Result<LoadStats>> {
        Box::pin(async move {
            let id = self.schema.id();
            let job = self.job.ok_or_else(|| FilesError::State {
                table: id.clone(),
                reason: "a job is committed before it was saved".into(),
            })?;
            self.files.commit(&id, &job, &self.generation)?;
            Ok(LoadStats::default())
        })
    }

    /// What was saved stays under its temporary name, for the next run to resume.
    fn abort(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// The generations in a table's folder, oldest first.
fn generations(folder: &Path) -> Result<Vec<(u64, PathBuf)>, FilesError> {
    let mut found: Vec<(u64, PathBuf)> = read_dir(folder)?
        .into_iter()
        .map(|entry| entry.path())
        .filter_map(|path| Some((generation_number(&path)?, path)))
        .filter(|(_, path)| path.is_dir())
        .collect();
    found.sort();
    Ok(found)
}

fn generation_number(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_prefix(GENERATION)?
        .parse()
        .ok()
}

/// The complete jobs of a generation, oldest first; folders under other names (a job still
/// downloading) are not part of it.
fn jobs_of(generation: &Path, id: &TableId) -> Result<Vec<(PathBuf, Manifest)>, FilesError> {
    let jobs = chain_named(generation, &id.namespace, &id.table, CHAIN_MANIFEST)
        .map_err(io_error(generation, "reading"))?;
    Ok(jobs
        .into_iter()
        .filter(|(folder, _)| {
            folder
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("job_"))
        })
        .collect())
}

fn remove_generations_before(folder: &Path, current: u64) -> Result<(), FilesError> {
    for (number, path) in generations(folder)? {
        if number < current {
            tracing::info!(folder = %path.display(), "removing the chain a new snapshot replaced");
            std::fs::remove_dir_all(&path).map_err(io_error(&path, "removing"))?;
        }
    }
    Ok(())
}

fn read_schema(folder: &Path, id: &TableId, version: i64) -> Result<TableSchema, FilesError> {
    let path = folder.join(SCHEMA);
    let text = std::fs::read(&path).map_err(io_error(&path, "reading"))?;
    let envelope: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| FilesError::State {
            table: id.clone(),
            reason: format!("{} is not JSON: {e}", path.display()),
        })?;
    let schema = TableSchema::from_envelope(&id.namespace, &id.table, &envelope)?;
    if schema.version != version {
        return Err(FilesError::State {
            table: id.clone(),
            reason: format!(
                "{} is version {}, the manifest says {version}",
                path.display(),
                schema.version
            ),
        });
    }
    Ok(schema)
}

fn read_status(folder: &Path) -> StatusFile {
    std::fs::read(folder.join(STATUS))
        .ok()
        .and_then(|text| serde_json::from_slice(&text).ok())
        .unwrap_or_default()
}

/// The entries of a folder; none when it does not exist.
fn read_dir(folder: &Path) -> Result<Vec<std::fs::DirEntry>, FilesError> {
    match std::fs::read_dir(folder) {
        Ok(entries) => entries
            .collect::<io::Result<Vec<_>>>()
            .map_err(io_error(folder, "reading")),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(io_error(folder, "reading")(error)),
    }
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.to_string_lossy().starts_with('.')
}

/// Makes a rename in `folder` durable.
fn sync_dir(folder: &Path) -> Result<(), FilesError> {
    File::open(folder)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error(folder, "syncing"))
}
