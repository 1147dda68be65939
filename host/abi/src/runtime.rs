//! The process-wide engine.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, Linker};

use crate::hostcalls;
use crate::shared::{Metric, SharedState};
use crate::vm::HostState;

/// How often the engine's epoch advances. Callback deadlines are counted in
/// these ticks, so a deadline is honoured to within one tick.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

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

/// One per process: the wasmtime engine every module is compiled with, the
/// host functions linked into every instance, and the thread that advances
/// the engine's epoch so that a callback running past its deadline traps.
pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) linker: Arc<Linker<HostState>>,
    pub(crate) host_functions: Arc<hostcalls::Registry>,
    pub(crate) shared: Arc<SharedState>,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl Runtime {
    /// Creates the engine, links the host functions and starts the epoch thread.
    pub fn new() -> Result<Runtime, RuntimeError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Enable);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = Engine::new(&config).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
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
            stop,
            ticker: Some(ticker),
        })
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
