//! `cargo xtask`: the one task runner for people and CI.
//!
//! - `cargo xtask test`: set up, check formatting and lints, build the
//!   filters, run every test, smoke the demo. `.ci/run` calls exactly this.
//! - `cargo xtask demo [--once]`: set up, build, run an upstream and a proxy
//!   with the example filter, show traffic going through it.
//! - `cargo xtask build-filters`: set up and build every wasm32 crate.
//! - `cargo xtask setup`: install what is missing (the wasm toolchain).
//! - `cargo xtask bench [--seconds N] [--rounds N] [--rate N] [--only ...]`:
//!   weft, nginx, haproxy and Pingora side by side on this machine; writes
//!   docs/benchmarks.md and docs/bench/*.svg. By hand, not CI.
//! - `cargo xtask dist [--no-pgo]`: the weft to ship, built with
//!   profile-guided optimisation (the bench's training load), into
//!   target/dist/weft.
//!
//! Every step says what it does; installing is idempotent.

mod bench;
mod bench_load;
mod bench_procs;
mod bench_svg;
mod demo;
mod languages;
mod pgo;
mod setup;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what is missing: the wasm32 toolchain.
    Setup,
    /// Build every filter and example (.wasm) into target/filters/.
    BuildFilters,
    /// Build the hello example in every language (installing toolchains
    /// where missing) into target/examples/.
    BuildExamples,
    /// fmt check, clippy -D warnings, build filters, run all tests, smoke the demo.
    Test,
    /// Regenerate docs/abi-coverage.md from weft-abi's registration table.
    AbiCoverage,
    /// Regenerate docs/conformance.md: the conformance suite run on weft.
    Conformance,
    /// Start an upstream, `weft proxy` and the example filter, and show traffic.
    Demo {
        /// Exit after the walkthrough (status 0 only if every step worked).
        #[arg(long)]
        once: bool,
    },
    /// Benchmark weft against nginx, haproxy and Pingora on loopback
    /// (HTTP/1.1, h2c, TLS, fixed-rate latency; installing what is
    /// missing) and write docs/benchmarks.md and docs/bench/*.svg.
    Bench(bench::Args),
    /// Build the weft to ship into target/dist/weft: a release build with
    /// profile-guided optimisation, trained on the bench's load (needs two
    /// CPUs; installs the bench's Debian packages when missing: nginx,
    /// wrk, h2load, haproxy, openssl).
    Dist {
        /// A plain `cargo build --release` instead.
        #[arg(long)]
        no_pgo: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run_task(cli.command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // The chain of causes, without a backtrace: each step already
            // says what it was doing.
            eprintln!("\nerror: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_task(task: Task) -> Result<()> {
    let root = workspace_root();
    std::env::set_current_dir(&root).with_context(|| format!("cannot enter {}", root.display()))?;
    match task {
        Task::Setup => setup::wasm_toolchain().map(|_| ()),
        Task::BuildFilters => build_filters().map(|_| ()),
        Task::BuildExamples => {
            build_filters()?;
            languages::build_examples(&workspace_root())
        }
        Task::Test => test(),
        Task::AbiCoverage => {
            step("regenerating docs/abi-coverage.md");
            run(cargo()
                .args([
                    "test",
                    "-p",
                    "weft-abi",
                    "--test",
                    "coverage",
                    "abi_coverage_doc_is_current",
                ])
                .env("UPDATE_EXPECT", "1"))
        }
        Task::Conformance => {
            step("regenerating docs/conformance.md");
            run(cargo()
                .args([
                    "test",
                    "-p",
                    "weft-test",
                    "--test",
                    "conformance",
                    "the_report_is_current",
                ])
                .env("UPDATE_EXPECT", "1"))
        }
        Task::Demo { once } => demo::run(once),
        Task::Bench(args) => bench::run(args),
        Task::Dist { no_pgo } => bench::dist(no_pgo),
    }
}

/// The repository root (xtask lives one level below it).
fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// Prints a step heading, so a log of `cargo xtask` reads as a list of steps.
pub(crate) fn step(what: &str) {
    println!("\n==> {what}");
}

/// Runs a command, failing with its command line if it fails.
pub(crate) fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Where built filters are collected.
pub(crate) const FILTERS_DIR: &str = "target/filters";

fn build_filters() -> Result<Vec<PathBuf>> {
    let toolchain = setup::wasm_toolchain()?;
    step("building filters (wasm32-wasip1, release) from filters/Cargo.toml");
    let mut build = toolchain.cargo_build();
    build.args([
        "--manifest-path",
        "filters/Cargo.toml",
        "--workspace",
        "--release",
    ]);
    run(&mut build)?;

    let out = Path::new(FILTERS_DIR);
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let built = toolchain.target_dir().join("wasm32-wasip1/release");
    let mut copied = Vec::new();
    for entry in
        std::fs::read_dir(&built).with_context(|| format!("cannot list {}", built.display()))?
    {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "wasm") {
            let Some(name) = path.file_name() else {
                continue;
            };
            let dest = out.join(name);
            std::fs::copy(&path, &dest)
                .with_context(|| format!("cannot copy {} to {}", path.display(), dest.display()))?;
            let size = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
            println!("    {} ({} KiB)", dest.display(), size / 1024);
            copied.push(dest);
        }
    }
    if copied.is_empty() {
        bail!(
            "the filter build produced no .wasm files in {}",
            built.display()
        );
    }
    Ok(copied)
}

fn test() -> Result<()> {
    setup::wasm_toolchain()?;
    setup::test_packages()?;

    step("cargo fmt --check (host workspace and filters workspace)");
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args([
        "fmt",
        "--all",
        "--check",
        "--manifest-path",
        "filters/Cargo.toml",
    ]))?;

    step("cargo clippy --all-targets -- -D warnings");
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;

    build_filters()?;
    languages::build_examples(&workspace_root())?;

    step("cargo test --workspace");
    let (passed, failed) = cargo_test()?;

    step("demo smoke run (cargo xtask demo --once)");
    demo::run(true)?;

    println!("\nall checks passed");
    println!("{passed} passed, {failed} failed");
    Ok(())
}

/// Runs `cargo test --workspace`, echoing its output, and adds up the
/// `test result:` lines of every test binary.
fn cargo_test() -> Result<(usize, usize)> {
    use std::io::BufRead;
    let mut child = cargo()
        .args(["test", "--workspace"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("cannot run cargo test")?;
    let stdout = child.stdout.take().context("cargo test has no stdout")?;
    let (mut passed, mut failed) = (0, 0);
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(summary) = line.strip_prefix("test result: ") {
            passed += count(summary, " passed");
            failed += count(summary, " failed");
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("cargo test --workspace failed ({status}): {failed} test(s) failed");
    }
    Ok((passed, failed))
}

/// The number before `what` in a summary like `ok. 3 passed; 0 failed; ...`.
fn count(summary: &str, what: &str) -> usize {
    summary
        .split(';')
        .find_map(|part| part.trim_end().strip_suffix(what))
        .and_then(|n| n.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
