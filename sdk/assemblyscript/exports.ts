// The exports every proxy-wasm module needs and that do not depend on the
// filter. The filter's entry file re-exports them:
//
//   export { proxy_abi_version_0_2_1, proxy_on_memory_allocate } from "<sdk>/exports";

/** Marker: this module speaks proxy-wasm ABI v0.2.1. Never called. */
export function proxy_abi_version_0_2_1(): void {}

/**
 * The host allocates here the memory it hands back to the module (header
 * values, buffers, ...). `heap.alloc` takes a block from the runtime's TLSF
 * allocator that the garbage collector does not track, so it stays valid
 * (no collection cycle can reclaim it) until `heap.free` releases it; the
 * helpers in proxy.ts free each block once they have copied it.
 */
export function proxy_on_memory_allocate(memory_size: usize): usize {
  return heap.alloc(memory_size);
}
