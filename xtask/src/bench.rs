//! `cargo xtask bench [--seconds N] [--rounds N] [--rate N] [--only GROUPS]
//! [--no-pgo]`:
//! weft side by side with nginx, haproxy, Pingora and a minimal hyper
//! proxy, in one run on this machine, written into `docs/benchmarks.md`
//! between `<!-- bench:begin -->` and `<!-- bench:end -->`, with plots in
//! `docs/bench/`.
//!
//! 1. Installs nginx, haproxy, wrk, h2load (`nghttp2-client`) and openssl
//!    from Debian when missing; builds `weft` (release) and the filters,
//!    the minimal Pingora proxy of `bench/pingora` (release, its own
//!    workspace and target directory; `cmake` from Debian) and the minimal
//!    hyper proxy of `bench/hyper-floor` (the same way). One that does not
//!    build is reported as SKIPPED with the reason, and the rest runs.
//!    Unless `--no-pgo`, also an instrumented weft (`xtask/src/pgo.rs`):
//!    once the upstream runs, it serves a few seconds of each weft
//!    target's load, then a few seconds of varied requests (a 64 KiB
//!    response, an 8 KiB request body, a browser's headers), and the
//!    weft measured is built with that profile (Debian's `llvm-19` merges
//!    it when no other `llvm-profdata` can).
//! 2. Starts, on loopback and each on a free port: an upstream nginx
//!    answering `return 200 "ok"`, pinned to CPU 0 with the load, and the
//!    targets, one worker each and pinned to CPU 1, which is theirs alone
//!    (an upstream left free to move runs on the target's CPU at times,
//!    and takes that time from the target):
//!    - HTTP/1.1: nginx `proxy_pass`, haproxy, Pingora, the minimal hyper
//!      proxy, weft without filters (and, with PGO, the plain build
//!      without filters too), with the hello-rust filter, and with the
//!      five production filters of `examples/canary-rollout`;
//!    - HTTP/2 by prior knowledge (h2c): nginx `listen … http2` and weft;
//!    - TLS (HTTP/1.1): nginx `listen … ssl` and a weft `tls:` listener,
//!      with a self-signed P-256 certificate made for the run.
//! 3. Each round (interleaved, `rounds` times, each starting one target
//!    further than the last) drives every target:
//!    `wrk -t1 -c32 -dNs --latency` (with a `done()` script printing
//!    p99.9), `h2load -t1 -c32 -m10 -DN` for h2c; and records requests/s,
//!    latency percentiles, CPU time per request (utime + stime of the
//!    target's processes from `/proc/PID/stat` over the run, divided by
//!    the requests counted; utime alone too) and peak RSS (`VmHWM`). Then
//!    a fixed-rate latency run (`--rate` requests/s over 16 connections,
//!    open loop, see `bench_load`) against the upstream directly and
//!    through each HTTP/1.1 target gives the latency each adds per hop.
//! 4. Prints the medians, the ratios to nginx and the issue's targets, and
//!    writes the same section and the plots into the docs (not with
//!    `--only`, which is for trying a part).
//!
//! `cargo xtask dist` ([`dist`]) stops after step 1's weft builds (and the
//! training they need) and copies the weft the bench would measure to
//! `target/dist/weft`: the build to ship.
//!
//! Every process it started is stopped when it ends, also on error.

use std::fmt::Write as _;
use std::io::BufRead;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::bench_load::{Pinned, fixed_rate, percentile};
use crate::bench_procs::{Processes, cpu_ticks, peak_rss_kib};
use crate::bench_svg::{Bar, Series, bars, percentiles};
use crate::{FILTERS_DIR, build_filters, cargo, setup, step};

/// Debian packages, by the file each installs (also the binary run).
const PACKAGES: &[(&str, &str)] = &[
    ("nginx", NGINX),
    ("haproxy", HAPROXY),
    ("wrk", WRK),
    ("nghttp2-client", H2LOAD),
    ("openssl", OPENSSL),
];
const NGINX: &str = "/usr/sbin/nginx";
const HAPROXY: &str = "/usr/sbin/haproxy";
const WRK: &str = "/usr/bin/wrk";
const H2LOAD: &str = "/usr/bin/h2load";
const OPENSSL: &str = "/usr/bin/openssl";
/// What the Pingora build needs besides Rust.
const CMAKE: (&str, &str) = ("cmake", "/usr/bin/cmake");
const WEFT: &str = "target/release/weft";
const PINGORA_LOCK: &str = "bench/pingora/Cargo.lock";

/// A proxy built from a bench-only crate (its own workspace and target
/// directory), started as `BINARY LISTEN_ADDR UPSTREAM_ADDR`.
struct BenchCrate {
    server: Server,
    manifest: &'static str,
    target_dir: &'static str,
    binary: &'static str,
    /// A Debian package its build needs.
    needs: Option<(&'static str, &'static str)>,
}

const BENCH_CRATES: [BenchCrate; 2] = [
    BenchCrate {
        server: Server::Pingora,
        manifest: "bench/pingora/Cargo.toml",
        target_dir: "target/bench-pingora",
        binary: "target/bench-pingora/release/bench-pingora",
        needs: Some(CMAKE),
    },
    BenchCrate {
        server: Server::Floor,
        manifest: "bench/hyper-floor/Cargo.toml",
        target_dir: "target/bench-hyper-floor",
        binary: "target/bench-hyper-floor/release/hyper-floor",
        needs: None,
    },
];

/// Where the five-filter chain (its order and modules) comes from.
const CHAIN_EXAMPLE: &str = "examples/canary-rollout/weft.yaml";
const DOC: &str = "docs/benchmarks.md";
const PLOTS: &str = "docs/bench";
const BEGIN: &str = "<!-- bench:begin -->";
const END: &str = "<!-- bench:end -->";

/// The CPU every target is pinned to, and the one the load runs on.
const TARGET_CPU: &str = "1";
const LOAD_CPU: &str = "0";
/// wrk's and h2load's connections (one thread).
const CONNECTIONS: u32 = 32;
/// h2load's concurrent streams per connection.
const STREAMS: u32 = 10;
/// The fixed-rate runs' connections.
const LATENCY_CONNECTIONS: u32 = 16;
/// Unrecorded run before the rounds, per target.
const WARM_UP_SECONDS: u64 = 1;
/// Load through the instrumented weft per weft target, for its profile.
const TRAINING_SECONDS: u64 = 5;
/// The varied part of the training, after [`TRAINING_SECONDS`] of the
/// bench's own load: the paths the bench does not measure, so that the
/// profile does not lay them out as cold.
const VARIED_SECONDS: u64 = 3;
/// The upstream's `/large` response, and the request body, of the varied
/// training.
const LARGE_BYTES: usize = 64 * 1024;
const REQUEST_BODY_BYTES: usize = 8 * 1024;
/// What a browser adds to a request (the varied training's third kind).
const BROWSER_HEADERS: [(&str, &str); 6] = [
    (
        "Accept",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ),
    ("Accept-Language", "en-GB,en;q=0.9"),
    ("Accept-Encoding", "gzip, deflate, br"),
    (
        "User-Agent",
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    ),
    (
        "Cookie",
        "session=0123456789abcdef0123456789abcdef; theme=dark",
    ),
    ("X-Forwarded-For", "192.0.2.10"),
];
/// wrk's `done()` callback: the 99.9th percentile of its histogram (µs).
const WRK_SCRIPT: &str = "done = function(summary, latency, requests)\n  \
                          io.write(string.format(\"p99.9 %f\\n\", latency:percentile(99.9)))\nend\n";

/// `cargo xtask bench`'s options.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Seconds of each recorded run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Interleaved rounds over all targets.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Requests per second of the fixed-rate latency runs (below every
    /// target's saturation).
    #[arg(long, default_value_t = 2000)]
    rate: u32,
    /// Only these parts, comma-separated; prints the results without
    /// writing the docs. The HTTP/1.1 targets run (unmeasured) for
    /// `latency`, nginx `proxy_pass` for `pingora`.
    #[arg(long, value_delimiter = ',', value_enum)]
    only: Vec<Group>,
    /// Measure weft as `cargo build --release` builds it, without the
    /// profile-guided build (and its ~20 minutes of extra building).
    #[arg(long)]
    no_pgo: bool,
    /// Build weft and stop (`cargo xtask dist`).
    #[arg(skip)]
    build_only: bool,
}

/// The parts of a run, for `--only`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub(crate) enum Group {
    /// nginx, haproxy and weft (three configurations) over HTTP/1.1.
    H1,
    /// The Pingora proxy over HTTP/1.1.
    Pingora,
    /// The minimal hyper proxy of `bench/hyper-floor` over HTTP/1.1.
    Floor,
    /// nginx and weft over HTTP/2 by prior knowledge.
    H2,
    /// nginx and weft terminating TLS.
    Tls,
    /// Fixed-rate latency runs: direct and through each HTTP/1.1 target.
    Latency,
}

const ALL_GROUPS: [Group; 6] = [
    Group::H1,
    Group::Pingora,
    Group::Floor,
    Group::H2,
    Group::Tls,
    Group::Latency,
];

/// How the load reaches a target.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Proto {
    H1,
    H2c,
    Tls,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Server {
    Nginx,
    Haproxy,
    Pingora,
    /// The minimal hyper 1.x proxy: what a hyper-based proxy costs at least.
    Floor,
    Weft,
    WeftHello,
    WeftChain,
    /// weft without filters, from `cargo build --release` (no PGO).
    WeftPlain,
}

/// One target: a server, spoken to one way.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Case {
    proto: Proto,
    server: Server,
}

const fn case_of(proto: Proto, server: Server) -> Case {
    Case { proto, server }
}

/// Every target, in the order of each round and of the tables.
const CASES: [Case; 12] = [
    case_of(Proto::H1, Server::Nginx),
    case_of(Proto::H1, Server::Haproxy),
    case_of(Proto::H1, Server::Pingora),
    case_of(Proto::H1, Server::Floor),
    case_of(Proto::H1, Server::Weft),
    case_of(Proto::H1, Server::WeftPlain),
    case_of(Proto::H1, Server::WeftHello),
    case_of(Proto::H1, Server::WeftChain),
    case_of(Proto::H2c, Server::Nginx),
    case_of(Proto::H2c, Server::Weft),
    case_of(Proto::Tls, Server::Nginx),
    case_of(Proto::Tls, Server::Weft),
];

impl Case {
    fn label(self) -> &'static str {
        match (self.proto, self.server) {
            (Proto::H1, Server::Nginx) => "nginx `proxy_pass`",
            (Proto::H1, Server::Haproxy) => "haproxy",
            (Proto::H1, Server::Pingora) => "Pingora `ProxyHttp`",
            (Proto::H1, Server::Floor) => "minimal hyper proxy",
            (Proto::H1, Server::Weft) => "weft, no filters",
            (Proto::H1, Server::WeftPlain) => "weft, no filters, built without PGO",
            (Proto::H1, Server::WeftHello) => "weft + hello-rust filter",
            (Proto::H1, Server::WeftChain) => "weft + 5-filter chain",
            (Proto::H2c, Server::Nginx) => "nginx `listen … http2` (h2c)",
            (Proto::H2c, _) => "weft, no filters (h2c)",
            (Proto::Tls, Server::Nginx) => "nginx `listen … ssl`",
            (Proto::Tls, _) => "weft `tls:` listener, no filters",
        }
    }

    /// A short name for files, processes and plots.
    fn slug(self) -> &'static str {
        match (self.proto, self.server) {
            (Proto::H1, Server::Nginx) => "nginx",
            (Proto::H1, Server::Haproxy) => "haproxy",
            (Proto::H1, Server::Pingora) => "pingora",
            (Proto::H1, Server::Floor) => "hyper-floor",
            (Proto::H1, Server::Weft) => "weft",
            (Proto::H1, Server::WeftPlain) => "weft-no-pgo",
            (Proto::H1, Server::WeftHello) => "weft-hello",
            (Proto::H1, Server::WeftChain) => "weft-chain",
            (Proto::H2c, Server::Nginx) => "nginx-h2c",
            (Proto::H2c, _) => "weft-h2c",
            (Proto::Tls, Server::Nginx) => "nginx-tls",
            (Proto::Tls, _) => "weft-tls",
        }
    }

    fn group(self) -> Group {
        match (self.proto, self.server) {
            (Proto::H1, Server::Pingora) => Group::Pingora,
            (Proto::H1, Server::Floor) => Group::Floor,
            (Proto::H1, _) => Group::H1,
            (Proto::H2c, _) => Group::H2,
            (Proto::Tls, _) => Group::Tls,
        }
    }

    /// A response header that shows the target's filters ran.
    fn expected_header(self) -> Option<&'static str> {
        match self.server {
            Server::WeftHello => Some("x-hello: world"),
            Server::WeftChain => Some("x-ratelimit-limit:"),
            _ => None,
        }
    }

    fn is_weft(self) -> bool {
        matches!(
            self.server,
            Server::Weft | Server::WeftHello | Server::WeftChain | Server::WeftPlain
        )
    }
}

/// A started target.
struct Running {
    case: Case,
    process: usize,
    addr: SocketAddr,
    /// Driven in the rounds (else only started for the latency runs).
    measured: bool,
}

/// The self-signed certificate of the TLS targets.
struct Cert {
    cert: PathBuf,
    key: PathBuf,
}

/// Runs the benchmark.
pub(crate) fn run(args: Args) -> Result<()> {
    bench(args).map(|_| ())
}

/// Where `cargo xtask dist` puts the weft it builds.
const DIST: &str = "target/dist/weft";

/// `cargo xtask dist`: builds the weft to ship, with PGO unless `no_pgo`
/// (the bench's training, without its measurements), and copies it to
/// [`DIST`].
pub(crate) fn dist(no_pgo: bool) -> Result<()> {
    let built = if no_pgo {
        build_plain()?;
        PathBuf::from(WEFT)
    } else {
        bench(Args {
            seconds: 10,
            rounds: 1,
            rate: 2000,
            only: Vec::new(),
            no_pgo: false,
            build_only: true,
        })?
    };
    let dist = Path::new(DIST);
    if let Some(dir) = dist.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::copy(&built, dist)
        .with_context(|| format!("cannot copy {} to {DIST}", built.display()))?;
    step("built");
    let how = if no_pgo {
        "release build without PGO"
    } else {
        "release build with PGO"
    };
    println!("    {DIST} ({how})");
    Ok(())
}

/// weft as `cargo build --release` builds it, into [`WEFT`].
fn build_plain() -> Result<()> {
    step("building weft (cargo build --release -p weft-cli)");
    crate::run(cargo().args(["build", "--release", "-p", "weft-cli"]))
}

/// Runs the benchmark, or only builds weft (`args.build_only`); returns
/// the weft binary it measured or built.
fn bench(args: Args) -> Result<PathBuf> {
    let Args {
        seconds,
        rounds,
        rate,
        only,
        no_pgo,
        build_only,
    } = args;
    if seconds == 0 {
        bail!("--seconds 0: a run needs at least one second");
    }
    if rounds == 0 {
        bail!("--rounds 0: give at least one round");
    }
    if rate == 0 {
        bail!("--rate 0: the fixed-rate runs need a rate");
    }
    let groups: Vec<Group> = if build_only {
        // The groups with weft targets: what the training runs through.
        vec![Group::H1, Group::H2, Group::Tls]
    } else if only.is_empty() {
        ALL_GROUPS.to_vec()
    } else {
        only.clone()
    };
    let wants = |group| groups.contains(&group);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        bail!(
            "this machine offers {cpus} CPU; the bench needs two (targets on CPU {TARGET_CPU}, load on CPU {LOAD_CPU})"
        );
    }

    step("bench dependencies: nginx, haproxy, wrk, h2load, openssl");
    install(PACKAGES)?;

    let root = std::env::current_dir().context("cannot read the current directory")?;
    let mut cases = selected(&groups, no_pgo);

    // A bench crate that does not build is left out of the run, and the
    // doc says why.
    let mut skipped = Vec::new();
    for krate in &BENCH_CRATES {
        let server = krate.server;
        if cases.iter().any(|(c, _)| c.server == server)
            && let Err(err) = build_bench_crate(krate)
        {
            let name = case_of(Proto::H1, server).label();
            let reason = format!("{err:#}");
            println!("    {name} SKIPPED: {reason}");
            skipped.push((name, reason));
            cases.retain(|(c, _)| c.server != server);
        }
    }

    let plain = root.join(WEFT);
    let hello = root.join(FILTERS_DIR).join("hello_rust.wasm");
    let mut chain = Vec::new();
    let mut instrumented = None;
    if cases.iter().any(|(c, _)| c.is_weft()) {
        // The plain build is measured beside the PGO one, or alone; a
        // PGO build for `dist` does without it.
        if !build_only || no_pgo {
            build_plain()?;
        }
        build_filters()?;
        chain = chain_plugins(&root)?;
        for module in chain.iter().map(|(_, module, _)| module).chain([&hello]) {
            if !module.exists() {
                bail!("{} is missing after the filters build", module.display());
            }
        }
        if !no_pgo {
            instrumented = Some(crate::pgo::build_instrumented(&root)?);
        }
    }

    let clk_tck: f64 = output("getconf", &["CLK_TCK"])?
        .trim()
        .parse()
        .context("`getconf CLK_TCK` did not print a number")?;
    let dir = std::env::temp_dir().join(format!("weft-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut processes = Processes::new(dir.clone());
    let script = dir.join("p999.lua");
    write(&script, WRK_SCRIPT)?;
    let cert = if cases.iter().any(|(c, _)| c.proto == Proto::Tls) {
        Some(self_signed(&dir)?)
    } else {
        None
    };

    // A weft target's configuration, written as `DIR/NAME.yaml`.
    let weft_config = |case: Case, port: u16, upstream: u16, name: &str| -> Result<PathBuf> {
        let plugins = weft_plugins(case.server, &hello, &chain);
        let tls = cert.as_ref().filter(|_| case.proto == Proto::Tls);
        let conf = dir.join(format!("{name}.yaml"));
        write(&conf, &weft_conf(port, upstream, &plugins, tls)?)?;
        Ok(conf)
    };

    let ports = free_ports(1 + cases.len())?;
    let (upstream_port, target_ports) = ports.split_first().context("no free ports")?;
    let upstream_port = *upstream_port;

    step(&format!(
        "starting the upstream: nginx `return 200 \"ok\"` on 127.0.0.1:{upstream_port}, one worker, pinned to CPU {LOAD_CPU} with the load"
    ));
    let conf = write_nginx_conf(
        &dir,
        "upstream",
        &format!(
            "server {{\n        listen 127.0.0.1:{upstream_port};\n        location / {{ return 200 \"ok\"; }}\n        \
             location = /large {{ root {}; }}\n    }}",
            dir.display()
        ),
    )?;
    // The training's larger response.
    write(&dir.join("large"), &"x".repeat(LARGE_BYTES))?;
    // On the load's CPU: left free, the scheduler puts it on the target's
    // CPU at times (woken by the target's writes), where it takes CPU from
    // the target and caps its requests/s.
    let upstream = processes.spawn("upstream", nginx_command(LOAD_CPU, &dir, &conf))?;
    let upstream_addr = SocketAddr::from(([127, 0, 0, 1], upstream_port));
    processes.wait_answering(upstream, upstream_addr, None)?;

    // The measured weft: built with the profile of a training run through
    // the instrumented build, or the plain release build.
    let weft = match &instrumented {
        Some(binary) => {
            let weft_cases: Vec<Case> = cases
                .iter()
                .map(|&(case, _)| case)
                .filter(|c| c.is_weft() && c.server != Server::WeftPlain)
                .collect();
            step(&format!(
                "PGO: training: {TRAINING_SECONDS} s of the bench's load and {VARIED_SECONDS} s of varied requests \
                 ({} KiB responses, requests with {} KiB bodies, a browser's headers) through the instrumented weft, \
                 once per weft target",
                LARGE_BYTES / 1024,
                REQUEST_BODY_BYTES / 1024
            ));
            let varied = dir.join("varied.lua");
            write(&varied, &varied_script())?;
            for case in weft_cases {
                let port = *free_ports(1)?.first().context("no free port")?;
                let name = format!("training-{}", case.slug());
                let conf = weft_config(case, port, upstream_port, &name)?;
                let process = processes.spawn(&name, weft_command(binary, &conf))?;
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                wait_ready(&mut processes, process, case, addr)?;
                load(case.proto, addr, TRAINING_SECONDS, &script)
                    .and_then(|_| varied_load(case.proto, addr, VARIED_SECONDS, &varied))
                    .with_context(|| format!("training on {}", case.label()))?;
                processes.stop(process)?;
                println!("    {}: trained", case.label());
            }
            crate::pgo::build_optimised(&root)?
        }
        None => plain.clone(),
    };
    if build_only {
        processes.keep = false;
        return Ok(weft);
    }

    step(&format!(
        "starting the targets, one worker each, pinned to CPU {TARGET_CPU} (taskset -c {TARGET_CPU})"
    ));
    let mut running = Vec::new();
    for (&(case, measured), &port) in cases.iter().zip(target_ports) {
        let command = match case.server {
            Server::Nginx => {
                let conf = write_nginx_conf(
                    &dir,
                    case.slug(),
                    &nginx_proxy(port, upstream_port, case.proto, cert.as_ref()),
                )?;
                nginx_command(TARGET_CPU, &dir, &conf)
            }
            Server::Haproxy => {
                let conf = dir.join("haproxy.cfg");
                write(&conf, &haproxy_conf(port, upstream_port))?;
                let mut command = Command::new("taskset");
                command
                    .args(["-c", TARGET_CPU, HAPROXY, "-db", "-f"])
                    .arg(&conf);
                command
            }
            Server::Pingora | Server::Floor => {
                let binary = BENCH_CRATES
                    .iter()
                    .find(|k| k.server == case.server)
                    .map(|k| k.binary)
                    .context("no bench crate for this target")?;
                let mut command = Command::new("taskset");
                command
                    .args(["-c", TARGET_CPU])
                    .arg(root.join(binary))
                    .arg(format!("127.0.0.1:{port}"))
                    .arg(format!("127.0.0.1:{upstream_port}"));
                command
            }
            Server::Weft | Server::WeftHello | Server::WeftChain | Server::WeftPlain => {
                let conf = weft_config(case, port, upstream_port, case.slug())?;
                let binary = if case.server == Server::WeftPlain {
                    &plain
                } else {
                    &weft
                };
                weft_command(binary, &conf)
            }
        };
        let process = processes.spawn(case.slug(), command)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_ready(&mut processes, process, case, addr)?;
        println!("    {}: {}", case.label(), url(case.proto, addr));
        running.push(Running {
            case,
            process,
            addr,
            measured,
        });
    }
    let tls_info: Vec<(Case, String)> = running
        .iter()
        .filter(|r| r.case.proto == Proto::Tls)
        .map(|r| (r.case, negotiated(r.addr)))
        .collect();

    step(&format!(
        "warming up: {WARM_UP_SECONDS} s of load on each target (not recorded)"
    ));
    for target in &running {
        load(target.case.proto, target.addr, WARM_UP_SECONDS, &script)
            .with_context(|| format!("warming up {}", target.case.label()))?;
    }

    // Described now, so that the load average is the one the rounds start in.
    let machine = Machine::describe(clk_tck);
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); running.len()];
    // The fixed-rate runs: directly to the upstream, then through each
    // HTTP/1.1 target; every round's latencies pooled.
    let mut hops: Vec<(String, SocketAddr)> = Vec::new();
    if wants(Group::Latency) {
        hops.push(("direct to the upstream".to_string(), upstream_addr));
        hops.extend(
            running
                .iter()
                .filter(|r| r.case.proto == Proto::H1)
                .map(|r| (r.case.label().to_string(), r.addr)),
        );
    }
    let mut latencies: Vec<Vec<u64>> = vec![Vec::new(); hops.len()];
    for round in 1..=rounds {
        step(&format!(
            "round {round} of {rounds}: wrk -t1 -c{CONNECTIONS} -d{seconds}s (h2c: h2load -t1 -c{CONNECTIONS} -m{STREAMS} -D{seconds}) on each target"
        ));
        for slot in rotated(running.len(), round) {
            let target = &running[slot];
            if !target.measured {
                continue;
            }
            let pids = processes.family(target.process);
            let sample = measure(&pids, clk_tck, || {
                load(target.case.proto, target.addr, seconds, &script)
            })
            .with_context(|| format!("measuring {} (round {round})", target.case.label()))?;
            println!(
                "    {:<34} {:>8.0} req/s  {:>6.1} µs CPU/req  {}  peak RSS {}",
                target.case.label(),
                sample.rps,
                sample.cpu_us,
                sample.latency_line(),
                mib(sample.rss_kib),
            );
            if let Some(list) = samples.get_mut(slot) {
                list.push(sample);
            }
        }
        if hops.is_empty() {
            continue;
        }
        step(&format!(
            "round {round} of {rounds}: {rate} requests/s over {LATENCY_CONNECTIONS} connections for {seconds} s, directly and through each HTTP/1.1 target"
        ));
        for hop in rotated(hops.len(), round) {
            let (label, addr) = &hops[hop];
            let pooled = &mut latencies[hop];
            let pinned = Pinned::to(LOAD_CPU)?;
            let run = fixed_rate(
                *addr,
                rate,
                LATENCY_CONNECTIONS,
                Duration::from_secs(seconds),
            )
            .with_context(|| format!("fixed-rate run through {label} (round {round})"))?;
            drop(pinned);
            let mut sorted = run.latencies_ns;
            sorted.sort_unstable();
            println!(
                "    {label:<34} {:>6} requests  p50 {}  p99 {}  p99.9 {}",
                sorted.len(),
                us(percentile(&sorted, 50.0) / 1e3),
                us(percentile(&sorted, 99.0) / 1e3),
                us(percentile(&sorted, 99.9) / 1e3),
            );
            pooled.extend(sorted);
        }
    }
    for pooled in &mut latencies {
        pooled.sort_unstable();
    }

    let results = Results {
        pgo: instrumented.is_some(),
        machine,
        seconds,
        rounds,
        rate,
        running,
        samples,
        hops: hops
            .into_iter()
            .map(|(label, _)| label)
            .zip(latencies)
            .collect(),
        skipped,
        tls_info,
    };
    let section = report(&results);
    step("results");
    println!("{section}");
    if only.is_empty() {
        write_doc(&section)?;
        write_plots(&results)?;
        println!("\n    written into {DOC} between {BEGIN} and {END}, plots into {PLOTS}/");
    } else {
        println!("\n    --only: {DOC} and {PLOTS}/ left as they were");
    }
    processes.keep = false;
    Ok(weft)
}

fn url(proto: Proto, addr: SocketAddr) -> String {
    match proto {
        Proto::Tls => format!("https://{addr}/"),
        _ => format!("http://{addr}/"),
    }
}

/// Installs the Debian packages whose file is missing.
fn install(packages: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(_, file)| !Path::new(file).exists())
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        let names: Vec<&str> = packages.iter().map(|(p, _)| *p).collect();
        println!("    Debian packages present: {}", names.join(", "));
        Ok(())
    } else {
        setup::apt_install(&missing)
    }
}

/// `cargo build --release` of a bench-only crate into its own target
/// directory, after the package it needs; the error says why it did not
/// build (the first error lines of the build).
fn build_bench_crate(krate: &BenchCrate) -> Result<()> {
    let BenchCrate {
        server,
        manifest,
        target_dir,
        binary,
        needs,
    } = krate;
    let what = case_of(Proto::H1, *server).label();
    step(&format!(
        "building {what} (cargo build --release --manifest-path {manifest} --target-dir {target_dir})"
    ));
    if let Some(package) = needs {
        install(&[*package]).with_context(|| {
            format!(
                "{} (needed to build {what}) could not be installed",
                package.0
            )
        })?;
    }
    let mut child = cargo()
        .args(["build", "--release", "--manifest-path", manifest])
        .args(["--target-dir", target_dir])
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run cargo")?;
    let stderr = child.stderr.take().context("cargo has no stderr")?;
    let mut errors = Vec::new();
    for line in std::io::BufReader::new(stderr).lines() {
        let line = line?;
        eprintln!("{line}");
        if line.starts_with("error") && errors.len() < 3 {
            errors.push(line);
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!(
            "`cargo build` of {manifest} failed ({status}): {}",
            if errors.is_empty() {
                "no error line".to_string()
            } else {
                errors.join(" / ")
            }
        );
    }
    if !Path::new(binary).exists() {
        bail!("{binary} is missing after its build");
    }
    Ok(())
}

/// The Pingora version `bench/pingora/Cargo.lock` resolved.
fn pingora_version() -> Option<String> {
    let lock = std::fs::read_to_string(PINGORA_LOCK).ok()?;
    let mut lines = lock.lines();
    lines.find(|l| l.trim() == "name = \"pingora-core\"")?;
    let version = lines.next()?.trim().strip_prefix("version = ")?;
    Some(version.trim_matches('"').to_string())
}

/// A self-signed P-256 certificate for localhost / 127.0.0.1 in `dir`.
fn self_signed(dir: &Path) -> Result<Cert> {
    let cert = Cert {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    let out = Command::new(OPENSSL)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
        ])
        .arg(&cert.key)
        .arg("-out")
        .arg(&cert.cert)
        .output()
        .context("cannot run openssl")?;
    if !out.status.success() {
        bail!(
            "openssl req -x509 failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(cert)
}

/// The protocol and cipher an OpenSSL client (as wrk) gets from `addr`.
fn negotiated(addr: SocketAddr) -> String {
    let out = Command::new("timeout")
        .args(["10", OPENSSL, "s_client", "-brief", "-connect"])
        .arg(addr.to_string())
        .stdin(Stdio::null())
        .output();
    let Ok(out) = out else {
        return "unknown".to_string();
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    match (field("Protocol version:"), field("Ciphersuite:")) {
        (Some(protocol), Some(cipher)) => format!("{protocol}, {cipher}"),
        _ => "unknown".to_string(),
    }
}

/// The five filters of the canary example, in its listener's order, with
/// their modules in target/filters/ and a configuration that lets every
/// request through.
fn chain_plugins(root: &Path) -> Result<Vec<Plugin>> {
    let example = weft_config::load_proxy_config(&root.join(CHAIN_EXAMPLE))
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

/// The nginx reverse proxy: upstream keep-alive as the issue asks; h2c
/// (`http2` on a plain listener: prior knowledge) or TLS downstream (TLS
/// 1.3 allowed, as weft's rustls does: nginx 1.22 leaves it out by default).
fn nginx_proxy(port: u16, upstream: u16, proto: Proto, cert: Option<&Cert>) -> String {
    let listen = match (proto, cert) {
        (Proto::H2c, _) => format!("listen 127.0.0.1:{port} http2;"),
        (Proto::Tls, Some(cert)) => format!(
            "listen 127.0.0.1:{port} ssl;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate {};
        ssl_certificate_key {};",
            cert.cert.display(),
            cert.key.display()
        ),
        _ => format!("listen 127.0.0.1:{port};"),
    };
    format!(
        "upstream up {{
        server 127.0.0.1:{upstream};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        {listen}
        location / {{
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }}
    }}"
    )
}

/// The targets a run starts, and whether each is measured (else it only
/// serves the latency runs): a group's own, nginx `proxy_pass` as the
/// base of Pingora and the hyper floor, the HTTP/1.1 ones for the
/// latency runs; the plain weft build only beside a PGO one.
fn selected(groups: &[Group], no_pgo: bool) -> Vec<(Case, bool)> {
    let wants = |group| groups.contains(&group);
    CASES
        .iter()
        .filter_map(|&case| {
            let measured = wants(case.group())
                || (case == case_of(Proto::H1, Server::Nginx)
                    && (wants(Group::Pingora) || wants(Group::Floor)));
            let started = measured || (case.group() == Group::H1 && wants(Group::Latency));
            // Without PGO, weft is the plain build already.
            let started = started && !(no_pgo && case.server == Server::WeftPlain);
            started.then_some((case, measured))
        })
        .collect()
}

/// `weft --log warn proxy --config CONF`, pinned to the targets' CPU.
fn weft_command(binary: &Path, conf: &Path) -> Command {
    let mut command = Command::new("taskset");
    command
        .args(["-c", TARGET_CPU])
        .arg(binary)
        // Like the peers, nothing written per request.
        .args(["--log", "warn", "proxy", "--config"])
        .arg(conf);
    command
}

/// Waits until a started target answers the way its case is spoken to.
fn wait_ready(
    processes: &mut Processes,
    process: usize,
    case: Case,
    addr: SocketAddr,
) -> Result<()> {
    match case.proto {
        Proto::H1 => processes.wait_answering(process, addr, case.expected_header()),
        Proto::H2c => processes.wait_probe(process, "HTTP/2 by prior knowledge", || {
            h2load_probe(&format!("http://{addr}/"), false)
        }),
        Proto::Tls => processes.wait_probe(process, "HTTPS", || {
            h2load_probe(&format!("https://{addr}/"), true)
        }),
    }
}

/// `nginx -p DIR -c CONF -e LOG`, pinned to `cpu`.
fn nginx_command(cpu: &str, dir: &Path, conf: &Path) -> Command {
    let mut command = Command::new("taskset");
    command.args(["-c", cpu, NGINX]);
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

/// The plugins a weft target runs, in order: hello-rust (`hello`), the
/// chain, or none.
fn weft_plugins(server: Server, hello: &Path, chain: &[Plugin]) -> Vec<Plugin> {
    match server {
        Server::WeftHello => vec![(
            "hello".to_string(),
            hello.to_path_buf(),
            serde_json::json!({"header": "x-hello", "value": "world"}),
        )],
        Server::WeftChain => chain.to_vec(),
        _ => Vec::new(),
    }
}

/// A plugin of a weft target: its name, module and configuration.
type Plugin = (String, PathBuf, serde_json::Value);

/// A weft configuration: one worker, one route to the upstream (the
/// router's cluster header honoured), the given plugins in order, TLS
/// with `tls`.
fn weft_conf(port: u16, upstream: u16, plugins: &[Plugin], tls: Option<&Cert>) -> Result<String> {
    let names: Vec<&str> = plugins.iter().map(|(name, _, _)| name.as_str()).collect();
    let tls = match tls {
        Some(cert) => format!(
            "    tls:\n      certificates:\n        - {{cert: {}, key: {}}}\n",
            serde_json::to_string(&cert.cert.display().to_string())?,
            serde_json::to_string(&cert.key.display().to_string())?
        ),
        None => String::new(),
    };
    let mut conf = format!(
        "workers: 1
drain_timeout_ms: 1000
listeners:
  - name: bench
    address: 127.0.0.1:{port}
    request_id: false
    traceparent: false
{tls}    filters: [{}]
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

/// One recorded run against one target.
#[derive(Clone)]
struct Sample {
    rps: f64,
    cpu_us: f64,
    /// The part of `cpu_us` spent in user space (utime).
    user_us: f64,
    rss_kib: u64,
    /// wrk's percentiles (µs); NaN from h2load.
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    /// h2load's mean request time (µs); NaN from wrk.
    mean_us: f64,
    socket_errors: u64,
}

impl Sample {
    fn latency_line(&self) -> String {
        if self.mean_us.is_finite() {
            format!("mean {}", ms(self.mean_us))
        } else {
            format!(
                "p50 {}  p99 {}  p99.9 {}",
                ms(self.p50_us),
                ms(self.p99_us),
                ms(self.p999_us)
            )
        }
    }
}

/// One recorded run: the target's CPU time and peak RSS around `load`.
fn measure(pids: &[u32], clk_tck: f64, load: impl FnOnce() -> Result<Load>) -> Result<Sample> {
    let before = cpu_ticks(pids)?;
    let load = load()?;
    let after = cpu_ticks(pids)?;
    if load.requests == 0 {
        bail!("the load generator counted no requests");
    }
    let per_request = |ticks: u64| ticks as f64 / clk_tck * 1e6 / load.requests as f64;
    let user = after.user.saturating_sub(before.user);
    let system = after.system.saturating_sub(before.system);
    Ok(Sample {
        rps: load.rps,
        cpu_us: per_request(user + system),
        user_us: per_request(user),
        rss_kib: peak_rss_kib(pids)?,
        p50_us: load.p50_us,
        p99_us: load.p99_us,
        p999_us: load.p999_us,
        mean_us: load.mean_us,
        socket_errors: load.socket_errors,
    })
}

/// What a load generator reports.
#[derive(Debug, PartialEq)]
struct Load {
    requests: u64,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    mean_us: f64,
    socket_errors: u64,
}

/// The protocol's load generator against `addr` for `seconds`.
fn load(proto: Proto, addr: SocketAddr, seconds: u64, script: &Path) -> Result<Load> {
    match proto {
        Proto::H1 | Proto::Tls => wrk(&url(proto, addr), seconds, script),
        Proto::H2c => h2load(&[url(proto, addr)], &[], seconds),
    }
}

/// The varied training load: over HTTP/1.1 (wrk, `script` from
/// [`varied_script`]) small and large responses, requests with a body and
/// with a browser's headers in turn; over h2c (h2load, which sends one
/// body on every request or none) the same without the body.
fn varied_load(proto: Proto, addr: SocketAddr, seconds: u64, script: &Path) -> Result<Load> {
    match proto {
        Proto::H1 | Proto::Tls => wrk(&url(proto, addr), seconds, script),
        Proto::H2c => {
            let base = url(proto, addr);
            let urls = [
                base.clone(),
                format!("{base}large"),
                format!("{base}search?q=weft&page=2"),
            ];
            h2load(&urls, &BROWSER_HEADERS, seconds)
        }
    }
}

/// The wrk script of [`varied_load`]: it cycles through four requests,
/// and reports the 99.9th percentile like [`WRK_SCRIPT`].
fn varied_script() -> String {
    let headers: Vec<String> = BROWSER_HEADERS
        .iter()
        .map(|(name, value)| format!("[\"{name}\"] = \"{value}\""))
        .collect();
    format!(
        "local requests\n\
         init = function(args)\n  \
         requests = {{\n    \
         wrk.format(\"GET\", \"/\"),\n    \
         wrk.format(\"GET\", \"/large\"),\n    \
         wrk.format(\"POST\", \"/\", {{[\"Content-Type\"] = \"application/octet-stream\"}}, string.rep(\"x\", {REQUEST_BODY_BYTES})),\n    \
         wrk.format(\"GET\", \"/search?q=weft&page=2\", {{{}}}),\n  \
         }}\n\
         end\n\
         local i = 0\n\
         request = function()\n  \
         i = i + 1\n  \
         return requests[i % #requests + 1]\n\
         end\n\
         {WRK_SCRIPT}",
        headers.join(", ")
    )
}

/// `wrk -t1 -c32 -dNs --latency -s p999.lua URL` on CPU 0; fails on any
/// non-2xx answer.
fn wrk(url: &str, seconds: u64, script: &Path) -> Result<Load> {
    let mut command = Command::new("taskset");
    command
        .args([
            "-c",
            LOAD_CPU,
            WRK,
            "-t1",
            &format!("-c{CONNECTIONS}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(url);
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

fn parse_wrk(text: &str) -> Result<Load> {
    let (mut requests, mut rps, mut p50, mut p99, mut p999) = (None, None, None, None, None);
    let mut socket_errors = 0;
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("50%"), Some(value)) => p50 = Some(duration_us(value)?),
            (Some("99%"), Some(value)) => p99 = Some(duration_us(value)?),
            (Some("p99.9"), Some(value)) => p999 = Some(value.parse::<f64>()?),
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
    Ok(Load {
        requests: requests.context("no `N requests in` line")?,
        rps: rps.context("no `Requests/sec:` line")?,
        p50_us: p50.context("no `50%` latency line (--latency)")?,
        p99_us: p99.context("no `99%` latency line (--latency)")?,
        p999_us: p999.context("no `p99.9` line (from the done() script)")?,
        mean_us: f64::NAN,
        socket_errors,
    })
}

/// `h2load -t1 -c32 -m10 -DN [-H HEADER]... URL...` on CPU 0 (the URLs'
/// paths in turn); fails on any failed request or non-2xx answer.
fn h2load(urls: &[String], headers: &[(&str, &str)], seconds: u64) -> Result<Load> {
    let mut command = Command::new("taskset");
    command.args([
        "-c",
        LOAD_CPU,
        H2LOAD,
        "-t1",
        &format!("-c{CONNECTIONS}"),
        &format!("-m{STREAMS}"),
        &format!("-D{seconds}"),
    ]);
    for (name, value) in headers {
        command.arg("-H").arg(format!("{name}: {value}"));
    }
    command.args(urls);
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
    parse_h2load(&text).with_context(|| format!("cannot read the output of {command:?}:\n{text}"))
}

/// One request with h2load (HTTP/2 by prior knowledge, or HTTP/1.1 over
/// TLS with `h1`): ready when it got a 2xx.
fn h2load_probe(url: &str, h1: bool) -> Result<()> {
    let mut command = Command::new("timeout");
    command.args(["10", H2LOAD, "-n1", "-c1"]);
    if h1 {
        command.arg("--h1");
    }
    let out = command
        .arg(url)
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_h2load(&text).map(|_| ())
}

fn parse_h2load(text: &str) -> Result<Load> {
    let (mut succeeded, mut rps, mut mean) = (None, None, None);
    let field = |line: &str, name: &str| -> Option<u64> {
        line.split(',')
            .find_map(|part| part.trim().strip_suffix(name))
            .and_then(|n| n.trim().rsplit(' ').next()?.parse().ok())
    };
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("finished in ") {
            // `finished in 2.00s, 45000.50 req/s, 1.29MB/s`
            rps = rest
                .split(',')
                .find_map(|part| part.trim().strip_suffix(" req/s"))
                .and_then(|v| v.parse::<f64>().ok());
        } else if let Some(rest) = line.strip_prefix("requests:") {
            // `requests: 90 total, 91 started, 90 done, 90 succeeded, 0 failed, 0 errored, 0 timeout`
            succeeded = field(rest, " succeeded");
            let failed: u64 = [" failed", " errored", " timeout"]
                .iter()
                .filter_map(|name| field(rest, name))
                .sum();
            if failed > 0 {
                bail!("{failed} requests failed, errored or timed out");
            }
        } else if let Some(rest) = line.strip_prefix("status codes:") {
            // `status codes: 90 2xx, 0 3xx, 0 4xx, 0 5xx`
            let bad: u64 = [" 4xx", " 5xx"]
                .iter()
                .filter_map(|name| field(rest, name))
                .sum();
            if bad > 0 {
                bail!("{bad} answers were 4xx or 5xx");
            }
        } else if let Some(rest) = line.strip_prefix("time for request:") {
            // `time for request:   195us   12.30ms   6.89ms   1.20ms   70.00%`: min max mean sd
            mean = rest
                .split_whitespace()
                .nth(2)
                .map(duration_us)
                .transpose()?;
        }
    }
    let requests = succeeded.context("no `requests:` line")?;
    if requests == 0 {
        bail!("no request succeeded");
    }
    Ok(Load {
        requests,
        rps: rps.context("no `finished in` line")?,
        p50_us: f64::NAN,
        p99_us: f64::NAN,
        p999_us: f64::NAN,
        mean_us: mean.context("no `time for request:` line")?,
        socket_errors: 0,
    })
}

/// wrk's and h2load's durations (`812.00us`, `1.23ms`, `2.01s`, `1.50m`)
/// in µs.
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
        bail!("`{value}` is not a duration");
    };
    let number: f64 = number
        .parse()
        .with_context(|| format!("`{value}` is not a duration"))?;
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
    pingora: String,
    wrk: String,
    h2load: String,
    openssl: String,
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
        let openssl = first_line(OPENSSL, &["version"]);
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
            pingora: pingora_version().map_or("Pingora (version unknown)".to_string(), |v| {
                format!("Pingora {v}")
            }),
            // `wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer`
            wrk: wrk.split(" [").next().unwrap_or(&wrk).to_string(),
            // `h2load nghttp2/1.52.0`
            h2load: first_line(H2LOAD, &["--version"]),
            // `OpenSSL 3.0.17 1 Jul 2025 (Library: OpenSSL 3.0.17 1 Jul 2025)`
            openssl: openssl
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" "),
            weft,
            load: std::fs::read_to_string("/proc/loadavg")
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|_| "unknown".to_string()),
            clk_tck,
        }
    }
}

/// Runs a program and returns its standard output.
pub(crate) fn output(program: &str, args: &[&str]) -> Result<String> {
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
    if us.is_finite() {
        format!("{:.2} ms", us / 1000.0)
    } else {
        "–".to_string()
    }
}

/// The order round `round` (from 1) runs `n` targets in: the tables'
/// order, starting one further each round, so that no target always runs
/// first or last in a round (a drift within rounds would land on it).
fn rotated(n: usize, round: usize) -> impl Iterator<Item = usize> {
    let start = if n == 0 { 0 } else { (round - 1) % n };
    (0..n).map(move |i| (start + i) % n)
}

/// A latency given in µs: `85 µs` below a millisecond, else `4.16 ms`.
fn us(us: f64) -> String {
    if !us.is_finite() {
        "–".to_string()
    } else if us.abs() < 1000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn times(ratio: f64) -> String {
    if ratio.is_finite() {
        format!("{ratio:.2}×")
    } else {
        "–".to_string()
    }
}

/// Everything a run measured, for the report and the plots.
struct Results {
    /// weft was built with profile-guided optimisation.
    pgo: bool,
    machine: Machine,
    seconds: u64,
    rounds: usize,
    rate: u32,
    running: Vec<Running>,
    /// Per running target (same order), one sample per round.
    samples: Vec<Vec<Sample>>,
    /// The fixed-rate runs: what was measured, its latencies (ns), sorted.
    hops: Vec<(String, Vec<u64>)>,
    /// Targets left out, and why.
    skipped: Vec<(&'static str, String)>,
    tls_info: Vec<(Case, String)>,
}

impl Results {
    /// The slot of `case` if it was measured.
    fn slot(&self, case: Case) -> Option<usize> {
        self.running
            .iter()
            .position(|r| r.case == case && r.measured)
    }

    /// The measured targets of `proto`, with their slots.
    fn of(&self, proto: Proto) -> Vec<(usize, Case)> {
        self.running
            .iter()
            .enumerate()
            .filter(|(_, r)| r.case.proto == proto && r.measured)
            .map(|(slot, r)| (slot, r.case))
            .collect()
    }

    /// The median over rounds of `figure` for `slot`.
    fn median(&self, slot: usize, figure: impl Fn(&Sample) -> f64) -> f64 {
        median(
            self.samples
                .get(slot)
                .map(|s| s.iter().map(&figure).collect())
                .unwrap_or_default(),
        )
    }

    /// The median over rounds of `figure(slot) / figure(base)`, each
    /// round's ratio taken within the round.
    fn ratio(&self, slot: usize, base: Option<usize>, figure: impl Fn(&Sample) -> f64) -> f64 {
        let (Some(of), Some(to)) = (
            self.samples.get(slot),
            base.and_then(|b| self.samples.get(b)),
        ) else {
            return f64::NAN;
        };
        median(
            of.iter()
                .zip(to)
                .map(|(a, b)| figure(a) / figure(b))
                .collect(),
        )
    }
}

/// The section written between the markers (and printed).
fn report(r: &Results) -> String {
    let mut out = String::new();
    let m = &r.machine;
    let (seconds, rounds, rate) = (r.seconds, r.rounds, r.rate);
    let _ = writeln!(out, "## Latest `cargo xtask bench` run ({})\n", m.date);
    let _ = writeln!(
        out,
        "`cargo xtask bench --seconds {seconds} --rounds {rounds}` on {} CPUs ({}), {}; \
         {}, {}, {}, {}, {}, {}; weft at {} ({}). Load average when the run \
         started: {}.\n",
        m.cpus,
        m.model,
        m.kernel,
        m.nginx,
        m.haproxy,
        m.pingora,
        m.wrk,
        m.h2load,
        m.openssl,
        m.weft,
        if r.pgo {
            "release build with profile-guided optimisation, see below"
        } else {
            "release build, `--no-pgo`"
        },
        m.load
    );
    let _ = writeln!(
        out,
        "- Upstream: nginx `return 200 \"ok\"`, one worker, keep-alive \
         (`keepalive_requests 1000000`), pinned to CPU {LOAD_CPU} with the load, so that the target's \
         CPU is its own.
- Targets, one worker each, pinned to CPU {TARGET_CPU} (`taskset -c {TARGET_CPU}`): nginx \
  `proxy_pass` (`keepalive 64`, `proxy_http_version 1.1`, empty `Connection`, \
  `keepalive_requests 1000000` on both sides); haproxy (`nbthread 1`, `http-reuse always`); \
  Pingora, the minimal `ProxyHttp` of `bench/pingora` (`threads: 1`, every request to the \
  upstream through Pingora's keep-alive pool, default allocator); the minimal hyper proxy of \
  `bench/hyper-floor` (hyper 1.x server and client connections on one current-thread tokio \
  runtime, mimalloc as `malloc`, as in weft, its own pool of upstream connections, the request forwarded as \
  received: what a proxy built on hyper costs at least, for reference); weft (`workers: 1`, \
  `request_id` and `traceparent` off, one route forwarding with `cluster_header`) without \
  filters, with hello-rust (`{{header: x-hello, value: world}}`), and with the chain of \
  `{CHAIN_EXAMPLE}` (auth, ratelimit, router, fault, telemetry) configured to let every \
  request through: auth `allow_anonymous`, a bucket of 10⁹ tokens, one router backend, 0% \
  aborts, telemetry without its access-log line. weft runs with `--log warn`, so \
  hello-rust's INFO line per request is filtered out: like nginx and haproxy (`access_log \
  off`, no `log`), nothing is written per request. Every target forwards HTTP/1.1 to the \
  upstream over kept-alive connections, whatever the downstream protocol.{}
- HTTP/1.1 load: `wrk -t1 -c{CONNECTIONS} -d{seconds}s --latency` pinned to CPU {LOAD_CPU} on \
  loopback, with a `done()` script printing p99.9 from wrk's own histogram. These are \
  closed-loop figures at saturation: the fixed-rate runs below are the latency a client sees.
- HTTP/2: nginx `listen … http2` on a plain listener and weft on its plain listener both take \
  HTTP/2 by prior knowledge (h2c); `h2load -t1 -c{CONNECTIONS} -m{STREAMS} -D{seconds}` \
  ({} streams in flight) pinned to CPU {LOAD_CPU}. h2load gives no percentiles: its mean \
  request time is shown.
- TLS: a self-signed P-256 certificate made for the run (`openssl req -x509 -newkey ec \
  -pkeyopt ec_paramgen_curve:prime256v1`); nginx `listen … ssl` (`ssl_protocols TLSv1.2 \
  TLSv1.3`, nginx 1.22's default lacks 1.3; default ciphers, OpenSSL) and a weft listener with `tls: {{certificates: [...]}}` (rustls); \
  HTTP/1.1 with keep-alive from `wrk … https://…` (one handshake per connection, then \
  records).
- Fixed rate: {rate} requests/s over {LATENCY_CONNECTIONS} keep-alive connections \
  (`xtask/src/bench_load.rs`, one thread per connection, pinned to CPU {LOAD_CPU}), each \
  request sent at its scheduled time and its latency counted from that time, so a slow answer \
  also counts against the requests queued behind it (no coordinated omission); directly \
  against the upstream and through each HTTP/1.1 target, {seconds} s each round, the rounds' \
  latencies pooled. The added latency of a hop is the percentile through the target minus \
  the same percentile direct. At this rate the targets idle between requests on their own \
  CPU, so each hop also pays for waking it, alike for every proxy: compare them with each \
  other.
- The targets interleaved in the order of the tables, each round starting one target \
  further (so that none always runs first or last), {rounds} round(s), after a \
  {WARM_UP_SECONDS} s warm-up each. CPU per request: utime + stime of the target's processes \
  (`/proc/PID/stat`, {} ticks/s) over the run, divided by the requests counted; \
  \"of it user space\" is the utime part alone, the rest is the kernel's (loopback TCP). \
  Peak RSS: `VmHWM` summed over the target's processes. Figures are medians over the rounds; ratios \
  are medians of the ratios taken within each round.\n",
        if r.pgo {
            format!(
                "\n- weft is built with profile-guided optimisation (`xtask/src/pgo.rs`): an \
                 instrumented release build (`-Cprofile-generate`) serves {TRAINING_SECONDS} s of \
                 this bench's own load for each weft target (same configurations, same upstream), \
                 then {VARIED_SECONDS} s of varied requests ({} KiB responses, requests with {} KiB \
                 bodies, a browser's headers; over h2c without bodies), its counts are merged \
                 with `llvm-profdata`, and the measured build uses them (`-Cprofile-use`); \
                 `cargo xtask dist` builds the same. \"Built without PGO\" is `cargo build \
                 --release`, for comparison; `--no-pgo` measures that build alone. nginx and \
                 haproxy are Debian's builds; Pingora and the minimal hyper proxy use the release \
                 profile weft's plain build uses (fat LTO, one codegen unit), without PGO.",
                LARGE_BYTES / 1024,
                REQUEST_BODY_BYTES / 1024
            )
        } else {
            String::new()
        },
        CONNECTIONS * STREAMS,
        m.clk_tck
    );
    for (name, reason) in &r.skipped {
        let _ = writeln!(out, "**{name}: SKIPPED** — {reason}\n");
    }

    let nginx = r.slot(case_of(Proto::H1, Server::Nginx));
    let h1 = r.of(Proto::H1);
    if !h1.is_empty() {
        out.push_str(
            "### HTTP/1.1\n\n\
             | target | req/s | CPU µs/req | of it user space | p50 | p99 | p99.9 | peak RSS | req/s vs nginx | CPU/req vs nginx |\n\
             | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        );
        for &(slot, case) in &h1 {
            throughput_row(&mut out, r, slot, case, nginx, true);
        }
        out.push_str("\n![Throughput of every target](bench/throughput.svg)\n");
        for (name, server) in [
            ("Pingora", Server::Pingora),
            ("the minimal hyper proxy", Server::Floor),
        ] {
            if let (Some(weft), Some(other)) = (
                r.slot(case_of(Proto::H1, Server::Weft)),
                r.slot(case_of(Proto::H1, server)),
            ) {
                let _ = writeln!(
                    out,
                    "\nweft without filters against {name}: {} the requests/s, {} by CPU per \
                     request ({name}'s ÷ weft's).",
                    times(r.ratio(weft, Some(other), |s| s.rps)),
                    times(r.ratio(other, Some(weft), |s| s.cpu_us)),
                );
            }
        }
        let weft = r.slot(case_of(Proto::H1, Server::Weft));
        let goals = [
            ("weft, no filters vs nginx", Server::Weft, nginx, 1.0),
            (
                "weft + hello-rust vs weft, no filters",
                Server::WeftHello,
                weft,
                0.95,
            ),
            (
                "weft + 5-filter chain vs weft, no filters",
                Server::WeftChain,
                weft,
                0.7,
            ),
        ];
        if goals.iter().all(|(_, server, base, _)| {
            base.is_some() && r.slot(case_of(Proto::H1, *server)).is_some()
        }) {
            out.push_str(
                "\nThe issue's targets (throughput ratios; \"by CPU\" is the same ratio computed \
                 from CPU per request, base ÷ target, steadier on a noisy machine):\n\n\
                 | comparison | target | req/s ratio | by CPU | verdict (req/s) |\n\
                 | --- | --- | --- | --- | --- |\n",
            );
            for (what, server, base, goal) in goals {
                let Some(slot) = r.slot(case_of(Proto::H1, server)) else {
                    continue;
                };
                let by_rps = r.ratio(slot, base, |s| s.rps);
                let by_cpu = base.map_or(f64::NAN, |b| r.ratio(b, Some(slot), |s| s.cpu_us));
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
        }
    }

    let h2 = r.of(Proto::H2c);
    if !h2.is_empty() {
        let base = r.slot(case_of(Proto::H2c, Server::Nginx));
        out.push_str(
            "\n### HTTP/2 (h2c, prior knowledge)\n\n\
             | target | req/s | CPU µs/req | of it user space | mean request time | peak RSS | req/s vs nginx | CPU/req vs nginx |\n\
             | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        );
        for &(slot, case) in &h2 {
            throughput_row(&mut out, r, slot, case, base, false);
        }
    }

    let tls = r.of(Proto::Tls);
    if !tls.is_empty() {
        let base = r.slot(case_of(Proto::Tls, Server::Nginx));
        out.push_str(
            "\n### TLS termination (HTTP/1.1, keep-alive)\n\n\
             | target | req/s | CPU µs/req | of it user space | p50 | p99 | p99.9 | peak RSS | req/s vs nginx | CPU/req vs nginx |\n\
             | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        );
        for &(slot, case) in &tls {
            throughput_row(&mut out, r, slot, case, base, true);
        }
        if !r.tls_info.is_empty() {
            let negotiated: Vec<String> = r
                .tls_info
                .iter()
                .map(|(case, info)| format!("{}: {info}", case.label()))
                .collect();
            let _ = writeln!(
                out,
                "\nNegotiated with an OpenSSL client (`openssl s_client`, as wrk): {}.",
                negotiated.join("; ")
            );
        }
    }

    if let Some((_, direct)) = r.hops.first() {
        let _ = writeln!(
            out,
            "\n### Latency at a fixed rate ({rate} requests/s, {LATENCY_CONNECTIONS} connections)\n\n\
             | path | requests | p50 | p99 | p99.9 | max | added p50 | added p99 | added p99.9 |\n\
             | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        let at = |sorted: &[u64], p: f64| percentile(sorted, p) / 1e3;
        for (index, (label, sorted)) in r.hops.iter().enumerate() {
            let added = |p: f64| {
                if index == 0 {
                    "–".to_string()
                } else {
                    let added = at(sorted, p) - at(direct, p);
                    format!("{}{}", if added < 0.0 { "−" } else { "+" }, us(added.abs()))
                }
            };
            let _ = writeln!(
                out,
                "| {label} | {} | {} | {} | {} | {} | {} | {} | {} |",
                sorted.len(),
                us(at(sorted, 50.0)),
                us(at(sorted, 99.0)),
                us(at(sorted, 99.9)),
                us(at(sorted, 100.0)),
                added(50.0),
                added(99.0),
                added(99.9),
            );
        }
        out.push_str("\n![Latency by percentile at a fixed rate](bench/latency.svg)\n");
    }

    let measured: Vec<(usize, Case)> = r
        .running
        .iter()
        .enumerate()
        .filter(|(_, t)| t.measured)
        .map(|(slot, t)| (slot, t.case))
        .collect();
    if !measured.is_empty() {
        out.push_str("\nEach round, CPU µs per request / requests per second:\n\n| target |");
        for round in 1..=rounds {
            let _ = write!(out, " round {round} |");
        }
        out.push_str("\n| --- |");
        out.push_str(&" --- |".repeat(rounds));
        out.push('\n');
        for (slot, case) in measured {
            let _ = write!(out, "| {} |", case.label());
            for sample in r.samples.get(slot).into_iter().flatten() {
                let _ = write!(out, " {:.1} / {:.1}k |", sample.cpu_us, sample.rps / 1000.0);
            }
            out.push('\n');
        }
    }
    let errors: u64 = r.samples.iter().flatten().map(|s| s.socket_errors).sum();
    if errors > 0 {
        let _ = writeln!(
            out,
            "\nwrk reported {errors} socket error(s) (connect, read, write or timeout) over the run."
        );
    }
    out.push_str(
        "\nNot measured by `cargo xtask bench`: the runtime's micro figures (callback round \
         trip, VM instantiation, memory per VM: \"Runtime micro benchmarks\" below) and bytes \
         copied per request (\"Bytes copied per request\" below).\n",
    );
    out
}

/// A row of a throughput table: with wrk's percentiles (`percentiles`)
/// or h2load's mean.
fn throughput_row(
    out: &mut String,
    r: &Results,
    slot: usize,
    case: Case,
    base: Option<usize>,
    percentiles: bool,
) {
    let latency = if percentiles {
        format!(
            "{} | {} | {}",
            ms(r.median(slot, |s| s.p50_us)),
            ms(r.median(slot, |s| s.p99_us)),
            ms(r.median(slot, |s| s.p999_us))
        )
    } else {
        ms(r.median(slot, |s| s.mean_us))
    };
    let _ = writeln!(
        out,
        "| {} | {:.0} | {:.1} | {:.1} | {latency} | {} | {} | {} |",
        case.label(),
        r.median(slot, |s| s.rps),
        r.median(slot, |s| s.cpu_us),
        r.median(slot, |s| s.user_us),
        mib(r.median(slot, |s| s.rss_kib as f64) as u64),
        times(r.ratio(slot, base, |s| s.rps)),
        times(r.ratio(slot, base, |s| s.cpu_us)),
    );
}

/// docs/bench/throughput.svg and docs/bench/latency.svg.
fn write_plots(r: &Results) -> Result<()> {
    std::fs::create_dir_all(PLOTS).with_context(|| format!("cannot create {PLOTS}"))?;
    let group = |proto: Proto, heading: &str| {
        let bars: Vec<Bar> = r
            .of(proto)
            .into_iter()
            .map(|(slot, case)| {
                let rps = r.median(slot, |s| s.rps);
                Bar {
                    label: case.label().replace('`', ""),
                    value: rps,
                    note: format!(
                        "{:.1}k req/s · {:.1} µs CPU/req",
                        rps / 1000.0,
                        r.median(slot, |s| s.cpu_us)
                    ),
                }
            })
            .collect();
        (heading.to_string(), bars)
    };
    let groups: Vec<(String, Vec<Bar>)> = [
        group(Proto::H1, &format!("HTTP/1.1 — wrk -t1 -c{CONNECTIONS}")),
        group(
            Proto::H2c,
            &format!("HTTP/2 h2c — h2load -t1 -c{CONNECTIONS} -m{STREAMS}"),
        ),
        group(
            Proto::Tls,
            &format!("TLS, HTTP/1.1 — wrk -t1 -c{CONNECTIONS} https"),
        ),
    ]
    .into_iter()
    .filter(|(_, bars)| !bars.is_empty())
    .collect();
    let title = format!(
        "Requests per second, one worker on one CPU (median of {} round(s), {})",
        r.rounds, r.machine.date
    );
    write(
        &Path::new(PLOTS).join("throughput.svg"),
        &bars(&title, "requests per second", &groups),
    )?;
    if !r.hops.is_empty() {
        let series: Vec<Series<'_>> = r
            .hops
            .iter()
            .map(|(label, sorted)| Series {
                name: label.replace('`', ""),
                sorted_ns: sorted,
            })
            .collect();
        let title = format!(
            "Latency at {} requests/s over {LATENCY_CONNECTIONS} connections ({} round(s) pooled, {})",
            r.rate, r.rounds, r.machine.date
        );
        write(
            &Path::new(PLOTS).join("latency.svg"),
            &percentiles(&title, &series),
        )?;
    }
    Ok(())
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

    #[test]
    fn the_plain_weft_build_runs_only_beside_the_pgo_one() {
        let plain = case_of(Proto::H1, Server::WeftPlain);
        let has = |cases: &[(Case, bool)], case| cases.iter().any(|&(c, _)| c == case);
        let all = selected(&ALL_GROUPS, false);
        assert_eq!(all.len(), CASES.len());
        assert!(all.iter().all(|&(_, measured)| measured));
        assert!(!has(&selected(&ALL_GROUPS, true), plain));
        assert!(has(&selected(&[Group::H1], false), plain));
        // The latency runs start (unmeasured) what they go through.
        let latency = selected(&[Group::Latency], false);
        assert!(latency.contains(&(plain, false)));
        assert!(!has(&selected(&[Group::Latency], true), plain));
        assert!(!has(&selected(&[Group::H2, Group::Tls], false), plain));
    }

    #[test]
    fn the_varied_training_script_cycles_through_four_requests() {
        let script = varied_script();
        for request in [
            "wrk.format(\"GET\", \"/\")",
            "wrk.format(\"GET\", \"/large\")",
            "wrk.format(\"POST\", \"/\"",
            "string.rep(\"x\", 8192)",
            "wrk.format(\"GET\", \"/search?q=weft&page=2\", {[\"Accept\"] = ",
            "[\"X-Forwarded-For\"] = \"192.0.2.10\"}",
            "return requests[i % #requests + 1]",
        ] {
            assert!(script.contains(request), "{request} not in\n{script}");
        }
        // wrk's output is read as the measured runs' is.
        assert!(script.ends_with(WRK_SCRIPT));
    }

    #[test]
    fn each_round_starts_one_target_further() {
        let order = |round| rotated(3, round).collect::<Vec<_>>();
        assert_eq!(order(1), [0, 1, 2]);
        assert_eq!(order(2), [1, 2, 0]);
        assert_eq!(order(3), [2, 0, 1]);
        assert_eq!(order(4), [0, 1, 2]);
        assert_eq!(rotated(0, 5).count(), 0);
    }

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
p99.9 2345.000000
";

    const H2LOAD_OUTPUT: &str = "starting benchmark...
spawning thread #0: 32 total client(s). Timing-based test with 0s of warm-up time and 2s of main duration for measurements.
Warm-up phase is over for thread #0.
Main benchmark duration is over for thread #0. Stopping all clients.
Stopped all clients for thread #0

finished in 2.00s, 45000.50 req/s, 1.29MB/s
requests: 90001 total, 90321 started, 90001 done, 90001 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 90001 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 2.58MB (2700030) total, 1.03MB (1080012) headers (space savings 85.00%), 175.79KB (180002) data
                     min         max         mean         sd        +/- sd
time for request:      195us     12.30ms      6.89ms      1.20ms    70.00%
time for connect:      120us      1.10ms       600us       300us    60.00%
time to 1st byte:      1.20ms      3.00ms      2.00ms       500us    50.00%
req/s           :    1400.00     1420.00     1410.00        5.00    60.00%
";

    #[test]
    fn wrk_output_is_read() -> Result<()> {
        let wrk = parse_wrk(WRK_OUTPUT)?;
        assert_eq!(wrk.requests, 103_680);
        assert_eq!(wrk.rps, 51_840.0);
        assert_eq!(wrk.p50_us, 598.0);
        assert_eq!(wrk.p99_us, 1_200.0);
        assert_eq!(wrk.p999_us, 2_345.0);
        assert!(wrk.mean_us.is_nan());
        assert_eq!(wrk.socket_errors, 3);
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
    fn h2load_output_is_read() -> Result<()> {
        let h2 = parse_h2load(H2LOAD_OUTPUT)?;
        assert_eq!(h2.requests, 90_001);
        assert_eq!(h2.rps, 45_000.5);
        assert_eq!(h2.mean_us, 6_890.0);
        assert!(
            parse_h2load(&H2LOAD_OUTPUT.replace("0 4xx", "3 4xx")).is_err(),
            "4xx answers fail the run"
        );
        assert!(
            parse_h2load(&H2LOAD_OUTPUT.replace("0 errored", "2 errored")).is_err(),
            "errors fail the run"
        );
        Ok(())
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }

    #[test]
    fn every_case_has_its_own_slug() {
        let mut slugs: Vec<&str> = CASES.iter().map(|c| c.slug()).collect();
        slugs.sort_unstable();
        slugs.dedup();
        assert_eq!(slugs.len(), CASES.len());
    }

    /// The weft configurations a run writes load as weft itself loads them
    /// (schema, references, module and certificate files), so a change to
    /// the configuration or to the canary example shows here rather than
    /// half-way through a run. Needs the filters built (`cargo xtask test`
    /// builds them first).
    #[test]
    fn every_weft_configuration_the_bench_writes_loads() -> Result<()> {
        let root = crate::workspace_root();
        let chain = chain_plugins(&root)?;
        let names: Vec<&str> = chain.iter().map(|(name, _, _)| name.as_str()).collect();
        assert_eq!(names, ["auth", "ratelimit", "router", "fault", "telemetry"]);
        let hello = root.join(FILTERS_DIR).join("hello_rust.wasm");
        let dir = tempfile::tempdir()?;
        let cert = Cert {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
        };
        write(&cert.cert, "")?;
        write(&cert.key, "")?;
        let weft_cases: Vec<Case> = CASES.iter().copied().filter(|c| c.is_weft()).collect();
        assert_eq!(weft_cases.len(), 6);
        for case in weft_cases {
            let plugins = weft_plugins(case.server, &hello, &chain);
            let tls = Some(&cert).filter(|_| case.proto == Proto::Tls);
            let path = dir.path().join(format!("{}.yaml", case.slug()));
            write(&path, &weft_conf(18091, 18090, &plugins, tls)?)?;
            let config = weft_config::load_proxy_config(&path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", case.label()))?;
            let listener = &config.listeners[0];
            assert_eq!(listener.filters.len(), plugins.len(), "{}", case.label());
            assert_eq!(listener.tls.is_some(), tls.is_some(), "{}", case.label());
            let modules: Vec<&Path> = config.plugins.iter().map(|p| p.module.as_path()).collect();
            let want: Vec<&Path> = plugins.iter().map(|(_, m, _)| m.as_path()).collect();
            assert_eq!(modules, want, "{}", case.label());
        }
        Ok(())
    }
}
