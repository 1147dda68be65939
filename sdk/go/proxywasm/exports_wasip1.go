//go:build wasip1

package proxywasm

// The callbacks of proxy-wasm ABI v0.2.1 this module exports. Each one
// runs the SDK's bookkeeping (enterCallback/leaveCallback: the current
// context, the release of host buffers) around the logic in dispatch.go.
// (proxy_on_foreign_function is not exported: no SDK API uses it yet.)

// proxy_abi_version_0_2_1 tells the host which ABI this module speaks.
// It is never called.
//
//go:wasmexport proxy_abi_version_0_2_1
func exportAbiVersion() {}

// proxy_on_memory_allocate hands the host Go heap memory, kept reachable
// until the SDK takes it back (see memory.go). It does not run the
// callback bookkeeping: the host calls it from inside hostcalls.
//
//go:wasmexport proxy_on_memory_allocate
func exportOnMemoryAllocate(size uint32) uint32 {
	return allocateForHost(size)
}

func boolResult(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

//go:wasmexport proxy_on_context_create
func exportOnContextCreate(contextID, parentID uint32) {
	defer leaveCallback(enterCallback(contextID))
	onContextCreate(contextID, parentID)
}

//go:wasmexport proxy_on_vm_start
func exportOnVMStart(rootID, vmConfigurationSize uint32) uint32 {
	defer leaveCallback(enterCallback(rootID))
	return boolResult(onVMStart(rootID, vmConfigurationSize))
}

//go:wasmexport proxy_on_configure
func exportOnConfigure(rootID, pluginConfigurationSize uint32) uint32 {
	defer leaveCallback(enterCallback(rootID))
	return boolResult(onConfigure(rootID, pluginConfigurationSize))
}

//go:wasmexport proxy_on_tick
func exportOnTick(rootID uint32) {
	defer leaveCallback(enterCallback(rootID))
	onTick(rootID)
}

//go:wasmexport proxy_on_queue_ready
func exportOnQueueReady(rootID, queueID uint32) {
	defer leaveCallback(enterCallback(rootID))
	onQueueReady(rootID, queueID)
}

//go:wasmexport proxy_on_done
func exportOnDone(contextID uint32) uint32 {
	defer leaveCallback(enterCallback(contextID))
	return boolResult(onDone(contextID))
}

//go:wasmexport proxy_on_log
func exportOnLog(contextID uint32) {
	defer leaveCallback(enterCallback(contextID))
	onLog(contextID)
}

//go:wasmexport proxy_on_delete
func exportOnDelete(contextID uint32) {
	defer leaveCallback(enterCallback(contextID))
	onDelete(contextID)
}

//go:wasmexport proxy_on_request_headers
func exportOnRequestHeaders(contextID, numHeaders, endOfStream uint32) uint32 {
	defer leaveCallback(enterCallback(contextID))
	return uint32(onRequestHeaders(contextID, numHeaders, endOfStream != 0))
}

//go:wasmexport proxy_on_request_body
func exportOnRequestBody(contextID, bodySize, endOfStream uint32) uint32 {
	defer leaveCallback(enterCallback(contextID))
	return uint32(onRequestBody(contextID, bodySize, endOfStream != 0))
}

//go:wasmexport proxy_on_request_trailers
func exportOnRequestTrailers(contextID, numTrailers uint32) uint32 {
	defer leaveCallback(enterCallback(contextID))
	return uint32(onRequestTrailers(contextID, numTrailers))
}

//go:wasmexport proxy_on_response_headers
func exportOnResponseHeaders(contextID, numHeaders, endOfStream uint32) uint32 {
	defer leaveCallback(enterCallback(contextID))
	return uint32(onResponseHeaders(contextID, numHeaders, endOfStream != 0))
}

//go:wasmexport proxy_on_response_body
func exportOnResponseBody(contextID, bodySize, endOfStream uint32) uint32 {
	defer leaveCallback(enterCallback(contextID))
	return uint32(onResponseBody(contextID, bodySize, endOfStream != 0))
}

//go:wasmexport proxy_on_response_trailers
func exportOnResponseTrailers(contextID, numTrailers uint32) uint32 {
	defer leaveCallback(enterCallback(contextID))
	return uint32(onResponseTrailers(contextID, numTrailers))
}

//go:wasmexport proxy_on_new_connection
func exportOnNewConnection(contextID uint32) uint32 {
	defer leaveCallback(enterCallback(contextID))
	return uint32(onNewConnection(contextID))
}

//go:wasmexport proxy_on_downstream_data
func exportOnDownstreamData(contextID, dataSize, endOfStream uint32) uint32 {
	defer leaveCallback(enterCallback(contextID))
	return uint32(onDownstreamData(contextID, dataSize, endOfStream != 0))
}

//go:wasmexport proxy_on_downstream_connection_close
func exportOnDownstreamConnectionClose(contextID, peerType uint32) {
	defer leaveCallback(enterCallback(contextID))
	onDownstreamConnectionClose(contextID, peerType)
}

//go:wasmexport proxy_on_upstream_data
func exportOnUpstreamData(contextID, dataSize, endOfStream uint32) uint32 {
	defer leaveCallback(enterCallback(contextID))
	return uint32(onUpstreamData(contextID, dataSize, endOfStream != 0))
}

//go:wasmexport proxy_on_upstream_connection_close
func exportOnUpstreamConnectionClose(contextID, peerType uint32) {
	defer leaveCallback(enterCallback(contextID))
	onUpstreamConnectionClose(contextID, peerType)
}

//go:wasmexport proxy_on_http_call_response
func exportOnHttpCallResponse(rootID, calloutID, numHeaders, bodySize, numTrailers uint32) {
	defer leaveCallback(enterCallback(rootID))
	onHttpCallResponse(rootID, calloutID, numHeaders, bodySize, numTrailers)
}

//go:wasmexport proxy_on_grpc_receive_initial_metadata
func exportOnGrpcReceiveInitialMetadata(rootID, callID, numElements uint32) {
	defer leaveCallback(enterCallback(rootID))
	onGrpcReceiveInitialMetadata(rootID, callID, numElements)
}

//go:wasmexport proxy_on_grpc_receive
func exportOnGrpcReceive(rootID, callID, messageSize uint32) {
	defer leaveCallback(enterCallback(rootID))
	onGrpcReceive(rootID, callID, messageSize)
}

//go:wasmexport proxy_on_grpc_receive_trailing_metadata
func exportOnGrpcReceiveTrailingMetadata(rootID, callID, numElements uint32) {
	defer leaveCallback(enterCallback(rootID))
	onGrpcReceiveTrailingMetadata(rootID, callID, numElements)
}

//go:wasmexport proxy_on_grpc_close
func exportOnGrpcClose(rootID, callID, statusCode uint32) {
	defer leaveCallback(enterCallback(rootID))
	onGrpcClose(rootID, callID, statusCode)
}
