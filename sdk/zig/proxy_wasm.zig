//! proxy_wasm.zig — Zig bindings for the proxy-wasm ABI v0.2.1.
//!
//! Build a filter with (see README.md):
//!
//!   python -m ziglang build-exe --dep proxy_wasm -Mroot=filter.zig \
//!       -Mproxy_wasm=path/to/sdk/zig/proxy_wasm.zig \
//!       -target wasm32-freestanding -fno-entry -rdynamic -O ReleaseSmall \
//!       -femit-bin=filter.wasm
//!
//! and `const proxy = @import("proxy_wasm");` in the filter.
//!
//! Three layers:
//!
//!  1. The ABI types (`Status`, `LogLevel`, `Action`, `BufferType`,
//!     `MapType`, `PeerType`, `StreamType`, `MetricType` and the WASI
//!     `wasi.Errno`, `wasi.Fd`, `wasi.ClockId`) as Zig enums.
//!  2. `hostcalls`: an `extern` declaration of every host function of ABI
//!     v0.2.1 (module `env`) and of the WASI functions the specification
//!     lists (module `wasi_snapshot_preview1`, in `wasi`). Only the ones a
//!     filter calls end up as imports of its module.
//!  3. A small helper layer: `log`, `getHeader`/`addHeader`/...,
//!     `sendLocalResponse` with serialized headers, `getBufferBytes` /
//!     `getPluginConfiguration`, `defineMetric`/`incrementMetric`/...
//!
//! Importing this file also exports, for every filter, the two functions a
//! host needs before anything else: `proxy_abi_version_0_2_1` (the ABI
//! marker) and `proxy_on_memory_allocate` (backed by `allocator`). The
//! callbacks (`proxy_on_context_create`, `proxy_on_configure`,
//! `proxy_on_request_headers`, ...) are the filter's own `export fn`s;
//! `checkCallbacks(@This())` verifies their wasm signatures at compile time.

const std = @import("std");

// ---------------------------------------------------------------------------
// Types of the specification.
// ---------------------------------------------------------------------------

/// `proxy_status_t`: what every host function returns.
pub const Status = enum(u32) {
    ok = 0,
    not_found = 1,
    bad_argument = 2,
    serialization_failure = 3,
    parse_failure = 4,
    invalid_memory_access = 6,
    empty = 7,
    cas_mismatch = 8,
    internal_failure = 10,
    unimplemented = 12,
    _,

    /// `ok` → `{}`, anything else → the matching error.
    pub fn check(self: Status) Error!void {
        return switch (self) {
            .ok => {},
            .not_found => error.NotFound,
            .bad_argument => error.BadArgument,
            .serialization_failure => error.SerializationFailure,
            .parse_failure => error.ParseFailure,
            .invalid_memory_access => error.InvalidMemoryAccess,
            .empty => error.Empty,
            .cas_mismatch => error.CasMismatch,
            .internal_failure => error.InternalFailure,
            .unimplemented => error.Unimplemented,
            _ => error.UnknownStatus,
        };
    }
};

/// The errors the helpers return: one per non-OK `Status`, plus running
/// out of memory in the plugin itself.
pub const Error = error{
    NotFound,
    BadArgument,
    SerializationFailure,
    ParseFailure,
    InvalidMemoryAccess,
    Empty,
    CasMismatch,
    InternalFailure,
    Unimplemented,
    UnknownStatus,
    OutOfMemory,
};

/// `proxy_log_level_t`.
pub const LogLevel = enum(u32) {
    trace = 0,
    debug = 1,
    info = 2,
    warn = 3,
    @"error" = 4,
    critical = 5,
    _,
};

/// `proxy_action_t`: what the stream callbacks return.
pub const Action = enum(u32) {
    @"continue" = 0,
    pause = 1,
    _,
};

/// `proxy_buffer_type_t`.
pub const BufferType = enum(u32) {
    http_request_body = 0,
    http_response_body = 1,
    downstream_data = 2,
    upstream_data = 3,
    http_call_response_body = 4,
    grpc_call_message = 5,
    vm_configuration = 6,
    plugin_configuration = 7,
    foreign_function_arguments = 8,
    _,
};

/// `proxy_map_type_t`.
pub const MapType = enum(u32) {
    http_request_headers = 0,
    http_request_trailers = 1,
    http_response_headers = 2,
    http_response_trailers = 3,
    grpc_call_initial_metadata = 4,
    grpc_call_trailing_metadata = 5,
    http_call_response_headers = 6,
    http_call_response_trailers = 7,
    _,
};

/// `proxy_peer_type_t` (argument of the connection-close callbacks).
pub const PeerType = enum(u32) {
    unknown = 0,
    local = 1,
    remote = 2,
    _,
};

/// `proxy_stream_type_t`.
pub const StreamType = enum(u32) {
    http_request = 0,
    http_response = 1,
    downstream = 2,
    upstream = 3,
    _,
};

/// `proxy_metric_type_t`.
pub const MetricType = enum(u32) {
    counter = 0,
    gauge = 1,
    histogram = 2,
    _,
};

/// `grpc_status` of `proxy_send_local_response` when the reply is not gRPC.
pub const no_grpc_status: i32 = -1;

// ---------------------------------------------------------------------------
// Host functions (module "env"), ABI v0.2.1. Pointers and sizes are the
// wasm32 i32s of the specification; every function returns a `Status`.
// ---------------------------------------------------------------------------

pub const hostcalls = struct {
    // Context lifecycle.
    pub extern "env" fn proxy_done() Status;
    pub extern "env" fn proxy_set_effective_context(context_id: u32) Status;

    // Logging.
    pub extern "env" fn proxy_log(level: LogLevel, message_data: [*]const u8, message_size: usize) Status;
    pub extern "env" fn proxy_get_log_level(return_level: *LogLevel) Status;

    // Clocks and timers.
    pub extern "env" fn proxy_get_current_time_nanoseconds(return_time: *u64) Status;
    pub extern "env" fn proxy_set_tick_period_milliseconds(tick_period: u32) Status;

    // Buffers.
    pub extern "env" fn proxy_set_buffer_bytes(buffer_id: BufferType, start: usize, size: usize, value_data: [*]const u8, value_size: usize) Status;
    pub extern "env" fn proxy_get_buffer_bytes(buffer_id: BufferType, start: usize, max_size: usize, return_value_data: *?[*]u8, return_value_size: *usize) Status;
    pub extern "env" fn proxy_get_buffer_status(buffer_id: BufferType, return_buffer_size: *usize, return_ignored: *u32) Status;

    // HTTP fields (header maps, serialized as described in `serializeMap`).
    pub extern "env" fn proxy_get_header_map_size(map_id: MapType, return_serialized_pairs_size: *usize) Status;
    pub extern "env" fn proxy_get_header_map_pairs(map_id: MapType, return_serialized_pairs_data: *?[*]u8, return_serialized_pairs_size: *usize) Status;
    pub extern "env" fn proxy_set_header_map_pairs(map_id: MapType, serialized_pairs_data: [*]const u8, serialized_pairs_size: usize) Status;
    pub extern "env" fn proxy_get_header_map_value(map_id: MapType, key_data: [*]const u8, key_size: usize, return_value_data: *?[*]u8, return_value_size: *usize) Status;
    pub extern "env" fn proxy_add_header_map_value(map_id: MapType, key_data: [*]const u8, key_size: usize, value_data: [*]const u8, value_size: usize) Status;
    pub extern "env" fn proxy_replace_header_map_value(map_id: MapType, key_data: [*]const u8, key_size: usize, value_data: [*]const u8, value_size: usize) Status;
    pub extern "env" fn proxy_remove_header_map_value(map_id: MapType, key_data: [*]const u8, key_size: usize) Status;

    // Common stream operations.
    pub extern "env" fn proxy_continue_stream(stream_type: StreamType) Status;
    pub extern "env" fn proxy_close_stream(stream_type: StreamType) Status;
    pub extern "env" fn proxy_get_status(return_status_code: *u32, return_status_message_data: *?[*]u8, return_status_message_size: *usize) Status;

    // HTTP.
    /// `grpc_status`: -1 (`no_grpc_status`) for a plain HTTP reply.
    pub extern "env" fn proxy_send_local_response(status_code: u32, status_code_details_data: [*]const u8, status_code_details_size: usize, body_data: [*]const u8, body_size: usize, serialized_headers_data: [*]const u8, serialized_headers_size: usize, grpc_status: i32) Status;

    // HTTP calls.
    pub extern "env" fn proxy_http_call(upstream_name_data: [*]const u8, upstream_name_size: usize, serialized_headers_data: [*]const u8, serialized_headers_size: usize, body_data: [*]const u8, body_size: usize, serialized_trailers_data: [*]const u8, serialized_trailers_size: usize, timeout_ms: u32, return_call_id: *u32) Status;

    // gRPC calls.
    pub extern "env" fn proxy_grpc_call(upstream_name_data: [*]const u8, upstream_name_size: usize, service_name_data: [*]const u8, service_name_size: usize, method_name_data: [*]const u8, method_name_size: usize, serialized_initial_metadata_data: [*]const u8, serialized_initial_metadata_size: usize, message_data: [*]const u8, message_size: usize, timeout_ms: u32, return_call_id: *u32) Status;
    pub extern "env" fn proxy_grpc_stream(upstream_name_data: [*]const u8, upstream_name_size: usize, service_name_data: [*]const u8, service_name_size: usize, method_name_data: [*]const u8, method_name_size: usize, serialized_initial_metadata_data: [*]const u8, serialized_initial_metadata_size: usize, return_stream_id: *u32) Status;
    pub extern "env" fn proxy_grpc_send(stream_id: u32, message_data: [*]const u8, message_size: usize, end_stream: u32) Status;
    pub extern "env" fn proxy_grpc_cancel(call_or_stream_id: u32) Status;
    pub extern "env" fn proxy_grpc_close(call_or_stream_id: u32) Status;

    // Shared key-value store.
    pub extern "env" fn proxy_set_shared_data(key_data: [*]const u8, key_size: usize, value_data: [*]const u8, value_size: usize, cas: u32) Status;
    pub extern "env" fn proxy_get_shared_data(key_data: [*]const u8, key_size: usize, return_value_data: *?[*]u8, return_value_size: *usize, return_cas: *u32) Status;

    // Shared queues.
    pub extern "env" fn proxy_register_shared_queue(name_data: [*]const u8, name_size: usize, return_queue_id: *u32) Status;
    pub extern "env" fn proxy_resolve_shared_queue(vm_id_data: [*]const u8, vm_id_size: usize, name_data: [*]const u8, name_size: usize, return_queue_id: *u32) Status;
    pub extern "env" fn proxy_enqueue_shared_queue(queue_id: u32, value_data: [*]const u8, value_size: usize) Status;
    pub extern "env" fn proxy_dequeue_shared_queue(queue_id: u32, return_value_data: *?[*]u8, return_value_size: *usize) Status;

    // Metrics.
    pub extern "env" fn proxy_define_metric(metric_type: MetricType, name_data: [*]const u8, name_size: usize, return_metric_id: *u32) Status;
    pub extern "env" fn proxy_record_metric(metric_id: u32, value: u64) Status;
    pub extern "env" fn proxy_increment_metric(metric_id: u32, delta: i64) Status;
    pub extern "env" fn proxy_get_metric(metric_id: u32, return_value: *u64) Status;

    // Properties.
    pub extern "env" fn proxy_get_property(path_data: [*]const u8, path_size: usize, return_value_data: *?[*]u8, return_value_size: *usize) Status;
    pub extern "env" fn proxy_set_property(path_data: [*]const u8, path_size: usize, value_data: [*]const u8, value_size: usize) Status;

    // Foreign functions.
    pub extern "env" fn proxy_call_foreign_function(name_data: [*]const u8, name_size: usize, arguments_data: [*]const u8, arguments_size: usize, return_results_data: *?[*]u8, return_results_size: *usize) Status;
};

/// The WASI functions ABI v0.2.1 lists (module `wasi_snapshot_preview1`).
/// A freestanding Zig filter needs none of them; they are here for filters
/// that want stdout/stderr logging, the clock or randomness through WASI.
pub const wasi = struct {
    /// `wasi_errno_t` (the values the specification names).
    pub const Errno = enum(u32) {
        success = 0,
        badf = 8,
        fault = 21,
        inval = 28,
        notsup = 58,
        _,
    };
    /// `wasi_fd_id_t`: STDOUT is logged at INFO, STDERR at ERROR.
    pub const Fd = enum(u32) {
        stdout = 1,
        stderr = 2,
        _,
    };
    /// `wasi_clock_id_t`.
    pub const ClockId = enum(u32) {
        realtime = 0,
        monotonic = 1,
        _,
    };
    /// One element of `fd_write`'s iovec array.
    pub const Ciovec = extern struct {
        buf: [*]const u8,
        buf_len: usize,
    };

    pub extern "wasi_snapshot_preview1" fn fd_write(fd: Fd, iovs: [*]const Ciovec, iovs_len: usize, return_written: *usize) Errno;
    pub extern "wasi_snapshot_preview1" fn clock_time_get(clock_id: ClockId, precision: u64, return_time: *u64) Errno;
    pub extern "wasi_snapshot_preview1" fn random_get(buf: [*]u8, buf_len: usize) Errno;
    pub extern "wasi_snapshot_preview1" fn environ_sizes_get(return_count: *usize, return_buf_size: *usize) Errno;
    pub extern "wasi_snapshot_preview1" fn environ_get(return_environ: [*][*:0]u8, return_environ_buf: [*]u8) Errno;
    pub extern "wasi_snapshot_preview1" fn args_sizes_get(return_argc: *usize, return_argv_buf_size: *usize) Errno;
    pub extern "wasi_snapshot_preview1" fn args_get(return_argv: [*][*:0]u8, return_argv_buf: [*]u8) Errno;
    pub extern "wasi_snapshot_preview1" fn proc_exit(code: u32) noreturn;
};

// ---------------------------------------------------------------------------
// Memory: the allocator behind proxy_on_memory_allocate.
// ---------------------------------------------------------------------------

/// The plugin's allocator (Zig's wasm allocator: grows linear memory with
/// `memory.grow`, never returns memory to the host while it is in use).
pub const allocator: std.mem.Allocator = std.heap.wasm_allocator;

/// Each block handed to the host carries its size in 8 bytes in front of
/// it, so `freeHostBytes` can release it whatever size the host reported.
const host_block_header = 8;

fn allocateForHost(size: usize) ?[*]u8 {
    const total = std.math.add(usize, size, host_block_header) catch return null;
    const block = allocator.alignedAlloc(u8, .@"8", total) catch return null;
    std.mem.writeInt(u32, block[0..4], @intCast(size), .little);
    return block.ptr + host_block_header;
}

/// Releases bytes the host returned through a `return_*_data` pointer
/// (`getHeader`, `getBufferBytes`, `getProperty`, ... results). Optional:
/// a filter that keeps them simply does not call it.
pub fn freeHostBytes(bytes: []const u8) void {
    const addr = @intFromPtr(bytes.ptr);
    if (addr == 0 or addr < host_block_header) return;
    const block: [*]align(8) u8 = @ptrFromInt(addr - host_block_header);
    const size = std.mem.readInt(u32, block[0..4], .little);
    allocator.free(block[0 .. size + host_block_header]);
}

fn hostBytes(data: ?[*]u8, size: usize) []u8 {
    const ptr = data orelse return &.{};
    return ptr[0..size];
}

/// `proxy_on_memory_allocate`: the host calls it to hand bytes to the
/// plugin (header values, buffers, configuration). Returns 0 on failure.
fn proxyOnMemoryAllocate(size: u32) callconv(.c) ?[*]u8 {
    return allocateForHost(size);
}

/// Marker of the ABI version; never called.
fn proxyAbiVersion021() callconv(.c) void {}

/// Default `proxy_on_context_create` (hosts require the export): does
/// nothing. Exported only when the root file declares no `pub`
/// `proxy_on_context_create` of its own.
fn proxyOnContextCreate(context_id: u32, parent_context_id: u32) callconv(.c) void {
    _ = context_id;
    _ = parent_context_id;
}

comptime {
    @export(&proxyOnMemoryAllocate, .{ .name = "proxy_on_memory_allocate" });
    @export(&proxyAbiVersion021, .{ .name = "proxy_abi_version_0_2_1" });
    if (!@hasDecl(@import("root"), "proxy_on_context_create")) {
        @export(&proxyOnContextCreate, .{ .name = "proxy_on_context_create" });
    }
}

// ---------------------------------------------------------------------------
// Logging.
// ---------------------------------------------------------------------------

/// Logs `message` as is.
pub fn logRaw(level: LogLevel, message: []const u8) void {
    _ = hostcalls.proxy_log(level, message.ptr, message.len);
}

/// Logs a formatted line (`std.fmt` syntax): `log(.info, "got {s}", .{x})`.
/// Lines up to 1 KiB are formatted on the stack; longer ones are allocated.
pub fn log(level: LogLevel, comptime fmt: []const u8, args: anytype) void {
    var buf: [1024]u8 = undefined;
    if (std.fmt.bufPrint(&buf, fmt, args)) |line| {
        logRaw(level, line);
    } else |_| {
        const line = std.fmt.allocPrint(allocator, fmt, args) catch {
            logRaw(level, &buf); // the first 1 KiB
            return;
        };
        defer allocator.free(line);
        logRaw(level, line);
    }
}

pub fn trace(comptime fmt: []const u8, args: anytype) void {
    log(.trace, fmt, args);
}
pub fn debug(comptime fmt: []const u8, args: anytype) void {
    log(.debug, fmt, args);
}
pub fn info(comptime fmt: []const u8, args: anytype) void {
    log(.info, fmt, args);
}
pub fn warn(comptime fmt: []const u8, args: anytype) void {
    log(.warn, fmt, args);
}
pub fn err(comptime fmt: []const u8, args: anytype) void {
    log(.@"error", fmt, args);
}
pub fn critical(comptime fmt: []const u8, args: anytype) void {
    log(.critical, fmt, args);
}

/// The host's current log level (lines below it are dropped by the host).
pub fn getLogLevel() Error!LogLevel {
    var level: LogLevel = .info;
    try hostcalls.proxy_get_log_level(&level).check();
    return level;
}

// ---------------------------------------------------------------------------
// Buffers and configuration.
// ---------------------------------------------------------------------------

/// Up to `max_size` bytes of `buffer` from `start`; null when the buffer
/// is not available (NOT_FOUND) or empty. Free with `freeHostBytes`.
pub fn getBufferBytes(buffer: BufferType, start: usize, max_size: usize) Error!?[]u8 {
    var data: ?[*]u8 = null;
    var size: usize = 0;
    hostcalls.proxy_get_buffer_bytes(buffer, start, max_size, &data, &size).check() catch |e| switch (e) {
        error.NotFound, error.Empty => return null,
        else => return e,
    };
    if (size == 0) {
        if (data) |ptr| freeHostBytes(ptr[0..0]);
        return null;
    }
    return hostBytes(data, size);
}

/// The size of `buffer`; null when it is not available.
pub fn getBufferSize(buffer: BufferType) Error!?usize {
    var size: usize = 0;
    var ignored: u32 = 0;
    hostcalls.proxy_get_buffer_status(buffer, &size, &ignored).check() catch |e| switch (e) {
        error.NotFound => return null,
        else => return e,
    };
    return size;
}

/// Replaces `size` bytes at `start` of `buffer` with `value`.
pub fn setBufferBytes(buffer: BufferType, start: usize, size: usize, value: []const u8) Error!void {
    return hostcalls.proxy_set_buffer_bytes(buffer, start, size, value.ptr, value.len).check();
}

/// The whole plugin configuration (call from `proxy_on_configure`, with
/// its `plugin_configuration_size`); null when there is none.
pub fn getPluginConfiguration(size: usize) Error!?[]u8 {
    if (size == 0) return null;
    return getBufferBytes(.plugin_configuration, 0, size);
}

/// The whole VM configuration (call from `proxy_on_vm_start`).
pub fn getVmConfiguration(size: usize) Error!?[]u8 {
    if (size == 0) return null;
    return getBufferBytes(.vm_configuration, 0, size);
}

// ---------------------------------------------------------------------------
// Header maps.
// ---------------------------------------------------------------------------

/// A header/trailer/metadata pair.
pub const Header = struct { []const u8, []const u8 };

/// The value of `name` in `map`, or null when absent. Free with
/// `freeHostBytes` (or keep it).
pub fn getHeader(map: MapType, name: []const u8) Error!?[]u8 {
    var data: ?[*]u8 = null;
    var size: usize = 0;
    hostcalls.proxy_get_header_map_value(map, name.ptr, name.len, &data, &size).check() catch |e| switch (e) {
        error.NotFound => return null,
        else => return e,
    };
    return hostBytes(data, size);
}

/// Adds `name: value` to `map` (keeps existing values of `name`).
pub fn addHeader(map: MapType, name: []const u8, value: []const u8) Error!void {
    return hostcalls.proxy_add_header_map_value(map, name.ptr, name.len, value.ptr, value.len).check();
}

/// Sets `name: value` in `map`, replacing existing values of `name`.
pub fn replaceHeader(map: MapType, name: []const u8, value: []const u8) Error!void {
    return hostcalls.proxy_replace_header_map_value(map, name.ptr, name.len, value.ptr, value.len).check();
}

/// Removes every value of `name` from `map`.
pub fn removeHeader(map: MapType, name: []const u8) Error!void {
    return hostcalls.proxy_remove_header_map_value(map, name.ptr, name.len).check();
}

/// All pairs of `map`, serialized (see `MapIterator` to read them). Free
/// with `freeHostBytes`.
pub fn getHeaderPairs(map: MapType) Error![]u8 {
    var data: ?[*]u8 = null;
    var size: usize = 0;
    try hostcalls.proxy_get_header_map_pairs(map, &data, &size).check();
    return hostBytes(data, size);
}

/// Replaces all pairs of `map`.
pub fn setHeaderPairs(map: MapType, pairs: []const Header) Error!void {
    const bytes = try serializeMap(allocator, pairs);
    defer allocator.free(bytes);
    return hostcalls.proxy_set_header_map_pairs(map, bytes.ptr, bytes.len).check();
}

/// Serializes pairs the way the ABI wants them: a u32 count, then a u32
/// key size and a u32 value size per pair, then each key and value
/// followed by a NUL byte (all integers little-endian). Caller frees.
pub fn serializeMap(gpa: std.mem.Allocator, pairs: []const Header) error{OutOfMemory}![]u8 {
    var size: usize = 4 + 8 * pairs.len;
    for (pairs) |pair| size += pair[0].len + pair[1].len + 2;
    const out = try gpa.alloc(u8, size);
    std.mem.writeInt(u32, out[0..4], @intCast(pairs.len), .little);
    var sizes: usize = 4;
    var bytes: usize = 4 + 8 * pairs.len;
    for (pairs) |pair| {
        std.mem.writeInt(u32, out[sizes..][0..4], @intCast(pair[0].len), .little);
        std.mem.writeInt(u32, out[sizes + 4 ..][0..4], @intCast(pair[1].len), .little);
        sizes += 8;
        inline for (.{ pair[0], pair[1] }) |part| {
            @memcpy(out[bytes..][0..part.len], part);
            bytes += part.len;
            out[bytes] = 0;
            bytes += 1;
        }
    }
    return out;
}

/// Reads a serialized map (from `getHeaderPairs`) pair by pair.
pub const MapIterator = struct {
    bytes: []const u8,
    count: u32,
    index: u32 = 0,
    data_offset: usize,

    pub fn init(bytes: []const u8) MapIterator {
        if (bytes.len < 4) return .{ .bytes = bytes, .count = 0, .data_offset = 0 };
        const count = std.mem.readInt(u32, bytes[0..4], .little);
        const data_offset = 4 + 8 * @as(usize, count);
        if (data_offset > bytes.len) return .{ .bytes = bytes, .count = 0, .data_offset = 0 };
        return .{ .bytes = bytes, .count = count, .data_offset = data_offset };
    }

    /// The next pair, or null at the end (or on malformed input).
    pub fn next(self: *MapIterator) ?Header {
        if (self.index >= self.count) return null;
        const at = 4 + 8 * @as(usize, self.index);
        const key_len = std.mem.readInt(u32, self.bytes[at..][0..4], .little);
        const value_len = std.mem.readInt(u32, self.bytes[at + 4 ..][0..4], .little);
        const need = @as(usize, key_len) + value_len + 2;
        if (self.data_offset + need > self.bytes.len) {
            self.index = self.count;
            return null;
        }
        const key = self.bytes[self.data_offset..][0..key_len];
        const value = self.bytes[self.data_offset + key_len + 1 ..][0..value_len];
        self.data_offset += need;
        self.index += 1;
        return .{ key, value };
    }
};

// ---------------------------------------------------------------------------
// Streams and local responses.
// ---------------------------------------------------------------------------

/// Answers the request from the plugin: `status`, `body` and `headers`;
/// `grpc_status` is `no_grpc_status` (-1) unless this is a gRPC reply.
/// Return `.pause` from the callback afterwards.
pub fn sendLocalResponse(status: u32, details: []const u8, body: []const u8, headers: []const Header, grpc_status: i32) Error!void {
    const serialized = try serializeMap(allocator, headers);
    defer allocator.free(serialized);
    return hostcalls.proxy_send_local_response(status, details.ptr, details.len, body.ptr, body.len, serialized.ptr, serialized.len, grpc_status).check();
}

/// Resumes a paused stream.
pub fn continueStream(stream: StreamType) Error!void {
    return hostcalls.proxy_continue_stream(stream).check();
}

/// Closes (resets) a stream.
pub fn closeStream(stream: StreamType) Error!void {
    return hostcalls.proxy_close_stream(stream).check();
}

/// Makes `context_id` the context later host calls act on.
pub fn setEffectiveContext(context_id: u32) Error!void {
    return hostcalls.proxy_set_effective_context(context_id).check();
}

/// Sets the period of `proxy_on_tick` (0 stops it).
pub fn setTickPeriodMs(period_ms: u32) Error!void {
    return hostcalls.proxy_set_tick_period_milliseconds(period_ms).check();
}

/// The host's current time in nanoseconds since the Unix epoch.
pub fn currentTimeNanos() Error!u64 {
    var t: u64 = 0;
    try hostcalls.proxy_get_current_time_nanoseconds(&t).check();
    return t;
}

// ---------------------------------------------------------------------------
// Metrics.
// ---------------------------------------------------------------------------

/// Defines (or finds) a metric and returns its id.
pub fn defineMetric(metric_type: MetricType, name: []const u8) Error!u32 {
    var id: u32 = 0;
    try hostcalls.proxy_define_metric(metric_type, name.ptr, name.len, &id).check();
    return id;
}

/// Adds `delta` to a metric (counters only go up).
pub fn incrementMetric(id: u32, delta: i64) Error!void {
    return hostcalls.proxy_increment_metric(id, delta).check();
}

/// Sets a gauge or records a histogram value.
pub fn recordMetric(id: u32, value: u64) Error!void {
    return hostcalls.proxy_record_metric(id, value).check();
}

/// A metric's current value.
pub fn getMetric(id: u32) Error!u64 {
    var value: u64 = 0;
    try hostcalls.proxy_get_metric(id, &value).check();
    return value;
}

// ---------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------

/// A property by path; `path` is its segments each followed by a NUL byte
/// (e.g. "request\x00path\x00"). Null when absent. Free with `freeHostBytes`.
pub fn getProperty(path: []const u8) Error!?[]u8 {
    var data: ?[*]u8 = null;
    var size: usize = 0;
    hostcalls.proxy_get_property(path.ptr, path.len, &data, &size).check() catch |e| switch (e) {
        error.NotFound => return null,
        else => return e,
    };
    return hostBytes(data, size);
}

/// Sets a property (path encoded as for `getProperty`).
pub fn setProperty(path: []const u8, value: []const u8) Error!void {
    return hostcalls.proxy_set_property(path.ptr, path.len, value.ptr, value.len).check();
}

// ---------------------------------------------------------------------------
// Callback signatures.
// ---------------------------------------------------------------------------

/// Every callback of ABI v0.2.1 a filter may export, with its wasm
/// signature ("i32,i32" params, "i32" result; "" for none).
pub const callbacks = [_]struct { name: []const u8, params: []const u8, result: []const u8 }{
    .{ .name = "proxy_on_context_create", .params = "i32,i32", .result = "" },
    .{ .name = "proxy_on_done", .params = "i32", .result = "i32" },
    .{ .name = "proxy_on_log", .params = "i32", .result = "" },
    .{ .name = "proxy_on_delete", .params = "i32", .result = "" },
    .{ .name = "proxy_on_vm_start", .params = "i32,i32", .result = "i32" },
    .{ .name = "proxy_on_configure", .params = "i32,i32", .result = "i32" },
    .{ .name = "proxy_on_tick", .params = "i32", .result = "" },
    .{ .name = "proxy_on_new_connection", .params = "i32", .result = "i32" },
    .{ .name = "proxy_on_downstream_data", .params = "i32,i32,i32", .result = "i32" },
    .{ .name = "proxy_on_downstream_connection_close", .params = "i32,i32", .result = "" },
    .{ .name = "proxy_on_upstream_data", .params = "i32,i32,i32", .result = "i32" },
    .{ .name = "proxy_on_upstream_connection_close", .params = "i32,i32", .result = "" },
    .{ .name = "proxy_on_request_headers", .params = "i32,i32,i32", .result = "i32" },
    .{ .name = "proxy_on_request_body", .params = "i32,i32,i32", .result = "i32" },
    .{ .name = "proxy_on_request_trailers", .params = "i32,i32", .result = "i32" },
    .{ .name = "proxy_on_response_headers", .params = "i32,i32,i32", .result = "i32" },
    .{ .name = "proxy_on_response_body", .params = "i32,i32,i32", .result = "i32" },
    .{ .name = "proxy_on_response_trailers", .params = "i32,i32", .result = "i32" },
    .{ .name = "proxy_on_http_call_response", .params = "i32,i32,i32,i32,i32", .result = "" },
    .{ .name = "proxy_on_grpc_receive_initial_metadata", .params = "i32,i32,i32", .result = "" },
    .{ .name = "proxy_on_grpc_receive", .params = "i32,i32,i32", .result = "" },
    .{ .name = "proxy_on_grpc_receive_trailing_metadata", .params = "i32,i32,i32", .result = "" },
    .{ .name = "proxy_on_grpc_close", .params = "i32,i32,i32", .result = "" },
    .{ .name = "proxy_on_queue_ready", .params = "i32,i32", .result = "" },
    .{ .name = "proxy_on_foreign_function", .params = "i32,i32,i32", .result = "" },
};

fn wasmType(comptime T: type) []const u8 {
    return switch (@typeInfo(T)) {
        .void, .noreturn => "",
        .bool => "i32",
        .int => |i| if (i.bits <= 32) "i32" else if (i.bits <= 64) "i64" else @compileError("no wasm type for " ++ @typeName(T)),
        .@"enum" => |e| wasmType(e.tag_type),
        .pointer => "i32",
        .optional => |o| if (@typeInfo(o.child) == .pointer) "i32" else @compileError("no wasm type for " ++ @typeName(T)),
        else => @compileError("no wasm type for " ++ @typeName(T)),
    };
}

fn wasmParams(comptime param_types: []const ?type) []const u8 {
    var out: []const u8 = "";
    for (param_types, 0..) |t, i| {
        out = out ++ (if (i == 0) "" else ",") ++ wasmType(t.?);
    }
    return out;
}

/// Compile-time check that each `proxy_on_*` callback declared (pub) in
/// `Root` has the wasm signature of ABI v0.2.1. Use it from the filter:
/// `comptime { proxy.checkCallbacks(@This()); }` (declare the callbacks
/// `pub export fn` so they are visible here).
pub fn checkCallbacks(comptime Root: type) void {
    @setEvalBranchQuota(100_000);
    for (callbacks) |cb| {
        if (@hasDecl(Root, cb.name)) {
            const info_ = @typeInfo(@TypeOf(@field(Root, cb.name))).@"fn";
            const params = wasmParams(info_.param_types);
            const result = wasmType(info_.return_type.?);
            if (!std.mem.eql(u8, params, cb.params) or !std.mem.eql(u8, result, cb.result)) {
                @compileError(cb.name ++ " must be (" ++ cb.params ++ ") -> (" ++ cb.result ++ "), is (" ++ params ++ ") -> (" ++ result ++ ")");
            }
        }
    }
}
