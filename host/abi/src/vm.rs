//! A VM: one instance of a plugin's module, its root context, its streams.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Memory, Store, StoreLimits, StoreLimitsBuilder, Trap, TypedFunc};

use crate::abi::{AbiVersion, Action, BufferType, MapType, PeerType, StreamAction};
use crate::callout::{
    Answer, GrpcCallResponse, GrpcCaller, GrpcInbound, GrpcStreamSender, GrpcStreamer,
    HttpCallResponse, HttpCaller,
};
use crate::module::PluginModule;
use crate::runtime::EPOCH_TICK;
use crate::shared::{Metric, QueueNotifier, SharedState};
use crate::stream::{HttpStream, NoStream};

/// A context id, as the guest sees it.
pub type ContextId = u32;

/// The id of every VM's root (plugin) context.
pub(crate) const ROOT_CONTEXT: ContextId = 1;

/// What happens to a request when a plugin fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Answer 503.
    #[default]
    FailClosed,
    /// Skip the plugin.
    FailOpen,
}

/// What the embedder gives a VM to serve some host functions.
#[derive(Default, Clone)]
pub struct VmHooks {
    /// Told about new items on the shared queues the VM registers.
    pub queue_notifier: Option<QueueNotifier>,
    /// Starts the VM's `proxy_http_call`s; without it they answer
    /// UNIMPLEMENTED.
    pub http_caller: Option<HttpCaller>,
    /// Starts the VM's `proxy_grpc_call`s; without it they answer
    /// UNIMPLEMENTED.
    pub grpc_caller: Option<GrpcCaller>,
    /// Opens the VM's `proxy_grpc_stream`s; without it they answer
    /// UNIMPLEMENTED.
    pub grpc_streamer: Option<GrpcStreamer>,
    /// Told how long guest callbacks ran: one in [`CALLBACK_SAMPLE`] is
    /// timed (two clock reads each would cost a filter chain more than a
    /// microsecond per request); none without it.
    pub on_callback: Option<CallbackObserver>,
}

/// Sees a sampled guest callback's name and how long it ran.
pub type CallbackObserver = Rc<dyn Fn(&'static str, Duration)>;

/// [`VmHooks::on_callback`] sees one callback in this many.
pub const CALLBACK_SAMPLE: u32 = 8;

/// Resource limits of one VM.
#[derive(Debug, Clone, Copy)]
pub struct PluginLimits {
    /// Largest linear memory the VM may grow to, in bytes.
    pub memory_bytes: usize,
    /// CPU deadline of one stream callback.
    pub callback_deadline: Duration,
    /// CPU deadline of start-up (`_initialize`, `proxy_on_vm_start`,
    /// `proxy_on_configure`), where filters parse their configuration.
    pub start_deadline: Duration,
    /// The most body the plugin may hold back by pausing body callbacks.
    /// The embedder enforces it: only it sees bodies arrive.
    pub body_buffer_bytes: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            memory_bytes: 64 << 20,
            callback_deadline: Duration::from_millis(200),
            start_deadline: Duration::from_secs(5),
            body_buffer_bytes: 4 << 20,
        }
    }
}

/// A module plus one configured use of it.
pub struct Plugin {
    /// The plugin's name (`plugin_name`), used in every log line and error.
    pub name: String,
    /// `plugin_root_id`.
    pub root_id: String,
    /// `plugin_vm_id`.
    pub vm_id: String,
    /// Bytes handed to `proxy_on_configure`.
    pub configuration: Vec<u8>,
    /// Bytes handed to `proxy_on_vm_start`.
    pub vm_configuration: Vec<u8>,
    /// What happens to a request when this plugin fails.
    pub failure_policy: FailurePolicy,
    /// Resource limits.
    pub limits: PluginLimits,
    /// The compiled module.
    pub module: PluginModule,
}

/// Why a VM could not start or a callback failed. Each names the plugin.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The module could not be instantiated or lacks a callback's right type.
    #[error("plugin `{plugin}`: cannot instantiate: {message}")]
    Instantiate {
        /// The plugin.
        plugin: String,
        /// Why.
        message: String,
    },
    /// The guest trapped (panicked, hit `unreachable`, ran out of memory,
    /// called `proc_exit`...).
    #[error("plugin `{plugin}`: {callback} trapped: {message}")]
    Trap {
        /// The plugin.
        plugin: String,
        /// The callback that was running.
        callback: &'static str,
        /// The trap, with the guest's backtrace.
        message: String,
    },
    /// The guest ran past its CPU deadline.
    #[error(
        "plugin `{plugin}`: {callback} ran longer than its {deadline:?} deadline and was stopped"
    )]
    Timeout {
        /// The plugin.
        plugin: String,
        /// The callback that was running.
        callback: &'static str,
        /// The deadline it exceeded.
        deadline: Duration,
    },
    /// `proxy_on_vm_start` or `proxy_on_configure` returned false.
    #[error(
        "plugin `{plugin}`: {callback} returned false (the plugin rejected its configuration; its log says why)"
    )]
    Rejected {
        /// The plugin.
        plugin: String,
        /// The callback.
        callback: &'static str,
    },
    /// The VM failed earlier and must be recreated.
    #[error("plugin `{plugin}`: the VM failed earlier and is unusable")]
    Failed {
        /// The plugin.
        plugin: String,
    },
}

/// What the host functions of one store see.
pub(crate) struct HostState {
    pub(crate) plugin: Arc<Plugin>,
    pub(crate) memory: Option<Memory>,
    /// Behind an `Rc`: cloned on every hand-over of bytes to the guest.
    pub(crate) allocator: Option<Rc<TypedFunc<i32, i32>>>,
    /// The stream of the running callback, swapped in for its duration.
    pub(crate) stream: Box<dyn HttpStream>,
    /// Reused buffer for values copied out of the stream.
    pub(crate) scratch: Vec<u8>,
    pub(crate) created: Instant,
    pub(crate) shared: Arc<SharedState>,
    /// Set by `proxy_set_tick_period_milliseconds`; `None` when disabled.
    pub(crate) tick_period: Option<Duration>,
    /// True during `proxy_on_vm_start`.
    pub(crate) starting: bool,
    /// The context of the running callback (the root context outside
    /// stream callbacks), and the one `proxy_set_effective_context` chose.
    pub(crate) current_context: ContextId,
    pub(crate) effective_context: ContextId,
    /// Streams of paused contexts the embedder lent for root callbacks,
    /// and which of them is swapped into `stream` now.
    pub(crate) lent: Vec<(ContextId, Box<dyn HttpStream>)>,
    pub(crate) swapped: Option<Swapped>,
    /// Contexts whose `proxy_on_done` answered false, with what is left
    /// of their streams (the header maps), until the plugin calls
    /// `proxy_done` for them.
    pub(crate) deferred: Vec<(ContextId, Box<dyn HttpStream>)>,
    /// Deferred contexts the plugin called `proxy_done` for in the
    /// running callback: finished (`proxy_on_log`, `proxy_on_delete`)
    /// when it returns.
    pub(crate) done: Vec<ContextId>,
    /// What the plugin asked with `proxy_continue_stream` and
    /// `proxy_close_stream`, per context.
    pub(crate) stream_actions: Vec<(ContextId, StreamAction)>,
    /// Told about new items on the queues this VM registers.
    pub(crate) queue_notifier: Option<QueueNotifier>,
    /// Starts `proxy_http_call`s.
    pub(crate) http_caller: Option<HttpCaller>,
    /// Starts `proxy_grpc_call`s.
    pub(crate) grpc_caller: Option<GrpcCaller>,
    /// gRPC calls the plugin cancelled or closed: their outcome is not
    /// delivered.
    pub(crate) cancelled_grpc: Vec<u32>,
    /// gRPC calls made whose outcome has not been delivered (or
    /// cancelled) yet.
    pub(crate) grpc_pending: Vec<u32>,
    /// Opens `proxy_grpc_stream`s.
    pub(crate) grpc_streamer: Option<GrpcStreamer>,
    /// gRPC streams open, until their close is delivered or the plugin
    /// cancels them.
    pub(crate) grpc_streams: Vec<OpenGrpcStream>,
    /// The call-out answer the running callback reads.
    pub(crate) answer: Option<Answer>,
    /// What `proxy_get_status` answers while a call-out's outcome is
    /// delivered: the gRPC status and message, or the HTTP status.
    pub(crate) grpc_status: Option<(u32, Option<String>)>,
    /// Metrics this VM has used, by id, so updates take no lock.
    pub(crate) metrics: Vec<Option<Arc<Metric>>>,
    limits: StoreLimits,
}

impl HostState {
    /// The metric `id`, from this VM's cache or the shared registry.
    pub(crate) fn metric(&mut self, id: u32) -> Result<&Metric, crate::abi::Status> {
        let index = id as usize;
        if self.metrics.get(index).is_none_or(Option::is_none) {
            let metric = self.shared.metric(id)?;
            if self.metrics.len() <= index {
                self.metrics.resize(index + 1, None);
            }
            self.metrics[index] = Some(metric);
        }
        self.metrics[index]
            .as_deref()
            .ok_or(crate::abi::Status::NotFound)
    }
}

/// Every callback [`Vm`] calls (the ABI coverage document reads this).
pub(crate) const CALLBACKS_CALLED: &[&str] = &[
    "_initialize",
    "main",
    "_start",
    "proxy_on_memory_allocate",
    "malloc",
    "proxy_on_context_create",
    "proxy_on_vm_start",
    "proxy_on_configure",
    "proxy_on_tick",
    "proxy_on_queue_ready",
    "proxy_on_http_call_response",
    "proxy_on_grpc_receive_initial_metadata",
    "proxy_on_grpc_receive",
    "proxy_on_grpc_receive_trailing_metadata",
    "proxy_on_grpc_close",
    "proxy_on_foreign_function",
    "proxy_on_new_connection",
    "proxy_on_downstream_data",
    "proxy_on_upstream_data",
    "proxy_on_downstream_connection_close",
    "proxy_on_upstream_connection_close",
    "proxy_on_request_headers",
    "proxy_on_response_headers",
    "proxy_on_request_body",
    "proxy_on_response_body",
    "proxy_on_request_trailers",
    "proxy_on_response_trailers",
    "proxy_on_done",
    "proxy_on_log",
    "proxy_on_delete",
];

/// `proxy_on_http_call_response`'s arguments: context, token, header
/// count, body size, trailer count.
type CallResponseArgs = (i32, i32, i32, i32, i32);

/// Headers callbacks changed arity between ABI versions.
enum HeadersFn {
    /// 0.1.0: (context_id, num_headers).
    V1(TypedFunc<(i32, i32), i32>),
    /// 0.2.x: (context_id, num_headers, end_of_stream).
    V2(TypedFunc<(i32, i32, i32), i32>),
}

struct Exports {
    on_context_create: TypedFunc<(i32, i32), ()>,
    on_vm_start: Option<TypedFunc<(i32, i32), i32>>,
    on_configure: Option<TypedFunc<(i32, i32), i32>>,
    on_request_headers: Option<HeadersFn>,
    on_response_headers: Option<HeadersFn>,
    on_request_body: Option<TypedFunc<(i32, i32, i32), i32>>,
    on_response_body: Option<TypedFunc<(i32, i32, i32), i32>>,
    on_request_trailers: Option<TypedFunc<(i32, i32), i32>>,
    on_response_trailers: Option<TypedFunc<(i32, i32), i32>>,
    on_done: Option<TypedFunc<i32, i32>>,
    on_log: Option<TypedFunc<i32, ()>>,
    on_delete: Option<TypedFunc<i32, ()>>,
    on_tick: Option<TypedFunc<i32, ()>>,
    on_queue_ready: Option<TypedFunc<(i32, i32), ()>>,
    on_http_call_response: Option<TypedFunc<CallResponseArgs, ()>>,
    on_grpc_receive: Option<TypedFunc<(i32, i32, i32), ()>>,
    on_grpc_close: Option<TypedFunc<(i32, i32, i32), ()>>,
    on_grpc_initial_metadata: Option<GrpcCallback>,
    on_grpc_trailing_metadata: Option<GrpcCallback>,
    on_foreign_function: Option<GrpcCallback>,
    on_new_connection: Option<TypedFunc<i32, i32>>,
    on_downstream_data: Option<TypedFunc<(i32, i32, i32), i32>>,
    on_upstream_data: Option<TypedFunc<(i32, i32, i32), i32>>,
    on_downstream_close: Option<TypedFunc<(i32, i32), ()>>,
    on_upstream_close: Option<TypedFunc<(i32, i32), ()>>,
}

/// One instance of a plugin's module with its root context created, started
/// and configured. Belongs to one thread.
pub struct Vm {
    store: Store<HostState>,
    /// Behind an `Rc` so a callback can borrow its function while the VM
    /// is borrowed mutably, without cloning wasmtime handles per call.
    exports: Rc<Exports>,
    root_context: ContextId,
    next_context: ContextId,
    failed: bool,
    on_callback: Option<CallbackObserver>,
    /// Callbacks run, for sampling them.
    calls: u32,
}

impl Vm {
    /// Instantiates the plugin's module and brings its root context up:
    /// `_initialize`, `proxy_on_context_create(root)`, `proxy_on_vm_start`,
    /// `proxy_on_configure`. Any failure or refusal is an error.
    pub fn new(plugin: Arc<Plugin>) -> Result<Vm, VmError> {
        Vm::with_hooks(plugin, VmHooks::default())
    }

    /// [`Vm::new`], with the embedder's `hooks` (a plugin may use them
    /// while it starts).
    pub fn with_hooks(plugin: Arc<Plugin>, hooks: VmHooks) -> Result<Vm, VmError> {
        let module = plugin.module.inner.clone();
        let limits = StoreLimitsBuilder::new()
            .memory_size(plugin.limits.memory_bytes)
            .trap_on_grow_failure(true)
            .instances(1)
            .build();
        let name = plugin.name.clone();
        let start_deadline = plugin.limits.start_deadline;
        let on_callback = hooks.on_callback.clone();
        let mut store = Store::new(
            module.pre.module().engine(),
            HostState {
                plugin,
                memory: None,
                allocator: None,
                stream: Box::new(NoStream),
                scratch: Vec::new(),
                created: Instant::now(),
                shared: module.shared.clone(),
                tick_period: None,
                queue_notifier: hooks.queue_notifier,
                http_caller: hooks.http_caller,
                grpc_caller: hooks.grpc_caller,
                grpc_streamer: hooks.grpc_streamer,
                grpc_streams: Vec::new(),
                cancelled_grpc: Vec::new(),
                grpc_pending: Vec::new(),
                answer: None,
                grpc_status: None,
                starting: false,
                current_context: ROOT_CONTEXT,
                effective_context: ROOT_CONTEXT,
                lent: Vec::new(),
                swapped: None,
                deferred: Vec::new(),
                done: Vec::new(),
                stream_actions: Vec::new(),
                metrics: Vec::new(),
                limits,
            },
        );
        store.limiter(|state| &mut state.limits);
        store.set_epoch_deadline(ticks(start_deadline));

        let instantiate = |message: String| VmError::Instantiate {
            plugin: name.clone(),
            message,
        };
        let instance = module.pre.instantiate(&mut store).map_err(|e| {
            // Explained only when it failed: no work on a VM that starts.
            instantiate(
                memory_over_limit(module.pre.module(), &store.data().plugin)
                    .unwrap_or_else(|| format!("{e:#}")),
            )
        })?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| instantiate("no exported memory".into()))?;
        let allocator = instance
            .get_typed_func::<i32, i32>(&mut store, "proxy_on_memory_allocate")
            .or_else(|_| instance.get_typed_func::<i32, i32>(&mut store, "malloc"))
            .map_err(|_| {
                instantiate(
                    "exports neither proxy_on_memory_allocate nor malloc (i32) -> i32".into(),
                )
            })?;
        store.data_mut().memory = Some(memory);
        store.data_mut().allocator = Some(Rc::new(allocator));

        macro_rules! optional {
            ($name:literal) => {
                match instance.get_func(&mut store, $name) {
                    None => None,
                    Some(f) => Some(
                        f.typed(&store)
                            .map_err(|_| instantiate(wrong_signature($name, &f.ty(&store))))?,
                    ),
                }
            };
        }
        let headers =
            |store: &mut Store<HostState>, name: &str| -> Result<Option<HeadersFn>, VmError> {
                let Some(f) = instance.get_func(&mut *store, name) else {
                    return Ok(None);
                };
                if let Ok(f) = f.typed::<(i32, i32, i32), i32>(&*store) {
                    return Ok(Some(HeadersFn::V2(f)));
                }
                f.typed::<(i32, i32), i32>(&*store)
                    .map(|f| Some(HeadersFn::V1(f)))
                    .map_err(|_| instantiate(wrong_signature(name, &f.ty(&*store))))
            };
        let exports = Exports {
            on_context_create: instance
                .get_typed_func(&mut store, "proxy_on_context_create")
                .map_err(|e| instantiate(format!("export proxy_on_context_create: {e:#}")))?,
            on_vm_start: optional!("proxy_on_vm_start"),
            on_configure: optional!("proxy_on_configure"),
            on_request_headers: headers(&mut store, "proxy_on_request_headers")?,
            on_response_headers: headers(&mut store, "proxy_on_response_headers")?,
            on_request_body: optional!("proxy_on_request_body"),
            on_response_body: optional!("proxy_on_response_body"),
            on_request_trailers: optional!("proxy_on_request_trailers"),
            on_response_trailers: optional!("proxy_on_response_trailers"),
            on_done: optional!("proxy_on_done"),
            on_log: optional!("proxy_on_log"),
            on_delete: optional!("proxy_on_delete"),
            on_tick: optional!("proxy_on_tick"),
            on_queue_ready: optional!("proxy_on_queue_ready"),
            on_http_call_response: optional!("proxy_on_http_call_response"),
            on_grpc_receive: optional!("proxy_on_grpc_receive"),
            on_grpc_close: optional!("proxy_on_grpc_close"),
            on_grpc_initial_metadata: optional!("proxy_on_grpc_receive_initial_metadata"),
            on_grpc_trailing_metadata: optional!("proxy_on_grpc_receive_trailing_metadata"),
            on_foreign_function: optional!("proxy_on_foreign_function"),
            on_new_connection: optional!("proxy_on_new_connection"),
            on_downstream_data: optional!("proxy_on_downstream_data"),
            on_upstream_data: optional!("proxy_on_upstream_data"),
            on_downstream_close: optional!("proxy_on_downstream_connection_close"),
            on_upstream_close: optional!("proxy_on_upstream_connection_close"),
        };
        // The spec: `_initialize` then `main` when both are exported, else `_start`.
        let (initialize, main) = match instance.get_func(&mut store, "_initialize") {
            Some(f) => (Some(f), instance.get_func(&mut store, "main")),
            None => (instance.get_func(&mut store, "_start"), None),
        };

        let mut vm = Vm {
            store,
            exports: Rc::new(exports),
            root_context: ROOT_CONTEXT,
            next_context: 2,
            failed: false,
            on_callback,
            calls: 0,
        };
        if let Some(init) = initialize {
            let init = init
                .typed::<(), ()>(&vm.store)
                .map_err(|e| instantiate(format!("export _initialize: {e:#}")))?;
            vm.call("_initialize", start_deadline, |store| init.call(store, ()))?;
        }
        if let Some(main) = main {
            let main = main
                .typed::<(i32, i32), i32>(&vm.store)
                .map_err(|e| instantiate(format!("export main: {e:#}")))?;
            vm.call("main", start_deadline, |store| main.call(store, (0, 0)))?;
        }
        let root = vm.root_context as i32;
        let create = vm.exports.on_context_create.clone();
        vm.call("proxy_on_context_create", start_deadline, |store| {
            create.call(store, (root, 0))
        })?;
        for (callback, size, func) in [
            (
                "proxy_on_vm_start",
                vm.store.data().plugin.vm_configuration.len(),
                vm.exports.on_vm_start.clone(),
            ),
            (
                "proxy_on_configure",
                vm.store.data().plugin.configuration.len(),
                vm.exports.on_configure.clone(),
            ),
        ] {
            let Some(func) = func else { continue };
            // ABI 0.1.0's proxy_get_configuration answers with the VM
            // configuration while the VM starts, the plugin's after.
            vm.store.data_mut().starting = callback == "proxy_on_vm_start";
            let accepted = vm.call(callback, start_deadline, |store| {
                func.call(store, (root, size as i32))
            })?;
            vm.store.data_mut().starting = false;
            if accepted == 0 {
                return Err(VmError::Rejected {
                    plugin: vm.plugin_name().to_string(),
                    callback,
                });
            }
        }
        Ok(vm)
    }

    /// The plugin this VM runs.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.store.data().plugin
    }

    fn plugin_name(&self) -> &str {
        &self.store.data().plugin.name
    }

    /// The ABI version of the module.
    pub fn abi_version(&self) -> AbiVersion {
        self.store.data().plugin.module.abi_version()
    }

    /// True once a callback trapped or timed out: the VM must be replaced.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Bytes of linear memory the guest has.
    pub fn memory_bytes(&self) -> usize {
        self.store
            .data()
            .memory
            .map_or(0, |m| m.data_size(&self.store))
    }

    /// The timer period the plugin asked for with
    /// `proxy_set_tick_period_milliseconds`, if any. The embedder calls
    /// [`Vm::on_tick`] at that period.
    pub fn tick_period(&self) -> Option<Duration> {
        self.store
            .data()
            .tick_period
            .filter(|_| self.exports.on_tick.is_some())
    }

    /// `proxy_on_tick` on the root context.
    pub fn on_tick(&mut self) -> Result<(), VmError> {
        let exports = Rc::clone(&self.exports);
        let Some(tick) = &exports.on_tick else {
            return Ok(());
        };
        let root = self.root_context as i32;
        let deadline = self.store.data().plugin.limits.callback_deadline;
        self.call("proxy_on_tick", deadline, |store| tick.call(store, root))
    }

    /// `proxy_on_queue_ready` on the root context: an item arrived on a
    /// queue this VM registered.
    pub fn on_queue_ready(&mut self, queue_id: u32) -> Result<(), VmError> {
        let exports = Rc::clone(&self.exports);
        let Some(ready) = &exports.on_queue_ready else {
            return Ok(());
        };
        let root = self.root_context as i32;
        let deadline = self.store.data().plugin.limits.callback_deadline;
        self.call("proxy_on_queue_ready", deadline, |store| {
            ready.call(store, (root, queue_id as i32))
        })
    }

    /// `proxy_on_http_call_response` on the root context: the answer to
    /// the call `token`, or `None` when the call failed (no headers).
    pub fn on_http_call_response(
        &mut self,
        token: u32,
        response: Option<HttpCallResponse>,
    ) -> Result<(), VmError> {
        let exports = Rc::clone(&self.exports);
        let Some(callback) = &exports.on_http_call_response else {
            return Ok(());
        };
        let sizes = response.as_ref().map_or((0, 0, 0), |r| {
            (
                r.headers.len() as i32,
                r.body.len() as i32,
                r.trailers.len() as i32,
            )
        });
        // `proxy_get_status` answers the call's HTTP status meanwhile (0
        // for a call that failed).
        let status = response
            .as_ref()
            .and_then(|r| r.headers.iter().find(|(k, _)| k == b":status"))
            .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse::<u32>().ok())
            .unwrap_or(0);
        let answer = response.map(Answer::from);
        self.root_call(
            "proxy_on_http_call_response",
            answer,
            Some((status, None)),
            |store, root| callback.call(store, (root, token as i32, sizes.0, sizes.1, sizes.2)),
        )
    }

    /// Delivers the outcome of the unary gRPC call `token`:
    /// `proxy_on_grpc_receive_initial_metadata` when metadata came, then
    /// (as Envoy does) `proxy_on_grpc_receive` with the message when the
    /// status is OK, then `proxy_on_grpc_receive_trailing_metadata` when
    /// trailers came, then, when the status is not OK,
    /// `proxy_on_grpc_close` with it. Nothing for a call the plugin
    /// cancelled. The metadata maps and the message are readable
    /// throughout.
    pub fn on_grpc_call_response(
        &mut self,
        token: u32,
        response: GrpcCallResponse,
    ) -> Result<(), VmError> {
        let state = self.store.data_mut();
        state.grpc_pending.retain(|t| *t != token);
        let cancelled = &mut state.cancelled_grpc;
        if let Some(i) = cancelled.iter().position(|t| *t == token) {
            cancelled.swap_remove(i);
            return Ok(());
        }
        let exports = Rc::clone(&self.exports);
        let root = self.root_context as i32;
        let token = token as i32;
        let deadline = self.store.data().plugin.limits.callback_deadline;
        let (status, size) = (response.status, response.message.len() as i32);
        let initial = response.initial_metadata.len() as i32;
        let trailing = response.trailing_metadata.len() as i32;
        self.store.data_mut().grpc_status = Some((status, response.status_message.clone()));
        self.store.data_mut().answer = Some(Answer::from(response));
        let mut steps: Vec<(&'static str, &GrpcCallback, i32)> = Vec::new();
        if let (true, Some(f)) = (initial > 0, &exports.on_grpc_initial_metadata) {
            steps.push(("proxy_on_grpc_receive_initial_metadata", f, initial));
        }
        if let (0, Some(f)) = (status, &exports.on_grpc_receive) {
            steps.push(("proxy_on_grpc_receive", f, size));
        }
        if let (true, Some(f)) = (trailing > 0, &exports.on_grpc_trailing_metadata) {
            steps.push(("proxy_on_grpc_receive_trailing_metadata", f, trailing));
        }
        if let (true, Some(f)) = (status != 0, &exports.on_grpc_close) {
            steps.push(("proxy_on_grpc_close", f, status as i32));
        }
        let mut result = Ok(());
        for (name, f, arg) in steps {
            result = self.call(name, deadline, |store| f.call(store, (root, token, arg)));
            if result.is_err() {
                break;
            }
        }
        self.store.data_mut().answer = None;
        self.store.data_mut().grpc_status = None;
        result
    }

    /// Delivers what arrived on the gRPC stream `token` (opened with
    /// `proxy_grpc_stream`): the matching callback on the root context,
    /// with the metadata or message readable while it runs. A
    /// [`GrpcInbound::Close`] ends the stream (`proxy_get_status` gives its
    /// status and message). Events for a stream the plugin cancelled, or
    /// that already closed, are dropped.
    pub fn on_grpc_stream(&mut self, token: u32, event: GrpcInbound) -> Result<(), VmError> {
        let state = self.store.data_mut();
        let Some(index) = state.grpc_streams.iter().position(|s| s.token == token) else {
            return Ok(());
        };
        if matches!(event, GrpcInbound::Close { .. }) {
            state.grpc_streams.swap_remove(index);
        }
        let exports = Rc::clone(&self.exports);
        let (callback, func, arg, answer, status) = match event {
            GrpcInbound::InitialMetadata(pairs) => (
                "proxy_on_grpc_receive_initial_metadata",
                &exports.on_grpc_initial_metadata,
                pairs.len() as i32,
                Some(Answer::with_map(MapType::GrpcReceiveInitialMetadata, pairs)),
                None,
            ),
            GrpcInbound::Message(message) => (
                "proxy_on_grpc_receive",
                &exports.on_grpc_receive,
                message.len() as i32,
                Some(Answer::with_buffer(BufferType::GrpcReceiveBuffer, message)),
                None,
            ),
            GrpcInbound::TrailingMetadata(pairs) => (
                "proxy_on_grpc_receive_trailing_metadata",
                &exports.on_grpc_trailing_metadata,
                pairs.len() as i32,
                Some(Answer::with_map(
                    MapType::GrpcReceiveTrailingMetadata,
                    pairs,
                )),
                None,
            ),
            GrpcInbound::Close { status, message } => (
                "proxy_on_grpc_close",
                &exports.on_grpc_close,
                status as i32,
                None,
                Some((status, message)),
            ),
        };
        let Some(func) = func else {
            return Ok(());
        };
        self.root_call(callback, answer, status, |store, root| {
            func.call(store, (root, token as i32, arg))
        })
    }

    /// `proxy_on_foreign_function` on the root context: the embedder calls
    /// the plugin's foreign callback `function_id` with `arguments`
    /// (readable as the FOREIGN_FUNCTION_ARGUMENTS buffer meanwhile). A
    /// module without the callback ignores it.
    pub fn on_foreign_function(
        &mut self,
        function_id: u32,
        arguments: Vec<u8>,
    ) -> Result<(), VmError> {
        let exports = Rc::clone(&self.exports);
        let Some(func) = &exports.on_foreign_function else {
            return Ok(());
        };
        let size = arguments.len() as i32;
        let answer = Answer::with_buffer(BufferType::ForeignFunctionArguments, arguments);
        self.root_call(
            "proxy_on_foreign_function",
            Some(answer),
            None,
            |store, root| func.call(store, (root, function_id as i32, size)),
        )
    }

    /// Whether the module has a foreign callback (`proxy_on_foreign_function`).
    pub fn has_foreign_function_callback(&self) -> bool {
        self.exports.on_foreign_function.is_some()
    }

    /// Runs a root callback with `answer` readable and `status` answering
    /// `proxy_get_status`.
    fn root_call(
        &mut self,
        callback: &'static str,
        answer: Option<Answer>,
        status: Option<(u32, Option<String>)>,
        f: impl FnOnce(&mut Store<HostState>, i32) -> wasmtime::Result<()>,
    ) -> Result<(), VmError> {
        let root = self.root_context as i32;
        let deadline = self.store.data().plugin.limits.callback_deadline;
        self.store.data_mut().answer = answer;
        self.store.data_mut().grpc_status = status;
        let result = self.call(callback, deadline, |store| f(store, root));
        self.store.data_mut().answer = None;
        self.store.data_mut().grpc_status = None;
        result
    }

    /// Whether the module filters TCP connections (exports
    /// `proxy_on_new_connection` or a data callback).
    pub fn has_tcp_callbacks(&self) -> bool {
        let e = &self.exports;
        e.on_new_connection.is_some()
            || e.on_downstream_data.is_some()
            || e.on_upstream_data.is_some()
    }

    /// `proxy_on_new_connection` for the TCP stream context `context`,
    /// with what the plugin asked of its own connection
    /// (`proxy_close_stream`, `proxy_continue_stream`) meanwhile. A module
    /// without the callback continues.
    pub fn on_new_connection(
        &mut self,
        context: ContextId,
        stream: &mut Box<dyn HttpStream>,
    ) -> Result<(Action, Vec<StreamAction>), VmError> {
        let exports = Rc::clone(&self.exports);
        let Some(func) = &exports.on_new_connection else {
            return Ok((Action::Continue, Vec::new()));
        };
        let deadline = self.store.data().plugin.limits.callback_deadline;
        self.tcp_call(context, stream, |vm| {
            vm.call("proxy_on_new_connection", deadline, |store| {
                func.call(store, context as i32)
            })
            .map(Action::from_abi)
        })
    }

    /// `proxy_on_downstream_data` (`downstream`) or
    /// `proxy_on_upstream_data`: the data so far is the stream's
    /// DOWNSTREAM_DATA / UPSTREAM_DATA buffer, `size` bytes long. Returns
    /// the action and what the plugin asked of its connection. A module
    /// without the callback continues.
    pub fn on_tcp_data(
        &mut self,
        downstream: bool,
        context: ContextId,
        stream: &mut Box<dyn HttpStream>,
        size: usize,
        end_of_stream: bool,
    ) -> Result<(Action, Vec<StreamAction>), VmError> {
        let exports = Rc::clone(&self.exports);
        let (callback, func) = if downstream {
            ("proxy_on_downstream_data", &exports.on_downstream_data)
        } else {
            ("proxy_on_upstream_data", &exports.on_upstream_data)
        };
        let Some(func) = func else {
            return Ok((Action::Continue, Vec::new()));
        };
        let args = (context as i32, size as i32, end_of_stream as i32);
        let deadline = self.store.data().plugin.limits.callback_deadline;
        self.tcp_call(context, stream, |vm| {
            vm.call(callback, deadline, |store| func.call(store, args))
                .map(Action::from_abi)
        })
    }

    /// `proxy_on_downstream_connection_close` (`downstream`) or
    /// `proxy_on_upstream_connection_close`, with who closed it.
    pub fn on_connection_close(
        &mut self,
        downstream: bool,
        context: ContextId,
        stream: &mut Box<dyn HttpStream>,
        peer: PeerType,
    ) -> Result<Vec<StreamAction>, VmError> {
        let exports = Rc::clone(&self.exports);
        let (callback, func) = if downstream {
            (
                "proxy_on_downstream_connection_close",
                &exports.on_downstream_close,
            )
        } else {
            (
                "proxy_on_upstream_connection_close",
                &exports.on_upstream_close,
            )
        };
        let Some(func) = func else {
            return Ok(Vec::new());
        };
        let args = (context as i32, peer as i32);
        let deadline = self.store.data().plugin.limits.callback_deadline;
        self.tcp_call(context, stream, |vm| {
            vm.call(callback, deadline, |store| func.call(store, args))
        })
        .map(|((), actions)| actions)
    }

    /// Runs a TCP callback as `context`, returning what the plugin asked
    /// of that context's own connection during it.
    fn tcp_call<R>(
        &mut self,
        context: ContextId,
        stream: &mut Box<dyn HttpStream>,
        f: impl FnOnce(&mut Vm) -> Result<R, VmError>,
    ) -> Result<(R, Vec<StreamAction>), VmError> {
        let (result, actions) = self.in_context(context, stream, f);
        result.map(|r| (r, actions))
    }

    /// Creates a stream context (`proxy_on_context_create(id, root)`).
    pub fn create_stream_context(&mut self) -> Result<ContextId, VmError> {
        let id = self.next_context;
        self.next_context = self.next_context.wrapping_add(1).max(2);
        let exports = Rc::clone(&self.exports);
        let (root, create) = (self.root_context as i32, &exports.on_context_create);
        let deadline = self.store.data().plugin.limits.callback_deadline;
        self.call("proxy_on_context_create", deadline, |store| {
            create.call(store, (id as i32, root))
        })?;
        Ok(id)
    }

    /// `proxy_on_request_headers`. A module without the callback continues.
    pub fn on_request_headers(
        &mut self,
        context: ContextId,
        stream: &mut Box<dyn HttpStream>,
        num_headers: usize,
        end_of_stream: bool,
    ) -> Result<Action, VmError> {
        self.headers_callback(true, context, stream, num_headers, end_of_stream)
    }

    /// `proxy_on_response_headers`. A module without the callback continues.
    pub fn on_response_headers(
        &mut self,
        context: ContextId,
        stream: &mut Box<dyn HttpStream>,
        num_headers: usize,
        end_of_stream: bool,
    ) -> Result<Action, VmError> {
        self.headers_callback(false, context, stream, num_headers, end_of_stream)
    }

    fn headers_callback(
        &mut self,
        request: bool,
        context: ContextId,
        stream: &mut Box<dyn HttpStream>,
        num_headers: usize,
        end_of_stream: bool,
    ) -> Result<Action, VmError> {
        let exports = Rc::clone(&self.exports);
        let (callback, func) = if request {
            ("proxy_on_request_headers", &exports.on_request_headers)
        } else {
            ("proxy_on_response_headers", &exports.on_response_headers)
        };
        let Some(func) = func else {
            return Ok(Action::Continue);
        };
        let (ctx, n, eos) = (context as i32, num_headers as i32, end_of_stream as i32);
        let deadline = self.store.data().plugin.limits.callback_deadline;
        let action = self.with_stream(context, stream, |vm| {
            vm.call(callback, deadline, |store| match func {
                HeadersFn::V1(f) => f.call(store, (ctx, n)),
                HeadersFn::V2(f) => f.call(store, (ctx, n, eos)),
            })
        })?;
        Ok(Action::from_abi(action))
    }

    /// Whether the module has a body callback for requests (`true`) or
    /// responses (`false`); without one the embedder need not run body
    /// callbacks at all.
    pub fn has_body_callback(&self, request: bool) -> bool {
        if request {
            self.exports.on_request_body.is_some()
        } else {
            self.exports.on_response_body.is_some()
        }
    }

    /// `proxy_on_request_body` (`request`) or `proxy_on_response_body`:
    /// the body so far is the stream's buffer of that type, `body_size`
    /// bytes long. A module without the callback continues.
    pub fn on_body(
        &mut self,
        request: bool,
        context: ContextId,
        stream: &mut Box<dyn HttpStream>,
        body_size: usize,
        end_of_stream: bool,
    ) -> Result<Action, VmError> {
        let exports = Rc::clone(&self.exports);
        let (callback, func) = if request {
            ("proxy_on_request_body", &exports.on_request_body)
        } else {
            ("proxy_on_response_body", &exports.on_response_body)
        };
        let Some(func) = func else {
            return Ok(Action::Continue);
        };
        let args = (context as i32, body_size as i32, end_of_stream as i32);
        let deadline = self.store.data().plugin.limits.callback_deadline;
        let action = self.with_stream(context, stream, |vm| {
            vm.call(callback, deadline, |store| func.call(store, args))
        })?;
        Ok(Action::from_abi(action))
    }

    /// Whether the module has a trailers callback for requests (`true`) or
    /// responses.
    pub fn has_trailers_callback(&self, request: bool) -> bool {
        if request {
            self.exports.on_request_trailers.is_some()
        } else {
            self.exports.on_response_trailers.is_some()
        }
    }

    /// `proxy_on_request_trailers` (`request`) or
    /// `proxy_on_response_trailers`: the trailers are the stream's map of
    /// that type, `num_trailers` long. A module without the callback
    /// continues.
    pub fn on_trailers(
        &mut self,
        request: bool,
        context: ContextId,
        stream: &mut Box<dyn HttpStream>,
        num_trailers: usize,
    ) -> Result<Action, VmError> {
        let exports = Rc::clone(&self.exports);
        let (callback, func) = if request {
            ("proxy_on_request_trailers", &exports.on_request_trailers)
        } else {
            ("proxy_on_response_trailers", &exports.on_response_trailers)
        };
        let Some(func) = func else {
            return Ok(Action::Continue);
        };
        let args = (context as i32, num_trailers as i32);
        let deadline = self.store.data().plugin.limits.callback_deadline;
        let action = self.with_stream(context, stream, |vm| {
            vm.call(callback, deadline, |store| func.call(store, args))
        })?;
        Ok(Action::from_abi(action))
    }

    /// Ends a stream context: `proxy_on_done`, `proxy_on_log`, `proxy_on_delete`.
    pub fn finish_stream(
        &mut self,
        context: ContextId,
        stream: &mut Box<dyn HttpStream>,
    ) -> Result<(), VmError> {
        let ctx = context as i32;
        let deadline = self.store.data().plugin.limits.callback_deadline;
        let exports = Rc::clone(&self.exports);
        let done = &exports.on_done;
        let completed = self.with_stream(context, stream, |vm| match done {
            Some(done) => vm
                .call("proxy_on_done", deadline, |store| done.call(store, ctx))
                .map(|answer| answer != 0),
            None => Ok(true),
        })?;
        if completed {
            return self.log_and_delete(context, stream);
        }
        // The plugin finishes it later with proxy_done: the header maps
        // are kept for its proxy_on_log.
        let state = self.store.data_mut();
        state
            .deferred
            .push((context, Box::new(Answer::snapshot(stream.as_ref()))));
        if state.deferred.len() > MAX_DEFERRED {
            let (oldest, mut snapshot) = state.deferred.remove(0);
            tracing::warn!(
                plugin = %self.plugin_name(),
                context = oldest,
                "more than {MAX_DEFERRED} contexts wait for proxy_done; the oldest is finished now"
            );
            self.log_and_delete(oldest, &mut snapshot)?;
        }
        Ok(())
    }

    /// `proxy_on_log` then `proxy_on_delete` for `context`.
    fn log_and_delete(
        &mut self,
        context: ContextId,
        stream: &mut Box<dyn HttpStream>,
    ) -> Result<(), VmError> {
        let ctx = context as i32;
        let deadline = self.store.data().plugin.limits.callback_deadline;
        let exports = Rc::clone(&self.exports);
        let (log, delete) = (&exports.on_log, &exports.on_delete);
        self.with_stream(context, stream, |vm| {
            if let Some(log) = log {
                vm.call("proxy_on_log", deadline, |store| log.call(store, ctx))?;
            }
            if let Some(delete) = delete {
                vm.call("proxy_on_delete", deadline, |store| delete.call(store, ctx))?;
            }
            Ok(())
        })
    }

    /// Finishes the deferred contexts the plugin called `proxy_done` for.
    fn finish_done(&mut self) -> Result<(), VmError> {
        let done = std::mem::take(&mut self.store.data_mut().done);
        for context in done {
            let deferred = &mut self.store.data_mut().deferred;
            if let Some(index) = deferred.iter().position(|(c, _)| *c == context) {
                let (_, mut snapshot) = deferred.remove(index);
                self.log_and_delete(context, &mut snapshot)?;
            }
        }
        Ok(())
    }

    /// Runs `f` as stream context `context`, with `stream` visible to the
    /// host functions.
    fn with_stream<R>(
        &mut self,
        context: ContextId,
        stream: &mut Box<dyn HttpStream>,
        f: impl FnOnce(&mut Vm) -> R,
    ) -> R {
        // Resuming HTTP streams from their own callbacks is not supported
        // yet: only what root callbacks ask is acted on.
        self.in_context(context, stream, f).0
    }

    /// Runs `f` as stream context `context`, with `stream` visible to the
    /// host functions; also returns what the plugin asked of that
    /// context (`proxy_continue_stream`, `proxy_close_stream`) meanwhile.
    fn in_context<R>(
        &mut self,
        context: ContextId,
        stream: &mut Box<dyn HttpStream>,
        f: impl FnOnce(&mut Vm) -> R,
    ) -> (R, Vec<StreamAction>) {
        let state = self.store.data_mut();
        std::mem::swap(&mut state.stream, stream);
        state.current_context = context;
        let result = f(self);
        let state = self.store.data_mut();
        state.current_context = ROOT_CONTEXT;
        std::mem::swap(&mut state.stream, stream);
        // Usually none: a stream callback rarely continues or closes a stream.
        let actions = if state.stream_actions.is_empty() {
            Vec::new()
        } else {
            std::mem::take(&mut state.stream_actions)
                .into_iter()
                .filter(|(c, _)| *c == context)
                .map(|(_, action)| action)
                .collect()
        };
        (result, actions)
    }

    /// Lends the streams of paused contexts to the VM, so that a root
    /// callback (a timer, a queue) can reach them through
    /// `proxy_set_effective_context`. Take them back with
    /// [`Vm::take_lent_streams`] after the callback.
    pub fn lend_streams(&mut self, streams: Vec<(ContextId, Box<dyn HttpStream>)>) {
        self.store.data_mut().lent = streams;
    }

    /// The streams lent with [`Vm::lend_streams`], in the same order.
    pub fn take_lent_streams(&mut self) -> Vec<(ContextId, Box<dyn HttpStream>)> {
        std::mem::take(&mut self.store.data_mut().lent)
    }

    /// What the plugin asked of paused contexts (`proxy_continue_stream`,
    /// `proxy_close_stream`) since the last call.
    pub fn take_stream_actions(&mut self) -> Vec<(ContextId, StreamAction)> {
        std::mem::take(&mut self.store.data_mut().stream_actions)
    }

    /// Calls into the guest with a CPU deadline; a trap or timeout marks the
    /// VM failed.
    fn call<R>(
        &mut self,
        callback: &'static str,
        deadline: Duration,
        f: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, VmError> {
        if self.failed {
            return Err(VmError::Failed {
                plugin: self.plugin_name().to_string(),
            });
        }
        self.store.set_epoch_deadline(ticks(deadline));
        let state = self.store.data_mut();
        state.effective_context = state.current_context;
        self.calls = self.calls.wrapping_add(1);
        let result = match &self.on_callback {
            Some(observer) if self.calls.is_multiple_of(CALLBACK_SAMPLE) => {
                let started = Instant::now();
                let result = f(&mut self.store);
                observer(callback, started.elapsed());
                result
            }
            _ => f(&mut self.store),
        };
        restore_effective_stream(self.store.data_mut());
        if result.is_ok() && !self.store.data().done.is_empty() {
            self.finish_done()?;
        }
        result.map_err(|err| {
            self.failed = true;
            let plugin = self.plugin_name().to_string();
            let error = if err.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
                VmError::Timeout {
                    plugin,
                    callback,
                    deadline,
                }
            } else {
                VmError::Trap {
                    plugin,
                    callback,
                    // The chain of causes, wasm backtrace included; not
                    // `{:?}`, which would also resolve a native backtrace
                    // when RUST_BACKTRACE is set (slow, and useless here).
                    message: format!("{err:#}"),
                }
            };
            tracing::error!(target: "weft::filter", "{error}");
            error
        })
    }
}

/// Puts a lent stream that `proxy_set_effective_context` swapped in back
/// where it was lent.
pub(crate) fn restore_effective_stream(state: &mut HostState) {
    if let Some(swapped) = state.swapped.take() {
        state.exchange_stream(swapped);
    }
    state.effective_context = state.current_context;
}

impl HostState {
    /// Exchanges `stream` with a stream kept aside (one the embedder lent,
    /// or one waiting for `proxy_done`); false if there is no such one.
    pub(crate) fn exchange_stream(&mut self, which: Swapped) -> bool {
        let kept = match which {
            Swapped::Lent(index) => self.lent.get_mut(index),
            Swapped::Deferred(index) => self.deferred.get_mut(index),
        };
        match kept {
            Some((_, stream)) => {
                std::mem::swap(&mut self.stream, stream);
                true
            }
            None => false,
        }
    }
}

/// A gRPC callback: (plugin context, call, a count or status).
type GrpcCallback = TypedFunc<(i32, i32, i32), ()>;

/// Which stream `proxy_set_effective_context` swapped in.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Swapped {
    /// One the embedder lent, by index.
    Lent(usize),
    /// One waiting for `proxy_done`, by index.
    Deferred(usize),
}

/// The most contexts a VM keeps waiting for `proxy_done`.
const MAX_DEFERRED: usize = 1024;

/// Why the module's memory cannot start within the plugin's memory limit,
/// if it cannot: wasmtime only reports a failed grow.
fn memory_over_limit(module: &wasmtime::Module, plugin: &Plugin) -> Option<String> {
    let limit = plugin.limits.memory_bytes as u64;
    module.exports().find_map(|export| {
        let wasmtime::ExternType::Memory(memory) = export.ty() else {
            return None;
        };
        let start = memory.minimum().saturating_mul(memory.page_size());
        (start > limit).then(|| {
            format!(
                "its memory `{}` starts at {} pages ({} MiB), over the plugin's memory limit of {} MiB (limits.memory_mb)",
                export.name(),
                memory.minimum(),
                start >> 20,
                limit >> 20
            )
        })
    })
}

/// Why export `name` of type `ty` cannot be the ABI's callback: its type,
/// written as the ABI tables write them (`(i32,i32) -> i32`).
fn wrong_signature(name: &str, ty: &wasmtime::FuncType) -> String {
    let list = |types: &mut dyn Iterator<Item = wasmtime::ValType>| {
        types.map(|t| t.to_string()).collect::<Vec<_>>().join(",")
    };
    let params = list(&mut ty.params());
    let results = match list(&mut ty.results()) {
        results if results.is_empty() => "()".to_string(),
        results => results,
    };
    format!(
        "export {name} is ({params}) -> {results}, not the ABI's signature for it (docs/abi-coverage.md)"
    )
}

/// Epoch ticks for a deadline, rounded up, plus one because the current tick
/// may end at any moment. In 64-bit nanoseconds (saturating, some 584
/// years): this runs before every guest call, and `Duration::as_nanos`
/// would make it a 128-bit division.
fn ticks(deadline: Duration) -> u64 {
    const TICK_NANOS: u64 = EPOCH_TICK.as_nanos() as u64;
    let nanos = deadline
        .as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(deadline.subsec_nanos()));
    nanos.div_ceil(TICK_NANOS).max(1) + 1
}

/// A gRPC stream a plugin opened.
pub(crate) struct OpenGrpcStream {
    pub(crate) token: u32,
    pub(crate) sender: GrpcStreamSender,
    /// The plugin sent its last message (or closed it).
    pub(crate) local_closed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_is_rounded_up_to_whole_ticks_plus_the_current_one() {
        assert_eq!(ticks(Duration::ZERO), 2);
        assert_eq!(ticks(Duration::from_nanos(1)), 2);
        assert_eq!(ticks(EPOCH_TICK), 2);
        assert_eq!(ticks(EPOCH_TICK + Duration::from_nanos(1)), 3);
        assert_eq!(ticks(EPOCH_TICK * 20), 21);
        assert_eq!(ticks(EPOCH_TICK * 300 - Duration::from_nanos(1)), 301);
        // Saturates instead of wrapping.
        let tick = EPOCH_TICK.as_nanos() as u64;
        assert_eq!(ticks(Duration::MAX), u64::MAX.div_ceil(tick) + 1);
    }
}
