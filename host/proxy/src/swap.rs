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
use crate::router::RouteTable;
use crate::{StartError, load_plugin, load_plugin_bytes};

/// One plugin slot as published to the workers.
#[derive(Clone)]
pub(crate) struct PublishedSlot {
    /// The version new streams run (when loaded).
    pub(crate) plugin: Arc<Plugin>,
    /// False once no route runs it (a plugin a bundle added, and a later
    /// bundle dropped): its VMs go away.
    pub(crate) loaded: bool,
    /// Bumped on every change, so that workers see it.
    pub(crate) version: u64,
    pub(crate) stats: Arc<PluginStats>,
    /// The clusters its call-outs may reach (all when `None`).
    pub(crate) allowed_clusters: Option<Arc<[String]>>,
    /// `isolation: request`: a fresh VM per stream.
    pub(crate) per_request: bool,
    /// `body_during_pause: deliver`.
    pub(crate) deliver_body: bool,
}

/// What workers run: the plugins by slot number, and each listener's
/// routing table (whose chains name slots by number).
#[derive(Clone)]
pub(crate) struct Publication {
    pub(crate) slots: Vec<PublishedSlot>,
    pub(crate) routes: Vec<Arc<RouteTable>>,
}

/// The publication workers apply, and how far each of them got.
pub(crate) struct Published {
    publication: RwLock<Arc<Publication>>,
    /// Bumped on every publication; workers watch it.
    generation: watch::Sender<u64>,
    /// Per worker: the last generation it applied.
    applied: Vec<AtomicU64>,
}

impl Published {
    pub(crate) fn new(publication: Publication, workers: usize) -> Published {
        Published {
            publication: RwLock::new(Arc::new(publication)),
            generation: watch::channel(0).0,
            applied: (0..workers).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Told of each new publication.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// The current publication.
    pub(crate) fn current(&self) -> Arc<Publication> {
        self.publication
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

    /// Publishes a new state: a worker applies all of it at the same turn.
    fn publish(&self, publication: Publication) -> u64 {
        *self
            .publication
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(publication);
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
    /// The routes or filter chains the bundle sets do not compile.
    #[error("bundle `{name}` {version}: {problem}")]
    Routes {
        /// The bundle.
        name: String,
        /// Its version.
        version: String,
        /// Why.
        problem: String,
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
    /// The plugins it swapped in (and the proxy's own ones it put back).
    pub plugins: Vec<Swapped>,
    /// Plugins an earlier bundle added that this one dropped.
    pub unloaded: Vec<String>,
    /// The listeners whose routes or filter chains it sets.
    pub listeners: Vec<String>,
    /// From the start of loading to every worker running it.
    pub elapsed_ms: f64,
}

/// Swaps plugins, and the routes bundles set, of a running proxy; cheap to
/// share between threads.
pub struct Swapper {
    runtime: Arc<Runtime>,
    /// The proxy's own configuration: what a bundle changes, and what
    /// comes back when a later bundle no longer changes it.
    base: weft_config::ProxyConfig,
    /// Every plugin slot: the proxy's own plugins first, then those
    /// bundles added, in the order they came.
    slots: Mutex<Vec<SlotInfo>>,
    published: Arc<Published>,
    modules: Arc<ModuleCache>,
    bundle: Mutex<BundleStatus>,
    /// One swap at a time.
    lock: Mutex<()>,
}

/// What the swapper knows of a plugin slot.
#[derive(Clone)]
pub(crate) struct SlotInfo {
    /// The configuration it runs now.
    config: weft_config::Plugin,
    pub(crate) stats: Arc<PluginStats>,
    /// Its running version came from a bundle.
    from_bundle: bool,
    loaded: bool,
}

impl SlotInfo {
    pub(crate) fn new(config: weft_config::Plugin, stats: Arc<PluginStats>) -> SlotInfo {
        SlotInfo {
            config,
            stats,
            from_bundle: false,
            loaded: true,
        }
    }
}

/// One change a swap makes to a slot: a new version, loaded (or not)
/// from `config`; or, with `load` empty, out of service (no route runs it
/// any more).
struct Change {
    index: usize,
    load: Option<Load>,
}

struct Load {
    config: weft_config::Plugin,
    loaded: Result<(Arc<Plugin>, String), StartError>,
    from_bundle: bool,
}

/// What applying a bundle did to the plugins: the key that signed it,
/// the versions swapped in, the plugins unloaded.
type BundleChanges = (Option<String>, Vec<Swapped>, Vec<String>);

/// How long a swap waits for every worker to apply it.
const APPLY_LIMIT: Duration = Duration::from_secs(10);

impl Swapper {
    pub(crate) fn new(
        runtime: Arc<Runtime>,
        base: weft_config::ProxyConfig,
        slots: Vec<SlotInfo>,
        published: Arc<Published>,
        modules: Arc<ModuleCache>,
    ) -> Swapper {
        Swapper {
            runtime,
            base,
            slots: Mutex::new(slots),
            published,
            modules,
            bundle: Mutex::new(BundleStatus::default()),
            lock: Mutex::new(()),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<SlotInfo>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Loads plugin `name` again from `module` (default: its configured
    /// file), proves it on a canary VM, and makes it the version every
    /// worker's new streams run. Refused, the running version stays.
    pub fn swap(&self, name: &str, module: Option<&Path>) -> Result<Swapped, SwapError> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let start = Instant::now();
        let index = self.index_of(name)?;
        let mut config = match self.base.plugins.get(index) {
            Some(own) => own.clone(),
            None => self.slots()[index].config.clone(),
        };
        if let Some(module) = module {
            config.module = module.to_path_buf();
        }
        let loaded = load_plugin(index, &config, &self.runtime, Some(&self.modules));
        let change = Change {
            index,
            load: Some(Load {
                config,
                loaded,
                from_bundle: false,
            }),
        };
        let mut swapped = self.apply(vec![change], None, start)?;
        swapped
            .pop()
            .ok_or_else(|| SwapError::Unknown(name.to_string()))
    }

    /// Applies a bundle: checks its signature (when `trusted` keys are
    /// given) and labels, loads and proves every plugin in it and compiles
    /// the routes it sets, then swaps them all in at once. Refused,
    /// nothing changes.
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
        let result =
            self.check_and_apply(bundle, trusted, start)
                .map(|(signed_by, plugins, unloaded)| AppliedBundle {
                    name: bundle.manifest.name.clone(),
                    version: bundle.manifest.version.clone(),
                    digest: bundle.digest(),
                    signed_by,
                    plugins,
                    unloaded,
                    listeners: bundle
                        .manifest
                        .listeners
                        .iter()
                        .map(|l| l.name.clone())
                        .collect(),
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
    ) -> Result<BundleChanges, SwapError> {
        let manifest = &bundle.manifest;
        let signed_by = if trusted.is_empty() {
            None
        } else {
            Some(bundle.verify(trusted)?.id())
        };
        if manifest
            .labels
            .iter()
            .any(|(k, v)| self.base.labels.get(k) != Some(v))
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
                have: show(&self.base.labels),
            });
        }
        let slots = self.slots().clone();
        let own = self.base.plugins.len();
        let refused = |plugin: &str, problem: String| SwapError::Refused {
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            plugin: plugin.to_string(),
            problem,
        };
        // The plugins as they will be, by slot: the routes name them.
        let mut plugins: Vec<weft_config::Plugin> =
            slots.iter().map(|s| s.config.clone()).collect();
        let mut changes = Vec::new();
        for plugin in &manifest.plugins {
            if plugin.allowed_host_functions.is_some() || plugin.allowed_clusters.is_some() {
                return Err(refused(
                    &plugin.name,
                    "`allowed_host_functions` and `allowed_clusters` are granted by the proxy's own config, not by bundles".into(),
                ));
            }
            let index = plugins
                .iter()
                .position(|p| p.name == plugin.name)
                .unwrap_or(plugins.len());
            // What it may do is the proxy's to say: its own plugin's
            // grants, or those for plugins bundles add.
            let grants = self.base.plugins.get(index);
            let added = self.base.bundles.as_ref().map(|b| &b.added_plugins);
            let mut config = plugin.clone();
            config.allowed_host_functions = match grants {
                Some(own) => own.allowed_host_functions.clone(),
                None => added.and_then(|a| a.allowed_host_functions.clone()),
            };
            config.allowed_clusters = match grants {
                Some(own) => own.allowed_clusters.clone(),
                None => added.and_then(|a| a.allowed_clusters.clone()),
            };
            let bytes = bundle
                .module(plugin)
                .ok_or_else(|| refused(&plugin.name, "its module is not in the bundle".into()))?;
            let loaded =
                load_plugin_bytes(index, &config, bytes, &self.runtime, Some(&self.modules));
            if index == plugins.len() {
                plugins.push(config.clone());
            } else {
                plugins[index] = config.clone();
            }
            changes.push(Change {
                index,
                load: Some(Load {
                    config,
                    loaded,
                    from_bundle: true,
                }),
            });
        }
        // What an earlier bundle changed and this one does not: the
        // proxy's own plugins come back, added ones go.
        let mut unloaded = Vec::new();
        for (index, slot) in slots.iter().enumerate() {
            let named = manifest.plugins.iter().any(|p| p.name == slot.config.name);
            if named || !slot.from_bundle || !slot.loaded {
                continue;
            }
            match self.base.plugins.get(index) {
                Some(config) => {
                    let loaded = load_plugin(index, config, &self.runtime, Some(&self.modules));
                    plugins[index] = config.clone();
                    changes.push(Change {
                        index,
                        load: Some(Load {
                            config: config.clone(),
                            loaded,
                            from_bundle: false,
                        }),
                    });
                }
                None => {
                    unloaded.push(slot.config.name.clone());
                    changes.push(Change { index, load: None });
                }
            }
        }
        let routes = self.routes_for(manifest, plugins, own)?;
        let swapped = self.apply(changes, Some(routes), start)?;
        Ok((signed_by, swapped, unloaded))
    }

    /// Compiles every listener's routing table as `manifest` sets it, its
    /// chains naming `plugins` by slot. Plugins a bundle added and this
    /// one does not carry cannot be named.
    fn routes_for(
        &self,
        manifest: &weft_bundle::Manifest,
        plugins: Vec<weft_config::Plugin>,
        own: usize,
    ) -> Result<Vec<Arc<RouteTable>>, SwapError> {
        let refused = |problem: String| SwapError::Routes {
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            problem,
        };
        let mut config = self.base.clone();
        for policy in &manifest.listeners {
            let listener = config
                .listeners
                .iter_mut()
                .find(|l| l.name == policy.name)
                .ok_or_else(|| {
                    refused(format!(
                        "listener `{}`: this proxy has no listener of that name (its listeners: {})",
                        policy.name,
                        self.base
                            .listeners
                            .iter()
                            .map(|l| l.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
            if let Some(filters) = &policy.filters {
                listener.filters = filters.clone();
            }
            if let Some(virtual_hosts) = &policy.virtual_hosts {
                listener.virtual_hosts = virtual_hosts.clone();
                listener.cluster = None;
            }
        }
        // Names of plugins that will not run cannot be used.
        let usable: Vec<weft_config::Plugin> = plugins
            .iter()
            .enumerate()
            .filter(|(i, p)| *i < own || manifest.plugins.iter().any(|m| m.name == p.name))
            .map(|(_, p)| p.clone())
            .collect();
        config.plugins = usable;
        let path = Path::new("the proxy's listeners as the bundle sets them");
        config
            .validate_listeners(path)
            .map_err(|e| refused(e.to_string()))?;
        // Compiled against every slot, so that chains number them as
        // workers do.
        config.plugins = plugins;
        (0..config.listeners.len())
            .map(|index| {
                RouteTable::new(&config, index)
                    .map(Arc::new)
                    .map_err(|e| refused(e.to_string()))
            })
            .collect()
    }

    /// Publishes the changes (and routing tables, when given) as one, or
    /// refuses all of them if any plugin failed to load.
    /// `start`: when loading began, for the figures.
    fn apply(
        &self,
        changes: Vec<Change>,
        routes: Option<Vec<Arc<RouteTable>>>,
        start: Instant,
    ) -> Result<Vec<Swapped>, SwapError> {
        let mut slots = self.slots();
        // Any version that failed to load refuses the whole swap.
        let mut checked = Vec::with_capacity(changes.len());
        for Change { index, load } in changes {
            match load {
                Some(Load {
                    config,
                    loaded: Err(err),
                    ..
                }) => {
                    let message = err.to_string();
                    tracing::error!(
                        plugin = %config.name,
                        "new version refused, the running one stays: {message}"
                    );
                    if let Some(slot) = slots.get(index) {
                        slot.stats.swap_failures.fetch_add(1, Ordering::Relaxed);
                        slot.stats.info().last_error = Some(message);
                    }
                    return Err(SwapError::Load(Box::new(err)));
                }
                Some(Load {
                    config,
                    loaded: Ok((plugin, sha256)),
                    from_bundle,
                }) => checked.push((index, Some((config, plugin, sha256, from_bundle)))),
                None => checked.push((index, None)),
            }
        }
        let mut publication = Publication::clone(&self.published.current());
        // Loaded: (index, config, sha256, from_bundle).
        let mut ready = Vec::with_capacity(checked.len());
        let mut unloads = Vec::new();
        for (index, change) in checked {
            let Some((config, plugin, sha256, from_bundle)) = change else {
                if let Some(slot) = publication.slots.get_mut(index) {
                    slot.loaded = false;
                    slot.version = slot.stats.version.load(Ordering::Relaxed) + 1;
                }
                unloads.push(index);
                continue;
            };
            let allowed_clusters = config.allowed_clusters.as_deref().map(Arc::from);
            let per_request = config.isolation == weft_config::Isolation::Request;
            let deliver_body = config.body_during_pause == weft_config::BodyDuringPause::Deliver;
            match publication.slots.get_mut(index) {
                Some(slot) => {
                    slot.plugin = plugin;
                    slot.loaded = true;
                    slot.version = slot.stats.version.load(Ordering::Relaxed) + 1;
                    slot.allowed_clusters = allowed_clusters;
                    slot.per_request = per_request;
                    slot.deliver_body = deliver_body;
                }
                None => {
                    let stats = Arc::<PluginStats>::default();
                    slots.push(SlotInfo::new(config.clone(), stats.clone()));
                    publication.slots.push(PublishedSlot {
                        plugin,
                        loaded: true,
                        version: 1,
                        stats,
                        allowed_clusters,
                        per_request,
                        deliver_body,
                    });
                }
            }
            ready.push((index, config, sha256, from_bundle));
        }
        if let Some(routes) = routes {
            publication.routes = routes;
        }
        let published_at = Instant::now();
        let generation = self.published.publish(publication);
        let applied = self.published.wait_applied(generation, APPLY_LIMIT);
        let elapsed_ms = start.elapsed().as_secs_f64() * 1e3;
        let workers_ms = published_at.elapsed().as_secs_f64() * 1e3;
        for index in unloads {
            if let Some(slot) = slots.get_mut(index) {
                slot.loaded = false;
                slot.from_bundle = false;
                slot.stats.version.fetch_add(1, Ordering::AcqRel);
            }
        }
        let mut swapped = Vec::with_capacity(ready.len());
        for (index, config, sha256, from_bundle) in ready {
            let Some(slot) = slots.get_mut(index) else {
                continue;
            };
            // Shown once every worker runs it (or, after the wait, as soon
            // as the late worker gets to it).
            {
                let mut info = slot.stats.info();
                info.module = config.module.clone();
                info.sha256 = sha256.clone();
                info.last_error = None;
            }
            slot.config = config;
            slot.from_bundle = from_bundle;
            slot.loaded = true;
            slot.stats.swaps.fetch_add(1, Ordering::Relaxed);
            let version = slot.stats.version.fetch_add(1, Ordering::AcqRel) + 1;
            if applied {
                tracing::info!(
                    plugin = %slot.config.name,
                    version,
                    sha256 = %sha256,
                    "new version running on every worker {elapsed_ms:.1} ms after loading began ({workers_ms:.1} ms after it was published)"
                );
            }
            swapped.push(Swapped {
                plugin: slot.config.name.clone(),
                version,
                sha256,
                elapsed_ms,
            });
        }
        if !applied {
            // The publication stands: a late worker takes it at its next
            // turn. Refusing here would report a state the proxy is not in.
            tracing::warn!(
                generation,
                "published, but not every worker applied it within {APPLY_LIMIT:?}; the late ones take it at their next turn"
            );
        }
        Ok(swapped)
    }

    fn index_of(&self, name: &str) -> Result<usize, SwapError> {
        self.slots()
            .iter()
            .position(|p| p.config.name == name)
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

    /// The proxy's own plugins, as configured.
    pub(crate) fn configs(&self) -> &[weft_config::Plugin] {
        &self.base.plugins
    }

    /// The slot of the loaded plugin called `name`.
    pub(crate) fn loaded_slot(&self, name: &str) -> Option<usize> {
        self.slots()
            .iter()
            .position(|s| s.loaded && s.config.name == name)
    }

    /// Every plugin's name and counters, for `/metrics`.
    pub(crate) fn plugin_stats(&self) -> Vec<(String, Arc<PluginStats>)> {
        self.slots()
            .iter()
            .map(|s| (s.config.name.clone(), s.stats.clone()))
            .collect()
    }

    /// Each plugin and the version it runs, for `/plugins`.
    pub(crate) fn describe(&self) -> serde_json::Value {
        let current = self.published.current();
        self.slots()
            .iter()
            .zip(&current.slots)
            .enumerate()
            .map(|(index, (slot, published))| {
                let info = slot.stats.info();
                let plugin = &published.plugin;
                serde_json::json!({
                    "name": plugin.name,
                    "version": slot.stats.version.load(Ordering::Acquire),
                    "loaded": slot.loaded,
                    "source": if slot.from_bundle { "bundle" } else if index < self.base.plugins.len() { "config" } else { "bundle (dropped)" },
                    "module": info.module.display().to_string(),
                    "sha256": info.sha256,
                    "abi_version": plugin.module.abi_version().to_string(),
                    "root_id": plugin.root_id,
                    "vm_id": plugin.vm_id,
                    "failure_policy": format!("{:?}", plugin.failure_policy),
                    "watch": slot.config.watch,
                    "swaps": slot.stats.swaps.load(Ordering::Relaxed),
                    "swap_failures": slot.stats.swap_failures.load(Ordering::Relaxed),
                    "last_swap_error": info.last_error,
                })
            })
            .collect()
    }
}
