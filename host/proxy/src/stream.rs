//! The request/response as filters see it: [`ProxyStream`] implements
//! weft-abi's `HttpStream` over hyper's types.

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};
use weft_abi::{HttpStream, LocalResponse, MapType, Status};

/// One request's state while filters run on it.
pub(crate) struct ProxyStream {
    pub(crate) method: Method,
    pub(crate) scheme: &'static str,
    /// `:authority`: the Host header (HTTP/1.1) or the URI's authority.
    pub(crate) authority: String,
    /// `:path`: path and query, as sent upstream.
    pub(crate) path: String,
    /// Request headers without Host (carried as `:authority`).
    pub(crate) request_headers: HeaderMap,
    pub(crate) response: Option<ResponseHead>,
    pub(crate) local_response: Option<LocalResponse>,
}

/// Status and headers of the response being filtered.
pub(crate) struct ResponseHead {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
}

impl ProxyStream {
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
            (MapType::HttpRequestHeaders, b":path") => self.path = text()?.to_string(),
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
    let name = HeaderName::from_bytes(key).map_err(|_| Status::BadArgument)?;
    let value = HeaderValue::from_bytes(value).map_err(|_| Status::BadArgument)?;
    Ok((name, value))
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
        let Ok(name) = HeaderName::from_bytes(key) else {
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
        if let Ok(name) = HeaderName::from_bytes(key) {
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

    fn send_local_response(&mut self, response: LocalResponse) -> Result<(), Status> {
        if StatusCode::from_u16(u16::try_from(response.status).map_err(|_| Status::BadArgument)?)
            .is_err()
        {
            return Err(Status::BadArgument);
        }
        self.local_response = Some(response);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> ProxyStream {
        let mut headers = HeaderMap::new();
        headers.insert("x-a", HeaderValue::from_static("1"));
        ProxyStream {
            method: Method::GET,
            scheme: "http",
            authority: "example.com".into(),
            path: "/p?q=1".into(),
            request_headers: headers,
            response: None,
            local_response: None,
        }
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
