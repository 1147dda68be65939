//! What the `weft` binary's integration tests share: a real upstream
//! written with hyper, the `weft` process, and a small HTTP client.

#![allow(dead_code)]

pub mod pki;

use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// A listener setting for a config's listener line (after its `address`):
/// an access log to stdout. Forwarding without filters has two paths in
/// the proxy: the plain one, and, when something reads the stream after
/// the request is sent (an access log does), the full one. Tests run
/// their forwarding on both by adding this.
pub const ACCESS_LOG: &str = "\n    access_log: {path: '-', fields: [path]}";

/// A compiled filter from `cargo xtask build-filters`.
pub fn filter(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/filters")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the filters first with `cargo xtask build-filters` (`cargo xtask test` does)",
        path.display()
    );
    path.canonicalize().unwrap()
}

/// The `weft` binary, its module cache in the build's scratch directory
/// (shared by the tests, kept between runs) instead of the user's.
pub fn weft_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weft"));
    command.env(
        "XDG_CACHE_HOME",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("xdg-cache"),
    );
    command
}

/// A request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// A real HTTP/1.1 upstream on 127.0.0.1:0 that records every request and
/// answers 200 with `x-upstream: yes`, `x-served-by: NAME` and body
/// `upstream says hi` — after a second for paths starting with `/slow`,
/// after N ms for `/delay/N`; 403 for paths containing `deny`; status N
/// for `/status/N`; 503 while `fail_next` is above zero (counting it
/// down); `/healthz` answers 200 while `healthy`, else 500.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    /// Requests to answer 503 before answering normally again.
    pub fail_next: Arc<AtomicUsize>,
    /// What `/healthz` says.
    pub healthy: Arc<std::sync::atomic::AtomicBool>,
    _thread: std::thread::JoinHandle<()>,
}

impl Upstream {
    pub fn start() -> Upstream {
        Upstream::named("upstream")
    }

    /// An upstream that says `x-served-by: NAME`.
    pub fn named(name: &'static str) -> Upstream {
        Upstream::named_at(name, "127.0.0.1:0".parse().unwrap())
    }

    /// An upstream that says `x-served-by: NAME`, bound to `bind`.
    pub fn named_at(name: &'static str, bind: SocketAddr) -> Upstream {
        let listener = std::net::TcpListener::bind(bind).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        let fail_next = Arc::new(AtomicUsize::new(0));
        let failing = fail_next.clone();
        let healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let health = healthy.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let (tcp, _) = listener.accept().await.unwrap();
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let record = record.clone();
                    let failing = failing.clone();
                    let health = health.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req: Request<Incoming>| {
                            let record = record.clone();
                            let failing = failing.clone();
                            let health = health.clone();
                            async move {
                                let (parts, body) = req.into_parts();
                                let path = parts.uri.path().to_string();
                                let mut status = hyper::StatusCode::OK;
                                if path.contains("deny") {
                                    status = hyper::StatusCode::FORBIDDEN;
                                }
                                if let Some(code) = path.strip_prefix("/status/") {
                                    status =
                                        hyper::StatusCode::from_bytes(code.as_bytes()).unwrap();
                                }
                                if path == "/healthz" && !health.load(Ordering::SeqCst) {
                                    status = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                                }
                                if failing
                                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                        n.checked_sub(1)
                                    })
                                    .is_ok()
                                {
                                    status = hyper::StatusCode::SERVICE_UNAVAILABLE;
                                }
                                let body = body.collect().await?.to_bytes();
                                record.lock().unwrap().push(Seen {
                                    method: parts.method.to_string(),
                                    path: parts.uri.to_string(),
                                    headers: parts.headers,
                                    body,
                                });
                                if path.starts_with("/slow") {
                                    tokio::time::sleep(Duration::from_secs(1)).await;
                                }
                                if let Some(ms) = path.strip_prefix("/delay/") {
                                    tokio::time::sleep(Duration::from_millis(ms.parse().unwrap()))
                                        .await;
                                }
                                let mut response = Response::new(Full::new(Bytes::from_static(
                                    b"upstream says hi",
                                )));
                                *response.status_mut() = status;
                                response
                                    .headers_mut()
                                    .insert("x-upstream", "yes".parse().unwrap());
                                response
                                    .headers_mut()
                                    .insert("x-served-by", name.parse().unwrap());
                                Ok::<_, hyper::Error>(response)
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tcp), service)
                            .await;
                    });
                }
            });
        });
        Upstream {
            addr,
            seen,
            connections,
            fail_next,
            healthy,
            _thread: thread,
        }
    }
}

/// A running `weft` process; killed on drop.
pub struct Weft {
    child: Child,
    /// The first listener.
    pub addr: SocketAddr,
    /// Every listener (and `admin`) by name.
    pub listeners: std::collections::HashMap<String, SocketAddr>,
    log: PathBuf,
    /// Lines the process prints on stdout after `ready`.
    stdout: std::sync::mpsc::Receiver<String>,
    _dir: tempfile::TempDir,
}

impl Weft {
    /// Writes `config` to a temporary file and runs `weft proxy` on it.
    pub fn proxy(config: &str) -> Weft {
        Weft::start(&["proxy", "--config"], config)
    }

    /// Writes `config` to a temporary file and runs `weft control serve`
    /// on it; its address is `addr`.
    pub fn control(config: &str) -> Weft {
        Weft::start(&["control", "serve", "--config"], config)
    }

    /// Runs `weft ARGS CONFIG_FILE` and waits until it is ready.
    fn start(args: &[&str], config: &str) -> Weft {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("weft.yaml");
        std::fs::write(&config_path, config).unwrap();
        let log = dir.path().join("weft.log");
        let mut child = weft_command()
            .args(args)
            .arg(&config_path)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        // `listening: NAME http://ADDR` lines, then `ready`.
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut listeners = std::collections::HashMap::new();
        let mut first = None;
        loop {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            let line = line.trim();
            if line == "ready" {
                break;
            }
            let Some((name, addr)) = line.strip_prefix("listening: ").and_then(|l| {
                l.split_once(" http://")
                    .or_else(|| l.split_once(" https://"))
            }) else {
                let _ = child.kill();
                panic!(
                    "weft did not start ({line:?}): {}",
                    std::fs::read_to_string(&log).unwrap()
                );
            };
            let addr: SocketAddr = addr.parse().unwrap();
            first.get_or_insert(addr);
            listeners.insert(name.to_string(), addr);
        }
        // The rest of stdout (access logs to `-`) is read on a thread, so
        // that the process never blocks on a full pipe.
        let (lines, stdout_lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        Weft {
            child,
            addr: first.unwrap(),
            listeners,
            log,
            stdout: stdout_lines,
            _dir: dir,
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Waits (up to `timeout`) for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The next line the process prints on stdout (within 10 s).
    pub fn read_stdout_line(&self) -> String {
        self.stdout
            .recv_timeout(Duration::from_secs(10))
            .expect("no line on stdout within 10 s")
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }

    /// Waits until the log contains `needle`; returns the log.
    pub fn wait_for_log(&self, needle: &str) -> String {
        eventually(Duration::from_secs(10), || {
            let log = self.log();
            if log.contains(needle) {
                Ok(log)
            } else {
                Err(format!("log never showed {needle:?}:\n{log}"))
            }
        })
    }
}

/// Calls `check` every 20 ms until it gives `Ok`, for up to `timeout`
/// (what a busy machine may need); then fails the test with the last
/// `Err`, which says what was seen instead.
pub fn eventually<T>(timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return value,
            Err(seen) => assert!(Instant::now() < deadline, "{seen}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Weft {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response as the client got it.
pub struct Got {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

/// Sends one request with hyper's client on a new connection, with
/// `host: test.weft` unless `headers` give one.
pub fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Got {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut request = Request::builder().method(method).uri(path);
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            request = request.header("host", "test.weft");
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Got {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    })
}

/// Runs `weft ARGS` to completion: (exit code, stdout, stderr).
pub fn weft(args: &[&str]) -> (i32, String, String) {
    let out = weft_command().args(args).output().unwrap();
    let mut stderr = String::new();
    out.stderr.as_slice().read_to_string(&mut stderr).unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

/// Writes `request` (raw HTTP/1.1 bytes, ending with `connection: close`)
/// and returns the raw response.
pub fn send_raw(addr: SocketAddr, request: &[u8]) -> String {
    use std::io::Write;
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(request).unwrap();
    let mut response = Vec::new();
    let _ = tcp.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

/// Reads an HTTP/1.1 head from `stream`, byte by byte up to its blank
/// line; `None` if the peer closes first.
pub fn read_head(stream: &mut impl Read) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(head)
}

/// Reads from `stream` until its peer closes it, waiting at most 20 s
/// for each read: an error if the peer keeps it open.
pub fn read_until_closed(stream: &mut std::net::TcpStream) -> std::io::Result<Vec<u8>> {
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut got = Vec::new();
    stream.read_to_end(&mut got)?;
    Ok(got)
}

/// An upstream written by hand on 127.0.0.1: on each connection (its own
/// thread) the request head is read, then `answer` gets the connection and
/// the head (lower-cased) and writes what it likes.
pub fn raw_upstream(
    answer: impl Fn(&mut std::net::TcpStream, String) + Send + Sync + 'static,
) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let mut tcp = tcp.unwrap();
            let answer = answer.clone();
            std::thread::spawn(move || {
                if let Some(head) = read_head(&mut tcp) {
                    answer(&mut tcp, String::from_utf8_lossy(&head).to_lowercase());
                }
            });
        }
    });
    addr
}

/// Sends `count` GET requests for `path` on one keep-alive connection.
pub fn send_many(addr: SocketAddr, count: usize, path: &str, headers: &[(&str, &str)]) -> Vec<Got> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let mut request = Request::get(path).header("host", "test.weft");
            for (k, v) in headers {
                request = request.header(*k, *v);
            }
            let request = request.body(Full::new(Bytes::new())).unwrap();
            sender.ready().await.unwrap();
            let response = sender.send_request(request).await.unwrap();
            let (parts, body) = response.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            out.push(Got {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        out
    })
}

/// Who answered: the `x-served-by` header (or the status, for proxy errors).
pub fn served_by(got: &Got) -> String {
    got.headers.get("x-served-by").map_or_else(
        || format!("status {}", got.status),
        |v| v.to_str().unwrap().to_string(),
    )
}

/// A filter that answers every request itself with the value of the
/// property named by the `x-want` header (dots as separators), or 404 when
/// the host does not know it.
pub const PROPERTY_ECHO: &str = r#"(module
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $prop (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response"
    (func $respond (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 100) "x-want")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32) (local.set $p (global.get $heap))
    ;; One spare byte after each allocation, for a path's closing NUL.
    (global.set $heap (i32.add (global.get $heap) (i32.add (local.get $size) (i32.const 1))))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $p i32) (local $len i32) (local $i i32)
    (if (call $get (i32.const 0) (i32.const 100) (i32.const 6) (i32.const 300) (i32.const 304))
      (then (return (i32.const 0))))
    (local.set $p (i32.load (i32.const 300)))
    (local.set $len (i32.load (i32.const 304)))
    (block $done (loop $each
      (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
      (if (i32.eq (i32.load8_u (i32.add (local.get $p) (local.get $i))) (i32.const 46))
        (then (i32.store8 (i32.add (local.get $p) (local.get $i)) (i32.const 0))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $each)))
    (i32.store8 (i32.add (local.get $p) (local.get $len)) (i32.const 0))
    (if (call $prop (local.get $p) (i32.add (local.get $len) (i32.const 1)) (i32.const 308) (i32.const 312))
      (then
        (drop (call $respond (i32.const 404) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
          (i32.const 0) (i32.const 0) (i32.const -1)))
        (return (i32.const 1))))
    (drop (call $respond (i32.const 200) (i32.const 0) (i32.const 0)
      (i32.load (i32.const 308)) (i32.load (i32.const 312)) (i32.const 0) (i32.const 0) (i32.const -1)))
    (i32.const 1)))"#;

/// A filter that adds `x-version: VERSION` to every response; its
/// `proxy_on_configure` answers `configure` (0 refuses the configuration).
pub fn versioned_wat(version: &str, configure: u32) -> String {
    header_wat("x-version", version, configure)
}

/// A plugin (WAT) that adds `header: value` to every response;
/// `on_configure` answers `configure`.
pub fn header_wat(header: &str, value: &str, configure: u32) -> String {
    format!(
        r#"(module
  (import "env" "proxy_add_header_map_value"
    (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 100) "{header}")
  (data (i32.const 200) "{value}")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32) (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const {configure}))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $add (i32.const 2) (i32.const 100) (i32.const {header_len}) (i32.const 200) (i32.const {len})))
    (i32.const 0)))"#,
        header_len = header.len(),
        len = value.len()
    )
}

/// Runs the `weft` command with `args` in `dir`, to its end.
pub fn weft_cli(args: &[&str], dir: &Path) -> std::process::Output {
    weft_command().args(args).current_dir(dir).output().unwrap()
}

/// What a command printed, stdout then stderr.
pub fn output_text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// An HTTP/2 server on 127.0.0.1:0 (over TLS with `tls`, else by prior
/// knowledge) answering every request with `handler`, on its own thread.
pub fn h2_server<F, Fut, B>(tls: Option<Arc<rustls::ServerConfig>>, handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, hyper::Error>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let handler = handler.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let service = service_fn(handler);
                    let builder = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    );
                    let _ = match acceptor {
                        Some(acceptor) => {
                            let Ok(tls) = acceptor.accept(tcp).await else {
                                return;
                            };
                            builder.serve_connection(TokioIo::new(tls), service).await
                        }
                        None => builder.serve_connection(TokioIo::new(tcp), service).await,
                    };
                });
            }
        });
    });
    addr
}

/// The value of the unlabelled metric `name` in a `/metrics` text.
pub fn metric(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
        .parse()
        .unwrap()
}

/// A one-listener config whose every request runs plugin `name` (module
/// `module` from target/filters, with `configuration` as YAML) in front of
/// `upstream`.
pub fn one_plugin_config(
    upstream: SocketAddr,
    name: &str,
    module: &str,
    configuration: &str,
) -> String {
    format!(
        "listeners:\n  - {{name: l, address: 127.0.0.1:0, cluster: app, filters: [{name}]}}\nclusters:\n  - {{name: app, endpoints: [\"{upstream}\"]}}\nplugins:\n  - name: {name}\n    module: {}\n    configuration: {configuration}\n",
        filter(module).display()
    )
}

/// Runs `weft config check` on `config`, expects it refused (status 2) and
/// returns what it printed on stderr.
pub fn refused(config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weft.yaml");
    std::fs::write(&path, config).unwrap();
    let (code, _, stderr) = weft(&["config", "check", &path.display().to_string()]);
    assert_eq!(code, 2, "{stderr}");
    stderr
}
