//! TCP listeners (`protocol: tcp`): each connection is relayed byte for
//! byte to an endpoint of the listener's cluster, through its plugins'
//! TCP callbacks.
//!
//! The plugins see one stream context per connection:
//! `proxy_on_new_connection` before the upstream is connected (a plugin
//! may pause it, and continue it later from a timer or call-out answer),
//! then `proxy_on_downstream_data` (chain order) for what the client sends
//! and `proxy_on_upstream_data` (reverse order) for what the upstream
//! sends, over the DOWNSTREAM_DATA / UPSTREAM_DATA buffers, which they may
//! change. A plugin that pauses on data holds it: what arrives next is
//! appended and the chain runs again over all of it (as Envoy does), until
//! it continues — from that callback, or from a root callback with
//! `proxy_continue_stream`, after which the plugins behind it run.
//! `proxy_close_stream` from any of them closes the whole connection.
//! When a side ends, the other side's write half is shut down and that
//! side's `proxy_on_*_connection_close` runs (peer REMOTE); when the proxy
//! ends the connection (a plugin closed it, a fail-closed plugin failed,
//! the upstream could not be reached), both run with peer LOCAL. Then
//! `proxy_on_done`, `proxy_on_log`, `proxy_on_delete`.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use weft_abi::{BufferType, HttpStream, PeerType, Status};

use crate::chain::{SharedFilters, Stop, StreamFilters, TcpEvent};
use crate::cluster::Pick;
use crate::router::{Action, ListenerRoutes};
use crate::stream::{ConnectionInfo, StoredProperties, splice, store_property, stored_property};
use crate::worker::Worker;

/// What a TCP connection's plugins see: its two data buffers and its
/// properties.
pub(crate) struct TcpState {
    connection: ConnectionInfo,
    /// The endpoint the connection is relayed to, once connected.
    upstream: Option<SocketAddr>,
    /// Data from downstream not yet sent upstream (DOWNSTREAM_DATA).
    downstream_data: BytesMut,
    /// Data from upstream not yet sent downstream (UPSTREAM_DATA).
    upstream_data: BytesMut,
    /// Values plugins stored with `proxy_set_property`, by dotted path.
    properties: StoredProperties,
}

impl TcpState {
    fn data(&mut self, downstream: bool) -> &mut BytesMut {
        if downstream {
            &mut self.downstream_data
        } else {
            &mut self.upstream_data
        }
    }
}

/// A TCP connection has no header maps and no local responses (the
/// trait's defaults).
impl HttpStream for TcpState {
    fn buffer(&self, buffer: BufferType) -> Result<&[u8], Status> {
        match buffer {
            BufferType::DownstreamData => Ok(&self.downstream_data),
            BufferType::UpstreamData => Ok(&self.upstream_data),
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
        let target = match buffer {
            BufferType::DownstreamData => &mut self.downstream_data,
            BufferType::UpstreamData => &mut self.upstream_data,
            _ => return Err(Status::NotFound),
        };
        splice(target, start, size, data);
        Ok(())
    }

    fn property(&self, path: &[&[u8]], out: &mut Vec<u8>) -> Result<(), Status> {
        if stored_property(&self.properties, path, out) {
            return Ok(());
        }
        let int = |out: &mut Vec<u8>, n: i64| out.extend_from_slice(&n.to_le_bytes());
        let connection = &self.connection;
        match path {
            [b"source", b"address"] => {
                out.extend_from_slice(connection.peer.to_string().as_bytes())
            }
            [b"source", b"port"] => int(out, connection.peer.port().into()),
            [b"destination", b"address"] => {
                out.extend_from_slice(connection.local.to_string().as_bytes())
            }
            [b"destination", b"port"] => int(out, connection.local.port().into()),
            [b"connection", b"id"] => out.extend_from_slice(&connection.id.to_le_bytes()),
            [b"upstream", b"address"] => out.extend_from_slice(
                self.upstream
                    .ok_or(Status::NotFound)?
                    .to_string()
                    .as_bytes(),
            ),
            [b"upstream", b"port"] => {
                int(out, self.upstream.ok_or(Status::NotFound)?.port().into())
            }
            _ => return Err(Status::NotFound),
        }
        Ok(())
    }

    fn set_property(&mut self, path: &[&[u8]], value: &[u8]) -> Result<(), Status> {
        store_property(&mut self.properties, path, value);
        Ok(())
    }
}

/// Why a relay ended before both sides did.
enum End {
    /// A plugin closed it, failed, or held data too long.
    Stop(Stop),
    /// A socket failed.
    Io(std::io::Error),
}

impl End {
    fn describe(&self) -> String {
        match self {
            End::Stop(stop) => stop.describe(),
            End::Io(err) => err.to_string(),
        }
    }
}

/// Relays one downstream connection of a TCP listener.
pub(crate) async fn serve(
    tcp: TcpStream,
    connection: ConnectionInfo,
    worker: Rc<Worker>,
    listener: Arc<ListenerRoutes>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let table = worker.route_table(listener.index);
    let route = table
        .default_route()
        .ok_or("the tcp listener has no cluster")?;
    let Action::Forward(forward) = &route.action else {
        return Err("the tcp listener does not forward".into());
    };
    let cluster = forward.pick(worker.random());
    let state = TcpState {
        connection,
        upstream: None,
        downstream_data: BytesMut::new(),
        upstream_data: BytesMut::new(),
        properties: Vec::new(),
    };
    let filters: SharedFilters = Rc::new(RefCell::new(StreamFilters::tcp(
        worker.clone(),
        route.chain.clone(),
        Box::new(state),
    )));
    let closed_by_proxy = |end: &End| {
        let mut f = filters.borrow_mut();
        f.tcp_closed(true, PeerType::Local);
        f.tcp_closed(false, PeerType::Local);
        end.describe()
    };

    // The plugins' say on the connection before the upstream is reached.
    let mut start = 0;
    loop {
        let outcome = filters.borrow_mut().run_tcp(TcpEvent::NewConnection, start);
        match outcome {
            Ok(()) => break,
            Err(Stop::Paused {
                plugin,
                resume: Some(resume),
            }) => {
                let waited = crate::chain::wait_for_plugin(&worker, &filters, plugin, resume).await;
                if let Err(stop) = waited {
                    return Err(closed_by_proxy(&End::Stop(stop)).into());
                }
                start = resume.step + 1;
            }
            Err(stop) => return Err(closed_by_proxy(&End::Stop(stop)).into()),
        }
    }

    let pick = Pick {
        hash: None,
        random: worker.random(),
    };
    let upstream = match worker.clusters[cluster].connect_tcp(pick).await {
        Ok(upstream) => upstream,
        Err(err) => {
            let end = End::Io(std::io::Error::other(err.to_string()));
            return Err(closed_by_proxy(&end).into());
        }
    };
    if let Some(state) = filters.borrow_mut().stream_as::<TcpState>() {
        state.upstream = Some(upstream.addr);
    }
    let (client_read, client_write) = tcp.into_split();
    let (upstream_read, upstream_write) = upstream.tcp.into_split();
    let down = relay(&worker, &filters, true, client_read, upstream_write);
    let up = relay(&worker, &filters, false, upstream_read, client_write);
    tokio::pin!(down, up);
    let (mut down_done, mut up_done) = (false, false);
    while !(down_done && up_done) {
        let ended = tokio::select! {
            ended = &mut down, if !down_done => { down_done = true; ended }
            ended = &mut up, if !up_done => { up_done = true; ended }
        };
        if let Err(end) = ended {
            return Err(closed_by_proxy(&end).into());
        }
    }
    // `upstream` (its connection slot and load) lives until here.
    drop(upstream.guard);
    Ok(())
}

/// Relays one direction: reads `from`, runs the data callbacks, writes
/// what they let through to `to`. At the end of `from`, shuts `to` down
/// and runs that side's close callbacks.
async fn relay(
    worker: &Worker,
    filters: &SharedFilters,
    downstream: bool,
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
) -> Result<(), End> {
    let mut chunk = BytesMut::with_capacity(READ_SIZE);
    let mut end_of_stream = false;
    // The chain step to run from: 0 for new data, the step after a
    // plugin that continued.
    let mut start = 0;
    loop {
        if start == 0 && !end_of_stream {
            chunk.clear();
            let n = from.read_buf(&mut chunk).await.map_err(End::Io)?;
            end_of_stream = n == 0;
            append(filters, downstream, &chunk);
        }
        let event = TcpEvent::Data {
            downstream,
            end_of_stream,
        };
        let outcome = filters.borrow_mut().run_tcp(event, start);
        match outcome {
            Ok(()) => {
                let data = filters
                    .borrow_mut()
                    .stream_as::<TcpState>()
                    .map(|s| s.data(downstream).split())
                    .unwrap_or_default();
                if !data.is_empty() {
                    to.write_all(&data).await.map_err(End::Io)?;
                }
                if end_of_stream {
                    let _ = to.shutdown().await;
                    filters
                        .borrow_mut()
                        .tcp_closed(downstream, PeerType::Remote);
                    return Ok(());
                }
                start = 0;
            }
            Err(Stop::Paused {
                plugin,
                resume: Some(resume),
            }) => {
                let held = filters
                    .borrow_mut()
                    .stream_as::<TcpState>()
                    .map_or(0, |s| s.data(downstream).len());
                let limit = worker.slot(resume.plugin).borrow().buffer_limit();
                if held > limit {
                    return Err(End::Stop(Stop::TooLarge { plugin, limit }));
                }
                // More data runs the chain again over all of it; a
                // continue goes on after the plugin that paused.
                chunk.clear();
                let more = async {
                    if end_of_stream {
                        std::future::pending().await
                    } else {
                        from.read_buf(&mut chunk).await
                    }
                };
                match crate::chain::wait_for_plugin_or(worker, filters, plugin, resume, more).await
                {
                    Ok(Ok(())) => start = resume.step + 1,
                    Ok(Err(stop)) => return Err(End::Stop(stop)),
                    Err(read) => {
                        let n = read.map_err(End::Io)?;
                        end_of_stream = n == 0;
                        append(filters, downstream, &chunk);
                        start = 0;
                    }
                }
            }
            Err(stop) => return Err(End::Stop(stop)),
        }
    }
}

/// Bytes read at once from either side.
const READ_SIZE: usize = 16 << 10;

/// Adds what was read to the buffer of its direction.
fn append(filters: &SharedFilters, downstream: bool, chunk: &[u8]) {
    if let Some(state) = filters.borrow_mut().stream_as::<TcpState>() {
        state.data(downstream).extend_from_slice(chunk);
    }
}
