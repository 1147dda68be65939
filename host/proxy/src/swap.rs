//! Hot swap: a new version of a plugin is compiled and proven on a canary
//! VM (`proxy_on_vm_start` and `proxy_on_configure` must succeed) off the
//! workers, then published; each worker applies it at its next turn of the
//! event loop (new streams run the new VM; streams in flight finish on the
//! VM they started on, which is dropped after the last of them). A version
//! that fails to load changes nothing: the running one keeps serving.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use weft_abi::{Plugin, Runtime};

use crate::chain::PluginStats;
use crate::{StartError, load_plugin};

/// Plugin versions as published to the workers, and how far each worker
/// got in applying them.
pub(crate) struct Published {
    /// Per plugin index: the version new streams should run, and its number.
    plugins: RwLock<Vec<(Arc<Plugin>, u64)>>,
    /// Bumped on every publication; workers watch it.
    generation: watch::Sender<u64>,
    /// Per worker: the last generation it applied.
    applied: Vec<AtomicU64>,
}

impl Published {
    pub(crate) fn new(plugins: &[Arc<Plugin>], workers: usize) -> Published {
        Published {
            plugins: RwLock::new(plugins.iter().map(|p| (p.clone(), 0)).collect()),
            generation: watch::channel(0).0,
            applied: (0..workers).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Told of each new publication.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// The published versions.
    pub(crate) fn current(&self) -> Vec<(Arc<Plugin>, u64)> {
        self.plugins
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records that `worker` applied publication `generation`.
    pub(crate) fn applied(&self, worker: usize, generation: u64) {
        if let Some(applied) = self.applied.get(worker) {
            applied.store(generation, Ordering::Release);
        }
    }

    fn publish(&self, index: usize, plugin: Arc<Plugin>, version: u64) -> u64 {
        {
            let mut plugins = self.plugins.write().unwrap_or_else(PoisonError::into_inner);
            if let Some(entry) = plugins.get_mut(index) {
                *entry = (plugin, version);
            }
        }
        let mut generation = 0;
        self.generation.send_modify(|g| {
            *g += 1;
            generation = *g;
        });
        generation
    }

    /// Waits until every worker applied `generation`; false after `limit`.
    fn wait_applied(&self, generation: u64, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self
                .applied
                .iter()
                .all(|a| a.load(Ordering::Acquire) >= generation)
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// What a swap did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Swapped {
    /// The plugin.
    pub plugin: String,
    /// Its version number now (1 for the first swap).
    pub version: u64,
    /// The module's SHA-256, hex.
    pub sha256: String,
    /// From the start of loading to every worker running the new version.
    pub elapsed_ms: f64,
}

/// Why a swap was refused. The running version stays in every case.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    /// No plugin has that name.
    #[error("no plugin is named `{0}`")]
    Unknown(String),
    /// The new version did not load, start or accept its configuration.
    #[error("{0}")]
    Load(Box<StartError>),
    /// A worker did not apply it in time (it is still applied when the
    /// worker gets to it).
    #[error("plugin `{plugin}`: not every worker applied version {version} within {limit:?}")]
    NotApplied {
        /// The plugin.
        plugin: String,
        /// The version published.
        version: u64,
        /// How long it waited.
        limit: Duration,
    },
}

/// Per-plugin facts about its versions, for `/plugins`.
#[derive(Debug, Clone, Default)]
pub(crate) struct VersionInfo {
    pub(crate) module: PathBuf,
    pub(crate) sha256: String,
    pub(crate) last_error: Option<String>,
}

/// Swaps plugins of a running proxy; cheap to share between threads.
pub struct Swapper {
    runtime: Arc<Runtime>,
    configs: Vec<weft_config::Plugin>,
    published: Arc<Published>,
    stats: Vec<Arc<PluginStats>>,
    /// One swap at a time.
    lock: Mutex<()>,
}

/// How long a swap waits for every worker to apply it.
const APPLY_LIMIT: Duration = Duration::from_secs(10);

impl Swapper {
    pub(crate) fn new(
        runtime: Arc<Runtime>,
        configs: Vec<weft_config::Plugin>,
        published: Arc<Published>,
        stats: Vec<Arc<PluginStats>>,
    ) -> Swapper {
        Swapper {
            runtime,
            configs,
            published,
            stats,
            lock: Mutex::new(()),
        }
    }

    /// Loads plugin `name` again from `module` (default: its configured
    /// file), proves it on a canary VM, and makes it the version every
    /// worker's new streams run. Refused, the running version stays.
    pub fn swap(&self, name: &str, module: Option<&Path>) -> Result<Swapped, SwapError> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let start = Instant::now();
        let index = self
            .configs
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| SwapError::Unknown(name.to_string()))?;
        let mut config = self.configs[index].clone();
        if let Some(module) = module {
            config.module = module.to_path_buf();
        }
        let stats = &self.stats[index];
        let (plugin, sha256) = match load_plugin(index, &config, &self.runtime) {
            Ok(loaded) => loaded,
            Err(err) => {
                stats.swap_failures.fetch_add(1, Ordering::Relaxed);
                let message = err.to_string();
                tracing::error!(
                    plugin = name,
                    "new version refused, the running one stays: {message}"
                );
                stats.info().last_error = Some(message);
                return Err(SwapError::Load(Box::new(err)));
            }
        };
        let version = stats.version.load(Ordering::Relaxed) + 1;
        let generation = self.published.publish(index, plugin, version);
        let applied = self.published.wait_applied(generation, APPLY_LIMIT);
        // Shown once every worker runs it (or, after the wait, as soon as
        // the late worker gets to it).
        {
            let mut info = stats.info();
            info.module = config.module.clone();
            info.sha256 = sha256.clone();
            info.last_error = None;
        }
        stats.swaps.fetch_add(1, Ordering::Relaxed);
        stats.version.store(version, Ordering::Release);
        if !applied {
            return Err(SwapError::NotApplied {
                plugin: name.to_string(),
                version,
                limit: APPLY_LIMIT,
            });
        }
        let elapsed_ms = start.elapsed().as_secs_f64() * 1e3;
        tracing::info!(
            plugin = name,
            version,
            sha256 = %sha256,
            "new version running on every worker after {elapsed_ms:.1} ms"
        );
        Ok(Swapped {
            plugin: name.to_string(),
            version,
            sha256,
            elapsed_ms,
        })
    }

    /// The plugins' configurations.
    pub(crate) fn configs(&self) -> &[weft_config::Plugin] {
        &self.configs
    }

    /// Each plugin and the version it runs, for `/plugins`.
    pub(crate) fn describe(&self) -> serde_json::Value {
        let current = self.published.current();
        self.configs
            .iter()
            .zip(&self.stats)
            .zip(current)
            .map(|((config, stats), (plugin, _))| {
                let info = stats.info();
                serde_json::json!({
                    "name": plugin.name,
                    "version": stats.version.load(Ordering::Acquire),
                    "module": info.module.display().to_string(),
                    "sha256": info.sha256,
                    "abi_version": plugin.module.abi_version().to_string(),
                    "root_id": plugin.root_id,
                    "vm_id": plugin.vm_id,
                    "failure_policy": format!("{:?}", plugin.failure_policy),
                    "watch": config.watch,
                    "swaps": stats.swaps.load(Ordering::Relaxed),
                    "swap_failures": stats.swap_failures.load(Ordering::Relaxed),
                    "last_swap_error": info.last_error,
                })
            })
            .collect()
    }
}
