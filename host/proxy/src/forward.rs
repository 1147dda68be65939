//! Forwarding a request to its route's cluster: the filter's cluster
//! choice, rewrites, circuit breakers, tries with retries and timeouts,
//! mirroring, then the response through the response filters.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use hyper::body::{Body, Incoming};
use tokio::sync::oneshot;

use crate::body::{Owner, PlainStream, RequestBody, ResponseBody, Source};
use crate::chain::{Phase, SharedFilters, Stop, run_headers_phase};
use crate::cluster::{ClusterPool, Pick, Upstream, UpstreamError, hash_of};
use crate::router::{Forward, Retry, Route};
use crate::stream::{RequestPath, ResponseHead, authority, strip_hop_by_hop, upstream_host};
use crate::worker::{StreamClosed, Worker, error_response, stopped};

/// One request on its way to a cluster.
pub(crate) struct Exchange {
    pub(crate) worker: Rc<Worker>,
    pub(crate) filters: SharedFilters,
    pub(crate) route: Arc<Route>,
    /// Whether plugins run on this stream.
    pub(crate) filtered: bool,
    /// The client asked to switch protocols (WebSocket and the like).
    pub(crate) upgrade: Option<Upgrade>,
}

/// An HTTP/1.1 `Upgrade` request: the protocol asked for, and the client's
/// connection once the upgrade happens.
pub(crate) struct Upgrade {
    protocol: HeaderValue,
    client: hyper::upgrade::OnUpgrade,
}

impl Upgrade {
    /// The upgrade `request` asks for (`Connection: upgrade` with an
    /// `Upgrade` header), if any.
    pub(crate) fn of<B>(request: &mut Request<B>) -> Option<Upgrade> {
        let headers = request.headers();
        // `Upgrade` first: most requests have none, and one lookup says so.
        let protocol = headers.get(header::UPGRADE)?.clone();
        let asked = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
        if !asked || request.version() != http::Version::HTTP_11 {
            return None;
        }
        Some(Upgrade {
            protocol,
            client: hyper::upgrade::on(request),
        })
    }
}

/// Joins the client's and the upstream's upgraded connections and copies
/// bytes both ways until either side closes.
fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    tokio::task::spawn_local(async move {
        let (client, upstream) = match (client.await, upstream.await) {
            (Ok(client), Ok(upstream)) => (client, upstream),
            (Err(err), _) | (_, Err(err)) => {
                tracing::debug!("upgrade failed: {err}");
                return;
            }
        };
        let mut client = hyper_util::rt::TokioIo::new(client);
        let mut upstream = hyper_util::rt::TokioIo::new(upstream);
        if let Err(err) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!("upgraded connection ended: {err}");
        }
    });
}

/// Bytes of a request body a mirror may fall behind the upstream before
/// its copy is abandoned.
const MIRROR_LAG_LIMIT: usize = 4 << 20;

/// Upstream deadlines at least this far away run on the worker's coarse
/// timer (`crate::coarse::TICK` resolution): a few percent at most.
const COARSE_DEADLINE: Duration = Duration::from_secs(5);

/// Why no response came back.
enum TryFailure {
    Upstream(UpstreamError),
    Timeout,
    BadRequest(&'static str),
}

type Answer = Result<Response<ResponseBody>, StreamClosed>;

impl Exchange {
    /// Forwards the request (its request filters have run) to `cluster`,
    /// or to the cluster a filter named in the route's `cluster_header`.
    pub(crate) async fn forward(
        self,
        forward: &Forward,
        mut cluster: usize,
        body: Source,
        request_ended: bool,
    ) -> Answer {
        let worker = self.worker.clone();
        let (hash, logged) = {
            let mut f = self.filters.borrow_mut();
            let Some(state) = f.state() else {
                drop(f);
                return self.fail(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal: stream state lost",
                );
            };
            match named_cluster(&worker, forward, &state.request_headers) {
                Ok(Some(index)) => cluster = index,
                Ok(None) => {}
                Err(reason) => {
                    drop(f);
                    return self.fail(StatusCode::SERVICE_UNAVAILABLE, &reason);
                }
            }
            state.cluster = Some(worker.clusters[cluster].name.clone());
            if let Some(prefix) = &forward.prefix_rewrite {
                state.path = RequestPath::Set(self.route.rewrite_path(&state.path, prefix));
            }
            if let Some(host) = &forward.host_rewrite {
                state.authority = host.clone();
            }
            self.route.request_headers.apply(&mut state.request_headers);
            let logged = state
                .listener
                .as_ref()
                .is_some_and(|l| worker.access_log(l.index).is_some());
            let hash = hash_key(
                &worker.clusters[cluster],
                &state.request_headers,
                state.peer(),
            );
            (hash, logged)
        };
        let pool = &worker.clusters[cluster];
        let admitted = match pool.shared.admit() {
            Ok(admitted) => admitted,
            Err(error) => return Ok(self.failure(TryFailure::Upstream(error))),
        };

        // Body callbacks run on the body as it streams upstream; a plugin
        // that stops it, or a body over the listener's limit, reports why
        // through `stop`.
        let (body_callbacks, trailers_callbacks) = {
            let f = self.filters.borrow();
            let streaming = self.filtered && !request_ended;
            (
                // A body read while a plugin paused the headers is held
                // in the stream: it goes out through the body callbacks.
                streaming && (f.has_body_callbacks(true) || f.has_held_request()),
                streaming && f.has_trailers_callbacks(true),
            )
        };
        let (stop_sender, stop) = stop_channel(request_ended);
        let mut body = if request_ended {
            RequestBody::empty()
        } else {
            let mut body = body;
            body.idle_after(forward.idle_timeout);
            RequestBody::new(
                body,
                (body_callbacks || trailers_callbacks).then(|| self.filters.clone()),
                stop_sender,
            )
        };
        // Only a request without a body can be sent again (retries); an
        // upgrade is never sent twice.
        let replayable = request_ended && self.upgrade.is_none();
        let mirror = forward
            .mirror
            .filter(|(_, percent)| (worker.random() % 10_000) as f64 / 100.0 < *percent)
            .filter(|_| self.upgrade.is_none());
        // A mirror of a request with a body gets a copy as it streams.
        let mirror_body = match mirror {
            Some(_) if !request_ended => {
                let (sender, receiver) = crate::body::tee(MIRROR_LAG_LIMIT);
                body.tee_to(sender);
                Some(RequestBody::copy(receiver))
            }
            _ => None,
        };
        // The headers stay with the stream (the upstream gets a copy) when
        // something reads them later: on_log, the access log, a retry, a
        // mirror.
        let keep =
            self.filtered || logged || mirror.is_some() || (replayable && forward.retry.is_some());
        // The request stays here until hyper takes it (`ClusterPool::send`).
        let mut request = {
            let mut f = self.filters.borrow_mut();
            match f.state().map(|s| s.upstream_request(body, keep)) {
                Some(Ok(mut request)) => {
                    if body_callbacks {
                        // Plugins may change the body's length: it is re-framed.
                        request.headers_mut().remove(header::CONTENT_LENGTH);
                    }
                    if let Some(upgrade) = &self.upgrade {
                        let headers = request.headers_mut();
                        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                        headers.insert(header::UPGRADE, upgrade.protocol.clone());
                    }
                    Some(request)
                }
                Some(Err(reason)) => {
                    drop(f);
                    return self.fail(StatusCode::BAD_REQUEST, reason);
                }
                None => {
                    drop(f);
                    return self.fail(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal: stream state lost",
                    );
                }
            }
        };
        if let Some((cluster, _)) = mirror {
            self.mirror(cluster, forward.timeout, mirror_body);
        }

        // One future, its deadlines inside: wrapping it in a timeout would
        // keep two copies of its (large) state.
        let outcome = {
            let rebuild = || self.rebuild();
            let tries = pin!(tries(
                &worker,
                forward,
                pool,
                &mut request,
                replayable,
                hash,
                rebuild
            ));
            until_stopped(tries, stop).await
        };
        let upstream = match outcome {
            Ok(outcome) => match settle(pool, outcome) {
                Ok(upstream) => upstream,
                Err(failure) => return Ok(self.failure(failure)),
            },
            Err(reason) => return stopped(reason, self.filters.into()),
        };
        self.respond(upstream, admitted, forward.idle_timeout).await
    }

    /// The response through the route's header changes and the response
    /// filters, its body streamed on.
    async fn respond(
        mut self,
        upstream: Upstream,
        admitted: crate::cluster::Admitted,
        idle_timeout: Option<Duration>,
    ) -> Answer {
        let Upstream {
            mut response,
            endpoint,
            sender,
            load,
        } = upstream;
        let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        let upgraded = match self.upgrade.take() {
            Some(upgrade) if switching => {
                let protocol = response.headers().get(header::UPGRADE).cloned();
                tunnel(upgrade.client, hyper::upgrade::on(&mut response));
                protocol
            }
            _ => None,
        };
        if let Some(state) = self.filters.borrow_mut().state() {
            state.upstream = Some(endpoint.addr);
        }
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        self.route.response_headers.apply(&mut parts.headers);
        let mut response_callbacks = false;
        let mut body_callbacks = false;
        if self.filtered {
            let response_ended = body.is_end_stream();
            if let Some(state) = self.filters.borrow_mut().state() {
                state.response = Some(ResponseHead {
                    status: parts.status,
                    headers: std::mem::take(&mut parts.headers),
                });
            }
            if let Err(stop) = run_headers_phase(
                &self.worker,
                &self.filters,
                Phase::ResponseHeaders,
                response_ended,
                None,
            )
            .await
            {
                return stopped(stop, self.filters.into());
            }
            let mut f = self.filters.borrow_mut();
            if let Some(head) = f.state().and_then(|s| s.response.as_ref()) {
                // The filters keep seeing the response headers until on_log.
                parts.status = head.status;
                parts.headers = head.headers.clone();
            }
            body_callbacks = !response_ended && f.has_body_callbacks(false);
            if body_callbacks {
                // Plugins may change the body's length: it is re-framed.
                parts.headers.remove(header::CONTENT_LENGTH);
            }
            response_callbacks =
                body_callbacks || (!response_ended && f.has_trailers_callbacks(false));
        }
        if let Some(protocol) = upgraded {
            // The connection now belongs to the tunnel; the response has no body.
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(header::UPGRADE, protocol);
            drop((endpoint, sender, load, admitted, body));
            return Ok(Response::from_parts(
                parts,
                ResponseBody::full(Bytes::new(), Some(self.filters.into())),
            ));
        }
        let mut body = Source::new(body, None, None);
        body.idle_after(idle_timeout);
        if body_callbacks {
            match self.whole_body(&mut body).await {
                Ok(Some(data)) => {
                    // Sent with its final length (hyper writes it from the
                    // body's exact size), not re-framed.
                    let body = ResponseBody::whole(
                        data,
                        (endpoint, sender),
                        (load, admitted),
                        self.filters,
                    );
                    return Ok(Response::from_parts(parts, body));
                }
                Ok(None) => {}
                Err(stop) => return stopped(stop, self.filters.into()),
            }
        }
        let body = ResponseBody::upstream(
            body,
            (endpoint, sender),
            (load, admitted),
            self.filters.into(),
            response_callbacks,
        );
        Ok(Response::from_parts(parts, body))
    }

    /// The response body through the body callbacks, if the upstream's
    /// first frame is all of it and already here (a short response):
    /// then the head goes out after the callbacks, with the body's final
    /// length. `None` when it streams (what was read is given back).
    async fn whole_body(&self, body: &mut Source) -> Result<Option<Bytes>, Stop> {
        let polled =
            std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx))).await;
        let data = match polled {
            Poll::Pending => return Ok(None),
            Poll::Ready(None) => Bytes::new(),
            Poll::Ready(Some(Ok(frame))) if frame.is_data() && body.is_end_stream() => {
                frame.into_data().unwrap_or_default()
            }
            Poll::Ready(Some(polled)) => {
                body.push_back(polled);
                return Ok(None);
            }
        };
        let mut run = self.filters.borrow_mut().run_body(false, data, true);
        loop {
            run = match run {
                // A plugin paused at the end of the body: the head waits
                // with it until the plugin continues.
                Err(Stop::Paused {
                    plugin,
                    resume: Some(resume),
                }) => {
                    let (worker, filters) = (self.worker.clone(), self.filters.clone());
                    crate::chain::continue_body(worker, filters, false, plugin, resume).await
                }
                run => return run.map(Some),
            };
        }
    }

    /// The request again with an empty body: for a retry (only ever of a
    /// request without a body) or a mirror (which then gets its body).
    fn rebuild(&self) -> Result<Request<RequestBody>, TryFailure> {
        let mut f = self.filters.borrow_mut();
        let state = f
            .state()
            .ok_or(TryFailure::BadRequest("internal: stream state lost"))?;
        state
            .upstream_request(RequestBody::empty(), true)
            .map_err(TryFailure::BadRequest)
    }

    /// Sends a copy to `cluster`, its `Host` suffixed `-shadow`, with
    /// `body` (a copy of the request's, streamed) if it has one; the answer
    /// is read and dropped.
    fn mirror(&self, cluster: usize, timeout: Option<Duration>, body: Option<RequestBody>) {
        let Ok(mut request) = self.rebuild() else {
            return;
        };
        if let Some(body) = body {
            // Filters may have changed the length: the copy is re-framed.
            request.headers_mut().remove(header::CONTENT_LENGTH);
            *request.body_mut() = body;
        }
        if let Some(host) = request.headers().get(header::HOST)
            && let Ok(shadow) = HeaderValue::from_bytes(&[host.as_bytes(), b"-shadow"].concat())
        {
            request.headers_mut().insert(header::HOST, shadow);
        }
        let worker = self.worker.clone();
        tokio::task::spawn_local(async move {
            let exchange = crate::callout::read_whole(&worker, cluster, request);
            let limit = timeout.unwrap_or(Duration::from_secs(60));
            if tokio::time::timeout(limit, exchange)
                .await
                .ok()
                .flatten()
                .is_none()
            {
                let pool = &worker.clusters[cluster];
                tracing::debug!(cluster = %pool.name, "mirrored request failed");
            }
        });
    }

    fn fail(self, status: StatusCode, reason: &str) -> Answer {
        Ok(error_response(status, reason, Some(self.filters.into())))
    }

    fn failure(self, failure: TryFailure) -> Response<ResponseBody> {
        failure_response(failure, &self.route, self.filters.into())
    }
}

/// The consistent-hash key of a request with `headers` from `peer`, by the
/// cluster's `hash_on`.
fn hash_key(pool: &ClusterPool, headers: &HeaderMap, peer: SocketAddr) -> Option<u64> {
    let hash_on = pool.shared.config.hash_on.as_ref()?;
    if let Some(name) = &hash_on.header {
        return headers.get(name.as_str()).map(|v| hash_of(&v.as_bytes()));
    }
    if let Some(name) = &hash_on.cookie {
        return headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| {
                let (key, value) = pair.trim().split_once('=')?;
                (key == name).then(|| hash_of(&value.as_bytes()))
            });
    }
    hash_on.source_ip.then(|| hash_of(&peer.ip()))
}

/// The cluster a request's `cluster_header` names, if the route has one
/// and the request carries it; an error names a cluster that is not there.
fn named_cluster(
    worker: &Worker,
    forward: &Forward,
    headers: &HeaderMap,
) -> Result<Option<usize>, String> {
    let Some((name, value)) = forward
        .cluster_header
        .as_ref()
        .and_then(|name| Some((name, headers.get(name)?)))
    else {
        return Ok(None);
    };
    match worker
        .clusters
        .iter()
        .position(|c| c.name.as_bytes() == value.as_bytes())
    {
        Some(index) => Ok(Some(index)),
        None => Err(format!(
            "the `{name}` header names no cluster: `{}`",
            String::from_utf8_lossy(value.as_bytes())
        )),
    }
}

/// Where a request body reports why it stopped (a limit, a plugin). A
/// request without a body never reports a stop (its body is not read,
/// so neither limits nor body callbacks apply): no channel.
fn stop_channel(
    request_ended: bool,
) -> (
    Option<oneshot::Sender<Stop>>,
    Option<oneshot::Receiver<Stop>>,
) {
    if request_ended {
        return (None, None);
    }
    let (sender, receiver) = oneshot::channel();
    (Some(sender), Some(receiver))
}

/// `tries` to its end, or the reason the request body stopped, which also
/// fails the upstream request: the stop says what the client should hear,
/// so it is looked at first.
async fn until_stopped<F: Future>(
    mut tries: Pin<&mut F>,
    mut stop: Option<oneshot::Receiver<Stop>>,
) -> Result<F::Output, Stop> {
    loop {
        let waiting = stop.is_some();
        let stopped = async {
            match stop.as_mut() {
                Some(stop) => stop.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            reason = stopped, if waiting => match reason {
                Ok(reason) => return Err(reason),
                Err(_) => stop = None,
            },
            outcome = tries.as_mut() => return Ok(outcome),
        }
    }
}

/// The tries' outcome, counted in the cluster's figures.
fn settle(
    pool: &ClusterPool,
    outcome: Result<Upstream, TryFailure>,
) -> Result<Upstream, TryFailure> {
    match &outcome {
        Ok(upstream) => pool
            .shared
            .count_response(upstream.response.status().as_u16()),
        Err(TryFailure::Timeout) => {
            pool.shared
                .stats
                .timeouts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Err(_) => {}
    }
    outcome
}

/// A request forwarded with nothing reading its stream after it is sent:
/// no filter, no access log, no mirror, no upgrade. It goes without the
/// state filters see (`ProxyStream`, `StreamFilters`): the head received
/// goes upstream with the route's changes, and the response comes back
/// with them; only the listener's figures follow it (`PlainStream`).
pub(crate) struct Plain<'a> {
    pub(crate) worker: Rc<Worker>,
    pub(crate) route: &'a Route,
    pub(crate) forward: &'a Forward,
    pub(crate) peer: SocketAddr,
    pub(crate) owner: PlainStream,
}

impl Plain<'_> {
    /// Forwards the request with `head` (its Host taken out into `host`,
    /// its hop-by-hop headers stripped) and `body`.
    pub(crate) async fn forward(
        self,
        head: http::request::Parts,
        host: Option<HeaderValue>,
        body: Incoming,
        body_limit: Option<u64>,
    ) -> Answer {
        let Plain {
            worker,
            route,
            forward,
            peer,
            owner,
        } = self;
        let fail = |status, reason: &str, owner| {
            Ok(error_response(status, reason, Some(Owner::Plain(owner))))
        };
        let http::request::Parts {
            method,
            uri,
            mut headers,
            ..
        } = head;
        let cluster = match named_cluster(&worker, forward, &headers) {
            Ok(named) => named.unwrap_or_else(|| forward.pick(worker.random())),
            Err(reason) => return fail(StatusCode::SERVICE_UNAVAILABLE, &reason, owner),
        };
        let authority = forward
            .host_rewrite
            .as_deref()
            .unwrap_or_else(|| authority(&uri, host.as_ref()));
        let host = match upstream_host(authority, host.as_ref()) {
            Ok(host) => host,
            Err(reason) => return fail(StatusCode::BAD_REQUEST, reason, owner),
        };
        let path = uri.path_and_query().map_or("/", PathAndQuery::as_str);
        let uri = match &forward.prefix_rewrite {
            Some(prefix) => match route.rewrite_path(path, prefix).parse::<Uri>() {
                Ok(uri) => uri,
                Err(_) => {
                    let reason = "the route's prefix_rewrite made an invalid path";
                    return fail(StatusCode::BAD_REQUEST, reason, owner);
                }
            },
            None => Uri::from(
                uri.into_parts()
                    .path_and_query
                    .unwrap_or_else(|| PathAndQuery::from_static("/")),
            ),
        };
        route.request_headers.apply(&mut headers);
        let pool = &worker.clusters[cluster];
        let hash = hash_key(pool, &headers, peer);
        if let Some(host) = host {
            headers.insert(header::HOST, host);
        }
        let admitted = match pool.shared.admit() {
            Ok(admitted) => admitted,
            Err(error) => {
                let failure = TryFailure::Upstream(error);
                return Ok(failure_response(failure, route, Owner::Plain(owner)));
            }
        };

        let request_ended = body.is_end_stream();
        let (stop_sender, stop) = stop_channel(request_ended);
        let body = if request_ended {
            RequestBody::empty()
        } else {
            let mut body = Source::new(body, body_limit, None);
            body.idle_after(forward.idle_timeout);
            RequestBody::new(body, None, stop_sender)
        };
        let mut request = Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.version_mut() = http::Version::HTTP_11;
        *request.headers_mut() = headers;
        // Only a request without a body is sent again (retries): from a
        // copy of its head, kept when the route retries.
        let replay = (request_ended && forward.retry.is_some()).then(|| {
            let mut copy = Request::new(());
            *copy.method_mut() = request.method().clone();
            *copy.uri_mut() = request.uri().clone();
            *copy.version_mut() = http::Version::HTTP_11;
            *copy.headers_mut() = request.headers().clone();
            copy.into_parts().0
        });
        let rebuild = || {
            let head = replay.clone().ok_or(TryFailure::BadRequest(
                "internal: the request cannot be sent again",
            ))?;
            Ok(Request::from_parts(head, RequestBody::empty()))
        };
        let mut request = Some(request);
        let tries = pin!(tries(
            &worker,
            forward,
            pool,
            &mut request,
            request_ended,
            hash,
            rebuild
        ));
        let upstream = match until_stopped(tries, stop).await {
            Ok(outcome) => match settle(pool, outcome) {
                Ok(upstream) => upstream,
                Err(failure) => return Ok(failure_response(failure, route, Owner::Plain(owner))),
            },
            Err(reason) => return stopped(reason, Owner::Plain(owner)),
        };
        let Upstream {
            response,
            endpoint,
            sender,
            load,
        } = upstream;
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        route.response_headers.apply(&mut parts.headers);
        let mut body = Source::new(body, None, None);
        body.idle_after(forward.idle_timeout);
        let body = ResponseBody::upstream(
            body,
            (endpoint, sender),
            (load, admitted),
            Owner::Plain(owner),
            false,
        );
        Ok(Response::from_parts(parts, body))
    }
}

/// The response for a request no upstream answered.
fn failure_response(failure: TryFailure, route: &Route, owner: Owner) -> Response<ResponseBody> {
    match failure {
        TryFailure::Upstream(UpstreamError::Overflow { cluster, breaker }) => {
            let reason = format!("cluster `{cluster}` is over its {breaker} limit");
            let mut response =
                error_response(StatusCode::SERVICE_UNAVAILABLE, &reason, Some(owner));
            response
                .headers_mut()
                .insert("x-weft-overflow", HeaderValue::from_static(breaker));
            response
        }
        TryFailure::Upstream(error) => {
            tracing::warn!(route = %route.name, "{error}");
            error_response(
                StatusCode::BAD_GATEWAY,
                "upstream connection failed",
                Some(owner),
            )
        }
        TryFailure::Timeout => error_response(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream request timed out",
            Some(owner),
        ),
        TryFailure::BadRequest(reason) => {
            error_response(StatusCode::BAD_REQUEST, reason, Some(owner))
        }
    }
}

/// Sends the request, and again as the route's retry policy allows: a
/// request that was never sent is still in `request`; one that was is
/// made again by `rebuild` for the next try.
async fn tries(
    worker: &Worker,
    forward: &Forward,
    pool: &ClusterPool,
    request: &mut Option<Request<RequestBody>>,
    replayable: bool,
    hash: Option<u64>,
    rebuild: impl Fn() -> Result<Request<RequestBody>, TryFailure>,
) -> Result<Upstream, TryFailure> {
    // One clock read per try: the deadlines and the try's start.
    let mut now = tokio::time::Instant::now();
    let deadline = forward.timeout.map(|t| now + t);
    let mut retries = 0;
    // Held while a retry is in flight (`max_retries`).
    let mut _retry_slot = None;
    loop {
        if request.is_none() {
            *request = Some(rebuild()?);
        }
        let pick = Pick {
            hash,
            random: worker.random(),
        };
        // This try ends at its own limit or the route's, whichever is first.
        let per_try = forward.per_try_timeout.map(|t| now + t);
        let until = match (per_try, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let sent_at = now;
        let sent = {
            // Pinned where it is made: the deadlines below borrow it
            // rather than move its (large) state.
            let attempt = pin!(pool.send(request, pick));
            match until {
                // A deadline seconds away is kept to the worker's coarse
                // clock (a tick late at most): no timer-wheel entry per request.
                Some(until) if until - now >= COARSE_DEADLINE => {
                    let expired = worker.coarse.sleep_at(until.into_std());
                    tokio::select! {
                        biased;
                        sent = attempt => Some(sent),
                        () = expired => None,
                    }
                }
                Some(until) => tokio::time::timeout_at(until, attempt).await.ok(),
                None => Some(attempt.await),
            }
        };
        now = tokio::time::Instant::now();
        let out_of_time = deadline.is_some_and(|d| now >= d);
        let policy: Option<&Retry> = forward.retry.as_ref().filter(|r| retries < r.attempts);
        let (outcome, retriable) = match sent {
            Some(Ok(upstream)) => {
                pool.shared.stats.upstream_durations.record(now - sent_at);
                let status = upstream.response.status();
                pool.shared
                    .report(&upstream.endpoint.shared, !status.is_server_error());
                let retriable = replayable && policy.is_some_and(|r| r.on_status(status));
                (Ok(upstream), retriable)
            }
            Some(Err(error)) => {
                let can_resend = request.is_some() || replayable;
                let retriable = can_resend
                    && policy.is_some_and(|r| {
                        if error.is_connect_failure() {
                            r.on_connect_failure()
                        } else {
                            matches!(error, UpstreamError::Request { .. }) && r.on_reset()
                        }
                    });
                (Err(TryFailure::Upstream(error)), retriable)
            }
            None => {
                let retriable = replayable && policy.is_some_and(Retry::on_reset);
                (Err(TryFailure::Timeout), retriable)
            }
        };
        let Some(policy) = policy.filter(|_| retriable && !out_of_time) else {
            return outcome;
        };
        let Some(slot) = pool.shared.retry_slot() else {
            return outcome;
        };
        _retry_slot = Some(slot);
        retries += 1;
        match &outcome {
            Ok(upstream) => tracing::debug!(
                cluster = %pool.name,
                status = %upstream.response.status(),
                "retry {retries}"
            ),
            Err(TryFailure::Upstream(error)) => {
                tracing::debug!(cluster = %pool.name, "retry {retries} after: {error}")
            }
            Err(_) => tracing::debug!(cluster = %pool.name, "retry {retries} after a timeout"),
        }
        drop(outcome);
        let backoff = tokio::time::Instant::now() + policy.backoff(retries, worker.random());
        if deadline.is_some_and(|d| backoff >= d) {
            return Err(TryFailure::Timeout);
        }
        tokio::time::sleep_until(backoff).await;
    }
}
