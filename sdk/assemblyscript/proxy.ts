// A thin helper layer over abi.ts: strings in and out (UTF-8 on the wire),
// host-allocated memory copied and freed, statuses as the Status enum.

import * as abi from "./abi";
import { LogLevel, Status, MapType, BufferType, MetricType } from "./types";

// Scratch space for the host's return_* out-parameters (two pointers, or a
// u64). Static data: never moved, never collected.
const RET0: usize = memory.data(16, 8);
const RET1: usize = RET0 + 8;

/** Takes (copies, then frees) a block the host allocated through proxy_on_memory_allocate. */
function takeString(ptr: usize, len: usize): string {
  const s = len > 0 ? String.UTF8.decodeUnsafe(ptr, len) : "";
  if (ptr != 0) heap.free(ptr);
  return s;
}

function takeBytes(ptr: usize, len: usize): ArrayBuffer {
  const buf = new ArrayBuffer(<i32>len);
  if (len > 0) memory.copy(changetype<usize>(buf), ptr, len);
  if (ptr != 0) heap.free(ptr);
  return buf;
}

function clearRet(): void {
  store<u64>(RET0, 0);
  store<u64>(RET1, 0);
}

// ---- Logging -----------------------------------------------------------

/** Logs `message` at `level` (proxy_log). */
export function log(level: LogLevel, message: string): Status {
  const buf = String.UTF8.encode(message);
  return <Status>abi.proxy_log(level, changetype<usize>(buf), <usize>buf.byteLength);
}
export function logTrace(message: string): void { log(LogLevel.Trace, message); }
export function logDebug(message: string): void { log(LogLevel.Debug, message); }
export function logInfo(message: string): void { log(LogLevel.Info, message); }
export function logWarn(message: string): void { log(LogLevel.Warn, message); }
export function logError(message: string): void { log(LogLevel.Error, message); }
export function logCritical(message: string): void { log(LogLevel.Critical, message); }

/** The host's current log level (Trace when it cannot say). */
export function getLogLevel(): LogLevel {
  store<u32>(RET0, 0);
  if (abi.proxy_get_log_level(RET0) != Status.Ok) return LogLevel.Trace;
  return <LogLevel>load<u32>(RET0);
}

// ---- HTTP fields (headers, trailers, metadata) -------------------------

/** One header (or trailer / metadata entry). */
export class HeaderPair {
  constructor(public key: string, public value: string) {}
}

/** The value of `key` in map `map`, or null when absent (or the map is not available). */
export function getHeader(map: MapType, key: string): string | null {
  const k = String.UTF8.encode(key);
  clearRet();
  const status = abi.proxy_get_header_map_value(map, changetype<usize>(k), <usize>k.byteLength, RET0, RET1);
  if (status != Status.Ok) return null;
  return takeString(load<usize>(RET0), load<usize>(RET1));
}

/** Adds `key: value` to map `map` (an existing value is kept; proxy_add_header_map_value). */
export function addHeader(map: MapType, key: string, value: string): Status {
  const k = String.UTF8.encode(key);
  const v = String.UTF8.encode(value);
  return <Status>abi.proxy_add_header_map_value(map, changetype<usize>(k), <usize>k.byteLength, changetype<usize>(v), <usize>v.byteLength);
}

/** Sets `key: value` in map `map`, replacing any value (proxy_replace_header_map_value). */
export function replaceHeader(map: MapType, key: string, value: string): Status {
  const k = String.UTF8.encode(key);
  const v = String.UTF8.encode(value);
  return <Status>abi.proxy_replace_header_map_value(map, changetype<usize>(k), <usize>k.byteLength, changetype<usize>(v), <usize>v.byteLength);
}

/** Removes `key` from map `map`. */
export function removeHeader(map: MapType, key: string): Status {
  const k = String.UTF8.encode(key);
  return <Status>abi.proxy_remove_header_map_value(map, changetype<usize>(k), <usize>k.byteLength);
}

/** All pairs of map `map`, in order (empty when the map is not available). */
export function getHeaders(map: MapType): Array<HeaderPair> {
  clearRet();
  if (abi.proxy_get_header_map_pairs(map, RET0, RET1) != Status.Ok) return new Array<HeaderPair>();
  const data = takeBytes(load<usize>(RET0), load<usize>(RET1));
  return deserializeHeaders(data);
}

/** Replaces all of map `map` with `pairs`. */
export function setHeaders(map: MapType, pairs: Array<HeaderPair>): Status {
  const data = serializeHeaders(pairs);
  return <Status>abi.proxy_set_header_map_pairs(map, changetype<usize>(data), <usize>data.byteLength);
}

/**
 * Serializes pairs the way the ABI wants them: u32 count, then u32 key and
 * value lengths for each pair, then each key and value followed by a NUL.
 * All integers little-endian (wasm's own byte order).
 */
export function serializeHeaders(pairs: Array<HeaderPair>): ArrayBuffer {
  const n = pairs.length;
  const keys = new Array<ArrayBuffer>(n);
  const values = new Array<ArrayBuffer>(n);
  let size = 4 + n * 8;
  for (let i = 0; i < n; i++) {
    const k = String.UTF8.encode(pairs[i].key);
    const v = String.UTF8.encode(pairs[i].value);
    keys[i] = k;
    values[i] = v;
    size += k.byteLength + 1 + v.byteLength + 1;
  }
  const out = new ArrayBuffer(size);
  const base = changetype<usize>(out);
  store<u32>(base, <u32>n);
  let p = base + 4 + <usize>n * 8;
  for (let i = 0; i < n; i++) {
    const k = keys[i];
    const v = values[i];
    store<u32>(base + 4 + <usize>i * 8, <u32>k.byteLength);
    store<u32>(base + 8 + <usize>i * 8, <u32>v.byteLength);
    memory.copy(p, changetype<usize>(k), <usize>k.byteLength);
    p += <usize>k.byteLength;
    store<u8>(p, 0);
    p += 1;
    memory.copy(p, changetype<usize>(v), <usize>v.byteLength);
    p += <usize>v.byteLength;
    store<u8>(p, 0);
    p += 1;
  }
  return out;
}

/** The inverse of serializeHeaders; stops at the first inconsistency. */
export function deserializeHeaders(data: ArrayBuffer): Array<HeaderPair> {
  const out = new Array<HeaderPair>();
  const size = <usize>data.byteLength;
  if (size < 4) return out;
  const base = changetype<usize>(data);
  const n = <usize>load<u32>(base);
  if (n > (size - 4) / 8) return out;
  let p = base + 4 + n * 8;
  const end = base + size;
  for (let i: usize = 0; i < n; i++) {
    const klen = <usize>load<u32>(base + 4 + i * 8);
    const vlen = <usize>load<u32>(base + 8 + i * 8);
    if (klen + vlen + 2 > end - p) break;
    const key = String.UTF8.decodeUnsafe(p, klen);
    p += klen + 1;
    const value = String.UTF8.decodeUnsafe(p, vlen);
    p += vlen + 1;
    out.push(new HeaderPair(key, value));
  }
  return out;
}

// ---- Local responses ---------------------------------------------------

/**
 * Answers the stream from the filter (proxy_send_local_response): `body`
 * is sent as UTF-8, `headers` are added to the response. The callback that
 * calls this should then return Action.Pause. `grpcStatus` -1 means none.
 */
export function sendLocalResponse(
  statusCode: u32,
  details: string,
  body: string,
  headers: Array<HeaderPair>,
  grpcStatus: i32 = -1,
): Status {
  return sendLocalResponseBytes(statusCode, details, String.UTF8.encode(body), headers, grpcStatus);
}

/** sendLocalResponse with a binary body. */
export function sendLocalResponseBytes(
  statusCode: u32,
  details: string,
  body: ArrayBuffer,
  headers: Array<HeaderPair>,
  grpcStatus: i32 = -1,
): Status {
  const d = String.UTF8.encode(details);
  const h = serializeHeaders(headers);
  return <Status>abi.proxy_send_local_response(
    statusCode,
    changetype<usize>(d), <usize>d.byteLength,
    changetype<usize>(body), <usize>body.byteLength,
    changetype<usize>(h), <usize>h.byteLength,
    grpcStatus,
  );
}

// ---- Buffers and configuration -----------------------------------------

/** Up to `maxSize` bytes of buffer `buffer` from `start`, or null when the buffer is not available. */
export function getBufferBytes(buffer: BufferType, start: usize, maxSize: usize): ArrayBuffer | null {
  clearRet();
  if (abi.proxy_get_buffer_bytes(buffer, start, maxSize, RET0, RET1) != Status.Ok) return null;
  return takeBytes(load<usize>(RET0), load<usize>(RET1));
}

/** Like getBufferBytes, decoded as UTF-8. */
export function getBufferString(buffer: BufferType, start: usize, maxSize: usize): string | null {
  clearRet();
  if (abi.proxy_get_buffer_bytes(buffer, start, maxSize, RET0, RET1) != Status.Ok) return null;
  return takeString(load<usize>(RET0), load<usize>(RET1));
}

/** The size of buffer `buffer`, or -1 when it is not available. */
export function getBufferSize(buffer: BufferType): i64 {
  clearRet();
  if (abi.proxy_get_buffer_status(buffer, RET0, RET1) != Status.Ok) return -1;
  return <i64>load<u32>(RET0);
}

/**
 * The plugin configuration as a string (call it in proxy_on_configure with
 * the size the host passed). null when there is none.
 */
export function getPluginConfiguration(size: usize): string | null {
  if (size == 0) return null;
  return getBufferString(BufferType.PluginConfiguration, 0, size);
}

/** The VM configuration as a string (in proxy_on_vm_start), or null. */
export function getVmConfiguration(size: usize): string | null {
  if (size == 0) return null;
  return getBufferString(BufferType.VmConfiguration, 0, size);
}

// ---- Metrics -----------------------------------------------------------

/** A metric defined with defineMetric. */
export class Metric {
  constructor(public id: u32) {}

  /** Adds `delta` (counters may only grow). */
  increment(delta: i64 = 1): Status {
    return <Status>abi.proxy_increment_metric(this.id, delta);
  }

  /** Sets the value (gauges) or records a sample (histograms). */
  record(value: u64): Status {
    return <Status>abi.proxy_record_metric(this.id, value);
  }

  /** The current value, or 0 when the host cannot say. */
  get(): u64 {
    store<u64>(RET0, 0);
    if (abi.proxy_get_metric(this.id, RET0) != Status.Ok) return 0;
    return load<u64>(RET0);
  }
}

/** Defines a metric (proxy_define_metric); null when the host refuses. */
export function defineMetric(type: MetricType, name: string): Metric | null {
  const n = String.UTF8.encode(name);
  store<u32>(RET0, 0);
  if (abi.proxy_define_metric(type, changetype<usize>(n), <usize>n.byteLength, RET0) != Status.Ok) return null;
  return new Metric(load<u32>(RET0));
}
