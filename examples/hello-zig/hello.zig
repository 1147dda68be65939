//! hello-zig: the weft example filter, in Zig, on sdk/zig.
//!
//! Plugin configuration (JSON): {"header": "x-hello", "value": "world"}.
//! - every request is logged at INFO as `hello: <METHOD> <PATH>` and counted
//!   in the counter `hello_requests_total`;
//! - `GET /hello-local` is answered by the filter: 200, "hello\n";
//! - every response (and the local answer) gets the configured header.

const std = @import("std");
const proxy = @import("proxy_wasm");

const Config = struct {
    header: []const u8,
    value: []const u8,
};

/// The configuration in use (its strings live in `parsed`'s arena).
var parsed: ?std.json.Parsed(Config) = null;
/// The id of `hello_requests_total`, once defined.
var requests_metric: ?u32 = null;

comptime {
    proxy.checkCallbacks(@This());
}

pub export fn proxy_on_context_create(context_id: u32, parent_context_id: u32) void {
    // One root context (parent 0) per plugin; stream contexts need no state.
    _ = context_id;
    _ = parent_context_id;
}

pub export fn proxy_on_vm_start(root_context_id: u32, vm_configuration_size: u32) u32 {
    _ = root_context_id;
    _ = vm_configuration_size;
    return 1;
}

pub export fn proxy_on_configure(root_context_id: u32, configuration_size: u32) u32 {
    _ = root_context_id;
    const bytes = (proxy.getPluginConfiguration(configuration_size) catch null) orelse {
        proxy.err("hello: invalid configuration: none given; expected {{\"header\": \"<name>\", \"value\": \"<value>\"}}", .{});
        return 0;
    };
    defer proxy.freeHostBytes(bytes);

    const config = std.json.parseFromSlice(Config, proxy.allocator, bytes, .{
        .ignore_unknown_fields = true,
        .duplicate_field_behavior = .use_last,
        // Copy the strings: `bytes` is freed below.
        .allocate = .alloc_always,
    }) catch |e| {
        proxy.err("hello: invalid configuration ({s}); expected {{\"header\": \"<name>\", \"value\": \"<value>\"}}", .{@errorName(e)});
        return 0;
    };
    if (config.value.header.len == 0) {
        config.deinit();
        proxy.err("hello: invalid configuration: \"header\" is empty", .{});
        return 0;
    }

    if (requests_metric == null) {
        requests_metric = proxy.defineMetric(.counter, "hello_requests_total") catch |e| {
            config.deinit();
            proxy.err("hello: cannot define hello_requests_total ({s})", .{@errorName(e)});
            return 0;
        };
    }
    if (parsed) |old| old.deinit();
    parsed = config;
    return 1;
}

pub export fn proxy_on_request_headers(context_id: u32, num_headers: u32, end_of_stream: u32) proxy.Action {
    _ = context_id;
    _ = num_headers;
    _ = end_of_stream;
    const config = (parsed orelse return .@"continue").value;

    if (requests_metric) |id| proxy.incrementMetric(id, 1) catch {};

    const method = proxy.getHeader(.http_request_headers, ":method") catch null;
    defer if (method) |m| proxy.freeHostBytes(m);
    const path = proxy.getHeader(.http_request_headers, ":path") catch null;
    defer if (path) |p| proxy.freeHostBytes(p);
    const m = method orelse "";
    const p = path orelse "";

    proxy.info("hello: {s} {s}", .{ m, p });

    if (std.mem.eql(u8, m, "GET") and std.mem.eql(u8, p, "/hello-local")) {
        proxy.sendLocalResponse(200, "", "hello\n", &.{
            .{ "content-type", "text/plain" },
            .{ config.header, config.value },
        }, proxy.no_grpc_status) catch |e| {
            proxy.err("hello: local response failed ({s})", .{@errorName(e)});
            return .@"continue";
        };
        return .pause;
    }
    return .@"continue";
}

pub export fn proxy_on_response_headers(context_id: u32, num_headers: u32, end_of_stream: u32) proxy.Action {
    _ = context_id;
    _ = num_headers;
    _ = end_of_stream;
    const config = (parsed orelse return .@"continue").value;
    proxy.addHeader(.http_response_headers, config.header, config.value) catch |e| {
        proxy.warn("hello: cannot add {s} ({s})", .{ config.header, @errorName(e) });
    };
    return .@"continue";
}
