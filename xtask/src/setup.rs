//! Installing the wasm32 toolchain, by the standard route where it works.
//!
//! 1. rustup's `wasm32-wasip1` target (what a developer laptop has or can fetch);
//! 2. otherwise Debian's Rust toolchain (rustc-web, its std sources, lld,
//!    wasi-libc), with std built from source (`-Zbuild-std`).
//!
//! `WEFT_WASM_ROUTE=rustup|debian` forces one route.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Result, bail};

use crate::{run, step};

/// How wasm32 crates get built on this machine.
pub(crate) enum WasmToolchain {
    Rustup,
    Debian,
}

const TARGET: &str = "wasm32-wasip1";

/// Debian packages of the fallback route, with a file each installs.
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("rustc-web", "/usr/bin/rustc"),
    ("cargo-web", "/usr/bin/cargo"),
    ("rust-web-src", "/usr/lib/rustlib/src/rust/library"),
    ("lld-16", "/usr/bin/wasm-ld-16"),
    ("wasi-libc", "/usr/lib/wasm32-wasi/libc.a"),
];

impl WasmToolchain {
    /// A `cargo build` for wasm32-wasip1 with this toolchain.
    pub(crate) fn cargo_build(&self) -> Command {
        match self {
            WasmToolchain::Rustup => {
                let mut cmd =
                    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
                cmd.args(["build", "--target", TARGET, "--target-dir"])
                    .arg(self.target_dir());
                cmd
            }
            WasmToolchain::Debian => {
                let mut cmd = Command::new("/usr/bin/cargo");
                cmd.env("RUSTC_BOOTSTRAP", "1")
                    .env("RUSTC", "/usr/bin/rustc")
                    .env("CARGO_TARGET_WASM32_WASIP1_LINKER", "wasm-ld-16")
                    .env("RUSTFLAGS", "-L /usr/lib/wasm32-wasi")
                    .env_remove("RUSTUP_TOOLCHAIN")
                    .env_remove("RUSTDOC")
                    .args([
                        "build",
                        "--target",
                        TARGET,
                        "-Zbuild-std=std,panic_abort",
                        "--target-dir",
                    ])
                    .arg(self.target_dir());
                cmd
            }
        }
    }

    /// Each route has its own target directory: their compilers differ.
    pub(crate) fn target_dir(&self) -> PathBuf {
        match self {
            WasmToolchain::Rustup => PathBuf::from("target/wasm"),
            WasmToolchain::Debian => PathBuf::from("target/wasm-debian"),
        }
    }
}

/// Makes sure a wasm32 toolchain is present and says which one is used.
pub(crate) fn wasm_toolchain() -> Result<WasmToolchain> {
    step("wasm toolchain");
    let forced = std::env::var("WEFT_WASM_ROUTE").ok();
    match forced.as_deref() {
        Some("debian") => {
            println!("    WEFT_WASM_ROUTE=debian: using Debian's Rust toolchain");
            return debian();
        }
        Some("rustup") | None => {}
        Some(other) => bail!("WEFT_WASM_ROUTE={other} is not a route; use `rustup` or `debian`"),
    }
    if rustup_target() {
        return Ok(WasmToolchain::Rustup);
    }
    if forced.is_some() {
        bail!("WEFT_WASM_ROUTE=rustup, but rustup cannot provide the {TARGET} target");
    }
    println!("    rustup cannot provide {TARGET} here; falling back to Debian's Rust toolchain");
    debian()
}

fn rustup_target() -> bool {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .stderr(Stdio::null())
        .output();
    let Ok(installed) = installed else {
        println!("    rustup not found");
        return false;
    };
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == TARGET)
    {
        println!("    rustup target {TARGET}: installed");
        return true;
    }
    println!("    rustup target {TARGET}: missing, installing with `rustup target add {TARGET}`");
    // A machine that cannot reach rustup's servers may stall rather than
    // fail; coreutils' timeout bounds the attempt.
    let added = Command::new("timeout")
        .args(["300", "rustup", "target", "add", TARGET])
        .status();
    match added {
        Ok(status) if status.success() => {
            println!("    rustup target {TARGET}: installed");
            true
        }
        _ => false,
    }
}

fn debian() -> Result<WasmToolchain> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(_, file)| !Path::new(file).exists())
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        println!("    Debian packages present: {}", names(DEBIAN_PACKAGES));
        return Ok(WasmToolchain::Debian);
    }
    apt_install(&missing)?;
    Ok(WasmToolchain::Debian)
}

fn names(packages: &[(&str, &str)]) -> String {
    packages
        .iter()
        .map(|(p, _)| *p)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the tests run besides weft, by Debian package and the file it
/// installs: an OCI registry (bundles pulled from OCI).
const TEST_PACKAGES: &[(&str, &str)] = &[("docker-registry", "/usr/bin/docker-registry")];

/// Installs the Debian packages the tests need, when missing.
pub(crate) fn test_packages() -> Result<()> {
    step("test dependencies");
    let missing: Vec<&str> = TEST_PACKAGES
        .iter()
        .filter(|(_, file)| !Path::new(file).exists())
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        println!("    Debian packages present: {}", names(TEST_PACKAGES));
        return Ok(());
    }
    apt_install(&missing)
}

/// `apt-get install` with sudo when not root.
pub(crate) fn apt_install(packages: &[&str]) -> Result<()> {
    println!("    installing Debian packages: {}", packages.join(", "));
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let apt = |args: &[&str]| {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("apt-get");
            sudo
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    run(&mut apt(&["update", "-qq"]))?;
    let mut install = apt(&["install", "-y", "-qq"]);
    install.args(packages);
    run(&mut install)
}
