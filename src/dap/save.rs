//! Result objects saved to files as the API serves them (the file commands `dapsync snapshot`
//! and `dapsync incremental`), and the queries that ask for a format.

use std::io;
use std::path::Path;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufReader, BufWriter};
use tokio_util::io::StreamReader;
use tracing::debug;

use super::client::DapClient;
use super::decode::gunzip;
use super::download::{is_refused_url, read_error};
use super::error::DapError;
use super::http::DOWNLOAD;
use super::job::{CompleteJob, Job, ObjectRef, format_timestamp};

/// The data format of a query's result objects (the query body's `format`).
pub use crate::config::FileFormat as Format;

/// A query whose result objects are saved as files: any format, and an `until` when asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileQuery {
    /// The format of the objects.
    pub format: Format,
    /// Set for an incremental query: the first instant included.
    pub since: Option<DateTime<Utc>>,
    /// The last instant an incremental covers (default: the latest commit).
    pub until: Option<DateTime<Utc>>,
}

impl FileQuery {
    /// The JSON body that starts this query. No `mode`: the server's default, as the official
    /// client's file commands ask.
    fn body(&self) -> Value {
        let mut body = json!({ "format": self.format.name() });
        if let Some(since) = self.since {
            body["since"] = format_timestamp(since).into();
        }
        if let Some(until) = self.until {
            body["until"] = format_timestamp(until).into();
        }
        body
    }
}

/// The file name an object is saved under: the last segment of its URL's path, as the official
/// client keeps it, or of its id when the URL has none that can be a file name.
pub fn object_file_name(object: &ObjectRef, url: &str) -> String {
    let usable = |name: &&str| !name.is_empty() && *name != "." && *name != "..";
    reqwest::Url::parse(url)
        .ok()
        .and_then(|url| {
            let last = url.path_segments()?.next_back()?.to_owned();
            usable(&last.as_str()).then_some(last)
        })
        .or_else(|| {
            let last = object.id.rsplit('/').next().unwrap_or_default();
            usable(&last).then(|| last.to_owned())
        })
        .unwrap_or_else(|| object.id.replace('/', "_"))
}

impl DapClient {
    /// Objects downloaded at the same time.
    pub fn download_concurrency(&self) -> usize {
        self.inner.options.download_concurrency
    }

    /// Starts a query for files and waits for its job.
    pub async fn query_files(
        &self,
        namespace: &str,
        table: &str,
        query: &FileQuery,
    ) -> Result<CompleteJob, DapError> {
        let job: Job = self.start_with_body(namespace, table, query.body()).await?;
        self.wait_for_job(job).await
    }

    /// Saves one object at `path`: written to `path` + `.part`, checked (the gzip trailer of the
    /// compressed formats, the footer of Parquet, the length the server announced), then renamed,
    /// so that a file under its final name is always complete. With `decompress`, a gzip object
    /// is written decompressed. Transient failures are retried from the start of the object, and
    /// a refused URL (expired) is resolved again. `progress` is told of every chunk received.
    /// Returns the size of the file.
    pub async fn save_object(
        &self,
        object: &ObjectRef,
        mut url: String,
        path: &Path,
        format: Format,
        decompress: bool,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, DapError> {
        let mut part = path.as_os_str().to_owned();
        part.push(".part");
        let part = Path::new(&part);
        let mut retries = self.inner.retries(DOWNLOAD);
        let result = loop {
            let mut result = self
                .save_attempt(object, &url, part, format, decompress, progress)
                .await;
            if result.as_ref().is_err_and(is_refused_url) {
                debug!(object_id = %object.id, "pre-signed url refused; resolving it again");
                if let Some((_, fresh)) = self
                    .inner
                    .resolve_batch(std::slice::from_ref(object))
                    .await?
                    .pop()
                {
                    url = fresh;
                }
                result = self
                    .save_attempt(object, &url, part, format, decompress, progress)
                    .await;
            }
            match result {
                Ok(size) => break Ok(size),
                Err(error) => {
                    if let Err(error) = retries.wait_or_give_up(error).await {
                        break Err(error);
                    }
                }
            }
        };
        match result {
            Ok(size) => {
                tokio::fs::rename(part, path)
                    .await
                    .map_err(|source| write_error(path, source))?;
                Ok(size)
            }
            Err(error) => {
                let _ = tokio::fs::remove_file(part).await;
                Err(error)
            }
        }
    }

    /// One attempt of [`Self::save_object`]: the checked, synced file at `part`.
    async fn save_attempt(
        &self,
        object: &ObjectRef,
        url: &str,
        part: &Path,
        format: Format,
        decompress: bool,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, DapError> {
        let body = self.inner.open_object(&object.id, url).await?;
        let write = |source| write_error(part, source);
        // Read back by `check_whole`.
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(part)
            .await
            .map_err(write)?;
        let mut writer = BufWriter::new(file);
        let mut size = 0u64;
        if decompress && format.is_gzip() {
            let counted = body.map(|chunk| {
                if let Ok(chunk) = &chunk {
                    progress(chunk.len() as u64);
                }
                chunk
            });
            let mut reader = gunzip(StreamReader::new(Box::pin(counted)));
            loop {
                let buffer = reader
                    .fill_buf()
                    .await
                    .map_err(|e| read_error(&object.id, e))?;
                if buffer.is_empty() {
                    break;
                }
                let length = buffer.len();
                writer.write_all(buffer).await.map_err(write)?;
                reader.consume(length);
                size += length as u64;
            }
        } else {
            let mut body = std::pin::pin!(body);
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| read_error(&object.id, e))?;
                progress(chunk.len() as u64);
                writer.write_all(&chunk).await.map_err(write)?;
                size += chunk.len() as u64;
            }
        }
        writer.flush().await.map_err(write)?;
        let mut file = writer.into_inner();
        file.sync_all().await.map_err(write)?;
        if !decompress || !format.is_gzip() {
            check_whole(&mut file, format, size)
                .await
                .map_err(|e| read_error(&object.id, e))?;
        }
        Ok(size)
    }
}

/// Checks that a saved object is whole: a gzip file decompresses to its trailer, a Parquet
/// file starts and ends with its magic around a footer that fits.
async fn check_whole(file: &mut tokio::fs::File, format: Format, size: u64) -> io::Result<()> {
    file.rewind().await?;
    if format.is_gzip() {
        let mut reader = gunzip(BufReader::new(file));
        tokio::io::copy_buf(&mut reader, &mut tokio::io::sink()).await?;
        return Ok(());
    }
    let broken = |what: &str| io::Error::new(io::ErrorKind::UnexpectedEof, what.to_owned());
    if size < 12 {
        return Err(broken("the Parquet file is too short"));
    }
    let mut head = [0u8; 4];
    file.read_exact(&mut head).await?;
    file.seek(io::SeekFrom::Start(size - 8)).await?;
    let mut tail = [0u8; 8];
    file.read_exact(&mut tail).await?;
    let footer = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) as u64;
    if &head != b"PAR1" || &tail[4..] != b"PAR1" || footer + 12 > size {
        return Err(broken("the Parquet file lacks its footer"));
    }
    Ok(())
}

fn write_error(path: &Path, source: io::Error) -> DapError {
    DapError::Write {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_queries_ask_for_their_format_and_window() {
        let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().to_utc();
        let snapshot = FileQuery {
            format: Format::Parquet,
            since: None,
            until: None,
        };
        assert_eq!(snapshot.body(), json!({"format": "parquet"}));
        let incremental = FileQuery {
            format: Format::Csv,
            since: Some(at("2022-06-13T11:30:00+02:00")),
            until: Some(at("2022-06-14T09:30:00Z")),
        };
        assert_eq!(
            incremental.body(),
            json!({"format": "csv", "since": "2022-06-13T09:30:00.000000Z",
                   "until": "2022-06-14T09:30:00.000000Z"})
        );
    }

    #[test]
    fn object_file_names_come_from_the_url() {
        let object = ObjectRef {
            id: "job/part-00001.csv.gz".into(),
        };
        let name = |url: &str| object_file_name(&object, url);
        assert_eq!(
            name("https://bucket.s3.amazonaws.com/a/b/part-7.csv.gz?X-Amz-Signature=x"),
            "part-7.csv.gz"
        );
        assert_eq!(name("https://bucket/a/"), "part-00001.csv.gz");
        assert_eq!(name("not a url"), "part-00001.csv.gz");
    }
}
