//! A worker: one thread, one current-thread tokio runtime, its own listener
//! sockets (SO_REUSEPORT), filter VMs and upstream pools. Nothing here is
//! shared with other workers, so nothing on the request path takes a lock.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;
use weft_abi::{HttpStream, LocalResponse, VmHooks};

use crate::body::{Owner, PlainStream, ResponseBody, Source};
use crate::chain::{Phase, PluginSlot, SharedFilters, Stop, StreamFilters, run_headers_phase};
use crate::cluster::{ClusterPool, ClusterShared, LocalExec};
use crate::observe::{self, AccessLog};
use crate::router::{Action, ListenerRoutes, Route, RouteTable};
use crate::stream::{ConnectionInfo, ProxyStream, ResponseHead, authority, strip_hop_by_hop};
use crate::tls::TlsInfo;

/// What a worker thread is started with; all of it can cross threads.
pub(crate) struct WorkerInit {
    pub(crate) index: usize,
    pub(crate) clusters: Vec<Arc<ClusterShared>>,
    pub(crate) listeners: Vec<(Arc<ListenerRoutes>, std::net::TcpListener)>,
    /// Each listener's access log settings, by listener index.
    pub(crate) access_logs: Vec<Option<weft_config::AccessLog>>,
    /// The plugins and routing tables to run, published at start and by
    /// every swap.
    pub(crate) published: Arc<crate::swap::Published>,
    /// Foreign callbacks an operator asked for: (slot, function id,
    /// arguments).
    pub(crate) foreign: tokio::sync::mpsc::UnboundedReceiver<ForeignCall>,
}

/// A call of a plugin's `proxy_on_foreign_function`: (slot, function id,
/// arguments).
pub(crate) type ForeignCall = (usize, u32, Arc<[u8]>);

/// A worker's own state.
pub(crate) struct Worker {
    index: usize,
    /// The plugins, by slot number (routes name them by it). Slots are
    /// added by bundles, never removed.
    plugins: RefCell<Vec<Rc<RefCell<PluginSlot>>>>,
    /// Each listener's routing table, by listener index.
    routes: RefCell<Vec<Arc<RouteTable>>>,
    pub(crate) clusters: Vec<ClusterPool>,
    connections: Cell<u64>,
    /// Downstream connections open now.
    open: Rc<Running>,
    /// Set once the worker stops accepting: open connections finish.
    draining: Draining,
    /// The timer of deadlines that need no precision (HTTP/1 header
    /// reads, upstream deadlines seconds away), ticked by the worker.
    pub(crate) coarse: crate::coarse::CoarseTimer,
    call_tokens: Cell<u32>,
    /// State of the worker's random numbers (splitmix64).
    random: Cell<u64>,
    /// Each listener's access log, by listener index.
    pub(crate) access_logs: Vec<Option<AccessLog>>,
    /// Where queue notifications for this worker's VMs go, as (slot, VM
    /// generation, queue).
    ready: tokio::sync::mpsc::UnboundedSender<(usize, u64, u32)>,
    /// Itself, for the hooks of VMs started later.
    this: std::rc::Weak<Worker>,
}

impl Worker {
    /// Plugin slot `index` (a number a route or a hook got from this
    /// worker's publication, so it exists).
    pub(crate) fn slot(&self, index: usize) -> Rc<RefCell<PluginSlot>> {
        self.plugins.borrow()[index].clone()
    }

    /// The routing table of listener `index`, as published now.
    pub(crate) fn route_table(&self, index: usize) -> Arc<RouteTable> {
        self.routes.borrow()[index].clone()
    }

    /// Adds slot `index` for a plugin published to it, with hooks that
    /// bring its queue notifications and call-out answers back to it, and
    /// its timer.
    fn add_slot(&self, index: usize, published: &crate::swap::PublishedSlot) {
        let sender = self.ready.clone();
        let weak = self.this.clone();
        let name = published.plugin.name.clone();
        let allowed = published.allowed_clusters.clone();
        let stats = published.stats.clone();
        let hooks: crate::chain::HooksFor = Rc::new(move |generation| {
            let sender = sender.clone();
            let stats = stats.clone();
            VmHooks {
                on_callback: Some(Rc::new(move |_, elapsed| {
                    stats.callback_durations.record(elapsed);
                })),
                queue_notifier: Some(Arc::new(move |queue| {
                    let _ = sender.send((index, generation, queue));
                })),
                http_caller: Some(crate::callout::caller(
                    weak.clone(),
                    (index, generation),
                    name.clone(),
                    allowed.clone(),
                )),
                grpc_caller: Some(crate::callout::grpc_caller(
                    weak.clone(),
                    (index, generation),
                    name.clone(),
                    allowed.clone(),
                )),
                grpc_streamer: Some(crate::callout::grpc_streamer(
                    weak.clone(),
                    (index, generation),
                    name.clone(),
                    allowed.clone(),
                )),
            }
        });
        let mut slot = PluginSlot::new(published.plugin.clone(), published.stats.clone(), hooks);
        slot.version = published.version;
        slot.per_request = published.per_request;
        slot.deliver_body = published.deliver_body;
        if published.loaded {
            slot.warm();
        } else {
            slot.unload(published.version);
        }
        self.plugins.borrow_mut().push(Rc::new(RefCell::new(slot)));
        if let Some(worker) = self.this.upgrade() {
            tokio::task::spawn_local(tick(worker, index));
        }
    }

    /// Applies the current publication: new slots are added, slots whose
    /// version changed get their new VM (streams in flight keep theirs),
    /// and the routing tables are replaced, all in one turn.
    fn apply(&self, publication: &crate::swap::Publication) {
        for (index, published) in publication.slots.iter().enumerate() {
            let existing = self.plugins.borrow().get(index).cloned();
            match existing {
                None => self.add_slot(index, published),
                Some(slot) => {
                    let mut slot = slot.borrow_mut();
                    if slot.version != published.version {
                        slot.per_request = published.per_request;
                        slot.deliver_body = published.deliver_body;
                        if published.loaded {
                            slot.swap(published.plugin.clone(), published.version);
                        } else {
                            slot.unload(published.version);
                        }
                    }
                }
            }
        }
        *self.routes.borrow_mut() = publication.routes.clone();
    }

    /// A random number, for load balancing, weighted routes and jitter.
    pub(crate) fn random(&self) -> u64 {
        let state = self.random.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.random.set(state);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The access log of listener `listener`, if it has one.
    pub(crate) fn access_log(&self, listener: usize) -> Option<&AccessLog> {
        self.access_logs.get(listener).and_then(Option::as_ref)
    }

    /// A token for a new HTTP call-out, unique on this worker.
    pub(crate) fn next_call_token(&self) -> u32 {
        let token = self.call_tokens.get().wrapping_add(1).max(1);
        self.call_tokens.set(token);
        token
    }
}

/// Runs a worker until `shutdown` turns true, then drains: it stops
/// accepting, lets open connections finish their current request (each
/// is told to close after it), and returns once they are all closed or
/// `drain` has passed.
pub(crate) fn run(
    init: WorkerInit,
    shutdown: watch::Receiver<bool>,
    drain: Duration,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let access_logs = init
        .access_logs
        .iter()
        .map(|config| config.as_ref().map(AccessLog::open).transpose())
        .collect::<std::io::Result<Vec<_>>>()?;
    local.block_on(&runtime, async move {
        // Items enqueued (on any thread) on queues this worker's VMs
        // registered arrive here as (plugin, queue) and are delivered to
        // the VM by the task below.
        let (ready_sender, mut ready) =
            tokio::sync::mpsc::unbounded_channel::<(usize, u64, u32)>();
        let worker = Rc::new_cyclic(|this: &std::rc::Weak<Worker>| Worker {
            index: init.index,
            plugins: RefCell::new(Vec::new()),
            routes: RefCell::new(Vec::new()),
            connections: Cell::new(0),
            open: Rc::default(),
            draining: Draining::default(),
            coarse: crate::coarse::CoarseTimer::new(),
            call_tokens: Cell::new(0),
            random: Cell::new(seed(init.index)),
            access_logs,
            clusters: init.clusters.into_iter().map(ClusterPool::new).collect(),
            ready: ready_sender,
            this: this.clone(),
        });
        {
            let worker = worker.clone();
            tokio::task::spawn_local(async move {
                while let Some((plugin, generation, queue)) = ready.recv().await {
                    worker
                        .slot(plugin)
                        .borrow_mut()
                        .queue_ready(generation, queue);
                }
            });
        }
        {
            let worker = worker.clone();
            let mut foreign = init.foreign;
            tokio::task::spawn_local(async move {
                while let Some((plugin, function_id, arguments)) = foreign.recv().await {
                    if plugin < worker.plugins.borrow().len() {
                        worker
                            .slot(plugin)
                            .borrow_mut()
                            .foreign_function(function_id, &arguments);
                    }
                }
            });
        }
        {
            let timer = worker.coarse;
            tokio::task::spawn_local(async move {
                let mut ticks = tokio::time::interval(crate::coarse::TICK);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    timer.tick();
                }
            });
        }
        // The plugins and routes to start with, before the first
        // connection is accepted.
        worker.apply(&init.published.current());
        tokio::task::spawn_local(apply_swaps(worker.clone(), init.published));
        let accepting = Rc::new(Running::default());
        for (route, socket) in init.listeners {
            let listener = tokio::net::TcpListener::from_std(socket)?;
            let worker = worker.clone();
            let mut shutdown = shutdown.clone();
            let done = accepting.start();
            tokio::task::spawn_local(async move {
                let _done = done;
                loop {
                    tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok((tcp, peer)) => {
                                let _ = tcp.set_nodelay(true);
                                tokio::task::spawn_local(serve(tcp, peer, worker.clone(), route.clone()));
                            }
                            Err(err) => {
                                // Out of file descriptors and the like: back off
                                // briefly instead of spinning.
                                tracing::warn!(listener = %route.name, "accept failed: {err}");
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        },
                        _ = shutdown.wait_for(|stop| *stop) => break,
                    }
                }
            });
        }
        if worker.access_logs.iter().any(Option::is_some) {
            let worker = worker.clone();
            tokio::task::spawn_local(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    worker.access_logs.iter().flatten().for_each(AccessLog::flush);
                }
            });
        }
        tracing::debug!(worker = init.index, "worker running");
        accepting.all_ended().await;
        worker.draining.start();
        let drained = tokio::time::timeout(drain, worker.open.all_ended()).await;
        if drained.is_err() {
            tracing::warn!(
                worker = init.index,
                open = worker.open.count.get(),
                "drain deadline passed; closing the remaining connections"
            );
        }
        worker.access_logs.iter().flatten().for_each(AccessLog::flush);
        Ok(())
    })
}

/// A seed for a worker's random numbers: the clock, the worker and the
/// process, mixed.
fn seed(worker: usize) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (worker as u64).rotate_left(32) ^ u64::from(std::process::id()).rotate_left(16)
}

/// Delivers `proxy_on_tick` to one plugin's VM at the period it set. A
/// plugin may set or change its period in any callback, so without one the
/// loop looks again every `IDLE_TICK_CHECK`.
async fn tick(worker: Rc<Worker>, plugin: usize) {
    const IDLE_TICK_CHECK: Duration = Duration::from_millis(100);
    let slot = worker.slot(plugin);
    loop {
        let period = slot.borrow().tick_period();
        match period {
            Some(period) => {
                tokio::time::sleep(period).await;
                slot.borrow_mut().tick();
            }
            None => tokio::time::sleep(IDLE_TICK_CHECK).await,
        }
    }
}

/// Applies each new publication of plugins and routing tables, the one
/// made before this worker started first.
async fn apply_swaps(worker: Rc<Worker>, published: Arc<crate::swap::Published>) {
    let mut updates = published.subscribe();
    loop {
        let generation = *updates.borrow_and_update();
        worker.apply(&published.current());
        published.applied(worker.index, generation);
        if updates.changed().await.is_err() {
            return;
        }
    }
}

async fn serve(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    worker: Rc<Worker>,
    route: Arc<ListenerRoutes>,
) {
    let id = worker.connections.get();
    worker.connections.set(id + 1);
    let _open = worker.open.start();
    let stats = route.stats.clone();
    stats.connections.fetch_add(1, Ordering::Relaxed);
    stats.active_connections.fetch_add(1, Ordering::Relaxed);
    let local = tcp.local_addr().unwrap_or(peer);
    let mut info = ConnectionInfo {
        id: (worker.index as u64) << 40 | id,
        peer,
        local,
        tls: None,
    };
    let result = match &route.tls {
        // Boxed: the relay's future stays out of every HTTP connection's.
        None if route.tcp => {
            Box::pin(crate::tcp::serve(tcp, info, worker.clone(), route.clone())).await
        }
        None => serve_http(TokioIo::new(tcp), info, worker.clone(), route.clone()).await,
        Some(tls) => {
            let limit = Duration::from_millis(route.limits.request_header_timeout_ms);
            match tokio::time::timeout(limit, tls.acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    info.tls = Some(TlsInfo::of(stream.get_ref().1));
                    serve_http(TokioIo::new(stream), info, worker.clone(), route.clone()).await
                }
                Ok(Err(err)) => Err(format!("TLS handshake failed: {err}").into()),
                Err(_) => Err("TLS handshake timed out".into()),
            }
        }
    };
    stats.active_connections.fetch_sub(1, Ordering::Relaxed);
    if let Err(err) = result {
        tracing::debug!(%peer, listener = %route.name, "downstream connection ended: {err}");
    }
}

/// Serves HTTP/1.1, and HTTP/2 when the listener allows it, on one
/// connection until it closes, or until shutdown and its requests in
/// flight are done.
async fn serve_http<T>(
    io: T,
    info: ConnectionInfo,
    worker: Rc<Worker>,
    route: Arc<ListenerRoutes>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let limits = route.limits;
    let id = info.id;
    let owner = worker.clone();
    let draining = &owner.draining;
    // TLS chose the protocol by ALPN; a plain listener with HTTP/2 must
    // look at the first bytes (hyper-util's auto), which costs a little on
    // every read, so HTTP/1.1-only listeners skip it.
    let protocol = match &info.tls {
        Some(tls) if tls.h2 => Protocol::Http2,
        Some(_) => Protocol::Http1,
        None if route.http2 => Protocol::Detect,
        None => Protocol::Http1,
    };
    let header_timeout = Duration::from_millis(limits.request_header_timeout_ms);
    let connection = Rc::new(info);
    let service = service_fn(move |request| {
        // Not boxed: hyper keeps each connection's request future in a
        // box of its own, made once per connection. `handle` starts inside
        // the block, so its (large) state is made in place there.
        let (worker, route, connection) = (worker.clone(), route.clone(), connection.clone());
        async move {
            let mut result = handle(worker, route, connection, request).await;
            if let Ok(response) = &mut result {
                let status = response.status().as_u16();
                response.body_mut().note_status(status);
            }
            result
        }
    });
    match protocol {
        Protocol::Http1 => {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(owner.coarse)
                .header_read_timeout(header_timeout)
                .max_buf_size(limits.max_request_headers_kb as usize * 1024)
                .serve_connection(io, service)
                .with_upgrades();
            drain(connection, draining, id).await.map_err(Into::into)
        }
        Protocol::Http2 => {
            let connection = hyper::server::conn::http2::Builder::new(LocalExec)
                .timer(TokioTimer::new())
                .max_header_list_size(limits.max_request_headers_kb * 1024)
                .serve_connection(io, service);
            drain(connection, draining, id).await.map_err(Into::into)
        }
        Protocol::Detect => {
            let mut builder = hyper_util::server::conn::auto::Builder::new(LocalExec);
            builder
                .http1()
                .timer(owner.coarse)
                .header_read_timeout(header_timeout)
                .max_buf_size(limits.max_request_headers_kb as usize * 1024);
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_header_list_size(limits.max_request_headers_kb * 1024);
            let connection = builder.serve_connection_with_upgrades(io, service);
            drain(connection, draining, id).await
        }
    }
}

/// How a downstream connection speaks.
enum Protocol {
    Http1,
    Http2,
    /// HTTP/2 by prior knowledge, else HTTP/1.1.
    Detect,
}

/// A server connection that can be told to finish what it has and close.
trait Graceful: Future {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S> Graceful for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    Self: Future,
    S: hyper::service::HttpService<Incoming>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: 'static,
    <S::ResBody as Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

impl<I, S, E> Graceful for hyper::server::conn::http2::Connection<I, S, E>
where
    Self: Future,
    S: hyper::service::HttpService<Incoming>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S::ResBody: 'static,
    <S::ResBody as Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http2::Connection::graceful_shutdown(self);
    }
}

impl<I, S, E, B> Graceful for hyper_util::server::conn::auto::UpgradeableConnection<'_, I, S, E>
where
    Self: Future,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: 'static,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper_util::server::conn::auto::UpgradeableConnection::graceful_shutdown(self);
    }
}

/// A count of a worker's tasks of one kind still running (accept loops,
/// downstream connections), and the one waiter for it to reach zero: the
/// worker's main future, which the `LocalSet` polls at each of its wakes
/// (a count read, not a join handle per task polled each time).
#[derive(Default)]
struct Running {
    count: Cell<usize>,
    waker: RefCell<Option<std::task::Waker>>,
}

/// Held by a running task; its drop counts it ended.
struct Started(Rc<Running>);

impl Running {
    fn start(self: &Rc<Self>) -> Started {
        self.count.set(self.count.get() + 1);
        Started(self.clone())
    }

    async fn all_ended(&self) {
        std::future::poll_fn(|cx| {
            if self.count.get() == 0 {
                return std::task::Poll::Ready(());
            }
            let mut waker = self.waker.borrow_mut();
            if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waker = Some(cx.waker().clone());
            }
            std::task::Poll::Pending
        })
        .await;
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let running = &self.0;
        running.count.set(running.count.get() - 1);
        if running.count.get() == 0
            && let Some(waker) = running.waker.borrow_mut().take()
        {
            waker.wake();
        }
    }
}

/// The worker's drain signal as its connections see it: a flag read at
/// each poll, and the waker of each connection task, registered once per
/// connection (a watch receiver in a `select!` would be polled, and its
/// waker registered, at every wake of every connection).
#[derive(Default)]
struct Draining {
    started: Cell<bool>,
    /// By connection id.
    waiting: RefCell<std::collections::HashMap<u64, std::task::Waker>>,
}

impl Draining {
    /// Tells every open connection to finish.
    fn start(&self) {
        self.started.set(true);
        for (_, waker) in self.waiting.take() {
            waker.wake();
        }
    }
}

/// Takes a connection's waker out of [`Draining`] when it ends.
struct Registered<'a> {
    draining: &'a Draining,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.draining.waiting.borrow_mut().remove(&self.id);
    }
}

/// Runs `connection` (connection `id`) until it closes; once the worker
/// drains, lets its requests in flight finish first.
async fn drain<C: Graceful>(connection: C, draining: &Draining, id: u64) -> C::Output {
    tokio::pin!(connection);
    let _registered = Registered { draining, id };
    let mut registered = false;
    let mut told = false;
    std::future::poll_fn(|cx| {
        if !told {
            if draining.started.get() {
                connection.as_mut().graceful_shutdown();
                told = true;
            } else if !registered {
                // A connection is polled by its own task only: its waker
                // stays the same.
                draining.waiting.borrow_mut().insert(id, cx.waker().clone());
                registered = true;
            }
        }
        connection.as_mut().poll(cx)
    })
    .await
}

/// The stream's own type, back out of the box it was lent to VMs in.
pub(crate) fn proxy_stream(stream: &mut Box<dyn HttpStream>) -> Option<&mut ProxyStream> {
    let any: &mut dyn Any = stream.as_mut();
    any.downcast_mut::<ProxyStream>()
}

async fn handle(
    worker: Rc<Worker>,
    routes: Arc<ListenerRoutes>,
    connection: Rc<ConnectionInfo>,
    mut request: Request<Incoming>,
) -> Result<Response<ResponseBody>, StreamClosed> {
    let started = Instant::now();
    let upgrade = crate::forward::Upgrade::of(&mut request);
    let (mut parts, body) = request.into_parts();
    // Host travels as `:authority`; hop-by-hop headers never go further.
    let host = parts.headers.remove(header::HOST);
    strip_hop_by_hop(&mut parts.headers);
    if routes.request_id && !parts.headers.contains_key("x-request-id") {
        let id = observe::request_id(worker.random(), worker.random());
        parts.headers.insert("x-request-id", id);
    }
    if routes.traceparent {
        let random = [worker.random(), worker.random(), worker.random()];
        let parent = observe::traceparent(parts.headers.get("traceparent"), random);
        parts.headers.insert("traceparent", parent);
    }
    let body_limit = routes.limits.max_request_body_kb.map(|kb| kb * 1024);
    let route = {
        let authority = authority(&parts.uri, host.as_ref());
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let route = worker.routes.borrow().get(routes.index).and_then(|table| {
            table
                .route(authority, &parts.method, path, &parts.headers)
                .cloned()
        });
        match (route, body_limit) {
            (None, _) => Err((
                StatusCode::NOT_FOUND,
                format!("no route for {authority}{path}"),
            )),
            (Some(_), Some(limit)) if body.size_hint().lower() > limit => Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is longer than the listener's limit of {limit} bytes"),
            )),
            (Some(route), _) => Ok(route),
        }
    };
    let route = match route {
        Ok(route) => route,
        Err((status, reason)) => {
            let mut stream = Box::new(ProxyStream::from_request(parts, host, connection, started));
            stream.listener = Some(routes.clone());
            let filters = Rc::new(RefCell::new(StreamFilters::new(
                worker.clone(),
                Arc::from([]),
                stream,
            )));
            return Ok(error_response(status, &reason, Some(filters.into())));
        }
    };
    // Nothing reads the stream once the request is on its way (no filter,
    // no access log, no mirror's copy, no tunnel): it goes the plain way.
    if let Action::Forward(forward) = &route.action
        && route.chain.is_empty()
        && forward.mirror.is_none()
        && upgrade.is_none()
        && worker.access_log(routes.index).is_none()
    {
        let plain = crate::forward::Plain {
            worker,
            route: &route,
            forward,
            peer: connection.peer,
            owner: PlainStream {
                listener: routes,
                started,
                status: None,
            },
        };
        return plain.forward(parts, host, body, body_limit).await;
    }
    // Boxed from the start (plugins see it as a `Box<dyn HttpStream>`):
    // it is not moved again on its way there.
    let mut stream = Box::new(ProxyStream::from_request(parts, host, connection, started));
    stream.listener = Some(routes.clone());
    stream.route = Some(route.clone());
    let mut cluster = None;
    if let Action::Forward(forward) = &route.action {
        // Chosen before the filters run so that they see `cluster_name`;
        // `cluster_header` may change it after.
        let index = forward.pick(worker.random());
        stream.cluster = Some(worker.clusters[index].name.clone());
        cluster = Some(index);
    }
    let filtered = !route.chain.is_empty();
    let request_ended = body.is_end_stream();
    // Counted as it is read: a request without a body needs no counter.
    let received = (!request_ended).then(|| stream.count_received());
    let filters: SharedFilters = Rc::new(RefCell::new(StreamFilters::new(
        worker.clone(),
        route.chain.clone(),
        stream,
    )));
    let mut source = Source::new(body, body_limit, received);

    if filtered
        && let Err(stop) = run_headers_phase(
            &worker,
            &filters,
            Phase::RequestHeaders,
            request_ended,
            Some(&mut source),
        )
        .await
    {
        return stopped(stop, filters.into());
    }

    match (&route.action, cluster) {
        (Action::Forward(forward), Some(cluster)) => {
            let exchange = crate::forward::Exchange {
                worker,
                filters,
                route: route.clone(),
                filtered,
                upgrade,
            };
            exchange
                .forward(forward, cluster, source, request_ended)
                .await
        }
        (
            Action::Direct {
                status,
                body,
                content_type,
            },
            _,
        ) => {
            let mut headers = HeaderMap::new();
            if !body.is_empty() {
                headers.insert(header::CONTENT_TYPE, content_type.clone());
            }
            respond(&worker, filters, &route, *status, headers, body.clone()).await
        }
        (Action::Redirect(redirect), _) => {
            let location = {
                let mut f = filters.borrow_mut();
                f.state()
                    .map(|s| route.redirect_location(redirect, s.scheme, &s.authority, &s.path))
            };
            let mut headers = HeaderMap::new();
            if let Some(location) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
                headers.insert(header::LOCATION, location);
            }
            let status =
                StatusCode::from_u16(redirect.status).unwrap_or(StatusCode::MOVED_PERMANENTLY);
            respond(&worker, filters, &route, status, headers, Bytes::new()).await
        }
        (Action::Forward(_), None) => Ok(error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal: no cluster chosen",
            Some(filters.into()),
        )),
    }
}

/// Answers with a response the proxy makes (direct responses, redirects),
/// through the route's response header changes and the response filters.
async fn respond(
    worker: &Worker,
    filters: SharedFilters,
    route: &Route,
    mut status: StatusCode,
    mut headers: HeaderMap,
    body: Bytes,
) -> Result<Response<ResponseBody>, StreamClosed> {
    route.response_headers.apply(&mut headers);
    if !route.chain.is_empty() {
        if let Some(state) = filters.borrow_mut().state() {
            state.response = Some(ResponseHead { status, headers });
        }
        if let Err(stop) = run_headers_phase(
            worker,
            &filters,
            Phase::ResponseHeaders,
            body.is_empty(),
            None,
        )
        .await
        {
            return stopped(stop, filters.into());
        }
        let head = filters
            .borrow_mut()
            .state()
            .and_then(|s| s.response.as_ref().map(|r| (r.status, r.headers.clone())));
        let Some((s, h)) = head else {
            return Ok(error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal: stream state lost",
                Some(filters.into()),
            ));
        };
        (status, headers) = (s, h);
    }
    let mut response = Response::new(ResponseBody::full(body, Some(filters.into())));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

/// A filter closed the stream: hyper closes the client's connection
/// without a response.
#[derive(Debug, thiserror::Error)]
#[error("a filter closed the stream")]
pub(crate) struct StreamClosed;

/// The response for a stream a filter stopped.
pub(crate) fn stopped(stop: Stop, owner: Owner) -> Result<Response<ResponseBody>, StreamClosed> {
    let owner = Some(owner);
    Ok(match stop {
        Stop::Closed { .. } => {
            tracing::info!("{}", stop.describe());
            return Err(StreamClosed);
        }
        Stop::Local(local) => local_response(local, owner),
        Stop::Failed { .. } => {
            error_response(StatusCode::SERVICE_UNAVAILABLE, &stop.describe(), owner)
        }
        Stop::Paused { ref plugin, .. } => {
            tracing::error!(
                plugin,
                "the filter paused the stream where it cannot be resumed (in a trailers callback)"
            );
            error_response(StatusCode::INTERNAL_SERVER_ERROR, &stop.describe(), owner)
        }
        Stop::TimedOut { .. } => {
            tracing::warn!("{}", stop.describe());
            error_response(StatusCode::GATEWAY_TIMEOUT, &stop.describe(), owner)
        }
        Stop::BodyIdle { .. } => {
            tracing::warn!("{}", stop.describe());
            error_response(StatusCode::REQUEST_TIMEOUT, &stop.describe(), owner)
        }
        Stop::TooLarge { .. } | Stop::BodyTooLarge { .. } => {
            tracing::warn!("{}", stop.describe());
            error_response(StatusCode::PAYLOAD_TOO_LARGE, &stop.describe(), owner)
        }
    })
}

fn local_response(local: LocalResponse, owner: Option<Owner>) -> Response<ResponseBody> {
    let status = u16::try_from(local.status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = Response::new(ResponseBody::full(local.body, owner));
    *response.status_mut() = status;
    for (key, value) in local.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&key),
            HeaderValue::from_bytes(&value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// A response the proxy makes itself, saying why in `x-weft-error`.
pub(crate) fn error_response(
    status: StatusCode,
    reason: &str,
    owner: Option<Owner>,
) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(format!("{reason}\n"), owner));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    if let Ok(value) = HeaderValue::from_str(reason) {
        headers.insert("x-weft-error", value);
    }
    response
}
