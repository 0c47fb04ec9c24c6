//! Result objects: written to the server's directory when a job completes (gzip-compressed
//! JSON Lines, TSV or CSV, or Parquet), and streamed back from disk on download, whole or broken
//! the way a fault asks.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flate2::Compression;
use flate2::write::GzEncoder;
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;

use super::extract::{Extract, Item};
use super::fault::Fault;
use super::format::{Format, Output, ParquetLayout, TextEncoder};
use super::table::{RowState, TableName};

/// Bytes read from disk per body chunk.
const CHUNK: usize = 64 * 1024;

/// One result object on disk.
#[derive(Debug, Clone)]
pub(super) struct ObjectFile {
    pub table: TableName,
    pub path: PathBuf,
    pub format: Format,
    /// Size on disk (compressed).
    pub size: u64,
    pub cut: CutPoints,
}

/// Offsets in the object's bytes where fault injection cuts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CutPoints {
    /// Right after the sync flush that follows record `lines_before`: the bytes up to here
    /// decompress to exactly the header (if any) and those records, but the gzip trailer is
    /// missing. (Parquet: the middle of the file.)
    pub record_boundary: u64,
    pub lines_before: u64,
    /// Inside the compressed bytes of record `lines_before`. (Parquet: the middle of the file.)
    pub mid_record: u64,
}

/// Counts the bytes that reach the file.
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    /// The encoder flushes its writer at every sync flush; the buffered file is flushed once at
    /// the end instead of once per line.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How the objects of one job are written.
enum Writer {
    Jsonl,
    Text(TextEncoder),
    Parquet(ParquetLayout),
}

impl Writer {
    fn new(extract: &Extract, output: Output) -> io::Result<Self> {
        Ok(match (output.format, output.mode) {
            (Format::Jsonl, _) => Writer::Jsonl,
            (Format::Parquet, _) => Writer::Parquet(ParquetLayout::new(extract)?),
            (format, mode) => Writer::Text(TextEncoder::new(
                format,
                mode.unwrap_or_default(),
                extract.schema(),
                extract.is_incremental(),
            )),
        })
    }

    /// Writes one object; returns its size and cut points.
    fn write(
        &self,
        extract: &Extract,
        groups: &[Vec<(u64, RowState)>],
        part: usize,
        path: &Path,
    ) -> io::Result<(u64, CutPoints)> {
        match self {
            Writer::Jsonl => write_gzip(path, groups[part].len(), &[], |object| {
                extract.write_lines(groups, part, |line| object.line(line))
            }),
            Writer::Text(encoder) => {
                let mut header = Vec::new();
                encoder.header(&mut header);
                let (mut row, mut scratch) = (Vec::with_capacity(1024), Vec::new());
                write_gzip(path, groups[part].len(), &header, |object| {
                    extract.visit(groups, part, |item| match item {
                        Item::Record(record) => {
                            encoder.row(&record, &mut row, &mut scratch);
                            object.line(&row)
                        }
                        // Bad lines are a JSON Lines matter.
                        Item::Bad(_) => Ok(()),
                    })
                })
            }
            Writer::Parquet(layout) => {
                let size = layout.write(extract, groups, part, path)?;
                let middle = size / 2;
                let cut = CutPoints {
                    record_boundary: middle,
                    lines_before: 0,
                    mid_record: middle,
                };
                Ok((size, cut))
            }
        }
    }
}

/// Writes the objects of a job in `output`'s format, named `<job_id>/part-NNNNN.<extension>`,
/// in `dir`, on as many threads as there are cores (generating rows is the slow part).
pub(super) fn write_objects(
    extract: &Extract,
    output: Output,
    table: &TableName,
    dir: &Path,
    job_id: &str,
) -> io::Result<Vec<(String, ObjectFile)>> {
    let groups: Vec<Vec<(u64, RowState)>> = extract.objects().collect();
    let writer = Writer::new(extract, output)?;
    let extension = output.format.extension();
    let workers = std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(groups.len());
    let write = |part: usize| {
        let path = dir.join(format!("{job_id}-{part:05}.{extension}"));
        let (size, cut) = writer.write(extract, &groups, part, &path)?;
        let id = format!("{job_id}/part-{part:05}.{extension}");
        let table = table.clone();
        Ok((
            id,
            ObjectFile {
                table,
                path,
                format: output.format,
                size,
                cut,
            },
        ))
    };
    let mut objects: Vec<(usize, io::Result<(String, ObjectFile)>)> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..workers)
            .map(|worker| {
                let parts = (worker..groups.len()).step_by(workers);
                let write = &write;
                scope.spawn(move || parts.map(|part| (part, write(part))).collect::<Vec<_>>())
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|_| vec![(0, Err(io::Error::other("a writer panicked")))])
            })
            .collect()
    });
    objects.sort_by_key(|(part, _)| *part);
    objects.into_iter().map(|(_, object)| object).collect()
}

/// Lines between two gzip sync flushes in objects of more than this many rows (smaller objects,
/// as in tests, flush after every line).
const FLUSH_EVERY: u64 = 256;

/// The gzip stream of one object being written, with its flush points.
struct GzipObject {
    encoder: GzEncoder<Counting<BufWriter<File>>>,
    /// Records between two sync flushes.
    every: u64,
    lines: u64,
    /// (records written, compressed offset) at each flush, starting with the records' start.
    flushes: Vec<(u64, u64)>,
}

impl GzipObject {
    /// Adds one record (a line, or for CSV maybe several).
    fn line(&mut self, line: &[u8]) -> io::Result<()> {
        self.encoder.write_all(line)?;
        self.lines += 1;
        if self.lines.is_multiple_of(self.every) {
            self.encoder.flush()?;
            self.flushes
                .push((self.lines, self.encoder.get_ref().written));
        }
        Ok(())
    }
}

/// Writes one gzip object: `header` (may be empty), then the records `write` adds; returns its
/// compressed size and cut points.
///
/// The stream is sync-flushed after the header and every [`FLUSH_EVERY`] records (every record
/// in small objects), so that a record boundary is also a byte boundary of the compressed stream
/// there. Flushing after every line of a large object would make each line a deflate block of its
/// own, far costlier to decompress than real DAP objects.
fn write_gzip(
    path: &Path,
    records: usize,
    header: &[u8],
    write: impl FnOnce(&mut GzipObject) -> io::Result<()>,
) -> io::Result<(u64, CutPoints)> {
    let file = BufWriter::with_capacity(CHUNK, File::create(path)?);
    let mut encoder = GzEncoder::new(
        Counting {
            inner: file,
            written: 0,
        },
        Compression::fast(),
    );
    encoder.write_all(header)?;
    // Flushing before any record writes the gzip header (and the header row), so the first flush
    // point is where records start.
    encoder.flush()?;
    let start = encoder.get_ref().written;
    let mut object = GzipObject {
        encoder,
        every: if records as u64 <= FLUSH_EVERY {
            1
        } else {
            FLUSH_EVERY
        },
        lines: 0,
        flushes: vec![(0, start)],
    };
    write(&mut object)?;
    let GzipObject {
        mut encoder,
        every,
        lines,
        mut flushes,
    } = object;
    if !lines.is_multiple_of(every) {
        encoder.flush()?;
        flushes.push((lines, encoder.get_ref().written));
    }
    let mut counting = encoder.finish()?;
    counting.inner.flush()?;
    Ok((counting.written, cut_points(&flushes)))
}

/// Cuts at the flush point in the middle (after the only one when there is one), and halfway
/// between it and the flush point before. `flushes` holds (lines written, compressed offset)
/// pairs, starting with the data's start.
fn cut_points(flushes: &[(u64, u64)]) -> CutPoints {
    let k = (flushes.len() / 2).max(1).min(flushes.len() - 1);
    let (lines_before, after) = flushes[k];
    // An object without lines has only its start: cut inside the header.
    let before = if k == 0 { after / 2 } else { flushes[k - 1].1 };
    CutPoints {
        record_boundary: after,
        lines_before,
        mid_record: if k == 0 { before } else { (before + after) / 2 },
    }
}

/// The download response for an object, shaped by a download fault.
pub(super) async fn download(file: &ObjectFile, fault: Option<&Fault>) -> Response {
    let reader = match tokio::fs::File::open(&file.path).await {
        Ok(reader) => reader,
        Err(_) => return StatusCode::NOT_FOUND.into_response(),
    };
    let limited =
        |reader: tokio::fs::File, len: u64| ReaderStream::with_capacity(reader.take(len), CHUNK);
    let (length, body) = match fault {
        Some(Fault::CutMidRecord) => (
            Some(file.cut.mid_record),
            Body::from_stream(limited(reader, file.cut.mid_record)),
        ),
        Some(Fault::CutAtRecordBoundary) => (
            None,
            Body::from_stream(limited(reader, file.cut.record_boundary)),
        ),
        Some(fault @ (Fault::DropConnection | Fault::DropConnectionAfter { .. })) => {
            let sent = match fault {
                Fault::DropConnectionAfter { bytes } => (*bytes).min(file.size),
                _ => file.cut.mid_record,
            };
            let dropped = futures_util::stream::once(async {
                // Hyper flushes what it holds only when the body is pending; without this the
                // headers would never leave and the client would see no response at all.
                tokio::task::yield_now().await;
                Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "fault: connection dropped",
                ))
            });
            (
                Some(file.size),
                Body::from_stream(limited(reader, sent).chain(dropped)),
            )
        }
        Some(&Fault::SlowBody {
            chunk_bytes,
            pause_ms,
        }) => {
            let pause = Duration::from_millis(pause_ms);
            let slow = ReaderStream::with_capacity(reader, chunk_bytes.max(1)).then(
                move |chunk| async move {
                    tokio::time::sleep(pause).await;
                    chunk
                },
            );
            (Some(file.size), Body::from_stream(slow))
        }
        _ => (
            Some(file.size),
            Body::from_stream(limited(reader, file.size)),
        ),
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(file.format.content_type()),
    );
    if let Some(length) = length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_fall_at_the_middle_flush_and_inside_the_lines_before_it() {
        let flushes = [(0, 10), (1, 30), (2, 50), (3, 70), (4, 90)];
        assert_eq!(
            cut_points(&flushes),
            CutPoints {
                record_boundary: 50,
                lines_before: 2,
                mid_record: 40
            }
        );
        assert_eq!(
            cut_points(&[(0, 10), (1, 30)]),
            CutPoints {
                record_boundary: 30,
                lines_before: 1,
                mid_record: 20
            }
        );
        assert_eq!(
            cut_points(&[(0, 10), (256, 400), (512, 800)]),
            CutPoints {
                record_boundary: 400,
                lines_before: 256,
                mid_record: 205
            }
        );
    }
}
