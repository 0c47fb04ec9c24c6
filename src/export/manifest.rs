//! `manifest.json`: what one job folder holds, and the chain of a table's job folders.

use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::dap::{CompleteJob, Format, JobKind};

/// The file name of a job folder's manifest.
pub const MANIFEST: &str = "manifest.json";
/// The manifest of a job folder still being downloaded: the objects complete so far.
const PARTIAL: &str = "manifest.json.part";

/// What a job folder holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The DAP namespace.
    pub namespace: String,
    /// The table.
    pub table: String,
    /// The DAP job whose objects these are.
    pub job_id: String,
    /// `snapshot` or `incremental`.
    pub kind: Kind,
    /// The schema version the records follow.
    pub schema_version: i64,
    /// The table state a snapshot shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// The first instant an incremental covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// The last instant an incremental covers: the next incremental's `since`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// The format the objects were asked for.
    pub format: Format,
    /// Whether the gzip objects were written decompressed.
    pub decompressed: bool,
    /// The files, in the job's order of objects.
    pub files: Vec<FileEntry>,
}

/// What a job covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Every live row as of `at`.
    Snapshot,
    /// Every change from `since` to `until`.
    Incremental,
}

/// One file of a job folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// The file name in the job folder.
    pub name: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// The object it was downloaded from.
    pub object_id: String,
}

impl Manifest {
    /// The manifest of a job with no file yet.
    pub fn new(
        namespace: &str,
        table: &str,
        job: &CompleteJob,
        format: Format,
        decompressed: bool,
    ) -> Self {
        let (kind, at, since, until) = match job.kind {
            JobKind::Snapshot { at } => (Kind::Snapshot, Some(at), None, None),
            JobKind::Incremental { since, until } => {
                (Kind::Incremental, None, Some(since), Some(until))
            }
        };
        Self {
            namespace: namespace.to_owned(),
            table: table.to_owned(),
            job_id: job.id.clone(),
            kind,
            schema_version: job.schema_version,
            at,
            since,
            until,
            format,
            decompressed,
            files: Vec::new(),
        }
    }

    /// The instant the table is current to once this job is applied: `at` or `until`; the
    /// next incremental's `since`.
    pub fn watermark(&self) -> Option<DateTime<Utc>> {
        self.at.or(self.until)
    }

    /// Whether `other` describes the same download (same job, same way of writing it).
    pub fn same_download(&self, other: &Manifest) -> bool {
        (
            &self.namespace,
            &self.table,
            &self.job_id,
            self.format,
            self.decompressed,
        ) == (
            &other.namespace,
            &other.table,
            &other.job_id,
            other.format,
            other.decompressed,
        )
    }

    /// The total size of the files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|file| file.bytes).sum()
    }
}

/// Reads a job folder's manifest: the complete one, else the partial one of an interrupted
/// download; `None` when there is neither or it cannot be read.
pub fn read_progress(folder: &Path) -> Option<Manifest> {
    [MANIFEST, PARTIAL]
        .iter()
        .find_map(|name| read(&folder.join(name)))
}

fn read(path: &Path) -> Option<Manifest> {
    let text = std::fs::read(path).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Writes the manifest of a folder still being downloaded.
pub async fn write_partial(folder: &Path, manifest: &Manifest) -> io::Result<()> {
    write_atomically(&folder.join(PARTIAL), manifest).await
}

/// Writes the manifest of a complete folder, and removes the partial one.
pub async fn write_complete(folder: &Path, manifest: &Manifest) -> io::Result<()> {
    write_atomically(&folder.join(MANIFEST), manifest).await?;
    match tokio::fs::remove_file(folder.join(PARTIAL)).await {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// Writes under a temporary name, syncs, then renames: readers see the old file or the new.
async fn write_atomically(path: &Path, manifest: &Manifest) -> io::Result<()> {
    let mut text = serde_json::to_vec_pretty(manifest).map_err(io::Error::other)?;
    text.push(b'\n');
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    {
        use tokio::io::AsyncWriteExt;
        let mut file = tokio::fs::File::create(&temporary).await?;
        file.write_all(&text).await?;
        file.sync_all().await?;
    }
    tokio::fs::rename(&temporary, path).await
}

/// The complete manifests of a table's job folders directly under `directory`, oldest first (by
/// watermark); a folder without a complete manifest is left out.
pub fn chain(
    directory: &Path,
    namespace: &str,
    table: &str,
) -> io::Result<Vec<(PathBuf, Manifest)>> {
    chain_named(directory, namespace, table, MANIFEST)
}

/// [`chain`] of job folders whose manifest goes by another name (the files destination's
/// `_manifest.json`, which data lake engines skip as they skip every `_` file).
pub fn chain_named(
    directory: &Path,
    namespace: &str,
    table: &str,
    manifest: &str,
) -> io::Result<Vec<(PathBuf, Manifest)>> {
    let entries = match std::fs::read_dir(directory) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut found = Vec::new();
    for entry in entries {
        let folder = entry?.path();
        if !folder.is_dir() {
            continue;
        }
        if let Some(manifest) = read(&folder.join(manifest))
            && manifest.namespace == namespace
            && manifest.table == table
            && manifest.watermark().is_some()
        {
            found.push((folder, manifest));
        }
    }
    found.sort_by_key(|(_, manifest)| (manifest.watermark(), manifest.kind == Kind::Incremental));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn job(id: &str, kind: JobKind) -> CompleteJob {
        CompleteJob {
            id: id.into(),
            kind,
            schema_version: 3,
            objects: Vec::new(),
        }
    }

    #[tokio::test]
    async fn the_chain_is_the_complete_manifests_of_the_table_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, table: &str, kind: JobKind, complete: bool| {
            let folder = dir.path().join(name);
            std::fs::create_dir_all(&folder).unwrap();
            let manifest = Manifest::new("canvas", table, &job(name, kind), Format::Csv, false);
            async move {
                if complete {
                    write_complete(&folder, &manifest).await.unwrap();
                } else {
                    write_partial(&folder, &manifest).await.unwrap();
                }
            }
        };
        let (t0, t1, t2) = (
            at("2024-05-01T10:00:00Z"),
            at("2024-05-01T14:00:00Z"),
            at("2024-05-01T18:00:00+02:00"),
        );
        write(
            "job_b",
            "courses",
            JobKind::Incremental {
                since: t0,
                until: t1,
            },
            true,
        )
        .await;
        write("job_a", "courses", JobKind::Snapshot { at: t0 }, true).await;
        write(
            "job_c",
            "courses",
            JobKind::Incremental {
                since: t1,
                until: t2 + chrono::TimeDelta::hours(9),
            },
            false,
        )
        .await;
        write("job_d", "users", JobKind::Snapshot { at: t2 }, true).await;
        let found = chain(dir.path(), "canvas", "courses").unwrap();
        let ids: Vec<&str> = found.iter().map(|(_, m)| m.job_id.as_str()).collect();
        assert_eq!(ids, ["job_a", "job_b"]);
        assert_eq!(found[1].1.watermark(), Some(t1));
        assert!(read_progress(&dir.path().join("job_c")).is_some());
        assert!(
            chain(&dir.path().join("missing"), "canvas", "courses")
                .unwrap()
                .is_empty()
        );

        let text = std::fs::read_to_string(dir.path().join("job_b").join(MANIFEST)).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["kind"], "incremental");
        assert_eq!(json["since"], "2024-05-01T10:00:00Z");
        assert_eq!(json["format"], "csv");
        assert!(json.get("at").is_none());
    }
}
