//! Call-outs: what a plugin asks with `proxy_http_call` or
//! `proxy_grpc_call`, and the answer it reads in
//! `proxy_on_http_call_response` or `proxy_on_grpc_receive` /
//! `proxy_on_grpc_close`.

use std::rc::Rc;
use std::time::Duration;

use crate::abi::{BufferType, MapType, Status};
use crate::stream::HttpStream;

/// A header list: (name, value) pairs.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// An HTTP call a plugin made with `proxy_http_call`.
#[derive(Debug, Clone)]
pub struct HttpCall {
    /// The cluster to call, by name.
    pub upstream: String,
    /// Request headers, with `:method`, `:path` and `:authority`.
    pub headers: Pairs,
    /// Request body.
    pub body: Vec<u8>,
    /// Request trailers.
    pub trailers: Pairs,
    /// How long the call may take before it fails.
    pub timeout: Duration,
}

/// The answer to an [`HttpCall`], as `proxy_on_http_call_response` sees it.
#[derive(Debug, Clone, Default)]
pub struct HttpCallResponse {
    /// Response headers, with `:status`.
    pub headers: Pairs,
    /// Response body.
    pub body: Vec<u8>,
    /// Response trailers.
    pub trailers: Pairs,
}

/// The embedder's side of `proxy_http_call`: starts the call and returns
/// its token, or BAD_ARGUMENT for an unknown upstream or a request it
/// cannot make (the runtime already refused one without `:method`,
/// `:path` or `:authority`). The embedder later delivers the
/// answer with [`crate::Vm::on_http_call_response`].
pub type HttpCaller = Rc<dyn Fn(HttpCall) -> Result<u32, Status>>;

/// A unary gRPC call a plugin made with `proxy_grpc_call`.
#[derive(Debug, Clone)]
pub struct GrpcCall {
    /// The cluster to call, by name (it must speak HTTP/2).
    pub cluster: String,
    /// The fully qualified service, `package.Service`.
    pub service: String,
    /// The method.
    pub method: String,
    /// Initial metadata (request headers).
    pub metadata: Pairs,
    /// The request message, serialised.
    pub message: Vec<u8>,
    /// How long the call may take before it fails (DEADLINE_EXCEEDED).
    pub timeout: Duration,
}

/// How a [`GrpcCall`] ended.
#[derive(Debug, Clone, Default)]
pub struct GrpcCallResponse {
    /// The gRPC status: 0 is OK.
    pub status: u32,
    /// The `grpc-message` that came with it, if any.
    pub status_message: Option<String>,
    /// Response headers.
    pub initial_metadata: Pairs,
    /// The response message, when the status is OK.
    pub message: Vec<u8>,
    /// Response trailers (with `grpc-status`).
    pub trailing_metadata: Pairs,
}

/// The embedder's side of `proxy_grpc_call`: starts the call and returns
/// its token, or BAD_ARGUMENT for an unknown cluster. The embedder later
/// delivers the outcome with [`crate::Vm::on_grpc_call_response`].
pub type GrpcCaller = Rc<dyn Fn(GrpcCall) -> Result<u32, Status>>;

/// A gRPC stream a plugin opened with `proxy_grpc_stream`.
#[derive(Debug, Clone)]
pub struct GrpcStreamOpen {
    /// The cluster to call, by name (it must speak HTTP/2).
    pub cluster: String,
    /// The fully qualified service, `package.Service`.
    pub service: String,
    /// The method.
    pub method: String,
    /// Initial metadata (request headers).
    pub metadata: Pairs,
}

/// What a plugin sends on its gRPC stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrpcOutbound {
    /// A message (`proxy_grpc_send`), serialised, without gRPC framing.
    Message(Vec<u8>),
    /// The plugin sends no more (`proxy_grpc_send` with `end_stream`, or
    /// `proxy_grpc_close`): the request half of the stream ends. Answers
    /// are still delivered.
    Close,
    /// `proxy_grpc_cancel`: reset the stream; nothing more is delivered.
    Cancel,
}

/// What arrives on a plugin's gRPC stream, delivered in order with
/// [`crate::Vm::on_grpc_stream`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrpcInbound {
    /// Response headers: `proxy_on_grpc_receive_initial_metadata`.
    InitialMetadata(Pairs),
    /// A response message: `proxy_on_grpc_receive`.
    Message(Vec<u8>),
    /// Response trailers: `proxy_on_grpc_receive_trailing_metadata`.
    TrailingMetadata(Pairs),
    /// The stream ended with a gRPC status (0 is OK) and maybe a
    /// `grpc-message`: `proxy_on_grpc_close`, always the last event.
    Close {
        /// The gRPC status.
        status: u32,
        /// The `grpc-message`, if any.
        message: Option<String>,
    },
}

/// The embedder's handle on one open gRPC stream: the runtime hands it
/// what the plugin sends. An error is returned to the plugin.
pub type GrpcStreamSender = Box<dyn FnMut(GrpcOutbound) -> Result<(), Status>>;

/// The embedder's side of `proxy_grpc_stream`: opens the stream and
/// returns its token and sender, or BAD_ARGUMENT for an unknown cluster.
/// The embedder delivers what arrives with [`crate::Vm::on_grpc_stream`],
/// ending with [`GrpcInbound::Close`].
pub type GrpcStreamer = Rc<dyn Fn(GrpcStreamOpen) -> Result<(u32, GrpcStreamSender), Status>>;

/// Header maps and maybe a buffer, read-only: a call-out's answer while
/// the callback that receives it runs, or what is left of a finished
/// stream whose plugin keeps its context open (`proxy_on_done` answered
/// false) for its `proxy_on_log`. Other reads answer NOT_FOUND, writes
/// BAD_ARGUMENT.
pub(crate) struct Answer {
    maps: Vec<(MapType, Pairs)>,
    buffer: Option<(BufferType, Vec<u8>)>,
}

impl Answer {
    /// Whether `map` is one of the answer's maps.
    pub(crate) fn has_map(&self, map: MapType) -> bool {
        self.maps.iter().any(|(m, _)| *m == map)
    }

    /// Whether `buffer` is the answer's buffer.
    pub(crate) fn has_buffer(&self, buffer: BufferType) -> bool {
        self.buffer.as_ref().is_some_and(|(b, _)| *b == buffer)
    }

    /// A stream's header and trailer maps, as they are now.
    pub(crate) fn snapshot(stream: &dyn HttpStream) -> Answer {
        let mut maps = Vec::new();
        for map in [
            MapType::HttpRequestHeaders,
            MapType::HttpRequestTrailers,
            MapType::HttpResponseHeaders,
            MapType::HttpResponseTrailers,
        ] {
            let mut pairs = Vec::new();
            let read = stream.visit_map(map, &mut |k, v| pairs.push((k.to_vec(), v.to_vec())));
            if read.is_ok() {
                maps.push((map, pairs));
            }
        }
        Answer { maps, buffer: None }
    }

    fn map(&self, map: MapType) -> Result<&Pairs, Status> {
        self.maps
            .iter()
            .find(|(m, _)| *m == map)
            .map(|(_, pairs)| pairs)
            .ok_or(Status::NotFound)
    }
}

impl Answer {
    /// One map, for a callback that reads it.
    pub(crate) fn with_map(map: MapType, pairs: Pairs) -> Answer {
        Answer {
            maps: vec![(map, pairs)],
            buffer: None,
        }
    }

    /// One buffer, for a callback that reads it.
    pub(crate) fn with_buffer(buffer: BufferType, bytes: Vec<u8>) -> Answer {
        Answer {
            maps: Vec::new(),
            buffer: Some((buffer, bytes)),
        }
    }
}

impl From<HttpCallResponse> for Answer {
    fn from(r: HttpCallResponse) -> Answer {
        Answer {
            maps: vec![
                (MapType::HttpCallResponseHeaders, r.headers),
                (MapType::HttpCallResponseTrailers, r.trailers),
            ],
            buffer: Some((BufferType::HttpCallResponseBody, r.body)),
        }
    }
}

impl From<GrpcCallResponse> for Answer {
    fn from(r: GrpcCallResponse) -> Answer {
        Answer {
            maps: vec![
                (MapType::GrpcReceiveInitialMetadata, r.initial_metadata),
                (MapType::GrpcReceiveTrailingMetadata, r.trailing_metadata),
            ],
            buffer: Some((BufferType::GrpcReceiveBuffer, r.message)),
        }
    }
}

/// The answer is read-only: every write is BAD_ARGUMENT.
impl HttpStream for Answer {
    fn visit_map(&self, map: MapType, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), Status> {
        for (k, v) in self.map(map)? {
            visit(k, v);
        }
        Ok(())
    }

    fn map_value(&self, map: MapType, key: &[u8]) -> Result<Option<&[u8]>, Status> {
        Ok(self
            .map(map)?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_slice()))
    }

    fn buffer(&self, buffer: BufferType) -> Result<&[u8], Status> {
        match &self.buffer {
            Some((b, bytes)) if *b == buffer => Ok(bytes),
            _ => Err(Status::NotFound),
        }
    }
}
