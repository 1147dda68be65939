//! A header-map stream over plain lists, for weft-abi's tests and
//! benchmarks (`#[path]`-included by both: they are separate crates).

use weft_abi::{HttpStream, LocalResponse, MapType, Status};

/// A header map as a list of (name, value) pairs.
pub type Map = Vec<(Vec<u8>, Vec<u8>)>;

/// Request and response header maps as lists, and the local response a
/// plugin sent, if any.
#[derive(Default)]
pub struct ListStream {
    pub request: Map,
    pub response: Option<Map>,
    pub local: Option<LocalResponse>,
}

impl ListStream {
    fn map(&self, map: MapType) -> Result<&Map, Status> {
        match map {
            MapType::HttpRequestHeaders => Ok(&self.request),
            MapType::HttpResponseHeaders => self.response.as_ref().ok_or(Status::NotFound),
            _ => Err(Status::NotFound),
        }
    }
    fn map_mut(&mut self, map: MapType) -> Result<&mut Map, Status> {
        match map {
            MapType::HttpRequestHeaders => Ok(&mut self.request),
            MapType::HttpResponseHeaders => self.response.as_mut().ok_or(Status::BadArgument),
            _ => Err(Status::BadArgument),
        }
    }
}

impl HttpStream for ListStream {
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
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice()))
    }
    fn add_map_value(&mut self, map: MapType, key: &[u8], value: &[u8]) -> Result<(), Status> {
        self.map_mut(map)?.push((key.to_vec(), value.to_vec()));
        Ok(())
    }
    fn replace_map_value(&mut self, map: MapType, key: &[u8], value: &[u8]) -> Result<(), Status> {
        self.remove_map_value(map, key)?;
        self.add_map_value(map, key, value)
    }
    fn remove_map_value(&mut self, map: MapType, key: &[u8]) -> Result<(), Status> {
        self.map_mut(map)?.retain(|(k, _)| k != key);
        Ok(())
    }
    fn set_map_pairs(&mut self, map: MapType, pairs: &[(&[u8], &[u8])]) -> Result<(), Status> {
        *self.map_mut(map)? = pairs
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        Ok(())
    }
    fn send_local_response(&mut self, response: LocalResponse) -> Result<(), Status> {
        self.local = Some(response);
        Ok(())
    }
}
