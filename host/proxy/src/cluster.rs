//! Clusters and their per-worker connection pools.
//!
//! Each worker owns its pools (no locks): idle HTTP/1.1 connections per
//! endpoint, taken for a request and given back when the response body has
//! been read to its end.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::body::RequestBody;

/// Why a request could not be sent upstream.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("connect to {addr} timed out after {timeout:?}")]
    ConnectTimeout { addr: SocketAddr, timeout: Duration },
    #[error("connect to {addr} failed: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP handshake with {addr} failed: {source}")]
    Handshake {
        addr: SocketAddr,
        source: hyper::Error,
    },
    #[error("request to {addr} failed: {source}")]
    Request {
        addr: SocketAddr,
        source: hyper::Error,
    },
}

/// One upstream address and its idle connections on this worker.
pub(crate) struct Endpoint {
    pub(crate) addr: SocketAddr,
    idle: RefCell<Vec<SendRequest<RequestBody>>>,
    max_idle: usize,
}

impl Endpoint {
    /// Gives a connection whose response has been read back to the pool.
    pub(crate) fn release(&self, sender: SendRequest<RequestBody>) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() < self.max_idle && !sender.is_closed() {
            idle.push(sender);
        }
    }
}

/// A cluster as one worker sees it.
pub(crate) struct ClusterPool {
    pub(crate) name: Rc<str>,
    endpoints: Vec<Rc<Endpoint>>,
    next: Cell<usize>,
    connect_timeout: Duration,
}

/// A response whose connection goes back to `endpoint` when its body ends.
pub(crate) struct Upstream {
    pub(crate) response: Response<Incoming>,
    pub(crate) endpoint: Rc<Endpoint>,
    pub(crate) sender: SendRequest<RequestBody>,
}

impl ClusterPool {
    pub(crate) fn new(cluster: &weft_config::Cluster) -> ClusterPool {
        ClusterPool {
            name: Rc::from(cluster.name.as_str()),
            endpoints: cluster
                .endpoints
                .iter()
                .map(|&addr| {
                    Rc::new(Endpoint {
                        addr,
                        idle: RefCell::new(Vec::new()),
                        max_idle: cluster.max_idle_per_endpoint,
                    })
                })
                .collect(),
            next: Cell::new(0),
            connect_timeout: Duration::from_millis(cluster.connect_timeout_ms),
        }
    }

    /// Picks an endpoint round robin.
    fn pick(&self) -> Rc<Endpoint> {
        let i = self.next.get();
        self.next.set(i.wrapping_add(1));
        self.endpoints[i % self.endpoints.len()].clone()
    }

    /// Sends `request` on a pooled connection, or a new one.
    pub(crate) async fn send(
        &self,
        mut request: Request<RequestBody>,
    ) -> Result<Upstream, UpstreamError> {
        let endpoint = self.pick();
        let addr = endpoint.addr;
        // Idle connections may have been closed by the upstream meanwhile: a
        // request that was not sent on one is retried on the next, and then on
        // a fresh connection.
        loop {
            let pooled = endpoint.idle.borrow_mut().pop();
            let (mut sender, fresh) = match pooled {
                Some(sender) => (sender, false),
                None => (self.connect(addr).await?, true),
            };
            if let Err(source) = sender.ready().await {
                if fresh {
                    return Err(UpstreamError::Handshake { addr, source });
                }
                continue;
            }
            match sender.try_send_request(request).await {
                Ok(response) => {
                    return Ok(Upstream {
                        response,
                        endpoint,
                        sender,
                    });
                }
                Err(mut err) => match err.take_message() {
                    Some(unsent) if !fresh => request = unsent,
                    _ => {
                        return Err(UpstreamError::Request {
                            addr,
                            source: err.into_error(),
                        });
                    }
                },
            }
        }
    }

    async fn connect(&self, addr: SocketAddr) -> Result<SendRequest<RequestBody>, UpstreamError> {
        let tcp = tokio::time::timeout(self.connect_timeout, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| UpstreamError::ConnectTimeout {
                addr,
                timeout: self.connect_timeout,
            })?
            .map_err(|source| UpstreamError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(tcp))
            .await
            .map_err(|source| UpstreamError::Handshake { addr, source })?;
        tokio::task::spawn_local(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%addr, "upstream connection ended: {err}");
            }
        });
        Ok(sender)
    }
}
