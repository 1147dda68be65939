package proxywasm

// VMContext is the VM-wide context: there is one per Wasm VM, created by
// SetVMContext before the host calls anything else. It creates one
// PluginContext per plugin (root context) the host starts on this VM.
type VMContext interface {
	// OnVMStart is called once when the VM starts; the VM configuration
	// (vmConfigurationSize bytes) is read with GetVMConfiguration.
	// Returning false makes the VM fail to start.
	OnVMStart(vmConfigurationSize int) bool
	// NewPluginContext creates the context of a plugin (root context).
	NewPluginContext(contextID uint32) PluginContext
}

// PluginContext is a plugin's root context: configuration, timers,
// shared queues, and the factory of its per-stream contexts. Embed
// DefaultPluginContext to implement only what you need.
type PluginContext interface {
	// OnPluginStart is called when the plugin is configured (again on a
	// reconfiguration); the configuration (pluginConfigurationSize bytes)
	// is read with GetPluginConfiguration. Returning false refuses it:
	// the plugin does not start.
	OnPluginStart(pluginConfigurationSize int) bool
	// OnPluginDone is called when the host is done with the plugin.
	// Returning false defers its deletion until PluginDone is called.
	OnPluginDone() bool
	// OnTick is called every tick period (SetTickPeriodMilliseconds).
	OnTick()
	// OnQueueReady is called when an item was enqueued on a shared queue
	// this plugin registered.
	OnQueueReady(queueID uint32)
	// NewHttpContext creates the context of one HTTP stream; returning
	// nil leaves the stream alone (NewTcpContext is tried next).
	NewHttpContext(contextID uint32) HttpContext
	// NewTcpContext creates the context of one TCP connection; returning
	// nil leaves the connection alone.
	NewTcpContext(contextID uint32) TcpContext
}

// HttpContext handles one HTTP request/response pair. Embed
// DefaultHttpContext to implement only what you need. The num/size
// arguments are what the host reports; the values themselves are read
// with GetHttpRequestHeaders, GetHttpRequestBody and friends.
type HttpContext interface {
	OnHttpRequestHeaders(numHeaders int, endOfStream bool) Action
	OnHttpRequestBody(bodySize int, endOfStream bool) Action
	OnHttpRequestTrailers(numTrailers int) Action
	OnHttpResponseHeaders(numHeaders int, endOfStream bool) Action
	OnHttpResponseBody(bodySize int, endOfStream bool) Action
	OnHttpResponseTrailers(numTrailers int) Action
	// OnHttpStreamDone is called when the stream is over (proxy_on_log):
	// request and response headers can still be read.
	OnHttpStreamDone()
}

// TcpContext handles one TCP connection. Embed DefaultTcpContext to
// implement only what you need. (weft does not run TCP filters yet.)
type TcpContext interface {
	OnNewConnection() Action
	OnDownstreamData(dataSize int, endOfStream bool) Action
	OnDownstreamClose(peerType PeerType)
	OnUpstreamData(dataSize int, endOfStream bool) Action
	OnUpstreamClose(peerType PeerType)
	OnStreamDone()
}

// DefaultVMContext accepts the VM start and creates no plugin context.
type DefaultVMContext struct{}

func (DefaultVMContext) OnVMStart(int) bool                    { return true }
func (DefaultVMContext) NewPluginContext(uint32) PluginContext { return &DefaultPluginContext{} }

// DefaultPluginContext implements PluginContext doing nothing: it accepts
// any configuration and creates no stream contexts.
type DefaultPluginContext struct{}

func (*DefaultPluginContext) OnPluginStart(int) bool            { return true }
func (*DefaultPluginContext) OnPluginDone() bool                { return true }
func (*DefaultPluginContext) OnTick()                           {}
func (*DefaultPluginContext) OnQueueReady(uint32)               {}
func (*DefaultPluginContext) NewHttpContext(uint32) HttpContext { return nil }
func (*DefaultPluginContext) NewTcpContext(uint32) TcpContext   { return nil }

// DefaultHttpContext implements HttpContext letting everything through.
type DefaultHttpContext struct{}

func (*DefaultHttpContext) OnHttpRequestHeaders(int, bool) Action  { return ActionContinue }
func (*DefaultHttpContext) OnHttpRequestBody(int, bool) Action     { return ActionContinue }
func (*DefaultHttpContext) OnHttpRequestTrailers(int) Action       { return ActionContinue }
func (*DefaultHttpContext) OnHttpResponseHeaders(int, bool) Action { return ActionContinue }
func (*DefaultHttpContext) OnHttpResponseBody(int, bool) Action    { return ActionContinue }
func (*DefaultHttpContext) OnHttpResponseTrailers(int) Action      { return ActionContinue }
func (*DefaultHttpContext) OnHttpStreamDone()                      {}

// DefaultTcpContext implements TcpContext letting everything through.
type DefaultTcpContext struct{}

func (*DefaultTcpContext) OnNewConnection() Action           { return ActionContinue }
func (*DefaultTcpContext) OnDownstreamData(int, bool) Action { return ActionContinue }
func (*DefaultTcpContext) OnDownstreamClose(PeerType)        {}
func (*DefaultTcpContext) OnUpstreamData(int, bool) Action   { return ActionContinue }
func (*DefaultTcpContext) OnUpstreamClose(PeerType)          {}
func (*DefaultTcpContext) OnStreamDone()                     {}

// SetVMContext registers the VM context. Call it from an init function
// (or main): the host calls _initialize, which runs the package
// initialisers, before any callback.
func SetVMContext(vm VMContext) {
	if vm == nil {
		vm = DefaultVMContext{}
	}
	state.vm = vm
}

// SetPluginContext registers a plugin-context factory with a VM context
// that accepts any VM configuration: the short form of SetVMContext for
// filters that need no VM-level state.
func SetPluginContext(newPluginContext func(contextID uint32) PluginContext) {
	SetVMContext(pluginOnlyVM{newPluginContext})
}

type pluginOnlyVM struct {
	newPlugin func(contextID uint32) PluginContext
}

func (pluginOnlyVM) OnVMStart(int) bool { return true }
func (v pluginOnlyVM) NewPluginContext(contextID uint32) PluginContext {
	return v.newPlugin(contextID)
}
