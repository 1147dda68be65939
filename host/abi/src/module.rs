//! Loading a module: compile, detect the ABI version, resolve imports.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::{ExternType, FuncType, InstancePre, Linker, Module, Val, ValType};

use crate::abi::{AbiVersion, Status};
use crate::runtime::Runtime;
use crate::shared::SharedState;
use crate::vm::HostState;
use crate::wasi;

/// Why a module could not be loaded. Each variant names the module.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read module {}: {source}", path.display())]
    Read {
        /// The module file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The bytes are not a valid WebAssembly module.
    #[error("module {module} is not valid WebAssembly: {message}")]
    Compile {
        /// The module's name (its path).
        module: String,
        /// wasmtime's reason.
        message: String,
    },
    /// No `proxy_abi_version_*` export.
    #[error(
        "module {module} exports no proxy_abi_version_0_2_1 / _0_2_0 / _0_1_0 marker: it was not built with a proxy-wasm SDK (Rust: the proxy-wasm crate; other languages: export one of these empty functions)"
    )]
    NoAbiVersion {
        /// The module's name.
        module: String,
    },
    /// A required export is missing or has the wrong kind.
    #[error("module {module} does not export {export}, which every proxy-wasm module must")]
    MissingExport {
        /// The module's name.
        module: String,
        /// The export.
        export: &'static str,
    },
    /// The module imports things no proxy-wasm host provides.
    #[error("module {module} imports what weft does not provide: {}", imports.join("; "))]
    UnknownImports {
        /// The module's name.
        module: String,
        /// Each unknown import, with a hint where one is known.
        imports: Vec<String>,
    },
    /// A capability list names something that is not a proxy-wasm host function.
    #[error(
        "allowed_host_functions names `{function}`, which is not a proxy-wasm host function (see docs/abi-coverage.md)"
    )]
    UnknownCapability {
        /// The name.
        function: String,
    },
    /// Linking failed (e.g. a host function imported with the wrong signature).
    #[error("module {module} cannot be linked: {message}")]
    Link {
        /// The module's name.
        module: String,
        /// wasmtime's reason.
        message: String,
    },
}

/// What a plugin's module may call.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    /// The `proxy_*` host functions the module may call; `None` allows
    /// them all. A call to any other answers INTERNAL_FAILURE and is
    /// logged. (WASI functions are not restricted: toolchains' runtimes
    /// need them.)
    pub host_functions: Option<Vec<String>>,
}

impl Capabilities {
    fn allows(&self, function: &str) -> bool {
        self.host_functions
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|a| a == function))
    }
}

/// Why a stub stands in for a host function.
#[derive(Clone, Copy)]
enum Stub {
    /// weft does not implement it.
    Unimplemented,
    /// The plugin's capabilities do not allow it.
    Denied,
}

/// A compiled proxy-wasm module, ready to instantiate on any thread.
/// Cloning is cheap.
#[derive(Clone)]
pub struct PluginModule {
    pub(crate) inner: Arc<ModuleInner>,
}

pub(crate) struct ModuleInner {
    pub(crate) name: String,
    pub(crate) abi: AbiVersion,
    pub(crate) pre: InstancePre<HostState>,
    pub(crate) shared: Arc<SharedState>,
}

impl PluginModule {
    /// Reads and compiles a `.wasm` (or `.wat`) file.
    pub fn load(runtime: &Runtime, path: &Path) -> Result<PluginModule, LoadError> {
        PluginModule::load_with(runtime, path, &Capabilities::default())
    }

    /// [`PluginModule::load`], linked with `capabilities`.
    pub fn load_with(
        runtime: &Runtime,
        path: &Path,
        capabilities: &Capabilities,
    ) -> Result<PluginModule, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        PluginModule::from_bytes_with(runtime, &path.display().to_string(), &bytes, capabilities)
    }

    /// Compiles a module from bytes (binary or text format); `name` is used
    /// in errors and logs.
    pub fn from_bytes(
        runtime: &Runtime,
        name: &str,
        bytes: &[u8],
    ) -> Result<PluginModule, LoadError> {
        PluginModule::from_bytes_with(runtime, name, bytes, &Capabilities::default())
    }

    /// [`PluginModule::from_bytes`], linked with `capabilities`.
    pub fn from_bytes_with(
        runtime: &Runtime,
        name: &str,
        bytes: &[u8],
        capabilities: &Capabilities,
    ) -> Result<PluginModule, LoadError> {
        for function in capabilities.host_functions.iter().flatten() {
            let known = crate::coverage::SPEC.iter().any(|f| {
                f.kind == crate::coverage::Kind::HostFunction
                    && f.import() == ("env", function.as_str())
            });
            if !known {
                return Err(LoadError::UnknownCapability {
                    function: function.clone(),
                });
            }
        }
        if !bytes.starts_with(b"\0asm") && !name.ends_with(".wat") {
            return Err(LoadError::Compile {
                module: name.to_string(),
                message: "the file does not start with the \\0asm magic bytes of a WebAssembly \
                          binary (text modules must be named *.wat)"
                    .into(),
            });
        }
        let hits = runtime.module_cache_stats().map(|s| s.hits);
        let module = Module::new(&runtime.engine, bytes).map_err(|e| LoadError::Compile {
            module: name.to_string(),
            message: format!("{e:#}"),
        })?;
        if runtime.module_cache_stats().map(|s| s.hits) > hits {
            tracing::debug!(module = %name, "compiled code read from the module cache");
        }

        let abi = module
            .exports()
            .filter_map(|e| AbiVersion::from_export(e.name()))
            .max()
            .ok_or_else(|| LoadError::NoAbiVersion {
                module: name.to_string(),
            })?;
        for (export, is_right_kind) in [
            (
                "memory",
                matches!(module.get_export("memory"), Some(ExternType::Memory(_))),
            ),
            (
                "proxy_on_context_create",
                matches!(
                    module.get_export("proxy_on_context_create"),
                    Some(ExternType::Func(_))
                ),
            ),
        ] {
            if !is_right_kind {
                return Err(LoadError::MissingExport {
                    module: name.to_string(),
                    export,
                });
            }
        }

        let linker = resolve_imports(runtime, name, &module, capabilities)?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| LoadError::Link {
                module: name.to_string(),
                message: format!("{e:#}"),
            })?;
        Ok(PluginModule {
            inner: Arc::new(ModuleInner {
                name: name.to_string(),
                abi,
                pre,
                shared: runtime.shared.clone(),
            }),
        })
    }

    /// The ABI version the module declares.
    pub fn abi_version(&self) -> AbiVersion {
        self.inner.abi
    }

    /// The name the module was loaded under (its path).
    pub fn name(&self) -> &str {
        &self.inner.name
    }
}

/// Links every import of `module`: weft's host functions where they exist;
/// for a `proxy_*` function weft does not serve, a stub answering
/// UNIMPLEMENTED; for another WASI function, a stub answering ENOSYS. Any
/// other import is an error that lists them all.
fn resolve_imports(
    runtime: &Runtime,
    name: &str,
    module: &Module,
    capabilities: &Capabilities,
) -> Result<Linker<HostState>, LoadError> {
    let mut linker: Option<Linker<HostState>> = None;
    let mut unknown = Vec::new();
    for import in module.imports() {
        let (m, n) = (import.module(), import.name());
        let proxy_function = m == "env" && n.starts_with("proxy_");
        let denied = proxy_function && !capabilities.allows(n);
        if runtime.host_functions.contains(m, n) && !denied {
            // The status-returning form some hosts serve (see
            // `define_status_form`).
            if let ExternType::Func(ty) = import.ty()
                && ty.results().len() == 1
                && ty.params().len() == 0
                && m == "env"
            {
                crate::hostcalls::define_status_form(own_linker(&mut linker, runtime), n).map_err(
                    |e| LoadError::Link {
                        module: name.to_string(),
                        message: format!("{e:#}"),
                    },
                )?;
            }
            continue;
        }
        let stub = if denied {
            (Stub::Denied, Status::InternalFailure as i32)
        } else if proxy_function {
            (Stub::Unimplemented, Status::Unimplemented as i32)
        } else if wasi::MODULES.contains(&m) {
            (Stub::Unimplemented, wasi::NOSYS)
        } else {
            unknown.push(describe_unknown(m, n, &import.ty()));
            continue;
        };
        let ExternType::Func(ty) = import.ty() else {
            unknown.push(describe_unknown(m, n, &import.ty()));
            continue;
        };
        define_stub(own_linker(&mut linker, runtime), m, n, ty, stub).map_err(|e| {
            LoadError::Link {
                module: name.to_string(),
                message: format!("{e:#}"),
            }
        })?;
    }
    if !unknown.is_empty() {
        return Err(LoadError::UnknownImports {
            module: name.to_string(),
            imports: unknown,
        });
    }
    Ok(linker.unwrap_or_else(|| (*runtime.linker).clone()))
}

/// The module's own copy of the runtime's linker, made on first need: its
/// definitions (stubs, denied functions, other signatures) replace the
/// shared ones.
fn own_linker<'a>(
    linker: &'a mut Option<Linker<HostState>>,
    runtime: &Runtime,
) -> &'a mut Linker<HostState> {
    linker.get_or_insert_with(|| {
        let mut l = (*runtime.linker).clone();
        l.allow_shadowing(true);
        l
    })
}

fn define_stub(
    l: &mut Linker<HostState>,
    m: &str,
    n: &str,
    ty: FuncType,
    (why, code): (Stub, i32),
) -> wasmtime::Result<()> {
    let name = n.to_string();
    l.func_new(m, n, ty.clone(), move |caller, _params, results| {
        let plugin = &caller.data().plugin.name;
        match why {
            Stub::Unimplemented => tracing::debug!(
                target: "weft::filter",
                plugin = %plugin,
                "called {name}, which weft does not implement"
            ),
            Stub::Denied => tracing::warn!(
                target: "weft::filter",
                plugin = %plugin,
                "called {name}, which the plugin's allowed_host_functions do not include; it answered INTERNAL_FAILURE"
            ),
        }
        for (slot, ty) in results.iter_mut().zip(ty.results()) {
            *slot = match ty {
                ValType::I32 => Val::I32(code),
                ValType::I64 => Val::I64(code.into()),
                ValType::F32 => Val::F32(0),
                ValType::F64 => Val::F64(0),
                _ => Val::null_func_ref(),
            };
        }
        Ok(())
    })?;
    Ok(())
}

fn describe_unknown(module: &str, name: &str, ty: &ExternType) -> String {
    let kind = match ty {
        ExternType::Func(_) => "function",
        ExternType::Global(_) => "global",
        ExternType::Table(_) => "table",
        ExternType::Memory(_) => "memory",
        _ => "item",
    };
    let hint = match (module, name) {
        ("env", "memory") => {
            " (the module imports its memory; link it with its own memory instead, e.g. without --import-memory)"
        }
        ("env", _) => {
            " (an undefined symbol: a function declared but not defined when the module was linked)"
        }
        (m, _) if m.starts_with("wasi:") => {
            " (a component-model import; build a core module for wasm32-wasip1)"
        }
        (m, _) if m.starts_with("wasi") => {
            " (a WASI version weft does not serve; build for wasm32-wasip1 or wasm32-unknown-unknown)"
        }
        _ => "",
    };
    format!("{kind} `{module}.{name}`{hint}")
}
