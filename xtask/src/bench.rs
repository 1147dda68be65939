//! `cargo xtask bench [--seconds N] [--rounds N]`: weft side by side with
//! nginx and haproxy, in one run on this machine, written into
//! `docs/benchmarks.md` between `<!-- bench:begin -->` and
//! `<!-- bench:end -->`.
//!
//! 1. Installs nginx, haproxy and wrk from Debian when missing; builds
//!    `weft` (release) and the filters.
//! 2. Starts, on loopback and each on a free port: an upstream nginx
//!    answering `return 200 "ok"`, and the targets — nginx `proxy_pass`,
//!    haproxy, weft without filters, weft with the hello-rust filter, weft
//!    with the five production filters of `examples/canary-rollout`. Every
//!    target has one worker and is pinned to CPU 1; wrk runs on CPU 0.
//! 3. Drives each with `wrk -t1 -c32 -dNs --latency`, interleaved (A B C D
//!    E, A B C D E, ...) for `rounds` rounds, and records requests/s, p50
//!    and p99 latency, CPU time per request (utime + stime of the target's
//!    processes from `/proc/PID/stat` over the run, divided by the requests
//!    wrk counted) and peak RSS (`VmHWM`).
//! 4. Prints the medians, the ratios to nginx and the targets, and
//!    writes the same section into the docs.
//!
//! Every process it started is stopped when it ends, also on error.
//! Not yet: Pingora, HTTP/2 (h2load), TLS, fixed-rate latency runs, micro
//! figures, plots.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{FILTERS_DIR, build_filters, cargo, setup, step};

/// Debian packages, by the file each installs (also the binary run).
const PACKAGES: &[(&str, &str)] = &[("nginx", NGINX), ("haproxy", HAPROXY), ("wrk", WRK)];
const NGINX: &str = "/usr/sbin/nginx";
const HAPROXY: &str = "/usr/sbin/haproxy";
const WRK: &str = "/usr/bin/wrk";
const WEFT: &str = "target/release/weft";

/// Where the five-filter chain (its order and modules) comes from.
const CHAIN_EXAMPLE: &str = "examples/canary-rollout/weft.yaml";
const DOC: &str = "docs/benchmarks.md";
const BEGIN: &str = "<!-- bench:begin -->";
const END: &str = "<!-- bench:end -->";

/// The CPU every target is pinned to, and the one wrk runs on.
const TARGET_CPU: &str = "1";
const LOAD_CPU: &str = "0";
/// wrk's connections (one thread).
const CONNECTIONS: u32 = 32;
/// Unrecorded run before the rounds, per target.
const WARM_UP_SECONDS: u64 = 1;
/// How long a target may take to answer after it was started (weft
/// compiles the five filters' modules first).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What is measured, in the order of each round.
#[derive(Clone, Copy, PartialEq)]
enum Target {
    Nginx,
    Haproxy,
    Weft,
    WeftHello,
    WeftChain,
}

const TARGETS: [Target; 5] = [
    Target::Nginx,
    Target::Haproxy,
    Target::Weft,
    Target::WeftHello,
    Target::WeftChain,
];

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Nginx => "nginx `proxy_pass`",
            Target::Haproxy => "haproxy",
            Target::Weft => "weft, no filters",
            Target::WeftHello => "weft + hello-rust filter",
            Target::WeftChain => "weft + 5-filter chain",
        }
    }

    /// A short name for files and progress lines.
    fn slug(self) -> &'static str {
        match self {
            Target::Nginx => "nginx",
            Target::Haproxy => "haproxy",
            Target::Weft => "weft",
            Target::WeftHello => "weft-hello",
            Target::WeftChain => "weft-chain",
        }
    }

    /// A response header that shows the target's filters ran.
    fn expected_header(self) -> Option<&'static str> {
        match self {
            Target::WeftHello => Some("x-hello: world"),
            Target::WeftChain => Some("x-ratelimit-limit:"),
            _ => None,
        }
    }
}

/// Runs the benchmark: `seconds` per wrk run, `rounds` interleaved rounds.
pub(crate) fn run(seconds: u64, rounds: usize) -> Result<()> {
    if seconds == 0 {
        bail!("--seconds 0: a run needs at least one second");
    }
    if rounds == 0 {
        bail!("--rounds 0: give at least one round");
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        bail!(
            "this machine offers {cpus} CPU; the bench needs two (targets on CPU {TARGET_CPU}, wrk on CPU {LOAD_CPU})"
        );
    }

    step("bench dependencies: nginx, haproxy, wrk");
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(_, file)| !Path::new(file).exists())
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        println!("    Debian packages present: nginx, haproxy, wrk");
    } else {
        setup::apt_install(&missing)?;
    }

    step("building weft (cargo build --release -p weft-cli)");
    crate::run(cargo().args(["build", "--release", "-p", "weft-cli"]))?;
    build_filters()?;
    let root = std::env::current_dir().context("cannot read the current directory")?;
    let weft = root.join(WEFT);
    let chain = chain_plugins(&root)?;
    let hello = root.join(FILTERS_DIR).join("hello_rust.wasm");
    for module in chain.iter().map(|(_, module, _)| module).chain([&hello]) {
        if !module.exists() {
            bail!("{} is missing after the filters build", module.display());
        }
    }

    let clk_tck: f64 = output("getconf", &["CLK_TCK"])?
        .trim()
        .parse()
        .context("`getconf CLK_TCK` did not print a number")?;
    let dir = std::env::temp_dir().join(format!("weft-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut processes = Processes {
        started: Vec::new(),
        dir: dir.clone(),
        keep: true,
    };

    let ports = free_ports(1 + TARGETS.len())?;
    let (upstream_port, target_ports) = ports.split_first().context("no free ports")?;
    let upstream_port = *upstream_port;

    step(&format!(
        "starting the upstream: nginx `return 200 \"ok\"` on 127.0.0.1:{upstream_port}, one worker, not pinned"
    ));
    let conf = write_nginx_conf(
        &dir,
        "upstream",
        &format!(
            "server {{\n        listen 127.0.0.1:{upstream_port};\n        location / {{ return 200 \"ok\"; }}\n    }}"
        ),
    )?;
    let upstream = processes.spawn("upstream", nginx_command(None, &dir, &conf))?;
    let upstream_addr = SocketAddr::from(([127, 0, 0, 1], upstream_port));
    processes.wait_answering(upstream, upstream_addr, None)?;

    step(&format!(
        "starting the targets, one worker each, pinned to CPU {TARGET_CPU} (taskset -c {TARGET_CPU})"
    ));
    let mut running = Vec::new();
    for (&target, &port) in TARGETS.iter().zip(target_ports) {
        let command = match target {
            Target::Nginx => {
                let conf = write_nginx_conf(&dir, "nginx", &nginx_proxy(port, upstream_port))?;
                nginx_command(Some(TARGET_CPU), &dir, &conf)
            }
            Target::Haproxy => {
                let conf = dir.join("haproxy.cfg");
                write(&conf, &haproxy_conf(port, upstream_port))?;
                let mut command = Command::new("taskset");
                command
                    .args(["-c", TARGET_CPU, HAPROXY, "-db", "-f"])
                    .arg(&conf);
                command
            }
            Target::Weft | Target::WeftHello | Target::WeftChain => {
                let plugins = match target {
                    Target::WeftHello => vec![(
                        "hello".to_string(),
                        hello.clone(),
                        serde_json::json!({"header": "x-hello", "value": "world"}),
                    )],
                    Target::WeftChain => chain.clone(),
                    _ => Vec::new(),
                };
                let conf = dir.join(format!("{}.yaml", target.slug()));
                write(&conf, &weft_conf(port, upstream_port, &plugins)?)?;
                let mut command = Command::new("taskset");
                command
                    .args(["-c", TARGET_CPU])
                    .arg(&weft)
                    // Like the peers, nothing written per request.
                    .args(["--log", "warn", "proxy", "--config"])
                    .arg(&conf);
                command
            }
        };
        let index = processes.spawn(target.slug(), command)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        processes.wait_answering(index, addr, target.expected_header())?;
        println!("    {}: http://{addr}/", target.label());
        running.push((target, index, addr));
    }

    step(&format!(
        "warming up: wrk for {WARM_UP_SECONDS} s on each target (not recorded)"
    ));
    for (target, _, addr) in &running {
        wrk(*addr, WARM_UP_SECONDS).with_context(|| format!("warming up {}", target.label()))?;
    }

    // Described now, so that the load average is the one the rounds start in.
    let machine = Machine::describe(clk_tck);
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); running.len()];
    for round in 1..=rounds {
        step(&format!(
            "round {round} of {rounds}: wrk -t1 -c{CONNECTIONS} -d{seconds}s on each target"
        ));
        for (slot, (target, index, addr)) in running.iter().enumerate() {
            let pids = processes.family(*index);
            let sample = measure(*addr, &pids, seconds, clk_tck)
                .with_context(|| format!("measuring {} (round {round})", target.label()))?;
            println!(
                "    {:<26} {:>8.0} req/s  {:>6.1} µs CPU/req  p50 {}  p99 {}  peak RSS {}",
                target.label(),
                sample.rps,
                sample.cpu_us,
                ms(sample.p50_us),
                ms(sample.p99_us),
                mib(sample.rss_kib),
            );
            if let Some(list) = samples.get_mut(slot) {
                list.push(sample);
            }
        }
    }

    let section = report(&machine, seconds, rounds, &samples);
    step("results");
    println!("{section}");
    write_doc(&section)?;
    println!("\n    written into {DOC} between {BEGIN} and {END}");
    processes.keep = false;
    Ok(())
}

/// The five filters of the canary example, in its listener's order, with
/// their modules in target/filters/ and a configuration that lets every
/// request through.
fn chain_plugins(root: &Path) -> Result<Vec<(String, PathBuf, serde_json::Value)>> {
    let example = weft_config::load_proxy_config(Path::new(CHAIN_EXAMPLE))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let order = example
        .listeners
        .first()
        .map(|l| l.filters.clone())
        .with_context(|| format!("{CHAIN_EXAMPLE} has no listener"))?;
    let mut chain = Vec::new();
    for name in &order {
        let plugin = example
            .plugins
            .iter()
            .find(|p| &p.name == name)
            .with_context(|| format!("{CHAIN_EXAMPLE}: filter `{name}` is not a plugin"))?;
        let file = plugin.module.file_name().with_context(|| {
            format!(
                "{CHAIN_EXAMPLE}: plugin `{name}` has no module file name ({})",
                plugin.module.display()
            )
        })?;
        let configuration = match name.as_str() {
            "auth" => serde_json::json!({"allow_anonymous": true}),
            "ratelimit" => serde_json::json!({
                "name": "bench", "key": {"header": "x-user"},
                "rate": 1_000_000_000.0, "burst": 1_000_000_000u32,
            }),
            "router" => serde_json::json!({"rules": [{
                "name": "all", "backends": [{"name": "v1", "cluster": "up", "weight": 1}],
            }]}),
            "fault" => serde_json::json!({"abort": {"status": 503, "percent": 0}}),
            "telemetry" => serde_json::json!({"access_log": false}),
            other => bail!(
                "{CHAIN_EXAMPLE}: filter `{other}` has no pass-through configuration in xtask/src/bench.rs"
            ),
        };
        chain.push((
            name.clone(),
            root.join(FILTERS_DIR).join(file),
            configuration,
        ));
    }
    if chain.is_empty() {
        bail!("{CHAIN_EXAMPLE}: its first listener runs no filters");
    }
    Ok(chain)
}

/// `count` free loopback ports, all bound at once so they differ.
fn free_ports(count: usize) -> Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0"))
        .collect::<Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// An nginx configuration with its own pid, log and temp files in `dir`,
/// one worker, in the foreground; `http` holds `servers`.
fn write_nginx_conf(dir: &Path, name: &str, servers: &str) -> Result<PathBuf> {
    let d = dir.display();
    // As root, nginx's worker would switch to `nobody`; stay the current user.
    let root = output("id", &["-u"]).is_ok_and(|uid| uid.trim() == "0");
    let user = if root { "user root;\n" } else { "" };
    let conf = format!(
        "{user}worker_processes 1;
daemon off;
pid {d}/{name}.pid;
error_log {d}/{name}.error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/{name}-body;
    proxy_temp_path {d}/{name}-proxy;
    fastcgi_temp_path {d}/{name}-fastcgi;
    uwsgi_temp_path {d}/{name}-uwsgi;
    scgi_temp_path {d}/{name}-scgi;
    keepalive_requests 1000000;
    {servers}
}}
"
    );
    let path = dir.join(format!("{name}.conf"));
    write(&path, &conf)?;
    Ok(path)
}

/// The nginx reverse proxy: upstream keep-alive as the issue asks.
fn nginx_proxy(port: u16, upstream: u16) -> String {
    format!(
        "upstream up {{
        server 127.0.0.1:{upstream};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }}
    }}"
    )
}

/// `nginx -p DIR -c CONF -e LOG`, pinned to `cpu` if given.
fn nginx_command(cpu: Option<&str>, dir: &Path, conf: &Path) -> Command {
    let mut command = match cpu {
        Some(cpu) => {
            let mut taskset = Command::new("taskset");
            taskset.args(["-c", cpu, NGINX]);
            taskset
        }
        None => Command::new(NGINX),
    };
    let error_log = conf.with_extension("error.log");
    command
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(conf)
        .arg("-e")
        .arg(error_log);
    command
}

fn haproxy_conf(port: u16, upstream: u16) -> String {
    format!(
        "global
    nbthread 1
    maxconn 4096

defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    http-reuse always

frontend bench
    bind 127.0.0.1:{port}
    default_backend up

backend up
    server up 127.0.0.1:{upstream}
"
    )
}

/// A weft configuration: one worker, one route to the upstream (the
/// router's cluster header honoured), the given plugins in order.
fn weft_conf(
    port: u16,
    upstream: u16,
    plugins: &[(String, PathBuf, serde_json::Value)],
) -> Result<String> {
    let names: Vec<&str> = plugins.iter().map(|(name, _, _)| name.as_str()).collect();
    let mut conf = format!(
        "workers: 1
drain_timeout_ms: 1000
listeners:
  - name: bench
    address: 127.0.0.1:{port}
    request_id: false
    traceparent: false
    filters: [{}]
    virtual_hosts:
      - name: bench
        routes:
          - name: all
            forward: {{cluster: up, cluster_header: x-weft-cluster}}
clusters:
  - {{name: up, endpoints: [\"127.0.0.1:{upstream}\"]}}
",
        names.join(", ")
    );
    if !plugins.is_empty() {
        conf.push_str("plugins:\n");
    }
    for (name, module, configuration) in plugins {
        let module = serde_json::to_string(&module.display().to_string())?;
        writeln!(conf, "  - name: {name}\n    module: {module}")?;
        if !configuration.is_null() {
            writeln!(conf, "    configuration: {configuration}")?;
        }
    }
    Ok(conf)
}

/// Processes this run started, stopped when it ends however it ends; the
/// directory with their configurations and logs is removed after a run
/// that worked, and kept (and named) after one that failed.
struct Processes {
    started: Vec<Started>,
    dir: PathBuf,
    keep: bool,
}

struct Started {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Processes {
    /// Starts `command` with its output in `DIR/NAME.log`; returns its index.
    fn spawn(&mut self, name: &str, mut command: Command) -> Result<usize> {
        let log = self.dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot start {name}: {command:?}"))?;
        self.started.push(Started {
            name: name.to_string(),
            child,
            log,
        });
        Ok(self.started.len() - 1)
    }

    /// Waits until the process answers `GET /` on `addr` with 200 (and
    /// `header`, when given).
    fn wait_answering(
        &mut self,
        index: usize,
        addr: SocketAddr,
        header: Option<&str>,
    ) -> Result<()> {
        let started = self.started.get_mut(index).context("no such process")?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = started.child.try_wait()? {
                bail!(
                    "{} exited ({status}) before answering on {addr}; {}:\n{}",
                    started.name,
                    started.log.display(),
                    tail(&started.log)
                );
            }
            let last = match get(addr) {
                Ok((200, head)) => {
                    if let Some(header) = header
                        && !head
                            .lines()
                            .any(|l| l.to_ascii_lowercase().starts_with(header))
                    {
                        bail!(
                            "{} answers on {addr} without `{header}`: its filters did not run\n{head}",
                            started.name
                        );
                    }
                    return Ok(());
                }
                Ok((status, head)) => format!("status {status}\n{head}"),
                Err(err) => format!("{err:#}"),
            };
            if Instant::now() > deadline {
                bail!(
                    "{} did not answer 200 on http://{addr}/ within {} s (last: {last}); {}:\n{}",
                    started.name,
                    START_TIMEOUT.as_secs(),
                    started.log.display(),
                    tail(&started.log)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The PIDs of process `index` and of all its descendants (nginx's
    /// master and worker).
    fn family(&self, index: usize) -> Vec<u32> {
        self.started
            .get(index)
            .map(|s| family(s.child.id()))
            .unwrap_or_default()
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for started in self.started.iter_mut().rev() {
            stop(started);
        }
        if self.keep {
            println!("    configurations and logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// SIGTERM to the process, SIGKILL after 5 s, then SIGKILL to any
/// descendant still there.
fn stop(started: &mut Started) {
    if matches!(started.child.try_wait(), Ok(Some(_))) {
        return;
    }
    let pid = started.child.id();
    let family = family(pid);
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if matches!(started.child.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = started.child.kill();
    let _ = started.child.wait();
    for other in family.into_iter().filter(|&p| p != pid) {
        if Path::new(&format!("/proc/{other}")).exists() {
            let _ = Command::new("kill")
                .args(["-KILL", &other.to_string()])
                .status();
        }
    }
}

/// `root` and every process descending from it, from the parent PIDs in
/// `/proc/*/stat`.
fn family(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let fields = stat_fields(pid).ok()?;
            Some((pid, fields.get(1)?.parse().ok()?))
        })
        .collect();
    let mut family = vec![root];
    let mut next = 0;
    while let Some(&parent) = family.get(next) {
        for &(pid, ppid) in &parents {
            if ppid == parent && !family.contains(&pid) {
                family.push(pid);
            }
        }
        next += 1;
    }
    family
}

/// The fields of `/proc/PID/stat` after the command name: state is 0,
/// ppid 1, utime 11, stime 12.
fn stat_fields(pid: u32) -> Result<Vec<String>> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let (_, rest) = text
        .rsplit_once(')')
        .with_context(|| format!("{path}: no `)` after the command name"))?;
    Ok(rest.split_whitespace().map(str::to_string).collect())
}

/// utime + stime of `pids`, in clock ticks.
fn cpu_ticks(pids: &[u32]) -> Result<u64> {
    let mut ticks = 0;
    for &pid in pids {
        let fields = stat_fields(pid)?;
        for (index, name) in [(11, "utime"), (12, "stime")] {
            ticks += fields
                .get(index)
                .and_then(|f| f.parse::<u64>().ok())
                .with_context(|| format!("/proc/{pid}/stat: no {name}"))?;
        }
    }
    Ok(ticks)
}

/// The sum of `VmHWM` (peak resident set) of `pids`, in KiB.
fn peak_rss_kib(pids: &[u32]) -> Result<u64> {
    let mut total = 0;
    for &pid in pids {
        let path = format!("/proc/{pid}/status");
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        total += text
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .with_context(|| format!("{path}: no VmHWM line"))?;
    }
    Ok(total)
}

/// `GET /` on a fresh connection: the status and the response head.
fn get(addr: SocketAddr) -> Result<(u16, String)> {
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("cannot connect to {addr}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw)?;
    let raw = String::from_utf8_lossy(&raw);
    let head = raw.split("\r\n\r\n").next().unwrap_or_default();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{addr} answered without a status line: {head:?}"))?;
    Ok((status, head.replace("\r\n", "\n")))
}

/// The last lines of a log, for error messages.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// One wrk run against one target.
#[derive(Clone)]
struct Sample {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_us: f64,
    rss_kib: u64,
    socket_errors: u64,
}

/// One recorded run: the target's CPU time and peak RSS around wrk.
fn measure(addr: SocketAddr, pids: &[u32], seconds: u64, clk_tck: f64) -> Result<Sample> {
    let before = cpu_ticks(pids)?;
    let wrk = wrk(addr, seconds)?;
    let after = cpu_ticks(pids)?;
    if wrk.requests == 0 {
        bail!("wrk counted no requests");
    }
    let cpu_us = (after.saturating_sub(before)) as f64 / clk_tck * 1e6 / wrk.requests as f64;
    Ok(Sample {
        rps: wrk.rps,
        p50_us: wrk.p50_us,
        p99_us: wrk.p99_us,
        cpu_us,
        rss_kib: peak_rss_kib(pids)?,
        socket_errors: wrk.socket_errors,
    })
}

/// What wrk reports.
#[derive(Debug, PartialEq)]
struct Wrk {
    requests: u64,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    socket_errors: u64,
}

/// `wrk -t1 -c32 -dNs --latency` on CPU 0; fails on any non-2xx answer.
fn wrk(addr: SocketAddr, seconds: u64) -> Result<Wrk> {
    let mut command = Command::new("taskset");
    command.args([
        "-c",
        LOAD_CPU,
        WRK,
        "-t1",
        &format!("-c{CONNECTIONS}"),
        &format!("-d{seconds}s"),
        "--latency",
        &format!("http://{addr}/"),
    ]);
    let out = command
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "{command:?} failed ({}): {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_wrk(&text).with_context(|| format!("cannot read the output of {command:?}:\n{text}"))
}

fn parse_wrk(text: &str) -> Result<Wrk> {
    let (mut requests, mut rps, mut p50, mut p99) = (None, None, None, None);
    let mut socket_errors = 0;
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("50%"), Some(value)) => p50 = Some(duration_us(value)?),
            (Some("99%"), Some(value)) => p99 = Some(duration_us(value)?),
            (Some(n), Some("requests")) => requests = Some(n.parse::<u64>()?),
            (Some("Requests/sec:"), Some(value)) => rps = Some(value.parse::<f64>()?),
            _ => {}
        }
        if let Some(count) = line.strip_prefix("Non-2xx or 3xx responses:") {
            bail!("{} answers were not 2xx or 3xx", count.trim());
        }
        if let Some(errors) = line.strip_prefix("Socket errors:") {
            // `connect 0, read 0, write 0, timeout 0`
            socket_errors = errors
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
        }
    }
    Ok(Wrk {
        requests: requests.context("no `N requests in` line")?,
        rps: rps.context("no `Requests/sec:` line")?,
        p50_us: p50.context("no `50%` latency line (--latency)")?,
        p99_us: p99.context("no `99%` latency line (--latency)")?,
        socket_errors,
    })
}

/// wrk's durations (`812.00us`, `1.23ms`, `2.01s`, `1.50m`) in µs.
fn duration_us(value: &str) -> Result<f64> {
    let (number, scale) = if let Some(n) = value.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = value.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1e6)
    } else if let Some(n) = value.strip_suffix('m') {
        (n, 60e6)
    } else {
        bail!("`{value}` is not a wrk duration");
    };
    let number: f64 = number
        .parse()
        .with_context(|| format!("`{value}` is not a wrk duration"))?;
    Ok(number * scale)
}

/// The machine, for the report.
struct Machine {
    date: String,
    cpus: String,
    model: String,
    kernel: String,
    nginx: String,
    haproxy: String,
    wrk: String,
    weft: String,
    load: String,
    clk_tck: f64,
}

impl Machine {
    fn describe(clk_tck: f64) -> Machine {
        let first_line = |program: &str, args: &[&str]| -> String {
            Command::new(program)
                .args(args)
                .output()
                .ok()
                .and_then(|out| {
                    let text = format!(
                        "{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                    text.lines()
                        .map(str::trim)
                        .find(|l| !l.is_empty())
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "unknown".to_string())
        };
        let model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("model name"))
                    .map(|l| l.trim_start_matches([' ', '\t', ':']).trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".to_string());
        let nginx = first_line(NGINX, &["-v"]);
        let haproxy = first_line(HAPROXY, &["-v"]);
        let wrk = first_line(WRK, &["-v"]);
        let dirty = output("git", &["status", "--porcelain"]).is_ok_and(|s| !s.trim().is_empty());
        let weft = format!(
            "{}{}",
            first_line("git", &["rev-parse", "--short", "HEAD"]),
            if dirty { " with local changes" } else { "" }
        );
        Machine {
            date: first_line("date", &["-u", "+%F"]),
            cpus: first_line("nproc", &[]),
            model,
            kernel: first_line("uname", &["-sr"]),
            // `nginx version: nginx/1.22.1`
            nginx: nginx
                .strip_prefix("nginx version: nginx/")
                .map_or(nginx.clone(), |v| format!("nginx {v}")),
            // `HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/`
            haproxy: haproxy
                .strip_prefix("HAProxy version ")
                .and_then(|v| v.split_whitespace().next())
                .map_or(haproxy.clone(), |v| format!("haproxy {v}")),
            // `wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer`
            wrk: wrk.split(" [").next().unwrap_or(&wrk).to_string(),
            weft,
            load: std::fs::read_to_string("/proc/loadavg")
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|_| "unknown".to_string()),
            clk_tck,
        }
    }
}

/// Runs a program and returns its standard output.
fn output(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program} {}", args.join(" ")))?;
    if !out.status.success() {
        bail!("{program} {} failed ({})", args.join(" "), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match (
        values.get(n / 2),
        n.checked_sub(1).and_then(|i| values.get(i / 2)),
    ) {
        (Some(&high), Some(&low)) if n.is_multiple_of(2) => (low + high) / 2.0,
        (Some(&middle), _) => middle,
        _ => f64::NAN,
    }
}

fn ms(us: f64) -> String {
    format!("{:.2} ms", us / 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The median over rounds of `figure` for target slot `slot`.
fn median_of(samples: &[Vec<Sample>], slot: usize, figure: impl Fn(&Sample) -> f64) -> f64 {
    median(
        samples
            .get(slot)
            .map(|s| s.iter().map(&figure).collect())
            .unwrap_or_default(),
    )
}

/// The median over rounds of `figure(target) / figure(base)`, each round's
/// ratio taken within the round.
fn ratio(
    samples: &[Vec<Sample>],
    slot: usize,
    base: usize,
    figure: impl Fn(&Sample) -> f64,
) -> f64 {
    let (Some(of), Some(to)) = (samples.get(slot), samples.get(base)) else {
        return f64::NAN;
    };
    median(
        of.iter()
            .zip(to)
            .map(|(a, b)| figure(a) / figure(b))
            .collect(),
    )
}

fn slot(target: Target) -> usize {
    TARGETS.iter().position(|&t| t == target).unwrap_or(0)
}

/// The section written between the markers (and printed).
fn report(machine: &Machine, seconds: u64, rounds: usize, samples: &[Vec<Sample>]) -> String {
    let mut out = String::new();
    let nginx = slot(Target::Nginx);
    let weft = slot(Target::Weft);
    let _ = writeln!(
        out,
        "## Latest `cargo xtask bench` run ({})\n",
        machine.date
    );
    let _ = writeln!(
        out,
        "`cargo xtask bench --seconds {seconds} --rounds {rounds}` on {} CPUs ({}), {}; \
         {}, {}, {}; weft at {} (release build). Load average when the run started: {}.\n",
        machine.cpus,
        machine.model,
        machine.kernel,
        machine.nginx,
        machine.haproxy,
        machine.wrk,
        machine.weft,
        machine.load
    );
    let _ = writeln!(
        out,
        "- Upstream: nginx `return 200 \"ok\"`, one worker, keep-alive \
         (`keepalive_requests 1000000`), not pinned.
- Targets, one worker each, pinned to CPU {TARGET_CPU} (`taskset -c {TARGET_CPU}`): nginx \
  `proxy_pass` (`keepalive 64`, `proxy_http_version 1.1`, empty `Connection`, \
  `keepalive_requests 1000000` on both sides); haproxy (`nbthread 1`, `http-reuse always`); \
  weft (`workers: 1`, `request_id` and `traceparent` off, one route forwarding with \
  `cluster_header`) without filters, with hello-rust (`{{header: x-hello, value: world}}`), and \
  with the chain of `{CHAIN_EXAMPLE}` (auth, ratelimit, router, fault, telemetry) configured to \
  let every request through: auth `allow_anonymous`, a bucket of 10⁹ tokens, one router \
  backend, 0% aborts, telemetry without its access-log line. weft runs with `--log warn`, so \
  hello-rust's INFO line per request is filtered out: like nginx and haproxy (`access_log \
  off`, no `log`), nothing is written per request.
- Load: `wrk -t1 -c{CONNECTIONS} -d{seconds}s --latency` pinned to CPU {LOAD_CPU}, HTTP/1.1 on \
  loopback; the targets interleaved in the order of the table, {rounds} round(s), after a \
  {WARM_UP_SECONDS} s warm-up each.
- CPU per request: utime + stime of the target's processes (`/proc/PID/stat`, {} ticks/s) over \
  the run, divided by the requests wrk counted. Peak RSS: `VmHWM` summed over the target's \
  processes. Figures are medians over the rounds; ratios are medians of the ratios taken \
  within each round.\n",
        machine.clk_tck
    );
    out.push_str(
        "| target | req/s | CPU µs/req | p50 | p99 | peak RSS | req/s vs nginx | CPU/req vs nginx |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for (slot, target) in TARGETS.iter().enumerate() {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.1} | {} | {} | {} | {:.2}× | {:.2}× |",
            target.label(),
            median_of(samples, slot, |s| s.rps),
            median_of(samples, slot, |s| s.cpu_us),
            ms(median_of(samples, slot, |s| s.p50_us)),
            ms(median_of(samples, slot, |s| s.p99_us)),
            mib(median_of(samples, slot, |s| s.rss_kib as f64) as u64),
            ratio(samples, slot, nginx, |s| s.rps),
            ratio(samples, slot, nginx, |s| s.cpu_us),
        );
    }

    out.push_str(
        "\nThe issue's targets (throughput ratios; \"by CPU\" is the same ratio computed from \
         CPU per request, base ÷ target, steadier on a noisy machine):\n\n\
         | comparison | target | req/s ratio | by CPU | verdict (req/s) |\n\
         | --- | --- | --- | --- | --- |\n",
    );
    let goals = [
        ("weft, no filters vs nginx", Target::Weft, nginx, 1.0),
        (
            "weft + hello-rust vs weft, no filters",
            Target::WeftHello,
            weft,
            0.95,
        ),
        (
            "weft + 5-filter chain vs weft, no filters",
            Target::WeftChain,
            weft,
            0.7,
        ),
    ];
    for (what, target, base, goal) in goals {
        let by_rps = ratio(samples, slot(target), base, |s| s.rps);
        let by_cpu = ratio(samples, base, slot(target), |s| s.cpu_us);
        let verdict = if by_rps >= goal {
            "met".to_string()
        } else {
            format!("missed by {:.0}%", (1.0 - by_rps / goal) * 100.0)
        };
        let _ = writeln!(
            out,
            "| {what} | ≥ {goal:.2}× | {by_rps:.2}× | {by_cpu:.2}× | {verdict} |"
        );
    }

    out.push_str("\nEach round, CPU µs per request / requests per second:\n\n| target |");
    for round in 1..=rounds {
        let _ = write!(out, " round {round} |");
    }
    out.push_str("\n| --- |");
    out.push_str(&" --- |".repeat(rounds));
    out.push('\n');
    for (slot, target) in TARGETS.iter().enumerate() {
        let _ = write!(out, "| {} |", target.label());
        for sample in samples.get(slot).into_iter().flatten() {
            let _ = write!(out, " {:.1} / {:.1}k |", sample.cpu_us, sample.rps / 1000.0);
        }
        out.push('\n');
    }
    let errors: u64 = samples.iter().flatten().map(|s| s.socket_errors).sum();
    if errors > 0 {
        let _ = writeln!(
            out,
            "\nwrk reported {errors} socket error(s) (connect, read, write or timeout) over the run."
        );
    }
    out.push_str(
        "\nNot yet measured by `cargo xtask bench`: Pingora, HTTP/2 (h2load), TLS termination, \
         fixed-rate latency runs (added latency per hop below saturation), p99.9, micro figures \
         (callback round trip, VM instantiation, memory per VM, bytes copied per request) and \
         plots.\n",
    );
    out
}

/// Replaces what is between the markers in docs/benchmarks.md.
fn write_doc(section: &str) -> Result<()> {
    let text = std::fs::read_to_string(DOC).with_context(|| format!("cannot read {DOC}"))?;
    let (before, rest) = text
        .split_once(BEGIN)
        .with_context(|| format!("{DOC} has no `{BEGIN}` marker"))?;
    let (_, after) = rest
        .split_once(END)
        .with_context(|| format!("{DOC} has no `{END}` marker after `{BEGIN}`"))?;
    write(
        Path::new(DOC),
        &format!("{before}{BEGIN}\n{section}{END}{after}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK_OUTPUT: &str = "Running 2s test @ http://127.0.0.1:40000/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   612.45us  120.10us   5.01ms   90.00%
    Req/Sec    52.10k     1.20k   54.00k    80.00%
  Latency Distribution
     50%  598.00us
     75%  650.00us
     90%  700.00us
     99%    1.20ms
  103680 requests in 2.00s, 12.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:  51840.00
Transfer/sec:      6.00MB
";

    #[test]
    fn wrk_output_is_read() -> Result<()> {
        let wrk = parse_wrk(WRK_OUTPUT)?;
        assert_eq!(
            wrk,
            Wrk {
                requests: 103_680,
                rps: 51_840.0,
                p50_us: 598.0,
                p99_us: 1_200.0,
                socket_errors: 3,
            }
        );
        Ok(())
    }

    #[test]
    fn non_2xx_answers_fail_the_run() {
        let text = WRK_OUTPUT.replace(
            "  Socket errors",
            "  Non-2xx or 3xx responses: 7\n  Socket errors",
        );
        assert!(parse_wrk(&text).is_err());
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }
}
