//! The stream a filter sees, as a trait the embedder implements.

use crate::abi::{BufferType, MapType, Status};

/// A local response a plugin asked for with `proxy_send_local_response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    /// HTTP status code.
    pub status: u32,
    /// The "details" string (for logs; Envoy's response code details).
    pub details: Vec<u8>,
    /// Response body.
    pub body: Vec<u8>,
    /// Extra response headers.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// gRPC status, or -1 for none.
    pub grpc_status: i32,
}

/// The HTTP stream a plugin's stream context filters, as the embedder (the
/// data plane, the test harness, the conformance runner) holds it.
///
/// Header maps carry HTTP/2-style pseudo-headers: request headers have
/// `:method`, `:path`, `:authority` and `:scheme`; response headers have
/// `:status`. Keys are lower-case. A map that does not exist in the current
/// phase (response headers while the request is still being filtered)
/// answers [`Status::NotFound`] to reads and [`Status::BadArgument`] to writes.
///
/// The trait extends `Any` so that the embedder can take its own type back
/// out of the `Box<dyn HttpStream>` it lent to the VM.
///
/// Every method has a default for a stream without that part (a TCP
/// connection has no header maps, a read-only answer takes no writes):
/// reads answer NOT_FOUND, writes BAD_ARGUMENT.
pub trait HttpStream: std::any::Any {
    /// Calls `visit` with every pair of `map`, in order.
    fn visit_map(&self, map: MapType, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), Status> {
        let _ = (map, visit);
        Err(Status::NotFound)
    }

    /// The first value of `key` in `map`, if any.
    fn map_value(&self, map: MapType, key: &[u8]) -> Result<Option<&[u8]>, Status> {
        let _ = (map, key);
        Err(Status::NotFound)
    }

    /// Appends a value for `key`, keeping existing ones.
    fn add_map_value(&mut self, map: MapType, key: &[u8], value: &[u8]) -> Result<(), Status> {
        let _ = (map, key, value);
        Err(Status::BadArgument)
    }

    /// Sets `key` to exactly `value`, replacing existing values (or adding it).
    fn replace_map_value(&mut self, map: MapType, key: &[u8], value: &[u8]) -> Result<(), Status> {
        let _ = (map, key, value);
        Err(Status::BadArgument)
    }

    /// Removes every value of `key`; removing an absent key is not an error.
    fn remove_map_value(&mut self, map: MapType, key: &[u8]) -> Result<(), Status> {
        let _ = (map, key);
        Err(Status::BadArgument)
    }

    /// Replaces the whole map with `pairs`.
    fn set_map_pairs(&mut self, map: MapType, pairs: &[(&[u8], &[u8])]) -> Result<(), Status> {
        let _ = (map, pairs);
        Err(Status::BadArgument)
    }

    /// Records a local response; the embedder sends it instead of (or in
    /// place of) the upstream's once the current callback returns.
    fn send_local_response(&mut self, response: LocalResponse) -> Result<(), Status> {
        let _ = response;
        Err(Status::BadArgument)
    }

    /// Appends the value of the property at `path` (its segments, e.g.
    /// `["request", "path"]`) to `out`. Values are encoded as proxy-wasm
    /// hosts do: strings as their bytes, integers as 8 little-endian bytes,
    /// booleans as one byte. Unknown properties answer [`Status::NotFound`].
    /// (`plugin_name`, `plugin_root_id` and `plugin_vm_id` are answered by
    /// the runtime itself.)
    fn property(&self, path: &[&[u8]], out: &mut Vec<u8>) -> Result<(), Status> {
        let _ = (path, out);
        Err(Status::NotFound)
    }

    /// The bytes of `buffer` (a body, as the running callback sees it).
    /// Buffers that do not exist in this phase answer [`Status::NotFound`].
    fn buffer(&self, buffer: BufferType) -> Result<&[u8], Status> {
        let _ = buffer;
        Err(Status::NotFound)
    }

    /// `proxy_set_buffer_bytes`: replaces `size` bytes of `buffer` from
    /// `start` with `data` (`start` past the end appends; `size` 0 inserts).
    fn set_buffer(
        &mut self,
        buffer: BufferType,
        start: usize,
        size: usize,
        data: &[u8],
    ) -> Result<(), Status> {
        let _ = (buffer, start, size, data);
        Err(Status::NotFound)
    }

    /// `proxy_set_property`: stores a value a later [`HttpStream::property`]
    /// call (from this or another plugin) returns.
    fn set_property(&mut self, path: &[&[u8]], value: &[u8]) -> Result<(), Status> {
        let _ = (path, value);
        Err(Status::NotFound)
    }
}

/// No stream: what a store holds between callbacks, and what an embedder
/// leaves in place of a stream it lent to a VM. Zero-sized, so boxing it
/// allocates nothing.
pub struct NoStream;

impl HttpStream for NoStream {}
