//! Bodies on their way through the proxy.
//!
//! [`RequestBody`] carries the downstream body upstream and
//! [`ResponseBody`] the upstream (or a local) body downstream; both run the
//! plugins' body callbacks on each chunk when a plugin of the stream has
//! them. Each holds the stream's filters, so the filters' contexts end
//! (`on_done`, `on_log`, `on_delete`) when the last of them is dropped
//! (a stream without filters: its listener's figures are recorded), and
//! the response body gives the upstream connection back to its pool once
//! it has been read to the end.

use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::oneshot;

use crate::chain::{SharedFilters, Stop};
use crate::cluster::{Admitted, Conn, Endpoint, Load};
use crate::router::ListenerRoutes;

/// Why a body ended early.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The peer sending the body failed (reset, malformed framing...).
    #[error("reading the body failed: {0}")]
    Read(#[from] hyper::Error),
    /// A plugin stopped the body (a local response, a failure, too much
    /// held back); the reason is logged where it happened.
    #[error("a filter stopped the body")]
    Stopped,
    /// The body is longer than the listener allows.
    #[error("the body is longer than {limit} bytes")]
    TooLarge { limit: u64 },
    /// No part of the body came within the route's idle timeout.
    #[error("no part of the body came within {after:?}")]
    Idle { after: Duration },
}

/// A body from a peer, counted against a limit.
pub(crate) struct Source {
    inner: Incoming,
    seen: u64,
    limit: Option<u64>,
    /// Where the count is kept for the access log.
    counter: Option<Rc<std::cell::Cell<u64>>>,
    idle: Option<Idle>,
    /// What a read ahead got, given back ([`Source::push_back`]): it
    /// comes out first, already counted.
    pushed: Option<Box<Result<Frame<Bytes>, BodyError>>>,
}

/// The longest wait for the next frame. The timer is made the first time
/// the body has to wait (most small bodies never do) and re-armed at each
/// wait after a frame.
struct Idle {
    after: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    armed: bool,
}

impl Source {
    pub(crate) fn new(
        inner: Incoming,
        limit: Option<u64>,
        counter: Option<Rc<std::cell::Cell<u64>>>,
    ) -> Source {
        Source {
            inner,
            seen: 0,
            limit,
            counter,
            idle: None,
            pushed: None,
        }
    }

    /// Gives back what a poll of this body returned: the next poll
    /// returns it again.
    pub(crate) fn push_back(&mut self, polled: Result<Frame<Bytes>, BodyError>) {
        self.pushed = Some(Box::new(polled));
    }

    /// Fails the body when no frame comes for `after`.
    pub(crate) fn idle_after(&mut self, after: Option<Duration>) {
        self.idle = after.map(|after| Idle {
            after,
            timer: None,
            armed: false,
        });
    }
}

impl Body for Source {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Some(polled) = self.pushed.take() {
            return Poll::Ready(Some(*polled));
        }
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(idle) = &mut self.idle {
                    idle.armed = false;
                }
                frame
            }
            Poll::Pending => {
                let Some(idle) = &mut self.idle else {
                    return Poll::Pending;
                };
                let deadline = tokio::time::Instant::now() + idle.after;
                let timer = idle
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if !idle.armed {
                    timer.as_mut().reset(deadline);
                    idle.armed = true;
                }
                ready!(timer.as_mut().poll(cx));
                let after = idle.after;
                self.idle = None;
                return Poll::Ready(Some(Err(BodyError::Idle { after })));
            }
        };
        if let Some(Ok(frame)) = &frame {
            let len = frame.data_ref().map_or(0, |d| d.len() as u64);
            self.seen += len;
            if let Some(counter) = &self.counter {
                counter.set(self.seen);
            }
            if let Some(limit) = self.limit
                && self.seen > limit
            {
                return Poll::Ready(Some(Err(BodyError::TooLarge { limit })));
            }
        }
        Poll::Ready(frame.map(|f| f.map_err(BodyError::Read)))
    }

    fn is_end_stream(&self) -> bool {
        self.pushed.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.pushed {
            None => self.inner.size_hint(),
            Some(polled) => {
                let pushed = match &**polled {
                    Ok(frame) => frame.data_ref().map_or(0, |d| d.len() as u64),
                    Err(_) => 0,
                };
                let inner = self.inner.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + pushed);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + pushed);
                }
                hint
            }
        }
    }
}

/// What pulling a body through the plugins gave.
enum Pulled {
    Frame(Frame<Bytes>),
    End,
    ReadError(BodyError),
    Stopped(Stop),
}

impl Pulled {
    /// The frame to hand on; a stop is reported to `on_stop` and ends the
    /// body with an error.
    fn into_frame(self, on_stop: impl FnOnce(Stop)) -> Option<Result<Frame<Bytes>, BodyError>> {
        match self {
            Pulled::End => None,
            Pulled::Frame(frame) => Some(Ok(frame)),
            Pulled::ReadError(err) => Some(Err(err)),
            Pulled::Stopped(stop) => {
                on_stop(stop);
                Some(Err(BodyError::Stopped))
            }
        }
    }
}

/// Body callbacks on one direction of a stream.
struct BodyFilters {
    filters: SharedFilters,
    request: bool,
    /// Whether the end of the body has reached the plugins.
    ended: bool,
    /// A trailers frame waiting behind the last data the plugins let out.
    trailers: Option<Frame<Bytes>>,
    /// A plugin paused at the end of the body: waiting for it to continue,
    /// then the body callbacks go on after it (at this step).
    waiting: Option<Waiting>,
}

/// The body callbacks going on once a plugin that paused a body at its
/// end continued: what to send on.
type Waiting = Pin<Box<dyn Future<Output = Result<Bytes, Stop>>>>;

/// Where the body callbacks go on once a waiting plugin continued: from
/// this step (an index in the stream's contexts), with the body the
/// stream holds, which is the whole body if `ended`.
#[derive(Clone, Copy)]
pub(crate) struct Resumed {
    pub(crate) start: usize,
    pub(crate) ended: bool,
}

impl BodyFilters {
    fn new(filters: SharedFilters, request: bool) -> BodyFilters {
        // A request body a plugin was given while it kept the headers
        // paused waits in the stream: it goes on through the plugins after
        // that one first.
        let held = request
            .then(|| filters.borrow_mut().take_held_request())
            .flatten();
        let mut body = BodyFilters {
            filters: filters.clone(),
            request,
            ended: false,
            trailers: None,
            waiting: None,
        };
        if let Some(held) = held {
            body.ended = held.ended;
            body.trailers = held.trailers.map(Frame::trailers);
            let resumed = Resumed {
                start: held.start,
                ended: held.ended,
            };
            body.waiting = Some(Box::pin(async move {
                filters.borrow_mut().resume_body(true, resumed)
            }));
        }
        body
    }

    /// Pulls chunks from `inner` through the plugins until one yields
    /// something to send on.
    fn poll(&mut self, inner: &mut Source, cx: &mut Context<'_>) -> Poll<Pulled> {
        loop {
            let out = match &mut self.waiting {
                Some(waiting) => {
                    let out = ready!(waiting.as_mut().poll(cx));
                    self.waiting = None;
                    out
                }
                None => match ready!(self.pull(inner, cx)) {
                    Ok(out) => out,
                    Err(pulled) => return Poll::Ready(pulled),
                },
            };
            // A plugin paused at the end of the body: the body waits for
            // it in the stream, where its callbacks may change it.
            let out = match out {
                Err(Stop::Paused {
                    plugin,
                    resume: Some(resume),
                }) => {
                    let worker = self.filters.borrow().worker();
                    self.waiting = Some(Box::pin(crate::chain::continue_body(
                        worker,
                        self.filters.clone(),
                        self.request,
                        plugin,
                        resume,
                    )));
                    continue;
                }
                out => out,
            };
            // Trailers go through the trailers callbacks once the body has
            // ended for the plugins.
            if let Ok(_) = &out
                && let Some(frame) = self.trailers.take()
            {
                match frame.into_trailers() {
                    Ok(trailers) => {
                        let run = self
                            .filters
                            .borrow_mut()
                            .run_trailers(self.request, trailers);
                        match run {
                            Ok(trailers) => self.trailers = Some(Frame::trailers(trailers)),
                            Err(stop) => return Poll::Ready(Pulled::Stopped(stop)),
                        }
                    }
                    Err(frame) => self.trailers = Some(frame),
                }
            }
            match out {
                Ok(data) if !data.is_empty() => {
                    return Poll::Ready(Pulled::Frame(Frame::data(data)));
                }
                Ok(_) => continue,
                Err(stop) => return Poll::Ready(Pulled::Stopped(stop)),
            }
        }
    }

    /// The next chunk from `inner` through the body callbacks; `Err` for
    /// what ends the pulling (the end, a trailers frame, a read error).
    fn pull(
        &mut self,
        inner: &mut Source,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Result<Bytes, Stop>, Pulled>> {
        if let Some(trailers) = self.trailers.take() {
            return Poll::Ready(Err(Pulled::Frame(trailers)));
        }
        if self.ended {
            return Poll::Ready(Err(Pulled::End));
        }
        let (chunk, end_of_stream) = match ready!(Pin::new(&mut *inner).poll_frame(cx)) {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => (data, inner.is_end_stream()),
                // Trailers end the data: the plugins see the end of the
                // body first, then the trailers go on as they are.
                Err(trailers) => {
                    self.trailers = Some(trailers);
                    (Bytes::new(), true)
                }
            },
            Some(Err(err)) => return Poll::Ready(Err(Pulled::ReadError(err))),
            None => (Bytes::new(), true),
        };
        self.ended = end_of_stream;
        Poll::Ready(Ok(self.filters.borrow_mut().run_body(
            self.request,
            chunk,
            end_of_stream,
        )))
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.trailers.is_none() && self.waiting.is_none()
    }
}

/// A copy of a body as it streams, for a mirror: the frames the upstream
/// gets are queued for the mirror's request (the bytes are shared, not
/// copied). The mirror never slows the original: past `limit` queued bytes
/// the copy is abandoned and the mirror's request fails.
struct Tee {
    queue: std::collections::VecDeque<Bytes>,
    queued: usize,
    limit: usize,
    /// Set once the original ended: true if it ended whole.
    ended: Option<bool>,
    waker: Option<std::task::Waker>,
}

/// The original body's side of a [`Tee`].
pub(crate) struct TeeSender(Rc<std::cell::RefCell<Tee>>);

/// The mirror's side of a [`Tee`].
pub(crate) struct TeeReceiver(Rc<std::cell::RefCell<Tee>>);

/// A tee holding at most `limit` bytes the mirror has not taken yet.
pub(crate) fn tee(limit: usize) -> (TeeSender, TeeReceiver) {
    let tee = Rc::new(std::cell::RefCell::new(Tee {
        queue: std::collections::VecDeque::new(),
        queued: 0,
        limit,
        ended: None,
        waker: None,
    }));
    (TeeSender(tee.clone()), TeeReceiver(tee))
}

impl TeeSender {
    /// Copies what the original body gave (`last`: nothing follows it);
    /// false once the copy is over (ended, or abandoned).
    fn copy(&self, frame: Option<&Result<Frame<Bytes>, BodyError>>, last: bool) -> bool {
        let mut tee = self.0.borrow_mut();
        if tee.ended.is_some() {
            return false;
        }
        match frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    tee.queued += data.len();
                    tee.queue.push_back(data.clone());
                    if tee.queued > tee.limit {
                        tracing::debug!(
                            "mirror fell {} bytes behind; its copy is abandoned",
                            tee.limit
                        );
                        tee.ended = Some(false);
                    }
                }
            }
            Some(Err(_)) => tee.ended = Some(false),
            None => tee.ended = Some(true),
        }
        if last && tee.ended.is_none() {
            tee.ended = Some(true);
        }
        if let Some(waker) = tee.waker.take() {
            waker.wake();
        }
        tee.ended.is_none()
    }
}

impl TeeSender {
    /// Queues `data` for the receiving body; false once that body is over
    /// (ended, abandoned, or no longer read).
    pub(crate) fn push(&self, data: Bytes) -> bool {
        self.copy(Some(&Ok(Frame::data(data))), false)
    }

    /// Ends the receiving body whole.
    pub(crate) fn finish(&self) {
        self.copy(None, true);
    }
}

impl Drop for TeeSender {
    fn drop(&mut self) {
        // An original that stops being read before its end leaves the copy
        // incomplete.
        self.copy(Some(&Err(BodyError::Stopped)), true);
    }
}

impl TeeReceiver {
    fn poll(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let mut tee = self.0.borrow_mut();
        match tee.ended {
            Some(false) => return Poll::Ready(Some(Err(BodyError::Stopped))),
            Some(true) if tee.queue.is_empty() => return Poll::Ready(None),
            _ => {}
        }
        match tee.queue.pop_front() {
            Some(data) => {
                tee.queued -= data.len();
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            None => {
                tee.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// The downstream body on its way upstream (or a call-out's body).
///
/// Boxed: the request moves through several futures and hyper's client
/// channel, whose slots are cold memory at each request, so every byte of
/// `Request<RequestBody>` is paid for many times; with the body inline it
/// is 408 bytes, with a box 232. An empty body has no box: most requests
/// have no body, and nothing to say about it.
pub struct RequestBody(Option<Box<Flow>>);

/// What a [`RequestBody`] holds.
#[derive(Default)]
struct Flow {
    inner: Option<Source>,
    /// A body the proxy makes itself (call-outs, retries).
    full: Option<Bytes>,
    /// The mirror's copy of another request's body.
    copy: Option<TeeReceiver>,
    /// Where this body is copied to for a mirror.
    tee: Option<TeeSender>,
    filters: Option<Box<BodyFilters>>,
    /// Tells the request handler why the body stopped (a plugin stopped
    /// it, or it is too long), so that it can answer the client (a local
    /// response, 503, 413...).
    stopped: Option<oneshot::Sender<Stop>>,
}

impl RequestBody {
    /// `inner`, through the body callbacks of `filters` if given,
    /// reporting a stop on `stopped`.
    pub(crate) fn new(
        inner: Source,
        filters: Option<SharedFilters>,
        stopped: Option<oneshot::Sender<Stop>>,
    ) -> Self {
        RequestBody(Some(Box::new(Flow {
            inner: Some(inner),
            filters: filters.map(|filters| Box::new(BodyFilters::new(filters, true))),
            stopped,
            ..Flow::default()
        })))
    }

    /// A body the proxy makes itself.
    pub(crate) fn full(bytes: Bytes) -> Self {
        if bytes.is_empty() {
            return RequestBody::empty();
        }
        RequestBody(Some(Box::new(Flow {
            full: Some(bytes),
            ..Flow::default()
        })))
    }

    /// No body.
    pub(crate) fn empty() -> Self {
        RequestBody(None)
    }

    /// The copy a mirror gets of a body [`RequestBody::tee_to`] feeds.
    pub(crate) fn copy(receiver: TeeReceiver) -> Self {
        RequestBody(Some(Box::new(Flow {
            copy: Some(receiver),
            ..Flow::default()
        })))
    }

    /// Copies this body to a mirror's as it streams.
    pub(crate) fn tee_to(&mut self, sender: TeeSender) {
        self.0.get_or_insert_default().tee = Some(sender);
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut self.get_mut().0 {
            Some(flow) => Pin::new(&mut **flow).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.as_ref().is_none_or(|flow| flow.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.0
            .as_ref()
            .map_or(SizeHint::with_exact(0), |flow| flow.size_hint())
    }
}

impl Flow {
    fn report(&mut self, stop: Stop) {
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.send(stop);
        }
    }
}

impl Body for Flow {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some(copy) = &this.copy {
            return copy.poll(cx);
        }
        let Some(inner) = &mut this.inner else {
            return Poll::Ready(this.full.take().map(|bytes| Ok(Frame::data(bytes))));
        };
        let mut stop = None;
        let frame = match &mut this.filters {
            None => ready!(Pin::new(inner).poll_frame(cx)),
            Some(filters) => ready!(filters.poll(inner, cx)).into_frame(|s| stop = Some(s)),
        };
        match &frame {
            Some(Err(BodyError::TooLarge { limit })) => {
                stop = Some(Stop::BodyTooLarge { limit: *limit });
            }
            Some(Err(BodyError::Idle { after })) => stop = Some(Stop::BodyIdle { after: *after }),
            _ => {}
        }
        if let Some(stop) = stop {
            this.report(stop);
        }
        // hyper stops polling a body that says it has ended.
        let last = frame.as_ref().is_some_and(|f| f.is_ok()) && this.is_end_stream();
        if let Some(tee) = &this.tee
            && !tee.copy(frame.as_ref(), last)
        {
            this.tee = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        if self.copy.is_some() {
            return false;
        }
        match (&self.inner, &self.filters) {
            (None, _) => self.full.is_none(),
            (Some(inner), None) => inner.is_end_stream(),
            (Some(_), Some(filters)) => filters.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        if self.copy.is_some() {
            return SizeHint::default();
        }
        match (&self.inner, &self.filters) {
            (None, _) => SizeHint::with_exact(self.full.as_ref().map_or(0, |b| b.len() as u64)),
            (Some(inner), None) => inner.size_hint(),
            // Plugins may change the length.
            (Some(_), Some(_)) => SizeHint::default(),
        }
    }
}

/// What a downstream response carries.
///
/// Boxed, like [`RequestBody`]: the response moves through several
/// futures to hyper (304 bytes with the body inline, 120 with a box).
pub struct ResponseBody(Box<Reply>);

/// Who hears that a response is done: the stream's filters, whose
/// contexts then end and which write the access log and the listener's
/// figures, or, for a stream without them, the figures alone.
pub(crate) enum Owner {
    Filters(SharedFilters),
    Plain(PlainStream),
}

impl From<SharedFilters> for Owner {
    fn from(filters: SharedFilters) -> Self {
        Owner::Filters(filters)
    }
}

/// A stream no filter and no access log reads (`forward::Plain`): what
/// the listener's figures need of it, recorded when it is dropped.
pub(crate) struct PlainStream {
    pub(crate) listener: Arc<ListenerRoutes>,
    pub(crate) started: Instant,
    pub(crate) status: Option<u16>,
}

impl Drop for PlainStream {
    fn drop(&mut self) {
        self.listener
            .stats
            .record(self.status, self.started.elapsed());
    }
}

/// What a [`ResponseBody`] holds.
struct Reply {
    kind: Kind,
    upstream: Option<(Rc<Endpoint>, Conn)>,
    /// Held until the body is done, so that the stream ends then.
    owner: Option<Owner>,
    /// The request counts (circuit breakers, least request) it holds until
    /// the body is done.
    in_flight: Option<(Load, Admitted)>,
    /// Body bytes handed to the client so far.
    sent: u64,
}

enum Kind {
    Upstream(Source, Option<Box<BodyFilters>>),
    Full(Option<Bytes>),
}

impl ResponseBody {
    /// A body streamed from an upstream response, through the response
    /// body callbacks if `run_callbacks`; its connection goes back to
    /// `endpoint`'s pool once the body has been read to the end.
    pub(crate) fn upstream(
        body: Source,
        upstream: (Rc<Endpoint>, Conn),
        in_flight: (Load, Admitted),
        owner: Owner,
        run_callbacks: bool,
    ) -> Self {
        let callbacks = match &owner {
            Owner::Filters(filters) if run_callbacks => {
                Some(Box::new(BodyFilters::new(filters.clone(), false)))
            }
            _ => None,
        };
        ResponseBody(Box::new(Reply {
            kind: Kind::Upstream(body, callbacks),
            upstream: Some(upstream),
            owner: Some(owner),
            in_flight: Some(in_flight),
            sent: 0,
        }))
    }

    /// An upstream body read whole before the response head went out (and
    /// through the body callbacks): `data` is what the client gets; the
    /// connection and the request counts are released when it has been
    /// sent, as for a streamed body.
    pub(crate) fn whole(
        data: Bytes,
        upstream: (Rc<Endpoint>, Conn),
        in_flight: (Load, Admitted),
        filters: SharedFilters,
    ) -> Self {
        ResponseBody(Box::new(Reply {
            kind: Kind::Full((!data.is_empty()).then_some(data)),
            upstream: Some(upstream),
            owner: Some(filters.into()),
            in_flight: Some(in_flight),
            sent: 0,
        }))
    }

    /// A body the proxy makes itself (local responses, errors).
    pub(crate) fn full(bytes: impl Into<Bytes>, owner: Option<Owner>) -> Self {
        let bytes = bytes.into();
        ResponseBody(Box::new(Reply {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
            upstream: None,
            owner,
            in_flight: None,
            sent: 0,
        }))
    }

    /// Records the status sent to the client, for the access log and metrics.
    pub(crate) fn note_status(&mut self, status: u16) {
        match &mut self.0.owner {
            Some(Owner::Filters(filters)) => {
                if let Some(state) = filters.borrow_mut().state() {
                    state.status = Some(status);
                }
            }
            Some(Owner::Plain(plain)) => plain.status = Some(status),
            None => {}
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        Pin::new(&mut *self.get_mut().0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

impl Reply {
    /// The upstream body has been read to its end: the connection can be
    /// reused, and the stream is done.
    fn complete(&mut self) {
        if let Some((endpoint, sender)) = self.upstream.take() {
            endpoint.release(sender);
        }
        if let Some(Owner::Filters(filters)) = self.owner.take()
            && let Some(state) = filters.borrow_mut().state()
        {
            state.bytes_sent.set(self.sent);
        }
        self.in_flight = None;
    }

    fn upstream_ended(&self) -> bool {
        match &self.kind {
            Kind::Upstream(body, _) => body.is_end_stream(),
            Kind::Full(_) => true,
        }
    }
}

impl Body for Reply {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let frame = match &mut this.kind {
            Kind::Full(bytes) => bytes.take().map(|b| Ok(Frame::data(b))),
            Kind::Upstream(body, None) => {
                ready!(Pin::new(body).poll_frame(cx))
            }
            Kind::Upstream(body, Some(filters)) => {
                ready!(filters.poll(body, cx)).into_frame(|stop| {
                    // The response headers are already on their way: all
                    // that can be done is to cut the response short.
                    tracing::warn!("{}; the response is cut short", stop.describe());
                })
            }
        };
        if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
            this.sent += data.map_or(0, |d| d.len() as u64);
        }
        match &frame {
            Some(Err(_)) => {
                // A broken or stopped body: the connection is not reusable.
                this.upstream = None;
            }
            None => this.complete(),
            Some(Ok(_)) if this.is_end_stream() => this.complete(),
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Upstream(body, None) => body.is_end_stream(),
            Kind::Upstream(_, Some(filters)) => filters.is_end_stream(),
            Kind::Full(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Upstream(body, None) => body.size_hint(),
            // Plugins may change the length.
            Kind::Upstream(_, Some(_)) => SizeHint::default(),
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        // hyper does not poll a body it knows is empty (HEAD, 204, a zero
        // Content-Length); such a body still ends the stream cleanly. One
        // dropped half-way leaves its connection unusable.
        if !self.upstream_ended() {
            self.upstream = None;
        }
        self.complete();
    }
}
