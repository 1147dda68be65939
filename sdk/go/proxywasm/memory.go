package proxywasm

import "unsafe"

// Memory the host asks for (proxy_on_memory_allocate) is ordinary Go heap
// memory. Go's garbage collector does not move heap objects, but it does
// free any it cannot reach, and the host's only reference to a buffer is
// an address in linear memory, which the collector does not see. So every
// buffer handed to the host is kept in hostMemory, by address, until the
// SDK turns the address the host returns into a Go slice (hostBytes: from
// then on the slice keeps it alive), or, for a buffer the host allocated
// but never returned (a hostcall that failed after allocating), until the
// next top-level callback starts.
var hostMemory = map[uint32][]byte{}

// callDepth counts the callbacks running: only proxy_on_memory_allocate
// is called re-entrantly (from inside a hostcall), and it must not drop
// buffers a hostcall in progress has not returned yet.
var callDepth int

// allocateForHost implements proxy_on_memory_allocate.
func allocateForHost(size uint32) uint32 {
	n := size
	if n == 0 {
		// A valid, unique, non-zero address even for an empty value.
		n = 1
	}
	buf := make([]byte, n)
	addr := uint32(uintptr(unsafe.Pointer(unsafe.SliceData(buf))))
	hostMemory[addr] = buf
	return addr
}

// hostBytes takes the buffer the host returned at addr (size bytes) out of
// hostMemory and returns it as a Go slice, which keeps it alive for as
// long as the plugin uses it; no copy is made. An address this module's
// allocator did not hand out (a host that does not use
// proxy_on_memory_allocate) is refused rather than read.
func hostBytes(addr, size uint32) ([]byte, error) {
	buf, ours := hostMemory[addr]
	if ours {
		delete(hostMemory, addr)
	}
	if size == 0 {
		return []byte{}, nil
	}
	if !ours || uint32(len(buf)) < size {
		return nil, ErrInvalidMemoryAccess
	}
	return buf[:size:size], nil
}

// enterCallback runs at the start of every callback the host calls: at
// the top level it releases the buffers left over from earlier hostcalls,
// and it makes contextID the current context (the one DispatchHttpCall
// and friends remember as the caller).
func enterCallback(contextID uint32) (previous uint32) {
	if callDepth == 0 && len(hostMemory) > 0 {
		clear(hostMemory)
	}
	callDepth++
	previous = state.current
	state.current = contextID
	return previous
}

func leaveCallback(previous uint32) {
	callDepth--
	state.current = previous
}

// bytesPtr and stringPtr pass Go memory to the host (read-only for it).
func bytesPtr(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

func stringPtr(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }
