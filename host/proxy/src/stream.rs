//! The request/response as filters see it: [`ProxyStream`] implements
//! weft-abi's `HttpStream` over hyper's types.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, StatusCode, Uri, Version};
use weft_abi::{BufferType, HttpStream, LocalResponse, MapType, Status};

use crate::router::{ListenerRoutes, Route};
use crate::tls::TlsInfo;

/// One request's state while filters run on it.
pub(crate) struct ProxyStream {
    pub(crate) method: Method,
    pub(crate) scheme: &'static str,
    /// `:authority`: the Host header (HTTP/1.1) or the URI's authority.
    pub(crate) authority: String,
    /// `:path`: path and query, as sent upstream.
    pub(crate) path: RequestPath,
    /// Request headers without Host (carried as `:authority`).
    pub(crate) request_headers: HeaderMap,
    pub(crate) response: Option<ResponseHead>,
    /// Boxed, as the trailers below: rare, and the stream is made (and
    /// written whole) for every request.
    pub(crate) local_response: Option<Box<LocalResponse>>,
    /// Trailers, once they arrived.
    request_trailers: Option<Box<HeaderMap>>,
    response_trailers: Option<Box<HeaderMap>>,
    connection: Rc<ConnectionInfo>,
    /// The cluster the request goes to, once chosen.
    pub(crate) cluster: Option<Rc<str>>,
    /// The route it matched.
    pub(crate) route: Option<Arc<Route>>,
    /// The listener it came in on.
    pub(crate) listener: Option<Arc<ListenerRoutes>>,
    /// The status sent to the client, once known.
    pub(crate) status: Option<u16>,
    /// The endpoint that answered.
    pub(crate) upstream: Option<SocketAddr>,
    /// Request body bytes read from the client, counted by the body
    /// (`count_received`); none for a request without one.
    bytes_received: Option<Rc<Cell<u64>>>,
    /// Response body bytes sent to the client.
    pub(crate) bytes_sent: Cell<u64>,
    version: Version,
    /// When the request arrived (the wall-clock time is derived from it
    /// when asked for: one clock read per request instead of two).
    started: Instant,
    /// The request and response body as the running body callback sees it.
    request_body: BodyBuffer,
    response_body: BodyBuffer,
    /// Values plugins stored with `proxy_set_property`, by dotted path.
    properties: StoredProperties,
    /// The Host as received: sent upstream as it is unless `authority`
    /// changed, which saves validating it again.
    received_host: Option<HeaderValue>,
}

/// `:path` (path and query): the request target as it was received, its
/// bytes shared with the request rather than copied, until a filter or a
/// rewrite sets another.
#[derive(Debug, Clone)]
pub(crate) enum RequestPath {
    Received(PathAndQuery),
    Set(String),
}

impl RequestPath {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            RequestPath::Received(path) => path.as_str(),
            RequestPath::Set(path) => path,
        }
    }
}

impl std::ops::Deref for RequestPath {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for RequestPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for RequestPath {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The downstream connection a stream arrived on.
pub(crate) struct ConnectionInfo {
    /// Unique in the process: the worker index in the top bits.
    pub(crate) id: u64,
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
    /// What the TLS handshake established, on TLS listeners.
    pub(crate) tls: Option<TlsInfo>,
}

/// Status and headers of the response being filtered.
pub(crate) struct ResponseHead {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
}

impl ProxyStream {
    /// A header map as a property: the proxy-wasm pairs format (a u32
    /// count, u32 key and value lengths, then each key and value followed
    /// by a NUL), as Envoy serialises map-valued attributes.
    fn map_property(&self, map: MapType, out: &mut Vec<u8>) -> Result<(), Status> {
        let mut count = 0u32;
        let mut sizes = Vec::new();
        let mut data = Vec::new();
        self.visit_map(map, &mut |k, v| {
            count += 1;
            sizes.extend_from_slice(&(k.len() as u32).to_le_bytes());
            sizes.extend_from_slice(&(v.len() as u32).to_le_bytes());
            for part in [k, v] {
                data.extend_from_slice(part);
                data.push(0);
            }
        })?;
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&sizes);
        out.extend_from_slice(&data);
        Ok(())
    }

    /// The approximate size of a header map: its names and values.
    fn map_size(&self, map: MapType) -> u64 {
        let mut size = 0;
        let _ = self.visit_map(map, &mut |k, v| size += (k.len() + v.len()) as u64);
        size
    }

    /// The client's address.
    pub(crate) fn peer(&self) -> SocketAddr {
        self.connection.peer
    }

    /// The address the client connected to.
    pub(crate) fn local(&self) -> SocketAddr {
        self.connection.local
    }

    /// What the TLS handshake established, on a TLS listener.
    pub(crate) fn tls(&self) -> Option<&TlsInfo> {
        self.connection.tls.as_ref()
    }

    /// The request's HTTP version.
    pub(crate) fn version(&self) -> Version {
        self.version
    }

    /// When the request arrived.
    pub(crate) fn started_at(&self) -> SystemTime {
        SystemTime::now() - self.started.elapsed()
    }

    /// Time since the request arrived.
    pub(crate) fn elapsed(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// The body buffer body callbacks of the request (`true`) or response see.
    pub(crate) fn body_mut(&mut self, request: bool) -> &mut BodyBuffer {
        if request {
            &mut self.request_body
        } else {
            &mut self.response_body
        }
    }

    /// The request (`true`) or response trailers.
    pub(crate) fn trailers_mut(&mut self, request: bool) -> &mut Option<Box<HeaderMap>> {
        if request {
            &mut self.request_trailers
        } else {
            &mut self.response_trailers
        }
    }

    /// Number of entries the request header map shows a filter, pseudo-headers included.
    pub(crate) fn request_header_count(&self) -> usize {
        self.request_headers.len() + 4
    }

    pub(crate) fn response_header_count(&self) -> usize {
        self.response.as_ref().map_or(0, |r| r.headers.len() + 1)
    }

    fn headers(&self, map: MapType) -> Result<&HeaderMap, Status> {
        match map {
            MapType::HttpRequestHeaders => Ok(&self.request_headers),
            MapType::HttpResponseHeaders => self
                .response
                .as_ref()
                .map(|r| &r.headers)
                .ok_or(Status::NotFound),
            MapType::HttpRequestTrailers => {
                self.request_trailers.as_deref().ok_or(Status::NotFound)
            }
            MapType::HttpResponseTrailers => {
                self.response_trailers.as_deref().ok_or(Status::NotFound)
            }
            _ => Err(Status::NotFound),
        }
    }

    fn headers_mut(&mut self, map: MapType) -> Result<&mut HeaderMap, Status> {
        match map {
            MapType::HttpRequestHeaders => Ok(&mut self.request_headers),
            MapType::HttpResponseHeaders => self
                .response
                .as_mut()
                .map(|r| &mut r.headers)
                .ok_or(Status::BadArgument),
            MapType::HttpRequestTrailers => self
                .request_trailers
                .as_deref_mut()
                .ok_or(Status::BadArgument),
            MapType::HttpResponseTrailers => self
                .response_trailers
                .as_deref_mut()
                .ok_or(Status::BadArgument),
            _ => Err(Status::BadArgument),
        }
    }

    /// Sets a pseudo-header. Returns false if `key` is not one this map has.
    fn set_pseudo(&mut self, map: MapType, key: &[u8], value: &[u8]) -> Result<bool, Status> {
        let text = || std::str::from_utf8(value).map_err(|_| Status::BadArgument);
        match (map, key) {
            (MapType::HttpRequestHeaders, b":method") => {
                self.method = Method::from_bytes(value).map_err(|_| Status::BadArgument)?;
            }
            (MapType::HttpRequestHeaders, b":path") => {
                self.path = RequestPath::Set(text()?.to_string());
            }
            (MapType::HttpRequestHeaders, b":authority") => self.authority = text()?.to_string(),
            // The scheme follows from the listener; a filter cannot change it.
            (MapType::HttpRequestHeaders, b":scheme") => {}
            (MapType::HttpResponseHeaders, b":status") => {
                let response = self.response.as_mut().ok_or(Status::BadArgument)?;
                response.status = StatusCode::from_bytes(value).map_err(|_| Status::BadArgument)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

fn header(key: &[u8], value: &[u8]) -> Result<(HeaderName, HeaderValue), Status> {
    let name = header_name(key).ok_or(Status::BadArgument)?;
    let value = HeaderValue::from_bytes(value).map_err(|_| Status::BadArgument)?;
    Ok((name, value))
}

/// How many header names plugins set that each worker keeps parsed.
const NAME_CACHE: usize = 32;

thread_local! {
    /// Header names plugins set, parsed: filters set the same few names on
    /// every request, and parsing one allocates it.
    static NAMES: std::cell::RefCell<Vec<HeaderName>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `key` as a header name, from the worker's cache when it was seen.
fn header_name(key: &[u8]) -> Option<HeaderName> {
    NAMES.with(|names| {
        let mut names = names.borrow_mut();
        if let Some(name) = names.iter().find(|n| n.as_str().as_bytes() == key) {
            return Some(name.clone());
        }
        let name = HeaderName::from_bytes(key).ok()?;
        if names.len() == NAME_CACHE {
            names.remove(0);
        }
        names.push(name.clone());
        Some(name)
    })
}

impl HttpStream for ProxyStream {
    fn visit_map(&self, map: MapType, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), Status> {
        let headers = self.headers(map)?;
        match map {
            MapType::HttpRequestHeaders => {
                visit(b":authority", self.authority.as_bytes());
                visit(b":path", self.path.as_bytes());
                visit(b":method", self.method.as_str().as_bytes());
                visit(b":scheme", self.scheme.as_bytes());
            }
            MapType::HttpResponseHeaders => {
                if let Some(response) = &self.response {
                    visit(b":status", response.status.as_str().as_bytes());
                }
            }
            _ => {}
        }
        for (name, value) in headers {
            visit(name.as_str().as_bytes(), value.as_bytes());
        }
        Ok(())
    }

    fn map_value(&self, map: MapType, key: &[u8]) -> Result<Option<&[u8]>, Status> {
        let pseudo = match (map, key) {
            (MapType::HttpRequestHeaders, b":authority") => Some(self.authority.as_bytes()),
            (MapType::HttpRequestHeaders, b":path") => Some(self.path.as_bytes()),
            (MapType::HttpRequestHeaders, b":method") => Some(self.method.as_str().as_bytes()),
            (MapType::HttpRequestHeaders, b":scheme") => Some(self.scheme.as_bytes()),
            (MapType::HttpResponseHeaders, b":status") => {
                self.response.as_ref().map(|r| r.status.as_str().as_bytes())
            }
            _ => None,
        };
        if pseudo.is_some() {
            return Ok(pseudo);
        }
        let headers = self.headers(map)?;
        // Looked up by `&str`: parsed on the stack, no name allocated.
        let Ok(name) = std::str::from_utf8(key) else {
            return Ok(None);
        };
        Ok(headers.get(name).map(HeaderValue::as_bytes))
    }

    fn add_map_value(&mut self, map: MapType, key: &[u8], value: &[u8]) -> Result<(), Status> {
        if self.set_pseudo(map, key, value)? {
            return Ok(());
        }
        let (name, value) = header(key, value)?;
        self.headers_mut(map)?.append(name, value);
        Ok(())
    }

    fn replace_map_value(&mut self, map: MapType, key: &[u8], value: &[u8]) -> Result<(), Status> {
        if self.set_pseudo(map, key, value)? {
            return Ok(());
        }
        let (name, value) = header(key, value)?;
        self.headers_mut(map)?.insert(name, value);
        Ok(())
    }

    fn remove_map_value(&mut self, map: MapType, key: &[u8]) -> Result<(), Status> {
        let headers = self.headers_mut(map)?;
        // Pseudo-headers cannot be removed; asking is not an error.
        if let Ok(name) = std::str::from_utf8(key) {
            headers.remove(name);
        }
        Ok(())
    }

    fn set_map_pairs(&mut self, map: MapType, pairs: &[(&[u8], &[u8])]) -> Result<(), Status> {
        // Validate everything first so that a bad pair changes nothing.
        let mut parsed = Vec::with_capacity(pairs.len());
        for (key, value) in pairs {
            if key.starts_with(b":") {
                continue;
            }
            parsed.push(header(key, value)?);
        }
        self.headers_mut(map)?.clear();
        for (key, value) in pairs.iter().filter(|(k, _)| k.starts_with(b":")) {
            self.set_pseudo(map, key, value)?;
        }
        let headers = self.headers_mut(map)?;
        for (name, value) in parsed {
            headers.append(name, value);
        }
        Ok(())
    }

    fn property(&self, path: &[&[u8]], out: &mut Vec<u8>) -> Result<(), Status> {
        let int = |out: &mut Vec<u8>, n: i64| out.extend_from_slice(&n.to_le_bytes());
        let header = |name: &str| {
            self.request_headers
                .get(name)
                .map(HeaderValue::as_bytes)
                .ok_or(Status::NotFound)
        };
        let nanos = |d: std::time::Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        let tls = self.connection.tls.as_ref();
        let peer = tls.and_then(|t| t.peer.as_ref());
        match path {
            [b"request", b"path"] => out.extend_from_slice(self.path.as_bytes()),
            [b"request", b"url_path"] => {
                out.extend_from_slice(self.path.split('?').next().unwrap_or("").as_bytes())
            }
            [b"request", b"query"] => {
                out.extend_from_slice(self.path.split_once('?').map_or("", |(_, q)| q).as_bytes())
            }
            [b"request", b"host"] => out.extend_from_slice(self.authority.as_bytes()),
            [b"request", b"scheme"] => out.extend_from_slice(self.scheme.as_bytes()),
            [b"request", b"method"] => out.extend_from_slice(self.method.as_str().as_bytes()),
            [b"request", b"protocol"] => {
                out.extend_from_slice(format!("{:?}", self.version).as_bytes())
            }
            [b"request", b"referer"] => out.extend_from_slice(header("referer")?),
            [b"request", b"useragent"] => out.extend_from_slice(header("user-agent")?),
            [b"request", b"id"] => out.extend_from_slice(header("x-request-id")?),
            [b"request", b"time"] => int(
                out,
                nanos(
                    self.started_at()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap_or_default(),
                ),
            ),
            [b"request", b"duration"] => int(out, nanos(self.started.elapsed())),
            [b"request", b"size"] => int(out, self.bytes_received() as i64),
            [b"response", b"size"] => int(out, self.bytes_sent.get() as i64),
            [b"request", b"headers"] => self.map_property(MapType::HttpRequestHeaders, out)?,
            [b"response", b"headers"] => self.map_property(MapType::HttpResponseHeaders, out)?,
            [b"response", b"trailers"] => self.map_property(MapType::HttpResponseTrailers, out)?,
            [b"request", b"total_size"] => int(
                out,
                (self.map_size(MapType::HttpRequestHeaders) + self.bytes_received()) as i64,
            ),
            [b"response", b"total_size"] => {
                self.response.as_ref().ok_or(Status::NotFound)?;
                int(
                    out,
                    (self.map_size(MapType::HttpResponseHeaders) + self.bytes_sent.get()) as i64,
                )
            }
            [b"response", b"grpc_status"] => {
                let grpc_status = |headers: Option<&HeaderMap>| {
                    headers?
                        .get("grpc-status")?
                        .to_str()
                        .ok()?
                        .parse::<i64>()
                        .ok()
                };
                let status = grpc_status(self.response_trailers.as_deref())
                    .or_else(|| grpc_status(self.response.as_ref().map(|r| &r.headers)))
                    .ok_or(Status::NotFound)?;
                int(out, status);
            }
            [b"response", b"code_details"] => {
                self.response.as_ref().ok_or(Status::NotFound)?;
                let details = match (&self.upstream, &self.local_response) {
                    (_, Some(_)) => "local_reply",
                    (Some(_), None) => "via_upstream",
                    (None, None) => "proxy_reply",
                };
                out.extend_from_slice(details.as_bytes());
            }
            [b"upstream", b"address"] => out.extend_from_slice(
                self.upstream
                    .ok_or(Status::NotFound)?
                    .to_string()
                    .as_bytes(),
            ),
            [b"upstream", b"port"] => {
                int(out, self.upstream.ok_or(Status::NotFound)?.port().into())
            }
            [b"response", b"code"] => {
                let response = self.response.as_ref().ok_or(Status::NotFound)?;
                int(out, response.status.as_u16().into());
            }
            [b"source", b"address"] => {
                out.extend_from_slice(self.connection.peer.to_string().as_bytes())
            }
            [b"source", b"port"] => int(out, self.connection.peer.port().into()),
            [b"destination", b"address"] => {
                out.extend_from_slice(self.connection.local.to_string().as_bytes())
            }
            [b"destination", b"port"] => int(out, self.connection.local.port().into()),
            [b"connection", b"id"] => out.extend_from_slice(&self.connection.id.to_le_bytes()),
            [b"connection", b"mtls"] => out.push(u8::from(peer.is_some())),
            [b"connection", b"tls_version"] => out.extend_from_slice(
                tls.and_then(|t| t.version.as_deref())
                    .ok_or(Status::NotFound)?
                    .as_bytes(),
            ),
            [b"connection", b"requested_server_name"] => out.extend_from_slice(
                tls.and_then(|t| t.server_name.as_deref())
                    .ok_or(Status::NotFound)?
                    .as_bytes(),
            ),
            [b"connection", b"subject_peer_certificate"] => {
                out.extend_from_slice(peer.ok_or(Status::NotFound)?.subject.as_bytes())
            }
            [b"connection", b"uri_san_peer_certificate"] => out.extend_from_slice(
                peer.and_then(|p| p.uri_sans.first())
                    .ok_or(Status::NotFound)?
                    .as_bytes(),
            ),
            [b"connection", b"dns_san_peer_certificate"] => out.extend_from_slice(
                peer.and_then(|p| p.dns_sans.first())
                    .ok_or(Status::NotFound)?
                    .as_bytes(),
            ),
            [b"connection", b"sha256_peer_certificate_digest"] => {
                out.extend_from_slice(peer.ok_or(Status::NotFound)?.sha256.as_bytes())
            }
            [b"cluster_name"] | [b"xds", b"cluster_name"] => {
                out.extend_from_slice(self.cluster.as_deref().ok_or(Status::NotFound)?.as_bytes())
            }
            [b"route_name"] | [b"xds", b"route_name"] => {
                out.extend_from_slice(self.route.as_ref().ok_or(Status::NotFound)?.name.as_bytes())
            }
            _ if stored_property(&self.properties, path, out) => {}
            _ => return Err(Status::NotFound),
        }
        Ok(())
    }

    fn buffer(&self, buffer: BufferType) -> Result<&[u8], Status> {
        match buffer {
            BufferType::HttpRequestBody => Ok(self.request_body.as_slice()),
            BufferType::HttpResponseBody => Ok(self.response_body.as_slice()),
            _ => Err(Status::NotFound),
        }
    }

    fn set_buffer(
        &mut self,
        buffer: BufferType,
        start: usize,
        size: usize,
        data: &[u8],
    ) -> Result<(), Status> {
        let body = match buffer {
            BufferType::HttpRequestBody => &mut self.request_body,
            BufferType::HttpResponseBody => &mut self.response_body,
            _ => return Err(Status::NotFound),
        };
        splice(body.to_mut(), start, size, data);
        Ok(())
    }

    fn set_property(&mut self, path: &[&[u8]], value: &[u8]) -> Result<(), Status> {
        store_property(&mut self.properties, path, value);
        Ok(())
    }

    fn send_local_response(&mut self, response: LocalResponse) -> Result<(), Status> {
        if StatusCode::from_u16(u16::try_from(response.status).map_err(|_| Status::BadArgument)?)
            .is_err()
        {
            return Err(Status::BadArgument);
        }
        self.local_response = Some(Box::new(response));
        Ok(())
    }
}

/// Properties plugins stored with `proxy_set_property`, by dotted path.
pub(crate) type StoredProperties = Vec<(Vec<u8>, Vec<u8>)>;

/// `proxy_set_property`: keeps `value` at `path` for later reads.
pub(crate) fn store_property(stored: &mut StoredProperties, path: &[&[u8]], value: &[u8]) {
    let key = path.join(&b'.');
    match stored.iter_mut().find(|(k, _)| *k == key) {
        Some((_, old)) => *old = value.to_vec(),
        None => stored.push((key, value.to_vec())),
    }
}

/// Appends the value stored at `path` to `out`; false if none is.
pub(crate) fn stored_property(
    stored: &StoredProperties,
    path: &[&[u8]],
    out: &mut Vec<u8>,
) -> bool {
    let key = path.join(&b'.');
    match stored.iter().find(|(k, _)| *k == key) {
        Some((_, value)) => {
            out.extend_from_slice(value);
            true
        }
        None => false,
    }
}

/// A body chunk as the body callbacks see it: the bytes as they arrived,
/// not copied, until a plugin changes them (most only look, or do not
/// even look: the Rust SDK exports the body callbacks whatever a filter
/// does with them).
#[derive(Default)]
pub(crate) struct BodyBuffer {
    /// The bytes as they arrived.
    received: Bytes,
    /// Set once a plugin changes them.
    changed: Option<BytesMut>,
}

impl BodyBuffer {
    pub(crate) fn received(bytes: Bytes) -> Self {
        BodyBuffer {
            received: bytes,
            changed: None,
        }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        match &self.changed {
            Some(changed) => changed,
            None => &self.received,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// The bytes to change in place: copied the first time (and the
    /// received ones let go of).
    pub(crate) fn to_mut(&mut self) -> &mut BytesMut {
        let received = &mut self.received;
        self.changed
            .get_or_insert_with(|| BytesMut::from(&std::mem::take(received)[..]))
    }

    pub(crate) fn freeze(self) -> Bytes {
        match self.changed {
            Some(changed) => changed.freeze(),
            None => self.received,
        }
    }
}

/// `proxy_set_buffer_bytes` on `buffer`: replaces `size` bytes from
/// `start` with `data`; a `start` past the end appends.
pub(crate) fn splice(buffer: &mut BytesMut, start: usize, size: usize, data: &[u8]) {
    let start = start.min(buffer.len());
    let end = start.saturating_add(size).min(buffer.len());
    let tail = buffer.split_off(end);
    buffer.truncate(start);
    buffer.extend_from_slice(data);
    buffer.extend_from_slice(&tail);
}

impl ProxyStream {
    /// The stream of a request whose Host header was taken out (`host`)
    /// and whose hop-by-hop headers were stripped.
    pub(crate) fn from_request(
        parts: Parts,
        host: Option<HeaderValue>,
        connection: Rc<ConnectionInfo>,
        started: Instant,
    ) -> ProxyStream {
        let authority = authority(&parts.uri, host.as_ref()).to_string();
        let Parts {
            method,
            uri,
            version,
            headers,
            ..
        } = parts;
        let path = RequestPath::Received(
            uri.path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        let scheme = if connection.tls.is_some() {
            "https"
        } else {
            "http"
        };
        ProxyStream {
            method,
            scheme,
            authority,
            path,
            request_headers: headers,
            response: None,
            local_response: None,
            request_trailers: None,
            response_trailers: None,
            connection,
            cluster: None,
            route: None,
            listener: None,
            status: None,
            upstream: None,
            bytes_received: None,
            bytes_sent: Cell::new(0),
            version,
            started,
            request_body: BodyBuffer::default(),
            response_body: BodyBuffer::default(),
            properties: Vec::new(),
            received_host: host,
        }
    }

    /// Request body bytes read from the client so far.
    pub(crate) fn bytes_received(&self) -> u64 {
        self.bytes_received.as_ref().map_or(0, |count| count.get())
    }

    /// The counter the request body adds the bytes it reads to.
    pub(crate) fn count_received(&mut self) -> Rc<Cell<u64>> {
        self.bytes_received.get_or_insert_default().clone()
    }

    /// The request to send upstream. With `keep`, the headers stay here for
    /// later callbacks (`on_log` reads them) and the upstream gets a copy.
    pub(crate) fn upstream_request<B>(
        &mut self,
        body: B,
        keep: bool,
    ) -> Result<Request<B>, &'static str> {
        let uri: Uri = match &self.path {
            RequestPath::Received(path) => Uri::from(path.clone()),
            RequestPath::Set(path) => path
                .parse()
                .map_err(|_| "filters produced an invalid :path")?,
        };
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = uri;
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = if keep {
            self.request_headers.clone()
        } else {
            std::mem::take(&mut self.request_headers)
        };
        if let Some(host) = upstream_host(&self.authority, self.received_host.as_ref())? {
            request.headers_mut().insert(header::HOST, host);
        }
        Ok(request)
    }
}

/// `:authority`: the request target's authority (HTTP/2, absolute form)
/// or the Host header; empty when neither is there or readable.
pub(crate) fn authority<'a>(uri: &'a Uri, host: Option<&'a HeaderValue>) -> &'a str {
    uri.authority()
        .map(|a| a.as_str())
        .or_else(|| host.and_then(|h| h.to_str().ok()))
        .unwrap_or_default()
}

/// The Host header to send upstream for `authority`: the one received
/// (`received`) when it says the same, which saves validating it again;
/// none for an empty authority.
pub(crate) fn upstream_host(
    authority: &str,
    received: Option<&HeaderValue>,
) -> Result<Option<HeaderValue>, &'static str> {
    if authority.is_empty() {
        return Ok(None);
    }
    match received {
        Some(received) if received.as_bytes() == authority.as_bytes() => Ok(Some(received.clone())),
        _ => HeaderValue::from_str(authority)
            .map(Some)
            .map_err(|_| "invalid :authority"),
    }
}

/// Headers that describe one connection, not the message: never forwarded.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names finds which are present (most names differ
    // from all six by length alone): most messages carry none, or only
    // `connection: keep-alive`, and each removal is a hashed lookup.
    let mut present = [false; HOPS];
    for name in headers.keys() {
        let i = match name.as_str() {
            "connection" => 0,
            "te" => 1,
            "keep-alive" => 2,
            "proxy-connection" => 3,
            "trailer" => 4,
            "upgrade" => 5,
            _ => continue,
        };
        present[i] = true;
    }
    if !present.contains(&true) {
        return;
    }
    // One lookup finds the `connection` values and takes them out.
    if present[0]
        && let header::Entry::Occupied(entry) = headers.entry(header::CONNECTION)
    {
        let names_none = {
            let mut values = entry.iter();
            match (values.next(), values.next()) {
                // The usual `keep-alive` or `close` names no other header
                // (and `keep-alive` is one of the list anyway).
                (Some(value), None) => names_no_header(value.as_bytes()),
                _ => false,
            }
        };
        if names_none {
            entry.remove();
        } else {
            // The headers the values name are hop-by-hop too.
            let mut named = Vec::new();
            for value in entry.remove_entry_mult().1 {
                let Ok(value) = value.to_str() else { continue };
                for token in value.split(',').map(str::trim) {
                    if !names_no_header(token.as_bytes())
                        && let Ok(name) = HeaderName::from_bytes(token.as_bytes())
                    {
                        named.push(name);
                    }
                }
            }
            for name in named {
                headers.remove(name);
            }
        }
    }
    // `te: trailers` is the one TE value that means something end to end
    // (gRPC needs it); anything else is about this hop.
    if present[1]
        && !headers
            .get(header::TE)
            .is_some_and(|te| te.as_bytes().eq_ignore_ascii_case(b"trailers"))
    {
        headers.remove(header::TE);
    }
    for (name, present) in HOP_BY_HOP.iter().zip(present).skip(2) {
        if present {
            headers.remove(name);
        }
    }
}

/// A `connection` token that names no header: `keep-alive` or `close`
/// (as usually written, compared exactly first).
fn names_no_header(token: &[u8]) -> bool {
    matches!(token, b"keep-alive" | b"close")
        || token.eq_ignore_ascii_case(b"keep-alive")
        || token.eq_ignore_ascii_case(b"close")
}

/// The headers that describe one connection, not the message: never
/// forwarded as they are. `connection` and `te` first, as
/// `strip_hop_by_hop` treats them apart; its scan names them in this order.
const HOPS: usize = 6;
static HOP_BY_HOP: [HeaderName; HOPS] = [
    header::CONNECTION,
    header::TE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRAILER,
    header::UPGRADE,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_chunk_is_copied_only_when_a_plugin_changes_it() {
        let chunk = Bytes::from(vec![b'a'; 64]);
        let looked_at = BodyBuffer::received(chunk.clone());
        assert_eq!(looked_at.as_slice(), &chunk[..]);
        assert_eq!(looked_at.len(), 64);
        // Passed on as it came: the same bytes, not a copy.
        assert_eq!(looked_at.freeze().as_ptr(), chunk.as_ptr());

        let mut changed = BodyBuffer::received(chunk.clone());
        splice(changed.to_mut(), 0, 60, b"b");
        splice(changed.to_mut(), 1, 0, b"c");
        assert_eq!(changed.as_slice(), b"bcaaaa");
        assert_eq!(&changed.freeze()[..], b"bcaaaa");
        // The chunk it came from is left alone.
        assert_eq!(&chunk[..], &[b'a'; 64][..]);
    }

    fn stream() -> ProxyStream {
        let mut headers = HeaderMap::new();
        headers.insert("x-a", HeaderValue::from_static("1"));
        let connection = Rc::new(ConnectionInfo {
            id: 7,
            peer: "10.0.0.1:5555".parse().unwrap(),
            local: "10.0.0.2:80".parse().unwrap(),
            tls: None,
        });
        let mut stream = ProxyStream::from_request(
            Request::get("http://example.com/p?q=1")
                .body(())
                .unwrap()
                .into_parts()
                .0,
            None,
            connection,
            Instant::now(),
        );
        stream.cluster = Some(Rc::from("backend"));
        stream.request_headers = headers;
        stream
    }

    fn pairs(s: &ProxyStream, map: MapType) -> Vec<(String, String)> {
        let mut out = Vec::new();
        s.visit_map(map, &mut |k, v| {
            out.push((
                String::from_utf8_lossy(k).into(),
                String::from_utf8_lossy(v).into(),
            ))
        })
        .unwrap();
        out
    }

    fn property(s: &ProxyStream, path: &str) -> Result<Vec<u8>, Status> {
        let segments: Vec<&[u8]> = path.split('.').map(str::as_bytes).collect();
        let mut out = Vec::new();
        s.property(&segments, &mut out).map(|()| out)
    }

    fn names(headers: &HeaderMap) -> Vec<&str> {
        headers.keys().map(HeaderName::as_str).collect()
    }

    #[test]
    fn header_names_come_from_the_cache_as_parsed() {
        assert_eq!(header_name(b"X-Cached").unwrap(), "x-cached");
        assert_eq!(header_name(b"x-cached").unwrap(), "x-cached");
        assert!(header_name(b"bad name").is_none());
        // The cache stays bounded; every name still parses.
        for i in 0..2 * NAME_CACHE {
            let name = format!("x-name-{i}");
            assert_eq!(header_name(name.as_bytes()).unwrap(), name.as_str());
        }
        NAMES.with(|names| assert_eq!(names.borrow().len(), NAME_CACHE));
    }

    #[test]
    fn hop_by_hop_headers_are_stripped() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, x-private"),
            ("connection", "close, X-Other"),
            ("x-private", "1"),
            ("x-other", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip"),
            ("trailer", "x-checksum"),
            ("upgrade", "websocket"),
            ("x-kept", "1"),
        ] {
            headers.append(name, HeaderValue::from_static(value));
        }
        strip_hop_by_hop(&mut headers);
        assert_eq!(names(&headers), ["x-kept"]);

        // `te: trailers` is end to end; a map without hop-by-hop headers
        // is left as it is.
        let mut headers = HeaderMap::new();
        headers.insert("te", HeaderValue::from_static("trailers"));
        headers.insert("x-a", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(names(&headers), ["te", "x-a"]);
        let mut headers = HeaderMap::new();
        headers.insert("x-a", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(names(&headers), ["x-a"]);

        // Each hop-by-hop header alone is found and removed (`te` other
        // than `trailers`).
        for hop in &HOP_BY_HOP {
            let mut headers = HeaderMap::new();
            headers.insert(hop.clone(), HeaderValue::from_static("gzip"));
            headers.insert("x-a", HeaderValue::from_static("1"));
            strip_hop_by_hop(&mut headers);
            assert_eq!(names(&headers), ["x-a"], "{hop}");
        }

        // One `connection` value: the usual ones name nothing else, any
        // other is a header name.
        for (value, left) in [
            ("keep-alive", vec!["x-a", "x-b"]),
            ("Close", vec!["x-a", "x-b"]),
            ("x-a", vec!["x-b"]),
            ("keep-alive,x-b", vec!["x-a"]),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert("connection", HeaderValue::from_static(value));
            headers.insert("x-a", HeaderValue::from_static("1"));
            headers.insert("x-b", HeaderValue::from_static("1"));
            strip_hop_by_hop(&mut headers);
            let mut kept = names(&headers);
            kept.sort_unstable();
            assert_eq!(kept, left, "connection: {value}");
        }
    }

    #[test]
    fn properties_follow_the_proxy_wasm_attribute_names() {
        let mut s = stream();
        assert_eq!(property(&s, "request.path").unwrap(), b"/p?q=1");
        assert_eq!(property(&s, "request.url_path").unwrap(), b"/p");
        assert_eq!(property(&s, "request.query").unwrap(), b"q=1");
        assert_eq!(property(&s, "request.host").unwrap(), b"example.com");
        assert_eq!(property(&s, "request.method").unwrap(), b"GET");
        assert_eq!(property(&s, "request.protocol").unwrap(), b"HTTP/1.1");
        assert_eq!(property(&s, "source.address").unwrap(), b"10.0.0.1:5555");
        assert_eq!(property(&s, "source.port").unwrap(), 5555i64.to_le_bytes());
        assert_eq!(
            property(&s, "destination.port").unwrap(),
            80i64.to_le_bytes()
        );
        assert_eq!(property(&s, "connection.id").unwrap(), 7u64.to_le_bytes());
        assert_eq!(property(&s, "xds.cluster_name").unwrap(), b"backend");
        assert_eq!(property(&s, "request.referer"), Err(Status::NotFound));
        assert_eq!(property(&s, "response.code"), Err(Status::NotFound));
        assert_eq!(property(&s, "request.time").unwrap().len(), 8);

        assert_eq!(property(&s, "upstream.address"), Err(Status::NotFound));
        assert_eq!(
            property(&s, "request.total_size").unwrap(),
            // The pseudo-headers and `x-a: 1`, no body.
            (10 + 11 + 5 + 6 + 7 + 3 + 7 + 4 + 3 + 1i64).to_le_bytes()
        );
        s.upstream = Some("10.0.0.9:8000".parse().unwrap());
        assert_eq!(property(&s, "upstream.address").unwrap(), b"10.0.0.9:8000");
        assert_eq!(
            property(&s, "upstream.port").unwrap(),
            8000i64.to_le_bytes()
        );
        s.response = Some(ResponseHead {
            status: StatusCode::OK,
            headers: HeaderMap::from_iter([(
                HeaderName::from_static("grpc-status"),
                HeaderValue::from_static("7"),
            )]),
        });
        assert_eq!(
            property(&s, "response.grpc_status").unwrap(),
            7i64.to_le_bytes()
        );
        assert_eq!(
            property(&s, "response.code_details").unwrap(),
            b"via_upstream"
        );

        s.set_property(&[b"my", b"key"], b"v1").unwrap();
        s.set_property(&[b"my", b"key"], b"v2").unwrap();
        assert_eq!(property(&s, "my.key").unwrap(), b"v2");
        assert_eq!(property(&s, "no.such"), Err(Status::NotFound));
    }

    #[test]
    fn header_maps_as_properties_use_the_pairs_format() {
        let s = stream();
        let got = property(&s, "request.headers").unwrap();
        let mut want = Vec::new();
        let pairs = pairs(&s, MapType::HttpRequestHeaders);
        want.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
        for (k, v) in &pairs {
            want.extend_from_slice(&(k.len() as u32).to_le_bytes());
            want.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        for (k, v) in &pairs {
            want.extend_from_slice(format!("{k}\0{v}\0").as_bytes());
        }
        assert_eq!(got, want);
        assert_eq!(property(&s, "response.headers"), Err(Status::NotFound));
    }

    #[test]
    fn request_map_has_pseudo_headers_first() {
        let s = stream();
        let got = pairs(&s, MapType::HttpRequestHeaders);
        assert_eq!(got[0], (":authority".into(), "example.com".into()));
        assert_eq!(got[1], (":path".into(), "/p?q=1".into()));
        assert_eq!(got[2], (":method".into(), "GET".into()));
        assert_eq!(got[4], ("x-a".into(), "1".into()));
        assert_eq!(s.request_header_count(), got.len());
    }

    #[test]
    fn edits_reach_pseudo_and_regular_headers() {
        let mut s = stream();
        s.replace_map_value(MapType::HttpRequestHeaders, b":path", b"/new")
            .unwrap();
        s.add_map_value(MapType::HttpRequestHeaders, b"X-A", b"2")
            .unwrap();
        assert_eq!(s.path, "/new");
        assert_eq!(s.request_headers.get_all("x-a").iter().count(), 2);
        s.remove_map_value(MapType::HttpRequestHeaders, b"x-a")
            .unwrap();
        assert!(s.request_headers.is_empty());
        assert_eq!(
            s.add_map_value(MapType::HttpRequestHeaders, b"bad name", b"v"),
            Err(Status::BadArgument)
        );
    }

    #[test]
    fn response_map_is_absent_until_the_response_arrives() {
        let mut s = stream();
        assert_eq!(
            s.map_value(MapType::HttpResponseHeaders, b"x"),
            Err(Status::NotFound)
        );
        assert_eq!(
            s.add_map_value(MapType::HttpResponseHeaders, b"x", b"y"),
            Err(Status::BadArgument)
        );
        s.response = Some(ResponseHead {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
        });
        assert_eq!(
            s.map_value(MapType::HttpResponseHeaders, b":status")
                .unwrap(),
            Some(&b"200"[..])
        );
    }

    #[test]
    fn set_map_pairs_with_a_bad_pair_changes_nothing() {
        let mut s = stream();
        let bad: Vec<(&[u8], &[u8])> = vec![(b"ok", b"1"), (b"bad name", b"2")];
        assert_eq!(
            s.set_map_pairs(MapType::HttpRequestHeaders, &bad),
            Err(Status::BadArgument)
        );
        assert_eq!(s.request_headers.get("x-a").unwrap(), "1");
    }
}
