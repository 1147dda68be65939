//! The `weft` command. Thin: it parses arguments, sets up logging and wires
//! the host crates together.

mod bundle;
mod conformance;
mod control;
mod echo;
mod filter;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use weft_abi::Runtime;
use weft_proxy::Proxy;

// mimalloc: per request, a proxy allocates and frees many small blocks
// (header maps, buffers, futures); glibc's allocator costs about a
// microsecond more per request here (docs/benchmarks.md). It is linked in
// as `malloc` itself (the crate's `override` feature), not as Rust's
// global allocator: Rust's default allocator then calls its plain
// `malloc` for every block of the usual alignments, where the crate's
// `GlobalAlloc` would take `mi_malloc_aligned`'s longer path for all of
// them. libc's own allocations go to mimalloc too.
extern crate mimalloc;

#[derive(Parser)]
#[command(
    name = "weft",
    version,
    about = "A programmable L7 proxy whose behaviour runs as proxy-wasm filters"
)]
struct Cli {
    /// Log filter (tracing syntax, e.g. `info` or `weft=debug`); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the data plane.
    Proxy {
        /// The proxy configuration file (YAML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Build, sign and verify filter bundles.
    Bundle {
        #[command(subcommand)]
        command: bundle::BundleCommand,
    },
    /// The control endpoint: serve it, make tokens.
    Control {
        #[command(subcommand)]
        command: control::ControlCommand,
    },
    /// Test filters: run YAML tests on the real runtime, no proxy needed.
    Filter {
        #[command(subcommand)]
        command: filter::FilterCommand,
    },
    /// The proxy-wasm conformance suite.
    Conformance {
        #[command(subcommand)]
        command: conformance::ConformanceCommand,
    },
    /// Work with configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Run an upstream that answers every request with a JSON description of
    /// it (method, path, headers, body): for demos and tests.
    Echo {
        /// Address to listen on; port 0 picks a free one (printed).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a proxy configuration, including loading and configuring its
    /// plugins, without starting anything.
    Check {
        /// The proxy configuration file (YAML).
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cli.log))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // Worker threads are named `weft-worker-N`: logs say which one spoke.
        .with_thread_names(true)
        .init();

    match cli.command {
        Command::Proxy { config } => proxy(&config),
        Command::Config {
            command: ConfigCommand::Check { file },
        } => check(&file),
        Command::Bundle { command } => bundle::run(command),
        Command::Filter { command } => filter::run(command),
        Command::Conformance { command } => conformance::run(command),
        Command::Control { command } => control::control(command),
        Command::Echo { listen } => match echo::run(listen) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => fail(&format!("echo: {err:#}")),
        },
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

/// Exit status for a configuration that was refused.
const BAD_CONFIG: u8 = 2;

fn load(file: &std::path::Path) -> Result<(weft_config::ProxyConfig, Runtime), ExitCode> {
    let config = weft_config::load_proxy_config(file).map_err(|err| {
        eprintln!("error: {err}");
        ExitCode::from(BAD_CONFIG)
    })?;
    let runtime = Runtime::with_options(&weft_proxy::runtime_options(&config))
        .map_err(|err| fail(&err.to_string()))?;
    tracing::info!(
        allocator = %runtime.allocator(),
        module_cache = %runtime
            .module_cache_dir()
            .map_or_else(|| "off".into(), |dir| dir.display().to_string()),
        "wasm runtime started"
    );
    Ok((config, runtime))
}

fn check(file: &std::path::Path) -> ExitCode {
    let (config, runtime) = match load(file) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    match weft_proxy::check(&config, &runtime) {
        Ok(plugins) => {
            println!(
                "{}: ok ({} listener(s), {} cluster(s), {} plugin(s))",
                file.display(),
                config.listeners.len(),
                config.clusters.len(),
                plugins
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {}: {err}", file.display());
            ExitCode::from(BAD_CONFIG)
        }
    }
}

fn proxy(file: &std::path::Path) -> ExitCode {
    let (config, runtime) = match load(file) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let proxy = match Proxy::start(&config, std::sync::Arc::new(runtime)) {
        Ok(proxy) => proxy,
        Err(err) => {
            eprintln!("error: {}: {err}", file.display());
            return ExitCode::from(BAD_CONFIG);
        }
    };
    {
        // Tests and scripts read the bound addresses from here.
        let mut out = std::io::stdout().lock();
        for listener in proxy.listeners() {
            let _ = writeln!(
                out,
                "listening: {} http://{}",
                listener.name, listener.address
            );
        }
        // The end of the list, for scripts that read every address.
        let _ = writeln!(out, "ready");
        let _ = out.flush();
    }
    if let Err(err) = wait_for_signal() {
        return fail(&format!("cannot wait for signals: {err}"));
    }
    tracing::info!("shutting down");
    proxy.shutdown();
    ExitCode::SUCCESS
}

/// Blocks until SIGINT or SIGTERM.
pub(crate) fn wait_for_signal() -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = term.recv() => Ok(()),
        }
    })
}
