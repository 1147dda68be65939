//! The numbers of the proxy-wasm ABI: status codes, map and buffer types,
//! log levels, filter actions, ABI versions.

/// Result code of a host function (the spec's `WasmResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// The key, context or property does not exist.
    NotFound = 1,
    /// An argument is out of range or meaningless here.
    BadArgument = 2,
    /// A value could not be serialised.
    SerializationFailure = 3,
    /// A value could not be parsed.
    ParseFailure = 4,
    /// A property path is malformed.
    BadExpression = 5,
    /// A pointer/length pair lies outside the guest's memory.
    InvalidMemoryAccess = 6,
    /// A queue or buffer is empty.
    Empty = 7,
    /// A shared-data compare-and-swap lost.
    CasMismatch = 8,
    /// The result is not of the expected kind.
    ResultMismatch = 9,
    /// The host failed; its log says why.
    InternalFailure = 10,
    /// The connection or stream is gone.
    BrokenConnection = 11,
    /// weft does not implement this function (yet).
    Unimplemented = 12,
}

/// Which header map a host function addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MapType {
    /// Downstream request headers, with `:method`, `:path`, `:authority`, `:scheme`.
    HttpRequestHeaders,
    /// Downstream request trailers.
    HttpRequestTrailers,
    /// Upstream (or local) response headers, with `:status`.
    HttpResponseHeaders,
    /// Response trailers.
    HttpResponseTrailers,
    /// gRPC call-out initial metadata received.
    GrpcReceiveInitialMetadata,
    /// gRPC call-out trailing metadata received.
    GrpcReceiveTrailingMetadata,
    /// Headers of an HTTP call-out's response.
    HttpCallResponseHeaders,
    /// Trailers of an HTTP call-out's response.
    HttpCallResponseTrailers,
}

impl MapType {
    /// Decodes the ABI number.
    pub fn from_abi(value: i32) -> Option<MapType> {
        Some(match value {
            0 => MapType::HttpRequestHeaders,
            1 => MapType::HttpRequestTrailers,
            2 => MapType::HttpResponseHeaders,
            3 => MapType::HttpResponseTrailers,
            4 => MapType::GrpcReceiveInitialMetadata,
            5 => MapType::GrpcReceiveTrailingMetadata,
            6 => MapType::HttpCallResponseHeaders,
            7 => MapType::HttpCallResponseTrailers,
            _ => return None,
        })
    }
}

/// Which buffer a host function addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BufferType {
    /// Request body.
    HttpRequestBody,
    /// Response body.
    HttpResponseBody,
    /// TCP data from downstream.
    DownstreamData,
    /// TCP data from upstream.
    UpstreamData,
    /// Body of an HTTP call-out's response.
    HttpCallResponseBody,
    /// A gRPC call-out's received message.
    GrpcReceiveBuffer,
    /// The VM configuration (`proxy_on_vm_start`).
    VmConfiguration,
    /// The plugin configuration (`proxy_on_configure`).
    PluginConfiguration,
    /// The arguments of a foreign callback (`proxy_on_foreign_function`).
    ForeignFunctionArguments,
}

impl BufferType {
    /// Decodes the ABI number.
    pub fn from_abi(value: i32) -> Option<BufferType> {
        Some(match value {
            0 => BufferType::HttpRequestBody,
            1 => BufferType::HttpResponseBody,
            2 => BufferType::DownstreamData,
            3 => BufferType::UpstreamData,
            4 => BufferType::HttpCallResponseBody,
            5 => BufferType::GrpcReceiveBuffer,
            6 => BufferType::VmConfiguration,
            7 => BufferType::PluginConfiguration,
            8 => BufferType::ForeignFunctionArguments,
            _ => return None,
        })
    }
}

/// Guest log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Trace.
    Trace = 0,
    /// Debug.
    Debug = 1,
    /// Info.
    Info = 2,
    /// Warn.
    Warn = 3,
    /// Error.
    Error = 4,
    /// Critical.
    Critical = 5,
}

impl LogLevel {
    /// Decodes the ABI number.
    pub fn from_abi(value: i32) -> Option<LogLevel> {
        Some(match value {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            5 => LogLevel::Critical,
            _ => return None,
        })
    }
}

/// What a stream callback asks the host to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Carry on with the next filter / the upstream.
    Continue,
    /// Stop iteration until the plugin resumes the stream.
    Pause,
}

impl Action {
    /// Decodes a callback's return value. The spec has 0 = Continue and
    /// 1 = Pause; the other statuses some SDKs return (StopAllIteration...)
    /// all stop iteration.
    pub fn from_abi(value: i32) -> Action {
        if value == 0 {
            Action::Continue
        } else {
            Action::Pause
        }
    }
}

/// The proxy-wasm ABI version a module was built for, detected from its
/// exported `proxy_abi_version_*` marker function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AbiVersion {
    /// `proxy_abi_version_0_1_0`.
    V0_1_0,
    /// `proxy_abi_version_0_2_0`.
    V0_2_0,
    /// `proxy_abi_version_0_2_1`.
    V0_2_1,
}

impl AbiVersion {
    /// Maps an export name to a version.
    pub fn from_export(name: &str) -> Option<AbiVersion> {
        Some(match name {
            "proxy_abi_version_0_1_0" => AbiVersion::V0_1_0,
            "proxy_abi_version_0_2_0" => AbiVersion::V0_2_0,
            "proxy_abi_version_0_2_1" => AbiVersion::V0_2_1,
            _ => return None,
        })
    }
}

impl std::fmt::Display for AbiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AbiVersion::V0_1_0 => "0.1.0",
            AbiVersion::V0_2_0 => "0.2.0",
            AbiVersion::V0_2_1 => "0.2.1",
        })
    }
}

/// Which stream `proxy_continue_stream` / `proxy_close_stream` address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamType {
    /// The HTTP request.
    HttpRequest,
    /// The HTTP response.
    HttpResponse,
    /// TCP data from downstream.
    Downstream,
    /// TCP data from upstream.
    Upstream,
}

impl StreamType {
    /// Decodes the ABI number.
    pub fn from_abi(value: i32) -> Option<StreamType> {
        Some(match value {
            0 => StreamType::HttpRequest,
            1 => StreamType::HttpResponse,
            2 => StreamType::Downstream,
            3 => StreamType::Upstream,
            _ => return None,
        })
    }
}

/// Who closed a TCP connection (`proxy_on_*_connection_close`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerType {
    /// Not known.
    Unknown = 0,
    /// The proxy closed it.
    Local = 1,
    /// The other side closed it.
    Remote = 2,
}

/// What a plugin asked of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamAction {
    /// `proxy_continue_stream`: go on from where it paused.
    Continue(StreamType),
    /// `proxy_close_stream`: end it now.
    Close(StreamType),
}
