//! weft's proxy-wasm runtime.
//!
//! This crate is the only part of weft that knows the proxy-wasm ABI (its
//! numbers, memory layouts and callbacks) and wasmtime. The nouns, once:
//!
//! - [`Runtime`]: one per process. Owns the wasmtime `Engine` and the thread
//!   that advances its epoch (the per-callback CPU deadline); set up with
//!   [`RuntimeOptions`]: the on-disk module cache, the VM allocator.
//! - [`PluginModule`]: a compiled module, its detected ABI version and its
//!   imports resolved against weft's host functions. Shared by every worker.
//! - [`Plugin`]: a module plus what one configured use of it needs (name,
//!   root id, VM id, configuration, limits, failure policy).
//! - [`Vm`]: one instance of a plugin's module with its root context
//!   started and configured. Owned by one worker thread; never shared.
//! - stream contexts: one per request inside a `Vm`, identified by a
//!   [`ContextId`], driven through [`Vm::on_request_headers`] and friends.
//! - [`HttpStream`]: the trait through which a guest sees the request it is
//!   filtering (header maps, local responses). The data plane, the filter
//!   test harness and the conformance runner each implement it; this crate
//!   knows no HTTP library.

#![warn(missing_docs)]

mod abi;
mod callout;
pub mod coverage;
mod hostcalls;
mod memory;
mod module;
mod runtime;
mod shared;
mod stream;
mod vm;
mod wasi;

pub use abi::{
    AbiVersion, Action, BufferType, LogLevel, MapType, PeerType, Status, StreamAction, StreamType,
};
pub use callout::{
    GrpcCall, GrpcCallResponse, GrpcCaller, GrpcInbound, GrpcOutbound, GrpcStreamOpen,
    GrpcStreamSender, GrpcStreamer, HttpCall, HttpCallResponse, HttpCaller, Pairs,
};
pub use module::{Capabilities, LoadError, PluginModule};
pub use runtime::{
    Allocator, MODULE_CACHE_SUBDIR, MetricsReader, ModuleCacheStats, POOLED_MEMORY_BYTES, Runtime,
    RuntimeError, RuntimeOptions,
};
pub use shared::{
    ForeignFunction, HISTOGRAM_BOUNDS, MAX_QUEUE_ITEMS, Metric, MetricKind, MetricValue,
    QueueNotifier,
};
pub use stream::{HttpStream, LocalResponse, NoStream};
pub use vm::{
    CALLBACK_SAMPLE, CallbackObserver, ContextId, FailurePolicy, Plugin, PluginLimits, Vm, VmError,
    VmHooks,
};
