//! HTTP call-outs: what a plugin asks with `proxy_http_call`, and the
//! answer it reads in `proxy_on_http_call_response`.

use std::rc::Rc;
use std::time::Duration;

use crate::abi::{BufferType, MapType, Status};
use crate::stream::{HttpStream, LocalResponse};

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
/// its token, or BAD_ARGUMENT for an unknown upstream or a request without
/// `:method`, `:path` or `:authority`. The embedder later delivers the
/// answer with [`crate::Vm::on_http_call_response`].
pub type HttpCaller = Rc<dyn Fn(HttpCall) -> Result<u32, Status>>;

impl HttpCallResponse {
    fn map(&self, map: MapType) -> Result<&Pairs, Status> {
        match map {
            MapType::HttpCallResponseHeaders => Ok(&self.headers),
            MapType::HttpCallResponseTrailers => Ok(&self.trailers),
            _ => Err(Status::NotFound),
        }
    }
}

/// The answer is read-only: every write is BAD_ARGUMENT.
impl HttpStream for HttpCallResponse {
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

    fn add_map_value(&mut self, _: MapType, _: &[u8], _: &[u8]) -> Result<(), Status> {
        Err(Status::BadArgument)
    }

    fn replace_map_value(&mut self, _: MapType, _: &[u8], _: &[u8]) -> Result<(), Status> {
        Err(Status::BadArgument)
    }

    fn remove_map_value(&mut self, _: MapType, _: &[u8]) -> Result<(), Status> {
        Err(Status::BadArgument)
    }

    fn set_map_pairs(&mut self, _: MapType, _: &[(&[u8], &[u8])]) -> Result<(), Status> {
        Err(Status::BadArgument)
    }

    fn send_local_response(&mut self, _: LocalResponse) -> Result<(), Status> {
        Err(Status::BadArgument)
    }

    fn buffer(&self, buffer: BufferType) -> Result<&[u8], Status> {
        match buffer {
            BufferType::HttpCallResponseBody => Ok(&self.body),
            _ => Err(Status::NotFound),
        }
    }
}
