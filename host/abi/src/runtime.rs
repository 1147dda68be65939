//! The process-wide engine.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{
    Cache, CacheConfig, Config, Engine, InstanceAllocationStrategy, Linker, PoolingAllocationConfig,
};

use crate::hostcalls;
use crate::shared::{Metric, SharedState};
use crate::vm::HostState;

/// How often the engine's epoch advances. Callback deadlines are counted in
/// these ticks, so a deadline is honoured to within one tick.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The largest linear memory a pooled VM may grow to: all of a 32-bit
/// memory, so no plugin's memory cap is above it. It costs no more address
/// space than less would: every memory reserves 4 GiB anyway, which is what
/// lets compiled code go without bounds checks.
pub const POOLED_MEMORY_BYTES: usize = 4 << 30;

/// The subdirectory of [`RuntimeOptions::module_cache`] the cache owns.
pub const MODULE_CACHE_SUBDIR: &str = "wasmtime";

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// wasmtime refused the engine configuration.
    #[error("cannot create the wasm engine: {0}")]
    Engine(String),
    /// The epoch thread could not be spawned.
    #[error("cannot start the wasm epoch thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// How VMs get their linear memories, tables and instance state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Allocator {
    /// Mapped when a VM starts, unmapped when it is dropped.
    #[default]
    OnDemand,
    /// Address space for `max_vms` VMs is reserved once, when the runtime
    /// starts (about 4 GiB of it per VM, none of it resident), and its slots
    /// are reused: starting a VM maps nothing. A VM beyond `max_vms` fails
    /// to start.
    Pooling {
        /// VMs that may exist at once, across every plugin.
        max_vms: u32,
    },
}

impl std::fmt::Display for Allocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Allocator::OnDemand => write!(f, "on demand"),
            Allocator::Pooling { max_vms } => write!(f, "pooling ({max_vms} VMs)"),
        }
    }
}

/// How a [`Runtime`] is set up. The default, [`Runtime::new`]'s, keeps
/// nothing on disk and allocates on demand.
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// Where compiled modules are kept, keyed by the module's bytes and the
    /// engine (wasmtime's version, its settings, the CPU's features), so
    /// that a module is compiled once per engine. The cache writes only in
    /// its subdirectory [`MODULE_CACHE_SUBDIR`], which it manages alone
    /// (it removes what is not its own there, and its oldest entries
    /// beyond 512 MiB). A directory that cannot be used is logged and
    /// modules are compiled as without one. `None` compiles at every load.
    pub module_cache: Option<PathBuf>,
    /// How VMs get their memory. An engine that cannot be created with the
    /// pooling allocator (too little address space) falls back to on-demand
    /// allocation with a warning; [`Runtime::allocator`] tells which runs.
    pub allocator: Allocator,
    /// Name the compiled guest functions for `perf`: each module's code is
    /// listed in `/tmp/perf-<pid>.map` (function names from the module's
    /// name section) as it is loaded, so that `perf record`/`perf report`
    /// and flame graphs show where a filter spends its time instead of
    /// bare addresses. For profiling: the file only grows, a line per
    /// function of every module loaded.
    pub perf_map: bool,
}

/// What the module cache did since the runtime started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleCacheStats {
    /// Loads served from the directory.
    pub hits: usize,
    /// Loads compiled and written to the directory.
    pub misses: usize,
}

/// One per process: the wasmtime engine every module is compiled with, the
/// host functions linked into every instance, and the thread that advances
/// the engine's epoch so that a callback running past its deadline traps.
pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) linker: Arc<Linker<HostState>>,
    pub(crate) host_functions: Arc<hostcalls::Registry>,
    pub(crate) shared: Arc<SharedState>,
    allocator: Allocator,
    cache: Option<Cache>,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl Runtime {
    /// Creates the engine, links the host functions and starts the epoch
    /// thread; no module cache, on-demand allocation (for tests and tools).
    pub fn new() -> Result<Runtime, RuntimeError> {
        Runtime::with_options(&RuntimeOptions::default())
    }

    /// [`Runtime::new`], set up as `options` say.
    pub fn with_options(options: &RuntimeOptions) -> Result<Runtime, RuntimeError> {
        let cache = options.module_cache.as_deref().and_then(open_cache);
        let mut allocator = options.allocator;
        let engine = match allocator {
            Allocator::OnDemand => engine(cache.clone(), None, options.perf_map),
            Allocator::Pooling { max_vms } => {
                engine(cache.clone(), Some(max_vms), options.perf_map).or_else(|e| {
                    tracing::warn!(
                        "cannot reserve memory for {max_vms} pooled VMs ({e:#}); \
                         VMs are allocated on demand instead"
                    );
                    allocator = Allocator::OnDemand;
                    engine(cache.clone(), None, options.perf_map)
                })
            }
        }
        .map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let (linker, registry) =
            hostcalls::linker(&engine).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;

        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("weft-wasm-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })?
        };
        Ok(Runtime {
            engine,
            linker: Arc::new(linker),
            host_functions: Arc::new(registry),
            shared: Arc::default(),
            allocator,
            cache,
            stop,
            ticker: Some(ticker),
        })
    }

    /// The allocator VMs get their memory from (on demand when pooling was
    /// asked for but could not be set up).
    pub fn allocator(&self) -> Allocator {
        self.allocator
    }

    /// The directory the module cache writes in, when one is in use.
    pub fn module_cache_dir(&self) -> Option<&Path> {
        self.cache.as_ref().map(|c| c.directory().as_path())
    }

    /// What the module cache did so far, when one is in use.
    pub fn module_cache_stats(&self) -> Option<ModuleCacheStats> {
        self.cache.as_ref().map(|c| ModuleCacheStats {
            hits: c.cache_hits(),
            misses: c.cache_misses(),
        })
    }
}

/// The engine: epoch deadlines, symbolised backtraces, optimised code,
/// `cache`, a pool for `pooled` VMs if given, and a perf map if asked.
fn engine(cache: Option<Cache>, pooled: Option<u32>, perf_map: bool) -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    if perf_map {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    config.wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Enable);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    config.cache(cache);
    if let Some(max_vms) = pooled {
        // A VM is one core instance with one memory and (at most) one table.
        let mut pool = PoolingAllocationConfig::new();
        pool.total_core_instances(max_vms)
            .total_memories(max_vms)
            .total_tables(max_vms)
            .max_memory_size(POOLED_MEMORY_BYTES);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Engine::new(&config)
}

/// The module cache in `dir`, or `None` (logged) when `dir` cannot be made,
/// resolved or written.
fn open_cache(dir: &Path) -> Option<Cache> {
    let opened = std::path::absolute(dir)
        .map_err(|e| e.to_string())
        .and_then(|dir| {
            let mut config = CacheConfig::new();
            config.with_directory(dir.join(MODULE_CACHE_SUBDIR));
            let cache = Cache::new(config).map_err(|e| format!("{e:#}"))?;
            // Writable? A cache that cannot write would warn at every load.
            let probe = cache
                .directory()
                .join(format!(".weft-probe-{}", std::process::id()));
            std::fs::write(&probe, b"")
                .and_then(|()| std::fs::remove_file(&probe))
                .map_err(|e| format!("cannot write to {}: {e}", cache.directory().display()))?;
            Ok(cache)
        });
    match opened {
        Ok(cache) => Some(cache),
        Err(reason) => {
            tracing::warn!(
                "module cache {} cannot be used ({reason}); modules are compiled at every load",
                dir.display()
            );
            None
        }
    }
}

impl Runtime {
    /// Makes `function` callable by plugins as
    /// `proxy_call_foreign_function(name, ...)`. A name nobody registered
    /// answers NOT_FOUND. Registering a name again replaces the function.
    pub fn register_foreign_function(
        &self,
        name: &str,
        function: impl Fn(&[u8]) -> Result<Vec<u8>, crate::Status> + Send + Sync + 'static,
    ) {
        self.shared.register_foreign(name, Arc::new(function));
    }

    /// Every metric plugins have defined, for exporters.
    pub fn metrics(&self) -> Vec<Arc<Metric>> {
        self.shared.metrics()
    }

    /// A handle that reads the plugins' metrics from any thread.
    pub fn metrics_reader(&self) -> MetricsReader {
        MetricsReader(self.shared.clone())
    }
}

/// Reads plugin metrics; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct MetricsReader(Arc<SharedState>);

impl MetricsReader {
    /// Every metric plugins have defined so far.
    pub fn metrics(&self) -> Vec<Arc<Metric>> {
        self.0.metrics()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}
