//! Downloading the objects of a finished job and streaming their records.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};
use reqwest::header::CONTENT_LENGTH;
use tokio::sync::mpsc;
use tokio::task::{self, JoinSet};
use tokio::time::{Instant, timeout};
use tokio_util::io::StreamReader;
use tracing::debug;

use super::client::{DapClient, Inner};
use super::decode::{BatchSender, forward_lines, gunzip};
use super::error::{ApiError, ApiErrorKind, DapError};
use super::http::{DOWNLOAD, retry_after};
use super::job::{CompleteJob, ObjectRef};
use super::metrics::Metrics;
use super::record::{LineDecoder, RecordBatch, RecordDecoder};

/// URLs older than this are resolved again before a download starts (they last about 15
/// minutes; an expired one would cost a refused request).
const URL_REUSE_LIMIT: Duration = Duration::from_secs(10 * 60);

/// The records of a finished job, in batches, as they are downloaded.
///
/// Up to `download_concurrency` objects are downloaded at once, each streamed through gunzip
/// and decoded line by line; batches of one object come in order, batches of different objects
/// may interleave. URLs are resolved in batches right before their objects are downloaded.
/// Memory stays bounded: a download waits while its last batch has not been taken, so at most
/// about `2 × download_concurrency + 2` batches exist at once. Dropping the stream stops every
/// download.
pub struct RecordStream<D: LineDecoder = RecordDecoder> {
    client: DapClient,
    /// Objects whose URLs have not been asked for yet.
    unresolved: VecDeque<ObjectRef>,
    /// Objects with a URL, waiting for a download slot, and when their URLs were resolved.
    resolved: VecDeque<(ObjectRef, String)>,
    resolved_at: Instant,
    downloads: JoinSet<Result<(), DapError>>,
    /// The object of each running download, to name it should its task panic.
    running: HashMap<task::Id, String>,
    decoder: std::sync::Arc<D>,
    sender: BatchSender<D::Item>,
    receiver: mpsc::Receiver<Result<RecordBatch<D::Item>, DapError>>,
    finished: bool,
    /// Objects downloaded at the same time.
    concurrency: usize,
}

/// Counts only: resolved object URLs are signed and must not reach a log.
impl<D: LineDecoder> std::fmt::Debug for RecordStream<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordStream")
            .field("unresolved", &self.unresolved.len())
            .field("resolved", &self.resolved.len())
            .field("downloading", &self.running.len())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl<D: LineDecoder> RecordStream<D> {
    pub(super) fn new(client: DapClient, job: &CompleteJob, decoder: std::sync::Arc<D>) -> Self {
        let concurrency = client.inner.options.download_concurrency;
        // One slot is enough to keep the consumer busy: every download waiting to send also
        // holds a finished batch.
        let (sender, receiver) = mpsc::channel(1);
        Self {
            client,
            unresolved: job.objects.iter().cloned().collect(),
            resolved: VecDeque::new(),
            resolved_at: Instant::now(),
            downloads: JoinSet::new(),
            running: HashMap::new(),
            decoder,
            sender,
            receiver,
            finished: false,
            concurrency,
        }
    }

    /// Downloads one object at a time, so that records come in the order of the objects and of
    /// their lines (the job's order). Call it before the first [`RecordStream::next_batch`].
    pub fn sequential(mut self) -> Self {
        self.concurrency = 1;
        self
    }

    /// The next batch; `None` when every object has been read completely. After an error the
    /// stream ends (and stops its downloads). Cancel-safe.
    pub async fn next_batch(&mut self) -> Option<Result<RecordBatch<D::Item>, DapError>> {
        if self.finished {
            return None;
        }
        let next = self.next_item().await;
        match &next {
            Some(Ok(batch)) => {
                let metrics = &self.client.inner.metrics;
                metrics.decoded(batch.records.len() as u64, batch.malformed.len() as u64);
            }
            _ => {
                self.finished = true;
                self.downloads.abort_all();
            }
        }
        next
    }

    async fn next_item(&mut self) -> Option<Result<RecordBatch<D::Item>, DapError>> {
        loop {
            if let Err(error) = self.start_downloads().await {
                return Some(Err(error));
            }
            if self.downloads.is_empty() {
                // Every download has ended and left its batches in the channel.
                return self.receiver.try_recv().ok();
            }
            tokio::select! {
                biased;
                Some(batch) = self.receiver.recv() => return Some(batch),
                Some(ended) = self.downloads.join_next_with_id() => match ended {
                    Ok((id, Ok(()))) => {
                        self.running.remove(&id);
                    }
                    Ok((_, Err(error))) => return Some(Err(error)),
                    Err(panicked) => {
                        let object_id = self.running.remove(&panicked.id()).unwrap_or_default();
                        let reason = "its download task panicked".to_owned();
                        return Some(Err(DapError::IncompleteObject { object_id, reason }));
                    }
                },
            }
        }
    }

    /// Fills the free download slots.
    async fn start_downloads(&mut self) -> Result<(), DapError> {
        let options = &self.client.inner.options;
        while self.downloads.len() < self.concurrency {
            if self.resolved.is_empty() || self.resolved_at.elapsed() > URL_REUSE_LIMIT {
                // Leave the queues as they are until the answer is in, so that cancelling
                // `next_batch` loses nothing.
                let stale = self.resolved.iter().map(|(object, _)| object);
                let batch: Vec<ObjectRef> = stale
                    .chain(&self.unresolved)
                    .take(options.url_batch_size)
                    .cloned()
                    .collect();
                if batch.is_empty() {
                    break;
                }
                let urls = self.client.inner.resolve_batch(&batch).await?;
                self.resolved_at = Instant::now();
                let stale = self.resolved.len().min(batch.len());
                self.resolved.drain(..stale);
                self.unresolved.drain(..batch.len() - stale);
                self.resolved
                    .extend(batch.into_iter().zip(urls.into_iter().map(|(_, url)| url)));
            }
            let Some((object, url)) = self.resolved.pop_front() else {
                break;
            };
            let client = self.client.clone();
            let sender = self.sender.clone();
            let decoder = self.decoder.clone();
            let object_id = object.id.clone();
            let handle = self.downloads.spawn(async move {
                client
                    .inner
                    .download(&object, url, &*decoder, &sender)
                    .await
            });
            self.running.insert(handle.id(), object_id);
        }
        Ok(())
    }
}

impl Inner {
    /// Downloads one object and hands its batches to `sender`, retrying transient failures from
    /// the start of the object without handing on again the lines already handed on. A refused
    /// URL (expired) is resolved again, once per attempt. The retry budget counts the failed
    /// attempts since the last one that handed on new lines: a large object over a connection
    /// that keeps breaking completes as long as each attempt gets further.
    async fn download<D: LineDecoder>(
        &self,
        object: &ObjectRef,
        mut url: String,
        decoder: &D,
        sender: &BatchSender<D::Item>,
    ) -> Result<(), DapError> {
        let mut retries = self.retries(DOWNLOAD);
        let mut handed_on = 0;
        loop {
            let furthest = handed_on;
            let mut result = self
                .fetch(&object.id, &url, &mut handed_on, decoder, sender)
                .await;
            if result.as_ref().is_err_and(is_refused_url) {
                debug!(object_id = %object.id, "pre-signed url refused; resolving it again");
                if let Some((_, fresh)) = self
                    .resolve_batch(std::slice::from_ref(object))
                    .await?
                    .pop()
                {
                    url = fresh;
                }
                result = self
                    .fetch(&object.id, &url, &mut handed_on, decoder, sender)
                    .await;
            }
            if handed_on > furthest {
                retries.progressed();
            }
            match result {
                Ok(()) => return Ok(()),
                Err(error) => retries.wait_or_give_up(error).await?,
            }
        }
    }

    /// One attempt at downloading an object (see [`Inner::download`]).
    async fn fetch<D: LineDecoder>(
        &self,
        object_id: &str,
        url: &str,
        handed_on: &mut u64,
        decoder: &D,
        sender: &BatchSender<D::Item>,
    ) -> Result<(), DapError> {
        let body = self.open_object(object_id, url).await?;
        let lines = gunzip(StreamReader::new(Box::pin(body)));
        forward_lines(
            lines,
            object_id,
            self.options.batch_records,
            handed_on,
            decoder,
            sender,
        )
        .await
        .map_err(|error| read_error(object_id, error))
    }

    /// Sends the GET of one object and checks the answer's status; its body as I/O checked by
    /// [`checked_body`]. A refused URL (403, 404) is an `Api` error with that status.
    pub(super) async fn open_object(
        &self,
        object_id: &str,
        url: &str,
    ) -> Result<impl Stream<Item = io::Result<Bytes>> + Send + '_, DapError> {
        let idle = self.options.download_idle_timeout;
        let incomplete = |reason: String| DapError::IncompleteObject {
            object_id: object_id.to_owned(),
            reason,
        };
        // The URL carries a signature: keep it out of errors. No Authorization header either.
        let sent = tokio::time::Instant::now();
        let response = match timeout(idle, self.http.get(url).send()).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                self.metrics.request(DOWNLOAD, None, sent.elapsed());
                return Err(DapError::Transport {
                    endpoint: DOWNLOAD,
                    source: e.without_url(),
                });
            }
            Err(_) => {
                self.metrics.request(DOWNLOAD, None, sent.elapsed());
                return Err(incomplete(format!("no answer within {idle:?}")));
            }
        };
        let status = response.status().as_u16();
        self.metrics.request(DOWNLOAD, Some(status), sent.elapsed());
        if !response.status().is_success() {
            let error = if matches!(status, 403 | 404) {
                refused_url(object_id, status)
            } else {
                let retry_after = retry_after(response.headers(), chrono::Utc::now());
                // The body only adds detail to the message: never wait long for it.
                let body = timeout(idle, response.bytes()).await;
                let body = body.ok().and_then(Result::ok).unwrap_or_default();
                ApiError::from_response(status, retry_after, &body)
            };
            return Err(DapError::Api {
                endpoint: DOWNLOAD,
                error: Box::new(error),
            });
        }
        let expected = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        Ok(checked_body(
            response.bytes_stream(),
            idle,
            expected,
            &self.metrics,
        ))
    }
}

/// Why reading an object failed: the connection (a `reqwest::Error` that [`checked_body`] put
/// inside the `io::Error`), or the body itself (cut short, stalled, failed gzip checks).
pub(super) fn read_error(object_id: &str, error: io::Error) -> DapError {
    match error.downcast::<reqwest::Error>() {
        Ok(source) => DapError::Transport {
            endpoint: DOWNLOAD,
            source,
        },
        Err(error) => DapError::IncompleteObject {
            object_id: object_id.to_owned(),
            reason: error.to_string(),
        },
    }
}

/// The answer to a refused pre-signed URL: object storage says 403 or 404 once it expired.
fn refused_url(object_id: &str, status: u16) -> ApiError {
    ApiError {
        kind: ApiErrorKind::NotFound {
            id: Some(object_id.to_owned()),
            kind: Some("object".to_owned()),
        },
        status: Some(status),
        uuid: None,
        message: "the pre-signed URL was refused (expired, or the object is gone)".to_owned(),
    }
}

pub(super) fn is_refused_url(error: &DapError) -> bool {
    matches!(error, DapError::Api { endpoint: DOWNLOAD, error } if matches!(error.status, Some(403 | 404)))
}

/// The body of a download as I/O: counts the bytes received, fails when nothing arrives for
/// `idle`, and fails when the body ends before `expected` bytes (`Content-Length`). Transport
/// errors keep their `reqwest::Error` (without the URL) inside the `io::Error`.
fn checked_body<'a>(
    body: impl Stream<Item = reqwest::Result<Bytes>> + Send + 'a,
    idle: Duration,
    expected: Option<u64>,
    metrics: &'a Metrics,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'a {
    let state = (Box::pin(body), 0u64, false);
    stream::unfold(state, move |(mut body, mut received, ended)| async move {
        if ended {
            return None;
        }
        let (item, ended) = match timeout(idle, body.next()).await {
            Ok(Some(Ok(chunk))) => {
                received += chunk.len() as u64;
                metrics.downloaded(chunk.len() as u64);
                (Ok(chunk), false)
            }
            Ok(Some(Err(e))) => (Err(io::Error::other(e.without_url())), true),
            Ok(None) => match expected {
                Some(expected) if expected != received => {
                    let message = format!("the body ended after {received} of {expected} bytes");
                    (
                        Err(io::Error::new(io::ErrorKind::UnexpectedEof, message)),
                        true,
                    )
                }
                _ => return None,
            },
            Err(_) => {
                let message = format!("no data received for {idle:?}");
                (Err(io::Error::new(io::ErrorKind::TimedOut, message)), true)
            }
        };
        Some((item, (body, received, ended)))
    })
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    async fn read(
        chunks: Vec<reqwest::Result<Bytes>>,
        expected: Option<u64>,
    ) -> io::Result<Vec<u8>> {
        let metrics = Metrics::default();
        let body = checked_body(
            stream::iter(chunks),
            Duration::from_secs(5),
            expected,
            &metrics,
        );
        let mut out = Vec::new();
        StreamReader::new(Box::pin(body))
            .read_to_end(&mut out)
            .await?;
        assert_eq!(metrics.snapshot().bytes_downloaded, out.len() as u64);
        Ok(out)
    }

    #[tokio::test]
    async fn a_body_shorter_than_its_content_length_fails() {
        let chunks = || {
            vec![
                Ok(Bytes::from_static(b"abc")),
                Ok(Bytes::from_static(b"de")),
            ]
        };
        assert_eq!(read(chunks(), Some(5)).await.unwrap(), b"abcde");
        assert_eq!(read(chunks(), None).await.unwrap(), b"abcde");
        let error = read(chunks(), Some(9)).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(error.to_string(), "the body ended after 5 of 9 bytes");
    }

    #[tokio::test]
    async fn read_errors_tell_the_connection_from_the_body() {
        // Nothing listens on port 1 of loopback: a real connection error.
        let refused = crate::dap::http_client_builder()
            .build()
            .unwrap()
            .get("http://127.0.0.1:1/")
            .send()
            .await
            .unwrap_err()
            .without_url();
        let error = read_error("obj", io::Error::other(refused));
        assert!(
            matches!(
                error,
                DapError::Transport {
                    endpoint: DOWNLOAD,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(error.is_transient());
        let cut = io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the body ended after 5 of 9 bytes",
        );
        let error = read_error("obj", cut);
        assert_eq!(
            error.to_string(),
            "object obj is incomplete: the body ended after 5 of 9 bytes"
        );
        assert!(error.is_transient());
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_body_times_out() {
        let metrics = Metrics::default();
        let stalled = stream::iter([Ok(Bytes::from_static(b"abc"))]).chain(stream::pending());
        let body = checked_body(stalled, Duration::from_secs(60), None, &metrics);
        let mut out = Vec::new();
        let error = StreamReader::new(Box::pin(body))
            .read_to_end(&mut out)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(out, b"abc");
    }
}
