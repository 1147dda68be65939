package proxywasm

import (
	"encoding/binary"
	"math"
	"runtime"
	"unsafe"
)

// All of these call the host, so they only work inside a callback the
// host is running (or, in a non-wasip1 build, answer ErrUnimplemented).

// ---- Logging -------------------------------------------------------------

func logMessage(level LogLevel, msg string) {
	proxyLog(uint32(level), stringPtr(msg), uint32(len(msg)))
}

func LogTrace(msg string)    { logMessage(LogLevelTrace, msg) }
func LogDebug(msg string)    { logMessage(LogLevelDebug, msg) }
func LogInfo(msg string)     { logMessage(LogLevelInfo, msg) }
func LogWarn(msg string)     { logMessage(LogLevelWarn, msg) }
func LogError(msg string)    { logMessage(LogLevelError, msg) }
func LogCritical(msg string) { logMessage(LogLevelCritical, msg) }

func LogTracef(format string, args ...any) { logMessage(LogLevelTrace, Sprintf(format, args...)) }
func LogDebugf(format string, args ...any) { logMessage(LogLevelDebug, Sprintf(format, args...)) }
func LogInfof(format string, args ...any)  { logMessage(LogLevelInfo, Sprintf(format, args...)) }
func LogWarnf(format string, args ...any)  { logMessage(LogLevelWarn, Sprintf(format, args...)) }
func LogErrorf(format string, args ...any) { logMessage(LogLevelError, Sprintf(format, args...)) }
func LogCriticalf(format string, args ...any) {
	logMessage(LogLevelCritical, Sprintf(format, args...))
}

// GetLogLevel returns the host's log level: messages below it are dropped,
// so a plugin can skip building them.
func GetLogLevel() (LogLevel, error) {
	var level uint32
	err := statusErr(proxyGetLogLevel(unsafe.Pointer(&level)))
	return LogLevel(level), err
}

// ---- Time and timers -----------------------------------------------------

// GetCurrentTimeNanoseconds returns the host's clock (Unix time, ns). The
// standard library's time.Now works too (WASI clock_time_get).
func GetCurrentTimeNanoseconds() (uint64, error) {
	var t uint64
	err := statusErr(proxyGetCurrentTimeNanoseconds(unsafe.Pointer(&t)))
	return t, err
}

// SetTickPeriodMilliseconds makes the host call the plugin context's
// OnTick every period milliseconds (0 stops the timer). Call it from
// OnPluginStart (or another plugin-context callback).
func SetTickPeriodMilliseconds(period uint32) error {
	return statusErr(proxySetTickPeriodMilliseconds(period))
}

// ---- Configuration -------------------------------------------------------

// GetPluginConfiguration returns the plugin configuration (in OnPluginStart).
func GetPluginConfiguration() ([]byte, error) {
	return getWholeBuffer(BufferTypePluginConfiguration)
}

// GetVMConfiguration returns the VM configuration (in OnVMStart).
func GetVMConfiguration() ([]byte, error) {
	return getWholeBuffer(BufferTypeVMConfiguration)
}

// ---- Buffers -------------------------------------------------------------

// GetBufferBytes returns up to maxSize bytes of a buffer from start.
func GetBufferBytes(bufferType BufferType, start, maxSize int) ([]byte, error) {
	var addr, size uint32
	err := statusErr(proxyGetBufferBytes(uint32(bufferType), clampU32(start), clampU32(maxSize),
		unsafe.Pointer(&addr), unsafe.Pointer(&size)))
	if err != nil {
		return nil, err
	}
	return hostBytes(addr, size)
}

// SetBufferBytes replaces size bytes of a buffer from start with data:
// start 0 and size 0 prepend, start past the end appends, start 0 and a
// size covering the buffer replaces it.
func SetBufferBytes(bufferType BufferType, start, size int, data []byte) error {
	return statusErr(proxySetBufferBytes(uint32(bufferType), clampU32(start), clampU32(size),
		bytesPtr(data), uint32(len(data))))
}

// GetBufferSize returns a buffer's size in bytes.
func GetBufferSize(bufferType BufferType) (int, error) {
	var size, flags uint32
	err := statusErr(proxyGetBufferStatus(uint32(bufferType), unsafe.Pointer(&size), unsafe.Pointer(&flags)))
	return int(size), err
}

func getWholeBuffer(bufferType BufferType) ([]byte, error) {
	size, err := GetBufferSize(bufferType)
	if err != nil {
		return nil, err
	}
	if size == 0 {
		return []byte{}, nil
	}
	return GetBufferBytes(bufferType, 0, size)
}

func replaceBuffer(bt BufferType, data []byte) error {
	return SetBufferBytes(bt, 0, math.MaxUint32, data)
}
func appendBuffer(bt BufferType, data []byte) error {
	return SetBufferBytes(bt, math.MaxUint32, 0, data)
}
func prependBuffer(bt BufferType, data []byte) error { return SetBufferBytes(bt, 0, 0, data) }

// GetHttpRequestBody returns up to maxSize bytes of the request body from
// start (in OnHttpRequestBody, or while the request is paused from it).
func GetHttpRequestBody(start, maxSize int) ([]byte, error) {
	return GetBufferBytes(BufferTypeHttpRequestBody, start, maxSize)
}
func ReplaceHttpRequestBody(body []byte) error { return replaceBuffer(BufferTypeHttpRequestBody, body) }
func AppendHttpRequestBody(data []byte) error  { return appendBuffer(BufferTypeHttpRequestBody, data) }
func PrependHttpRequestBody(data []byte) error { return prependBuffer(BufferTypeHttpRequestBody, data) }

// GetHttpResponseBody returns up to maxSize bytes of the response body
// from start (in OnHttpResponseBody, or while the response is paused).
func GetHttpResponseBody(start, maxSize int) ([]byte, error) {
	return GetBufferBytes(BufferTypeHttpResponseBody, start, maxSize)
}
func ReplaceHttpResponseBody(body []byte) error {
	return replaceBuffer(BufferTypeHttpResponseBody, body)
}
func AppendHttpResponseBody(data []byte) error { return appendBuffer(BufferTypeHttpResponseBody, data) }
func PrependHttpResponseBody(data []byte) error {
	return prependBuffer(BufferTypeHttpResponseBody, data)
}

// GetDownstreamData and friends work on TCP data (OnDownstreamData,
// OnUpstreamData).
func GetDownstreamData(start, maxSize int) ([]byte, error) {
	return GetBufferBytes(BufferTypeDownstreamData, start, maxSize)
}
func ReplaceDownstreamData(data []byte) error { return replaceBuffer(BufferTypeDownstreamData, data) }
func AppendDownstreamData(data []byte) error  { return appendBuffer(BufferTypeDownstreamData, data) }
func PrependDownstreamData(data []byte) error { return prependBuffer(BufferTypeDownstreamData, data) }
func GetUpstreamData(start, maxSize int) ([]byte, error) {
	return GetBufferBytes(BufferTypeUpstreamData, start, maxSize)
}
func ReplaceUpstreamData(data []byte) error { return replaceBuffer(BufferTypeUpstreamData, data) }
func AppendUpstreamData(data []byte) error  { return appendBuffer(BufferTypeUpstreamData, data) }
func PrependUpstreamData(data []byte) error { return prependBuffer(BufferTypeUpstreamData, data) }

// ---- Header maps ---------------------------------------------------------

// GetHeaderMap returns every pair of a map, in order.
func GetHeaderMap(mapType MapType) ([][2]string, error) {
	var addr, size uint32
	err := statusErr(proxyGetHeaderMapPairs(uint32(mapType), unsafe.Pointer(&addr), unsafe.Pointer(&size)))
	if err != nil {
		return nil, err
	}
	b, err := hostBytes(addr, size)
	if err != nil {
		return nil, err
	}
	return deserializeMap(b)
}

// SetHeaderMap replaces a whole map with pairs.
func SetHeaderMap(mapType MapType, pairs [][2]string) error {
	data := serializeMap(pairs)
	return statusErr(proxySetHeaderMapPairs(uint32(mapType), bytesPtr(data), uint32(len(data))))
}

// GetHeaderMapSize returns the serialized size of a map in bytes.
func GetHeaderMapSize(mapType MapType) (int, error) {
	var size uint32
	err := statusErr(proxyGetHeaderMapSize(uint32(mapType), unsafe.Pointer(&size)))
	return int(size), err
}

// GetHeaderMapValue returns the value of key (ErrNotFound when absent).
func GetHeaderMapValue(mapType MapType, key string) (string, error) {
	var addr, size uint32
	err := statusErr(proxyGetHeaderMapValue(uint32(mapType), stringPtr(key), uint32(len(key)),
		unsafe.Pointer(&addr), unsafe.Pointer(&size)))
	runtime.KeepAlive(key)
	if err != nil {
		return "", err
	}
	b, err := hostBytes(addr, size)
	return string(b), err
}

// AddHeaderMapValue adds key: value (after any value key already has).
func AddHeaderMapValue(mapType MapType, key, value string) error {
	return statusErr(proxyAddHeaderMapValue(uint32(mapType), stringPtr(key), uint32(len(key)),
		stringPtr(value), uint32(len(value))))
}

// ReplaceHeaderMapValue sets key to value, replacing what it had.
func ReplaceHeaderMapValue(mapType MapType, key, value string) error {
	return statusErr(proxyReplaceHeaderMapValue(uint32(mapType), stringPtr(key), uint32(len(key)),
		stringPtr(value), uint32(len(value))))
}

// RemoveHeaderMapValue removes key (no error when it is absent).
func RemoveHeaderMapValue(mapType MapType, key string) error {
	return statusErr(proxyRemoveHeaderMapValue(uint32(mapType), stringPtr(key), uint32(len(key))))
}

// Request headers: in OnHttpRequestHeaders, or while the request is paused
// from it; readable in OnHttpStreamDone.
func GetHttpRequestHeaders() ([][2]string, error) { return GetHeaderMap(MapTypeHttpRequestHeaders) }
func ReplaceHttpRequestHeaders(headers [][2]string) error {
	return SetHeaderMap(MapTypeHttpRequestHeaders, headers)
}
func GetHttpRequestHeader(key string) (string, error) {
	return GetHeaderMapValue(MapTypeHttpRequestHeaders, key)
}
func AddHttpRequestHeader(key, value string) error {
	return AddHeaderMapValue(MapTypeHttpRequestHeaders, key, value)
}
func ReplaceHttpRequestHeader(key, value string) error {
	return ReplaceHeaderMapValue(MapTypeHttpRequestHeaders, key, value)
}
func RemoveHttpRequestHeader(key string) error {
	return RemoveHeaderMapValue(MapTypeHttpRequestHeaders, key)
}

// Request trailers: in OnHttpRequestTrailers.
func GetHttpRequestTrailers() ([][2]string, error) { return GetHeaderMap(MapTypeHttpRequestTrailers) }
func ReplaceHttpRequestTrailers(trailers [][2]string) error {
	return SetHeaderMap(MapTypeHttpRequestTrailers, trailers)
}
func GetHttpRequestTrailer(key string) (string, error) {
	return GetHeaderMapValue(MapTypeHttpRequestTrailers, key)
}
func AddHttpRequestTrailer(key, value string) error {
	return AddHeaderMapValue(MapTypeHttpRequestTrailers, key, value)
}
func ReplaceHttpRequestTrailer(key, value string) error {
	return ReplaceHeaderMapValue(MapTypeHttpRequestTrailers, key, value)
}
func RemoveHttpRequestTrailer(key string) error {
	return RemoveHeaderMapValue(MapTypeHttpRequestTrailers, key)
}

// Response headers: in OnHttpResponseHeaders, or while the response is
// paused from it; readable in OnHttpStreamDone.
func GetHttpResponseHeaders() ([][2]string, error) { return GetHeaderMap(MapTypeHttpResponseHeaders) }
func ReplaceHttpResponseHeaders(headers [][2]string) error {
	return SetHeaderMap(MapTypeHttpResponseHeaders, headers)
}
func GetHttpResponseHeader(key string) (string, error) {
	return GetHeaderMapValue(MapTypeHttpResponseHeaders, key)
}
func AddHttpResponseHeader(key, value string) error {
	return AddHeaderMapValue(MapTypeHttpResponseHeaders, key, value)
}
func ReplaceHttpResponseHeader(key, value string) error {
	return ReplaceHeaderMapValue(MapTypeHttpResponseHeaders, key, value)
}
func RemoveHttpResponseHeader(key string) error {
	return RemoveHeaderMapValue(MapTypeHttpResponseHeaders, key)
}

// Response trailers: in OnHttpResponseTrailers.
func GetHttpResponseTrailers() ([][2]string, error) { return GetHeaderMap(MapTypeHttpResponseTrailers) }
func ReplaceHttpResponseTrailers(trailers [][2]string) error {
	return SetHeaderMap(MapTypeHttpResponseTrailers, trailers)
}
func GetHttpResponseTrailer(key string) (string, error) {
	return GetHeaderMapValue(MapTypeHttpResponseTrailers, key)
}
func AddHttpResponseTrailer(key, value string) error {
	return AddHeaderMapValue(MapTypeHttpResponseTrailers, key, value)
}
func ReplaceHttpResponseTrailer(key, value string) error {
	return ReplaceHeaderMapValue(MapTypeHttpResponseTrailers, key, value)
}
func RemoveHttpResponseTrailer(key string) error {
	return RemoveHeaderMapValue(MapTypeHttpResponseTrailers, key)
}

// ---- Stream control ------------------------------------------------------

// ContinueStream resumes a paused stream; CloseStream closes or resets it.
func ContinueStream(streamType StreamType) error {
	return statusErr(proxyContinueStream(uint32(streamType)))
}
func CloseStream(streamType StreamType) error { return statusErr(proxyCloseStream(uint32(streamType))) }

// ResumeHttpRequest resumes a request paused with ActionPause (from a
// call-out response, a tick or a queue callback, for instance).
func ResumeHttpRequest() error  { return ContinueStream(StreamTypeHttpRequest) }
func ResumeHttpResponse() error { return ContinueStream(StreamTypeHttpResponse) }

// CloseHttpRequest closes a paused request without answering it (weft
// closes the client's connection).
func CloseHttpRequest() error  { return CloseStream(StreamTypeHttpRequest) }
func CloseHttpResponse() error { return CloseStream(StreamTypeHttpResponse) }

func ResumeDownstream() error { return ContinueStream(StreamTypeDownstream) }
func ResumeUpstream() error   { return ContinueStream(StreamTypeUpstream) }
func CloseDownstream() error  { return CloseStream(StreamTypeDownstream) }
func CloseUpstream() error    { return CloseStream(StreamTypeUpstream) }

// SendHttpResponse answers the request from the plugin: the upstream is
// not called. Return ActionPause from the callback that calls it.
func SendHttpResponse(statusCode uint32, headers [][2]string, body []byte) error {
	return SendLocalResponse(statusCode, "", headers, body, -1)
}

// SendLocalResponse is SendHttpResponse with the status-code details and
// the gRPC status (-1 for none).
func SendLocalResponse(statusCode uint32, details string, headers [][2]string, body []byte, grpcStatus int32) error {
	h := serializeMap(headers)
	return statusErr(proxySendLocalResponse(statusCode, stringPtr(details), uint32(len(details)),
		bytesPtr(body), uint32(len(body)), bytesPtr(h), uint32(len(h)), uint32(grpcStatus)))
}

// ---- HTTP call-outs ------------------------------------------------------

// DispatchHttpCall sends a request to the named upstream (a weft cluster)
// and returns its call-out id. headers must include :method, :path and
// :authority. The callback runs when the response arrives or the call
// fails (numHeaders 0), with the dispatching context effective again, so a
// stream context can read the response (GetHttpCallResponseHeaders,
// GetHttpCallResponseBody) and ResumeHttpRequest.
func DispatchHttpCall(upstream string, headers [][2]string, body []byte, trailers [][2]string,
	timeoutMilliseconds uint32, callback func(numHeaders, bodySize, numTrailers int)) (uint32, error) {
	h := serializeMap(headers)
	t := serializeMap(trailers)
	var id uint32
	err := statusErr(proxyHttpCall(stringPtr(upstream), uint32(len(upstream)),
		bytesPtr(h), uint32(len(h)), bytesPtr(body), uint32(len(body)),
		bytesPtr(t), uint32(len(t)), timeoutMilliseconds, unsafe.Pointer(&id)))
	if err != nil {
		return 0, err
	}
	state.http[id] = httpCallout{callerID: state.current, callback: callback}
	return id, nil
}

// In a DispatchHttpCall callback: the response.
func GetHttpCallResponseHeaders() ([][2]string, error) {
	return GetHeaderMap(MapTypeHttpCallResponseHeaders)
}
func GetHttpCallResponseHeader(key string) (string, error) {
	return GetHeaderMapValue(MapTypeHttpCallResponseHeaders, key)
}
func GetHttpCallResponseTrailers() ([][2]string, error) {
	return GetHeaderMap(MapTypeHttpCallResponseTrailers)
}
func GetHttpCallResponseBody(start, maxSize int) ([]byte, error) {
	return GetBufferBytes(BufferTypeHttpCallResponseBody, start, maxSize)
}

// GetCallStatus returns the status code and message of the HTTP call being
// answered or of the gRPC call being closed.
func GetCallStatus() (uint32, string, error) {
	var code, addr, size uint32
	err := statusErr(proxyGetStatus(unsafe.Pointer(&code), unsafe.Pointer(&addr), unsafe.Pointer(&size)))
	if err != nil {
		return 0, "", err
	}
	b, err := hostBytes(addr, size)
	return code, string(b), err
}

// ---- gRPC call-outs ------------------------------------------------------

// GrpcCallbacks are what a gRPC call or stream reports; nil ones are
// skipped. They run with the dispatching context effective again.
type GrpcCallbacks struct {
	OnInitialMetadata  func(numElements int)  // read with GetGrpcCallInitialMetadata
	OnMessage          func(messageSize int)  // read with GetGrpcCallMessage
	OnTrailingMetadata func(numElements int)  // read with GetGrpcCallTrailingMetadata
	OnClose            func(statusCode int32) // the message: GetCallStatus
}

// DispatchGrpcCall makes a unary gRPC call and returns its id.
func DispatchGrpcCall(upstream, service, method string, metadata [][2]string, message []byte,
	timeoutMilliseconds uint32, callbacks GrpcCallbacks) (uint32, error) {
	md := serializeMap(metadata)
	var id uint32
	err := statusErr(proxyGrpcCall(stringPtr(upstream), uint32(len(upstream)),
		stringPtr(service), uint32(len(service)), stringPtr(method), uint32(len(method)),
		bytesPtr(md), uint32(len(md)), bytesPtr(message), uint32(len(message)),
		timeoutMilliseconds, unsafe.Pointer(&id)))
	if err != nil {
		return 0, err
	}
	state.grpc[id] = grpcCallout{callerID: state.current, callbacks: callbacks}
	return id, nil
}

// OpenGrpcStream opens a gRPC stream (weft answers ErrUnimplemented).
func OpenGrpcStream(upstream, service, method string, metadata [][2]string, callbacks GrpcCallbacks) (uint32, error) {
	md := serializeMap(metadata)
	var id uint32
	err := statusErr(proxyGrpcStream(stringPtr(upstream), uint32(len(upstream)),
		stringPtr(service), uint32(len(service)), stringPtr(method), uint32(len(method)),
		bytesPtr(md), uint32(len(md)), unsafe.Pointer(&id)))
	if err != nil {
		return 0, err
	}
	state.grpc[id] = grpcCallout{callerID: state.current, callbacks: callbacks}
	return id, nil
}

// SendGrpcStreamMessage sends a message on a stream from OpenGrpcStream.
func SendGrpcStreamMessage(streamID uint32, message []byte, endOfStream bool) error {
	eos := uint32(0)
	if endOfStream {
		eos = 1
	}
	return statusErr(proxyGrpcSend(streamID, bytesPtr(message), uint32(len(message)), eos))
}

// CancelGrpcCall cancels a call or stream: its callbacks are not called.
func CancelGrpcCall(id uint32) error {
	delete(state.grpc, id)
	return statusErr(proxyGrpcCancel(id))
}

// CloseGrpcCall closes a call or stream (OnClose still reports the end).
func CloseGrpcCall(id uint32) error { return statusErr(proxyGrpcClose(id)) }

func GetGrpcCallInitialMetadata() ([][2]string, error) {
	return GetHeaderMap(MapTypeGrpcCallInitialMetadata)
}
func GetGrpcCallTrailingMetadata() ([][2]string, error) {
	return GetHeaderMap(MapTypeGrpcCallTrailingMetadata)
}
func GetGrpcCallMessage(start, maxSize int) ([]byte, error) {
	return GetBufferBytes(BufferTypeGrpcCallMessage, start, maxSize)
}

// ---- Shared data and queues ----------------------------------------------

// GetSharedData returns the value stored under key (shared by every VM
// with the same vm_id) and its compare-and-swap token.
func GetSharedData(key string) ([]byte, uint32, error) {
	var addr, size, cas uint32
	err := statusErr(proxyGetSharedData(stringPtr(key), uint32(len(key)),
		unsafe.Pointer(&addr), unsafe.Pointer(&size), unsafe.Pointer(&cas)))
	runtime.KeepAlive(key)
	if err != nil {
		return nil, 0, err
	}
	b, err := hostBytes(addr, size)
	if err != nil {
		return nil, 0, err
	}
	return b, cas, nil
}

// SetSharedData stores value under key. With a non-zero cas (from
// GetSharedData) the store only happens if nobody stored since:
// otherwise ErrCasMismatch, and the caller reads and tries again.
func SetSharedData(key string, value []byte, cas uint32) error {
	return statusErr(proxySetSharedData(stringPtr(key), uint32(len(key)),
		bytesPtr(value), uint32(len(value)), cas))
}

// RegisterSharedQueue creates (or opens) a queue this plugin context is
// told about (OnQueueReady).
func RegisterSharedQueue(name string) (uint32, error) {
	var id uint32
	err := statusErr(proxyRegisterSharedQueue(stringPtr(name), uint32(len(name)), unsafe.Pointer(&id)))
	return id, err
}

// ResolveSharedQueue finds a queue another VM registered.
func ResolveSharedQueue(vmID, name string) (uint32, error) {
	var id uint32
	err := statusErr(proxyResolveSharedQueue(stringPtr(vmID), uint32(len(vmID)),
		stringPtr(name), uint32(len(name)), unsafe.Pointer(&id)))
	return id, err
}

func EnqueueSharedQueue(queueID uint32, data []byte) error {
	return statusErr(proxyEnqueueSharedQueue(queueID, bytesPtr(data), uint32(len(data))))
}

// DequeueSharedQueue takes the oldest item (ErrEmpty when there is none).
func DequeueSharedQueue(queueID uint32) ([]byte, error) {
	var addr, size uint32
	err := statusErr(proxyDequeueSharedQueue(queueID, unsafe.Pointer(&addr), unsafe.Pointer(&size)))
	if err != nil {
		return nil, err
	}
	return hostBytes(addr, size)
}

// ---- Metrics -------------------------------------------------------------

// DefineMetric defines (or finds) a metric and returns its id.
func DefineMetric(metricType MetricType, name string) (uint32, error) {
	var id uint32
	err := statusErr(proxyDefineMetric(uint32(metricType), stringPtr(name), uint32(len(name)), unsafe.Pointer(&id)))
	return id, err
}

func IncrementMetric(metricID uint32, delta int64) error {
	return statusErr(proxyIncrementMetric(metricID, delta))
}

func RecordMetric(metricID uint32, value uint64) error {
	return statusErr(proxyRecordMetric(metricID, value))
}

func GetMetric(metricID uint32) (uint64, error) {
	var v uint64
	err := statusErr(proxyGetMetric(metricID, unsafe.Pointer(&v)))
	return v, err
}

// MetricCounter only goes up.
type MetricCounter uint32

func DefineCounterMetric(name string) (MetricCounter, error) {
	id, err := DefineMetric(MetricTypeCounter, name)
	return MetricCounter(id), err
}
func (c MetricCounter) ID() uint32 { return uint32(c) }
func (c MetricCounter) Increment(offset uint64) error {
	return IncrementMetric(uint32(c), int64(offset))
}
func (c MetricCounter) Value() (uint64, error) { return GetMetric(uint32(c)) }

// MetricGauge goes up and down.
type MetricGauge uint32

func DefineGaugeMetric(name string) (MetricGauge, error) {
	id, err := DefineMetric(MetricTypeGauge, name)
	return MetricGauge(id), err
}
func (g MetricGauge) ID() uint32             { return uint32(g) }
func (g MetricGauge) Add(offset int64) error { return IncrementMetric(uint32(g), offset) }
func (g MetricGauge) Set(value int64) error  { return RecordMetric(uint32(g), uint64(value)) }
func (g MetricGauge) Value() (int64, error) {
	v, err := GetMetric(uint32(g))
	return int64(v), err
}

// MetricHistogram records observations.
type MetricHistogram uint32

func DefineHistogramMetric(name string) (MetricHistogram, error) {
	id, err := DefineMetric(MetricTypeHistogram, name)
	return MetricHistogram(id), err
}
func (h MetricHistogram) ID() uint32                { return uint32(h) }
func (h MetricHistogram) Record(value uint64) error { return RecordMetric(uint32(h), value) }
func (h MetricHistogram) Value() (uint64, error)    { return GetMetric(uint32(h)) }

// ---- Properties ----------------------------------------------------------

// GetProperty returns a property's raw value; the path is given as
// segments: GetProperty([]string{"request", "path"}).
func GetProperty(path []string) ([]byte, error) {
	p := serializePropertyPath(path)
	var addr, size uint32
	err := statusErr(proxyGetProperty(stringPtr(p), uint32(len(p)), unsafe.Pointer(&addr), unsafe.Pointer(&size)))
	runtime.KeepAlive(p)
	if err != nil {
		return nil, err
	}
	return hostBytes(addr, size)
}

// GetPropertyString returns a property's value as a string.
func GetPropertyString(path []string) (string, error) {
	v, err := GetProperty(path)
	return string(v), err
}

// GetPropertyInt64 returns an integer property (8 little-endian bytes,
// as hosts encode them: response.code, connection ids, sizes).
func GetPropertyInt64(path []string) (int64, error) {
	v, err := GetProperty(path)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, ErrSerializationFailure
	}
	return int64(binary.LittleEndian.Uint64(v)), nil
}

// SetProperty stores a property value.
func SetProperty(path []string, value []byte) error {
	p := serializePropertyPath(path)
	return statusErr(proxySetProperty(stringPtr(p), uint32(len(p)), bytesPtr(value), uint32(len(value))))
}

// ---- Foreign functions and context control -------------------------------

// CallForeignFunction calls a function the host registered by name.
func CallForeignFunction(name string, arguments []byte) ([]byte, error) {
	var addr, size uint32
	err := statusErr(proxyCallForeignFunction(stringPtr(name), uint32(len(name)),
		bytesPtr(arguments), uint32(len(arguments)), unsafe.Pointer(&addr), unsafe.Pointer(&size)))
	runtime.KeepAlive(name)
	runtime.KeepAlive(arguments)
	if err != nil {
		return nil, err
	}
	return hostBytes(addr, size)
}

// SetEffectiveContext makes later host calls act on another context, e.g.
// a stream paused by this plugin, from a tick or a queue callback.
// (Call-out callbacks get their dispatching context back by themselves.)
func SetEffectiveContext(contextID uint32) error {
	err := statusErr(proxySetEffectiveContext(contextID))
	if err == nil {
		state.current = contextID
	}
	return err
}

// PluginDone tells the host a plugin context whose OnPluginDone returned
// false is now finished.
func PluginDone() error { return statusErr(proxyDone()) }

func clampU32(n int) uint32 {
	if n < 0 {
		return 0
	}
	if uint64(n) > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(n)
}
