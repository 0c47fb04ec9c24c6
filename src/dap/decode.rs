//! Result objects: gzip bytes → lines → batches of records.

use std::io;

use async_compression::tokio::bufread::GzipDecoder;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use super::error::DapError;
use super::record::{LineDecoder, RecordBatch};

/// Where decoded batches go, to the consumer of a record stream.
pub(super) type BatchSender<T> = mpsc::Sender<Result<RecordBatch<T>, DapError>>;

/// Decompressed bytes buffered between the gzip decoder and the line reader.
const LINE_BUFFER: usize = 64 * 1024;

/// Decompresses a gzip object of any number of members.
///
/// The decoder checks every member's trailer (CRC32 and length) and fails with an error when
/// the input ends before a trailer, so a body cut short, even exactly at a line boundary, never
/// reads as a complete object. (A body cut exactly between two members is only caught by
/// comparing its length with `Content-Length`; see the download.)
pub(super) fn gunzip(compressed: impl AsyncBufRead + Unpin) -> impl AsyncBufRead + Unpin {
    let mut decoder = GzipDecoder::new(compressed);
    decoder.multiple_members(true);
    BufReader::with_capacity(LINE_BUFFER, decoder)
}

/// Reads the lines of one object and hands them on in batches of up to `batch_records`
/// records and malformed lines to `sender`; stops early, without error, when the receiver has
/// gone. The first `*handed_on` lines were handed on by an earlier
/// attempt and are skipped; `*handed_on` grows as batches are accepted, so that after a failure
/// it tells the next attempt where to resume. Empty lines are counted but yield nothing.
pub(super) async fn forward_lines<D: LineDecoder>(
    mut lines: impl AsyncBufRead + Unpin,
    object_id: &str,
    batch_records: usize,
    handed_on: &mut u64,
    decoder: &D,
    sender: &BatchSender<D::Item>,
) -> io::Result<()> {
    let mut line = Vec::new();
    let mut number = 0u64;
    let mut batch = RecordBatch::default();
    loop {
        line.clear();
        let read = lines.read_until(b'\n', &mut line).await?;
        if read == 0 {
            break;
        }
        number += 1;
        if number <= *handed_on {
            continue;
        }
        batch.bytes += read as u64;
        let text = trim_line_end(&line);
        if !text.iter().all(u8::is_ascii_whitespace) {
            match decoder.decode(object_id, text) {
                Ok(record) => batch.records.push(record),
                Err(malformed) => batch.malformed.push(malformed),
            }
        }
        if batch.records.len() + batch.malformed.len() >= batch_records {
            if sender.send(Ok(std::mem::take(&mut batch))).await.is_err() {
                return Ok(());
            }
            *handed_on = number;
        }
    }
    if batch.bytes > 0 && sender.send(Ok(batch)).await.is_err() {
        return Ok(());
    }
    *handed_on = number;
    Ok(())
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
pub(super) mod tests {
    use std::io::Write;

    use flate2::{Compress, Compression, Crc, FlushCompress};
    use tokio::io::AsyncReadExt;

    use super::*;

    /// A gzip member of `text`, built by hand so that tests can cut it anywhere: returns the
    /// member and the offset just after a full-flush point placed after `flush_at` bytes of text.
    pub(in crate::dap) fn gzip_member(text: &[u8], flush_at: usize) -> (Vec<u8>, usize) {
        let mut member = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        let mut deflate = Compress::new(Compression::default(), false);
        let mut compress = |chunk: &[u8], flush| {
            let mut buffer = Vec::with_capacity(chunk.len() * 2 + 1024);
            deflate.compress_vec(chunk, &mut buffer, flush).unwrap();
            buffer
        };
        let head = compress(&text[..flush_at], FlushCompress::Full);
        let tail = compress(&text[flush_at..], FlushCompress::Finish);
        member.extend_from_slice(&head);
        let flush_point = member.len();
        member.extend_from_slice(&tail);
        assert_eq!(deflate.total_in(), text.len() as u64);
        let mut crc = Crc::new();
        crc.update(text);
        member.write_all(&crc.sum().to_le_bytes()).unwrap();
        member
            .write_all(&(text.len() as u32).to_le_bytes())
            .unwrap();
        (member, flush_point)
    }

    async fn gunzip_all(compressed: &[u8]) -> io::Result<Vec<u8>> {
        let mut text = Vec::new();
        gunzip(compressed).read_to_end(&mut text).await?;
        Ok(text)
    }

    pub(in crate::dap) fn lines(count: usize) -> String {
        (1..=count)
            .map(|n| format!("{{\"key\": {{\"id\": {n}}}, \"value\": {{\"n\": \"row {n}\"}}}}\n"))
            .collect()
    }

    #[tokio::test]
    async fn reads_a_complete_member() {
        let text = lines(50);
        let (member, _) = gzip_member(text.as_bytes(), 100);
        assert_eq!(gunzip_all(&member).await.unwrap(), text.as_bytes());
    }

    #[tokio::test]
    async fn reads_concatenated_members() {
        let (a, _) = gzip_member(lines(3).as_bytes(), 10);
        let (b, _) = gzip_member(b"{\"key\": {\"id\": 99}}\n", 0);
        let joined = [a, b].concat();
        let text = gunzip_all(&joined).await.unwrap();
        assert_eq!(
            text,
            format!("{}{{\"key\": {{\"id\": 99}}}}\n", lines(3)).as_bytes()
        );
    }

    #[tokio::test]
    async fn detects_a_cut_mid_record() {
        let (member, _) = gzip_member(lines(50).as_bytes(), 100);
        let error = gunzip_all(&member[..member.len() / 2]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn detects_a_cut_at_a_line_boundary_after_a_full_flush() {
        let text = lines(50);
        let boundary = text.match_indices('\n').nth(24).unwrap().0 + 1;
        let (member, flush_point) = gzip_member(text.as_bytes(), boundary);
        // The cut body decodes to exactly 25 whole lines before the decoder notices.
        let mut decoded = Vec::new();
        let error = gunzip(&member[..flush_point])
            .read_to_end(&mut decoded)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(decoded, &text.as_bytes()[..boundary]);
    }

    #[tokio::test]
    async fn detects_a_missing_or_partial_trailer() {
        let (member, _) = gzip_member(lines(20).as_bytes(), 0);
        for cut in 1..=8 {
            let error = gunzip_all(&member[..member.len() - cut]).await.unwrap_err();
            assert_eq!(
                error.kind(),
                io::ErrorKind::UnexpectedEof,
                "trailer short by {cut}"
            );
        }
    }

    #[tokio::test]
    async fn detects_a_corrupt_trailer() {
        let (member, _) = gzip_member(lines(20).as_bytes(), 0);
        let crc_at = member.len() - 8;
        for (at, what) in [(crc_at, "CRC"), (crc_at + 4, "length")] {
            let mut corrupt = member.clone();
            corrupt[at] ^= 0x55;
            let error = gunzip_all(&corrupt).await.unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{what}");
        }
    }

    #[tokio::test]
    async fn detects_a_cut_inside_the_second_member_and_garbage_after_a_member() {
        let (a, _) = gzip_member(lines(3).as_bytes(), 0);
        let (b, _) = gzip_member(lines(3).as_bytes(), 0);
        let joined = [a.clone(), b].concat();
        assert!(gunzip_all(&joined[..joined.len() - 4]).await.is_err());
        assert!(gunzip_all(&joined[..a.len() + 5]).await.is_err());
        let garbage = [a, b"not gzip".to_vec()].concat();
        assert_eq!(
            gunzip_all(&garbage).await.unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[tokio::test]
    async fn an_empty_body_is_not_an_object() {
        assert!(gunzip_all(b"").await.is_err());
    }

    /// Runs [`forward_lines`], adding what it hands on to `batches`.
    async fn forward(
        lines: impl AsyncBufRead + Unpin,
        batch_records: usize,
        handed_on: &mut u64,
        batches: &mut Vec<RecordBatch>,
    ) -> io::Result<()> {
        let (sender, mut receiver) = mpsc::channel(1000);
        let result = forward_lines(
            lines,
            "obj",
            batch_records,
            handed_on,
            &super::super::record::RecordDecoder,
            &sender,
        )
        .await;
        drop(sender);
        while let Some(batch) = receiver.recv().await {
            batches.push(batch.unwrap());
        }
        result
    }

    fn ids(batches: &[RecordBatch]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| &b.records)
            .map(|r| r.key["id"].as_i64().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn batches_lines_and_keeps_malformed_ones() {
        let text = "{\"key\": {\"id\": 1}}\n\nnot json\r\n{\"key\": {\"id\": 2}, \"meta\": {\"action\": \"D\"}}\r\n{\"key\": {\"id\": 3}}";
        let (mut batches, mut handed_on) = (Vec::new(), 0);
        forward(text.as_bytes(), 2, &mut handed_on, &mut batches)
            .await
            .unwrap();
        assert_eq!(handed_on, 5);
        assert_eq!(ids(&batches), [1, 2, 3]);
        let sizes: Vec<(usize, usize)> = batches
            .iter()
            .map(|b| (b.records.len(), b.malformed.len()))
            .collect();
        assert_eq!(sizes, [(1, 1), (2, 0)]);
        assert_eq!(batches[0].malformed[0].line, "not json");
        assert_eq!(batches[0].malformed[0].object_id, "obj");
        assert_eq!(
            batches[1].records[0].line,
            "{\"key\": {\"id\": 2}, \"meta\": {\"action\": \"D\"}}"
        );
        assert_eq!(batches[1].records[0].action, crate::dap::Action::Delete);
        let bytes: u64 = batches.iter().map(|b| b.bytes).sum();
        assert_eq!(bytes, text.len() as u64);
    }

    #[tokio::test]
    async fn a_retry_skips_the_lines_already_handed_on() {
        let text = lines(10);
        // The first attempt breaks off after 7 whole lines: 2 full batches of 3 were handed on,
        // the 7th line was in a batch that never went out.
        let seventh_line_end = text.match_indices('\n').nth(6).unwrap().0 + 1;
        let (member, flush_point) = gzip_member(text.as_bytes(), seventh_line_end);
        let (mut batches, mut handed_on) = (Vec::new(), 0);
        assert!(
            forward(
                gunzip(&member[..flush_point]),
                3,
                &mut handed_on,
                &mut batches
            )
            .await
            .is_err()
        );
        assert_eq!(handed_on, 6);
        assert_eq!(ids(&batches), [1, 2, 3, 4, 5, 6]);
        forward(gunzip(&member[..]), 3, &mut handed_on, &mut batches)
            .await
            .unwrap();
        assert_eq!(ids(&batches), (1..=10).collect::<Vec<_>>());
        assert_eq!(handed_on, 10);
        let bytes: u64 = batches.iter().map(|b| b.bytes).sum();
        assert_eq!(bytes, text.len() as u64);
    }

    #[tokio::test]
    async fn stops_when_the_receiver_has_gone() {
        let (sender, receiver) = mpsc::channel(10);
        drop(receiver);
        let mut handed_on = 0;
        forward_lines(
            lines(10).as_bytes(),
            "obj",
            4,
            &mut handed_on,
            &super::super::record::RecordDecoder,
            &sender,
        )
        .await
        .unwrap();
        assert_eq!(handed_on, 0);
    }
}
