//! `weft filter test`: a filter author's tests, run on weft's runtime with
//! no proxy and no network.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use weft_test::suite::{Suite, TestResult, report};

#[derive(Subcommand)]
pub(crate) enum FilterCommand {
    /// Run YAML filter tests: each file's requests go through the filter
    /// (its `filter:` module, or --module), and what the upstream got,
    /// what the client got, call-outs, logs and metrics are checked.
    /// Exit status 0 when all pass, 1 when any fails, 2 when a file or
    /// module cannot be used.
    Test {
        /// Test files (YAML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The module to test (.wasm or .wat), instead of each file's
        /// `filter:`.
        #[arg(long)]
        module: Option<PathBuf>,
        /// Only tests whose name contains this.
        #[arg(long)]
        only: Option<String>,
        /// Print the results as JSON (with what each request did).
        #[arg(long)]
        json: bool,
    },
}

/// Exit status when a test file or module cannot be used.
const UNUSABLE: u8 = 2;

pub(crate) fn run(command: FilterCommand) -> ExitCode {
    let FilterCommand::Test {
        files,
        module,
        only,
        json,
    } = command;
    let mut all = Vec::new();
    let mut failed = 0;
    for file in &files {
        match run_file(file, module.as_deref(), only.as_deref()) {
            Ok(results) => {
                failed += results.iter().filter(|r| !r.passed()).count();
                if !json {
                    print!("{}", report(file, &results));
                }
                all.push((file.clone(), results));
            }
            Err(message) => {
                eprintln!("error: {message}");
                return ExitCode::from(UNUSABLE);
            }
        }
    }
    // A misspelt `--only` would otherwise pass with nothing tested.
    if let Some(only) = &only
        && all.iter().all(|(_, results)| results.is_empty())
    {
        eprintln!(
            "error: --only `{only}`: no test's name contains it in {}",
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return ExitCode::from(UNUSABLE);
    }
    if json {
        let files: Vec<serde_json::Value> = all
            .iter()
            .map(|(file, results)| {
                serde_json::json!({"file": file.display().to_string(), "tests": results})
            })
            .collect();
        println!("{:#}", serde_json::Value::Array(files));
    }
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn run_file(
    file: &Path,
    module: Option<&Path>,
    only: Option<&str>,
) -> Result<Vec<TestResult>, String> {
    let suite = Suite::read(file).map_err(|e| e.to_string())?;
    let module = suite
        .module(module)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let mut filter = suite
        .start(&module)
        .map_err(|e| format!("{}: {}: {e}", file.display(), module.display()))?;
    suite
        .run(&mut filter, only)
        .map_err(|e| format!("{}: {e}", file.display()))
}
