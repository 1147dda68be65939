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
use weft_abi::{Capabilities, LoadError, Plugin, PluginModule, Runtime};

use crate::chain::PluginStats;
use crate::{StartError, load_plugin, load_plugin_bytes};

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

    /// Publishes new versions of some plugins at once: a worker applies
    /// all of them at the same turn.
    fn publish(&self, updates: Vec<(usize, Arc<Plugin>, u64)>) -> u64 {
        {
            let mut plugins = self.plugins.write().unwrap_or_else(PoisonError::into_inner);
            for (index, plugin, version) in updates {
                if let Some(entry) = plugins.get_mut(index) {
                    *entry = (plugin, version);
                }
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
    /// The bundle is damaged, unsigned or wrongly signed.
    #[error("{0}")]
    Bundle(#[from] weft_bundle::BundleError),
    /// The bundle is for other proxies.
    #[error(
        "bundle `{name}` {version} is for proxies labelled {wanted}; this one is labelled {have}"
    )]
    Labels {
        /// The bundle.
        name: String,
        /// Its version.
        version: String,
        /// The labels it targets.
        wanted: String,
        /// This proxy's labels.
        have: String,
    },
    /// The bundle asks for something only the proxy's own config grants.
    #[error("bundle `{name}` {version}, plugin `{plugin}`: {problem}")]
    Refused {
        /// The bundle.
        name: String,
        /// Its version.
        version: String,
        /// The plugin.
        plugin: String,
        /// Why.
        problem: String,
    },
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

/// Compiled modules by SHA-256 and capabilities: a version that changes
/// only configuration, or brings back an earlier module, is not compiled
/// again. Bounded: past `MAX_CACHED` modules it starts afresh.
#[derive(Default)]
pub(crate) struct ModuleCache {
    modules: Mutex<std::collections::HashMap<ModuleKey, PluginModule>>,
    /// Modules compiled, and loads served from the cache.
    pub(crate) compiled: AtomicU64,
    pub(crate) hits: AtomicU64,
}

const MAX_CACHED: usize = 64;

/// A module's SHA-256 and the host functions it may call.
type ModuleKey = (String, Option<Vec<String>>);

impl ModuleCache {
    /// The module compiled from bytes hashing to `sha256`, compiling it
    /// (outside the lock) if it is not cached.
    pub(crate) fn get_or_compile(
        &self,
        sha256: &str,
        capabilities: &Capabilities,
        compile: impl FnOnce() -> Result<PluginModule, LoadError>,
    ) -> Result<PluginModule, LoadError> {
        let key = (sha256.to_string(), capabilities.host_functions.clone());
        let lock = || self.modules.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(module) = lock().get(&key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(module.clone());
        }
        let module = compile()?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        let mut modules = lock();
        if modules.len() >= MAX_CACHED {
            modules.clear();
        }
        modules.insert(key, module.clone());
        Ok(module)
    }
}

/// Per-plugin facts about its versions, for `/plugins`.
#[derive(Debug, Clone, Default)]
pub(crate) struct VersionInfo {
    pub(crate) module: PathBuf,
    pub(crate) sha256: String,
    pub(crate) last_error: Option<String>,
}

/// The last bundle applied and how bundles fared, for `/bundle`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BundleStatus {
    /// The bundle running now, if any.
    pub applied: Option<AppliedBundle>,
    /// Why the last bundle was refused, if it was.
    pub last_error: Option<String>,
    /// Bundles applied.
    pub applies: u64,
    /// Bundles refused.
    pub refusals: u64,
}

/// A bundle that was applied.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AppliedBundle {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// `sha256:<hex>` of its manifest.
    pub digest: String,
    /// The id of the trusted key that signed it, if signatures are checked.
    pub signed_by: Option<String>,
    /// The plugins it swapped.
    pub plugins: Vec<Swapped>,
    /// From the start of loading to every worker running it.
    pub elapsed_ms: f64,
}

/// Swaps plugins of a running proxy; cheap to share between threads.
pub struct Swapper {
    runtime: Arc<Runtime>,
    configs: Vec<weft_config::Plugin>,
    published: Arc<Published>,
    stats: Vec<Arc<PluginStats>>,
    /// This proxy's labels, which bundles must target.
    labels: std::collections::BTreeMap<String, String>,
    modules: Arc<ModuleCache>,
    bundle: Mutex<BundleStatus>,
    /// One swap at a time.
    lock: Mutex<()>,
}

/// A plugin (by index) loaded from a configuration: the plugin and its
/// module's SHA-256, or why it did not load.
type Load = (
    usize,
    weft_config::Plugin,
    Result<(Arc<Plugin>, String), StartError>,
);

/// How long a swap waits for every worker to apply it.
const APPLY_LIMIT: Duration = Duration::from_secs(10);

impl Swapper {
    pub(crate) fn new(
        runtime: Arc<Runtime>,
        configs: Vec<weft_config::Plugin>,
        published: Arc<Published>,
        stats: Vec<Arc<PluginStats>>,
        labels: std::collections::BTreeMap<String, String>,
        modules: Arc<ModuleCache>,
    ) -> Swapper {
        Swapper {
            runtime,
            configs,
            published,
            stats,
            labels,
            modules,
            bundle: Mutex::new(BundleStatus::default()),
            lock: Mutex::new(()),
        }
    }

    /// Loads plugin `name` again from `module` (default: its configured
    /// file), proves it on a canary VM, and makes it the version every
    /// worker's new streams run. Refused, the running version stays.
    pub fn swap(&self, name: &str, module: Option<&Path>) -> Result<Swapped, SwapError> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let start = Instant::now();
        let index = self.index_of(name)?;
        let mut config = self.configs[index].clone();
        if let Some(module) = module {
            config.module = module.to_path_buf();
        }
        let loaded = load_plugin(index, &config, &self.runtime, Some(&self.modules));
        let mut swapped = self.apply(vec![(index, config, loaded)], start)?;
        swapped
            .pop()
            .ok_or_else(|| SwapError::Unknown(name.to_string()))
    }

    /// Applies a bundle: checks its signature (when `trusted` keys are
    /// given) and labels, loads and proves every plugin in it, then swaps
    /// them all at once. Refused, nothing changes.
    pub fn apply_bundle(
        &self,
        bundle: &weft_bundle::Bundle,
        trusted: &[weft_bundle::PublicKey],
    ) -> Result<AppliedBundle, SwapError> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        // The bundle running already (a source touched, not changed):
        // nothing to do.
        let running = self
            .bundle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .applied
            .clone()
            .filter(|a| a.digest == bundle.digest());
        if let Some(applied) = running {
            tracing::debug!(digest = %applied.digest, "bundle already running");
            return Ok(applied);
        }
        let start = Instant::now();
        let result = self
            .check_and_apply(bundle, trusted, start)
            .map(|(signed_by, plugins)| AppliedBundle {
                name: bundle.manifest.name.clone(),
                version: bundle.manifest.version.clone(),
                digest: bundle.digest(),
                signed_by,
                plugins,
                elapsed_ms: start.elapsed().as_secs_f64() * 1e3,
            });
        let mut status = self.bundle.lock().unwrap_or_else(PoisonError::into_inner);
        match &result {
            Ok(applied) => {
                status.applies += 1;
                status.applied = Some(applied.clone());
                status.last_error = None;
                tracing::info!(
                    bundle = %applied.name,
                    version = %applied.version,
                    digest = %applied.digest,
                    "bundle applied on every worker after {:.1} ms",
                    applied.elapsed_ms
                );
            }
            Err(err) => {
                status.refusals += 1;
                status.last_error = Some(err.to_string());
                tracing::error!("bundle refused, the running version stays: {err}");
            }
        }
        result
    }

    fn check_and_apply(
        &self,
        bundle: &weft_bundle::Bundle,
        trusted: &[weft_bundle::PublicKey],
        start: Instant,
    ) -> Result<(Option<String>, Vec<Swapped>), SwapError> {
        let manifest = &bundle.manifest;
        let signed_by = if trusted.is_empty() {
            None
        } else {
            Some(bundle.verify(trusted)?.id())
        };
        if manifest
            .labels
            .iter()
            .any(|(k, v)| self.labels.get(k) != Some(v))
        {
            let show = |labels: &std::collections::BTreeMap<String, String>| {
                let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                if pairs.is_empty() {
                    "(nothing)".to_string()
                } else {
                    pairs.join(",")
                }
            };
            return Err(SwapError::Labels {
                name: manifest.name.clone(),
                version: manifest.version.clone(),
                wanted: show(&manifest.labels),
                have: show(&self.labels),
            });
        }
        let mut loads = Vec::with_capacity(manifest.plugins.len());
        for plugin in &manifest.plugins {
            let refused = |problem: String| SwapError::Refused {
                name: manifest.name.clone(),
                version: manifest.version.clone(),
                plugin: plugin.name.clone(),
                problem,
            };
            let index = self.index_of(&plugin.name).map_err(|_| {
                refused(format!(
                    "this proxy has no plugin of that name (its plugins: {}); a bundle replaces plugins the proxy's config declares",
                    self.configs.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
                ))
            })?;
            let own = &self.configs[index];
            if plugin.allowed_host_functions.is_some() || plugin.allowed_clusters.is_some() {
                return Err(refused(
                    "`allowed_host_functions` and `allowed_clusters` are granted by the proxy's own config, not by bundles".into(),
                ));
            }
            let mut config = plugin.clone();
            config.allowed_host_functions = own.allowed_host_functions.clone();
            config.allowed_clusters = own.allowed_clusters.clone();
            let bytes = bundle
                .module(plugin)
                .ok_or_else(|| refused("its module is not in the bundle".into()))?;
            let loaded =
                load_plugin_bytes(index, &config, bytes, &self.runtime, Some(&self.modules));
            loads.push((index, config, loaded));
        }
        Ok((signed_by, self.apply(loads, start)?))
    }

    /// Publishes the loaded plugins as one change, or refuses all of them
    /// if any failed to load.
    /// `start`: when loading began, for the figures.
    fn apply(&self, loads: Vec<Load>, start: Instant) -> Result<Vec<Swapped>, SwapError> {
        let mut ready = Vec::with_capacity(loads.len());
        for (index, config, loaded) in loads {
            let stats = &self.stats[index];
            match loaded {
                Ok((plugin, sha256)) => ready.push((index, config, plugin, sha256)),
                Err(err) => {
                    stats.swap_failures.fetch_add(1, Ordering::Relaxed);
                    let message = err.to_string();
                    tracing::error!(
                        plugin = %config.name,
                        "new version refused, the running one stays: {message}"
                    );
                    stats.info().last_error = Some(message);
                    return Err(SwapError::Load(Box::new(err)));
                }
            }
        }
        let updates = ready
            .iter()
            .map(|(index, _, plugin, _)| {
                let version = self.stats[*index].version.load(Ordering::Relaxed) + 1;
                (*index, plugin.clone(), version)
            })
            .collect();
        let published_at = Instant::now();
        let generation = self.published.publish(updates);
        let applied = self.published.wait_applied(generation, APPLY_LIMIT);
        let elapsed_ms = start.elapsed().as_secs_f64() * 1e3;
        let workers_ms = published_at.elapsed().as_secs_f64() * 1e3;
        let mut swapped = Vec::with_capacity(ready.len());
        for (index, config, _, sha256) in ready {
            // Shown once every worker runs it (or, after the wait, as soon
            // as the late worker gets to it).
            let stats = &self.stats[index];
            {
                let mut info = stats.info();
                info.module = config.module.clone();
                info.sha256 = sha256.clone();
                info.last_error = None;
            }
            stats.swaps.fetch_add(1, Ordering::Relaxed);
            let version = stats.version.fetch_add(1, Ordering::AcqRel) + 1;
            if applied {
                tracing::info!(
                    plugin = %config.name,
                    version,
                    sha256 = %sha256,
                    "new version running on every worker {elapsed_ms:.1} ms after loading began ({workers_ms:.1} ms after it was published)"
                );
            }
            swapped.push(Swapped {
                plugin: config.name,
                version,
                sha256,
                elapsed_ms,
            });
        }
        match swapped.first() {
            Some(first) if !applied => Err(SwapError::NotApplied {
                plugin: first.plugin.clone(),
                version: first.version,
                limit: APPLY_LIMIT,
            }),
            _ => Ok(swapped),
        }
    }

    fn index_of(&self, name: &str) -> Result<usize, SwapError> {
        self.configs
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| SwapError::Unknown(name.to_string()))
    }

    /// Records a bundle that could not even be read.
    pub(crate) fn refuse_bundle(&self, reason: &str) {
        let mut status = self.bundle.lock().unwrap_or_else(PoisonError::into_inner);
        status.refusals += 1;
        status.last_error = Some(reason.to_string());
        tracing::error!("bundle refused, the running version stays: {reason}");
    }

    /// Modules compiled, and loads served from the module cache.
    pub(crate) fn module_counts(&self) -> (u64, u64) {
        (
            self.modules.compiled.load(Ordering::Relaxed),
            self.modules.hits.load(Ordering::Relaxed),
        )
    }

    /// How bundles fared.
    pub fn bundle_status(&self) -> BundleStatus {
        self.bundle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
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
