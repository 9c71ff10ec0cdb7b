//! Runs the `pingress` binary as a child process for a test.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, HOST};
use reqwest::{Method, StatusCode, Version};

use super::echo::{Echo, BACKEND_HEADER};
use super::wait_until;

/// How long the binary may take to start answering HTTP.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// Whether process `pid` holds a listening TCP socket on `port` (from `/proc/net/tcp{,6}` and
/// `/proc/PID/fd`).
pub fn owns_listener(pid: u32, port: u16) -> bool {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9))
            else {
                continue;
            };
            let p = local
                .rsplit(':')
                .next()
                .and_then(|h| u16::from_str_radix(h, 16).ok());
            if p == Some(port) && *state == "0A" {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .map(|l| inodes.iter().any(|i| l.as_os_str() == i.as_str()))
            .unwrap_or(false)
    })
}

/// A port that was free a moment ago (bound to 127.0.0.1:0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// HTTP/1.1-only client that never uses a proxy from the environment and never follows
/// redirects (tests check them).
pub fn http1_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("build http1 client")
}

/// HTTP/1.1-only client opening a new connection for every request.
pub fn http1_client_no_pool() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("build http1 client")
}

/// h2c (HTTP/2 with prior knowledge) client; `resolve` maps host names to
/// addresses so requests can carry a real `:authority`.
pub fn h2c_client(resolve: &[(&str, SocketAddr)]) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(10));
    for (host, addr) in resolve {
        builder = builder.resolve(host, *addr);
    }
    builder.build().expect("build h2c client")
}

/// A response as seen by the test client.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl Reply {
    pub async fn from_response(resp: reqwest::Response) -> Result<Reply, reqwest::Error> {
        let status = resp.status();
        let version = resp.version();
        let headers = resp.headers().clone();
        let body = resp.bytes().await?;
        Ok(Reply {
            status,
            version,
            headers,
            body,
        })
    }

    /// The echo backend's JSON; panics (showing the body) if it is not one.
    pub fn echo(&self) -> Echo {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "expected echo JSON, got status {} body {:?}: {e}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Name of the echo backend that answered, if any.
    pub fn backend(&self) -> Option<String> {
        self.headers
            .get(BACKEND_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

type Lines = Arc<Mutex<Vec<String>>>;

fn collect_lines<R: Read + Send + 'static>(reader: R, lines: Lines) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            match line {
                Ok(line) => lines.lock().unwrap().push(line),
                Err(_) => break,
            }
        }
    })
}

/// A running `pingress` process; killed on drop.
pub struct Pingress {
    pub port: u16,
    /// `--healthz-port`.
    pub healthz_port: u16,
    /// The HTTPS listener (`--https-port`, a free port unless the test passes one).
    pub https_port: u16,
    child: Child,
    stderr: Lines,
    stdout: Lines,
    readers: Vec<JoinHandle<()>>,
    client: reqwest::Client,
    fresh_client: reqwest::Client,
}

impl Pingress {
    /// `pingress --manifests DIR --http-port PORT`, waiting until it answers HTTP.
    pub async fn start(dir: &Path) -> Pingress {
        Self::start_with_args(dir, &[]).await
    }

    /// Like [`Pingress::start`] with extra command line arguments.
    pub async fn start_with_args(dir: &Path, extra: &[&str]) -> Pingress {
        Self::try_start_with_args(dir, extra)
            .await
            .unwrap_or_else(|failure| panic!("pingress did not start: {failure}"))
    }

    /// Like [`Pingress::start_with_args`], but a process that exits before it answers (an
    /// unknown flag, a bad configuration) is an `Err` with its exit status, stderr and stdout
    /// (the last of three tries).
    pub async fn try_start_with_args(dir: &Path, extra: &[&str]) -> Result<Pingress, String> {
        // A port picked by `free_port` can be taken by someone else before
        // the child binds it: retry with another port if the child exits.
        let mut last_failure = String::new();
        for _ in 0..3 {
            match Self::try_start(dir, extra).await {
                Ok(px) => return Ok(px),
                Err(failure) => last_failure = failure,
            }
        }
        Err(last_failure)
    }

    async fn try_start(dir: &Path, extra: &[&str]) -> Result<Pingress, String> {
        let mut args = vec!["--manifests".to_string(), dir.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let px = Self::spawn(&args, &[]);
        px.wait_http().await
    }

    /// Cluster mode: `pingress --kubeconfig FILE --http-port P --healthz-port H EXTRA...` with
    /// `env`, waiting until the proxy answers HTTP (i.e. the first table is published).
    pub async fn start_cluster(
        kubeconfig: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Pingress {
        let mut last_failure = String::new();
        for _ in 0..3 {
            let px = Self::spawn_cluster(kubeconfig, extra, env);
            match px.wait_http().await {
                Ok(px) => return px,
                Err(failure) => last_failure = failure,
            }
        }
        panic!("pingress did not start: {last_failure}");
    }

    /// Cluster mode without waiting for anything.
    pub fn spawn_cluster(kubeconfig: &Path, extra: &[&str], env: &[(&str, &str)]) -> Pingress {
        let mut args = vec!["--kubeconfig".to_string(), kubeconfig.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::spawn(&args, env)
    }

    /// Start the binary with `--http-port` and `--healthz-port` on free ports plus `args`.
    pub fn spawn(args: &[String], env: &[(&str, &str)]) -> Pingress {
        let port = free_port();
        let healthz_port = free_port();
        // the HTTPS listener: a free port unless the test passes its own
        let https_port = match args.iter().position(|a| a == "--https-port") {
            Some(i) => args
                .get(i + 1)
                .and_then(|p| p.parse().ok())
                .expect("--https-port value"),
            None => free_port(),
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pingress"));
        cmd.arg("--http-port")
            .arg(port.to_string())
            .arg("--healthz-port")
            .arg(healthz_port.to_string());
        if !args.iter().any(|a| a == "--https-port") {
            cmd.arg("--https-port").arg(https_port.to_string());
        }
        cmd.args(args)
            .env_remove("POD_NAMESPACE")
            .env_remove("POD_NAME")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn pingress binary");
        let stderr = Lines::default();
        let stdout = Lines::default();
        let readers = vec![
            collect_lines(child.stderr.take().unwrap(), stderr.clone()),
            collect_lines(child.stdout.take().unwrap(), stdout.clone()),
        ];
        Pingress {
            port,
            healthz_port,
            https_port,
            child,
            stderr,
            stdout,
            readers,
            client: http1_client(),
            fresh_client: http1_client_no_pool(),
        }
    }

    /// Wait (bounded) until the proxy answers HTTP; `Err` when the process exited first.
    pub async fn wait_http(mut self) -> Result<Pingress, String> {
        let port = self.port;
        let px = &mut self;
        let deadline = Instant::now() + START_DEADLINE;
        let probe = reqwest::Client::builder()
            .no_proxy()
            .http1_only()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        loop {
            if let Some(status) = px.child.try_wait().expect("try_wait") {
                // The pipes are closed now: let the readers drain them.
                for reader in px.readers.drain(..) {
                    let _ = reader.join();
                }
                return Err(format!(
                    "exited with {status} before answering on port {port}\nstderr:\n{}\nstdout:\n{}",
                    px.stderr(),
                    px.stdout()
                ));
            }
            if TcpStream::connect_timeout(
                &SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_millis(200),
            )
            .is_ok()
            {
                // with use-proxy-protocol the listener answers nothing without a PROXY
                // header: its table is served once /readyz says so
                let answered = probe
                    .get(px.url("/"))
                    .header(HOST, "pingress-readiness-probe.invalid")
                    .send()
                    .await
                    .is_ok()
                    || px.health("/readyz").await == Some(200);
                if answered {
                    // Whatever answered must be our child: a port picked by `free_port` may
                    // have been taken by another test's process before the child could bind
                    // it (the child then fails to bind), and talking to that process would
                    // mix tests up. Linux: the listening sockets' inodes among the child's fds.
                    let pid = px.child.id();
                    if owns_listener(pid, port)
                        && owns_listener(pid, px.healthz_port)
                        && owns_listener(pid, px.https_port)
                    {
                        break;
                    }
                    if let Some(status) = px.child.try_wait().expect("try_wait") {
                        return Err(format!(
                            "exited with {status}; port {port} is another process's"
                        ));
                    }
                    let _ = px.child.kill();
                    return Err(format!(
                        "port {port} or {} answers but is not held by our pingress (taken by another process)",
                        px.healthz_port
                    ));
                }
            }
            if Instant::now() >= deadline {
                let _ = px.child.kill();
                panic!(
                    "pingress did not answer HTTP on port {port} within {START_DEADLINE:?}\nstderr:\n{}\nstdout:\n{}",
                    px.stderr(),
                    px.stdout()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(self)
    }

    /// Status code of `GET http://127.0.0.1:HEALTHZ/path`, `None` when nothing answers.
    pub async fn health(&self, path: &str) -> Option<u16> {
        let c = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        c.get(format!("http://127.0.0.1:{}{path}", self.healthz_port))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    /// `GET http://127.0.0.1:HEALTHZ/path_and_query`: status and body.
    pub async fn health_get(&self, path_and_query: &str) -> (u16, String) {
        let r = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
            .get(format!(
                "http://127.0.0.1:{}{path_and_query}",
                self.healthz_port
            ))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path_and_query} on the health port: {e}"));
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    }

    /// Process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send a signal by name (`TERM`, `KILL`) with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig} {} failed", self.pid());
    }

    /// Wait (bounded) for the process to exit; its exit status, `None` on timeout.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return Some(st);
            }
            if start.elapsed() >= timeout {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path_and_query)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().join("\n")
    }

    /// How many lines the process has written to stdout so far (a mark for
    /// `stdout_lines_since`).
    pub fn stdout_line_count(&self) -> usize {
        self.stdout.lock().unwrap().len()
    }

    /// The stdout lines written after the first `mark`.
    pub fn stdout_lines_since(&self, mark: usize) -> Vec<String> {
        let lines = self.stdout.lock().unwrap();
        lines
            .get(mark..)
            .map(<[String]>::to_vec)
            .unwrap_or_default()
    }

    /// Waits (bounded) until stderr contains `needle`.
    pub async fn wait_stderr_contains(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || async move { self.stderr().contains(needle) })
            .await
            .is_some()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Sends a request with the given Host header; errors are returned.
    pub async fn try_request(
        &self,
        method: Method,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Reply, reqwest::Error> {
        let mut req = self
            .client
            .request(method, self.url(path))
            .header(HOST, host);
        for (name, value) in headers {
            req = req.header(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        if !body.is_empty() {
            req = req.body(body);
        }
        Reply::from_response(req.send().await?).await
    }

    /// Like [`Pingress::try_request`] but panics on transport errors.
    pub async fn request(
        &self,
        method: Method,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        let what = format!("{method} http://{host}{path}");
        self.try_request(method, host, path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{what} failed: {e:?}\nstderr:\n{}", self.stderr()))
    }

    /// `GET host path` on a new connection (no keep-alive reuse).
    pub async fn get_fresh(&self, host: &str, path: &str) -> Reply {
        let resp = self
            .fresh_client
            .get(self.url(path))
            .header(HOST, host)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET http://{host}{path} failed: {e:?}"));
        Reply::from_response(resp)
            .await
            .unwrap_or_else(|e| panic!("GET http://{host}{path} body failed: {e:?}"))
    }

    pub async fn try_get(&self, host: &str, path: &str) -> Result<Reply, reqwest::Error> {
        self.try_request(Method::GET, host, path, &[], Vec::new())
            .await
    }

    pub async fn get(&self, host: &str, path: &str) -> Reply {
        self.request(Method::GET, host, path, &[], Vec::new()).await
    }

    /// The text of `/metrics` on the health port.
    pub async fn metrics(&self) -> String {
        self.try_metrics().await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Pingress::metrics`], a transport error or a non-200 answer as `Err`.
    pub async fn try_metrics(&self) -> Result<String, String> {
        let resp = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("metrics client: {e}"))?
            .get(format!("http://127.0.0.1:{}/metrics", self.healthz_port))
            .send()
            .await
            .map_err(|e| format!("GET /metrics: {e}"))?;
        if resp.status() != StatusCode::OK {
            return Err(format!("GET /metrics: {}", resp.status()));
        }
        resp.text().await.map_err(|e| format!("/metrics body: {e}"))
    }

    /// Polls (bounded) until `GET host path` answers `status`; panics otherwise.
    pub async fn wait_status(&self, host: &str, path: &str, status: u16, timeout: Duration) {
        let ok = wait_until(timeout, || async move {
            matches!(self.try_get(host, path).await, Ok(r) if r.status.as_u16() == status)
        })
        .await;
        if ok.is_none() {
            let last = self.try_get(host, path).await;
            panic!(
                "GET http://{host}{path} did not answer {status} within {timeout:?}; last: {:?}\nstderr:\n{}",
                last.map(|r| (r.status, r.text())),
                self.stderr()
            );
        }
    }

    /// Polls (bounded) until `GET host path` is answered 200 by echo backend
    /// `backend`; returns how long that took, or `None` on timeout.
    pub async fn wait_backend(
        &self,
        host: &str,
        path: &str,
        backend: &str,
        timeout: Duration,
    ) -> Option<Duration> {
        wait_until(timeout, || async move {
            matches!(self.try_get(host, path).await,
                Ok(r) if r.status == StatusCode::OK && r.backend().as_deref() == Some(backend))
        })
        .await
    }
}

impl Drop for Pingress {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- pingress (port {}) stderr ----\n{}\n---- pingress stdout ----\n{}",
                self.port,
                self.stderr(),
                self.stdout()
            );
        }
    }
}
