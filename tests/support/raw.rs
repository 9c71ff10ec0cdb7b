//! A raw HTTP/1.1 client connection, for tests about what happens on one
//! TCP connection (keep-alive, explicit `Connection: close`).

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header names lower-cased, in order of arrival.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the response announces that the server closes the connection.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }
}

pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl RawConn {
    pub async fn connect(port: u16) -> RawConn {
        Self::try_connect(port).await.expect("connect to pingress")
    }

    /// Like [`RawConn::connect`], `Err` when nothing listens (yet).
    pub async fn try_connect(port: u16) -> io::Result<RawConn> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        Ok(RawConn {
            stream,
            buf: Vec::new(),
        })
    }

    /// Sends `GET path` with the given Host on this connection.
    pub async fn send_get(&mut self, host: &str, path: &str) -> io::Result<()> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: raw-test\r\n\r\n");
        self.stream.write_all(req.as_bytes()).await
    }

    /// Sends `bytes` as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// `send_get` followed by `read_response`.
    pub async fn get(&mut self, host: &str, path: &str) -> io::Result<RawResponse> {
        self.send_get(host, path).await?;
        self.read_response().await
    }

    async fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(IO_TIMEOUT, self.stream.read(&mut chunk))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "read timed out"))??;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by peer",
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    async fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..pos]).into_owned();
                self.buf.drain(..pos + 2);
                return Ok(line);
            }
            self.fill().await?;
        }
    }

    async fn read_exact_buf(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            self.fill().await?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Reads one response (Content-Length or chunked body).
    pub async fn read_response(&mut self) -> io::Result<RawResponse> {
        let status_line = self.read_line().await?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let line = self.read_line().await?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| bad(format!("bad header line {line:?}")))?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
        let mut resp = RawResponse {
            status,
            headers,
            body: Vec::new(),
        };
        if status < 200 || status == 204 || status == 304 {
            return Ok(resp);
        }
        if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
            resp.body = self.read_exact_buf(len).await?;
        } else if resp
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let size_line = self.read_line().await?;
                let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16)
                    .map_err(|_| bad(format!("bad chunk size {size_line:?}")))?;
                if size == 0 {
                    // Trailers until an empty line.
                    while !self.read_line().await?.is_empty() {}
                    break;
                }
                let chunk = self.read_exact_buf(size).await?;
                resp.body.extend_from_slice(&chunk);
                self.read_line().await?;
            }
        } else {
            // Body delimited by connection close.
            loop {
                match self.fill().await {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e),
                }
            }
            resp.body = std::mem::take(&mut self.buf);
        }
        Ok(resp)
    }

    /// Every byte the peer sends until it closes the connection (or `timeout` passes, which
    /// panics): for tests about what exactly went over the wire.
    pub async fn read_to_close(&mut self, timeout: Duration) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        let mut chunk = [0u8; 8192];
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => panic!("the connection stayed open for {timeout:?}"),
                Ok(Ok(0)) | Ok(Err(_)) => return out,
                Ok(Ok(n)) => out.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// A raw TCP backend on an ephemeral port of 127.0.0.1: `serve` runs for every accepted
/// connection (its own task). The accept loop ends with the returned task.
pub async fn raw_backend<F, Fut>(serve: F) -> (u16, tokio::task::JoinHandle<()>)
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            if let Ok((s, _)) = listener.accept().await {
                tokio::spawn(serve(s));
            }
        }
    });
    (port, task)
}

/// A keep-alive HTTP/1 backend answering each request (bodiless) with `answer(head)`, where
/// `head` is the request head as text, after `delay` (zero: at once).
pub async fn answering_backend<F>(delay: Duration, answer: F) -> (u16, tokio::task::JoinHandle<()>)
where
    F: Fn(&str) -> Vec<u8> + Send + Sync + 'static,
{
    let answer = std::sync::Arc::new(answer);
    raw_backend(move |mut s| {
        let answer = answer.clone();
        async move {
            let mut buf = Vec::new();
            while let Some(end) = read_head(&mut s, &mut buf).await {
                let head: String = String::from_utf8_lossy(&buf[..end]).into_owned();
                buf.drain(..end);
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if s.write_all(&answer(&head)).await.is_err() {
                    return;
                }
            }
        }
    })
    .await
}

/// Read from `s` into `buf` until it holds a whole request head; its length (with the blank
/// line), or `None` when the connection ends first.
pub async fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
