// compat-proxy-runtime: a filter written with the published AssemblyScript
// SDK, @solo-io/proxy-runtime 0.1.8 (AssemblyScript 0.14.9), kept to check
// that modules from that toolchain load and run on weft. Such modules
// export proxy_abi_version_0_2_0, allocate through an exported `malloc`
// and import wasi_unstable.proc_exit (the SDK's abort handler).
//
// - logs every request at INFO: "compat: <METHOD> <PATH>";
// - adds `x-compat: proxy-runtime` to every response.
//
// Root id: the SDK creates the root context registered under the plugin's
// root_id (the `plugin_root_id` property), here "compat".

export * from "@solo-io/proxy-runtime/proxy"; // the callbacks and malloc the host calls
import {
  RootContext,
  Context,
  registerRootContext,
  FilterHeadersStatusValues,
  stream_context,
  log,
  LogLevelValues,
} from "@solo-io/proxy-runtime";

class CompatRoot extends RootContext {
  createContext(context_id: u32): Context {
    return new CompatContext(context_id, this);
  }
}

class CompatContext extends Context {
  constructor(context_id: u32, root_context: CompatRoot) {
    super(context_id, root_context);
  }

  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const method = stream_context.headers.request.get(":method");
    const path = stream_context.headers.request.get(":path");
    log(LogLevelValues.info, "compat: " + method + " " + path);
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add("x-compat", "proxy-runtime");
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32): RootContext => {
  return new CompatRoot(context_id);
}, "compat");
