//! The filter chain: a worker's plugin VMs and how one stream runs through them.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use weft_abi::{
    Action, BufferType, ContextId, FailurePolicy, GrpcCallResponse, GrpcInbound, HttpCallResponse,
    HttpStream, LocalResponse, NoStream, PeerType, Plugin, StreamAction, Vm, VmError, VmHooks,
};

use crate::stream::{BodyBuffer, ProxyStream};
use crate::worker::Worker;

/// Counts of what happened to a plugin's VMs, over all workers; shown on
/// the admin `/metrics` endpoint.
pub(crate) struct PluginStats {
    /// How long each guest callback ran.
    pub(crate) callback_durations: crate::observe::Durations,
    /// Linear memory of the plugin's VMs, over all workers.
    pub(crate) memory_bytes: std::sync::atomic::AtomicI64,
    pub(crate) traps: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) vm_starts: AtomicU64,
    pub(crate) vm_start_failures: AtomicU64,
    /// The version new streams run: 0 as started, then one more per swap.
    pub(crate) version: AtomicU64,
    pub(crate) swaps: AtomicU64,
    pub(crate) swap_failures: AtomicU64,
    /// VMs of earlier versions still finishing streams, over all workers.
    pub(crate) retired_vms: std::sync::atomic::AtomicI64,
    info: std::sync::Mutex<crate::swap::VersionInfo>,
}

impl Default for PluginStats {
    fn default() -> Self {
        PluginStats {
            callback_durations: crate::observe::Durations::with_bounds(
                &crate::observe::CALLBACK_BOUNDS,
            ),
            memory_bytes: Default::default(),
            traps: Default::default(),
            timeouts: Default::default(),
            vm_starts: Default::default(),
            vm_start_failures: Default::default(),
            version: Default::default(),
            swaps: Default::default(),
            swap_failures: Default::default(),
            retired_vms: Default::default(),
            info: Default::default(),
        }
    }
}

impl PluginStats {
    /// What `/plugins` shows of the running version (not on the request
    /// path).
    pub(crate) fn info(&self) -> std::sync::MutexGuard<'_, crate::swap::VersionInfo> {
        self.info
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Makes the hooks of a plugin's VM number `generation` on a worker: its
/// queues' `on_queue_ready` and its call-outs' answers come back to that
/// VM, even after a newer one replaced it.
pub(crate) type HooksFor = Rc<dyn Fn(u64) -> VmHooks>;

/// A VM of an earlier version of the plugin, kept while streams that
/// started on it are in flight.
struct Retired {
    vm: Vm,
    generation: u64,
    /// Stream contexts still open on it.
    live: usize,
    /// Counted in `retired_vms` (a VM of an earlier version, not one of
    /// `isolation: request`'s own).
    counted: bool,
}

/// A plugin's VM on one worker, recreated with backoff after a failure and
/// replaced by a new version's VM on a swap (the old one finishes the
/// streams it started, then is dropped).
pub(crate) struct PluginSlot {
    /// The version new VMs are made from.
    plugin: Arc<Plugin>,
    /// Which version that is: 0 at start, then the swap's number.
    pub(crate) version: u64,
    stats: Arc<PluginStats>,
    hooks: HooksFor,
    vm: Option<Vm>,
    /// Bumped on every new VM, so that contexts of a VM that failed are
    /// never finished on its replacement.
    generation: u64,
    /// Stream contexts open on the current VM.
    live: usize,
    retired: Vec<Retired>,
    started: Option<Instant>,
    retry_at: Option<Instant>,
    backoff: Duration,
    /// Streams paused by this plugin, waiting for it to continue them.
    paused: Vec<Paused>,
    /// Out of service: no route runs it (see [`PluginSlot::unload`]).
    unloaded: bool,
    /// This slot's share of `stats.memory_bytes`.
    reported_memory: i64,
    /// `isolation: request`: every stream gets a fresh VM.
    pub(crate) per_request: bool,
    /// `body_during_pause: deliver`: the request body reaches the plugin
    /// while it keeps the request paused in its headers callback.
    pub(crate) deliver_body: bool,
}

/// A stream a plugin paused in a headers callback.
pub(crate) struct Paused {
    context: ContextId,
    generation: u64,
    filters: Weak<RefCell<StreamFilters>>,
    resume: Rc<Resume>,
}

/// How a paused stream learns what became of it.
#[derive(Default)]
pub(crate) struct Resume {
    notify: tokio::sync::Notify,
    outcome: Cell<Option<Outcome>>,
}

/// What became of a paused stream.
#[derive(Clone, Copy)]
enum Outcome {
    /// The plugin continued it (or answered it locally).
    Continue,
    /// The plugin closed it.
    Close,
    /// The plugin's VM failed.
    Failed,
}

impl Resume {
    fn wake(&self, outcome: Outcome) {
        self.outcome.set(Some(outcome));
        self.notify.notify_one();
    }
}

/// How long a plugin may keep a stream paused before the request fails.
pub(crate) const PAUSE_LIMIT: Duration = Duration::from_secs(30);

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A VM that ran this long before it failed is not in a crash loop: the
/// backoff starts afresh.
const HEALTHY_RUN: Duration = Duration::from_secs(30);

impl PluginSlot {
    pub(crate) fn new(plugin: Arc<Plugin>, stats: Arc<PluginStats>, hooks: HooksFor) -> PluginSlot {
        PluginSlot {
            plugin,
            version: 0,
            stats,
            hooks,
            vm: None,
            generation: 0,
            live: 0,
            retired: Vec::new(),
            started: None,
            retry_at: None,
            backoff: MIN_BACKOFF,
            unloaded: false,
            paused: Vec::new(),
            reported_memory: 0,
            per_request: false,
            deliver_body: false,
        }
    }

    /// The most data the plugin may hold back by pausing.
    pub(crate) fn buffer_limit(&self) -> usize {
        self.plugin.limits.body_buffer_bytes
    }

    pub(crate) fn name(&self) -> &str {
        &self.plugin.name
    }

    /// Brings the VM up ahead of the first request. A failure is logged and
    /// retried, with backoff, when requests arrive.
    pub(crate) fn warm(&mut self) {
        let _ = self.vm();
    }

    /// Makes `plugin` (version `version`) the one new streams run: its VM
    /// is started now; the current VM, if streams are still open on it,
    /// is kept until the last of them ends.
    pub(crate) fn swap(&mut self, plugin: Arc<Plugin>, version: u64) {
        self.retire_current();
        self.plugin = plugin;
        self.version = version;
        self.unloaded = false;
        self.retry_at = None;
        self.backoff = MIN_BACKOFF;
        self.warm();
    }

    /// Takes the plugin out of service (no route runs it any more): its VM
    /// is dropped once the streams in flight on it end, and no new one is
    /// started until a later version is swapped in.
    pub(crate) fn unload(&mut self, version: u64) {
        self.retire_current();
        // The retired VM keeps this generation; nothing current has it.
        self.generation += 1;
        self.version = version;
        self.unloaded = true;
        tracing::info!(plugin = %self.plugin.name, "plugin unloaded: no route runs it");
    }

    /// Sets the current VM aside while streams are open on it.
    fn retire_current(&mut self) {
        self.set_aside(true);
        self.report_memory();
    }

    /// Moves the current VM to `retired` while streams are open on it
    /// (`counted` in `retired_vms`: a VM of an earlier version); a failed
    /// one is dropped. True if it had failed.
    fn set_aside(&mut self, counted: bool) -> bool {
        let failed = self.vm.as_ref().is_some_and(Vm::is_failed);
        if let Some(vm) = self.vm.take()
            && self.live > 0
            && !failed
        {
            self.retired.push(Retired {
                vm,
                generation: self.generation,
                live: self.live,
                counted,
            });
            if counted {
                self.stats.retired_vms.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.live = 0;
        failed
    }

    /// `isolation: request`: the VM of the last stream is set aside (kept
    /// until that stream ends), so that the next [`PluginSlot::vm`] starts
    /// a fresh one for the new stream.
    fn fresh_vm(&mut self) {
        if self.set_aside(false) {
            self.wake_paused_of_failed();
        }
    }

    /// Brings the plugin's memory gauge up to date with this slot's VMs.
    fn report_memory(&mut self) {
        let retired = self.retired.iter().map(|r| &r.vm);
        let now: i64 = self
            .vm
            .iter()
            .chain(retired)
            .map(|vm| i64::try_from(vm.memory_bytes()).unwrap_or(i64::MAX))
            .sum();
        if now != self.reported_memory {
            self.stats
                .memory_bytes
                .fetch_add(now - self.reported_memory, Ordering::Relaxed);
            self.reported_memory = now;
        }
    }

    /// The working VM of `generation` (the current one or a retired one).
    fn vm_of(&mut self, generation: u64) -> Option<&mut Vm> {
        let vm = if generation == self.generation {
            self.vm.as_mut()
        } else {
            self.retired
                .iter_mut()
                .find(|r| r.generation == generation)
                .map(|r| &mut r.vm)
        };
        vm.filter(|vm| !vm.is_failed())
    }

    /// [`PluginSlot::vm_of`], to look at.
    fn vm_ref(&self, generation: u64) -> Option<&Vm> {
        let vm = if generation == self.generation {
            self.vm.as_ref()
        } else {
            self.retired
                .iter()
                .find(|r| r.generation == generation)
                .map(|r| &r.vm)
        };
        vm.filter(|vm| !vm.is_failed())
    }

    /// A stream context of VM `generation` is gone; a retired VM with none
    /// left is dropped.
    fn context_finished(&mut self, generation: u64) {
        if generation == self.generation {
            self.live = self.live.saturating_sub(1);
            self.report_memory();
            return;
        }
        if let Some(i) = self.retired.iter().position(|r| r.generation == generation) {
            let retired = &mut self.retired[i];
            retired.live = retired.live.saturating_sub(1);
            if retired.live == 0 {
                let retired = self.retired.swap_remove(i);
                if retired.counted {
                    self.stats.retired_vms.fetch_sub(1, Ordering::Relaxed);
                    tracing::debug!(plugin = %self.plugin.name, generation, "VM of an earlier version dropped");
                }
                self.report_memory();
            }
        }
    }

    /// The timer period the plugin's VM asked for, if it has a working VM
    /// (the shortest, while retired VMs finish their streams).
    pub(crate) fn tick_period(&self) -> Option<Duration> {
        self.vm
            .iter()
            .chain(self.retired.iter().map(|r| &r.vm))
            .filter(|vm| !vm.is_failed())
            .filter_map(Vm::tick_period)
            .min()
    }

    /// Delivers `proxy_on_tick` to the current VM and any retired ones; a
    /// failure is logged and the VM recreated on its next use.
    pub(crate) fn tick(&mut self) {
        let retired: Vec<u64> = self.retired.iter().map(|r| r.generation).collect();
        if self.vm().is_ok() {
            self.root_callback(self.generation, Vm::on_tick);
        }
        for generation in retired {
            self.root_callback(generation, Vm::on_tick);
        }
    }

    /// Runs a root callback on VM `generation` with the streams this plugin
    /// paused there lent to it (so that `proxy_set_effective_context`
    /// reaches them), then wakes the streams the plugin continued.
    fn root_callback(
        &mut self,
        generation: u64,
        callback: impl FnOnce(&mut Vm) -> Result<(), VmError>,
    ) {
        if self.vm_of(generation).is_none() {
            return;
        }
        let mut holders = Vec::new();
        let mut lent = Vec::new();
        for paused in self.paused.iter().filter(|p| p.generation == generation) {
            let Some(filters) = paused.filters.upgrade() else {
                continue;
            };
            let Ok(mut f) = filters.try_borrow_mut() else {
                continue;
            };
            lent.push((
                paused.context,
                std::mem::replace(&mut f.stream, Box::new(NoStream)),
            ));
            drop(f);
            holders.push(filters);
        }
        let Some(vm) = self.vm_of(generation) else {
            return;
        };
        vm.lend_streams(lent);
        let result = callback(vm);
        let back = vm.take_lent_streams();
        let mut decided: Vec<(ContextId, Outcome)> = vm
            .take_stream_actions()
            .into_iter()
            .map(|(context, action)| match action {
                StreamAction::Continue(_) => (context, Outcome::Continue),
                StreamAction::Close(_) => (context, Outcome::Close),
            })
            .collect();
        for ((context, mut stream), filters) in back.into_iter().zip(&holders) {
            // A stream the plugin answered locally goes on too: to its end.
            if crate::worker::proxy_stream(&mut stream).is_some_and(|s| s.local_response.is_some())
            {
                decided.push((context, Outcome::Continue));
            }
            filters.borrow_mut().stream = stream;
        }
        if let Err(err) = result {
            self.note_failure(generation, &err);
            return;
        }
        for (context, outcome) in decided {
            if let Some(index) = self
                .paused
                .iter()
                .position(|p| p.context == context && p.generation == generation)
            {
                self.paused.swap_remove(index).resume.wake(outcome);
            }
        }
    }

    /// Records a stream paused by this plugin; it waits on `resume`.
    /// Streams whose client went away meanwhile are forgotten here.
    pub(crate) fn park(
        &mut self,
        context: ContextId,
        generation: u64,
        filters: &SharedFilters,
        resume: Rc<Resume>,
    ) {
        self.paused.retain(|p| p.filters.strong_count() > 0);
        self.paused.push(Paused {
            context,
            generation,
            filters: Rc::downgrade(filters),
            resume,
        });
    }

    /// Forgets a paused stream (it gave up waiting).
    pub(crate) fn unpark(&mut self, context: ContextId, generation: u64) {
        self.paused
            .retain(|p| !(p.context == context && p.generation == generation));
    }

    /// Delivers the answer (or failure, `None`) of an HTTP call-out VM
    /// `generation` made.
    pub(crate) fn http_call_response(
        &mut self,
        generation: u64,
        token: u32,
        response: Option<HttpCallResponse>,
    ) {
        self.root_callback(generation, |vm| vm.on_http_call_response(token, response));
    }

    /// Delivers the outcome of a gRPC call VM `generation` made.
    pub(crate) fn grpc_call_response(
        &mut self,
        generation: u64,
        token: u32,
        response: GrpcCallResponse,
    ) {
        self.root_callback(generation, |vm| vm.on_grpc_call_response(token, response));
    }

    /// Delivers what arrived on a gRPC stream VM `generation` opened.
    pub(crate) fn grpc_stream_event(&mut self, generation: u64, token: u32, event: GrpcInbound) {
        self.root_callback(generation, |vm| vm.on_grpc_stream(token, event));
    }

    /// `proxy_on_foreign_function` on the current VM (started if it is
    /// not yet), as an operator asked through the admin endpoint.
    pub(crate) fn foreign_function(&mut self, function_id: u32, arguments: &[u8]) {
        if self.unloaded {
            return;
        }
        self.warm();
        let generation = self.generation;
        self.root_callback(generation, |vm| {
            vm.on_foreign_function(function_id, arguments.to_vec())
        });
    }

    /// Delivers `proxy_on_queue_ready` for a queue VM `generation`
    /// registered.
    pub(crate) fn queue_ready(&mut self, generation: u64, queue: u32) {
        self.root_callback(generation, |vm| vm.on_queue_ready(queue));
    }

    /// Handles a callback's failure on VM `generation`: counts it and, if
    /// the VM marked itself failed, drops it at once (the current one is
    /// replaced after the backoff).
    fn note_failure(&mut self, generation: u64, err: &VmError) {
        let failed = if generation == self.generation {
            self.vm.as_ref().is_some_and(Vm::is_failed)
        } else {
            self.retired
                .iter()
                .any(|r| r.generation == generation && r.vm.is_failed())
        };
        if !failed {
            return;
        }
        match err {
            VmError::Timeout { .. } => self.stats.timeouts.fetch_add(1, Ordering::Relaxed),
            _ => self.stats.traps.fetch_add(1, Ordering::Relaxed),
        };
        if generation == self.generation && self.per_request {
            // Only its own request is hurt; the next one starts afresh
            // (start failures still back off, in `vm`).
            self.drop_failed_vm();
            return;
        }
        if generation == self.generation {
            self.retire_failed_vm();
            return;
        }
        if let Some(i) = self.retired.iter().position(|r| r.generation == generation) {
            if self.retired.swap_remove(i).counted {
                self.stats.retired_vms.fetch_sub(1, Ordering::Relaxed);
            }
            self.report_memory();
        }
        self.paused.retain(|p| {
            if p.generation == generation {
                p.resume.wake(Outcome::Failed);
            }
            p.generation != generation
        });
    }

    /// Drops a failed VM and schedules its replacement. Streams it had
    /// paused learn that it failed.
    fn retire_failed_vm(&mut self) {
        self.drop_failed_vm();
        if self.started.is_some_and(|at| at.elapsed() >= HEALTHY_RUN) {
            self.backoff = MIN_BACKOFF;
        }
        self.schedule_retry();
    }

    /// Drops the current VM, which failed; streams paused on it fail too.
    fn drop_failed_vm(&mut self) {
        self.vm = None;
        self.live = 0;
        self.report_memory();
        self.wake_paused_of_failed();
    }

    /// Streams paused on the current VM, which failed, fail too.
    fn wake_paused_of_failed(&mut self) {
        let generation = self.generation;
        self.paused.retain(|p| {
            if p.generation == generation {
                p.resume.wake(Outcome::Failed);
            }
            p.generation != generation
        });
    }

    /// Schedules the next VM start after the current backoff, and doubles
    /// it: a plugin that fails again and again is retried less and less
    /// often, down to once every `MAX_BACKOFF`.
    fn schedule_retry(&mut self) {
        self.retry_at = Some(Instant::now() + self.backoff);
        if self.backoff == MAX_BACKOFF {
            tracing::warn!(
                plugin = %self.plugin.name,
                "plugin keeps failing: its VM is restarted every {MAX_BACKOFF:?} at most"
            );
        }
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// The working VM, creating one if there is none (or the last failed)
    /// and the backoff allows.
    fn vm(&mut self) -> Result<(&mut Vm, u64), VmError> {
        if self.vm.as_ref().is_some_and(Vm::is_failed) {
            self.retire_failed_vm();
        }
        if self.vm.is_none() {
            if self.unloaded || self.retry_at.is_some_and(|at| Instant::now() < at) {
                return Err(VmError::Failed {
                    plugin: self.plugin.name.clone(),
                });
            }
            match Vm::with_hooks(self.plugin.clone(), (self.hooks)(self.generation + 1)) {
                Ok(vm) => {
                    self.vm = Some(vm);
                    self.generation += 1;
                    self.live = 0;
                    self.started = Some(Instant::now());
                    self.retry_at = None;
                    self.stats.vm_starts.fetch_add(1, Ordering::Relaxed);
                    self.report_memory();
                    if self.per_request {
                        tracing::debug!(plugin = %self.plugin.name, generation = self.generation, "VM started for a stream");
                    } else {
                        tracing::info!(plugin = %self.plugin.name, generation = self.generation, "VM started");
                    }
                }
                Err(err) => {
                    self.stats.vm_start_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!("{err}; retrying in {:?}", self.backoff);
                    self.schedule_retry();
                    return Err(err);
                }
            }
        }
        match &mut self.vm {
            Some(vm) => Ok((vm, self.generation)),
            None => Err(VmError::Failed {
                plugin: self.plugin.name.clone(),
            }),
        }
    }
}

impl Drop for PluginSlot {
    fn drop(&mut self) {
        // The worker is gone: so are its VMs.
        self.stats
            .memory_bytes
            .fetch_sub(self.reported_memory, Ordering::Relaxed);
    }
}

/// A stream context: which plugin, which VM generation, which id.
#[derive(Clone, Copy)]
pub(crate) struct ActiveContext {
    plugin: usize,
    generation: u64,
    context: ContextId,
}

/// Why a phase stopped before the upstream (or the client) got the message.
pub(crate) enum Stop {
    /// A plugin answered with a local response.
    Local(LocalResponse),
    /// A fail-closed plugin failed.
    Failed { plugin: String },
    /// A plugin paused the stream; it may continue it later (`resume`),
    /// except from a trailers callback.
    Paused {
        plugin: String,
        resume: Option<Resumable>,
    },
    /// A plugin kept the stream paused longer than `PAUSE_LIMIT`.
    TimedOut { plugin: String },
    /// A plugin closed the stream (`proxy_close_stream`): the client's
    /// connection is closed without a response.
    Closed { plugin: String },
    /// A plugin held back more body than its `body_buffer_bytes` limit.
    TooLarge { plugin: String, limit: usize },
    /// The request body is longer than the listener allows.
    BodyTooLarge { limit: u64 },
    /// The client stopped sending the request body for longer than the
    /// route's idle timeout.
    BodyIdle { after: Duration },
}

impl Stop {
    /// What happened, for logs.
    pub(crate) fn describe(&self) -> String {
        match self {
            Stop::Local(local) => format!("a filter answered locally with status {}", local.status),
            Stop::Failed { plugin } => format!("filter `{plugin}` failed"),
            Stop::Paused { plugin, .. } => format!("filter `{plugin}` paused the stream"),
            Stop::Closed { plugin } => format!("filter `{plugin}` closed the stream"),
            Stop::TimedOut { plugin } => format!(
                "filter `{plugin}` paused the stream and did not continue it within {}s",
                PAUSE_LIMIT.as_secs()
            ),
            Stop::BodyIdle { after } => format!(
                "the client sent no part of the request body for {} ms (the route's idle_timeout_ms)",
                after.as_millis()
            ),
            Stop::BodyTooLarge { limit } => {
                format!("the request body is longer than the listener's limit of {limit} bytes")
            }
            Stop::TooLarge { plugin, limit } => {
                format!(
                    "filter `{plugin}` held back more than {} MiB of body",
                    limit >> 20
                )
            }
        }
    }
}

/// Where a paused headers phase picks up: the step after the plugin that
/// paused, once that plugin continues the stream.
#[derive(Clone, Copy)]
pub(crate) struct Resumable {
    pub(crate) step: usize,
    pub(crate) plugin: usize,
    pub(crate) context: ContextId,
    pub(crate) generation: u64,
}

/// Which callback a phase runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    RequestHeaders,
    ResponseHeaders,
    RequestBody,
    ResponseBody,
    RequestTrailers,
    ResponseTrailers,
}

impl Phase {
    /// Request phases run in chain order, response phases in reverse.
    fn is_request(self) -> bool {
        matches!(
            self,
            Phase::RequestHeaders | Phase::RequestBody | Phase::RequestTrailers
        )
    }
}

/// Body bytes a pausing plugin holds back, and which plugin holds them.
#[derive(Default)]
struct Held {
    plugin: Option<usize>,
    data: BodyBuffer,
}

impl Held {
    /// Puts what is held in front of `data`, and holds nothing.
    fn release_into(&mut self, data: &mut BodyBuffer) {
        self.plugin = None;
        let mut joined = std::mem::take(&mut self.data);
        joined.to_mut().extend_from_slice(data.as_slice());
        *data = joined;
    }
}

/// One stream's filter state: the stream the plugins see and their
/// contexts. The request handler and the body wrappers share it; when the
/// last of them lets go (the response is sent, or abandoned) the contexts
/// are finished: `on_done`, `on_log`, `on_delete`.
pub(crate) struct StreamFilters {
    worker: Rc<Worker>,
    chain: Arc<[usize]>,
    stream: Box<dyn HttpStream>,
    active: Vec<ActiveContext>,
    /// Held request body, held response body.
    held: [Held; 2],
    /// A request body read while a plugin kept the headers paused.
    held_request: Option<HeldRequest>,
}

/// A request body read while a plugin kept the request paused in its
/// headers callback (`body_during_pause: deliver`); it is in the stream,
/// for the body callbacks from context `start` on.
pub(crate) struct HeldRequest {
    pub(crate) start: usize,
    /// The whole body was read.
    pub(crate) ended: bool,
    /// Trailers that came after it.
    pub(crate) trailers: Option<http::HeaderMap>,
}

/// How the handler and body wrappers hold a stream's filters.
pub(crate) type SharedFilters = Rc<RefCell<StreamFilters>>;

impl StreamFilters {
    /// The worker the stream runs on.
    pub(crate) fn worker(&self) -> Rc<Worker> {
        self.worker.clone()
    }

    pub(crate) fn new(worker: Rc<Worker>, chain: Arc<[usize]>, stream: Box<ProxyStream>) -> Self {
        let active = Vec::with_capacity(chain.len());
        StreamFilters {
            worker,
            chain,
            stream,
            active,
            held: Default::default(),
            held_request: None,
        }
    }

    /// The stream as the data plane's own type.
    pub(crate) fn state(&mut self) -> Option<&mut ProxyStream> {
        crate::worker::proxy_stream(&mut self.stream)
    }

    /// Whether a plugin of this stream has body callbacks for requests
    /// (`true`) or responses; without one, bodies pass untouched.
    pub(crate) fn has_body_callbacks(&self, request: bool) -> bool {
        self.active.iter().any(|ctx| {
            let slot = self.worker.slot(ctx.plugin);
            let slot = slot.borrow();
            slot.vm_ref(ctx.generation)
                .is_some_and(|vm| vm.has_body_callback(request))
        })
    }

    /// Runs a headers phase: the request phase in chain order (creating
    /// each plugin's stream context first), the response phase in reverse
    /// over the contexts that exist.
    pub(crate) fn run_headers(
        &mut self,
        phase: Phase,
        start: usize,
        end_of_stream: bool,
    ) -> Result<(), Stop> {
        let header_count = match (phase, self.state()) {
            (Phase::RequestHeaders, Some(state)) => state.request_header_count(),
            (_, Some(state)) => state.response_header_count(),
            (_, None) => 0,
        };
        // Indices rather than an iterator: `active` changes as plugins run (a
        // failed plugin's context is dropped). Walking it backwards stays valid
        // because only the current entry can be removed.
        let steps = match phase {
            Phase::RequestHeaders => self.chain.len(),
            _ => self.active.len(),
        };
        for step in start..steps {
            let plugin = match phase {
                Phase::RequestHeaders => self.chain.get(step).copied(),
                _ => self.active.get(steps - 1 - step).map(|c| c.plugin),
            };
            let Some(plugin) = plugin else { continue };
            let outcome = {
                let slot = self.worker.slot(plugin);
                let mut slot = slot.borrow_mut();
                call(
                    &mut slot,
                    plugin,
                    &mut self.active,
                    &mut self.stream,
                    phase,
                    header_count,
                    end_of_stream,
                )
            };
            match self.outcome(plugin, outcome)? {
                Action::Continue => {}
                Action::Pause => {
                    let resume =
                        self.active
                            .iter()
                            .find(|c| c.plugin == plugin)
                            .map(|c| Resumable {
                                step,
                                plugin,
                                context: c.context,
                                generation: c.generation,
                            });
                    return Err(Stop::Paused {
                        plugin: self.worker.slot(plugin).borrow().name().to_string(),
                        resume,
                    });
                }
            }
        }
        Ok(())
    }

    /// Runs the body callbacks on one chunk and returns what to send on
    /// (possibly nothing, while a plugin holds the body back).
    ///
    /// A plugin that answers PAUSE before the end of the body holds what it
    /// has seen: later chunks pass the plugins before it, join what it
    /// holds, and it is called again with all of it, until it continues.
    /// One that pauses at the end of the body keeps the whole body in the
    /// stream (its timer, queue and call-out callbacks may read and change
    /// it) and the stream waits until it continues: `Stop::Paused` with a
    /// [`Resumable`], then [`StreamFilters::resume_body`].
    pub(crate) fn run_body(
        &mut self,
        request: bool,
        chunk: Bytes,
        end_of_stream: bool,
    ) -> Result<Bytes, Stop> {
        self.run_body_from(request, BodyBuffer::received(chunk), end_of_stream, 0)
    }

    /// Goes on after the plugin at `step` of the body callbacks, which
    /// paused at the end of the body, continued: the body as it left it
    /// passes the plugins after it.
    pub(crate) fn resume_body(
        &mut self,
        request: bool,
        resumed: crate::body::Resumed,
    ) -> Result<Bytes, Stop> {
        let data = self
            .state()
            .map(|s| std::mem::take(s.body_mut(request)))
            .unwrap_or_default();
        self.run_body_from(request, data, resumed.ended, resumed.start)
    }

    /// `body_during_pause: deliver`: a piece of the request body read
    /// while `plugin` keeps the request paused in its headers callback.
    /// The plugin is given the whole body so far (it stays in the stream);
    /// CONTINUE from it continues the request.
    fn deliver_paused_body(
        &mut self,
        plugin: usize,
        data: &[u8],
        end_of_stream: bool,
    ) -> Result<Action, Stop> {
        let Some(state) = self.state() else {
            return Ok(Action::Pause);
        };
        let body = state.body_mut(true);
        body.to_mut().extend_from_slice(data);
        let size = body.len();
        let slot = self.worker.slot(plugin);
        let limit = slot.borrow().buffer_limit();
        if size > limit {
            let plugin = slot.borrow().name().to_string();
            return Err(Stop::TooLarge { plugin, limit });
        }
        let outcome = call(
            &mut slot.borrow_mut(),
            plugin,
            &mut self.active,
            &mut self.stream,
            Phase::RequestBody,
            size,
            end_of_stream,
        );
        self.outcome(plugin, outcome)
    }

    /// Keeps the request body read while `plugin` paused the headers for
    /// the body callbacks of the plugins after it.
    fn hold_request(&mut self, plugin: usize, ended: bool, trailers: Option<http::HeaderMap>) {
        // Contexts are in chain order and none after `plugin` exists yet;
        // if it failed and left, every context there is was before it.
        let start = self
            .active
            .iter()
            .position(|c| c.plugin == plugin)
            .map_or(self.active.len(), |p| p + 1);
        self.held_request = Some(HeldRequest {
            start,
            ended,
            trailers,
        });
    }

    /// Whether a request body read during a pause waits in the stream.
    pub(crate) fn has_held_request(&self) -> bool {
        self.held_request.is_some()
    }

    /// The request body [`StreamFilters::hold_request`] kept, if any.
    pub(crate) fn take_held_request(&mut self) -> Option<HeldRequest> {
        self.held_request.take()
    }

    fn run_body_from(
        &mut self,
        request: bool,
        mut data: BodyBuffer,
        end_of_stream: bool,
        start: usize,
    ) -> Result<Bytes, Stop> {
        let phase = if request {
            Phase::RequestBody
        } else {
            Phase::ResponseBody
        };
        let side = usize::from(!request);
        // A copy: a failing plugin leaves `active` while this runs.
        let mut contexts = self.active.clone();
        if !request {
            contexts.reverse();
        }
        // A holder that has since failed (and left `active`) lets go of
        // what it held: the bytes go on with this chunk.
        let held = &mut self.held[side];
        if held
            .plugin
            .is_some_and(|plugin| !contexts.iter().any(|c| c.plugin == plugin))
        {
            held.release_into(&mut data);
        }
        for (step, ctx) in contexts.into_iter().enumerate().skip(start) {
            let held = &mut self.held[side];
            if held.plugin == Some(ctx.plugin) {
                held.release_into(&mut data);
            }
            let Some(state) = self.state() else { break };
            *state.body_mut(request) = data;
            let size = state.body_mut(request).len();
            let outcome = {
                let slot = self.worker.slot(ctx.plugin);
                let mut slot = slot.borrow_mut();
                call(
                    &mut slot,
                    ctx.plugin,
                    &mut self.active,
                    &mut self.stream,
                    phase,
                    size,
                    end_of_stream,
                )
            };
            data = self
                .state()
                .map(|s| std::mem::take(s.body_mut(request)))
                .unwrap_or_default();
            match self.outcome(ctx.plugin, outcome)? {
                Action::Continue => {}
                Action::Pause => {
                    let plugin = self.worker.slot(ctx.plugin).borrow().name().to_string();
                    if end_of_stream {
                        // The body waits in the stream for the plugin.
                        if let Some(state) = self.state() {
                            *state.body_mut(request) = data;
                        }
                        return Err(Stop::Paused {
                            plugin,
                            resume: Some(Resumable {
                                step,
                                plugin: ctx.plugin,
                                context: ctx.context,
                                generation: ctx.generation,
                            }),
                        });
                    }
                    let limit = self
                        .worker
                        .slot(ctx.plugin)
                        .borrow()
                        .plugin
                        .limits
                        .body_buffer_bytes;
                    if data.len() > limit {
                        return Err(Stop::TooLarge { plugin, limit });
                    }
                    let held = &mut self.held[side];
                    held.plugin = Some(ctx.plugin);
                    held.data = data;
                    return Ok(Bytes::new());
                }
            }
        }
        Ok(data.freeze())
    }

    /// Runs the trailers callbacks (request: chain order; response:
    /// reverse) on `trailers`, and returns them as the plugins left them.
    /// A plugin that pauses here cannot be resumed in this build.
    pub(crate) fn run_trailers(
        &mut self,
        request: bool,
        trailers: http::HeaderMap,
    ) -> Result<http::HeaderMap, Stop> {
        let phase = if request {
            Phase::RequestTrailers
        } else {
            Phase::ResponseTrailers
        };
        let Some(state) = self.state() else {
            return Ok(trailers);
        };
        *state.trailers_mut(request) = Some(Box::new(trailers));
        let mut contexts = self.active.clone();
        if !request {
            contexts.reverse();
        }
        for ctx in contexts {
            let size = self
                .state()
                .and_then(|s| s.trailers_mut(request).as_deref().map(http::HeaderMap::len))
                .unwrap_or(0);
            let outcome = {
                let slot = self.worker.slot(ctx.plugin);
                let mut slot = slot.borrow_mut();
                call(
                    &mut slot,
                    ctx.plugin,
                    &mut self.active,
                    &mut self.stream,
                    phase,
                    size,
                    true,
                )
            };
            if let Action::Pause = self.outcome(ctx.plugin, outcome)? {
                return Err(Stop::Paused {
                    plugin: self.worker.slot(ctx.plugin).borrow().name().to_string(),
                    resume: None,
                });
            }
        }
        // The filters keep seeing the trailers until on_log.
        Ok(self
            .state()
            .and_then(|s| s.trailers_mut(request).as_deref().cloned())
            .unwrap_or_default())
    }

    /// Whether a plugin of this stream has trailers callbacks for requests
    /// (`true`) or responses.
    pub(crate) fn has_trailers_callbacks(&self, request: bool) -> bool {
        self.active.iter().any(|ctx| {
            let slot = self.worker.slot(ctx.plugin);
            let slot = slot.borrow();
            slot.vm_ref(ctx.generation)
                .is_some_and(|vm| vm.has_trailers_callback(request))
        })
    }

    /// What a callback's outcome means for the stream: a local response
    /// wins over whatever the callback returned (filters usually send one
    /// and then pause); a failure is handled by the plugin's policy.
    fn outcome(&mut self, plugin: usize, outcome: Result<Action, VmError>) -> Result<Action, Stop> {
        if let Some(local) = self.state().and_then(|s| s.local_response.take()) {
            return Err(Stop::Local(*local));
        }
        let err = match outcome {
            Ok(action) => return Ok(action),
            Err(err) => err,
        };
        let slot = self.worker.slot(plugin);
        let mut slot = slot.borrow_mut();
        if let Some(ctx) = self.active.iter().find(|a| a.plugin == plugin) {
            let generation = ctx.generation;
            slot.note_failure(generation, &err);
            slot.context_finished(generation);
        }
        self.active.retain(|a| a.plugin != plugin);
        match slot.plugin.failure_policy {
            FailurePolicy::FailOpen => {
                tracing::warn!("{err}; plugin is fail-open, so the request goes on without it");
                Ok(Action::Continue)
            }
            FailurePolicy::FailClosed => {
                tracing::warn!("{err}; plugin is fail-closed, so the request is refused");
                Err(Stop::Failed {
                    plugin: slot.name().to_string(),
                })
            }
        }
    }
}

/// Runs a headers phase to its end, waiting wherever a plugin pauses
/// until it continues the stream (from a timer or queue callback), fails,
/// or `PAUSE_LIMIT` passes.
///
/// For the request headers, `body` is the request body: a plugin with
/// `body_during_pause: deliver` that pauses is given it as it arrives.
pub(crate) async fn run_headers_phase(
    worker: &Worker,
    filters: &SharedFilters,
    phase: Phase,
    end_of_stream: bool,
    mut body: Option<&mut crate::body::Source>,
) -> Result<(), Stop> {
    let mut start = 0;
    loop {
        // A plugin may have answered locally while the stream waited.
        let local = filters
            .borrow_mut()
            .state()
            .and_then(|s| s.local_response.take());
        if let Some(local) = local {
            return Err(Stop::Local(*local));
        }
        let outcome = filters
            .borrow_mut()
            .run_headers(phase, start, end_of_stream);
        let (plugin, resume) = match outcome {
            Err(Stop::Paused {
                plugin,
                resume: Some(resume),
            }) => (plugin, resume),
            other => return other,
        };
        let deliver = {
            let slot = worker.slot(resume.plugin);
            let slot = slot.borrow();
            slot.deliver_body
                && slot
                    .vm_ref(resume.generation)
                    .is_some_and(|vm| vm.has_body_callback(true))
        };
        match body.as_deref_mut() {
            Some(source) if deliver && phase == Phase::RequestHeaders => {
                deliver_while_paused(worker, filters, plugin, resume, source).await?;
            }
            _ => wait_for_plugin(worker, filters, plugin, resume).await?,
        }
        start = resume.step + 1;
    }
}

/// Waits for the plugin that paused the request headers while giving it
/// the request body as it arrives (`body_during_pause: deliver`); what was
/// read stays in the stream for the plugins after it.
async fn deliver_while_paused(
    worker: &Worker,
    filters: &SharedFilters,
    plugin: String,
    resume: Resumable,
    source: &mut crate::body::Source,
) -> Result<(), Stop> {
    use http_body_util::BodyExt;
    let mut ended = http_body::Body::is_end_stream(source);
    let mut trailers = None;
    loop {
        let next = async {
            if ended {
                std::future::pending().await
            } else {
                source.frame().await
            }
        };
        let frame = match wait_for_plugin_or(worker, filters, plugin.clone(), resume, next).await {
            Ok(waited) => {
                waited?;
                break;
            }
            Err(frame) => frame,
        };
        let data = match frame {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    ended = http_body::Body::is_end_stream(source);
                    data
                }
                Err(frame) => {
                    trailers = frame.into_trailers().ok();
                    ended = true;
                    Bytes::new()
                }
            },
            None => {
                ended = true;
                Bytes::new()
            }
            Some(Err(err)) => {
                return Err(match err {
                    crate::body::BodyError::TooLarge { limit } => Stop::BodyTooLarge { limit },
                    crate::body::BodyError::Idle { after } => Stop::BodyIdle { after },
                    _ => Stop::Closed { plugin },
                });
            }
        };
        let action = filters
            .borrow_mut()
            .deliver_paused_body(resume.plugin, &data, ended)?;
        if action == Action::Continue {
            break;
        }
    }
    filters
        .borrow_mut()
        .hold_request(resume.plugin, ended, trailers);
    Ok(())
}

/// Waits, at most `PAUSE_LIMIT`, for the plugin that paused the stream to
/// continue it from a timer, queue or call-out callback.
pub(crate) async fn wait_for_plugin(
    worker: &Worker,
    filters: &SharedFilters,
    plugin: String,
    resume: Resumable,
) -> Result<(), Stop> {
    let never = std::future::pending::<std::convert::Infallible>();
    match wait_for_plugin_or(worker, filters, plugin, resume, never).await {
        Ok(waited) => waited,
        Err(never) => match never {},
    }
}

/// Waits until `plugin`, which paused at the end of the request
/// (`request`) or response body, continues it, then runs the body
/// callbacks of the plugins after it: what to send on.
pub(crate) async fn continue_body(
    worker: Rc<Worker>,
    filters: SharedFilters,
    request: bool,
    plugin: String,
    resume: Resumable,
) -> Result<Bytes, Stop> {
    wait_for_plugin(&worker, &filters, plugin, resume).await?;
    let resumed = crate::body::Resumed {
        start: resume.step + 1,
        ended: true,
    };
    filters.borrow_mut().resume_body(request, resumed)
}

/// [`wait_for_plugin`], unless `other` is ready first: then the stream
/// is no longer waited for and `other`'s output is the `Err`.
pub(crate) async fn wait_for_plugin_or<T>(
    worker: &Worker,
    filters: &SharedFilters,
    plugin: String,
    resume: Resumable,
    other: impl Future<Output = T>,
) -> Result<Result<(), Stop>, T> {
    let waiting = Rc::new(Resume::default());
    worker.slot(resume.plugin).borrow_mut().park(
        resume.context,
        resume.generation,
        filters,
        waiting.clone(),
    );
    let unpark = || {
        worker
            .slot(resume.plugin)
            .borrow_mut()
            .unpark(resume.context, resume.generation);
    };
    tokio::select! {
        waited = tokio::time::timeout(PAUSE_LIMIT, waiting.notify.notified()) => {
            Ok(match (waited, waiting.outcome.get()) {
                (Ok(()), Some(Outcome::Continue)) => Ok(()),
                (Ok(()), Some(Outcome::Close)) => Err(Stop::Closed { plugin }),
                (Ok(()), _) => Err(Stop::Failed { plugin }),
                (Err(_), _) => {
                    unpark();
                    Err(Stop::TimedOut { plugin })
                }
            })
        }
        out = other => {
            unpark();
            Err(out)
        }
    }
}

impl Drop for StreamFilters {
    fn drop(&mut self) {
        for ctx in &self.active {
            let slot = self.worker.slot(ctx.plugin);
            let mut slot = slot.borrow_mut();
            if let Some(vm) = slot.vm_of(ctx.generation)
                && let Err(err) = vm.finish_stream(ctx.context, &mut self.stream)
            {
                slot.note_failure(ctx.generation, &err);
            }
            slot.context_finished(ctx.generation);
        }
        if let Some(state) = crate::worker::proxy_stream(&mut self.stream)
            && let Some(listener) = &state.listener
        {
            listener.stats.record(state.status, state.elapsed());
            if let Some(log) = self.worker.access_log(listener.index) {
                log.write(state, &listener.name);
            }
        }
    }
}

fn call(
    slot: &mut PluginSlot,
    plugin: usize,
    active: &mut Vec<ActiveContext>,
    stream: &mut Box<dyn HttpStream>,
    phase: Phase,
    size: usize,
    end_of_stream: bool,
) -> Result<Action, VmError> {
    if phase == Phase::RequestHeaders {
        if slot.per_request {
            slot.fresh_vm();
        }
        let (vm, generation) = slot.vm()?;
        let context = vm.create_stream_context()?;
        active.push(ActiveContext {
            plugin,
            generation,
            context,
        });
        let action = vm.on_request_headers(context, stream, size, end_of_stream);
        slot.live += 1;
        return action;
    }
    let Some((vm, context)) = context_vm(slot, active, plugin)? else {
        return Ok(Action::Continue);
    };
    match phase {
        Phase::ResponseHeaders => vm.on_response_headers(context, stream, size, end_of_stream),
        Phase::RequestTrailers | Phase::ResponseTrailers => {
            vm.on_trailers(phase.is_request(), context, stream, size)
        }
        _ => vm.on_body(phase.is_request(), context, stream, size, end_of_stream),
    }
}

/// Which TCP callback [`StreamFilters::run_tcp`] runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum TcpEvent {
    /// `proxy_on_new_connection`, creating each plugin's context first.
    NewConnection,
    /// `proxy_on_downstream_data` (in chain order) or
    /// `proxy_on_upstream_data` (in reverse) over the stream's buffer.
    Data {
        downstream: bool,
        end_of_stream: bool,
    },
}

impl StreamFilters {
    /// A TCP connection's filters: `stream` holds its data buffers and
    /// properties.
    pub(crate) fn tcp(
        worker: Rc<Worker>,
        chain: Arc<[usize]>,
        stream: Box<dyn HttpStream>,
    ) -> Self {
        StreamFilters {
            worker,
            active: Vec::with_capacity(chain.len()),
            chain,
            stream,
            held: Default::default(),
            held_request: None,
        }
    }

    /// The stream as the embedder's own type `T`.
    pub(crate) fn stream_as<T: 'static>(&mut self) -> Option<&mut T> {
        let any: &mut dyn std::any::Any = self.stream.as_mut();
        any.downcast_mut::<T>()
    }

    /// Runs a TCP callback from chain step `start` on. A plugin that
    /// pauses stops it ([`Stop::Paused`], resumable from the step after
    /// it); one that closes its connection (`proxy_close_stream`) stops it
    /// with [`Stop::Closed`]; a failure is handled by the plugin's policy.
    pub(crate) fn run_tcp(&mut self, event: TcpEvent, start: usize) -> Result<(), Stop> {
        let steps = self.chain.len();
        for step in start..steps {
            let plugin = match event {
                TcpEvent::Data {
                    downstream: false, ..
                } => self.chain[steps - 1 - step],
                _ => self.chain[step],
            };
            let outcome = {
                let slot = self.worker.slot(plugin);
                let mut slot = slot.borrow_mut();
                tcp_call(&mut slot, plugin, &mut self.active, &mut self.stream, event)
            };
            let (action, closed) = match outcome {
                Ok((action, asked)) => {
                    let closed = asked.iter().any(|a| matches!(a, StreamAction::Close(_)));
                    (Ok(action), closed)
                }
                Err(err) => (Err(err), false),
            };
            let worker = self.worker.clone();
            let name = || worker.slot(plugin).borrow().name().to_string();
            if closed {
                return Err(Stop::Closed { plugin: name() });
            }
            if self.outcome(plugin, action)? == Action::Pause {
                let resume = self
                    .active
                    .iter()
                    .find(|c| c.plugin == plugin)
                    .map(|c| Resumable {
                        step,
                        plugin,
                        context: c.context,
                        generation: c.generation,
                    });
                return Err(Stop::Paused {
                    plugin: name(),
                    resume,
                });
            }
        }
        Ok(())
    }

    /// `proxy_on_downstream_connection_close` (`downstream`) or
    /// `proxy_on_upstream_connection_close` for every plugin.
    pub(crate) fn tcp_closed(&mut self, downstream: bool, peer: PeerType) {
        for ctx in &self.active {
            let slot = self.worker.slot(ctx.plugin);
            let mut slot = slot.borrow_mut();
            if let Some(vm) = slot.vm_of(ctx.generation)
                && let Err(err) =
                    vm.on_connection_close(downstream, ctx.context, &mut self.stream, peer)
            {
                slot.note_failure(ctx.generation, &err);
            }
        }
    }
}

/// The VM and context of `plugin`'s stream context: `None` if it has
/// none (it failed fail-open earlier). The VM is the one the stream
/// started on: the current one, or one of an earlier version finishing
/// its streams; if that one failed (and was replaced), the error lets the
/// plugin's failure policy decide.
fn context_vm<'a>(
    slot: &'a mut PluginSlot,
    active: &[ActiveContext],
    plugin: usize,
) -> Result<Option<(&'a mut Vm, ContextId)>, VmError> {
    let Some(ctx) = active.iter().find(|a| a.plugin == plugin) else {
        return Ok(None);
    };
    // Looked at first: the name is only needed (cloned) on failure.
    if slot.vm_ref(ctx.generation).is_none() {
        return Err(VmError::Failed {
            plugin: slot.plugin.name.clone(),
        });
    }
    Ok(slot.vm_of(ctx.generation).map(|vm| (vm, ctx.context)))
}

/// One TCP callback of one plugin, with what it asked of its connection.
fn tcp_call(
    slot: &mut PluginSlot,
    plugin: usize,
    active: &mut Vec<ActiveContext>,
    stream: &mut Box<dyn HttpStream>,
    event: TcpEvent,
) -> Result<(Action, Vec<StreamAction>), VmError> {
    let (downstream, end_of_stream) = match event {
        TcpEvent::NewConnection => {
            if slot.per_request {
                slot.fresh_vm();
            }
            let (vm, generation) = slot.vm()?;
            let context = vm.create_stream_context()?;
            active.push(ActiveContext {
                plugin,
                generation,
                context,
            });
            let outcome = vm.on_new_connection(context, stream);
            slot.live += 1;
            return outcome;
        }
        TcpEvent::Data {
            downstream,
            end_of_stream,
        } => (downstream, end_of_stream),
    };
    let Some((vm, context)) = context_vm(slot, active, plugin)? else {
        return Ok((Action::Continue, Vec::new()));
    };
    let buffer = if downstream {
        BufferType::DownstreamData
    } else {
        BufferType::UpstreamData
    };
    let size = stream.buffer(buffer).map_or(0, <[u8]>::len);
    vm.on_tcp_data(downstream, context, stream, size, end_of_stream)
}
