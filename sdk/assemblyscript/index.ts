// proxy-wasm ABI v0.2.1 for AssemblyScript: import this from a filter.
//
//   import { logInfo, getHeader, MapType, Action } from "<sdk>/index";
//   export { proxy_abi_version_0_2_1, proxy_on_memory_allocate } from "<sdk>/exports";
//
// The raw host functions are in abi.ts (`import * as abi from "<sdk>/abi"`).

export * from "./types";
export * from "./proxy";
export * from "./json";
