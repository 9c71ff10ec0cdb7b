//! The request body before the upstream is contacted: `proxy-body-size`, `Expect`, and
//! `proxy-request-buffering`. Invariant: a request body is never altered: every byte reaches
//! the upstream in order, or the request is refused (413) or aborted on both sides; nothing
//! read here is lost. A buffered body (the default, as ingress-nginx's `proxy_request_buffering
//! on`) is read whole here, in memory up to `client-body-buffer-size` and in an unlinked
//! temporary file beyond, and replayed to every upstream attempt through the carried
//! `request_body_replay` hook (vendor/PATCHES.md). Unbuffered, a body without Content-Length
//! past what is checked here is counted as it streams (`request_body_filter`).

use std::io::SeekFrom;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;
use pingora::{ErrorType, OrErr, Result};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::route::Route;

/// What the request phase does with the body before the upstream is contacted.
#[derive(Debug)]
pub enum Admission {
    /// Over `proxy-body-size`: answer 413 and close.
    TooLarge,
    /// Proxy it; `continued`: pingress answered `Expect: 100-continue` (not to be forwarded);
    /// `buffered`: the whole body, read before the upstream is contacted.
    Proxy {
        continued: bool,
        buffered: Option<Buffered>,
    },
}

/// How the request phase treats the body (from the route's policy).
#[derive(Debug, Clone, Copy)]
pub struct BodyPolicy {
    /// `proxy-body-size`; 0 = unlimited.
    pub limit: u64,
    /// `proxy-request-buffering` on: `Some(client-body-buffer-size)`.
    pub buffer: Option<u64>,
}

/// nginx's order: a Content-Length over the limit is refused first (413, no 100 Continue);
/// then the body will be read, so `Expect: 100-continue` is answered; then the body is
/// buffered (413 as soon as it crosses the limit, before the upstream sees a byte), or, not
/// buffered, a small limit is checked by reading ahead. gRPC (an h2 upstream) always streams,
/// as nginx's `grpc_pass` does.
pub async fn admit(session: &mut Session, policy: BodyPolicy, route: &Route) -> Result<Admission> {
    if session.as_mut().is_body_empty() {
        // nothing to limit, answer (Expect) or buffer: what every step below decides for an
        // empty body, without their header lookups (most requests; issue 21)
        return Ok(Admission::Proxy {
            continued: false,
            buffered: None,
        });
    }
    let limit = policy.limit;
    if limit > 0 && declared_too_large(session, limit) {
        return Ok(Admission::TooLarge);
    }
    let continued = answer_expect_continue(session).await?;
    let streams = route.tls.upstream.protocol.h2()
        || session.as_mut().is_body_empty()
        || session.as_mut().is_body_done();
    if let (Some(memory), false) = (policy.buffer, streams) {
        return Ok(match buffer(session, limit, memory).await? {
            Some(body) => Admission::Proxy {
                continued,
                buffered: Some(body),
            },
            None => Admission::TooLarge,
        });
    }
    if limit > 0 && small_body_too_large(session, limit, route).await? {
        return Ok(Admission::TooLarge);
    }
    Ok(Admission::Proxy {
        continued,
        buffered: None,
    })
}

/// Whether the request's Content-Length is over `limit` (413 before the upstream is
/// contacted).
fn declared_too_large(session: &Session, limit: u64) -> bool {
    session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > limit)
}

/// Pingora's retry buffer (pingora-core `BODY_BUF_LIMIT`): what it replays to the upstream.
const RETRY_BUFFER: u64 = 64 * 1024;

/// For a limit the retry buffer can hold, a body without Content-Length is read ahead until it
/// ends or crosses the limit, so an over-limit body is refused before the upstream sees a
/// byte, as ingress-nginx's buffered requests are. Safe by construction: reading stops as soon
/// as the total passes the limit, so the buffer only overflows (and stops being replayable)
/// when the request is refused anyway; a body within the limit is replayed whole by Pingora.
/// Larger limits stream (counted in `request_body_filter`), and gRPC always streams.
async fn small_body_too_large(session: &mut Session, limit: u64, route: &Route) -> Result<bool> {
    if limit > RETRY_BUFFER
        || route.tls.upstream.protocol.h2()
        || session
            .req_header()
            .headers
            .contains_key(http::header::CONTENT_LENGTH)
        || session.as_mut().is_body_empty()
        || session.as_mut().is_body_done()
    {
        return Ok(false);
    }
    session.as_mut().enable_retry_buffering();
    let mut total = 0u64;
    while let Some(b) = read_body(session).await? {
        total += b.len() as u64;
        if total > limit {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The next piece of the client's body. A failure is the client's (a malformed chunked body, a
/// timeout, a closed connection): 400/408 as nginx, logged at info, not a 500.
async fn read_body(session: &mut Session) -> Result<Option<bytes::Bytes>> {
    session
        .as_mut()
        .read_request_body()
        .await
        .map_err(|e| e.into_down())
}

/// Answer `Expect: 100-continue` of an HTTP/1.1 request whose body is about to be read (nginx
/// answers it itself rather than waiting for the upstream). `true` when answered.
async fn answer_expect_continue(session: &mut Session) -> Result<bool> {
    let expects = session
        .req_header()
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !expects || session.as_mut().is_http2() || session.as_mut().is_body_done() {
        return Ok(false);
    }
    session.as_mut().write_continue_response().await?;
    Ok(true)
}

/// Read the whole body: `None` once it crosses `limit` (0 = unlimited). Chunks stay in memory
/// while the total is within `memory` bytes; past it everything goes to a temporary file.
async fn buffer(session: &mut Session, limit: u64, memory: u64) -> Result<Option<Buffered>> {
    let mut body = Buffered::default();
    while let Some(chunk) = read_body(session).await? {
        if limit > 0 && body.len + chunk.len() as u64 > limit {
            return Ok(None);
        }
        body.push(chunk, memory).await?;
    }
    body.finish().await?;
    Ok(Some(body))
}

async fn write_chunk(f: &mut tokio::fs::File, chunk: &[u8]) -> Result<()> {
    f.write_all(chunk)
        .await
        .or_err(ErrorType::InternalError, "writing the request body file")
}

/// A new temporary file, unlinked at once (nothing is left behind whatever happens next).
async fn temp_file() -> Result<tokio::fs::File> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "pingress-body-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let file = tokio::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .await
        .or_err_with(ErrorType::InternalError, || {
            format!("creating {} for a buffered request body", path.display())
        })?;
    let _ = tokio::fs::remove_file(&path).await;
    Ok(file)
}

/// Replay chunk size from the temporary file, and the write batch to it.
const REPLAY_CHUNK: u64 = 256 * 1024;
const FILE_BATCH: u64 = 256 * 1024;

/// A request body read whole before the upstream was contacted; replayed from the start to
/// every upstream attempt.
#[derive(Debug, Default)]
pub struct Buffered {
    len: u64,
    /// The body (in memory), or what is not written to `file` yet.
    memory: Vec<Bytes>,
    /// Bytes in `memory`.
    pending: u64,
    file: Option<tokio::fs::File>,
    /// Replay position: the next memory chunk, or bytes of the file already sent.
    next: usize,
    sent: u64,
}

impl Buffered {
    /// The body's length (sent upstream as Content-Length).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Kept in a temporary file (over `client-body-buffer-size`).
    pub fn on_disk(&self) -> bool {
        self.file.is_some()
    }

    /// Append a chunk: kept in memory while the total is within `memory` bytes, otherwise
    /// everything so far and from now on goes to a temporary file.
    /// Once on disk, `memory` holds what is not written yet, written in batches of
    /// [`FILE_BATCH`] (each file operation is a blocking-pool round trip).
    async fn push(&mut self, chunk: Bytes, memory: u64) -> Result<()> {
        self.len += chunk.len() as u64;
        self.pending += chunk.len() as u64;
        self.memory.push(chunk);
        if self.file.is_none() && self.len > memory {
            self.file = Some(temp_file().await?);
        }
        if self.file.is_some() && self.pending >= FILE_BATCH {
            self.write_pending().await?;
        }
        Ok(())
    }

    async fn write_pending(&mut self) -> Result<()> {
        let Some(f) = &mut self.file else {
            return Ok(());
        };
        let mut batch = BytesMut::with_capacity(self.pending as usize);
        for c in self.memory.drain(..) {
            batch.extend_from_slice(&c);
        }
        self.pending = 0;
        write_chunk(f, &batch).await
    }

    /// The body is complete: what was written to the file is readable.
    async fn finish(&mut self) -> Result<()> {
        self.write_pending().await?;
        match &mut self.file {
            Some(f) => f
                .flush()
                .await
                .or_err(ErrorType::InternalError, "flushing the request body file"),
            None => Ok(()),
        }
    }

    /// A second reader of the whole body (a mirror copy) that leaves this body's replay alone:
    /// the memory chunks, or the file read by position.
    pub async fn reader(&self) -> Result<Reader> {
        match &self.file {
            None => Ok(Reader::Memory(self.memory.iter().cloned().collect())),
            Some(f) => {
                let f = f
                    .try_clone()
                    .await
                    .or_err(ErrorType::InternalError, "reopening the request body file")?;
                Ok(Reader::File {
                    file: Arc::new(f.into_std().await),
                    len: self.len,
                    pos: 0,
                })
            }
        }
    }

    /// Start the replay again (a new upstream attempt).
    pub fn rewind(&mut self) {
        self.next = 0;
        self.sent = 0;
    }

    /// The next chunk to send upstream and whether it is the last.
    pub async fn next_chunk(&mut self) -> Result<(Bytes, bool)> {
        let Some(f) = &mut self.file else {
            let chunk = self.memory.get(self.next).cloned().unwrap_or_default();
            self.next += 1;
            return Ok((chunk, self.next >= self.memory.len()));
        };
        if self.sent == 0 {
            f.seek(SeekFrom::Start(0))
                .await
                .or_err(ErrorType::InternalError, "rewinding the request body file")?;
        }
        let want = REPLAY_CHUNK.min(self.len - self.sent) as usize;
        let mut buf = BytesMut::zeroed(want);
        f.read_exact(&mut buf)
            .await
            .or_err(ErrorType::InternalError, "reading the request body file")?;
        self.sent += want as u64;
        Ok((buf.freeze(), self.sent >= self.len))
    }
}

/// A buffered body read again from its start (see [`Buffered::reader`]).
#[derive(Debug)]
pub enum Reader {
    Memory(std::collections::VecDeque<Bytes>),
    /// `pread` on a duplicate of the file descriptor: the shared file offset is not moved.
    File {
        file: Arc<std::fs::File>,
        len: u64,
        pos: u64,
    },
}

impl Reader {
    /// The body's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Reader::Memory(chunks) => chunks.iter().map(|c| c.len() as u64).sum(),
            Reader::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next piece of the body, `None` at its end.
    pub async fn next(&mut self) -> std::io::Result<Option<Bytes>> {
        match self {
            Reader::Memory(chunks) => Ok(chunks.pop_front()),
            Reader::File { file, len, pos } => {
                if *pos >= *len {
                    return Ok(None);
                }
                let want = REPLAY_CHUNK.min(*len - *pos) as usize;
                let (file, at) = (file.clone(), *pos);
                let buf = tokio::task::spawn_blocking(move || {
                    use std::os::unix::fs::FileExt;
                    let mut buf = vec![0u8; want];
                    file.read_exact_at(&mut buf, at).map(|()| buf)
                })
                .await
                .map_err(std::io::Error::other)??;
                *pos += want as u64;
                Ok(Some(Bytes::from(buf)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn replay(body: &mut Buffered) -> (Vec<u8>, usize) {
        let (mut out, mut chunks) = (Vec::new(), 0);
        loop {
            let (chunk, end) = body.next_chunk().await.unwrap();
            out.extend_from_slice(&chunk);
            chunks += 1;
            if end {
                return (out, chunks);
            }
        }
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    async fn buffered(parts: &[&[u8]], memory: u64) -> Buffered {
        let mut body = Buffered::default();
        for p in parts {
            body.push(Bytes::copy_from_slice(p), memory).await.unwrap();
        }
        body.finish().await.unwrap();
        body
    }

    #[tokio::test]
    async fn a_small_body_stays_in_memory_and_replays_whole_every_time() {
        let d = data(3000);
        let mut body = buffered(&[&d[..1000], &d[1000..]], 8192).await;
        assert!(!body.on_disk());
        assert_eq!(body.len(), 3000);
        for _ in 0..2 {
            body.rewind();
            assert_eq!(replay(&mut body).await, (d.clone(), 2));
        }
    }

    #[tokio::test]
    async fn a_body_over_the_buffer_size_spills_to_an_unlinked_file_and_replays_whole() {
        let d = data(700_000);
        let parts: Vec<&[u8]> = d.chunks(5000).collect();
        let mut body = buffered(&parts, 8192).await;
        assert!(body.on_disk());
        assert_eq!(body.len(), 700_000);
        for _ in 0..3 {
            body.rewind();
            let (got, chunks) = replay(&mut body).await;
            assert!(got == d, "the replayed body differs");
            assert_eq!(chunks, 3, "256 KiB chunks");
        }
        let pid = std::process::id().to_string();
        let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with("pingress-body-") && name.contains(&pid)
            })
            .collect();
        assert!(left.is_empty(), "temporary files left behind: {left:?}");
    }

    async fn read_all(mut r: Reader) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(c) = r.next().await.unwrap() {
            out.extend_from_slice(&c);
        }
        out
    }

    #[tokio::test]
    async fn a_second_reader_sees_the_whole_body_and_leaves_the_replay_alone() {
        for (n, memory) in [(3000, 8192), (700_000, 8192)] {
            let d = data(n);
            let parts: Vec<&[u8]> = d.chunks(5000).collect();
            let mut body = buffered(&parts, memory).await;
            // the replay half done, then a copy read whole, then the replay finishes
            let (first, _) = body.next_chunk().await.unwrap();
            let copy = read_all(body.reader().await.unwrap()).await;
            assert!(copy == d, "{n}: the copy differs");
            let mut rest = first.to_vec();
            loop {
                let (c, end) = body.next_chunk().await.unwrap();
                rest.extend_from_slice(&c);
                if end {
                    break;
                }
            }
            assert!(rest == d, "{n}: the replay differs after a copy was read");
        }
    }

    #[tokio::test]
    async fn an_empty_chunked_body_replays_as_one_empty_end() {
        let mut body = buffered(&[], 8192).await;
        assert!(body.is_empty());
        assert_eq!(replay(&mut body).await, (Vec::new(), 1));
    }
}
