//! HTTP call-outs (`proxy_http_call`): a plugin's request to a cluster,
//! sent on the worker's pools, its answer delivered to the plugin's VM.

use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::BodyExt;
use weft_abi::{
    GrpcCall, GrpcCallResponse, GrpcCaller, GrpcInbound, GrpcOutbound, GrpcStreamOpen,
    GrpcStreamSender, GrpcStreamer, HttpCall, HttpCallResponse, HttpCaller, Pairs, Status,
};

use crate::body::RequestBody;
use crate::cluster::Pick;
use crate::worker::Worker;

/// The `proxy_http_call` of plugin `plugin` on this worker; `allowed`
/// names the clusters it may call (all when `None`).
pub(crate) fn caller(
    worker: Weak<Worker>,
    (plugin, generation): (usize, u64),
    name: String,
    allowed: Option<Arc<[String]>>,
) -> HttpCaller {
    Rc::new(move |call: HttpCall| {
        let owner = worker.upgrade().ok_or(Status::InternalFailure)?;
        let cluster = cluster_for(&owner, &name, allowed.as_deref(), &call.upstream)?;
        let request = request(&call)?;
        let token = owner.next_call_token();
        let worker = worker.clone();
        tokio::task::spawn_local(async move {
            let response = send(&worker, cluster, request, call.timeout).await;
            if let Some(worker) = worker.upgrade() {
                worker
                    .slot(plugin)
                    .borrow_mut()
                    .http_call_response(generation, token, response);
            }
        });
        Ok(token)
    })
}

/// The cluster a plugin's call-out goes to: it must exist and be one the
/// plugin may call.
fn cluster_for(
    worker: &Worker,
    plugin: &str,
    allowed: Option<&[String]>,
    cluster: &str,
) -> Result<usize, Status> {
    if let Some(allowed) = allowed
        && !allowed.iter().any(|a| a == cluster)
    {
        // The plugin's slot is borrowed while it runs: its name was
        // captured instead.
        tracing::warn!(
            plugin,
            cluster,
            "call-out refused: the cluster is not in the plugin's allowed_clusters"
        );
        return Err(Status::BadArgument);
    }
    worker
        .clusters
        .iter()
        .position(|c| &*c.name == cluster)
        .ok_or(Status::BadArgument)
}

/// The `proxy_grpc_call` of plugin `plugin` on this worker: a unary call,
/// `POST /SERVICE/METHOD` with `content-type: application/grpc` and the
/// message in one length-prefixed frame, to a cluster that speaks HTTP/2.
pub(crate) fn grpc_caller(
    worker: Weak<Worker>,
    (plugin, generation): (usize, u64),
    name: String,
    allowed: Option<Arc<[String]>>,
) -> GrpcCaller {
    Rc::new(move |call: GrpcCall| {
        let owner = worker.upgrade().ok_or(Status::InternalFailure)?;
        let cluster = cluster_for(&owner, &name, allowed.as_deref(), &call.cluster)?;
        let body = RequestBody::full(frame(&call.message)?);
        let request = grpc_request(&call.service, &call.method, &call.metadata, body)?;
        let token = owner.next_call_token();
        let worker = worker.clone();
        tokio::task::spawn_local(async move {
            let response = grpc_send(&worker, cluster, request, call.timeout).await;
            if let Some(worker) = worker.upgrade() {
                worker
                    .slot(plugin)
                    .borrow_mut()
                    .grpc_call_response(generation, token, response);
            }
        });
        Ok(token)
    })
}

/// The `proxy_grpc_stream` of plugin `plugin` on this worker: `POST
/// /SERVICE/METHOD` to a cluster that speaks HTTP/2, its body the
/// messages the plugin sends, each answer message delivered as it
/// arrives. Dropping the sender (the VM went away) or cancelling resets
/// the stream.
pub(crate) fn grpc_streamer(
    worker: Weak<Worker>,
    (plugin, generation): (usize, u64),
    name: String,
    allowed: Option<Arc<[String]>>,
) -> GrpcStreamer {
    Rc::new(move |open: GrpcStreamOpen| {
        let owner = worker.upgrade().ok_or(Status::InternalFailure)?;
        // The spec's status for an unknown upstream of a gRPC stream.
        let cluster = cluster_for(&owner, &name, allowed.as_deref(), &open.cluster)
            .map_err(|_| Status::ParseFailure)?;
        let (tee, receiver) = crate::body::tee(GRPC_STREAM_QUEUE);
        let body = RequestBody::copy(receiver);
        let request = grpc_request(&open.service, &open.method, &open.metadata, body)?;
        let token = owner.next_call_token();
        let worker = worker.clone();
        let task = tokio::task::spawn_local(async move {
            let deliver = |event: GrpcInbound| {
                if let Some(worker) = worker.upgrade() {
                    worker
                        .slot(plugin)
                        .borrow_mut()
                        .grpc_stream_event(generation, token, event);
                }
            };
            stream_answers(&worker, cluster, request, &deliver).await;
        });
        let stream = OpenStream {
            tee,
            task: task.abort_handle(),
        };
        let sender: GrpcStreamSender = Box::new(move |out| stream.send(out));
        Ok((token, sender))
    })
}

/// The most bytes of messages a plugin may have sent on a gRPC stream
/// that the upstream has not taken yet; past it the stream fails.
const GRPC_STREAM_QUEUE: usize = 4 << 20;

/// The proxy's side of a plugin's open gRPC stream.
struct OpenStream {
    tee: crate::body::TeeSender,
    task: tokio::task::AbortHandle,
}

impl OpenStream {
    fn send(&self, out: GrpcOutbound) -> Result<(), Status> {
        match out {
            GrpcOutbound::Message(message) => {
                if self.tee.push(frame(&message)?) {
                    Ok(())
                } else {
                    // The request half already ended or failed.
                    Err(Status::InternalFailure)
                }
            }
            GrpcOutbound::Close => {
                self.tee.finish();
                Ok(())
            }
            GrpcOutbound::Cancel => {
                self.task.abort();
                Ok(())
            }
        }
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        // Nothing is delivered to a VM that no longer holds the stream.
        self.task.abort();
    }
}

/// Sends a gRPC stream's request and delivers what comes back: initial
/// metadata, each message as it is complete, trailing metadata, then the
/// status (UNAVAILABLE when the upstream cannot be reached or resets the
/// stream, INTERNAL for a malformed or compressed message).
async fn stream_answers(
    worker: &Weak<Worker>,
    cluster: usize,
    request: Request<RequestBody>,
    deliver: &dyn Fn(GrpcInbound),
) {
    let close = |status: u32, message: &str| GrpcInbound::Close {
        status,
        message: Some(message.to_string()),
    };
    let sent = match worker.upgrade() {
        Some(owner) => {
            let pick = Pick {
                hash: None,
                random: owner.random(),
            };
            let mut request = Some(request);
            owner.clusters[cluster].send(&mut request, pick).await
        }
        None => return,
    };
    let Ok(upstream) = sent else {
        deliver(close(GRPC_UNAVAILABLE, "upstream connection failed"));
        return;
    };
    let (parts, mut body) = upstream.response.into_parts();
    if !parts.status.is_success() {
        let message = format!("upstream answered HTTP {}", parts.status.as_u16());
        deliver(close(GRPC_UNAVAILABLE, &message));
        return;
    }
    deliver(GrpcInbound::InitialMetadata(pairs(&parts.headers)));
    let mut pending = bytes::BytesMut::new();
    let mut trailers = http::HeaderMap::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            deliver(close(GRPC_UNAVAILABLE, "the upstream reset the stream"));
            return;
        };
        let frame = match frame.into_data() {
            Ok(data) => {
                pending.extend_from_slice(&data);
                loop {
                    match next_message(&mut pending) {
                        Ok(Some(message)) => deliver(GrpcInbound::Message(message)),
                        Ok(None) => break,
                        Err(why) => {
                            deliver(close(GRPC_INTERNAL, why));
                            return;
                        }
                    }
                }
                continue;
            }
            Err(frame) => frame,
        };
        if let Ok(t) = frame.into_trailers() {
            trailers = t;
        }
    }
    upstream.endpoint.release(upstream.sender);
    if !pending.is_empty() {
        deliver(close(GRPC_INTERNAL, "the stream ended inside a message"));
        return;
    }
    // A trailers-only answer carries its status in the headers.
    let status_of = |map: &http::HeaderMap| -> Option<u32> {
        map.get("grpc-status")?.to_str().ok()?.parse().ok()
    };
    let status = status_of(&trailers)
        .or_else(|| status_of(&parts.headers))
        .unwrap_or(GRPC_UNKNOWN);
    let message = trailers
        .get("grpc-message")
        .or_else(|| parts.headers.get("grpc-message"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if !trailers.is_empty() {
        deliver(GrpcInbound::TrailingMetadata(pairs(&trailers)));
    }
    deliver(GrpcInbound::Close { status, message });
}

/// Takes the first whole length-prefixed message off `pending`; `None`
/// until one is complete.
fn next_message(pending: &mut bytes::BytesMut) -> Result<Option<Vec<u8>>, &'static str> {
    let Some(&[flag, a, b, c, d]) = pending.get(..5) else {
        return Ok(None);
    };
    if flag != 0 {
        return Err("compressed gRPC messages are not supported");
    }
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    if pending.len() < 5 + len {
        return Ok(None);
    }
    let message = pending.split_to(5 + len);
    Ok(Some(message[5..].to_vec()))
}

/// A message in gRPC's length-prefixed framing, uncompressed.
fn frame(message: &[u8]) -> Result<Bytes, Status> {
    let len = u32::try_from(message.len()).map_err(|_| Status::BadArgument)?;
    let mut framed = Vec::with_capacity(5 + message.len());
    framed.push(0);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(message);
    Ok(Bytes::from(framed))
}

/// gRPC status codes weft itself reports.
const GRPC_UNKNOWN: u32 = 2;
const GRPC_DEADLINE_EXCEEDED: u32 = 4;
const GRPC_INTERNAL: u32 = 13;
const GRPC_UNAVAILABLE: u32 = 14;

/// A gRPC request: `POST /SERVICE/METHOD`, `content-type:
/// application/grpc`, `te: trailers`, the metadata as headers.
fn grpc_request(
    service: &str,
    method: &str,
    metadata: &Pairs,
    body: RequestBody,
) -> Result<Request<RequestBody>, Status> {
    let uri: Uri = format!("/{service}/{method}")
        .parse()
        .map_err(|_| Status::BadArgument)?;
    let mut request = Request::new(body);
    *request.method_mut() = Method::POST;
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    headers.insert(http::header::HOST, HeaderValue::from_static("weft"));
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
    for (key, value) in metadata {
        let name = HeaderName::from_bytes(key).map_err(|_| Status::BadArgument)?;
        let value = HeaderValue::from_bytes(value).map_err(|_| Status::BadArgument)?;
        headers.append(name, value);
    }
    Ok(request)
}

/// Sends `request` to `cluster` (an endpoint picked at random by its
/// policy) and reads the whole answer, giving the connection back to its
/// pool; `None` when it could not be sent or read. Call-outs and mirrored
/// requests go this way.
pub(crate) async fn read_whole(
    worker: &Worker,
    cluster: usize,
    request: Request<RequestBody>,
) -> Option<(http::response::Parts, http_body_util::Collected<Bytes>)> {
    let pick = Pick {
        hash: None,
        random: worker.random(),
    };
    let mut request = Some(request);
    let upstream = worker.clusters[cluster]
        .send(&mut request, pick)
        .await
        .ok()?;
    let (parts, body) = upstream.response.into_parts();
    let collected = body.collect().await.ok()?;
    upstream.endpoint.release(upstream.sender);
    Some((parts, collected))
}

/// Sends a gRPC call and reads its outcome; failures become gRPC statuses
/// (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL).
async fn grpc_send(
    worker: &Weak<Worker>,
    cluster: usize,
    request: Request<RequestBody>,
    timeout: Duration,
) -> GrpcCallResponse {
    let failed = |status| GrpcCallResponse {
        status,
        ..Default::default()
    };
    let exchange = async {
        let Some(worker) = worker.upgrade() else {
            return failed(GRPC_UNAVAILABLE);
        };
        let Some((parts, collected)) = read_whole(&worker, cluster, request).await else {
            return failed(GRPC_UNAVAILABLE);
        };
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let data = collected.to_bytes();
        // A trailers-only answer carries grpc-status in its headers.
        let status = trailers
            .get("grpc-status")
            .or_else(|| parts.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let status = match (parts.status.is_success(), status) {
            (true, Some(status)) => status,
            _ => GRPC_UNAVAILABLE,
        };
        // One length-prefixed message (compression is not supported).
        let message = match data.get(..5) {
            Some([0, a, b, c, d]) => {
                let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
                data.get(5..5 + len).map(<[u8]>::to_vec)
            }
            None => Some(Vec::new()),
            _ => None,
        };
        let Some(message) = message else {
            return failed(GRPC_INTERNAL);
        };
        let status_message = trailers
            .get("grpc-message")
            .or_else(|| parts.headers.get("grpc-message"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        GrpcCallResponse {
            status,
            status_message,
            initial_metadata: pairs(&parts.headers),
            message,
            trailing_metadata: pairs(&trailers),
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| failed(GRPC_DEADLINE_EXCEEDED))
}

/// The request a call describes; `:method`, `:path` and `:authority` are
/// required, as the spec says.
fn request(call: &HttpCall) -> Result<Request<RequestBody>, Status> {
    let pseudo = |name: &[u8]| {
        call.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
            .ok_or(Status::BadArgument)
    };
    let method = Method::from_bytes(pseudo(b":method")?).map_err(|_| Status::BadArgument)?;
    let uri: Uri = std::str::from_utf8(pseudo(b":path")?)
        .ok()
        .and_then(|p| p.parse().ok())
        .ok_or(Status::BadArgument)?;
    let authority =
        HeaderValue::from_bytes(pseudo(b":authority")?).map_err(|_| Status::BadArgument)?;
    let mut request = Request::new(RequestBody::full(Bytes::from(call.body.clone())));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    headers.insert(http::header::HOST, authority);
    for (key, value) in call.headers.iter().filter(|(k, _)| !k.starts_with(b":")) {
        let name = HeaderName::from_bytes(key).map_err(|_| Status::BadArgument)?;
        let value = HeaderValue::from_bytes(value).map_err(|_| Status::BadArgument)?;
        headers.append(name, value);
    }
    Ok(request)
}

/// Sends the call and reads the whole answer; `None` when it failed or
/// timed out.
async fn send(
    worker: &Weak<Worker>,
    cluster: usize,
    request: Request<RequestBody>,
    timeout: Duration,
) -> Option<HttpCallResponse> {
    let exchange = async {
        let worker = worker.upgrade()?;
        let (parts, collected) = read_whole(&worker, cluster, request).await?;
        let mut headers: Pairs = vec![(
            b":status".to_vec(),
            parts.status.as_str().as_bytes().to_vec(),
        )];
        headers.extend(pairs(&parts.headers));
        let trailers = collected.trailers().map(pairs).unwrap_or_default();
        Some(HttpCallResponse {
            headers,
            body: collected.to_bytes().to_vec(),
            trailers,
        })
    };
    // A timeout is a failed call, like any other.
    tokio::time::timeout(timeout, exchange).await.ok().flatten()
}

fn pairs(map: &http::HeaderMap) -> Pairs {
    map.iter()
        .map(|(k, v)| (k.as_str().as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}
