//! weft's data plane.
//!
//! [`Proxy::start`] turns a validated [`weft_config::ProxyConfig`] into
//! running workers: it loads every plugin's module once, proves each plugin
//! starts and accepts its configuration on a canary VM, binds each listener
//! once per worker with SO_REUSEPORT, then starts the worker threads. Each
//! worker owns its VMs and upstream connection pools (see `worker`).

mod admin;
mod body;
mod bundles;
mod callout;
mod chain;
mod cluster;
mod coarse;
mod control;
mod dns;
mod filewatch;
mod forward;
mod health;
mod observe;
mod router;
mod stream;
mod swap;
mod tcp;
mod tls;
mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::watch;
use weft_abi::{Capabilities, LoadError, Plugin, PluginLimits, PluginModule, Runtime, Vm, VmError};
use weft_config::{FailurePolicy, ProxyConfig};

pub use body::ResponseBody;
pub use bundles::KeyError;
pub use swap::{AppliedBundle, BundleStatus, SwapError, Swapped, Swapper};

/// Why the proxy could not start. Each names the config field at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A plugin's module failed to load.
    #[error("plugins[{index}] (`{name}`): {source}")]
    Module {
        /// Index in `plugins`.
        index: usize,
        /// The plugin's name.
        name: String,
        /// Why.
        source: LoadError,
    },
    /// A plugin failed to start or refused its configuration.
    #[error("plugins[{index}]: {source}")]
    Plugin {
        /// Index in `plugins`.
        index: usize,
        /// The plugin's name.
        name: String,
        /// Why.
        source: VmError,
    },
    /// A listener could not be bound.
    #[error("listeners[{index}] (`{name}`): cannot listen on {address}: {source}")]
    Bind {
        /// Index in `listeners`.
        index: usize,
        /// The listener's name.
        name: String,
        /// The address.
        address: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The admin listener could not start.
    #[error("admin: cannot listen on {address}: {source}")]
    Admin {
        /// The address.
        address: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A worker thread could not be spawned.
    #[error("cannot start worker thread: {0}")]
    Thread(std::io::Error),
    /// A cluster could not be set up (an endpoint does not resolve, its
    /// TLS files cannot be used).
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
    /// A listener's access log cannot be opened.
    #[error("listeners[{index}].access_log: cannot open {}: {source}", path.display())]
    AccessLog {
        /// Index in `listeners`.
        index: usize,
        /// The file.
        path: std::path::PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A listener's TLS files cannot be used.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// A listener's routes could not be built.
    #[error(transparent)]
    Route(#[from] router::RouteError),
    /// A trusted bundle key cannot be used.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// A listener's name and the address it is bound to (port 0 resolved).
#[derive(Debug, Clone)]
pub struct BoundListener {
    /// The listener's name.
    pub name: String,
    /// The bound address.
    pub address: SocketAddr,
}

/// A running proxy.
pub struct Proxy {
    listeners: Vec<BoundListener>,
    shutdown: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
    swapper: Arc<Swapper>,
}

/// How the runtime for `config` is set up (its `runtime` section): the
/// allocator with its pool sized for the plugins and workers, the module
/// cache's directory.
pub fn runtime_options(config: &ProxyConfig) -> weft_abi::RuntimeOptions {
    let settings = &config.runtime;
    let module_cache = settings.module_cache.directory();
    if settings.module_cache.enabled && module_cache.is_none() {
        tracing::warn!(
            "runtime.module_cache: no `dir` given and neither XDG_CACHE_HOME nor HOME is set; \
             modules are compiled at every start"
        );
    }
    let allocator = match settings.allocator {
        weft_config::InstanceAllocator::OnDemand => weft_abi::Allocator::OnDemand,
        weft_config::InstanceAllocator::Pooling => weft_abi::Allocator::Pooling {
            max_vms: settings.max_vms_for(worker_count(config), &config.plugins),
        },
    };
    weft_abi::RuntimeOptions {
        module_cache,
        allocator,
        perf_map: settings.perf_map,
    }
}

/// The worker threads `config` asks for: `workers`, else one per CPU.
fn worker_count(config: &ProxyConfig) -> usize {
    config
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Loads and checks every plugin of `config`: each module compiles and links,
/// and each plugin starts and accepts its configuration on a canary VM.
pub fn load_plugins(
    config: &ProxyConfig,
    runtime: &Runtime,
) -> Result<Vec<Arc<Plugin>>, StartError> {
    let mut plugins = Vec::with_capacity(config.plugins.len());
    for (index, p) in config.plugins.iter().enumerate() {
        let (plugin, _) = load_plugin(index, p, runtime, None)?;
        plugins.push(plugin);
    }
    Ok(plugins)
}

/// Loads plugin number `index`: its module compiles and links, and it
/// starts and accepts its configuration on a canary VM. Returns it with its
/// module's SHA-256 (hex).
pub(crate) fn load_plugin(
    index: usize,
    p: &weft_config::Plugin,
    runtime: &Runtime,
    cache: Option<&swap::ModuleCache>,
) -> Result<(Arc<Plugin>, String), StartError> {
    let bytes = std::fs::read(&p.module).map_err(|source| StartError::Module {
        index,
        name: p.name.clone(),
        source: LoadError::Read {
            path: p.module.clone(),
            source,
        },
    })?;
    load_plugin_bytes(index, p, &bytes, runtime, cache)
}

/// [`load_plugin`] with the module's bytes at hand (from a bundle).
pub(crate) fn load_plugin_bytes(
    index: usize,
    p: &weft_config::Plugin,
    bytes: &[u8],
    runtime: &Runtime,
    cache: Option<&swap::ModuleCache>,
) -> Result<(Arc<Plugin>, String), StartError> {
    {
        let capabilities = Capabilities {
            host_functions: p.allowed_host_functions.clone(),
        };
        let sha256 = weft_bundle::sha256_hex(bytes);
        let compile = || {
            PluginModule::from_bytes_with(
                runtime,
                &p.module.display().to_string(),
                bytes,
                &capabilities,
            )
        };
        let module = match cache {
            Some(cache) => cache.get_or_compile(&sha256, &capabilities, compile),
            None => compile(),
        }
        .map_err(|source| StartError::Module {
            index,
            name: p.name.clone(),
            source,
        })?;
        let plugin = Arc::new(Plugin {
            name: p.name.clone(),
            root_id: p.root_id.clone(),
            vm_id: p.vm_id.clone(),
            configuration: p.configuration.to_bytes(),
            vm_configuration: p.vm_configuration.to_bytes(),
            failure_policy: match p.failure_policy {
                FailurePolicy::FailClosed => weft_abi::FailurePolicy::FailClosed,
                FailurePolicy::FailOpen => weft_abi::FailurePolicy::FailOpen,
            },
            limits: PluginLimits {
                memory_bytes: p.limits.memory_mb as usize * (1 << 20),
                callback_deadline: Duration::from_millis(p.limits.callback_ms),
                start_deadline: Duration::from_millis(p.limits.start_ms),
                body_buffer_bytes: p.limits.body_buffer_mb as usize * (1 << 20),
            },
            module,
        });
        Vm::new(plugin.clone()).map_err(|source| StartError::Plugin {
            index,
            name: p.name.clone(),
            source,
        })?;
        tracing::info!(
            plugin = %p.name,
            module = %p.module.display(),
            abi = %plugin.module.abi_version(),
            sha256 = %sha256,
            "plugin loaded"
        );
        Ok((plugin, sha256))
    }
}

/// Everything [`Proxy::start`] checks before it binds anything: plugins
/// load and start, cluster endpoints resolve, routes compile. Returns the
/// number of plugins.
pub fn check(config: &ProxyConfig, runtime: &Runtime) -> Result<usize, StartError> {
    let plugins = load_plugins(config, runtime)?;
    if let Some(source) = &config.bundles {
        bundles::Source::new(source)?;
    }
    let resolver = dns::Resolver::new(&config.dns);
    for (index, c) in config.clusters.iter().enumerate() {
        cluster::ClusterShared::new(index, c, &resolver)?;
    }
    for (index, listener) in config.listeners.iter().enumerate() {
        router::RouteTable::new(config, index)?;
        if let Some(tls) = &listener.tls {
            tls::ServerTls::new(index, tls, listener.http2)?;
        }
    }
    Ok(plugins.len())
}

impl Proxy {
    /// Starts the proxy described by `config` (already validated).
    pub fn start(config: &ProxyConfig, runtime: Arc<Runtime>) -> Result<Proxy, StartError> {
        let mut slots = Vec::with_capacity(config.plugins.len());
        let mut published_slots = Vec::with_capacity(config.plugins.len());
        let modules = Arc::new(swap::ModuleCache::default());
        for (index, p) in config.plugins.iter().enumerate() {
            let (plugin, sha256) = load_plugin(index, p, &runtime, Some(&modules))?;
            let stats = Arc::<chain::PluginStats>::default();
            {
                let mut info = stats.info();
                info.module = p.module.clone();
                info.sha256 = sha256;
            }
            published_slots.push(swap::PublishedSlot {
                plugin,
                loaded: true,
                version: 0,
                stats: stats.clone(),
                allowed_clusters: p.allowed_clusters.as_deref().map(Arc::from),
                per_request: p.isolation == weft_config::Isolation::Request,
                deliver_body: p.body_during_pause == weft_config::BodyDuringPause::Deliver,
            });
            slots.push(swap::SlotInfo::new(p.clone(), stats));
        }
        let mut tables = Vec::with_capacity(config.listeners.len());
        let workers = worker_count(config);

        let resolver = Arc::new(dns::Resolver::new(&config.dns));
        let clusters: Vec<Arc<cluster::ClusterShared>> = config
            .clusters
            .iter()
            .enumerate()
            .map(|(index, c)| cluster::ClusterShared::new(index, c, &resolver).map(Arc::new))
            .collect::<Result<_, _>>()?;

        // Each listener is bound once per worker; the first bind resolves
        // port 0, the others reuse that port.
        let mut sockets: Vec<Vec<(Arc<router::ListenerRoutes>, std::net::TcpListener)>> =
            (0..workers).map(|_| Vec::new()).collect();
        let mut bound = Vec::new();
        let mut cert_stores = Vec::new();
        let mut listener_stats = Vec::new();
        for (index, listener) in config.listeners.iter().enumerate() {
            tables.push(Arc::new(router::RouteTable::new(config, index)?));
            let mut route = router::ListenerRoutes::new(config, index);
            if let Some(tls) = &listener.tls {
                let tls = tls::ServerTls::new(index, tls, listener.http2)?;
                cert_stores.push(tls.store.clone());
                route.tls = Some(tls);
            }
            if let Some(log) = &listener.access_log {
                observe::AccessLog::open(log).map_err(|source| StartError::AccessLog {
                    index,
                    path: log.path.clone(),
                    source,
                })?;
            }
            let route = Arc::new(route);
            listener_stats.push((listener.name.clone(), route.stats.clone()));
            let mut address = listener.address;
            for per_worker in &mut sockets {
                let socket = bind(address).map_err(|source| StartError::Bind {
                    index,
                    name: listener.name.clone(),
                    address,
                    source,
                })?;
                if address.port() == 0 {
                    address = socket.local_addr().map_err(|source| StartError::Bind {
                        index,
                        name: listener.name.clone(),
                        address,
                        source,
                    })?;
                }
                per_worker.push((route.clone(), socket));
            }
            bound.push(BoundListener {
                name: listener.name.clone(),
                address,
            });
        }

        let bundle_source = config
            .bundles
            .as_ref()
            .map(bundles::Source::new)
            .transpose()?;
        let published = Arc::new(swap::Published::new(
            swap::Publication {
                slots: published_slots,
                routes: tables,
            },
            workers,
        ));
        let swapper = Arc::new(Swapper::new(
            runtime.clone(),
            config.clone(),
            slots,
            published.clone(),
            modules,
        ));
        let (shutdown, receiver) = watch::channel(false);
        let drain = Duration::from_millis(config.drain_timeout_ms);
        let mut handles = Vec::with_capacity(workers + 1);
        let (foreign, foreign_receivers): (Vec<_>, Vec<_>) = (0..workers)
            .map(|_| tokio::sync::mpsc::unbounded_channel())
            .unzip();
        if let Some(admin) = &config.admin {
            let state = admin::AdminState {
                foreign,
                metrics: runtime.metrics_reader(),
                plugins: swapper.clone(),
                clusters: clusters.clone(),
                listeners: listener_stats,
                config: serde_json::to_value(config).unwrap_or_default(),
            };
            let (address, handle) =
                admin::start(admin.address, state, receiver.clone()).map_err(|source| {
                    StartError::Admin {
                        address: admin.address,
                        source,
                    }
                })?;
            bound.push(BoundListener {
                name: "admin".into(),
                address,
            });
            handles.push(handle);
        }
        if let Some(handle) =
            health::start(&clusters, resolver, receiver.clone()).map_err(StartError::Thread)?
        {
            handles.push(handle);
        }
        if let Some(handle) =
            tls::start_reloader(cert_stores, receiver.clone()).map_err(StartError::Thread)?
        {
            handles.push(handle);
        }
        for ((index, listeners), foreign) in sockets.into_iter().enumerate().zip(foreign_receivers)
        {
            let init = worker::WorkerInit {
                index,
                foreign,
                clusters: clusters.clone(),
                listeners,
                access_logs: config
                    .listeners
                    .iter()
                    .map(|l| l.access_log.clone())
                    .collect(),
                published: published.clone(),
            };
            let receiver = receiver.clone();
            let handle = std::thread::Builder::new()
                .name(format!("weft-worker-{index}"))
                .spawn(move || {
                    if let Err(err) = worker::run(init, receiver, drain) {
                        tracing::error!(worker = index, "worker stopped: {err}");
                    }
                })
                .map_err(StartError::Thread)?;
            handles.push(handle);
        }
        if let Some(source) = &bundle_source {
            source.apply(&swapper);
        }
        if let (Some(source), Some(subscription)) = (
            &bundle_source,
            config.bundles.as_ref().and_then(|b| b.control.as_ref()),
        ) {
            let default_id = format!(
                "{}:{}",
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map_or_else(|_| "weft".to_string(), |h| h.trim().to_string()),
                bound.first().map_or(0, |l| l.address.port())
            );
            handles.push(control::start(
                swapper.clone(),
                subscription,
                config.labels.clone(),
                source.trusted.clone(),
                default_id,
                receiver.clone(),
            )?);
        }
        if let (Some(source), Some(oci)) = (
            &bundle_source,
            config.bundles.as_ref().and_then(|b| b.oci.as_ref()),
        ) {
            handles.push(control::start_oci(
                swapper.clone(),
                oci,
                source.trusted.clone(),
                receiver.clone(),
            )?);
        }
        if let Some(handle) = filewatch::start(swapper.clone(), bundle_source, receiver.clone())
            .map_err(StartError::Thread)?
        {
            handles.push(handle);
        }
        Ok(Proxy {
            listeners: bound,
            shutdown,
            workers: handles,
            swapper,
        })
    }

    /// Swaps the running proxy's plugins.
    pub fn swapper(&self) -> &Arc<Swapper> {
        &self.swapper
    }

    /// The listeners and the addresses they are bound to.
    pub fn listeners(&self) -> &[BoundListener] {
        &self.listeners
    }

    /// Stops accepting, lets in-flight requests finish (up to the
    /// configured drain timeout) and waits for the workers to exit.
    pub fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for worker in self.workers {
            let _ = worker.join();
        }
    }
}

fn bind(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}
