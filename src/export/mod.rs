//! DAP results kept as files: each job's objects in a folder `job_<job id>/`, named and compressed
//! as the API serves them, with a `manifest.json` (the file commands `dapsync snapshot` and
//! `dapsync incremental`, which the official `dap` client also has).
//!
//! Better than the official client: an object appears under its name only when complete (checked
//! and renamed from `.part`); the same command run again after an interruption keeps the objects
//! already complete (checked by size against the partial manifest) and downloads the rest; and
//! `--since last` continues a table's chain from its newest manifest.

mod manifest;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use futures_util::{StreamExt, stream};
use tracing::info;

use crate::dap::{CompleteJob, DapClient, DapError, FileQuery, Format, object_file_name};

pub use manifest::{FileEntry, Kind, MANIFEST, Manifest, chain, chain_named};

/// Objects whose URLs are asked for at once, right before they are downloaded (the URLs last
/// about 15 minutes).
const URL_BATCH: usize = 16;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Dap(#[from] DapError),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "--since last: no complete manifest of {namespace}.{table} in {directory}; run `dapsync snapshot` (or an incremental with a timestamp) there first"
    )]
    NoChain {
        namespace: String,
        table: String,
        directory: String,
    },
}

/// Where a table's export starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// This instant (inclusive).
    At(DateTime<Utc>),
    /// Where the newest complete manifest of the table in the output directory ends.
    Last,
}

/// What to ask of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Every live row.
    Snapshot,
    /// Every change from `since` to `until` (default: the latest commit).
    Incremental {
        since: Since,
        until: Option<DateTime<Utc>>,
    },
}

/// How to write a job's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    /// Job folders go here.
    pub directory: PathBuf,
    /// The format asked of the API.
    pub format: Format,
    /// Write gzip objects decompressed (refused for Parquet by the command line).
    pub decompress: bool,
    /// Draw a progress line on stderr.
    pub progress_bar: bool,
}

/// What one export wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    /// The job folder.
    pub folder: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// Files downloaded by this run (the others were complete already).
    pub downloaded: usize,
}

/// Runs a query of one table and saves its objects in `DIR/job_<job id>/` (see [`save_job`]).
pub async fn export_table(
    dap: &DapClient,
    namespace: &str,
    table: &str,
    window: Window,
    options: &ExportOptions,
) -> Result<Exported, ExportError> {
    let (since, until) = match window {
        Window::Snapshot => (None, None),
        Window::Incremental { since, until } => {
            let since = match since {
                Since::At(at) => at,
                Since::Last => last_watermark(&options.directory, namespace, table)?,
            };
            (Some(since), until)
        }
    };
    let query = FileQuery {
        format: options.format,
        since,
        until,
    };
    let job = dap.query_files(namespace, table, &query).await?;
    let folder = options.directory.join(format!("job_{}", job.id));
    save_job(dap, namespace, table, &job, &folder, options).await
}

/// Saves a job's objects in `folder` with its manifest, resuming what an earlier run left there
/// (the objects the partial manifest lists, still their size on disk, are kept).
pub async fn save_job(
    dap: &DapClient,
    namespace: &str,
    table: &str,
    job: &CompleteJob,
    folder: &Path,
    options: &ExportOptions,
) -> Result<Exported, ExportError> {
    let folder = folder.to_path_buf();
    tokio::fs::create_dir_all(&folder)
        .await
        .map_err(|source| io_error(&folder, "creating", source))?;
    let fresh = Manifest::new(namespace, table, job, options.format, options.decompress);
    let earlier = manifest::read_progress(&folder).filter(|m| m.same_download(&fresh));
    let kept: Vec<FileEntry> = earlier
        .map(|m| m.files)
        .unwrap_or_default()
        .into_iter()
        .filter(|file| {
            let size = std::fs::metadata(folder.join(&file.name)).map(|m| m.len());
            size.is_ok_and(|size| size == file.bytes)
        })
        .collect();
    let missing: Vec<_> = job
        .objects
        .iter()
        .filter(|object| !kept.iter().any(|file| file.object_id == object.id))
        .cloned()
        .collect();
    info!(namespace, table, job_id = %job.id, objects = job.objects.len(), kept = kept.len(), "exporting");
    let progress = Progress::new(
        format!("{namespace}.{table}"),
        job.objects.len(),
        kept.len(),
        options.progress_bar,
    );
    let state = tokio::sync::Mutex::new(Manifest {
        files: kept,
        ..fresh
    });
    let concurrency = dap.download_concurrency();
    for batch in missing.chunks(URL_BATCH) {
        let urls = dap.resolve_urls(batch).await?;
        // Owned objects: the future stays `Send` for any caller (a boxed destination load too).
        let saves = batch.iter().cloned().map(|object| {
            let url = urls.get(&object.id).cloned().unwrap_or_default();
            let name = object_file_name(&object, &url);
            let name = match (
                options.decompress && options.format.is_gzip(),
                name.strip_suffix(".gz"),
            ) {
                (true, Some(plain)) => plain.to_owned(),
                _ => name,
            };
            let (folder, progress, state) = (&folder, &progress, &state);
            async move {
                let path = folder.join(&name);
                let on_bytes = |bytes| progress.received(bytes);
                let bytes = dap
                    .save_object(
                        &object,
                        url,
                        &path,
                        options.format,
                        options.decompress,
                        &on_bytes,
                    )
                    .await?;
                progress.object_done();
                // Held while writing: one writer of the partial manifest at a time.
                let mut state = state.lock().await;
                state.files.push(FileEntry {
                    name,
                    bytes,
                    object_id: object.id.clone(),
                });
                manifest::write_partial(folder, &state)
                    .await
                    .map_err(|source| io_error(folder, "writing the partial manifest in", source))
            }
        });
        let mut saves = stream::iter(saves).buffer_unordered(concurrency);
        while let Some(result) = saves.next().await {
            result?;
        }
    }
    progress.finish();
    let mut manifest = state.into_inner();
    let order = |file: &FileEntry| job.objects.iter().position(|o| o.id == file.object_id);
    manifest.files.sort_by_key(order);
    manifest::write_complete(&folder, &manifest)
        .await
        .map_err(|source| io_error(&folder, "writing the manifest in", source))?;
    Ok(Exported {
        folder,
        downloaded: missing.len(),
        manifest,
    })
}

/// The watermark of the newest complete manifest of a table in `directory`.
fn last_watermark(
    directory: &Path,
    namespace: &str,
    table: &str,
) -> Result<DateTime<Utc>, ExportError> {
    let chain = chain(directory, namespace, table)
        .map_err(|source| io_error(directory, "reading", source))?;
    chain
        .last()
        .and_then(|(_, manifest)| manifest.watermark())
        .ok_or_else(|| ExportError::NoChain {
            namespace: namespace.to_owned(),
            table: table.to_owned(),
            directory: directory.display().to_string(),
        })
}

fn io_error(path: &Path, doing: &str, source: std::io::Error) -> ExportError {
    ExportError::Io {
        context: format!("{doing} {}", path.display()),
        source,
    }
}

/// A line on stderr, rewritten in place: objects done and megabytes received.
#[derive(Debug)]
struct Progress {
    label: String,
    objects: usize,
    done: std::sync::atomic::AtomicUsize,
    bytes: std::sync::atomic::AtomicU64,
    last_drawn: Mutex<Option<std::time::Instant>>,
    enabled: bool,
}

impl Progress {
    fn new(label: String, objects: usize, done: usize, enabled: bool) -> Self {
        Self {
            label,
            objects,
            done: done.into(),
            bytes: 0.into(),
            last_drawn: Mutex::new(None),
            enabled,
        }
    }

    fn received(&self, bytes: u64) {
        self.bytes
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        self.draw(false);
    }

    fn object_done(&self) {
        self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.draw(true);
    }

    fn draw(&self, now: bool) {
        if !self.enabled {
            return;
        }
        let mut last = self.last_drawn.lock().unwrap_or_else(|e| e.into_inner());
        if !now && last.is_some_and(|t| t.elapsed() < std::time::Duration::from_millis(200)) {
            return;
        }
        *last = Some(std::time::Instant::now());
        let done = self.done.load(std::sync::atomic::Ordering::Relaxed);
        let megabytes = self.bytes.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6;
        eprint!(
            "\r\x1b[2K{}: {done}/{} objects, {megabytes:.1} MB",
            self.label, self.objects
        );
    }

    fn finish(&self) {
        if self.enabled {
            self.draw(true);
            eprintln!();
        }
    }
}
