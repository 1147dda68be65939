package proxywasm

// The callbacks' logic, independent of how they are exported (see
// exports_wasip1.go): which Go context a context id belongs to, and
// which Go function an HTTP or gRPC call-out answers to.

type streamContext struct {
	rootID uint32
	http   HttpContext
	tcp    TcpContext
}

type httpCallout struct {
	callerID uint32 // the context that dispatched the call
	callback func(numHeaders, bodySize, numTrailers int)
}

type grpcCallout struct {
	callerID  uint32
	callbacks GrpcCallbacks
}

type sdkState struct {
	vm       VMContext
	plugins  map[uint32]PluginContext
	streams  map[uint32]*streamContext
	http     map[uint32]httpCallout
	grpc     map[uint32]grpcCallout
	current  uint32 // the context whose callback is running
	warnedVM bool
}

var state = sdkState{
	plugins: map[uint32]PluginContext{},
	streams: map[uint32]*streamContext{},
	http:    map[uint32]httpCallout{},
	grpc:    map[uint32]grpcCallout{},
}

func (s *sdkState) vmContext() VMContext {
	if s.vm == nil {
		if !s.warnedVM {
			s.warnedVM = true
			LogCritical("proxywasm: no VM context registered; call proxywasm.SetVMContext or SetPluginContext from an init function")
		}
		return DefaultVMContext{}
	}
	return s.vm
}

func onContextCreate(contextID, parentID uint32) {
	if parentID == 0 {
		plugin := state.vmContext().NewPluginContext(contextID)
		if plugin == nil {
			plugin = &DefaultPluginContext{}
		}
		state.plugins[contextID] = plugin
		return
	}
	plugin, ok := state.plugins[parentID]
	if !ok {
		LogErrorf("proxywasm: context %d created under unknown plugin context %d", contextID, parentID)
		return
	}
	if h := plugin.NewHttpContext(contextID); h != nil {
		state.streams[contextID] = &streamContext{rootID: parentID, http: h}
		return
	}
	if t := plugin.NewTcpContext(contextID); t != nil {
		state.streams[contextID] = &streamContext{rootID: parentID, tcp: t}
	}
}

func onVMStart(rootID uint32, vmConfigurationSize uint32) bool {
	return state.vmContext().OnVMStart(int(vmConfigurationSize))
}

func onConfigure(rootID uint32, pluginConfigurationSize uint32) bool {
	plugin, ok := state.plugins[rootID]
	if !ok {
		LogErrorf("proxywasm: proxy_on_configure for unknown plugin context %d", rootID)
		return false
	}
	return plugin.OnPluginStart(int(pluginConfigurationSize))
}

func onTick(rootID uint32) {
	if plugin, ok := state.plugins[rootID]; ok {
		plugin.OnTick()
	}
}

func onQueueReady(rootID, queueID uint32) {
	if plugin, ok := state.plugins[rootID]; ok {
		plugin.OnQueueReady(queueID)
	}
}

func onDone(contextID uint32) bool {
	if plugin, ok := state.plugins[contextID]; ok {
		return plugin.OnPluginDone()
	}
	return true
}

func onLog(contextID uint32) {
	s, ok := state.streams[contextID]
	if !ok {
		return
	}
	if s.http != nil {
		s.http.OnHttpStreamDone()
	} else if s.tcp != nil {
		s.tcp.OnStreamDone()
	}
}

func onDelete(contextID uint32) {
	delete(state.streams, contextID)
	delete(state.plugins, contextID)
}

func httpContext(contextID uint32) HttpContext {
	if s, ok := state.streams[contextID]; ok {
		return s.http
	}
	return nil
}

func tcpContext(contextID uint32) TcpContext {
	if s, ok := state.streams[contextID]; ok {
		return s.tcp
	}
	return nil
}

func onRequestHeaders(contextID, numHeaders uint32, endOfStream bool) Action {
	if h := httpContext(contextID); h != nil {
		return h.OnHttpRequestHeaders(int(numHeaders), endOfStream)
	}
	return ActionContinue
}

func onRequestBody(contextID, bodySize uint32, endOfStream bool) Action {
	if h := httpContext(contextID); h != nil {
		return h.OnHttpRequestBody(int(bodySize), endOfStream)
	}
	return ActionContinue
}

func onRequestTrailers(contextID, numTrailers uint32) Action {
	if h := httpContext(contextID); h != nil {
		return h.OnHttpRequestTrailers(int(numTrailers))
	}
	return ActionContinue
}

func onResponseHeaders(contextID, numHeaders uint32, endOfStream bool) Action {
	if h := httpContext(contextID); h != nil {
		return h.OnHttpResponseHeaders(int(numHeaders), endOfStream)
	}
	return ActionContinue
}

func onResponseBody(contextID, bodySize uint32, endOfStream bool) Action {
	if h := httpContext(contextID); h != nil {
		return h.OnHttpResponseBody(int(bodySize), endOfStream)
	}
	return ActionContinue
}

func onResponseTrailers(contextID, numTrailers uint32) Action {
	if h := httpContext(contextID); h != nil {
		return h.OnHttpResponseTrailers(int(numTrailers))
	}
	return ActionContinue
}

func onNewConnection(contextID uint32) Action {
	if t := tcpContext(contextID); t != nil {
		return t.OnNewConnection()
	}
	return ActionContinue
}

func onDownstreamData(contextID, dataSize uint32, endOfStream bool) Action {
	if t := tcpContext(contextID); t != nil {
		return t.OnDownstreamData(int(dataSize), endOfStream)
	}
	return ActionContinue
}

func onDownstreamConnectionClose(contextID, peer uint32) {
	if t := tcpContext(contextID); t != nil {
		t.OnDownstreamClose(PeerType(peer))
	}
}

func onUpstreamData(contextID, dataSize uint32, endOfStream bool) Action {
	if t := tcpContext(contextID); t != nil {
		return t.OnUpstreamData(int(dataSize), endOfStream)
	}
	return ActionContinue
}

func onUpstreamConnectionClose(contextID, peer uint32) {
	if t := tcpContext(contextID); t != nil {
		t.OnUpstreamClose(PeerType(peer))
	}
}

// becomeCaller makes the context that started a call-out the effective
// one again (when it is not the plugin context the host called back on and
// still exists), so the callback can read and resume that stream.
func becomeCaller(rootID, callerID uint32) {
	if callerID == rootID || callerID == 0 {
		return
	}
	if _, alive := state.streams[callerID]; !alive {
		return
	}
	if proxySetEffectiveContext(callerID) == 0 {
		state.current = callerID
	}
}

func onHttpCallResponse(rootID, calloutID, numHeaders, bodySize, numTrailers uint32) {
	c, ok := state.http[calloutID]
	if !ok {
		return
	}
	delete(state.http, calloutID)
	becomeCaller(rootID, c.callerID)
	if c.callback != nil {
		c.callback(int(numHeaders), int(bodySize), int(numTrailers))
	}
}

func grpcCall(rootID, callID uint32) (grpcCallout, bool) {
	c, ok := state.grpc[callID]
	if ok {
		becomeCaller(rootID, c.callerID)
	}
	return c, ok
}

func onGrpcReceiveInitialMetadata(rootID, callID, numElements uint32) {
	if c, ok := grpcCall(rootID, callID); ok && c.callbacks.OnInitialMetadata != nil {
		c.callbacks.OnInitialMetadata(int(numElements))
	}
}

func onGrpcReceive(rootID, callID, messageSize uint32) {
	if c, ok := grpcCall(rootID, callID); ok && c.callbacks.OnMessage != nil {
		c.callbacks.OnMessage(int(messageSize))
	}
}

func onGrpcReceiveTrailingMetadata(rootID, callID, numElements uint32) {
	if c, ok := grpcCall(rootID, callID); ok && c.callbacks.OnTrailingMetadata != nil {
		c.callbacks.OnTrailingMetadata(int(numElements))
	}
}

func onGrpcClose(rootID, callID, statusCode uint32) {
	c, ok := grpcCall(rootID, callID)
	if !ok {
		return
	}
	delete(state.grpc, callID)
	if c.callbacks.OnClose != nil {
		c.callbacks.OnClose(int32(statusCode))
	}
}
