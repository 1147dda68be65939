//! `cargo xtask demo`: an upstream, the control endpoint, `weft proxy`
//! with the hello-rust filter subscribed to it, a few requests through it
//! (printed so the filter's work is visible), then a new policy pushed and
//! promoted through the control endpoint and seen taking effect without a
//! restart.

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

    step("starting the control endpoint: weft control serve (bundles, promotions, the fleet)");
    let demo = Path::new(DEMO_DIR);
    // A fresh store each run.
    let _ = std::fs::remove_dir_all(demo.join("control"));
    let admin_token = demo.join("admin.token");
    let fleet_token = demo.join("fleet.token");
    for token in [&admin_token, &fleet_token] {
        // `weft control token --out` does not overwrite.
        let _ = std::fs::remove_file(token);
    }
    let admin = weft_output(
        &weft,
        &[
            "control",
            "token",
            "--name",
            "demo-admin",
            "--role",
            "admin",
            "--out",
        ],
        &admin_token,
    )?;
    let fleet = weft_output(
        &weft,
        &[
            "control",
            "token",
            "--name",
            "demo-fleet",
            "--role",
            "proxy",
            "--out",
        ],
        &fleet_token,
    )?;
    let control_config = demo.join("control.yaml");
    std::fs::write(
        &control_config,
        format!(
            "address: 127.0.0.1:0\ndata_dir: control\ntokens:\n{}\n{}\n",
            admin.trim_end(),
            fleet.trim_end()
        ),
    )
    .with_context(|| format!("cannot write {}", control_config.display()))?;
    let (control, control_addr) = spawn_listening(
        &weft,
        &[
            "control",
            "serve",
            "--config",
            &control_config.display().to_string(),
        ],
        "control.log",
    )?;
    children.0.push(control);
    let control_url = format!("http://{control_addr}");
    println!(
        "    control endpoint on {control_url} (tokens: {}, {})",
        admin_token.display(),
        fleet_token.display()
    );

    step(&format!(
        "starting weft proxy with {EXAMPLE_CONFIG} (listener and upstream moved to free ports)"
    ));
    let config_path = write_demo_config(echo_addr, &control_url, &fleet_token)?;
    let (proxy, proxy_addr) = spawn_listening(
        &weft,
        &["proxy", "--config", &config_path.display().to_string()],
        "proxy.log",
    )?;
    children.0.push(proxy);
    println!(
        "    proxy on http://{proxy_addr}, filter chain: [hello] (examples/hello-rust), subscribed to {control_url}"
    );

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

    promote_new_policy(&weft, proxy_addr, &control_url, &admin_token)?;

    if once {
        step("demo finished: every step worked");
        return Ok(());
    }
    step("the demo keeps serving; press Ctrl-C to stop");
    println!("    proxy:    http://{proxy_addr}/   (try: curl -i http://{proxy_addr}/anything)");
    println!("    upstream: http://{echo_addr}/");
    println!(
        "    control:  {control_url}   (try: weft bundle status --control {control_url} --token-file {})",
        admin_token.display()
    );
    println!("    proxy log: {}", log.display());
    for child in &mut children.0 {
        let _ = child.wait();
    }
    Ok(())
}

/// Builds a bundle of the same filter saying `x-hello: from-control`,
/// pushes and promotes it through the control endpoint, and waits until
/// the proxy's responses show it.
fn promote_new_policy(
    weft: &Path,
    proxy: SocketAddr,
    control: &str,
    admin_token: &Path,
) -> Result<()> {
    step(
        "a new policy through the control endpoint: the same filter, now saying `x-hello: from-control`",
    );
    let dir = Path::new(DEMO_DIR).join("policy");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let module = Path::new(crate::FILTERS_DIR).join("hello_rust.wasm");
    std::fs::copy(&module, dir.join("hello.wasm"))
        .with_context(|| format!("cannot copy {}", module.display()))?;
    std::fs::write(
        dir.join("bundle.yaml"),
        "name: demo-policy\nversion: '1.0.0'\nplugins:\n  - name: hello\n    module: hello.wasm\n    configuration: {header: x-hello, value: from-control}\n",
    )?;
    let archive = Path::new(DEMO_DIR).join("demo-policy.tar.gz");
    let token = admin_token.display().to_string();
    let control_args = ["--control", control, "--token-file", token.as_str()];
    for args in [
        vec![
            "bundle".to_string(),
            "build".into(),
            dir.display().to_string(),
            "-o".into(),
            archive.display().to_string(),
        ],
        [
            vec![
                "bundle".into(),
                "push".into(),
                archive.display().to_string(),
            ],
            control_args.map(String::from).to_vec(),
        ]
        .concat(),
        [
            vec![
                "bundle".into(),
                "promote".into(),
                "demo-policy".into(),
                "1.0.0".into(),
            ],
            control_args.map(String::from).to_vec(),
        ]
        .concat(),
    ] {
        println!("    $ weft {}", args.join(" "));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        println!("{}", indent(weft_run(weft, &args)?.trim_end()));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = exchange(proxy, "GET", "/", "", false)?;
        if response
            .head
            .lines()
            .any(|l| l.eq_ignore_ascii_case("x-hello: from-control"))
        {
            println!("    GET / through the proxy now answers:");
            println!("{}", indent(&response.head));
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the proxy never applied the promoted policy: {}",
                response.head
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut status = vec!["bundle", "status"];
    status.extend(control_args);
    println!("    $ weft {}", status.join(" "));
    println!("{}", indent(weft_run(weft, &status)?.trim_end()));
    println!("    ok: the proxy applied the new version without a restart and acknowledged it");
    Ok(())
}

/// Runs `weft ARGS FILE` and returns what it printed.
fn weft_output(weft: &Path, args: &[&str], file: &Path) -> Result<String> {
    let mut all: Vec<&str> = args.to_vec();
    let file = file.display().to_string();
    all.push(&file);
    weft_run(weft, &all)
}

/// Runs `weft ARGS` to its end; its stdout and stderr, or why it failed.
fn weft_run(weft: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(weft)
        .args(args)
        .output()
        .with_context(|| format!("cannot run weft {}", args.join(" ")))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("`weft {}` failed ({}):\n{text}", args.join(" "), out.status);
    }
    Ok(text)
}

/// The example config with the listener on a free port, the upstream
/// pointed at the echo server, and bundles taken from the control
/// endpoint.
fn write_demo_config(upstream: SocketAddr, control: &str, token: &Path) -> Result<PathBuf> {
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
    let token =
        std::fs::canonicalize(token).with_context(|| format!("cannot find {}", token.display()))?;
    config.bundles = Some(serde_yaml::from_str(&format!(
        "control: {{url: \"{control}\", token_file: \"{}\", id: demo-proxy}}",
        token.display()
    ))?);
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
    exchange(addr, method, path, body, true)
}

/// One HTTP/1.1 request on a fresh connection, shown as sent if `show`.
fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    show: bool,
) -> Result<HttpResponse> {
    let mut tcp = TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: demo.weft\r\nuser-agent: weft-demo\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    if show {
        println!("{}", indent(request.trim_end()));
    }
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
