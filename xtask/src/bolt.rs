//! Post-link layout of the PGO-built weft with LLVM's BOLT, after
//! `crate::pgo`: the PGO build is linked with its relocations kept
//! (`--emit-relocs`), `llvm-bolt -instrument` makes a copy that counts
//! its branches, the bench's training runs through that copy again, and
//! `llvm-bolt` lays the binary out by those counts: the code a request
//! runs placed together, cold blocks split off, identical functions
//! folded. PGO orders the blocks inside each function; this orders the
//! functions too, which is what a request's code footprint (larger than
//! the CPU's instruction cache) needs.
//!
//! The tools are Debian's `bolt-19`, installed when missing. The result
//! keeps its symbols and loses its DWARF debug information.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::step;

/// The Debian package with `llvm-bolt`, `merge-fdata` and the
/// instrumentation runtime.
const BOLT_PACKAGE: &str = "bolt-19";
const LLVM_BOLT: &str = "/usr/bin/llvm-bolt-19";
const MERGE_FDATA: &str = "/usr/lib/llvm-19/bin/merge-fdata";
/// The runtime an instrumented binary is linked with; `llvm-bolt` takes
/// its path relative to /usr/lib.
const RUNTIME: &str = "llvm-19/lib/libbolt_rt_instr.a";
/// Where the instrumented weft and the laid-out one go.
const OUT_DIR: &str = "target/bolt";
/// Where the instrumented weft writes its counts: one file per process.
const PROFILE_DIR: &str = "target/bolt-profile";

/// The linker flag a binary needs for `llvm-bolt` to move its functions.
pub(crate) const LINK_FLAG: &str = "-Clink-arg=-Wl,--emit-relocs";

/// Makes an instrumented copy of `binary` (linked with [`LINK_FLAG`]) and
/// clears earlier counts; returns the copy. It writes its counts into
/// [`PROFILE_DIR`] when it exits.
pub(crate) fn instrument(root: &Path, binary: &Path) -> Result<PathBuf> {
    if !Path::new(LLVM_BOLT).exists() || !Path::new("/usr/lib").join(RUNTIME).exists() {
        crate::setup::apt_install(&[BOLT_PACKAGE])?;
    }
    let profiles = root.join(PROFILE_DIR);
    match std::fs::remove_dir_all(&profiles) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            return Err(err).with_context(|| format!("cannot clear {}", profiles.display()));
        }
    }
    for dir in [profiles.clone(), root.join(OUT_DIR)] {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let instrumented = root.join(OUT_DIR).join("weft-instrumented");
    step(&format!(
        "BOLT: instrumenting the PGO build into {}",
        instrumented.display()
    ));
    let mut prefix = profiles.join("weft").into_os_string();
    prefix.push(".fdata");
    let mut file_flag = std::ffi::OsString::from("-instrumentation-file=");
    file_flag.push(&prefix);
    bolt(
        Command::new(LLVM_BOLT)
            .arg(binary)
            .arg("-instrument")
            .arg(file_flag)
            .arg("-instrumentation-file-append-pid")
            .arg(format!("-runtime-instrumentation-lib={RUNTIME}"))
            .arg("-o")
            .arg(&instrumented),
        "instrument",
    )?;
    Ok(instrumented)
}

/// Merges the counts the instrumented copy wrote and lays `binary` out by
/// them; returns the result.
pub(crate) fn optimise(root: &Path, binary: &Path) -> Result<PathBuf> {
    let profiles = root.join(PROFILE_DIR);
    let counts: Vec<PathBuf> = std::fs::read_dir(&profiles)
        .with_context(|| format!("cannot read {}", profiles.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "fdata"))
        .collect();
    if counts.is_empty() {
        bail!(
            "BOLT: the training wrote no counts into {} (the instrumented weft writes them when \
             it exits after SIGTERM)",
            profiles.display()
        );
    }
    step(&format!("BOLT: merging {} profile(s)", counts.len()));
    let out = Command::new(MERGE_FDATA)
        .args(&counts)
        .output()
        .with_context(|| format!("cannot run {MERGE_FDATA}"))?;
    if !out.status.success() {
        bail!(
            "BOLT: {MERGE_FDATA} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let merged = root.join(OUT_DIR).join("weft.fdata");
    std::fs::write(&merged, &out.stdout)
        .with_context(|| format!("cannot write {}", merged.display()))?;
    let laid_out = root.join(OUT_DIR).join("weft");
    step(&format!(
        "BOLT: laying out the PGO build by the profile into {}",
        laid_out.display()
    ));
    let mut data = std::ffi::OsString::from("-data=");
    data.push(&merged);
    bolt(
        Command::new(LLVM_BOLT)
            .arg(binary)
            .arg(data)
            .args([
                "-reorder-blocks=ext-tsp",
                "-reorder-functions=cdsort",
                "-split-functions",
                "-split-all-cold",
                "-split-eh",
                "-icf=1",
                "-use-gnu-stack",
            ])
            .arg("-o")
            .arg(&laid_out),
        "optimise",
    )?;
    Ok(laid_out)
}

/// Runs `llvm-bolt`, keeping its long report out of the bench's output
/// unless it fails.
fn bolt(command: &mut Command, what: &str) -> Result<()> {
    let out = command
        .output()
        .with_context(|| format!("cannot run {LLVM_BOLT}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let errors: Vec<&str> = stdout
            .lines()
            .chain(stderr.lines())
            .filter(|line| line.contains("ERROR") || line.contains("error"))
            .collect();
        bail!(
            "BOLT: llvm-bolt could not {what} the binary ({}): {}",
            out.status,
            if errors.is_empty() {
                stderr.trim().to_string()
            } else {
                errors.join("; ")
            }
        );
    }
    Ok(())
}
