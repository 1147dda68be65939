//! `weft conformance run`: the proxy-wasm conformance suite on weft's
//! runtime (in-process).

use std::path::PathBuf;
use std::process::ExitCode;

use std::net::SocketAddr;

use clap::{Subcommand, ValueEnum};
use weft_test::blackbox;
use weft_test::conformance::{self, Cases, Status};

#[derive(Subcommand)]
pub(crate) enum ConformanceCommand {
    /// Run the cases on weft's runtime and report per case, area and ABI
    /// function. Exit status 0 when all pass, 1 when any fails, 2 when
    /// the cases cannot be read.
    Run {
        /// The directory of case files.
        #[arg(long, default_value = "conformance/cases")]
        cases: PathBuf,
        /// Only cases whose id contains this.
        #[arg(long)]
        filter: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Black-box mode: run the observable cases against the proxy
        /// listening here (configured by `weft conformance config`),
        /// serving as its upstream and call-out clusters.
        #[arg(long)]
        target: Option<SocketAddr>,
        /// Black-box mode: where to serve as the upstream (call-out
        /// clusters take the ports after it); as given to `config`.
        #[arg(long, default_value = "127.0.0.1:19100")]
        upstream: SocketAddr,
    },
    /// Write the observable cases' guests as .wasm files and a weft.yaml
    /// that serves them, for the black-box mode (and a template for
    /// configuring another proxy-wasm host).
    Config {
        /// The directory of case files.
        #[arg(long, default_value = "conformance/cases")]
        cases: PathBuf,
        /// Where to write the modules and weft.yaml.
        #[arg(long)]
        out: PathBuf,
        /// The address the proxy listens on.
        #[arg(long, default_value = "127.0.0.1:19080")]
        listen: SocketAddr,
        /// Where the runner serves as the upstream (call-out clusters take
        /// the ports after it).
        #[arg(long, default_value = "127.0.0.1:19100")]
        upstream: SocketAddr,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    /// Failures, then tables per area and function.
    Text,
    /// Every case's result.
    Json,
    /// JUnit XML, for CI systems.
    Junit,
    /// docs/conformance.md.
    Markdown,
}

pub(crate) fn run(command: ConformanceCommand) -> ExitCode {
    let read = |cases: &PathBuf| {
        Cases::read(cases).map_err(|err| {
            eprintln!("error: {err}");
            ExitCode::from(2)
        })
    };
    let (cases, filter, format, target, upstream) = match command {
        ConformanceCommand::Config {
            cases,
            out,
            listen,
            upstream,
        } => {
            let suite = match read(&cases) {
                Ok(suite) => suite,
                Err(code) => return code,
            };
            return match blackbox::write_config(&suite, &out, listen, upstream) {
                Ok(count) => {
                    println!(
                        "{}: {count} cases; start the proxy with it, then run `weft conformance run --target {listen} --upstream {upstream}`",
                        out.join("weft.yaml").display()
                    );
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("error: {err}");
                    ExitCode::from(2)
                }
            };
        }
        ConformanceCommand::Run {
            cases,
            filter,
            format,
            target,
            upstream,
        } => (cases, filter, format, target, upstream),
    };
    let suite = match read(&cases) {
        Ok(suite) => suite,
        Err(code) => return code,
    };
    let results = match target {
        None => suite.run(filter.as_deref()),
        Some(target) => match blackbox::run(&suite, target, upstream, filter.as_deref()) {
            Ok(results) => results,
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::from(2);
            }
        },
    };
    match format {
        Format::Text => print!("{}", conformance::text(&results)),
        Format::Json => println!("{:#}", serde_json::to_value(&results).unwrap_or_default()),
        Format::Junit => print!("{}", conformance::junit(&results)),
        Format::Markdown => {
            let runtime = match weft_abi::Runtime::new() {
                Ok(runtime) => runtime,
                Err(err) => {
                    eprintln!("error: {err}");
                    return ExitCode::FAILURE;
                }
            };
            print!(
                "{}",
                conformance::markdown(&results, |f| weft_abi::coverage::is_served(&runtime, f))
            );
        }
    }
    if results.iter().all(|r| r.status == Status::Pass) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
