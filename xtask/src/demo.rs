//! `cargo xtask demo`: an upstream, `weft proxy` with the hello-rust filter,
//! and a few requests through it, printed so the filter's work is visible.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{build_filters, cargo, step};

const EXAMPLE_CONFIG: &str = "examples/hello-rust/weft.yaml";
const DEMO_DIR: &str = "target/demo";

/// Child processes, killed when the demo ends however it ends.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub(crate) fn run(once: bool) -> Result<()> {
    build_filters()?;
    step("building weft (cargo build -p weft-cli)");
    crate::run(cargo().args(["build", "-p", "weft-cli"]))?;
    let weft = PathBuf::from("target/debug/weft");
    std::fs::create_dir_all(DEMO_DIR).with_context(|| format!("cannot create {DEMO_DIR}"))?;
    let mut children = Children(Vec::new());

    step("starting the upstream: weft echo (answers with what it received)");
    let (echo, echo_addr) =
        spawn_listening(&weft, &["echo", "--listen", "127.0.0.1:0"], "echo.log")?;
    children.0.push(echo);
    println!("    upstream on http://{echo_addr}");

    step(&format!(
        "starting weft proxy with {EXAMPLE_CONFIG} (listener and upstream moved to free ports)"
    ));
    let config_path = write_demo_config(echo_addr)?;
    let (proxy, proxy_addr) = spawn_listening(
        &weft,
        &["proxy", "--config", &config_path.display().to_string()],
        "proxy.log",
    )?;
    children.0.push(proxy);
    println!("    proxy on http://{proxy_addr}, filter chain: [hello] (examples/hello-rust)");

    let log = Path::new(DEMO_DIR).join("proxy.log");
    let mut log_seen = std::fs::read_to_string(&log).map(|s| s.len()).unwrap_or(0);
    let requests: [(&str, &str, &str); 3] = [
        ("GET", "/", ""),
        ("POST", "/orders?id=42", "{\"item\": \"tea\"}"),
        ("GET", "/products/7", ""),
    ];
    for (method, path, body) in requests {
        step(&format!("{method} {path} through the proxy"));
        let response = http(proxy_addr, method, path, body)?;
        println!("{}", indent(&response.head));
        println!(
            "    --- upstream saw ---\n{}",
            indent(response.body.trim_end())
        );
        if response.status != 200 {
            bail!(
                "{method} {path}: expected status 200, got {}",
                response.status
            );
        }
        if !response
            .head
            .lines()
            .any(|l| l.eq_ignore_ascii_case("x-hello: world"))
        {
            bail!(
                "{method} {path}: the response lacks the `x-hello: world` header the filter adds"
            );
        }
        let wanted = "hello: ";
        let lines = wait_for_log(&log, &mut log_seen, wanted, path)?;
        println!("    --- proxy log ---\n{}", indent(&lines));
        println!("    ok: the filter added `x-hello: world` and logged the request");
    }

    if once {
        step("demo finished: every step worked");
        return Ok(());
    }
    step("the demo keeps serving; press Ctrl-C to stop");
    println!("    proxy:    http://{proxy_addr}/   (try: curl -i http://{proxy_addr}/anything)");
    println!("    upstream: http://{echo_addr}/");
    println!("    proxy log: {}", log.display());
    for child in &mut children.0 {
        let _ = child.wait();
    }
    Ok(())
}

/// The example config with the listener on a free port and the upstream
/// pointed at the echo server.
fn write_demo_config(upstream: SocketAddr) -> Result<PathBuf> {
    let mut config = weft_config::load_proxy_config(Path::new(EXAMPLE_CONFIG))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for listener in &mut config.listeners {
        listener.address = "127.0.0.1:0".parse()?;
    }
    for cluster in &mut config.clusters {
        cluster.endpoints = vec![upstream.to_string()];
    }
    for plugin in &mut config.plugins {
        // Modules were resolved against the example's directory.
        plugin.module = std::fs::canonicalize(&plugin.module)
            .with_context(|| format!("module {} of {EXAMPLE_CONFIG}", plugin.module.display()))?;
    }
    let path = Path::new(DEMO_DIR).join("weft.yaml");
    std::fs::write(&path, serde_yaml::to_string(&config)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("    config: {}", path.display());
    Ok(path)
}

/// Starts `weft ARGS`, logging to DEMO_DIR/LOG, and waits for the
/// `listening: NAME http://ADDR` line it prints.
fn spawn_listening(weft: &Path, args: &[&str], log: &str) -> Result<(Child, SocketAddr)> {
    let log_path = Path::new(DEMO_DIR).join(log);
    let log_file = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut child = Command::new(weft)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("cannot start {}", weft.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .and_then(|a| a.parse().ok());
    match addr {
        Some(addr) if line.starts_with("listening:") => Ok((child, addr)),
        _ => {
            let _ = child.kill();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!("`weft {}` did not start:\n{log}", args.join(" "))
        }
    }
}

struct HttpResponse {
    status: u16,
    head: String,
    body: String,
}

/// One HTTP/1.1 request on a fresh connection, shown as sent.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> Result<HttpResponse> {
    let mut tcp = TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: demo.weft\r\nuser-agent: weft-demo\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    println!("{}", indent(request.trim_end()));
    tcp.write_all(request.as_bytes())?;
    let mut raw = String::new();
    tcp.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok(HttpResponse {
        status,
        head: head.replace("\r\n", "\n"),
        body: body.to_string(),
    })
}

/// Waits for the proxy log to show the filter's line for `path`; returns
/// the new log lines.
fn wait_for_log(log: &Path, seen: &mut usize, wanted: &str, path: &str) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let new = text.get(*seen..).unwrap_or("");
        if new.lines().any(|l| l.contains(wanted) && l.contains(path)) {
            *seen = text.len();
            return Ok(new.trim_end().to_string());
        }
        if Instant::now() > deadline {
            bail!(
                "the proxy log {} shows no `{wanted}... {path}` line from the filter",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
