//! The body of a response sent downstream, which also ends the stream: when
//! it has been sent (or dropped, if the client went away) the upstream
//! connection returns to its pool and the filters' `on_done`/`on_log`/
//! `on_delete` run.

use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;

use crate::chain::Finish;
use crate::cluster::Endpoint;

/// What a downstream response carries.
pub struct ResponseBody {
    kind: Kind,
    upstream: Option<(Rc<Endpoint>, SendRequest<Incoming>)>,
    finish: Option<Finish>,
}

enum Kind {
    Upstream(Incoming),
    Full(Option<Bytes>),
}

impl ResponseBody {
    /// A body streamed from an upstream response; its connection goes back
    /// to `endpoint`'s pool once the body has been read to the end.
    pub(crate) fn upstream(
        body: Incoming,
        endpoint: Rc<Endpoint>,
        sender: SendRequest<Incoming>,
        finish: Option<Finish>,
    ) -> Self {
        ResponseBody {
            kind: Kind::Upstream(body),
            upstream: Some((endpoint, sender)),
            finish,
        }
    }

    /// A body the proxy makes itself (local responses, errors).
    pub(crate) fn full(bytes: impl Into<Bytes>, finish: Option<Finish>) -> Self {
        let bytes = bytes.into();
        ResponseBody {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
            upstream: None,
            finish,
        }
    }

    fn complete(&mut self) {
        if let Some((endpoint, sender)) = self.upstream.take() {
            endpoint.release(sender);
        }
        if let Some(finish) = self.finish.take() {
            finish.run();
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = match &mut this.kind {
            Kind::Upstream(body) => ready!(Pin::new(body).poll_frame(cx)),
            Kind::Full(bytes) => bytes.take().map(|b| Ok(Frame::data(b))),
        };
        match &frame {
            Some(Err(_)) => {
                // A broken upstream body: the connection is not reusable.
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
            Kind::Upstream(body) => body.is_end_stream(),
            Kind::Full(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Upstream(body) => body.size_hint(),
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // hyper does not poll a body it knows is empty (HEAD, 204, a
        // zero Content-Length); such a body still ends the stream cleanly.
        if !self.is_end_stream() {
            self.upstream = None;
        }
        self.complete();
    }
}
