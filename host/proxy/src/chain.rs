//! The filter chain: a worker's plugin VMs and how one stream runs through them.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use weft_abi::{Action, ContextId, FailurePolicy, HttpStream, LocalResponse, Plugin, Vm, VmError};

use crate::worker::Worker;

/// Counts of what happened to a plugin's VMs, over all workers; shown on
/// the admin `/metrics` endpoint.
#[derive(Default)]
pub(crate) struct PluginStats {
    pub(crate) traps: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) vm_starts: AtomicU64,
    pub(crate) vm_start_failures: AtomicU64,
}

/// A plugin's VM on one worker, recreated with backoff after a failure.
pub(crate) struct PluginSlot {
    plugin: Arc<Plugin>,
    stats: Arc<PluginStats>,
    vm: Option<Vm>,
    /// Bumped on every new VM, so that contexts of a VM that failed are
    /// never finished on its replacement.
    generation: u64,
    started: Option<Instant>,
    retry_at: Option<Instant>,
    backoff: Duration,
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A VM that ran this long before it failed is not in a crash loop: the
/// backoff starts afresh.
const HEALTHY_RUN: Duration = Duration::from_secs(30);

impl PluginSlot {
    pub(crate) fn new(plugin: Arc<Plugin>, stats: Arc<PluginStats>) -> PluginSlot {
        PluginSlot {
            plugin,
            stats,
            vm: None,
            generation: 0,
            started: None,
            retry_at: None,
            backoff: MIN_BACKOFF,
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.plugin.name
    }

    /// Brings the VM up ahead of the first request. A failure is logged and
    /// retried, with backoff, when requests arrive.
    pub(crate) fn warm(&mut self) {
        let _ = self.vm();
    }

    /// The timer period the plugin's VM asked for, if it has a working VM.
    pub(crate) fn tick_period(&self) -> Option<Duration> {
        self.vm
            .as_ref()
            .filter(|vm| !vm.is_failed())
            .and_then(Vm::tick_period)
    }

    /// Delivers `proxy_on_tick`; a failure is logged and the VM recreated
    /// on its next use.
    pub(crate) fn tick(&mut self) {
        if let Ok((vm, _)) = self.vm()
            && let Err(err) = vm.on_tick()
        {
            self.note_failure(&err);
        }
    }

    /// Handles a callback's failure: counts it and, if the VM marked itself
    /// failed, retires it at once so that the backoff runs from now.
    fn note_failure(&mut self, err: &VmError) {
        if !self.vm.as_ref().is_some_and(Vm::is_failed) {
            return;
        }
        match err {
            VmError::Timeout { .. } => self.stats.timeouts.fetch_add(1, Ordering::Relaxed),
            _ => self.stats.traps.fetch_add(1, Ordering::Relaxed),
        };
        self.retire_failed_vm();
    }

    /// Drops a failed VM and schedules its replacement.
    fn retire_failed_vm(&mut self) {
        self.vm = None;
        if self.started.is_some_and(|at| at.elapsed() >= HEALTHY_RUN) {
            self.backoff = MIN_BACKOFF;
        }
        self.schedule_retry();
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
            if self.retry_at.is_some_and(|at| Instant::now() < at) {
                return Err(VmError::Failed {
                    plugin: self.plugin.name.clone(),
                });
            }
            match Vm::new(self.plugin.clone()) {
                Ok(vm) => {
                    self.vm = Some(vm);
                    self.generation += 1;
                    self.started = Some(Instant::now());
                    self.retry_at = None;
                    self.stats.vm_starts.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(plugin = %self.plugin.name, generation = self.generation, "VM started");
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
    /// A plugin paused the stream; nothing in this build can resume it.
    Paused { plugin: String },
}

/// Which headers callback a phase runs.
#[derive(Clone, Copy)]
pub(crate) enum Phase {
    RequestHeaders,
    ResponseHeaders,
}

/// Runs `phase` over the stream's plugins: the request phase in chain order
/// (creating each plugin's stream context first), the response phase in
/// reverse over the contexts that exist.
pub(crate) fn run_headers(
    worker: &Worker,
    chain: &[usize],
    active: &mut Vec<ActiveContext>,
    stream: &mut Box<dyn HttpStream>,
    phase: Phase,
    header_count: usize,
    end_of_stream: bool,
) -> Result<(), Stop> {
    // Indices rather than an iterator: `active` changes as plugins run (a
    // failed plugin's context is dropped). Walking it backwards stays valid
    // because only the current entry can be removed.
    let steps = match phase {
        Phase::RequestHeaders => chain.len(),
        Phase::ResponseHeaders => active.len(),
    };
    for step in 0..steps {
        let plugin = match phase {
            Phase::RequestHeaders => chain.get(step).copied(),
            Phase::ResponseHeaders => active.get(steps - 1 - step).map(|c| c.plugin),
        };
        let Some(plugin) = plugin else { continue };
        let slot = &worker.plugins[plugin];
        let outcome = {
            let mut slot = slot.borrow_mut();
            call(
                &mut slot,
                plugin,
                active,
                stream,
                phase,
                header_count,
                end_of_stream,
            )
        };
        // A local response wins over whatever the callback returned: filters
        // usually send one and then pause.
        if let Some(local) = local_response(stream) {
            return Err(Stop::Local(local));
        }
        match outcome {
            Ok(Action::Continue) => {}
            Ok(Action::Pause) => {
                return Err(Stop::Paused {
                    plugin: slot.borrow().name().to_string(),
                });
            }
            Err(err) => {
                let mut slot = slot.borrow_mut();
                slot.note_failure(&err);
                active.retain(|a| a.plugin != plugin);
                match slot.plugin.failure_policy {
                    FailurePolicy::FailOpen => {
                        tracing::warn!(
                            "{err}; plugin is fail-open, so the request goes on without it"
                        );
                    }
                    FailurePolicy::FailClosed => {
                        tracing::warn!("{err}; plugin is fail-closed, so the request is refused");
                        return Err(Stop::Failed {
                            plugin: slot.name().to_string(),
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

fn call(
    slot: &mut PluginSlot,
    plugin: usize,
    active: &mut Vec<ActiveContext>,
    stream: &mut Box<dyn HttpStream>,
    phase: Phase,
    header_count: usize,
    end_of_stream: bool,
) -> Result<Action, VmError> {
    let (vm, generation) = slot.vm()?;
    match phase {
        Phase::RequestHeaders => {
            let context = vm.create_stream_context()?;
            active.push(ActiveContext {
                plugin,
                generation,
                context,
            });
            vm.on_request_headers(context, stream, header_count, end_of_stream)
        }
        Phase::ResponseHeaders => {
            let Some(ctx) = active.iter().find(|a| a.plugin == plugin) else {
                return Ok(Action::Continue);
            };
            if ctx.generation != generation {
                // The VM this stream started on failed and was replaced:
                // the new one has never heard of this context.
                return Ok(Action::Continue);
            }
            vm.on_response_headers(ctx.context, stream, header_count, end_of_stream)
        }
    }
}

fn local_response(stream: &mut Box<dyn HttpStream>) -> Option<LocalResponse> {
    crate::worker::proxy_stream(stream).and_then(|s| s.local_response.take())
}

/// Ends a stream's contexts (`on_done`, `on_log`, `on_delete`) once its
/// response has been sent or abandoned.
pub(crate) struct Finish {
    pub(crate) worker: Rc<Worker>,
    pub(crate) active: Vec<ActiveContext>,
    pub(crate) stream: Box<dyn HttpStream>,
}

impl Finish {
    pub(crate) fn run(mut self) {
        for ctx in &self.active {
            let slot: &RefCell<PluginSlot> = &self.worker.plugins[ctx.plugin];
            let mut slot = slot.borrow_mut();
            if slot.generation != ctx.generation {
                continue;
            }
            if let Some(vm) = slot.vm.as_mut().filter(|vm| !vm.is_failed())
                && let Err(err) = vm.finish_stream(ctx.context, &mut self.stream)
            {
                slot.note_failure(&err);
            }
        }
    }
}
