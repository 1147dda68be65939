//! Clusters: endpoints, load balancing, circuit breakers, outlier
//! detection, and per-worker connection pools.
//!
//! What all workers must agree on — endpoint health, ejections, breaker
//! counts — is in [`ClusterShared`], atomics only. What is cheaper kept
//! apart — idle connections, request counts for least-request — each
//! worker owns in its [`ClusterPool`] (no locks).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use weft_config::{LbPolicy, OutlierDetection};

use crate::body::RequestBody;
use crate::dns::Resolver;
use crate::tls::ClientTls;

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
    #[error("TLS with {addr} failed: {problem}")]
    Tls { addr: SocketAddr, problem: String },
    #[error("cluster `{cluster}` is over its {breaker} circuit breaker")]
    Overflow {
        cluster: Arc<str>,
        breaker: &'static str,
    },
    /// A caller's mistake, not the upstream's: there was no request to send.
    #[error("internal: no request to send")]
    NoRequest,
}

impl UpstreamError {
    /// No connection could be made (the request was not sent).
    pub(crate) fn is_connect_failure(&self) -> bool {
        matches!(
            self,
            UpstreamError::ConnectTimeout { .. }
                | UpstreamError::Connect { .. }
                | UpstreamError::Handshake { .. }
                | UpstreamError::Tls { .. }
        )
    }
}

/// An endpoint as every worker sees it.
pub(crate) struct EndpointShared {
    pub(crate) addr: SocketAddr,
    /// The host as the config wrote it (the TLS server name by default).
    pub(crate) host: String,
    /// Set by active health checks.
    pub(crate) healthy: AtomicBool,
    /// Failures in a row (outlier detection).
    failures: AtomicU32,
    /// Ejected until this many milliseconds after the cluster was made.
    ejected_until: AtomicU64,
    ejections: AtomicU32,
}

/// Counts for `/metrics` and `/clusters`.
#[derive(Default)]
pub(crate) struct ClusterStats {
    pub(crate) requests: AtomicU64,
    pub(crate) responses_by_class: [AtomicU64; 5],
    pub(crate) retries: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) ejections: AtomicU64,
    pub(crate) overflows: AtomicU64,
    /// DNS refreshes that changed the endpoints.
    pub(crate) dns_changes: AtomicU64,
    /// DNS refreshes that failed (the endpoints were kept).
    pub(crate) dns_failures: AtomicU64,
    /// Each try, to its response headers.
    pub(crate) upstream_durations: crate::observe::Durations,
}

/// A cluster's endpoints at one moment: DNS refreshes replace the set
/// (an endpoint that stays keeps its state).
pub(crate) struct Members {
    pub(crate) endpoints: Vec<Arc<EndpointShared>>,
    /// Consistent-hash ring: (point, endpoint), sorted by point.
    ring: Vec<(u64, usize)>,
}

impl Members {
    fn new(endpoints: Vec<Arc<EndpointShared>>, policy: LbPolicy) -> Members {
        let mut ring = Vec::new();
        if policy == LbPolicy::RingHash {
            for (i, endpoint) in endpoints.iter().enumerate() {
                for point in 0..RING_POINTS {
                    ring.push((hash_of(&(endpoint.addr, point)), i));
                }
            }
            ring.sort_unstable();
        }
        Members { endpoints, ring }
    }
}

/// A cluster's state shared by all workers.
pub(crate) struct ClusterShared {
    pub(crate) name: Arc<str>,
    /// Read by a worker only when `generation` moved.
    members: RwLock<Arc<Members>>,
    generation: AtomicU64,
    pub(crate) config: weft_config::Cluster,
    tls: Option<ClientTls>,
    made: Instant,
    connections: AtomicUsize,
    pending: AtomicUsize,
    requests: AtomicUsize,
    retries: AtomicUsize,
    pub(crate) stats: ClusterStats,
}

impl EndpointShared {
    fn new(addr: SocketAddr, host: String) -> EndpointShared {
        EndpointShared {
            addr,
            host,
            healthy: AtomicBool::new(true),
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
        }
    }
}

/// Resolves a cluster's endpoints: each address a host name resolves to
/// becomes an endpoint (once). Fails with the endpoint's index and why.
pub(crate) fn resolve(
    config: &weft_config::Cluster,
    resolver: &Resolver,
) -> Result<Vec<(SocketAddr, String)>, (usize, String)> {
    let mut addrs: Vec<(SocketAddr, String)> = Vec::new();
    for (j, endpoint) in config.endpoints.iter().enumerate() {
        let (host, port) = weft_config::split_host_port(endpoint).map_err(|p| (j, p.into()))?;
        for addr in resolver.resolve(host, port).map_err(|p| (j, p))? {
            if !addrs.iter().any(|(a, _)| *a == addr) {
                addrs.push((addr, host.to_string()));
            }
        }
    }
    Ok(addrs)
}

/// Virtual nodes per endpoint on the hash ring.
const RING_POINTS: usize = 128;

/// Why a cluster could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// An endpoint's host name did not resolve.
    #[error("clusters[{index}].endpoints[{endpoint}]: cannot resolve `{name}`: {problem}")]
    Resolve {
        /// The cluster.
        index: usize,
        /// The endpoint.
        endpoint: usize,
        /// The endpoint as written.
        name: String,
        /// What the resolver said.
        problem: String,
    },
    /// Its TLS settings cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

impl ClusterShared {
    /// Resolves `config`'s endpoints (cluster number `index`): each address
    /// a host name resolves to becomes an endpoint.
    pub(crate) fn new(
        index: usize,
        config: &weft_config::Cluster,
        resolver: &Resolver,
    ) -> Result<ClusterShared, ClusterError> {
        let addrs =
            resolve(config, resolver).map_err(|(endpoint, problem)| ClusterError::Resolve {
                index,
                endpoint,
                name: config.endpoints[endpoint].clone(),
                problem,
            })?;
        let endpoints = addrs
            .into_iter()
            .map(|(addr, host)| Arc::new(EndpointShared::new(addr, host)))
            .collect();
        Ok(ClusterShared {
            name: Arc::from(config.name.as_str()),
            members: RwLock::new(Arc::new(Members::new(endpoints, config.lb_policy))),
            generation: AtomicU64::new(0),
            config: config.clone(),
            tls: config
                .tls
                .as_ref()
                .map(|tls| ClientTls::new(index, tls, config.http2))
                .transpose()?,
            made: Instant::now(),
            connections: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            retries: AtomicUsize::new(0),
            stats: ClusterStats::default(),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.made.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The endpoints now.
    pub(crate) fn members(&self) -> Arc<Members> {
        self.members
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Makes `addrs` the endpoints, keeping the state of those that stay;
    /// false if they are the endpoints already.
    pub(crate) fn set_members(&self, addrs: Vec<(SocketAddr, String)>) -> bool {
        let mut members = self.members.write().unwrap_or_else(PoisonError::into_inner);
        let same = addrs.len() == members.endpoints.len()
            && addrs
                .iter()
                .all(|(addr, _)| members.endpoints.iter().any(|e| e.addr == *addr));
        if same || addrs.is_empty() {
            return false;
        }
        let endpoints = addrs
            .into_iter()
            .map(|(addr, host)| {
                members
                    .endpoints
                    .iter()
                    .find(|e| e.addr == addr)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(EndpointShared::new(addr, host)))
            })
            .collect();
        *members = Arc::new(Members::new(endpoints, self.config.lb_policy));
        self.generation.fetch_add(1, Ordering::Release);
        true
    }

    /// Whether `endpoint` may take requests: healthy and not ejected.
    pub(crate) fn available(&self, endpoint: &EndpointShared) -> bool {
        endpoint.healthy.load(Ordering::Relaxed) && !self.ejected(endpoint)
    }

    /// Whether `endpoint` is ejected by outlier detection now. An endpoint
    /// never ejected needs no clock read (one costs ~36 ns here, and this
    /// runs for every endpoint on every pick).
    pub(crate) fn ejected(&self, endpoint: &EndpointShared) -> bool {
        let until = endpoint.ejected_until.load(Ordering::Relaxed);
        until != 0 && until > self.now_ms()
    }

    /// Records how a request to `endpoint` went, for outlier detection.
    pub(crate) fn report(&self, endpoint: &EndpointShared, success: bool) {
        let Some(outlier) = &self.config.outlier_detection else {
            return;
        };
        if success {
            endpoint.failures.store(0, Ordering::Relaxed);
            return;
        }
        let failures = endpoint.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= outlier.consecutive_failures {
            self.eject(endpoint, outlier);
        }
    }

    fn eject(&self, endpoint: &EndpointShared, outlier: &OutlierDetection) {
        let now = self.now_ms();
        let members = self.members();
        let ejected = members
            .endpoints
            .iter()
            .filter(|e| e.ejected_until.load(Ordering::Relaxed) > now)
            .count();
        let allowed = members.endpoints.len() * outlier.max_ejection_percent as usize / 100;
        if ejected >= allowed.max(1) || endpoint.ejected_until.load(Ordering::Relaxed) > now {
            return;
        }
        let times = (endpoint.ejections.fetch_add(1, Ordering::Relaxed) + 1).min(10);
        let duration = outlier.base_ejection_ms.saturating_mul(times.into());
        endpoint
            .ejected_until
            .store(now.saturating_add(duration), Ordering::Relaxed);
        endpoint.failures.store(0, Ordering::Relaxed);
        self.stats.ejections.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            cluster = %self.name,
            endpoint = %endpoint.addr,
            "endpoint ejected for {duration} ms after {} failures in a row",
            outlier.consecutive_failures
        );
    }

    /// Takes a request slot, unless `max_requests` are in flight.
    pub(crate) fn admit(self: &Arc<Self>) -> Result<Admitted, UpstreamError> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let slot = Slot::take(
            self,
            Counter::Requests,
            self.config.circuit_breakers.max_requests,
        )
        .ok_or_else(|| self.overflow("max_requests"))?;
        Ok(Admitted(slot))
    }

    /// Takes a retry slot, unless `max_retries` (or the retry budget's
    /// share of the requests in flight) are in flight.
    pub(crate) fn retry_slot(self: &Arc<Self>) -> Option<Slot> {
        let breakers = &self.config.circuit_breakers;
        let max = match &breakers.retry_budget {
            Some(budget) => Some(budget.limit(self.requests.load(Ordering::Relaxed))),
            None => breakers.max_retries,
        };
        let slot = Slot::take(self, Counter::Retries, max);
        match slot {
            Some(_) => self.stats.retries.fetch_add(1, Ordering::Relaxed),
            None => self.stats.overflows.fetch_add(1, Ordering::Relaxed),
        };
        slot
    }

    fn overflow(&self, breaker: &'static str) -> UpstreamError {
        self.stats.overflows.fetch_add(1, Ordering::Relaxed);
        UpstreamError::Overflow {
            cluster: self.name.clone(),
            breaker,
        }
    }

    /// Counts a response for the metrics.
    pub(crate) fn count_response(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.stats.responses_by_class[class].fetch_add(1, Ordering::Relaxed);
    }
}

/// The circuit-breaker counts.
#[derive(Clone, Copy)]
enum Counter {
    Requests,
    Retries,
    Pending,
    Connections,
}

impl ClusterShared {
    fn counter(&self, which: Counter) -> &AtomicUsize {
        match which {
            Counter::Requests => &self.requests,
            Counter::Retries => &self.retries,
            Counter::Pending => &self.pending,
            Counter::Connections => &self.connections,
        }
    }
}

/// One unit of a circuit-breaker count, given back when dropped.
pub(crate) struct Slot {
    cluster: Arc<ClusterShared>,
    which: Counter,
}

impl Slot {
    fn take(cluster: &Arc<ClusterShared>, which: Counter, max: Option<usize>) -> Option<Slot> {
        let counter = cluster.counter(which);
        let now = counter.fetch_add(1, Ordering::AcqRel) + 1;
        if max.is_some_and(|max| now > max) {
            counter.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot {
            cluster: cluster.clone(),
            which,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.cluster
            .counter(self.which)
            .fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request counted against `max_requests` until it is dropped.
pub(crate) struct Admitted(#[expect(dead_code, reason = "held for its Drop")] Slot);

/// An upstream connection: HTTP/1.1 (one request at a time, pooled when
/// idle) or HTTP/2 (one per endpoint per worker, shared by its requests).
pub(crate) enum Conn {
    H1(http1::SendRequest<RequestBody>),
    H2(http2::SendRequest<RequestBody>),
}

impl Conn {
    async fn ready(&mut self) -> Result<(), hyper::Error> {
        match self {
            Conn::H1(sender) => sender.ready().await,
            Conn::H2(sender) => sender.ready().await,
        }
    }
}

/// HTTP/2 carries scheme and authority as pseudo-headers: the URI must be
/// absolute.
fn absolute(mut request: Request<RequestBody>) -> Request<RequestBody> {
    let authority = request
        .headers_mut()
        .remove(http::header::HOST)
        .and_then(|h| h.to_str().ok().map(str::to_string));
    if let Some(authority) = authority {
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
        if let Ok(uri) = format!("http://{authority}{path}").parse() {
            *request.uri_mut() = uri;
        }
    }
    *request.version_mut() = http::Version::HTTP_2;
    request
}

/// One upstream address and its idle connections on this worker.
pub(crate) struct Endpoint {
    pub(crate) shared: Arc<EndpointShared>,
    pub(crate) addr: SocketAddr,
    idle: RefCell<Vec<Conn>>,
    max_idle: usize,
    /// Requests in flight from this worker (least request).
    active: Cell<usize>,
}

impl Endpoint {
    /// Gives a connection whose response has been read back to the pool.
    pub(crate) fn release(&self, conn: Conn) {
        // The HTTP/2 connection never left the pool.
        if let Conn::H1(sender) = conn {
            let mut idle = self.idle.borrow_mut();
            if idle.len() < self.max_idle && !sender.is_closed() {
                idle.push(Conn::H1(sender));
            }
        }
    }

    /// A pooled connection: an idle HTTP/1.1 one, or a handle on the
    /// HTTP/2 one.
    fn pooled(&self) -> Option<Conn> {
        let mut idle = self.idle.borrow_mut();
        match idle.last() {
            Some(Conn::H2(sender)) if !sender.is_closed() => Some(Conn::H2(sender.clone())),
            Some(Conn::H2(_)) => {
                idle.pop();
                None
            }
            _ => idle.pop(),
        }
    }
}

/// A request in flight on an endpoint, for least-request balancing.
pub(crate) struct Load(Rc<Endpoint>);

impl Load {
    fn new(endpoint: Rc<Endpoint>) -> Load {
        endpoint.active.set(endpoint.active.get() + 1);
        Load(endpoint)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get().saturating_sub(1));
    }
}

/// A cluster as one worker sees it.
pub(crate) struct ClusterPool {
    pub(crate) name: Rc<str>,
    pub(crate) shared: Arc<ClusterShared>,
    /// This worker's view of `shared`'s members (same order), as of
    /// `generation`.
    endpoints: RefCell<Rc<WorkerMembers>>,
    generation: Cell<u64>,
    next: Cell<usize>,
    connect_timeout: Duration,
}

/// A relayed TCP connection to an endpoint; `guard` holds its place in
/// the cluster's connection count and the endpoint's load until dropped.
pub(crate) struct TcpUpstream {
    pub(crate) tcp: tokio::net::TcpStream,
    pub(crate) addr: SocketAddr,
    pub(crate) guard: (Slot, Load),
}

/// A response whose connection goes back to `endpoint` when its body ends.
pub(crate) struct Upstream {
    pub(crate) response: Response<Incoming>,
    pub(crate) endpoint: Rc<Endpoint>,
    pub(crate) sender: Conn,
    pub(crate) load: Load,
}

/// What a request offers the balancer: a consistent-hash key, and
/// randomness.
#[derive(Clone, Copy)]
pub(crate) struct Pick {
    pub(crate) hash: Option<u64>,
    pub(crate) random: u64,
}

/// A worker's endpoints for one generation of a cluster's members.
struct WorkerMembers {
    members: Arc<Members>,
    endpoints: Vec<Rc<Endpoint>>,
}

impl WorkerMembers {
    /// Endpoints for `members`, taking over those of `old` that stay (with
    /// their idle connections).
    fn new(members: Arc<Members>, old: &[Rc<Endpoint>], max_idle: usize) -> WorkerMembers {
        let endpoints = members
            .endpoints
            .iter()
            .map(|e| {
                old.iter()
                    .find(|o| Arc::ptr_eq(&o.shared, e))
                    .cloned()
                    .unwrap_or_else(|| {
                        Rc::new(Endpoint {
                            shared: e.clone(),
                            addr: e.addr,
                            idle: RefCell::new(Vec::new()),
                            max_idle,
                            active: Cell::new(0),
                        })
                    })
            })
            .collect();
        WorkerMembers { members, endpoints }
    }
}

impl ClusterPool {
    pub(crate) fn new(shared: Arc<ClusterShared>) -> ClusterPool {
        let generation = shared.generation.load(Ordering::Acquire);
        let members =
            WorkerMembers::new(shared.members(), &[], shared.config.max_idle_per_endpoint);
        ClusterPool {
            name: Rc::from(&*shared.name),
            endpoints: RefCell::new(Rc::new(members)),
            generation: Cell::new(generation),
            next: Cell::new(0),
            connect_timeout: Duration::from_millis(shared.config.connect_timeout_ms),
            shared,
        }
    }

    /// The endpoints, caught up with the cluster's members (one atomic
    /// load when nothing changed).
    fn current(&self) -> Rc<WorkerMembers> {
        let generation = self.shared.generation.load(Ordering::Acquire);
        if generation != self.generation.get() {
            let old = self.endpoints.borrow().clone();
            let members = WorkerMembers::new(
                self.shared.members(),
                &old.endpoints,
                self.shared.config.max_idle_per_endpoint,
            );
            *self.endpoints.borrow_mut() = Rc::new(members);
            self.generation.set(generation);
        }
        self.endpoints.borrow().clone()
    }

    /// Picks an endpoint by the cluster's policy among those available; if
    /// none is, among all (better to try than to refuse everything).
    fn pick(&self, pick: Pick) -> Rc<Endpoint> {
        let current = self.current();
        let endpoints = &current.endpoints;
        let n = endpoints.len();
        let shared = &self.shared;
        let any_available = endpoints.iter().any(|e| shared.available(&e.shared));
        let ok = |i: usize| !any_available || shared.available(&endpoints[i].shared);
        let first_ok_from = |start: usize| {
            (0..n)
                .map(|k| (start + k) % n)
                .find(|&i| ok(i))
                .unwrap_or(start % n)
        };
        let chosen = match shared.config.lb_policy {
            LbPolicy::RoundRobin => {
                let start = self.next.get();
                let chosen = first_ok_from(start);
                self.next.set(chosen.wrapping_add(1));
                chosen
            }
            LbPolicy::Random => first_ok_from((pick.random % n as u64) as usize),
            LbPolicy::LeastRequest => {
                let a = first_ok_from((pick.random % n as u64) as usize);
                let b = first_ok_from(((pick.random >> 32) % n as u64) as usize);
                if endpoints[b].active.get() < endpoints[a].active.get() {
                    b
                } else {
                    a
                }
            }
            LbPolicy::RingHash => match pick.hash {
                Some(hash) => {
                    let ring = &current.members.ring;
                    let start = ring.partition_point(|(point, _)| *point < hash);
                    (0..ring.len())
                        .map(|k| ring[(start + k) % ring.len()].1)
                        .find(|&i| ok(i))
                        .unwrap_or(0)
                }
                None => first_ok_from((pick.random % n as u64) as usize),
            },
        };
        endpoints[chosen].clone()
    }

    /// Sends the request in `request` to an endpoint the policy picks, on a
    /// pooled connection or a new one. The request stays there until hyper
    /// takes it (moved once, not through every future on the way); one that
    /// was never sent is left there, for a retry.
    pub(crate) async fn send(
        &self,
        request: &mut Option<Request<RequestBody>>,
        pick: Pick,
    ) -> Result<Upstream, UpstreamError> {
        let endpoint = self.pick(pick);
        let addr = endpoint.addr;
        let load = Load::new(endpoint.clone());
        // Idle connections may have been closed by the upstream meanwhile: a
        // request that was not sent on one is retried on the next, and then on
        // a fresh connection.
        loop {
            let pooled = endpoint.pooled();
            let (mut sender, fresh) = match pooled {
                Some(sender) => (sender, false),
                // Boxed: connecting (TCP, TLS, the HTTP handshake) makes a
                // large future, and every request's future would carry it.
                None => match Box::pin(self.connect(&endpoint)).await {
                    Ok(sender) => (sender, true),
                    Err(error) => {
                        if error.is_connect_failure() {
                            self.shared.report(&endpoint.shared, false);
                        }
                        return Err(error);
                    }
                },
            };
            if let Err(source) = sender.ready().await {
                if fresh {
                    self.shared.report(&endpoint.shared, false);
                    return Err(UpstreamError::Handshake { addr, source });
                }
                continue;
            }
            let Some(next) = request.take() else {
                return Err(UpstreamError::NoRequest);
            };
            let sent = match &mut sender {
                Conn::H1(h1) => h1.try_send_request(next).await,
                Conn::H2(h2) => h2.try_send_request(absolute(next)).await,
            };
            match sent {
                Ok(response) => {
                    return Ok(Upstream {
                        response,
                        endpoint,
                        sender,
                        load,
                    });
                }
                Err(mut err) => {
                    *request = err.take_message();
                    if request.is_some() && !fresh {
                        continue;
                    }
                    self.shared.report(&endpoint.shared, false);
                    return Err(UpstreamError::Request {
                        addr,
                        source: err.into_error(),
                    });
                }
            }
        }
    }

    /// A TCP connection for a `protocol: tcp` listener, to an endpoint
    /// the cluster's policy picks: counted against `max_connections`, a
    /// failure reported to outlier detection.
    pub(crate) async fn connect_tcp(&self, pick: Pick) -> Result<TcpUpstream, UpstreamError> {
        let endpoint = self.pick(pick);
        let addr = endpoint.addr;
        let shared = &self.shared;
        let breakers = shared.config.circuit_breakers;
        let slot = Slot::take(shared, Counter::Connections, breakers.max_connections)
            .ok_or_else(|| shared.overflow("max_connections"))?;
        let load = Load::new(endpoint.clone());
        let timeout = self.connect_timeout;
        let connected = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await;
        let tcp = match connected {
            Ok(Ok(tcp)) => tcp,
            failed => {
                shared.report(&endpoint.shared, false);
                return Err(match failed {
                    Ok(Err(source)) => UpstreamError::Connect { addr, source },
                    _ => UpstreamError::ConnectTimeout { addr, timeout },
                });
            }
        };
        let _ = tcp.set_nodelay(true);
        Ok(TcpUpstream {
            tcp,
            addr,
            guard: (slot, load),
        })
    }

    async fn connect(&self, endpoint: &Endpoint) -> Result<Conn, UpstreamError> {
        let addr = endpoint.addr;
        let shared = &self.shared;
        let breakers = shared.config.circuit_breakers;
        let _pending = Slot::take(shared, Counter::Pending, breakers.max_pending_requests)
            .ok_or_else(|| shared.overflow("max_pending_requests"))?;
        let slot = Slot::take(shared, Counter::Connections, breakers.max_connections)
            .ok_or_else(|| shared.overflow("max_connections"))?;
        let connecting = async {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|source| UpstreamError::Connect { addr, source })?;
            let _ = tcp.set_nodelay(true);
            let Some(tls) = &shared.tls else {
                return self.handshake(addr, TokioIo::new(tcp), slot).await;
            };
            let name = match &tls.server_name {
                Some(name) => name.clone(),
                None => ServerName::try_from(endpoint.shared.host.clone()).map_err(|e| {
                    UpstreamError::Tls {
                        addr,
                        problem: format!("`{}` is no TLS server name: {e}", endpoint.shared.host),
                    }
                })?,
            };
            let stream =
                tls.connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| UpstreamError::Tls {
                        addr,
                        problem: e.to_string(),
                    })?;
            self.handshake(addr, TokioIo::new(stream), slot).await
        };
        tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| UpstreamError::ConnectTimeout {
                addr,
                timeout: self.connect_timeout,
            })?
    }

    /// HTTP/1.1 or HTTP/2 over a connected stream; the connection runs on
    /// its own task, holding its `max_connections` slot.
    async fn handshake<T>(&self, addr: SocketAddr, io: T, slot: Slot) -> Result<Conn, UpstreamError>
    where
        T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let handshake = |source| UpstreamError::Handshake { addr, source };
        if self.shared.config.http2 {
            let (sender, connection) = http2::Builder::new(LocalExec)
                .timer(TokioTimer::new())
                .handshake(io)
                .await
                .map_err(handshake)?;
            tokio::task::spawn_local(async move {
                let _slot = slot;
                if let Err(err) = connection.await {
                    tracing::debug!(%addr, "upstream connection ended: {err}");
                }
            });
            Ok(Conn::H2(sender))
        } else {
            let (sender, connection) = http1::Builder::new()
                .handshake(io)
                .await
                .map_err(handshake)?;
            tokio::task::spawn_local(async move {
                let _slot = slot;
                // With upgrades, a 101 hands the connection to the tunnel.
                if let Err(err) = connection.with_upgrades().await {
                    tracing::debug!(%addr, "upstream connection ended: {err}");
                }
            });
            Ok(Conn::H1(sender))
        }
    }
}

/// Runs hyper's background tasks (HTTP/2 streams) on the worker's
/// `LocalSet`, so that nothing needs to be `Send`.
#[derive(Clone, Copy)]
pub(crate) struct LocalExec;

impl<F: Future + 'static> hyper::rt::Executor<F> for LocalExec {
    fn execute(&self, future: F) {
        tokio::task::spawn_local(future);
    }
}

/// A stable 64-bit hash (the same in every worker and run).
pub(crate) fn hash_of(value: &impl Hash) -> u64 {
    #[allow(deprecated)]
    let mut hasher = std::hash::SipHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}
