//! Profile-guided optimisation of the weft binary `cargo xtask bench`
//! measures and `cargo xtask dist` ships: an instrumented release build
//! (`-Cprofile-generate`), a training load through it (`bench::bench`
//! drives it, before the targets), the counts merged with
//! `llvm-profdata`, and a release build that uses them (`-Cprofile-use`).
//!
//! Each build has its own target directory, so neither disturbs the
//! plain `target/release` build. Counts written while the instrumented
//! build itself runs (build scripts, proc macros) are cleared before the
//! training.

use std::ffi::OsString;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, run, step};

/// The instrumented build's target directory.
const GENERATE_DIR: &str = "target/pgo-generate";
/// The optimised build's target directory.
const USE_DIR: &str = "target/pgo";
/// Where the instrumented weft writes its counts, and where the merged
/// profile goes (as `weft-HASH.profdata`: cargo does not rebuild when a
/// file named in the flags changes, but it does when the flags do).
const RAW_DIR: &str = "target/pgo-profile/raw";
const PROFILE_DIR: &str = "target/pgo-profile";
/// The Debian package whose `llvm-profdata` reads the raw profiles of
/// this repository's rustc (LLVM 22 writes raw version 10, which LLVM 19
/// reads; LLVM 22 reads the indexed profile LLVM 19 writes), and that tool.
const LLVM_PACKAGE: &str = "llvm-19";
const LLVM_PROFDATA: &str = "/usr/bin/llvm-profdata-19";

/// Builds the instrumented weft and clears the counts its build wrote;
/// returns the binary. It writes its counts into the raw directory when
/// it exits (SIGTERM: `weft proxy` returns from `main`).
pub(crate) fn build_instrumented(root: &Path) -> Result<PathBuf> {
    let raw = root.join(RAW_DIR);
    step(&format!(
        "PGO: building an instrumented weft (-Cprofile-generate) into {GENERATE_DIR}"
    ));
    let binary = build(root, GENERATE_DIR, "-Cprofile-generate", &raw)?;
    match std::fs::remove_dir_all(&raw) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("cannot clear {}", raw.display())),
    }
    std::fs::create_dir_all(&raw).with_context(|| format!("cannot create {}", raw.display()))?;
    Ok(binary)
}

/// Merges the training's counts and builds weft with them; returns the
/// binary.
pub(crate) fn build_optimised(root: &Path) -> Result<PathBuf> {
    let raw = root.join(RAW_DIR);
    let counts = std::fs::read_dir(&raw)
        .with_context(|| format!("cannot read {}", raw.display()))?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().extension().is_some_and(|e| e == "profraw"))
        .count();
    if counts == 0 {
        bail!(
            "PGO: the training wrote no counts into {} (the instrumented weft writes them when \
             it exits after SIGTERM)",
            raw.display()
        );
    }
    step(&format!("PGO: merging {counts} raw profile(s)"));
    let merged = root.join(PROFILE_DIR).join("merged.profdata");
    merge(&raw, &merged)?;
    let bytes =
        std::fs::read(&merged).with_context(|| format!("cannot read {}", merged.display()))?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    let profile = root
        .join(PROFILE_DIR)
        .join(format!("weft-{:016x}.profdata", hasher.finish()));
    // Earlier runs' profiles: only the newest is built with.
    for entry in std::fs::read_dir(root.join(PROFILE_DIR))?.filter_map(|e| e.ok()) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("weft-") && name.ends_with(".profdata") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    std::fs::rename(&merged, &profile).with_context(|| {
        format!(
            "cannot rename {} to {}",
            merged.display(),
            profile.display()
        )
    })?;
    println!("    profile: {}", profile.display());
    step(&format!(
        "PGO: building weft with the profile (-Cprofile-use) into {USE_DIR}"
    ));
    build(root, USE_DIR, "-Cprofile-use", &profile)
}

/// `cargo build --release -p weft-cli` into `target_dir` with `flag=path`
/// as the only extra rustc flag; returns the binary.
fn build(root: &Path, target_dir: &str, flag: &str, path: &Path) -> Result<PathBuf> {
    let mut flags = OsString::from(flag);
    flags.push("=");
    flags.push(path);
    run(cargo()
        .current_dir(root)
        .args([
            "build",
            "--release",
            "-p",
            "weft-cli",
            "--target-dir",
            target_dir,
        ])
        // Takes precedence over RUSTFLAGS and the config's flags.
        .env("CARGO_ENCODED_RUSTFLAGS", flags))?;
    Ok(root.join(target_dir).join("release").join("weft"))
}

/// `llvm-profdata merge` with the first tool that reads the raw profiles,
/// installing `LLVM_PACKAGE` from Debian when none does and it is missing.
fn merge(raw: &Path, profile: &Path) -> Result<()> {
    let mut refused = Vec::new();
    for tool in profdata_tools() {
        if merged_with(&tool, raw, profile, &mut refused)? {
            return Ok(());
        }
    }
    let packaged = Path::new(LLVM_PROFDATA);
    if !packaged.exists() {
        crate::setup::apt_install(&[LLVM_PACKAGE])?;
        if merged_with(packaged, raw, profile, &mut refused)? {
            return Ok(());
        }
    }
    bail!(
        "PGO: no llvm-profdata could merge the profiles in {} ({})",
        raw.display(),
        refused.join("; ")
    )
}

/// Whether `tool` merged the profiles; if it refused, why goes into
/// `refused`.
fn merged_with(tool: &Path, raw: &Path, profile: &Path, refused: &mut Vec<String>) -> Result<bool> {
    let out = Command::new(tool)
        .arg("merge")
        .arg("-o")
        .arg(profile)
        .arg(raw)
        .output()
        .with_context(|| format!("cannot run {}", tool.display()))?;
    if out.status.success() {
        println!("    merged with {}", tool.display());
        return Ok(true);
    }
    let why = String::from_utf8_lossy(&out.stderr);
    refused.push(format!(
        "{}: {}",
        tool.display(),
        why.lines().next().unwrap_or("failed").trim()
    ));
    Ok(false)
}

/// The `llvm-profdata` binaries present, newest first.
fn profdata_tools() -> Vec<PathBuf> {
    (14..=30)
        .rev()
        .map(|version| PathBuf::from(format!("/usr/bin/llvm-profdata-{version}")))
        .chain([PathBuf::from("/usr/bin/llvm-profdata")])
        .filter(|tool| tool.exists())
        .collect()
}
