//! The stream a filter under test sees: header maps, bodies and trailers
//! held as plain lists, the local response it sent, and properties.

use std::collections::HashMap;

use weft_abi::{BufferType, HttpStream, LocalResponse, MapType, Pairs, Status};

/// One HTTP stream as the harness holds it.
#[derive(Debug, Default)]
pub(crate) struct MockStream {
    pub(crate) request_headers: Pairs,
    pub(crate) request_body: Vec<u8>,
    pub(crate) request_trailers: Pairs,
    /// `None` until the upstream (or a local reply) answered.
    pub(crate) response_headers: Option<Pairs>,
    pub(crate) response_body: Vec<u8>,
    pub(crate) response_trailers: Option<Pairs>,
    pub(crate) local: Option<LocalResponse>,
    /// Property values by dotted path.
    pub(crate) properties: HashMap<String, Vec<u8>>,
    /// A TCP connection: no header maps, the two data buffers instead.
    pub(crate) tcp: bool,
    /// DOWNSTREAM_DATA: what the client sent, not relayed yet.
    pub(crate) downstream_data: Vec<u8>,
    /// UPSTREAM_DATA: what the upstream sent, not relayed yet.
    pub(crate) upstream_data: Vec<u8>,
    /// When the request arrived (`request.time`, `request.duration`).
    pub(crate) started: Started,
}

/// When a stream started: made when the stream is.
#[derive(Debug)]
pub(crate) struct Started(std::time::Instant, std::time::SystemTime);

impl Default for Started {
    fn default() -> Self {
        Started(std::time::Instant::now(), std::time::SystemTime::now())
    }
}

impl MockStream {
    fn map(&self, map: MapType) -> Result<&Pairs, Status> {
        if self.tcp {
            return Err(Status::NotFound);
        }
        match map {
            MapType::HttpRequestHeaders => Ok(&self.request_headers),
            MapType::HttpRequestTrailers => Ok(&self.request_trailers),
            MapType::HttpResponseHeaders => self.response_headers.as_ref().ok_or(Status::NotFound),
            MapType::HttpResponseTrailers => {
                self.response_trailers.as_ref().ok_or(Status::NotFound)
            }
            _ => Err(Status::NotFound),
        }
    }

    fn map_mut(&mut self, map: MapType) -> Result<&mut Pairs, Status> {
        if self.tcp {
            return Err(Status::BadArgument);
        }
        match map {
            MapType::HttpRequestHeaders => Ok(&mut self.request_headers),
            MapType::HttpRequestTrailers => Ok(&mut self.request_trailers),
            MapType::HttpResponseHeaders => {
                self.response_headers.as_mut().ok_or(Status::BadArgument)
            }
            MapType::HttpResponseTrailers => {
                self.response_trailers.as_mut().ok_or(Status::BadArgument)
            }
            _ => Err(Status::BadArgument),
        }
    }

    /// The TCP data buffer of one direction.
    pub(crate) fn data(&mut self, downstream: bool) -> &mut Vec<u8> {
        if downstream {
            &mut self.downstream_data
        } else {
            &mut self.upstream_data
        }
    }

    /// The value of request header `name`, if any.
    pub(crate) fn request_header(&self, name: &str) -> Option<String> {
        value(&self.request_headers, name)
    }

    /// Properties the stream derives from itself, as proxies serve them.
    fn derived(&self, path: &str) -> Option<Vec<u8>> {
        let text = |s: Option<String>| s.map(String::into_bytes);
        match path {
            "request.path" => text(self.request_header(":path")),
            "request.url_path" => text(
                self.request_header(":path")
                    .map(|p| p.split('?').next().unwrap_or_default().to_string()),
            ),
            "request.query" => text(self.request_header(":path").map(|p| {
                p.split_once('?')
                    .map(|(_, q)| q.to_string())
                    .unwrap_or_default()
            })),
            "request.method" => text(self.request_header(":method")),
            "request.host" => text(self.request_header(":authority")),
            "request.scheme" => text(self.request_header(":scheme")),
            "request.id" => text(self.request_header("x-request-id")),
            "request.useragent" => text(self.request_header("user-agent")),
            "request.referer" => text(self.request_header("referer")),
            "request.time" => {
                let since = (self.started.1)
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                Some(nanos(since).to_le_bytes().to_vec())
            }
            "request.duration" => Some(nanos(self.started.0.elapsed()).to_le_bytes().to_vec()),
            "response.code" => self
                .response_headers
                .as_ref()
                .and_then(|h| value(h, ":status"))
                .and_then(|s| s.parse::<i64>().ok())
                .map(|code| code.to_le_bytes().to_vec()),
            _ => None,
        }
    }
}

fn nanos(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

fn value(pairs: &Pairs, name: &str) -> Option<String> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

/// A property path's segments joined with dots.
fn dotted(path: &[&[u8]]) -> String {
    path.iter()
        .map(|s| String::from_utf8_lossy(s))
        .collect::<Vec<_>>()
        .join(".")
}

impl HttpStream for MockStream {
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

    fn add_map_value(&mut self, map: MapType, key: &[u8], value: &[u8]) -> Result<(), Status> {
        self.map_mut(map)?
            .push((key.to_ascii_lowercase(), value.to_vec()));
        Ok(())
    }

    fn replace_map_value(&mut self, map: MapType, key: &[u8], value: &[u8]) -> Result<(), Status> {
        let pairs = self.map_mut(map)?;
        match pairs.iter().position(|(k, _)| k.eq_ignore_ascii_case(key)) {
            Some(first) => {
                pairs[first].1 = value.to_vec();
                let mut index = 0;
                pairs.retain(|(k, _)| {
                    index += 1;
                    index - 1 == first || !k.eq_ignore_ascii_case(key)
                });
            }
            None => pairs.push((key.to_ascii_lowercase(), value.to_vec())),
        }
        Ok(())
    }

    fn remove_map_value(&mut self, map: MapType, key: &[u8]) -> Result<(), Status> {
        self.map_mut(map)?
            .retain(|(k, _)| !k.eq_ignore_ascii_case(key));
        Ok(())
    }

    fn set_map_pairs(&mut self, map: MapType, pairs: &[(&[u8], &[u8])]) -> Result<(), Status> {
        *self.map_mut(map)? = pairs
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_vec()))
            .collect();
        Ok(())
    }

    fn send_local_response(&mut self, response: LocalResponse) -> Result<(), Status> {
        if self.tcp {
            return Err(Status::BadArgument);
        }
        self.local = Some(response);
        Ok(())
    }

    fn property(&self, path: &[&[u8]], out: &mut Vec<u8>) -> Result<(), Status> {
        let path = dotted(path);
        let value = self
            .properties
            .get(&path)
            .cloned()
            .or_else(|| self.derived(&path))
            .ok_or(Status::NotFound)?;
        out.extend_from_slice(&value);
        Ok(())
    }

    fn buffer(&self, buffer: BufferType) -> Result<&[u8], Status> {
        match buffer {
            BufferType::HttpRequestBody => Ok(&self.request_body),
            BufferType::HttpResponseBody => Ok(&self.response_body),
            BufferType::DownstreamData if self.tcp => Ok(&self.downstream_data),
            BufferType::UpstreamData if self.tcp => Ok(&self.upstream_data),
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
            BufferType::DownstreamData if self.tcp => &mut self.downstream_data,
            BufferType::UpstreamData if self.tcp => &mut self.upstream_data,
            _ => return Err(Status::NotFound),
        };
        let start = start.min(body.len());
        let end = start.saturating_add(size).min(body.len());
        body.splice(start..end, data.iter().copied());
        Ok(())
    }

    fn set_property(&mut self, path: &[&[u8]], value: &[u8]) -> Result<(), Status> {
        self.properties.insert(dotted(path), value.to_vec());
        Ok(())
    }
}
