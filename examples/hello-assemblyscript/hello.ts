// hello-assemblyscript: the hello example filter (see examples/hello.test.yaml)
// written against weft's AssemblyScript SDK (sdk/assemblyscript).
//
// Plugin configuration (JSON): {"header": "x-hello", "value": "world"}.
// - every request is logged at INFO ("hello: <METHOD> <PATH>") and counted
//   in the counter hello_requests_total;
// - GET /hello-local is answered by the filter: 200, "hello\n";
// - every response gets the configured header.

import {
  Action,
  HeaderPair,
  MapType,
  Metric,
  MetricType,
  defineMetric,
  getHeader,
  addHeader,
  getPluginConfiguration,
  logError,
  logInfo,
  parseJSON,
  sendLocalResponse,
} from "../../sdk/assemblyscript/index";

export { proxy_abi_version_0_2_1, proxy_on_memory_allocate } from "../../sdk/assemblyscript/exports";

let header = "";
let value = "";
let requests: Metric | null = null;

export function proxy_on_context_create(context_id: u32, parent_context_id: u32): void {}

export function proxy_on_vm_start(root_context_id: u32, vm_configuration_size: u32): bool {
  return true;
}

export function proxy_on_configure(root_context_id: u32, plugin_configuration_size: u32): bool {
  const text = getPluginConfiguration(plugin_configuration_size);
  if (text == null) {
    logError("hello: invalid configuration: missing; expected {\"header\": \"<name>\", \"value\": \"<value>\"}");
    return false;
  }
  const config = parseJSON(text);
  if (config == null || !config.isObject()) {
    logError("hello: invalid configuration: not a JSON object");
    return false;
  }
  const h = config.getString("header");
  const v = config.getString("value");
  if (h == null || h.length == 0 || v == null) {
    logError("hello: invalid configuration: needs a non-empty string \"header\" and a string \"value\"");
    return false;
  }
  header = h;
  value = v;
  if (requests == null) {
    requests = defineMetric(MetricType.Counter, "hello_requests_total");
  }
  return true;
}

export function proxy_on_request_headers(context_id: u32, num_headers: u32, end_of_stream: bool): Action {
  let method = getHeader(MapType.HttpRequestHeaders, ":method");
  let path = getHeader(MapType.HttpRequestHeaders, ":path");
  if (method == null) method = "";
  if (path == null) path = "";
  logInfo("hello: " + method + " " + path);
  const counter = requests;
  if (counter != null) counter.increment(1);

  if (method == "GET" && path == "/hello-local") {
    sendLocalResponse(200, "", "hello\n", [
      new HeaderPair("content-type", "text/plain"),
      new HeaderPair(header, value),
    ], -1);
    return Action.Pause;
  }
  return Action.Continue;
}

export function proxy_on_response_headers(context_id: u32, num_headers: u32, end_of_stream: bool): Action {
  addHeader(MapType.HttpResponseHeaders, header, value);
  return Action.Continue;
}
