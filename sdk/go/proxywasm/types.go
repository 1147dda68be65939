package proxywasm

import "strconv"

// Action is what a stream callback answers: go on, or hold the stream.
type Action uint32

const (
	// ActionContinue lets the host go on processing the stream.
	ActionContinue Action = 0
	// ActionPause holds the stream until the plugin resumes it
	// (ResumeHttpRequest, ResumeHttpResponse, ...) or answers it
	// (SendHttpResponse).
	ActionPause Action = 1
)

// LogLevel is proxy_log_level_t.
type LogLevel uint32

const (
	LogLevelTrace    LogLevel = 0
	LogLevelDebug    LogLevel = 1
	LogLevelInfo     LogLevel = 2
	LogLevelWarn     LogLevel = 3
	LogLevelError    LogLevel = 4
	LogLevelCritical LogLevel = 5
)

func (l LogLevel) String() string {
	switch l {
	case LogLevelTrace:
		return "trace"
	case LogLevelDebug:
		return "debug"
	case LogLevelInfo:
		return "info"
	case LogLevelWarn:
		return "warn"
	case LogLevelError:
		return "error"
	case LogLevelCritical:
		return "critical"
	}
	return "LogLevel(" + strconv.FormatUint(uint64(l), 10) + ")"
}

// BufferType is proxy_buffer_type_t.
type BufferType uint32

const (
	BufferTypeHttpRequestBody          BufferType = 0
	BufferTypeHttpResponseBody         BufferType = 1
	BufferTypeDownstreamData           BufferType = 2
	BufferTypeUpstreamData             BufferType = 3
	BufferTypeHttpCallResponseBody     BufferType = 4
	BufferTypeGrpcCallMessage          BufferType = 5
	BufferTypeVMConfiguration          BufferType = 6
	BufferTypePluginConfiguration      BufferType = 7
	BufferTypeForeignFunctionArguments BufferType = 8
)

// MapType is proxy_map_type_t.
type MapType uint32

const (
	MapTypeHttpRequestHeaders       MapType = 0
	MapTypeHttpRequestTrailers      MapType = 1
	MapTypeHttpResponseHeaders      MapType = 2
	MapTypeHttpResponseTrailers     MapType = 3
	MapTypeGrpcCallInitialMetadata  MapType = 4
	MapTypeGrpcCallTrailingMetadata MapType = 5
	MapTypeHttpCallResponseHeaders  MapType = 6
	MapTypeHttpCallResponseTrailers MapType = 7
)

// StreamType is proxy_stream_type_t.
type StreamType uint32

const (
	StreamTypeHttpRequest  StreamType = 0
	StreamTypeHttpResponse StreamType = 1
	StreamTypeDownstream   StreamType = 2
	StreamTypeUpstream     StreamType = 3
)

// PeerType is proxy_peer_type_t: which side closed a TCP connection.
type PeerType uint32

const (
	PeerTypeUnknown PeerType = 0
	PeerTypeLocal   PeerType = 1
	PeerTypeRemote  PeerType = 2
)

// MetricType is proxy_metric_type_t.
type MetricType uint32

const (
	MetricTypeCounter   MetricType = 0
	MetricTypeGauge     MetricType = 1
	MetricTypeHistogram MetricType = 2
)

// Status is proxy_status_t, the result of every host function. A
// non-OK status is returned to Go callers as an error of this type, so
// `errors.Is(err, proxywasm.ErrNotFound)` and `err == proxywasm.ErrNotFound`
// both work.
type Status uint32

const (
	StatusOK                   Status = 0
	StatusNotFound             Status = 1
	StatusBadArgument          Status = 2
	StatusSerializationFailure Status = 3
	StatusParseFailure         Status = 4
	StatusInvalidMemoryAccess  Status = 6
	StatusEmpty                Status = 7
	StatusCasMismatch          Status = 8
	StatusInternalFailure      Status = 10
	StatusUnimplemented        Status = 12
)

// The errors host functions return (a Status other than StatusOK).
var (
	ErrNotFound             error = StatusNotFound
	ErrBadArgument          error = StatusBadArgument
	ErrSerializationFailure error = StatusSerializationFailure
	ErrParseFailure         error = StatusParseFailure
	ErrInvalidMemoryAccess  error = StatusInvalidMemoryAccess
	ErrEmpty                error = StatusEmpty
	ErrCasMismatch          error = StatusCasMismatch
	ErrInternalFailure      error = StatusInternalFailure
	ErrUnimplemented        error = StatusUnimplemented
)

func (s Status) Error() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusNotFound:
		return "not found"
	case StatusBadArgument:
		return "bad argument"
	case StatusSerializationFailure:
		return "serialization failure"
	case StatusParseFailure:
		return "parse failure"
	case StatusInvalidMemoryAccess:
		return "invalid memory access"
	case StatusEmpty:
		return "empty"
	case StatusCasMismatch:
		return "compare-and-swap mismatch"
	case StatusInternalFailure:
		return "internal failure"
	case StatusUnimplemented:
		return "unimplemented"
	}
	return "proxy-wasm status " + strconv.FormatUint(uint64(s), 10)
}

// statusErr turns a raw host status into nil (OK) or a Status error.
func statusErr(raw uint32) error {
	if raw == 0 {
		return nil
	}
	return Status(raw)
}
